/**
 * The model test's organizations part (issue #16 item 5; run from test/model.test.ts, `describe("organizations")`).
 *
 * One organization (flex off: I-pool is about grants) with 3–6 member accounts on `go`; random sequences of steps
 * through the real worker: pool grants (purchase, promo, entitlement; product-limited; expiring), member consumes
 * (single, and concurrent bursts across members), member holds (create, settle under / exact / over / far over,
 * release, expiry), the members' own grants, pool limits (`PUT …/members/{id}` with dailyLimit/monthlyLimit, which
 * also re-adds a removed member), removals, time advances, the organization's closes (`closeDue(now)`), evictions of
 * member objects and of the organization's object, the operator's refunds to the pool, resumes of a paused member,
 * replays of Idempotency-Keys, lease faults (`faultPoints.lease` throwing on "issue", "issued" or "closed" on every
 * k-th call for a few steps), and races: consumes by several members, a settle, a removal and the organization's
 * closes all at once. Each step first tells the organization the test time (see `syncOrgClock`).
 *
 * After every step, at a quiet moment (no lease request and no close in flight, and both sides read twice the same):
 * - I-pool across objects: pool balance + Σ members' unspent lease + Σ members' pool spend + Σ what active holds
 *   reserved from the pool + Σ credits in transit = pool granted − expired. "In transit" is what a lease fault left
 *   between the two objects: an issue the pool made whose answer was lost (the next close voids it and takes it back)
 *   and a close the member answered whose answer was lost (the pool asks again); it is read from both objects' state
 *   and must be 0 for a member no fault hit. The same per member: what the pool counts out with it = its lease +
 *   spend + reservations + transit.
 * - the pool's spend, tallied from the answers (pool sources of consumes and settles), equals Σ members' `org.spent`
 *   (and each member's its own), and the pool paid, plus what holds reserve, never more than it was granted (in all
 *   and per pool grant);
 * - every pool source names this organization and a pool grant that is live and allows the product (a hold's own
 *   reservation excepted); a removed member draws nothing from the pool;
 * - each member's draws today / this month (modelled from the answers: a reservation counts, a release or expiry
 *   the same day or month gives it back) equal what it reports, and after a step that drew they are within its
 *   limits; no balance, lease part or pool grant is negative; the holds listed are the model's active holds.
 *
 * After a sequence every lease is closed (time moves past every hold and lease TTL), then every member's and the
 * organization's journal is settled into D1 through the real consumer (`org/<orgId>` is the organization's ledger
 * account): D1's pool charges (layer 'pool', org_id) equal the tally per member; the organization's D1 credit
 * position (grants + refunds − expiries − leases + returns of grant credits) and its ledger head equal the pool's
 * balance; leases less returns, on either side, equal each member's spend; reconciliation reports no drift.
 */
import { createMessageBatch, evictDurableObject, runDurableObjectAlarm, runInDurableObject } from "cloudflare:test";
import { env } from "cloudflare:workers";
import fc from "fast-check";
import { expect } from "vitest";
import type { AccountDO } from "../durable-objects/account/object";
import type { OrgDO } from "../durable-objects/org/object";
import { LEASE_TTL_MS, type Membership } from "../worker/core/account/membership";
import type { AccountState } from "../worker/core/account/state";
import type { OrgState, PoolMember } from "../worker/core/org/state";
import { settleBatch } from "../worker/settlement/consumer";
import { faultPoints, type Sender } from "../worker/settlement/fault-points";
import type { SettlementMessage } from "../worker/settlement/messages";
import { ledgerFor } from "../worker/settlement/shards";
import { ADMIN, account, call, uid } from "./helpers";
import { C, DAY, gen, HOUR, iso, SEC, type Product } from "./model-helpers";

// ───────────────────────────── configuration and the world ─────────────────────────────

export interface OrgModelConfig {
  runs: number;
  steps: number;
  seed: number;
  path?: string;
  shrink: boolean;
  /** the calendar year a new sequence runs in (each sequence in its own, as in the account model) */
  nextYear: () => number;
}

/** Each sequence stays inside Jan 1 … Feb 27 of its year (plus the final close-out). */
const SPAN = 57 * DAY;
/** Keys are kept 48 h; replays stay inside 47 h. */
const REPLAY_HORIZON = 47 * HOUR;
const ORG_LEDGER = (orgId: string) => `org/${orgId}`;

type Res = { status: number; body: any; headers: Headers };
type Src = { layer: string; amount: number; grantId?: string; orgId?: string };

interface MemberModel {
  id: string;
  /** a member, as the organization sees it */
  active: boolean;
  /** removed, and its object not yet told (the close failed: it may spend its lease until the close reaches it) */
  untold: boolean;
  dailyLimit: number | null;
  monthlyLimit: number | null;
  /** what the pool paid for this member, from the answers */
  paid: number;
  /** pool draws per UTC day and per calendar month, from the answers */
  days: Map<number, number>;
  months: Map<number, number>;
}

interface PoolGrantModel {
  id: string;
  amount: number;
  expiresAt: number | null;
  products: Product[] | null;
}

interface HoldModel {
  id: string;
  member: MemberModel;
  product: Product;
  amount: number;
  sources: Src[];
  createdAt: number;
  expiresAt: number;
  state: "active" | "settled" | "released" | "expired";
  /** when it stopped being active */
  endedAt: number | null;
}

interface Kept {
  key: string;
  method: string;
  path: string;
  body: unknown;
  status: number;
  resBody: any;
  at: number;
}

interface LeaseFault {
  /** a `faultPoints.lease` stage, or "unreachable": the members' objects refuse the organization's closes */
  stage: "issue" | "issued" | "closed" | "unreachable";
  every: number;
  until: number;
  calls: number;
}

interface OrgWorld {
  orgId: string;
  members: MemberModel[];
  now: number;
  end: number;
  step: number;
  log: string[];
  keyed: Kept[];
  holds: HoldModel[];
  grants: Map<string, PoolGrantModel>;
  /** Σ pool grants and refunds */
  granted: number;
  /** the tally: Σ pool sources of every consume and settle */
  poolPaid: number;
  paidByGrant: Map<string, number>;
  /** members that drew from the pool in this step (their limits are checked) */
  drew: Set<MemberModel>;
  fault: LeaseFault | null;
  /** members a lease fault hit: only they may have credits in transit */
  faulted: Set<string>;
  outcome: string;
}

/** What the sequences exercised (printed by the test), and what the checks saw. */
export const orgStats = new Map<string, number>();
const count = (what: string, n = 1) => orgStats.set(what, (orgStats.get(what) ?? 0) + n);

const where = (w: OrgWorld) =>
  `org ${w.orgId} (members ${w.members.map((m, i) => `m${i}=${m.id}`).join(" ")}) at ${iso(w.now)}, step ${w.step}\n  ${w.log
    .slice(-70)
    .join("\n  ")}`;

const sum = (xs: readonly { amount: number }[]) => xs.reduce((s, x) => s + x.amount, 0);
const poolOf = (sources: readonly Src[] | undefined) => (sources ?? []).filter((s) => s.layer === "pool");
const dayOf = (t: number) => Math.floor(t / DAY);
const monthOf = (t: number) => {
  const d = new Date(t);
  return d.getUTCFullYear() * 12 + d.getUTCMonth();
};
const bump = <K>(m: Map<K, number>, k: K, by: number) => m.set(k, Math.max(0, (m.get(k) ?? 0) + by));

const accountStub = (id: string) => env.ACCOUNT.get(env.ACCOUNT.idFromName(id)) as DurableObjectStub<AccountDO>;
const orgStubOf = (orgId: string) => env.ORG.get(env.ORG.idFromName(orgId)) as DurableObjectStub<OrgDO>;

// ───────────────────────────── the model's bookkeeping ─────────────────────────────

/** A pool draw (a charge, a hold's reservation, a settle's part above it) counts today and this month. */
function drawn(w: OrgWorld, m: MemberModel, amount: number) {
  if (amount <= 0) return;
  bump(m.days, dayOf(w.now), amount);
  bump(m.months, monthOf(w.now), amount);
  w.drew.add(m);
}

/** A hold's pool reservation given back at `at` uncounts it, if still in the day (month) it was drawn in. */
function undrawn(m: MemberModel, amount: number, heldAt: number, at: number) {
  if (amount <= 0) return;
  if (dayOf(at) === dayOf(heldAt)) bump(m.days, dayOf(heldAt), -amount);
  if (monthOf(at) === monthOf(heldAt)) bump(m.months, monthOf(heldAt), -amount);
}

function paid(w: OrgWorld, m: MemberModel, sources: readonly Src[]) {
  for (const s of poolOf(sources)) {
    count("pool charges");
    m.paid += s.amount;
    w.poolPaid += s.amount;
    const g = s.grantId ?? "flex";
    w.paidByGrant.set(g, (w.paidByGrant.get(g) ?? 0) + s.amount);
  }
}

/** Holds past their expiry have given their reservation back (at their expiry, as far as the counters can tell). */
function expireHolds(w: OrgWorld) {
  for (const h of w.holds)
    if (h.state === "active" && h.expiresAt <= w.now) {
      h.state = "expired";
      h.endedAt = h.expiresAt;
      undrawn(h.member, sum(poolOf(h.sources)), h.createdAt, h.expiresAt);
    }
}

const activeHolds = (w: OrgWorld, m?: MemberModel) =>
  w.holds.filter((h) => h.state === "active" && h.expiresAt > w.now && (m === undefined || h.member === m));

/** SPEC §4 holds: the reserved parts are charged in order up to the actual cost; the rest of them is given back. */
function settleReservation(reserved: readonly Src[], actual: number) {
  const charged: Src[] = [];
  const released: Src[] = [];
  let left = actual;
  for (const s of reserved) {
    const take = Math.min(left, s.amount);
    if (take > 0) charged.push({ ...s, amount: take });
    if (s.amount - take > 0) released.push({ ...s, amount: s.amount - take });
    left -= take;
  }
  return { charged, released, extra: left };
}

/**
 * Every pool source of a fresh draw: this organization, a known pool grant that is live now and allows the product,
 * and a member that is active.
 */
function expectFreshPoolSources(w: OrgWorld, m: MemberModel, product: Product, sources: readonly Src[]) {
  for (const s of sources) {
    expect(s.amount, where(w)).toBeGreaterThan(0);
    if (s.layer !== "pool") continue;
    expect(s.orgId, where(w)).toBe(w.orgId);
    expect(m.active || m.untold, `${where(w)}\na removed member drew from the pool: ${JSON.stringify(s)}`).toBe(true);
    expect(s.grantId, `${where(w)}\na pool draw without a grant while flex is off`).toBeDefined();
    const g = w.grants.get(s.grantId!);
    expect(g, `${where(w)}\nunknown pool grant ${s.grantId}`).toBeDefined();
    expect(g!.expiresAt === null || g!.expiresAt > w.now, `${where(w)}\nexpired pool grant ${s.grantId} spent`).toBe(
      true,
    );
    expect(
      g!.products === null || g!.products.includes(product),
      `${where(w)}\npool grant ${s.grantId} (${g!.products}) paid for ${product}`,
    ).toBe(true);
  }
}

// ───────────────────────────── requests ─────────────────────────────

async function keyed(w: OrgWorld, method: string, path: string, body: unknown): Promise<Res> {
  const key = `omk_${uid("k")}`;
  const res = await call(method, path, body, { key, now: w.now });
  expect(res.headers.get("Idempotent-Replayed"), where(w)).toBeNull();
  if (res.status < 300 || res.status === 429)
    w.keyed.push({ key, method, path, body, status: res.status, resBody: res.body, at: w.now });
  w.outcome = `${res.status} ${res.body?.error?.code ?? res.body?.reason ?? ""}`.trim();
  return res;
}

const memberOf = (w: OrgWorld, pick: number) => w.members[pick % w.members.length];
/** A member pick in words: `m2` in a sequence's log (its index there), `m#14` (the raw pick) outside one. */
const who = (pick: number, w?: OrgWorld) => (w ? `m${pick % w.members.length}` : `m#${pick}`);

/**
 * The organization's alarm (its own closes, retries, settlement checks) runs on the test clock as of the organization's
 * last step plus the wall time since: behind a member that drew at a later test time, a close of its lease would be a
 * step back in the member's time (its day's and month's draws rolled back to an earlier day). In production both run on
 * real time. So each step first tells the organization the test time (the same `PUT` as at the start: no change).
 */
async function syncOrgClock(w: OrgWorld) {
  const r = await call("PUT", `/v1/orgs/${w.orgId}`, ORG_BODY, { key: uid("omclock"), now: w.now });
  expect(r.status, `${where(w)}\n${JSON.stringify(r.body)}`).toBe(200);
}
const ORG_BODY = { plan: "business", flexMonthlyLimit: 0 };

// ───────────────────────────── steps ─────────────────────────────

/** One request of a step: sent, then its answer checked and applied to the model (a race sends several first). */
interface Request {
  send(): Promise<Res>;
  check(res: Res): void;
}
async function perform(r: Request | null) {
  if (r) r.check(await r.send());
}

abstract class OrgStep implements fc.AsyncCommand<OrgWorld, OrgWorld> {
  constructor(readonly dt: number) {}
  check(): boolean {
    return true;
  }
  /** the step in words; with the world, members by their index in this sequence */
  abstract label(w?: OrgWorld): string;
  abstract exec(w: OrgWorld): Promise<void>;
  async run(w: OrgWorld): Promise<void> {
    w.step++;
    w.outcome = "";
    w.drew.clear();
    const next = w.now + this.dt;
    w.now = next <= w.end ? next : w.now + SEC;
    w.log.push(`#${w.step} ${iso(w.now)} ${this.label(w)}`);
    await syncOrgClock(w);
    expireHolds(w);
    await this.exec(w);
    count(`${this.constructor.name} ${w.outcome}`.trim());
    await verifyOrg(w);
    if (w.fault && w.step >= w.fault.until) await disarm(w);
  }
  toString(): string {
    return `${this.label()} +${this.dt / SEC}s`;
  }
}

function consumed(w: OrgWorld, m: MemberModel, product: Product, cost: number, res: Res) {
  w.log.push(
    `   → ${res.status} ${res.status === 200 ? JSON.stringify(res.body.sources) : (res.body.reason ?? res.body.error?.code)}`,
  );
  expect([200, 429], `${where(w)}\n${JSON.stringify(res.body)}`).toContain(res.status);
  if (res.status !== 200) return;
  expect(res.body.cost, where(w)).toBe(cost);
  expect(sum(res.body.sources), where(w)).toBe(cost);
  expectFreshPoolSources(w, m, product, res.body.sources);
  paid(w, m, res.body.sources);
  drawn(w, m, sum(poolOf(res.body.sources)));
}

class Consume extends OrgStep {
  constructor(
    readonly member: number,
    readonly product: Product,
    readonly cost: number,
    dt: number,
  ) {
    super(dt);
  }
  label(w?: OrgWorld) {
    return `${who(this.member, w)} consume ${this.product} ${this.cost}`;
  }
  plan(w: OrgWorld): Request {
    const m = memberOf(w, this.member);
    const body = { product: this.product, cost: this.cost };
    return {
      send: () => keyed(w, "POST", `/v1/accounts/${m.id}/consume`, body),
      check: (res) => consumed(w, m, this.product, this.cost, res),
    };
  }
  async exec(w: OrgWorld) {
    await perform(this.plan(w));
  }
}

/** Consumes by several members at once (a member may appear more than once): the pool is asked concurrently. */
class Burst extends OrgStep {
  constructor(
    readonly parts: { member: number; product: Product; cost: number }[],
    dt: number,
  ) {
    super(dt);
  }
  label(w?: OrgWorld) {
    return `burst ${this.parts.map((p) => `${who(p.member, w)}:${p.product}:${p.cost}`).join(" ")}`;
  }
  async exec(w: OrgWorld) {
    const answers = await Promise.all(
      this.parts.map((p) =>
        keyed(w, "POST", `/v1/accounts/${memberOf(w, p.member).id}/consume`, { product: p.product, cost: p.cost }),
      ),
    );
    this.parts.forEach((p, i) => {
      consumed(w, memberOf(w, p.member), p.product, p.cost, answers[i]);
    });
    w.outcome = answers.map((a) => a.status).join(",");
  }
}

class Hold extends OrgStep {
  constructor(
    readonly member: number,
    readonly product: Product,
    readonly cost: number,
    readonly ttl: number,
    dt: number,
  ) {
    super(dt);
  }
  label(w?: OrgWorld) {
    return `${who(this.member, w)} hold ${this.product} ${this.cost} ttl=${this.ttl}`;
  }
  async exec(w: OrgWorld) {
    const m = memberOf(w, this.member);
    const body = { product: this.product, cost: this.cost, ttlSeconds: this.ttl };
    const res = await keyed(w, "POST", `/v1/accounts/${m.id}/holds`, body);
    w.log.push(
      `   → ${res.status} ${res.body.holdId ?? ""} ${res.status === 201 ? JSON.stringify(res.body.sources) : (res.body.reason ?? res.body.error?.code)}`,
    );
    expect([201, 429], `${where(w)}\n${JSON.stringify(res.body)}`).toContain(res.status);
    if (res.status !== 201) return;
    expect(sum(res.body.sources), where(w)).toBe(this.cost);
    expectFreshPoolSources(w, m, this.product, res.body.sources);
    w.holds.push({
      id: res.body.holdId,
      member: m,
      product: this.product,
      amount: this.cost,
      sources: res.body.sources,
      createdAt: w.now,
      expiresAt: w.now + this.ttl * SEC,
      state: "active",
      endedAt: null,
    });
    drawn(w, m, sum(poolOf(res.body.sources)));
  }
}

/** Mostly an active hold; sometimes any hold of the sequence (settled, released or expired). */
function pickHold(w: OrgWorld, pick: number): HoldModel | null {
  const active = activeHolds(w);
  if (active.length > 0 && pick % 5 !== 4) return active[pick % active.length];
  return w.holds.length === 0 ? null : w.holds[pick % w.holds.length];
}

/** A hold that is not active: 409 hold_not_active, or 404 once the alarm pruned it (7 days after it ended). */
function expectEnded(w: OrgWorld, res: Res, h: HoldModel) {
  if (res.status === 404 && h.endedAt !== null && h.endedAt < w.now - 7 * DAY) return;
  expect(res.status, `${where(w)}\n${JSON.stringify(res.body)}`).toBe(409);
  expect(res.body.error.code, where(w)).toBe("hold_not_active");
}

type SettleMode = "under" | "exact" | "over" | "way_over";
class Settle extends OrgStep {
  constructor(
    readonly pick: number,
    readonly mode: SettleMode,
    readonly delta: number,
    dt: number,
  ) {
    super(dt);
  }
  label() {
    return `settle hold#${this.pick} ${this.mode} ${this.delta}`;
  }
  plan(w: OrgWorld): Request | null {
    const h = pickHold(w, this.pick);
    if (!h) return null;
    const actual =
      this.mode === "under"
        ? Math.max(1, h.amount - 1 - (this.delta % h.amount))
        : this.mode === "over"
          ? h.amount + this.delta
          : this.mode === "way_over"
            ? h.amount + 100 * C + this.delta
            : h.amount;
    return {
      send: () => keyed(w, "POST", `/v1/accounts/${h.member.id}/holds/${h.id}/settle`, { cost: actual }),
      check: (res) => settled(w, h, actual, res),
    };
  }
  async exec(w: OrgWorld) {
    await perform(this.plan(w));
  }
}

function settled(w: OrgWorld, h: HoldModel, actual: number, res: Res) {
  const m = h.member;
  w.log.push(
    `   settle ${h.id} (${h.state}) cost ${actual} → ${res.status} ${JSON.stringify(res.body.sources ?? res.body.error?.code)} off=${res.body.writtenOff}`,
  );
  if (h.state !== "active") return expectEnded(w, res, h);
  expect(res.status, `${where(w)}\n${JSON.stringify(res.body)}`).toBe(200);
  const plan = settleReservation(h.sources, actual);
  expect(res.body.released, where(w)).toBe(sum(plan.released));
  expect(res.body.charged + res.body.writtenOff, where(w)).toBe(actual);
  expect(sum(res.body.sources), where(w)).toBe(res.body.charged);
  // the answer's pool parts: the reservation's part charged, plus what the part above the hold drew now
  const reservedCharged = new Map<string, number>();
  for (const s of poolOf(plan.charged))
    reservedCharged.set(s.grantId!, (reservedCharged.get(s.grantId!) ?? 0) + s.amount);
  const extra: Src[] = [];
  for (const s of poolOf(res.body.sources)) {
    const fromHold = reservedCharged.get(s.grantId!) ?? 0;
    expect(
      s.amount,
      `${where(w)}\nthe settle charged less of ${s.grantId} than its reservation`,
    ).toBeGreaterThanOrEqual(fromHold);
    reservedCharged.delete(s.grantId!);
    if (s.amount > fromHold) extra.push({ ...s, amount: s.amount - fromHold });
  }
  expect([...reservedCharged.keys()], `${where(w)}\na reserved pool part charged is missing`).toEqual([]);
  expectFreshPoolSources(w, m, h.product, extra);
  h.state = "settled";
  h.endedAt = w.now;
  undrawn(m, sum(poolOf(plan.released)), h.createdAt, w.now);
  drawn(w, m, sum(extra));
  paid(w, m, res.body.sources);
}

class Release extends OrgStep {
  constructor(
    readonly pick: number,
    dt: number,
  ) {
    super(dt);
  }
  label() {
    return `release hold#${this.pick}`;
  }
  async exec(w: OrgWorld) {
    const h = pickHold(w, this.pick);
    if (!h) return;
    const res = await keyed(w, "POST", `/v1/accounts/${h.member.id}/holds/${h.id}/release`, undefined);
    released(w, h, res);
  }
}

function released(w: OrgWorld, h: HoldModel, res: Res) {
  w.log.push(`   release ${h.id} (${h.state}) → ${res.status}`);
  if (h.state !== "active") return expectEnded(w, res, h);
  expect(res.status, `${where(w)}\n${JSON.stringify(res.body)}`).toBe(200);
  expect(res.body.released, where(w)).toBe(h.amount);
  h.state = "released";
  h.endedAt = w.now;
  undrawn(h.member, sum(poolOf(h.sources)), h.createdAt, w.now);
}

class PoolGrant extends OrgStep {
  constructor(
    readonly kind: "purchase" | "promo" | "entitlement",
    readonly amount: number,
    readonly products: Product[] | null,
    readonly expiresIn: number | null,
    dt: number,
  ) {
    super(dt);
  }
  label() {
    return `pool grant ${this.kind} ${this.amount} ${this.products?.join("+") ?? "all"} exp=${this.expiresIn === null ? "-" : `${this.expiresIn / SEC}s`}`;
  }
  async exec(w: OrgWorld) {
    const expiresAt = this.expiresIn === null ? null : w.now + this.expiresIn;
    const body = {
      amount: this.amount,
      kind: this.kind,
      ...(expiresAt === null ? {} : { expiresAt: iso(expiresAt) }),
      ...(this.products ? { products: this.products } : {}),
    };
    const res = await keyed(w, "POST", `/v1/orgs/${w.orgId}/credits`, body);
    expect(res.status, `${where(w)}\n${JSON.stringify(res.body)}`).toBe(201);
    w.log.push(`   → pool grant ${res.body.id} expires ${res.body.expiresAt}`);
    expect(res.body, where(w)).toMatchObject({ amount: this.amount, remaining: this.amount, products: this.products });
    addPoolGrant(w, res.body.id, this.amount, res.body.expiresAt, this.products);
  }
}

function addPoolGrant(w: OrgWorld, id: string, amount: number, expiresAt: string | null, products: Product[] | null) {
  w.grants.set(id, { id, amount, expiresAt: expiresAt === null ? null : Date.parse(expiresAt), products });
  w.granted += amount;
}

class PoolRefund extends OrgStep {
  constructor(
    readonly amount: number,
    dt: number,
  ) {
    super(dt);
  }
  label() {
    return `admin refund to the pool ${this.amount}`;
  }
  async exec(w: OrgWorld) {
    const body = { amount: this.amount, reason: "org model refund" };
    const res = await keyed(w, "POST", `/v1/admin/orgs/${w.orgId}/refunds`, body);
    expect(res.status, `${where(w)}\n${JSON.stringify(res.body)}`).toBe(201);
    addPoolGrant(w, res.body.grant.id, this.amount, res.body.grant.expiresAt, null);
  }
}

/** A member's own purchase: its waterfall spends it before the pool. */
class MemberGrant extends OrgStep {
  constructor(
    readonly member: number,
    readonly amount: number,
    dt: number,
  ) {
    super(dt);
  }
  label(w?: OrgWorld) {
    return `${who(this.member, w)} own grant ${this.amount}`;
  }
  async exec(w: OrgWorld) {
    const m = memberOf(w, this.member);
    const res = await keyed(w, "POST", `/v1/accounts/${m.id}/credits`, { amount: this.amount, kind: "purchase" });
    expect(res.status, `${where(w)}\n${JSON.stringify(res.body)}`).toBe(201);
  }
}

/** Sets a member's pool limits; a removed member is added again. */
class Limits extends OrgStep {
  constructor(
    readonly member: number,
    readonly daily: number | null,
    readonly monthly: number | null,
    dt: number,
  ) {
    super(dt);
  }
  label(w?: OrgWorld) {
    return `${who(this.member, w)} limits daily=${this.daily} monthly=${this.monthly}`;
  }
  async exec(w: OrgWorld) {
    const m = memberOf(w, this.member);
    const body = {
      ...(this.daily === null ? {} : { dailyLimit: this.daily }),
      ...(this.monthly === null ? {} : { monthlyLimit: this.monthly }),
    };
    const was = m.active;
    const res = await keyed(w, "PUT", `/v1/orgs/${w.orgId}/members/${m.id}`, body);
    expect(res.status, `${where(w)}\n${JSON.stringify(res.body)}`).toBe(200);
    expect(res.body, where(w)).toMatchObject({
      accountId: m.id,
      active: true,
      dailyLimit: this.daily,
      monthlyLimit: this.monthly,
    });
    m.active = true;
    m.untold = false;
    m.dailyLimit = this.daily;
    m.monthlyLimit = this.monthly;
    if (!was) w.outcome += " re-added";
  }
}

class Remove extends OrgStep {
  constructor(
    readonly member: number,
    dt: number,
  ) {
    super(dt);
  }
  label(w?: OrgWorld) {
    return `remove ${who(this.member, w)}`;
  }
  plan(w: OrgWorld): Request {
    const m = memberOf(w, this.member);
    return {
      send: () => keyed(w, "DELETE", `/v1/orgs/${w.orgId}/members/${m.id}`, undefined),
      check: (res) => removed(w, m, res),
    };
  }
  async exec(w: OrgWorld) {
    await perform(this.plan(w));
  }
}

function removed(w: OrgWorld, m: MemberModel, res: Res) {
  w.log.push(`   remove ${m.id} → ${res.status} ${res.body.error?.code ?? ""}`);
  if (!m.active) {
    expect(res.status, `${where(w)}\n${JSON.stringify(res.body)}`).toBe(404);
    expect(res.body.error.code, where(w)).toBe("not_found");
    return;
  }
  expect(res.status, `${where(w)}\n${JSON.stringify(res.body)}`).toBe(200);
  expect(res.body.active, where(w)).toBe(false);
  m.active = false;
}

/**
 * Consumes by members, maybe a settle, maybe a removal, and maybe the organization's closes, all at once: closes and
 * removals meet decisions and lease requests in flight. The answers are checked in that order, the removal last (a
 * consume racing its member's removal may still draw from the pool; the strict check is the Remove step's).
 */
class Race extends OrgStep {
  constructor(
    readonly consumes: Consume[],
    readonly settle: Settle | null,
    readonly remove: Remove | null,
    readonly close: boolean,
    dt: number,
  ) {
    super(dt);
  }
  label(w?: OrgWorld) {
    const parts = [
      ...this.consumes.map((c) => c.label(w)),
      ...(this.settle ? [this.settle.label()] : []),
      ...(this.remove ? [this.remove.label(w)] : []),
      ...(this.close ? ["org closes due leases"] : []),
    ];
    return `race: ${parts.join(" | ")}`;
  }
  async exec(w: OrgWorld) {
    const requests = [
      ...this.consumes.map((c) => c.plan(w)),
      this.settle?.plan(w) ?? null,
      this.remove?.plan(w) ?? null,
    ].filter((r): r is Request => r !== null);
    const [answers] = await Promise.all([
      Promise.all(requests.map((r) => r.send())),
      this.close ? orgStubOf(w.orgId).closeDue(w.now) : undefined,
    ]);
    requests.forEach((r, i) => {
      r.check(answers[i]);
    });
    w.outcome = answers.map((a) => a.status).join(",");
  }
}

/** Nothing but the checks: what a step shrinks to (the first arbitrary of `stepArb`), so a counterexample drops steps. */
class Idle extends OrgStep {
  label() {
    return "nothing";
  }
  async exec() {}
  toString() {
    return this.label();
  }
}

class Advance extends OrgStep {
  label() {
    return `advance ${this.dt / SEC}s`;
  }
  async exec() {}
  toString() {
    return this.label();
  }
}

/** The organization closes what is due now (its alarm's work, at this step's time). */
class Close extends OrgStep {
  label() {
    return "org closes due leases";
  }
  async exec(w: OrgWorld) {
    await orgStubOf(w.orgId).closeDue(w.now);
  }
}

class EvictMember extends OrgStep {
  constructor(
    readonly member: number,
    dt: number,
  ) {
    super(dt);
  }
  label(w?: OrgWorld) {
    return `evict ${who(this.member, w)}`;
  }
  async exec(w: OrgWorld) {
    const stub = accountStub(memberOf(w, this.member).id);
    await runInDurableObject(stub, () => undefined);
    await evictDurableObject(stub);
  }
}

class EvictOrg extends OrgStep {
  label() {
    return "evict the organization's object";
  }
  async exec(w: OrgWorld) {
    const stub = orgStubOf(w.orgId);
    await runInDurableObject(stub, () => undefined);
    await evictDurableObject(stub);
  }
}

class ResumeMember extends OrgStep {
  constructor(
    readonly member: number,
    dt: number,
  ) {
    super(dt);
  }
  label(w?: OrgWorld) {
    return `admin resume ${who(this.member, w)}`;
  }
  async exec(w: OrgWorld) {
    const res = await keyed(w, "POST", `/v1/admin/accounts/${memberOf(w, this.member).id}/resume`, undefined);
    expect(res.status, `${where(w)}\n${JSON.stringify(res.body)}`).toBe(200);
    if (res.body.resumed) w.outcome += " resumed";
  }
}

/** An earlier keyed request again: the first answer, replayed, and no second effect. */
class Replay extends OrgStep {
  constructor(
    readonly pick: number,
    dt: number,
  ) {
    super(dt);
  }
  label() {
    return `replay #${this.pick}`;
  }
  async exec(w: OrgWorld) {
    const fresh = w.keyed.filter((k) => k.at >= w.now - REPLAY_HORIZON);
    if (fresh.length === 0) return;
    const k = fresh[this.pick % fresh.length];
    w.log.push(`   replaying ${k.method} ${k.path} ${JSON.stringify(k.body)} (first answer ${k.status})`);
    const res = await call(k.method, k.path, k.body, { key: k.key, now: w.now });
    w.outcome = `${res.status}`;
    expect(res.headers.get("Idempotent-Replayed"), `${where(w)}\n${JSON.stringify(res.body)}`).toBe("true");
    expect(res.status, where(w)).toBe(k.status);
    expect(res.body, `${where(w)}\nreplayed body differs`).toEqual(k.resBody);
  }
}

/** Lease faults for the next `duration` steps: every `every`-th call at `stage` throws. */
/**
 * Faults on the lease traffic for the next `duration` steps. At a `faultPoints.lease` stage, every `every`-th call
 * throws: "issue" (the pool fails before issuing), "issued" (the issue's answer is lost on the way back), "closed"
 * (the member closed, its answer is lost on the way back). "unreachable": no member object takes a close (the test
 * shadows each live instance's `closeLease`, so the call fails; an eviction ends it for that member early), as when
 * the pool cannot reach a member it removes or whose lease is due.
 */
class Fault extends OrgStep {
  constructor(
    readonly stage: LeaseFault["stage"],
    readonly every: number,
    readonly duration: number,
    dt: number,
  ) {
    super(dt);
  }
  label() {
    return this.stage === "unreachable"
      ? `members unreachable for closes for ${this.duration} step(s)`
      : `lease fault on "${this.stage}" every ${this.every} call(s) for ${this.duration} step(s)`;
  }
  async exec(w: OrgWorld) {
    await disarm(w);
    const fault: LeaseFault = { stage: this.stage, every: this.every, until: w.step + this.duration, calls: 0 };
    w.fault = fault;
    if (fault.stage === "unreachable") {
      for (const m of w.members) await setReachable(m.id, false);
      return;
    }
    faultPoints.lease = (stage, accountId) => {
      if (w.fault !== fault || stage !== fault.stage) return;
      fault.calls++;
      if (fault.calls % fault.every !== 0) return;
      w.faulted.add(accountId);
      count(`fault fired: ${stage}`);
      throw new Error(`injected: lease fault at "${stage}"`);
    };
  }
}

/** Shadows (or unshadows) the live member instance's `closeLease`: an RPC to it then fails. */
async function setReachable(id: string, reachable: boolean) {
  await runInDurableObject(accountStub(id), (i: AccountDO) => {
    const o = i as unknown as { closeLease?: unknown };
    if (reachable) delete o.closeLease;
    else
      o.closeLease = () => {
        throw new Error("injected: member unreachable");
      };
  });
}

async function disarm(w: OrgWorld) {
  const fault = w.fault;
  w.fault = null;
  faultPoints.lease = undefined;
  if (fault?.stage === "unreachable") for (const m of w.members) await setReachable(m.id, true);
}

// ───────────────────────────── generators ─────────────────────────────

const { product, dt, cost, amount, products, expiresIn, bigJump } = gen;
const member = fc.nat({ max: 29 });
/** A member's pool limit: mostly none; else from half a credit to 20 credits. */
const limit: fc.Arbitrary<number | null> = fc.oneof(
  { weight: 3, arbitrary: fc.constant(null) },
  { weight: 1, arbitrary: fc.integer({ min: 1, max: 20 * C }) },
  { weight: 1, arbitrary: fc.constantFrom(C / 2, C, 2 * C, 5 * C, 10 * C) },
);

const settleMode = fc.constantFrom<SettleMode>("under", "under", "exact", "over", "over", "way_over");
const settleDelta = fc.integer({ min: 1, max: 5 * C });

const stepArb: fc.Arbitrary<OrgStep> = fc.oneof(
  { withCrossShrink: true },
  { weight: 1, arbitrary: fc.constant(SEC).map((d) => new Idle(d)) },
  { weight: 10, arbitrary: fc.tuple(member, product, cost, dt).map(([m, p, c, d]) => new Consume(m, p, c, d)) },
  {
    weight: 3,
    arbitrary: fc
      .tuple(fc.array(fc.record({ member, product, cost }), { minLength: 2, maxLength: 6 }), dt)
      .map(([ps, d]) => new Burst(ps, d)),
  },
  {
    weight: 4,
    arbitrary: fc
      .tuple(member, product, cost, fc.constantFrom(1, 60, 600, 3600, 3600), dt)
      .map(([m, p, c, t, d]) => new Hold(m, p, c, t, d)),
  },
  {
    weight: 4,
    arbitrary: fc.tuple(fc.nat(), settleMode, settleDelta, dt).map(([i, m, x, d]) => new Settle(i, m, x, d)),
  },
  {
    weight: 3,
    arbitrary: fc
      .tuple(
        fc.array(
          fc.tuple(member, product, cost).map(([m, p, c]) => new Consume(m, p, c, 0)),
          { minLength: 1, maxLength: 4 },
        ),
        fc.option(
          fc.tuple(fc.nat(), settleMode, settleDelta).map(([i, m, x]) => new Settle(i, m, x, 0)),
          { nil: null },
        ),
        fc.oneof(
          { weight: 4, arbitrary: fc.constant(null) },
          { weight: 1, arbitrary: member.map((m) => new Remove(m, 0)) },
        ),
        fc.boolean(),
        dt,
      )
      .map(([cs, st, rm, cl, d]) => new Race(cs, st, rm, cl, d)),
  },
  { weight: 2, arbitrary: fc.tuple(fc.nat(), dt).map(([i, d]) => new Release(i, d)) },
  {
    weight: 3,
    arbitrary: fc
      .tuple(
        fc.constantFrom<"purchase" | "promo" | "entitlement">("purchase", "purchase", "promo", "entitlement"),
        amount,
        products,
        fc.option(expiresIn, { nil: null }),
        expiresIn,
        dt,
      )
      .map(([k, a, ps, e, promoExp, d]) => new PoolGrant(k, a, ps, k === "promo" ? (e ?? promoExp) : e, d)),
  },
  { weight: 1, arbitrary: fc.tuple(amount, dt).map(([a, d]) => new PoolRefund(a, d)) },
  { weight: 1, arbitrary: fc.tuple(member, amount, dt).map(([m, a, d]) => new MemberGrant(m, a, d)) },
  { weight: 2, arbitrary: fc.tuple(member, limit, limit, dt).map(([m, a, b, d]) => new Limits(m, a, b, d)) },
  { weight: 1, arbitrary: fc.tuple(member, dt).map(([m, d]) => new Remove(m, d)) },
  { weight: 2, arbitrary: bigJump.map((d) => new Advance(d)) },
  { weight: 3, arbitrary: dt.map((d) => new Close(d)) },
  { weight: 1, arbitrary: fc.tuple(member, dt).map(([m, d]) => new EvictMember(m, d)) },
  { weight: 1, arbitrary: dt.map((d) => new EvictOrg(d)) },
  { weight: 1, arbitrary: fc.tuple(member, dt).map(([m, d]) => new ResumeMember(m, d)) },
  { weight: 2, arbitrary: fc.tuple(fc.nat(), dt).map(([i, d]) => new Replay(i, d)) },
  {
    weight: 2,
    arbitrary: fc
      .tuple(
        fc.constantFrom<LeaseFault["stage"]>("issue", "issued", "closed", "unreachable"),
        fc.integer({ min: 1, max: 3 }),
        fc.integer({ min: 1, max: 4 }),
        dt,
      )
      .map(([s, e, n, d]) => new Fault(s, e, n, d)),
  },
);

const runArb = (steps: number) =>
  fc.record({
    members: fc.integer({ min: 3, max: 6 }),
    limits: fc.array(fc.tuple(limit, limit), { minLength: 6, maxLength: 6 }),
    pool: fc.integer({ min: 2, max: 40 }).map((n) => n * C),
    startOffset: fc.integer({ min: 0, max: 40 * 86_400 }).map((s) => s * SEC),
    steps: fc.array(stepArb, { minLength: steps, maxLength: steps }),
  });

// ───────────────────────────── reading both sides ─────────────────────────────

interface MemberInside {
  org: Membership | null;
  holds: { id: string; sources: Src[] }[];
  journalSeq: number;
  leasing: boolean;
}
interface OrgInside {
  state: OrgState;
  closing: boolean;
}

/** A member's state as its object holds it; with `settle`, once its lease request in flight (if any) is done. */
async function memberInside(id: string, settle = false): Promise<MemberInside> {
  return runInDurableObject(accountStub(id), async (i: AccountDO) => {
    const o = i as unknown as { state(): AccountState; leasing: Promise<void> | null };
    while (settle && o.leasing) await o.leasing;
    const s = o.state();
    return structuredClone({
      org: s.account?.org ?? null,
      holds: s.holds.map((h) => ({ id: h.id, sources: h.sources as Src[] })),
      journalSeq: s.account?.journalSeq ?? 0,
      leasing: o.leasing !== null,
    });
  });
}

/** The organization's state as its object holds it; with `settle`, once the closes in flight (if any) are done. */
async function orgInside(orgId: string, settle = false): Promise<OrgInside> {
  return runInDurableObject(orgStubOf(orgId), async (i: OrgDO) => {
    const o = i as unknown as { state(): OrgState; closingNow: Promise<void> | null };
    if (settle) await i.idle();
    return structuredClone({ state: o.state(), closing: o.closingNow !== null });
  });
}

const fingerprint = (o: OrgInside, ms: MemberInside[]) =>
  JSON.stringify({
    org: o.state.org,
    grants: o.state.grants,
    members: [...o.state.members.values()],
    o: o.closing,
    ms,
  });

/**
 * Both objects' state and both sides' answers at one quiet moment (no lease request and no close in flight): read the
 * objects, the API, the objects again, and keep the reading only if nothing moved in between (an alarm may close
 * leases or expire holds while a step waits).
 */
async function snapshot(w: OrgWorld) {
  for (let round = 0; round < 25; round++) {
    const [org0, ...members0] = await Promise.all([
      orgInside(w.orgId, true),
      ...w.members.map((m) => memberInside(m.id, true)),
    ]);
    const before = fingerprint(org0, members0);
    const [view, ...accounts] = await Promise.all([
      call("GET", `/v1/orgs/${w.orgId}`, undefined, { now: w.now }),
      ...w.members.map((m) => account(m.id, w.now)),
    ]);
    const [org, ...members] = await Promise.all([orgInside(w.orgId), ...w.members.map((m) => memberInside(m.id))]);
    if (!org.closing && members.every((m) => !m.leasing) && fingerprint(org, members) === before) {
      expect(view.status, where(w)).toBe(200);
      for (const a of accounts) expect(a.status, where(w)).toBe(200);
      return { view: view.body, accounts: accounts.map((a) => a.body), org: org.state, members };
    }
    count("snapshot retried");
    await new Promise((r) => setTimeout(r, 20));
  }
  throw new Error(`${where(w)}\nthe organization and its members never stood still`);
}

/**
 * Credits between the two objects because a lease fault lost an answer: an issue the pool made that the member never
 * took (the next close voids it and takes it back whole), or a close the member answered that the pool has not
 * applied (it asks again with the same id): the member's returns, and the void issue if that close voided one.
 */
function inTransit(pm: PoolMember, mine: Membership | null): number {
  const issue = pm.lastIssue ? sum(pm.lastIssue.parts) : 0;
  const answered = pm.closing !== null && mine?.lastClose?.closeId === pm.closing ? mine.lastClose.answer : null;
  if (answered)
    return sum(answered.returned) + (pm.lastIssue && answered.known && answered.taken < pm.lastIssue.n ? issue : 0);
  return pm.lastIssue && (mine?.issued ?? 0) < pm.lastIssue.n ? issue : 0;
}

/** The checks after every step (see the file's header). Returns the reading, for the end of a sequence. */
async function verifyOrg(w: OrgWorld) {
  expireHolds(w);
  const s = await snapshot(w);
  const at = where(w);
  const pool = s.view.pool;
  expect(pool.granted, `${at}\npool granted vs the model`).toBe(w.granted);
  const couldExpire = [...w.grants.values()]
    .filter((g) => g.expiresAt !== null && g.expiresAt <= w.now)
    .reduce((t, g) => t + g.amount, 0);
  expect(pool.expired, at).toBeGreaterThanOrEqual(0);
  expect(pool.expired, `${at}\nmore expired than the grants that reached their expiry`).toBeLessThanOrEqual(
    couldExpire,
  );
  expect(pool.balance, at).toBe(s.org.grants.reduce((t, g) => t + g.remaining, 0));
  for (const g of s.org.grants) expect(g.remaining, `${at}\npool grant ${g.id} negative`).toBeGreaterThanOrEqual(0);
  for (const g of s.view.grants) expect(g.remaining, at).toBeGreaterThanOrEqual(0);
  expect(s.view.paused, `${at}\nthe pool paused`).toBe(false);
  expect(s.view.members.map((m: any) => m.accountId).sort(), `${at}\nthe organization's active members`).toEqual(
    w.members
      .filter((m) => m.active)
      .map((m) => m.id)
      .sort(),
  );

  let lease = 0;
  let spent = 0;
  let reserved = 0;
  let transit = 0;
  let leased = 0;
  const reservedByGrant = new Map<string, number>();
  w.members.forEach((m, i) => {
    const label = `${at}\nmember m${i} ${m.id}`;
    const a = s.accounts[i];
    const mine = s.members[i].org;
    const pm = s.org.members.get(m.id);
    expect(pm, `${label}: unknown to the pool`).toBeDefined();
    // a removed member's object learns it from the close; while that close has not reached it, it is still active
    m.untold = !m.active && a.org.active === true;
    if (m.untold) {
      count("removed member not yet told");
      expect(pm?.closing, `${label}: removed, still active, and the pool has no close pending for it`).not.toBeNull();
    }
    expect(a.org, label).toMatchObject({
      orgId: w.orgId,
      active: m.active || m.untold,
      spent: m.paid,
      dailyLimit: m.dailyLimit,
      monthlyLimit: m.monthlyLimit,
      drawnToday: m.days.get(dayOf(w.now)) ?? 0,
      drawnThisMonth: m.months.get(monthOf(w.now)) ?? 0,
    });
    expect(a.credits.balance, label).toBeGreaterThanOrEqual(0);
    expect(a.org.lease, label).toBeGreaterThanOrEqual(0);
    for (const p of mine?.lease ?? [])
      expect(p.remaining, `${label}: lease part ${p.grantId}`).toBeGreaterThanOrEqual(0);
    expect(sum((mine?.lease ?? []).map((p) => ({ amount: p.remaining }))), label).toBe(a.org.lease);
    const holds = activeHolds(w, m);
    expect(a.holds.map((h: any) => h.holdId).sort(), `${label}: active holds`).toEqual(holds.map((h) => h.id).sort());
    const held = holds.reduce((t, h) => t + sum(poolOf(h.sources)), 0);
    expect(
      s.members[i].holds.map((h) => [h.id, sum(poolOf(h.sources))]).sort(),
      `${label}: the object's active holds and their pool reservations`,
    ).toEqual(holds.map((h) => [h.id, sum(poolOf(h.sources))]).sort());
    for (const h of holds)
      for (const p of poolOf(h.sources))
        reservedByGrant.set(p.grantId!, (reservedByGrant.get(p.grantId!) ?? 0) + p.amount);
    const t = inTransit(pm!, mine);
    if (t > 0) {
      count("credits in transit after a lease fault");
      expect(w.faulted.has(m.id), `${label}: ${t} credits between pool and member, and no lease fault hit it`).toBe(
        true,
      );
    }
    expect(pm!.leasedFlex, label).toBe(0);
    expect(
      pm!.leasedGrants,
      `${label}: the pool counts out with it ≠ its lease ${a.org.lease} + spend ${a.org.spent} + holds' reservations ${held} + in transit ${t}\n  pool's side: ${JSON.stringify(pm)}\n  member's side: ${JSON.stringify(mine)}`,
    ).toBe(a.org.lease + a.org.spent + held + t);
    expect(pm!.spent, `${label}: the pool knows more spend than the member made`).toBeLessThanOrEqual(m.paid);
    lease += a.org.lease;
    spent += a.org.spent;
    reserved += held;
    transit += t;
    leased += pm!.leasedGrants;
    if (w.drew.has(m)) {
      if (m.dailyLimit !== null)
        expect(m.days.get(dayOf(w.now)) ?? 0, `${label}: drew past its daily limit`).toBeLessThanOrEqual(m.dailyLimit);
      if (m.monthlyLimit !== null)
        expect(m.months.get(monthOf(w.now)) ?? 0, `${label}: drew past its monthly limit`).toBeLessThanOrEqual(
          m.monthlyLimit,
        );
    }
  });
  // I-pool, across objects
  expect(
    pool.balance + lease + spent + reserved + transit,
    `${at}\nI-pool: balance ${pool.balance} + leases ${lease} + spent ${spent} + held ${reserved} + in transit ${transit} vs granted ${pool.granted} − expired ${pool.expired}`,
  ).toBe(pool.granted - pool.expired);
  expect(pool.leased, at).toBe(leased);
  // the tally of what the pool paid, from the answers
  expect(spent, `${at}\nΣ members' org.spent vs the pool charges in the answers`).toBe(w.poolPaid);
  // no overdraft: in all, and per pool grant
  expect(w.poolPaid + reserved, `${at}\npool overdrawn`).toBeLessThanOrEqual(pool.granted - pool.expired);
  for (const [id, g] of w.grants)
    expect(
      (w.paidByGrant.get(id) ?? 0) + (reservedByGrant.get(id) ?? 0),
      `${at}\npool grant ${id} paid out more than its ${g.amount}`,
    ).toBeLessThanOrEqual(g.amount);
  expect(w.paidByGrant.get("flex") ?? 0, at).toBe(0);
  return s;
}

// ───────────────────────────── settlement of a sequence ─────────────────────────────

/** Every journal batch any object sent while the org model runs (they carry their account id). */
const captured: SettlementMessage[] = [];
let delivered = 0;
const captureSender: Sender = {
  sendBatch: async (msgs: Iterable<MessageSendRequest<SettlementMessage>>) => {
    for (const m of msgs) captured.push(JSON.parse(JSON.stringify(m.body)) as SettlementMessage);
    return { metadata: { metrics: { backlogCount: 0, backlogBytes: 0 } } };
  },
};

/** Runs the real consumer on what was captured and not yet delivered, each batch twice (the second reversed). */
async function deliverCaptured() {
  const msgs = captured.slice(delivered);
  delivered = captured.length;
  for (let i = 0; i < msgs.length; i += 40) {
    const chunk = msgs.slice(i, i + 40);
    for (const copy of [0, 1]) {
      const batch = createMessageBatch<SettlementMessage>(
        "settlement",
        (copy ? [...chunk].reverse() : chunk).map((body, j) => ({
          id: `om${copy}-${delivered}-${i + j}`,
          timestamp: new Date(),
          attempts: 1 + copy,
          body,
        })),
      );
      await settleBatch(batch, env);
    }
  }
}

async function watermark(ledgerId: string): Promise<number> {
  const head = await ledgerFor(env, ledgerId)
    .prepare("SELECT watermark FROM ledger_heads WHERE account_id = ?")
    .bind(ledgerId)
    .first<{ watermark: number }>();
  return head?.watermark ?? 0;
}

const memberLastSeq = (id: string) =>
  runInDurableObject(
    accountStub(id),
    (i: AccountDO) => (i as unknown as { state(): AccountState }).state().account?.journalSeq ?? 0,
  );
const orgLastSeq = (orgId: string) =>
  runInDurableObject(
    orgStubOf(orgId),
    (i: OrgDO) => (i as unknown as { state(): OrgState }).state().org?.journalSeq ?? 0,
  );

/** Drains every member's and the organization's journal into D1 through the real consumer. */
async function settleJournals(w: OrgWorld) {
  const sides = [
    ...w.members.map((m) => ({
      ledgerId: m.id,
      stub: accountStub(m.id) as DurableObjectStub<AccountDO | OrgDO>,
      last: () => memberLastSeq(m.id),
    })),
    {
      ledgerId: ORG_LEDGER(w.orgId),
      stub: orgStubOf(w.orgId) as DurableObjectStub<AccountDO | OrgDO>,
      last: () => orgLastSeq(w.orgId),
    },
  ];
  let behind = sides;
  for (let round = 0; round < 30 && behind.length > 0; round++) {
    for (const s of behind) await runInDurableObject(s.stub, (i: AccountDO | OrgDO) => i.flushOutbox());
    await deliverCaptured();
    const next: typeof sides = [];
    for (const s of behind) if ((await watermark(s.ledgerId)) < (await s.last())) next.push(s);
    behind = next;
    // the objects' settlement checks send again what the ledger lacks
    for (const s of behind) await runDurableObjectAlarm(s.stub);
  }
  for (const s of sides)
    expect(await watermark(s.ledgerId), `${where(w)}\n${s.ledgerId}: the ledger never caught up`).toBe(await s.last());
}

async function ledgerRows(ledgerId: string) {
  const { results } = await ledgerFor(env, ledgerId)
    .prepare("SELECT kind, amount, layer, grant_id, org_id, member_id FROM ledger WHERE account_id = ?")
    .bind(ledgerId)
    .all<{
      kind: string;
      amount: number;
      layer: string | null;
      grant_id: string | null;
      org_id: string | null;
      member_id: string | null;
    }>();
  return results;
}

/**
 * The end of a sequence: every hold and lease past its time, every lease closed, both sides settled into D1, and
 * the ledger against the tally and the pool.
 */
async function finish(w: OrgWorld) {
  await disarm(w);
  const lastHold = Math.max(0, ...w.holds.map((h) => h.expiresAt));
  w.step++;
  w.now = Math.max(w.now, lastHold) + LEASE_TTL_MS + SEC;
  w.log.push(`#${w.step} ${iso(w.now)} the end: every hold and lease TTL past, every lease closed`);
  expireHolds(w);
  // the members learn that their holds expired (the reservations go back to their leases), then the pool closes
  for (const m of w.members) expect((await account(m.id, w.now)).status).toBe(200);
  await orgStubOf(w.orgId).closeDue(w.now);
  await orgStubOf(w.orgId).closeDue(w.now + SEC);
  w.now += SEC;
  const s = await verifyOrg(w);
  const at = where(w);
  for (const [i, m] of w.members.entries()) {
    expect(s.accounts[i].org.lease, `${at}\nm${i} still holds a lease after every close`).toBe(0);
    expect(s.org.members.get(m.id)!.leasedGrants, `${at}\nm${i}: the pool counts more out than it spent`).toBe(m.paid);
    expect(s.org.members.get(m.id)!.closing, at).toBeNull();
  }
  expect(s.view.pool.balance, at).toBe(s.view.pool.granted - s.view.pool.expired - w.poolPaid);

  await settleJournals(w);
  // the members' pool charges in D1 = the tally, member by member
  let d1PoolCharges = 0;
  for (const [i, m] of w.members.entries()) {
    const rows = await ledgerRows(m.id);
    const charges = rows.filter((r) => r.kind === "charge" && r.layer === "pool");
    for (const r of charges) expect(r.org_id, `${at}\nm${i}: a pool charge naming another organization`).toBe(w.orgId);
    const total = charges.reduce((t, r) => t + r.amount, 0);
    expect(total, `${at}\nm${i}: pool charges in D1 vs the tally`).toBe(m.paid);
    d1PoolCharges += total;
    // the member's side of its leases: taken less returned is what it spent
    const net = rows
      .filter((r) => r.layer === "pool" && r.org_id === w.orgId)
      .reduce((t, r) => t + (r.kind === "lease" ? r.amount : r.kind === "lease_return" ? -r.amount : 0), 0);
    expect(net, `${at}\nm${i}: leases less returns in its ledger vs its spend`).toBe(m.paid);
  }
  expect(d1PoolCharges, at).toBe(w.poolPaid);
  // the organization's ledger: its credit position is the pool's balance, its leases less returns the members' spend
  const orgRows = await ledgerRows(ORG_LEDGER(w.orgId));
  const grantSide = (r: { member_id: string | null; grant_id: string | null }) =>
    r.member_id !== null && r.grant_id !== null;
  const credit = orgRows.reduce(
    (t, r) =>
      t +
      (r.kind === "grant" || r.kind === "refund" || (r.kind === "lease_return" && grantSide(r))
        ? r.amount
        : r.kind === "expiry" || (r.kind === "lease" && grantSide(r))
          ? -r.amount
          : 0),
    0,
  );
  const view = await call("GET", `/v1/orgs/${w.orgId}`, undefined, { now: w.now });
  expect(credit, `${at}\nthe organization's credit position in D1 vs the pool's balance`).toBe(view.body.pool.balance);
  const head = await ledgerFor(env, ORG_LEDGER(w.orgId))
    .prepare("SELECT credit_position AS c, charged_total AS ch FROM ledger_heads WHERE account_id = ?")
    .bind(ORG_LEDGER(w.orgId))
    .first<{ c: number; ch: number }>();
  expect(head?.c, `${at}\nthe organization's ledger head vs the pool's balance`).toBe(view.body.pool.balance);
  expect(head?.ch, at).toBe(0);
  for (const m of w.members) {
    const net = orgRows
      .filter((r) => r.member_id === m.id)
      .reduce((t, r) => t + (r.kind === "lease" ? r.amount : r.kind === "lease_return" ? -r.amount : 0), 0);
    expect(net, `${at}\n${m.id}: the organization's leases less returns vs the member's spend`).toBe(m.paid);
  }
  const granted = orgRows.filter((r) => r.kind === "grant" || r.kind === "refund").reduce((t, r) => t + r.amount, 0);
  expect(granted, at).toBe(w.granted);
  // reconciliation: the organization and each member, no drift
  for (const id of [ORG_LEDGER(w.orgId), ...w.members.map((m) => m.id)]) {
    const rec = await call("GET", `/v1/admin/reconciliation?accountId=${encodeURIComponent(id)}`, undefined, {
      token: ADMIN,
    });
    expect(rec.status, `${at}\n${JSON.stringify(rec.body)}`).toBe(200);
    expect(rec.body.drifted, `${at}\n${id}: ${JSON.stringify(rec.body)}`).toEqual([]);
  }
  count("sequences settled");
}

// ───────────────────────────── a sequence ─────────────────────────────

async function start(
  run: { members: number; limits: [number | null, number | null][]; pool: number; startOffset: number },
  year: number,
) {
  const year0 = Date.UTC(year, 0, 1);
  const w: OrgWorld = {
    orgId: uid("omorg"),
    members: [],
    now: year0 + run.startOffset,
    end: year0 + SPAN,
    step: 0,
    log: [],
    keyed: [],
    holds: [],
    grants: new Map(),
    granted: 0,
    poolPaid: 0,
    paidByGrant: new Map(),
    drew: new Set(),
    fault: null,
    faulted: new Set(),
    outcome: "",
  };
  w.log.push(`start ${iso(w.now)}: org ${w.orgId}, pool ${run.pool}, ${run.members} members`);
  const put = await keyed(w, "PUT", `/v1/orgs/${w.orgId}`, ORG_BODY);
  expect(put.status, JSON.stringify(put.body)).toBe(200);
  const grant = await keyed(w, "POST", `/v1/orgs/${w.orgId}/credits`, { amount: run.pool, kind: "purchase" });
  expect(grant.status, JSON.stringify(grant.body)).toBe(201);
  addPoolGrant(w, grant.body.id, run.pool, grant.body.expiresAt, null);
  for (let i = 0; i < run.members; i++) {
    const [daily, monthly] = run.limits[i];
    const m: MemberModel = {
      id: uid("om"),
      active: true,
      untold: false,
      dailyLimit: daily,
      monthlyLimit: monthly,
      paid: 0,
      days: new Map(),
      months: new Map(),
    };
    const body = {
      ...(daily === null ? {} : { dailyLimit: daily }),
      ...(monthly === null ? {} : { monthlyLimit: monthly }),
    };
    const r = await keyed(w, "PUT", `/v1/orgs/${w.orgId}/members/${m.id}`, body);
    expect(r.status, JSON.stringify(r.body)).toBe(200);
    w.members.push(m);
    w.log.push(`  m${i} = ${m.id} daily=${daily} monthly=${monthly}`);
  }
  await verifyOrg(w);
  return w;
}

/**
 * Runs the sequences; journals of every object go to a capture (and from there through the real consumer) while it
 * runs. Throws fast-check's report (seed and path) on a failure.
 */
export async function runOrgSequences(cfg: OrgModelConfig): Promise<void> {
  faultPoints.sender = () => captureSender;
  try {
    await fc.assert(
      fc.asyncProperty(runArb(cfg.steps), async (run) => {
        const w = await start(run, cfg.nextYear());
        try {
          await fc.asyncModelRun(() => ({ model: w, real: w }), run.steps);
          await finish(w);
        } finally {
          await disarm(w);
        }
      }),
      { seed: cfg.seed, numRuns: cfg.runs, endOnFailure: !cfg.shrink, ...(cfg.path ? { path: cfg.path } : {}) },
    );
  } finally {
    faultPoints.sender = undefined;
    faultPoints.lease = undefined;
  }
}
