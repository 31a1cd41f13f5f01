/**
 * Credits lifecycle (SPEC §6) through the HTTP API and the settled ledger (SPEC §7): purchase expiry
 * (by a decision and by the object's alarm), auto top-up safeguards, flexible billing, and refunds.
 * Every amount is derived from the SPEC's catalog numbers (go codex 2/10 credits, plus 10/50, business 10/50
 * with 200 credits of flex a month).
 */
import { runDurableObjectAlarm, runInDurableObject } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import type { AccountDO } from "../durable-objects/account/object";
import type { AccountEvent } from "../worker/settlement/messages";
import { ledgerFor } from "../worker/settlement/shards";
import { outboxMessages, sleep, stubFor, waitFor } from "./settle-helpers";
import { account, addCredits, call, consume, CREDIT, HOUR, SERVICE, setPlan, T0, uid } from "./helpers";

// ───────────────────────── local helpers ─────────────────────────

const C = CREDIT;
const SEC = 1000;
const MIN = 60_000;
const DAY = 24 * HOUR;

const outbox = outboxMessages;
async function outboxEvents(id: string, type: string): Promise<AccountEvent[]> {
  return (await outbox(id)).flatMap((m) => (m.type === "event" && m.event.type === type ? [m.event] : []));
}

async function ledger(id: string): Promise<any[]> {
  const r = await call("GET", `/v1/accounts/${id}/ledger?limit=500`);
  expect(r.status, JSON.stringify(r.body)).toBe(200);
  return r.body.entries;
}
/** Polls the settled ledger (the real queue delivers in the background) until `done` holds, for up to 10 s. */
const ledgerUntil = (id: string, done: (entries: any[]) => boolean) => waitFor(() => ledger(id), done);

async function ok(p: Promise<{ status: number; body: any; headers: Headers }>, status = 200) {
  const r = await p;
  expect(r.status, JSON.stringify(r.body)).toBe(status);
  return r;
}

async function summary(id: string, now: number) {
  return (await ok(account(id, now))).body;
}

const layerSum = (sources: { layer: string; amount: number }[] | undefined, layer: string) =>
  (sources ?? []).filter((s) => s.layer === layer).reduce((s, x) => s + x.amount, 0);

const autoTopUp = (id: string, cfg: unknown, now: number) =>
  call("PUT", `/v1/accounts/${id}/auto-top-up`, cfg, { now });
const refund = (id: string, body: unknown, now: number, key?: string, token?: string) =>
  call("POST", `/v1/admin/accounts/${id}/refunds`, body, { now, key, token });

// ───────────────────────── expiry ─────────────────────────

describe("purchase expiry (SPEC §6)", () => {
  const P0 = T0 + HOUR; // 2026-11-01 01:00 UTC
  const E = Date.UTC(2027, 10, 1, 1, 0, 0); // 12 months later

  it("a decision after expiry finds the balance gone, spends nothing from it, and the remainder reaches the ledger as expiry", async () => {
    const id = uid("exp");
    const p = await ok(addCredits(id, { kind: "purchase", amount: 10 * C }, { now: P0 }), 201);
    const grantId = p.body.id;
    expect(p.body.expiresAt).toBe(new Date(E).toISOString());

    const first = await ok(consume(id, { product: "codex", cost: 3 * C }, { now: P0 + MIN }));
    expect(first.body.sources).toEqual([
      { layer: "window", amount: 2 * C },
      { layer: "grant", grantId, amount: 1 * C },
    ]);

    // One minute before expiry it is still spendable.
    const late = await ok(consume(id, { product: "codex", cost: 3 * C }, { now: E - MIN }));
    expect(late.body.sources).toEqual([
      { layer: "window", amount: 2 * C },
      { layer: "grant", grantId, amount: 1 * C },
    ]);
    expect((await summary(id, E - 1)).credits.balance).toBe(8 * C);

    // At expiry: the 5-hour window is used up, the purchase is gone: denied, nothing charged.
    const after = await consume(id, { product: "codex", cost: 5 * C }, { now: E });
    expect(after.status).toBe(429);
    expect(after.body.reason).toBe("limit_reached");
    expect(after.body.offer).toBe("add_credits");
    expect(after.body.account.credits.balance).toBe(0);
    expect(after.body.account.credits.grants).toEqual([]);

    const entries = await ledgerUntil(id, (e) => e.some((x) => x.kind === "expiry"));
    const expiries = entries.filter((e) => e.kind === "expiry");
    expect(expiries).toHaveLength(1);
    expect(expiries[0]).toMatchObject({ kind: "expiry", amount: 8 * C, grantId, createdAt: new Date(E).toISOString() });
    const fromGrant = entries.filter((e) => e.kind === "charge" && e.grantId === grantId);
    expect(fromGrant.reduce((s, e) => s + e.amount, 0)).toBe(2 * C);
    for (const e of fromGrant) expect(Date.parse(e.createdAt)).toBeLessThan(E);
    // grant in = charged + expired: nothing of it is left to spend.
    expect(entries.find((e) => e.kind === "grant")?.amount).toBe(10 * C);

    const expired = await outboxEvents(id, "credits.expired");
    expect(expired.map((e) => e.data)).toEqual([{ grantId, amount: 8 * C }]);

    // Later, a new purchase is spent; the expired one never comes back.
    const p2 = await ok(addCredits(id, { kind: "purchase", amount: 5 * C }, { now: E + HOUR }), 201);
    const r = await ok(consume(id, { product: "codex", cost: 5 * C }, { now: E + 6 * HOUR }));
    expect(r.body.sources).toEqual([
      { layer: "window", amount: 2 * C },
      { layer: "grant", grantId: p2.body.id, amount: 3 * C },
    ]);
    expect(r.body.account.credits.balance).toBe(2 * C);
    const final = await ledgerUntil(id, (e) => e.filter((x) => x.kind === "charge").length >= 6);
    expect(final.filter((e) => e.kind === "expiry")).toHaveLength(1);
    expect(final.filter((e) => e.kind === "charge" && e.grantId === grantId).reduce((s, e) => s + e.amount, 0)).toBe(
      2 * C,
    );
  });

  it("the object's alarm expires a purchase without any request, and writes the expiry entry", async () => {
    const id = uid("expalarm");
    const p = await ok(addCredits(id, { kind: "purchase", amount: 10 * C }, { now: P0 }), 201);
    const grantId = p.body.id;
    await ledgerUntil(id, (e) => e.some((x) => x.kind === "grant"));

    // The account's last request is half a second before expiry; a second later (real time) its alarm runs.
    expect((await summary(id, E - 500)).credits.balance).toBe(10 * C);
    await sleep(1_000);
    await runDurableObjectAlarm(stubFor(id));

    const state = await runInDurableObject(stubFor(id), (_i: AccountDO, s) =>
      s.storage.sql
        .exec<{ remaining: number; active: number }>("SELECT remaining, active FROM grants WHERE id = ?", grantId)
        .one(),
    );
    expect(state).toEqual({ remaining: 0, active: 0 });
    const entries = await ledgerUntil(id, (e) => e.some((x) => x.kind === "expiry"));
    expect(entries.filter((e) => e.kind === "expiry")).toMatchObject([{ amount: 10 * C, grantId }]);
    expect(Date.parse(entries.find((e) => e.kind === "expiry").createdAt)).toBeGreaterThanOrEqual(E);

    // Nothing is spent from it afterwards.
    expect((await summary(id, E + SEC)).credits.balance).toBe(0);
    const r = await consume(id, { product: "codex", cost: 3 * C }, { now: E + 2 * SEC });
    expect(r.status).toBe(429);
    expect(r.body.reason).toBe("limit_reached");
    expect(r.body.account.products.codex.fiveHour.used).toBe(0);
    const final = await ledger(id);
    expect(final.filter((e) => e.kind === "charge")).toEqual([]);
    expect(final.filter((e) => e.kind === "expiry")).toHaveLength(1);
  });
});

// ───────────────────────── auto top-up ─────────────────────────

describe("auto top-up safeguards (SPEC §6)", () => {
  const cfg = (maxPerMonth: number) => ({ enabled: true, threshold: 10 * C, amount: 10 * C, maxPerMonth });

  it("one pending request per crossing, confirmed by topUpId, with a 60 s cooldown and a monthly cap", async () => {
    const id = uid("topup");
    const t0 = T0 + 10 * DAY; // 2026-11-11
    await ok(setPlan(id, "plus", { now: t0 }));
    await ok(addCredits(id, { kind: "purchase", amount: 12 * C }, { now: t0 }), 201);
    const set = await ok(autoTopUp(id, cfg(2), t0 + SEC));
    expect(set.body.credits.autoTopUp).toEqual({ ...cfg(2), pending: null });
    await ok(consume(id, { product: "codex", cost: 10 * C }, { now: t0 + 2 * SEC })); // the plus 5-hour window

    // A burst: 12 → 9 (below 10: requested) → 6 (already pending: nothing more).
    const t1 = t0 + 10 * SEC;
    const a = await ok(consume(id, { product: "codex", cost: 3 * C }, { now: t1 }));
    const pending = a.body.account.credits.autoTopUp.pending;
    expect(pending).toEqual({ topUpId: expect.any(String), requestedAt: new Date(t1).toISOString() });
    const b = await ok(consume(id, { product: "codex", cost: 3 * C }, { now: t1 + 5 * SEC }));
    expect(b.body.account.credits.autoTopUp.pending).toEqual(pending);
    const requested = await outboxEvents(id, "topup.requested");
    expect(requested).toHaveLength(1);
    expect(requested[0].data).toEqual({ topUpId: pending.topUpId, amount: 10 * C });

    // The billing system confirms with the purchase: pending clears.
    const conf = await ok(
      addCredits(id, { kind: "purchase", amount: 10 * C, topUpId: pending.topUpId }, { now: t1 + 20 * SEC }),
      201,
    );
    expect(conf.body.topUpId).toBe(pending.topUpId);
    let s = await summary(id, t1 + 21 * SEC);
    expect(s.credits.autoTopUp.pending).toBeNull();
    expect(s.credits.balance).toBe(16 * C);

    // Below the threshold again 30 s after the request: the cooldown holds it back.
    const c = await ok(consume(id, { product: "codex", cost: 9 * C }, { now: t1 + 30 * SEC }));
    expect(c.body.account.credits.balance).toBe(7 * C);
    expect(c.body.account.credits.autoTopUp.pending).toBeNull();
    expect(await outboxEvents(id, "topup.requested")).toHaveLength(1);

    // After the cooldown the next spend below the threshold asks again (2nd of 2 this month).
    const d = await ok(consume(id, { product: "codex", cost: 1 * C }, { now: t1 + 61 * SEC }));
    const second = d.body.account.credits.autoTopUp.pending;
    expect(second?.topUpId).toBeDefined();
    expect(second.topUpId).not.toBe(pending.topUpId);
    expect(await outboxEvents(id, "topup.requested")).toHaveLength(2);
    await ok(
      addCredits(id, { kind: "purchase", amount: 10 * C, topUpId: second.topUpId }, { now: t1 + 70 * SEC }),
      201,
    );

    // A top-up is confirmed once: the same topUpId again is refused, and adds nothing.
    const dup = await addCredits(
      id,
      { kind: "purchase", amount: 10 * C, topUpId: pending.topUpId },
      { now: t1 + 75 * SEC },
    );
    expect(dup.status).toBe(409);
    expect(dup.body.error.code).toBe("topup_unknown");
    expect((await summary(id, t1 + 76 * SEC)).credits.balance).toBe(16 * C);

    // The monthly cap (2) holds.
    const e = await ok(consume(id, { product: "codex", cost: 10 * C }, { now: t1 + 140 * SEC }));
    expect(e.body.account.credits.balance).toBe(6 * C);
    expect(e.body.account.credits.autoTopUp.pending).toBeNull();
    expect(await outboxEvents(id, "topup.requested")).toHaveLength(2);

    // A new calendar month has a fresh cap.
    const dec = T0 + 30 * DAY + 5 * MIN; // 2026-12-01 00:05
    const f = await ok(consume(id, { product: "codex", cost: 11 * C }, { now: dec }));
    expect(f.body.sources).toEqual([
      { layer: "window", amount: 10 * C },
      { layer: "grant", grantId: expect.any(String), amount: 1 * C },
    ]);
    expect(f.body.account.credits.autoTopUp.pending?.requestedAt).toBe(new Date(dec).toISOString());
    expect(await outboxEvents(id, "topup.requested")).toHaveLength(3);
    s = await summary(id, dec + SEC);
    expect(s.credits.balance).toBe(5 * C);
  });

  it("a pending top-up older than 1 hour counts as failed, and a later spend may ask again", async () => {
    const id = uid("topupfail");
    const t0 = T0 + 11 * DAY;
    await ok(setPlan(id, "pro", { now: t0 }));
    await ok(addCredits(id, { kind: "purchase", amount: 12 * C }, { now: t0 }), 201);
    await ok(autoTopUp(id, cfg(5), t0 + SEC));
    await ok(consume(id, { product: "codex", cost: 60 * C }, { now: t0 + 2 * SEC })); // the pro 5-hour window
    const t1 = t0 + 10 * SEC;
    const a = await ok(consume(id, { product: "codex", cost: 3 * C }, { now: t1 }));
    const first = a.body.account.credits.autoTopUp.pending;
    expect(first?.topUpId).toBeDefined();

    expect((await summary(id, t1 + 59 * MIN)).credits.autoTopUp.pending).toEqual(first);
    expect((await summary(id, t1 + HOUR + SEC)).credits.autoTopUp.pending).toBeNull();

    const b = await ok(consume(id, { product: "codex", cost: 1 * C }, { now: t1 + HOUR + 2 * SEC }));
    const next = b.body.account.credits.autoTopUp.pending;
    expect(next?.topUpId).toBeDefined();
    expect(next.topUpId).not.toBe(first.topUpId);
    expect((await outboxEvents(id, "topup.requested")).map((e) => e.data.topUpId)).toEqual([
      first.topUpId,
      next.topUpId,
    ]);
  });

  it("refuses auto top-up on plans without it, and a purchase with an unknown topUpId", async () => {
    const go = uid("topupgo");
    const r = await autoTopUp(go, cfg(2), T0);
    expect(r.status).toBe(409);
    expect(r.body.error.code).toBe("auto_top_up_not_allowed");
    expect((await summary(go, T0)).credits.autoTopUp.enabled).toBe(false);

    const biz = uid("topupbiz");
    await ok(setPlan(biz, "business", { now: T0 }));
    const rb = await autoTopUp(biz, cfg(2), T0 + SEC);
    expect(rb.status).toBe(409);
    expect(rb.body.error.code).toBe("auto_top_up_not_allowed");

    const plus = uid("topupunk");
    await ok(setPlan(plus, "plus", { now: T0 }));
    await ok(addCredits(plus, { kind: "purchase", amount: 5 * C }, { now: T0 }), 201);
    const u = await addCredits(
      plus,
      { kind: "purchase", amount: 10 * C, topUpId: "tu_never_requested" },
      { now: T0 + SEC },
    );
    expect(u.status).toBe(409);
    expect(u.body.error.code).toBe("topup_unknown");
    const s = await summary(plus, T0 + 2 * SEC);
    expect(s.credits.balance).toBe(5 * C);
    expect(s.credits.grants).toHaveLength(1);
  });
});

// ───────────────────────── flex ─────────────────────────

describe("flexible billing (SPEC §4.3)", () => {
  it("charges overage to flex up to the monthly limit, denies beyond it, and resets with the calendar month", async () => {
    const id = uid("flex");
    const t0 = T0 + 19 * DAY + 10 * HOUR; // 2026-11-20 10:00
    const plan = await ok(setPlan(id, "business", { now: t0 }));
    expect(plan.body.credits.flex).toEqual({ limit: 200 * C, used: 0 });

    const w = await ok(consume(id, { product: "codex", cost: 10 * C }, { now: t0 }));
    expect(w.body.sources).toEqual([{ layer: "window", amount: 10 * C }]);

    // 40 credits every 11 minutes (below the anomaly floor in any 10 minutes), no credits: all flex.
    const decisions: string[] = [];
    for (let k = 1; k <= 4; k++) {
      const r = await ok(consume(id, { product: "codex", cost: 40 * C }, { now: t0 + k * 11 * MIN }));
      expect(r.body.sources).toEqual([{ layer: "flex", amount: 40 * C }]);
      expect(r.body.account.credits.flex).toEqual({ limit: 200 * C, used: 40 * C * k });
      decisions.push(r.body.decisionId);
    }
    // 45 credits with 40 left: denied, nothing charged.
    const over = await consume(id, { product: "codex", cost: 45 * C }, { now: t0 + 55 * MIN });
    expect(over.status).toBe(429);
    expect(over.body.reason).toBe("insufficient_credits");
    expect(over.body.account.credits.flex.used).toBe(160 * C);
    // Exactly the rest is allowed; then anything more is denied.
    const rest = await ok(consume(id, { product: "codex", cost: 40 * C }, { now: t0 + 56 * MIN }));
    expect(rest.body.sources).toEqual([{ layer: "flex", amount: 40 * C }]);
    decisions.push(rest.body.decisionId);
    const beyond = await consume(id, { product: "codex", cost: 1 }, { now: t0 + 67 * MIN });
    expect(beyond.status).toBe(429);
    expect(beyond.body.reason).toBe("limit_reached");
    expect(beyond.body.account.credits.flex).toEqual({ limit: 200 * C, used: 200 * C });

    const entries = await ledgerUntil(id, (e) => e.filter((x) => x.layer === "flex").length >= 5);
    const flex = entries.filter((e) => e.kind === "charge" && e.layer === "flex");
    expect(flex).toHaveLength(5);
    for (const e of flex) expect(e).toMatchObject({ kind: "charge", layer: "flex", amount: 40 * C, product: "codex" });
    expect(flex.map((e) => e.decisionId)).toEqual(decisions);

    // A new calendar month: flex used starts again at 0.
    const dec = T0 + 30 * DAY + MIN; // 2026-12-01 00:01
    expect((await summary(id, dec)).credits.flex).toEqual({ limit: 200 * C, used: 0 });
    const d1 = await ok(consume(id, { product: "codex", cost: 15 * C }, { now: dec + SEC }));
    expect(d1.body.sources).toEqual([
      { layer: "window", amount: 10 * C },
      { layer: "flex", amount: 5 * C },
    ]);
    expect(d1.body.account.credits.flex).toEqual({ limit: 200 * C, used: 5 * C });

    // Prepaid credits come before postpaid flex.
    const g = await ok(addCredits(id, { kind: "purchase", amount: 5 * C }, { now: dec + MIN }), 201);
    const d2 = await ok(consume(id, { product: "codex", cost: 8 * C }, { now: dec + 2 * MIN }));
    expect(d2.body.sources).toEqual([
      { layer: "grant", grantId: g.body.id, amount: 5 * C },
      { layer: "flex", amount: 3 * C },
    ]);
    expect(d2.body.account.credits.flex.used).toBe(8 * C);
    expect(d2.body.account.credits.balance).toBe(0);
  });

  it("each plan shows its own monthly flex limit, or none", async () => {
    const id = uid("flexplans");
    expect((await summary(id, T0)).credits.flex).toBeNull(); // go
    const limits: Record<string, number | null> = {
      enterprise: 2000 * C,
      edu: 100 * C,
      business: 200 * C,
      plus: null,
      pro: null,
    };
    let t = T0;
    const nextSecond = () => {
      t += SEC;
      return t;
    };
    for (const [plan, limit] of Object.entries(limits)) {
      const r = await ok(setPlan(id, plan, { now: nextSecond() }));
      expect(r.body.credits.flex, plan).toEqual(limit === null ? null : { limit, used: 0 });
    }
    // Without flex, overage is simply denied.
    await ok(consume(id, { product: "codex", cost: 60 * C }, { now: nextSecond() }));
    const r = await consume(id, { product: "codex", cost: 1 }, { now: nextSecond() });
    expect(r.status).toBe(429);
    expect(r.body.reason).toBe("limit_reached");
  });
});

// ───────────────────────── refunds ─────────────────────────

describe("refunds (SPEC §6)", () => {
  it("a refund restores the balance as a compensating entry; the original charge stays in the ledger, unedited", async () => {
    const id = uid("refund");
    const t = T0 + 12 * DAY;
    const g = await ok(addCredits(id, { kind: "purchase", amount: 20 * C }, { now: t }), 201);
    const d = await ok(consume(id, { product: "codex", cost: 7 * C }, { now: t + SEC }));
    expect(d.body.sources).toEqual([
      { layer: "window", amount: 2 * C },
      { layer: "grant", grantId: g.body.id, amount: 5 * C },
    ]);
    expect(d.body.account.credits.balance).toBe(15 * C);

    const before = await ledgerUntil(id, (e) => e.length >= 3);
    // the grant, the grant's charge, and the window's 2 credits in the hour's usage rollup (SPEC §7)
    expect(before.map((e) => e.kind).sort()).toEqual(["charge", "grant", "usage"]);
    const charge = before.find((e) => e.kind === "charge" && e.layer === "grant");
    expect(charge).toMatchObject({ amount: 5 * C, decisionId: d.body.decisionId, grantId: g.body.id });
    expect(before.find((e) => e.kind === "usage")).toMatchObject({ amount: 2 * C, count: 1, layer: "window" });
    const rawBefore = (
      await ledgerFor(env, id).prepare("SELECT * FROM ledger WHERE account_id = ? ORDER BY seq").bind(id).all()
    ).results;

    // Refunds are admin-only.
    expect((await refund(id, { amount: 5 * C, reason: "duplicate" }, t + MIN, undefined, SERVICE)).status).toBe(403);
    expect((await refund(id, { amount: 0, reason: "duplicate" }, t + MIN)).status).toBe(400);

    const key = uid("refundkey");
    const r = await refund(id, { amount: 5 * C, reason: "duplicate request", entryId: charge.id }, t + 2 * MIN, key);
    expect(r.status, JSON.stringify(r.body)).toBe(201);
    expect(r.body.refundedEntryId).toBe(charge.id);
    expect(r.body.account.credits.balance).toBe(20 * C);
    // A replay has no second effect.
    const replay = await refund(
      id,
      { amount: 5 * C, reason: "duplicate request", entryId: charge.id },
      t + 3 * MIN,
      key,
    );
    expect(replay.status).toBe(201);
    expect(replay.headers.get("Idempotent-Replayed")).toBe("true");
    expect(replay.body.refundId).toBe(r.body.refundId);
    expect((await summary(id, t + 4 * MIN)).credits.balance).toBe(20 * C);

    // The refund is spendable like any credit.
    const spend = await ok(consume(id, { product: "codex", cost: 20 * C }, { now: t + 5 * MIN }));
    expect(layerSum(spend.body.sources, "grant")).toBe(20 * C);

    // the grant charge before, and the spend's (all from grants: the window's usage rollup is untouched)
    const charges = 1 + spend.body.sources.length;
    const after = await ledgerUntil(
      id,
      (e) => e.some((x) => x.kind === "refund") && e.filter((x) => x.kind === "charge").length >= charges,
    );
    expect(after.slice(0, before.length)).toEqual(before);
    const refunds = after.filter((e) => e.kind === "refund");
    expect(refunds).toHaveLength(1);
    expect(refunds[0]).toMatchObject({ id: r.body.refundId, kind: "refund", amount: 5 * C });
    const rawAfter = (
      await ledgerFor(env, id).prepare("SELECT * FROM ledger WHERE account_id = ? ORDER BY seq").bind(id).all()
    ).results;
    expect(rawAfter.slice(0, rawBefore.length)).toEqual(rawBefore);
    expect(String(rawAfter.find((x: any) => x.kind === "refund")?.note)).toContain("duplicate request");

    // The object and the ledger agree.
    const rec = await call("GET", `/v1/admin/reconciliation?accountId=${id}`);
    expect(rec.status).toBe(200);
    expect(rec.body.drifted).toEqual([]);
  });

  /** A go account with a 20-credit purchase and one 7-credit consume: 2 from the window, 5 from the grant. */
  async function accountWithCharge(t: number) {
    const id = uid("refund");
    const g = await ok(addCredits(id, { kind: "purchase", amount: 20 * C }, { now: t }), 201);
    const d = await ok(consume(id, { product: "codex", cost: 7 * C }, { now: t + SEC }));
    const entries = (await outbox(id)).flatMap((m) => (m.type === "ledger" ? [m.entry] : []));
    const grantCharge = entries.find((e) => e.kind === "charge" && e.layer === "grant")!;
    const grantEntry = entries.find((e) => e.kind === "grant")!;
    expect(grantCharge).toMatchObject({ amount: 5 * C, decisionId: d.body.decisionId, grantId: g.body.id });
    return { id, grantCharge, grantEntry };
  }

  /** The refund was refused with `status`/`code` and changed nothing: same balance, no refund entry, no new grant. */
  async function refusedWithoutEffect(
    id: string,
    res: { status: number; body: any },
    status: number,
    code: string,
    now: number,
    balance: number,
  ) {
    expect(res.status, JSON.stringify(res.body)).toBe(status);
    expect(res.body.error.code).toBe(code);
    const a = await summary(id, now);
    expect(a.credits.balance).toBe(balance);
    expect((await outbox(id)).filter((m) => m.type === "ledger" && m.entry.kind === "refund")).toEqual([]);
  }

  it("a refund naming an entry that does not exist, or that is not a charge or write-off, is 404 entry_not_found", async () => {
    const t = T0 + 13 * DAY;
    const { id, grantEntry } = await accountWithCharge(t);
    const missing = await refund(
      id,
      { amount: C, reason: "no such entry", entryId: "01900000-0000-7000-8000-000000000000" },
      t + MIN,
    );
    await refusedWithoutEffect(id, missing, 404, "entry_not_found", t + MIN, 15 * C);
    // A grant entry is not a charge: nothing to compensate.
    const notCharge = await refund(id, { amount: C, reason: "a grant", entryId: grantEntry.id }, t + 2 * MIN);
    await refusedWithoutEffect(id, notCharge, 404, "entry_not_found", t + 2 * MIN, 15 * C);
  });

  it("a refund naming a window charge is 404 entry_not_found, in flight or settled: window usage is not money", async () => {
    const t = T0 + 17 * DAY;
    const { id } = await accountWithCharge(t);
    const windowCharge = (await outbox(id))
      .flatMap((m) => (m.type === "ledger" ? [m.entry] : []))
      .find((e) => e.kind === "charge" && e.layer === "window")!;
    expect(windowCharge.amount).toBe(2 * C);
    // still in the object's journal, unconfirmed: refused all the same
    const inFlight = await refund(id, { amount: C, reason: "window", entryId: windowCharge.id }, t + MIN);
    await refusedWithoutEffect(id, inFlight, 404, "entry_not_found", t + MIN, 15 * C);
    expect(inFlight.body.error.message).toMatch(/window/);
    // settled (the ledger keeps it only in its hour's usage rollup): the same answer, not a different one by timing
    await ledgerUntil(id, (e) => e.some((x) => x.kind === "usage"));
    await runDurableObjectAlarm(stubFor(id));
    const settled = await refund(id, { amount: C, reason: "window", entryId: windowCharge.id }, t + 2 * MIN);
    await refusedWithoutEffect(id, settled, 404, "entry_not_found", t + 2 * MIN, 15 * C);
  });

  it("a refund naming another account's charge is 404 entry_not_found, whether the entry is in flight or settled", async () => {
    const t = T0 + 14 * DAY;
    const { id: owner, grantCharge } = await accountWithCharge(t);
    const other = uid("refund-other");
    await ok(addCredits(other, { kind: "purchase", amount: 3 * C }, { now: t }), 201);
    const inFlight = await refund(other, { amount: C, reason: "wrong account", entryId: grantCharge.id }, t + MIN);
    await refusedWithoutEffect(other, inFlight, 404, "entry_not_found", t + MIN, 3 * C);
    // Once settled into D1 it is still the owner's alone.
    await ledgerUntil(owner, (e) => e.some((x) => x.id === grantCharge.id));
    const settled = await refund(other, { amount: C, reason: "wrong account", entryId: grantCharge.id }, t + 2 * MIN);
    await refusedWithoutEffect(other, settled, 404, "entry_not_found", t + 2 * MIN, 3 * C);
  });

  it("refunds against one entry may not add up to more than it charged, under any keys: 409 refund_exceeds_entry", async () => {
    const t = T0 + 15 * DAY;
    const { id, grantCharge } = await accountWithCharge(t);
    // 1,000 credits against a 5-credit charge.
    await refusedWithoutEffect(
      id,
      await refund(id, { amount: 1000 * C, reason: "too much", entryId: grantCharge.id }, t + MIN),
      409,
      "refund_exceeds_entry",
      t + MIN,
      15 * C,
    );
    // Two partial refunds under different keys fill it exactly; a third micro-credit is refused.
    await ok(refund(id, { amount: 3 * C, reason: "part 1", entryId: grantCharge.id }, t + 2 * MIN), 201);
    await ok(refund(id, { amount: 2 * C, reason: "part 2", entryId: grantCharge.id }, t + 3 * MIN), 201);
    const third = await refund(id, { amount: 1, reason: "part 3", entryId: grantCharge.id }, t + 4 * MIN);
    expect(third.status, JSON.stringify(third.body)).toBe(409);
    expect(third.body.error).toMatchObject({
      code: "refund_exceeds_entry",
      details: { entryAmount: 5 * C, refunded: 5 * C },
    });
    expect((await summary(id, t + 5 * MIN)).credits.balance).toBe(20 * C);
    // The same entry twice under different keys: the second is refused.
    const again = await refund(id, { amount: 5 * C, reason: "again", entryId: grantCharge.id }, t + 6 * MIN);
    expect(again.status).toBe(409);
    expect((await outbox(id)).filter((m) => m.type === "ledger" && m.entry.kind === "refund")).toHaveLength(2);
  });

  it("a settled entry whose outbox row is gone is found in the D1 ledger, and still cannot be over-refunded", async () => {
    const t = T0 + 16 * DAY;
    const { id, grantCharge } = await accountWithCharge(t);
    await ledgerUntil(id, (e) => e.some((x) => x.id === grantCharge.id));
    // As after the object prunes delivered rows: the entry lives on only in D1.
    await runInDurableObject(stubFor(id), (_i: AccountDO, state) =>
      state.storage.sql.exec("DELETE FROM outbox WHERE entry_id = ?", grantCharge.id),
    );
    await refusedWithoutEffect(
      id,
      await refund(id, { amount: 6 * C, reason: "too much", entryId: grantCharge.id }, t + MIN),
      409,
      "refund_exceeds_entry",
      t + MIN,
      15 * C,
    );
    const r = await ok(refund(id, { amount: 5 * C, reason: "exact", entryId: grantCharge.id }, t + 2 * MIN), 201);
    expect(r.body.account.credits.balance).toBe(20 * C);
  });

  it("a goodwill refund (no entryId) is capped at maxGoodwillRefund, 100 credits: 409 goodwill_limit_exceeded above it", async () => {
    const t = T0 + 17 * DAY;
    const { id } = await accountWithCharge(t);
    await refusedWithoutEffect(
      id,
      await refund(id, { amount: Number.MAX_SAFE_INTEGER, reason: "everything" }, t + MIN),
      409,
      "goodwill_limit_exceeded",
      t + MIN,
      15 * C,
    );
    await refusedWithoutEffect(
      id,
      await refund(id, { amount: 100 * C + 1, reason: "just over" }, t + 2 * MIN),
      409,
      "goodwill_limit_exceeded",
      t + 2 * MIN,
      15 * C,
    );
    const r = await ok(refund(id, { amount: 100 * C, reason: "at the cap" }, t + 3 * MIN), 201);
    expect(r.body.account.credits.balance).toBe(115 * C);
  });

  it("no stored total may pass 2^53 − 1: a grant that would is 409 amount_out_of_range and changes nothing", async () => {
    const t = T0 + 18 * DAY;
    const id = uid("range");
    const max = Number.MAX_SAFE_INTEGER;
    await ok(addCredits(id, { kind: "purchase", amount: max - 10 * C }, { now: t }), 201);
    const over = await addCredits(id, { kind: "purchase", amount: 10 * C + 1 }, { now: t + SEC });
    expect(over.status, JSON.stringify(over.body)).toBe(409);
    expect(over.body.error.code).toBe("amount_out_of_range");
    expect((await summary(id, t + 2 * SEC)).credits.balance).toBe(max - 10 * C);
    // A goodwill refund counts too, and so do credits already spent: the lifetime total is what is bounded.
    await ok(consume(id, { product: "codex", cost: 50 * C }, { now: t + 3 * SEC }));
    const refundOver = await refund(id, { amount: 10 * C + 1, reason: "over the top" }, t + 4 * SEC);
    expect(refundOver.status, JSON.stringify(refundOver.body)).toBe(409);
    expect(refundOver.body.error.code).toBe("amount_out_of_range");
    await ok(addCredits(id, { kind: "purchase", amount: 10 * C }, { now: t + 5 * SEC }), 201);
    expect((await summary(id, t + 6 * SEC)).credits.balance).toBe(max - 48 * C);
    const rec = await waitFor(
      () => call("GET", `/v1/admin/reconciliation?accountId=${id}`),
      (r) => r.body.drifted?.length === 0,
    );
    expect(rec.body.drifted).toEqual([]);
  });
});
