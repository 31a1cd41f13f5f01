/**
 * A member's side of an organization's pool (SPEC §9). The member's object holds a lease — credits reserved from the
 * pool's grants and flex — and spends it locally, in the same step as any decision. The organization's object issues
 * leases (numbered, so a lost answer is never taken twice) and closes them: a close returns what is unspent and
 * voids an issue the member never took. docs/organizations.md has the protocol.
 */
import type { Product } from "../../catalog";
import { monthKey, utcDayStart } from "../time";
import {
  type LeasePart,
  type PoolInput,
  type Source,
  spendableGrants,
  spendableParts,
  windowCapacity,
} from "../waterfall";
import type { MemberJson } from "./answers";
import type { Draft } from "./draft";
import { waterfallInput } from "./guards";
import { ok, refused, type Ok, type Refused } from "./state";

export interface PoolLimits {
  dailyLimit: number | null;
  monthlyLimit: number | null;
}

/** The account's membership: at most one organization at a time. */
export interface Membership extends PoolLimits {
  orgId: string;
  /** false once removed: the lease is no longer spent, and its rest goes back at the organization's close */
  active: boolean;
  /** pool draws (charges, and what holds reserve) on the UTC day `drawDay` and in the month `drawMonth` */
  drawDay: string;
  drawnToday: number;
  drawMonth: string;
  drawnThisMonth: number;
  /** the lease, part by part; a part a hold reserved from stays until the hold closes */
  lease: LeasePart[];
  /** lease issues up to this number are settled here: taken, or voided by a close */
  issued: number;
  /** everything the pool has paid for this member (charges less what releases gave back) */
  spent: number;
  /** the organization said its pool is paused */
  poolPaused: boolean;
  /** the latest close, answered again if the organization asks again */
  lastClose: { closeId: string; answer: LeaseClosed } | null;
}

/** What the organization answers a lease request with. */
export interface LeaseIssue {
  orgId: string;
  /** the issue's number: the member takes it only as the next after `issued` */
  n: number;
  parts: LeasePart[];
  paused: boolean;
  /** false: the account is not an active member (the lease is returned at the next close) */
  member: boolean;
  limits: PoolLimits;
}

/** What a close hands back to the organization. */
export interface LeaseClosed {
  /** false: this account is not (or no longer) this organization's member; nothing was returned */
  known: boolean;
  /** issues up to here were taken; later ones (up to the close's `issuedUpTo`) are void */
  taken: number;
  returned: { grantId: string | null; amount: number }[];
  spent: number;
  drawnToday: number;
  drawnThisMonth: number;
  /** a hold still reserves lease credit until then: the organization closes again at that time */
  heldUntil: number | null;
}

export interface LeaseCloseRequest {
  orgId: string;
  closeId: string;
  issuedUpTo: number;
  /** the member was removed: it stops drawing from the pool */
  leave: boolean;
}

/**
 * Lease sizing: a lease lasts this many decisions of the size that asked, or this long at the recent rate. A member
 * deciding once a minute then asks the pool about once an hour (its lease closes at LEASE_TTL_MS).
 */
export const LEASE = { decisions: 64, horizonMs: 60_000, lowWaterMs: 15_000, rateWindowMs: 60_000 };

/** The member's draws, rolled to today and this month. */
function draws(
  m: Membership,
  now: number,
): Pick<Membership, "drawDay" | "drawnToday" | "drawMonth" | "drawnThisMonth"> {
  const day = String(utcDayStart(now));
  const month = monthKey(now);
  return {
    drawDay: day,
    drawnToday: m.drawDay === day ? m.drawnToday : 0,
    drawMonth: month,
    drawnThisMonth: m.drawMonth === month ? m.drawnThisMonth : 0,
  };
}

/** What the member's pool limits still allow today and this month, or null without limits. */
export function drawRemaining(m: Membership, now: number): number | null {
  const d = draws(m, now);
  const left = [
    m.dailyLimit === null ? null : m.dailyLimit - d.drawnToday,
    m.monthlyLimit === null ? null : m.monthlyLimit - d.drawnThisMonth,
  ].filter((x): x is number => x !== null);
  return left.length === 0 ? null : Math.max(0, Math.min(...left));
}

/** The membership as the account summary shows it. */
export function memberJson(m: Membership, now: number): MemberJson {
  const d = draws(m, now);
  return {
    orgId: m.orgId,
    active: m.active,
    lease: m.lease.reduce((s, p) => s + p.remaining, 0),
    spent: m.spent,
    drawnToday: d.drawnToday,
    drawnThisMonth: d.drawnThisMonth,
    dailyLimit: m.dailyLimit,
    monthlyLimit: m.monthlyLimit,
    poolPaused: m.poolPaused,
  };
}

/** The waterfall's pool layer for a member; null for an account outside any organization. */
export function poolInput(m: Membership | null, now: number): PoolInput | null {
  if (!m?.active) return null;
  return { orgId: m.orgId, parts: m.lease, drawRemaining: drawRemaining(m, now), paused: m.poolPaused };
}

function membership(d: Draft): Membership {
  const m = d.account.org;
  if (!m) throw new Error("a pool step for an account outside any organization");
  return m;
}

function setMembership(d: Draft, m: Membership): void {
  d.update({ org: m });
}

/** A pool source takes from the lease part it names, and counts as drawn. */
export function drawFromLease(d: Draft, s: Extract<Source, { layer: "pool" }>): void {
  const m = membership(d);
  const grantId = s.grantId ?? null;
  const lease = m.lease.map((p) => (p.grantId === grantId ? { ...p, remaining: p.remaining - s.amount } : p));
  const now = draws(m, d.now);
  setMembership(d, {
    ...m,
    ...now,
    lease,
    drawnToday: now.drawnToday + s.amount,
    drawnThisMonth: now.drawnThisMonth + s.amount,
  });
}

/** A charge from the pool adds to what the pool paid for this member. */
export function countPoolSpend(d: Draft, amount: number): void {
  const m = membership(d);
  setMembership(d, { ...m, spent: m.spent + amount });
}

/** A hold's pool reservation goes back to its lease part (kept while the hold was active), and counts undrawn. */
export function returnToLease(d: Draft, s: Extract<Source, { layer: "pool" }>, heldAt: number): void {
  const m = d.account.org;
  if (!m || m.orgId !== s.orgId) return;
  const grantId = s.grantId ?? null;
  const has = m.lease.some((p) => p.grantId === grantId);
  const lease = has
    ? m.lease.map((p) => (p.grantId === grantId ? { ...p, remaining: p.remaining + s.amount } : p))
    : [...m.lease, { grantId, priority: 0, products: null, expiresAt: null, createdAt: d.now, remaining: s.amount }];
  const now = draws(m, d.now);
  const sameDay = m.drawDay === String(utcDayStart(heldAt));
  const sameMonth = m.drawMonth === monthKey(heldAt);
  setMembership(d, {
    ...m,
    ...now,
    lease,
    drawnToday: sameDay ? Math.max(0, now.drawnToday - s.amount) : now.drawnToday,
    drawnThisMonth: sameMonth ? Math.max(0, now.drawnThisMonth - s.amount) : now.drawnThisMonth,
  });
}

/** Joins an organization (or updates the limits of this one). An account belongs to at most one. */
export function joinOrg(d: Draft, orgId: string, limits: PoolLimits): Ok<{ orgId: string }> | Refused {
  const m = d.account.org;
  if (m && m.orgId !== orgId && (m.active || m.lease.length > 0))
    return refused("already_member", "this account belongs to another organization", { orgId: m.orgId });
  const same = m?.orgId === orgId ? m : null;
  const base: Membership = same ?? {
    orgId,
    active: true,
    dailyLimit: null,
    monthlyLimit: null,
    drawDay: "",
    drawnToday: 0,
    drawMonth: "",
    drawnThisMonth: 0,
    lease: [],
    issued: 0,
    spent: 0,
    poolPaused: false,
    lastClose: null,
  };
  if (!same?.active) d.event("org.member_joined", { orgId });
  setMembership(d, { ...base, active: true, ...limits });
  return ok({ orgId });
}

/**
 * Takes a lease issue: only the next number (a replayed or late issue, or one a close voided, is left; the
 * organization returns it to the pool at its close). Each part is a `lease` journal entry.
 */
export function takeLease(d: Draft, issue: LeaseIssue): Ok<{ taken: boolean }> {
  const m = d.state.account?.org;
  if (!m || m.orgId !== issue.orgId || issue.n !== m.issued + 1) return ok({ taken: false });
  const lease = [...m.lease];
  for (const part of issue.parts) {
    const at = lease.findIndex((p) => p.grantId === part.grantId);
    if (at === -1) lease.push({ ...part });
    else lease[at] = { ...lease[at], ...part, remaining: lease[at].remaining + part.remaining };
    d.ledger({
      kind: "lease",
      amount: part.remaining,
      layer: "pool",
      ...(part.grantId === null ? {} : { grantId: part.grantId }),
      orgId: issue.orgId,
      note: `issue ${issue.n}`,
    });
  }
  setMembership(d, {
    ...m,
    lease,
    issued: issue.n,
    poolPaused: issue.paused,
    active: m.active && issue.member,
    ...issue.limits,
  });
  return ok({ taken: true });
}

/**
 * The organization closes the lease: what is unspent and not reserved goes back (`lease_return` entries), issues
 * up to `issuedUpTo` that were never taken are void, and a removed member stops drawing. Asked again with the same
 * `closeId`, it answers the same.
 */
export function closeLease(d: Draft, req: LeaseCloseRequest): Ok<LeaseClosed> {
  const m = d.state.account?.org;
  if (m?.lastClose?.closeId === req.closeId) {
    // A removal can ask again a close the member has answered (its answer was lost): the member still leaves.
    if (req.leave && m.active) leave(d, m);
    return ok(m.lastClose.answer);
  }
  if (!m || m.orgId !== req.orgId) {
    const now = { drawnToday: 0, drawnThisMonth: 0 };
    return ok({ known: false, taken: 0, returned: [], spent: 0, ...now, heldUntil: null });
  }
  const returned: LeaseClosed["returned"] = [];
  for (const p of m.lease) {
    if (p.remaining <= 0) continue;
    returned.push({ grantId: p.grantId, amount: p.remaining });
    d.ledger({
      kind: "lease_return",
      amount: p.remaining,
      layer: "pool",
      ...(p.grantId === null ? {} : { grantId: p.grantId }),
      orgId: m.orgId,
    });
  }
  const holding = d.state.holds.filter((h) => h.sources.some((s) => s.layer === "pool" && s.orgId === m.orgId));
  const heldGrants = new Set(
    holding.flatMap((h) => h.sources.flatMap((s) => (s.layer === "pool" ? [s.grantId ?? null] : []))),
  );
  const now = draws(m, d.now);
  const answer: LeaseClosed = {
    known: true,
    taken: m.issued,
    returned,
    spent: m.spent,
    drawnToday: now.drawnToday,
    drawnThisMonth: now.drawnThisMonth,
    heldUntil: holding.length === 0 ? null : Math.max(...holding.map((h) => h.expiresAt)),
  };
  setMembership(d, {
    ...m,
    ...now,
    lease: m.lease.filter((p) => heldGrants.has(p.grantId)).map((p) => ({ ...p, remaining: 0 })),
    issued: Math.max(m.issued, req.issuedUpTo),
    lastClose: { closeId: req.closeId, answer },
  });
  if (req.leave && m.active) leave(d, membership(d));
  return ok(answer);
}

/** The member stops drawing from the pool; what its lease still holds goes back at the next close. */
function leave(d: Draft, m: Membership): void {
  setMembership(d, { ...m, active: false });
  d.event("org.member_left", { orgId: m.orgId });
}

/** What a lease request asks for: `shortfall` is needed before this decision can be taken; `want` is the refill. */
export interface LeaseNeed {
  orgId: string;
  n: number;
  shortfall: number;
  want: number;
  product: Product;
  /** the member's pool spend as it stands, for the organization's view */
  report: { spent: number; drawnToday: number; drawnThisMonth: number };
}

/**
 * Whether a decision of `cost` for `product` should first ask the pool for more: when its own windows and grants
 * leave a part to the pool that the lease cannot pay (`shortfall` > 0, asked before deciding), or that leaves the
 * lease below its low-water mark (asked after answering). The size follows the member's recent credit rate, and at
 * least LEASE.decisions decisions of this size, within the member's pool limits. `pending`: what the member's
 * decisions already past this check will take, so requests arriving together ask for all of them (bench row 16c).
 */
export function leaseNeed(d: Draft, product: Product, cost: number, pending = 0): LeaseNeed | null {
  const m = d.state.account?.org;
  if (!m?.active) return null;
  const input = waterfallInput(d, product);
  const own = spendableGrants(input.grants, input.product, d.now).reduce((s, g) => s + g.remaining, 0);
  const fromPool = Math.max(0, cost - windowCapacity(input.windows) - own);
  if (fromPool === 0) return null;
  const lease = spendableParts(m.lease, input.product, d.now).reduce((s, p) => s + p.remaining, 0);
  const perMs = d.spentSince(d.now - LEASE.rateWindowMs) / LEASE.rateWindowMs;
  const limit = drawRemaining(m, d.now) ?? Number.POSITIVE_INFINITY;
  const shortfall = Math.max(0, Math.min(fromPool + pending, limit) - lease);
  const lowWater = Math.max(2 * fromPool, Math.ceil(perMs * LEASE.lowWaterMs));
  if (shortfall === 0 && lease - fromPool >= lowWater) return null;
  if (shortfall === 0 && m.poolPaused) return null;
  const target = Math.max(LEASE.decisions * fromPool, Math.ceil(perMs * LEASE.horizonMs));
  const want = Math.min(Math.max(target, shortfall), Math.max(0, limit - lease));
  if (want <= 0) return null;
  const now = draws(m, d.now);
  return {
    orgId: m.orgId,
    n: m.issued + 1,
    shortfall,
    want,
    product,
    report: { spent: m.spent, drawnToday: now.drawnToday, drawnThisMonth: now.drawnThisMonth },
  };
}

/**
 * A lease is closed by the organization no later than this after its last issue (SPEC §9: leases expire): what an
 * evicted or idle member holds is back in the pool within the hour (bench row 16a: a shorter TTL costs slow members
 * a close and an issue every few decisions).
 */
export const LEASE_TTL_MS = 60 * 60_000;
