import { Hono, type Context } from "hono";
import swaggerUiBundle from "swagger-ui-dist/swagger-ui-bundle.js";
import swaggerUiCss from "swagger-ui-dist/swagger-ui.css";
import swaggerUiPackage from "swagger-ui-dist/package.json";
import type { AppEnv } from "../http/context";

/**
 * The API reference: Swagger UI rendering /openapi.json, served entirely by the engine so it works with no
 * network beyond the engine itself. The library's stylesheet and bundle come from the exactly pinned
 * swagger-ui-dist package, bundled into the worker as text modules (the `[[rules]]` in wrangler.toml); their
 * paths carry the package's version, so they are cached for good. The page and its start-up script are ours and
 * revalidate on every load. No inline script, no external URL: the page runs under a CSP that allows only itself.
 */
export const docsRoutes = new Hono<AppEnv>();

const ASSETS = `/docs/${swaggerUiPackage.version}`;
const CSS_PATH = `${ASSETS}/swagger-ui.css`;
const BUNDLE_PATH = `${ASSETS}/swagger-ui-bundle.js`;
const INIT_PATH = "/docs/init.js";

/** The page and its data URIs (the stylesheet's icons, the empty favicon) come from this origin alone. */
const DOCS_CSP = [
  "default-src 'none'",
  "script-src 'self'",
  "style-src 'self'",
  "img-src 'self' data:",
  "connect-src 'self'",
  "base-uri 'none'",
  "form-action 'none'",
  "frame-ancestors 'none'",
].join("; ");

const PAGE = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Usage access engine API</title>
<link rel="icon" href="data:,">
<link rel="stylesheet" href="${CSS_PATH}">
</head>
<body>
<noscript><p>This page needs JavaScript. The OpenAPI document it renders is <a href="/openapi.json">/openapi.json</a>.</p></noscript>
<div id="swagger-ui"></div>
<script src="${BUNDLE_PATH}"></script>
<script src="${INIT_PATH}"></script>
</body>
</html>
`;

// BaseLayout: no top bar (it only holds a URL box for loading other documents); no online validator badge.
const INIT = `"use strict";
window.ui = SwaggerUIBundle({
  url: "/openapi.json",
  dom_id: "#swagger-ui",
  deepLinking: true,
  presets: [SwaggerUIBundle.presets.apis],
  layout: "BaseLayout",
  validatorUrl: null,
});
`;

/** The stylesheet ends with a pointer to a source map the engine does not serve; drop it. */
const mapComment = swaggerUiCss.lastIndexOf("/*# sourceMappingURL=");
const CSS = mapComment < 0 ? swaggerUiCss : `${swaggerUiCss.slice(0, mapComment).trimEnd()}\n`;

const FOREVER = "public, max-age=31536000, immutable";
const REVALIDATE = "no-cache";

const asset = (body: string, type: string, cacheControl: string) => (c: Context<AppEnv>) =>
  c.body(body, 200, { "Content-Type": type, "Cache-Control": cacheControl, "X-Content-Type-Options": "nosniff" });

docsRoutes.get("/docs", (c) => {
  c.header("Content-Security-Policy", DOCS_CSP);
  c.header("X-Frame-Options", "DENY");
  c.header("X-Content-Type-Options", "nosniff");
  c.header("Referrer-Policy", "no-referrer");
  c.header("Cache-Control", REVALIDATE);
  return c.html(PAGE);
});
docsRoutes.get(INIT_PATH, asset(INIT, "text/javascript; charset=utf-8", REVALIDATE));
docsRoutes.get(BUNDLE_PATH, asset(swaggerUiBundle, "text/javascript; charset=utf-8", FOREVER));
docsRoutes.get(CSS_PATH, asset(CSS, "text/css; charset=utf-8", FOREVER));
