import type { AccountEvent } from "./messages";

const encoder = new TextEncoder();
const hex = (buf: ArrayBuffer) => [...new Uint8Array(buf)].map((b) => b.toString(16).padStart(2, "0")).join("");

/**
 * `Webhook-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>`.
 * The timestamp is signed with the body, so a receiver can reject old or replayed deliveries.
 */
export async function signWebhook(secret: string, body: string, unixSeconds: number): Promise<string> {
  const key = await crypto.subtle.importKey("raw", encoder.encode(secret), { name: "HMAC", hash: "SHA-256" }, false, ["sign"]);
  const mac = await crypto.subtle.sign("HMAC", key, encoder.encode(`${unixSeconds}.${body}`));
  return `t=${unixSeconds},v1=${hex(mac)}`;
}

export async function verifyWebhook(secret: string, body: string, header: string, nowSeconds: number, toleranceSeconds = 300): Promise<boolean> {
  const m = /^t=(\d+),v1=([0-9a-f]{64})$/.exec(header);
  if (!m || Math.abs(nowSeconds - Number(m[1])) > toleranceSeconds) return false;
  const expected = await signWebhook(secret, body, Number(m[1]));
  const [a, b] = await Promise.all([expected, header].map((s) => crypto.subtle.digest("SHA-256", encoder.encode(s))));
  return crypto.subtle.timingSafeEqual(a, b);
}

/** POSTs one event. Throws unless the receiver answers 2xx, so the queue retries it. */
export async function deliverWebhook(env: Env, event: AccountEvent): Promise<void> {
  if (!env.WEBHOOK_URL) return;
  if (!env.WEBHOOK_SECRET) throw new Error("WEBHOOK_URL is set without WEBHOOK_SECRET; refusing to send unsigned webhooks");
  const body = JSON.stringify({ id: event.id, type: event.type, accountId: event.accountId, createdAt: new Date(event.createdAt).toISOString(), data: event.data });
  const signature = await signWebhook(env.WEBHOOK_SECRET, body, Math.floor(Date.now() / 1000));
  const res = await fetch(env.WEBHOOK_URL, {
    method: "POST",
    headers: { "Content-Type": "application/json", "Webhook-Id": event.id, "Webhook-Signature": signature },
    body,
  });
  if (!res.ok) throw new Error(`webhook receiver answered ${res.status}`);
}
