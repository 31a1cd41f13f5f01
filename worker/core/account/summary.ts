/** What the account looks like from outside: the summary, `remaining`, and a decision's windows (SPEC §8). */
import { DEFAULT_PLAN, PRODUCTS, type Plan, type Product, planFor } from "../../catalog";
import { DAY_MS, iso, isoOrNull, MINUTE_MS, monthKey, utcDayStart } from "../time";
import { burnDownOrder, type FlexState, type GrantState } from "../waterfall";
import { currentWindow, WINDOW_KINDS, type WindowKind, type WindowState, viewWindow, windowJson } from "../windows";
import type { AccountSummary, BankedResetsJson, DecisionTail, GrantJson, Remaining, WindowJson } from "./answers";
import type { Draft } from "./draft";
import { memberJson } from "./membership";
import type { AccountRecord, AccountState, AutoTopUpConfig, BankedReset, DecisionWindows } from "./state";

export const DEFAULT_AUTO_TOP_UP: AutoTopUpConfig = { enabled: false, threshold: 0, amount: 0, maxPerMonth: 0 };

export function grantJson(g: GrantState): GrantJson {
  return {
    id: g.id,
    kind: g.kind,
    priority: g.priority,
    remaining: g.remaining,
    expiresAt: isoOrNull(g.expiresAt),
    products: g.products,
  };
}

/** Grants that can still be spent at `now`. */
const unexpired = (grants: readonly GrantState[], now: number) =>
  grants.filter((g) => g.expiresAt === null || g.expiresAt > now);

/** The spendable sum of unexpired grant remainders. */
export const creditBalance = (state: AccountState, now: number): number =>
  unexpired(state.grants, now).reduce((s, g) => s + g.remaining, 0);

export function flexState(account: AccountRecord, now: number): FlexState | null {
  const limit = planFor(account.plan).flexMonthlyLimit;
  if (limit === null) return null;
  return { limit, used: account.flexMonth === monthKey(now) ? account.flexUsed : 0 };
}

export const availableBankedResets = (state: AccountState, now: number): BankedReset[] =>
  state.bankedResets.filter((b) => b.expiresAt === null || b.expiresAt > now);

export function bankedResetsJson(state: AccountState, now: number): BankedResetsJson {
  const items = availableBankedResets(state, now);
  return {
    available: items.length,
    max: planFor(state.account?.plan ?? DEFAULT_PLAN).bankedResets?.max ?? 0,
    items: items.map((i) => ({ id: i.id, expiresAt: isoOrNull(i.expiresAt) })),
  };
}

function productsJson(plan: Plan, windowOf: (p: Product, k: WindowKind) => WindowState, now: number) {
  const product = (p: Product): Record<WindowKind, WindowJson> => ({
    fiveHour: windowJson(viewWindow(windowOf(p, "fiveHour"), "fiveHour", plan.windows[p].fiveHour, now)),
    weekly: windowJson(viewWindow(windowOf(p, "weekly"), "weekly", plan.windows[p].weekly, now)),
  });
  // fromEntries loses the key type; every product of the catalog is present.
  return Object.fromEntries(PRODUCTS.map((p) => [p, product(p)])) as Record<Product, Record<WindowKind, WindowJson>>;
}

const storedWindow = (state: AccountState, p: Product, k: WindowKind): WindowState =>
  state.windows[`${p}:${k}`] ?? { openedAt: null, used: 0 };

/** The account summary. `spentToday` is the day's credit spend, which lives in history, not in the snapshot. */
export function summaryOf(state: AccountState, now: number, spentToday: number): AccountSummary {
  const account = state.account;
  if (!account) throw new Error("summary of an account that does not exist");
  const plan = planFor(account.plan);
  const grants = unexpired(state.grants, now).sort(burnDownOrder);
  const cfg = account.autoTopUp ?? DEFAULT_AUTO_TOP_UP;
  const pending = state.pendingTopUp;
  return {
    accountId: account.accountId,
    plan: plan.id,
    products: productsJson(plan, (p, k) => storedWindow(state, p, k), now),
    credits: {
      balance: grants.reduce((s, g) => s + g.remaining, 0),
      grants: grants.map(grantJson),
      autoTopUp: { ...cfg, pending: pending ? { topUpId: pending.id, requestedAt: iso(pending.requestedAt) } : null },
      // A member's flexible billing is its organization's (SPEC §9).
      flex: account.org?.active ? null : flexState(account, now),
    },
    bankedResets: bankedResetsJson(state, now),
    holds: state.holds.map((h) => ({
      holdId: h.id,
      product: h.product,
      amount: h.amount,
      expiresAt: iso(h.expiresAt),
    })),
    paused: account.paused,
    spendCap: account.spendCap === null ? null : { dailyLimit: account.spendCap, spentToday },
    ...(account.org ? { org: memberJson(account.org, now) } : {}),
  };
}

/** The summary of an account that has never been written: a fresh `go` account. */
export function freshSummary(accountId: string, now: number): AccountSummary {
  const plan = planFor(DEFAULT_PLAN);
  return {
    accountId,
    plan: plan.id,
    products: productsJson(plan, () => ({ openedAt: null, used: 0 }), now),
    credits: { balance: 0, grants: [], autoTopUp: { ...DEFAULT_AUTO_TOP_UP, pending: null }, flex: null },
    bankedResets: { available: 0, max: plan.bankedResets?.max ?? 0, items: [] },
    holds: [],
    paused: false,
    spendCap: null,
  };
}

/** The summary inside a step (its spend so far included). */
export const summaryIn = (d: Draft): AccountSummary =>
  summaryOf(d.state, d.now, d.account.spendCap === null ? 0 : d.spentSince(utcDayStart(d.now)));

/** A product's windows as they stand now: for `remaining` and the RateLimit header fields. */
export function windowsOf(state: AccountState, product: Product, now: number): DecisionWindows {
  const limits = planFor(state.account?.plan ?? DEFAULT_PLAN).windows[product];
  const view = (k: WindowKind) => viewWindow(storedWindow(state, product, k), k, limits[k], now);
  return { product, fiveHour: view("fiveHour"), weekly: view("weekly") };
}

export function remainingOf(state: AccountState, product: Product, now: number): Remaining {
  const { fiveHour, weekly } = windowsOf(state, product, now);
  return {
    product,
    fiveHour: { remaining: fiveHour.remaining, resetsAt: isoOrNull(fiveHour.resetsAt) },
    weekly: { remaining: weekly.remaining, resetsAt: isoOrNull(weekly.resetsAt) },
    credits: creditBalance(state, now),
  };
}

/** What every decision carries: `remaining`, and the account when asked for. */
export const decisionTail = (d: Draft, product: Product): DecisionTail => ({
  remaining: remainingOf(d.state, product, d.now),
  ...(d.ctx.includeAccount ? { account: summaryIn(d) } : {}),
});

/** Only a denial with window usage on the books can be lifted by a global reset. */
export const resetCouldHelp = (state: AccountState, now: number): boolean =>
  PRODUCTS.some((p) => WINDOW_KINDS.some((k) => currentWindow(storedWindow(state, p, k), k, now).used > 0));

/** The start of each UTC day of the `days` ending today, oldest first. */
export const panelDays = (now: number, days: number): number[] =>
  Array.from({ length: days }, (_, i) => utcDayStart(now) - (days - 1 - i) * DAY_MS);

export interface PanelView {
  days: { day: string; credits: number; window: number }[];
  bankedResets: { everyDays: number; max: number; atMax: boolean; nextAt: string | null } | null;
}

/**
 * The usage panel's extras: per UTC day, credits spent and window usage that still counts (usage a reset forgave has
 * left the history; a hold's unused reservation came back as a negative row); and when the next banked reset accrues.
 */
export function panelOf(
  state: AccountState,
  now: number,
  dayStarts: number[],
  history: { spend: { minute: number; amount: number }[]; usage: { at: number; amount: number }[] },
): PanelView {
  const credits = new Map<number, number>();
  const window = new Map<number, number>();
  const add = (m: Map<number, number>, at: number, amount: number) =>
    m.set(utcDayStart(at), (m.get(utcDayStart(at)) ?? 0) + amount);
  for (const r of history.spend) add(credits, r.minute * MINUTE_MS, r.amount);
  for (const r of history.usage) add(window, r.at, r.amount);
  const account = state.account;
  const rule = planFor(account?.plan ?? DEFAULT_PLAN).bankedResets;
  const period = (rule?.everyDays ?? 0) * DAY_MS;
  // One accrues every period from the last accrual (creation or a plan change), also while at the maximum.
  const nextAt =
    rule && account
      ? account.bankedAccruedAt + (Math.floor((now - account.bankedAccruedAt) / period) + 1) * period
      : null;
  return {
    days: dayStarts.map((d) => ({
      day: iso(d).slice(0, 10),
      credits: credits.get(d) ?? 0,
      window: Math.max(0, window.get(d) ?? 0),
    })),
    bankedResets: rule
      ? {
          everyDays: rule.everyDays,
          max: rule.max,
          atMax: account ? availableBankedResets(state, now).length >= rule.max : false,
          nextAt: isoOrNull(nextAt),
        }
      : null,
  };
}
