// Organizations (issue #16 item 6): rows 16a-16d of `npm run bench` (`npm run bench:org` runs only these;
// `BENCH_ORG_ROWS=16b,16c` only those rows).
// The real bundle, served as the bench serves it, with the product's OrgDO behind ORG as BenchOrgDO (the same code,
// counting the calls into it and the closes it makes: bench/worker.ts `orgMeter`) and the test clock enabled, so
// that requests carry the product's clock (`X-Test-Now`) and minutes of member activity run in seconds.
//   16a  pool-object calls per member decision at steady state, at four per-member rates;
//   16b  member decision latency with a lease and without one (the decision must first ask the pool);
//   16c  false denials in a burst of many members, with pools of 2x, 1.25x and 0.9x the burst's demand;
//   16d  one organization with 2,000 members under Zipf activity: calls, denials, I-pool, wall time.
// Every request goes through the product's HTTP routes. Member accounts are on plan `go`; each spends its codex
// windows (2 credits) 10 minutes (product clock) before joining, so every later decision draws from the pool.
import { readFileSync } from "node:fs";
import os from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { cpuMeter } from "./cost.mjs";
import { mulberry32, zipfDraws } from "./random.mjs";
import { client, startServer, TOKENS } from "./server.mjs";

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "..");
const CREDIT = 1_000_000;
const SECOND = 1000;
const MINUTE = 60 * SECOND;
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/**
 * The lease TTL and the decisions a lease is sized for, as the product declares them
 * (worker/core/account/membership.ts `LEASE_TTL_MS`, `LEASE.decisions`): the runs' lengths follow them.
 */
const { LEASE_TTL_MS, LEASE_DECISIONS } = (() => {
  const src = readFileSync(join(ROOT, "worker/core/account/membership.ts"), "utf8");
  const ttl = src.match(/export const LEASE_TTL_MS = ([\d_]+) \* ([\d_]+);/);
  const decisions = src.match(/export const LEASE = \{ decisions: ([\d_]+),/);
  if (!ttl || !decisions)
    throw new Error("bench: cannot read LEASE_TTL_MS and LEASE.decisions from worker/core/account/membership.ts");
  const n = (x) => Number(x.replaceAll("_", ""));
  return { LEASE_TTL_MS: n(ttl[1]) * n(ttl[2]), LEASE_DECISIONS: n(decisions[1]) };
})();

/**
 * A steady member's lease cycle at `perSecond` decisions a second: a lease lasts its size (LEASE.decisions, or about
 * 90 s of the member's rate: the rate is read over the last 1-2 minutes of spend) or the TTL, whichever ends first.
 */
const cycleSeconds = (perSecond) => Math.min(LEASE_TTL_MS / SECOND, Math.max(LEASE_DECISIONS / perSecond, 90));

export const ORG_CFG = (quick) => ({
  // The pool object's calls are counted by BenchOrgDO; the alarm's closes at a product-clock time are run by
  // `/__bench/org/close-due` every `tickMs` of product time (see `ticker`): 1/60 of the lease TTL.
  tickMs: LEASE_TTL_MS / 60,
  concurrency: 16,
  steady: {
    members: 10,
    cost: 10_000, // 0.01 credit a decision
    credits: 1000 * CREDIT,
    // Per-member rates (decisions per second of product time). Member k starts deciding k/members of a lease cycle
    // after the first (the members' refills and closes do not fall together); counting starts when every member has
    // decided for 2 minutes (its first lease taken, a minute of rate behind it) and lasts `cycles` lease cycles.
    rates: [1, 0.1, 1 / 60, 1 / 300].map((perSecond) => {
      const cycle = cycleSeconds(perSecond);
      return { perSecond, staggerS: cycle, warmupS: cycle + 120, measureS: (quick ? 1 : 3) * cycle };
    }),
  },
  latency: { members: quick ? 50 : 200, leased: 3, cost: 10_000, credits: 1000 * CREDIT },
  burst: {
    members: 100,
    perMember: 20,
    cost: 10_000,
    concurrency: 64,
    // pool credits as a multiple of the burst's demand (members x perMember x cost), each with its repeats (fresh
    // organization and members each); the target applies from 1x up
    pools: [
      { ratio: 2, repeats: quick ? 1 : 3 },
      { ratio: 1.25, repeats: quick ? 1 : 3 },
      { ratio: 0.9, repeats: 1 },
    ],
  },
  sim: {
    members: 2000,
    decisions: quick ? 4000 : 12_000,
    // product time: 12,000 decisions are 13.3 minutes of the organization's day, past one lease TTL (10 minutes), so
    // the pool's closes at the TTL are part of the run
    decisionsPerSecond: 15,
    zipf: 1,
    seed: 16,
    // micro-credits a decision, with weights
    costs: [
      [5_000, 0.6],
      [10_000, 0.3],
      [20_000, 0.1],
    ],
    credits: 5000 * CREDIT,
    concurrency: 32,
  },
});

// ───────────────────────────── HTTP ─────────────────────────────

const SERVICE = `Bearer ${TOKENS.service}`;

/** The product's routes, with the product clock in `X-Test-Now`; every answer timed from this process. */
function http(base) {
  const req = async (method, path, { body, key, now } = {}) => {
    const headers = { authorization: SERVICE };
    if (body !== undefined) headers["content-type"] = "application/json";
    if (key !== undefined) headers["idempotency-key"] = key;
    if (now !== undefined) headers["x-test-now"] = String(Math.round(now));
    const sentAt = performance.now();
    const res = await fetch(new URL(path, base), {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      signal: AbortSignal.timeout(120_000),
    });
    const text = await res.text();
    const receivedAt = performance.now();
    let parsed = text;
    try {
      parsed = JSON.parse(text);
    } catch {
      /* keep text */
    }
    return { status: res.status, body: parsed, sentAt, receivedAt, ms: receivedAt - sentAt };
  };
  const consume = (accountId, cost, now, key) =>
    req("POST", `/v1/accounts/${accountId}/consume`, { body: { product: "codex", cost }, key, now });
  return { req, consume };
}

const must = (r, status, what) => {
  if (r.status !== status) throw new Error(`${what}: ${r.status} ${JSON.stringify(r.body).slice(0, 300)}`);
  return r.body;
};

/** Micro-credits the pool paid in an answer. */
const poolPaid = (body) =>
  (body?.sources ?? []).filter((s) => s.layer === "pool").reduce((sum, s) => sum + s.amount, 0);

/** fn(0) … fn(n-1), at most `concurrency` at a time, in order of i; the answers by i. */
async function runConcurrent(n, concurrency, fn) {
  const out = new Array(n);
  let next = 0;
  await Promise.all(
    Array.from({ length: Math.min(concurrency, n) }, async () => {
      for (let i = next++; i < n; i = next++) out[i] = await fn(i);
    }),
  );
  return out;
}

/**
 * The pool's alarm, in product time. Requests here run the product's clock faster than the wall clock, and an
 * object's alarm fires at wall-clock time, so the alarm the pool sets for a lease's close would fire many product
 * minutes late. Instead, every `everyMs` of product time the driver runs what that alarm runs at that time
 * (`OrgDO.closeDue(now)`, then waits until no close is in flight); the closes it makes are counted as the pool's.
 */
function ticker(everyMs, start, onTick) {
  let next = start + everyMs;
  let running = null;
  let ticks = 0;
  const at = async (t) => {
    while (t >= next) {
      if (!running) {
        const when = next;
        next += everyMs;
        ticks++;
        running = onTick(when).finally(() => {
          running = null;
        });
      }
      await running;
    }
  };
  return { at, count: () => ticks };
}

const pct = (xs, p) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length === 0 ? Number.NaN : s[Math.min(s.length - 1, Math.max(0, Math.ceil((p / 100) * s.length) - 1))];
};
const latencyOf = (xs) => ({ n: xs.length, p50ms: pct(xs, 50), p99ms: pct(xs, 99), meanMs: mean(xs) });
const mean = (xs) => (xs.length ? xs.reduce((a, b) => a + b, 0) / xs.length : Number.NaN);
const diff = (a, b) => Object.fromEntries(Object.keys(b).map((k) => [k, b[k] - a[k]]));

/** Waits (bounded) until workerd is nearly idle: the settlement and closes of what came before are not measured. */
async function waitIdle(cpu, maxMs = 15_000) {
  const t0 = performance.now();
  while (performance.now() - t0 < maxMs) {
    const stop = cpu.start();
    await sleep(300);
    const c = stop();
    if (c.workerdMs / c.wallMs < 0.1) break;
  }
  return performance.now() - t0;
}

// ───────────────────────────── the organization ─────────────────────────────

/**
 * An organization with `credits` in its pool and `ids` as members. Each member first spends its codex windows (one
 * consume of 2 credits, 10 minutes before `now`: outside the minute over which the lease sizing reads the member's
 * rate), then joins: every later decision draws from the pool. (A member that spends its windows after joining asks
 * for a lease sized 32 x that decision in the background: 64 credits here.)
 */
async function setupOrg(h, { orgId, credits, ids, now, concurrency = 32 }) {
  must(
    await h.req("PUT", `/v1/orgs/${orgId}`, {
      body: { plan: "business", flexMonthlyLimit: 0 },
      key: `${orgId}-put`,
      now,
    }),
    200,
    `PUT org ${orgId}`,
  );
  must(
    await h.req("POST", `/v1/orgs/${orgId}/credits`, {
      body: { amount: credits, kind: "purchase" },
      key: `${orgId}-credits`,
      now,
    }),
    201,
    `pool credits ${orgId}`,
  );
  const windows = [];
  const joins = [];
  const t0 = performance.now();
  await runConcurrent(ids.length, concurrency, async (i) => {
    const id = ids[i];
    const w = await h.consume(id, 2 * CREDIT, now - 10 * MINUTE, `${id}-windows`);
    const spent = must(w, 200, `windows of ${id}`);
    if (!spent.allowed || poolPaid(spent) !== 0) throw new Error(`windows of ${id}: ${JSON.stringify(spent)}`);
    const j = await h.req("PUT", `/v1/orgs/${orgId}/members/${id}`, { body: {}, key: `${id}-join`, now });
    must(j, 200, `join ${id}`);
    windows.push(w.ms);
    joins.push(j.ms);
  });
  return { seconds: (performance.now() - t0) / 1000, windows: latencyOf(windows), joins: latencyOf(joins) };
}

/**
 * Both sides of every lease, read when no close is in flight: the pool's view (balance, leased, granted, expired)
 * and each member's `org.lease` (unspent) and `org.spent`. The pool's alarm is held during the read (it fires in wall
 * time, and the product clock here runs ahead of it: closes fall due while the 2,000 members are read), and a close
 * already running is waited out first. The pool is read again after the members: if its numbers moved, the read is
 * taken again.
 */
async function poolBook(h, api, orgId, ids, now, tries = 3) {
  await api.post("/__bench/org/hold-alarms", { orgId, held: true });
  try {
    return await readBook(h, api, orgId, ids, now, tries);
  } finally {
    await api.post("/__bench/org/hold-alarms", { orgId, held: false });
  }
}

async function readBook(h, api, orgId, ids, now, tries) {
  for (let attempt = 1; ; attempt++) {
    // no member's lease request in flight (the pool issued it, the member has not taken it yet), no close running
    await api.post("/__bench/account/lease-idle", { accountIds: ids });
    await api.post("/__bench/org/idle", { orgId });
    const view = must(await h.req("GET", `/v1/orgs/${orgId}`, { now }), 200, `GET org ${orgId}`);
    const members = await runConcurrent(ids.length, 32, async (i) => {
      const a = must(await h.req("GET", `/v1/accounts/${ids[i]}`, { now }), 200, `GET account ${ids[i]}`);
      return { lease: a.org?.lease ?? 0, spent: a.org?.spent ?? 0 };
    });
    await api.post("/__bench/org/idle", { orgId });
    const again = must(await h.req("GET", `/v1/orgs/${orgId}`, { now }), 200, `GET org ${orgId}`);
    const { balance, leased, granted, expired } = view.pool;
    const unspent = members.reduce((s, m) => s + m.lease, 0);
    const spent = members.reduce((s, m) => s + m.spent, 0);
    const stable = JSON.stringify(again.pool) === JSON.stringify(view.pool);
    const book = {
      balance,
      leased,
      granted,
      expired,
      unspent,
      spent,
      paused: view.paused,
      holdingLeases: members.filter((m) => m.lease > 0).length,
      // I-pool across objects: pool remaining + Σ members' unspent + Σ spent from the pool = granted − expired
      iPool: {
        left: balance + unspent + spent,
        right: granted - expired,
        holds: balance + unspent + spent === granted - expired,
      },
      // the pool's own side: what it counts as out with members is their unspent plus what they spent
      poolSide: { leased, membersUnspentPlusSpent: unspent + spent, holds: leased === unspent + spent },
      stable,
      attempts: attempt,
    };
    if (stable || attempt >= tries) return book;
  }
}

const meter = (api, reset = false) => api.post("/__bench/org/meter", { reset });

// ───────────────────────────── 16a ─────────────────────────────

/**
 * Members deciding at a steady per-member rate, windows spent: pool-object calls per decision after a warm-up. Each
 * member decides every 1/perSecond of product time from its own start; all members' decisions are sent in product
 * time order, `concurrency` in flight.
 */
async function steadyState(h, api, cfg, rate, tag) {
  const s = cfg.steady;
  const ids = Array.from({ length: s.members }, (_, k) => `${tag}_m${k}`);
  const orgId = `${tag}_org`;
  const start = Date.now();
  await setupOrg(h, { orgId, credits: s.credits, ids, now: start });
  const first = start + SECOND;
  const countFrom = first + rate.warmupS * SECOND;
  const end = countFrom + rate.measureS * SECOND;
  const every = SECOND / rate.perSecond;
  const schedule = [];
  for (let k = 0; k < s.members; k++)
    for (let t = first + (k / s.members) * rate.staggerS * SECOND; t < end; t += every) schedule.push({ t, k });
  schedule.sort((x, y) => x.t - y.t);
  const nWarm = schedule.findIndex((x) => x.t >= countFrom);
  const tick = ticker(cfg.tickMs, first, (at) => api.post("/__bench/org/close-due", { orgId, now: at }));
  const run = (from, n) =>
    runConcurrent(n, cfg.concurrency, async (j) => {
      const { t, k } = schedule[from + j];
      await tick.at(t);
      return h.consume(ids[k], s.cost, t, `${tag}-${from + j}`);
    });
  const t0 = performance.now();
  await run(0, nWarm);
  await sleep(300); // background refills of the last decisions
  const m0 = await meter(api);
  const t1 = performance.now();
  const stopCpu = h.cpu.start();
  const answers = await run(nWarm, schedule.length - nWarm);
  const cpu = stopCpu();
  const wallS = (performance.now() - t1) / 1000;
  await sleep(300);
  const m = diff(m0, await meter(api));
  const allowed = answers.filter((a) => a.status === 200).length;
  const denied = answers.filter((a) => a.status === 429).length;
  const other = answers.length - allowed - denied;
  if (other > 0) throw new Error(`16a ${tag}: ${other} answers neither 200 nor 429`);
  return {
    perMemberPerSecond: rate.perSecond,
    members: s.members,
    cost: s.cost,
    warmupProductSeconds: rate.warmupS,
    measuredProductSeconds: rate.measureS,
    warmupDecisions: nWarm,
    decisions: answers.length,
    allowed,
    denied,
    issues: m.issues,
    issuedEmpty: m.issuedEmpty,
    closes: m.closes,
    closeFailures: m.closeFailures,
    alarms: m.alarms,
    ticks: tick.count(),
    // the mean issue, in micro-credits
    meanIssue: m.issues - m.issuedEmpty > 0 ? m.issuedCredit / (m.issues - m.issuedEmpty) : null,
    callsPerDecision: (m.issues + m.closes) / answers.length,
    issuesPerDecision: m.issues / answers.length,
    closesPerDecision: m.closes / answers.length,
    poolCallsPerProductSecond: (m.issues + m.closes) / rate.measureS,
    poolCallsPerMemberHour: ((m.issues + m.closes) / rate.measureS / s.members) * 3600,
    decisionsPerWallSecond: answers.length / wallS,
    latency: latencyOf(answers.map((a) => a.ms)),
    workerdCpuMsPerDecision: cpu.workerdMs / answers.length,
    otherCpuShare: cpu.otherMs / cpu.wallMs,
    wallSeconds: (performance.now() - t0) / 1000,
  };
}

// ───────────────────────────── 16b ─────────────────────────────

/**
 * One request at a time: each member's first decision (no lease: it asks the pool first, with its shortfall), then
 * `leased` decisions paid from the lease it took; then every lease is closed (product time moved past the TTL, the
 * pool's closes run) and each member decides again (no lease) and once more (with one). Every decision's pool calls
 * are read from the meter around it, so each sample is classed by what it did.
 */
async function latencyRow(h, api, cfg) {
  const s = cfg.latency;
  const ids = Array.from({ length: s.members }, (_, k) => `org16b_m${k}`);
  const orgId = "org16b_org";
  let now = Date.now();
  await setupOrg(h, { orgId, credits: s.credits, ids, now });
  now += SECOND;
  const samples = { noLeaseFresh: [], noLeaseAfterClose: [], withLease: [] };
  const mismatched = [];
  let k = 0;
  const decide = async (id, expectIssues, group) => {
    now += 50;
    const before = await meter(api);
    const r = await h.consume(id, s.cost, now, `org16b-${k++}`);
    const after = await meter(api);
    const body = must(r, 200, `16b ${id}`);
    if (!body.allowed || poolPaid(body) !== s.cost) throw new Error(`16b ${id}: ${JSON.stringify(body)}`);
    const issues = after.issues - before.issues;
    if (issues !== expectIssues) mismatched.push({ group, issues });
    else samples[group].push(r.ms);
  };
  // warm the route and the objects' code paths once (not sampled); the setup's settlement done
  for (const id of ids.slice(0, 5)) await h.req("GET", `/v1/accounts/${id}`, { now });
  await waitIdle(h.cpu);
  for (const id of ids) {
    await decide(id, 1, "noLeaseFresh");
    for (let j = 0; j < s.leased; j++) await decide(id, 0, "withLease");
  }
  now += LEASE_TTL_MS + MINUTE;
  await api.post("/__bench/org/close-due", { orgId, now });
  await waitIdle(h.cpu); // the closes' journal settled before the next samples
  for (const id of ids) {
    await decide(id, 1, "noLeaseAfterClose");
    await decide(id, 0, "withLease");
  }
  // context: one empty RPC from the worker, one request at a time (bench/worker.ts /__bench/noop)
  const noop = [];
  for (let j = 0; j < s.members; j++) {
    const t0 = performance.now();
    await (await fetch(new URL("/__bench/noop", h.base))).text();
    noop.push(performance.now() - t0);
  }
  return {
    members: s.members,
    cost: s.cost,
    withLease: latencyOf(samples.withLease),
    noLeaseFresh: latencyOf(samples.noLeaseFresh),
    noLeaseAfterClose: latencyOf(samples.noLeaseAfterClose),
    noLease: latencyOf([...samples.noLeaseFresh, ...samples.noLeaseAfterClose]),
    emptyRpc: latencyOf(noop),
    mismatched,
  };
}

// ───────────────────────────── 16c ─────────────────────────────

/**
 * A burst: `members` fresh members (windows spent, no lease yet) each send `perMember` decisions, all shuffled
 * together and sent `concurrency` at a time, as fast as the server answers (product clock = wall clock). The pool
 * holds `ratio` x the burst's demand.
 *
 * A denial is false if, when it was decided, the pool as a whole (pool balance + other members' unspent leases) had
 * enough credit for it. The state at that instant is bounded from the answers: the pool's total credit (balance +
 * every member's unspent lease) only falls by what decisions spend (issues, returns and recalls move credit, never
 * change the total), and it starts at the pool's credits. A decision that committed before a denial was sent before
 * the denial's answer arrived, and every decision answered before the denial was sent had committed; so at the denial
 * the total lay between  start − Σ paid by decisions sent before the denial's answer  and  start − Σ paid by
 * decisions answered before it was sent. The member's own lease then held less than the decision's cost (it was
 * denied for want of credit), so the rest held more than (lower bound − cost). Certainly false: (lower bound − cost)
 * ≥ cost. Certainly true: upper bound < cost. Anything between is counted as false (the reported rate is an upper
 * bound), and reported apart.
 */
async function burstRow(h, api, cfg, ratio, tag) {
  const b = cfg.burst;
  const ids = Array.from({ length: b.members }, (_, k) => `${tag}_m${k}`);
  const orgId = `${tag}_org`;
  const demand = b.members * b.perMember * b.cost;
  const credits = Math.round(ratio * demand);
  await setupOrg(h, { orgId, credits, ids, now: Date.now() });
  const before = await poolBook(h, api, orgId, ids, Date.now());
  const start = before.balance + before.unspent;
  const random = mulberry32(1600 + Math.round(ratio * 100));
  const order = ids.flatMap((_, m) => Array.from({ length: b.perMember }, () => m));
  for (let i = order.length - 1; i > 0; i--) {
    const j = Math.floor(random() * (i + 1));
    [order[i], order[j]] = [order[j], order[i]];
  }
  await waitIdle(h.cpu);
  const m0 = await meter(api);
  const t0 = performance.now();
  const stopCpu = h.cpu.start();
  const answers = await runConcurrent(order.length, b.concurrency, (i) =>
    h.consume(ids[order[i]], b.cost, Date.now(), `${tag}-${i}`),
  );
  const cpu = stopCpu();
  const wallS = (performance.now() - t0) / 1000;
  await sleep(500);
  const m = diff(m0, await meter(api));
  const after = await poolBook(h, api, orgId, ids, Date.now());
  const bad = answers.filter((a) => a.status !== 200 && a.status !== 429);
  if (bad.length)
    throw new Error(`16c ${tag}: ${bad.length} answers neither 200 nor 429: ${JSON.stringify(bad[0].body)}`);

  // Paid amounts by send time and by answer time, for the bounds.
  const paid = answers.filter((a) => a.status === 200).map((a) => ({ ...a, paid: poolPaid(a.body) }));
  const bySent = [...paid].sort((x, y) => x.sentAt - y.sentAt);
  const byReceived = [...paid].sort((x, y) => x.receivedAt - y.receivedAt);
  const prefix = (xs) => {
    const sums = [0];
    for (const x of xs) sums.push(sums.at(-1) + x.paid);
    return sums;
  };
  const sentSums = prefix(bySent);
  const receivedSums = prefix(byReceived);
  /** Σ paid of decisions whose `key` time is before t (binary search over the sorted list). */
  const paidBefore = (xs, sums, key, t) => {
    let lo = 0;
    let hi = xs.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (xs[mid][key] < t) lo = mid + 1;
      else hi = mid;
    }
    return sums[lo];
  };
  const denials = answers.filter((a) => a.status === 429);
  const reasons = {};
  let surelyFalse = 0;
  let surelyTrue = 0;
  let ambiguous = 0;
  for (const d of denials) {
    reasons[d.body.reason] = (reasons[d.body.reason] ?? 0) + 1;
    const low = start - paidBefore(bySent, sentSums, "sentAt", d.receivedAt);
    const high = start - paidBefore(byReceived, receivedSums, "receivedAt", d.sentAt);
    if (low - b.cost >= b.cost) surelyFalse++;
    else if (high < b.cost) surelyTrue++;
    else ambiguous++;
  }
  // Denials of a member that had another of its requests in flight at the same time (answer intervals overlapping):
  // those share one lease request in the member's object, against the share of all requests that did.
  const byMember = new Map();
  for (const [i, a] of answers.entries()) byMember.set(order[i], [...(byMember.get(order[i]) ?? []), a]);
  const withSibling = (a, i) =>
    byMember.get(order[i]).some((x) => x !== a && x.sentAt < a.receivedAt && a.sentAt < x.receivedAt);
  const overlapping = answers.map(withSibling);
  const siblings = {
    deniedWithSiblingInFlight: answers.filter((a, i) => a.status === 429 && overlapping[i]).length,
    requestsWithSiblingInFlight: overlapping.filter(Boolean).length,
  };
  const spent = paid.reduce((s, a) => s + a.paid, 0);
  // where in the burst the denials fell: tenths of the requests, in the order they were sent
  const tenths = Array.from(
    { length: 10 },
    (_, k) =>
      answers.slice((k * answers.length) / 10, ((k + 1) * answers.length) / 10).filter((a) => a.status === 429).length,
  );
  return {
    poolRatio: ratio,
    members: b.members,
    perMember: b.perMember,
    cost: b.cost,
    concurrency: b.concurrency,
    demand,
    credits,
    requests: answers.length,
    allowed: paid.length,
    denied: denials.length,
    reasons,
    deniedByTenth: tenths,
    ...siblings,
    falseDenials: surelyFalse + ambiguous,
    falseDenialsCertain: surelyFalse,
    falseDenialsAmbiguous: ambiguous,
    trueDenials: surelyTrue,
    falseRate: (surelyFalse + ambiguous) / answers.length,
    falseRateCertain: surelyFalse / answers.length,
    spentInBurst: spent,
    // the pool as a whole at the end (balance + every unspent lease): at least what any false denial lacked
    creditLeftAtEnd: after.balance + after.unspent,
    before,
    after,
    issues: m.issues,
    issuedEmpty: m.issuedEmpty,
    emptyIssues: { closing: m.emptyClosing, short: m.emptyShort, other: m.emptyOther },
    // issues that waited for the pool's recall before answering (OrgDO.issueLease's starved path)
    recallWaits: m.closeDueCalls - m.alarms - m.benchCloseDue,
    closes: m.closes,
    closeFailures: m.closeFailures,
    alarms: m.alarms,
    callsPerDecision: (m.issues + m.closes) / answers.length,
    latency: latencyOf(answers.map((a) => a.ms)),
    workerdCpuMsPerDecision: cpu.workerdMs / answers.length,
    otherCpuShare: cpu.otherMs / cpu.wallMs,
    wallSeconds: wallS,
  };
}

// ───────────────────────────── 16d ─────────────────────────────

/**
 * One organization, 2,000 members, Zipf activity over members (rank k decides with weight 1/(k+1)), a mix of decision
 * sizes, at a fixed rate of product time, through the real bundle. Then: both sides of every lease read (open leases),
 * the pool's closes run to quiescence (product time moved past every lease's TTL), both sides read again.
 */
async function simulationRow(h, api, cfg) {
  const s = cfg.sim;
  const tStart = performance.now();
  const random = mulberry32(s.seed);
  const draws = zipfDraws(s.decisions, s.members, s.zipf, random);
  const totalWeight = s.costs.reduce((a, [, w]) => a + w, 0);
  const costs = Array.from({ length: s.decisions }, () => {
    let u = random() * totalWeight;
    for (const [c, w] of s.costs) {
      u -= w;
      if (u < 0) return c;
    }
    return s.costs.at(-1)[0];
  });
  const ids = Array.from({ length: s.members }, (_, k) => `org16d_m${k}`);
  const orgId = "org16d_org";
  const start = Date.now();
  const setup = await setupOrg(h, { orgId, credits: s.credits, ids, now: start, concurrency: s.concurrency });
  await waitIdle(h.cpu);
  const setupS = (performance.now() - tStart) / 1000;
  const step = SECOND / s.decisionsPerSecond;
  const simAt = (i) => start + SECOND + i * step;
  const tick = ticker(cfg.tickMs, simAt(0), (at) => api.post("/__bench/org/close-due", { orgId, now: at }));
  const m0 = await meter(api);
  const t1 = performance.now();
  const stopCpu = h.cpu.start();
  const answers = await runConcurrent(s.decisions, s.concurrency, async (i) => {
    await tick.at(simAt(i));
    const r = await h.consume(ids[draws[i]], costs[i], simAt(i), `org16d-${i}`);
    return { status: r.status, reason: r.body?.reason, paid: r.status === 200 ? poolPaid(r.body) : 0, ms: r.ms, i };
  });
  const runS = (performance.now() - t1) / 1000;
  const cpu = stopCpu();
  await sleep(500);
  const m = diff(m0, await meter(api));
  const end = simAt(s.decisions);
  const tRead = performance.now();
  const open = await poolBook(h, api, orgId, ids, end);
  // Quiescence: every lease's close is due (the last issue was before `end`), the pool runs them all.
  const quiet = end + LEASE_TTL_MS + MINUTE;
  const m1 = await meter(api);
  await api.post("/__bench/org/close-due", { orgId, now: quiet });
  const finalCloses = diff(m1, await meter(api)).closes;
  const closed = await poolBook(h, api, orgId, ids, quiet);
  const checkS = (performance.now() - tRead) / 1000;

  const bad = answers.filter((a) => a.status !== 200 && a.status !== 429);
  if (bad.length) throw new Error(`16d: ${bad.length} answers neither 200 nor 429`);
  const denials = answers.filter((a) => a.status === 429);
  // Classed as in 16c, with the answers' order as the product clock gives it: here the pool stays far from empty,
  // so the bound decides every denial (reported if not).
  const paidTotal = answers.reduce((a, x) => a + x.paid, 0);
  const low = s.credits - paidTotal; // at least this much credit in the pool as a whole at every moment of the run
  const reasons = {};
  for (const d of denials) reasons[d.reason] = (reasons[d.reason] ?? 0) + 1;
  const maxCost = Math.max(...s.costs.map(([c]) => c));
  const perMember = new Map();
  for (const k of draws) perMember.set(k, (perMember.get(k) ?? 0) + 1);
  const counts = [...perMember.values()].sort((a, b) => a - b);
  const productSeconds = s.decisions / s.decisionsPerSecond;
  return {
    members: s.members,
    membersDeciding: perMember.size,
    busiestMemberDecisions: counts.at(-1),
    medianMemberDecisions: pct(counts, 50),
    membersWithOneDecision: counts.filter((c) => c === 1).length,
    zipf: s.zipf,
    costs: s.costs,
    credits: s.credits,
    productSeconds,
    decisions: answers.length,
    allowed: answers.length - denials.length,
    denied: denials.length,
    reasons,
    // every denial with at least 2 x the largest decision left in the pool as a whole is a false denial
    falseDenials: low - maxCost >= maxCost ? denials.length : null,
    trueDenials: low - maxCost >= maxCost ? 0 : null,
    creditLeftAtLeast: low,
    issues: m.issues,
    issuedEmpty: m.issuedEmpty,
    closes: m.closes,
    alarms: m.alarms,
    ticks: tick.count(),
    closeFailures: m.closeFailures,
    callsPerDecision: (m.issues + m.closes) / answers.length,
    // with the closes of the leases still open at the end (each closes once more, at its TTL)
    finalCloses,
    callsPerDecisionWithFinalCloses: (m.issues + m.closes + finalCloses) / answers.length,
    poolCallsPerProductSecond: (m.issues + m.closes) / productSeconds,
    meanIssue: m.issues - m.issuedEmpty > 0 ? m.issuedCredit / (m.issues - m.issuedEmpty) : null,
    latency: latencyOf(answers.map((a) => a.ms)),
    decisionsPerWallSecond: answers.length / runS,
    workerdCpuMsPerDecision: cpu.workerdMs / answers.length,
    workerdCpuShare: cpu.workerdMs / cpu.wallMs,
    otherCpuShare: cpu.otherMs / cpu.wallMs,
    spent: paidTotal,
    open,
    closed,
    setup,
    wallSeconds: { setup: setupS, run: runS, checks: checkS, total: (performance.now() - tStart) / 1000 },
  };
}

// ───────────────────────────── the phase ─────────────────────────────

/**
 * Rows 16a-16c in one fresh instance, 16d in another (its 2,000 members alone), both with BenchOrgDO behind ORG and
 * the test clock enabled.
 */
export async function orgPhase({ scriptPath, stateDir, migrationsDir, queue, quick = false, say = () => undefined }) {
  const cfg = ORG_CFG(quick);
  const serve = (suffix) =>
    startServer({
      scriptPath,
      stateDir: `${stateDir}${suffix}`,
      migrationsDir,
      queue,
      preventEviction: true,
      orgClass: "BenchOrgDO",
      bindings: { TEST_CLOCK: "enabled" },
    });
  const loadavg = () => os.loadavg().map((x) => Number(x.toFixed(2)));
  const out = { config: cfg, leaseTtlMs: LEASE_TTL_MS, loadAverageAtStart: loadavg(), workerdProblems: [] };
  // BENCH_ORG_ROWS=16b,16c (say) runs only those rows: for working on them.
  const only = process.env.BENCH_ORG_ROWS?.split(",").map((x) => x.trim());
  const wanted = (row) => !only || only.includes(row);
  const server = wanted("16a") || wanted("16b") || wanted("16c") ? await serve("") : null;
  try {
    const api = server && client(server.base);
    const h = server && { ...http(server.base), base: server.base, cpu: cpuMeter() };
    if (wanted("16a")) out.steady = [];
    for (const [k, rate] of (wanted("16a") ? cfg.steady.rates : []).entries()) {
      say(`org 16a: ${cfg.steady.members} members at ${rate.perSecond.toFixed(3)} decisions/s each (product time)`);
      const r = await steadyState(h, api, cfg, rate, `org16a${k}`);
      say(
        `org 16a: ${r.callsPerDecision.toFixed(4)} pool calls per decision (${r.issues} issues, ${r.closes} closes, ${r.decisions} decisions, ${r.denied} denied)`,
      );
      out.steady.push(r);
    }
    if (wanted("16b")) {
      say(`org 16b: latency with and without a lease, ${cfg.latency.members} members, one request at a time`);
      out.latency = await latencyRow(h, api, cfg);
      say(
        `org 16b: with a lease p50 ${out.latency.withLease.p50ms.toFixed(1)} ms, without p50 ${out.latency.noLease.p50ms.toFixed(1)} ms`,
      );
    }
    if (wanted("16c")) out.burst = [];
    const bursts = (wanted("16c") ? cfg.burst.pools : []).flatMap((p) =>
      Array.from({ length: p.repeats }, (_, rep) => ({ ratio: p.ratio, rep })),
    );
    for (const { ratio, rep } of bursts) {
      say(`org 16c: burst, pool ${ratio}x the demand${rep > 0 ? ` (repeat ${rep + 1})` : ""}`);
      const r = { rep, ...(await burstRow(h, api, cfg, ratio, `org16c${Math.round(ratio * 100)}r${rep}`)) };
      say(
        `org 16c: ${r.denied} denied of ${r.requests} (${r.falseDenials} false, ${r.trueDenials} true), ${r.issues} issues, ${r.closes} closes`,
      );
      out.burst.push(r);
    }
    if (server) out.workerdProblems.push(...server.problems());
  } finally {
    await server?.mf.dispose();
  }
  if (!wanted("16d")) return { ...out, loadAverageAtEnd: loadavg() };
  const simServer = await serve("-sim");
  try {
    const api = client(simServer.base);
    const h = { ...http(simServer.base), base: simServer.base, cpu: cpuMeter() };
    say(`org 16d: ${cfg.sim.members} members, ${cfg.sim.decisions} decisions (Zipf s=${cfg.sim.zipf})`);
    out.simulation = await simulationRow(h, api, cfg);
    const sim = out.simulation;
    say(
      `org 16d: ${sim.callsPerDecision.toFixed(4)} pool calls per decision, ${sim.denied} denied, I-pool ${sim.closed.iPool.holds ? "holds" : "BROKEN"}, ${sim.wallSeconds.total.toFixed(0)} s`,
    );
    out.workerdProblems.push(...simServer.problems());
  } finally {
    await simServer.mf.dispose();
  }
  return { ...out, loadAverageAtEnd: loadavg() };
}
