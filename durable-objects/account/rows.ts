/** The account's rows as SQLite holds them, and their mapping to and from the core's records. */
import { GRANT_KINDS, type GrantKind, PLANS, type PlanId, PRODUCTS, type Product } from "../../worker/catalog";
import type {
  AccountRecord,
  AccountState,
  GrantRecord,
  HoldRecord,
  HoldStatus,
  WindowKey,
} from "../../worker/core/account/state";
import type { AutoTopUpConfig } from "../../worker/core/account/state";
import type { Membership } from "../../worker/core/account/membership";
import type { Source } from "../../worker/core/waterfall";
import type { WindowKind, WindowState } from "../../worker/core/windows";

export type AccountRow = {
  account_id: string;
  plan: string;
  created_at: number;
  paused: number;
  spend_cap: number | null;
  auto_top_up: string | null;
  flex_month: string | null;
  flex_used: number;
  reset_seq: number;
  banked_accrued_at: number;
  clock_offset: number;
  charged_total: number;
  resumed_at: number | null;
  resumed_spend: number;
  granted_total: number;
  journal_seq: number;
  /** the windows, `{ "<product>:<kind>": [openedAt, used] }` */
  windows: string;
  /** the membership of an organization and its lease (JSON), or null */
  org: string | null;
};
export type GrantRow = {
  id: string;
  kind: string;
  priority: number;
  products: string | null;
  amount: number;
  remaining: number;
  expires_at: number | null;
  created_at: number;
  top_up_id: string | null;
};
export type HoldRow = {
  id: string;
  product: string;
  amount: number;
  sources: string;
  window_opened: string;
  flex_month: string | null;
  expires_at: number;
  created_at: number;
};

export function sameRecord(a: AccountRecord, b: AccountRecord): boolean {
  for (const k of Object.keys(a) as (keyof AccountRecord)[]) {
    if (a[k] === b[k]) continue;
    if ((k !== "autoTopUp" && k !== "org") || JSON.stringify(a[k]) !== JSON.stringify(b[k])) return false;
  }
  return true;
}

// Columns this object wrote from validated values, read back as their types.
export const planOf = (p: string | undefined): PlanId | undefined => PLANS.find((x) => x === p);
export const productOf = (p: string): Product => PRODUCTS.find((x) => x === p) ?? PRODUCTS[0];
export const grantKindOf = (k: string): GrantKind => GRANT_KINDS.find((x) => x === k) ?? "purchase";
export const kindOf = (k: string): WindowKind => (k === "weekly" ? "weekly" : "fiveHour");
export const windowKey = (product: string, kind: string): WindowKey => `${productOf(product)}:${kindOf(kind)}`;
export const holdStatusOf = (s: string): HoldStatus =>
  s === "settled" || s === "released" || s === "expired" ? s : "active";

/** The windows as the account row keeps them: `{ "<product>:<kind>": [openedAt, used] }`. */
export function windowsJson(w: AccountState["windows"]): string {
  return JSON.stringify(Object.fromEntries(windowEntries(w).map(([key, v]) => [key, [v.openedAt, v.used]])));
}

export function windowsOf(json: string): AccountState["windows"] {
  const out: AccountState["windows"] = {};
  // A column this object wrote (windowsJson).
  for (const [key, [openedAt, used]] of Object.entries(JSON.parse(json) as Record<string, [number | null, number]>)) {
    const [product, kind] = key.split(":");
    out[windowKey(product, kind)] = { openedAt, used };
  }
  return out;
}

export function sameWindows(a: AccountState["windows"], b: AccountState["windows"]): boolean {
  const ka = windowEntries(a);
  if (ka.length !== windowEntries(b).length) return false;
  return ka.every(([key, w]) => b[key]?.openedAt === w.openedAt && b[key]?.used === w.used);
}

export function windowEntries(w: AccountState["windows"]): [WindowKey, WindowState][] {
  const out: [WindowKey, WindowState][] = [];
  for (const key of Object.keys(w) as WindowKey[]) {
    const v = w[key];
    if (v) out.push([key, v]);
  }
  return out;
}

export function accountOf(r: AccountRow): AccountRecord {
  return {
    accountId: r.account_id,
    plan: planOf(r.plan) ?? "go",
    createdAt: r.created_at,
    paused: r.paused === 1,
    spendCap: r.spend_cap,
    // A column this object wrote from a validated config.
    autoTopUp: r.auto_top_up ? (JSON.parse(r.auto_top_up) as AutoTopUpConfig) : null,
    flexMonth: r.flex_month,
    flexUsed: r.flex_used,
    resetSeq: r.reset_seq,
    bankedAccruedAt: r.banked_accrued_at,
    clockOffset: r.clock_offset,
    chargedTotal: r.charged_total,
    resumedAt: r.resumed_at,
    resumedSpend: r.resumed_spend,
    grantedTotal: r.granted_total,
    journalSeq: r.journal_seq,
    // A column this object wrote from its own membership record.
    org: r.org === null ? null : (JSON.parse(r.org) as Membership),
  };
}

export function grantOf(r: GrantRow): GrantRecord {
  return {
    id: r.id,
    kind: grantKindOf(r.kind),
    priority: r.priority,
    products: r.products === null ? null : (JSON.parse(r.products) as Product[]),
    remaining: r.remaining,
    expiresAt: r.expires_at,
    createdAt: r.created_at,
    amount: r.amount,
    topUpId: r.top_up_id,
  };
}

export function holdOf(r: HoldRow): HoldRecord {
  return {
    id: r.id,
    product: productOf(r.product),
    amount: r.amount,
    sources: JSON.parse(r.sources) as Source[],
    windowOpened: JSON.parse(r.window_opened) as Record<WindowKind, number | null>,
    flexMonth: r.flex_month,
    expiresAt: r.expires_at,
    createdAt: r.created_at,
  };
}
