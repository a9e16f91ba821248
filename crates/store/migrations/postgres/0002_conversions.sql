-- Conversions in: installed integrations, the conversion log, connector
-- snapshots, tracked redirect links, and conversion rollups for reports.

CREATE TABLE integrations (
    id               TEXT PRIMARY KEY,
    property_id      TEXT NOT NULL REFERENCES properties(id),
    catalog_key      TEXT NOT NULL,
    name             TEXT NOT NULL,
    tracking_group   TEXT NOT NULL,
    subid_param      TEXT NOT NULL,
    postback_token   TEXT NOT NULL UNIQUE,
    credentials_enc  TEXT,
    settings         TEXT NOT NULL,
    event_mapping    TEXT NOT NULL,
    -- active | paused | error
    status           TEXT NOT NULL,
    last_poll_at     BIGINT,
    last_poll_status TEXT,
    last_error_code  TEXT,
    last_error       TEXT,
    next_poll_at     BIGINT,
    poll_failures    BIGINT NOT NULL DEFAULT 0,
    -- A running poll's lease: no other poll of this integration starts
    -- before it expires (or the poll records its outcome).
    polling_until    BIGINT,
    created_at       BIGINT NOT NULL,
    updated_at       BIGINT NOT NULL
);
CREATE INDEX integrations_property ON integrations(property_id);
CREATE INDEX integrations_next_poll ON integrations(next_poll_at);

-- The conversion log: one row per source event (postback, API row delta,
-- collector custom event), whatever its outcome.
CREATE TABLE conversions (
    id                 TEXT PRIMARY KEY,
    property_id        TEXT NOT NULL,
    integration_id     TEXT,
    source_kind        TEXT NOT NULL,
    source_event       TEXT NOT NULL,
    transaction_id     TEXT,
    -- Idempotency key (integration + transaction id + source event); set on
    -- the first row only. Repeats are logged with status error/duplicate,
    -- dedup_key NULL and duplicate_of pointing at the first.
    dedup_key          TEXT,
    duplicate_of       TEXT,
    status             TEXT NOT NULL,
    error_code         TEXT,
    error_detail       TEXT,
    event_name         TEXT,
    event_id           TEXT NOT NULL,
    value_micros       BIGINT,
    currency           TEXT,
    adjusted_micros    BIGINT NOT NULL DEFAULT 0,
    adjusts_id         TEXT,
    source_status      TEXT NOT NULL,
    send_to_destinations BOOLEAN NOT NULL,
    occurred_at        BIGINT NOT NULL,
    received_at        BIGINT NOT NULL,
    click_id           TEXT,
    click_ts           BIGINT,
    session_id         BIGINT,
    visitor_id         TEXT,
    link_group         TEXT,
    offer              TEXT,
    channel            TEXT,
    source             TEXT,
    medium             TEXT,
    campaign           TEXT,
    ad                 TEXT,
    landing_page       TEXT,
    first_session_id   BIGINT,
    first_channel      TEXT,
    first_source       TEXT,
    first_medium       TEXT,
    first_campaign     TEXT,
    first_ad           TEXT,
    first_landing_page TEXT,
    is_bot             BOOLEAN NOT NULL DEFAULT false,
    raw                TEXT NOT NULL
);
CREATE UNIQUE INDEX conversions_dedup ON conversions(dedup_key) WHERE dedup_key IS NOT NULL;
CREATE INDEX conversions_log ON conversions(property_id, received_at, id);
CREATE INDEX conversions_click ON conversions(property_id, click_id);
CREATE INDEX conversions_integration ON conversions(integration_id, received_at);

-- Income Access (and future connectors') last snapshot of each report row.
CREATE TABLE connector_snapshots (
    integration_id  TEXT NOT NULL,
    row_key         TEXT NOT NULL,
    snapshot        TEXT NOT NULL,
    updated_at      BIGINT NOT NULL,
    PRIMARY KEY (integration_id, row_key)
);

-- Tracked redirect links for direct linking: GET /go/{slug}.
CREATE TABLE links (
    id               TEXT PRIMARY KEY,
    property_id      TEXT NOT NULL REFERENCES properties(id),
    slug             TEXT NOT NULL UNIQUE,
    destination_url  TEXT NOT NULL,
    integration_id   TEXT,
    created_at       BIGINT NOT NULL
);
CREATE INDEX links_property ON links(property_id);

-- Conversions per hour and report dimension, by attribution model (`last`,
-- `first`), maintained when conversions are recorded or adjusted.
CREATE TABLE rollup_conversions_hourly (
    property_id     TEXT NOT NULL,
    hour            BIGINT NOT NULL,
    model           TEXT NOT NULL,
    dim             TEXT NOT NULL,
    key             TEXT NOT NULL,
    is_bot          BOOLEAN NOT NULL,
    currency        TEXT NOT NULL,
    conversions     BIGINT NOT NULL DEFAULT 0,
    revenue_micros  BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (property_id, model, dim, hour, key, is_bot, currency)
);
