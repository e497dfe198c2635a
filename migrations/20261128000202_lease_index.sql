-- no-transaction
-- The events a lease holds, for acknowledging or releasing a whole lease.
-- Partial: only events under a lease are in it, so it stays small.
CREATE INDEX CONCURRENTLY IF NOT EXISTS events_lease ON events (lease_id)
    WHERE lease_id IS NOT NULL;
