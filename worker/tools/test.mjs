// `npm test`: typecheck, Biome (format and lint), the OpenAPI lint, the workerd suite, then the browser test.
// `npm test -- <vitest args>` runs only those vitest files (no typecheck, no lint, no browser test).
// The lint checks docs/openapi.json (redocly.yaml); test/openapi.test.ts fails while that file differs from
// /openapi.json, and `npm run openapi:write` rewrites it.
import { spawnSync } from "node:child_process";

const args = process.argv.slice(2);
const run = (cmd, cmdArgs) => {
  const r = spawnSync(cmd, cmdArgs, {
    stdio: "inherit",
    env: {
      ...process.env,
      WRANGLER_SEND_METRICS: "false",
      REDOCLY_TELEMETRY: "off",
      REDOCLY_SUPPRESS_UPDATE_NOTICE: "true",
    },
  });
  if (r.status !== 0) process.exit(r.status ?? 1);
};

if (args.length > 0) run("vitest", ["run", ...args]);
else {
  run("tsc", ["--noEmit"]);
  // Biome (biome.json): formatting and lint; any finding fails (`--error-on-warnings`).
  run("npm", ["run", "--silent", "lint"]);
  run("redocly", ["lint", "docs/openapi.json"]);
  // sdk/src/schema.ts must be what openapi-typescript makes of docs/openapi.json (`npm run sdk:generate`),
  // and the SDK must compile as the package it is built into (sdk/tsconfig.json).
  run("node", ["sdk/scripts/generate.mjs", "--check"]);
  run("tsc", ["-p", "sdk/tsconfig.json", "--noEmit"]);
  run("vitest", ["run"]);
  run("npm", ["run", "test:e2e"]);
}
