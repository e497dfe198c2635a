//! Partitioning the archive: the migration from the unpartitioned tables on
//! a populated database while writes go on, and where rows land after it.

use std::{
    borrow::Cow,
    collections::BTreeMap,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use chrono::{DateTime, Utc};
use sqlx::{PgPool, migrate::Migrator};
use triggers_api::{
    domain::{EventRecord, EventStatus, mint_event_id},
    partitions,
    store::{ArchiveTable, AttemptRow, EventOutcome, InboxQuery, Month, Store},
};
use uuid::Uuid;

use crate::helpers::{
    FreshDatabase, eventually, inject_entry, redis, spawn, test_config, unique_prefix,
};

static MIGRATIONS: Migrator = sqlx::migrate!("./migrations");
/// The last migration before the archive was partitioned.
const BEFORE_PARTITIONING: i64 = 20261128000202;
const POPULATED_EVENTS: i64 = 6_000;
/// Writers stop after this many rounds or this long, whatever happens.
const MAX_WRITE_ROUNDS: u32 = 5_000;
const MAX_WRITE_TIME: Duration = Duration::from_secs(180);
/// How long the blocking reader holds each transaction: far longer than
/// the migration's lock_timeout (500 ms), so a migration that queued behind
/// it instead of giving way would hold writes up for that long.
const READER_HOLD: Duration = Duration::from_secs(3);
/// The longest a write may take while the migration runs.
const WRITE_LATENCY_LIMIT: Duration = Duration::from_secs(2);

/// The schema as it was before partitioning, with thousands of events and
/// attempts over six months, six organizations of every tier and every
/// status, some events under a lease.
async fn populated_before_partitioning(database: &FreshDatabase) -> PgPool {
    let pool = database.pool(4).await;
    let before = Migrator {
        migrations: Cow::Owned(
            MIGRATIONS
                .iter()
                .filter(|m| m.version <= BEFORE_PARTITIONING)
                .cloned()
                .collect(),
        ),
        ..Migrator::DEFAULT
    };
    before
        .run(&pool)
        .await
        .expect("migrations before partitioning");
    let mut conn = pool.acquire().await.expect("connection");
    sqlx::raw_sql(&format!(
        "CREATE FUNCTION pg_temp.v7(at timestamptz) RETURNS uuid LANGUAGE sql VOLATILE AS $$
             SELECT (lpad(to_hex((extract(epoch FROM at) * 1000)::bigint), 12, '0') || '7'
                     || substr(md5(random()::text), 1, 3) || '8'
                     || substr(md5(random()::text), 1, 15))::uuid
         $$;
         INSERT INTO organizations (id, name, tier, rate_limit_per_minute)
         SELECT gen_random_uuid(), 'populated-' || g,
                (ARRAY['free', 'pro', 'business', 'enterprise'])[1 + g % 4], 100
         FROM generate_series(0, 5) g;
         CREATE TEMP TABLE orgs AS
             SELECT row_number() OVER (ORDER BY name) - 1 AS n, id FROM organizations;
         INSERT INTO events (id, organization_id, type, payload, status, attempts, last_error,
                             created_at, delivered_at, acknowledged_at, lease_id, leased_until,
                             lease_count)
         SELECT pg_temp.v7(t.at), o.id, 'populated.' || g % 3, jsonb_build_object('n', g),
                s.status, g % 4, CASE WHEN s.status IN ('failed', 'dead_letter') THEN 'HTTP 500' END,
                t.at, CASE WHEN s.status = 'delivered' THEN t.at END,
                CASE WHEN s.status = 'acknowledged' THEN t.at END,
                CASE WHEN g % 12 = 0 THEN gen_random_uuid() END,
                CASE WHEN g % 12 = 0 THEN now() + interval '1 hour' END,
                CASE WHEN g % 12 = 0 THEN 1 ELSE 0 END
         FROM generate_series(1, {POPULATED_EVENTS}) g
         JOIN orgs o ON o.n = g % 6
         CROSS JOIN LATERAL (SELECT now() - random() * interval '180 days' - g * interval '0' AS at) t
         CROSS JOIN LATERAL (SELECT (ARRAY['queued', 'delivered', 'failed', 'dead_letter',
                                           'acknowledged', 'quarantined'])[1 + (g / 6) % 6]
                                    AS status) s;
         INSERT INTO delivery_attempts (event_id, attempt, organization_id, attempted_at,
                                        duration_ms, response_status, error)
         SELECT e.id, a, e.organization_id, e.created_at + a * interval '1 minute', 20,
                CASE WHEN e.status = 'delivered' AND a = e.attempts THEN 200 ELSE 500 END,
                CASE WHEN e.status = 'delivered' AND a = e.attempts THEN NULL ELSE 'HTTP 500' END
         FROM events e CROSS JOIN LATERAL generate_series(1, e.attempts) a;
         ANALYZE events;
         ANALYZE delivery_attempts;"
    ))
    .execute(&mut *conn)
    .await
    .expect("populate");
    drop(conn);
    pool
}

/// Every row of the populated organizations, as Postgres prints it.
async fn rows(pool: &PgPool, table: &str, except: Uuid) -> Vec<String> {
    let order = if table == "events" {
        "id"
    } else {
        "event_id, attempt"
    };
    sqlx::query_scalar(&format!(
        "SELECT row_to_json(t)::text FROM {table} t WHERE organization_id <> $1 ORDER BY {order}"
    ))
    .bind(except)
    .fetch_all(pool)
    .await
    .expect("rows")
}

/// What the inbox shows each organization, page after page, in each view.
async fn inboxes(store: &Store, organizations: &[Uuid]) -> BTreeMap<(Uuid, usize), Vec<Uuid>> {
    let views: [&[EventStatus]; 3] = [
        &EventStatus::UNDELIVERED,
        &EventStatus::ALL,
        &[EventStatus::DeadLetter],
    ];
    let mut seen = BTreeMap::new();
    for &organization_id in organizations {
        for (n, statuses) in views.iter().enumerate() {
            let mut ids = Vec::new();
            let mut before = None;
            loop {
                let page = store
                    .inbox(InboxQuery {
                        organization_id,
                        statuses,
                        before,
                        limit: 100,
                    })
                    .await
                    .expect("inbox");
                ids.extend(page.events.iter().map(|e| e.id));
                before = page.events.last().map(|e| e.id);
                if !page.has_more {
                    break;
                }
            }
            seen.insert((organization_id, n), ids);
        }
    }
    seen
}

#[derive(Default)]
struct Writes {
    rounds: u64,
    during_migration: u64,
    failed: Vec<String>,
    slowest: Duration,
    /// (id, status it must have) of every event written.
    events: Vec<(Uuid, EventStatus)>,
}

fn record(organization_id: Uuid, n: u32) -> EventRecord {
    let (id, created_at) = mint_event_id();
    EventRecord {
        id,
        organization_id,
        event_type: "written.during".to_owned(),
        dedup_id: None,
        payload: format!(r#"{{"n":{n}}}"#),
        created_at,
    }
}

/// What the archiver and the delivery recorder do, in a loop: insert a
/// batch, record an attempt and outcome of one event, acknowledge another.
/// Each round is one write; none is retried, so a failure is counted.
async fn write(
    store: Store,
    organization_id: Uuid,
    stop: Arc<AtomicBool>,
    migrating: Arc<AtomicBool>,
) -> Writes {
    let mut writes = Writes::default();
    let started = Instant::now();
    for round in 0..MAX_WRITE_ROUNDS {
        if stop.load(Ordering::SeqCst) || started.elapsed() > MAX_WRITE_TIME {
            break;
        }
        let batch: Vec<EventRecord> = (0..10).map(|n| record(organization_id, n)).collect();
        let refs: Vec<&EventRecord> = batch.iter().collect();
        let delivered = &batch[0];
        let attempt = AttemptRow {
            event_id: delivered.id,
            attempt: 1,
            organization_id,
            attempted_at: Utc::now(),
            duration_ms: 3,
            response_status: Some(200),
            error: None,
            next_retry_at: None,
        };
        let outcome = EventOutcome {
            event: delivered.clone(),
            status: EventStatus::Delivered,
            attempts: 1,
            last_error: None,
            delivered_at: Some(Utc::now()),
            next_retry_at: None,
        };
        let during = migrating.load(Ordering::SeqCst);
        let began = Instant::now();
        let result = async {
            store.insert_events(&refs).await?;
            store.record_deliveries(&[attempt], &[outcome]).await?;
            store.acknowledge(organization_id, batch[1].id).await?;
            Ok::<(), triggers_api::store::StoreError>(())
        }
        .await;
        writes.slowest = writes.slowest.max(began.elapsed());
        match result {
            Ok(()) => {
                writes.rounds += 1;
                if during || migrating.load(Ordering::SeqCst) {
                    writes.during_migration += 1;
                }
                writes.events.push((batch[0].id, EventStatus::Delivered));
                writes.events.push((batch[1].id, EventStatus::Acknowledged));
                writes
                    .events
                    .extend(batch[2..].iter().map(|e| (e.id, EventStatus::Queued)));
            }
            Err(err) => writes.failed.push(format!("round {round}: {err}")),
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    writes
}

/// Keeps a transaction reading the archive open most of the time, as a
/// long report would: whoever wants an exclusive lock must wait for it.
async fn read_slowly(pool: PgPool, stop: Arc<AtomicBool>) -> u32 {
    let started = Instant::now();
    let mut held = 0;
    while !stop.load(Ordering::SeqCst) && started.elapsed() < MAX_WRITE_TIME {
        let mut tx = pool.begin().await.expect("begin");
        let _: i64 = sqlx::query_scalar("SELECT count(*) FROM events")
            .fetch_one(&mut *tx)
            .await
            .expect("read");
        tokio::time::sleep(READER_HOLD).await;
        tx.commit().await.expect("commit");
        held += 1;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    held
}

async fn partition_of(pool: &PgPool, table: &str, column: &str, id: Uuid) -> String {
    sqlx::query_scalar(&format!(
        "SELECT tableoid::regclass::text FROM {table} WHERE {column} = $1"
    ))
    .bind(id)
    .fetch_one(pool)
    .await
    .expect("row's partition")
}

/// An event of the writer's organization created at `at`.
fn event_at(organization_id: Uuid, at: DateTime<Utc>) -> EventRecord {
    let millis = u64::try_from(at.timestamp_millis()).expect("after 1970");
    let mut random = [0u8; 10];
    random.copy_from_slice(&Uuid::new_v4().as_bytes()[..10]);
    let id = uuid::Builder::from_unix_timestamp_millis(millis, &random).into_uuid();
    EventRecord {
        id,
        organization_id,
        event_type: "future".to_owned(),
        dedup_id: None,
        payload: "{}".to_owned(),
        created_at: at,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_archive_is_partitioned_under_writes_without_losing_or_refusing_any() {
    let database = FreshDatabase::create().await;
    let pool = populated_before_partitioning(&database).await;
    let store = Store::connect(&database.url, 6).await.expect("store");
    let writer_org = Uuid::new_v4();
    sqlx::query(
        "INSERT INTO organizations (id, name, tier, rate_limit_per_minute)
         VALUES ($1, 'writer', 'pro', 1000)",
    )
    .bind(writer_org)
    .execute(&pool)
    .await
    .expect("writer organization");
    let organizations: Vec<Uuid> =
        sqlx::query_scalar("SELECT id FROM organizations WHERE id <> $1 ORDER BY id")
            .bind(writer_org)
            .fetch_all(&pool)
            .await
            .expect("organizations");
    let events_before = rows(&pool, "events", writer_org).await;
    let attempts_before = rows(&pool, "delivery_attempts", writer_org).await;
    assert_eq!(events_before.len() as i64, POPULATED_EVENTS);
    assert!(attempts_before.len() > 5_000, "{}", attempts_before.len());
    let inboxes_before = inboxes(&store, &organizations).await;
    let storage_before: i64 =
        sqlx::query_scalar("SELECT relfilenode::bigint FROM pg_class WHERE relname = 'events'")
            .fetch_one(&pool)
            .await
            .expect("relfilenode");

    // Two writers and a slow reader run while one process migrates.
    let stop = Arc::new(AtomicBool::new(false));
    let migrating = Arc::new(AtomicBool::new(false));
    let writers: Vec<_> = (0..2)
        .map(|_| {
            tokio::spawn(write(
                store.clone(),
                writer_org,
                stop.clone(),
                migrating.clone(),
            ))
        })
        .collect();
    let reader = tokio::spawn(read_slowly(database.pool(1).await, stop.clone()));
    tokio::time::sleep(Duration::from_millis(500)).await;
    migrating.store(true, Ordering::SeqCst);
    let migration_started = Utc::now();
    let migrator = Store::connect(&database.url, 2).await.expect("store");
    let migrated = tokio::time::timeout(Duration::from_secs(150), migrator.migrate()).await;
    migrating.store(false, Ordering::SeqCst);
    // Writes after the swap go through statements prepared before it.
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, Ordering::SeqCst);
    migrated
        .expect("the migration ends in time")
        .expect("the migration succeeds");
    let mut writes = Writes::default();
    for writer in writers {
        let w = writer.await.expect("writer");
        writes.rounds += w.rounds;
        writes.during_migration += w.during_migration;
        writes.failed.extend(w.failed);
        writes.slowest = writes.slowest.max(w.slowest);
        writes.events.extend(w.events);
    }
    let held = reader.await.expect("reader");
    println!(
        "{} write rounds, {} during the migration, slowest {:?}; {held} slow reads",
        writes.rounds, writes.during_migration, writes.slowest
    );
    // No write is retried here: the migration never makes one fail, it
    // only makes some wait, and never longer than its lock_timeout.
    assert!(writes.failed.is_empty(), "{:?}", writes.failed);
    assert!(
        writes.during_migration > 0,
        "no write ran during the migration"
    );
    assert!(
        writes.slowest < WRITE_LATENCY_LIMIT,
        "a write waited {:?}: the migration queued writes behind a reader",
        writes.slowest
    );
    assert!(held >= 1);

    // The layout: both tables partitioned, the old table now the legacy
    // partition (its storage kept, not rewritten), then whole months.
    let kinds: Vec<(String, String)> = sqlx::query_as(
        "SELECT relname::text, relkind::text FROM pg_class
         WHERE relname IN ('events', 'delivery_attempts', 'events_partitioned',
                           'delivery_attempts_partitioned')
         ORDER BY relname",
    )
    .fetch_all(&pool)
    .await
    .expect("relkinds");
    assert_eq!(
        kinds,
        [
            ("delivery_attempts".to_owned(), "p".to_owned()),
            ("events".to_owned(), "p".to_owned())
        ]
    );
    let legacy_storage: i64 = sqlx::query_scalar(
        "SELECT relfilenode::bigint FROM pg_class WHERE relname = 'events_legacy'",
    )
    .fetch_one(&pool)
    .await
    .expect("relfilenode");
    assert_eq!(legacy_storage, storage_before);
    let inherited: Vec<(String, String)> = sqlx::query_as(
        "SELECT inhparent::regclass::text, inhrelid::regclass::text FROM pg_inherits
         WHERE inhparent IN ('events'::regclass, 'delivery_attempts'::regclass)
         ORDER BY 1, 2",
    )
    .fetch_all(&pool)
    .await
    .expect("pg_inherits");
    let events = store
        .partitions(ArchiveTable::Events)
        .await
        .expect("partitions");
    let attempts = store
        .partitions(ArchiveTable::DeliveryAttempts)
        .await
        .expect("partitions");
    assert_eq!(inherited.len(), events.len() + attempts.len());
    assert_eq!(events[0].name, "events_legacy");
    assert_eq!(events[0].from, None);
    let bound = events[0]
        .to
        .expect("the legacy partition has an upper bound");
    let bound_month = Month::of_id(bound).expect("a time");
    assert_eq!(bound_month.first_id(), bound, "bounds are month starts");
    assert!(bound_month.start() >= migration_started + chrono::Duration::days(7));
    assert!(bound_month.start() <= migration_started + chrono::Duration::days(39));
    assert_eq!(
        events[1].name,
        ArchiveTable::Events.partition_name(bound_month)
    );
    for pair in events.windows(2) {
        assert_eq!(pair[0].to, pair[1].from, "partitions are contiguous");
    }
    let attempt_bounds: Vec<_> = attempts.iter().map(|p| (p.from, p.to)).collect();
    let event_bounds: Vec<_> = events.iter().map(|p| (p.from, p.to)).collect();
    assert_eq!(attempt_bounds, event_bounds, "attempts follow their events");
    assert_eq!(attempts[0].name, "delivery_attempts_legacy");

    // Every index is a partitioned index, adopted on the legacy partition
    // rather than built again; the foreign keys hold on the parents.
    let indexes: Vec<(String, String)> = sqlx::query_as(
        "SELECT c.relname::text, c.relkind::text FROM pg_index i
         JOIN pg_class c ON c.oid = i.indexrelid
         WHERE i.indrelid = 'events'::regclass ORDER BY 1",
    )
    .fetch_all(&pool)
    .await
    .expect("indexes");
    let expected = [
        "events_dead_letters",
        "events_inbox",
        "events_leasable",
        "events_lease",
        "events_organization",
        "events_pkey",
        "events_unfinished",
    ];
    assert_eq!(
        indexes,
        expected.map(|name| (name.to_owned(), "I".to_owned()))
    );
    for name in expected {
        let legacy = name.replacen("events_", "events_legacy_", 1);
        let adopted: bool = sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM pg_inherits
                            WHERE inhparent = to_regclass($1) AND inhrelid = to_regclass($2))",
        )
        .bind(name)
        .bind(&legacy)
        .fetch_one(&pool)
        .await
        .expect("index inheritance");
        assert!(adopted, "{legacy} is not a partition of {name}");
    }
    let invalid: i64 = sqlx::query_scalar("SELECT count(*) FROM pg_index WHERE NOT indisvalid")
        .fetch_one(&pool)
        .await
        .expect("invalid indexes");
    assert_eq!(invalid, 0);
    let foreign_keys: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM pg_constraint
         WHERE contype = 'f' AND confrelid = 'organizations'::regclass
               AND conrelid IN ('events'::regclass, 'delivery_attempts'::regclass)",
    )
    .fetch_one(&pool)
    .await
    .expect("foreign keys");
    assert_eq!(foreign_keys, 2);
    let leftovers: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM pg_constraint WHERE conname LIKE '%partition_bound'",
    )
    .fetch_one(&pool)
    .await
    .expect("constraints");
    assert_eq!(leftovers, 0);

    // Every row is still there, as it was, and found by id; the inbox
    // shows every organization what it showed before.
    assert_eq!(rows(&pool, "events", writer_org).await, events_before);
    assert_eq!(
        rows(&pool, "delivery_attempts", writer_org).await,
        attempts_before
    );
    let owners: Vec<(Uuid, Uuid, EventStatus)> = sqlx::query_as(
        "SELECT id, organization_id, status FROM events WHERE organization_id <> $1",
    )
    .bind(writer_org)
    .fetch_all(&pool)
    .await
    .expect("owners");
    for (id, organization_id, status) in owners {
        let found = store
            .event(organization_id, id)
            .await
            .expect("event")
            .unwrap_or_else(|| panic!("{id} is not found by id"));
        assert_eq!(found.status, status);
    }
    assert_eq!(inboxes(&store, &organizations).await, inboxes_before);

    // What the writers wrote is there too, in the legacy partition: until
    // the bound, ids belong to it.
    for (id, status) in &writes.events {
        let found = store
            .event(writer_org, *id)
            .await
            .expect("event")
            .unwrap_or_else(|| panic!("written event {id} is lost"));
        assert_eq!(found.status, *status, "{id}");
    }
    assert_eq!(
        partition_of(&pool, "events", "id", writes.events[0].0).await,
        "events_legacy"
    );

    // New rows land in their month's partition: the months a start
    // creates ahead, and a month beyond them, whose partition the archiver
    // creates when Postgres refuses the row.
    partitions::ensure_ahead(&store, Utc::now())
        .await
        .expect("partitions ahead");
    let next = event_at(writer_org, bound_month.start() + chrono::Duration::days(3));
    let after = event_at(writer_org, bound_month.next().start());
    let far = event_at(writer_org, bound_month.plus(8).start());
    store
        .insert_events(&[&next, &after])
        .await
        .expect("months ahead exist");
    let refused = store
        .insert_events(&[&far])
        .await
        .expect_err("no partition that far ahead");
    assert!(refused.is_missing_partition(), "{refused}");
    assert_eq!(
        partitions::cover(&store, &[far.id])
            .await
            .expect("cover the month"),
        2
    );
    store.insert_events(&[&far]).await.expect("now it has one");
    for (event, month) in [
        (&next, bound_month),
        (&after, bound_month.next()),
        (&far, bound_month.plus(8)),
    ] {
        assert_eq!(
            partition_of(&pool, "events", "id", event.id).await,
            ArchiveTable::Events.partition_name(month)
        );
    }
    store
        .record_deliveries(
            &[AttemptRow {
                event_id: next.id,
                attempt: 1,
                organization_id: writer_org,
                attempted_at: Utc::now(),
                duration_ms: 1,
                response_status: Some(200),
                error: None,
                next_retry_at: None,
            }],
            &[],
        )
        .await
        .expect("attempt");
    assert_eq!(
        partition_of(&pool, "delivery_attempts", "event_id", next.id).await,
        ArchiveTable::DeliveryAttempts.partition_name(bound_month)
    );
    let orphan = store
        .insert_events(&[&event_at(Uuid::new_v4(), Utc::now())])
        .await
        .expect_err("the foreign key holds");
    assert!(orphan.to_string().contains("foreign key"), "{orphan}");

    // Running the migrations again changes nothing.
    let layout = store
        .partitions(ArchiveTable::Events)
        .await
        .expect("partitions");
    migrator.migrate().await.expect("migrations again");
    assert_eq!(
        store
            .partitions(ArchiveTable::Events)
            .await
            .expect("partitions"),
        layout
    );

    pool.close().await;
    drop((store, migrator));
    database.drop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_archiver_creates_the_partition_of_a_month_that_has_none() {
    let database = FreshDatabase::create().await;
    let prefix = unique_prefix();
    let mut config = test_config(&prefix);
    config.database.database_url = database.url.as_str().into();
    let app = spawn(config).await;
    let org = app.create_org("pro").await;
    let organization_id: Uuid = org.id.parse().expect("uuid");
    let store = Store::connect(&database.url, 2).await.expect("store");

    // A replica whose clock runs a year ahead accepted this event: no
    // partition was created that far ahead.
    let month = Month::of(Utc::now()).plus(12);
    let event = event_at(organization_id, month.start() + chrono::Duration::hours(5));
    let name = ArchiveTable::Events.partition_name(month);
    assert!(
        store
            .partitions(ArchiveTable::Events)
            .await
            .expect("partitions")
            .iter()
            .all(|p| p.name != name)
    );
    inject_entry(&redis().await, &prefix, event.clone()).await;

    eventually(Duration::from_secs(20), || async {
        store
            .event(organization_id, event.id)
            .await
            .expect("event")
            .is_some()
    })
    .await;
    let pool = database.pool(1).await;
    assert_eq!(partition_of(&pool, "events", "id", event.id).await, name);
    assert!(
        store
            .partitions(ArchiveTable::DeliveryAttempts)
            .await
            .expect("partitions")
            .iter()
            .any(|p| p.name == ArchiveTable::DeliveryAttempts.partition_name(month))
    );

    app.stop().await;
    pool.close().await;
    drop(store);
    database.drop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_months_of_partitions_ahead_are_counted_and_reported() {
    let database = FreshDatabase::create().await;
    let mut config = test_config(&unique_prefix());
    config.database.database_url = database.url.as_str().into();
    let app = spawn(config).await;
    let store = Store::connect(&database.url, 2).await.expect("store");

    // The worker's first retention pass created this month and three more.
    let now = Utc::now();
    assert_eq!(
        partitions::months_ahead(&store, now).await.expect("count"),
        Some(partitions::MONTHS_AHEAD)
    );
    let gauge = format!(
        "triggers_archive_partitions_ahead {}",
        partitions::MONTHS_AHEAD
    );
    eventually(Duration::from_secs(10), || async {
        app.metrics().await.lines().any(|line| line == gauge)
    })
    .await;

    // Seen from later months, fewer are left: at the last one, none.
    let later = |months: u32| Month::of(now).plus(months).start() + chrono::Duration::days(1);
    assert_eq!(
        partitions::months_ahead(&store, later(2))
            .await
            .expect("count"),
        Some(partitions::MONTHS_AHEAD - 2)
    );
    assert_eq!(
        partitions::months_ahead(&store, later(partitions::MONTHS_AHEAD))
            .await
            .expect("count"),
        Some(0)
    );

    app.stop().await;
    drop(store);
    database.drop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_binary_starts_beside_migrations_of_a_newer_release() {
    let database = FreshDatabase::create().await;
    let store = Store::connect(&database.url, 2).await.expect("store");
    store.prepare(true).await.expect("first migration");
    // What a newer release leaves behind after a rollback to this one.
    let pool = PgPool::connect(&database.url).await.expect("connect");
    sqlx::query(
        "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time)
         VALUES (99990101000000, 'from a newer release', TRUE, '\\x00', 1)",
    )
    .execute(&pool)
    .await
    .expect("record a newer migration");
    pool.close().await;

    let again = Store::connect(&database.url, 2).await.expect("store");
    again
        .prepare(true)
        .await
        .expect("a migration this binary does not know must not stop it");
    drop((store, again));
    database.drop().await;
}
