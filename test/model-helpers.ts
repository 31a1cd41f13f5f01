/**
 * The reference model for test/model.test.ts: a small, independent re-statement of SPEC §3–§6 for ONE account.
 *
 * It deliberately imports nothing from worker/ or durable-objects/: plan limits, rates, the burn-down order,
 * the waterfall, holds, the anomaly guard, the spend cap, banked and global resets are all written out again
 * here from the SPEC, so a broken product waterfall cannot make the model agree with it.
 *
 * Amounts are integer micro-credits; times are epoch milliseconds of the test clock.
 *
 * `gen` (at the end) holds the operation generators both model tests draw their steps from.
 */
import fc from "fast-check";

export const C = 1_000_000;
export const SEC = 1000;
export const MIN = 60 * SEC;
export const HOUR = 60 * MIN;
export const DAY = 24 * HOUR;
const FIVE_HOURS = 5 * HOUR;
const WEEK = 7 * DAY;

export type Product = "codex" | "sora";
export const PRODUCTS: Product[] = ["codex", "sora"];
export type PlanId = "go" | "plus" | "pro" | "business" | "enterprise" | "edu";
export const PLANS: PlanId[] = ["go", "plus", "pro", "business", "enterprise", "edu"];
export type Kind = "fiveHour" | "weekly";
const KINDS: Kind[] = ["fiveHour", "weekly"];
const LENGTH: Record<Kind, number> = { fiveHour: FIVE_HOURS, weekly: WEEK };
export type GrantKind = "promo" | "entitlement" | "purchase";

interface PlanSpec {
  /** credits per window: [codex 5h, codex weekly, sora 5h, sora weekly] */
  windows: [number, number, number, number];
  banked: boolean;
  flexCredits: number | null;
}
/** The catalog of 2026-11-01 (SPEC §3), restated. */
const PLAN_SPECS: Record<PlanId, PlanSpec> = {
  go: { windows: [2, 10, 1, 5], banked: true, flexCredits: null },
  plus: { windows: [10, 50, 5, 25], banked: true, flexCredits: null },
  pro: { windows: [60, 300, 30, 150], banked: true, flexCredits: null },
  business: { windows: [10, 50, 5, 25], banked: true, flexCredits: 200 },
  enterprise: { windows: [60, 300, 30, 150], banked: false, flexCredits: 2000 },
  edu: { windows: [10, 50, 5, 25], banked: false, flexCredits: 100 },
};
const BANKED_EVERY = 7 * DAY;
const BANKED_MAX = 3;
const PRIORITY: Record<GrantKind, number> = { promo: 10, entitlement: 20, purchase: 30 };
/** Anomaly guard: trailing 10 minutes above max(50 credits, 10 × the 7-day average per 10 minutes). */
const ANOMALY_FLOOR = 50 * C;
const ANOMALY_MULTIPLIER = 10;
const TEN_MINUTE_SLOTS_PER_WEEK = (7 * 24 * 60) / 10;

/** Rates in micro-credits per million units (SPEC §3 rate card). */
export const RATES: Record<Product, Record<string, Record<string, number>>> = {
  codex: {
    "gpt-5-codex": { inputTokens: 1_250_000, cachedInputTokens: 125_000, outputTokens: 10_000_000 },
    "gpt-5-codex-mini": { inputTokens: 250_000, cachedInputTokens: 25_000, outputTokens: 2_000_000 },
  },
  sora: { "sora-2": { videoSeconds: 100_000 * C }, "sora-2-pro": { videoSeconds: 300_000 * C } },
};
export const RATE_CARD_VERSION = "2026-11-01";

export function priceOf(product: Product, usage: { model: string } & Record<string, number | string>): number {
  let micro = 0n;
  for (const [meter, units] of Object.entries(usage)) {
    if (meter === "model") continue;
    micro += BigInt(units as number) * BigInt(RATES[product][usage.model][meter]);
  }
  return Number((micro + 999_999n) / 1_000_000n);
}

export function windowLimit(plan: PlanId, product: Product, kind: Kind): number {
  const w = PLAN_SPECS[plan].windows;
  const i = (product === "codex" ? 0 : 2) + (kind === "fiveHour" ? 0 : 1);
  return w[i] * C;
}

export const iso = (ms: number) => new Date(ms).toISOString();
const isoOrNull = (ms: number | null) => (ms === null ? null : iso(ms));
const month = (ms: number) => iso(ms).slice(0, 7);
const dayStart = (ms: number) => Math.floor(ms / DAY) * DAY;

export type Src =
  | { layer: "window"; amount: number }
  | { layer: "grant"; grantId: string; amount: number }
  | { layer: "flex"; amount: number };
export type Reason = "limit_reached" | "insufficient_credits" | "credits_paused" | "spend_cap";
export type Verdict = { allowed: true; sources: Src[] } | { allowed: false; reason: Reason; resetsAt?: number };

export interface MGrant {
  id: string;
  kind: GrantKind;
  priority: number;
  products: Product[] | null;
  remaining: number;
  expiresAt: number | null;
  createdAt: number;
}
interface MWindow {
  openedAt: number | null;
  used: number;
}
export interface MHold {
  id: string;
  product: Product;
  amount: number;
  sources: Src[];
  opened: Record<Kind, number | null>;
  month: string;
  expiresAt: number;
  state: "active" | "settled" | "released" | "expired";
}
interface MBanked {
  expiresAt: number | null;
  grantedAt: number;
  used: boolean;
}
export interface GlobalReset {
  products?: Product[];
  plans?: PlanId[];
  bankedResets: "keep" | "restore";
  bonus?: { count: number; expiresInHours: number };
}

/** The waterfall's own ordering, restated: lower priority number first, then the soonest expiry (none = last), then the oldest. */
function burnsBefore(a: MGrant, b: MGrant): number {
  if (a.priority !== b.priority) return a.priority < b.priority ? -1 : 1;
  const ax = a.expiresAt === null ? Infinity : a.expiresAt;
  const bx = b.expiresAt === null ? Infinity : b.expiresAt;
  if (ax !== bx) return ax < bx ? -1 : 1;
  if (a.createdAt !== b.createdAt) return a.createdAt < b.createdAt ? -1 : 1;
  return a.id < b.id ? -1 : a.id > b.id ? 1 : 0;
}

export class RefModel {
  plan: PlanId;
  paused = false;
  resumedAt: number | null = null;
  spendCap: number | null = null;
  flexMonth: string | null = null;
  flexUsed = 0;
  bankedAccruedAt: number;
  windows: Record<Product, Record<Kind, MWindow>> = {
    codex: { fiveHour: { openedAt: null, used: 0 }, weekly: { openedAt: null, used: 0 } },
    sora: { fiveHour: { openedAt: null, used: 0 }, weekly: { openedAt: null, used: 0 } },
  };
  grants: MGrant[] = [];
  holds: MHold[] = [];
  banked: MBanked[] = [];
  /** credit spend (grant + flex charges) per minute bucket */
  spend = new Map<number, number>();
  /** every credit spend in order, and where the last resume stands in it */
  spendLog: number[] = [];
  resumeMark = 0;
  /** Σ charge amounts, all layers, and the same per Idempotency-Key */
  chargedTotal = 0;
  chargedByKey = new Map<string, number>();
  expired = 0;

  constructor(
    public now: number,
    plan: PlanId,
  ) {
    this.plan = plan;
    this.bankedAccruedAt = now;
  }

  /** A deep copy, to try an interpretation without committing to it. */
  clone(): RefModel {
    const c = Object.create(RefModel.prototype) as RefModel;
    return Object.assign(c, structuredClone({ ...this }));
  }

  // ─────────── views ───────────

  /** The window as it stands now: closed and empty once its length has passed since it opened. */
  win(p: Product, k: Kind): MWindow {
    const w = this.windows[p][k];
    if (w.openedAt === null || this.now >= w.openedAt + LENGTH[k]) return { openedAt: null, used: 0 };
    return { ...w };
  }
  view(p: Product, k: Kind) {
    const w = this.win(p, k);
    const limit = windowLimit(this.plan, p, k);
    return {
      limit,
      used: w.used,
      remaining: Math.max(0, limit - w.used),
      resetsAt: w.openedAt === null ? null : w.openedAt + LENGTH[k],
    };
  }
  windowRoom(p: Product): number {
    return Math.max(0, Math.min(this.view(p, "fiveHour").remaining, this.view(p, "weekly").remaining));
  }
  isExpired(g: MGrant): boolean {
    return g.expiresAt !== null && g.expiresAt <= this.now;
  }
  usable(p: Product): MGrant[] {
    return this.grants
      .filter((g) => g.remaining > 0 && !this.isExpired(g) && (g.products === null || g.products.includes(p)))
      .sort(burnsBefore);
  }
  flex(): { limit: number; used: number } | null {
    const credits = PLAN_SPECS[this.plan].flexCredits;
    if (credits === null) return null;
    return { limit: credits * C, used: this.flexMonth === month(this.now) ? this.flexUsed : 0 };
  }
  flexRoom(): number {
    const f = this.flex();
    return f ? Math.max(0, f.limit - f.used) : 0;
  }
  spentSince(ms: number): number {
    const from = Math.floor(ms / MIN);
    let s = 0;
    for (const [m, a] of this.spend) if (m >= from) s += a;
    return s;
  }
  heldCredits(): number {
    let s = 0;
    for (const h of this.holds)
      if (h.state === "active") for (const x of h.sources) if (x.layer !== "window") s += x.amount;
    return s;
  }
  spendCapRoom(): number | null {
    return this.spendCap === null
      ? null
      : Math.max(0, this.spendCap - this.spentSince(dayStart(this.now)) - this.heldCredits());
  }
  availableBanked(): MBanked[] {
    return this.banked
      .filter((b) => !b.used && (b.expiresAt === null || b.expiresAt > this.now))
      .sort((a, b) => (a.expiresAt ?? Infinity) - (b.expiresAt ?? Infinity) || a.grantedAt - b.grantedAt);
  }

  // ─────────── the waterfall ───────────

  /** Earliest end of an open window after which the windows plus `credits` cover `cost`. */
  private relief(p: Product, cost: number, credits: number): number | undefined {
    const five = this.view(p, "fiveHour");
    const week = this.view(p, "weekly");
    const ends = [five.resetsAt, week.resetsAt].filter((t): t is number => t !== null).sort((a, b) => a - b);
    for (const t of ends) {
      const f = five.resetsAt !== null && five.resetsAt <= t ? five.limit : five.remaining;
      const w = week.resetsAt !== null && week.resetsAt <= t ? week.limit : week.remaining;
      if (Math.min(f, w) + credits >= cost) return t;
    }
    return undefined;
  }

  /** Takes `cost` from windows, then grants in burn-down order, then flex, spending at most `budget` in credits. */
  private take(p: Product, cost: number, budget: number): { sources: Src[]; left: number } {
    const sources: Src[] = [];
    const w = Math.min(cost, this.windowRoom(p));
    if (w > 0) sources.push({ layer: "window", amount: w });
    let left = cost - w;
    for (const g of this.usable(p)) {
      if (left === 0 || budget === 0) break;
      const t = Math.min(left, g.remaining, budget);
      sources.push({ layer: "grant", grantId: g.id, amount: t });
      left -= t;
      budget -= t;
    }
    if (left > 0 && budget > 0) {
      const t = Math.min(left, this.flexRoom(), budget);
      if (t > 0) {
        sources.push({ layer: "flex", amount: t });
        left -= t;
      }
    }
    return { sources, left };
  }

  decide(p: Product, cost: number, paused = this.paused): Verdict {
    const fromWindows = Math.min(cost, this.windowRoom(p));
    const need = cost - fromWindows;
    if (need === 0) return { allowed: true, sources: [{ layer: "window", amount: cost }] };
    if (paused) return { allowed: false, reason: "credits_paused", resetsAt: this.relief(p, cost, 0) };
    const credits = this.usable(p).reduce((s, g) => s + g.remaining, 0) + this.flexRoom();
    if (credits < need)
      return {
        allowed: false,
        reason: credits === 0 ? "limit_reached" : "insufficient_credits",
        resetsAt: this.relief(p, cost, credits),
      };
    const cap = this.spendCapRoom();
    if (cap !== null && need > cap) {
      const r = this.relief(p, cost, cap);
      const midnight = dayStart(this.now) + DAY;
      return { allowed: false, reason: "spend_cap", resetsAt: r === undefined ? midnight : Math.min(r, midnight) };
    }
    const { sources, left } = this.take(p, cost, need);
    if (left !== 0) throw new Error("model: capacity checked but allocation fell short");
    return { allowed: true, sources };
  }

  /** The decision plus the anomaly guard: a credit part that takes the trailing spend past the threshold pauses first. */
  decideGuarded(p: Product, cost: number): Verdict {
    const v = this.decide(p, cost);
    if (!v.allowed) return v;
    const creditPart = v.sources.reduce((s, x) => s + (x.layer === "window" ? 0 : x.amount), 0);
    if (creditPart === 0) return v;
    if (!this.tripsAnomalyGuard(creditPart)) return v;
    return this.decide(p, cost, true);
  }

  /** Spending `creditPart` more would pass the anomaly threshold: pauses. */
  tripsAnomalyGuard(creditPart: number): boolean {
    if (creditPart === 0) return false;
    const from = this.now - 9 * MIN;
    // After a resume, only what was spent after it counts (to the millisecond), as long as the resume is in the window.
    const sinceResume = this.resumedAt !== null && Math.floor(this.resumedAt / MIN) >= Math.floor(from / MIN);
    const spent = sinceResume ? this.spendLog.slice(this.resumeMark).reduce((s, a) => s + a, 0) : this.spentSince(from);
    const trailing = spent + this.heldCredits();
    const threshold = Math.max(
      ANOMALY_FLOOR,
      Math.floor((ANOMALY_MULTIPLIER * this.spentSince(this.now - 7 * DAY)) / TEN_MINUTE_SLOTS_PER_WEEK),
    );
    if (trailing + creditPart <= threshold) return false;
    this.paused = true;
    return true;
  }

  // ─────────── state changes ───────────

  private takeFrom(p: Product, s: Src): void {
    if (s.layer === "window") {
      for (const k of KINDS) {
        const w = this.win(p, k);
        this.windows[p][k] = { openedAt: w.openedAt ?? this.now, used: w.used + s.amount };
      }
    } else if (s.layer === "grant") {
      const g = this.grants.find((x) => x.id === s.grantId)!;
      g.remaining -= s.amount;
    } else {
      this.flexUsed = (this.flex()?.used ?? 0) + s.amount;
      this.flexMonth = month(this.now);
    }
  }

  private charge(s: Src, key: string): void {
    this.chargedTotal += s.amount;
    this.chargedByKey.set(key, (this.chargedByKey.get(key) ?? 0) + s.amount);
    if (s.layer !== "window") {
      const m = Math.floor(this.now / MIN);
      this.spend.set(m, (this.spend.get(m) ?? 0) + s.amount);
      this.spendLog.push(s.amount);
    }
  }

  consume(p: Product, cost: number, key: string): Verdict {
    this.housekeep();
    const v = this.decideGuarded(p, cost);
    if (v.allowed)
      for (const s of v.sources) {
        this.takeFrom(p, s);
        this.charge(s, key);
      }
    return v;
  }

  createHold(id: () => string, p: Product, cost: number, ttlSeconds: number): { verdict: Verdict; hold?: MHold } {
    this.housekeep();
    const v = this.decideGuarded(p, cost);
    if (!v.allowed) return { verdict: v };
    for (const s of v.sources) this.takeFrom(p, s);
    const hold: MHold = {
      id: id(),
      product: p,
      amount: cost,
      sources: v.sources.map((s) => ({ ...s })),
      opened: { fiveHour: this.win(p, "fiveHour").openedAt, weekly: this.win(p, "weekly").openedAt },
      month: month(this.now),
      expiresAt: this.now + ttlSeconds * SEC,
      state: "active",
    };
    this.holds.push(hold);
    return { verdict: v, hold };
  }

  /** Gives reserved parts back: windows only to the window instance they came from, flex only within its month. */
  private giveBack(h: MHold, parts: Src[]): void {
    for (const s of parts) {
      if (s.layer === "window") {
        for (const k of KINDS) {
          const w = this.win(h.product, k);
          if (h.opened[k] !== null && w.openedAt === h.opened[k]) w.used = Math.max(0, w.used - s.amount);
          this.windows[h.product][k] = w;
        }
      } else if (s.layer === "grant") {
        this.grants.find((g) => g.id === s.grantId)!.remaining += s.amount;
      } else if (h.month === month(this.now)) {
        this.flexUsed = Math.max(0, (this.flex()?.used ?? 0) - s.amount);
      }
    }
    this.expireGrants();
  }

  /** Throws a string error code the way the API refuses. */
  private activeHold(holdId: string): MHold {
    const h = this.holds.find((x) => x.id === holdId);
    if (!h) throw new ModelRefusal(404, "not_found");
    if (h.state !== "active") throw new ModelRefusal(409, "hold_not_active");
    return h;
  }

  settle(
    holdId: string,
    actual: number,
    key: string,
  ): { charged: number; released: number; writtenOff: number; sources: Src[] } {
    this.housekeep();
    const h = this.activeHold(holdId);
    let left = actual;
    const charged: Src[] = [];
    const released: Src[] = [];
    for (const s of h.sources) {
      const t = Math.min(left, s.amount);
      if (t > 0) charged.push({ ...s, amount: t });
      if (s.amount - t > 0) released.push({ ...s, amount: s.amount - t });
      left -= t;
    }
    this.giveBack(h, released);
    for (const s of charged) this.charge(s, key);
    h.state = "settled";
    let extra: Src[] = [];
    let writtenOff = 0;
    if (left > 0) {
      const budget = this.paused ? 0 : (this.spendCapRoom() ?? Infinity);
      let t = this.take(h.product, left, budget);
      // The part above the hold passes the anomaly guard too; what it refuses is written off.
      if (this.tripsAnomalyGuard(t.sources.reduce((s, x) => s + (x.layer === "window" ? 0 : x.amount), 0)))
        t = this.take(h.product, left, 0);
      extra = t.sources;
      for (const s of extra) {
        this.takeFrom(h.product, s);
        this.charge(s, key);
      }
      writtenOff = t.left;
    }
    const merged: Src[] = [];
    for (const s of [...charged, ...extra]) {
      const same = merged.find(
        (m) => m.layer === s.layer && (m.layer !== "grant" || (s.layer === "grant" && m.grantId === s.grantId)),
      );
      if (same) same.amount += s.amount;
      else merged.push({ ...s });
    }
    return {
      charged: actual - writtenOff,
      released: released.reduce((n, s) => n + s.amount, 0),
      writtenOff,
      sources: merged,
    };
  }

  release(holdId: string): number {
    this.housekeep();
    const h = this.activeHold(holdId);
    this.giveBack(h, h.sources);
    h.state = "released";
    return h.amount;
  }

  addGrant(g: MGrant): void {
    this.housekeep();
    this.grants.push(g);
  }

  setPlan(plan: PlanId): void {
    this.housekeep();
    if (plan !== this.plan) {
      this.plan = plan;
      this.bankedAccruedAt = this.now;
    }
  }

  setSpendCap(limit: number | null): void {
    this.housekeep();
    this.spendCap = limit;
  }

  resume(): boolean {
    this.housekeep();
    const was = this.paused;
    if (was) {
      this.paused = false;
      this.resumedAt = this.now;
      this.resumeMark = this.spendLog.length;
    }
    return was;
  }

  redeem(p: Product): void {
    this.housekeep();
    const item = this.availableBanked()[0];
    if (!item) throw new ModelRefusal(409, "no_banked_reset");
    if (Math.max(this.win(p, "fiveHour").used, this.win(p, "weekly").used) === 0)
      throw new ModelRefusal(409, "nothing_to_reset");
    for (const k of KINDS) this.windows[p][k] = { openedAt: null, used: 0 };
    item.used = true;
  }

  /** A global reset made now, applied by the account before anything else at its next request (at this same time). */
  globalReset(r: GlobalReset): void {
    if (!r.plans || r.plans.includes(this.plan)) {
      for (const p of r.products ?? PRODUCTS) for (const k of KINDS) this.windows[p][k] = { openedAt: null, used: 0 };
      if (r.bankedResets === "restore" && PLAN_SPECS[this.plan].banked) {
        const missing = BANKED_MAX - this.availableBanked().length;
        for (let i = 0; i < missing; i++) this.banked.push({ expiresAt: null, grantedAt: this.now, used: false });
      }
      if (r.bonus) {
        const at = this.now + r.bonus.expiresInHours * HOUR;
        for (let i = 0; i < r.bonus.count; i++) this.banked.push({ expiresAt: at, grantedAt: this.now, used: false });
      }
    }
    this.housekeep();
  }

  // ─────────── time ───────────

  private expireGrants(): void {
    for (const g of this.grants)
      if (this.isExpired(g) && g.remaining > 0) {
        this.expired += g.remaining;
        g.remaining = 0;
      }
  }

  /** What time does to the account, in the order the SPEC's rules compose: holds, then grants, then banked accrual. */
  housekeep(): void {
    for (const h of this.holds)
      if (h.state === "active" && h.expiresAt <= this.now) {
        this.giveBack(h, h.sources);
        h.state = "expired";
      }
    this.expireGrants();
    if (PLAN_SPECS[this.plan].banked) {
      const periods = Math.floor((this.now - this.bankedAccruedAt) / BANKED_EVERY);
      if (periods > 0) {
        const room = Math.max(0, BANKED_MAX - this.availableBanked().length);
        for (let i = 0; i < Math.min(periods, room); i++)
          this.banked.push({ expiresAt: null, grantedAt: this.now, used: false });
        this.bankedAccruedAt += periods * BANKED_EVERY;
      }
    }
  }

  // ─────────── what the API should show ───────────

  /** The account summary in the API's shape (grants by id, banked resets as their expiries). */
  summary() {
    const live = this.grants.filter((g) => g.remaining > 0 && !this.isExpired(g));
    const flex = this.flex();
    const bankedItems = this.availableBanked();
    return {
      plan: this.plan,
      products: Object.fromEntries(
        PRODUCTS.map((p) => [
          p,
          Object.fromEntries(
            KINDS.map((k) => {
              const v = this.view(p, k);
              return [k, { limit: v.limit, used: v.used, remaining: v.remaining, resetsAt: isoOrNull(v.resetsAt) }];
            }),
          ),
        ]),
      ),
      balance: live.reduce((s, g) => s + g.remaining, 0),
      grants: live
        .map((g) => ({
          id: g.id,
          kind: g.kind,
          priority: g.priority,
          remaining: g.remaining,
          expiresAt: isoOrNull(g.expiresAt),
          products: g.products,
        }))
        .sort((a, b) => (a.id < b.id ? -1 : 1)),
      flex,
      banked: {
        available: bankedItems.length,
        max: PLAN_SPECS[this.plan].banked ? BANKED_MAX : 0,
        expiries: bankedItems.map((b) => isoOrNull(b.expiresAt)),
      },
      holds: this.holds
        .filter((h) => h.state === "active")
        .map((h) => ({ holdId: h.id, product: h.product, amount: h.amount, expiresAt: iso(h.expiresAt) })),
      paused: this.paused,
      spendCap:
        this.spendCap === null ? null : { dailyLimit: this.spendCap, spentToday: this.spentSince(dayStart(this.now)) },
    };
  }
}

/** The projection of a real summary onto the model's summary shape. */
export function projectSummary(a: any) {
  return {
    plan: a.plan,
    products: a.products,
    balance: a.credits.balance,
    grants: [...a.credits.grants]
      .map((g: any) => ({
        id: g.id,
        kind: g.kind,
        priority: g.priority,
        remaining: g.remaining,
        expiresAt: g.expiresAt,
        products: g.products,
      }))
      .sort((x: any, y: any) => (x.id < y.id ? -1 : 1)),
    flex: a.credits.flex,
    banked: {
      available: a.bankedResets.available,
      max: a.bankedResets.max,
      expiries: a.bankedResets.items.map((i: any) => i.expiresAt),
    },
    holds: a.holds.map((h: any) => ({
      holdId: h.holdId,
      product: h.product,
      amount: h.amount,
      expiresAt: h.expiresAt,
    })),
    paused: a.paused,
    spendCap: a.spendCap,
  };
}

export class ModelRefusal extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
  ) {
    super(code);
  }
}

/** What a decision answer is compared on: allowed/denied, reason, relief time, offer, and the sources. */
export function verdictJson(v: Verdict, now: number) {
  if (v.allowed) return { allowed: true, sources: v.sources };
  const offer = v.reason === "limit_reached" || v.reason === "insufficient_credits" ? "add_credits" : undefined;
  return {
    allowed: false,
    reason: v.reason,
    ...(v.resetsAt === undefined
      ? {}
      : { resetsAt: iso(v.resetsAt), retryAfterSeconds: Math.max(1, Math.ceil((v.resetsAt - now) / 1000)) }),
    ...(offer ? { offer } : {}),
  };
}
/** The decision part of an answer (a created hold has no `allowed` field: it is allowed). */
export function decisionOf(body: any) {
  if (body.allowed !== false) return { allowed: true, sources: body.sources };
  const { reason, resetsAt, retryAfterSeconds, offer } = body;
  return {
    allowed: false,
    reason,
    ...(resetsAt === undefined ? {} : { resetsAt, retryAfterSeconds }),
    ...(offer === undefined ? {} : { offer }),
  };
}

export function grantPriority(kind: GrantKind): number {
  return PRIORITY[kind];
}

// ─────────── operation generators (test/model.test.ts and test/core/account-model.test.ts) ───────────

/** Priced usage as a request carries it. */
export type ModelUsage = { model: string } & Record<string, number | string>;

const product = fc.constantFrom<Product>("codex", "sora");
/** Time before a step, in whole seconds (expiries and window ends are whole seconds too); big jumps are `bigJump`. */
const dt = fc
  .oneof(
    { weight: 6, arbitrary: fc.integer({ min: 1, max: 10 }) },
    { weight: 2, arbitrary: fc.integer({ min: 10, max: 120 }) },
    { weight: 1, arbitrary: fc.integer({ min: 120, max: 1800 }) },
  )
  .map((s) => s * SEC);
const cost = fc.oneof(
  { weight: 4, arbitrary: fc.integer({ min: 1, max: 3 * C }) },
  { weight: 3, arbitrary: fc.constantFrom(C / 4, C / 2, C, 2 * C, 5 * C) },
  { weight: 1, arbitrary: fc.integer({ min: 3 * C, max: 40 * C }) },
);
const usage: fc.Arbitrary<{ product: Product; usage: ModelUsage }> = fc.oneof(
  fc.record({
    product: fc.constant<Product>("codex"),
    usage: fc.record({
      model: fc.constant("gpt-5-codex"),
      inputTokens: fc.integer({ min: 1, max: 400_000 }),
      outputTokens: fc.integer({ min: 0, max: 200_000 }),
    }),
  }),
  fc.record({
    product: fc.constant<Product>("codex"),
    usage: fc.record({
      model: fc.constant("gpt-5-codex-mini"),
      cachedInputTokens: fc.integer({ min: 1, max: 5_000_000 }),
    }),
  }),
  fc.record({
    product: fc.constant<Product>("sora"),
    usage: fc.record({ model: fc.constantFrom("sora-2", "sora-2-pro"), videoSeconds: fc.integer({ min: 1, max: 20 }) }),
  }),
);
const amount = fc.oneof(fc.integer({ min: 1, max: 10 * C }), fc.constantFrom(C / 2, C, 3 * C, 10 * C));
const products = fc.constantFrom<Product[] | null>(null, null, ["codex"], ["sora"], ["codex", "sora"]);
const expiresIn = fc
  .oneof(
    fc.integer({ min: 1, max: 600 }),
    fc.integer({ min: 600, max: 3 * 86_400 }),
    fc.integer({ min: 3 * 86_400, max: 60 * 86_400 }),
  )
  .map((s) => s * SEC);
const bigJump = fc
  .oneof(
    fc.constantFrom(
      59,
      10 * 60,
      3600,
      5 * 3600 - 1,
      5 * 3600,
      5 * 3600 + 1,
      86_400,
      7 * 86_400,
      7 * 86_400 + 1,
      8 * 86_400,
      31 * 86_400,
    ),
    fc.integer({ min: 1, max: 3 * 86_400 }),
  )
  .map((s) => s * SEC);

/** The leaf generators of a step: product, time before it, cost, priced usage, grant amount/products/expiry, time jump. */
export const gen = { product, dt, cost, usage, amount, products, expiresIn, bigJump };
