// Secrets are not in wrangler.toml, so `wrangler types` cannot see them.
interface Secrets {
  SERVICE_TOKEN?: string;
  ADMIN_TOKEN?: string;
  PANEL_SECRET?: string;
  WEBHOOK_URL?: string;
  /** Standard Webhooks signing secret, `whsec_<base64 of 24–64 key bytes>`; required when WEBHOOK_URL is set. */
  WEBHOOK_SECRET?: string;
}
interface Env extends Secrets {}
declare namespace Cloudflare {
  interface Env extends Secrets {}
}
