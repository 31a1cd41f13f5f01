import { FIVE_HOURS_MS, WEEK_MS } from "../catalog";
import { isoOrNull } from "./time";

export type WindowKind = "fiveHour" | "weekly";
export const WINDOW_KINDS: readonly WindowKind[] = ["fiveHour", "weekly"];
export const WINDOW_LENGTH_MS: Record<WindowKind, number> = { fiveHour: FIVE_HOURS_MS, weekly: WEEK_MS };

/** A window as stored: opened by the first charge after the previous one ended. */
export interface WindowState {
  openedAt: number | null;
  used: number;
}

export interface WindowView {
  limit: number;
  used: number;
  remaining: number;
  /** epoch ms, or null while the window is not open */
  resetsAt: number | null;
}

/** The window as it stands at `now`: past its end it is closed and empty. */
export function currentWindow(w: WindowState, kind: WindowKind, now: number): WindowState {
  if (w.openedAt === null || now >= w.openedAt + WINDOW_LENGTH_MS[kind]) return { openedAt: null, used: 0 };
  return w;
}

export function viewWindow(w: WindowState, kind: WindowKind, limit: number, now: number): WindowView {
  const cur = currentWindow(w, kind, now);
  return {
    limit,
    used: cur.used,
    remaining: Math.max(0, limit - cur.used),
    resetsAt: cur.openedAt === null ? null : cur.openedAt + WINDOW_LENGTH_MS[kind],
  };
}

/** Adds usage, opening the window at `now` if it is closed. */
export function chargeWindow(w: WindowState, kind: WindowKind, amount: number, now: number): WindowState {
  const cur = currentWindow(w, kind, now);
  return { openedAt: cur.openedAt ?? now, used: cur.used + amount };
}

/** Gives back reserved usage, but only to the same window instance it was taken from. */
export function releaseWindow(
  w: WindowState,
  kind: WindowKind,
  amount: number,
  openedAt: number,
  now: number,
): WindowState {
  const cur = currentWindow(w, kind, now);
  if (cur.openedAt !== openedAt) return cur;
  return { openedAt: cur.openedAt, used: Math.max(0, cur.used - amount) };
}

export const windowJson = (v: WindowView) => ({
  limit: v.limit,
  used: v.used,
  remaining: v.remaining,
  resetsAt: isoOrNull(v.resetsAt),
});
