/**
 * An organization as its functional core sees it (SPEC §9): the pool's grants, its flex, its members and what each
 * holds as a lease. `OrgDraft` is one step's working copy, as `Draft` is for an account; the object's store writes
 * the difference.
 */
import type { GrantKind, PlanId, Product } from "../../catalog";
import type { GrantRecord } from "../account/state";
import type { LeaseClosed } from "../account/membership";
import {
  type EntryFields,
  eventMessage,
  idOf,
  type JournalAuthor,
  type JournalMessage,
  ledgerMessage,
} from "../journal";
import { minuteOf } from "../time";

export type OrgPlan = Extract<PlanId, "business" | "enterprise" | "edu">;
export const ORG_PLANS = ["business", "enterprise", "edu"] as const satisfies readonly OrgPlan[];

/** The ledger's account id of an organization's own journal: `/` is never in an account id, so it cannot collide. */
export const orgLedgerId = (orgId: string): string => `org/${orgId}`;
export const orgIdOfLedger = (ledgerId: string): string | null =>
  ledgerId.startsWith("org/") ? ledgerId.slice(4) : null;

export interface OrgRecord {
  orgId: string;
  plan: OrgPlan;
  /** null: the plan's */
  flexMonthlyLimit: number | null;
  flexMonth: string | null;
  /** flex leased out this month, less what came back */
  flexUsed: number;
  paused: boolean;
  resumedAt: number | null;
  /** spend already reported in the resume's minute when the operator resumed (it does not count again) */
  resumedDraws?: number;
  createdAt: number;
  journalSeq: number;
  /** lifetime pool grants (and refunds), and what of them expired: I-pool's right side */
  grantedTotal: number;
  expiredTotal: number;
  clockOffset: number;
}

/** What went out in one issue: the parts, to return if the member never takes it. */
export interface IssuedPart {
  grantId: string | null;
  amount: number;
}

export interface PoolMember {
  accountId: string;
  active: boolean;
  dailyLimit: number | null;
  monthlyLimit: number | null;
  /** issues numbered up to here went out */
  issued: number;
  lastIssue: { n: number; parts: IssuedPart[] } | null;
  /** grant credits out with the member (issued less returned): its open lease plus what it spent of it */
  leasedGrants: number;
  /** flex out with the member this month, the same way */
  leasedFlex: number;
  /** the member's pool spend as it last reported it (cumulative), and this day's and month's */
  spent: number;
  spentToday: number;
  spentThisMonth: number;
  reportedAt: number | null;
  /** when the lease is closed (its TTL after the last issue, or sooner); null when nothing is out */
  closeAt: number | null;
  /** a close asked of the member and not yet applied: asked again with the same id */
  closing: string | null;
}

export interface OrgState {
  org: OrgRecord | null;
  grants: GrantRecord[];
  members: Map<string, PoolMember>;
}

export const EMPTY_ORG: OrgState = { org: null, grants: [], members: new Map() };

export interface OrgContext {
  orgId: string;
  now: number;
  wallNow: number;
  idempotencyKey?: string;
}

/** History the org core asks for: the pool spend members reported, per minute (the pool's anomaly guard). */
export interface OrgReads {
  drawnSince(fromMs: number): number;
}

export type OrgEffect =
  | { type: "journal"; message: JournalMessage }
  | { type: "draw"; minute: number; amount: number }
  | { type: "wake"; at: number };

export interface PoolGrantRequest {
  amount: number;
  kind: GrantKind;
  expiresAt?: number;
  products?: Product[];
  priority?: number;
}

export type { LeaseClosed };

export class OrgDraft {
  readonly state: OrgState;
  readonly effects: OrgEffect[] = [];
  /** members changed in this step (the store writes only these rows) */
  readonly touched = new Set<string>();

  constructor(
    from: OrgState,
    readonly ctx: OrgContext,
    readonly reads: OrgReads,
  ) {
    this.state = {
      org: from.org && { ...from.org },
      grants: from.grants.map((g) => ({ ...g })),
      members: new Map(from.members),
    };
  }

  get now(): number {
    return this.ctx.now;
  }

  get org(): OrgRecord {
    const o = this.state.org;
    if (!o) throw new Error("organization step before it exists");
    return o;
  }

  update(patch: Partial<OrgRecord>): void {
    Object.assign(this.org, patch);
  }

  member(accountId: string): PoolMember | undefined {
    return this.state.members.get(accountId);
  }

  putMember(m: PoolMember): void {
    this.state.members.set(m.accountId, m);
    this.touched.add(m.accountId);
  }

  setGrant(g: GrantRecord): void {
    this.state.grants = this.state.grants.some((x) => x.id === g.id)
      ? this.state.grants.map((x) => (x.id === g.id ? g : x))
      : [...this.state.grants, g];
  }

  effect(e: OrgEffect): void {
    this.effects.push(e);
  }

  draw(amount: number): void {
    if (amount !== 0) this.effect({ type: "draw", minute: minuteOf(this.now), amount });
  }

  drawnSince(fromMs: number): number {
    const from = minuteOf(fromMs);
    let own = 0;
    for (const e of this.effects) if (e.type === "draw" && e.minute >= from) own += e.amount;
    return this.reads.drawnSince(fromMs) + own;
  }

  private nextSeq(): number {
    const seq = this.org.journalSeq + 1;
    this.update({ journalSeq: seq });
    return seq;
  }

  private get author(): JournalAuthor {
    const { orgId, now, wallNow, idempotencyKey } = this.ctx;
    return { owner: orgLedgerId(orgId), now, wallNow, idempotencyKey };
  }

  ledger(e: EntryFields): string {
    const message = ledgerMessage(this.nextSeq(), this.author, e);
    this.effect({ type: "journal", message });
    return idOf(message);
  }

  event(type: string, data: Record<string, unknown>): void {
    this.effect({ type: "journal", message: eventMessage(this.nextSeq(), this.author, type, data) });
  }
}

export interface OrgStep<R> {
  next: OrgState;
  effects: OrgEffect[];
  touched: Set<string>;
  result: R;
}
