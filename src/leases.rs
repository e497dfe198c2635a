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
//!
//! A lease is stored nowhere but in the events it holds, so once they are
//! acknowledged or released nothing remembers it. To tell a lease id the
//! organization was issued (answered with what it holds, perhaps nothing)
//! from one it never was (a typo, another organization's: 404), the id
//! carries its organization: a UUIDv7 whose last 32 bits, random in any
//! other v7 id, are a digest of the organization and the rest of the id.
//! The random bits left and the generator's counter keep ids unique.

use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};
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
    /// The organization was never issued this lease id.
    #[error("no such lease")]
    UnknownLease,
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
        let lease_id = mint_lease_id(organization_id);
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
        let done = self
            .store
            .ack_leased(organization_id, lease_id, ids)
            .await?;
        known(organization_id, lease_id, done)
    }

    /// Makes what the lease holds (all, or `ids`) available again at once;
    /// returns the ids released.
    pub async fn release(
        &self,
        organization_id: Uuid,
        lease_id: Uuid,
        ids: Option<&[Uuid]>,
    ) -> Result<Vec<Uuid>, LeasesError> {
        let done = self
            .store
            .release_leased(organization_id, lease_id, ids)
            .await?;
        known(organization_id, lease_id, done)
    }
}

/// What an ack or release did, or that the lease is not the organization's.
/// A lease that still held events of the organization is its own whatever
/// its id says: ids minted before they carried their organization stay
/// usable until their events are done.
fn known(organization_id: Uuid, lease_id: Uuid, done: Vec<Uuid>) -> Result<Vec<Uuid>, LeasesError> {
    if done.is_empty() && !issued_to(lease_id, organization_id) {
        return Err(LeasesError::UnknownLease);
    }
    Ok(done)
}

/// A new lease id of the organization (see the module's documentation).
fn mint_lease_id(organization_id: Uuid) -> Uuid {
    let mut bytes = *Uuid::now_v7().as_bytes();
    let tag = lease_tag(organization_id, &bytes);
    bytes[TAG_AT..].copy_from_slice(&tag);
    Uuid::from_bytes(bytes)
}

/// Whether `lease_id` was minted for the organization.
fn issued_to(lease_id: Uuid, organization_id: Uuid) -> bool {
    let bytes = lease_id.as_bytes();
    lease_id.get_version_num() == 7 && bytes[TAG_AT..] == lease_tag(organization_id, bytes)
}

/// Where the tag starts: the last four bytes, below the v7 counter bits.
const TAG_AT: usize = 12;

fn lease_tag(organization_id: Uuid, id: &[u8; 16]) -> [u8; 4] {
    let digest = Sha256::new()
        .chain_update(b"triggers lease id")
        .chain_update(organization_id.as_bytes())
        .chain_update(&id[..TAG_AT])
        .finalize();
    [digest[0], digest[1], digest[2], digest[3]]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lease_id_tells_its_organization() {
        let ours = Uuid::now_v7();
        let theirs = Uuid::now_v7();
        let id = mint_lease_id(ours);
        assert_eq!(id.get_version_num(), 7);
        assert!(issued_to(id, ours));
        assert!(!issued_to(id, theirs));
        assert!(!issued_to(Uuid::now_v7(), ours));
        // A typo anywhere in the id makes it another id.
        for byte in 0..16 {
            let mut typo = *id.as_bytes();
            typo[byte] ^= 0x01;
            assert!(!issued_to(Uuid::from_bytes(typo), ours), "byte {byte}");
        }
    }

    #[test]
    fn lease_ids_stay_unique_and_ordered() {
        let org = Uuid::now_v7();
        let ids: Vec<Uuid> = (0..10_000).map(|_| mint_lease_id(org)).collect();
        assert!(ids.windows(2).all(|w| w[0] < w[1]));
        assert!(ids.iter().all(|id| crate::domain::time_of(*id).is_some()));
    }
}
