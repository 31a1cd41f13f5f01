/** What a call tells a step, and how an account object learns the global resets it has not applied yet (SPEC §5). */
import { currentResets, DENY_PATH_EPOCH_MAX_AGE_MS } from "../../worker/resets";
import { resetControl } from "../stubs";
import type { StepContext } from "../../worker/core/account/state";
import type { CallContext, ResetEpoch } from "../types";

/**
 * Epochs at most 1 s old, if one is newer than `seenSeq` (the deny path only). They come from this isolate's cache,
 * so a client denied in a loop costs the control object at most one call per isolate per second.
 */
export async function newerEpochs(env: Env, seenSeq: number): Promise<ResetEpoch[] | null> {
  const epochs = await currentResets(env, DENY_PATH_EPOCH_MAX_AGE_MS);
  return (epochs.at(-1)?.seq ?? 0) > seenSeq ? epochs : null;
}

/** The caller hands over only the latest global resets; an object idle through more reads the ones it missed. */
export async function withMissedEpochs(env: Env, ctx: CallContext, seenSeq: number | undefined): Promise<CallContext> {
  const oldest = ctx.resets?.[0]?.seq;
  if (seenSeq === undefined || oldest === undefined || oldest <= seenSeq + 1) return ctx;
  return { ...ctx, resets: await resetControl(env).epochsAfter(seenSeq) };
}

/** The core's view of a call: its clocks, key, known resets and what it asked to include. */
export const stepContext = (ctx: CallContext): StepContext => ({
  accountId: ctx.accountId,
  now: ctx.now,
  wallNow: Date.now(),
  idempotencyKey: ctx.idempotency?.key,
  resets: ctx.resets ?? [],
  includeAccount: ctx.includeAccount ?? false,
});
