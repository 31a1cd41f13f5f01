import { describe, expect, it } from "vitest";
import { runDurableObjectAlarm, runInDurableObject } from "cloudflare:test";
import { account, addCredits, call, consume, CREDIT, T0, uid } from "./helpers";
import { d1Rows, drainAccount, outboxOf, stubFor, waitFor, ledgerAll } from "./settle-helpers";

describe("probe", () => {
  it("queue delivers", async () => {
    const id = uid();
    const t = Date.now();
    const r = await consume(id, { product: "codex", cost: CREDIT }, { now: T0 });
    expect(r.status).toBe(200);
    const rows = await waitFor(() => d1Rows(id), (r) => r.length >= 1);
    console.log("delivered after", Date.now() - t, rows);
    console.log(await outboxOf(id));
    const s = Date.now();
    console.log("alarm", await runDurableObjectAlarm(stubFor(id)), Date.now() - s);
    console.log(await ledgerAll(id));
  });
});
