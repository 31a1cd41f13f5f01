// The ledger shards' D1 bindings, as wrangler.toml lists them in `LEDGER_SHARDS` (worker/settlement/shards.ts):
// `npm start` and `npm run chaos` apply the migrations to every one of them.
import { readFileSync } from "node:fs";

export function ledgerBindings(configPath = "wrangler.toml") {
  const match = /^\s*LEDGER_SHARDS\s*=\s*"([^"]*)"/m.exec(readFileSync(configPath, "utf8"));
  const names = (match?.[1] ?? "DB")
    .split(",")
    .map((s) => s.trim())
    .filter(Boolean);
  return names.length > 0 ? names : ["DB"];
}
