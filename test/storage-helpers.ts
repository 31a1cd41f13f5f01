/**
 * The account object's storage as tests read and rewind it: its journal as messages (rows hold compact text,
 * durable-objects/account/journal.ts), and a rewind of migrations 6–9 to the layout of schema version 5, so the
 * migration tests can hand an up-to-date object's data to the migrations as an older object would have kept it.
 */
import { ANSWER_HORIZON_MS } from "../durable-objects/account/answer-book";
import { unpack } from "../durable-objects/account/compact";
import { journalMessages } from "../durable-objects/account/journal";
import { sqlOf } from "../durable-objects/sql";
import { itemOf, type JournalMessage } from "../worker/core/journal";

/** Every message in the object's journal, oldest first, as the core made it. */
export const journalIn = (sql: SqlStorage): JournalMessage[] => journalMessages(sqlOf(sql));

/** How many answers the object keeps (SPEC §4), over its answers tables. */
export function keptAnswers(sql: SqlStorage): number {
  return sql
    .exec<{ name: string }>("SELECT name FROM sqlite_master WHERE type = 'table' AND name GLOB 'answers_*'")
    .toArray()
    .reduce((n, t) => n + sql.exec<{ n: number }>(`SELECT COUNT(*) AS n FROM ${t.name}`).one().n, 0);
}

const hex = (b: ArrayBuffer) => [...new Uint8Array(b)].map((x) => x.toString(16).padStart(2, "0")).join("");
const text = (v: SqlStorageValue): string => {
  if (!(v instanceof ArrayBuffer)) return String(v);
  const h = hex(v);
  return v.byteLength === 16
    ? `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`
    : h;
};

/**
 * Rewinds migrations 10, 9, 8, 7 and 6 (10: the `org` column goes): kept answers back into `idempotency` (JSON, hex fingerprint, `created_at` at the
 * start of their period), the journal back into an AUTOINCREMENT `outbox` with full JSON messages and a UNIQUE
 * `entry_id` (its window usage back into `window_charges`), an empty `decisions` table, the windows back into their
 * table; then records version 5.
 */
export function rewindToVersion5(sql: SqlStorage): void {
  sql.exec(`CREATE TABLE idempotency (key TEXT PRIMARY KEY, fingerprint TEXT NOT NULL, body TEXT NOT NULL,
    created_at INTEGER NOT NULL)`);
  sql.exec("CREATE INDEX idempotency_age ON idempotency (created_at)");
  for (const { name } of sql
    .exec<{ name: string }>("SELECT name FROM sqlite_master WHERE type = 'table' AND name GLOB 'answers_*'")
    .toArray()) {
    const period = Number(name.slice("answers_".length));
    for (const r of sql
      .exec<{ key: SqlStorageValue; fingerprint: SqlStorageValue; answer: string }>(
        `SELECT key, fingerprint, answer FROM ${name}`,
      )
      .toArray())
      sql.exec(
        "INSERT INTO idempotency (key, fingerprint, body, created_at) VALUES (?, ?, ?, ?)",
        text(r.key),
        text(r.fingerprint),
        JSON.stringify(unpack(r.answer)),
        (period * ANSWER_HORIZON_MS) / 2,
      );
    sql.exec(`DROP TABLE ${name}`);
  }

  const messages = journalIn(sql);
  const usage = sql
    .exec<{ seq: number; product: string | null; usage: number | null; at: number }>(
      "SELECT seq, usage_product AS product, usage, created_at AS at FROM outbox ORDER BY seq",
    )
    .toArray();
  sql.exec(`CREATE TABLE outbox_v5 (seq INTEGER PRIMARY KEY AUTOINCREMENT, entry_id TEXT NOT NULL UNIQUE,
    message TEXT NOT NULL, created_at INTEGER NOT NULL, delivered_at INTEGER)`);
  messages.forEach((m, i) => {
    const e = itemOf(m);
    sql.exec(
      "INSERT INTO outbox_v5 (seq, entry_id, message, created_at) VALUES (?, ?, ?, ?)",
      e.seq,
      e.id,
      JSON.stringify(m),
      e.createdAt,
    );
    const u = usage[i];
    if (u.product !== null && u.usage !== null)
      sql.exec("INSERT INTO window_charges (product, at, amount) VALUES (?, ?, ?)", u.product, u.at, u.usage);
  });
  sql.exec("DROP TABLE outbox");
  sql.exec("ALTER TABLE outbox_v5 RENAME TO outbox");
  sql.exec("CREATE INDEX window_charges_at ON window_charges (product, at)");

  sql.exec(`CREATE TABLE decisions (id TEXT PRIMARY KEY, created_at INTEGER NOT NULL, product TEXT NOT NULL,
    cost INTEGER NOT NULL, allowed INTEGER NOT NULL, reason TEXT, sources TEXT, idempotency_key TEXT)`);
  sql.exec("CREATE INDEX decisions_age ON decisions (created_at)");

  sql.exec(`CREATE TABLE windows (product TEXT NOT NULL, kind TEXT NOT NULL, opened_at INTEGER, used INTEGER NOT NULL,
    PRIMARY KEY (product, kind))`);
  sql.exec(`INSERT INTO windows (product, kind, opened_at, used)
    SELECT substr(j.key, 1, instr(j.key, ':') - 1), substr(j.key, instr(j.key, ':') + 1),
      json_extract(j.value, '$[0]'), json_extract(j.value, '$[1]') FROM account, json_each(account.windows) AS j`);
  sql.exec("ALTER TABLE account DROP COLUMN windows");
  // migration 10: the membership of an organization
  sql.exec("ALTER TABLE account DROP COLUMN org");
  sql.exec("UPDATE schema_version SET version = 5");
}
