import { z } from "@hono/zod-openapi";
import { GRANT_KINDS, METERS, PLANS, PRODUCTS, planSchema, rateCardSchema, type Meter } from "./catalog";
import { ERROR_CODES } from "./http/errors";
import { LAYERS, LEDGER_KINDS } from "./core/journal";
import { ORG_PLANS } from "./core/org/state";

/** A positive safe integer of micro-credits (SPEC §2). */
export const Amount = z.number().int().positive().max(Number.MAX_SAFE_INTEGER).openapi({ example: 1_000_000 });
const Units = z.number().int().nonnegative().max(Number.MAX_SAFE_INTEGER);
/** An RFC 3339 time; answers give it in UTC with milliseconds. */
export const IsoTime = z.iso.datetime({ offset: true }).openapi({ example: "2026-11-21T12:00:00.000Z" });
/** A non-negative integer in answers: micro-credits, counts or seconds (SPEC §2: every amount is an integer). */
const Count = z.number().int().nonnegative().max(Number.MAX_SAFE_INTEGER);

export const AccountId = z.string().regex(/^[A-Za-z0-9_.:-]{1,128}$/, "account ids match ^[A-Za-z0-9_.:-]{1,128}$");
export const AccountParams = z.object({
  id: AccountId.openapi({ param: { name: "id", in: "path" }, example: "acct_1" }),
});
export const HoldParams = AccountParams.extend({
  holdId: z
    .string()
    .min(1)
    .max(64)
    .regex(/^[A-Za-z0-9_-]+$/)
    .openapi({ param: { name: "holdId", in: "path" } }),
});

export const Product = z.enum(PRODUCTS);
/** One optional field per meter: `.strict()` then refuses every other own key, `__proto__` included (a catchall copy drops it silently). */
const meterFields = Object.fromEntries(METERS.map((m) => [m, Units.optional()])) as Record<
  Meter,
  z.ZodOptional<typeof Units>
>;
export const Usage = z
  .object({ model: z.string().min(1).max(128), ...meterFields })
  .strict()
  .openapi({ example: { model: "gpt-5-codex", inputTokens: 12000, outputTokens: 800 } });

/**
 * `cost` or `usage`, exactly one: a `oneOf` of two closed objects. A body matching neither is 400, and the message
 * names what is wrong with it: "give exactly one of cost or usage", or the problems of the one it gave.
 */
function costOrUsage<S extends z.ZodRawShape>(name: string, shape: S) {
  const byCost = z
    .object({ ...shape, cost: Amount })
    .strict()
    .openapi(`${name}ByCost`);
  const byUsage = z
    .object({ ...shape, usage: Usage })
    .strict()
    .openapi(`${name}ByUsage`);
  return z
    .union([byCost, byUsage], {
      error: (issue) => {
        const input: unknown = issue.input;
        if (issue.code !== "invalid_union" || typeof input !== "object" || input === null || Array.isArray(input))
          return undefined;
        const given = [Object.hasOwn(input, "cost"), Object.hasOwn(input, "usage")];
        if (given[0] === given[1]) return "give exactly one of cost or usage";
        return issue.errors[given[0] ? 0 : 1]
          .map((i) => (i.path.length > 0 ? `${i.path.join(".")}: ${i.message}` : i.message))
          .join("; ");
      },
    })
    .openapi(
      name,
      { description: "Give exactly one of `cost` (micro-credits) or `usage` (priced with the current rate card)." },
      { unionPreferredType: "oneOf" },
    );
}

export const ConsumeBody = costOrUsage("ConsumeRequest", { product: Product });
export const HoldBody = costOrUsage("HoldRequest", {
  product: Product,
  ttlSeconds: z.number().int().positive().max(3600).optional(),
});
export const SettleBody = costOrUsage("SettleRequest", {});

export const GrantBody = z
  .object({
    amount: Amount,
    kind: z.enum(GRANT_KINDS),
    expiresAt: IsoTime.optional(),
    products: z.array(Product).min(1).max(PRODUCTS.length).optional(),
    topUpId: z.string().min(1).max(128).optional(),
  })
  .strict();
export const PlanBody = z.object({ plan: z.enum(PLANS) }).strict();
export const AutoTopUpBody = z
  .object({
    enabled: z.boolean(),
    threshold: Amount,
    amount: Amount,
    maxPerMonth: z.number().int().positive().max(1000),
  })
  .strict();
export const SpendCapBody = z.object({ dailyLimit: Amount.nullable() }).strict();
export const BankedResetBody = z.object({ product: Product }).strict();
export const EmptyBody = z.object({}).strict().optional();

export const GlobalResetBody = z
  .object({
    scope: z
      .object({ products: z.array(Product).min(1).optional(), plans: z.array(z.enum(PLANS)).min(1).optional() })
      .strict()
      .optional(),
    bankedResets: z.enum(["keep", "restore"]).optional(),
    grantBankedResets: z
      .object({
        count: z.number().int().positive().max(10),
        expiresInHours: z
          .number()
          .int()
          .positive()
          .max(24 * 365),
      })
      .strict()
      .optional(),
    reason: z.string().min(1).max(500),
  })
  .strict();
export const RefundBody = z
  .object({ amount: Amount, reason: z.string().min(1).max(500), entryId: z.string().min(1).max(128).optional() })
  .strict();

/** Decisions carry the full account summary only when asked (SPEC §8). */
export const IncludeQuery = z.object({ include: z.enum(["account"]).optional() });
export const LedgerQuery = z.object({
  limit: z.coerce.number().int().min(1).max(500).optional(),
  cursor: z
    .string()
    .regex(/^\d{1,15}$/)
    .optional(),
});
/** An id in the ledger: an account's, or an organization's own journal (`org/<orgId>`). */
const LedgerAccountId = z
  .string()
  .regex(/^(org\/)?[A-Za-z0-9_.:-]{1,128}$/, "ledger account ids are account ids, or org/ and an organization id");
export const ReconciliationQuery = z.object({
  accountId: LedgerAccountId.optional().openapi({
    description: "Check this one account, or `org/<orgId>` for an organization's pool (not with `cursor` or `limit`).",
  }),
  cursor: LedgerAccountId.optional().openapi({
    description: "Check the page of accounts after this account id: a previous answer's `nextCursor`.",
  }),
  limit: z.coerce
    .number()
    .int()
    .min(1)
    .max(1000)
    .optional()
    .openapi({ description: "Accounts in the page (default 500)." }),
});
export const ArchiveQuery = z
  .object({
    from: IsoTime.openapi({ description: "Entries made at or after this instant." }),
    to: IsoTime.openapi({ description: "Entries made before this instant." }),
  })
  .refine((q) => Date.parse(q.from) < Date.parse(q.to), { message: "from must be before to", path: ["to"] });

// ── responses ──
const WindowView = z.object({ limit: Count, used: Count, remaining: Count, resetsAt: IsoTime.nullable() });
export const Grant = z.object({
  id: z.string(),
  kind: z.enum(GRANT_KINDS),
  priority: z.number().int(),
  remaining: Count,
  expiresAt: IsoTime.nullable(),
  products: z.array(Product).nullable(),
});
export const AccountSummary = z
  .object({
    accountId: z.string(),
    plan: z.enum(PLANS),
    products: z.record(Product, z.object({ fiveHour: WindowView, weekly: WindowView })),
    credits: z.object({
      balance: Count,
      grants: z.array(Grant),
      autoTopUp: z.object({
        enabled: z.boolean(),
        threshold: Count,
        amount: Count,
        maxPerMonth: Count,
        pending: z.object({ topUpId: z.string(), requestedAt: IsoTime }).nullable(),
      }),
      flex: z.object({ limit: Count, used: Count }).nullable(),
    }),
    bankedResets: z.object({
      available: Count,
      max: Count,
      items: z.array(z.object({ id: z.string(), expiresAt: IsoTime.nullable() })),
    }),
    holds: z.array(z.object({ holdId: z.string(), product: Product, amount: Count, expiresAt: IsoTime })),
    paused: z.boolean(),
    spendCap: z.object({ dailyLimit: Count, spentToday: Count }).nullable(),
    org: z
      .object({
        orgId: z.string(),
        active: z.boolean(),
        lease: Count.openapi({ description: "what the account's lease from the pool holds unspent" }),
        spent: Count.openapi({ description: "everything the pool has paid for this account" }),
        drawnToday: Count,
        drawnThisMonth: Count,
        dailyLimit: Count.nullable(),
        monthlyLimit: Count.nullable(),
        poolPaused: z.boolean(),
      })
      .optional()
      .openapi({ description: "the organization whose pool this account draws from (SPEC §9); absent outside any" }),
  })
  .openapi("AccountSummary");
const SourceSchema = z.object({
  layer: z.enum(LAYERS),
  orgId: z.string().optional().openapi({ description: "`pool`: the organization whose pool paid" }),
  grantId: z.string().optional(),
  amount: Count,
});
/** SPEC §8: what a decision leaves for its product, always present; the full account only with `?include=account`. */
const RemainingWindow = z.object({ remaining: Count, resetsAt: IsoTime.nullable() });
export const Remaining = z
  .object({ product: Product, fiveHour: RemainingWindow, weekly: RemainingWindow, credits: Count })
  .openapi("Remaining");
const withAccount = { remaining: Remaining, account: AccountSummary.optional() };
export const Denial = z
  .object({
    decisionId: z.string().optional(),
    allowed: z.literal(false),
    reason: z.enum(["limit_reached", "insufficient_credits", "credits_paused", "spend_cap"]),
    retryAfterSeconds: Count.optional(),
    resetsAt: IsoTime.optional(),
    offer: z.literal("add_credits").optional(),
    ...withAccount,
  })
  .openapi("Denial");
export const Decision = z
  .object({
    decisionId: z.string(),
    allowed: z.literal(true),
    cost: Count,
    sources: z.array(SourceSchema),
    rateCardVersion: z.string().optional(),
    ...withAccount,
  })
  .openapi("Decision");
export const HoldCreated = z.object({
  holdId: z.string(),
  amount: Count,
  sources: z.array(SourceSchema),
  expiresAt: IsoTime,
  ...withAccount,
});
export const HoldSettled = z.object({
  holdId: z.string(),
  charged: Count,
  released: Count,
  writtenOff: Count,
  sources: z.array(SourceSchema),
  ...withAccount,
});
export const HoldReleased = z.object({ holdId: z.string(), released: Count, ...withAccount });
export const GrantCreated = Grant.extend({ amount: Count, createdAt: IsoTime, topUpId: z.string().optional() });
export const BankedResetRedeemed = z.object({
  resetId: z.string(),
  bankedResets: AccountSummary.shape.bankedResets,
  account: AccountSummary,
});
/** The journal's kinds, and `usage`: the ledger's hourly rollup of window charges (SPEC §7). */
export const LedgerKindSchema = z.enum([...LEDGER_KINDS, "usage"]);
export const LedgerEntry = z.object({
  id: z.string(),
  kind: LedgerKindSchema,
  amount: Count,
  layer: z.enum(LAYERS).optional(),
  product: z.string().optional(),
  from: IsoTime.optional().openapi({ description: "`usage`: the start of its hour" }),
  to: IsoTime.optional().openapi({ description: "`usage`: the end of its hour" }),
  count: Count.optional().openapi({ description: "`usage`: how many window charges it sums" }),
  grantId: z.string().optional(),
  orgId: z
    .string()
    .optional()
    .openapi({ description: "a member's entry paid from or leased by this organization's pool" }),
  memberId: z.string().optional().openapi({ description: "an organization's lease or return: the member" }),
  decisionId: z.string().optional(),
  holdId: z.string().optional(),
  rateCardVersion: z.string().optional(),
  createdAt: IsoTime,
});
export const LedgerPage = z.object({ entries: z.array(LedgerEntry), nextCursor: z.string().nullable() });
const SeqRange = { fromSeq: Count, toSeq: Count };
export const Drift = z
  .object({
    accountId: z.string(),
    ...SeqRange,
    expected: z.number().int(),
    actual: z.number().int(),
    chargedExpected: z.number().int(),
    chargedActual: z.number().int(),
    invariant: z.literal("pool").optional().openapi({
      description:
        "an organization's pool (`accountId` `org/<orgId>`) breaks I-pool: `expected` is its grants less expiries, `actual` its remainders plus what members hold",
    }),
  })
  .openapi({
    description:
      "The object and the ledger differ at the same sequence number `toSeq` (the ledger's watermark); the last clean " +
      "check stood at `fromSeq − 1`. `expected`/`actual`: credit position; `chargedExpected`/`chargedActual`: charges. " +
      "An organization's journal settles under the account id `org/<orgId>`.",
  });
export const InFlight = z
  .object({
    accountId: z.string(),
    ...SeqRange,
    gap: z.boolean(),
    resent: z.object(SeqRange).nullable(),
  })
  .openapi({
    description:
      "Journal entries `fromSeq`..`toSeq` the ledger does not hold yet: in flight, not drift. `gap`: later entries " +
      "have arrived. `resent`: what this check sent again because it was overdue.",
  });
export const ReconciliationReport = z.object({
  checked: Count,
  drifted: z.array(Drift),
  inFlight: z.array(InFlight),
  nextCursor: z
    .string()
    .nullable()
    .openapi({ description: "Pass as `cursor` for the next page of accounts; null when no account follows." }),
});
export const ResetCreated = z.object({ resetId: z.string(), effectiveAt: IsoTime });
export const GlobalReset = z.object({
  resetId: z.string(),
  effectiveAt: IsoTime,
  scope: z.object({ products: z.array(Product).nullable(), plans: z.array(z.enum(PLANS)).nullable() }),
  bankedResets: z.enum(["keep", "restore"]),
  grantBankedResets: z.object({ count: Count, expiresInHours: Count }).nullable(),
  reason: z.string(),
  actor: z.string(),
});
export const GlobalResetList = z.object({ resets: z.array(GlobalReset) });
export const Resumed = z.object({ resumed: z.boolean(), account: AccountSummary });
export const RefundCreated = z.object({
  refundId: z.string(),
  grant: Grant,
  reason: z.string(),
  refundedEntryId: z.string().nullable(),
  account: AccountSummary,
});
// ─────────────────────────── organizations (SPEC §9) ───────────────────────────

export const OrgParams = z.object({
  orgId: AccountId.openapi({ param: { name: "orgId", in: "path" }, example: "org_1" }),
});
export const MemberParams = OrgParams.extend({
  accountId: AccountId.openapi({ param: { name: "accountId", in: "path" }, example: "acct_1" }),
});
export const OrgBody = z
  .object({
    plan: z.enum(ORG_PLANS),
    flexMonthlyLimit: Count.optional().openapi({
      description: "micro-credits of postpaid overage per calendar month; 0 turns flex off; absent: the plan's",
    }),
  })
  .strict();
export const MemberBody = z
  .object({
    dailyLimit: Amount.optional().openapi({ description: "the most this member may draw from the pool per UTC day" }),
    monthlyLimit: Amount.optional().openapi({ description: "the most per calendar month" }),
  })
  .strict();
export const PoolGrantBody = GrantBody.omit({ topUpId: true });
export const PoolRefundBody = z.object({ amount: Amount, reason: z.string().min(1).max(500) }).strict();

export const Member = z
  .object({
    accountId: z.string(),
    active: z.boolean(),
    dailyLimit: Count.nullable(),
    monthlyLimit: Count.nullable(),
    spentToday: Count,
    spentThisMonth: Count,
    leased: Count.openapi({ description: "credits out with the member now: its lease as of its last report" }),
    reportedAt: IsoTime.nullable().openapi({
      description: "when the member last reported its spend (each lease call)",
    }),
  })
  .openapi("OrgMember");
export const Org = z
  .object({
    orgId: z.string(),
    plan: z.enum(ORG_PLANS),
    pool: z.object({
      balance: Count.openapi({ description: "what the pool's grants hold, not lent out" }),
      leased: Count.openapi({
        description: "grant credits out with members (their leases and what they spent of them)",
      }),
      spent: Count.openapi({ description: "what members reported spending from the pool" }),
      granted: Count,
      expired: Count,
    }),
    grants: z.array(Grant),
    flex: z.object({ limit: Count, used: Count }).nullable(),
    paused: z.boolean(),
    members: z.array(Member),
    topSpenders: z.array(z.object({ accountId: z.string(), spentToday: Count, spentThisMonth: Count })),
    createdAt: IsoTime,
  })
  .openapi("Org");
export const PoolGrantCreated = Grant.extend({ amount: Count, createdAt: IsoTime });
export const PoolRefundCreated = z.object({ refundId: z.string(), grant: Grant, reason: z.string() });
export const PoolResumed = z.object({ resumed: z.boolean(), org: Org });

export const PanelLink = z.object({ token: z.string(), url: z.string(), expiresAt: IsoTime });
export const CatalogView = z.object({ plans: z.array(planSchema), rateCard: rateCardSchema }).openapi("Catalog");
export const Health = z.object({ ok: z.boolean() });
/** The one error shape (SPEC §8); `code` is one of worker/http/errors.ts's codes, each with its status. */
export const ErrorShape = z
  .object({
    error: z.object({
      code: z.enum(ERROR_CODES).openapi("ErrorCode", { description: "What went wrong: each code has one HTTP status" }),
      message: z.string(),
      requestId: z.string(),
      details: z.unknown().optional(),
    }),
  })
  .openapi("Error");
