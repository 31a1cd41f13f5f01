import type { Context, MiddlewareHandler } from "hono";
import type { IdempotencyKey } from "../../durable-objects/idempotency";
import type { CallContext } from "../../durable-objects/types";
import { currentResets } from "../resets";
import { ApiError } from "./errors";

export type AppEnv = {
  Bindings: Env;
  Variables: { requestId: string; now: number; idempotency?: IdempotencyKey };
};
export type AppContext = Context<AppEnv>;

/** A request id on every response, and the request's clock (SPEC §2 test clock). */
export const requestScope: MiddlewareHandler<AppEnv> = async (c, next) => {
  const requestId = crypto.randomUUID();
  c.set("requestId", requestId);
  c.header("X-Request-Id", requestId);
  const testNow = c.req.header("X-Test-Now");
  if (testNow === undefined) c.set("now", Date.now());
  else {
    if (c.env.TEST_CLOCK !== "enabled")
      throw new ApiError("test_clock_disabled", "X-Test-Now is refused unless TEST_CLOCK is enabled");
    const iso = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2}(\.\d{1,3})?)?(Z|[+-]\d{2}:\d{2})$/;
    const ms = /^\d{1,15}$/.test(testNow) ? Number(testNow) : iso.test(testNow) ? Date.parse(testNow) : Number.NaN;
    if (!Number.isFinite(ms) || ms <= 0)
      throw new ApiError("invalid_request", "X-Test-Now must be epoch milliseconds or an ISO-8601 time");
    c.set("now", ms);
  }
  await next();
};

const encoder = new TextEncoder();

const sha256 = (t: string) => crypto.subtle.digest("SHA-256", encoder.encode(t));

/** Digests of the configured tokens (keyed by the token, which the isolate's env holds anyway), computed once per isolate. */
const configuredDigests = new Map<string, Promise<ArrayBuffer>>();
function configuredDigest(token: string): Promise<ArrayBuffer> {
  let d = configuredDigests.get(token);
  if (!d) {
    d = sha256(token);
    configuredDigests.set(token, d);
  }
  return d;
}

/** Equal-length digests compared with timingSafeEqual: neither length nor content leaks through timing. */
async function tokensEqual(given: ArrayBuffer, expected: string): Promise<boolean> {
  return crypto.subtle.timingSafeEqual(given, await configuredDigest(expected));
}

/** Whether `given` is the configured token `expected`: both hashed, the digests compared in constant time. */
export async function tokenMatches(given: string, expected: string): Promise<boolean> {
  return tokensEqual(await sha256(given), expected);
}

/** Bearer auth for one role. Unset tokens refuse everything (fail closed); the other role's token gets 403. */
export function requireToken(role: "service" | "admin"): MiddlewareHandler<AppEnv> {
  return async (c, next) => {
    const expected = role === "service" ? c.env.SERVICE_TOKEN : c.env.ADMIN_TOKEN;
    const other = role === "service" ? c.env.ADMIN_TOKEN : c.env.SERVICE_TOKEN;
    const match = /^Bearer ([\x21-\x7e]{1,512})$/.exec(c.req.header("Authorization") ?? "");
    if (!expected) throw new ApiError("unauthorized", `this route is closed: the ${role} token is not configured`);
    if (!match) throw new ApiError("unauthorized", "a Bearer token is required");
    const given = await sha256(match[1]);
    const [ok, isOther] = await Promise.all([
      tokensEqual(given, expected),
      other ? tokensEqual(given, other) : Promise.resolve(false),
    ]);
    if (ok) return next();
    if (isOther) throw new ApiError("forbidden", `this route needs the ${role} token`);
    throw new ApiError("unauthorized", "the Bearer token is not valid");
  };
}

/** Sorted-key JSON, so that the same payload fingerprints the same whatever its key order or spacing. */
function canonical(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(canonical).join(",")}]`;
  if (value && typeof value === "object")
    return `{${Object.keys(value as object)
      .sort()
      .map((k) => `${JSON.stringify(k)}:${canonical((value as Record<string, unknown>)[k])}`)
      .join(",")}}`;
  return JSON.stringify(value);
}

/**
 * The path as the router sees it, one spelling per route and id: each segment decoded, then encoded canonically,
 * so /v1/accounts/%61b and /v1/accounts/ab are one account (SPEC §4).
 */
function canonicalPath(pathname: string): string {
  return pathname
    .split("/")
    .map((segment) => {
      try {
        return encodeURIComponent(decodeURIComponent(segment));
      } catch {
        throw new ApiError("invalid_request", "the request path is not valid percent-encoded UTF-8");
      }
    })
    .join("/");
}

/** Every mutating call carries an Idempotency-Key; its fingerprint covers method, path and payload. */
export const idempotencyKey: MiddlewareHandler<AppEnv> = async (c, next) => {
  if (c.req.method !== "POST" && c.req.method !== "PUT" && c.req.method !== "DELETE") return next();
  const key = c.req.header("Idempotency-Key");
  if (!key || !/^[\x21-\x7e]{1,255}$/.test(key))
    throw new ApiError("invalid_request", "an Idempotency-Key header of 1 to 255 visible ASCII characters is required");
  const text = await c.req.text();
  // Bodies are JSON: one sent under another media type would otherwise skip validation.
  const type = c.req.header("Content-Type") ?? "";
  if (text !== "" && !/^application\/json\b/i.test(type))
    throw new ApiError("invalid_request", "request bodies must be sent as Content-Type: application/json");
  let payload: string;
  try {
    payload = text === "" ? "" : canonical(JSON.parse(text));
  } catch {
    payload = text;
  }
  const digest = await crypto.subtle.digest(
    "SHA-256",
    encoder.encode(`${c.req.method} ${canonicalPath(new URL(c.req.url).pathname)}\n${payload}`),
  );
  const fingerprint = [...new Uint8Array(digest)].map((b) => b.toString(16).padStart(2, "0")).join("");
  c.set("idempotency", { key, fingerprint });
  await next();
};

/** What a call into an account object carries from this request: its clock, id, key, the known global resets and `?include`. */
export async function callContext(c: AppContext, accountId: string): Promise<CallContext> {
  return {
    accountId,
    now: c.get("now"),
    requestId: c.get("requestId"),
    idempotency: c.get("idempotency"),
    resets: await currentResets(c.env),
    includeAccount: c.req.query("include") === "account",
  };
}
