import { catalog, type Meter, type Product, type RateCard } from "../catalog";
import type { Refusal } from "./refusals";

export type Usage = { model: string } & Partial<Record<Meter, number>>;

export interface Priced {
  cost: number;
  rateCardVersion: string;
}

/** A price, or why the usage cannot be priced (an unknown model or meter, a bad count): never a throw. */
export type Pricing<T> = { ok: true; value: T } | { ok: false; refusal: Refusal };

const invalid = (message: string, field: string): { ok: false; refusal: Refusal } => ({
  ok: false,
  refusal: { code: "invalid_request", message, details: { field } },
});

/**
 * cost = ceil(Σ units × rate / 1e6), in micro-credits. BigInt keeps the product exact
 * (units and rates are safe integers, their product is not).
 */
export function priceUsage(rateCard: RateCard, product: Product, usage: Usage): Pricing<Priced> {
  // Own keys only: "constructor", "__proto__" or "toString" must not find Object.prototype's members.
  const models = Object.hasOwn(rateCard.products, product) ? rateCard.products[product] : undefined;
  const rates = models && Object.hasOwn(models, usage.model) ? models[usage.model] : undefined;
  if (!rates) return invalid(`unknown model '${usage.model}' for product '${product}'`, "usage.model");
  const rateOf: Readonly<Record<string, number | undefined>> = rates;
  let total = 0n;
  let anyUnits = false;
  for (const [meter, units] of Object.entries(usage)) {
    if (meter === "model") continue;
    const rate = Object.hasOwn(rateOf, meter) ? rateOf[meter] : undefined;
    if (rate === undefined) return invalid(`model '${usage.model}' does not accept meter '${meter}'`, `usage.${meter}`);
    if (typeof units !== "number" || !Number.isSafeInteger(units) || units < 0)
      return invalid(`usage.${meter} must be a non-negative safe integer`, `usage.${meter}`);
    if (units > 0) anyUnits = true;
    total += BigInt(units) * BigInt(rate);
  }
  if (!anyUnits) return invalid("usage must have at least one meter above zero", "usage");
  const cost = (total + 999_999n) / 1_000_000n;
  if (cost > BigInt(Number.MAX_SAFE_INTEGER)) return invalid("usage prices above the largest allowed amount", "usage");
  return { ok: true, value: { cost: Number(cost), rateCardVersion: rateCard.version } };
}

/** What one decision charges: a cost for a product, with the rate-card version when it was priced. */
export type Charge = { product: Product; cost: number; rateCardVersion?: string };

/** `cost` as given, or `usage` priced with the current rate card (which the charge then records). */
export function chargeOf(product: Product, body: { cost?: number; usage?: Usage }): Pricing<Charge> {
  if (body.cost !== undefined) return { ok: true, value: { product, cost: body.cost } };
  if (body.usage === undefined) return invalid("give exactly one of cost or usage", "usage");
  const priced = priceUsage(catalog.rateCard, product, body.usage);
  if (!priced.ok) return priced;
  return { ok: true, value: { product, cost: priced.value.cost, rateCardVersion: priced.value.rateCardVersion } };
}
