/**
 * The one way the objects speak SQL: a tagged template whose values are bound parameters, never spliced text.
 *
 *   const db = sqlOf(ctx.storage.sql);
 *   const row = db.first<{ plan: string }>`SELECT plan FROM account WHERE singleton = 1`;
 *
 * Rows are typed by the caller (SQLite cannot tell us; row types are `type` aliases, which satisfy `Row`), and a
 * failing statement throws an error that names it.
 */
export type Row = Record<string, SqlStorageValue>;

export interface Sql {
  /** Every row. */
  all<T extends Row = Row>(strings: TemplateStringsArray, ...values: SqlStorageValue[]): T[];
  /** The first row, or undefined. */
  first<T extends Row = Row>(strings: TemplateStringsArray, ...values: SqlStorageValue[]): T | undefined;
  /** A statement run for its effect: `exec` runs it at once; its cursor is not read (a write has no rows). */
  run(strings: TemplateStringsArray, ...values: SqlStorageValue[]): void;
  /** Statement text assembled from trusted parts (a migration, a multi-row VALUES list), with bound values. */
  exec<T extends Row = Row>(text: string, ...values: SqlStorageValue[]): SqlStorageCursor<T>;
}

export class SqlError extends Error {
  constructor(
    readonly query: string,
    cause: unknown,
  ) {
    super(
      `SQL failed: ${query.replace(/\s+/g, " ").slice(0, 160)}: ${cause instanceof Error ? cause.message : String(cause)}`,
      { cause },
    );
    this.name = "SqlError";
  }
}

/** `?` placeholders between the template's literal parts; one string per call site (the array is the same object). */
const texts = new WeakMap<TemplateStringsArray, string>();
function textOf(strings: TemplateStringsArray): string {
  const known = texts.get(strings);
  if (known !== undefined) return known;
  const text = strings.join("?");
  texts.set(strings, text);
  return text;
}

export function sqlOf(storage: SqlStorage): Sql {
  // A cursor is read lazily: errors can surface while reading it, so reading is inside the same guard.
  const read = <T extends Row, R>(text: string, values: SqlStorageValue[], take: (c: SqlStorageCursor<T>) => R): R => {
    try {
      return take(storage.exec<T>(text, ...values));
    } catch (err) {
      throw new SqlError(text, err);
    }
  };
  return {
    all: <T extends Row>(s: TemplateStringsArray, ...v: SqlStorageValue[]) =>
      read<T, T[]>(textOf(s), v, (c) => c.toArray()),
    first: <T extends Row>(s: TemplateStringsArray, ...v: SqlStorageValue[]) =>
      read<T, T | undefined>(textOf(s), v, (c) => {
        const r = c.next();
        return r.done ? undefined : r.value;
      }),
    run: (s: TemplateStringsArray, ...v: SqlStorageValue[]) => {
      read(textOf(s), v, () => undefined);
    },
    exec: <T extends Row>(text: string, ...v: SqlStorageValue[]) => read<T, SqlStorageCursor<T>>(text, v, (c) => c),
  };
}
