// The SDK (sdk/src) against the real worker: every call goes through openapi-fetch into
// `exports.default.fetch`, with a fetch wrapper that records each attempt and injects faults.
import { exports } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import {
  EngineClient,
  EngineError,
  isDenial,
  type EngineClientOptions,
  type FetchLike,
  type LedgerEntry,
  type OrgLedgerEntry,
} from "../sdk/src/index";
import { LEASE_TTL_MS } from "../worker/core/account/membership";
import { ADMIN, CREDIT, HOUR, SERVICE, T0, uid } from "./helpers";
import { drainOrg, orgStub } from "./org-helpers";
import { drainAccount } from "./settle-helpers";

const BASE = "https://engine.test";
const worker: FetchLike = (request) => exports.default.fetch(request);

/** What a wrapped fetch does on one attempt; `undefined` passes the request to the worker. */
type Fault =
  | { kind: "network" } // fails before the worker sees the request
  | { kind: "lost" } // the worker answers, the answer is lost on the way back
  | { kind: "status"; status: number; headers?: Record<string, string>; body?: string }
  | { kind: "hang" } // no answer until the attempt's signal aborts
  | { kind: "late"; ms: number }; // the worker answers (the effect happens), the answer arrives `ms` later

interface Attempt {
  method: string;
  url: string;
  key: string | null;
  auth: string | null;
  contentType: string | null;
}

/** A fetch that records every attempt and applies `faults[n]` to attempt n (0-based). */
function faulty(faults: (Fault | undefined)[] = []) {
  const attempts: Attempt[] = [];
  const fetch: FetchLike = async (request) => {
    const n = attempts.length;
    attempts.push({
      method: request.method,
      url: request.url,
      key: request.headers.get("Idempotency-Key"),
      auth: request.headers.get("Authorization"),
      contentType: request.headers.get("Content-Type"),
    });
    const fault = faults[n];
    if (!fault) return worker(request);
    switch (fault.kind) {
      case "network":
        throw new TypeError("Network connection lost.");
      case "lost": {
        const res = await worker(request);
        await res.arrayBuffer();
        throw new TypeError("Network connection lost.");
      }
      case "status":
        return new Response(
          fault.body ?? JSON.stringify({ error: { code: "unavailable", message: "injected", requestId: "injected" } }),
          {
            status: fault.status,
            headers: { "Content-Type": "application/json", ...fault.headers },
          },
        );
      case "hang":
        return new Promise<Response>((_, reject) =>
          request.signal?.addEventListener("abort", () => reject(request.signal.reason)),
        );
      case "late": {
        const res = await worker(request);
        const body = await res.arrayBuffer();
        await new Promise((r) => setTimeout(r, fault.ms));
        return new Response(body, { status: res.status, headers: res.headers });
      }
    }
  };
  return { fetch, attempts };
}

/** A client with instant, recorded waits between attempts. */
function client(options: Partial<EngineClientOptions> = {}) {
  const delays: number[] = [];
  const engine = new EngineClient({
    baseUrl: BASE,
    token: SERVICE,
    adminToken: ADMIN,
    fetch: worker,
    sleep: async (ms) => {
      delays.push(ms);
    },
    ...options,
  });
  return { engine, delays };
}

/** An account on plan go (codex 5-hour window: 2 credits) holding 10 purchased credits. */
async function funded(): Promise<string> {
  const id = uid("sdk");
  await client().engine.addCredits(id, { amount: 10 * CREDIT, kind: "purchase" });
  return id;
}

/** 3 credits: the window pays 2, the grant 1. A second charge would take 3 more from the grant. */
const THREE = { product: "codex" as const, cost: 3 * CREDIT };

/**
 * Exactly one grant charge of 1 credit, on the account and in the settled ledger, and the window's 2 credits charged
 * once: one window charge in the hour's usage rollup (SPEC §7).
 */
async function expectChargedOnce(id: string, decisionId: string) {
  const { engine } = client();
  const account = await engine.getAccount(id);
  expect(account.credits.balance).toBe(9 * CREDIT);
  expect(account.products.codex?.fiveHour.used).toBe(2 * CREDIT);
  const { rows } = await drainAccount(id);
  const listed: LedgerEntry[] = [];
  for await (const e of engine.ledgerEntries(id)) listed.push(e);
  // the SDK lists what D1 holds
  expect(listed.map((e) => e.id)).toEqual(rows.map((r) => r.id));
  // one charge, the grant's, tied to the decision; no window charge is a ledger row of its own
  expect(listed.filter((e) => e.kind === "charge")).toEqual([
    expect.objectContaining({ layer: "grant", amount: 1 * CREDIT, decisionId }),
  ]);
  expect(rows.filter((r) => r.kind === "usage").map((r) => [r.layer, r.amount, r.usage_count])).toEqual([
    ["window", 2 * CREDIT, 1],
  ]);
}

/** The rejection of `p`, which must be an EngineError. */
async function engineError(p: Promise<unknown>): Promise<EngineError> {
  const e = await p.then(
    () => null,
    (err: unknown) => err,
  );
  expect(e).toBeInstanceOf(EngineError);
  return e as EngineError;
}

describe("decisions are typed answers", () => {
  it("an allowed consume resolves with allowed: true and how it was decided", async () => {
    const id = await funded();
    const { fetch, attempts } = faulty();
    const d = await client({ fetch }).engine.consume(id, THREE);
    expect(d.allowed).toBe(true);
    if (!d.allowed) throw new Error("unreachable");
    expect(d.cost).toBe(3 * CREDIT);
    expect(d.sources.map((s) => [s.layer, s.amount])).toEqual([
      ["window", 2 * CREDIT],
      ["grant", 1 * CREDIT],
    ]);
    expect(d.lastResponse).toMatchObject({ status: 200, replayed: false, attempts: 1 });
    expect(d.lastResponse.requestId).toMatch(/^[0-9a-f-]{36}$/);
    expect(d.lastResponse.idempotencyKey).toMatch(/^sdk:/);
    // the metadata is not part of the body
    expect(Object.keys(d)).not.toContain("lastResponse");
    expect(attempts).toEqual([
      expect.objectContaining({
        method: "POST",
        url: `${BASE}/v1/accounts/${id}/consume`,
        auth: `Bearer ${SERVICE}`,
        key: d.lastResponse.idempotencyKey,
      }),
    ]);
  });

  it("a denial resolves with allowed: false (HTTP 429) and is never retried, though it carries Retry-After", async () => {
    const id = uid("sdk");
    const { fetch, attempts } = faulty();
    const d = await client({ fetch }).engine.consume(id, { product: "codex", cost: 50 * CREDIT });
    expect(d.allowed).toBe(false);
    if (d.allowed) throw new Error("unreachable");
    expect(["limit_reached", "insufficient_credits"]).toContain(d.reason);
    expect(d.lastResponse.status).toBe(429);
    expect(d.lastResponse.headers.get("Retry-After")).toMatch(/^\d+$/);
    expect(attempts).toHaveLength(1);
    // nothing was charged
    expect((await client().engine.getAccount(id)).products.codex?.fiveHour.used).toBe(0);
  });

  it("query parameters the document declares pass through (?include=account)", async () => {
    const id = await funded();
    const { fetch, attempts } = faulty();
    const d = await client({ fetch }).engine.consume(
      id,
      { product: "codex", cost: CREDIT },
      { query: { include: "account" } },
    );
    expect(attempts[0].url).toBe(`${BASE}/v1/accounts/${id}/consume?include=account`);
    expect(d.account?.accountId).toBe(id);
  });

  it("a hold can be denied the same way", async () => {
    const { engine } = client();
    const h = await engine.createHold(uid("sdk"), { product: "codex", cost: 50 * CREDIT });
    expect(isDenial(h)).toBe(true);
    if (!isDenial(h)) throw new Error("unreachable");
    expect(h.reason).toBe("limit_reached");
    expect(h.lastResponse.status).toBe(429);
  });
});

describe("one Idempotency-Key per call, reused on every retry: charged exactly once", () => {
  it("a network failure before the worker: retried with the same key", async () => {
    const id = await funded();
    const { fetch, attempts } = faulty([{ kind: "network" }]);
    const { engine, delays } = client({ fetch });
    const d = await engine.consume(id, THREE);
    expect(d.allowed).toBe(true);
    expect(attempts).toHaveLength(2);
    expect(attempts[0].key).toBeTruthy();
    expect(attempts[1].key).toBe(attempts[0].key);
    expect(d.lastResponse).toMatchObject({ attempts: 2, idempotencyKey: attempts[0].key, replayed: false });
    expect(delays).toHaveLength(1);
    await expectChargedOnce(id, (d as { decisionId: string }).decisionId);
  });

  it("an answer lost after the charge: the retry replays the first decision", async () => {
    const id = await funded();
    const { fetch, attempts } = faulty([{ kind: "lost" }]);
    const d = await client({ fetch }).engine.consume(id, THREE);
    expect(d.allowed).toBe(true);
    expect(attempts.map((a) => a.key)).toEqual([attempts[0].key, attempts[0].key]);
    expect(d.lastResponse.replayed).toBe(true);
    await expectChargedOnce(id, (d as { decisionId: string }).decisionId);
  });

  it("a 503 on the first attempt: retried with the same key", async () => {
    const id = await funded();
    const { fetch, attempts } = faulty([{ kind: "status", status: 503 }]);
    const d = await client({ fetch }).engine.consume(id, THREE);
    expect(d.allowed).toBe(true);
    expect(attempts).toHaveLength(2);
    expect(attempts[1].key).toBe(attempts[0].key);
    await expectChargedOnce(id, (d as { decisionId: string }).decisionId);
  });

  it("an answer later than the timeout, after the charge: the retry replays it", async () => {
    const id = await funded();
    const { fetch, attempts } = faulty([{ kind: "late", ms: 300 }]);
    const d = await client({ fetch, timeoutMs: 100 }).engine.consume(id, THREE);
    expect(d.allowed).toBe(true);
    expect(attempts).toHaveLength(2);
    expect(attempts[1].key).toBe(attempts[0].key);
    expect(d.lastResponse.replayed).toBe(true);
    await expectChargedOnce(id, (d as { decisionId: string }).decisionId);
  });

  it("without a key: one random key per call, never per attempt", async () => {
    const id = await funded();
    const { fetch, attempts } = faulty([{ kind: "network" }, undefined, { kind: "network" }, undefined]);
    const { engine } = client({ fetch });
    await engine.consume(id, { product: "codex", cost: CREDIT / 10 });
    await engine.consume(id, { product: "codex", cost: CREDIT / 10 });
    const keys = attempts.map((a) => a.key);
    expect(keys[0]).toBe(keys[1]);
    expect(keys[2]).toBe(keys[3]);
    expect(keys[2]).not.toBe(keys[0]);
    expect((await engine.getAccount(id)).products.codex?.fiveHour.used).toBe(2 * (CREDIT / 10));
  });

  it("a caller's key is sent as it is; the same key with another payload is 409 idempotency_conflict", async () => {
    const id = await funded();
    const key = uid("caller-key");
    const { fetch, attempts } = faulty();
    const { engine } = client({ fetch });
    const first = await engine.consume(id, THREE, { idempotencyKey: key });
    expect(first.lastResponse.idempotencyKey).toBe(key);
    const again = await engine.consume(id, THREE, { idempotencyKey: key });
    expect(again.lastResponse.replayed).toBe(true);
    expect(again).toEqual(first);
    const e = await engineError(engine.consume(id, { product: "codex", cost: CREDIT }, { idempotencyKey: key }));
    expect(e).toMatchObject({ status: 409, code: "idempotency_conflict", attempts: 1, idempotencyKey: key });
    expect(e.requestId).toMatch(/^[0-9a-f-]{36}$/);
    expect(attempts.map((a) => a.key)).toEqual([key, key, key]);
    await expectChargedOnce(id, (first as { decisionId: string }).decisionId);
  });

  it("a request id gives a stable derived key: a repeat from another client replays, charged once", async () => {
    const id = await funded();
    const requestId = uid("req");
    const a = faulty();
    const b = faulty();
    const first = await client({ fetch: a.fetch }).engine.consume(id, THREE, { requestId });
    const second = await client({ fetch: b.fetch }).engine.consume(id, THREE, { requestId });
    expect(a.attempts[0].key).toMatch(/^sdk:[0-9a-f]{64}$/);
    expect(b.attempts[0].key).toBe(a.attempts[0].key);
    expect(second.lastResponse.replayed).toBe(true);
    expect(second).toEqual(first);
    // the same request id on another operation or account is another key, not a conflict
    const grant = await client({ fetch: a.fetch }).engine.addCredits(
      id,
      { amount: CREDIT, kind: "promo", expiresAt: "2099-01-01T00:00:00Z" },
      { requestId },
    );
    expect(grant.lastResponse.idempotencyKey).not.toBe(a.attempts[0].key);
    const other = await client({ fetch: a.fetch }).engine.consume(
      uid("sdk"),
      { product: "codex", cost: CREDIT },
      { requestId },
    );
    expect(other.lastResponse.idempotencyKey).not.toBe(a.attempts[0].key);
    expect(other.lastResponse.replayed).toBe(false);
  });

  it("backs off exponentially with full jitter, and gives up after maxAttempts with the last error", async () => {
    const id = await funded();
    const fail = { kind: "status", status: 503 } as const;
    const { fetch, attempts } = faulty([fail, fail, fail, fail]);
    const { engine, delays } = client({
      fetch,
      random: () => 0.5,
      retry: { maxAttempts: 4, baseDelayMs: 100, maxDelayMs: 300 },
    });
    const e = await engineError(engine.consume(id, THREE));
    expect(e).toMatchObject({ status: 503, code: "unavailable", attempts: 4 });
    expect(new Set(attempts.map((a) => a.key)).size).toBe(1);
    expect(e.idempotencyKey).toBe(attempts[0].key);
    expect(delays).toEqual([50, 100, 150]); // 0.5 × min(300, 100·2^(n−1))
    // the key can finish the call later: nothing was charged, so this is the first charge
    const d = await engine.consume(id, THREE, { idempotencyKey: e.idempotencyKey });
    expect(d.lastResponse.replayed).toBe(false);
    await expectChargedOnce(id, (d as { decisionId: string }).decisionId);
  });

  it("maxAttempts: 1 turns retries off", async () => {
    const { fetch, attempts } = faulty([{ kind: "network" }]);
    const e = await engineError(client({ fetch, retry: { maxAttempts: 1 } }).engine.getAccount(uid("sdk")));
    expect(e).toMatchObject({ status: 0, code: "network_error", attempts: 1 });
    expect(e.cause).toBeInstanceOf(TypeError);
    expect(attempts).toHaveLength(1);
  });

  it("4xx answers are not retried", async () => {
    const { fetch, attempts } = faulty();
    const { engine } = client({ fetch });
    const e = await engineError(engine.consume(uid("sdk"), { product: "codex" } as never));
    expect(e).toMatchObject({ status: 400, code: "invalid_request", attempts: 1 });
    expect(attempts).toHaveLength(1);
  });
});

describe("429 with Retry-After", () => {
  const limited = (retryAfter?: string): Fault => ({
    kind: "status",
    status: 429,
    headers: retryAfter === undefined ? {} : { "Retry-After": retryAfter },
    body: JSON.stringify({ error: { code: "rate_limited", message: "slow down", requestId: "edge" } }),
  });

  it("is retried after exactly Retry-After when it is not a decision", async () => {
    const id = await funded();
    const { fetch, attempts } = faulty([limited("2")]);
    const { engine, delays } = client({ fetch });
    const d = await engine.consume(id, THREE);
    expect(d.allowed).toBe(true);
    expect(delays).toEqual([2000]);
    expect(attempts[1].key).toBe(attempts[0].key);
    await expectChargedOnce(id, (d as { decisionId: string }).decisionId);
  });

  it("is not retried when retryRateLimited is off, without Retry-After, or above maxRetryAfterMs", async () => {
    for (const [fault, retry] of [
      [limited("2"), { retryRateLimited: false }],
      [limited(), {}],
      [limited("120"), { maxRetryAfterMs: 30_000 }],
    ] as const) {
      const { fetch, attempts } = faulty([fault]);
      const { engine, delays } = client({ fetch, retry });
      const e = await engineError(engine.getAccount(uid("sdk")));
      expect(e).toMatchObject({
        status: 429,
        code: "rate_limited",
        message: "slow down",
        requestId: "edge",
        attempts: 1,
      });
      expect(attempts).toHaveLength(1);
      expect(delays).toEqual([]);
    }
  });

  it("accepts an HTTP date", async () => {
    const { fetch } = faulty([limited(new Date(Date.now() + 5_000).toUTCString())]);
    const { engine, delays } = client({ fetch });
    await engine.getAccount(uid("sdk"));
    expect(delays).toHaveLength(1);
    expect(delays[0]).toBeGreaterThan(3_000);
    expect(delays[0]).toBeLessThanOrEqual(5_000);
  });
});

describe("timeouts", () => {
  it("an attempt that outlives timeoutMs is aborted and retried like a network error", async () => {
    const id = await funded();
    const { fetch, attempts } = faulty([{ kind: "hang" }]);
    const started = Date.now();
    const d = await client({ fetch, timeoutMs: 50 }).engine.consume(id, THREE);
    expect(d.allowed).toBe(true);
    expect(Date.now() - started).toBeLessThan(5_000);
    expect(attempts).toHaveLength(2);
    expect(attempts[1].key).toBe(attempts[0].key);
    await expectChargedOnce(id, (d as { decisionId: string }).decisionId);
  });

  it("when every attempt times out the call fails with code timeout", async () => {
    const hang = { kind: "hang" } as const;
    const { fetch, attempts } = faulty([hang, hang, hang]);
    const e = await engineError(client({ fetch, timeoutMs: 30 }).engine.getAccount(uid("sdk"), { timeoutMs: 20 }));
    expect(e).toMatchObject({ status: 0, code: "timeout", attempts: 3 });
    expect(attempts).toHaveLength(3);
  });

  it("a fetch that ignores its signal still cannot hold the call past the timeout", async () => {
    const never: FetchLike = () => new Promise<Response>(() => {});
    const e = await engineError(client({ fetch: never, timeoutMs: 20, retry: { maxAttempts: 2 } }).engine.catalog());
    expect(e).toMatchObject({ code: "timeout", attempts: 2 });
  });

  it("the caller's signal cancels the call without a retry", async () => {
    const { fetch, attempts } = faulty([{ kind: "hang" }, { kind: "hang" }]);
    const controller = new AbortController();
    const p = client({ fetch, timeoutMs: 10_000 }).engine.getAccount(uid("sdk"), { signal: controller.signal });
    setTimeout(() => controller.abort(), 20);
    const e = await engineError(p);
    expect(e).toMatchObject({ status: 0, code: "aborted", attempts: 1 });
    expect(attempts).toHaveLength(1);
  });
});

describe("errors are EngineError with the API's code", () => {
  it("an unknown hold is 404 not_found; settling a released hold is 409 hold_not_active", async () => {
    const id = await funded();
    const { engine } = client();
    const e = await engineError(engine.settleHold(id, "nope", { cost: CREDIT }));
    expect(e).toBeInstanceOf(Error);
    expect(e).toMatchObject({ name: "EngineError", status: 404, code: "not_found", attempts: 1 });
    expect(e.message).toBeTruthy();
    expect(e.requestId).toMatch(/^[0-9a-f-]{36}$/);

    const hold = await engine.createHold(id, { product: "codex", cost: CREDIT });
    if (isDenial(hold)) throw new Error("hold denied");
    await engine.releaseHold(id, hold.holdId);
    const again = await engineError(engine.settleHold(id, hold.holdId, { cost: CREDIT }));
    expect(again).toMatchObject({ status: 409, code: "hold_not_active" });
  });

  it("a wrong token is 401 unauthorized; the service token on an admin route is 403 forbidden", async () => {
    expect(await engineError(client({ token: "wrong" }).engine.getAccount(uid("sdk")))).toMatchObject({
      status: 401,
      code: "unauthorized",
    });
    expect(await engineError(client({ adminToken: SERVICE }).engine.admin.listGlobalResets())).toMatchObject({
      status: 403,
      code: "forbidden",
    });
  });

  it("validation details come through", async () => {
    const e = await engineError(client().engine.addCredits(uid("sdk"), { amount: -1, kind: "purchase" }));
    expect(e.code).toBe("invalid_request");
    expect(e.details).toMatchObject({ issues: [expect.objectContaining({ path: "amount" })] });
  });

  it("an answer that is not the API's (a proxy's HTML 502) is retried, then unexpected_response", async () => {
    const html = {
      kind: "status",
      status: 502,
      headers: { "Content-Type": "text/html" },
      body: "<html>Bad gateway</html>",
    } as const;
    const { fetch, attempts } = faulty([html, html]);
    const e = await engineError(client({ fetch, retry: { maxAttempts: 2 } }).engine.getAccount(uid("sdk")));
    expect(e).toMatchObject({ status: 502, code: "unexpected_response", attempts: 2 });
    expect(e.message).toContain("Bad gateway");
    expect(attempts).toHaveLength(2);
  });
});

describe("every operation", () => {
  it("holds: create, settle, release", async () => {
    const id = await funded();
    const { engine } = client();
    const hold = await engine.createHold(id, { product: "codex", cost: 2 * CREDIT, ttlSeconds: 60 });
    if (isDenial(hold)) throw new Error("hold denied");
    expect(hold.lastResponse.status).toBe(201);
    const settled = await engine.settleHold(id, hold.holdId, { cost: CREDIT });
    expect(settled).toMatchObject({ holdId: hold.holdId, charged: CREDIT, released: CREDIT, writtenOff: 0 });
    const other = await engine.createHold(id, { product: "codex", cost: CREDIT });
    if (isDenial(other)) throw new Error("hold denied");
    expect(await engine.releaseHold(id, other.holdId)).toMatchObject({ holdId: other.holdId, released: CREDIT });
  });

  it("account settings, catalog, panel link, banked resets, health", async () => {
    const id = await funded();
    const { engine } = client();
    expect((await engine.setPlan(id, { plan: "plus" })).plan).toBe("plus");
    expect((await engine.setSpendCap(id, { dailyLimit: 5 * CREDIT })).spendCap).toMatchObject({
      dailyLimit: 5 * CREDIT,
    });
    expect((await engine.setSpendCap(id, { dailyLimit: null })).spendCap).toBeNull();
    const topUp = await engine.setAutoTopUp(id, {
      enabled: true,
      threshold: CREDIT,
      amount: 5 * CREDIT,
      maxPerMonth: 2,
    });
    expect(topUp.credits.autoTopUp).toMatchObject({ enabled: true, threshold: CREDIT });
    const grant = await engine.addCredits(id, {
      amount: CREDIT,
      kind: "promo",
      expiresAt: "2099-01-01T00:00:00Z",
      products: ["sora"],
    });
    expect(grant).toMatchObject({ kind: "promo", amount: CREDIT, products: ["sora"] });
    const catalog = await engine.catalog();
    expect(catalog).toHaveProperty("plans");
    const link = await engine.createPanelLink(id);
    expect(link.url).toContain(`/panel?token=`);
    const e = await engineError(engine.redeemBankedReset(id, { product: "codex" }));
    expect(["no_banked_reset", "nothing_to_reset"]).toContain(e.code);
    expect(await client({ token: undefined }).engine.health()).toEqual({ ok: true });
  });

  it("the ledger helper follows nextCursor through every page", async () => {
    const id = uid("sdk");
    const { engine } = client();
    for (let i = 1; i <= 5; i++) await engine.addCredits(id, { amount: i * CREDIT, kind: "purchase" });
    await drainAccount(id);
    const pages = [];
    for await (const page of engine.ledgerPages(id, { limit: 2 })) pages.push(page.entries.length);
    expect(pages).toEqual([2, 2, 1]);
    const entries = [];
    for await (const entry of engine.ledgerEntries(id, { limit: 2 })) entries.push(entry);
    expect(entries.map((e) => [e.kind, e.amount])).toEqual([1, 2, 3, 4, 5].map((n) => ["grant", n * CREDIT]));
    expect(entries).toEqual((await engine.ledger(id, { limit: 500 })).entries);
    // from a cursor on
    const first = await engine.ledger(id, { limit: 3 });
    const rest = [];
    for await (const entry of engine.ledgerEntries(id, { limit: 1, cursor: first.nextCursor! })) rest.push(entry);
    expect(rest).toEqual(entries.slice(3));
  });

  it("admin: global reset create and list, resume, refund, reconciliation", async () => {
    const id = await funded();
    const { engine } = client();
    const reason = `sdk test ${uid("r")}`;
    // scoped to a plan no other test here uses, so their windows are untouched
    const reset = await engine.admin.createGlobalReset(
      { reason, scope: { plans: ["edu"] } },
      { headers: { "X-Operator": "sdk-test" } },
    );
    expect(reset.resetId).toBeTruthy();
    const again = await engine.admin.createGlobalReset(
      { reason, scope: { plans: ["edu"] } },
      { idempotencyKey: reset.lastResponse.idempotencyKey },
    );
    expect(again.lastResponse.replayed).toBe(true);
    expect(again.resetId).toBe(reset.resetId);
    const list = await engine.admin.listGlobalResets({ limit: 10 });
    expect(list.resets).toContainEqual(expect.objectContaining({ resetId: reset.resetId, reason, actor: "sdk-test" }));

    const resumed = await engine.admin.resume(id);
    expect(resumed.account.paused).toBe(false);
    const refund = await engine.admin.refund(id, { amount: CREDIT, reason: "goodwill" });
    expect(refund.lastResponse.status).toBe(201);
    expect((await engine.getAccount(id)).credits.balance).toBe(11 * CREDIT);

    await drainAccount(id);
    const report = await engine.admin.reconciliation({ accountId: id });
    expect(report).toMatchObject({ checked: 1, drifted: [] });
  });
});

/** A client on the test clock (`X-Test-Now`), for what depends on the day or on when leases close. */
const clockedAt = (now: number, options: Partial<EngineClientOptions> = {}) =>
  client({ headers: { "X-Test-Now": String(now) }, ...options });

/** An organization on business, flex off, with `credits` in its pool and `members` fresh accounts (plan go). */
async function sdkOrg(credits: number, members: number, { engine }: { engine: EngineClient } = client()) {
  const orgId = uid("sdk-org");
  await engine.orgs.put(orgId, { plan: "business", flexMonthlyLimit: 0 });
  const grant = credits > 0 ? await engine.orgs.addCredits(orgId, { amount: credits, kind: "purchase" }) : null;
  const ids: string[] = [];
  for (let i = 0; i < members; i++) {
    const id = uid("sdk-member");
    await engine.orgs.putMember(orgId, id);
    ids.push(id);
  }
  return { orgId, ids, grantId: grant?.id };
}

describe("organizations", () => {
  it("create an org, add members and pool credits; a member beyond its windows draws from the pool", async () => {
    const { fetch, attempts } = faulty();
    const { engine } = client({ fetch });
    const orgId = uid("sdk-org");
    const created = await engine.orgs.put(orgId, { plan: "business", flexMonthlyLimit: 0 });
    expect(created).toMatchObject({ orgId, plan: "business", flex: null, paused: false, members: [] });
    expect(created.pool).toMatchObject({ balance: 0, granted: 0 });
    expect(created.lastResponse).toMatchObject({ status: 200, replayed: false });
    expect(attempts[0]).toMatchObject({
      method: "PUT",
      url: `${BASE}/v1/orgs/${orgId}`,
      auth: `Bearer ${SERVICE}`,
      key: created.lastResponse.idempotencyKey,
    });

    const [a, b] = [uid("sdk-member"), uid("sdk-member")];
    // without a body: no pool limits
    const plain = await engine.orgs.putMember(orgId, a);
    expect(plain).toMatchObject({ accountId: a, active: true, dailyLimit: null, monthlyLimit: null });
    const limited = await engine.orgs.putMember(orgId, b, { dailyLimit: 5 * CREDIT, monthlyLimit: 20 * CREDIT });
    expect(limited).toMatchObject({ accountId: b, active: true, dailyLimit: 5 * CREDIT, monthlyLimit: 20 * CREDIT });
    expect(attempts.slice(1, 3).map((x) => [x.method, x.url])).toEqual([
      ["PUT", `${BASE}/v1/orgs/${orgId}/members/${a}`],
      ["PUT", `${BASE}/v1/orgs/${orgId}/members/${b}`],
    ]);

    const grant = await engine.orgs.addCredits(orgId, { amount: 20 * CREDIT, kind: "purchase" });
    expect(grant).toMatchObject({ kind: "purchase", amount: 20 * CREDIT, remaining: 20 * CREDIT });
    expect(grant.lastResponse.status).toBe(201);

    // plan go: the 5-hour window pays 2 credits, the pool the third
    const d = await engine.consume(a, { product: "codex", cost: 3 * CREDIT });
    if (isDenial(d)) throw new Error(`denied: ${d.reason}`);
    expect(d.sources).toEqual([
      { layer: "window", amount: 2 * CREDIT },
      { layer: "pool", orgId, grantId: grant.id, amount: CREDIT },
    ]);
    const member = await engine.getAccount(a);
    expect(member.org).toMatchObject({ orgId, active: true, spent: CREDIT, dailyLimit: null });
    expect(member.credits.balance).toBe(0);

    // An account belongs to at most one organization.
    const other = await sdkOrg(0, 0);
    expect(await engineError(engine.orgs.putMember(other.orgId, a))).toMatchObject({
      status: 409,
      code: "already_member",
      attempts: 1,
    });
  });

  it("reading an org: the pool balance, grants, members and their spend", async () => {
    const { engine } = clockedAt(T0);
    const { orgId, ids, grantId } = await sdkOrg(20 * CREDIT, 2, { engine });
    for (const id of ids) {
      const d = await engine.consume(id, { product: "codex", cost: 3 * CREDIT });
      expect(d.allowed).toBe(true);
    }
    // Closing every lease returns what members hold unspent: the pool is what was granted less what was spent.
    const closed = T0 + 2 * LEASE_TTL_MS;
    await orgStub(orgId).closeDue(closed);
    const org = await clockedAt(closed).engine.orgs.get(orgId);
    expect(org.lastResponse.idempotencyKey).toBeUndefined();
    expect(org).toMatchObject({ orgId, plan: "business", paused: false, flex: null });
    expect(org.pool).toEqual({
      balance: 18 * CREDIT,
      leased: 2 * CREDIT,
      spent: 2 * CREDIT,
      granted: 20 * CREDIT,
      expired: 0,
    });
    expect(org.grants).toEqual([expect.objectContaining({ id: grantId, kind: "purchase", remaining: 18 * CREDIT })]);
    expect(org.members.map((m) => m.accountId).sort()).toEqual([...ids].sort());
    for (const m of org.members)
      expect(m).toMatchObject({ active: true, spentToday: CREDIT, spentThisMonth: CREDIT, leased: 0 });
    expect(org.topSpenders.map((t) => t.spentThisMonth)).toEqual([CREDIT, CREDIT]);

    const unknown = await engineError(engine.orgs.get(uid("sdk-org")));
    expect(unknown).toMatchObject({ status: 404, code: "org_not_found", attempts: 1 });
  });

  it("removing a member is a DELETE with an Idempotency-Key, the same on a retry: the retry replays", async () => {
    const { orgId, ids } = await sdkOrg(10 * CREDIT, 1);
    const [id] = ids;
    // the member spends 1 credit from the pool, and holds a lease of more
    expect((await client().engine.consume(id, { product: "codex", cost: 3 * CREDIT })).allowed).toBe(true);
    // the first answer is lost after the member was removed; a retry with another key would be 404 not_found
    const { fetch, attempts } = faulty([{ kind: "lost" }]);
    const removed = await client({ fetch }).engine.orgs.removeMember(orgId, id);
    expect(removed).toMatchObject({ accountId: id, active: false });
    expect(attempts.map((x) => [x.method, x.url])).toEqual([
      ["DELETE", `${BASE}/v1/orgs/${orgId}/members/${id}`],
      ["DELETE", `${BASE}/v1/orgs/${orgId}/members/${id}`],
    ]);
    expect(attempts[0].key).toMatch(/^sdk:/);
    expect(attempts[1].key).toBe(attempts[0].key);
    expect(removed.lastResponse).toMatchObject({ attempts: 2, replayed: true, idempotencyKey: attempts[0].key });

    const { engine } = client();
    // the same key later replays too; a new key is a new request, and the member is gone
    const again = await engine.orgs.removeMember(orgId, id, { idempotencyKey: attempts[0].key! });
    expect(again.lastResponse.replayed).toBe(true);
    expect(again).toEqual(removed);
    expect(await engineError(engine.orgs.removeMember(orgId, id))).toMatchObject({ status: 404, code: "not_found" });
    // its lease came back: the pool lacks only what the member spent
    await orgStub(orgId).idle();
    const org = await engine.orgs.get(orgId);
    expect(org.members.map((m) => m.accountId)).not.toContain(id);
    expect(org.pool).toMatchObject({ balance: 9 * CREDIT, leased: CREDIT, spent: CREDIT });
    expect((await engine.getAccount(id)).org).toMatchObject({ active: false, lease: 0 });
    // no pool any more: its window used up, the account is denied
    const d = await engine.consume(id, { product: "codex", cost: CREDIT });
    expect(d.allowed).toBe(false);
  });

  it("a request id gives DELETE and PUT of the same member different, stable keys", async () => {
    const { orgId, ids } = await sdkOrg(0, 1);
    const requestId = uid("req");
    const { fetch, attempts } = faulty([{ kind: "network" }]);
    const { engine } = client({ fetch });
    const put = await engine.orgs.putMember(orgId, ids[0], { dailyLimit: CREDIT }, { requestId });
    const del = await engine.orgs.removeMember(orgId, ids[0], { requestId });
    expect(put.lastResponse.idempotencyKey).toMatch(/^sdk:[0-9a-f]{64}$/);
    expect(del.lastResponse.idempotencyKey).toMatch(/^sdk:[0-9a-f]{64}$/);
    expect(del.lastResponse.idempotencyKey).not.toBe(put.lastResponse.idempotencyKey);
    // the network failure was retried with the same derived key
    expect(attempts.map((x) => x.key)).toEqual([
      put.lastResponse.idempotencyKey,
      put.lastResponse.idempotencyKey,
      del.lastResponse.idempotencyKey,
    ]);
    // another client, the same request id: the same key, a replay
    const replay = await client().engine.orgs.removeMember(orgId, ids[0], { requestId });
    expect(replay.lastResponse).toMatchObject({ replayed: true, idempotencyKey: del.lastResponse.idempotencyKey });
  });

  it("admin: a refund to the pool, a resume of a paused pool", async () => {
    // 30 members drawing 45 credits each from the pool pass its anomaly floor (1,000 credits in 10 minutes), each
    // under its own (50 credits)
    const { fetch, attempts } = faulty();
    const { engine } = clockedAt(T0, { fetch });
    const { orgId, ids } = await sdkOrg(2000 * CREDIT, 30, { engine });
    attempts.length = 0;
    const refund = await engine.admin.refundOrg(orgId, { amount: 5 * CREDIT, reason: "sdk goodwill" });
    expect(refund.lastResponse.status).toBe(201);
    expect(refund).toMatchObject({ reason: "sdk goodwill", grant: { remaining: 5 * CREDIT, kind: "purchase" } });
    expect(attempts[0]).toMatchObject({
      method: "POST",
      url: `${BASE}/v1/admin/orgs/${orgId}/refunds`,
      auth: `Bearer ${ADMIN}`,
    });
    expect((await engine.orgs.get(orgId)).pool).toMatchObject({ granted: 2005 * CREDIT, balance: 2005 * CREDIT });
    expect(
      await engineError(engine.admin.refundOrg(orgId, { amount: 101 * CREDIT, reason: "too much" })),
    ).toMatchObject({ status: 409, code: "goodwill_limit_exceeded" });

    const notPaused = await engine.admin.resumeOrg(orgId);
    expect(notPaused).toMatchObject({ resumed: false, org: { orgId, paused: false } });

    const reasons: string[] = [];
    for (const id of ids) {
      const d = await engine.consume(id, { product: "codex", cost: 47 * CREDIT });
      reasons.push(d.allowed ? "allowed" : d.reason);
    }
    expect(reasons).toContain("credits_paused");
    expect((await engine.orgs.get(orgId)).paused).toBe(true);
    const resumed = await engine.admin.resumeOrg(orgId, { headers: { "X-Operator": "sdk-test" } });
    expect(resumed).toMatchObject({ resumed: true, org: { orgId, paused: false } });
    expect(attempts.at(-1)).toMatchObject({ method: "POST", url: `${BASE}/v1/admin/orgs/${orgId}/resume` });
    const last = ids[reasons.indexOf("credits_paused")];
    expect((await engine.consume(last, { product: "codex", cost: CREDIT })).allowed).toBe(true);

    expect(await engineError(engine.admin.resumeOrg(uid("sdk-org")))).toMatchObject({
      status: 404,
      code: "org_not_found",
    });
  });

  it("the pool's ledger: one page, or every page following nextCursor", async () => {
    const { engine } = clockedAt(T0);
    const { orgId, ids } = await sdkOrg(0, 1, { engine });
    for (let i = 1; i <= 3; i++) await engine.orgs.addCredits(orgId, { amount: i * CREDIT, kind: "purchase" });
    await engine.admin.refundOrg(orgId, { amount: CREDIT / 2, reason: "sdk ledger" });
    const d = await engine.consume(ids[0], { product: "codex", cost: 3 * CREDIT });
    expect(d.allowed).toBe(true);
    await orgStub(orgId).closeDue(T0 + HOUR);
    await drainOrg(orgId);

    const all = await engine.orgs.ledger(orgId, { limit: 500 });
    expect(all.nextCursor).toBeNull();
    expect(all.entries.filter((e) => e.kind === "grant").map((e) => e.amount)).toEqual([
      CREDIT,
      2 * CREDIT,
      3 * CREDIT,
    ]);
    expect(all.entries.filter((e) => e.kind === "refund").map((e) => e.amount)).toEqual([CREDIT / 2]);
    // the member's lease and its return, with its id; the pool kept what the member spent
    const leased = all.entries.filter((e) => e.kind === "lease");
    const returned = all.entries.filter((e) => e.kind === "lease_return");
    expect(leased.length).toBeGreaterThan(0);
    expect(returned.length).toBeGreaterThan(0);
    expect([...leased, ...returned].every((e) => e.memberId === ids[0])).toBe(true);
    const sum = (es: OrgLedgerEntry[]) => es.reduce((s, e) => s + e.amount, 0);
    expect(sum(leased) - sum(returned)).toBe(CREDIT);

    // pages of 2, the last one possibly short
    const n = all.entries.length;
    const pages: number[] = [];
    for await (const page of engine.orgs.ledgerPages(orgId, { limit: 2 })) pages.push(page.entries.length);
    expect(pages).toEqual(Array.from({ length: Math.ceil(n / 2) }, (_, i) => Math.min(2, n - 2 * i)));
    const entries: OrgLedgerEntry[] = [];
    for await (const e of engine.orgs.ledgerEntries(orgId, { limit: 2 })) entries.push(e);
    expect(entries).toEqual(all.entries);
    const first = await engine.orgs.ledger(orgId, { limit: 3 });
    const rest: OrgLedgerEntry[] = [];
    for await (const e of engine.orgs.ledgerEntries(orgId, { limit: 1, cursor: first.nextCursor! })) rest.push(e);
    expect(rest).toEqual(all.entries.slice(3));
  });

  it("an organization-panel link", async () => {
    const { orgId } = await sdkOrg(0, 0);
    const { engine } = client();
    const link = await engine.orgs.createPanelLink(orgId);
    expect(link.url).toContain("/org-panel?token=");
    expect(link.token).toBeTruthy();
    expect(Date.parse(link.expiresAt)).toBeGreaterThan(Date.now());
    expect(await engineError(engine.orgs.createPanelLink(uid("sdk-org")))).toMatchObject({
      status: 404,
      code: "org_not_found",
    });
  });
});
