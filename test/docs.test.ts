import { describe, expect, it } from "vitest";
import { exports } from "cloudflare:workers";

const ORIGIN = "https://engine.test";
const get = (path: string) => exports.default.fetch(`${ORIGIN}${path}`);

/** Every URL the page fetches: script src, stylesheet/icon href (a data: URL is not fetched from anywhere). */
function referencedUrls(html: string): string[] {
  return [...html.matchAll(/<(?:script|link)\b[^>]*?\b(?:src|href)="([^"]+)"/g)]
    .map((m) => m[1])
    .filter((u) => !u.startsWith("data:"));
}

describe("API reference (/docs) works offline", () => {
  it("is an HTML page with no external URL, no inline script, under a tight CSP", async () => {
    const res = await get("/docs");
    expect(res.status).toBe(200);
    expect(res.headers.get("Content-Type")).toMatch(/^text\/html\b/);
    const html = await res.text();
    expect(html).not.toMatch(/https?:\/\//i);
    expect(html).toMatch(/^<!doctype html>/i);
    expect(html).not.toMatch(/(^|["'(\s])\/\//m); // no protocol-relative URL either
    // every script is a same-origin file: no inline code
    const scripts = [...html.matchAll(/<script\b([^>]*)>([\s\S]*?)<\/script>/gi)];
    expect(scripts.length).toBeGreaterThan(0);
    for (const [, attrs, body] of scripts) {
      expect(attrs).toMatch(/\bsrc="\//);
      expect(body.trim()).toBe("");
    }
    const csp = res.headers.get("Content-Security-Policy") ?? "";
    expect(csp).toMatch(/(^|;)\s*default-src 'none'\s*(;|$)/);
    expect(csp).toMatch(/(^|;)\s*script-src 'self'\s*(;|$)/);
    expect(csp).toMatch(/(^|;)\s*connect-src 'self'\s*(;|$)/);
    expect(csp).toMatch(/(^|;)\s*frame-ancestors 'none'\s*(;|$)/);
    expect(csp).not.toMatch(/unsafe-eval|https?:|\*/);
    expect(res.headers.get("X-Content-Type-Options")).toBe("nosniff");
  });

  it("serves every asset the page references itself, with the right type and caching", async () => {
    const html = await (await get("/docs")).text();
    const urls = referencedUrls(html);
    expect(urls.some((u) => u.endsWith(".css"))).toBe(true);
    expect(urls.filter((u) => u.endsWith(".js")).length).toBeGreaterThanOrEqual(2);
    for (const url of urls) {
      expect(url, "a same-origin absolute path").toMatch(/^\/[^/]/);
      const res = await get(url);
      expect(res.status, url).toBe(200);
      const type = res.headers.get("Content-Type") ?? "";
      if (url.endsWith(".css")) expect(type, url).toMatch(/^text\/css\b/);
      else if (url.endsWith(".js")) expect(type, url).toMatch(/^(text|application)\/javascript\b/);
      expect(res.headers.get("X-Content-Type-Options"), url).toBe("nosniff");
      const body = await res.text();
      expect(body.length, url).toBeGreaterThan(0);
      expect(body, url).not.toMatch(/sourceMappingURL=/); // no request for a map the worker does not serve
      // the pinned library's files are versioned in their path and cached for good; the rest revalidates
      if (/\/\d+\.\d+\.\d+\//.test(url))
        expect(res.headers.get("Cache-Control"), url).toMatch(/max-age=31536000.*immutable/);
      else expect(res.headers.get("Cache-Control"), url).toMatch(/no-cache/);
    }
    const bundle = urls.find((u) => u.endsWith("swagger-ui-bundle.js"));
    expect(bundle).toBeDefined();
    expect(await (await get(bundle!)).text()).toContain("SwaggerUIBundle");
    // the init script points Swagger UI at the engine's own document
    const init = urls.find((u) => u.endsWith(".js") && !u.endsWith("swagger-ui-bundle.js"));
    expect(await (await get(init!)).text()).toContain('"/openapi.json"');
  });

  it("answers 404 for an unknown asset, and keeps the docs routes out of /openapi.json", async () => {
    expect((await get("/docs/0.0.0/nope.js")).status).toBe(404);
    expect((await get("/docs/nope.js")).status).toBe(404);
    const spec = (await (await get("/openapi.json")).json()) as { paths: Record<string, unknown> };
    expect(Object.keys(spec.paths).filter((p) => p.startsWith("/docs"))).toEqual([]);
  });
});
