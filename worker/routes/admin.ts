import { createRoute, OpenAPIHono, z } from "@hono/zod-openapi";
import type { AppEnv } from "../context";
import { ApiError } from "../errors";
import { accountStub, callContext, respond } from "../context";
import { forgetCachedResets, resetControl } from "../resets";
import { reconcile } from "../settlement/reconciliation";
import { AccountParams, AccountSummary, GlobalResetBody, ReconciliationQuery, ReconciliationReport, RefundBody, ResetCreated } from "../schemas";
import { conflictResponse, errorResponses, idempotencyHeader, jsonBody, jsonResponse as json } from "./common";

const admin = { tags: ["admin"], security: [{ bearer: [] }] };
const mutating = { ...admin, parameters: [idempotencyHeader] };

/** Who did it, for the audit trail: an operator name the caller may give, never the token. */
const operatorOf = (header: string | undefined) => (header && /^[\x20-\x7e]{1,100}$/.test(header) ? header : "admin");

export const adminRoutes = new OpenAPIHono<AppEnv>();

adminRoutes.openapi(
  createRoute({
    method: "post", path: "/v1/admin/resets", ...mutating,
    request: { body: jsonBody(GlobalResetBody) },
    responses: { 200: json(ResetCreated, "the reset is recorded and in effect"), ...errorResponses, ...conflictResponse },
  }),
  async (c) => {
    const body = c.req.valid("json");
    const actor = operatorOf(c.req.header("X-Operator"));
    const created = await resetControl(c.env).createReset(body, { now: c.get("now"), actor, idempotency: c.get("idempotency")! });
    if ("conflict" in created) throw new ApiError("idempotency_conflict", "this Idempotency-Key was used with a different request");
    const { resetId, effectiveAt, replayed } = created;
    const row = (await resetControl(c.env).byId(resetId))!;
    // The audit row is written on every attempt, replays included, so a failed first write heals on retry.
    await c.env.DB.prepare(
      "INSERT OR IGNORE INTO admin_resets (reset_id, seq, effective_at, scope, banked_resets, grant_banked_resets, reason, actor) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
    ).bind(resetId, row.seq, row.effectiveAt, JSON.stringify({ products: row.products, plans: row.plans }), row.bankedResets,
      row.grantBankedResets ? JSON.stringify(row.grantBankedResets) : null, row.reason, row.actor).run();
    forgetCachedResets(c.env);
    console.log(JSON.stringify({ event: "admin.global_reset", requestId: c.get("requestId"), resetId, actor, replayed }));
    return respond(c, { status: 200, body: { resetId, effectiveAt }, replayed }) as never;
  },
);

adminRoutes.openapi(
  createRoute({
    method: "get", path: "/v1/admin/resets", ...admin,
    request: { query: z.object({ limit: z.coerce.number().int().min(1).max(500).optional() }) },
    responses: { 200: json(z.object({ resets: z.array(z.record(z.string(), z.unknown())) }), "the audit trail, newest first"), ...errorResponses },
  }),
  async (c) => {
    const { results } = await c.env.DB.prepare("SELECT * FROM admin_resets ORDER BY seq DESC LIMIT ?").bind(c.req.valid("query").limit ?? 100).all<Record<string, unknown>>();
    const resets = results.map((r) => ({
      resetId: r.reset_id,
      effectiveAt: new Date(r.effective_at as number).toISOString(),
      scope: JSON.parse(r.scope as string),
      bankedResets: r.banked_resets,
      grantBankedResets: r.grant_banked_resets ? JSON.parse(r.grant_banked_resets as string) : null,
      reason: r.reason,
      actor: r.actor,
    }));
    return c.json({ resets }, 200) as never;
  },
);

adminRoutes.openapi(
  createRoute({
    method: "post", path: "/v1/admin/accounts/{id}/resume", ...mutating,
    request: { params: AccountParams },
    responses: { 200: json(z.object({ resumed: z.boolean(), account: AccountSummary }), "credit spending resumed"), ...errorResponses, ...conflictResponse },
  }),
  async (c) => {
    const { id } = c.req.valid("param");
    return respond(c, await accountStub(c, id).resume(await callContext(c, id), operatorOf(c.req.header("X-Operator")))) as never;
  },
);

adminRoutes.openapi(
  createRoute({
    method: "post", path: "/v1/admin/accounts/{id}/refunds", ...mutating,
    request: { params: AccountParams, body: jsonBody(RefundBody) },
    responses: { 201: json(z.record(z.string(), z.unknown()), "the compensating entry"), ...errorResponses, ...conflictResponse },
  }),
  async (c) => {
    const { id } = c.req.valid("param");
    return respond(c, await accountStub(c, id).refund(await callContext(c, id), c.req.valid("json"))) as never;
  },
);

adminRoutes.openapi(
  createRoute({
    method: "get", path: "/v1/admin/reconciliation", ...admin,
    request: { query: ReconciliationQuery },
    responses: { 200: json(ReconciliationReport, "accounts whose ledger differs from their object"), ...errorResponses },
  }),
  async (c) => {
    const { accountId, limit } = c.req.valid("query");
    return c.json(await reconcile(c.env, { accountIds: accountId ? [accountId] : undefined, limit }), 200) as never;
  },
);
