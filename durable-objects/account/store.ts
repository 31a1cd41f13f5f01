/**
 * All of the account's SQL. `load` reads the snapshot once; `write(prev, next, effects)` writes the difference and
 * the step's effects inside the caller's `transactionSync`; `reads` answers the core's range questions.
 *
 * Rows written are what a Durable Object's SQLite bills, so a decision writes few: the account row (its windows in
 * it), one journal row per entry (no secondary index), the window usage on those journal rows, and its kept answer
 * (./answer-book.ts); pruning later deletes each journal row once and drops answers table by table.
 * test/rows-written.test.ts measures it.
 */
import { catalog, WEEK_MS } from "../../worker/catalog";
import type {
  AccountRecord,
  AccountState,
  BankedReset,
  Effect,
  GrantRecord,
  HoldRecord,
  Reads,
} from "../../worker/core/account/state";
import { EMPTY_STATE } from "../../worker/core/account/state";
import type { AnswerBook } from "../idempotency";
import { DAY_MS, minuteOf } from "../../worker/core/time";
import { hasSchema, migrate } from "../migrations";
import type { Sql } from "../sql";
import {
  type AccountRow,
  accountOf,
  type GrantRow,
  grantOf,
  type HoldRow,
  holdOf,
  holdStatusOf,
  planOf,
  sameRecord,
  sameWindows,
  windowsJson,
  windowsOf,
} from "./rows";
import { ANSWER_HORIZON_MS, AnswerTables } from "./answer-book";
import { type JournalRow, rowOf } from "./journal";
import { MIGRATIONS } from "./schema";

type Sum = { s: number | null };

export const RETENTION = {
  idempotencyMs: ANSWER_HORIZON_MS,
  /** a hold that ended is kept this long after its expiry */
  closedHoldsMs: 7 * DAY_MS,
  /**
   * a confirmed journal row is kept this long after it was made: SPEC §7 keeps each decision traceable entry by entry
   * in the journal for at least 7 days, which also covers the window usage rows carry (a week: the longest window)
   */
  journalMs: WEEK_MS,
  /** usage recorded before migration 8, in `window_charges` */
  windowUsageMs: WEEK_MS,
};

export class AccountStore {
  private readonly answerTables: AnswerTables;

  constructor(private readonly db: Sql) {
    this.answerTables = new AnswerTables(db);
  }

  hasSchema(): boolean {
    return hasSchema(this.db);
  }

  /** Creates the schema, or runs the migrations the stored version is behind; inside the caller's transaction. */
  migrate(): void {
    migrate(this.db, MIGRATIONS);
  }

  // ─────────────────────────── load ───────────────────────────

  load(): AccountState {
    const row = this.db.first<AccountRow>`SELECT * FROM account WHERE singleton = 1`;
    if (!row) return EMPTY_STATE;
    const pending = this.db.first<{ id: string; requested_at: number }>`
      SELECT id, requested_at FROM top_ups WHERE state = 'pending' LIMIT 1`;
    return {
      account: accountOf(row),
      windows: windowsOf(row.windows),
      grants: this.db.all<GrantRow>`SELECT * FROM grants WHERE active = 1`.map(grantOf),
      holds: this.db.all<HoldRow>`SELECT * FROM holds WHERE state = 'active' ORDER BY created_at, rowid`.map(holdOf),
      bankedResets: this.db.all<{ id: string; granted_at: number; expires_at: number | null; origin: string }>`
        SELECT id, granted_at, expires_at, origin FROM banked_resets WHERE used_at IS NULL
        ORDER BY expires_at IS NULL, expires_at, granted_at, rowid`.map(
        (b): BankedReset => ({ id: b.id, grantedAt: b.granted_at, expiresAt: b.expires_at, origin: b.origin }),
      ),
      pendingTopUp: pending ? { id: pending.id, requestedAt: pending.requested_at } : null,
    };
  }

  // ─────────────────────────── reads ───────────────────────────

  readonly reads: Reads = {
    spentSince: (fromMs) =>
      this.db.first<Sum>`SELECT SUM(amount) AS s FROM spend_minutes WHERE minute >= ${minuteOf(fromMs)}`?.s ?? 0,
    spentInMinute: (minute) =>
      this.db.first<{ amount: number }>`SELECT amount FROM spend_minutes WHERE minute = ${minute}`?.amount ?? 0,
    // Usage rides on the journal rows of the step that recorded it; window_charges holds what came before that.
    windowUsageAfter: (product, afterMs) =>
      this.db.first<Sum>`SELECT (SELECT COALESCE(SUM(usage), 0) FROM outbox
          WHERE usage_product = ${product} AND created_at > ${afterMs})
        + (SELECT COALESCE(SUM(amount), 0) FROM window_charges WHERE product = ${product} AND at > ${afterMs}) AS s`
        ?.s ?? 0,
    planAt: (ms) =>
      planOf(
        this.db.first<{ plan: string }>`
          SELECT plan FROM plan_history WHERE since <= ${ms} ORDER BY since DESC, rowid DESC LIMIT 1`?.plan,
      ),
    lastTopUpAt: () =>
      this.db.first<{ t: number }>`SELECT requested_at AS t FROM top_ups ORDER BY requested_at DESC LIMIT 1`?.t,
    topUpsInMonth: (month) =>
      this.db.first<{ n: number }>`SELECT COUNT(*) AS n FROM top_ups WHERE month = ${month}`?.n ?? 0,
    topUpStatus: (id) => {
      const s = this.db.first<{ state: string }>`SELECT state FROM top_ups WHERE id = ${id}`?.state;
      return s === "pending" || s === "confirmed" || s === "failed" ? s : undefined;
    },
    refundedAgainst: (entryId) =>
      this.db.first<{ refunded: number }>`SELECT refunded FROM entry_refunds WHERE entry_id = ${entryId}`?.refunded ??
      0,
    holdStatus: (holdId) => {
      const h = this.db.first<{ state: string }>`SELECT state FROM holds WHERE id = ${holdId}`;
      return h ? holdStatusOf(h.state) : undefined;
    },
    grant: (id) => {
      const g = this.db.first<GrantRow>`SELECT * FROM grants WHERE id = ${id}`;
      return g ? grantOf(g) : undefined;
    },
  };

  // ─────────────────────────── write ───────────────────────────

  /** Writes what changed from `prev` to `next`, and the step's effects. Inside the caller's transaction. */
  write(prev: AccountState, next: AccountState, effects: readonly Effect[], now: number): void {
    if (next.account) this.writeAccount(prev, next.account, next.windows);
    this.writeGrants(prev.grants, next.grants);
    const prevHolds = new Set(prev.holds.map((h) => h.id));
    for (const h of next.holds) if (!prevHolds.has(h.id)) this.insertHold(h);
    const nextBanked = new Set(next.bankedResets.map((b) => b.id));
    const prevBanked = new Set(prev.bankedResets.map((b) => b.id));
    for (const b of prev.bankedResets)
      if (!nextBanked.has(b.id)) this.db.run`UPDATE banked_resets SET used_at = ${now} WHERE id = ${b.id}`;
    for (const b of next.bankedResets)
      if (!prevBanked.has(b.id))
        this.db
          .run`INSERT INTO banked_resets (id, granted_at, expires_at, origin) VALUES (${b.id}, ${b.grantedAt}, ${b.expiresAt}, ${b.origin})`;
    this.writeEffects(effects, next.account?.accountId ?? "");
  }

  /** The account row, windows included: one row, written only when something in it changed. */
  private writeAccount(prev: AccountState, a: AccountRecord, windows: AccountState["windows"]): void {
    const autoTopUp = a.autoTopUp ? JSON.stringify(a.autoTopUp) : null;
    const org = a.org ? JSON.stringify(a.org) : null;
    if (!prev.account) {
      this.db
        .run`INSERT INTO account (singleton, account_id, plan, created_at, paused, spend_cap, auto_top_up, flex_month,
        flex_used, reset_seq, banked_accrued_at, clock_offset, charged_total, resumed_at, resumed_spend, granted_total,
        journal_seq, windows, org)
        VALUES (1, ${a.accountId}, ${a.plan}, ${a.createdAt}, ${a.paused ? 1 : 0}, ${a.spendCap}, ${autoTopUp},
        ${a.flexMonth}, ${a.flexUsed}, ${a.resetSeq}, ${a.bankedAccruedAt}, ${a.clockOffset}, ${a.chargedTotal},
        ${a.resumedAt}, ${a.resumedSpend}, ${a.grantedTotal}, ${a.journalSeq}, ${windowsJson(windows)}, ${org})`;
      return;
    }
    if ((a === prev.account || sameRecord(prev.account, a)) && sameWindows(prev.windows, windows)) return;
    this.db.run`UPDATE account SET plan = ${a.plan}, paused = ${a.paused ? 1 : 0}, spend_cap = ${a.spendCap},
      auto_top_up = ${autoTopUp}, flex_month = ${a.flexMonth}, flex_used = ${a.flexUsed}, reset_seq = ${a.resetSeq},
      banked_accrued_at = ${a.bankedAccruedAt}, clock_offset = ${a.clockOffset}, charged_total = ${a.chargedTotal},
      resumed_at = ${a.resumedAt}, resumed_spend = ${a.resumedSpend}, granted_total = ${a.grantedTotal},
      journal_seq = ${a.journalSeq}, windows = ${windowsJson(windows)}, org = ${org} WHERE singleton = 1`;
  }

  /** New or refilled grants are upserted, spent ones updated, and those with nothing left leave the live set. */
  private writeGrants(prev: readonly GrantRecord[], next: readonly GrantRecord[]): void {
    const before = new Map(prev.map((g) => [g.id, g]));
    const live = new Set(next.map((g) => g.id));
    for (const g of next) {
      const was = before.get(g.id);
      if (was?.remaining === g.remaining) continue;
      if (was) this.db.run`UPDATE grants SET remaining = ${g.remaining} WHERE id = ${g.id}`;
      else
        this.db
          .run`INSERT INTO grants (id, kind, priority, products, amount, remaining, expires_at, created_at, top_up_id, active)
          VALUES (${g.id}, ${g.kind}, ${g.priority}, ${g.products ? JSON.stringify(g.products) : null}, ${g.amount},
          ${g.remaining}, ${g.expiresAt}, ${g.createdAt}, ${g.topUpId}, 1)
          ON CONFLICT (id) DO UPDATE SET remaining = excluded.remaining, active = 1`;
    }
    for (const g of prev)
      if (!live.has(g.id)) this.db.run`UPDATE grants SET remaining = 0, active = 0 WHERE id = ${g.id}`;
  }

  private insertHold(h: HoldRecord): void {
    this.db
      .run`INSERT INTO holds (id, product, amount, sources, window_opened, flex_month, expires_at, created_at, state)
      VALUES (${h.id}, ${h.product}, ${h.amount}, ${JSON.stringify(h.sources)}, ${JSON.stringify(h.windowOpened)},
      ${h.flexMonth}, ${h.expiresAt}, ${h.createdAt}, 'active')`;
  }

  /**
   * The step's effects. Journal rows are written last, each carrying the window usage its step recorded for one
   * product at its time (usage summed per product and instant, as only sums over time ranges are ever read); usage
   * that finds no journal row of its step at its instant (none does today) goes to window_charges.
   */
  private writeEffects(effects: readonly Effect[], accountId: string): void {
    const spend = new Map<number, number>();
    const journal: { row: JournalRow; product: string | undefined; usage?: { product: string; amount: number } }[] = [];
    /** the step's usage not yet written, by product and instant (`${product}@${at}`) */
    const usage = new Map<string, { product: string; at: number; amount: number }>();
    for (const e of effects) {
      switch (e.type) {
        case "journal":
          journal.push({
            row: rowOf(e.message, accountId),
            product: e.message.type === "ledger" ? e.message.entry.product : undefined,
          });
          break;
        case "decision":
          // Not stored: a decision is its journal entries and its kept answer.
          break;
        case "spend":
          spend.set(e.minute, (spend.get(e.minute) ?? 0) + e.amount);
          break;
        case "window_usage": {
          const key = `${e.product}@${e.at}`;
          const u = usage.get(key) ?? { product: e.product, at: e.at, amount: 0 };
          u.amount += e.amount;
          usage.set(key, u);
          break;
        }
        case "window_usage_cleared":
          // What this step recorded before the clear goes too, as the rows already written do.
          for (const [key, u] of usage)
            if (u.product === e.product && (e.upTo === null || u.at <= e.upTo)) usage.delete(key);
          if (e.upTo === null) {
            this.db.run`UPDATE outbox SET usage_product = NULL, usage = NULL WHERE usage_product = ${e.product}`;
            this.db.run`DELETE FROM window_charges WHERE product = ${e.product}`;
          } else {
            this.db.run`UPDATE outbox SET usage_product = NULL, usage = NULL
              WHERE usage_product = ${e.product} AND created_at <= ${e.upTo}`;
            this.db.run`DELETE FROM window_charges WHERE product = ${e.product} AND at <= ${e.upTo}`;
          }
          break;
        case "plan_changed":
          this.db.run`INSERT INTO plan_history (since, plan) VALUES (${e.since}, ${e.plan})`;
          break;
        case "entry_refunded":
          this.db.run`INSERT INTO entry_refunds (entry_id, refunded) VALUES (${e.entryId}, ${e.refunded})
            ON CONFLICT (entry_id) DO UPDATE SET refunded = excluded.refunded`;
          break;
        case "hold_closed":
          this.db.run`UPDATE holds SET state = ${e.status} WHERE id = ${e.holdId}`;
          break;
        case "topup_requested":
          this.db.run`INSERT INTO top_ups (id, requested_at, amount, state, month)
            VALUES (${e.topUpId}, ${e.at}, ${e.amount}, 'pending', ${e.month})`;
          break;
        case "topup_confirmed":
          this.db.run`UPDATE top_ups SET state = 'confirmed' WHERE id = ${e.topUpId}`;
          break;
        case "topups_failed":
          this.db
            .run`UPDATE top_ups SET state = 'failed' WHERE state = 'pending' AND requested_at <= ${e.requestedUpTo}`;
          break;
        case "wake":
          break;
      }
    }
    for (const [minute, amount] of spend)
      this.db.run`INSERT INTO spend_minutes (minute, amount) VALUES (${minute}, ${amount})
        ON CONFLICT (minute) DO UPDATE SET amount = amount + excluded.amount`;
    for (const u of usage.values()) {
      if (u.amount === 0) continue;
      // A journal row of the step at the usage's instant, one of its product if there is one.
      const free = journal.filter((j) => !j.usage && j.row.created_at === u.at);
      const carrier = free.find((j) => j.product === u.product) ?? free[0];
      if (carrier) carrier.usage = { product: u.product, amount: u.amount };
      else this.db.run`INSERT INTO window_charges (product, at, amount) VALUES (${u.product}, ${u.at}, ${u.amount})`;
    }
    for (const { row, usage: u } of journal)
      this.db.run`INSERT INTO outbox (seq, entry_id, message, created_at, usage_product, usage)
        VALUES (${row.seq}, ${row.entry_id}, ${row.message}, ${row.created_at}, ${u?.product ?? null}, ${u?.amount ?? null})`;
  }

  // ─────────────────────────── retention and views ───────────────────────────

  /** Deletes what has aged past its horizon. `now` is the request clock; delivery times are wall-clock. */
  prune(now: number): void {
    const anomalyBaselineMs = catalog.guards.anomaly.baselineDays * DAY_MS;
    this.answerTables.prune(now);
    this.db.run`DELETE FROM holds WHERE state != 'active' AND expires_at < ${now - RETENTION.closedHoldsMs}`;
    this.db.run`DELETE FROM window_charges WHERE at < ${now - RETENTION.windowUsageMs}`;
    // A journal row goes only once the ledger holds it (at or below the confirmed watermark) and it is past the
    // journal's 7 days (SPEC §7); one range delete.
    this.db.run`DELETE FROM outbox WHERE seq <= (SELECT confirmed FROM settlement)
      AND created_at < ${now - RETENTION.journalMs}`;
    this.db.run`DELETE FROM spend_minutes WHERE minute < ${minuteOf(now - anomalyBaselineMs)}`;
  }

  /** Wall-clock times when something next falls due: expiries and retention (request clock `now`), and delivery. */
  dueAt(now: number, wallNow: number): number[] {
    const t = (r: { t: number | null } | undefined) => r?.t ?? null;
    const requestClock = [
      t(this.db.first<{ t: number | null }>`SELECT MIN(expires_at) AS t FROM holds WHERE state = 'active'`),
      t(this.db.first<{ t: number | null }>`SELECT MIN(expires_at) AS t FROM grants WHERE active = 1`),
      this.answerTables.dueAt(),
      t(this.db.first<{ t: number | null }>`
        SELECT MIN(created_at) + ${RETENTION.journalMs} AS t FROM outbox WHERE seq <= (SELECT confirmed FROM settlement)`),
    ];
    return requestClock.flatMap((x) => (x === null ? [] : [wallNow + Math.max(0, x - now)]));
  }

  /** The usage panel's history since `start`: credit spend per minute, and window usage as recorded. */
  panelHistory(start: number): {
    spend: { minute: number; amount: number }[];
    usage: { at: number; amount: number }[];
  } {
    return {
      spend: this.db.all<{ minute: number; amount: number }>`
        SELECT minute, amount FROM spend_minutes WHERE minute >= ${minuteOf(start)}`,
      usage: this.db.all<{ at: number; amount: number }>`
        SELECT created_at AS at, usage AS amount FROM outbox WHERE usage IS NOT NULL AND created_at >= ${start}
        UNION ALL SELECT at, amount FROM window_charges WHERE at >= ${start}`,
    };
  }

  /** Credits the account holds in grants, live or not (reconciliation's position). */
  grantRemainder(): number {
    return this.db.first<Sum>`SELECT SUM(remaining) AS s FROM grants`?.s ?? 0;
  }

  // ─────────────────────────── answers ───────────────────────────

  /** The account's kept answers (SPEC §4), for `idempotent`: the book of one transaction (./answer-book.ts). */
  answers<A>(now: number): AnswerBook<A> {
    return this.answerTables.book<A>(now);
  }
}
