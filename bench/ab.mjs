// `npm run bench:ab -- old=/path/to/tree new=/path/to/tree`: an A/B of the bench's in-object phase (row 3: the same
// request sequence as bench/run.mjs inObjectPhase) against one server per tree, interleaved round by round, so
// that drift of a busy machine falls on every tree alike. Each tree is a checkout with node_modules (a
// `git worktree` plus a symlink works) whose bench bundle is built first:
//   (cd TREE && CI=true npm exec -- wrangler deploy --dry-run --outdir TREE/bench/out/bundle -c TREE/bench/wrangler.toml)
// ROUNDS (default 7) sets the rounds, OUT the JSON written (default bench/out/ab.json). Per tree it reports best
// µs per decision, every run, statements per decision by text and the in-object breakdown; docs/performance.md
// reads medians and per-round ratios from it (bench/ab-13.json is issue 13's run).
import { join } from "node:path";
import { writeFileSync } from "node:fs";

const ROUNDS = Number(process.env.ROUNDS ?? 7);
const trees = process.argv.slice(2).map((a) => {
  const [label, root] = a.split("=");
  return { label, root };
});
const queue = { maxBatchSize: 100, maxBatchTimeout: 1, maxRetries: 8, deadLetterQueue: "settlement-dlq" };
const best = (xs) => Math.min(...xs);
const say = (m) => process.stderr.write(`[ab] ${m}\n`);

for (const t of trees) {
  process.chdir(t.root); // module names are made relative to the working directory
  const { startServer } = await import(join(t.root, "bench/server.mjs"));
  t.server = await startServer({
    scriptPath: join(t.root, "bench/out/bundle/worker.js"),
    stateDir: join(import.meta.dirname, "out", `ab-state-${t.label}`),
    migrationsDir: join(t.root, "migrations"),
    preventEviction: true,
    queue,
  });
  t.post = async (path, body) => {
    const res = await fetch(new URL(path, t.server.base), {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify(body),
    });
    const text = await res.text();
    if (!res.ok) throw new Error(`${t.label} ${path} → ${res.status} ${text.slice(0, 2000)}`);
    return JSON.parse(text);
  };
  t.decide = (accountId, n, extra = {}) =>
    t.post("/__bench/account/decide-many", {
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
  t.res = { window: [], grant: [], reset: [], flush: [], upsert: [], upsertTx: [], read: [] };
  say(`${t.label}: ${t.server.base}`);
}

const perDecision = async (t, id, n, extra) => {
  const r = await t.decide(id, n, extra);
  if (r.allowed !== n)
    throw new Error(`${t.label} ${id}: ${r.allowed}/${n} allowed (${r.denied} denied, ${r.errors} errors)`);
  return { us: (r.inObjectMs * 1000) / n, flush: (r.flushMs * 1000) / n };
};

try {
  const now = Date.now();
  for (const t of trees) {
    await t.decide("ino_window", 300);
    await t.post("/__bench/account/grant", { accountId: "ino_grant", now, amount: 1000 * 1_000_000 });
    await t.decide("ino_grant", 1, { cost: 2_000_000 });
    await t.decide("ino_grant", 300);
    await t.decide("ino_reset", 100, { freshResetEach: true });
  }
  for (let k = 0; k < ROUNDS; k++) {
    const order = k % 2 ? [...trees].reverse() : trees;
    for (const t of order) {
      t.res.upsert.push(((await t.post("/__bench/probe/upsert-many", { n: 20000 })).inObjectMs * 1000) / 20000);
      t.res.upsertTx.push(
        ((await t.post("/__bench/probe/upsert-many", { n: 20000, transaction: true })).inObjectMs * 1000) / 20000,
      );
      t.res.read.push(((await t.post("/__bench/probe/read-many", { n: 20000 })).inObjectMs * 1000) / 20000);
      const w = await perDecision(t, "ino_window", 1000);
      t.res.window.push(w.us);
      t.res.flush.push(w.flush);
      t.res.grant.push((await perDecision(t, "ino_grant", 1000)).us);
      t.res.reset.push((await perDecision(t, "ino_reset", 500, { freshResetEach: true })).us);
    }
    say(
      `round ${k + 1}/${ROUNDS}: ${trees.map((t) => `${t.label} w ${t.res.window.at(-1).toFixed(1)} g ${t.res.grant.at(-1).toFixed(1)} r ${t.res.reset.at(-1).toFixed(1)}`).join(" | ")}`,
    );
  }
  const out = {};
  for (const t of trees) {
    const wc = await t.decide("ino_window", 200, { countStatements: true });
    const gc = await t.decide("ino_grant", 200, { countStatements: true });
    const bds = [];
    for (let i = 0; i < 3; i++)
      bds.push(await t.post("/__bench/account/breakdown", { accountId: "ino_window", n: 5000, now: Date.now() }));
    const breakdown = Object.fromEntries(
      Object.keys(bds[0]).map((k) => [k, bds[0][k] === null ? null : best(bds.map((b) => b[k]))]),
    );
    out[t.label] = {
      windowUs: best(t.res.window),
      grantUs: best(t.res.grant),
      resetUs: best(t.res.reset),
      flushUs: best(t.res.flush),
      upsertUs: best(t.res.upsert),
      upsertTxUs: best(t.res.upsertTx),
      pointReadUs: best(t.res.read),
      runs: t.res,
      windowStatements: wc.statementsPerDecision,
      windowByText: Object.entries(wc.statements).map(([sql, n]) => [n / 200, sql]),
      grantStatements: gc.statementsPerDecision,
      grantByText: Object.entries(gc.statements).map(([sql, n]) => [n / 200, sql]),
      breakdown,
      problems: t.server.problems(),
    };
  }
  writeFileSync(process.env.OUT ?? join(import.meta.dirname, "out", "ab.json"), JSON.stringify(out, null, 2));
  console.log(JSON.stringify(out, (k, v) => (k === "runs" ? undefined : v), 2));
} finally {
  for (const t of trees) await t.server.mf.dispose();
}
