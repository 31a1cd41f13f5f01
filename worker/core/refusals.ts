/**
 * The named refusals of the domain (SPEC §4, §6): what an account can refuse, and why. The HTTP layer maps each code
 * to its status (worker/http/errors.ts); nothing here knows statuses.
 */
export const REFUSAL_CODES = [
  "invalid_request",
  "not_found",
  "entry_not_found",
  "idempotency_conflict",
  "hold_not_active",
  "no_banked_reset",
  "nothing_to_reset",
  "auto_top_up_not_allowed",
  "topup_unknown",
  "refund_exceeds_entry",
  "goodwill_limit_exceeded",
  "amount_out_of_range",
  "already_member",
  "org_not_found",
] as const;

export type RefusalCode = (typeof REFUSAL_CODES)[number];

export interface Refusal {
  code: RefusalCode;
  message: string;
  details?: Readonly<Record<string, string | number>>;
}

/**
 * A request refused before any effect (a bad input) does not use up its Idempotency-Key (SPEC §4); a named refusal
 * (a missing hold or entry, a conflict) is kept and replayed like any answer.
 */
export const keepsKey = (code: RefusalCode): boolean => code !== "invalid_request";
