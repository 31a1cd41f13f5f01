/**
 * SPEC §5 (banked and admin global resets) and the admin routes of §8.
 *
 * Storage is shared by every test in this file, and a global reset applies to every account in its scope
 * that existed at its `effectiveAt`. So each test runs in its own stretch of test-clock time (`freshBase`),
 * later than any earlier test's: a reset made by one test never reaches the accounts a later test creates,
 * and most resets are scoped (plans/products) on top of that.
 */
import { describe, expect, it } from "vitest";
import { listDurableObjectIds, runInDurableObject } from "cloudflare:test";
import { env } from "cloudflare:workers";
import type { AccountDO } from "../durable-objects/account/object";
import type { GlobalResetRequest, ResetControlDO } from "../durable-objects/reset-control";
import { currentResets, forgetCachedResets } from "../worker/resets";
import { account, ADMIN, call, consume, CREDIT, HOUR, SERVICE, setPlan, T0, uid, type CallOptions } from "./helpers";
import { sleep, stubFor } from "./settle-helpers";

const MIN = 60_000;
const DAY = 24 * HOUR;
const iso = (ms: number) => new Date(ms).toISOString();

let clock = T0;
/** A stretch of test-clock time of its own: 100 days after the previous test's. */
const freshBase = () => (clock += 100 * DAY);

const adminReset = (body: unknown, opts: CallOptions = {}) => call("POST", "/v1/admin/resets", body, opts);
const resetHistory = (opts: CallOptions = {}) => call("GET", "/v1/admin/resets?limit=500", undefined, opts);
const redeem = (id: string, product: string, now: number, opts: CallOptions = {}) =>
  call("POST", `/v1/accounts/${id}/resets`, { product }, { now, ...opts });
const spend = (id: string, credits: number, now: number, product = "codex") =>
  consume(id, { product, cost: credits * CREDIT }, { now });

function controlStub(): DurableObjectStub<ResetControlDO> {
  return env.RESET_CONTROL.get(env.RESET_CONTROL.idFromName("global")) as DurableObjectStub<ResetControlDO>;
}

/** Rows in the reset control object: one per global reset ever recorded. */
const controlRows = () =>
  runInDurableObject(
    controlStub(),
    (_i: ResetControlDO, state) => state.storage.sql.exec<{ n: number }>("SELECT COUNT(*) AS n FROM resets").one().n,
  );

const seqOf = (resetId: string) =>
  runInDurableObject(
    controlStub(),
    (_i: ResetControlDO, state) =>
      state.storage.sql.exec<{ seq: number }>("SELECT seq FROM resets WHERE reset_id = ?", resetId).one().seq,
  );

const auditCount = async () =>
  (await env.DB.prepare("SELECT COUNT(*) AS n FROM admin_resets").first<{ n: number }>())!.n;

/**
 * Fills this isolate's epoch cache (2 s for routing, 1 s on the deny path) with the epochs as they are now (the worker and the tests share the module),
 * and returns the wall-clock time it did so.
 */
async function primeEpochCache(): Promise<number> {
  forgetCachedResets(env);
  await currentResets(env);
  return Date.now();
}

/** Records a reset straight in the control object, as another isolate's admin call would: this isolate's cache stays stale. */
async function createResetElsewhere(
  req: GlobalResetRequest,
  now: number,
): Promise<{ resetId: string; effectiveAt: string }> {
  const created = await controlStub().createReset(req, {
    now,
    actor: "test",
    idempotency: { key: uid("key"), fingerprint: uid("fp") },
  });
  if (created.kind === "conflict") throw new Error("unexpected idempotency conflict");
  return created.answer;
}

/** Ids of every account object that exists, sorted. */
const accountIds = async () => (await listDurableObjectIds(env.ACCOUNT)).map((i) => i.toString()).sort();

/** What an account object has stored, read straight from its SQLite (no housekeeping runs). */
function stored(id: string) {
  return runInDurableObject(stubFor(id), (_i: AccountDO, state) => {
    const sql = state.storage.sql;
    return {
      resetSeq: sql.exec<{ reset_seq: number }>("SELECT reset_seq FROM account").one().reset_seq,
      windows: sql
        .exec(`SELECT substr(j.key, 1, instr(j.key, ':') - 1) AS product, substr(j.key, instr(j.key, ':') + 1) AS kind,
          json_extract(j.value, '$[0]') AS opened_at, json_extract(j.value, '$[1]') AS used
          FROM account, json_each(account.windows) AS j ORDER BY product, kind`)
        .toArray(),
    };
  });
}

async function ok<R extends { status: number; body: any }>(p: Promise<R>, status = 200): Promise<R> {
  const r = await p;
  expect(r.status, JSON.stringify(r.body)).toBe(status);
  return r;
}

/** A `go` account created at `t` that, at `t + 22d`, has accrued its 3 banked resets. */
async function accountWithThreeBanked(t: number): Promise<{ id: string; at: number }> {
  const id = uid();
  await ok(spend(id, 1, t));
  const at = t + 22 * DAY;
  const a = await ok(account(id, at));
  expect(a.body.bankedResets).toMatchObject({ available: 3, max: 3 });
  expect(a.body.bankedResets.items.every((i: { expiresAt: string | null }) => i.expiresAt === null)).toBe(true);
  return { id, at };
}

/** Spends and redeems three times from `at`: afterwards no banked reset is left. */
async function redeemAll(id: string, at: number): Promise<void> {
  for (let i = 0; i < 3; i++) {
    await ok(spend(id, 1, at + i * MIN));
    const r = await ok(redeem(id, "codex", at + i * MIN + 1));
    expect(r.body.bankedResets.available).toBe(2 - i);
  }
}

describe("admin global reset unblocks at once", () => {
  it("a blocked account is allowed on its very next request after POST /v1/admin/resets", async () => {
    const t = freshBase();
    const id = uid();
    await ok(spend(id, 2, t));
    const denied = await spend(id, 1, t + MIN);
    expect(denied.status).toBe(429);
    expect(denied.body.reason).toBe("limit_reached");

    const r = await ok(
      adminReset(
        { reason: "incident: limits drained", scope: { plans: ["go"] } },
        { now: t + 2 * MIN, key: uid("key") },
      ),
    );
    expect(r.body.resetId).toEqual(expect.any(String));
    expect(r.body.effectiveAt).toBe(iso(t + 2 * MIN));

    const next = await spend(id, 1, t + 2 * MIN + 1);
    expect(next.status, JSON.stringify(next.body)).toBe(200);
    expect(next.body.sources).toEqual([{ layer: "window", amount: CREDIT }]);
    expect(next.body.account.products.codex.fiveHour.used).toBe(CREDIT);
    expect(next.body.account.products.codex.weekly.used).toBe(CREDIT);
  });

  it("a reset recorded outside this isolate (stale epoch cache) unblocks a denied request within 1 s", async () => {
    const t = freshBase();
    const id = uid();
    await ok(spend(id, 2, t));
    expect((await spend(id, 1, t + MIN)).status).toBe(429);
    // This isolate's epoch cache now holds the epochs as they are; a reset written straight to the control
    // object, as another isolate's admin call would, does not clear it.
    const started = await primeEpochCache();
    const created = await createResetElsewhere(
      { reason: "from another isolate", scope: { plans: ["go"] } },
      t + 2 * MIN,
    );
    // Denied requests retried in a loop: the deny path refreshes epochs older than 1 s, so one is allowed by then.
    let next = await consume(id, { product: "codex", cost: CREDIT }, { now: t + 2 * MIN + 1 });
    for (let i = 2; next.status === 429 && Date.now() - started < 3_000; i++) {
      await sleep(50);
      next = await consume(id, { product: "codex", cost: CREDIT }, { now: t + 2 * MIN + i });
    }
    const tookMs = Date.now() - started;
    expect(next.status, JSON.stringify(next.body)).toBe(200);
    expect(next.body.sources).toEqual([{ layer: "window", amount: CREDIT }]);
    // 1 s of cache age, plus the time one request takes here.
    expect(tookMs).toBeLessThan(1_500);
    expect((await stored(id)).resetSeq).toBe(await seqOf(created.resetId));
  });

  it("a storm of denials costs at most one control-object call per isolate per second", async () => {
    const t = freshBase();
    const ids = [uid("storm"), uid("storm")];
    for (const id of ids) await ok(spend(id, 2, t));
    const started = await primeEpochCache();
    const reads = () => runInDurableObject(controlStub(), (i: ResetControlDO) => i.epochReads);
    const before = await reads();
    // 300 denied requests, 20 at a time, from two accounts whose windows have usage (so a reset could help).
    let denied = 0;
    for (let round = 0; round < 15; round++) {
      const answers = await Promise.all(
        Array.from({ length: 20 }, (_, j) => spend(ids[j % 2], 1, t + MIN + round * 20 + j)),
      );
      denied += answers.filter((a) => a.status === 429).length;
    }
    const seconds = (Date.now() - started) / 1000;
    const calls = (await reads()) - before;
    expect(denied).toBe(300);
    expect(calls, `${calls} control calls in ${seconds.toFixed(2)} s`).toBeLessThanOrEqual(Math.ceil(seconds));
  });
});

describe("scoped global resets", () => {
  it('scope.products: ["sora"] forgives sora windows only; codex usage is untouched', async () => {
    const t = freshBase();
    const id = uid();
    await ok(spend(id, 2, t, "codex"));
    await ok(spend(id, 1, t, "sora"));
    await ok(adminReset({ reason: "sora incident", scope: { products: ["sora"] } }, { now: t + MIN }));

    const a = await ok(account(id, t + 2 * MIN));
    expect(a.body.products.sora.fiveHour).toMatchObject({ used: 0, resetsAt: null });
    expect(a.body.products.sora.weekly).toMatchObject({ used: 0, resetsAt: null });
    expect(a.body.products.codex.fiveHour).toMatchObject({
      used: 2 * CREDIT,
      remaining: 0,
      resetsAt: iso(t + 5 * HOUR),
    });
    expect(a.body.products.codex.weekly).toMatchObject({ used: 2 * CREDIT, resetsAt: iso(t + 7 * DAY) });
    // codex is still blocked; sora is open again.
    expect((await spend(id, 1, t + 3 * MIN, "codex")).status).toBe(429);
    expect((await spend(id, 1, t + 3 * MIN, "sora")).status).toBe(200);
  });

  it('scope.plans: ["pro"] forgives pro accounts only; a plus account\'s usage is untouched', async () => {
    const t = freshBase();
    const pro = uid("pro");
    const plus = uid("plus");
    await ok(setPlan(pro, "pro", { now: t }));
    await ok(setPlan(plus, "plus", { now: t }));
    await ok(spend(pro, 5, t + MIN));
    await ok(spend(plus, 5, t + MIN));
    await ok(spend(plus, 1, t + MIN, "sora"));
    await ok(adminReset({ reason: "pro incident", scope: { plans: ["pro"] } }, { now: t + 2 * MIN }));

    const p = await ok(account(pro, t + 3 * MIN));
    expect(p.body.products.codex.fiveHour.used).toBe(0);
    expect(p.body.products.codex.weekly.used).toBe(0);
    const q = await ok(account(plus, t + 3 * MIN));
    expect(q.body.products.codex.fiveHour.used).toBe(5 * CREDIT);
    expect(q.body.products.codex.weekly.used).toBe(5 * CREDIT);
    expect(q.body.products.sora.fiveHour.used).toBe(CREDIT);
    expect(q.body.products.sora.weekly.used).toBe(CREDIT);
  });
});

describe("banked resets and global reset options", () => {
  it('bankedResets: "restore" refills an in-scope account to its plan maximum; out-of-scope and no-accrual plans are unchanged', async () => {
    const t = freshBase();
    const { id, at } = await accountWithThreeBanked(t);
    await redeemAll(id, at);
    expect((await ok(account(id, at + 10 * MIN))).body.bankedResets.available).toBe(0);

    // Out of scope: a plus account with one accrued reset.
    const plus = uid("plus");
    await ok(setPlan(plus, "plus", { now: t + 15 * DAY }));
    expect((await ok(account(plus, at + 10 * MIN))).body.bankedResets.available).toBe(1);
    // In scope but without banked resets: enterprise.
    const ent = uid("ent");
    await ok(setPlan(ent, "enterprise", { now: t }));

    await ok(
      adminReset(
        { reason: "restore banked", scope: { plans: ["go", "enterprise"] }, bankedResets: "restore" },
        { now: at + HOUR },
      ),
    );

    const a = await ok(account(id, at + HOUR + MIN));
    expect(a.body.bankedResets).toMatchObject({ available: 3, max: 3 });
    expect(a.body.bankedResets.items).toHaveLength(3);
    expect((await ok(account(plus, at + HOUR + MIN))).body.bankedResets.available).toBe(1);
    expect((await ok(account(ent, at + HOUR + MIN))).body.bankedResets).toEqual({ available: 0, max: 0, items: [] });
    // The restored resets are usable.
    await ok(spend(id, 1, at + 2 * HOUR));
    expect((await ok(redeem(id, "codex", at + 2 * HOUR + 1))).body.bankedResets.available).toBe(2);
  });

  it("grantBankedResets {count: 1, expiresInHours: 2} adds a bonus beyond the cap that disappears after 2 hours", async () => {
    const t = freshBase();
    const { id, at } = await accountWithThreeBanked(t);
    const effectiveAt = at + MIN;
    const r = await ok(
      adminReset(
        { reason: "bonus", scope: { plans: ["go"] }, grantBankedResets: { count: 1, expiresInHours: 2 } },
        { now: effectiveAt },
      ),
    );
    expect(r.body.effectiveAt).toBe(iso(effectiveAt));

    const a = await ok(account(id, effectiveAt + MIN));
    expect(a.body.bankedResets.available).toBe(4);
    expect(a.body.bankedResets.max).toBe(3);
    const bonus = a.body.bankedResets.items.filter((i: { expiresAt: string | null }) => i.expiresAt !== null);
    expect(bonus).toEqual([{ id: expect.any(String), expiresAt: iso(effectiveAt + 2 * HOUR) }]);

    const before = await ok(account(id, effectiveAt + 2 * HOUR - 1));
    expect(before.body.bankedResets.available).toBe(4);
    const after = await ok(account(id, effectiveAt + 2 * HOUR));
    expect(after.body.bankedResets.available).toBe(3);
    expect(after.body.bankedResets.items.map((i: { id: string }) => i.id)).not.toContain(bonus[0].id);
    // And an expired bonus cannot be redeemed: the next redemption uses a non-expiring one.
    await ok(spend(id, 1, effectiveAt + 3 * HOUR));
    const red = await ok(redeem(id, "codex", effectiveAt + 3 * HOUR + 1));
    expect(red.body.bankedResets.available).toBe(2);
  });

  it("a 4th redemption after 3 gets 409 no_banked_reset and leaves the windows as they are", async () => {
    const t = freshBase();
    const { id, at } = await accountWithThreeBanked(t);
    await redeemAll(id, at);
    await ok(spend(id, 1, at + 10 * MIN));
    const r = await redeem(id, "codex", at + 11 * MIN);
    expect(r.status).toBe(409);
    expect(r.body.error.code).toBe("no_banked_reset");
    const a = await ok(account(id, at + 12 * MIN));
    expect(a.body.products.codex.fiveHour.used).toBe(CREDIT);
    expect(a.body.products.codex.weekly.used).toBe(CREDIT);
    expect(a.body.bankedResets.available).toBe(0);
  });

  it("redeeming with empty windows gets 409 nothing_to_reset and uses no reset", async () => {
    const t = freshBase();
    const id = uid();
    await ok(spend(id, 1, t));
    // At t + 8d the week that opened at t has ended: both codex windows are empty, and one reset has accrued.
    const at = t + 8 * DAY;
    const a = await ok(account(id, at));
    expect(a.body.products.codex.weekly.used).toBe(0);
    expect(a.body.bankedResets.available).toBe(1);
    const itemIds = a.body.bankedResets.items.map((i: { id: string }) => i.id);

    const r = await redeem(id, "codex", at + MIN);
    expect(r.status).toBe(409);
    expect(r.body.error.code).toBe("nothing_to_reset");
    // Usage on another product does not make codex's windows non-empty.
    await ok(spend(id, 1, at + 2 * MIN, "sora"));
    const r2 = await redeem(id, "codex", at + 3 * MIN);
    expect(r2.status).toBe(409);
    expect(r2.body.error.code).toBe("nothing_to_reset");

    const b = await ok(account(id, at + 4 * MIN));
    expect(b.body.bankedResets.available).toBe(1);
    expect(b.body.bankedResets.items.map((i: { id: string }) => i.id)).toEqual(itemIds);
    // The kept reset is still redeemable where there is something to reset.
    expect((await ok(redeem(id, "sora", at + 5 * MIN))).body.bankedResets.available).toBe(0);
  });

  it("a redemption zeroes that product's 5h and weekly windows and uses the soonest-expiring banked reset", async () => {
    const t = freshBase();
    const id = uid();
    await ok(spend(id, 1, t));
    const at = t + 8 * DAY;
    const accrued = await ok(account(id, at));
    expect(accrued.body.bankedResets.items).toEqual([{ id: expect.any(String), expiresAt: null }]);
    const accrualId = accrued.body.bankedResets.items[0].id;

    // Two bonuses granted after the accrued one: the later grant expires sooner.
    await ok(
      adminReset(
        {
          reason: "bonus 72h",
          scope: { plans: ["go"], products: ["sora"] },
          grantBankedResets: { count: 1, expiresInHours: 72 },
        },
        { now: at + MIN },
      ),
    );
    await ok(
      adminReset(
        {
          reason: "bonus 24h",
          scope: { plans: ["go"], products: ["sora"] },
          grantBankedResets: { count: 1, expiresInHours: 24 },
        },
        { now: at + 2 * MIN },
      ),
    );
    const three = await ok(account(id, at + 3 * MIN));
    expect(three.body.bankedResets.available).toBe(3);
    const soonest = three.body.bankedResets.items.find(
      (i: { expiresAt: string | null }) => i.expiresAt === iso(at + 2 * MIN + 24 * HOUR),
    );
    const later = three.body.bankedResets.items.find(
      (i: { expiresAt: string | null }) => i.expiresAt === iso(at + MIN + 72 * HOUR),
    );
    expect(soonest).toBeDefined();
    expect(later).toBeDefined();

    // codex: 5h window used 1, weekly used 2 (the earlier 5h window has ended); sora used 1.
    await ok(spend(id, 1, at + 4 * MIN));
    await ok(spend(id, 1, at + 6 * HOUR));
    await ok(spend(id, 1, at + 6 * HOUR, "sora"));
    const before = await ok(account(id, at + 6 * HOUR + MIN));
    expect(before.body.products.codex.fiveHour.used).toBe(CREDIT);
    expect(before.body.products.codex.weekly.used).toBe(2 * CREDIT);

    const r = await ok(redeem(id, "codex", at + 6 * HOUR + 2 * MIN));
    expect(r.body.resetId).toEqual(expect.any(String));
    expect(r.body.bankedResets.available).toBe(2);
    expect(r.body.bankedResets.items.map((i: { id: string }) => i.id).sort()).toEqual([later.id, accrualId].sort());
    expect(r.body.account.products.codex.fiveHour).toMatchObject({ used: 0, remaining: 2 * CREDIT, resetsAt: null });
    expect(r.body.account.products.codex.weekly).toMatchObject({ used: 0, remaining: 10 * CREDIT, resetsAt: null });
    expect(r.body.account.products.sora.fiveHour.used).toBe(CREDIT);
    expect(r.body.account.products.sora.weekly.used).toBe(CREDIT);
    // The full 5h allowance is usable again.
    expect((await spend(id, 2, at + 6 * HOUR + 3 * MIN)).status).toBe(200);
  });

  it("an account created after a reset's effectiveAt gets neither its forgiveness nor its bonus resets", async () => {
    const t = freshBase();
    const early = uid("early");
    await ok(spend(early, 2, t));
    const effectiveAt = t + MIN;
    await ok(
      adminReset(
        {
          reason: "forgive + bonus",
          scope: { plans: ["go"] },
          bankedResets: "restore",
          grantBankedResets: { count: 2, expiresInHours: 48 },
        },
        { now: effectiveAt },
      ),
    );

    const late = uid("late");
    await ok(spend(late, 2, effectiveAt + MIN));
    // Exhausted and denied: the deny path re-reads the epochs, and the reset still does not apply.
    const denied = await spend(late, 1, effectiveAt + 2 * MIN);
    expect(denied.status).toBe(429);
    expect(denied.body.reason).toBe("limit_reached");
    const l = await ok(account(late, effectiveAt + 3 * MIN));
    expect(l.body.products.codex.fiveHour.used).toBe(2 * CREDIT);
    expect(l.body.bankedResets).toEqual({ available: 0, max: 3, items: [] });

    // The account that existed gets both: forgiveness, and 3 restored + 2 bonus resets.
    const e = await ok(account(early, effectiveAt + 3 * MIN));
    expect(e.body.products.codex.fiveHour.used).toBe(0);
    expect(e.body.bankedResets.available).toBe(5);
    expect(
      e.body.bankedResets.items.filter(
        (i: { expiresAt: string | null }) => i.expiresAt === iso(effectiveAt + 48 * HOUR),
      ),
    ).toHaveLength(2);
  });
});

describe("global reset cost", () => {
  it("touches no account object: state is unchanged right after the admin call and applied lazily at the next request", async () => {
    const t = freshBase();
    const id = uid();
    await ok(spend(id, 2, t));
    const idsBefore = await accountIds();
    const before = await stored(id);
    expect(before.windows).toContainEqual({ product: "codex", kind: "fiveHour", opened_at: t, used: 2 * CREDIT });

    const r = await ok(adminReset({ reason: "lazy", scope: { plans: ["go"] } }, { now: t + MIN }));
    const seq = await seqOf(r.body.resetId);
    expect(seq).toBeGreaterThan(before.resetSeq);

    expect(await accountIds()).toEqual(idsBefore);
    expect(await stored(id)).toEqual(before);

    // The account's next request applies it.
    const a = await ok(account(id, t + 2 * MIN));
    expect(a.body.products.codex.fiveHour.used).toBe(0);
    const after = await stored(id);
    expect(after.resetSeq).toBe(seq);
    expect(after.windows.filter((w) => w.product === "codex").every((w) => w.used === 0 && w.opened_at === null)).toBe(
      true,
    );
  });

  it("costs O(1): one control-object row and one audit row, whether 1 or 30 accounts exist", async () => {
    const t = freshBase();
    const first = uid();
    await ok(spend(first, 2, t));

    const rows0 = await controlRows();
    const audit0 = await auditCount();
    const ids0 = await accountIds();
    const r1 = await ok(adminReset({ reason: "one account", scope: { plans: ["go"] } }, { now: t + MIN }));
    expect(await controlRows()).toBe(rows0 + 1);
    expect(await auditCount()).toBe(audit0 + 1);
    expect(await accountIds()).toEqual(ids0);

    const many = Array.from({ length: 30 }, () => uid("many"));
    for (const id of many) await ok(spend(id, 2, t + 2 * MIN));
    const seqs = await Promise.all(many.map(async (id) => (await stored(id)).resetSeq));
    const ids1 = await accountIds();
    expect(ids1.length).toBeGreaterThanOrEqual(ids0.length + 30);

    const r2 = await ok(adminReset({ reason: "thirty accounts", scope: { plans: ["go"] } }, { now: t + 3 * MIN }));
    expect(await controlRows()).toBe(rows0 + 2);
    expect(await auditCount()).toBe(audit0 + 2);
    expect(await accountIds()).toEqual(ids1);
    // No account object was written by the admin call.
    expect(await Promise.all(many.map(async (id) => (await stored(id)).resetSeq))).toEqual(seqs);

    // Yet every account sees it at its next request.
    const seq2 = await seqOf(r2.body.resetId);
    expect(await seqOf(r1.body.resetId)).toBeLessThan(seq2);
    for (const id of [first, many[0], many[29]]) {
      const a = await ok(account(id, t + 4 * MIN));
      expect(a.body.products.codex.fiveHour.used, id).toBe(0);
      expect((await stored(id)).resetSeq).toBe(seq2);
    }
  });
});

describe("admin reset route", () => {
  it("is idempotent: same key and body replays the same resetId; same key with another body is 409", async () => {
    const t = freshBase();
    const key = uid("key");
    const rows0 = await controlRows();
    const first = await ok(
      adminReset({ reason: "dup", scope: { plans: ["go"], products: ["codex"] } }, { now: t, key }),
    );
    expect(first.headers.get("Idempotent-Replayed")).toBeNull();

    // Same payload (keys in another order), later clock: the original answer.
    const again = await ok(
      adminReset({ scope: { products: ["codex"], plans: ["go"] }, reason: "dup" }, { now: t + HOUR, key }),
    );
    expect(again.headers.get("Idempotent-Replayed")).toBe("true");
    expect(again.body).toEqual(first.body);
    expect(again.body.effectiveAt).toBe(iso(t));

    const conflict = await adminReset(
      { reason: "dup but different", scope: { plans: ["go"], products: ["codex"] } },
      { now: t + HOUR, key },
    );
    expect(conflict.status).toBe(409);
    expect(conflict.body.error.code).toBe("idempotency_conflict");

    expect(await controlRows()).toBe(rows0 + 1);
    const h = await ok(resetHistory());
    expect(h.body.resets.filter((r: { resetId: string }) => r.resetId === first.body.resetId)).toHaveLength(1);
    expect(h.body.resets.some((r: { reason: string }) => r.reason === "dup but different")).toBe(false);
  });

  it("GET /v1/admin/resets lists who, when, scope and reason, newest first", async () => {
    const t = freshBase();
    const a = await ok(
      adminReset(
        {
          reason: "incident-42",
          scope: { products: ["codex"], plans: ["plus", "pro"] },
          grantBankedResets: { count: 1, expiresInHours: 12 },
        },
        { now: t, headers: { "X-Operator": "alice@ops" } },
      ),
    );
    const b = await ok(adminReset({ reason: "everything, by default" }, { now: t + MIN }));

    const h = await ok(resetHistory());
    const ids = h.body.resets.map((r: { resetId: string }) => r.resetId);
    expect(ids.indexOf(b.body.resetId)).toBeGreaterThanOrEqual(0);
    expect(ids.indexOf(b.body.resetId)).toBeLessThan(ids.indexOf(a.body.resetId));
    expect(h.body.resets.find((r: { resetId: string }) => r.resetId === a.body.resetId)).toMatchObject({
      resetId: a.body.resetId,
      effectiveAt: iso(t),
      scope: { products: ["codex"], plans: ["plus", "pro"] },
      bankedResets: "keep",
      grantBankedResets: { count: 1, expiresInHours: 12 },
      reason: "incident-42",
      actor: "alice@ops",
    });
    expect(h.body.resets.find((r: { resetId: string }) => r.resetId === b.body.resetId)).toMatchObject({
      effectiveAt: iso(t + MIN),
      scope: { products: null, plans: null },
      grantBankedResets: null,
      reason: "everything, by default",
      actor: "admin",
    });
  });

  it("a wrong or missing admin token, or the service token, gets 401/403 and changes nothing", async () => {
    const t = freshBase();
    const id = uid();
    await ok(spend(id, 2, t));
    expect((await spend(id, 1, t + MIN)).status).toBe(429);
    const count0 = (await ok(resetHistory())).body.resets.length;
    const rows0 = await controlRows();

    const body = { reason: "should not happen" };
    const cases: [string | null, number, string][] = [
      [null, 401, "unauthorized"],
      ["not-the-admin-token", 401, "unauthorized"],
      [`${ADMIN}x`, 401, "unauthorized"],
      [SERVICE, 403, "forbidden"],
    ];
    for (const [token, status, code] of cases) {
      const r = await adminReset(body, { token, now: t + 2 * MIN });
      expect(r.status, String(token)).toBe(status);
      expect(r.body.error.code).toBe(code);
      const g = await resetHistory({ token });
      expect(g.status, String(token)).toBe(status);
      expect(g.body.resets).toBeUndefined();
    }
    // A body the route refuses records nothing either.
    expect((await adminReset({}, { now: t + 2 * MIN })).status).toBe(400);

    expect((await ok(resetHistory())).body.resets.length).toBe(count0);
    expect(await controlRows()).toBe(rows0);
    // The blocked account stays blocked.
    const still = await spend(id, 1, t + 3 * MIN);
    expect(still.status).toBe(429);
    expect(still.body.reason).toBe("limit_reached");
  });
});

describe("when a global reset meets an account", () => {
  it("applies with the plan the account had at effectiveAt, not the plan it has when it next calls", async () => {
    const t = freshBase();
    const wasGo = uid("go2pro");
    const wasPro = uid("pro2go");
    await ok(setPlan(wasPro, "pro", { now: t }));
    await ok(spend(wasGo, 2, t + MIN));
    await ok(spend(wasPro, 2, t + MIN));
    const started = await primeEpochCache();
    const r = await createResetElsewhere({ reason: "go only", scope: { plans: ["go"] } }, t + 2 * MIN);
    // Both change plan before they have seen the reset (this isolate's epochs are stale).
    await ok(setPlan(wasGo, "pro", { now: t + 3 * MIN }));
    await ok(setPlan(wasPro, "go", { now: t + 3 * MIN }));
    expect(
      Date.now() - started,
      "the epoch cache expired before the plan changes: the test could not set up its case",
    ).toBeLessThan(2_000);
    const seq = await seqOf(r.resetId);
    expect((await stored(wasGo)).resetSeq).toBeLessThan(seq);
    expect((await stored(wasPro)).resetSeq).toBeLessThan(seq);

    // Fresh epochs: the reset now reaches both.
    await ok(
      adminReset(
        { reason: "clears the cache; in scope for no one here", scope: { plans: ["edu"] } },
        { now: t + 4 * MIN },
      ),
    );
    const a = await ok(account(wasGo, t + 5 * MIN));
    expect(a.body.plan).toBe("pro");
    expect(a.body.products.codex.fiveHour.used).toBe(0);
    const b = await ok(account(wasPro, t + 5 * MIN));
    expect(b.body.plan).toBe("go");
    expect(b.body.products.codex.fiveHour.used).toBe(2 * CREDIT);
    expect((await stored(wasPro)).resetSeq).toBeGreaterThanOrEqual(seq);
  });

  it("forgives only usage recorded before effectiveAt: a charge made after it, before the account saw the reset, still counts", async () => {
    const t = freshBase();
    const id = uid();
    await ok(spend(id, 1, t));
    const started = await primeEpochCache();
    const effectiveAt = t + MIN;
    await createResetElsewhere({ reason: "forgive before t+1m", scope: { plans: ["go"] } }, effectiveAt);
    // Allowed against the old window: with stale epochs the account has not applied the reset yet.
    const after = await ok(spend(id, 1, t + 2 * MIN));
    expect(
      Date.now() - started,
      "the epoch cache expired before the charge: the test could not set up its case",
    ).toBeLessThan(2_000);
    expect(after.body.account.products.codex.fiveHour.used).toBe(2 * CREDIT);

    await ok(
      adminReset(
        { reason: "clears the cache; in scope for no one here", scope: { plans: ["edu"] } },
        { now: t + 3 * MIN },
      ),
    );
    const a = await ok(account(id, t + 4 * MIN));
    // SPEC §5: "window usage recorded before the reset's effectiveAt no longer counts"; the charge at t+2m was after it.
    expect(a.body.products.codex.fiveHour.used).toBe(CREDIT);
    expect(a.body.products.codex.weekly.used).toBe(CREDIT);
  });

  // Keep last: it records more than 50 resets.
  it("an account that was idle through more than 50 later resets still gets an earlier reset that applies to it", async () => {
    const t = freshBase();
    const id = uid();
    await ok(spend(id, 1, t, "sora"));
    const r = await ok(
      adminReset(
        {
          reason: "sora bonus",
          scope: { plans: ["go"], products: ["sora"] },
          grantBankedResets: { count: 1, expiresInHours: 24 * 30 },
        },
        { now: t + MIN },
      ),
    );
    for (let i = 0; i < 50; i++)
      await ok(adminReset({ reason: `edu reset ${i}`, scope: { plans: ["edu"] } }, { now: t + 2 * MIN + i }));
    const a = await ok(account(id, t + HOUR));
    expect(a.body.products.sora.fiveHour.used, `reset ${r.body.resetId} was not applied`).toBe(0);
    expect(a.body.bankedResets.items).toEqual([{ id: expect.any(String), expiresAt: iso(t + MIN + 24 * 30 * HOUR) }]);
  });
});
