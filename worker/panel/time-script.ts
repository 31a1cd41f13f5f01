/**
 * GET /panel/time.js: the panel's only script, a progressive enhancement. The page shows every time in UTC inside
 * `<time datetime="…">`; this rewrites each in the viewer's time zone (the UTC text becomes its tooltip) and says
 * which zone. Served from the panel's own origin under `script-src 'self'`; it sets text only, never markup.
 */
export const TIME_SCRIPT = `"use strict";
(() => {
  const zone = Intl.DateTimeFormat().resolvedOptions().timeZone || "your time zone";
  const zoneName = (d) => {
    const part = new Intl.DateTimeFormat("en-US", { timeZoneName: "short" }).formatToParts(d).find((p) => p.type === "timeZoneName");
    return part ? part.value : "";
  };
  const pad = (n) => String(n).padStart(2, "0");
  const day = (d) => d.getFullYear() + "-" + pad(d.getMonth() + 1) + "-" + pad(d.getDate());
  const today = day(new Date());
  for (const el of document.querySelectorAll("time[datetime]")) {
    const d = new Date(el.getAttribute("datetime"));
    if (Number.isNaN(d.getTime())) continue;
    const clock = (pad(d.getHours()) + ":" + pad(d.getMinutes()) + " " + zoneName(d)).trim();
    el.title = el.textContent;
    el.textContent = day(d) === today ? clock : day(d) + " " + clock;
  }
  const note = document.getElementById("tz-note");
  if (note) note.textContent = "Times are in your time zone (" + zone + "); each time's tooltip gives it in UTC.";
  document.documentElement.dataset.localTime = "done";
})();
`;
