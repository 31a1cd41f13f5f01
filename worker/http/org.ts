/**
 * Calls into one organization's object from a request (SPEC §9), as ./account.ts does for accounts: each method
 * builds the call context (clock, request id, Idempotency-Key) and answers what the object answered.
 */
import { orgObject } from "../../durable-objects/stubs";
import type { OrgCallContext } from "../../durable-objects/types";
import type { PoolLimits } from "../core/account/membership";
import type { OrgPlan, PoolGrantRequest } from "../core/org/state";
import type { AppContext } from "./context";

export function org(c: AppContext, orgId: string) {
  const stub = orgObject(c.env, orgId);
  const ctx: OrgCallContext = {
    orgId,
    now: c.get("now"),
    requestId: c.get("requestId"),
    idempotency: c.get("idempotency"),
  };
  return {
    put: (req: { plan: OrgPlan; flexMonthlyLimit?: number }) => stub.putOrg(ctx, req),
    view: () => stub.view(ctx),
    putMember: (accountId: string, limits: PoolLimits) => stub.putMember(ctx, accountId, limits),
    removeMember: (accountId: string) => stub.removeMember(ctx, accountId),
    addCredits: (req: PoolGrantRequest) => stub.addCredits(ctx, req),
    refund: (req: { amount: number; reason: string }) => stub.refund(ctx, req),
    resume: (operator: string) => stub.resume(ctx, operator),
    issuePanelLink: (link: { token: string; url: string; expiresAt: string }) => stub.issuePanelLink(ctx, link),
  };
}
