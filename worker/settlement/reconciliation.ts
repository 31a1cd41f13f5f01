import { accountObject, orgObject } from "../../durable-objects/stubs";
import type { SettlementCut } from "../../durable-objects/types";
import { orgIdOfLedger } from "../core/org/state";
import { DAY_MS } from "../core/time";
import { type LedgerHead, NO_HEAD, readHead } from "./heads";
import { acrossLedgers, ledgerFor } from "./shards";

/**
 * An account whose object and ledger disagree at the same sequence number (SPEC §7). Both sides stand at `toSeq`,
 * the ledger's watermark; the last clean check stood at `fromSeq − 1`, so the difference lies in that range.
 */
export interface Drift {
  accountId: string;
  fromSeq: number;
  toSeq: number;
  /** the account object's credit position at `toSeq`: grant remainders plus credits held, less entries above it */
  expected: number;
  /** the ledger's running credit position at `toSeq` */
  actual: number;
  chargedExpected: number;
  chargedActual: number;
  /**
   * Set when an organization's pool breaks I-pool (SPEC §9): then `expected` is its grants less expiries and `actual`
   * its grant remainders plus what is out with members.
   */
  invariant?: "pool";
}

/** Entries the object journaled that the ledger does not hold yet: in flight, not drift. */
export interface InFlight {
  accountId: string;
  fromSeq: number;
  toSeq: number;
  /** the ledger holds entries past a missing one */
  gap: boolean;
  /** what this check sent again because it was overdue (the heal); null when nothing was */
  resent: { fromSeq: number; toSeq: number } | null;
}

export interface Check {
  drift: Drift | null;
  inFlight: InFlight | null;
}

/**
 * Checks one account at a consistent cut: reads the ledger's head (watermark and running totals), then asks the
 * object for its totals at that watermark, which also sends again whatever is overdue above it. O(1) in the
 * account's history: the object subtracts only the entries still in flight. A clean check records its watermark.
 */
export async function reconcileAccount(env: Env, accountId: string): Promise<Check> {
  const ledger = ledgerFor(env, accountId);
  const head: LedgerHead = (await readHead(ledger, accountId)) ?? NO_HEAD;
  // An organization's journal settles under `org/<orgId>`: its object gives its cut, and I-pool with it.
  const orgId = orgIdOfLedger(accountId);
  let cut: SettlementCut;
  if (orgId !== null) {
    const orgCut = await orgObject(env, orgId).settlementCut(head);
    const pool = orgCut.poolInvariant;
    if (!pool.holds) {
      const at = { fromSeq: 1, toSeq: orgCut.lastSeq, chargedExpected: 0, chargedActual: 0 };
      const drift = { accountId, ...at, expected: pool.granted - pool.expired, actual: pool.remaining + pool.leased };
      return { drift: { ...drift, invariant: "pool" }, inFlight: null };
    }
    cut = orgCut;
  } else cut = await accountObject(env, accountId).settlementCut(head);
  const inFlight: InFlight | null =
    cut.lastSeq > cut.cutSeq
      ? {
          accountId,
          fromSeq: cut.cutSeq + 1,
          toSeq: cut.lastSeq,
          gap: head.highest > head.watermark,
          resent: cut.resent,
        }
      : null;
  // A legacy object whose floor the ledger has not seen yet has no common cut with it: in flight until it has.
  if (cut.cutSeq !== head.watermark) return { drift: null, inFlight };
  if (cut.creditPosition === head.creditPosition && cut.charged === head.charged) {
    if (head.checkedSeq < head.watermark)
      await ledger
        .prepare("UPDATE ledger_heads SET checked_seq = ?2 WHERE account_id = ?1 AND checked_seq < ?2")
        .bind(accountId, head.watermark)
        .run();
    return { drift: null, inFlight };
  }
  return {
    drift: {
      accountId,
      // the difference lies after the last clean check; if none came since it, anywhere in the history
      fromSeq: head.checkedSeq < head.watermark ? head.checkedSeq + 1 : 1,
      toSeq: head.watermark,
      expected: cut.creditPosition,
      actual: head.creditPosition,
      chargedExpected: cut.charged,
      chargedActual: head.charged,
    },
    inFlight,
  };
}

/**
 * The sweep's settings. The cron (`[triggers] crons` in wrangler.toml, every 15 minutes: 96 runs a day) checks one
 * page of `pageSize` accounts a run, so a pass over N accounts takes ceil(N / pageSize) runs, and every account is
 * checked within `periodMs` while N ≤ pageSize × runs per period (500 × 96 = 48,000 accounts in 24 h). Past that,
 * raise `pageSize` (at most `maxPageSize`: each check is one Durable Object call, a subrequest) or run the cron more
 * often; a pass that took longer than `periodMs` logs a `reconciliation.pass_overdue` warning.
 */
export const SWEEP = {
  pageSize: 500,
  /** the largest page, for the cron and for `?limit=` on demand */
  maxPageSize: 1000,
  periodMs: DAY_MS,
} as const;

export interface ReconciliationReport {
  checked: number;
  drifted: Drift[];
  inFlight: InFlight[];
  /** the last account id of this page, to pass as `cursor` for the next one; null when no account follows */
  nextCursor: string | null;
}

/**
 * One page of the ledger's accounts after `after` (exclusive; null: from the first), in account id order over every
 * shard: each shard's next page, merged. The cursor stays an account id however many shards there are.
 */
async function accountPage(
  env: Env,
  after: string | null,
  limit: number,
): Promise<{ accountIds: string[]; nextCursor: string | null }> {
  const size = Math.max(1, Math.min(limit, SWEEP.maxPageSize));
  // One more than the page, to know whether another page follows (so the last page says nextCursor: null).
  const ids = await acrossLedgers(env, async (db) => {
    const stmt =
      after === null
        ? db.prepare("SELECT account_id FROM ledger_heads ORDER BY account_id LIMIT ?").bind(size + 1)
        : db
            .prepare("SELECT account_id FROM ledger_heads WHERE account_id > ? ORDER BY account_id LIMIT ?")
            .bind(after, size + 1);
    return (await stmt.all<{ account_id: string }>()).results.map((r) => r.account_id);
  });
  // SQLite's BINARY order: compare UTF-8 bytes, which for these ids (ASCII) is code unit order.
  ids.sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
  const accountIds = ids.slice(0, size);
  return { accountIds, nextCursor: ids.length > size ? (accountIds.at(-1) ?? null) : null };
}

/** Checks the accounts (20 at a time) and records the run in `reconciliation_runs`. */
async function checkAccounts(
  env: Env,
  ids: string[],
): Promise<{ checked: number; drifted: Drift[]; inFlight: InFlight[] }> {
  const drifted: Drift[] = [];
  const inFlight: InFlight[] = [];
  for (let i = 0; i < ids.length; i += 20) {
    const chunk = await Promise.all(ids.slice(i, i + 20).map((id) => reconcileAccount(env, id)));
    for (const c of chunk) {
      if (c.drift) drifted.push(c.drift);
      if (c.inFlight) inFlight.push(c.inFlight);
    }
  }
  await env.DB.prepare("INSERT INTO reconciliation_runs (id, ran_at, checked, drifted) VALUES (?, ?, ?, ?)")
    .bind(crypto.randomUUID(), Date.now(), ids.length, JSON.stringify(drifted))
    .run();
  if (drifted.length > 0) console.warn(JSON.stringify({ event: "reconciliation.drift", checked: ids.length, drifted }));
  const resent = inFlight.filter((f) => f.resent !== null);
  if (resent.length > 0) console.warn(JSON.stringify({ event: "reconciliation.resent", resent }));
  return { checked: ids.length, drifted, inFlight };
}

/**
 * On demand: checks the given accounts, or one page of the ledger's accounts after `cursor` (from the first without
 * it; `limit` defaults to the sweep's page size), and records the run. The persisted sweep cursor is left alone.
 */
export async function reconcile(
  env: Env,
  opts: { accountIds?: string[]; cursor?: string; limit?: number } = {},
): Promise<ReconciliationReport> {
  if (opts.accountIds) return { ...(await checkAccounts(env, opts.accountIds)), nextCursor: null };
  const page = await accountPage(env, opts.cursor ?? null, opts.limit ?? SWEEP.pageSize);
  return { ...(await checkAccounts(env, page.accountIds)), nextCursor: page.nextCursor };
}

export interface SweepRun extends ReconciliationReport {
  /** the accounts this run checked, in order */
  accountIds: string[];
  /** this run checked the last page: the next run starts a new pass at the first account */
  passCompleted: boolean;
}

/**
 * One cron run of the sweep: checks the page after the persisted cursor (`reconciliation_cursor`), then moves the
 * cursor to the last account checked, or back to the start after the last page. The cursor moves only once the page
 * was checked, so a run that dies part way is checked again by the next run rather than skipped.
 */
export async function sweep(env: Env, now = Date.now()): Promise<SweepRun> {
  const at = await env.DB.prepare(
    "SELECT last_account_id, pass_started_at, pass_checked FROM reconciliation_cursor WHERE id = 1",
  ).first<{ last_account_id: string | null; pass_started_at: number | null; pass_checked: number }>();
  const after = at?.last_account_id ?? null;
  const fresh = after === null || at?.pass_started_at == null;
  const passStartedAt = fresh ? now : (at?.pass_started_at ?? now);
  const page = await accountPage(env, after, SWEEP.pageSize);
  const report = await checkAccounts(env, page.accountIds);
  const passCompleted = page.nextCursor === null;
  const passChecked = (fresh ? 0 : (at?.pass_checked ?? 0)) + report.checked;
  await env.DB.prepare(
    `INSERT INTO reconciliation_cursor (id, last_account_id, pass_started_at, pass_checked, updated_at)
     VALUES (1, ?1, ?2, ?3, ?4)
     ON CONFLICT (id) DO UPDATE SET last_account_id = ?1, pass_started_at = ?2, pass_checked = ?3, updated_at = ?4`,
  )
    .bind(page.nextCursor, passCompleted ? null : passStartedAt, passCompleted ? 0 : passChecked, now)
    .run();
  if (passCompleted) {
    const passMs = now - passStartedAt;
    const line = {
      event: "reconciliation.pass_completed",
      passMs,
      periodMs: SWEEP.periodMs,
      checkedAccounts: passChecked,
    };
    if (passMs > SWEEP.periodMs) console.warn(JSON.stringify({ ...line, event: "reconciliation.pass_overdue" }));
    else console.log(JSON.stringify(line));
  }
  return { ...report, nextCursor: page.nextCursor, accountIds: page.accountIds, passCompleted };
}
