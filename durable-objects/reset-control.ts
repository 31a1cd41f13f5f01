import { DurableObject } from "cloudflare:workers";
import type { PlanId, Product } from "../worker/catalog";
import { iso } from "../worker/core/time";
import type { ResetEpoch } from "./types";

export interface CreatedReset {
  resetId: string;
  effectiveAt: string;
  replayed: boolean;
}

/** How many recent global resets are handed to account objects; older ones have long been applied or aged out. */
export const EPOCHS_PUBLISHED = 50;

export interface GlobalResetRequest {
  scope?: { products?: Product[]; plans?: PlanId[] };
  bankedResets?: "keep" | "restore";
  grantBankedResets?: { count: number; expiresInHours: number };
  reason: string;
}

type ResetRow = {
  seq: number;
  reset_id: string;
  effective_at: number;
  products: string | null;
  plans: string | null;
  banked_resets: "keep" | "restore";
  grant_banked_resets: string | null;
  reason: string;
  actor: string;
  idempotency_key: string;
  fingerprint: string;
};

/**
 * The one place global resets are written. A reset is one row here (O(1) whatever the number of accounts);
 * account objects apply it lazily from the epochs the worker hands them.
 */
export class ResetControlDO extends DurableObject<Env> {
  private readonly sql: SqlStorage;
  /** Calls to `epochs` since this instance started: the load every isolate's epoch cache is meant to bound. */
  epochReads = 0;

  constructor(ctx: DurableObjectState, env: Env) {
    super(ctx, env);
    this.sql = ctx.storage.sql;
    ctx.storage.transactionSync(() => {
      this.sql.exec(`CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)`);
      this.sql.exec(`CREATE TABLE IF NOT EXISTS resets (
        seq INTEGER PRIMARY KEY AUTOINCREMENT, reset_id TEXT NOT NULL UNIQUE, effective_at INTEGER NOT NULL,
        products TEXT, plans TEXT, banked_resets TEXT NOT NULL, grant_banked_resets TEXT, reason TEXT NOT NULL,
        actor TEXT NOT NULL, idempotency_key TEXT NOT NULL UNIQUE, fingerprint TEXT NOT NULL)`);
      if (this.sql.exec("SELECT 1 FROM schema_version").toArray().length === 0) this.sql.exec("INSERT INTO schema_version (version) VALUES (1)");
    });
  }

  /** Records a reset once per idempotency key; a reused key with another payload is a conflict. */
  createReset(req: GlobalResetRequest, meta: { now: number; actor: string; idempotency: { key: string; fingerprint: string } }): CreatedReset | { conflict: true } {
    return this.ctx.storage.transactionSync(() => {
      const prior = this.sql.exec<ResetRow>("SELECT * FROM resets WHERE idempotency_key = ?", meta.idempotency.key).toArray()[0];
      if (prior) {
        if (prior.fingerprint !== meta.idempotency.fingerprint) return { conflict: true as const };
        return { resetId: prior.reset_id, effectiveAt: iso(prior.effective_at), replayed: true };
      }
      const resetId = `rst_${crypto.randomUUID()}`;
      this.sql.exec(
        `INSERT INTO resets (reset_id, effective_at, products, plans, banked_resets, grant_banked_resets, reason, actor, idempotency_key, fingerprint)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
        resetId, meta.now,
        req.scope?.products ? JSON.stringify(req.scope.products) : null,
        req.scope?.plans ? JSON.stringify(req.scope.plans) : null,
        req.bankedResets ?? "keep",
        req.grantBankedResets ? JSON.stringify(req.grantBankedResets) : null,
        req.reason, meta.actor, meta.idempotency.key, meta.idempotency.fingerprint,
      );
      return { resetId, effectiveAt: iso(meta.now), replayed: false };
    });
  }

  /** The most recent resets, oldest first. */
  epochs(): ResetEpoch[] {
    this.epochReads++;
    return this.sql
      .exec<ResetRow>("SELECT * FROM resets ORDER BY seq DESC LIMIT ?", EPOCHS_PUBLISHED)
      .toArray()
      .reverse()
      .map(toEpoch);
  }

  /** Every reset after `seq`, oldest first: for an account object that missed more than the published ones. */
  epochsAfter(seq: number): ResetEpoch[] {
    return this.sql.exec<ResetRow>("SELECT * FROM resets WHERE seq > ? ORDER BY seq", seq).toArray().map(toEpoch);
  }

  byId(resetId: string): (ResetEpoch & { reason: string; actor: string }) | null {
    const r = this.sql.exec<ResetRow>("SELECT * FROM resets WHERE reset_id = ?", resetId).toArray()[0];
    return r ? { ...toEpoch(r), reason: r.reason, actor: r.actor } : null;
  }

  history(limit: number): (ResetEpoch & { reason: string; actor: string; effectiveAtIso: string })[] {
    return this.sql
      .exec<ResetRow>("SELECT * FROM resets ORDER BY seq DESC LIMIT ?", limit)
      .toArray()
      .map((r) => ({ ...toEpoch(r), reason: r.reason, actor: r.actor, effectiveAtIso: iso(r.effective_at) }));
  }
}

function toEpoch(r: ResetRow): ResetEpoch {
  return {
    seq: r.seq,
    resetId: r.reset_id,
    effectiveAt: r.effective_at,
    products: r.products ? (JSON.parse(r.products) as Product[]) : null,
    plans: r.plans ? (JSON.parse(r.plans) as PlanId[]) : null,
    bankedResets: r.banked_resets,
    grantBankedResets: r.grant_banked_resets ? JSON.parse(r.grant_banked_resets) : null,
  };
}
