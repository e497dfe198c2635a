//! The unit of partitioning, a UTC calendar month, and the names of the
//! partitions of each archive table.

use chrono::{DateTime, Datelike, TimeZone, Utc};
use uuid::Uuid;

use crate::domain::{first_id_at, time_of};

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
        time_of(id).map(Self::of)
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
        first_id_at(self.start())
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
}
