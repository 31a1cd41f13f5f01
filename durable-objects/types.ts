import type { GrantKind, Product } from "../worker/catalog";
import type { ResetEpoch } from "../worker/core/account/state";
import type { IdempotencyKey } from "./idempotency";

export type { AutoTopUpConfig, ResetEpoch } from "../worker/core/account/state";
export type { Charge } from "../worker/core/pricing";

/** What every call into an account object carries. */
export interface CallContext {
  accountId: string;
  /** request time, epoch ms (the test clock's when enabled) */
  now: number;
  requestId: string;
  /** present on every mutating call */
  idempotency?: IdempotencyKey;
  /** global resets known to the caller, oldest first */
  resets?: ResetEpoch[];
  /** `?include=account`: decisions carry the full account summary */
  includeAccount?: boolean;
}

/** What every call into an organization's object carries. */
export interface OrgCallContext {
  orgId: string;
  now: number;
  requestId: string;
  idempotency?: IdempotencyKey;
}

export interface GrantRequest {
  amount: number;
  kind: GrantKind;
  expiresAt?: number;
  products?: Product[];
  topUpId?: string;
  priority?: number;
}

export interface RefundRequest {
  amount: number;
  reason: string;
  entryId?: string;
}

/** An account object's totals at the ledger's watermark, for reconciliation (SPEC §7). */
export interface SettlementCut {
  /** the journal's last sequence number */
  lastSeq: number;
  /** the sequence number the totals stand at: the ledger's watermark (or the object's legacy floor, if higher) */
  cutSeq: number;
  /** credit position (grant remainders + credits held) and charges, as of `cutSeq` */
  creditPosition: number;
  charged: number;
  /** what this check sent again because it was overdue; null if nothing */
  resent: { fromSeq: number; toSeq: number } | null;
}
