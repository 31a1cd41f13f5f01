import type { ContentfulStatusCode } from "hono/utils/http-status";
import { REFUSAL_CODES, type Refusal, type RefusalCode } from "../core/refusals";

/** The status of each of the domain's named refusals (worker/core/refusals.ts). */
const REFUSAL_STATUS = {
  invalid_request: 400,
  not_found: 404,
  entry_not_found: 404,
  idempotency_conflict: 409,
  hold_not_active: 409,
  no_banked_reset: 409,
  nothing_to_reset: 409,
  auto_top_up_not_allowed: 409,
  topup_unknown: 409,
  refund_exceeds_entry: 409,
  goodwill_limit_exceeded: 409,
  amount_out_of_range: 409,
  already_member: 409,
  org_not_found: 404,
} as const satisfies Record<RefusalCode, ContentfulStatusCode>;

/** The errors only HTTP knows: the test clock, auth, the body limit, and an unexpected failure. */
export const HTTP_ERROR_CODES = [
  "test_clock_disabled",
  "unauthorized",
  "forbidden",
  "payload_too_large",
  "internal_error",
] as const;
type HttpErrorCode = (typeof HTTP_ERROR_CODES)[number];

const HTTP_STATUS = {
  test_clock_disabled: 400,
  unauthorized: 401,
  forbidden: 403,
  payload_too_large: 413,
  internal_error: 500,
} as const satisfies Record<HttpErrorCode, ContentfulStatusCode>;

/** Every error code the API answers with (the OpenAPI `Error.code` enum): the domain's refusals, then HTTP's own. */
export const ERROR_CODES = [...REFUSAL_CODES, ...HTTP_ERROR_CODES] as const;
export type ErrorCode = (typeof ERROR_CODES)[number];

/** Every error code and its HTTP status. */
export const ERROR_STATUS = { ...REFUSAL_STATUS, ...HTTP_STATUS } as const satisfies Record<
  ErrorCode,
  ContentfulStatusCode
>;

export interface ErrorBody {
  error: { code: ErrorCode; message: string; requestId: string; details?: unknown };
}

/** The one error class. Thrown anywhere in the worker; the app's onError renders it in the one error shape. */
export class ApiError extends Error {
  constructor(
    readonly code: ErrorCode,
    message: string,
    readonly details?: unknown,
  ) {
    super(message);
    this.name = "ApiError";
  }
  get status(): ContentfulStatusCode {
    return ERROR_STATUS[this.code];
  }
  /** A refusal of the domain, answered over HTTP. */
  static of(refusal: Refusal): ApiError {
    return new ApiError(refusal.code, refusal.message, refusal.details);
  }
}

export function errorBody(code: ErrorCode, message: string, requestId: string, details?: unknown): ErrorBody {
  return { error: { code, message, requestId, ...(details === undefined ? {} : { details }) } };
}
