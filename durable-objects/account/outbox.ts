/**
 * The outbox: journal rows written in the same transaction as the change they record, sent to the settlement queue
 * after the commit. A row is marked delivered only after its send resolved; anything unsent is sent again by the alarm.
 */
import type { JournalMessage } from "../../worker/core/journal";
import { MINUTE_MS } from "../../worker/core/time";
import type { Sql } from "../sql";

export type Sender = Pick<Queue<JournalMessage>, "sendBatch">;

const SEND_BATCH = 100;
export const OUTBOX_RETRY_MS = 5_000;

export class Outbox {
  private flushing: Promise<void> | null = null;
  /** False only once a drain found nothing undelivered; a step that journals sets it. */
  pending = true;

  constructor(
    private readonly db: Sql,
    private readonly sender: () => Sender,
    private readonly retryLater: (at: number) => Promise<void>,
    private readonly hasSchema: () => boolean,
  ) {}

  /** One drain at a time; a call during a drain joins it (the drain loops until nothing is left). */
  flush(): Promise<void> {
    if (!this.flushing) {
      const drain = this.drain();
      this.flushing = drain;
      // Cleared only after the assignment, so a drain that finishes at once cannot leave the flag set.
      void drain.finally(() => {
        if (this.flushing === drain) this.flushing = null;
      });
    }
    return this.flushing;
  }

  private async drain(): Promise<void> {
    if (!this.hasSchema()) {
      this.pending = false;
      return;
    }
    try {
      for (;;) {
        const rows = this.db.all<{ seq: number; message: string }>`
          SELECT seq, message FROM outbox WHERE delivered_at IS NULL ORDER BY seq LIMIT ${SEND_BATCH}`;
        if (rows.length === 0) {
          this.pending = false;
          return;
        }
        // Rows this object wrote from journal messages.
        const batch = rows.map((r) => ({
          body: JSON.parse(r.message) as JournalMessage,
          contentType: "json" as const,
        }));
        await this.sender().sendBatch(batch);
        this.db.run`UPDATE outbox SET delivered_at = ${Date.now()}
          WHERE delivered_at IS NULL AND seq >= ${rows[0].seq} AND seq <= ${rows[rows.length - 1].seq}`;
      }
    } catch (err) {
      // The rows stay undelivered; the alarm sends them again.
      console.error(
        JSON.stringify({ event: "outbox.send_failed", error: err instanceof Error ? err.message : String(err) }),
      );
      await this.retryLater(Date.now() + OUTBOX_RETRY_MS);
    }
  }

  hasUndelivered(): boolean {
    return this.db.first`SELECT 1 FROM outbox WHERE delivered_at IS NULL LIMIT 1` !== undefined;
  }

  /** Undelivered rows, and rows sent in the last minute (perhaps not yet in D1): drift still in flight. */
  inFlight(): { pending: number; sentLastMinute: number } {
    const n = (r: { n: number } | undefined) => r?.n ?? 0;
    return {
      pending: n(this.db.first<{ n: number }>`SELECT COUNT(*) AS n FROM outbox WHERE delivered_at IS NULL`),
      sentLastMinute: n(
        this.db.first<{ n: number }>`SELECT COUNT(*) AS n FROM outbox WHERE delivered_at > ${Date.now() - MINUTE_MS}`,
      ),
    };
  }

  /** A ledger entry still in the outbox, by id. */
  ledgerEntry(entryId: string): { kind: string; amount: number } | null | undefined {
    const row = this.db.first<{ message: string }>`SELECT message FROM outbox WHERE entry_id = ${entryId}`;
    if (!row) return undefined;
    const m = JSON.parse(row.message) as JournalMessage;
    return m.type === "ledger" ? { kind: m.entry.kind, amount: m.entry.amount } : null;
  }

  /** A charge or write-off a refund may name: from the outbox while there, else from the D1 ledger. */
  async refundableEntry(ledger: D1Database, accountId: string, entryId: string) {
    const local = this.hasSchema() ? this.ledgerEntry(entryId) : undefined;
    if (local !== undefined) return local;
    return ledger
      .prepare("SELECT kind, amount FROM ledger WHERE id = ? AND account_id = ?")
      .bind(entryId, accountId)
      .first<{ kind: string; amount: number }>();
  }
}
