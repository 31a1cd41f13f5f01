import { faultPoints, type Sender } from "../worker/settlement/fault-points";
import { NO_HEAD, readHead } from "../worker/settlement/heads";
import { ledgerFor, settlementQueueFor } from "../worker/settlement/shards";
import { CHECK_MS, FLUSH_DELAY_MS, type Outbox } from "./account/outbox";

/**
 * What an object that keeps a journal does around its outbox, the account and the organization alike: one alarm at
 * the earliest time anything is due, a step's rows sent FLUSH_DELAY_MS after it, and the settlement check against
 * its ledger's head (docs/settlement.md).
 */
export class JournalShell {
  private alarmAt: number | null = null;
  /** a flush waiting out FLUSH_DELAY_MS */
  private flushWaiting: Promise<void> | null = null;

  constructor(
    private readonly ctx: DurableObjectState,
    private readonly env: Env,
    private readonly outbox: Outbox,
  ) {}

  /** At start: the alarm storage holds; what the ledger has not confirmed gets a check, whatever became of the last alarm. */
  async restore(lastSeq: number): Promise<void> {
    this.alarmAt = await this.ctx.storage.getAlarm();
    if (this.alarmAt === null && this.outbox.hasUnconfirmed(lastSeq)) await this.ensureAlarm(Date.now());
  }

  /** The alarm is running: the next one is set afresh. */
  alarmRan(): void {
    this.alarmAt = null;
  }

  async ensureAlarm(at: number): Promise<void> {
    if (this.alarmAt !== null && this.alarmAt <= at) return;
    this.alarmAt = at;
    await this.ctx.storage.setAlarm(at);
  }

  /**
   * After a commit that wrote journal rows. They are already durable, so nothing waits for the queue: they are sent
   * FLUSH_DELAY_MS after the first unsent step, not after each one, so a busy object's steps of that moment travel
   * in one message (issue #15: ≤ 0.05 queue messages a decision at 200 decisions/s); the check confirms them.
   */
  journaled(): void {
    this.outbox.pending = true;
    if (!this.flushWaiting) {
      const waiting = new Promise<void>((resolve) => setTimeout(resolve, FLUSH_DELAY_MS)).then(() => {
        this.flushWaiting = null;
        return this.outbox.flush();
      });
      this.flushWaiting = waiting;
      this.ctx.waitUntil(waiting);
    }
    void this.ensureAlarm(Date.now() + CHECK_MS);
  }

  /** Learns the ledger's head (D1) and runs the outbox's check; returns when the next is due, null when all is confirmed. */
  async settlementCheck(ledgerId: string | undefined, lastSeq: number): Promise<number | null> {
    if (!ledgerId || !this.outbox.hasUnconfirmed(lastSeq)) return null;
    try {
      const head = (await readHead(ledgerFor(this.env, ledgerId), ledgerId)) ?? NO_HEAD;
      return (await this.outbox.check(head, lastSeq)).nextAt;
    } catch (err) {
      // The ledger could not be read: send what was never sent, and ask again later.
      console.error(JSON.stringify({ event: "settlement.head_unreadable", error: String(err) }));
      await this.outbox.flush();
      return Date.now() + CHECK_MS;
    }
  }
}

/** A journal's settlement queue (its ledger shard's), through the sender fault point when a test sets one. */
export function settlementQueue(env: Env, ledgerId: string | undefined): Sender {
  if (!ledgerId) throw new Error("a journal send before its owner exists");
  const queue = settlementQueueFor(env, ledgerId);
  return faultPoints.sender ? faultPoints.sender(queue) : queue;
}
