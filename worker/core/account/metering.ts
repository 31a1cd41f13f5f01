/** Metering (SPEC §4): consume, and holds — reserve, settle, release — through the decision waterfall. */
import type { Product } from "../../catalog";
import { uuidv7 } from "../ids";
import { chargeOf, type Charge, type Usage } from "../pricing";
import { iso, isoOrNull, minuteOf, monthKey } from "../time";
import { allocate, type Decision, guardedCreditBudget, type Source, settleReservation } from "../waterfall";
import { chargeWindow, releaseWindow, viewWindow, WINDOW_KINDS, type WindowKind } from "../windows";
import type { ConsumeResult, DenialFields, HoldResult, ReleaseResult, SettleResult } from "./answers";
import { afterCreditSpend, expireGrants } from "./credits";
import type { Draft } from "./draft";
import { creditPartOf, decideGuarded, pausesOn, waterfallInput } from "./guards";
import { countPoolSpend, drawFromLease, returnToLease } from "./membership";
import { created, denied, type HoldRecord, isRefused, ok, refused, type Refused } from "./state";
import { decisionTail, flexState } from "./summary";

const MAX = Number.MAX_SAFE_INTEGER;

/** SPEC §6: no stored total passes 2^53 − 1; a charge that would take `charged_total` past it is refused. */
function chargedTotalRefusal(d: Draft, amount: number): Refused | null {
  if (d.account.chargedTotal + amount <= MAX) return null;
  return refused("amount_out_of_range", "the account's charged total would pass 2^53 − 1 micro-credits", { max: MAX });
}

export function consume(d: Draft, charge: Charge): ConsumeResult {
  const decisionId = uuidv7(d.ctx.wallNow);
  const decision = decideGuarded(d, charge.product, charge.cost);
  if (decision.allowed) {
    const tooMuch = chargedTotalRefusal(d, charge.cost);
    if (tooMuch) return tooMuch;
  }
  logDecision(d, decisionId, charge, decision);
  if (!decision.allowed) return denied({ decisionId, ...denialFields(decision), ...decisionTail(d, charge.product) });
  applyCharges(d, charge.product, decision.sources, { decisionId, rateCardVersion: charge.rateCardVersion });
  return ok({
    decisionId,
    allowed: true as const,
    cost: charge.cost,
    sources: decision.sources,
    ...(charge.rateCardVersion ? { rateCardVersion: charge.rateCardVersion } : {}),
    ...decisionTail(d, charge.product),
  });
}

export function createHold(d: Draft, charge: Charge, ttlSeconds: number): HoldResult {
  const holdId = uuidv7(d.ctx.wallNow);
  const decision = decideGuarded(d, charge.product, charge.cost);
  logDecision(d, holdId, charge, decision);
  if (!decision.allowed) return denied({ holdId: null, ...denialFields(decision), ...decisionTail(d, charge.product) });
  for (const s of decision.sources) {
    takeFromSource(d, charge.product, s);
    d.ledger({
      kind: "hold",
      amount: s.amount,
      layer: s.layer,
      product: charge.product,
      grantId: grantIdOf(s),
      ...orgOf(s),
      holdId,
    });
  }
  const expiresAt = d.now + ttlSeconds * 1000;
  const hold: HoldRecord = {
    id: holdId,
    product: charge.product,
    amount: charge.cost,
    sources: decision.sources,
    windowOpened: {
      fiveHour: d.window(charge.product, "fiveHour").openedAt,
      weekly: d.window(charge.product, "weekly").openedAt,
    },
    flexMonth: monthKey(d.now),
    expiresAt,
    createdAt: d.now,
  };
  d.state.holds = [...d.state.holds, hold];
  d.effect({ type: "wake", at: expiresAt });
  return created({
    holdId,
    amount: charge.cost,
    sources: decision.sources,
    expiresAt: iso(expiresAt),
    ...decisionTail(d, charge.product),
  });
}

/** An active hold, or the refusal that names why there is none. */
function activeHold(d: Draft, holdId: string): HoldRecord | Refused {
  const hold = d.state.holds.find((h) => h.id === holdId);
  if (hold) return hold;
  const closed = d.effects.find((e) => e.type === "hold_closed" && e.holdId === holdId);
  const status = closed?.type === "hold_closed" ? closed.status : d.reads.holdStatus(holdId);
  if (!status) return refused("not_found", "no such hold");
  return refused("hold_not_active", `the hold is already ${status}`);
}

/** Settles at `cost`, or at `usage` priced for the hold's product. */
export function settleHold(d: Draft, holdId: string, actualCost: { cost?: number; usage?: Usage }): SettleResult {
  const hold = activeHold(d, holdId);
  if (isRefused(hold)) return hold;
  const priced = chargeOf(hold.product, actualCost);
  if (!priced.ok) return { kind: "refused", refusal: priced.refusal };
  const { cost: actual, rateCardVersion } = priced.value;
  const settlement = settleReservation(hold.sources, actual);
  // Every part charged counts toward the bound: the reserved parts now, the extra once it is allocated.
  const tooMuch = chargedTotalRefusal(
    d,
    settlement.charged.reduce((sum, x) => sum + x.amount, 0),
  );
  if (tooMuch) return tooMuch;
  // Ledger: the whole reservation is released, then the actual cost is charged.
  giveBack(d, hold, hold.sources, settlement.released);
  closeHold(d, holdId, "settled");
  for (const s of settlement.charged) recordCharge(d, hold.product, s, { holdId, rateCardVersion });
  let extraSources: Source[] = [];
  let writtenOff = 0;
  if (settlement.extra > 0) {
    const input = waterfallInput(d, hold.product);
    let extra = allocate(input, settlement.extra, guardedCreditBudget(input));
    // The extra passes the same guards as any credit spend; what they refuse is written off.
    const paused = input.creditsPaused || pausesOn(d, creditPartOf(extra.sources));
    if (paused) extra = allocate({ ...input, creditsPaused: true }, settlement.extra, 0);
    const extraTotal = extra.sources.reduce((s, x) => s + x.amount, 0);
    const overflow = chargedTotalRefusal(d, extraTotal);
    if (overflow) return overflow;
    extraSources = extra.sources;
    applyCharges(d, hold.product, extra.sources, { holdId, rateCardVersion });
    writtenOff = extra.uncovered;
    if (writtenOff > 0) {
      const capped = input.spendCapRemaining !== null && creditPartOf(extra.sources) >= input.spendCapRemaining;
      const why = paused ? "credit spending is paused" : capped ? "the daily spend cap" : "nothing covered the rest";
      d.ledger({
        kind: "write_off",
        amount: writtenOff,
        product: hold.product,
        holdId,
        note: `settled above hold; ${why}`,
      });
    }
  }
  return ok({
    holdId,
    charged: actual - writtenOff,
    released: settlement.released.reduce((s, x) => s + x.amount, 0),
    writtenOff,
    sources: mergeSources([...settlement.charged, ...extraSources]),
    ...decisionTail(d, hold.product),
  });
}

export function releaseHold(d: Draft, holdId: string): ReleaseResult {
  const hold = activeHold(d, holdId);
  if (isRefused(hold)) return hold;
  giveBack(d, hold, hold.sources, hold.sources);
  closeHold(d, holdId, "released");
  return ok({ holdId, released: hold.amount, ...decisionTail(d, hold.product) });
}

/** Expired holds give their reservation back. */
export function expireHolds(d: Draft): void {
  for (const hold of d.state.holds.filter((h) => h.expiresAt <= d.now)) {
    giveBack(d, hold, hold.sources, hold.sources);
    closeHold(d, hold.id, "expired");
  }
}

function closeHold(d: Draft, holdId: string, status: "settled" | "released" | "expired"): void {
  d.state.holds = d.state.holds.filter((h) => h.id !== holdId);
  d.effect({ type: "hold_closed", holdId, status });
}

// ─────────────────────────── charging ───────────────────────────

function logDecision(d: Draft, id: string, charge: Charge, decision: Decision): void {
  d.effect({
    type: "decision",
    id,
    at: d.now,
    product: charge.product,
    cost: charge.cost,
    reason: decision.allowed ? null : decision.reason,
    sources: decision.allowed ? decision.sources : null,
    idempotencyKey: d.ctx.idempotencyKey ?? null,
  });
}

/** Takes one source's amount out of its layer (a charge or a hold's reservation). */
function takeFromSource(d: Draft, product: Product, s: Source): void {
  if (s.layer === "window") {
    for (const kind of WINDOW_KINDS)
      d.putWindow(product, kind, chargeWindow(d.window(product, kind), kind, s.amount, d.now));
    d.effect({ type: "window_usage", product, at: d.now, amount: s.amount });
  } else if (s.layer === "grant") {
    const g = d.grant(s.grantId);
    if (!g) throw new Error(`waterfall chose unknown grant ${s.grantId}`);
    d.setGrant({ ...g, remaining: g.remaining - s.amount });
  } else if (s.layer === "pool") {
    drawFromLease(d, s);
  } else {
    const used = flexState(d.account, d.now)?.used ?? 0;
    d.update({ flexMonth: monthKey(d.now), flexUsed: used + s.amount });
  }
}

type ChargeMeta = { decisionId?: string; holdId?: string; rateCardVersion?: string };

function applyCharges(d: Draft, product: Product, sources: Source[], meta: ChargeMeta): void {
  const before = { fiveHour: d.window(product, "fiveHour").used, weekly: d.window(product, "weekly").used };
  for (const s of sources) {
    takeFromSource(d, product, s);
    recordCharge(d, product, s, meta);
  }
  if (sources.some((s) => s.layer === "window")) recordWindowExhausted(d, product, before);
}

/** A `charge` ledger entry for one layer that paid, plus the spend counters it feeds. */
function recordCharge(d: Draft, product: Product, s: Source, meta: ChargeMeta): void {
  d.update({ chargedTotal: d.account.chargedTotal + s.amount });
  if (s.layer !== "window") d.effect({ type: "spend", minute: minuteOf(d.now), amount: s.amount });
  d.ledger({ kind: "charge", amount: s.amount, layer: s.layer, product, grantId: grantIdOf(s), ...orgOf(s), ...meta });
  if (s.layer === "grant") afterCreditSpend(d, s.amount);
  if (s.layer === "pool") countPoolSpend(d, s.amount);
}

/** Returns a hold's reserved parts to their layers, each to the same window instance, grant or month it came from. */
function giveBack(d: Draft, hold: HoldRecord, reserved: readonly Source[], toRelease: readonly Source[]): void {
  const opened = hold.windowOpened;
  for (const s of reserved)
    d.ledger({
      kind: "release",
      amount: s.amount,
      layer: s.layer,
      product: hold.product,
      grantId: grantIdOf(s),
      ...orgOf(s),
      holdId: hold.id,
    });
  for (const s of toRelease) {
    if (s.layer === "window") {
      for (const kind of WINDOW_KINDS) {
        const at = opened[kind];
        if (at !== null)
          d.putWindow(hold.product, kind, releaseWindow(d.window(hold.product, kind), kind, s.amount, at, d.now));
      }
      // Only a reservation still in the current windows is given back, so only then does the usage record shrink.
      if (opened.weekly !== null && d.window(hold.product, "weekly").openedAt === opened.weekly)
        d.effect({ type: "window_usage", product: hold.product, at: d.now, amount: -s.amount });
    } else if (s.layer === "grant") {
      // An expired grant gets its reservation back, and the expiry sweep records the remainder as expired.
      const g = d.grant(s.grantId);
      if (g) d.setGrant({ ...g, remaining: g.remaining + s.amount });
    } else if (s.layer === "pool") {
      returnToLease(d, s, hold.createdAt);
    } else if (hold.flexMonth === monthKey(d.now)) {
      d.update({ flexUsed: Math.max(0, (flexState(d.account, d.now)?.used ?? 0) - s.amount) });
    }
  }
  expireGrants(d);
}

/** One `window.exhausted` event per window instance: when a charge takes it to its limit. */
function recordWindowExhausted(d: Draft, product: Product, before: Record<WindowKind, number>): void {
  const limits = d.plan.windows[product];
  for (const kind of WINDOW_KINDS) {
    const w = d.window(product, kind);
    if (before[kind] < limits[kind] && w.used >= limits[kind])
      d.event("window.exhausted", {
        product,
        window: kind,
        resetsAt: isoOrNull(viewWindow(w, kind, limits[kind], d.now).resetsAt),
      });
  }
}

function denialFields(dn: Extract<Decision, { allowed: false }>): DenialFields {
  return {
    allowed: false,
    reason: dn.reason,
    ...(dn.retryAfterSeconds !== undefined ? { retryAfterSeconds: dn.retryAfterSeconds } : {}),
    ...(dn.resetsAt !== undefined ? { resetsAt: iso(dn.resetsAt) } : {}),
    ...(dn.offer ? { offer: dn.offer } : {}),
  };
}

const grantIdOf = (s: Source): string | undefined =>
  s.layer === "grant" || s.layer === "pool" ? s.grantId : undefined;
const orgOf = (s: Source): { orgId?: string } => (s.layer === "pool" ? { orgId: s.orgId } : {});

/** Sums parts that came from the same layer and grant, keeping first-seen order. */
function mergeSources(sources: Source[]): Source[] {
  const out: Source[] = [];
  for (const s of sources) {
    const same = out.find((o) => o.layer === s.layer && grantIdOf(o) === grantIdOf(s));
    if (same) same.amount += s.amount;
    else out.push({ ...s });
  }
  return out;
}
