-- clicktrail core schema (PostgreSQL). Mirrors ../sqlite/0001_core.sql:
-- times are BIGINT milliseconds, money BIGINT micro-units, JSON as TEXT
-- (the application owns its shape; no query reaches inside it).

CREATE TABLE workspaces (
    id          BIGSERIAL PRIMARY KEY,
    name        TEXT NOT NULL UNIQUE,
    created_at  BIGINT NOT NULL
);

CREATE TABLE api_tokens (
    id            BIGSERIAL PRIMARY KEY,
    workspace_id  BIGINT NOT NULL REFERENCES workspaces(id),
    name          TEXT NOT NULL,
    token_hash    TEXT NOT NULL UNIQUE,
    prefix        TEXT NOT NULL,
    created_at    BIGINT NOT NULL,
    last_used_at  BIGINT,
    revoked_at    BIGINT
);

CREATE TABLE properties (
    id            TEXT PRIMARY KEY,
    workspace_id  BIGINT NOT NULL REFERENCES workspaces(id),
    name          TEXT NOT NULL,
    domains       TEXT NOT NULL,
    settings      TEXT NOT NULL,
    created_at    BIGINT NOT NULL,
    updated_at    BIGINT NOT NULL
);
CREATE INDEX properties_workspace ON properties(workspace_id);

CREATE TABLE sessions (
    id              BIGSERIAL PRIMARY KEY,
    property_id     TEXT NOT NULL,
    visitor_id      TEXT NOT NULL,
    started_at      BIGINT NOT NULL,
    last_seen_at    BIGINT NOT NULL,
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
    is_bot          BOOLEAN NOT NULL,
    user_agent      TEXT,
    ip              TEXT,
    em_hash         TEXT,
    ph_hash         TEXT,
    pageviews       BIGINT NOT NULL,
    events          BIGINT NOT NULL
);
CREATE INDEX sessions_visitor ON sessions(property_id, visitor_id, id);
CREATE INDEX sessions_started ON sessions(property_id, started_at);

CREATE TABLE events (
    id            BIGSERIAL PRIMARY KEY,
    property_id   TEXT NOT NULL,
    event_id      TEXT NOT NULL,
    name          TEXT NOT NULL,
    ts            BIGINT NOT NULL,
    client_ts     BIGINT NOT NULL,
    session_id    BIGINT NOT NULL,
    visitor_id    TEXT NOT NULL,
    url           TEXT NOT NULL,
    title         TEXT,
    pageview_id   TEXT,
    click_id      TEXT,
    link_url      TEXT,
    link_group    TEXT,
    value_micros  BIGINT,
    currency      TEXT,
    props         TEXT
);
CREATE UNIQUE INDEX events_dedup ON events(property_id, event_id);

CREATE TABLE clicks (
    id            BIGSERIAL PRIMARY KEY,
    property_id   TEXT NOT NULL,
    click_id      TEXT NOT NULL,
    origin        TEXT NOT NULL,
    ts            BIGINT NOT NULL,
    session_id    BIGINT NOT NULL,
    visitor_id    TEXT NOT NULL,
    event_id      TEXT,
    pageview_id   TEXT,
    page_url      TEXT,
    link_url      TEXT,
    link_group    TEXT,
    link_text     TEXT
);
CREATE UNIQUE INDEX clicks_click_id ON clicks(property_id, click_id);

CREATE TABLE rollup_hourly (
    property_id     TEXT NOT NULL,
    hour            BIGINT NOT NULL,
    dim             TEXT NOT NULL,
    key             TEXT NOT NULL,
    is_bot          BOOLEAN NOT NULL,
    visits          BIGINT NOT NULL DEFAULT 0,
    pageviews       BIGINT NOT NULL DEFAULT 0,
    clicks          BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (property_id, dim, hour, key, is_bot)
);

-- Server-wide facts: the key check value of the credential encryption key
-- (so a start with the wrong key fails loudly instead of failing decrypts).
CREATE TABLE server_meta (
    key    TEXT PRIMARY KEY,
    value  TEXT NOT NULL
);
