// Browser test: the operator console (/console) in Debian's Chromium against the engine started with `npm start`.
// An incident walked through end to end: a runaway client drains an account until the anomaly guard pauses it; the
// operator signs in, finds it on the overview (paused, a top spender), opens it, resumes it and refunds one of its
// charges through the confirmation screens, and the account's usage panel reflects both. A form stripped of its CSRF
// token is refused. axe-core checks every console page (0 violations); screenshots go to artifacts/e2e/console-*.png.
// Runs on Node's test runner (`npm run test:e2e`), outside workerd, because it drives a real browser.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import type { Browser, Page } from "playwright-core";
import { EngineClient, isDenial } from "../../sdk/src/index.ts";
import {
  ARTIFACTS,
  axeViolations,
  type Engine,
  launchChromium,
  portFor,
  sleep,
  startEngine,
  watchCsp,
} from "./harness.ts";

// Its own port (the panel test uses E2E_PORT, the docs test E2E_PORT + 1), so no two engines race for one port.
const PORT = portFor("E2E_CONSOLE_PORT", 2);
const BASE = `http://localhost:${PORT}`;
const CREDIT = 1_000_000;
/** As the panel and the console print credits: two decimals, grouped. */
const credits = (micro: number) =>
  (micro / CREDIT).toLocaleString("en-US", { minimumFractionDigits: 2, maximumFractionDigits: 2 });

let engine: Engine | undefined;
let browser: Browser;
let engineClient: EngineClient;
let adminToken: string;

before(async () => {
  engine = await startEngine(PORT);
  adminToken = engine.vars.ADMIN_TOKEN;
  engineClient = new EngineClient({ baseUrl: BASE, token: engine.vars.SERVICE_TOKEN, adminToken });
  browser = await launchChromium();
});

after(async () => {
  await browser?.close();
  await engine?.stop();
});

test("an incident in the console: find the paused account, resume it, refund a charge; the usage panel shows both", async () => {
  // A runaway client: purchased credits, then consumes in a loop until the anomaly guard pauses credit spending
  // (go plan: the 5-hour window covers 2 credits, then the grant pays; no history, so the 50-credit floor applies).
  const id = `e2e_console_${Date.now().toString(36)}`;
  await engineClient.addCredits(id, { amount: 100 * CREDIT, kind: "purchase" });
  let pausedAfter = 0;
  for (let i = 0; i < 40; i++) {
    const d = await engineClient.consume(id, { product: "codex", cost: 5 * CREDIT });
    if (isDenial(d)) {
      assert.equal(d.reason, "credits_paused");
      pausedAfter = i;
      break;
    }
  }
  assert.ok(pausedAfter > 0, "the anomaly guard paused the account");
  assert.equal((await engineClient.getAccount(id)).paused, true);

  const context = await browser.newContext({ viewport: { width: 1280, height: 1000 } });
  const page = await context.newPage();
  const violations = await watchCsp(page);
  const shot = (name: string) => page.screenshot({ path: `${ARTIFACTS}/console-${name}.png`, fullPage: true });

  // Signed out, the console sends you to its sign-in page.
  await page.goto(`${BASE}/console`);
  assert.match(page.url(), /\/console\/sign-in$/);
  await checkPage(page, "sign-in");
  await shot("sign-in");
  await page.getByLabel("Admin token").fill(adminToken);
  await page.getByLabel(/Your name/).fill("e2e operator");
  const signedIn = page.waitForResponse((r) => r.url().endsWith("/console/sign-in") && r.request().method() === "POST");
  await page.getByRole("button", { name: "Sign in" }).click();
  const signInAnswer = await signedIn;
  assert.equal(signInAnswer.status(), 303);
  assertLockedDown(signInAnswer.headers());
  const setCookie = (await signInAnswer.headerValue("set-cookie")) ?? "";
  assert.match(setCookie, /console_session=[^;]+;.*HttpOnly/i);
  assert.match(setCookie, /SameSite=Strict/i);
  assert.ok(!setCookie.includes(adminToken), "the token is not in the cookie");
  await page.waitForURL(`${BASE}/console`);
  const cookies = await context.cookies(`${BASE}/console`);
  const session = cookies.find((c) => c.name === "console_session");
  assert.ok(session?.httpOnly && session.sameSite === "Strict" && session.path === "/console", JSON.stringify(cookies));
  assert.equal(await page.evaluate(() => document.cookie), "", "no console cookie is readable by script");

  // The pause event settles into D1 through the queue; the overview reads D1.
  const row = (testId: string) =>
    page.locator(`tr[data-testid="${testId}"]`).filter({ has: page.locator(`a[href="/console/accounts/${id}"]`) });
  const deadline = Date.now() + 30_000;
  while ((await row("paused-row").count()) === 0 || (await row("top-hour-row").count()) === 0) {
    assert.ok(Date.now() < deadline, "the paused account and its spend reached the overview within 30 s");
    await sleep(500);
    await page.reload();
  }
  assert.equal(await row("top-day-row").count(), 1, "a top spender of the last day too");
  const spentHour = (await row("top-hour-row").locator("td").nth(1).innerText()).trim();
  assert.equal(
    spentHour,
    credits(pausedAfter * 5 * CREDIT - 2 * CREDIT),
    "the hour's credit spend is the grant part of the loop (not the window's 2 credits)",
  );
  assert.match(await row("paused-row").innerText(), /threshold of 50\.00 credits/);
  await checkPage(page, "overview");
  await shot("overview");

  // Open the account from the paused list.
  await row("paused-row").locator(`a[href="/console/accounts/${id}"]`).click();
  await page.waitForURL(`${BASE}/console/accounts/${id}`);
  assert.equal((await page.getByTestId("account-paused").innerText()).trim(), "Paused");
  assert.ok(
    (await page.locator('tr[data-testid="ledger-row"]').count()) >= pausedAfter,
    "the ledger lists the loop's charges",
  );
  await checkPage(page, "account");
  await shot("account");

  // Resume: the confirmation screen first.
  await page.getByRole("link", { name: "Resume credit spending…" }).click();
  await page.waitForURL(`${BASE}/console/accounts/${id}/resume`);
  assert.match(await page.locator("main").innerText(), /Paused: requests that need credits are denied/);
  await checkPage(page, "resume confirmation");
  await shot("resume-confirm");

  // The same form without its CSRF token is refused, and nothing changes.
  await page.evaluate(() => document.querySelector('main form input[name="csrf"]')!.remove());
  const refused = page.waitForResponse(
    (r) => r.url().endsWith(`/console/accounts/${id}/resume`) && r.request().method() === "POST",
  );
  await page.getByRole("button", { name: "Confirm: resume credit spending" }).click();
  const refusal = await refused;
  assert.equal(refusal.status(), 403);
  assertLockedDown(refusal.headers());
  await page.waitForLoadState();
  assert.match(await page.getByRole("alert").innerText(), /security token is missing or not valid/);
  await checkPage(page, "403 refusal");
  await shot("csrf-refused");
  assert.equal((await engineClient.getAccount(id)).paused, true, "a refused form changed nothing");

  // With its token, the confirmation resumes the account.
  await page.goto(`${BASE}/console/accounts/${id}/resume`);
  await page.getByRole("button", { name: "Confirm: resume credit spending" }).click();
  await page.waitForURL(`${BASE}/console/accounts/${id}?notice=resumed`);
  assert.match(await page.getByRole("status").innerText(), /Credit spending was resumed/);
  assert.equal((await page.getByTestId("account-paused").innerText()).trim(), "Not paused");
  assert.equal((await engineClient.getAccount(id)).paused, false);
  await shot("account-resumed");

  // Refund a chosen charge: a grant-paid one from the ledger table.
  const charge = await page.evaluate(() => {
    for (const tr of document.querySelectorAll<HTMLTableRowElement>('tr[data-testid="ledger-row"]')) {
      const cells = [...tr.cells].map((td) => td.innerText.trim());
      if (cells[1] === "charge" && cells[2] === "grant") return { id: tr.dataset.entry!, amount: cells[4] };
    }
    return null;
  });
  assert.ok(charge, "a grant-paid charge is in the ledger");
  const before = (await engineClient.getAccount(id)).credits.balance;
  await page.locator(`a[href="/console/accounts/${id}/refund?entry=${charge.id}"]`).click();
  await page.waitForURL(`${BASE}/console/accounts/${id}/refund?entry=${charge.id}`);
  const amount = await page.getByLabel("Amount (credits)").inputValue();
  assert.equal(credits(Number(amount) * CREDIT), charge.amount, "the amount defaults to what is left of the entry");
  await checkPage(page, "refund confirmation");
  await shot("refund-confirm");
  await page.getByLabel(/^Reason/).fill("runaway client: refund of one loop charge");
  await page.getByRole("button", { name: "Confirm: refund" }).click();
  await page.waitForURL(`${BASE}/console/accounts/${id}?notice=refunded`);
  assert.match(await page.getByRole("status").innerText(), /refund was recorded/);
  const refunded = Math.round(Number(amount) * CREDIT);
  const afterRefund = await engineClient.getAccount(id);
  assert.equal(afterRefund.credits.balance, before + refunded, "the balance rose by the refund");
  // The refund entry settles into the D1 ledger, and the charge shows what was refunded against it.
  const refundedCell = page.locator(`tr[data-entry="${charge.id}"] [data-testid="refunded"]`);
  const settleBy = Date.now() + 15_000;
  while ((await refundedCell.innerText()).trim() !== charge.amount) {
    assert.ok(Date.now() < settleBy, "the refund reached the ledger within 15 s");
    await sleep(500);
    await page.reload();
  }
  const kinds = await page.locator('tr[data-testid="ledger-row"] td:nth-child(2)').allInnerTexts();
  assert.equal(kinds.filter((k) => k.trim() === "refund").length, 1, "one refund entry in the ledger");
  await shot("account-refunded");

  // The global reset's form and confirmation screen (not confirmed: a reset would touch every local account).
  await page.getByRole("link", { name: "Global reset", exact: true }).click();
  await page.waitForURL(`${BASE}/console/resets/new`);
  await checkPage(page, "global reset form");
  await shot("reset-form");
  await page.getByRole("checkbox", { name: "codex", exact: true }).check();
  await page.getByRole("checkbox", { name: "go", exact: true }).check();
  await page.getByLabel(/^Reason/).fill("e2e: the confirmation screen only");
  await page.getByRole("button", { name: "Review the reset…" }).click();
  await page.waitForURL(/\/console\/resets\/confirm\?/);
  assert.equal((await page.getByTestId("reset-scope").innerText()).trim(), "codex");
  assert.equal((await page.getByTestId("reset-plans").innerText()).trim(), "go");
  await checkPage(page, "global reset confirmation");
  await shot("reset-confirm");

  // The account's usage panel reflects the console's actions: not paused, the refund in the balance (and in the
  // recent activity, where the panel lists it).
  const link = await engineClient.createPanelLink(id);
  await page.goto(link.url.replace(/^https?:\/\/[^/]+/, BASE));
  assert.equal(await page.getByTestId("paused").count(), 0, "no paused banner");
  assert.doesNotMatch(await page.locator("body").innerText(), /spending is paused/i);
  assert.equal((await page.getByTestId("balance").innerText()).trim(), credits(afterRefund.credits.balance));
  const activity = page.getByTestId("activity");
  if ((await activity.count()) > 0) {
    const items = await activity.allInnerTexts();
    assert.ok(
      items.some((t) => /refund/i.test(t)),
      `the refund is in the recent activity: ${JSON.stringify(items)}`,
    );
  }
  await shot("panel-after");

  // Sign out: back to the sign-in page, and the console is closed to this browser again.
  await page.goto(`${BASE}/console`);
  await page.getByRole("button", { name: "Sign out" }).click();
  await page.waitForURL(`${BASE}/console/sign-in?notice=signed_out`);
  assert.equal(
    (await context.cookies(`${BASE}/console`)).find((c) => c.name === "console_session"),
    undefined,
  );
  await page.goto(`${BASE}/console`);
  assert.match(page.url(), /\/console\/sign-in$/);
  assert.deepEqual(violations, [], "no Content-Security-Policy violation on any console page");
  await context.close();
});

/** A standards-mode page, not framed by anyone, with no axe-core violation. */
async function checkPage(page: Page, what: string): Promise<void> {
  assert.equal(await page.evaluate(() => document.compatMode), "CSS1Compat", `${what}: standards mode`);
  // The stylesheet applied (it is allowed by its hash, not by 'unsafe-inline').
  assert.equal(
    await page.evaluate(() => getComputedStyle(document.body).marginTop),
    "0px",
    `${what}: the stylesheet applies`,
  );
  assert.deepEqual(await axeViolations(page), [], `${what}: axe-core violations`);
}

/** The headers every console answer carries (Playwright lower-cases header names). */
function assertLockedDown(headers: Record<string, string>) {
  assert.equal(headers["x-frame-options"], "DENY");
  assert.equal(headers["cache-control"], "no-store");
  assert.equal(headers["referrer-policy"], "no-referrer");
  const csp = headers["content-security-policy"] ?? "";
  assert.match(csp, /(^|;)\s*frame-ancestors 'none'\s*(;|$)/);
  assert.match(csp, /(^|;)\s*default-src 'none'\s*(;|$)/);
  assert.match(csp, /(^|;)\s*form-action 'self'\s*(;|$)/);
}
