import { createRoute, OpenAPIHono, z } from "@hono/zod-openapi";
import { catalog } from "../catalog";
import type { AppEnv } from "../context";
import { errorResponses } from "./common";

export const publicRoutes = new OpenAPIHono<AppEnv>();

publicRoutes.openapi(
  createRoute({ method: "get", path: "/health", tags: ["public"], responses: { 200: { description: "alive", content: { "application/json": { schema: z.object({ ok: z.boolean() }) } } } } }),
  (c) => c.json({ ok: true }, 200),
);

export const catalogRoutes = new OpenAPIHono<AppEnv>();

catalogRoutes.openapi(
  createRoute({
    method: "get", path: "/v1/catalog", tags: ["catalog"], security: [{ bearer: [] }],
    responses: { 200: { description: "plans and the current rate card", content: { "application/json": { schema: z.record(z.string(), z.unknown()) } } }, ...errorResponses },
  }),
  (c) => c.json({ plans: catalog.plans, rateCard: catalog.rateCard }, 200),
);
