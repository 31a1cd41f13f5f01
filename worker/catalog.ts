import { z } from "zod";

/** 1 credit in micro-credits. Every amount in state and on the API is an integer of micro-credits. */
export const CREDIT = 1_000_000;

export const PRODUCTS = ["codex", "sora"] as const;
export type Product = (typeof PRODUCTS)[number];

export const PLANS = ["go", "plus", "pro", "business", "enterprise", "edu"] as const;
export type PlanId = (typeof PLANS)[number];

export const METERS = ["inputTokens", "cachedInputTokens", "outputTokens", "videoSeconds"] as const;
export type Meter = (typeof METERS)[number];

export const FIVE_HOURS_MS = 5 * 60 * 60 * 1000;
export const WEEK_MS = 7 * 24 * 60 * 60 * 1000;

const microCredits = z.number().int().nonnegative().max(Number.MAX_SAFE_INTEGER);

const windowAllowanceSchema = z.object({ fiveHour: microCredits, weekly: microCredits });

export const planSchema = z.object({
  id: z.enum(PLANS),
  windows: z.record(z.enum(PRODUCTS), windowAllowanceSchema),
  bankedResets: z.object({ everyDays: z.number().int().positive(), max: z.number().int().nonnegative() }).nullable(),
  autoTopUpAllowed: z.boolean(),
  /** Postpaid overage per calendar month (UTC), or null where the plan has none. */
  flexMonthlyLimit: microCredits.nullable(),
});
export type Plan = z.infer<typeof planSchema>;

export const rateCardSchema = z.object({
  version: z.string().min(1),
  effectiveFrom: z.iso.datetime(),
  /** product → model → meter → micro-credits per million units */
  products: z.record(z.enum(PRODUCTS), z.record(z.string(), z.partialRecord(z.enum(METERS), microCredits))),
});
export type RateCard = z.infer<typeof rateCardSchema>;

const anomalySchema = z.object({
  trailingMinutes: z.number().int().positive(),
  floorMicroCredits: microCredits,
  multiplier: z.number().positive(),
  baselineDays: z.number().int().positive(),
});

const guardsSchema = z.object({
  anomaly: anomalySchema,
  /** the same guard across an organization's members: what its pool lends out, net of returns (SPEC §9) */
  poolAnomaly: anomalySchema,
  hold: z.object({ defaultTtlSeconds: z.number().int().positive(), maxTtlSeconds: z.number().int().positive() }),
  idempotencyRetentionHours: z.number().int().min(24),
  grantDefaults: z.object({ promo: z.number().int(), entitlement: z.number().int(), purchase: z.number().int() }),
  purchaseExpiryMonths: z.number().int().positive(),
  /** `credits.low` fires when a spend takes the balance below this. */
  lowBalanceMicroCredits: microCredits,
  /** The most one refund without an `entryId` (a goodwill credit) may grant. */
  maxGoodwillRefund: microCredits,
});

const c = (credits: number) => credits * CREDIT;
const windows = (codex: [number, number], sora: [number, number]) => ({
  codex: { fiveHour: c(codex[0]), weekly: c(codex[1]) },
  sora: { fiveHour: c(sora[0]), weekly: c(sora[1]) },
});
const accrual = { everyDays: 7, max: 3 };

/** Catalog version 2026-11-01. Change it only by adding a new version; charges record the rate-card version they used. */
const rawCatalog = {
  plans: [
    {
      id: "go",
      windows: windows([2, 10], [1, 5]),
      bankedResets: accrual,
      autoTopUpAllowed: false,
      flexMonthlyLimit: null,
    },
    {
      id: "plus",
      windows: windows([10, 50], [5, 25]),
      bankedResets: accrual,
      autoTopUpAllowed: true,
      flexMonthlyLimit: null,
    },
    {
      id: "pro",
      windows: windows([60, 300], [30, 150]),
      bankedResets: accrual,
      autoTopUpAllowed: true,
      flexMonthlyLimit: null,
    },
    {
      id: "business",
      windows: windows([10, 50], [5, 25]),
      bankedResets: accrual,
      autoTopUpAllowed: false,
      flexMonthlyLimit: c(200),
    },
    {
      id: "enterprise",
      windows: windows([60, 300], [30, 150]),
      bankedResets: null,
      autoTopUpAllowed: false,
      flexMonthlyLimit: c(2000),
    },
    {
      id: "edu",
      windows: windows([10, 50], [5, 25]),
      bankedResets: null,
      autoTopUpAllowed: false,
      flexMonthlyLimit: c(100),
    },
  ],
  rateCard: {
    version: "2026-11-01",
    effectiveFrom: "2026-11-01T00:00:00.000Z",
    products: {
      codex: {
        "gpt-5-codex": { inputTokens: c(1.25), cachedInputTokens: 125_000, outputTokens: c(10) },
        "gpt-5-codex-mini": { inputTokens: 250_000, cachedInputTokens: 25_000, outputTokens: c(2) },
      },
      sora: {
        "sora-2": { videoSeconds: c(100_000) },
        "sora-2-pro": { videoSeconds: c(300_000) },
      },
    },
  },
  guards: {
    // Pause credit spending when the trailing 10 minutes exceed max(50 credits, 10 × the 7-day average 10-minute spend).
    anomaly: { trailingMinutes: 10, floorMicroCredits: c(50), multiplier: 10, baselineDays: 7 },
    // A pool serves a team: the same rule with a floor of 1,000 credits in the trailing 10 minutes.
    poolAnomaly: { trailingMinutes: 10, floorMicroCredits: c(1000), multiplier: 10, baselineDays: 7 },
    hold: { defaultTtlSeconds: 600, maxTtlSeconds: 3600 },
    idempotencyRetentionHours: 48,
    grantDefaults: { promo: 10, entitlement: 20, purchase: 30 },
    purchaseExpiryMonths: 12,
    lowBalanceMicroCredits: c(5),
    maxGoodwillRefund: c(100),
  },
};

export const catalogSchema = z.object({
  plans: z.array(planSchema).length(PLANS.length),
  rateCard: rateCardSchema,
  guards: guardsSchema,
});
export type Catalog = z.infer<typeof catalogSchema>;

/** Checked at module load: a malformed catalog fails the deploy's first request, not a charge. */
export const catalog: Catalog = catalogSchema.parse(rawCatalog);

const plansById = new Map(catalog.plans.map((p) => [p.id, p]));
export function planFor(id: PlanId): Plan {
  const plan = plansById.get(id);
  if (!plan) throw new Error(`plan ${id} missing from catalog`);
  return plan;
}

export const DEFAULT_PLAN: PlanId = "go";
export type GrantKind = keyof Catalog["guards"]["grantDefaults"];
export const GRANT_KINDS = ["promo", "entitlement", "purchase"] as const satisfies readonly GrantKind[];
