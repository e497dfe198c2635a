//! Postgres: organizations, API keys and the event archive behind the inbox.
//!
//! Every query of the service lives under this module, so the schema has one
//! reader and one writer.

mod admin;
mod deliveries;
mod events;
mod leases;
mod organizations;
mod partitions;
mod retention;
mod secrets;
mod text_enums;

use std::{sync::Arc, time::Duration};

use sqlx::{PgPool, postgres::PgPoolOptions};

use crate::sealing::{Sealer, SealingError};

pub use admin::{DeadLetterStats, KeyOwner};
pub use deliveries::{
    AttemptRow, EventOutcome, SECRET_ROTATION_GRACE_HOURS, WebhookTarget, WebhookTargets,
};
pub use events::{EventRow, InboxPage, InboxQuery};
pub use leases::{LeaseQuery, LeasedRows};
pub use organizations::{ApiKeyRow, KeyCredentials, NewOrganization, OrganizationRow};
pub use partitions::{ArchiveTable, Month, Partition, PartitionMaintenance};

/// The schema's migrations. A database may hold migrations this binary
/// does not know: those of a newer release, during a rolling upgrade or
/// after a rollback. They are additive by rule (see the Upgrades section
/// of the README), so an older binary keeps working beside them rather than
/// refusing to start.
fn migrator() -> sqlx::migrate::Migrator {
    let mut migrator = sqlx::migrate!("./migrations");
    migrator.set_ignore_missing(true);
    migrator
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    // The causes are part of the message rather than `source`s, so a report
    // printing the whole chain does not repeat them.
    #[error("cannot reach Postgres: {0}")]
    Unavailable(sqlx::Error),
    #[error("Postgres query failed: {0}")]
    Query(sqlx::Error),
    #[error("database migration failed: {0}")]
    Migration(sqlx::migrate::MigrateError),
    #[error("cannot seal or open a stored secret: {0}")]
    Sealing(#[from] SealingError),
}

impl StoreError {
    /// Postgres is unreachable (or its pool exhausted): worth waiting out,
    /// and a 503 for a client. Anything else is a refusal or a bug that a
    /// retry would only repeat.
    pub fn is_outage(&self) -> bool {
        matches!(self, StoreError::Unavailable(_))
    }

    /// A row with the same key is already stored.
    pub fn is_conflict(&self) -> bool {
        matches!(self, StoreError::Query(sqlx::Error::Database(db)) if db.is_unique_violation())
    }
}

impl From<sqlx::migrate::MigrateError> for StoreError {
    fn from(err: sqlx::migrate::MigrateError) -> Self {
        StoreError::Migration(err)
    }
}

impl From<sqlx::Error> for StoreError {
    fn from(err: sqlx::Error) -> Self {
        match err {
            sqlx::Error::Io(_)
            | sqlx::Error::Tls(_)
            | sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::WorkerCrashed => StoreError::Unavailable(err),
            other => StoreError::Query(other),
        }
    }
}

/// How much of the connection pool is in use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolUsage {
    pub open: u32,
    pub idle: u32,
    pub max: u32,
}

/// The Postgres side of the service: a pool and the queries over it.
#[derive(Clone, Debug)]
pub struct Store {
    pool: PgPool,
    /// Encrypts webhook signing secrets; without one they cannot be written.
    sealer: Option<Arc<Sealer>>,
}

impl Store {
    /// Connects, failing fast (not hanging) when Postgres is unreachable.
    pub async fn connect(url: &str, max_connections: u32) -> Result<Self, StoreError> {
        let pool = PgPoolOptions::new()
            .max_connections(max_connections)
            .acquire_timeout(Duration::from_secs(5))
            .connect(url)
            .await?;
        Ok(Self { pool, sealer: None })
    }

    /// This store, sealing secrets with `sealer`.
    pub fn with_sealer(self, sealer: Arc<Sealer>) -> Self {
        Self {
            sealer: Some(sealer),
            ..self
        }
    }

    fn sealer(&self) -> Result<&Sealer, StoreError> {
        self.sealer
            .as_deref()
            .ok_or(StoreError::Sealing(SealingError::NoKey))
    }

    /// Applies pending migrations. Replicas starting together are
    /// serialised by an advisory lock held around the whole run: sqlx's own
    /// lock is taken only after it creates its bookkeeping table, and two
    /// concurrent `CREATE TABLE IF NOT EXISTS` can still collide.
    pub async fn migrate(&self) -> Result<(), StoreError> {
        self.prepare(true).await
    }

    /// Under the migration lock: applies migrations when `migrate`, then
    /// (with a sealer) encrypts secrets still in plaintext or sealed with an
    /// older key. SQL alone cannot encrypt, so this runs at every start; one
    /// replica does the work and the others find nothing left to do.
    pub async fn prepare(&self, migrate: bool) -> Result<(), StoreError> {
        // Any constant shared by every replica; "trig" in ASCII.
        const LOCK: i64 = 0x7472_6967;
        // Polled, not awaited: a session blocked in pg_advisory_lock keeps
        // a transaction open, which a migration building an index
        // CONCURRENTLY waits for, while that session waits for the lock
        // the migrating replica holds: a deadlock.
        const POLL: Duration = Duration::from_millis(200);
        const MAX_WAIT: Duration = Duration::from_secs(30 * 60);
        let mut conn = self.pool.acquire().await?;
        let mut waited = Duration::ZERO;
        loop {
            let locked: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock($1)")
                .bind(LOCK)
                .fetch_one(&mut *conn)
                .await?;
            if locked {
                break;
            }
            if waited >= MAX_WAIT {
                return Err(StoreError::Query(sqlx::Error::Protocol(
                    "another process has been migrating the database for 30 minutes".into(),
                )));
            }
            tokio::time::sleep(POLL).await;
            waited += POLL;
        }
        let prepared = async {
            if migrate {
                migrator().run_direct(&mut *conn).await?;
            }
            if let Some(sealer) = &self.sealer {
                secrets::reseal_all(&mut conn, sealer).await?;
            }
            Ok::<(), StoreError>(())
        }
        .await;
        if prepared.is_err() {
            // A migration that runs its own transactions may fail inside
            // one, leaving the session in it, where the unlock would fail.
            let _ = sqlx::query("ROLLBACK").execute(&mut *conn).await;
        }
        let unlocked = sqlx::query("SELECT pg_advisory_unlock($1)")
            .bind(LOCK)
            .execute(&mut *conn)
            .await;
        prepared?;
        unlocked?;
        Ok(())
    }

    /// Connections open, idle, and the most the pool opens: for metrics.
    pub fn pool_usage(&self) -> PoolUsage {
        PoolUsage {
            open: self.pool.size(),
            idle: u32::try_from(self.pool.num_idle()).unwrap_or(u32::MAX),
            max: self.pool.options().get_max_connections(),
        }
    }

    pub async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }
}
