/**
 * The one mapping from an account's answer to HTTP (SPEC §4, §8): `ok` 200, `created` 201, `denied` 429 with
 * `Retry-After`, `refused` the one error shape (thrown as ApiError, rendered by the app's onError), with
 * `Idempotent-Replayed: true` on a replay and the RateLimit header fields on a decision.
 */
import type { TypedResponse } from "hono";
import type { JSONParsed } from "hono/utils/types";
import type { DenialFields } from "../core/account/answers";
import type { Created, DecisionWindows, Denied, Ok, Refused } from "../core/account/state";
import { WINDOW_LENGTH_MS } from "../core/windows";
import type { AppContext } from "./context";
import { ApiError } from "./errors";

/** What `reply` reads of an account's answer (`Answered<R>` is one). */
export interface Answer<R> {
  result: R;
  replayed: boolean;
  rateLimit?: DecisionWindows;
}

/** A JSON response typed with its body and status, as `c.json(body, status)` gives it: what a route's schemas check. */
export type Json<B, S extends 200 | 201 | 429> = Response & TypedResponse<JSONParsed<B>, S, "json">;

/** What `reply` reads of a denial body: `retryAfterSeconds`, for `Retry-After`. */
type Denial = Pick<DenialFields, "allowed" | "retryAfterSeconds">;

/** Retry-After for denials no window end relieves (a pause, or a cost beyond any window): check back in a minute. */
const DEFAULT_RETRY_AFTER_SECONDS = 60;

/**
 * Each overload names the result kinds an operation can answer with, so the response type has exactly their
 * statuses and bodies; the implementation below is checked against the widest.
 */
export function reply<A extends object>(c: AppContext, answer: Answer<Ok<A>>): Json<A, 200>;
export function reply<A extends object>(c: AppContext, answer: Answer<Ok<A> | Refused>): Json<A, 200>;
export function reply<C extends object>(c: AppContext, answer: Answer<Created<C> | Refused>): Json<C, 201>;
export function reply<A extends object, D extends Denial>(
  c: AppContext,
  answer: Answer<Ok<A> | Denied<D> | Refused>,
): Json<A, 200> | Json<D, 429>;
export function reply<C extends object, D extends Denial>(
  c: AppContext,
  answer: Answer<Created<C> | Denied<D> | Refused>,
): Json<C, 201> | Json<D, 429>;
export function reply<A extends object, C extends object, D extends Denial>(
  c: AppContext,
  { result, replayed, rateLimit }: Answer<Ok<A> | Created<C> | Denied<D> | Refused>,
): Json<A, 200> | Json<C, 201> | Json<D, 429> {
  if (replayed) c.header("Idempotent-Replayed", "true");
  if (result.kind === "refused") throw ApiError.of(result.refusal);
  if (rateLimit)
    for (const [name, value] of Object.entries(rateLimitFields(rateLimit, c.get("now")))) c.header(name, value);
  switch (result.kind) {
    case "ok":
      return c.json(result.body, 200);
    case "created":
      return c.json(result.body, 201);
    case "denied":
      c.header("Retry-After", String(result.body.retryAfterSeconds ?? DEFAULT_RETRY_AFTER_SECONDS));
      return c.json(result.body, 429);
  }
}

/** The body of an answer that is not a decision, or its refusal thrown as ApiError (e.g. for a page that renders it). */
export function bodyOf<B>(result: Ok<B> | Refused): B {
  if (result.kind === "refused") throw ApiError.of(result.refusal);
  return result.body;
}

/**
 * The IETF RateLimit header fields (draft-ietf-httpapi-ratelimit-headers-10) for a decision's product windows:
 * one policy per window, quota and remaining in micro-credits, `t` only while the window is open.
 * e.g. `RateLimit-Policy: "codex.fiveHour";q=10000000;w=18000, "codex.weekly";q=50000000;w=604800`
 * and `RateLimit: "codex.fiveHour";r=2500000;t=1200, "codex.weekly";r=42500000;t=600000`.
 */
export function rateLimitFields(
  windows: DecisionWindows,
  now: number,
): { "RateLimit-Policy": string; RateLimit: string } {
  const kinds = ["fiveHour", "weekly"] as const;
  const policy = kinds.map((k) => `"${windows.product}.${k}";q=${windows[k].limit};w=${WINDOW_LENGTH_MS[k] / 1000}`);
  const state = kinds.map((k) => {
    const { remaining, resetsAt } = windows[k];
    return `"${windows.product}.${k}";r=${remaining}${resetsAt === null ? "" : `;t=${Math.max(0, Math.ceil((resetsAt - now) / 1000))}`}`;
  });
  return { "RateLimit-Policy": policy.join(", "), RateLimit: state.join(", ") };
}
