/** Usage-panel links: `<payload>.<mac>`, payload = base64url {"a": accountId, "exp": epoch seconds}, mac = HMAC-SHA256 with PANEL_SECRET. */
import { base64url as b64url, fromBase64 as fromB64url } from "../core/encoding";

export const PANEL_TOKEN_TTL_SECONDS = 15 * 60;

const encoder = new TextEncoder();

const hmacKey = (secret: string, use: "sign" | "verify") =>
  crypto.subtle.importKey("raw", encoder.encode(secret), { name: "HMAC", hash: "SHA-256" }, false, [use]);

export async function signPanelToken(secret: string, accountId: string, expiresAtMs: number): Promise<string> {
  const payload = b64url(encoder.encode(JSON.stringify({ a: accountId, exp: Math.floor(expiresAtMs / 1000) })));
  const mac = new Uint8Array(await crypto.subtle.sign("HMAC", await hmacKey(secret, "sign"), encoder.encode(payload)));
  return `${payload}.${b64url(mac)}`;
}

/** The account a token is for, or null when it is malformed, tampered with or expired at `nowMs`. */
export async function verifyPanelToken(secret: string, token: string, nowMs: number): Promise<string | null> {
  const m = /^([A-Za-z0-9_-]{1,400})\.([A-Za-z0-9_-]{43})$/.exec(token);
  if (!m) return null;
  try {
    // crypto.subtle.verify compares the MAC in constant time.
    if (!(await crypto.subtle.verify("HMAC", await hmacKey(secret, "verify"), fromB64url(m[2]), encoder.encode(m[1]))))
      return null;
    const claims = JSON.parse(new TextDecoder().decode(fromB64url(m[1]))) as { a?: unknown; exp?: unknown };
    if (typeof claims.a !== "string" || typeof claims.exp !== "number" || claims.exp * 1000 <= nowMs) return null;
    return claims.a;
  } catch {
    return null;
  }
}
