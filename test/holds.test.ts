/**
 * Holds (SPEC §4 "Holds", §8 routes): reserve through the waterfall, settle below/above, write-off,
 * release, non-active and unknown holds, and expiry at the TTL by the test clock and by the alarm.
 * Every account here is a fresh `go` account: codex 2 credits per 5 h, 10 per week.
 */
import { describe, expect, it } from "vitest";
import { runDurableObjectAlarm, runInDurableObject } from "cloudflare:test";
import type { AccountDO } from "../durable-objects/account/object";
import { account, addCredits, call, consume, CREDIT, T0, uid } from "./helpers";
import { drainAccount, ledgerAll, ledgerView, outboxMessages, sleep, stubFor } from "./settle-helpers";
import { journalIn } from "./storage-helpers";
import type { LedgerEntry } from "../worker/core/journal";

const SEC = 1000;
const GO_FIVE_HOUR = 2 * CREDIT;

const hold = (id: string, body: unknown, now = T0, key?: string) =>
  call("POST", `/v1/accounts/${id}/holds`, body, { now, key });
const settle = (id: string, holdId: string, body: unknown, now = T0, key?: string) =>
  call("POST", `/v1/accounts/${id}/holds/${holdId}/settle`, body, { now, key });
const release = (id: string, holdId: string, now = T0, key?: string) =>
  call("POST", `/v1/accounts/${id}/holds/${holdId}/release`, undefined, { now, key });

const used = (a: any, product = "codex") => a.products[product].fiveHour.used as number;
const weeklyUsed = (a: any, product = "codex") => a.products[product].weekly.used as number;

async function purchase(id: string, amount: number, now = T0) {
  const r = await addCredits(id, { amount, kind: "purchase" }, { now });
  expect(r.status, JSON.stringify(r.body)).toBe(201);
  return r.body.id as string;
}

/** The account object's journal entries: every ledger entry, window usage included, as the object wrote it. */
const journalEntries = async (id: string): Promise<LedgerEntry[]> =>
  (await outboxMessages(id)).flatMap((m) => (m.type === "ledger" ? [m.entry] : []));
const sumOf = (xs: { amount: number }[]) => xs.reduce((n, x) => n + x.amount, 0);

type D1Row = Awaited<ReturnType<typeof drainAccount>>["rows"][number];

/**
 * The drained D1 ledger is what the journal settles into (SPEC §7): each money entry as its own row, window charges
 * summed into their hour's `usage` rollup (amount and count), window holds and releases not at all.
 */
async function expectLedgerOfJournal(id: string, rows: D1Row[]) {
  const view = ledgerView(await outboxMessages(id));
  const held = new Map(rows.map((r) => [r.id, { kind: r.kind, amount: r.amount, count: r.usage_count ?? 1 }]));
  expect(held).toEqual(view);
}

/** D1's `usage` rollups as [amount, count]. */
const usageRollups = (rows: D1Row[]) => rows.filter((r) => r.kind === "usage").map((r) => [r.amount, r.usage_count]);

/** No balance, window or grant is ever negative, and no window is over its limit. */
function expectNeverNegative(a: any) {
  expect(a.credits.balance).toBeGreaterThanOrEqual(0);
  for (const g of a.credits.grants) expect(g.remaining).toBeGreaterThanOrEqual(0);
  for (const p of Object.values(a.products) as any[])
    for (const w of [p.fiveHour, p.weekly]) {
      expect(w.remaining).toBeGreaterThanOrEqual(0);
      expect(w.used).toBeLessThanOrEqual(w.limit);
    }
}

describe("creating a hold", () => {
  it("answers 201 { holdId, amount, sources, expiresAt } and lists the hold on the account", async () => {
    const id = uid();
    const r = await hold(id, { product: "codex", cost: 1.5 * CREDIT });
    expect(r.status, JSON.stringify(r.body)).toBe(201);
    expect(typeof r.body.holdId).toBe("string");
    expect(r.body.holdId.length).toBeGreaterThan(0);
    expect(r.body.amount).toBe(1.5 * CREDIT);
    expect(r.body.sources).toEqual([{ layer: "window", amount: 1.5 * CREDIT }]);
    // default TTL is 600 s
    expect(r.body.expiresAt).toBe(new Date(T0 + 600 * SEC).toISOString());

    const a = (await account(id, T0)).body;
    expect(a.holds).toEqual([
      expect.objectContaining({ holdId: r.body.holdId, amount: 1.5 * CREDIT, expiresAt: r.body.expiresAt }),
    ]);
    expect(used(a)).toBe(1.5 * CREDIT);
    expect(weeklyUsed(a)).toBe(1.5 * CREDIT);
  });

  it("honours ttlSeconds and refuses a TTL above 3600 s", async () => {
    const id = uid();
    const r = await hold(id, { product: "codex", cost: CREDIT, ttlSeconds: 120 });
    expect(r.status).toBe(201);
    expect(r.body.expiresAt).toBe(new Date(T0 + 120 * SEC).toISOString());
    const max = await hold(id, { product: "codex", cost: 1000, ttlSeconds: 3600 });
    expect(max.status).toBe(201);
    expect(max.body.expiresAt).toBe(new Date(T0 + 3600 * SEC).toISOString());
    const tooLong = await hold(id, { product: "codex", cost: 1000, ttlSeconds: 3601 });
    expect(tooLong.status).toBe(400);
    expect(tooLong.body.error.code).toBe("invalid_request");
    for (const ttlSeconds of [0, -5, 1.5])
      expect((await hold(id, { product: "codex", cost: 1000, ttlSeconds })).status, String(ttlSeconds)).toBe(400);
    // nothing was reserved by the refused ones
    expect((await account(id, T0)).body.holds).toHaveLength(2);
  });

  it("the same Idempotency-Key replays the hold instead of reserving twice", async () => {
    const id = uid();
    const key = uid("key");
    const first = await hold(id, { product: "codex", cost: CREDIT }, T0, key);
    const again = await hold(id, { product: "codex", cost: CREDIT }, T0 + SEC, key);
    expect([first.status, again.status]).toEqual([201, 201]);
    expect(again.headers.get("Idempotent-Replayed")).toBe("true");
    expect(again.body.holdId).toBe(first.body.holdId);
    const a = (await account(id, T0 + SEC)).body;
    expect(a.holds).toHaveLength(1);
    expect(used(a)).toBe(CREDIT);
    const conflict = await hold(id, { product: "codex", cost: 2 * CREDIT }, T0 + SEC, key);
    expect(conflict.status).toBe(409);
    expect(conflict.body.error.code).toBe("idempotency_conflict");
  });

  it("reserves through the waterfall: windows first, then grants, and the balance excludes what is held", async () => {
    const id = uid();
    const grantId = await purchase(id, 2 * CREDIT);
    const r = await hold(id, { product: "codex", cost: 3 * CREDIT });
    expect(r.status, JSON.stringify(r.body)).toBe(201);
    expect(r.body.sources).toEqual([
      { layer: "window", amount: 2 * CREDIT },
      { layer: "grant", grantId, amount: CREDIT },
    ]);
    const a = (await account(id, T0)).body;
    expect(used(a)).toBe(GO_FIVE_HOUR);
    expect(a.credits.balance).toBe(CREDIT);
  });

  it("prices usage like a consume does", async () => {
    const id = uid();
    // gpt-5-codex output tokens: 10 credits per million → 100 000 tokens = 1 credit
    const r = await hold(id, { product: "codex", usage: { model: "gpt-5-codex", outputTokens: 100_000 } });
    expect(r.status, JSON.stringify(r.body)).toBe(201);
    expect(r.body.amount).toBe(CREDIT);
  });

  it("is denied with 429 and reserves nothing when the waterfall cannot cover it", async () => {
    const id = uid();
    const r = await hold(id, { product: "codex", cost: 3 * CREDIT });
    expect(r.status).toBe(429);
    expect(r.body.allowed).toBe(false);
    expect(r.body.reason).toBe("limit_reached");
    expect(r.headers.get("Retry-After")).not.toBeNull();
    const a = (await account(id, T0)).body;
    expect(a.holds).toEqual([]);
    expect(used(a)).toBe(0);
  });
});

describe("reserved amounts are unavailable to other requests", () => {
  it("denies a consume that would fit without the hold", async () => {
    // control: without a hold, 1 credit fits in a fresh go window
    const control = uid();
    expect((await consume(control, { product: "codex", cost: CREDIT }, { now: T0 })).status).toBe(200);

    const id = uid();
    expect((await hold(id, { product: "codex", cost: 1.5 * CREDIT })).status).toBe(201);
    const r = await consume(id, { product: "codex", cost: CREDIT }, { now: T0 + SEC });
    expect(r.status, JSON.stringify(r.body)).toBe(429);
    expect(r.body.allowed).toBe(false);
    expect(r.body.reason).toBe("limit_reached");
    // nothing was charged by the denial
    expect(used((await account(id, T0 + SEC)).body)).toBe(1.5 * CREDIT);
  });

  it("covers only the unreserved part from the window; grants pay the rest", async () => {
    const id = uid();
    const grantId = await purchase(id, 3 * CREDIT);
    expect((await hold(id, { product: "codex", cost: 1.5 * CREDIT })).status).toBe(201);
    const r = await consume(id, { product: "codex", cost: CREDIT }, { now: T0 + SEC });
    expect(r.status, JSON.stringify(r.body)).toBe(200);
    expect(r.body.sources).toEqual([
      { layer: "window", amount: 0.5 * CREDIT },
      { layer: "grant", grantId, amount: 0.5 * CREDIT },
    ]);
    expect(r.body.account.credits.balance).toBe(2.5 * CREDIT);
  });

  it("keeps credits it reserved from other requests", async () => {
    const id = uid();
    await purchase(id, 2 * CREDIT);
    // window 2 + grant 1.5 reserved; 0.5 credit left
    expect((await hold(id, { product: "codex", cost: 3.5 * CREDIT })).status).toBe(201);
    const r = await consume(id, { product: "codex", cost: CREDIT }, { now: T0 + SEC });
    expect(r.status, JSON.stringify(r.body)).toBe(429);
    expect(r.body.reason).toBe("insufficient_credits");
    // and a second hold cannot take them either
    const h2 = await hold(id, { product: "codex", cost: CREDIT }, T0 + 2 * SEC);
    expect(h2.status).toBe(429);
    const fits = await consume(id, { product: "codex", cost: 0.5 * CREDIT }, { now: T0 + 3 * SEC });
    expect(fits.status).toBe(200);
    expect(fits.body.account.credits.balance).toBe(0);
  });
});

describe("settling a hold", () => {
  it("below the hold: charges the actual cost and gives the rest back to window and grant", async () => {
    const id = uid();
    const grantId = await purchase(id, 2 * CREDIT);
    const h = await hold(id, { product: "codex", cost: 3 * CREDIT }); // window 2 + grant 1
    expect(h.status).toBe(201);
    const s = await settle(id, h.body.holdId, { cost: 1.5 * CREDIT }, T0 + 10 * SEC);
    expect(s.status, JSON.stringify(s.body)).toBe(200);
    expect(s.body.charged).toBe(1.5 * CREDIT);
    expect(s.body.released).toBe(1.5 * CREDIT);
    expect(s.body.writtenOff).toBe(0);
    expect(s.body.sources.reduce((n: number, x: any) => n + x.amount, 0)).toBe(1.5 * CREDIT);

    const a = (await account(id, T0 + 10 * SEC)).body;
    // the hold reserved the whole window and 1 credit; the rest (0.5 window + 1 grant) came back
    expect(used(a)).toBe(1.5 * CREDIT);
    expect(weeklyUsed(a)).toBe(1.5 * CREDIT);
    expect(a.credits.balance).toBe(2 * CREDIT);
    expect(a.credits.grants.find((g: any) => g.id === grantId).remaining).toBe(2 * CREDIT);
    expect(a.holds).toEqual([]);

    // the freed window capacity is usable again
    const c = await consume(id, { product: "codex", cost: 0.5 * CREDIT }, { now: T0 + 11 * SEC });
    expect(c.status).toBe(200);
    expect(c.body.sources).toEqual([{ layer: "window", amount: 0.5 * CREDIT }]);

    // the journal charges exactly the actual cost for the hold, all of it from the window
    const { rows } = await drainAccount(id);
    const holdCharges = (await journalEntries(id)).filter((e) => e.kind === "charge" && e.holdId === h.body.holdId);
    expect(holdCharges.map((e) => [e.layer, e.amount])).toEqual([["window", 1.5 * CREDIT]]);
    // in D1 the window charges are the hour's usage rollup (the hold's 1.5 and the later 0.5); no credit was charged,
    // and of the hold only its credit part is there, reserved and given back in full
    await expectLedgerOfJournal(id, rows);
    expect(usageRollups(rows)).toEqual([[2 * CREDIT, 2]]);
    expect(rows.filter((r) => r.kind === "charge")).toEqual([]);
    expect(rows.filter((r) => r.hold_id === h.body.holdId).map((r) => [r.kind, r.layer, r.amount])).toEqual([
      ["hold", "grant", CREDIT],
      ["release", "grant", CREDIT],
    ]);
    expect(rows.some((r) => r.kind === "write_off")).toBe(false);
  });

  it("below the hold with usage: the usage is priced for the hold's product", async () => {
    const id = uid();
    const h = await hold(id, { product: "codex", cost: 2 * CREDIT });
    const s = await settle(id, h.body.holdId, { usage: { model: "gpt-5-codex", outputTokens: 50_000 } }, T0 + SEC);
    expect(s.status, JSON.stringify(s.body)).toBe(200);
    expect(s.body).toMatchObject({ charged: 0.5 * CREDIT, released: 1.5 * CREDIT, writtenOff: 0 });
    expect(used((await account(id, T0 + SEC)).body)).toBe(0.5 * CREDIT);
  });

  it("usage priced for another product's model is refused and leaves the hold active", async () => {
    const id = uid();
    const h = await hold(id, { product: "codex", cost: CREDIT });
    const s = await settle(id, h.body.holdId, { usage: { model: "sora-2", videoSeconds: 1 } }, T0 + SEC);
    expect(s.status).toBe(400);
    expect(s.body.error.code).toBe("invalid_request");
    const both = await settle(
      id,
      h.body.holdId,
      { cost: CREDIT, usage: { model: "gpt-5-codex", outputTokens: 1 } },
      T0 + SEC,
    );
    expect(both.status).toBe(400);
    const a = (await account(id, T0 + SEC)).body;
    expect(a.holds).toHaveLength(1);
    expect((await settle(id, h.body.holdId, { cost: CREDIT }, T0 + 2 * SEC)).status).toBe(200);
  });

  it("exactly at the hold: charges it all and releases nothing", async () => {
    const id = uid();
    const h = await hold(id, { product: "codex", cost: CREDIT });
    const s = await settle(id, h.body.holdId, { cost: CREDIT }, T0 + SEC);
    expect(s.status).toBe(200);
    expect(s.body).toMatchObject({
      charged: CREDIT,
      released: 0,
      writtenOff: 0,
      sources: [{ layer: "window", amount: CREDIT }],
    });
    expect(used((await account(id, T0 + SEC)).body)).toBe(CREDIT);
  });

  it("above the hold: the extra goes through the waterfall (window, then grants)", async () => {
    const id = uid();
    const grantId = await purchase(id, CREDIT);
    const h = await hold(id, { product: "codex", cost: CREDIT }); // window 1
    const s = await settle(id, h.body.holdId, { cost: 2.5 * CREDIT }, T0 + SEC);
    expect(s.status, JSON.stringify(s.body)).toBe(200);
    expect(s.body.charged).toBe(2.5 * CREDIT);
    expect(s.body.released).toBe(0);
    expect(s.body.writtenOff).toBe(0);
    expect(s.body.sources).toEqual([
      { layer: "window", amount: 2 * CREDIT },
      { layer: "grant", grantId, amount: 0.5 * CREDIT },
    ]);
    const a = (await account(id, T0 + SEC)).body;
    expect(used(a)).toBe(2 * CREDIT);
    expect(a.credits.balance).toBe(0.5 * CREDIT);
    expectNeverNegative(a);

    // the journal charges the hold 2.5: the reserved window credit, then the extra (window, then the grant)
    const { rows } = await drainAccount(id);
    const holdCharges = (await journalEntries(id)).filter((e) => e.kind === "charge" && e.holdId === h.body.holdId);
    expect(sumOf(holdCharges)).toBe(2.5 * CREDIT);
    expect(holdCharges.map((e) => [e.layer, e.amount])).toEqual([
      ["window", CREDIT],
      ["window", CREDIT],
      ["grant", 0.5 * CREDIT],
    ]);
    // D1: the grant's part as the hold's charge row, both window charges in the hour's usage rollup
    await expectLedgerOfJournal(id, rows);
    expect(
      rows.filter((r) => r.kind === "charge" && r.hold_id === h.body.holdId).map((r) => [r.layer, r.amount]),
    ).toEqual([["grant", 0.5 * CREDIT]]);
    expect(usageRollups(rows)).toEqual([[2 * CREDIT, 2]]);
    expect(rows.some((r) => r.kind === "write_off")).toBe(false);
  });

  it("above the hold with nothing to cover the rest: writes it off, records a write_off entry, never goes negative", async () => {
    const id = uid();
    const h = await hold(id, { product: "codex", cost: 1.5 * CREDIT }); // window 1.5 of 2
    const s = await settle(id, h.body.holdId, { cost: 4 * CREDIT }, T0 + SEC);
    expect(s.status, JSON.stringify(s.body)).toBe(200);
    // 1.5 held + 0.5 window left = 2 charged; 2 nothing covers
    expect(s.body.charged).toBe(2 * CREDIT);
    expect(s.body.writtenOff).toBe(2 * CREDIT);
    expect(s.body.released).toBe(0);
    expect(s.body.sources).toEqual([{ layer: "window", amount: 2 * CREDIT }]);
    const a = (await account(id, T0 + SEC)).body;
    expect(used(a)).toBe(GO_FIVE_HOUR);
    expect(a.credits.balance).toBe(0);
    expectNeverNegative(a);

    const { rows } = await drainAccount(id);
    const writeOffs = rows.filter((r) => r.kind === "write_off");
    expect(writeOffs).toHaveLength(1);
    expect(writeOffs[0]).toMatchObject({ amount: 2 * CREDIT, hold_id: h.body.holdId });
    // the hold's charges are the window's 1.5 held and 0.5 extra: in the journal, and in D1 as the hour's usage rollup
    const holdCharges = (await journalEntries(id)).filter((e) => e.kind === "charge" && e.holdId === h.body.holdId);
    expect(holdCharges.map((e) => [e.layer, e.amount])).toEqual([
      ["window", 1.5 * CREDIT],
      ["window", 0.5 * CREDIT],
    ]);
    await expectLedgerOfJournal(id, rows);
    expect(usageRollups(rows)).toEqual([[2 * CREDIT, 2]]);
    expect(rows.filter((r) => r.kind === "charge")).toEqual([]);
    // the ledger route shows it too, with a positive amount
    const entries = await ledgerAll(id);
    expect(entries.filter((e) => e.kind === "write_off").map((e) => e.amount)).toEqual([2 * CREDIT]);
  });

  it("above the hold with a partly covering grant: the grant is emptied, not overdrawn, and the rest is written off", async () => {
    const id = uid();
    const grantId = await purchase(id, 0.5 * CREDIT);
    const h = await hold(id, { product: "codex", cost: 2 * CREDIT }); // whole window
    const s = await settle(id, h.body.holdId, { cost: 3 * CREDIT }, T0 + SEC);
    expect(s.status, JSON.stringify(s.body)).toBe(200);
    expect(s.body.charged).toBe(2.5 * CREDIT);
    expect(s.body.writtenOff).toBe(0.5 * CREDIT);
    expect(s.body.sources).toEqual([
      { layer: "window", amount: 2 * CREDIT },
      { layer: "grant", grantId, amount: 0.5 * CREDIT },
    ]);
    const a = (await account(id, T0 + SEC)).body;
    expect(a.credits.balance).toBe(0);
    expectNeverNegative(a);
    // the DO's own grant row is not negative either
    const remaining = await runInDurableObject(
      stubFor(id),
      (_i: AccountDO, state) =>
        state.storage.sql.exec<{ r: number }>("SELECT remaining AS r FROM grants WHERE id = ?", grantId).one().r,
    );
    expect(remaining).toBe(0);
  });

  it("above the hold while credits are reserved by another hold: those credits are not taken", async () => {
    const id = uid();
    await purchase(id, CREDIT);
    const h1 = await hold(id, { product: "codex", cost: 2 * CREDIT }); // window
    const h2 = await hold(id, { product: "codex", cost: CREDIT }, T0 + SEC); // the grant
    expect([h1.status, h2.status]).toEqual([201, 201]);
    const s = await settle(id, h1.body.holdId, { cost: 2.5 * CREDIT }, T0 + 2 * SEC);
    expect(s.status).toBe(200);
    expect(s.body.charged).toBe(2 * CREDIT);
    expect(s.body.writtenOff).toBe(0.5 * CREDIT);
    // h2 still holds its whole credit and can settle it in full
    const s2 = await settle(id, h2.body.holdId, { cost: CREDIT }, T0 + 3 * SEC);
    expect(s2.status).toBe(200);
    expect(s2.body).toMatchObject({ charged: CREDIT, writtenOff: 0 });
  });
});

describe("releasing a hold", () => {
  it("answers 200 and frees the whole reservation", async () => {
    const id = uid();
    await purchase(id, CREDIT);
    const h = await hold(id, { product: "codex", cost: 2.5 * CREDIT }); // window 2 + grant 0.5
    expect(h.status).toBe(201);
    const r = await release(id, h.body.holdId, T0 + SEC);
    expect(r.status, JSON.stringify(r.body)).toBe(200);
    expect(r.body.holdId).toBe(h.body.holdId);
    expect(r.body.released).toBe(2.5 * CREDIT);
    const a = (await account(id, T0 + SEC)).body;
    expect(a.holds).toEqual([]);
    expect(used(a)).toBe(0);
    expect(weeklyUsed(a)).toBe(0);
    expect(a.credits.balance).toBe(CREDIT);
    // what was reserved is spendable again
    const c = await consume(id, { product: "codex", cost: 3 * CREDIT }, { now: T0 + 2 * SEC });
    expect(c.status, JSON.stringify(c.body)).toBe(200);

    // the journal records hold and release, and no charge for the hold
    const { rows } = await drainAccount(id);
    const ofHold = (await journalEntries(id)).filter((e) => e.holdId === h.body.holdId);
    const sum = (kind: string) => sumOf(ofHold.filter((e) => e.kind === kind));
    expect(sum("hold")).toBe(2.5 * CREDIT);
    expect(sum("release")).toBe(2.5 * CREDIT);
    expect(sum("charge")).toBe(0);
    // D1 holds the credit part of both (the window's reservation is usage, in the journal only); the window charge in
    // the hour's usage rollup is the later consume's alone
    await expectLedgerOfJournal(id, rows);
    expect(rows.filter((r) => r.hold_id === h.body.holdId).map((r) => [r.kind, r.layer, r.amount])).toEqual([
      ["hold", "grant", 0.5 * CREDIT],
      ["release", "grant", 0.5 * CREDIT],
    ]);
    expect(usageRollups(rows)).toEqual([[2 * CREDIT, 1]]);
  });

  it("replays the same Idempotency-Key instead of answering 409", async () => {
    const id = uid();
    const h = await hold(id, { product: "codex", cost: CREDIT });
    const key = uid("key");
    const r1 = await release(id, h.body.holdId, T0 + SEC, key);
    const r2 = await release(id, h.body.holdId, T0 + 2 * SEC, key);
    expect(r1.status).toBe(200);
    expect(r2.status).toBe(200);
    expect(r2.headers.get("Idempotent-Replayed")).toBe("true");
    expect(r2.body.released).toBe(CREDIT);
  });
});

describe("holds that are not active, or unknown", () => {
  it("409 hold_not_active for release or settle after a release", async () => {
    const id = uid();
    const h = await hold(id, { product: "codex", cost: CREDIT });
    expect((await release(id, h.body.holdId, T0 + SEC)).status).toBe(200);
    for (const r of [
      await release(id, h.body.holdId, T0 + 2 * SEC),
      await settle(id, h.body.holdId, { cost: CREDIT }, T0 + 3 * SEC),
    ]) {
      expect(r.status, JSON.stringify(r.body)).toBe(409);
      expect(r.body.error.code).toBe("hold_not_active");
      expect(typeof r.body.error.requestId).toBe("string");
    }
    // nothing was charged by the refused settle
    expect(used((await account(id, T0 + 4 * SEC)).body)).toBe(0);
  });

  it("409 hold_not_active for settle or release after a settle, and the first settle stands", async () => {
    const id = uid();
    const h = await hold(id, { product: "codex", cost: CREDIT });
    expect((await settle(id, h.body.holdId, { cost: 0.5 * CREDIT }, T0 + SEC)).status).toBe(200);
    const again = await settle(id, h.body.holdId, { cost: 0.5 * CREDIT }, T0 + 2 * SEC);
    expect(again.status).toBe(409);
    expect(again.body.error.code).toBe("hold_not_active");
    const rel = await release(id, h.body.holdId, T0 + 3 * SEC);
    expect(rel.status).toBe(409);
    expect(rel.body.error.code).toBe("hold_not_active");
    expect(used((await account(id, T0 + 4 * SEC)).body)).toBe(0.5 * CREDIT);
  });

  it("404 for an unknown hold, on settle and on release", async () => {
    const id = uid();
    expect((await hold(id, { product: "codex", cost: CREDIT })).status).toBe(201);
    const unknown = "no-such-hold-123";
    const s = await settle(id, unknown, { cost: CREDIT }, T0 + SEC);
    expect(s.status).toBe(404);
    expect(s.body.error.code).toBe("not_found");
    const r = await release(id, unknown, T0 + SEC);
    expect(r.status).toBe(404);
    expect(r.body.error.code).toBe("not_found");
    // on an account that has never been written either
    const fresh = uid();
    expect((await settle(fresh, unknown, { cost: CREDIT })).status).toBe(404);
    expect((await release(fresh, unknown)).status).toBe(404);
  });

  it("a hold id belongs to its account: another account's hold is unknown", async () => {
    const a = uid();
    const b = uid();
    const h = await hold(a, { product: "codex", cost: CREDIT });
    expect((await release(b, h.body.holdId, T0 + SEC)).status).toBe(404);
    expect((await settle(b, h.body.holdId, { cost: CREDIT }, T0 + SEC)).status).toBe(404);
    expect((await account(a, T0 + SEC)).body.holds).toHaveLength(1);
  });
});

describe("hold expiry", () => {
  it("by the test clock: a request after expiresAt sees the reservation freed", async () => {
    const id = uid();
    const grantId = await purchase(id, CREDIT);
    const h = await hold(id, { product: "codex", cost: 2.5 * CREDIT, ttlSeconds: 60 });
    expect(h.status).toBe(201);
    expect(h.body.expiresAt).toBe(new Date(T0 + 60 * SEC).toISOString());

    // before the TTL the reservation stands
    const before = await consume(id, { product: "codex", cost: CREDIT }, { now: T0 + 59 * SEC });
    expect(before.status).toBe(429);
    expect((await account(id, T0 + 59 * SEC)).body.holds).toHaveLength(1);

    // after it, everything the hold reserved is available again
    const after = (await account(id, T0 + 61 * SEC)).body;
    expect(after.holds).toEqual([]);
    expect(used(after)).toBe(0);
    expect(after.credits.balance).toBe(CREDIT);
    expect(after.credits.grants.find((g: any) => g.id === grantId).remaining).toBe(CREDIT);
    const c = await consume(id, { product: "codex", cost: 3 * CREDIT }, { now: T0 + 62 * SEC });
    expect(c.status, JSON.stringify(c.body)).toBe(200);

    // an expired hold can be neither settled nor released
    const s = await settle(id, h.body.holdId, { cost: CREDIT }, T0 + 63 * SEC);
    expect(s.status).toBe(409);
    expect(s.body.error.code).toBe("hold_not_active");
    const r = await release(id, h.body.holdId, T0 + 63 * SEC);
    expect(r.status).toBe(409);

    // the expiry is in the journal as a release of everything reserved, and in D1 as the release of its credit part
    const { rows } = await drainAccount(id);
    const releases = (await journalEntries(id)).filter((e) => e.kind === "release" && e.holdId === h.body.holdId);
    expect(releases.map((e) => [e.layer, e.amount])).toEqual([
      ["window", 2 * CREDIT],
      ["grant", 0.5 * CREDIT],
    ]);
    await expectLedgerOfJournal(id, rows);
    expect(
      rows.filter((r) => r.kind === "release" && r.hold_id === h.body.holdId).map((r) => [r.layer, r.amount]),
    ).toEqual([["grant", 0.5 * CREDIT]]);
    expect(rows.filter((r) => r.hold_id === h.body.holdId && r.kind === "charge")).toEqual([]);
  });

  it("the first request that reaches the TTL itself may use the freed capacity", async () => {
    const id = uid();
    expect((await hold(id, { product: "codex", cost: 2 * CREDIT, ttlSeconds: 30 })).status).toBe(201);
    const c = await consume(id, { product: "codex", cost: 2 * CREDIT }, { now: T0 + 31 * SEC });
    expect(c.status, JSON.stringify(c.body)).toBe(200);
    expect(c.body.sources).toEqual([{ layer: "window", amount: 2 * CREDIT }]);
  });

  it("by the alarm: with no request at all, the object releases the hold once its TTL has passed", async () => {
    const id = uid();
    const stub = stubFor(id);
    await purchase(id, CREDIT);
    const h = await hold(id, { product: "codex", cost: 2.5 * CREDIT, ttlSeconds: 1 });
    expect(h.status).toBe(201);
    const stateOf = () =>
      runInDurableObject(stub, (_i: AccountDO, state) => {
        const sql = state.storage.sql;
        return {
          hold: sql.exec<{ state: string }>("SELECT state FROM holds WHERE id = ?", h.body.holdId).one().state,
          windowUsed: sql
            .exec<{ used: number }>(`SELECT json_extract(windows, '$."codex:fiveHour"[1]') AS used FROM account`)
            .one().used,
          grantRemaining: sql.exec<{ r: number }>("SELECT SUM(remaining) AS r FROM grants").one().r,
        };
      });
    expect(await stateOf()).toEqual({ hold: "active", windowUsed: 2 * CREDIT, grantRemaining: 0.5 * CREDIT });

    // the object's clock is the request clock (T0) plus the real time since; let the 1 s TTL pass
    await sleep(1_300);
    const scheduled = await runInDurableObject(stub, (_i: AccountDO, state) => state.storage.getAlarm());
    // an alarm is set (or has just run on its own and set the next one)
    expect(scheduled).not.toBeNull();
    await runDurableObjectAlarm(stub);

    expect(await stateOf()).toEqual({ hold: "expired", windowUsed: 0, grantRemaining: CREDIT });
    // the alarm wrote the release to the outbox
    const releases = await runInDurableObject(stub, (_i: AccountDO, state) =>
      journalIn(state.storage.sql)
        .filter((m) => m.type === "ledger" && m.entry.kind === "release" && m.entry.holdId === h.body.holdId)
        .reduce((n: number, m: any) => n + m.entry.amount, 0),
    );
    expect(releases).toBe(2.5 * CREDIT);

    // and a later request sees it freed
    const a = (await account(id, T0 + 5 * SEC)).body;
    expect(a.holds).toEqual([]);
    expect(used(a)).toBe(0);
    expect(a.credits.balance).toBe(CREDIT);
    expect((await release(id, h.body.holdId, T0 + 5 * SEC)).status).toBe(409);
  });
});

describe("holds across windows, layers and races", () => {
  it("a release gives window usage back only to the window instance it was taken from", async () => {
    const id = uid();
    const FIVE_H = 5 * 3600 * SEC;
    // the 5-hour and weekly windows open at T0
    expect((await consume(id, { product: "codex", cost: 0.5 * CREDIT }, { now: T0 })).status).toBe(200);
    const h = await hold(id, { product: "codex", cost: CREDIT, ttlSeconds: 3600 }, T0 + FIVE_H - 60 * SEC);
    expect(h.status).toBe(201);
    // the 5-hour window rolls over; a new one opens with fresh usage
    const c = await consume(id, { product: "codex", cost: 1.5 * CREDIT }, { now: T0 + FIVE_H + 30 * SEC });
    expect(c.status, JSON.stringify(c.body)).toBe(200);
    const r = await release(id, h.body.holdId, T0 + FIVE_H + 60 * SEC);
    expect(r.status).toBe(200);
    const a = (await account(id, T0 + FIVE_H + 60 * SEC)).body;
    // the new 5-hour window keeps its own 1.5; the weekly one (same instance) gets the hold's 1 back
    expect(used(a)).toBe(1.5 * CREDIT);
    expect(weeklyUsed(a)).toBe(2 * CREDIT);
  });

  it("flex: a hold reserves postpaid overage and settling gives back the unused part", async () => {
    const id = uid();
    expect((await call("PUT", `/v1/accounts/${id}/plan`, { plan: "business" }, { now: T0 })).status).toBe(200);
    // business codex: 10 credits per 5 h, flex 200 per month
    const h = await hold(id, { product: "codex", cost: 12 * CREDIT }, T0 + SEC);
    expect(h.status, JSON.stringify(h.body)).toBe(201);
    expect(h.body.sources).toEqual([
      { layer: "window", amount: 10 * CREDIT },
      { layer: "flex", amount: 2 * CREDIT },
    ]);
    expect((await account(id, T0 + SEC)).body.credits.flex.used).toBe(2 * CREDIT);
    const s = await settle(id, h.body.holdId, { cost: 10.5 * CREDIT }, T0 + 2 * SEC);
    expect(s.status).toBe(200);
    expect(s.body).toMatchObject({ charged: 10.5 * CREDIT, released: 1.5 * CREDIT, writtenOff: 0 });
    const a = (await account(id, T0 + 2 * SEC)).body;
    expect(a.credits.flex.used).toBe(0.5 * CREDIT);
    expect(used(a)).toBe(10 * CREDIT);
  });

  it("an expired grant's reserved part comes back as expired, never spendable", async () => {
    const id = uid();
    const promo = await addCredits(
      id,
      { amount: CREDIT, kind: "promo", expiresAt: new Date(T0 + 30 * SEC).toISOString() },
      { now: T0 },
    );
    expect(promo.status).toBe(201);
    const h = await hold(id, { product: "codex", cost: 2.5 * CREDIT, ttlSeconds: 60 }); // window 2 + promo 0.5
    expect(h.body.sources).toEqual([
      { layer: "window", amount: 2 * CREDIT },
      { layer: "grant", grantId: promo.body.id, amount: 0.5 * CREDIT },
    ]);
    const a = (await account(id, T0 + 61 * SEC)).body;
    expect(a.holds).toEqual([]);
    expect(a.credits.balance).toBe(0);
    expect(a.credits.grants).toEqual([]);
    const { rows } = await drainAccount(id);
    const expired = rows.filter((x) => x.kind === "expiry").reduce((n, x) => n + x.amount, 0);
    expect(expired).toBe(CREDIT);
    expect(rows.some((x) => x.kind === "charge" && x.layer === "grant")).toBe(false);
  });

  it("settle with the same Idempotency-Key replays and charges once", async () => {
    const id = uid();
    const h = await hold(id, { product: "codex", cost: 2 * CREDIT });
    const key = uid("key");
    const s1 = await settle(id, h.body.holdId, { cost: CREDIT }, T0 + SEC, key);
    const s2 = await settle(id, h.body.holdId, { cost: CREDIT }, T0 + 2 * SEC, key);
    expect([s1.status, s2.status]).toEqual([200, 200]);
    expect(s2.headers.get("Idempotent-Replayed")).toBe("true");
    expect(s2.body.charged).toBe(s1.body.charged);
    const conflict = await settle(id, h.body.holdId, { cost: 1.5 * CREDIT }, T0 + 3 * SEC, key);
    expect(conflict.status).toBe(409);
    expect(conflict.body.error.code).toBe("idempotency_conflict");
    expect(used((await account(id, T0 + 3 * SEC)).body)).toBe(CREDIT);
  });

  it("a settle and a release racing on one hold: exactly one wins", async () => {
    const id = uid();
    const h = await hold(id, { product: "codex", cost: 2 * CREDIT });
    const [s, r] = await Promise.all([
      settle(id, h.body.holdId, { cost: CREDIT }, T0 + SEC),
      release(id, h.body.holdId, T0 + SEC),
    ]);
    expect([s.status, r.status].sort()).toEqual([200, 409]);
    const a = (await account(id, T0 + 2 * SEC)).body;
    expect(used(a)).toBe(s.status === 200 ? CREDIT : 0);
    expect(a.holds).toEqual([]);
  });

  it("many holds racing for one window never over-reserve it", async () => {
    const id = uid();
    const results = await Promise.all(
      Array.from({ length: 8 }, (_, i) => hold(id, { product: "codex", cost: 0.5 * CREDIT }, T0 + i)),
    );
    expect(results.filter((r) => r.status === 201)).toHaveLength(4);
    expect(results.filter((r) => r.status === 429)).toHaveLength(4);
    const a = (await account(id, T0 + SEC)).body;
    expect(used(a)).toBe(GO_FIVE_HOUR);
    expect(a.holds).toHaveLength(4);
    expectNeverNegative(a);
  });
});
