/** Ordered schema migrations, and the one runner both objects use. */
import type { Sql } from "./sql";

/**
 * One step of an object's schema; `id`s run 1, 2, 3… and each is applied once, in order. `run`, if any, comes after
 * the step's `sql`, for data SQL alone cannot carry over (rows rewritten in another encoding).
 */
export interface Migration {
  id: number;
  description: string;
  sql: string[];
  run?: (db: Sql) => void;
}

/** Whether an object's storage has a schema at all (a never-written object has none). */
export const hasSchema = (db: Sql): boolean =>
  db.first`SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'schema_version'` !== undefined;

/** The version the last migration brings the schema to. */
export const versionOf = (migrations: readonly Migration[]): number => migrations[migrations.length - 1].id;

/**
 * Brings the stored schema up to the last migration, inside the caller's transaction: nothing runs when the stored
 * `schema_version` is current (or ahead, as after a rollback of the code); otherwise each later migration runs in
 * order and the version is recorded once. No `schema_version` at all means a new object (version 0).
 */
export function migrate(db: Sql, migrations: readonly Migration[]): void {
  migrations.forEach((m, i) => {
    if (m.id !== i + 1) throw new Error(`migration ${i + 1} has id ${m.id}: ids must run 1, 2, 3…`);
  });
  db.run`CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)`;
  const stored = db.first<{ version: number | null }>`SELECT MAX(version) AS version FROM schema_version`?.version ?? 0;
  const pending = migrations.filter((m) => m.id > stored);
  if (pending.length === 0) return;
  for (const m of pending) {
    for (const statement of m.sql) db.exec(statement);
    m.run?.(db);
  }
  db.run`DELETE FROM schema_version`;
  db.run`INSERT INTO schema_version (version) VALUES (${versionOf(pending)})`;
}
