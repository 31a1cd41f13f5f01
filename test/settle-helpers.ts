/**
 * Shared helpers for the holds and settlement tests: Durable Object stubs, bounded polling,
 * the D1 ledger as the route and as raw rows, and draining an account's outbox into D1.
 */
import { runDurableObjectAlarm, runInDurableObject } from "cloudflare:test";
import { env } from "cloudflare:workers";
import type { AccountDO } from "../durable-objects/account/object";
import type { SettlementMessage } from "../worker/settlement/messages";
import { call } from "./helpers";

export const LEDGER_KINDS = ["charge", "grant", "expiry", "refund", "write_off", "hold", "release", "reset"] as const;

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
export async function d1Rows(
  id: string,
): Promise<{ id: string; kind: string; amount: number; layer: string | null; hold_id: string | null }[]> {
  const { results } = await env.DB.prepare(
    "SELECT id, kind, amount, layer, hold_id FROM ledger WHERE account_id = ? ORDER BY seq",
  )
    .bind(id)
    .all<any>();
  return results;
}

/** The account object's outbox: rows not yet delivered, and the ids of every ledger entry it ever wrote. */
export async function outboxOf(id: string): Promise<{ pending: number; ledgerIds: string[]; total: number }> {
  return runInDurableObject(stubFor(id), (_i: AccountDO, state) => {
    const sql = state.storage.sql;
    const pending = sql.exec<{ n: number }>("SELECT COUNT(*) AS n FROM outbox WHERE delivered_at IS NULL").one().n;
    const total = sql.exec<{ n: number }>("SELECT COUNT(*) AS n FROM outbox").one().n;
    const ledgerIds = sql
      .exec<{ entry_id: string }>(
        "SELECT entry_id FROM outbox WHERE json_extract(message, '$.type') = 'ledger' ORDER BY seq",
      )
      .toArray()
      .map((r) => r.entry_id);
    return { pending, ledgerIds, total };
  });
}

/**
 * Drains one account: runs its alarm (which re-sends undelivered outbox rows), flushes directly if rows are
 * still pending, then waits (bounded) until D1 holds one row per ledger entry the object wrote.
 * Returns the outbox and the D1 rows as they stand at the end, for the caller to assert on.
 */
export async function drainAccount(id: string, timeoutMs = 15_000) {
  const stub = stubFor(id);
  const deadline = Date.now() + timeoutMs;
  await runDurableObjectAlarm(stub);
  let box = await outboxOf(id);
  // A flush already under way (say, the object's own alarm, started while a fault was still injected)
  // may still fail; flush again until the outbox is empty or the time is up.
  while (box.pending > 0 && Date.now() < deadline) {
    await runInDurableObject(stub, (instance: AccountDO) => instance.flushOutbox());
    box = await outboxOf(id);
    if (box.pending > 0) await sleep(200);
  }
  const rows = await waitFor(
    () => d1Rows(id),
    (r) => r.length >= box.ledgerIds.length,
    timeoutMs,
  );
  return { box, rows };
}

export const reconciliation = (query = "") => call("GET", `/v1/admin/reconciliation${query}`);

/** Every message the account object wrote to its outbox, oldest first. */
export async function outboxMessages(id: string): Promise<SettlementMessage[]> {
  return runInDurableObject(stubFor(id), (_i: AccountDO, state) =>
    state.storage.sql
      .exec<{ message: string }>("SELECT message FROM outbox ORDER BY seq")
      .toArray()
      .map((r) => JSON.parse(r.message) as SettlementMessage),
  );
}
