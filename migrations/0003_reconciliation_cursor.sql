-- The reconciliation sweep's position (SPEC §7): one row. Each cron run checks one page of `accounts` after
-- `last_account_id` and moves it on; NULL means the next run starts a new pass at the first account.
-- `pass_started_at` is when the current pass began (NULL before the first run of a pass) and `pass_checked` how many
-- accounts it has checked so far: a pass that outlives the configured period logs a warning.
CREATE TABLE IF NOT EXISTS reconciliation_cursor (
  id INTEGER PRIMARY KEY CHECK (id = 1),
  last_account_id TEXT,
  pass_started_at INTEGER,
  pass_checked INTEGER NOT NULL DEFAULT 0,
  updated_at INTEGER NOT NULL
);
