-- Postback tokens are no longer kept in clear (anyone who can read the
-- database file or a backup could otherwise post conversions). The token's
-- column now holds its keyed hash (HMAC-SHA256 under a key derived from the
-- server key), the only thing a postback is looked up by; the token itself
-- is kept encrypted, like credentials, to show the postback URL again.
-- Rows written before this migration hold the clear token and no
-- `postback_token_enc` until the server's next start seals them
-- (`clicktrail_engine::integrations::Integrations::seal_postback_tokens`).
ALTER TABLE integrations RENAME COLUMN postback_token TO postback_token_hash;
ALTER TABLE integrations ADD COLUMN postback_token_enc TEXT;
