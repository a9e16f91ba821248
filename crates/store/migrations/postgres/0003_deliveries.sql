-- Conversions out: ad-platform destinations, the delivery outbox (one row
-- per conversion and destination, written in the conversion's own
-- transaction) and the log of every delivery attempt (PostgreSQL).
-- Mirrors ../sqlite/0003_deliveries.sql column for column.

CREATE TABLE destinations (
    id               TEXT PRIMARY KEY,
    property_id      TEXT NOT NULL REFERENCES properties(id),
    -- meta_capi | google_ads | tiktok | ga4
    kind             TEXT NOT NULL,
    name             TEXT NOT NULL,
    settings         TEXT NOT NULL,
    -- Keyring-encrypted JSON object of the credentials.
    credentials_enc  TEXT NOT NULL,
    event_mapping    TEXT NOT NULL,
    -- active | paused | needs_attention
    status           TEXT NOT NULL,
    status_reason    TEXT,
    status_message   TEXT,
    -- Bumped by every edit, so a worker holding an older copy cannot mark
    -- freshly fixed credentials as broken.
    revision         BIGINT NOT NULL DEFAULT 1,
    created_at       BIGINT NOT NULL,
    updated_at       BIGINT NOT NULL
);
CREATE INDEX destinations_property ON destinations(property_id, created_at);

CREATE TABLE deliveries (
    id                 TEXT PRIMARY KEY,
    conversion_id      TEXT NOT NULL REFERENCES conversions(id),
    destination_id     TEXT NOT NULL REFERENCES destinations(id),
    property_id        TEXT NOT NULL,
    -- As mapped for the destination (Meta Purchase, TikTok
    -- CompleteRegistration, GA4 purchase; our name for Google Ads).
    event_name         TEXT NOT NULL,
    conversion_action  TEXT,
    -- pending | delivered | retrying | failed | dead | skipped
    status             TEXT NOT NULL,
    reason             TEXT,
    attempts           BIGINT NOT NULL DEFAULT 0,
    -- When a pending / retrying row is due. A far-future value parks the
    -- rows of a paused destination out of the workers' way.
    next_attempt_at    BIGINT NOT NULL,
    -- Lease of the worker that claimed the row; also its claim token.
    locked_until       BIGINT,
    last_attempt_at    BIGINT,
    last_http_status   BIGINT,
    last_message       TEXT,
    created_at         BIGINT NOT NULL,
    updated_at         BIGINT NOT NULL,
    delivered_at       BIGINT,
    UNIQUE (conversion_id, destination_id)
);
CREATE INDEX deliveries_due ON deliveries(next_attempt_at)
    WHERE status IN ('pending', 'retrying');
CREATE INDEX deliveries_property ON deliveries(property_id, created_at, id);
CREATE INDEX deliveries_destination ON deliveries(destination_id, status);

CREATE TABLE delivery_attempts (
    id                BIGSERIAL PRIMARY KEY,
    delivery_id       TEXT NOT NULL REFERENCES deliveries(id),
    at                BIGINT NOT NULL,
    duration_ms       BIGINT NOT NULL,
    http_status       BIGINT,
    message           TEXT NOT NULL,
    -- The platform's answer, trimmed to 2 KB, credentials redacted.
    response_excerpt  TEXT NOT NULL,
    -- delivered | skipped | retry | permanent | auth_failed | dead
    outcome           TEXT NOT NULL,
    reason            TEXT
);
CREATE INDEX delivery_attempts_delivery ON delivery_attempts(delivery_id, id);
