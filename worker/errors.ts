import type { ContentfulStatusCode } from "hono/utils/http-status";

/** Every error the API can answer with, and its HTTP status. */
export const ERROR_STATUS = {
  invalid_request: 400,
  test_clock_disabled: 400,
  unauthorized: 401,
  forbidden: 403,
  not_found: 404,
  entry_not_found: 404,
  idempotency_conflict: 409,
  idempotency_in_progress: 409,
  hold_not_active: 409,
  no_banked_reset: 409,
  nothing_to_reset: 409,
  auto_top_up_not_allowed: 409,
  topup_unknown: 409,
  refund_exceeds_entry: 409,
  goodwill_limit_exceeded: 409,
  amount_out_of_range: 409,
  payload_too_large: 413,
  internal_error: 500,
} as const satisfies Record<string, ContentfulStatusCode>;

export type ErrorCode = keyof typeof ERROR_STATUS;

export interface ErrorBody {
  error: { code: ErrorCode; message: string; requestId: string; details?: unknown };
}

/** The one error class. Thrown anywhere in the worker; the app's onError renders it. */
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
}

export function errorBody(code: ErrorCode, message: string, requestId: string, details?: unknown): ErrorBody {
  return { error: { code, message, requestId, ...(details === undefined ? {} : { details }) } };
}
