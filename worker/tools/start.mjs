// `npm start`: migrate the local D1 ledger, create local secrets if missing, and serve the engine.
import { ledgerBindings } from "./shards.mjs";
import { spawn, spawnSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { existsSync, readFileSync, writeFileSync } from "node:fs";

const env = { ...process.env, WRANGLER_SEND_METRICS: "false" };
const port = process.env.PORT ?? "8787";

if (!existsSync(".dev.vars")) {
  const secret = () => randomBytes(24).toString("base64url");
  // Standard Webhooks: `whsec_` + base64 of the key bytes (24–64 bytes; 32 here).
  const webhookSecret = `whsec_${randomBytes(32).toString("base64")}`;
  const vars = {
    SERVICE_TOKEN: secret(),
    ADMIN_TOKEN: secret(),
    PANEL_SECRET: secret(),
    WEBHOOK_SECRET: webhookSecret,
  };
  const lines = Object.entries(vars).map(([k, v]) => `${k}=${v}`);
  writeFileSync(".dev.vars", `${lines.join("\n")}\n`, { mode: 0o600 });
  console.log("Created .dev.vars with local secrets (kept for later runs):");
  for (const [k, v] of Object.entries(vars)) console.log(`  ${k}=${v}`);
} else {
  const lines = readFileSync(".dev.vars", "utf8").split("\n");
  const names = lines.map((l) => l.split("=")[0]).filter(Boolean);
  console.log(`Using the existing .dev.vars (${names.join(", ")}); it is left as it is.`);
  const webhookSecret = lines.find((l) => l.startsWith("WEBHOOK_SECRET="));
  if (
    webhookSecret &&
    !webhookSecret.slice("WEBHOOK_SECRET=".length).trim().replace(/^["']/, "").startsWith("whsec_")
  ) {
    console.warn(
      "WEBHOOK_SECRET in .dev.vars is not whsec_<base64> (Standard Webhooks): no webhook will be sent. Replace it, e.g. with",
    );
    console.warn(`  WEBHOOK_SECRET=whsec_${randomBytes(32).toString("base64")}`);
  }
}

// Every ledger shard gets the same migrations.
for (const binding of ledgerBindings()) {
  const migrate = spawnSync("wrangler", ["d1", "migrations", "apply", binding, "--local"], {
    stdio: "inherit",
    env: { ...env, CI: "true" },
  });
  if (migrate.status !== 0) process.exit(migrate.status ?? 1);
}

console.log(`Serving on http://localhost:${port}`);
// Extra arguments go to wrangler dev (e.g. `npm start -- --var BILLING_URL:https://…`).
const dev = spawn("wrangler", ["dev", "--port", port, "--ip", "localhost", ...process.argv.slice(2)], {
  stdio: "inherit",
  env,
});
for (const sig of ["SIGINT", "SIGTERM"]) process.on(sig, () => dev.kill(sig));
dev.on("exit", (code) => process.exit(code ?? 0));
