/** The account's journal: every balance change and event, as the outbox sends it to settlement (SPEC §7). */
import { uuidv7 } from "./ids";

export const LEDGER_KINDS = [
  "charge",
  "grant",
  "expiry",
  "refund",
  "write_off",
  "hold",
  "release",
  "reset",
  "lease",
  "lease_return",
] as const;
export type LedgerKind = (typeof LEDGER_KINDS)[number];
/** The layers that can pay (the ledger's `layer` CHECK, migrations/0006_pools.sql); `pool`: an organization's (SPEC §9). */
export const LAYERS = ["window", "grant", "flex", "pool"] as const;
export type Layer = (typeof LAYERS)[number];

/** One ledger entry. `amount` is positive; `kind` gives the direction. */
export interface LedgerEntry {
  id: string;
  /** the account's journal sequence number */
  seq: number;
  accountId: string;
  kind: LedgerKind;
  amount: number;
  layer?: Layer;
  product?: string;
  grantId?: string;
  /** a member's pool charge, lease or return: the organization it drew from */
  orgId?: string;
  /** an organization's lease or return: the member it went to or came from */
  memberId?: string;
  decisionId?: string;
  holdId?: string;
  idempotencyKey?: string;
  rateCardVersion?: string;
  createdAt: number;
  note?: string;
}

export interface AccountEvent {
  id: string;
  /** the account's journal sequence number (events share the sequence with ledger entries) */
  seq: number;
  accountId: string;
  type: string;
  createdAt: number;
  data: Record<string, unknown>;
}

export type JournalMessage = { type: "ledger"; entry: LedgerEntry } | { type: "event"; event: AccountEvent };

/** Who writes a journal entry, and when: its owner (an account, or `org/<orgId>`), both clocks, the request's key. */
export interface JournalAuthor {
  owner: string;
  now: number;
  wallNow: number;
  idempotencyKey?: string;
}

export type EntryFields = Omit<LedgerEntry, "id" | "seq" | "accountId" | "createdAt">;

/** A ledger entry as a step journals it, with the owner's next sequence number. */
export const ledgerMessage = (seq: number, by: JournalAuthor, e: EntryFields): JournalMessage => ({
  type: "ledger",
  entry: {
    id: uuidv7(by.wallNow),
    seq,
    accountId: by.owner,
    createdAt: by.now,
    ...(by.idempotencyKey ? { idempotencyKey: by.idempotencyKey } : {}),
    ...e,
  },
});

/** An event as a step journals it (events share the sequence with ledger entries). */
export const eventMessage = (
  seq: number,
  by: JournalAuthor,
  type: string,
  data: Record<string, unknown>,
): JournalMessage => ({
  type: "event",
  event: { id: uuidv7(by.wallNow), seq, accountId: by.owner, type, createdAt: by.now, data },
});

/** The ledger entry or the event a journal message carries (both have id, seq, accountId and createdAt). */
export const itemOf = (m: JournalMessage): LedgerEntry | AccountEvent => (m.type === "ledger" ? m.entry : m.event);
export const seqOf = (m: JournalMessage): number => itemOf(m).seq;
export const idOf = (m: JournalMessage): string => itemOf(m).id;

/**
 * What one settlement queue message carries: a run of one account's journal, as many entries as fit in a message
 * (SPEC §7). `floor` is the sequence number up to which the account's entries were settled before the journal was
 * sequenced (0 for every account created since): the ledger counts everything at or below it as held.
 */
export interface JournalBatch {
  accountId: string;
  floor: number;
  entries: JournalMessage[];
  /**
   * Set when the batch holds entries written before the journal was sequenced: the ledger may already hold them
   * without a `seq` (a send that arrived but was never marked delivered), and gives them theirs.
   */
  upgrade?: true;
}

/**
 * The running totals reconciliation compares (SPEC §7): the credit position (grants + refunds − expiries − charges
 * paid by grants; holds and releases cancel out, as a settled hold is written as release-all then charges) and every
 * charge. The D1 consumer keeps the same sums in SQL (worker/settlement/consumer.ts, `ADVANCE`).
 */
export interface Totals {
  creditPosition: number;
  charged: number;
}

export function totalsDelta(e: LedgerEntry): Totals {
  const credit =
    e.kind === "grant" || e.kind === "refund" || (e.kind === "lease_return" && isPoolGrantSide(e))
      ? e.amount
      : e.kind === "expiry" ||
          (e.kind === "charge" && e.layer === "grant") ||
          (e.kind === "lease" && isPoolGrantSide(e))
        ? -e.amount
        : 0;
  return { creditPosition: credit, charged: e.kind === "charge" ? e.amount : 0 };
}

/**
 * A pool's own lease or return of grant credits (the organization's journal: it names the member): it moves credits
 * out of or back into the pool's grants. A member's side of a lease (it names the organization) and flex leases
 * (no grant) move no credit position. The D1 consumer's `CREDIT` sum mirrors this.
 */
const isPoolGrantSide = (e: LedgerEntry): boolean => e.memberId !== undefined && e.grantId !== undefined;

/**
 * Window usage, as opposed to money (SPEC §7): what the plan windows paid or reserved. The journal and the archive
 * keep these entry by entry; the D1 ledger keeps window charges as hourly `usage` rollups, and a window hold or
 * release (a reservation, netted out when its hold settles) only in the journal and the archive.
 */
export const isUsage = (e: LedgerEntry): boolean => e.layer === "window";
