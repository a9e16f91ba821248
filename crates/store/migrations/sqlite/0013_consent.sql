-- The visitor's consent, per purpose, as the collector and `/go` resolved
-- it against the property's `consent_required` (`clicktrail_domain::consent`):
-- two letters, ad_user_data then ad_personalization, each g(ranted),
-- d(enied) or u(nknown); NULL when nothing is known (every row from before).
-- Conversions carry their click's (else their session's) to the platforms.
ALTER TABLE sessions ADD COLUMN consent TEXT;
ALTER TABLE clicks ADD COLUMN consent TEXT;
