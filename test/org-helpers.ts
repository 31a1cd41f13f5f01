import { expect } from "vitest";
import { call, T0, uid } from "./helpers";

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
