import { describe, expect, it } from "vitest";
import { env, exports } from "cloudflare:workers";
import { createApp } from "../worker/app";
import { ledgerFor } from "../worker/settlement/shards";
import { account, addCredits, call, consume, CREDIT, HOUR, setPlan, T0, uid } from "./helpers";
import { ledgerAll, waitFor } from "./settle-helpers";
import { texts, unescapeHtml } from "./web-helpers";

const DAY = 86_400_000;
const MINUTE = 60_000;

async function panelLink(id: string, now: number) {
  const r = await call("POST", `/v1/accounts/${id}/panel-token`, undefined, { now });
  expect(r.status).toBe(200);
  return r.body as { token: string; url: string; expiresAt: string };
}

async function page(token: string, now: number, query = "") {
  const res = await exports.default.fetch(`https://engine.test/panel?token=${encodeURIComponent(token)}${query}`, {
    headers: { "X-Test-Now": String(now) },
  });
  return { status: res.status, html: await res.text() };
}

/** The panel rendered by the app with other configuration (BILLING_URL, PANEL_BASE_URL) than the test worker's. */
async function pageWith(vars: Partial<Env>, token: string, now: number, query = "") {
  const res = await createApp().request(
    `https://engine.test/panel?token=${encodeURIComponent(token)}${query}`,
    { headers: { "X-Test-Now": String(now) } },
    { ...env, ...vars },
  );
  return { status: res.status, html: await res.text() };
}

/** The decoded `attr` of the first element with `data-testid="<id>"`, or null. */
function attrOf(html: string, id: string, attr: string): string | null {
  const tag = new RegExp(`<[a-zA-Z][^>]*\\sdata-testid="${id}"[^>]*>`).exec(html)?.[0];
  const value = tag ? new RegExp(`\\s${attr}="([^"]*)"`).exec(tag)?.[1] : undefined;
  return value === undefined ? null : unescapeHtml(value);
}

const BILLING = { BILLING_URL: "https://billing.test/buy?src=panel", PANEL_BASE_URL: "" };

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
    const forged = btoa(JSON.stringify({ a: "someone-else", exp: 9_999_999_999 }))
      .replace(/=+$/, "")
      .replace(/\+/g, "-")
      .replace(/\//g, "_");
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
      method: "POST",
      body: form,
      headers: { "Content-Type": "application/x-www-form-urlencoded", "X-Test-Now": String(later) },
      redirect: "manual",
    });
    expect(res.status).toBe(303);
    expect(res.headers.get("Location")).toContain("notice=reset_used");
    const after = (await account(a, later)).body;
    expect(after.bankedResets.available).toBe(0);
    expect(after.products.codex.fiveHour.used).toBe(0);
  });
});

describe("usage panel: limits, credits, holds and activity", () => {
  const holdFor = (id: string, body: unknown, now: number) => call("POST", `/v1/accounts/${id}/holds`, body, { now });
  const spendCap = (id: string, dailyLimit: number | null, now: number) =>
    call("PUT", `/v1/accounts/${id}/spend-cap`, { dailyLimit }, { now });

  it("names the exhausted window and when it resets, and asks for credits with the account and a return URL", async () => {
    const a = uid();
    await consume(a, { product: "codex", cost: 2 * CREDIT }, { now: T0 }); // go: the codex 5-hour window is 2 credits
    const now = T0 + 2 * HOUR + 50 * MINUTE;
    const link = await panelLink(a, now - 1000);
    const { status, html } = await pageWith(BILLING, link.token, now);
    expect(status).toBe(200);
    expect(texts(html, "limit")).toEqual(["Codex: your 5-hour limit is used up; it resets at 05:00 UTC (in 2h 10m)."]);
    // the reset time is a <time> element: UTC text, machine-readable instant for the local-time enhancement
    expect(html).toMatch(/<time[^>]*datetime="2026-11-01T05:00:00.000Z"[^>]*>05:00 UTC<\/time>/);
    const href = attrOf(html, "add-credits", "href");
    expect(href).not.toBeNull();
    const url = new URL(href!);
    expect(url.origin + url.pathname).toBe("https://billing.test/buy");
    expect(url.searchParams.get("src")).toBe("panel");
    expect(url.searchParams.get("account")).toBe(a);
    // the return URL is the panel without the link token: the token is a credential and expires in 15 minutes
    expect(url.searchParams.get("return")).toBe("https://engine.test/panel");
    expect(href).not.toContain(link.token);
    expect(href).toContain(`return=${encodeURIComponent("https://engine.test/panel")}`);
    expect(texts(html, "add-credits")).toEqual(["Add credits"]);

    // PANEL_BASE_URL, when set, is where the billing page sends the user back
    const based = await pageWith({ ...BILLING, PANEL_BASE_URL: "https://usage.example.com/" }, link.token, now);
    expect(new URL(attrOf(based.html, "add-credits", "href")!).searchParams.get("return")).toBe(
      "https://usage.example.com/panel",
    );

    // only an http(s) BILLING_URL becomes a link
    for (const bad of ["javascript:alert(1)", "data:text/html,hi", "ftp://billing.test/x", "not a url", ""]) {
      const r = await pageWith({ BILLING_URL: bad }, link.token, now);
      expect(r.status, bad).toBe(200);
      expect(attrOf(r.html, "add-credits", "href"), bad).toBeNull();
      expect(r.html, bad).not.toContain("javascript:");
      expect(texts(r.html, "limit"), bad).toHaveLength(1);
    }

    // the token-less panel, where the billing page returns to, says how to open the panel again
    const back = await pageWith(BILLING, "", now);
    expect(back.status).toBe(401);
    expect(back.html).toContain("Open your usage page again from the product");
  });

  it("asks for credits only when credits would help", async () => {
    const now = T0 + HOUR;
    // credits that cover the product: they pay until the window resets, nothing to buy
    const covered = uid();
    await addCredits(covered, { amount: 5 * CREDIT, kind: "purchase" }, { now: T0 });
    await consume(covered, { product: "codex", cost: 2 * CREDIT }, { now: T0 });
    let html = (await pageWith(BILLING, (await panelLink(covered, now)).token, now)).html;
    expect(texts(html, "limit")[0]).toMatch(/^Codex: your 5-hour limit is used up; it resets at 05:00 UTC/);
    expect(texts(html, "limit-help").join(" ")).toMatch(/credits \(5\.00\) pay for Codex/);
    expect(attrOf(html, "add-credits", "href")).toBeNull();
    expect(html).not.toContain('data-testid="paused"');

    // credits limited to another product do not help this one
    const other = uid();
    await addCredits(
      other,
      { amount: 5 * CREDIT, kind: "promo", expiresAt: new Date(T0 + 30 * DAY).toISOString(), products: ["sora"] },
      { now: T0 },
    );
    await consume(other, { product: "codex", cost: 2 * CREDIT }, { now: T0 });
    html = (await pageWith(BILLING, (await panelLink(other, now)).token, now)).html;
    expect(new URL(attrOf(html, "add-credits", "href")!).searchParams.get("account")).toBe(other);

    // paused by the anomaly guard: a banner, and no add-credits prompt (credits cannot be spent)
    const paused = uid();
    await addCredits(paused, { amount: 100 * CREDIT, kind: "purchase" }, { now: T0 });
    await consume(paused, { product: "codex", cost: 2 * CREDIT }, { now: T0 });
    const denied = await consume(paused, { product: "codex", cost: 60 * CREDIT }, { now: T0 + 1000 });
    expect(denied.body.reason).toBe("credits_paused");
    html = (await pageWith(BILLING, (await panelLink(paused, now)).token, now)).html;
    expect(texts(html, "paused")).toHaveLength(1);
    expect(texts(html, "paused")[0]).toContain("Credit spending is paused for your safety; contact support");
    expect(texts(html, "limit")[0]).toMatch(/^Codex: your 5-hour limit is used up/);
    expect(attrOf(html, "add-credits", "href")).toBeNull();
    expect(html).not.toContain(">Add credits<");

    // paused with no window used up: the banner still shows
    const pausedOnly = uid();
    await addCredits(pausedOnly, { amount: 100 * CREDIT, kind: "purchase" }, { now: T0 });
    expect((await consume(pausedOnly, { product: "codex", cost: 60 * CREDIT }, { now: T0 })).body.reason).toBe(
      "credits_paused",
    );
    html = (await pageWith(BILLING, (await panelLink(pausedOnly, now)).token, now)).html;
    expect(texts(html, "paused")).toHaveLength(1);
    expect(texts(html, "limit")).toEqual([]);

    // the daily spend cap is reached: buying credits would not help before the UTC day ends
    const capped = uid();
    await addCredits(capped, { amount: CREDIT, kind: "purchase" }, { now: T0 });
    await spendCap(capped, CREDIT, T0);
    await consume(capped, { product: "codex", cost: 3 * CREDIT }, { now: T0 });
    html = (await pageWith(BILLING, (await panelLink(capped, now)).token, now)).html;
    expect(texts(html, "limit-help").join(" ")).toMatch(
      /daily spend cap .* reached; credit spending resumes at 2026-11-02 00:00 UTC/,
    );
    expect(attrOf(html, "add-credits", "href")).toBeNull();

    // no limit hit: nothing to ask
    const fine = uid();
    await consume(fine, { product: "codex", cost: CREDIT / 2 }, { now: T0 });
    html = (await pageWith(BILLING, (await panelLink(fine, now)).token, now)).html;
    expect(html).not.toContain('data-testid="limit-hit"');
    expect(attrOf(html, "add-credits", "href")).toBeNull();
  });

  it("shows active holds, the spend cap and when the next banked reset accrues", async () => {
    const a = uid();
    await addCredits(a, { amount: 10 * CREDIT, kind: "purchase" }, { now: T0 });
    await consume(a, { product: "codex", cost: CREDIT }, { now: T0 });
    await spendCap(a, 5 * CREDIT, T0);
    const hold = await holdFor(a, { product: "sora", cost: 3 * CREDIT, ttlSeconds: 600 }, T0 + 1000);
    expect(hold.status).toBe(201);
    const now = T0 + 2000;
    const html = (await page((await panelLink(a, now)).token, now)).html;
    const holds = texts(html, "hold");
    expect(holds).toHaveLength(1);
    expect(holds[0]).toMatch(/Sora/);
    expect(holds[0]).toMatch(/3\.00/);
    expect(holds[0]).toMatch(/00:10 UTC/);
    expect(texts(html, "spend-cap")).toEqual(["0.00 of 5.00 credits spent today (UTC)"]);
    // the account was created at T0; go accrues one banked reset every 7 days
    expect(texts(html, "banked-next")[0]).toMatch(/^Next banked reset accrues at 2026-11-08 00:00 UTC \(in 7d 0h\)/);

    // no hold, no cap: said so
    const b = uid();
    await consume(b, { product: "codex", cost: CREDIT }, { now: T0 });
    const plain = (await page((await panelLink(b, now)).token, now)).html;
    expect(texts(plain, "hold")).toEqual([]);
    expect(texts(plain, "no-holds")).toHaveLength(1);
    expect(texts(plain, "spend-cap")).toEqual(["No daily spend cap."]);

    // at the maximum, none accrues
    const full = uid();
    await consume(full, { product: "codex", cost: CREDIT }, { now: T0 });
    await consume(full, { product: "codex", cost: CREDIT }, { now: T0 + 22 * DAY });
    const fullHtml = (await page((await panelLink(full, T0 + 22 * DAY)).token, T0 + 22 * DAY)).html;
    expect(texts(fullHtml, "banked-available")[0]).toMatch(/^3 of 3 available/);
    expect(texts(fullHtml, "banked-next")[0]).toMatch(/at the maximum/);

    // a plan that does not accrue
    const ent = uid();
    await setPlan(ent, "enterprise", { now: T0 });
    const entHtml = (await page((await panelLink(ent, now)).token, now)).html;
    expect(texts(entHtml, "banked-next")[0]).toMatch(/does not accrue banked resets/);
  });

  it("lists the account's last 20 ledger entries, newest first, with time, kind, amount and product", async () => {
    const a = uid();
    const other = uid();
    const kinds = ["charge", "grant", "hold", "release", "refund"];
    // each account's entries go into its own ledger shard, where the panel reads them
    const into = (id: string) =>
      ledgerFor(env, id).prepare(
        "INSERT INTO ledger (id, account_id, kind, amount, layer, product, created_at, settled_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
      );
    const insert = into(a);
    await ledgerFor(env, a).batch(
      Array.from({ length: 25 }, (_, i) =>
        insert.bind(
          `${a}-e${i}`,
          a,
          kinds[i % kinds.length],
          (i + 1) * 10_000,
          i % 5 === 0 ? "grant" : null,
          i % 2 ? "sora" : "codex",
          T0 + i * MINUTE,
          T0 + i * MINUTE,
        ),
      ),
    );
    await into(other).bind(`${other}-e0`, other, "write_off", 987_654_321, null, "codex", T0, T0).run();
    const html = (await page((await panelLink(a, T0 + HOUR)).token, T0 + HOUR)).html;
    const rows = texts(html, "activity");
    expect(rows).toHaveLength(20);
    // entry 24 (a refund of 0.25 credits for codex at 00:24) first; entry 5 (a charge of 0.06) last
    expect(rows[0]).toMatch(/00:24 UTC/);
    expect(rows[0]).toMatch(/refund/);
    expect(rows[0]).toMatch(/0\.25/);
    expect(rows[0]).toMatch(/Codex/);
    expect(rows[19]).toMatch(/00:05 UTC/);
    expect(rows[19]).toMatch(/charge/);
    expect(rows[19]).toMatch(/0\.06/);
    expect(rows.join(" ")).not.toMatch(/987\.65|write_off/);

    // a real entry: a purchase settles into the ledger and shows up
    const b = uid();
    await addCredits(b, { amount: 7 * CREDIT, kind: "purchase" }, { now: T0 });
    await waitFor(
      () => ledgerAll(b),
      (e) => e.length >= 1,
    );
    const bRows = texts((await page((await panelLink(b, T0 + 1000)).token, T0 + 1000)).html, "activity");
    expect(bRows).toHaveLength(1);
    expect(bRows[0]).toMatch(/grant/);
    expect(bRows[0]).toMatch(/7\.00/);

    // nothing settled yet: said so
    const c = uid();
    expect(texts((await page((await panelLink(c, T0)).token, T0)).html, "no-activity")).toHaveLength(1);
  });

  it("draws the spend chart with a y-axis in credits, window usage and credit spend per day, and a table of the numbers", async () => {
    const a = uid();
    await addCredits(a, { amount: 5 * CREDIT, kind: "purchase" }, { now: T0 });
    await consume(a, { product: "codex", cost: 3 * CREDIT }, { now: T0 }); // 2 from the window, 1 from credits
    await consume(a, { product: "sora", cost: CREDIT / 2 }, { now: T0 + DAY }); // 0.5 from the sora window
    const now = T0 + DAY + 1000;
    const html = (await page((await panelLink(a, now)).token, now)).html;
    const ticks = texts(html, "y-tick");
    expect(ticks[0]).toBe("0");
    expect(ticks.length).toBeGreaterThanOrEqual(3);
    expect(Number(ticks.at(-1))).toBeGreaterThanOrEqual(2);
    expect(texts(html, "y-axis-label")).toEqual(["credits"]);
    expect(texts(html, "legend")).toEqual(["Window usage (included in your plan)", "Credits spent"]);
    expect(html.match(/data-series="window"/g)).toHaveLength(7);
    expect(html.match(/data-series="credits"/g)).toHaveLength(7);
    const rows = texts(html, "chart-row");
    expect(rows).toHaveLength(7);
    expect(rows[5]).toBe("2026-11-01 2.00 1.00");
    expect(rows[6]).toBe("2026-11-02 0.50 0.00");
    expect(html).toMatch(/<caption[^>]*>[^<]*window usage and credits spent per UTC day/i);
  });

  it("shows times in UTC inside <time> elements, and loads the local-time script from its own origin", async () => {
    const a = uid();
    await consume(a, { product: "codex", cost: 2 * CREDIT }, { now: T0 });
    const html = (await page((await panelLink(a, T0 + HOUR)).token, T0 + HOUR)).html;
    const times = [...html.matchAll(/<time\b[^>]*datetime="([^"]+)"[^>]*>([^<]*)<\/time>/g)];
    expect(times.length).toBeGreaterThan(0);
    for (const [, datetime, text] of times) {
      expect(Number.isNaN(Date.parse(datetime)), datetime).toBe(false);
      expect(text, datetime).toMatch(/UTC$/);
    }
    expect(html).toContain("All times are in UTC");
    // one script, loaded from the panel's own origin; nothing inline
    const scripts = [...html.matchAll(/<script\b([^>]*)>([\s\S]*?)<\/script>/g)];
    expect(scripts).toHaveLength(1);
    expect(scripts[0][1]).toMatch(/^ src="\/panel\/time\.js" defer(="")?$/);
    expect(scripts[0][2]).toBe("");
    const js = await exports.default.fetch("https://engine.test/panel/time.js");
    expect(js.status).toBe(200);
    expect(js.headers.get("Content-Type")).toMatch(/^text\/javascript/);
    expect(js.headers.get("X-Content-Type-Options")).toBe("nosniff");
    const source = await js.text();
    expect(source).toContain("datetime");
    expect(source).not.toMatch(/innerHTML|eval\(|new Function/);
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
      method: "POST",
      body,
      headers: { ...(contentType === null ? {} : { "Content-Type": contentType }), "X-Test-Now": String(now) },
      redirect: "manual",
    });
  /** The response's Content-Security-Policy as directive → sources. */
  const csp = (res: Response) =>
    new Map(
      (res.headers.get("Content-Security-Policy") ?? "")
        .split(";")
        .map((d) => d.trim().split(/\s+/))
        .filter((d) => d[0])
        .map(([name, ...v]) => [name.toLowerCase(), v]),
    );

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
      [
        "garbage fields with a good token",
        `token=${encodeURIComponent(token)}&product=%ff%zz&nonce=%%%00`,
        "application/x-www-form-urlencoded",
      ],
      [
        "a good token with no nonce",
        `token=${encodeURIComponent(token)}&product=codex`,
        "application/x-www-form-urlencoded",
      ],
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
    const get = (q: string) =>
      exports.default.fetch(`https://engine.test/panel${q}`, { headers: { "X-Test-Now": String(later) } });
    const responses: [string, Response][] = [
      ["the page", await get(`?token=${encodeURIComponent(token)}`)],
      ["the page with a notice", await get(`?token=${encodeURIComponent(token)}&notice=reset_used`)],
      ["a bad link", await get("?token=nope")],
      ["no link", await get("")],
      ["a bad query", await get(`?token=${encodeURIComponent(token)}&notice=${"x".repeat(41)}`)],
      [
        "the form with a bad link",
        await post("token=nope&product=codex&nonce=n1", "application/x-www-form-urlencoded", later),
      ],
      ["a malformed form", await post("x", "multipart/form-data", later)],
      [
        "the form",
        await post(
          `token=${encodeURIComponent(token)}&product=codex&nonce=n-frame-1`,
          "application/x-www-form-urlencoded",
          later,
        ),
      ],
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
      // scripts only from the panel's own origin (the local-time enhancement), never inline
      expect(policy.get("script-src"), what).toEqual(["'self'"]);
      const html = await res.text();
      if (!res.headers.get("Content-Type")?.startsWith("text/html")) continue;
      expect(html, what).toMatch(/^<!doctype html>/i);
      // everything else the page needs is inline and allowed by the policy: no other script, no fetched resources
      const rest = html.replace(/<script src="\/panel\/time\.js" defer(="")?><\/script>/g, "");
      expect(rest, what).not.toMatch(/<script|<link\b|<img|<iframe|<object|<embed|\ssrc=|url\(/i);
      if (/<style|\sstyle=/.test(html)) expect(policy.get("style-src"), what).toEqual(["'unsafe-inline'"]);
    }
  });
});

describe("openapi", () => {
  it("documents every route", async () => {
    const doc = (await call("GET", "/openapi.json", undefined, { token: null })).body;
    const paths = Object.keys(doc.paths);
    for (const p of [
      "/v1/accounts/{id}",
      "/v1/accounts/{id}/consume",
      "/v1/accounts/{id}/holds",
      "/v1/accounts/{id}/holds/{holdId}/settle",
      "/v1/accounts/{id}/holds/{holdId}/release",
      "/v1/accounts/{id}/resets",
      "/v1/accounts/{id}/credits",
      "/v1/accounts/{id}/plan",
      "/v1/accounts/{id}/auto-top-up",
      "/v1/accounts/{id}/spend-cap",
      "/v1/catalog",
      "/v1/accounts/{id}/ledger",
      "/v1/accounts/{id}/panel-token",
      "/v1/admin/resets",
      "/v1/admin/accounts/{id}/resume",
      "/v1/admin/accounts/{id}/refunds",
      "/v1/admin/reconciliation",
      "/health",
      "/panel",
    ])
      expect(paths).toContain(p);
  });

  it("serves an API reference page at /docs built from /openapi.json", async () => {
    const res = await exports.default.fetch("https://engine.test/docs");
    expect(res.status).toBe(200);
    expect(res.headers.get("Content-Type")).toContain("text/html");
    expect(await res.text()).toContain("/openapi.json");
  });
});
