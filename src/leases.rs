//! Leases for pull consumers: the operations behind `/api/inbox/lease`,
//! `/ack` and `/release`, free of HTTP.
//!
//! A lease hands a consumer some of its organization's inbox events for a
//! while; no other lease gets them until they are acknowledged, released,
//! or the lease expires. An event leased more than `max_leases` times is
//! quarantined rather than handed out forever: the consumer evidently
//! cannot process it. Leases work on the archive: an event accepted moments
//! ago and not archived yet (normally well under a second) is leased by a
//! later call.

use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::{
    domain::Name,
    store::{EventRow, LeaseQuery, Store, StoreError},
};

/// Most events one lease hands out.
pub const MAX_LEASE_LIMIT: u32 = 100;
/// Events a lease hands out when the consumer does not say.
pub const DEFAULT_LEASE_LIMIT: u32 = 10;
/// Lease durations, in seconds.
pub const LEASE_SECONDS: std::ops::RangeInclusive<u32> = 1..=3600;
pub const DEFAULT_LEASE_SECONDS: u32 = 300;
/// Most event ids one ack or release names.
pub const MAX_EVENT_IDS: usize = 100;
/// A lease call that quarantined events instead of leasing them looks
/// again, so poison events do not starve the consumer; at most this often.
const QUARANTINE_PASSES: usize = 10;

#[derive(Debug, thiserror::Error)]
pub enum LeasesError {
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What a consumer asks a lease for.
#[derive(Debug, Clone)]
pub struct LeaseRequest {
    pub limit: u32,
    pub lease_seconds: u32,
    pub event_type: Option<Name>,
}

/// A granted lease.
#[derive(Debug)]
pub struct Lease {
    pub lease_id: Uuid,
    pub leased_until: DateTime<Utc>,
    pub events: Vec<EventRow>,
}

#[derive(Clone)]
pub struct Leases {
    store: Store,
    max_leases: u32,
}

impl Leases {
    pub fn new(store: Store, max_leases: u32) -> Self {
        Self { store, max_leases }
    }

    /// Leases up to `request.limit` events, oldest first.
    pub async fn lease(
        &self,
        organization_id: Uuid,
        request: &LeaseRequest,
    ) -> Result<Lease, LeasesError> {
        let lease_id = Uuid::now_v7();
        let mut events = Vec::new();
        let mut leased_until = None;
        for _ in 0..QUARANTINE_PASSES {
            let wanted = request.limit.saturating_sub(events.len() as u32);
            if wanted == 0 {
                break;
            }
            let rows = self
                .store
                .lease_events(LeaseQuery {
                    organization_id,
                    lease_id,
                    limit: wanted,
                    lease_seconds: request.lease_seconds,
                    event_type: request.event_type.as_ref().map(Name::as_str),
                    max_leases: self.max_leases,
                })
                .await?;
            if rows.quarantined > 0 {
                tracing::warn!(
                    %organization_id,
                    count = rows.quarantined,
                    "events leased too many times were quarantined"
                );
            }
            leased_until = leased_until.or(rows.leased_until);
            events.extend(rows.leased);
            // Only quarantining can make a pass come back short while more
            // events wait; otherwise the inbox is drained.
            if rows.quarantined == 0 {
                break;
            }
        }
        let leased_until = leased_until.unwrap_or_else(|| {
            Utc::now() + chrono::Duration::seconds(i64::from(request.lease_seconds))
        });
        Ok(Lease {
            lease_id,
            leased_until,
            events,
        })
    }

    /// Acknowledges what the lease holds (all, or `ids`); returns the ids
    /// acknowledged.
    pub async fn ack(
        &self,
        organization_id: Uuid,
        lease_id: Uuid,
        ids: Option<&[Uuid]>,
    ) -> Result<Vec<Uuid>, LeasesError> {
        Ok(self
            .store
            .ack_leased(organization_id, lease_id, ids)
            .await?)
    }

    /// Makes what the lease holds (all, or `ids`) available again at once;
    /// returns the ids released.
    pub async fn release(
        &self,
        organization_id: Uuid,
        lease_id: Uuid,
        ids: Option<&[Uuid]>,
    ) -> Result<Vec<Uuid>, LeasesError> {
        Ok(self
            .store
            .release_leased(organization_id, lease_id, ids)
            .await?)
    }
}
