/**
 * The R2 archive (SPEC §7, issue #15 item 5): every journal entry, window usage and events included, lands in R2 as
 * NDJSON once it settles, one object per consumer batch, shard and hour; a redelivered identical batch rewrites the
 * same object; a failed write retries the messages; the operator export streams one account's entries in a time
 * range, each sequence number once, and only that account's although the objects are shared by its shard.
 */
import { itemOf, seqOf } from "../worker/core/journal";
import { createExecutionContext, createMessageBatch, getQueueResult, runDurableObjectAlarm } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import { archive, hourPrefix } from "../worker/settlement/archive";
import { settleBatch } from "../worker/settlement/consumer";
import type { JournalMessage, SettlementMessage } from "../worker/settlement/messages";
import { shardOf } from "../worker/settlement/shards";
import { ADMIN, addCredits, CREDIT, call, consume, HOUR, T0, uid } from "./helpers";
import { headOf, outboxOf, sleep, stubFor } from "./settle-helpers";

const SEC = 1000;

/** Runs the account's settlement checks until the ledger has confirmed its whole journal. */
async function settle(id: string) {
  for (let i = 0; i < 60; i++) {
    const box = await outboxOf(id);
    if (box.confirmed >= box.lastSeq) return box;
    await runDurableObjectAlarm(stubFor(id));
    await sleep(200);
  }
  throw new Error(`${id} never settled`);
}

async function exportOf(id: string, from: number, to: number) {
  const q = `from=${new Date(from).toISOString()}&to=${new Date(to).toISOString()}`;
  const r = await call("GET", `/v1/admin/accounts/${id}/archive?${q}`, undefined, { token: ADMIN });
  const lines = typeof r.body === "string" ? r.body.split("\n").filter((l: string) => l.length > 0) : [r.body];
  return { ...r, messages: lines.map((l: string) => JSON.parse(l) as JournalMessage) };
}

/** Every key under the prefix (paging). */
async function keysUnder(prefix: string): Promise<string[]> {
  const keys: string[] = [];
  let cursor: string | undefined;
  do {
    const page = await env.ARCHIVE.list({ prefix, cursor });
    keys.push(...page.objects.map((o) => o.key));
    cursor = page.truncated ? page.cursor : undefined;
  } while (cursor);
  return keys.sort();
}

/** The archived lines under the prefix, every object's. */
async function linesUnder(prefix: string): Promise<JournalMessage[]> {
  const lines: JournalMessage[] = [];
  for (const key of await keysUnder(prefix)) {
    const text = (await (await env.ARCHIVE.get(key))?.text()) ?? "";
    lines.push(
      ...text
        .split("\n")
        .filter((l) => l.length > 0)
        .map((l) => JSON.parse(l) as JournalMessage),
    );
  }
  return lines;
}

/** `n` fresh account ids in one shard, and one in another. */
function accountsIn(n: number): { same: string[]; other: string } {
  const byShard = new Map<number, string[]>();
  for (;;) {
    const id = uid("arch-shard");
    const ids = byShard.get(shardOf(env, id)) ?? [];
    ids.push(id);
    byShard.set(shardOf(env, id), ids);
    const full = [...byShard].find(([, ids]) => ids.length >= n);
    const other = full && [...byShard].find(([shard]) => shard !== full[0]);
    if (full && other) return { same: full[1].slice(0, n), other: other[1][0] };
  }
}

/** A message of the account's seqs `first`..`last`, made at `at` + seq seconds: grants, every third an event. */
function run(accountId: string, first: number, last: number, at: number): SettlementMessage {
  const entries: JournalMessage[] = [];
  for (let seq = first; seq <= last; seq++) {
    const [id, createdAt] = [`${accountId}-${seq}`, at + seq * SEC];
    entries.push(
      seq % 3 === 0
        ? { type: "event", event: { id, accountId, seq, type: "test.archived", createdAt, data: {} } }
        : { type: "ledger", entry: { id, accountId, seq, kind: "grant", amount: CREDIT, layer: "grant", createdAt } },
    );
  }
  return { accountId, floor: 0, entries };
}

/** The archive bucket, recording the keys put; `fails` makes a put throw. */
function recording(fails: (key: string) => boolean = () => false) {
  const puts: string[] = [];
  const bucket = new Proxy(env.ARCHIVE, {
    get(target, prop) {
      if (prop === "put")
        return (key: string, ...rest: [string, R2PutOptions]) => {
          if (fails(key)) return Promise.reject(new Error("injected: R2 unavailable"));
          puts.push(key);
          return target.put(key, ...rest);
        };
      const v = Reflect.get(target, prop);
      return typeof v === "function" ? v.bind(target) : v;
    },
  });
  return { puts, env: { ...env, ARCHIVE: bucket } as Env };
}

/** Runs the consumer on the messages as one batch; returns the acked and retried message ids. */
async function deliver(msgs: SettlementMessage[], e: Env, tag: string, attempts = 1) {
  const batch = createMessageBatch<SettlementMessage>(
    "settlement",
    msgs.map((body, i) => ({ id: `${tag}-${i}`, timestamp: new Date(), attempts, body })),
  );
  const ctx = createExecutionContext();
  await settleBatch(batch, e);
  const r = await getQueueResult(batch, ctx);
  return { acked: r.explicitAcks.sort(), retried: r.retryMessages.map((m) => m.msgId).sort() };
}

const seqsOf = (messages: JournalMessage[]) => messages.map(seqOf);
const oneTo = (n: number) => Array.from({ length: n }, (_, i) => i + 1);

describe("the archive", () => {
  it("holds every journal entry once it settles, window usage and events included, by shard and hour", async () => {
    const id = uid("arch");
    expect((await addCredits(id, { amount: 4 * CREDIT, kind: "purchase" }, { now: T0 })).status).toBe(201);
    expect((await consume(id, { product: "codex", cost: CREDIT }, { now: T0 + SEC })).status).toBe(200);
    // two hours later: what the 5-hour window has left (1 credit), then 2 from the grant
    expect((await consume(id, { product: "codex", cost: 3 * CREDIT }, { now: T0 + 2 * HOUR })).status).toBe(200);
    const box = await settle(id);

    // each hour's folder of the account's shard holds its entries of that hour, and only that hour's
    const shard = shardOf(env, id);
    for (const hour of [T0, T0 + 2 * HOUR]) {
      const lines = await linesUnder(hourPrefix(shard, hour));
      expect(lines.filter((m) => itemOf(m).accountId === id).length).toBeGreaterThan(0);
      for (const m of lines) expect(Math.floor(itemOf(m).createdAt / HOUR) * HOUR).toBe(hour);
    }

    const all = await exportOf(id, T0, T0 + 3 * HOUR);
    expect(all.status).toBe(200);
    expect(all.headers.get("Content-Type")).toContain("application/x-ndjson");
    expect(seqsOf(all.messages)).toEqual(oneTo(box.lastSeq));
    const ledger = all.messages.flatMap((m) => (m.type === "ledger" ? [m.entry] : []));
    // window usage is archived entry by entry, as money is
    expect(ledger.filter((e) => e.kind === "charge" && e.layer === "window").length).toBeGreaterThanOrEqual(2);
    expect(ledger.filter((e) => e.kind === "charge" && e.layer === "grant").map((e) => e.amount)).toEqual([2 * CREDIT]);

    // the range: only the later hour's entries
    const later = await exportOf(id, T0 + HOUR, T0 + 3 * HOUR);
    expect(later.messages.length).toBeGreaterThan(0);
    expect(later.messages.length).toBeLessThan(all.messages.length);
    for (const m of later.messages) expect(itemOf(m).createdAt).toBeGreaterThanOrEqual(T0 + HOUR);

    // the whole journal archived again, packed as one message, twice: the same object, and each seq still once
    const repacked: SettlementMessage = { accountId: id, floor: 0, entries: all.messages };
    const once = await archive(env, [repacked]);
    expect(once.length).toBe(2);
    expect(await archive(env, [repacked])).toEqual(once);
    expect(seqsOf((await exportOf(id, T0, T0 + 3 * HOUR)).messages)).toEqual(oneTo(box.lastSeq));
  });

  it("writes one object per shard and hour for a batch of many messages from several accounts", async () => {
    const H = Date.UTC(2031, 0, 1, 5);
    const { same, other } = accountsIn(2);
    const [a, b] = same;
    // a's seqs 3 and 4 are made in the next hour
    const messages = [run(a, 1, 2, H), run(b, 1, 2, H), run(a, 3, 4, H + HOUR), run(b, 3, 3, H), run(other, 1, 3, H)];
    const r = recording();
    const result = await deliver(messages, r.env, "many");
    expect(result.retried).toEqual([]);
    expect(result.acked.length).toBe(messages.length);
    // 5 messages, 3 shard-hours: 3 puts
    const [shard, otherShard] = [shardOf(env, a), shardOf(env, other)];
    expect(r.puts.sort()).toEqual(
      [
        ...(await keysUnder(hourPrefix(shard, H))),
        ...(await keysUnder(hourPrefix(shard, H + HOUR))),
        ...(await keysUnder(hourPrefix(otherShard, H))),
      ].sort(),
    );
    expect(r.puts.length).toBe(3);
    // a and b share the hour's object
    const shared = await linesUnder(hourPrefix(shard, H));
    const held = shared.map((m) => `${itemOf(m).accountId}:${seqOf(m)}`).sort();
    expect(held).toEqual([`${a}:1`, `${a}:2`, `${b}:1`, `${b}:2`, `${b}:3`].sort());

    // each export holds its own account's entries only, by seq
    const [exportA, exportB] = [await exportOf(a, H, H + 2 * HOUR), await exportOf(b, H, H + 2 * HOUR)];
    expect(exportA.messages.map((m) => itemOf(m).accountId)).toEqual([a, a, a, a]);
    expect(seqsOf(exportA.messages)).toEqual([1, 2, 3, 4]);
    expect(exportB.messages.map((m) => itemOf(m).accountId)).toEqual([b, b, b]);
    expect(seqsOf(exportB.messages)).toEqual([1, 2, 3]);
    expect(exportB.messages.map((m) => m.type)).toEqual(["ledger", "ledger", "event"]);
  });

  it("a redelivered batch rewrites the same object, and overlapping resends export each seq once", async () => {
    const H = Date.UTC(2031, 0, 2, 7);
    const [a] = accountsIn(1).same;
    const folder = hourPrefix(shardOf(env, a), H);
    const first = recording();
    expect((await deliver([run(a, 1, 3, H)], first.env, "dup")).retried).toEqual([]);
    expect(await keysUnder(folder)).toEqual(first.puts);
    const before = await (await env.ARCHIVE.get(first.puts[0]))?.text();

    // the same batch again: the same key, the same bytes, no new object
    const again = recording();
    expect((await deliver([run(a, 1, 3, H)], again.env, "dup", 2)).retried).toEqual([]);
    expect(again.puts).toEqual(first.puts);
    expect(await keysUnder(folder)).toEqual(first.puts);
    expect(await (await env.ARCHIVE.get(first.puts[0]))?.text()).toBe(before);

    // a resend packed differently overlaps the first: a second object, and the export keeps each seq once
    expect((await deliver([run(a, 2, 5, H)], env, "resend")).retried).toEqual([]);
    expect((await keysUnder(folder)).length).toBe(2);
    expect(seqsOf((await exportOf(a, H, H + HOUR)).messages)).toEqual([1, 2, 3, 4, 5]);
  });

  it("archives before D1: a failed write retries those messages untouched in D1, and only those", async () => {
    const H = Date.UTC(2031, 0, 3, 9);
    const { same, other } = accountsIn(1);
    const [a] = same;
    const failing = hourPrefix(shardOf(env, a), H);
    const broken = recording((key) => key.startsWith(failing));
    const r = await deliver([run(a, 1, 2, H), run(other, 1, 2, H)], broken.env, "fail");
    // a's shard write failed: a's message is retried and D1 has not seen it, so the watermark (which lets the object
    // prune its journal) cannot pass entries the archive lacks; the other shard's is archived, settled and acked
    expect(r.retried).toEqual(["fail-0"]);
    expect(r.acked).toEqual(["fail-1"]);
    expect(await keysUnder(failing)).toEqual([]);
    expect((await exportOf(a, H, H + HOUR)).messages).toEqual([]);
    expect(await headOf(a)).toBeNull();
    expect((await headOf(other))?.watermark).toBe(2);

    // the retry archives and settles
    const retry = await deliver([run(a, 1, 2, H)], env, "fail", 2);
    expect(retry.acked).toEqual(["fail-0"]);
    expect(seqsOf((await exportOf(a, H, H + HOUR)).messages)).toEqual([1, 2]);
    expect((await headOf(a))?.watermark).toBe(2);
  });

  it("refuses a range that is not one, in the one error shape", async () => {
    const id = uid("arch-bad");
    const r = await call(
      "GET",
      `/v1/admin/accounts/${id}/archive?from=${new Date(T0 + HOUR).toISOString()}&to=${new Date(T0).toISOString()}`,
      undefined,
      { token: ADMIN },
    );
    expect(r.status).toBe(400);
    expect(r.body.error.code).toBe("invalid_request");
    const missing = await call("GET", `/v1/admin/accounts/${id}/archive`, undefined, { token: ADMIN });
    expect(missing.status).toBe(400);
    // the admin token is required, as on every admin route
    const service = await call("GET", `/v1/admin/accounts/${id}/archive?from=x&to=y`, undefined, {
      token: "test-service-token",
    });
    expect([401, 403]).toContain(service.status);
  });
});
