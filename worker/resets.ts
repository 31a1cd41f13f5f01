import { resetControl } from "../durable-objects/stubs";
import type { ResetEpoch } from "./core/account/state";

/** The reset control object's stub; made in `durable-objects/stubs.ts`, re-exported for this module's importers. */
export { resetControl };

/** How stale this isolate's epochs may be when routing a request (SPEC §5: within 5 s everywhere). */
export const ROUTING_EPOCH_MAX_AGE_MS = 2_000;
/** How stale they may be on an account object's deny path (SPEC §5: within 1 s for a request a window would deny). */
export const DENY_PATH_EPOCH_MAX_AGE_MS = 1_000;

/**
 * One cache entry per isolate (keyed by the binding). Every refresh restarts its age, and one fetch at a time is in
 * flight, so an isolate calls the control object at most once per DENY_PATH_EPOCH_MAX_AGE_MS however many requests
 * it serves or denies: a storm of denials does not become a storm of calls to the one global object.
 */
const cache = new WeakMap<object, { epochs: Promise<ResetEpoch[]>; fetchedAt: number }>();

/** The latest global resets, at most `maxAgeMs` old (wall clock). */
export function currentResets(env: Env, maxAgeMs = ROUTING_EPOCH_MAX_AGE_MS): Promise<ResetEpoch[]> {
  const hit = cache.get(env.RESET_CONTROL);
  if (hit && Date.now() - hit.fetchedAt < maxAgeMs) return hit.epochs;
  const entry = { epochs: Promise.resolve(resetControl(env).epochs()), fetchedAt: Date.now() };
  cache.set(env.RESET_CONTROL, entry);
  // A failed fetch is not cached: the next caller tries again.
  entry.epochs.catch(() => {
    if (cache.get(env.RESET_CONTROL) === entry) cache.delete(env.RESET_CONTROL);
  });
  return entry.epochs;
}

/** After an operator's reset, this isolate sees it at once. */
export function forgetCachedResets(env: Env): void {
  cache.delete(env.RESET_CONTROL);
}
