// The npm registry reachable here has no darwin/windows builds of workerd, so `npm install` leaves
// them out of package-lock.json and `npm ci` then refuses the lock. This records them as the optional,
// platform-specific packages they are (never installed on Linux). Run after changing dependencies.
import { readFileSync, writeFileSync } from "node:fs";

const lock = JSON.parse(readFileSync("package-lock.json", "utf8"));
let added = 0;
for (const [path, pkg] of Object.entries(lock.packages)) {
  if (!path.endsWith("node_modules/workerd") || !pkg.optionalDependencies) continue;
  const base = path.slice(0, -"workerd".length);
  for (const [name, version] of Object.entries(pkg.optionalDependencies)) {
    const key = `${base}${name}`;
    if (lock.packages[key] || lock.packages[`node_modules/${name}`]?.version === version) continue;
    const os = name.includes("darwin") ? "darwin" : name.includes("windows") ? "win32" : "linux";
    lock.packages[key] = {
      version,
      cpu: [name.endsWith("arm64") ? "arm64" : "x64"],
      dev: true,
      license: "Apache-2.0",
      optional: true,
      os: [os],
      engines: { node: ">=16" },
    };
    added++;
  }
}
writeFileSync("package-lock.json", `${JSON.stringify(lock, null, 2)}\n`);
console.log(`package-lock.json: recorded ${added} platform build(s) of workerd`);
