/**
 * The account object's ordered migrations on storage written by an earlier version. Until schema version 3, kept
 * answers were an HTTP status plus `{ body, error? }`; migration 4 rewrites them as domain results. An answer kept
 * before the upgrade must still replay exactly, with `Idempotent-Replayed: true`, after it.
 */
import { runInDurableObject } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import { AccountDO } from "../durable-objects/account/object";
import { MIGRATIONS, SCHEMA_VERSION } from "../durable-objects/account/schema";
import { CREDIT, call, consume, T0, uid } from "./helpers";
import { stubFor } from "./settle-helpers";

/**
 * Turns the object's storage back into the version-3 layout: kept answers with a status column and `{ body, error? }`,
 * and no sequenced journal (migration 5: the account's `journal_seq`, the `settlement` table, the outbox's index on
 * `delivered_at`).
 */
function downgradeToVersion3(sql: SqlStorage): void {
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
        columns: state.storage.sql
          .exec<{ name: string }>("PRAGMA table_info(idempotency)")
          .toArray()
          .map((c) => c.name),
        journal: state.storage.sql
          .exec<{ journalSeq: number; lastRow: number | null }>(
            "SELECT journal_seq AS journalSeq, (SELECT MAX(seq) FROM outbox) AS lastRow FROM account",
          )
          .one(),
      };
    });
    expect(after.version).toBe(SCHEMA_VERSION);
    expect(after.columns).not.toContain("status");
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
      const { requestId: _a, ...firstBody } = first.body.error ?? {};
      const { requestId: _b, ...againBody } = again[i].body.error ?? {};
      if (first.body.error) expect(againBody).toEqual(firstBody);
      else expect(again[i].body.decisionId).toBe(first.body.decisionId);
    }
    expect(again[0].body.sources).toEqual(allowed.body.sources);
    expect(again[1].body.reason).toBe(denied.body.reason);
  });
});
