import { DurableObject } from "cloudflare:workers";
import type { LeaseClosed, LeaseIssue, LeaseNeed, PoolLimits } from "../../worker/core/account/membership";
import type { Answered, Ok, Refused } from "../../worker/core/account/state";
import { isRefused, ok, refused } from "../../worker/core/account/state";
import * as core from "../../worker/core/org";
import {
  EMPTY_ORG,
  type OrgContext,
  type OrgDraft,
  type OrgPlan,
  type OrgState,
  orgLedgerId,
  type PoolGrantRequest,
} from "../../worker/core/org/state";
import { keepsKey } from "../../worker/core/refusals";
import { faultPoints } from "../../worker/settlement/fault-points";
import type { LedgerHead } from "../../worker/settlement/heads";
import { Outbox } from "../account/outbox";
import { idempotent } from "../idempotency";
import { JournalShell, settlementQueue } from "../journal-shell";
import { sqlOf } from "../sql";
import { accountObject } from "../stubs";
import type { OrgCallContext, SettlementCut } from "../types";
import { OrgStore } from "./store";

type Result = { kind: string };
/** Closes run this many at a time, so a pool of thousands of members recalls its leases in bounded time. */
const CLOSE_CONCURRENCY = 16;
/** A close that failed is tried again this much later. */
const CLOSE_RETRY_MS = 5_000;

/**
 * One organization's pool (SPEC §9): its grants and flex, its members, and the leases through which members draw.
 * Members call `issueLease` when their lease runs low; the object closes leases at their TTL, when a member leaves,
 * when the pool is short or paused. Same shape as the account object: one core step per call, written in one
 * `transactionSync`, the snapshot replaced after the commit; its journal settles to the ledger as `org/<orgId>`.
 */
export class OrgDO extends DurableObject<Env> {
  private readonly store: OrgStore;
  private readonly outbox: Outbox;
  private snapshot: OrgState | undefined;
  private schemaReady: boolean;
  private readonly journal: JournalShell;
  private closingNow: Promise<void> | null = null;

  constructor(ctx: DurableObjectState, env: Env) {
    super(ctx, env);
    const db = sqlOf(ctx.storage.sql);
    this.store = new OrgStore(db);
    this.schemaReady = this.store.hasSchema();
    if (this.schemaReady) ctx.storage.transactionSync(() => this.store.migrate());
    this.outbox = new Outbox(
      db,
      () => settlementQueue(this.env, this.ledgerId()),
      () => this.schemaReady,
      () => this.ledgerId() ?? "",
    );
    this.journal = new JournalShell(ctx, env, this.outbox);
    void ctx.blockConcurrencyWhile(() => this.journal.restore(this.state().org?.journalSeq ?? 0));
  }

  // ─────────────────────────── RPC: the API's ───────────────────────────

  putOrg(ctx: OrgCallContext, req: { plan: OrgPlan; flexMonthlyLimit?: number }): Promise<Answered<core.OrgResult>> {
    return this.transact(ctx, (d) => core.putOrg(d, req));
  }

  addCredits(ctx: OrgCallContext, req: PoolGrantRequest): Promise<Answered<core.PoolGrantResult>> {
    return this.transact(ctx, (d) => core.addPoolCredits(d, req));
  }

  refund(ctx: OrgCallContext, req: { amount: number; reason: string }): Promise<Answered<core.PoolRefundResult>> {
    return this.transact(ctx, (d) => core.refundPool(d, req));
  }

  resume(ctx: OrgCallContext, operator: string): Promise<Answered<core.PoolResumeResult>> {
    return this.transact(ctx, (d) => core.resumePool(d, operator));
  }

  /** Records a signed panel link under the call's key, so a replay returns the same link (as an account does). */
  issuePanelLink<L extends object>(ctx: OrgCallContext, link: L): Promise<Answered<Ok<L> | Refused>> {
    if (!this.state().org) return this.transact(ctx, () => refused("org_not_found", "no such organization"));
    return this.transact(ctx, () => ok(link));
  }

  view(ctx: OrgCallContext): Answered<core.OrgResult> {
    const state = this.state();
    const result = state.org ? ok(core.orgView(state, ctx.now)) : refused("org_not_found", "no such organization");
    return { result, replayed: false, resetSeq: 0 };
  }

  /**
   * Adds a member or updates its limits. The account joins first (it belongs to at most one organization, and says
   * so itself); only then does the pool count it. A retry with the same key does both again, idempotently.
   */
  async putMember(ctx: OrgCallContext, accountId: string, limits: PoolLimits): Promise<Answered<core.MemberResult>> {
    const prior = this.priorAnswer<core.MemberResult>(ctx);
    if (prior) return prior;
    if (!this.state().org) return this.transact(ctx, () => refused("org_not_found", "no such organization"));
    const joined = await accountObject(this.env, accountId).joinOrg(this.memberCall(ctx, accountId), ctx.orgId, limits);
    if (joined.result.kind === "refused") {
      const refusal = joined.result;
      return this.transact(ctx, () => refusal);
    }
    return this.transact(ctx, (d) => core.putMember(d, accountId, limits));
  }

  /** Removes a member and closes its lease at once; if the member cannot be reached, the alarm closes it later. */
  async removeMember(ctx: OrgCallContext, accountId: string): Promise<Answered<core.MemberResult>> {
    const answer = await this.transact(ctx, (d) => core.removeMember(d, accountId));
    if (!answer.replayed && !isRefused(answer.result)) await this.closeOne(accountId, ctx.now);
    return answer;
  }

  // ─────────────────────────── RPC: members' ───────────────────────────

  /**
   * A member's lease request (`n` makes it idempotent: asked again, the same issue is answered). When the pool cannot
   * cover what the member needs now, every open lease was recalled: the request waits for those closes and is asked
   * once more, so credit another member held unspent serves it instead of a denial (bench row 16c).
   */
  async issueLease(accountId: string, need: LeaseNeed, now: number): Promise<LeaseIssue | Refused> {
    faultPoints.lease?.("issue", accountId);
    let answer = this.system(now, (d) => core.issueLease(d, accountId, need));
    if (isRefused(answer)) return answer;
    const starved = need.shortfall > 0 && answer.body.parts.length === 0 && answer.body.member && !answer.body.paused;
    if (starved && this.closesDue(now)) {
      await this.closeDue(now);
      answer = this.system(now, (d) => core.issueLease(d, accountId, need));
      if (isRefused(answer)) return answer;
    }
    if (this.closesDue(now)) void this.journal.ensureAlarm(Date.now());
    return answer.body;
  }

  /** Closes whatever is due now (tests and the alarm). */
  async closeDue(now?: number): Promise<void> {
    const at = now ?? Date.now() + (this.state().org?.clockOffset ?? 0);
    this.closingNow ??= this.runCloses(at).finally(() => {
      this.closingNow = null;
    });
    await this.closingNow;
  }

  /** Resolves once no close is in flight (tests read both sides of a lease only then). */
  async idle(): Promise<void> {
    while (this.closingNow) await this.closingNow;
  }

  /** Reconciliation at the ledger's watermark, as for an account (see AccountDO.settlementCut), plus I-pool. */
  async settlementCut(
    head: LedgerHead,
  ): Promise<SettlementCut & { poolInvariant: ReturnType<typeof core.poolInvariant> }> {
    const lastSeq = this.state().org?.journalSeq ?? 0;
    const cutSeq = Math.max(head.watermark, this.outbox.floor);
    const above = this.outbox.totalsAbove(cutSeq);
    const cut = {
      lastSeq,
      cutSeq,
      creditPosition: (this.schemaReady ? this.store.grantRemainder() : 0) - above.creditPosition,
      charged: 0 - above.charged,
    };
    const checked = await this.outbox.check(head, lastSeq);
    if (checked.nextAt !== null) await this.journal.ensureAlarm(checked.nextAt);
    return { ...cut, resent: checked.resent, poolInvariant: core.poolInvariant(this.state()) };
  }

  flushOutbox(): Promise<void> {
    return this.outbox.flush();
  }

  override async alarm(): Promise<void> {
    this.journal.alarmRan();
    const org = this.state().org;
    if (!org) return;
    const now = Date.now() + org.clockOffset;
    this.system(now, () => ok(null));
    this.ctx.storage.transactionSync(() => this.store.prune(now));
    await this.closeDue(now);
    const times: number[] = [];
    const next = this.nextCloseAt();
    if (next !== null) times.push(Date.now() + Math.max(0, next - now));
    const settlement = await this.journal.settlementCheck(this.ledgerId(), this.state().org?.journalSeq ?? 0);
    if (settlement !== null) times.push(settlement);
    const expiry = this.state()
      .grants.filter((g) => g.remaining > 0 && g.expiresAt !== null)
      .map((g) => Date.now() + Math.max(0, (g.expiresAt ?? 0) - now));
    times.push(...expiry);
    if (times.length > 0) await this.journal.ensureAlarm(Math.min(...times));
  }

  // ─────────────────────────── closes ───────────────────────────

  private closesDue(now: number): boolean {
    return core.dueCloses(this.state(), now).length > 0;
  }

  private nextCloseAt(): number | null {
    const times = [...this.state().members.values()].flatMap((m) =>
      m.closing !== null ? [0] : m.closeAt !== null ? [m.closeAt] : [],
    );
    return times.length === 0 ? null : Math.min(...times);
  }

  private async runCloses(now: number): Promise<void> {
    const due = core.dueCloses(this.state(), now).map((m) => m.accountId);
    for (let i = 0; i < due.length; i += CLOSE_CONCURRENCY)
      await Promise.all(due.slice(i, i + CLOSE_CONCURRENCY).map((id) => this.closeOne(id, now)));
  }

  /**
   * Closes one member's lease: records the close it asks (so a crash asks again with the same id), asks the member,
   * applies the answer. A failure leaves the close recorded and retried by the alarm.
   */
  private async closeOne(accountId: string, now: number): Promise<void> {
    const begun = this.system(now, (d) => core.beginClose(d, accountId));
    if (isRefused(begun)) return;
    const { closeId, issuedUpTo, leave } = begun.body;
    let answer: LeaseClosed;
    try {
      faultPoints.lease?.("close", accountId);
      answer = await accountObject(this.env, accountId).closeLease(accountId, now, {
        orgId: this.state().org?.orgId ?? "",
        closeId,
        issuedUpTo,
        leave,
      });
      faultPoints.lease?.("closed", accountId);
    } catch (err) {
      console.error(JSON.stringify({ event: "org.close_failed", accountId, error: String(err) }));
      await this.journal.ensureAlarm(Date.now() + CLOSE_RETRY_MS);
      return;
    }
    this.system(now, (d) => core.applyClose(d, accountId, closeId, answer));
  }

  // ─────────────────────────── the shell ───────────────────────────

  private state(): OrgState {
    this.snapshot ??= this.schemaReady ? this.store.load() : EMPTY_ORG;
    return this.snapshot;
  }

  private context(orgId: string, now: number, idempotencyKey?: string): OrgContext {
    return { orgId, now, wallNow: Date.now(), ...(idempotencyKey ? { idempotencyKey } : {}) };
  }

  /** A step without an Idempotency-Key (lease traffic, closes, the alarm): written at once. */
  private system<R extends Result>(now: number, op: (d: OrgDraft) => R): R | Refused {
    const orgId = this.state().org?.orgId;
    if (!orgId) return refused("org_not_found", "no such organization");
    const step = core.orgStep(this.state(), this.context(orgId, now), this.store.reads, op);
    if (step.result.kind !== "refused") {
      this.ctx.storage.transactionSync(() => this.store.write(this.state(), step.next, step.touched, step.effects));
      this.snapshot = step.next;
      this.afterCommit(step.effects);
    }
    return step.result;
  }

  /** The kept answer of this key, if it was answered (a replay or a conflict), before anything async runs. */
  private priorAnswer<R extends Result>(ctx: OrgCallContext): Answered<R | Refused> | null {
    const key = ctx.idempotency;
    if (!key || !this.schemaReady) return null;
    const prior = this.store.answers<R>(ctx.now).find(key.key);
    if (!prior) return null;
    if (prior.fingerprint !== key.fingerprint) return { result: conflict(), replayed: false, resetSeq: 0 };
    return { result: prior.answer, replayed: true, resetSeq: 0 };
  }

  private async transact<R extends Result>(
    ctx: OrgCallContext,
    op: (d: OrgDraft) => R,
  ): Promise<Answered<R | Refused>> {
    const key = ctx.idempotency;
    if (!key) throw new Error("a mutating call without an Idempotency-Key");
    let next: OrgState | undefined;
    let effects: ReturnType<typeof core.orgStep>["effects"] = [];
    const outcome = this.ctx.storage.transactionSync(() => {
      if (!this.schemaReady) this.store.migrate();
      const state = this.schemaReady ? this.state() : EMPTY_ORG;
      const book = this.store.answers<R>(ctx.now);
      return idempotent(
        book,
        key,
        () => {
          const step = core.orgStep(state, this.context(ctx.orgId, ctx.now, key.key), this.store.reads, op);
          this.store.write(state, step.next, step.touched, step.effects);
          next = step.next;
          effects = step.effects;
          return step.result;
        },
        (a) => !isRefused(a) || keepsKey(a.refusal.code),
      );
    });
    this.schemaReady = true;
    if (next) this.snapshot = next;
    this.afterCommit(effects);
    if (outcome.kind === "conflict") return { result: conflict(), replayed: false, resetSeq: 0 };
    return { result: outcome.answer, replayed: outcome.replayed, resetSeq: 0 };
  }

  private afterCommit(effects: readonly { type: string; at?: number }[]): void {
    const offset = this.state().org?.clockOffset ?? 0;
    for (const e of effects) {
      if (e.type === "journal") this.outbox.pending = true;
      if (e.type === "wake" && e.at !== undefined) void this.journal.ensureAlarm(e.at - offset);
    }
    if (this.outbox.pending) this.journal.journaled();
  }

  /** The organization's journal settles under this ledger id (undefined before it exists). */
  private ledgerId(): string | undefined {
    const orgId = this.state().org?.orgId;
    return orgId === undefined ? undefined : orgLedgerId(orgId);
  }

  /** The account call a member change makes: the org's key, scoped to the account's book. */
  private memberCall(ctx: OrgCallContext, accountId: string) {
    const key = ctx.idempotency;
    return {
      accountId,
      now: ctx.now,
      requestId: ctx.requestId,
      ...(key ? { idempotency: { key: `org:${ctx.orgId}:${key.key}`, fingerprint: key.fingerprint } } : {}),
    };
  }
}

const conflict = () => refused("idempotency_conflict", "this Idempotency-Key was used with a different request");
