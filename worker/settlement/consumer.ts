import type { AccountEvent, JournalMessage, LedgerEntry, SettlementMessage } from "./messages";
import { seqOf } from "../core/journal";
import { LEDGER_KINDS } from "./messages";
import { archive } from "./archive";
import { faultPoints } from "./fault-points";
import { ledgerFor } from "./shards";
import { deliverWebhook } from "./webhooks";

const MAX_BACKOFF_SECONDS = 300;

/** 2, 4, 8 … seconds, capped: a retried message waits longer each attempt. */
export const backoffSeconds = (attempts: number): number => Math.min(MAX_BACKOFF_SECONDS, 2 ** Math.max(1, attempts));

const isSeq = (n: unknown): n is number => Number.isSafeInteger(n) && (n as number) >= 1;

function isLedgerEntry(e: unknown, accountId: string): e is LedgerEntry {
  const x = e as LedgerEntry;
  return (
    !!x &&
    typeof x.id === "string" &&
    x.accountId === accountId &&
    isSeq(x.seq) &&
    (LEDGER_KINDS as readonly string[]).includes(x.kind) &&
    Number.isSafeInteger(x.amount) &&
    x.amount > 0 &&
    Number.isSafeInteger(x.createdAt)
  );
}

function isEvent(e: unknown, accountId: string): e is AccountEvent {
  const x = e as AccountEvent;
  return (
    !!x &&
    typeof x.id === "string" &&
    x.accountId === accountId &&
    isSeq(x.seq) &&
    typeof x.type === "string" &&
    Number.isSafeInteger(x.createdAt)
  );
}

const isJournalMessage = (m: JournalMessage, accountId: string): boolean =>
  (m?.type === "ledger" && isLedgerEntry(m.entry, accountId)) || (m?.type === "event" && isEvent(m.event, accountId));

function isBatch(msg: unknown): msg is SettlementMessage {
  const x = msg as SettlementMessage;
  return (
    !!x &&
    typeof x.accountId === "string" &&
    Number.isSafeInteger(x.floor) &&
    x.floor >= 0 &&
    (x.upgrade === undefined || x.upgrade === true) &&
    Array.isArray(x.entries) &&
    x.entries.every((m) => isJournalMessage(m, x.accountId))
  );
}

// Each entry is applied once by its (account_id, account_seq) and by its id: a redelivery inserts nothing.
const INSERT_LEDGER = `INSERT OR IGNORE INTO ledger (id, account_id, account_seq, kind, amount, layer, product, grant_id,
    decision_id, hold_id, idempotency_key, rate_card_version, note, created_at, settled_at)
  SELECT json_extract(value, '$.id'), json_extract(value, '$.accountId'), json_extract(value, '$.seq'),
    json_extract(value, '$.kind'), json_extract(value, '$.amount'), json_extract(value, '$.layer'),
    json_extract(value, '$.product'), json_extract(value, '$.grantId'), json_extract(value, '$.decisionId'),
    json_extract(value, '$.holdId'), json_extract(value, '$.idempotencyKey'), json_extract(value, '$.rateCardVersion'),
    json_extract(value, '$.note'), json_extract(value, '$.createdAt'), ?2
  FROM json_each(?1)`;

const INSERT_EVENTS = `INSERT OR IGNORE INTO events (id, account_id, account_seq, type, data, created_at)
  SELECT json_extract(value, '$.id'), json_extract(value, '$.accountId'), json_extract(value, '$.seq'),
    json_extract(value, '$.type'), COALESCE(json_extract(value, '$.data'), '{}'), json_extract(value, '$.createdAt')
  FROM json_each(?1)`;

/** The account's head, created at its floor (0 for accounts sequenced from the start), or raised to it. */
const OPEN_HEAD = `INSERT INTO ledger_heads (account_id, watermark, highest, credit_position, charged_total, updated_at)
  VALUES (?1, ?2, ?2, 0, 0, ?3)
  ON CONFLICT (account_id) DO UPDATE SET watermark = excluded.watermark, highest = MAX(highest, excluded.watermark)
  WHERE ledger_heads.watermark < excluded.watermark`;

/**
 * The running totals' sums over the ledger rows `where` picks: the credit position (grants + refunds − expiries −
 * charges paid by grants) and every charge, as `totalsDelta` in worker/core/journal.ts computes them per entry.
 */
const creditSum = (where: string) => `SELECT COALESCE(SUM(CASE WHEN kind IN ('grant', 'refund') THEN amount
    WHEN kind = 'expiry' OR (kind = 'charge' AND layer = 'grant') THEN -amount ELSE 0 END), 0) FROM ledger WHERE ${where}`;
const chargedSum = (where: string) => `SELECT COALESCE(SUM(amount), 0) FROM ledger WHERE kind = 'charge' AND ${where}`;

const IN_RUN = "account_id = ?1 AND account_seq > ledger_heads.watermark AND account_seq <= nw.w";

/**
 * Moves the watermark over every contiguous seq now present (ledger entries and events share the sequence), adds
 * the entries it passes to the running totals (the same sums as `totalsDelta` in worker/core/journal.ts), and
 * records the highest seq seen. One statement, so concurrent consumers cannot interleave a read and a write.
 */
const ADVANCE = `WITH RECURSIVE run(s) AS (
    SELECT watermark FROM ledger_heads WHERE account_id = ?1
    UNION ALL
    SELECT s + 1 FROM run
    WHERE EXISTS (SELECT 1 FROM ledger WHERE account_id = ?1 AND account_seq = s + 1)
       OR EXISTS (SELECT 1 FROM events WHERE account_id = ?1 AND account_seq = s + 1)
  )
  UPDATE ledger_heads SET
    credit_position = credit_position + (${creditSum(IN_RUN)}),
    charged_total = charged_total + (${chargedSum(IN_RUN)}),
    watermark = nw.w,
    highest = MAX(highest, ?2),
    updated_at = ?3
  FROM (SELECT MAX(s) AS w FROM run) AS nw
  WHERE ledger_heads.account_id = ?1`;

/** The batch's ledger entries (?2) that the ledger holds without a seq. */
const UNSEQUENCED = "account_seq IS NULL AND id IN (SELECT json_extract(value, '$.id') FROM json_each(?2))";

/**
 * For a batch flagged `upgrade`: entries written before sequencing may already be in the ledger without a seq (their
 * send arrived, the old outbox never marked it). D1 migration 0004 counted those rows in the head's starting totals,
 * so they are taken back out of the totals here and given their seq; ADVANCE then counts them once, in order.
 * Both statements touch only rows still without a seq, so running them again changes nothing.
 */
const REBASE_LEGACY = `UPDATE ledger_heads SET
    credit_position = credit_position - (${creditSum(UNSEQUENCED)}),
    charged_total = charged_total - (${chargedSum(UNSEQUENCED)})
  WHERE account_id = ?1`;

const sequenceLegacy = (table: "ledger" | "events") => `UPDATE ${table} SET account_seq = (
    SELECT json_extract(value, '$.seq') FROM json_each(?1) WHERE json_extract(value, '$.id') = ${table}.id)
  WHERE account_seq IS NULL AND id IN (SELECT json_extract(value, '$.id') FROM json_each(?1))`;

/** The D1 statements that settle one message: its entries, then the account's head. Redelivery is a no-op. */
export function statementsFor(db: D1Database, msg: SettlementMessage, settledAt: number): D1PreparedStatement[] {
  if (!isBatch(msg)) throw new Error("malformed settlement message");
  return statementsOf(db, msg, settledAt);
}

/** `statementsFor` of a message already checked. */
function statementsOf(db: D1Database, msg: SettlementMessage, settledAt: number): D1PreparedStatement[] {
  const ledger = msg.entries.flatMap((m) => (m.type === "ledger" ? [m.entry] : []));
  const events = msg.entries.flatMap((m) => (m.type === "event" ? [m.event] : []));
  const highest = Math.max(0, ...msg.entries.map(seqOf));
  const [ledgerJson, eventsJson] = [JSON.stringify(ledger), JSON.stringify(events)];
  const stmts: D1PreparedStatement[] = [db.prepare(OPEN_HEAD).bind(msg.accountId, msg.floor, settledAt)];
  if (msg.upgrade)
    stmts.push(
      db.prepare(REBASE_LEGACY).bind(msg.accountId, ledgerJson),
      db.prepare(sequenceLegacy("ledger")).bind(ledgerJson),
      db.prepare(sequenceLegacy("events")).bind(eventsJson),
    );
  if (ledger.length > 0) stmts.push(db.prepare(INSERT_LEDGER).bind(ledgerJson, settledAt));
  if (events.length > 0) stmts.push(db.prepare(INSERT_EVENTS).bind(eventsJson));
  stmts.push(db.prepare(ADVANCE).bind(msg.accountId, highest, settledAt));
  return stmts;
}

type Planned = { msg: Message<SettlementMessage>; db: D1Database; stmts: D1PreparedStatement[] };

/**
 * Settles a batch into D1. Each message goes to its account's ledger shard; each shard's messages go in one D1 batch
 * (one transaction). If that fails, each message is tried on its own so that one bad message cannot hold back the
 * rest, and each is acked or retried with backoff. Messages that keep failing go to the dead-letter queue.
 */
export async function settleBatch(batch: MessageBatch<SettlementMessage>, env: Env): Promise<void> {
  faultPoints.consumer?.(batch, "before");
  const now = Date.now();
  const byShard = new Map<D1Database, Planned[]>();
  for (const msg of batch.messages) {
    try {
      if (!isBatch(msg.body)) throw new Error("malformed settlement message");
      const db = ledgerFor(env, msg.body.accountId);
      const planned = byShard.get(db) ?? [];
      planned.push({ msg, db, stmts: statementsOf(db, msg.body, now) });
      byShard.set(db, planned);
    } catch {
      console.error(JSON.stringify({ event: "settlement.malformed", messageId: msg.id, attempts: msg.attempts }));
      msg.retry({ delaySeconds: backoffSeconds(msg.attempts) });
    }
  }
  const inD1 = (await Promise.all([...byShard].map(([db, planned]) => settleShard(db, planned)))).flat();
  // The archive gets what D1 took; a message whose archive write fails is retried (its D1 part is then a no-op).
  const settled = await archiveSettled(env, inD1);
  faultPoints.consumer?.(batch, "after");
  // A message is done once its entries are in D1 and each event's webhook (if configured) is delivered.
  await Promise.all(settled.map((p) => deliverEvents(env, p.db, p.msg)));
}

/** One shard's messages in one D1 batch; if that fails, message by message. Returns the messages settled. */
async function settleShard(db: D1Database, planned: Planned[]): Promise<Planned[]> {
  const settled: Planned[] = [];
  try {
    await db.batch(planned.flatMap((p) => p.stmts));
    settled.push(...planned);
  } catch (err) {
    console.error(JSON.stringify({ event: "settlement.batch_failed", size: planned.length, error: errorText(err) }));
    for (const p of planned) {
      try {
        await db.batch(p.stmts);
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
  return settled;
}

async function archiveSettled(env: Env, planned: Planned[]): Promise<Planned[]> {
  const done = await Promise.all(
    planned.map(async (p) => {
      try {
        await archive(env, [p.msg.body]);
        return true;
      } catch (err) {
        console.error(JSON.stringify({ event: "archive.retry", messageId: p.msg.id, error: errorText(err) }));
        p.msg.retry({ delaySeconds: backoffSeconds(p.msg.attempts) });
        return false;
      }
    }),
  );
  return planned.filter((_, i) => done[i]);
}

/** Posts each event's webhook once (`webhook_delivered_at` marks it), then acks; a failure retries the message. */
async function deliverEvents(env: Env, db: D1Database, msg: Message<SettlementMessage>): Promise<void> {
  const events = msg.body.entries.flatMap((m) => (m.type === "event" ? [m.event] : []));
  if (!env.WEBHOOK_URL || events.length === 0) return msg.ack();
  for (const event of events) {
    try {
      const done = await db
        .prepare("SELECT webhook_delivered_at FROM events WHERE id = ?")
        .bind(event.id)
        .first<{ webhook_delivered_at: number | null }>();
      if (done?.webhook_delivered_at == null) {
        await deliverWebhook(env, event);
        await db.prepare("UPDATE events SET webhook_delivered_at = ? WHERE id = ?").bind(Date.now(), event.id).run();
      }
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
      return msg.retry({ delaySeconds: backoffSeconds(msg.attempts) });
    }
  }
  msg.ack();
}

const errorText = (err: unknown) => (err instanceof Error ? err.message : String(err));
