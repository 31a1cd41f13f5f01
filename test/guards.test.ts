import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import type { AccountEvent } from "../worker/settlement/messages";
import { ledgerFor } from "../worker/settlement/shards";
import { outboxMessages, waitFor } from "./settle-helpers";
import { account, addCredits, call, consume, CREDIT, HOUR, SERVICE, T0, uid } from "./helpers";

// ───────────────────────── local helpers ─────────────────────────

const C = CREDIT;
const SEC = 1000;
const MIN = 60_000;
const DAY = 24 * HOUR;
/** SPEC §4: anomaly floor, multiplier, trailing span and baseline. */
const FLOOR = 50 * C;
const MULTIPLIER = 10;
const WINDOWS_PER_BASELINE = (7 * 24 * 60) / 10; // 10-minute spans in 7 days
const specThreshold = (spentOver7Days: number) =>
  Math.max(FLOOR, Math.floor((MULTIPLIER * spentOver7Days) / WINDOWS_PER_BASELINE));

const outbox = outboxMessages;
async function outboxEvents(id: string, type?: string): Promise<AccountEvent[]> {
  return (await outbox(id)).flatMap((m) =>
    m.type === "event" && (type === undefined || m.event.type === type) ? [m.event] : [],
  );
}

async function d1Events(
  id: string,
): Promise<{ id: string; type: string; data: string; webhook_delivered_at: number | null }[]> {
  const { results } = await ledgerFor(env, id)
    .prepare("SELECT id, type, data, webhook_delivered_at FROM events WHERE account_id = ? ORDER BY created_at")
    .bind(id)
    .all<any>();
  return results;
}

async function ledger(id: string): Promise<any[]> {
  const r = await call("GET", `/v1/accounts/${id}/ledger?limit=500`);
  expect(r.status, JSON.stringify(r.body)).toBe(200);
  return r.body.entries;
}

const layerSum = (sources: { layer: string; amount: number }[] | undefined, layer: string) =>
  (sources ?? []).filter((s) => s.layer === layer).reduce((s, x) => s + x.amount, 0);

async function balanceAt(id: string, now: number): Promise<number> {
  const a = await account(id, now);
  expect(a.status).toBe(200);
  return a.body.credits.balance;
}

async function ok(p: Promise<{ status: number; body: any; headers: Headers }>, status = 200) {
  const r = await p;
  expect(r.status, JSON.stringify(r.body)).toBe(status);
  return r;
}

const resume = (id: string, now: number, key?: string, opts: { token?: string | null } = {}) =>
  call("POST", `/v1/admin/accounts/${id}/resume`, undefined, { now, key, token: opts.token });

const holdOf = (id: string, cost: number, now: number) =>
  call("POST", `/v1/accounts/${id}/holds`, { product: "codex", cost }, { now });
const settleHold = (id: string, holdId: string, cost: number, now: number) =>
  call("POST", `/v1/accounts/${id}/holds/${holdId}/settle`, { cost }, { now });
const spendCap = (id: string, dailyLimit: number | null, now: number) =>
  call("PUT", `/v1/accounts/${id}/spend-cap`, { dailyLimit }, { now });

// ───────────────────────── anomaly pause ─────────────────────────

describe("anomaly pause (SPEC §4 guards)", () => {
  it("the incident replayed: a client looping at 20× its normal rate is paused before its trailing 10-minute spend exceeds the threshold", async () => {
    const id = uid("incident");
    await ok(addCredits(id, { kind: "purchase", amount: 20_000 * C }, { now: T0 }), 201);

    // A week of normal, steady use: 48 credits an hour (8 credits per 10 minutes on average), never paused.
    let baselineCredits = 0;
    let expectedCharges = 0;
    for (let h = 0; h < 168; h++) {
      const r = await consume(id, { product: "codex", cost: 48 * C }, { now: T0 + h * HOUR + 30 * MIN });
      expect(r.status, `baseline hour ${h}: ${JSON.stringify(r.body)}`).toBe(200);
      baselineCredits += layerSum(r.body.sources, "grant");
      expectedCharges += r.body.sources.length;
      expect(r.body.account.paused).toBe(false);
    }
    // The 7-day average 10-minute spend is ~8 credits, so the threshold is ~80 credits: above the 50-credit floor.
    expect(specThreshold(baselineCredits)).toBeGreaterThan(FLOOR);

    // The stuck client: 4 credits every 15 s = 16 credits a minute, 20× the normal 0.8 credits a minute.
    // It starts 35 minutes after the last normal request, so the trailing 10 minutes hold only the loop.
    const L0 = T0 + 7 * DAY + 5 * MIN;
    const before = await balanceAt(id, L0);
    let loopCredits = 0;
    let allowed = 0;
    let denial: any = null;
    for (let i = 0; i < 40; i++) {
      const r = await consume(id, { product: "codex", cost: 4 * C }, { now: L0 + i * 15 * SEC });
      if (r.status === 429) {
        denial = r;
        break;
      }
      expect(r.status, JSON.stringify(r.body)).toBe(200);
      allowed++;
      expectedCharges += r.body.sources.length;
      loopCredits += layerSum(r.body.sources, "grant");
    }
    expect(denial, "the loop was never paused").not.toBeNull();
    expect(denial.body.reason).toBe("credits_paused");
    expect(denial.body.allowed).toBe(false);
    expect(denial.headers.get("Retry-After")).toMatch(/^\d+$/);
    expect(denial.body.account.paused).toBe(true);
    const pausedAt = L0 + allowed * 15 * SEC;
    // The whole loop ran inside one trailing 10-minute span.
    expect(allowed * 15 * SEC).toBeLessThan(10 * MIN);

    // Total credit spend in the trailing 10 minutes, from the balances: never above the threshold …
    const after = await balanceAt(id, pausedAt);
    const spent = before - after;
    expect(spent).toBe(loopCredits);
    const threshold = specThreshold(baselineCredits + spent);
    expect(spent).toBeLessThanOrEqual(threshold);
    // … and not paused early: the next 4 credits would have gone over it, and normal use was well above the floor.
    expect(spent + 4 * C).toBeGreaterThan(threshold);
    expect(spent).toBeGreaterThan(FLOOR);

    // Still paused for every request that needs credits; nothing more is spent.
    const again = await consume(id, { product: "codex", cost: 4 * C }, { now: pausedAt + 5 * SEC });
    expect(again.status).toBe(429);
    expect(again.body.reason).toBe("credits_paused");
    expect(await balanceAt(id, pausedAt + 6 * SEC)).toBe(after);

    // One `account.credits_paused` event, recorded in the outbox and settled into D1.
    const paused = await outboxEvents(id, "account.credits_paused");
    expect(paused).toHaveLength(1);
    expect(paused[0].accountId).toBe(id);
    expect(paused[0].data.threshold).toBe(threshold);
    const rows = await waitFor(
      () => d1Events(id),
      (r) => r.some((e) => e.type === "account.credits_paused"),
    );
    expect(rows.filter((e) => e.type === "account.credits_paused").map((e) => e.id)).toEqual([paused[0].id]);

    // Window usage still works while paused: the weekly window (opened at T0+30min) has ended, so a fresh
    // 2-credit go window covers a 1-credit request.
    const W = T0 + 7 * DAY + 31 * MIN;
    const win = await consume(id, { product: "codex", cost: 1 * C }, { now: W });
    expect(win.status, JSON.stringify(win.body)).toBe(200);
    expect(win.body.sources).toEqual([{ layer: "window", amount: 1 * C }]);
    expectedCharges += 1;
    // A request needing credits beyond the window is denied, and the window is not charged either.
    const mixed = await consume(id, { product: "codex", cost: 3 * C }, { now: W + SEC });
    expect(mixed.status).toBe(429);
    expect(mixed.body.reason).toBe("credits_paused");
    expect(mixed.body.account.products.codex.fiveHour.used).toBe(1 * C);
    expect(mixed.body.account.credits.balance).toBe(after);

    // An operator resumes (admin token, Idempotency-Key); a replay answers the same without a second effect.
    const key = uid("resume");
    const res = await resume(id, W + 2 * MIN, key);
    expect(res.status, JSON.stringify(res.body)).toBe(200);
    expect(res.body.resumed).toBe(true);
    expect(res.body.account.paused).toBe(false);
    const replay = await resume(id, W + 2 * MIN, key);
    expect(replay.status).toBe(200);
    expect(replay.headers.get("Idempotent-Replayed")).toBe("true");
    expect(replay.body.resumed).toBe(true);
    expect((await outboxEvents(id, "account.credits_resumed")).length).toBe(1);

    // Credit spending works again.
    const back = await consume(id, { product: "codex", cost: 4 * C }, { now: W + 3 * MIN });
    expect(back.status, JSON.stringify(back.body)).toBe(200);
    expect(layerSum(back.body.sources, "grant")).toBe(3 * C);
    expect(back.body.account.paused).toBe(false);
    expectedCharges += back.body.sources.length;
    expect(await balanceAt(id, W + 4 * MIN)).toBe(after - 3 * C);

    // No guard ever creates a charge: the ledger holds exactly one charge per layer of each allowed decision (a
    // charge entry per money layer, and each window part counted in its hour's usage rollup).
    const settled = (e: any[]) =>
      e.filter((x) => x.kind === "charge").length +
      e.filter((x) => x.kind === "usage").reduce((n, x) => n + x.count, 0);
    const entries = await waitFor(
      () => ledger(id),
      (e) => settled(e) >= expectedCharges,
      15_000,
    );
    expect(settled(entries)).toBe(expectedCharges);
    const charges = entries.filter((e) => e.kind === "charge");
    expect(charges.filter((e) => e.layer === "grant").reduce((s, e) => s + e.amount, 0)).toBe(
      baselineCredits + loopCredits + 3 * C,
    );
  });

  it("with no history, the 50-credit floor is the threshold, and the pause holds until an operator resumes", async () => {
    const id = uid("floor");
    const t = T0 + 3 * HOUR;
    await ok(addCredits(id, { kind: "purchase", amount: 500 * C }, { now: t }), 201);
    await ok(consume(id, { product: "codex", cost: 2 * C }, { now: t })); // the go 5-hour window
    const before = await balanceAt(id, t);
    let spent = 0;
    let denial: any = null;
    for (let i = 0; i < 40 && !denial; i++) {
      const r = await consume(id, { product: "codex", cost: 3 * C }, { now: t + (i + 1) * 5 * SEC });
      if (r.status === 429) denial = r;
      else spent += layerSum(r.body.sources, "grant");
    }
    expect(denial?.body.reason).toBe("credits_paused");
    expect(spent).toBeLessThanOrEqual(FLOOR);
    expect(spent + 3 * C).toBeGreaterThan(FLOOR);
    expect(before - (await balanceAt(id, t + 5 * MIN))).toBe(spent);

    // The trailing 10 minutes are long past: still paused (only an operator resumes).
    const later = await consume(id, { product: "codex", cost: 1 * C }, { now: t + 30 * MIN });
    expect(later.status).toBe(429);
    expect(later.body.reason).toBe("credits_paused");
    expect((await account(id, t + 30 * MIN)).body.paused).toBe(true);

    // Resume needs the admin token and an Idempotency-Key.
    expect((await resume(id, t + 31 * MIN, undefined, { token: SERVICE })).status).toBe(403);
    expect(
      (await call("POST", `/v1/admin/accounts/${id}/resume`, undefined, { now: t + 31 * MIN, key: null })).status,
    ).toBe(400);
    expect((await account(id, t + 31 * MIN)).body.paused).toBe(true);
    const res = await resume(id, t + 32 * MIN);
    expect(res.status).toBe(200);
    expect(res.body.resumed).toBe(true);
    // Resuming an account that is not paused changes nothing.
    const noop = await resume(id, t + 33 * MIN);
    expect(noop.status).toBe(200);
    expect(noop.body.resumed).toBe(false);
    expect(await outboxEvents(id, "account.credits_resumed")).toHaveLength(1);
    const r = await consume(id, { product: "codex", cost: 1 * C }, { now: t + 34 * MIN });
    expect(r.status, JSON.stringify(r.body)).toBe(200);
  });

  it("a request that no credits could cover does not pause an account that has spent nothing", async () => {
    // SPEC §4: the pause is for credits *spent* above the threshold. An account with no credits that asks for
    // 60 credits spends nothing: it is denied `limit_reached`, and buying credits later must make them usable.
    const id = uid("nocredit");
    const t = T0 + 4 * HOUR;
    await ok(consume(id, { product: "codex", cost: 2 * C }, { now: t })); // exhausts the go 5-hour window
    const big = await consume(id, { product: "codex", cost: 60 * C }, { now: t + SEC });
    expect(big.status).toBe(429);
    expect(big.body.reason).toBe("limit_reached");
    expect(big.body.account.paused).toBe(false);
    await ok(addCredits(id, { kind: "purchase", amount: 100 * C }, { now: t + MIN }), 201);
    const r = await consume(id, { product: "codex", cost: 5 * C }, { now: t + 2 * MIN });
    expect(r.status, JSON.stringify(r.body)).toBe(200);
    expect(await outboxEvents(id, "account.credits_paused")).toHaveLength(0);
  });

  it("holds cannot bypass the pause: credits reserved by a loop of holds count toward the trailing spend", async () => {
    // A client looping on holds (reserve, work stuck, reserve again) must not take more credits in 10 minutes
    // than the threshold once its holds are settled.
    const id = uid("holdloop");
    const t = T0 + 5 * HOUR;
    await ok(addCredits(id, { kind: "purchase", amount: 500 * C }, { now: t }), 201);
    await ok(consume(id, { product: "codex", cost: 2 * C }, { now: t })); // exhausts the go 5-hour window
    const before = await balanceAt(id, t);
    const holds: string[] = [];
    const denials: string[] = [];
    for (let i = 0; i < 8; i++) {
      const h = await holdOf(id, 10 * C, t + (i + 1) * 10 * SEC);
      if (h.status === 201) holds.push(h.body.holdId);
      else {
        expect(h.status, JSON.stringify(h.body)).toBe(429);
        denials.push(h.body.reason);
      }
    }
    for (const [i, holdId] of holds.entries()) await ok(settleHold(id, holdId, 10 * C, t + 2 * MIN + i * SEC));
    const spent = before - (await balanceAt(id, t + 3 * MIN));
    expect(
      spent,
      `${holds.length} holds of 10 credits were allowed within 80 s (denials: ${JSON.stringify(denials)})`,
    ).toBeLessThanOrEqual(FLOOR);
    expect(denials[0]).toBe("credits_paused");
  });
});

// ───────────────────────── spend cap ─────────────────────────

describe("no path around the anomaly guard (SPEC §4 'every credit spend passes the guards')", () => {
  it("settling a hold far above its estimate passes the guard: the pause is recorded and the refused extra is written off", async () => {
    const id = uid("settlepause");
    const t = T0 + 4 * DAY + 2 * HOUR;
    await ok(addCredits(id, { kind: "purchase", amount: 500 * C }, { now: t }), 201);
    await ok(consume(id, { product: "codex", cost: 2 * C }, { now: t + SEC })); // exhausts the go 5-hour window
    const hold = await ok(holdOf(id, 1 * C, t + 2 * SEC), 201);
    expect(hold.body.sources).toEqual([{ layer: "grant", grantId: expect.any(String), amount: 1 * C }]);
    // A direct consume of 400 credits would trip the 50-credit floor; so must a settle at 400.
    const s = await ok(settleHold(id, hold.body.holdId, 400 * C, t + 3 * SEC));
    expect(s.body.charged, JSON.stringify(s.body)).toBe(1 * C);
    expect(s.body.writtenOff).toBe(399 * C);
    expect(s.body.account.paused).toBe(true);
    expect(await balanceAt(id, t + 4 * SEC)).toBe(499 * C);
    const paused = await outboxEvents(id, "account.credits_paused");
    expect(paused).toHaveLength(1);
    expect(paused[0].data).toMatchObject({ attempted: 399 * C });
    const writeOffs = (await outbox(id)).flatMap((m) =>
      m.type === "ledger" && m.entry.kind === "write_off" ? [m.entry] : [],
    );
    expect(writeOffs).toEqual([expect.objectContaining({ amount: 399 * C, holdId: hold.body.holdId })]);
    expect(String(writeOffs[0].note)).toContain("paused");
    // And the account stays paused for the next request that needs credits.
    const next = await consume(id, { product: "codex", cost: 1 * C }, { now: t + 5 * SEC });
    expect(next.status).toBe(429);
    expect(next.body.reason).toBe("credits_paused");
  });

  it("after a resume the trailing window counts from the resume instant, to the millisecond: the resume's own minute counts", async () => {
    const id = uid("resumeminute");
    const m = T0 + 5 * DAY + 7 * HOUR; // a whole minute, hh:mm:00
    await ok(addCredits(id, { kind: "purchase", amount: 500 * C }, { now: m }), 201);
    await ok(consume(id, { product: "codex", cost: 2 * C }, { now: m + SEC })); // exhausts the go 5-hour window
    // 48 credits, then the next 12 would pass the 50-credit floor: paused at hh:mm:06.
    for (let i = 0; i < 4; i++) await ok(consume(id, { product: "codex", cost: 12 * C }, { now: m + (i + 2) * SEC }));
    expect((await consume(id, { product: "codex", cost: 12 * C }, { now: m + 6 * SEC })).body.reason).toBe(
      "credits_paused",
    );
    // Resumed at hh:mm:30; the 48 credits spent before it, in the same minute, no longer count.
    await ok(resume(id, m + 30 * SEC));
    let allowed = 0;
    let denial: any = null;
    for (let i = 1; i <= 60 && !denial; i++) {
      const r = await consume(id, { product: "codex", cost: 1 * C }, { now: m + 30 * SEC + i * 200 }); // all before hh:mm:43
      if (r.status === 429) denial = r;
      else allowed += layerSum(r.body.sources, "grant");
    }
    expect(denial?.body.reason, "one-credit consumes in the resume's own minute were never paused").toBe(
      "credits_paused",
    );
    expect(allowed).toBe(50 * C);
    expect(await outboxEvents(id, "account.credits_paused")).toHaveLength(2);
  });
});

describe("spend cap (SPEC §4 guards)", () => {
  it("denies requests needing credits beyond the daily cap, still allows window usage, and resets at the next UTC day", async () => {
    const id = uid("cap");
    const t = T0 + 10 * HOUR; // 2026-11-01 10:00 UTC
    const midnight = T0 + DAY;
    await ok(addCredits(id, { kind: "purchase", amount: 100 * C }, { now: t }), 201);
    const set = await ok(spendCap(id, 10 * C, t));
    expect(set.body.spendCap).toEqual({ dailyLimit: 10 * C, spentToday: 0 });

    const w = await ok(consume(id, { product: "codex", cost: 2 * C }, { now: t + SEC }));
    expect(w.body.sources).toEqual([{ layer: "window", amount: 2 * C }]);
    const g = await ok(consume(id, { product: "codex", cost: 6 * C }, { now: t + 2 * SEC }));
    expect(layerSum(g.body.sources, "grant")).toBe(6 * C);
    expect(g.body.account.spendCap).toEqual({ dailyLimit: 10 * C, spentToday: 6 * C });

    // 5 credits would take today's spend to 11: denied, nothing charged.
    const over = await consume(id, { product: "codex", cost: 5 * C }, { now: t + 3 * SEC });
    expect(over.status).toBe(429);
    expect(over.body.reason).toBe("spend_cap");
    expect(over.headers.get("Retry-After")).toMatch(/^\d+$/);
    expect(Date.parse(over.body.resetsAt)).toBeLessThanOrEqual(midnight);
    expect(over.body.account.credits.balance).toBe(94 * C);
    expect(over.body.account.spendCap.spentToday).toBe(6 * C);

    // Exactly up to the cap is allowed; one micro-credit more is not.
    const exact = await ok(consume(id, { product: "codex", cost: 4 * C }, { now: t + 4 * SEC }));
    expect(exact.body.account.spendCap.spentToday).toBe(10 * C);
    const one = await consume(id, { product: "codex", cost: 1 }, { now: t + 5 * SEC });
    expect(one.status).toBe(429);
    expect(one.body.reason).toBe("spend_cap");

    // Later the same day the 5-hour window has ended: window-covered requests are still allowed.
    const t2 = t + 5 * HOUR + MIN; // 15:01, same UTC day
    const win = await ok(consume(id, { product: "codex", cost: 2 * C }, { now: t2 }));
    expect(win.body.sources).toEqual([{ layer: "window", amount: 2 * C }]);
    const capped = await consume(id, { product: "codex", cost: 1 * C }, { now: t2 + SEC });
    expect(capped.status).toBe(429);
    expect(capped.body.reason).toBe("spend_cap");
    expect(capped.body.account.credits.balance).toBe(90 * C);

    // The next UTC day allows credit spend again.
    const t3 = midnight + 30 * MIN;
    const next = await ok(consume(id, { product: "codex", cost: 7 * C }, { now: t3 }));
    expect(layerSum(next.body.sources, "grant")).toBe(5 * C);
    expect(next.body.account.spendCap).toEqual({ dailyLimit: 10 * C, spentToday: 5 * C });

    // dailyLimit null removes the cap.
    const off = await ok(spendCap(id, null, t3 + SEC));
    expect(off.body.spendCap).toBeNull();
    const big = await ok(consume(id, { product: "codex", cost: 10 * C }, { now: t3 + 2 * SEC }));
    expect(layerSum(big.body.sources, "grant")).toBe(10 * C);
    expect(await balanceAt(id, t3 + 3 * SEC)).toBe(75 * C);
  });

  it("refuses a daily limit that is not a positive integer", async () => {
    const id = uid("capbad");
    for (const dailyLimit of [0, -5, 1.5, "10"]) {
      const r = await call("PUT", `/v1/accounts/${id}/spend-cap`, { dailyLimit }, { now: T0 });
      expect(r.status, String(dailyLimit)).toBe(400);
      expect(r.body.error.code).toBe("invalid_request");
    }
    expect((await account(id, T0)).body.spendCap).toBeNull();
  });

  it("holds cannot bypass the cap: credits reserved today count against it", async () => {
    const id = uid("caphold");
    const t = T0 + 2 * DAY + 9 * HOUR;
    await ok(addCredits(id, { kind: "purchase", amount: 100 * C }, { now: t }), 201);
    await ok(spendCap(id, 10 * C, t));
    await ok(consume(id, { product: "codex", cost: 2 * C }, { now: t + SEC })); // exhausts the go 5-hour window
    const a = await ok(holdOf(id, 6 * C, t + 2 * SEC), 201);
    const b = await holdOf(id, 6 * C, t + 3 * SEC);
    const held = [a.body.holdId, ...(b.status === 201 ? [b.body.holdId] : [])];
    for (const [i, holdId] of held.entries()) await ok(settleHold(id, holdId, 6 * C, t + MIN + i * SEC));
    const s = await account(id, t + 2 * MIN);
    expect(100 * C - s.body.credits.balance, "credits spent today").toBeLessThanOrEqual(10 * C);
    expect(s.body.spendCap.spentToday).toBeLessThanOrEqual(10 * C);
    expect(b.status, "a second 6-credit hold with 4 credits of cap left").toBe(429);
    expect(b.body.reason).toBe("spend_cap");
  });

  it("an operator resume does not erase today's spend from the spend cap", async () => {
    const id = uid("capresume");
    const t = T0 + 3 * DAY + 9 * HOUR;
    await ok(addCredits(id, { kind: "purchase", amount: 300 * C }, { now: t }), 201);
    await ok(spendCap(id, 100 * C, t));
    await ok(consume(id, { product: "codex", cost: 2 * C }, { now: t + SEC })); // exhausts the go 5-hour window
    // A burst: 12, 24, 36, 48 credits, then the 5th would take the trailing 10 minutes to 60 > 50: paused.
    for (let i = 0; i < 4; i++) await ok(consume(id, { product: "codex", cost: 12 * C }, { now: t + (i + 2) * SEC }));
    const p = await consume(id, { product: "codex", cost: 12 * C }, { now: t + 6 * SEC });
    expect(p.body.reason).toBe("credits_paused");
    await ok(resume(id, t + MIN));
    const afterResume = await account(id, t + MIN + SEC);
    expect.soft(afterResume.body.spendCap.spentToday, "spentToday after the resume").toBe(48 * C);

    // 48 more credits right after the resume (fine for the anomaly guard, which restarts), then 12 more later:
    // the day would total 108 credits against a 100-credit cap.
    for (let i = 0; i < 4; i++)
      await ok(consume(id, { product: "codex", cost: 12 * C }, { now: t + 2 * MIN + i * SEC }));
    const last = await consume(id, { product: "codex", cost: 12 * C }, { now: t + 13 * MIN });
    const spentToday = 300 * C - (await balanceAt(id, t + 14 * MIN));
    expect(spentToday, "credits spent today").toBeLessThanOrEqual(100 * C);
    expect(last.status).toBe(429);
    expect(last.body.reason).toBe("spend_cap");
  });
});
