import { createRoute, OpenAPIHono } from "@hono/zod-openapi";
import { catalog } from "../catalog";
import type { AppEnv } from "../context";
import { accountStub, callContext, respond } from "../context";
import { AccountParams, Denial, IncludeQuery, EmptyBody, HoldBody, HoldCreated, HoldParams, HoldReleased, HoldSettled, SettleBody } from "../schemas";
import { chargeOf, conflicts, decisionHeaders, denialHeaders, errorResponses, idempotencyHeader, jsonBody, notFound, jsonResponse as json, serviceAuth } from "./common";

const mutating = { tags: ["holds"], ...serviceAuth, parameters: [idempotencyHeader] };
const noSuchHold = notFound("not_found", "this account has no hold with this id");

export const holdRoutes = new OpenAPIHono<AppEnv>();

holdRoutes.openapi(
  createRoute({
    method: "post", path: "/v1/accounts/{id}/holds", ...mutating,
    operationId: "createHold", summary: "Reserve an estimate",
    description: "Decides like consume and reserves the estimate through the same waterfall, so reserved credits count toward the guards and are unavailable to other requests. The hold expires after `ttlSeconds` (default 600, at most 3600) and is then released. Denied: 429 with the reason and `Retry-After`; nothing is reserved.",
    request: { params: AccountParams, query: IncludeQuery, body: jsonBody(HoldBody) },
    responses: {
      201: json(HoldCreated, "the estimate is reserved", decisionHeaders),
      429: json(Denial, "denied: nothing reserved", denialHeaders),
      ...errorResponses,
      ...conflicts(),
    },
  }),
  async (c) => {
    const { id } = c.req.valid("param");
    const body = c.req.valid("json");
    const charge = chargeOf(body.product, body);
    const ttl = body.ttlSeconds ?? catalog.guards.hold.defaultTtlSeconds;
    return respond(c, await accountStub(c, id).createHold(await callContext(c, id), charge, ttl)) as never;
  },
);

holdRoutes.openapi(
  createRoute({
    method: "post", path: "/v1/accounts/{id}/holds/{holdId}/settle", ...mutating,
    operationId: "settleHold", summary: "Settle a hold at the actual cost",
    description: "Releases the reservation and charges the actual `cost` (or `usage`, priced for the hold's product). Above the hold, the extra is charged only within the guards; what they refuse is written off, never charged.",
    request: { params: HoldParams, query: IncludeQuery, body: jsonBody(SettleBody) },
    responses: { 200: json(HoldSettled, "the actual cost is charged", decisionHeaders), ...errorResponses, ...noSuchHold, ...conflicts("hold_not_active", "amount_out_of_range") },
  }),
  async (c) => {
    const { id, holdId } = c.req.valid("param");
    const body = c.req.valid("json");
    return respond(c, await accountStub(c, id).settleHold(await callContext(c, id), holdId, body)) as never;
  },
);

holdRoutes.openapi(
  createRoute({
    method: "post", path: "/v1/accounts/{id}/holds/{holdId}/release", ...mutating,
    operationId: "releaseHold", summary: "Release a hold",
    description: "Gives the whole reservation back to the layers it came from; nothing is charged.",
    request: { params: HoldParams, query: IncludeQuery, body: { content: { "application/json": { schema: EmptyBody } }, required: false } },
    responses: { 200: json(HoldReleased, "the reservation is freed", decisionHeaders), ...errorResponses, ...noSuchHold, ...conflicts("hold_not_active") },
  }),
  async (c) => {
    const { id, holdId } = c.req.valid("param");
    return respond(c, await accountStub(c, id).releaseHold(await callContext(c, id), holdId)) as never;
  },
);
