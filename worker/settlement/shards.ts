/**
 * The sharded ledger (SPEC §7): N D1 databases and N settlement queues, named as bindings in wrangler.toml
 * (`LEDGER_SHARDS` and `SETTLEMENT_QUEUES`, in shard order). An account's shard is a stable hash of its id: FNV-1a
 * (32 bit) over the id's UTF-8 bytes, modulo N. The first shard also holds the operator's tables (the global-reset
 * audit, reconciliation runs and the sweep's cursor). Changing N moves accounts between shards: see docs/settlement.md.
 */
import type { JournalBatch } from "../core/journal";

const encoder = new TextEncoder();

/** FNV-1a, 32 bit: stable across runtimes and languages (the operator can compute it in a shell). */
export function fnv1a(text: string): number {
  let h = 0x811c9dc5;
  for (const b of encoder.encode(text)) {
    h ^= b;
    h = Math.imul(h, 0x01000193) >>> 0;
  }
  return h >>> 0;
}

const names = (list: string | undefined, fallback: string): string[] => {
  const parsed = (list ?? "")
    .split(",")
    .map((s) => s.trim())
    .filter((s) => s.length > 0);
  return parsed.length > 0 ? parsed : [fallback];
};

const isD1 = (x: unknown): x is D1Database =>
  typeof x === "object" && x !== null && "prepare" in x && "batch" in x && "exec" in x;
const isQueue = (x: unknown): x is Queue<JournalBatch> =>
  typeof x === "object" && x !== null && "send" in x && "sendBatch" in x;

function binding<T>(env: Env, name: string, is: (x: unknown) => x is T): T {
  const value: unknown = Reflect.get(env, name);
  if (!is(value)) throw new Error(`wrangler.toml names ${name} as a ledger shard, but no such binding exists`);
  return value;
}

/** Every ledger shard's database, in shard order. */
export function ledgers(env: Env): D1Database[] {
  return names(env.LEDGER_SHARDS, "DB").map((n) => binding(env, n, isD1));
}

export function shardOf(env: Env, accountId: string): number {
  return fnv1a(accountId) % names(env.LEDGER_SHARDS, "DB").length;
}

/** The D1 database that holds the account's ledger entries, events and head. */
export function ledgerFor(env: Env, accountId: string): D1Database {
  return ledgers(env)[shardOf(env, accountId)];
}

/** The settlement queue the account's journal goes to (the same shard as its ledger). */
export function settlementQueueFor(env: Env, accountId: string): Queue<JournalBatch> {
  const queues = names(env.SETTLEMENT_QUEUES, "SETTLEMENT");
  return binding(env, queues[fnv1a(accountId) % queues.length], isQueue);
}

/** Runs `read` on every shard and concatenates the results (callers sort and cut what they show). */
export async function acrossLedgers<T>(env: Env, read: (db: D1Database) => Promise<T[]>): Promise<T[]> {
  return (await Promise.all(ledgers(env).map(read))).flat();
}
