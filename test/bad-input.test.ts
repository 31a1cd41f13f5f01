/**
 * Bad input (SPEC §2, §3, §8): every malformed request is 400 invalid_request (or 413 payload_too_large) in the
 * one error shape, and changes nothing: GET account is identical before and after.
 */
import { exports } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import { account, addCredits, call, consume, CREDIT, SERVICE, T0, uid } from "./helpers";

const C = CREDIT;
const NOW = T0 + 60_000;

function expectError(res: { status: number; body: any; headers: Headers }, status: number, code: string) {
  expect(res.status, JSON.stringify(res.body)).toBe(status);
  expect(res.body).toMatchObject({ error: { code, message: expect.any(String), requestId: expect.any(String) } });
  expect(Object.keys(res.body)).toEqual(["error"]);
  expect(res.body.error.requestId).toBe(res.headers.get("X-Request-Id"));
}

/** An account with window usage, two grants and a spend cap, so any stray write would show in GET account. */
async function seeded(): Promise<{ id: string; before: unknown }> {
  const id = uid();
  expect((await addCredits(id, { kind: "purchase", amount: 3 * C }, { now: T0 })).status).toBe(201);
  expect(
    (
      await addCredits(
        id,
        { kind: "promo", amount: C, expiresAt: new Date(T0 + 86_400_000 * 30).toISOString() },
        { now: T0 },
      )
    ).status,
  ).toBe(201);
  expect((await consume(id, { product: "codex", cost: C / 2 }, { now: T0 })).status).toBe(200);
  expect((await call("PUT", `/v1/accounts/${id}/spend-cap`, { dailyLimit: 20 * C }, { now: T0 })).status).toBe(200);
  const before = await account(id, NOW);
  expect(before.status).toBe(200);
  return { id, before: before.body };
}

async function unchanged(id: string, before: unknown) {
  const after = await account(id, NOW);
  expect(after.body).toEqual(before);
}

type Case = [name: string, method: "POST" | "PUT", suffix: string, raw: string];
const j = (v: unknown) => JSON.stringify(v);

/** Invalid bodies, by route. `raw` is the exact request text so numbers JSON cannot carry (1e400) can be sent. */
const CASES: Case[] = [
  // malformed JSON
  ["truncated JSON", "POST", "/consume", `{"product":"codex","cost":`],
  ["not JSON at all", "POST", "/consume", `product=codex&cost=1`],
  ["JSON array instead of object", "POST", "/consume", `[{"product":"codex","cost":1}]`],
  ["JSON null", "POST", "/consume", `null`],
  ["empty body", "POST", "/consume", ``],
  // amounts
  ["negative cost", "POST", "/consume", j({ product: "codex", cost: -1 })],
  ["zero cost", "POST", "/consume", j({ product: "codex", cost: 0 })],
  ["fractional cost", "POST", "/consume", j({ product: "codex", cost: 1.5 })],
  ["cost above MAX_SAFE_INTEGER", "POST", "/consume", j({ product: "codex", cost: Number.MAX_SAFE_INTEGER + 2 })],
  ["cost 1e400", "POST", "/consume", `{"product":"codex","cost":1e400}`],
  ["cost -1e400", "POST", "/consume", `{"product":"codex","cost":-1e400}`],
  ["cost as a string", "POST", "/consume", j({ product: "codex", cost: "1000000" })],
  ["cost as a boolean", "POST", "/consume", j({ product: "codex", cost: true })],
  ["cost null", "POST", "/consume", j({ product: "codex", cost: null })],
  [
    "both cost and usage",
    "POST",
    "/consume",
    j({ product: "codex", cost: 1, usage: { model: "gpt-5-codex", inputTokens: 1 } }),
  ],
  ["neither cost nor usage", "POST", "/consume", j({ product: "codex" })],
  ["unknown field", "POST", "/consume", j({ product: "codex", cost: 1, free: true })],
  // catalog
  ["unknown product", "POST", "/consume", j({ product: "gemini", cost: 1 })],
  ["product in another case", "POST", "/consume", j({ product: "Codex", cost: 1 })],
  ["missing product", "POST", "/consume", j({ cost: 1 })],
  ["unknown model", "POST", "/consume", j({ product: "codex", usage: { model: "gpt-0-nope", inputTokens: 10 } })],
  [
    "model of another product",
    "POST",
    "/consume",
    j({ product: "codex", usage: { model: "sora-2", videoSeconds: 1 } }),
  ],
  ["unknown meter", "POST", "/consume", j({ product: "codex", usage: { model: "gpt-5-codex", audioSeconds: 10 } })],
  [
    "meter the model does not accept",
    "POST",
    "/consume",
    j({ product: "codex", usage: { model: "gpt-5-codex", videoSeconds: 10 } }),
  ],
  ["negative units", "POST", "/consume", j({ product: "codex", usage: { model: "gpt-5-codex", inputTokens: -10 } })],
  ["fractional units", "POST", "/consume", j({ product: "codex", usage: { model: "gpt-5-codex", inputTokens: 10.5 } })],
  [
    "units as a string",
    "POST",
    "/consume",
    j({ product: "codex", usage: { model: "gpt-5-codex", inputTokens: "10" } }),
  ],
  ["units 1e400", "POST", "/consume", `{"product":"codex","usage":{"model":"gpt-5-codex","inputTokens":1e400}}`],
  [
    "units above MAX_SAFE_INTEGER",
    "POST",
    "/consume",
    j({ product: "codex", usage: { model: "gpt-5-codex", inputTokens: 2 ** 53 + 2 } }),
  ],
  [
    "usage priced above the safe range",
    "POST",
    "/consume",
    j({ product: "sora", usage: { model: "sora-2-pro", videoSeconds: Number.MAX_SAFE_INTEGER } }),
  ],
  ["usage with no units", "POST", "/consume", j({ product: "codex", usage: { model: "gpt-5-codex" } })],
  [
    "usage with zero units only",
    "POST",
    "/consume",
    j({ product: "codex", usage: { model: "gpt-5-codex", inputTokens: 0 } }),
  ],
  // holds
  ["hold with a negative cost", "POST", "/holds", j({ product: "codex", cost: -5 })],
  ["hold with a fractional ttl", "POST", "/holds", j({ product: "codex", cost: 5, ttlSeconds: 1.5 })],
  ["hold with a ttl above the max", "POST", "/holds", j({ product: "codex", cost: 5, ttlSeconds: 3601 })],
  ["hold for an unknown product", "POST", "/holds", j({ product: "gemini", cost: 5 })],
  // credits
  ["negative credit amount", "POST", "/credits", j({ kind: "purchase", amount: -C })],
  ["fractional credit amount", "POST", "/credits", j({ kind: "purchase", amount: 0.5 })],
  ["credit amount above MAX_SAFE_INTEGER", "POST", "/credits", j({ kind: "purchase", amount: 2 ** 53 })],
  ["credit amount 1e400", "POST", "/credits", `{"kind":"purchase","amount":1e400}`],
  ["credit amount as a string", "POST", "/credits", j({ kind: "purchase", amount: "1000000" })],
  ["unknown grant kind", "POST", "/credits", j({ kind: "gift", amount: C })],
  ["grant for an unknown product", "POST", "/credits", j({ kind: "purchase", amount: C, products: ["gemini"] })],
  ["grant with an empty product list", "POST", "/credits", j({ kind: "purchase", amount: C, products: [] })],
  ["grant with a non-ISO expiry", "POST", "/credits", j({ kind: "purchase", amount: C, expiresAt: "next year" })],
  [
    "grant expiring in the past",
    "POST",
    "/credits",
    j({ kind: "purchase", amount: C, expiresAt: new Date(T0 - 1000).toISOString() }),
  ],
  ["promo without expiresAt", "POST", "/credits", j({ kind: "promo", amount: C })],
  // plan, spend cap, auto top-up, banked resets
  ["unknown plan", "PUT", "/plan", j({ plan: "platinum" })],
  ["negative daily limit", "PUT", "/spend-cap", j({ dailyLimit: -1 })],
  ["fractional daily limit", "PUT", "/spend-cap", j({ dailyLimit: 2.5 })],
  ["daily limit as a string", "PUT", "/spend-cap", j({ dailyLimit: "5" })],
  ["daily limit 1e400", "PUT", "/spend-cap", `{"dailyLimit":1e400}`],
  ["missing daily limit", "PUT", "/spend-cap", j({})],
  [
    "auto top-up with a negative amount",
    "PUT",
    "/auto-top-up",
    j({ enabled: false, threshold: C, amount: -C, maxPerMonth: 1 }),
  ],
  [
    "auto top-up with a string threshold",
    "PUT",
    "/auto-top-up",
    j({ enabled: false, threshold: "1", amount: C, maxPerMonth: 1 }),
  ],
  ["daily limit above MAX_SAFE_INTEGER", "PUT", "/spend-cap", j({ dailyLimit: 2 ** 53 + 2 })],
  ["banked reset for an unknown product", "POST", "/resets", j({ product: "gemini" })],
  // release takes an optional, empty body
  ["release with malformed JSON", "POST", "/holds/h_1/release", `{"bad`],
  ["release with an unknown field", "POST", "/holds/h_1/release", j({ amount: 5 })],
];

describe("invalid bodies are 400 invalid_request and change nothing", () => {
  it.each(CASES)("%s (%s %s)", async (_name, method, suffix, raw) => {
    const { id, before } = await seeded();
    const res = await call(method, `/v1/accounts/${id}${suffix}`, undefined, { raw, now: NOW });
    expectError(res, 400, "invalid_request");
    await unchanged(id, before);
  });

  it("holds: a settle with a bad cost is refused and the hold stays as it was", async () => {
    const { id } = await seeded();
    const hold = await call("POST", `/v1/accounts/${id}/holds`, { product: "codex", cost: C / 4 }, { now: NOW });
    expect(hold.status, JSON.stringify(hold.body)).toBe(201);
    const before = (await account(id, NOW)).body;
    for (const raw of [j({ cost: -1 }), j({ cost: 0.5 }), `{"cost":1e400}`, j({ cost: "5" }), j({})]) {
      const res = await call("POST", `/v1/accounts/${id}/holds/${hold.body.holdId}/settle`, undefined, {
        raw,
        now: NOW,
      });
      expectError(res, 400, "invalid_request");
    }
    await unchanged(id, before);
  });

  it("admin refunds with a bad amount are refused", async () => {
    const { id, before } = await seeded();
    for (const raw of [
      j({ amount: -C, reason: "x" }),
      j({ amount: 1.5, reason: "x" }),
      `{"amount":1e400,"reason":"x"}`,
      j({ amount: "5", reason: "x" }),
      j({ amount: C }),
    ]) {
      const res = await call("POST", `/v1/admin/accounts/${id}/refunds`, undefined, { raw, now: NOW });
      expectError(res, 400, "invalid_request");
    }
    await unchanged(id, before);
  });
});

describe("account ids must match ^[A-Za-z0-9_.:-]{1,128}$", () => {
  const BAD_IDS: [string, string][] = [
    ["129 characters", "a".repeat(129)],
    ["an encoded slash", "a%2Fb"],
    ["an encoded space", "a%20b"],
    ["a trailing newline", "abc%0A"],
    ["a non-ASCII letter", "caf%C3%A9"],
    ["a plus sign", "a+b"],
    ["an at sign", "user@example"],
  ];

  it.each(BAD_IDS)("%s → 400 on every account route", async (_name, encoded) => {
    const routes: [string, string, unknown][] = [
      ["GET", "", undefined],
      ["POST", "/consume", { product: "codex", cost: 1 }],
      ["POST", "/credits", { kind: "purchase", amount: C }],
      ["PUT", "/plan", { plan: "pro" }],
      ["POST", "/holds", { product: "codex", cost: 1 }],
      ["GET", "/ledger", undefined],
    ];
    for (const [method, suffix, body] of routes) {
      const res = await call(method, `/v1/accounts/${encoded}${suffix}`, body, { now: NOW });
      expectError(res, 400, "invalid_request");
    }
    const admin = await call("POST", `/v1/admin/accounts/${encoded}/refunds`, { amount: C, reason: "x" }, { now: NOW });
    expectError(admin, 400, "invalid_request");
    const recon = await call("GET", `/v1/admin/reconciliation?accountId=${encoded}`, undefined, { now: NOW });
    expectError(recon, 400, "invalid_request");
  });

  it("the longest and the widest valid ids are accepted", async () => {
    for (const id of ["a".repeat(128), `Az09_.:-${uid()}`]) {
      const res = await consume(id.slice(0, 128), { product: "codex", cost: 1 }, { now: NOW });
      expect(res.status, JSON.stringify(res.body)).toBe(200);
    }
  });
});

describe("size and headers", () => {
  it("a body over 16 KiB is 413 payload_too_large and changes nothing", async () => {
    const { id, before } = await seeded();
    const raw = j({ product: "codex", cost: 1, pad: "x".repeat(17 * 1024) });
    for (const [method, suffix] of [
      ["POST", "/consume"],
      ["POST", "/credits"],
      ["PUT", "/plan"],
    ] as const) {
      const res = await call(method, `/v1/accounts/${id}${suffix}`, undefined, { raw, now: NOW });
      expectError(res, 413, "payload_too_large");
    }
    await unchanged(id, before);
  });

  it("a streamed body over 16 KiB (no Content-Length) is 413 too", async () => {
    const { id, before } = await seeded();
    const bytes = new TextEncoder().encode(j({ product: "codex", cost: 1, pad: "x".repeat(20 * 1024) }));
    const body = new ReadableStream<Uint8Array>({
      start(ctrl) {
        for (let i = 0; i < bytes.length; i += 4096) ctrl.enqueue(bytes.slice(i, i + 4096));
        ctrl.close();
      },
    });
    const res = await exports.default.fetch(`https://engine.test/v1/accounts/${id}/consume`, {
      method: "POST",
      headers: {
        Authorization: `Bearer ${SERVICE}`,
        "Idempotency-Key": uid("key"),
        "Content-Type": "application/json",
        "X-Test-Now": String(NOW),
      },
      body,
      duplex: "half",
    } as RequestInit);
    const parsed = { status: res.status, body: await res.json(), headers: res.headers };
    expectError(parsed, 413, "payload_too_large");
    await unchanged(id, before);
  });

  it("a body just under the limit is not refused for its size", async () => {
    const { id } = await seeded();
    const base = j({ product: "codex", cost: 1 });
    // valid JSON padded with whitespace to exactly 16 KiB
    const raw = `${base.slice(0, -1) + " ".repeat(16 * 1024 - base.length)}}`;
    expect(new TextEncoder().encode(raw).length).toBe(16 * 1024);
    const res = await call("POST", `/v1/accounts/${id}/consume`, undefined, { raw, now: NOW });
    expect(res.status, JSON.stringify(res.body)).toBe(200);
  });

  it("a JSON body without a JSON Content-Type is 400 invalid_request (not 500) and changes nothing", async () => {
    // SPEC §8: errors are 400/401/403/404/409/413/500; malformed input is 400 invalid_request, and a 500 is for faults.
    const { id, before } = await seeded();
    const calls: [string, string, unknown][] = [
      ["POST", "/consume", { product: "codex", cost: C }],
      ["POST", "/credits", { kind: "purchase", amount: C }],
      ["POST", "/holds", { product: "codex", cost: C }],
      ["PUT", "/plan", { plan: "pro" }],
      ["PUT", "/spend-cap", { dailyLimit: C }],
    ];
    for (const contentType of [null, "text/plain", "application/x-www-form-urlencoded"]) {
      for (const [method, suffix, body] of calls) {
        const headers: Record<string, string> = {
          Authorization: `Bearer ${SERVICE}`,
          "Idempotency-Key": uid("key"),
          "X-Test-Now": String(NOW),
        };
        if (contentType) headers["Content-Type"] = contentType;
        const res = await exports.default.fetch(`https://engine.test/v1/accounts/${id}${suffix}`, {
          method,
          headers,
          body: j(body),
        });
        const text = await res.text();
        expect(res.status, `${method} ${suffix} as ${contentType}: ${text}`).toBe(400);
        expectError({ status: res.status, body: JSON.parse(text), headers: res.headers }, 400, "invalid_request");
      }
    }
    await unchanged(id, before);
  });

  it("a POST or PUT without Idempotency-Key is 400 and changes nothing", async () => {
    const { id, before } = await seeded();
    const calls: [string, string, unknown][] = [
      ["POST", "/consume", { product: "codex", cost: C }],
      ["POST", "/credits", { kind: "purchase", amount: C }],
      ["POST", "/holds", { product: "codex", cost: C }],
      ["POST", "/resets", { product: "codex" }],
      ["PUT", "/plan", { plan: "pro" }],
      ["PUT", "/spend-cap", { dailyLimit: null }],
    ];
    for (const [method, suffix, body] of calls) {
      const res = await call(method, `/v1/accounts/${id}${suffix}`, body, { key: null, now: NOW });
      expectError(res, 400, "invalid_request");
    }
    const admin = await call(
      "POST",
      `/v1/admin/accounts/${id}/refunds`,
      { amount: C, reason: "x" },
      { key: null, now: NOW },
    );
    expectError(admin, 400, "invalid_request");
    await unchanged(id, before);
  });

  it("an Idempotency-Key that is too long or not visible ASCII is 400", async () => {
    const { id, before } = await seeded();
    for (const key of ["k".repeat(256), "has space", "tab\there"]) {
      const res = await consume(id, { product: "codex", cost: C }, { key, now: NOW });
      expectError(res, 400, "invalid_request");
    }
    await unchanged(id, before);
  });

  it("a refused request does not burn its Idempotency-Key", async () => {
    const { id } = await seeded();
    const key = uid("key");
    expectError(await consume(id, { product: "codex", cost: -1 }, { key, now: NOW }), 400, "invalid_request");
    const ok = await consume(id, { product: "codex", cost: C / 4 }, { key, now: NOW });
    expect(ok.status, JSON.stringify(ok.body)).toBe(200);
    expect(ok.headers.get("Idempotent-Replayed")).toBeNull();
  });
});

describe("prototype-named keys are never meters or models (SPEC §8)", () => {
  // Raw text, so JSON.parse makes "__proto__" an own key, as any client's JSON would.
  const usageWith = (key: string, value: string) =>
    `{"model":"gpt-5-codex","outputTokens":1,${JSON.stringify(key)}:${value}}`;
  const PROTO_KEYS: [string, string][] = [
    ["__proto__", "7"],
    ["__proto__", `{"inputTokens":5}`],
    ["constructor", "7"],
    ["prototype", "7"],
  ];

  it.each(PROTO_KEYS)(
    "consume with an own usage.%s key (%s) is 400, charges nothing and does not use up its key",
    async (key, value) => {
      const { id, before } = await seeded();
      const idemKey = uid("key");
      const raw = `{"product":"codex","usage":${usageWith(key, value)}}`;
      expectError(
        await call("POST", `/v1/accounts/${id}/consume`, undefined, { raw, key: idemKey, now: NOW }),
        400,
        "invalid_request",
      );
      await unchanged(id, before);
      const ok = await consume(
        id,
        { product: "codex", usage: { model: "gpt-5-codex", outputTokens: 1 } },
        { key: idemKey, now: NOW },
      );
      expect(ok.status, JSON.stringify(ok.body)).toBe(200);
      expect(ok.headers.get("Idempotent-Replayed")).toBeNull();
    },
  );

  it.each(PROTO_KEYS)("holds and settle refuse an own %s key (%s) and change nothing", async (key, value) => {
    const { id } = await seeded();
    const hold = await call("POST", `/v1/accounts/${id}/holds`, { product: "codex", cost: C / 4 }, { now: NOW });
    expect(hold.status, JSON.stringify(hold.body)).toBe(201);
    const before = (await account(id, NOW)).body;
    const usage = usageWith(key, value);
    expectError(
      await call("POST", `/v1/accounts/${id}/holds`, undefined, {
        raw: `{"product":"codex","usage":${usage}}`,
        now: NOW,
      }),
      400,
      "invalid_request",
    );
    expectError(
      await call("POST", `/v1/accounts/${id}/holds/${hold.body.holdId}/settle`, undefined, {
        raw: `{"usage":${usage}}`,
        now: NOW,
      }),
      400,
      "invalid_request",
    );
    await unchanged(id, before);
  });

  it.each(["constructor", "__proto__", "toString", "hasOwnProperty", "valueOf"])(
    "model '%s' is 400 unknown model on consume, holds and settle",
    async (model) => {
      const { id } = await seeded();
      const hold = await call("POST", `/v1/accounts/${id}/holds`, { product: "codex", cost: C / 4 }, { now: NOW });
      expect(hold.status, JSON.stringify(hold.body)).toBe(201);
      const before = (await account(id, NOW)).body;
      const usage = { model, inputTokens: 1 };
      for (const [suffix, body] of [
        ["/consume", { product: "codex", usage }],
        ["/holds", { product: "codex", usage }],
        [`/holds/${hold.body.holdId}/settle`, { usage }],
      ] as const) {
        const res = await call("POST", `/v1/accounts/${id}${suffix}`, body, { now: NOW });
        expectError(res, 400, "invalid_request");
        expect(res.body.error.details, `${suffix}: ${res.body.error.message}`).toMatchObject({ field: "usage.model" });
      }
      await unchanged(id, before);
    },
  );
});

describe("percent-encoded ids are the same account for idempotency (SPEC §4)", () => {
  /** The id with its first character percent-encoded: /acct_… → /%61cct_… */
  const encFirst = (id: string) => `%${id.charCodeAt(0).toString(16).toUpperCase()}${id.slice(1)}`;
  /** Every character percent-encoded, in lower- or upper-case hex. */
  const encAll = (id: string, upper: boolean) =>
    [...id].map((ch) => `%${ch.charCodeAt(0).toString(16)[upper ? "toUpperCase" : "toLowerCase"]()}`).join("");
  const spellings = (id: string) => [encFirst(id), encAll(id, false), encAll(id, true)];

  /** Sends the same call under each spelling of the path: each must replay the first answer and change nothing. */
  async function expectReplays(
    id: string,
    first: { status: number; body: any },
    again: (path: string) => Promise<{ status: number; body: any; headers: Headers }>,
    paths: string[],
  ) {
    const after = (await account(id, NOW)).body;
    for (const path of paths) {
      const res = await again(path);
      expect(res.status, `${path}: ${JSON.stringify(res.body)}`).toBe(first.status);
      expect(res.body).toEqual(first.body);
      expect(res.headers.get("Idempotent-Replayed"), path).toBe("true");
    }
    await unchanged(id, after);
  }

  it("consume: the same key and body under /accounts/%61… replays and charges once", async () => {
    const id = uid("adv");
    const key = uid("key");
    const body = { product: "codex", cost: C / 4 };
    const first = await consume(id, body, { key, now: NOW });
    expect(first.status, JSON.stringify(first.body)).toBe(200);
    await expectReplays(id, first, (p) => consume(p, body, { key, now: NOW }), spellings(id));
    expect((await account(id, NOW)).body.products.codex.fiveHour.used).toBe(C / 4);
    // a different body under an encoded spelling is still a conflict
    expectError(
      await consume(encFirst(id), { product: "codex", cost: C / 2 }, { key, now: NOW }),
      409,
      "idempotency_conflict",
    );
  });

  it("consume: first under the encoded id, then the plain one, is one account and one charge", async () => {
    const id = uid("adv");
    const key = uid("key");
    const body = { product: "codex", usage: { model: "gpt-5-codex", outputTokens: 1000 } };
    const first = await consume(encAll(id, true), body, { key, now: NOW });
    expect(first.status, JSON.stringify(first.body)).toBe(200);
    await expectReplays(id, first, (p) => consume(p, body, { key, now: NOW }), [id, encFirst(id)]);
    expect((await account(id, NOW)).body.products.codex.fiveHour.used).toBe(first.body.cost);
  });

  it("holds: create, settle and release replay under encoded account and hold ids", async () => {
    const id = uid("adv");
    const createKey = uid("key");
    const holdBody = { product: "codex", cost: C / 4, ttlSeconds: 600 };
    const created = await call("POST", `/v1/accounts/${id}/holds`, holdBody, { key: createKey, now: NOW });
    expect(created.status, JSON.stringify(created.body)).toBe(201);
    await expectReplays(
      id,
      created,
      (p) => call("POST", `/v1/accounts/${p}/holds`, holdBody, { key: createKey, now: NOW }),
      spellings(id),
    );
    expect((await account(id, NOW)).body.holds).toHaveLength(1);

    const holdId: string = created.body.holdId;
    const settleKey = uid("key");
    const settled = await call(
      "POST",
      `/v1/accounts/${id}/holds/${holdId}/settle`,
      { cost: C / 8 },
      { key: settleKey, now: NOW },
    );
    expect(settled.status, JSON.stringify(settled.body)).toBe(200);
    await expectReplays(
      id,
      settled,
      (p) =>
        call(
          "POST",
          `/v1/accounts/${p}/holds/${encAll(holdId, false)}/settle`,
          { cost: C / 8 },
          { key: settleKey, now: NOW },
        ),
      spellings(id),
    );
    expect((await account(id, NOW)).body.products.codex.fiveHour.used).toBe(C / 8);

    const other = await call("POST", `/v1/accounts/${id}/holds`, holdBody, { now: NOW });
    expect(other.status, JSON.stringify(other.body)).toBe(201);
    const releaseKey = uid("key");
    const released = await call("POST", `/v1/accounts/${encFirst(id)}/holds/${other.body.holdId}/release`, undefined, {
      key: releaseKey,
      now: NOW,
    });
    expect(released.status, JSON.stringify(released.body)).toBe(200);
    await expectReplays(
      id,
      released,
      (p) =>
        call("POST", `/v1/accounts/${p}/holds/${encFirst(other.body.holdId)}/release`, undefined, {
          key: releaseKey,
          now: NOW,
        }),
      [id, encAll(id, true)],
    );
  });

  it("admin refunds and resume replay under /v1/admin/accounts/%61…", async () => {
    const id = uid("adv");
    expect((await addCredits(id, { kind: "purchase", amount: 3 * C }, { now: NOW })).status).toBe(201);
    const refundKey = uid("key");
    const refundBody = { amount: C, reason: "encoded id" };
    const refunded = await call("POST", `/v1/admin/accounts/${id}/refunds`, refundBody, { key: refundKey, now: NOW });
    expect(refunded.status, JSON.stringify(refunded.body)).toBe(201);
    await expectReplays(
      id,
      refunded,
      (p) => call("POST", `/v1/admin/accounts/${p}/refunds`, refundBody, { key: refundKey, now: NOW }),
      spellings(id),
    );
    expect((await account(id, NOW)).body.credits.balance).toBe(4 * C);

    const resumeKey = uid("key");
    const resumed = await call("POST", `/v1/admin/accounts/${encFirst(id)}/resume`, undefined, {
      key: resumeKey,
      now: NOW,
    });
    expect(resumed.status, JSON.stringify(resumed.body)).toBe(200);
    await expectReplays(
      id,
      resumed,
      (p) => call("POST", `/v1/admin/accounts/${p}/resume`, undefined, { key: resumeKey, now: NOW }),
      [id, encAll(id, false)],
    );
  });

  it("a path segment that is not valid percent-encoding is 400 invalid_request, not 500", async () => {
    const { id, before } = await seeded();
    const bad = ["%", "%zz", "a%ZZb", "%E0%A4%A", "%ff%fe", "%C0%AE"];
    for (const seg of bad) {
      for (const [path, body] of [
        [`/v1/accounts/${seg}/consume`, { product: "codex", cost: 1 }],
        [`/v1/accounts/${id}/holds/${seg}/settle`, { cost: 1 }],
        [`/v1/admin/accounts/${seg}/refunds`, { amount: C, reason: "x" }],
        [`/v1/admin/accounts/${seg}/resume`, undefined],
      ] as const) {
        expectError(await call("POST", path, body, { now: NOW }), 400, "invalid_request");
      }
    }
    // an encoded id that decodes to an invalid one is 400 too
    expectError(
      await consume(`${encFirst(id)}%20`, { product: "codex", cost: 1 }, { now: NOW }),
      400,
      "invalid_request",
    );
    await unchanged(id, before);
  });
});
