import { accountObject } from "../../durable-objects/stubs";

export interface Drift {
  accountId: string;
  /** the account object's credit position: grant remainders plus credits held */
  expected: number;
  /** the same position derived from the D1 ledger */
  actual: number;
  chargedExpected: number;
  chargedActual: number;
  /** outbox entries not yet sent to the queue */
  pendingOutbox: number;
  /** entries sent in the last minute, which the consumer may not have written yet */
  sentLastMinute: number;
}

/**
 * Ledger totals for one account. Credit position = grants + refunds − expiries − grant-layer charges
 * (hold and release entries cancel out, as a settled hold is written as release-all then charge).
 */
export async function ledgerTotals(
  db: D1Database,
  accountId: string,
): Promise<{ creditPosition: number; charged: number }> {
  const { results } = await db
    .prepare(
      "SELECT kind, layer, SUM(amount) AS total FROM ledger WHERE account_id = ? AND kind IN ('grant', 'refund', 'expiry', 'charge') GROUP BY kind, layer",
    )
    .bind(accountId)
    .all<{ kind: string; layer: string | null; total: number }>();
  let creditPosition = 0;
  let charged = 0;
  for (const r of results) {
    if (r.kind === "grant" || r.kind === "refund") creditPosition += r.total;
    if (r.kind === "expiry") creditPosition -= r.total;
    if (r.kind === "charge") {
      charged += r.total;
      if (r.layer === "grant") creditPosition -= r.total;
    }
  }
  return { creditPosition, charged };
}

export async function reconcileAccount(env: Env, accountId: string): Promise<Drift | null> {
  const stub = accountObject(env, accountId);
  const [state, totals] = await Promise.all([stub.reconciliationState(), ledgerTotals(env.DB, accountId)]);
  if (state.creditPosition === totals.creditPosition && state.chargedTotal === totals.charged) return null;
  return {
    accountId,
    expected: state.creditPosition,
    actual: totals.creditPosition,
    chargedExpected: state.chargedTotal,
    chargedActual: totals.charged,
    pendingOutbox: state.pendingOutbox,
    sentLastMinute: state.sentLastMinute,
  };
}

/** Checks the given accounts, or every account the ledger knows (in pages), and records the run. */
export async function reconcile(
  env: Env,
  opts: { accountIds?: string[]; limit?: number } = {},
): Promise<{ checked: number; drifted: Drift[] }> {
  let ids = opts.accountIds;
  if (!ids) {
    const { results } = await env.DB.prepare("SELECT account_id FROM accounts ORDER BY account_id LIMIT ?")
      .bind(opts.limit ?? 1000)
      .all<{ account_id: string }>();
    ids = results.map((r) => r.account_id);
  }
  const drifted: Drift[] = [];
  for (let i = 0; i < ids.length; i += 20) {
    const chunk = await Promise.all(ids.slice(i, i + 20).map((id) => reconcileAccount(env, id)));
    for (const d of chunk) if (d) drifted.push(d);
  }
  await env.DB.prepare("INSERT INTO reconciliation_runs (id, ran_at, checked, drifted) VALUES (?, ?, ?, ?)")
    .bind(crypto.randomUUID(), Date.now(), ids.length, JSON.stringify(drifted))
    .run();
  if (drifted.length > 0) console.warn(JSON.stringify({ event: "reconciliation.drift", checked: ids.length, drifted }));
  return { checked: ids.length, drifted };
}
