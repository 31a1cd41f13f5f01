/**
 * Where the panel's "Add credits" link goes. The billing page gets the account and a URL to send the user back to.
 * That return URL is the panel's address without the link token: the token is a credential, valid 15 minutes, and
 * must not reach another site (or its logs). The token-less panel says how to open a fresh link from the product.
 */

/** `${base}/panel` with `base` = PANEL_BASE_URL when set, else the origin the panel was served from. */
export function panelReturnUrl(panelBaseUrl: string, requestOrigin: string): string {
  return `${(panelBaseUrl || requestOrigin).replace(/\/+$/, "")}/panel`;
}

/** `BILLING_URL` with `account` and `return` added to its query; null unless it is an absolute http(s) URL. */
export function addCreditsUrl(billingUrl: string, accountId: string, returnUrl: string): string | null {
  if (!billingUrl || !URL.canParse(billingUrl)) return null;
  const url = new URL(billingUrl);
  if (url.protocol !== "https:" && url.protocol !== "http:") return null;
  url.searchParams.set("account", accountId);
  url.searchParams.set("return", returnUrl);
  return url.toString();
}
