/**
 * The R2 archive (SPEC §7, issue #15 item 5): every journal entry, window usage and events included, lands in R2 as
 * NDJSON keyed by shard, account and hour once it settles; a redelivered message rewrites the same objects; the
 * operator export streams one account's entries in a time range, each sequence number once.
 */
import { itemOf, seqOf } from "../worker/core/journal";
import { runDurableObjectAlarm } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import { accountPrefix, archive, archiveObjects } from "../worker/settlement/archive";
import type { JournalMessage, SettlementMessage } from "../worker/settlement/messages";
import { shardOf } from "../worker/settlement/shards";
import { ADMIN, addCredits, CREDIT, call, consume, HOUR, T0, uid } from "./helpers";
import { outboxOf, sleep, stubFor } from "./settle-helpers";

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

describe("the archive", () => {
  it("holds every journal entry once it settles, window usage and events included, by shard, account and hour", async () => {
    const id = uid("arch");
    expect((await addCredits(id, { amount: 4 * CREDIT, kind: "purchase" }, { now: T0 })).status).toBe(201);
    expect((await consume(id, { product: "codex", cost: CREDIT }, { now: T0 + SEC })).status).toBe(200);
    // two hours later: what the 5-hour window has left (1 credit), then 2 from the grant
    expect((await consume(id, { product: "codex", cost: 3 * CREDIT }, { now: T0 + 2 * HOUR })).status).toBe(200);
    const box = await settle(id);

    const listed = await env.ARCHIVE.list({ prefix: accountPrefix(shardOf(env, id), id) });
    expect(listed.objects.length).toBeGreaterThanOrEqual(2);
    const hours = new Set(listed.objects.map((o) => o.key.split("/")[3]));
    expect(hours).toEqual(
      new Set([new Date(T0).toISOString().slice(0, 13), new Date(T0 + 2 * HOUR).toISOString().slice(0, 13)]),
    );

    const all = await exportOf(id, T0, T0 + 3 * HOUR);
    expect(all.status).toBe(200);
    expect(all.headers.get("Content-Type")).toContain("application/x-ndjson");
    expect(all.messages.map(seqOf)).toEqual(Array.from({ length: box.lastSeq }, (_, i) => i + 1));
    const ledger = all.messages.flatMap((m) => (m.type === "ledger" ? [m.entry] : []));
    // window usage is archived entry by entry, as money is
    expect(ledger.filter((e) => e.kind === "charge" && e.layer === "window").length).toBeGreaterThanOrEqual(2);
    expect(ledger.filter((e) => e.kind === "charge" && e.layer === "grant").map((e) => e.amount)).toEqual([2 * CREDIT]);

    // the range: only the later hour's entries
    const later = await exportOf(id, T0 + HOUR, T0 + 3 * HOUR);
    expect(later.messages.length).toBeGreaterThan(0);
    expect(later.messages.length).toBeLessThan(all.messages.length);
    for (const m of later.messages) expect(itemOf(m).createdAt).toBeGreaterThanOrEqual(T0 + HOUR);
  });

  it("a redelivered message rewrites the same objects, and overlapping resends export each seq once", async () => {
    const id = uid("arch-dup");
    expect((await addCredits(id, { amount: 2 * CREDIT, kind: "purchase" }, { now: T0 })).status).toBe(201);
    expect((await consume(id, { product: "codex", cost: CREDIT / 2 }, { now: T0 + SEC })).status).toBe(200);
    const box = await settle(id);
    const prefix = accountPrefix(shardOf(env, id), id);
    const before = (await env.ARCHIVE.list({ prefix })).objects.map((o) => o.key).sort();

    // the whole journal again as one message (packed differently from the first sends) and then once more
    const all = await exportOf(id, T0, T0 + HOUR);
    const repacked: SettlementMessage = { accountId: id, floor: 0, entries: all.messages };
    await archive(env, [repacked]);
    const once = (await env.ARCHIVE.list({ prefix })).objects.map((o) => o.key).sort();
    await archive(env, [repacked]);
    const twice = (await env.ARCHIVE.list({ prefix })).objects.map((o) => o.key).sort();
    expect(twice).toEqual(once);
    expect(once.length).toBe(
      before.length + (before.includes(archiveObjects(shardOf(env, id), repacked)[0].key) ? 0 : 1),
    );

    const again = await exportOf(id, T0, T0 + HOUR);
    expect(again.messages.map(seqOf)).toEqual(Array.from({ length: box.lastSeq }, (_, i) => i + 1));
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
