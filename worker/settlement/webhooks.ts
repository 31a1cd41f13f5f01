import type { AccountEvent } from "./messages";
import { base64, fromBase64 } from "../core/encoding";

/**
 * Webhooks follow the Standard Webhooks specification (SPEC §8, https://www.standardwebhooks.com):
 *
 *   webhook-id:        the event id (the same on every retry; receivers de-duplicate by it)
 *   webhook-timestamp: unix seconds of this attempt
 *   webhook-signature: v1,<base64 HMAC-SHA256(key, "<webhook-id>.<webhook-timestamp>.<body>")>
 *
 * The key is the base64-decoded part of `WEBHOOK_SECRET`, which must read `whsec_<base64>` and decode to
 * 24–64 bytes (the spec's bounds). Any other value is a configuration error: nothing is sent, the message
 * is retried (and, if never fixed, dead-lettered). A secret is never used in some other interpretation.
 */

const SECRET_PREFIX = "whsec_";
const MIN_KEY_BYTES = 24;
const MAX_KEY_BYTES = 64;
/** Canonical, padded standard base64 (what the spec's libraries decode). */
const BASE64 = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;
/** The signed content is "<id>.<timestamp>.<body>", so an id must not contain "." (spec); ours are UUIDs. */
const WEBHOOK_ID = /^[A-Za-z0-9_-]{1,256}$/;

const encoder = new TextEncoder();

/** The HMAC key of a `whsec_<base64>` secret. Throws (without echoing the secret) on anything else. */
export function webhookKey(secret: string): Uint8Array<ArrayBuffer> {
  if (!secret.startsWith(SECRET_PREFIX))
    throw new Error("WEBHOOK_SECRET must be whsec_<base64 key> (Standard Webhooks); refusing to send webhooks");
  const encoded = secret.slice(SECRET_PREFIX.length);
  if (!BASE64.test(encoded))
    throw new Error("WEBHOOK_SECRET is not whsec_ followed by padded base64; refusing to send webhooks");
  const key = fromBase64(encoded);
  if (key.length < MIN_KEY_BYTES || key.length > MAX_KEY_BYTES) {
    throw new Error(
      `WEBHOOK_SECRET must decode to ${MIN_KEY_BYTES}–${MAX_KEY_BYTES} bytes, not ${key.length}; refusing to send webhooks`,
    );
  }
  return key;
}

/** `v1,<base64 HMAC-SHA256(key, "<id>.<unixSeconds>.<body>")>`, the `webhook-signature` value. */
export async function signWebhook(secret: string, id: string, unixSeconds: number, body: string): Promise<string> {
  const key = await crypto.subtle.importKey("raw", webhookKey(secret), { name: "HMAC", hash: "SHA-256" }, false, [
    "sign",
  ]);
  const mac = await crypto.subtle.sign("HMAC", key, encoder.encode(`${id}.${unixSeconds}.${body}`));
  return `v1,${base64(mac)}`;
}

/**
 * POSTs one event, signed for this attempt (a retry gets a fresh timestamp and signature, the same id).
 * Throws unless the receiver answers 2xx, so the queue retries it.
 */
export async function deliverWebhook(env: Env, event: AccountEvent): Promise<void> {
  if (!env.WEBHOOK_URL) return;
  if (!env.WEBHOOK_SECRET)
    throw new Error("WEBHOOK_URL is set without WEBHOOK_SECRET; refusing to send unsigned webhooks");
  if (!WEBHOOK_ID.test(event.id)) throw new Error("event id is not usable as a webhook-id");
  const body = JSON.stringify({
    id: event.id,
    type: event.type,
    accountId: event.accountId,
    createdAt: new Date(event.createdAt).toISOString(),
    data: event.data,
  });
  const timestamp = Math.floor(Date.now() / 1000);
  const signature = await signWebhook(env.WEBHOOK_SECRET, event.id, timestamp, body);
  const res = await fetch(env.WEBHOOK_URL, {
    method: "POST",
    headers: {
      "content-type": "application/json",
      "webhook-id": event.id,
      "webhook-timestamp": String(timestamp),
      "webhook-signature": signature,
    },
    body,
  });
  if (!res.ok) throw new Error(`webhook receiver answered ${res.status}`);
}
