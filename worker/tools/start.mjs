// `npm start`: migrate the local D1 ledger, create local secrets if missing, and serve the engine.
import { spawn, spawnSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { existsSync, readFileSync, writeFileSync } from "node:fs";

const env = { ...process.env, WRANGLER_SEND_METRICS: "false" };
const port = process.env.PORT ?? "8787";

if (!existsSync(".dev.vars")) {
  const secret = () => randomBytes(24).toString("base64url");
  const vars = { SERVICE_TOKEN: secret(), ADMIN_TOKEN: secret(), PANEL_SECRET: secret(), WEBHOOK_SECRET: secret() };
  writeFileSync(".dev.vars", Object.entries(vars).map(([k, v]) => `${k}=${v}`).join("\n") + "\n", { mode: 0o600 });
  console.log("Created .dev.vars with local secrets (kept for later runs):");
  for (const [k, v] of Object.entries(vars)) console.log(`  ${k}=${v}`);
} else {
  const names = readFileSync(".dev.vars", "utf8").split("\n").map((l) => l.split("=")[0]).filter(Boolean);
  console.log(`Using the existing .dev.vars (${names.join(", ")}); it is left as it is.`);
}

const migrate = spawnSync("wrangler", ["d1", "migrations", "apply", "DB", "--local"], { stdio: "inherit", env: { ...env, CI: "true" } });
if (migrate.status !== 0) process.exit(migrate.status ?? 1);

console.log(`Serving on http://localhost:${port}`);
// Extra arguments go to wrangler dev (e.g. `npm start -- --var BILLING_URL:https://…`).
const dev = spawn("wrangler", ["dev", "--port", port, "--ip", "localhost", ...process.argv.slice(2)], { stdio: "inherit", env });
for (const sig of ["SIGINT", "SIGTERM"]) process.on(sig, () => dev.kill(sig));
dev.on("exit", (code) => process.exit(code ?? 0));
