import { createRoute, OpenAPIHono } from "@hono/zod-openapi";
import type { Outcome } from "../../durable-objects/types";
import type { AppEnv } from "../context";
import { accountStub, callContext, respond } from "../context";
import { AccountParams, AccountSummary, AutoTopUpBody, BankedResetBody, BankedResetRedeemed, ConsumeBody, Decision, Denial, GrantBody, GrantCreated, PlanBody, SpendCapBody } from "../schemas";
import { chargeOf, conflictResponse, errorResponses, idempotencyHeader, jsonBody, jsonResponse as json } from "./common";

const mutating = { security: [{ bearer: [] }], parameters: [idempotencyHeader] };

export const accountRoutes = new OpenAPIHono<AppEnv>();

accountRoutes.openapi(
  createRoute({
    method: "get", path: "/v1/accounts/{id}", tags: ["accounts"], security: [{ bearer: [] }],
    request: { params: AccountParams },
    responses: { 200: json(AccountSummary, "account summary"), ...errorResponses },
  }),
  async (c) => {
    const { id } = c.req.valid("param");
    return respond(c, await accountStub(c, id).summary(await callContext(c, id))) as never;
  },
);

accountRoutes.openapi(
  createRoute({
    method: "post", path: "/v1/accounts/{id}/consume", tags: ["metering"], ...mutating,
    request: { params: AccountParams, body: jsonBody(ConsumeBody) },
    responses: { 200: json(Decision, "allowed: each layer's part is charged"), 429: json(Denial, "denied: nothing charged"), ...errorResponses, ...conflictResponse },
  }),
  async (c) => {
    const { id } = c.req.valid("param");
    const body = c.req.valid("json");
    const charge = chargeOf(body.product, body);
    const outcome: Outcome = await accountStub(c, id).consume(await callContext(c, id), charge);
    const decision = outcome.body as { decisionId?: string; allowed?: boolean; reason?: string; sources?: unknown } | null;
    // One structured line per decision; ids and amounts only, never headers or tokens.
    console.log(JSON.stringify({
      event: "decision", requestId: c.get("requestId"), accountId: id, decisionId: decision?.decisionId, product: charge.product,
      cost: charge.cost, allowed: decision?.allowed ?? false, reason: decision?.reason ?? outcome.error?.code, sources: decision?.sources,
      replayed: outcome.replayed ?? false,
    }));
    return respond(c, outcome) as never;
  },
);

accountRoutes.openapi(
  createRoute({
    method: "post", path: "/v1/accounts/{id}/credits", tags: ["billing"], ...mutating,
    request: { params: AccountParams, body: jsonBody(GrantBody) },
    responses: { 201: json(GrantCreated, "the grant"), ...errorResponses, ...conflictResponse },
  }),
  async (c) => {
    const { id } = c.req.valid("param");
    const body = c.req.valid("json");
    const req = { ...body, expiresAt: body.expiresAt === undefined ? undefined : Date.parse(body.expiresAt) };
    return respond(c, await accountStub(c, id).addCredits(await callContext(c, id), req)) as never;
  },
);

accountRoutes.openapi(
  createRoute({
    method: "put", path: "/v1/accounts/{id}/plan", tags: ["billing"], ...mutating,
    request: { params: AccountParams, body: jsonBody(PlanBody) },
    responses: { 200: json(AccountSummary, "the account after the change"), ...errorResponses, ...conflictResponse },
  }),
  async (c) => {
    const { id } = c.req.valid("param");
    return respond(c, await accountStub(c, id).setPlan(await callContext(c, id), c.req.valid("json").plan)) as never;
  },
);

accountRoutes.openapi(
  createRoute({
    method: "put", path: "/v1/accounts/{id}/auto-top-up", tags: ["billing"], ...mutating,
    request: { params: AccountParams, body: jsonBody(AutoTopUpBody) },
    responses: { 200: json(AccountSummary, "the account after the change"), ...errorResponses, ...conflictResponse },
  }),
  async (c) => {
    const { id } = c.req.valid("param");
    return respond(c, await accountStub(c, id).setAutoTopUp(await callContext(c, id), c.req.valid("json"))) as never;
  },
);

accountRoutes.openapi(
  createRoute({
    method: "put", path: "/v1/accounts/{id}/spend-cap", tags: ["billing"], ...mutating,
    request: { params: AccountParams, body: jsonBody(SpendCapBody) },
    responses: { 200: json(AccountSummary, "the account after the change"), ...errorResponses, ...conflictResponse },
  }),
  async (c) => {
    const { id } = c.req.valid("param");
    return respond(c, await accountStub(c, id).setSpendCap(await callContext(c, id), c.req.valid("json").dailyLimit)) as never;
  },
);

accountRoutes.openapi(
  createRoute({
    method: "post", path: "/v1/accounts/{id}/resets", tags: ["resets"], ...mutating,
    request: { params: AccountParams, body: jsonBody(BankedResetBody) },
    responses: { 200: json(BankedResetRedeemed, "a banked reset was used"), ...errorResponses, ...conflictResponse },
  }),
  async (c) => {
    const { id } = c.req.valid("param");
    return respond(c, await accountStub(c, id).redeemBankedReset(await callContext(c, id), c.req.valid("json").product)) as never;
  },
);
