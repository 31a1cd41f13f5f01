import { ledgerFor } from "../settlement/shards";
import { createRoute, OpenAPIHono, z } from "@hono/zod-openapi";
import type { MiddlewareHandler } from "hono";
import { account } from "../http/account";
import { org } from "../http/org";
import type { AppContext, AppEnv } from "../http/context";
import { ApiError } from "../http/errors";
import { bodyOf, reply } from "../http/reply";
import type { PanelLink as PanelLinkBody } from "../core/account/answers";
import { iso } from "../core/time";
import { type ActivityEntry, PanelError, PanelPage } from "../panel/page";
import { OrgPanelPage } from "../panel/org-page";
import { addCreditsUrl, panelReturnUrl } from "../panel/links";
import { TIME_SCRIPT } from "../panel/time-script";
import { PANEL_TOKEN_TTL_SECONDS, type PanelScope, signPanelToken, verifyPanelToken } from "../panel/token";
import { AccountParams, OrgParams, PanelLink, Product } from "../schemas";
import {
  baseErrors,
  conflicts,
  errorResponses,
  idempotencyHeader,
  jsonResponse as json,
  notFound,
  publicAccess,
  replayHeaders,
  requestIdHeaders,
  serviceAuth,
} from "./common";

export const panelRoutes = new OpenAPIHono<AppEnv>();

/**
 * The panel's pages are inline CSS plus one same-origin script, /panel/time.js (local times, an enhancement: the
 * page works without it); no inline script, nothing else fetched (see Document in panel/page.tsx). They carry a
 * state-changing form, so no other site may frame them; the URL carries the link token, so no Referer, no cache.
 */
const PANEL_CSP =
  "default-src 'none'; script-src 'self'; style-src 'unsafe-inline'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'";

/** Recent activity: the account's last settled ledger entries (the ledger index is (account_id, seq)). */
const ACTIVITY_LIMIT = 20;

const INVALID_LINK = "This usage link has expired or is not valid. Ask the product for a new one.";

// "/panel/*" also matches "/panel" (and "/org-panel/*" "/org-panel"). Set after next() so error and 404 answers carry
// the headers too.
const lockdown: MiddlewareHandler<AppEnv> = async (c, next) => {
  await next();
  c.res.headers.set("Content-Security-Policy", PANEL_CSP);
  c.res.headers.set("X-Frame-Options", "DENY");
  c.res.headers.set("Cache-Control", "no-store");
  c.res.headers.set("Referrer-Policy", "no-referrer");
  c.res.headers.set("X-Content-Type-Options", "nosniff");
};
panelRoutes.use("/panel/*", lockdown);
panelRoutes.use("/org-panel/*", lockdown);

function panelSecret(env: Env): string {
  if (!env.PANEL_SECRET) throw new ApiError("forbidden", "usage panel links are disabled: PANEL_SECRET is not set");
  return env.PANEL_SECRET;
}

/** Where each scope's link opens. */
const PANEL_PAGES: Record<PanelScope, string> = { account: "/panel", org: "/org-panel" };

/**
 * A link to an account's usage panel or an organization's panel, signed with its scope for PANEL_TOKEN_TTL_SECONDS
 * from the request's clock.
 */
async function panelLink(c: AppContext, scope: PanelScope, id: string): Promise<PanelLinkBody> {
  const expiresAt = c.get("now") + PANEL_TOKEN_TTL_SECONDS * 1000;
  const token = await signPanelToken(panelSecret(c.env), scope, id, expiresAt);
  const base = c.env.PANEL_BASE_URL || new URL(c.req.url).origin;
  return { token, url: `${base}${PANEL_PAGES[scope]}?token=${encodeURIComponent(token)}`, expiresAt: iso(expiresAt) };
}

panelRoutes.openapi(
  createRoute({
    method: "post",
    path: "/v1/accounts/{id}/panel-token",
    tags: ["panel"],
    ...serviceAuth,
    parameters: [idempotencyHeader],
    operationId: "createPanelLink",
    summary: "Sign a usage-panel link",
    description:
      "A link to the account's usage panel, signed with `PANEL_SECRET` and valid for 15 minutes, for this account only. 403 while `PANEL_SECRET` is not set.",
    request: { params: AccountParams },
    responses: {
      200: json(PanelLink, "a short-lived signed panel link", replayHeaders),
      ...errorResponses,
      ...conflicts(),
    },
  }),
  async (c) => {
    const { id } = c.req.valid("param");
    return reply(c, await account(c, id).issuePanelLink(await panelLink(c, "account", id)));
  },
);

panelRoutes.openapi(
  createRoute({
    method: "get",
    path: "/panel",
    tags: ["panel"],
    ...publicAccess,
    operationId: "getPanel",
    summary: "The usage panel",
    description:
      "Renders the account's usage panel server-side from the signed link's `token`: windows and which limit is hit, banked resets (with a form to use one) and the next accrual, credits, holds, the spend cap, a 7-day usage and spending chart and recent activity. Works without script (one same-origin script shows local times); never framed.",
    request: { query: z.object({ token: z.string().max(1000).optional(), notice: z.string().max(40).optional() }) },
    responses: {
      200: {
        description: "the HTML usage panel",
        headers: requestIdHeaders,
        content: { "text/html": { schema: z.string() } },
      },
      401: {
        description: "expired or tampered link (HTML)",
        headers: requestIdHeaders,
        content: { "text/html": { schema: z.string() } },
      },
      ...baseErrors,
    },
  }),
  async (c) => {
    const { token, notice } = c.req.valid("query");
    // No token at all is where the billing page sends the user back to (the return URL carries no token).
    if (!token)
      return c.html(
        <PanelError
          heading="Open your usage page from the product"
          message="Usage pages open through short-lived personal links. Open your usage page again from the product, for example after adding credits."
        />,
        401,
      );
    const accountId = c.env.PANEL_SECRET
      ? await verifyPanelToken(c.env.PANEL_SECRET, token, c.get("now"), "account")
      : null;
    if (!accountId) return c.html(<PanelError message={INVALID_LINK} />, 401);
    const panel = account(c, accountId);
    const activity = recentActivity(ledgerFor(c.env, accountId), accountId, c.get("requestId"));
    const { result } = await panel.summary();
    const view = await panel.panelView(7);
    const href = addCreditsUrl(
      c.env.BILLING_URL,
      accountId,
      panelReturnUrl(c.env.PANEL_BASE_URL, new URL(c.req.url).origin),
    );
    return c.html(
      <PanelPage
        summary={bodyOf(result)}
        view={view}
        activity={await activity}
        token={token}
        now={c.get("now")}
        addCreditsHref={href}
        notice={notice}
      />,
      200,
    );
  },
);

/** The account's last settled ledger entries, newest first; null (and logged) when D1 cannot be read: the panel still renders. */
async function recentActivity(db: D1Database, accountId: string, requestId: string): Promise<ActivityEntry[] | null> {
  try {
    const { results } = await db
      .prepare(
        "SELECT kind, amount, layer, product, created_at FROM ledger WHERE account_id = ? ORDER BY seq DESC LIMIT ?",
      )
      .bind(accountId, ACTIVITY_LIMIT)
      .all<{ kind: string; amount: number; layer: string | null; product: string | null; created_at: number }>();
    return results.map((r) => ({
      kind: r.kind,
      amount: r.amount,
      layer: r.layer,
      product: r.product,
      createdAt: r.created_at,
    }));
  } catch (err) {
    console.error(
      JSON.stringify({
        event: "panel_activity_unavailable",
        requestId,
        error: err instanceof Error ? err.message : String(err),
      }),
    );
    return null;
  }
}

/** The panel's progressive enhancement (local times); a plain route, left out of /openapi.json like the form. */
panelRoutes.get("/panel/time.js", (c) =>
  c.body(TIME_SCRIPT, 200, { "Content-Type": "text/javascript; charset=utf-8" }),
);

/**
 * The panel's same-origin form: the signed token is the credential, the form's nonce the idempotency key. A plain
 * route, left out of /openapi.json: the panel's own form posts it, and it answers with a redirect or an HTML page.
 */
panelRoutes.post("/panel/resets", async (c) => {
  const badForm = () =>
    c.html(
      <PanelError
        heading="This form could not be read"
        message="Go back to your usage page, reload it and try again."
      />,
      400,
    );
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
  const accountId = c.env.PANEL_SECRET
    ? await verifyPanelToken(c.env.PANEL_SECRET, token, c.get("now"), "account")
    : null;
  if (!accountId) return c.html(<PanelError message={INVALID_LINK} />, 401);
  const product = Product.safeParse(form.product);
  const nonce = typeof form.nonce === "string" && /^[A-Za-z0-9-]{1,64}$/.test(form.nonce) ? form.nonce : null;
  if (!product.success || !nonce) return badForm();
  const idempotency = { key: `panel:${nonce}`, fingerprint: `panel-reset:${product.data}` };
  const { result } = await account(c, accountId, { idempotency }).redeemBankedReset(product.data);
  const notice = result.kind === "refused" ? result.refusal.code : "reset_used";
  return c.redirect(`/panel?token=${encodeURIComponent(token)}&notice=${notice}`, 303);
});

// ───────────────────────────── the organization panel ─────────────────────────────

const INVALID_ORG_LINK = "This organization link has expired or is not valid. Ask the product for a new one.";

panelRoutes.openapi(
  createRoute({
    method: "post",
    path: "/v1/orgs/{orgId}/panel-token",
    tags: ["panel"],
    ...serviceAuth,
    parameters: [idempotencyHeader],
    operationId: "createOrgPanelLink",
    summary: "Sign an organization-panel link",
    description:
      "A link to the organization's panel for its admins (the pool, the members' spend, the top spenders), signed with `PANEL_SECRET` and valid for 15 minutes, for this organization only: it does not open an account's usage panel, nor an account link this one. 404 `org_not_found` if there is no such organization; 403 while `PANEL_SECRET` is not set. The same `Idempotency-Key` and payload replay the first link.",
    request: { params: OrgParams },
    responses: {
      200: json(PanelLink, "a short-lived signed organization-panel link", replayHeaders),
      ...errorResponses,
      ...notFound("org_not_found", "no such organization"),
      ...conflicts(),
    },
  }),
  async (c) => {
    const { orgId } = c.req.valid("param");
    return reply(c, await org(c, orgId).issuePanelLink(await panelLink(c, "org", orgId)));
  },
);

panelRoutes.openapi(
  createRoute({
    method: "get",
    path: "/org-panel",
    tags: ["panel"],
    ...publicAccess,
    operationId: "getOrgPanel",
    summary: "The organization panel",
    description:
      "Renders the organization's panel server-side from the signed link's `token`: the pool (balance, leased, spent, granted, expired), flexible billing, whether pool spending is paused, the pool's grants, every member's pool spend today and this month with its limits and lease, and the top spenders of the month. Read-only; works without script (one same-origin script shows local times); never framed.",
    request: { query: z.object({ token: z.string().max(1000).optional() }) },
    responses: {
      200: {
        description: "the HTML organization panel",
        headers: requestIdHeaders,
        content: { "text/html": { schema: z.string() } },
      },
      401: {
        description: "missing, expired or tampered link, or a link to an account's panel (HTML)",
        headers: requestIdHeaders,
        content: { "text/html": { schema: z.string() } },
      },
      404: {
        description: "the link's organization does not exist (HTML)",
        headers: requestIdHeaders,
        content: { "text/html": { schema: z.string() } },
      },
      ...baseErrors,
    },
  }),
  async (c) => {
    const { token } = c.req.valid("query");
    const orgId =
      token && c.env.PANEL_SECRET ? await verifyPanelToken(c.env.PANEL_SECRET, token, c.get("now"), "org") : null;
    if (!orgId) return c.html(<PanelError message={INVALID_ORG_LINK} />, 401);
    const { result } = await org(c, orgId).view();
    if (result.kind === "refused")
      return c.html(
        <PanelError heading="No such organization" message="This link's organization does not exist." />,
        404,
      );
    return c.html(<OrgPanelPage org={result.body} now={c.get("now")} />, 200);
  },
);
