import { OpenAPIHono } from "@hono/zod-openapi";
import { bodyLimit } from "hono/body-limit";
import { HTTPException } from "hono/http-exception";
import { idempotencyKey, requestScope, requireToken, type AppEnv } from "./http/context";
import { ApiError, errorBody } from "./http/errors";
import { API_DOCUMENT, describeApi } from "./openapi";
import { accountRoutes } from "./routes/accounts";
import { consoleRoutes } from "./routes/console";
import { docsRoutes } from "./routes/docs";
import { adminRoutes } from "./routes/admin";
import { holdRoutes } from "./routes/holds";
import { ledgerRoutes } from "./routes/ledger";
import { orgRoutes } from "./routes/orgs";
import { panelRoutes } from "./routes/panel";
import { catalogRoutes, publicRoutes } from "./routes/public";

/** Request bodies above this size are refused with 413 before they are read. */
export const MAX_BODY_BYTES = 16 * 1024;

type ZodIssueLike = { path: PropertyKey[]; message: string };

/** The one app: every route, the auth, validation and error shape. */
export function createApp(): OpenAPIHono<AppEnv> {
  const app = new OpenAPIHono<AppEnv>({
    defaultHook: (result) => {
      if (!result.success) {
        const issues = (result.error as { issues: ZodIssueLike[] }).issues.map((i) => ({
          path: i.path.map(String).join("."),
          message: i.message,
        }));
        throw new ApiError(
          "invalid_request",
          issues.map((i) => (i.path ? `${i.path}: ${i.message}` : i.message)).join("; "),
          { issues },
        );
      }
    },
  });

  app.use("*", requestScope);
  app.use(
    "*",
    bodyLimit({
      maxSize: MAX_BODY_BYTES,
      onError: () => {
        throw new ApiError("payload_too_large", `request bodies are limited to ${MAX_BODY_BYTES} bytes`);
      },
    }),
  );
  app.use("/v1/admin/*", requireToken("admin"));
  app.use("/v1/accounts/*", requireToken("service"));
  app.use("/v1/orgs/*", requireToken("service"));
  app.use("/v1/catalog", requireToken("service"));
  app.use("/v1/*", idempotencyKey);

  app.route("/", publicRoutes);
  app.route("/", catalogRoutes);
  app.route("/", accountRoutes);
  app.route("/", holdRoutes);
  app.route("/", ledgerRoutes);
  app.route("/", adminRoutes);
  app.route("/", orgRoutes);
  app.route("/", panelRoutes);

  describeApi(app);
  app.doc31("/openapi.json", API_DOCUMENT);

  app.route("/", docsRoutes);
  app.route("/", consoleRoutes);

  app.notFound((c) => c.json(errorBody("not_found", "no such route", c.get("requestId") ?? crypto.randomUUID()), 404));
  app.onError((err, c) => {
    const requestId = c.get("requestId") ?? crypto.randomUUID();
    c.header("X-Request-Id", requestId);
    if (err instanceof ApiError) return c.json(errorBody(err.code, err.message, requestId, err.details), err.status);
    if (err instanceof HTTPException && err.status === 413)
      return c.json(errorBody("payload_too_large", "request body too large", requestId), 413);
    if (err instanceof HTTPException && err.status < 500) {
      const message = err.status === 400 ? "the request body is not valid JSON" : "the request is not valid";
      return c.json(errorBody("invalid_request", message, requestId), 400);
    }
    // Unknown errors are logged with the request id and answered without internals.
    console.error(
      JSON.stringify({
        event: "internal_error",
        requestId,
        error: err instanceof Error ? `${err.name}: ${err.message}` : String(err),
        stack: err instanceof Error ? err.stack : undefined,
      }),
    );
    return c.json(errorBody("internal_error", "internal error", requestId), 500);
  });
  return app;
}
