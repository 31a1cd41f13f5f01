import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import { CREDIT, call, consume, T0 } from "./helpers";
import { orgWith } from "./org-helpers";

describe("organizations", () => {
  it("a member's waterfall runs its windows, then the pool", async () => {
    const { orgId, ids } = await orgWith(10 * CREDIT, 1);
    const r = await consume(ids[0], { product: "codex", cost: 3 * CREDIT }, { now: T0 + 1000 });
    expect(r.status, JSON.stringify(r.body)).toBe(200);
    expect(r.body.sources).toEqual([
      { layer: "window", amount: 2 * CREDIT },
      expect.objectContaining({ layer: "pool", orgId, amount: CREDIT }),
    ]);
    const view = await call("GET", `/v1/orgs/${orgId}`, undefined, { now: T0 + 2000 });
    expect(view.status).toBe(200);
    expect(view.body.pool.balance + view.body.pool.leased).toBe(10 * CREDIT);
    expect(env.ORG).toBeDefined();
  });
});
