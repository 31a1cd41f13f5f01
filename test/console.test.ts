/**
 * The operator console (SPEC §10, docs/console.md), inside workerd:
 * - sign-in with ADMIN_TOKEN gives a signed session cookie (HttpOnly, SameSite=Strict, Secure over https, Path=/console,
 *   8 hours on the request clock); a wrong token is a 401 page and no cookie; no ADMIN_TOKEN means no sign-in at all,
 *   and rotating the token ends every session; the token never appears in a cookie, a page or a redirect;
 * - pages without a session redirect to the sign-in page; a POST without a session, without its CSRF token or with
 *   another session's is refused and changes nothing; an expired session is refused;
 * - every console answer is a standards-mode page under the lockdown headers;
 * - resume, refund and global reset go through a confirmation screen and have one effect under a double submit;
 * - the overview and the account page show what D1 and the account object hold.
 */
import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import type { ResetControlDO } from "../durable-objects/reset-control";
import { createApp } from "../worker/app";
import { ledgerFor } from "../worker/settlement/shards";
import { account, ADMIN, addCredits, call, consume, CREDIT, HOUR, T0, uid } from "./helpers";
import { d1Rows, outboxMessages, waitFor } from "./settle-helpers";
import { type Answer, cookiePair, type Fetcher, field, web } from "./web-helpers";

const C = CREDIT;
const MIN = 60_000;
const SESSION_MS = 8 * HOUR;

/** A fetcher for the app under other bindings (no ADMIN_TOKEN, a rotated one). */
const withEnv =
  (vars: Partial<Env>): Fetcher =>
  async (request) =>
    createApp().request(request, undefined, { ...env, ...vars }) as Promise<Response>;

const cookieLine = (answer: Answer, name: string) => answer.cookies.find((c) => c.startsWith(`${name}=`));

interface Session {
  cookie: string;
  setCookie: string;
  answer: Answer;
}

async function signIn(now: number, opts: { name?: string; origin?: string; fetcher?: Fetcher } = {}): Promise<Session> {
  const form = await web("GET", "/console/sign-in", { now, origin: opts.origin, fetcher: opts.fetcher });
  expect(form.status).toBe(200);
  const login = cookiePair(form, "console_login");
  expect(login, "the sign-in page sets its form cookie").toBeDefined();
  const answer = await web("POST", "/console/sign-in", {
    now,
    origin: opts.origin,
    fetcher: opts.fetcher,
    cookies: [login!],
    form: { token: ADMIN, name: opts.name, csrf: field(form.html, "csrf") },
  });
  expect(answer.status, answer.html).toBe(303);
  return { cookie: cookiePair(answer, "console_session")!, setCookie: cookieLine(answer, "console_session")!, answer };
}

/** A GET page with the session, expected to render. */
async function page(session: Session, path: string, now: number): Promise<Answer> {
  const answer = await web("GET", path, { now, cookies: [session.cookie] });
  expect(answer.status, `${path}: ${answer.html.slice(0, 500)}`).toBe(200);
  return answer;
}

/** An account paused by the anomaly guard (go plan: 2-credit window, then purchased credits; the 50-credit floor). */
async function pausedAccount(t: number, prefix = "cpause"): Promise<string> {
  const id = uid(prefix);
  expect((await addCredits(id, { kind: "purchase", amount: 200 * C }, { now: t })).status).toBe(201);
  for (let i = 0; i < 40; i++) {
    const r = await consume(id, { product: "codex", cost: 5 * C }, { now: t + (i + 1) * 1000 });
    if (r.status === 429) {
      expect(r.body.reason).toBe("credits_paused");
      expect((await account(id, t + 60_000)).body.paused).toBe(true);
      return id;
    }
    expect(r.status, JSON.stringify(r.body)).toBe(200);
  }
  throw new Error("the anomaly guard did not pause the account");
}

async function outboxEvents(id: string, type: string) {
  return (await outboxMessages(id)).flatMap((m) => (m.type === "event" && m.event.type === type ? [m.event] : []));
}
async function outboxEntries(id: string, kind: string) {
  return (await outboxMessages(id)).flatMap((m) => (m.type === "ledger" && m.entry.kind === kind ? [m.entry] : []));
}
async function d1Events(id: string) {
  const { results } = await ledgerFor(env, id)
    .prepare("SELECT id, type, created_at FROM events WHERE account_id = ?")
    .bind(id)
    .all<{ id: string; type: string; created_at: number }>();
  return results;
}

/** The headers every console answer carries, and a standards-mode page (Playwright would see the same). */
function assertLockedDown(answer: Answer, what: string) {
  const h = answer.headers;
  const csp = h.get("Content-Security-Policy") ?? "";
  expect(csp, what).toMatch(/(^|;)\s*default-src 'none'\s*(;|$)/);
  expect(csp, what).toMatch(/(^|;)\s*frame-ancestors 'none'\s*(;|$)/);
  expect(csp, what).toMatch(/(^|;)\s*form-action 'self'\s*(;|$)/);
  expect(csp, what).not.toContain("unsafe-inline");
  expect(csp, what).not.toContain("script-src");
  expect(h.get("X-Frame-Options"), what).toBe("DENY");
  expect(h.get("Cache-Control"), what).toBe("no-store");
  expect(h.get("Referrer-Policy"), what).toBe("no-referrer");
  expect(h.get("X-Content-Type-Options"), what).toBe("nosniff");
  expect(h.get("Content-Type"), what).toMatch(/^text\/html/);
  expect(answer.html.startsWith("<!doctype html>"), `${what}: ${answer.html.slice(0, 80)}`).toBe(true);
}

describe("console sign-in", () => {
  it("signs in with ADMIN_TOKEN: a signed, HttpOnly, SameSite=Strict, Secure cookie on /console for 8 hours; the token appears nowhere", async () => {
    const t = T0 + 10 * HOUR;
    const form = await web("GET", "/console/sign-in", { now: t });
    expect(form.status).toBe(200);
    expect(form.html).toMatch(/<label[^>]*for="token"/);
    expect(cookiePair(form, "console_session")).toBeUndefined();
    const login = cookieLine(form, "console_login")!;
    expect(login).toMatch(/;\s*HttpOnly/i);
    expect(login).toMatch(/;\s*SameSite=Strict/i);
    expect(login).toMatch(/;\s*Path=\/console(;|$)/);

    const s = await signIn(t, { name: "alice" });
    expect(s.answer.location).toBe("/console");
    const line = s.setCookie;
    expect(line).toMatch(/;\s*HttpOnly/i);
    expect(line).toMatch(/;\s*SameSite=Strict/i);
    expect(line).toMatch(/;\s*Secure/i);
    expect(line).toMatch(/;\s*Path=\/console(;|$)/);
    expect(line).toMatch(/;\s*Max-Age=28800(;|$)/);
    // The sign-in form's cookie is spent.
    expect(cookieLine(s.answer, "console_login")).toMatch(/Max-Age=0/);

    // Signed, carries its expiry, and never the token (nor any encoding of it).
    const value = s.cookie.split("=").slice(1).join("=");
    const [payload, mac] = value.split(".");
    expect(mac).toMatch(/^[A-Za-z0-9_-]{43}$/);
    const claims = JSON.parse(atob(payload.replace(/-/g, "+").replace(/_/g, "/")));
    expect(claims.exp).toBe(t + SESSION_MS);
    expect(claims.op).toBe("alice");
    for (const text of [s.setCookie, s.answer.html, s.answer.location ?? "", JSON.stringify(claims)]) {
      expect(text).not.toContain(ADMIN);
      expect(text).not.toContain(btoa(ADMIN).replace(/=+$/, ""));
    }

    const overview = await page(s, "/console", t + 1000);
    expect(overview.html).toContain("Incident overview");
    expect(overview.html).not.toContain(ADMIN);
    expect(overview.html).toContain("alice");

    // A cookie whose signed value was changed (here: a later expiry) is no session.
    const forged = btoa(JSON.stringify({ ...claims, exp: claims.exp + 100 * HOUR }))
      .replace(/=+$/, "")
      .replace(/\+/g, "-")
      .replace(/\//g, "_");
    const tampered = await web("GET", "/console", { now: t + 1000, cookies: [`console_session=${forged}.${mac}`] });
    expect(tampered.status).toBe(303);
    expect(tampered.location).toBe("/console/sign-in");

    // Over plain http (local development) the cookie cannot be Secure, or the browser would drop it.
    const local = await signIn(t, { origin: "http://engine.test" });
    expect(local.setCookie).not.toMatch(/Secure/i);
    expect(local.setCookie).toMatch(/HttpOnly/i);
  });

  it("a wrong token is a 401 page without a cookie; a sign-in without its form token is refused", async () => {
    const t = T0 + 11 * HOUR;
    const form = await web("GET", "/console/sign-in", { now: t });
    const login = cookiePair(form, "console_login")!;
    const csrf = field(form.html, "csrf");
    const wrong = await web("POST", "/console/sign-in", {
      now: t,
      cookies: [login],
      form: { token: `${ADMIN}x`, csrf },
    });
    expect(wrong.status).toBe(401);
    expect(wrong.cookies).toEqual([]);
    expect(wrong.html).toMatch(/not valid/i);
    expect(wrong.html).not.toContain(`${ADMIN}x`);
    expect(wrong.html).not.toContain(ADMIN);
    // The page offers the form again, with the same form token (so no new cookie is needed).
    expect(field(wrong.html, "csrf")).toBe(csrf);

    for (const [what, opts] of [
      ["no form token", { cookies: [login], form: { token: ADMIN } }],
      ["a made-up form token", { cookies: [login], form: { token: ADMIN, csrf: "A".repeat(43) } }],
      ["no form cookie", { form: { token: ADMIN, csrf } }],
    ] as const) {
      const r = await web("POST", "/console/sign-in", { now: t, ...opts });
      expect(r.status, what).toBe(403);
      expect(cookiePair(r, "console_session"), what).toBeUndefined();
    }
    // A body that is not a form is refused too.
    const json = await web("POST", "/console/sign-in", {
      now: t,
      cookies: [login],
      headers: { "Content-Type": "text/plain" },
      form: { token: ADMIN, csrf },
    });
    expect(json.status).toBe(400);
    expect(cookiePair(json, "console_session")).toBeUndefined();
    // A name that is not printable ASCII is refused, without a session.
    const badName = await web("POST", "/console/sign-in", {
      now: t,
      cookies: [login],
      form: { token: ADMIN, csrf, name: "al\u0000ice" },
    });
    expect(badName.status).toBe(400);
    expect(cookiePair(badName, "console_session")).toBeUndefined();
  });

  it("with no ADMIN_TOKEN configured the console is closed; rotating the token ends every session", async () => {
    const t = T0 + 12 * HOUR;
    const closed = withEnv({ ADMIN_TOKEN: undefined });
    const form = await web("GET", "/console/sign-in", { now: t, fetcher: closed });
    expect(form.status).toBe(401);
    expect(form.html).toMatch(/ADMIN_TOKEN is not configured/);
    expect(form.cookies).toEqual([]);
    const post = await web("POST", "/console/sign-in", { now: t, fetcher: closed, form: { token: "", csrf: "x" } });
    expect(post.status).toBe(401);
    expect(post.cookies).toEqual([]);

    const s = await signIn(t);
    expect((await web("GET", "/console", { now: t, cookies: [s.cookie], fetcher: closed })).location).toBe(
      "/console/sign-in",
    );
    const rotated = withEnv({ ADMIN_TOKEN: "a-new-admin-token" });
    const after = await web("GET", "/console", { now: t, cookies: [s.cookie], fetcher: rotated });
    expect(after.status).toBe(303);
    expect(after.location).toBe("/console/sign-in");
    // The same cookie still works under the token that signed it.
    expect((await web("GET", "/console", { now: t, cookies: [s.cookie] })).status).toBe(200);
  });

  it("signs out: the cookie is cleared (with the form's CSRF token only)", async () => {
    const t = T0 + 13 * HOUR;
    const s = await signIn(t);
    const overview = await page(s, "/console", t);
    const refused = await web("POST", "/console/sign-out", { now: t, cookies: [s.cookie], form: {} });
    expect(refused.status).toBe(403);
    expect(refused.cookies).toEqual([]);
    const out = await web("POST", "/console/sign-out", {
      now: t,
      cookies: [s.cookie],
      form: { csrf: field(overview.html, "csrf") },
    });
    expect(out.status).toBe(303);
    expect(out.location).toBe("/console/sign-in?notice=signed_out");
    expect(cookieLine(out, "console_session")).toMatch(/^console_session=;.*Max-Age=0/);
    expect(cookieLine(out, "console_session")).toMatch(/Path=\/console/);
  });
});

describe("console protection", () => {
  it("pages without a session redirect to sign-in; POSTs without one are refused and change nothing", async () => {
    const t = T0 + 20 * HOUR;
    const id = await pausedAccount(t);
    for (const path of [
      "/console",
      `/console/accounts/${id}`,
      `/console/accounts/${id}/resume`,
      "/console/resets/new",
      "/console/accounts?id=x",
      "/console/nope",
    ]) {
      const r = await web("GET", path, { now: t + MIN });
      expect(r.status, path).toBe(303);
      expect(r.location, path).toBe("/console/sign-in");
    }
    for (const path of [
      `/console/accounts/${id}/resume`,
      `/console/accounts/${id}/refund`,
      "/console/resets",
      "/console/reconciliation",
    ]) {
      const r = await web("POST", path, {
        now: t + MIN,
        form: { csrf: "x", nonce: "n1", reason: "r", entry: "e", amount: "1" },
      });
      expect(r.status, path).toBe(401);
      expect(r.html, path).toMatch(/sign in/i);
    }
    // A cookie that is not a session at all.
    expect((await web("GET", "/console", { now: t + MIN, cookies: ["console_session=garbage"] })).location).toBe(
      "/console/sign-in",
    );
    expect((await account(id, t + 2 * MIN)).body.paused).toBe(true);
    expect(await outboxEvents(id, "account.credits_resumed")).toHaveLength(0);
  });

  it("a POST without its CSRF token, with a wrong one or with another session's is refused with 403 and changes nothing", async () => {
    const t = T0 + 21 * HOUR;
    const id = await pausedAccount(t);
    const a = await signIn(t + MIN);
    const b = await signIn(t + MIN);
    const confirm = await page(a, `/console/accounts/${id}/resume`, t + MIN);
    const other = await page(b, "/console", t + MIN);
    const nonce = field(confirm.html, "nonce");
    expect(field(other.html, "csrf")).not.toBe(field(confirm.html, "csrf"));
    for (const [what, csrf] of [
      ["none", undefined],
      ["empty", ""],
      ["wrong", "A".repeat(43)],
      ["another session's", field(other.html, "csrf")],
      ["truncated", field(confirm.html, "csrf").slice(0, -1)],
    ] as const) {
      const r = await web("POST", `/console/accounts/${id}/resume`, {
        now: t + 2 * MIN,
        cookies: [a.cookie],
        form: { csrf, nonce },
      });
      expect(r.status, what).toBe(403);
      assertLockedDown(r, `403 (${what})`);
      expect(r.html, what).toMatch(/security token/i);
    }
    // The reset and refund forms are guarded the same way.
    expect(
      (await web("POST", "/console/resets", { now: t + 2 * MIN, cookies: [a.cookie], form: { nonce, reason: "x" } }))
        .status,
    ).toBe(403);
    expect(
      (
        await web("POST", `/console/accounts/${id}/refund`, {
          now: t + 2 * MIN,
          cookies: [a.cookie],
          form: { nonce, entry: "e", amount: "1", reason: "x" },
        })
      ).status,
    ).toBe(403);
    expect(
      (await web("POST", "/console/reconciliation", { now: t + 2 * MIN, cookies: [a.cookie], form: {} })).status,
    ).toBe(403);

    expect((await account(id, t + 3 * MIN)).body.paused).toBe(true);
    expect(await outboxEvents(id, "account.credits_resumed")).toHaveLength(0);
    expect(await outboxEntries(id, "refund")).toHaveLength(0);
    // The very same nonce then works with the right token: nothing was recorded under it.
    const ok = await web("POST", `/console/accounts/${id}/resume`, {
      now: t + 3 * MIN,
      cookies: [a.cookie],
      form: { csrf: field(confirm.html, "csrf"), nonce },
    });
    expect(ok.status).toBe(303);
    expect((await account(id, t + 4 * MIN)).body.paused).toBe(false);
  });

  it("a session ends 8 hours after sign-in, on the request clock", async () => {
    const t = T0 + 30 * HOUR;
    const id = await pausedAccount(t);
    const s = await signIn(t + MIN);
    const confirm = await page(s, `/console/accounts/${id}/resume`, t + MIN);
    expect((await web("GET", "/console", { now: t + MIN + SESSION_MS - 1000, cookies: [s.cookie] })).status).toBe(200);
    const expired = await web("GET", "/console", { now: t + MIN + SESSION_MS, cookies: [s.cookie] });
    expect(expired.status).toBe(303);
    expect(expired.location).toBe("/console/sign-in");
    const post = await web("POST", `/console/accounts/${id}/resume`, {
      now: t + MIN + SESSION_MS,
      cookies: [s.cookie],
      form: { csrf: field(confirm.html, "csrf"), nonce: field(confirm.html, "nonce") },
    });
    expect(post.status).toBe(401);
    expect((await account(id, t + MIN + SESSION_MS)).body.paused).toBe(true);
    expect(await outboxEvents(id, "account.credits_resumed")).toHaveLength(0);
  });

  it("every console answer is a standards-mode page under the lockdown headers", async () => {
    const t = T0 + 40 * HOUR;
    const id = await pausedAccount(t);
    const answers: [string, Answer][] = [];
    const form = await web("GET", "/console/sign-in", { now: t });
    answers.push(["sign-in page", form]);
    answers.push([
      "wrong token",
      await web("POST", "/console/sign-in", {
        now: t,
        cookies: [cookiePair(form, "console_login")!],
        form: { token: "nope", csrf: field(form.html, "csrf") },
      }),
    ]);
    const s = await signIn(t);
    answers.push(["signed in (303)", s.answer]);
    answers.push(["no session (303)", await web("GET", "/console", { now: t })]);
    answers.push(["POST without session", await web("POST", `/console/accounts/${id}/resume`, { now: t, form: {} })]);
    answers.push(["overview", await page(s, "/console", t)]);
    answers.push(["account", await page(s, `/console/accounts/${id}`, t)]);
    const confirm = await page(s, `/console/accounts/${id}/resume`, t);
    answers.push(["resume confirmation", confirm]);
    answers.push([
      "refund, no such entry",
      await web("GET", `/console/accounts/${id}/refund?entry=nope`, { now: t, cookies: [s.cookie] }),
    ]);
    answers.push(["reset form", await page(s, "/console/resets/new", t)]);
    answers.push([
      "reset, no reason",
      await web("GET", "/console/resets/confirm?reason=", { now: t, cookies: [s.cookie] }),
    ]);
    answers.push([
      "bad account id",
      await web("GET", "/console/accounts?id=%20bad%20id", { now: t, cookies: [s.cookie] }),
    ]);
    answers.push(["search redirect", await web("GET", `/console/accounts?id=${id}`, { now: t, cookies: [s.cookie] })]);
    answers.push([
      "403",
      await web("POST", `/console/accounts/${id}/resume`, { now: t, cookies: [s.cookie], form: { nonce: "n" } }),
    ]);
    answers.push(["404", await web("GET", "/console/nope", { now: t, cookies: [s.cookie] })]);
    answers.push([
      "405-ish",
      await web("POST", "/console", { now: t, cookies: [s.cookie], form: { csrf: field(confirm.html, "csrf") } }),
    ]);
    answers.push([
      "resumed (303)",
      await web("POST", `/console/accounts/${id}/resume`, {
        now: t,
        cookies: [s.cookie],
        form: { csrf: field(confirm.html, "csrf"), nonce: field(confirm.html, "nonce") },
      }),
    ]);
    answers.push([
      "sign-out",
      await web("POST", "/console/sign-out", {
        now: t,
        cookies: [s.cookie],
        form: { csrf: field(confirm.html, "csrf") },
      }),
    ]);
    for (const [what, answer] of answers) assertLockedDown(answer, what);
    expect(answers.find(([w]) => w === "404")![1].status).toBe(404);
    expect(answers.find(([w]) => w === "bad account id")![1].status).toBe(400);
    expect(answers.find(([w]) => w === "search redirect")![1].location).toBe(`/console/accounts/${id}`);
  });
});

describe("console actions", () => {
  it("resume: a confirmation screen, then one effect under a double submit, recorded with the operator's name", async () => {
    const t = T0 + 50 * HOUR;
    const id = await pausedAccount(t);
    const s = await signIn(t + MIN, { name: "alice" });
    const accountPage = await page(s, `/console/accounts/${id}`, t + MIN);
    expect(accountPage.html).toMatch(/data-testid="account-paused">\s*Paused/);
    expect(accountPage.html).toContain(`href="/console/accounts/${id}/resume"`);
    const confirm = await page(s, `/console/accounts/${id}/resume`, t + MIN);
    expect(confirm.html).toMatch(/Resume credit spending/);
    expect(confirm.html).toMatch(/<button[^>]*type="submit"[^>]*>Confirm/);
    // The GET did nothing.
    expect((await account(id, t + MIN)).body.paused).toBe(true);

    const form = { csrf: field(confirm.html, "csrf"), nonce: field(confirm.html, "nonce") };
    const [first, second] = await Promise.all([
      web("POST", `/console/accounts/${id}/resume`, { now: t + 2 * MIN, cookies: [s.cookie], form }),
      web("POST", `/console/accounts/${id}/resume`, { now: t + 2 * MIN, cookies: [s.cookie], form }),
    ]);
    const third = await web("POST", `/console/accounts/${id}/resume`, { now: t + 3 * MIN, cookies: [s.cookie], form });
    for (const r of [first, second, third]) {
      expect(r.status).toBe(303);
      expect(r.location).toBe(`/console/accounts/${id}?notice=resumed`);
    }
    const resumed = await outboxEvents(id, "account.credits_resumed");
    expect(resumed).toHaveLength(1);
    expect(resumed[0].data).toEqual({ operator: "alice" });
    expect((await account(id, t + 3 * MIN)).body.paused).toBe(false);
    const after = await page(s, `/console/accounts/${id}?notice=resumed`, t + 3 * MIN);
    expect(after.html).toMatch(/role="status"[^>]*>[^<]*Credit spending was resumed/);
    expect(after.html).toMatch(/data-testid="account-paused">\s*Not paused/);

    // A resume of an account that is not paused says so, and records nothing.
    const again = await page(s, `/console/accounts/${id}/resume`, t + 4 * MIN);
    expect(again.html).toMatch(/not paused/i);
    const noop = await web("POST", `/console/accounts/${id}/resume`, {
      now: t + 4 * MIN,
      cookies: [s.cookie],
      form: { csrf: field(again.html, "csrf"), nonce: field(again.html, "nonce") },
    });
    expect(noop.location).toBe(`/console/accounts/${id}?notice=not_paused`);
    expect(await outboxEvents(id, "account.credits_resumed")).toHaveLength(1);
  });

  it("refund against a ledger charge: the amount defaults to what is left, a double submit refunds once, refusals are readable", async () => {
    const t = T0 + 60 * HOUR;
    const id = uid("crefund");
    expect((await addCredits(id, { kind: "purchase", amount: 20 * C }, { now: t })).status).toBe(201);
    expect((await consume(id, { product: "codex", cost: 5 * C }, { now: t + 1000 })).status).toBe(200); // 2 from the window, 3 from the grant
    const rows = await waitFor(
      () => d1Rows(id),
      (r) => r.some((e) => e.kind === "charge" && e.layer === "grant") && r.some((e) => e.kind === "usage"),
    );
    const charge = rows.find((e) => e.kind === "charge" && e.layer === "grant")!;
    const grantEntry = rows.find((e) => e.kind === "grant")!;
    expect(charge.amount).toBe(3 * C);
    // The window paid 2 credits of that request: in D1 that is the hour's usage rollup (SPEC §7), not a charge row.
    const usage = rows.find((e) => e.kind === "usage")!;
    expect(usage).toMatchObject({ amount: 2 * C, layer: "window", usage_count: 1 });
    const windowCharges = (await outboxEntries(id, "charge")).filter((e) => e.layer === "window");
    expect(windowCharges.map((e) => e.amount)).toEqual([2 * C]);
    expect(rows.map((e) => e.id)).not.toContain(windowCharges[0].id);

    const s = await signIn(t + MIN);
    const accountPage = await page(s, `/console/accounts/${id}`, t + MIN);
    expect(accountPage.html).toContain(`href="/console/accounts/${id}/refund?entry=${charge.id}"`);
    expect(accountPage.html).not.toContain(`refund?entry=${grantEntry.id}`);
    // The window's usage is the plan's allowance, not credits: its rollup is listed without a refund offer, and neither
    // the rollup nor the window charge it sums is an entry a refund can name.
    expect(accountPage.html).toContain(`data-entry="${usage.id}"`);
    expect(accountPage.html).not.toContain(`refund?entry=${encodeURIComponent(usage.id)}`);
    for (const entry of [usage.id, windowCharges[0].id])
      expect(
        (
          await web("GET", `/console/accounts/${id}/refund?entry=${encodeURIComponent(entry)}`, {
            now: t + MIN,
            cookies: [s.cookie],
          })
        ).status,
        entry,
      ).toBe(404);
    // A window charge settled before the rollups (migration 0005 keeps those rows as they were) is offered no refund
    // either; opened directly, its confirmation screen warns.
    const legacy = uid("clegacy");
    const legacyCharge = `${legacy}-window-charge`;
    await ledgerFor(env, legacy)
      .prepare(
        `INSERT INTO ledger (id, account_id, kind, amount, layer, product, created_at, settled_at)
         VALUES (?, ?, 'charge', ?, 'window', 'codex', ?, ?)`,
      )
      .bind(legacyCharge, legacy, 2 * C, t, t)
      .run();
    const legacyPage = await page(s, `/console/accounts/${legacy}`, t + MIN);
    expect(legacyPage.html).toContain(`data-entry="${legacyCharge}"`);
    expect(legacyPage.html).not.toContain(`refund?entry=${legacyCharge}`);
    expect((await page(s, `/console/accounts/${legacy}/refund?entry=${legacyCharge}`, t + MIN)).html).toMatch(
      /covered by the plan(&#39;|')s window, not by credits/,
    );

    const confirm = await page(s, `/console/accounts/${id}/refund?entry=${charge.id}`, t + MIN);
    expect(field(confirm.html, "amount")).toBe("3");
    expect(field(confirm.html, "entry")).toBe(charge.id);
    expect(confirm.html).toMatch(/<label[^>]*for="refund-amount"/);
    expect(confirm.html).toMatch(/<label[^>]*for="refund-reason"/);
    const before = (await account(id, t + MIN)).body.credits.balance;

    const form = {
      csrf: field(confirm.html, "csrf"),
      nonce: field(confirm.html, "nonce"),
      entry: charge.id,
      amount: "3",
      reason: "double charge",
    };
    const [first, second] = await Promise.all([
      web("POST", `/console/accounts/${id}/refund`, { now: t + 2 * MIN, cookies: [s.cookie], form }),
      web("POST", `/console/accounts/${id}/refund`, { now: t + 2 * MIN, cookies: [s.cookie], form }),
    ]);
    for (const r of [first, second]) {
      expect(r.status, r.html.slice(0, 400)).toBe(303);
      expect(r.location).toBe(`/console/accounts/${id}?notice=refunded`);
    }
    const refunds = await outboxEntries(id, "refund");
    expect(refunds).toHaveLength(1);
    expect(refunds[0].amount).toBe(3 * C);
    expect(JSON.parse(refunds[0].note!)).toEqual({ reason: "double charge", refunds: charge.id });
    expect((await account(id, t + 2 * MIN)).body.credits.balance).toBe(before + 3 * C);

    // More than is left: the account object refuses, and the page says why.
    const more = await web("POST", `/console/accounts/${id}/refund`, {
      now: t + 3 * MIN,
      cookies: [s.cookie],
      form: { ...form, nonce: crypto.randomUUID(), amount: "0.000001" },
    });
    expect(more.status).toBe(409);
    expect(more.html).toMatch(/role="alert"/);
    expect(more.html).toMatch(/more than is left to refund/);
    expect(more.html).toMatch(/charged 3\.00 credits; 3\.00 already refunded/);
    // An entry this account does not have.
    const missing = await web("POST", `/console/accounts/${id}/refund`, {
      now: t + 3 * MIN,
      cookies: [s.cookie],
      form: { ...form, nonce: crypto.randomUUID(), entry: "no-such-entry", amount: "1" },
    });
    expect(missing.status).toBe(404);
    expect(missing.html).toMatch(/no charge or write-off with that entry/i);
    // An amount that is not one.
    const bad = await web("POST", `/console/accounts/${id}/refund`, {
      now: t + 3 * MIN,
      cookies: [s.cookie],
      form: { ...form, nonce: crypto.randomUUID(), amount: "-1" },
    });
    expect(bad.status).toBe(400);
    expect(await outboxEntries(id, "refund")).toHaveLength(1);
    expect((await account(id, t + 3 * MIN)).body.credits.balance).toBe(before + 3 * C);

    // The confirmation screen refuses entries that are not a charge or write-off of this account.
    expect(
      (
        await web("GET", `/console/accounts/${id}/refund?entry=${grantEntry.id}`, {
          now: t + 3 * MIN,
          cookies: [s.cookie],
        })
      ).status,
    ).toBe(404);
    expect(
      (
        await web("GET", `/console/accounts/other-${id}/refund?entry=${charge.id}`, {
          now: t + 3 * MIN,
          cookies: [s.cookie],
        })
      ).status,
    ).toBe(404);
    // Once the refund is in the ledger, nothing is left to offer.
    await waitFor(
      () => d1Rows(id),
      (r) => r.some((e) => e.kind === "refund"),
    );
    const spent = await page(s, `/console/accounts/${id}/refund?entry=${charge.id}`, t + 4 * MIN);
    expect(spent.html).toMatch(/Nothing is left to refund/);
    const ledgerPage = await page(s, `/console/accounts/${id}`, t + 4 * MIN);
    expect(ledgerPage.html).toMatch(/data-testid="refunded">3\.00</);
  });

  it("global reset: a scope and a reason, a confirmation, one reset under a double submit, audited as the console", async () => {
    const t = T0 + 400 * 24 * HOUR; // after everything else in this file: the reset forgives go/codex windows from here on
    const reason = `console test ${uid("why")}`;
    const s = await signIn(t);
    const form = await page(s, "/console/resets/new", t);
    expect(form.html).toMatch(/<input[^>]*type="checkbox"[^>]*name="products"[^>]*value="codex"/);
    expect(form.html).toMatch(/<input[^>]*type="checkbox"[^>]*name="plans"[^>]*value="go"/);
    expect(form.html).toMatch(/<form[^>]*method="get"[^>]*action="\/console\/resets\/confirm"/);

    const noReason = await web("GET", "/console/resets/confirm?products=codex&reason=", {
      now: t,
      cookies: [s.cookie],
    });
    expect(noReason.status).toBe(400);
    expect(noReason.html).toMatch(/reason/i);
    const badScope = await web("GET", "/console/resets/confirm?products=nope&reason=x", {
      now: t,
      cookies: [s.cookie],
    });
    expect(badScope.status).toBe(400);

    const confirm = await page(
      s,
      `/console/resets/confirm?products=codex&plans=go&plans=plus&bankedResets=keep&reason=${encodeURIComponent(reason)}`,
      t,
    );
    expect(confirm.html).toMatch(/data-testid="reset-scope"[^>]*>[^<]*codex/);
    expect(confirm.html).toContain("go, plus");
    const post = {
      csrf: field(confirm.html, "csrf"),
      nonce: field(confirm.html, "nonce"),
      products: ["codex"],
      plans: ["go", "plus"],
      bankedResets: "keep",
      reason,
    };
    const control = env.RESET_CONTROL.get(env.RESET_CONTROL.idFromName("global")) as DurableObjectStub<ResetControlDO>;
    const mine = async () => (await control.history(500)).filter((r) => r.reason === reason);
    expect(await mine()).toHaveLength(0);

    const [first, second] = await Promise.all([
      web("POST", "/console/resets", { now: t, cookies: [s.cookie], form: post }),
      web("POST", "/console/resets", { now: t, cookies: [s.cookie], form: post }),
    ]);
    for (const r of [first, second]) {
      expect(r.status, r.html.slice(0, 400)).toBe(303);
      expect(r.location).toBe("/console?notice=reset_recorded");
    }
    const recorded = await mine();
    expect(recorded).toHaveLength(1);
    expect(recorded[0]).toMatchObject({
      actor: "console",
      products: ["codex"],
      plans: ["go", "plus"],
      bankedResets: "keep",
      effectiveAt: t,
    });
    const { results } = await env.DB.prepare("SELECT reset_id, actor, scope FROM admin_resets WHERE reason = ?")
      .bind(reason)
      .all<{ reset_id: string; actor: string; scope: string }>();
    expect(results).toEqual([
      {
        reset_id: recorded[0].resetId,
        actor: "console",
        scope: JSON.stringify({ products: ["codex"], plans: ["go", "plus"] }),
      },
    ]);
    // The admin API lists it too, and the overview's history shows it.
    const listed = await call("GET", "/v1/admin/resets");
    expect(listed.body.resets.filter((r: { reason: string }) => r.reason === reason)).toHaveLength(1);
    const overview = await page(s, "/console?notice=reset_recorded", t);
    expect(overview.html).toMatch(/role="status"[^>]*>[^<]*global reset was recorded/);
    expect(overview.html).toContain(reason);

    // The same nonce with another scope is a conflict, shown as such; nothing more is recorded.
    const conflict = await web("POST", "/console/resets", {
      now: t,
      cookies: [s.cookie],
      form: { ...post, plans: ["go"] },
    });
    expect(conflict.status).toBe(409);
    expect(conflict.html).toMatch(/already used/);
    expect(await mine()).toHaveLength(1);
  });
});

describe("console pages", () => {
  it("the overview shows paused accounts, top credit spenders, recent events, drift and the reset history", async () => {
    const t = T0 + 70 * HOUR;
    const id = await pausedAccount(t, "cover");
    // The pause event settles into D1 (the overview reads D1, not the objects).
    await waitFor(
      () => d1Events(id),
      (e) => e.some((x) => x.type === "account.credits_paused"),
      15_000,
    );
    await waitFor(
      () => d1Rows(id),
      (r) => r.filter((e) => e.kind === "charge" && e.layer === "grant").length >= 10,
      15_000,
    );
    const grantSpend = (await d1Rows(id))
      .filter((e) => e.kind === "charge" && e.layer === "grant")
      .reduce((s, e) => s + e.amount, 0);
    const s = await signIn(t + 5 * MIN);
    const overview = await page(s, "/console", t + 5 * MIN);
    const html = overview.html;
    expect(html).toMatch(new RegExp(`data-testid="paused-row"[^]*?href="/console/accounts/${id}"`));
    const hourRow = new RegExp(
      `data-testid="top-hour-row"><td><a href="/console/accounts/${id}">${id}</a></td><td[^>]*>([\\d.,]+)</td>`,
    ).exec(html);
    expect(hourRow?.[1]).toBe((grantSpend / C).toFixed(2));
    expect(html).toMatch(new RegExp(`data-testid="top-day-row"><td><a href="/console/accounts/${id}">`));
    expect(html).toMatch(new RegExp(`data-testid="event-row"[\\s\\S]*?account\\.credits_paused[^]*?${id}`));
    for (const heading of [
      "Paused by the anomaly guard",
      "Top credit spenders",
      "Recent guard and top-up events",
      "Reconciliation drift",
      "Global reset history",
    ])
      expect(html).toContain(heading);
    // Window usage is not credit spend: an account that only used its window is not a spender.
    const windowOnly = uid("cwin");
    expect((await consume(windowOnly, { product: "codex", cost: 1 * C }, { now: t + MIN })).status).toBe(200);
    await waitFor(
      () => d1Rows(windowOnly),
      (r) => r.length > 0,
    );
    expect((await page(s, "/console", t + 5 * MIN)).html).not.toMatch(
      new RegExp(`top-hour-row"><td><a href="/console/accounts/${windowOnly}"`),
    );
    // An hour later the spend has left the hour's list but not the day's.
    const later = (await page(s, "/console", t + 2 * HOUR)).html;
    expect(later).not.toMatch(new RegExp(`top-hour-row"><td><a href="/console/accounts/${id}"`));
    expect(later).toMatch(new RegExp(`top-day-row"><td><a href="/console/accounts/${id}"`));

    // A reconciliation run from the console is recorded and shown.
    const run = await web("POST", "/console/reconciliation", {
      now: t + 5 * MIN,
      cookies: [s.cookie],
      form: { csrf: field(html, "csrf") },
    });
    expect(run.status).toBe(303);
    expect(run.location).toBe("/console?notice=reconciled#drift");
    const checked = await page(s, "/console?notice=reconciled", t + 5 * MIN);
    expect(checked.html).toMatch(/data-testid="drift-summary"[^>]*>[^<]*checked \d+ accounts?/);
  });

  it("the account page shows the summary, holds, the ledger newest first with paging, and the account's events", async () => {
    const t = T0 + 80 * HOUR;
    const id = await pausedAccount(t, "cacct");
    expect(
      (await call("POST", `/v1/accounts/${id}/holds`, { product: "sora", cost: 500_000 }, { now: t + MIN })).status,
    ).toBe(201);
    const settled = await waitFor(
      () => d1Rows(id),
      (r) => r.length >= 12,
      15_000,
    );
    await waitFor(
      () => d1Events(id),
      (e) => e.some((x) => x.type === "account.credits_paused"),
      15_000,
    );
    const s = await signIn(t + 2 * MIN);
    const first = await page(s, `/console/accounts/${id}?limit=5`, t + 2 * MIN);
    expect(first.html).toMatch(/data-testid="account-plan">go</);
    expect(first.html).toMatch(/data-testid="account-balance">[\d.,]+</);
    expect(first.html).toMatch(/data-testid="hold-row"/);
    expect(first.html).toMatch(/data-testid="account-event-row"[\s\S]*?account\.credits_paused/);
    const ids = (h: string) => [...h.matchAll(/data-testid="ledger-row" data-entry="([^"]+)"/g)].map((m) => m[1]);
    const page1 = ids(first.html);
    expect(page1).toHaveLength(5);
    const { results } = await ledgerFor(env, id)
      .prepare("SELECT id FROM ledger WHERE account_id = ? ORDER BY seq DESC")
      .bind(id)
      .all<{ id: string }>();
    expect(page1).toEqual(results.slice(0, 5).map((r) => r.id));
    const next = /href="(\/console\/accounts\/[^"]*cursor=\d+[^"]*)"/.exec(first.html)?.[1].replace(/&amp;/g, "&");
    expect(next).toBeDefined();
    const second = await page(s, next!, t + 2 * MIN);
    expect(ids(second.html)).toEqual(results.slice(5, 10).map((r) => r.id));
    expect(settled.length).toBeGreaterThanOrEqual(12);
    // An account never written reads as a fresh one, and says it has no ledger yet.
    const fresh = await page(s, `/console/accounts/${uid("cnew")}`, t + 2 * MIN);
    expect(fresh.html).toMatch(/No ledger entries/);
  });
});
