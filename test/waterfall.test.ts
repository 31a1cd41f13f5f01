/**
 * Pure unit tests of the decision core: worker/core/waterfall.ts, windows.ts and pricing.ts (SPEC §3 rate card, §4 waterfall).
 * No Durable Object, no HTTP: every input is built here, every expectation is derived from the SPEC rules.
 */
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { catalog, FIVE_HOURS_MS, WEEK_MS, type Product } from "../worker/catalog";
import { ERROR_STATUS } from "../worker/http/errors";
import { type Priced, type Pricing, priceUsage as pricing } from "../worker/core/pricing";
import {
  allocate,
  burnDownOrder,
  decide,
  guardedCreditBudget,
  settleReservation,
  spendableGrants,
  windowCapacity,
  type Decision,
  type GrantState,
  type Source,
  type WaterfallInput,
} from "../worker/core/waterfall";
import { chargeWindow, currentWindow, releaseWindow, viewWindow, type WindowView } from "../worker/core/windows";

const C = 1_000_000;
const HOUR = 3_600_000;
/** Credits to micro-credits, exactly (0.8 * C is not always an integer in floating point). */
const cr = (credits: number) => Math.round(credits * C);
const DAY = 24 * HOUR;
/** 2026-11-21 10:00:00.250 UTC: a non-round instant so second rounding is visible. */
const NOW = Date.UTC(2026, 10, 21, 10, 0, 0, 250);

// ───────────────────────── builders ─────────────────────────

/** A window view as the account object would build it: `openedAt` null means closed (and then used is 0). */
function win(kind: "fiveHour" | "weekly", limit: number, used: number, openedAt: number | null, now = NOW): WindowView {
  return viewWindow({ openedAt, used: openedAt === null ? 0 : used }, kind, limit, now);
}

/** go-plan codex windows: 2 credits / 5 h, 10 credits / week. */
function goWindows(
  fiveUsed = 0,
  weeklyUsed = fiveUsed,
  openedAt: number | null = fiveUsed || weeklyUsed ? NOW - HOUR : null,
) {
  return { fiveHour: win("fiveHour", 2 * C, fiveUsed, openedAt), weekly: win("weekly", 10 * C, weeklyUsed, openedAt) };
}

/** Both go windows exhausted by usage that started an hour ago. */
const exhausted = () => goWindows(2 * C, 2 * C);

let gid = 0;
function grant(p: Partial<GrantState> = {}): GrantState {
  return {
    id: `g${gid++}`,
    kind: "purchase",
    priority: 30,
    products: null,
    remaining: C,
    expiresAt: null,
    createdAt: NOW - DAY,
    ...p,
  };
}

function input(p: Partial<WaterfallInput> = {}): WaterfallInput {
  return {
    now: NOW,
    product: "codex",
    windows: goWindows(),
    grants: [],
    flex: null,
    creditsPaused: false,
    spendCapRemaining: null,
    ...p,
  };
}

const sum = (xs: readonly { amount: number }[]) => xs.reduce((s, x) => s + x.amount, 0);
const grantIds = (sources: Source[]) => sources.flatMap((s) => (s.layer === "grant" ? [s.grantId] : []));
function denied(d: Decision): Extract<Decision, { allowed: false }> {
  expect(d.allowed, JSON.stringify(d)).toBe(false);
  return d as Extract<Decision, { allowed: false }>;
}
function allowed(d: Decision): Extract<Decision, { allowed: true }> {
  expect(d.allowed, JSON.stringify(d)).toBe(true);
  return d as Extract<Decision, { allowed: true }>;
}
const nextMidnight = (ms: number) =>
  Date.UTC(new Date(ms).getUTCFullYear(), new Date(ms).getUTCMonth(), new Date(ms).getUTCDate() + 1);

// ───────────────────────── burn-down order ─────────────────────────

describe("burn-down order (SPEC §4.2)", () => {
  it("priority ascending comes first, whatever the expiry or age", () => {
    const p30 = grant({ priority: 30, expiresAt: NOW + HOUR, createdAt: NOW - 10 * DAY });
    const p10 = grant({ priority: 10, expiresAt: null, createdAt: NOW - 1 });
    const p20 = grant({ priority: 20, expiresAt: NOW + 300 * DAY, createdAt: NOW - 2 });
    expect(spendableGrants([p30, p10, p20], "codex", NOW).map((g) => g.id)).toEqual([p10.id, p20.id, p30.id]);

    const d = allowed(decide(input({ windows: exhausted(), grants: [p30, p10, p20] }), cr(1.5)));
    expect(d.sources).toEqual([
      { layer: "grant", grantId: p10.id, amount: C },
      { layer: "grant", grantId: p20.id, amount: cr(0.5) },
    ]);
  });

  it("within a priority, the soonest expiry goes first and a never-expiring grant last", () => {
    const later = grant({ priority: 20, expiresAt: NOW + 10 * DAY, createdAt: NOW - 3 * DAY });
    const never = grant({ priority: 20, expiresAt: null, createdAt: NOW - 9 * DAY });
    const soon = grant({ priority: 20, expiresAt: NOW + DAY, createdAt: NOW - DAY });
    expect(spendableGrants([never, later, soon], "codex", NOW).map((g) => g.id)).toEqual([soon.id, later.id, never.id]);

    const d = allowed(decide(input({ windows: exhausted(), grants: [never, later, soon] }), cr(2.5)));
    expect(d.sources).toEqual([
      { layer: "grant", grantId: soon.id, amount: C },
      { layer: "grant", grantId: later.id, amount: C },
      { layer: "grant", grantId: never.id, amount: cr(0.5) },
    ]);
  });

  it("within a priority and expiry, the oldest goes first", () => {
    const exp = NOW + 5 * DAY;
    const young = grant({ expiresAt: exp, createdAt: NOW - HOUR });
    const old = grant({ expiresAt: exp, createdAt: NOW - 2 * HOUR });
    const oldNever = grant({ expiresAt: null, createdAt: NOW - 5 * HOUR });
    const youngNever = grant({ expiresAt: null, createdAt: NOW - 4 * HOUR });
    expect(spendableGrants([youngNever, young, oldNever, old], "codex", NOW).map((g) => g.id)).toEqual([
      old.id,
      young.id,
      oldNever.id,
      youngNever.id,
    ]);
  });

  it("burnDownOrder is a consistent total order (antisymmetric, transitive through sorting)", () => {
    const arb = fc.array(
      fc.record({
        priority: fc.constantFrom(10, 20, 30),
        expiresAt: fc.option(fc.integer({ min: NOW, max: NOW + 10 * DAY }), { nil: null }),
        createdAt: fc.integer({ min: NOW - 10 * DAY, max: NOW }),
      }),
      { maxLength: 12 },
    );
    fc.assert(
      fc.property(arb, (raw) => {
        const gs = raw.map((r, i) => grant({ ...r, id: `p${i}` }));
        const sorted = [...gs].sort(burnDownOrder);
        for (let i = 1; i < sorted.length; i++) {
          const a = sorted[i - 1];
          const b = sorted[i];
          // lexicographic key: priority, expiry (null = +∞), createdAt
          const ka = [a.priority, a.expiresAt ?? Infinity, a.createdAt];
          const kb = [b.priority, b.expiresAt ?? Infinity, b.createdAt];
          const cmp = ka[0] !== kb[0] ? ka[0] - kb[0] : ka[1] !== kb[1] ? (ka[1] < kb[1] ? -1 : 1) : ka[2] - kb[2];
          expect(cmp).toBeLessThanOrEqual(0);
          expect(Math.sign(burnDownOrder(a, b))).toBe(-Math.sign(burnDownOrder(b, a)));
        }
      }),
    );
  });

  it("skips grants that are expired (expiresAt <= now), empty, or for another product", () => {
    const expiredNow = grant({ expiresAt: NOW });
    const expiredBefore = grant({ expiresAt: NOW - 1 });
    const empty = grant({ remaining: 0 });
    const soraOnly = grant({ products: ["sora"] });
    const live = grant({ expiresAt: NOW + 1 });
    expect(spendableGrants([expiredNow, expiredBefore, empty, soraOnly, live], "codex", NOW).map((g) => g.id)).toEqual([
      live.id,
    ]);
  });
});

// ───────────────────────── product restriction ─────────────────────────

describe("product-restricted grants", () => {
  it("a grant limited to another product is never spent, even if it comes first in burn-down order", () => {
    const soraPromo = grant({ kind: "promo", priority: 10, products: ["sora"], remaining: 100 * C });
    const codexPurchase = grant({ products: ["codex"], remaining: C });
    const shared = grant({ priority: 30, expiresAt: null, createdAt: NOW, remaining: C });
    const d = allowed(decide(input({ windows: exhausted(), grants: [soraPromo, codexPurchase, shared] }), cr(1.5)));
    expect(grantIds(d.sources)).not.toContain(soraPromo.id);
    expect(sum(d.sources)).toBe(cr(1.5));
  });

  it("credits only for another product count as no credits: limit_reached", () => {
    const soraOnly = grant({ products: ["sora"], remaining: 100 * C });
    const d = denied(decide(input({ windows: exhausted(), grants: [soraOnly] }), C));
    expect(d.reason).toBe("limit_reached");
    // and the same grant serves sora
    const soraIn = input({
      product: "sora",
      windows: { fiveHour: win("fiveHour", C, C, NOW - HOUR), weekly: win("weekly", 5 * C, C, NOW - HOUR) },
      grants: [soraOnly],
    });
    expect(allowed(decide(soraIn, C)).sources).toEqual([{ layer: "grant", grantId: soraOnly.id, amount: C }]);
  });

  it("a grant listing several products serves each of them", () => {
    const both = grant({ products: ["codex", "sora"], remaining: 3 * C });
    for (const product of ["codex", "sora"] as Product[]) {
      const d = allowed(decide(input({ product, windows: exhausted(), grants: [both] }), 2 * C));
      expect(d.sources).toEqual([{ layer: "grant", grantId: both.id, amount: 2 * C }]);
    }
  });
});

// ───────────────────────── windows ─────────────────────────

describe("window capacity = min(5h remaining, weekly remaining)", () => {
  it("the tighter window binds", () => {
    const w = {
      fiveHour: win("fiveHour", 2 * C, cr(0.5), NOW - HOUR),
      weekly: win("weekly", 10 * C, cr(9.2), NOW - DAY),
    };
    expect(windowCapacity(w)).toBe(cr(0.8));
    const w2 = {
      fiveHour: win("fiveHour", 2 * C, cr(1.9), NOW - HOUR),
      weekly: win("weekly", 10 * C, 3 * C, NOW - DAY),
    };
    expect(windowCapacity(w2)).toBe(cr(0.1));
  });

  it("a charge takes the window part first, then credits", () => {
    const g = grant();
    const w = {
      fiveHour: win("fiveHour", 2 * C, cr(0.5), NOW - HOUR),
      weekly: win("weekly", 10 * C, cr(9.2), NOW - DAY),
    };
    const d = allowed(decide(input({ windows: w, grants: [g] }), C));
    expect(d.sources).toEqual([
      { layer: "window", amount: cr(0.8) },
      { layer: "grant", grantId: g.id, amount: cr(0.2) },
    ]);
  });

  it("a cost the window covers touches no grant", () => {
    const g = grant({ kind: "promo", priority: 10, expiresAt: NOW + HOUR });
    expect(allowed(decide(input({ grants: [g] }), 2 * C)).sources).toEqual([{ layer: "window", amount: 2 * C }]);
  });

  it("usage above the limit (after a downgrade) gives capacity 0, never negative", () => {
    const w = { fiveHour: win("fiveHour", 2 * C, 5 * C, NOW - HOUR), weekly: win("weekly", 10 * C, 5 * C, NOW - HOUR) };
    expect(w.fiveHour.remaining).toBe(0);
    expect(windowCapacity(w)).toBe(0);
    const g = grant();
    expect(allowed(decide(input({ windows: w, grants: [g] }), cr(0.5))).sources).toEqual([
      { layer: "grant", grantId: g.id, amount: cr(0.5) },
    ]);
  });

  it("currentWindow: open until openedAt + length, closed and empty from then on", () => {
    const opened = NOW - FIVE_HOURS_MS + 1;
    expect(currentWindow({ openedAt: opened, used: 7 }, "fiveHour", NOW)).toEqual({ openedAt: opened, used: 7 });
    expect(currentWindow({ openedAt: opened, used: 7 }, "fiveHour", NOW + 1)).toEqual({ openedAt: null, used: 0 });
    expect(currentWindow({ openedAt: opened, used: 7 }, "weekly", NOW + 1)).toEqual({ openedAt: opened, used: 7 });
    expect(currentWindow({ openedAt: opened, used: 7 }, "weekly", opened + WEEK_MS)).toEqual({
      openedAt: null,
      used: 0,
    });
  });

  it("viewWindow: resetsAt = openedAt + length, null while closed", () => {
    const opened = NOW - HOUR;
    expect(viewWindow({ openedAt: opened, used: C }, "fiveHour", 2 * C, NOW)).toEqual({
      limit: 2 * C,
      used: C,
      remaining: C,
      resetsAt: opened + FIVE_HOURS_MS,
    });
    expect(viewWindow({ openedAt: opened, used: C }, "weekly", 10 * C, NOW)).toEqual({
      limit: 10 * C,
      used: C,
      remaining: 9 * C,
      resetsAt: opened + WEEK_MS,
    });
    expect(viewWindow({ openedAt: opened, used: C }, "fiveHour", 2 * C, opened + FIVE_HOURS_MS)).toEqual({
      limit: 2 * C,
      used: 0,
      remaining: 2 * C,
      resetsAt: null,
    });
  });

  it("chargeWindow opens a closed window at now and accumulates in an open one", () => {
    const first = chargeWindow({ openedAt: null, used: 0 }, "fiveHour", C, NOW);
    expect(first).toEqual({ openedAt: NOW, used: C });
    const second = chargeWindow(first, "fiveHour", cr(0.5), NOW + 4 * HOUR);
    expect(second).toEqual({ openedAt: NOW, used: cr(1.5) });
    // past the end: a new window opens at the charge, old usage is gone
    const third = chargeWindow(second, "fiveHour", cr(0.25), NOW + FIVE_HOURS_MS);
    expect(third).toEqual({ openedAt: NOW + FIVE_HOURS_MS, used: cr(0.25) });
  });

  it("releaseWindow gives back only to the same window instance", () => {
    const w = { openedAt: NOW, used: 2 * C };
    expect(releaseWindow(w, "fiveHour", cr(0.5), NOW, NOW + HOUR)).toEqual({ openedAt: NOW, used: cr(1.5) });
    expect(releaseWindow(w, "fiveHour", 5 * C, NOW, NOW + HOUR)).toEqual({ openedAt: NOW, used: 0 });
    // a newer instance is not credited with usage reserved in an older one
    const newer = { openedAt: NOW + FIVE_HOURS_MS, used: C };
    expect(releaseWindow(newer, "fiveHour", cr(0.5), NOW, NOW + FIVE_HOURS_MS + HOUR)).toEqual(newer);
  });
});

// ───────────────────────── all-or-nothing and reasons ─────────────────────────

describe("all-or-nothing and denial reasons", () => {
  it("denies when the layers together fall short, with no sources and no mutation of the input", () => {
    const g = grant({ remaining: cr(0.5) });
    const inp = input({ windows: goWindows(C, C), grants: [g] });
    const before = structuredClone(inp);
    const d = denied(decide(inp, 2 * C));
    expect(d).not.toHaveProperty("sources");
    expect(d.reason).toBe("insufficient_credits");
    expect(d.offer).toBe("add_credits");
    expect(inp).toEqual(before);
  });

  it("limit_reached when the windows are exhausted and there are no credits at all", () => {
    const d = denied(
      decide(input({ windows: exhausted(), grants: [grant({ expiresAt: NOW - 1 }), grant({ remaining: 0 })] }), 1),
    );
    expect(d.reason).toBe("limit_reached");
    expect(d.offer).toBe("add_credits");
  });

  it("insufficient_credits when some credits exist but not enough", () => {
    const d = denied(decide(input({ windows: exhausted(), grants: [grant({ remaining: C - 1 })] }), C));
    expect(d.reason).toBe("insufficient_credits");
    expect(d.offer).toBe("add_credits");
  });

  it("credits_paused when paused and credits are needed; window-only usage still works", () => {
    const g = grant({ remaining: 100 * C });
    const paused = input({ windows: goWindows(C, C), grants: [g], creditsPaused: true });
    expect(allowed(decide(paused, C)).sources).toEqual([{ layer: "window", amount: C }]);
    const d = denied(decide(paused, C + 1));
    expect(d.reason).toBe("credits_paused");
    expect(d.offer).toBeUndefined();
    expect(guardedCreditBudget(paused)).toBe(0);
  });

  it("spend_cap when the credit part exceeds what the daily cap leaves; the window part is not capped", () => {
    const g = grant({ remaining: 100 * C });
    const capped = input({ windows: goWindows(C, C), grants: [g], spendCapRemaining: cr(0.5) });
    // window 1 C + 0.5 C credits: exactly at the cap
    expect(allowed(decide(capped, cr(1.5))).sources).toEqual([
      { layer: "window", amount: C },
      { layer: "grant", grantId: g.id, amount: cr(0.5) },
    ]);
    const d = denied(decide(capped, cr(1.5) + 1));
    expect(d.reason).toBe("spend_cap");
    expect(d.offer).toBeUndefined();
    expect(guardedCreditBudget(capped)).toBe(cr(0.5));
  });

  it("flex overage pays after grants, up to the month's limit", () => {
    const g = grant({ remaining: cr(0.5) });
    const flex = { limit: 5 * C, used: 4 * C };
    const d = allowed(decide(input({ windows: exhausted(), grants: [g], flex }), cr(1.5)));
    expect(d.sources).toEqual([
      { layer: "grant", grantId: g.id, amount: cr(0.5) },
      { layer: "flex", amount: C },
    ]);
    expect(denied(decide(input({ windows: exhausted(), grants: [g], flex }), cr(1.5) + 1)).reason).toBe(
      "insufficient_credits",
    );
  });
});

// ───────────────────────── resetsAt / retryAfterSeconds ─────────────────────────

describe("resetsAt and retryAfterSeconds: the earliest window end that frees enough", () => {
  const retry = (resetsAt: number, now = NOW) => Math.ceil((resetsAt - now) / 1000);

  it("5-hour window exhausted, weekly has room: the 5-hour end", () => {
    const opened = NOW - 2 * HOUR + 500; // ends 3 h − 0.5 s + 0.25 s after NOW: rounding up matters
    const w = goWindows(2 * C, 3 * C, opened);
    const d = denied(decide(input({ windows: w }), C));
    expect(d.reason).toBe("limit_reached");
    expect(d.resetsAt).toBe(opened + FIVE_HOURS_MS);
    expect(d.retryAfterSeconds).toBe(retry(opened + FIVE_HOURS_MS));
    expect(d.retryAfterSeconds).toBe(Math.ceil((3 * HOUR + 250) / 1000));
  });

  it("weekly exhausted: the weekly end, even though the 5-hour window ends sooner", () => {
    const w = { fiveHour: win("fiveHour", 2 * C, C, NOW - HOUR), weekly: win("weekly", 10 * C, 10 * C, NOW - 3 * DAY) };
    const d = denied(decide(input({ windows: w }), cr(0.5)));
    expect(d.resetsAt).toBe(NOW - 3 * DAY + WEEK_MS);
    expect(d.retryAfterSeconds).toBe(retry(NOW - 3 * DAY + WEEK_MS));
  });

  it("weekly exhausted while the 5-hour window is closed: the weekly end", () => {
    const w = { fiveHour: win("fiveHour", 2 * C, 0, null), weekly: win("weekly", 10 * C, 10 * C, NOW - 3 * DAY) };
    expect(w.fiveHour.resetsAt).toBeNull();
    const d = denied(decide(input({ windows: w }), cr(0.5)));
    expect(d.reason).toBe("limit_reached");
    expect(d.resetsAt).toBe(NOW - 3 * DAY + WEEK_MS);
  });

  it("a 5-hour end that frees too little is skipped for the weekly end", () => {
    // 5h exhausted, weekly has 1 C left: at the 5h end capacity is min(2, 1) = 1 C < 1.5 C
    const w = {
      fiveHour: win("fiveHour", 2 * C, 2 * C, NOW - HOUR),
      weekly: win("weekly", 10 * C, 9 * C, NOW - 2 * DAY),
    };
    const d = denied(decide(input({ windows: w }), cr(1.5)));
    expect(d.resetsAt).toBe(NOW - 2 * DAY + WEEK_MS);
    // but 1 C is relieved by the 5h end
    expect(denied(decide(input({ windows: w }), C)).resetsAt).toBe(NOW - HOUR + FIVE_HOURS_MS);
  });

  it("credits count towards relief: the 5-hour end suffices when fresh window + credits cover the cost", () => {
    const g = grant({ remaining: cr(0.5) });
    const d = denied(decide(input({ windows: exhausted(), grants: [g] }), cr(2.4)));
    expect(d.reason).toBe("insufficient_credits");
    expect(d.resetsAt).toBe(NOW - HOUR + FIVE_HOURS_MS);
    // 2.6 C is more than a fresh 5h window (2 C) + 0.5 C: no window end helps
    const none = denied(decide(input({ windows: exhausted(), grants: [g] }), cr(2.6)));
    expect(none.resetsAt).toBeUndefined();
    expect(none.retryAfterSeconds).toBeUndefined();
    expect(none.offer).toBe("add_credits");
  });

  it("retryAfterSeconds is at least 1", () => {
    const opened = NOW - FIVE_HOURS_MS + 1; // ends 1 ms after NOW
    const d = denied(decide(input({ windows: goWindows(2 * C, 2 * C, opened) }), C));
    expect(d.resetsAt).toBe(NOW + 1);
    expect(d.retryAfterSeconds).toBe(1);
  });

  it("spend_cap: the earlier of the window relief and the next UTC midnight", () => {
    const g = grant({ remaining: 100 * C });
    // NOW is 10:00 UTC; the 5h window ends at 14:00, before midnight
    const early = denied(decide(input({ windows: exhausted(), grants: [g], spendCapRemaining: 0 }), C));
    expect(early.reason).toBe("spend_cap");
    expect(early.resetsAt).toBe(NOW - HOUR + FIVE_HOURS_MS);
    // at 22:00 UTC the 5h window ends after midnight: midnight wins
    const late = NOW + 12 * HOUR;
    const w = {
      fiveHour: win("fiveHour", 2 * C, 2 * C, late - HOUR, late),
      weekly: win("weekly", 10 * C, 2 * C, late - HOUR, late),
    };
    const d = denied(decide(input({ now: late, windows: w, grants: [g], spendCapRemaining: 0 }), C));
    expect(d.reason).toBe("spend_cap");
    expect(d.resetsAt).toBe(nextMidnight(late));
    expect(d.retryAfterSeconds).toBe(retry(nextMidnight(late), late));
  });
});

// ───────────────────────── holds ─────────────────────────

describe("settleReservation", () => {
  const reserved: Source[] = [
    { layer: "window", amount: 3 },
    { layer: "grant", grantId: "a", amount: 2 },
    { layer: "grant", grantId: "b", amount: 1 },
  ];

  it("actual below the hold: charges in the hold's order, releases the rest", () => {
    expect(settleReservation(reserved, 4)).toEqual({
      charged: [
        { layer: "window", amount: 3 },
        { layer: "grant", grantId: "a", amount: 1 },
      ],
      released: [
        { layer: "grant", grantId: "a", amount: 1 },
        { layer: "grant", grantId: "b", amount: 1 },
      ],
      extra: 0,
    });
  });

  it("actual equal to the hold: all charged, nothing released", () => {
    expect(settleReservation(reserved, 6)).toEqual({ charged: reserved, released: [], extra: 0 });
  });

  it("actual above the hold: all charged and the excess is extra", () => {
    expect(settleReservation(reserved, 9)).toEqual({ charged: reserved, released: [], extra: 3 });
  });

  it("property: per source charged + released = reserved; charged + extra = actual", () => {
    const arbSources = fc.array(
      fc.oneof(
        fc.record({ layer: fc.constant("window" as const), amount: fc.integer({ min: 1, max: 10 * C }) }),
        fc.record({
          layer: fc.constant("grant" as const),
          grantId: fc.string({ minLength: 1, maxLength: 4 }),
          amount: fc.integer({ min: 1, max: 10 * C }),
        }),
        fc.record({ layer: fc.constant("flex" as const), amount: fc.integer({ min: 1, max: 10 * C }) }),
      ),
      { maxLength: 6 },
    );
    fc.assert(
      fc.property(arbSources, fc.integer({ min: 0, max: 70 * C }), (res: Source[], actual) => {
        const s = settleReservation(res, actual);
        const total = sum(res);
        expect(sum(s.charged) + s.extra).toBe(actual);
        expect(sum(s.charged) + sum(s.released)).toBe(total);
        expect(s.extra).toBe(Math.max(0, actual - total));
        for (const x of [...s.charged, ...s.released]) expect(x.amount).toBeGreaterThan(0);
      }),
    );
  });
});

// ───────────────────────── pricing ─────────────────────────

describe("pricing: cost = ceil(Σ units × rate / 1e6)", () => {
  const rc = catalog.rateCard;
  const rates = rc.products.codex["gpt-5-codex"] as Record<string, number>;
  /** The SPEC formula, computed independently with BigInt. */
  const expected = (r: Record<string, number>, u: Record<string, number>) => {
    let t = 0n;
    for (const [m, n] of Object.entries(u)) t += BigInt(n) * BigInt(r[m]);
    return Number(t / 1_000_000n + (t % 1_000_000n === 0n ? 0n : 1n));
  };

  it("prices exact and fractional amounts, rounding the sum up once (not each meter)", () => {
    const u1 = { inputTokens: 1000 };
    expect(priceUsage(rc, "codex", { model: "gpt-5-codex", ...u1 })).toEqual({
      cost: expected(rates, u1),
      rateCardVersion: rc.version,
    });
    // 1 input + 1 cached input token: each below 1 µcr but summing to one fraction, ceil once
    const u2 = { inputTokens: 1, cachedInputTokens: 1 };
    const p2 = priceUsage(rc, "codex", { model: "gpt-5-codex", ...u2 });
    expect(p2.cost).toBe(expected(rates, u2));
    const perMeterCeil = Math.ceil(rates.inputTokens / 1e6) + Math.ceil(rates.cachedInputTokens / 1e6);
    if (
      (rates.inputTokens % 1e6) + (rates.cachedInputTokens % 1e6) <= 1e6 &&
      rates.inputTokens % 1e6 !== 0 &&
      rates.cachedInputTokens % 1e6 !== 0
    )
      expect(p2.cost).toBeLessThan(perMeterCeil);
  });

  it("records the rate-card version", () => {
    expect(priceUsage(rc, "sora", { model: "sora-2", videoSeconds: 3 }).rateCardVersion).toBe(rc.version);
  });

  it("property: matches the formula for every model and meter mix", () => {
    const models = Object.entries(rc.products).flatMap(([product, ms]) =>
      Object.entries(ms).map(([model, r]) => ({ product: product as Product, model, r: r as Record<string, number> })),
    );
    const arb = fc
      .constantFrom(...models)
      .chain((m) =>
        fc
          .record(
            Object.fromEntries(
              Object.keys(m.r).map((meter) => [meter, fc.integer({ min: 0, max: 50_000_000 })]),
            ) as Record<string, fc.Arbitrary<number>>,
          )
          .map((u) => ({ ...m, u })),
      );
    fc.assert(
      fc.property(arb, ({ product, model, r, u }) => {
        fc.pre(Object.values(u).some((n) => n > 0));
        const p = priceUsage(rc, product, { model, ...u });
        expect(p.cost).toBe(expected(r, u));
        expect(Number.isSafeInteger(p.cost)).toBe(true);
      }),
    );
  });

  /** The price, where the usage can be priced. */
  const priceUsage = (...args: Parameters<typeof pricing>): Priced => {
    const p = pricing(...args);
    if (!p.ok) throw new Error(`expected a price, got ${p.refusal.code}: ${p.refusal.message}`);
    return p.value;
  };
  /** Pricing refuses (a value, never a throw) with invalid_request, which the API answers as 400. */
  const rejects = (f: () => Pricing<Priced>) => {
    const p = f();
    if (p.ok) throw new Error("expected an invalid_request refusal");
    expect(p.refusal.code).toBe("invalid_request");
    expect(ERROR_STATUS[p.refusal.code]).toBe(400);
  };

  it("an unknown model, a model of another product, or an unknown product is invalid_request", () => {
    rejects(() => pricing(rc, "codex", { model: "gpt-0-nope", inputTokens: 10 }));
    rejects(() => pricing(rc, "codex", { model: "sora-2", videoSeconds: 10 }));
    rejects(() => pricing(rc, "gemini" as Product, { model: "gpt-5-codex", inputTokens: 10 }));
  });

  it("a meter the model does not accept, or an unknown meter, is invalid_request", () => {
    rejects(() => pricing(rc, "codex", { model: "gpt-5-codex", videoSeconds: 10 }));
    rejects(() => pricing(rc, "sora", { model: "sora-2", outputTokens: 10 }));
    rejects(() => pricing(rc, "codex", { model: "gpt-5-codex", audioSeconds: 10 } as never));
  });

  it("negative, fractional or unsafe units, no units, or a price above the safe range are invalid_request", () => {
    rejects(() => pricing(rc, "codex", { model: "gpt-5-codex", inputTokens: -1 }));
    rejects(() => pricing(rc, "codex", { model: "gpt-5-codex", inputTokens: 1.5 }));
    rejects(() => pricing(rc, "codex", { model: "gpt-5-codex", inputTokens: 2 ** 53 }));
    rejects(() => pricing(rc, "codex", { model: "gpt-5-codex" }));
    rejects(() => pricing(rc, "codex", { model: "gpt-5-codex", inputTokens: 0 }));
    rejects(() => pricing(rc, "sora", { model: "sora-2-pro", videoSeconds: Number.MAX_SAFE_INTEGER }));
  });
});

// ───────────────────────── properties of decide ─────────────────────────

describe("decide: properties", () => {
  const arbWindow = (kind: "fiveHour" | "weekly") =>
    fc
      .record({
        limit: fc.integer({ min: 0, max: 10 * C }),
        used: fc.integer({ min: 0, max: 12 * C }),
        open: fc.boolean(),
        age: fc.integer({ min: 0, max: (kind === "fiveHour" ? FIVE_HOURS_MS : WEEK_MS) - 1 }),
      })
      .map(({ limit, used, open, age }) => win(kind, limit, used, open ? NOW - age : null));
  const arbGrants = fc
    .array(
      fc.record({
        kind: fc.constantFrom("promo" as const, "entitlement" as const, "purchase" as const),
        priority: fc.constantFrom(10, 20, 30),
        products: fc.constantFrom(null, ["codex"] as Product[], ["sora"] as Product[], ["codex", "sora"] as Product[]),
        remaining: fc.integer({ min: 0, max: 5 * C }),
        expiresAt: fc.option(fc.integer({ min: NOW - DAY, max: NOW + 30 * DAY }), { nil: null }),
        createdAt: fc.integer({ min: NOW - 30 * DAY, max: NOW }),
      }),
      { maxLength: 8 },
    )
    .map((gs) => gs.map((g, i) => ({ ...g, id: `q${i}` }) as GrantState));
  const arbInput = fc.record({
    now: fc.constant(NOW),
    product: fc.constantFrom("codex" as const, "sora" as const),
    windows: fc.record({ fiveHour: arbWindow("fiveHour"), weekly: arbWindow("weekly") }),
    grants: arbGrants,
    flex: fc.option(
      fc.record({ limit: fc.integer({ min: 0, max: 5 * C }), used: fc.integer({ min: 0, max: 6 * C }) }),
      { nil: null },
    ),
    creditsPaused: fc.integer({ min: 0, max: 4 }).map((n) => n === 0),
    spendCapRemaining: fc.option(fc.integer({ min: 0, max: 10 * C }), { nil: null }),
  }) as fc.Arbitrary<WaterfallInput>;
  const arbCost = fc.integer({ min: 1, max: 25 * C });

  const usable = (g: GrantState, inp: WaterfallInput) =>
    g.remaining > 0 &&
    (g.expiresAt === null || g.expiresAt > inp.now) &&
    (g.products === null || g.products.includes(inp.product));

  it("allowed exactly when window + guarded credits cover the cost; sources then sum to the cost within every layer's limit", () => {
    fc.assert(
      fc.property(arbInput, arbCost, (inp, cost) => {
        const before = structuredClone(inp);
        const d = decide(inp, cost);
        expect(inp).toEqual(before);

        const winCap = Math.max(0, Math.min(inp.windows.fiveHour.remaining, inp.windows.weekly.remaining));
        const need = Math.max(0, cost - winCap);
        const credits =
          inp.grants.filter((g) => usable(g, inp)).reduce((s, g) => s + g.remaining, 0) +
          (inp.flex ? Math.max(0, inp.flex.limit - inp.flex.used) : 0);
        const feasible =
          need === 0 ||
          (!inp.creditsPaused && credits >= need && (inp.spendCapRemaining === null || need <= inp.spendCapRemaining));
        expect(d.allowed).toBe(feasible);

        if (d.allowed) {
          expect(sum(d.sources)).toBe(cost);
          const ws = d.sources.filter((s) => s.layer === "window");
          expect(ws.length).toBeLessThanOrEqual(1);
          if (ws.length) expect(d.sources[0].layer).toBe("window");
          expect(sum(ws)).toBe(Math.min(cost, winCap)); // the window layer takes all it can
          const ids = grantIds(d.sources);
          expect(new Set(ids).size).toBe(ids.length);
          const order = spendableGrants(inp.grants, inp.product, inp.now).map((g) => g.id);
          expect(ids).toEqual(order.slice(0, ids.length)); // burn-down order, no grant skipped
          for (const s of d.sources) {
            expect(s.amount).toBeGreaterThan(0);
            if (s.layer === "grant") {
              const g = inp.grants.find((x) => x.id === s.grantId)!;
              expect(usable(g, inp)).toBe(true);
              expect(s.amount).toBeLessThanOrEqual(g.remaining);
            }
            if (s.layer === "flex") expect(s.amount).toBeLessThanOrEqual(inp.flex!.limit - inp.flex!.used);
          }
          // every grant before the last one used is drained
          for (const id of ids.slice(0, -1))
            expect(d.sources.find((s) => s.layer === "grant" && s.grantId === id)!.amount).toBe(
              inp.grants.find((g) => g.id === id)!.remaining,
            );
          const creditPart = cost - sum(ws);
          if (creditPart > 0) expect(inp.creditsPaused).toBe(false);
          if (inp.spendCapRemaining !== null) expect(creditPart).toBeLessThanOrEqual(inp.spendCapRemaining);
        } else {
          expect(d).not.toHaveProperty("sources");
          if (inp.creditsPaused) expect(d.reason).toBe("credits_paused");
          else if (credits === 0) expect(d.reason).toBe("limit_reached");
          else if (credits < need) expect(d.reason).toBe("insufficient_credits");
          else expect(d.reason).toBe("spend_cap");
          expect(d.offer === "add_credits").toBe(d.reason === "limit_reached" || d.reason === "insufficient_credits");
          expect(d.resetsAt === undefined).toBe(d.retryAfterSeconds === undefined);
          if (d.resetsAt !== undefined) {
            expect(d.resetsAt).toBeGreaterThan(inp.now);
            expect(d.retryAfterSeconds).toBe(Math.max(1, Math.ceil((d.resetsAt - inp.now) / 1000)));
          }
          if (d.reason === "limit_reached" || d.reason === "insufficient_credits" || d.reason === "credits_paused") {
            // resetsAt is the earliest window end after which the windows (refreshed) plus the credits cover the cost
            const avail = d.reason === "credits_paused" ? 0 : credits;
            const reliefAt = (t: number) => {
              const five =
                inp.windows.fiveHour.resetsAt !== null && inp.windows.fiveHour.resetsAt <= t
                  ? inp.windows.fiveHour.limit
                  : inp.windows.fiveHour.remaining;
              const week =
                inp.windows.weekly.resetsAt !== null && inp.windows.weekly.resetsAt <= t
                  ? inp.windows.weekly.limit
                  : inp.windows.weekly.remaining;
              return Math.min(five, week) + avail >= cost;
            };
            const ends = [inp.windows.fiveHour.resetsAt, inp.windows.weekly.resetsAt].filter(
              (t): t is number => t !== null,
            );
            const best = ends.filter(reliefAt).sort((a, b) => a - b)[0];
            expect(d.resetsAt).toBe(best);
          }
        }
      }),
      { numRuns: 500 },
    );
  });

  it("allocate never takes more than the budget from credits, nor more than a grant holds", () => {
    fc.assert(
      fc.property(arbInput, arbCost, fc.integer({ min: 0, max: 20 * C }), (inp, cost, budget) => {
        const { sources, uncovered } = allocate(inp, cost, budget);
        expect(sum(sources) + uncovered).toBe(cost);
        expect(uncovered).toBeGreaterThanOrEqual(0);
        const credit = sources.filter((s) => s.layer !== "window");
        expect(sum(credit)).toBeLessThanOrEqual(budget);
        for (const s of sources)
          if (s.layer === "grant")
            expect(s.amount).toBeLessThanOrEqual(inp.grants.find((g) => g.id === s.grantId)!.remaining);
      }),
      { numRuns: 300 },
    );
  });
});

describe("uuidv7", () => {
  it("makes RFC 9562 version-7 ids that sort in time order", async () => {
    const { uuidv7 } = await import("../worker/core/ids");
    const a = uuidv7(1_700_000_000_000);
    const b = uuidv7(1_700_000_000_001);
    expect(a).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
    expect(a.slice(0, 13)).toBe("018bcfe5-6800");
    expect(a < b).toBe(true);
    expect(uuidv7(5)).not.toBe(uuidv7(5));
  });
});
