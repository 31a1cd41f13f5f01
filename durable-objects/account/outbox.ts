/**
 * The journal as outbox (SPEC §7). Rows are written in the same transaction as the change they record, each with
 * the account's next sequence number. After the commit they are sent to the settlement queue, packed as many to a
 * message as fit. Nothing marks a row sent: the ledger's watermark (the highest `seq` up to which D1 holds every
 * entry) says what has arrived. A check, run by the object's alarm and by reconciliation, learns the watermark,
 * sends again what is overdue above it, and lets pruning remove rows at or below it. See docs/settlement.md.
 */
import type { JournalBatch, JournalMessage, Totals } from "../../worker/core/journal";
import { itemOf, totalsDelta } from "../../worker/core/journal";
import { accountIdIn, type JournalRow, messageOf } from "./journal";
import type { RefundableEntry } from "../../worker/core/account/credits";
import type { LedgerHead } from "../../worker/settlement/heads";
import type { Sql } from "../sql";

export type { Sender } from "../../worker/settlement/fault-points";
import type { Sender } from "../../worker/settlement/fault-points";

/** Queues take 128 KB a message and 256 KB a `sendBatch`; both are kept well under. */
const MESSAGE_BYTES = 100_000;
const SEND_BYTES = 200_000;
const READ_ROWS = 500;
/** A step's journal rows are sent this long after it, with every other step's of that moment (one message). */
export const FLUSH_DELAY_MS = 200;
/** A check follows every send by this much; while it finds entries overdue it backs off, doubling up to the cap. */
export const CHECK_MS = 5_000;
const MAX_CHECK_MS = 5 * 60_000;

const bytes = new TextEncoder();

/** What a settlement check did: when the next is due (null: all confirmed) and what it sent again. */
export interface CheckResult {
  nextAt: number | null;
  resent: { fromSeq: number; toSeq: number } | null;
}

export class Outbox {
  private flushing: Promise<void> | null = null;
  /** Rows up to here were handed to the queue by this instance; a new instance starts from `confirmed`. */
  private sentThrough = 0;
  /** `sentThrough` when the previous check ran: rows up to it that the ledger still lacks are overdue. */
  private checkedThrough = 0;
  /** Checks in a row that found entries overdue: the backoff's exponent. */
  private overdueChecks = 0;
  private position: { floor: number; confirmed: number; legacyThrough: number } | null = null;
  private accountId: string | null = null;
  /** False only once a drain found nothing unsent; a step that journals sets it. */
  pending = true;

  constructor(
    private readonly db: Sql,
    private readonly sender: () => Sender,
    private readonly hasSchema: () => boolean,
    /** whose journal this is (the messages' `accountId`): the account's, or an organization's `org/<id>` */
    private readonly owner: () => string = () => accountIdIn(db),
  ) {}

  /** The legacy floor, the confirmed watermark and the last unsequenced row, read once. */
  private get settled(): { floor: number; confirmed: number; legacyThrough: number } {
    this.position ??= this.db.first<{ floor: number; confirmed: number; legacyThrough: number }>`
      SELECT floor, confirmed, legacy_through AS legacyThrough FROM settlement WHERE singleton = 1` ?? {
      floor: 0,
      confirmed: 0,
      legacyThrough: 0,
    };
    return this.position;
  }

  /** The message a journal row holds (the account's id is read once: it never changes). */
  private messageOf(row: JournalRow): JournalMessage {
    this.accountId ||= this.owner();
    return messageOf(row, this.accountId);
  }

  get confirmed(): number {
    return this.hasSchema() ? this.settled.confirmed : 0;
  }

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
        const from = Math.max(this.sentThrough, this.settled.confirmed);
        const rows = this.db.all<JournalRow>`
          SELECT seq, entry_id, message, created_at FROM outbox WHERE seq > ${from} ORDER BY seq LIMIT ${READ_ROWS}`;
        if (rows.length === 0) {
          this.pending = false;
          return;
        }
        for (const send of this.packed(rows)) {
          await this.sender().sendBatch(send.messages.map((body) => ({ body, contentType: "json" as const })));
          this.sentThrough = Math.max(this.sentThrough, send.lastSeq);
        }
      }
    } catch (err) {
      // What was not sent stays above `sentThrough`; the next check sends it.
      console.error(
        JSON.stringify({ event: "outbox.send_failed", error: err instanceof Error ? err.message : String(err) }),
      );
    }
  }

  /** Rows packed into messages of at most MESSAGE_BYTES, and messages into sends of at most SEND_BYTES. */
  private packed(rows: JournalRow[]): { messages: JournalBatch[]; lastSeq: number }[] {
    const { floor, legacyThrough } = this.settled;
    const sends: { messages: JournalBatch[]; lastSeq: number }[] = [];
    let send = { messages: [] as JournalBatch[], lastSeq: 0, bytes: 0 };
    let message: JournalBatch | null = null;
    let messageBytes = 0;
    for (const row of rows) {
      const entry = this.messageOf(row);
      const size = bytes.encode(JSON.stringify(entry)).length;
      if (!message || messageBytes + size > MESSAGE_BYTES) {
        if (send.bytes + messageBytes + size > SEND_BYTES && send.messages.length > 0) {
          sends.push(send);
          send = { messages: [], lastSeq: 0, bytes: 0 };
        }
        message = { accountId: itemOf(entry).accountId, floor, entries: [] };
        send.messages.push(message);
        messageBytes = 200;
        send.bytes += messageBytes;
      }
      if (row.seq <= legacyThrough) message.upgrade = true;
      message.entries.push(entry);
      messageBytes += size;
      send.bytes += size;
      send.lastSeq = row.seq;
    }
    if (send.messages.length > 0) sends.push(send);
    return sends;
  }

  /**
   * Learns the ledger's watermark: rows at or below it are held by the ledger and may be pruned once past their
   * horizon. A watermark past the journal's last `seq` is not believed (it would mean another journal wrote under
   * this account's id); it is logged and confirmed only up to `lastSeq`.
   */
  confirm(watermark: number, lastSeq: number): void {
    if (!this.hasSchema()) return;
    if (watermark > lastSeq) console.error(JSON.stringify({ event: "settlement.watermark_ahead", watermark, lastSeq }));
    const w = Math.min(watermark, lastSeq);
    if (w <= this.settled.confirmed) return;
    this.db.run`UPDATE settlement SET confirmed = ${w} WHERE singleton = 1`;
    this.settled.confirmed = w;
  }

  /**
   * A settlement check, given the ledger's head: confirms what the ledger holds; sends again, from the watermark on,
   * when something sent before the previous check is still missing (lost in transport, a consumer that gave up, a
   * gap); sends what was never sent; and says when to check next (backing off while entries stay overdue).
   */
  async check(head: LedgerHead, lastSeq: number): Promise<CheckResult> {
    if (!this.hasSchema()) return { nextAt: null, resent: null };
    this.confirm(head.watermark, lastSeq);
    const { confirmed } = this.settled;
    if (confirmed >= lastSeq) {
      this.overdueChecks = 0;
      return { nextAt: null, resent: null };
    }
    let resent: CheckResult["resent"] = null;
    // A drain in progress finishes first, so the resend below starts from a settled position.
    if (this.flushing) await this.flushing;
    if (confirmed < this.checkedThrough) {
      resent = { fromSeq: confirmed + 1, toSeq: this.sentThrough };
      console.warn(
        JSON.stringify({ event: "settlement.resend", ...resent, highest: head.highest, gap: head.highest > confirmed }),
      );
      this.sentThrough = confirmed;
      this.overdueChecks++;
    } else this.overdueChecks = 0;
    this.pending = true;
    await this.flush();
    this.checkedThrough = this.sentThrough;
    return { nextAt: Date.now() + Math.min(MAX_CHECK_MS, CHECK_MS * 2 ** this.overdueChecks), resent };
  }

  /** Whether the journal holds rows the ledger has not confirmed. */
  hasUnconfirmed(lastSeq: number): boolean {
    return this.hasSchema() && this.settled.confirmed < lastSeq;
  }

  /** The totals of the ledger entries above `seq` still in the journal (entries in flight, for a cut). */
  totalsAbove(seq: number): Totals {
    const out = { creditPosition: 0, charged: 0 };
    if (!this.hasSchema()) return out;
    for (const r of this.db.all<JournalRow>`SELECT seq, entry_id, message, created_at FROM outbox WHERE seq > ${seq}`) {
      const m = this.messageOf(r);
      if (m.type !== "ledger") continue;
      const d = totalsDelta(m.entry);
      out.creditPosition += d.creditPosition;
      out.charged += d.charged;
    }
    return out;
  }

  /** The legacy floor (entries up to it were settled before sequencing). */
  get floor(): number {
    return this.hasSchema() ? this.settled.floor : 0;
  }

  /**
   * A ledger entry the ledger has not confirmed yet, by id: a scan of the rows above the watermark (`entry_id` has no
   * index, which would cost a row written per entry). Whatever is at or below it, the ledger holds.
   */
  ledgerEntry(entryId: string): RefundableEntry | null | undefined {
    const row = this.db.first<JournalRow>`SELECT seq, entry_id, message, created_at FROM outbox
      WHERE seq > ${this.settled.confirmed} AND entry_id = ${entryId}`;
    if (!row) return undefined;
    const m = this.messageOf(row);
    return m.type === "ledger" ? { kind: m.entry.kind, amount: m.entry.amount, layer: m.entry.layer ?? null } : null;
  }

  /** A charge or write-off a refund may name: from the journal while unconfirmed, else from the D1 ledger. */
  async refundableEntry(ledger: D1Database, accountId: string, entryId: string) {
    const local = this.hasSchema() ? this.ledgerEntry(entryId) : undefined;
    if (local !== undefined) return local;
    return ledger
      .prepare("SELECT kind, amount, layer FROM ledger WHERE id = ? AND account_id = ?")
      .bind(entryId, accountId)
      .first<RefundableEntry>();
  }
}
