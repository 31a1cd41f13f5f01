/**
 * The operator console's session and CSRF tokens (docs/console.md).
 *
 * - Every key is derived from ADMIN_TOKEN with HKDF-SHA256 (one key per purpose), so rotating the token ends every
 *   session and invalidates every form; the token itself is never stored, sent or logged.
 * - Session cookie value: `<payload>.<mac>`, payload = base64url JSON {sid, exp, op?}, mac = HMAC-SHA256 of the
 *   payload. `exp` (epoch ms, the request clock) is inside the signed value: the cookie's Max-Age is only a hint.
 * - CSRF token of a session: HMAC-SHA256(csrf key, "session:" + sid). The sign-in form, which has no session yet, is
 *   bound the same way to a random value in its own short-lived cookie (`console_login`).
 * Every MAC is checked with crypto.subtle.verify (constant time); the token as the API's bearer tokens are (tokenMatches).
 */
import { base64url as b64url, fromBase64 as fromB64url } from "../core/encoding";

export const SESSION_COOKIE = "console_session";
export const LOGIN_COOKIE = "console_login";
export const SESSION_TTL_MS = 8 * 60 * 60 * 1000;
export const LOGIN_TTL_SECONDS = 30 * 60;
export const COOKIE_PATH = "/console";

export interface Session {
  /** random id, 128 bits, base64url */
  sid: string;
  /** expiry, epoch ms */
  exp: number;
  /** the operator's name given at sign-in, if any (printable ASCII) */
  op?: string;
}

type Purpose = "session" | "csrf";

const encoder = new TextEncoder();
const MAC = /^[A-Za-z0-9_-]{43}$/;

/** Derived keys per token (at most a few: the current token, and one being rotated in). */
const keys = new Map<string, Promise<Record<Purpose, CryptoKey>>>();

function keysFor(adminToken: string): Promise<Record<Purpose, CryptoKey>> {
  let k = keys.get(adminToken);
  if (!k) {
    if (keys.size >= 4) keys.clear();
    k = (async () => {
      const base = await crypto.subtle.importKey("raw", encoder.encode(adminToken), "HKDF", false, ["deriveKey"]);
      const derive = (purpose: Purpose) =>
        crypto.subtle.deriveKey(
          {
            name: "HKDF",
            hash: "SHA-256",
            salt: encoder.encode("usage-engine operator console v1"),
            info: encoder.encode(purpose),
          },
          base,
          { name: "HMAC", hash: "SHA-256", length: 256 },
          false,
          ["sign", "verify"],
        );
      return { session: await derive("session"), csrf: await derive("csrf") };
    })();
    keys.set(adminToken, k);
    k.catch(() => keys.delete(adminToken));
  }
  return k;
}

async function mac(adminToken: string, purpose: Purpose, data: string): Promise<string> {
  const key = (await keysFor(adminToken))[purpose];
  return b64url(new Uint8Array(await crypto.subtle.sign("HMAC", key, encoder.encode(data))));
}

async function macValid(adminToken: string, purpose: Purpose, data: string, given: string): Promise<boolean> {
  if (!MAC.test(given)) return false;
  try {
    return await crypto.subtle.verify(
      "HMAC",
      (await keysFor(adminToken))[purpose],
      fromB64url(given),
      encoder.encode(data),
    );
  } catch {
    return false;
  }
}

export const randomId = (): string => b64url(crypto.getRandomValues(new Uint8Array(16)));

export async function signSession(adminToken: string, session: Session): Promise<string> {
  const payload = b64url(encoder.encode(JSON.stringify(session)));
  return `${payload}.${await mac(adminToken, "session", payload)}`;
}

/** The session a cookie value holds, or null when it is malformed, tampered with, signed under another token or expired at `now`. */
export async function verifySession(
  adminToken: string,
  value: string | undefined,
  now: number,
): Promise<Session | null> {
  const m = /^([A-Za-z0-9_-]{1,600})\.([A-Za-z0-9_-]{43})$/.exec(value ?? "");
  if (!m || !(await macValid(adminToken, "session", m[1], m[2]))) return null;
  try {
    const s = JSON.parse(new TextDecoder().decode(fromB64url(m[1]))) as Partial<Session>;
    if (typeof s.sid !== "string" || typeof s.exp !== "number") return null;
    // Expired, or issued "in the future" of this request's clock by more than a session's length.
    if (s.exp <= now || s.exp > now + SESSION_TTL_MS) return null;
    return { sid: s.sid, exp: s.exp, ...(typeof s.op === "string" ? { op: s.op } : {}) };
  } catch {
    return null;
  }
}

/** The CSRF token of every form of a session. */
export const csrfToken = (adminToken: string, sid: string): Promise<string> =>
  mac(adminToken, "csrf", `session:${sid}`);
export const csrfValid = (adminToken: string, sid: string, given: unknown): Promise<boolean> =>
  typeof given === "string" ? macValid(adminToken, "csrf", `session:${sid}`, given) : Promise.resolve(false);

/** The sign-in form's token, bound to the random value of its `console_login` cookie. */
export const loginCsrfToken = (adminToken: string, loginId: string): Promise<string> =>
  mac(adminToken, "csrf", `login:${loginId}`);
export const loginCsrfValid = (adminToken: string, loginId: string | undefined, given: unknown): Promise<boolean> =>
  typeof given === "string" && loginId && /^[A-Za-z0-9_-]{22}$/.test(loginId)
    ? macValid(adminToken, "csrf", `login:${loginId}`, given)
    : Promise.resolve(false);
