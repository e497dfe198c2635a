-- no-transaction
-- The archive partitioned by time: `events` by RANGE (id), `delivery_attempts`
-- by RANGE (event_id), one partition a calendar month (UTC).
--
-- Why the id: event ids are UUIDv7, whose first 48 bits are the creation
-- time in unix milliseconds, so a range of ids is a range of time. The keys
-- stay as they are (a primary key must contain the partition key, and
-- `events(id)` and `delivery_attempts(event_id, attempt)` already do), a
-- lookup by id is pruned to one partition, an event's attempts live in the
-- partition of the same months as the event, and no column is added.
--
-- Why a month: the inbox, lease and dead-letter queries select by
-- organization and status, not by time, so every partition costs each of
-- them one more index probe. With the longest default retention (365 days)
-- months keep about 14 partitions; weeks would keep 55. Dropping a month at
-- once is fine-grained enough: rows of shorter retentions are deleted row by
-- row anyway, and a month past the longest retention is dropped whole.
--
-- No DEFAULT partition: `DETACH PARTITION … CONCURRENTLY`, which retention
-- uses to drop old months without blocking writes, refuses to run on a table
-- that has one; and every new partition would first scan it under an
-- exclusive lock. Partitions are created months ahead instead (at start and
-- on every retention pass); a row for a month that has none anyway is
-- refused, and the archiver creates that month's partition and tries again
-- (its stream entry stays pending meanwhile, never lost).
--
-- How, without downtime. The existing table becomes the partition holding
-- everything before a bound, without being rewritten or scanned under an
-- exclusive lock:
--   1. create the partitioned tables beside the live ones;
--   2. add CHECK (id < bound) NOT VALID (a moment's exclusive lock), then
--      VALIDATE it (a scan that blocks no reads or writes);
--   3. in one short transaction: rename the live table to *_legacy, the
--      partitioned one into its place, ATTACH the legacy table FROM (MINVALUE)
--      TO (bound) (the validated CHECK spares the scan; its indexes, foreign
--      key and constraints are adopted as they are, not rebuilt) and create
--      the partition of the month starting at the bound.
-- The bound is the first month start at least 7 days away: every row written
-- between steps 2 and 3 is below it (ids come from the clock), with a margin
-- for the validation and for clock skew; the legacy partition therefore also
-- holds the weeks until the bound.
--
-- Locks: each step that needs an exclusive lock waits at most 500 ms for it
-- (lock_timeout), so writes never queue behind it for longer; it then lets
-- them through, pauses and tries again (for about ten minutes before giving
-- up, which fails this process's start and leaves the database as it was
-- after the last completed step). Replicas still running the previous
-- release keep working throughout: their statements name `events` and
-- `delivery_attempts`, which are re-planned against the partitioned tables
-- after the swap. Every step checks what is done already, so a run
-- interrupted anywhere is completed by the next one.
--
-- Each BEGIN … COMMIT below is a transaction of its own (the file runs
-- outside sqlx's transaction for that).

-- Step 1: the partitioned tables, empty, under temporary names.
BEGIN;
SET LOCAL TimeZone = 'UTC';
DO $$
DECLARE
    tries integer := 0;
BEGIN
    IF (SELECT relkind FROM pg_class WHERE oid = to_regclass('events')) = 'p' THEN
        RETURN;
    END IF;
    PERFORM set_config('lock_timeout', '500ms', true);
    LOOP
        BEGIN
            -- Columns in the order of the live tables, so rows need no
            -- conversion between parent and legacy partition.
            CREATE TABLE IF NOT EXISTS events_partitioned (
                id              UUID NOT NULL,
                organization_id UUID NOT NULL,
                type            TEXT NOT NULL,
                dedup_id        TEXT,
                payload         JSONB NOT NULL,
                status          TEXT NOT NULL DEFAULT 'queued',
                attempts        INTEGER NOT NULL DEFAULT 0,
                last_error      TEXT,
                created_at      TIMESTAMPTZ NOT NULL,
                archived_at     TIMESTAMPTZ NOT NULL DEFAULT now(),
                delivered_at    TIMESTAMPTZ,
                acknowledged_at TIMESTAMPTZ,
                updated_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
                next_retry_at   TIMESTAMPTZ,
                lease_id        UUID,
                leased_until    TIMESTAMPTZ,
                lease_count     INTEGER NOT NULL DEFAULT 0,
                CONSTRAINT events_partitioned_pkey PRIMARY KEY (id),
                -- Same names and expressions as the live table's: ATTACH
                -- matches constraints by name.
                CONSTRAINT events_organization_id_fkey FOREIGN KEY (organization_id)
                    REFERENCES organizations (id) ON DELETE CASCADE,
                CONSTRAINT events_status_check CHECK (status IN
                    ('queued', 'delivered', 'failed', 'dead_letter', 'acknowledged', 'quarantined'))
            ) PARTITION BY RANGE (id);
            -- The live table's indexes, column for column and predicate for
            -- predicate, so ATTACH adopts them.
            CREATE INDEX IF NOT EXISTS events_partitioned_inbox
                ON events_partitioned (organization_id, status, id DESC);
            CREATE INDEX IF NOT EXISTS events_partitioned_organization
                ON events_partitioned (organization_id, id DESC);
            CREATE INDEX IF NOT EXISTS events_partitioned_dead_letters
                ON events_partitioned (organization_id, updated_at) WHERE status = 'dead_letter';
            CREATE INDEX IF NOT EXISTS events_partitioned_leasable
                ON events_partitioned (organization_id, id)
                WHERE status IN ('queued', 'failed', 'dead_letter');
            CREATE INDEX IF NOT EXISTS events_partitioned_lease
                ON events_partitioned (lease_id) WHERE lease_id IS NOT NULL;
            CREATE INDEX IF NOT EXISTS events_partitioned_unfinished
                ON events_partitioned (id) WHERE status NOT IN ('delivered', 'acknowledged');

            CREATE TABLE IF NOT EXISTS delivery_attempts_partitioned (
                event_id        UUID NOT NULL,
                attempt         INTEGER NOT NULL,
                organization_id UUID NOT NULL,
                attempted_at    TIMESTAMPTZ NOT NULL,
                duration_ms     INTEGER NOT NULL,
                response_status INTEGER,
                error           TEXT,
                next_retry_at   TIMESTAMPTZ,
                CONSTRAINT delivery_attempts_partitioned_pkey PRIMARY KEY (event_id, attempt),
                CONSTRAINT delivery_attempts_organization_id_fkey FOREIGN KEY (organization_id)
                    REFERENCES organizations (id) ON DELETE CASCADE,
                CONSTRAINT delivery_attempts_attempt_check CHECK (attempt > 0)
            ) PARTITION BY RANGE (event_id);
            EXIT;
        EXCEPTION WHEN lock_not_available OR deadlock_detected THEN
            tries := tries + 1;
            IF tries >= 400 THEN
                RAISE;
            END IF;
            PERFORM pg_sleep(0.5 + random());
        END;
    END LOOP;
END $$;
COMMIT;

-- Step 2a: the bound, as a CHECK constraint not validated yet. A bound left
-- by an interrupted earlier run is kept unless it is less than two days
-- away, in which case both constraints get a new one.
BEGIN;
SET LOCAL TimeZone = 'UTC';
DO $$
DECLARE
    tries integer := 0;
    existing uuid;
    bound uuid;
BEGIN
    IF (SELECT relkind FROM pg_class WHERE oid = to_regclass('events')) = 'p' THEN
        RETURN;
    END IF;
    PERFORM set_config('lock_timeout', '500ms', true);
    LOOP
        BEGIN
            SELECT substring(pg_get_constraintdef(oid) FROM '''([0-9a-f-]{36})''')::uuid
              INTO existing
              FROM pg_constraint
             WHERE conrelid = 'events'::regclass AND conname = 'events_partition_bound';
            IF existing >= (lpad(to_hex((extract(epoch FROM now() + interval '2 days') * 1000)::bigint),
                                 12, '0') || repeat('0', 20))::uuid
               AND EXISTS (SELECT 1 FROM pg_constraint
                            WHERE conrelid = 'delivery_attempts'::regclass
                                  AND conname = 'delivery_attempts_partition_bound'
                                  AND pg_get_constraintdef(oid) LIKE '%' || existing::text || '%') THEN
                EXIT;
            END IF;
            bound := (lpad(to_hex((extract(epoch FROM
                          date_trunc('month', now() + interval '7 days') + interval '1 month')
                          * 1000)::bigint), 12, '0')
                      || repeat('0', 20))::uuid;
            LOCK TABLE delivery_attempts, events IN ACCESS EXCLUSIVE MODE;
            ALTER TABLE events DROP CONSTRAINT IF EXISTS events_partition_bound;
            ALTER TABLE delivery_attempts DROP CONSTRAINT IF EXISTS delivery_attempts_partition_bound;
            EXECUTE format('ALTER TABLE events ADD CONSTRAINT events_partition_bound '
                           'CHECK (id < %L::uuid) NOT VALID', bound);
            EXECUTE format('ALTER TABLE delivery_attempts ADD CONSTRAINT '
                           'delivery_attempts_partition_bound CHECK (event_id < %L::uuid) NOT VALID',
                           bound);
            EXIT;
        EXCEPTION WHEN lock_not_available OR deadlock_detected THEN
            tries := tries + 1;
            IF tries >= 400 THEN
                RAISE;
            END IF;
            PERFORM pg_sleep(0.5 + random());
        END;
    END LOOP;
END $$;
COMMIT;

-- Step 2b: validation scans each table under a SHARE UPDATE EXCLUSIVE lock,
-- which blocks no reads or writes; it takes as long as it takes.
BEGIN;
SET LOCAL statement_timeout = 0;
DO $$
BEGIN
    IF (SELECT relkind FROM pg_class WHERE oid = to_regclass('events')) = 'r' THEN
        ALTER TABLE events VALIDATE CONSTRAINT events_partition_bound;
    END IF;
END $$;
COMMIT;
BEGIN;
SET LOCAL statement_timeout = 0;
DO $$
BEGIN
    IF (SELECT relkind FROM pg_class WHERE oid = to_regclass('delivery_attempts')) = 'r' THEN
        ALTER TABLE delivery_attempts VALIDATE CONSTRAINT delivery_attempts_partition_bound;
    END IF;
END $$;
COMMIT;

-- Step 3: the swap. Catalog changes only, under exclusive locks held for
-- milliseconds.
BEGIN;
SET LOCAL TimeZone = 'UTC';
DO $$
DECLARE
    tries integer := 0;
    bound uuid;
    bound_at timestamptz;
    next_bound uuid;
    suffix text;
    invalid text;
BEGIN
    IF (SELECT relkind FROM pg_class WHERE oid = to_regclass('events')) = 'p' THEN
        RETURN;
    END IF;
    -- An index left invalid by an interrupted concurrent build would not
    -- be adopted but rebuilt under the lock below: refuse instead.
    SELECT string_agg(i.indexrelid::regclass::text, ', ') INTO invalid
      FROM pg_index i
     WHERE i.indrelid IN ('events'::regclass, 'delivery_attempts'::regclass)
       AND NOT i.indisvalid;
    IF invalid IS NOT NULL THEN
        RAISE EXCEPTION 'invalid indexes on the archive: %', invalid
            USING HINT = 'REINDEX INDEX CONCURRENTLY each of them, then start again';
    END IF;
    PERFORM set_config('lock_timeout', '500ms', true);
    LOOP
        BEGIN
            -- The order in which writers take them (attempts, then events).
            LOCK TABLE delivery_attempts, events, delivery_attempts_partitioned, events_partitioned
                IN ACCESS EXCLUSIVE MODE;
            SELECT substring(pg_get_constraintdef(oid) FROM '''([0-9a-f-]{36})''')::uuid
              INTO STRICT bound
              FROM pg_constraint
             WHERE conrelid = 'events'::regclass AND conname = 'events_partition_bound'
                   AND convalidated;
            PERFORM 1 FROM pg_constraint
             WHERE conrelid = 'delivery_attempts'::regclass
                   AND conname = 'delivery_attempts_partition_bound' AND convalidated
                   AND pg_get_constraintdef(oid) LIKE '%' || bound::text || '%';
            IF NOT FOUND THEN
                RAISE EXCEPTION 'the bounds of events and delivery_attempts differ';
            END IF;
            bound_at := to_timestamp(('x' || substr(replace(bound::text, '-', ''), 1, 12))::bit(48)::bigint
                                     / 1000.0);
            next_bound := (lpad(to_hex((extract(epoch FROM bound_at + interval '1 month') * 1000)::bigint),
                                12, '0') || repeat('0', 20))::uuid;
            suffix := to_char(bound_at, 'YYYYMM');

            ALTER TABLE events RENAME TO events_legacy;
            ALTER INDEX events_pkey RENAME TO events_legacy_pkey;
            ALTER INDEX events_inbox RENAME TO events_legacy_inbox;
            ALTER INDEX events_organization RENAME TO events_legacy_organization;
            ALTER INDEX events_dead_letters RENAME TO events_legacy_dead_letters;
            ALTER INDEX events_leasable RENAME TO events_legacy_leasable;
            ALTER INDEX events_lease RENAME TO events_legacy_lease;
            ALTER INDEX events_unfinished RENAME TO events_legacy_unfinished;
            ALTER TABLE events_partitioned RENAME TO events;
            ALTER INDEX events_partitioned_pkey RENAME TO events_pkey;
            ALTER INDEX events_partitioned_inbox RENAME TO events_inbox;
            ALTER INDEX events_partitioned_organization RENAME TO events_organization;
            ALTER INDEX events_partitioned_dead_letters RENAME TO events_dead_letters;
            ALTER INDEX events_partitioned_leasable RENAME TO events_leasable;
            ALTER INDEX events_partitioned_lease RENAME TO events_lease;
            ALTER INDEX events_partitioned_unfinished RENAME TO events_unfinished;
            EXECUTE format('ALTER TABLE events ATTACH PARTITION events_legacy '
                           'FOR VALUES FROM (MINVALUE) TO (%L)', bound);
            ALTER TABLE events_legacy DROP CONSTRAINT events_partition_bound;
            EXECUTE format('CREATE TABLE %I PARTITION OF events FOR VALUES FROM (%L) TO (%L)',
                           'events_p' || suffix, bound, next_bound);

            ALTER TABLE delivery_attempts RENAME TO delivery_attempts_legacy;
            ALTER INDEX delivery_attempts_pkey RENAME TO delivery_attempts_legacy_pkey;
            ALTER TABLE delivery_attempts_partitioned RENAME TO delivery_attempts;
            ALTER INDEX delivery_attempts_partitioned_pkey RENAME TO delivery_attempts_pkey;
            EXECUTE format('ALTER TABLE delivery_attempts ATTACH PARTITION delivery_attempts_legacy '
                           'FOR VALUES FROM (MINVALUE) TO (%L)', bound);
            ALTER TABLE delivery_attempts_legacy DROP CONSTRAINT delivery_attempts_partition_bound;
            EXECUTE format('CREATE TABLE %I PARTITION OF delivery_attempts '
                           'FOR VALUES FROM (%L) TO (%L)',
                           'delivery_attempts_p' || suffix, bound, next_bound);
            EXIT;
        EXCEPTION WHEN lock_not_available OR deadlock_detected THEN
            tries := tries + 1;
            IF tries >= 400 THEN
                RAISE;
            END IF;
            PERFORM pg_sleep(0.5 + random());
        END;
    END LOOP;
END $$;
COMMIT;
