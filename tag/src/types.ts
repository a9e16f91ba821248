// The configuration the server substitutes for __CLICKTRAIL_CONFIG__
// (docs/COLLECTOR.md, "Tag configuration"). The server always sends every
// field; the optional ones of LinkPattern are skipped when empty
// (crates/domain/src/links.rs).

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
  patterns: Pattern[];
}

export interface Config {
  v: number;
  property: string;
  collect: string;
  /** null: AutoScan off. */
  scan: string | null;
  groups: Group[];
  autoscan_prefixes: string[];
  session_timeout_min: number;
  consent_required: boolean;
  pixels: { meta: boolean; google: boolean; tiktok: boolean };
}
