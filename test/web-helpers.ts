/**
 * Pages as a browser sees them, for the panel, org panel and console tests: one request with cookies, a form and the
 * test clock (redirects not followed), and reading text, table rows and form fields out of the HTML.
 */
import { exports } from "cloudflare:workers";

export const ORIGIN = "https://engine.test";

export type Form = Record<string, string | string[] | undefined>;
export type Fetcher = (request: Request) => Promise<Response>;

export interface Answer {
  status: number;
  html: string;
  headers: Headers;
  location: string | null;
  /** every Set-Cookie of the answer */
  cookies: string[];
}

/** One browser-like request: cookies, an urlencoded form, the test clock; redirects are not followed. */
export async function web(
  method: "GET" | "POST",
  path: string,
  opts: {
    now: number;
    cookies?: readonly string[];
    form?: Form;
    origin?: string;
    fetcher?: Fetcher;
    headers?: Record<string, string>;
  },
): Promise<Answer> {
  const headers = new Headers({ "X-Test-Now": String(opts.now), ...(opts.headers ?? {}) });
  if (opts.cookies?.length) headers.set("Cookie", opts.cookies.join("; "));
  let body: string | undefined;
  if (opts.form) {
    const params = new URLSearchParams();
    for (const [k, v] of Object.entries(opts.form))
      if (v !== undefined) for (const one of [v].flat()) params.append(k, one);
    body = params.toString();
    if (!headers.has("Content-Type")) headers.set("Content-Type", "application/x-www-form-urlencoded");
  }
  const request = new Request(`${opts.origin ?? ORIGIN}${path}`, { method, headers, body, redirect: "manual" });
  const res = await (opts.fetcher ?? ((r: Request) => exports.default.fetch(r)))(request);
  return {
    status: res.status,
    html: await res.text(),
    headers: res.headers,
    location: res.headers.get("Location"),
    cookies: res.headers.getSetCookie(),
  };
}

/** `name=value` of the named Set-Cookie, or undefined. */
export const cookiePair = (answer: Answer, name: string): string | undefined =>
  answer.cookies.find((c) => c.startsWith(`${name}=`))?.split(";")[0];

export const unescapeHtml = (s: string) =>
  s
    .replace(/&lt;/g, "<")
    .replace(/&gt;/g, ">")
    .replace(/&quot;/g, '"')
    .replace(/&#39;/g, "'")
    .replace(/&#x27;/g, "'")
    .replace(/&amp;/g, "&");

/** The value of the named form field in a page (the first one). */
export function field(html: string, name: string): string {
  const input = new RegExp(`<input[^>]*name="${name}"[^>]*>`).exec(html)?.[0];
  const value = input ? /value="([^"]*)"/.exec(input)?.[1] : undefined;
  if (value === undefined) throw new Error(`no field ${name} in the page`);
  return unescapeHtml(value);
}

/** The text of every element carrying `data-testid="<id>"` (tags stripped, entities decoded, white space collapsed). */
export function texts(html: string, id: string): string[] {
  const out: string[] = [];
  const open = new RegExp(`<([a-zA-Z][a-zA-Z0-9-]*)\\b[^>]*\\sdata-testid="${id}"[^>]*>`, "g");
  for (let m = open.exec(html); m; m = open.exec(html)) {
    const tag = m[1].toLowerCase();
    const tags = new RegExp(`<(/?)${tag}\\b[^>]*>`, "gi");
    tags.lastIndex = m.index + m[0].length;
    let depth = 1;
    let end = html.length;
    for (let t = tags.exec(html); t; t = tags.exec(html)) {
      depth += t[1] ? -1 : 1;
      if (depth === 0) {
        end = t.index;
        break;
      }
    }
    out.push(
      unescapeHtml(html.slice(m.index + m[0].length, end).replace(/<[^>]*>/g, " "))
        .replace(/\s+/g, " ")
        .replace(/\s+([.,;:)])/g, "$1")
        .replace(/\(\s+/g, "(")
        .trim(),
    );
  }
  return out;
}
