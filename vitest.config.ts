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

/**
 * Two projects: "workerd" runs the suite inside the Workers runtime (the Cloudflare plugin); "node" runs the pure
 * functional core's tests (test/core) in plain Node, without workerd. `vitest run` runs both; a file filter runs
 * whichever project holds the file.
 */
export default defineConfig({
  test: {
    // One log line per decision is the engine's contract; print it only for failing tests (both projects).
    silent: "passed-only",
    projects: [
      {
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
          name: "workerd",
          include: ["test/**/*.test.ts"],
          // The browser test runs on Node's test runner against `npm start`, not inside workerd; test/core is the
          // "node" project.
          exclude: [...configDefaults.exclude, "test/e2e/**", "test/core/**"],
          setupFiles: ["./test/setup.ts"],
          testTimeout: 60_000,
          hookTimeout: 60_000,
        },
      },
      {
        test: {
          name: "node",
          environment: "node",
          include: ["test/core/**/*.test.ts"],
          testTimeout: 120_000,
        },
      },
    ],
  },
});
