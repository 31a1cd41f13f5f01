-- Usage rollups (SPEC §7). Money moves stay in the ledger entry by entry; window usage becomes one `usage` row per
-- account, product and hour (id `usage:<account>:<product>:<hour start ms>`), whose amount and `usage_count` grow as
-- window charges settle; its `created_at` is its first charge's. The kind CHECK cannot be altered in place, so the
-- table is rebuilt with every row and its seq kept; `lease` and `lease_return` are the organizations' kinds (SPEC §9).
-- Window charges settled before this migration stay as they are, entry by entry.
CREATE TABLE ledger_next (
  seq INTEGER PRIMARY KEY AUTOINCREMENT,
  id TEXT NOT NULL UNIQUE,
  account_id TEXT NOT NULL,
  kind TEXT NOT NULL CHECK (kind IN ('charge', 'grant', 'expiry', 'refund', 'write_off', 'hold', 'release', 'reset',
    'usage', 'lease', 'lease_return')),
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
  settled_at INTEGER NOT NULL,
  account_seq INTEGER,
  usage_count INTEGER
);
INSERT INTO ledger_next (seq, id, account_id, kind, amount, layer, product, grant_id, decision_id, hold_id,
    idempotency_key, rate_card_version, note, created_at, settled_at, account_seq)
  SELECT seq, id, account_id, kind, amount, layer, product, grant_id, decision_id, hold_id, idempotency_key,
    rate_card_version, note, created_at, settled_at, account_seq FROM ledger;
DROP TABLE ledger;
ALTER TABLE ledger_next RENAME TO ledger;
CREATE INDEX IF NOT EXISTS ledger_by_account ON ledger (account_id, seq);
-- Partial: rollups and rows settled before sequencing have no seq, and need no entry here.
CREATE UNIQUE INDEX IF NOT EXISTS ledger_account_seq ON ledger (account_id, account_seq) WHERE account_seq IS NOT NULL;
