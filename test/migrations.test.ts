/**
 * The account object's ordered migrations on storage written by an earlier version. Until schema version 3, kept
 * answers were an HTTP status plus `{ body, error? }`; migration 4 rewrites them as domain results. Until version 5
 * the windows had a table, decisions a log, the journal an AUTOINCREMENT table with a UNIQUE `entry_id` and full JSON
 * messages, window usage its own rows and answers one table with an age index; migrations 6–9 carry all of it over
 * (test/storage-helpers.ts rewinds an object to that layout). Whatever an old object kept must still be there after:
 * its windows, its journal, the window usage a global reset reads, and every answer, replayed byte for byte.
 */
import { evictDurableObject, runInDurableObject } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import { AccountDO } from "../durable-objects/account/object";
import { MIGRATIONS, SCHEMA_VERSION } from "../durable-objects/account/schema";
import { account, CREDIT, call, consume, T0, uid } from "./helpers";
import { stubFor } from "./settle-helpers";
import { journalIn, rewindToVersion5 } from "./storage-helpers";

/**
 * Turns the object's storage back into the version-3 layout: kept answers with a status column and `{ body, error? }`,
 * and no sequenced journal (migration 5: the account's `journal_seq`, the `settlement` table, the outbox's index on
 * `delivered_at`).
 */
function downgradeToVersion3(sql: SqlStorage): void {
  rewindToVersion5(sql);
  sql.exec("ALTER TABLE idempotency ADD COLUMN status INTEGER NOT NULL DEFAULT 0");
  const rows = sql.exec<{ key: string; body: string }>("SELECT key, body FROM idempotency").toArray();
  const legacyStatus: Record<string, number> = { ok: 200, created: 201, denied: 429 };
  for (const r of rows) {
    const answer = JSON.parse(r.body);
    const refusal = answer.kind === "refused" ? answer.refusal : null;
    const status = refusal ? (refusal.code === "not_found" ? 404 : 409) : legacyStatus[answer.kind];
    const body = refusal ? { body: null, error: refusal } : { body: answer.body };
    sql.exec("UPDATE idempotency SET status = ?, body = ? WHERE key = ?", status, JSON.stringify(body), r.key);
  }
  sql.exec("ALTER TABLE account DROP COLUMN journal_seq");
  sql.exec("DROP TABLE settlement");
  sql.exec("CREATE INDEX IF NOT EXISTS outbox_pending ON outbox (delivered_at, seq)");
  sql.exec("UPDATE schema_version SET version = 3");
}

const tablesIn = (sql: SqlStorage) =>
  sql
    .exec<{ name: string }>("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")
    .toArray()
    .map((t) => t.name);

/** A body as the client compares it: an error's requestId is the request's own. */
function answerText(body: any): string {
  if (!body?.error) return JSON.stringify(body);
  const { requestId: _r, ...error } = body.error;
  return JSON.stringify({ ...body, error });
}

describe("migrations of the account object's storage", () => {
  it("are numbered in order, and the stored version is the last one", () => {
    expect(MIGRATIONS.map((m) => m.id)).toEqual(MIGRATIONS.map((_, i) => i + 1));
    expect(SCHEMA_VERSION).toBe(MIGRATIONS.length);
  });

  it("answers kept as HTTP replies before migration 4 replay unchanged after it", async () => {
    const id = uid();
    await call("PUT", `/v1/accounts/${id}/plan`, { plan: "plus" }, { now: T0 });
    const allowed = await consume(id, { product: "codex", cost: CREDIT }, { now: T0 + 1000, key: "m-allowed" });
    const denied = await consume(id, { product: "codex", cost: 100 * CREDIT }, { now: T0 + 2000, key: "m-denied" });
    const missing = await call("POST", `/v1/accounts/${id}/holds/nope/release`, undefined, {
      now: T0 + 3000,
      key: "m-404",
    });
    expect([allowed.status, denied.status, missing.status]).toEqual([200, 429, 404]);

    const stub = stubFor(id);
    await runInDurableObject(stub, (_i: AccountDO, state) => downgradeToVersion3(state.storage.sql));
    // A new instance over the old storage runs the migrations it is behind.
    const after = await runInDurableObject(stub, (_i: AccountDO, state) => {
      new AccountDO(state, env);
      return {
        version: state.storage.sql.exec<{ version: number }>("SELECT version FROM schema_version").one().version,
        tables: tablesIn(state.storage.sql),
        journal: state.storage.sql
          .exec<{ journalSeq: number; lastRow: number | null }>(
            "SELECT journal_seq AS journalSeq, (SELECT MAX(seq) FROM outbox) AS lastRow FROM account",
          )
          .one(),
      };
    });
    expect(after.version).toBe(SCHEMA_VERSION);
    // migration 4 rewrote the answers, and migration 9 moved them into their period's table
    expect(after.tables).not.toContain("idempotency");
    expect(after.tables.some((t) => t.startsWith("answers_"))).toBe(true);
    // migration 5 ran again too: the journal continues after its last row
    expect(after.journal.lastRow).not.toBeNull();
    expect(after.journal.journalSeq).toBe(after.journal.lastRow);

    const again = [
      await consume(id, { product: "codex", cost: CREDIT }, { now: T0 + 9000, key: "m-allowed" }),
      await consume(id, { product: "codex", cost: 100 * CREDIT }, { now: T0 + 9000, key: "m-denied" }),
      await call("POST", `/v1/accounts/${id}/holds/nope/release`, undefined, { now: T0 + 9000, key: "m-404" }),
    ];
    for (const [i, first] of [allowed, denied, missing].entries()) {
      expect(again[i].status).toBe(first.status);
      expect(again[i].headers.get("Idempotent-Replayed")).toBe("true");
      expect(answerText(again[i].body)).toBe(answerText(first.body));
    }
  });

  it("an object kept at version 5 keeps its windows, journal, window usage and answers through migrations 6–9", async () => {
    const id = uid();
    const stub = stubFor(id);
    const t = T0 + 30 * 24 * 3_600_000;
    await call("PUT", `/v1/accounts/${id}/plan`, { plan: "plus" }, { now: t, key: `${id}-plan` });
    const firsts = [
      { path: `/v1/accounts/${id}/consume`, body: { product: "codex", cost: CREDIT }, now: t + 1000 },
      { path: `/v1/accounts/${id}/consume`, body: { product: "codex", cost: CREDIT / 2 }, now: t + 3000, lean: true },
      { path: `/v1/accounts/${id}/holds`, body: { product: "sora", cost: CREDIT / 4 }, now: t + 4000 },
      { path: `/v1/accounts/${id}/consume`, body: { product: "codex", cost: 100 * CREDIT }, now: t + 5000 },
      { path: `/v1/accounts/${id}/holds/nope/release`, body: undefined, now: t + 6000 },
    ].map((r, i) => ({ ...r, key: i === 0 ? crypto.randomUUID() : `${id}-${i}` }));
    const answered: Awaited<ReturnType<typeof call>>[] = [];
    for (const r of firsts) answered.push(await call("POST", r.path, r.body, { now: r.now, key: r.key, lean: r.lean }));
    expect(answered.map((a) => a.status)).toEqual([200, 200, 201, 429, 404]);
    const summary = (await account(id, t + 7000)).body;
    const journal = await runInDurableObject(stub, (_i: AccountDO, state) => journalIn(state.storage.sql));

    const old = await runInDurableObject(stub, (_i: AccountDO, state) => {
      rewindToVersion5(state.storage.sql);
      const n = (q: string) => state.storage.sql.exec<{ n: number }>(q).one().n;
      return {
        windows: n("SELECT COUNT(*) AS n FROM windows WHERE used > 0"),
        answers: n("SELECT COUNT(*) AS n FROM idempotency"),
        usage: n("SELECT COUNT(*) AS n FROM window_charges"),
        journal: n("SELECT COUNT(*) AS n FROM outbox WHERE json_extract(message, '$.type') IS NOT NULL"),
      };
    });
    // the version-5 layout holds it all: windows with usage, every kept answer, the usage rows, full JSON messages
    expect(old).toEqual({ windows: 4, answers: 6, usage: 3, journal: journal.length });

    // The next instance migrates in its constructor.
    await evictDurableObject(stub);
    const tables = await runInDurableObject(stub, (_i: AccountDO, state) => tablesIn(state.storage.sql));
    for (const gone of ["windows", "decisions", "idempotency"]) expect(tables).not.toContain(gone);
    expect(await runInDurableObject(stub, (_i: AccountDO, state) => journalIn(state.storage.sql))).toEqual(journal);
    expect((await account(id, t + 7000)).body).toEqual(summary);

    for (const [i, r] of firsts.entries()) {
      const again = await call("POST", r.path, r.body, { now: t + 8000, key: r.key, lean: r.lean });
      expect(again.status).toBe(answered[i].status);
      expect(again.headers.get("Idempotent-Replayed")).toBe("true");
      expect(answerText(again.body)).toBe(answerText(answered[i].body));
    }

    // Usage recorded before the migration still tells a global reset what came after its instant: the codex charge
    // at t+3s and the sora hold at t+4s still count, the codex charge at t+1s is forgiven.
    const reset = await call(
      "POST",
      "/v1/admin/resets",
      { reason: "v5 usage", scope: { plans: ["plus"] } },
      { now: t + 2000 },
    );
    expect([200, 201], JSON.stringify(reset.body)).toContain(reset.status);
    const later = (await account(id, t + 9000)).body;
    expect(later.products.codex.fiveHour.used).toBe(CREDIT / 2);
    expect(later.products.sora.fiveHour.used).toBe(CREDIT / 4);
  });
});
