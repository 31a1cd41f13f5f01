/**
 * The sharded ledger (SPEC §7, issue #15 item 3; worker/settlement/shards.ts): N D1 databases and N settlement queues,
 * an account's shard being FNV-1a-32 of its id's UTF-8 bytes modulo N. wrangler.toml has two shards (DB, DB_1).
 * - the hash is FNV-1a-32 (reference vectors, and over UTF-8 bytes rather than UTF-16 code units);
 * - 40 accounts spread over both shards; each one's journal goes through its shard's queue, its entries, events and
 *   head land in its shard and nowhere else, and its object confirms from its shard's head;
 * - the consumer writes a message to its account's shard whichever queue it came through;
 * - GET /v1/accounts/{id}/ledger, reconciliation (by account and by pages merged over the shards, in account id order,
 *   with nextCursor crossing from one shard to the other), and the console's account page and overview read the right
 *   shard for accounts on both.
 */
import { seqOf } from "../worker/core/journal";
import { runInDurableObject } from "cloudflare:test";
import { env, exports } from "cloudflare:workers";
import { afterEach, beforeAll, describe, expect, it } from "vitest";
import type { AccountDO } from "../durable-objects/account/object";
import { faultPoints } from "../worker/settlement/fault-points";
import { readHead } from "../worker/settlement/heads";
import type { SettlementMessage } from "../worker/settlement/messages";
import { fnv1a, ledgerFor, ledgers, settlementQueueFor, shardOf } from "../worker/settlement/shards";
import { ADMIN, addCredits, CREDIT, consume, HOUR, T0, uid } from "./helpers";
import { d1Rows, drainAccount, headOf, ledgerAll, outboxOf, reconciliation, stubFor, waitFor } from "./settle-helpers";

const C = CREDIT;
const MIN = 60_000;
/** The queue names of wrangler.toml's SETTLEMENT and SETTLEMENT_1, in shard order. */
const QUEUE_NAMES = ["settlement", "settlement-1"];

/** FNV-1a, 32 bit, written independently of the engine's: BigInt arithmetic over explicit bytes. */
function referenceFnv1a(bytes: number[]): number {
  let h = 0x811c9dc5n;
  for (const b of bytes) {
    h ^= BigInt(b);
    h = (h * 0x01000193n) & 0xffffffffn;
  }
  return Number(h);
}

/** A fresh account id on the given shard. */
function idOnShard(shard: number, prefix: string): string {
  for (;;) {
    const id = uid(prefix);
    if (shardOf(env, id) === shard) return id;
  }
}

const otherShard = (id: string) => ledgers(env)[1 - shardOf(env, id)];

/** What one shard holds for one account: ledger rows, events and its head row. */
async function heldBy(db: D1Database, id: string) {
  const n = async (sql: string) => (await db.prepare(sql).bind(id).first<{ n: number }>())?.n ?? Number.NaN;
  return {
    ledger: await n("SELECT COUNT(*) AS n FROM ledger WHERE account_id = ?"),
    events: await n("SELECT COUNT(*) AS n FROM events WHERE account_id = ?"),
    heads: await n("SELECT COUNT(*) AS n FROM ledger_heads WHERE account_id = ?"),
  };
}

afterEach(() => {
  faultPoints.consumer = undefined;
});

describe("the shard hash", () => {
  it("is FNV-1a-32: the reference vectors", () => {
    expect(fnv1a("")).toBe(0x811c9dc5);
    expect(fnv1a("a")).toBe(0xe40c292c);
    expect(fnv1a("foobar")).toBe(0xbf9cf968);
    expect(referenceFnv1a([])).toBe(0x811c9dc5);
    expect(referenceFnv1a([0x61])).toBe(0xe40c292c);
    for (const id of ["acct_1", "org-42/team", "x".repeat(200)])
      expect(fnv1a(id), id).toBe(referenceFnv1a([...id].map((ch) => ch.charCodeAt(0))));
  });

  it("hashes the id's UTF-8 bytes, not its UTF-16 code units", () => {
    // é is U+00E9: one code unit, two UTF-8 bytes; 😀 is a surrogate pair, four UTF-8 bytes
    expect(fnv1a("é")).toBe(referenceFnv1a([0xc3, 0xa9]));
    expect(fnv1a("é")).not.toBe(referenceFnv1a([0xe9]));
    expect(fnv1a("a😀")).toBe(referenceFnv1a([0x61, 0xf0, 0x9f, 0x98, 0x80]));
    expect(fnv1a("a😀")).not.toBe(referenceFnv1a([0x61, 0xd83d, 0xde00]));
  });

  it("maps an account to a shard: the hash modulo the shard count, with its D1 binding and its queue", () => {
    expect(env.LEDGER_SHARDS).toBe("DB,DB_1");
    const dbs = ledgers(env);
    expect(dbs).toHaveLength(2);
    expect(dbs[0]).toBe(env.DB);
    expect(dbs[1]).toBe(env.DB_1);
    for (let i = 0; i < 20; i++) {
      const id = uid("map");
      const shard = fnv1a(id) % 2;
      expect(shardOf(env, id)).toBe(shard);
      expect(ledgerFor(env, id)).toBe(shard === 0 ? env.DB : env.DB_1);
      expect(settlementQueueFor(env, id)).toBe(shard === 0 ? env.SETTLEMENT : env.SETTLEMENT_1);
    }
    // stable: the same id always gets the same shard
    expect(shardOf(env, "acct_stable")).toBe(fnv1a("acct_stable") % 2);
    expect([0, 1].map((s) => shardOf(env, idOnShard(s, "pick")))).toEqual([0, 1]);
  });
});

// ─────────────────── 40 accounts over both shards, settled through the real queues ───────────────────

const TOTAL = 40;
const prefix = `sh${Date.now().toString(36)}`;
/** In the ledger's order (ASCII ids compare as SQLite's BINARY does). */
const ids = Array.from({ length: TOTAL }, (_, i) => `${prefix}_${String(i).padStart(2, "0")}`);
const byShard = [0, 1].map((s) => ids.filter((id) => shardOf(env, id) === s));
/** The first account of each shard is the big spender: both lead the console's top spenders. */
const bigSpenders = byShard.map((list) => list[0]);
const t = T0 + 30 * HOUR;
/** The queue each account's messages arrived through, as the consumer saw them. */
const arrivedThrough = new Map<string, Set<string>>();

beforeAll(async () => {
  faultPoints.consumer = (batch, stage) => {
    if (stage !== "before") return;
    for (const m of batch.messages) {
      const seen = arrivedThrough.get(m.body.accountId) ?? new Set<string>();
      seen.add(batch.queue);
      arrivedThrough.set(m.body.accountId, seen);
    }
  };
  try {
    await Promise.all(
      ids.map(async (id) => {
        expect((await addCredits(id, { amount: 20 * C, kind: "purchase" }, { now: t })).status).toBe(201);
        // the go plan's 2-credit window, then the rest from the grant
        const cost = bigSpenders.includes(id) ? 12 * C : 3 * C;
        expect((await consume(id, { product: "codex", cost }, { now: t + MIN })).status).toBe(200);
        const { box } = await drainAccount(id, 30_000);
        expect(box.confirmed, id).toBe(box.lastSeq);
      }),
    );
  } finally {
    faultPoints.consumer = undefined;
  }
}, 120_000);

describe("40 accounts over two shards", () => {
  it("spread over both shards", () => {
    // each shard gets a fair share (fewer than 5 of 40 on one side has probability ~2e-7)
    expect(byShard[0].length + byShard[1].length).toBe(TOTAL);
    expect(byShard[0].length).toBeGreaterThanOrEqual(5);
    expect(byShard[1].length).toBeGreaterThanOrEqual(5);
  });

  it("each account's journal goes through its shard's queue", () => {
    for (const id of ids) expect([...(arrivedThrough.get(id) ?? [])], id).toEqual([QUEUE_NAMES[shardOf(env, id)]]);
  });

  it("each account's entries, events and head are in its own shard and not in the other", async () => {
    for (const id of ids) {
      const own = await heldBy(ledgerFor(env, id), id);
      // a grant, a grant charge and the window charge's usage rollup; the head is one row
      expect(own.ledger, id).toBe(3);
      expect(own.heads, id).toBe(1);
      expect(await heldBy(otherShard(id), id), id).toEqual({ ledger: 0, events: 0, heads: 0 });
      const head = await headOf(id);
      const rows = await d1Rows(id);
      const spent = bigSpenders.includes(id) ? 10 * C : 1 * C;
      expect(rows.map((r) => r.kind).sort()).toEqual(["charge", "grant", "usage"]);
      expect(rows.find((r) => r.kind === "usage")).toMatchObject({ amount: 2 * C, layer: "window", usage_count: 1 });
      expect({ watermark: head?.watermark, creditPosition: head?.creditPosition, charged: head?.charged }).toEqual({
        watermark: (await outboxOf(id)).lastSeq,
        creditPosition: 20 * C - spent,
        charged: 2 * C + spent,
      });
    }
  });

  it("GET /v1/accounts/{id}/ledger answers each account's entries from its shard, on both shards", async () => {
    for (const shard of [0, 1]) {
      for (const id of byShard[shard]) {
        const entries = await ledgerAll(id, 2);
        expect(
          entries.map((e) => e.id),
          id,
        ).toEqual((await d1Rows(id)).map((r) => r.id));
        expect(entries.map((e) => e.kind).sort()).toEqual(["charge", "grant", "usage"]);
        expect(entries.find((e) => e.kind === "usage")).toMatchObject({ amount: 2 * C, count: 1, product: "codex" });
        expect(entries.find((e) => e.kind === "grant")?.amount).toBe(20 * C);
      }
    }
  });

  it("reconciliation by account reads the account's own shard: clean on both, and a tampered head on shard 1 is drift", async () => {
    for (const id of [...byShard[0].slice(0, 3), ...byShard[1].slice(0, 3)]) {
      const r = await reconciliation(`?accountId=${id}`);
      expect(r.body, id).toEqual({ checked: 1, drifted: [], inFlight: [], nextCursor: null });
    }
    const victim = byShard[1][1];
    const changed = await env.DB_1.prepare(
      "UPDATE ledger_heads SET charged_total = charged_total + 7 WHERE account_id = ?",
    )
      .bind(victim)
      .run();
    expect(changed.meta.changes).toBe(1);
    try {
      const r = await reconciliation(`?accountId=${victim}`);
      expect(r.body.drifted).toEqual([
        expect.objectContaining({ accountId: victim, chargedExpected: 3 * C, chargedActual: 3 * C + 7 }),
      ]);
      // and in the merged pages
      const all = await reconciliation(`?limit=${TOTAL}`);
      expect(all.body.checked).toBe(TOTAL);
      expect(all.body.drifted.map((d: { accountId: string }) => d.accountId)).toEqual([victim]);
    } finally {
      await env.DB_1.prepare("UPDATE ledger_heads SET charged_total = charged_total - 7 WHERE account_id = ?")
        .bind(victim)
        .run();
    }
    expect((await reconciliation(`?accountId=${victim}`)).body.drifted).toEqual([]);
  });

  it("reconciliation pages merge the shards in account id order, with nextCursor crossing between shards", async () => {
    for (const limit of [1, 7]) {
      const pages: string[][] = [];
      const checked: string[] = [];
      let cursor: string | null = null;
      for (let n = 0; n < TOTAL + 1; n++) {
        const before: string | null = cursor;
        const r = await reconciliation(`?limit=${limit}${before ? `&cursor=${before}` : ""}`);
        expect(r.status).toBe(200);
        expect(r.body.drifted).toEqual([]);
        expect(r.body.inFlight).toEqual([]);
        const from = checked.length;
        const expected = ids.slice(from, from + limit);
        expect(r.body.checked, `page after ${before}`).toBe(expected.length);
        checked.push(...expected);
        pages.push(expected);
        const more = checked.length < TOTAL;
        expect(r.body.nextCursor, `page after ${before}`).toBe(more ? expected.at(-1) : null);
        cursor = r.body.nextCursor;
        if (cursor === null) break;
      }
      expect(checked).toEqual(ids);
      // the pages really straddle the shards: some page boundary goes from an account on one shard to one on the other
      const crossings = pages
        .slice(1)
        .filter((p, i) => shardOf(env, pages[i].at(-1) as string) !== shardOf(env, p[0] as string)).length;
      expect(crossings, `limit ${limit}`).toBeGreaterThan(0);
    }
  });
});

describe("the consumer", () => {
  it("writes a message to its account's shard whichever queue it came through", async () => {
    const id = idOnShard(1, "wrongq");
    const captured: SettlementMessage[] = [];
    expect((await addCredits(id, { amount: 5 * C, kind: "purchase" }, { now: t })).status).toBe(201);
    await runInDurableObject(stubFor(id), (instance: AccountDO) => {
      instance.settlement = {
        sendBatch: async (msgs) => {
          for (const m of msgs) captured.push(structuredClone(m.body));
          return { metadata: { metrics: { backlogCount: 0, backlogBytes: 0 } } };
        },
      };
    });
    expect((await consume(id, { product: "codex", cost: 4 * C }, { now: t + MIN })).status).toBe(200);
    await runInDurableObject(stubFor(id), (instance: AccountDO) => instance.flushOutbox());
    expect(captured.length).toBeGreaterThan(0);
    // shard 1's account, sent through shard 0's queue
    for (const b of captured) await env.SETTLEMENT.send(b);
    const lastSeq = Math.max(...captured.flatMap((b) => b.entries.map(seqOf)));
    const head = await waitFor(
      () => readHead(env.DB_1, id),
      (h) => h !== null && h.watermark === lastSeq,
      15_000,
    );
    expect(head?.watermark).toBe(lastSeq);
    expect(await heldBy(env.DB, id)).toEqual({ ledger: 0, events: 0, heads: 0 });
    expect((await heldBy(env.DB_1, id)).ledger).toBe((await ledgerAll(id)).length);
  });
});

// ───────────────────────────── the console ─────────────────────────────

const ORIGIN = "https://engine.test";

async function web(method: "GET" | "POST", path: string, now: number, cookies: string[] = [], form?: URLSearchParams) {
  const headers = new Headers({ "X-Test-Now": String(now) });
  if (cookies.length) headers.set("Cookie", cookies.join("; "));
  if (form) headers.set("Content-Type", "application/x-www-form-urlencoded");
  const res = await exports.default.fetch(
    new Request(`${ORIGIN}${path}`, { method, headers, body: form?.toString(), redirect: "manual" }),
  );
  return { status: res.status, html: await res.text(), cookies: res.headers.getSetCookie() };
}

const cookieOf = (cookies: string[], name: string) => cookies.find((c) => c.startsWith(`${name}=`))?.split(";")[0];

/** Signs in with ADMIN_TOKEN as test/console.test.ts does: the sign-in form's cookie and CSRF field, then the POST. */
async function signIn(now: number): Promise<string> {
  const form = await web("GET", "/console/sign-in", now);
  expect(form.status).toBe(200);
  const login = cookieOf(form.cookies, "console_login");
  const input = /<input[^>]*name="csrf"[^>]*>/.exec(form.html)?.[0];
  const csrf = input ? /value="([^"]*)"/.exec(input)?.[1]?.replace(/&amp;/g, "&") : undefined;
  expect(login).toBeDefined();
  expect(csrf).toBeDefined();
  const answer = await web(
    "POST",
    "/console/sign-in",
    now,
    [login!],
    new URLSearchParams({ token: ADMIN, csrf: csrf! }),
  );
  expect(answer.status, answer.html.slice(0, 300)).toBe(303);
  const session = cookieOf(answer.cookies, "console_session");
  expect(session).toBeDefined();
  return session!;
}

describe("the console", () => {
  it("the account page shows an account on shard 1 (and one on shard 0) from its own shard", async () => {
    const now = t + 10 * MIN;
    const session = await signIn(now);
    for (const id of [byShard[1][2], byShard[0][2]]) {
      const page = await web("GET", `/console/accounts/${id}`, now, [session]);
      expect(page.status).toBe(200);
      const shown = [...page.html.matchAll(/data-testid="ledger-row" data-entry="([^"]+)"/g)].map((m) => m[1]);
      const { results } = await ledgerFor(env, id)
        .prepare("SELECT id FROM ledger WHERE account_id = ? ORDER BY seq DESC")
        .bind(id)
        .all<{ id: string }>();
      expect(results).toHaveLength(3);
      expect(shown, id).toEqual(results.map((r) => r.id));
      expect(page.html).not.toMatch(/No ledger entries/);
    }
  });

  it("the overview fans out over both shards: each shard's big spender leads the day's top spenders", async () => {
    const now = t + 10 * MIN;
    const session = await signIn(now);
    const page = await web("GET", "/console", now, [session]);
    expect(page.status).toBe(200);
    const top = [...page.html.matchAll(/data-testid="top-day-row"><td><a href="\/console\/accounts\/([^"]+)"/g)].map(
      (m) => m[1],
    );
    expect(top.slice(0, 2).sort()).toEqual([...bigSpenders].sort());
    expect(shardOf(env, top[0] as string)).not.toBe(shardOf(env, top[1] as string));
  });
});
