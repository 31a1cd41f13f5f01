/**
 * The organization admin panel (GET /org-panel?token=…): the pool and what each member drew from it, for the
 * organization's admins, behind a signed link like the usage panel's (same Document, styles and CSP). Read-only.
 */
import type { FC } from "hono/jsx";
import type { OrgView } from "../core/org";
import { credits, Document, GrantsTable, Time } from "./page";

export interface OrgPanelProps {
  org: OrgView;
  now: number;
}

const limitText = (micro: number | null) => (micro === null ? "no limit" : credits(micro));

export const OrgPanelPage: FC<OrgPanelProps> = ({ org, now }) => {
  const { pool, flex } = org;
  return (
    <Document title={`Organization · ${org.orgId}`} script>
      <main>
        <h1>Your organization's credits</h1>
        <p class="small id">
          Organization <strong data-testid="org-id">{org.orgId}</strong> · plan{" "}
          <strong data-testid="org-plan">{org.plan}</strong>
        </p>
        <p class="small" data-testid="tz-note">
          All times are in UTC.
        </p>
        {org.paused ? (
          <section class="alert" role="alert" aria-labelledby="h-paused" data-testid="org-paused">
            <h2 id="h-paused">Pool spending is paused</h2>
            <p>
              A spike in what members drew from the pool paused it for your safety: members cannot draw pool credits
              until support resumes it. Each member's own plan and credits still work.
            </p>
          </section>
        ) : null}
        <section aria-labelledby="h-pool">
          <h2 id="h-pool">Pool</h2>
          <p>
            Balance <strong data-testid="pool-balance">{credits(pool.balance)}</strong> credits
          </p>
          <div class="table-box">
            <table>
              <caption class="sr-only">The pool's credits</caption>
              <tbody>
                <tr>
                  <th scope="row">Out with members (leased, spent or not)</th>
                  <td data-testid="pool-leased">{credits(pool.leased)}</td>
                </tr>
                <tr>
                  <th scope="row">Spent by members</th>
                  <td data-testid="pool-spent">{credits(pool.spent)}</td>
                </tr>
                <tr>
                  <th scope="row">Granted in total</th>
                  <td data-testid="pool-granted">{credits(pool.granted)}</td>
                </tr>
                <tr>
                  <th scope="row">Expired</th>
                  <td data-testid="pool-expired">{credits(pool.expired)}</td>
                </tr>
              </tbody>
            </table>
          </div>
          <p data-testid="pool-flex">
            {flex
              ? `Flexible billing this month: ${credits(flex.used)} of ${credits(flex.limit)} credits`
              : "Flexible billing: off"}
          </p>
          <p data-testid="pool-status">Pool spending: {org.paused ? "paused" : "active"}</p>
          <h3 class="small">Grants</h3>
          {org.grants.length > 0 ? (
            <GrantsTable grants={org.grants} now={now} caption="The pool's credit grants" testid="pool-grant" />
          ) : (
            <p class="small" data-testid="no-pool-grants">
              No pool credits left.
            </p>
          )}
        </section>
        <section aria-labelledby="h-members">
          <h2 id="h-members">Members</h2>
          <p class="small">
            What each member drew from the pool, as it last reported it (each time it asks the pool for credits, and
            when its lease is returned): spend since then is not shown yet. Limits are what a member may draw from the
            pool per UTC day and calendar month.
          </p>
          {org.members.length > 0 ? (
            <div class="table-box">
              <table>
                <caption class="sr-only">Members and their pool spend, in credits</caption>
                <thead>
                  <tr>
                    <th scope="col">Account</th>
                    <th scope="col">Today</th>
                    <th scope="col">This month</th>
                    <th scope="col">Daily limit</th>
                    <th scope="col">Monthly limit</th>
                    <th scope="col">Leased now</th>
                    <th scope="col">Reported</th>
                  </tr>
                </thead>
                <tbody>
                  {org.members.map((m) => (
                    <tr data-testid="member" data-account={m.accountId}>
                      <th scope="row" class="id">
                        {m.accountId}
                      </th>
                      <td>{credits(m.spentToday)}</td>
                      <td>{credits(m.spentThisMonth)}</td>
                      <td>{limitText(m.dailyLimit)}</td>
                      <td>{limitText(m.monthlyLimit)}</td>
                      <td>{credits(m.leased)}</td>
                      <td>{m.reportedAt ? <Time ms={Date.parse(m.reportedAt)} now={now} /> : "not yet"}</td>
                    </tr>
                  ))}
                </tbody>
              </table>
            </div>
          ) : (
            <p class="small" data-testid="no-members">
              No members.
            </p>
          )}
        </section>
        <section aria-labelledby="h-top">
          <h2 id="h-top">Top spenders this month</h2>
          {org.topSpenders.length > 0 ? (
            <ol data-testid="top-spenders">
              {org.topSpenders.map((t) => (
                <li data-testid="top-spender" data-account={t.accountId}>
                  <span class="id">{t.accountId}</span>: {credits(t.spentThisMonth)} credits this month,{" "}
                  {credits(t.spentToday)} today
                </li>
              ))}
            </ol>
          ) : (
            <p class="small" data-testid="no-top-spenders">
              No member has drawn from the pool this month.
            </p>
          )}
        </section>
      </main>
    </Document>
  );
};
