import type { LedgerEntry, SettlementMessage, AccountEvent } from "./messages";
import { LEDGER_KINDS } from "./messages";
import { deliverWebhook } from "./webhooks";

const MAX_BACKOFF_SECONDS = 300;

/** 2, 4, 8 … seconds, capped: a retried message waits longer each attempt. */
export const backoffSeconds = (attempts: number): number => Math.min(MAX_BACKOFF_SECONDS, 2 ** Math.max(1, attempts));

function isLedgerEntry(e: unknown): e is LedgerEntry {
  const x = e as LedgerEntry;
  return (
    !!x &&
    typeof x.id === "string" &&
    typeof x.accountId === "string" &&
    (LEDGER_KINDS as readonly string[]).includes(x.kind) &&
    Number.isSafeInteger(x.amount) &&
    x.amount > 0 &&
    Number.isSafeInteger(x.createdAt)
  );
}

function isEvent(e: unknown): e is AccountEvent {
  const x = e as AccountEvent;
  return (
    !!x &&
    typeof x.id === "string" &&
    typeof x.accountId === "string" &&
    typeof x.type === "string" &&
    Number.isSafeInteger(x.createdAt)
  );
}

/** The D1 statements that settle one message. Each is idempotent by the entry's id. */
export function statementsFor(db: D1Database, msg: SettlementMessage, settledAt: number): D1PreparedStatement[] {
  if (msg.type === "ledger" && isLedgerEntry(msg.entry)) {
    const e = msg.entry;
    return [
      db
        .prepare(
          `INSERT OR IGNORE INTO ledger (id, account_id, kind, amount, layer, product, grant_id, decision_id, hold_id, idempotency_key, rate_card_version, note, created_at, settled_at)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
        )
        .bind(
          e.id,
          e.accountId,
          e.kind,
          e.amount,
          e.layer ?? null,
          e.product ?? null,
          e.grantId ?? null,
          e.decisionId ?? null,
          e.holdId ?? null,
          e.idempotencyKey ?? null,
          e.rateCardVersion ?? null,
          e.note ?? null,
          e.createdAt,
          settledAt,
        ),
      db
        .prepare("INSERT OR IGNORE INTO accounts (account_id, first_settled_at) VALUES (?, ?)")
        .bind(e.accountId, settledAt),
    ];
  }
  if (msg.type === "event" && isEvent(msg.event)) {
    const e = msg.event;
    return [
      db
        .prepare("INSERT OR IGNORE INTO events (id, account_id, type, data, created_at) VALUES (?, ?, ?, ?, ?)")
        .bind(e.id, e.accountId, e.type, JSON.stringify(e.data ?? {}), e.createdAt),
    ];
  }
  throw new Error("malformed settlement message");
}

/**
 * Settles a batch into D1. The whole batch goes in one D1 batch (one transaction); if that fails, each
 * message is tried on its own so that one bad message cannot hold back the rest, and each is acked or
 * retried with backoff. Messages that keep failing go to the dead-letter queue.
 */
export async function settleBatch(batch: MessageBatch<SettlementMessage>, env: Env): Promise<void> {
  const now = Date.now();
  const planned: { msg: Message<SettlementMessage>; stmts: D1PreparedStatement[] }[] = [];
  for (const msg of batch.messages) {
    try {
      planned.push({ msg, stmts: statementsFor(env.DB, msg.body, now) });
    } catch {
      console.error(JSON.stringify({ event: "settlement.malformed", messageId: msg.id, attempts: msg.attempts }));
      msg.retry({ delaySeconds: backoffSeconds(msg.attempts) });
    }
  }
  if (planned.length === 0) return;
  const settled: typeof planned = [];
  try {
    await env.DB.batch(planned.flatMap((p) => p.stmts));
    settled.push(...planned);
  } catch (err) {
    console.error(JSON.stringify({ event: "settlement.batch_failed", size: planned.length, error: errorText(err) }));
    for (const p of planned) {
      try {
        await env.DB.batch(p.stmts);
        settled.push(p);
      } catch (err) {
        console.error(
          JSON.stringify({
            event: "settlement.retry",
            messageId: p.msg.id,
            attempts: p.msg.attempts,
            error: errorText(err),
          }),
        );
        p.msg.retry({ delaySeconds: backoffSeconds(p.msg.attempts) });
      }
    }
  }
  // Ledger entries are done once in D1; an event is done once its webhook (if configured) is delivered.
  await Promise.all(
    settled.map((p) =>
      p.msg.body.type === "event"
        ? deliverEvent(env, p.msg as Message<Extract<SettlementMessage, { type: "event" }>>)
        : p.msg.ack(),
    ),
  );
}

async function deliverEvent(env: Env, msg: Message<Extract<SettlementMessage, { type: "event" }>>): Promise<void> {
  if (!env.WEBHOOK_URL) return msg.ack();
  const event = msg.body.event;
  try {
    const done = await env.DB.prepare("SELECT webhook_delivered_at FROM events WHERE id = ?")
      .bind(event.id)
      .first<{ webhook_delivered_at: number | null }>();
    if (done?.webhook_delivered_at == null) {
      await deliverWebhook(env, event);
      await env.DB.prepare("UPDATE events SET webhook_delivered_at = ? WHERE id = ?").bind(Date.now(), event.id).run();
    }
    msg.ack();
  } catch (err) {
    console.error(
      JSON.stringify({
        event: "webhook.retry",
        eventId: event.id,
        type: event.type,
        attempts: msg.attempts,
        error: errorText(err),
      }),
    );
    msg.retry({ delaySeconds: backoffSeconds(msg.attempts) });
  }
}

const errorText = (err: unknown) => (err instanceof Error ? err.message : String(err));
