/** What the billing system and operators set: the plan, the spend cap, and the resume of paused spending. */
import type { PlanId } from "../../catalog";
import type { AccountChangeResult, ResumeResult } from "./answers";
import { minuteOf } from "../time";
import type { Draft } from "./draft";
import { ok } from "./state";
import { summaryIn } from "./summary";

export function setPlan(d: Draft, plan: PlanId): AccountChangeResult {
  if (d.account.plan !== plan) {
    d.update({ plan, bankedAccruedAt: d.now });
    d.effect({ type: "plan_changed", since: d.now, plan });
  }
  return ok(summaryIn(d));
}

export function setSpendCap(d: Draft, dailyLimit: number | null): AccountChangeResult {
  d.update({ spendCap: dailyLimit });
  return ok(summaryIn(d));
}

/**
 * Resumes credit spending. The trailing window restarts at the resume instant, so the burst that caused the pause
 * does not pause the account again at once; the spend itself stays on record.
 */
export function resume(d: Draft, operator: string): ResumeResult {
  const wasPaused = d.account.paused;
  if (wasPaused) {
    d.update({ paused: false, resumedAt: d.now, resumedSpend: d.spentInMinute(minuteOf(d.now)) });
    d.event("account.credits_resumed", { operator });
  }
  return ok({ resumed: wasPaused, account: summaryIn(d) });
}
