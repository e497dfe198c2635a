//! Per-organization delivery slots: one organization's slow or dead
//! endpoint never takes every request a worker can have in flight.

use std::{
    collections::HashMap,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU32, Ordering},
    },
};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use uuid::Uuid;

/// Organizations remembered before idle ones are forgotten.
const FORGET_IDLE_ABOVE: usize = 10_000;

/// One organization's share of a worker: requests in flight, and entries
/// waiting in memory for one of them to finish.
pub struct OrgSlot {
    in_flight: Arc<Semaphore>,
    waiting: AtomicU32,
}

impl OrgSlot {
    /// Waits for a request of the organization to finish, then takes its slot.
    pub async fn acquire(&self) -> Option<OwnedSemaphorePermit> {
        let permit = Arc::clone(&self.in_flight).acquire_owned().await;
        self.waiting.fetch_sub(1, Ordering::AcqRel);
        permit.ok()
    }
}

/// What to do with an entry, given its organization's slots.
pub enum Admit {
    Now(OwnedSemaphorePermit),
    /// After a request of the same organization finishes.
    Wait(Arc<OrgSlot>),
    /// The organization already has its fill in memory: back to Redis.
    Defer,
}

pub struct OrgSlots {
    per_org: u32,
    slots: Mutex<HashMap<Uuid, Arc<OrgSlot>>>,
}

impl OrgSlots {
    pub fn new(per_org: u32) -> Self {
        Self {
            per_org,
            slots: Mutex::new(HashMap::new()),
        }
    }

    /// At most `per_org` requests in flight and as many waiting per organization.
    pub fn admit(&self, organization_id: Uuid) -> Admit {
        let slot = {
            let mut slots = self
                .slots
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            if slots.len() > FORGET_IDLE_ABOVE {
                let full = self.per_org as usize;
                slots.retain(|_, s| {
                    s.in_flight.available_permits() < full || s.waiting.load(Ordering::Relaxed) > 0
                });
            }
            Arc::clone(slots.entry(organization_id).or_insert_with(|| {
                Arc::new(OrgSlot {
                    in_flight: Arc::new(Semaphore::new(self.per_org as usize)),
                    waiting: AtomicU32::new(0),
                })
            }))
        };
        if let Ok(permit) = Arc::clone(&slot.in_flight).try_acquire_owned() {
            return Admit::Now(permit);
        }
        if slot.waiting.fetch_add(1, Ordering::AcqRel) < self.per_org {
            return Admit::Wait(slot);
        }
        slot.waiting.fetch_sub(1, Ordering::AcqRel);
        Admit::Defer
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn an_organization_gets_its_share_then_waits_then_is_deferred() {
        let slots = OrgSlots::new(2);
        let busy = Uuid::now_v7();
        let held: Vec<_> = (0..2)
            .map(|_| match slots.admit(busy) {
                Admit::Now(permit) => permit,
                _ => panic!("the first two go at once"),
            })
            .collect();
        let waiting: Vec<_> = (0..2)
            .map(|_| match slots.admit(busy) {
                Admit::Wait(slot) => slot,
                _ => panic!("the next two wait"),
            })
            .collect();
        assert!(matches!(slots.admit(busy), Admit::Defer));
        // Another organization is not affected.
        assert!(matches!(slots.admit(Uuid::now_v7()), Admit::Now(_)));
        // A finished request lets a waiting entry through.
        drop(held);
        assert!(waiting[0].acquire().await.is_some());
    }
}
