import { runDurableObjectAlarm, runInDurableObject } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { expect } from "vitest";
import { account, CREDIT, call, consume, T0, uid } from "./helpers";

/** An organization with `credits` in its pool and `members` fresh accounts (on go: 2 codex credits a 5 h window). */
export async function orgWith(credits: number, members: number, now = T0) {
  const orgId = uid("org");
  const put = await call("PUT", `/v1/orgs/${orgId}`, { plan: "business", flexMonthlyLimit: 0 }, { now });
  expect(put.status).toBe(200);
  if (credits > 0)
    expect(
      (await call("POST", `/v1/orgs/${orgId}/credits`, { amount: credits, kind: "purchase" }, { now })).status,
    ).toBe(201);
  const ids: string[] = [];
  for (let i = 0; i < members; i++) {
    const id = uid("member");
    const r = await call("PUT", `/v1/orgs/${orgId}/members/${id}`, {}, { now });
    expect(r.status, JSON.stringify(r.body)).toBe(200);
    ids.push(id);
  }
  return { orgId, ids };
}

/** The organization's object, for RPCs the API does not expose (closing due leases at a given time). */
export const orgStub = (orgId: string) => env.ORG.get(env.ORG.idFromName(orgId));

/** The pool's numbers and every member's lease as the objects hold them now. */
export async function poolBook(orgId: string, members: string[], now: number) {
  // An issue in flight has left the pool and not yet reached its member; a close in flight has taken a member's rest
  // and not yet given it to the pool: read both sides only when neither is under way.
  await Promise.all(members.map((id) => env.ACCOUNT.get(env.ACCOUNT.idFromName(id)).leaseIdle()));
  await orgStub(orgId).idle();
  const view = await call("GET", `/v1/orgs/${orgId}`, undefined, { now });
  expect(view.status).toBe(200);
  let unspent = 0;
  let spent = 0;
  for (const id of members) {
    const a = await account(id, now);
    unspent += a.body.org?.lease ?? 0;
    spent += a.body.org?.spent ?? 0;
  }
  const { balance, leased, granted, expired } = view.body.pool;
  return { balance, leased, granted, expired, unspent, spent, view: view.body };
}

/**
 * I-pool across objects (SPEC §9): pool remaining + Σ members' open leases + Σ spent from the pool = Σ grants −
 * expiries; and the pool's own side: what it counts as out with members is their unspent plus spent.
 */
export async function expectPoolInvariant(orgId: string, members: string[], now: number) {
  const b = await poolBook(orgId, members, now);
  expect(b.balance + b.unspent + b.spent, JSON.stringify(b)).toBe(b.granted - b.expired);
  return b;
}

/** Runs the organization's alarm (its settlement check, and closes due) until the ledger holds its whole journal. */
export async function drainOrg(orgId: string, timeoutMs = 15_000) {
  const stub = orgStub(orgId);
  const position = () =>
    runInDurableObject(stub, (_i, state) => {
      const sql = state.storage.sql;
      const confirmed = sql.exec<{ n: number }>("SELECT confirmed AS n FROM settlement").toArray()[0]?.n ?? 0;
      const record = sql.exec<{ r: string }>("SELECT record AS r FROM org").toArray()[0]?.r;
      return { confirmed, lastSeq: record ? (JSON.parse(record) as { journalSeq: number }).journalSeq : 0 };
    });
  const deadline = Date.now() + timeoutMs;
  let at = await position();
  while (at.confirmed < at.lastSeq && Date.now() < deadline) {
    await runDurableObjectAlarm(stub);
    at = await position();
    if (at.confirmed < at.lastSeq) await new Promise((r) => setTimeout(r, 250));
  }
  return at;
}

/** What the pool paid of a decision: its sources with layer `pool`. */
export const poolPaid = (body: { sources?: { layer: string; amount: number }[] }) =>
  (body.sources ?? []).filter((s) => s.layer === "pool").reduce((s, x) => s + x.amount, 0);

/** Uses up a member's codex windows (2 credits on go), so what follows draws from the pool. */
export async function useWindows(id: string, now: number) {
  const r = await consume(id, { product: "codex", cost: 2 * CREDIT }, { now });
  expect(r.status).toBe(200);
  expect(poolPaid(r.body)).toBe(0);
}
