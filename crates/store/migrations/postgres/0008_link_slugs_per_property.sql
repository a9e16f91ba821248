-- Tracked-link slugs belong to a property: unique per (property, slug),
-- no longer across the server (one workspace's `black-friday` refused
-- another's and told it the slug existed).
ALTER TABLE links DROP CONSTRAINT links_slug_key;
ALTER TABLE links ADD CONSTRAINT links_property_id_slug_key UNIQUE (property_id, slug);
-- `/go/{slug}` (links made before slugs were per property) finds the
-- oldest link of a slug.
CREATE INDEX links_slug ON links(slug, created_at);
