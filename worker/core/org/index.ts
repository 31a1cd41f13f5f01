/**
 * An organization's functional core (SPEC §9): the pool's grants and flex, its members, and the leases through which
 * members draw. Each operation is a step on an `OrgDraft`; a refusal changes nothing. Invariant I-pool, after every
 * step: Σ grant remainders + Σ members' leased grant credits = granted − expired (`poolInvariant`).
 */
import { catalog, planFor } from "../../catalog";
import { grantExpiry } from "../account/credits";
import type { LeaseClosed, LeaseIssue, LeaseNeed, PoolLimits } from "../account/membership";
import { LEASE_TTL_MS } from "../account/membership";
import { type Created, created, isRefused, type Ok, ok, type Refused, refused } from "../account/state";
import type { GrantRecord } from "../account/state";
import { anomalyThreshold } from "../guards";
import { addMonths, DAY_MS, iso, isoOrNull, MINUTE_MS, minuteOf, monthKey, nextMonthStart } from "../time";
import { burnDownOrder, type LeasePart } from "../waterfall";
import {
  type IssuedPart,
  type OrgContext,
  OrgDraft,
  type OrgPlan,
  type OrgReads,
  type OrgState,
  type OrgStep,
  type PoolGrantRequest,
  type PoolMember,
} from "./state";

const MAX = Number.MAX_SAFE_INTEGER;
/**
 * Beyond what a decision needs now, one issue takes at most 1/ISSUE_SHARE of what the pool has left, and at most an
 * even share of it among the active members when there are more (bench row 16c: the members' leases together do not
 * ask for more than the pool holds, so one member's lease does not starve another).
 */
export const ISSUE_SHARE = 8;
/** A starved request recalls leases until the pool expects back this many times what it lacks. */
const RECALL_MARGIN = 2;

export function orgStep<R extends { kind: string }>(
  state: OrgState,
  ctx: OrgContext,
  reads: OrgReads,
  op: (d: OrgDraft) => R,
): OrgStep<R> {
  const d = new OrgDraft(state, ctx, reads);
  if (d.state.org) {
    const offset = d.now - ctx.wallNow;
    if (Math.abs(offset - d.org.clockOffset) > 1_000) d.update({ clockOffset: offset });
    expirePoolGrants(d);
  }
  const result = op(d);
  if (result.kind === "refused") return { next: state, effects: [], touched: new Set(), result };
  return { next: d.state, effects: d.effects, touched: d.touched, result };
}

function exists(d: OrgDraft): Refused | null {
  return d.state.org ? null : refused("org_not_found", "no such organization");
}

// ─────────────────────────── the organization and its members ───────────────────────────

export function putOrg(d: OrgDraft, req: { plan: OrgPlan; flexMonthlyLimit?: number }): OrgResult {
  if (!d.state.org) {
    d.state.org = {
      orgId: d.ctx.orgId,
      plan: req.plan,
      flexMonthlyLimit: req.flexMonthlyLimit ?? null,
      flexMonth: null,
      flexUsed: 0,
      paused: false,
      resumedAt: null,
      createdAt: d.now,
      journalSeq: 0,
      grantedTotal: 0,
      expiredTotal: 0,
      clockOffset: d.now - d.ctx.wallNow,
    };
    d.event("org.created", { plan: req.plan });
  } else d.update({ plan: req.plan, flexMonthlyLimit: req.flexMonthlyLimit ?? null });
  return ok(orgView(d.state, d.now));
}

/** Adds a member (its account has already joined: at most one organization) or updates its pool limits. */
export function putMember(d: OrgDraft, accountId: string, limits: PoolLimits): MemberResult {
  const missing = exists(d);
  if (missing) return missing;
  const was = d.member(accountId);
  const m: PoolMember = {
    ...(was ?? {
      accountId,
      issued: 0,
      lastIssue: null,
      leasedGrants: 0,
      leasedFlex: 0,
      spent: 0,
      spentToday: 0,
      spentThisMonth: 0,
      reportedAt: null,
      closeAt: null,
      closing: null,
    }),
    active: true,
    ...limits,
  };
  d.putMember(m);
  return ok(memberView(m));
}

/** Removes a member: its lease is closed at once (by the object), and at its expiry at the latest. */
export function removeMember(d: OrgDraft, accountId: string): MemberResult {
  const missing = exists(d);
  if (missing) return missing;
  const m = d.member(accountId);
  if (!m?.active) return refused("not_found", "this account is not a member of the organization");
  const removed = { ...m, active: false, closeAt: d.now };
  d.putMember(removed);
  d.effect({ type: "wake", at: d.now });
  return ok(memberView(removed));
}

export function addPoolCredits(d: OrgDraft, req: PoolGrantRequest): PoolGrantResult {
  const missing = exists(d);
  if (missing) return missing;
  const expiresAt = grantExpiry(req, d.now);
  if (expiresAt !== null && typeof expiresAt === "object") return expiresAt;
  const grant = poolGrant(d, req.amount, req.kind, expiresAt, req.products ?? null, req.priority);
  if (isRefused(grant)) return grant;
  return created({ ...grantView(grant, d.now), amount: req.amount, createdAt: iso(d.now) });
}

/** A goodwill credit to the pool (an operator's refund): a new pool grant and a `refund` entry. */
export function refundPool(d: OrgDraft, req: { amount: number; reason: string }): PoolRefundResult {
  const missing = exists(d);
  if (missing) return missing;
  const max = catalog.guards.maxGoodwillRefund;
  if (req.amount > max)
    return refused(
      "goodwill_limit_exceeded",
      `a refund to a pool is a goodwill credit of at most ${max} micro-credits`,
      {
        max,
      },
    );
  const expiresAt = addMonths(d.now, catalog.guards.purchaseExpiryMonths);
  const grant = poolGrant(d, req.amount, "purchase", expiresAt, null, undefined, req.reason);
  if (isRefused(grant)) return grant;
  return created({ refundId: grant.id, grant: grantView(grant, d.now), reason: req.reason });
}

function poolGrant(
  d: OrgDraft,
  amount: number,
  kind: GrantRecord["kind"],
  expiresAt: number | null,
  products: GrantRecord["products"],
  priority?: number,
  refundReason?: string,
): GrantRecord | Refused {
  if (d.org.grantedTotal + amount > MAX)
    return refused("amount_out_of_range", "the pool's credits would pass 2^53 − 1 micro-credits", { max: MAX });
  d.update({ grantedTotal: d.org.grantedTotal + amount });
  const grant: GrantRecord = {
    id: crypto.randomUUID(),
    kind,
    priority: priority ?? catalog.guards.grantDefaults[kind],
    products,
    remaining: amount,
    expiresAt,
    createdAt: d.now,
    amount,
    topUpId: null,
  };
  d.setGrant(grant);
  if (refundReason === undefined) d.ledger({ kind: "grant", amount, grantId: grant.id, note: kind });
  else d.ledger({ kind: "refund", amount, grantId: grant.id, note: JSON.stringify({ reason: refundReason }) });
  if (expiresAt !== null) d.effect({ type: "wake", at: expiresAt });
  return grant;
}

export function resumePool(d: OrgDraft, operator: string): PoolResumeResult {
  const missing = exists(d);
  if (missing) return missing;
  const was = d.org.paused;
  if (was) {
    d.update({ paused: false, resumedAt: d.now, resumedDraws: d.drawnSince(d.now) });
    d.event("org.credits_resumed", { operator });
  }
  return ok({ resumed: was, org: orgView(d.state, d.now) });
}

/** An expired pool grant's remainder is recorded as expired (what members hold of it comes back, then expires). */
function expirePoolGrants(d: OrgDraft): void {
  for (const g of d.state.grants.filter((x) => x.remaining > 0 && x.expiresAt !== null && x.expiresAt <= d.now)) {
    d.setGrant({ ...g, remaining: 0 });
    d.update({ expiredTotal: d.org.expiredTotal + g.remaining });
    d.ledger({ kind: "expiry", amount: g.remaining, grantId: g.id });
  }
}

// ─────────────────────────── leases ───────────────────────────

export function flexLimit(d: OrgDraft): number {
  return d.org.flexMonthlyLimit ?? planFor(d.org.plan).flexMonthlyLimit ?? 0;
}

const flexUsedNow = (d: OrgDraft): number => (d.org.flexMonth === monthKey(d.now) ? d.org.flexUsed : 0);

/**
 * Issues the member's next lease: at least the shortfall its decision needs now, and up to what it wants, but
 * beyond the shortfall at most a share of what the pool has left (so a scarce pool is not hoarded by the first
 * members to ask). The same number asked again answers the same parts. Nothing is issued to a non-member, while the
 * pool is paused, or when the pool cannot cover the shortfall (leases holding what it lacks are then recalled).
 */
export function issueLease(d: OrgDraft, accountId: string, need: LeaseNeed): Ok<LeaseIssue> | Refused {
  const missing = exists(d);
  if (missing) return missing;
  const m = d.member(accountId);
  const base = {
    orgId: d.ctx.orgId,
    n: need.n,
    paused: d.org.paused,
    member: m?.active === true,
    limits: { dailyLimit: m?.dailyLimit ?? null, monthlyLimit: m?.monthlyLimit ?? null },
  };
  if (!m) return ok({ ...base, parts: [] });
  const reported = withReport(d, m, need.report);
  d.putMember(reported);
  // Asked again (its answer was lost), an issue is answered the same, also to a member removed meanwhile: the member
  // then holds it without drawing from it, and its close finds it taken and returns it.
  if (m.lastIssue?.n === need.n) return ok({ ...base, parts: partsOf(d, m.lastIssue.parts) });
  if (!m.active || need.n <= m.issued || m.closing !== null || d.org.paused) return ok({ ...base, parts: [] });
  const grants = d.state.grants
    .filter(
      (g) =>
        g.remaining > 0 &&
        (g.expiresAt === null || g.expiresAt > d.now) &&
        (g.products === null || g.products.includes(need.product)),
    )
    .sort(burnDownOrder);
  const flexLeft = Math.max(0, flexLimit(d) - flexUsedNow(d));
  const available = grants.reduce((s, g) => s + g.remaining, 0) + flexLeft;
  if (available < need.shortfall || available === 0) {
    // A member needs credit now that the pool does not hold: what other members hold unspent comes back. (A refill
    // asked ahead of need does not recall anyone.)
    if (need.shortfall > 0) recallLeases(d, need.shortfall - available, accountId);
    return ok({ ...base, parts: [] });
  }
  // Beyond the shortfall, a share of what is left and of what the pool's anomaly guard allows in its window: members
  // come back (and report their spend) at least that often, so a spike is seen while it is small.
  const members = [...d.state.members.values()].filter((x) => x.active).length;
  const share = Math.floor(Math.min(available, poolThreshold(d)) / Math.max(ISSUE_SHARE, members));
  const amount = Math.min(need.want, Math.max(need.shortfall, share), available);
  if (pausesPool(d, need.shortfall)) return ok({ ...base, paused: true, parts: [] });
  const parts: IssuedPart[] = [];
  let rest = amount;
  for (const g of grants) {
    if (rest === 0) break;
    const take = Math.min(rest, g.remaining);
    d.setGrant({ ...g, remaining: g.remaining - take });
    parts.push({ grantId: g.id, amount: take });
    rest -= take;
  }
  if (rest > 0) {
    d.update({ flexMonth: monthKey(d.now), flexUsed: flexUsedNow(d) + rest });
    parts.push({ grantId: null, amount: rest });
  }
  for (const p of parts)
    d.ledger({
      kind: "lease",
      amount: p.amount,
      layer: "pool",
      ...(p.grantId === null ? {} : { grantId: p.grantId }),
      memberId: accountId,
      note: `issue ${need.n}`,
    });
  const grantPart = parts.filter((p) => p.grantId !== null).reduce((s, p) => s + p.amount, 0);
  const closeAt = d.now + LEASE_TTL_MS;
  d.putMember({
    ...reported,
    issued: need.n,
    lastIssue: { n: need.n, parts },
    leasedGrants: m.leasedGrants + grantPart,
    leasedFlex: m.leasedFlex + (amount - grantPart),
    closeAt,
  });
  d.effect({ type: "wake", at: closeAt });
  return ok({ ...base, parts: partsOf(d, parts) });
}

/**
 * A member's report of its pool spend (cumulative, sent with every lease request): the pool's anomaly guard counts
 * what it adds. A report older than one already taken (a request overtaken by a close) never lowers it.
 */
function withReport(d: OrgDraft, m: PoolMember, report: LeaseNeed["report"]): PoolMember {
  const spent = Math.max(m.spent, report.spent);
  d.draw(spent - m.spent);
  return {
    ...m,
    spent,
    spentToday: report.drawnToday,
    spentThisMonth: report.drawnThisMonth,
    reportedAt: d.now,
  };
}

/** Issued parts as the member's lease holds them (the grant's order and limits travel with the credit). */
function partsOf(d: OrgDraft, parts: IssuedPart[]): LeasePart[] {
  return parts.map((p) => {
    const g = p.grantId === null ? undefined : d.state.grants.find((x) => x.id === p.grantId);
    return {
      grantId: p.grantId,
      priority: g?.priority ?? 0,
      products: g?.products ?? null,
      expiresAt: p.grantId === null ? nextMonthStart(d.now) : (g?.expiresAt ?? null),
      createdAt: g?.createdAt ?? d.now,
      remaining: p.amount,
    };
  });
}

/**
 * Open leases are closed as soon as the object can: every one when the pool pauses; when it lacks `missing` for a
 * member's decision, the largest first (by what the pool counts out with the member, less its reported spend) until
 * they hold RECALL_MARGIN × `missing`, so members in the middle of their work keep theirs (bench row 16c). The asking
 * member keeps its own: its request counted on it.
 */
function recallLeases(d: OrgDraft, missing = MAX, asking?: string): void {
  const open = [...d.state.members.values()]
    .filter((m) => m.accountId !== asking && m.closeAt !== null && m.closeAt > d.now && unspent(m) > 0)
    .sort((a, b) => unspent(b) - unspent(a));
  let back = 0;
  for (const m of open) {
    if (back >= RECALL_MARGIN * missing) break;
    d.putMember({ ...m, closeAt: d.now });
    back += unspent(m);
  }
  d.effect({ type: "wake", at: d.now });
}

/**
 * The pool's anomaly guard: if `amount` more would take what members spent from the pool in the trailing minutes
 * (as they reported it) past max(floor, multiplier × its 7-day average), the pool pauses, records
 * `org.credits_paused`, and recalls every lease. Members report with every lease request and close, so a spike is
 * seen within one lease of each member; the recall then stops what their leases still hold.
 */
function pausesPool(d: OrgDraft, amount: number): boolean {
  const g = catalog.guards.poolAnomaly;
  const from = d.now - (g.trailingMinutes - 1) * MINUTE_MS;
  const resumedAt = d.org.resumedAt;
  // After a resume the trailing window counts from the resume instant, as for an account (SPEC §4).
  const trailing =
    resumedAt !== null && minuteOf(resumedAt) >= minuteOf(from)
      ? Math.max(0, d.drawnSince(resumedAt) - (d.org.resumedDraws ?? 0))
      : d.drawnSince(from);
  if (trailing + amount <= g.floorMicroCredits) return false;
  const threshold = poolThreshold(d);
  if (trailing + amount <= threshold) return false;
  d.update({ paused: true });
  d.event("org.credits_paused", { trailingSpend: trailing, attempted: amount, threshold });
  recallLeases(d);
  return true;
}

/** The pool's anomaly threshold now: max(floor, multiplier × its 7-day average spend per trailing window). */
function poolThreshold(d: OrgDraft): number {
  const g = catalog.guards.poolAnomaly;
  return anomalyThreshold(g, d.drawnSince(d.now - g.baselineDays * DAY_MS));
}

/** Members whose lease is due to close at `now` (and closes asked before and not applied). */
export const dueCloses = (s: OrgState, now: number): PoolMember[] =>
  [...s.members.values()].filter((m) => m.closing !== null || (m.closeAt !== null && m.closeAt <= now));

/** Before asking the member, the object records which close it asks (asked again with the same id after a crash). */
export function beginClose(
  d: OrgDraft,
  accountId: string,
): Ok<{ closeId: string; issuedUpTo: number; leave: boolean }> | Refused {
  const m = d.member(accountId);
  if (!m) return refused("not_found", "no such member");
  const closeId = m.closing ?? crypto.randomUUID();
  if (m.closing === null) d.putMember({ ...m, closing: closeId });
  return ok({ closeId, issuedUpTo: m.issued, leave: !m.active });
}

/**
 * Applies the member's close: what it returned goes back to the grants and flex it came from (`lease_return`
 * entries), an issue it never took comes back whole, and what it kept is spent. A lease a hold still reserves from
 * is closed again when the hold has ended.
 */
export function applyClose(d: OrgDraft, accountId: string, closeId: string, answer: LeaseClosed): Ok<null> | Refused {
  const m = d.member(accountId);
  if (!m || m.closing !== closeId) return ok(null);
  const back: IssuedPart[] = [...answer.returned];
  if (!answer.known) console.error(JSON.stringify({ event: "org.lease_unknown", orgId: d.ctx.orgId, accountId }));
  else if (m.lastIssue && answer.taken < m.lastIssue.n) back.push(...m.lastIssue.parts);
  let grantsBack = 0;
  let flexBack = 0;
  for (const p of back) {
    if (p.amount <= 0) continue;
    if (p.grantId === null) {
      flexBack += p.amount;
      d.update({ flexUsed: Math.max(0, flexUsedNow(d) - p.amount), flexMonth: monthKey(d.now) });
    } else {
      grantsBack += p.amount;
      const g = d.state.grants.find((x) => x.id === p.grantId);
      if (g) d.setGrant({ ...g, remaining: g.remaining + p.amount });
      else console.error(JSON.stringify({ event: "org.return_to_unknown_grant", grantId: p.grantId }));
    }
    d.ledger({
      kind: "lease_return",
      amount: p.amount,
      layer: "pool",
      ...(p.grantId === null ? {} : { grantId: p.grantId }),
      memberId: accountId,
    });
  }
  const spent = answer.known ? answer.spent : m.spent;
  d.draw(Math.max(0, spent - m.spent));
  d.putMember({
    ...m,
    leasedGrants: m.leasedGrants - grantsBack,
    leasedFlex: m.leasedFlex - flexBack,
    lastIssue: null,
    spent,
    spentToday: answer.known ? answer.drawnToday : m.spentToday,
    spentThisMonth: answer.known ? answer.drawnThisMonth : m.spentThisMonth,
    reportedAt: d.now,
    closing: null,
    closeAt: answer.heldUntil,
  });
  if (answer.heldUntil !== null) d.effect({ type: "wake", at: answer.heldUntil });
  expirePoolGrants(d);
  return ok(null);
}

// ─────────────────────────── views ───────────────────────────

export type OrgResult = Ok<OrgView> | Refused;
export type MemberResult = Ok<MemberView> | Refused;
export type PoolGrantResult = Created<PoolGrantCreated> | Refused;
export type PoolRefundResult = Created<PoolRefundView> | Refused;
export type PoolResumeResult = Ok<{ resumed: boolean; org: OrgView }> | Refused;

export interface PoolGrantCreated extends PoolGrantView {
  amount: number;
  createdAt: string;
}

export interface PoolGrantView {
  id: string;
  kind: GrantRecord["kind"];
  priority: number;
  remaining: number;
  expiresAt: string | null;
  products: GrantRecord["products"];
}

export interface PoolRefundView {
  refundId: string;
  grant: PoolGrantView;
  reason: string;
}

export interface MemberView {
  accountId: string;
  active: boolean;
  dailyLimit: number | null;
  monthlyLimit: number | null;
  spentToday: number;
  spentThisMonth: number;
  /** credits out with the member now: its lease, and what it spent of the lease since the last report */
  leased: number;
  reportedAt: string | null;
}

export interface OrgView {
  orgId: string;
  plan: OrgPlan;
  pool: { balance: number; leased: number; spent: number; granted: number; expired: number };
  grants: PoolGrantView[];
  flex: { limit: number; used: number } | null;
  paused: boolean;
  members: MemberView[];
  topSpenders: { accountId: string; spentToday: number; spentThisMonth: number }[];
  createdAt: string;
}

const grantView = (g: GrantRecord, now: number): PoolGrantView => ({
  id: g.id,
  kind: g.kind,
  priority: g.priority,
  remaining: g.expiresAt !== null && g.expiresAt <= now ? 0 : g.remaining,
  expiresAt: isoOrNull(g.expiresAt),
  products: g.products,
});

/** What the pool counts out with a member and not spent: issued less returned, less the spend it last reported. */
const unspent = (m: PoolMember): number => Math.max(0, m.leasedGrants + m.leasedFlex - m.spent);

const memberView = (m: PoolMember): MemberView => ({
  accountId: m.accountId,
  active: m.active,
  dailyLimit: m.dailyLimit,
  monthlyLimit: m.monthlyLimit,
  spentToday: m.spentToday,
  spentThisMonth: m.spentThisMonth,
  leased: unspent(m),
  reportedAt: isoOrNull(m.reportedAt),
});

/** The numbers of I-pool: the pool's remainder plus what is out with members equals what was granted less expiries. */
export function poolInvariant(s: OrgState): {
  remaining: number;
  leased: number;
  granted: number;
  expired: number;
  holds: boolean;
} {
  const remaining = s.grants.reduce((sum, g) => sum + g.remaining, 0);
  const leased = [...s.members.values()].reduce((sum, m) => sum + m.leasedGrants, 0);
  const granted = s.org?.grantedTotal ?? 0;
  const expired = s.org?.expiredTotal ?? 0;
  return { remaining, leased, granted, expired, holds: remaining + leased === granted - expired };
}

export function orgView(s: OrgState, now: number): OrgView {
  const o = s.org;
  if (!o) throw new Error("view of an organization that does not exist");
  const members = [...s.members.values()];
  const inv = poolInvariant(s);
  const spent = members.reduce((sum, m) => sum + m.spent, 0);
  const limit = o.flexMonthlyLimit ?? planFor(o.plan).flexMonthlyLimit ?? 0;
  const month = monthKey(now);
  return {
    orgId: o.orgId,
    plan: o.plan,
    pool: { balance: inv.remaining, leased: inv.leased, spent, granted: inv.granted, expired: inv.expired },
    grants: s.grants
      .filter((g) => g.remaining > 0)
      .sort(burnDownOrder)
      .map((g) => grantView(g, now)),
    flex: limit > 0 ? { limit, used: o.flexMonth === month ? o.flexUsed : 0 } : null,
    paused: o.paused,
    members: members.filter((m) => m.active).map(memberView),
    topSpenders: members
      .filter((m) => m.spentThisMonth > 0)
      .sort((a, b) => b.spentThisMonth - a.spentThisMonth || (a.accountId < b.accountId ? -1 : 1))
      .slice(0, 10)
      .map((m) => ({ accountId: m.accountId, spentToday: m.spentToday, spentThisMonth: m.spentThisMonth })),
    createdAt: iso(o.createdAt),
  };
}
