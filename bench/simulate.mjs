// `npm run simulate` (issue #15 item 8): the real bundle, served locally through Miniflare as the bench serves it,
// takes a fixed number of decisions from a population of accounts under Zipf activity. It measures the per-decision
// figures (object rows, D1 rows, queue messages, bytes in the object, D1 and R2), runs the capacity model
// (bench/capacity-model.mjs, fed by the bench's figures in bench/results.json) for the same activity, prints both,
// writes bench/simulate.json, and exits non-zero if a checked figure differs from the model by more than 20%.
//   --write-capacity   also writes docs/capacity.md from the model (the three deployments of issue #15 item 7)
//   --capacity-only    with --write-capacity: write the document, run no simulation
//   --figures <path>   the bench results to take the figures from (default bench/results.json)
import { writeFileSync } from "node:fs";
import { dirname, join, relative, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { busiestRun, capacity, loadFigures, r2PutsPerBatch } from "./capacity-model.mjs";
import { writeCapacityDoc } from "./capacity-doc.mjs";
import { cpuMeter, measureRun, prepareAccounts } from "./cost.mjs";
import { mulberry32, zipfDraws } from "./random.mjs";
import { buildBundle, client, productBindings, startServer } from "./server.mjs";

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "..");
const OUT = join(ROOT, "bench", "out");
const args = process.argv.slice(2);
const flag = (name) => args.includes(name);
const option = (name) => {
  const i = args.indexOf(name);
  return i >= 0 ? args[i + 1] : undefined;
};

const SIM = {
  accounts: 10_000,
  decisions: 12_000,
  decisionsPerSecond: 200,
  zipf: 1,
  seed: 15,
  tolerance: 0.2,
};

const started = performance.now();
const say = (msg) => process.stderr.write(`[simulate ${((performance.now() - started) / 1000).toFixed(1)}s] ${msg}\n`);

/** Row bytes (journal and answers) per decision of a bench run. */
const rawBytes = (run) => (run.totals.journalRaw + run.totals.answersRaw) / run.decisions;

const fmt = (x, d = 3) => (Number.isFinite(x) ? x.toLocaleString("en", { maximumFractionDigits: d }) : "n/a");

async function main() {
  if (Number(process.versions.node.split(".")[0]) < 22) {
    console.error("simulate: run it with `npm run simulate` (npm puts the project's Node 22 first on PATH).");
    process.exit(1);
  }
  const figures = loadFigures(option("--figures"));
  if (flag("--write-capacity")) say(`wrote ${relative(ROOT, writeCapacityDoc(figures))}`);
  if (flag("--capacity-only")) return;

  const random = mulberry32(SIM.seed);
  const draws = zipfDraws(SIM.decisions, SIM.accounts, SIM.zipf, random);
  const idOf = (k) => `sim_${k}`;
  const counts = new Map();
  for (const k of draws) counts.set(k, (counts.get(k) ?? 0) + 1);
  const ids = [...counts.keys()].sort((a, b) => a - b).map(idOf);
  say(
    `${SIM.decisions.toLocaleString("en")} decisions over ${SIM.accounts.toLocaleString("en")} accounts (Zipf s=${SIM.zipf}): ${ids.length.toLocaleString("en")} accounts decide, the busiest ${counts.get(0)} times`,
  );

  say("building the bench bundle");
  const scriptPath = buildBundle(join(OUT, "bundle"));
  // Objects stay in memory, as busy ones do in production (a few thousand: ~3 open files each, under the limit).
  const server = await startServer({
    preventEviction: true,
    scriptPath,
    stateDir: join(OUT, "state-simulate"),
    migrationsDir: join(ROOT, "migrations"),
    queue: Object.values(productBindings().queueConsumers)[0],
    accountClass: "BenchAccountDO",
    bindings: { BENCH_METER: "1" },
  });
  let measured;
  try {
    const api = client(server.base);
    say(`creating the ${ids.length} accounts that decide (not metered)`);
    await prepareAccounts(api, ids);
    say(`running at ${SIM.decisionsPerSecond} decisions/s`);
    measured = await measureRun(api, server.base, {
      tag: "sim",
      ids,
      pick: (i) => idOf(draws[i % draws.length]),
      rate: SIM.decisionsPerSecond,
      // a fixed number of decisions: at the pace, or slower if the machine is busy
      amount: SIM.decisions,
      cpu: cpuMeter(),
      // enough in flight for the pace while objects load again after eviction
      connections: 64,
    });
  } finally {
    await server.mf.dispose();
  }

  // The model for the same activity: each account at the rate it decided during the run (the draws it took).
  const seconds = measured.seconds;
  const taken = new Map();
  for (const k of draws.subarray(0, Math.min(measured.decisions, draws.length))) taken.set(k, (taken.get(k) ?? 0) + 1);
  const rates = [...taken.values()].map((c) => c / seconds);
  const model = capacity(figures, { rates });
  const m = model.perDecision;
  const checks = [
    ["object rows written per decision (pruning included)", measured.objectRows, m.objectRows],
    ["D1 rows written per decision", measured.d1Rows, m.d1Rows],
    ["queue messages per decision", measured.messages, m.messages],
    // The archive writes per consumer batch; how often the local runtime delivers a batch under this load is its own.
    [
      "R2 puts per consumer batch",
      measured.totals.archive.puts / measured.totals.queue.batches,
      r2PutsPerBatch(figures),
    ],
    // The rows' bytes, not pages: most accounts here decide a few times, less than a page's worth.
    ["object row bytes kept per decision (journal + answer)", measured.objectRawBytes, rawBytes(busiestRun(figures))],
    ["D1 rows kept per decision", measured.d1RowsKept, m.d1RowsKept],
    ["R2 bytes per decision", measured.r2Bytes, m.r2Bytes],
  ].map(([name, got, want]) => {
    const diff = want === 0 ? (got === 0 ? 0 : Infinity) : (got - want) / want;
    // Under 0.01 a decision (a window-funded run keeps almost no D1 rows) a ratio says nothing: shown, not checked.
    const checked = Math.max(got, want) >= 0.01;
    return { name, measured: got, model: want, diff, checked, ok: !checked || Math.abs(diff) <= SIM.tolerance };
  });

  checks.push({
    name: "R2 puts per decision (batch cadence: local runtime)",
    measured: measured.r2Puts,
    model: m.r2Puts,
    diff: m.r2Puts ? (measured.r2Puts - m.r2Puts) / m.r2Puts : 0,
    checked: false,
    ok: true,
  });
  const head = ["figure", "measured", "model", "diff", "check"];
  const rows = checks.map((c) => [
    c.name,
    fmt(c.measured),
    fmt(c.model),
    `${c.diff >= 0 ? "+" : ""}${fmt(c.diff * 100, 1)}%`,
    c.checked ? (c.ok ? "ok" : "OFF") : "not checked",
  ]);
  const widths = head.map((_, i) => Math.max(...[head, ...rows].map((r) => String(r[i]).length)));
  const line = (r) => `| ${r.map((v, i) => String(v).padEnd(widths[i])).join(" | ")} |`;
  console.log([line(head), `|${widths.map((w) => "-".repeat(w + 2)).join("|")}|`, ...rows.map(line)].join("\n"));
  console.log(
    `\n${measured.decisions.toLocaleString("en")} decisions in ${fmt(seconds, 1)} s on ${ids.length.toLocaleString("en")} of ${SIM.accounts.toLocaleString("en")} accounts; ` +
      `model: $${fmt(model.dollarsPerMillionDecisions, 2)} per million decisions for this activity. Tolerance ±${SIM.tolerance * 100}%.`,
  );

  const path = join(ROOT, "bench", "simulate.json");
  const failed = checks.filter((c) => !c.ok);
  writeFileSync(
    path,
    `${JSON.stringify({ startedAt: new Date(Date.now() - (performance.now() - started)).toISOString(), config: SIM, accountsDeciding: ids.length, checks, measured, model, ok: failed.length === 0 }, null, 2)}\n`,
  );
  console.log(`JSON copy: ${relative(ROOT, path)}`);
  if (failed.length > 0) {
    console.error(`simulate: ${failed.map((c) => c.name).join("; ")} differ from the model by more than 20%`);
    process.exit(1);
  }
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
