/**
 * Model-based test (issue 7): random sequences of operations drive the real account Durable Object through the
 * worker's HTTP API (exports.default.fetch) and, side by side, the small reference model of test/model-helpers.ts,
 * which restates the SPEC without importing the product's waterfall.
 *
 * Operations: consume (cost or priced usage), hold create/settle/release, grants (purchase/promo/entitlement,
 * product-limited, expiring), refunds, plan changes, spend caps, banked-reset redemption, admin global resets,
 * admin resume, time advances on the test clock, replays of earlier Idempotency-Keys (same payload: identical
 * answer and no second effect; a key whose first answer was not kept re-decides), conflicting keys (409),
 * concurrent bursts of identical consumes and concurrent duplicates of one key.
 *
 * After every step: the decision (allowed/denied, reason, relief time, offer, sources) equals the model's, and the
 * account summary equals the model's (windows, grants, balance, flex, holds, banked resets, pause, spend cap);
 * no grant is negative, no expired grant is listed or spent, no charge takes a window above its limit.
 * The three settlement faults of issue #14 are on throughout: the object's sender resolves without delivering 30% of
 * its sends (and is what every instance gets, also one rebuilt after an eviction), the real consumer throws on 20% of
 * batches (before or after its D1 write; the batch is delivered again later), and objects are evicted at random steps.
 * After every sequence the journal is settled into D1 through the real consumer (each batch delivered twice), the
 * object's settlement checks sending again what was lost, until it has confirmed every entry:
 * D1 holds each money entry exactly once and window charges exactly once in their hour's usage rollup (SPEC §7),
 * Σ charges in D1 = Σ charges the model made, per Idempotency-Key too (over the journal that D1 matches), no grant was
 * drawn after its expiry, and GET /v1/admin/reconciliation reports zero drift.
 *
 * Counts and seed (defaults below, for CI): VITE_MODEL_RUNS, VITE_MODEL_STEPS, VITE_MODEL_SEED, VITE_MODEL_PATH
 * and VITE_MODEL_SHRINK=1 in the shell (Vite passes VITE_* variables to import.meta.env), or MODEL_RUNS /
 * MODEL_STEPS / MODEL_SEED bindings (e.g. in .dev.vars). A failure prints fast-check's seed and path.
 * See docs/reliability.md.
 */
import { createMessageBatch, evictDurableObject, runDurableObjectAlarm, runInDurableObject } from "cloudflare:test";
import { env } from "cloudflare:workers";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { AccountDO } from "../durable-objects/account/object";
import type { AccountState } from "../worker/core/account/state";
import { settleBatch } from "../worker/settlement/consumer";
import { faultPoints, type Sender } from "../worker/settlement/fault-points";
import type { SettlementMessage } from "../worker/settlement/messages";
import { ledgerFor, settlementQueueFor } from "../worker/settlement/shards";
import { ADMIN, call, uid, mulberry32 } from "./helpers";
import { journalIn } from "./storage-helpers";
import { orgStats, runOrgSequences } from "./org-model-helpers";
import { ledgerView } from "./settle-helpers";
import {
  C,
  DAY,
  decisionOf,
  gen,
  grantPriority,
  HOUR,
  iso,
  ModelRefusal,
  PLANS,
  priceOf,
  projectSummary,
  RATE_CARD_VERSION,
  RefModel,
  SEC,
  verdictJson,
  windowLimit,
  type GlobalReset,
  type GrantKind,
  type MGrant,
  type PlanId,
  type Product,
  type Verdict,
} from "./model-helpers";

// ───────────────────────────── configuration ─────────────────────────────

const viteEnv = ((import.meta as unknown as { env?: Record<string, string | undefined> }).env ?? {}) as Record<
  string,
  string | undefined
>;
const bindings = env as unknown as Record<string, unknown>;
function setting(name: string): string | undefined {
  const v = viteEnv[`VITE_${name}`] ?? bindings[name];
  return v === undefined || v === "" ? undefined : String(v);
}
/** CI defaults: 200 sequences of 50 steps from a fixed seed. Raise them with VITE_MODEL_RUNS / VITE_MODEL_STEPS. */
const RUNS = Number(setting("MODEL_RUNS") ?? 200);
const STEPS = Number(setting("MODEL_STEPS") ?? 50);
const SEED = Number(setting("MODEL_SEED") ?? 20261101);
const PATH = setting("MODEL_PATH");
/** Shrinking re-runs whole sequences (about a second each); it is opt-in. */
const SHRINK = setting("MODEL_SHRINK") === "1";
/** Steps older than this are not replayed: keys are kept ≥ 24 h (48 h here) and pruned by the alarm after that. */
const REPLAY_HORIZON = 47 * HOUR;
/** Each sequence stays inside Jan 1 … Feb 27 of its own year, so every year has the same calendar (flex months, UTC days). */
const SPAN = 57 * DAY;

// ───────────────────────────── the world ─────────────────────────────

type Res = { status: number; body: any; headers: Headers };
interface Req {
  method: "POST" | "PUT";
  path: string;
  body: unknown;
}
/** Checks an answer that was decided afresh (not replayed) against the model, applies it there, and returns the summary it carried. */
type Interpret = (w: World, key: string, res: Res) => any;

interface Keyed {
  key: string;
  req: Req;
  at: number;
  status: number;
  resBody: any;
  /** a 2xx answer: always kept and replayed */
  success: boolean;
  /** refused by the worker before the account object saw the key (a settle of an unknown hold): never kept */
  routeLevel: boolean;
  /** an admin global reset: its key lives in the reset control object, not the account */
  global: boolean;
  interpret: Interpret;
}

interface World {
  ref: RefModel;
  id: string;
  end: number;
  keyed: Keyed[];
  log: string[];
  captured: SettlementMessage[];
  /** how many captured messages were already run through the consumer */
  delivered: number;
  /** messages of batches the consumer failed on, delivered again with the next ones */
  redeliver: SettlementMessage[];
  step: number;
  /** window use after the previous step, per product/kind: a charge never takes a window above its limit */
  prevUsed: Map<string, number>;
  /** expiry of every grant ever made, for the ledger's "never spent after expiry" check */
  grantExpiry: Map<string, number | null>;
  /** the last answer's status and code or reason, for the coverage statistics */
  outcome: string;
}

let runCounter = 0;
/** What the sequences exercised, by step kind and outcome (printed at the end, and checked for coverage). */
const stats = new Map<string, number>();
const count = (what: string) => stats.set(what, (stats.get(what) ?? 0) + 1);
let keyCounter = 0;
const newKey = (w: World) => `mk_${w.id}_${(keyCounter++).toString(36)}`;
const where = (w: World) => `account ${w.id} at ${iso(w.ref.now)}, step ${w.step}\n  ${w.log.slice(-60).join("\n  ")}`;

/**
 * Which answers an Idempotency-Key keeps. SPEC §4: "the same key with the same payload replays the original status
 * and body" — every answer, a 429 denial or a 4xx refusal included (only a refusal by the worker before the account
 * object saw the key, a settle of an unknown hold, is decided again, with the same result). To run against an engine
 * that keeps only 2xx answers, start a category at "unknown": the model then learns the policy from the first replay
 * and holds the engine to it for the rest of the file.
 */
const keepPolicy: Record<"denials" | "refusals", "unknown" | "kept" | "decided again"> = {
  denials: "kept",
  refusals: "kept",
};
const category = (status: number) => (status === 429 ? "denials" : "refusals");
function notePolicy(w: World, status: number, seen: "kept" | "decided again") {
  const c = category(status);
  if (keepPolicy[c] === "unknown") keepPolicy[c] = seen;
  expect(
    seen,
    `${where(w)}\nIdempotency-Key ${c}: expected ${keepPolicy[c]} (SPEC §4 replays the original status and body)`,
  ).toBe(keepPolicy[c]);
}

async function http(
  w: World,
  method: string,
  path: string,
  body: unknown,
  key: string | null,
  raw?: string,
): Promise<Res> {
  const res = await call(method, path, body, { key, now: w.ref.now, ...(raw === undefined ? {} : { raw }) });
  w.outcome =
    `${res.status} ${res.body?.error?.code ?? res.body?.reason ?? ""}${res.headers.get("Idempotent-Replayed") ? " replayed" : ""}`.trim();
  return res;
}

function remember(
  w: World,
  key: string,
  req: Req,
  res: Res,
  interpret: Interpret,
  opts: { routeLevel?: boolean; global?: boolean } = {},
) {
  const entry: Keyed = {
    key,
    req,
    interpret,
    at: w.ref.now,
    status: res.status,
    resBody: res.body,
    success: res.status < 300,
    routeLevel: opts.routeLevel ?? false,
    global: opts.global ?? false,
  };
  const i = w.keyed.findIndex((x) => x.key === key);
  if (i < 0) w.keyed.push(entry);
  // a key whose earlier answer was not kept and was decided again: this answer is the one to replay now
  else if (!w.keyed[i].success) w.keyed[i] = entry;
}

function expectApiError(w: World, res: Res, status: number, code: string) {
  expect(res.status, `${where(w)}\n${JSON.stringify(res.body)}`).toBe(status);
  expect(res.body, where(w)).toEqual({
    error: { code, message: expect.any(String), requestId: res.headers.get("X-Request-Id") },
  });
}

/** Compares a decision answer with the model's verdict, plus the invariants every decision must keep. */
function expectDecision(w: World, res: Res, v: Verdict, okStatus: number, product: Product) {
  expect(res.status, `${where(w)}\n${JSON.stringify(res.body)}`).toBe(v.allowed ? okStatus : 429);
  expect(decisionOf(res.body), where(w)).toEqual(verdictJson(v, w.ref.now));
  if (res.status === 429)
    expect(res.headers.get("Retry-After"), where(w)).toBe(String(res.body.retryAfterSeconds ?? 60));
  if (v.allowed) {
    for (const s of res.body.sources) {
      expect(s.amount, where(w)).toBeGreaterThan(0);
      if (s.layer !== "grant") continue;
      // never from an expired grant, nor from a grant limited to another product
      const g = w.ref.grants.find((x) => x.id === s.grantId)!;
      expect(g.expiresAt === null || g.expiresAt > w.ref.now, `${where(w)}\nspent expired grant ${s.grantId}`).toBe(
        true,
      );
      expect(
        g.products === null || g.products.includes(product),
        `${where(w)}\ngrant ${s.grantId} is not for ${product}`,
      ).toBe(true);
    }
  }
}

/** After each step: the real summary equals the model's, and the invariants hold on the real answer itself. */
async function verify(w: World, shown?: any) {
  w.ref.housekeep();
  let a = shown;
  if (!a) {
    const g = await call("GET", `/v1/accounts/${w.id}`, undefined, { now: w.ref.now });
    expect(g.status, where(w)).toBe(200);
    a = g.body;
  }
  expect(projectSummary(a), where(w)).toEqual(w.ref.summary());
  expect(a.credits.balance).toBeGreaterThanOrEqual(0);
  for (const g of a.credits.grants) {
    expect(g.remaining, where(w)).toBeGreaterThan(0);
    if (g.expiresAt !== null) expect(Date.parse(g.expiresAt), where(w)).toBeGreaterThan(w.ref.now);
  }
  for (const h of a.holds) expect(h.amount).toBeGreaterThan(0);
  for (const p of ["codex", "sora"] as Product[])
    for (const k of ["fiveHour", "weekly"] as const) {
      const v = a.products[p][k];
      expect(v.used).toBeGreaterThanOrEqual(0);
      const before = w.prevUsed.get(`${p}.${k}`) ?? 0;
      // above the limit only after a plan downgrade, and then no charge adds to it
      if (v.used > v.limit)
        expect(v.used, `${where(w)}\n${p} ${k} window charged above its limit`).toBeLessThanOrEqual(before);
      w.prevUsed.set(`${p}.${k}`, v.used);
    }
}

// ───────────────────────────── commands ─────────────────────────────

type Usage = { model: string } & Record<string, number | string>;

abstract class Step implements fc.AsyncCommand<World, World> {
  constructor(readonly dt: number) {}
  check(): boolean {
    return true;
  }
  abstract label(): string;
  /** performs the step; returns the account summary the answer carried, if it carried a fresh one */
  abstract exec(w: World): Promise<any>;
  async run(w: World): Promise<void> {
    w.step++;
    w.outcome = "";
    const next = w.ref.now + this.dt;
    w.ref.now = next <= w.end ? next : w.ref.now + SEC;
    w.log.push(`#${w.step} @+${Math.round((w.ref.now - w.end + SPAN) / SEC)}s ${this.label()}`);
    const shown = await this.exec(w);
    count(`${this.constructor.name} ${w.outcome}`);
    await verify(w, shown);
  }
  toString(): string {
    return `${this.label()} +${this.dt / SEC}s`;
  }
}

/** A step that is one keyed request: prepared from the model's state, then checked by its interpreter. */
abstract class Keyed1 extends Step {
  abstract prepare(w: World): { req: Req; interpret: Interpret; global?: boolean };
  async exec(w: World) {
    const key = newKey(w);
    const { req, interpret, global } = this.prepare(w);
    const res = await http(w, req.method, req.path, req.body, key);
    expect(res.headers.get("Idempotent-Replayed"), where(w)).toBeNull();
    const shown = interpret(w, key, res);
    remember(w, key, req, res, interpret, { global, routeLevel: isRouteLevel(req, res) });
    return shown;
  }
}
const isRouteLevel = (req: Req, res: Res) => res.status === 404 && req.path.endsWith("/settle");

function consumeInterpret(product: Product, cost: number, usage: Usage | null): Interpret {
  return (w, key, res) => {
    const v = w.ref.consume(product, cost, key);
    w.log.push(
      `   → ${res.status} ${res.body.allowed ? JSON.stringify(res.body.sources) : (res.body.reason ?? res.body.error?.code)}`,
    );
    expectDecision(w, res, v, 200, product);
    if (v.allowed) {
      expect(res.body.cost).toBe(cost);
      if (usage) expect(res.body.rateCardVersion).toBe(RATE_CARD_VERSION);
    }
    return res.body.account;
  };
}

class Consume extends Keyed1 {
  constructor(
    readonly product: Product,
    readonly cost: number | null,
    readonly usage: Usage | null,
    dt: number,
  ) {
    super(dt);
  }
  label() {
    return `consume ${this.product} ${this.usage ? JSON.stringify(this.usage) : this.cost}`;
  }
  prepare(w: World) {
    const body = this.usage ? { product: this.product, usage: this.usage } : { product: this.product, cost: this.cost };
    const price = this.usage ? priceOf(this.product, this.usage) : this.cost!;
    return {
      req: { method: "POST" as const, path: `/v1/accounts/${w.id}/consume`, body },
      interpret: consumeInterpret(this.product, price, this.usage),
    };
  }
}

class Hold extends Keyed1 {
  constructor(
    readonly product: Product,
    readonly cost: number,
    readonly ttl: number | null,
    dt: number,
  ) {
    super(dt);
  }
  label() {
    return `hold ${this.product} ${this.cost} ttl=${this.ttl}`;
  }
  prepare(w: World) {
    const body = { product: this.product, cost: this.cost, ...(this.ttl === null ? {} : { ttlSeconds: this.ttl }) };
    const ttl = this.ttl ?? 600;
    const interpret: Interpret = (w, _key, res) => {
      const { verdict } = w.ref.createHold(() => res.body.holdId, this.product, this.cost, ttl);
      w.log.push(
        `   → ${res.status} ${res.body.holdId ?? ""} ${res.body.allowed === false ? res.body.reason : JSON.stringify(res.body.sources)}`,
      );
      expectDecision(w, res, verdict, 201, this.product);
      if (verdict.allowed) {
        expect(res.body.amount).toBe(this.cost);
        expect(res.body.expiresAt).toBe(iso(w.ref.now + ttl * SEC));
      }
      return res.body.account;
    };
    return { req: { method: "POST" as const, path: `/v1/accounts/${w.id}/holds`, body }, interpret };
  }
}

/** Mostly an active hold; sometimes any hold the account ever had (settled, released or expired). */
function pickHold(w: World, pick: number) {
  const all = w.ref.holds;
  const active = all.filter((h) => h.state === "active");
  if (active.length > 0 && pick % 5 !== 4) return active[pick % active.length];
  return all.length === 0 ? null : all[pick % all.length];
}

/** A refusal the model predicts; a hold pruned by the alarm (7 days after it ended) may be unknown instead. */
function expectRefusal(w: World, res: Res, e: ModelRefusal, hold: { expiresAt: number } | null) {
  if (hold && res.status === 404 && hold.expiresAt < w.ref.now - 7 * DAY) expectApiError(w, res, 404, "not_found");
  else expectApiError(w, res, e.status, e.code);
}

type SettleMode = "under" | "exact" | "over" | "way_over" | "unknown";
class Settle extends Keyed1 {
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
  prepare(w: World) {
    const hold = this.mode === "unknown" ? null : pickHold(w, this.pick);
    const holdId = hold ? hold.id : `nohold${this.pick}`;
    const amount = hold?.amount ?? C;
    const m = this.mode;
    const actual =
      m === "under"
        ? Math.max(1, amount - 1 - (this.delta % amount))
        : m === "over"
          ? amount + this.delta
          : m === "way_over"
            ? amount + 100 * C + this.delta
            : amount;
    const interpret: Interpret = (w, key, res) => {
      w.log.push(
        `   settle ${holdId} cost ${actual} → ${res.status} ${JSON.stringify(res.body.sources ?? res.body.error?.code)} off=${res.body.writtenOff}`,
      );
      try {
        const out = w.ref.settle(holdId, actual, key);
        expect(res.status, `${where(w)}\n${JSON.stringify(res.body)}`).toBe(200);
        expect(
          {
            charged: res.body.charged,
            released: res.body.released,
            writtenOff: res.body.writtenOff,
            sources: res.body.sources,
          },
          where(w),
        ).toEqual(out);
        return res.body.account;
      } catch (e) {
        if (!(e instanceof ModelRefusal)) throw e;
        expectRefusal(w, res, e, hold);
        return undefined;
      }
    };
    return {
      req: { method: "POST" as const, path: `/v1/accounts/${w.id}/holds/${holdId}/settle`, body: { cost: actual } },
      interpret,
    };
  }
}

class Release extends Keyed1 {
  constructor(
    readonly pick: number,
    dt: number,
  ) {
    super(dt);
  }
  label() {
    return `release hold#${this.pick}`;
  }
  prepare(w: World) {
    const hold = pickHold(w, this.pick);
    const holdId = hold ? hold.id : `nohold${this.pick}`;
    const interpret: Interpret = (w, _key, res) => {
      w.log.push(`   release ${holdId} → ${res.status}`);
      try {
        const released = w.ref.release(holdId);
        expect(res.status, `${where(w)}\n${JSON.stringify(res.body)}`).toBe(200);
        expect(res.body.released).toBe(released);
        return res.body.account;
      } catch (e) {
        if (!(e instanceof ModelRefusal)) throw e;
        expectRefusal(w, res, e, hold);
        return undefined;
      }
    };
    return {
      req: { method: "POST" as const, path: `/v1/accounts/${w.id}/holds/${holdId}/release`, body: undefined },
      interpret,
    };
  }
}

class AddGrant extends Keyed1 {
  constructor(
    readonly kind: GrantKind,
    readonly amount: number,
    readonly products: Product[] | null,
    readonly expiresIn: number | null,
    dt: number,
  ) {
    super(dt);
  }
  label() {
    return `grant ${this.kind} ${this.amount} ${this.products?.join("+") ?? "all"} exp=${this.expiresIn === null ? "-" : `${this.expiresIn / SEC}s`}`;
  }
  prepare(w: World) {
    const expiresAt = this.expiresIn === null ? null : w.ref.now + this.expiresIn;
    const body = {
      amount: this.amount,
      kind: this.kind,
      ...(expiresAt === null ? {} : { expiresAt: iso(expiresAt) }),
      ...(this.products ? { products: this.products } : {}),
    };
    const interpret: Interpret = (w, _key, res) => {
      expect(res.status, `${where(w)}\n${JSON.stringify(res.body)}`).toBe(201);
      w.log.push(`   → grant ${res.body.id}`);
      let exp = expiresAt;
      if (exp === null && this.kind === "purchase") {
        exp = Date.parse(res.body.expiresAt);
        // "expiring 12 months after purchase"
        expect(exp - w.ref.now).toBeGreaterThanOrEqual(365 * DAY);
        expect(exp - w.ref.now).toBeLessThanOrEqual(366 * DAY);
      }
      const g: MGrant = {
        id: res.body.id,
        kind: this.kind,
        priority: grantPriority(this.kind),
        products: this.products,
        remaining: this.amount,
        expiresAt: exp,
        createdAt: w.ref.now,
      };
      expect(res.body, where(w)).toMatchObject({
        kind: this.kind,
        priority: g.priority,
        remaining: this.amount,
        amount: this.amount,
        expiresAt: exp === null ? null : iso(exp),
        products: this.products,
      });
      w.ref.addGrant(g);
      w.grantExpiry.set(g.id, exp);
      return undefined;
    };
    return { req: { method: "POST" as const, path: `/v1/accounts/${w.id}/credits`, body }, interpret };
  }
}

class Refund extends Keyed1 {
  constructor(
    readonly amount: number,
    dt: number,
  ) {
    super(dt);
  }
  label() {
    return `admin refund ${this.amount}`;
  }
  prepare(w: World) {
    const interpret: Interpret = (w, _key, res) => {
      expect(res.status, `${where(w)}\n${JSON.stringify(res.body)}`).toBe(201);
      const exp = Date.parse(res.body.grant.expiresAt);
      expect(exp - w.ref.now).toBeGreaterThanOrEqual(365 * DAY);
      const g: MGrant = {
        id: res.body.grant.id,
        kind: "purchase",
        priority: grantPriority("purchase"),
        products: null,
        remaining: this.amount,
        expiresAt: exp,
        createdAt: w.ref.now,
      };
      w.ref.addGrant(g);
      w.grantExpiry.set(g.id, exp);
      return res.body.account;
    };
    return {
      req: {
        method: "POST" as const,
        path: `/v1/admin/accounts/${w.id}/refunds`,
        body: { amount: this.amount, reason: "model test refund" },
      },
      interpret,
    };
  }
}

class SetPlan extends Keyed1 {
  constructor(
    readonly plan: PlanId,
    dt: number,
  ) {
    super(dt);
  }
  label() {
    return `plan ${this.plan}`;
  }
  prepare(w: World) {
    const interpret: Interpret = (w, _key, res) => {
      expect(res.status, `${where(w)}\n${JSON.stringify(res.body)}`).toBe(200);
      w.ref.setPlan(this.plan);
      return res.body;
    };
    return { req: { method: "PUT" as const, path: `/v1/accounts/${w.id}/plan`, body: { plan: this.plan } }, interpret };
  }
}

class SpendCap extends Keyed1 {
  constructor(
    readonly limit: number | null,
    dt: number,
  ) {
    super(dt);
  }
  label() {
    return `spend-cap ${this.limit}`;
  }
  prepare(w: World) {
    const interpret: Interpret = (w, _key, res) => {
      expect(res.status, `${where(w)}\n${JSON.stringify(res.body)}`).toBe(200);
      w.ref.setSpendCap(this.limit);
      return res.body;
    };
    return {
      req: { method: "PUT" as const, path: `/v1/accounts/${w.id}/spend-cap`, body: { dailyLimit: this.limit } },
      interpret,
    };
  }
}

class Resume extends Keyed1 {
  label() {
    return "admin resume";
  }
  prepare(w: World) {
    const interpret: Interpret = (w, _key, res) => {
      expect(res.status, `${where(w)}\n${JSON.stringify(res.body)}`).toBe(200);
      expect(res.body.resumed).toBe(w.ref.resume());
      return res.body.account;
    };
    return { req: { method: "POST" as const, path: `/v1/admin/accounts/${w.id}/resume`, body: undefined }, interpret };
  }
}

class Redeem extends Keyed1 {
  constructor(
    readonly product: Product,
    dt: number,
  ) {
    super(dt);
  }
  label() {
    return `redeem banked reset ${this.product}`;
  }
  prepare(w: World) {
    const interpret: Interpret = (w, _key, res) => {
      w.log.push(`   → ${res.status} ${res.body.error?.code ?? ""}`);
      try {
        w.ref.redeem(this.product);
        expect(res.status, `${where(w)}\n${JSON.stringify(res.body)}`).toBe(200);
        expect(res.body.bankedResets.available).toBe(w.ref.availableBanked().length);
        return res.body.account;
      } catch (e) {
        if (!(e instanceof ModelRefusal)) throw e;
        expectApiError(w, res, e.status, e.code);
        return undefined;
      }
    };
    return {
      req: { method: "POST" as const, path: `/v1/accounts/${w.id}/resets`, body: { product: this.product } },
      interpret,
    };
  }
}

class AdminReset extends Keyed1 {
  constructor(
    readonly reset: GlobalReset,
    dt: number,
  ) {
    super(dt);
  }
  label() {
    return `admin global reset ${JSON.stringify(this.reset)}`;
  }
  prepare() {
    const r = this.reset;
    const scope =
      r.products || r.plans
        ? { ...(r.products ? { products: r.products } : {}), ...(r.plans ? { plans: r.plans } : {}) }
        : undefined;
    const body = {
      reason: "model test",
      ...(scope ? { scope } : {}),
      ...(r.bankedResets === "restore" ? { bankedResets: "restore" } : {}),
      ...(r.bonus ? { grantBankedResets: r.bonus } : {}),
    };
    const interpret: Interpret = (w, _key, res) => {
      expect(res.status, `${where(w)}\n${JSON.stringify(res.body)}`).toBe(200);
      expect(res.body.effectiveAt).toBe(iso(w.ref.now));
      w.ref.globalReset(this.reset);
      return undefined;
    };
    return { req: { method: "POST" as const, path: "/v1/admin/resets", body }, interpret, global: true };
  }
}

class Advance extends Step {
  label() {
    return `advance ${this.dt / SEC}s`;
  }
  async exec() {
    return undefined;
  }
  toString() {
    return this.label();
  }
}

/** The account object is evicted: the next request meets an instance rebuilt from storage. */
class Evict extends Step {
  label() {
    return "evict";
  }
  async exec(w: World) {
    // only a running object can be evicted
    await runInDurableObject(stubFor(w.id), () => undefined);
    await evictDurableObject(stubFor(w.id));
    faultTally.evictions++;
    return undefined;
  }
}

/** Re-sends an earlier keyed request with the same payload (keys in another order, other spacing). */
class Replay extends Step {
  constructor(
    readonly pick: number,
    dt: number,
  ) {
    super(dt);
  }
  label() {
    return `replay #${this.pick}`;
  }
  async exec(w: World) {
    const fresh = w.keyed.filter((k) => k.at >= w.ref.now - REPLAY_HORIZON);
    if (fresh.length === 0) return undefined;
    const k = fresh[this.pick % fresh.length];
    w.log.push(`   replaying ${k.req.method} ${k.req.path} key ${k.key} (first answer ${k.status})`);
    const raw = k.req.body === undefined ? undefined : reordered(k.req.body);
    const res = await http(w, k.req.method, k.req.path, k.req.body, k.key, raw);
    const replayed = res.headers.get("Idempotent-Replayed") === "true";
    if (replayed) {
      expectSameAnswer(w, res, k);
      if (!k.success) notePolicy(w, k.status, "kept");
      return undefined;
    }
    expect(k.success, `${where(w)}\na kept ${k.status} answer was not replayed: ${JSON.stringify(res.body)}`).toBe(
      false,
    );
    // a replayed denial without the header would carry the first decision's id
    if (k.status === 429)
      expect(res.body.decisionId, `${where(w)}\ndenial replayed without Idempotent-Replayed: true`).not.toBe(
        k.resBody.decisionId,
      );
    // decided afresh: check it as a new call (a refusal replayed without the header shows up as a model mismatch here)
    try {
      const trial: World = {
        ...w,
        ref: w.ref.clone(),
        log: [...w.log],
        grantExpiry: new Map(w.grantExpiry),
        prevUsed: new Map(w.prevUsed),
      };
      trial.ref.now = w.ref.now;
      k.interpret(trial, k.key, res);
    } catch (e) {
      if (k.status !== 429 && res.status === k.status && res.body?.error?.code === k.resBody.error?.code)
        throw new Error(
          `${where(w)}\nthe ${k.status} ${k.resBody.error.code} answer was replayed without Idempotent-Replayed: true (a fresh decision would differ: ${(e as Error).message.split("\n").at(-1)})`,
        );
      throw e;
    }
    const shown = k.interpret(w, k.key, res);
    if (!k.routeLevel) notePolicy(w, k.status, "decided again");
    remember(w, k.key, k.req, res, k.interpret, { routeLevel: isRouteLevel(k.req, res), global: k.global });
    return shown;
  }
}

function expectSameAnswer(w: World, res: Res, k: Keyed) {
  expect(res.status, `${where(w)}\n${JSON.stringify(res.body)}`).toBe(k.status);
  if (k.status >= 400 && k.status !== 429) {
    // a replayed refusal: the same error, under this request's id
    expect(res.body, where(w)).toEqual({ error: { ...k.resBody.error, requestId: res.headers.get("X-Request-Id") } });
  } else expect(res.body, `${where(w)}\nreplayed body differs`).toEqual(k.resBody);
}

/** The same key with another payload: 409 idempotency_conflict, and nothing changes. */
class Conflict extends Step {
  constructor(
    readonly pick: number,
    readonly otherRoute: boolean,
    dt: number,
  ) {
    super(dt);
  }
  label() {
    return `conflict #${this.pick}${this.otherRoute ? " (other route)" : ""}`;
  }
  async exec(w: World) {
    const kept = w.keyed.filter(
      (k) =>
        (k.success || (keepPolicy[category(k.status)] === "kept" && !k.routeLevel)) &&
        k.at >= w.ref.now - REPLAY_HORIZON,
    );
    if (kept.length === 0) return undefined;
    const k = kept[this.pick % kept.length];
    let method: string = k.req.method;
    let path = k.req.path;
    let body: unknown;
    if (this.otherRoute && !k.global) {
      method = "POST";
      path = `/v1/accounts/${w.id}/consume`;
      body = path === k.req.path ? { product: "sora", cost: 7 } : { product: "codex", cost: 7 };
    } else body = mutated(k.req.body);
    const res = await http(w, method, path, body, k.key);
    w.log.push(`   conflicting ${method} ${path} ${JSON.stringify(body)} key ${k.key} → ${res.status}`);
    expectApiError(w, res, 409, "idempotency_conflict");
    return undefined;
  }
}

/** k identical consumes at once, each with its own key: some serial order of k model decisions. */
class Burst extends Step {
  constructor(
    readonly product: Product,
    readonly cost: number,
    readonly k: number,
    dt: number,
  ) {
    super(dt);
  }
  label() {
    return `burst ${this.k}× consume ${this.product} ${this.cost}`;
  }
  async exec(w: World) {
    const req: Req = {
      method: "POST",
      path: `/v1/accounts/${w.id}/consume`,
      body: { product: this.product, cost: this.cost },
    };
    const keys = Array.from({ length: this.k }, () => newKey(w));
    const res = await Promise.all(keys.map((key) => http(w, req.method, req.path, req.body, key)));
    const tmp = keys.map((_, i) => `burst-tmp-${i}`);
    const verdicts = tmp.map((t) => w.ref.consume(this.product, this.cost, t));
    const canon = (x: unknown) => JSON.stringify(x);
    const expected = verdicts.map((v) => canon(verdictJson(v, w.ref.now)));
    const got = res.map((r) => canon(decisionOf(r.body)));
    w.log.push(`   → ${res.map((r) => r.status).join(",")}`);
    expect([...got].sort(), where(w)).toEqual([...expected].sort());
    for (const r of res) expect(r.status).toBe(r.body.allowed ? 200 : 429);
    // attribute the model's charges to the real keys, by matching decisions
    const used = new Set<number>();
    tmp.forEach((t, i) => {
      const j = got.findIndex((g, jj) => !used.has(jj) && g === expected[i]);
      used.add(j);
      const charged = w.ref.chargedByKey.get(t);
      w.ref.chargedByKey.delete(t);
      if (charged !== undefined) w.ref.chargedByKey.set(keys[j], charged);
    });
    for (const [i, key] of keys.entries())
      remember(w, key, req, res[i], consumeInterpret(this.product, this.cost, null));
    return undefined;
  }
}

/** n copies of one request with one key, at once: exactly one effect. */
class ConcurrentDuplicate extends Step {
  constructor(
    readonly product: Product,
    readonly cost: number,
    readonly n: number,
    dt: number,
  ) {
    super(dt);
  }
  label() {
    return `${this.n}× concurrent duplicate consume ${this.product} ${this.cost}`;
  }
  async exec(w: World) {
    const key = newKey(w);
    const req: Req = {
      method: "POST",
      path: `/v1/accounts/${w.id}/consume`,
      body: { product: this.product, cost: this.cost },
    };
    const res = await Promise.all(Array.from({ length: this.n }, () => http(w, req.method, req.path, req.body, key)));
    w.log.push(
      `   → ${res.map((r) => `${r.status}${r.headers.get("Idempotent-Replayed") ? "(replay)" : ""}`).join(",")}`,
    );
    const fresh = res.filter((r) => r.headers.get("Idempotent-Replayed") !== "true");
    const replays = res.filter((r) => r.headers.get("Idempotent-Replayed") === "true");
    expect(fresh.length, where(w)).toBeGreaterThanOrEqual(1);
    // each copy decided afresh is one model decision; an allowed one is kept, so there is exactly one of those
    const verdicts = fresh.map(() => w.ref.consume(this.product, this.cost, key));
    expect(fresh.map((r) => JSON.stringify(decisionOf(r.body))).sort(), where(w)).toEqual(
      verdicts.map((v) => JSON.stringify(verdictJson(v, w.ref.now))).sort(),
    );
    if (verdicts[0].allowed) expect(fresh.length, `${where(w)}\nan allowed consume took effect more than once`).toBe(1);
    for (const r of replays) {
      expect(r.status).toBe(fresh[0].status);
      expect(r.body, `${where(w)}\nduplicates must get the one answer`).toEqual(fresh[0].body);
    }
    if (!verdicts[0].allowed && replays.length > 0) notePolicy(w, 429, "kept");
    if (!verdicts[0].allowed && fresh.length > 1) notePolicy(w, 429, "decided again");
    remember(w, key, req, fresh[0], consumeInterpret(this.product, this.cost, null));
    return undefined;
  }
}

/** JSON text of the same value with object keys reversed and extra spacing: the same payload to the fingerprint. */
function reordered(v: unknown): string {
  const walk = (x: unknown): string => {
    if (Array.isArray(x)) return `[ ${x.map(walk).join(" , ")} ]`;
    if (x && typeof x === "object")
      return `{ ${Object.keys(x)
        .reverse()
        .map((k) => `${JSON.stringify(k)} : ${walk((x as Record<string, unknown>)[k])}`)
        .join(" ,\n ")} }`;
    return JSON.stringify(x);
  };
  return walk(v);
}

/** A different, still valid payload for the same route. */
function mutated(body: unknown): unknown {
  if (body === undefined) return {};
  const b = { ...(body as Record<string, any>) };
  if (typeof b.cost === "number") b.cost += 1;
  else if (typeof b.amount === "number") b.amount += 1;
  else if ("usage" in b) return { product: b.product, cost: 1 };
  else if (typeof b.plan === "string") b.plan = b.plan === "go" ? "plus" : "go";
  else if ("dailyLimit" in b) b.dailyLimit = b.dailyLimit === null ? C : b.dailyLimit + 1;
  else if (typeof b.product === "string") b.product = b.product === "codex" ? "sora" : "codex";
  else if (typeof b.reason === "string") b.reason += " (changed)";
  return b;
}

// ───────────────────────────── generators ─────────────────────────────

const { product, dt, cost, usage, amount, products, expiresIn, bigJump } = gen;

const stepArb: fc.Arbitrary<Step> = fc.oneof(
  { weight: 6, arbitrary: fc.tuple(product, cost, dt).map(([p, c, d]) => new Consume(p, c, null, d)) },
  { weight: 2, arbitrary: fc.tuple(usage, dt).map(([u, d]) => new Consume(u.product, null, u.usage, d)) },
  {
    weight: 4,
    arbitrary: fc
      .tuple(product, cost, fc.constantFrom(null, 600, 3600, 3600, 60, 1), dt)
      .map(([p, c, t, d]) => new Hold(p, c, t, d)),
  },
  {
    weight: 4,
    arbitrary: fc
      .tuple(
        fc.nat(),
        fc.constantFrom<SettleMode>("under", "under", "exact", "over", "over", "way_over", "unknown"),
        fc.integer({ min: 1, max: 5 * C }),
        dt,
      )
      .map(([i, m, x, d]) => new Settle(i, m, x, d)),
  },
  { weight: 2, arbitrary: fc.tuple(fc.nat(), dt).map(([i, d]) => new Release(i, d)) },
  {
    weight: 4,
    arbitrary: fc
      .tuple(
        fc.constantFrom<GrantKind>("purchase", "promo", "entitlement"),
        amount,
        products,
        fc.option(expiresIn, { nil: null }),
        expiresIn,
        dt,
      )
      .map(([k, a, ps, e, promoExp, d]) => new AddGrant(k, a, ps, k === "promo" ? (e ?? promoExp) : e, d)),
  },
  { weight: 1, arbitrary: fc.tuple(amount, dt).map(([a, d]) => new Refund(a, d)) },
  {
    weight: 1,
    arbitrary: fc.tuple(fc.constantFrom<PlanId>(...(PLANS as PlanId[])), dt).map(([p, d]) => new SetPlan(p, d)),
  },
  {
    weight: 1,
    arbitrary: fc
      .tuple(fc.option(fc.integer({ min: 1, max: 30 * C }), { nil: null }), dt)
      .map(([l, d]) => new SpendCap(l, d)),
  },
  { weight: 1, arbitrary: dt.map((d) => new Resume(d)) },
  { weight: 2, arbitrary: fc.tuple(product, dt).map(([p, d]) => new Redeem(p, d)) },
  {
    weight: 1,
    arbitrary: fc
      .tuple(
        fc.option(fc.constantFrom<Product[]>(["codex"], ["sora"], ["codex", "sora"]), { nil: undefined }),
        fc.option(fc.subarray(PLANS as PlanId[], { minLength: 1 }), { nil: undefined }),
        fc.constantFrom<"keep" | "restore">("keep", "restore"),
        fc.option(
          fc.record({ count: fc.integer({ min: 1, max: 3 }), expiresInHours: fc.integer({ min: 1, max: 400 }) }),
          { nil: undefined },
        ),
        dt,
      )
      .map(([ps, pl, b, bonus, d]) => new AdminReset({ products: ps, plans: pl, bankedResets: b, bonus }, d)),
  },
  { weight: 2, arbitrary: bigJump.map((d) => new Advance(d)) },
  { weight: 1, arbitrary: dt.map((d) => new Evict(d)) },
  { weight: 2, arbitrary: fc.tuple(fc.nat(), dt).map(([i, d]) => new Replay(i, d)) },
  { weight: 1, arbitrary: fc.tuple(fc.nat(), fc.boolean(), dt).map(([i, o, d]) => new Conflict(i, o, d)) },
  {
    weight: 2,
    arbitrary: fc.tuple(product, cost, fc.integer({ min: 2, max: 4 }), dt).map(([p, c, k, d]) => new Burst(p, c, k, d)),
  },
  {
    weight: 1,
    arbitrary: fc
      .tuple(product, cost, fc.integer({ min: 2, max: 3 }), dt)
      .map(([p, c, n, d]) => new ConcurrentDuplicate(p, c, n, d)),
  },
);

const runArb = fc.record({
  plan: fc.constantFrom<PlanId>(...(PLANS as PlanId[])),
  startOffset: fc.integer({ min: 0, max: 40 * 86_400 }).map((s) => s * SEC),
  steps: fc.array(stepArb, { minLength: STEPS, maxLength: STEPS }),
});

// ───────────────────────────── settlement of a sequence ─────────────────────────────

function stubFor(id: string): DurableObjectStub<AccountDO> {
  return env.ACCOUNT.get(env.ACCOUNT.idFromName(id)) as DurableObjectStub<AccountDO>;
}

/** What the object keeps in memory: its snapshot (grants in id order: their order in the snapshot carries no meaning). */
function memoryView(o: AccountDO) {
  const state = (o as unknown as { state(): AccountState }).state();
  return { ...state, grants: [...state.grants].sort((a, b) => (a.id < b.id ? -1 : 1)) };
}

/**
 * The account object keeps its state in memory for its lifetime. After a sequence, that copy must equal
 * what a restarted object (a new instance over the same storage) loads from SQLite: nothing was changed in
 * memory only, and nothing rolled back stayed in memory.
 */
async function expectMemoryMatchesStorage(w: World) {
  await runInDurableObject(stubFor(w.id), (instance: AccountDO, state) => {
    const restarted = new AccountDO(state, env);
    expect(memoryView(restarted), `${where(w)}\nin-memory state differs from storage`).toEqual(memoryView(instance));
  });
}

const faultTally = { sends: 0, dropped: 0, batches: 0, thrown: 0, evictions: 0 };

/**
 * Sends every instance's journal to this test instead of the queue, so the real consumer can be run right away; a
 * random 30% of sends resolve and deliver nothing (the sender fault). Set for the whole run through the fault point,
 * so an instance rebuilt after an eviction captures too.
 */
function captureJournals(current: () => World, rng: () => number): Sender {
  return {
    sendBatch: async (msgs: Iterable<MessageSendRequest<SettlementMessage>>) => {
      faultTally.sends++;
      if (rng() < 0.3) faultTally.dropped++;
      else for (const m of msgs) current().captured.push(JSON.parse(JSON.stringify(m.body)) as SettlementMessage);
      return { metadata: { metrics: { backlogCount: 0, backlogBytes: 0 } } };
    },
  };
}

/** The consumer fault: a random 20% of batches throw, half before the D1 write and half after it. */
function failingConsumer(rng: () => number): NonNullable<typeof faultPoints.consumer> {
  const failing = new WeakMap<object, "before" | "after">();
  return (batch, stage) => {
    if (stage === "before") {
      faultTally.batches++;
      if (rng() < 0.2) failing.set(batch, rng() < 0.5 ? "before" : "after");
    }
    if (failing.get(batch) === stage) {
      faultTally.thrown++;
      throw new Error(`injected: consumer fails ${stage} its write`);
    }
  };
}

async function captureOutbox(w: World, sender: Sender) {
  await runInDurableObject(stubFor(w.id), (instance: AccountDO) => {
    instance.settlement = sender;
  });
}

/**
 * Drains the outbox into D1 through the real consumer (every batch delivered twice, as a queue may),
 * then checks the ledger against the model and asks reconciliation for this account.
 */
async function settleAndReconcile(w: World) {
  const stub = stubFor(w.id);
  await runInDurableObject(stub, (instance: AccountDO) => instance.flushOutbox());
  const journal = () =>
    runInDurableObject(stub, (_i: AccountDO, state) => {
      const sql = state.storage.sql;
      return {
        confirmed: sql.exec<{ n: number }>("SELECT confirmed AS n FROM settlement").one().n,
        lastSeq: sql.exec<{ n: number }>("SELECT journal_seq AS n FROM account").one().n,
        messages: journalIn(sql),
      };
    });
  // faults on: deliver what arrived, let the object's settlement check learn the watermark and send again what was
  // lost, until it has confirmed its whole journal
  let box = await journal();
  // every journal message the object wrote (nothing is confirmed yet, so nothing was pruned: the checks below may
  // prune)
  const written = box.messages;
  for (let round = 0; round < 40 && box.confirmed < box.lastSeq; round++) {
    await deliverCaptured(w);
    await runDurableObjectAlarm(stub);
    box = await journal();
  }
  expect(box.confirmed, `${where(w)}\nthe object never confirmed its journal`).toBe(box.lastSeq);
  const ledger = ledgerFor(env, w.id);
  const head = await ledger
    .prepare("SELECT watermark FROM ledger_heads WHERE account_id = ?")
    .bind(w.id)
    .first<{ watermark: number }>();
  expect(head?.watermark ?? 0, where(w)).toBe(box.lastSeq);
  const { results: rows } = await ledger
    .prepare(
      "SELECT id, kind, amount, layer, grant_id, decision_id, hold_id, idempotency_key, created_at, usage_count FROM ledger WHERE account_id = ?",
    )
    .bind(w.id)
    .all<{
      id: string;
      kind: string;
      amount: number;
      layer: string | null;
      grant_id: string | null;
      decision_id: string | null;
      hold_id: string | null;
      idempotency_key: string | null;
      created_at: number;
      usage_count: number | null;
    }>();
  // every entry the object wrote, exactly once: money entries row by row, window charges summed into their hour's
  // usage rollup (amount and count), window holds and releases not in D1
  const view = ledgerView(written);
  expect(rows.map((r) => r.id).sort(), where(w)).toEqual([...view.keys()].sort());
  for (const r of rows)
    expect({ kind: r.kind, amount: r.amount, count: r.usage_count ?? 1 }, `${where(w)}\n${r.id}`).toEqual(
      view.get(r.id),
    );
  const charged = rows.filter((r) => r.kind === "charge" || r.kind === "usage");
  expect(
    charged.reduce((s, r) => s + r.amount, 0),
    `${where(w)}\nΣ charges in D1 vs the model`,
  ).toBe(w.ref.chargedTotal);
  // per key, over the journal's charges (D1 holds exactly what they settle into, above; a usage rollup has no key):
  // the model's charges, and all of them from one decision or one hold
  const charges = written.flatMap((m) => (m.type === "ledger" && m.entry.kind === "charge" ? [m.entry] : []));
  const byKey = new Map<string, { sum: number; origins: Set<string> }>();
  for (const e of charges) {
    expect(e.idempotencyKey ?? null, "every charge traces to a request key").not.toBeNull();
    const k = byKey.get(e.idempotencyKey!) ?? { sum: 0, origins: new Set<string>() };
    k.sum += e.amount;
    k.origins.add(e.decisionId ?? `hold:${e.holdId}`);
    byKey.set(e.idempotencyKey!, k);
  }
  const modelKeys = [...w.ref.chargedByKey].filter(([, v]) => v > 0);
  expect([...byKey].map(([k, v]) => [k, v.sum]).sort(), `${where(w)}\ncharges per Idempotency-Key`).toEqual(
    modelKeys.sort(),
  );
  for (const [k, v] of byKey) expect(v.origins.size, `key ${k} charged by more than one decision`).toBe(1);
  // no grant drawn at or after its expiry (a hold's own reservation may be settled after it)
  const reserved = new Map<string, number>();
  for (const r of rows)
    if (r.kind === "hold" && r.layer === "grant")
      reserved.set(`${r.hold_id}:${r.grant_id}`, (reserved.get(`${r.hold_id}:${r.grant_id}`) ?? 0) + r.amount);
  for (const r of rows) {
    if (r.layer !== "grant" || (r.kind !== "charge" && r.kind !== "hold")) continue;
    const exp = w.grantExpiry.get(r.grant_id!);
    expect(exp, `unknown grant ${r.grant_id}`).not.toBeUndefined();
    if (exp === null || r.created_at < exp!) continue;
    expect(
      r.kind === "charge" && r.hold_id !== null && r.amount <= (reserved.get(`${r.hold_id}:${r.grant_id}`) ?? 0),
      `${where(w)}\nexpired grant ${r.grant_id} spent: ${JSON.stringify(r)}`,
    ).toBe(true);
  }
  // hand the object back to the real queue for whatever its alarms write later (expiries), then reconcile;
  // an alarm that fired meanwhile wrote to the capture, so that is delivered too before asking again
  await runInDurableObject(stub, (instance: AccountDO) => {
    instance.settlement = settlementQueueFor(env, w.id);
  });
  let rec = await call("GET", `/v1/admin/reconciliation?accountId=${w.id}`, undefined, { token: ADMIN });
  // entries an alarm wrote meanwhile are in flight (not drift) until they arrive
  for (let i = 0; i < 10 && (rec.body.drifted?.length || rec.body.inFlight?.length); i++) {
    await deliverCaptured(w);
    await new Promise((r) => setTimeout(r, 300));
    rec = await call("GET", `/v1/admin/reconciliation?accountId=${w.id}`, undefined, { token: ADMIN });
  }
  expect(rec.status).toBe(200);
  expect(rec.body, where(w)).toEqual({ checked: 1, drifted: [], inFlight: [], nextCursor: null });
}

/**
 * Runs the real queue consumer on every captured journal entry not yet delivered (ledger entries and events: they
 * share the sequence the ledger's watermark follows), one entry a message, each batch twice (a redelivery, the
 * second in reverse order).
 */
async function deliverCaptured(w: World) {
  const entries: SettlementMessage[] = [
    ...w.redeliver.splice(0),
    ...w.captured
      .slice(w.delivered)
      .flatMap((m) => m.entries.map((e) => ({ accountId: m.accountId, floor: m.floor, entries: [e] }))),
  ];
  w.delivered = w.captured.length;
  for (let i = 0; i < entries.length; i += 40) {
    const chunk = entries.slice(i, i + 40);
    for (const copy of [0, 1]) {
      const batch = createMessageBatch<SettlementMessage>(
        "settlement",
        (copy ? [...chunk].reverse() : chunk).map((body, j) => ({
          id: `m${copy}-${w.delivered}-${i + j}`,
          timestamp: new Date(),
          attempts: 1 + copy,
          body,
        })),
      );
      try {
        await settleBatch(batch, env);
      } catch {
        // the consumer fault: the queue delivers the whole batch again later
        w.redeliver.push(...chunk);
      }
    }
  }
}

// ───────────────────────────── the test ─────────────────────────────

describe("model-based: the account engine agrees with a reference model", () => {
  const accounts: string[] = [];
  /** sequences that ran to the end and were settled and reconciled */
  let settled = 0;

  it(`${RUNS} random sequences of ${STEPS} steps (seed ${SEED}), settlement faults on`, async () => {
    const started = Date.now();
    faultPoints.consumer = failingConsumer(mulberry32(SEED ^ 0xc0de));
    try {
      await runSequences();
    } finally {
      faultPoints.sender = undefined;
      faultPoints.consumer = undefined;
    }
    // the faults really fired
    expect(faultTally.dropped, JSON.stringify(faultTally)).toBeGreaterThan(0);
    expect(faultTally.thrown, JSON.stringify(faultTally)).toBeGreaterThan(0);
    expect(stats.get("Evict ") ?? 0, "evictions").toBeGreaterThan(0);
    console.log(JSON.stringify({ event: "model.faults", ...faultTally }));
    console.log(
      JSON.stringify({ event: "model.done", runs: RUNS, steps: STEPS, seed: SEED, ms: Date.now() - started }),
    );
    console.log(
      `Idempotency-Key answers: ${JSON.stringify(keepPolicy)}\n${[...stats]
        .sort()
        .map(([k, v]) => `${v}\t${k}`)
        .join("\n")}`,
    );
  }, 1_800_000);

  async function runSequences() {
    let current: World | null = null;
    const sender = captureJournals(() => current!, mulberry32(SEED ^ 0x5e4d));
    faultPoints.sender = () => sender;
    await fc.assert(
      fc.asyncProperty(runArb, async (run) => {
        // each sequence in its own year: global resets of earlier sequences all predate this account
        const year0 = Date.UTC(2030 + runCounter++, 0, 1);
        const start = year0 + run.startOffset;
        const w: World = {
          ref: new RefModel(start, run.plan),
          id: uid("model"),
          end: year0 + SPAN,
          keyed: [],
          log: [`start ${iso(start)} plan ${run.plan}`],
          captured: [],
          delivered: 0,
          redeliver: [],
          step: 0,
          prevUsed: new Map(),
          grantExpiry: new Map(),
          outcome: "",
        };
        accounts.push(w.id);
        current = w;
        await captureOutbox(w, sender);
        // the first write creates the account, on the run's plan
        const created = await http(w, "PUT", `/v1/accounts/${w.id}/plan`, { plan: run.plan }, newKey(w));
        expect(created.status, JSON.stringify(created.body)).toBe(200);
        await verify(w, created.body);
        await fc.asyncModelRun(() => ({ model: w, real: w }), run.steps);
        await expectMemoryMatchesStorage(w);
        await settleAndReconcile(w);
        settled++;
      }),
      { seed: SEED, numRuns: RUNS, endOnFailure: !SHRINK, ...(PATH ? { path: PATH } : {}) },
    );
  }

  it("afterwards, reconciliation over every account of this file reports zero drift", async () => {
    // alarms (expiries) may still be writing through the real queue: wait for what is in flight
    const deadline = Date.now() + 20_000;
    let rec = await call("GET", "/v1/admin/reconciliation?limit=1000", undefined, { token: ADMIN });
    while (rec.body.drifted?.length && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 500));
      rec = await call("GET", "/v1/admin/reconciliation?limit=1000", undefined, { token: ADMIN });
    }
    expect(rec.status).toBe(200);
    expect(rec.body.checked).toBeGreaterThanOrEqual(Math.min(settled, 1000));
    expect(rec.body.drifted).toEqual([]);
  }, 120_000);
});

// A fault the model found (seed 7, 150-step sequences): kept here as a plain, deterministic test.
describe("found by the model: replaying a settle whose hold was pruned", () => {
  it("a settle refused as hold_not_active is replayed as such under its key, even after the alarm pruned the finished hold", async () => {
    const id = uid("prune");
    const t0 = Date.UTC(2029, 0, 10);
    const hold = await call(
      "POST",
      `/v1/accounts/${id}/holds`,
      { product: "codex", cost: C / 2, ttlSeconds: 60 },
      { now: t0 },
    );
    expect(hold.status).toBe(201);
    // 8 days later the hold has long expired: the settle is refused, and the refusal is kept under its key (SPEC §4)
    const later = t0 + 8 * DAY;
    const key = uid("settle-key");
    const path = `/v1/accounts/${id}/holds/${hold.body.holdId}/settle`;
    const first = await call("POST", path, { cost: C / 4 }, { key, now: later });
    expect(first.status).toBe(409);
    expect(first.body.error.code).toBe("hold_not_active");
    // any later read moves the object's clock; its alarm then prunes holds that ended more than 7 days ago
    // (the key itself is kept 48 h)
    expect((await call("GET", `/v1/accounts/${id}`, undefined, { now: later })).status).toBe(200);
    await runInDurableObject(stubFor(id), (instance: AccountDO) => instance.alarm());
    const pruned = await runInDurableObject(
      stubFor(id),
      (_i: AccountDO, state) => state.storage.sql.exec("SELECT id FROM holds").toArray().length,
    );
    expect(pruned, "the finished hold was pruned").toBe(0);
    const again = await call("POST", path, { cost: C / 4 }, { key, now: later + 60_000 });
    expect(
      { status: again.status, code: again.body.error?.code, replayed: again.headers.get("Idempotent-Replayed") },
      "same key, same payload, a few seconds later",
    ).toEqual({
      status: 409,
      code: "hold_not_active",
      replayed: "true",
    });
    // and the same key with another payload is still a conflict, not "no such hold"
    const other = await call("POST", path, { cost: C / 5 }, { key, now: later + 60_000 });
    expect(other.status).toBe(409);
    expect(other.body.error.code).toBe("idempotency_conflict");
  });
});

// sanity of the model's own catalog against the live one, so a catalog change shows up here first
describe("the reference model's catalog", () => {
  it("matches GET /v1/catalog", async () => {
    const res = await call("GET", "/v1/catalog");
    expect(res.status).toBe(200);
    for (const plan of res.body.plans) {
      for (const p of ["codex", "sora"] as Product[]) {
        expect(plan.windows[p].fiveHour, `${plan.id} ${p}`).toBe(windowLimit(plan.id, p, "fiveHour"));
        expect(plan.windows[p].weekly, `${plan.id} ${p}`).toBe(windowLimit(plan.id, p, "weekly"));
      }
    }
    expect(res.body.rateCard.version).toBe(RATE_CARD_VERSION);
  });
});

// ───────────────────────────── organizations ─────────────────────────────

/**
 * The organizations part (issue #16 item 5, test/org-model-helpers.ts): one organization with 3–6 members, random
 * sequences of pool grants, member consumes, bursts, holds, limits, removals, closes, evictions, refunds, replays,
 * races and lease faults, with I-pool checked across the objects after every step and the ledger checked in D1 after
 * each sequence. Its own counts (VITE_MODEL_ORG_RUNS / VITE_MODEL_ORG_STEPS / VITE_MODEL_ORG_SEED / VITE_MODEL_ORG_PATH,
 * or the same names as bindings); VITE_MODEL_SHRINK=1 shrinks here too.
 */
describe("organizations", () => {
  const runs = Number(setting("MODEL_ORG_RUNS") ?? 10);
  const steps = Number(setting("MODEL_ORG_STEPS") ?? 40);
  const seed = Number(setting("MODEL_ORG_SEED") ?? SEED);
  const path = setting("MODEL_ORG_PATH");

  it(`${runs} random sequences of ${steps} steps over one organization (seed ${seed}), I-pool after every step`, async () => {
    const started = Date.now();
    await runOrgSequences({
      runs,
      steps,
      seed,
      ...(path ? { path } : {}),
      shrink: SHRINK,
      nextYear: () => 2030 + runCounter++,
    });
    console.log(JSON.stringify({ event: "model.orgs.done", runs, steps, seed, ms: Date.now() - started }));
    console.log(
      [...orgStats]
        .sort()
        .map(([k, v]) => `${v}\t${k}`)
        .join("\n"),
    );
    if (!path) expect(orgStats.get("sequences settled")).toBe(runs);
    // the sequences reached the pool, and the lease faults fired
    expect(orgStats.get("pool charges") ?? 0).toBeGreaterThan(0);
    if (runs >= 5) expect([...orgStats.keys()].filter((k) => k.startsWith("fault fired")).length).toBeGreaterThan(0);
  }, 1_200_000);
});
