import type { RouteConfig } from "@hono/zod-openapi";
export { chargeOf } from "../core/pricing";
import { ErrorShape } from "../schemas";

/** The error responses every authenticated route can give, for the OpenAPI document. */
export const errorResponses = {
  400: { description: "invalid_request or test_clock_disabled", content: { "application/json": { schema: ErrorShape } } },
  401: { description: "missing or invalid token", content: { "application/json": { schema: ErrorShape } } },
  403: { description: "the other role's token", content: { "application/json": { schema: ErrorShape } } },
  413: { description: "body too large", content: { "application/json": { schema: ErrorShape } } },
} satisfies RouteConfig["responses"];

export const conflictResponse = { 409: { description: "named conflict", content: { "application/json": { schema: ErrorShape } } } } satisfies RouteConfig["responses"];
export const notFoundResponse = { 404: { description: "not found", content: { "application/json": { schema: ErrorShape } } } } satisfies RouteConfig["responses"];

export const idempotencyHeader = {
  name: "Idempotency-Key",
  in: "header" as const,
  required: true,
  schema: { type: "string" as const, maxLength: 255 },
  description: "Scoped to the account and kept at least 24 h. The same key and payload replays the first answer.",
};

export const jsonBody = <T>(schema: T) => ({ content: { "application/json": { schema } }, required: true });
export const jsonResponse = <T>(schema: T, description: string) => ({ description, content: { "application/json": { schema } } });
