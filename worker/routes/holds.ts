import { createRoute, OpenAPIHono } from "@hono/zod-openapi";
import { catalog } from "../catalog";
import type { AppEnv } from "../context";
import { accountStub, callContext, respond } from "../context";
import { AccountParams, Denial, EmptyBody, HoldBody, HoldCreated, HoldParams, HoldReleased, HoldSettled, SettleBody } from "../schemas";
import { chargeOf, conflictResponse, errorResponses, idempotencyHeader, jsonBody, notFoundResponse, jsonResponse as json } from "./common";

const mutating = { tags: ["holds"], security: [{ bearer: [] }], parameters: [idempotencyHeader] };

export const holdRoutes = new OpenAPIHono<AppEnv>();

holdRoutes.openapi(
  createRoute({
    method: "post", path: "/v1/accounts/{id}/holds", ...mutating,
    request: { params: AccountParams, body: jsonBody(HoldBody) },
    responses: { 201: json(HoldCreated, "the estimate is reserved"), 429: json(Denial, "denied: nothing reserved"), ...errorResponses, ...conflictResponse },
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
    request: { params: HoldParams, body: jsonBody(SettleBody) },
    responses: { 200: json(HoldSettled, "the actual cost is charged"), ...errorResponses, ...notFoundResponse, ...conflictResponse },
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
    request: { params: HoldParams, body: { content: { "application/json": { schema: EmptyBody } }, required: false } },
    responses: { 200: json(HoldReleased, "the reservation is freed"), ...errorResponses, ...notFoundResponse, ...conflictResponse },
  }),
  async (c) => {
    const { id, holdId } = c.req.valid("param");
    return respond(c, await accountStub(c, id).releaseHold(await callContext(c, id), holdId)) as never;
  },
);
