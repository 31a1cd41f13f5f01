import { describe, expect, it } from "vitest";
import { account, call, consume, CREDIT, T0, uid } from "./helpers";

describe("smoke", () => {
  it("serves health and an account round trip", async () => {
    expect((await call("GET", "/health", undefined, { token: null })).status).toBe(200);
    const id = uid();
    const r = await consume(id, { product: "codex", cost: CREDIT }, { now: T0 });
    expect(r.status, JSON.stringify(r.body)).toBe(200);
    expect(r.body.sources).toEqual([{ layer: "window", amount: CREDIT }]);
    const a = await account(id, T0);
    expect(a.body.products.codex.fiveHour.used).toBe(CREDIT);
  });
});
