/**
 * The journal's rows (table `outbox`, one per ledger entry or event, keyed by its `seq`; SPEC §7). A row keeps what
 * the message says beyond its columns, in the compact text of ./compact.ts: the entry's id is `entry_id`, its `seq`
 * the key, its `createdAt` `created_at`, and its account the object's own. `messageOf` gives the message back as the
 * core made it, key order included. A row also carries the window usage its step recorded (`usage_product`, `usage`):
 * the history `Reads.windowUsageAfter` and the usage panel read.
 */
import { type AccountEvent, itemOf, type JournalMessage, type LedgerEntry } from "../../worker/core/journal";
import type { Sql } from "../sql";
import { pack, unpack } from "./compact";

export type JournalRow = {
  seq: number;
  entry_id: string;
  message: string;
  created_at: number;
};

/** The row of a message: its id, seq and time as columns, and the rest (less the object's own account id) as text. */
export function rowOf(m: JournalMessage, accountId: string): JournalRow {
  const { id, seq, accountId: account, createdAt, ...rest } = itemOf(m);
  // Kept in the text only where it is not what the row's columns and the object give back.
  const own = account === accountId ? {} : { accountId: account };
  return { seq, entry_id: id, message: pack({ ...own, ...rest }), created_at: createdAt };
}

/** The message a row holds, as the core made it (a row written before sequencing gets its `seq` too). */
export function messageOf(row: JournalRow, accountId: string): JournalMessage {
  const rest = unpack(row.message) as Partial<LedgerEntry> & Partial<AccountEvent>;
  const base = { id: row.entry_id, seq: row.seq, accountId };
  if (rest.type !== undefined && rest.kind === undefined) {
    const event: AccountEvent = { ...base, type: rest.type, createdAt: row.created_at, data: {}, ...rest };
    return { type: "event", event };
  }
  const entry = { ...base, createdAt: row.created_at, ...rest } as LedgerEntry;
  return { type: "ledger", entry };
}

/** The account's id (the messages' `accountId`), or "" before the account exists. */
export const accountIdIn = (db: Sql): string =>
  db.first<{ id: string }>`SELECT account_id AS id FROM account WHERE singleton = 1`?.id ?? "";

/** Every message in the journal, oldest first (tests and tools read the journal through this). */
export function journalMessages(db: Sql): JournalMessage[] {
  const accountId = accountIdIn(db);
  return db.all<JournalRow>`SELECT seq, entry_id, message, created_at FROM outbox ORDER BY seq`.map((r) =>
    messageOf(r, accountId),
  );
}
