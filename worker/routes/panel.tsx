import { createRoute, OpenAPIHono, z } from "@hono/zod-openapi";
import type { Outcome } from "../../durable-objects/types";
import type { AppEnv } from "../context";
import { accountStub, callContext, respond } from "../context";
import { ApiError } from "../errors";
import { iso } from "../core/time";
import { PanelError, PanelPage } from "../panel/page";
import { PANEL_TOKEN_TTL_SECONDS, signPanelToken, verifyPanelToken } from "../panel/token";
import { AccountParams, PanelLink, Product } from "../schemas";
import { baseErrors, conflicts, errorResponses, idempotencyHeader, jsonResponse as json, publicAccess, replayHeaders, requestIdHeaders, serviceAuth } from "./common";

export const panelRoutes = new OpenAPIHono<AppEnv>();

/**
 * The panel's pages are inline CSS only (see Document in panel/page.tsx): no scripts, nothing fetched. They carry
 * a state-changing form, so no other site may frame them; the URL carries the link token, so no Referer, no cache.
 */
const PANEL_CSP = "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'";

// "/panel/*" also matches "/panel". Set after next() so error and 404 answers carry the headers too.
panelRoutes.use("/panel/*", async (c, next) => {
  await next();
  c.res.headers.set("Content-Security-Policy", PANEL_CSP);
  c.res.headers.set("X-Frame-Options", "DENY");
  c.res.headers.set("Cache-Control", "no-store");
  c.res.headers.set("Referrer-Policy", "no-referrer");
});

function panelSecret(env: Env): string {
  if (!env.PANEL_SECRET) throw new ApiError("forbidden", "usage panel links are disabled: PANEL_SECRET is not set");
  return env.PANEL_SECRET;
}

panelRoutes.openapi(
  createRoute({
    method: "post", path: "/v1/accounts/{id}/panel-token", tags: ["panel"], ...serviceAuth, parameters: [idempotencyHeader],
    operationId: "createPanelLink", summary: "Sign a usage-panel link",
    description: "A link to the account's usage panel, signed with `PANEL_SECRET` and valid for 15 minutes, for this account only. 403 while `PANEL_SECRET` is not set.",
    request: { params: AccountParams },
    responses: { 200: json(PanelLink, "a short-lived signed panel link", replayHeaders), ...errorResponses, ...conflicts() },
  }),
  async (c) => {
    const { id } = c.req.valid("param");
    const expiresAt = c.get("now") + PANEL_TOKEN_TTL_SECONDS * 1000;
    const token = await signPanelToken(panelSecret(c.env), id, expiresAt);
    const base = c.env.PANEL_BASE_URL || new URL(c.req.url).origin;
    const link = { token, url: `${base}/panel?token=${encodeURIComponent(token)}`, expiresAt: iso(expiresAt) };
    return respond(c, await accountStub(c, id).issuePanelLink(await callContext(c, id), link)) as never;
  },
);

panelRoutes.openapi(
  createRoute({
    method: "get", path: "/panel", tags: ["panel"], ...publicAccess,
    operationId: "getPanel", summary: "The usage panel",
    description: "Renders the account's usage panel server-side from the signed link's `token`: windows, banked resets with a form to use one, credits, auto top-up and a 7-day spend chart. No script; never framed.",
    request: { query: z.object({ token: z.string().max(1000).optional(), notice: z.string().max(40).optional() }) },
    responses: {
      200: { description: "the HTML usage panel", headers: requestIdHeaders, content: { "text/html": { schema: z.string() } } },
      401: { description: "expired or tampered link (HTML)", headers: requestIdHeaders, content: { "text/html": { schema: z.string() } } },
      ...baseErrors,
    },
  }),
  async (c) => {
    const { token, notice } = c.req.valid("query");
    const accountId = token && c.env.PANEL_SECRET ? await verifyPanelToken(c.env.PANEL_SECRET, token, c.get("now")) : null;
    if (!accountId) return c.html(<PanelError message="This usage link has expired or is not valid. Ask the product for a new one." />, 401) as never;
    const stub = accountStub(c, accountId);
    const ctx = await callContext(c, accountId);
    const outcome: Outcome = await stub.summary(ctx);
    const spend = await stub.spendByDay(ctx, 7);
    return c.html(<PanelPage summary={outcome.body} spend={spend} token={token!} now={c.get("now")} billingUrl={c.env.BILLING_URL} notice={notice} />, 200) as never;
  },
);

/**
 * The panel's same-origin form: the signed token is the credential, the form's nonce the idempotency key. A plain
 * route, left out of /openapi.json: the panel's own form posts it, and it answers with a redirect or an HTML page.
 */
panelRoutes.post("/panel/resets", async (c) => {
  const badForm = () => c.html(<PanelError heading="This form could not be read" message="Go back to your usage page, reload it and try again." />, 400);
  // parseBody() ignores other types (a text/plain form would read as "no token") and throws on a broken multipart body.
  const type = (c.req.header("Content-Type") ?? "").split(";")[0].trim().toLowerCase();
  if (type !== "application/x-www-form-urlencoded" && type !== "multipart/form-data") return badForm();
  let form: Awaited<ReturnType<typeof c.req.parseBody>>;
  try {
    form = await c.req.parseBody();
  } catch {
    return badForm();
  }
  const token = typeof form.token === "string" ? form.token : "";
  const accountId = c.env.PANEL_SECRET ? await verifyPanelToken(c.env.PANEL_SECRET, token, c.get("now")) : null;
  if (!accountId) return c.html(<PanelError message="This usage link has expired or is not valid. Ask the product for a new one." />, 401);
  const product = Product.safeParse(form.product);
  const nonce = typeof form.nonce === "string" && /^[A-Za-z0-9-]{1,64}$/.test(form.nonce) ? form.nonce : null;
  if (!product.success || !nonce) return badForm();
  const ctx = { ...(await callContext(c, accountId)), idempotency: { key: `panel:${nonce}`, fingerprint: `panel-reset:${product.data}` } };
  const outcome = await accountStub(c, accountId).redeemBankedReset(ctx, product.data);
  const notice = outcome.error ? outcome.error.code : "reset_used";
  return c.redirect(`/panel?token=${encodeURIComponent(token)}&notice=${notice}`, 303);
});
