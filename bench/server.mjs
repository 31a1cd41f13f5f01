// Starts the built bench bundle in local workerd through Miniflare's API (no wrangler proxy), in the
// product's deployed shape as ../wrangler.toml declares it: SQLite Durable Objects, every D1 ledger shard
// with the project's migrations applied, every settlement queue with its producer and consumer, the R2
// archive and the vars.
import { Miniflare, convertV4MiniflareOptions } from "miniflare";
import { spawnSync } from "node:child_process";
import { mkdirSync, readFileSync, readdirSync, rmSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { unstable_readConfig } from "wrangler";

export const TOKENS = { service: "bench-service-token", admin: "bench-admin-token" };

/** Statements of the project's D1 migrations, in order (comment lines dropped, split on `;`). */
function migrationStatements(dir) {
  return readdirSync(dir)
    .filter((f) => f.endsWith(".sql"))
    .sort()
    .flatMap((f) =>
      readFileSync(join(dir, f), "utf8")
        .split("\n")
        .filter((l) => !l.trim().startsWith("--"))
        .join("\n")
        .split(";")
        .map((s) => s.trim())
        .filter(Boolean),
    );
}

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "..");
const PRODUCT_CONFIG = join(ROOT, "wrangler.toml");

/** Builds the bench bundle (bench/worker.ts) into `outDir` with wrangler deploy --dry-run; returns the script's path. */
export function buildBundle(outDir) {
  const r = spawnSync(
    "wrangler",
    ["deploy", "--dry-run", "--outdir", outDir, "-c", join(ROOT, "bench", "wrangler.toml")],
    {
      cwd: ROOT,
      encoding: "utf8",
      env: { ...process.env, WRANGLER_SEND_METRICS: "false", CI: "true" },
    },
  );
  if (r.status !== 0) {
    console.error(r.stdout, r.stderr);
    throw new Error("wrangler build failed");
  }
  return join(outDir, "worker.js");
}

/**
 * The product's bindings, read from its wrangler.toml by wrangler itself, as Miniflare options: D1 shards,
 * queue producers and consumers, R2 buckets and vars.
 */
export function productBindings(configPath = PRODUCT_CONFIG) {
  const c = unstable_readConfig({ config: configPath }, { hideWarnings: true });
  return {
    d1Databases: Object.fromEntries(c.d1_databases.map((d) => [d.binding, d.database_name])),
    queueProducers: Object.fromEntries(c.queues.producers.map((q) => [q.binding, { queueName: q.queue }])),
    queueConsumers: Object.fromEntries(
      c.queues.consumers.map((q) => [
        q.queue,
        {
          maxBatchSize: q.max_batch_size,
          maxBatchTimeout: q.max_batch_timeout,
          maxRetries: q.max_retries,
          deadLetterQueue: q.dead_letter_queue,
        },
      ]),
    ),
    r2Buckets: Object.fromEntries(c.r2_buckets.map((b) => [b.binding, b.bucket_name])),
    vars: c.vars,
  };
}

/**
 * @param {{ scriptPath: string, stateDir: string, port?: number, migrationsDir: string, queue: { maxBatchSize: number, maxBatchTimeout: number, maxRetries: number, deadLetterQueue: string }, preventEviction?: boolean, accountClass?: string, orgClass?: string, bindings?: Record<string, string> }} o
 *   queue: the consumer settings every settlement queue gets (wrangler.toml's, or a what-if batch size);
 *   accountClass: the class behind ACCOUNT (BenchAccountDO meters the product's own object, see bench/worker.ts);
 *   orgClass: the class behind ORG (BenchOrgDO counts the calls into the product's OrgDO);
 *   bindings: extra vars for the bench bundle.
 * @returns {Promise<{ mf: Miniflare, base: URL, logLines: () => number, problems: () => string[] }>}
 */
export async function startServer({
  scriptPath,
  stateDir,
  port = 0,
  migrationsDir,
  queue,
  preventEviction = false,
  accountClass = "AccountDO",
  orgClass = "OrgDO",
  bindings = {},
}) {
  const product = productBindings();
  rmSync(stateDir, { recursive: true, force: true });
  mkdirSync(stateDir, { recursive: true });
  let logLines = 0;
  const problems = [];
  // With preventEviction, idle objects stay in memory (workerd evicts them after ~10 s locally): between
  // runs, the tear-down of a thousand idle objects would otherwise land as background work in the next
  // measurement. Objects with traffic stay in memory in production too. Each object holds ~3 open
  // files, so an instance with 10,000 objects must let them go (the file limit here is 20,000).
  const sqlite = (className) => ({
    className,
    useSQLite: true,
    ...(preventEviction ? { unsafePreventEviction: true } : {}),
  });
  const mf = new Miniflare(
    convertV4MiniflareOptions({
      host: "127.0.0.1",
      port,
      // The bundle and the text modules wrangler wrote next to it (/docs's swagger-ui-dist assets, [[rules]] in wrangler.toml).
      modules: [
        { type: "ESModule", path: scriptPath },
        ...readdirSync(dirname(scriptPath))
          .filter((f) => /^[0-9a-f]{40}-.+\.(css|js)$/.test(f))
          .map((f) => ({ type: "Text", path: join(dirname(scriptPath), f) })),
      ],
      compatibilityDate: "2026-11-01",
      durableObjects: {
        ACCOUNT: sqlite(accountClass),
        RESET_CONTROL: sqlite("ResetControlDO"),
        ORG: sqlite(orgClass),
        BENCH_PROBE: sqlite("BenchProbeDO"),
        BENCH_ACCOUNT: sqlite("BenchAccountDO"),
      },
      d1Databases: product.d1Databases,
      queueProducers: { ...product.queueProducers, BENCH_TRANSPORT: { queueName: "bench-transport" } },
      r2Buckets: product.r2Buckets,
      // As the product's wrangler.toml sets them, with `queue`'s batching (a what-if run may ask for another size).
      // bench-transport: the same batching, a consumer that only counts (bench/worker.ts), for the transport's own cost.
      queueConsumers: {
        ...Object.fromEntries(Object.entries(product.queueConsumers).map(([name, c]) => [name, { ...c, ...queue }])),
        "bench-transport": {
          maxBatchSize: queue.maxBatchSize,
          maxBatchTimeout: queue.maxBatchTimeout,
          maxRetries: queue.maxRetries,
        },
      },
      bindings: {
        ...product.vars,
        ...bindings,
        SERVICE_TOKEN: TOKENS.service,
        ADMIN_TOKEN: TOKENS.admin,
        PANEL_SECRET: "bench-panel-secret",
      },
      // On disk, in a fresh folder per run: the "durable" in the floors means a real SQLite file.
      resourcePersistencePath: stateDir,
      // The engine logs one line per decision. workerd still formats and ships each line; the bench only counts them.
      handleStructuredLogs: (log) => {
        logLines++;
        if (log.level !== "log" && log.level !== "info" && log.level !== "debug" && problems.length < 50)
          problems.push(`${log.level}: ${String(log.message).slice(0, 400)}`);
        if (process.env.BENCH_LOGS === "1" && log.level !== "log")
          process.stderr.write(`[workerd ${log.level}] ${log.message}\n`);
      },
    }),
  );
  const base = await mf.ready;
  // Every ledger shard gets the migrations, as `npm start` and the tests apply them.
  const statements = migrationStatements(migrationsDir);
  for (const binding of Object.keys(product.d1Databases)) {
    const db = await mf.getD1Database(binding);
    await db.batch(statements.map((s) => db.prepare(s)));
  }
  return { mf, base, logLines: () => logLines, problems: () => problems };
}

/** JSON over HTTP to a served bundle: the parsed body (or its text), and a throw on any non-2xx answer. */
export function client(base) {
  const call = async (method, path, body, headers = {}) => {
    const res = await fetch(new URL(path, base), {
      method,
      headers: body === undefined ? headers : { "content-type": "application/json", ...headers },
      body: body === undefined ? undefined : JSON.stringify(body),
      signal: AbortSignal.timeout(120_000),
    });
    const text = await res.text();
    let parsed = text;
    try {
      parsed = JSON.parse(text);
    } catch {
      /* keep text */
    }
    if (!res.ok) throw new Error(`${method} ${path} → ${res.status} ${text.slice(0, 300)}`);
    return parsed;
  };
  return { post: (path, body) => call("POST", path, body), call };
}
