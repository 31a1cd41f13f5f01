import { z } from "@hono/zod-openapi";
import { GRANT_KINDS, METERS, PLANS, PRODUCTS, type Meter } from "./catalog";
import { LEDGER_KINDS } from "./settlement/messages";

/** A positive safe integer of micro-credits (SPEC §2). */
export const Amount = z.number().int().positive().max(Number.MAX_SAFE_INTEGER).openapi({ example: 1_000_000 });
const Units = z.number().int().nonnegative().max(Number.MAX_SAFE_INTEGER);
const IsoTime = z.string().openapi({ example: "2026-11-21T12:00:00.000Z" });

export const AccountId = z.string().regex(/^[A-Za-z0-9_.:-]{1,128}$/, "account ids match ^[A-Za-z0-9_.:-]{1,128}$");
export const AccountParams = z.object({ id: AccountId.openapi({ param: { name: "id", in: "path" }, example: "acct_1" }) });
export const HoldParams = AccountParams.extend({
  holdId: z.string().min(1).max(64).regex(/^[A-Za-z0-9_-]+$/).openapi({ param: { name: "holdId", in: "path" } }),
});

export const Product = z.enum(PRODUCTS);
/** One optional field per meter: `.strict()` then refuses every other own key, `__proto__` included (a catchall copy drops it silently). */
const meterFields = Object.fromEntries(METERS.map((m) => [m, Units.optional()])) as Record<Meter, z.ZodOptional<typeof Units>>;
export const Usage = z
  .object({ model: z.string().min(1).max(128), ...meterFields })
  .strict()
  .openapi({ example: { model: "gpt-5-codex", inputTokens: 12000, outputTokens: 800 } });

/** `cost` or `usage`, exactly one. */
const costOrUsage = { cost: Amount.optional(), usage: Usage.optional() };
const exactlyOne = [(b: { cost?: number; usage?: unknown }) => (b.cost === undefined) !== (b.usage === undefined), { message: "give exactly one of cost or usage" }] as const;

export const ConsumeBody = z.object({ product: Product, ...costOrUsage }).strict().refine(...exactlyOne);
export const HoldBody = z
  .object({ product: Product, ttlSeconds: z.number().int().positive().max(3600).optional(), ...costOrUsage })
  .strict()
  .refine(...exactlyOne);
export const SettleBody = z.object(costOrUsage).strict().refine(...exactlyOne);

export const GrantBody = z
  .object({
    amount: Amount,
    kind: z.enum(GRANT_KINDS),
    expiresAt: IsoTime.datetime({ offset: true }).optional(),
    products: z.array(Product).min(1).max(PRODUCTS.length).optional(),
    topUpId: z.string().min(1).max(128).optional(),
  })
  .strict();
export const PlanBody = z.object({ plan: z.enum(PLANS) }).strict();
export const AutoTopUpBody = z.object({ enabled: z.boolean(), threshold: Amount, amount: Amount, maxPerMonth: z.number().int().positive().max(1000) }).strict();
export const SpendCapBody = z.object({ dailyLimit: Amount.nullable() }).strict();
export const BankedResetBody = z.object({ product: Product }).strict();
export const EmptyBody = z.object({}).strict().optional();

export const GlobalResetBody = z
  .object({
    scope: z.object({ products: z.array(Product).min(1).optional(), plans: z.array(z.enum(PLANS)).min(1).optional() }).strict().optional(),
    bankedResets: z.enum(["keep", "restore"]).optional(),
    grantBankedResets: z.object({ count: z.number().int().positive().max(10), expiresInHours: z.number().int().positive().max(24 * 365) }).strict().optional(),
    reason: z.string().min(1).max(500),
  })
  .strict();
export const RefundBody = z.object({ amount: Amount, reason: z.string().min(1).max(500), entryId: z.string().min(1).max(128).optional() }).strict();

export const LedgerQuery = z.object({
  limit: z.coerce.number().int().min(1).max(500).optional(),
  cursor: z.string().regex(/^\d{1,15}$/).optional(),
});
export const ReconciliationQuery = z.object({
  accountId: AccountId.optional(),
  limit: z.coerce.number().int().min(1).max(1000).optional(),
});

// ── responses ──
const WindowView = z.object({ limit: z.number(), used: z.number(), remaining: z.number(), resetsAt: IsoTime.nullable() });
export const Grant = z.object({
  id: z.string(),
  kind: z.enum(GRANT_KINDS),
  priority: z.number(),
  remaining: z.number(),
  expiresAt: IsoTime.nullable(),
  products: z.array(Product).nullable(),
});
export const AccountSummary = z
  .object({
    accountId: z.string(),
    plan: z.enum(PLANS),
    products: z.record(Product, z.object({ fiveHour: WindowView, weekly: WindowView })),
    credits: z.object({
      balance: z.number(),
      grants: z.array(Grant),
      autoTopUp: z.object({
        enabled: z.boolean(),
        threshold: z.number(),
        amount: z.number(),
        maxPerMonth: z.number(),
        pending: z.object({ topUpId: z.string(), requestedAt: IsoTime }).nullable(),
      }),
      flex: z.object({ limit: z.number(), used: z.number() }).nullable(),
    }),
    bankedResets: z.object({ available: z.number(), max: z.number(), items: z.array(z.object({ id: z.string(), expiresAt: IsoTime.nullable() })) }),
    holds: z.array(z.object({ holdId: z.string(), product: Product, amount: z.number(), expiresAt: IsoTime })),
    paused: z.boolean(),
    spendCap: z.object({ dailyLimit: z.number(), spentToday: z.number() }).nullable(),
  })
  .openapi("AccountSummary");
const SourceSchema = z.object({ layer: z.enum(["window", "grant", "flex"]), grantId: z.string().optional(), amount: z.number() });
export const Denial = z
  .object({
    decisionId: z.string().optional(),
    allowed: z.literal(false),
    reason: z.enum(["limit_reached", "insufficient_credits", "credits_paused", "spend_cap"]),
    retryAfterSeconds: z.number().optional(),
    resetsAt: IsoTime.optional(),
    offer: z.literal("add_credits").optional(),
    account: AccountSummary,
  })
  .openapi("Denial");
export const Decision = z
  .object({
    decisionId: z.string(),
    allowed: z.literal(true),
    cost: z.number(),
    sources: z.array(SourceSchema),
    rateCardVersion: z.string().optional(),
    account: AccountSummary,
  })
  .openapi("Decision");
export const HoldCreated = z.object({ holdId: z.string(), amount: z.number(), sources: z.array(SourceSchema), expiresAt: IsoTime, account: AccountSummary });
export const HoldSettled = z.object({ holdId: z.string(), charged: z.number(), released: z.number(), writtenOff: z.number(), sources: z.array(SourceSchema), account: AccountSummary });
export const HoldReleased = z.object({ holdId: z.string(), released: z.number(), account: AccountSummary });
export const GrantCreated = Grant.extend({ amount: z.number(), createdAt: IsoTime, topUpId: z.string().optional() });
export const BankedResetRedeemed = z.object({ resetId: z.string(), bankedResets: AccountSummary.shape.bankedResets, account: AccountSummary });
export const LedgerEntry = z.object({
  id: z.string(),
  kind: z.enum(LEDGER_KINDS),
  amount: z.number(),
  layer: z.enum(["window", "grant", "flex"]).optional(),
  product: z.string().optional(),
  grantId: z.string().optional(),
  decisionId: z.string().optional(),
  holdId: z.string().optional(),
  rateCardVersion: z.string().optional(),
  createdAt: IsoTime,
});
export const LedgerPage = z.object({ entries: z.array(LedgerEntry), nextCursor: z.string().nullable() });
export const Drift = z.object({ accountId: z.string(), expected: z.number(), actual: z.number(), chargedExpected: z.number(), chargedActual: z.number(), pendingOutbox: z.number(), sentLastMinute: z.number() });
export const ReconciliationReport = z.object({ checked: z.number(), drifted: z.array(Drift) });
export const ResetCreated = z.object({ resetId: z.string(), effectiveAt: IsoTime });
export const ErrorShape = z
  .object({ error: z.object({ code: z.string(), message: z.string(), requestId: z.string(), details: z.unknown().optional() }) })
  .openapi("Error");
