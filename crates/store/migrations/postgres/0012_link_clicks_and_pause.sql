-- Tracked links in the dashboard: each `/go` click names its link (the
-- link list counts clicks, conversions and revenue per link with one
-- grouped query), and a link can be paused (it still redirects, but
-- records nothing: see `Links::follow`).
ALTER TABLE links ADD COLUMN paused_at BIGINT;
ALTER TABLE clicks ADD COLUMN link_id TEXT;
-- The `/go` clicks recorded before: their page URL is the link's URL,
-- `.../go/{property_id}/{slug}` (`.../go/{slug}` before slugs were per
-- property), plus the visitor's query string: the link whose URL the page
-- URL without its query ends with (none: NULL).
UPDATE clicks SET link_id = (
        SELECT l.id FROM links l
        WHERE l.property_id = clicks.property_id
          AND (right(split_part(clicks.page_url, '?', 1), length('/go/' || l.property_id || '/' || l.slug))
                   = '/go/' || l.property_id || '/' || l.slug
               OR right(split_part(clicks.page_url, '?', 1), length('/go/' || l.slug)) = '/go/' || l.slug)
        ORDER BY l.created_at, l.id
        LIMIT 1)
    WHERE origin = 'redirect' AND page_url IS NOT NULL;
-- Covers the link list's click counts (all time and recent).
CREATE INDEX clicks_link ON clicks(property_id, link_id, ts) WHERE link_id IS NOT NULL;
