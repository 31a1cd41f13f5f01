/** The credits lifecycle (SPEC §6): grants, refunds, expiry, low-balance events and auto top-up. */
import { catalog, planFor } from "../../catalog";
import { addMonths, HOUR_MS, iso, MINUTE_MS, monthKey } from "../time";
import type { AccountChangeResult, GrantResult, RefundResult } from "./answers";
import type { Draft } from "./draft";
import { type AutoTopUpConfig, created, type GrantRecord, ok, refused, type Refused } from "./state";
import { creditBalance, DEFAULT_AUTO_TOP_UP, grantJson, summaryIn } from "./summary";

const MAX = Number.MAX_SAFE_INTEGER;
const TOP_UP_COOLDOWN_MS = MINUTE_MS;
const TOP_UP_PENDING_TIMEOUT_MS = HOUR_MS;

export interface GrantInput {
  amount: number;
  kind: GrantRecord["kind"];
  expiresAt?: number;
  products?: GrantRecord["products"];
  topUpId?: string;
  priority?: number;
}

/** A charge or write-off of this account that a refund may name (looked up before the step: it may be in D1). */
export interface RefundableEntry {
  kind: string;
  amount: number;
  layer?: string | null;
}

/**
 * A new grant's expiry (SPEC §6): as given, 12 months for a purchase, none otherwise; a promo must give one, and it
 * must lie ahead. An account's grants and a pool's alike.
 */
export function grantExpiry(req: Pick<GrantInput, "kind" | "expiresAt">, now: number): number | null | Refused {
  const expiresAt =
    req.expiresAt ?? (req.kind === "purchase" ? addMonths(now, catalog.guards.purchaseExpiryMonths) : null);
  if (req.kind === "promo" && req.expiresAt === undefined)
    return refused("invalid_request", "a promo grant requires expiresAt", { field: "expiresAt" });
  if (expiresAt !== null && expiresAt <= now)
    return refused("invalid_request", "expiresAt must be in the future", { field: "expiresAt" });
  return expiresAt;
}

export function addCredits(d: Draft, req: GrantInput): GrantResult {
  const expiresAt = grantExpiry(req, d.now);
  if (expiresAt !== null && typeof expiresAt === "object") return expiresAt;
  if (req.topUpId !== undefined) {
    const confirmation = confirmTopUp(d, req.topUpId);
    if (confirmation) return confirmation;
  }
  const overflow = countGranted(d, req.amount);
  if (overflow) return overflow;
  const grant: GrantRecord = {
    id: crypto.randomUUID(),
    kind: req.kind,
    priority: req.priority ?? catalog.guards.grantDefaults[req.kind],
    products: req.products ?? null,
    remaining: req.amount,
    expiresAt,
    createdAt: d.now,
    amount: req.amount,
    topUpId: req.topUpId ?? null,
  };
  d.setGrant(grant);
  d.ledger({ kind: "grant", amount: req.amount, grantId: grant.id, note: req.kind });
  if (expiresAt !== null) d.effect({ type: "wake", at: expiresAt });
  return created({
    ...grantJson(grant),
    amount: req.amount,
    createdAt: iso(grant.createdAt),
    ...(req.topUpId ? { topUpId: req.topUpId } : {}),
  });
}

/**
 * A compensating credit: a new grant plus a `refund` entry; nothing earlier is edited. With `entryId` it compensates
 * that charge or write-off of this account, never beyond its amount across all refunds; without one it is a
 * goodwill credit of at most `maxGoodwillRefund`. `entry` is what the object found under `entryId`, if anything.
 */
export function refund(
  d: Draft,
  req: { amount: number; reason: string; entryId?: string },
  entry: RefundableEntry | null,
): RefundResult {
  if (req.entryId === undefined) {
    const max = catalog.guards.maxGoodwillRefund;
    if (req.amount > max)
      return refused(
        "goodwill_limit_exceeded",
        `a refund without entryId is a goodwill credit of at most ${max} micro-credits`,
        { max },
      );
  } else {
    if (!entry || (entry.kind !== "charge" && entry.kind !== "write_off"))
      return refused("entry_not_found", "this account has no charge or write-off with this entryId");
    // Window usage is not money (SPEC §7): it cost no credits, and the ledger keeps it only as hourly rollups, so
    // naming one would succeed or fail by how soon it settled.
    if (entry.layer === "window")
      return refused(
        "entry_not_found",
        "this entry is plan window usage, not a credit or flex charge: there is nothing to compensate",
      );
    // A pool charge was paid by the organization: compensating it here would credit this account, not the pool.
    if (entry.layer === "pool")
      return refused(
        "entry_not_found",
        "this entry was paid by the organization's pool: refund it to the pool (POST /v1/admin/orgs/{orgId}/refunds)",
      );
    const refunded = d.reads.refundedAgainst(req.entryId);
    if (refunded + req.amount > entry.amount)
      return refused("refund_exceeds_entry", "refunds against this entry would exceed what it charged", {
        entryAmount: entry.amount,
        refunded,
      });
    d.effect({ type: "entry_refunded", entryId: req.entryId, refunded: refunded + req.amount });
  }
  const overflow = countGranted(d, req.amount);
  if (overflow) return overflow;
  const grant: GrantRecord = {
    id: crypto.randomUUID(),
    kind: "purchase",
    priority: catalog.guards.grantDefaults.purchase,
    products: null,
    remaining: req.amount,
    expiresAt: addMonths(d.now, catalog.guards.purchaseExpiryMonths),
    createdAt: d.now,
    amount: req.amount,
    topUpId: null,
  };
  d.setGrant(grant);
  const refundId = d.ledger({
    kind: "refund",
    amount: req.amount,
    grantId: grant.id,
    note: JSON.stringify({ reason: req.reason, refunds: req.entryId ?? null }),
  });
  return created({
    refundId,
    grant: grantJson(grant),
    reason: req.reason,
    refundedEntryId: req.entryId ?? null,
    account: summaryIn(d),
  });
}

/** Counts credits granted or refunded; refuses a lifetime total past 2^53 − 1, so no balance or sum can pass it. */
function countGranted(d: Draft, amount: number): Refused | null {
  if (d.account.grantedTotal + amount > MAX)
    return refused("amount_out_of_range", "the account's credits would pass 2^53 − 1 micro-credits", { max: MAX });
  d.update({ grantedTotal: d.account.grantedTotal + amount });
  return null;
}

/** An expired grant's remainder is recorded as expired, never spent. */
export function expireGrants(d: Draft): void {
  for (const g of d.state.grants.filter((x) => x.expiresAt !== null && x.expiresAt <= d.now)) {
    d.setGrant({ ...g, remaining: 0 });
    d.ledger({ kind: "expiry", amount: g.remaining, grantId: g.id });
    d.event("credits.expired", { grantId: g.id, amount: g.remaining });
  }
}

/** `credits.low` / `credits.depleted` when a spend crosses the line, then the auto top-up check. */
export function afterCreditSpend(d: Draft, spent: number): void {
  const after = creditBalance(d.state, d.now);
  const before = after + spent;
  const low = catalog.guards.lowBalanceMicroCredits;
  if (after === 0) d.event("credits.depleted", { balance: 0 });
  else if (before >= low && after < low) d.event("credits.low", { balance: after, threshold: low });
  maybeRequestTopUp(d);
}

export function setAutoTopUp(d: Draft, config: AutoTopUpConfig): AccountChangeResult {
  const plan = planFor(d.account.plan);
  if (config.enabled && !plan.autoTopUpAllowed)
    return refused("auto_top_up_not_allowed", `plan '${plan.id}' does not allow auto top-up`);
  d.update({ autoTopUp: config });
  maybeRequestTopUp(d);
  return ok(summaryIn(d));
}

/** Records one `topup.requested` when the balance is below the threshold, within the cooldown and monthly cap. */
function maybeRequestTopUp(d: Draft): void {
  const cfg = d.account.autoTopUp ?? DEFAULT_AUTO_TOP_UP;
  if (!cfg.enabled || !planFor(d.account.plan).autoTopUpAllowed) return;
  if (creditBalance(d.state, d.now) >= cfg.threshold) return;
  if (d.state.pendingTopUp !== null) return;
  const last = d.reads.lastTopUpAt();
  if (last !== undefined && d.now - last < TOP_UP_COOLDOWN_MS) return;
  const month = monthKey(d.now);
  if (d.reads.topUpsInMonth(month) >= cfg.maxPerMonth) return;
  const topUpId = `tu_${crypto.randomUUID()}`;
  d.state.pendingTopUp = { id: topUpId, requestedAt: d.now };
  d.effect({ type: "topup_requested", topUpId, at: d.now, amount: cfg.amount, month });
  d.event("topup.requested", { topUpId, amount: cfg.amount });
}

/** A purchase carrying a `topUpId` confirms that pending (or timed-out) request, once. */
function confirmTopUp(d: Draft, topUpId: string): Refused | null {
  const status = d.reads.topUpStatus(topUpId);
  if (!status) return refused("topup_unknown", "no top-up with this topUpId was requested");
  if (status === "confirmed") return refused("topup_unknown", "this top-up was already confirmed");
  if (d.state.pendingTopUp?.id === topUpId) d.state.pendingTopUp = null;
  d.effect({ type: "topup_confirmed", topUpId });
  return null;
}

/** A pending top-up older than an hour counts as failed. */
export function expireTopUps(d: Draft): void {
  const pending = d.state.pendingTopUp;
  if (pending === null || pending.requestedAt > d.now - TOP_UP_PENDING_TIMEOUT_MS) return;
  d.state.pendingTopUp = null;
  d.effect({ type: "topups_failed", requestedUpTo: d.now - TOP_UP_PENDING_TIMEOUT_MS });
}
