//! Retention: finished events past the tier's retention go, with their
//! attempts; nothing undelivered goes, however old; the tier decides. A
//! monthly partition wholly past the longest retention goes whole, unless
//! an event in it still waits.

use chrono::{DateTime, Duration, Utc};
use serde_json::Value;
use tokio_util::sync::CancellationToken;
use triggers_api::{
    config::Role,
    domain::Tier,
    partitions::{self, MONTHS_AHEAD},
    retention::{DEFAULT_RETENTION, DELETE_BATCH, RetentionPolicy, RetentionSweeper},
    store::{ArchiveTable, Month, Store},
};
use uuid::Uuid;

use crate::helpers::{FreshDatabase, spawn, test_config, unique_prefix};

/// An archived event created `days_ago`, with one delivery attempt.
async fn old_event(db: &sqlx::PgPool, org: Uuid, days_ago: i64, status: &str) -> Uuid {
    event_at(db, org, Utc::now() - Duration::days(days_ago), status).await
}

/// An archived event created at `at`, with one delivery attempt.
async fn event_at(db: &sqlx::PgPool, org: Uuid, at: DateTime<Utc>, status: &str) -> Uuid {
    let random = *Uuid::new_v4().as_bytes();
    let mut tail = [0u8; 10];
    tail.copy_from_slice(&random[..10]);
    let millis = u64::try_from(at.timestamp_millis()).expect("after 1970");
    let id = uuid::Builder::from_unix_timestamp_millis(millis, &tail).into_uuid();
    sqlx::query(
        "INSERT INTO events (id, organization_id, type, payload, status, created_at)
         VALUES ($1, $2, 'old', '{}', $3, $4)",
    )
    .bind(id)
    .bind(org)
    .bind(status)
    .bind(at)
    .execute(db)
    .await
    .expect("insert event");
    sqlx::query(
        "INSERT INTO delivery_attempts (event_id, attempt, organization_id, attempted_at, duration_ms)
         VALUES ($1, 1, $2, $3, 5)",
    )
    .bind(id)
    .bind(org)
    .bind(at)
    .execute(db)
    .await
    .expect("insert attempt");
    id
}

async fn exists(db: &sqlx::PgPool, id: Uuid) -> bool {
    sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM events WHERE id = $1)")
        .bind(id)
        .fetch_one(db)
        .await
        .expect("exists")
}

#[tokio::test]
async fn finished_events_past_the_tiers_retention_are_removed_and_nothing_else() {
    // A database of its own and no worker: the retention pass of any other
    // test's worker would sweep these organizations too, and count the
    // removals as its own.
    let database = FreshDatabase::create().await;
    let mut config = test_config(&unique_prefix());
    config.database.database_url = database.url.as_str().into();
    config.process.role = Role::Api;
    let app = spawn(config).await;
    let free = app.create_org("free").await;
    let enterprise = app.create_org("enterprise").await;
    let info: Value = app
        .get(&free.key, "/api/keys")
        .await
        .json()
        .await
        .expect("info");
    assert_eq!(info["retention_days"], 7);

    let db = database.pool(2).await;
    let free_id: Uuid = free.id.parse().expect("uuid");
    let enterprise_id: Uuid = enterprise.id.parse().expect("uuid");
    let delivered_old = old_event(&db, free_id, 10, "delivered").await;
    let acked_old = old_event(&db, free_id, 8, "acknowledged").await;
    let kept = [
        old_event(&db, free_id, 10, "queued").await,
        old_event(&db, free_id, 30, "dead_letter").await,
        old_event(&db, free_id, 30, "failed").await,
        old_event(&db, free_id, 30, "quarantined").await,
        old_event(&db, free_id, 6, "delivered").await,
        old_event(&db, enterprise_id, 10, "delivered").await,
    ];

    let store = Store::connect(&app.config.database.database_url, 2)
        .await
        .expect("store");
    let policy = RetentionPolicy::parse(DEFAULT_RETENTION).expect("policy");
    // One event a batch, so the loop over batches is exercised too.
    let sweeper = RetentionSweeper::new(store, policy, 1);
    let none = CancellationToken::new();
    let swept = sweeper
        .sweep_organization(free_id, Tier::Free, &none)
        .await
        .expect("sweep");
    assert_eq!((swept.events, swept.attempts), (2, 2));
    let enterprise_swept = sweeper
        .sweep_organization(enterprise_id, Tier::Enterprise, &none)
        .await
        .expect("sweep");
    assert_eq!(enterprise_swept.events, 0);

    assert!(!exists(&db, delivered_old).await);
    assert!(!exists(&db, acked_old).await);
    for id in kept {
        assert!(exists(&db, id).await, "{id} was removed");
    }
    let orphans: i64 =
        sqlx::query_scalar("SELECT count(*) FROM delivery_attempts WHERE event_id = ANY($1)")
            .bind(vec![delivered_old, acked_old])
            .fetch_one(&db)
            .await
            .expect("attempts");
    assert_eq!(orphans, 0, "attempts go with their events");
    app.stop().await;
    db.close().await;
    database.drop().await;
}

async fn organization(db: &sqlx::PgPool, tier: &str) -> Uuid {
    let id = Uuid::new_v4();
    sqlx::query(
        "INSERT INTO organizations (id, name, tier, rate_limit_per_minute)
         VALUES ($1, $2, $3, 100)",
    )
    .bind(id)
    .bind(format!("org-{id}"))
    .bind(tier)
    .execute(db)
    .await
    .expect("organization");
    id
}

async fn table_exists(db: &sqlx::PgPool, name: &str) -> bool {
    sqlx::query_scalar("SELECT to_regclass($1) IS NOT NULL")
        .bind(name)
        .fetch_one(db)
        .await
        .expect("to_regclass")
}

async fn attempts_of(db: &sqlx::PgPool, id: Uuid) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM delivery_attempts WHERE event_id = $1")
        .bind(id)
        .fetch_one(db)
        .await
        .expect("attempts")
}

/// A database of its own, migrated, and the first month after the legacy
/// partition: partitions are dropped there, out of other tests' way.
async fn partitioned() -> (FreshDatabase, Store, sqlx::PgPool, Month) {
    let database = FreshDatabase::create().await;
    let store = Store::connect(&database.url, 4).await.expect("store");
    store.migrate().await.expect("migrate");
    let pool = database.pool(3).await;
    let legacy = &store
        .partitions(ArchiveTable::Events)
        .await
        .expect("partitions")[0];
    assert_eq!(legacy.name, "events_legacy");
    let first = Month::of_id(legacy.to.expect("bounded")).expect("a month");
    (database, store, pool, first)
}

#[tokio::test]
async fn partitions_past_the_longest_retention_go_whole_unless_an_event_in_them_waits() {
    let (database, store, db, first) = partitioned().await;
    let free = organization(&db, "free").await;
    let enterprise = organization(&db, "enterprise").await;
    let created = partitions::ensure_ahead(&store, first.start())
        .await
        .expect("partitions ahead");
    assert!(created > 0);
    let (m1, m2, m3) = (first, first.next(), first.plus(2));
    let day = |month: Month, n: i64| month.start() + Duration::days(n);

    // The first month holds finished events only; the second one event
    // still waiting; the legacy partition a dead letter; the third month
    // is not wholly past the longest retention.
    let gone = [
        event_at(&db, free, day(m1, 1), "delivered").await,
        event_at(&db, enterprise, day(m1, 2), "acknowledged").await,
        event_at(&db, enterprise, day(m1, 20), "delivered").await,
    ];
    let waiting = event_at(&db, enterprise, day(m2, 3), "failed").await;
    let finished_beside_it = event_at(&db, enterprise, day(m2, 4), "delivered").await;
    let dead_letter = old_event(&db, free, 3, "dead_letter").await;
    let finished_legacy = old_event(&db, free, 2, "acknowledged").await;
    let young_enterprise = event_at(&db, enterprise, day(m3, 2), "delivered").await;
    let young_free = event_at(&db, free, day(m3, 2), "delivered").await;

    // Sixty days past the second month and a day: the longest retention
    // (enterprise's) keeps nothing before the third month's second day.
    let policy =
        RetentionPolicy::parse("free=30d,pro=30d,business=30d,enterprise=60d").expect("policy");
    let now = m3.start() + Duration::days(61);
    let sweeper = RetentionSweeper::new(store.clone(), policy, DELETE_BATCH);
    let swept = sweeper
        .sweep_at(now, &CancellationToken::new())
        .await
        .expect("sweep");

    assert_eq!(swept.partitions_dropped, 2, "{swept:?}");
    for table in ArchiveTable::ALL {
        assert!(!table_exists(&db, &table.partition_name(m1)).await);
        assert!(table_exists(&db, &table.partition_name(m2)).await);
        assert!(table_exists(&db, &table.legacy_name()).await);
    }
    for id in gone {
        assert!(!exists(&db, id).await);
        assert_eq!(attempts_of(&db, id).await, 0);
    }
    // Kept partitions lose their finished events row by row, as before.
    assert!(
        exists(&db, waiting).await,
        "an unfinished event was removed"
    );
    assert!(
        exists(&db, dead_letter).await,
        "an unfinished event was removed"
    );
    assert!(!exists(&db, finished_beside_it).await);
    assert!(!exists(&db, finished_legacy).await);
    // The tier decides within a partition not wholly past.
    assert!(exists(&db, young_enterprise).await);
    assert!(!exists(&db, young_free).await);

    // The pass created the partitions the simulated present needs.
    assert!(swept.partitions_created > 0);
    for n in 0..=MONTHS_AHEAD {
        for table in ArchiveTable::ALL {
            let name = table.partition_name(Month::of(now).plus(n));
            assert!(table_exists(&db, &name).await, "{name} missing");
        }
    }
    // A second pass finds nothing more to drop or create.
    let again = sweeper
        .sweep_at(now, &CancellationToken::new())
        .await
        .expect("sweep");
    assert_eq!((again.partitions_dropped, again.partitions_created), (0, 0));

    db.close().await;
    drop((store, sweeper));
    database.drop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_interrupted_drop_is_completed_and_a_partition_whose_event_waits_again_is_kept() {
    let (database, store, db, first) = partitioned().await;
    let org = organization(&db, "pro").await;
    partitions::ensure_ahead(&store, first.start())
        .await
        .expect("partitions ahead");
    let (m1, m2) = (first, first.next());
    let replayed = event_at(&db, org, m1.start() + Duration::days(1), "delivered").await;
    let finished = event_at(&db, org, m1.start() + Duration::days(2), "delivered").await;
    let doomed = event_at(&db, org, m2.start() + Duration::days(1), "acknowledged").await;

    // A pass detached the first month, then stopped; meanwhile a replay
    // had made one of its events wait again.
    for table in ArchiveTable::ALL {
        sqlx::raw_sql(&format!(
            "ALTER TABLE {} DETACH PARTITION {} CONCURRENTLY",
            table.name(),
            table.partition_name(m1)
        ))
        .execute(&db)
        .await
        .expect("detach");
    }
    sqlx::query(&format!(
        "UPDATE {} SET status = 'queued' WHERE id = $1",
        ArchiveTable::Events.partition_name(m1)
    ))
    .bind(replayed)
    .execute(&db)
    .await
    .expect("replay");
    // Another pass's detach of the second month gave up waiting for a
    // reader, and left it pending.
    let mut reader = db.begin().await.expect("begin");
    let _: i64 = sqlx::query_scalar("SELECT count(*) FROM events")
        .fetch_one(&mut *reader)
        .await
        .expect("read");
    let mut detacher = db.acquire().await.expect("connection");
    sqlx::raw_sql("SET lock_timeout = '300ms'")
        .execute(&mut *detacher)
        .await
        .expect("lock_timeout");
    let interrupted = sqlx::raw_sql(&format!(
        "ALTER TABLE events DETACH PARTITION {} CONCURRENTLY",
        ArchiveTable::Events.partition_name(m2)
    ))
    .execute(&mut *detacher)
    .await;
    assert!(interrupted.is_err(), "the detach waits for the reader");
    detacher.detach();
    reader.commit().await.expect("commit");
    let pending = store
        .partitions(ArchiveTable::Events)
        .await
        .expect("partitions");
    assert!(
        pending
            .iter()
            .any(|p| p.name == ArchiveTable::Events.partition_name(m2) && p.detach_pending)
    );

    // The next pass completes both: the first month is attached back (an
    // event in it waits), the second and the empty legacy partition go.
    let done = partitions::drop_expired(&store, m2.next().first_id())
        .await
        .expect("drop");
    assert_eq!(done.reattached, 2, "{done:?}");
    assert_eq!(done.dropped, 4, "{done:?}");
    assert_eq!(done.kept, 1, "{done:?}");
    let attached: Vec<String> = store
        .partitions(ArchiveTable::Events)
        .await
        .expect("partitions")
        .into_iter()
        .map(|p| p.name)
        .collect();
    assert_eq!(attached[0], ArchiveTable::Events.partition_name(m1));
    for table in ArchiveTable::ALL {
        assert!(!table_exists(&db, &table.partition_name(m2)).await);
        assert!(!table_exists(&db, &table.legacy_name()).await);
    }
    let event = store
        .event(org, replayed)
        .await
        .expect("event")
        .expect("the replayed event is back");
    assert_eq!(event.status, triggers_api::domain::EventStatus::Queued);
    assert_eq!(
        store.attempts(org, replayed).await.expect("attempts").len(),
        1
    );
    assert!(
        exists(&db, finished).await,
        "a partition kept keeps its rows"
    );
    assert!(!exists(&db, doomed).await);

    db.close().await;
    drop(store);
    database.drop().await;
}
