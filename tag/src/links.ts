// Link rules: which tracking group a link belongs to and how its href is
// rewritten. Pure functions over strings and URLs, no DOM. The same rules
// live in crates/domain/src/links.rs; tests/fixtures/links.json is run by
// both test suites. tag/README.md explains the choices. (Written for size:
// this file ships in every page.)

import type { Group } from './types';

const TOKEN = /--CLICK-ID--/i;
/** `s` as a literal inside a RegExp. */
const esc = (s: string) => s.replace(/\W/g, '\\$&');

/** Glob match, case-insensitive; `*` matches any run of characters. */
export const glob = (pattern: string, text: string): boolean =>
  RegExp('^' + esc(pattern).replace(/\\\*/g, '[^]*') + '$', 'i').test(text);

/** Whether an http(s) URL is one of the group's links. */
export const matches = (g: Group, u: URL): boolean =>
  g.patterns.some(
    (p) =>
      p.hosts.some((h) => glob(h, u.hostname)) &&
      (p.paths?.[0] ? p.paths : ['*']).some((x) => glob(x, u.pathname)) &&
      // `amp;name` is what a browser sends for an href holding `&amp;name=`.
      (p.query || []).every((n) => u.searchParams.has(n) || u.searchParams.has('amp;' + n)),
  );

/** The group a `data-tracking-group` value or `rel` token names (key or alias, any case). */
export const byName = (groups: Group[], name: string): Group | undefined =>
  groups.find((g) => [g.key, ...g.aliases].some((n) => n.toLowerCase() == name.trim().toLowerCase()));

/**
 * The href trimmed as a browser trims it, and the absolute URL it points to
 * from `base`, when the rules may touch it: http(s) or relative, parseable,
 * not empty, not fragment-only, no tab or line break inside.
 */
export const resolve = (href: string, base: string): [string, URL] | undefined => {
  const h = href.replace(/^[\0- ]+|[\0- ]+$/g, '');
  try {
    // (A non-http(s) scheme, javascript: or mailto: say, gives a non-http(s) URL.)
    const u = new URL(h, base);
    if (/^(?!#)[^\t\n\r]+$/.test(h) && /^https?:$/.test(u.protocol)) return [h, u];
  } catch {
    // not a URL: untouchable
  }
  return undefined;
};

/** The trimmed href when the rules may touch it at all (see resolve). */
export const touchable = (href: string): string | undefined => resolve(href, 'https://base.invalid/')?.[0];

/**
 * Sets the subid parameter `param` to `id` on the raw href text: filled where
 * present (every occurrence), else added before an unencoded deep-link
 * parameter (`asclurl=https://...`) or at the end of the query. `&amp;` in
 * the query is repaired to `&`. Nothing else changes. Idempotent. `h` must
 * be touchable (see setSubid for the checked form).
 */
const query = (h: string, param: string, id: string): string => {
  let [, path, q, fragment] = /^([^?#]*)\??([^#]*)([^]*)/.exec(h)!;
  let found: unknown;
  // Between sentinel `&`s every field is `&field` followed by `&`; `&amp;`
  // (even `&amp;amp;`) is `&`.
  q = ('&' + q.replace(/&(amp;)+/g, '&') + '&').replace(RegExp('&' + esc(param) + '(=[^&]*)?(?=&)', 'g'), () => (found = '&' + param + '=' + id) as string);
  if (!found)
    // Before the first deep link, else at the end (taking the place of an
    // empty last field: `?a=1&`).
    q = q.replace(/&(?=[^&=]*=https?:)|&?&$/i, '&' + param + '=' + id + '&');
  return path + '?' + q.slice(1, -1) + fragment;
};

/**
 * Sets the subid as a path segment `/<param>:<id>` (Partnerize's
 * `/pubref:<id>`): every segment starting with `<param>:` is set, else one is
 * inserted after the first `camref:` segment. A link with neither (a
 * cloaked link tagged by hand, say) gets the query parameter instead, which
 * a redirect plugin can forward. Only the path is read or changed.
 * Idempotent; `h` must be touchable.
 */
const segment = (h: string, param: string, id: string): string => {
  const [, path, rest] = /^([^?#]*)([^]*)/.exec(h)!;
  const ours = '/' + param + ':' + id;
  let found: unknown;
  let p = path.replace(RegExp('/' + esc(param) + ':[^/]*', 'g'), () => (found = ours) as string);
  if (!found && p == (p = p.replace(/\/camref:[^/]*/, '$&' + ours))) return query(h, param, id);
  return p + rest;
};

/** The group's subid (if any group) set on a touchable href, where the group puts it. */
const place = (h: string, g: Pick<Group, 'param' | 'placement'> | undefined, id: string): string =>
  g ? (g.placement == 'path_segment' ? segment : query)(h, g.param, id) : h;

/** The rewrite of a tracked, touchable href: `--CLICK-ID--`, then the group's subid if any. */
export const rewrite = (h: string, g: Group | undefined, id: string): string => place(h.split(TOKEN).join(id), g, id);

/**
 * The group's subid set on any href: undefined when the href is untouchable
 * or `param` not a plain name. (Tests and tools; the tag uses rewrite.)
 */
export const setSubid = (href: string, param: string, id: string, placement?: Group['placement']): string | undefined => {
  const h = touchable(href);
  // (No `/` in a path segment's name.)
  return h != null && /^[^\s&=#?]+$/.test(param) && !(placement == 'path_segment' && param.includes('/'))
    ? place(h, { param, placement }, id)
    : undefined;
};

/** Every `--CLICK-ID--` (any case) replaced by `id`; undefined when untouchable. */
export const replaceToken = (href: string, id: string): string | undefined => {
  const h = touchable(href);
  return h != null ? rewrite(h, undefined, id) : undefined;
};

/** What the rules read of a link element: its attributes. */
export interface Attrs {
  getAttribute(name: string): string | null | undefined;
}

/**
 * Whether a link is tracked, and in which group: `[trimmed href, group]`
 * (no group for a link tracked only through `--CLICK-ID--`), or undefined
 * when the link is left alone. `el` is the element (for its attributes).
 * Manual tagging first (`data-tracking-group`, then `rel` tokens), then the
 * URL, then `extra` (AutoScan answers).
 */
export const linkGroup = (
  groups: Group[],
  base: string,
  href: string,
  el: Attrs,
  extra?: (u: URL) => Group | undefined,
): [string, Group | undefined] | undefined => {
  const r = resolve(href, base);
  const manual = el.getAttribute('data-tracking-group') || '';
  if (!r || /^\s*none\s*$/i.test(manual)) return undefined;
  const g =
    [manual, ...(el.getAttribute('rel') || '').split(/[\t\n\f\r ]/)].map((t) => byName(groups, t)).find((x) => x) ||
    groups.find((x) => matches(x, r[1])) ||
    extra?.(r[1]);
  return g || TOKEN.test(href) ? [r[0], g] : undefined;
};

/** linkGroup and rewrite together: what AutoTag does to one link. */
export const tagLink = (
  groups: Group[],
  base: string,
  href: string,
  el: Attrs,
  id: string,
): { group: Group | undefined; href: string } | undefined => {
  const m = linkGroup(groups, base, href, el);
  return m && { group: m[1], href: rewrite(m[0], m[1], id) };
};
