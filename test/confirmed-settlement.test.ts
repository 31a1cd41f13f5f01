/**
 * Confirmed settlement (SPEC §7), with three faults injected at once into the real queue, consumer and objects:
 * - every object's sender resolves but delivers nothing on a random 30% of `sendBatch` calls;
 * - the real queue consumer throws on a random 20% of batches (half before its D1 write, half after it);
 * - objects are evicted at random points.
 * After a mixed workload of more than 2,000 balance changes over 24 accounts, every entry is in D1 exactly once, the
 * ledger's running totals equal both its rows and the objects' totals, and reconciliation finds no drift.
 * Also: the watermark, gaps and their refill, the consistent cut, and pruning only below the watermark.
 */
import { idOf, isUsage, seqOf } from "../worker/core/journal";
import { afterEach, describe, expect, it } from "vitest";
import { evictDurableObject, runDurableObjectAlarm, runInDurableObject } from "cloudflare:test";
import { env } from "cloudflare:workers";
import type { AccountDO } from "../durable-objects/account/object";
import { faultPoints, type Sender } from "../worker/settlement/fault-points";
import { readHead } from "../worker/settlement/heads";
import type { SettlementMessage } from "../worker/settlement/messages";
import { ledgerFor, settlementQueueFor } from "../worker/settlement/shards";
import { ADMIN, account, addCredits, CREDIT, call, consume, HOUR, T0, uid, mulberry32 } from "./helpers";
import { ledgerView, outboxOf, sleep, stubFor } from "./settle-helpers";
import { journalIn, rewindToVersion5 } from "./storage-helpers";

const SEC = 1000;

interface Faults {
  sends: number;
  dropped: number;
  batches: number;
  thrown: number;
}

/** Turns on the sender and consumer faults for every object and batch until `afterEach` turns them off. */
function injectFaults(seed: number, drop = 0.3, fail = 0.2): Faults {
  const rng = mulberry32(seed);
  const f: Faults = { sends: 0, dropped: 0, batches: 0, thrown: 0 };
  faultPoints.sender = (queue: Sender): Sender => ({
    sendBatch: async (msgs, opts) => {
      f.sends++;
      if (rng() < drop) {
        // resolves as a real send would, and delivers nothing
        f.dropped++;
        return { metadata: { metrics: { backlogCount: 0, backlogBytes: 0 } } };
      }
      return queue.sendBatch(msgs, opts);
    },
  });
  // half of the failing batches die before their D1 write, half after it (written, never acked)
  const failing = new WeakMap<object, "before" | "after">();
  faultPoints.consumer = (batch, stage) => {
    if (stage === "before") {
      f.batches++;
      // the first batch always fails, so the fault is certain to fire however few batches a run has
      if (f.batches === 1 || rng() < fail) failing.set(batch, rng() < 0.5 ? "before" : "after");
    }
    if (failing.get(batch) === stage) {
      f.thrown++;
      throw new Error(`injected: consumer fails ${stage} its write`);
    }
  };
  return f;
}

afterEach(() => {
  faultPoints.sender = undefined;
  faultPoints.consumer = undefined;
});

/** The object's journal as it stands: its last seq, what it confirmed, and its ledger entries. */
async function journalOf(id: string) {
  return runInDurableObject(stubFor(id), (_i: AccountDO, state) => {
    const sql = state.storage.sql;
    const messages = journalIn(sql).map((message) => ({ seq: seqOf(message), message }));
    return { messages, lastSeq: sql.exec<{ n: number }>("SELECT journal_seq AS n FROM account").one().n };
  });
}

/**
 * The ledger's rows and events for one account, with their sequence numbers (`usage` rollups have none: they sum
 * window charges).
 */
async function ledgerOf(id: string) {
  const rows = await ledgerFor(env, id)
    .prepare(`SELECT id, account_seq, kind, amount, layer, usage_count FROM ledger WHERE account_id = ?
      ORDER BY account_seq`)
    .bind(id)
    .all<{
      id: string;
      account_seq: number | null;
      kind: string;
      amount: number;
      layer: string | null;
      usage_count: number | null;
    }>();
  const events = await ledgerFor(env, id)
    .prepare("SELECT id, account_seq FROM events WHERE account_id = ? ORDER BY account_seq")
    .bind(id)
    .all<{ id: string; account_seq: number }>();
  return { rows: rows.results, events: events.results };
}

/** The running totals recomputed from the ledger's rows: what `ledger_heads` must hold. */
function sums(rows: { kind: string; amount: number; layer: string | null }[]) {
  let creditPosition = 0;
  let charged = 0;
  for (const r of rows) {
    if (r.kind === "grant" || r.kind === "refund") creditPosition += r.amount;
    if (r.kind === "expiry" || (r.kind === "charge" && r.layer === "grant")) creditPosition -= r.amount;
    if (r.kind === "charge" || r.kind === "usage") charged += r.amount;
  }
  return { creditPosition, charged };
}

/** Runs each account's settlement check (its alarm) until every journal is confirmed, faults still on. */
async function settleAll(ids: string[], timeoutMs = 90_000): Promise<number> {
  const deadline = Date.now() + timeoutMs;
  let rounds = 0;
  let open = ids;
  while (open.length > 0 && Date.now() < deadline) {
    rounds++;
    await Promise.all(open.map((id) => runDurableObjectAlarm(stubFor(id))));
    await sleep(400);
    const boxes = await Promise.all(open.map((id) => outboxOf(id)));
    open = open.filter((_, i) => boxes[i].confirmed < boxes[i].lastSeq);
  }
  expect(open, `accounts not confirmed after ${rounds} rounds`).toEqual([]);
  return rounds;
}

/** Asserts the account's journal is in D1 exactly once, and the head's watermark and totals are right. */
async function expectExactlyOnce(id: string) {
  const journal = await journalOf(id);
  const { rows, events } = await ledgerOf(id);
  const head = await readHead(ledgerFor(env, id), id);
  expect(head?.watermark, id).toBe(journal.lastSeq);
  // every seq 1..lastSeq exactly once, across money entries, events and the window usage the rollups sum
  const entries = rows.filter((r) => r.kind !== "usage");
  const usageSeqs = journal.messages.flatMap((m) =>
    m.message.type === "ledger" && isUsage(m.message.entry) ? [m.seq] : [],
  );
  const seqs = [...entries.map((r) => r.account_seq ?? 0), ...events.map((e) => e.account_seq), ...usageSeqs];
  expect(seqs.sort((a, b) => a - b)).toEqual(Array.from({ length: journal.lastSeq }, (_, i) => i + 1));
  // and each row is the entry the object journaled under that seq
  const byId = new Map(journal.messages.map((m) => [idOf(m.message), m.seq]));
  for (const r of entries) expect(byId.get(r.id), r.id).toBe(r.account_seq);
  expect(new Set(rows.map((r) => r.id)).size).toBe(rows.length);
  // each rollup sums its hour's window charges, each counted once
  const rollup = (id: string, amount: number, count: number) => [id, { amount, count }] as const;
  const expected = [...ledgerView(journal.messages.map((m) => m.message))].flatMap(([id, v]) =>
    v.kind === "usage" ? [rollup(id, v.amount, v.count)] : [],
  );
  const actual = rows.flatMap((r) => (r.kind === "usage" ? [rollup(r.id, r.amount, r.usage_count ?? 0)] : []));
  expect(Object.fromEntries(actual)).toEqual(Object.fromEntries(expected));
  // running totals equal the rows' sums
  expect({ creditPosition: head?.creditPosition, charged: head?.charged }).toEqual(sums(rows));
  return { rows, lastSeq: journal.lastSeq };
}

// ───────────────────────── the three faults at once ─────────────────────────

describe("three faults at once: dropped sends, a failing consumer, evictions", () => {
  it("over 2,000 balance changes on 24 accounts: every entry in D1 exactly once, totals equal, no drift", async () => {
    const SEED = 0x14_2026;
    const faults = injectFaults(SEED);
    const ACCOUNTS = 24;
    const OPS = 72;
    const ids = Array.from({ length: ACCOUNTS }, (_, i) => uid(`cs${i}`));
    const tally: Record<string, number> = {};
    const count = (k: string) => {
      tally[k] = (tally[k] ?? 0) + 1;
    };
    const unexpected: string[] = [];

    async function run(id: string, index: number) {
      const rng = mulberry32(SEED + index * 7919);
      const int = (lo: number, hi: number) => lo + Math.floor(rng() * (hi - lo + 1));
      let now = T0 + index * SEC;
      const holds: string[] = [];
      const expectStatus = (op: string, r: { status: number; body: unknown }, ok: number[]) => {
        count(`${op}:${r.status}`);
        if (!ok.includes(r.status))
          unexpected.push(`${id} ${op} → ${r.status} ${JSON.stringify(r.body).slice(0, 200)}`);
      };
      // enough credits that most decisions reach the grant layer once the windows run out
      expectStatus("credits", await addCredits(id, { amount: 40 * CREDIT, kind: "purchase" }, { now }), [201]);
      for (let i = 0; i < OPS; i++) {
        now += int(1, 90) * SEC;
        const dice = rng();
        if (dice < 0.4) {
          expectStatus(
            "consume",
            await consume(id, { product: "codex", cost: int(100_000, 1_500_000) }, { now }),
            [200, 429],
          );
        } else if (dice < 0.55) {
          const r = await call(
            "POST",
            `/v1/accounts/${id}/holds`,
            { product: "codex", cost: int(200_000, 2_000_000) },
            { now },
          );
          expectStatus("hold", r, [201, 429]);
          if (r.status === 201) holds.push(r.body.holdId);
        } else if (dice < 0.7 && holds.length > 0) {
          const h = holds.splice(int(0, holds.length - 1), 1)[0];
          expectStatus(
            "settle",
            await call("POST", `/v1/accounts/${id}/holds/${h}/settle`, { cost: int(100_000, 2_500_000) }, { now }),
            [200, 409],
          );
        } else if (dice < 0.76 && holds.length > 0) {
          const h = holds.splice(int(0, holds.length - 1), 1)[0];
          expectStatus(
            "release",
            await call("POST", `/v1/accounts/${id}/holds/${h}/release`, undefined, { now }),
            [200, 409],
          );
        } else if (dice < 0.84) {
          const kind = rng() < 0.5 ? "promo" : "purchase";
          const body = {
            amount: int(500_000, 5_000_000),
            kind,
            expiresAt: new Date(now + int(1, 72) * HOUR).toISOString(),
          };
          expectStatus("credits", await addCredits(id, body, { now }), [201]);
        } else if (dice < 0.88) {
          expectStatus(
            "refund",
            await call(
              "POST",
              `/v1/admin/accounts/${id}/refunds`,
              { amount: int(10_000, 500_000), reason: "faults" },
              { now, token: ADMIN },
            ),
            [201],
          );
        } else if (dice < 0.94) {
          // an eviction at a random point: after a read, so the object is running
          expectStatus("account", await account(id, now), [200]);
          await evictDurableObject(stubFor(id));
          count("evict");
        } else {
          // the object's alarm (settlement check, expiries, pruning) at a random point
          await runDurableObjectAlarm(stubFor(id));
          count("alarm");
        }
      }
    }

    await Promise.all(ids.map((id, i) => run(id, i)));
    expect(unexpected).toEqual([]);
    expect(tally["consume:200"] ?? 0).toBeGreaterThan(100);
    expect(tally["settle:200"] ?? 0).toBeGreaterThan(20);
    expect(tally.evict ?? 0).toBeGreaterThan(20);

    const rounds = await settleAll(ids);
    let changes = 0;
    for (const id of ids) changes += (await expectExactlyOnce(id)).lastSeq;
    // the faults really fired, and the workload was as large as promised
    expect(changes).toBeGreaterThanOrEqual(2_000);
    expect(faults.dropped).toBeGreaterThan(10);
    expect(faults.thrown, JSON.stringify(faults)).toBeGreaterThan(0);

    // reconciliation at the watermark: no drift and nothing in flight, for every account
    for (const id of ids) {
      const r = await call("GET", `/v1/admin/reconciliation?accountId=${id}`, undefined, { token: ADMIN });
      expect(r.status).toBe(200);
      expect(r.body.drifted).toEqual([]);
      expect(r.body.inFlight).toEqual([]);
    }
    console.warn(JSON.stringify({ changes, rounds, faults, tally }));
  }, 240_000);
});

// ───────────────────────── the protocol, piece by piece ─────────────────────────

/** Sends every journal batch to `into` instead of the queue, for one account's current object. */
async function capture(id: string, into: SettlementMessage[]): Promise<void> {
  await runInDurableObject(stubFor(id), (instance: AccountDO) => {
    instance.settlement = {
      sendBatch: async (msgs) => {
        for (const m of msgs) into.push(structuredClone(m.body));
        return { metadata: { metrics: { backlogCount: 0, backlogBytes: 0 } } };
      },
    };
  });
}

describe("the watermark", () => {
  it("stops at a missing seq, reports the gap as in flight (not drift), and a check refills it", async () => {
    const id = uid("gap");
    const captured: SettlementMessage[] = [];
    expect((await account(id, T0)).status).toBe(200);
    await addCredits(id, { amount: 10 * CREDIT, kind: "purchase" }, { now: T0 });
    await capture(id, captured);
    for (let i = 1; i <= 4; i++)
      expect((await consume(id, { product: "codex", cost: 3 * CREDIT }, { now: T0 + i * SEC })).status).toBe(200);
    await runInDurableObject(stubFor(id), (instance: AccountDO) => instance.flushOutbox());
    const entries = captured.flatMap((b) => b.entries);
    const seqs = entries.map(seqOf);
    expect(seqs.length).toBeGreaterThan(4);
    // deliver everything captured except the first of them: the ledger holds later entries but not that one
    const [first, ...rest] = entries;
    const batch = { accountId: id, floor: 0, entries: rest };
    await settlementQueueFor(env, id).send(batch);
    const before = await readHead(ledgerFor(env, id), id);
    const head = await waitForHead(id, (h) => h.highest === Math.max(...seqs));
    expect(head.watermark).toBe(seqs[0] - 1);
    expect(before === null || before.watermark <= head.watermark).toBe(true);

    // in flight, with a gap: not drift
    const r = await call("GET", `/v1/admin/reconciliation?accountId=${id}`, undefined, { token: ADMIN });
    expect(r.body.drifted).toEqual([]);
    expect(r.body.inFlight).toEqual([
      expect.objectContaining({ accountId: id, fromSeq: seqs[0], toSeq: Math.max(...seqs), gap: true }),
    ]);
    expect(first).toBeDefined();

    // the object's own checks: the first learns the watermark; the next finds the gap overdue and sends from it
    await runInDurableObject(stubFor(id), (instance: AccountDO) => {
      instance.settlement = settlementQueueFor(env, id);
    });
    for (let i = 0; i < 3; i++) await runDurableObjectAlarm(stubFor(id));
    const healed = await waitForHead(id, (h) => h.watermark === Math.max(...seqs));
    expect(healed.watermark).toBe(Math.max(...seqs));
    await expectExactlyOnce(id);
  });

  it("a redelivered batch changes neither the rows nor the running totals", async () => {
    const id = uid("redeliver");
    const captured: SettlementMessage[] = [];
    expect((await account(id, T0)).status).toBe(200);
    await capture(id, captured);
    await addCredits(id, { amount: 5 * CREDIT, kind: "purchase" }, { now: T0 });
    expect((await consume(id, { product: "codex", cost: 6 * CREDIT }, { now: T0 + SEC })).status).toBe(200);
    await runInDurableObject(stubFor(id), (instance: AccountDO) => instance.flushOutbox());
    expect(captured.length).toBeGreaterThan(0);
    for (const b of captured) await settlementQueueFor(env, id).send(b);
    const once = await waitForHead(
      id,
      (h) => h.watermark === Math.max(...captured.flatMap((b) => b.entries.map(seqOf))),
    );
    for (const b of captured) await settlementQueueFor(env, id).send(b);
    await sleep(1_500);
    expect(await readHead(ledgerFor(env, id), id)).toEqual(once);
    const { rows } = await ledgerOf(id);
    expect(new Set(rows.map((r) => r.id)).size).toBe(rows.length);
    expect(sums(rows)).toEqual({ creditPosition: once.creditPosition, charged: once.charged });
    expect(once.charged).toBe(6 * CREDIT);
  });
});

describe("reconciliation at a consistent cut", () => {
  it("entries sent but not yet settled are in flight, never drift; a tampered total is drift with its seq range and amounts", async () => {
    const id = uid("cut");
    await addCredits(id, { amount: 8 * CREDIT, kind: "purchase" }, { now: T0 });
    // the go plan's 2-credit window, then 7 credits from the grant
    expect((await consume(id, { product: "codex", cost: 9 * CREDIT }, { now: T0 + SEC })).status).toBe(200);
    await settleAll([id]);
    const settled = await expectExactlyOnce(id);

    // more entries, captured (sent, never arriving): reconciliation compares at the watermark, so no drift
    const captured: SettlementMessage[] = [];
    await capture(id, captured);
    expect((await consume(id, { product: "codex", cost: CREDIT / 2 }, { now: T0 + 2 * SEC })).status).toBe(200);
    const r = await call("GET", `/v1/admin/reconciliation?accountId=${id}`, undefined, { token: ADMIN });
    expect(r.body.drifted).toEqual([]);
    expect(r.body.inFlight).toEqual([
      expect.objectContaining({ accountId: id, fromSeq: settled.lastSeq + 1, gap: false }),
    ]);

    // a ledger total that disagrees with the object at the same seq is drift, named with its range and amounts;
    // the last clean check stood at this very watermark, so the range is the whole history
    await ledgerFor(env, id)
      .prepare("UPDATE ledger_heads SET charged_total = charged_total - 1 WHERE account_id = ?")
      .bind(id)
      .run();
    const d = await call("GET", `/v1/admin/reconciliation?accountId=${id}`, undefined, { token: ADMIN });
    const drift = {
      accountId: id,
      fromSeq: 1,
      toSeq: settled.lastSeq,
      expected: CREDIT,
      actual: CREDIT,
      chargedExpected: 9 * CREDIT,
      chargedActual: 9 * CREDIT - 1,
    };
    expect(d.body.drifted).toEqual([drift]);
    expect(d.body.inFlight).toHaveLength(1);

    // drift found after a later clean check names only the entries since it
    await ledgerFor(env, id)
      .prepare("UPDATE ledger_heads SET charged_total = charged_total + 1 WHERE account_id = ?")
      .bind(id)
      .run();
    await runInDurableObject(stubFor(id), (instance: AccountDO) => {
      instance.settlement = settlementQueueFor(env, id);
    });
    await settleAll([id]);
    const clean = await call("GET", `/v1/admin/reconciliation?accountId=${id}`, undefined, { token: ADMIN });
    expect(clean.body).toMatchObject({ drifted: [], inFlight: [] });
    const cleanAt = (await outboxOf(id)).lastSeq;
    expect((await consume(id, { product: "codex", cost: CREDIT / 4 }, { now: T0 + 3 * SEC })).status).toBe(200);
    await settleAll([id]);
    const last = (await outboxOf(id)).lastSeq;
    await ledgerFor(env, id)
      .prepare("UPDATE ledger_heads SET credit_position = credit_position + 5 WHERE account_id = ?")
      .bind(id)
      .run();
    const later = await call("GET", `/v1/admin/reconciliation?accountId=${id}`, undefined, { token: ADMIN });
    expect(later.body.drifted).toEqual([
      expect.objectContaining({ fromSeq: cleanAt + 1, toSeq: last, expected: CREDIT / 4, actual: CREDIT / 4 + 5 }),
    ]);
  });
});

describe("pruning", () => {
  it("removes journal rows only at or below the confirmed watermark, and only past the journal's 7 days", async () => {
    const id = uid("prune");
    await addCredits(id, { amount: 5 * CREDIT, kind: "purchase" }, { now: T0 });
    await settleAll([id]);
    const settled = await outboxOf(id);
    expect(settled.total).toBeGreaterThan(0);
    // an entry the ledger never receives
    await capture(id, []);
    // the go plan's 2-credit window, then 2 credits from the grant
    expect((await consume(id, { product: "codex", cost: 4 * CREDIT }, { now: T0 + SEC })).status).toBe(200);
    const box = await outboxOf(id);
    expect(box.lastSeq).toBeGreaterThan(settled.lastSeq);
    // eight days on (the journal keeps 7), the alarm prunes what the ledger confirmed, and keeps what it has not
    expect((await account(id, T0 + 8 * 24 * HOUR)).status).toBe(200);
    await runDurableObjectAlarm(stubFor(id));
    const after = await outboxOf(id);
    const left = (await journalOf(id)).messages.map((m) => m.seq);
    expect(Math.min(...left)).toBe(settled.lastSeq + 1);
    expect(after.total).toBe(box.lastSeq - settled.lastSeq);
  });
});

async function waitForHead(id: string, done: (h: NonNullable<Awaited<ReturnType<typeof readHead>>>) => boolean) {
  const deadline = Date.now() + 10_000;
  for (;;) {
    const h = await readHead(ledgerFor(env, id), id);
    if (h && done(h)) return h;
    if (Date.now() > deadline) throw new Error(`head never got there: ${JSON.stringify(h)}`);
    await sleep(100);
  }
}

describe("an account that settled before the journal was sequenced", () => {
  it("upgrades without loss or double count: delivered rows stay, an arrived-but-unmarked row gets its seq, lost rows are sent", async () => {
    const id = uid("legacy");
    await addCredits(id, { amount: 6 * CREDIT, kind: "purchase" }, { now: T0 });
    for (let i = 1; i <= 3; i++)
      expect((await consume(id, { product: "codex", cost: 1.5 * CREDIT }, { now: T0 + i * SEC })).status).toBe(200);
    await settleAll([id]);
    const { lastSeq: n, rows: settled } = await expectExactlyOnce(id);
    expect(n).toBeGreaterThanOrEqual(5);
    const K = 2; // rows 1..K were marked delivered by the old outbox; K+1 arrived but was never marked; the rest were lost
    // the old ledger kept window charges one row each: seq 2 (1.5 credits) and seq 3 (0.5), K + 1 among them
    const early = (await journalOf(id)).messages.flatMap((m) =>
      m.message.type === "ledger" && m.seq <= K + 1 && isUsage(m.message.entry) ? [m.message.entry] : [],
    );
    expect(early.map((e) => [e.seq, e.kind, e.amount])).toEqual([
      [2, "charge", 1.5 * CREDIT],
      [3, "charge", 0.5 * CREDIT],
    ]);
    const later = (await journalOf(id)).messages.filter((m) => m.seq > K + 1).map((m) => m.message);

    // Rewind the object to storage version 4: no seq in the messages, no journal_seq, no settlement table.
    await runInDurableObject(stubFor(id), (_i: AccountDO, state) => {
      const sql = state.storage.sql;
      rewindToVersion5(sql);
      sql.exec("UPDATE outbox SET message = json_remove(message, '$.entry.seq', '$.event.seq')");
      sql.exec("UPDATE outbox SET delivered_at = 1 WHERE seq <= ?", K);
      sql.exec("ALTER TABLE account DROP COLUMN journal_seq");
      sql.exec("DROP TABLE settlement");
      sql.exec("UPDATE schema_version SET version = 4");
    });
    // Rewind the ledger to what D1 migration 0004 leaves: rows without seq, the head seeded with their totals at 0.
    const ledger = ledgerFor(env, id);
    await ledger.batch([
      ledger.prepare("DELETE FROM ledger WHERE account_id = ? AND (account_seq > ? OR kind = 'usage')").bind(id, K + 1),
      ...early.map((e) =>
        ledger
          .prepare(`INSERT INTO ledger (id, account_id, account_seq, kind, amount, layer, product, created_at, settled_at)
            VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`)
          .bind(e.id, id, e.seq, e.kind, e.amount, e.layer ?? null, e.product ?? null, e.createdAt, e.createdAt),
      ),
      ledger.prepare("DELETE FROM events WHERE account_id = ? AND account_seq > ?").bind(id, K + 1),
      ledger.prepare("UPDATE ledger SET account_seq = NULL WHERE account_id = ?").bind(id),
      ledger.prepare("UPDATE events SET account_seq = NULL WHERE account_id = ?").bind(id),
    ]);
    const legacy = (await ledgerOf(id)).rows;
    expect(legacy.length).toBeLessThan(settled.length);
    expect(legacy.filter((r) => r.layer === "window").map((r) => r.amount)).toEqual([1.5 * CREDIT, 0.5 * CREDIT]);
    const seeded = sums(legacy);
    await ledger
      .prepare(
        `UPDATE ledger_heads SET watermark = 0, highest = 0, credit_position = ?2, charged_total = ?3, checked_seq = 0
       WHERE account_id = ?1`,
      )
      .bind(id, seeded.creditPosition, seeded.charged)
      .run();

    // A new instance migrates and settles what the ledger lacks; nothing is counted twice.
    await evictDurableObject(stubFor(id));
    expect((await account(id, T0 + 10 * SEC)).status).toBe(200);
    await settleAll([id]);
    const head = await readHead(ledgerFor(env, id), id);
    const { rows } = await ledgerOf(id);
    expect(head?.watermark).toBe(n);
    // the legacy rows stay as they were (the window charge that had arrived is not rolled up a second time); what
    // came later is settled as now: money entries one by one, window charges in rollups
    const expected = [...legacy.map((r) => r.id), ...ledgerView(later).keys()];
    expect([...rows.map((r) => r.id)].sort()).toEqual(expected.sort());
    expect({ creditPosition: head?.creditPosition, charged: head?.charged }).toEqual(sums(rows));
    expect(head?.charged).toBe(4.5 * CREDIT);
    // the rows settled before the upgrade keep no seq; every later entry has its own
    const entries = rows.filter((r) => r.kind !== "usage");
    expect(entries.filter((r) => r.account_seq === null).length).toBeGreaterThan(0);
    expect(entries.filter((r) => r.account_seq !== null).every((r) => (r.account_seq ?? 0) > K)).toBe(true);
    const r = await call("GET", `/v1/admin/reconciliation?accountId=${id}`, undefined, { token: ADMIN });
    expect(r.body).toMatchObject({ drifted: [], inFlight: [] });
  });
});
