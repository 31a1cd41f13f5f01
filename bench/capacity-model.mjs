// The capacity model (issue #15 item 7): per-decision figures measured by the bench (bench/results.json, `cost`)
// scaled to a deployment. Prices and limits are Cloudflare's published ones, each with its source and the day read.
import { readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const READ_ON = "2026-11-29";

/** List prices, Workers Paid, USD, beyond the included monthly usage (which the model leaves out: list price). */
export const PRICES = {
  workerRequestsPerM: {
    usd: 0.3,
    source: "https://developers.cloudflare.com/workers/platform/pricing/",
    readOn: READ_ON,
  },
  workerCpuMsPerM: {
    usd: 0.02,
    source: "https://developers.cloudflare.com/workers/platform/pricing/",
    readOn: READ_ON,
  },
  doRequestsPerM: {
    usd: 0.15,
    note: "RPC sessions and alarm invocations count as requests",
    source: "https://developers.cloudflare.com/durable-objects/platform/pricing/",
    readOn: READ_ON,
  },
  doDurationPerMGbS: {
    usd: 12.5,
    note: "128 MB per object while active or unable to hibernate",
    source: "https://developers.cloudflare.com/durable-objects/platform/pricing/",
    readOn: READ_ON,
  },
  doRowsWrittenPerM: {
    usd: 1.0,
    note: "SQLite storage backend; index writes count, setAlarm() counts as one row written",
    source: "https://developers.cloudflare.com/durable-objects/platform/pricing/#sqlite-storage-backend",
    readOn: READ_ON,
  },
  doRowsReadPerM: {
    usd: 0.001,
    source: "https://developers.cloudflare.com/durable-objects/platform/pricing/#sqlite-storage-backend",
    readOn: READ_ON,
  },
  doStoragePerGbMonth: {
    usd: 0.2,
    source: "https://developers.cloudflare.com/durable-objects/platform/pricing/#sqlite-storage-backend",
    readOn: READ_ON,
  },
  d1RowsWrittenPerM: { usd: 1.0, source: "https://developers.cloudflare.com/d1/platform/pricing/", readOn: READ_ON },
  d1RowsReadPerM: { usd: 0.001, source: "https://developers.cloudflare.com/d1/platform/pricing/", readOn: READ_ON },
  d1StoragePerGbMonth: { usd: 0.75, source: "https://developers.cloudflare.com/d1/platform/pricing/", readOn: READ_ON },
  queueOpsPerM: {
    usd: 0.4,
    note: "an operation per 64 KB written, read or deleted; a delivered message is 3 (write, read, delete)",
    source: "https://developers.cloudflare.com/queues/platform/pricing/",
    readOn: READ_ON,
  },
  r2ClassAPerM: {
    usd: 4.5,
    note: "PutObject is Class A",
    source: "https://developers.cloudflare.com/r2/pricing/",
    readOn: READ_ON,
  },
  r2ClassBPerM: { usd: 0.36, source: "https://developers.cloudflare.com/r2/pricing/", readOn: READ_ON },
  r2StoragePerGbMonth: { usd: 0.015, source: "https://developers.cloudflare.com/r2/pricing/", readOn: READ_ON },
};

/** Platform limits the model checks against. */
export const LIMITS = {
  doRequestsPerSecond: {
    value: 1000,
    note: "soft limit per object",
    source: "https://developers.cloudflare.com/durable-objects/reference/faq/",
    readOn: READ_ON,
  },
  doStorageBytes: {
    value: 10e9,
    note: "SQLite storage per object",
    source: "https://developers.cloudflare.com/durable-objects/platform/limits/",
    readOn: READ_ON,
  },
  d1DatabaseBytes: {
    value: 10e9,
    note: "per database; cannot be raised",
    source: "https://developers.cloudflare.com/d1/platform/limits/",
    readOn: READ_ON,
  },
  d1WriteMs: {
    value: 1,
    note: "a database runs one query at a time: ~1,000 queries/s at 1 ms each",
    source: "https://developers.cloudflare.com/d1/platform/limits/",
    readOn: READ_ON,
  },
  queueMessagesPerSecond: {
    value: 5000,
    note: "per queue",
    source: "https://developers.cloudflare.com/queues/platform/limits/",
    readOn: READ_ON,
  },
  queueMessageBytes: {
    value: 128e3,
    source: "https://developers.cloudflare.com/queues/platform/limits/",
    readOn: READ_ON,
  },
  queueBatchMessages: {
    value: 100,
    note: "consumer batch size",
    source: "https://developers.cloudflare.com/queues/platform/limits/",
    readOn: READ_ON,
  },
};

const DAY_S = 86_400;
const MONTH_S = 30 * DAY_S;
/** How long the object keeps what a decision leaves (durable-objects/account/store.ts RETENTION): answers 48 h, journal 7 days. */
const KEEP_S = { answers: 2 * DAY_S, journal: 7 * DAY_S };

/** Bytes an object keeps per decision/s of steady rate: each decision's answer and journal row over their horizons. */
export const keptBytesPerRate = (figures) =>
  figures.objectBytes.answers * KEEP_S.answers + figures.objectBytes.journal * KEEP_S.journal;
/** The object flushes this long after its first unsent step (durable-objects/account/outbox.ts FLUSH_DELAY_MS). */
const FLUSH_DELAY_S = 0.2;
/** Durable Objects bill duration for 128 MB per active object. */
const OBJECT_GB = 0.128;

const ROOT = join(dirname(fileURLToPath(import.meta.url)), "..");

/** The per-decision figures the bench measured (`cost` of bench/results.json, or of another results file). */
export function loadFigures(path = join(ROOT, "bench", "results.json")) {
  const cost = JSON.parse(readFileSync(path, "utf8")).cost;
  if (!cost) throw new Error(`${path} has no \`cost\` section: run \`npm run bench\` first`);
  return cost;
}

/** Per-decision figures of the window-funded runs, by the account's own decisions/s. */
const FIELDS = [
  "objectRows",
  "objectRowsRead",
  "objectAlarms",
  "d1Rows",
  "d1RowsRead",
  "messages",
  "r2Puts",
  "r2Bytes",
  "d1RowsKept",
];

/**
 * One figure at an account's own rate `r`: interpolated in log(r) between the rates measured, flat below the lowest.
 * Above the highest, messages (and what goes per message) fall as 1/r: an object at that rate already sends one
 * message per flush window.
 */
function atRate(points, field, r) {
  const ps = points;
  if (r <= ps[0].rate) return ps[0][field];
  const top = ps.at(-1);
  if (r >= top.rate) {
    const perMessage = ["messages", "r2Puts"].includes(field);
    return perMessage ? (top[field] * top.rate) / r : top[field];
  }
  const i = ps.findIndex((p) => p.rate >= r);
  const [a, b] = [ps[i - 1], ps[i]];
  const t = (Math.log(r) - Math.log(a.rate)) / (Math.log(b.rate) - Math.log(a.rate));
  return a[field] + t * (b[field] - a[field]);
}

/** Per-decision figures for an account deciding `r` times a second; `funding` "window" or "grant". */
/** The window-funded runs by rate, slowest first (sorted once per figures object). */
const byRate = new WeakMap();
const windowRuns = (figures) => {
  let runs = byRate.get(figures);
  if (!runs) {
    runs = [...figures.window].sort((a, b) => a.rate - b.rate);
    byRate.set(figures, runs);
  }
  return runs;
};
/** The window-funded run at the highest per-account rate (one account) and at the lowest (many accounts). */
export const busiestRun = (figures) => windowRuns(figures).at(-1);
export const quietestRun = (figures) => windowRuns(figures)[0];

export function perDecision(figures, r, funding = "window") {
  const runs = windowRuns(figures);
  const out = Object.fromEntries(FIELDS.map((f) => [f, atRate(runs, f, r)]));
  if (funding === "grant") {
    // What a grant-funded decision adds (its money entry in D1, the grant's row in the object) does not depend on rate.
    const g = figures.grant;
    const w = Object.fromEntries(FIELDS.map((f) => [f, atRate(runs, f, g.rate)]));
    for (const f of FIELDS) out[f] += g[f] - w[f];
  }
  out.objectBytesJournal = figures.objectBytes.journal;
  out.objectBytesAnswers = figures.objectBytes.answers;
  out.workerCpuMs = figures.workerCpuMs;
  // Active time the object is billed per decision: the decision, then the flush timer keeps it from hibernating.
  out.objectActiveS = Math.min(1 / r, FLUSH_DELAY_S + figures.objectMsPerDecision / 1000);
  return out;
}

/**
 * Archive objects the consumer writes per delivered batch (one per shard and hour in it), from the bench's runs: the
 * archive is written per batch, not per message, so its puts follow the queues' batch cadence, not each account's.
 */
export function r2PutsPerBatch(figures) {
  const runs = [...figures.window, figures.grant];
  const batches = runs.reduce((a, w) => a + w.totals.queue.batches, 0);
  return batches ? runs.reduce((a, w) => a + w.totals.archive.puts, 0) / batches : 1;
}

/** List-price dollars per million decisions of per-decision figures `d` (see perDecision). */
export function dollarsPerMillion(d) {
  const P = PRICES;
  const parts = {
    workerRequests: P.workerRequestsPerM.usd,
    workerCpu: d.workerCpuMs * P.workerCpuMsPerM.usd,
    // the decision's RPC, and each alarm run
    doRequests: (1 + d.objectAlarms) * P.doRequestsPerM.usd,
    doDuration: d.objectActiveS * OBJECT_GB * P.doDurationPerMGbS.usd,
    doRowsWritten: d.objectRows * P.doRowsWrittenPerM.usd,
    doRowsRead: d.objectRowsRead * P.doRowsReadPerM.usd,
    d1RowsWritten: d.d1Rows * P.d1RowsWrittenPerM.usd,
    d1RowsRead: d.d1RowsRead * P.d1RowsReadPerM.usd,
    queue: d.messages * 3 * P.queueOpsPerM.usd,
    // each queue delivery batch is a consumer invocation; under-counted as one per message at worst
    r2Puts: d.r2Puts * P.r2ClassAPerM.usd,
  };
  return { total: Object.values(parts).reduce((a, b) => a + b, 0), parts };
}

/**
 * Each account's decisions/s: Zipf with exponent `zipf` over `accounts` for `decisionsPerSecond` in all, no account
 * above `capPerAccount` (what a capped account would take goes to the others, in proportion). Returns the rates, and
 * how many accounts sit at the cap.
 */
export function activity({ accounts, decisionsPerSecond, zipf = 1, capPerAccount = Infinity }) {
  const weights = new Float64Array(accounts);
  for (let k = 0; k < accounts; k++) weights[k] = (k + 1) ** -zipf;
  const rates = new Float64Array(accounts);
  // The busiest come first: cap them one by one while the rest's share would put them over the cap.
  let rest = 0;
  for (const w of weights) rest += w;
  let left = decisionsPerSecond;
  let capped = 0;
  while (capped < accounts && (left * weights[capped]) / rest > capPerAccount) {
    rates[capped] = capPerAccount;
    left -= capPerAccount;
    rest -= weights[capped];
    capped++;
  }
  for (let k = capped; k < accounts; k++) rates[k] = (left * weights[k]) / rest;
  return { rates, hotCount: capped };
}

/**
 * A deployment's capacity: `rates` per account (decisions/s; from `activity`, or measured), `shards` of the ledger
 * (and of the settlement queues), `funding` the share of grant-funded decisions.
 */
export function capacity(
  figures,
  { rates, shards = 2, grantShare = 0, hotCount = 0, batchTimeoutS = 1, batchSize = LIMITS.queueBatchMessages.value },
) {
  let total = 0;
  const sum = Object.fromEntries([...FIELDS, "objectActiveS", "workerCpuMs"].map((f) => [f, 0]));
  let dollarsPerSecond = 0;
  let maxRate = 0;
  // Every account below the slowest rate measured has the same figures: computed once.
  const floor = figures.window.reduce((m, w) => Math.min(m, w.rate), Infinity);
  const memo = new Map();
  const figuresAt = (r, funding) => {
    const key = `${funding}:${Math.max(r, floor)}`;
    let v = memo.get(key);
    if (!v) {
      const d = perDecision(figures, Math.max(r, floor), funding);
      // archive puts are counted per batch below, for the whole deployment
      v = { d, dollars: dollarsPerMillion({ ...d, r2Puts: 0 }).total };
      if (r <= floor) memo.set(key, v);
    }
    return v;
  };
  for (const r of rates) {
    if (r <= 0) continue;
    total += r;
    maxRate = Math.max(maxRate, r);
    for (const [funding, share] of [
      ["window", 1 - grantShare],
      ["grant", grantShare],
    ]) {
      if (share === 0) continue;
      const { d, dollars } = figuresAt(r, funding);
      for (const f of Object.keys(sum)) sum[f] += r * share * d[f];
      dollarsPerSecond += (r * share * dollars) / 1e6;
    }
  }
  const per = Object.fromEntries(Object.entries(sum).map(([f, v]) => [f, total ? v / total : 0]));
  // A queue delivers a batch when it holds `batchSize` messages or `batchTimeoutS` after its first: one a timeout
  // while it takes fewer, and each batch writes r2PutsPerBatch archive objects.
  const messagesPerQueue = (per.messages * total) / shards;
  const batchesPerQueue = Math.max(Math.min(messagesPerQueue, 1 / batchTimeoutS), messagesPerQueue / batchSize);
  const r2PutsPerSecond = batchesPerQueue * shards * r2PutsPerBatch(figures);
  per.r2Puts = total ? r2PutsPerSecond / total : 0;
  dollarsPerSecond += (r2PutsPerSecond * PRICES.r2ClassAPerM.usd) / 1e6;
  // Storage an object holds at a steady rate r: what its decisions keep, each for as long as it is kept.
  const objectBytesAt = (r) => figures.objectEmptyBytes + r * keptBytesPerRate(figures);
  const sorted = [...rates].filter((r) => r > 0).sort((x, y) => x - y);
  const typicalRate = sorted.length ? sorted[Math.floor(sorted.length / 2)] : 0;
  // D1 keeps each money entry, each account's head, and a `usage` row per account, product and hour with window
  // usage (migrations/0005_usage_rollups.sql): one product here, so an account adds one row in each hour it decides.
  let hourRowsPerSecond = 0;
  for (const r of rates) if (r > 0) hourRowsPerSecond += -Math.expm1(-3600 * r) / 3600;
  const d1BytesPerSecond = (per.d1RowsKept * total + hourRowsPerSecond * (1 - grantShare)) * figures.d1BytesPerRow;
  per.d1Bytes = total ? d1BytesPerSecond / total : 0;
  const d1ShardsNeededForAYear = Math.ceil((d1BytesPerSecond * 365 * DAY_S) / LIMITS.d1DatabaseBytes.value);
  const activeObjects = rates.filter((r) => r > 0).length;
  const storageMonth = (activeObjects * figures.objectEmptyBytes + total * keptBytesPerRate(figures)) / 1e9;
  return {
    decisionsPerSecond: total,
    perDecision: per,
    objectBytes: {
      typical: objectBytesAt(typicalRate),
      typicalRate,
      hot: objectBytesAt(maxRate),
      hotRate: maxRate,
      hotOverObjectLimit: objectBytesAt(maxRate) > LIMITS.doStorageBytes.value,
    },
    hotAccountsOverRequestLimit: maxRate > LIMITS.doRequestsPerSecond.value,
    hotCount,
    d1: {
      bytesPerDay: d1BytesPerSecond * DAY_S,
      shards,
      daysUntilFull:
        d1BytesPerSecond > 0 ? (shards * LIMITS.d1DatabaseBytes.value) / d1BytesPerSecond / DAY_S : Infinity,
      shardsForAYear: d1ShardsNeededForAYear,
      writesPerSecondPerShard: (per.d1Rows * total) / shards,
      // each message is one D1 batch's share; a shard runs one query at a time (~1 ms a write)
      statementsPerSecondPerShard: (per.messages * total * figures.d1StatementsPerMessage) / shards,
    },
    queue: {
      messagesPerSecondPerQueue: (per.messages * total) / shards,
      limit: LIMITS.queueMessagesPerSecond.value,
      queuesNeeded: Math.ceil((per.messages * total) / LIMITS.queueMessagesPerSecond.value),
    },
    r2BytesPerDay: per.r2Bytes * total * DAY_S,
    monthly: {
      usage: dollarsPerSecond * MONTH_S,
      // storage at steady state: objects' retained bytes, a month of D1 growth (average half), R2's a month (half)
      doStorage: storageMonth * PRICES.doStoragePerGbMonth.usd,
      d1StorageFirstMonth: ((d1BytesPerSecond * MONTH_S) / 2 / 1e9) * PRICES.d1StoragePerGbMonth.usd,
      r2StorageFirstMonth: ((per.r2Bytes * total * MONTH_S) / 2 / 1e9) * PRICES.r2StoragePerGbMonth.usd,
    },
    dollarsPerMillionDecisions: total ? (dollarsPerSecond / total) * 1e6 : 0,
  };
}
