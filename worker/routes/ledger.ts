import { ledgerFor } from "../settlement/shards";
import { createRoute, OpenAPIHono, type z } from "@hono/zod-openapi";
import type { AppEnv } from "../http/context";
import { HOUR_MS, iso } from "../core/time";
import type { Layer } from "../core/journal";
import { AccountParams, type LedgerKindSchema, LedgerPage, LedgerQuery } from "../schemas";
import { errorResponses, jsonResponse as json, serviceAuth } from "./common";

const DEFAULT_PAGE = 100;

/** A `usage` rollup's hour (from its first charge's time) and how many window charges it sums. */
const usageSpan = (firstAt: number, count: number) => {
  const from = firstAt - (firstAt % HOUR_MS);
  return { from: iso(from), to: iso(from + HOUR_MS), count };
};

interface LedgerRow {
  seq: number;
  id: string;
  kind: z.infer<typeof LedgerKindSchema>;
  amount: number;
  layer: Layer | null;
  product: string | null;
  grant_id: string | null;
  decision_id: string | null;
  hold_id: string | null;
  rate_card_version: string | null;
  created_at: number;
  usage_count: number | null;
}

export const ledgerRoutes = new OpenAPIHono<AppEnv>();

ledgerRoutes.openapi(
  createRoute({
    method: "get",
    path: "/v1/accounts/{id}/ledger",
    tags: ["ledger"],
    ...serviceAuth,
    operationId: "getLedger",
    summary: "List settled ledger entries",
    description:
      "The account's entries in the D1 ledger in the order they settled, `limit` per page (default 100); pass `nextCursor` as `cursor` for the next page. Money moves are entries one by one; window charges are `usage` rollups per product and hour (`from`, `to`, `count`, `amount`; `createdAt` is the hour's first charge), which grow as that hour's window charges settle, late ones included (a row read once may have grown since), and stand where their first charge settled. Entries land within a second or two of the decision that made them.",
    request: { params: AccountParams, query: LedgerQuery },
    responses: { 200: json(LedgerPage, "settled entries, in the order they settled"), ...errorResponses },
  }),
  async (c) => {
    const { id } = c.req.valid("param");
    const { limit = DEFAULT_PAGE, cursor } = c.req.valid("query");
    const { results } = await ledgerFor(c.env, id)
      .prepare(
        `SELECT seq, id, kind, amount, layer, product, grant_id, decision_id, hold_id, rate_card_version, created_at,
           usage_count FROM ledger WHERE account_id = ? AND seq > ? ORDER BY seq LIMIT ?`,
      )
      .bind(id, Number(cursor ?? 0), limit + 1)
      .all<LedgerRow>();
    const page = results.slice(0, limit);
    const entries = page.map((r) => ({
      id: r.id,
      kind: r.kind,
      amount: r.amount,
      ...(r.layer ? { layer: r.layer } : {}),
      ...(r.product ? { product: r.product } : {}),
      ...(r.grant_id ? { grantId: r.grant_id } : {}),
      ...(r.decision_id ? { decisionId: r.decision_id } : {}),
      ...(r.hold_id ? { holdId: r.hold_id } : {}),
      ...(r.rate_card_version ? { rateCardVersion: r.rate_card_version } : {}),
      ...(r.kind === "usage" ? usageSpan(r.created_at, r.usage_count ?? 0) : {}),
      createdAt: iso(r.created_at),
    }));
    return c.json({ entries, nextCursor: results.length > limit ? String(page[page.length - 1].seq) : null }, 200);
  },
);
