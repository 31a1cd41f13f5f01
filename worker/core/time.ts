/** Calendar helpers over epoch milliseconds, all in UTC. */

export const iso = (ms: number): string => new Date(ms).toISOString();
export const isoOrNull = (ms: number | null): string | null => (ms === null ? null : iso(ms));

/** `YYYY-MM` of the UTC calendar month holding `ms`: the flex-billing period. */
export const monthKey = (ms: number): string => iso(ms).slice(0, 7);

/** Start of the UTC day holding `ms`: the spend-cap period. */
export const MINUTE_MS = 60_000;
export const HOUR_MS = 60 * MINUTE_MS;
export const DAY_MS = 24 * HOUR_MS;

/** The epoch minute holding `ms`: the bucket credit spend is kept in. */
export const minuteOf = (ms: number): number => Math.floor(ms / MINUTE_MS);

export const utcDayStart = (ms: number): number => ms - (ms % DAY_MS);
export const nextUtcMidnight = (ms: number): number => utcDayStart(ms) + DAY_MS;

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

/** The first instant of the next UTC calendar month. */
export function nextMonthStart(ms: number): number {
  const d = new Date(ms);
  return Date.UTC(d.getUTCFullYear(), d.getUTCMonth() + 1, 1);
}
