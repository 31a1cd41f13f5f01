/**
 * One step's working copy. A step copies the snapshot, changes the copy and lists its effects; the caller's state
 * is never touched, so a refused or abandoned step leaves nothing behind. `run` is the one way a step is taken.
 */
import { DEFAULT_PLAN, type Product, planFor } from "../../catalog";
import { minuteOf } from "../time";
import { type EntryFields, eventMessage, idOf, type JournalAuthor, ledgerMessage } from "../journal";
import { type WindowKind, type WindowState, currentWindow } from "../windows";
import type { AccountRecord, AccountState, Effect, GrantRecord, Reads, Step, StepContext } from "./state";
import { isRefused } from "./state";

export class Draft {
  readonly state: AccountState;
  readonly effects: Effect[] = [];
  /** grants seen in this step, live or not: a release may give credits back to one that ran out */
  private readonly grantsSeen = new Map<string, GrantRecord>();

  constructor(
    from: AccountState,
    readonly ctx: StepContext,
    readonly reads: Reads,
  ) {
    this.state = {
      account: from.account && { ...from.account },
      windows: { ...from.windows },
      grants: from.grants.map((g) => ({ ...g })),
      holds: [...from.holds],
      bankedResets: [...from.bankedResets],
      pendingTopUp: from.pendingTopUp,
    };
    for (const g of this.state.grants) this.grantsSeen.set(g.id, g);
  }

  get now(): number {
    return this.ctx.now;
  }

  /** The account row; steps that change an account run after it exists. */
  get account(): AccountRecord {
    const a = this.state.account;
    if (!a) throw new Error("account step before the account exists");
    return a;
  }

  get plan() {
    return planFor(this.state.account?.plan ?? DEFAULT_PLAN);
  }

  update(patch: Partial<AccountRecord>): void {
    Object.assign(this.account, patch);
  }

  /** The window as it stands now: past its end it is closed and empty. */
  window(product: Product, kind: WindowKind): WindowState {
    return currentWindow(this.state.windows[`${product}:${kind}`] ?? { openedAt: null, used: 0 }, kind, this.now);
  }

  putWindow(product: Product, kind: WindowKind, w: WindowState): void {
    this.state.windows[`${product}:${kind}`] = w;
  }

  /** A grant by id: live, seen earlier in this step, or one that ran out. */
  grant(id: string): GrantRecord | undefined {
    const seen = this.grantsSeen.get(id);
    if (seen) return seen;
    const stored = this.reads.grant(id);
    if (!stored) return undefined;
    const g = { ...stored };
    this.grantsSeen.set(id, g);
    return g;
  }

  /** Puts a grant into the live set, or takes it out once nothing is left. */
  setGrant(g: GrantRecord): void {
    this.grantsSeen.set(g.id, g);
    const at = this.state.grants.findIndex((x) => x.id === g.id);
    const rest = this.state.grants.filter((x) => x.id !== g.id);
    if (g.remaining <= 0) this.state.grants = rest;
    else if (at === -1) this.state.grants = [...rest, g];
    else this.state.grants = this.state.grants.map((x) => (x.id === g.id ? g : x));
  }

  effect(e: Effect): void {
    this.effects.push(e);
  }

  /** The journal's next sequence number: contiguous per account, so the ledger can tell what it is missing. */
  private nextSeq(): number {
    const seq = this.account.journalSeq + 1;
    this.update({ journalSeq: seq });
    return seq;
  }

  private get author(): JournalAuthor {
    const { accountId, now, wallNow, idempotencyKey } = this.ctx;
    return { owner: accountId, now, wallNow, idempotencyKey };
  }

  /** Appends a ledger entry to the journal; returns its id. */
  ledger(e: EntryFields): string {
    // An absent field may be `undefined` here: the journal's JSON leaves it out.
    const message = ledgerMessage(this.nextSeq(), this.author, e);
    this.effect({ type: "journal", message });
    return idOf(message);
  }

  event(type: string, data: Record<string, unknown>): void {
    this.effect({ type: "journal", message: eventMessage(this.nextSeq(), this.author, type, data) });
  }

  /** Credit spend since `fromMs`'s minute: what is stored plus what this step has spent so far. */
  spentSince(fromMs: number): number {
    const from = minuteOf(fromMs);
    let own = 0;
    for (const e of this.effects) if (e.type === "spend" && e.minute >= from) own += e.amount;
    return this.reads.spentSince(fromMs) + own;
  }

  spentInMinute(minute: number): number {
    let own = 0;
    for (const e of this.effects) if (e.type === "spend" && e.minute === minute) own += e.amount;
    return this.reads.spentInMinute(minute) + own;
  }
}

/** Takes one step: `op` on a copy of `state`. A refusal changes nothing, housekeeping included. */
export function takeStep<R extends { kind: string }>(
  state: AccountState,
  ctx: StepContext,
  reads: Reads,
  op: (d: Draft) => R,
): Step<R> {
  const d = new Draft(state, ctx, reads);
  const result = op(d);
  if (isRefused(result)) return { next: state, effects: [], result };
  return { next: d.state, effects: d.effects, result };
}
