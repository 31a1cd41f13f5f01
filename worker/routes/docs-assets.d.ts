// swagger-ui-dist files that wrangler.toml's [[rules]] bundle as text modules (worker/routes/docs.ts):
// importing one gives its contents as a string.
declare module "swagger-ui-dist/swagger-ui.css" {
  const text: string;
  export default text;
}
declare module "swagger-ui-dist/swagger-ui-bundle.js" {
  const text: string;
  export default text;
}
