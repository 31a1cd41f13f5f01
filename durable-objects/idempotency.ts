/**
 * SPEC §4 idempotency, written once for every object: inside the caller's transaction, the first call with a key
 * runs and its answer is kept; the same key with the same fingerprint replays that answer; the same key with
 * another fingerprint is a conflict. Each object says where answers are kept (its `AnswerBook`).
 */
export interface IdempotencyKey {
  key: string;
  /** digest of method, canonical path and canonical body */
  fingerprint: string;
}

/** Where an object keeps its answers, by key. */
export interface AnswerBook<A> {
  find(key: string): { fingerprint: string; answer: A } | undefined;
  keep(key: IdempotencyKey, answer: A): void;
}

export type Idempotent<A> = { kind: "answered"; answer: A; replayed: boolean } | { kind: "conflict" };

/**
 * Runs `work` at most once per key. `keeps` decides whether a fresh answer is kept: an answer that decided nothing
 * (a request refused before any effect) leaves the key unused, so a corrected retry with it is decided afresh.
 */
export function idempotent<A>(
  book: AnswerBook<A>,
  key: IdempotencyKey,
  work: () => A,
  keeps: (answer: A) => boolean = () => true,
): Idempotent<A> {
  const prior = book.find(key.key);
  if (prior)
    return prior.fingerprint === key.fingerprint
      ? { kind: "answered", answer: prior.answer, replayed: true }
      : { kind: "conflict" };
  const answer = work();
  if (keeps(answer)) book.keep(key, answer);
  return { kind: "answered", answer, replayed: false };
}
