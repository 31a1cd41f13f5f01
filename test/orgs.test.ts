import { evictDurableObject } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { afterEach, describe, expect, it } from "vitest";
import { LEASE_TTL_MS } from "../worker/core/account/membership";
import { faultPoints } from "../worker/settlement/fault-points";
import { account, CREDIT, call, consume, T0, uid } from "./helpers";
import { expectPoolInvariant, orgStub, orgWith, poolBook, poolPaid, useWindows } from "./org-helpers";

afterEach(() => {
  faultPoints.lease = undefined;
});

describe("organizations", () => {
  it("a member's waterfall runs its windows, then the pool", async () => {
    const { orgId, ids } = await orgWith(10 * CREDIT, 1);
    const r = await consume(ids[0], { product: "codex", cost: 3 * CREDIT }, { now: T0 + 1000 });
    expect(r.status, JSON.stringify(r.body)).toBe(200);
    expect(r.body.sources).toEqual([
      { layer: "window", amount: 2 * CREDIT },
      expect.objectContaining({ layer: "pool", orgId, amount: CREDIT }),
    ]);
    const b = await expectPoolInvariant(orgId, ids, T0 + 2000);
    expect(b.spent).toBe(CREDIT);
    expect(env.ORG).toBeDefined();
  });

  it("50 members racing for a pool of 10 credits spend exactly 10, never more", async () => {
    const { orgId, ids } = await orgWith(10 * CREDIT, 50);
    await Promise.all(ids.map((id) => useWindows(id, T0 + 1000)));
    let spent = 0;
    let now = T0 + 2000;
    for (let round = 0; round < 6; round++) {
      const answers = await Promise.all(
        ids.flatMap((id) =>
          Array.from({ length: 4 }, () => consume(id, { product: "codex", cost: CREDIT / 10 }, { now })),
        ),
      );
      for (const a of answers) {
        expect([200, 429], JSON.stringify(a.body)).toContain(a.status);
        if (a.status === 200) spent += poolPaid(a.body);
      }
      expect(spent).toBeLessThanOrEqual(10 * CREDIT);
      // A member asking for more than the pool had recalled every lease: those closes finish before both sides are read.
      await orgStub(orgId).closeDue(now);
      await expectPoolInvariant(orgId, ids, now);
      // What members hold unspent comes back, so the next round can spend it.
      now += LEASE_TTL_MS + 1;
      await orgStub(orgId).closeDue(now);
    }
    expect(spent).toBe(10 * CREDIT);
    const b = await expectPoolInvariant(orgId, ids, now);
    expect(b.balance).toBe(0);
    expect(b.spent).toBe(10 * CREDIT);
  });

  it("an evicted member's lease comes back to the pool after its TTL", async () => {
    const { orgId, ids } = await orgWith(100 * CREDIT, 1);
    const [id] = ids;
    // The decision that used up the windows already left the lease below its low-water mark: the lease is taken then.
    await useWindows(id, T0 + 1000);
    expect((await consume(id, { product: "codex", cost: CREDIT }, { now: T0 + 2000 })).status).toBe(200);
    const held = await poolBook(orgId, ids, T0 + 3000);
    expect(held.unspent).toBeGreaterThan(0);
    expect(held.balance).toBe(100 * CREDIT - CREDIT - held.unspent);
    await evictDurableObject(env.ACCOUNT.get(env.ACCOUNT.idFromName(id)));
    // Before the TTL nothing is closed; after it, the pool's close wakes the member and takes the rest back.
    await orgStub(orgId).closeDue(T0 + 1000 + LEASE_TTL_MS - 1);
    expect((await poolBook(orgId, ids, T0 + 3000)).unspent).toBe(held.unspent);
    await orgStub(orgId).closeDue(T0 + 1000 + LEASE_TTL_MS);
    const after = await expectPoolInvariant(orgId, ids, T0 + 1000 + LEASE_TTL_MS);
    expect(after.unspent).toBe(0);
    expect(after.balance).toBe(99 * CREDIT);
  });

  it("a removed member returns its lease at once and draws no more", async () => {
    const { orgId, ids } = await orgWith(100 * CREDIT, 1);
    const [id] = ids;
    await useWindows(id, T0 + 1000);
    expect((await consume(id, { product: "codex", cost: CREDIT }, { now: T0 + 2000 })).status).toBe(200);
    const removed = await call("DELETE", `/v1/orgs/${orgId}/members/${id}`, undefined, { now: T0 + 3000 });
    expect(removed.status, JSON.stringify(removed.body)).toBe(200);
    const b = await expectPoolInvariant(orgId, ids, T0 + 3000);
    expect(b.balance).toBe(99 * CREDIT);
    const denied = await consume(id, { product: "codex", cost: CREDIT }, { now: T0 + 4000 });
    expect(denied.status).toBe(429);
  });

  it("an account belongs to at most one organization", async () => {
    const a = await orgWith(CREDIT, 1);
    const b = await orgWith(CREDIT, 0);
    const r = await call("PUT", `/v1/orgs/${b.orgId}/members/${a.ids[0]}`, {}, { now: T0 });
    expect(r.status).toBe(409);
    expect(r.body.error.code).toBe("already_member");
    expect((await call("GET", `/v1/orgs/${b.orgId}`, undefined, { now: T0 })).body.members).toEqual([]);
  });

  describe("faults on the lease traffic", () => {
    it("an issue that fails at the pool issues nothing; the next one works", async () => {
      const { orgId, ids } = await orgWith(10 * CREDIT, 1);
      faultPoints.lease = (stage) => {
        if (stage === "issue") throw new Error("injected: pool unreachable");
      };
      await useWindows(ids[0], T0 + 1000);
      const denied = await consume(ids[0], { product: "codex", cost: CREDIT }, { now: T0 + 2000 });
      expect(denied.status).toBe(429);
      expect((await poolBook(orgId, ids, T0 + 2000)).balance).toBe(10 * CREDIT);
      faultPoints.lease = undefined;
      const ok = await consume(ids[0], { product: "codex", cost: CREDIT }, { now: T0 + 3000 });
      expect(ok.status).toBe(200);
      await expectPoolInvariant(orgId, ids, T0 + 3000);
    });

    it("an issue whose answer is lost is taken once when asked again, never twice", async () => {
      const { orgId, ids } = await orgWith(10 * CREDIT, 1);
      let lost = 0;
      faultPoints.lease = (stage) => {
        if (stage === "issued" && lost++ === 0) throw new Error("injected: answer lost");
      };
      // This decision's background refill is issued by the pool and lost on the way back.
      await useWindows(ids[0], T0 + 1000);
      const out = await poolBook(orgId, ids, T0 + 1000);
      expect(lost).toBe(1);
      expect(out.leased).toBeGreaterThan(0);
      expect(out.unspent).toBe(0);
      const ok = await consume(ids[0], { product: "codex", cost: CREDIT }, { now: T0 + 3000 });
      expect(ok.status).toBe(200);
      const b = await expectPoolInvariant(orgId, ids, T0 + 3000);
      // The replayed issue is counted once: what the pool counts as out is exactly what the member holds and spent.
      expect(b.unspent + b.spent).toBe(b.leased);
    });

    it("an issue lost for good comes back whole at the close", async () => {
      const { orgId, ids } = await orgWith(10 * CREDIT, 1);
      faultPoints.lease = (stage) => {
        if (stage === "issued") throw new Error("injected: answer lost");
      };
      await useWindows(ids[0], T0 + 1000);
      expect((await consume(ids[0], { product: "codex", cost: CREDIT }, { now: T0 + 2000 })).status).toBe(429);
      faultPoints.lease = undefined;
      expect((await poolBook(orgId, ids, T0 + 2000)).leased).toBeGreaterThan(0);
      await orgStub(orgId).closeDue(T0 + 2000 + LEASE_TTL_MS);
      const b = await expectPoolInvariant(orgId, ids, T0 + 2000 + LEASE_TTL_MS);
      expect(b.balance).toBe(10 * CREDIT);
      expect(b.leased).toBe(0);
    });

    it("a close whose answer is lost is applied once when asked again", async () => {
      const { orgId, ids } = await orgWith(10 * CREDIT, 1);
      await useWindows(ids[0], T0 + 1000);
      expect((await consume(ids[0], { product: "codex", cost: CREDIT }, { now: T0 + 2000 })).status).toBe(200);
      faultPoints.lease = (stage) => {
        if (stage === "closed") throw new Error("injected: close answer lost");
      };
      const at = T0 + 2000 + LEASE_TTL_MS;
      await orgStub(orgId).closeDue(at);
      faultPoints.lease = undefined;
      await orgStub(orgId).closeDue(at + 1);
      await orgStub(orgId).closeDue(at + 2);
      const b = await expectPoolInvariant(orgId, ids, at + 2);
      expect(b.balance).toBe(9 * CREDIT);
      expect(b.unspent).toBe(0);
      expect(b.spent).toBe(CREDIT);
    });

    it("an issue lost before a removal whose close never reached the member still comes back", async () => {
      const { orgId, ids } = await orgWith(10 * CREDIT, 1);
      const [id] = ids;
      let lost = 0;
      faultPoints.lease = (stage) => {
        if (stage === "issued" && lost++ === 0) throw new Error("injected: answer lost");
        if (stage === "close") throw new Error("injected: member unreachable");
      };
      // Issue 1 leaves the pool and is lost; the removal's close cannot reach the member, so it does not know.
      await useWindows(id, T0 + 1000);
      expect((await poolBook(orgId, ids, T0 + 1000)).leased).toBeGreaterThan(0);
      const removed = await call("DELETE", `/v1/orgs/${orgId}/members/${id}`, undefined, { now: T0 + 2000 });
      expect(removed.status).toBe(200);
      // The member asks for issue 1 again: it gets the real issue 1 (as a removed member, so it spends none of it)...
      const denied = await consume(id, { product: "codex", cost: CREDIT }, { now: T0 + 3000 });
      expect(denied.status).toBe(429);
      await poolBook(orgId, ids, T0 + 3000);
      faultPoints.lease = undefined;
      // ...and the pending close, retried, takes it back whole.
      await orgStub(orgId).closeDue(T0 + 4000);
      const b = await expectPoolInvariant(orgId, ids, T0 + 4000);
      expect(b.balance).toBe(10 * CREDIT);
      expect(b.leased).toBe(0);
      expect(b.unspent).toBe(0);
    });

    it("a removal while a close's answer is lost stops the member; what a hold gives back later is not spent", async () => {
      const { orgId, ids } = await orgWith(10 * CREDIT, 2);
      const [id, other] = ids;
      await useWindows(id, T0 + 1000);
      const hold = await call(
        "POST",
        `/v1/accounts/${id}/holds`,
        { product: "codex", cost: 2 * CREDIT, ttlSeconds: 3600 },
        { now: T0 + 2000 },
      );
      expect(hold.status).toBe(201);
      expect(poolPaid(hold.body)).toBe(2 * CREDIT);
      // Another member needs more than the pool holds: every lease is recalled. The recall reaches the member (it
      // closes, keeping the hold's reservation), and its answer is lost on the way back: the close stays pending.
      faultPoints.lease = (stage) => {
        if (stage === "closed") throw new Error("injected: close answer lost");
      };
      await useWindows(other, T0 + 3000);
      expect((await consume(other, { product: "codex", cost: 20 * CREDIT }, { now: T0 + 3000 })).status).toBe(429);
      // The removal asks that same close again, now as a leave (its answer is lost too, so it stays pending).
      const removed = await call("DELETE", `/v1/orgs/${orgId}/members/${id}`, undefined, { now: T0 + 4000 });
      expect(removed.status).toBe(200);
      faultPoints.lease = undefined;
      expect((await account(id, T0 + 4000)).body.org.active).toBe(false);
      // The hold's release gives its reservation back to the lease; a removed member does not spend it.
      const released = await call("POST", `/v1/accounts/${id}/holds/${hold.body.holdId}/release`, undefined, {
        now: T0 + 5000,
      });
      expect(released.status).toBe(200);
      const after = await consume(id, { product: "codex", cost: CREDIT }, { now: T0 + 6000 });
      expect(poolPaid(after.body)).toBe(0);
      await orgStub(orgId).closeDue(T0 + 3000 + LEASE_TTL_MS);
      const b = await expectPoolInvariant(orgId, ids, T0 + 3000 + LEASE_TTL_MS);
      expect(b.unspent).toBe(0);
      expect(b.spent).toBe(0);
      expect(b.balance).toBe(10 * CREDIT);
    });
  });

  describe("sharing a scarce pool (bench row 16c)", () => {
    const leaseOf = async (id: string, now: number) => (await account(id, now)).body.org.lease as number;

    it("one member's lease takes at most an even share of the pool among its active members", async () => {
      const { orgId, ids } = await orgWith(10 * CREDIT, 39);
      // A 40th member that spent its windows before it joined: its decisions of 0.1 credit all draw from the pool.
      const id = uid("member");
      await useWindows(id, T0);
      expect((await call("PUT", `/v1/orgs/${orgId}/members/${id}`, {}, { now: T0 + 600_000 })).status).toBe(200);
      expect((await consume(id, { product: "codex", cost: CREDIT / 10 }, { now: T0 + 601_000 })).status).toBe(200);
      const b = await expectPoolInvariant(orgId, [...ids, id], T0 + 601_000);
      // 64 such decisions would be 6.4 credits, an eighth of the pool 1.25: an issue is at most max(0.1, 10 / 40),
      // and there are at most two (the decision's, and the refill after it).
      expect(b.leased).toBeGreaterThan(0);
      expect(b.leased).toBeLessThanOrEqual(2 * ((10 * CREDIT) / 40));
    });

    it("a starved request recalls the leases that hold what it lacks, not every lease", async () => {
      const { orgId, ids } = await orgWith(16 * CREDIT, 3);
      const [a, b, c] = ids;
      await useWindows(a, T0 + 1000);
      // a spends part of its first lease and refills: it holds the largest lease.
      expect((await consume(a, { product: "codex", cost: (3 * CREDIT) / 2 }, { now: T0 + 1500 })).status).toBe(200);
      await useWindows(b, T0 + 2000);
      await useWindows(c, T0 + 3000);
      const before = await expectPoolInvariant(orgId, ids, T0 + 3000);
      const held = { a: await leaseOf(a, T0 + 3000), b: await leaseOf(b, T0 + 3000), c: await leaseOf(c, T0 + 3000) };
      expect(held.a).toBeGreaterThan(held.b);
      // c needs all the pool's balance, its own lease, and half a credit more: a's lease alone covers that twice.
      const cost = held.c + before.balance + CREDIT / 2;
      expect(held.a).toBeGreaterThanOrEqual(CREDIT);
      const r = await consume(c, { product: "codex", cost }, { now: T0 + 4000 });
      expect(r.status, JSON.stringify(r.body)).toBe(200);
      expect(poolPaid(r.body)).toBe(cost);
      await orgStub(orgId).closeDue(T0 + 4000);
      await expectPoolInvariant(orgId, ids, T0 + 4000);
      expect(await leaseOf(a, T0 + 4000)).toBe(0);
      expect(await leaseOf(b, T0 + 4000)).toBe(held.b);
    });

    it("requests of one member arriving together all ask the pool: none is denied while the pool has credit", async () => {
      const { orgId, ids } = await orgWith((8 * CREDIT) / 10, 1);
      const [id] = ids;
      await useWindows(id, T0 + 1000);
      await poolBook(orgId, ids, T0 + 1000);
      // Its first lease is an eighth of the pool (0.1 credit): 10 of these 20 decisions.
      const answers = await Promise.all(
        Array.from({ length: 20 }, () => consume(id, { product: "codex", cost: CREDIT / 100 }, { now: T0 + 2000 })),
      );
      expect(answers.map((x) => x.status)).toEqual(Array(20).fill(200));
      const b = await expectPoolInvariant(orgId, ids, T0 + 2000);
      expect(b.spent).toBe(20 * (CREDIT / 100));
    });
  });
});
