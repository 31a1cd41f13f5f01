import { createRoute, OpenAPIHono } from "@hono/zod-openapi";
import { account, chargeFrom, grantFrom } from "../http/account";
import type { AppEnv } from "../http/context";
import { reply } from "../http/reply";
import {
  AccountParams,
  AccountSummary,
  IncludeQuery,
  AutoTopUpBody,
  BankedResetBody,
  BankedResetRedeemed,
  ConsumeBody,
  Decision,
  Denial,
  GrantBody,
  GrantCreated,
  PlanBody,
  SpendCapBody,
} from "../schemas";
import {
  conflicts,
  decisionHeaders,
  denialHeaders,
  errorResponses,
  idempotencyHeader,
  jsonBody,
  jsonResponse as json,
  replayHeaders,
  serviceAuth,
} from "./common";

const mutating = { ...serviceAuth, parameters: [idempotencyHeader] };

export const accountRoutes = new OpenAPIHono<AppEnv>();

accountRoutes.openapi(
  createRoute({
    method: "get",
    path: "/v1/accounts/{id}",
    tags: ["accounts"],
    ...serviceAuth,
    operationId: "getAccount",
    summary: "Read an account",
    description:
      "The account summary: plan, both windows of each product, credits and grants, banked resets, active holds, pause and spend cap. An account never written answers as a fresh `go` account, without being created.",
    request: { params: AccountParams },
    responses: { 200: json(AccountSummary, "account summary"), ...errorResponses },
  }),
  async (c) => reply(c, await account(c, c.req.valid("param").id).summary()),
);

accountRoutes.openapi(
  createRoute({
    method: "post",
    path: "/v1/accounts/{id}/consume",
    tags: ["metering"],
    ...mutating,
    operationId: "consume",
    summary: "Decide and charge a request",
    description:
      "Prices `usage` with the current rate card (or takes `cost`) and charges it through the waterfall: the product's windows, then credit grants, then flex. Allowed: 200 with each layer's part. Denied: 429 with the reason and `Retry-After`; nothing is charged. The same `Idempotency-Key` and payload replay the first answer.",
    request: { params: AccountParams, query: IncludeQuery, body: jsonBody(ConsumeBody) },
    responses: {
      200: json(Decision, "allowed: each layer's part is charged", decisionHeaders),
      429: json(Denial, "denied: nothing charged", denialHeaders),
      ...errorResponses,
      ...conflicts("amount_out_of_range"),
    },
  }),
  async (c) => reply(c, await account(c, c.req.valid("param").id).consume(chargeFrom(c.req.valid("json")))),
);

accountRoutes.openapi(
  createRoute({
    method: "post",
    path: "/v1/accounts/{id}/credits",
    tags: ["billing"],
    ...mutating,
    operationId: "addCredits",
    summary: "Grant credits",
    description:
      "Adds a promo, entitlement or purchase grant. Purchases expire after 12 months unless `expiresAt` says otherwise; promos must carry `expiresAt`. With `topUpId` it confirms that pending auto top-up (once).",
    request: { params: AccountParams, body: jsonBody(GrantBody) },
    responses: {
      201: json(GrantCreated, "the grant", replayHeaders),
      ...errorResponses,
      ...conflicts("topup_unknown", "amount_out_of_range"),
    },
  }),
  async (c) => reply(c, await account(c, c.req.valid("param").id).addCredits(grantFrom(c.req.valid("json")))),
);

accountRoutes.openapi(
  createRoute({
    method: "put",
    path: "/v1/accounts/{id}/plan",
    tags: ["billing"],
    ...mutating,
    operationId: "setPlan",
    summary: "Change the plan",
    description:
      "Moves the account to another plan; window limits, banked-reset accrual and flex follow the new plan from now on.",
    request: { params: AccountParams, body: jsonBody(PlanBody) },
    responses: {
      200: json(AccountSummary, "the account after the change", replayHeaders),
      ...errorResponses,
      ...conflicts(),
    },
  }),
  async (c) => reply(c, await account(c, c.req.valid("param").id).setPlan(c.req.valid("json").plan)),
);

accountRoutes.openapi(
  createRoute({
    method: "put",
    path: "/v1/accounts/{id}/auto-top-up",
    tags: ["billing"],
    ...mutating,
    operationId: "setAutoTopUp",
    summary: "Configure auto top-up",
    description:
      "Plans `plus` and `pro` only. When a credit spend leaves the balance below `threshold`, one `topup.requested` event asks the billing system for `amount`, at most `maxPerMonth` times per UTC month.",
    request: { params: AccountParams, body: jsonBody(AutoTopUpBody) },
    responses: {
      200: json(AccountSummary, "the account after the change", replayHeaders),
      ...errorResponses,
      ...conflicts("auto_top_up_not_allowed"),
    },
  }),
  async (c) => reply(c, await account(c, c.req.valid("param").id).setAutoTopUp(c.req.valid("json"))),
);

accountRoutes.openapi(
  createRoute({
    method: "put",
    path: "/v1/accounts/{id}/spend-cap",
    tags: ["billing"],
    ...mutating,
    operationId: "setSpendCap",
    summary: "Set the daily spend cap",
    description:
      "Caps credit spend (grants and flex, held credits included) per UTC day; requests beyond it are denied `spend_cap`. `null` removes the cap.",
    request: { params: AccountParams, body: jsonBody(SpendCapBody) },
    responses: {
      200: json(AccountSummary, "the account after the change", replayHeaders),
      ...errorResponses,
      ...conflicts(),
    },
  }),
  async (c) => reply(c, await account(c, c.req.valid("param").id).setSpendCap(c.req.valid("json").dailyLimit)),
);

accountRoutes.openapi(
  createRoute({
    method: "post",
    path: "/v1/accounts/{id}/resets",
    tags: ["resets"],
    ...mutating,
    operationId: "redeemBankedReset",
    summary: "Use a banked reset",
    description:
      "Redeems the soonest-expiring banked reset and empties both windows of `product`. Refused when none is available, or when the windows are already empty (the reset is kept).",
    request: { params: AccountParams, body: jsonBody(BankedResetBody) },
    responses: {
      200: json(BankedResetRedeemed, "a banked reset was used", replayHeaders),
      ...errorResponses,
      ...conflicts("no_banked_reset", "nothing_to_reset"),
    },
  }),
  async (c) => reply(c, await account(c, c.req.valid("param").id).redeemBankedReset(c.req.valid("json").product)),
);
