/**
 * Auth on every route (SPEC §8): no token or a wrong token → 401, the other role's token → 403, all in the one
 * error shape; tokens never echoed; refused calls change nothing. Also the test clock header (SPEC §2).
 */
import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import { createApp } from "../worker/app";
import { account, addCredits, ADMIN, call, consume, CREDIT, HOUR, SERVICE, T0, uid } from "./helpers";

const C = CREDIT;
const iso = (ms: number) => new Date(ms).toISOString();

interface Route {
  role: "service" | "admin";
  method: "GET" | "POST" | "PUT";
  path: (id: string) => string;
  body?: unknown;
}

/** Every bearer-authenticated route: worker/routes/{public,accounts,holds,ledger,panel,admin}.ts. */
const ROUTES: Route[] = [
  { role: "service", method: "GET", path: () => "/v1/catalog" },
  { role: "service", method: "GET", path: (id) => `/v1/accounts/${id}` },
  { role: "service", method: "POST", path: (id) => `/v1/accounts/${id}/consume`, body: { product: "codex", cost: C } },
  {
    role: "service",
    method: "POST",
    path: (id) => `/v1/accounts/${id}/credits`,
    body: { kind: "purchase", amount: C },
  },
  { role: "service", method: "PUT", path: (id) => `/v1/accounts/${id}/plan`, body: { plan: "pro" } },
  {
    role: "service",
    method: "PUT",
    path: (id) => `/v1/accounts/${id}/auto-top-up`,
    body: { enabled: false, threshold: C, amount: C, maxPerMonth: 1 },
  },
  { role: "service", method: "PUT", path: (id) => `/v1/accounts/${id}/spend-cap`, body: { dailyLimit: C } },
  { role: "service", method: "POST", path: (id) => `/v1/accounts/${id}/resets`, body: { product: "codex" } },
  { role: "service", method: "POST", path: (id) => `/v1/accounts/${id}/holds`, body: { product: "codex", cost: C } },
  { role: "service", method: "POST", path: (id) => `/v1/accounts/${id}/holds/h_1/settle`, body: { cost: C } },
  { role: "service", method: "POST", path: (id) => `/v1/accounts/${id}/holds/h_1/release`, body: {} },
  { role: "service", method: "GET", path: (id) => `/v1/accounts/${id}/ledger` },
  { role: "service", method: "POST", path: (id) => `/v1/accounts/${id}/panel-token` },
  {
    role: "admin",
    method: "POST",
    path: () => "/v1/admin/resets",
    body: { reason: "auth test", scope: { plans: ["enterprise"] } },
  },
  { role: "admin", method: "GET", path: () => "/v1/admin/resets" },
  { role: "admin", method: "POST", path: (id) => `/v1/admin/accounts/${id}/resume` },
  {
    role: "admin",
    method: "POST",
    path: (id) => `/v1/admin/accounts/${id}/refunds`,
    body: { amount: C, reason: "auth test" },
  },
  { role: "admin", method: "GET", path: () => "/v1/admin/reconciliation" },
];
const label = (r: Route) => `${r.method} ${r.path("{id}")}`;

const WRONG = "wrong-token-4f2a9c";
/** Authorization headers that must all be refused with 401 for either role. */
const BAD_AUTH: [string, string | undefined][] = [
  ["missing", undefined],
  ["wrong token", `Bearer ${WRONG}`],
  ["empty bearer", "Bearer "],
  ["service token with a suffix", `Bearer ${SERVICE}x`],
  ["admin token truncated", `Bearer ${ADMIN.slice(0, -1)}`],
  ["right secret, wrong scheme", `Basic ${SERVICE}`],
  ["no scheme", SERVICE],
  ["lower-case scheme with wrong token", `bearer ${WRONG}`],
];

/** Every response text this file saw; checked at the end for leaked tokens. */
const seen: string[] = [];

async function send(r: Route, id: string, authorization: string | undefined, now = T0) {
  const headers: Record<string, string> = {};
  if (authorization !== undefined) headers.Authorization = authorization;
  // token: null keeps helpers.call from adding its own Authorization
  const res = await call(r.method, r.path(id), r.body, { token: null, headers, now });
  seen.push(JSON.stringify(res.body), JSON.stringify([...res.headers]));
  return res;
}

function expectError(res: { status: number; body: any; headers: Headers }, status: number, code: string) {
  expect(res.status, JSON.stringify(res.body)).toBe(status);
  expect(res.body).toEqual({ error: { code, message: expect.any(String), requestId: expect.any(String) } });
  expect(res.body.error.message.length).toBeGreaterThan(0);
  expect(res.body.error.requestId).toBe(res.headers.get("X-Request-Id"));
}

/** An account with some state, so a refused call that changed anything would show. */
async function seeded(): Promise<{ id: string; before: unknown }> {
  const id = uid();
  expect((await addCredits(id, { kind: "purchase", amount: 3 * C }, { now: T0 })).status).toBe(201);
  expect((await consume(id, { product: "codex", cost: C / 2 }, { now: T0 })).status).toBe(200);
  return { id, before: (await account(id, T0)).body };
}

async function resetCount(): Promise<number> {
  const r = await call("GET", "/v1/admin/resets", undefined, { token: ADMIN });
  expect(r.status).toBe(200);
  return r.body.resets.length;
}

describe("routes refuse a missing or wrong token with 401", () => {
  it.each(ROUTES.map((r) => [label(r), r] as const))("%s", async (_name, r) => {
    const { id, before } = await seeded();
    const resetsBefore = await resetCount();
    for (const [what, auth] of BAD_AUTH) {
      const res = await send(r, id, auth);
      expect(res.status, `${what}: ${JSON.stringify(res.body)}`).toBe(401);
      expectError(res, 401, "unauthorized");
      expect(JSON.stringify(res.body)).not.toContain(WRONG);
    }
    expect((await account(id, T0)).body).toEqual(before);
    expect(await resetCount()).toBe(resetsBefore);
  });
});

describe("the other role's token gets 403", () => {
  it.each(ROUTES.map((r) => [label(r), r] as const))("%s", async (_name, r) => {
    const { id, before } = await seeded();
    const resetsBefore = await resetCount();
    const other = r.role === "service" ? ADMIN : SERVICE;
    const res = await send(r, id, `Bearer ${other}`);
    expectError(res, 403, "forbidden");
    expect((await account(id, T0)).body).toEqual(before);
    expect(await resetCount()).toBe(resetsBefore);
  });
});

describe("the right token is accepted", () => {
  it("every implemented route answers without 401/403 and never echoes a token", async () => {
    const { id } = await seeded();
    for (const r of ROUTES) {
      if (r.path(id).includes("/holds/h_1/")) continue; // needs a real hold: below
      const res = await send(r, id, `Bearer ${r.role === "service" ? SERVICE : ADMIN}`, T0 + 1000);
      expect([401, 403], `${label(r)}: ${JSON.stringify(res.body)}`).not.toContain(res.status);
      expect(res.status, `${label(r)}: ${JSON.stringify(res.body)}`).toBeLessThan(500);
    }
    for (const action of ["settle", "release"]) {
      const hold = await call(
        "POST",
        `/v1/accounts/${id}/holds`,
        { product: "codex", cost: C / 10 },
        { now: T0 + 2000 },
      );
      expect(hold.status, JSON.stringify(hold.body)).toBe(201);
      seen.push(JSON.stringify(hold.body));
      const body = action === "settle" ? { cost: C / 20 } : {};
      const res = await call("POST", `/v1/accounts/${id}/holds/${hold.body.holdId}/${action}`, body, {
        now: T0 + 3000,
      });
      seen.push(JSON.stringify(res.body), JSON.stringify([...res.headers]));
      expect(res.status, JSON.stringify(res.body)).toBe(200);
    }
  });

  it("public routes need no token", async () => {
    for (const path of ["/health", "/openapi.json", "/docs"]) {
      const res = await call("GET", path, undefined, { token: null });
      seen.push(JSON.stringify(res.body));
      expect(res.status, path).toBe(200);
    }
  });

  it("the panel (signed-link auth, not bearer) refuses a missing, wrong or bearer token with 401", async () => {
    const id = uid();
    const link = await call("POST", `/v1/accounts/${id}/panel-token`, undefined, { now: T0 });
    expect(link.status, JSON.stringify(link.body)).toBe(200);
    seen.push(JSON.stringify(link.body));
    for (const q of [
      "",
      "?token=",
      `?token=${WRONG}`,
      `?token=${encodeURIComponent(SERVICE)}`,
      `?token=${encodeURIComponent(ADMIN)}`,
      `?token=${encodeURIComponent(link.body.token)}x`,
    ]) {
      const res = await call("GET", `/panel${q}`, undefined, { token: null, now: T0 });
      seen.push(String(res.body));
      expect(res.status, `/panel${q}`).toBe(401);
      expect(String(res.body)).not.toContain(WRONG);
    }
    // the service token as a bearer header does not open the panel either
    const bearer = await call("GET", "/panel", undefined, { token: SERVICE, now: T0 });
    seen.push(String(bearer.body));
    expect(bearer.status).toBe(401);
    // the real link works
    const ok = await call("GET", `/panel?token=${encodeURIComponent(link.body.token)}`, undefined, {
      token: null,
      now: T0,
    });
    seen.push(String(ok.body));
    expect(ok.status).toBe(200);
  });

  it("no response seen in this file contains a token", () => {
    expect(seen.length).toBeGreaterThan(ROUTES.length * BAD_AUTH.length);
    for (const text of seen) {
      expect(text).not.toContain(SERVICE);
      expect(text).not.toContain(ADMIN);
    }
  });
});

describe("tokens fail closed when unset", () => {
  const app = createApp();
  const fetchWith = (
    overrides: Record<string, unknown>,
    method: string,
    path: string,
    headers: Record<string, string>,
    body?: unknown,
  ) =>
    app.fetch(
      new Request(`https://engine.test${path}`, {
        method,
        headers: { ...headers, ...(body ? { "Content-Type": "application/json" } : {}) },
        body: body ? JSON.stringify(body) : undefined,
      }),
      { ...env, ...overrides } as Env,
    );

  it("an unset ADMIN_TOKEN refuses admin routes with 401, whatever token is sent", async () => {
    for (const token of [ADMIN, SERVICE, "anything"]) {
      const res = await fetchWith({ ADMIN_TOKEN: "" }, "GET", "/v1/admin/resets", { Authorization: `Bearer ${token}` });
      expect(res.status).toBe(401);
      const body = (await res.json()) as any;
      expect(body.error.code).toBe("unauthorized");
    }
  });

  it("an unset SERVICE_TOKEN refuses service routes with 401", async () => {
    for (const token of [SERVICE, ADMIN]) {
      const res = await fetchWith({ SERVICE_TOKEN: undefined }, "GET", `/v1/accounts/${uid()}`, {
        Authorization: `Bearer ${token}`,
      });
      expect(res.status).toBe(401);
      expect(((await res.json()) as any).error.code).toBe("unauthorized");
    }
  });
});

describe("test clock (X-Test-Now)", () => {
  it("is honoured as epoch ms, inside the account object too", async () => {
    const id = uid();
    const now = T0 + 123_456_789;
    const r = await consume(id, { product: "codex", cost: C / 2 }, { now });
    expect(r.status).toBe(200);
    expect(r.body.account.products.codex.fiveHour.resetsAt).toBe(iso(now + 5 * HOUR));
    const g = await addCredits(id, { kind: "purchase", amount: C }, { now: now + 1 });
    expect(g.body.createdAt).toBe(iso(now + 1));
  });

  it("is honoured as an ISO-8601 time", async () => {
    const id = uid();
    const now = Date.UTC(2027, 2, 3, 4, 5, 6, 7);
    const r = await call(
      "POST",
      `/v1/accounts/${id}/consume`,
      { product: "codex", cost: 1 },
      { headers: { "X-Test-Now": iso(now) } },
    );
    expect(r.status, JSON.stringify(r.body)).toBe(200);
    expect(r.body.account.products.codex.fiveHour.resetsAt).toBe(iso(now + 5 * HOUR));
  });

  it("an unparseable X-Test-Now is 400 invalid_request", async () => {
    const id = uid();
    for (const bad of ["yesterday", "0", "1e3", "2026-13-45T00:00:00Z"]) {
      const r = await call("GET", `/v1/accounts/${id}`, undefined, { headers: { "X-Test-Now": bad } });
      expectError(r, 400, "invalid_request");
    }
  });

  it("a negative epoch is refused, not read as some other date", async () => {
    // "-5" is neither epoch milliseconds (must be positive) nor ISO-8601; V8's lenient Date.parse reads it as 2001-05-01.
    const r = await call("GET", `/v1/accounts/${uid()}`, undefined, { headers: { "X-Test-Now": "-5" } });
    expectError(r, 400, "invalid_request");
  });

  it("is refused with 400 test_clock_disabled when TEST_CLOCK is not enabled", async () => {
    const res = await createApp().fetch(
      new Request(`https://engine.test/v1/accounts/${uid()}`, {
        headers: { Authorization: `Bearer ${SERVICE}`, "X-Test-Now": String(T0) },
      }),
      { ...env, TEST_CLOCK: "disabled" } as Env,
    );
    expect(res.status).toBe(400);
    expect(((await res.json()) as any).error.code).toBe("test_clock_disabled");
  });
});
