import { exports } from "cloudflare:workers";

export const SERVICE = "test-service-token";
export const ADMIN = "test-admin-token";
export const CREDIT = 1_000_000;
/** A fixed start for the test clock: Sunday 2026-11-01 00:00 UTC. */
export const T0 = Date.UTC(2026, 10, 1, 0, 0, 0);
export const HOUR = 3_600_000;

let counter = 0;
/** Storage is shared by every test in a file: each test uses its own accounts and keys. */
export const uid = (prefix = "acct") => `${prefix}_${Date.now().toString(36)}_${(counter++).toString(36)}`;

export interface CallOptions {
  token?: string | null;
  key?: string | null;
  now?: number;
  headers?: Record<string, string>;
  raw?: string;
  /** Send a decision (consume, holds) without `?include=account`: its lean default shape. */
  lean?: boolean;
}

/** Decisions answer the full account only with `?include=account`; the suite checks that account after every decision. */
const DECISION_PATH = /\/(consume|holds|settle|release)$/;

export async function call(
  method: string,
  path: string,
  body?: unknown,
  opts: CallOptions = {},
): Promise<{ status: number; body: any; headers: Headers }> {
  const headers: Record<string, string> = { ...(opts.headers ?? {}) };
  const token = opts.token === undefined ? (path.startsWith("/v1/admin") ? ADMIN : SERVICE) : opts.token;
  if (token !== null) headers.Authorization = `Bearer ${token}`;
  if ((method === "POST" || method === "PUT" || method === "DELETE") && opts.key !== null)
    headers["Idempotency-Key"] = opts.key ?? uid("key");
  if (opts.now !== undefined) headers["X-Test-Now"] = String(opts.now);
  let payload: string | undefined = opts.raw;
  if (payload === undefined && body !== undefined) payload = JSON.stringify(body);
  if (payload !== undefined) headers["Content-Type"] = "application/json";
  const url = !opts.lean && DECISION_PATH.test(path) ? `${path}?include=account` : path;
  const res = await exports.default.fetch(`https://engine.test${url}`, { method, headers, body: payload });
  const text = await res.text();
  let parsed: any = text;
  try {
    parsed = JSON.parse(text);
  } catch {
    // not JSON: keep the text
  }
  return { status: res.status, body: parsed, headers: res.headers };
}

export const consume = (id: string, body: unknown, opts?: CallOptions) =>
  call("POST", `/v1/accounts/${id}/consume`, body, opts);
export const account = (id: string, now?: number) => call("GET", `/v1/accounts/${id}`, undefined, { now });
export const addCredits = (id: string, body: unknown, opts?: CallOptions) =>
  call("POST", `/v1/accounts/${id}/credits`, body, opts);
export const setPlan = (id: string, plan: string, opts?: CallOptions) =>
  call("PUT", `/v1/accounts/${id}/plan`, { plan }, opts);

/** A seeded generator of numbers in [0, 1): random workloads and faults that replay from their seed. */
export function mulberry32(seed: number) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
