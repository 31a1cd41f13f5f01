/**
 * The account's kept answers (SPEC §4), one table per period: `answers_<n>` holds the answers kept while the request
 * clock was in [n·P, (n+1)·P), P = half the idempotency horizon. Each is a WITHOUT ROWID table keyed by the key, so
 * keeping an answer writes one row and nothing else (no rowid, no age index). A table goes whole, with one DROP, once
 * its period lies past the horizon: pruning writes no row. An answer is therefore kept at least the horizon and at
 * most one period longer. A lookup asks every table (two or three: reads are cheap, rows written are what is billed).
 *
 * The answer is stored in the compact text of ./compact.ts; a SHA-256 fingerprint in hex is stored as its 32 bytes,
 * and a key that is a lowercase UUID as its 16.
 */
import { catalog } from "../../worker/catalog";
import { HOUR_MS } from "../../worker/core/time";
import type { AnswerBook, IdempotencyKey } from "../idempotency";
import type { Sql } from "../sql";
import { pack, unpack, uuidBytes } from "./compact";

/** How long a key is kept at least (SPEC §4: at least 24 hours). */
export const ANSWER_HORIZON_MS = catalog.guards.idempotencyRetentionHours * HOUR_MS;

const TABLE = /^answers_(\d+)$/;
const HEX = /^[0-9a-f]{64}$/;

/** A key as stored: a lowercase UUID as its 16 bytes (a BLOB never equals a TEXT key), any other key as it is. */
function keyOut(key: string): string | ArrayBuffer {
  return uuidBytes(key)?.buffer ?? key;
}

function fingerprintOut(f: string): string | ArrayBuffer {
  if (!HEX.test(f)) return f;
  const bytes = new Uint8Array(32);
  for (let i = 0; i < 32; i++) bytes[i] = Number.parseInt(f.slice(2 * i, 2 * i + 2), 16);
  return bytes.buffer;
}

function fingerprintIn(f: SqlStorageValue): string {
  if (typeof f === "string") return f;
  if (f instanceof ArrayBuffer) return [...new Uint8Array(f)].map((b) => b.toString(16).padStart(2, "0")).join("");
  return String(f);
}

export class AnswerTables {
  private readonly periodMs: number;

  constructor(
    private readonly db: Sql,
    private readonly horizonMs = ANSWER_HORIZON_MS,
  ) {
    this.periodMs = horizonMs / 2;
  }

  /** The periods that have a table, oldest first. */
  periods(): number[] {
    const out: number[] = [];
    for (const { name } of this.db.all<{ name: string }>`
      SELECT name FROM sqlite_master WHERE type = 'table' AND name GLOB 'answers_[0-9]*'`) {
      const m = TABLE.exec(name);
      if (m) out.push(Number(m[1]));
    }
    return out.sort((a, b) => a - b);
  }

  private periodOf(at: number): number {
    return Math.max(0, Math.floor(at / this.periodMs));
  }

  /**
   * The book of one transaction. It reads which tables exist once, drops those past the horizon at `now` (as `prune`
   * does; the alarm may not have run yet), and creates the one `now` falls in when it first keeps an answer there.
   */
  book<A>(now: number): AnswerBook<A> {
    const periods = this.periods().filter((n) => !this.dropIfPast(n, now));
    return {
      find: (key) => {
        const stored = keyOut(key);
        // Newest first: a key just used is in the latest table. One point read per table (two or three).
        for (const n of [...periods].reverse()) {
          const row = this.db
            .exec<{ fingerprint: SqlStorageValue; answer: string }>(
              `SELECT fingerprint, answer FROM answers_${n} WHERE key = ?`,
              stored,
            )
            .next();
          // Answers in the book are values `keep` was given (A).
          if (!row.done)
            return { fingerprint: fingerprintIn(row.value.fingerprint), answer: unpack(row.value.answer) as A };
        }
        return undefined;
      },
      keep: (key: IdempotencyKey, answer: A) => {
        const n = this.periodOf(now);
        if (!periods.includes(n)) {
          this.create(n);
          periods.push(n);
        }
        this.put(n, key, pack(answer));
      },
    };
  }

  /** Drops period `n`'s table if its whole period lies past the horizon at `now`: no row written. */
  private dropIfPast(n: number, now: number): boolean {
    if ((n + 1) * this.periodMs > now - this.horizonMs) return false;
    this.db.exec(`DROP TABLE IF EXISTS answers_${n}`);
    return true;
  }

  private create(n: number): void {
    this.db.exec(
      `CREATE TABLE IF NOT EXISTS answers_${n} (key PRIMARY KEY, fingerprint NOT NULL, answer TEXT NOT NULL) WITHOUT ROWID`,
    );
  }

  private put(n: number, key: IdempotencyKey, answer: string): void {
    this.db.exec(
      `INSERT INTO answers_${n} (key, fingerprint, answer) VALUES (?, ?, ?)`,
      keyOut(key.key),
      fingerprintOut(key.fingerprint),
      answer,
    );
  }

  /** Keeps an answer already in compact text, kept at `at` (the migration of answers kept before the tables). */
  carry(at: number, key: IdempotencyKey, answer: string): void {
    const n = this.periodOf(at);
    this.create(n);
    this.put(n, key, answer);
  }

  /** Drops every table whose whole period lies past the horizon at `now`. */
  prune(now: number): void {
    for (const n of this.periods()) this.dropIfPast(n, now);
  }

  /** When (request clock) the oldest table may go, or null with none. */
  dueAt(): number | null {
    const oldest = this.periods()[0];
    return oldest === undefined ? null : (oldest + 1) * this.periodMs + this.horizonMs;
  }
}
