// Browser test: the API reference (/docs) in Debian's Chromium against the engine started with `npm start`,
// with the network cut off: every request that is not to the engine's own origin is aborted and recorded.
// Runs on Node's test runner (`npm run test:e2e`), outside workerd, because it drives a real browser.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import type { Browser, Page } from "playwright-core";
import { ARTIFACTS, type Engine, launchChromium, portFor, startEngine } from "./harness.ts";

// Its own port (the panel test uses E2E_PORT), so the two engines never race for one port.
const PORT = portFor("E2E_DOCS_PORT", 1);
const BASE = `http://localhost:${PORT}`;
const METHODS = ["get", "put", "post", "delete", "options", "head", "patch", "trace"] as const;

let engine: Engine | undefined;
let browser: Browser;

const squash = (t: string) => t.replace(/\s+/g, " ").trim();

before(async () => {
  engine = await startEngine(PORT);
  browser = await launchChromium();
});

after(async () => {
  await browser?.close();
  await engine?.stop();
});

interface Operation {
  method: string;
  path: string;
  summary?: string;
}

/** Every operation of the document, read at test time (summaries are still being added). */
function operationsOf(spec: { paths?: Record<string, Record<string, { summary?: string }>> }): Operation[] {
  const ops: Operation[] = [];
  for (const [path, item] of Object.entries(spec.paths ?? {}))
    for (const method of METHODS) {
      const op = item[method];
      if (op) ops.push({ method, path, summary: squash(op.summary ?? "") || undefined });
    }
  return ops;
}

test("/docs renders every operation with its summary from the engine alone, under its CSP", async () => {
  const spec = await (await fetch(`${BASE}/openapi.json`)).json();
  const expected = operationsOf(spec);
  assert.ok(expected.length > 0, "the document lists operations");

  const context = await browser.newContext({ viewport: { width: 1280, height: 1400 } });
  const external: string[] = [];
  await context.route("**/*", (route) => {
    const url = route.request().url();
    if (new URL(url).origin === BASE) return route.continue();
    external.push(url);
    return route.abort("blockedbyclient");
  });
  const page = await context.newPage();
  const problems = await watchProblems(page);

  const res = await page.goto(`${BASE}/docs`);
  assert.equal(res?.status(), 200);

  // Swagger UI has rendered the document: one block per operation (and per tag it carries).
  try {
    await page.waitForFunction((n) => document.querySelectorAll(".opblock").length >= n, expected.length, {
      timeout: 30_000,
    });
  } catch (e) {
    throw new Error(
      `Swagger UI did not render ${expected.length} operations (blocked: ${JSON.stringify(external)}; problems: ${JSON.stringify(problems)})`,
      { cause: e },
    );
  }
  const rendered = await page.$$eval(".opblock", (blocks) =>
    blocks.map((b) => ({
      method: (b.querySelector(".opblock-summary-method")?.textContent ?? "").trim().toLowerCase(),
      path: b.querySelector(".opblock-summary-path")?.getAttribute("data-path") ?? "",
      description: b.querySelector(".opblock-summary-description")?.textContent ?? "",
    })),
  );
  for (const r of rendered) r.description = squash(r.description);
  const text = squash(await page.locator("#swagger-ui").innerText());
  const missing: string[] = [];
  for (const op of expected) {
    const blocks = rendered.filter((r) => r.method === op.method && r.path === op.path);
    const label = `${op.method.toUpperCase()} ${op.path}`;
    if (blocks.length === 0) missing.push(`${label}: not rendered`);
    else if (op.summary !== undefined && !blocks.every((b) => b.description === op.summary))
      missing.push(
        `${label}: summary ${JSON.stringify(op.summary)} shown as ${JSON.stringify(blocks.map((b) => b.description))}`,
      );
    const shown = op.summary ?? op.path;
    if (!text.includes(shown)) missing.push(`${label}: ${JSON.stringify(shown)} is not in the page`);
  }
  assert.deepEqual(missing, [], "every operation of /openapi.json is rendered with its summary (or its path)");
  await page.screenshot({ path: `${ARTIFACTS}/docs.png`, fullPage: false });

  // "Try it out" reaches the engine from the page (connect-src 'self').
  const health = page
    .locator(".opblock")
    .filter({ has: page.locator('.opblock-summary-path[data-path="/health"]') })
    .first();
  await health.locator(".opblock-summary-control").click();
  await health.getByRole("button", { name: "Try it out" }).click();
  const called = page.waitForResponse((r) => r.url() === `${BASE}/health`);
  await health.getByRole("button", { name: "Execute" }).click();
  assert.equal((await called).status(), 200);
  await health.locator(".live-responses-table .response-col_status", { hasText: "200" }).first().waitFor();

  // "Authorize" (a form the page handles itself, under form-action 'none'), then an authenticated call.
  const vars = engine!.vars;
  // /v1/catalog takes the service token; the scheme it names is read from the document.
  const requirement = spec.paths["/v1/catalog"].get.security ?? spec.security ?? [];
  const scheme = Object.keys(requirement[0] ?? {})[0];
  assert.ok(scheme, "GET /v1/catalog names a security scheme");
  await page.locator(".auth-wrapper .authorize").click();
  const box = page
    .locator(".auth-container")
    .filter({ has: page.locator("h4 code", { hasText: new RegExp(`^${scheme}$`) }) });
  await box.locator("#auth-bearer-value").fill(vars.SERVICE_TOKEN);
  await box.getByRole("button", { name: "Apply credentials" }).click();
  await page.locator(".btn-done").first().click();
  const catalog = page
    .locator(".opblock")
    .filter({ has: page.locator('.opblock-summary-path[data-path="/v1/catalog"]') })
    .first();
  await catalog.locator(".opblock-summary-control").click();
  await catalog.getByRole("button", { name: "Try it out" }).click();
  const authorized = page.waitForResponse((r) => r.url() === `${BASE}/v1/catalog`);
  await catalog.getByRole("button", { name: "Execute" }).click();
  const answer = await authorized;
  assert.equal(answer.status(), 200, "the token from Authorize is sent");
  assert.equal(answer.request().headers().authorization, `Bearer ${vars.SERVICE_TOKEN}`);

  assert.deepEqual(external, [], "the page tried to reach nothing but the engine");
  assert.deepEqual(problems, [], "no CSP violation, console error, page error or failed request");
  const csp = res?.headers()["content-security-policy"] ?? "";
  assert.match(csp, /(^|;)\s*default-src 'none'\s*(;|$)/);
  assert.match(csp, /(^|;)\s*script-src 'self'\s*(;|$)/);
  assert.match(csp, /(^|;)\s*connect-src 'self'\s*(;|$)/);
  await context.close();
});

/** CSP violations (by event and on the console), console errors, uncaught page errors and failed requests, across navigations. */
async function watchProblems(page: Page): Promise<string[]> {
  const problems: string[] = [];
  page.on("console", (m) => {
    if (m.type() === "error" || /Content Security Policy|Refused to/i.test(m.text()))
      problems.push(`console ${m.type()}: ${m.text()}`);
  });
  page.on("pageerror", (e) => problems.push(`page error: ${e.message}`));
  page.on("requestfailed", (r) => problems.push(`request failed: ${r.url()} (${r.failure()?.errorText})`));
  page.on("response", (r) => {
    if (r.status() >= 400) problems.push(`HTTP ${r.status()}: ${r.url()}`);
  });
  await page.exposeBinding("__cspViolation", (_source, v: string) => void problems.push(`CSP: ${v}`));
  await page.addInitScript(() =>
    document.addEventListener("securitypolicyviolation", (e) =>
      (window as unknown as { __cspViolation(v: string): void }).__cspViolation(
        `${e.effectiveDirective} blocked ${e.blockedURI}`,
      ),
    ),
  );
  return problems;
}
