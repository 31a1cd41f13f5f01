import { createRoute, OpenAPIHono, z } from "@hono/zod-openapi";
import type { CallContext, RefundRequest } from "../../durable-objects/types";
import type { GlobalResetRequest } from "../../durable-objects/reset-control";
import type { RefundResult, ResumeResult } from "../core/account/answers";
import { type Answered, ok } from "../core/account/state";
import { account } from "../http/account";
import type { AppContext, AppEnv } from "../http/context";
import { ApiError } from "../http/errors";
import { reply } from "../http/reply";
import { resetControl } from "../../durable-objects/stubs";
import { forgetCachedResets } from "../resets";
import { exportAccount } from "../settlement/archive";
import { reconcile } from "../settlement/reconciliation";
import {
  AccountParams,
  ArchiveQuery,
  GlobalResetBody,
  GlobalResetList,
  ReconciliationQuery,
  ReconciliationReport,
  RefundBody,
  RefundCreated,
  ResetCreated,
  Resumed,
} from "../schemas";
import {
  adminAuth,
  conflicts,
  errorResponses,
  idempotencyHeader,
  jsonBody,
  jsonResponse as json,
  keyConflict,
  notFound,
  replayHeaders,
  requestIdHeaders,
} from "./common";

const admin = { tags: ["admin"], ...adminAuth };
const mutating = { ...admin, parameters: [idempotencyHeader] };
const operatorHeader = {
  name: "X-Operator",
  in: "header" as const,
  required: false,
  schema: { type: "string" as const, minLength: 1, maxLength: 100, pattern: "^[\\x20-\\x7e]+$" },
  description: "Who did it, for the audit trail and the event (printable ASCII); `admin` when absent or not valid.",
};
const audited = { ...admin, parameters: [idempotencyHeader, operatorHeader] };

/** Who did it, for the audit trail: an operator name the caller may give (printable ASCII, 1–100), never the token. */
export const operatorOf = (name: string | undefined, fallback = "admin") =>
  name && /^[\x20-\x7e]{1,100}$/.test(name) ? name : fallback;

interface AdminResetRow {
  reset_id: string;
  effective_at: number;
  scope: string;
  banked_resets: "keep" | "restore";
  grant_banked_resets: string | null;
  reason: string;
  actor: string;
}

export type GlobalResetView = z.infer<typeof GlobalResetList>["resets"][number];
type Idempotency = NonNullable<CallContext["idempotency"]>;

// ── The operator actions, shared by the admin API below and the operator console (worker/routes/console.tsx) ──

/**
 * Records a global reset once per idempotency key (a replay answers the first one), writes its audit row to D1 and
 * makes this isolate see it at once. A key reused with another request is `idempotency_conflict`.
 */
export async function recordGlobalReset(
  c: AppContext,
  body: GlobalResetRequest,
  actor: string,
  idempotency: Idempotency,
): Promise<{ resetId: string; effectiveAt: string; replayed: boolean }> {
  const created = await resetControl(c.env).createReset(body, { now: c.get("now"), actor, idempotency });
  if (created.kind === "conflict")
    throw new ApiError("idempotency_conflict", "this Idempotency-Key was used with a different request");
  const {
    answer: { resetId, effectiveAt },
    replayed,
  } = created;
  const row = (await resetControl(c.env).byId(resetId))!;
  // The audit row is written on every attempt, replays included, so a failed first write heals on retry.
  await c.env.DB.prepare(
    "INSERT OR IGNORE INTO admin_resets (reset_id, seq, effective_at, scope, banked_resets, grant_banked_resets, reason, actor) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
  )
    .bind(
      resetId,
      row.seq,
      row.effectiveAt,
      JSON.stringify({ products: row.products, plans: row.plans }),
      row.bankedResets,
      row.grantBankedResets ? JSON.stringify(row.grantBankedResets) : null,
      row.reason,
      row.actor,
    )
    .run();
  forgetCachedResets(c.env);
  console.log(JSON.stringify({ event: "admin.global_reset", requestId: c.get("requestId"), resetId, actor, replayed }));
  return { resetId, effectiveAt, replayed };
}

/** The audit trail of global resets from D1, newest first. */
export async function listGlobalResets(db: D1Database, limit: number): Promise<GlobalResetView[]> {
  const { results } = await db
    .prepare("SELECT * FROM admin_resets ORDER BY seq DESC LIMIT ?")
    .bind(limit)
    .all<AdminResetRow>();
  return results.map((r) => ({
    resetId: r.reset_id,
    effectiveAt: new Date(r.effective_at).toISOString(),
    scope: JSON.parse(r.scope) as GlobalResetView["scope"],
    bankedResets: r.banked_resets,
    grantBankedResets: r.grant_banked_resets
      ? (JSON.parse(r.grant_banked_resets) as { count: number; expiresInHours: number })
      : null,
    reason: r.reason,
    actor: r.actor,
  }));
}

/** Lifts an anomaly pause (`resumed: false` if the account was not paused), under the caller's idempotency key. */
export function resumeAccount(
  c: AppContext,
  accountId: string,
  operator: string,
  idempotency: Idempotency,
): Promise<Answered<ResumeResult>> {
  return account(c, accountId, { idempotency }).resume(operator);
}

/** A compensating refund (against `entryId`, or goodwill), under the caller's idempotency key; the account object enforces the limits. */
export function refundAccount(
  c: AppContext,
  accountId: string,
  body: RefundRequest,
  idempotency: Idempotency,
): Promise<Answered<RefundResult>> {
  return account(c, accountId, { idempotency }).refund(body);
}

export const adminRoutes = new OpenAPIHono<AppEnv>();

adminRoutes.openapi(
  createRoute({
    method: "post",
    path: "/v1/admin/resets",
    ...audited,
    operationId: "createGlobalReset",
    summary: "Reset everyone's windows",
    description:
      "Records one reset epoch for every account in `scope` (all by default): their windows count from zero as of now. `bankedResets: restore` refills available banked resets to the plan's maximum; `grantBankedResets` adds bonus ones that expire. O(1): no account is touched; each applies the epoch lazily, so it is in effect everywhere within about 2 s.",
    request: { body: jsonBody(GlobalResetBody) },
    responses: {
      200: json(ResetCreated, "the reset is recorded and in effect", replayHeaders),
      ...errorResponses,
      ...keyConflict,
    },
  }),
  async (c) => {
    const { resetId, effectiveAt, replayed } = await recordGlobalReset(
      c,
      c.req.valid("json"),
      operatorOf(c.req.header("X-Operator")),
      c.get("idempotency")!,
    );
    return reply(c, { result: ok({ resetId, effectiveAt }), replayed });
  },
);

adminRoutes.openapi(
  createRoute({
    method: "get",
    path: "/v1/admin/resets",
    ...admin,
    operationId: "listGlobalResets",
    summary: "List global resets",
    description: "The audit trail of global resets, newest first: scope, banked-reset handling, reason and operator.",
    request: { query: z.object({ limit: z.coerce.number().int().min(1).max(500).optional() }) },
    responses: { 200: json(GlobalResetList, "the audit trail, newest first"), ...errorResponses },
  }),
  async (c) => {
    return c.json({ resets: await listGlobalResets(c.env.DB, c.req.valid("query").limit ?? 100) }, 200);
  },
);

adminRoutes.openapi(
  createRoute({
    method: "post",
    path: "/v1/admin/accounts/{id}/resume",
    ...audited,
    operationId: "resumeAccount",
    summary: "Lift an anomaly pause",
    description:
      "Resumes credit spending on an account the anomaly guard paused (`resumed: false` if it was not paused). The trailing window then counts from this instant.",
    request: { params: AccountParams },
    responses: { 200: json(Resumed, "credit spending resumed", replayHeaders), ...errorResponses, ...conflicts() },
  }),
  async (c) => {
    const { id } = c.req.valid("param");
    return reply(c, await resumeAccount(c, id, operatorOf(c.req.header("X-Operator")), c.get("idempotency")!));
  },
);

adminRoutes.openapi(
  createRoute({
    method: "post",
    path: "/v1/admin/accounts/{id}/refunds",
    ...mutating,
    operationId: "refundAccount",
    summary: "Refund credits",
    description:
      "Adds a compensating purchase grant (12 months) and a `refund` entry; nothing earlier is edited. With `entryId`, against that `charge` or `write_off` of this account, never beyond its amount across all refunds; without, a goodwill credit of at most 100 credits.",
    request: { params: AccountParams, body: jsonBody(RefundBody) },
    responses: {
      201: json(RefundCreated, "the compensating grant and entry", replayHeaders),
      ...errorResponses,
      ...notFound("entry_not_found", "this account has no charge or write-off with this `entryId`"),
      ...conflicts("refund_exceeds_entry", "goodwill_limit_exceeded", "amount_out_of_range"),
    },
  }),
  async (c) => {
    const { id } = c.req.valid("param");
    return reply(c, await refundAccount(c, id, c.req.valid("json"), c.get("idempotency")!));
  },
);

// A stream of NDJSON, not a JSON body: documented in the OpenAPI registry, served by a plain route that validates with
// the same schemas (a refusal is the one error shape, from ApiError).
adminRoutes.openAPIRegistry.registerPath({
  method: "get",
  path: "/v1/admin/accounts/{id}/archive",
  ...admin,
  operationId: "exportArchive",
  summary: "Export an account's archived journal",
  description:
    'Streams, as NDJSON, every journal entry of the account made in [`from`, `to`) from the R2 archive: one line per entry, `{"type":"ledger","entry":…}` or `{"type":"event","event":…}`, window usage included, each sequence number once. Entries reach the archive when they settle. Archived objects are shared by every account on the same ledger shard, so the export reads every object of that shard in the range (one per consumer batch and hour): its cost grows with the traffic of the shard, not of the account. Ask for a day at a time.',
  request: { params: AccountParams, query: ArchiveQuery },
  responses: {
    200: {
      description: "the entries, one JSON object per line",
      headers: requestIdHeaders,
      content: { "application/x-ndjson": { schema: z.string() } },
    },
    ...errorResponses,
  },
});

adminRoutes.get("/v1/admin/accounts/:id/archive", (c) => {
  const params = AccountParams.safeParse({ id: c.req.param("id") });
  const query = ArchiveQuery.safeParse(c.req.query());
  if (!params.success || !query.success)
    throw new ApiError("invalid_request", "expects an account id and ISO-8601 `from` before `to`", {
      issues: [...(params.error?.issues ?? []), ...(query.error?.issues ?? [])].map((i) => ({
        path: i.path.join("."),
        message: i.message,
      })),
    });
  const { from, to } = query.data;
  return new Response(exportAccount(c.env, params.data.id, Date.parse(from), Date.parse(to)), {
    headers: { "Content-Type": "application/x-ndjson", "X-Request-Id": c.get("requestId") },
  });
});

adminRoutes.openapi(
  createRoute({
    method: "get",
    path: "/v1/admin/reconciliation",
    ...admin,
    operationId: "getReconciliation",
    summary: "Compare accounts with the ledger",
    description:
      "Compares each account object's credit position and charged total with the D1 ledger's running totals at the same sequence number (the ledger's watermark), so entries in flight are never drift; they are listed in `inFlight`, and those overdue are sent again. Checks one page of the ledger's accounts in account id order: without parameters the first page (500 accounts, or `limit`), with `cursor` the page after that account id; follow `nextCursor` until it is null to check every account. With `accountId`, checks that one account. The cron sweep keeps its own persisted cursor.",
    request: { query: ReconciliationQuery },
    responses: {
      200: json(ReconciliationReport, "accounts whose ledger differs from their object"),
      ...errorResponses,
    },
  }),
  async (c) => {
    const { accountId, cursor, limit } = c.req.valid("query");
    if (accountId !== undefined && (cursor !== undefined || limit !== undefined))
      throw new ApiError("invalid_request", "accountId checks one account: it does not take cursor or limit");
    const report = accountId
      ? await reconcile(c.env, { accountIds: [accountId] })
      : await reconcile(c.env, { cursor, limit });
    const { checked, drifted, inFlight, nextCursor } = report;
    return c.json({ checked, drifted, inFlight, nextCursor }, 200);
  },
);
