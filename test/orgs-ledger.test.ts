/**
 * Organizations and the rest of the engine (SPEC §9): the pool's journal and its members' pool charges settle into the
 * ledger and reconcile; guards per member and per pool; holds through a lease; idempotency on every org route;
 * a global reset leaves pools alone.
 */
import { describe, expect, it } from "vitest";
import { LEASE_TTL_MS } from "../worker/core/account/membership";
import { ADMIN, account, CREDIT, call, consume, T0 } from "./helpers";
import { drainOrg, expectPoolInvariant, orgStub, orgWith, poolBook, poolPaid, useWindows } from "./org-helpers";
import { drainAccount, ledgerIdsOf, outboxMessages } from "./settle-helpers";

describe("organizations in the ledger", () => {
  it("members' pool charges and the pool's own journal settle, and reconcile with no drift", async () => {
    const { orgId, ids } = await orgWith(20 * CREDIT, 2);
    for (const id of ids) await useWindows(id, T0 + 1000);
    for (const id of ids)
      expect((await consume(id, { product: "codex", cost: CREDIT }, { now: T0 + 2000 })).status).toBe(200);
    // Leases close their TTL after the last issue (a refill may follow the decision): well past it, all are closed.
    const closed = T0 + 2000 + 2 * LEASE_TTL_MS;
    await orgStub(orgId).closeDue(closed);
    for (const id of ids) await drainAccount(id);
    await drainOrg(orgId);
    for (const id of ids) {
      const rows = await call("GET", `/v1/accounts/${id}/ledger`);
      const pool = rows.body.entries.filter((e: { layer?: string; kind: string }) => e.layer === "pool");
      expect(pool.filter((e: { kind: string }) => e.kind === "charge")).toEqual([
        expect.objectContaining({ kind: "charge", amount: CREDIT, orgId }),
      ]);
      expect(pool.some((e: { kind: string }) => e.kind === "lease")).toBe(true);
      expect(pool.some((e: { kind: string }) => e.kind === "lease_return")).toBe(true);
      expect(new Set(rows.body.entries.map((e: { id: string }) => e.id))).toEqual(
        new Set(ledgerIdsOf(await outboxMessages(id))),
      );
    }
    const orgLedger = await call("GET", `/v1/orgs/${orgId}/ledger`);
    expect(orgLedger.status).toBe(200);
    const sum = (kind: string) =>
      orgLedger.body.entries
        .filter((e: { kind: string }) => e.kind === kind)
        .reduce((s: number, e: { amount: number }) => s + e.amount, 0);
    expect(sum("grant")).toBe(20 * CREDIT);
    // Everything leased came back but the 2 credits spent.
    expect(sum("lease") - sum("lease_return")).toBe(2 * CREDIT);
    expect(
      orgLedger.body.entries.every(
        (e: { kind: string; memberId?: string }) => e.kind === "grant" || ids.includes(e.memberId ?? ""),
      ),
    ).toBe(true);
    const report = await call("GET", `/v1/admin/reconciliation?accountId=org%2F${orgId}`, undefined, { token: ADMIN });
    expect(report.status, JSON.stringify(report.body)).toBe(200);
    expect(report.body.checked).toBe(1);
    expect(report.body.drifted).toEqual([]);
    for (const id of ids) {
      const r = await call("GET", `/v1/admin/reconciliation?accountId=${id}`, undefined, { token: ADMIN });
      expect(r.body.drifted).toEqual([]);
    }
    const b = await expectPoolInvariant(orgId, ids, closed);
    expect(b.balance).toBe(18 * CREDIT);
  });
});

describe("organizations: guards", () => {
  it("a member's daily pool limit denies with spend_cap, and the pool still serves the others", async () => {
    const { orgId, ids } = await orgWith(100 * CREDIT, 2);
    const [limited, free] = ids;
    expect(
      (await call("PUT", `/v1/orgs/${orgId}/members/${limited}`, { dailyLimit: 3 * CREDIT }, { now: T0 })).status,
    ).toBe(200);
    for (const id of ids) await useWindows(id, T0 + 1000);
    const ok = await consume(limited, { product: "codex", cost: 3 * CREDIT }, { now: T0 + 2000 });
    expect(ok.status, JSON.stringify(ok.body)).toBe(200);
    const denied = await consume(limited, { product: "codex", cost: CREDIT / 2 }, { now: T0 + 3000 });
    expect(denied.status).toBe(429);
    expect(denied.body.reason).toBe("spend_cap");
    expect((await consume(free, { product: "codex", cost: 5 * CREDIT }, { now: T0 + 3000 })).status).toBe(200);
    // The next UTC day the limit starts over.
    const nextDay = T0 + 24 * 3_600_000 + 1000;
    const again = await consume(limited, { product: "codex", cost: CREDIT }, { now: nextDay });
    expect(again.status, JSON.stringify(again.body)).toBe(200);
    expect(
      poolPaid(again.body) + (again.body.sources.find((s: { layer: string }) => s.layer === "window")?.amount ?? 0),
    ).toBe(CREDIT);
  });

  it("a spike across members pauses the pool; members are denied credits_paused until an operator resumes it", async () => {
    const { orgId, ids } = await orgWith(5000 * CREDIT, 30);
    for (const id of ids) await useWindows(id, T0 + 1000);
    // The pool's floor is 1,000 credits spent in 10 minutes (catalog.guards.poolAnomaly); each member's own floor is 50
    // credits, so each member stays under its own while together they pass the pool's.
    const reasons: string[] = [];
    for (const id of ids) {
      const r = await consume(id, { product: "codex", cost: 45 * CREDIT }, { now: T0 + 2000 });
      reasons.push(r.status === 200 ? "allowed" : r.body.reason);
    }
    expect(reasons.slice(0, 20).every((r) => r === "allowed")).toBe(true);
    expect(reasons).toContain("credits_paused");
    expect(reasons.filter((r) => r !== "allowed" && r !== "credits_paused")).toEqual([]);
    const org = await call("GET", `/v1/orgs/${orgId}`, undefined, { now: T0 + 3000 });
    expect(org.body.paused).toBe(true);
    for (const id of ids) expect((await account(id, T0 + 3000)).body.paused).toBe(false);
    const resumed = await call("POST", `/v1/admin/orgs/${orgId}/resume`, undefined, { now: T0 + 3000 });
    expect(resumed.status, JSON.stringify(resumed.body)).toBe(200);
    expect(resumed.body.resumed).toBe(true);
    expect(resumed.body.org.paused).toBe(false);
    const last = ids[ids.length - 1];
    const after = await consume(last, { product: "codex", cost: CREDIT }, { now: T0 + 4000 });
    expect(after.status, JSON.stringify(after.body)).toBe(200);
    await expectPoolInvariant(orgId, ids, T0 + 4000);
  });

  it("a member's own anomaly guard pauses its pool spending, not the pool's", async () => {
    const { orgId, ids } = await orgWith(500 * CREDIT, 2);
    const [spiky, calm] = ids;
    for (const id of ids) await useWindows(id, T0 + 1000);
    expect((await consume(spiky, { product: "codex", cost: 45 * CREDIT }, { now: T0 + 2000 })).status).toBe(200);
    const denied = await consume(spiky, { product: "codex", cost: 10 * CREDIT }, { now: T0 + 3000 });
    expect(denied.status).toBe(429);
    expect(denied.body.reason).toBe("credits_paused");
    expect(denied.body.account.paused).toBe(true);
    expect((await consume(calm, { product: "codex", cost: 10 * CREDIT }, { now: T0 + 3000 })).status).toBe(200);
    expect((await call("GET", `/v1/orgs/${orgId}`, undefined, { now: T0 + 3000 })).body.paused).toBe(false);
  });

  it("a member's monthly pool limit holds across days, and starts over with the month", async () => {
    const { orgId, ids } = await orgWith(100 * CREDIT, 1);
    const [id] = ids;
    expect(
      (await call("PUT", `/v1/orgs/${orgId}/members/${id}`, { monthlyLimit: 4 * CREDIT }, { now: T0 })).status,
    ).toBe(200);
    await useWindows(id, T0 + 1000);
    const day = 24 * 3_600_000;
    expect((await consume(id, { product: "codex", cost: 3 * CREDIT }, { now: T0 + 2000 })).status).toBe(200);
    // Days later (the 5-hour window has reset: the first 2 credits are the window's), 2 more from the pool pass it.
    const later = await consume(id, { product: "codex", cost: 4 * CREDIT }, { now: T0 + 3 * day });
    expect(later.status).toBe(429);
    expect(later.body.reason).toBe("spend_cap");
    expect((await consume(id, { product: "codex", cost: 3 * CREDIT }, { now: T0 + 3 * day + 1000 })).status).toBe(200);
    const nextMonth = Date.UTC(2026, 11, 1, 12);
    const fresh = await consume(id, { product: "codex", cost: 6 * CREDIT }, { now: nextMonth });
    expect(fresh.status, JSON.stringify(fresh.body)).toBe(200);
    expect(poolPaid(fresh.body)).toBe(4 * CREDIT);
  });

  it("a global reset does not touch pools", async () => {
    const { orgId, ids } = await orgWith(10 * CREDIT, 1);
    await useWindows(ids[0], T0 + 1000);
    expect((await consume(ids[0], { product: "codex", cost: CREDIT }, { now: T0 + 2000 })).status).toBe(200);
    const before = await poolBook(orgId, ids, T0 + 3000);
    const reset = await call("POST", "/v1/admin/resets", { reason: "test: pools untouched" }, { now: T0 + 3000 });
    expect(reset.status).toBe(200);
    // The member's windows are forgiven (its next 2 credits come from them), its pool and lease are not.
    const next = await consume(ids[0], { product: "codex", cost: 2 * CREDIT }, { now: T0 + 4000 });
    expect(next.body.sources).toEqual([{ layer: "window", amount: 2 * CREDIT }]);
    // (The lease may have moved between pool and member meanwhile; what the pool holds in all, and what it paid, did not.)
    const after = await poolBook(orgId, ids, T0 + 4000);
    expect({ held: after.balance + after.unspent, spent: after.spent, granted: after.granted }).toEqual({
      held: before.balance + before.unspent,
      spent: before.spent,
      granted: before.granted,
    });
  });
});

describe("organizations: flexible billing", () => {
  it("after the pool's grants, members draw the pool's flex, up to its monthly limit; their own plan's flex is not used", async () => {
    const { orgId, ids } = await orgWith(CREDIT, 1);
    const [id] = ids;
    expect(
      (await call("PUT", `/v1/orgs/${orgId}`, { plan: "business", flexMonthlyLimit: 3 * CREDIT }, { now: T0 })).status,
    ).toBe(200);
    expect((await call("PUT", `/v1/accounts/${id}/plan`, { plan: "business" }, { now: T0 })).status).toBe(200);
    // business: 10 codex credits a 5-hour window
    const r = await consume(id, { product: "codex", cost: 13 * CREDIT }, { now: T0 + 1000 });
    expect(r.status, JSON.stringify(r.body)).toBe(200);
    expect(r.body.sources).toEqual([
      { layer: "window", amount: 10 * CREDIT },
      { layer: "pool", orgId, grantId: expect.any(String), amount: CREDIT },
      { layer: "pool", orgId, amount: 2 * CREDIT },
    ]);
    expect(r.body.account.credits.flex).toBeNull();
    const over = await consume(id, { product: "codex", cost: 2 * CREDIT }, { now: T0 + 2000 });
    expect(over.status).toBe(429);
    const org = await call("GET", `/v1/orgs/${orgId}`, undefined, { now: T0 + 2000 });
    expect(org.body.flex.limit).toBe(3 * CREDIT);
    expect(org.body.flex.used).toBeLessThanOrEqual(3 * CREDIT);
    expect(org.body.flex.used).toBeGreaterThanOrEqual(2 * CREDIT);
  });
});

describe("organizations: holds through a lease", () => {
  it("a hold reserves from the lease; settle charges the pool, release gives back to the lease", async () => {
    const { orgId, ids } = await orgWith(50 * CREDIT, 1);
    const [id] = ids;
    await useWindows(id, T0 + 1000);
    const hold = await call(
      "POST",
      `/v1/accounts/${id}/holds`,
      { product: "codex", cost: 4 * CREDIT },
      { now: T0 + 2000 },
    );
    expect(hold.status, JSON.stringify(hold.body)).toBe(201);
    expect(poolPaid(hold.body)).toBe(4 * CREDIT);
    const settled = await call(
      "POST",
      `/v1/accounts/${id}/holds/${hold.body.holdId}/settle`,
      { cost: 3 * CREDIT },
      { now: T0 + 3000 },
    );
    expect(settled.status).toBe(200);
    expect(settled.body.released).toBe(CREDIT);
    const hold2 = await call(
      "POST",
      `/v1/accounts/${id}/holds`,
      { product: "codex", cost: 2 * CREDIT, ttlSeconds: 3600 },
      { now: T0 + 4000 },
    );
    expect(hold2.status).toBe(201);
    expect(poolPaid(hold2.body)).toBe(2 * CREDIT);
    // A close while the hold is active (here: the member is removed) keeps its reservation with the member; the pool
    // closes again when the hold has ended at the latest.
    const removed = await call("DELETE", `/v1/orgs/${orgId}/members/${id}`, undefined, { now: T0 + 5000 });
    expect(removed.status).toBe(200);
    expect((await poolBook(orgId, ids, T0 + 5000)).unspent).toBe(0);
    const released = await call("POST", `/v1/accounts/${id}/holds/${hold2.body.holdId}/release`, undefined, {
      now: T0 + 6000,
    });
    expect(released.status).toBe(200);
    expect((await poolBook(orgId, ids, T0 + 6000)).unspent).toBe(2 * CREDIT);
    await orgStub(orgId).closeDue(T0 + 4000 + 3_600_000);
    const b = await expectPoolInvariant(orgId, ids, T0 + 4000 + 3_600_000);
    expect(b.spent).toBe(3 * CREDIT);
    expect(b.unspent).toBe(0);
    expect(b.balance).toBe(47 * CREDIT);
  });
});

describe("organizations: idempotency and bad input", () => {
  it("org routes replay the first answer for the same key and payload, and refuse another payload", async () => {
    const { orgId, ids } = await orgWith(0, 1);
    const put = (body: unknown) => call("POST", `/v1/orgs/${orgId}/credits`, body, { key: "pool-grant-1", now: T0 });
    const first = await put({ amount: 5 * CREDIT, kind: "purchase" });
    const again = await put({ amount: 5 * CREDIT, kind: "purchase" });
    expect(again.status).toBe(201);
    expect(again.headers.get("Idempotent-Replayed")).toBe("true");
    expect(again.body).toEqual(first.body);
    expect((await put({ amount: 6 * CREDIT, kind: "purchase" })).status).toBe(409);
    expect((await call("GET", `/v1/orgs/${orgId}`, undefined, { now: T0 })).body.pool.balance).toBe(5 * CREDIT);
    const del = () => call("DELETE", `/v1/orgs/${orgId}/members/${ids[0]}`, undefined, { key: "remove-1", now: T0 });
    expect((await del()).status).toBe(200);
    const replay = await del();
    expect(replay.status).toBe(200);
    expect(replay.headers.get("Idempotent-Replayed")).toBe("true");
  });

  it("refuses bad input with the one error shape and changes nothing", async () => {
    const { orgId } = await orgWith(CREDIT, 0);
    for (const [method, path, body] of [
      ["PUT", `/v1/orgs/${orgId}`, { plan: "plus" }],
      ["PUT", `/v1/orgs/${orgId}`, { plan: "business", flexMonthlyLimit: -1 }],
      ["PUT", `/v1/orgs/${orgId}/members/bad%20id`, {}],
      ["PUT", `/v1/orgs/${orgId}/members/a1`, { dailyLimit: 1.5 }],
      ["POST", `/v1/orgs/${orgId}/credits`, { amount: 0, kind: "purchase" }],
      ["POST", `/v1/admin/orgs/${orgId}/refunds`, { amount: CREDIT }],
    ] as const) {
      const r = await call(method, path, body, { now: T0 });
      expect(r.status, `${method} ${path}`).toBe(400);
      expect(r.body.error.code).toBe("invalid_request");
    }
    expect((await call("GET", "/v1/orgs/nobody-here", undefined, { now: T0 })).status).toBe(404);
    expect(
      (await call("POST", "/v1/orgs/nobody-here/credits", { amount: 1, kind: "purchase" }, { now: T0 })).status,
    ).toBe(404);
    expect((await call("GET", `/v1/orgs/${orgId}`, undefined, { token: ADMIN })).status).toBe(403);
    expect((await call("GET", `/v1/orgs/${orgId}`, undefined, { now: T0 })).body.pool.balance).toBe(CREDIT);
  });
});
