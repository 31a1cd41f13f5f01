// `npm run chaos`: the crash check of issue #14 (item 5). It starts the engine with `npm start` on a port and a
// persistence directory of its own, drives a burst of consumes over a few accounts, SIGKILLs the engine's whole process
// group mid-burst, starts it again on the same state, retries every request that got no answer (same key, same body)
// until each has one, and then checks, polling for up to 60 s, that every allowed consume's charges were settled
// exactly once (traced per decision through the R2 archive; the D1 ledger's money charges and hourly usage rollups
// must agree with it) and that reconciliation reports no drift. Exit 0 only if all of that holds, 1 otherwise.
//
// Environment: CHAOS_PORT (default 8796), CHAOS_DIR (default .wrangler/chaos, emptied at start), CHAOS_ACCOUNTS (4),
// CHAOS_PER_ACCOUNT (75 consumes each), CHAOS_CONCURRENCY (40 in flight), CHAOS_KILL_AFTER (answers before the kill,
// default 40% of the burst). Tokens are read from `.dev.vars`, which `npm start` creates if it is missing; they are
// never printed. The engine's output goes to <CHAOS_DIR>/engine-<n>.log.
import { ledgerBindings } from "./shards.mjs";
import { spawn, spawnSync } from "node:child_process";
import { openSync, readFileSync, rmSync, mkdirSync, closeSync } from "node:fs";
import { randomBytes } from "node:crypto";

const PORT = process.env.CHAOS_PORT ?? "8796";
const DIR = process.env.CHAOS_DIR ?? ".wrangler/chaos";
const ACCOUNTS = Number(process.env.CHAOS_ACCOUNTS ?? 4);
const PER_ACCOUNT = Number(process.env.CHAOS_PER_ACCOUNT ?? 75);
const CONCURRENCY = Number(process.env.CHAOS_CONCURRENCY ?? 40);
const TOTAL = ACCOUNTS * PER_ACCOUNT;
const KILL_AFTER = Number(process.env.CHAOS_KILL_AFTER ?? Math.round(TOTAL * 0.4));
const CHECK_WINDOW_MS = 60_000;
const BASE = `http://localhost:${PORT}`;
const env = { ...process.env, WRANGLER_SEND_METRICS: "false" };
const CREDIT = 1_000_000;
const HOUR = 3_600_000;
const startedAt = Date.now();

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const log = (...a) => console.log(`[chaos ${new Date().toISOString().slice(11, 19)}]`, ...a);

// ---------------------------------------------------------------------------------------------------------------------
// The engine: `npm start` in its own process group, stopped by group id.

let engine = null; // { child, pid, exited: Promise }
let starts = 0;

async function answers() {
  try {
    return (await fetch(`${BASE}/health`, { signal: AbortSignal.timeout(2_000) })).ok;
  } catch {
    return false;
  }
}

function groupAlive(pgid) {
  try {
    process.kill(-pgid, 0);
    return true;
  } catch {
    return false;
  }
}

async function startEngine() {
  if (await answers()) throw new Error(`something already answers on ${BASE}; set CHAOS_PORT to a free port`);
  starts += 1;
  const logPath = `${DIR}/engine-${starts}.log`;
  const out = openSync(logPath, "a");
  const child = spawn("npm", ["start", "--", "--persist-to", DIR], {
    env: { ...env, PORT },
    stdio: ["ignore", out, out],
    detached: true,
  });
  closeSync(out);
  const exited = new Promise((r) => child.once("exit", r));
  engine = { child, pid: child.pid, exited };
  const t0 = Date.now();
  while (!(await answers())) {
    if (child.exitCode !== null || child.signalCode !== null)
      throw new Error(`the engine exited during start-up (see ${logPath})`);
    if (Date.now() - t0 > 120_000) throw new Error(`the engine did not answer within 120 s (see ${logPath})`);
    await sleep(250);
  }
  log(`engine up on ${BASE} (process group ${child.pid}, ${((Date.now() - t0) / 1000).toFixed(1)} s, log ${logPath})`);
}

/** Signals the engine's whole process group and waits until the group is gone. */
async function stopEngine(signal) {
  if (!engine) return;
  const { pid, exited } = engine;
  engine = null;
  try {
    process.kill(-pid, signal);
  } catch {
    return; // the group is already gone
  }
  await Promise.race([exited, sleep(10_000)]);
  const deadline = Date.now() + 10_000;
  while (groupAlive(pid) && Date.now() < deadline) await sleep(100);
  if (groupAlive(pid)) {
    try {
      process.kill(-pid, "SIGKILL");
    } catch {}
    while (groupAlive(pid)) await sleep(100);
  }
}

// ---------------------------------------------------------------------------------------------------------------------
// HTTP

let tokens = null;

function readTokens() {
  const vars = Object.fromEntries(
    readFileSync(".dev.vars", "utf8")
      .split("\n")
      .filter((l) => l.includes("="))
      .map((l) => {
        const [k, v] = l.split(/=(.*)/s);
        return [k.trim(), v.trim().replace(/^["']|["']$/g, "")];
      }),
  );
  if (!vars.SERVICE_TOKEN || !vars.ADMIN_TOKEN) throw new Error(".dev.vars lacks SERVICE_TOKEN or ADMIN_TOKEN");
  return { service: vars.SERVICE_TOKEN, admin: vars.ADMIN_TOKEN };
}

async function call(method, path, { body, key, admin = false, timeoutMs = 30_000 } = {}) {
  const headers = { Authorization: `Bearer ${admin ? tokens.admin : tokens.service}` };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  if (key) headers["Idempotency-Key"] = key;
  const res = await fetch(`${BASE}${path}`, {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
    signal: AbortSignal.timeout(timeoutMs),
  });
  const text = await res.text();
  let json = null;
  try {
    json = JSON.parse(text);
  } catch {}
  return { status: res.status, json, text, replayed: res.headers.get("idempotent-replayed") === "true" };
}

async function must(method, path, opts) {
  const r = await call(method, path, opts);
  if (r.status >= 300) throw new Error(`${method} ${path} answered ${r.status}: ${JSON.stringify(r.json)}`);
  return r.json;
}

// ---------------------------------------------------------------------------------------------------------------------
// The burst

const run = randomBytes(4).toString("hex");
const accountIds = Array.from({ length: ACCOUNTS }, (_, a) => `chaos-${run}-${a}`);

/** Even accounts are on `go` (2-credit codex window, then a 40-credit purchase); odd ones on `business` (10-credit
 * window, an 8-credit purchase, then flex). Credit spend stays under the anomaly guard's 50-credit floor. */
async function setUp() {
  for (const [a, id] of accountIds.entries()) {
    const business = a % 2 === 1;
    if (business) await must("PUT", `/v1/accounts/${id}/plan`, { body: { plan: "business" }, key: `${id}-plan` });
    await must("POST", `/v1/accounts/${id}/credits`, {
      body: { amount: (business ? 8 : 40) * CREDIT, kind: "purchase" },
      key: `${id}-purchase`,
    });
  }
}

/** Every request of the burst, with its key and body, and what came of it. */
const requests = Array.from({ length: TOTAL }, (_, i) => {
  const accountId = accountIds[i % ACCOUNTS];
  const body =
    i % 5 === 4
      ? { product: "codex", usage: { model: "gpt-5-codex-mini", inputTokens: 20_000, outputTokens: 50_000 } }
      : { product: "codex", cost: 50_000 + ((i * 7919) % 11) * 50_000 };
  return { i, accountId, key: `${accountId}-c${i}`, body, attempts: 0, answer: null, phase: null, errors: [] };
});

let answeredCount = 0;
let killing = null; // set once the kill starts: no more sends until the restart

async function send(req, phase) {
  req.attempts += 1;
  try {
    const r = await call("POST", `/v1/accounts/${req.accountId}/consume`, { body: req.body, key: req.key });
    if (r.status === 200 || r.status === 429) {
      req.answer = r;
      req.phase = phase;
      answeredCount += 1;
      return;
    }
    req.errors.push(`HTTP ${r.status} ${r.json?.error?.code ?? ""}`.trim());
  } catch (e) {
    req.errors.push(e.cause?.code ?? e.name ?? String(e));
  }
}

/** Sends the given requests CONCURRENCY at a time; onAnswer may start the kill, after which nothing more is sent. */
async function burst(list, phase, onAnswer) {
  let next = 0;
  const worker = async () => {
    while (next < list.length && !killing) {
      const req = list[next++];
      await send(req, phase);
      onAnswer?.();
    }
  };
  await Promise.all(Array.from({ length: CONCURRENCY }, worker));
}

// ---------------------------------------------------------------------------------------------------------------------
// The check

async function ledgerOf(id) {
  const entries = [];
  let cursor = null;
  do {
    const q = `limit=500${cursor ? `&cursor=${cursor}` : ""}`;
    const page = await must("GET", `/v1/accounts/${encodeURIComponent(id)}/ledger?${q}`);
    entries.push(...page.entries);
    cursor = page.nextCursor;
  } while (cursor);
  return entries;
}

/** Every ledger entry of the account in the R2 archive (the export keeps each seq once), window charges included. */
async function archiveOf(id) {
  const q = `from=${new Date(startedAt - HOUR).toISOString()}&to=${new Date(Date.now() + HOUR).toISOString()}`;
  const r = await call("GET", `/v1/admin/accounts/${encodeURIComponent(id)}/archive?${q}`, { admin: true });
  if (r.status !== 200) throw new Error(`archive of ${id} answered ${r.status}: ${r.text.slice(0, 200)}`);
  return r.text
    .split("\n")
    .filter(Boolean)
    .map((line) => JSON.parse(line))
    .flatMap((m) => (m.type === "ledger" ? [m.entry] : []));
}

const sumOf = (xs) => xs.reduce((n, x) => n + x.amount, 0);

async function check() {
  const perAccount = [];
  for (const id of accountIds) {
    // The D1 ledger keeps money charges one by one and window charges in hourly usage rollups (SPEC §7); the
    // archive keeps every entry. Each decision is traced through the archive, and the ledger must agree with it.
    const entries = await ledgerOf(id);
    const archived = await archiveOf(id);
    const ids = new Map();
    for (const e of entries) ids.set(e.id, (ids.get(e.id) ?? 0) + 1);
    const duplicateIds = [...ids.values()].filter((n) => n > 1).length;
    const charges = archived.filter((e) => e.kind === "charge");
    const windowCharges = charges.filter((e) => e.layer === "window");
    const usage = entries.filter((e) => e.kind === "usage");
    const ledgerMoney = entries
      .filter((e) => e.kind === "charge")
      .map((e) => e.id)
      .sort();
    const archivedMoney = charges
      .filter((e) => e.layer !== "window")
      .map((e) => e.id)
      .sort();
    const ledgerDisagrees =
      JSON.stringify(ledgerMoney) !== JSON.stringify(archivedMoney) ||
      sumOf(usage) !== sumOf(windowCharges) ||
      usage.reduce((n, e) => n + e.count, 0) !== windowCharges.length;
    const byDecision = new Map();
    for (const e of charges) {
      const d = byDecision.get(e.decisionId) ?? { count: 0, sum: 0 };
      d.count += 1;
      d.sum += e.amount;
      byDecision.set(e.decisionId, d);
    }
    const allowed = requests.filter((r) => r.accountId === id && r.answer?.status === 200);
    const known = new Set(allowed.map((r) => r.answer.json.decisionId));
    let expectedEntries = 0;
    let foundEntries = 0;
    let expectedAmount = 0;
    let foundAmount = 0;
    let missingDecisions = 0;
    let partialDecisions = 0;
    let wrongSums = 0;
    let missingAmount = 0;
    const missingLayers = { window: 0, grant: 0, flex: 0 };
    for (const r of allowed) {
      const { decisionId, cost, sources } = r.answer.json;
      const got = byDecision.get(decisionId) ?? { count: 0, sum: 0 };
      expectedEntries += sources.length;
      foundEntries += got.count;
      expectedAmount += cost;
      foundAmount += got.sum;
      if (got.count === 0) {
        missingDecisions += 1;
        missingAmount += cost;
        for (const s of sources) missingLayers[s.layer] += s.amount;
      } else if (got.count !== sources.length) partialDecisions += 1;
      if (got.count > 0 && got.sum !== cost) wrongSums += 1;
    }
    const strangers = charges.filter((e) => !known.has(e.decisionId)).length;
    const grants = entries.filter((e) => e.kind === "grant").length;
    const recon = await must("GET", `/v1/admin/reconciliation?accountId=${encodeURIComponent(id)}`, { admin: true });
    const drift = recon.drifted.find((d) => d.accountId === id) ?? null;
    // entries the object journaled that the ledger does not hold yet (the check also sends the overdue ones again)
    const inFlight = recon.inFlight.find((d) => d.accountId === id) ?? null;
    const ok =
      duplicateIds === 0 &&
      missingDecisions === 0 &&
      partialDecisions === 0 &&
      wrongSums === 0 &&
      strangers === 0 &&
      !ledgerDisagrees &&
      grants === 1 &&
      drift === null &&
      inFlight === null;
    perAccount.push({
      id,
      ok,
      allowed: allowed.length,
      expectedEntries,
      foundEntries,
      expectedAmount,
      foundAmount,
      missingDecisions,
      missingAmount,
      missingLayers,
      partialDecisions,
      wrongSums,
      duplicateIds,
      strangers,
      ledgerDisagrees,
      grants,
      drift,
      inFlight,
    });
  }
  return perAccount;
}

const credits = (micro) => (micro / CREDIT).toFixed(6).replace(/\.?0+$/, "");

function report(results, elapsedMs) {
  const before = requests.filter((r) => r.phase === "before").length;
  const after = requests.filter((r) => r.phase === "after").length;
  const retried = requests.filter((r) => r.phase === "after" && r.errors.length > 0).length;
  const replayed = requests.filter((r) => r.phase === "after" && r.answer.replayed).length;
  const allowed = requests.filter((r) => r.answer?.status === 200).length;
  const denied = requests.filter((r) => r.answer?.status === 429).length;
  console.log("");
  console.log(
    `Crash check: ${TOTAL} consumes over ${ACCOUNTS} accounts, ${CONCURRENCY} in flight, SIGKILL after ~${KILL_AFTER} answers`,
  );
  console.log(`  answered before the crash: ${before}; after the restart: ${after}`);
  console.log(
    `  retried after the crash (had failed once or more): ${retried}, of which replayed by the engine: ${replayed}`,
  );
  console.log(`  answers: ${allowed} allowed (200), ${denied} denied (429)`);
  console.log(`  ledger checked for ${(elapsedMs / 1000).toFixed(1)} s after the last answer`);
  console.log("");
  console.log(
    "  account                  200s  charge entries exp/found  credits exp/found      missing  dup  other  drift",
  );
  for (const a of results) {
    const drift = a.drift
      ? `seq ${a.drift.fromSeq}–${a.drift.toSeq}: expected ${credits(a.drift.chargedExpected)} charged, ledger ${credits(a.drift.chargedActual)}`
      : a.inFlight
        ? `none; seq ${a.inFlight.fromSeq}–${a.inFlight.toSeq} in flight`
        : "none";
    console.log(
      `  ${a.id.padEnd(24)} ${String(a.allowed).padStart(4)}  ${`${a.expectedEntries}/${a.foundEntries}`.padStart(24)}  ${`${credits(a.expectedAmount)}/${credits(a.foundAmount)}`.padStart(20)}  ${String(a.missingDecisions).padStart(7)}  ${String(a.duplicateIds).padStart(3)}  ${String(a.strangers).padStart(5)}  ${drift}`,
    );
  }
  const sum = (f) => results.reduce((s, a) => s + f(a), 0);
  const missing = sum((a) => a.missingDecisions);
  const layers = ["window", "grant", "flex"].map((l) => `${l} ${credits(sum((a) => a.missingLayers[l]))}`).join(", ");
  console.log("");
  if (missing > 0)
    console.log(
      `  ${missing} of ${allowed} allowed charges never reached the ledger (${credits(sum((a) => a.missingAmount))} credits: ${layers})`,
    );
  const partial = sum((a) => a.partialDecisions);
  const wrong = sum((a) => a.wrongSums);
  const dups = sum((a) => a.duplicateIds);
  const strangers = sum((a) => a.strangers);
  const badGrants = results.filter((a) => a.grants !== 1).length;
  const drifted = results.filter((a) => a.drift).length;
  if (partial) console.log(`  ${partial} decisions with some but not all of their charge entries`);
  if (wrong) console.log(`  ${wrong} decisions whose charged sum differs from the answered cost`);
  if (dups) console.log(`  ${dups} ledger entry ids present more than once`);
  if (strangers) console.log(`  ${strangers} charge entries for no allowed answer (a key charged twice?)`);
  if (badGrants) console.log(`  ${badGrants} accounts whose purchase grant is not in the ledger exactly once`);
  const disagreeing = results.filter((a) => a.ledgerDisagrees).length;
  if (disagreeing)
    console.log(`  ${disagreeing} accounts whose D1 charges or usage rollups differ from their archived journal`);
  console.log(`  reconciliation: ${drifted === 0 ? "no drift" : `drift on ${drifted} of ${ACCOUNTS} accounts`}`);
  const ok = results.every((a) => a.ok);
  console.log(ok ? "\nPASS" : "\nFAIL");
  return ok;
}

// ---------------------------------------------------------------------------------------------------------------------

async function main() {
  rmSync(DIR, { recursive: true, force: true });
  mkdirSync(DIR, { recursive: true });
  log(`persistence in ${DIR} (emptied); applying the D1 migrations there`);
  for (const binding of ledgerBindings()) {
    const migrate = spawnSync("wrangler", ["d1", "migrations", "apply", binding, "--local", "--persist-to", DIR], {
      env: { ...env, CI: "true" },
      stdio: ["ignore", "ignore", "inherit"],
    });
    if (migrate.status !== 0) throw new Error("the D1 migrations did not apply");
  }

  await startEngine();
  tokens = readTokens();
  await setUp();
  log(`accounts ${accountIds.join(", ")} set up; ${TOTAL} consumes, ${CONCURRENCY} in flight`);

  let killed = false;
  await burst(requests, "before", () => {
    if (!killing && answeredCount >= KILL_AFTER) {
      log(`${answeredCount} answers: SIGKILL to the engine's process group`);
      killing = stopEngine("SIGKILL").then(() => {
        killed = true;
      });
    }
  });
  if (killing) await killing;
  if (!killed) log("the burst ended before the kill threshold; killing now");
  if (!killed) await stopEngine("SIGKILL");
  killing = null;
  const unanswered = () => requests.filter((r) => !r.answer);
  log(`${answeredCount} answered before the crash, ${unanswered().length} without an answer; restarting`);

  await startEngine();
  for (let round = 1; unanswered().length > 0; round++) {
    if (round > 20) throw new Error(`${unanswered().length} requests still unanswered after 20 rounds`);
    const list = unanswered();
    log(`round ${round}: sending ${list.length} unanswered requests again (same keys and bodies)`);
    await burst(list, "after");
    if (unanswered().length > 0) await sleep(1_000);
  }
  log("every request has an answer; checking the ledger and reconciliation (up to 60 s)");

  const t0 = Date.now();
  let results;
  for (;;) {
    results = await check();
    if (results.every((a) => a.ok) || Date.now() - t0 > CHECK_WINDOW_MS) break;
    await sleep(2_000);
  }
  return report(results, Date.now() - t0);
}

let stopping = false;
for (const sig of ["SIGINT", "SIGTERM"]) {
  process.on(sig, async () => {
    if (stopping) return;
    stopping = true;
    log(`${sig}: stopping the engine`);
    await stopEngine("SIGTERM");
    process.exit(130);
  });
}

let ok = false;
try {
  ok = await main();
} catch (e) {
  if (!stopping) console.error(`chaos: ${e.message}`);
} finally {
  await stopEngine("SIGTERM");
}
// On SIGINT/SIGTERM the handler exits (130) once the engine is stopped.
if (!stopping) process.exit(ok ? 0 : 1);
