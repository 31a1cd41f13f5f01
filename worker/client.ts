/**
 * A typed client for the engine's HTTP API. Request and response types come from the same zod schemas
 * as the routes, so a change to the API is a type error here.
 */
import type { z } from "@hono/zod-openapi";
import type * as S from "./schemas";

type In<T extends z.ZodType> = z.input<T>;
type Out<T extends z.ZodType> = z.infer<T>;
export type ErrorBody = Out<typeof S.ErrorShape>;

/** What a call returns: the status, the parsed body, and whether it was an idempotent replay. */
export type Reply<T> = { status: number; body: T; replayed: boolean };

export interface ClientOptions {
  baseUrl: string;
  token: string;
  /** defaults to the global fetch; tests pass the worker's own */
  fetch?: (input: string, init?: RequestInit) => Promise<Response>;
  /** extra headers on every request (e.g. X-Test-Now) */
  headers?: () => Record<string, string>;
}

export class EngineClient {
  private readonly opts: ClientOptions;
  constructor(opts: ClientOptions) {
    this.opts = opts;
  }

  private async send<T>(method: string, path: string, body?: unknown, idempotencyKey?: string): Promise<Reply<T>> {
    const headers: Record<string, string> = { Authorization: `Bearer ${this.opts.token}`, ...(this.opts.headers?.() ?? {}) };
    if (body !== undefined) headers["Content-Type"] = "application/json";
    if (method !== "GET") headers["Idempotency-Key"] = idempotencyKey ?? crypto.randomUUID();
    const res = await (this.opts.fetch ?? fetch)(`${this.opts.baseUrl}${path}`, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
    return { status: res.status, body: (await res.json()) as T, replayed: res.headers.get("Idempotent-Replayed") === "true" };
  }

  account(id: string) {
    return this.send<Out<typeof S.AccountSummary> | ErrorBody>("GET", `/v1/accounts/${encodeURIComponent(id)}`);
  }
  consume(id: string, body: In<typeof S.ConsumeBody>, key?: string) {
    return this.send<Out<typeof S.Decision> | Out<typeof S.Denial> | ErrorBody>("POST", `/v1/accounts/${encodeURIComponent(id)}/consume`, body, key);
  }
  addCredits(id: string, body: In<typeof S.GrantBody>, key?: string) {
    return this.send<Out<typeof S.GrantCreated> | ErrorBody>("POST", `/v1/accounts/${encodeURIComponent(id)}/credits`, body, key);
  }
  setPlan(id: string, body: In<typeof S.PlanBody>, key?: string) {
    return this.send<Out<typeof S.AccountSummary> | ErrorBody>("PUT", `/v1/accounts/${encodeURIComponent(id)}/plan`, body, key);
  }
  createHold(id: string, body: In<typeof S.HoldBody>, key?: string) {
    return this.send<Out<typeof S.HoldCreated> | Out<typeof S.Denial> | ErrorBody>("POST", `/v1/accounts/${encodeURIComponent(id)}/holds`, body, key);
  }
  settleHold(id: string, holdId: string, body: In<typeof S.SettleBody>, key?: string) {
    return this.send<Out<typeof S.HoldSettled> | ErrorBody>("POST", `/v1/accounts/${encodeURIComponent(id)}/holds/${encodeURIComponent(holdId)}/settle`, body, key);
  }
  releaseHold(id: string, holdId: string, key?: string) {
    return this.send<Out<typeof S.HoldReleased> | ErrorBody>("POST", `/v1/accounts/${encodeURIComponent(id)}/holds/${encodeURIComponent(holdId)}/release`, undefined, key);
  }
  redeemBankedReset(id: string, body: In<typeof S.BankedResetBody>, key?: string) {
    return this.send<Out<typeof S.BankedResetRedeemed> | ErrorBody>("POST", `/v1/accounts/${encodeURIComponent(id)}/resets`, body, key);
  }
  ledger(id: string, query: { limit?: number; cursor?: string } = {}) {
    const qs = new URLSearchParams(Object.entries(query).filter(([, v]) => v !== undefined).map(([k, v]) => [k, String(v)]));
    return this.send<Out<typeof S.LedgerPage> | ErrorBody>("GET", `/v1/accounts/${encodeURIComponent(id)}/ledger${qs.size ? `?${qs}` : ""}`);
  }
  panelToken(id: string, key?: string) {
    return this.send<{ token: string; url: string; expiresAt: string } | ErrorBody>("POST", `/v1/accounts/${encodeURIComponent(id)}/panel-token`, undefined, key);
  }
  globalReset(body: In<typeof S.GlobalResetBody>, key?: string) {
    return this.send<Out<typeof S.ResetCreated> | ErrorBody>("POST", "/v1/admin/resets", body, key);
  }
}

export const isError = (b: unknown): b is ErrorBody => typeof b === "object" && b !== null && "error" in b;
