-- Ad spend, for ROAS (PostgreSQL; mirrors ../sqlite/0005_spend.sql). One row per day, platform, campaign, ad set and ad
-- (the natural key): a later import or API pull of the same day and line
-- replaces the earlier figure instead of adding to it, so re-importing a
-- file or re-reading a trailing window of a platform's API never double
-- counts. `source` says where a row came from (`csv` now; `api` when the
-- platforms' reporting APIs are pulled), `import_id` which import last
-- wrote it.

CREATE TABLE spend_imports (
    id            TEXT PRIMARY KEY,
    property_id   TEXT NOT NULL REFERENCES properties(id),
    -- csv | api
    source        TEXT NOT NULL,
    -- File name for csv, the connector (meta, google_ads, ...) for api.
    label         TEXT NOT NULL,
    rows          BIGINT NOT NULL,
    created_by    BIGINT,
    created_at    BIGINT NOT NULL
);
CREATE INDEX spend_imports_property ON spend_imports(property_id, created_at);

CREATE TABLE ad_spend (
    property_id   TEXT NOT NULL REFERENCES properties(id),
    -- UTC day as days since 1970-01-01.
    day           BIGINT NOT NULL,
    -- Lower-case platform key: meta, google_ads, tiktok, bing, ...
    platform      TEXT NOT NULL,
    campaign      TEXT NOT NULL,
    ad_set        TEXT NOT NULL,
    ad            TEXT NOT NULL,
    currency      TEXT NOT NULL,
    spend_micros  BIGINT NOT NULL,
    source        TEXT NOT NULL,
    import_id     TEXT NOT NULL REFERENCES spend_imports(id),
    -- The platform's own ids, when an API pull knows them.
    campaign_id   TEXT,
    ad_set_id     TEXT,
    ad_id         TEXT,
    updated_at    BIGINT NOT NULL,
    PRIMARY KEY (property_id, day, platform, campaign, ad_set, ad, currency)
);
