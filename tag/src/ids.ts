// Ids: UUIDv7 event ids, click ids (docs/COLLECTOR.md "Click ids",
// crates/domain/src/clickid.rs), random tokens and SHA-256 hex.

/** `n` random bytes (crypto.getRandomValues: every browser that runs ES2020 has it, on http too). */
export const rnd = (n: number): Uint8Array => crypto.getRandomValues(new Uint8Array(n));

/** base64url, padded: callers pick byte counts that need no padding, or cut it. */
export const b64 = (a: Uint8Array): string =>
  btoa(String.fromCharCode(...a))
    .replace(/\+/g, '-')
    .replace(/\//g, '_');

export const hex = (a: Uint8Array): string => Array.from(a, (b) => (b | 256).toString(16).slice(1)).join('');

/** The 16 bytes of a new UUIDv7: 48 bits of milliseconds, version, variant, random. */
export const uuid7 = (): Uint8Array => {
  const a = rnd(16);
  for (let i = 6, t = Date.now(); i--; t /= 256) a[i] = t;
  a[6] = (a[6] & 15) | 112;
  a[8] = (a[8] & 63) | 128;
  return a;
};

/** Lower-case hyphenated form of UUID bytes. */
export const uuidText = (a: Uint8Array): string => hex(a).replace(/(.{8})(.{4})(.{4})(.{4})/, '$1-$2-$3-$4-');

/** A click id: base64url of the pageview's UUID bytes (22) + 6 random characters. */
export const clickId = (pageview: Uint8Array): string => b64(pageview).slice(0, 22) + b64(rnd(6)).slice(2);

/** SHA-256 hex (rejects where crypto.subtle is missing: plain-http pages). */
export const sha256 = async (s: string): Promise<string> =>
  hex(new Uint8Array(await crypto.subtle.digest('SHA-256', new TextEncoder().encode(s))));
