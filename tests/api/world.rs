//! One test's world: its Redis key prefix, the Redis servers its apps used
//! and the organizations it created; all of it is deleted when the last
//! thing using the world is dropped, also when the test panicked.
//!
//! A test holds its world through the [`Prefix`] that `unique_prefix`
//! returns, and every app or process started with that prefix holds it too
//! (found by name, so a `Config` carrying only the prefix string is enough).
//! So an app a test stops and starts again finds its keys where it left
//! them, and the keys go only when the test is over.
//!
//! `Drop` is synchronous and may run while a panic unwinds through the
//! test's runtime, which a current-thread runtime cannot lend to a blocking
//! wait, and which is dropped right after the test body: a task spawned on it
//! for clean-up would be cancelled half-way. So clean-up runs on a thread of
//! its own with its own small runtime, and the dropping thread waits for it,
//! within a bound.

use std::{
    collections::{BTreeMap, BTreeSet},
    future::Future,
    ops::Deref,
    sync::{Arc, Mutex, MutexGuard, PoisonError, Weak},
    time::Duration,
};

use fred::prelude::{ClientLike, KeysInterface};
use futures_util::{StreamExt, TryStreamExt};
use tokio::runtime::{Handle, RuntimeFlavor};
use uuid::Uuid;

/// How long clean-up may take before the test goes on without it.
const CLEANUP_LIMIT: Duration = Duration::from_secs(10);
/// More keys than any test writes: the scan stops there.
const MAX_KEYS: usize = 100_000;

/// Worlds in use, by prefix.
static WORLDS: Mutex<BTreeMap<String, Weak<World>>> = Mutex::new(BTreeMap::new());

/// A lock that a panic elsewhere does not turn into a second panic here
/// (a panic inside `Drop` while unwinding aborts the whole test binary).
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

pub struct World {
    prefix: String,
    redis_urls: Mutex<BTreeSet<String>>,
    /// (database URL, organization id) of each organization created.
    organizations: Mutex<Vec<(String, Uuid)>>,
}

impl World {
    /// The world of `prefix`: the one in use, or a new one.
    pub fn join(prefix: &str) -> Arc<World> {
        let mut worlds = lock(&WORLDS);
        if let Some(world) = worlds.get(prefix).and_then(Weak::upgrade) {
            return world;
        }
        let world = Arc::new(World {
            prefix: prefix.to_owned(),
            redis_urls: Mutex::default(),
            organizations: Mutex::default(),
        });
        worlds.insert(prefix.to_owned(), Arc::downgrade(&world));
        world
    }

    /// Keys under the prefix on the Redis at `url` are this world's.
    pub fn uses_redis(&self, url: &str) {
        lock(&self.redis_urls).insert(url.to_owned());
    }

    pub fn created_organization(&self, database_url: &str, id: Uuid) {
        lock(&self.organizations).push((database_url.to_owned(), id));
    }
}

impl Drop for World {
    fn drop(&mut self) {
        {
            let mut worlds = lock(&WORLDS);
            // A world for the same prefix may have begun since this one's
            // last holder let go; that one stays registered.
            if worlds
                .get(&self.prefix)
                .is_some_and(|w| w.strong_count() == 0)
            {
                worlds.remove(&self.prefix);
            }
        }
        let redis_urls = std::mem::take(&mut *lock(&self.redis_urls));
        let organizations = std::mem::take(&mut *lock(&self.organizations));
        if redis_urls.is_empty() && organizations.is_empty() {
            return;
        }
        let prefix = &self.prefix;
        let cleaned = run_aside(async {
            for url in &redis_urls {
                if let Err(err) = delete_keys(url, prefix).await {
                    eprintln!("clean-up: keys under {prefix} on {url} stay: {err}");
                }
            }
            delete_organizations(&organizations).await;
        });
        if cleaned.is_none() {
            eprintln!("clean-up of {prefix} did not finish within {CLEANUP_LIMIT:?}");
        }
    }
}

/// A test's key prefix; holding it keeps the test's world, and dropping the
/// last holder cleans it up.
#[derive(Clone)]
pub struct Prefix {
    world: Arc<World>,
}

impl Prefix {
    pub fn new() -> Self {
        Self {
            world: World::join(&format!("test-{}", Uuid::new_v4().simple())),
        }
    }
}

impl Deref for Prefix {
    type Target = str;
    fn deref(&self) -> &str {
        &self.world.prefix
    }
}

impl std::fmt::Display for Prefix {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.world.prefix)
    }
}

/// Runs `work` on a thread of its own with a runtime of its own and waits
/// for it, at most [`CLEANUP_LIMIT`]; `None` when it did not finish in
/// time (or could not start).
pub fn run_aside<F>(work: F) -> Option<F::Output>
where
    F: Future + Send,
    F::Output: Send,
{
    let run = || {
        std::thread::scope(|scope| {
            scope
                .spawn(|| {
                    let runtime = tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                        .ok()?;
                    // The timer is made inside the runtime it belongs to.
                    runtime
                        .block_on(async { tokio::time::timeout(CLEANUP_LIMIT, work).await })
                        .ok()
                })
                .join()
                .ok()
                .flatten()
        })
    };
    // On a multi-thread runtime, hand this thread's tasks to the other
    // workers while it waits; a current-thread runtime has no one to hand
    // them to (and `block_in_place` would panic there).
    match Handle::try_current().map(|h| h.runtime_flavor()) {
        Ok(RuntimeFlavor::MultiThread) => tokio::task::block_in_place(run),
        _ => run(),
    }
}

/// Deletes every key under `prefix` on the Redis (or Redis Cluster) at
/// `url`; returns how many there were.
pub async fn delete_keys(url: &str, prefix: &str) -> anyhow::Result<usize> {
    let client = triggers_api::redis::connect_client(url).await?;
    let pattern = format!("{prefix}:*");
    let scan = if client.is_clustered() {
        client
            .scan_cluster_buffered(pattern, Some(1000), None)
            .boxed()
    } else {
        client.scan_buffered(pattern, Some(1000), None).boxed()
    };
    let keys: Vec<_> = scan.take(MAX_KEYS).try_collect().await?;
    // On a cluster the keys of one command must share a hash slot, so each
    // goes on its own; elsewhere a page at a time.
    if client.is_clustered() {
        for key in &keys {
            let _: i64 = client.unlink(key.clone()).await?;
        }
    } else {
        for page in keys.chunks(500) {
            let _: i64 = client.unlink(page.to_vec()).await?;
        }
    }
    let _ = client.quit().await;
    Ok(keys.len())
}

/// Deletes the organizations a test created; their keys, events and
/// delivery attempts go with them (`ON DELETE CASCADE`).
/// A database a test has dropped already is passed over.
async fn delete_organizations(organizations: &[(String, Uuid)]) {
    let mut by_database: BTreeMap<&str, Vec<Uuid>> = BTreeMap::new();
    for (url, id) in organizations {
        by_database.entry(url).or_default().push(*id);
    }
    for (url, ids) in by_database {
        if let Err(err) = delete_from(url, &ids).await {
            eprintln!("clean-up: {} organizations stay: {err}", ids.len());
        }
    }
}

async fn delete_from(database_url: &str, ids: &[Uuid]) -> Result<(), sqlx::Error> {
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(1)
        .acquire_timeout(Duration::from_secs(3))
        .connect(database_url)
        .await?;
    let deleted = sqlx::query("DELETE FROM organizations WHERE id = ANY($1)")
        .bind(ids)
        .execute(&pool)
        .await;
    pool.close().await;
    deleted.map(drop)
}
