// `npm run bench`: builds the bench bundle (the product worker plus probes, bench/worker.ts), serves it in
// local workerd through Miniflare's API and measures, side by side in one run:
//   1. consume end to end on one account vs two floors (empty DO RPC, one durable single-row upsert);
//   2. consume spread over 1,000 accounts vs one account;
//   3. in-object cost of one decision vs one single-row upsert;
//   4. per-decision cost at 10 vs 100,000 prior charges;
//   5. settlement through the queue consumer into D1 vs raw batched D1 inserts, and charge-to-ledger time;
//   6. a global reset with 1 and with 10,000 accounts;
//   15. what a decision costs (issue #15): rows written in the object and in D1, bytes kept, queue messages,
//       list-price dollars per million decisions (bench/cost.mjs, prices in bench/capacity-model.mjs);
//   16. organizations (issue #16): pool-object calls per member decision, latency with and without a lease, false
//       denials in a burst, 2,000 members under Zipf activity (bench/org.mjs).
// Prints one table and writes bench/results.json. Only loopback traffic; every loop is bounded.
import { spawnSync } from "node:child_process";
import { mkdirSync, readFileSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import os from "node:os";
import { dirname, join, relative, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { busiestRun, dollarsPerMillion, LIMITS, PRICES, perDecision, quietestRun } from "./capacity-model.mjs";
import { cpuMeter, machineBusyMs, measureRun, prepareAccounts } from "./cost.mjs";
import { load } from "./load.mjs";
import { orgPhase } from "./org.mjs";
import { buildBundle, client, productBindings, startServer, TOKENS } from "./server.mjs";

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "..");
const OUT = join(ROOT, "bench", "out");
const BUNDLE_DIR = join(OUT, "bundle");
const QUICK = process.env.BENCH_QUICK === "1"; // shorter runs, for trying the harness; not for numbers
/** The settlement consumer's batching, as the product's wrangler.toml sets it: the bench serves the same. */
const CONSUMER = consumerConfig();
/** The other batch size the what-if row measures (the one the product used before). */
const WHAT_IF_BATCH = CONSUMER.maxBatchSize === 50 ? 100 : 50;

const CFG = {
  connections: 32,
  seconds: QUICK ? 1 : 3,
  warmupSeconds: 1,
  rounds: QUICK ? 1 : 3, // for the routes behind targets (1, 2)
  contextRounds: 1, // for the context routes
  manyAccounts: 1000,
  totalAccounts: QUICK ? 2000 : 10_000,
  populationBudgetSeconds: QUICK ? 30 : 120, // account creation stops here if the machine is slow; the table names the count reached
  // ... and at this point of the whole run: settlement through the archive put per message made the phases before
  // the population slower (they reach it after ~260 s), so 245 s left the reset row with one account
  populationDeadlineSeconds: QUICK ? 120 : 420,
  growthPrior: QUICK ? 10_000 : 100_000,
  growthChunk: 20_000,
  growthMeasureN: 1000,
  growthReps: 7,
  inObjectN: 1000,
  inObjectReps: 5,
  upsertN: 20_000,
  settleN: 5000,
  settleReps: 3,
  // Ledger entries per queue message in the synthetic settlement runs. The outbox packs an account's unsent journal
  // rows into one message: 1 is an account whose every flush finds one new row (many quiet accounts; the shape
  // row 5 measured before packing); the packed runs stand for a busy account whose flush finds several.
  settlePerMessage: 1,
  settlePackedPerMessage: 10,
  pacedRps: 200,
  resets: 40,
  resetWarmup: 5,
  // Cost runs (issue #15 item 6): 200 decisions/s in all, on 1, 10, 100 and 1,000 accounts (the per-account rates
  // the capacity model interpolates between), and grant-funded on 1 account.
  costRate: 200,
  costSeconds: QUICK ? 3 : 10,
  costAccounts: [1, 10, 100, 1000],
};

const started = performance.now();
const elapsed = () => ((performance.now() - started) / 1000).toFixed(1);
const say = (msg) => process.stderr.write(`[bench ${elapsed()}s] ${msg}\n`);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// ───────────────────────────── helpers ─────────────────────────────

const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  const m = Math.floor(s.length / 2);
  return s.length === 0 ? NaN : s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
};
/** Nearest-rank percentile of an ascending array. */
const pct = (sorted, p) =>
  sorted.length === 0
    ? NaN
    : sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))];

function checkNode() {
  const major = Number(process.versions.node.split(".")[0]);
  if (major < 22) {
    console.error(
      `bench: Node ${process.versions.node} found; run it with \`npm run bench\` (npm puts the project's Node 22 first on PATH).`,
    );
    process.exit(1);
  }
}

function build() {
  say("building the bench bundle with wrangler deploy --dry-run");
  return buildBundle(BUNDLE_DIR);
}

/** Waits (bounded) until workerd is nearly idle, so one phase's background work (alarms, queue) is not billed to the next. */
async function waitQuiet(meter, maxMs = 15_000) {
  const t0 = performance.now();
  while (performance.now() - t0 < maxMs) {
    const stop = meter.start();
    await sleep(300);
    const c = stop();
    if (c.workerdMs / c.wallMs < 0.1) return performance.now() - t0;
  }
  return performance.now() - t0;
}

/** Waits (bounded) until the whole machine is calm: under half a core busy over a second (disk writeback done). */
async function waitMachineQuiet(maxMs) {
  const t0 = performance.now();
  while (performance.now() - t0 < maxMs) {
    const m0 = machineBusyMs();
    await sleep(1000);
    if (machineBusyMs() - m0 < 500) break;
  }
  return performance.now() - t0;
}

// ───────────────────────────── request shapes ─────────────────────────────

const SERVICE = { authorization: `Bearer ${TOKENS.service}`, "content-type": "application/json" };
const CONSUME_BODY = JSON.stringify({ product: "codex", cost: 1 });
const consumeReq = (account, key) => ({
  method: "POST",
  path: `/v1/accounts/${account}/consume`,
  headers: { ...SERVICE, "idempotency-key": key },
  body: CONSUME_BODY,
});

/** The e2e routes, each with whether its 200s write one ledger entry. */
const ROUTES = {
  floorA: {
    label: "floor (a): one RPC to an empty DO method",
    ledger: false,
    next: () => () => ({ method: "GET", path: "/__bench/noop" }),
  },
  floorB: {
    label: "floor (b): one durable single-row SQLite upsert in the DO",
    ledger: false,
    next: () => () => ({ method: "GET", path: "/__bench/upsert" }),
  },
  floorBMany: {
    label: "floor (b) spread over 1,000 probe objects",
    ledger: false,
    next: () => (i) => ({ method: "GET", path: `/__bench/upsert?object=floor_many_${i % CFG.manyAccounts}` }),
  },
  consumeNoQueue: {
    label: "context: consume by RPC, queue send stubbed (no queue, consumer or D1 work)",
    ledger: false,
    next: (tag) => (i) => ({ method: "GET", path: `/__bench/consume-noqueue?account=bench_noqueue&key=${tag}-${i}` }),
  },
  consumeOne: {
    label: "consume, 1 account",
    ledger: true,
    next: (tag) => (i) => consumeReq("bench_one", `${tag}-${i}`),
  },
  consumeMany: {
    label: "consume, spread over 1,000 accounts",
    ledger: true,
    next: (tag) => (i) => consumeReq(`bench_many_${i % CFG.manyAccounts}`, `${tag}-${i}`),
  },
  consumeRpc: {
    label: "context: AccountDO.consume by RPC, no product HTTP layer",
    ledger: true,
    next: (tag) => (i) => ({ method: "GET", path: `/__bench/consume-rpc?account=bench_rpc&key=${tag}-${i}` }),
  },
  workerOnly: {
    label: "context: product HTTP layer, object stubbed",
    ledger: false,
    next: (tag) => (i) => ({
      ...consumeReq("bench_one", `${tag}-${i}`),
      path: "/__bench/worker-only/v1/accounts/bench_one/consume",
    }),
  },
  workerOnlyFull: {
    label:
      "context: product HTTP layer alone, object stubbed, decisions with ?include=account (the shape before SPEC §8's lean decisions)",
    next: (tag) => (i) => ({
      ...consumeReq("bench_one", `${tag}-${i}`),
      path: "/__bench/worker-only/v1/accounts/bench_one/consume?include=account",
    }),
  },
};

// ───────────────────────────── phases ─────────────────────────────

/** Ledger rows expected in D1 (one per allowed window-funded consume) and a wait until they are all there. */
function ledgerTracker(api) {
  let expected = 0;
  return {
    add(n) {
      expected += n;
    },
    get expected() {
      return expected;
    },
    async drain(maxMs = 60_000) {
      const t0 = performance.now();
      for (let k = 0; k < maxMs / 50; k++) {
        const { n } = await api.post("/__bench/settle/total", {});
        if (n >= expected) return { ms: performance.now() - t0, count: n };
        await sleep(50);
      }
      const { n } = await api.post("/__bench/settle/total", {});
      const one = await api.post("/__bench/account/reconciliation-state", { accountId: "bench_one" });
      throw new Error(
        `settlement did not drain in ${maxMs} ms: ${n} of at least ${expected} ledger rows (bench_one: ${JSON.stringify(one)})`,
      );
    },
  };
}

async function runLoad(base, meter, routeKey, tag, opts = {}) {
  const route = ROUTES[routeKey];
  const stop = meter.start();
  const r = await load({
    base,
    connections: opts.connections ?? CFG.connections,
    seconds: opts.seconds ?? CFG.seconds,
    next: route.next(tag),
    overallRate: opts.overallRate,
  });
  const cpu = stop();
  if (r.non2xx > 0 || r.errors > 0)
    throw new Error(`${routeKey}: ${r.non2xx} non-2xx, ${r.errors} errors (${JSON.stringify(r.statusCodes)})`);
  return {
    ...r,
    tag,
    workerdCpuMsPerReq: cpu.workerdMs / r.ok,
    nodeCpuMsPerReq: cpu.nodeMs / r.ok,
    // shares of one core over the run: workerd runs all JavaScript on one thread, so ~1.0 means CPU-bound
    workerdCpuShare: cpu.workerdMs / cpu.wallMs,
    nodeCpuShare: cpu.nodeMs / cpu.wallMs,
    otherCpuShare: cpu.otherMs / cpu.wallMs,
  };
}

async function e2ePhase(base, api, meter, ledger) {
  say(`e2e: creating the ${CFG.manyAccounts} accounts and ${CFG.manyAccounts} probe objects of the spread runs`);
  const created = await api.post("/__bench/accounts/create", {
    prefix: "bench_many_",
    from: 0,
    count: CFG.manyAccounts,
    concurrency: 128,
    how: "plan",
  });
  if (created.failed) throw new Error(`account creation: ${created.failed} failed`);
  await api.post("/__bench/probe/create-many", { prefix: "floor_many_", n: CFG.manyAccounts });
  await api.call(
    "POST",
    "/v1/accounts/bench_one/consume",
    { product: "codex", cost: 1 },
    { ...SERVICE, "idempotency-key": "touch-one" },
  );
  ledger.add(1);
  await ledger.drain();

  const order = [
    "floorA",
    "floorB",
    "floorBMany",
    "consumeNoQueue",
    "consumeRpc",
    "consumeOne",
    "consumeMany",
    "workerOnly",
    "workerOnlyFull",
  ];
  // Routes behind a target get every round; context routes get fewer (time budget).
  const targetRoutes = new Set(["floorA", "floorB", "consumeOne", "consumeMany"]);
  const runs = Object.fromEntries(order.map((k) => [k, []]));
  const drains = [];
  for (let round = 0; round < CFG.rounds; round++) {
    for (const key of order) {
      if (!targetRoutes.has(key) && round >= CFG.contextRounds) continue;
      if (round === 0) {
        const w = await runLoad(base, meter, key, `warm-${key}`, { seconds: CFG.warmupSeconds });
        if (ROUTES[key].ledger) ledger.add(w.ok);
      }
      await waitQuiet(meter, 3000);
      const r = await runLoad(base, meter, key, `${key}-r${round}`);
      runs[key].push(r);
      say(
        `e2e round ${round + 1} ${key}: ${r.rps.toFixed(0)} rps, p50 ${r.p50ms} ms, p99 ${r.p99ms} ms; workerd ${r.workerdCpuMsPerReq.toFixed(2)} ms CPU/req, ${(r.workerdCpuShare * 100).toFixed(0)}% of a core; rest of machine ${(r.otherCpuShare * 100).toFixed(0)}%`,
      );
      if (ROUTES[key].ledger) {
        ledger.add(r.ok);
        // Settlement must be idle before the next run, or its work would be billed to the next route.
        const d = await ledger.drain();
        drains.push({ route: key, round, msAfterRun: d.ms });
      }
      if (key === "workerOnly" || key === "workerOnlyFull") ledger.add(round === 0 ? 1 : 0); // the one real consume behind each stub
    }
  }
  const summary = Object.fromEntries(
    order.map((k) => [
      k,
      {
        label: ROUTES[k].label,
        rps: median(runs[k].map((r) => r.rps)),
        p50ms: median(runs[k].map((r) => r.p50ms)),
        p99ms: median(runs[k].map((r) => r.p99ms)),
        workerdCpuMsPerReq: median(runs[k].map((r) => r.workerdCpuMsPerReq)),
        nodeCpuMsPerReq: median(runs[k].map((r) => r.nodeCpuMsPerReq)),
        workerdCpuShare: median(runs[k].map((r) => r.workerdCpuShare)),
        nodeCpuShare: median(runs[k].map((r) => r.nodeCpuShare)),
        otherCpuShare: median(runs[k].map((r) => r.otherCpuShare)),
        bytesPerResponse: median(runs[k].map((r) => r.bytesPerResponse)),
        runs: runs[k].map(
          ({
            rps,
            p50ms,
            p99ms,
            ok,
            seconds,
            workerdCpuMsPerReq,
            nodeCpuMsPerReq,
            workerdCpuShare,
            otherCpuShare,
          }) => ({
            rps,
            p50ms,
            p99ms,
            ok,
            seconds,
            workerdCpuMsPerReq,
            nodeCpuMsPerReq,
            workerdCpuShare,
            otherCpuShare,
          }),
        ),
      },
    ]),
  );
  return { summary, drains, tags: Object.fromEntries(order.map((k) => [k, runs[k].map((r) => r.tag)])) };
}

async function lagsOf(api, tags) {
  const lags = [];
  for (const tag of tags)
    lags.push(...(await api.post("/__bench/settle/stats", { prefix: `${tag}-`, byKey: true })).lags);
  lags.sort((a, b) => a - b);
  return { n: lags.length, p50ms: pct(lags, 50), p99ms: pct(lags, 99), maxMs: lags.at(-1) ?? null };
}

/**
 * n ledger entries, packed `perMessage` to a queue message (one account's contiguous seqs each, sendBatch of up to
 * 100 messages as the outbox does), through the settlement queue (or, with `transport`, the counting-only queue),
 * timed until all landed (rows in D1, or counted).
 */
async function queueRun(api, prefix, meter, n = CFG.settleN, transport = false, perMessage = CFG.settlePerMessage) {
  const stop = meter?.start();
  const t0 = performance.now();
  const sent = await api.post(transport ? "/__bench/settle/transport" : "/__bench/settle/enqueue", {
    prefix,
    n,
    perMessage,
  });
  let landed = 0;
  for (let k = 0; k < 3000 && landed < n; k++) {
    landed = (await api.post(transport ? "/__bench/settle/transport-stats" : "/__bench/settle/stats", { prefix }))
      .count;
    if (landed < n) await sleep(20);
  }
  if (landed < n) throw new Error(`queue run ${prefix}: ${landed}/${n} landed`);
  const ms = performance.now() - t0;
  const cpu = stop?.();
  return {
    ms,
    enqueueMs: sent.ms,
    entries: n,
    messages: sent.messages,
    entriesPerMessage: sent.entriesPerMessage,
    perSec: (n / ms) * 1000,
    ...(cpu ? { workerdCpuMsPerEntry: cpu.workerdMs / n, workerdCpuShare: cpu.workerdMs / cpu.wallMs } : {}),
  };
}

/** The same entries as queueRun's, as the consumer's statements straight into D1: DB.batch of `batch` messages. */
async function rawRun(api, prefix, meter, batch, perMessage = CFG.settlePerMessage) {
  const stop = meter.start();
  const r0 = performance.now();
  const r = await api.post("/__bench/settle/raw", { prefix, n: CFG.settleN, batch, perMessage });
  const ms = performance.now() - r0;
  const cpu = stop();
  return {
    ms,
    inWorkerMs: r.ms,
    entries: CFG.settleN,
    messages: r.messages,
    entriesPerMessage: r.entriesPerMessage,
    perSec: (CFG.settleN / ms) * 1000,
    workerdCpuMsPerEntry: cpu.workerdMs / CFG.settleN,
    workerdCpuShare: cpu.workerdMs / cpu.wallMs,
  };
}

/** Batches, messages and entries the settlement consumer received since the last call (which resets them). */
async function consumerShape(api) {
  const s = await api.post("/__bench/settle/shape", { reset: true });
  return { ...s, entriesPerMessage: s.messages ? s.entries / s.messages : null };
}

async function settlementPhase(base, api, meter, ledger, e2eTags) {
  say("settlement: charge-to-ledger under the saturating one-account runs and under a paced run");
  // What the product's outbox sent since the instance started: the e2e phase (its account setup, one account
  // saturated, 1,000 accounts, by RPC).
  const e2eShape = await consumerShape(api);
  const saturated = await lagsOf(api, e2eTags.consumeOne);
  const paced = await runLoad(base, meter, "consumeOne", "paced", { overallRate: CFG.pacedRps, connections: 8 });
  ledger.add(paced.ok);
  await ledger.drain();
  const pacedShape = await consumerShape(api);
  const pacedLag = await lagsOf(api, ["paced"]);

  const packed = CFG.settlePackedPerMessage;
  say(
    `settlement: ${CFG.settleN} ledger entries through the queue consumer vs raw batched D1 inserts, ${CFG.settlePerMessage} and ${packed} entries per message`,
  );
  await queueRun(api, "qwarm_", null, 1000);
  ledger.add(1000);
  await queueRun(api, "twarm_", null, 1000, true);
  await queueRun(api, "qpwarm_", null, 1000, false, packed);
  ledger.add(1000);
  await consumerShape(api);
  const queue = [];
  const raw = [];
  const transport = [];
  const queuePacked = [];
  const rawPacked = [];
  const transportPacked = [];
  let queueShape = null;
  for (let rep = 0; rep < CFG.settleReps; rep++) {
    await waitQuiet(meter, 5000);
    queue.push(await queueRun(api, `q${rep}_`, meter));
    ledger.add(CFG.settleN);
    // The consumer must have seen the run's messages as sent (a check that the counters see the queue's batches).
    if (rep === 0) queueShape = await consumerShape(api);
    await waitQuiet(meter, 5000);
    raw.push(await rawRun(api, `raw${rep}_`, meter, CONSUMER.maxBatchSize));
    ledger.add(CFG.settleN);
    await waitQuiet(meter, 5000);
    transport.push(await queueRun(api, `t${rep}_`, meter, CFG.settleN, true));
    await waitQuiet(meter, 5000);
    queuePacked.push(await queueRun(api, `qp${rep}_`, meter, CFG.settleN, false, packed));
    ledger.add(CFG.settleN);
    await waitQuiet(meter, 5000);
    rawPacked.push(await rawRun(api, `rawp${rep}_`, meter, CONSUMER.maxBatchSize, packed));
    ledger.add(CFG.settleN);
    await waitQuiet(meter, 5000);
    transportPacked.push(await queueRun(api, `tp${rep}_`, meter, CFG.settleN, true, packed));
    say(
      `settlement rep ${rep + 1}: queue ${queue.at(-1).perSec.toFixed(0)}/s, raw ${raw.at(-1).perSec.toFixed(0)}/s, transport alone ${transport.at(-1).perSec.toFixed(0)}/s; ` +
        `${packed} per message: queue ${queuePacked.at(-1).perSec.toFixed(0)}/s, raw ${rawPacked.at(-1).perSec.toFixed(0)}/s, transport ${transportPacked.at(-1).perSec.toFixed(0)}/s`,
    );
  }
  const expectedMessages = Math.ceil(CFG.settleN / CFG.settlePerMessage);
  // First deliveries: a message the consumer retried (one that arrived before the run it continues) comes again.
  if (queueShape.firstEntries !== CFG.settleN || queueShape.firstMessages !== expectedMessages)
    throw new Error(
      `settlement: the consumer saw ${queueShape.firstMessages} messages / ${queueShape.firstEntries} entries of the q0_ run on first delivery, expected ${expectedMessages} / ${CFG.settleN}`,
    );
  // Raw inserts at the what-if batch size, for the batch-size effect.
  const rAlt = await api.post("/__bench/settle/raw", {
    prefix: "rawalt_",
    n: CFG.settleN,
    batch: WHAT_IF_BATCH,
    perMessage: CFG.settlePerMessage,
  });
  ledger.add(CFG.settleN);
  await ledger.drain();
  // The producer side: what one sendBatch costs, with 1 message (as each of many accounts sends) and with 100.
  const sendCost = {};
  for (const size of [1, 100]) {
    await waitQuiet(meter);
    const r = await api.post("/__bench/settle/enqueue", { prefix: `send${size}_`, n: 1000, sendSize: size });
    sendCost[`msPerMessageSendBatch${size}`] = r.ms / r.messages;
    ledger.add(1000);
    await ledger.drain();
  }
  const med = (xs, k) => median(xs.map((q) => q[k]));
  return {
    // Entries per queue message in the synthetic runs below (queue, raw, transport, what-if): each message one
    // account's contiguous seqs; `packed` repeats them at settlePackedPerMessage.
    entriesPerMessage: CFG.settlePerMessage,
    // What the product's own outbox sent: over the e2e runs, and over the paced run.
    productShape: { e2e: e2eShape, paced: pacedShape },
    syntheticShape: queueShape,
    saturatedLag: saturated,
    pacedLag: { ...pacedLag, rps: paced.rps },
    queuePerSec: med(queue, "perSec"),
    rawPerSec: med(raw, "perSec"),
    rawWhatIfPerSec: (CFG.settleN / rAlt.ms) * 1000,
    queueWorkerdCpuMsPerEntry: med(queue, "workerdCpuMsPerEntry"),
    queueWorkerdCpuShare: med(queue, "workerdCpuShare"),
    rawWorkerdCpuMsPerEntry: med(raw, "workerdCpuMsPerEntry"),
    rawWorkerdCpuShare: med(raw, "workerdCpuShare"),
    transportPerSec: med(transport, "perSec"),
    transportWorkerdCpuMsPerEntry: med(transport, "workerdCpuMsPerEntry"),
    // If transport and D1 writes share one thread, the queue path's time per entry is about the sum of the two.
    predictedQueuePerSec: 1000 / (med(transport, "ms") / CFG.settleN + med(raw, "ms") / CFG.settleN),
    packed: {
      entriesPerMessage: packed,
      queuePerSec: med(queuePacked, "perSec"),
      rawPerSec: med(rawPacked, "perSec"),
      transportPerSec: med(transportPacked, "perSec"),
      queueWorkerdCpuMsPerEntry: med(queuePacked, "workerdCpuMsPerEntry"),
      rawWorkerdCpuMsPerEntry: med(rawPacked, "workerdCpuMsPerEntry"),
      transportWorkerdCpuMsPerEntry: med(transportPacked, "workerdCpuMsPerEntry"),
      predictedQueuePerSec: 1000 / (med(transportPacked, "ms") / CFG.settleN + med(rawPacked, "ms") / CFG.settleN),
      queue: queuePacked,
      raw: rawPacked,
      transport: transportPacked,
    },
    transport,
    sendCost,
    queue,
    raw,
  };
}

/**
 * In-object costs are CPU time of a loop with no I/O in it, timed inside the object. Contention from
 * other processes can only add to such a time, so each is the best of CFG.inObjectReps runs.
 */
const best = (xs) => Math.min(...xs);

async function inObjectPhase(api) {
  say("in-object: single-row upsert floor, point read, and real decisions in one RPC");
  const upsert = [];
  const upsertTx = [];
  const read = [];
  for (let rep = 0; rep < CFG.inObjectReps; rep++) {
    upsert.push(((await api.post("/__bench/probe/upsert-many", { n: CFG.upsertN })).inObjectMs * 1000) / CFG.upsertN);
    upsertTx.push(
      ((await api.post("/__bench/probe/upsert-many", { n: CFG.upsertN, transaction: true })).inObjectMs * 1000) /
        CFG.upsertN,
    );
    read.push(((await api.post("/__bench/probe/read-many", { n: CFG.upsertN })).inObjectMs * 1000) / CFG.upsertN);
  }
  const now = Date.now();
  const decide = (accountId, n, extra = {}) =>
    api.post("/__bench/account/decide-many", {
      accountId,
      n,
      startNow: extra.startNow ?? Date.now(),
      stepMs: 1,
      product: "codex",
      cost: 1,
      keyPrefix: `${accountId}-${Math.random().toString(36).slice(2)}-`,
      stubQueue: true,
      ...extra,
    });
  const perDecision = async (accountId, n, reps, extra) => {
    const xs = [];
    const flush = [];
    for (let rep = 0; rep < reps; rep++) {
      const r = await decide(accountId, n, extra);
      if (r.allowed !== n)
        throw new Error(`${accountId}: ${r.allowed}/${n} allowed (${r.denied} denied, ${r.errors} errors)`);
      xs.push((r.inObjectMs * 1000) / n);
      flush.push((r.flushMs * 1000) / n);
    }
    return { us: best(xs), flushUsPerDecision: best(flush), reps: xs };
  };

  // Window-funded decision (the common case).
  await decide("ino_window", 300);
  const window = await perDecision("ino_window", CFG.inObjectN, CFG.inObjectReps);
  const windowCounted = await decide("ino_window", 200, { countStatements: true });
  const breakdowns = [];
  for (let rep = 0; rep < 3; rep++)
    breakdowns.push(
      await api.post("/__bench/account/breakdown", { accountId: "ino_window", n: 5000, now: Date.now() }),
    );
  const breakdown = Object.fromEntries(
    Object.keys(breakdowns[0]).map((k) => [k, breakdowns[0][k] === null ? null : best(breakdowns.map((b) => b[k]))]),
  );

  // Grant-funded: a purchase, the 5-hour window used up by one charge, then every decision is paid by the grant.
  await api.post("/__bench/account/grant", { accountId: "ino_grant", now, amount: 1000 * 1_000_000 });
  await decide("ino_grant", 1, { cost: 2_000_000 });
  await decide("ino_grant", 300);
  const grant = await perDecision("ino_grant", CFG.inObjectN, CFG.inObjectReps);
  const grantCounted = await decide("ino_grant", 200, { countStatements: true });

  // The lazy, per-account side of a global reset: each decision applies one reset it had not seen.
  await decide("ino_reset", 100, { freshResetEach: true });
  const reset = await perDecision("ino_reset", 500, CFG.inObjectReps, { freshResetEach: true });

  return {
    upsertUs: best(upsert),
    upsertInTransactionSyncUs: best(upsertTx),
    pointReadUs: best(read),
    decisionUs: window.us,
    decisionOutboxFlushUs: window.flushUsPerDecision,
    decisionReps: window.reps,
    statementsPerDecision: windowCounted.statementsPerDecision,
    statementsByText: Object.entries(windowCounted.statements).map(([sql, n]) => ({ perDecision: n / 200, sql })),
    grantStatementsByText: Object.entries(grantCounted.statements).map(([sql, n]) => ({ perDecision: n / 200, sql })),
    breakdownUs: breakdown,
    grantDecisionUs: grant.us,
    grantStatementsPerDecision: grantCounted.statementsPerDecision,
    resetApplyDecisionUs: reset.us,
  };
}

/** `duringSeeding` starts setup work that may overlap the seeding (not a measurement); it is awaited before the 100,000-charge measurement. */
async function growthPhase(api, duringSeeding = async () => undefined) {
  const HOUR = 3_600_000;
  const span = 40 * HOUR; // every prior charge inside every retention (answers 48 h, journal rows with window usage 7 days)
  const decide = (accountId, n, startNow, stepMs, extra = {}) =>
    api.post("/__bench/account/decide-many", {
      accountId,
      n,
      startNow,
      stepMs,
      product: "codex",
      cost: 1,
      keyPrefix: `${accountId}-${startNow}-`,
      stubQueue: true,
      ...extra,
    });
  /** µs per decision over one RPC of growthMeasureN decisions at the current time. */
  const measureOnce = async (accountId) => {
    const r = await decide(accountId, CFG.growthMeasureN, Date.now(), 1);
    if (r.allowed !== CFG.growthMeasureN) throw new Error(`${accountId}: ${r.allowed}/${CFG.growthMeasureN} allowed`);
    return (r.inObjectMs * 1000) / CFG.growthMeasureN;
  };

  // The mechanism behind any growth: one index insert into a small and into a 100,000-row table.
  const indexProbe = {};
  for (const rows of [10, CFG.growthPrior]) {
    const runs = [];
    for (let rep = 0; rep < 4; rep++)
      runs.push(await api.post(`/__bench/probe/index-insert?object=index_${rows}`, { rows, n: 5000 }));
    indexProbe[rows] = {
      randomKeyUs: best(runs.slice(1).map((r) => r.randomKeyUs)),
      increasingKeyUs: best(runs.slice(1).map((r) => r.increasingKeyUs)),
    };
  }

  say(`growth: ${CFG.growthReps} accounts with 10 prior charges`);
  for (let k = 0; k < CFG.growthReps; k++) await decide(`growth10_${k}`, 10, Date.now() - span, span / 10);

  // Which table's size a decision feels: accounts with 100,000 synthetic rows in one table each (copies
  // of real rows' payloads, random UUIDs where the product uses them), one with both, one with none.
  say(`growth: ${CFG.growthPrior.toLocaleString("en")} synthetic rows in one table at a time`);
  const tables = ["answers", "outbox"];
  const byTableIds = ["none", ...tables, "all"];
  for (const id of byTableIds) await decide(`inflate_${id}`, 10, Date.now() - span, span / 10);
  for (const t of tables) {
    await api.post("/__bench/account/inflate", {
      accountId: `inflate_${t}`,
      table: t,
      n: CFG.growthPrior,
      now: Date.now(),
    });
    await api.post("/__bench/account/inflate", {
      accountId: "inflate_all",
      table: t,
      n: CFG.growthPrior,
      now: Date.now(),
    });
  }

  say(
    `growth: seeding ${CFG.growthPrior.toLocaleString("en")} prior charges through the real consume, ${CFG.growthChunk.toLocaleString("en")} per RPC`,
  );
  const big = "growth100k";
  const background = duringSeeding();
  const seedStart = Date.now() - span;
  const step = span / CFG.growthPrior;
  const t0 = performance.now();
  let seededMs = 0;
  for (let i = 0; i < CFG.growthPrior; i += CFG.growthChunk) {
    const n = Math.min(CFG.growthChunk, CFG.growthPrior - i);
    const r = await decide(big, n, seedStart + i * step, step);
    if (r.allowed !== n) throw new Error(`seeding: ${r.allowed}/${n} allowed`);
    seededMs += r.inObjectMs;
  }
  const seedWallMs = performance.now() - t0;
  const sizesBefore = await api.post("/__bench/account/table-sizes", { accountId: big });
  await background;
  // The population's and the seeding's writes must be behind us: the whole machine calm, not just workerd.
  await waitQuiet(cpuMeter(), 10_000);
  const calmMs = await waitMachineQuiet(20_000);

  // Rounds over every account: each round measures one 10-charge account, the 100,000-charge one and the
  // synthetic ones, in a rotating order, so all of them meet the same machine. Best of the rounds.
  say(
    `growth: measuring at 10 and at ${CFG.growthPrior.toLocaleString("en")} prior charges (${CFG.growthReps} rounds)`,
  );
  // Every measured object gets the same warm-up. Measured on their first use, the 10-charge accounts came
  // out ~20% faster than the identical warmed one (inflate_none), which biased the ratio.
  for (let k = 0; k < CFG.growthReps; k++) await measureOnce(`growth10_${k}`);
  for (const id of [big, ...byTableIds.map((t) => `inflate_${t}`)]) await measureOnce(id);
  const small = [];
  const large = [];
  const byTableRuns = Object.fromEntries(byTableIds.map((id) => [id, []]));
  for (let k = 0; k < CFG.growthReps; k++) {
    const round = [
      async () => small.push(await measureOnce(`growth10_${k}`)),
      async () => large.push(await measureOnce(big)),
      ...byTableIds.map((id) => async () => byTableRuns[id].push(await measureOnce(`inflate_${id}`))),
    ];
    for (let j = 0; j < round.length; j++) await round[(j + k) % round.length]();
  }
  const byTable = Object.fromEntries(
    byTableIds.map((id) => [
      id,
      { us: best(byTableRuns[id]), ratio: best(byTableRuns[id]) / best(byTableRuns.none), runs: byTableRuns[id] },
    ]),
  );

  const largeCount = await decide(big, 100, Date.now(), 1, { countStatements: true });
  const smallCount = await decide("growth10_0", 100, Date.now(), 1, { countStatements: true });

  // Pruning: one decision 8 days later sets the object's clock, then the product's alarm runs.
  await decide(big, 1, Date.now() + 8 * 24 * HOUR, 1);
  const sizesAfterAlarm = await api.post("/__bench/account/alarm", { accountId: big });
  return {
    priorSmall: 10,
    priorLarge: CFG.growthPrior,
    smallUs: best(small),
    largeUs: best(large),
    smallMedianUs: median(small),
    largeMedianUs: median(large),
    small,
    large,
    statementsSmall: smallCount.statementsPerDecision,
    statementsLarge: largeCount.statementsPerDecision,
    seedDecisionsPerSec: (CFG.growthPrior / seededMs) * 1000,
    seedWallMs,
    calmWaitMs: calmMs,
    sizesAt100k: sizesBefore,
    indexProbe,
    byTable,
    sizesAfterAlarmAt8Days: sizesAfterAlarm,
  };
}

/** One POST /v1/admin/resets, timed from this process. */
async function resetOnce(api, tag) {
  const ADMIN = { authorization: `Bearer ${TOKENS.admin}`, "content-type": "application/json", "x-operator": "bench" };
  const t0 = performance.now();
  await api.call(
    "POST",
    "/v1/admin/resets",
    { reason: `bench ${tag}` },
    { ...ADMIN, "idempotency-key": `reset-${tag}` },
  );
  return performance.now() - t0;
}

const latencyStats = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  return { n: s.length, p50ms: pct(s, 50), p99ms: pct(s, 99), meanMs: s.reduce((a, b) => a + b, 0) / s.length };
};

/**
 * 6. Global resets with 1 and with CFG.totalAccounts accounts, as a paired measurement: two fresh
 * instances of the same bundle run side by side, one holding a single account, the other the whole
 * population (each account a real AccountDO with its own SQLite state, made by a plan change).
 * Resets alternate between them, so both see the same machine (this one is shared with other work).
 *
 * prepareResets starts both and grows the population in its own workerd process while the main
 * instance seeds the growth account (setup only: no measurement overlaps it); growth waits for it
 * before measuring.
 */
async function prepareResets(scriptPath) {
  const migrationsDir = join(ROOT, "migrations");
  const small = await startServer({
    scriptPath,
    stateDir: join(OUT, "state-resets-1"),
    migrationsDir,
    queue: CONSUMER,
  });
  const big = await startServer({
    scriptPath,
    stateDir: join(OUT, "state-resets-many"),
    migrationsDir,
    queue: CONSUMER,
  });
  const apiSmall = client(small.base);
  const apiBig = client(big.base);
  const touch = (api) =>
    api.call(
      "POST",
      "/v1/accounts/bench_one/consume",
      { product: "codex", cost: 1 },
      { ...SERVICE, "idempotency-key": "only" },
    );
  await touch(apiSmall);
  await touch(apiBig);
  say(
    `resets: growing a second instance to ${CFG.totalAccounts.toLocaleString("en")} accounts while the growth account is seeded (at most ${CFG.populationBudgetSeconds} s)`,
  );
  const population = (async () => {
    const t0 = performance.now();
    let accounts = 1;
    // Bounded by its own budget and by the whole run's deadline.
    const open = () =>
      performance.now() - t0 < CFG.populationBudgetSeconds * 1000 && Number(elapsed()) < CFG.populationDeadlineSeconds;
    for (let from = 0; accounts < CFG.totalAccounts && open(); ) {
      const count = Math.min(500, CFG.totalAccounts - accounts);
      const r = await apiBig.post("/__bench/accounts/create", {
        prefix: "bench_pop_",
        from,
        count,
        concurrency: 128,
        how: "plan",
      });
      if (r.failed) throw new Error(`account creation: ${r.failed} failed`);
      from += count;
      accounts += count;
    }
    const seconds = (performance.now() - t0) / 1000;
    say(`resets: population of ${accounts.toLocaleString("en")} accounts ready after ${seconds.toFixed(1)} s`);
    return { accounts, seconds };
  })();
  population.catch(() => undefined); // awaited in measureResets
  return { small, big, apiSmall, apiBig, population };
}

/** Consume runs on the big instance before and after its resets show what resets cost accounts later. */
async function measureResets(h) {
  try {
    const { accounts, seconds: populationSeconds } = await h.population;
    const meter = cpuMeter(); // both workerd processes
    await runLoad(h.big.base, meter, "consumeOne", "reset-warm", { seconds: CFG.warmupSeconds });
    await waitQuiet(meter);
    const consumeBefore = await runLoad(h.big.base, meter, "consumeOne", "reset-before");
    await waitQuiet(meter);
    const one = [];
    const many = [];
    for (let i = 0; i < CFG.resetWarmup; i++) {
      await resetOnce(h.apiSmall, `warm-${i}`);
      await resetOnce(h.apiBig, `warm-${i}`);
    }
    for (let i = 0; i < CFG.resets; i++) {
      // Alternate which goes first, so neither always follows the other.
      if (i % 2 === 0) {
        one.push(await resetOnce(h.apiSmall, `m-${i}`));
        many.push(await resetOnce(h.apiBig, `m-${i}`));
      } else {
        many.push(await resetOnce(h.apiBig, `m-${i}`));
        one.push(await resetOnce(h.apiSmall, `m-${i}`));
      }
    }
    say(
      `resets: p50 ${median(one).toFixed(1)} ms with 1 account, ${median(many).toFixed(1)} ms with ${accounts.toLocaleString("en")}`,
    );
    await waitQuiet(meter);
    const consumeAfter = await runLoad(h.big.base, meter, "consumeOne", "reset-after");
    return {
      one: { accounts: 1, ...latencyStats(one) },
      many: { accounts, ...latencyStats(many) },
      populationSeconds,
      resetsMade: CFG.resets + CFG.resetWarmup,
      consumeBefore,
      consumeAfter,
    };
  } finally {
    await h.small.mf.dispose();
    await h.big.mf.dispose();
  }
}

/** What-if: the same queue measurement with the consumer's max_batch_size at WHAT_IF_BATCH. */
async function queueWhatIf(scriptPath) {
  const { mf, base } = await startServer({
    scriptPath,
    stateDir: join(OUT, "state-queue-what-if"),
    migrationsDir: join(ROOT, "migrations"),
    queue: { ...CONSUMER, maxBatchSize: WHAT_IF_BATCH },
  });
  try {
    const api = client(base);
    const meter = cpuMeter();
    await queueRun(api, "wwarm_", null, 1000);
    const xs = [];
    for (let rep = 0; rep < CFG.settleReps; rep++) {
      await waitQuiet(meter, 5000);
      xs.push(await queueRun(api, `w${rep}_`, meter));
    }
    return {
      maxBatchSize: WHAT_IF_BATCH,
      entriesPerMessage: CFG.settlePerMessage,
      queuePerSec: median(xs.map((x) => x.perSec)),
      runs: xs,
    };
  } finally {
    await mf.dispose();
  }
}

/**
 * Cost runs on a fresh instance whose ACCOUNT is the metered BenchAccountDO: rows written and read in the objects and
 * in D1, queue messages, archive puts, bytes kept, per decision; and list-price dollars per million decisions.
 */
async function costPhase(scriptPath) {
  const server = await startServer({
    scriptPath,
    stateDir: join(OUT, "state-cost"),
    migrationsDir: join(ROOT, "migrations"),
    preventEviction: true,
    queue: CONSUMER,
    accountClass: "BenchAccountDO",
    bindings: { BENCH_METER: "1" },
  });
  try {
    const api = client(server.base);
    const cpu = cpuMeter();
    const empty = await api.post("/__bench/storage", {});
    const window = [];
    for (const n of CFG.costAccounts) {
      const ids = Array.from({ length: n }, (_, k) => `cost_w${n}_${k}`);
      say(`cost: window-funded, ${n} account(s) at ${fmt(CFG.costRate / n, 1)} decisions/s each`);
      await prepareAccounts(api, ids);
      const r = await measureRun(api, server.base, {
        tag: `cost-w${n}`,
        ids,
        pick: (i) => ids[i % n],
        rate: CFG.costRate,
        seconds: CFG.costSeconds,
        cpu,
      });
      say(
        `cost: ${fmt(r.objectRows, 2)} object rows, ${fmt(r.d1Rows, 3)} D1 rows, ${fmt(r.messages, 3)} messages, ${fmt(r.r2Puts, 3)} R2 puts per decision`,
      );
      window.push(r);
    }
    say(`cost: grant-funded, 1 account at ${CFG.costRate} decisions/s`);
    await prepareAccounts(api, ["cost_g1_0"], { grant: true });
    const grant = await measureRun(api, server.base, {
      tag: "cost-g1",
      ids: ["cost_g1_0"],
      pick: () => "cost_g1_0",
      rate: CFG.costRate,
      seconds: CFG.costSeconds,
      cpu,
    });
    const one = window.find((w) => w.accounts === 1);
    const figures = {
      window,
      grant,
      // what a decision keeps in its object, split as the bytes of its journal row (kept 7 days) and answer (48 h)
      objectBytes: { held: one.objectBytesHeld, journal: one.objectBytesJournal, answers: one.objectBytesAnswers },
      objectEmptyBytes: median(window.map((w) => w.objectEmptyBytes)),
      // workerd's CPU per decision (the worker, the object, the consumer and local D1/R2 together): an upper bound
      // for the Worker CPU billed, and for the object's own time per decision
      workerCpuMs: one.workerCpuMs,
      objectMsPerDecision: one.workerCpuMs,
      // bytes a D1 row takes, indexes included: the ledger's growth over the rows it kept
      d1BytesPerRow: (grant.d1Storage.bytes - empty.d1.reduce((a, b) => a + b, 0)) / grant.d1Storage.rows,
      d1StatementsPerMessage: median(window.map((w) => w.d1StatementsPerMessage).filter((x) => x !== null)),
      prices: PRICES,
      limits: LIMITS,
    };
    const many = quietestRun(figures);
    figures.dollarsPerMillion = {
      window1Account: dollarsPerMillion(perDecision(figures, one.rate, "window")),
      window1000Accounts: dollarsPerMillion(perDecision(figures, many.rate, "window")),
      grant1Account: dollarsPerMillion(perDecision(figures, grant.rate, "grant")),
    };
    figures.workerdProblems = server.problems();
    return figures;
  } finally {
    await server.mf.dispose();
  }
}

// ───────────────────────────── report ─────────────────────────────

function fmt(x, d = 0) {
  if (x === null || x === undefined || !Number.isFinite(x)) return "n/a";
  return x.toLocaleString("en", { maximumFractionDigits: d, minimumFractionDigits: d });
}

function verdict(ok) {
  return ok ? "met" : "MISSED";
}

function buildRows(r) {
  const e = r.e2e.summary;
  const rows = [];
  const lat = (x) => `${fmt(x.rps)} rps, p50 ${fmt(x.p50ms)} ms, p99 ${fmt(x.p99ms)} ms`;
  const cpu = (x) =>
    `${fmt(x.workerdCpuMsPerReq, 2)} ms workerd CPU/req (${fmt(x.workerdCpuShare * 100)}% of its JS thread)`;
  const ratioB = e.consumeOne.rps / e.floorB.rps;
  rows.push([
    "1",
    "consume, 1 account, c=32",
    lat(e.consumeOne),
    `floor (a) empty RPC: ${lat(e.floorA)}`,
    `${fmt(e.consumeOne.rps / e.floorA.rps, 2)}x`,
    "-",
    "info",
  ]);
  rows.push([
    "1",
    "consume, 1 account, c=32",
    lat(e.consumeOne),
    `floor (b) 1-row upsert: ${lat(e.floorB)}`,
    `${fmt(ratioB, 2)}x`,
    ">= 0.8x",
    verdict(ratioB >= 0.8),
  ]);
  rows.push([
    "2",
    "consume over 1,000 accounts, c=32",
    lat(e.consumeMany),
    `1 account: ${fmt(e.consumeOne.rps)} rps`,
    `${fmt(e.consumeMany.rps / e.consumeOne.rps, 2)}x`,
    "-",
    "info",
  ]);
  rows.push([
    "2",
    "consume over 1,000 accounts, c=32",
    lat(e.consumeMany),
    `floor (b) over 1,000 objects: ${lat(e.floorBMany)}`,
    `${fmt(e.consumeMany.rps / e.floorBMany.rps, 2)}x`,
    "-",
    "info",
  ]);
  const i = r.inObject;
  rows.push([
    "3",
    "in-object µs per decision (best of 5 x 1,000)",
    `${fmt(i.decisionUs, 1)} µs (${fmt(i.statementsPerDecision, 1)} SQL statements)`,
    `1-row upsert: ${fmt(i.upsertUs, 2)} µs`,
    `${fmt(i.decisionUs / i.upsertUs, 1)}x`,
    "<= 3x",
    verdict(i.decisionUs / i.upsertUs <= 3),
  ]);
  rows.push([
    "3",
    "in-object µs per decision (best of 5 x 1,000)",
    `${fmt(i.decisionUs, 1)} µs`,
    "-",
    "-",
    "<= 100 µs",
    verdict(i.decisionUs <= 100),
  ]);
  const g = r.growth;
  rows.push([
    "4",
    `µs per decision at ${fmt(g.priorLarge)} vs ${g.priorSmall} prior charges (best of ${CFG.growthReps} rounds)`,
    `${fmt(g.largeUs, 1)} µs (${fmt(g.statementsLarge, 1)} stmts; median ${fmt(g.largeMedianUs, 1)})`,
    `${fmt(g.smallUs, 1)} µs (${fmt(g.statementsSmall, 1)} stmts; median ${fmt(g.smallMedianUs, 1)})`,
    `${fmt(g.largeUs / g.smallUs, 2)}x (medians ${fmt(g.largeMedianUs / g.smallMedianUs, 2)}x)`,
    "<= 1.2x",
    verdict(g.largeUs / g.smallUs <= 1.2),
  ]);
  const s = r.settlement;
  const perMsg = (k) => `${k} ${k === 1 ? "entry" : "entries"}/message`;
  rows.push([
    "5",
    `ledger entries/s, queue consumer -> D1 (${perMsg(s.entriesPerMessage)})`,
    `${fmt(s.queuePerSec)} /s`,
    `raw D1 batches of ${CONSUMER.maxBatchSize} messages (as the consumer's): ${fmt(s.rawPerSec)} /s`,
    `${fmt(s.queuePerSec / s.rawPerSec, 2)}x`,
    ">= 0.7x",
    verdict(s.queuePerSec / s.rawPerSec >= 0.7),
  ]);
  rows.push([
    "5",
    "charge-to-ledger (settled_at - created_at)",
    `paced ${fmt(s.pacedLag.rps)} rps: p50 ${fmt(s.pacedLag.p50ms)} ms, p99 ${fmt(s.pacedLag.p99ms)} ms`,
    `saturated: p50 ${fmt(s.saturatedLag.p50ms)} ms, p99 ${fmt(s.saturatedLag.p99ms)} ms`,
    "-",
    "-",
    "info",
  ]);
  const rs = r.resets;
  const rr = rs.many.p50ms / rs.one.p50ms;
  const full = rs.many.accounts >= CFG.totalAccounts;
  rows.push([
    "6",
    "global reset, POST /v1/admin/resets latency",
    `${fmt(rs.many.accounts)} accounts: p50 ${fmt(rs.many.p50ms, 1)} ms, p99 ${fmt(rs.many.p99ms, 1)} ms`,
    `1 account: p50 ${fmt(rs.one.p50ms, 1)} ms, p99 ${fmt(rs.one.p99ms, 1)} ms`,
    `${fmt(rr, 2)}x`,
    "~1 (0.8-1.25)",
    rr >= 0.8 && rr <= 1.25 ? (full ? "met" : `met at ${fmt(rs.many.accounts)} (time cap)`) : "MISSED",
  ]);

  // Context: the hot path as a ladder, one added piece per step (rps, and workerd CPU per request).
  const step = (label, x, prev, prevName = "previous step") =>
    rows.push([
      "c",
      label,
      `${fmt(x.rps)} rps; ${cpu(x)}`,
      prev ? `${prevName}: ${fmt(prev.rps)} rps` : "-",
      prev ? `${fmt(x.rps / prev.rps, 2)}x` : "-",
      "-",
      "info",
    ]);
  step("ladder 1: floor (a), empty RPC", e.floorA);
  step("ladder 2: floor (b), + 1-row upsert and its commit", e.floorB, e.floorA);
  step("ladder 3: consume by RPC, queue send stubbed", e.consumeNoQueue, e.floorB);
  step("ladder 4: + queue send, consumer, D1 (consume by RPC)", e.consumeRpc, e.consumeNoQueue);
  step("ladder 5: + product HTTP layer (= row 1)", e.consumeOne, e.consumeRpc);
  step("product HTTP layer alone, object stubbed", e.workerOnly, e.floorA, "floor (a)");
  rows.push([
    "c",
    "decision answer bytes (status, headers, body): lean vs ?include=account",
    `${fmt(e.workerOnly.bytesPerResponse)} B`,
    `with the account: ${fmt(e.workerOnlyFull.bytesPerResponse)} B`,
    `${fmt(e.workerOnly.bytesPerResponse / e.workerOnlyFull.bytesPerResponse, 2)}x`,
    "-",
    "info",
  ]);
  rows.push([
    "c",
    "HTTP layer workerd CPU per consume: lean vs ?include=account",
    `${fmt(e.workerOnly.workerdCpuMsPerReq, 3)} ms`,
    `with the account: ${fmt(e.workerOnlyFull.workerdCpuMsPerReq, 3)} ms`,
    `${fmt(e.workerOnly.workerdCpuMsPerReq / e.workerOnlyFull.workerdCpuMsPerReq, 2)}x`,
    "-",
    "info",
  ]);
  step("consume over 1,000 accounts (= row 2)", e.consumeMany, e.floorBMany, "floor (b) over 1,000 objects");
  const b = i.breakdownUs;
  rows.push([
    "c",
    "in-object µs: step / write (rolled back) / summaryOf / its JSON / load / point read",
    `${fmt(b.stepUs, 1)} / ${fmt(b.writeUs, 1)} / ${fmt(b.summaryOfUs, 1)} / ${fmt(b.summaryJsonStringifyUs, 1)} / ${fmt(b.loadUs, 1)} / ${fmt(i.pointReadUs, 2)}`,
    `upsert ${fmt(i.upsertUs, 2)}; in transactionSync ${fmt(i.upsertInTransactionSyncUs, 2)}`,
    "-",
    "-",
    "info",
  ]);
  rows.push([
    "c",
    "in-object µs: grant-funded decision / decision applying 1 global reset",
    `${fmt(i.grantDecisionUs, 1)} / ${fmt(i.resetApplyDecisionUs, 1)}`,
    `window-funded ${fmt(i.decisionUs, 1)}; outbox flush +${fmt(i.decisionOutboxFlushUs, 1)}`,
    "-",
    "-",
    "info",
  ]);
  const sz = g.sizesAt100k;
  const sa = g.sizesAfterAlarmAt8Days;
  rows.push([
    "c",
    `account rows at ${fmt(g.priorLarge)} charges: answers/outbox`,
    `${fmt(sz.answers)}/${fmt(sz.outbox)}, ${fmt(sz.databaseBytes / 1e6, 1)} MB`,
    `after the alarm 8 days on: ${fmt(sa.answers)}/${fmt(sa.outbox)}, ${fmt(sa.databaseBytes / 1e6, 1)} MB`,
    "-",
    "-",
    "info",
  ]);
  const bt = g.byTable;
  rows.push([
    "c",
    `growth by table: ${fmt(g.priorLarge)} synthetic rows in one table (best of ${CFG.growthReps})`,
    ["answers", "outbox"].map((t) => `${t} ${fmt(bt[t].ratio, 2)}x`).join(", "),
    `both at once: ${fmt(bt.all.ratio, 2)}x`,
    "-",
    "-",
    "info",
  ]);
  const ip = g.indexProbe;
  rows.push([
    "c",
    `µs per index insert, random UUID key / increasing key, table of ${fmt(g.priorLarge)} rows`,
    `${fmt(ip[g.priorLarge].randomKeyUs, 1)} / ${fmt(ip[g.priorLarge].increasingKeyUs, 1)}`,
    `table of 10 rows: ${fmt(ip[10].randomKeyUs, 1)} / ${fmt(ip[10].increasingKeyUs, 1)}`,
    `${fmt(ip[g.priorLarge].randomKeyUs / ip[10].randomKeyUs, 2)}x / ${fmt(ip[g.priorLarge].increasingKeyUs / ip[10].increasingKeyUs, 2)}x`,
    "-",
    "info",
  ]);
  rows.push([
    "c",
    `queue transport alone: send, broker, dispatch, ack (consumer only counts), ${perMsg(s.entriesPerMessage)}`,
    `${fmt(s.transportPerSec)} /s; ${fmt(s.transportWorkerdCpuMsPerEntry, 3)} ms workerd CPU/entry`,
    `transport + raw D1 in series: ${fmt(s.predictedQueuePerSec)} /s predicted`,
    `queue path measured ${fmt(s.queuePerSec / s.predictedQueuePerSec, 2)}x of that`,
    "-",
    "info",
  ]);
  const sp = s.packed;
  rows.push([
    "c",
    `ledger entries/s, queue consumer -> D1, ${perMsg(sp.entriesPerMessage)}`,
    `${fmt(sp.queuePerSec)} /s (transport alone ${fmt(sp.transportPerSec)} /s)`,
    `raw D1 batches of ${CONSUMER.maxBatchSize} messages: ${fmt(sp.rawPerSec)} /s`,
    `${fmt(sp.queuePerSec / sp.rawPerSec, 2)}x (${fmt(sp.queuePerSec / s.queuePerSec, 2)}x of ${perMsg(s.entriesPerMessage)})`,
    "-",
    "info",
  ]);
  const shape = (x) =>
    `${fmt(x.entries)} entries in ${fmt(x.messages)} messages (${fmt(x.entriesPerMessage, 2)}/message)`;
  rows.push([
    "c",
    "product outbox packing seen by the consumer: e2e phase (with its setup) / paced run",
    shape(s.productShape.e2e),
    shape(s.productShape.paced),
    "-",
    "-",
    "info",
  ]);
  rows.push([
    "c",
    "settlement workerd CPU ms per entry (% of its JS thread)",
    `queue ${fmt(s.queueWorkerdCpuMsPerEntry, 3)} (${fmt(s.queueWorkerdCpuShare * 100)}%)`,
    `raw ${fmt(s.rawWorkerdCpuMsPerEntry, 3)} (${fmt(s.rawWorkerdCpuShare * 100)}%)`,
    "-",
    "-",
    "info",
  ]);
  rows.push([
    "c",
    "sendBatch ms per message: 1-message sends / 100-message sends",
    `${fmt(s.sendCost.msPerMessageSendBatch1, 3)} / ${fmt(s.sendCost.msPerMessageSendBatch100, 3)}`,
    "-",
    "-",
    "-",
    "info",
  ]);
  const w = r.queueWhatIf;
  rows.push([
    "c",
    `queue consumer at max_batch_size ${w.maxBatchSize} (what-if)`,
    `${fmt(w.queuePerSec)} /s`,
    `raw D1 batches of ${w.maxBatchSize}: ${fmt(s.rawWhatIfPerSec)} /s`,
    `${fmt(w.queuePerSec / s.rawWhatIfPerSec, 2)}x (${fmt(w.queuePerSec / s.rawPerSec, 2)}x of raw ${CONSUMER.maxBatchSize})`,
    "-",
    "info",
  ]);
  rows.push([
    "c",
    `consume, 1 account, after ${fmt(rs.resetsMade)} global resets`,
    lat(rs.consumeAfter),
    `same instance before them: ${fmt(rs.consumeBefore.rps)} rps`,
    `${fmt(rs.consumeAfter.rps / rs.consumeBefore.rps, 2)}x`,
    "-",
    "info",
  ]);
  if (r.cost) rows.push(...costRows(r.cost));
  if (r.org) rows.push(...orgRows(r.org));
  return rows;
}

/** The cost rows (issue #15 item 6): per decision, at 200 decisions/s on one account unless named otherwise. */
function costRows(c) {
  const one = busiestRun(c);
  const many = quietestRun(c);
  const g = c.grant;
  const $ = (x) => `$${fmt(x.total, 2)}`;
  const rowsOf = (x) =>
    `${fmt(x.objectRows, 2)} (run ${fmt(x.objectRowsRun, 2)}, alarms set ${fmt(x.objectAlarmsSet, 2)}, pruning ${fmt(x.objectRowsPruning, 2)})`;
  const top = (x) =>
    Object.entries(x.parts)
      .sort((a, b) => b[1] - a[1])
      .slice(0, 3)
      .map(([k, v]) => `${k} $${fmt(v, 2)}`);
  return [
    [
      "15a",
      "object rows written per window-funded decision, 1 account at 200/s",
      rowsOf(one),
      `over 1,000 accounts: ${fmt(many.objectRows, 2)}`,
      "-",
      "<= 4",
      verdict(one.objectRows <= 4),
    ],
    [
      "15b",
      "object rows written per grant-funded decision, 1 account at 200/s",
      rowsOf(g),
      `window-funded: ${fmt(one.objectRows, 2)}`,
      "-",
      "<= 8",
      verdict(g.objectRows <= 8),
    ],
    [
      "15c",
      "D1 rows written per window-funded decision, 1 account at 200/s",
      `${fmt(one.d1Rows, 3)}`,
      `over 1,000 accounts: ${fmt(many.d1Rows, 3)}`,
      "-",
      "<= 0.1",
      verdict(one.d1Rows <= 0.1),
    ],
    [
      "15d",
      "D1 rows written per grant-funded decision, 1 account at 200/s",
      `${fmt(g.d1Rows, 3)}`,
      `window-funded: ${fmt(one.d1Rows, 3)}`,
      "-",
      "-",
      "info",
    ],
    [
      "15e",
      "object bytes kept per decision over the idempotency horizon (journal row 7 d + answer 48 h)",
      `${fmt(one.objectBytesHeld)} B (journal ${fmt(one.objectBytesJournal)}, answer ${fmt(one.objectBytesAnswers)})`,
      `after retention ran (8 days on): ${fmt(one.objectBytesAfterRetention)} B`,
      "-",
      "<= 300 B",
      verdict(one.objectBytesHeld <= 300),
    ],
    [
      "15f",
      "D1 rows kept / R2 bytes per window-funded decision, 1 account at 200/s",
      `${fmt(one.d1RowsKept, 4)} rows (${fmt(one.d1RowsKept * c.d1BytesPerRow)} B) / ${fmt(one.r2BytesListed)} B`,
      `over 1,000 accounts: ${fmt(many.d1RowsKept, 4)} rows / ${fmt(many.r2BytesListed)} B; a D1 row ${fmt(c.d1BytesPerRow)} B; + 1 usage row per account and hour active`,
      "-",
      "-",
      "info",
    ],
    [
      "15f",
      "D1 rows kept / R2 bytes per grant-funded decision, 1 account at 200/s",
      `${fmt(g.d1RowsKept, 3)} rows (${fmt(g.d1RowsKept * c.d1BytesPerRow)} B) / ${fmt(g.r2BytesListed)} B`,
      "-",
      "-",
      "-",
      "info",
    ],
    [
      "15g",
      "queue messages per decision, 1 account at 200/s (first deliveries)",
      `${fmt(one.messages, 3)} (${fmt(one.entriesPerMessage, 1)} entries/message)`,
      `over 1,000 accounts at 0.2/s each: ${fmt(many.messages, 3)}`,
      "-",
      "<= 0.05",
      verdict(one.messages <= 0.05),
    ],
    [
      "15g",
      "queue messages per decision by the account's own rate (the capacity model's input)",
      c.window.map((w) => `${fmt(w.rate, 1)}/s: ${fmt(w.messages, 3)}`).join(", "),
      "-",
      "-",
      "-",
      "info",
    ],
    [
      "15h",
      "list-price $ per million window-funded decisions, 1 account at 200/s",
      $(c.dollarsPerMillion.window1Account),
      `over 1,000 accounts: ${$(c.dollarsPerMillion.window1000Accounts)} (${top(c.dollarsPerMillion.window1000Accounts).join(", ")})`,
      top(c.dollarsPerMillion.window1Account).join(", "),
      "<= $5",
      verdict(c.dollarsPerMillion.window1Account.total <= 5),
    ],
    [
      "15i",
      "list-price $ per million grant-funded decisions, 1 account at 200/s",
      $(c.dollarsPerMillion.grant1Account),
      "-",
      top(c.dollarsPerMillion.grant1Account).join(", "),
      "-",
      "info",
    ],
  ];
}

/** Organizations (issue #16 item 6): rows 16a-16d, from bench/org.mjs. */
function runOrgPhase(scriptPath) {
  return orgPhase({
    scriptPath,
    stateDir: join(OUT, "state-org"),
    migrationsDir: join(ROOT, "migrations"),
    queue: CONSUMER,
    quick: QUICK,
    say,
  });
}

function orgRows(o) {
  const rows = [];
  const perMember = (x) =>
    x.perMemberPerSecond >= 1 ? `${fmt(x.perMemberPerSecond)}/s` : `1 per ${fmt(1 / x.perMemberPerSecond)} s`;
  for (const x of o.steady ?? [])
    rows.push([
      "16a",
      `pool-object calls per member decision, steady state: ${x.members} members deciding at ${perMember(x)} each (product time), windows spent, after ${fmt(x.warmupProductSeconds)} s warm-up`,
      `${fmt(x.callsPerDecision, 4)} (${fmt(x.issues)} issues + ${fmt(x.closes)} closes / ${fmt(x.decisions)} decisions)`,
      `mean issue ${fmt((x.meanIssue ?? 0) / x.cost, 1)} decisions' worth; ${fmt(x.poolCallsPerMemberHour, 1)} pool calls per member-hour; ${fmt(x.denied)} denied`,
      "-",
      "<= 0.05",
      verdict(x.callsPerDecision <= 0.05),
    ]);
  const l = o.latency;
  const lat = (x) => `p50 ${fmt(x.p50ms, 1)} ms, p99 ${fmt(x.p99ms, 1)} ms`;
  if (l)
    rows.push([
      "16b",
      `member decision latency, one request at a time: paid from the lease it holds vs first asking the pool (${fmt(l.members)} members)`,
      `with a lease: ${lat(l.withLease)} (n=${fmt(l.withLease.n)})`,
      `without: ${lat(l.noLease)} (n=${fmt(l.noLease.n)}; fresh member ${lat(l.noLeaseFresh)}; after its lease closed ${lat(l.noLeaseAfterClose)})`,
      `+${fmt(l.noLease.p50ms - l.withLease.p50ms, 1)} ms at p50; an empty RPC: ${lat(l.emptyRpc)}`,
      "-",
      "info",
    ]);
  // 16c: one row per pool size; repeated bursts are reported by their median false-denial rate, with the range.
  const byRatio = new Map();
  for (const b of o.burst ?? []) byRatio.set(b.poolRatio, [...(byRatio.get(b.poolRatio) ?? []), b]);
  for (const [ratio, runs] of byRatio) {
    const sorted = [...runs].sort((x, y) => x.falseRate - y.falseRate);
    const b = sorted[Math.floor((sorted.length - 1) / 2)];
    const range =
      runs.length > 1
        ? `median of ${runs.length} bursts (${sorted.map((x) => `${fmt(x.falseRate * 100, 2)}%`).join(", ")}): `
        : "";
    rows.push([
      "16c",
      `false denials in a burst: ${fmt(b.members)} fresh members x ${b.perMember} decisions, ${b.concurrency} in flight, pool ${fmt(ratio, 2)}x the burst's demand`,
      `${range}${fmt(b.falseRate * 100, 2)}% (${fmt(b.falseDenials)} of ${fmt(b.requests)}; ${fmt(b.falseDenialsAmbiguous)} of them undecidable from the answers)`,
      `${fmt(b.denied)} denied (${fmt(b.trueDenials)} true); ${fmt(b.issues)} issues (${fmt(b.issuedEmpty)} empty) + ${fmt(b.closes)} closes = ${fmt(b.callsPerDecision, 2)} pool calls per decision; credit left ${fmt(b.creditLeftAtEnd / 1e6, 2)}`,
      "-",
      ratio >= 1 ? "<= 1%" : "-",
      ratio >= 1 ? verdict(b.falseRate <= 0.01) : "info",
    ]);
  }
  const s = o.simulation;
  if (s)
    rows.push([
      "16d",
      `simulation: 1 org, ${fmt(s.members)} members (${fmt(s.membersDeciding)} deciding, Zipf s=${s.zipf}), ${fmt(s.decisions)} decisions over ${fmt(s.productSeconds / 60, 1)} min of product time`,
      `${fmt(s.callsPerDecision, 4)} pool calls per decision (${fmt(s.issues)} issues + ${fmt(s.closes)} closes; ${fmt(s.callsPerDecisionWithFinalCloses, 4)} with the ${fmt(s.finalCloses)} closes at the end); ${fmt(s.denied)} denied (${s.falseDenials === null ? "n/a" : fmt(s.falseDenials)} false, ${s.trueDenials === null ? "n/a" : fmt(s.trueDenials)} true)`,
      `I-pool with open leases ${s.open.iPool.holds ? "holds" : "BROKEN"}, after closing them all ${s.closed.iPool.holds ? "holds" : "BROKEN"} (${fmt(s.closed.iPool.left)} = ${fmt(s.closed.iPool.right)}); wall ${fmt(s.wallSeconds.total)} s (setup ${fmt(s.wallSeconds.setup)} s, run ${fmt(s.wallSeconds.run)} s at ${fmt(s.decisionsPerWallSecond)} decisions/s)`,
      `${fmt(s.poolCallsPerProductSecond, 2)} pool calls/s`,
      "I-pool holds",
      s.open.iPool.holds && s.closed.iPool.holds ? "met" : "MISSED",
    ]);
  return rows;
}

function renderTable(rows) {
  const head = ["#", "measurement", "measured", "baseline", "ratio", "target", "result"];
  const all = [head, ...rows];
  const widths = head.map((_, c) => Math.max(...all.map((r) => String(r[c]).length)));
  const line = (r) => `| ${r.map((v, c) => String(v).padEnd(widths[c])).join(" | ")} |`;
  return [line(head), `|${widths.map((w) => "-".repeat(w + 2)).join("|")}|`, ...rows.map(line)].join("\n");
}

// ───────────────────────────── main ─────────────────────────────

async function main() {
  checkNode();
  checkBindings();
  mkdirSync(OUT, { recursive: true });
  const scriptPath = build();
  const require = createRequire(createRequire(import.meta.url).resolve("miniflare"));
  const workerdVersion = JSON.parse(readFileSync(require.resolve("workerd/package.json"), "utf8")).version;
  const miniflareVersion = JSON.parse(
    readFileSync(join(dirname(require.resolve("miniflare")), "..", "..", "package.json"), "utf8"),
  ).version;
  if (process.env.BENCH_ONLY === "org") {
    // Only the organizations rows (16a-16d), for working on them: printed, and written beside the quick run's JSON.
    const org = await runOrgPhase(scriptPath);
    if (process.env.BENCH_KEEP_STATE !== "1")
      for (const d of readdirSync(OUT))
        if (d.startsWith("state-org")) rmSync(join(OUT, d), { recursive: true, force: true });
    const path = join(OUT, QUICK ? "results-org-quick.json" : "results-org.json");
    writeFileSync(
      path,
      `${JSON.stringify({ startedAt: new Date().toISOString(), source: gitState(), org }, null, 2)}\n`,
    );
    console.log(renderTable(orgRows(org)));
    console.log(`JSON copy: ${relative(ROOT, path)}`);
    return;
  }
  if (process.env.BENCH_ONLY === "cost") {
    // Only the cost runs, for working on them: printed, and written beside the quick run's JSON.
    const cost = await costPhase(scriptPath);
    const path = join(OUT, "results-cost.json");
    writeFileSync(
      path,
      `${JSON.stringify({ startedAt: new Date().toISOString(), source: gitState(), cost }, null, 2)}\n`,
    );
    console.log(renderTable(costRows(cost)));
    console.log(`JSON copy: ${relative(ROOT, path)}`);
    return;
  }
  const results = {
    startedAt: new Date().toISOString(),
    source: gitState(),
    config: CFG,
    quick: QUICK,
    loadAverageAtStart: loadavg(),
  };

  // Instance 1: the HTTP runs and settlement (1, 2, 5).
  say("starting the main instance");
  const main1 = await startServer({
    scriptPath,
    stateDir: join(OUT, "state"),
    migrationsDir: join(ROOT, "migrations"),
    preventEviction: true,
    queue: CONSUMER,
  });
  try {
    const api = client(main1.base);
    const meter = cpuMeter();
    const ledger = ledgerTracker(api);
    results.path = {
      load: `autocannon ${JSON.parse(readFileSync(join(ROOT, "node_modules/autocannon/package.json"), "utf8")).version}, ${CFG.connections} keep-alive HTTP/1.1 connections, closed loop, in the bench's Node ${process.versions.node} process`,
      server: `${main1.base.origin} -> Miniflare ${miniflareVersion} entry (no wrangler proxy) -> workerd ${workerdVersion} (one process, pid ${meter.pids.join(",")}) -> ${relative(ROOT, scriptPath)}`,
      bundle:
        "bench/worker.ts = worker/index.ts's default export for every path outside /__bench/ (a prefix test in front), plus BenchProbeDO, BenchAccountDO (extends AccountDO), BenchOrgDO (extends OrgDO) and /__bench/* routes",
      storage: `SQLite Durable Objects, the D1 ledger shards (${Object.keys(productBindings().d1Databases).join(", ")}) and the R2 archive on disk under bench/out/; settlement queues (${Object.keys(productBindings().queueConsumers).join(", ")}) with producers and consumer as in wrangler.toml (max_batch_size ${CONSUMER.maxBatchSize}, max_batch_timeout ${CONSUMER.maxBatchTimeout} s)`,
    };
    const e2e = await e2ePhase(main1.base, api, meter, ledger);
    results.e2e = e2e;
    await waitQuiet(meter);
    results.settlement = await settlementPhase(main1.base, api, meter, ledger, e2e.tags);
    results.decisionLogLinesSeen = main1.logLines();
    results.workerdProblems = main1.problems();
  } finally {
    await main1.mf.dispose();
  }

  // Instance 2, fresh: in-object costs and growth (3, 4), without the thousands of objects the HTTP runs
  // left in memory (a bigger heap makes every garbage collection inside the timed loops dearer).
  say("starting a fresh instance for the in-object phases");
  const main2 = await startServer({
    scriptPath,
    stateDir: join(OUT, "state-in-object"),
    migrationsDir: join(ROOT, "migrations"),
    preventEviction: true,
    queue: CONSUMER,
  });
  let resets = null;
  try {
    const api = client(main2.base);
    results.inObject = await inObjectPhase(api);
    results.growth = await growthPhase(api, async () => {
      resets = await prepareResets(scriptPath);
      await resets.population;
    });
    results.workerdProblems.push(...main2.problems());
  } catch (err) {
    if (resets) await Promise.allSettled([resets.small.mf.dispose(), resets.big.mf.dispose()]);
    throw err;
  } finally {
    await main2.mf.dispose();
  }

  results.resets = await measureResets(resets);
  say(`queue what-if: consumer max_batch_size ${WHAT_IF_BATCH}`);
  results.queueWhatIf = await queueWhatIf(scriptPath);
  results.cost = await costPhase(scriptPath);
  results.org = await runOrgPhase(scriptPath);

  if (process.env.BENCH_KEEP_STATE !== "1")
    for (const d of readdirSync(OUT)) if (d.startsWith("state")) rmSync(join(OUT, d), { recursive: true, force: true });
  results.loadAverageAtEnd = loadavg();
  results.durationSeconds = Number(elapsed());
  const rows = buildRows(results);
  results.table = rows.map(([n, measurement, measured, baseline, ratio, target, result]) => ({
    n,
    measurement,
    measured,
    baseline,
    ratio,
    target,
    result,
  }));
  // A quick run's numbers are not comparable: it never replaces the JSON of a full run.
  const jsonPath = QUICK ? join(OUT, "results-quick.json") : join(ROOT, "bench", "results.json");
  writeFileSync(jsonPath, `${JSON.stringify(results, null, 2)}\n`);

  const other = median(Object.values(results.e2e.summary).map((x) => x.otherCpuShare));
  console.log(
    `\nMeasured through: ${results.path.load}\n  -> ${results.path.server}\n  bundle: ${results.path.bundle}\n  storage: ${results.path.storage}\n`,
  );
  console.log(renderTable(rows));
  console.log(
    `\nMachine: ${os.cpus().length} cores; load average ${results.loadAverageAtStart.join(" ")} at start, ${results.loadAverageAtEnd.join(" ")} at end; ` +
      `the rest of the machine (other processes, kernel network and disk work) used a median ${(other * 100).toFixed(0)}% of a core during the e2e runs${other > 0.5 ? " (busy: numbers are low and noisy, compare ratios only)" : ""}.`,
  );
  const src = results.source.commit
    ? `Product code: ${results.source.commit}${results.source.uncommittedProductFiles.length ? ` + uncommitted ${results.source.uncommittedProductFiles.join(", ")}` : ""}. `
    : "";
  console.log(
    `${src}${QUICK ? "QUICK run (BENCH_QUICK=1): short runs, numbers are not comparable. " : ""}Finished in ${results.durationSeconds} s. JSON copy: ${relative(ROOT, jsonPath)}`,
  );
}

const loadavg = () => os.loadavg().map((x) => Number(x.toFixed(2)));

/** Which product code was measured: the commit, and product files changed since it (the bench builds the work tree). */
function gitState() {
  const git = (...args) => spawnSync("git", args, { cwd: ROOT, encoding: "utf8" });
  const head = git("rev-parse", "--short", "HEAD");
  if (head.status !== 0) return { commit: null };
  const changed = git("status", "--porcelain", "--", "worker", "durable-objects", "migrations", "wrangler.toml")
    .stdout.split("\n")
    .filter(Boolean)
    .map((l) => l.slice(3));
  return { commit: head.stdout.trim(), uncommittedProductFiles: changed };
}

/** max_batch_size, max_batch_timeout, max_retries and the dead-letter queue of the product's settlement consumers. */
function consumerConfig() {
  const consumers = Object.values(productBindings().queueConsumers);
  const cfg = consumers[0];
  if (!cfg || !Object.values(cfg).every((v) => v !== undefined && !Number.isNaN(v)))
    throw new Error(`bench: cannot read the settlement consumer from wrangler.toml: ${JSON.stringify(cfg)}`);
  // One consumer setting serves every settlement queue: they must agree.
  if (consumers.some((c) => JSON.stringify(c) !== JSON.stringify(cfg)))
    throw new Error(`bench: the settlement consumers in wrangler.toml differ: ${JSON.stringify(consumers)}`);
  return cfg;
}

/** The bench config must offer every binding the product's wrangler.toml declares, or the bench would measure another setup. */
function checkBindings() {
  const names = (file) =>
    new Set([...readFileSync(file, "utf8").matchAll(/^\s*(?:binding|name)\s*=\s*"([A-Z0-9_]+)"/gm)].map((m) => m[1]));
  const product = names(join(ROOT, "wrangler.toml"));
  const bench = names(join(ROOT, "bench", "wrangler.toml"));
  const missing = [...product].filter((b) => !bench.has(b));
  if (missing.length) {
    console.error(
      `bench: wrangler.toml declares bindings that bench/wrangler.toml and bench/server.mjs lack: ${missing.join(", ")}. Add them to both.`,
    );
    process.exit(1);
  }
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
