/** Calendar helpers over epoch milliseconds, all in UTC. */

export const iso = (ms: number): string => new Date(ms).toISOString();
export const isoOrNull = (ms: number | null): string | null => (ms === null ? null : iso(ms));

/** `YYYY-MM` of the UTC calendar month holding `ms`: the flex-billing period. */
export const monthKey = (ms: number): string => iso(ms).slice(0, 7);

/** Start of the UTC day holding `ms`: the spend-cap period. */
export const utcDayStart = (ms: number): number => ms - (ms % 86_400_000);
export const nextUtcMidnight = (ms: number): number => utcDayStart(ms) + 86_400_000;

/** The same instant `months` calendar months later (day clamped to the target month's length). */
export function addMonths(ms: number, months: number): number {
  const d = new Date(ms);
  const day = d.getUTCDate();
  d.setUTCDate(1);
  d.setUTCMonth(d.getUTCMonth() + months);
  const lastDay = new Date(Date.UTC(d.getUTCFullYear(), d.getUTCMonth() + 1, 0)).getUTCDate();
  d.setUTCDate(Math.min(day, lastDay));
  return d.getTime();
}
