import type { AccountEvent, JournalMessage, LedgerEntry, SettlementMessage } from "./messages";
import { isUsage, LAYERS, seqOf } from "../core/journal";
import { HOUR_MS } from "../core/time";
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
    Number.isSafeInteger(x.createdAt) &&
    (x.layer === undefined || (LAYERS as readonly string[]).includes(x.layer)) &&
    (x.layer !== "window" || typeof x.product === "string")
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

/** A run of the journal: its seqs consecutive, in order (a message that skipped one would move the watermark past it). */
const isRun = (entries: JournalMessage[]) => entries.every((m, i) => i === 0 || seqOf(m) === seqOf(entries[i - 1]) + 1);

function isBatch(msg: unknown): msg is SettlementMessage {
  const x = msg as SettlementMessage;
  return (
    !!x &&
    typeof x.accountId === "string" &&
    Number.isSafeInteger(x.floor) &&
    x.floor >= 0 &&
    (x.upgrade === undefined || x.upgrade === true) &&
    Array.isArray(x.entries) &&
    x.entries.every((m) => isJournalMessage(m, x.accountId)) &&
    isRun(x.entries)
  );
}

/**
 * A message applies only where it continues the account's ledger: its first seq is at most one past the watermark.
 * Every statement of a message reads the watermark through this gate before the last one moves it, and takes only
 * the entries above it, so a redelivery, an overlapping resend or a message racing another is a no-op or a remainder.
 * (?1 is the account, ?3 the message's first seq.)
 */
const GATE = "SELECT watermark AS w FROM ledger_heads WHERE account_id = ?1 AND watermark >= ?3 - 1";

/** The entries of a JSON array (?2) above the watermark, as columns. */
const ABOVE_WATERMARK = (columns: string) => `WITH head AS (${GATE})
  SELECT ${columns} FROM json_each(?2), head WHERE json_extract(value, '$.seq') > head.w`;

const at = (field: string) => `json_extract(value, '$.${field}')`;

/**
 * Money entries, one row each (also unique on id and on (account_id, account_seq), as a second guard). ON CONFLICT DO
 * NOTHING skips only those duplicates: a row that breaks a CHECK fails the batch instead of vanishing while the
 * watermark passes it (INSERT OR IGNORE would drop it).
 */
const INSERT_LEDGER = `INSERT INTO ledger (id, account_id, account_seq, kind, amount, layer, product, grant_id,
    org_id, member_id, decision_id, hold_id, idempotency_key, rate_card_version, note, created_at, settled_at)
  ${ABOVE_WATERMARK(`${at("id")}, ?1, ${at("seq")}, ${at("kind")}, ${at("amount")}, ${at("layer")}, ${at("product")},
    ${at("grantId")}, ${at("orgId")}, ${at("memberId")}, ${at("decisionId")}, ${at("holdId")}, ${at("idempotencyKey")},
    ${at("rateCardVersion")}, ${at("note")}, ${at("createdAt")}, ?4`)}
  ON CONFLICT DO NOTHING`;

const INSERT_EVENTS = `INSERT INTO events (id, account_id, account_seq, type, data, created_at)
  ${ABOVE_WATERMARK(`${at("id")}, ?1, ${at("seq")}, ${at("type")}, COALESCE(${at("data")}, '{}'), ${at("createdAt")}`)}
  ON CONFLICT DO NOTHING`;

/**
 * Window charges (?2) summed per product and hour, named as their `usage` row (migrations/0005_usage_rollups.sql). A
 * charge the ledger already holds as its own row (settled before migration 0005, or before sequencing) is left out:
 * one lookup by id, a read, not a write.
 */
const USAGE_GROUPS = `(SELECT 'usage:' || ?1 || ':' || product || ':' || hour AS id, product, SUM(amount) AS amount,
    COUNT(*) AS n, MIN(created_at) AS first_at
  FROM (${ABOVE_WATERMARK(`${at("product")} AS product, (${at("createdAt")} / ${HOUR_MS}) * ${HOUR_MS} AS hour,
      ${at("amount")} AS amount, ${at("createdAt")} AS created_at, ${at("id")} AS entry_id`)}) AS charges
  WHERE NOT EXISTS (SELECT 1 FROM ledger WHERE ledger.id = charges.entry_id)
  GROUP BY product, hour)`;

/**
 * The hour's `usage` row grows in place: one row written, no index touched (an upsert's update path costs D1 two rows
 * written, so the rollup is an UPDATE, then an INSERT of the hours that have no row yet).
 */
const ADD_TO_USAGE = `UPDATE ledger SET amount = ledger.amount + g.amount, usage_count = ledger.usage_count + g.n,
    created_at = MIN(ledger.created_at, g.first_at), settled_at = ?4
  FROM ${USAGE_GROUPS} AS g WHERE ledger.id = g.id`;
/**
 * A new hour's `usage` row; `created_at` is its earliest charge's. Only hours without a row are inserted (a conflict
 * ignored by INSERT OR IGNORE still costs D1 a row written).
 */
const OPEN_USAGE = `INSERT INTO ledger (id, account_id, kind, amount, layer, product, usage_count, created_at, settled_at)
  SELECT id, ?1, 'usage', amount, 'window', product, n, first_at, ?4 FROM ${USAGE_GROUPS} AS g
  WHERE NOT EXISTS (SELECT 1 FROM ledger WHERE ledger.id = g.id)`;

/** The account's head, created at its floor (0 for accounts sequenced from the start), or raised to it. */
const OPEN_HEAD = `INSERT INTO ledger_heads (account_id, watermark, highest, credit_position, charged_total, updated_at)
  VALUES (?1, ?2, ?2, 0, 0, ?3)
  ON CONFLICT (account_id) DO UPDATE SET watermark = excluded.watermark, highest = MAX(highest, excluded.watermark)
  WHERE ledger_heads.watermark < excluded.watermark`;

/**
 * The running totals' sums over ledger entries: the credit position (grants + refunds − expiries − charges paid by
 * grants; for a pool, − leases + returns of its grants) and every charge, as `totalsDelta` in worker/core/journal.ts
 * computes them per entry. `from` yields the columns kind, layer, amount, grant_id and member_id.
 */
const creditSum = (from: string) => `SELECT COALESCE(SUM(CASE WHEN kind IN ('grant', 'refund') THEN amount
    WHEN kind = 'expiry' OR (kind = 'charge' AND layer = 'grant') THEN -amount
    WHEN kind = 'lease' AND member_id IS NOT NULL AND grant_id IS NOT NULL THEN -amount
    WHEN kind = 'lease_return' AND member_id IS NOT NULL AND grant_id IS NOT NULL THEN amount ELSE 0 END), 0)
  FROM ${from}`;
const chargedSum = (from: string) => `SELECT COALESCE(SUM(amount), 0) FROM ${from} WHERE kind = 'charge'`;

/** Every ledger entry of the message (?2), window usage included, above the watermark the head has before this step. */
const MESSAGE_ABOVE = `(SELECT ${at("kind")} AS kind, ${at("layer")} AS layer, ${at("amount")} AS amount,
    ${at("grantId")} AS grant_id, ${at("memberId")} AS member_id FROM json_each(?2) WHERE ${at("seq")} > ledger_heads.watermark)`;

/**
 * Moves the watermark to the message's last seq (?4) and adds its entries above the old watermark to the running
 * totals, if the message continues the ledger; otherwise records only how far the account has been seen (`highest`
 * above the watermark is a gap). One statement, so concurrent consumers cannot interleave a read and a write.
 */
const ADVANCE = `UPDATE ledger_heads SET
    credit_position = credit_position + (${creditSum(MESSAGE_ABOVE)}),
    charged_total = charged_total + (${chargedSum(MESSAGE_ABOVE)}),
    watermark = ?4,
    highest = MAX(highest, ?4),
    updated_at = ?5
  WHERE account_id = ?1 AND watermark >= ?3 - 1 AND watermark < ?4`;
const SEEN = "UPDATE ledger_heads SET highest = ?2 WHERE account_id = ?1 AND highest < ?2";

/** The watermark after the message's statements: the message is settled once it covers the message's last seq. */
const WATERMARK = "SELECT watermark FROM ledger_heads WHERE account_id = ?1";

/** The batch's ledger entries (?2) above the watermark that the ledger holds without a seq. */
const UNSEQUENCED = `(SELECT kind, layer, amount, grant_id, member_id FROM ledger WHERE account_seq IS NULL AND id IN (
    SELECT ${at("id")} FROM json_each(?2) WHERE ${at("seq")} > ledger_heads.watermark))`;

/**
 * For a batch flagged `upgrade`: entries written before sequencing may already be in the ledger without a seq (their
 * send arrived, the old outbox never marked it). D1 migration 0004 counted those rows in the head's starting totals,
 * so they are taken back out of the totals here and given their seq; ADVANCE then counts them once, from the message.
 * Both run only where the message continues the ledger (as ADVANCE does, so the totals never dip in between), and
 * touch only rows still without a seq, so running them again changes nothing.
 */
const REBASE_LEGACY = `UPDATE ledger_heads SET
    credit_position = credit_position - (${creditSum(UNSEQUENCED)}),
    charged_total = charged_total - (${chargedSum(UNSEQUENCED)})
  WHERE account_id = ?1 AND watermark >= ?3 - 1`;

const sequenceLegacy = (table: "ledger" | "events") => `UPDATE ${table} SET account_seq = (
    SELECT ${at("seq")} FROM json_each(?1) WHERE ${at("id")} = ${table}.id)
  WHERE account_seq IS NULL AND id IN (SELECT ${at("id")} FROM json_each(?1))
    AND EXISTS (SELECT 1 FROM ledger_heads WHERE account_id = ?2 AND watermark >= ?3 - 1)`;

/** The seq range a message covers: its entries' (consecutive, checked by isBatch), or just its floor. */
function rangeOf(msg: SettlementMessage): { first: number; last: number } {
  if (msg.entries.length === 0) return { first: msg.floor, last: msg.floor };
  const seqs = msg.entries.map(seqOf);
  return { first: Math.min(...seqs), last: Math.max(...seqs) };
}

/**
 * The D1 statements that settle one message: its entries, then the account's head; the last reads the watermark
 * after them. Redelivery is a no-op; a message that does not continue the ledger changes nothing but `highest`.
 */
export function statementsFor(db: D1Database, msg: SettlementMessage, settledAt: number): D1PreparedStatement[] {
  if (!isBatch(msg)) throw new Error("malformed settlement message");
  return statementsOf(db, msg, settledAt);
}

/** `statementsFor` of a message already checked. */
function statementsOf(db: D1Database, msg: SettlementMessage, settledAt: number): D1PreparedStatement[] {
  const ledger = msg.entries.flatMap((m) => (m.type === "ledger" ? [m.entry] : []));
  const events = msg.entries.flatMap((m) => (m.type === "event" ? [m.event] : []));
  const money = ledger.filter((e) => !isUsage(e));
  const windowCharges = ledger.filter((e) => isUsage(e) && e.kind === "charge");
  const { first, last } = rangeOf(msg);
  const id = msg.accountId;
  const ledgerJson = JSON.stringify(ledger);
  const stmts: D1PreparedStatement[] = [db.prepare(OPEN_HEAD).bind(id, msg.floor, settledAt)];
  if (msg.upgrade) {
    const eventsJson = JSON.stringify(events);
    stmts.push(
      db.prepare(REBASE_LEGACY).bind(id, ledgerJson, first),
      db.prepare(sequenceLegacy("ledger")).bind(ledgerJson, id, first),
      db.prepare(sequenceLegacy("events")).bind(eventsJson, id, first),
    );
  }
  if (money.length > 0) stmts.push(db.prepare(INSERT_LEDGER).bind(id, JSON.stringify(money), first, settledAt));
  if (events.length > 0) stmts.push(db.prepare(INSERT_EVENTS).bind(id, JSON.stringify(events), first));
  if (windowCharges.length > 0) {
    const usage = [id, JSON.stringify(windowCharges), first, settledAt];
    stmts.push(db.prepare(ADD_TO_USAGE).bind(...usage), db.prepare(OPEN_USAGE).bind(...usage));
  }
  if (msg.entries.length > 0)
    stmts.push(db.prepare(ADVANCE).bind(id, ledgerJson, first, last, settledAt), db.prepare(SEEN).bind(id, last));
  stmts.push(db.prepare(WATERMARK).bind(id));
  return stmts;
}

/** A message ready for D1: its statements and the seq range they cover (`rangeOf`, computed once). */
type Planned = {
  msg: Message<SettlementMessage>;
  db: D1Database;
  stmts: D1PreparedStatement[];
  first: number;
  last: number;
};

/**
 * Settles a batch into D1. Each message goes to its account's ledger shard; each shard's messages go in one D1 batch
 * (one transaction), an account's in seq order so that a run of messages applies at once. If that fails, each message
 * is tried on its own so that one bad message cannot hold back the rest. A message that does not yet continue its
 * account's ledger (one before it is late or lost) is retried with backoff; the object's settlement check sends the
 * missing run again in any case. Messages that keep failing go to the dead-letter queue.
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
      planned.push({ msg, db, stmts: statementsOf(db, msg.body, now), ...rangeOf(msg.body) });
      byShard.set(db, planned);
    } catch {
      console.error(JSON.stringify({ event: "settlement.malformed", messageId: msg.id, attempts: msg.attempts }));
      msg.retry({ delaySeconds: backoffSeconds(msg.attempts) });
    }
  }
  // The archive first, so the watermark (which lets the object prune its journal) never passes an entry the archive
  // lacks: a shard whose write fails is retried before D1 sees it.
  const archived = await archiveFirst(env, byShard);
  const settled = (await Promise.all([...archived].map(([db, planned]) => settleShard(db, planned)))).flat();
  faultPoints.consumer?.(batch, "after");
  // A message is done once its entries are in D1 and each event's webhook (if configured) is delivered.
  await Promise.all(settled.map((p) => deliverEvents(env, p.db, p.msg)));
}

const inSeqOrder = (a: Planned, b: Planned) =>
  a.msg.body.accountId < b.msg.body.accountId
    ? -1
    : a.msg.body.accountId > b.msg.body.accountId
      ? 1
      : a.first - b.first;

/** The watermark a message's last statement (WATERMARK) read. */
const watermarkIn = (result: D1Result | undefined) =>
  (result?.results?.[0] as { watermark?: number } | undefined)?.watermark ?? 0;

/**
 * One shard's messages in one D1 batch; if that fails, message by message. Returns the messages the ledger now holds
 * in full; the others are retried.
 */
async function settleShard(db: D1Database, planned: Planned[]): Promise<Planned[]> {
  planned.sort(inSeqOrder);
  const settled: Planned[] = [];
  const held = (p: Planned, watermark: number) => {
    if (watermark >= p.last) return settled.push(p);
    console.warn(
      JSON.stringify({ event: "settlement.ahead_of_ledger", messageId: p.msg.id, watermark, attempts: p.msg.attempts }),
    );
    p.msg.retry({ delaySeconds: backoffSeconds(p.msg.attempts) });
  };
  try {
    const results = await db.batch(planned.flatMap((p) => p.stmts));
    let end = 0;
    for (const p of planned) {
      end += p.stmts.length;
      held(p, watermarkIn(results[end - 1]));
    }
  } catch (err) {
    console.error(JSON.stringify({ event: "settlement.batch_failed", size: planned.length, error: errorText(err) }));
    for (const p of planned) {
      try {
        const results = await db.batch(p.stmts);
        held(p, watermarkIn(results[results.length - 1]));
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

/**
 * Archives each shard's messages in one call, so the batch costs one R2 put per shard-hour, and returns the shards
 * written. If a shard's call fails, every message of that shard is retried without touching D1. Messages ahead of a
 * gap are archived too (and again on their retry); the export keeps each seq once however often it is archived.
 */
async function archiveFirst(env: Env, byShard: Map<D1Database, Planned[]>): Promise<Map<D1Database, Planned[]>> {
  const written = new Map<D1Database, Planned[]>();
  await Promise.all(
    [...byShard].map(async ([db, shard]) => {
      try {
        await archive(
          env,
          shard.map((p) => p.msg.body),
        );
        written.set(db, shard);
      } catch (err) {
        const messageIds = shard.map((p) => p.msg.id);
        console.error(JSON.stringify({ event: "archive.retry", messageIds, error: errorText(err) }));
        for (const p of shard) p.msg.retry({ delaySeconds: backoffSeconds(p.msg.attempts) });
      }
    }),
  );
  return written;
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
