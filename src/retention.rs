//! Retention: how long each tier keeps its events, and the worker task that
//! removes what is past it.
//!
//! Only events whose journey is over — `delivered` or `acknowledged` — are
//! removed, with their delivery attempts; an event still waiting for its
//! consumer (queued, failed, dead-lettered, quarantined) is never removed,
//! however old. Dedup state needs no sweeping: it lives in Redis with a
//! 24-hour TTL, shorter than any retention.
//!
//! Removal is bounded batched deletes, organization by organization along
//! the `(organization_id, id)` index: event ids are UUIDv7, so "older than
//! the cutoff" is an index range (`id < the smallest id of the cutoff's
//! millisecond`). Each batch is one short transaction that locks only its
//! own rows (`SKIP LOCKED`, so several workers split the work instead of
//! queueing), and autovacuum reuses the freed space for new rows, so the
//! table does not grow from the churn. `bench/retention.sh` measures it.
//!
//! Each pass first maintains the archive's monthly partitions
//! (`crate::partitions`): it creates the coming months' and drops, whole,
//! those past the longest retention that hold no unfinished event, so the
//! row deletes that follow find nothing left in them.

use std::{collections::BTreeMap, time::Duration};

use chrono::{DateTime, Utc};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::{
    domain::{Tier, first_id_at},
    metrics::ARCHIVE_PARTITIONS_AHEAD,
    partitions,
    store::{Store, StoreError},
};

/// The default retention of each tier.
pub const DEFAULT_RETENTION: &str = "free=7d,pro=30d,business=90d,enterprise=365d";
/// Events removed by one statement: small enough that a batch holds its
/// row locks for milliseconds, large enough that a pass is quick.
pub const DELETE_BATCH: u32 = 2_000;
/// Organizations read per page while sweeping.
const ORGANIZATION_PAGE: i64 = 500;
/// Batches per organization per pass, so one huge backlog cannot hold a
/// pass (and a shutdown) for long; the next pass continues.
const MAX_BATCHES_PER_ORGANIZATION: usize = 500;

/// How long each tier keeps finished events.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetentionPolicy(BTreeMap<&'static str, Duration>);

impl RetentionPolicy {
    /// Parses `tier=duration,…`; tiers left out keep their default.
    pub fn parse(raw: &str) -> Result<Self, String> {
        const DAY: u64 = 24 * 3600;
        let mut days: BTreeMap<&'static str, Duration> = [
            (Tier::Free, 7),
            (Tier::Pro, 30),
            (Tier::Business, 90),
            (Tier::Enterprise, 365),
        ]
        .into_iter()
        .map(|(tier, d)| (tier.as_str(), Duration::from_secs(d * DAY)))
        .collect();
        for part in raw.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (tier, duration) = part
                .split_once('=')
                .ok_or_else(|| format!("`{part}`: expected tier=duration, e.g. pro=30d"))?;
            let tier = tier.trim().parse::<Tier>().map_err(|e| e.to_string())?;
            let duration = humantime::parse_duration(duration.trim())
                .map_err(|e| format!("`{duration}`: {e}"))?;
            if duration < Duration::from_secs(60) {
                return Err(format!("`{part}`: retention must be at least a minute"));
            }
            days.insert(tier.as_str(), duration);
        }
        Ok(Self(days))
    }

    /// How long this tier keeps finished events.
    pub fn of(&self, tier: Tier) -> Duration {
        self.0
            .get(tier.as_str())
            .copied()
            .unwrap_or(Duration::from_secs(7 * 24 * 3600))
    }

    /// The longest retention of any tier: a partition wholly older than
    /// that holds nothing any organization keeps.
    pub fn longest(&self) -> Duration {
        self.0.values().copied().max().unwrap_or_default()
    }

    /// Whole days, as shown to organizations.
    pub fn days(&self, tier: Tier) -> u64 {
        self.of(tier).as_secs().div_ceil(24 * 3600)
    }
}

/// What one pass removed.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Swept {
    pub organizations: u64,
    pub events: u64,
    pub attempts: u64,
    pub batches: u64,
    /// The longest one delete statement took, i.e. the longest any row
    /// stayed locked by the sweep.
    pub slowest_batch_ms: u64,
    /// Archive partitions (events or attempts) created ahead.
    pub partitions_created: u64,
    /// Archive partitions past the longest retention dropped whole.
    pub partitions_dropped: u64,
}

impl Swept {
    fn add(&mut self, other: Swept) {
        self.organizations += other.organizations;
        self.events += other.events;
        self.attempts += other.attempts;
        self.batches += other.batches;
        self.slowest_batch_ms = self.slowest_batch_ms.max(other.slowest_batch_ms);
        self.partitions_created += other.partitions_created;
        self.partitions_dropped += other.partitions_dropped;
    }
}

/// Removes finished events past their organization's retention.
#[derive(Clone)]
pub struct RetentionSweeper {
    store: Store,
    policy: RetentionPolicy,
    batch: u32,
}

impl RetentionSweeper {
    pub fn new(store: Store, policy: RetentionPolicy, batch: u32) -> Self {
        Self {
            store,
            policy,
            batch,
        }
    }

    /// One pass over every organization; stops early on `shutdown`.
    pub async fn sweep(&self, shutdown: &CancellationToken) -> Result<Swept, StoreError> {
        self.sweep_at(Utc::now(), shutdown).await
    }

    /// One pass as of `now`: partitions first, then every organization's
    /// rows.
    pub async fn sweep_at(
        &self,
        now: DateTime<Utc>,
        shutdown: &CancellationToken,
    ) -> Result<Swept, StoreError> {
        let mut swept = self.maintain_partitions(now).await;
        let mut after = None;
        loop {
            let page = self
                .store
                .organization_tiers(after, ORGANIZATION_PAGE)
                .await?;
            let Some(&(last, _)) = page.last() else {
                break;
            };
            after = Some(last);
            for (organization_id, tier) in page {
                if shutdown.is_cancelled() {
                    return Ok(swept);
                }
                swept.add(
                    self.sweep_organization_at(organization_id, tier, now, shutdown)
                        .await?,
                );
            }
        }
        Ok(swept)
    }

    /// Creates the coming months' partitions and drops those past the
    /// longest retention. A failure is logged and left to the next pass:
    /// partitions exist months ahead, and the row deletes still remove what
    /// a partition drop did not.
    async fn maintain_partitions(&self, now: DateTime<Utc>) -> Swept {
        let mut swept = Swept::default();
        match partitions::ensure_ahead(&self.store, now).await {
            Ok(created) => swept.partitions_created = created,
            Err(err) => tracing::warn!(error = %err, "cannot create archive partitions ahead"),
        }
        match partitions::months_ahead(&self.store, now).await {
            Ok(Some(months)) => metrics::gauge!(ARCHIVE_PARTITIONS_AHEAD).set(f64::from(months)),
            Ok(None) => {}
            Err(err) => tracing::warn!(error = %err, "cannot count archive partitions ahead"),
        }
        let longest =
            chrono::Duration::from_std(self.policy.longest()).unwrap_or(chrono::Duration::MAX);
        match partitions::drop_expired(&self.store, first_id_at(now - longest)).await {
            Ok(done) => swept.partitions_dropped = done.dropped,
            Err(err) => tracing::warn!(error = %err, "cannot drop expired archive partitions"),
        }
        swept
    }

    /// Removes one organization's finished events past its tier's retention.
    pub async fn sweep_organization(
        &self,
        organization_id: Uuid,
        tier: Tier,
        shutdown: &CancellationToken,
    ) -> Result<Swept, StoreError> {
        self.sweep_organization_at(organization_id, tier, Utc::now(), shutdown)
            .await
    }

    /// Removes one organization's finished events past its tier's
    /// retention as of `now`.
    pub async fn sweep_organization_at(
        &self,
        organization_id: Uuid,
        tier: Tier,
        now: DateTime<Utc>,
        shutdown: &CancellationToken,
    ) -> Result<Swept, StoreError> {
        let mut swept = Swept {
            organizations: 1,
            ..Swept::default()
        };
        let retention =
            chrono::Duration::from_std(self.policy.of(tier)).unwrap_or(chrono::Duration::MAX);
        let cutoff = first_id_at(now - retention);
        for _ in 0..MAX_BATCHES_PER_ORGANIZATION {
            if shutdown.is_cancelled() {
                break;
            }
            let started = std::time::Instant::now();
            let (events, attempts) = self
                .store
                .delete_finished_before(organization_id, cutoff, self.batch)
                .await?;
            let took = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
            swept.slowest_batch_ms = swept.slowest_batch_ms.max(took);
            swept.batches += 1;
            swept.events += events;
            swept.attempts += attempts;
            if events < u64::from(self.batch) {
                break;
            }
        }
        Ok(swept)
    }

    /// Sweeps every `interval` until `shutdown`.
    pub async fn run(self, interval: Duration, shutdown: CancellationToken) {
        loop {
            match self.sweep(&shutdown).await {
                Ok(swept) if swept.events > 0 || swept.partitions_dropped > 0 => {
                    tracing::info!(
                        events = swept.events,
                        attempts = swept.attempts,
                        batches = swept.batches,
                        partitions_dropped = swept.partitions_dropped,
                        "removed events past their retention"
                    );
                }
                Ok(_) => {}
                Err(err) => tracing::warn!(error = %err, "retention sweep failed; retrying later"),
            }
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(interval) => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_policy_keeps_each_tier_its_days() {
        let policy = RetentionPolicy::parse(DEFAULT_RETENTION).expect("default parses");
        assert_eq!(policy.days(Tier::Free), 7);
        assert_eq!(policy.days(Tier::Pro), 30);
        assert_eq!(policy.days(Tier::Business), 90);
        assert_eq!(policy.days(Tier::Enterprise), 365);
    }

    #[test]
    fn a_partial_policy_overrides_only_the_tiers_it_names() {
        let policy = RetentionPolicy::parse("pro=14d").expect("parses");
        assert_eq!(policy.days(Tier::Pro), 14);
        assert_eq!(policy.days(Tier::Free), 7);
        assert!(RetentionPolicy::parse("gold=1d").is_err());
        assert!(RetentionPolicy::parse("free").is_err());
        assert!(RetentionPolicy::parse("free=1s").is_err());
    }

    #[test]
    fn the_longest_retention_is_the_longest_tiers() {
        let policy = RetentionPolicy::parse(DEFAULT_RETENTION).expect("default parses");
        assert_eq!(policy.longest(), Duration::from_secs(365 * 24 * 3600));
        let policy = RetentionPolicy::parse("free=400d").expect("parses");
        assert_eq!(policy.longest(), Duration::from_secs(400 * 24 * 3600));
    }

    #[test]
    fn the_cutoff_id_sorts_between_older_and_newer_events() {
        let now = Utc::now();
        let cutoff = first_id_at(now);
        let older = first_id_at(now - chrono::Duration::milliseconds(1));
        let (newer, _) = crate::domain::mint_event_id();
        assert!(older < cutoff);
        assert!(cutoff <= newer);
    }
}
