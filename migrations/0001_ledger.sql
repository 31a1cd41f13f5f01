-- Append-only ledger of every balance change, written by the settlement queue consumer.
-- `id` is the outbox entry id: INSERT OR IGNORE on it makes a redelivery a no-op.
CREATE TABLE IF NOT EXISTS ledger (
  seq INTEGER PRIMARY KEY AUTOINCREMENT,
  id TEXT NOT NULL UNIQUE,
  account_id TEXT NOT NULL,
  kind TEXT NOT NULL CHECK (kind IN ('charge', 'grant', 'expiry', 'refund', 'write_off', 'hold', 'release', 'reset')),
  amount INTEGER NOT NULL CHECK (amount > 0),
  layer TEXT CHECK (layer IS NULL OR layer IN ('window', 'grant', 'flex')),
  product TEXT,
  grant_id TEXT,
  decision_id TEXT,
  hold_id TEXT,
  idempotency_key TEXT,
  rate_card_version TEXT,
  note TEXT,
  created_at INTEGER NOT NULL,
  settled_at INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS ledger_by_account ON ledger (account_id, seq);

-- Every account that has settled an entry: the reconciliation sweep's list.
CREATE TABLE IF NOT EXISTS accounts (
  account_id TEXT PRIMARY KEY,
  first_settled_at INTEGER NOT NULL
);

-- Account events (credits.low, window.exhausted, account.credits_paused, topup.requested, reset.applied, …).
CREATE TABLE IF NOT EXISTS events (
  id TEXT PRIMARY KEY,
  account_id TEXT NOT NULL,
  type TEXT NOT NULL,
  data TEXT NOT NULL,
  created_at INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS events_by_account ON events (account_id, created_at);

-- Audit of admin global resets: who, when, scope, reason.
CREATE TABLE IF NOT EXISTS admin_resets (
  reset_id TEXT PRIMARY KEY,
  seq INTEGER NOT NULL,
  effective_at INTEGER NOT NULL,
  scope TEXT NOT NULL,
  banked_resets TEXT NOT NULL,
  grant_banked_resets TEXT,
  reason TEXT NOT NULL,
  actor TEXT NOT NULL
);

-- Results of reconciliation sweeps (cron and on demand).
CREATE TABLE IF NOT EXISTS reconciliation_runs (
  id TEXT PRIMARY KEY,
  ran_at INTEGER NOT NULL,
  checked INTEGER NOT NULL,
  drifted TEXT NOT NULL
);
