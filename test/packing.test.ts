/**
 * Packed settlement (issue #15 item 2): a busy account's journal travels in few queue messages. One account takes
 * consumes at 200 a second for 2 seconds; the object's sends are counted (and passed on to the real queue). Target:
 * ≤ 0.05 queue messages per decision. Every entry still reaches the ledger exactly once.
 */
import { runInDurableObject } from "cloudflare:test";
import { describe, expect, it } from "vitest";
import type { AccountDO } from "../durable-objects/account/object";
import type { SettlementMessage } from "../worker/settlement/messages";
import { addCredits, CREDIT, consume, T0, uid } from "./helpers";
import { drainAccount, outboxOf, sleep, stubFor } from "./settle-helpers";

const RATE = 200;
const SECONDS = 2;
const TICK_MS = 50;

describe("packed settlement", () => {
  it(`${RATE} decisions a second on one account take ≤ 0.05 queue messages a decision`, async () => {
    const id = uid("pack");
    expect((await addCredits(id, { amount: 1000 * CREDIT, kind: "purchase" }, { now: T0 })).status).toBe(201);
    await drainAccount(id);
    const sent = { calls: 0, messages: 0, entries: 0 };
    await runInDurableObject(stubFor(id), (instance: AccountDO) => {
      const queue = instance.settlement;
      instance.settlement = {
        sendBatch: async (msgs: Iterable<MessageSendRequest<SettlementMessage>>, opts?: QueueSendBatchOptions) => {
          const list = [...msgs];
          sent.calls++;
          sent.messages += list.length;
          for (const m of list) sent.entries += m.body.entries.length;
          return queue.sendBatch(list, opts);
        },
      };
    });

    // RATE a second, in ticks of TICK_MS, each tick's consumes in flight together
    const perTick = (RATE * TICK_MS) / 1000;
    const answers: Promise<{ status: number }>[] = [];
    const started = Date.now();
    for (let tick = 0; tick < (SECONDS * 1000) / TICK_MS; tick++) {
      for (let i = 0; i < perTick; i++)
        answers.push(consume(id, { product: "codex", cost: 10_000 }, { now: T0 + 1000 + tick * TICK_MS + i }));
      const next = started + (tick + 1) * TICK_MS;
      await sleep(Math.max(0, next - Date.now()));
    }
    const statuses = (await Promise.all(answers)).map((r) => r.status);
    expect(statuses.filter((s) => s !== 200)).toEqual([]);
    const decisions = statuses.length;
    expect(decisions).toBe(RATE * SECONDS);
    await sleep(500);

    const perDecision = sent.messages / decisions;
    console.warn(JSON.stringify({ event: "packing", decisions, ...sent, perDecision }));
    expect(sent.entries).toBeGreaterThanOrEqual(decisions);
    expect(perDecision).toBeLessThanOrEqual(0.05);

    // and every entry still reaches the ledger once
    const { box, rows } = await drainAccount(id);
    expect(box.confirmed).toBe((await outboxOf(id)).lastSeq);
    expect(new Set(rows.map((r) => r.id)).size).toBe(rows.length);
  }, 60_000);
});
