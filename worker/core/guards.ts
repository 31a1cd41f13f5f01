import type { Catalog } from "../catalog";

type AnomalyConfig = Catalog["guards"]["anomaly"];

/**
 * The trailing-window spend above which credit spending pauses:
 * max(floor, multiplier × the average spend per trailing window over the baseline days).
 */
export function anomalyThreshold(g: AnomalyConfig, spentOverBaseline: number): number {
  const windowsInBaseline = (g.baselineDays * 24 * 60) / g.trailingMinutes;
  return Math.max(g.floorMicroCredits, Math.floor((g.multiplier * spentOverBaseline) / windowsInBaseline));
}
