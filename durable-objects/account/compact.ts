/**
 * The compact text the account object stores for what it keeps as JSON (kept answers, journal entries): JSON of the
 * same value with its known object shapes written as arrays, and UUIDs and ISO instants written short. Exact:
 * `unpack(pack(v))` is `JSON.parse(JSON.stringify(v))`, keys in the same order, so a replayed answer serializes to the
 * same bytes as the first one.
 *
 * - An object whose keys, in order, are a subsequence of a known shape is `[shape, mask, ...values]`: `mask` has bit i
 *   set for each of the shape's keys present. Any other object stays an object (its keys as they are).
 * - An array whose first element packs to a number is written `[0, ...elements]`; otherwise as it is. So an array
 *   starting with a number is always a shape (≥ 1) or that escape (0).
 * - A string starting with `~` gets another `~`; a lowercase UUID is `~u` + its 16 bytes in base64url; an ISO instant
 *   that `Date` writes back identically is `~d` + its epoch milliseconds in base 36.
 *
 * SHAPES is a storage format: append to it, never change or remove an entry (kept rows name shapes by position).
 */

const SHAPES: readonly (readonly string[])[] = [
  // 0: the array escape (no shape)
  [],
  // 1: a step's result: { kind, body } or { kind, refusal }
  ["kind", "body", "refusal"],
  // 2: a refusal
  ["code", "message", "details"],
  // 3: a decision's body: consume allowed or denied, hold created or denied, settled, released (answers.ts)
  [
    "decisionId",
    "holdId",
    "allowed",
    "cost",
    "amount",
    "charged",
    "released",
    "writtenOff",
    "reason",
    "retryAfterSeconds",
    "resetsAt",
    "offer",
    "sources",
    "expiresAt",
    "rateCardVersion",
    "remaining",
    "account",
  ],
  // 4: a source of a decision
  ["layer", "grantId", "amount"],
  // 5: `remaining`, and one of its windows
  ["product", "fiveHour", "weekly", "credits"],
  ["remaining", "resetsAt"],
  // 7: a ledger entry less the fields its journal row holds (id, seq, accountId, createdAt); 8: an event's
  [
    "idempotencyKey",
    "kind",
    "amount",
    "layer",
    "product",
    "grantId",
    "decisionId",
    "holdId",
    "rateCardVersion",
    "note",
  ],
  ["type", "data"],
  // 9…: the account summary (`?include=account`, and the answers that carry the account)
  ["accountId", "plan", "products", "credits", "bankedResets", "holds", "paused", "spendCap"],
  ["codex", "sora"],
  ["fiveHour", "weekly"],
  ["limit", "used", "remaining", "resetsAt"],
  ["balance", "grants", "autoTopUp", "flex"],
  ["id", "kind", "priority", "remaining", "expiresAt", "products", "amount", "createdAt", "topUpId"],
  ["enabled", "threshold", "amount", "maxPerMonth", "pending"],
  ["topUpId", "requestedAt"],
  ["available", "max", "items"],
  ["holdId", "product", "amount", "expiresAt"],
  ["dailyLimit", "spentToday"],
  // 20…: the other results
  ["refundId", "grant", "reason", "refundedEntryId", "account"],
  ["resetId", "bankedResets", "account"],
  ["resumed", "account"],
  ["token", "url", "expiresAt"],
  // 24…: organizations (SPEC §9): a ledger entry naming an organization or a member, a pool source, a member's
  // summary, and the account summary with it
  [
    "idempotencyKey",
    "kind",
    "amount",
    "layer",
    "product",
    "grantId",
    "orgId",
    "memberId",
    "decisionId",
    "holdId",
    "rateCardVersion",
    "note",
  ],
  ["layer", "orgId", "grantId", "amount"],
  ["orgId", "active", "lease", "spent", "drawnToday", "drawnThisMonth", "dailyLimit", "monthlyLimit", "poolPaused"],
  ["accountId", "plan", "products", "credits", "bankedResets", "holds", "paused", "spendCap", "org"],
];

/** Shapes by their keys, each key's shapes in order: the first that fits is used. */
const BY_KEY = new Map<string, number[]>();
SHAPES.forEach((keys, shape) => {
  for (const k of keys) BY_KEY.set(k, [...(BY_KEY.get(k) ?? []), shape]);
});

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;
const INSTANT = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/;

/** A lowercase UUID's 16 bytes, or null for any other string. */
export function uuidBytes(s: string): Uint8Array<ArrayBuffer> | null {
  if (!UUID.test(s)) return null;
  const hex = s.replaceAll("-", "");
  const out = new Uint8Array(16);
  for (let i = 0; i < 16; i++) out[i] = Number.parseInt(hex.slice(2 * i, 2 * i + 2), 16);
  return out;
}

function packString(s: string): string {
  if (s.startsWith("~")) return `~${s}`;
  const uuid = uuidBytes(s);
  if (uuid)
    return `~u${btoa(String.fromCharCode(...uuid))
      .replaceAll("+", "-")
      .replaceAll("/", "_")
      .replace(/=+$/, "")}`;
  if (INSTANT.test(s)) {
    const ms = Date.parse(s);
    if (Number.isSafeInteger(ms) && new Date(ms).toISOString() === s) return `~d${ms.toString(36)}`;
  }
  return s;
}

function unpackString(s: string): string {
  if (!s.startsWith("~")) return s;
  const tag = s[1];
  const rest = s.slice(2);
  if (tag === "~") return s.slice(1);
  if (tag === "u") {
    const bin = atob(rest.replaceAll("-", "+").replaceAll("_", "/"));
    let hex = "";
    for (let i = 0; i < bin.length; i++) hex += bin.charCodeAt(i).toString(16).padStart(2, "0");
    return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
  }
  if (tag === "d") return new Date(Number.parseInt(rest, 36)).toISOString();
  throw new Error(`compact: unknown string tag ${JSON.stringify(s.slice(0, 2))}`);
}

/** The first shape whose keys hold `keys` in order, with the mask of those present. */
function shapeOf(keys: string[]): [number, number] | null {
  if (keys.length === 0) return null;
  for (const shape of BY_KEY.get(keys[0]) ?? []) {
    const of = SHAPES[shape];
    let mask = 0;
    let at = 0;
    for (let i = 0; i < of.length && at < keys.length; i++)
      if (of[i] === keys[at]) {
        mask |= 1 << i;
        at++;
      }
    if (at === keys.length) return [shape, mask];
  }
  return null;
}

/** A value as JSON would have it: `undefined` and functions dropped from objects, `toJSON` applied. */
type Packed = string | number | boolean | null | Packed[] | { [k: string]: Packed };

function packValue(v: unknown): Packed | undefined {
  if (v === null || typeof v === "boolean") return v;
  if (typeof v === "number") return Number.isFinite(v) ? v : null;
  if (typeof v === "string") return packString(v);
  if (typeof v !== "object") return undefined;
  const json = (v as { toJSON?: unknown }).toJSON;
  if (typeof json === "function") return packValue(json.call(v));
  if (Array.isArray(v)) {
    const out = v.map((x) => packValue(x) ?? null);
    return typeof out[0] === "number" ? [0, ...out] : out;
  }
  const keys: string[] = [];
  const values: Packed[] = [];
  for (const [k, x] of Object.entries(v)) {
    const p = packValue(x);
    if (p === undefined) continue;
    keys.push(k);
    values.push(p);
  }
  const shape = shapeOf(keys);
  if (shape) return [shape[0], shape[1], ...values];
  return Object.fromEntries(keys.map((k, i) => [k, values[i]]));
}

function unpackValue(p: unknown): unknown {
  if (typeof p === "string") return unpackString(p);
  if (p === null || typeof p !== "object") return p;
  if (Array.isArray(p)) {
    if (typeof p[0] !== "number") return p.map(unpackValue);
    if (p[0] === 0) return p.slice(1).map(unpackValue);
    const of = SHAPES[p[0]];
    const mask = p[1];
    if (!of || typeof mask !== "number") throw new Error(`compact: unknown shape ${p[0]}`);
    const entries: [string, unknown][] = [];
    let at = 2;
    for (let i = 0; i < of.length; i++) if (mask & (1 << i)) entries.push([of[i], unpackValue(p[at++])]);
    if (at !== p.length) throw new Error(`compact: shape ${p[0]} with mask ${mask} has ${p.length - 2} values`);
    return Object.fromEntries(entries);
  }
  return Object.fromEntries(Object.entries(p).map(([k, x]) => [k, unpackValue(x)]));
}

/** The compact text of a JSON value. */
export const pack = (value: unknown): string => JSON.stringify(packValue(value) ?? null);

/** The value `pack` was given, as JSON would give it back. */
export const unpack = (text: string): unknown => unpackValue(JSON.parse(text));
