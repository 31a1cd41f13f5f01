/**
 * The account object's compact storage text (durable-objects/account/compact.ts): exact for any JSON value (the same
 * JSON, keys in the same order, after a round trip), and small for the answers and journal entries it stores most.
 */
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { pack, unpack } from "../../durable-objects/account/compact";

function same(v: unknown): void {
  expect(JSON.stringify(unpack(pack(v)))).toBe(JSON.stringify(v));
}

/** Strings the codec treats specially, and near misses. */
const tricky = fc.oneof(
  fc.string(),
  fc.uuid(),
  fc.uuid().map((u) => u.toUpperCase()),
  fc.date({ noInvalidDate: true }).map((d) => d.toISOString()),
  fc.constantFrom("~", "~~", "~u", "~d", "~x1", "~uAAAA", "2026-11-01T00:00:00Z", "2026-13-01T00:00:00.000Z", ""),
  fc.string().map((s) => `~${s}`),
);
/** Keys of the known shapes, so objects often fit one (or almost). */
const keys = fc.oneof(
  fc.constantFrom("kind", "body", "refusal", "decisionId", "allowed", "cost", "sources", "remaining", "layer"),
  fc.constantFrom("grantId", "amount", "resetsAt", "product", "fiveHour", "weekly", "credits", "account", "type"),
  fc.constantFrom("data", "idempotencyKey", "note", "0", "1", "__proto__", "toJSON", "limit", "used"),
  fc.string(),
);
const value = fc.letrec((tie) => ({
  leaf: fc.oneof(tricky, fc.integer(), fc.double(), fc.boolean(), fc.constant(null)),
  node: fc.oneof(
    { depthSize: "small", withCrossShrink: true },
    tie("leaf"),
    fc.array(tie("node"), { maxLength: 5 }),
    fc.dictionary(keys, tie("node"), { maxKeys: 6 }),
    fc.array(fc.integer(), { maxLength: 3 }),
  ),
})).node;

describe("compact storage text", () => {
  it("round-trips any JSON value exactly, key order included", () => {
    fc.assert(fc.property(value, same), { numRuns: 3000 });
    fc.assert(fc.property(fc.jsonValue(), same), { numRuns: 2000 });
  });

  it("is what JSON makes of a value: undefined dropped, toJSON applied, non-finite numbers null", () => {
    same({ a: undefined, b: [undefined, Number.NaN, -0, Number.POSITIVE_INFINITY], c: new Date(0), kind: "ok" });
    same({ remaining: 1, resetsAt: undefined, body: { kind: "x" } });
  });

  it("keeps a lean consume answer and a window charge's journal entry small", () => {
    const answer = {
      kind: "ok",
      body: {
        decisionId: "0193b5e2-7c1a-7000-8000-0123456789ab",
        allowed: true,
        cost: 1_000_000,
        sources: [{ layer: "window", amount: 1_000_000 }],
        remaining: {
          product: "codex",
          fiveHour: { remaining: 1_000_000, resetsAt: "2026-11-01T05:00:00.000Z" },
          weekly: { remaining: 9_000_000, resetsAt: "2026-11-08T00:00:00.000Z" },
          credits: 0,
        },
      },
    };
    same(answer);
    expect(pack(answer).length).toBeLessThan(160);
    expect(JSON.stringify(answer).length).toBeGreaterThan(300);
    const entry = {
      idempotencyKey: "0193b5e2-7c1a-7000-8000-0123456789ab",
      kind: "charge",
      amount: 1_000_000,
      layer: "window",
      product: "codex",
      grantId: undefined,
      decisionId: "0193b5e2-7c1a-7000-8000-0123456789ac",
    };
    same(entry);
    expect(pack(entry).length).toBeLessThan(100);
  });
});
