import { DurableObject } from "cloudflare:workers";
import type { PlanId, Product } from "../../worker/catalog";
import * as core from "../../worker/core/account";
import type * as A from "../../worker/core/account/answers";
import { heldBy } from "../../worker/core/account/guards";
import type { AccountState, Answered, AutoTopUpConfig, Refused } from "../../worker/core/account/state";
import { isRefused, ok, refused } from "../../worker/core/account/state";
import { freshSummary, type PanelView, panelDays, panelOf, summaryOf } from "../../worker/core/account/summary";
import type { Charge, Usage } from "../../worker/core/pricing";
import { keepsKey } from "../../worker/core/refusals";
import { utcDayStart } from "../../worker/core/time";
import { idempotent } from "../idempotency";
import { sqlOf } from "../sql";
import type { CallContext, GrantRequest, RefundRequest, SettlementCut } from "../types";
import type { LedgerHead } from "../../worker/settlement/heads";
import { newerEpochs, stepContext, withMissedEpochs } from "./epochs";
import { faultPoints } from "../../worker/settlement/fault-points";
import { ledgerFor } from "../../worker/settlement/shards";
import { JournalShell, settlementQueue } from "../journal-shell";
import { Outbox, type Sender } from "./outbox";
import { AccountStore } from "./store";
import type { LeaseClosed, LeaseCloseRequest, LeaseNeed, PoolLimits } from "../../worker/core/account/membership";
import { orgObject } from "../stubs";

type Result = { kind: string };
type Op<R> = (d: core.Draft) => R;

/**
 * One account. It loads its snapshot once; each call is one step of the functional core (worker/core/account),
 * whose difference the store writes in one `transactionSync`; the snapshot is replaced only after the commit.
 */
export class AccountDO extends DurableObject<Env> {
  private readonly store: AccountStore;
  private readonly outbox: Outbox;
  private readonly journal: JournalShell;
  /**
   * Where the journal goes: the settlement queue of the account's ledger shard (through the sender fault point, if a
   * test set one). A field so fault-injection tests can swap in a failing sender for this instance.
   */
  settlement: Sender = {
    sendBatch: (messages, options) =>
      settlementQueue(this.env, this.state().account?.accountId).sendBatch(messages, options),
  };
  private snapshot: AccountState | undefined;
  private schemaReady: boolean;
  /** a lease request to the organization in flight */
  private leasing: Promise<void> | null = null;
  /** what decisions that found their lease enough and are not yet decided will cost: a sibling asks for it too */
  private deciding = 0;

  constructor(ctx: DurableObjectState, env: Env) {
    super(ctx, env);
    const db = sqlOf(ctx.storage.sql);
    this.store = new AccountStore(db);
    this.outbox = new Outbox(
      db,
      () => this.settlement,
      () => this.schemaReady,
    );
    this.journal = new JournalShell(ctx, env, this.outbox);
    // A read of a never-written account leaves no storage behind; the first write creates the schema.
    this.schemaReady = this.store.hasSchema();
    if (this.schemaReady) ctx.storage.transactionSync(() => this.store.migrate());
    void ctx.blockConcurrencyWhile(() => this.journal.restore(this.lastSeq()));
  }

  // ─────────────────────────── RPC ───────────────────────────

  summary(ctx: CallContext): Promise<Answered<A.SummaryResult>> {
    // A read of an account that was never written answers without touching storage.
    if (!this.state().account)
      return Promise.resolve({ result: ok(freshSummary(ctx.accountId, ctx.now)), replayed: false, resetSeq: 0 });
    return this.transact(ctx, (d) => ok(core.summaryIn(d)), false);
  }
  consume(ctx: CallContext, charge: Charge): Promise<Answered<A.ConsumeResult>> {
    return this.decision(ctx, (d) => core.consume(d, charge), charge);
  }
  createHold(ctx: CallContext, charge: Charge, ttlSeconds: number): Promise<Answered<A.HoldResult>> {
    return this.decision(ctx, (d) => core.createHold(d, charge, ttlSeconds), charge);
  }
  settleHold(
    ctx: CallContext,
    holdId: string,
    actual: { cost?: number; usage?: Usage },
  ): Promise<Answered<A.SettleResult>> {
    return this.decision(ctx, (d) => core.settleHold(d, holdId, actual));
  }
  releaseHold(ctx: CallContext, holdId: string): Promise<Answered<A.ReleaseResult>> {
    return this.decision(ctx, (d) => core.releaseHold(d, holdId));
  }
  addCredits(ctx: CallContext, req: GrantRequest): Promise<Answered<A.GrantResult>> {
    return this.transact(ctx, (d) => core.addCredits(d, req));
  }
  /** The entry a refund names is looked up first: in the outbox while there, else in the D1 ledger. */
  async refund(ctx: CallContext, req: RefundRequest): Promise<Answered<A.RefundResult>> {
    const entry =
      req.entryId === undefined
        ? null
        : await this.outbox.refundableEntry(ledgerFor(this.env, ctx.accountId), ctx.accountId, req.entryId);
    return this.transact(ctx, (d) => core.refund(d, req, entry));
  }
  setPlan(ctx: CallContext, plan: PlanId): Promise<Answered<A.AccountChangeResult>> {
    return this.transact(ctx, (d) => core.setPlan(d, plan));
  }
  setAutoTopUp(ctx: CallContext, config: AutoTopUpConfig): Promise<Answered<A.AccountChangeResult>> {
    return this.transact(ctx, (d) => core.setAutoTopUp(d, config));
  }
  setSpendCap(ctx: CallContext, dailyLimit: number | null): Promise<Answered<A.AccountChangeResult>> {
    return this.transact(ctx, (d) => core.setSpendCap(d, dailyLimit));
  }
  resume(ctx: CallContext, operator: string): Promise<Answered<A.ResumeResult>> {
    return this.transact(ctx, (d) => core.resume(d, operator));
  }
  redeemBankedReset(ctx: CallContext, product: Product): Promise<Answered<A.BankedResetResult>> {
    return this.transact(ctx, (d) => core.redeemBankedReset(d, product));
  }
  /** Joins an organization's pool (SPEC §9): refused while the account belongs to another. */
  joinOrg(ctx: CallContext, orgId: string, limits: PoolLimits): Promise<Answered<A.OrgJoinResult>> {
    return this.transact(ctx, (d) => core.joinOrg(d, orgId, limits));
  }
  /** The organization closes this member's lease (docs/organizations.md); the same `closeId` answers the same. */
  closeLease(accountId: string, now: number, req: LeaseCloseRequest): LeaseClosed {
    const closed = this.systemStep(accountId, now, (d) => core.closeLease(d, req));
    return closed.body;
  }

  /** Resolves once no lease request is in flight (tests read both sides of a lease only then). */
  async leaseIdle(): Promise<void> {
    while (this.leasing) await this.leasing;
  }

  /** Records a signed panel link under the call's key, so a replay returns the same link. */
  issuePanelLink(ctx: CallContext, link: A.PanelLink): Promise<Answered<A.PanelLinkResult>> {
    return this.transact(ctx, () => ok(link));
  }

  /**
   * Reconciliation at a consistent cut (SPEC §7): the object's totals as they stood at the ledger's watermark, which
   * are its totals now less the entries above the watermark (all still in the journal: a row goes only once
   * confirmed). Runs a settlement check with the given head, so what is overdue is sent again (healed).
   */
  async settlementCut(head: LedgerHead): Promise<SettlementCut> {
    const state = this.state();
    const lastSeq = this.lastSeq();
    const cutSeq = Math.max(head.watermark, this.outbox.floor);
    const above = this.outbox.totalsAbove(cutSeq);
    const creditPosition = this.schemaReady
      ? this.store.grantRemainder() + heldBy(state, (s) => s.layer === "grant")
      : 0;
    const cut = {
      lastSeq,
      cutSeq,
      creditPosition: creditPosition - above.creditPosition,
      charged: (state.account?.chargedTotal ?? 0) - above.charged,
    };
    const checked = await this.outbox.check(head, lastSeq);
    if (checked.nextAt !== null) await this.journal.ensureAlarm(checked.nextAt);
    return { ...cut, resent: checked.resent };
  }

  /** What the usage panel shows beside the summary (the object keeps 7 days of history). */
  panelView(ctx: CallContext, days: number): PanelView {
    const starts = panelDays(ctx.now, days);
    const history = this.schemaReady ? this.store.panelHistory(starts[0]) : { spend: [], usage: [] };
    return panelOf(this.state(), ctx.now, starts, history);
  }

  /** Sends every journal row this instance has not sent yet to the queue (see outbox.ts). */
  flushOutbox(): Promise<void> {
    return this.outbox.flush();
  }

  /** Applies expiries, prunes what aged out, runs the settlement check (docs/settlement.md), and sets the next alarm. */
  override async alarm(): Promise<void> {
    this.journal.alarmRan();
    const state = this.state();
    if (!state.account) return;
    const wallNow = Date.now();
    const now = wallNow + state.account.clockOffset;
    const ctx = { ...stepContext({ accountId: state.account.accountId, now, requestId: "alarm" }), wallNow };
    const step = core.step(state, ctx, this.store.reads, () => ok(null), { creates: false });
    this.ctx.storage.transactionSync(() => {
      this.store.write(state, step.next, step.effects, now);
      this.store.prune(now);
    });
    this.snapshot = step.next;
    const times = this.store.dueAt(now, Date.now());
    const settlement = await this.journal.settlementCheck(state.account.accountId, this.lastSeq());
    if (settlement !== null) times.push(settlement);
    if (times.length > 0) await this.journal.ensureAlarm(Math.min(...times));
  }

  // ─────────────────────────── the shell ───────────────────────────

  private lastSeq(): number {
    return this.state().account?.journalSeq ?? 0;
  }

  private state(): AccountState {
    this.snapshot ??= this.schemaReady ? this.store.load() : core.EMPTY_STATE;
    return this.snapshot;
  }

  // ─────────────────────────── the pool's lease ───────────────────────────

  /**
   * A step no Idempotency-Key names (lease traffic): taken and written at once, outside the answer book. Its journal
   * rows travel like any other.
   */
  private systemStep<R extends Result>(accountId: string, now: number, op: Op<R>) {
    const state = this.state();
    const ctx = { ...stepContext({ accountId, now, requestId: "lease" }), wallNow: Date.now() };
    const step = core.step(state, ctx, this.store.reads, op, { creates: false });
    // An account never written has no lease to take or close: nothing is stored for it.
    if (state.account) {
      this.ctx.storage.transactionSync(() => {
        if (!this.schemaReady) this.store.migrate();
        this.store.write(state, step.next, step.effects, now);
      });
      this.schemaReady = true;
      this.snapshot = step.next;
      if (step.effects.some((e) => e.type === "journal")) this.journal.journaled();
    }
    return step.result;
  }

  /** What a decision of `charge` needs from the pool now, or as a refill (null: nothing). */
  private leaseNeed(ctx: CallContext, charge: Charge): LeaseNeed | null {
    if (!this.state().account?.org?.active) return null;
    const probe = core.step(
      this.state(),
      stepContext(ctx),
      this.store.reads,
      (d) => ok(core.leaseNeed(d, charge.product, charge.cost, this.deciding)),
      { creates: false },
    );
    return probe.result.kind === "ok" ? probe.result.body : null;
  }

  /**
   * Asks the organization for the lease `need` describes and takes the issue. One request at a time: a decision that
   * arrives meanwhile waits for it and looks again. A failure is logged; the decision then has only what it holds.
   */
  private askPool(ctx: CallContext, need: LeaseNeed): Promise<void> {
    this.leasing ??= (async () => {
      try {
        const issue = await orgObject(this.env, need.orgId).issueLease(ctx.accountId, need, ctx.now);
        faultPoints.lease?.("issued", ctx.accountId);
        if (isRefused(issue)) return;
        this.systemStep(ctx.accountId, ctx.now, (d) => core.takeLease(d, issue));
      } catch (err) {
        console.error(JSON.stringify({ event: "org.lease_failed", orgId: need.orgId, error: String(err) }));
      } finally {
        this.leasing = null;
      }
    })();
    return this.leasing;
  }

  /**
   * Before a decision: a lease large enough for it and for the decisions already past this check, unless this key was
   * answered already (a replay draws nothing). Returns what it added to `deciding`, taken off once decided.
   */
  private async leaseBefore(ctx: CallContext, charge: Charge): Promise<number> {
    const key = ctx.idempotency?.key;
    if (!this.state().account?.org?.active || !key) return 0;
    if (this.schemaReady && this.store.answers(ctx.now).find(key)) return 0;
    for (let tries = 0; tries < 2; tries++) {
      if (this.leasing) await this.leasing;
      const need = this.leaseNeed(ctx, charge);
      if (!need || need.shortfall === 0) break;
      await this.askPool(ctx, need);
    }
    this.deciding += charge.cost;
    return charge.cost;
  }

  /**
   * After a decision: a refill in the background when the lease fell below its low-water mark. Nothing is needed
   * now, so it asks with no shortfall: the pool answers from what it has and recalls no one's lease for it.
   */
  private leaseAfter(ctx: CallContext, charge: Charge): void {
    if (this.leasing) return;
    const need = this.leaseNeed(ctx, charge);
    if (need) this.ctx.waitUntil(this.askPool(ctx, { ...need, shortfall: 0 }));
  }

  /** A decision's answer: the account as `?include=account` asks now, and the product's windows for the headers. */
  private async decision<R extends A.DecisionResult>(
    ctx: CallContext,
    op: Op<R>,
    charge?: Charge,
  ): Promise<Answered<R | Refused>> {
    const pending = charge ? await this.leaseBefore(ctx, charge) : 0;
    let answer: Answered<R | Refused>;
    try {
      answer = await this.transact(ctx, op);
    } finally {
      this.deciding -= pending;
    }
    if (charge) this.leaseAfter(ctx, charge);
    const r = answer.result;
    if (r.kind === "refused") return answer;
    const state = this.state();
    if (!ctx.includeAccount) {
      if ("account" in r.body) delete r.body.account;
    } else if (!r.body.account && state.account) r.body.account = summaryOf(state, ctx.now, this.spentToday(ctx.now));
    if (state.account) answer.rateLimit = core.windowsOf(state, r.body.remaining.product, ctx.now);
    return answer;
  }

  /**
   * One step in one transaction. Mutating calls check and keep the Idempotency-Key in the same transaction, so a
   * duplicate never takes effect twice and a replay answers as the first call did. A denial a global reset could
   * lift is first deferred (not committed, not kept): with epochs at most 1 s old holding a newer reset, it is decided
   * again with it (SPEC §5: within 1 s).
   */
  private async transact<R extends Result>(
    given: CallContext,
    op: Op<R>,
    mutating = true,
  ): Promise<Answered<R | Refused>> {
    let ctx = await withMissedEpochs(this.env, given, this.state().account?.resetSeq);
    let attempt = this.attempt(ctx, op, mutating, true);
    if (attempt.deferred) {
      const fresh = await newerEpochs(this.env, this.state().account?.resetSeq ?? 0);
      if (fresh) ctx = await withMissedEpochs(this.env, { ...ctx, resets: fresh }, this.state().account?.resetSeq);
      attempt = this.attempt(ctx, op, mutating, false);
    }
    if (this.outbox.pending && this.schemaReady) this.journal.journaled();
    const { result, replayed } = attempt;
    return { result, replayed, resetSeq: this.state().account?.resetSeq ?? 0 };
  }

  private attempt<R extends Result>(ctx: CallContext, op: Op<R>, mutating: boolean, mayDefer: boolean) {
    const state = this.state();
    const stepCtx = stepContext(ctx);
    let next: AccountState | undefined;
    let deferred = false;
    const run = (): R => {
      const step = core.step(state, stepCtx, this.store.reads, op, { creates: mutating });
      deferred = mayDefer && step.result.kind === "denied" && core.resetCouldHelp(step.next, ctx.now);
      if (deferred) return step.result;
      this.store.write(state, step.next, step.effects, ctx.now);
      for (const e of step.effects) {
        if (e.type === "wake") void this.journal.ensureAlarm(Date.now() + Math.max(0, e.at - ctx.now));
        if (e.type === "journal") this.outbox.pending = true;
      }
      next = step.next;
      return step.result;
    };
    const outcome = this.ctx.storage.transactionSync(() => {
      if (!mutating) return { kind: "answered" as const, answer: run(), replayed: false };
      if (!this.schemaReady) this.store.migrate();
      const key = ctx.idempotency;
      if (!key) throw new Error("a mutating call without an Idempotency-Key");
      // Answers in the book are results this object kept (R, in compact text).
      const book = this.store.answers<R>(ctx.now);
      return idempotent(book, key, run, (a) => !deferred && (!isRefused(a) || keepsKey(a.refusal.code)));
    });
    // Committed: only now does the snapshot change.
    if (mutating) this.schemaReady = true;
    if (next) this.snapshot = next;
    if (outcome.kind === "conflict") {
      const conflict = refused("idempotency_conflict", "this Idempotency-Key was used with a different request");
      return { deferred, result: conflict, replayed: false };
    }
    return { deferred, result: outcome.answer, replayed: outcome.replayed };
  }

  private spentToday(now: number): number {
    return this.schemaReady ? this.store.reads.spentSince(utcDayStart(now)) : 0;
  }
}
