/**
 * Settlement (SPEC §7): journal → queue → D1 ledger (watermark and running totals) → confirmation and
 * reconciliation, with faults really injected: a throwing queue send, a send lost in transport, a redelivered
 * batch, a consumer failing mid-batch (D1 wrapper), an object evicted or aborted between commit and send, and a
 * seeded random workload that must reconcile to zero drift. Also the ledger route's pagination and entry shape
 * (SPEC §8).
 */
import { describe, expect, it } from "vitest";
import {
  abortAllDurableObjects,
  createExecutionContext,
  createMessageBatch,
  evictDurableObject,
  getQueueResult,
  runDurableObjectAlarm,
  runInDurableObject,
} from "cloudflare:test";
import { env } from "cloudflare:workers";
import type { AccountDO } from "../durable-objects/account/object";
import { idOf, type JournalMessage, type LedgerEntry, seqOf } from "../worker/core/journal";
import worker from "../worker/index";
import { settleBatch } from "../worker/settlement/consumer";
import type { SettlementMessage } from "../worker/settlement/messages";
import { ledgerFor, shardOf } from "../worker/settlement/shards";
import { account, addCredits, ADMIN, call, consume, CREDIT, HOUR, T0, uid, mulberry32 } from "./helpers";
import {
  d1Rows,
  drainAccount,
  headOf,
  LEDGER_KINDS,
  ledgerAll,
  ledgerIdsOf,
  ledgerView,
  usageIdOf,
  outboxMessages,
  outboxOf,
  reconciliation,
  sleep,
  stubFor,
  waitFor,
} from "./settle-helpers";

const SEC = 1000;
type Sender = AccountDO["settlement"];

// ───────────────────────── fault injection helpers ─────────────────────────

/**
 * Replaces the object's queue sender; returns a function that puts the original back. The object sends a moment
 * after each step (FLUSH_DELAY_MS), so putting the original back first sends what is still waiting, through the swap.
 */
async function swapSender(id: string, make: (original: Sender) => Sender): Promise<() => Promise<void>> {
  let original: Sender | undefined;
  await runInDurableObject(stubFor(id), (instance: AccountDO) => {
    original = instance.settlement;
    instance.settlement = make(original);
  });
  return async () => {
    await runInDurableObject(stubFor(id), async (instance: AccountDO) => {
      await instance.flushOutbox();
      instance.settlement = original!;
    });
  };
}

const throwingSender = (counter?: { n: number }): Sender => ({
  sendBatch: async () => {
    if (counter) counter.n++;
    throw new Error("injected: queue unavailable");
  },
});

/** Accepts every send without delivering it, keeping the bodies for the test to deliver itself. */
function capturingSender(into: SettlementMessage[]): Sender {
  return {
    sendBatch: async (msgs: Iterable<MessageSendRequest<SettlementMessage>>) => {
      for (const m of msgs) into.push(JSON.parse(JSON.stringify(m.body)));
      return { metadata: {} } as QueueSendBatchResponse;
    },
  };
}

/**
 * Captured messages are packed runs of the journal; split into one entry a message, each entry can be delivered,
 * failed, retried or duplicated on its own.
 */
const singles = (batches: SettlementMessage[]): SettlementMessage[] =>
  batches.flatMap((b) => b.entries.map((e) => ({ accountId: b.accountId, floor: b.floor, entries: [e] })));

/** The (first) entry of a message. */
const entryOf = (m: SettlementMessage): JournalMessage => m.entries[0];
const msgId = (m: SettlementMessage) => idOf(entryOf(m));
const isLedger = (m: SettlementMessage) => entryOf(m).type === "ledger";
/** The ids the D1 ledger holds for these messages' entries (money entries, and window charges' `usage` rollups). */
const ledgerIdsIn = (msgs: SettlementMessage[]) => ledgerIdsOf(msgs.flatMap((m) => m.entries));
const ledgerEntryOf = (m: SettlementMessage): LedgerEntry => {
  const e = entryOf(m);
  if (e.type !== "ledger") throw new Error(`not a ledger entry: ${JSON.stringify(e)}`);
  return e.entry;
};

function batchOf(msgs: SettlementMessage[], attempts = 1) {
  return createMessageBatch<SettlementMessage>(
    "settlement",
    msgs.map((body) => ({ id: `msg-${msgId(body)}`, timestamp: new Date(), attempts, body })),
  );
}

/**
 * Runs the consumer on a batch and returns the ack/retry state. The test harness does not keep the retry
 * options, so each message's retry() is wrapped to record the backoff the consumer asked for.
 */
async function deliver(batch: MessageBatch<SettlementMessage>, e: Env = env) {
  const delays = new Map<string, number | undefined>();
  for (const m of batch.messages) {
    const original = m.retry.bind(m);
    Object.defineProperty(m, "retry", {
      value: (o?: QueueRetryOptions) => {
        delays.set(m.id, o?.delaySeconds);
        original(o);
      },
    });
  }
  const ctx = createExecutionContext();
  await settleBatch(batch, e);
  return { ...(await getQueueResult(batch, ctx)), delays };
}

type Mode = "ok" | "fail" | "fail-after-commit";

/**
 * A copy of the real env in which the account's ledger shard is the real D1 except that `batch` fails on the calls
 * `plan` chooses (1-based). The consumer routes each message to its account's shard, so it writes through the wrapper.
 */
function flakyEnv(id: string, plan: (call: number) => Mode) {
  const real = ledgerFor(env, id);
  const binding = (env.LEDGER_SHARDS ?? "DB").split(",").map((s) => s.trim())[shardOf(env, id)];
  const state = { calls: 0, failed: 0 };
  const DB = {
    prepare: (q: string) => real.prepare(q),
    exec: (q: string) => real.exec(q),
    dump: () => real.dump(),
    withSession: (c?: string) => real.withSession(c as any),
    batch: async (stmts: D1PreparedStatement[]) => {
      state.calls++;
      const mode = plan(state.calls);
      if (mode === "fail") {
        state.failed++;
        throw new Error("D1_ERROR: injected failure");
      }
      const r = await real.batch(stmts);
      if (mode === "fail-after-commit") {
        state.failed++;
        throw new Error("injected: connection lost after commit");
      }
      return r;
    },
  };
  const flaky = { ...env, [binding]: DB } as unknown as Env;
  // the wrapper really is the account's ledger as the consumer will look it up
  expect(ledgerFor(flaky, id)).toBe(DB);
  return { env: flaky, state };
}

/** Ops that write several ledger entries and events; the caller's sender decides where they go. */
async function someActivity(id: string, t0 = T0) {
  expect((await addCredits(id, { amount: 3 * CREDIT, kind: "purchase" }, { now: t0 })).status).toBe(201);
  expect((await consume(id, { product: "codex", cost: CREDIT }, { now: t0 + SEC })).status).toBe(200);
  expect((await consume(id, { product: "codex", cost: 1.5 * CREDIT }, { now: t0 + 2 * SEC })).status).toBe(200); // window 1 + grant 0.5
  const h = await call(
    "POST",
    `/v1/accounts/${id}/holds`,
    { product: "codex", cost: 2 * CREDIT },
    { now: t0 + 3 * SEC },
  );
  expect(h.status).toBe(201);
  const s = await call(
    "POST",
    `/v1/accounts/${id}/holds/${h.body.holdId}/settle`,
    { cost: 0.5 * CREDIT },
    { now: t0 + 4 * SEC },
  );
  expect(s.status).toBe(200);
}

/** `someActivity` with its outbox captured instead of sent: the packed messages the object sent. */
async function capturedBatches(id: string): Promise<SettlementMessage[]> {
  const captured: SettlementMessage[] = [];
  const restore = await swapSender(id, () => capturingSender(captured));
  await someActivity(id);
  await restore();
  return captured;
}

/** `someActivity` captured, one journal entry a message: what a consumer would get, entry by entry. */
async function capturedActivity(id: string): Promise<SettlementMessage[]> {
  return singles(await capturedBatches(id));
}

const sumOf = (xs: { amount: number }[]) => xs.reduce((n, x) => n + x.amount, 0);
/** How many window charges the `usage` rollups among these D1 rows sum. */
const usageCount = (rows: { kind: string; usage_count: number | null }[]) =>
  rows.reduce((n, r) => n + (r.kind === "usage" ? (r.usage_count ?? 0) : 0), 0);

/** D1 totals for one account vs its object: both must agree, with nothing in flight (reconciliation for just this account). */
async function expectReconciled(id: string) {
  const r = await reconciliation(`?accountId=${id}`);
  expect(r.status, JSON.stringify(r.body)).toBe(200);
  expect(r.body.checked).toBe(1);
  expect(r.body.drifted).toEqual([]);
  expect(r.body.inFlight).toEqual([]);
}

/**
 * The ledger's head stands at `lastSeq` (every journal entry up to it is in D1, none missing above), and its running
 * totals are the sums of the account's D1 rows: grants and refunds less expiries and grant-paid charges; all charges.
 */
async function expectHeadAt(id: string, lastSeq: number) {
  const head = await headOf(id);
  expect(head, `no ledger head for ${id}`).not.toBeNull();
  expect(head!.watermark).toBe(lastSeq);
  expect(head!.highest).toBe(lastSeq);
  const { results } = await ledgerFor(env, id)
    .prepare("SELECT kind, amount, layer FROM ledger WHERE account_id = ?")
    .bind(id)
    .all<{ kind: string; amount: number; layer: string | null }>();
  const credit = results.reduce(
    (n, r) =>
      n +
      (r.kind === "grant" || r.kind === "refund"
        ? r.amount
        : r.kind === "expiry" || (r.kind === "charge" && r.layer === "grant")
          ? -r.amount
          : 0),
    0,
  );
  expect(head!.creditPosition, "running credit position vs Σ ledger").toBe(credit);
  // window charges are summed in `usage` rollups
  const charged = sumOf(results.filter((r) => r.kind === "charge" || r.kind === "usage"));
  expect(head!.charged, "running charged total vs Σ charges").toBe(charged);
  return head!;
}

/** Every ledger entry the object wrote is in D1 exactly once, the object confirmed all of it, and the head agrees. */
async function expectLedgerComplete(id: string) {
  const { box, rows } = await drainAccount(id);
  expect(box.pending).toBe(0);
  expect(box.confirmed).toBe(box.lastSeq);
  const ids = rows.map((r) => r.id);
  expect(new Set(ids).size).toBe(ids.length);
  expect([...ids].sort()).toEqual([...box.ledgerIds].sort());
  const view = ledgerView(await outboxMessages(id));
  for (const r of rows) if (view.has(r.id)) expect(r.amount, r.id).toBe(view.get(r.id)!.amount);
  await expectHeadAt(id, box.lastSeq);
  return { box, rows };
}

// ───────────────────────────── tests ─────────────────────────────

describe("a queue send that throws", () => {
  it("keeps the journal unconfirmed; once the queue is back the alarm's check delivers every entry", async () => {
    const id = uid();
    const stub = stubFor(id);
    const sends = { n: 0 };
    const restore = await swapSender(id, () => throwingSender(sends));

    await someActivity(id);
    await runInDurableObject(stub, (instance: AccountDO) => instance.flushOutbox());
    const box = await outboxOf(id);
    expect(box.total).toBeGreaterThan(5);
    expect(box.pending).toBe(box.total);
    expect(box.lastSeq).toBe(box.total);
    expect(box.confirmed).toBe(0);
    expect(sends.n).toBeGreaterThan(0);
    // nothing reached D1
    await sleep(1_500);
    expect(await d1Rows(id)).toEqual([]);
    expect(await headOf(id)).toBeNull();

    // the write scheduled a check; while the queue is still down the check's send fails too, and loses nothing
    expect(await runInDurableObject(stub, (_i: AccountDO, s) => s.storage.getAlarm())).not.toBeNull();
    const before = sends.n;
    expect(await runDurableObjectAlarm(stub)).toBe(true);
    expect(sends.n).toBeGreaterThan(before);
    expect((await outboxOf(id)).pending).toBe(box.total);
    expect(await runInDurableObject(stub, (_i: AccountDO, s) => s.storage.getAlarm())).not.toBeNull();

    await restore();
    // the next check sends what was never sent; the ledger receives all of it…
    expect(await runDurableObjectAlarm(stub)).toBe(true);
    const head = await waitFor(
      () => headOf(id),
      (h) => h?.watermark === box.lastSeq,
    );
    expect(head?.watermark).toBe(box.lastSeq);
    // …and the check after that learns the watermark and confirms the journal
    const { rows } = await expectLedgerComplete(id);

    // the ledger's totals are the account's
    const entries = await ledgerAll(id);
    expect(entries.map((e) => e.id).sort()).toEqual(rows.map((r) => r.id).sort());
    // window charges are in their hour's usage rollup
    const charges = entries.filter((e) => e.kind === "charge" || e.kind === "usage");
    expect(sumOf(charges)).toBe(3 * CREDIT);
    const a = (await account(id, T0 + 5 * SEC)).body;
    expect(sumOf(entries.filter((e) => e.kind === "usage"))).toBe(a.products.codex.fiveHour.used);
    const granted = sumOf(entries.filter((e) => e.kind === "grant"));
    expect(granted - sumOf(charges.filter((e) => e.layer === "grant"))).toBe(a.credits.balance);
    expect((await headOf(id))?.charged).toBe(3 * CREDIT);
    await expectReconciled(id);
  });

  it("a queue that fails intermittently still ends with a complete ledger after the alarms", async () => {
    const id = uid();
    let n = 0;
    const restore = await swapSender(id, (original) => ({
      sendBatch: async (msgs: Iterable<MessageSendRequest<SettlementMessage>>, opts?: QueueSendBatchOptions) => {
        if (n++ % 2 === 0) throw new Error("injected: every other send fails");
        return original.sendBatch(msgs, opts);
      },
    }));
    for (let i = 0; i < 12; i++)
      expect((await consume(id, { product: "codex", cost: 0.1 * CREDIT }, { now: T0 + i * SEC })).status).toBe(200);
    await restore();
    const { rows } = await expectLedgerComplete(id);
    expect(usageCount(rows)).toBe(12);
    await expectReconciled(id);
  });

  it("a send the queue accepted but lost is sent again by a later check, from the watermark on", async () => {
    const id = uid();
    const stub = stubFor(id);
    // the queue takes the messages and they never arrive
    const lost: SettlementMessage[] = [];
    const restore = await swapSender(id, () => capturingSender(lost));
    for (let i = 0; i < 3; i++)
      expect((await consume(id, { product: "codex", cost: 0.2 * CREDIT }, { now: T0 + i * SEC })).status).toBe(200);
    await restore();
    const box = await outboxOf(id);
    expect(lost.flatMap((m) => m.entries).map(seqOf)).toEqual(Array.from({ length: box.lastSeq }, (_, i) => i + 1));
    expect(box.pending).toBe(box.total);
    // the first check finds nothing overdue yet (the sends are younger than any check) and sends nothing again
    expect(await runDurableObjectAlarm(stub)).toBe(true);
    await sleep(1_500);
    expect(await d1Rows(id)).toEqual([]);
    // the next check finds them still missing: overdue, sent again
    expect(await runDurableObjectAlarm(stub)).toBe(true);
    await waitFor(
      () => headOf(id),
      (h) => h?.watermark === box.lastSeq,
    );
    const { rows } = await expectLedgerComplete(id);
    expect(usageCount(rows)).toBe(3);
    await expectReconciled(id);
  });
});

describe("the outbox alarm", () => {
  it("an alarm that finds nothing to send does not stop later entries from being sent", async () => {
    const id = uid();
    const stub = stubFor(id);
    expect((await consume(id, { product: "codex", cost: CREDIT }, { now: T0 })).status).toBe(200);
    // the first charge is sent and settled…
    expect(
      (
        await waitFor(
          () => d1Rows(id),
          (r) => r.length === 1,
        )
      ).length,
    ).toBe(1);
    const first = await outboxOf(id);
    await waitFor(
      () => headOf(id),
      (h) => h?.watermark === first.lastSeq,
    );
    // …and the object's alarm comes round (a check is set for every write): it confirms the journal and finds
    // nothing left to send
    expect(await runDurableObjectAlarm(stub)).toBe(true);
    expect(await outboxOf(id)).toMatchObject({ pending: 0, confirmed: first.lastSeq });
    await runInDurableObject(stub, (instance: AccountDO) => instance.flushOutbox());

    // a later charge must still reach the ledger: on its own, or at the latest by the next alarm (an hour on, so
    // that it has its own usage rollup)
    const second = await consume(id, { product: "codex", cost: 0.5 * CREDIT }, { now: T0 + HOUR });
    expect(second.status).toBe(200);
    await waitFor(
      () => d1Rows(id),
      (r) => r.length === 2,
      3_000,
    );
    await runDurableObjectAlarm(stub);
    const rows = await waitFor(
      () => d1Rows(id),
      (r) => r.length === 2,
      5_000,
    );
    expect(rows.map((r) => r.amount).sort((a, b) => a - b)).toEqual([0.5 * CREDIT, CREDIT]);
    const { box } = await drainAccount(id);
    expect(box.pending, "journal rows left unconfirmed while the object stays alive").toBe(0);
    await expectHeadAt(id, box.lastSeq);
  });
});

describe("the consumer", () => {
  it("a batch delivered twice writes each entry once, and both deliveries are acked", async () => {
    const id = uid();
    // the messages as the object packed them: runs of its journal, several entries to a message
    const captured = await capturedBatches(id);
    const box = await outboxOf(id);
    expect(box.pending, "captured, so sent, but not confirmed").toBe(box.total);
    expect(captured.some((m) => m.entries.length > 1)).toBe(true);
    expect(captured.every((m) => m.accountId === id && m.floor === 0)).toBe(true);
    const all = captured.flatMap((m) => m.entries);
    expect(all.map(seqOf)).toEqual(Array.from({ length: box.lastSeq }, (_, i) => i + 1));
    const ledgerMsgs = all.filter((m) => m.type === "ledger");
    expect(ledgerMsgs.length).toBeGreaterThan(5);
    expect(await d1Rows(id)).toEqual([]);

    const first = batchOf(captured);
    const r1 = await deliver(first);
    expect(r1.retryMessages).toEqual([]);
    expect(r1.explicitAcks.sort()).toEqual(first.messages.map((m) => m.id).sort());
    const head = await expectHeadAt(id, box.lastSeq);

    // the same batch again (a redelivery), through the worker's own queue handler
    const second = batchOf(captured, 2);
    const ctx = createExecutionContext();
    await (worker.queue as ExportedHandlerQueueHandler<Env, SettlementMessage>)(second, env, ctx);
    const r2 = await getQueueResult(second, ctx);
    expect(r2.retryMessages).toEqual([]);
    expect(r2.explicitAcks.sort()).toEqual(second.messages.map((m) => m.id).sort());

    const { results: dupes } = await ledgerFor(env, id)
      .prepare("SELECT id, COUNT(*) AS n FROM ledger WHERE account_id = ? GROUP BY id HAVING n > 1")
      .bind(id)
      .all();
    expect(dupes).toEqual([]);
    const rows = await d1Rows(id);
    expect(rows.map((r) => r.id).sort()).toEqual(ledgerIdsOf(all).sort());
    const events = all.filter((m) => m.type === "event");
    const { results: ev } = await ledgerFor(env, id)
      .prepare("SELECT COUNT(*) AS n FROM events WHERE account_id = ?")
      .bind(id)
      .all<{ n: number }>();
    expect(ev[0].n).toBe(events.length);
    // the redelivery moved nothing: the running totals were not counted twice
    expect(await expectHeadAt(id, box.lastSeq)).toMatchObject({
      creditPosition: head.creditPosition,
      charged: head.charged,
    });
    await expectReconciled(id);
    // the object learns the watermark at its next check and confirms its journal
    expect((await drainAccount(id)).box).toMatchObject({ pending: 0, confirmed: box.lastSeq });
  });

  it("the same message twice in one batch is written once and both copies are acked", async () => {
    const id = uid();
    const captured: SettlementMessage[] = [];
    const restore = await swapSender(id, () => capturingSender(captured));
    expect((await consume(id, { product: "codex", cost: CREDIT }, { now: T0 })).status).toBe(200);
    await restore();
    const charge = singles(captured).find(isLedger)!;
    const batch = createMessageBatch<SettlementMessage>("settlement", [
      { id: "dup-a", timestamp: new Date(), attempts: 1, body: charge },
      { id: "dup-b", timestamp: new Date(), attempts: 1, body: charge },
    ]);
    const r = await deliver(batch);
    expect(r.explicitAcks.sort()).toEqual(["dup-a", "dup-b"]);
    expect(r.retryMessages).toEqual([]);
    // a window charge: its hour's usage rollup, counted once
    const { results } = await ledgerFor(env, id)
      .prepare("SELECT id, kind, amount, usage_count FROM ledger WHERE account_id = ?")
      .bind(id)
      .all<{ id: string; kind: string; amount: number; usage_count: number }>();
    expect(results).toEqual([{ id: usageIdOf(ledgerEntryOf(charge)), kind: "usage", amount: CREDIT, usage_count: 1 }]);
    expect((await headOf(id))?.charged).toBe(CREDIT);
  });

  it("fails mid-batch: the failed message and those after it are retried with backoff, the rest acked, the gap is in flight (not drift), and redelivery converges without duplicates", async () => {
    const id = uid();
    const captured = await capturedActivity(id);
    const lastSeq = (await outboxOf(id)).lastSeq;
    const batch = batchOf(captured);
    // the failing message: the second ledger entry in the batch
    const failIndex = captured.findIndex((m, i) => isLedger(m) && captured.slice(0, i).some(isLedger));
    expect(failIndex).toBeGreaterThan(0);
    expect(failIndex).toBeLessThan(captured.length - 1);
    // call 1 is the whole batch; call k + 2 is message k on its own
    const flaky = flakyEnv(id, (n) => (n === 1 || n === failIndex + 2 ? "fail" : "ok"));
    const r = await deliver(batch, flaky.env);
    expect(flaky.state.failed).toBe(2);
    const failedId = batch.messages[failIndex].id;
    // the messages after it do not continue the ledger yet: they wait (retried), none is applied past the gap
    const waiting = batch.messages.slice(failIndex + 1).map((m) => m.id);
    expect(r.retryMessages.map((m) => m.msgId).sort()).toEqual([failedId, ...waiting].sort());
    // retried with a backoff delay, which grows with the attempts
    const firstDelay = r.delays.get(failedId) ?? 0;
    expect(firstDelay).toBeGreaterThan(0);
    for (const w of waiting) expect(r.delays.get(w) ?? 0).toBeGreaterThan(0);
    const later = createMessageBatch<SettlementMessage>("settlement", [
      { id: failedId, timestamp: new Date(), attempts: 4, body: captured[failIndex] },
    ]);
    const rLater = await deliver(later, flakyEnv(id, () => "fail").env);
    expect(rLater.retryMessages.map((m) => m.msgId)).toEqual([failedId]);
    expect(rLater.delays.get(failedId) ?? 0).toBeGreaterThan(firstDelay);
    expect(r.explicitAcks.sort()).toEqual(
      batch.messages
        .slice(0, failIndex)
        .map((m) => m.id)
        .sort(),
    );

    // everything before the failed entry is settled
    const failedSeq = ledgerEntryOf(captured[failIndex]).seq;
    let rows = await d1Rows(id);
    expect(rows.map((x) => x.id).sort()).toEqual(ledgerIdsIn(captured.slice(0, failIndex)).sort());
    // the watermark stops below the missing entry; the entries past it were seen (a gap)
    const gapped = await headOf(id);
    expect(gapped).toMatchObject({ watermark: failedSeq - 1, highest: lastSeq });
    // reconciliation compares at the watermark: the missing entries are in flight, with the gap, and are not drift
    const rec = await reconciliation(`?accountId=${id}`);
    expect(rec.status, JSON.stringify(rec.body)).toBe(200);
    expect(rec.body.drifted).toEqual([]);
    expect(rec.body.inFlight).toEqual([
      expect.objectContaining({ accountId: id, fromSeq: failedSeq, toSeq: lastSeq, gap: true }),
    ]);

    // redeliver what was retried (plus, as a queue may, one already acked message), out of order
    const again = createMessageBatch<SettlementMessage>("settlement", [
      ...batch.messages
        .slice(failIndex)
        .reverse()
        .map((m) => ({ id: m.id, timestamp: new Date(), attempts: 2, body: m.body })),
      { id: batch.messages[0].id, timestamp: new Date(), attempts: 2, body: captured[0] },
    ]);
    const r2 = await deliver(again);
    expect(r2.retryMessages).toEqual([]);
    expect(r2.explicitAcks.sort()).toEqual(again.messages.map((m) => m.id).sort());
    rows = await d1Rows(id);
    expect(rows.map((x) => x.id).sort()).toEqual(ledgerIdsIn(captured).sort());
    // the filled gap moves the watermark over everything
    await expectHeadAt(id, lastSeq);
    await expectReconciled(id);
  });

  it("a whole-batch failure that heals at once: every message is settled on its own and acked", async () => {
    const id = uid();
    const captured = await capturedActivity(id);
    const batch = batchOf(captured);
    const flaky = flakyEnv(id, (n) => (n === 1 ? "fail" : "ok"));
    const r = await deliver(batch, flaky.env);
    expect(r.retryMessages).toEqual([]);
    expect(r.explicitAcks).toHaveLength(captured.length);
    expect((await d1Rows(id)).length).toBe(ledgerIdsIn(captured).length);
    await expectHeadAt(id, (await outboxOf(id)).lastSeq);
    await expectReconciled(id);
  });

  it("a D1 write that commits but reports failure: the retries do not duplicate anything", async () => {
    const id = uid();
    const captured = await capturedActivity(id);
    const batch = batchOf(captured);
    // the whole-batch write commits and then throws; the first per-message write does the same
    const flaky = flakyEnv(id, (n) => (n <= 2 ? "fail-after-commit" : "ok"));
    const r = await deliver(batch, flaky.env);
    expect(r.retryMessages.map((m) => m.msgId)).toEqual([batch.messages[0].id]);
    const again = createMessageBatch<SettlementMessage>("settlement", [
      { id: batch.messages[0].id, timestamp: new Date(), attempts: 2, body: captured[0] },
    ]);
    expect((await deliver(again)).explicitAcks).toEqual([batch.messages[0].id]);
    const rows = await d1Rows(id);
    expect(rows.length).toBe(ledgerIdsIn(captured).length);
    expect(new Set(rows.map((x) => x.id)).size).toBe(rows.length);
    // every entry was applied up to three times; the running totals counted each once
    await expectHeadAt(id, (await outboxOf(id)).lastSeq);
    await expectReconciled(id);
  });

  it("D1 down for a whole delivery: every message is retried, none acked, none lost", async () => {
    const id = uid();
    const captured = await capturedActivity(id);
    const batch = batchOf(captured);
    const r = await deliver(batch, flakyEnv(id, () => "fail").env);
    expect(r.explicitAcks).toEqual([]);
    expect(r.ackAll).toBe(false);
    expect(r.retryMessages.map((m) => m.msgId).sort()).toEqual(batch.messages.map((m) => m.id).sort());
    expect(await d1Rows(id)).toEqual([]);
    expect(await headOf(id)).toBeNull();
    const r2 = await deliver(batchOf(captured, 2));
    expect(r2.explicitAcks).toHaveLength(captured.length);
    expect((await d1Rows(id)).length).toBe(ledgerIdsIn(captured).length);
    await expectHeadAt(id, (await outboxOf(id)).lastSeq);
  });

  it("a malformed batch is retried (towards the dead-letter queue) as a whole, without holding back the others", async () => {
    const id = uid();
    const captured: SettlementMessage[] = [];
    const restore = await swapSender(id, () => capturingSender(captured));
    expect((await consume(id, { product: "codex", cost: CREDIT }, { now: T0 })).status).toBe(200);
    await restore();
    const good = singles(captured).find(isLedger)!;
    const entry = ledgerEntryOf(good);
    // a batch of two: a well-formed entry, then one with a negative amount; neither may be written
    const wellFormed = { ...entry, id: uid("ok-part"), seq: entry.seq + 1 };
    const negative = { ...entry, id: uid("bad-entry"), seq: entry.seq + 2, amount: -5 };
    const bad: SettlementMessage = {
      accountId: id,
      floor: 0,
      entries: [
        { type: "ledger", entry: wellFormed },
        { type: "ledger", entry: negative },
      ],
    };
    const batch = createMessageBatch<SettlementMessage>("settlement", [
      { id: "good", timestamp: new Date(), attempts: 1, body: good },
      { id: "bad", timestamp: new Date(), attempts: 3, body: bad },
    ]);
    const r = await deliver(batch);
    expect(r.explicitAcks).toEqual(["good"]);
    expect(r.retryMessages.map((m) => m.msgId)).toEqual(["bad"]);
    expect(r.delays.get("bad") ?? 0).toBeGreaterThan(0);
    expect((await d1Rows(id)).map((x) => x.id)).toEqual([usageIdOf(entry)]);
    expect((await headOf(id))?.highest).toBeLessThan(wellFormed.seq);
  });
});

describe("an object evicted between commit and send", () => {
  it("evicted after a failed send: the rebuilt object's alarm delivers everything", async () => {
    const id = uid();
    await swapSender(id, () => throwingSender());
    await someActivity(id);
    const box = await outboxOf(id);
    expect(box.pending).toBe(box.total);

    await evictDurableObject(stubFor(id));
    // the rebuilt object has the real sender again (the swap lived only in memory) and its alarm survived
    const stub = stubFor(id);
    expect(await runInDurableObject(stub, (_i: AccountDO, s) => s.storage.getAlarm())).not.toBeNull();
    expect(await runDurableObjectAlarm(stub)).toBe(true);
    const { rows } = await expectLedgerComplete(id);
    expect(rows.length).toBe(box.ledgerIds.length);
    await expectReconciled(id);
  });

  it("aborted while the send hangs: the committed charge is not lost", async () => {
    const id = uid();
    await swapSender(id, () => ({ sendBatch: () => new Promise<QueueSendBatchResponse>(() => {}) }));
    const r = await consume(id, { product: "codex", cost: CREDIT }, { now: T0 });
    expect(r.status).toBe(200);
    const c = await consume(id, { product: "codex", cost: 0.5 * CREDIT }, { now: T0 + SEC });
    expect(c.status).toBe(200);
    const box = await outboxOf(id);
    expect(box.pending).toBe(box.total);
    // both window charges, in one hour: one usage rollup
    expect(box.ledgerIds).toHaveLength(1);

    await abortAllDurableObjects();
    const stub = stubFor(id);
    // same state after the rebuild
    expect((await outboxOf(id)).pending).toBe(box.total);
    expect(await runDurableObjectAlarm(stub)).toBe(true);
    await expectLedgerComplete(id);
    const entries = await ledgerAll(id);
    expect(entries.map((e) => [e.kind, e.amount, e.count])).toEqual([["usage", 1.5 * CREDIT, 2]]);
    await expectReconciled(id);
  });
});

// ───────────────────────── seeded random workload ─────────────────────────

describe("a random workload", () => {
  it("≥ 500 operations over several accounts, with a flaky queue on some, alarms firing and evictions between requests, reconcile to zero drift", async () => {
    const SEED = 0x5eed_2026;
    const ACCOUNTS = 6;
    const OPS = 90;
    const ids = Array.from({ length: ACCOUNTS }, (_, i) => uid(`wl${i}`));
    const tally: Record<string, number> = {};
    const count = (k: string) => (tally[k] = (tally[k] ?? 0) + 1);
    const unexpected: string[] = [];

    async function run(id: string, index: number) {
      const rng = mulberry32(SEED + index * 7919);
      const int = (lo: number, hi: number) => lo + Math.floor(rng() * (hi - lo + 1));
      const pick = <T>(xs: T[]) => xs[Math.floor(rng() * xs.length)];
      let restore: (() => Promise<void>) | null = null;
      if (index % 2 === 0) {
        // every other account's queue sends fail about a third of the time
        const failRng = mulberry32(SEED ^ (index + 1));
        restore = await swapSender(id, (original) => ({
          sendBatch: async (msgs: Iterable<MessageSendRequest<SettlementMessage>>, opts?: QueueSendBatchOptions) => {
            if (failRng() < 0.35) throw new Error("injected: flaky queue");
            return original.sendBatch(msgs, opts);
          },
        }));
      }
      let now = T0 + index * 1000;
      const holds: string[] = [];
      const expectStatus = (op: string, r: { status: number; body: any }, ok: number[]) => {
        count(`${op}:${r.status}`);
        if (!ok.includes(r.status))
          unexpected.push(
            `${id} ${op} at ${new Date(now).toISOString()} → ${r.status} ${JSON.stringify(r.body).slice(0, 300)}`,
          );
      };
      for (let i = 0; i < OPS; i++) {
        now += int(0, 120) * SEC;
        if (rng() < 0.03) now += 5 * HOUR;
        const dice = rng();
        const product = rng() < 0.8 ? "codex" : "sora";
        if (dice < 0.3) {
          expectStatus("consume", await consume(id, { product, cost: int(10_000, 1_500_000) }, { now }), [200, 429]);
        } else if (dice < 0.42) {
          const kind = pick(["purchase", "promo", "entitlement"] as const);
          const body: Record<string, unknown> = { amount: int(100_000, 4_000_000), kind };
          if (kind === "promo" || rng() < 0.2) body.expiresAt = new Date(now + int(1, 48) * HOUR).toISOString();
          if (kind === "entitlement" && rng() < 0.5) body.products = [product];
          expectStatus("credits", await addCredits(id, body, { now }), [201]);
        } else if (dice < 0.62) {
          const r = await call(
            "POST",
            `/v1/accounts/${id}/holds`,
            { product, cost: int(50_000, 2_000_000), ttlSeconds: int(30, 3600) },
            { now },
          );
          expectStatus("hold", r, [201, 429]);
          if (r.status === 201) holds.push(r.body.holdId);
        } else if (dice < 0.77 && holds.length > 0) {
          const h = holds.splice(Math.floor(rng() * holds.length), 1)[0];
          // 409 when the hold already expired at its TTL
          expectStatus(
            "settle",
            await call("POST", `/v1/accounts/${id}/holds/${h}/settle`, { cost: int(10_000, 3_000_000) }, { now }),
            [200, 409],
          );
        } else if (dice < 0.83 && holds.length > 0) {
          const h = holds.splice(Math.floor(rng() * holds.length), 1)[0];
          expectStatus(
            "release",
            await call("POST", `/v1/accounts/${id}/holds/${h}/release`, undefined, { now }),
            [200, 409],
          );
        } else if (dice < 0.86) {
          // the object's alarm comes round at any time (expiries, pruning, outbox retries)
          await runDurableObjectAlarm(stubFor(id));
          count("alarm");
        } else if (dice < 0.88) {
          // the object is evicted at a random point: its state and undelivered outbox must survive it
          // (a read first, as only a running object can be evicted)
          expectStatus("account", await account(id, now), [200]);
          await evictDurableObject(stubFor(id));
          count("evict");
        } else if (dice < 0.92) {
          expectStatus(
            "refund",
            await call(
              "POST",
              `/v1/admin/accounts/${id}/refunds`,
              { amount: int(10_000, 1_000_000), reason: "workload" },
              { now, token: ADMIN },
            ),
            [201],
          );
        } else {
          const r = await account(id, now);
          expectStatus("account", r, [200]);
          if (r.status === 200) {
            if (r.body.credits.balance < 0) unexpected.push(`${id} negative balance ${r.body.credits.balance}`);
            for (const p of Object.values(r.body.products) as any[])
              for (const w of [p.fiveHour, p.weekly])
                if (w.used > w.limit || w.remaining < 0)
                  unexpected.push(`${id} window over limit ${JSON.stringify(w)}`);
          }
        }
        count("ops");
      }
      if (restore) await restore();
    }

    const started = Date.now();
    await Promise.all(ids.map((id, i) => run(id, i)));
    expect(unexpected).toEqual([]);
    expect(tally.ops).toBeGreaterThanOrEqual(500);
    // the workload really exercised the interesting paths
    expect(tally["consume:200"] ?? 0).toBeGreaterThan(0);
    expect(tally["hold:201"] ?? 0).toBeGreaterThan(0);
    expect(tally["settle:200"] ?? 0).toBeGreaterThan(0);
    expect(tally["release:200"] ?? 0).toBeGreaterThan(0);

    // drain: each account's alarm re-sends what the flaky queue dropped; then D1 must hold every entry once
    for (const id of ids) await expectLedgerComplete(id);

    const report = await reconciliation();
    expect(report.status, JSON.stringify(report.body)).toBe(200);
    expect(report.body.checked).toBeGreaterThanOrEqual(ACCOUNTS);
    expect(report.body.drifted.filter((d: any) => ids.includes(d.accountId))).toEqual([]);
    // and nothing else in this file drifted either
    expect(report.body.drifted).toEqual([]);
    expect(Date.now() - started).toBeLessThan(60_000);
  }, 90_000);
});

// ───────────────────────────── ledger route ─────────────────────────────

describe("GET /v1/accounts/{id}/ledger", () => {
  it("pages with limit and cursor in settlement order, nextCursor null at the end; entries have the SPEC shape, window charges in a usage rollup", async () => {
    const id = uid();
    const g = await addCredits(id, { amount: 5 * CREDIT, kind: "purchase" }, { now: T0 });
    expect(g.status).toBe(201);
    const c1 = await consume(id, { product: "codex", cost: CREDIT }, { now: T0 + SEC });
    const c2 = await consume(
      id,
      { product: "codex", usage: { model: "gpt-5-codex", outputTokens: 200_000 } },
      { now: T0 + 2 * SEC },
    ); // 2 credits: window 1 + grant 1
    expect([c1.status, c2.status]).toEqual([200, 200]);
    expect(c2.body.sources).toEqual([
      { layer: "window", amount: CREDIT },
      { layer: "grant", grantId: g.body.id, amount: CREDIT },
    ]);
    const h = await call("POST", `/v1/accounts/${id}/holds`, { product: "codex", cost: CREDIT }, { now: T0 + 3 * SEC });
    expect(h.status).toBe(201);
    expect(
      (await call("POST", `/v1/accounts/${id}/holds/${h.body.holdId}/release`, undefined, { now: T0 + 4 * SEC }))
        .status,
    ).toBe(200);
    const rf = await call(
      "POST",
      `/v1/admin/accounts/${id}/refunds`,
      { amount: 300_000, reason: "goodwill" },
      { now: T0 + 5 * SEC },
    );
    expect(rf.status).toBe(201);

    const { box } = await expectLedgerComplete(id);
    const all = await call("GET", `/v1/accounts/${id}/ledger?limit=500`);
    expect(all.status).toBe(200);
    expect(all.body.nextCursor).toBeNull();
    const entries = all.body.entries as any[];
    expect(entries).toHaveLength(box.ledgerIds.length);
    expect(entries.length).toBeGreaterThanOrEqual(6);

    // shape
    for (const e of entries) {
      expect(LEDGER_KINDS).toContain(e.kind);
      expect(Number.isSafeInteger(e.amount)).toBe(true);
      expect(e.amount).toBeGreaterThan(0);
      expect(typeof e.id).toBe("string");
      expect(new Date(e.createdAt).toISOString()).toBe(e.createdAt);
      for (const k of Object.keys(e))
        expect([
          "id",
          "kind",
          "amount",
          "layer",
          "product",
          "grantId",
          "decisionId",
          "holdId",
          "rateCardVersion",
          "from",
          "to",
          "count",
          "createdAt",
        ]).toContain(k);
      if (e.kind === "charge") expect(["window", "grant", "flex"]).toContain(e.layer);
      if (e.layer === "grant") expect(e.grantId).toBe(g.body.id);
    }
    // money moves oldest first
    const times = entries.filter((e) => e.kind !== "usage").map((e) => Date.parse(e.createdAt));
    expect(times).toEqual([...times].sort((a, b) => a - b));
    // one charge entry per money layer that paid, tied to its decision; the window's part is in the hour's rollup
    const c2Charges = entries.filter((e) => e.kind === "charge" && e.decisionId === c2.body.decisionId);
    expect(c2Charges.map((e) => [e.layer, e.amount])).toEqual([["grant", CREDIT]]);
    const hour = Math.floor(T0 / HOUR) * HOUR;
    expect(entries.filter((e) => e.kind === "usage")).toEqual([
      {
        id: `usage:${id}:codex:${hour}`,
        kind: "usage",
        amount: 2 * CREDIT,
        layer: "window",
        product: "codex",
        from: new Date(hour).toISOString(),
        to: new Date(hour + HOUR).toISOString(),
        count: 2,
        createdAt: new Date(T0 + SEC).toISOString(),
      },
    ]);
    expect(c2Charges.every((e) => e.rateCardVersion === c2.body.rateCardVersion)).toBe(true);
    expect(entries.filter((e) => e.kind === "grant").map((e) => [e.grantId, e.amount])).toContainEqual([
      g.body.id,
      5 * CREDIT,
    ]);
    expect(entries.filter((e) => e.kind === "refund").map((e) => e.amount)).toEqual([300_000]);
    expect(sumOf(entries.filter((e) => e.kind === "hold"))).toBe(CREDIT);
    expect(sumOf(entries.filter((e) => e.kind === "release" && e.holdId === h.body.holdId))).toBe(CREDIT);

    // pages of 3 give the same entries, in the same order, without overlap
    const paged: any[] = [];
    let cursor: string | null = null;
    let pages = 0;
    do {
      const q: string = cursor ? `?limit=3&cursor=${cursor}` : "?limit=3";
      const p = await call("GET", `/v1/accounts/${id}/ledger${q}`);
      expect(p.status).toBe(200);
      expect(p.body.entries.length).toBeLessThanOrEqual(3);
      pages++;
      paged.push(...p.body.entries);
      if (p.body.nextCursor !== null) expect(p.body.entries).toHaveLength(3);
      cursor = p.body.nextCursor;
    } while (cursor !== null && pages < 50);
    expect(cursor).toBeNull();
    expect(pages).toBe(Math.ceil(entries.length / 3));
    expect(paged).toEqual(entries);

    // a page that ends exactly at the last entry says so
    const exact = await call("GET", `/v1/accounts/${id}/ledger?limit=${entries.length}`);
    expect(exact.body.entries).toHaveLength(entries.length);
    expect(exact.body.nextCursor).toBeNull();
    const short = await call("GET", `/v1/accounts/${id}/ledger?limit=${entries.length - 1}`);
    expect(short.body.nextCursor).not.toBeNull();
    const tail = await call("GET", `/v1/accounts/${id}/ledger?limit=${entries.length}&cursor=${short.body.nextCursor}`);
    expect(tail.body.entries).toEqual([entries[entries.length - 1]]);
    expect(tail.body.nextCursor).toBeNull();
  });

  it("is empty for an account with no entries, and refuses bad paging and missing auth", async () => {
    const empty = await call("GET", `/v1/accounts/${uid()}/ledger`);
    expect(empty.status).toBe(200);
    expect(empty.body).toEqual({ entries: [], nextCursor: null });
    const id = uid();
    for (const q of ["limit=0", "limit=501", "limit=abc", "cursor=abc", "cursor=-1"]) {
      const r = await call("GET", `/v1/accounts/${id}/ledger?${q}`);
      expect(r.status, q).toBe(400);
      expect(r.body.error.code).toBe("invalid_request");
    }
    expect((await call("GET", `/v1/accounts/${id}/ledger`, undefined, { token: null })).status).toBe(401);
  });

  it("another account's entries never appear", async () => {
    const a = uid();
    const b = uid();
    expect((await consume(a, { product: "codex", cost: CREDIT }, { now: T0 })).status).toBe(200);
    expect((await consume(b, { product: "codex", cost: 0.5 * CREDIT }, { now: T0 })).status).toBe(200);
    await expectLedgerComplete(a);
    await expectLedgerComplete(b);
    const ea = await ledgerAll(a);
    expect(ea.map((e) => e.amount)).toEqual([CREDIT]);
  });
});
