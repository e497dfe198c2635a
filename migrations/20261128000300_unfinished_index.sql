-- no-transaction
-- The events still waiting for their consumer (anything not delivered or
-- acknowledged). Retention asks, of a partition past the longest retention,
-- whether it holds any such event before dropping it: with this index that
-- is one probe instead of a scan of a month of events. It stays small, since
-- most events finish. Built here, concurrently, on the table as it is, so
-- that the next migration's partitioned index adopts it instead of building
-- it under a lock.
CREATE INDEX CONCURRENTLY IF NOT EXISTS events_unfinished
    ON events (id)
    WHERE status NOT IN ('delivered', 'acknowledged');
