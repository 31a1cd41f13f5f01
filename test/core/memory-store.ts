/**
 * An in-memory stand-in for `durable-objects/account/store.ts`, for the pure-core model test (plain Node, no
 * workerd). It keeps the history the SQL store keeps, with the same semantics statement by statement:
 *
 * - `reads` answers the core's range questions as the store's SELECTs do;
 * - `apply(prev, next, effects, now)` is `store.write`: the account row (inserted once, then updated column by
 *   column, never `account_id`/`created_at`), changed windows upserted (never deleted), grants diffed (a changed
 *   remainder updated, a new grant upserted — a grant that ran out and gets credits back is re-activated — and a grant
 *   that left the live set zeroed and deactivated, its row kept), new holds inserted, banked resets marked used or
 *   inserted, then each effect in order (a `window_usage_cleared` deletes the usage rows written before it in the same
 *   step, as the store drops the step's usage not yet written). The SQL store keeps window usage on the journal rows
 *   of the step that recorded it rather than in rows of its own; the sums any time range gives are the same;
 * - `load()` is `store.load`: what a restarted object would read back (live grants, active holds by creation,
 *   unused banked resets in redemption order, the first pending top-up);
 * - `prune(now)` is the part of `store.prune` the core can observe (closed holds, window usage, spend minutes).
 *   Kept answers and the outbox belong to the shell: the journal here is never pruned, it stands for the outbox plus
 *   the D1 ledger the consumer writes.
 * - `decisions` are the core's `decision` effects, which the SQL store does not keep (a decision is its journal
 *   entries and its kept answer): the model test checks them here (I8).
 *
 * Primary keys and UNIQUE constraints the SQL has throw here too (a duplicate ledger id, hold id, banked reset id…).
 */
import { catalog, type PlanId, type Product, WEEK_MS } from "../../worker/catalog";
import type {
  AccountRecord,
  AccountState,
  BankedReset,
  Effect,
  GrantRecord,
  HoldRecord,
  HoldStatus,
  Reads,
  WindowKey,
} from "../../worker/core/account/state";
import { type JournalMessage, type LedgerEntry, seqOf } from "../../worker/core/journal";
import type { WindowState } from "../../worker/core/windows";

const MINUTE_MS = 60_000;
const DAY_MS = 86_400_000;
/** store.ts RETENTION.closedHoldsMs: closed holds are kept this long (and decisions here, for the model test). */
const DECISIONS_MS = 7 * DAY_MS;

type TopUpState = "pending" | "confirmed" | "failed";
interface GrantRow {
  grant: GrantRecord;
  active: boolean;
}
interface HoldRow {
  hold: HoldRecord;
  state: HoldStatus;
}
interface BankedRow {
  reset: BankedReset;
  usedAt: number | null;
}
interface TopUpRow {
  id: string;
  requestedAt: number;
  amount: number;
  state: TopUpState;
  month: string;
}
export interface DecisionRow {
  id: string;
  at: number;
  product: Product;
  cost: number;
  allowed: boolean;
  reason: string | null;
  idempotencyKey: string | null;
}

// Copies, as rows hold their own values (the snapshots they come from are frozen by the test).
const copyGrant = (g: GrantRecord): GrantRecord => ({ ...g, products: g.products && [...g.products] });
const copyHold = (h: HoldRecord): HoldRecord => ({
  ...h,
  sources: h.sources.map((s) => ({ ...s })),
  windowOpened: { ...h.windowOpened },
});
const copyAccount = (a: AccountRecord): AccountRecord => ({ ...a, autoTopUp: a.autoTopUp && { ...a.autoTopUp } });

export class MemoryStore {
  account: AccountRecord | null = null;
  /** Maps keep insertion order: it stands for SQLite's rowid order. */
  readonly windows = new Map<WindowKey, WindowState>();
  readonly grants = new Map<string, GrantRow>();
  readonly holds = new Map<string, HoldRow>();
  readonly banked: BankedRow[] = [];
  readonly spendMinutes = new Map<number, number>();
  windowCharges: { product: Product; at: number; amount: number }[] = [];
  readonly planHistory: { since: number; plan: PlanId }[] = [];
  readonly entryRefunds = new Map<string, number>();
  readonly topUps = new Map<string, TopUpRow>();
  decisions: DecisionRow[] = [];
  /** Every journal message written, in order (the outbox, never pruned here). */
  readonly journal: JournalMessage[] = [];
  private readonly journalSeqs = new Set<number>();

  /** The ledger entries of the journal, in order. */
  ledger(): LedgerEntry[] {
    const out: LedgerEntry[] = [];
    for (const m of this.journal) if (m.type === "ledger") out.push(m.entry);
    return out;
  }

  // ─────────────────────────── reads ───────────────────────────

  readonly reads: Reads = {
    spentSince: (fromMs) => {
      const from = Math.floor(fromMs / MINUTE_MS);
      let s = 0;
      for (const [minute, amount] of this.spendMinutes) if (minute >= from) s += amount;
      return s;
    },
    spentInMinute: (minute) => this.spendMinutes.get(minute) ?? 0,
    windowUsageAfter: (product, afterMs) => {
      let s = 0;
      for (const r of this.windowCharges) if (r.product === product && r.at > afterMs) s += r.amount;
      return s;
    },
    planAt: (ms) => {
      // ORDER BY since DESC, rowid DESC LIMIT 1
      let best: { since: number; plan: PlanId } | undefined;
      for (const r of this.planHistory) if (r.since <= ms && (!best || r.since >= best.since)) best = r;
      return best?.plan;
    },
    lastTopUpAt: () => {
      let t: number | undefined;
      for (const r of this.topUps.values()) if (t === undefined || r.requestedAt > t) t = r.requestedAt;
      return t;
    },
    topUpsInMonth: (month) => {
      let n = 0;
      for (const r of this.topUps.values()) if (r.month === month) n++;
      return n;
    },
    topUpStatus: (id) => this.topUps.get(id)?.state,
    refundedAgainst: (entryId) => this.entryRefunds.get(entryId) ?? 0,
    holdStatus: (holdId) => {
      const h = this.holds.get(holdId);
      return h?.state;
    },
    grant: (id) => {
      const g = this.grants.get(id);
      return g ? copyGrant(g.grant) : undefined;
    },
  };

  // ─────────────────────────── write ───────────────────────────

  /** store.write: the difference from `prev` to `next`, then the step's effects. */
  apply(prev: AccountState, next: AccountState, effects: readonly Effect[], now: number): void {
    if (next.account && next.account !== prev.account) this.writeAccount(prev.account, next.account);
    for (const [key, w] of Object.entries(next.windows) as [WindowKey, WindowState | undefined][]) {
      if (!w) continue;
      const before = prev.windows[key];
      if (!before || before.openedAt !== w.openedAt || before.used !== w.used)
        this.windows.set(key, { openedAt: w.openedAt, used: w.used });
    }
    this.writeGrants(prev.grants, next.grants);
    const prevHolds = new Set(prev.holds.map((h) => h.id));
    for (const h of next.holds) {
      if (prevHolds.has(h.id)) continue;
      if (this.holds.has(h.id)) throw new Error(`holds: duplicate id ${h.id}`);
      this.holds.set(h.id, { hold: copyHold(h), state: "active" });
    }
    const nextBanked = new Set(next.bankedResets.map((b) => b.id));
    const prevBanked = new Set(prev.bankedResets.map((b) => b.id));
    for (const b of prev.bankedResets)
      if (!nextBanked.has(b.id)) for (const row of this.banked) if (row.reset.id === b.id) row.usedAt = now;
    for (const b of next.bankedResets) {
      if (prevBanked.has(b.id)) continue;
      if (this.banked.some((row) => row.reset.id === b.id)) throw new Error(`banked_resets: duplicate id ${b.id}`);
      this.banked.push({ reset: { ...b }, usedAt: null });
    }
    this.writeEffects(effects);
  }

  private writeAccount(prev: AccountRecord | null, a: AccountRecord): void {
    if (!prev) {
      if (this.account) throw new Error("account: the row exists already");
      this.account = copyAccount(a);
      return;
    }
    const row = this.account;
    if (!row) throw new Error("account: UPDATE of a row that was never inserted");
    // The UPDATE's columns: everything but account_id and created_at.
    const { accountId: _id, createdAt: _created, ...columns } = copyAccount(a);
    Object.assign(row, columns);
  }

  private writeGrants(prev: readonly GrantRecord[], next: readonly GrantRecord[]): void {
    const before = new Map(prev.map((g) => [g.id, g]));
    const live = new Set(next.map((g) => g.id));
    for (const g of next) {
      const was = before.get(g.id);
      if (was?.remaining === g.remaining) continue;
      const row = this.grants.get(g.id);
      if (was) {
        // UPDATE grants SET remaining WHERE id
        if (row) row.grant.remaining = g.remaining;
      } else if (row) {
        // INSERT … ON CONFLICT (id) DO UPDATE SET remaining = excluded.remaining, active = 1
        row.grant.remaining = g.remaining;
        row.active = true;
      } else this.grants.set(g.id, { grant: copyGrant(g), active: true });
    }
    for (const g of prev) {
      if (live.has(g.id)) continue;
      const row = this.grants.get(g.id);
      if (row) {
        row.grant.remaining = 0;
        row.active = false;
      }
    }
  }

  private writeEffects(effects: readonly Effect[]): void {
    const spend = new Map<number, number>();
    for (const e of effects) {
      switch (e.type) {
        case "journal": {
          // the journal's key is `seq` (the model test checks that ids are unique: I9)
          const seq = seqOf(e.message);
          if (this.journalSeqs.has(seq)) throw new Error(`outbox: duplicate seq ${seq}`);
          this.journalSeqs.add(seq);
          // the core builds each message afresh and never touches it again
          this.journal.push(e.message);
          break;
        }
        case "decision":
          if (this.decisions.some((d) => d.id === e.id)) throw new Error(`decisions: duplicate id ${e.id}`);
          this.decisions.push({
            id: e.id,
            at: e.at,
            product: e.product,
            cost: e.cost,
            allowed: e.reason === null,
            reason: e.reason,
            idempotencyKey: e.idempotencyKey ?? null,
          });
          break;
        case "spend":
          spend.set(e.minute, (spend.get(e.minute) ?? 0) + e.amount);
          break;
        case "window_usage":
          this.windowCharges.push({ product: e.product, at: e.at, amount: e.amount });
          break;
        case "window_usage_cleared":
          this.windowCharges = this.windowCharges.filter(
            (r) => r.product !== e.product || (e.upTo !== null && r.at > e.upTo),
          );
          break;
        case "plan_changed":
          this.planHistory.push({ since: e.since, plan: e.plan });
          break;
        case "entry_refunded":
          this.entryRefunds.set(e.entryId, e.refunded);
          break;
        case "hold_closed": {
          const h = this.holds.get(e.holdId);
          if (h) h.state = e.status;
          break;
        }
        case "topup_requested":
          if (this.topUps.has(e.topUpId)) throw new Error(`top_ups: duplicate id ${e.topUpId}`);
          this.topUps.set(e.topUpId, {
            id: e.topUpId,
            requestedAt: e.at,
            amount: e.amount,
            state: "pending",
            month: e.month,
          });
          break;
        case "topup_confirmed": {
          const t = this.topUps.get(e.topUpId);
          if (t) t.state = "confirmed";
          break;
        }
        case "topups_failed":
          for (const t of this.topUps.values())
            if (t.state === "pending" && t.requestedAt <= e.requestedUpTo) t.state = "failed";
          break;
        case "wake":
          break;
      }
    }
    for (const [minute, amount] of spend) this.spendMinutes.set(minute, (this.spendMinutes.get(minute) ?? 0) + amount);
  }

  // ─────────────────────────── load and prune ───────────────────────────

  /** store.load: the snapshot a restarted object reads back (rows are shared, not copied: read it, do not keep it). */
  load(): AccountState {
    if (!this.account)
      return { account: null, windows: {}, grants: [], holds: [], bankedResets: [], pendingTopUp: null };
    const windows: AccountState["windows"] = {};
    for (const [key, w] of this.windows) windows[key] = w;
    const pending = [...this.topUps.values()].find((t) => t.state === "pending");
    const holds = [...this.holds.values()]
      .map((h, rowid) => ({ h, rowid }))
      .filter((x) => x.h.state === "active")
      .sort((a, b) => a.h.hold.createdAt - b.h.hold.createdAt || a.rowid - b.rowid)
      .map((x) => x.h.hold);
    const banked = this.banked
      .map((b, rowid) => ({ b, rowid }))
      .filter((x) => x.b.usedAt === null)
      .sort((x, y) => {
        const xe = x.b.reset.expiresAt;
        const ye = y.b.reset.expiresAt;
        // ORDER BY expires_at IS NULL, expires_at, granted_at, rowid
        if ((xe === null) !== (ye === null)) return xe === null ? 1 : -1;
        return (xe ?? 0) - (ye ?? 0) || x.b.reset.grantedAt - y.b.reset.grantedAt || x.rowid - y.rowid;
      })
      .map((x) => x.b.reset);
    return {
      account: this.account,
      windows,
      grants: [...this.grants.values()].filter((g) => g.active).map((g) => g.grant),
      holds,
      bankedResets: banked,
      pendingTopUp: pending ? { id: pending.id, requestedAt: pending.requestedAt } : null,
    };
  }

  /** store.prune, for what the core can read back. */
  prune(now: number): void {
    const baselineMs = catalog.guards.anomaly.baselineDays * DAY_MS;
    this.decisions = this.decisions.filter((d) => d.at >= now - DECISIONS_MS);
    for (const [id, h] of this.holds)
      if (h.state !== "active" && h.hold.expiresAt < now - DECISIONS_MS) this.holds.delete(id);
    this.windowCharges = this.windowCharges.filter((r) => r.at >= now - WEEK_MS);
    const oldest = Math.floor((now - baselineMs) / MINUTE_MS);
    for (const minute of [...this.spendMinutes.keys()]) if (minute < oldest) this.spendMinutes.delete(minute);
  }

  /** Credits held in grants, live or not (store.grantRemainder: reconciliation's position). */
  grantRemainder(): number {
    let s = 0;
    for (const g of this.grants.values()) s += g.grant.remaining;
    return s;
  }
}
