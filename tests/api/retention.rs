//! Retention: finished events past the tier's retention go, with their
//! attempts; nothing undelivered goes, however old; the tier decides.

use chrono::{Duration, Utc};
use serde_json::Value;
use tokio_util::sync::CancellationToken;
use triggers_api::{
    domain::Tier,
    retention::{DEFAULT_RETENTION, RetentionPolicy, RetentionSweeper},
    store::Store,
};
use uuid::Uuid;

use crate::helpers::{db, spawn_app};

/// An archived event created `days_ago`, with one delivery attempt.
async fn old_event(db: &sqlx::PgPool, org: Uuid, days_ago: i64, status: &str) -> Uuid {
    let at = Utc::now() - Duration::days(days_ago);
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
    let app = spawn_app().await;
    let free = app.create_org("free").await;
    let enterprise = app.create_org("enterprise").await;
    let info: Value = app
        .get(&free.key, "/api/keys")
        .await
        .json()
        .await
        .expect("info");
    assert_eq!(info["retention_days"], 7);

    let db = db().await;
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
}
