/**
 * The ledger's head per account (`ledger_heads`, migrations/0004_sequenced_ledger.sql): the watermark, the highest
 * `seq` after which every entry 1..watermark is in D1, and the running totals up to it (SPEC §7). The consumer
 * advances it; account objects and reconciliation read it.
 */
export interface LedgerHead {
  /** every journal entry with seq ≤ watermark is in the ledger */
  watermark: number;
  /** the highest seq received; above the watermark, a gap */
  highest: number;
  /** running totals over entries 1..watermark (worker/core/journal.ts `Totals`) */
  creditPosition: number;
  charged: number;
  /** the last watermark at which reconciliation found no drift */
  checkedSeq: number;
}

export const NO_HEAD: LedgerHead = { watermark: 0, highest: 0, creditPosition: 0, charged: 0, checkedSeq: 0 };

export async function readHead(db: D1Database, accountId: string): Promise<LedgerHead | null> {
  return db
    .prepare(
      `SELECT watermark, highest, credit_position AS creditPosition, charged_total AS charged, checked_seq AS checkedSeq
       FROM ledger_heads WHERE account_id = ?`,
    )
    .bind(accountId)
    .first<LedgerHead>();
}
