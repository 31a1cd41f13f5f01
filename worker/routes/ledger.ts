import { ledgerFor } from "../settlement/shards";
import { createRoute, OpenAPIHono, type z } from "@hono/zod-openapi";
import type { AppEnv } from "../http/context";
import { HOUR_MS, iso } from "../core/time";
import type { Layer } from "../core/journal";
import { orgLedgerId } from "../core/org/state";
import { AccountParams, type LedgerKindSchema, LedgerPage, LedgerQuery, OrgParams } from "../schemas";
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
  org_id: string | null;
  member_id: string | null;
  decision_id: string | null;
  hold_id: string | null;
  rate_card_version: string | null;
  created_at: number;
  usage_count: number | null;
}

/** One page of a ledger account's settled entries: an account's, or an organization's (`org/<orgId>`). */
async function ledgerPage(env: Env, ledgerId: string, limit: number, cursor: string | undefined) {
  const { results } = await ledgerFor(env, ledgerId)
    .prepare(
      `SELECT seq, id, kind, amount, layer, product, grant_id, org_id, member_id, decision_id, hold_id, rate_card_version,
         created_at, usage_count FROM ledger WHERE account_id = ? AND seq > ? ORDER BY seq LIMIT ?`,
    )
    .bind(ledgerId, Number(cursor ?? 0), limit + 1)
    .all<LedgerRow>();
  const page = results.slice(0, limit);
  const entries = page.map((r) => ({
    id: r.id,
    kind: r.kind,
    amount: r.amount,
    ...(r.layer ? { layer: r.layer } : {}),
    ...(r.product ? { product: r.product } : {}),
    ...(r.grant_id ? { grantId: r.grant_id } : {}),
    ...(r.org_id ? { orgId: r.org_id } : {}),
    ...(r.member_id ? { memberId: r.member_id } : {}),
    ...(r.decision_id ? { decisionId: r.decision_id } : {}),
    ...(r.hold_id ? { holdId: r.hold_id } : {}),
    ...(r.rate_card_version ? { rateCardVersion: r.rate_card_version } : {}),
    ...(r.kind === "usage" ? usageSpan(r.created_at, r.usage_count ?? 0) : {}),
    createdAt: iso(r.created_at),
  }));
  return { entries, nextCursor: results.length > limit ? String(page[page.length - 1].seq) : null };
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
    const { limit = DEFAULT_PAGE, cursor } = c.req.valid("query");
    return c.json(await ledgerPage(c.env, c.req.valid("param").id, limit, cursor), 200);
  },
);

ledgerRoutes.openapi(
  createRoute({
    method: "get",
    path: "/v1/orgs/{orgId}/ledger",
    tags: ["ledger", "organizations"],
    ...serviceAuth,
    operationId: "getOrgLedger",
    summary: "List an organization's settled ledger entries",
    description:
      "The pool's own entries in the D1 ledger (account id `org/<orgId>`), in the order they settled: pool grants, refunds, expiries, and its side of each lease and return (`memberId`: the member it went to or came from). A member's charges paid by the pool are in the member's ledger (`layer: \"pool\"`, `orgId`).",
    request: { params: OrgParams, query: LedgerQuery },
    responses: { 200: json(LedgerPage, "settled entries, in the order they settled"), ...errorResponses },
  }),
  async (c) => {
    const { limit = DEFAULT_PAGE, cursor } = c.req.valid("query");
    return c.json(await ledgerPage(c.env, orgLedgerId(c.req.valid("param").orgId), limit, cursor), 200);
  },
);
