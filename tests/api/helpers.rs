//! Starting the service in-process, on a random port, in a world of its own:
//! each test gets its own Redis key prefix and its own organizations, which
//! go when the test ends (see `world`).

use std::{
    net::SocketAddr,
    sync::Arc,
    time::{Duration, Instant},
};

use fred::prelude::Pool;
use serde_json::{Value, json};
use tokio::{net::TcpListener, task::JoinHandle};
use tokio_util::sync::CancellationToken;
use triggers_api::{
    config::{Config, Environment, Role},
    domain::{EventRecord, mint_event_id},
    streams::StreamEntry,
};
use uuid::Uuid;

use crate::world::{World, run_aside};
pub use crate::{fresh_database::FreshDatabase, world::Prefix};

/// The service running in-process. Dropped without `stop` (a test that
/// panicked, say), it is shut down all the same.
pub struct TestApp {
    pub base: String,
    pub config: Config,
    pub client: reqwest::Client,
    shutdown: CancellationToken,
    /// `None` once stopped.
    handle: Option<JoinHandle<anyhow::Result<()>>>,
    world: Arc<World>,
}

pub struct Org {
    pub id: String,
    pub key: String,
}

/// A configuration for one test world; `prefix` isolates its Redis keys.
pub fn test_config(prefix: &str) -> Config {
    let mut config = Config::from_env().expect("configuration from the environment");
    config.process.listen = SocketAddr::from(([127, 0, 0, 1], 0));
    config.shared.redis_prefix = prefix.to_owned();
    config.consumers.consumer_name = Some(format!("test-{}", Uuid::new_v4().simple()));
    config.shared.stream_shards = 2;
    config.pools.db_pool_size = 4;
    config.pools.redis_pool_size = 2;
    config.consumers.visibility_timeout = Duration::from_secs(2);
    config.process.shutdown_timeout = Duration::from_secs(5);
    // Tests create organizations freely and need no real encryption key.
    config.security.environment = Environment::Development;
    config.security.allow_open_signup = true;
    config
}

/// A new key prefix; its keys are deleted once the prefix and every app
/// started with it are dropped.
pub fn unique_prefix() -> Prefix {
    Prefix::new()
}

pub async fn spawn_app() -> TestApp {
    spawn(test_config(&unique_prefix())).await
}

pub async fn spawn(config: Config) -> TestApp {
    let world = World::join(&config.shared.redis_prefix);
    world.uses_redis(&config.shared.redis_url);
    let listener = TcpListener::bind(config.process.listen)
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("local addr");
    let shutdown = CancellationToken::new();
    let handle = tokio::spawn(triggers_api::run(
        config.clone(),
        listener,
        shutdown.clone(),
    ));
    let app = TestApp {
        base: format!("http://{addr}"),
        config,
        client: reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .expect("http client"),
        shutdown,
        handle: Some(handle),
        world,
    };
    eventually(Duration::from_secs(30), || async {
        app.client
            .get(app.url("/health"))
            .send()
            .await
            .is_ok_and(|r| r.status() == 200)
    })
    .await;
    app
}

/// What a polled check returns: `true`, or `Some(value)`, once it holds.
pub trait Settled {
    type Value;
    fn settled(self) -> Option<Self::Value>;
}

impl Settled for bool {
    type Value = ();
    fn settled(self) -> Option<()> {
        self.then_some(())
    }
}

impl<T> Settled for Option<T> {
    type Value = T;
    fn settled(self) -> Option<T> {
        self
    }
}

/// The one way tests wait: polls `check` every 20 ms until it holds and
/// returns what it settled on; panics after `limit`.
pub async fn eventually<F, Fut>(limit: Duration, mut check: F) -> <Fut::Output as Settled>::Value
where
    F: FnMut() -> Fut,
    Fut: std::future::Future,
    Fut::Output: Settled,
{
    let started = Instant::now();
    loop {
        if let Some(value) = check().await.settled() {
            return value;
        }
        assert!(
            started.elapsed() < limit,
            "condition not met within {limit:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// How tests show that something did not happen: polls `check` `polls`
/// times, `every` apart (the first after `every`), and panics on the first
/// poll where it holds.
pub async fn never<F, Fut>(polls: u32, every: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    for poll in 1..=polls {
        tokio::time::sleep(every).await;
        assert!(
            !check().await,
            "condition met on poll {poll} of {polls}, {every:?} apart"
        );
    }
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// A second replica of the same deployment: same Redis prefix and
    /// database, its own port and consumer name.
    pub async fn replica(&self, role: Role) -> TestApp {
        let mut config = test_config(&self.config.shared.redis_prefix);
        config.process.role = role;
        spawn(config).await
    }

    pub async fn create_org(&self, tier: &str) -> Org {
        let response = self
            .client
            .post(self.url("/api/keys/generate"))
            .json(&json!({ "organization_name": format!("org-{}", Uuid::new_v4()), "tier": tier }))
            .send()
            .await
            .expect("generate");
        assert_eq!(response.status(), 201);
        let body: Value = response.json().await.expect("json");
        let id = body["organization_id"].as_str().expect("id").to_owned();
        self.world.created_organization(
            &self.config.database.database_url,
            id.parse().expect("organization id"),
        );
        Org {
            id,
            key: body["api_key"].as_str().expect("key").to_owned(),
        }
    }

    pub async fn post_event(&self, key: &str, body: &Value) -> reqwest::Response {
        self.client
            .post(self.url("/api/events"))
            .header("x-api-key", key)
            .json(body)
            .send()
            .await
            .expect("post event")
    }

    /// Posts a valid event and returns its id.
    pub async fn send(&self, key: &str, event_type: &str, payload: Value) -> String {
        let response = self
            .post_event(key, &json!({ "type": event_type, "payload": payload }))
            .await;
        assert_eq!(response.status(), 202);
        let body: Value = response.json().await.expect("json");
        body["id"].as_str().expect("id").to_owned()
    }

    pub async fn get(&self, key: &str, path: &str) -> reqwest::Response {
        self.client
            .get(self.url(path))
            .header("x-api-key", key)
            .send()
            .await
            .expect("get")
    }

    pub async fn post(&self, key: &str, path: &str) -> reqwest::Response {
        self.client
            .post(self.url(path))
            .header("x-api-key", key)
            .send()
            .await
            .expect("post")
    }

    /// The Prometheus text of `/metrics`.
    pub async fn metrics(&self) -> String {
        let response = self
            .client
            .get(self.url("/metrics"))
            .send()
            .await
            .expect("metrics");
        response.text().await.expect("metrics text")
    }

    /// An event as `GET /api/events/{id}` shows it.
    pub async fn event(&self, key: &str, id: &str) -> serde_json::Value {
        let response = self.get(key, &format!("/api/events/{id}")).await;
        response.json().await.expect("event JSON")
    }

    /// The event once its status is `wanted` (within 20 s).
    pub async fn wait_status(&self, key: &str, id: &str, wanted: &str) -> Value {
        eventually(Duration::from_secs(20), || async {
            let event = self.event(key, id).await;
            (event["status"] == wanted).then_some(event)
        })
        .await
    }

    pub async fn stop(mut self) {
        self.shutdown.cancel();
        let handle = self.handle.take().expect("not stopped yet");
        let outcome = tokio::time::timeout(Duration::from_secs(15), handle)
            .await
            .expect("service stops in time")
            .expect("service task");
        outcome.expect("service ran without error");
    }
}

impl Drop for TestApp {
    /// Shuts the service down and waits for it (bounded), so it writes no
    /// key after its world is cleaned up. Runs on every exit, panics included.
    fn drop(&mut self) {
        self.shutdown.cancel();
        let Some(handle) = self.handle.take() else {
            return;
        };
        let abort = handle.abort_handle();
        // A current-thread runtime is this very thread: the service cannot
        // make progress while it waits, so it is cut short instead.
        let waits = tokio::runtime::Handle::try_current()
            .is_ok_and(|h| h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread);
        if !waits || run_aside(handle).is_none() {
            abort.abort();
        }
    }
}

pub async fn db() -> sqlx::PgPool {
    let config = Config::from_env().expect("configuration from the environment");
    sqlx::postgres::PgPoolOptions::new()
        .max_connections(2)
        .connect(&config.database.database_url)
        .await
        .expect("connect to Postgres")
}

pub async fn redis() -> Pool {
    let config = Config::from_env().expect("configuration from the environment");
    triggers_api::redis::connect_pool(&config.shared.redis_url, 1)
        .await
        .expect("connect to Redis")
}

/// How many times the archive holds the event.
pub async fn archived_count(db: &sqlx::PgPool, id: &str) -> i64 {
    let id: Uuid = id.parse().expect("uuid");
    sqlx::query_scalar("SELECT count(*) FROM events WHERE id = $1")
        .bind(id)
        .fetch_one(db)
        .await
        .expect("count")
}

pub async fn wait_archived(db: &sqlx::PgPool, id: &str) {
    eventually(Duration::from_secs(15), || async {
        archived_count(db, id).await == 1
    })
    .await;
}

/// Writes an entry Postgres cannot store (NUL in its payload) straight into
/// shard 0's stream, as an older release might have: the API refuses such
/// events, so only this way can a test put one there. Returns its event id.
pub async fn inject_unstorable_entry(pool: &Pool, prefix: &str, organization_id: &str) -> Uuid {
    let (id, created_at) = mint_event_id();
    inject_entry(
        pool,
        prefix,
        EventRecord {
            id,
            organization_id: organization_id.parse().expect("organization id"),
            event_type: "poison".to_owned(),
            dedup_id: None,
            payload: r#"{"bad":"\u0000"}"#.to_owned(),
            created_at,
        },
    )
    .await;
    id
}

/// Writes `event` straight into shard 0's stream, as if accepted, for
/// events the API would never mint (another id, another time).
pub async fn inject_entry(pool: &Pool, prefix: &str, event: EventRecord) {
    let keys = triggers_api::redis::Keys::new(prefix, 1);
    let entry = StreamEntry::new(event);
    let _: String = fred::prelude::StreamsInterface::xadd(
        pool,
        keys.stream(0),
        false,
        None,
        "*",
        entry.fields(),
    )
    .await
    .expect("xadd");
}
