// Bench-only entry. It serves the product worker unchanged (every path outside /__bench/ goes to
// worker/index.ts's default export) and adds probes that must never ship:
//   - BenchProbeDO: an empty RPC method and a single-row SQLite upsert (the floors);
//   - BenchAccountDO: the product's AccountDO with methods that run N real decisions in one RPC;
//   - BenchOrgDO: the product's OrgDO, counting the calls into it (lease issues, alarms) and the closes it makes;
//   - /__bench/* routes that reach them, plus raw D1 inserts and raw queue sends for settlement.
import { DurableObject } from "cloudflare:workers";
import product, { AccountDO, OrgDO, ResetControlDO } from "../worker/index";
import type { Outbox, Sender } from "../durable-objects/account/outbox";
import { AnswerTables } from "../durable-objects/account/answer-book";
import type { AccountStore } from "../durable-objects/account/store";
import { sqlOf } from "../durable-objects/sql";
import type { CallContext, Charge, ResetEpoch } from "../durable-objects/types";
import * as core from "../worker/core/account";
import type { ConsumeResult, GrantResult } from "../worker/core/account/answers";
import type { LeaseIssue, LeaseNeed } from "../worker/core/account/membership";
import type { AccountState, Answered, Refused } from "../worker/core/account/state";
import type { OrgState } from "../worker/core/org/state";
import { summaryOf } from "../worker/core/account/summary";
import { seqOf } from "../worker/core/journal";
import { utcDayStart } from "../worker/core/time";
import { ERROR_STATUS } from "../worker/http/errors";
import type { JournalMessage, LedgerEntry, SettlementMessage } from "../worker/settlement/messages";
import { statementsFor } from "../worker/settlement/consumer";
import { NO_HEAD, readHead } from "../worker/settlement/heads";
import { acrossLedgers, ledgerFor, ledgers } from "../worker/settlement/shards";

export { AccountDO, OrgDO, ResetControlDO };

interface BenchEnv extends Env {
  /** A second queue with the consumer's batching whose consumer only counts: the local queue transport alone. */
  BENCH_TRANSPORT: Queue<SettlementMessage>;
  BENCH_PROBE: DurableObjectNamespace<BenchProbeDO>;
  BENCH_ACCOUNT: DurableObjectNamespace<BenchAccountDO>;
  /** "1": BenchAccountDO meters every statement and alarm it runs (bench/server.mjs sets it for the cost runs) */
  BENCH_METER?: string;
}

/**
 * What the cost runs meter, in this isolate (workerd runs the worker, its objects and the queue consumer in one
 * isolate locally; every count is checked for zero where it cannot be):
 *   object   rows the account objects' SQL wrote and read (`rowsWritten`/`rowsRead` of every cursor), alarms set
 *            (Durable Objects bill a setAlarm as a row written) and alarms run (billed as requests);
 *   ledger   `meta.rows_written`/`rows_read` of every D1 batch the product's settlement consumer runs;
 *   archive  the consumer's R2 puts and their bytes.
 */
const meter = {
  object: { rowsWritten: 0, rowsRead: 0, statements: 0, alarmsSet: 0, alarmsRun: 0 },
  ledger: { rowsWritten: 0, rowsRead: 0, batches: 0, statements: 0 },
  archive: { puts: 0, bytes: 0 },
};
const zeroMeter = () => {
  for (const part of Object.values(meter)) for (const k of Object.keys(part)) (part as Record<string, number>)[k] = 0;
};

/**
 * Sums `rowsWritten`/`rowsRead` of every cursor the object's SqlStorage hands out. A cursor's counts are final once the
 * caller has read it, which durable-objects/sql.ts does at once: they are summed a microtask later.
 */
function meterObjectSql(ctx: DurableObjectState): void {
  const sql = ctx.storage.sql;
  const exec = sql.exec.bind(sql);
  let pending: SqlStorageCursor<Record<string, SqlStorageValue>>[] = [];
  const sum = () => {
    for (const c of pending) {
      meter.object.rowsWritten += c.rowsWritten;
      meter.object.rowsRead += c.rowsRead;
    }
    meter.object.statements += pending.length;
    pending = [];
  };
  sql.exec = <T extends Record<string, SqlStorageValue>>(query: string, ...bindings: unknown[]) => {
    const cursor = exec<T>(query, ...bindings);
    if (pending.length === 0) queueMicrotask(sum);
    pending.push(cursor);
    return cursor;
  };
  const setAlarm = ctx.storage.setAlarm.bind(ctx.storage);
  ctx.storage.setAlarm = (at, options) => {
    meter.object.alarmsSet++;
    return setAlarm(at, options);
  };
}

/** A ledger shard whose batches add their `meta.rows_written` and `rows_read` to the meter. */
function meteredLedger(db: D1Database): D1Database {
  return new Proxy(db, {
    get(target, prop) {
      if (prop === "batch")
        return async (stmts: D1PreparedStatement[]) => {
          const results = await target.batch(stmts);
          meter.ledger.batches++;
          meter.ledger.statements += stmts.length;
          for (const r of results) {
            meter.ledger.rowsWritten += r.meta.rows_written ?? 0;
            meter.ledger.rowsRead += r.meta.rows_read ?? 0;
          }
          return results;
        };
      const v = Reflect.get(target, prop);
      return typeof v === "function" ? v.bind(target) : v;
    },
  });
}

/** The archive bucket, counting puts and their bytes. */
function meteredArchive(bucket: R2Bucket): R2Bucket {
  return new Proxy(bucket, {
    get(target, prop) {
      if (prop === "put")
        return (key: string, body: string, options?: R2PutOptions) => {
          meter.archive.puts++;
          meter.archive.bytes += typeof body === "string" ? new TextEncoder().encode(body).length : 0;
          return target.put(key, body, options);
        };
      const v = Reflect.get(target, prop);
      return typeof v === "function" ? v.bind(target) : v;
    },
  });
}

/** The env the product's consumer gets in the cost runs: every ledger shard and the archive metered. */
function meteredEnv(env: BenchEnv): BenchEnv {
  const shards = (env.LEDGER_SHARDS ?? "DB").split(",").map((s) => s.trim());
  const out: Record<string, unknown> = { ...env, ARCHIVE: meteredArchive(env.ARCHIVE) };
  for (const name of shards) out[name] = meteredLedger(Reflect.get(env, name) as D1Database);
  return out as unknown as BenchEnv;
}

/**
 * Bytes in every ledger shard (D1's `size_after`) and the rows they keep (ledger, heads, events), and the archive's
 * objects and bytes (the sizes R2 lists).
 */
async function storageBytes(
  env: BenchEnv,
): Promise<{ d1: number[]; d1Rows: number[]; r2: { objects: number; bytes: number } }> {
  const shards = await Promise.all(
    ledgers(env).map(async (db) => {
      const r = await db
        .prepare(
          "SELECT (SELECT COUNT(*) FROM ledger) + (SELECT COUNT(*) FROM ledger_heads) + (SELECT COUNT(*) FROM events) AS n",
        )
        .run<{ n: number }>();
      return { bytes: r.meta.size_after ?? 0, rows: r.results[0]?.n ?? 0 };
    }),
  );
  const d1 = shards.map((x) => x.bytes);
  const d1Rows = shards.map((x) => x.rows);
  const r2 = { objects: 0, bytes: 0 };
  let cursor: string | undefined;
  do {
    const page = await env.ARCHIVE.list({ cursor, limit: 1000 });
    for (const o of page.objects) {
      r2.objects++;
      r2.bytes += o.size;
    }
    cursor = page.truncated ? page.cursor : undefined;
  } while (cursor);
  return { d1, d1Rows, r2 };
}

/** The floors (an empty method, one single-row upsert) and in-object SQLite probes. */
export class BenchProbeDO extends DurableObject<Env> {
  private readonly sql: SqlStorage;

  constructor(ctx: DurableObjectState, env: Env) {
    super(ctx, env);
    this.sql = ctx.storage.sql;
    this.sql.exec("CREATE TABLE IF NOT EXISTS kv (k INTEGER PRIMARY KEY, v INTEGER NOT NULL)");
  }

  /** Floor (a): one RPC to an empty method. */
  noop(): void {}

  /** Floor (b): one single-row upsert; the response waits for it to be durable (output gate). */
  upsert(): void {
    this.sql.exec("INSERT INTO kv (k, v) VALUES (1, 1) ON CONFLICT (k) DO UPDATE SET v = v + 1");
  }

  /** In-object floor: n single-row upserts in one call, each its own statement (optionally its own transactionSync). */
  upsertMany(n: number, transaction: boolean): { n: number; inObjectMs: number } {
    const t0 = performance.now();
    for (let i = 0; i < n; i++) {
      if (transaction)
        this.ctx.storage.transactionSync(() =>
          this.sql.exec("INSERT INTO kv (k, v) VALUES (1, ?) ON CONFLICT (k) DO UPDATE SET v = excluded.v", i),
        );
      else this.sql.exec("INSERT INTO kv (k, v) VALUES (1, ?) ON CONFLICT (k) DO UPDATE SET v = excluded.v", i);
    }
    return { n, inObjectMs: performance.now() - t0 };
  }

  /** n trivial point reads: the fixed price of one sql.exec round trip inside the object. */
  readMany(n: number): { n: number; inObjectMs: number } {
    const t0 = performance.now();
    for (let i = 0; i < n; i++) this.sql.exec("SELECT v FROM kv WHERE k = 1").toArray();
    return { n, inObjectMs: performance.now() - t0 };
  }

  /**
   * What an index insert costs as its table grows: n inserts with a random UUID key (as decisions.id and
   * outbox.entry_id get) and n with an increasing key, into tables already holding `rows` rows.
   */
  indexInsert(rows: number, n: number): { rows: number; randomKeyUs: number; increasingKeyUs: number } {
    const rand = `idx_rand_${rows}`;
    const seq = `idx_seq_${rows}`;
    for (const t of [rand, seq])
      this.sql.exec(`CREATE TABLE IF NOT EXISTS ${t} (id TEXT PRIMARY KEY, v INTEGER NOT NULL)`);
    let have = this.sql.exec<{ n: number }>(`SELECT COUNT(*) AS n FROM ${rand}`).one().n;
    for (; have < rows; have++) {
      this.sql.exec(`INSERT INTO ${rand} (id, v) VALUES (?, ?)`, crypto.randomUUID(), have);
      this.sql.exec(`INSERT INTO ${seq} (id, v) VALUES (?, ?)`, `k${String(have).padStart(12, "0")}`, have);
    }
    const keys = Array.from({ length: n }, () => crypto.randomUUID());
    let t0 = performance.now();
    for (let i = 0; i < n; i++) this.sql.exec(`INSERT INTO ${rand} (id, v) VALUES (?, ?)`, keys[i], i);
    const randomKeyUs = ((performance.now() - t0) * 1000) / n;
    const base = this.sql.exec<{ n: number }>(`SELECT COUNT(*) AS n FROM ${seq}`).one().n;
    t0 = performance.now();
    for (let i = 0; i < n; i++)
      this.sql.exec(`INSERT INTO ${seq} (id, v) VALUES (?, ?)`, `k${String(base + i).padStart(12, "0")}`, i);
    const increasingKeyUs = ((performance.now() - t0) * 1000) / n;
    return { rows, randomKeyUs, increasingKeyUs };
  }
}

export interface DecideManyRequest {
  accountId: string;
  n: number;
  /** request clock of the first decision, epoch ms; each next one is `stepMs` later */
  startNow: number;
  stepMs: number;
  product: Charge["product"];
  cost: number;
  keyPrefix: string;
  /**
   * Replace the queue send while the decisions run, so the run adds no queue/D1 traffic. The send
   * resolves only after the loop (as a real send is I/O that completes after a busy turn): the product's
   * outbox flush then sends everything, packed as it packs, timed apart as `flushMs`. What the stub took
   * counts as held by the ledger at the object's next settlement check (see BenchAccountDO.alarm).
   */
  stubQueue: boolean;
  /** give every decision one fresh global reset to apply (the lazy per-account cost of a global reset) */
  freshResetEach?: boolean;
  /** count sql.exec calls by statement text (adds a little overhead: use a separate run) */
  countStatements?: boolean;
}

export interface DecideManyResult {
  n: number;
  allowed: number;
  denied: number;
  errors: number;
  inObjectMs: number;
  flushMs: number;
  statementsPerDecision?: number;
  statements?: Record<string, number>;
}

/**
 * A queue sender that resolves once `wait` has (a real send is I/O that completes after a busy turn), and tells
 * `onSent` the highest journal seq it took.
 */
function benchSender(onSent: (seq: number) => void, wait: Promise<void> = Promise.resolve()): Sender {
  const sent: QueueSendBatchResponse = { metadata: { metrics: { backlogCount: 0, backlogBytes: 0 } } };
  return {
    sendBatch: async (messages) => {
      await wait;
      let top = 0;
      for (const m of messages) for (const e of m.body.entries) top = Math.max(top, seqOf(e));
      onSent(top);
      return sent;
    },
  };
}

/**
 * Counts every statement the object runs through its `SqlStorage` by normalized text, by wrapping that object's
 * `exec` until the returned function restores it. The account's store and outbox hold the `SqlStorage` the object
 * was constructed with (durable-objects/sql.ts calls `storage.exec` on each statement), so this must be the same
 * object `ctx.storage.sql` answers now: checked, and the run fails if it is not.
 */
function countStatements(ctx: DurableObjectState, counts: Map<string, number>): () => void {
  const storage = ctx.storage.sql;
  if (storage !== ctx.storage.sql)
    throw new Error("bench: ctx.storage.sql answers a new object on each read; wrapping its exec would count nothing");
  const own = Object.hasOwn(storage, "exec");
  const original = storage.exec;
  const exec = original.bind(storage);
  storage.exec = <T extends Record<string, SqlStorageValue>>(query: string, ...bindings: unknown[]) => {
    const key = query.replace(/\s+/g, " ").trim();
    counts.set(key, (counts.get(key) ?? 0) + 1);
    return exec<T>(query, ...bindings);
  };
  return () => {
    if (own) storage.exec = original;
    else Reflect.deleteProperty(storage, "exec");
  };
}

/** kind → allowed / denied / errors, as the bench counts them. */
function tally(kind: string, t: { allowed: number; denied: number; errors: number }): void {
  if (kind === "ok") t.allowed++;
  else if (kind === "denied") t.denied++;
  else t.errors++;
}

/** Rolls back the bench's own writes: thrown out of a transactionSync. One object, so no stack is captured per use. */
const ROLLBACK = new Error("bench: rolled back");

/** The product's AccountDO, plus methods that run N real decisions inside one RPC. */
export class BenchAccountDO extends AccountDO {
  constructor(ctx: DurableObjectState, env: BenchEnv) {
    super(ctx, env);
    // After super(): the constructor's own schema check is not metered (once per object life, not per decision).
    if (env.BENCH_METER === "1") meterObjectSql(ctx);
  }

  /**
   * The product object's private parts the bench reads. Element access keeps them typed from the product's own
   * declarations (a rename fails to compile here), where a cast would fail only at run time.
   */
  private get internals(): { store: AccountStore; outbox: Outbox; state: () => AccountState; lastSeq: () => number } {
    return {
      // biome-ignore lint/complexity/useLiteralKeys: TypeScript lets a private member be read only by element access
      store: this["store"],
      // biome-ignore lint/complexity/useLiteralKeys: as above
      outbox: this["outbox"],
      // biome-ignore lint/complexity/useLiteralKeys: as above
      state: () => this["state"](),
      // biome-ignore lint/complexity/useLiteralKeys: as above
      lastSeq: () => this["lastSeq"](),
    };
  }

  /**
   * The highest journal seq a stubbed sender took. Nothing of it reaches D1, so the ledger's watermark would never
   * pass it and every settlement check would send it all again (through the real queue once the stub is gone):
   * background work the product does not have. The stub stands for a ledger that holds what it took, so the next
   * check confirms up to here, as a real check confirms the watermark it reads; that keeps the cost where the
   * product has it (a check per alarm, no write per flush). Memory only: the bench keeps its objects in memory.
   */
  private stubSentThrough = 0;

  private stubSender(wait?: Promise<void>): Sender {
    return benchSender((seq) => {
      this.stubSentThrough = Math.max(this.stubSentThrough, seq);
    }, wait);
  }

  /** The product's alarm, after confirming what the stubbed sender took (see `stubSentThrough`). */
  override async alarm(): Promise<void> {
    meter.object.alarmsRun++;
    const { outbox, lastSeq } = this.internals;
    if (this.stubSentThrough > outbox.confirmed) outbox.confirm(this.stubSentThrough, lastSeq());
    await super.alarm();
  }

  async decideMany(req: DecideManyRequest): Promise<DecideManyResult> {
    const realSender = this.settlement;
    let release: () => void = () => undefined;
    const gate = new Promise<void>((r) => (release = r));
    if (req.stubQueue) this.settlement = this.stubSender(gate);
    const counts = new Map<string, number>();
    // Counts what the object runs through its SqlStorage: the store's snapshot load, reads and writes, the
    // idempotency lookup and keep, and the outbox's drain.
    const restore = req.countStatements ? countStatements(this.ctx, counts) : () => undefined;
    const t = { allowed: 0, denied: 0, errors: 0 };
    let seq = this.internals.state().account?.resetSeq ?? 0;
    let inObjectMs = 0;
    let flushMs = 0;
    try {
      const t0 = performance.now();
      for (let i = 0; i < req.n; i++) {
        const now = req.startNow + i * req.stepMs;
        let resets: ResetEpoch[] | undefined;
        if (req.freshResetEach) {
          seq++;
          resets = [
            {
              seq,
              resetId: `bench_${seq}`,
              effectiveAt: now - 1,
              products: null,
              plans: null,
              bankedResets: "keep",
              grantBankedResets: null,
            },
          ];
        }
        const ctx: CallContext = {
          accountId: req.accountId,
          now,
          requestId: `bench_${i}`,
          idempotency: { key: `${req.keyPrefix}${i}`, fingerprint: "bench" },
          resets,
        };
        const out = await this.consume(ctx, { product: req.product, cost: req.cost });
        tally(out.result.kind, t);
      }
      inObjectMs = performance.now() - t0;
    } finally {
      restore();
      if (req.stubQueue) {
        this.settlement = this.stubSender();
        const t1 = performance.now();
        release();
        await this.flushOutbox();
        await this.flushOutbox();
        flushMs = performance.now() - t1;
        this.settlement = realSender;
      }
    }
    const total = [...counts.values()].reduce((a, b) => a + b, 0);
    if (req.countStatements && req.n > 0 && total === 0)
      throw new Error("bench: no statement counted: the object's SQL does not go through ctx.storage.sql.exec");
    return {
      n: req.n,
      ...t,
      inObjectMs,
      flushMs,
      ...(req.countStatements
        ? {
            statementsPerDecision: total / req.n,
            statements: Object.fromEntries([...counts].sort((a, b) => b[1] - a[1])),
          }
        : {}),
    };
  }

  /**
   * Pieces of one decision, each run n times on the object's current snapshot: where the in-object time goes.
   *   loadUs            the snapshot load (store.load(): once per object life, not per decision)
   *   stepUs            one core.step of a consume with the store's reads: the pure decision, nothing written
   *   writeUs           store.write of such a step (n of them in one transactionSync, rolled back after the timing)
   *   transactionSyncUs an empty transactionSync: what each decision's own transaction adds around its statements
   *   answerJson*       the answer as the idempotency record keeps it (JSON.stringify of the step's result)
   *   summaryOf*        the account summary (?include=account, and the account-returning routes) and its JSON
   */
  breakdown(accountId: string, n: number, now: number): Record<string, number | null> {
    const { store, state: snapshot } = this.internals;
    const state = snapshot();
    if (!state.account) throw new Error(`bench: breakdown of ${accountId}, which has no account yet`);
    const charge: Charge = { product: "codex", cost: 1 };
    const decide = (i: number) =>
      core.step(
        state,
        { accountId, now, wallNow: Date.now(), idempotencyKey: `breakdown_${i}`, resets: [], includeAccount: false },
        store.reads,
        (d) => core.consume(d, charge),
      );
    const time = (f: (i: number) => unknown) => {
      const t0 = performance.now();
      for (let i = 0; i < n; i++) f(i);
      return ((performance.now() - t0) * 1000) / n;
    };
    const rolledBack = (f: () => void) => {
      try {
        this.ctx.storage.transactionSync(() => {
          f();
          throw ROLLBACK;
        });
      } catch (err) {
        if (err !== ROLLBACK) throw err;
      }
    };
    const stepUs = time(decide);
    // Each write needs a step of its own (fresh decision and ledger ids); made before the timing.
    const steps = Array.from({ length: n }, (_, i) => decide(i));
    if (steps[0].result.kind !== "ok") throw new Error(`bench: breakdown step answered ${steps[0].result.kind}`);
    // Steps made from one snapshot all journal the seq after it, and the outbox's key is the seq: renumbered as n
    // consecutive decisions would have them (the same statements, increasing keys), so the writes do not collide.
    let seq = state.account.journalSeq;
    for (const s of steps)
      for (const e of s.effects) {
        if (e.type !== "journal") continue;
        if (e.message.type === "ledger") e.message.entry.seq = ++seq;
        else e.message.event.seq = ++seq;
      }
    // All n writes in one transactionSync, timed inside it, then rolled back: the bench leaves no rows behind
    // (they would reach the ledger through the outbox) and the snapshot stays what storage holds.
    let writeUs = 0;
    rolledBack(() => {
      writeUs = time((i) => store.write(state, steps[i].next, steps[i].effects, now));
    });
    const summary = summaryOf(state, now, store.reads.spentSince(utcDayStart(now)));
    return {
      loadUs: time(() => store.load()),
      stepUs,
      writeUs,
      transactionSyncUs: time(() => this.ctx.storage.transactionSync(() => undefined)),
      answerJsonStringifyUs: time(() => JSON.stringify(steps[0].result)),
      answerJsonBytes: JSON.stringify(steps[0].result).length,
      summaryOfUs: time(() => summaryOf(state, now, store.reads.spentSince(utcDayStart(now)))),
      summaryJsonStringifyUs: time(() => JSON.stringify(summary)),
      summaryJsonBytes: JSON.stringify(summary).length,
      randomUuidUs: time(() => crypto.randomUUID()),
    };
  }

  /** One real consume with the queue send replaced by one that resolves at once (the outbox work still runs). */
  consumeNoQueue(ctx: CallContext, charge: Charge): Promise<Answered<ConsumeResult>> {
    this.settlement = this.stubSender();
    return this.consume(ctx, charge);
  }

  /**
   * Adds n rows to one table, shaped like the rows real decisions leave there (copies of a real row's
   * payload, random keys and ids where the product uses them): which table's size a decision feels. `answers` is
   * the answers table of `now`'s period (durable-objects/account/answer-book.ts). Outbox rows are journal rows the
   * ledger already holds, carrying window usage as a window charge's row does (kept a week): seqs below the
   * journal's lowest, so at or below `settlement.confirmed` (a row above it is pending: sent again by every
   * settlement check, never pruned) and clear of the seqs the account's next entries take.
   */
  inflate(table: "answers" | "outbox", n: number, now: number): number {
    const sql = this.ctx.storage.sql;
    const nums = `WITH RECURSIVE x(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM x WHERE i < ${Math.floor(n)})`;
    const uuid =
      "lower(hex(randomblob(4)) || '-' || hex(randomblob(2)) || '-' || hex(randomblob(2)) || '-' || hex(randomblob(2)) || '-' || hex(randomblob(6)))";
    if (table === "answers") {
      const answers = new AnswerTables(sqlOf(sql));
      const latest = answers.periods().at(-1);
      if (latest === undefined) throw new Error("bench: inflate answers of an account that kept none");
      const name = `answers_${latest}`;
      sql.exec(
        `${nums} INSERT INTO ${name} (key, fingerprint, answer) SELECT randomblob(16), randomblob(32), (SELECT answer FROM ${name} LIMIT 1) FROM x`,
      );
      return answers
        .periods()
        .reduce((c, p) => c + sql.exec<{ n: number }>(`SELECT COUNT(*) AS n FROM answers_${p}`).one().n, 0);
    }
    const lowest = sql.exec<{ s: number }>("SELECT COALESCE(MIN(seq), 1) AS s FROM outbox").one().s;
    sql.exec(
      `${nums} INSERT INTO outbox (seq, entry_id, message, created_at, usage_product, usage)
        SELECT ? - i, ${uuid}, (SELECT message FROM outbox LIMIT 1), ? - i, 'codex', 1 FROM x`,
      lowest,
      now,
    );
    return sql.exec<{ n: number }>("SELECT COUNT(*) AS n FROM outbox").one().n;
  }

  /** Row counts of every table of the account object (the answers tables summed as `answers`). */
  tableSizes(): Record<string, number> {
    const sql = this.ctx.storage.sql;
    const out: Record<string, number> = { answers: 0 };
    const tables = sql
      .exec<{ name: string }>(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' AND name NOT LIKE '_cf_%'",
      )
      .toArray();
    for (const t of tables) {
      const rows = sql.exec<{ n: number }>(`SELECT COUNT(*) AS n FROM "${t.name}"`).one().n;
      if (t.name.startsWith("answers_")) out.answers += rows;
      else out[t.name] = rows;
    }
    out.databaseBytes = sql.databaseSize;
    // Journal rows the ledger has not confirmed (above `settlement.confirmed`): the settlement check's to send.
    if (tables.some((t) => t.name === "settlement"))
      out.outboxPending = sql
        .exec<{ n: number }>("SELECT COUNT(*) AS n FROM outbox WHERE seq > (SELECT confirmed FROM settlement)")
        .one().n;
    // Payload bytes of the rows a decision leaves behind.
    const avg = (q: string) => sql.exec<{ b: number | null }>(q).one().b ?? 0;
    const latest = tables
      .map((t) => t.name)
      .filter((t) => t.startsWith("answers_"))
      .at(-1);
    if (latest) out.avgAnswerBytes = Math.round(avg(`SELECT AVG(LENGTH(answer)) AS b FROM ${latest}`));
    out.avgOutboxMessageBytes = Math.round(avg("SELECT AVG(LENGTH(message)) AS b FROM outbox"));
    // Bytes of every column of the journal and of the kept answers (what the pages hold, less B-tree overhead).
    const rawBytes = (t: string) => {
      const cols = sql
        .exec<{ name: string }>(`PRAGMA table_info("${t}")`)
        .toArray()
        .map((c) => `COALESCE(length(CAST("${c.name}" AS BLOB)), 0)`);
      return cols.length === 0 ? 0 : avg(`SELECT SUM(${cols.join(" + ")}) AS b FROM "${t}"`);
    };
    out.journalRawBytes = rawBytes("outbox");
    out.answersRawBytes = tables.filter((t) => t.name.startsWith("answers_")).reduce((a, t) => a + rawBytes(t.name), 0);
    return out;
  }

  /** Runs the product's alarm now (expiries, pruning by age, outbox re-send). */
  async runAlarm(): Promise<void> {
    await this.alarm();
  }

  /**
   * Retention, as time would run it: a read `days` later moves the object's clock (the request clock), then the
   * product's alarm prunes what aged out. Returns the object rows the alarm wrote (metered objects only) and the
   * table sizes after it.
   */
  async retain(
    accountId: string,
    days: number,
  ): Promise<{ prunedRows: number; before: Record<string, number>; sizes: Record<string, number> }> {
    const before = this.tableSizes();
    const now = Date.now() + days * 24 * 3_600_000;
    await this.summary({ accountId, now, requestId: "bench_retain", resets: [] });
    const rows = meter.object.rowsWritten;
    await this.alarm();
    // the alarm's statements are summed a microtask after they ran
    await Promise.resolve();
    return { prunedRows: meter.object.rowsWritten - rows, before, sizes: this.tableSizes() };
  }

  addGrant(ctx: CallContext, amount: number): Promise<Answered<GrantResult>> {
    return this.addCredits(ctx, { amount, kind: "purchase" });
  }
}

/**
 * Calls into the organizations' pool objects (issue #16 item 6, row 16a), counted in this isolate (workerd runs the
 * worker and every object in one isolate locally), for the objects served as BenchOrgDO:
 *   issues         `issueLease` RPCs from member objects (one per lease request a member sends)
 *   issuedEmpty    of them, the ones answered with no parts; why, as the pool's state said just before:
 *     emptyClosing   the member's close was in flight (asked of the member, not yet applied)
 *     emptyShort     the pool could not cover the shortfall, even after waiting for the recall it made
 *     emptyOther     a stale or replayed issue number, a paused pool, not a member, or the pool pausing now
 *   recallWaits    issues that waited for the pool's closes before answering (`OrgDO.closeDue` called by
 *                  `issueLease`: every `closeDue` call less those of the alarm and of the bench's `/org/close-due`)
 *   issuedCredit   micro-credits issued in the answers with parts
 *   closes         `closeLease` RPCs the pool object made to members (one per lease close it ran)
 *   closeFailures  of them, the ones that threw (retried by the alarm)
 *   alarms         alarm invocations of the pool objects (each may run closes); while the bench reads both sides of
 *                  every lease it holds them (`holdAlarms`), and an alarm that fires meanwhile runs later instead
 */
const orgMeter = {
  issues: 0,
  issuedEmpty: 0,
  emptyClosing: 0,
  emptyShort: 0,
  emptyOther: 0,
  issuedCredit: 0,
  closes: 0,
  closeFailures: 0,
  alarms: 0,
  closeDueCalls: 0,
  benchCloseDue: 0,
};

/** The account namespace a BenchOrgDO calls its members through: every `closeLease` counted, nothing else changed. */
function countingAccounts(ns: BenchEnv["ACCOUNT"]): BenchEnv["ACCOUNT"] {
  // An RPC stub answers every property name with a callable (even `bind`): only `closeLease` is wrapped, and it is
  // called as a method of the stub itself.
  const countCloses = (stub: DurableObjectStub<AccountDO>) =>
    new Proxy(stub, {
      get(target, prop) {
        if (prop !== "closeLease") return Reflect.get(target, prop);
        return async (...args: Parameters<AccountDO["closeLease"]>) => {
          orgMeter.closes++;
          try {
            return await target.closeLease(...args);
          } catch (err) {
            orgMeter.closeFailures++;
            throw err;
          }
        };
      },
    });
  return new Proxy(ns, {
    get(target, prop) {
      const v = Reflect.get(target, prop);
      if (prop === "get") return (id: DurableObjectId) => countCloses(target.get(id));
      return typeof v === "function" ? v.bind(target) : v;
    },
  });
}

/** The product's OrgDO, same code, with the calls into it and the closes it makes counted (`orgMeter`). */
export class BenchOrgDO extends OrgDO {
  constructor(ctx: DurableObjectState, env: BenchEnv) {
    super(ctx, { ...env, ACCOUNT: countingAccounts(env.ACCOUNT) });
  }

  override async issueLease(accountId: string, need: LeaseNeed, now: number): Promise<LeaseIssue | Refused> {
    orgMeter.issues++;
    // biome-ignore lint/complexity/useLiteralKeys: TypeScript lets a private member be read only by element access
    const before: OrgState = this["state"]();
    const m = before.members.get(accountId);
    const fresh = m?.active === true && m.lastIssue?.n !== need.n && need.n > m.issued && !before.org?.paused;
    const answer = await super.issueLease(accountId, need, now);
    if ("parts" in answer && answer.parts.length > 0)
      orgMeter.issuedCredit += answer.parts.reduce((s, p) => s + p.remaining, 0);
    else {
      orgMeter.issuedEmpty++;
      // biome-ignore lint/complexity/useLiteralKeys: as above
      const paused = this["state"]().org?.paused === true;
      if (fresh && m.closing !== null) orgMeter.emptyClosing++;
      else if (fresh && !paused) orgMeter.emptyShort++;
      else orgMeter.emptyOther++;
    }
    return answer;
  }

  /**
   * While held, an alarm that fires runs a second later instead (nothing is lost: it runs once released). The bench
   * holds the alarm while it reads the pool and every member, so that no close starts in the middle of that read (a
   * close takes a member's rest before the pool gets it back); `OrgDO.idle()` then waits out a close already running.
   */
  private alarmsHeld = false;

  holdAlarms(held: boolean): void {
    this.alarmsHeld = held;
  }

  override closeDue(now?: number): Promise<void> {
    orgMeter.closeDueCalls++;
    return super.closeDue(now);
  }

  override async alarm(): Promise<void> {
    if (this.alarmsHeld) {
      await this.ctx.storage.setAlarm(Date.now() + 1000);
      return;
    }
    orgMeter.alarms++;
    await super.alarm();
  }
}

const json = (body: unknown, status = 200) => Response.json(body, { status });

/** A consume's answer with the status the product's HTTP layer gives its kind (worker/http/reply.ts), headers aside. */
function answerResponse(result: ConsumeResult): Response {
  switch (result.kind) {
    case "ok":
      return json(result.body);
    case "denied":
      return json(result.body, 429);
    case "refused":
      return json({ error: result.refusal }, ERROR_STATUS[result.refusal.code]);
  }
}

/** The ledger entry a window-funded consume writes, with a recognisable id: entry `i` of a run, its account's `seq`-th. */
function benchEntry(prefix: string, i: number, accountId: string, seq: number, createdAt: number): JournalMessage {
  const entry: LedgerEntry = {
    id: `${prefix}${String(i).padStart(8, "0")}`,
    seq,
    accountId,
    kind: "charge",
    amount: 1,
    layer: "window",
    product: "codex",
    decisionId: crypto.randomUUID(),
    idempotencyKey: `${prefix}key_${i}`,
    createdAt,
  };
  return { type: "ledger", entry };
}

/**
 * A run's n entries over `accounts` fresh accounts (`{prefix}acct_{k}`, floor 0), as the outbox sends them: one
 * account's run of the journal per message, up to `perMessage` entries. Message m belongs to account m % accounts
 * and carries that account's next seqs, so each account's seqs are contiguous from 1 in sending order and the
 * consumer's watermark advances with every message it settles.
 */
function* benchMessages(prefix: string, n: number, accounts: number, perMessage: number): Generator<SettlementMessage> {
  const next = new Array<number>(accounts).fill(0);
  for (let m = 0, i = 0; i < n; m++) {
    const k = m % accounts;
    const accountId = `${prefix}acct_${k}`;
    const entries: JournalMessage[] = [];
    const end = Math.min(n, i + perMessage);
    for (; i < end; i++) entries.push(benchEntry(prefix, i, accountId, ++next[k], Date.now()));
    yield { accountId, floor: 0, entries };
  }
}

/** Shape of a synthetic settlement run, as the routes take it from the request body. */
interface RunShape {
  prefix: string;
  /** ledger entries in the run */
  n: number;
  accounts: number;
  /** entries per queue message (the outbox packs an account's unsent rows into one message) */
  perMessage: number;
}

const runShape = (body: Record<string, unknown>): RunShape => ({
  prefix: String(body.prefix),
  n: Number(body.n),
  accounts: Number(body.accounts ?? 100),
  perMessage: Math.max(1, Number(body.perMessage ?? 1)),
});

/** The outbox keeps a `sendBatch` under 200 KB (Queues take 256 KB); a bench entry is under 300 bytes of JSON. */
const SEND_BYTES = 200_000;
const ENTRY_BYTES = 300;

/**
 * Same shape as the outbox's sends: sendBatch of up to `sendSize` messages (and under SEND_BYTES), to the settlement
 * queue or the transport probe.
 */
async function enqueue(
  env: BenchEnv,
  run: RunShape,
  sendSize = 100,
  queue: Queue<SettlementMessage> = env.SETTLEMENT,
): Promise<{ sent: number; messages: number; entriesPerMessage: number; messagesPerSend: number; ms: number }> {
  const perSend = Math.max(1, Math.min(sendSize, Math.floor(SEND_BYTES / (run.perMessage * ENTRY_BYTES))));
  const t0 = Date.now();
  let messages = 0;
  let batch: MessageSendRequest<SettlementMessage>[] = [];
  for (const body of benchMessages(run.prefix, run.n, run.accounts, run.perMessage)) {
    batch.push({ body, contentType: "json" });
    messages++;
    if (batch.length === perSend) {
      await queue.sendBatch(batch);
      batch = [];
    }
  }
  if (batch.length > 0) await queue.sendBatch(batch);
  return {
    sent: run.n,
    messages,
    entriesPerMessage: run.perMessage,
    messagesPerSend: perSend,
    ms: Date.now() - t0,
  };
}

/** The consumer's own statements for the same messages, straight into D1 in batches of `batch` messages: no queue. */
async function rawInsert(
  env: BenchEnv,
  run: RunShape,
  batch: number,
): Promise<{ inserted: number; messages: number; entriesPerMessage: number; ms: number }> {
  const t0 = Date.now();
  let messages = 0;
  // As the consumer does: each message to its account's shard, each shard's messages of a batch in one D1 batch.
  let byShard = new Map<D1Database, D1PreparedStatement[]>();
  const flush = async () => {
    await Promise.all([...byShard].map(([db, stmts]) => db.batch(stmts)));
    byShard = new Map();
  };
  for (const msg of benchMessages(run.prefix, run.n, run.accounts, run.perMessage)) {
    const db = ledgerFor(env, msg.accountId);
    byShard.set(db, [...(byShard.get(db) ?? []), ...statementsFor(db, msg, Date.now())]);
    if (++messages % batch === 0) await flush();
  }
  if (byShard.size > 0) await flush();
  return { inserted: run.n, messages, entriesPerMessage: run.perMessage, ms: Date.now() - t0 };
}

/**
 * What reached the settlement queues' consumer in this isolate since the last `reset`: batches, messages and
 * entries (the outbox packs several entries into a message when an account has several unsent), and of them those
 * on their first delivery (what the objects sent; the rest are redeliveries). Counted in memory in front of the
 * product's consumer; no I/O.
 */
const settled = { batches: 0, messages: 0, entries: 0, firstMessages: 0, firstEntries: 0 };

/**
 * Charge-to-ledger times (ms from an entry's `createdAt` to the end of the consumer batch that settled it), by the
 * idempotency key's run prefix (`tag-`). Kept here, not read back from D1: window charges land in D1 as hourly
 * `usage` rollups, which keep no per-entry time.
 */
const lagsByRun = new Map<string, number[]>();

function recordLags(batch: MessageBatch<SettlementMessage>, settledAt: number): void {
  for (const m of batch.messages) {
    if (m.attempts !== 1) continue;
    for (const e of m.body?.entries ?? []) {
      if (e.type !== "ledger" || !e.entry.idempotencyKey) continue;
      const key = e.entry.idempotencyKey;
      const run = key.slice(0, key.lastIndexOf("-") + 1);
      const lags = lagsByRun.get(run) ?? [];
      lags.push(settledAt - e.entry.createdAt);
      lagsByRun.set(run, lags);
    }
  }
}

/**
 * Entries the ledger holds, summed over its shards: every head's watermark (the account's seqs held without a gap),
 * less the events (they share the sequence). Rollups make ledger rows no measure of entries.
 */
async function entriesHeld(env: BenchEnv, accountPrefix = ""): Promise<number> {
  const range = [accountPrefix, `${accountPrefix}\uffff`];
  const per = await acrossLedgers(env, async (db) => {
    const heads = await db
      .prepare("SELECT COALESCE(SUM(watermark), 0) AS n FROM ledger_heads WHERE account_id >= ?1 AND account_id < ?2")
      .bind(...range)
      .first<{ n: number }>();
    const events = await db
      .prepare("SELECT COUNT(*) AS n FROM events WHERE account_id >= ?1 AND account_id < ?2")
      .bind(...range)
      .first<{ n: number }>();
    return [(heads?.n ?? 0) - (events?.n ?? 0)];
  });
  return per.reduce((a, b) => a + b, 0);
}

/** A run's settled entries: by idempotency-key prefix (charge-to-ledger times), or a synthetic run's accounts. */
async function ledgerStats(env: BenchEnv, prefix: string, byKey: boolean): Promise<{ count: number; lags: number[] }> {
  if (!byKey) return { count: await entriesHeld(env, `${prefix}acct_`), lags: [] };
  const lags = [...(lagsByRun.get(prefix) ?? [])].sort((a, b) => a - b);
  return { count: lags.length, lags };
}

/** Makes an account exist: one real consume, or a plan change to `go`, by RPC straight to AccountDO. */
async function touchAccount(env: BenchEnv, id: string, how: "consume" | "plan"): Promise<{ kind: string }> {
  const stub = env.ACCOUNT.get(env.ACCOUNT.idFromName(id));
  const ctx: CallContext = {
    accountId: id,
    now: Date.now(),
    requestId: crypto.randomUUID(),
    idempotency: { key: `create_${id}`, fingerprint: "bench" },
  };
  const out = how === "plan" ? await stub.setPlan(ctx, "go") : await stub.consume(ctx, { product: "codex", cost: 1 });
  return { kind: out.result.kind };
}

/** Creates accounts `prefix{from}` … `prefix{from+count-1}`, `concurrency` at a time. */
async function createAccounts(
  env: BenchEnv,
  prefix: string,
  from: number,
  count: number,
  concurrency: number,
  how: "consume" | "plan",
): Promise<{ created: number; failed: number; ms: number }> {
  const t0 = Date.now();
  let failed = 0;
  for (let i = from; i < from + count; i += concurrency) {
    const ids = Array.from({ length: Math.min(concurrency, from + count - i) }, (_, k) => `${prefix}${i + k}`);
    const outs = await Promise.all(ids.map((id) => touchAccount(env, id, how)));
    failed += outs.filter((o) => o.kind !== "ok").length;
  }
  return { created: count - failed, failed, ms: Date.now() - t0 };
}

/** n probe objects `prefix{i}`, one upsert each, 128 at a time. */
async function createProbes(env: BenchEnv, prefix: string, n: number): Promise<{ n: number; ms: number }> {
  const t0 = Date.now();
  for (let i = 0; i < n; i += 128)
    await Promise.all(
      Array.from({ length: Math.min(128, n - i) }, (_, k) =>
        env.BENCH_PROBE.get(env.BENCH_PROBE.idFromName(`${prefix}${i + k}`)).upsert(),
      ),
    );
  return { n, ms: Date.now() - t0 };
}

/**
 * The product's own route code with the account object replaced by a stub that answers at once with a
 * real consume answer recorded once: what the worker side of a consume costs, without the object.
 */
let stubEnv: BenchEnv | null = null;
function workerOnlyEnv(env: BenchEnv): BenchEnv {
  if (stubEnv) return stubEnv;
  // One recorded answer per shape: lean, and with `?include=account`.
  const canned = new Map<boolean, Promise<Answered<ConsumeResult>>>();
  const realStub = () => env.ACCOUNT.get(env.ACCOUNT.idFromName("bench_worker_only"));
  const fake = {
    idFromName: (name: string) => env.ACCOUNT.idFromName(name),
    get: () => ({
      consume: (ctx: CallContext, charge: Charge) => {
        const include = ctx.includeAccount === true;
        if (!canned.has(include))
          canned.set(include, realStub().consume({ ...ctx, accountId: "bench_worker_only" }, charge));
        return canned.get(include)!;
      },
    }),
  };
  stubEnv = { ...env, ACCOUNT: fake as unknown as BenchEnv["ACCOUNT"] };
  return stubEnv;
}

async function benchRoute(request: Request, env: BenchEnv, ctx: ExecutionContext, url: URL): Promise<Response> {
  const path = url.pathname.slice("/__bench".length);
  if (path.startsWith("/worker-only/")) {
    const inner = new Request(request.url.replace("/__bench/worker-only", ""), request);
    return product.fetch(inner, workerOnlyEnv(env), ctx);
  }
  // One window-funded consume straight to an object by RPC, past the product's HTTP layer (routing, auth
  // digests, idempotency fingerprint, validation, reset-epoch lookup, the decision log line).
  type Consume = (ctx: CallContext, charge: Charge) => Promise<Answered<ConsumeResult>>;
  const consumeByRpc = async (consume: Consume) => {
    const accountId = url.searchParams.get("account")!;
    const idempotency = { key: url.searchParams.get("key")!, fingerprint: "bench" };
    const out = await consume(
      { accountId, now: Date.now(), requestId: crypto.randomUUID(), idempotency },
      { product: "codex", cost: 1 },
    );
    return answerResponse(out.result);
  };
  const objectName = url.searchParams.get("account") ?? "";
  if (path === "/consume-noqueue") {
    // The same consume on a BenchAccountDO whose queue send resolves at once: no queue, consumer or D1 work.
    const stub = env.BENCH_ACCOUNT.get(env.BENCH_ACCOUNT.idFromName(objectName));
    return consumeByRpc((c, charge) => stub.consumeNoQueue(c, charge));
  }
  if (path === "/consume-rpc") {
    const stub = env.ACCOUNT.get(env.ACCOUNT.idFromName(objectName));
    return consumeByRpc((c, charge) => stub.consume(c, charge));
  }
  const probe = () => env.BENCH_PROBE.get(env.BENCH_PROBE.idFromName(url.searchParams.get("object") ?? "floor"));
  const benchAccount = (id: string) => env.BENCH_ACCOUNT.get(env.BENCH_ACCOUNT.idFromName(id));
  const body = request.method === "POST" ? ((await request.json()) as Record<string, unknown>) : {};
  const accountId = String(body.accountId);
  switch (path) {
    // Floors, by HTTP under load.
    case "/noop":
      await probe().noop();
      return new Response("ok");
    case "/upsert":
      await probe().upsert();
      return new Response("ok");
    // In-object probes: N operations inside one call.
    case "/probe/upsert-many":
      return json(await probe().upsertMany(Number(body.n), !!body.transaction));
    case "/probe/read-many":
      return json(await probe().readMany(Number(body.n)));
    case "/probe/index-insert":
      return json(await probe().indexInsert(Number(body.rows), Number(body.n)));
    case "/probe/create-many":
      return json(await createProbes(env, String(body.prefix), Number(body.n)));
    case "/account/decide-many":
      return json(await benchAccount(accountId).decideMany(body as unknown as DecideManyRequest));
    case "/account/breakdown":
      return json(await benchAccount(accountId).breakdown(accountId, Number(body.n), Number(body.now)));
    case "/account/grant": {
      const ctx: CallContext = {
        accountId,
        now: Number(body.now),
        requestId: "bench",
        idempotency: { key: `grant_${crypto.randomUUID()}`, fingerprint: "bench" },
      };
      return json(await benchAccount(accountId).addGrant(ctx, Number(body.amount)));
    }
    case "/account/inflate":
      return json(await benchAccount(accountId).inflate(body.table as "answers", Number(body.n), Number(body.now)));
    case "/account/table-sizes":
      return json(await benchAccount(accountId).tableSizes());
    case "/account/alarm":
      await benchAccount(accountId).runAlarm();
      return json(await benchAccount(accountId).tableSizes());
    // Accounts of the product's AccountDO.
    case "/accounts/create":
      return json(
        await createAccounts(
          env,
          String(body.prefix),
          Number(body.from),
          Number(body.count),
          Number(body.concurrency ?? 32),
          body.how === "plan" ? "plan" : "consume",
        ),
      );
    case "/account/reconciliation-state": {
      // What reconciliation reads (worker/settlement/reconciliation.ts): the ledger's head, then the object's cut at
      // it. The cut runs a settlement check, which may send overdue entries again.
      const head = (await readHead(ledgerFor(env, accountId), accountId)) ?? NO_HEAD;
      const cut = await env.ACCOUNT.get(env.ACCOUNT.idFromName(accountId)).settlementCut(head);
      return json({ head, ...cut });
    }
    // Settlement.
    case "/settle/enqueue":
      return json(await enqueue(env, runShape(body), Number(body.sendSize ?? 100)));
    case "/settle/transport":
      await env.DB.exec("CREATE TABLE IF NOT EXISTS bench_transport (prefix TEXT PRIMARY KEY, n INTEGER NOT NULL)");
      return json(await enqueue(env, runShape(body), Number(body.sendSize ?? 100), env.BENCH_TRANSPORT));
    case "/settle/transport-stats":
      return json({
        count:
          (
            await env.DB.prepare("SELECT n FROM bench_transport WHERE prefix = ?")
              .bind(String(body.prefix))
              .first<{ n: number }>()
          )?.n ?? 0,
      });
    case "/settle/raw":
      return json(await rawInsert(env, runShape(body), Number(body.batch ?? 50)));
    case "/settle/shape": {
      const out = { ...settled };
      if (body.reset) for (const k of Object.keys(settled) as (keyof typeof settled)[]) settled[k] = 0;
      return json(out);
    }
    // The cost runs' meters (see `meter`), with what reached the consumer; `reset` zeroes them after the read.
    case "/meter": {
      await Promise.resolve(); // statements of the current turn are summed a microtask later
      const out = { ...structuredClone(meter), queue: { ...settled } };
      if (body.reset) {
        zeroMeter();
        for (const k of Object.keys(settled) as (keyof typeof settled)[]) settled[k] = 0;
      }
      return json(out);
    }
    case "/storage":
      return json(await storageBytes(env));
    // The cost runs serve BenchAccountDO behind ACCOUNT (bench/server.mjs `accountClass`): the product's object, metered.
    case "/account/retain": {
      const ids = (body.accountIds as string[]) ?? [accountId];
      const ns = env.ACCOUNT as unknown as DurableObjectNamespace<BenchAccountDO>;
      const out: { prunedRows: number; before: Record<string, number>; sizes: Record<string, number> }[] = [];
      for (let i = 0; i < ids.length; i += 64)
        out.push(
          ...(await Promise.all(
            ids.slice(i, i + 64).map((id) => ns.get(ns.idFromName(id)).retain(id, Number(body.days))),
          )),
        );
      return json(out);
    }
    case "/account/sizes": {
      const ids = (body.accountIds as string[]) ?? [accountId];
      const ns = env.ACCOUNT as unknown as DurableObjectNamespace<BenchAccountDO>;
      const out: Record<string, number>[] = [];
      for (let i = 0; i < ids.length; i += 64)
        out.push(...(await Promise.all(ids.slice(i, i + 64).map((id) => ns.get(ns.idFromName(id)).tableSizes()))));
      return json(out);
    }
    // Organizations (rows 16a-16d): the pool objects' call counts, and closes run as the pool's alarm runs them.
    case "/org/meter": {
      const out = { ...orgMeter };
      if (body.reset) for (const k of Object.keys(orgMeter) as (keyof typeof orgMeter)[]) orgMeter[k] = 0;
      return json(out);
    }
    case "/org/close-due": {
      // OrgDO.closeDue(now): closes every lease due at `now` (what the alarm does at that time), then waits until no
      // close is in flight, so both sides of every lease can be read.
      const org = env.ORG.get(env.ORG.idFromName(String(body.orgId)));
      orgMeter.benchCloseDue++;
      await org.closeDue(Number(body.now));
      await org.idle();
      return json({ ok: true });
    }
    case "/org/idle":
      await env.ORG.get(env.ORG.idFromName(String(body.orgId))).idle();
      return json({ ok: true });
    case "/account/lease-idle": {
      // AccountDO.leaseIdle(): no lease request of the member's in flight (issued by the pool, not yet taken).
      const ids = body.accountIds as string[];
      for (let i = 0; i < ids.length; i += 64)
        await Promise.all(ids.slice(i, i + 64).map((id) => env.ACCOUNT.get(env.ACCOUNT.idFromName(id)).leaseIdle()));
      return json({ ok: true });
    }
    case "/org/hold-alarms": {
      // Served as BenchOrgDO (bench/server.mjs `orgClass`): its alarm held or released, then no close in flight.
      const ns = env.ORG as unknown as DurableObjectNamespace<BenchOrgDO>;
      const org = ns.get(ns.idFromName(String(body.orgId)));
      await org.holdAlarms(!!body.held);
      await org.idle();
      return json({ ok: true });
    }
    case "/settle/stats":
      return json(await ledgerStats(env, String(body.prefix), !!body.byKey));
    case "/settle/total":
      return json({ n: await entriesHeld(env) });
    default:
      return json({ error: "no such bench route" }, 404);
  }
}

/** Entries in a queue batch. */
const entriesIn = (batch: MessageBatch<SettlementMessage>): number =>
  batch.messages.reduce((n, m) => n + (m.body?.entries?.length ?? 0), 0);

/** The transport probe's consumer: one counter update per batch (entries, by run prefix), no ledger rows. */
async function countTransport(batch: MessageBatch<SettlementMessage>, env: BenchEnv): Promise<void> {
  const first = batch.messages[0]?.body?.entries?.[0];
  const prefix = first?.type === "ledger" ? first.entry.id.slice(0, -8) : "?";
  await env.DB.prepare(
    "INSERT INTO bench_transport (prefix, n) VALUES (?, ?) ON CONFLICT (prefix) DO UPDATE SET n = n + excluded.n",
  )
    .bind(prefix, entriesIn(batch))
    .run();
  batch.ackAll();
}

export default {
  ...product,
  async queue(batch: MessageBatch<SettlementMessage>, env: BenchEnv): Promise<void> {
    if (batch.queue === "bench-transport") return countTransport(batch, env);
    settled.batches++;
    settled.messages += batch.messages.length;
    settled.entries += entriesIn(batch);
    for (const m of batch.messages)
      if (m.attempts === 1) {
        settled.firstMessages++;
        settled.firstEntries += m.body?.entries?.length ?? 0;
      }
    await product.queue(batch, env.BENCH_METER === "1" ? meteredEnv(env) : env);
    recordLags(batch, Date.now());
  },
  fetch(request: Request, env: BenchEnv, ctx: ExecutionContext): Response | Promise<Response> {
    // The one addition in front of the product: a prefix test on the path.
    const url = request.url;
    if (url.includes("/__bench/")) return benchRoute(request, env, ctx, new URL(url));
    return product.fetch(request, env, ctx);
  },
} satisfies ExportedHandler<BenchEnv, SettlementMessage>;
