/** SQLite schema of the account object. Bump SCHEMA_VERSION and append statements to change it. */
export const SCHEMA_VERSION = 3;

export const ACCOUNT_SCHEMA = [
  `CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)`,
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
     key TEXT PRIMARY KEY, fingerprint TEXT NOT NULL, status INTEGER NOT NULL, body TEXT NOT NULL, created_at INTEGER NOT NULL)`,
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
     id TEXT PRIMARY KEY, requested_at INTEGER NOT NULL, amount INTEGER NOT NULL, state TEXT NOT NULL, month TEXT NOT NULL)`,
];

/** Steps from one schema version to the next, applied in order when the object first writes or finds an older schema. */
export const SCHEMA_MIGRATIONS: Record<number, string[]> = {
  2: [
    `ALTER TABLE account ADD COLUMN resumed_at INTEGER`,
    // Window charges of the last week: lets a global reset forgive exactly what came before its effectiveAt.
    `CREATE TABLE IF NOT EXISTS window_charges (product TEXT NOT NULL, at INTEGER NOT NULL, amount INTEGER NOT NULL)`,
    `CREATE INDEX IF NOT EXISTS window_charges_at ON window_charges (product, at)`,
  ],
  3: [
    // Credit spend already in the resume's minute when the operator resumed: the anomaly guard counts from the resume instant.
    `ALTER TABLE account ADD COLUMN resumed_spend INTEGER NOT NULL DEFAULT 0`,
    // Every credit ever granted or refunded: kept at or below 2^53 − 1 so no stored total or ledger sum can pass it.
    `ALTER TABLE account ADD COLUMN granted_total INTEGER NOT NULL DEFAULT 0`,
    `UPDATE account SET granted_total = (SELECT COALESCE(SUM(amount), 0) FROM grants)`,
    // What has been refunded against each charge or write-off that was refunded at all.
    `CREATE TABLE IF NOT EXISTS entry_refunds (entry_id TEXT PRIMARY KEY, refunded INTEGER NOT NULL) WITHOUT ROWID`,
  ],
};
