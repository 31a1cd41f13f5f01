/** What the account object's outbox sends to the settlement queue: runs of its journal (worker/core/journal.ts). */
export {
  type AccountEvent,
  type JournalMessage,
  LEDGER_KINDS,
  type LedgerEntry,
  type LedgerKind,
  type Layer,
} from "../core/journal";
export type { JournalBatch as SettlementMessage } from "../core/journal";
