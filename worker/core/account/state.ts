/**
 * The account as the functional core sees it: one snapshot (`AccountState`), what a step reads beyond it
 * (`Reads`: history kept in SQLite, asked for by range), and what a step answers: the next snapshot, the effects
 * to record, and a result (`Step<R>`). Nothing here knows HTTP, SQL or the Durable Object.
 */
import type { PlanId, Product } from "../../catalog";
import type { JournalMessage } from "../journal";
import type { Membership } from "./membership";
import type { Refusal } from "../refusals";
import type { GrantState, Source } from "../waterfall";
import type { WindowKind, WindowState, WindowView } from "../windows";

export interface AutoTopUpConfig {
  enabled: boolean;
  threshold: number;
  amount: number;
  maxPerMonth: number;
}

/** The account's own row. */
export interface AccountRecord {
  accountId: string;
  plan: PlanId;
  createdAt: number;
  paused: boolean;
  spendCap: number | null;
  autoTopUp: AutoTopUpConfig | null;
  /** `YYYY-MM` of `flexUsed` */
  flexMonth: string | null;
  flexUsed: number;
  /** the latest global reset applied */
  resetSeq: number;
  bankedAccruedAt: number;
  /** request clock − wall clock, for alarms (the test clock) */
  clockOffset: number;
  chargedTotal: number;
  resumedAt: number | null;
  /** credit spend already in the resume's minute when the operator resumed */
  resumedSpend: number;
  grantedTotal: number;
  /** the journal's last sequence number: every balance change and event takes the next one (SPEC §7) */
  journalSeq: number;
  /** the organization whose pool this account draws from, and its lease (SPEC §9); null outside any */
  org: Membership | null;
}

export type WindowKey = `${Product}:${WindowKind}`;

export interface GrantRecord extends GrantState {
  /** what was granted */
  amount: number;
  topUpId: string | null;
}

export type HoldStatus = "active" | "settled" | "released" | "expired";

export interface HoldRecord {
  id: string;
  product: Product;
  amount: number;
  /** what the hold reserved, layer by layer */
  sources: Source[];
  /** the window instances the reservation went to: a release gives back only to the same instance */
  windowOpened: Record<WindowKind, number | null>;
  flexMonth: string | null;
  expiresAt: number;
  createdAt: number;
}

export interface BankedReset {
  id: string;
  grantedAt: number;
  expiresAt: number | null;
  origin: string;
}

export interface PendingTopUp {
  id: string;
  requestedAt: number;
}

/** Everything a decision reads directly: the live part of the account, small and bounded. */
export interface AccountState {
  /** null: the account was never written */
  account: AccountRecord | null;
  /** stored windows; a missing one is closed and empty */
  windows: Partial<Record<WindowKey, WindowState>>;
  /** grants with credits left (expired ones until the sweep records them) */
  grants: GrantRecord[];
  /** active holds, oldest first */
  holds: HoldRecord[];
  /** unused banked resets, expired ones included, in redemption order */
  bankedResets: BankedReset[];
  pendingTopUp: PendingTopUp | null;
}

export const EMPTY_STATE: AccountState = {
  account: null,
  windows: {},
  grants: [],
  holds: [],
  bankedResets: [],
  pendingTopUp: null,
};

/** History a step asks for by range. Sync: SQLite inside the object's transaction; memory in the Node model test. */
export interface Reads {
  /** credit spend (grants and flex) recorded in minutes from `fromMs`'s minute on */
  spentSince(fromMs: number): number;
  /** credit spend recorded in one minute (epoch minutes) */
  spentInMinute(minute: number): number;
  /** window usage of `product` recorded strictly after `afterMs` (a hold's unused reservation counts negative) */
  windowUsageAfter(product: Product, afterMs: number): number;
  /** the plan in force at `ms` */
  planAt(ms: number): PlanId | undefined;
  /** when the latest top-up was requested */
  lastTopUpAt(): number | undefined;
  topUpsInMonth(month: string): number;
  topUpStatus(topUpId: string): "pending" | "confirmed" | "failed" | undefined;
  /** what refunds have compensated of one ledger entry */
  refundedAgainst(entryId: string): number;
  /** a hold that is no longer active */
  holdStatus(holdId: string): HoldStatus | undefined;
  /** a grant with nothing left (a release may give it back credits) */
  grant(grantId: string): GrantRecord | undefined;
}

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

/** What one step is told besides the state. */
export interface StepContext {
  accountId: string;
  /** request time, epoch ms (the test clock's when enabled) */
  now: number;
  /** the wall clock: the difference to `now` is kept for alarms */
  wallNow: number;
  idempotencyKey?: string;
  /** global resets known to the caller, oldest first */
  resets: ResetEpoch[];
  /** `?include=account`: decisions carry the full account summary */
  includeAccount: boolean;
}

/** What a step records besides the next snapshot: appends to the account's history, and alarms. */
export type Effect =
  | { type: "journal"; message: JournalMessage }
  | {
      type: "decision";
      id: string;
      at: number;
      product: Product;
      cost: number;
      reason: string | null;
      sources: Source[] | null;
      idempotencyKey: string | null;
    }
  | { type: "spend"; minute: number; amount: number }
  | { type: "window_usage"; product: Product; at: number; amount: number }
  /** window usage of `product` at or before `upTo` (all of it when null) is forgotten */
  | { type: "window_usage_cleared"; product: Product; upTo: number | null }
  | { type: "plan_changed"; since: number; plan: PlanId }
  | { type: "entry_refunded"; entryId: string; refunded: number }
  | { type: "hold_closed"; holdId: string; status: Exclude<HoldStatus, "active"> }
  | { type: "topup_requested"; topUpId: string; at: number; amount: number; month: string }
  | { type: "topup_confirmed"; topUpId: string }
  | { type: "topups_failed"; requestedUpTo: number }
  /** something falls due at this request-clock time (a hold's or grant's expiry) */
  | { type: "wake"; at: number };

// ─────────────────────────── results ───────────────────────────

export type Ok<T> = { kind: "ok"; body: T };
export type Created<T> = { kind: "created"; body: T };
export type Denied<D> = { kind: "denied"; body: D };
export type Refused = { kind: "refused"; refusal: Refusal };

/** A step: the next snapshot, its effects, and the answer. A refusal changes nothing: next is the given state. */
export interface Step<R> {
  next: AccountState;
  effects: Effect[];
  result: R;
}

/** The product's windows after a decision, for the RateLimit header fields. */
export interface DecisionWindows {
  product: Product;
  fiveHour: WindowView;
  weekly: WindowView;
}

/** What the account object answers: the result, and what the HTTP layer adds around it. */
export interface Answered<R> {
  result: R;
  /** the same Idempotency-Key and payload answered before: this is that answer */
  replayed: boolean;
  /** the latest global reset the object had applied when it answered */
  resetSeq: number;
  /** a decision's product windows as they stand after it */
  rateLimit?: DecisionWindows;
}

export const ok = <T>(body: T): Ok<T> => ({ kind: "ok", body });
export const created = <T>(body: T): Created<T> => ({ kind: "created", body });
export const denied = <D>(body: D): Denied<D> => ({ kind: "denied", body });
/** Whether a result, or anything a step may answer with, is a refusal. */
export const isRefused = (r: object): r is Refused => "kind" in r && r.kind === "refused";

export const refused = (code: Refusal["code"], message: string, details?: Refusal["details"]): Refused => ({
  kind: "refused",
  refusal: { code, message, ...(details === undefined ? {} : { details }) },
});
