/**
 * The engine's TypeScript client. The request and response types are generated from docs/openapi.json
 * (`./schema.ts`, by openapi-typescript); the calls go through openapi-fetch. This file adds what a
 * generated client does not: one typed method per operation, an Idempotency-Key that is the same on
 * every attempt of a call, retries with backoff where they are safe, a timeout per attempt, and one
 * error class.
 *
 * Outcomes:
 * - a 2xx answer resolves with its body;
 * - a 429 *decision* (consume, createHold: `{ allowed: false, reason, … }`) also resolves, typed as a
 *   `Denial`. A denial is an answer, not a failure, and it is never retried: the same key would only
 *   replay it. To have a denied request decided again, call again with a new key (or request id);
 * - everything else rejects with an `EngineError`.
 *
 * Erasable TypeScript only (no enums, namespaces or parameter properties), so Node can also load this
 * file as it is.
 */
import createClient from "openapi-fetch";
import type { components, paths } from "./schema.js";

export type { components, paths } from "./schema.js";

// ── types from the generated document ──

type Operation<P extends keyof paths, M extends keyof paths[P]> = paths[P][M];
type JsonContent<R> = R extends { content: { "application/json": infer B } } ? B : never;
type ResponseBody<O, S extends number> = O extends { responses: infer R }
  ? S extends keyof R
    ? JsonContent<R[S]>
    : never
  : never;
type Success<O> = ResponseBody<O, 200> | ResponseBody<O, 201>;
type RequestBody<O> = O extends { requestBody?: { content: { "application/json": infer B } } } ? B : never;
type Query<O> = O extends { parameters: { query?: infer Q } } ? Exclude<Q, undefined> : never;

type ConsumeOp = Operation<"/v1/accounts/{id}/consume", "post">;
type AccountOp = Operation<"/v1/accounts/{id}", "get">;
type HoldOp = Operation<"/v1/accounts/{id}/holds", "post">;
type SettleOp = Operation<"/v1/accounts/{id}/holds/{holdId}/settle", "post">;
type ReleaseOp = Operation<"/v1/accounts/{id}/holds/{holdId}/release", "post">;
type BankedResetOp = Operation<"/v1/accounts/{id}/resets", "post">;
type CreditsOp = Operation<"/v1/accounts/{id}/credits", "post">;
type PlanOp = Operation<"/v1/accounts/{id}/plan", "put">;
type AutoTopUpOp = Operation<"/v1/accounts/{id}/auto-top-up", "put">;
type SpendCapOp = Operation<"/v1/accounts/{id}/spend-cap", "put">;
type CatalogOp = Operation<"/v1/catalog", "get">;
type LedgerOp = Operation<"/v1/accounts/{id}/ledger", "get">;
type PanelLinkOp = Operation<"/v1/accounts/{id}/panel-token", "post">;
type GlobalResetOp = Operation<"/v1/admin/resets", "post">;
type GlobalResetsOp = Operation<"/v1/admin/resets", "get">;
type ResumeOp = Operation<"/v1/admin/accounts/{id}/resume", "post">;
type RefundOp = Operation<"/v1/admin/accounts/{id}/refunds", "post">;
type ReconciliationOp = Operation<"/v1/admin/reconciliation", "get">;
type HealthOp = Operation<"/health", "get">;
type OrgOp = Operation<"/v1/orgs/{orgId}", "get">;
type PutOrgOp = Operation<"/v1/orgs/{orgId}", "put">;
type PutOrgMemberOp = Operation<"/v1/orgs/{orgId}/members/{accountId}", "put">;
type RemoveOrgMemberOp = Operation<"/v1/orgs/{orgId}/members/{accountId}", "delete">;
type OrgCreditsOp = Operation<"/v1/orgs/{orgId}/credits", "post">;
type OrgLedgerOp = Operation<"/v1/orgs/{orgId}/ledger", "get">;
type OrgPanelLinkOp = Operation<"/v1/orgs/{orgId}/panel-token", "post">;
type OrgRefundOp = Operation<"/v1/admin/orgs/{orgId}/refunds", "post">;
type OrgResumeOp = Operation<"/v1/admin/orgs/{orgId}/resume", "post">;

export type ConsumeRequest = RequestBody<ConsumeOp>;
export type ConsumeQuery = Query<ConsumeOp>;
/** An allowed decision: `allowed: true`, each layer's part charged. */
export type Decision = ResponseBody<ConsumeOp, 200>;
/** One layer's part of a decision: `window`, `grant`, `flex`, or `pool` (with the paying `orgId`). */
export type DecisionSource = Decision["sources"][number];
/** A denied decision (HTTP 429): `allowed: false`, nothing charged. Returned, never thrown. */
export type Denial = ResponseBody<ConsumeOp, 429>;
export type AccountSummary = Success<AccountOp>;
export type HoldRequest = RequestBody<HoldOp>;
export type HoldQuery = Query<HoldOp>;
export type HoldCreated = ResponseBody<HoldOp, 201>;
export type SettleRequest = RequestBody<SettleOp>;
export type SettleQuery = Query<SettleOp>;
export type HoldSettled = Success<SettleOp>;
export type ReleaseQuery = Query<ReleaseOp>;
export type HoldReleased = Success<ReleaseOp>;
export type BankedResetRequest = RequestBody<BankedResetOp>;
export type BankedResetRedeemed = Success<BankedResetOp>;
export type CreditsRequest = RequestBody<CreditsOp>;
export type GrantCreated = Success<CreditsOp>;
export type PlanRequest = RequestBody<PlanOp>;
export type AutoTopUpRequest = RequestBody<AutoTopUpOp>;
export type SpendCapRequest = RequestBody<SpendCapOp>;
export type Catalog = Success<CatalogOp>;
export type LedgerQuery = Query<LedgerOp>;
export type LedgerPage = Success<LedgerOp>;
export type LedgerEntry = LedgerPage["entries"][number];
export type PanelLink = Success<PanelLinkOp>;
export type GlobalResetRequest = RequestBody<GlobalResetOp>;
export type GlobalResetCreated = Success<GlobalResetOp>;
export type GlobalResetsQuery = Query<GlobalResetsOp>;
export type GlobalResets = Success<GlobalResetsOp>;
export type Resumed = Success<ResumeOp>;
export type RefundRequest = RequestBody<RefundOp>;
export type Refunded = Success<RefundOp>;
export type ReconciliationQuery = Query<ReconciliationOp>;
export type ReconciliationReport = Success<ReconciliationOp>;
export type Health = Success<HealthOp>;
/** An organization: its pool (balance, leased, spent), grants, flex, members and top spenders. */
export type Org = Success<OrgOp>;
export type OrgRequest = RequestBody<PutOrgOp>;
/** A member of an organization, with its pool limits and what it drew this day and month. */
export type OrgMember = Success<PutOrgMemberOp>;
export type OrgMemberRequest = RequestBody<PutOrgMemberOp>;
/** What removing a member answers: the member, `active: false`. */
export type OrgMemberRemoved = Success<RemoveOrgMemberOp>;
export type OrgCreditsRequest = RequestBody<OrgCreditsOp>;
export type OrgGrantCreated = Success<OrgCreditsOp>;
export type OrgLedgerQuery = Query<OrgLedgerOp>;
export type OrgLedgerPage = Success<OrgLedgerOp>;
export type OrgLedgerEntry = OrgLedgerPage["entries"][number];
export type OrgPanelLink = Success<OrgPanelLinkOp>;
export type OrgRefundRequest = RequestBody<OrgRefundOp>;
export type OrgRefunded = Success<OrgRefundOp>;
export type OrgResumed = Success<OrgResumeOp>;
/** A member account's `org` in its summary: its lease, what the pool paid, its draws and limits. */
export type AccountOrg = NonNullable<AccountSummary["org"]>;

/** The API's error body, `{ error: { code, message, requestId, details? } }`. */
export type ErrorBody = components["schemas"]["Error"];
/** The API's error codes, as the document declares them. */
export type ApiErrorCode = ErrorBody["error"]["code"];
/**
 * Failures that have no answer from the API: `network_error` (fetch threw), `timeout` (an attempt
 * outlived `timeoutMs`), `aborted` (the caller's signal), `unexpected_response` (an answer that is not
 * the API's JSON, e.g. a proxy's HTML page).
 */
export type ClientErrorCode = "network_error" | "timeout" | "aborted" | "unexpected_response";

// ── options ──

export interface RetryPolicy {
  /** Attempts per call, the first included; 1 turns retries off. Default 3. */
  maxAttempts: number;
  /** Backoff before retry n is random in [0, min(maxDelayMs, baseDelayMs · 2^(n−1))) ("full jitter"). Default 200. */
  baseDelayMs: number;
  /** Default 5000. */
  maxDelayMs: number;
  /**
   * Retry a 429 that is not a decision (a rate limit in front of the engine) when it carries `Retry-After`,
   * waiting exactly that long. Default true. A 429 without `Retry-After` is never retried, nor is a denial.
   */
  retryRateLimited: boolean;
  /** A `Retry-After` longer than this is not waited for: the call fails at once with the 429 (or 5xx). Default 30000. */
  maxRetryAfterMs: number;
}

export interface RequestOptions {
  /**
   * The Idempotency-Key of a mutating call, sent unchanged on every attempt. Give one (or `requestId`) to
   * make the call safe to repeat across processes: a repeat replays the first answer.
   */
  idempotencyKey?: string;
  /**
   * Your own request id: the key becomes `sdk:` + hex SHA-256 of the method, the concrete path and this id,
   * so the same request id on the same operation and path always gives the same key. With neither
   * option the SDK makes one random key per call (kept for that call's retries only).
   */
  requestId?: string;
  /** Cancels the call (and its retries). Rejects with `EngineError` code `aborted`. */
  signal?: AbortSignal;
  /** Per attempt; overrides the client's. */
  timeoutMs?: number;
  /** Overrides parts of the client's policy for this call. */
  retry?: Partial<RetryPolicy>;
  /** Extra headers for this call (e.g. `X-Operator` on admin calls). */
  headers?: Record<string, string>;
}

export type FetchLike = (request: Request) => Promise<Response>;

export interface EngineClientOptions {
  /** e.g. `https://engine.example.com` (no trailing path). */
  baseUrl: string;
  /** `SERVICE_TOKEN`: every service route. */
  token?: string;
  /** `ADMIN_TOKEN`: the `admin.*` methods. */
  adminToken?: string;
  /** Defaults to the global fetch. Tests pass the worker's own; wrappers can count attempts or inject faults. */
  fetch?: FetchLike;
  /** Extra headers on every request (e.g. `X-Test-Now`); a function is called once per attempt. */
  headers?: Record<string, string> | (() => Record<string, string>);
  /** Per attempt, in ms. Default 10000. A timed-out attempt is retried like a network error. */
  timeoutMs?: number;
  retry?: Partial<RetryPolicy>;
  /** How to wait between attempts (tests pass a recorder). Must reject when `signal` aborts. */
  sleep?: (ms: number, signal?: AbortSignal) => Promise<void>;
  /** Source of jitter in [0, 1). Default Math.random. */
  random?: () => number;
}

/** How the answer came about. Attached to every resolved value as the non-enumerable `lastResponse`. */
export interface ResponseMeta {
  status: number;
  headers: Headers;
  /** The engine's `X-Request-Id`. */
  requestId: string | null;
  /** `Idempotent-Replayed: true`: an earlier attempt (or call) with this key had already been decided. */
  replayed: boolean;
  /** The key sent, on mutating calls. */
  idempotencyKey?: string;
  attempts: number;
}

export type WithMeta<T> = T & { readonly lastResponse: ResponseMeta };

export const DEFAULT_RETRY: Readonly<RetryPolicy> = Object.freeze({
  maxAttempts: 3,
  baseDelayMs: 200,
  maxDelayMs: 5000,
  retryRateLimited: true,
  maxRetryAfterMs: 30_000,
});
export const DEFAULT_TIMEOUT_MS = 10_000;

// ── the error ──

export interface EngineErrorInit {
  status: number;
  code: ApiErrorCode | ClientErrorCode;
  message: string;
  requestId?: string | null;
  details?: unknown;
  attempts: number;
  idempotencyKey?: string;
  cause?: unknown;
}

/**
 * Every failure of a call. `status` is the HTTP status, or 0 when no answer came (network_error,
 * timeout, aborted). `idempotencyKey` is the key the call used: repeat the call with it to finish it.
 */
export class EngineError extends Error {
  readonly status: number;
  readonly code: ApiErrorCode | ClientErrorCode;
  readonly requestId: string | null;
  readonly details: unknown;
  readonly attempts: number;
  readonly idempotencyKey: string | undefined;

  constructor(init: EngineErrorInit) {
    super(init.message, init.cause === undefined ? undefined : { cause: init.cause });
    this.name = "EngineError";
    this.status = init.status;
    this.code = init.code;
    this.requestId = init.requestId ?? null;
    this.details = init.details;
    this.attempts = init.attempts;
    this.idempotencyKey = init.idempotencyKey;
  }
}

export const isEngineError = (e: unknown): e is EngineError => e instanceof EngineError;

/** Narrows what `consume` or `createHold` resolved with: `allowed: false` is a denial. */
export function isDenial<T extends object>(answer: T | Denial): answer is Denial {
  return (answer as { allowed?: unknown }).allowed === false;
}

// ── the client ──

type Auth = "service" | "admin" | "none";
interface CallSpec {
  /** Every method but GET mutates, and carries an Idempotency-Key. */
  method: "GET" | "POST" | "PUT" | "DELETE";
  path: string;
  pathParams?: Record<string, string>;
  query?: object;
  body?: unknown;
  auth: Auth;
  /** A 429 with `allowed: false` is an answer. */
  decision?: boolean;
}

type Send = <T>(spec: CallSpec, options?: RequestOptions) => Promise<WithMeta<T>>;

/** openapi-fetch's client, seen loosely: the public methods below carry the types. */
interface LooseClient {
  request(
    method: string,
    url: string,
    init: Record<string, unknown>,
  ): Promise<{ data?: unknown; error?: unknown; response: Response }>;
}

const MAX_ERROR_TEXT = 200;

export class EngineClient {
  readonly admin: AdminApi;
  readonly orgs: OrgsApi;
  readonly #opts: EngineClientOptions;
  readonly #client: LooseClient;
  readonly #retry: RetryPolicy;

  constructor(options: EngineClientOptions) {
    this.#opts = options;
    this.#retry = { ...DEFAULT_RETRY, ...options.retry };
    this.#client = createClient<paths>({ baseUrl: options.baseUrl }) as unknown as LooseClient;
    const send: Send = (spec, options) => this.#request(spec, options);
    this.admin = new AdminApi(send);
    this.orgs = new OrgsApi(send);
  }

  // ── service routes ──

  /** `GET /v1/accounts/{id}`: the account summary. */
  getAccount(accountId: string, options?: RequestOptions): Promise<WithMeta<AccountSummary>> {
    return this.#request(
      { method: "GET", path: "/v1/accounts/{id}", pathParams: { id: accountId }, auth: "service" },
      options,
    );
  }

  /** `POST /v1/accounts/{id}/consume`: decide and charge. Resolves with `allowed: true` (charged) or `allowed: false` (denied, 429). */
  consume(
    accountId: string,
    body: ConsumeRequest,
    options?: RequestOptions & { query?: ConsumeQuery },
  ): Promise<WithMeta<Decision | Denial>> {
    return this.#request(
      {
        method: "POST",
        path: "/v1/accounts/{id}/consume",
        pathParams: { id: accountId },
        query: options?.query,
        body,
        auth: "service",
        decision: true,
      },
      options,
    );
  }

  /** `POST /v1/accounts/{id}/holds`: reserve an estimate. Resolves with the hold, or a `Denial` (429). */
  createHold(
    accountId: string,
    body: HoldRequest,
    options?: RequestOptions & { query?: HoldQuery },
  ): Promise<WithMeta<HoldCreated | Denial>> {
    return this.#request(
      {
        method: "POST",
        path: "/v1/accounts/{id}/holds",
        pathParams: { id: accountId },
        query: options?.query,
        body,
        auth: "service",
        decision: true,
      },
      options,
    );
  }

  /** `POST /v1/accounts/{id}/holds/{holdId}/settle`: charge the actual cost. */
  settleHold(
    accountId: string,
    holdId: string,
    body: SettleRequest,
    options?: RequestOptions & { query?: SettleQuery },
  ): Promise<WithMeta<HoldSettled>> {
    return this.#request(
      {
        method: "POST",
        path: "/v1/accounts/{id}/holds/{holdId}/settle",
        pathParams: { id: accountId, holdId },
        query: options?.query,
        body,
        auth: "service",
      },
      options,
    );
  }

  /** `POST /v1/accounts/{id}/holds/{holdId}/release`: free the reservation. */
  releaseHold(
    accountId: string,
    holdId: string,
    options?: RequestOptions & { query?: ReleaseQuery },
  ): Promise<WithMeta<HoldReleased>> {
    return this.#request(
      {
        method: "POST",
        path: "/v1/accounts/{id}/holds/{holdId}/release",
        pathParams: { id: accountId, holdId },
        query: options?.query,
        auth: "service",
      },
      options,
    );
  }

  /** `POST /v1/accounts/{id}/resets`: use one banked reset for a product. */
  redeemBankedReset(
    accountId: string,
    body: BankedResetRequest,
    options?: RequestOptions,
  ): Promise<WithMeta<BankedResetRedeemed>> {
    return this.#request(
      { method: "POST", path: "/v1/accounts/{id}/resets", pathParams: { id: accountId }, body, auth: "service" },
      options,
    );
  }

  /** `POST /v1/accounts/{id}/credits`: add a grant (purchase, promo, entitlement). */
  addCredits(accountId: string, body: CreditsRequest, options?: RequestOptions): Promise<WithMeta<GrantCreated>> {
    return this.#request(
      { method: "POST", path: "/v1/accounts/{id}/credits", pathParams: { id: accountId }, body, auth: "service" },
      options,
    );
  }

  /** `PUT /v1/accounts/{id}/plan`. */
  setPlan(accountId: string, body: PlanRequest, options?: RequestOptions): Promise<WithMeta<Success<PlanOp>>> {
    return this.#request(
      { method: "PUT", path: "/v1/accounts/{id}/plan", pathParams: { id: accountId }, body, auth: "service" },
      options,
    );
  }

  /** `PUT /v1/accounts/{id}/auto-top-up`. */
  setAutoTopUp(
    accountId: string,
    body: AutoTopUpRequest,
    options?: RequestOptions,
  ): Promise<WithMeta<Success<AutoTopUpOp>>> {
    return this.#request(
      { method: "PUT", path: "/v1/accounts/{id}/auto-top-up", pathParams: { id: accountId }, body, auth: "service" },
      options,
    );
  }

  /** `PUT /v1/accounts/{id}/spend-cap`: `{ dailyLimit: null }` removes the cap. */
  setSpendCap(
    accountId: string,
    body: SpendCapRequest,
    options?: RequestOptions,
  ): Promise<WithMeta<Success<SpendCapOp>>> {
    return this.#request(
      { method: "PUT", path: "/v1/accounts/{id}/spend-cap", pathParams: { id: accountId }, body, auth: "service" },
      options,
    );
  }

  /** `GET /v1/catalog`: plans and the current rate card. */
  catalog(options?: RequestOptions): Promise<WithMeta<Catalog>> {
    return this.#request({ method: "GET", path: "/v1/catalog", auth: "service" }, options);
  }

  /** `GET /v1/accounts/{id}/ledger`: one page of settled entries, in the order they settled (window charges as hourly `usage` rollups). */
  ledger(accountId: string, query?: LedgerQuery, options?: RequestOptions): Promise<WithMeta<LedgerPage>> {
    return this.#request(
      { method: "GET", path: "/v1/accounts/{id}/ledger", pathParams: { id: accountId }, query, auth: "service" },
      options,
    );
  }

  /** Every page of the ledger from `query.cursor` (or the start), following `nextCursor`. */
  ledgerPages(
    accountId: string,
    query: LedgerQuery = {},
    options?: RequestOptions,
  ): AsyncGenerator<WithMeta<LedgerPage>, void, undefined> {
    return pagesFrom((q) => this.ledger(accountId, q, options), query);
  }

  /** Every ledger entry from `query.cursor` (or the start), fetched a page (`query.limit`) at a time. */
  ledgerEntries(
    accountId: string,
    query: LedgerQuery = {},
    options?: RequestOptions,
  ): AsyncGenerator<LedgerEntry, void, undefined> {
    return entriesOf(this.ledgerPages(accountId, query, options));
  }

  /** `POST /v1/accounts/{id}/panel-token`: a signed usage-panel link, valid 15 minutes. */
  createPanelLink(accountId: string, options?: RequestOptions): Promise<WithMeta<PanelLink>> {
    return this.#request(
      { method: "POST", path: "/v1/accounts/{id}/panel-token", pathParams: { id: accountId }, auth: "service" },
      options,
    );
  }

  /** `GET /health` (no token). */
  health(options?: RequestOptions): Promise<WithMeta<Health>> {
    return this.#request({ method: "GET", path: "/health", auth: "none" }, options);
  }

  // ── the machinery ──

  /** One call: the same key on every attempt, retries where safe, a timeout per attempt. */
  async #request<T>(spec: CallSpec, options: RequestOptions = {}): Promise<WithMeta<T>> {
    const auth = spec.auth;
    const policy: RetryPolicy = { ...this.#retry, ...options.retry };
    const maxAttempts = Math.max(1, Math.floor(policy.maxAttempts));
    const timeoutMs = options.timeoutMs ?? this.#opts.timeoutMs ?? DEFAULT_TIMEOUT_MS;
    const sleep = this.#opts.sleep ?? defaultSleep;
    const random = this.#opts.random ?? Math.random;
    const mutating = spec.method !== "GET";
    const idempotencyKey = mutating ? await keyFor(spec, options) : undefined;
    const fail = (init: Omit<EngineErrorInit, "idempotencyKey">) => new EngineError({ ...init, idempotencyKey });

    for (let attempt = 1; ; attempt++) {
      if (options.signal?.aborted)
        throw fail({
          status: 0,
          code: "aborted",
          message: "the call was aborted",
          attempts: attempt - 1,
          cause: options.signal.reason,
        });
      const outcome = await this.#attempt(spec, auth, idempotencyKey, timeoutMs, options);
      let retryAfterMs: number | null = null;
      let error: EngineError;

      if (outcome.kind === "answer") {
        const { status, body, response } = outcome;
        const isDenial = spec.decision === true && status === 429 && isObject(body) && body.allowed === false;
        if ((status >= 200 && status < 300) || isDenial) {
          const meta: ResponseMeta = {
            status,
            headers: response.headers,
            requestId: response.headers.get("X-Request-Id"),
            replayed: response.headers.get("Idempotent-Replayed") === "true",
            idempotencyKey,
            attempts: attempt,
          };
          const value = (isObject(body) ? body : {}) as object;
          Object.defineProperty(value, "lastResponse", { value: meta, enumerable: false, configurable: true });
          return value as WithMeta<T>;
        }
        error = errorFromAnswer(status, body, response, attempt, idempotencyKey);
        retryAfterMs = parseRetryAfter(response.headers.get("Retry-After"));
        const retryable = status >= 500 || (status === 429 && policy.retryRateLimited && retryAfterMs !== null);
        // A Retry-After longer than we may wait: stop now rather than ask again too early.
        if (!retryable || (retryAfterMs !== null && retryAfterMs > policy.maxRetryAfterMs)) throw error;
      } else if (outcome.kind === "aborted") {
        throw fail({
          status: 0,
          code: "aborted",
          message: "the call was aborted",
          attempts: attempt,
          cause: outcome.cause,
        });
      } else if (outcome.kind === "unexpected") {
        throw fail({
          status: outcome.status,
          code: "unexpected_response",
          message: outcome.message,
          attempts: attempt,
          cause: outcome.cause,
        });
      } else {
        error =
          outcome.kind === "timeout"
            ? fail({ status: 0, code: "timeout", message: `no answer within ${timeoutMs} ms`, attempts: attempt })
            : fail({
                status: 0,
                code: "network_error",
                message: `the request failed: ${describe(outcome.cause)}`,
                attempts: attempt,
                cause: outcome.cause,
              });
      }

      if (attempt >= maxAttempts) throw error;
      const backoff = random() * Math.min(policy.maxDelayMs, policy.baseDelayMs * 2 ** (attempt - 1));
      try {
        await sleep(retryAfterMs ?? backoff, options.signal);
      } catch (cause) {
        throw fail({ status: 0, code: "aborted", message: "the call was aborted", attempts: attempt, cause });
      }
    }
  }

  /** One attempt, bounded by its own timer; the caller's signal aborts it too. */
  async #attempt(
    spec: CallSpec,
    auth: Auth,
    idempotencyKey: string | undefined,
    timeoutMs: number,
    options: RequestOptions,
  ): Promise<AttemptOutcome> {
    const controller = new AbortController();
    let timedOut = false;
    const onCallerAbort = () => controller.abort(options.signal?.reason);
    options.signal?.addEventListener("abort", onCallerAbort);
    let stop: () => void = () => {};
    const stopped = new Promise<"stopped">((resolve) => {
      stop = () => resolve("stopped");
      controller.signal.addEventListener("abort", () => resolve("stopped"));
    });
    const timer = setTimeout(() => {
      timedOut = true;
      controller.abort(new Error(`timeout after ${timeoutMs} ms`));
    }, timeoutMs);
    let answered: number | null = null;
    const userFetch: FetchLike = this.#opts.fetch ?? ((request) => fetch(request));
    const fetchOnce: FetchLike = async (request) => {
      const response = await userFetch(request);
      answered = response.status;
      return response;
    };

    const headers: Record<string, string> = { Accept: "application/json" };
    const token = auth === "admin" ? this.#opts.adminToken : auth === "service" ? this.#opts.token : undefined;
    if (token !== undefined) headers.Authorization = `Bearer ${token}`;
    Object.assign(
      headers,
      typeof this.#opts.headers === "function" ? this.#opts.headers() : this.#opts.headers,
      options.headers,
    );
    if (idempotencyKey !== undefined) headers["Idempotency-Key"] = idempotencyKey;

    const call = this.#client.request(spec.method, spec.path, {
      params: { path: spec.pathParams, query: spec.query },
      body: spec.body,
      headers,
      signal: controller.signal,
      fetch: fetchOnce,
    });
    // The answer, or the abort, whichever comes first: a fetch that ignores its signal cannot outlive the timeout.
    call.catch(() => {});
    try {
      const result = await Promise.race([call, stopped]);
      if (result === "stopped") throw controller.signal.reason;
      const { response } = result;
      return {
        kind: "answer",
        status: response.status,
        body: result.error !== undefined ? result.error : result.data,
        response,
      };
    } catch (cause) {
      if (timedOut) return { kind: "timeout" };
      if (options.signal?.aborted) return { kind: "aborted", cause };
      if (answered === null) return { kind: "network", cause };
      // The engine answered, but not with what openapi-fetch could read (a 2xx that is not JSON).
      return {
        kind: "unexpected",
        status: answered,
        message: `the answer could not be read: ${describe(cause)}`,
        cause,
      };
    } finally {
      clearTimeout(timer);
      stop();
      options.signal?.removeEventListener("abort", onCallerAbort);
    }
  }
}

/** `engine.admin.*`: the operator routes, sent with `adminToken`. */
export class AdminApi {
  readonly #request: Send;
  /** @internal Made by `EngineClient`. */
  constructor(send: Send) {
    this.#request = send;
  }

  /** `POST /v1/admin/resets`: reset everyone's windows (optionally scoped) in one call. */
  createGlobalReset(body: GlobalResetRequest, options?: RequestOptions): Promise<WithMeta<GlobalResetCreated>> {
    return this.#request({ method: "POST", path: "/v1/admin/resets", body, auth: "admin" }, options);
  }

  /** `GET /v1/admin/resets`: the audit trail, newest first. */
  listGlobalResets(query?: GlobalResetsQuery, options?: RequestOptions): Promise<WithMeta<GlobalResets>> {
    return this.#request({ method: "GET", path: "/v1/admin/resets", query, auth: "admin" }, options);
  }

  /** `POST /v1/admin/accounts/{id}/resume`: lift an anomaly pause. */
  resume(accountId: string, options?: RequestOptions): Promise<WithMeta<Resumed>> {
    return this.#request(
      { method: "POST", path: "/v1/admin/accounts/{id}/resume", pathParams: { id: accountId }, auth: "admin" },
      options,
    );
  }

  /** `POST /v1/admin/accounts/{id}/refunds`: a compensating grant, against an entry or as goodwill. */
  refund(accountId: string, body: RefundRequest, options?: RequestOptions): Promise<WithMeta<Refunded>> {
    return this.#request(
      { method: "POST", path: "/v1/admin/accounts/{id}/refunds", pathParams: { id: accountId }, body, auth: "admin" },
      options,
    );
  }

  /** `GET /v1/admin/reconciliation`: accounts whose ledger differs from their object. */
  reconciliation(query?: ReconciliationQuery, options?: RequestOptions): Promise<WithMeta<ReconciliationReport>> {
    return this.#request({ method: "GET", path: "/v1/admin/reconciliation", query, auth: "admin" }, options);
  }

  /** `POST /v1/admin/orgs/{orgId}/refunds`: a goodwill credit to an organization's pool (a new pool grant). */
  refundOrg(orgId: string, body: OrgRefundRequest, options?: RequestOptions): Promise<WithMeta<OrgRefunded>> {
    return this.#request(
      { method: "POST", path: "/v1/admin/orgs/{orgId}/refunds", pathParams: { orgId }, body, auth: "admin" },
      options,
    );
  }

  /** `POST /v1/admin/orgs/{orgId}/resume`: lift a pool's anomaly pause. */
  resumeOrg(orgId: string, options?: RequestOptions): Promise<WithMeta<OrgResumed>> {
    return this.#request(
      { method: "POST", path: "/v1/admin/orgs/{orgId}/resume", pathParams: { orgId }, auth: "admin" },
      options,
    );
  }
}

/** `engine.orgs.*`: organizations and their pooled credits (SPEC §9), sent with `token`. */
export class OrgsApi {
  readonly #request: Send;
  /** @internal Made by `EngineClient`. */
  constructor(send: Send) {
    this.#request = send;
  }

  /** `PUT /v1/orgs/{orgId}`: create or update an organization (`plan`, `flexMonthlyLimit`). */
  put(orgId: string, body: OrgRequest, options?: RequestOptions): Promise<WithMeta<Org>> {
    return this.#request(
      { method: "PUT", path: "/v1/orgs/{orgId}", pathParams: { orgId }, body, auth: "service" },
      options,
    );
  }

  /** `GET /v1/orgs/{orgId}`: the pool, its grants and flex, the members' spend, the top spenders. */
  get(orgId: string, options?: RequestOptions): Promise<WithMeta<Org>> {
    return this.#request({ method: "GET", path: "/v1/orgs/{orgId}", pathParams: { orgId }, auth: "service" }, options);
  }

  /** `PUT /v1/orgs/{orgId}/members/{accountId}`: add a member, or change its pool limits. */
  putMember(
    orgId: string,
    accountId: string,
    body?: OrgMemberRequest,
    options?: RequestOptions,
  ): Promise<WithMeta<OrgMember>> {
    return this.#request(
      {
        method: "PUT",
        path: "/v1/orgs/{orgId}/members/{accountId}",
        pathParams: { orgId, accountId },
        body,
        auth: "service",
      },
      options,
    );
  }

  /** `DELETE /v1/orgs/{orgId}/members/{accountId}`: remove a member; its lease goes back to the pool. */
  removeMember(orgId: string, accountId: string, options?: RequestOptions): Promise<WithMeta<OrgMemberRemoved>> {
    return this.#request(
      {
        method: "DELETE",
        path: "/v1/orgs/{orgId}/members/{accountId}",
        pathParams: { orgId, accountId },
        auth: "service",
      },
      options,
    );
  }

  /** `POST /v1/orgs/{orgId}/credits`: add a pool grant. */
  addCredits(orgId: string, body: OrgCreditsRequest, options?: RequestOptions): Promise<WithMeta<OrgGrantCreated>> {
    return this.#request(
      { method: "POST", path: "/v1/orgs/{orgId}/credits", pathParams: { orgId }, body, auth: "service" },
      options,
    );
  }

  /** `GET /v1/orgs/{orgId}/ledger`: one page of the pool's settled entries (grants, refunds, expiries, leases and returns). */
  ledger(orgId: string, query?: OrgLedgerQuery, options?: RequestOptions): Promise<WithMeta<OrgLedgerPage>> {
    return this.#request(
      { method: "GET", path: "/v1/orgs/{orgId}/ledger", pathParams: { orgId }, query, auth: "service" },
      options,
    );
  }

  /** Every page of the pool's ledger from `query.cursor` (or the start), following `nextCursor`. */
  ledgerPages(
    orgId: string,
    query: OrgLedgerQuery = {},
    options?: RequestOptions,
  ): AsyncGenerator<WithMeta<OrgLedgerPage>, void, undefined> {
    return pagesFrom((q) => this.ledger(orgId, q, options), query);
  }

  /** Every entry of the pool's ledger from `query.cursor` (or the start), fetched a page (`query.limit`) at a time. */
  ledgerEntries(
    orgId: string,
    query: OrgLedgerQuery = {},
    options?: RequestOptions,
  ): AsyncGenerator<OrgLedgerEntry, void, undefined> {
    return entriesOf(this.ledgerPages(orgId, query, options));
  }

  /** `POST /v1/orgs/{orgId}/panel-token`: a signed organization-panel link, valid 15 minutes. */
  createPanelLink(orgId: string, options?: RequestOptions): Promise<WithMeta<OrgPanelLink>> {
    return this.#request(
      { method: "POST", path: "/v1/orgs/{orgId}/panel-token", pathParams: { orgId }, auth: "service" },
      options,
    );
  }
}

// ── helpers ──

type AttemptOutcome =
  | { kind: "answer"; status: number; body: unknown; response: Response }
  | { kind: "timeout" }
  | { kind: "aborted"; cause: unknown }
  | { kind: "network"; cause: unknown }
  | { kind: "unexpected"; status: number; message: string; cause: unknown };

const isObject = (v: unknown): v is Record<string, unknown> => typeof v === "object" && v !== null && !Array.isArray(v);

function describe(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}

/**
 * Every page from `query.cursor` (or the start), following `nextCursor` until it is null (or repeats). Lazy: no
 * request before the first `next()`.
 */
async function* pagesFrom<Q extends { cursor?: string }, P extends { nextCursor: string | null }>(
  page: (query: Q) => Promise<P>,
  query: Q,
): AsyncGenerator<P, void, undefined> {
  let cursor = query.cursor;
  for (;;) {
    const p = await page({ ...query, cursor });
    yield p;
    if (p.nextCursor === null || p.nextCursor === undefined || p.nextCursor === cursor) return;
    cursor = p.nextCursor;
  }
}

/** Every entry of every page. */
async function* entriesOf<E>(pages: AsyncIterable<{ entries: E[] }>): AsyncGenerator<E, void, undefined> {
  for await (const page of pages) yield* page.entries;
}

/** The path as sent, with its parameters filled in (each encoded), for deriving keys. */
function concretePath(spec: CallSpec): string {
  return spec.path.replace(/\{([^}]+)\}/g, (_, name: string) => encodeURIComponent(spec.pathParams?.[name] ?? ""));
}

async function keyFor(spec: CallSpec, options: RequestOptions): Promise<string> {
  if (options.idempotencyKey !== undefined) return options.idempotencyKey;
  if (options.requestId !== undefined) {
    const digest = await crypto.subtle.digest(
      "SHA-256",
      new TextEncoder().encode(`${spec.method} ${concretePath(spec)}\n${options.requestId}`),
    );
    return `sdk:${[...new Uint8Array(digest)].map((b) => b.toString(16).padStart(2, "0")).join("")}`;
  }
  return `sdk:${crypto.randomUUID()}`;
}

function errorFromAnswer(
  status: number,
  body: unknown,
  response: Response,
  attempts: number,
  idempotencyKey: string | undefined,
): EngineError {
  const headerId = response.headers.get("X-Request-Id");
  const e = isObject(body) && isObject(body.error) ? body.error : null;
  if (e && typeof e.code === "string" && typeof e.message === "string") {
    return new EngineError({
      status,
      code: e.code as ApiErrorCode,
      message: e.message,
      requestId: typeof e.requestId === "string" ? e.requestId : headerId,
      details: e.details,
      attempts,
      idempotencyKey,
    });
  }
  const text =
    typeof body === "string" ? body.slice(0, MAX_ERROR_TEXT) : JSON.stringify(body ?? null).slice(0, MAX_ERROR_TEXT);
  return new EngineError({
    status,
    code: "unexpected_response",
    message: `HTTP ${status}: ${text}`,
    requestId: headerId,
    details: body,
    attempts,
    idempotencyKey,
  });
}

/** `Retry-After` as milliseconds: delta-seconds or an HTTP date; null when absent or unreadable. */
export function parseRetryAfter(value: string | null, now = Date.now()): number | null {
  if (value === null) return null;
  const v = value.trim();
  if (/^\d+$/.test(v)) return Number(v) * 1000;
  const at = Date.parse(v);
  return Number.isNaN(at) ? null : Math.max(0, at - now);
}

function defaultSleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(signal.reason);
    const onAbort = () => {
      clearTimeout(timer);
      reject(signal?.reason);
    };
    const timer = setTimeout(() => {
      signal?.removeEventListener("abort", onAbort);
      resolve();
    }, ms);
    signal?.addEventListener("abort", onAbort, { once: true });
  });
}
