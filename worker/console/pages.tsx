/**
 * The operator console's pages (docs/console.md): server-rendered, no script, one inline stylesheet allowed by its
 * hash (routes/console.tsx), no style attributes. Every state-changing form carries the session's CSRF token; every
 * action form a fresh nonce, its idempotency key.
 */
import { raw } from "hono/html";
import type { Child, FC } from "hono/jsx";
import type { z } from "@hono/zod-openapi";
import { PLANS, PRODUCTS } from "../catalog";
import type { AccountSummary } from "../schemas";
import type { OrgView } from "../core/org";
import type { GlobalResetView } from "../routes/admin";
import type { DriftRun, EventView, LedgerRowView, PausedAccount, Spender } from "./data";

type Summary = z.infer<typeof AccountSummary>;

// ───────────────────────────── formatting ─────────────────────────────

const creditFormat = new Intl.NumberFormat("en-US", { minimumFractionDigits: 2, maximumFractionDigits: 6 });
/** Micro-credits as credits, at least two decimals and every significant one: 3_000_000 → "3.00", 1 → "0.000001". */
export const credits = (micro: number): string => creditFormat.format(micro / 1_000_000);
/** Micro-credits as a form value in credits, without grouping or trailing zeros: 3_500_000 → "3.5". */
export function creditsInput(micro: number): string {
  const whole = Math.floor(micro / 1_000_000);
  const frac = String(micro % 1_000_000)
    .padStart(6, "0")
    .replace(/0+$/, "");
  return frac ? `${whole}.${frac}` : String(whole);
}
/** A form value in credits as micro-credits, exactly (no floating point), or null if it is not a positive amount. */
export function parseCredits(text: string): number | null {
  const m = /^\s*(\d{1,10})(?:\.(\d{1,6}))?\s*$/.exec(text);
  if (!m) return null;
  const micro = Number(m[1]) * 1_000_000 + Number((m[2] ?? "").padEnd(6, "0"));
  return micro > 0 && Number.isSafeInteger(micro) ? micro : null;
}
/** An instant in UTC, to the second. */
export const utc = (ms: number): string => `${new Date(ms).toISOString().slice(0, 19).replace("T", " ")} UTC`;
const utcIso = (iso: string | null): string => (iso ? utc(Date.parse(iso)) : "—");
const accountHref = (id: string) => `/console/accounts/${encodeURIComponent(id)}`;
const num = (v: unknown): number | null => (typeof v === "number" && Number.isFinite(v) ? v : null);
const str = (v: unknown): string | null => (typeof v === "string" ? v : null);

/** One line about an event, from its data. */
export function describeEvent(type: string, data: Record<string, unknown>): string {
  const c = (v: unknown) => (num(v) === null ? "?" : credits(num(v)!));
  switch (type) {
    case "account.credits_paused":
      return `spent ${c(data.trailingSpend)} in the trailing window; ${c(data.attempted)} more would pass the threshold of ${c(data.threshold)} credits`;
    case "account.credits_resumed":
      return `resumed by ${str(data.operator) ?? "?"}`;
    case "topup.requested":
      return `${c(data.amount)} credits requested (top-up ${str(data.topUpId) ?? "?"})`;
    case "credits.depleted":
      return "the credit balance reached 0";
    case "credits.low":
      return `balance ${c(data.balance)}, below ${c(data.threshold)} credits`;
    case "credits.expired":
      return `${c(data.amount)} credits of grant ${str(data.grantId) ?? "?"} expired`;
    case "window.exhausted":
      return `${str(data.product) ?? "?"} ${data.window === "fiveHour" ? "5-hour" : data.window === "weekly" ? "weekly" : "?"} window used up${str(data.resetsAt) ? `, until ${utcIso(str(data.resetsAt))}` : ""}`;
    case "org.credits_paused":
      return `members spent ${c(data.trailingSpend)} from the pool in the trailing window; ${c(data.attempted)} more would pass the threshold of ${c(data.threshold)} credits`;
    case "org.credits_resumed":
      return `pool resumed by ${str(data.operator) ?? "?"}`;
    case "reset.applied":
      return `${data.global ? `global reset ${str(data.resetId) ?? "?"}` : `banked reset on ${str(data.product) ?? "?"}`} forgave ${c(data.forgiven)} credits of window usage`;
    default: {
      const text = JSON.stringify(data);
      return text.length > 200 ? `${text.slice(0, 199)}…` : text;
    }
  }
}

// ───────────────────────────── layout ─────────────────────────────

/** The one stylesheet; routes/console.tsx allows exactly this text by its SHA-256 in the CSP. */
export const STYLE = `
*{box-sizing:border-box}body{margin:0;font:16px/1.5 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:#1a1a1a;background:#f6f7f9}
a{color:#0b4f96}a:focus,button:focus,input:focus,select:focus{outline:3px solid #0b4f96;outline-offset:2px}
header.top{background:#1f2937;color:#fff;padding:8px 16px}header.top a{color:#fff}
.top-inner{max-width:1200px;margin:0 auto;display:flex;flex-wrap:wrap;gap:8px 24px;align-items:center;justify-content:space-between}
.brand{font-weight:700;margin:0}nav ul{list-style:none;margin:0;padding:0;display:flex;gap:16px;flex-wrap:wrap;align-items:center}
header.top form{display:flex;gap:6px;align-items:center;margin:0}header.top label{color:#fff}
header.top input{width:14em}.who{font-size:.875rem;color:#e5e7eb;margin:0}
main{max-width:1200px;margin:0 auto;padding:16px}h1{font-size:1.5rem;margin:.3em 0 .6em}h2{font-size:1.2rem;margin:0 0 .5em}h3{font-size:1.05rem;margin:.8em 0 .4em}
section{background:#fff;border:1px solid #d0d4da;border-radius:8px;padding:16px;margin:12px 0}
.small{font-size:.875rem;color:#3d4451}.notice{border:1px solid #0b5cad;background:#eef4fb;border-radius:8px;padding:10px 14px}
.error{border:1px solid #b3261e;background:#fdf0ef;color:#6b1612;border-radius:8px;padding:10px 14px}
table{width:100%;border-collapse:collapse;font-size:.9rem}caption{text-align:left;font-weight:600;padding:4px 0}
th,td{text-align:left;padding:5px 6px;border-bottom:1px solid #e3e6ea;vertical-align:top;overflow-wrap:anywhere}th{background:#f1f3f5}
td.num,th.num{text-align:right;white-space:nowrap}code{font-size:.85em}
.badge{display:inline-block;border-radius:4px;padding:0 6px;font-weight:600}.bad{background:#fdecea;color:#8a1c1c}.good{background:#e6f4ea;color:#0d5223}
dl.facts{display:grid;grid-template-columns:max-content 1fr;gap:4px 16px;margin:0}dl.facts dt{font-weight:600}dl.facts dd{margin:0;overflow-wrap:anywhere}
form.stack{display:grid;gap:10px;max-width:36em}form.stack label{font-weight:600}input,select{font:inherit;padding:6px;border:1px solid #6b7280;border-radius:4px}
fieldset{border:1px solid #d0d4da;border-radius:6px;padding:8px 12px}legend{font-weight:600;padding:0 4px}fieldset label{font-weight:400;margin-right:14px}
button{display:inline-block;background:#0b5cad;color:#fff;border:0;border-radius:6px;padding:8px 14px;font:inherit;cursor:pointer}
button.danger{background:#b3261e}button.link{background:none;color:#fff;padding:0;text-decoration:underline}
.actions{display:flex;gap:16px;align-items:center;flex-wrap:wrap}.pager{display:flex;gap:16px;margin-top:8px}
.grid2{display:grid;grid-template-columns:repeat(auto-fit,minmax(320px,1fr));gap:0 24px}
.sr-only{position:absolute;width:1px;height:1px;overflow:hidden;clip:rect(0 0 0 0);white-space:nowrap}
`;

const Document: FC<{ title: string; children?: Child }> = ({ title, children }) => (
  <>
    {raw("<!doctype html>")}
    <html lang="en">
      <head>
        <meta charset="utf-8" />
        <meta name="viewport" content="width=device-width, initial-scale=1" />
        <meta name="referrer" content="no-referrer" />
        <title>{`${title} · Operator console`}</title>
        <style>{raw(STYLE)}</style>
      </head>
      <body>{children}</body>
    </html>
  </>
);

/** Who is signed in, for the header and every form. */
export interface Operator {
  csrf: string;
  name: string | null;
  expiresAt: number;
}

const Csrf: FC<{ op: Operator }> = ({ op }) => <input type="hidden" name="csrf" value={op.csrf} />;
const Nonce: FC = () => <input type="hidden" name="nonce" value={crypto.randomUUID()} />;

// A Map, not an object: `notice` comes from the query, and "constructor" or "__proto__" must not match.
const NOTICES = new Map<string, string>([
  ["resumed", "Credit spending was resumed. The anomaly guard's trailing window counts from now."],
  ["not_paused", "The account was not paused: nothing changed."],
  [
    "refunded",
    "The refund was recorded: a compensating purchase grant was added, and a refund entry (in the ledger below within a second or two).",
  ],
  ["reset_recorded", "The global reset was recorded. It is in effect everywhere within a few seconds."],
  ["reconciled", "Reconciliation ran: the drift report below is the new one."],
  ["signed_out", "You are signed out."],
  ["pool_resumed", "Pool spending was resumed. The pool's anomaly guard counts its trailing window from now."],
  ["pool_not_paused", "The pool was not paused: nothing changed."],
  [
    "pool_refunded",
    "The refund was recorded: a new pool grant was added, and a refund entry in the organization's ledger.",
  ],
]);

const Notice: FC<{ notice?: string }> = ({ notice }) => {
  const text = notice === undefined ? undefined : NOTICES.get(notice);
  return text ? (
    <p role="status" class="notice">
      {text}
    </p>
  ) : null;
};

const ErrorBox: FC<{ error?: string | null }> = ({ error }) =>
  error ? (
    <p role="alert" class="error">
      {error}
    </p>
  ) : null;

/** Every signed-in page: the banner (navigation, account lookup, sign-out) and the main landmark with the page's h1. */
const Shell: FC<{ title: string; op: Operator; notice?: string; error?: string | null; children?: Child }> = ({
  title,
  op,
  notice,
  error,
  children,
}) => (
  <Document title={title}>
    <header class="top">
      <div class="top-inner">
        <p class="brand">Usage engine · operator console</p>
        <nav aria-label="Console">
          <ul>
            <li>
              <a href="/console">Incident overview</a>
            </li>
            <li>
              <a href="/console/resets/new">Global reset</a>
            </li>
          </ul>
        </nav>
        {/* biome-ignore lint/a11y/useSemanticElements: the <search> element is not in every browser operators use; the role says the same */}
        <form role="search" aria-label="Account lookup" method="get" action="/console/accounts">
          <label for="lookup">Account id</label>
          <input id="lookup" name="id" type="search" required maxlength={128} autocomplete="off" />
          <button type="submit">Look up</button>
        </form>
        {/* biome-ignore lint/a11y/useSemanticElements: as above */}
        <form role="search" aria-label="Organization lookup" method="get" action="/console/orgs">
          <label for="org-lookup">Organization id</label>
          <input id="org-lookup" name="id" type="search" required maxlength={128} autocomplete="off" />
          <button type="submit">Look up</button>
        </form>
        <form method="post" action="/console/sign-out">
          <Csrf op={op} />
          <p class="who">
            Signed in{op.name ? ` as ${op.name}` : ""} until {utc(op.expiresAt)}
          </p>
          <button type="submit" class="link">
            Sign out
          </button>
        </form>
      </div>
    </header>
    <main>
      <h1>{title}</h1>
      <Notice notice={notice} />
      <ErrorBox error={error} />
      {children}
    </main>
  </Document>
);

/** Pages without a session (sign-in, refusals): the banner without navigation. */
const Bare: FC<{ title: string; children?: Child }> = ({ title, children }) => (
  <Document title={title}>
    <header class="top">
      <div class="top-inner">
        <p class="brand">Usage engine · operator console</p>
      </div>
    </header>
    <main>
      <h1>{title}</h1>
      {children}
    </main>
  </Document>
);

// ───────────────────────────── sign-in and plain pages ─────────────────────────────

export const SignInPage: FC<{ csrf: string | null; error?: string | null; notice?: string }> = ({
  csrf,
  error,
  notice,
}) => (
  <Bare title="Sign in">
    <Notice notice={notice} />
    <ErrorBox error={error} />
    {csrf === null ? (
      <p>The console is closed: ADMIN_TOKEN is not configured on this engine, so nobody can sign in.</p>
    ) : (
      <section aria-labelledby="h-sign-in">
        <h2 id="h-sign-in">Operator sign-in</h2>
        <form class="stack" method="post" action="/console/sign-in">
          <input type="hidden" name="csrf" value={csrf} />
          <label for="token">Admin token</label>
          <input id="token" name="token" type="password" required autocomplete="off" maxlength={512} />
          <label for="name">Your name (optional, recorded as the operator of your actions)</label>
          <input id="name" name="name" type="text" maxlength={64} autocomplete="nickname" />
          <div>
            <button type="submit">Sign in</button>
          </div>
          <p class="small">The session lasts 8 hours. The token is checked once and never stored in your browser.</p>
        </form>
      </section>
    )}
  </Bare>
);

/** A refusal or a plain message: no session needed. */
export const MessagePage: FC<{ title: string; message: string; link?: { href: string; text: string } }> = ({
  title,
  message,
  link,
}) => (
  <Bare title={title}>
    <p role="alert" class="error">
      {message}
    </p>
    {link ? (
      <p>
        <a href={link.href}>{link.text}</a>
      </p>
    ) : null}
  </Bare>
);

/** The body of a 303: browsers follow the Location header; this is for anything that does not. */
export const RedirectPage: FC<{ location: string }> = ({ location }) => (
  <Bare title="Redirecting">
    <p>
      Continue to <a href={location}>{location}</a>.
    </p>
  </Bare>
);

// ───────────────────────────── overview ─────────────────────────────

export interface OverviewProps {
  op: Operator;
  now: number;
  notice?: string;
  paused: PausedAccount[];
  topHour: Spender[];
  topDay: Spender[];
  events: EventView[];
  drift: DriftRun | null;
  resets: GlobalResetView[];
}

const SpendersTable: FC<{ rows: Spender[]; span: "hour" | "day"; caption: string }> = ({ rows, span, caption }) =>
  rows.length === 0 ? (
    <p class="small">No credit spend in the {span === "hour" ? "last hour" : "last day"}.</p>
  ) : (
    <table>
      <caption>{caption}</caption>
      <thead>
        <tr>
          <th scope="col">Account</th>
          <th scope="col" class="num">
            Credits spent
          </th>
          <th scope="col" class="num">
            Charges
          </th>
          <th scope="col">Latest</th>
        </tr>
      </thead>
      <tbody>
        {rows.map((r) => (
          <tr data-testid={`top-${span}-row`}>
            <td>
              <a href={accountHref(r.accountId)}>{r.accountId}</a>
            </td>
            <td class="num">{credits(r.spent)}</td>
            <td class="num">{r.charges}</td>
            <td>{utc(r.lastAt)}</td>
          </tr>
        ))}
      </tbody>
    </table>
  );

const scopeText = (scope: { products?: string[] | null; plans?: string[] | null }) =>
  `${scope.products?.length ? scope.products.join(", ") : "all products"} · ${scope.plans?.length ? scope.plans.join(", ") : "all plans"}`;

export const OverviewPage: FC<OverviewProps> = ({
  op,
  now,
  notice,
  paused,
  topHour,
  topDay,
  events,
  drift,
  resets,
}) => (
  <Shell title="Incident overview" op={op} notice={notice}>
    <p class="small">
      As of {utc(now)}. Cross-account figures come from the D1 ledger and events, which trail the accounts by the
      settlement queue (a second or two).
    </p>
    <section aria-labelledby="h-paused">
      <h2 id="h-paused">Paused by the anomaly guard</h2>
      {paused.length === 0 ? (
        <p class="small">No account is paused.</p>
      ) : (
        <table>
          <caption>Accounts whose latest pause has not been resumed, most recent first</caption>
          <thead>
            <tr>
              <th scope="col">Account</th>
              <th scope="col">Paused at</th>
              <th scope="col">Why</th>
              <th scope="col">Action</th>
            </tr>
          </thead>
          <tbody>
            {paused.map((p) => (
              <tr data-testid="paused-row">
                <td>
                  <a href={accountHref(p.accountId)}>{p.accountId}</a>
                </td>
                <td>{utc(p.pausedAt)}</td>
                <td>{describeEvent("account.credits_paused", p.data)}</td>
                <td>
                  <a href={`${accountHref(p.accountId)}/resume`}>
                    Resume<span class="sr-only"> {p.accountId}</span>…
                  </a>
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
    </section>
    <section aria-labelledby="h-top">
      <h2 id="h-top">Top credit spenders</h2>
      <p class="small">
        Charges paid by credit grants or flex overage, summed per account. Window usage is not credit spend.
      </p>
      <div class="grid2">
        <div>
          <h3>Last hour</h3>
          <SpendersTable rows={topHour} span="hour" caption="Top spenders, last hour" />
        </div>
        <div>
          <h3>Last day</h3>
          <SpendersTable rows={topDay} span="day" caption="Top spenders, last 24 hours" />
        </div>
      </div>
    </section>
    <section aria-labelledby="h-events">
      <h2 id="h-events">Recent guard and top-up events</h2>
      {events.length === 0 ? (
        <p class="small">No anomaly pause, resume, top-up request or depleted balance recorded.</p>
      ) : (
        <table>
          <caption>Anomaly pauses and resumes, top-up requests and depleted balances, newest first</caption>
          <thead>
            <tr>
              <th scope="col">When</th>
              <th scope="col">Event</th>
              <th scope="col">Account</th>
              <th scope="col">Details</th>
            </tr>
          </thead>
          <tbody>
            {events.map((e) => (
              <tr data-testid="event-row">
                <td>{utc(e.createdAt)}</td>
                <td>
                  <code>{e.type}</code>
                </td>
                <td>
                  <a href={accountHref(e.accountId)}>{e.accountId}</a>
                </td>
                <td>{describeEvent(e.type, e.data)}</td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
    </section>
    <section aria-labelledby="h-drift" id="drift">
      <h2 id="h-drift">Reconciliation drift</h2>
      {drift === null ? (
        <p class="small" data-testid="drift-summary">
          No reconciliation has run yet.
        </p>
      ) : (
        <>
          <p data-testid="drift-summary">
            Last check {utc(drift.ranAt)}: checked {drift.checked} {drift.checked === 1 ? "account" : "accounts"},{" "}
            {drift.drifted.length} drifted.
          </p>
          {drift.drifted.length > 0 ? (
            <table>
              <caption>
                Accounts whose object and ledger differ (entries still in flight can show here until they settle)
              </caption>
              <thead>
                <tr>
                  <th scope="col">Account</th>
                  <th scope="col" class="num">
                    Credits, object
                  </th>
                  <th scope="col" class="num">
                    Credits, ledger
                  </th>
                  <th scope="col" class="num">
                    Charged, object
                  </th>
                  <th scope="col" class="num">
                    Charged, ledger
                  </th>
                  <th scope="col">Sequence range</th>
                </tr>
              </thead>
              <tbody>
                {drift.drifted.map((d) => (
                  <tr data-testid="drift-row">
                    <td>
                      <a href={accountHref(d.accountId)}>{d.accountId}</a>
                    </td>
                    <td class="num">{credits(d.expected)}</td>
                    <td class="num">{credits(d.actual)}</td>
                    <td class="num">{credits(d.chargedExpected)}</td>
                    <td class="num">{credits(d.chargedActual)}</td>
                    <td>
                      {d.fromSeq}–{d.toSeq}
                    </td>
                  </tr>
                ))}
              </tbody>
            </table>
          ) : null}
        </>
      )}
      <form method="post" action="/console/reconciliation">
        <Csrf op={op} />
        <button type="submit">Check the sweep's next page of accounts now</button>
      </form>
    </section>
    <section aria-labelledby="h-resets" id="resets">
      <h2 id="h-resets">Global reset history</h2>
      {resets.length === 0 ? (
        <p class="small">No global reset has been run.</p>
      ) : (
        <table>
          <caption>Global resets, newest first (the audit trail)</caption>
          <thead>
            <tr>
              <th scope="col">Effective</th>
              <th scope="col">Scope</th>
              <th scope="col">Banked resets</th>
              <th scope="col">Reason</th>
              <th scope="col">Operator</th>
            </tr>
          </thead>
          <tbody>
            {resets.map((r) => (
              <tr data-testid="reset-row">
                <td>{utcIso(r.effectiveAt)}</td>
                <td>{scopeText(r.scope)}</td>
                <td>
                  {r.bankedResets}
                  {r.grantBankedResets
                    ? `, +${r.grantBankedResets.count} for ${r.grantBankedResets.expiresInHours} h`
                    : ""}
                </td>
                <td>{r.reason}</td>
                <td>{r.actor}</td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
      <p>
        <a href="/console/resets/new">Run a global reset…</a>
      </p>
    </section>
  </Shell>
);

// ───────────────────────────── account ─────────────────────────────

export interface AccountPageProps {
  op: Operator;
  notice?: string;
  summary: Summary;
  ledger: {
    entries: LedgerRowView[];
    nextCursor: number | null;
    cursor: number | null;
    limit: number;
    defaultLimit: number;
  };
  refunded: Map<string, number>;
  events: EventView[];
  settled: boolean;
}

/** Credit grants in burn-down order: an account's, or an organization pool's. */
const GrantsTable: FC<{
  grants: readonly {
    id: string;
    kind: string;
    priority: number;
    remaining: number;
    expiresAt: string | null;
    products: readonly string[] | null;
  }[];
  caption: string;
  testid?: string;
}> = ({ grants, caption, testid }) => (
  <table>
    <caption>{caption}</caption>
    <thead>
      <tr>
        <th scope="col">Grant</th>
        <th scope="col">Kind</th>
        <th scope="col" class="num">
          Priority
        </th>
        <th scope="col" class="num">
          Remaining
        </th>
        <th scope="col">Expires</th>
        <th scope="col">Products</th>
      </tr>
    </thead>
    <tbody>
      {grants.map((g) => (
        <tr data-testid={testid}>
          <td>
            <code>{g.id}</code>
          </td>
          <td>{g.kind}</td>
          <td class="num">{g.priority}</td>
          <td class="num">{credits(g.remaining)}</td>
          <td>{utcIso(g.expiresAt)}</td>
          <td>{g.products ? g.products.join(", ") : "all"}</td>
        </tr>
      ))}
    </tbody>
  </table>
);

/** Settled events, newest first: an account's, or an organization pool's. */
const EventsTable: FC<{ events: EventView[]; caption: string; testid: string }> = ({ events, caption, testid }) => (
  <table>
    <caption>{caption}</caption>
    <thead>
      <tr>
        <th scope="col">When</th>
        <th scope="col">Event</th>
        <th scope="col">Details</th>
      </tr>
    </thead>
    <tbody>
      {events.map((e) => (
        <tr data-testid={testid}>
          <td>{utc(e.createdAt)}</td>
          <td>
            <code>{e.type}</code>
          </td>
          <td>{describeEvent(e.type, e.data)}</td>
        </tr>
      ))}
    </tbody>
  </table>
);

export const AccountPage: FC<AccountPageProps> = ({ op, notice, summary: s, ledger, refunded, events, settled }) => {
  const id = s.accountId;
  const base = accountHref(id);
  const limitQ = ledger.limit === ledger.defaultLimit ? "" : `&limit=${ledger.limit}`;
  return (
    <Shell title={`Account ${id}`} op={op} notice={notice}>
      <section aria-labelledby="h-summary">
        <h2 id="h-summary">Summary</h2>
        <p class="small">Live from the account object.</p>
        <dl class="facts">
          <dt>Plan</dt>
          <dd data-testid="account-plan">{s.plan}</dd>
          <dt>Credit spending</dt>
          <dd>
            {s.paused ? (
              <strong class="badge bad" data-testid="account-paused">
                Paused
              </strong>
            ) : (
              <strong class="badge good" data-testid="account-paused">
                Not paused
              </strong>
            )}
            {s.paused ? (
              <>
                {" "}
                <a href={`${base}/resume`}>Resume credit spending…</a>
              </>
            ) : null}
          </dd>
          <dt>Balance</dt>
          <dd>
            <span data-testid="account-balance">{credits(s.credits.balance)}</span> credits
          </dd>
          <dt>Spend cap</dt>
          <dd>
            {s.spendCap
              ? `${credits(s.spendCap.spentToday)} of ${credits(s.spendCap.dailyLimit)} credits spent today (UTC)`
              : "none"}
          </dd>
          <dt>Flex overage</dt>
          <dd>
            {s.credits.flex
              ? `${credits(s.credits.flex.used)} of ${credits(s.credits.flex.limit)} credits this month`
              : "not on this plan"}
          </dd>
          <dt>Auto top-up</dt>
          <dd>
            {s.credits.autoTopUp.enabled
              ? `on: ${credits(s.credits.autoTopUp.amount)} credits below ${credits(s.credits.autoTopUp.threshold)}, at most ${s.credits.autoTopUp.maxPerMonth} a month`
              : "off"}
            {s.credits.autoTopUp.pending
              ? `; pending ${s.credits.autoTopUp.pending.topUpId} since ${utcIso(s.credits.autoTopUp.pending.requestedAt)}`
              : ""}
          </dd>
          <dt>Banked resets</dt>
          <dd>
            {s.bankedResets.available} of {s.bankedResets.max} available
          </dd>
        </dl>
        <table>
          <caption>Windows</caption>
          <thead>
            <tr>
              <th scope="col">Product</th>
              <th scope="col">Window</th>
              <th scope="col" class="num">
                Used
              </th>
              <th scope="col" class="num">
                Limit
              </th>
              <th scope="col" class="num">
                Remaining
              </th>
              <th scope="col">Resets at</th>
            </tr>
          </thead>
          <tbody>
            {PRODUCTS.flatMap((p) =>
              (["fiveHour", "weekly"] as const).map((w) => {
                const v = s.products[p][w];
                return (
                  <tr>
                    <td>{p}</td>
                    <td>{w === "fiveHour" ? "5-hour" : "weekly"}</td>
                    <td class="num">{credits(v.used)}</td>
                    <td class="num">{credits(v.limit)}</td>
                    <td class="num">{credits(v.remaining)}</td>
                    <td>{v.resetsAt ? utcIso(v.resetsAt) : "not open"}</td>
                  </tr>
                );
              }),
            )}
          </tbody>
        </table>
        <h3>Grants</h3>
        {s.credits.grants.length === 0 ? (
          <p class="small">No credit grants.</p>
        ) : (
          <GrantsTable grants={s.credits.grants} caption="Credit grants, in burn-down order" />
        )}
        <h3>Holds</h3>
        {s.holds.length === 0 ? (
          <p class="small">No active holds.</p>
        ) : (
          <table>
            <caption>Active holds</caption>
            <thead>
              <tr>
                <th scope="col">Hold</th>
                <th scope="col">Product</th>
                <th scope="col" class="num">
                  Reserved
                </th>
                <th scope="col">Expires</th>
              </tr>
            </thead>
            <tbody>
              {s.holds.map((h) => (
                <tr data-testid="hold-row">
                  <td>
                    <code>{h.holdId}</code>
                  </td>
                  <td>{h.product}</td>
                  <td class="num">{credits(h.amount)}</td>
                  <td>{utcIso(h.expiresAt)}</td>
                </tr>
              ))}
            </tbody>
          </table>
        )}
      </section>
      <section aria-labelledby="h-ledger">
        <h2 id="h-ledger">Ledger</h2>
        <p class="small">
          Settled entries from D1, newest first. A charge paid by credits, or a write-off, can be refunded against.
        </p>
        {ledger.entries.length === 0 ? (
          <p class="small">
            {settled ? "No more ledger entries." : "No ledger entries: this account has settled nothing yet."}
          </p>
        ) : (
          <table>
            <caption>Ledger entries{ledger.cursor === null ? ", newest" : ", older"}</caption>
            <thead>
              <tr>
                <th scope="col">When</th>
                <th scope="col">Kind</th>
                <th scope="col">Layer</th>
                <th scope="col">Product</th>
                <th scope="col" class="num">
                  Amount
                </th>
                <th scope="col" class="num">
                  Refunded
                </th>
                <th scope="col">Entry</th>
                <th scope="col">Action</th>
              </tr>
            </thead>
            <tbody>
              {ledger.entries.map((e) => {
                const refundable = e.kind === "charge" || e.kind === "write_off";
                // Offered for what credits paid (or nothing covered); a window-layer charge was the plan's own allowance.
                const offerRefund = e.kind === "write_off" || (e.kind === "charge" && e.layer !== "window");
                return (
                  <tr data-testid="ledger-row" data-entry={e.id}>
                    <td>{utc(e.createdAt)}</td>
                    <td>{e.kind}</td>
                    <td>{e.layer ?? ""}</td>
                    <td>{e.product ?? ""}</td>
                    <td class="num">{credits(e.amount)}</td>
                    {refundable ? (
                      <td class="num" data-testid="refunded">
                        {credits(refunded.get(e.id) ?? 0)}
                      </td>
                    ) : (
                      <td class="num"></td>
                    )}
                    <td>
                      <code>{e.id}</code>
                    </td>
                    <td>
                      {offerRefund ? (
                        <a href={`${base}/refund?entry=${encodeURIComponent(e.id)}`}>
                          Refund<span class="sr-only"> entry {e.id}</span>…
                        </a>
                      ) : null}
                    </td>
                  </tr>
                );
              })}
            </tbody>
          </table>
        )}
        {ledger.cursor !== null || ledger.nextCursor !== null ? (
          <nav class="pager" aria-label="Ledger pages">
            {ledger.cursor !== null ? (
              <a href={`${base}${limitQ ? `?${limitQ.slice(1)}` : ""}`}>Newest entries</a>
            ) : null}
            {ledger.nextCursor !== null ? (
              <a href={`${base}?cursor=${ledger.nextCursor}${limitQ}`}>Older entries</a>
            ) : null}
          </nav>
        ) : null}
      </section>
      <section aria-labelledby="h-events">
        <h2 id="h-events">Events</h2>
        {events.length === 0 ? (
          <p class="small">No events settled for this account.</p>
        ) : (
          <EventsTable events={events} caption="This account's events, newest first" testid="account-event-row" />
        )}
      </section>
    </Shell>
  );
};

// ───────────────────────────── confirmation screens ─────────────────────────────

export const ResumeConfirmPage: FC<{
  op: Operator;
  accountId: string;
  paused: boolean;
  pausedEvent: EventView | null;
  error?: string | null;
}> = ({ op, accountId, paused, pausedEvent, error }) => (
  <Shell title="Resume credit spending" op={op} error={error}>
    <section aria-labelledby="h-what">
      <h2 id="h-what">What will happen</h2>
      <dl class="facts">
        <dt>Account</dt>
        <dd>
          <a href={accountHref(accountId)}>{accountId}</a>
        </dd>
        <dt>Now</dt>
        <dd>{paused ? "Paused: requests that need credits are denied." : "Not paused."}</dd>
        {pausedEvent ? (
          <>
            <dt>Paused at</dt>
            <dd>
              {utc(pausedEvent.createdAt)}: {describeEvent(pausedEvent.type, pausedEvent.data)}
            </dd>
          </>
        ) : null}
      </dl>
      <p>
        {paused
          ? "Credit spending resumes at once, and an account.credits_resumed event names you as the operator. The anomaly guard's trailing 10 minutes then count from this instant, so the burst that paused the account does not pause it again; a new burst would."
          : "This account is not paused: confirming changes nothing and records nothing."}
      </p>
      <form method="post" action={`${accountHref(accountId)}/resume`} class="actions">
        <Csrf op={op} />
        <Nonce />
        <button type="submit">Confirm: resume credit spending</button>
        <a href={accountHref(accountId)}>Cancel</a>
      </form>
    </section>
  </Shell>
);

export interface RefundConfirmProps {
  op: Operator;
  accountId: string;
  entry: LedgerRowView;
  refunded: number;
  left: number;
  amount?: string;
  reason?: string;
  error?: string | null;
}

export const RefundConfirmPage: FC<RefundConfirmProps> = ({
  op,
  accountId,
  entry,
  refunded,
  left,
  amount,
  reason,
  error,
}) => (
  <Shell title="Refund against a ledger entry" op={op} error={error}>
    <section aria-labelledby="h-entry">
      <h2 id="h-entry">The entry</h2>
      <dl class="facts">
        <dt>Account</dt>
        <dd>
          <a href={accountHref(accountId)}>{accountId}</a>
        </dd>
        <dt>Entry</dt>
        <dd>
          <code>{entry.id}</code>
        </dd>
        <dt>Kind</dt>
        <dd>
          {entry.kind}
          {entry.layer ? ` (${entry.layer})` : ""}
          {entry.product ? `, ${entry.product}` : ""}, {utc(entry.createdAt)}
        </dd>
        <dt>Amount</dt>
        <dd data-testid="entry-amount">{credits(entry.amount)} credits</dd>
        <dt>Refunded so far</dt>
        <dd>{credits(refunded)} credits (as settled in the ledger)</dd>
        <dt>Left to refund</dt>
        <dd data-testid="entry-left">{credits(left)} credits</dd>
      </dl>
      {entry.layer === "window" ? (
        <p class="error" data-testid="window-charge">
          This charge was covered by the plan's window, not by credits: a refund would give the account credits it never
          paid.
        </p>
      ) : null}
    </section>
    <section aria-labelledby="h-what">
      <h2 id="h-what">What will happen</h2>
      {left === 0 ? (
        <p>Nothing is left to refund on this entry.</p>
      ) : (
        <>
          <p>
            The account gets a compensating purchase grant of the amount (it expires in 12 months) and a refund entry
            that names this entry. Nothing earlier is edited. All refunds against this entry together can never exceed
            its amount: the account object checks, whatever this page shows.
          </p>
          <form class="stack" method="post" action={`${accountHref(accountId)}/refund`}>
            <Csrf op={op} />
            <Nonce />
            <input type="hidden" name="entry" value={entry.id} />
            <label for="refund-amount">Amount (credits)</label>
            <input
              id="refund-amount"
              name="amount"
              type="text"
              inputmode="decimal"
              required
              value={amount ?? creditsInput(left)}
              aria-describedby="refund-amount-hint"
            />
            <p class="small" id="refund-amount-hint">
              Up to {credits(left)} credits, at most 6 decimals.
            </p>
            <label for="refund-reason">Reason (recorded with the refund)</label>
            <input id="refund-reason" name="reason" type="text" required maxlength={500} value={reason ?? ""} />
            <div class="actions">
              <button type="submit">Confirm: refund</button>
              <a href={accountHref(accountId)}>Cancel</a>
            </div>
          </form>
        </>
      )}
    </section>
  </Shell>
);

export interface ResetChoice {
  products: string[];
  plans: string[];
  bankedResets: "keep" | "restore";
  reason: string;
}

export const ResetFormPage: FC<{ op: Operator; choice?: ResetChoice; error?: string | null }> = ({
  op,
  choice,
  error,
}) => (
  <Shell title="Run a global reset" op={op} error={error}>
    <section aria-labelledby="h-scope">
      <h2 id="h-scope">Scope and reason</h2>
      <p>
        A global reset makes window usage recorded before it stop counting, for every account in scope that exists when
        it runs. Leave a group unticked to include all of it. The next screen shows what will happen; nothing is done
        until you confirm there.
      </p>
      <form method="get" action="/console/resets/confirm" class="stack">
        <fieldset>
          <legend>Products</legend>
          {PRODUCTS.map((p) => (
            <label>
              <input type="checkbox" name="products" value={p} checked={choice?.products.includes(p) ?? false} /> {p}
            </label>
          ))}
        </fieldset>
        <fieldset>
          <legend>Plans</legend>
          {PLANS.map((p) => (
            <label>
              <input type="checkbox" name="plans" value={p} checked={choice?.plans.includes(p) ?? false} /> {p}
            </label>
          ))}
        </fieldset>
        <fieldset>
          <legend>Banked resets</legend>
          <label>
            <input
              type="radio"
              name="bankedResets"
              value="keep"
              checked={(choice?.bankedResets ?? "keep") === "keep"}
            />{" "}
            keep as they are
          </label>
          <label>
            <input type="radio" name="bankedResets" value="restore" checked={choice?.bankedResets === "restore"} />{" "}
            restore to the plan's maximum
          </label>
        </fieldset>
        <label for="reset-reason">Reason (recorded in the audit trail)</label>
        <input id="reset-reason" name="reason" type="text" required maxlength={500} value={choice?.reason ?? ""} />
        <div class="actions">
          <button type="submit">Review the reset…</button>
          <a href="/console">Cancel</a>
        </div>
      </form>
    </section>
  </Shell>
);

export const ResetConfirmPage: FC<{ op: Operator; choice: ResetChoice; error?: string | null }> = ({
  op,
  choice,
  error,
}) => (
  <Shell title="Confirm the global reset" op={op} error={error}>
    <section aria-labelledby="h-what">
      <h2 id="h-what">What will happen</h2>
      <dl class="facts">
        <dt>Products</dt>
        <dd data-testid="reset-scope">
          {choice.products.length ? choice.products.join(", ") : `all products (${PRODUCTS.join(", ")})`}
        </dd>
        <dt>Plans</dt>
        <dd data-testid="reset-plans">
          {choice.plans.length ? choice.plans.join(", ") : `all plans (${PLANS.join(", ")})`}
        </dd>
        <dt>Banked resets</dt>
        <dd>{choice.bankedResets === "restore" ? "restored to each plan's maximum" : "kept as they are"}</dd>
        <dt>Reason</dt>
        <dd>{choice.reason}</dd>
        <dt>Operator</dt>
        <dd>{op.name ?? "console"}</dd>
      </dl>
      <p>
        The 5-hour and weekly windows of {choice.products.length ? choice.products.join(", ") : "every product"} start
        from zero, as of the moment you confirm, for every account on{" "}
        {choice.plans.length ? `the ${choice.plans.join(", ")} plan${choice.plans.length > 1 ? "s" : ""}` : "any plan"}{" "}
        that exists then. It is one record, in effect everywhere within a few seconds, and it cannot be undone.
      </p>
      <form method="post" action="/console/resets" class="actions">
        <Csrf op={op} />
        <Nonce />
        {choice.products.map((p) => (
          <input type="hidden" name="products" value={p} />
        ))}
        {choice.plans.map((p) => (
          <input type="hidden" name="plans" value={p} />
        ))}
        <input type="hidden" name="bankedResets" value={choice.bankedResets} />
        <input type="hidden" name="reason" value={choice.reason} />
        <button type="submit" class="danger">
          Confirm: run the global reset
        </button>
        <a href="/console/resets/new">Change</a>
      </form>
    </section>
  </Shell>
);

// ───────────────────────────── organizations ─────────────────────────────

const orgHref = (id: string) => `/console/orgs/${encodeURIComponent(id)}`;
const limitText = (micro: number | null) => (micro === null ? "none" : credits(micro));

export interface OrgPageProps {
  op: Operator;
  notice?: string;
  org: OrgView;
  /** The pool's settled events (D1), newest first. */
  events: EventView[];
}

export const OrgPage: FC<OrgPageProps> = ({ op, notice, org, events }) => {
  const base = orgHref(org.orgId);
  const { pool } = org;
  return (
    <Shell title={`Organization ${org.orgId}`} op={op} notice={notice}>
      <section aria-labelledby="h-pool">
        <h2 id="h-pool">Pool</h2>
        <p class="small">
          Live from the organization's object. Members' spend is as each member last reported it (at its lease calls).
        </p>
        <dl class="facts">
          <dt>Plan</dt>
          <dd data-testid="org-plan">{org.plan}</dd>
          <dt>Pool spending</dt>
          <dd>
            {org.paused ? (
              <strong class="badge bad" data-testid="org-paused">
                Paused
              </strong>
            ) : (
              <strong class="badge good" data-testid="org-paused">
                Not paused
              </strong>
            )}
            {org.paused ? (
              <>
                {" "}
                <a href={`${base}/resume`}>Resume pool spending…</a>
              </>
            ) : null}
          </dd>
          <dt>Balance</dt>
          <dd>
            <span data-testid="pool-balance">{credits(pool.balance)}</span> credits (not lent out)
          </dd>
          <dt>Leased</dt>
          <dd>
            <span data-testid="pool-leased">{credits(pool.leased)}</span> credits out with members (spent or not)
          </dd>
          <dt>Spent</dt>
          <dd>
            <span data-testid="pool-spent">{credits(pool.spent)}</span> credits, as members reported
          </dd>
          <dt>Granted</dt>
          <dd>
            <span data-testid="pool-granted">{credits(pool.granted)}</span> credits in total (refunds included)
          </dd>
          <dt>Expired</dt>
          <dd>
            <span data-testid="pool-expired">{credits(pool.expired)}</span> credits
          </dd>
          <dt>Flex overage</dt>
          <dd data-testid="pool-flex">
            {org.flex ? `${credits(org.flex.used)} of ${credits(org.flex.limit)} credits this month` : "off"}
          </dd>
          <dt>Created</dt>
          <dd>{utcIso(org.createdAt)}</dd>
        </dl>
        <p>
          <a href={`${base}/refund`}>Refund credits to the pool…</a>
        </p>
        <h3>Grants</h3>
        {org.grants.length === 0 ? (
          <p class="small">No pool credits left.</p>
        ) : (
          <GrantsTable grants={org.grants} caption="Pool grants, in burn-down order" testid="pool-grant-row" />
        )}
      </section>
      <section aria-labelledby="h-members">
        <h2 id="h-members">Members</h2>
        {org.members.length === 0 ? (
          <p class="small">No members.</p>
        ) : (
          <table>
            <caption>Members and what each drew from the pool, in credits</caption>
            <thead>
              <tr>
                <th scope="col">Account</th>
                <th scope="col" class="num">
                  Today
                </th>
                <th scope="col" class="num">
                  This month
                </th>
                <th scope="col" class="num">
                  Daily limit
                </th>
                <th scope="col" class="num">
                  Monthly limit
                </th>
                <th scope="col" class="num">
                  Leased now
                </th>
                <th scope="col">Reported</th>
              </tr>
            </thead>
            <tbody>
              {org.members.map((m) => (
                <tr data-testid="member-row" data-account={m.accountId}>
                  <td>
                    <a href={accountHref(m.accountId)}>{m.accountId}</a>
                  </td>
                  <td class="num">{credits(m.spentToday)}</td>
                  <td class="num">{credits(m.spentThisMonth)}</td>
                  <td class="num">{limitText(m.dailyLimit)}</td>
                  <td class="num">{limitText(m.monthlyLimit)}</td>
                  <td class="num">{credits(m.leased)}</td>
                  <td>{utcIso(m.reportedAt)}</td>
                </tr>
              ))}
            </tbody>
          </table>
        )}
      </section>
      <section aria-labelledby="h-top">
        <h2 id="h-top">Top spenders this month</h2>
        {org.topSpenders.length === 0 ? (
          <p class="small">No member has drawn from the pool this month.</p>
        ) : (
          <table>
            <caption>Members who drew the most from the pool this month</caption>
            <thead>
              <tr>
                <th scope="col">Account</th>
                <th scope="col" class="num">
                  This month
                </th>
                <th scope="col" class="num">
                  Today
                </th>
              </tr>
            </thead>
            <tbody>
              {org.topSpenders.map((t) => (
                <tr data-testid="org-top-row" data-account={t.accountId}>
                  <td>
                    <a href={accountHref(t.accountId)}>{t.accountId}</a>
                  </td>
                  <td class="num">{credits(t.spentThisMonth)}</td>
                  <td class="num">{credits(t.spentToday)}</td>
                </tr>
              ))}
            </tbody>
          </table>
        )}
      </section>
      <section aria-labelledby="h-events">
        <h2 id="h-events">Pool events</h2>
        {events.length === 0 ? (
          <p class="small">No events settled for this pool.</p>
        ) : (
          <EventsTable events={events} caption="The pool's events, newest first" testid="org-event-row" />
        )}
      </section>
    </Shell>
  );
};

export const OrgResumeConfirmPage: FC<{
  op: Operator;
  orgId: string;
  paused: boolean;
  pausedEvent: EventView | null;
  error?: string | null;
}> = ({ op, orgId, paused, pausedEvent, error }) => (
  <Shell title="Resume pool spending" op={op} error={error}>
    <section aria-labelledby="h-what">
      <h2 id="h-what">What will happen</h2>
      <dl class="facts">
        <dt>Organization</dt>
        <dd>
          <a href={orgHref(orgId)}>{orgId}</a>
        </dd>
        <dt>Now</dt>
        <dd data-testid="org-now">
          {paused ? "Paused: the pool lends nothing, so members needing it are denied." : "Not paused."}
        </dd>
        {pausedEvent ? (
          <>
            <dt>Paused at</dt>
            <dd>
              {utc(pausedEvent.createdAt)}: {describeEvent(pausedEvent.type, pausedEvent.data)}
            </dd>
          </>
        ) : null}
      </dl>
      <p>
        {paused
          ? "Pool spending resumes at once, and an org.credits_resumed event names you as the operator. The pool's anomaly guard then counts its trailing 10 minutes from this instant; a new spike would pause it again."
          : "This pool is not paused: confirming changes nothing and records nothing."}
      </p>
      <form method="post" action={`${orgHref(orgId)}/resume`} class="actions">
        <Csrf op={op} />
        <Nonce />
        <button type="submit">Confirm: resume pool spending</button>
        <a href={orgHref(orgId)}>Cancel</a>
      </form>
    </section>
  </Shell>
);

export const OrgRefundConfirmPage: FC<{
  op: Operator;
  orgId: string;
  balance: number;
  /** The most one goodwill refund may grant, micro-credits. */
  max: number;
  amount?: string;
  reason?: string;
  error?: string | null;
}> = ({ op, orgId, balance, max, amount, reason, error }) => (
  <Shell title="Refund credits to a pool" op={op} error={error}>
    <section aria-labelledby="h-what">
      <h2 id="h-what">What will happen</h2>
      <dl class="facts">
        <dt>Organization</dt>
        <dd>
          <a href={orgHref(orgId)}>{orgId}</a>
        </dd>
        <dt>Pool balance now</dt>
        <dd data-testid="org-balance">{credits(balance)} credits</dd>
      </dl>
      <p>
        A goodwill credit to the organization's pool: a new pool grant of the amount (a purchase that expires in 12
        months) and a refund entry in the organization's ledger, with your reason. Nothing earlier is edited. Members
        draw it like any pool credit.
      </p>
      <form class="stack" method="post" action={`${orgHref(orgId)}/refund`}>
        <Csrf op={op} />
        <Nonce />
        <label for="refund-amount">Amount (credits)</label>
        <input
          id="refund-amount"
          name="amount"
          type="text"
          inputmode="decimal"
          required
          value={amount ?? ""}
          aria-describedby="refund-amount-hint"
        />
        <p class="small" id="refund-amount-hint">
          Up to {credits(max)} credits per refund, at most 6 decimals.
        </p>
        <label for="refund-reason">Reason (recorded with the refund)</label>
        <input id="refund-reason" name="reason" type="text" required maxlength={500} value={reason ?? ""} />
        <div class="actions">
          <button type="submit">Confirm: refund to the pool</button>
          <a href={orgHref(orgId)}>Cancel</a>
        </div>
      </form>
    </section>
  </Shell>
);
