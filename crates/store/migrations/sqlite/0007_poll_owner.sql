-- A poll's claim names its holder (a process's instance id), so the
-- holder renews and releases only its own claim, and a restarted process
-- releases the claims it held before it stopped (a crash mid-poll no
-- longer blocks the integration until the lease expires).
ALTER TABLE integrations ADD COLUMN polling_owner TEXT;
