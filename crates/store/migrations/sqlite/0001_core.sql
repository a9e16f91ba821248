-- clicktrail core schema (SQLite). Times are integer milliseconds since the
-- Unix epoch; money is integer micro-units; JSON is TEXT. The PostgreSQL
-- schema in ../postgres mirrors this one column for column.

CREATE TABLE workspaces (
    id          INTEGER PRIMARY KEY,
    name        TEXT NOT NULL UNIQUE,
    created_at  INTEGER NOT NULL
);

CREATE TABLE api_tokens (
    id            INTEGER PRIMARY KEY,
    workspace_id  INTEGER NOT NULL REFERENCES workspaces(id),
    name          TEXT NOT NULL,
    token_hash    TEXT NOT NULL UNIQUE,
    prefix        TEXT NOT NULL,
    created_at    INTEGER NOT NULL,
    last_used_at  INTEGER,
    revoked_at    INTEGER
);

CREATE TABLE properties (
    id            TEXT PRIMARY KEY,
    workspace_id  INTEGER NOT NULL REFERENCES workspaces(id),
    name          TEXT NOT NULL,
    domains       TEXT NOT NULL,
    settings      TEXT NOT NULL,
    created_at    INTEGER NOT NULL,
    updated_at    INTEGER NOT NULL
);
CREATE INDEX properties_workspace ON properties(workspace_id);

CREATE TABLE sessions (
    id              INTEGER PRIMARY KEY,
    property_id     TEXT NOT NULL,
    visitor_id      TEXT NOT NULL,
    started_at      INTEGER NOT NULL,
    last_seen_at    INTEGER NOT NULL,
    campaign_hash   TEXT,
    session_hint    TEXT,
    landing_url     TEXT NOT NULL,
    landing_page    TEXT NOT NULL,
    referrer        TEXT,
    referrer_host   TEXT,
    utm_source      TEXT,
    utm_medium      TEXT,
    utm_campaign    TEXT,
    utm_term        TEXT,
    utm_content     TEXT,
    utm_id          TEXT,
    source          TEXT NOT NULL,
    medium          TEXT NOT NULL,
    channel         TEXT NOT NULL,
    click_ids       TEXT,
    gclid           TEXT,
    gbraid          TEXT,
    wbraid          TEXT,
    fbclid          TEXT,
    fbc             TEXT,
    fbp             TEXT,
    ttclid          TEXT,
    ttp             TEXT,
    msclkid         TEXT,
    browser         TEXT,
    browser_version TEXT,
    os              TEXT,
    os_version      TEXT,
    device          TEXT NOT NULL,
    is_bot          INTEGER NOT NULL,
    user_agent      TEXT,
    ip              TEXT,
    em_hash         TEXT,
    ph_hash         TEXT,
    pageviews       INTEGER NOT NULL,
    events          INTEGER NOT NULL
);
CREATE INDEX sessions_visitor ON sessions(property_id, visitor_id, id);
CREATE INDEX sessions_started ON sessions(property_id, started_at);

CREATE TABLE events (
    id            INTEGER PRIMARY KEY,
    property_id   TEXT NOT NULL,
    event_id      TEXT NOT NULL,
    name          TEXT NOT NULL,
    ts            INTEGER NOT NULL,
    client_ts     INTEGER NOT NULL,
    session_id    INTEGER NOT NULL,
    visitor_id    TEXT NOT NULL,
    url           TEXT NOT NULL,
    title         TEXT,
    pageview_id   TEXT,
    click_id      TEXT,
    link_url      TEXT,
    link_group    TEXT,
    value_micros  INTEGER,
    currency      TEXT,
    props         TEXT
);
CREATE UNIQUE INDEX events_dedup ON events(property_id, event_id);

CREATE TABLE clicks (
    id            INTEGER PRIMARY KEY,
    property_id   TEXT NOT NULL,
    click_id      TEXT NOT NULL,
    origin        TEXT NOT NULL,
    ts            INTEGER NOT NULL,
    session_id    INTEGER NOT NULL,
    visitor_id    TEXT NOT NULL,
    event_id      TEXT,
    pageview_id   TEXT,
    page_url      TEXT,
    link_url      TEXT,
    link_group    TEXT,
    link_text     TEXT
);
CREATE UNIQUE INDEX clicks_click_id ON clicks(property_id, click_id);

-- Hourly aggregates per property and report dimension, maintained on
-- ingest so report pages never scan events. `dim` is the dimension
-- (channel, source_medium, campaign, ad, landing_page, offer, integration,
-- total), `key` its value.
CREATE TABLE rollup_hourly (
    property_id     TEXT NOT NULL,
    hour            INTEGER NOT NULL,
    dim             TEXT NOT NULL,
    key             TEXT NOT NULL,
    is_bot          INTEGER NOT NULL,
    visits          INTEGER NOT NULL DEFAULT 0,
    pageviews       INTEGER NOT NULL DEFAULT 0,
    clicks          INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (property_id, dim, hour, key, is_bot)
);

-- Server-wide facts: the key check value of the credential encryption key
-- (so a start with the wrong key fails loudly instead of failing decrypts).
CREATE TABLE server_meta (
    key    TEXT PRIMARY KEY,
    value  TEXT NOT NULL
);
