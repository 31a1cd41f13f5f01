/**
 * Calls into one account's object from a request: each method builds the `CallContext` (clock, request id,
 * Idempotency-Key, known global resets, `?include`) and answers what the object answered, typed as the object
 * declares it (durable-objects/account/object.ts). `reply` (./reply.ts) turns the answer into HTTP.
 */
import type { IdempotencyKey } from "../../durable-objects/idempotency";
import { accountObject } from "../../durable-objects/stubs";
import type { GrantRequest, RefundRequest } from "../../durable-objects/types";
import { catalog, type PlanId, type Product } from "../catalog";
import type {
  AccountChangeResult,
  BankedResetResult,
  ConsumeResult,
  GrantResult,
  HoldResult,
  PanelLink,
  PanelLinkResult,
  RefundResult,
  ReleaseResult,
  ResumeResult,
  SettleResult,
  SummaryResult,
} from "../core/account/answers";
import type { Answered, AutoTopUpConfig } from "../core/account/state";
import { type Charge, chargeOf, type Usage } from "../core/pricing";
import { type AppContext, callContext } from "./context";
import { ApiError } from "./errors";

/** One account's operations for this request. `idempotency` stands in for the request's own key (the console's and panel's forms). */
export function account(c: AppContext, accountId: string, options: { idempotency?: IdempotencyKey } = {}) {
  const stub = accountObject(c.env, accountId);
  let context: ReturnType<typeof callContext> | undefined;
  const ctx = async () => {
    context ??= callContext(c, accountId);
    const known = await context;
    return options.idempotency ? { ...known, idempotency: options.idempotency } : known;
  };
  return {
    summary: async (): Promise<Answered<SummaryResult>> => stub.summary(await ctx()),
    consume: async (charge: Charge): Promise<Answered<ConsumeResult>> =>
      logDecision(c, accountId, charge, await stub.consume(await ctx(), charge)),
    createHold: async (
      charge: Charge,
      ttlSeconds = catalog.guards.hold.defaultTtlSeconds,
    ): Promise<Answered<HoldResult>> => stub.createHold(await ctx(), charge, ttlSeconds),
    settleHold: async (holdId: string, actual: { cost?: number; usage?: Usage }): Promise<Answered<SettleResult>> =>
      stub.settleHold(await ctx(), holdId, actual),
    releaseHold: async (holdId: string): Promise<Answered<ReleaseResult>> => stub.releaseHold(await ctx(), holdId),
    addCredits: async (req: GrantRequest): Promise<Answered<GrantResult>> => stub.addCredits(await ctx(), req),
    refund: async (req: RefundRequest): Promise<Answered<RefundResult>> => stub.refund(await ctx(), req),
    setPlan: async (plan: PlanId): Promise<Answered<AccountChangeResult>> => stub.setPlan(await ctx(), plan),
    setAutoTopUp: async (config: AutoTopUpConfig): Promise<Answered<AccountChangeResult>> =>
      stub.setAutoTopUp(await ctx(), config),
    setSpendCap: async (dailyLimit: number | null): Promise<Answered<AccountChangeResult>> =>
      stub.setSpendCap(await ctx(), dailyLimit),
    resume: async (operator: string): Promise<Answered<ResumeResult>> => stub.resume(await ctx(), operator),
    redeemBankedReset: async (product: Product): Promise<Answered<BankedResetResult>> =>
      stub.redeemBankedReset(await ctx(), product),
    issuePanelLink: async (link: PanelLink): Promise<Answered<PanelLinkResult>> =>
      stub.issuePanelLink(await ctx(), link),
    panelView: async (days: number) => stub.panelView(await ctx(), days),
  };
}

/** `cost` as given, or `usage` priced with the current rate card; usage that cannot be priced is 400 `invalid_request`. */
export function chargeFrom(body: { product: Product; cost?: number; usage?: Usage }): Charge {
  const pricing = chargeOf(body.product, body);
  if (!pricing.ok) throw ApiError.of(pricing.refusal);
  return pricing.value;
}

/** A grant as the API takes it (`expiresAt` an RFC 3339 time) as the object takes it (epoch ms). */
export function grantFrom({
  expiresAt,
  ...grant
}: Omit<GrantRequest, "expiresAt"> & { expiresAt?: string }): GrantRequest {
  return { ...grant, expiresAt: expiresAt === undefined ? undefined : Date.parse(expiresAt) };
}

/** One structured line per decision (allowed, denied or refused); ids and amounts only, never headers or tokens. */
function logDecision(
  c: AppContext,
  accountId: string,
  charge: Charge,
  answer: Answered<ConsumeResult>,
): Answered<ConsumeResult> {
  const { result } = answer;
  const decision = result.kind === "refused" ? undefined : result.body;
  console.log(
    JSON.stringify({
      event: "decision",
      requestId: c.get("requestId"),
      accountId,
      decisionId: decision?.decisionId,
      product: charge.product,
      cost: charge.cost,
      allowed: decision?.allowed ?? false,
      reason:
        decision && !decision.allowed ? decision.reason : result.kind === "refused" ? result.refusal.code : undefined,
      sources: decision?.allowed ? decision.sources : undefined,
      replayed: answer.replayed,
    }),
  );
  return answer;
}
