/**
 * The account engine over HTTP (SPEC §3, §4, §6, §8): split and order of charges, window timing under the
 * test clock, the balance race, idempotent duplicates, rate-card pricing, grant defaults and plan changes.
 */
import { runInDurableObject } from "cloudflare:test";
import { describe, expect, it } from "vitest";
import { account, addCredits, call, consume, CREDIT, HOUR, setPlan, T0, uid } from "./helpers";
import { stubFor } from "./settle-helpers";

const C = CREDIT;
const FIVE_H = 5 * HOUR;
const WEEK = 7 * 24 * HOUR;
const iso = (ms: number) => new Date(ms).toISOString();
const sum = (xs: { amount: number }[]) => xs.reduce((s, x) => s + x.amount, 0);

/** The plan's codex limits, read from the catalog the service publishes (not hard-coded). */
async function planLimits(plan: string, product = "codex"): Promise<{ fiveHour: number; weekly: number }> {
  const cat = await call("GET", "/v1/catalog");
  expect(cat.status).toBe(200);
  const p = cat.body.plans.find((x: { id: string }) => x.id === plan);
  return p.windows[product];
}

async function grantOf(id: string, body: Record<string, unknown>, now: number) {
  const r = await addCredits(id, body, { now });
  expect(r.status, JSON.stringify(r.body)).toBe(201);
  return r.body as {
    id: string;
    kind: string;
    priority: number;
    remaining: number;
    expiresAt: string | null;
    products: string[] | null;
  };
}

describe("split and order", () => {
  it("charges the window, then grants in burn-down order; the response and GET account agree", async () => {
    const id = uid();
    const go = await planLimits("go");
    // a purchase that expires soon, a promo that expires later: the promo still goes first (priority 10 < 30)
    const purchase = await grantOf(id, { kind: "purchase", amount: 3 * C, expiresAt: iso(T0 + 10 * 24 * HOUR) }, T0);
    const promo = await grantOf(id, { kind: "promo", amount: 1 * C, expiresAt: iso(T0 + 60 * 24 * HOUR) }, T0);
    const laterPurchase = await grantOf(id, { kind: "purchase", amount: 5 * C }, T0); // default expiry: 12 months
    expect(promo.priority).toBeLessThan(purchase.priority);

    const cost = go.fiveHour + promo.remaining + C / 2;
    const r = await consume(id, { product: "codex", cost }, { now: T0 + 1000 });
    expect(r.status, JSON.stringify(r.body)).toBe(200);
    expect(r.body.allowed).toBe(true);
    expect(r.body.cost).toBe(cost);
    expect(r.body.sources).toEqual([
      { layer: "window", amount: go.fiveHour },
      { layer: "grant", grantId: promo.id, amount: promo.remaining },
      { layer: "grant", grantId: purchase.id, amount: C / 2 },
    ]);
    expect(sum(r.body.sources)).toBe(cost);

    const a = await account(id, T0 + 1000);
    expect(a.status).toBe(200);
    expect(a.body).toEqual(r.body.account);
    expect(a.body.products.codex.fiveHour).toMatchObject({
      used: go.fiveHour,
      remaining: 0,
      resetsAt: iso(T0 + 1000 + FIVE_H),
    });
    expect(a.body.products.codex.weekly).toMatchObject({ used: go.fiveHour, remaining: go.weekly - go.fiveHour });
    const remaining = Object.fromEntries(
      a.body.credits.grants.map((g: { id: string; remaining: number }) => [g.id, g.remaining]),
    );
    expect(remaining[promo.id] ?? 0).toBe(0);
    expect(remaining[purchase.id]).toBe(3 * C - C / 2);
    expect(remaining[laterPurchase.id]).toBe(5 * C);
    expect(a.body.credits.balance).toBe(3 * C - C / 2 + 5 * C);
    // the grants are listed in burn-down order
    expect(a.body.credits.grants.map((g: { id: string }) => g.id)).toEqual([purchase.id, laterPurchase.id]);
  });

  it("a denial charges nothing: 429 with reason, Retry-After, and the account unchanged", async () => {
    const id = uid();
    await grantOf(id, { kind: "purchase", amount: C }, T0);
    await consume(id, { product: "codex", cost: C / 2 }, { now: T0 });
    const before = await account(id, T0 + 1000);

    // 5 C: more than the window and credits hold, but below the anomaly floor, so no guard is involved
    const r = await consume(id, { product: "codex", cost: 5 * C }, { now: T0 + 1000 });
    expect(r.status).toBe(429);
    expect(r.body.allowed).toBe(false);
    expect(r.body.reason).toBe("insufficient_credits");
    expect(r.body.offer).toBe("add_credits");
    expect(r.body).not.toHaveProperty("sources");
    expect(Number(r.headers.get("Retry-After"))).toBeGreaterThan(0);
    expect(r.body.account).toEqual(before.body);

    const after = await account(id, T0 + 1000);
    expect(after.body).toEqual(before.body);
  });

  it("an unpayable request (more than the credits held) is insufficient_credits and does not pause the account", async () => {
    // SPEC §4: the anomaly pause is about credits *spent* in the trailing 10 minutes; a denial spends nothing.
    const id = uid();
    await grantOf(id, { kind: "purchase", amount: C }, T0);
    const go = await planLimits("go");
    expect((await consume(id, { product: "codex", cost: go.fiveHour }, { now: T0 })).status).toBe(200);
    const before = await account(id, T0 + 1000);
    expect(before.body.paused).toBe(false);

    const r = await consume(id, { product: "codex", cost: 100 * C }, { now: T0 + 1000 });
    expect(r.status).toBe(429);
    expect(r.body.reason).toBe("insufficient_credits");
    expect(r.body.offer).toBe("add_credits");
    const after = await account(id, T0 + 1000);
    expect(after.body).toEqual(before.body);
    // and the credits the account does hold remain spendable
    const small = await consume(id, { product: "codex", cost: C / 2 }, { now: T0 + 2000 });
    expect(small.status, JSON.stringify(small.body)).toBe(200);
  });
});

describe("window timing (test clock)", () => {
  it("a window opens on first use, lasts 5 hours, and resets at resetsAt", async () => {
    const id = uid();
    const go = await planLimits("go");
    const fresh = await account(id, T0);
    expect(fresh.body.products.codex.fiveHour.resetsAt).toBeNull();
    expect(fresh.body.products.codex.weekly.resetsAt).toBeNull();

    const t1 = T0 + HOUR + 123;
    const first = await consume(id, { product: "codex", cost: go.fiveHour / 2 }, { now: t1 });
    expect(first.status).toBe(200);
    expect(first.body.account.products.codex.fiveHour.resetsAt).toBe(iso(t1 + FIVE_H));
    expect(first.body.account.products.codex.weekly.resetsAt).toBe(iso(t1 + WEEK));

    // later use in the same window does not move its end
    const second = await consume(id, { product: "codex", cost: go.fiveHour / 2 }, { now: t1 + 2 * HOUR });
    expect(second.status).toBe(200);
    expect(second.body.account.products.codex.fiveHour).toMatchObject({
      used: go.fiveHour,
      remaining: 0,
      resetsAt: iso(t1 + FIVE_H),
    });

    const denied = await consume(id, { product: "codex", cost: C / 2 }, { now: t1 + 3 * HOUR });
    expect(denied.status).toBe(429);
    expect(denied.body.reason).toBe("limit_reached");
    expect(denied.body.resetsAt).toBe(iso(t1 + FIVE_H));
    expect(denied.body.retryAfterSeconds).toBe(2 * 3600);
    expect(denied.headers.get("Retry-After")).toBe(String(2 * 3600));

    const justBefore = await consume(id, { product: "codex", cost: C / 2 }, { now: t1 + FIVE_H - 1 });
    expect(justBefore.status).toBe(429);
    expect(justBefore.body.retryAfterSeconds).toBe(1);

    const atReset = await consume(id, { product: "codex", cost: C / 2 }, { now: t1 + FIVE_H });
    expect(atReset.status, JSON.stringify(atReset.body)).toBe(200);
    expect(atReset.body.sources).toEqual([{ layer: "window", amount: C / 2 }]);
    expect(atReset.body.account.products.codex.fiveHour).toMatchObject({ used: C / 2, resetsAt: iso(t1 + 2 * FIVE_H) });
    // the weekly window keeps counting and keeps its end
    expect(atReset.body.account.products.codex.weekly).toMatchObject({
      used: go.fiveHour + C / 2,
      resetsAt: iso(t1 + WEEK),
    });
  });

  it("the weekly window still binds after the 5-hour window resets", async () => {
    const id = uid();
    const go = await planLimits("go");
    const rounds = Math.ceil(go.weekly / go.fiveHour);
    let used = 0;
    for (let i = 0; i < rounds; i++) {
      const cost = Math.min(go.fiveHour, go.weekly - used);
      const r = await consume(id, { product: "codex", cost }, { now: T0 + i * FIVE_H });
      expect(r.status, `round ${i}: ${JSON.stringify(r.body)}`).toBe(200);
      expect(r.body.sources).toEqual([{ layer: "window", amount: cost }]);
      used += cost;
    }
    expect(used).toBe(go.weekly);

    const t = T0 + rounds * FIVE_H; // the last 5-hour window has just reset
    const a = await account(id, t);
    expect(a.body.products.codex.fiveHour).toMatchObject({ used: 0, remaining: go.fiveHour, resetsAt: null });
    expect(a.body.products.codex.weekly).toMatchObject({ used: go.weekly, remaining: 0, resetsAt: iso(T0 + WEEK) });

    const r = await consume(id, { product: "codex", cost: C / 10 }, { now: t });
    expect(r.status).toBe(429);
    expect(r.body.reason).toBe("limit_reached");
    expect(r.body.resetsAt).toBe(a.body.products.codex.weekly.resetsAt);
    expect(r.body.retryAfterSeconds).toBe(Math.ceil((T0 + WEEK - t) / 1000));
    expect((await account(id, t)).body).toEqual(a.body);

    // at the weekly end the product is usable again, and both windows re-open
    const after = await consume(id, { product: "codex", cost: C / 10 }, { now: T0 + WEEK });
    expect(after.status, JSON.stringify(after.body)).toBe(200);
    expect(after.body.account.products.codex.weekly).toMatchObject({ used: C / 10, resetsAt: iso(T0 + 2 * WEEK) });
  });

  it("windows are per product: exhausting codex leaves sora untouched", async () => {
    const id = uid();
    const go = await planLimits("go");
    const sora = await planLimits("go", "sora");
    expect((await consume(id, { product: "codex", cost: go.fiveHour }, { now: T0 })).status).toBe(200);
    expect((await consume(id, { product: "codex", cost: 1 }, { now: T0 })).status).toBe(429);
    const r = await consume(id, { product: "sora", cost: sora.fiveHour }, { now: T0 });
    expect(r.status).toBe(200);
    expect(r.body.sources).toEqual([{ layer: "window", amount: sora.fiveHour }]);
  });
});

describe("balance race", () => {
  it("50 concurrent consumes against a balance for exactly 10: 10 allowed, 40 denied, balance 0", async () => {
    const id = uid();
    const go = await planLimits("go");
    const cost = C / 10;
    expect((await consume(id, { product: "codex", cost: go.fiveHour }, { now: T0 })).status).toBe(200); // window exhausted
    await grantOf(id, { kind: "purchase", amount: 10 * cost }, T0);
    const now = T0 + 60_000;
    const before = await account(id, now);
    expect(before.body.credits.balance).toBe(10 * cost);

    const results = await Promise.all(
      Array.from({ length: 50 }, () => consume(id, { product: "codex", cost }, { now })),
    );
    const ok = results.filter((r) => r.status === 200);
    const no = results.filter((r) => r.status === 429);
    expect(ok.length).toBe(10);
    expect(no.length).toBe(40);
    for (const r of ok)
      expect(r.body.sources).toEqual([{ layer: "grant", grantId: before.body.credits.grants[0].id, amount: cost }]);
    for (const r of no) expect(["limit_reached", "insufficient_credits"]).toContain(r.body.reason);
    expect(new Set(ok.map((r) => r.body.decisionId)).size).toBe(10);

    const after = await account(id, now);
    expect(after.body.credits.balance).toBe(0);
    expect(after.body.products.codex.fiveHour.used).toBe(go.fiveHour);
    expect(after.body.paused).toBe(false);
  });
});

describe("idempotency", () => {
  it("20 concurrent requests with one key: one charge, identical 200 bodies, replays marked", async () => {
    const id = uid();
    const key = uid("key");
    const cost = C / 4;
    const results = await Promise.all(
      Array.from({ length: 20 }, () => consume(id, { product: "codex", cost }, { now: T0, key })),
    );
    for (const r of results) expect(r.status, JSON.stringify(r.body)).toBe(200);
    for (const r of results) expect(r.body).toEqual(results[0].body);
    const replayed = results.filter((r) => r.headers.get("Idempotent-Replayed") === "true");
    expect(replayed.length).toBe(19);
    const a = await account(id, T0);
    expect(a.body.products.codex.fiveHour.used).toBe(cost);
    expect(a.body.products.codex.weekly.used).toBe(cost);

    // a later sequential replay answers the same again, and still charges nothing
    const again = await consume(id, { product: "codex", cost }, { now: T0 + HOUR, key });
    expect(again.status).toBe(200);
    expect(again.headers.get("Idempotent-Replayed")).toBe("true");
    expect(again.body).toEqual(results[0].body);
    expect((await account(id, T0 + HOUR)).body.products.codex.fiveHour.used).toBe(cost);
  });

  it("the payload fingerprint ignores key order and spacing", async () => {
    const id = uid();
    const key = uid("key");
    const first = await call("POST", `/v1/accounts/${id}/consume`, undefined, {
      now: T0,
      key,
      raw: `{"product":"codex","cost":${C}}`,
    });
    const second = await call("POST", `/v1/accounts/${id}/consume`, undefined, {
      now: T0,
      key,
      raw: `{ "cost": ${C},\n "product": "codex" }`,
    });
    expect(first.status).toBe(200);
    expect(second.status).toBe(200);
    expect(second.headers.get("Idempotent-Replayed")).toBe("true");
    expect(second.body).toEqual(first.body);
    expect((await account(id, T0)).body.products.codex.fiveHour.used).toBe(C);
  });

  it("the same key with a different body is 409 idempotency_conflict and charges nothing", async () => {
    const id = uid();
    const key = uid("key");
    expect((await consume(id, { product: "codex", cost: C / 2 }, { now: T0, key })).status).toBe(200);
    const before = await account(id, T0);
    const r = await consume(id, { product: "codex", cost: C }, { now: T0, key });
    expect(r.status).toBe(409);
    expect(r.body.error.code).toBe("idempotency_conflict");
    expect(typeof r.body.error.message).toBe("string");
    expect(typeof r.body.error.requestId).toBe("string");
    expect(r.headers.get("Idempotent-Replayed")).toBeNull();
    // the same key on another route of the account is another payload too
    const other = await addCredits(id, { kind: "purchase", amount: C }, { now: T0, key });
    expect(other.status).toBe(409);
    expect(other.body.error.code).toBe("idempotency_conflict");
    expect((await account(id, T0)).body).toEqual(before.body);
  });

  it("keys are scoped to the account: the same key on two accounts charges each once", async () => {
    const a = uid();
    const b = uid();
    const key = uid("key");
    const ra = await consume(a, { product: "codex", cost: C / 2 }, { now: T0, key });
    const rb = await consume(b, { product: "codex", cost: C / 2 }, { now: T0, key });
    expect(ra.status).toBe(200);
    expect(rb.status).toBe(200);
    expect(rb.headers.get("Idempotent-Replayed")).toBeNull();
    expect(rb.body.decisionId).not.toBe(ra.body.decisionId);
    expect((await account(a, T0)).body.products.codex.fiveHour.used).toBe(C / 2);
    expect((await account(b, T0)).body.products.codex.fiveHour.used).toBe(C / 2);
  });

  it("a replayed grant does not add credits twice", async () => {
    const id = uid();
    const key = uid("key");
    const results = await Promise.all(
      Array.from({ length: 5 }, () => addCredits(id, { kind: "purchase", amount: 2 * C }, { now: T0, key })),
    );
    for (const r of results) expect(r.status).toBe(201);
    expect(new Set(results.map((r) => r.body.id)).size).toBe(1);
    const a = await account(id, T0);
    expect(a.body.credits.balance).toBe(2 * C);
    expect(a.body.credits.grants).toHaveLength(1);
  });
});

describe("usage priced with the rate card", () => {
  it("cost = ceil(Σ units × rate / 1e6), recorded with the rate-card version", async () => {
    const id = uid();
    const cat = await call("GET", "/v1/catalog");
    expect(cat.status).toBe(200);
    const rateCard = cat.body.rateCard;
    expect(typeof rateCard.version).toBe("string");
    const model = Object.keys(rateCard.products.codex)[0];
    const rates: Record<string, number> = rateCard.products.codex[model];
    // odd unit counts so the sum has a fraction to round up
    const units: Record<string, number> = {};
    let i = 0;
    for (const meter of Object.keys(rates)) units[meter] = [1001, 3, 7, 13][i++ % 4];
    let total = 0n;
    for (const [m, n] of Object.entries(units)) total += BigInt(n) * BigInt(rates[m]);
    const expected = Number((total + 999_999n) / 1_000_000n);

    const r = await consume(id, { product: "codex", usage: { model, ...units } }, { now: T0 });
    expect(r.status, JSON.stringify(r.body)).toBe(200);
    expect(r.body.cost).toBe(expected);
    expect(r.body.rateCardVersion).toBe(rateCard.version);
    expect(sum(r.body.sources)).toBe(expected);
    const a = await account(id, T0);
    expect(a.body.products.codex.fiveHour.used).toBe(expected);
  });

  it("a sora model is priced per video second", async () => {
    const id = uid();
    const cat = await call("GET", "/v1/catalog");
    const [model, rates] = Object.entries(cat.body.rateCard.products.sora)[0] as [string, Record<string, number>];
    // enough seconds to need credits on go? keep it inside the window: find the largest n whose cost fits
    const sora = await planLimits("go", "sora");
    const perSecond = rates.videoSeconds;
    const seconds = Math.max(1, Math.floor((sora.fiveHour * 1_000_000) / perSecond));
    const expected = Math.ceil((seconds * perSecond) / 1_000_000);
    const r = await consume(id, { product: "sora", usage: { model, videoSeconds: seconds } }, { now: T0 });
    expect(r.status, JSON.stringify(r.body)).toBe(200);
    expect(r.body.cost).toBe(expected);
    expect(r.body.rateCardVersion).toBe(cat.body.rateCard.version);
  });

  it("a charge given as cost carries no rateCardVersion", async () => {
    const r = await consume(uid(), { product: "codex", cost: 1 }, { now: T0 });
    expect(r.status).toBe(200);
    expect(r.body).not.toHaveProperty("rateCardVersion");
  });
});

describe("grants", () => {
  it("a purchase defaults to 12 months' expiry after the purchase", async () => {
    const id = uid();
    const now = Date.UTC(2026, 10, 21, 13, 45, 7, 89);
    const d = new Date(now);
    const expected = iso(
      Date.UTC(
        d.getUTCFullYear() + 1,
        d.getUTCMonth(),
        d.getUTCDate(),
        d.getUTCHours(),
        d.getUTCMinutes(),
        d.getUTCSeconds(),
        d.getUTCMilliseconds(),
      ),
    );
    const g = await grantOf(id, { kind: "purchase", amount: C }, now);
    expect(g.kind).toBe("purchase");
    expect(g.expiresAt).toBe(expected);
    expect(g.products).toBeNull();
    const a = await account(id, now);
    expect(a.body.credits.grants).toEqual([expect.objectContaining({ id: g.id, expiresAt: expected, remaining: C })]);
    // it is gone once it expires
    const later = await account(id, Date.parse(expected));
    expect(later.body.credits.balance).toBe(0);
  });

  it("a promo without expiresAt is 400 and adds nothing", async () => {
    const id = uid();
    await grantOf(id, { kind: "purchase", amount: C }, T0);
    const before = await account(id, T0);
    const r = await addCredits(id, { kind: "promo", amount: C }, { now: T0 });
    expect(r.status).toBe(400);
    expect(r.body.error.code).toBe("invalid_request");
    expect(typeof r.body.error.requestId).toBe("string");
    expect((await account(id, T0)).body).toEqual(before.body);
  });

  it("default priorities: promo 10, entitlement 20, purchase 30", async () => {
    const id = uid();
    const exp = iso(T0 + 30 * 24 * HOUR);
    expect((await grantOf(id, { kind: "promo", amount: C, expiresAt: exp }, T0)).priority).toBe(10);
    expect((await grantOf(id, { kind: "entitlement", amount: C }, T0)).priority).toBe(20);
    expect((await grantOf(id, { kind: "purchase", amount: C }, T0)).priority).toBe(30);
  });

  it("a grant limited to sora does not pay for codex", async () => {
    const id = uid();
    const go = await planLimits("go");
    await grantOf(id, { kind: "purchase", amount: 10 * C, products: ["sora"] }, T0);
    expect((await consume(id, { product: "codex", cost: go.fiveHour }, { now: T0 })).status).toBe(200);
    const r = await consume(id, { product: "codex", cost: C / 10 }, { now: T0 });
    expect(r.status).toBe(429);
    expect(r.body.reason).toBe("limit_reached");
    expect(r.body.account.credits.balance).toBe(10 * C);
  });
});

describe("plans", () => {
  it("PUT plan changes the window limits at once", async () => {
    const id = uid();
    const go = await planLimits("go");
    const pro = await planLimits("pro");
    expect(pro.fiveHour).toBeGreaterThan(go.fiveHour);

    const start = await account(id, T0);
    expect(start.body.plan).toBe("go");
    expect(start.body.products.codex.fiveHour.limit).toBe(go.fiveHour);

    const r = await setPlan(id, "pro", { now: T0 });
    expect(r.status, JSON.stringify(r.body)).toBe(200);
    expect(r.body.plan).toBe("pro");
    expect(r.body.products.codex.fiveHour.limit).toBe(pro.fiveHour);
    expect(r.body.products.codex.weekly.limit).toBe(pro.weekly);

    // a cost above go's 5-hour limit now fits in the window
    const cost = go.fiveHour + C;
    const c1 = await consume(id, { product: "codex", cost }, { now: T0 + 1000 });
    expect(c1.status, JSON.stringify(c1.body)).toBe(200);
    expect(c1.body.sources).toEqual([{ layer: "window", amount: cost }]);

    // back on go: usage above the limit leaves nothing, never a negative remainder
    const down = await setPlan(id, "go", { now: T0 + 2000 });
    expect(down.status).toBe(200);
    expect(down.body.products.codex.fiveHour).toMatchObject({ limit: go.fiveHour, used: cost, remaining: 0 });
    const c2 = await consume(id, { product: "codex", cost: 1 }, { now: T0 + 3000 });
    expect(c2.status).toBe(429);
    expect(c2.body.reason).toBe("limit_reached");
  });
});

describe("idempotent replay of denials and refusals (SPEC §4: same key and payload replays the original status and body)", () => {
  it("a denial is replayed as it was, even after credits would now cover it", async () => {
    const id = uid();
    expect((await consume(id, { product: "codex", cost: 2 * CREDIT }, { now: T0 })).status).toBe(200);
    const denied = await consume(id, { product: "codex", cost: CREDIT }, { now: T0 + 1000, key: "deny-once" });
    expect(denied.status).toBe(429);
    expect(denied.headers.get("Retry-After")).toBe(String(denied.body.retryAfterSeconds));
    expect((await addCredits(id, { amount: 5 * CREDIT, kind: "purchase" }, { now: T0 + 2000 })).status).toBe(201);
    const again = await consume(id, { product: "codex", cost: CREDIT }, { now: T0 + 3000, key: "deny-once" });
    expect(again.status).toBe(429);
    expect(again.body).toEqual(denied.body);
    expect(again.headers.get("Idempotent-Replayed")).toBe("true");
    expect(again.headers.get("Retry-After")).toBe(denied.headers.get("Retry-After"));
    // Nothing was charged by either: the credits are untouched; a new key is decided afresh.
    expect((await account(id, T0 + 3000)).body.credits.balance).toBe(5 * CREDIT);
    expect((await consume(id, { product: "codex", cost: CREDIT }, { now: T0 + 4000 })).status).toBe(200);
  });

  it("a refusal from the account (409 nothing_to_reset) is replayed in the error shape", async () => {
    const id = uid();
    const first = await call(
      "POST",
      `/v1/accounts/${id}/resets`,
      { product: "codex" },
      { now: T0, key: "refused-once" },
    );
    expect(first.status).toBe(409);
    const again = await call(
      "POST",
      `/v1/accounts/${id}/resets`,
      { product: "codex" },
      { now: T0 + 1000, key: "refused-once" },
    );
    expect(again.status).toBe(409);
    expect(again.body.error.code).toBe(first.body.error.code);
    expect(again.headers.get("Idempotent-Replayed")).toBe("true");
  });
});

describe("reads and refusals leave nothing behind", () => {
  it("GET of an account that was never written answers a fresh go account and stores nothing", async () => {
    const ids = Array.from({ length: 5 }, () => uid("ghost"));
    for (const id of ids) {
      const r = await account(id, T0);
      expect(r.status).toBe(200);
      expect(r.body).toMatchObject({ accountId: id, plan: "go", credits: { balance: 0 }, holds: [] });
    }
    // Not a table, not an alarm. (Miniflare opens an empty SQLite file for any object it starts; it stays empty.)
    for (const id of ids) {
      const inside = await runInDurableObject(stubFor(id), async (_i, state) => ({
        tables: state.storage.sql.exec("SELECT name FROM sqlite_master").toArray(),
        alarm: await state.storage.getAlarm(),
      }));
      expect(inside, id).toEqual({ tables: [], alarm: null });
    }
    // The first write creates the account as usual.
    const w = await consume(ids[1], { product: "codex", cost: C }, { now: T0 });
    expect(w.status, JSON.stringify(w.body)).toBe(200);
    expect((await account(ids[1], T0)).body.products.codex.fiveHour.used).toBe(C);
  });

  it("a 400 raised inside the account object does not use up the Idempotency-Key (SPEC §4)", async () => {
    const id = uid("key400");
    const key = uid("key");
    // A codex hold settled with sora usage: the object prices the usage and refuses it.
    const hold = await call("POST", `/v1/accounts/${id}/holds`, { product: "codex", cost: C }, { now: T0 });
    expect(hold.status, JSON.stringify(hold.body)).toBe(201);
    const settlePath = `/v1/accounts/${id}/holds/${hold.body.holdId}/settle`;
    const bad = await call(
      "POST",
      settlePath,
      { usage: { model: "sora-2", videoSeconds: 1 } },
      { now: T0 + 1000, key },
    );
    expect(bad.status, JSON.stringify(bad.body)).toBe(400);
    // The same key and payload is decided again, not replayed…
    const again = await call(
      "POST",
      settlePath,
      { usage: { model: "sora-2", videoSeconds: 1 } },
      { now: T0 + 2000, key },
    );
    expect(again.status).toBe(400);
    expect(again.headers.get("Idempotent-Replayed")).toBeNull();
    // …and the key is still free for a valid request.
    const good = await call("POST", settlePath, { cost: C }, { now: T0 + 3000, key });
    expect(good.status, JSON.stringify(good.body)).toBe(200);
    expect(good.body.charged).toBe(C);

    // A purchase that expires in the past is refused inside the object; the same request sent with an earlier clock succeeds.
    const key2 = uid("key");
    const body = { kind: "purchase", amount: 3 * C, expiresAt: iso(T0 + HOUR) };
    const late = await addCredits(id, body, { now: T0 + 2 * HOUR, key: key2 });
    expect(late.status, JSON.stringify(late.body)).toBe(400);
    const inTime = await addCredits(id, body, { now: T0 + 5000, key: key2 });
    expect(inTime.status, JSON.stringify(inTime.body)).toBe(201);
    expect(inTime.headers.get("Idempotent-Replayed")).toBeNull();
    expect(inTime.body.remaining).toBe(3 * C);
  });
});
