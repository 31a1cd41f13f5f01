/**
 * Window usage on the journal (durable-objects/account/store.ts): each step's window usage rides on one of its journal
 * rows instead of rows of its own, and `Reads.windowUsageAfter` sums it exactly, to the millisecond, as the
 * `window_charges` rows did: a hold's reservation counts, its release takes it back, a global reset forgets what came
 * at or before its instant. Journal rows, usage or not, are kept a week (SPEC §7).
 */
import { runInDurableObject } from "cloudflare:test";
import { describe, expect, it } from "vitest";
import type { AccountDO } from "../durable-objects/account/object";
import { AccountStore } from "../durable-objects/account/store";
import { sqlOf } from "../durable-objects/sql";
import type { CallContext } from "../durable-objects/types";
import type { ResetEpoch } from "../worker/core/account/state";
import { NO_HEAD } from "../worker/settlement/heads";
import { CREDIT, HOUR, T0, uid } from "./helpers";
import { stubFor } from "./settle-helpers";

const DAY = 24 * HOUR;
const t = T0 + 200 * DAY;

const ctxOf = (accountId: string, now: number, resets: ResetEpoch[] = []): CallContext => ({
  accountId,
  now,
  requestId: "usage",
  idempotency: { key: crypto.randomUUID(), fingerprint: "usage" },
  resets,
});

const reset = (effectiveAt: number): ResetEpoch => ({
  seq: 1,
  resetId: "usage-reset",
  effectiveAt,
  products: ["codex"],
  plans: null,
  bankedResets: "keep",
  grantBankedResets: null,
});

describe("window usage on the journal", () => {
  it("sums exactly per instant, follows holds and releases, forgets what a global reset forgave, and is kept a week with every other journal row", async () => {
    const id = uid("usage");
    await runInDurableObject(stubFor(id), async (instance: AccountDO, state) => {
      instance.settlement = {
        sendBatch: async () => ({ metadata: { metrics: { backlogCount: 0, backlogBytes: 0 } } }),
      };
      const sql = state.storage.sql;
      const store = new AccountStore(sqlOf(sql));
      const usageAfter = (product: "codex" | "sora", ms: number) => store.reads.windowUsageAfter(product, ms);
      const ok = async (p: Promise<{ result: { kind: string } }>) => expect((await p).result.kind).not.toBe("refused");

      await ok(instance.setPlan(ctxOf(id, t), "pro"));
      await ok(instance.addCredits(ctxOf(id, t), { amount: 10 * CREDIT, kind: "purchase" }));
      await ok(instance.consume(ctxOf(id, t + 1000), { product: "codex", cost: 3 }));
      const hold = await instance.createHold(ctxOf(id, t + 2000), { product: "codex", cost: 2 }, 600);
      if (hold.result.kind !== "created") throw new Error(JSON.stringify(hold.result));
      await ok(instance.releaseHold(ctxOf(id, t + 3000), hold.result.body.holdId));
      await ok(instance.consume(ctxOf(id, t + 4000), { product: "codex", cost: 5 }));
      await ok(instance.consume(ctxOf(id, t + 4000), { product: "sora", cost: 7 }));

      expect([t, t + 999, t + 1000, t + 2000, t + 3000, t + 4000].map((ms) => usageAfter("codex", ms))).toEqual([
        8, 8, 5, 3, 5, 0,
      ]);
      expect(usageAfter("sora", t)).toBe(7);
      // one journal row per step carries it; nothing in rows of its own
      const carriers = sql
        .exec<{ product: string; usage: number; at: number }>(
          "SELECT usage_product AS product, usage, created_at AS at FROM outbox WHERE usage IS NOT NULL ORDER BY seq",
        )
        .toArray();
      expect(carriers).toEqual([
        { product: "codex", usage: 3, at: t + 1000 },
        { product: "codex", usage: 2, at: t + 2000 },
        { product: "codex", usage: -2, at: t + 3000 },
        { product: "codex", usage: 5, at: t + 4000 },
        { product: "sora", usage: 7, at: t + 4000 },
      ]);
      expect(sql.exec<{ n: number }>("SELECT COUNT(*) AS n FROM window_charges").one().n).toBe(0);

      // A global reset at t+2.5s, learnt at t+5s: codex usage at or before its instant is forgotten, sora's is not.
      const seen = await instance.summary({ ...ctxOf(id, t + 5000, [reset(t + 2500)]), idempotency: undefined });
      if (seen.result.kind !== "ok") throw new Error(JSON.stringify(seen.result));
      expect(seen.result.body.products.codex.fiveHour.used).toBe(3);
      expect([usageAfter("codex", t), usageAfter("sora", t)]).toEqual([3, 7]);

      // Confirmed by the ledger: three days on, every row is still there (SPEC §7: 7 days); eight days on, none.
      const lastSeq = sql.exec<{ n: number }>("SELECT journal_seq AS n FROM account").one().n;
      await instance.settlementCut({ ...NO_HEAD, watermark: lastSeq, highest: lastSeq });
      const left = async (days: number) => {
        await instance.summary({ ...ctxOf(id, t + days * DAY), idempotency: undefined });
        await instance.alarm();
        return sql.exec<{ n: number; usage: number }>("SELECT COUNT(*) AS n, COUNT(usage) AS usage FROM outbox").one();
      };
      const all = sql
        .exec<{ n: number; usage: number }>("SELECT COUNT(*) AS n, COUNT(usage) AS usage FROM outbox")
        .one();
      expect(all.n).toBeGreaterThan(all.usage);
      expect(await left(3)).toEqual(all);
      expect(await left(8)).toEqual({ n: 0, usage: 0 });
    });
  });
});
