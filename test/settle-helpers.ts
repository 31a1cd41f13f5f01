/**
 * Shared helpers for the holds and settlement tests: Durable Object stubs, bounded polling,
 * the D1 ledger as the route and as raw rows, and draining an account's outbox into D1.
 */
import { runDurableObjectAlarm, runInDurableObject } from "cloudflare:test";
import { env } from "cloudflare:workers";
import type { AccountDO } from "../durable-objects/account/object";
import { readHead } from "../worker/settlement/heads";
import { isUsage, type JournalMessage, type LedgerEntry } from "../worker/core/journal";
import { ledgerFor } from "../worker/settlement/shards";
import { call, HOUR } from "./helpers";
import { journalIn } from "./storage-helpers";

export const LEDGER_KINDS = [
  "charge",
  "grant",
  "expiry",
  "refund",
  "write_off",
  "hold",
  "release",
  "reset",
  "usage",
] as const;

/** The `usage` rollup a window charge settles into (SPEC §7), named as the consumer's SQL names it. */
export const usageIdOf = (e: LedgerEntry) =>
  `usage:${e.accountId}:${e.product}:${Math.floor(e.createdAt / HOUR) * HOUR}`;

/**
 * What the D1 ledger holds for these journal messages, by id: each money entry, and window charges summed into their
 * hour's `usage` rollup. A window hold or release is in the journal and the archive only.
 */
export function ledgerView(messages: JournalMessage[]): Map<string, { kind: string; amount: number; count: number }> {
  const view = new Map<string, { kind: string; amount: number; count: number }>();
  for (const m of messages) {
    if (m.type !== "ledger") continue;
    const e = m.entry;
    if (!isUsage(e)) view.set(e.id, { kind: e.kind, amount: e.amount, count: 1 });
    else if (e.kind === "charge") {
      const r = view.get(usageIdOf(e)) ?? { kind: "usage", amount: 0, count: 0 };
      view.set(usageIdOf(e), { ...r, amount: r.amount + e.amount, count: r.count + 1 });
    }
  }
  return view;
}

/** The ids `ledgerView` gives. */
export const ledgerIdsOf = (messages: JournalMessage[]) => [...ledgerView(messages).keys()];

export function stubFor(id: string): DurableObjectStub<AccountDO> {
  return env.ACCOUNT.get(env.ACCOUNT.idFromName(id)) as DurableObjectStub<AccountDO>;
}

export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** Polls `probe` until `done` holds or `timeoutMs` passes; returns the last value either way. */
export async function waitFor<T>(
  probe: () => Promise<T>,
  done: (v: T) => boolean,
  timeoutMs = 10_000,
  intervalMs = 100,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let v = await probe();
  while (!done(v) && Date.now() < deadline) {
    await sleep(intervalMs);
    v = await probe();
  }
  return v;
}

export interface LedgerEntryJson {
  id: string;
  kind: (typeof LEDGER_KINDS)[number];
  amount: number;
  from?: string;
  to?: string;
  count?: number;
  layer?: "window" | "grant" | "flex";
  product?: string;
  grantId?: string;
  decisionId?: string;
  holdId?: string;
  rateCardVersion?: string;
  createdAt: string;
}

/** Every settled entry of the account through GET /v1/accounts/{id}/ledger, following nextCursor. */
export async function ledgerAll(id: string, limit = 500): Promise<LedgerEntryJson[]> {
  const out: LedgerEntryJson[] = [];
  let cursor: string | null = null;
  for (let page = 0; page < 1000; page++) {
    const q: string = `limit=${limit}${cursor ? `&cursor=${cursor}` : ""}`;
    const r = await call("GET", `/v1/accounts/${id}/ledger?${q}`);
    if (r.status !== 200) throw new Error(`ledger ${r.status}: ${JSON.stringify(r.body)}`);
    out.push(...r.body.entries);
    cursor = r.body.nextCursor;
    if (cursor === null) return out;
  }
  throw new Error("ledger pagination did not end");
}

/** Raw D1 ledger rows of one account. */
export async function d1Rows(id: string): Promise<
  {
    id: string;
    kind: string;
    amount: number;
    layer: string | null;
    hold_id: string | null;
    usage_count: number | null;
  }[]
> {
  const { results } = await ledgerFor(env, id)
    .prepare("SELECT id, kind, amount, layer, hold_id, usage_count FROM ledger WHERE account_id = ? ORDER BY seq")
    .bind(id)
    .all<any>();
  return results;
}

/**
 * The account object's journal: rows the ledger has not confirmed (above the watermark the object last learned), the
 * ids the D1 ledger holds for the entries it still has (`ledgerView`), and its last sequence number.
 */
export async function outboxOf(
  id: string,
): Promise<{ pending: number; ledgerIds: string[]; total: number; lastSeq: number; confirmed: number }> {
  return runInDurableObject(stubFor(id), (_i: AccountDO, state) => {
    const sql = state.storage.sql;
    const one = (q: string) => sql.exec<{ n: number }>(q).toArray()[0]?.n ?? 0;
    const confirmed = one("SELECT confirmed AS n FROM settlement");
    const pending = one(`SELECT COUNT(*) AS n FROM outbox WHERE seq > ${confirmed}`);
    const total = one("SELECT COUNT(*) AS n FROM outbox");
    const lastSeq = one("SELECT journal_seq AS n FROM account");
    const ledgerIds = ledgerIdsOf(journalIn(sql));
    return { pending, ledgerIds, total, lastSeq, confirmed };
  });
}

/** The ledger's head for one account (watermark, highest, running totals), or null before its first entry. */
export const headOf = (id: string) => readHead(ledgerFor(env, id), id);

/**
 * Drains one account: runs its alarm (the settlement check: learn the ledger's watermark, send again what is overdue)
 * until the object has confirmed its whole journal, waiting for the queue between runs. Returns the journal and the
 * D1 rows as they stand at the end, for the caller to assert on.
 */
export async function drainAccount(id: string, timeoutMs = 15_000) {
  const stub = stubFor(id);
  const deadline = Date.now() + timeoutMs;
  let box = await outboxOf(id);
  while (box.pending > 0 && Date.now() < deadline) {
    await runDurableObjectAlarm(stub);
    box = await outboxOf(id);
    if (box.pending > 0) await sleep(250);
  }
  return { box, rows: await d1Rows(id) };
}

export const reconciliation = (query = "") => call("GET", `/v1/admin/reconciliation${query}`);

/** Every message the account object wrote to its outbox, oldest first. */
export async function outboxMessages(id: string): Promise<JournalMessage[]> {
  return runInDurableObject(stubFor(id), (_i: AccountDO, state) => journalIn(state.storage.sql));
}
