import { describe, expect, it } from "vitest";
import { call, uid } from "./helpers";

/**
 * The OpenAPI document (issue 17 item 2): what every operation declares, and `docs/openapi.json`, its committed
 * copy, which `npm test` lints with Redocly and the SDK is generated from. Regenerate it with `npm run openapi:write`.
 */

// eslint-disable-next-line @typescript-eslint/no-explicit-any -- a JSON document walked generically
type Json = any;

const getDocument = async (): Promise<Json> => {
  const res = await call("GET", "/openapi.json", undefined, { token: null });
  expect(res.status).toBe(200);
  return res.body;
};

const METHODS = ["get", "put", "post", "delete", "patch"] as const;

interface Operation {
  where: string;
  path: string;
  method: string;
  op: Json;
}

function operationsOf(doc: Json): Operation[] {
  return Object.entries(doc.paths as Record<string, Json>).flatMap(([path, item]) =>
    METHODS.filter((m) => item[m]).map((method) => ({
      where: `${method.toUpperCase()} ${path}`,
      path,
      method,
      op: item[method],
    })),
  );
}

/** Follows a local `$ref` (once or repeatedly) within the document. */
function deref(doc: Json, node: Json): Json {
  let n = node;
  for (let i = 0; n && typeof n.$ref === "string" && i < 10; i++) {
    expect(n.$ref, "only local refs").toMatch(/^#\//);
    n = n.$ref
      .slice(2)
      .split("/")
      .map((s: string) => s.replaceAll("~1", "/").replaceAll("~0", "~"))
      .reduce((at: Json, key: string) => at?.[key], doc);
    expect(n, `unresolved ${node.$ref}`).toBeDefined();
  }
  return n;
}

/** Every schema object in the document (components and inline), with the property name it sits under, if any. */
function schemasOf(doc: Json): { at: string; name?: string; schema: Json }[] {
  const found: { at: string; name?: string; schema: Json }[] = [];
  const visit = (schema: Json, at: string, name?: string) => {
    if (!schema || typeof schema !== "object") return;
    found.push({ at, name, schema });
    for (const [k, sub] of Object.entries((schema.properties ?? {}) as Record<string, Json>))
      visit(sub, `${at}.${k}`, k);
    if (schema.items) visit(schema.items, `${at}[]`, name);
    if (schema.additionalProperties && typeof schema.additionalProperties === "object")
      visit(schema.additionalProperties, `${at}{}`, name);
    for (const key of ["oneOf", "anyOf", "allOf"])
      for (const [i, sub] of ((schema[key] ?? []) as Json[]).entries()) visit(sub, `${at}.${key}[${i}]`, name);
  };
  for (const [name, schema] of Object.entries((doc.components?.schemas ?? {}) as Record<string, Json>))
    visit(schema, `#/components/schemas/${name}`);
  for (const { where, op } of operationsOf(doc)) {
    for (const p of (op.parameters ?? []) as Json[]) visit(p.schema, `${where} parameter ${p.name}`, p.name);
    for (const [type, media] of Object.entries((op.requestBody?.content ?? {}) as Record<string, Json>))
      visit(media.schema, `${where} body ${type}`);
    for (const [status, response] of Object.entries((op.responses ?? {}) as Record<string, Json>))
      for (const [type, media] of Object.entries((deref(doc, response).content ?? {}) as Record<string, Json>))
        visit(media.schema, `${where} ${status} ${type}`);
  }
  return found;
}

const types = (schema: Json): string[] => (Array.isArray(schema.type) ? schema.type : schema.type ? [schema.type] : []);

const isService = (path: string) => path.startsWith("/v1/") && !path.startsWith("/v1/admin/");
const isAdmin = (path: string) => path.startsWith("/v1/admin/");
const isMutating = (o: Operation) =>
  (o.method === "post" || o.method === "put" || o.method === "delete") && o.path.startsWith("/v1/");

describe("the OpenAPI document", () => {
  it("is the committed docs/openapi.json (regenerate with `npm run openapi:write`)", async () => {
    const doc = await getDocument();
    await expect(`${JSON.stringify(doc, null, 2)}\n`).toMatchFileSnapshot("../docs/openapi.json");
  });

  it("gives every operation a unique camelCase operationId, a summary and a description", async () => {
    const doc = await getDocument();
    const ops = operationsOf(doc);
    expect(ops.length).toBeGreaterThanOrEqual(20);
    for (const { where, op } of ops) {
      expect(op.operationId, where).toMatch(/^[a-z][A-Za-z0-9]*$/);
      expect(typeof op.summary === "string" && op.summary.trim().length > 0, `${where} summary`).toBe(true);
      expect(typeof op.description === "string" && op.description.trim().length > 0, `${where} description`).toBe(true);
      expect(op.tags?.length, `${where} tags`).toBeGreaterThan(0);
    }
    const ids = ops.map((o) => o.op.operationId);
    expect(new Set(ids).size).toBe(ids.length);
    expect(ids).toEqual(
      expect.arrayContaining([
        "consume",
        "getAccount",
        "createHold",
        "settleHold",
        "releaseHold",
        "redeemBankedReset",
        "addCredits",
        "setPlan",
        "setAutoTopUp",
        "setSpendCap",
        "getCatalog",
        "getLedger",
        "createPanelLink",
        "createGlobalReset",
        "listGlobalResets",
        "resumeAccount",
        "refundAccount",
        "getReconciliation",
        "health",
        "getPanel",
      ]),
    );
  });

  it("has info, servers and described tags", async () => {
    const doc = await getDocument();
    expect(doc.info.description?.length).toBeGreaterThan(0);
    expect(doc.info.license?.name).toBeTruthy();
    expect(doc.servers?.length).toBeGreaterThan(0);
    for (const s of doc.servers)
      expect(typeof s.url === "string" && typeof s.description === "string", JSON.stringify(s)).toBe(true);
    const tags = new Map((doc.tags as Json[]).map((t) => [t.name, t.description]));
    for (const { where, op } of operationsOf(doc))
      for (const t of op.tags) expect(tags.get(t), `${where}: tag ${t}`).toBeTruthy();
  });

  it("has two bearer schemes, service and admin, each used by its routes; public routes need none", async () => {
    const doc = await getDocument();
    expect(doc.components.securitySchemes).toEqual({
      service: expect.objectContaining({ type: "http", scheme: "bearer" }),
      admin: expect.objectContaining({ type: "http", scheme: "bearer" }),
    });
    for (const { where, path, op } of operationsOf(doc)) {
      const expected = isAdmin(path) ? [{ admin: [] }] : isService(path) ? [{ service: [] }] : [];
      expect(op.security, where).toEqual(expected);
    }
    expect(doc.security).toBeUndefined();
  });

  it("declares every status a route can answer", async () => {
    const doc = await getDocument();
    const expect4xx = (o: Operation, statuses: string[]) => {
      for (const s of statuses) expect(Object.keys(o.op.responses), `${o.where} declares ${s}`).toContain(s);
    };
    for (const o of operationsOf(doc)) {
      expect4xx(o, ["400", "500"]);
      expect(
        Object.keys(o.op.responses).some((s) => /^2\d\d$/.test(s)),
        `${o.where} 2xx`,
      ).toBe(true);
      if (o.path.startsWith("/v1/")) expect4xx(o, ["401", "403", "413"]);
      if (isMutating(o)) expect4xx(o, ["409"]);
      for (const [status, response] of Object.entries(o.op.responses as Record<string, Json>)) {
        if (!/^[45]/.test(status) || status === "429") continue;
        const r = deref(doc, response);
        // JSON errors use the one error shape (the panel's own HTML pages aside)
        if (r.content?.["application/json"])
          expect(
            deref(doc, r.content["application/json"].schema).properties?.error,
            `${o.where} ${status}`,
          ).toBeDefined();
      }
    }
    const byId = new Map(operationsOf(doc).map((o) => [o.op.operationId, o]));
    for (const id of ["consume", "createHold"]) expect4xx(byId.get(id)!, ["429"]);
    for (const id of ["settleHold", "releaseHold", "refundAccount"]) expect4xx(byId.get(id)!, ["404"]);
    // the named conflicts of each route are listed in its 409
    const conflicts: Record<string, string[]> = {
      consume: ["amount_out_of_range"],
      addCredits: ["topup_unknown", "amount_out_of_range"],
      setAutoTopUp: ["auto_top_up_not_allowed"],
      redeemBankedReset: ["no_banked_reset", "nothing_to_reset"],
      settleHold: ["hold_not_active", "amount_out_of_range"],
      releaseHold: ["hold_not_active"],
      refundAccount: ["refund_exceeds_entry", "goodwill_limit_exceeded", "amount_out_of_range"],
    };
    for (const [id, codes] of Object.entries(conflicts))
      for (const code of ["idempotency_conflict", ...codes])
        expect(deref(doc, byId.get(id)!.op.responses["409"]).description, `${id} 409`).toContain(code);
  });

  it("declares the response headers: X-Request-Id, Retry-After, Idempotent-Replayed and the RateLimit fields", async () => {
    const doc = await getDocument();
    const headersOf = (response: Json): Record<string, Json> =>
      Object.fromEntries(
        Object.entries((deref(doc, response).headers ?? {}) as Record<string, Json>).map(([k, v]) => [
          k,
          deref(doc, v),
        ]),
      );
    for (const o of operationsOf(doc)) {
      for (const [status, response] of Object.entries(o.op.responses as Record<string, Json>)) {
        const headers = headersOf(response);
        expect(headers["X-Request-Id"], `${o.where} ${status} X-Request-Id`).toMatchObject({
          required: true,
          schema: { type: "string" },
        });
        if (status === "429")
          expect(headers["Retry-After"], `${o.where} 429 Retry-After`).toMatchObject({
            required: true,
            schema: { type: "integer" },
          });
        // what an Idempotency-Key replays: every answer of the account object, success, denial or named refusal
        if (
          isMutating(o) &&
          (/^2/.test(status) ||
            status === "404" ||
            status === "429" ||
            (status === "409" && o.op.operationId !== "createGlobalReset"))
        )
          expect(headers["Idempotent-Replayed"], `${o.where} ${status} Idempotent-Replayed`).toMatchObject({
            schema: { enum: ["true"] },
          });
        if (!isMutating(o) || /^(400|401|403|413|500)$/.test(status))
          expect(headers["Idempotent-Replayed"], `${o.where} ${status}`).toBeUndefined();
      }
    }
    const byId = new Map(operationsOf(doc).map((o) => [o.op.operationId, o]));
    for (const [id, statuses] of [
      ["consume", ["200", "429"]],
      ["createHold", ["201", "429"]],
    ] as const)
      for (const s of statuses) {
        const headers = headersOf(byId.get(id)!.op.responses[s]);
        expect(headers["RateLimit-Policy"]?.schema?.type, `${id} ${s} RateLimit-Policy`).toBe("string");
        expect(headers.RateLimit?.schema?.type, `${id} ${s} RateLimit`).toBe("string");
      }
  });

  it("constrains Idempotency-Key on every mutating route", async () => {
    const doc = await getDocument();
    const mutating = operationsOf(doc).filter(isMutating);
    expect(mutating.length).toBeGreaterThanOrEqual(13);
    for (const o of mutating) {
      const key = (o.op.parameters as Json[]).map((p) => deref(doc, p)).find((p) => p.name === "Idempotency-Key");
      expect(key, o.where).toMatchObject({
        in: "header",
        required: true,
        schema: { type: "string", minLength: 1, maxLength: 255, pattern: "^[\\x21-\\x7e]+$" },
      });
      const pattern = new RegExp(key.schema.pattern);
      expect(
        ["k", "order-17:retry", "~!"].every((k) => pattern.test(k)) &&
          !["", "a b", "é", "tab\t"].some((k) => pattern.test(k)),
      ).toBe(true);
    }
  });

  it("types every number as an integer and every timestamp as date-time", async () => {
    const doc = await getDocument();
    const all = schemasOf(doc);
    const numbers = all.filter(({ schema }) => types(schema).includes("number"));
    expect(numbers.map((s) => s.at)).toEqual([]);
    const AMOUNTS = [
      "amount",
      "cost",
      "charged",
      "released",
      "writtenOff",
      "limit",
      "used",
      "remaining",
      "balance",
      "credits",
      "threshold",
      "dailyLimit",
      "spentToday",
      "expected",
      "actual",
      "retryAfterSeconds",
    ];
    // typed leaves only: a union's or nullable's branches are visited on their own, and `null` is not an amount
    const amounts = all.filter(
      ({ name, schema }) => name && AMOUNTS.includes(name) && types(schema).some((t) => t !== "null" && t !== "object"),
    );
    for (const { at, schema } of amounts) expect(types(schema), at).toContain("integer");
    // the response amounts are there to be checked (not a vacuous pass)
    for (const name of [
      "cost",
      "charged",
      "released",
      "writtenOff",
      "limit",
      "used",
      "balance",
      "spentToday",
      "expected",
    ])
      expect(
        amounts.some((a) => a.name === name),
        `an integer ${name}`,
      ).toBe(true);
    const times = all.filter(({ name, schema }) => name && /(At|From)$/.test(name) && types(schema).includes("string"));
    for (const { at, schema } of times) expect(schema.format, at).toBe("date-time");
    for (const name of ["resetsAt", "expiresAt", "createdAt", "requestedAt", "effectiveAt", "effectiveFrom"])
      expect(
        times.some((t) => t.name === name),
        `a date-time ${name}`,
      ).toBe(true);
  });

  it("makes cost and usage a oneOf of two closed objects in consume, hold and settle", async () => {
    const doc = await getDocument();
    const byId = new Map(operationsOf(doc).map((o) => [o.op.operationId, o]));
    for (const id of ["consume", "createHold", "settleHold"]) {
      const body = deref(doc, byId.get(id)!.op.requestBody.content["application/json"].schema);
      expect(body.oneOf?.length, id).toBe(2);
      const [byCost, byUsage] = (body.oneOf as Json[]).map((s) => deref(doc, s));
      expect(byCost.required, `${id} by cost`).toContain("cost");
      expect(byCost.properties.usage, `${id} by cost`).toBeUndefined();
      expect(byUsage.required, `${id} by usage`).toContain("usage");
      expect(byUsage.properties.cost, `${id} by usage`).toBeUndefined();
      for (const option of [byCost, byUsage]) expect(option.additionalProperties, id).toBe(false);
      expect(types(deref(doc, byCost.properties.cost))).toEqual(["integer"]);
    }
  });

  it("still answers 400 for both or neither of cost and usage, saying so", async () => {
    const id = uid();
    const usage = { model: "gpt-5-codex", inputTokens: 1 };
    for (const body of [{ product: "codex" }, { product: "codex", cost: 1, usage }]) {
      const res = await call("POST", `/v1/accounts/${id}/consume`, body);
      expect(res.status, JSON.stringify(res.body)).toBe(400);
      expect(res.body.error).toMatchObject({ code: "invalid_request", message: "give exactly one of cost or usage" });
    }
    // a body that picked one option is told what is wrong with it
    const bad = await call("POST", `/v1/accounts/${id}/holds`, { product: "nope", cost: 1 });
    expect(bad.status).toBe(400);
    expect(bad.body.error.message).toMatch(/^product: /);
    const settle = await call("POST", `/v1/accounts/${id}/holds/h1/settle`, {
      usage: { model: "gpt-5-codex", inputTokens: -1 },
    });
    expect(settle.status).toBe(400);
    expect(settle.body.error.message).toMatch(/usage\.inputTokens/);
  });
});
