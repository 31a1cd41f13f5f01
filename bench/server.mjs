// Starts the built bench bundle in local workerd through Miniflare's API (no wrangler proxy):
// SQLite Durable Objects, the D1 ledger with the project's migrations applied, and the settlement
// queue with its producer and consumer configured as in wrangler.toml.
import { Miniflare, convertV4MiniflareOptions } from "miniflare";
import { mkdirSync, readFileSync, readdirSync, rmSync } from "node:fs";
import { dirname, join } from "node:path";

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

/**
 * @param {{ scriptPath: string, stateDir: string, port?: number, migrationsDir: string, queue: { maxBatchSize: number, maxBatchTimeout: number, maxRetries: number, deadLetterQueue: string }, preventEviction?: boolean }} o
 * @returns {Promise<{ mf: Miniflare, base: URL, logLines: () => number, problems: () => string[] }>}
 */
export async function startServer({ scriptPath, stateDir, port = 0, migrationsDir, queue, preventEviction = false }) {
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
        ACCOUNT: sqlite("AccountDO"),
        RESET_CONTROL: sqlite("ResetControlDO"),
        BENCH_PROBE: sqlite("BenchProbeDO"),
        BENCH_ACCOUNT: sqlite("BenchAccountDO"),
      },
      d1Databases: { DB: "ledger" },
      queueProducers: { SETTLEMENT: { queueName: "settlement" }, BENCH_TRANSPORT: { queueName: "bench-transport" } },
      // As the product's wrangler.toml sets it (read by run.mjs), unless a what-if run asks for another batch size.
      // bench-transport: the same batching, a consumer that only counts (bench/worker.ts), for the transport's own cost.
      queueConsumers: {
        settlement: queue,
        "bench-transport": {
          maxBatchSize: queue.maxBatchSize,
          maxBatchTimeout: queue.maxBatchTimeout,
          maxRetries: queue.maxRetries,
        },
      },
      bindings: {
        TEST_CLOCK: "disabled",
        PANEL_BASE_URL: "",
        BILLING_URL: "",
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
  const db = await mf.getD1Database("DB");
  await db.batch(migrationStatements(migrationsDir).map((s) => db.prepare(s)));
  return { mf, base, logLines: () => logLines, problems: () => problems };
}
