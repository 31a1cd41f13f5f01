// What a decision costs at list price, measured on the product's real path (HTTP route, AccountDO, outbox, settlement
// queues, consumer, D1 shards, R2 archive) in an instance whose ACCOUNT is BenchAccountDO with BENCH_METER=1
// (bench/worker.ts meters every statement of the objects, every D1 batch of the consumer and every archive put).
// Shared by `npm run bench` (the cost rows) and `npm run simulate`.
import { readFileSync, readdirSync } from "node:fs";
import { load } from "./load.mjs";
import { TOKENS } from "./server.mjs";

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const TICK_MS = 10; // /proc times are in USER_HZ ticks, 100 per second on Linux

/** Busy CPU time of the whole machine (all cores), ms, from /proc/stat. */
export function machineBusyMs() {
  const f = readFileSync("/proc/stat", "utf8").split("\n")[0].trim().split(/\s+/).slice(1).map(Number);
  // user nice system idle iowait irq softirq steal
  return (f[0] + f[1] + f[2] + f[5] + f[6] + f[7]) * TICK_MS;
}

/**
 * CPU time of workerd (the child processes Miniflare started), of this Node process (the load generator)
 * and of the rest of the machine: other processes (others' builds and tests may share these 2 cores)
 * and kernel work not billed to a process (loopback networking, disk writeback).
 */
export function cpuMeter() {
  const kids = readdirSync("/proc")
    .filter((p) => /^\d+$/.test(p))
    .filter((p) => {
      try {
        const st = readFileSync(`/proc/${p}/stat`, "utf8");
        return (
          Number(st.slice(st.lastIndexOf(")") + 2).split(" ")[1]) === process.pid &&
          readFileSync(`/proc/${p}/comm`, "utf8").startsWith("workerd")
        );
      } catch {
        return false;
      }
    });
  const workerdMs = () =>
    kids.reduce((sum, p) => {
      try {
        const st = readFileSync(`/proc/${p}/stat`, "utf8");
        const f = st.slice(st.lastIndexOf(")") + 2).split(" ");
        return sum + (Number(f[11]) + Number(f[12])) * TICK_MS;
      } catch {
        return sum;
      }
    }, 0);
  return {
    pids: kids.map(Number),
    start() {
      const w0 = workerdMs();
      const n0 = process.cpuUsage();
      const m0 = machineBusyMs();
      const t0 = performance.now();
      return () => {
        const n = process.cpuUsage(n0);
        const w = workerdMs() - w0;
        const nodeMs = (n.user + n.system) / 1000;
        return {
          wallMs: performance.now() - t0,
          workerdMs: w,
          nodeMs,
          otherMs: Math.max(0, machineBusyMs() - m0 - w - nodeMs),
        };
      };
    },
  };
}

const SERVICE = { authorization: `Bearer ${TOKENS.service}`, "content-type": "application/json" };
/** The settlement check follows a send by CHECK_MS (durable-objects/account/outbox.ts, 5 s): its writes belong to the run. */
const CHECK_WAIT_MS = 7000;
/** Retention is run this many days on: past the answers' 48 h and the journal's 7 days. */
const RETAIN_DAYS = 8;

/** A consume of `cost` on `account` through the product's route. */
export const consumeRequest = (account, key, cost = 1) => ({
  method: "POST",
  path: `/v1/accounts/${account}/consume`,
  headers: { ...SERVICE, "idempotency-key": key },
  body: JSON.stringify({ product: "codex", cost }),
});

const sumOf = (xs, f) => xs.reduce((a, x) => a + f(x), 0);

/**
 * Makes the accounts exist (one consume each), then waits until their journals are settled, so the measured runs
 * start from settled objects.
 */
export async function prepareAccounts(api, ids, { grant = false } = {}) {
  for (let i = 0; i < ids.length; i += 64)
    await Promise.all(
      ids.slice(i, i + 64).map(async (id) => {
        if (grant) {
          // a purchase, then one charge that spends the windows: every later consume is paid by the grant
          await api.call(
            "POST",
            `/v1/accounts/${id}/credits`,
            { amount: 1000 * 1_000_000, kind: "purchase" },
            {
              ...SERVICE,
              "idempotency-key": `grant-${id}`,
            },
          );
          const spent = await api.call(
            "POST",
            `/v1/accounts/${id}/consume`,
            { product: "codex", cost: 2_000_000 },
            {
              ...SERVICE,
              "idempotency-key": `spend-${id}`,
            },
          );
          if (!spent.allowed) throw new Error(`cost: ${id} could not spend its windows: ${JSON.stringify(spent)}`);
        } else
          await api.call(
            "POST",
            `/v1/accounts/${id}/consume`,
            { product: "codex", cost: 1 },
            {
              ...SERVICE,
              "idempotency-key": `create-${id}`,
            },
          );
      }),
    );
  await sleep(CHECK_WAIT_MS);
}

/**
 * One metered run: decisions through the HTTP route at `rate` a second in all for `seconds` (or `amount` of them), request i on account
 * `pick(i)`; then settlement drains, the objects' settlement checks run, and retention runs RETAIN_DAYS on every
 * account in `ids`. Returns the run's totals and its figures per decision.
 */
export async function measureRun(api, base, { tag, ids, pick, rate, seconds, amount, cost = 1, cpu, connections = 8 }) {
  const sizes0 = await api.post("/__bench/account/sizes", { accountIds: ids });
  const storage0 = await api.post("/__bench/storage", {});
  await api.post("/__bench/meter", { reset: true });
  const stop = cpu?.start();
  const r = await load({
    base,
    connections,
    seconds,
    amount,
    overallRate: rate,
    next: (i) => consumeRequest(pick(i), `${tag}-${i}`, cost),
  });
  if (r.non2xx > 0 || r.errors > 0)
    throw new Error(`cost ${tag}: ${r.non2xx} non-2xx, ${r.errors} errors (${JSON.stringify(r.statusCodes)})`);
  const decisions = r.ok;
  // Settlement: every decision's entry reached the consumer on its first delivery, then the settlement checks ran.
  let m = await api.post("/__bench/meter", {});
  for (let k = 0; k < 600 && m.queue.firstEntries < decisions; k++) {
    await sleep(100);
    m = await api.post("/__bench/meter", {});
  }
  if (m.queue.firstEntries < decisions)
    throw new Error(`cost ${tag}: ${m.queue.firstEntries} of ${decisions} entries reached the consumer in 60 s`);
  // The settlement checks (and the alarms they set) run CHECK_MS after each send; under load, later: wait until
  // no alarm has run for 3 s (bounded).
  await sleep(CHECK_WAIT_MS);
  m = await api.post("/__bench/meter", {});
  for (let k = 0, still = 0; k < 60 && still < 3; k++) {
    await sleep(1000);
    const next = await api.post("/__bench/meter", {});
    still = next.object.alarmsRun === m.object.alarmsRun && next.queue.messages === m.queue.messages ? still + 1 : 0;
    m = next;
  }
  const cpuUsed = stop?.();
  const storage1 = await api.post("/__bench/storage", {});
  const retained = await api.post("/__bench/account/retain", { accountIds: ids, days: RETAIN_DAYS });
  const pruned = sumOf(retained, (x) => x.prunedRows);
  // Alarms set and run count through retention too: the pruning alarm is one, and a check still pending runs there.
  const alarms = (await api.post("/__bench/meter", {})).object;
  if (m.object.statements === 0 || m.ledger.batches === 0)
    throw new Error(
      `cost ${tag}: nothing metered (object statements ${m.object.statements}, D1 batches ${m.ledger.batches})`,
    );
  if (m.queue.firstMessages > 0 && m.archive.puts === 0) throw new Error(`cost ${tag}: no archive put metered`);

  const held = sumOf(retained, (x) => x.before.databaseBytes) - sumOf(sizes0, (x) => x.databaseBytes);
  const journalRaw = sumOf(retained, (x) => x.before.journalRawBytes) - sumOf(sizes0, (x) => x.journalRawBytes);
  const answersRaw = sumOf(retained, (x) => x.before.answersRawBytes) - sumOf(sizes0, (x) => x.answersRawBytes);
  const after = sumOf(retained, (x) => x.sizes.databaseBytes) - sumOf(sizes0, (x) => x.databaseBytes);
  const per = (x) => x / decisions;
  // Retention also prunes what each account's preparing decision left (one consume each): shared over both.
  const prunedPer = pruned / (decisions + ids.length);
  const d1Bytes = sumOf(storage1.d1, (x) => x) - sumOf(storage0.d1, (x) => x);
  const d1RowsKept = sumOf(storage1.d1Rows, (x) => x) - sumOf(storage0.d1Rows, (x) => x);
  return {
    tag,
    accounts: ids.length,
    rate: rate / ids.length,
    overallRate: rate,
    decisions,
    seconds: r.seconds,
    p50ms: r.p50ms,
    p99ms: r.p99ms,
    totals: {
      ...m,
      prunedRows: pruned,
      objectBytesHeld: held,
      journalRaw,
      answersRaw,
      objectBytesAfter: after,
      d1Bytes,
    },
    // per decision
    objectRows: per(m.object.rowsWritten + alarms.alarmsSet) + prunedPer,
    objectRowsRun: per(m.object.rowsWritten),
    objectRowsPruning: prunedPer,
    objectAlarmsSet: per(alarms.alarmsSet),
    objectAlarms: per(alarms.alarmsRun),
    objectRowsRead: per(m.object.rowsRead),
    objectBytesHeld: per(held),
    objectBytesJournal: journalRaw + answersRaw > 0 ? per((held * journalRaw) / (journalRaw + answersRaw)) : 0,
    objectBytesAnswers: journalRaw + answersRaw > 0 ? per((held * answersRaw) / (journalRaw + answersRaw)) : 0,
    objectBytesAfterRetention: per(after),
    // the rows' own bytes (journal and answers), free of page granularity: comparable on accounts of a few decisions
    objectRawBytes: per(journalRaw + answersRaw),
    objectEmptyBytes: sizes0.length ? sizes0.map((x) => x.databaseBytes).sort((a, b) => a - b)[sizes0.length >> 1] : 0,
    d1Rows: per(m.ledger.rowsWritten),
    d1RowsRead: per(m.ledger.rowsRead),
    // D1 grows by pages: over a short run, rows kept (ledger, heads, events) measure its growth better
    d1BytesPaged: per(d1Bytes),
    d1RowsKept: per(d1RowsKept),
    d1Storage: { bytes: sumOf(storage1.d1, (x) => x), rows: sumOf(storage1.d1Rows, (x) => x) },
    d1StatementsPerMessage: m.queue.messages ? m.ledger.statements / m.queue.messages : null,
    messages: per(m.queue.firstMessages),
    entriesPerMessage: m.queue.firstMessages ? m.queue.firstEntries / m.queue.firstMessages : null,
    redeliveries: m.queue.messages - m.queue.firstMessages,
    r2Puts: per(m.archive.puts),
    r2Bytes: per(m.archive.bytes),
    r2BytesListed: per(storage1.r2.bytes - storage0.r2.bytes),
    workerCpuMs: cpuUsed ? per(cpuUsed.workerdMs) : null,
  };
}
