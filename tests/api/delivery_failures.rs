//! Delivery when one organization's webhook cannot be used as configured:
//! its own entries end visibly, and nobody else's wait for them.

use std::{collections::HashSet, time::Duration};

use fred::prelude::{Pool, StreamsInterface, Value as RedisValue};
use serde_json::{Value, json};
use triggers_api::{redis::Keys, sealing::Sealer};
use uuid::Uuid;

use crate::{
    delivery::{configure, webhook_config},
    helpers::{FreshDatabase, TestApp, db, eventually, redis, spawn},
    receiver::{Receiver, status},
};

/// A key this deployment does not hold (32 bytes, base64).
const FOREIGN_KEY: &str = "elsewhere:AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";

/// Entries read by the delivery group and not acknowledged, over every
/// stream of `prefix`'s shards.
async fn pending_deliveries(pool: &Pool, keys: &Keys) -> u64 {
    let mut pending = 0;
    for shard in 0..keys.shards() {
        for stream in [keys.stream(shard), keys.redeliver(shard)] {
            let summary: Vec<RedisValue> = pool
                .xpending(stream, "delivery", ())
                .await
                .unwrap_or_default();
            pending += summary.first().and_then(RedisValue::as_u64).unwrap_or(0);
        }
    }
    pending
}

fn counter(metrics: &str, name: &str) -> f64 {
    metrics
        .lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(' '))
        .and_then(|value| value.trim().parse().ok())
        .unwrap_or(0.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_organization_whose_secret_cannot_be_opened_holds_up_nobody_else() {
    let config = webhook_config(&[100]);
    let keys = Keys::new(&config.shared.redis_prefix, config.shared.stream_shards);
    let app = spawn(config).await;
    let receiver = Receiver::start().await;
    let good = app.create_org("pro").await;
    let bad = app.create_org("pro").await;
    configure(&app, &good.key, &receiver.url).await;
    configure(&app, &bad.key, &receiver.url).await;

    // The bad organization's secret was sealed under a key that has since
    // left TRIGGERS_SECRET_KEYS.
    let bad_id: Uuid = bad.id.parse().expect("organization id");
    let sealed = Sealer::from_spec(FOREIGN_KEY)
        .expect("a key")
        .seal("whsec_c2VhbGVkIGVsc2V3aGVyZQ", bad_id.as_bytes())
        .expect("sealed");
    let db = db().await;
    sqlx::query("UPDATE organizations SET webhook_secret = $2 WHERE id = $1")
        .bind(bad_id)
        .bind(sealed)
        .execute(&db)
        .await
        .expect("secret replaced");

    let (mut good_ids, mut bad_ids) = (Vec::new(), Vec::new());
    for n in 0..5 {
        bad_ids.push(app.send(&bad.key, "unsignable", json!({ "n": n })).await);
        good_ids.push(app.send(&good.key, "signable", json!({ "n": n })).await);
    }
    for id in &good_ids {
        app.wait_status(&good.key, id, "delivered").await;
    }
    for id in &bad_ids {
        let dead = app.wait_status(&bad.key, id, "dead_letter").await;
        let error = dead["last_error"].as_str().unwrap_or_default();
        assert!(error.contains("TRIGGERS_SECRET_KEYS"), "{dead}");
        assert_eq!(dead["attempts"], 0, "no request was made: {dead}");
    }
    let sent: HashSet<String> = receiver
        .received()
        .iter()
        .filter_map(|r| r.headers["webhook-id"].to_str().ok().map(str::to_owned))
        .collect();
    assert_eq!(sent, good_ids.iter().cloned().collect::<HashSet<_>>());
    let metrics = app.metrics().await;
    let unsignable = counter(&metrics, "triggers_deliveries_unsignable_total");
    assert!(unsignable >= 5.0, "{unsignable}");

    // Acknowledged, not left pending: a restarted worker does not meet
    // these entries again.
    let pool = redis().await;
    eventually(Duration::from_secs(10), || async {
        pending_deliveries(&pool, &keys).await == 0
    })
    .await;
    db.close().await;
    app.stop().await;
}

async fn webhook_of(app: &TestApp, key: &str) -> Value {
    let info: Value = app.get(key, "/api/keys").await.json().await.expect("keys");
    info["webhook"].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_410_is_not_acknowledged_until_its_webhook_is_disabled() {
    // A trigger on `organizations` is a schema change: a database of its own.
    let database = FreshDatabase::create().await;
    let mut config = webhook_config(&[100]);
    config.database.database_url = database.url.clone().into();
    // Entries left pending are claimed again after 6 s.
    config.webhooks.webhook_timeout = Duration::from_secs(1);
    let app = spawn(config).await;
    let receiver = Receiver::start().await;
    receiver.otherwise(status(410));
    let org = app.create_org("pro").await;
    configure(&app, &org.key, &receiver.url).await;

    // Postgres refuses to disable this webhook for now.
    let db = database.pool(1).await;
    for statement in [
        "CREATE FUNCTION refuse_disable() RETURNS trigger LANGUAGE plpgsql AS
         $$ BEGIN RAISE EXCEPTION 'webhook disable refused'; END $$"
            .to_owned(),
        format!(
            "CREATE TRIGGER refuse_disable BEFORE UPDATE ON organizations FOR EACH ROW
             WHEN (NEW.id = '{}' AND NOT NEW.webhook_enabled) EXECUTE FUNCTION refuse_disable()",
            org.id
        ),
    ] {
        sqlx::query(&statement)
            .execute(&db)
            .await
            .expect("refusing trigger");
    }

    let id = app.send(&org.key, "gone", json!({})).await;
    eventually(Duration::from_secs(10), || async { receiver.count() >= 1 }).await;
    // Never dead-lettered (and acknowledged) while the webhook stays enabled.
    for _ in 0..25 {
        let event = app.event(&org.key, &id).await;
        let enabled = webhook_of(&app, &org.key).await["enabled"] == true;
        assert!(
            !(event["status"] == "dead_letter" && enabled),
            "dead-lettered while its webhook is still enabled: {event}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Once Postgres takes the disable, the retried 410 ends as it should.
    sqlx::query("DROP TRIGGER refuse_disable ON organizations")
        .execute(&db)
        .await
        .expect("drop trigger");
    let dead = app.wait_status(&org.key, &id, "dead_letter").await;
    assert!(
        dead["last_error"]
            .as_str()
            .unwrap_or_default()
            .contains("410"),
        "{dead}"
    );
    let webhook = webhook_of(&app, &org.key).await;
    assert_eq!(webhook["enabled"], false, "{webhook}");
    assert!(receiver.count() >= 2, "the 410 was attempted again");
    db.close().await;
    app.stop().await;
    database.drop().await;
}
