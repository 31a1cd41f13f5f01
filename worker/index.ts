import { createApp } from "./app";
import { settleBatch } from "./settlement/consumer";
import type { SettlementMessage } from "./settlement/messages";
import { reconcile } from "./settlement/reconciliation";

export { AccountDO } from "../durable-objects/account/object";
export { ResetControlDO } from "../durable-objects/reset-control";

const app = createApp();

export default {
  fetch: app.fetch,
  queue: settleBatch,
  async scheduled(_controller, env, ctx) {
    ctx.waitUntil(reconcile(env).then(() => undefined));
  },
} satisfies ExportedHandler<Env, SettlementMessage>;
