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
