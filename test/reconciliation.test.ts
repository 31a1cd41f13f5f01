/**
 * The reconciliation sweep reaches every account (SPEC §7, issue #14): the cron's persisted cursor and the
 * on-demand pages of GET /v1/admin/reconciliation both visit all of 1,200 accounts, past the old 1,000 cap.
 *
 * How the 1,200 accounts are made: 20 of them (one in every 60, spread over the whole id order) get a real grant
 * through the API, settled through the real queue into D1 by their account object; the other 1,180 are rows
 * inserted directly into `ledger_heads` of their own ledger shard (watermark 0, zero totals) with no ledger rows. An account object that was never written to
 * holds nothing (credit position 0, charged 0, no journal), which is exactly an empty head's totals, so those 1,180 are
 * consistent, and every check still goes through the real account object and the real D1 ledger. Writing all
 * 1,200 through the API would cost 1,200 settlements through the local queue for no extra coverage: what is
 * under test is which accounts get checked, and the real-write accounts are where drift is injected.
 */
import { createExecutionContext, createScheduledController, waitOnExecutionContext } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { afterEach, beforeAll, describe, expect, it, vi } from "vitest";
import worker from "../worker/index";
import { SWEEP, sweep } from "../worker/settlement/reconciliation";
import { ledgerFor, ledgers } from "../worker/settlement/shards";
import { addCredits, CREDIT, T0 } from "./helpers";
import { drainAccount, reconciliation } from "./settle-helpers";

const TOTAL = 1200;
const REAL_EVERY = 60;
const HOUR = 3_600_000;
const prefix = `rc${Date.now().toString(36)}`;
/** Every account of this file, in the ledger's order (account ids compare as bytes, as SQLite's BINARY does). */
const ids = Array.from({ length: TOTAL }, (_, i) => `${prefix}_${String(i).padStart(4, "0")}`);
const realIds = ids.filter((_, i) => i % REAL_EVERY === 0);
/** Past the 1,000th account: the old sweep never reached it. */
const LATE = ids[1140];

const resetCursor = () => env.DB.prepare("DELETE FROM reconciliation_cursor").run();
const cursorRow = () =>
  env.DB.prepare("SELECT last_account_id, pass_started_at FROM reconciliation_cursor WHERE id = 1").first<{
    last_account_id: string | null;
    pass_started_at: number | null;
  }>();
const runsCount = async () =>
  (await env.DB.prepare("SELECT COUNT(*) AS n FROM reconciliation_runs").first<{ n: number }>())?.n ?? 0;

beforeAll(async () => {
  expect(LATE && realIds.includes(LATE)).toBe(true);
  await Promise.all(
    realIds.map(async (id, i) => {
      const r = await addCredits(id, { amount: (i + 1) * CREDIT, kind: "purchase" }, { now: T0 });
      expect(r.status).toBe(201);
      const { rows } = await drainAccount(id);
      expect(rows.map((row) => row.kind)).toEqual(["grant"]);
    }),
  );
  const real = new Set(realIds);
  // each head goes into its account's own ledger shard, as the consumer would have put it
  const inserts = new Map<D1Database, D1PreparedStatement[]>();
  for (const id of ids.filter((id) => !real.has(id))) {
    const db = ledgerFor(env, id);
    const list = inserts.get(db) ?? [];
    list.push(
      db
        .prepare(
          `INSERT INTO ledger_heads (account_id, watermark, highest, credit_position, charged_total, updated_at)
           VALUES (?, 0, 0, 0, 0, ?)`,
        )
        .bind(id, T0),
    );
    inserts.set(db, list);
  }
  for (const [db, list] of inserts) for (let i = 0; i < list.length; i += 100) await db.batch(list.slice(i, i + 100));
  const counts = await Promise.all(
    ledgers(env).map(
      async (db) =>
        (
          await db
            .prepare("SELECT COUNT(*) AS n FROM ledger_heads WHERE account_id LIKE ?")
            .bind(`${prefix}_%`)
            .first<{ n: number }>()
        )?.n ?? 0,
    ),
  );
  // the accounts are spread over every shard, and together the shards hold all of them
  expect(counts.length).toBeGreaterThan(1);
  for (const n of counts) expect(n).toBeGreaterThan(0);
  expect(counts.reduce((a, b) => a + b, 0)).toBe(TOTAL);
}, 120_000);

afterEach(() => vi.restoreAllMocks());

describe("the cron sweep, with its persisted cursor", () => {
  it("checks all 1,200 accounts one page a run, each exactly once per pass, then wraps to the start", async () => {
    await resetCursor();
    const pages = Math.ceil(TOTAL / SWEEP.pageSize);
    expect(pages).toBeGreaterThan(1);
    for (let pass = 0; pass < 2; pass++) {
      const seen: string[] = [];
      for (let run = 0; run < pages; run++) {
        const before = await runsCount();
        const r = await sweep(env, T0 + (pass * pages + run) * 15 * 60_000);
        expect(r.drifted).toEqual([]);
        expect(r.checked).toBe(r.accountIds.length);
        expect(r.accountIds.length).toBeLessThanOrEqual(SWEEP.pageSize);
        // the run is recorded, and the cursor persisted: the last account checked, or null at the end of the pass
        expect(await runsCount()).toBe(before + 1);
        const last = run === pages - 1;
        expect(r.passCompleted).toBe(last);
        expect((await cursorRow())?.last_account_id).toBe(last ? null : r.accountIds.at(-1));
        seen.push(...r.accountIds);
      }
      // every account, once each, in order: the pass wrapped at the end and the next one starts again at the first
      expect(seen).toEqual(ids);
    }
  }, 120_000);

  it("the scheduled handler runs one page of the sweep and advances the persisted cursor", async () => {
    await resetCursor();
    const before = await runsCount();
    for (let run = 1; run <= 2; run++) {
      const ctx = createExecutionContext();
      await worker.scheduled(createScheduledController({ scheduledTime: T0, cron: "*/15 * * * *" }), env, ctx);
      await waitOnExecutionContext(ctx);
      expect((await cursorRow())?.last_account_id).toBe(ids[run * SWEEP.pageSize - 1]);
    }
    expect(await runsCount()).toBe(before + 2);
    const latest = await env.DB.prepare(
      "SELECT checked FROM reconciliation_runs ORDER BY ran_at DESC, rowid DESC LIMIT 1",
    ).first<{ checked: number }>();
    expect(latest?.checked).toBe(SWEEP.pageSize);
  }, 60_000);

  it("logs a warning when a pass took longer than the period", async () => {
    await resetCursor();
    const warn = vi.spyOn(console, "warn");
    const start = T0 + 100 * HOUR;
    const pages = Math.ceil(TOTAL / SWEEP.pageSize);
    // a pass spread over the period: no warning
    for (let run = 0; run < pages; run++) await sweep(env, start + (run * SWEEP.periodMs) / pages);
    expect(warn.mock.calls.flat().join("\n")).not.toContain("reconciliation.pass_overdue");
    // the next pass's last page runs past the period after its first: warned once, with the pass's duration
    for (let run = 0; run < pages; run++) await sweep(env, start + 2 * SWEEP.periodMs + run * 0.6 * SWEEP.periodMs);
    const lines = warn.mock.calls.map((c) => String(c[0])).filter((l) => l.includes("reconciliation.pass_overdue"));
    expect(lines).toHaveLength(1);
    expect(JSON.parse(lines[0]!)).toMatchObject({ checkedAccounts: TOTAL, periodMs: SWEEP.periodMs });
  }, 120_000);
});

describe("on demand: GET /v1/admin/reconciliation", () => {
  it("pages through all 1,200 accounts with nextCursor, each page starting after the last", async () => {
    for (const limit of [1000, SWEEP.pageSize, 7 * 60]) {
      let cursor: string | null = null;
      let checked = 0;
      for (let page = 0; page < 10; page++) {
        const q: string = `?limit=${limit}${cursor ? `&cursor=${cursor}` : ""}`;
        const r = await reconciliation(q);
        expect(r.status).toBe(200);
        expect(r.body.drifted).toEqual([]);
        checked += r.body.checked;
        const expectedNext = checked < TOTAL ? ids[checked - 1] : null;
        expect({ checked: r.body.checked, nextCursor: r.body.nextCursor }).toEqual({
          checked: Math.min(limit, TOTAL - (checked - r.body.checked)),
          nextCursor: expectedNext,
        });
        cursor = r.body.nextCursor;
        if (cursor === null) break;
      }
      expect({ limit, checked, cursor }).toEqual({ limit, checked: TOTAL, cursor: null });
    }
  }, 120_000);

  it("without parameters checks one page from the start; ?accountId= checks that one; a limit past 1,000 is refused", async () => {
    const first = await reconciliation();
    expect(first.status).toBe(200);
    expect(first.body).toEqual({
      checked: SWEEP.pageSize,
      drifted: [],
      inFlight: [],
      nextCursor: ids[SWEEP.pageSize - 1],
    });
    const one = await reconciliation(`?accountId=${LATE}`);
    expect(one.body).toEqual({ checked: 1, drifted: [], inFlight: [], nextCursor: null });
    expect((await reconciliation("?limit=1001")).status).toBe(400);
    expect((await reconciliation(`?accountId=${LATE}&cursor=${ids[0]}`)).status).toBe(400);
  });

  it("an account with drift past the 1,000th is reported by paging, by the sweep and by ?accountId=", async () => {
    // the ledger's running total loses the grant: the object and the ledger now differ at the same seq
    const tampered = await ledgerFor(env, LATE)
      .prepare("UPDATE ledger_heads SET credit_position = 0 WHERE account_id = ?")
      .bind(LATE)
      .run();
    expect(tampered.meta.changes).toBe(1);
    const grant = (realIds.indexOf(LATE) + 1) * CREDIT;
    const drift = { accountId: LATE, expected: grant, actual: 0, chargedExpected: 0, chargedActual: 0, toSeq: 1 };

    // the first page of 1,000 does not hold it; the next one does
    const p1 = await reconciliation("?limit=1000");
    expect(p1.body).toMatchObject({ checked: 1000, drifted: [], nextCursor: ids[999] });
    const p2 = await reconciliation(`?limit=1000&cursor=${p1.body.nextCursor}`);
    expect(p2.body).toMatchObject({ checked: TOTAL - 1000, nextCursor: null });
    expect(p2.body.drifted).toEqual([expect.objectContaining(drift)]);

    const one = await reconciliation(`?accountId=${LATE}`);
    expect(one.body.drifted).toEqual([expect.objectContaining(drift)]);

    // the cron's pass reports it exactly once
    await resetCursor();
    const reported: string[] = [];
    for (let run = 0; run < Math.ceil(TOTAL / SWEEP.pageSize); run++) {
      const r = await sweep(env, T0 + 500 * HOUR + run);
      reported.push(...r.drifted.map((d) => d.accountId));
    }
    expect(reported).toEqual([LATE]);
  }, 120_000);
});
