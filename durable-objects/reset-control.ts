import { DurableObject } from "cloudflare:workers";
import { type PlanId, PLANS, type Product, PRODUCTS } from "../worker/catalog";
import type { ResetEpoch } from "../worker/core/account/state";
import { iso } from "../worker/core/time";
import { type AnswerBook, type Idempotent, type IdempotencyKey, idempotent } from "./idempotency";
import { type Migration, migrate } from "./migrations";
import { type Sql, sqlOf } from "./sql";

/** The answer to a recorded reset; a replay answers the first one (`Idempotent.replayed`). */
export interface CreatedReset {
  resetId: string;
  /** ISO 8601 */
  effectiveAt: string;
}

/** How many recent global resets are handed to account objects; older ones have long been applied or aged out. */
export const EPOCHS_PUBLISHED = 50;

export interface GlobalResetRequest {
  scope?: { products?: Product[]; plans?: PlanId[] };
  bankedResets?: "keep" | "restore";
  grantBankedResets?: { count: number; expiresInHours: number };
  reason: string;
}

/**
 * This object's schema, oldest first. Append a migration to change it; never edit one that has shipped.
 * Migration 1 is the schema objects already store (hence `IF NOT EXISTS`), recorded as `schema_version` 1.
 */
export const RESET_CONTROL_MIGRATIONS: readonly Migration[] = [
  {
    id: 1,
    description:
      "schema_version, and one row per global reset (with the idempotency key and fingerprint that recorded it)",
    sql: [
      `CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)`,
      `CREATE TABLE IF NOT EXISTS resets (
        seq INTEGER PRIMARY KEY AUTOINCREMENT, reset_id TEXT NOT NULL UNIQUE, effective_at INTEGER NOT NULL,
        products TEXT, plans TEXT, banked_resets TEXT NOT NULL, grant_banked_resets TEXT, reason TEXT NOT NULL,
        actor TEXT NOT NULL, idempotency_key TEXT NOT NULL UNIQUE, fingerprint TEXT NOT NULL)`,
    ],
  },
];

type ResetRow = {
  seq: number;
  reset_id: string;
  effective_at: number;
  /** JSON array of products, or null for every product */
  products: string | null;
  /** JSON array of plans, or null for every plan */
  plans: string | null;
  /** "keep" | "restore" */
  banked_resets: string;
  /** JSON `{ count, expiresInHours }`, or null */
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
  private readonly db: Sql;
  /** Calls to `epochs` since this instance started: the load every isolate's epoch cache is meant to bound. */
  epochReads = 0;

  /**
   * Answers are kept in the reset rows themselves: the row `createReset` writes carries the key and fingerprint, so
   * finding an answer reads that row and keeping one has nothing left to write.
   */
  private readonly answers: AnswerBook<CreatedReset> = {
    find: (key) => {
      const r = this.db.first<Pick<ResetRow, "reset_id" | "effective_at" | "fingerprint">>`
        SELECT reset_id, effective_at, fingerprint FROM resets WHERE idempotency_key = ${key}`;
      return r && { fingerprint: r.fingerprint, answer: { resetId: r.reset_id, effectiveAt: iso(r.effective_at) } };
    },
    keep: () => {},
  };

  constructor(ctx: DurableObjectState, env: Env) {
    super(ctx, env);
    this.db = sqlOf(ctx.storage.sql);
    ctx.storage.transactionSync(() => migrate(this.db, RESET_CONTROL_MIGRATIONS));
  }

  /** Records a reset once per idempotency key; a reused key with another payload is a conflict. */
  createReset(
    req: GlobalResetRequest,
    meta: { now: number; actor: string; idempotency: IdempotencyKey },
  ): Idempotent<CreatedReset> {
    return this.ctx.storage.transactionSync(() =>
      idempotent(this.answers, meta.idempotency, () => {
        const resetId = `rst_${crypto.randomUUID()}`;
        this.db.run`
          INSERT INTO resets (reset_id, effective_at, products, plans, banked_resets, grant_banked_resets, reason, actor, idempotency_key, fingerprint)
          VALUES (${resetId}, ${meta.now}, ${req.scope?.products ? JSON.stringify(req.scope.products) : null},
            ${req.scope?.plans ? JSON.stringify(req.scope.plans) : null}, ${req.bankedResets ?? "keep"},
            ${req.grantBankedResets ? JSON.stringify(req.grantBankedResets) : null}, ${req.reason}, ${meta.actor},
            ${meta.idempotency.key}, ${meta.idempotency.fingerprint})`;
        return { resetId, effectiveAt: iso(meta.now) };
      }),
    );
  }

  /** The most recent resets, oldest first. */
  epochs(): ResetEpoch[] {
    this.epochReads++;
    return this.db.all<ResetRow>`SELECT * FROM resets ORDER BY seq DESC LIMIT ${EPOCHS_PUBLISHED}`
      .reverse()
      .map(toEpoch);
  }

  /** Every reset after `seq`, oldest first: for an account object that missed more than the published ones. */
  epochsAfter(seq: number): ResetEpoch[] {
    return this.db.all<ResetRow>`SELECT * FROM resets WHERE seq > ${seq} ORDER BY seq`.map(toEpoch);
  }

  byId(resetId: string): (ResetEpoch & { reason: string; actor: string }) | null {
    const r = this.db.first<ResetRow>`SELECT * FROM resets WHERE reset_id = ${resetId}`;
    return r ? { ...toEpoch(r), reason: r.reason, actor: r.actor } : null;
  }

  history(limit: number): (ResetEpoch & { reason: string; actor: string; effectiveAtIso: string })[] {
    return this.db.all<ResetRow>`SELECT * FROM resets ORDER BY seq DESC LIMIT ${limit}`.map((r) => ({
      ...toEpoch(r),
      reason: r.reason,
      actor: r.actor,
      effectiveAtIso: iso(r.effective_at),
    }));
  }
}

function toEpoch(r: ResetRow): ResetEpoch {
  return {
    seq: r.seq,
    resetId: r.reset_id,
    effectiveAt: r.effective_at,
    products: scopeList(r.products, PRODUCTS, "products"),
    plans: scopeList(r.plans, PLANS, "plans"),
    bankedResets: bankedResetsOf(r.banked_resets),
    grantBankedResets: grantOf(r.grant_banked_resets),
  };
}

// Parsers of the JSON columns this object wrote. A malformed value is stored corruption and throws; a product or
// plan the catalog no longer has is dropped (no account can be in it), never widened to "everything".

function scopeList<T extends string>(text: string | null, known: readonly T[], column: string): T[] | null {
  if (text === null) return null;
  const value: unknown = JSON.parse(text);
  if (!Array.isArray(value) || !value.every((v) => typeof v === "string"))
    throw new Error(`resets.${column} is not a list of names: ${text}`);
  return value.flatMap((v) => known.filter((k) => k === v)); // stored order, unknown names dropped
}

function bankedResetsOf(text: string): "keep" | "restore" {
  if (text === "keep" || text === "restore") return text;
  throw new Error(`resets.banked_resets is neither keep nor restore: ${text}`);
}

function grantOf(text: string | null): { count: number; expiresInHours: number } | null {
  if (text === null) return null;
  const value: unknown = JSON.parse(text);
  if (typeof value === "object" && value !== null && "count" in value && "expiresInHours" in value) {
    const { count, expiresInHours } = value;
    if (typeof count === "number" && typeof expiresInHours === "number") return { count, expiresInHours };
  }
  throw new Error(`resets.grant_banked_resets is not { count, expiresInHours }: ${text}`);
}
