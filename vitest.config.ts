import { configDefaults, defineConfig } from "vitest/config";
import { cloudflareTest, readD1Migrations } from "@cloudflare/vitest-plugin";

/**
 * The tests' only network peer: a local webhook receiver on the host `webhook.test`.
 * POST /ok answers 200, POST /fail answers 500, GET /log lists every delivery received (with headers).
 * Any other outbound request fails, as it would with no internet.
 */
const deliveries: { path: string; headers: Record<string, string>; body: string }[] = [];
async function webhookReceiver(request: Request): Promise<Response> {
  const url = new URL(request.url);
  if (url.hostname !== "webhook.test") return new Response("no network in tests", { status: 502 });
  if (request.method === "GET" && url.pathname === "/log") return Response.json(deliveries);
  deliveries.push({ path: url.pathname, headers: Object.fromEntries(request.headers), body: await request.text() });
  return new Response(null, { status: url.pathname === "/fail" ? 500 : 200 });
}

export default defineConfig({
  plugins: [
    cloudflareTest(async () => ({
      wrangler: { configPath: "./wrangler.toml" },
      miniflare: {
        outboundService: webhookReceiver,
        bindings: {
          TEST_MIGRATIONS: await readD1Migrations("./migrations"),
          TEST_CLOCK: "enabled",
          SERVICE_TOKEN: "test-service-token",
          ADMIN_TOKEN: "test-admin-token",
          PANEL_SECRET: "test-panel-secret",
        },
      },
    })),
  ],
  test: {
    include: ["test/**/*.test.ts"],
    // The browser test runs on Node's test runner against `npm start`, not inside workerd.
    exclude: [...configDefaults.exclude, "test/e2e/**"],
    setupFiles: ["./test/setup.ts"],
    // One log line per decision is the engine's contract; print it only for failing tests.
    silent: "passed-only",
    testTimeout: 60_000,
    hookTimeout: 60_000,
  },
});
