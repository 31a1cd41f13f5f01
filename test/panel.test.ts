import { describe, expect, it } from "vitest";
import { exports } from "cloudflare:workers";
import { account, addCredits, call, consume, CREDIT, T0, uid } from "./helpers";

const DAY = 86_400_000;

async function panelLink(id: string, now: number) {
  const r = await call("POST", `/v1/accounts/${id}/panel-token`, undefined, { now });
  expect(r.status).toBe(200);
  return r.body as { token: string; url: string; expiresAt: string };
}

async function page(token: string, now: number, query = "") {
  const res = await exports.default.fetch(`https://engine.test/panel?token=${encodeURIComponent(token)}${query}`, { headers: { "X-Test-Now": String(now) } });
  return { status: res.status, html: await res.text() };
}

describe("usage panel", () => {
  it("shows the account's windows, credits and banked resets, and only that account", async () => {
    const a = uid();
    const b = uid();
    await consume(a, { product: "codex", cost: 1_500_000 }, { now: T0 });
    await addCredits(a, { amount: 7 * CREDIT, kind: "purchase" }, { now: T0 });
    await consume(b, { product: "codex", cost: 500_000 }, { now: T0 });
    const link = await panelLink(a, T0 + 1000);
    expect(link.url).toContain("/panel?token=");
    expect(Date.parse(link.expiresAt)).toBe(T0 + 1000 + 15 * 60 * 1000);
    const { status, html } = await page(link.token, T0 + 2000);
    expect(status).toBe(200);
    expect(html).toContain(`<strong>${a}</strong>`);
    expect(html).not.toContain(b);
    expect(html).toMatch(/data-testid="codex-fiveHour-pct">75% used/);
    expect(html).toMatch(/data-testid="balance">7\.00</);
    expect(html).toContain("<svg");
    expect(html).toContain(".bar>div{");
  });

  it("refuses a tampered, foreign or expired token with a 401 page", async () => {
    const a = uid();
    const link = await panelLink(a, T0);
    const [payload, mac] = link.token.split(".");
    const forged = btoa(JSON.stringify({ a: "someone-else", exp: 9_999_999_999 })).replace(/=+$/, "").replace(/\+/g, "-").replace(/\//g, "_");
    expect((await page(`${forged}.${mac}`, T0)).status).toBe(401);
    expect((await page(`${payload}.${mac.slice(0, -2)}AA`, T0)).status).toBe(401);
    expect((await page(link.token, T0 + 16 * 60 * 1000)).status).toBe(401);
    expect((await page("", T0)).status).toBe(401);
  });

  it("replays the same link for the same Idempotency-Key", async () => {
    const a = uid();
    const first = await call("POST", `/v1/accounts/${a}/panel-token`, undefined, { key: "panel-k", now: T0 });
    const again = await call("POST", `/v1/accounts/${a}/panel-token`, undefined, { key: "panel-k", now: T0 + 5000 });
    expect(again.body.token).toBe(first.body.token);
    expect(again.headers.get("Idempotent-Replayed")).toBe("true");
  });

  it("redeems a banked reset through the form and shows the limit prompt when a window is full", async () => {
    const a = uid();
    await consume(a, { product: "codex", cost: CREDIT }, { now: T0 });
    const later = T0 + 8 * DAY;
    await consume(a, { product: "codex", cost: 2 * CREDIT }, { now: later });
    expect((await account(a, later)).body.bankedResets.available).toBe(1);
    const link = await panelLink(a, later);
    const before = await page(link.token, later);
    expect(before.html).toContain('data-testid="limit-hit"');
    const nonce = /name="nonce" value="([^"]+)"/.exec(before.html)![1];
    const form = new URLSearchParams({ token: link.token, product: "codex", nonce });
    const res = await exports.default.fetch("https://engine.test/panel/resets", {
      method: "POST", body: form, headers: { "Content-Type": "application/x-www-form-urlencoded", "X-Test-Now": String(later) }, redirect: "manual",
    });
    expect(res.status).toBe(303);
    expect(res.headers.get("Location")).toContain("notice=reset_used");
    const after = (await account(a, later)).body;
    expect(after.bankedResets.available).toBe(0);
    expect(after.products.codex.fiveHour.used).toBe(0);
  });
});

describe("usage panel hardening", () => {
  /** An account with a full codex window and one banked reset, and a live panel link for it. */
  async function withBankedReset() {
    const a = uid();
    const later = T0 + 8 * DAY;
    await consume(a, { product: "codex", cost: CREDIT }, { now: T0 });
    await consume(a, { product: "codex", cost: 2 * CREDIT }, { now: later });
    const link = await panelLink(a, later);
    return { a, later, token: link.token };
  }
  const post = (body: BodyInit, contentType: string | null, now: number) =>
    exports.default.fetch("https://engine.test/panel/resets", {
      method: "POST", body, headers: { ...(contentType === null ? {} : { "Content-Type": contentType }), "X-Test-Now": String(now) }, redirect: "manual",
    });
  /** The response's Content-Security-Policy as directive → sources. */
  const csp = (res: Response) =>
    new Map((res.headers.get("Content-Security-Policy") ?? "").split(";").map((d) => d.trim().split(/\s+/)).filter((d) => d[0]).map(([name, ...v]) => [name.toLowerCase(), v]));

  it("answers a malformed reset form with a 400 HTML page and changes nothing", async () => {
    const { a, later, token } = await withBankedReset();
    const before = (await account(a, later)).body;
    expect(before.bankedResets.available).toBe(1);
    const fields = `token=${encodeURIComponent(token)}&product=codex&nonce=n-bad-1`;
    const multipart = `--x\r\nContent-Disposition: form-data; name="token"\r\n\r\n${token}\r\n--x\r\nContent-Disposition: form-data; name="product"\r\n\r\ncodex\r\n--x\r\nContent-Disposition: form-data; name="nonce"\r\n\r\nn-bad-1\r\n--x--\r\n`;
    const cases: [string, BodyInit, string | null][] = [
      ["multipart without a boundary", multipart, "multipart/form-data"],
      ["multipart with an empty boundary", multipart, "multipart/form-data; boundary="],
      ["multipart with another boundary", multipart, "multipart/form-data; boundary=y"],
      ["multipart cut short", multipart.slice(0, 80), "multipart/form-data; boundary=x"],
      ["a form sent as text/plain", fields, "text/plain"],
      ["a form sent as JSON", JSON.stringify({ token, product: "codex", nonce: "n-bad-1" }), "application/json"],
      ["a form with no content type", new TextEncoder().encode(fields), null],
      ["garbage fields with a good token", `token=${encodeURIComponent(token)}&product=%ff%zz&nonce=%%%00`, "application/x-www-form-urlencoded"],
      ["a good token with no nonce", `token=${encodeURIComponent(token)}&product=codex`, "application/x-www-form-urlencoded"],
    ];
    for (const [what, body, type] of cases) {
      const res = await post(body, type, later);
      const html = await res.text();
      expect(res.status, what).toBe(400);
      expect(res.headers.get("Content-Type"), what).toMatch(/^text\/html/);
      expect(html, what).toMatch(/^<!doctype html>/i);
      expect(html, what).toContain('role="alert"');
    }
    // garbage that carries no token is an invalid link, still as a page
    const garbage = await post("%%%&&==\u0000\u00ff&token", "application/x-www-form-urlencoded", later);
    expect(garbage.status).toBe(401);
    expect(garbage.headers.get("Content-Type")).toMatch(/^text\/html/);
    expect((await account(a, later)).body).toEqual(before);
    // the same link and nonce still work afterwards: nothing was used up
    const ok = await post(fields, "application/x-www-form-urlencoded", later);
    expect(ok.status).toBe(303);
    expect(ok.headers.get("Location")).toContain("notice=reset_used");
  });

  it("shows a notice only for a known notice name, never one inherited from Object", async () => {
    const { token, later } = await withBankedReset();
    for (const notice of ["constructor", "__proto__", "toString", "hasOwnProperty", "valueOf", "unknown"]) {
      const { status, html } = await page(token, later, `&notice=${notice}`);
      expect(status, notice).toBe(200);
      expect(html, notice).not.toContain('class="notice"');
    }
    const known = await page(token, later, "&notice=no_banked_reset");
    expect(known.html).toMatch(/<section class="notice" role="status">No banked reset is available\.<\/section>/);
  });

  it("every panel response is a standards-mode page that no other site can frame", async () => {
    const { token, later } = await withBankedReset();
    const get = (q: string) => exports.default.fetch(`https://engine.test/panel${q}`, { headers: { "X-Test-Now": String(later) } });
    const responses: [string, Response][] = [
      ["the page", await get(`?token=${encodeURIComponent(token)}`)],
      ["the page with a notice", await get(`?token=${encodeURIComponent(token)}&notice=reset_used`)],
      ["a bad link", await get("?token=nope")],
      ["no link", await get("")],
      ["a bad query", await get(`?token=${encodeURIComponent(token)}&notice=${"x".repeat(41)}`)],
      ["the form with a bad link", await post("token=nope&product=codex&nonce=n1", "application/x-www-form-urlencoded", later)],
      ["a malformed form", await post("x", "multipart/form-data", later)],
      ["the form", await post(`token=${encodeURIComponent(token)}&product=codex&nonce=n-frame-1`, "application/x-www-form-urlencoded", later)],
    ];
    const statuses = responses.map(([, r]) => r.status);
    expect(statuses).toEqual([200, 200, 401, 401, 400, 401, 400, 303]);
    for (const [what, res] of responses) {
      expect(res.headers.get("X-Frame-Options"), what).toBe("DENY");
      const policy = csp(res);
      expect(policy.get("frame-ancestors"), what).toEqual(["'none'"]);
      expect(policy.get("default-src"), what).toEqual(["'none'"]);
      expect(policy.get("form-action"), what).toEqual(["'self'"]);
      expect(policy.get("base-uri"), what).toEqual(["'none'"]);
      expect(policy.has("script-src"), what).toBe(false);
      const html = await res.text();
      if (!res.headers.get("Content-Type")?.startsWith("text/html")) continue;
      expect(html, what).toMatch(/^<!doctype html>/i);
      // everything the page needs is inline and allowed by the policy: no scripts, no fetched resources
      expect(html, what).not.toMatch(/<script|<link\b|<img|<iframe|<object|<embed|\ssrc=|url\(/i);
      if (/<style|\sstyle=/.test(html)) expect(policy.get("style-src"), what).toEqual(["'unsafe-inline'"]);
    }
  });
});

describe("openapi", () => {
  it("documents every route", async () => {
    const doc = (await call("GET", "/openapi.json", undefined, { token: null })).body;
    const paths = Object.keys(doc.paths);
    for (const p of [
      "/v1/accounts/{id}", "/v1/accounts/{id}/consume", "/v1/accounts/{id}/holds", "/v1/accounts/{id}/holds/{holdId}/settle",
      "/v1/accounts/{id}/holds/{holdId}/release", "/v1/accounts/{id}/resets", "/v1/accounts/{id}/credits", "/v1/accounts/{id}/plan",
      "/v1/accounts/{id}/auto-top-up", "/v1/accounts/{id}/spend-cap", "/v1/catalog", "/v1/accounts/{id}/ledger", "/v1/accounts/{id}/panel-token",
      "/v1/admin/resets", "/v1/admin/accounts/{id}/resume", "/v1/admin/accounts/{id}/refunds", "/v1/admin/reconciliation", "/health", "/panel",
    ]) expect(paths).toContain(p);
  });

  it("serves an API reference page at /docs built from /openapi.json", async () => {
    const res = await exports.default.fetch("https://engine.test/docs");
    expect(res.status).toBe(200);
    expect(res.headers.get("Content-Type")).toContain("text/html");
    expect(await res.text()).toContain("/openapi.json");
  });
});
