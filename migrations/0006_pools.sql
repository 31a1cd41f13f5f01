-- Organizations' pools (SPEC §9). A member's charge paid by its organization's pool has `layer = 'pool'` and names the
-- organization (`org_id`); an organization's own journal (account id `org/<orgId>`) names the member a lease went to
-- or came back from (`member_id`). The layer CHECK cannot be altered in place, so the table is rebuilt with every row
-- and its seq kept, as in 0005.
CREATE TABLE ledger_next (
  seq INTEGER PRIMARY KEY AUTOINCREMENT,
  id TEXT NOT NULL UNIQUE,
  account_id TEXT NOT NULL,
  kind TEXT NOT NULL CHECK (kind IN ('charge', 'grant', 'expiry', 'refund', 'write_off', 'hold', 'release', 'reset',
    'usage', 'lease', 'lease_return')),
  amount INTEGER NOT NULL CHECK (amount > 0),
  layer TEXT CHECK (layer IS NULL OR layer IN ('window', 'grant', 'flex', 'pool')),
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
  usage_count INTEGER,
  org_id TEXT,
  member_id TEXT
);
INSERT INTO ledger_next (seq, id, account_id, kind, amount, layer, product, grant_id, decision_id, hold_id,
    idempotency_key, rate_card_version, note, created_at, settled_at, account_seq, usage_count)
  SELECT seq, id, account_id, kind, amount, layer, product, grant_id, decision_id, hold_id, idempotency_key,
    rate_card_version, note, created_at, settled_at, account_seq, usage_count FROM ledger;
DROP TABLE ledger;
ALTER TABLE ledger_next RENAME TO ledger;
CREATE INDEX IF NOT EXISTS ledger_by_account ON ledger (account_id, seq);
CREATE UNIQUE INDEX IF NOT EXISTS ledger_account_seq ON ledger (account_id, account_seq) WHERE account_seq IS NOT NULL;
