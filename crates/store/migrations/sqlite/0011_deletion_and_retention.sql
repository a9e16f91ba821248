-- Deleting things and keeping raw data only as long as it is needed.
--
-- A deleted property, integration or destination is kept, marked
-- `deleted_at`, and every lookup treats it as absent: a property so it
-- can be restored until `purge_after`, when the retention job deletes it
-- and everything it owns; an integration so the conversion log still
-- names it (`log_purge_at`: its log was asked to be purged too, which the
-- job finishes if the request could not); a destination so its delivery
-- log still names it.
ALTER TABLE properties ADD COLUMN deleted_at INTEGER;
ALTER TABLE properties ADD COLUMN purge_after INTEGER;
ALTER TABLE integrations ADD COLUMN deleted_at INTEGER;
ALTER TABLE integrations ADD COLUMN log_purge_at INTEGER;
ALTER TABLE destinations ADD COLUMN deleted_at INTEGER;

-- The retention job deletes a property's events and clicks older than its
-- retention, oldest first, in small batches: without these each batch
-- would scan the table.
CREATE INDEX events_property_ts ON events(property_id, ts);
CREATE INDEX clicks_property_ts ON clicks(property_id, ts);
-- Encrypted client addresses (`e:...`) are cleared after the attribution
-- window; the index holds only the ones not cleared yet, so the daily
-- pass reads just those.
CREATE INDEX sessions_encrypted_ip ON sessions(property_id, started_at)
    WHERE substr(ip, 1, 2) = 'e:';

-- Background jobs that must run once per period however many processes
-- share the database (the daily retention job): a process claims a due
-- job with a lease naming it, as poll claims do, and sets the next run
-- when it is done.
CREATE TABLE maintenance_jobs (
    name          TEXT NOT NULL PRIMARY KEY,
    next_run_at   INTEGER NOT NULL,
    lease_until   INTEGER,
    lease_owner   TEXT,
    last_run_at   INTEGER,
    -- ok | the error of the last run
    last_outcome  TEXT
);
