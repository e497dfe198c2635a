-- Leases for pull consumers, and the `quarantined` status of events leased
-- too many times.
--
-- Columns are added without a volatile default (no table rewrite); the new
-- CHECK constraint is added NOT VALID (no scan under the exclusive lock) and
-- validated in a second step, which only takes a SHARE UPDATE EXCLUSIVE lock.

ALTER TABLE events
    ADD COLUMN lease_id     UUID,
    ADD COLUMN leased_until TIMESTAMPTZ,
    ADD COLUMN lease_count  INTEGER NOT NULL DEFAULT 0;

ALTER TABLE events DROP CONSTRAINT events_status_check;
ALTER TABLE events ADD CONSTRAINT events_status_check
    CHECK (status IN ('queued', 'delivered', 'failed', 'dead_letter', 'acknowledged', 'quarantined'))
    NOT VALID;
ALTER TABLE events VALIDATE CONSTRAINT events_status_check;
