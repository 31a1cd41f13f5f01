import type { RouteConfig } from "@hono/zod-openapi";
import type { ErrorCode } from "../http/errors";
import { ErrorShape } from "../schemas";

/** Shared response headers, defined once under `components.headers` (worker/openapi.ts). */
const header = (name: "X-Request-Id" | "Idempotent-Replayed" | "Retry-After" | "RateLimit-Policy" | "RateLimit") => ({
  $ref: `#/components/headers/${name}`,
});
/** On every answer. */
export const requestIdHeaders = { "X-Request-Id": header("X-Request-Id") };
/** On the answers an `Idempotency-Key` replays: those of a mutating route that got past validation and auth. */
export const replayHeaders = { ...requestIdHeaders, "Idempotent-Replayed": header("Idempotent-Replayed") };
/** On a decision (consume, holds): the product's two windows (draft-ietf-httpapi-ratelimit-headers). */
export const decisionHeaders = {
  ...replayHeaders,
  "RateLimit-Policy": header("RateLimit-Policy"),
  RateLimit: header("RateLimit"),
};
/** On a denial. */
export const denialHeaders = { ...decisionHeaders, "Retry-After": header("Retry-After") };

type ResponseHeaders = Record<string, { $ref: string }>;

const codes = (list: readonly ErrorCode[]) => list.map((c) => `\`${c}\``).join(", ");
const errorResponse = (description: string, headers: ResponseHeaders = requestIdHeaders) => ({
  description,
  headers,
  content: { "application/json": { schema: ErrorShape } },
});

/** The error responses of every route: a bad input, header or test clock, and an unexpected failure. */
export const baseErrors = {
  400: errorResponse(
    "`invalid_request`: a parameter, header or body is not valid (`details.issues` lists each problem); `test_clock_disabled`: `X-Test-Now` was sent while the test clock is disabled",
  ),
  500: errorResponse(
    "`internal_error`: an unexpected failure; the message never carries internals, the logs carry the `requestId`",
  ),
} satisfies RouteConfig["responses"];

/** The error responses every authenticated route can give. */
export const errorResponses = {
  ...baseErrors,
  401: errorResponse(
    "`unauthorized`: no Bearer token, a token that is not valid, or the route's token is not configured (the engine fails closed)",
  ),
  403: errorResponse("`forbidden`: the other role's token"),
  413: errorResponse("`payload_too_large`: the body is above 16 KiB"),
} satisfies RouteConfig["responses"];

/** 409 of a mutating route: a reused `Idempotency-Key`, or one of the route's named conflicts. Replayed like any answer. */
export const conflicts = (...named: ErrorCode[]) =>
  ({
    409: errorResponse(
      `${codes(["idempotency_conflict", ...named])}: ${named.length > 0 ? "a named refusal (nothing changed), or " : ""}the \`Idempotency-Key\` was used with a different request`,
      replayHeaders,
    ),
  }) satisfies RouteConfig["responses"];
/** The admin global reset keeps its own idempotency records: its 409 is not a replay. */
export const keyConflict = {
  409: errorResponse("`idempotency_conflict`: the `Idempotency-Key` was used with a different request"),
} satisfies RouteConfig["responses"];
/** 404 of a mutating route, replayed like any answer. */
export const notFound = (code: ErrorCode, what: string) =>
  ({ 404: errorResponse(`\`${code}\`: ${what}`, replayHeaders) }) satisfies RouteConfig["responses"];

/** Every mutating call carries one (SPEC §8); 1–255 visible ASCII characters, or the answer is 400. */
export const idempotencyHeader = {
  name: "Idempotency-Key",
  in: "header" as const,
  required: true,
  schema: { type: "string" as const, minLength: 1, maxLength: 255, pattern: "^[\\x21-\\x7e]+$" },
  description:
    "Scoped to the account (the global reset keeps its own) and kept 48 h. The same key and payload replay the first answer with `Idempotent-Replayed: true`; the same key with another payload is 409. A request refused with 400, 401, 403 or 413 does not use the key up.",
};

/** Bearer tokens: product backends and billing (`service`), operators (`admin`); public routes need none. */
export const serviceAuth = { security: [{ service: [] }] };
export const adminAuth = { security: [{ admin: [] }] };
export const publicAccess = { security: [] };

export const jsonBody = <T>(schema: T) => ({ content: { "application/json": { schema } }, required: true });
export const jsonResponse = <T>(schema: T, description: string, headers: ResponseHeaders = requestIdHeaders) => ({
  description,
  headers,
  content: { "application/json": { schema } },
});
