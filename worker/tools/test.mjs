// `npm test`: typecheck, the workerd suite, then the browser test.
// `npm test -- <vitest args>` runs only those vitest files (no typecheck, no browser test).
import { spawnSync } from "node:child_process";

const args = process.argv.slice(2);
const run = (cmd, cmdArgs) => {
  const r = spawnSync(cmd, cmdArgs, { stdio: "inherit", env: { ...process.env, WRANGLER_SEND_METRICS: "false" } });
  if (r.status !== 0) process.exit(r.status ?? 1);
};

if (args.length > 0) run("vitest", ["run", ...args]);
else {
  run("tsc", ["--noEmit"]);
  run("vitest", ["run"]);
  run("npm", ["run", "test:e2e"]);
}
