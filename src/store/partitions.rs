//! The archive's time partitions (see migration 20261128000301): reading
//! them from the catalog, creating a month's, detaching and dropping old
//! ones. Which months to create or drop is decided in `crate::partitions`.
//!
//! `events` is partitioned by RANGE (id) and `delivery_attempts` by RANGE
//! (event_id), one partition a UTC calendar month, bounded by the smallest
//! UUID of the month's first millisecond (UUIDv7 ids start with the unix
//! time in milliseconds). Partitions are named `<table>_pYYYYMM`; the table
//! from before partitioning is `<table>_legacy`, holding every id below the
//! first month's bound. An event's attempts are in the attempts partition
//! with the same bounds as the event's partition.

use std::time::Duration;

use chrono::{DateTime, Datelike, TimeZone, Utc};
use sqlx::{Connection, Executor, PgConnection};
use uuid::Uuid;

use super::{Store, StoreError};

/// A partitioned table of the archive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArchiveTable {
    Events,
    DeliveryAttempts,
}

impl ArchiveTable {
    pub const ALL: [ArchiveTable; 2] = [ArchiveTable::Events, ArchiveTable::DeliveryAttempts];

    pub fn name(self) -> &'static str {
        match self {
            ArchiveTable::Events => "events",
            ArchiveTable::DeliveryAttempts => "delivery_attempts",
        }
    }

    /// The name of this table's partition of `month`.
    pub fn partition_name(self, month: Month) -> String {
        format!("{}_p{:04}{:02}", self.name(), month.year, month.month)
    }

    /// The name of the partition that holds everything from before
    /// partitioning.
    pub fn legacy_name(self) -> String {
        format!("{}_legacy", self.name())
    }

    /// What a table name of ours stands for: this table's partition of a
    /// month (`Some(month)`) or its legacy partition (`None`). Anything else
    /// is not ours, and never reaches a DDL statement.
    pub fn parse_partition_name(self, name: &str) -> Option<Option<Month>> {
        let rest = name.strip_prefix(self.name())?.strip_prefix('_')?;
        if rest == "legacy" {
            return Some(None);
        }
        Month::parse_suffix(rest.strip_prefix('p')?).map(Some)
    }
}

/// A UTC calendar month: the unit of partitioning.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Month {
    year: i32,
    /// 1 to 12.
    month: u32,
}

impl Month {
    pub fn of(at: DateTime<Utc>) -> Self {
        Self {
            year: at.year(),
            month: at.month(),
        }
    }

    /// The month an id belongs to, by the time in its first 48 bits.
    pub fn of_id(id: Uuid) -> Option<Self> {
        let millis = i64::try_from(id.as_u128() >> 80).ok()?;
        Utc.timestamp_millis_opt(millis).single().map(Self::of)
    }

    /// `n` months later.
    pub fn plus(self, n: u32) -> Self {
        let index = i64::from(self.year) * 12 + i64::from(self.month - 1) + i64::from(n);
        Self {
            year: i32::try_from(index.div_euclid(12)).unwrap_or(i32::MAX),
            month: u32::try_from(index.rem_euclid(12)).unwrap_or(0) + 1,
        }
    }

    pub fn next(self) -> Self {
        self.plus(1)
    }

    /// The first instant of the month.
    pub fn start(self) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(self.year, self.month, 1, 0, 0, 0)
            .single()
            .unwrap_or(DateTime::<Utc>::MIN_UTC)
    }

    /// The smallest UUID of the month: its first millisecond followed by
    /// zeros. Every id minted during the month sorts at or above it and
    /// below the next month's.
    pub fn first_id(self) -> Uuid {
        let millis = u128::try_from(self.start().timestamp_millis()).unwrap_or(0);
        Uuid::from_u128(millis << 80)
    }

    /// From the `YYYYMM` of a partition name.
    fn parse_suffix(digits: &str) -> Option<Self> {
        if digits.len() != 6 || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let year = digits[..4].parse().ok()?;
        let month = digits[4..].parse().ok()?;
        (1..=12).contains(&month).then_some(Self { year, month })
    }
}

/// One partition and its range of ids; `None` is unbounded (MINVALUE or
/// MAXVALUE).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Partition {
    pub name: String,
    pub from: Option<Uuid>,
    pub to: Option<Uuid>,
    /// Being detached concurrently: an interrupted detach left it so.
    pub detach_pending: bool,
}

impl Partition {
    /// Whether `id` falls in this partition's range.
    pub fn contains(&self, id: Uuid) -> bool {
        self.from.is_none_or(|from| from <= id) && self.to.is_none_or(|to| id < to)
    }
}

/// The bounds of `FOR VALUES FROM (…) TO (…)` as `pg_get_expr` prints them;
/// `None` for a DEFAULT partition or anything else.
pub fn parse_bounds(expr: &str) -> Option<(Option<Uuid>, Option<Uuid>)> {
    fn bound(text: &str) -> Option<Option<Uuid>> {
        match text {
            "MINVALUE" | "MAXVALUE" => Some(None),
            literal => literal
                .strip_prefix('\'')?
                .strip_suffix('\'')?
                .parse()
                .ok()
                .map(Some),
        }
    }
    let rest = expr.strip_prefix("FOR VALUES FROM (")?;
    let (from, to) = rest.split_once(") TO (")?;
    Some((bound(from)?, bound(to.strip_suffix(')')?)?))
}

/// `name` as an SQL identifier. Names come from our own naming or from the
/// catalog; quoting keeps any name one identifier all the same.
fn quoted(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

fn sql_bound(bound: Option<Uuid>, unbounded: &str) -> String {
    bound.map_or_else(|| unbounded.to_owned(), |id| format!("'{id}'"))
}

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
    /// Whether the archive is partitioned yet: a replica may run while
    /// another migrates, or before the migration is applied.
    pub async fn archive_is_partitioned(&self) -> Result<bool, StoreError> {
        Ok(sqlx::query_scalar(
            "SELECT coalesce((SELECT relkind = 'p' FROM pg_class WHERE oid = to_regclass('events')),
                             FALSE)",
        )
        .fetch_one(&self.pool)
        .await?)
    }

    /// The partitions of `table`, lowest range first.
    pub async fn partitions(&self, table: ArchiveTable) -> Result<Vec<Partition>, StoreError> {
        let mut conn = self.pool.acquire().await?;
        partitions(&mut conn, table).await
    }

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

async fn partitions(
    conn: &mut PgConnection,
    table: ArchiveTable,
) -> Result<Vec<Partition>, StoreError> {
    let rows: Vec<(String, Option<String>, bool)> = sqlx::query_as(
        "SELECT c.relname::text, pg_get_expr(c.relpartbound, c.oid), i.inhdetachpending
         FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
         WHERE i.inhparent = to_regclass($1) AND c.relkind = 'r'",
    )
    .bind(table.name())
    .fetch_all(&mut *conn)
    .await?;
    let mut partitions: Vec<Partition> = rows
        .into_iter()
        .filter_map(|(name, bounds, detach_pending)| {
            let (from, to) = parse_bounds(bounds.as_deref()?)?;
            Some(Partition {
                name,
                from,
                to,
                detach_pending,
            })
        })
        .collect();
    // `None` sorts first: MINVALUE, as it should.
    partitions.sort_by_key(|p| p.from);
    Ok(partitions)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_month_bound_is_its_first_millisecond_followed_by_zeros() {
        let january = Month::of(Utc.with_ymd_and_hms(2027, 1, 15, 12, 0, 0).unwrap());
        assert_eq!(
            january.first_id().to_string(),
            "01a2ce8b-d400-0000-0000-000000000000"
        );
        assert_eq!(
            ArchiveTable::Events.partition_name(january),
            "events_p202701"
        );
        let last_ms_of_december =
            Utc.with_ymd_and_hms(2027, 1, 1, 0, 0, 0).unwrap() - chrono::Duration::milliseconds(1);
        let id = uuid::Builder::from_unix_timestamp_millis(
            u64::try_from(last_ms_of_december.timestamp_millis()).unwrap(),
            &[0xff; 10],
        )
        .into_uuid();
        assert!(id < january.first_id());
        assert_eq!(
            Month::of_id(id),
            Some(Month {
                year: 2026,
                month: 12
            })
        );
        assert_eq!(Month::of_id(january.first_id()), Some(january));
    }

    #[test]
    fn months_roll_over_years() {
        let november = Month::of(Utc.with_ymd_and_hms(2026, 11, 28, 0, 0, 0).unwrap());
        assert_eq!(
            november.plus(2),
            Month::of(Utc.with_ymd_and_hms(2027, 1, 1, 0, 0, 0).unwrap())
        );
        assert_eq!(
            november.plus(14).start(),
            Utc.with_ymd_and_hms(2028, 1, 1, 0, 0, 0).unwrap()
        );
        assert_eq!(november.next().next().next().month, 2);
    }

    #[test]
    fn partition_names_of_ours_are_told_from_others() {
        let table = ArchiveTable::Events;
        assert_eq!(
            table.parse_partition_name("events_p202701"),
            Some(Some(Month {
                year: 2027,
                month: 1
            }))
        );
        assert_eq!(table.parse_partition_name("events_legacy"), Some(None));
        assert_eq!(table.parse_partition_name("events_p202713"), None);
        assert_eq!(table.parse_partition_name("events_p2027011"), None);
        assert_eq!(table.parse_partition_name("events_partitioned"), None);
        assert_eq!(table.parse_partition_name("events"), None);
        assert_eq!(
            ArchiveTable::DeliveryAttempts.parse_partition_name("events_p202701"),
            None
        );
        assert_eq!(
            ArchiveTable::DeliveryAttempts.parse_partition_name("delivery_attempts_legacy"),
            Some(None)
        );
    }

    #[test]
    fn names_are_quoted_as_one_identifier() {
        assert_eq!(quoted("events_p202701"), "\"events_p202701\"");
        assert_eq!(
            quoted("a\"; DROP TABLE x; --"),
            "\"a\"\"; DROP TABLE x; --\""
        );
    }

    #[test]
    fn bounds_are_read_as_postgres_prints_them() {
        let from: Uuid = "01a2ce8b-d400-0000-0000-000000000000".parse().unwrap();
        let to: Uuid = "01a36e30-f800-0000-0000-000000000000".parse().unwrap();
        assert_eq!(
            parse_bounds(&format!("FOR VALUES FROM ('{from}') TO ('{to}')")),
            Some((Some(from), Some(to)))
        );
        assert_eq!(
            parse_bounds(&format!("FOR VALUES FROM (MINVALUE) TO ('{to}')")),
            Some((None, Some(to)))
        );
        assert_eq!(parse_bounds("DEFAULT"), None);
        let partition = Partition {
            name: "events_legacy".into(),
            from: None,
            to: Some(to),
            detach_pending: false,
        };
        assert!(partition.contains(from));
        assert!(!partition.contains(to));
    }
}
