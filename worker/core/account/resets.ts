/** Resets (SPEC §5): banked resets — accrual and redemption — and the lazy application of global resets. */
import { PRODUCTS, type Product, planFor } from "../../catalog";
import { WINDOW_KINDS } from "../windows";
import type { BankedResetResult } from "./answers";
import { DAY_MS, HOUR_MS } from "../time";
import type { Draft } from "./draft";
import { type AccountRecord, ok, refused } from "./state";
import { availableBankedResets, bankedResetsJson, summaryIn } from "./summary";

/** Redeems the soonest-expiring banked reset and zeroes the product's windows. */
export function redeemBankedReset(d: Draft, product: Product): BankedResetResult {
  const item = availableBankedResets(d.state, d.now)[0];
  if (!item) return refused("no_banked_reset", "no banked reset is available");
  const forgiven = Math.max(...WINDOW_KINDS.map((k) => d.window(product, k).used));
  if (forgiven === 0)
    return refused("nothing_to_reset", `the ${product} windows are already empty; the banked reset was kept`);
  for (const kind of WINDOW_KINDS) d.putWindow(product, kind, { openedAt: null, used: 0 });
  d.effect({ type: "window_usage_cleared", product, upTo: null });
  d.state.bankedResets = d.state.bankedResets.filter((b) => b.id !== item.id);
  const resetId = d.ledger({ kind: "reset", amount: forgiven, product, note: `banked:${item.id}` });
  d.event("reset.applied", { resetId, product, bankedResetId: item.id, forgiven });
  return ok({ resetId, bankedResets: bankedResetsJson(d.state, d.now), account: summaryIn(d) });
}

function addBankedResets(d: Draft, count: number, expiresAt: number | null, origin: string): void {
  for (let i = 0; i < count; i++)
    d.state.bankedResets = insertInOrder(d.state.bankedResets, {
      id: crypto.randomUUID(),
      grantedAt: d.now,
      expiresAt,
      origin,
    });
}

/** Redemption order: soonest expiry first, never-expiring last, then oldest. */
function insertInOrder<T extends { expiresAt: number | null; grantedAt: number }>(list: T[], item: T): T[] {
  const key = (x: T) => x.expiresAt ?? Number.POSITIVE_INFINITY;
  const at = list.findIndex((x) => key(x) > key(item) || (key(x) === key(item) && x.grantedAt > item.grantedAt));
  return at === -1 ? [...list, item] : [...list.slice(0, at), item, ...list.slice(at)];
}

/** 1 banked reset per accrual period, up to the plan's cap. */
export function accrueBankedResets(d: Draft, account: AccountRecord): void {
  const rule = planFor(account.plan).bankedResets;
  if (!rule) return;
  const period = rule.everyDays * DAY_MS;
  const periods = Math.floor((d.now - account.bankedAccruedAt) / period);
  if (periods <= 0) return;
  const room = Math.max(0, rule.max - availableBankedResets(d.state, d.now).length);
  addBankedResets(d, Math.min(periods, room), null, "accrual");
  d.update({ bankedAccruedAt: account.bankedAccruedAt + periods * period });
}

/**
 * Applies global resets the object has not seen yet. Each applies only if the account existed at its `effectiveAt`
 * and its plan then was in scope; usage of windows opened before `effectiveAt` is forgiven.
 */
export function applyGlobalResets(d: Draft, account: AccountRecord): void {
  const fresh = d.ctx.resets.filter((r) => r.seq > account.resetSeq).sort((a, b) => a.seq - b.seq);
  if (fresh.length === 0) return;
  // Usage at or before these instants was already forgotten in this step (the store deletes it on commit).
  const clearedUpTo = new Map<Product, number>();
  for (const r of fresh) {
    if (account.createdAt > r.effectiveAt) continue;
    const planThen = d.reads.planAt(r.effectiveAt) ?? account.plan;
    if (r.plans && !r.plans.includes(planThen)) continue;
    let forgiven = 0;
    for (const product of r.products ?? PRODUCTS) {
      for (const kind of WINDOW_KINDS) {
        const w = d.window(product, kind);
        if (w.openedAt === null || w.openedAt > r.effectiveAt) continue;
        // Usage recorded after effectiveAt (before this object saw the reset) still counts.
        const after = Math.max(r.effectiveAt, w.openedAt - 1, clearedUpTo.get(product) ?? Number.NEGATIVE_INFINITY);
        const still = Math.max(0, d.reads.windowUsageAfter(product, after));
        forgiven = Math.max(forgiven, w.used - still);
        d.putWindow(
          product,
          kind,
          still > 0 ? { openedAt: w.openedAt, used: Math.min(still, w.used) } : { openedAt: null, used: 0 },
        );
      }
      clearedUpTo.set(product, Math.max(clearedUpTo.get(product) ?? Number.NEGATIVE_INFINITY, r.effectiveAt));
      d.effect({ type: "window_usage_cleared", product, upTo: r.effectiveAt });
    }
    const rule = planFor(planThen).bankedResets;
    if (r.bankedResets === "restore" && rule) {
      const missing = rule.max - availableBankedResets(d.state, d.now).length;
      if (missing > 0) addBankedResets(d, missing, null, `global:${r.resetId}`);
    }
    if (r.grantBankedResets) {
      const expiresAt = r.effectiveAt + r.grantBankedResets.expiresInHours * HOUR_MS;
      if (expiresAt > d.now) addBankedResets(d, r.grantBankedResets.count, expiresAt, `global:${r.resetId}`);
    }
    if (forgiven > 0) d.ledger({ kind: "reset", amount: forgiven, note: `global:${r.resetId}` });
    d.event("reset.applied", { resetId: r.resetId, global: true, forgiven });
  }
  d.update({ resetSeq: fresh[fresh.length - 1].seq });
}
