/**
 * The account's functional core. Each operation is a step: `step(state, ctx, reads, op)` copies the snapshot,
 * creates the account on its first write, applies what time has done (housekeeping), then runs `op`, and answers the
 * next snapshot, its effects and the result. Nothing here touches storage, the network or the clock.
 */
import { ensureAccount, housekeep } from "./housekeep";
import { type Draft, takeStep } from "./draft";
import type { AccountState, Reads, Step, StepContext } from "./state";

export function step<R extends { kind: string }>(
  state: AccountState,
  ctx: StepContext,
  reads: Reads,
  op: (d: Draft) => R,
  opts: { creates: boolean } = { creates: true },
): Step<R> {
  return takeStep(state, ctx, reads, (d) => {
    if (opts.creates) ensureAccount(d);
    housekeep(d);
    return op(d);
  });
}

export { addCredits, refund, setAutoTopUp } from "./credits";
export { consume, createHold, releaseHold, settleHold } from "./metering";
export { redeemBankedReset } from "./resets";
export { closeLease, joinOrg, leaseNeed, takeLease } from "./membership";
export { resume, setPlan, setSpendCap } from "./settings";
export { freshSummary, resetCouldHelp, summaryIn, windowsOf } from "./summary";
export type { Draft } from "./draft";
export { EMPTY_STATE } from "./state";
