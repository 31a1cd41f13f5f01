import { ledgerFor } from "../settlement/shards";
import { createRoute, OpenAPIHono } from "@hono/zod-openapi";
import type { AppEnv } from "../http/context";
import { iso } from "../core/time";
import { AccountParams, LedgerPage, LedgerQuery } from "../schemas";
import type { LedgerKind } from "../settlement/messages";
import { errorResponses, jsonResponse as json, serviceAuth } from "./common";

const DEFAULT_PAGE = 100;

interface LedgerRow {
  seq: number;
  id: string;
  kind: LedgerKind;
  amount: number;
  layer: "window" | "grant" | "flex" | null;
  product: string | null;
  grant_id: string | null;
  decision_id: string | null;
  hold_id: string | null;
  rate_card_version: string | null;
  created_at: number;
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
      "The account's entries in the D1 ledger, oldest first, `limit` per page (default 100); pass `nextCursor` as `cursor` for the next page. Entries land within a second or two of the decision that made them.",
    request: { params: AccountParams, query: LedgerQuery },
    responses: { 200: json(LedgerPage, "settled entries, oldest first"), ...errorResponses },
  }),
  async (c) => {
    const { id } = c.req.valid("param");
    const { limit = DEFAULT_PAGE, cursor } = c.req.valid("query");
    const { results } = await ledgerFor(c.env, id)
      .prepare(
        "SELECT seq, id, kind, amount, layer, product, grant_id, decision_id, hold_id, rate_card_version, created_at FROM ledger WHERE account_id = ? AND seq > ? ORDER BY seq LIMIT ?",
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
      createdAt: iso(r.created_at),
    }));
    return c.json({ entries, nextCursor: results.length > limit ? String(page[page.length - 1].seq) : null }, 200);
  },
);
