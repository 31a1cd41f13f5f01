/**
 * What the operator console reads from the D1 ledger (docs/console.md). The account object stays the authority on
 * an account's live state (its summary is read through the object); D1 is where every account's settled entries
 * and events meet, so the cross-account views (paused accounts, top spenders, recent events) come from here. D1
 * lags the objects by the settlement queue (a second or two).
 */
import { acrossLedgers, ledgerFor } from "../settlement/shards";
import { orgLedgerId } from "../core/org/state";
import type { Drift } from "../settlement/reconciliation";
import { DAY_MS, HOUR_MS } from "../core/time";
import type { Layer, LedgerKind } from "../settlement/messages";

/** Events the overview lists: the anomaly guard's, auto top-up requests and depleted balances (and resumes, for context). */
export const INCIDENT_EVENT_TYPES = [
  "account.credits_paused",
  "account.credits_resumed",
  "topup.requested",
  "credits.depleted",
] as const;

export interface PausedAccount {
  accountId: string;
  pausedAt: number;
  data: Record<string, unknown>;
}

export interface Spender {
  accountId: string;
  /** grant- and flex-layer charges in the window, micro-credits */
  spent: number;
  charges: number;
  lastAt: number;
}

export interface EventView {
  id: string;
  accountId: string;
  type: string;
  createdAt: number;
  data: Record<string, unknown>;
}

export interface DriftRun {
  ranAt: number;
  checked: number;
  drifted: Drift[];
}

export interface LedgerRowView {
  seq: number;
  id: string;
  kind: LedgerKind;
  amount: number;
  layer: Layer | null;
  product: string | null;
  grantId: string | null;
  holdId: string | null;
  note: string | null;
  createdAt: number;
}

/** A ledger row as D1 holds it: the columns both ledger reads select. */
const LEDGER_COLUMNS = "seq, id, kind, amount, layer, product, grant_id, hold_id, note, created_at";
type LedgerRow = {
  seq: number;
  id: string;
  kind: LedgerKind;
  amount: number;
  layer: LedgerRowView["layer"];
  product: string | null;
  grant_id: string | null;
  hold_id: string | null;
  note: string | null;
  created_at: number;
};

const ledgerRowView = (r: LedgerRow): LedgerRowView => ({
  seq: r.seq,
  id: r.id,
  kind: r.kind,
  amount: r.amount,
  layer: r.layer,
  product: r.product,
  grantId: r.grant_id,
  holdId: r.hold_id,
  note: r.note,
  createdAt: r.created_at,
});

const parseData = (text: string): Record<string, unknown> => {
  try {
    const v = JSON.parse(text) as unknown;
    return v && typeof v === "object" && !Array.isArray(v) ? (v as Record<string, unknown>) : {};
  } catch {
    return {};
  }
};

/**
 * Accounts whose latest `account.credits_paused` has no `account.credits_resumed` at or after it. A resume recorded
 * in the same millisecond as the pause came after it (an operator can only resume a pause that exists).
 */
export async function pausedAccounts(env: Env, limit = 100): Promise<PausedAccount[]> {
  const all = await acrossLedgers(env, (db) => pausedIn(db, limit));
  return all.sort((a, b) => b.pausedAt - a.pausedAt).slice(0, limit);
}

async function pausedIn(db: D1Database, limit: number): Promise<PausedAccount[]> {
  const { results } = await db
    .prepare(
      `SELECT p.account_id, p.created_at, p.data FROM events p
       WHERE p.type = 'account.credits_paused'
         AND p.created_at = (SELECT MAX(created_at) FROM events x WHERE x.account_id = p.account_id AND x.type = 'account.credits_paused')
         AND NOT EXISTS (SELECT 1 FROM events r WHERE r.account_id = p.account_id AND r.type = 'account.credits_resumed' AND r.created_at >= p.created_at)
       GROUP BY p.account_id
       ORDER BY p.created_at DESC LIMIT ?`,
    )
    .bind(limit)
    .all<{ account_id: string; created_at: number; data: string }>();
  return results.map((r) => ({ accountId: r.account_id, pausedAt: r.created_at, data: parseData(r.data) }));
}

/**
 * The accounts that spent the most credits in (now − span, now]: ledger `charge` entries paid by a grant or by flex,
 * summed per account. Window usage is not credit spend and is left out. Ties go to the most recent spender.
 */
export async function topSpenders(env: Env, now: number, spanMs: number, limit = 10): Promise<Spender[]> {
  // An account lives on one shard, so each shard's top is exact; the merge keeps the overall top.
  const all = await acrossLedgers(env, (db) => topSpendersIn(db, now, spanMs, limit));
  return all.sort((a, b) => b.spent - a.spent || b.lastAt - a.lastAt).slice(0, limit);
}

async function topSpendersIn(db: D1Database, now: number, spanMs: number, limit: number): Promise<Spender[]> {
  const { results } = await db
    .prepare(
      `SELECT account_id, SUM(amount) AS spent, COUNT(*) AS charges, MAX(created_at) AS last_at FROM ledger
       WHERE kind = 'charge' AND layer IN ('grant', 'flex') AND created_at > ? AND created_at <= ?
       GROUP BY account_id ORDER BY spent DESC, last_at DESC LIMIT ?`,
    )
    .bind(now - spanMs, now, limit)
    .all<{ account_id: string; spent: number; charges: number; last_at: number }>();
  return results.map((r) => ({ accountId: r.account_id, spent: r.spent, charges: r.charges, lastAt: r.last_at }));
}

export async function recentEvents(env: Env, limit = 50): Promise<EventView[]> {
  const all = await acrossLedgers(env, (db) => recentEventsIn(db, limit));
  return all.sort((a, b) => b.createdAt - a.createdAt || (a.id < b.id ? 1 : a.id > b.id ? -1 : 0)).slice(0, limit);
}

async function recentEventsIn(db: D1Database, limit: number): Promise<EventView[]> {
  const types = INCIDENT_EVENT_TYPES.map(() => "?").join(", ");
  const { results } = await db
    .prepare(
      `SELECT id, account_id, type, data, created_at FROM events WHERE type IN (${types}) ORDER BY created_at DESC, id DESC LIMIT ?`,
    )
    .bind(...INCIDENT_EVENT_TYPES, limit)
    .all<{ id: string; account_id: string; type: string; data: string; created_at: number }>();
  return results.map(toEvent);
}

export async function accountEvents(db: D1Database, accountId: string, limit = 50): Promise<EventView[]> {
  const { results } = await db
    .prepare(
      "SELECT id, account_id, type, data, created_at FROM events WHERE account_id = ? ORDER BY created_at DESC, id DESC LIMIT ?",
    )
    .bind(accountId, limit)
    .all<{ id: string; account_id: string; type: string; data: string; created_at: number }>();
  return results.map(toEvent);
}

const toEvent = (r: { id: string; account_id: string; type: string; data: string; created_at: number }): EventView => ({
  id: r.id,
  accountId: r.account_id,
  type: r.type,
  createdAt: r.created_at,
  data: parseData(r.data),
});

/** The latest reconciliation run (cron, the admin API or the console), or null if none ran yet. */
export async function latestReconciliation(db: D1Database): Promise<DriftRun | null> {
  const r = await db
    .prepare("SELECT ran_at, checked, drifted FROM reconciliation_runs ORDER BY ran_at DESC LIMIT 1")
    .first<{ ran_at: number; checked: number; drifted: string }>();
  if (!r) return null;
  let drifted: Drift[] = [];
  try {
    drifted = JSON.parse(r.drifted) as Drift[];
  } catch {
    // an unreadable report shows as none
  }
  return { ranAt: r.ran_at, checked: r.checked, drifted };
}

export const SPANS = { hour: HOUR_MS, day: DAY_MS } as const;

/**
 * One page of an account's D1 ledger, newest first: entries with `seq` below `before` (the cursor), and the cursor
 * of the next (older) page, or null at the oldest.
 */
export async function ledgerPage(
  db: D1Database,
  accountId: string,
  before: number | null,
  limit: number,
): Promise<{ entries: LedgerRowView[]; nextCursor: number | null }> {
  const { results } = await db
    .prepare(
      `SELECT ${LEDGER_COLUMNS} FROM ledger
       WHERE account_id = ? AND seq < ? ORDER BY seq DESC LIMIT ?`,
    )
    .bind(accountId, before ?? Number.MAX_SAFE_INTEGER, limit + 1)
    .all<LedgerRow>();
  const page = results.slice(0, limit).map(ledgerRowView);
  return { entries: page, nextCursor: results.length > limit ? page[page.length - 1].seq : null };
}

/** Whether D1 holds any ledger entry of the account. */
export async function hasLedger(db: D1Database, accountId: string): Promise<boolean> {
  return (await db.prepare("SELECT 1 AS x FROM ledger WHERE account_id = ? LIMIT 1").bind(accountId).first()) !== null;
}

/**
 * What has been refunded against each of the given entries, from the settled `refund` entries (their note is
 * `{"reason", "refunds": entryId}`). Refunds still in flight to D1 are not counted yet; the account object, which
 * counts them, has the last word.
 */
export async function refundedAgainst(
  db: D1Database,
  accountId: string,
  entryIds: string[],
): Promise<Map<string, number>> {
  const out = new Map<string, number>();
  if (entryIds.length === 0) return out;
  const { results } = await db
    .prepare(
      `SELECT target, SUM(amount) AS refunded FROM (
         SELECT amount, CASE WHEN json_valid(note) THEN json_extract(note, '$.refunds') END AS target
         FROM ledger WHERE account_id = ? AND kind = 'refund'
       ) WHERE target IN (${entryIds.map(() => "?").join(", ")}) GROUP BY target`,
    )
    .bind(accountId, ...entryIds)
    .all<{ target: string; refunded: number }>();
  for (const r of results) out.set(r.target, r.refunded);
  return out;
}

/** A `charge` or `write_off` entry of this account in D1, with what is refunded against it so far and what is left. */
export async function refundableEntry(
  db: D1Database,
  accountId: string,
  entryId: string,
): Promise<{ entry: LedgerRowView; refunded: number; left: number } | null> {
  const r = await db
    .prepare(`SELECT ${LEDGER_COLUMNS} FROM ledger WHERE id = ? AND account_id = ? AND kind IN ('charge', 'write_off')`)
    .bind(entryId, accountId)
    .first<LedgerRow>();
  if (!r) return null;
  const refunded = (await refundedAgainst(db, accountId, [entryId])).get(entryId) ?? 0;
  return { entry: ledgerRowView(r), refunded, left: Math.max(0, r.amount - refunded) };
}

/** An organization's pool events (`org.credits_paused`, `org.credits_resumed`, …), settled under `org/<orgId>`. */
export function poolEvents(env: Env, orgId: string, limit = 50): Promise<EventView[]> {
  const id = orgLedgerId(orgId);
  return accountEvents(ledgerFor(env, id), id, limit);
}
