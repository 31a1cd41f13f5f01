import { createRoute, OpenAPIHono } from "@hono/zod-openapi";
import { account, chargeFrom } from "../http/account";
import type { AppEnv } from "../http/context";
import { reply } from "../http/reply";
import {
  AccountParams,
  Denial,
  IncludeQuery,
  EmptyBody,
  HoldBody,
  HoldCreated,
  HoldParams,
  HoldReleased,
  HoldSettled,
  SettleBody,
} from "../schemas";
import {
  conflicts,
  decisionHeaders,
  denialHeaders,
  errorResponses,
  idempotencyHeader,
  jsonBody,
  notFound,
  jsonResponse as json,
  serviceAuth,
} from "./common";

const mutating = { tags: ["holds"], ...serviceAuth, parameters: [idempotencyHeader] };
const noSuchHold = notFound("not_found", "this account has no hold with this id");

export const holdRoutes = new OpenAPIHono<AppEnv>();

holdRoutes.openapi(
  createRoute({
    method: "post",
    path: "/v1/accounts/{id}/holds",
    ...mutating,
    operationId: "createHold",
    summary: "Reserve an estimate",
    description:
      "Decides like consume and reserves the estimate through the same waterfall, so reserved credits count toward the guards and are unavailable to other requests. The hold expires after `ttlSeconds` (default 600, at most 3600) and is then released. Denied: 429 with the reason and `Retry-After`; nothing is reserved.",
    request: { params: AccountParams, query: IncludeQuery, body: jsonBody(HoldBody) },
    responses: {
      201: json(HoldCreated, "the estimate is reserved", decisionHeaders),
      429: json(Denial, "denied: nothing reserved", denialHeaders),
      ...errorResponses,
      ...conflicts(),
    },
  }),
  async (c) => {
    const body = c.req.valid("json");
    return reply(c, await account(c, c.req.valid("param").id).createHold(chargeFrom(body), body.ttlSeconds));
  },
);

holdRoutes.openapi(
  createRoute({
    method: "post",
    path: "/v1/accounts/{id}/holds/{holdId}/settle",
    ...mutating,
    operationId: "settleHold",
    summary: "Settle a hold at the actual cost",
    description:
      "Releases the reservation and charges the actual `cost` (or `usage`, priced for the hold's product). Above the hold, the extra is charged only within the guards; what they refuse is written off, never charged.",
    request: { params: HoldParams, query: IncludeQuery, body: jsonBody(SettleBody) },
    responses: {
      200: json(HoldSettled, "the actual cost is charged", decisionHeaders),
      ...errorResponses,
      ...noSuchHold,
      ...conflicts("hold_not_active", "amount_out_of_range"),
    },
  }),
  async (c) => {
    const { id, holdId } = c.req.valid("param");
    return reply(c, await account(c, id).settleHold(holdId, c.req.valid("json")));
  },
);

holdRoutes.openapi(
  createRoute({
    method: "post",
    path: "/v1/accounts/{id}/holds/{holdId}/release",
    ...mutating,
    operationId: "releaseHold",
    summary: "Release a hold",
    description: "Gives the whole reservation back to the layers it came from; nothing is charged.",
    request: {
      params: HoldParams,
      query: IncludeQuery,
      body: { content: { "application/json": { schema: EmptyBody } }, required: false },
    },
    responses: {
      200: json(HoldReleased, "the reservation is freed", decisionHeaders),
      ...errorResponses,
      ...noSuchHold,
      ...conflicts("hold_not_active"),
    },
  }),
  async (c) => {
    const { id, holdId } = c.req.valid("param");
    return reply(c, await account(c, id).releaseHold(holdId));
  },
);
