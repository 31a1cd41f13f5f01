import type { ResetControlDO } from "../durable-objects/reset-control";
import type { ResetEpoch } from "../durable-objects/types";

/** Global reset epochs are cached per isolate this long; account objects correct a stale cache on the deny path. */
const EPOCH_CACHE_MS = 2_000;

const cache = new WeakMap<object, { epochs: ResetEpoch[]; fetchedAt: number }>();

export function resetControl(env: Env): DurableObjectStub<ResetControlDO> {
  return env.RESET_CONTROL.get(env.RESET_CONTROL.idFromName("global")) as DurableObjectStub<ResetControlDO>;
}

export async function currentResets(env: Env): Promise<ResetEpoch[]> {
  const hit = cache.get(env.RESET_CONTROL);
  if (hit && Date.now() - hit.fetchedAt < EPOCH_CACHE_MS) return hit.epochs;
  const epochs = await resetControl(env).epochs();
  cache.set(env.RESET_CONTROL, { epochs, fetchedAt: Date.now() });
  return epochs;
}

/** After an operator's reset, this isolate sees it at once. */
export function forgetCachedResets(env: Env): void {
  cache.delete(env.RESET_CONTROL);
}
