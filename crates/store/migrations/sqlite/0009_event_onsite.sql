-- On-site conversions are an opt-in checked when an event is collected (the
-- request's Origin, or its signature, is known only then): the collector's
-- verdict on a conversion-named event, read by the on-site follower.
-- NULL: not a conversion attempt; 'ok': becomes a conversion; otherwise the
-- refusal's conversion-log code (`onsite_disabled`, `origin_required`, ...).
ALTER TABLE events ADD COLUMN onsite TEXT;
