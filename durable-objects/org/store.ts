/**
 * All of an organization's SQL: its row, the pool's grants, one row per member (a lease issue writes the org row,
 * the member's row, the grants it drew from, its journal rows and the minute's draws), the journal (the same
 * `outbox` table and settlement position as an account's, so the same Outbox sends it), and its kept answers.
 */
import type { GrantRecord } from "../../worker/core/account/state";
import type { OrgEffect, OrgReads, OrgRecord, OrgState, PoolMember } from "../../worker/core/org/state";
import { EMPTY_ORG, orgLedgerId } from "../../worker/core/org/state";
import { DAY_MS, minuteOf } from "../../worker/core/time";
import { catalog } from "../../worker/catalog";
import { ANSWER_HORIZON_MS, AnswerTables } from "../account/answer-book";
import { rowOf } from "../account/journal";
import type { AnswerBook } from "../idempotency";
import { hasSchema, type Migration, migrate } from "../migrations";
import type { Sql } from "../sql";

const MIGRATIONS: readonly Migration[] = [
  {
    id: 1,
    description: "the organization, its pool grants, members and leases, draws per minute, journal and answers",
    sql: [
      `CREATE TABLE IF NOT EXISTS org (singleton INTEGER PRIMARY KEY CHECK (singleton = 1), record TEXT NOT NULL)`,
      `CREATE TABLE IF NOT EXISTS pool_grants (id TEXT PRIMARY KEY, grant TEXT NOT NULL) WITHOUT ROWID`,
      `CREATE TABLE IF NOT EXISTS members (account_id TEXT PRIMARY KEY, member TEXT NOT NULL) WITHOUT ROWID`,
      `CREATE TABLE IF NOT EXISTS draw_minutes (minute INTEGER PRIMARY KEY, amount INTEGER NOT NULL)`,
      `CREATE TABLE IF NOT EXISTS outbox (
         seq INTEGER PRIMARY KEY, entry_id TEXT NOT NULL, message TEXT NOT NULL, created_at INTEGER NOT NULL,
         usage_product TEXT, usage INTEGER)`,
      `CREATE TABLE IF NOT EXISTS settlement (
         singleton INTEGER PRIMARY KEY CHECK (singleton = 1), floor INTEGER NOT NULL, confirmed INTEGER NOT NULL,
         legacy_through INTEGER NOT NULL)`,
      `INSERT OR IGNORE INTO settlement (singleton, floor, confirmed, legacy_through) VALUES (1, 0, 0, 0)`,
    ],
  },
];

/** A confirmed journal row is kept this long (SPEC §7: 7 days). */
const JOURNAL_MS = 7 * DAY_MS;

export class OrgStore {
  private readonly answerTables: AnswerTables;

  constructor(private readonly db: Sql) {
    this.answerTables = new AnswerTables(db, ANSWER_HORIZON_MS);
  }

  hasSchema(): boolean {
    return hasSchema(this.db);
  }

  migrate(): void {
    migrate(this.db, MIGRATIONS);
  }

  load(): OrgState {
    const row = this.db.first<{ record: string }>`SELECT record FROM org WHERE singleton = 1`;
    if (!row) return EMPTY_ORG;
    // Columns this object wrote from its own records.
    return {
      org: JSON.parse(row.record) as OrgRecord,
      grants: this.db.all<{ grant: string }>`SELECT grant FROM pool_grants`.map(
        (r) => JSON.parse(r.grant) as GrantRecord,
      ),
      members: new Map(
        this.db.all<{ member: string }>`SELECT member FROM members`.map((r) => {
          const m = JSON.parse(r.member) as PoolMember;
          return [m.accountId, m];
        }),
      ),
    };
  }

  readonly reads: OrgReads = {
    drawnSince: (fromMs) =>
      this.db.first<{ s: number | null }>`SELECT SUM(amount) AS s FROM draw_minutes WHERE minute >= ${minuteOf(fromMs)}`
        ?.s ?? 0,
  };

  /** Writes what changed, inside the caller's transaction. */
  write(prev: OrgState, next: OrgState, touched: ReadonlySet<string>, effects: readonly OrgEffect[]): void {
    if (next.org && JSON.stringify(prev.org) !== JSON.stringify(next.org))
      this.db.run`INSERT INTO org (singleton, record) VALUES (1, ${JSON.stringify(next.org)})
        ON CONFLICT (singleton) DO UPDATE SET record = excluded.record`;
    const before = new Map(prev.grants.map((g) => [g.id, g]));
    for (const g of next.grants)
      if (before.get(g.id)?.remaining !== g.remaining)
        this.db.run`INSERT INTO pool_grants (id, grant) VALUES (${g.id}, ${JSON.stringify(g)})
          ON CONFLICT (id) DO UPDATE SET grant = excluded.grant`;
    for (const id of touched) {
      const m = next.members.get(id);
      if (m)
        this.db.run`INSERT INTO members (account_id, member) VALUES (${id}, ${JSON.stringify(m)})
          ON CONFLICT (account_id) DO UPDATE SET member = excluded.member`;
    }
    const owner = orgLedgerId(next.org?.orgId ?? "");
    const draws = new Map<number, number>();
    for (const e of effects) {
      if (e.type === "journal") {
        const row = rowOf(e.message, owner);
        this.db.run`INSERT INTO outbox (seq, entry_id, message, created_at)
          VALUES (${row.seq}, ${row.entry_id}, ${row.message}, ${row.created_at})`;
      } else if (e.type === "draw") draws.set(e.minute, (draws.get(e.minute) ?? 0) + e.amount);
    }
    for (const [minute, amount] of draws)
      this.db.run`INSERT INTO draw_minutes (minute, amount) VALUES (${minute}, ${amount})
        ON CONFLICT (minute) DO UPDATE SET amount = amount + excluded.amount`;
  }

  prune(now: number): void {
    this.answerTables.prune(now);
    this.db
      .run`DELETE FROM outbox WHERE seq <= (SELECT confirmed FROM settlement) AND created_at < ${now - JOURNAL_MS}`;
    this.db
      .run`DELETE FROM draw_minutes WHERE minute < ${minuteOf(now - catalog.guards.poolAnomaly.baselineDays * DAY_MS)}`;
  }

  answers<A>(now: number): AnswerBook<A> {
    return this.answerTables.book<A>(now);
  }

  /** The pool's grant remainders (reconciliation's credit position). */
  grantRemainder(): number {
    return (
      this.db.first<{ s: number | null }>`SELECT SUM(json_extract(grant, '$.remaining')) AS s FROM pool_grants`?.s ?? 0
    );
  }
}
