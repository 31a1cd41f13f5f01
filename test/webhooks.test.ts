/**
 * Webhook delivery (SPEC §7 events, §8 "Webhooks follow the Standard Webhooks specification"): each event
 * the settlement consumer settles is POSTed to `WEBHOOK_URL` with `webhook-id`, `webhook-timestamp` and
 * `webhook-signature`, and is checked here the way a receiver would check it, with the reference
 * `standardwebhooks` library. Retries keep the id and re-sign with a fresh timestamp; a delivered event is
 * never POSTed again; a missing or malformed `WEBHOOK_SECRET` sends nothing.
 */
import { createExecutionContext, createMessageBatch, getQueueResult } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { Webhook, WebhookVerificationError } from "standardwebhooks";
import { afterEach, describe, expect, it, vi } from "vitest";
import { settleBatch } from "../worker/settlement/consumer";
import type { AccountEvent, SettlementMessage } from "../worker/settlement/messages";
import { ledgerFor } from "../worker/settlement/shards";
import { headOf, outboxMessages, waitFor } from "./settle-helpers";
import { addCredits, consume, CREDIT, HOUR, T0, uid } from "./helpers";

const C = CREDIT;
const SEC = 1000;

/** A Standard Webhooks secret: `whsec_` + base64 of the key bytes (32 bytes here). */
const secretOf = (seed: number) =>
  `whsec_${btoa(String.fromCharCode(...Array.from({ length: 32 }, (_, i) => (seed * 31 + i * 7) & 0xff)))}`;
const SECRET = secretOf(1);
const OTHER_SECRET = secretOf(2);

/** `secret: null` leaves WEBHOOK_SECRET unset. */
const webhookEnv = (path: "ok" | "fail", secret: string | null = SECRET) =>
  ({ ...env, WEBHOOK_URL: `http://webhook.test/${path}`, WEBHOOK_SECRET: secret ?? undefined }) as Env;

interface Delivery {
  path: string;
  headers: Record<string, string>;
  body: string;
}
/** The receiver's deliveries for one event id (the log is shared by every test file of the run). */
async function deliveriesOf(eventId: string): Promise<Delivery[]> {
  const res = await fetch("http://webhook.test/log");
  expect(res.status).toBe(200);
  const all = (await res.json()) as Delivery[];
  return all.filter((d) => d.headers["webhook-id"] === eventId || d.body.includes(JSON.stringify(eventId)));
}

/**
 * A settlement message carrying one event: a run of the account's journal one entry long. The events made up here
 * are the first entry (seq 1) of an account that has no other; an object's own events keep their seq.
 */
const journalOf = (event: AccountEvent): SettlementMessage => ({
  accountId: event.accountId,
  floor: 0,
  entries: [{ type: "event", event }],
});

let msgSeq = 0;
async function settleEvents(events: AccountEvent[], path: "ok" | "fail", attempts = 1, secret: string | null = SECRET) {
  const messages = events.map((event) => ({
    id: `msg-${event.id}-${msgSeq++}`,
    timestamp: new Date(),
    attempts,
    body: journalOf(event),
  }));
  const batch = createMessageBatch<SettlementMessage>("settlement", messages);
  const ctx = createExecutionContext();
  await settleBatch(batch, webhookEnv(path, secret));
  return { ids: messages.map((m) => m.id), result: await getQueueResult(batch, ctx) };
}

/** The event's row in its account's ledger shard. */
const eventRow = (event: Pick<AccountEvent, "id" | "accountId">) =>
  ledgerFor(env, event.accountId)
    .prepare("SELECT id, type, webhook_delivered_at FROM events WHERE id = ?")
    .bind(event.id)
    .first<{ id: string; type: string; webhook_delivered_at: number | null }>();

/** What a receiver does: the library verifies and parses, or throws. */
const verify = (secret: string, d: Pick<Delivery, "body" | "headers">) => new Webhook(secret).verify(d.body, d.headers);
const rejects = (secret: string, d: Pick<Delivery, "body" | "headers">) => {
  expect(() => verify(secret, d)).toThrow(WebhookVerificationError);
};

const nowSeconds = () => Math.floor(Date.now() / 1000);

afterEach(() => {
  vi.useRealTimers();
});

describe("webhooks (SPEC §7 events, Standard Webhooks)", () => {
  it("delivers an account's credits_paused event with Standard Webhooks headers that the reference library verifies, and marks it delivered", async () => {
    const id = uid("wh");
    const t = T0 + 6 * HOUR;
    expect((await addCredits(id, { kind: "purchase", amount: 200 * C }, { now: t })).status).toBe(201);
    expect((await consume(id, { product: "codex", cost: 2 * C }, { now: t })).status).toBe(200);
    const p = await consume(id, { product: "codex", cost: 60 * C }, { now: t + SEC });
    expect(p.body.reason).toBe("credits_paused");
    const [event] = (await outboxMessages(id)).flatMap((m) =>
      m.type === "event" && m.event.type === "account.credits_paused" ? [m.event] : [],
    );
    expect(event).toBeDefined();
    // The consumer applies a message only where it continues the account's ledger: let the real queue settle the
    // account's journal up to the event first (it may settle the event too; WEBHOOK_URL is unset there, so it is not
    // delivered).
    const head = await waitFor(
      () => headOf(id),
      (h) => (h?.watermark ?? 0) >= event.seq - 1,
    );
    expect(head?.watermark).toBeGreaterThanOrEqual(event.seq - 1);

    const before = nowSeconds();
    const { ids, result } = await settleEvents([event], "ok");
    expect(result.retryMessages).toEqual([]);
    expect(result.explicitAcks).toEqual(ids);

    const mine = await deliveriesOf(event.id);
    expect(mine).toHaveLength(1);
    const [d] = mine;
    expect(d.path).toBe("/ok");
    expect(d.headers["content-type"]).toMatch(/^application\/json/);
    expect(d.headers["webhook-id"]).toBe(event.id);
    expect(d.headers["webhook-timestamp"]).toMatch(/^\d+$/);
    expect(Number(d.headers["webhook-timestamp"])).toBeGreaterThanOrEqual(before);
    expect(Number(d.headers["webhook-timestamp"])).toBeLessThanOrEqual(nowSeconds());
    // One v1 signature: base64 of a 32-byte HMAC-SHA256.
    expect(d.headers["webhook-signature"]).toMatch(/^v1,[A-Za-z0-9+/]{43}=$/);

    // The receiver's check: the library verifies the delivery and hands back the parsed event.
    const payload = verify(SECRET, d) as Record<string, unknown>;
    expect(payload).toMatchObject({ id: event.id, type: "account.credits_paused", accountId: id, data: event.data });
    expect(Date.parse(payload.createdAt as string)).toBe(t + SEC);
    expect(JSON.parse(d.body)).toEqual(payload);

    // A wrong secret, a tampered body, a tampered id or timestamp, or a missing header: all rejected.
    rejects(OTHER_SECRET, d);
    rejects(SECRET, { ...d, body: d.body.replace(id, `${id}x`) });
    rejects(SECRET, { ...d, headers: { ...d.headers, "webhook-id": `${event.id}x` } });
    rejects(SECRET, {
      ...d,
      headers: { ...d.headers, "webhook-timestamp": String(Number(d.headers["webhook-timestamp"]) - 1) },
    });
    const { "webhook-timestamp": _ts, ...noTimestamp } = d.headers;
    rejects(SECRET, { ...d, headers: noTimestamp });

    const row = await eventRow(event);
    expect(row?.type).toBe("account.credits_paused");
    expect(row?.webhook_delivered_at).not.toBeNull();
  });

  it("retries the message when the receiver answers 500; the retry keeps the webhook-id, is re-signed with a fresh timestamp, and verifies", async () => {
    const event: AccountEvent = {
      id: uid("evt"),
      seq: 1,
      accountId: uid("whfail"),
      type: "credits.low",
      createdAt: T0,
      data: { balance: 1 },
    };
    // Attempt 1 two minutes ago (the receiver is down), attempt 2 now: only Date is faked.
    vi.useFakeTimers({ toFake: ["Date"] });
    const realNow = Date.now();
    vi.setSystemTime(realNow - 120 * SEC);
    const first = await settleEvents([event], "fail");
    expect(first.result.explicitAcks).toEqual([]);
    expect(first.result.retryMessages).toHaveLength(1);
    expect(first.result.retryMessages[0].msgId).toBe(first.ids[0]);
    // (getQueueResult does not report the delay; the backoff is checked below with a recording batch.)
    const [failed] = await deliveriesOf(event.id);
    expect(failed).toMatchObject({ path: "/fail" });
    verify(SECRET, failed); // valid when it was sent
    expect((await eventRow(event))?.webhook_delivered_at).toBeNull();

    // The queue redelivers (attempt 2) and the receiver is healthy again: delivered once, then marked.
    vi.setSystemTime(realNow);
    const second = await settleEvents([event], "ok", 2);
    expect(second.result.retryMessages).toEqual([]);
    expect(second.result.explicitAcks).toEqual(second.ids);
    const both = await deliveriesOf(event.id);
    expect(both.map((d) => d.path)).toEqual(["/fail", "/ok"]);
    const retried = both[1];
    expect(retried.headers["webhook-id"]).toBe(event.id);
    expect(retried.headers["webhook-id"]).toBe(failed.headers["webhook-id"]);
    expect(retried.body).toBe(failed.body);
    expect(
      Number(retried.headers["webhook-timestamp"]) - Number(failed.headers["webhook-timestamp"]),
    ).toBeGreaterThanOrEqual(120);
    expect(retried.headers["webhook-signature"]).not.toBe(failed.headers["webhook-signature"]);
    expect(verify(SECRET, retried)).toMatchObject({ id: event.id, type: "credits.low" });
    rejects(OTHER_SECRET, retried);
    // The first attempt's headers cannot be replayed now with the retried body: its timestamp is signed.
    rejects(SECRET, {
      body: retried.body,
      headers: { ...retried.headers, "webhook-signature": failed.headers["webhook-signature"] },
    });
    expect((await eventRow(event))?.webhook_delivered_at).not.toBeNull();
  });

  it("a retried webhook backs off longer with each attempt", async () => {
    const event: AccountEvent = {
      id: uid("evt"),
      seq: 1,
      accountId: uid("whbackoff"),
      type: "credits.low",
      createdAt: T0,
      data: {},
    };
    const delays: (number | undefined)[] = [];
    for (const attempts of [1, 3, 5]) {
      let acked = false;
      const message = {
        id: `rec-${event.id}-${attempts}`,
        timestamp: new Date(),
        attempts,
        body: journalOf(event),
        ack: () => {
          acked = true;
        },
        retry: (o?: { delaySeconds?: number }) => {
          delays.push(o?.delaySeconds);
        },
      };
      const batch = {
        queue: "settlement",
        messages: [message],
        ackAll() {},
        retryAll() {},
      } as unknown as MessageBatch<SettlementMessage>;
      await settleBatch(batch, webhookEnv("fail"));
      expect(acked).toBe(false);
    }
    expect(delays).toHaveLength(3);
    expect(delays[0]).toBeGreaterThan(0);
    expect(delays[1]!).toBeGreaterThan(delays[0]!);
    expect(delays[2]!).toBeGreaterThan(delays[1]!);
    expect((await eventRow(event))?.webhook_delivered_at).toBeNull();
    // Every attempt carried the same id and its own valid signature.
    const attempts = await deliveriesOf(event.id);
    expect(attempts).toHaveLength(3);
    for (const d of attempts) {
      expect(d.headers["webhook-id"]).toBe(event.id);
      verify(SECRET, d);
    }
  });

  it("does not POST a redelivered event that was already delivered", async () => {
    const event: AccountEvent = {
      id: uid("evt"),
      seq: 1,
      accountId: uid("whdup"),
      type: "topup.requested",
      createdAt: T0,
      data: { topUpId: "tu_x", amount: C },
    };
    const first = await settleEvents([event], "ok");
    expect(first.result.explicitAcks).toEqual(first.ids);
    const deliveredAt = (await eventRow(event))?.webhook_delivered_at;
    expect(deliveredAt).not.toBeNull();
    const again = await settleEvents([event], "ok", 2);
    expect(again.result.explicitAcks).toEqual(again.ids);
    expect(again.result.retryMessages).toEqual([]);
    expect(await deliveriesOf(event.id)).toHaveLength(1);
    expect((await eventRow(event))?.webhook_delivered_at).toBe(deliveredAt);
  });

  it.each([
    ["missing", null],
    ["without the whsec_ prefix (a bare base64 key)", SECRET.slice("whsec_".length)],
    ["an old-style raw secret", "Zk3_q-9vRr2mXcT8yLbN1uWdA0sJhGeP"],
    ["whsec_ with a body that is not base64", "whsec_not*base64!"],
    ["whsec_ with a key shorter than 24 bytes", `whsec_${btoa("sixteen byte key")}`],
    ["whsec_ with a key longer than 64 bytes", `whsec_${btoa("k".repeat(65))}`],
  ])("sends nothing and retries the message when WEBHOOK_SECRET is %s", async (_label, secret) => {
    const event: AccountEvent = {
      id: uid("evt"),
      seq: 1,
      accountId: uid("whsecret"),
      type: "credits.low",
      createdAt: T0,
      data: {},
    };
    const { result } = await settleEvents([event], "ok", 1, secret);
    expect(result.explicitAcks).toEqual([]);
    expect(result.retryMessages).toHaveLength(1);
    expect(await deliveriesOf(event.id)).toEqual([]);
    expect((await eventRow(event))?.webhook_delivered_at).toBeNull();
  });
});
