/** What the account object's outbox sends to the settlement queue: its journal messages (worker/core/journal.ts). */
export { type AccountEvent, LEDGER_KINDS, type LedgerEntry, type LedgerKind, type Layer } from "../core/journal";
export type { JournalMessage as SettlementMessage } from "../core/journal";
