import { createApp } from "./app";
import { settleBatch } from "./settlement/consumer";
import type { SettlementMessage } from "./settlement/messages";
import { sweep } from "./settlement/reconciliation";

export { AccountDO } from "../durable-objects/account/object";
export { ResetControlDO } from "../durable-objects/reset-control";
export { OrgDO } from "../durable-objects/org/object";

const app = createApp();

export default {
  fetch: app.fetch,
  queue: settleBatch,
  // Every 15 minutes (wrangler.toml): one page of the reconciliation sweep, from its persisted cursor.
  async scheduled(controller, env, ctx) {
    ctx.waitUntil(sweep(env, controller.scheduledTime).then(() => undefined));
  },
} satisfies ExportedHandler<Env, SettlementMessage>;
