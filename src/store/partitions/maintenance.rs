//! Changing the archive's partitions: creating, attaching, detaching and
//! dropping them, one replica at a time.

use std::time::Duration;

use sqlx::{Connection, Executor, PgConnection};
use uuid::Uuid;

use super::{ArchiveTable, Partition, partitions, quoted, sql_bound};
use crate::store::{Store, StoreError};

/// Any constant shared by every replica; "part" in ASCII.
const MAINTENANCE_LOCK: i64 = 0x7061_7274;
/// Creating or attaching a partition waits this long at most for its locks.
/// An ATTACH blocks no reads or writes of the archive while it waits, but
/// the foreign key it adds takes a lock that blocks writes to
/// `organizations`.
const ATTACH_LOCK_TIMEOUT: &str = "1s";
/// A concurrent detach waits for every transaction using the table to end;
/// past this, it is left pending and finished by a later pass.
const DETACH_LOCK_TIMEOUT: &str = "30s";
/// Dropping a detached partition removes its foreign key's triggers from
/// `organizations`, which takes an exclusive lock on it: readers of
/// organizations wait at most this long, then the drop is tried again.
const DROP_LOCK_TIMEOUT: &str = "200ms";
const DROP_TRIES: u32 = 5;

impl Store {
    /// A session for partition maintenance, on a connection of its own that
    /// holds an advisory lock, so that one replica at a time creates or
    /// drops partitions; `None` when another process holds it. The
    /// connection is not returned to the pool: closing it is what releases
    /// the lock, even if the session is abandoned halfway.
    pub async fn partition_maintenance(&self) -> Result<Option<PartitionMaintenance>, StoreError> {
        let mut conn = self.pool.acquire().await?.detach();
        let locked: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock($1)")
            .bind(MAINTENANCE_LOCK)
            .fetch_one(&mut conn)
            .await?;
        if !locked {
            let _ = conn.close().await;
            return Ok(None);
        }
        Ok(Some(PartitionMaintenance { conn }))
    }
}

/// See [`Store::partition_maintenance`].
pub struct PartitionMaintenance {
    conn: PgConnection,
}

/// Attaches `name` to `table` as the partition of `[from, to)`.
fn attach_sql(table: ArchiveTable, name: &str, from: Option<Uuid>, to: Option<Uuid>) -> String {
    format!(
        "ALTER TABLE {} ATTACH PARTITION {} FOR VALUES FROM ({}) TO ({});",
        table.name(),
        quoted(name),
        sql_bound(from, "MINVALUE"),
        sql_bound(to, "MAXVALUE"),
    )
}

impl PartitionMaintenance {
    pub async fn partitions(&mut self, table: ArchiveTable) -> Result<Vec<Partition>, StoreError> {
        partitions(&mut self.conn, table).await
    }

    /// Creates and attaches `table`'s partition of `[from, to)`. It is
    /// created on its own and attached, rather than created with `PARTITION
    /// OF`: that would lock the whole archive against reads and writes,
    /// where ATTACH takes a lock that lets both through.
    pub async fn create(
        &mut self,
        table: ArchiveTable,
        name: &str,
        from: Option<Uuid>,
        to: Option<Uuid>,
    ) -> Result<(), StoreError> {
        let parent = table.name();
        let attach = attach_sql(table, name, from, to);
        self.run(format!(
            "SET LOCAL lock_timeout = '{ATTACH_LOCK_TIMEOUT}';
             CREATE TABLE {} (LIKE {parent} INCLUDING DEFAULTS INCLUDING CONSTRAINTS);
             {attach}",
            quoted(name)
        ))
        .await
    }

    /// Attaches a table detached from `table` back, as the partition of
    /// `[from, to)`. Its indexes are adopted and the constraint the detach
    /// left on it spares the scan.
    pub async fn attach(
        &mut self,
        table: ArchiveTable,
        name: &str,
        from: Option<Uuid>,
        to: Option<Uuid>,
    ) -> Result<(), StoreError> {
        self.run(format!(
            "SET LOCAL lock_timeout = '{ATTACH_LOCK_TIMEOUT}'; {}",
            attach_sql(table, name, from, to)
        ))
        .await
    }

    /// Whether the events table `name` (a partition, or one detached) holds
    /// an event not delivered or acknowledged yet: one probe of its partial
    /// index `events_unfinished`.
    pub async fn holds_unfinished(&mut self, name: &str) -> Result<bool, StoreError> {
        let name = quoted(name);
        Ok(sqlx::query_scalar(&format!(
            "SELECT EXISTS (SELECT 1 FROM {name}
                            WHERE status NOT IN ('delivered', 'acknowledged'))"
        ))
        .fetch_one(&mut self.conn)
        .await?)
    }

    /// Whether `events` holds any event with an id in `[from, to)`.
    pub async fn holds_events(
        &mut self,
        from: Option<Uuid>,
        to: Option<Uuid>,
    ) -> Result<bool, StoreError> {
        Ok(sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM events
                            WHERE ($1::uuid IS NULL OR id >= $1) AND ($2::uuid IS NULL OR id < $2))",
        )
        .bind(from)
        .bind(to)
        .fetch_one(&mut self.conn)
        .await?)
    }

    /// Detaches a partition without blocking reads or writes of the rest:
    /// queries that began before no longer see it once this returns.
    pub async fn detach(&mut self, table: ArchiveTable, name: &str) -> Result<(), StoreError> {
        let name = quoted(name);
        // CONCURRENTLY runs in transactions of its own, so not in one of
        // ours, and the timeout is set for the session, which ends with
        // this maintenance.
        self.run(format!("SET lock_timeout = '{DETACH_LOCK_TIMEOUT}'"))
            .await?;
        self.run(format!(
            "ALTER TABLE {} DETACH PARTITION {name} CONCURRENTLY",
            table.name()
        ))
        .await
    }

    /// Completes a detach an earlier pass began and could not finish.
    pub async fn finalize_detach(
        &mut self,
        table: ArchiveTable,
        name: &str,
    ) -> Result<(), StoreError> {
        let name = quoted(name);
        self.run(format!("SET lock_timeout = '{DETACH_LOCK_TIMEOUT}'"))
            .await?;
        self.run(format!(
            "ALTER TABLE {} DETACH PARTITION {name} FINALIZE",
            table.name()
        ))
        .await
    }

    /// Tables of ours that are partitions of nothing: detached by a pass
    /// that stopped before dropping or re-attaching them.
    pub async fn detached(&mut self, table: ArchiveTable) -> Result<Vec<String>, StoreError> {
        let names: Vec<String> = sqlx::query_scalar(
            "SELECT c.relname::text FROM pg_class c
             WHERE c.relkind = 'r' AND NOT c.relispartition
                   AND c.relnamespace = to_regnamespace(current_schema())
                   AND starts_with(c.relname::text, $1)",
        )
        .bind(format!("{}_", table.name()))
        .fetch_all(&mut self.conn)
        .await?;
        Ok(names
            .into_iter()
            .filter(|name| table.parse_partition_name(name).is_some())
            .collect())
    }

    /// Drops a detached table. Retried a few times, since each try gives up
    /// quickly to let readers of `organizations` through.
    pub async fn drop_detached(&mut self, name: &str) -> Result<(), StoreError> {
        let name = quoted(name);
        let mut tries = 0;
        loop {
            let dropped = self
                .run(format!(
                    "SET LOCAL lock_timeout = '{DROP_LOCK_TIMEOUT}'; DROP TABLE IF EXISTS {name};"
                ))
                .await;
            match dropped {
                Err(err) if err.is_lock_timeout() && tries + 1 < DROP_TRIES => {
                    tries += 1;
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
                done => return done,
            }
        }
    }

    /// Runs `sql` as one simple query: several statements form one
    /// transaction (so `SET LOCAL` lasts as long as they do), committed at
    /// the end or rolled back on the first error; a statement that refuses
    /// to run in a transaction must be alone.
    async fn run(&mut self, sql: String) -> Result<(), StoreError> {
        self.conn.execute(sql.as_str()).await?;
        Ok(())
    }

    /// Releases the lock and closes the connection.
    pub async fn finish(mut self) {
        let _ = sqlx::query("SELECT pg_advisory_unlock($1)")
            .bind(MAINTENANCE_LOCK)
            .execute(&mut self.conn)
            .await;
        let _ = self.conn.close().await;
    }
}

impl StoreError {
    /// Postgres gave up waiting for a lock (`lock_timeout`).
    pub fn is_lock_timeout(&self) -> bool {
        self.has_code("55P03")
    }

    /// Postgres refused a row because no partition covers its id.
    pub fn is_missing_partition(&self) -> bool {
        self.has_code("23514")
            && matches!(self, StoreError::Query(err) if err
                .as_database_error()
                .is_some_and(|e| e.message().starts_with("no partition of relation")))
    }

    fn has_code(&self, wanted: &str) -> bool {
        match self {
            StoreError::Query(err) => err
                .as_database_error()
                .and_then(|e| e.code())
                .is_some_and(|code| code == wanted),
            _ => false,
        }
    }
}
