/**
 * Panel links: `<payload>.<mac>`, payload = base64url {"s": scope, "id": subject, "exp": epoch seconds}, mac =
 * HMAC-SHA256 with PANEL_SECRET. The scope is signed with the subject, so a link to an account's usage panel
 * (`account`) is not a link to an organization's panel (`org`), and the other way round, even for the same id.
 */
import { base64url as b64url, fromBase64 as fromB64url } from "../core/encoding";

export const PANEL_TOKEN_TTL_SECONDS = 15 * 60;

/** What a panel link opens: one account's usage panel, or one organization's admin panel. */
export type PanelScope = "account" | "org";

const encoder = new TextEncoder();

const hmacKey = (secret: string, use: "sign" | "verify") =>
  crypto.subtle.importKey("raw", encoder.encode(secret), { name: "HMAC", hash: "SHA-256" }, false, [use]);

export async function signPanelToken(
  secret: string,
  scope: PanelScope,
  id: string,
  expiresAtMs: number,
): Promise<string> {
  const claims = { s: scope, id, exp: Math.floor(expiresAtMs / 1000) };
  const payload = b64url(encoder.encode(JSON.stringify(claims)));
  const mac = new Uint8Array(await crypto.subtle.sign("HMAC", await hmacKey(secret, "sign"), encoder.encode(payload)));
  return `${payload}.${b64url(mac)}`;
}

/**
 * The account or organization id a token is for, or null when it is malformed, tampered with, expired at `nowMs`,
 * or signed for another scope than `scope`.
 */
export async function verifyPanelToken(
  secret: string,
  token: string,
  nowMs: number,
  scope: PanelScope,
): Promise<string | null> {
  const m = /^([A-Za-z0-9_-]{1,400})\.([A-Za-z0-9_-]{43})$/.exec(token);
  if (!m) return null;
  try {
    // crypto.subtle.verify compares the MAC in constant time.
    if (!(await crypto.subtle.verify("HMAC", await hmacKey(secret, "verify"), fromB64url(m[2]), encoder.encode(m[1]))))
      return null;
    const claims = JSON.parse(new TextDecoder().decode(fromB64url(m[1]))) as {
      s?: unknown;
      id?: unknown;
      exp?: unknown;
    };
    if (claims.s !== scope || typeof claims.id !== "string" || typeof claims.exp !== "number") return null;
    if (claims.exp * 1000 <= nowMs) return null;
    return claims.id;
  } catch {
    return null;
  }
}
