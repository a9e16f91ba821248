// The configuration the server substitutes for __CLICKTRAIL_CONFIG__
// (docs/COLLECTOR.md, "Tag configuration"), and the interface between the
// main tag and its extension (src/ext.ts). The server always sends every
// field of Config; the optional ones of Pattern and Group are skipped when
// empty or default (crates/domain/src/links.rs).

/** One way a network's links look (`LinkPattern`). */
export interface Pattern {
  hosts: string[];
  paths?: string[];
  query?: string[];
}

/** A tracking group (`TrackingGroup`). */
export interface Group {
  key: string;
  aliases: string[];
  param: string;
  /** Where the subid goes; absent means `query`. */
  placement?: 'query' | 'path_segment';
  patterns: Pattern[];
}

export interface Config {
  v: number;
  property: string;
  collect: string;
  /** null: AutoScan off. */
  scan: string | null;
  /** Absolute URL of the extension script (`GET /t/ext/{build hash}.js`). */
  ext: string;
  groups: Group[];
  autoscan_prefixes: string[];
  session_timeout_min: number;
  consent_required: boolean;
  pixels: { meta: boolean; google: boolean; tiktok: boolean };
}

export type Obj = Record<string, any>;

/** The hashes `identify` keeps and sends as `user`. */
export interface User {
  em?: string;
  ph?: string;
}

/**
 * What the extension hands the main tag (README, "Extension"). The member
 * names are the protocol between two separately built files: short, and
 * never mangled.
 */
export interface Ext {
  /**
   * Pixels: fires the page's fbq / gtag / ttq, as `on` allows, for the event
   * `e` just sent (as on the wire): an OutboundClick or a `track` event. Not
   * for PageView (the pixels' own snippets send theirs).
   */
  p(on: Config['pixels'], e: Obj): void;
  /** identify: `user` plus the SHA-256 of the normalised email and phone given. */
  h(a: { email?: unknown; phone?: unknown }, user: User | undefined): Promise<User>;
  /**
   * AutoScan: the group the scan endpoint named for the same-site redirect
   * link `u` (asked by origin and path), if known. A link not asked yet is
   * queued; answers come in batches, then `retag` runs.
   */
  s(u: URL, C: Config, retag: () => void): Group | undefined;
  /**
   * Forms: AutoTag for every `<form action>`, with the main tag's `tag`
   * (tagElement on the `action` attribute); a GET form of a group also gets
   * its subid as a hidden field.
   */
  f(tag: (el: Element, attr: string) => [id: string, pageview: string, group: Group | undefined, url: string] | undefined): void;
}
