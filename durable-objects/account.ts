import { DurableObject } from "cloudflare:workers";
import { catalog, DEFAULT_PLAN, planFor, PRODUCTS, WEEK_MS, type Plan, type PlanId, type Product } from "../worker/catalog";
import { ApiError } from "../worker/errors";
import { chargeOf, type Usage } from "../worker/core/pricing";
import { uuidv7 } from "../worker/core/ids";
import { addMonths, iso, isoOrNull, monthKey, utcDayStart } from "../worker/core/time";
import {
  allocate,
  burnDownOrder,
  decide,
  guardedCreditBudget,
  settleReservation,
  type GrantState,
  type Source,
  type Decision,
  type WaterfallInput,
} from "../worker/core/waterfall";
import {
  chargeWindow,
  currentWindow,
  releaseWindow,
  viewWindow,
  windowJson,
  WINDOW_KINDS,
  type WindowKind,
  type WindowState,
} from "../worker/core/windows";
import { anomalyThreshold } from "../worker/core/guards";
import type { AccountEvent, LedgerEntry, SettlementMessage } from "../worker/settlement/messages";
import { ACCOUNT_SCHEMA, SCHEMA_MIGRATIONS, SCHEMA_VERSION } from "./schema";
import { currentResets, DENY_PATH_EPOCH_MAX_AGE_MS, resetControl } from "../worker/resets";
import type { AutoTopUpConfig, CallContext, Charge, GrantRequest, Outcome, ResetEpoch } from "./types";

type Row = Record<string, SqlStorageValue>;

interface AccountRow {
  account_id: string;
  plan: PlanId;
  created_at: number;
  paused: number;
  spend_cap: number | null;
  auto_top_up: string | null;
  flex_month: string | null;
  flex_used: number;
  reset_seq: number;
  banked_accrued_at: number;
  clock_offset: number;
  charged_total: number;
  resumed_at: number | null;
  resumed_spend: number;
  granted_total: number;
}

interface HoldRow {
  id: string;
  product: Product;
  amount: number;
  sources: string;
  window_opened: string;
  flex_month: string | null;
  expires_at: number;
  created_at: number;
  state: "active" | "settled" | "released" | "expired";
}

interface PendingTopUp {
  id: string;
  requested_at: number;
}

interface BankedReset {
  id: string;
  expires_at: number | null;
}

/** The in-memory copy of the account's live state; `undefined` means "not loaded". */
interface StateCache {
  account?: AccountRow | null;
  /** The account row was changed in memory and is written at the end of the transaction. */
  accountDirty: boolean;
  windows: Map<string, WindowState>;
  grants?: GrantState[];
  holds?: HoldRow[];
  /** Unused banked resets, expired ones included, in redemption order. */
  bankedResets?: BankedReset[];
  pendingTopUp?: PendingTopUp | null;
}

type CachedTable = "account" | "grants" | "holds" | "bankedResets" | "pendingTopUp";

const emptyCache = (): StateCache => ({ accountDirty: false, windows: new Map() });

const MINUTE_MS = 60_000;
const HOUR_MS = 3_600_000;
const DAY_MS = 86_400_000;
const OUTBOX_RETRY_MS = 5_000;
const OUTBOX_SEND_BATCH = 100;
const DECISION_RETENTION_MS = 7 * DAY_MS;
const IDEMPOTENCY_RETENTION_MS = catalog.guards.idempotencyRetentionHours * HOUR_MS;
const DELIVERED_OUTBOX_RETENTION_MS = DAY_MS;
const TOP_UP_COOLDOWN_MS = 60_000;
const TOP_UP_PENDING_TIMEOUT_MS = HOUR_MS;
/** SPEC §4: refusals with these statuses do not use up their Idempotency-Key, wherever they are raised. */
const KEY_FREE_STATUSES = new Set([400, 401, 403, 413]);
const DEFAULT_AUTO_TOP_UP: AutoTopUpConfig = { enabled: false, threshold: 0, amount: 0, maxPerMonth: 0 };

/** What `work` answers inside one transaction: the HTTP status and body. */
interface Result {
  status: number;
  body: unknown;
}

class Rejection extends Error {
  constructor(readonly outcome: Outcome) {
    super("rejected");
  }
}

/**
 * One account: its plan, windows, grants, holds, banked resets and the outbox of its balance changes.
 * Every mutation is one `transactionSync`: state, outbox rows and the idempotency record commit together.
 */
export class AccountDO extends DurableObject<Env> {
  private readonly sql: SqlStorage;
  /** The queue the outbox drains to. A field so fault-injection tests can swap in a failing sender. */
  settlement: Pick<Queue<SettlementMessage>, "sendBatch">;
  private flushing: Promise<void> | null = null;
  private alarmAt: number | null = null;
  /** False only once a drain found nothing undelivered; any outbox insert sets it. */
  private outboxPending = true;
  /**
   * The account's live state, kept in memory for the object's lifetime (write-through). Only this object
   * writes its SQLite, and every write of a cached table goes through `write`, `updateAccount` or `putWindow`;
   * a transaction that throws rolls SQLite back, so it drops the whole copy, which reloads on demand.
   */
  private cache: StateCache = emptyCache();
  /** Whether the schema exists; `undefined` until checked. Reads of a never-written account leave no storage behind. */
  private schemaReady: boolean | undefined;

  constructor(ctx: DurableObjectState, env: Env) {
    super(ctx, env);
    this.sql = ctx.storage.sql;
    this.settlement = env.SETTLEMENT as Queue<SettlementMessage>;
    if (this.hasSchema()) ctx.storage.transactionSync(() => this.migrate());
    void ctx.blockConcurrencyWhile(async () => {
      this.alarmAt = await ctx.storage.getAlarm();
    });
  }

  private hasSchema(): boolean {
    this.schemaReady ??= this.sql.exec("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'schema_version'").toArray().length > 0;
    return this.schemaReady;
  }

  /** Creates the schema, or brings an older one up to date; inside the caller's transaction. */
  private migrate(): void {
    for (const stmt of ACCOUNT_SCHEMA) this.sql.exec(stmt);
    const row = this.sql.exec<{ version: number }>("SELECT version FROM schema_version").toArray()[0];
    if (row?.version === SCHEMA_VERSION) return;
    if (!row) this.sql.exec("INSERT INTO schema_version (version) VALUES (1)");
    for (let v = (row?.version ?? 1) + 1; v <= SCHEMA_VERSION; v++) for (const stmt of SCHEMA_MIGRATIONS[v]) this.sql.exec(stmt);
    this.sql.exec("UPDATE schema_version SET version = ?", SCHEMA_VERSION);
    this.schemaReady = true;
  }

  // ───────────────────────────── RPC: reads ─────────────────────────────

  /** The account summary (SPEC §8). Expiries due at `now` are applied first. */
  summary(ctx: CallContext): Promise<Outcome> {
    return this.run(ctx, { mutating: false }, () => ({ status: 200, body: this.summaryBody(ctx.now) }));
  }

  /** The object's own totals, for reconciliation against the D1 ledger. */
  reconciliationState(): { accountId: string | null; creditPosition: number; chargedTotal: number; pendingOutbox: number; sentLastMinute: number } {
    if (!this.hasSchema()) return { accountId: null, creditPosition: 0, chargedTotal: 0, pendingOutbox: 0, sentLastMinute: 0 };
    const account = this.accountRow();
    const remaining = this.one<{ s: number | null }>("SELECT SUM(remaining) AS s FROM grants").s ?? 0;
    const held = this.heldBy((s) => s.layer === "grant");
    const pending = this.one<{ n: number }>("SELECT COUNT(*) AS n FROM outbox WHERE delivered_at IS NULL").n;
    // Sent but perhaps not yet written to D1 by the consumer: drift that is still in flight.
    const recent = this.one<{ n: number }>("SELECT COUNT(*) AS n FROM outbox WHERE delivered_at > ?", Date.now() - 60_000).n;
    return { accountId: account?.account_id ?? null, creditPosition: remaining + held, chargedTotal: account?.charged_total ?? 0, pendingOutbox: pending, sentLastMinute: recent };
  }

  /**
   * What the usage panel shows beside the summary. Per UTC day of the last `days` (the object keeps 7): credits
   * spent, and window usage that still counts (usage a reset forgave has left `window_charges`). And when the
   * plan's next banked reset accrues. Read-only; a never-written account has no tables and answers zeros.
   */
  panelView(ctx: CallContext, days: number): {
    days: { day: string; credits: number; window: number }[];
    bankedResets: { everyDays: number; max: number; atMax: boolean; nextAt: string | null } | null;
  } {
    const start = utcDayStart(ctx.now) - (days - 1) * DAY_MS;
    const credits = new Map<number, number>();
    const window = new Map<number, number>();
    if (this.hasSchema()) {
      for (const r of this.rows<{ minute: number; amount: number }>("SELECT minute, amount FROM spend_minutes WHERE minute >= ?", start / MINUTE_MS)) {
        const day = utcDayStart(r.minute * MINUTE_MS);
        credits.set(day, (credits.get(day) ?? 0) + r.amount);
      }
      // A hold's unused window reservation comes back as a negative row.
      for (const r of this.rows<{ at: number; amount: number }>("SELECT at, amount FROM window_charges WHERE at >= ?", start)) {
        const day = utcDayStart(r.at);
        window.set(day, (window.get(day) ?? 0) + r.amount);
      }
    }
    const account = this.accountRow();
    const rule = planFor(account?.plan ?? DEFAULT_PLAN).bankedResets;
    // One accrues every period from `banked_accrued_at` (creation or the last plan change), also while at the maximum.
    const period = (rule?.everyDays ?? 0) * DAY_MS;
    const nextAt = rule && account ? account.banked_accrued_at + (Math.floor((ctx.now - account.banked_accrued_at) / period) + 1) * period : null;
    return {
      days: Array.from({ length: days }, (_, i) => start + i * DAY_MS).map((d) => ({
        day: iso(d).slice(0, 10),
        credits: credits.get(d) ?? 0,
        window: Math.max(0, window.get(d) ?? 0),
      })),
      bankedResets: rule
        ? { everyDays: rule.everyDays, max: rule.max, atMax: account ? this.availableBankedResets(ctx.now).length >= rule.max : false, nextAt: isoOrNull(nextAt) }
        : null,
    };
  }

  // ──────────────────────────── RPC: metering ────────────────────────────

  consume(ctx: CallContext, charge: Charge): Promise<Outcome> {
    return this.decision(ctx, () => charge.product, this.run(ctx, { mutating: true }, () => {
      const decisionId = uuidv7();
      const decision = this.decideGuarded(charge, ctx);
      this.logDecision(decisionId, ctx, charge, decision.allowed ? null : decision.reason, decision.allowed ? decision.sources : null);
      if (!decision.allowed) {
        return { status: 429, body: { decisionId, ...this.denialJson(decision), remaining: this.remainingOf(charge.product, ctx.now), ...this.accountIfAsked(ctx) } };
      }
      this.applyCharges(charge.product, decision.sources, ctx, { decisionId, rateCardVersion: charge.rateCardVersion });
      return {
        status: 200,
        body: {
          decisionId,
          allowed: true,
          cost: charge.cost,
          sources: decision.sources,
          ...(charge.rateCardVersion ? { rateCardVersion: charge.rateCardVersion } : {}),
          remaining: this.remainingOf(charge.product, ctx.now),
          ...this.accountIfAsked(ctx),
        },
      };
    }));
  }

  createHold(ctx: CallContext, charge: Charge, ttlSeconds: number): Promise<Outcome> {
    return this.decision(ctx, () => charge.product, this.run(ctx, { mutating: true }, () => {
      const holdId = uuidv7();
      const decision = this.decideGuarded(charge, ctx);
      this.logDecision(holdId, ctx, charge, decision.allowed ? null : decision.reason, decision.allowed ? decision.sources : null);
      if (!decision.allowed) return { status: 429, body: { holdId: null, ...this.denialJson(decision), remaining: this.remainingOf(charge.product, ctx.now), ...this.accountIfAsked(ctx) } };
      const windowOpened: Record<WindowKind, number | null> = { fiveHour: null, weekly: null };
      for (const s of decision.sources) {
        this.takeFromSource(charge.product, s, ctx.now);
        this.appendLedger(ctx, { kind: "hold", amount: s.amount, layer: s.layer, product: charge.product, grantId: grantIdOf(s), holdId });
      }
      for (const kind of WINDOW_KINDS) windowOpened[kind] = this.window(charge.product, kind, ctx.now).openedAt;
      const expiresAt = ctx.now + ttlSeconds * 1000;
      this.write(
        "holds",
        "INSERT INTO holds (id, product, amount, sources, window_opened, flex_month, expires_at, created_at, state) VALUES (?, ?, ?, ?, ?, ?, ?, ?, 'active')",
        holdId, charge.product, charge.cost, JSON.stringify(decision.sources), JSON.stringify(windowOpened), monthKey(ctx.now), expiresAt, ctx.now,
      );
      this.wakeAt(expiresAt, ctx);
      return { status: 201, body: { holdId, amount: charge.cost, sources: decision.sources, expiresAt: iso(expiresAt), remaining: this.remainingOf(charge.product, ctx.now), ...this.accountIfAsked(ctx) } };
    }));
  }

  /** Settles at `cost`, or at `usage` priced for the hold's product (checked after the idempotency key). */
  settleHold(ctx: CallContext, holdId: string, actualCost: { cost?: number; usage?: Usage }): Promise<Outcome> {
    return this.decision(ctx, () => this.holdProduct(holdId), this.run(ctx, { mutating: true }, () => {
      const hold = this.activeHold(holdId);
      const { cost: actual, rateCardVersion } = chargeOf(hold.product, actualCost);
      const reserved = JSON.parse(hold.sources) as Source[];
      const settlement = settleReservation(reserved, actual);
      // Ledger: the whole reservation is released, then the actual cost is charged.
      this.giveBack(hold, reserved, ctx, settlement.released);
      for (const s of settlement.charged) this.recordCharge(hold.product, s, ctx, { holdId, rateCardVersion });
      this.write("holds", "UPDATE holds SET state = 'settled' WHERE id = ?", holdId);
      let extraSources: Source[] = [];
      let writtenOff = 0;
      if (settlement.extra > 0) {
        const input = this.waterfallInput(hold.product, ctx.now);
        let extra = allocate(input, settlement.extra, guardedCreditBudget(input));
        // The extra passes the same guards as any credit spend; what they refuse is written off.
        const paused = input.creditsPaused || this.pausesOn(ctx, creditPartOf(extra.sources));
        if (paused) extra = allocate({ ...input, creditsPaused: true }, settlement.extra, 0);
        extraSources = extra.sources;
        this.applyCharges(hold.product, extra.sources, ctx, { holdId, rateCardVersion });
        writtenOff = extra.uncovered;
        if (writtenOff > 0) {
          const why = paused ? "credit spending is paused" : input.spendCapRemaining !== null && creditPartOf(extra.sources) >= input.spendCapRemaining ? "the daily spend cap" : "nothing covered the rest";
          this.appendLedger(ctx, { kind: "write_off", amount: writtenOff, product: hold.product, holdId, note: `settled above hold; ${why}` });
        }
      }
      const released = settlement.released.reduce((s, x) => s + x.amount, 0);
      return {
        status: 200,
        body: {
          holdId,
          charged: actual - writtenOff,
          released,
          writtenOff,
          sources: mergeSources([...settlement.charged, ...extraSources]),
          remaining: this.remainingOf(hold.product, ctx.now),
          ...this.accountIfAsked(ctx),
        },
      };
    }));
  }

  releaseHold(ctx: CallContext, holdId: string): Promise<Outcome> {
    return this.decision(ctx, () => this.holdProduct(holdId), this.run(ctx, { mutating: true }, () => {
      const hold = this.activeHold(holdId);
      const reserved = JSON.parse(hold.sources) as Source[];
      this.giveBack(hold, reserved, ctx, reserved);
      this.write("holds", "UPDATE holds SET state = 'released' WHERE id = ?", holdId);
      return { status: 200, body: { holdId, released: hold.amount, remaining: this.remainingOf(hold.product, ctx.now), ...this.accountIfAsked(ctx) } };
    }));
  }

  // ──────────────────────────── RPC: billing ────────────────────────────

  addCredits(ctx: CallContext, req: GrantRequest): Promise<Outcome> {
    return this.run(ctx, { mutating: true }, () => {
      const expiresAt = req.expiresAt ?? (req.kind === "purchase" ? addMonths(ctx.now, catalog.guards.purchaseExpiryMonths) : null);
      if (req.kind === "promo" && req.expiresAt === undefined) throw new ApiError("invalid_request", "a promo grant requires expiresAt", { field: "expiresAt" });
      if (expiresAt !== null && expiresAt <= ctx.now) throw new ApiError("invalid_request", "expiresAt must be in the future", { field: "expiresAt" });
      if (req.topUpId !== undefined) this.confirmTopUp(req.topUpId);
      this.countGranted(req.amount);
      const grant: GrantState = {
        id: crypto.randomUUID(),
        kind: req.kind,
        priority: req.priority ?? catalog.guards.grantDefaults[req.kind],
        products: req.products ?? null,
        remaining: req.amount,
        expiresAt,
        createdAt: ctx.now,
      };
      this.insertGrant(grant, req.amount, req.topUpId ?? null);
      this.appendLedger(ctx, { kind: "grant", amount: req.amount, grantId: grant.id, note: req.kind });
      if (expiresAt !== null) this.wakeAt(expiresAt, ctx);
      return { status: 201, body: { ...grantJson(grant), amount: req.amount, createdAt: iso(grant.createdAt), ...(req.topUpId ? { topUpId: req.topUpId } : {}) } };
    });
  }

  /**
   * A compensating credit (SPEC §6): a new grant plus a `refund` entry; nothing earlier is edited. With `entryId`
   * it compensates that charge or write-off of this account, never beyond its amount across all refunds; without
   * one it is a goodwill credit of at most `maxGoodwillRefund`.
   */
  async refund(ctx: CallContext, req: { amount: number; reason: string; entryId?: string }): Promise<Outcome> {
    const entry = req.entryId === undefined ? null : await this.refundableEntry(ctx.accountId, req.entryId);
    return this.run(ctx, { mutating: true }, () => {
      if (req.entryId === undefined) {
        const max = catalog.guards.maxGoodwillRefund;
        if (req.amount > max) throw new ApiError("goodwill_limit_exceeded", `a refund without entryId is a goodwill credit of at most ${max} micro-credits`, { max });
      } else {
        if (!entry) throw new ApiError("entry_not_found", "this account has no charge or write-off with this entryId");
        const refunded = this.rows<{ refunded: number }>("SELECT refunded FROM entry_refunds WHERE entry_id = ?", req.entryId)[0]?.refunded ?? 0;
        if (refunded + req.amount > entry.amount)
          throw new ApiError("refund_exceeds_entry", "refunds against this entry would exceed what it charged", { entryAmount: entry.amount, refunded });
        this.sql.exec(
          "INSERT INTO entry_refunds (entry_id, refunded) VALUES (?, ?) ON CONFLICT (entry_id) DO UPDATE SET refunded = excluded.refunded",
          req.entryId, refunded + req.amount,
        );
      }
      this.countGranted(req.amount);
      const grant: GrantState = {
        id: crypto.randomUUID(),
        kind: "purchase",
        priority: catalog.guards.grantDefaults.purchase,
        products: null,
        remaining: req.amount,
        expiresAt: addMonths(ctx.now, catalog.guards.purchaseExpiryMonths),
        createdAt: ctx.now,
      };
      this.insertGrant(grant, req.amount, null);
      const entryId = this.appendLedger(ctx, { kind: "refund", amount: req.amount, grantId: grant.id, note: JSON.stringify({ reason: req.reason, refunds: req.entryId ?? null }) });
      return { status: 201, body: { refundId: entryId, grant: grantJson(grant), reason: req.reason, refundedEntryId: req.entryId ?? null, account: this.summaryBody(ctx.now) } };
    });
  }

  setPlan(ctx: CallContext, plan: PlanId): Promise<Outcome> {
    return this.run(ctx, { mutating: true }, () => {
      const account = this.accountRow()!;
      if (account.plan !== plan) {
        this.updateAccount({ plan, banked_accrued_at: ctx.now });
        this.sql.exec("INSERT INTO plan_history (since, plan) VALUES (?, ?)", ctx.now, plan);
      }
      return { status: 200, body: this.summaryBody(ctx.now) };
    });
  }

  setAutoTopUp(ctx: CallContext, config: AutoTopUpConfig): Promise<Outcome> {
    return this.run(ctx, { mutating: true }, () => {
      const plan = planFor(this.accountRow()!.plan);
      if (config.enabled && !plan.autoTopUpAllowed) throw new ApiError("auto_top_up_not_allowed", `plan '${plan.id}' does not allow auto top-up`);
      this.updateAccount({ auto_top_up: JSON.stringify(config) });
      this.maybeRequestTopUp(ctx);
      return { status: 200, body: this.summaryBody(ctx.now) };
    });
  }

  setSpendCap(ctx: CallContext, dailyLimit: number | null): Promise<Outcome> {
    return this.run(ctx, { mutating: true }, () => {
      this.updateAccount({ spend_cap: dailyLimit });
      return { status: 200, body: this.summaryBody(ctx.now) };
    });
  }

  resume(ctx: CallContext, operator: string): Promise<Outcome> {
    return this.run(ctx, { mutating: true }, () => {
      const wasPaused = this.accountRow()!.paused === 1;
      if (wasPaused) {
        // The trailing window restarts at the resume instant, so the burst that caused the pause does not
        // pause the account again at once; the spend itself stays on record.
        const inResumeMinute = this.rows<{ amount: number }>("SELECT amount FROM spend_minutes WHERE minute = ?", Math.floor(ctx.now / MINUTE_MS))[0];
        this.updateAccount({ paused: 0, resumed_at: ctx.now, resumed_spend: inResumeMinute?.amount ?? 0 });
        this.appendEvent(ctx, "account.credits_resumed", { operator });
      }
      return { status: 200, body: { resumed: wasPaused, account: this.summaryBody(ctx.now) } };
    });
  }

  /** Redeems the soonest-expiring banked reset and zeroes the product's windows (SPEC §5). */
  redeemBankedReset(ctx: CallContext, product: Product): Promise<Outcome> {
    return this.run(ctx, { mutating: true }, () => {
      const item = this.availableBankedResets(ctx.now)[0];
      if (!item) throw new ApiError("no_banked_reset", "no banked reset is available");
      const forgiven = Math.max(...WINDOW_KINDS.map((k) => this.window(product, k, ctx.now).used));
      if (forgiven === 0) throw new ApiError("nothing_to_reset", `the ${product} windows are already empty; the banked reset was kept`);
      for (const kind of WINDOW_KINDS) this.putWindow(product, kind, { openedAt: null, used: 0 });
      this.sql.exec("DELETE FROM window_charges WHERE product = ?", product);
      this.write("bankedResets", "UPDATE banked_resets SET used_at = ? WHERE id = ?", ctx.now, item.id);
      const resetId = this.appendLedger(ctx, { kind: "reset", amount: forgiven, product, note: `banked:${item.id}` });
      this.appendEvent(ctx, "reset.applied", { resetId, product, bankedResetId: item.id, forgiven });
      return { status: 200, body: { resetId, bankedResets: this.bankedResetsJson(ctx.now), account: this.summaryBody(ctx.now) } };
    });
  }

  /** Records a signed panel link under the call's idempotency key, so a replay returns the same link. */
  issuePanelLink(ctx: CallContext, link: { token: string; url: string; expiresAt: string }): Promise<Outcome> {
    return this.run(ctx, { mutating: true }, () => ({ status: 200, body: link }));
  }

  // ───────────────────────────── alarm ─────────────────────────────

  /** Sweeps expiries, prunes bounded tables and re-sends undelivered outbox rows. */
  override async alarm(): Promise<void> {
    this.alarmAt = null;
    const account = this.accountRow();
    if (!account) return;
    const now = Date.now() + account.clock_offset;
    const ctx: CallContext = { accountId: account.account_id, now, requestId: `alarm:${crypto.randomUUID()}` };
    this.transaction(() => {
      this.housekeep(ctx);
      this.sql.exec("DELETE FROM idempotency WHERE created_at < ?", now - IDEMPOTENCY_RETENTION_MS);
      this.sql.exec("DELETE FROM decisions WHERE created_at < ?", now - DECISION_RETENTION_MS);
      this.sql.exec("DELETE FROM holds WHERE state != 'active' AND expires_at < ?", now - DECISION_RETENTION_MS);
      this.sql.exec("DELETE FROM window_charges WHERE at < ?", now - WEEK_MS);
      this.sql.exec("DELETE FROM outbox WHERE delivered_at IS NOT NULL AND delivered_at < ?", Date.now() - DELIVERED_OUTBOX_RETENTION_MS);
      this.sql.exec("DELETE FROM spend_minutes WHERE minute < ?", Math.floor((now - catalog.guards.anomaly.baselineDays * DAY_MS) / MINUTE_MS));
    });
    await this.flushOutbox();
    this.scheduleNextAlarm(ctx);
  }

  /**
   * Sends every undelivered outbox row to the queue, oldest first, marking rows delivered only after the
   * send succeeded. One drain at a time; a call during a drain joins it (the drain loops until empty).
   */
  flushOutbox(): Promise<void> {
    if (!this.flushing) {
      const drain = this.drainOutbox();
      this.flushing = drain;
      // Cleared only after the assignment, so a drain that finishes at once cannot leave the flag set.
      void drain.finally(() => {
        if (this.flushing === drain) this.flushing = null;
      });
    }
    return this.flushing;
  }

  private async drainOutbox(): Promise<void> {
    if (!this.hasSchema()) {
      this.outboxPending = false;
      return;
    }
    try {
      for (;;) {
        const rows = this.rows<{ seq: number; message: string }>(
          "SELECT seq, message FROM outbox WHERE delivered_at IS NULL ORDER BY seq LIMIT ?", OUTBOX_SEND_BATCH,
        );
        if (rows.length === 0) {
          this.outboxPending = false;
          return;
        }
        await this.settlement.sendBatch(rows.map((r) => ({ body: JSON.parse(r.message) as SettlementMessage, contentType: "json" as const })));
        this.sql.exec("UPDATE outbox SET delivered_at = ? WHERE delivered_at IS NULL AND seq >= ? AND seq <= ?", Date.now(), rows[0].seq, rows[rows.length - 1].seq);
      }
    } catch (err) {
      // The rows stay undelivered; the alarm sends them again.
      console.error(JSON.stringify({ event: "outbox.send_failed", error: err instanceof Error ? err.message : String(err) }));
      await this.ensureAlarm(Date.now() + OUTBOX_RETRY_MS);
    }
  }

  // ─────────────────────── transaction shell ───────────────────────

  /**
   * Runs `work` in one transaction after the account's housekeeping. Mutating calls check and record the
   * idempotency key in the same transaction, so a duplicate can never take effect twice, and the same key
   * with the same payload replays the first answer — a denial or a refusal included.
   *
   * A denial is first tried without committing: if epochs at most 1 s old hold a global reset newer than any this
   * object has seen, the decision is taken again with it, so a reset lifts a window's denial within 1 s.
   */
  private async run(given: CallContext, opts: { mutating: boolean }, work: () => Result): Promise<Outcome> {
    let ctx = await this.withMissedResets(given);
    let outcome = this.attempt(ctx, opts, work, opts.mutating);
    if (outcome.status === 429 && outcome.tentative) {
      const fresh = await this.authoritativeResets();
      if (fresh) ctx = await this.withMissedResets({ ...ctx, resets: fresh });
      outcome = this.attempt(ctx, opts, work, false);
    }
    delete outcome.tentative;
    outcome.resetSeq = this.accountRow()?.reset_seq ?? 0;
    if (this.outboxPending && this.hasSchema()) {
      // The outbox row is already durable; the answer does not wait for the queue.
      this.ctx.waitUntil(this.flushOutbox());
      void this.ensureAlarm(Date.now() + OUTBOX_RETRY_MS);
    }
    return outcome;
  }

  /** One transaction. With `tentativeDenial`, a 429 is rolled back and returned marked tentative. */
  private attempt(ctx: CallContext, opts: { mutating: boolean }, work: () => Result, tentativeDenial: boolean): Outcome {
    const key = ctx.idempotency;
    // A read of an account that was never written answers without touching storage.
    if (!opts.mutating && !this.accountRow()) return { status: 200, body: this.virtualSummary(ctx), replayed: false };
    try {
      return this.transaction((): Outcome => {
        if (opts.mutating) {
          if (!this.hasSchema()) this.migrate();
          const prior = this.sql.exec<{ fingerprint: string; status: number; body: string }>(
            "SELECT fingerprint, status, body FROM idempotency WHERE key = ?", key!.key,
          ).toArray()[0];
          if (prior) {
            if (prior.fingerprint !== key!.fingerprint)
              throw new Rejection(errorOutcome(new ApiError("idempotency_conflict", "this Idempotency-Key was used with a different request")));
            const replay = JSON.parse(prior.body) as { body: unknown; error?: Outcome["error"] };
            return { status: prior.status, body: replay.body, ...(replay.error ? { error: replay.error } : {}), replayed: true };
          }
          this.ensureAccount(ctx);
        }
        this.housekeep(ctx);
        const result = work();
        if (result.status === 429 && tentativeDenial && this.resetCouldHelp(ctx.now)) throw new Rejection({ ...result, tentative: true });
        if (opts.mutating) this.remember(ctx, result.status, { body: result.body });
        return { ...result, replayed: false };
      });
    } catch (err) {
      if (err instanceof Rejection) return err.outcome;
      if (!(err instanceof ApiError)) throw err;
      // A refusal changed nothing (its transaction rolled back). A named refusal (404, 409) keeps its key and
      // replays like any answer; a request refused before any effect (400, 401, 403, 413) does not use it up.
      const outcome = errorOutcome(err);
      if (opts.mutating && !KEY_FREE_STATUSES.has(outcome.status))
        this.transaction(() => {
          if (!this.hasSchema()) this.migrate();
          this.remember(ctx, outcome.status, { body: null, error: outcome.error });
        });
      return outcome;
    }
  }

  private remember(ctx: CallContext, status: number, stored: { body: unknown; error?: Outcome["error"] }): void {
    this.sql.exec(
      "INSERT INTO idempotency (key, fingerprint, status, body, created_at) VALUES (?, ?, ?, ?, ?)",
      ctx.idempotency!.key, ctx.idempotency!.fingerprint, status, JSON.stringify(stored), ctx.now,
    );
  }

  /** Only a denial with window usage on the books can be lifted by a global reset. */
  private resetCouldHelp(now: number): boolean {
    return PRODUCTS.some((p) => WINDOW_KINDS.some((k) => this.window(p, k, now).used > 0));
  }

  /**
   * Epochs at most 1 s old if one is newer than this object's (deny path only). They come from this isolate's
   * cache, so a client denied in a loop costs the control object at most one call per isolate per second.
   */
  private async authoritativeResets(): Promise<ResetEpoch[] | null> {
    const epochs = await currentResets(this.env, DENY_PATH_EPOCH_MAX_AGE_MS);
    return (epochs.at(-1)?.seq ?? 0) > (this.accountRow()?.reset_seq ?? 0) ? epochs : null;
  }

  /**
   * The caller hands over only the latest global resets. An object idle through more of them than that
   * reads the ones it missed from the control object, so no reset is skipped.
   */
  private async withMissedResets(ctx: CallContext): Promise<CallContext> {
    const seen = this.accountRow()?.reset_seq;
    const oldest = ctx.resets?.[0]?.seq;
    if (seen === undefined || oldest === undefined || oldest <= seen + 1) return ctx;
    return { ...ctx, resets: await resetControl(this.env).epochsAfter(seen) };
  }

  /** Everything time does to an account, applied before any decision reads it. */
  private housekeep(ctx: CallContext): void {
    const account = this.accountRow();
    if (!account) return;
    const offset = ctx.now - Date.now();
    // Only a real change (the test clock moving) is written, not the few ms of skew between clocks.
    if (Math.abs(offset - account.clock_offset) > 1_000) this.updateAccount({ clock_offset: offset });
    this.applyGlobalResets(ctx, account);
    this.expireHolds(ctx);
    this.expireGrants(ctx);
    this.accrueBankedResets(ctx.now, account);
    this.expireTopUps(ctx.now);
  }

  private ensureAccount(ctx: CallContext): void {
    if (this.accountRow()) return;
    this.write(
      "account",
      "INSERT INTO account (singleton, account_id, plan, created_at, banked_accrued_at, clock_offset) VALUES (1, ?, ?, ?, ?, ?)",
      ctx.accountId, DEFAULT_PLAN, ctx.now, ctx.now, ctx.now - Date.now(),
    );
    this.sql.exec("INSERT INTO plan_history (since, plan) VALUES (?, ?)", ctx.now, DEFAULT_PLAN);
    // Global resets that predate the account do not apply to it.
    const latest = ctx.resets?.filter((r) => r.effectiveAt < ctx.now).reduce((m, r) => Math.max(m, r.seq), 0) ?? 0;
    if (latest > 0) this.updateAccount({ reset_seq: latest });
  }

  // ─────────────────────── state access ───────────────────────

  /**
   * Runs `fn` in one transaction. The account row, changed any number of times by `fn`, is written once at
   * the end; if anything throws, SQLite rolls back and the in-memory copy is dropped with it.
   */
  private transaction<T>(fn: () => T): T {
    try {
      return this.ctx.storage.transactionSync(() => {
        const result = fn();
        if (this.cache.accountDirty) {
          const a = this.cache.account!;
          this.sql.exec(
            "UPDATE account SET plan = ?, paused = ?, spend_cap = ?, auto_top_up = ?, flex_month = ?, flex_used = ?, reset_seq = ?, banked_accrued_at = ?, clock_offset = ?, charged_total = ?, resumed_at = ?, resumed_spend = ?, granted_total = ? WHERE singleton = 1",
            a.plan, a.paused, a.spend_cap, a.auto_top_up, a.flex_month, a.flex_used, a.reset_seq, a.banked_accrued_at, a.clock_offset, a.charged_total, a.resumed_at, a.resumed_spend, a.granted_total,
          );
          this.cache.accountDirty = false;
        }
        return result;
      });
    } catch (err) {
      this.cache = emptyCache();
      this.schemaReady = undefined;
      throw err;
    }
  }

  /** A write to a cached table (other than the account row and windows); the copy of that table reloads. */
  private write(table: CachedTable, query: string, ...params: SqlStorageValue[]): void {
    this.sql.exec(query, ...params);
    this.cache[table] = undefined;
  }

  /** Changes the account row in memory; `transaction` writes it once at the end. */
  private updateAccount(patch: Partial<Omit<AccountRow, "account_id" | "created_at">>): void {
    Object.assign(this.accountRow()!, patch);
    this.cache.accountDirty = true;
  }

  private rows<T>(query: string, ...params: SqlStorageValue[]): T[] {
    return this.sql.exec(query, ...params).toArray() as T[];
  }

  private one<T>(query: string, ...params: SqlStorageValue[]): T {
    return this.sql.exec(query, ...params).one() as T;
  }

  private accountRow(): AccountRow | undefined {
    if (!this.hasSchema()) return undefined;
    if (this.cache.account === undefined) this.cache.account = this.rows<AccountRow>("SELECT * FROM account WHERE singleton = 1")[0] ?? null;
    return this.cache.account ?? undefined;
  }

  private hasPendingOutbox(): boolean {
    return this.rows("SELECT 1 FROM outbox WHERE delivered_at IS NULL LIMIT 1").length > 0;
  }

  private window(product: Product, kind: WindowKind, now: number): WindowState {
    const key = `${product}:${kind}`;
    let stored = this.cache.windows.get(key);
    if (!stored) {
      const row = this.rows<{ opened_at: number | null; used: number }>("SELECT opened_at, used FROM windows WHERE product = ? AND kind = ?", product, kind)[0];
      stored = row ? { openedAt: row.opened_at, used: row.used } : { openedAt: null, used: 0 };
      this.cache.windows.set(key, stored);
    }
    return currentWindow(stored, kind, now);
  }

  private putWindow(product: Product, kind: WindowKind, w: WindowState): void {
    this.sql.exec(
      "INSERT INTO windows (product, kind, opened_at, used) VALUES (?, ?, ?, ?) ON CONFLICT (product, kind) DO UPDATE SET opened_at = excluded.opened_at, used = excluded.used",
      product, kind, w.openedAt, w.used,
    );
    this.cache.windows.set(`${product}:${kind}`, w);
  }

  /** Grants with credits left (`active = 1`), expired ones included until the sweep records them. */
  private liveGrants(): GrantState[] {
    return (this.cache.grants ??= this.rows<Row>("SELECT * FROM grants WHERE active = 1").map(grantFromRow));
  }

  private activeHolds(): HoldRow[] {
    return (this.cache.holds ??= this.rows<HoldRow>("SELECT * FROM holds WHERE state = 'active' ORDER BY created_at, rowid"));
  }

  private pendingTopUp(): PendingTopUp | null {
    if (this.cache.pendingTopUp === undefined)
      this.cache.pendingTopUp = this.rows<PendingTopUp>("SELECT id, requested_at FROM top_ups WHERE state = 'pending' LIMIT 1")[0] ?? null;
    return this.cache.pendingTopUp;
  }

  private insertGrant(g: GrantState, amount: number, topUpId: string | null): void {
    this.write(
      "grants",
      "INSERT INTO grants (id, kind, priority, products, amount, remaining, expires_at, created_at, top_up_id, active) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, 1)",
      g.id, g.kind, g.priority, g.products ? JSON.stringify(g.products) : null, amount, g.remaining, g.expiresAt, g.createdAt, topUpId,
    );
  }

  private flexState(account: AccountRow, now: number): { limit: number; used: number } | null {
    const limit = planFor(account.plan).flexMonthlyLimit;
    if (limit === null) return null;
    return { limit, used: account.flex_month === monthKey(now) ? account.flex_used : 0 };
  }

  private spentSince(fromMs: number): number {
    return this.one<{ s: number | null }>("SELECT SUM(amount) AS s FROM spend_minutes WHERE minute >= ?", Math.floor(fromMs / MINUTE_MS)).s ?? 0;
  }

  private waterfallInput(product: Product, now: number): WaterfallInput {
    const account = this.accountRow()!;
    const plan = planFor(account.plan);
    const limits = plan.windows[product];
    const spendCapRemaining = account.spend_cap === null ? null : Math.max(0, account.spend_cap - this.spentSince(utcDayStart(now)) - this.heldCredits());
    return {
      now,
      product,
      windows: {
        fiveHour: viewWindow(this.window(product, "fiveHour", now), "fiveHour", limits.fiveHour, now),
        weekly: viewWindow(this.window(product, "weekly", now), "weekly", limits.weekly, now),
      },
      grants: this.liveGrants(),
      flex: this.flexState(account, now),
      creditsPaused: account.paused === 1,
      spendCapRemaining,
    };
  }

  // ─────────────────────── charging ───────────────────────

  /** Takes one source's amount out of its layer (a charge or a hold's reservation). */
  private takeFromSource(product: Product, s: Source, now: number): void {
    if (s.layer === "window") {
      for (const kind of WINDOW_KINDS) this.putWindow(product, kind, chargeWindow(this.window(product, kind, now), kind, s.amount, now));
      this.sql.exec("INSERT INTO window_charges (product, at, amount) VALUES (?, ?, ?)", product, now, s.amount);
    } else if (s.layer === "grant") {
      this.write("grants", "UPDATE grants SET remaining = remaining - ?, active = CASE WHEN remaining - ? > 0 THEN 1 ELSE 0 END WHERE id = ?", s.amount, s.amount, s.grantId);
    } else {
      const account = this.accountRow()!;
      const used = this.flexState(account, now)?.used ?? 0;
      this.updateAccount({ flex_month: monthKey(now), flex_used: used + s.amount });
    }
  }

  private applyCharges(product: Product, sources: Source[], ctx: CallContext, meta: { decisionId?: string; holdId?: string; rateCardVersion?: string }): void {
    const before = { fiveHour: this.window(product, "fiveHour", ctx.now).used, weekly: this.window(product, "weekly", ctx.now).used };
    for (const s of sources) {
      this.takeFromSource(product, s, ctx.now);
      this.recordCharge(product, s, ctx, meta);
    }
    if (sources.some((s) => s.layer === "window")) this.recordWindowExhausted(product, ctx, before);
  }

  /** A `charge` ledger entry for one layer that paid, plus the spend counters it feeds. */
  private recordCharge(product: Product, s: Source, ctx: CallContext, meta: { decisionId?: string; holdId?: string; rateCardVersion?: string }): void {
    const account = this.accountRow()!;
    if (account.charged_total + s.amount > Number.MAX_SAFE_INTEGER)
      throw new ApiError("amount_out_of_range", "the account's charged total would pass 2^53 − 1 micro-credits", { max: Number.MAX_SAFE_INTEGER });
    this.updateAccount({ charged_total: account.charged_total + s.amount });
    if (s.layer !== "window") {
      this.sql.exec(
        "INSERT INTO spend_minutes (minute, amount) VALUES (?, ?) ON CONFLICT (minute) DO UPDATE SET amount = amount + excluded.amount",
        Math.floor(ctx.now / MINUTE_MS), s.amount,
      );
    }
    this.appendLedger(ctx, { kind: "charge", amount: s.amount, layer: s.layer, product, grantId: grantIdOf(s), ...meta });
    if (s.layer === "grant") this.afterCreditSpend(ctx, s.amount);
  }

  /** Returns a hold's reserved parts to their layers, each to the same window instance, grant or month it came from. */
  private giveBack(hold: HoldRow, reserved: Source[], ctx: CallContext, toRelease: Source[]): void {
    const opened = JSON.parse(hold.window_opened) as Record<WindowKind, number | null>;
    for (const s of reserved) this.appendLedger(ctx, { kind: "release", amount: s.amount, layer: s.layer, product: hold.product, grantId: grantIdOf(s), holdId: hold.id });
    for (const s of toRelease) {
      if (s.layer === "window") {
        for (const kind of WINDOW_KINDS) {
          const at = opened[kind];
          if (at !== null) this.putWindow(hold.product, kind, releaseWindow(this.window(hold.product, kind, ctx.now), kind, s.amount, at, ctx.now));
        }
        // Only a reservation still in the current windows is given back, so only then does the journal shrink.
        if (opened.weekly !== null && this.window(hold.product, "weekly", ctx.now).openedAt === opened.weekly)
          this.sql.exec("INSERT INTO window_charges (product, at, amount) VALUES (?, ?, ?)", hold.product, ctx.now, -s.amount);
      } else if (s.layer === "grant") {
        // An expired grant gets its reservation back and the expiry sweep records the remainder as expired.
        this.write("grants", "UPDATE grants SET remaining = remaining + ?, active = 1 WHERE id = ?", s.amount, s.grantId);
      } else {
        const account = this.accountRow()!;
        if (hold.flex_month === monthKey(ctx.now))
          this.updateAccount({ flex_used: Math.max(0, (this.flexState(account, ctx.now)?.used ?? 0) - s.amount) });
      }
    }
    this.expireGrants(ctx);
  }

  /** A `charge` or `write_off` entry of this account: from its outbox while there, else from the D1 ledger. */
  private async refundableEntry(accountId: string, entryId: string): Promise<{ kind: string; amount: number } | null> {
    const local = this.hasSchema() ? this.rows<{ message: string }>("SELECT message FROM outbox WHERE entry_id = ?", entryId)[0] : undefined;
    let found: { kind: string; amount: number } | null = null;
    if (local) {
      const m = JSON.parse(local.message) as SettlementMessage;
      if (m.type === "ledger") found = { kind: m.entry.kind, amount: m.entry.amount };
    } else {
      found = await this.env.DB.prepare("SELECT kind, amount FROM ledger WHERE id = ? AND account_id = ?").bind(entryId, accountId).first<{ kind: string; amount: number }>();
    }
    return found && (found.kind === "charge" || found.kind === "write_off") ? found : null;
  }

  /** Counts credits granted or refunded; refuses a lifetime total past 2^53 − 1, so no balance or ledger sum can pass it. */
  private countGranted(amount: number): void {
    const account = this.accountRow()!;
    if (account.granted_total + amount > Number.MAX_SAFE_INTEGER)
      throw new ApiError("amount_out_of_range", "the account's credits would pass 2^53 − 1 micro-credits", { max: Number.MAX_SAFE_INTEGER });
    this.updateAccount({ granted_total: account.granted_total + amount });
  }

  private activeHold(holdId: string): HoldRow {
    const hold = this.rows<HoldRow>("SELECT * FROM holds WHERE id = ?", holdId)[0];
    if (!hold) throw new ApiError("not_found", "no such hold");
    if (hold.state !== "active") throw new ApiError("hold_not_active", `the hold is already ${hold.state}`);
    return hold;
  }

  // ─────────────────────── time-driven changes ───────────────────────

  private expireHolds(ctx: CallContext): void {
    for (const hold of this.activeHolds().filter((h) => h.expires_at <= ctx.now)) {
      const reserved = JSON.parse(hold.sources) as Source[];
      this.giveBack(hold, reserved, ctx, reserved);
      this.write("holds", "UPDATE holds SET state = 'expired' WHERE id = ?", hold.id);
    }
  }

  /** An expired grant's remainder is recorded as expired, never spent. */
  private expireGrants(ctx: CallContext): void {
    for (const g of this.liveGrants().filter((g) => g.expiresAt !== null && g.expiresAt <= ctx.now)) {
      this.write("grants", "UPDATE grants SET remaining = 0, active = 0 WHERE id = ?", g.id);
      if (g.remaining > 0) {
        this.appendLedger(ctx, { kind: "expiry", amount: g.remaining, grantId: g.id });
        this.appendEvent(ctx, "credits.expired", { grantId: g.id, amount: g.remaining });
      }
    }
  }

  private availableBankedResets(now: number): BankedReset[] {
    this.cache.bankedResets ??= this.rows<BankedReset>(
      "SELECT id, expires_at FROM banked_resets WHERE used_at IS NULL ORDER BY expires_at IS NULL, expires_at, granted_at",
    );
    return this.cache.bankedResets.filter((b) => b.expires_at === null || b.expires_at > now);
  }

  private addBankedResets(count: number, now: number, expiresAt: number | null, origin: string): void {
    for (let i = 0; i < count; i++)
      this.write("bankedResets", "INSERT INTO banked_resets (id, granted_at, expires_at, origin) VALUES (?, ?, ?, ?)", crypto.randomUUID(), now, expiresAt, origin);
  }

  /** 1 banked reset per accrual period, up to the plan's cap. */
  private accrueBankedResets(now: number, account: AccountRow): void {
    const rule = planFor(account.plan).bankedResets;
    if (!rule) return;
    const period = rule.everyDays * DAY_MS;
    const periods = Math.floor((now - account.banked_accrued_at) / period);
    if (periods <= 0) return;
    const room = Math.max(0, rule.max - this.availableBankedResets(now).length);
    this.addBankedResets(Math.min(periods, room), now, null, "accrual");
    this.updateAccount({ banked_accrued_at: account.banked_accrued_at + periods * period });
  }

  /**
   * Applies global resets the object has not seen yet. Each applies only if the account existed at its
   * `effectiveAt` and its plan then was in scope; usage of windows opened before `effectiveAt` is forgiven.
   */
  private applyGlobalResets(ctx: CallContext, account: AccountRow): void {
    const fresh = (ctx.resets ?? []).filter((r) => r.seq > account.reset_seq).sort((a, b) => a.seq - b.seq);
    if (fresh.length === 0) return;
    for (const r of fresh) {
      if (account.created_at > r.effectiveAt) continue;
      const planThen = this.rows<{ plan: PlanId }>("SELECT plan FROM plan_history WHERE since <= ? ORDER BY since DESC, rowid DESC LIMIT 1", r.effectiveAt)[0]?.plan ?? account.plan;
      if (r.plans && !r.plans.includes(planThen)) continue;
      let forgiven = 0;
      for (const product of r.products ?? PRODUCTS) {
        for (const kind of WINDOW_KINDS) {
          const w = this.window(product, kind, ctx.now);
          if (w.openedAt === null || w.openedAt > r.effectiveAt) continue;
          // Usage recorded after effectiveAt (before this object saw the reset) still counts.
          const after = Math.max(0, this.one<{ s: number | null }>(
            "SELECT SUM(amount) AS s FROM window_charges WHERE product = ? AND at > ? AND at >= ?", product, r.effectiveAt, w.openedAt,
          ).s ?? 0);
          forgiven = Math.max(forgiven, w.used - after);
          this.putWindow(product, kind, after > 0 ? { openedAt: w.openedAt, used: Math.min(after, w.used) } : { openedAt: null, used: 0 });
        }
        this.sql.exec("DELETE FROM window_charges WHERE product = ? AND at <= ?", product, r.effectiveAt);
      }
      const rule = planFor(planThen).bankedResets;
      if (r.bankedResets === "restore" && rule) {
        const missing = rule.max - this.availableBankedResets(ctx.now).length;
        if (missing > 0) this.addBankedResets(missing, ctx.now, null, `global:${r.resetId}`);
      }
      if (r.grantBankedResets) {
        const expiresAt = r.effectiveAt + r.grantBankedResets.expiresInHours * HOUR_MS;
        if (expiresAt > ctx.now) this.addBankedResets(r.grantBankedResets.count, ctx.now, expiresAt, `global:${r.resetId}`);
      }
      if (forgiven > 0) this.appendLedger(ctx, { kind: "reset", amount: forgiven, note: `global:${r.resetId}` });
      this.appendEvent(ctx, "reset.applied", { resetId: r.resetId, global: true, forgiven });
    }
    this.updateAccount({ reset_seq: fresh[fresh.length - 1].seq });
  }

  // ─────────────────────── drain guards ───────────────────────

  /**
   * The waterfall with the anomaly guard (SPEC §4): if an allowed decision's credit part would take the
   * trailing spend (held credits included) above max(floor, multiplier × the baseline average), credit
   * spending pauses and the decision is taken again as paused — before any charge, not after.
   */
  private decideGuarded(charge: Charge, ctx: CallContext): Decision {
    const input = this.waterfallInput(charge.product, ctx.now);
    const decision = decide(input, charge.cost);
    if (!decision.allowed || !this.pausesOn(ctx, creditPartOf(decision.sources))) return decision;
    return decide({ ...input, creditsPaused: true }, charge.cost);
  }

  /**
   * The anomaly guard for every credit spend (consume, hold, the part of a settle above its hold): true when
   * spending `creditPart` more would take the trailing spend past the threshold. It then pauses credit spending
   * and records `account.credits_paused`; the caller spends no credits.
   */
  private pausesOn(ctx: CallContext, creditPart: number): boolean {
    if (creditPart === 0) return false;
    const g = catalog.guards.anomaly;
    const trailing = this.trailingSpend(ctx.now) + this.heldCredits();
    if (trailing + creditPart <= g.floorMicroCredits) return false;
    const threshold = anomalyThreshold(g, this.spentSince(ctx.now - g.baselineDays * DAY_MS));
    if (trailing + creditPart <= threshold) return false;
    this.updateAccount({ paused: 1 });
    this.appendEvent(ctx, "account.credits_paused", { trailingSpend: trailing, attempted: creditPart, threshold });
    return true;
  }

  /**
   * Credit spend in the trailing window. After a resume it counts from the resume instant, to the millisecond:
   * the resume's own minute counts, less what that minute held when the operator resumed.
   */
  private trailingSpend(now: number): number {
    const g = catalog.guards.anomaly;
    const from = now - (g.trailingMinutes - 1) * MINUTE_MS;
    const account = this.accountRow()!;
    if (account.resumed_at === null || Math.floor(account.resumed_at / MINUTE_MS) < Math.floor(from / MINUTE_MS)) return this.spentSince(from);
    return Math.max(0, this.spentSince(account.resumed_at) - account.resumed_spend);
  }

  /** Credits (grant and flex parts) reserved by active holds: they count toward the guards as if spent. */
  private heldCredits(): number {
    return this.heldBy((s) => s.layer !== "window");
  }

  /** What active holds reserve from the sources `which` picks. */
  private heldBy(which: (s: Source) => boolean): number {
    let held = 0;
    for (const h of this.activeHolds())
      for (const s of JSON.parse(h.sources) as Source[]) if (which(s)) held += s.amount;
    return held;
  }

  /** `credits.low` / `credits.depleted` when a spend crosses the line, then the auto top-up check. */
  private afterCreditSpend(ctx: CallContext, spent: number): void {
    const after = this.creditBalance(ctx.now);
    const before = after + spent;
    const low = catalog.guards.lowBalanceMicroCredits;
    if (after === 0) this.appendEvent(ctx, "credits.depleted", { balance: 0 });
    else if (before >= low && after < low) this.appendEvent(ctx, "credits.low", { balance: after, threshold: low });
    this.maybeRequestTopUp(ctx);
  }

  /** One `window.exhausted` event per window instance: when a charge takes it to its limit. */
  private recordWindowExhausted(product: Product, ctx: CallContext, before: Record<WindowKind, number>): void {
    const limits = planFor(this.accountRow()!.plan).windows[product];
    for (const kind of WINDOW_KINDS) {
      const w = this.window(product, kind, ctx.now);
      if (before[kind] < limits[kind] && w.used >= limits[kind])
        this.appendEvent(ctx, "window.exhausted", { product, window: kind, resetsAt: isoOrNull(viewWindow(w, kind, limits[kind], ctx.now).resetsAt) });
    }
  }

  private autoTopUp(): AutoTopUpConfig {
    const raw = this.accountRow()?.auto_top_up;
    return raw ? (JSON.parse(raw) as AutoTopUpConfig) : DEFAULT_AUTO_TOP_UP;
  }

  /** Records one `topup.requested` when the balance is below the threshold, within the cooldown and monthly cap. */
  private maybeRequestTopUp(ctx: CallContext): void {
    const cfg = this.autoTopUp();
    if (!cfg.enabled || !planFor(this.accountRow()!.plan).autoTopUpAllowed) return;
    if (this.creditBalance(ctx.now) >= cfg.threshold) return;
    if (this.pendingTopUp() !== null) return;
    const last = this.rows<{ requested_at: number }>("SELECT requested_at FROM top_ups ORDER BY requested_at DESC LIMIT 1")[0];
    if (last && ctx.now - last.requested_at < TOP_UP_COOLDOWN_MS) return;
    const month = monthKey(ctx.now);
    const thisMonth = this.one<{ n: number }>("SELECT COUNT(*) AS n FROM top_ups WHERE month = ?", month).n;
    if (thisMonth >= cfg.maxPerMonth) return;
    const topUpId = `tu_${crypto.randomUUID()}`;
    this.write("pendingTopUp", "INSERT INTO top_ups (id, requested_at, amount, state, month) VALUES (?, ?, ?, 'pending', ?)", topUpId, ctx.now, cfg.amount, month);
    this.appendEvent(ctx, "topup.requested", { topUpId, amount: cfg.amount });
  }

  /** A purchase carrying a `topUpId` confirms that pending (or timed-out) request, once. */
  private confirmTopUp(topUpId: string): void {
    const t = this.rows<{ state: string }>("SELECT state FROM top_ups WHERE id = ?", topUpId)[0];
    if (!t) throw new ApiError("topup_unknown", "no top-up with this topUpId was requested");
    if (t.state === "confirmed") throw new ApiError("topup_unknown", "this top-up was already confirmed");
    this.write("pendingTopUp", "UPDATE top_ups SET state = 'confirmed' WHERE id = ?", topUpId);
  }

  private expireTopUps(now: number): void {
    const pending = this.pendingTopUp();
    if (pending === null || pending.requested_at > now - TOP_UP_PENDING_TIMEOUT_MS) return;
    this.write("pendingTopUp", "UPDATE top_ups SET state = 'failed' WHERE state = 'pending' AND requested_at <= ?", now - TOP_UP_PENDING_TIMEOUT_MS);
  }

  // ─────────────────────── outbox ───────────────────────

  /** Appends a ledger entry to the outbox in the caller's transaction; returns its id. */
  private appendLedger(ctx: CallContext, e: Omit<LedgerEntry, "id" | "accountId" | "createdAt">): string {
    const entry: LedgerEntry = {
      id: uuidv7(),
      accountId: ctx.accountId,
      createdAt: ctx.now,
      ...(ctx.idempotency ? { idempotencyKey: ctx.idempotency.key } : {}),
      ...stripUndefined(e),
    };
    this.outboxPending = true;
    this.sql.exec("INSERT INTO outbox (entry_id, message, created_at) VALUES (?, ?, ?)", entry.id, JSON.stringify({ type: "ledger", entry } satisfies SettlementMessage), ctx.now);
    return entry.id;
  }

  private appendEvent(ctx: CallContext, type: string, data: Record<string, unknown>): void {
    const event: AccountEvent = { id: uuidv7(), accountId: ctx.accountId, type, createdAt: ctx.now, data };
    this.outboxPending = true;
    this.sql.exec("INSERT INTO outbox (entry_id, message, created_at) VALUES (?, ?, ?)", event.id, JSON.stringify({ type: "event", event } satisfies SettlementMessage), ctx.now);
  }

  private logDecision(id: string, ctx: CallContext, charge: Charge, reason: string | null, sources: Source[] | null): void {
    this.sql.exec(
      "INSERT INTO decisions (id, created_at, product, cost, allowed, reason, sources, idempotency_key) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
      id, ctx.now, charge.product, charge.cost, reason === null ? 1 : 0, reason, sources ? JSON.stringify(sources) : null, ctx.idempotency?.key ?? null,
    );
  }

  // ─────────────────────── alarms ───────────────────────

  /** Asks for an alarm at request-clock time `at` (converted to the wall clock). */
  private wakeAt(at: number, ctx: CallContext): void {
    void this.ensureAlarm(Date.now() + Math.max(0, at - ctx.now));
  }

  private async ensureAlarm(at: number): Promise<void> {
    if (this.alarmAt !== null && this.alarmAt <= at) return;
    this.alarmAt = at;
    await this.ctx.storage.setAlarm(at);
  }

  /** The next time anything is due: an undelivered outbox, a hold or grant expiry, or a record to prune. */
  private scheduleNextAlarm(ctx: CallContext): void {
    const due: number[] = [];
    const min = (query: string) => this.one<{ t: number | null }>(query).t;
    if (this.hasPendingOutbox()) due.push(Date.now() + OUTBOX_RETRY_MS);
    const inClock = (t: number | null, after = 0) => {
      if (t !== null) due.push(Date.now() + Math.max(0, t + after - ctx.now));
    };
    inClock(min("SELECT MIN(expires_at) AS t FROM holds WHERE state = 'active'"));
    inClock(min("SELECT MIN(expires_at) AS t FROM grants WHERE active = 1"));
    inClock(min("SELECT MIN(created_at) AS t FROM idempotency"), IDEMPOTENCY_RETENTION_MS);
    inClock(min("SELECT MIN(created_at) AS t FROM decisions"), DECISION_RETENTION_MS);
    const delivered = min("SELECT MIN(delivered_at) AS t FROM outbox WHERE delivered_at IS NOT NULL");
    if (delivered !== null) due.push(Math.max(Date.now(), delivered + DELIVERED_OUTBOX_RETENTION_MS));
    if (due.length > 0) void this.ensureAlarm(Math.min(...due));
  }

  // ─────────────────────── views ───────────────────────

  /** The full account summary in a decision's body, only with `?include=account` (SPEC §8). */
  private accountIfAsked(ctx: CallContext): { account?: ReturnType<AccountDO["summaryBody"]> } {
    return ctx.includeAccount ? { account: this.summaryBody(ctx.now) } : {};
  }

  /**
   * A decision's answer (SPEC §8): `remaining` always, the account only with `?include=account`, both recorded
   * as answered. A replay asked with the other `include` drops the recorded account, or adds it as it stands now.
   * Also the product's windows, for the RateLimit header fields.
   */
  private async decision(ctx: CallContext, productOf: () => Product | null, answer: Promise<Outcome>): Promise<Outcome> {
    const outcome = await answer;
    const account = this.accountRow();
    const body: unknown = outcome.body;
    if (body !== null && typeof body === "object" && !outcome.error) {
      const { account: stored, ...lean } = body as Record<string, unknown>;
      outcome.body = ctx.includeAccount && account ? { ...lean, account: stored ?? this.summaryBody(ctx.now) } : lean;
    }
    const product = account ? productOf() : null;
    if (product) outcome.rateLimit = this.windowsOf(product, ctx.now);
    return outcome;
  }

  private windowsOf(product: Product, now: number) {
    const limits = planFor(this.accountRow()!.plan).windows[product];
    const view = (k: WindowKind) => viewWindow(this.window(product, k, now), k, limits[k], now);
    return { product, fiveHour: view("fiveHour"), weekly: view("weekly") };
  }

  /** SPEC §8 `remaining`: the product's two windows and the spendable credit balance. */
  private remainingOf(product: Product, now: number) {
    const { fiveHour, weekly } = this.windowsOf(product, now);
    return {
      product,
      fiveHour: { remaining: fiveHour.remaining, resetsAt: isoOrNull(fiveHour.resetsAt) },
      weekly: { remaining: weekly.remaining, resetsAt: isoOrNull(weekly.resetsAt) },
      credits: this.creditBalance(now),
    };
  }

  private holdProduct(holdId: string): Product | null {
    return this.rows<{ product: Product }>("SELECT product FROM holds WHERE id = ?", holdId)[0]?.product ?? null;
  }

  private creditBalance(now: number): number {
    return this.liveGrants()
      .filter((g) => g.expiresAt === null || g.expiresAt > now)
      .reduce((s, g) => s + g.remaining, 0);
  }

  private bankedResetsJson(now: number) {
    const account = this.accountRow();
    const items = this.availableBankedResets(now);
    return {
      available: items.length,
      max: planFor(account?.plan ?? DEFAULT_PLAN).bankedResets?.max ?? 0,
      items: items.map((i) => ({ id: i.id, expiresAt: isoOrNull(i.expires_at) })),
    };
  }

  private summaryBody(now: number) {
    const account = this.accountRow()!;
    const plan = planFor(account.plan);
    const grants = this.liveGrants()
      .filter((g) => g.expiresAt === null || g.expiresAt > now)
      .sort(burnDownOrder);
    const cfg = this.autoTopUp();
    const pending = this.pendingTopUp();
    const spendCap = account.spend_cap === null ? null : { dailyLimit: account.spend_cap, spentToday: this.spentSince(utcDayStart(now)) };
    return {
      accountId: account.account_id,
      plan: plan.id,
      products: productsJson(plan, (p, k) => this.window(p, k, now), now),
      credits: {
        balance: grants.reduce((s, g) => s + g.remaining, 0),
        grants: grants.map(grantJson),
        autoTopUp: { ...cfg, pending: pending ? { topUpId: pending.id, requestedAt: iso(pending.requested_at) } : null },
        flex: this.flexState(account, now),
      },
      bankedResets: this.bankedResetsJson(now),
      holds: this.activeHolds().map((h) => ({
        holdId: h.id,
        product: h.product,
        amount: h.amount,
        expiresAt: iso(h.expires_at),
      })),
      paused: account.paused === 1,
      spendCap,
    };
  }

  /** The summary of an account that has never been written: a fresh `go` account. */
  private virtualSummary(ctx: CallContext) {
    const plan = planFor(DEFAULT_PLAN);
    return {
      accountId: ctx.accountId,
      plan: plan.id,
      products: productsJson(plan, () => ({ openedAt: null, used: 0 }), ctx.now),
      credits: { balance: 0, grants: [], autoTopUp: { ...DEFAULT_AUTO_TOP_UP, pending: null }, flex: null },
      bankedResets: { available: 0, max: plan.bankedResets?.max ?? 0, items: [] },
      holds: [],
      paused: false,
      spendCap: null,
    };
  }

  private denialJson(d: Extract<ReturnType<typeof decide>, { allowed: false }>) {
    return {
      allowed: false as const,
      reason: d.reason,
      ...(d.retryAfterSeconds !== undefined ? { retryAfterSeconds: d.retryAfterSeconds } : {}),
      ...(d.resetsAt !== undefined ? { resetsAt: iso(d.resetsAt) } : {}),
      ...(d.offer ? { offer: d.offer } : {}),
    };
  }
}

// ─────────────────────── plain helpers ───────────────────────

function productsJson(plan: Plan, windowOf: (p: Product, k: WindowKind) => WindowState, now: number) {
  return Object.fromEntries(
    PRODUCTS.map((p) => [
      p,
      Object.fromEntries(WINDOW_KINDS.map((k) => [k, windowJson(viewWindow(windowOf(p, k), k, plan.windows[p][k], now))])),
    ]),
  ) as Record<Product, Record<WindowKind, ReturnType<typeof windowJson>>>;
}

function grantFromRow(r: Row): GrantState {
  return {
    id: r.id as string,
    kind: r.kind as GrantState["kind"],
    priority: r.priority as number,
    products: r.products === null ? null : (JSON.parse(r.products as string) as Product[]),
    remaining: r.remaining as number,
    expiresAt: r.expires_at as number | null,
    createdAt: r.created_at as number,
  };
}

function grantJson(g: GrantState) {
  return { id: g.id, kind: g.kind, priority: g.priority, remaining: g.remaining, expiresAt: isoOrNull(g.expiresAt), products: g.products };
}

/** What grants and flex pay of a decision: the part the drain guards look at. */
function creditPartOf(sources: readonly Source[]): number {
  return sources.reduce((sum, s) => sum + (s.layer === "window" ? 0 : s.amount), 0);
}

function grantIdOf(s: Source): string | undefined {
  return s.layer === "grant" ? s.grantId : undefined;
}

/** Sums parts that came from the same layer and grant, keeping first-seen order. */
function mergeSources(sources: Source[]): Source[] {
  const out: Source[] = [];
  for (const s of sources) {
    const same = out.find((o) => o.layer === s.layer && grantIdOf(o) === grantIdOf(s));
    if (same) same.amount += s.amount;
    else out.push({ ...s });
  }
  return out;
}

function stripUndefined<T extends object>(o: T): T {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as T;
}

function errorOutcome(err: ApiError): Outcome {
  return { status: err.status, body: null, error: { code: err.code, message: err.message, ...(err.details === undefined ? {} : { details: err.details }) } };
}

export type { ResetEpoch };
