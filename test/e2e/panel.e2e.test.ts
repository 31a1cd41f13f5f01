// Browser test: the usage panel in Debian's Chromium against the engine started with `npm start`.
// Runs on Node's test runner (`npm run test:e2e`), outside workerd, because it drives a real browser.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { spawn, type ChildProcess } from "node:child_process";
import { mkdirSync, readFileSync } from "node:fs";
import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { chromium, type Browser, type Page } from "playwright-core";
import { EngineClient, isDenial } from "../../sdk/src/index.ts";

const PORT = process.env.E2E_PORT ?? "8797";
const BASE = `http://localhost:${PORT}`;
const BILLING = "https://billing.example/add-credits";
const ARTIFACTS = "artifacts/e2e";
const credits = (micro: number) => (micro / 1_000_000).toFixed(2);

let engine: ChildProcess;
let browser: Browser;
let engineClient: EngineClient;

async function waitForHealth(deadline: number): Promise<void> {
  while (Date.now() < deadline) {
    try {
      if ((await fetch(`${BASE}/health`)).ok) return;
    } catch {
      // not up yet
    }
    await new Promise((r) => setTimeout(r, 300));
  }
  throw new Error("the engine did not start within the deadline");
}

before(async () => {
  mkdirSync(ARTIFACTS, { recursive: true });
  engine = spawn("node", ["worker/tools/start.mjs", "--var", `BILLING_URL:${BILLING}`], { env: { ...process.env, PORT }, stdio: ["ignore", "ignore", "inherit"], detached: true });
  await waitForHealth(Date.now() + 90_000);
  const vars = Object.fromEntries(readFileSync(".dev.vars", "utf8").split("\n").filter(Boolean).map((l) => l.split(/=(.*)/s).slice(0, 2)));
  engineClient = new EngineClient({ baseUrl: BASE, token: vars.SERVICE_TOKEN, adminToken: vars.ADMIN_TOKEN });
  browser = await chromium.launch({
    executablePath: process.env.CHROMIUM_PATH ?? "/usr/bin/chromium",
    args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update", "--no-first-run", "--disable-sync"],
  });
});

after(async () => {
  await browser?.close();
  if (engine?.pid) process.kill(-engine.pid, "SIGTERM");
});

test("the panel matches GET account, redeems a banked reset by a click, and shows the limit prompt", async () => {
  const id = `e2e_${Date.now().toString(36)}`;
  // A first charge makes the account exist; a bonus banked reset is granted to existing accounts.
  assert.ok(!isDenial(await engineClient.consume(id, { product: "codex", cost: 100_000 })));
  await engineClient.admin.createGlobalReset({ reason: "e2e bonus", scope: { products: ["codex"] }, grantBankedResets: { count: 1, expiresInHours: 48 } });
  // Usage in both windows of codex, some grants, and sora at its limit.
  assert.ok(!isDenial(await engineClient.consume(id, { product: "codex", cost: 1_500_000 })));
  await engineClient.addCredits(id, { amount: 3_000_000, kind: "purchase" });
  await engineClient.addCredits(id, { amount: 1_000_000, kind: "promo", expiresAt: new Date(Date.now() + 30 * 86_400_000).toISOString(), products: ["sora"] });
  assert.ok(!isDenial(await engineClient.consume(id, { product: "sora", cost: 1_500_000 })));

  const acct = await engineClient.getAccount(id);
  assert.equal(acct.bankedResets.available, 1);
  const link = await engineClient.createPanelLink(id);

  const page = await browser.newPage({ viewport: { width: 1280, height: 1400 } });
  const violations = await watchCsp(page);
  const res = await page.goto(link.url.replace(/^https?:\/\/[^/]+/, BASE));
  assertLockedDown(res?.headers() ?? {});
  assert.equal(await page.evaluate(() => document.compatMode), "CSS1Compat", "standards mode, not quirks");
  // the inline stylesheet and the bars' style attributes apply under the policy
  assert.equal(await page.evaluate(() => getComputedStyle(document.body).marginTop), "0px");
  const fill = await page.getByTestId("codex-fiveHour-pct").evaluate((el) => {
    const bar = el.closest(".window")!.querySelector(".bar")!;
    return bar.firstElementChild!.getBoundingClientRect().width / bar.getBoundingClientRect().width;
  });
  const codex5h = acct.products.codex.fiveHour;
  assert.ok(Math.abs(fill - Math.min(1, codex5h.used / codex5h.limit)) < 0.02, `the codex 5-hour bar is drawn to its share (was ${fill})`);
  const text = async (testId: string) => (await page.getByTestId(testId).textContent())?.trim() ?? "";

  const pct = (u: number, l: number) => `${Math.min(100, Math.round((u / l) * 100))}% used`;
  for (const p of ["codex", "sora"] as const)
    for (const w of ["fiveHour", "weekly"] as const) {
      const v = acct.products[p][w];
      assert.equal(await text(`${p}-${w}-pct`), pct(v.used, v.limit), `${p} ${w} %`);
      assert.equal(await text(`${p}-${w}-used`), `${credits(v.used)} of ${credits(v.limit)} credits`);
    }
  assert.equal(await text("balance"), credits(acct.credits.balance));
  assert.equal(await page.getByTestId("grant").count(), acct.credits.grants.length);
  assert.match(await text("banked-available"), /^1 of 3 available/);
  assert.equal(await page.getByRole("link", { name: "Add credits" }).getAttribute("href"), BILLING);
  await page.screenshot({ path: `${ARTIFACTS}/panel-desktop.png`, fullPage: true });

  await page.setViewportSize({ width: 360, height: 1600 });
  const overflow = await page.evaluate(() => document.documentElement.scrollWidth - document.documentElement.clientWidth);
  assert.ok(overflow <= 0, `no horizontal overflow at 360 px (was ${overflow})`);
  await page.screenshot({ path: `${ARTIFACTS}/panel-360.png`, fullPage: true });

  await page.setViewportSize({ width: 1280, height: 1400 });
  await page.getByLabel("Product").selectOption("codex");
  const redirected = page.waitForResponse((r) => r.url().includes("notice=reset_used"));
  await page.getByRole("button", { name: "Use a banked reset" }).click();
  await page.waitForURL(/notice=reset_used/);
  assertLockedDown((await redirected).headers());
  assert.equal(await page.evaluate(() => document.compatMode), "CSS1Compat");
  assert.match(await page.getByRole("status").innerText(), /banked reset was used/);
  const afterReset = await engineClient.getAccount(id);
  assert.equal(afterReset.bankedResets.available, 0);
  assert.equal(afterReset.products.codex?.fiveHour.used, 0);
  assert.equal(await text("codex-fiveHour-pct"), "0% used");
  assert.match(await text("banked-available"), /^0 of 3 available/);
  await page.screenshot({ path: `${ARTIFACTS}/panel-after-reset.png`, fullPage: true });
  assert.deepEqual(violations, [], "no Content-Security-Policy violation while the page renders and the form is used");
  await page.close();
});

test("another site cannot frame the panel, and its error page is locked down too", async () => {
  const id = `e2e_frame_${Date.now().toString(36)}`;
  assert.ok(!isDenial(await engineClient.consume(id, { product: "codex", cost: 100_000 })));
  const link = await engineClient.createPanelLink(id);
  const url = link.url.replace(/^https?:\/\/[^/]+/, BASE);
  const page = await browser.newPage();
  const messages: string[] = [];
  page.on("console", (m) => messages.push(m.text()));
  // another site: a page on 127.0.0.1 (another origin than localhost, and local, so the browser lets it reach the engine)
  const framer = createServer((_req, res) => res.writeHead(200, { "Content-Type": "text/html" }).end(`<!doctype html><iframe src="${url}"></iframe>`));
  await new Promise<void>((resolve) => framer.listen(0, "127.0.0.1", resolve));
  try {
    await page.goto(`http://127.0.0.1:${(framer.address() as AddressInfo).port}/`);
    const child = page.mainFrame().childFrames()[0];
    assert.ok(child, "the iframe exists");
    await child.waitForLoadState();
    const inFrame = await child.evaluate(() => document.body?.innerText ?? "").catch((e) => `not readable: ${e}`);
    assert.doesNotMatch(inFrame, /Your usage/, "the panel did not render inside the frame");
    assert.ok(messages.some((m) => m.includes("frame-ancestors")), `the browser refused the frame by CSP (console: ${JSON.stringify(messages)})`);
  } finally {
    framer.close();
  }

  // the 401 page for a bad link is a standards-mode page under the same policy
  const violations = await watchCsp(page);
  const res = await page.goto(`${BASE}/panel?token=nope`);
  assert.equal(res?.status(), 401);
  assertLockedDown(res?.headers() ?? {});
  assert.equal(await page.evaluate(() => document.compatMode), "CSS1Compat");
  assert.equal(await page.evaluate(() => getComputedStyle(document.body).marginTop), "0px");
  assert.deepEqual(violations, []);
  await page.close();
});

/** Collects every CSP violation the page reports, by event and on the console, across navigations. */
async function watchCsp(page: Page): Promise<string[]> {
  const violations: string[] = [];
  page.on("console", (m) => {
    if (/Content Security Policy|Refused to/i.test(m.text())) violations.push(m.text());
  });
  await page.exposeBinding("__cspViolation", (_source, v: string) => void violations.push(v));
  await page.addInitScript(() =>
    document.addEventListener("securitypolicyviolation", (e) => (window as unknown as { __cspViolation(v: string): void }).__cspViolation(`${e.effectiveDirective} blocked ${e.blockedURI}`)),
  );
  return violations;
}

/** The headers every panel response carries (Playwright lower-cases header names). */
function assertLockedDown(headers: Record<string, string>) {
  assert.equal(headers["x-frame-options"], "DENY");
  const csp = headers["content-security-policy"] ?? "";
  assert.match(csp, /(^|;)\s*frame-ancestors 'none'\s*(;|$)/);
  assert.match(csp, /(^|;)\s*default-src 'none'\s*(;|$)/);
  assert.match(csp, /(^|;)\s*form-action 'self'\s*(;|$)/);
}
