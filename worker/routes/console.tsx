/**
 * The operator console (SPEC §10, docs/console.md): server-rendered pages under /console, signed into with
 * ADMIN_TOKEN. Plain Hono routes, left out of /openapi.json like the panel's form: they answer pages and redirects.
 *
 * - Sign-in gives a signed session cookie (worker/console/session.ts); every other page needs it (GET: a redirect to
 *   the sign-in page; POST: a 401 page), and every POST needs the session's CSRF token (else a 403 page, nothing done).
 * - Actions (resume, refund, global reset; an organization's pool resume and goodwill refund) have a confirmation
 *   screen (GET) whose form posts the action with a fresh nonce: the nonce is the Idempotency-Key, so a double submit
 *   has one effect. They call the same functions as the admin API (routes/admin.ts, the organization's object through
 *   http/org.ts as routes/orgs.ts does), recorded with the operator's name from sign-in, or `console`.
 * - Every answer, refusals, redirects and errors included, is a standards-mode page under CONSOLE_CSP,
 *   X-Frame-Options DENY, Cache-Control no-store and Referrer-Policy no-referrer.
 */
import { ledgerFor } from "../settlement/shards";
import { Hono, type Context } from "hono";
import { getCookie, setCookie } from "hono/cookie";
import type { JSX } from "hono/jsx/jsx-runtime";
import type { ContentfulStatusCode } from "hono/utils/http-status";
import type { Refusal } from "../core/refusals";
import { catalog, PLANS, PRODUCTS, type PlanId, type Product } from "../catalog";
import type { AppContext, AppEnv } from "../http/context";
import { account } from "../http/account";
import { org } from "../http/org";
import type { OrgView } from "../core/org";
import { tokenMatches } from "../http/context";
import { bodyOf } from "../http/reply";
import { base64 } from "../core/encoding";
import { ERROR_STATUS } from "../http/errors";
import { AccountId, GlobalResetBody, OrgParams } from "../schemas";
import { sweep } from "../settlement/reconciliation";
import { listGlobalResets, operatorOf, recordGlobalReset, refundAccount, resumeAccount } from "./admin";
import * as data from "../console/data";
import {
  AccountPage,
  credits,
  MessagePage,
  OrgPage,
  OrgRefundConfirmPage,
  OrgResumeConfirmPage,
  OverviewPage,
  parseCredits,
  RedirectPage,
  RefundConfirmPage,
  ResetConfirmPage,
  ResetFormPage,
  ResumeConfirmPage,
  SignInPage,
  STYLE,
  type Operator,
  type ResetChoice,
} from "../console/pages";
import {
  COOKIE_PATH,
  csrfToken,
  csrfValid,
  LOGIN_COOKIE,
  LOGIN_TTL_SECONDS,
  loginCsrfToken,
  loginCsrfValid,
  randomId,
  SESSION_COOKIE,
  SESSION_TTL_MS,
  signSession,
  verifySession,
  type Session,
} from "../console/session";

export const consoleRoutes = new Hono<AppEnv>();

type C = Context<AppEnv>;
type FormFields = Record<string, string | string[]>;

const LEDGER_PAGE = 25;

// ───────────────────────────── headers on every answer ─────────────────────────────

/** The one inline stylesheet is allowed by its hash: no 'unsafe-inline', no script at all. */
let styleHash: Promise<string> | undefined;
function consoleCsp(): Promise<string> {
  styleHash ??= crypto.subtle.digest("SHA-256", new TextEncoder().encode(STYLE)).then((d) => `'sha256-${base64(d)}'`);
  return styleHash.then(
    (h) => `default-src 'none'; style-src ${h}; form-action 'self'; base-uri 'none'; frame-ancestors 'none'`,
  );
}

// "/console/*" also matches "/console". Set after next(), so refusals, redirects and errors carry them too.
consoleRoutes.use("/console/*", async (c, next) => {
  await next();
  if (c.error) {
    // The app's onError has logged it (with the request id) and answered JSON: answer a page instead.
    const status = (c.res.status >= 400 ? c.res.status : 500) as ContentfulStatusCode;
    const requestId = c.get("requestId");
    c.res = undefined;
    c.res = new Response(
      await renderText(
        <MessagePage
          title={status >= 500 ? "Something went wrong" : "This request was refused"}
          message={`Nothing was done. Request id ${requestId}.`}
          link={{ href: "/console", text: "Back to the overview" }}
        />,
      ),
      { status, headers: { "Content-Type": "text/html; charset=UTF-8", "X-Request-Id": requestId } },
    );
  }
  const h = c.res.headers;
  h.set("Content-Security-Policy", await consoleCsp());
  h.set("X-Frame-Options", "DENY");
  h.set("Cache-Control", "no-store");
  h.set("Referrer-Policy", "no-referrer");
  h.set("X-Content-Type-Options", "nosniff");
});

const renderText = async (el: JSX.Element): Promise<string> => String(await el);
const page = (c: C, status: ContentfulStatusCode, el: JSX.Element) => c.html(el, status);
/** A 303 with a small page, so that even a redirect is a standards-mode document. */
const seeOther = (c: C, location: string) => c.html(<RedirectPage location={location} />, 303, { Location: location });

const cookieOptions = (c: C, maxAge: number) => ({
  path: COOKIE_PATH,
  httpOnly: true,
  sameSite: "Strict" as const,
  secure: new URL(c.req.url).protocol === "https:",
  maxAge,
});

const log = (c: C, event: string, fields: Record<string, unknown> = {}) =>
  console.log(JSON.stringify({ event: `console.${event}`, requestId: c.get("requestId"), ...fields }));

/** An urlencoded or multipart form, strings only, or null when the body is not a readable form. */
async function readForm(c: C): Promise<FormFields | null> {
  const type = (c.req.header("Content-Type") ?? "").split(";")[0].trim().toLowerCase();
  if (type !== "application/x-www-form-urlencoded" && type !== "multipart/form-data") return null;
  try {
    const body = await c.req.parseBody({ all: true });
    const out: FormFields = Object.create(null) as FormFields;
    for (const [k, v] of Object.entries(body)) {
      if (typeof v === "string") out[k] = v;
      else if (Array.isArray(v)) out[k] = v.filter((x): x is string => typeof x === "string");
    }
    return out;
  } catch {
    return null;
  }
}
const one = (form: FormFields, key: string): string | undefined => {
  const v = Object.hasOwn(form, key) ? form[key] : undefined;
  return typeof v === "string" ? v : v?.[0];
};
const many = (form: FormFields, key: string): string[] => {
  const v = Object.hasOwn(form, key) ? form[key] : undefined;
  return v === undefined ? [] : typeof v === "string" ? [v] : v;
};
/** A confirmation form's nonce (a UUID), or null. */
const nonceOf = (form: FormFields): string | null => {
  const n = one(form, "nonce");
  return n && /^[A-Za-z0-9-]{1,64}$/.test(n) ? n : null;
};

async function fingerprint(action: string, scope: string, payload: unknown): Promise<string> {
  const digest = await crypto.subtle.digest(
    "SHA-256",
    new TextEncoder().encode(`console ${action} ${scope}\n${JSON.stringify(payload)}`),
  );
  return [...new Uint8Array(digest)].map((b) => b.toString(16).padStart(2, "0")).join("");
}

// ───────────────────────────── sign-in ─────────────────────────────

const CLOSED = () => <SignInPage csrf={null} error="Sign-in is refused: ADMIN_TOKEN is not configured." />;

consoleRoutes.get("/console/sign-in", async (c) => {
  const token = c.env.ADMIN_TOKEN;
  if (!token) return page(c, 401, CLOSED());
  // The sign-in form has no session to bind its CSRF token to: it is bound to a random value in its own cookie.
  const loginId = randomId();
  setCookie(c, LOGIN_COOKIE, loginId, cookieOptions(c, LOGIN_TTL_SECONDS));
  return page(c, 200, <SignInPage csrf={await loginCsrfToken(token, loginId)} notice={c.req.query("notice")} />);
});

consoleRoutes.post("/console/sign-in", async (c) => {
  const token = c.env.ADMIN_TOKEN;
  if (!token) {
    log(c, "sign_in_refused", { why: "admin_token_not_configured" });
    return page(c, 401, CLOSED());
  }
  const form = await readForm(c);
  if (!form)
    return page(
      c,
      400,
      <MessagePage
        title="This form could not be read"
        message="Nothing was done. Reload the sign-in page and try again."
        link={{ href: "/console/sign-in", text: "Sign in" }}
      />,
    );
  const loginId = getCookie(c, LOGIN_COOKIE);
  if (!(await loginCsrfValid(token, loginId, one(form, "csrf")))) {
    log(c, "csrf_refused", { path: c.req.path });
    return page(
      c,
      403,
      <MessagePage
        title="Sign-in refused"
        message="This sign-in form's security token is missing or not valid, or the form is older than 30 minutes. Reload the sign-in page and try again."
        link={{ href: "/console/sign-in", text: "Sign in" }}
      />,
    );
  }
  const csrf = await loginCsrfToken(token, loginId!);
  if (!(await tokenMatches(one(form, "token") ?? "", token))) {
    log(c, "sign_in_refused", { why: "token_not_valid" });
    return page(c, 401, <SignInPage csrf={csrf} error="That token is not valid." />);
  }
  const name = (one(form, "name") ?? "").trim();
  if (name !== "" && !/^[\x20-\x7e]{1,64}$/.test(name))
    return page(
      c,
      400,
      <SignInPage csrf={csrf} error="A name is 1 to 64 printable ASCII characters. You are not signed in." />,
    );
  const session: Session = { sid: randomId(), exp: c.get("now") + SESSION_TTL_MS, ...(name ? { op: name } : {}) };
  setCookie(c, SESSION_COOKIE, await signSession(token, session), cookieOptions(c, SESSION_TTL_MS / 1000));
  setCookie(c, LOGIN_COOKIE, "", cookieOptions(c, 0));
  log(c, "sign_in", { operator: name || null, expiresAt: new Date(session.exp).toISOString() });
  return seeOther(c, "/console");
});

// ───────────────────────────── the session gate ─────────────────────────────

interface Signed {
  session: Session;
  op: Operator;
  form: FormFields | null;
}
const signedIn = new WeakMap<Request, Signed>();
const signed = (c: C): Signed => signedIn.get(c.req.raw)!;
/** Who did it, for the audit trail and the events: the name given at sign-in, or `console`. */
const operatorName = (c: C) => operatorOf(signed(c).session.op, "console");

consoleRoutes.use("/console/*", async (c, next) => {
  if (c.req.path === "/console/sign-in") return next();
  const token = c.env.ADMIN_TOKEN;
  const session = token ? await verifySession(token, getCookie(c, SESSION_COOKIE), c.get("now")) : null;
  if (!token || !session) {
    if (c.req.method === "GET" || c.req.method === "HEAD") return seeOther(c, "/console/sign-in");
    return page(
      c,
      401,
      <MessagePage
        title="You are not signed in"
        message="Your session has ended, or you are not signed in, so nothing was done. Sign in again, then retry."
        link={{ href: "/console/sign-in", text: "Sign in" }}
      />,
    );
  }
  let form: FormFields | null = null;
  if (c.req.method === "POST") {
    form = await readForm(c);
    if (!form)
      return page(
        c,
        400,
        <MessagePage
          title="This form could not be read"
          message="Nothing was done. Go back, reload the page and try again."
          link={{ href: "/console", text: "Back to the overview" }}
        />,
      );
    if (!(await csrfValid(token, session.sid, one(form, "csrf")))) {
      log(c, "csrf_refused", { path: c.req.path });
      return page(
        c,
        403,
        <MessagePage
          title="Refused: security token"
          message="This form's security token is missing or not valid, so nothing was done. Go back, reload the page and try again."
          link={{ href: "/console", text: "Back to the overview" }}
        />,
      );
    }
  }
  signedIn.set(c.req.raw, {
    session,
    form,
    op: { csrf: await csrfToken(token, session.sid), name: session.op ?? null, expiresAt: session.exp },
  });
  await next();
});

consoleRoutes.post("/console/sign-out", (c) => {
  setCookie(c, SESSION_COOKIE, "", cookieOptions(c, 0));
  log(c, "sign_out", { operator: signed(c).session.op ?? null });
  return seeOther(c, "/console/sign-in?notice=signed_out");
});

// ───────────────────────────── overview ─────────────────────────────

consoleRoutes.get("/console", async (c) => {
  const now = c.get("now");
  // Ledger views over every shard; the operator's tables (reconciliation runs, the reset audit) are on the first.
  const [paused, topHour, topDay, events, drift, resets] = await Promise.all([
    data.pausedAccounts(c.env),
    data.topSpenders(c.env, now, data.SPANS.hour),
    data.topSpenders(c.env, now, data.SPANS.day),
    data.recentEvents(c.env),
    data.latestReconciliation(c.env.DB),
    listGlobalResets(c.env.DB, 20),
  ]);
  return page(
    c,
    200,
    <OverviewPage
      op={signed(c).op}
      now={now}
      notice={c.req.query("notice")}
      paused={paused}
      topHour={topHour}
      topDay={topDay}
      events={events}
      drift={drift}
      resets={resets}
    />,
  );
});

// The sweep's next page, as the cron would check it: every account is reached within the sweep's period, and a
// request never checks more accounts than one page (each check is a call to an account object).
consoleRoutes.post("/console/reconciliation", async (c) => {
  const report = await sweep(c.env);
  log(c, "reconciliation", { operator: operatorName(c), checked: report.checked, drifted: report.drifted.length });
  return seeOther(c, "/console?notice=reconciled#drift");
});

// ───────────────────────────── accounts ─────────────────────────────

const accountHref = (id: string) => `/console/accounts/${encodeURIComponent(id)}`;
const problem = (
  c: C,
  status: ContentfulStatusCode,
  title: string,
  message: string,
  link = { href: "/console", text: "Back to the overview" },
) => page(c, status, <MessagePage title={title} message={message} link={link} />);

consoleRoutes.get("/console/accounts", (c) => {
  const id = (c.req.query("id") ?? "").trim();
  if (!AccountId.safeParse(id).success)
    return problem(c, 400, "No such account id", "Account ids are 1 to 128 letters, digits and _ . : - characters.");
  return seeOther(c, accountHref(id));
});

/** The account id of the path, or null if it is not one. */
const accountIdOf = (c: C): string | null => {
  const id = c.req.param("id") ?? "";
  return AccountId.safeParse(id).success ? id : null;
};

async function summaryOf(c: C, id: string) {
  return bodyOf((await account(c as AppContext, id).summary()).result);
}

consoleRoutes.get("/console/accounts/:id", async (c) => {
  const id = accountIdOf(c);
  if (!id) return problem(c, 404, "No such account", "That is not an account id.");
  const cursorQ = c.req.query("cursor");
  const limitQ = c.req.query("limit");
  const cursor = cursorQ && /^\d{1,15}$/.test(cursorQ) ? Number(cursorQ) : null;
  const limit =
    limitQ && /^\d{1,3}$/.test(limitQ) && Number(limitQ) >= 1 && Number(limitQ) <= 200 ? Number(limitQ) : LEDGER_PAGE;
  const db = ledgerFor(c.env, id);
  const [summary, ledger, events, settled] = await Promise.all([
    summaryOf(c, id),
    data.ledgerPage(db, id, cursor, limit),
    data.accountEvents(db, id),
    data.hasLedger(db, id),
  ]);
  const refunded = await data.refundedAgainst(
    db,
    id,
    ledger.entries.filter((e) => e.kind === "charge" || e.kind === "write_off").map((e) => e.id),
  );
  return page(
    c,
    200,
    <AccountPage
      op={signed(c).op}
      notice={c.req.query("notice")}
      summary={summary}
      ledger={{ ...ledger, cursor, limit, defaultLimit: LEDGER_PAGE }}
      refunded={refunded}
      events={events}
      settled={settled}
    />,
  );
});

// ── resume ──

async function resumeScreen(c: C, id: string, status: ContentfulStatusCode, error?: string) {
  const summary = await summaryOf(c, id);
  const pausedEvent = summary.paused
    ? ((await data.accountEvents(ledgerFor(c.env, id), id)).find((e) => e.type === "account.credits_paused") ?? null)
    : null;
  return page(
    c,
    status,
    <ResumeConfirmPage
      op={signed(c).op}
      accountId={id}
      paused={summary.paused}
      pausedEvent={pausedEvent}
      error={error}
    />,
  );
}

consoleRoutes.get("/console/accounts/:id/resume", async (c) => {
  const id = accountIdOf(c);
  if (!id) return problem(c, 404, "No such account", "That is not an account id.");
  return resumeScreen(c, id, 200);
});

consoleRoutes.post("/console/accounts/:id/resume", async (c) => {
  const id = accountIdOf(c);
  if (!id) return problem(c, 404, "No such account", "That is not an account id.");
  const nonce = nonceOf(signed(c).form!);
  if (!nonce)
    return resumeScreen(c, id, 400, "This form could not be read: nothing was done. Try again with the form below.");
  const operator = operatorName(c);
  const outcome = await resumeAccount(c as AppContext, id, operator, {
    key: `console:${nonce}`,
    fingerprint: await fingerprint("resume", id, {}),
  });
  const result = outcome.result;
  if (result.kind === "refused")
    return resumeScreen(c, id, ERROR_STATUS[result.refusal.code], refusalText(result.refusal));
  const resumed = result.body.resumed;
  log(c, "resume", { accountId: id, operator, resumed, replayed: outcome.replayed });
  return seeOther(c, `${accountHref(id)}?notice=${resumed ? "resumed" : "not_paused"}`);
});

// ── refund ──

/** A refusal from the account object, in words (its details where it gives them). */
function refusalText(error: Refusal): string {
  const d = error.details ?? {};
  switch (error.code) {
    case "entry_not_found":
      return "Refused: this account has no charge or write-off with that entry id. Nothing was done.";
    case "refund_exceeds_entry": {
      const amount = Number(d.entryAmount ?? 0);
      const refunded = Number(d.refunded ?? 0);
      return `Refused: that is more than is left to refund on this entry. It charged ${credits(amount)} credits; ${credits(refunded)} already refunded, so ${credits(Math.max(0, amount - refunded))} are left. Nothing was done.`;
    }
    case "amount_out_of_range":
      return "Refused: the account's credits would pass the largest amount the engine stores (2^53 − 1 micro-credits). Nothing was done.";
    case "idempotency_conflict":
      return "Refused: this form was already used for a different request (the same form, other values). Nothing more was done. Reload the page for a fresh form.";
    default:
      return `Refused (${error.code}): ${error.message} Nothing was done.`;
  }
}

consoleRoutes.get("/console/accounts/:id/refund", async (c) => {
  const id = accountIdOf(c);
  const entryId = c.req.query("entry") ?? "";
  const found =
    id && entryId.length >= 1 && entryId.length <= 128
      ? await data.refundableEntry(ledgerFor(c.env, id), id, entryId)
      : null;
  if (!id || !found)
    return problem(
      c,
      404,
      "No such ledger entry",
      "This account has no charge or write-off with that entry id in the ledger.",
      id ? { href: accountHref(id), text: "Back to the account" } : undefined,
    );
  return page(c, 200, <RefundConfirmPage op={signed(c).op} accountId={id} {...found} />);
});

consoleRoutes.post("/console/accounts/:id/refund", async (c) => {
  const id = accountIdOf(c);
  if (!id) return problem(c, 404, "No such account", "That is not an account id.");
  const form = signed(c).form!;
  const entryId = one(form, "entry") ?? "";
  const amountText = one(form, "amount") ?? "";
  const reason = (one(form, "reason") ?? "").trim();
  const validEntry = entryId.length >= 1 && entryId.length <= 128;
  // The page around a refusal: the entry as the ledger has it, or a plain message when the ledger does not have it.
  const refused = async (status: ContentfulStatusCode, error: string) => {
    const found = validEntry ? await data.refundableEntry(ledgerFor(c.env, id), id, entryId) : null;
    if (!found)
      return problem(c, status, "Refund against a ledger entry", error, {
        href: accountHref(id),
        text: "Back to the account",
      });
    return page(
      c,
      status,
      <RefundConfirmPage
        op={signed(c).op}
        accountId={id}
        {...found}
        amount={amountText}
        reason={reason}
        error={error}
      />,
    );
  };
  const nonce = nonceOf(form);
  if (!nonce || !validEntry)
    return refused(400, "This form could not be read: nothing was done. Reload the page and try again.");
  const amount = parseCredits(amountText);
  if (amount === null)
    return refused(
      400,
      "Enter an amount in credits above 0, with at most 6 decimals (for example 2.5). Nothing was done.",
    );
  if (reason === "" || reason.length > 500)
    return refused(400, "Give a reason of up to 500 characters: it is recorded with the refund. Nothing was done.");
  const body = { amount, reason, entryId };
  const outcome = await refundAccount(c as AppContext, id, body, {
    key: `console:${nonce}`,
    fingerprint: await fingerprint("refund", id, body),
  });
  const result = outcome.result;
  const refusal = result.kind === "refused" ? result.refusal : null;
  log(c, "refund", {
    accountId: id,
    entryId,
    amount,
    operator: operatorName(c),
    refused: refusal?.code ?? null,
    replayed: outcome.replayed,
  });
  if (refusal) return refused(ERROR_STATUS[refusal.code], refusalText(refusal));
  return seeOther(c, `${accountHref(id)}?notice=refunded`);
});

// ── global reset ──

/** The reset a form or query asks for, checked against the catalog and the admin API's schema. */
function resetChoice(
  products: string[],
  plans: string[],
  banked: string | undefined,
  reasonRaw: string | undefined,
): { choice: ResetChoice; error: string | null } {
  const reason = (reasonRaw ?? "").trim();
  const choice: ResetChoice = {
    products: PRODUCTS.filter((p) => products.includes(p)),
    plans: PLANS.filter((p) => plans.includes(p)),
    bankedResets: banked === "restore" ? "restore" : "keep",
    reason,
  };
  if (products.some((p) => !(PRODUCTS as readonly string[]).includes(p)))
    return { choice, error: `Products are ${PRODUCTS.join(", ")}.` };
  if (plans.some((p) => !(PLANS as readonly string[]).includes(p)))
    return { choice, error: `Plans are ${PLANS.join(", ")}.` };
  if (banked !== undefined && banked !== "keep" && banked !== "restore")
    return { choice, error: "Banked resets are kept or restored." };
  if (reason === "" || reason.length > 500)
    return { choice, error: "Give a reason of up to 500 characters: it is recorded in the audit trail." };
  return { choice, error: null };
}

function resetBody(choice: ResetChoice) {
  const scope = {
    ...(choice.products.length ? { products: choice.products as Product[] } : {}),
    ...(choice.plans.length ? { plans: choice.plans as PlanId[] } : {}),
  };
  return GlobalResetBody.parse({
    ...(Object.keys(scope).length ? { scope } : {}),
    bankedResets: choice.bankedResets,
    reason: choice.reason,
  });
}

consoleRoutes.get("/console/resets/new", (c) => page(c, 200, <ResetFormPage op={signed(c).op} />));

consoleRoutes.get("/console/resets/confirm", (c) => {
  const { choice, error } = resetChoice(
    c.req.queries("products") ?? [],
    c.req.queries("plans") ?? [],
    c.req.query("bankedResets"),
    c.req.query("reason"),
  );
  if (error) return page(c, 400, <ResetFormPage op={signed(c).op} choice={choice} error={error} />);
  return page(c, 200, <ResetConfirmPage op={signed(c).op} choice={choice} />);
});

consoleRoutes.post("/console/resets", async (c) => {
  const form = signed(c).form!;
  const { choice, error } = resetChoice(
    many(form, "products"),
    many(form, "plans"),
    one(form, "bankedResets"),
    one(form, "reason"),
  );
  if (error)
    return page(c, 400, <ResetFormPage op={signed(c).op} choice={choice} error={`${error} Nothing was done.`} />);
  const nonce = nonceOf(form);
  if (!nonce)
    return page(
      c,
      400,
      <ResetConfirmPage
        op={signed(c).op}
        choice={choice}
        error="This form could not be read: nothing was done. Try again with the form below."
      />,
    );
  const body = resetBody(choice);
  const operator = operatorName(c);
  let recorded: Awaited<ReturnType<typeof recordGlobalReset>>;
  try {
    recorded = await recordGlobalReset(c as AppContext, body, operator, {
      key: `console:${nonce}`,
      fingerprint: await fingerprint("global-reset", "global", body),
    });
  } catch (err) {
    if (err instanceof Error && (err as { code?: string }).code === "idempotency_conflict")
      return page(
        c,
        409,
        <ResetConfirmPage
          op={signed(c).op}
          choice={choice}
          error={refusalText({ code: "idempotency_conflict", message: err.message })}
        />,
      );
    throw err;
  }
  log(c, "global_reset", { resetId: recorded.resetId, operator, replayed: recorded.replayed });
  return seeOther(c, "/console?notice=reset_recorded");
});

// ───────────────────────────── organizations ─────────────────────────────

type Idempotency = NonNullable<AppEnv["Variables"]["idempotency"]>;

const orgHref = (id: string) => `/console/orgs/${encodeURIComponent(id)}`;
const NO_ORG = "That is not an organization id.";

/** The organization id of the path, or null if it is not one. */
const orgIdOf = (c: C): string | null => {
  const id = c.req.param("id") ?? "";
  return OrgParams.shape.orgId.safeParse(id).success ? id : null;
};

/**
 * Calls into the organization's object (worker/http/org.ts, as the organizations API does). An action carries the
 * form's nonce as its Idempotency-Key, set on the request as the API's middleware sets it.
 */
function orgOf(c: C, id: string, idempotency?: Idempotency) {
  if (idempotency) c.set("idempotency", idempotency);
  return org(c, id);
}

/** The organization as its object holds it now, or null if there is none. */
async function orgViewOf(c: C, id: string): Promise<OrgView | null> {
  const { result } = await orgOf(c, id).view();
  return result.kind === "refused" ? null : result.body;
}

const noSuchOrg = (c: C) =>
  problem(c, 404, "No such organization", "There is no organization with that id: it was never created.");

/** A refusal from the organization's object, in words. */
function poolRefusalText(error: Refusal): string {
  const d = error.details ?? {};
  switch (error.code) {
    case "goodwill_limit_exceeded":
      return `Refused: a refund to a pool is a goodwill credit of at most ${credits(Number(d.max ?? catalog.guards.maxGoodwillRefund))} credits. Nothing was done.`;
    case "amount_out_of_range":
      return "Refused: the pool's credits would pass the largest amount the engine stores (2^53 − 1 micro-credits). Nothing was done.";
    case "org_not_found":
      return "Refused: there is no organization with that id. Nothing was done.";
    default:
      return refusalText(error);
  }
}

consoleRoutes.get("/console/orgs", (c) => {
  const id = (c.req.query("id") ?? "").trim();
  if (!OrgParams.shape.orgId.safeParse(id).success)
    return problem(
      c,
      400,
      "No such organization id",
      "Organization ids are 1 to 128 letters, digits and _ . : - characters.",
    );
  return seeOther(c, orgHref(id));
});

consoleRoutes.get("/console/orgs/:id", async (c) => {
  const id = orgIdOf(c);
  if (!id) return problem(c, 404, "No such organization", NO_ORG);
  const [view, events] = await Promise.all([orgViewOf(c, id), data.poolEvents(c.env, id)]);
  if (!view) return noSuchOrg(c);
  return page(c, 200, <OrgPage op={signed(c).op} notice={c.req.query("notice")} org={view} events={events} />);
});

// ── resume a pool ──

async function orgResumeScreen(c: C, id: string, status: ContentfulStatusCode, error?: string) {
  const view = await orgViewOf(c, id);
  if (!view) return noSuchOrg(c);
  const pausedEvent = view.paused
    ? ((await data.poolEvents(c.env, id)).find((e) => e.type === "org.credits_paused") ?? null)
    : null;
  return page(
    c,
    status,
    <OrgResumeConfirmPage op={signed(c).op} orgId={id} paused={view.paused} pausedEvent={pausedEvent} error={error} />,
  );
}

consoleRoutes.get("/console/orgs/:id/resume", async (c) => {
  const id = orgIdOf(c);
  if (!id) return problem(c, 404, "No such organization", NO_ORG);
  return orgResumeScreen(c, id, 200);
});

consoleRoutes.post("/console/orgs/:id/resume", async (c) => {
  const id = orgIdOf(c);
  if (!id) return problem(c, 404, "No such organization", NO_ORG);
  const nonce = nonceOf(signed(c).form!);
  if (!nonce)
    return orgResumeScreen(c, id, 400, "This form could not be read: nothing was done. Try again with the form below.");
  const operator = operatorName(c);
  const outcome = await orgOf(c, id, {
    key: `console:${nonce}`,
    fingerprint: await fingerprint("org-resume", id, {}),
  }).resume(operator);
  const result = outcome.result;
  if (result.kind === "refused") {
    if (result.refusal.code === "org_not_found") return noSuchOrg(c);
    return orgResumeScreen(c, id, ERROR_STATUS[result.refusal.code], poolRefusalText(result.refusal));
  }
  const resumed = result.body.resumed;
  log(c, "org_resume", { orgId: id, operator, resumed, replayed: outcome.replayed });
  return seeOther(c, `${orgHref(id)}?notice=${resumed ? "pool_resumed" : "pool_not_paused"}`);
});

// ── goodwill refund to a pool ──

consoleRoutes.get("/console/orgs/:id/refund", async (c) => {
  const id = orgIdOf(c);
  if (!id) return problem(c, 404, "No such organization", NO_ORG);
  const view = await orgViewOf(c, id);
  if (!view) return noSuchOrg(c);
  return page(
    c,
    200,
    <OrgRefundConfirmPage
      op={signed(c).op}
      orgId={id}
      balance={view.pool.balance}
      max={catalog.guards.maxGoodwillRefund}
    />,
  );
});

consoleRoutes.post("/console/orgs/:id/refund", async (c) => {
  const id = orgIdOf(c);
  if (!id) return problem(c, 404, "No such organization", NO_ORG);
  const form = signed(c).form!;
  const amountText = one(form, "amount") ?? "";
  const reason = (one(form, "reason") ?? "").trim();
  const refused = async (status: ContentfulStatusCode, error: string) => {
    const view = await orgViewOf(c, id);
    if (!view) return noSuchOrg(c);
    return page(
      c,
      status,
      <OrgRefundConfirmPage
        op={signed(c).op}
        orgId={id}
        balance={view.pool.balance}
        max={catalog.guards.maxGoodwillRefund}
        amount={amountText}
        reason={reason}
        error={error}
      />,
    );
  };
  const nonce = nonceOf(form);
  if (!nonce) return refused(400, "This form could not be read: nothing was done. Reload the page and try again.");
  const amount = parseCredits(amountText);
  if (amount === null)
    return refused(
      400,
      "Enter an amount in credits above 0, with at most 6 decimals (for example 2.5). Nothing was done.",
    );
  if (reason === "" || reason.length > 500)
    return refused(400, "Give a reason of up to 500 characters: it is recorded with the refund. Nothing was done.");
  const body = { amount, reason };
  const outcome = await orgOf(c, id, {
    key: `console:${nonce}`,
    fingerprint: await fingerprint("org-refund", id, body),
  }).refund(body);
  const result = outcome.result;
  const refusal = result.kind === "refused" ? result.refusal : null;
  log(c, "org_refund", {
    orgId: id,
    amount,
    operator: operatorName(c),
    refused: refusal?.code ?? null,
    replayed: outcome.replayed,
  });
  if (refusal?.code === "org_not_found") return noSuchOrg(c);
  if (refusal) return refused(ERROR_STATUS[refusal.code], poolRefusalText(refusal));
  return seeOther(c, `${orgHref(id)}?notice=pool_refunded`);
});

// Anything else under /console: a page, not the API's JSON 404.
consoleRoutes.all("/console/*", (c) =>
  signedIn.has(c.req.raw)
    ? problem(c, 404, "Not found", "There is no such console page.")
    : page(
        c,
        404,
        <MessagePage
          title="Not found"
          message="There is no such console page."
          link={{ href: "/console/sign-in", text: "Sign in" }}
        />,
      ),
);
