/**
 * The bodies the account answers with (SPEC §8 shapes), and each operation's result. Times are ISO strings here:
 * these are the answers as kept for idempotent replay and as the API returns them.
 */
import type { GrantKind, PlanId, Product } from "../../catalog";
import type { DenialReason, Source } from "../waterfall";
import type { WindowKind } from "../windows";
import type { AutoTopUpConfig, Created, Denied, Ok, Refused } from "./state";

export interface WindowJson {
  limit: number;
  used: number;
  remaining: number;
  resetsAt: string | null;
}

export interface GrantJson {
  id: string;
  kind: GrantKind;
  priority: number;
  remaining: number;
  expiresAt: string | null;
  products: Product[] | null;
}

export interface BankedResetsJson {
  available: number;
  max: number;
  items: { id: string; expiresAt: string | null }[];
}

export interface AccountSummary {
  accountId: string;
  plan: PlanId;
  products: Record<Product, Record<WindowKind, WindowJson>>;
  credits: {
    balance: number;
    grants: GrantJson[];
    autoTopUp: AutoTopUpConfig & { pending: { topUpId: string; requestedAt: string } | null };
    flex: { limit: number; used: number } | null;
  };
  bankedResets: BankedResetsJson;
  holds: { holdId: string; product: Product; amount: number; expiresAt: string }[];
  paused: boolean;
  spendCap: { dailyLimit: number; spentToday: number } | null;
  /** present for an account that belongs (or belonged) to an organization (SPEC §9) */
  org?: MemberJson;
}

export interface MemberJson {
  orgId: string;
  active: boolean;
  /** what the member's lease holds unspent (reserved by holds not included) */
  lease: number;
  /** everything the pool paid for this member */
  spent: number;
  drawnToday: number;
  drawnThisMonth: number;
  dailyLimit: number | null;
  monthlyLimit: number | null;
  poolPaused: boolean;
}

/** SPEC §8 `remaining`: the product's two windows and the spendable credit balance. */
export interface Remaining {
  product: Product;
  fiveHour: { remaining: number; resetsAt: string | null };
  weekly: { remaining: number; resetsAt: string | null };
  credits: number;
}

/** What every decision carries: `remaining`, and the account only with `?include=account`. */
export interface DecisionTail {
  remaining: Remaining;
  account?: AccountSummary;
}

export interface DenialFields {
  allowed: false;
  reason: DenialReason;
  retryAfterSeconds?: number;
  resetsAt?: string;
  offer?: "add_credits";
}

export interface ConsumeAllowed extends DecisionTail {
  decisionId: string;
  allowed: true;
  cost: number;
  sources: Source[];
  rateCardVersion?: string;
}
export interface ConsumeDenied extends DenialFields, DecisionTail {
  decisionId: string;
}
export interface HoldCreated extends DecisionTail {
  holdId: string;
  amount: number;
  sources: Source[];
  expiresAt: string;
}
export interface HoldDenied extends DenialFields, DecisionTail {
  holdId: null;
}
export interface HoldSettled extends DecisionTail {
  holdId: string;
  charged: number;
  released: number;
  writtenOff: number;
  sources: Source[];
}
export interface HoldReleased extends DecisionTail {
  holdId: string;
  released: number;
}

export interface GrantCreated extends GrantJson {
  amount: number;
  createdAt: string;
  topUpId?: string;
}
export interface RefundCreated {
  refundId: string;
  grant: GrantJson;
  reason: string;
  refundedEntryId: string | null;
  account: AccountSummary;
}
export interface BankedResetRedeemed {
  resetId: string;
  bankedResets: BankedResetsJson;
  account: AccountSummary;
}
export interface Resumed {
  resumed: boolean;
  account: AccountSummary;
}
export interface PanelLink {
  token: string;
  url: string;
  expiresAt: string;
}

// Each operation's result.
export type SummaryResult = Ok<AccountSummary> | Refused;
export type ConsumeResult = Ok<ConsumeAllowed> | Denied<ConsumeDenied> | Refused;
export type HoldResult = Created<HoldCreated> | Denied<HoldDenied> | Refused;
export type SettleResult = Ok<HoldSettled> | Refused;
export type ReleaseResult = Ok<HoldReleased> | Refused;
export type GrantResult = Created<GrantCreated> | Refused;
export type RefundResult = Created<RefundCreated> | Refused;
export type AccountChangeResult = Ok<AccountSummary> | Refused;
export type ResumeResult = Ok<Resumed> | Refused;
export type BankedResetResult = Ok<BankedResetRedeemed> | Refused;
export type OrgJoinResult = Ok<{ orgId: string }> | Refused;
export type PanelLinkResult = Ok<PanelLink> | Refused;
/** The results of a decision: each carries `remaining`, and the account only when asked for. */
export type DecisionResult = ConsumeResult | HoldResult | SettleResult | ReleaseResult;
