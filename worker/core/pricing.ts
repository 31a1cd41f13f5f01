import { catalog, type Meter, type Product, type RateCard } from "../catalog";
import { ApiError } from "../errors";

export type Usage = { model: string } & Partial<Record<Meter, number>>;

export interface Priced {
  cost: number;
  rateCardVersion: string;
}

/**
 * cost = ceil(Σ units × rate / 1e6), in micro-credits. BigInt keeps the product exact
 * (units and rates are safe integers, their product is not).
 */
export function priceUsage(rateCard: RateCard, product: Product, usage: Usage): Priced {
  // Own keys only: "constructor", "__proto__" or "toString" must not find Object.prototype's members.
  const models = Object.hasOwn(rateCard.products, product) ? rateCard.products[product] : undefined;
  const rates = models && Object.hasOwn(models, usage.model) ? models[usage.model] : undefined;
  if (!rates) throw new ApiError("invalid_request", `unknown model '${usage.model}' for product '${product}'`, { field: "usage.model" });
  let total = 0n;
  let anyUnits = false;
  for (const [meter, units] of Object.entries(usage)) {
    if (meter === "model") continue;
    const rate = Object.hasOwn(rates, meter) ? (rates as Record<string, number | undefined>)[meter] : undefined;
    if (rate === undefined) throw new ApiError("invalid_request", `model '${usage.model}' does not accept meter '${meter}'`, { field: `usage.${meter}` });
    if (typeof units !== "number" || !Number.isSafeInteger(units) || units < 0)
      throw new ApiError("invalid_request", `usage.${meter} must be a non-negative safe integer`, { field: `usage.${meter}` });
    if (units > 0) anyUnits = true;
    total += BigInt(units) * BigInt(rate);
  }
  if (!anyUnits) throw new ApiError("invalid_request", "usage must have at least one meter above zero", { field: "usage" });
  const cost = (total + 999_999n) / 1_000_000n;
  if (cost > BigInt(Number.MAX_SAFE_INTEGER)) throw new ApiError("invalid_request", "usage prices above the largest allowed amount", { field: "usage" });
  return { cost: Number(cost), rateCardVersion: rateCard.version };
}

/** What one decision charges: a cost for a product, with the rate-card version when it was priced. */
export type Charge = { product: Product; cost: number; rateCardVersion?: string };

/** `cost` as given, or `usage` priced with the current rate card (which the charge then records). */
export function chargeOf(product: Product, body: { cost?: number; usage?: Usage }): Charge {
  if (body.cost !== undefined) return { product, cost: body.cost };
  const priced = priceUsage(catalog.rateCard, product, body.usage!);
  return { product, cost: priced.cost, rateCardVersion: priced.rateCardVersion };
}
