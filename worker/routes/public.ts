import { createRoute, OpenAPIHono } from "@hono/zod-openapi";
import { catalog } from "../catalog";
import type { AppEnv } from "../http/context";
import { CatalogView, Health } from "../schemas";
import { baseErrors, errorResponses, jsonResponse as json, publicAccess, serviceAuth } from "./common";

export const publicRoutes = new OpenAPIHono<AppEnv>();

publicRoutes.openapi(
  createRoute({
    method: "get",
    path: "/health",
    tags: ["public"],
    ...publicAccess,
    operationId: "health",
    summary: "Liveness",
    description: "Answers `{ ok: true }` while the worker runs; it touches no storage.",
    responses: { 200: json(Health, "alive"), ...baseErrors },
  }),
  (c) => c.json({ ok: true }, 200),
);

export const catalogRoutes = new OpenAPIHono<AppEnv>();

catalogRoutes.openapi(
  createRoute({
    method: "get",
    path: "/v1/catalog",
    tags: ["catalog"],
    ...serviceAuth,
    operationId: "getCatalog",
    summary: "Plans and rate card",
    description:
      "Every plan's window allowances per product, banked-reset accrual, auto top-up and flex limit, and the current rate card (micro-credits per million units of each meter) with its version.",
    responses: { 200: json(CatalogView, "plans and the current rate card"), ...errorResponses },
  }),
  (c) => c.json({ plans: catalog.plans, rateCard: catalog.rateCard }, 200),
);
