import type { GrantKind, Product } from "../catalog";
import type { WindowView } from "./windows";
import { nextUtcMidnight } from "./time";

export interface GrantState {
  id: string;
  kind: GrantKind;
  priority: number;
  /** null: usable for every product */
  products: Product[] | null;
  remaining: number;
  expiresAt: number | null;
  createdAt: number;
}

export interface FlexState {
  limit: number;
  used: number;
}

export type Source =
  | { layer: "window"; amount: number }
  | { layer: "grant"; grantId: string; amount: number }
  | { layer: "flex"; amount: number }
  /** an organization's pool, through the member's lease: one of its grants, or (no grantId) its flex (SPEC §9) */
  | { layer: "pool"; orgId: string; grantId?: string; amount: number };

/** A part of a member's lease: credits reserved from one pool grant (or, `grantId` null, from the pool's flex). */
export interface LeasePart {
  grantId: string | null;
  priority: number;
  products: Product[] | null;
  /** the pool grant's expiry (for flex, the end of the month it was leased in) */
  expiresAt: number | null;
  createdAt: number;
  remaining: number;
}

/** What a member may draw from its organization's pool in this decision (SPEC §9). */
export interface PoolInput {
  orgId: string;
  /** the member's lease */
  parts: readonly LeasePart[];
  /** what the member's daily and monthly pool limits still allow, or null without limits */
  drawRemaining: number | null;
  /** the pool's spending is paused (a spike across members) */
  paused: boolean;
}

export type DenialReason = "limit_reached" | "insufficient_credits" | "credits_paused" | "spend_cap";

/** Everything one decision reads, as it stands at `now`. */
export interface WaterfallInput {
  now: number;
  product: Product;
  windows: { fiveHour: WindowView; weekly: WindowView };
  grants: readonly GrantState[];
  flex: FlexState | null;
  /** a member's pool, after its own grants and before flex (a member's flex is its organization's, in the pool) */
  pool?: PoolInput | null;
  creditsPaused: boolean;
  /** What the daily spend cap still allows in credit spend (grants + flex), or null without a cap. */
  spendCapRemaining: number | null;
}

export type Decision =
  | { allowed: true; sources: Source[] }
  | { allowed: false; reason: DenialReason; retryAfterSeconds?: number; resetsAt?: number; offer?: "add_credits" };

/** Burn-down order: priority ascending, then soonest expiry (never-expiring last), then oldest. */
export function burnDownOrder(a: GrantState, b: GrantState): number {
  if (a.priority !== b.priority) return a.priority - b.priority;
  const ae = a.expiresAt ?? Number.POSITIVE_INFINITY;
  const be = b.expiresAt ?? Number.POSITIVE_INFINITY;
  if (ae !== be) return ae < be ? -1 : 1;
  if (a.createdAt !== b.createdAt) return a.createdAt - b.createdAt;
  return a.id < b.id ? -1 : a.id > b.id ? 1 : 0;
}

/** Grants this product may spend at `now`, in burn-down order. */
export function spendableGrants(grants: readonly GrantState[], product: Product, now: number): GrantState[] {
  return grants
    .filter(
      (g) =>
        g.remaining > 0 &&
        (g.expiresAt === null || g.expiresAt > now) &&
        (g.products === null || g.products.includes(product)),
    )
    .sort(burnDownOrder);
}

/** Lease parts this product may spend at `now`: grant parts in burn-down order, then the flex part. */
export function spendableParts(parts: readonly LeasePart[], product: Product, now: number): LeasePart[] {
  const live = parts.filter(
    (p) =>
      p.remaining > 0 &&
      (p.expiresAt === null || p.expiresAt > now) &&
      (p.products === null || p.products.includes(product)),
  );
  const order = (p: LeasePart) => ({ ...p, id: p.grantId ?? "", kind: "purchase" as const });
  return [
    ...live.filter((p) => p.grantId !== null).sort((a, b) => burnDownOrder(order(a), order(b))),
    ...live.filter((p) => p.grantId === null),
  ];
}

export function windowCapacity(w: WaterfallInput["windows"]): number {
  return Math.max(0, Math.min(w.fiveHour.remaining, w.weekly.remaining));
}

const sumRemaining = (xs: readonly { remaining: number }[]) => xs.reduce((s, x) => s + x.remaining, 0);

/** What the lease holds for this product, before the member's pool limits. */
function leaseCapacity(input: WaterfallInput): number {
  const pool = input.pool;
  return pool && !pool.paused ? sumRemaining(spendableParts(pool.parts, input.product, input.now)) : 0;
}

/** What the pool may pay: the lease, within the member's pool limits. */
export function poolCapacity(input: WaterfallInput): number {
  return Math.min(leaseCapacity(input), input.pool?.drawRemaining ?? Number.POSITIVE_INFINITY);
}

function creditCapacity(input: WaterfallInput): number {
  const grants = sumRemaining(spendableGrants(input.grants, input.product, input.now));
  return grants + poolCapacity(input) + (input.flex ? Math.max(0, input.flex.limit - input.flex.used) : 0);
}

/**
 * Takes up to `cost` from each layer in order, never more than `creditBudget` from grants and flex together.
 * Returns the parts and what no layer covered.
 */
export function allocate(
  input: WaterfallInput,
  cost: number,
  creditBudget: number,
): { sources: Source[]; uncovered: number } {
  const sources: Source[] = [];
  const fromWindow = Math.min(cost, windowCapacity(input.windows));
  if (fromWindow > 0) sources.push({ layer: "window", amount: fromWindow });
  let rest = cost - fromWindow;
  let budget = creditBudget;
  for (const g of spendableGrants(input.grants, input.product, input.now)) {
    if (rest === 0 || budget === 0) break;
    const take = Math.min(rest, g.remaining, budget);
    sources.push({ layer: "grant", grantId: g.id, amount: take });
    rest -= take;
    budget -= take;
  }
  const pool = input.pool;
  if (pool && !pool.paused) {
    let draw = pool.drawRemaining ?? Number.POSITIVE_INFINITY;
    for (const p of spendableParts(pool.parts, input.product, input.now)) {
      if (rest === 0 || budget === 0 || draw === 0) break;
      const take = Math.min(rest, p.remaining, budget, draw);
      sources.push({
        layer: "pool",
        orgId: pool.orgId,
        ...(p.grantId === null ? {} : { grantId: p.grantId }),
        amount: take,
      });
      rest -= take;
      budget -= take;
      draw -= take;
    }
  }
  if (rest > 0 && budget > 0 && input.flex) {
    const take = Math.min(rest, Math.max(0, input.flex.limit - input.flex.used), budget);
    if (take > 0) {
      sources.push({ layer: "flex", amount: take });
      rest -= take;
    }
  }
  return { sources, uncovered: rest };
}

/** The credit budget the guards leave: nothing while paused, the cap's rest under a spend cap. */
export function guardedCreditBudget(input: WaterfallInput): number {
  if (input.creditsPaused) return 0;
  return input.spendCapRemaining ?? Number.POSITIVE_INFINITY;
}

/**
 * Earliest window end after which windows plus `credits` would cover `cost`.
 * Only open windows end; a cost larger than fresh windows plus credits has no such time.
 */
function earliestWindowRelief(input: WaterfallInput, cost: number, credits: number): number | undefined {
  const { fiveHour, weekly } = input.windows;
  const ends = [fiveHour.resetsAt, weekly.resetsAt].filter((t): t is number => t !== null).sort((a, b) => a - b);
  for (const t of ends) {
    const five = fiveHour.resetsAt !== null && fiveHour.resetsAt <= t ? fiveHour.limit : fiveHour.remaining;
    const week = weekly.resetsAt !== null && weekly.resetsAt <= t ? weekly.limit : weekly.remaining;
    if (Math.min(five, week) + credits >= cost) return t;
  }
  return undefined;
}

function deny(input: WaterfallInput, reason: DenialReason, resetsAt: number | undefined): Decision {
  const offer = reason === "limit_reached" || reason === "insufficient_credits" ? ("add_credits" as const) : undefined;
  return {
    allowed: false,
    reason,
    ...(resetsAt === undefined
      ? {}
      : { resetsAt, retryAfterSeconds: Math.max(1, Math.ceil((resetsAt - input.now) / 1000)) }),
    ...(offer ? { offer } : {}),
  };
}

/**
 * Why the pool could not pay `fromPool` when a guard is the reason: the pool's pause, or the member's daily or monthly
 * pool limit. Null when the pool simply has too little.
 */
function poolShortfallReason(input: WaterfallInput, fromPool: number): DenialReason | null {
  const pool = input.pool;
  if (!pool || fromPool <= 0) return null;
  if (pool.paused) return "credits_paused";
  if (pool.drawRemaining !== null && pool.drawRemaining < fromPool) return "spend_cap";
  return null;
}

/** The decision waterfall (SPEC §4): all of `cost` from windows, grants and flex, or a denial that charges nothing. */
export function decide(input: WaterfallInput, cost: number): Decision {
  const fromWindow = Math.min(cost, windowCapacity(input.windows));
  const creditsNeeded = cost - fromWindow;
  if (creditsNeeded === 0) return { allowed: true, sources: [{ layer: "window", amount: cost }] };

  if (input.creditsPaused) return deny(input, "credits_paused", earliestWindowRelief(input, cost, 0));

  const credits = creditCapacity(input);
  if (credits < creditsNeeded) {
    const reason =
      poolShortfallReason(input, creditsNeeded - (credits - poolCapacity(input))) ??
      (credits === 0 ? "limit_reached" : "insufficient_credits");
    return deny(input, reason, earliestWindowRelief(input, cost, credits));
  }
  if (input.spendCapRemaining !== null && creditsNeeded > input.spendCapRemaining) {
    const relief = earliestWindowRelief(input, cost, input.spendCapRemaining);
    const midnight = nextUtcMidnight(input.now);
    return deny(input, "spend_cap", relief === undefined ? midnight : Math.min(relief, midnight));
  }
  const { sources, uncovered } = allocate(input, cost, creditsNeeded);
  if (uncovered !== 0) throw new Error("waterfall invariant: capacity checked but allocation fell short");
  return { allowed: true, sources };
}

/** What a hold's settlement does with its reservation (SPEC §4 holds). */
export interface HoldSettlement {
  /** reserved parts turned into charges, in the hold's source order */
  charged: Source[];
  /** reserved parts given back */
  released: Source[];
  /** actual cost above what the hold reserved, still to be covered */
  extra: number;
}

export function settleReservation(reserved: readonly Source[], actual: number): HoldSettlement {
  const charged: Source[] = [];
  const released: Source[] = [];
  let left = actual;
  for (const s of reserved) {
    const take = Math.min(left, s.amount);
    if (take > 0) charged.push({ ...s, amount: take });
    if (s.amount - take > 0) released.push({ ...s, amount: s.amount - take });
    left -= take;
  }
  return { charged, released, extra: left };
}
