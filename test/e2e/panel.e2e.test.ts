// Browser test: the usage panel in Debian's Chromium against the engine started with `npm start`.
// Runs on Node's test runner (`npm run test:e2e`), outside workerd, because it drives a real browser.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import type { Browser, Page } from "playwright-core";
import { EngineClient, isDenial } from "../../sdk/src/index.ts";
import { ARTIFACTS, axeViolations, type Engine, launchChromium, portFor, startEngine, watchCsp } from "./harness.ts";

const PORT = portFor("E2E_PANEL_PORT", 0);
const BASE = `http://localhost:${PORT}`;
const BILLING = "https://billing.example/add-credits";
const credits = (micro: number) => (micro / 1_000_000).toFixed(2);

let engine: Engine | undefined;
let browser: Browser;
let engineClient: EngineClient;

before(async () => {
  engine = await startEngine(PORT, ["--var", `BILLING_URL:${BILLING}`]);
  engineClient = new EngineClient({
    baseUrl: BASE,
    token: engine.vars.SERVICE_TOKEN,
    adminToken: engine.vars.ADMIN_TOKEN,
  });
  browser = await launchChromium();
});

after(async () => {
  await browser?.close();
  await engine?.stop();
});

test("the panel matches GET account, redeems a banked reset by a click, and shows the limit prompt", async () => {
  const id = `e2e_${Date.now().toString(36)}`;
  // A first charge makes the account exist; a bonus banked reset is granted to existing accounts.
  assert.ok(!isDenial(await engineClient.consume(id, { product: "codex", cost: 100_000 })));
  await engineClient.admin.createGlobalReset({
    reason: "e2e bonus",
    scope: { products: ["codex"] },
    grantBankedResets: { count: 1, expiresInHours: 48 },
  });
  // Usage in both windows of codex, some grants, and sora at its limit.
  assert.ok(!isDenial(await engineClient.consume(id, { product: "codex", cost: 1_500_000 })));
  await engineClient.addCredits(id, { amount: 3_000_000, kind: "purchase" });
  await engineClient.addCredits(id, {
    amount: 1_000_000,
    kind: "promo",
    expiresAt: new Date(Date.now() + 30 * 86_400_000).toISOString(),
    products: ["sora"],
  });
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
  assert.ok(
    Math.abs(fill - Math.min(1, codex5h.used / codex5h.limit)) < 0.02,
    `the codex 5-hour bar is drawn to its share (was ${fill})`,
  );
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
  // sora's 5-hour window is used up, but its credits pay until it resets: no add-credits prompt
  assert.match(await text("limit"), /^Sora: your 5-hour limit is used up; it resets at .+ \(in \d+h \d+m\)\.$/);
  assert.match(await text("limit-help"), /credits \(\d+\.\d\d\) pay for Sora/);
  assert.equal(await page.getByRole("link", { name: "Add credits" }).count(), 0);
  assert.equal(await page.getByTestId("paused").count(), 0);
  // the purchase, the promo and the charges settle into the ledger and appear as recent activity
  await reloadUntil(page, async () => (await page.getByTestId("activity").count()) >= 4);
  assert.match((await page.getByTestId("activity").allTextContents()).join("\n"), /grant[\s\S]*3\.00/);
  assert.deepEqual(await axeViolations(page), [], "axe-core: no violations on the panel");
  await page.screenshot({ path: `${ARTIFACTS}/panel-desktop.png`, fullPage: true });

  await page.setViewportSize({ width: 360, height: 1600 });
  const overflow = await page.evaluate(
    () => document.documentElement.scrollWidth - document.documentElement.clientWidth,
  );
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
  assert.deepEqual(await axeViolations(page), [], "axe-core: no violations on the panel with a notice");
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
  const framer = createServer((_req, res) =>
    res.writeHead(200, { "Content-Type": "text/html" }).end(`<!doctype html><iframe src="${url}"></iframe>`),
  );
  await new Promise<void>((resolve) => framer.listen(0, "127.0.0.1", resolve));
  try {
    await page.goto(`http://127.0.0.1:${(framer.address() as AddressInfo).port}/`);
    const child = page.mainFrame().childFrames()[0];
    assert.ok(child, "the iframe exists");
    await child.waitForLoadState();
    const inFrame = await child.evaluate(() => document.body?.innerText ?? "").catch((e) => `not readable: ${e}`);
    assert.doesNotMatch(inFrame, /Your usage/, "the panel did not render inside the frame");
    assert.ok(
      messages.some((m) => m.includes("frame-ancestors")),
      `the browser refused the frame by CSP (console: ${JSON.stringify(messages)})`,
    );
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
  assert.deepEqual(await axeViolations(page), [], "axe-core: no violations on the 401 page");
  await page.screenshot({ path: `${ARTIFACTS}/panel-401.png`, fullPage: true });
  assert.deepEqual(violations, []);
  await page.close();
});

test("a used-up window with no credits: what is used up, until when, an add-credits link with the account and a return URL; readable at 360 px", async () => {
  // a long account id must wrap at 360 px too
  const id = `e2e_limits_${Date.now().toString(36)}_${"x".repeat(80)}`;
  assert.ok(!isDenial(await engineClient.consume(id, { product: "codex", cost: 2_000_000 }))); // go: codex 5-hour window is 2 credits
  const acct = await engineClient.getAccount(id);
  const resetsAt = acct.products.codex!.fiveHour.resetsAt!;
  const link = await engineClient.createPanelLink(id);
  const url = link.url.replace(/^https?:\/\/[^/]+/, BASE);

  const page = await browser.newPage({ viewport: { width: 1280, height: 1200 } });
  const violations = await watchCsp(page);
  const res = await page.goto(url);
  assertLockedDown(res?.headers() ?? {});
  const limit = page.getByTestId("limit");
  assert.equal(await limit.count(), 1);
  assert.match(
    (await limit.textContent()) ?? "",
    /^Codex: your 5-hour limit is used up; it resets at .+ \(in [45]h \d+m\)\.$/,
  );
  assert.equal(await limit.locator("time").getAttribute("datetime"), resetsAt);
  const add = page.getByRole("link", { name: "Add credits" });
  const href = new URL((await add.getAttribute("href")) ?? "");
  assert.equal(`${href.origin}${href.pathname}`, BILLING);
  assert.equal(href.searchParams.get("account"), id);
  assert.equal(href.searchParams.get("return"), `${BASE}/panel`);
  assert.ok(!href.toString().includes(link.token), "the link token never goes to the billing site");
  assert.equal(await page.getByTestId("paused").count(), 0);
  // the chart: a y-axis with labelled ticks, both series and a legend
  assert.ok((await page.getByTestId("y-tick").count()) >= 3);
  assert.deepEqual(await page.getByTestId("legend").allTextContents(), [
    "Window usage (included in your plan)",
    "Credits spent",
  ]);
  assert.deepEqual(await axeViolations(page), [], "axe-core: no violations with a limit hit");
  await page.screenshot({ path: `${ARTIFACTS}/panel-limits.png`, fullPage: true });

  await page.setViewportSize({ width: 360, height: 1600 });
  assert.equal(
    await horizontalOverflow(page),
    0,
    "no horizontal overflow at 360 px with a long account id and a limit hit",
  );
  assert.deepEqual(await axeViolations(page), [], "axe-core: no violations at 360 px");
  await page.screenshot({ path: `${ARTIFACTS}/panel-limits-360.png`, fullPage: true });
  assert.deepEqual(violations, [], "no Content-Security-Policy violation");

  // the "Add credits" link leads to the billing page; coming back without a token gets a page that says what to do
  const back = await page.goto(`${BASE}/panel`);
  assert.equal(back?.status(), 401);
  assert.match(await page.locator("main").innerText(), /Open your usage page again from the product/);
  await page.close();
});

test("paused credit spending: a banner, no add-credits prompt, and the activity that led to it", async () => {
  const id = `e2e_paused_${Date.now().toString(36)}`;
  await engineClient.addCredits(id, { amount: 100_000_000, kind: "purchase" });
  assert.ok(!isDenial(await engineClient.consume(id, { product: "codex", cost: 2_000_000 })));
  const denied = await engineClient.consume(id, { product: "codex", cost: 60_000_000 });
  assert.ok(isDenial(denied) && denied.reason === "credits_paused", "60 credits in a minute trip the anomaly guard");
  const link = await engineClient.createPanelLink(id);
  const page = await browser.newPage({ viewport: { width: 1280, height: 1200 } });
  const violations = await watchCsp(page);
  await page.goto(link.url.replace(/^https?:\/\/[^/]+/, BASE));
  const paused = page.getByTestId("paused");
  assert.equal(await paused.count(), 1);
  assert.match((await paused.textContent()) ?? "", /Credit spending is paused for your safety; contact support/);
  assert.equal(await page.getByRole("link", { name: "Add credits" }).count(), 0);
  await reloadUntil(page, async () => (await page.getByTestId("activity").count()) >= 2);
  const activity = await page.getByTestId("activity").allTextContents();
  assert.ok(
    activity.some((t) => /grant/.test(t) && /100\.00/.test(t)),
    `the purchase is listed (${JSON.stringify(activity)})`,
  );
  assert.deepEqual(await axeViolations(page), [], "axe-core: no violations while paused");
  await page.screenshot({ path: `${ARTIFACTS}/panel-paused.png`, fullPage: true });
  await page.setViewportSize({ width: 360, height: 1600 });
  assert.equal(await horizontalOverflow(page), 0, "no horizontal overflow at 360 px while paused");
  await page.screenshot({ path: `${ARTIFACTS}/panel-paused-360.png`, fullPage: true });
  assert.deepEqual(violations, []);
  await page.close();
});

test("times are converted to the viewer's time zone by the same-origin script, and stay in UTC without JavaScript", async () => {
  const id = `e2e_tz_${Date.now().toString(36)}`;
  assert.ok(!isDenial(await engineClient.consume(id, { product: "codex", cost: 2_000_000 })));
  const resetsAt = (await engineClient.getAccount(id)).products.codex!.fiveHour.resetsAt!;
  const url = (await engineClient.createPanelLink(id)).url.replace(/^https?:\/\/[^/]+/, BASE);
  // the server writes the time alone on the same UTC day, the date too otherwise
  const utcText = `${resetsAt.slice(0, 10) === new Date().toISOString().slice(0, 10) ? "" : `${resetsAt.slice(0, 10)} `}${resetsAt.slice(11, 16)} UTC`;

  const tokyo = await browser.newContext({ timezoneId: "Asia/Tokyo", locale: "en-US" });
  const page = await tokyo.newPage();
  const violations = await watchCsp(page);
  const script = page.waitForResponse((r) => r.url().endsWith("/panel/time.js"));
  await page.goto(url);
  const js = await script;
  assert.equal(js.status(), 200);
  assertLockedDown(js.headers());
  const time = page.getByTestId("limit").locator("time");
  await page.waitForFunction(() => document.documentElement.dataset.localTime === "done");
  const local = new Date(Date.parse(resetsAt) + 9 * 3_600_000).toISOString();
  const shown = (await time.textContent()) ?? "";
  assert.match(shown, new RegExp(`${local.slice(11, 16)} GMT\\+9$`), `the reset time in Tokyo time (was ${shown})`);
  assert.equal(await time.getAttribute("title"), utcText, "the UTC time stays available as the title");
  assert.match(await page.getByTestId("tz-note").innerText(), /Asia\/Tokyo/);
  assert.deepEqual(await axeViolations(page), [], "axe-core: no violations after the local-time script ran");
  assert.deepEqual(violations, [], "the script loads under the policy");
  await tokyo.close();

  const noJs = await browser.newContext({ timezoneId: "Asia/Tokyo", javaScriptEnabled: false });
  const plain = await noJs.newPage();
  await plain.goto(url);
  assert.equal(await plain.getByTestId("limit").locator("time").textContent(), utcText);
  assert.match(await plain.getByTestId("tz-note").innerText(), /All times are in UTC/);
  await noJs.close();
});

/** How far the page scrolls sideways (0 when nothing overflows). */
function horizontalOverflow(page: Page): Promise<number> {
  return page.evaluate(() => Math.max(0, document.documentElement.scrollWidth - document.documentElement.clientWidth));
}

/** Reloads until `done` (the ledger settles within a second or two), for up to 15 s. */
async function reloadUntil(page: Page, done: () => Promise<boolean>): Promise<void> {
  const deadline = Date.now() + 15_000;
  while (!(await done())) {
    assert.ok(Date.now() < deadline, "the ledger entries did not appear in time");
    await new Promise((r) => setTimeout(r, 500));
    await page.reload();
  }
}

/** The headers every panel response carries (Playwright lower-cases header names). */
function assertLockedDown(headers: Record<string, string>) {
  assert.equal(headers["x-frame-options"], "DENY");
  const csp = headers["content-security-policy"] ?? "";
  assert.match(csp, /(^|;)\s*frame-ancestors 'none'\s*(;|$)/);
  assert.match(csp, /(^|;)\s*default-src 'none'\s*(;|$)/);
  assert.match(csp, /(^|;)\s*form-action 'self'\s*(;|$)/);
}
