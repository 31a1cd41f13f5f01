import { raw } from "hono/html";
import type { Child, FC } from "hono/jsx";
import type { z } from "@hono/zod-openapi";
import type { AccountSummary } from "../schemas";
import { PRODUCTS, type Product } from "../catalog";
import { WINDOW_KINDS, type WindowKind } from "../core/windows";
import { iso, nextUtcMidnight, utcDayStart } from "../core/time";
import type { AccountDO } from "../../durable-objects/account/object";

type Summary = z.infer<typeof AccountSummary>;
type WindowView = Summary["products"]["codex"]["fiveHour"];
export type PanelView = ReturnType<AccountDO["panelView"]>;

/** One settled ledger entry, as the recent-activity list shows it. */
export interface ActivityEntry {
  kind: string;
  amount: number;
  layer: string | null;
  product: string | null;
  createdAt: number;
}

export interface PanelProps {
  summary: Summary;
  view: PanelView;
  /** The account's last ledger entries, newest first; null when the ledger could not be read. */
  activity: ActivityEntry[] | null;
  token: string;
  now: number;
  /** The "Add credits" link (BILLING_URL with account and return URL), or null when BILLING_URL is not usable. */
  addCreditsHref: string | null;
  notice?: string;
}

/** Micro-credits as credits with two decimals: 1_234_567 → "1.23". */
export const credits = (micro: number) =>
  (micro / 1_000_000).toLocaleString("en-US", { minimumFractionDigits: 2, maximumFractionDigits: 2 });

export const productName = (p: string) => p.charAt(0).toUpperCase() + p.slice(1);
const WINDOW_NAMES: Record<WindowKind, string> = { fiveHour: "5-hour", weekly: "weekly" };
const LAYER_NAMES = new Map([
  ["window", "plan window"],
  ["grant", "credits"],
  ["flex", "flexible billing"],
  ["pool", "organization pool"],
]);

/** A duration rounded up to the minute: "45m", "2h 10m", "6d 3h". */
function span(ms: number): string {
  const minutes = Math.max(0, Math.ceil(ms / 60_000));
  const h = Math.floor(minutes / 60);
  const d = Math.floor(h / 24);
  return d > 0 ? `${d}d ${h % 24}h` : h > 0 ? `${h}h ${minutes % 60}m` : `${minutes % 60}m`;
}

/** UTC text of an instant: "14:05 UTC" on the same UTC day as `now`, "2026-11-08 14:05 UTC" otherwise. */
function utcText(ms: number, now: number): string {
  const s = iso(ms);
  return `${utcDayStart(ms) === utcDayStart(now) ? "" : `${s.slice(0, 10)} `}${s.slice(11, 16)} UTC`;
}

/** An instant: UTC text, and the machine-readable time that /panel/time.js shows in the viewer's zone. */
export const Time: FC<{ ms: number; now: number }> = ({ ms, now }) => (
  <time datetime={iso(ms)}>{utcText(ms, now)}</time>
);

/** "<time> (in 2h 10m)" */
const When: FC<{ ms: number; now: number }> = ({ ms, now }) => (
  <>
    <Time ms={ms} now={now} /> (in {span(ms - now)})
  </>
);

const WindowBar: FC<{ label: string; w: WindowView; now: number; id: string }> = ({ label, w, now, id }) => {
  const pct = w.limit === 0 ? 100 : Math.min(100, Math.round((w.used / w.limit) * 100));
  return (
    <div class="window">
      <div class="row">
        <span id={id}>{label}</span>
        <span data-testid={`${id}-pct`}>{pct}% used</span>
      </div>
      <div
        class={`bar ${pct >= 100 ? "full" : ""}`}
        role="progressbar"
        aria-labelledby={id}
        aria-valuemin={0}
        aria-valuemax={100}
        aria-valuenow={pct}
      >
        <div style={{ width: `${pct}%` }} />
      </div>
      <div class="row small">
        <span data-testid={`${id}-used`}>
          {credits(w.used)} of {credits(w.limit)} credits
        </span>
        <span>
          {w.resetsAt ? (
            <>
              Resets at <When ms={Date.parse(w.resetsAt)} now={now} />
            </>
          ) : (
            "Not started: opens at your next request"
          )}
        </span>
      </div>
    </div>
  );
};

/** Credits that can pay for `product` now: unexpired grant remainders for all products or for this one. */
const creditsFor = (summary: Summary, product: Product) =>
  summary.credits.grants
    .filter((g) => g.products === null || g.products.includes(product))
    .reduce((s, g) => s + g.remaining, 0);

/**
 * The used-up windows and what helps. "Add credits" is offered only when credits would help: a window of a product
 * is used up, nothing (its credits, flexible billing) pays for that product now, spending is not paused, and the
 * daily spend cap is not reached (bought credits could not be spent before the UTC day ends).
 */
const Limits: FC<{ summary: Summary; now: number; href: string | null }> = ({ summary, now, href }) => {
  const used = PRODUCTS.flatMap((p) =>
    WINDOW_KINDS.filter((k) => summary.products[p][k].remaining === 0).map((k) => ({
      p,
      k,
      w: summary.products[p][k],
    })),
  );
  if (used.length === 0) return null;
  const products = [...new Set(used.map((u) => u.p))];
  const flex = summary.credits.flex;
  const flexLeft = flex ? Math.max(0, flex.limit - flex.used) : 0;
  const cap = summary.spendCap;
  const capReached = cap !== null && cap.spentToday >= cap.dailyLimit;
  const covered = products.filter((p) => creditsFor(summary, p) > 0 || flexLeft > 0);
  const uncovered = products.filter((p) => !covered.includes(p));
  const offer = !summary.paused && !capReached && uncovered.length > 0;
  return (
    <section class="alert" role="alert" aria-labelledby="h-limits" data-testid="limit-hit">
      <h2 id="h-limits">You have hit a limit</h2>
      <ul class="plain">
        {used.map(({ p, k, w }) => (
          <li data-testid="limit">
            {productName(p)}: your {WINDOW_NAMES[k]} limit is used up
            {w.resetsAt ? (
              <>
                ; it resets at <When ms={Date.parse(w.resetsAt)} now={now} />.
              </>
            ) : (
              "."
            )}
          </li>
        ))}
      </ul>
      {summary.paused ? (
        <p data-testid="limit-help">
          Credit spending is paused, so only a window reset or a banked reset frees capacity now.
        </p>
      ) : null}
      {!summary.paused && capReached ? (
        <p data-testid="limit-help">
          Your daily spend cap ({credits(cap.dailyLimit)} credits) is reached; credit spending resumes at{" "}
          <When ms={nextUtcMidnight(now)} now={now} />.
        </p>
      ) : null}
      {!summary.paused && !capReached
        ? covered.map((p) => {
            const own = creditsFor(summary, p);
            const payer =
              own > 0
                ? `your credits (${credits(own)}) pay`
                : `flexible billing (${credits(flexLeft)} credits left this month) pays`;
            return <p data-testid="limit-help">{`Until then, ${payer} for ${productName(p)}.`}</p>;
          })
        : null}
      {offer ? (
        <p data-testid="limit-help">
          {href
            ? "Add credits to keep working now, or wait for the reset."
            : "Add credits in the product to keep working now, or wait for the reset."}
        </p>
      ) : null}
      {summary.bankedResets.available > 0 ? (
        <p>
          Or <a href="#h-banked">use a banked reset</a>: it empties a product's windows now.
        </p>
      ) : null}
      {offer && href ? (
        <a class="button" href={href} data-testid="add-credits">
          Add credits
        </a>
      ) : null}
    </section>
  );
};

/** Round tick step (1, 2, 2.5 or 5 × 10^n micro-credits) for at most 4 intervals; at least 1 credit tall. */
function yScale(maxMicro: number): { top: number; step: number } {
  const max = Math.max(maxMicro, 1_000_000);
  const raw = max / 4;
  const mag = 10 ** Math.floor(Math.log10(raw));
  const norm = raw / mag;
  const step = (norm <= 1 ? 1 : norm <= 2 ? 2 : norm <= 2.5 ? 2.5 : norm <= 5 ? 5 : 10) * mag;
  return { step, top: Math.ceil(max / step - 1e-9) * step };
}

const tickLabel = (micro: number) => (micro / 1_000_000).toLocaleString("en-US", { maximumFractionDigits: 2 });

const SERIES = [
  { key: "window", label: "Window usage (included in your plan)", color: "#0b5cad" },
  { key: "credits", label: "Credits spent", color: "#c2410c" },
] as const;

/** Window usage and credit spend per UTC day: grouped bars on a y-axis in credits, a legend, and the numbers as a table. */
const SpendChart: FC<{ days: PanelView["days"] }> = ({ days }) => {
  const W = 340;
  const H = 180;
  const left = 40;
  const right = 4;
  const top = 18;
  const bottom = 22;
  const plotW = W - left - right;
  const plotH = H - top - bottom;
  const { top: max, step } = yScale(Math.max(...days.flatMap((d) => [d.window, d.credits])));
  const y = (v: number) => top + plotH - (v / max) * plotH;
  const ticks = Array.from({ length: Math.round(max / step) + 1 }, (_, i) => i * step);
  const slot = plotW / days.length;
  const barW = Math.min(16, (slot - 8) / 2);
  const total = (k: "window" | "credits") => credits(days.reduce((s, d) => s + d[k], 0));
  return (
    <figure>
      <svg viewBox={`0 0 ${W} ${H}`} role="img" aria-labelledby="spend-title spend-desc" class="chart">
        <title id="spend-title">Window usage and credits spent per UTC day, last {days.length} days</title>
        <desc id="spend-desc">
          In total, window usage {total("window")} credits and credits spent {total("credits")}. The table below the
          chart gives each day.
        </desc>
        <text x={0} y={11} font-size="12" fill="#3d4451" data-testid="y-axis-label">
          credits
        </text>
        {ticks.map((t) => (
          <g>
            <line
              x1={left}
              x2={W - right}
              y1={y(t)}
              y2={y(t)}
              stroke={t === 0 ? "#3d4451" : "#d0d4da"}
              stroke-width="1"
            />
            <text x={left - 5} y={y(t) + 4} text-anchor="end" font-size="12" fill="#3d4451" data-testid="y-tick">
              {tickLabel(t)}
            </text>
          </g>
        ))}
        <line x1={left} x2={left} y1={top} y2={top + plotH} stroke="#3d4451" stroke-width="1" />
        {days.map((d, i) => {
          const x0 = left + i * slot + (slot - 2 * barW - 2) / 2;
          return (
            <g>
              {SERIES.map((s, j) => (
                <rect
                  x={x0 + j * (barW + 2)}
                  y={y(d[s.key])}
                  width={barW}
                  height={Math.max(0, top + plotH - y(d[s.key]))}
                  fill={s.color}
                  data-series={s.key}
                >
                  <title>{`${d.day}, ${s.label}: ${credits(d[s.key])} credits`}</title>
                </rect>
              ))}
              <text x={left + i * slot + slot / 2} y={H - 6} text-anchor="middle" font-size="12" fill="#3d4451">
                {d.day.slice(5)}
              </text>
            </g>
          );
        })}
      </svg>
      <ul class="legend">
        {SERIES.map((s) => (
          <li data-testid="legend">
            <span class={`swatch sw-${s.key}`} aria-hidden="true" />
            {s.label}
          </li>
        ))}
      </ul>
      <figcaption class="small">
        Per UTC day, last {days.length} days. Window usage is what your plan's windows covered (usage a reset forgave is
        left out); credits spent is what credits and flexible billing paid.
      </figcaption>
      <details>
        <summary>The numbers per day</summary>
        <div class="table-box">
          <table>
            <caption class="sr-only">Window usage and credits spent per UTC day, in credits</caption>
            <thead>
              <tr>
                <th scope="col">Day (UTC)</th>
                <th scope="col">Window usage</th>
                <th scope="col">Credits spent</th>
              </tr>
            </thead>
            <tbody>
              {days.map((d) => (
                <tr data-testid="chart-row">
                  <th scope="row">{d.day}</th>
                  <td>{credits(d.window)}</td>
                  <td>{credits(d.credits)}</td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      </details>
    </figure>
  );
};

/** Credit grants in the order they are spent (an account's, or an organization pool's). */
export const GrantsTable: FC<{
  grants: readonly { kind: string; remaining: number; products: readonly string[] | null; expiresAt: string | null }[];
  now: number;
  caption: string;
  testid: string;
}> = ({ grants, now, caption, testid }) => (
  <div class="table-box">
    <table>
      <caption class="sr-only">{caption}, spent in this order</caption>
      <thead>
        <tr>
          <th scope="col">Kind</th>
          <th scope="col">Remaining</th>
          <th scope="col">For</th>
          <th scope="col">Expires</th>
        </tr>
      </thead>
      <tbody>
        {grants.map((g) => (
          <tr data-testid={testid}>
            <td>{g.kind}</td>
            <td>{credits(g.remaining)}</td>
            <td>{g.products ? g.products.map(productName).join(", ") : "all products"}</td>
            <td>{g.expiresAt ? <Time ms={Date.parse(g.expiresAt)} now={now} /> : "never"}</td>
          </tr>
        ))}
      </tbody>
    </table>
  </div>
);

const BankedNext: FC<{ rule: PanelView["bankedResets"]; now: number }> = ({ rule, now }) => {
  if (!rule) return <p data-testid="banked-next">Your plan does not accrue banked resets.</p>;
  const every = `one every ${rule.everyDays} days, up to ${rule.max}`;
  if (!rule.nextAt) return <p data-testid="banked-next">Banked resets accrue from your first request: {every}.</p>;
  const next = Date.parse(rule.nextAt);
  return rule.atMax ? (
    <p data-testid="banked-next">
      You are at the maximum ({rule.max}), so none accrues now. After you use one, the next accrues at{" "}
      <When ms={next} now={now} />.
    </p>
  ) : (
    <p data-testid="banked-next">
      Next banked reset accrues at <When ms={next} now={now} />; {every}.
    </p>
  );
};

const Activity: FC<{ activity: ActivityEntry[] | null; now: number }> = ({ activity, now }) => {
  if (activity === null)
    return (
      <p data-testid="activity-unavailable">Recent activity cannot be shown right now. Reload the page to try again.</p>
    );
  if (activity.length === 0)
    return <p data-testid="no-activity">Nothing has been recorded yet. New entries appear within a few seconds.</p>;
  return (
    <div class="table-box">
      <table>
        <caption class="sr-only">Your last {activity.length} ledger entries, newest first</caption>
        <thead>
          <tr>
            <th scope="col">Time</th>
            <th scope="col">Entry</th>
            <th scope="col">Credits</th>
            <th scope="col">Product</th>
          </tr>
        </thead>
        <tbody>
          {activity.map((e) => (
            <tr data-testid="activity">
              <td>
                <Time ms={e.createdAt} now={now} />
              </td>
              <td>
                {e.kind}
                {e.layer ? <span class="small"> · {LAYER_NAMES.get(e.layer) ?? e.layer}</span> : null}
              </td>
              <td>{credits(e.amount)}</td>
              <td>{e.product ? productName(e.product) : "—"}</td>
            </tr>
          ))}
        </tbody>
      </table>
    </div>
  );
};

const STYLE = `
*{box-sizing:border-box}body{margin:0;font:16px/1.5 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:#1a1a1a;background:#f6f7f9}
main{max-width:760px;margin:0 auto;padding:16px;overflow-wrap:break-word}.id{overflow-wrap:anywhere}h1{font-size:1.4rem;margin:.2em 0}h2{font-size:1.1rem;margin:0 0 .5em}
section{background:#fff;border:1px solid #d0d4da;border-radius:8px;padding:16px;margin:12px 0}
.row{display:flex;justify-content:space-between;gap:8px;flex-wrap:wrap}.small{font-size:.875rem;color:#3d4451}
.bar{height:12px;background:#e3e6ea;border-radius:6px;overflow:hidden;margin:4px 0}.bar>div{height:100%;background:#0b5cad}.bar.full>div{background:#b3261e}
.window{margin:10px 0}.alert{border-color:#b3261e;background:#fdf0ef}.notice{border-color:#0b5cad;background:#eef4fb}
.alert a:not(.button){color:#8a1c15}ul.plain{margin:0 0 .5em;padding-left:1.2em}
a.button,button{display:inline-block;background:#0b5cad;color:#fff;border:0;border-radius:6px;padding:8px 14px;font:inherit;text-decoration:none;cursor:pointer}
button:disabled{background:#6b7280;cursor:not-allowed}table{width:100%;border-collapse:collapse}th,td{text-align:left;padding:4px 6px;border-bottom:1px solid #e3e6ea;vertical-align:top}
.table-box{max-width:100%;overflow-x:auto}
.chart{width:100%;height:auto;max-height:240px}label{margin-right:8px}select{font:inherit;padding:6px;margin-right:8px}
figure{margin:0}.legend{list-style:none;padding:0;margin:8px 0;display:flex;flex-wrap:wrap;gap:4px 16px}
.swatch{display:inline-block;width:12px;height:12px;border-radius:2px;margin-right:6px;vertical-align:-1px}.sw-window{background:#0b5cad}.sw-credits{background:#c2410c}
details{margin-top:8px}summary{cursor:pointer}
.sr-only{position:absolute;width:1px;height:1px;overflow:hidden;clip:rect(0 0 0 0);clip-path:inset(50%);white-space:nowrap}
@media (max-width:480px){main{padding:8px}section{padding:12px}table{font-size:.875rem}th,td{padding:4px 3px}}
`;

/**
 * Every panel page: the doctype keeps browsers out of quirks mode. Inline CSS (the <style> element and the bars'
 * style attributes) and, on the panel itself, one script from the panel's own origin (/panel/time.js: local times,
 * an enhancement; the page works without it). Nothing else is fetched: the CSP in routes/panel.tsx allows just that.
 */
export const Document: FC<{ title: string; script?: boolean; children?: Child }> = ({ title, script, children }) => (
  <>
    {raw("<!doctype html>")}
    <html lang="en">
      <head>
        <meta charset="utf-8" />
        <meta name="viewport" content="width=device-width, initial-scale=1" />
        <title>{title}</title>
        <style>{raw(STYLE)}</style>
        {script ? <script src="/panel/time.js" defer /> : null}
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

export const PanelPage: FC<PanelProps> = ({ summary, view, activity, token, now, addCreditsHref, notice }) => {
  const a = summary.credits.autoTopUp;
  const cap = summary.spendCap;
  const noticeText = notice === undefined ? undefined : NOTICES.get(notice);
  return (
    <Document title={`Usage · ${summary.accountId}`} script>
      <main>
        <h1>Your usage</h1>
        <p class="small id">
          Account <strong>{summary.accountId}</strong> · plan <strong data-testid="plan">{summary.plan}</strong>
        </p>
        <p class="small" id="tz-note" data-testid="tz-note">
          All times are in UTC.
        </p>
        {noticeText ? (
          <section class="notice" role="status">
            {noticeText}
          </section>
        ) : null}
        {summary.paused ? (
          <section class="alert" role="alert" aria-labelledby="h-paused" data-testid="paused">
            <h2 id="h-paused">Credit spending is paused</h2>
            <p>
              Credit spending is paused for your safety; contact support to have it resumed. Usage included in your plan
              still works.
            </p>
          </section>
        ) : null}
        <Limits summary={summary} now={now} href={addCreditsHref} />
        {PRODUCTS.map((p) => (
          <section aria-labelledby={`h-${p}`}>
            <h2 id={`h-${p}`}>{productName(p)}</h2>
            <WindowBar label="5-hour window" w={summary.products[p].fiveHour} now={now} id={`${p}-fiveHour`} />
            <WindowBar label="Weekly window" w={summary.products[p].weekly} now={now} id={`${p}-weekly`} />
          </section>
        ))}
        <section aria-labelledby="h-banked">
          <h2 id="h-banked">Banked resets</h2>
          <p data-testid="banked-available">
            {summary.bankedResets.available} of {summary.bankedResets.max} available
          </p>
          <BankedNext rule={view.bankedResets} now={now} />
          {summary.bankedResets.items.length > 0 ? (
            <ul>
              {summary.bankedResets.items.map((i) =>
                i.expiresAt ? (
                  <li>
                    Expires at <Time ms={Date.parse(i.expiresAt)} now={now} />
                  </li>
                ) : (
                  <li>Does not expire</li>
                ),
              )}
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
            <GrantsTable grants={summary.credits.grants} now={now} caption="Credit grants" testid="grant" />
          ) : (
            <p class="small">No credit grants.</p>
          )}
          <p class="small" data-testid="auto-top-up">
            Auto top-up:{" "}
            {a.enabled
              ? `on: ${credits(a.amount)} credits when below ${credits(a.threshold)}, at most ${a.maxPerMonth} a month${a.pending ? " (one pending)" : ""}`
              : "off"}
          </p>
          {summary.credits.flex ? (
            <p class="small">
              Flexible billing this month: {credits(summary.credits.flex.used)} of {credits(summary.credits.flex.limit)}{" "}
              credits
            </p>
          ) : null}
          <h3 class="small">Daily spend cap</h3>
          {cap ? (
            <>
              <p data-testid="spend-cap">
                {credits(cap.spentToday)} of {credits(cap.dailyLimit)} credits spent today (UTC)
              </p>
              <p class="small">
                {cap.spentToday >= cap.dailyLimit ? "Reached: credit spending resumes" : "The count starts again"} at{" "}
                <When ms={nextUtcMidnight(now)} now={now} />.
              </p>
            </>
          ) : (
            <p data-testid="spend-cap">No daily spend cap.</p>
          )}
        </section>
        <section aria-labelledby="h-holds">
          <h2 id="h-holds">Work in progress</h2>
          {summary.holds.length > 0 ? (
            <>
              <p class="small">
                Holds reserve usage for work whose cost is known when it finishes; what it does not use is released.
              </p>
              <div class="table-box">
                <table>
                  <caption class="sr-only">Active holds</caption>
                  <thead>
                    <tr>
                      <th scope="col">Product</th>
                      <th scope="col">Reserved credits</th>
                      <th scope="col">Expires</th>
                    </tr>
                  </thead>
                  <tbody>
                    {summary.holds.map((h) => (
                      <tr data-testid="hold">
                        <td>{productName(h.product)}</td>
                        <td>{credits(h.amount)}</td>
                        <td>
                          <Time ms={Date.parse(h.expiresAt)} now={now} />
                        </td>
                      </tr>
                    ))}
                  </tbody>
                </table>
              </div>
            </>
          ) : (
            <p class="small" data-testid="no-holds">
              No work in progress holds any usage.
            </p>
          )}
        </section>
        <section aria-labelledby="h-spend">
          <h2 id="h-spend">Usage and spending</h2>
          <SpendChart days={view.days} />
        </section>
        <section aria-labelledby="h-activity">
          <h2 id="h-activity">Recent activity</h2>
          <p class="small">
            Your last 20 ledger entries, newest first. An entry appears a few seconds after it happens.
          </p>
          <Activity activity={activity} now={now} />
        </section>
      </main>
    </Document>
  );
};

export const PanelError: FC<{ message: string; heading?: string }> = ({
  message,
  heading = "This link does not work",
}) => (
  <Document title="Usage panel">
    <main>
      <section class="alert" role="alert">
        <h1>{heading}</h1>
        <p>{message}</p>
      </section>
    </main>
  </Document>
);
