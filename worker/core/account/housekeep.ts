/** Everything time does to an account, applied before any decision reads it; and the account's creation. */
import { DEFAULT_PLAN } from "../../catalog";
import { expireGrants, expireTopUps } from "./credits";
import type { Draft } from "./draft";
import { expireHolds } from "./metering";
import { accrueBankedResets, applyGlobalResets } from "./resets";

/** A clock difference below this is skew between clocks, not the test clock moving: not worth a write. */
const CLOCK_SKEW_MS = 1_000;

export function housekeep(d: Draft): void {
  const account = d.state.account;
  if (!account) return;
  const offset = d.now - d.ctx.wallNow;
  if (Math.abs(offset - account.clockOffset) > CLOCK_SKEW_MS) d.update({ clockOffset: offset });
  applyGlobalResets(d, account);
  expireHolds(d);
  expireGrants(d);
  accrueBankedResets(d, account);
  expireTopUps(d);
}

/** The first write creates the account on `go`. Global resets that predate it do not apply to it. */
export function ensureAccount(d: Draft): void {
  if (d.state.account) return;
  const latest = d.ctx.resets.filter((r) => r.effectiveAt < d.now).reduce((m, r) => Math.max(m, r.seq), 0);
  d.state.account = {
    accountId: d.ctx.accountId,
    plan: DEFAULT_PLAN,
    createdAt: d.now,
    paused: false,
    spendCap: null,
    autoTopUp: null,
    flexMonth: null,
    flexUsed: 0,
    resetSeq: latest,
    bankedAccruedAt: d.now,
    clockOffset: d.now - d.ctx.wallNow,
    chargedTotal: 0,
    resumedAt: null,
    resumedSpend: 0,
    grantedTotal: 0,
    journalSeq: 0,
    org: null,
  };
  d.effect({ type: "plan_changed", since: d.now, plan: DEFAULT_PLAN });
}
