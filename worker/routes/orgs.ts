/** Organizations (SPEC §9): the pool, its members, its credits; and the operator's refunds and resume of a pool. */
import { createRoute, OpenAPIHono } from "@hono/zod-openapi";
import type { AppEnv } from "../http/context";
import { org } from "../http/org";
import { reply } from "../http/reply";
import {
  EmptyBody,
  ErrorShape,
  Member,
  MemberBody,
  MemberParams,
  Org,
  OrgBody,
  OrgParams,
  PoolGrantBody,
  PoolGrantCreated,
  PoolRefundBody,
  PoolRefundCreated,
  PoolResumed,
} from "../schemas";
import {
  adminAuth,
  conflicts,
  errorResponses,
  idempotencyHeader,
  jsonBody,
  jsonResponse as json,
  notFound,
  replayHeaders,
  serviceAuth,
} from "./common";
import { operatorOf } from "./admin";

const mutating = { tags: ["organizations"], ...serviceAuth, parameters: [idempotencyHeader] };
const orgMissing = notFound("org_not_found", "no such organization");

export const orgRoutes = new OpenAPIHono<AppEnv>();

orgRoutes.openapi(
  createRoute({
    method: "put",
    path: "/v1/orgs/{orgId}",
    ...mutating,
    operationId: "putOrg",
    summary: "Create or update an organization",
    description:
      "An organization pools credits for its member accounts (business, enterprise and edu plans). `flexMonthlyLimit` sets its postpaid overage per calendar month (0 turns flex off; absent: the plan's).",
    request: { params: OrgParams, body: jsonBody(OrgBody) },
    responses: { 200: json(Org, "the organization", replayHeaders), ...errorResponses, ...conflicts() },
  }),
  async (c) => reply(c, await org(c, c.req.valid("param").orgId).put(c.req.valid("json"))),
);

orgRoutes.openapi(
  createRoute({
    method: "get",
    path: "/v1/orgs/{orgId}",
    tags: ["organizations"],
    ...serviceAuth,
    operationId: "getOrg",
    summary: "Read an organization",
    description:
      "The pool's balance, grants and flex; its members with what each drew from the pool this day and month (as each last reported it, at its latest lease call); and the top spenders of the month.",
    request: { params: OrgParams },
    responses: {
      200: json(Org, "the organization"),
      ...errorResponses,
      404: json(ErrorShape, "`org_not_found`: no such organization"),
    },
  }),
  async (c) => reply(c, await org(c, c.req.valid("param").orgId).view()),
);

orgRoutes.openapi(
  createRoute({
    method: "put",
    path: "/v1/orgs/{orgId}/members/{accountId}",
    ...mutating,
    operationId: "putOrgMember",
    summary: "Add a member, or change its pool limits",
    description:
      "The account draws from the pool after its own windows and grants. `dailyLimit` and `monthlyLimit` bound what it may draw per UTC day and calendar month. An account belongs to at most one organization: 409 `already_member` otherwise.",
    request: {
      params: MemberParams,
      body: { content: { "application/json": { schema: MemberBody } }, required: false },
    },
    responses: {
      200: json(Member, "the member", replayHeaders),
      ...errorResponses,
      ...orgMissing,
      ...conflicts("already_member"),
    },
  }),
  async (c) => {
    const { orgId, accountId } = c.req.valid("param");
    const body = c.req.valid("json") ?? {};
    const limits = { dailyLimit: body.dailyLimit ?? null, monthlyLimit: body.monthlyLimit ?? null };
    return reply(c, await org(c, orgId).putMember(accountId, limits));
  },
);

orgRoutes.openapi(
  createRoute({
    method: "delete",
    path: "/v1/orgs/{orgId}/members/{accountId}",
    ...mutating,
    operationId: "removeOrgMember",
    summary: "Remove a member",
    description:
      "The account stops drawing from the pool. What its lease holds unspent goes back to the pool at once, or when the lease expires at the latest (if the account cannot be reached now); what a hold reserved goes back when the hold ends.",
    request: { params: MemberParams },
    responses: {
      200: json(Member, "the member, no longer active", replayHeaders),
      ...errorResponses,
      ...notFound("not_found", "no such organization or member"),
      ...conflicts(),
    },
  }),
  async (c) => {
    const { orgId, accountId } = c.req.valid("param");
    return reply(c, await org(c, orgId).removeMember(accountId));
  },
);

orgRoutes.openapi(
  createRoute({
    method: "post",
    path: "/v1/orgs/{orgId}/credits",
    ...mutating,
    operationId: "addOrgCredits",
    summary: "Grant credits to the pool",
    description:
      "A pool grant, as for an account: purchases default to 12 months' expiry, a promo requires one; burn-down order is priority, then soonest expiry, then oldest.",
    request: { params: OrgParams, body: jsonBody(PoolGrantBody) },
    responses: {
      201: json(PoolGrantCreated, "the pool grant", replayHeaders),
      ...errorResponses,
      ...orgMissing,
      ...conflicts("amount_out_of_range"),
    },
  }),
  async (c) => {
    const { expiresAt, ...grant } = c.req.valid("json");
    const req = { ...grant, ...(expiresAt === undefined ? {} : { expiresAt: Date.parse(expiresAt) }) };
    return reply(c, await org(c, c.req.valid("param").orgId).addCredits(req));
  },
);

const adminMutating = { tags: ["admin"], ...adminAuth, parameters: [idempotencyHeader] };

orgRoutes.openapi(
  createRoute({
    method: "post",
    path: "/v1/admin/orgs/{orgId}/refunds",
    ...adminMutating,
    operationId: "refundOrg",
    summary: "Refund credits to a pool",
    description:
      "A goodwill credit to the organization's pool: a new pool grant (12 months) and a `refund` entry in the organization's ledger, at most 100 credits per refund. A member's charge paid by the pool is compensated this way.",
    request: { params: OrgParams, body: jsonBody(PoolRefundBody) },
    responses: {
      201: json(PoolRefundCreated, "the compensating pool grant", replayHeaders),
      ...errorResponses,
      ...orgMissing,
      ...conflicts("goodwill_limit_exceeded", "amount_out_of_range"),
    },
  }),
  async (c) => reply(c, await org(c, c.req.valid("param").orgId).refund(c.req.valid("json"))),
);

orgRoutes.openapi(
  createRoute({
    method: "post",
    path: "/v1/admin/orgs/{orgId}/resume",
    ...adminMutating,
    operationId: "resumeOrg",
    summary: "Lift a pool's anomaly pause",
    description:
      "Resumes pool spending that the pool's anomaly guard paused (a spike across members); `resumed: false` if it was not paused. The trailing window then counts from this instant.",
    request: {
      params: OrgParams,
      body: { content: { "application/json": { schema: EmptyBody } }, required: false },
    },
    responses: {
      200: json(PoolResumed, "pool spending resumed", replayHeaders),
      ...errorResponses,
      ...orgMissing,
      ...conflicts(),
    },
  }),
  async (c) => reply(c, await org(c, c.req.valid("param").orgId).resume(operatorOf(c.req.header("X-Operator")))),
);
