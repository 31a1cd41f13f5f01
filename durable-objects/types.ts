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
