import type { RouteConfig } from "@hono/zod-openapi";
import { catalog, type Product } from "../catalog";
import { priceUsage, type Usage } from "../core/pricing";
import type { Charge } from "../../durable-objects/types";
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

/** `cost` as given, or `usage` priced with the current rate card. */
export function chargeOf(product: Product, body: { cost?: number; usage?: Usage }): Charge {
  if (body.cost !== undefined) return { product, cost: body.cost };
  const priced = priceUsage(catalog.rateCard, product, body.usage!);
  return { product, cost: priced.cost, rateCardVersion: priced.rateCardVersion };
}
