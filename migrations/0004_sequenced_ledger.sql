-- Confirmed settlement (SPEC §7). Every journal entry carries its account's sequence number; the ledger applies each
-- (account_id, account_seq) once, and keeps per account a watermark with running totals up to it.
-- Upgrading: drain the settlement queue first. The consumer of this version takes only sequenced journal batches.
ALTER TABLE ledger ADD COLUMN account_seq INTEGER;
CREATE UNIQUE INDEX IF NOT EXISTS ledger_account_seq ON ledger (account_id, account_seq);
ALTER TABLE events ADD COLUMN account_seq INTEGER;
CREATE UNIQUE INDEX IF NOT EXISTS events_account_seq ON events (account_id, account_seq);

-- One row per account: every entry with account_seq <= watermark is here; `highest` is the highest received (above
-- the watermark: a gap); the running totals cover entries up to the watermark (worker/core/journal.ts, Totals);
-- `checked_seq` is the watermark at which reconciliation last found no drift. It is also the sweep's account list.
CREATE TABLE IF NOT EXISTS ledger_heads (
  account_id TEXT PRIMARY KEY,
  watermark INTEGER NOT NULL,
  highest INTEGER NOT NULL,
  credit_position INTEGER NOT NULL,
  charged_total INTEGER NOT NULL,
  checked_seq INTEGER NOT NULL DEFAULT 0,
  updated_at INTEGER NOT NULL
);

-- Accounts settled before sequencing start with the totals of their unsequenced entries, at watermark 0; their
-- objects send a floor that raises the watermark past what they settled then.
INSERT INTO ledger_heads (account_id, watermark, highest, credit_position, charged_total, checked_seq, updated_at)
SELECT a.account_id, 0, 0,
  COALESCE(SUM(CASE WHEN l.kind IN ('grant', 'refund') THEN l.amount
                    WHEN l.kind = 'expiry' OR (l.kind = 'charge' AND l.layer = 'grant') THEN -l.amount ELSE 0 END), 0),
  COALESCE(SUM(CASE WHEN l.kind = 'charge' THEN l.amount ELSE 0 END), 0),
  0, a.first_settled_at
FROM accounts a LEFT JOIN ledger l ON l.account_id = a.account_id
GROUP BY a.account_id;

DROP TABLE accounts;
