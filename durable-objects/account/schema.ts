/**
 * The account object's SQLite schema as ordered migrations. The stored `schema_version` says how far an object's
 * storage has come; only the migrations after it run, in order, inside the first write's transaction. Append a
 * migration to change the schema; never edit one that has shipped.
 */
import type { JournalMessage } from "../../worker/core/journal";
import { type Migration, versionOf } from "../migrations";
import type { Sql } from "../sql";
import { AnswerTables } from "./answer-book";
import { pack } from "./compact";
import { accountIdIn, rowOf } from "./journal";

export const MIGRATIONS: readonly Migration[] = [
  {
    id: 1,
    description: "the account, its windows, grants, holds, banked resets, top-ups, answers, decisions and outbox",
    sql: [
      `CREATE TABLE IF NOT EXISTS account (
         singleton INTEGER PRIMARY KEY CHECK (singleton = 1),
         account_id TEXT NOT NULL,
         plan TEXT NOT NULL,
         created_at INTEGER NOT NULL,
         paused INTEGER NOT NULL DEFAULT 0,
         spend_cap INTEGER,
         auto_top_up TEXT,
         flex_month TEXT,
         flex_used INTEGER NOT NULL DEFAULT 0,
         reset_seq INTEGER NOT NULL DEFAULT 0,
         banked_accrued_at INTEGER NOT NULL,
         clock_offset INTEGER NOT NULL DEFAULT 0,
         charged_total INTEGER NOT NULL DEFAULT 0)`,
      `CREATE TABLE IF NOT EXISTS plan_history (since INTEGER NOT NULL, plan TEXT NOT NULL)`,
      `CREATE TABLE IF NOT EXISTS windows (
         product TEXT NOT NULL, kind TEXT NOT NULL, opened_at INTEGER, used INTEGER NOT NULL,
         PRIMARY KEY (product, kind))`,
      `CREATE TABLE IF NOT EXISTS grants (
         id TEXT PRIMARY KEY, kind TEXT NOT NULL, priority INTEGER NOT NULL, products TEXT,
         amount INTEGER NOT NULL, remaining INTEGER NOT NULL, expires_at INTEGER, created_at INTEGER NOT NULL,
         top_up_id TEXT, active INTEGER NOT NULL DEFAULT 1)`,
      // Decisions read only live grants, so their cost does not grow with the account's history.
      `CREATE INDEX IF NOT EXISTS grants_live ON grants (active, expires_at)`,
      `CREATE TABLE IF NOT EXISTS holds (
         id TEXT PRIMARY KEY, product TEXT NOT NULL, amount INTEGER NOT NULL, sources TEXT NOT NULL,
         window_opened TEXT NOT NULL, flex_month TEXT, expires_at INTEGER NOT NULL, created_at INTEGER NOT NULL,
         state TEXT NOT NULL)`,
      `CREATE INDEX IF NOT EXISTS holds_live ON holds (state, expires_at)`,
      `CREATE TABLE IF NOT EXISTS idempotency (
         key TEXT PRIMARY KEY, fingerprint TEXT NOT NULL, status INTEGER NOT NULL, body TEXT NOT NULL,
         created_at INTEGER NOT NULL)`,
      `CREATE INDEX IF NOT EXISTS idempotency_age ON idempotency (created_at)`,
      `CREATE TABLE IF NOT EXISTS decisions (
         id TEXT PRIMARY KEY, created_at INTEGER NOT NULL, product TEXT NOT NULL, cost INTEGER NOT NULL,
         allowed INTEGER NOT NULL, reason TEXT, sources TEXT, idempotency_key TEXT)`,
      `CREATE INDEX IF NOT EXISTS decisions_age ON decisions (created_at)`,
      `CREATE TABLE IF NOT EXISTS outbox (
         seq INTEGER PRIMARY KEY AUTOINCREMENT, entry_id TEXT NOT NULL UNIQUE, message TEXT NOT NULL,
         created_at INTEGER NOT NULL, delivered_at INTEGER)`,
      `CREATE INDEX IF NOT EXISTS outbox_pending ON outbox (delivered_at, seq)`,
      // Credit spend (grants + flex) per minute: the anomaly guard's and the spend cap's input.
      `CREATE TABLE IF NOT EXISTS spend_minutes (minute INTEGER PRIMARY KEY, amount INTEGER NOT NULL)`,
      `CREATE TABLE IF NOT EXISTS banked_resets (
         id TEXT PRIMARY KEY, granted_at INTEGER NOT NULL, expires_at INTEGER, origin TEXT NOT NULL, used_at INTEGER)`,
      `CREATE TABLE IF NOT EXISTS top_ups (
         id TEXT PRIMARY KEY, requested_at INTEGER NOT NULL, amount INTEGER NOT NULL, state TEXT NOT NULL,
         month TEXT NOT NULL)`,
    ],
  },
  {
    id: 2,
    description:
      "resume instant; window usage of the last week, so a global reset forgives exactly what came before it",
    sql: [
      `ALTER TABLE account ADD COLUMN resumed_at INTEGER`,
      `CREATE TABLE IF NOT EXISTS window_charges (product TEXT NOT NULL, at INTEGER NOT NULL, amount INTEGER NOT NULL)`,
      `CREATE INDEX IF NOT EXISTS window_charges_at ON window_charges (product, at)`,
    ],
  },
  {
    id: 3,
    description: "spend in the resume's minute; lifetime credits granted; refunds per entry",
    sql: [
      `ALTER TABLE account ADD COLUMN resumed_spend INTEGER NOT NULL DEFAULT 0`,
      // Kept at or below 2^53 − 1 so no stored total or ledger sum can pass it.
      `ALTER TABLE account ADD COLUMN granted_total INTEGER NOT NULL DEFAULT 0`,
      `UPDATE account SET granted_total = (SELECT COALESCE(SUM(amount), 0) FROM grants)`,
      `CREATE TABLE IF NOT EXISTS entry_refunds (entry_id TEXT PRIMARY KEY, refunded INTEGER NOT NULL) WITHOUT ROWID`,
    ],
  },
  {
    id: 4,
    description:
      "kept answers become domain results ({ kind, body } or { kind: 'refused', refusal }), not HTTP replies",
    sql: [
      // Rewrites answers kept before this migration. They were stored as an HTTP status plus `{ body, error? }`;
      // the numbers below are those legacy statuses (201 created, 429 denied), read here once and then dropped.
      `UPDATE idempotency SET body = CASE
         WHEN json_extract(body, '$.error') IS NOT NULL
           THEN json_object('kind', 'refused', 'refusal', json(json_extract(body, '$.error')))
         WHEN status = 201 THEN json_object('kind', 'created', 'body', json(json_extract(body, '$.body')))
         WHEN status = 429 THEN json_object('kind', 'denied', 'body', json(json_extract(body, '$.body')))
         ELSE json_object('kind', 'ok', 'body', json(json_extract(body, '$.body'))) END`,
      `ALTER TABLE idempotency DROP COLUMN status`,
    ],
  },
  {
    id: 5,
    description:
      "a sequenced journal (SPEC §7): the account's last sequence number, and how far the ledger has confirmed it",
    sql: [
      // The outbox's own sequence becomes the journal's: new entries continue after the highest ever assigned.
      `ALTER TABLE account ADD COLUMN journal_seq INTEGER NOT NULL DEFAULT 0`,
      `UPDATE account SET journal_seq = COALESCE((SELECT MAX(seq) FROM outbox), 0)`,
      // `floor`: entries up to here were delivered before sequencing (the old per-row mark); the ledger counts them
      // as held. `confirmed`: the ledger's watermark as last learned; journal rows above it are still owed.
      // `legacy_through`: the last row written before sequencing; its message has no `seq` of its own.
      `CREATE TABLE IF NOT EXISTS settlement (
         singleton INTEGER PRIMARY KEY CHECK (singleton = 1), floor INTEGER NOT NULL, confirmed INTEGER NOT NULL,
         legacy_through INTEGER NOT NULL)`,
      `INSERT INTO settlement (singleton, floor, confirmed, legacy_through)
         SELECT 1, f, f, COALESCE((SELECT MAX(seq) FROM outbox), 0) FROM (SELECT COALESCE(
           (SELECT MIN(seq) - 1 FROM outbox WHERE delivered_at IS NULL), (SELECT MAX(seq) FROM outbox), 0) AS f)`,
      `DROP INDEX IF EXISTS outbox_pending`,
    ],
  },
  // 6–9: the lean journal (issue #15). A decision writes the account row, its journal rows and its answer; the rows it
  // wrote besides (window upserts, a decision row, index entries, `sqlite_sequence`) are gone.
  {
    id: 6,
    description: "the windows move into the account row (they change with it): no window rows to upsert",
    sql: [
      `ALTER TABLE account ADD COLUMN windows TEXT NOT NULL DEFAULT '{}'`,
      `UPDATE account SET windows = (SELECT COALESCE(json_group_object(product || ':' || kind, json_array(opened_at, used)),
         '{}') FROM windows)`,
      `DROP TABLE windows`,
    ],
  },
  {
    id: 7,
    description: "no decision log of its own: a decision is its journal entries and its kept answer",
    sql: [`DROP TABLE IF EXISTS decisions`],
  },
  {
    id: 8,
    description:
      "the journal without AUTOINCREMENT (the core assigns seq) or a UNIQUE index on entry_id, its rows in compact text, " +
      "carrying the window usage their step recorded (window_charges keeps only usage recorded before this migration)",
    sql: [
      `CREATE TABLE journal_v8 (
         seq INTEGER PRIMARY KEY, entry_id TEXT NOT NULL, message TEXT NOT NULL, created_at INTEGER NOT NULL,
         usage_product TEXT, usage INTEGER)`,
      `DROP INDEX IF EXISTS window_charges_at`,
    ],
    run: (db) => {
      const accountId = accountIdIn(db);
      for (const r of db.all<{ seq: number; entry_id: string; message: string; created_at: number }>`
        SELECT seq, entry_id, message, created_at FROM outbox ORDER BY seq`) {
        // Rows this object wrote from journal messages; those written before sequencing have no seq of their own.
        const m = JSON.parse(r.message) as JournalMessage;
        const own = { id: r.entry_id, seq: r.seq, createdAt: r.created_at };
        const row = rowOf(
          m.type === "ledger"
            ? { type: "ledger", entry: { ...m.entry, ...own } }
            : { type: "event", event: { ...m.event, ...own } },
          accountId,
        );
        db.run`INSERT INTO journal_v8 (seq, entry_id, message, created_at)
          VALUES (${row.seq}, ${row.entry_id}, ${row.message}, ${row.created_at})`;
      }
      db.run`DROP TABLE outbox`;
      db.run`ALTER TABLE journal_v8 RENAME TO outbox`;
    },
  },
  {
    id: 9,
    description: "kept answers in compact text, one WITHOUT ROWID table per period, dropped whole past the horizon",
    sql: [],
    run: (db: Sql) => {
      const book = new AnswerTables(db);
      for (const r of db.all<{ key: string; fingerprint: string; body: string; created_at: number }>`
        SELECT key, fingerprint, body, created_at FROM idempotency ORDER BY created_at, key`)
        book.carry(r.created_at, { key: r.key, fingerprint: r.fingerprint }, pack(JSON.parse(r.body)));
      db.run`DROP TABLE idempotency`;
    },
  },
  {
    id: 10,
    description:
      "the membership of an organization and its lease (SPEC §9), in the account row: a pool draw writes no other row",
    sql: [`ALTER TABLE account ADD COLUMN org TEXT`],
  },
];

export const SCHEMA_VERSION = versionOf(MIGRATIONS);
