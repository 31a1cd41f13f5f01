/**
 * The shape of a decision (SPEC §8): `remaining` always, the full account only with `?include=account`, and the
 * IETF RateLimit header fields (draft-ietf-httpapi-ratelimit-headers) for the product's two windows, on 200 and 429.
 */
import { describe, expect, it } from "vitest";
import { addCredits, call, consume, CREDIT, HOUR, T0, uid } from "./helpers";

const C = CREDIT;
const DAY = 24 * HOUR;
const iso = (ms: number) => new Date(ms).toISOString();
const lean = (id: string, body: unknown, now: number, key?: string) => consume(id, body, { now, key, lean: true });

/** Parses a structured-field list of `"name";k=v;k=v` items into { name: { k: v } } (numbers only). */
function fields(value: string | null): Record<string, Record<string, number>> {
  expect(value).not.toBeNull();
  const out: Record<string, Record<string, number>> = {};
  for (const item of value!.split(",")) {
    const [name, ...params] = item.trim().split(";");
    expect(name).toMatch(/^"[a-z]+\.[A-Za-z]+"$/);
    out[name.slice(1, -1)] = Object.fromEntries(params.map((p) => p.split("=")).map(([k, v]) => [k, Number(v)]));
  }
  return out;
}

describe("decisions carry remaining, and the account only when asked", () => {
  it("an allowed consume answers remaining for its product; ?include=account adds the summary", async () => {
    const id = uid("lean");
    const t = T0 + 20 * DAY;
    await addCredits(id, { kind: "purchase", amount: 5 * C }, { now: t });
    const r = await lean(id, { product: "codex", cost: C / 2 }, t + 1000);
    expect(r.status, JSON.stringify(r.body)).toBe(200);
    expect(r.body.account).toBeUndefined();
    expect(r.body.remaining).toEqual({
      product: "codex",
      fiveHour: { remaining: 2 * C - C / 2, resetsAt: iso(t + 1000 + 5 * HOUR) },
      weekly: { remaining: 10 * C - C / 2, resetsAt: iso(t + 1000 + 7 * DAY) },
      credits: 5 * C,
    });
    expect(JSON.stringify(r.body).length).toBeLessThan(500);
    const full = await call(
      "POST",
      `/v1/accounts/${id}/consume?include=account`,
      { product: "codex", cost: C / 2 },
      { now: t + 2000, lean: true },
    );
    expect(full.status).toBe(200);
    expect(full.body.account).toMatchObject({ accountId: id, products: { codex: { fiveHour: { used: C } } } });
    expect(full.body.remaining.fiveHour.remaining).toBe(C);
    expect(
      (
        await call(
          "POST",
          `/v1/accounts/${id}/consume?include=everything`,
          { product: "codex", cost: 1 },
          { now: t + 3000, lean: true },
        )
      ).status,
    ).toBe(400);
  });

  it("a denial carries remaining too, and a replay under ?include=account adds the account as it stands", async () => {
    const id = uid("lean");
    const t = T0 + 21 * DAY;
    await lean(id, { product: "codex", cost: 2 * C }, t);
    const key = uid("key");
    const d = await lean(id, { product: "codex", cost: C }, t + 1000, key);
    expect(d.status).toBe(429);
    expect(d.body).toMatchObject({
      allowed: false,
      reason: "limit_reached",
      remaining: { product: "codex", fiveHour: { remaining: 0 }, credits: 0 },
    });
    expect(d.body.account).toBeUndefined();
    const replay = await call(
      "POST",
      `/v1/accounts/${id}/consume?include=account`,
      { product: "codex", cost: C },
      { now: t + 2000, key, lean: true },
    );
    expect(replay.status).toBe(429);
    expect(replay.headers.get("Idempotent-Replayed")).toBe("true");
    expect(replay.body.decisionId).toBe(d.body.decisionId);
    expect(replay.body.remaining).toEqual(d.body.remaining);
    expect(replay.body.account.products.codex.fiveHour.used).toBe(2 * C);
  });

  it("holds, settle and release answer remaining, not the account", async () => {
    const id = uid("lean");
    const t = T0 + 22 * DAY;
    const h = await call("POST", `/v1/accounts/${id}/holds`, { product: "sora", cost: C / 4 }, { now: t, lean: true });
    expect(h.status, JSON.stringify(h.body)).toBe(201);
    expect(h.body.account).toBeUndefined();
    expect(h.body.remaining).toMatchObject({ product: "sora", fiveHour: { remaining: C - C / 4 } });
    const s = await call(
      "POST",
      `/v1/accounts/${id}/holds/${h.body.holdId}/settle`,
      { cost: C / 8 },
      { now: t + 1000, lean: true },
    );
    expect(s.status, JSON.stringify(s.body)).toBe(200);
    expect(s.body.account).toBeUndefined();
    expect(s.body.remaining).toMatchObject({ product: "sora", fiveHour: { remaining: C - C / 8 } });
    expect(s.headers.get("RateLimit")).toContain('"sora.fiveHour"');
  });
});

describe("RateLimit header fields (draft-ietf-httpapi-ratelimit-headers)", () => {
  it("a 200 names both windows of the product with their quota, window, remaining and seconds to reset", async () => {
    const id = uid("rl");
    const t = T0 + 23 * DAY;
    const r = await lean(id, { product: "codex", cost: C / 2 }, t);
    expect(r.status).toBe(200);
    expect(fields(r.headers.get("RateLimit-Policy"))).toEqual({
      "codex.fiveHour": { q: 2 * C, w: 5 * 3600 },
      "codex.weekly": { q: 10 * C, w: 7 * 24 * 3600 },
    });
    expect(fields(r.headers.get("RateLimit"))).toEqual({
      "codex.fiveHour": { r: 2 * C - C / 2, t: 5 * 3600 },
      "codex.weekly": { r: 10 * C - C / 2, t: 7 * 24 * 3600 },
    });
    // Later, t counts down to the window's end.
    const later = await lean(id, { product: "codex", cost: C / 2 }, t + HOUR);
    expect(fields(later.headers.get("RateLimit"))["codex.fiveHour"]).toEqual({ r: C, t: 4 * 3600 });
  });

  it("a 429 carries them too, with r=0 for the exhausted window; a window not yet open has no t", async () => {
    const id = uid("rl");
    const t = T0 + 24 * DAY;
    await lean(id, { product: "codex", cost: 2 * C }, t);
    const d = await lean(id, { product: "codex", cost: C }, t + 60_000);
    expect(d.status).toBe(429);
    expect(d.headers.get("Retry-After")).toBe(String(5 * 3600 - 60));
    expect(fields(d.headers.get("RateLimit"))).toEqual({
      "codex.fiveHour": { r: 0, t: 5 * 3600 - 60 },
      "codex.weekly": { r: 8 * C, t: 7 * 24 * 3600 - 60 },
    });
    const sora = await call(
      "POST",
      `/v1/accounts/${id}/holds`,
      { product: "sora", cost: 10 * C },
      { now: t + 120_000, lean: true },
    );
    expect(sora.status).toBe(429);
    expect(fields(sora.headers.get("RateLimit"))).toEqual({ "sora.fiveHour": { r: C }, "sora.weekly": { r: 5 * C } });
    expect(fields(sora.headers.get("RateLimit-Policy"))["sora.weekly"]).toEqual({ q: 5 * C, w: 7 * 24 * 3600 });
  });

  it("reads and refusals carry no RateLimit fields", async () => {
    const id = uid("rl");
    const g = await call("GET", `/v1/accounts/${id}`);
    expect(g.headers.get("RateLimit")).toBeNull();
    const missing = await call("POST", `/v1/accounts/${id}/holds/nohold/release`, undefined, { lean: true });
    expect(missing.status).toBe(404);
    expect(missing.headers.get("RateLimit")).toBeNull();
  });
});
