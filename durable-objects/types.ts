import type { Product, PlanId, GrantKind } from "../worker/catalog";
import type { ErrorCode } from "../worker/errors";
import type { WindowView } from "../worker/core/windows";

/** A global reset as the control object publishes it (SPEC §5). */
export interface ResetEpoch {
  seq: number;
  resetId: string;
  effectiveAt: number;
  products: Product[] | null;
  plans: PlanId[] | null;
  bankedResets: "keep" | "restore";
  grantBankedResets: { count: number; expiresInHours: number } | null;
}

/** What every call into an account object carries. */
export interface CallContext {
  accountId: string;
  /** request time, epoch ms (the test clock's when enabled) */
  now: number;
  requestId: string;
  /** present on every mutating call */
  idempotency?: { key: string; fingerprint: string };
  /** global resets known to the caller, oldest first */
  resets?: ResetEpoch[];
  /** `?include=account`: decisions carry the full account summary */
  includeAccount?: boolean;
}

/** The answer of an account object's method; the worker turns it into HTTP. */
export interface Outcome {
  status: number;
  // eslint-disable-next-line @typescript-eslint/no-explicit-any -- JSON built by the object, checked by the route's schema in the OpenAPI document
  body: any;
  replayed?: boolean;
  // eslint-disable-next-line @typescript-eslint/no-explicit-any -- see body
  error?: { code: ErrorCode; message: string; details?: any };
  /** a decision's product windows as they stand after it, for the RateLimit header fields */
  rateLimit?: { product: Product; fiveHour: WindowView; weekly: WindowView };
  /** the latest global reset the object had applied when it answered */
  resetSeq?: number;
  /** a denial not yet committed, pending a check for newer global resets (internal to the object) */
  tentative?: boolean;
}

export type { Charge } from "../worker/core/pricing";

export interface GrantRequest {
  amount: number;
  kind: GrantKind;
  expiresAt?: number;
  products?: Product[];
  topUpId?: string;
  priority?: number;
}

export interface AutoTopUpConfig {
  enabled: boolean;
  threshold: number;
  amount: number;
  maxPerMonth: number;
}
