import { raw } from "hono/html";
import type { Child, FC } from "hono/jsx";
import type { z } from "@hono/zod-openapi";
import type { AccountSummary } from "../schemas";
import { PRODUCTS } from "../catalog";

type Summary = z.infer<typeof AccountSummary>;
type WindowView = Summary["products"]["codex"]["fiveHour"];

export interface PanelProps {
  summary: Summary;
  spend: { day: string; amount: number }[];
  token: string;
  now: number;
  billingUrl: string;
  notice?: string;
}

/** Micro-credits as credits with two decimals: 1_234_567 → "1.23". */
export const credits = (micro: number) => (micro / 1_000_000).toLocaleString("en-US", { minimumFractionDigits: 2, maximumFractionDigits: 2 });

function untilText(resetsAt: string | null, now: number): string {
  if (!resetsAt) return "Not started: opens at your next request";
  const minutes = Math.max(0, Math.ceil((Date.parse(resetsAt) - now) / 60_000));
  const h = Math.floor(minutes / 60);
  const m = minutes % 60;
  const d = Math.floor(h / 24);
  const span = d > 0 ? `${d}d ${h % 24}h` : h > 0 ? `${h}h ${m}m` : `${m}m`;
  return `Resets in ${span} (at ${resetsAt.slice(0, 16).replace("T", " ")} UTC)`;
}

const WindowBar: FC<{ label: string; w: WindowView; now: number; id: string }> = ({ label, w, now, id }) => {
  const pct = w.limit === 0 ? 100 : Math.min(100, Math.round((w.used / w.limit) * 100));
  return (
    <div class="window">
      <div class="row">
        <span id={id}>{label}</span>
        <span data-testid={`${id}-pct`}>{pct}% used</span>
      </div>
      <div class={`bar ${pct >= 100 ? "full" : ""}`} role="progressbar" aria-labelledby={id} aria-valuemin={0} aria-valuemax={100} aria-valuenow={pct}>
        <div style={{ width: `${pct}%` }} />
      </div>
      <div class="row small">
        <span data-testid={`${id}-used`}>
          {credits(w.used)} of {credits(w.limit)} credits
        </span>
        <span>{untilText(w.resetsAt, now)}</span>
      </div>
    </div>
  );
};

const SpendChart: FC<{ spend: PanelProps["spend"] }> = ({ spend }) => {
  const max = Math.max(1, ...spend.map((s) => s.amount));
  const barW = 40;
  const gap = 10;
  const h = 120;
  const width = spend.length * (barW + gap);
  return (
    <figure>
      <svg viewBox={`0 0 ${width} ${h + 20}`} role="img" aria-labelledby="spend-title" class="chart">
        <title id="spend-title">Credits spent per day, last 7 days</title>
        {spend.map((s, i) => {
          const bh = Math.round((s.amount / max) * h);
          return (
            <g>
              <rect x={i * (barW + gap)} y={h - bh} width={barW} height={Math.max(bh, 1)} fill="#0b5cad">
                <title>{`${s.day}: ${credits(s.amount)} credits`}</title>
              </rect>
              <text x={i * (barW + gap) + barW / 2} y={h + 15} text-anchor="middle" font-size="11" fill="#333">
                {s.day.slice(5)}
              </text>
            </g>
          );
        })}
      </svg>
      <figcaption class="small">Credits spent per day (UTC), last 7 days. Total {credits(spend.reduce((a, s) => a + s.amount, 0))}.</figcaption>
    </figure>
  );
};

const STYLE = `
*{box-sizing:border-box}body{margin:0;font:16px/1.5 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:#1a1a1a;background:#f6f7f9}
main{max-width:760px;margin:0 auto;padding:16px}h1{font-size:1.4rem;margin:.2em 0}h2{font-size:1.1rem;margin:0 0 .5em}
section{background:#fff;border:1px solid #d0d4da;border-radius:8px;padding:16px;margin:12px 0}
.row{display:flex;justify-content:space-between;gap:8px;flex-wrap:wrap}.small{font-size:.875rem;color:#3d4451}
.bar{height:12px;background:#e3e6ea;border-radius:6px;overflow:hidden;margin:4px 0}.bar>div{height:100%;background:#0b5cad}.bar.full>div{background:#b3261e}
.window{margin:10px 0}.alert{border-color:#b3261e;background:#fdf0ef}.notice{border-color:#0b5cad;background:#eef4fb}
a.button,button{display:inline-block;background:#0b5cad;color:#fff;border:0;border-radius:6px;padding:8px 14px;font:inherit;text-decoration:none;cursor:pointer}
button:disabled{background:#6b7280;cursor:not-allowed}table{width:100%;border-collapse:collapse}th,td{text-align:left;padding:4px 6px;border-bottom:1px solid #e3e6ea}
.chart{width:100%;height:auto;max-height:180px}label{margin-right:8px}select{font:inherit;padding:6px;margin-right:8px}
.sr-only{position:absolute;width:1px;height:1px;overflow:hidden;clip:rect(0 0 0 0)}
`;

/**
 * Every panel page: the doctype keeps browsers out of quirks mode. Only inline CSS (the <style> element and the
 * bars' style attributes), no scripts and no fetched resources: the CSP set in routes/panel.tsx allows just that.
 */
const Document: FC<{ title: string; children?: Child }> = ({ title, children }) => (
  <>
    {raw("<!doctype html>")}
    <html lang="en">
      <head>
        <meta charset="utf-8" />
        <meta name="viewport" content="width=device-width, initial-scale=1" />
        <title>{title}</title>
        <style>{raw(STYLE)}</style>
      </head>
      <body>{children}</body>
    </html>
  </>
);

// A Map, not an object: `notice` comes from the query, and "constructor" or "__proto__" must not match.
const NOTICES = new Map<string, string>([
  ["reset_used", "A banked reset was used: the windows of that product are empty again."],
  ["no_banked_reset", "No banked reset is available."],
  ["nothing_to_reset", "Those windows are already empty, so your banked reset was kept."],
]);

export const PanelPage: FC<PanelProps> = ({ summary, spend, token, now, billingUrl, notice }) => {
  const limitHit = summary.paused || PRODUCTS.some((p) => summary.products[p].fiveHour.remaining === 0 || summary.products[p].weekly.remaining === 0);
  const a = summary.credits.autoTopUp;
  const noticeText = notice === undefined ? undefined : NOTICES.get(notice);
  return (
    <Document title={`Usage · ${summary.accountId}`}>
      <main>
        <h1>Your usage</h1>
        <p class="small">
          Account <strong>{summary.accountId}</strong> · plan <strong data-testid="plan">{summary.plan}</strong>
        </p>
        {noticeText ? (
          <section class="notice" role="status">
            {noticeText}
          </section>
        ) : null}
        {limitHit ? (
          <section class="alert" role="alert" data-testid="limit-hit">
            <h2>You have hit a limit</h2>
            <p>{summary.paused ? "Credit spending is paused for your protection. Contact support to resume." : "Add credits to keep working now, or wait for a window to reset."}</p>
            {billingUrl ? (
              <a class="button" href={billingUrl}>
                Add credits
              </a>
            ) : null}
          </section>
        ) : null}
        {PRODUCTS.map((p) => (
          <section aria-labelledby={`h-${p}`}>
            <h2 id={`h-${p}`}>{p}</h2>
            <WindowBar label="5-hour window" w={summary.products[p].fiveHour} now={now} id={`${p}-fiveHour`} />
            <WindowBar label="Weekly window" w={summary.products[p].weekly} now={now} id={`${p}-weekly`} />
          </section>
        ))}
        <section aria-labelledby="h-banked">
          <h2 id="h-banked">Banked resets</h2>
          <p data-testid="banked-available">
            {summary.bankedResets.available} of {summary.bankedResets.max} available
          </p>
          {summary.bankedResets.items.length > 0 ? (
            <ul>
              {summary.bankedResets.items.map((i) => (
                <li>{i.expiresAt ? `Expires ${i.expiresAt.slice(0, 16).replace("T", " ")} UTC` : "Does not expire"}</li>
              ))}
            </ul>
          ) : null}
          <form method="post" action="/panel/resets">
            <input type="hidden" name="token" value={token} />
            <input type="hidden" name="nonce" value={crypto.randomUUID()} />
            <label for="reset-product">Product</label>
            <select id="reset-product" name="product">
              {PRODUCTS.map((p) => (
                <option value={p}>{p}</option>
              ))}
            </select>
            <button type="submit" disabled={summary.bankedResets.available === 0}>
              Use a banked reset
            </button>
          </form>
        </section>
        <section aria-labelledby="h-credits">
          <h2 id="h-credits">Credits</h2>
          <p>
            Balance <strong data-testid="balance">{credits(summary.credits.balance)}</strong> credits
          </p>
          {summary.credits.grants.length > 0 ? (
            <table>
              <caption class="sr-only">Credit grants, spent in this order</caption>
              <thead>
                <tr>
                  <th scope="col">Kind</th>
                  <th scope="col">Remaining</th>
                  <th scope="col">Expires</th>
                </tr>
              </thead>
              <tbody>
                {summary.credits.grants.map((g) => (
                  <tr data-testid="grant">
                    <td>{g.kind}</td>
                    <td>{credits(g.remaining)}</td>
                    <td>{g.expiresAt ? g.expiresAt.slice(0, 10) : "never"}</td>
                  </tr>
                ))}
              </tbody>
            </table>
          ) : (
            <p class="small">No credit grants.</p>
          )}
          <p class="small" data-testid="auto-top-up">
            Auto top-up:{" "}
            {a.enabled ? `on: ${credits(a.amount)} credits when below ${credits(a.threshold)}, at most ${a.maxPerMonth} a month${a.pending ? " (one pending)" : ""}` : "off"}
          </p>
          {summary.credits.flex ? (
            <p class="small">
              Flexible billing this month: {credits(summary.credits.flex.used)} of {credits(summary.credits.flex.limit)} credits
            </p>
          ) : null}
        </section>
        <section aria-labelledby="h-spend">
          <h2 id="h-spend">Spending</h2>
          <SpendChart spend={spend} />
        </section>
      </main>
    </Document>
  );
};

export const PanelError: FC<{ message: string; heading?: string }> = ({ message, heading = "This link does not work" }) => (
  <Document title="Usage panel">
    <main>
      <section class="alert" role="alert">
        <h1>{heading}</h1>
        <p>{message}</p>
      </section>
    </main>
  </Document>
);
