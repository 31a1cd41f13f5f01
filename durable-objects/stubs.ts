/**
 * The one place product code makes Durable Object stubs. The generated `Env` types each namespace with its class,
 * so the stubs are typed without casts. (Tests may make their own.)
 */

/** The object that owns one account: its windows, grants, holds, idempotency records and outbox. */
export function accountObject(env: Env, accountId: string) {
  return env.ACCOUNT.get(env.ACCOUNT.idFromName(accountId));
}

/** The object that owns one organization's pool: its grants, flex, members and leases (SPEC §9). */
export function orgObject(env: Env, orgId: string) {
  return env.ORG.get(env.ORG.idFromName(orgId));
}

/** The single global object that records every admin global reset (SPEC §5). */
export function resetControl(env: Env) {
  return env.RESET_CONTROL.get(env.RESET_CONTROL.idFromName("global"));
}
