//! The archive's time partitions: one a month (see migration
//! 20261128000301), created months ahead, and dropped whole once their
//! whole range is past the longest retention and no event in them is still
//! waiting for its consumer.
//!
//! Partitions are created at start and on every retention pass, for this
//! month and the next [`MONTHS_AHEAD`], so an archived row finds its
//! partition. There is no DEFAULT partition (the migration says why): a row
//! whose month has none anyway, from a clock far ahead, is refused, and the
//! archiver then creates that month's partition ([`cover`]) and tries again;
//! until it succeeds the entry stays pending in its stream, never lost.
//!
//! Dropping keeps retention's rules: only delivered and acknowledged events
//! go, and only past their tier's retention. A partition whose range ends
//! before the longest retention's cutoff holds nothing any tier keeps, so
//! if it holds no unfinished event it is detached concurrently (reads and
//! writes of the rest go on) and dropped with its attempts; otherwise its
//! finished events are deleted row by row, as in every younger partition.
//! An event can become unfinished between the check and the detach (a
//! replay), so the detached table is checked again, and attached back
//! rather than dropped if one did.
//!
//! Several replicas run this: an advisory lock lets one at a time work and
//! the others skip, and every step starts from what the catalog shows, so
//! a pass interrupted anywhere (a detach left pending, a table detached but
//! not dropped) is completed by the next.

use std::collections::BTreeSet;

use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::store::{ArchiveTable, Month, Partition, PartitionMaintenance, Store, StoreError};

/// Months of partitions kept ready beyond the current one: a maintenance
/// that keeps failing has months to be noticed before a row is refused,
/// and replicas whose clocks run ahead find their partitions.
pub const MONTHS_AHEAD: u32 = 3;
/// Months ahead [`months_ahead`] counts up to.
const MAX_COUNTED_AHEAD: u32 = 24;
/// Most months one refused batch makes [`cover`] create.
const MAX_COVERED_MONTHS: usize = 12;

/// What one maintenance did, in tables (an events partition and its
/// attempts partition count two).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Maintained {
    pub created: u64,
    pub dropped: u64,
    /// Events partitions past the longest retention kept because an event
    /// in them still waits for its consumer.
    pub kept: u64,
    /// Detached, then attached again: an event in them had become
    /// unfinished in the meantime.
    pub reattached: u64,
}

/// Creates the missing partitions of this month and the next
/// [`MONTHS_AHEAD`]. Does nothing before the archive is partitioned, or
/// while another process maintains the partitions.
pub async fn ensure_ahead(store: &Store, now: DateTime<Utc>) -> Result<u64, StoreError> {
    let first = Month::of(now);
    let months: Vec<Month> = (0..=MONTHS_AHEAD).map(|n| first.plus(n)).collect();
    create_missing(store, &months).await
}

/// How many whole months after `now`'s every archive table has a
/// partition for, counting from the next one (0: next month's rows would
/// find none); `None` before the archive is partitioned. Read-only: any
/// replica can report it, whoever maintains the partitions.
pub async fn months_ahead(store: &Store, now: DateTime<Utc>) -> Result<Option<u32>, StoreError> {
    if !store.archive_is_partitioned().await? {
        return Ok(None);
    }
    let current = Month::of(now);
    let mut ahead = MAX_COUNTED_AHEAD;
    for table in ArchiveTable::ALL {
        let existing = store.partitions(table).await?;
        let covered = (1..=MAX_COUNTED_AHEAD)
            .take_while(|&n| {
                let first = current.plus(n).first_id();
                existing.iter().any(|p| p.contains(first))
            })
            .count();
        ahead = ahead.min(u32::try_from(covered).unwrap_or(MAX_COUNTED_AHEAD));
    }
    Ok(Some(ahead))
}

/// Creates the missing partitions of the months of `ids`: for a batch the
/// archive refused because no partition would take some of its rows.
pub async fn cover(store: &Store, ids: &[Uuid]) -> Result<u64, StoreError> {
    let months: BTreeSet<Month> = ids.iter().copied().filter_map(Month::of_id).collect();
    let months: Vec<Month> = months.into_iter().take(MAX_COVERED_MONTHS).collect();
    create_missing(store, &months).await
}

async fn create_missing(store: &Store, months: &[Month]) -> Result<u64, StoreError> {
    if !store.archive_is_partitioned().await? {
        return Ok(0);
    }
    let Some(mut maintenance) = store.partition_maintenance().await? else {
        return Ok(0);
    };
    let created = create_in(&mut maintenance, months).await;
    maintenance.finish().await;
    created
}

async fn create_in(m: &mut PartitionMaintenance, months: &[Month]) -> Result<u64, StoreError> {
    let mut created = 0;
    for table in ArchiveTable::ALL {
        let existing = m.partitions(table).await?;
        for &month in months {
            if existing.iter().any(|p| p.contains(month.first_id())) {
                continue;
            }
            let name = table.partition_name(month);
            m.create(
                table,
                &name,
                Some(month.first_id()),
                Some(month.next().first_id()),
            )
            .await?;
            tracing::info!(partition = name, "archive partition created");
            created += 1;
        }
    }
    Ok(created)
}

/// Drops the partitions (events and their attempts) whose whole range is
/// below `cutoff`, the smallest id the longest retention still keeps, and
/// that hold no unfinished event. Does nothing before the archive is
/// partitioned, or while another process maintains the partitions.
pub async fn drop_expired(store: &Store, cutoff: Uuid) -> Result<Maintained, StoreError> {
    if !store.archive_is_partitioned().await? {
        return Ok(Maintained::default());
    }
    let Some(mut maintenance) = store.partition_maintenance().await? else {
        return Ok(Maintained::default());
    };
    let mut done = Maintained::default();
    let outcome = drop_in(&mut maintenance, cutoff, &mut done).await;
    maintenance.finish().await;
    outcome.map(|()| done)
}

async fn drop_in(
    m: &mut PartitionMaintenance,
    cutoff: Uuid,
    done: &mut Maintained,
) -> Result<(), StoreError> {
    settle_interrupted(m, done).await?;
    let expired = |p: &Partition| p.to.is_some_and(|to| to <= cutoff);
    let attempts = m.partitions(ArchiveTable::DeliveryAttempts).await?;
    for events in m.partitions(ArchiveTable::Events).await? {
        if !expired(&events) {
            continue;
        }
        if m.holds_unfinished(&events.name).await? {
            done.kept += 1;
            continue;
        }
        let twin = attempts
            .iter()
            .find(|a| a.from == events.from && a.to == events.to);
        m.detach(ArchiveTable::Events, &events.name).await?;
        if let Some(twin) = twin {
            m.detach(ArchiveTable::DeliveryAttempts, &twin.name).await?;
        }
        // Detached, nothing writes to it any more: this answer is final.
        if m.holds_unfinished(&events.name).await? {
            m.attach(ArchiveTable::Events, &events.name, events.from, events.to)
                .await?;
            if let Some(twin) = twin {
                m.attach(
                    ArchiveTable::DeliveryAttempts,
                    &twin.name,
                    twin.from,
                    twin.to,
                )
                .await?;
            }
            tracing::info!(
                partition = events.name,
                "an event of an expiring archive partition is waiting again; partition kept"
            );
            done.reattached += 1;
            done.kept += 1;
            continue;
        }
        if let Some(twin) = twin {
            m.drop_detached(&twin.name).await?;
            done.dropped += 1;
        }
        m.drop_detached(&events.name).await?;
        done.dropped += 1;
        tracing::info!(
            partition = events.name,
            "archive partition past the longest retention dropped"
        );
    }
    // Attempts partitions whose events partition is gone (a pass stopped
    // after detaching the events but before detaching them): no event
    // refers to their rows any more.
    let events = m.partitions(ArchiveTable::Events).await?;
    for orphan in m.partitions(ArchiveTable::DeliveryAttempts).await? {
        let twinned = events
            .iter()
            .any(|e| e.from == orphan.from && e.to == orphan.to);
        if !expired(&orphan) || twinned || m.holds_events(orphan.from, orphan.to).await? {
            continue;
        }
        m.detach(ArchiveTable::DeliveryAttempts, &orphan.name)
            .await?;
        m.drop_detached(&orphan.name).await?;
        done.dropped += 1;
    }
    Ok(())
}

/// Completes what an interrupted pass left: detaches still pending, and
/// detached tables neither dropped nor attached back. Events first, so that
/// an attempts table is kept exactly when its events are.
async fn settle_interrupted(
    m: &mut PartitionMaintenance,
    done: &mut Maintained,
) -> Result<(), StoreError> {
    for table in ArchiveTable::ALL {
        for pending in m.partitions(table).await? {
            if pending.detach_pending {
                m.finalize_detach(table, &pending.name).await?;
            }
        }
    }
    for table in ArchiveTable::ALL {
        let attached = m.partitions(table).await?;
        for name in m.detached(table).await? {
            let (from, to) = match table.parse_partition_name(&name) {
                Some(Some(month)) => (Some(month.first_id()), Some(month.next().first_id())),
                // The legacy table holds everything below the first month.
                Some(None) => (None, attached.iter().find_map(|p| p.from)),
                None => continue,
            };
            let keep = match table {
                ArchiveTable::Events => m.holds_unfinished(&name).await?,
                ArchiveTable::DeliveryAttempts => m.holds_events(from, to).await?,
            };
            if keep {
                m.attach(table, &name, from, to).await?;
                done.reattached += 1;
                tracing::info!(partition = name, "detached archive partition attached back");
            } else {
                m.drop_detached(&name).await?;
                done.dropped += 1;
                tracing::info!(partition = name, "detached archive partition dropped");
            }
        }
    }
    Ok(())
}
