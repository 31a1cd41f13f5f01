/** Base64 as the engine's signed values use it: standard (webhook signatures, CSP hashes) and URL-safe unpadded (tokens, cookies). */

export const base64 = (bytes: ArrayBuffer | Uint8Array): string => btoa(String.fromCharCode(...new Uint8Array(bytes)));

export const base64url = (bytes: ArrayBuffer | Uint8Array): string =>
  base64(bytes).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");

/** Decodes standard or URL-safe base64; throws on characters outside either alphabet. */
export const fromBase64 = (s: string): Uint8Array<ArrayBuffer> =>
  Uint8Array.from(atob(s.replace(/-/g, "+").replace(/_/g, "/")), (c) => c.charCodeAt(0));
