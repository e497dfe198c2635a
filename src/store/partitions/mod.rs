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
//!
//! This module reads the partitions from the catalog; `month` names them
//! and bounds them, `maintenance` changes them.

mod maintenance;
mod month;

use sqlx::PgConnection;
use uuid::Uuid;

pub use maintenance::PartitionMaintenance;
pub use month::{ArchiveTable, Month};

use super::{Store, StoreError};

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

#[cfg(test)]
mod tests {
    use super::*;

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
