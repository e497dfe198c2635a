-- no-transaction
-- The events a lease may hand out, oldest first, per organization. Built
-- concurrently so a deploy never blocks ingestion behind it; the statuses
-- are the ones `store::leases` spells out in its queries.
CREATE INDEX CONCURRENTLY IF NOT EXISTS events_leasable
    ON events (organization_id, id)
    WHERE status IN ('queued', 'failed', 'dead_letter');
