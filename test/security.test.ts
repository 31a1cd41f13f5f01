/**
 * Security (issue 7), beyond what test/auth.test.ts and test/panel.test.ts already cover:
 * - tokens are compared in constant time: every check hashes both sides and compares two 32-byte digests with
 *   crypto.subtle.timingSafeEqual, whatever the length of what was sent, so neither length nor content leaks;
 *   every near miss of the real tokens (each prefix, each one-character change, case, padding) is refused;
 * - tokens never reach the logs (console.* captured during requests, a 500 included) nor any answer, wherever a
 *   caller puts them (header, body, query, path);
 * - admin routes refuse the service token wherever the admin token is smuggled alongside it, and the panel's
 *   signed link opens no API route;
 * - panel links are scoped to one account (no parameter can point them elsewhere) and expire, the form included;
 * - X-Test-Now is refused unless TEST_CLOCK is exactly "enabled", on every route, before anything is changed.
 */
import { env, exports } from "cloudflare:workers";
import { afterEach, describe, expect, it, vi } from "vitest";
import { createApp } from "../worker/app";
import { ADMIN, call, CREDIT, SERVICE, T0, uid } from "./helpers";

const C = CREDIT;
const NOW = T0 + 3_600_000;

afterEach(() => {
  vi.restoreAllMocks();
});

/** A bearer-authenticated request straight to the worker (no helper defaults). */
async function raw(method: string, path: string, headers: Record<string, string>, body?: unknown) {
  const h: Record<string, string> = { "X-Test-Now": String(NOW), ...headers };
  if (body !== undefined && !("Content-Type" in h)) h["Content-Type"] = "application/json";
  if ((method === "POST" || method === "PUT") && !("Idempotency-Key" in h)) h["Idempotency-Key"] = uid("seckey");
  const res = await exports.default.fetch(`https://engine.test${path}`, {
    method,
    headers: h,
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await res.text();
  return { status: res.status, text, headers: res.headers };
}

async function seeded() {
  const id = uid("sec");
  expect(
    (await call("POST", `/v1/accounts/${id}/credits`, { kind: "purchase", amount: 5 * C }, { now: T0 })).status,
  ).toBe(201);
  expect(
    (await call("POST", `/v1/accounts/${id}/consume`, { product: "codex", cost: C / 2 }, { now: T0 })).status,
  ).toBe(200);
  return id;
}
const summary = async (id: string) => (await call("GET", `/v1/accounts/${id}`, undefined, { now: NOW })).body;

// ───────────────────────────── constant-time comparison ─────────────────────────────

describe("token comparison is constant-time", () => {
  it("every check compares two SHA-256 digests with timingSafeEqual, whatever the length sent", async () => {
    const tse = vi.spyOn(crypto.subtle, "timingSafeEqual");
    const id = uid("ct");
    const sent = [
      "x",
      SERVICE.slice(0, 5),
      SERVICE,
      `${SERVICE}-and-much-longer-than-the-real-one`,
      "A".repeat(512),
      ADMIN,
    ];
    for (const token of sent) {
      tse.mockClear();
      const r = await raw("GET", `/v1/accounts/${id}`, { Authorization: `Bearer ${token}` });
      expect(r.status, token).toBe(token === SERVICE ? 200 : token === ADMIN ? 403 : 401);
      // both roles' tokens are checked (so the 403 for the other role costs the same), on equal-length digests
      expect(tse.mock.calls.length, `comparisons for a ${token.length}-char token`).toBeGreaterThanOrEqual(2);
      for (const [a, b] of tse.mock.calls) {
        expect(byteLength(a), "digest, not the raw token").toBe(32);
        expect(byteLength(b)).toBe(32);
      }
    }
  });

  it("no comparison short-cuts on length: a 1-char and a 512-char wrong token both reach timingSafeEqual", async () => {
    const tse = vi.spyOn(crypto.subtle, "timingSafeEqual");
    for (const token of ["z", "z".repeat(512)]) {
      tse.mockClear();
      const r = await raw("GET", "/v1/admin/resets", { Authorization: `Bearer ${token}` });
      expect(r.status).toBe(401);
      expect(tse).toHaveBeenCalled();
    }
  });

  it("every near miss of either token is refused: each prefix, each one-character change, case, padding, doubling", async () => {
    const variants = (t: string) => {
      const out = new Set<string>();
      for (let i = 1; i < t.length; i++) out.add(t.slice(0, i)); // prefixes
      for (let i = 1; i < t.length; i++) out.add(t.slice(i)); // suffixes
      for (let i = 0; i < t.length; i++) {
        const c = t.charCodeAt(i);
        out.add(t.slice(0, i) + String.fromCharCode(c === 0x7e ? 0x21 : c + 1) + t.slice(i + 1)); // one character changed
        out.add(t.slice(0, i) + t.slice(i + 1)); // one character dropped
      }
      out.add(t.toUpperCase());
      out.add(`${t}${t}`);
      out.add(`${t}=`);
      out.add(`${t}%00`);
      out.add(`"${t}"`);
      out.delete(t);
      return [...out];
    };
    const id = await seeded();
    const before = await summary(id);
    const cases: [string, string, string][] = [
      ...variants(SERVICE).map((v): [string, string, string] => ["GET", `/v1/accounts/${id}`, v]),
      ...variants(SERVICE).map((v): [string, string, string] => ["POST", `/v1/accounts/${id}/consume`, v]),
      ...variants(ADMIN).map((v): [string, string, string] => ["POST", `/v1/admin/accounts/${id}/refunds`, v]),
    ];
    for (let i = 0; i < cases.length; i += 40) {
      const results = await Promise.all(
        cases.slice(i, i + 40).map(async ([method, path, token]) => {
          const body = path.endsWith("/consume")
            ? { product: "codex", cost: C }
            : path.endsWith("/refunds")
              ? { amount: C, reason: "ct" }
              : undefined;
          return { token, r: await raw(method, path, { Authorization: `Bearer ${token}` }, body) };
        }),
      );
      for (const { token, r } of results) {
        expect(r.status, `token variant ${JSON.stringify(token)}`).toBe(401);
        expect(JSON.parse(r.text).error.code).toBe("unauthorized");
      }
    }
    expect(await summary(id)).toEqual(before);
  });
});

function byteLength(x: unknown): number {
  if (x instanceof ArrayBuffer) return x.byteLength;
  if (ArrayBuffer.isView(x)) return x.byteLength;
  return -1;
}

// ───────────────────────────── tokens stay out of logs and answers ─────────────────────────────

/** Every console line written while `fn` runs, as text. */
async function captureLogs(fn: () => Promise<void>): Promise<string[]> {
  const lines: string[] = [];
  const record = (...args: unknown[]) => {
    lines.push(
      args
        .map((a) => (typeof a === "string" ? a : a instanceof Error ? `${a.message}\n${a.stack}` : JSON.stringify(a)))
        .join(" "),
    );
  };
  for (const m of ["log", "info", "warn", "error", "debug"] as const) vi.spyOn(console, m).mockImplementation(record);
  await fn();
  vi.restoreAllMocks();
  return lines;
}

const SECRETS = [SERVICE, ADMIN, "test-panel-secret"];
function expectNoSecret(texts: string[], what: string) {
  for (const t of texts)
    for (const s of SECRETS) {
      // the secrets and any 12-character piece of them
      for (let i = 0; i + 12 <= s.length; i += 4)
        expect(t.includes(s.slice(i, i + 12)), `${what} contains part of a secret: ${t.slice(0, 300)}`).toBe(false);
    }
}

describe("tokens never reach the logs or the answers", () => {
  it("decisions, refusals, replays and conflicts log ids and amounts only", async () => {
    const id = await seeded();
    const answers: string[] = [];
    const logs = await captureLogs(async () => {
      const auth = { Authorization: `Bearer ${SERVICE}` };
      const key = uid("k");
      for (const [m, p, b, h] of [
        ["POST", `/v1/accounts/${id}/consume`, { product: "codex", cost: C }, { ...auth, "Idempotency-Key": key }],
        ["POST", `/v1/accounts/${id}/consume`, { product: "codex", cost: C }, { ...auth, "Idempotency-Key": key }], // replay
        ["POST", `/v1/accounts/${id}/consume`, { product: "codex", cost: 2 * C }, { ...auth, "Idempotency-Key": key }], // conflict
        ["POST", `/v1/accounts/${id}/consume`, { product: "codex", cost: 1000 * C }, auth], // denial
        ["POST", `/v1/accounts/${id}/consume`, { product: "codex", cost: -1 }, auth], // invalid
        ["POST", `/v1/accounts/${id}/consume`, { product: "codex", cost: C }, { Authorization: `Bearer ${ADMIN}` }], // other role
        [
          "POST",
          `/v1/admin/accounts/${id}/refunds`,
          { amount: C, reason: "log test" },
          { Authorization: `Bearer ${ADMIN}` },
        ],
        [
          "POST",
          "/v1/admin/resets",
          { reason: "log test", scope: { plans: ["edu"] } },
          { Authorization: `Bearer ${ADMIN}`, "X-Operator": "ops@example" },
        ],
        ["GET", "/v1/admin/reconciliation?limit=5", undefined, { Authorization: `Bearer ${ADMIN}` }],
        ["POST", `/v1/accounts/${id}/panel-token`, undefined, auth],
      ] as [string, string, unknown, Record<string, string>][]) {
        const r = await raw(m, p, h, b);
        expect(r.status, `${m} ${p}: ${r.text}`).toBeLessThan(500);
        answers.push(r.text, JSON.stringify([...r.headers]));
      }
    });
    expect(
      logs.some((l) => l.includes('"event":"decision"')),
      "the decision log line was captured",
    ).toBe(true);
    expectNoSecret(logs, "a log line");
    // the panel link is a credential too, but it is the answer to that request: everything else must not carry secrets
    expectNoSecret(answers, "an answer");
  });

  it("a token sent in any header, the query or the path is never echoed or logged", async () => {
    const id = await seeded();
    const answers: string[] = [];
    const logs = await captureLogs(async () => {
      for (const token of [SERVICE, ADMIN]) {
        const probes: [string, string, unknown, Record<string, string>][] = [
          ["POST", `/v1/accounts/${id}/consume`, { product: "codex", cost: -1 }, {}],
          ["POST", `/v1/accounts/${id}/consume`, { product: "codex", cost: 1000 * C }, {}],
          ["GET", `/v1/accounts/${id}/ledger?cursor=${token}&limit=${token}`, undefined, {}],
          ["GET", `/v1/admin/reconciliation?accountId=${token}%2F`, undefined, { Authorization: `Bearer ${ADMIN}` }],
          ["GET", `/v1/accounts/${id}`, undefined, { "X-Test-Now": token }],
          ["POST", `/v1/accounts/${id}/consume`, { product: "codex", cost: C }, { "Idempotency-Key": `${token}\t!` }],
          ["POST", `/v1/accounts/${id}/consume`, { product: "codex", cost: C }, { "Content-Type": `text/${token}` }],
          ["GET", `/v1/accounts/${id}%20${token}`, undefined, {}],
          ["GET", `/v1/nowhere/${token}`, undefined, {}],
          ["DELETE", `/v1/accounts/${id}`, undefined, {}],
          ["GET", `/panel?token=${token}`, undefined, {}],
          ["GET", `/panel?notice=${token}`, undefined, {}],
          ["GET", `/v1/accounts/${id}`, undefined, { Authorization: `Bearer ${token}x` }],
          ["GET", "/v1/admin/resets", undefined, { Authorization: `Bearer ${SERVICE}` }],
        ];
        for (const [m, p, b, h] of probes) {
          const r = await raw(
            m,
            p,
            {
              Authorization: `Bearer ${SERVICE}`,
              Cookie: `session=${token}`,
              "X-Api-Key": token,
              Referer: `https://x.test/?t=${token}`,
              ...h,
            },
            b,
          );
          expect(r.status, `${m} ${p}: ${r.text}`).toBeGreaterThanOrEqual(400);
          expect(r.status, `${m} ${p}: ${r.text}`).toBeLessThan(500);
          answers.push(r.text, JSON.stringify([...r.headers]));
        }
      }
    });
    expectNoSecret(answers, "an answer");
    expectNoSecret(logs, "a log line");
  });

  it("a token sent inside a JSON body is never logged, and an answer reflects at most what that body carried", async () => {
    const id = await seeded();
    const reflected: string[] = [];
    const logs = await captureLogs(async () => {
      for (const [token, other] of [
        [SERVICE, ADMIN],
        [ADMIN, SERVICE],
      ]) {
        const probes: [string, string, unknown][] = [
          ["POST", `/v1/accounts/${id}/consume`, { product: token, cost: C }],
          ["POST", `/v1/accounts/${id}/consume`, { product: "codex", cost: token }],
          ["POST", `/v1/accounts/${id}/consume`, { product: "codex", usage: { model: token, inputTokens: 1 } }],
          ["POST", `/v1/accounts/${id}/consume`, { product: "codex", usage: { model: "gpt-5-codex", [token]: 1 } }],
          ["POST", `/v1/accounts/${id}/consume`, { product: "codex", cost: C, [token]: true }],
          ["POST", `/v1/accounts/${id}/credits`, { kind: "promo", amount: C, expiresAt: token }],
          ["PUT", `/v1/accounts/${id}/plan`, { plan: token }],
        ];
        for (const [m, p, b] of probes) {
          // authenticated with the service token: the answer must never show the *other* secret, nor the one in the header
          const r = await raw(m, p, { Authorization: `Bearer ${SERVICE}` }, b);
          expect(r.status, `${m} ${p}: ${r.text}`).toBe(400);
          expect(r.text.includes(other) && other !== SERVICE, r.text).toBe(false);
          if (r.text.includes(token))
            reflected.push(JSON.parse(r.text).error.details?.field ?? JSON.parse(r.text).error.message);
        }
      }
    });
    expectNoSecret(logs, "a log line");
    // Reflection of the caller's own input (e.g. "unknown model '<value>'", "Unrecognized key") is visible here; it is
    // the caller's data sent back to the caller, never another secret. Recorded in docs/reliability.md.
    console.log(`body values reflected in error messages: ${JSON.stringify([...new Set(reflected)])}`);
  });

  it("a 500 answers 'internal error' with a request id only, and its log line carries no token", async () => {
    const app = createApp();
    const broken = (what: string) => {
      throw new Error(`injected ${what} failure`);
    };
    const ledgerBindings = (env.LEDGER_SHARDS ?? "DB").split(",").map((s) => s.trim());
    const envs: [string, Env][] = [
      [
        "account binding",
        { ...env, ACCOUNT: { idFromName: () => broken("ACCOUNT"), get: () => broken("ACCOUNT") } } as unknown as Env,
      ],
      // every ledger shard down at once (the first also holds the operator tables)
      [
        "D1",
        {
          ...env,
          ...Object.fromEntries(
            ledgerBindings.map((b) => [
              b,
              { prepare: () => broken("D1"), batch: () => broken("D1"), exec: () => broken("D1") },
            ]),
          ),
        } as unknown as Env,
      ],
      [
        "reset control",
        {
          ...env,
          RESET_CONTROL: { idFromName: () => broken("RESET_CONTROL"), get: () => broken("RESET_CONTROL") },
        } as unknown as Env,
      ],
    ];
    const answers: string[] = [];
    let fivehundreds = 0;
    const logs = await captureLogs(async () => {
      for (const [name, e] of envs) {
        for (const [method, path, token, body] of [
          ["GET", `/v1/accounts/${uid("five")}`, SERVICE, undefined],
          ["POST", `/v1/accounts/${uid("five")}/consume`, SERVICE, { product: "codex", cost: C }],
          ["GET", `/v1/accounts/${uid("five")}/ledger`, SERVICE, undefined],
          ["GET", "/v1/admin/resets", ADMIN, undefined],
          ["POST", "/v1/admin/resets", ADMIN, { reason: "500 test", scope: { plans: ["edu"] } }],
        ] as [string, string, string, unknown][]) {
          const res = await app.fetch(
            new Request(`https://engine.test${path}`, {
              method,
              headers: {
                Authorization: `Bearer ${token}`,
                "Idempotency-Key": uid("k"),
                "X-Test-Now": String(NOW),
                ...(body ? { "Content-Type": "application/json" } : {}),
              },
              body: body ? JSON.stringify(body) : undefined,
            }),
            e,
          );
          const text = await res.text();
          answers.push(text);
          if (res.status !== 500) continue;
          fivehundreds++;
          const parsed = JSON.parse(text);
          expect(parsed, `${name}: ${method} ${path}`).toEqual({
            error: { code: "internal_error", message: "internal error", requestId: res.headers.get("X-Request-Id") },
          });
          expect(text).not.toContain("injected");
        }
      }
    });
    expect(fivehundreds, "the injected faults produced 500s").toBeGreaterThanOrEqual(6);
    const internal = logs.filter((l) => l.includes("internal_error"));
    expect(internal.length, "each 500 is logged").toBeGreaterThanOrEqual(fivehundreds);
    for (const l of internal) expect(l, "the log line names the request").toMatch(/"requestId":"[0-9a-f-]{36}"/);
    expectNoSecret(logs, "a log line");
    expectNoSecret(answers, "an answer");
  });
});

// ───────────────────────────── roles ─────────────────────────────

describe("admin routes refuse the service token", () => {
  it("even with the admin token smuggled in another header, a cookie or the query", async () => {
    const id = await seeded();
    const before = await summary(id);
    const resetsBefore = (await call("GET", "/v1/admin/resets?limit=500")).body.resets.length;
    const smuggle: Record<string, string>[] = [
      { "X-Admin-Token": ADMIN },
      { Cookie: `token=${ADMIN}` },
      { "X-Authorization": `Bearer ${ADMIN}` },
      { "Proxy-Authorization": `Bearer ${ADMIN}` },
      { "X-Operator": ADMIN },
      { "X-Forwarded-User": "admin" },
    ];
    const routes: [string, string, unknown][] = [
      ["POST", "/v1/admin/resets", { reason: "escalation", scope: { plans: ["edu"] } }],
      ["GET", "/v1/admin/resets", undefined],
      ["POST", `/v1/admin/accounts/${id}/resume`, undefined],
      ["POST", `/v1/admin/accounts/${id}/refunds`, { amount: 50 * C, reason: "escalation" }],
      ["GET", "/v1/admin/reconciliation", undefined],
    ];
    for (const [method, path, body] of routes)
      for (const extra of smuggle)
        for (const q of ["", `?token=${ADMIN}`, `?access_token=${ADMIN}`]) {
          const r = await raw(method, `${path}${q}`, { Authorization: `Bearer ${SERVICE}`, ...extra }, body);
          expect(r.status, `${method} ${path}${q} ${JSON.stringify(extra)}: ${r.text}`).toBe(403);
          expect(JSON.parse(r.text).error.code).toBe("forbidden");
        }
    // both tokens in one Authorization header is not a token at all
    for (const both of [
      `Bearer ${SERVICE} ${ADMIN}`,
      `Bearer ${SERVICE},Bearer ${ADMIN}`,
      `Bearer ${ADMIN}${SERVICE}`,
    ]) {
      const r = await raw("GET", "/v1/admin/resets", { Authorization: both });
      expect(r.status, both).toBe(401);
    }
    expect(await summary(id)).toEqual(before);
    expect((await call("GET", "/v1/admin/resets?limit=500")).body.resets.length).toBe(resetsBefore);
  });

  it("a panel link (a signed, account-scoped credential) opens no API route", async () => {
    const id = await seeded();
    const link = await call("POST", `/v1/accounts/${id}/panel-token`, undefined, { now: NOW });
    expect(link.status).toBe(200);
    const before = await summary(id);
    for (const [method, path, body] of [
      ["GET", `/v1/accounts/${id}`, undefined],
      ["POST", `/v1/accounts/${id}/consume`, { product: "codex", cost: C }],
      ["POST", `/v1/accounts/${id}/resets`, { product: "codex" }],
      ["GET", "/v1/admin/resets", undefined],
      ["POST", `/v1/admin/accounts/${id}/refunds`, { amount: C, reason: "x" }],
    ] as [string, string, unknown][]) {
      const r = await raw(method, path, { Authorization: `Bearer ${link.body.token}` }, body);
      expect(r.status, `${method} ${path}`).toBe(401);
    }
    expect(await summary(id)).toEqual(before);
  });
});

// ───────────────────────────── panel links ─────────────────────────────

describe("panel links are scoped to one account and expire", () => {
  async function link(id: string, now: number) {
    const r = await call("POST", `/v1/accounts/${id}/panel-token`, undefined, { now });
    expect(r.status).toBe(200);
    return r.body as { token: string; expiresAt: string };
  }
  const page = async (q: string, now: number) => {
    const res = await exports.default.fetch(`https://engine.test/panel?${q}`, {
      headers: { "X-Test-Now": String(now) },
    });
    return { status: res.status, html: await res.text() };
  };
  const form = async (fields: Record<string, string>, now: number) =>
    exports.default.fetch("https://engine.test/panel/resets", {
      method: "POST",
      body: new URLSearchParams(fields),
      headers: { "Content-Type": "application/x-www-form-urlencoded", "X-Test-Now": String(now) },
      redirect: "manual",
    });

  it("no parameter points a link at another account", async () => {
    const a = await seeded();
    const b = await seeded();
    const { token } = await link(a, NOW);
    for (const extra of [`&accountId=${b}`, `&a=${b}`, `&id=${b}`, `&account=${b}`]) {
      const r = await page(`token=${encodeURIComponent(token)}${extra}`, NOW + 1000);
      expect(r.status).toBe(200);
      expect(r.html).toContain(a);
      expect(r.html).not.toContain(b);
    }
  });

  it("the reset form acts on the link's account only, whatever account the form names", async () => {
    const a = uid("pa");
    const b = uid("pb");
    const later = NOW + 8 * 86_400_000;
    for (const id of [a, b]) {
      expect(
        (await call("POST", `/v1/accounts/${id}/consume`, { product: "codex", cost: C }, { now: NOW })).status,
      ).toBe(200);
      expect(
        (await call("POST", `/v1/accounts/${id}/consume`, { product: "codex", cost: C / 2 }, { now: later })).status,
      ).toBe(200);
    }
    const bBefore = (await call("GET", `/v1/accounts/${b}`, undefined, { now: later })).body;
    expect(bBefore.bankedResets.available).toBe(1);
    const { token } = await link(a, later);
    const res = await form({ token, product: "codex", nonce: "n-scope-1", accountId: b, id: b, a: b }, later);
    expect(res.status).toBe(303);
    expect((await call("GET", `/v1/accounts/${a}`, undefined, { now: later })).body.bankedResets.available).toBe(0);
    expect((await call("GET", `/v1/accounts/${b}`, undefined, { now: later })).body).toEqual(bBefore);
  });

  it("a link works until its expiry and not at or after it, for the page and the form", async () => {
    const a = uid("pe");
    const later = NOW + 8 * 86_400_000;
    expect((await call("POST", `/v1/accounts/${a}/consume`, { product: "codex", cost: C }, { now: NOW })).status).toBe(
      200,
    );
    expect(
      (await call("POST", `/v1/accounts/${a}/consume`, { product: "codex", cost: C / 2 }, { now: later })).status,
    ).toBe(200);
    const { token, expiresAt } = await link(a, later);
    const exp = Date.parse(expiresAt);
    expect(exp - later).toBe(15 * 60_000);
    // expiry is carried in whole seconds
    expect((await page(`token=${encodeURIComponent(token)}`, exp - 1000)).status).toBe(200);
    expect((await page(`token=${encodeURIComponent(token)}`, exp)).status).toBe(401);
    expect((await page(`token=${encodeURIComponent(token)}`, exp + 86_400_000)).status).toBe(401);
    const before = (await call("GET", `/v1/accounts/${a}`, undefined, { now: exp })).body;
    const res = await form({ token, product: "codex", nonce: "n-exp-1" }, exp);
    expect(res.status).toBe(401);
    expect((await call("GET", `/v1/accounts/${a}`, undefined, { now: exp })).body).toEqual(before);
  });

  it("a link signed with another secret (a rotated PANEL_SECRET) or with PANEL_SECRET unset is refused", async () => {
    const a = await seeded();
    const { token } = await link(a, NOW);
    const app = createApp();
    const get = (e: Env) =>
      app.fetch(
        new Request(`https://engine.test/panel?token=${encodeURIComponent(token)}`, {
          headers: { "X-Test-Now": String(NOW) },
        }),
        e,
      );
    expect((await get(env)).status).toBe(200);
    expect((await get({ ...env, PANEL_SECRET: "rotated-secret" } as Env)).status).toBe(401);
    expect((await get({ ...env, PANEL_SECRET: "" } as Env)).status).toBe(401);
    // and no link can be minted without a secret
    const mint = await app.fetch(
      new Request(`https://engine.test/v1/accounts/${a}/panel-token`, {
        method: "POST",
        headers: { Authorization: `Bearer ${SERVICE}`, "Idempotency-Key": uid("k") },
      }),
      { ...env, PANEL_SECRET: "" } as Env,
    );
    expect(mint.status).toBe(403);
  });
});

// ───────────────────────────── the test clock ─────────────────────────────

describe("X-Test-Now is refused unless TEST_CLOCK is exactly 'enabled'", () => {
  const app = createApp();
  const send = (e: Env, method: string, path: string, headers: Record<string, string>, body?: unknown) =>
    app.fetch(
      new Request(`https://engine.test${path}`, {
        method,
        headers: {
          ...headers,
          ...(body !== undefined ? { "Content-Type": "application/json" } : {}),
          ...(method !== "GET" ? { "Idempotency-Key": uid("k") } : {}),
        },
        body: body === undefined ? undefined : JSON.stringify(body),
      }),
      e,
    );

  it("on every route, for any other TEST_CLOCK value, before anything changes", async () => {
    const id = await seeded();
    const before = await summary(id);
    const resetsBefore = (await call("GET", "/v1/admin/resets?limit=500")).body.resets.length;
    const routes: [string, string, string | null, unknown][] = [
      ["GET", `/v1/accounts/${id}`, SERVICE, undefined],
      ["POST", `/v1/accounts/${id}/consume`, SERVICE, { product: "codex", cost: C }],
      ["POST", `/v1/accounts/${id}/credits`, SERVICE, { kind: "purchase", amount: C }],
      ["POST", `/v1/accounts/${id}/holds`, SERVICE, { product: "codex", cost: C }],
      ["PUT", `/v1/accounts/${id}/plan`, SERVICE, { plan: "pro" }],
      ["PUT", `/v1/accounts/${id}/spend-cap`, SERVICE, { dailyLimit: C }],
      ["POST", `/v1/accounts/${id}/resets`, SERVICE, { product: "codex" }],
      ["GET", `/v1/accounts/${id}/ledger`, SERVICE, undefined],
      ["POST", `/v1/accounts/${id}/panel-token`, SERVICE, undefined],
      ["GET", "/v1/catalog", SERVICE, undefined],
      ["POST", "/v1/admin/resets", ADMIN, { reason: "clock", scope: { plans: ["edu"] } }],
      ["POST", `/v1/admin/accounts/${id}/refunds`, ADMIN, { amount: C, reason: "clock" }],
      ["POST", `/v1/admin/accounts/${id}/resume`, ADMIN, undefined],
      ["GET", "/v1/admin/reconciliation", ADMIN, undefined],
      ["GET", "/health", null, undefined],
      ["GET", "/panel?token=x", null, undefined],
    ];
    for (const clock of ["disabled", "Enabled", "ENABLED", "true", "1", "yes", "enabled ", "", undefined]) {
      const e = { ...env, TEST_CLOCK: clock } as Env;
      for (const [method, path, token, body] of routes) {
        const res = await send(
          e,
          method,
          path,
          { ...(token ? { Authorization: `Bearer ${token}` } : {}), "X-Test-Now": String(NOW + 86_400_000) },
          body,
        );
        const text = await res.text();
        expect(res.status, `TEST_CLOCK=${JSON.stringify(clock)} ${method} ${path}: ${text}`).toBe(400);
        const parsed = JSON.parse(text);
        expect(parsed.error.code).toBe("test_clock_disabled");
        expect(parsed.error.requestId).toBe(res.headers.get("X-Request-Id"));
      }
    }
    expect(await summary(id)).toEqual(before);
    expect((await call("GET", "/v1/admin/resets?limit=500")).body.resets.length).toBe(resetsBefore);
  });

  it("without the header, a disabled clock uses real time (and an ISO header is refused too)", async () => {
    const e = { ...env, TEST_CLOCK: "disabled" } as Env;
    const id = uid("clock");
    const started = Date.now();
    const res = await send(
      e,
      "POST",
      `/v1/accounts/${id}/consume`,
      { Authorization: `Bearer ${SERVICE}` },
      { product: "codex", cost: C / 4 },
    );
    expect(res.status).toBe(200);
    const body = (await res.json()) as any;
    const resetsAt = Date.parse(body.remaining.fiveHour.resetsAt);
    expect(resetsAt - 5 * 3_600_000).toBeGreaterThanOrEqual(started - 1000);
    expect(resetsAt - 5 * 3_600_000).toBeLessThanOrEqual(Date.now() + 1000);
    const iso = await send(e, "GET", `/v1/accounts/${id}`, {
      Authorization: `Bearer ${SERVICE}`,
      "X-Test-Now": new Date(T0).toISOString(),
    });
    expect(iso.status).toBe(400);
    expect(((await iso.json()) as any).error.code).toBe("test_clock_disabled");
  });
});
