-- 0003: events expire (--event-ttl): the background delete finds the oldest by when
-- they were stored.
-- Applied in one transaction with its row in schema_migrations (masterd.store.migrations).

CREATE INDEX events_stored ON events (stored);
