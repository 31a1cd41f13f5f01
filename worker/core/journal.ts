/** The account's journal: every balance change and event, as the outbox sends it to settlement (SPEC §7). */

export const LEDGER_KINDS = ["charge", "grant", "expiry", "refund", "write_off", "hold", "release", "reset"] as const;
export type LedgerKind = (typeof LEDGER_KINDS)[number];
export type Layer = "window" | "grant" | "flex";

/** One ledger entry. `amount` is positive; `kind` gives the direction. */
export interface LedgerEntry {
  id: string;
  accountId: string;
  kind: LedgerKind;
  amount: number;
  layer?: Layer;
  product?: string;
  grantId?: string;
  decisionId?: string;
  holdId?: string;
  idempotencyKey?: string;
  rateCardVersion?: string;
  createdAt: number;
  note?: string;
}

export interface AccountEvent {
  id: string;
  accountId: string;
  type: string;
  createdAt: number;
  data: Record<string, unknown>;
}

export type JournalMessage = { type: "ledger"; entry: LedgerEntry } | { type: "event"; event: AccountEvent };
