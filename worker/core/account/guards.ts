/**
 * The guards against draining (SPEC §4): the anomaly pause and the daily spend cap, applied to every credit spend —
 * consume, a hold, and the part of a settle above its hold. No guard creates a charge.
 */
import { catalog, type Product } from "../../catalog";
import { anomalyThreshold } from "../guards";
import { DAY_MS, MINUTE_MS, minuteOf, utcDayStart } from "../time";
import { type Decision, decide, type Source, type WaterfallInput } from "../waterfall";
import { viewWindow } from "../windows";
import type { Draft } from "./draft";
import type { AccountState } from "./state";
import { poolInput } from "./membership";
import { flexState } from "./summary";

/** What active holds reserve from the sources `which` picks. */
export function heldBy(state: AccountState, which: (s: Source) => boolean): number {
  let held = 0;
  for (const h of state.holds) for (const s of h.sources) if (which(s)) held += s.amount;
  return held;
}

/** Credits (grant and flex parts) reserved by active holds: they count toward the guards as if spent. */
export const heldCredits = (state: AccountState): number => heldBy(state, (s) => s.layer !== "window");

/** What grants and flex pay of a decision: the part the drain guards look at. */
export const creditPartOf = (sources: readonly Source[]): number =>
  sources.reduce((sum, s) => sum + (s.layer === "window" ? 0 : s.amount), 0);

/** Everything one decision for `product` reads, as it stands now. */
export function waterfallInput(d: Draft, product: Product): WaterfallInput {
  const account = d.account;
  const limits = d.plan.windows[product];
  const spendCapRemaining =
    account.spendCap === null
      ? null
      : Math.max(0, account.spendCap - d.spentSince(utcDayStart(d.now)) - heldCredits(d.state));
  return {
    now: d.now,
    product,
    windows: {
      fiveHour: viewWindow(d.window(product, "fiveHour"), "fiveHour", limits.fiveHour, d.now),
      weekly: viewWindow(d.window(product, "weekly"), "weekly", limits.weekly, d.now),
    },
    grants: d.state.grants,
    // A member's flexible billing is its organization's, through the pool (SPEC §9).
    flex: account.org?.active ? null : flexState(account, d.now),
    pool: poolInput(account.org, d.now),
    creditsPaused: account.paused,
    spendCapRemaining,
  };
}

/**
 * The waterfall with the anomaly guard: if an allowed decision's credit part would take the trailing spend (held
 * credits included) past the threshold, credit spending pauses and the decision is taken again as paused — before
 * any charge, not after.
 */
export function decideGuarded(d: Draft, product: Product, cost: number): Decision {
  const input = waterfallInput(d, product);
  const decision = decide(input, cost);
  if (!decision.allowed || !pausesOn(d, creditPartOf(decision.sources))) return decision;
  return decide({ ...input, creditsPaused: true }, cost);
}

/**
 * True when spending `creditPart` more would take the trailing spend past the threshold. It then pauses credit
 * spending and records `account.credits_paused`; the caller spends no credits.
 */
export function pausesOn(d: Draft, creditPart: number): boolean {
  if (creditPart === 0) return false;
  const g = catalog.guards.anomaly;
  const trailing = trailingSpend(d) + heldCredits(d.state);
  if (trailing + creditPart <= g.floorMicroCredits) return false;
  const threshold = anomalyThreshold(g, d.spentSince(d.now - g.baselineDays * DAY_MS));
  if (trailing + creditPart <= threshold) return false;
  d.update({ paused: true });
  d.event("account.credits_paused", { trailingSpend: trailing, attempted: creditPart, threshold });
  return true;
}

/**
 * Credit spend in the trailing window. After a resume it counts from the resume instant, to the millisecond: the
 * resume's own minute counts, less what that minute held when the operator resumed.
 */
function trailingSpend(d: Draft): number {
  const from = d.now - (catalog.guards.anomaly.trailingMinutes - 1) * MINUTE_MS;
  const { resumedAt, resumedSpend } = d.account;
  if (resumedAt === null || minuteOf(resumedAt) < minuteOf(from)) return d.spentSince(from);
  return Math.max(0, d.spentSince(resumedAt) - resumedSpend);
}
