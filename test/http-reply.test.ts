import { Hono } from "hono";
import { describe, expect, it } from "vitest";
import type { DenialFields } from "../worker/core/account/answers";
import type { DecisionWindows } from "../worker/core/account/state";
import { created, denied, ok, refused } from "../worker/core/account/state";
import { REFUSAL_CODES } from "../worker/core/refusals";
import type { AppContext, AppEnv } from "../worker/http/context";
import { ApiError, ERROR_CODES, ERROR_STATUS, errorBody } from "../worker/http/errors";
import { rateLimitFields, reply } from "../worker/http/reply";

/** worker/http/reply.ts: the one mapping from an account's answer to HTTP, without an account object. */

const NOW = 1_700_000_000_000;
const windows: DecisionWindows = {
  product: "codex",
  fiveHour: { limit: 10_000_000, used: 7_500_000, remaining: 2_500_000, resetsAt: NOW + 1_199_500 },
  weekly: { limit: 50_000_000, used: 0, remaining: 50_000_000, resetsAt: null },
};

const paused: DenialFields = { allowed: false, reason: "credits_paused" };

/** A one-route app answering through `reply`, with the app's error rendering. */
async function answerOf(handler: (c: AppContext) => Response): Promise<Response> {
  const app = new Hono<AppEnv>();
  app.use("*", async (c, next) => {
    c.set("now", NOW);
    await next();
  });
  app.get("/", handler);
  app.onError((err, c) =>
    err instanceof ApiError
      ? c.json(errorBody(err.code, err.message, "r", err.details), err.status)
      : c.text("bug", 500),
  );
  return app.request("/");
}

describe("rateLimitFields", () => {
  it("gives one policy per window, and `t` only while a window is open (rounded up)", () => {
    expect(rateLimitFields(windows, NOW)).toEqual({
      "RateLimit-Policy": '"codex.fiveHour";q=10000000;w=18000, "codex.weekly";q=50000000;w=604800',
      RateLimit: '"codex.fiveHour";r=2500000;t=1200, "codex.weekly";r=50000000',
    });
  });
  it("never gives a negative `t`", () => {
    expect(rateLimitFields(windows, NOW + 2_000_000).RateLimit).toContain(";t=0,");
  });
});

describe("reply", () => {
  it("answers ok 200, created 201, with the RateLimit fields of a decision", async () => {
    const r = await answerOf((c) => reply(c, { result: ok({ a: 1 }), replayed: false, rateLimit: windows }));
    expect(r.status).toBe(200);
    expect(await r.json()).toEqual({ a: 1 });
    expect(r.headers.get("RateLimit-Policy")).toContain('"codex.fiveHour"');
    expect(r.headers.get("Idempotent-Replayed")).toBeNull();
    const c = await answerOf((c) => reply(c, { result: created({ b: 2 }), replayed: true }));
    expect(c.status).toBe(201);
    expect(c.headers.get("Idempotent-Replayed")).toBe("true");
    expect(c.headers.get("RateLimit")).toBeNull();
  });
  it("answers a denial 429 with Retry-After from the body, else 60", async () => {
    const d = await answerOf((c) =>
      reply(c, { result: denied({ ...paused, retryAfterSeconds: 42 }), replayed: false }),
    );
    expect(d.status).toBe(429);
    expect(d.headers.get("Retry-After")).toBe("42");
    const p = await answerOf((c) => reply(c, { result: denied(paused), replayed: false }));
    expect(p.headers.get("Retry-After")).toBe("60");
  });
  it("renders a refusal in the one error shape, with its code's status", async () => {
    const r = await answerOf((c) =>
      reply(c, { result: refused("hold_not_active", "already settled", { holdId: "h" }), replayed: true }),
    );
    expect(r.status).toBe(409);
    expect(r.headers.get("Idempotent-Replayed")).toBe("true");
    expect(await r.json()).toEqual({
      error: { code: "hold_not_active", message: "already settled", requestId: "r", details: { holdId: "h" } },
    });
  });
});

describe("error codes", () => {
  it("map every refusal of the domain and every HTTP-only error to one status", () => {
    for (const code of REFUSAL_CODES) expect(ERROR_CODES).toContain(code);
    expect(Object.keys(ERROR_STATUS).sort()).toEqual([...ERROR_CODES].sort());
    expect(ERROR_STATUS.invalid_request).toBe(400);
    expect(ERROR_STATUS.entry_not_found).toBe(404);
    expect(ERROR_STATUS.internal_error).toBe(500);
  });
});
