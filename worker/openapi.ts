import { z, type OpenAPIHono } from "@hono/zod-openapi";
import type { AppEnv } from "./http/context";
import { baseErrors, requestIdHeaders } from "./routes/common";

/**
 * The document-level parts of `/openapi.json` (SPEC §8): info, servers, tags, the two security schemes and the
 * response headers every route refers to. The routes themselves are described where they are defined.
 * `docs/openapi.json` is this document as committed; `npm run openapi:write` rewrites it.
 */
export const API_DOCUMENT = {
  openapi: "3.1.0",
  info: {
    title: "Usage access engine",
    version: "1.0.0",
    description: [
      'For every AI-product request the engine answers "how much is allowed, and from where?": the plan\'s 5-hour and',
      "weekly windows first, then promotional, entitlement and purchased credit grants, then postpaid flex overage.",
      "It charges exactly once and settles every charge into a ledger.",
      "",
      "Every amount is an integer of micro-credits (1 credit = 1,000,000). Every `POST` and `PUT` carries an",
      "`Idempotency-Key`: the same key and payload replay the first answer with `Idempotent-Replayed: true`.",
      "Errors share one shape, `{ error: { code, message, requestId, details? } }`.",
    ].join("\n"),
    license: { name: "Proprietary", identifier: "LicenseRef-Proprietary" },
  },
  // Relative: the engine that serves this document (so Swagger UI at /docs calls the same origin, deployed or local).
  servers: [
    {
      url: "/",
      description: "The engine serving this document; `npm start` runs one locally at http://localhost:8787",
    },
  ],
  tags: [
    { name: "metering", description: "Decide a request: charge it now through the waterfall, or deny it with 429." },
    {
      name: "holds",
      description: "Reserve an estimate before long work, then settle at the actual cost or release it.",
    },
    { name: "accounts", description: "Read an account: windows, credits, banked resets, holds, guards." },
    {
      name: "billing",
      description: "Credit grants, plan changes, auto top-up and the daily spend cap, for the billing system.",
    },
    { name: "resets", description: "Banked resets an account redeems to empty one product's windows." },
    { name: "ledger", description: "Settled ledger entries, from the D1 ledger." },
    { name: "catalog", description: "Plans and the current rate card." },
    { name: "panel", description: "The signed, server-rendered usage panel for end users." },
    {
      name: "organizations",
      description:
        "Organizations pool credits for their member accounts (SPEC §9): the pool's grants and flex, members and their pool limits.",
    },
    {
      name: "admin",
      description: "Operator routes: global resets, resuming paused accounts, refunds, reconciliation.",
    },
    { name: "public", description: "Unauthenticated routes: health and this document." },
  ],
};

/** Registers the security schemes, shared headers and the document's own route. */
export function describeApi(app: OpenAPIHono<AppEnv>): void {
  const registry = app.openAPIRegistry;
  registry.registerComponent("securitySchemes", "service", {
    type: "http",
    scheme: "bearer",
    description:
      "`SERVICE_TOKEN`: product backends and the billing system. Unset, every service route answers 401; the admin token gets 403.",
  });
  registry.registerComponent("securitySchemes", "admin", {
    type: "http",
    scheme: "bearer",
    description:
      "`ADMIN_TOKEN`: operators (`/v1/admin/*`). Unset, every admin route answers 401; the service token gets 403.",
  });
  registry.registerComponent("headers", "X-Request-Id", {
    description:
      "The request's id, on every answer; errors carry it as `error.requestId` and the logs under `requestId`.",
    required: true,
    schema: { type: "string", format: "uuid" },
  });
  registry.registerComponent("headers", "Idempotent-Replayed", {
    description:
      "`true` when this answer replays the first answer given to the same `Idempotency-Key` and payload; absent otherwise.",
    schema: { type: "string", enum: ["true"] },
  });
  registry.registerComponent("headers", "Retry-After", {
    description:
      "Seconds until a window end would admit the request; 60 when no window end would (a pause, or a cost above every window).",
    required: true,
    schema: { type: "integer", minimum: 0 },
  });
  registry.registerComponent("headers", "RateLimit-Policy", {
    description:
      "The product's two windows as quota policies (draft-ietf-httpapi-ratelimit-headers): a structured-field list, one item per window, with `q` the quota in micro-credits and `w` the window in seconds.",
    schema: { type: "string" },
    example: '"codex.fiveHour";q=10000000;w=18000, "codex.weekly";q=50000000;w=604800',
  });
  registry.registerComponent("headers", "RateLimit", {
    description:
      "What the product's two windows have left (draft-ietf-httpapi-ratelimit-headers): one item per policy of `RateLimit-Policy`, with `r` the remaining micro-credits and `t` the seconds until the window resets (absent while the window is not open).",
    schema: { type: "string" },
    example: '"codex.fiveHour";r=2500000;t=1200, "codex.weekly";r=42500000;t=600000',
  });
  registry.registerPath({
    method: "get",
    path: "/openapi.json",
    operationId: "getOpenApiDocument",
    summary: "This API description",
    description:
      "The OpenAPI 3.1 document, generated from the same zod schemas that validate requests. `docs/openapi.json` is its committed copy.",
    tags: ["public"],
    security: [],
    responses: {
      200: {
        description: "the OpenAPI document",
        headers: requestIdHeaders,
        content: { "application/json": { schema: z.record(z.string(), z.unknown()) } },
      },
      ...baseErrors,
    },
  });
}
