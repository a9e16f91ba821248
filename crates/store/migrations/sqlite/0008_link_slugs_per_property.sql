-- Tracked-link slugs belong to a property: unique per (property, slug),
-- no longer across the server (one workspace's `black-friday` refused
-- another's and told it the slug existed). SQLite cannot drop a column's
-- UNIQUE: the table is rebuilt.
CREATE TABLE links_new (
    id               TEXT PRIMARY KEY,
    property_id      TEXT NOT NULL REFERENCES properties(id),
    slug             TEXT NOT NULL,
    destination_url  TEXT NOT NULL,
    integration_id   TEXT,
    created_at       INTEGER NOT NULL,
    UNIQUE (property_id, slug)
);
INSERT INTO links_new (id, property_id, slug, destination_url, integration_id, created_at)
    SELECT id, property_id, slug, destination_url, integration_id, created_at FROM links;
DROP TABLE links;
ALTER TABLE links_new RENAME TO links;
CREATE INDEX links_property ON links(property_id);
-- `/go/{slug}` (links made before slugs were per property) finds the
-- oldest link of a slug.
CREATE INDEX links_slug ON links(slug, created_at);
