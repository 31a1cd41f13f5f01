/**
 * The organization views (issue #16 item 7), inside workerd with the real bindings:
 * - the organization admin panel: `POST /v1/orgs/{orgId}/panel-token` signs a link (scope `org`), `GET /org-panel`
 *   renders the pool, the members' spend and the top spenders; a bad, expired or account-scoped link is refused, and
 *   an organization link does not open an account's panel;
 * - the operator console's organization page (`/console/orgs/{id}`) and its confirmed actions: resume the pool, and a
 *   goodwill refund to it, both behind the session and its CSRF token.
 */
import { env, exports } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import { LEASE_TTL_MS } from "../worker/core/account/membership";
import { ADMIN, CREDIT, call, consume, HOUR, T0, uid } from "./helpers";
import { orgStub } from "./org-helpers";
import { sleep, waitFor } from "./settle-helpers";
import { type Answer, cookiePair, field, ORIGIN, texts, unescapeHtml, web } from "./web-helpers";
import { ledgerFor } from "../worker/settlement/shards";

const C = CREDIT;
const MIN = 60_000;

// ───────────────────────────── helpers ─────────────────────────────

/** The cells of the table row carrying `data-testid="<id>"` and `data-account="<account>"`. */
function rowCells(html: string, id: string, account: string): string[] {
  const row = new RegExp(`<tr\\b[^>]*data-testid="${id}"[^>]*data-account="${account}"[^>]*>([\\s\\S]*?)</tr>`).exec(
    html,
  );
  if (!row) throw new Error(`no ${id} row for ${account}`);
  return [...row[1].matchAll(/<t[hd]\b[^>]*>([\s\S]*?)<\/t[hd]>/g)].map((m) =>
    unescapeHtml(m[1].replace(/<[^>]*>/g, " "))
      .replace(/\s+/g, " ")
      .trim(),
  );
}

/** The accounts of the rows carrying `data-testid="<id>"`, in page order. */
const accountsOf = (html: string, id: string) =>
  [...html.matchAll(new RegExp(`data-testid="${id}"[^>]*data-account="([^"]*)"`, "g"))].map((m) => m[1]);

const orgOf = async (orgId: string, now: number) => {
  const r = await call("GET", `/v1/orgs/${orgId}`, undefined, { now });
  expect(r.status, JSON.stringify(r.body)).toBe(200);
  return r.body;
};

/** The pool's events as settled to D1 (under `org/<orgId>`). */
async function poolEvents(orgId: string, type?: string) {
  const id = `org/${orgId}`;
  const { results } = await ledgerFor(env, id)
    .prepare("SELECT type, data FROM events WHERE account_id = ? ORDER BY created_at")
    .bind(id)
    .all<{ type: string; data: string }>();
  return type === undefined ? results : results.filter((r) => r.type === type);
}
const poolEventTypes = async (orgId: string) => (await poolEvents(orgId)).map((e) => e.type);

const poolPaid = (body: { sources?: { layer: string; amount: number }[] }) =>
  (body.sources ?? []).filter((s) => s.layer === "pool").reduce((s, x) => s + x.amount, 0);

/**
 * An organization with 100 credits in its pool (flex 50 credits a month) and two members that spent 3 and 1 credits
 * from it; every lease is then closed, so the pool's numbers are exact: balance 96, leased 4 (spent), spent 4.
 */
async function orgWithSpend(t: number) {
  const orgId = uid("org");
  expect(
    (await call("PUT", `/v1/orgs/${orgId}`, { plan: "business", flexMonthlyLimit: 50 * C }, { now: t })).status,
  ).toBe(200);
  expect(
    (await call("POST", `/v1/orgs/${orgId}/credits`, { amount: 100 * C, kind: "purchase" }, { now: t })).status,
  ).toBe(201);
  const big = uid("member");
  const small = uid("member");
  const limits = { dailyLimit: 40 * C, monthlyLimit: 90 * C };
  expect((await call("PUT", `/v1/orgs/${orgId}/members/${big}`, limits, { now: t })).status).toBe(200);
  expect((await call("PUT", `/v1/orgs/${orgId}/members/${small}`, {}, { now: t })).status).toBe(200);
  // go: 2 codex credits in the 5-hour window, then the pool
  for (const [id, cost] of [
    [big, 5 * C],
    [small, 3 * C],
  ] as const) {
    const r = await consume(id, { product: "codex", cost }, { now: t + 1000 });
    expect(r.status, JSON.stringify(r.body)).toBe(200);
    expect(poolPaid(r.body)).toBe(cost - 2 * C);
  }
  const closed = t + 1000 + LEASE_TTL_MS;
  await orgStub(orgId).closeDue(closed);
  return { orgId, big, small, now: closed + 1000 };
}

async function orgPanelLink(orgId: string, now: number) {
  const r = await call("POST", `/v1/orgs/${orgId}/panel-token`, undefined, { now });
  expect(r.status, JSON.stringify(r.body)).toBe(200);
  return r.body as { token: string; url: string; expiresAt: string };
}

async function get(path: string, now: number) {
  const res = await exports.default.fetch(`${ORIGIN}${path}`, { headers: { "X-Test-Now": String(now) } });
  return { status: res.status, html: await res.text(), headers: res.headers };
}

const orgPanel = (token: string, now: number) => get(`/org-panel?token=${encodeURIComponent(token)}`, now);
const accountPanel = (token: string, now: number) => get(`/panel?token=${encodeURIComponent(token)}`, now);

// ── the console, as a browser uses it ──

async function signIn(now: number, name?: string): Promise<string> {
  const form = await web("GET", "/console/sign-in", { now });
  expect(form.status).toBe(200);
  const answer = await web("POST", "/console/sign-in", {
    now,
    cookies: [cookiePair(form, "console_login")!],
    form: { token: ADMIN, name, csrf: field(form.html, "csrf") },
  });
  expect(answer.status, answer.html).toBe(303);
  return cookiePair(answer, "console_session")!;
}

async function page(cookie: string, path: string, now: number): Promise<Answer> {
  const answer = await web("GET", path, { now, cookies: [cookie] });
  expect(answer.status, `${path}: ${answer.html.slice(0, 500)}`).toBe(200);
  return answer;
}

/** The console's lockdown headers and a standards-mode page. */
function assertLockedDown(answer: Answer, what: string) {
  const h = answer.headers;
  expect(h.get("Content-Security-Policy") ?? "", what).toMatch(/(^|;)\s*frame-ancestors 'none'\s*(;|$)/);
  expect(h.get("X-Frame-Options"), what).toBe("DENY");
  expect(h.get("Cache-Control"), what).toBe("no-store");
  expect(h.get("Content-Type"), what).toMatch(/^text\/html/);
  expect(answer.html.startsWith("<!doctype html>"), what).toBe(true);
}

/**
 * An organization whose pool its anomaly guard paused: members each spend 45 credits (under their own 50-credit floor)
 * until together they pass the pool's 1,000-credit floor, which the pool sees as they report their spend.
 */
async function pausedOrg(t: number) {
  const orgId = uid("org");
  expect((await call("PUT", `/v1/orgs/${orgId}`, { plan: "business", flexMonthlyLimit: 0 }, { now: t })).status).toBe(
    200,
  );
  expect(
    (await call("POST", `/v1/orgs/${orgId}/credits`, { amount: 20_000 * C, kind: "purchase" }, { now: t })).status,
  ).toBe(201);
  for (let i = 0; i < 40; i++) {
    const member = uid("member");
    expect((await call("PUT", `/v1/orgs/${orgId}/members/${member}`, {}, { now: t })).status).toBe(200);
    const r = await consume(member, { product: "codex", cost: 47 * C }, { now: t + 1000 });
    if (r.status === 429) {
      expect(r.body.reason).toBe("credits_paused");
      // The pause recalls every lease: let those closes finish, so the pool's numbers hold still from here.
      await orgStub(orgId).closeDue(t + 1000);
      expect((await orgOf(orgId, t + 2000)).paused).toBe(true);
      return { orgId, member };
    }
  }
  throw new Error("the pool never paused");
}

// ───────────────────────────── the organization panel ─────────────────────────────

describe("organization panel", () => {
  it("signs a link for the organization and renders its pool, members' spend and top spenders", async () => {
    const { orgId, big, small, now } = await orgWithSpend(T0 + HOUR);
    // The API first: the numbers the page must show.
    const view = await orgOf(orgId, now);
    expect(view.pool).toEqual({ balance: 96 * C, leased: 4 * C, spent: 4 * C, granted: 100 * C, expired: 0 });
    expect(view.flex).toEqual({ limit: 50 * C, used: 0 });

    const link = await orgPanelLink(orgId, now);
    expect(link.url).toBe(`${ORIGIN}/org-panel?token=${encodeURIComponent(link.token)}`);
    expect(Date.parse(link.expiresAt)).toBe(now + 15 * MIN);
    const { status, html, headers } = await orgPanel(link.token, now + 1000);
    expect(status, html.slice(0, 500)).toBe(200);
    expect(html.startsWith("<!doctype html>")).toBe(true);
    expect(headers.get("X-Frame-Options")).toBe("DENY");
    expect(headers.get("Content-Security-Policy")).toContain("frame-ancestors 'none'");
    expect(headers.get("Cache-Control")).toBe("no-store");
    expect(texts(html, "org-id")).toEqual([orgId]);
    expect(texts(html, "org-plan")).toEqual(["business"]);
    expect(texts(html, "pool-balance")).toEqual(["96.00"]);
    expect(texts(html, "pool-leased")).toEqual(["4.00"]);
    expect(texts(html, "pool-spent")).toEqual(["4.00"]);
    expect(texts(html, "pool-granted")).toEqual(["100.00"]);
    expect(texts(html, "pool-flex")).toEqual(["Flexible billing this month: 0.00 of 50.00 credits"]);
    expect(texts(html, "pool-status")).toEqual(["Pool spending: active"]);
    expect(html).not.toContain('data-testid="org-paused"');
    expect(texts(html, "pool-grant")).toHaveLength(1);
    expect(texts(html, "pool-grant")[0]).toMatch(/^purchase 96\.00 all products /);
    // members: account, today, this month, daily limit, monthly limit, leased now, reported
    expect(rowCells(html, "member", big).slice(0, 6)).toEqual([big, "3.00", "3.00", "40.00", "90.00", "0.00"]);
    expect(rowCells(html, "member", small).slice(0, 6)).toEqual([
      small,
      "1.00",
      "1.00",
      "no limit",
      "no limit",
      "0.00",
    ]);
    expect(accountsOf(html, "top-spender")).toEqual([big, small]);
    expect(texts(html, "top-spender")[0]).toBe(`${big}: 3.00 credits this month, 3.00 today`);
  });

  it("shows a paused pool, and a lease still out with a member", async () => {
    const { orgId } = await pausedOrg(T0 + 2 * HOUR);
    const now = T0 + 2 * HOUR + 5000;
    const html = (await orgPanel((await orgPanelLink(orgId, now)).token, now)).html;
    expect(texts(html, "org-paused")[0]).toMatch(/^Pool spending is paused/);
    expect(texts(html, "pool-status")).toEqual(["Pool spending: paused"]);
    expect(texts(html, "pool-flex")).toEqual(["Flexible billing: off"]);

    // A member holding an open lease: the panel shows what it holds as the pool counts it.
    const { orgId: other, big } = await orgWithSpend(T0 + 3 * HOUR);
    const t = T0 + 3 * HOUR + LEASE_TTL_MS + 10_000;
    expect((await consume(big, { product: "codex", cost: C }, { now: t })).status).toBe(200);
    const view = await orgOf(other, t + 1000);
    const leased = view.members.find((m: { accountId: string }) => m.accountId === big).leased;
    expect(leased).toBeGreaterThan(0);
    const page2 = (await orgPanel((await orgPanelLink(other, t + 1000)).token, t + 1000)).html;
    expect(rowCells(page2, "member", big)[5]).toBe((leased / C).toFixed(2));
    expect(texts(page2, "pool-balance")).toEqual([(view.pool.balance / C).toFixed(2)]);
  });

  it("refuses a missing, tampered, expired or account-scoped link; an organization link does not open an account's panel", async () => {
    const { orgId, big, now } = await orgWithSpend(T0 + 4 * HOUR);
    const link = await orgPanelLink(orgId, now);
    expect((await orgPanel(link.token, now)).status).toBe(200);
    const [payload, mac] = link.token.split(".");
    const b64 = (s: string) => btoa(s).replace(/=+$/, "").replace(/\+/g, "-").replace(/\//g, "_");
    const claims = JSON.parse(atob(payload.replace(/-/g, "+").replace(/_/g, "/")));
    expect(claims).toMatchObject({ s: "org", id: orgId });
    for (const [what, token] of [
      ["another organization's id", `${b64(JSON.stringify({ ...claims, id: "org_other" }))}.${mac}`],
      ["the scope changed to account", `${b64(JSON.stringify({ ...claims, s: "account" }))}.${mac}`],
      ["a tampered MAC", `${payload}.${mac.slice(0, -2)}AA`],
      ["garbage", "nope"],
    ] as const) {
      const r = await orgPanel(token, now);
      expect(r.status, what).toBe(401);
      expect(r.html, what).toContain("This link does not work");
      expect(r.html, what).not.toContain(orgId);
    }
    // no token at all
    const none = await get("/org-panel", now);
    expect(none.status).toBe(401);
    expect(none.headers.get("X-Frame-Options")).toBe("DENY");
    // expired: valid for 15 minutes from its signing
    expect((await orgPanel(link.token, now + 15 * MIN - 1000)).status).toBe(200);
    expect((await orgPanel(link.token, now + 15 * MIN)).status).toBe(401);
    // An account's panel link is refused by the organization panel, and the other way round.
    const accountLink = await call("POST", `/v1/accounts/${big}/panel-token`, undefined, { now });
    expect(accountLink.status).toBe(200);
    expect((await accountPanel(accountLink.body.token, now)).status).toBe(200);
    expect((await orgPanel(accountLink.body.token, now)).status).toBe(401);
    expect((await accountPanel(link.token, now)).status).toBe(401);
    // An organization id that is also an account id: the scope, not the id, decides.
    const sameId = uid("shared");
    expect((await call("PUT", `/v1/orgs/${sameId}`, { plan: "edu" }, { now })).status).toBe(200);
    const asOrg = await orgPanelLink(sameId, now);
    const asAccount = await call("POST", `/v1/accounts/${sameId}/panel-token`, undefined, { now });
    expect((await accountPanel(asOrg.token, now)).status).toBe(401);
    expect((await orgPanel(asAccount.body.token, now)).status).toBe(401);
    expect((await orgPanel(asOrg.token, now)).status).toBe(200);
  });

  it("answers 404 org_not_found for an unknown organization, and needs the service token and an Idempotency-Key", async () => {
    const unknown = uid("org");
    const r = await call("POST", `/v1/orgs/${unknown}/panel-token`, undefined, { now: T0 });
    expect(r.status).toBe(404);
    expect(r.body.error.code).toBe("org_not_found");
    const { orgId } = await orgWithSpend(T0 + 5 * HOUR);
    expect((await call("POST", `/v1/orgs/${orgId}/panel-token`, undefined, { token: null })).status).toBe(401);
    expect((await call("POST", `/v1/orgs/${orgId}/panel-token`, undefined, { token: ADMIN })).status).toBe(403);
    const noKey = await call("POST", `/v1/orgs/${orgId}/panel-token`, undefined, { key: null });
    expect(noKey.status).toBe(400);
    expect(noKey.body.error.code).toBe("invalid_request");
  });

  it("replays the first link for the same Idempotency-Key", async () => {
    const { orgId } = await orgWithSpend(T0 + 5 * HOUR);
    const first = await call("POST", `/v1/orgs/${orgId}/panel-token`, undefined, { key: "org-link-1", now: T0 });
    const again = await call("POST", `/v1/orgs/${orgId}/panel-token`, undefined, { key: "org-link-1", now: T0 + 1000 });
    expect(first.status).toBe(200);
    expect(again.status).toBe(200);
    expect(again.headers.get("Idempotent-Replayed")).toBe("true");
    expect(again.body).toEqual(first.body);
  });

  it("is in /openapi.json", async () => {
    const doc = (await call("GET", "/openapi.json", undefined, { token: null })).body;
    expect(doc.paths["/v1/orgs/{orgId}/panel-token"].post.operationId).toBe("createOrgPanelLink");
    expect(Object.keys(doc.paths["/v1/orgs/{orgId}/panel-token"].post.responses)).toEqual(
      expect.arrayContaining(["200", "404", "409"]),
    );
    expect(doc.paths["/org-panel"].get.operationId).toBe("getOrgPanel");
  });
});

// ───────────────────────────── the console's organization page ─────────────────────────────

describe("console organization page", () => {
  it("needs the session: pages redirect to sign-in, actions are refused and change nothing", async () => {
    const t = T0 + 10 * HOUR;
    const { orgId } = await pausedOrg(t);
    for (const path of [
      `/console/orgs/${orgId}`,
      `/console/orgs/${orgId}/resume`,
      `/console/orgs/${orgId}/refund`,
      `/console/orgs?id=${orgId}`,
    ]) {
      const r = await web("GET", path, { now: t + MIN });
      expect(r.status, path).toBe(303);
      expect(r.location, path).toBe("/console/sign-in");
    }
    const before = await orgOf(orgId, t + MIN);
    for (const path of [`/console/orgs/${orgId}/resume`, `/console/orgs/${orgId}/refund`]) {
      const r = await web("POST", path, { now: t + MIN, form: { csrf: "x", nonce: "n1", amount: "1", reason: "r" } });
      expect(r.status, path).toBe(401);
      assertLockedDown(r, path);
    }
    const after = await orgOf(orgId, t + 2 * MIN);
    expect(after.paused).toBe(true);
    expect(after.pool).toEqual(before.pool);
  });

  it("looks an organization up and shows its pool, members and top spenders", async () => {
    const { orgId, big, small, now } = await orgWithSpend(T0 + 11 * HOUR);
    const cookie = await signIn(now);
    const overview = await page(cookie, "/console", now);
    expect(overview.html).toContain('action="/console/orgs"');
    const found = await web("GET", `/console/orgs?id=${orgId}`, { now, cookies: [cookie] });
    expect(found.status).toBe(303);
    expect(found.location).toBe(`/console/orgs/${orgId}`);
    const res = await page(cookie, `/console/orgs/${orgId}`, now);
    assertLockedDown(res, "org page");
    const html = res.html;
    expect(html).toContain(`<h1>Organization ${orgId}</h1>`);
    expect(texts(html, "org-plan")).toEqual(["business"]);
    expect(texts(html, "org-paused")).toEqual(["Not paused"]);
    expect(texts(html, "pool-balance")).toEqual(["96.00"]);
    expect(texts(html, "pool-leased")).toEqual(["4.00"]);
    expect(texts(html, "pool-spent")).toEqual(["4.00"]);
    expect(texts(html, "pool-granted")).toEqual(["100.00"]);
    expect(texts(html, "pool-flex")).toEqual(["0.00 of 50.00 credits this month"]);
    expect(texts(html, "pool-grant-row")).toHaveLength(1);
    expect(rowCells(html, "member-row", big).slice(0, 6)).toEqual([big, "3.00", "3.00", "40.00", "90.00", "0.00"]);
    expect(rowCells(html, "member-row", small).slice(0, 6)).toEqual([small, "1.00", "1.00", "none", "none", "0.00"]);
    expect(html).toContain(`href="/console/accounts/${big}"`);
    expect(accountsOf(html, "org-top-row")).toEqual([big, small]);
    expect(rowCells(html, "org-top-row", big)).toEqual([big, "3.00", "3.00"]);
    expect(html).toContain(`href="/console/orgs/${orgId}/refund"`);
    // not paused: no resume offered on the page
    expect(html).not.toContain(`href="/console/orgs/${orgId}/resume"`);

    const unknown = await web("GET", `/console/orgs/${uid("org")}`, { now, cookies: [cookie] });
    expect(unknown.status).toBe(404);
    assertLockedDown(unknown, "unknown org");
    expect(unknown.html).toContain("No such organization");
    const bad = await web("GET", "/console/orgs?id=%20bad%20id", { now, cookies: [cookie] });
    expect(bad.status).toBe(400);
    assertLockedDown(bad, "bad org id");
  });

  it("resume: a confirmation screen, then one effect under a double submit", async () => {
    const t = T0 + 12 * HOUR;
    const { orgId, member } = await pausedOrg(t);
    const cookie = await signIn(t + MIN, "alice");
    const orgPage = await page(cookie, `/console/orgs/${orgId}`, t + MIN);
    expect(texts(orgPage.html, "org-paused")).toEqual(["Paused"]);
    expect(orgPage.html).toContain(`href="/console/orgs/${orgId}/resume"`);
    // Once the pause event has settled to D1, the screen says why the pool paused.
    await waitFor(
      () => poolEventTypes(orgId),
      (types) => types.includes("org.credits_paused"),
    );
    const confirm = await page(cookie, `/console/orgs/${orgId}/resume`, t + MIN);
    expect(texts(confirm.html, "org-now")[0]).toMatch(/^Paused/);
    expect(confirm.html).toMatch(
      /members spent [\d.,]+ from the pool in the trailing window; [\d.,]+ more would pass the threshold of 1,000\.00/,
    );
    expect(confirm.html).toMatch(/<button[^>]*type="submit"[^>]*>Confirm: resume pool spending/);
    expect((await orgOf(orgId, t + MIN)).paused).toBe(true); // the GET did nothing

    const form = { csrf: field(confirm.html, "csrf"), nonce: field(confirm.html, "nonce") };
    const [first, second] = await Promise.all([
      web("POST", `/console/orgs/${orgId}/resume`, { now: t + 2 * MIN, cookies: [cookie], form }),
      web("POST", `/console/orgs/${orgId}/resume`, { now: t + 2 * MIN, cookies: [cookie], form }),
    ]);
    for (const r of [first, second]) {
      expect(r.status, r.html).toBe(303);
      expect(r.location).toBe(`/console/orgs/${orgId}?notice=pool_resumed`);
      assertLockedDown(r, "resume 303");
    }
    expect((await orgOf(orgId, t + 3 * MIN)).paused).toBe(false);
    // One resume, recorded with the operator's name: the second submit replayed the first answer.
    await waitFor(
      () => poolEventTypes(orgId),
      (types) => types.includes("org.credits_resumed"),
    );
    await sleep(300);
    const resumed = await poolEvents(orgId, "org.credits_resumed");
    expect(resumed).toHaveLength(1);
    expect(JSON.parse(resumed[0].data)).toEqual({ operator: "alice" });
    const after = await page(cookie, `/console/orgs/${orgId}?notice=pool_resumed`, t + 3 * MIN);
    expect(after.html).toMatch(/role="status"[^>]*>[^<]*Pool spending was resumed/);
    expect(texts(after.html, "org-paused")).toEqual(["Not paused"]);
    expect(texts(after.html, "org-event-row")[0]).toMatch(/org\.credits_resumed pool resumed by alice$/);
    // The member draws from the pool again (the denied request left its 2-credit window untouched).
    const r = await consume(member, { product: "codex", cost: 3 * C }, { now: t + 3 * MIN });
    expect(r.status, JSON.stringify(r.body)).toBe(200);
    expect(poolPaid(r.body)).toBe(C);

    // A pool that is not paused: the screen says so, and confirming changes nothing.
    const again = await page(cookie, `/console/orgs/${orgId}/resume`, t + 4 * MIN);
    expect(texts(again.html, "org-now")).toEqual(["Not paused."]);
    const noop = await web("POST", `/console/orgs/${orgId}/resume`, {
      now: t + 4 * MIN,
      cookies: [cookie],
      form: { csrf: field(again.html, "csrf"), nonce: field(again.html, "nonce") },
    });
    expect(noop.status).toBe(303);
    expect(noop.location).toBe(`/console/orgs/${orgId}?notice=pool_not_paused`);
  });

  it("refund: a goodwill credit to the pool, once under a double submit, visible in GET /v1/orgs; refusals are readable", async () => {
    const { orgId, now } = await orgWithSpend(T0 + 13 * HOUR);
    const cookie = await signIn(now);
    const before = await orgOf(orgId, now);
    const screen = await page(cookie, `/console/orgs/${orgId}/refund`, now);
    expect(texts(screen.html, "org-balance")).toEqual(["96.00 credits"]);
    expect(screen.html).toMatch(/<button[^>]*type="submit"[^>]*>Confirm: refund to the pool/);
    const csrf = field(screen.html, "csrf");
    const nonce = field(screen.html, "nonce");
    const form = { csrf, nonce, amount: "2.5", reason: "outage on 1 Nov" };
    const [first, second] = await Promise.all([
      web("POST", `/console/orgs/${orgId}/refund`, { now: now + MIN, cookies: [cookie], form }),
      web("POST", `/console/orgs/${orgId}/refund`, { now: now + MIN, cookies: [cookie], form }),
    ]);
    for (const r of [first, second]) {
      expect(r.status, r.html).toBe(303);
      expect(r.location).toBe(`/console/orgs/${orgId}?notice=pool_refunded`);
    }
    const after = await orgOf(orgId, now + 2 * MIN);
    expect(after.pool.balance).toBe(before.pool.balance + 2_500_000);
    expect(after.pool.granted).toBe(before.pool.granted + 2_500_000);
    expect(after.grants.map((g: { remaining: number }) => g.remaining).sort()).toEqual([2_500_000, 96 * C].sort());
    const shown = await page(cookie, `/console/orgs/${orgId}?notice=pool_refunded`, now + 2 * MIN);
    expect(texts(shown.html, "pool-balance")).toEqual(["98.50"]);
    expect(shown.html).toMatch(/role="status"[^>]*>[^<]*The refund was recorded/);

    // The same form with another amount is an idempotency conflict, shown on the page; nothing more is refunded.
    const conflict = await web("POST", `/console/orgs/${orgId}/refund`, {
      now: now + 3 * MIN,
      cookies: [cookie],
      form: { ...form, amount: "3" },
    });
    expect(conflict.status).toBe(409);
    expect(conflict.html).toMatch(/role="alert"[^>]*>Refused: this form was already used/);
    // Above the goodwill limit (100 credits): 409, in words.
    const fresh = await page(cookie, `/console/orgs/${orgId}/refund`, now + 3 * MIN);
    const over = await web("POST", `/console/orgs/${orgId}/refund`, {
      now: now + 3 * MIN,
      cookies: [cookie],
      form: { csrf, nonce: field(fresh.html, "nonce"), amount: "100.000001", reason: "too generous" },
    });
    expect(over.status).toBe(409);
    assertLockedDown(over, "goodwill limit");
    expect(over.html).toMatch(/at most 100\.00 credits/);
    // A form that is not a positive amount, or has no reason: 400 with the form again.
    for (const [what, amount, reason] of [
      ["zero", "0", "r"],
      ["negative", "-1", "r"],
      ["seven decimals", "1.0000001", "r"],
      ["no reason", "1", "  "],
    ] as const) {
      const r = await web("POST", `/console/orgs/${orgId}/refund`, {
        now: now + 3 * MIN,
        cookies: [cookie],
        form: { csrf, nonce: field(fresh.html, "nonce"), amount, reason },
      });
      expect(r.status, what).toBe(400);
      expect(r.html, what).toContain('name="amount"');
    }
    expect((await orgOf(orgId, now + 4 * MIN)).pool).toEqual(after.pool);
    // An organization that does not exist: 404, nothing done.
    const missing = uid("org");
    const nobody = await web("POST", `/console/orgs/${missing}/refund`, {
      now: now + 3 * MIN,
      cookies: [cookie],
      form: { csrf, nonce: crypto.randomUUID(), amount: "1", reason: "r" },
    });
    expect(nobody.status).toBe(404);
    expect((await call("GET", `/v1/orgs/${missing}`, undefined, { now: now + 4 * MIN })).status).toBe(404);
  });

  it("resume and refund refuse a form without a valid CSRF token and change nothing", async () => {
    const t = T0 + 14 * HOUR;
    const { orgId } = await pausedOrg(t);
    const cookie = await signIn(t + MIN);
    const otherCookie = await signIn(t + MIN);
    const confirm = await page(cookie, `/console/orgs/${orgId}/resume`, t + MIN);
    const other = await page(otherCookie, "/console", t + MIN);
    const nonce = field(confirm.html, "nonce");
    const before = await orgOf(orgId, t + MIN);
    for (const [what, csrf] of [
      ["none", undefined],
      ["empty", ""],
      ["wrong", "A".repeat(43)],
      ["another session's", field(other.html, "csrf")],
      ["truncated", field(confirm.html, "csrf").slice(0, -1)],
    ] as const) {
      for (const action of ["resume", "refund"]) {
        const r = await web("POST", `/console/orgs/${orgId}/${action}`, {
          now: t + 2 * MIN,
          cookies: [cookie],
          form: { csrf, nonce, amount: "5", reason: "x" },
        });
        expect(r.status, `${action} (${what})`).toBe(403);
        assertLockedDown(r, `${action} (${what})`);
        expect(r.html, what).toMatch(/security token/i);
      }
    }
    const after = await orgOf(orgId, t + 3 * MIN);
    expect(after.paused).toBe(true);
    expect(after.pool).toEqual(before.pool);
    // The very same nonce then works with the right token: nothing was recorded under it.
    const ok = await web("POST", `/console/orgs/${orgId}/resume`, {
      now: t + 3 * MIN,
      cookies: [cookie],
      form: { csrf: field(confirm.html, "csrf"), nonce },
    });
    expect(ok.status).toBe(303);
    expect((await orgOf(orgId, t + 4 * MIN)).paused).toBe(false);
  });
});
