/**
 * What every browser test shares: an engine started with `npm start`'s script on a port of its own (in its own
 * process group, stopped by group id), Debian's Chromium, the local secrets, and the page checks (CSP watch, axe-core).
 */
import assert from "node:assert/strict";
import { spawn, type ChildProcess } from "node:child_process";
import { mkdirSync, readFileSync } from "node:fs";
import { chromium, type Browser, type Page } from "playwright-core";

export const ARTIFACTS = "artifacts/e2e";
const AXE_SOURCE = readFileSync("node_modules/axe-core/axe.min.js", "utf8");

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Each browser test file has its own port, so their engines never race for one: `E2E_PORT` + offset. */
export function portFor(envName: string, offset: number): string {
  return process.env[envName] ?? String(Number(process.env.E2E_PORT ?? "8797") + offset);
}

async function answers(base: string): Promise<boolean> {
  try {
    return (await fetch(`${base}/health`)).ok;
  } catch {
    return false;
  }
}

export interface Engine {
  base: string;
  /** `.dev.vars`, which the start script creates once and prints */
  vars: Record<string, string>;
  stop(): Promise<void>;
}

/** Starts the engine as `npm start` does and waits until it answers; refuses a port something already answers on. */
export async function startEngine(port: string, args: string[] = []): Promise<Engine> {
  mkdirSync(ARTIFACTS, { recursive: true });
  const base = `http://localhost:${port}`;
  assert.equal(await answers(base), false, `something already answers on ${base}; give this test a free port`);
  const child: ChildProcess = spawn("node", ["worker/tools/start.mjs", ...args], {
    env: { ...process.env, PORT: port },
    stdio: ["ignore", "ignore", "inherit"],
    detached: true,
  });
  const deadline = Date.now() + 90_000;
  while (!(await answers(base))) {
    if (Date.now() > deadline || child.exitCode !== null)
      throw new Error("the engine did not start within the deadline");
    await sleep(300);
  }
  const vars = Object.fromEntries(
    readFileSync(".dev.vars", "utf8")
      .split("\n")
      .filter(Boolean)
      .map((l) => l.split(/=(.*)/s).slice(0, 2)),
  );
  return {
    base,
    vars,
    async stop() {
      if (!child.pid || child.exitCode !== null) return;
      const exited = new Promise((r) => child.once("exit", r));
      process.kill(-child.pid, "SIGTERM");
      await Promise.race([exited, sleep(10_000)]);
    },
  };
}

export function launchChromium(): Promise<Browser> {
  return chromium.launch({
    executablePath: process.env.CHROMIUM_PATH ?? "/usr/bin/chromium",
    args: [
      "--headless",
      "--no-sandbox",
      "--disable-gpu",
      "--disable-background-networking",
      "--disable-component-update",
      "--no-first-run",
      "--disable-sync",
    ],
  });
}

/** Collects every CSP violation the page reports, by event and on the console, across navigations. */
export async function watchCsp(page: Page): Promise<string[]> {
  const violations: string[] = [];
  page.on("console", (m) => {
    if (/Content Security Policy|Refused to/i.test(m.text())) violations.push(m.text());
  });
  await page.exposeBinding("__cspViolation", (_source, v: string) => void violations.push(v));
  await page.addInitScript(() =>
    document.addEventListener("securitypolicyviolation", (e) =>
      (window as unknown as { __cspViolation(v: string): void }).__cspViolation(
        `${e.effectiveDirective} blocked ${e.blockedURI}`,
      ),
    ),
  );
  return violations;
}

/**
 * axe-core's violations on the page as it is now, after checking that it ran its rules. It is evaluated through the
 * DevTools protocol: the pages' CSPs would refuse a <script> tag.
 */
export async function axeViolations(page: Page): Promise<string[]> {
  if (!(await page.evaluate(() => "axe" in window))) await page.evaluate(AXE_SOURCE);
  const result = (await page.evaluate(() =>
    (window as unknown as { axe: { run(ctx: Document, o: object): Promise<unknown> } }).axe.run(document, {
      resultTypes: ["violations"],
    }),
  )) as {
    violations: { id: string; impact: string; help: string; nodes: { target: string[] }[] }[];
    passes: unknown[];
  };
  assert.ok(result.passes.length >= 10, `axe-core ran its rules (${result.passes.length} passed)`);
  return result.violations.map(
    (v) =>
      `${v.id} (${v.impact}): ${v.help} at ${v.nodes
        .slice(0, 5)
        .map((n) => n.target.join(" "))
        .join(", ")}`,
  );
}
