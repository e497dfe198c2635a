//! The delivery worker: reads entries, dispatches them within the
//! concurrency limits, and moves due retries back to work.

use std::{
    collections::HashMap,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU32, Ordering},
    },
    time::{Duration, Instant},
};

use chrono::Utc;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};
use tokio_util::{sync::CancellationToken, task::TaskTracker};
use uuid::Uuid;

use super::{
    recorder::{Finished, Recorder},
    retries::Retries,
    sender::{Outcome, Sender},
};
use crate::{
    domain::EventStatus,
    metrics::{
        DEAD_LETTERS, DELIVERIES, DELIVERIES_DEFERRED, DELIVERIES_IN_FLIGHT, DELIVERY_DURATION,
        DELIVERY_END_TO_END, RETRIES_SCHEDULED,
    },
    queue::{Consumer, Delivery, StreamKind},
    store::{AttemptRow, EventOutcome, Store, WebhookTarget},
};

const READ_BLOCK: Duration = Duration::from_secs(1);
const READ_BATCH: usize = 100;
/// How long an entry whose organization has no free slot waits before it is read again.
const DEFER: Duration = Duration::from_secs(1);
const MOVE_EVERY: Duration = Duration::from_millis(200);
const MOVE_BATCH: u32 = 500;
const HOUSEKEEPING_EVERY: Duration = Duration::from_secs(2);

#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Requests in flight in this process.
    pub total: u32,
    /// Requests in flight for one organization in this process.
    pub per_org: u32,
    /// How long an entry may stay unacknowledged before another worker
    /// takes it: longer than any request may last.
    pub claim_after: Duration,
}

pub struct DeliveryWorker {
    store: Store,
    consumer: Consumer,
    sender: Sender,
    retries: Retries,
    limits: Limits,
}

/// What every delivery task needs.
struct Context {
    sender: Sender,
    retries: Retries,
    finished: mpsc::Sender<Finished>,
}

/// One organization's share of a worker: requests in flight, and entries
/// waiting in memory for one of them to finish.
struct OrgSlot {
    in_flight: Arc<Semaphore>,
    waiting: AtomicU32,
}

/// Per-organization delivery slots.
struct OrgSlots {
    per_org: u32,
    slots: Mutex<HashMap<Uuid, Arc<OrgSlot>>>,
}

/// What to do with an entry, given its organization's slots.
enum Admit {
    Now(OwnedSemaphorePermit),
    /// After a request of the same organization finishes.
    Wait(Arc<OrgSlot>),
    /// The organization already has its fill in memory: back to Redis.
    Defer,
}

impl OrgSlots {
    fn admit(&self, organization_id: Uuid) -> Admit {
        let slot = {
            let mut slots = self
                .slots
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            if slots.len() > 10_000 {
                // Forget idle organizations so the map stays small.
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

impl DeliveryWorker {
    pub fn new(
        store: Store,
        consumer: Consumer,
        sender: Sender,
        retries: Retries,
        limits: Limits,
    ) -> Self {
        Self {
            store,
            consumer,
            sender,
            retries,
            limits,
        }
    }

    /// Delivers until `shutdown`, then lets requests in flight finish and
    /// stores their outcomes before returning.
    pub async fn run(self, shutdown: CancellationToken) {
        let (finished, rx) = mpsc::channel(self.limits.total as usize + READ_BATCH);
        let recorder =
            tokio::spawn(Recorder::new(self.store.clone(), self.consumer.clone(), rx).run());
        let mover = tokio::spawn(move_due_retries(self.retries.clone(), shutdown.clone()));
        let context = Arc::new(Context {
            sender: self.sender.clone(),
            retries: self.retries.clone(),
            finished,
        });
        let global = Arc::new(Semaphore::new(self.limits.total as usize));
        let orgs = OrgSlots {
            per_org: self.limits.per_org,
            slots: Mutex::new(HashMap::new()),
        };
        let tasks = TaskTracker::new();
        let claim_every = (self.limits.claim_after / 2).max(Duration::from_secs(1));
        let mut last_claim: Option<Instant> = None;
        let mut last_housekeeping = Instant::now();
        tracing::info!(consumer = self.consumer.name(), "delivery worker started");

        while !shutdown.is_cancelled() {
            // Back-pressure: read nothing while every slot is taken.
            let free = global.available_permits();
            if free == 0 {
                tokio::select! {
                    () = shutdown.cancelled() => break,
                    permit = Arc::clone(&global).acquire_owned() => drop(permit),
                }
                continue;
            }
            let count = free.min(READ_BATCH) as u64;
            let read = if last_claim.is_none_or(|t| t.elapsed() >= claim_every) {
                last_claim = Some(Instant::now());
                self.consumer
                    .claim_stale(self.limits.claim_after, count)
                    .await
            } else {
                self.consumer.read_new(count, READ_BLOCK).await
            };
            match read {
                Ok(deliveries) => {
                    self.dispatch(deliveries, &context, &global, &orgs, &tasks, &shutdown)
                        .await
                }
                Err(err) => {
                    tracing::error!(error = %err, "cannot read deliveries");
                    tokio::select! {
                        () = shutdown.cancelled() => {}
                        () = tokio::time::sleep(Duration::from_secs(1)) => {}
                    }
                }
            }
            if last_housekeeping.elapsed() >= HOUSEKEEPING_EVERY {
                last_housekeeping = Instant::now();
                self.housekeeping().await;
            }
        }

        tasks.close();
        tasks.wait().await;
        drop(context);
        let _ = recorder.await;
        let _ = mover.await;
        tracing::info!(consumer = self.consumer.name(), "delivery worker stopped");
    }

    async fn dispatch(
        &self,
        deliveries: Vec<Delivery>,
        context: &Arc<Context>,
        global: &Arc<Semaphore>,
        orgs: &OrgSlots,
        tasks: &TaskTracker,
        shutdown: &CancellationToken,
    ) {
        if deliveries.is_empty() {
            return;
        }
        let mut ids: Vec<Uuid> = deliveries.iter().map(|d| d.event.organization_id).collect();
        ids.sort_unstable();
        ids.dedup();
        let targets: HashMap<Uuid, WebhookTarget> = loop {
            match self.store.webhook_targets(&ids).await {
                Ok(targets) => {
                    break targets
                        .into_iter()
                        .map(|t| (t.organization_id, t))
                        .collect();
                }
                // Entries stay pending (not acknowledged) while Postgres is away.
                Err(err) if shutdown.is_cancelled() => {
                    tracing::error!(error = %err, "cannot look up webhooks; entries stay pending");
                    return;
                }
                Err(err) => {
                    tracing::error!(error = %err, "cannot look up webhooks; retrying");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        };
        for delivery in deliveries {
            let Some(target) = targets.get(&delivery.event.organization_id) else {
                let finished = without_webhook(delivery);
                let _ = context.finished.send(finished).await;
                continue;
            };
            // Entries in memory (waiting or in flight) never exceed the
            // global limit: the loop reads no more than it has room for.
            let Ok(held) = Arc::clone(global).acquire_owned().await else {
                return;
            };
            let org_slot = match orgs.admit(delivery.event.organization_id) {
                Admit::Now(permit) => Ok(permit),
                Admit::Wait(slot) => Err(slot),
                Admit::Defer => {
                    drop(held);
                    defer(context, delivery).await;
                    continue;
                }
            };
            let (context, target) = (Arc::clone(context), target.clone());
            tasks.spawn(async move {
                let permit = match org_slot {
                    Ok(permit) => permit,
                    Err(slot) => {
                        let permit = Arc::clone(&slot.in_flight).acquire_owned().await;
                        slot.waiting.fetch_sub(1, Ordering::AcqRel);
                        match permit {
                            Ok(permit) => permit,
                            Err(_) => return,
                        }
                    }
                };
                deliver(&context, delivery, &target).await;
                drop((permit, held));
            });
        }
    }

    async fn housekeeping(&self) {
        if let Err(err) = self.consumer.trim().await {
            tracing::warn!(error = %err, "stream trim failed");
        }
        if let Ok(scheduled) = self.retries.scheduled().await {
            metrics::gauge!(RETRIES_SCHEDULED).set(scheduled as f64);
        }
    }
}

/// An organization without an (enabled) webhook is a pull consumer: its new
/// events just wait in the inbox. A retry or replay that finds the webhook
/// gone is dead-lettered, so it stays visible and can be replayed later.
fn without_webhook(delivery: Delivery) -> Finished {
    if delivery.kind == StreamKind::Events {
        return Finished::ack_only(delivery);
    }
    metrics::counter!(DEAD_LETTERS).increment(1);
    let outcome = EventOutcome {
        event: delivery.event.clone(),
        status: EventStatus::DeadLetter.as_str(),
        attempts: delivery.attempt.saturating_sub(1) as i32,
        last_error: Some("no enabled webhook to deliver to".into()),
        delivered_at: None,
        next_retry_at: None,
    };
    Finished {
        delivery,
        attempt: None,
        outcome: Some(outcome),
        disable_webhook: None,
    }
}

/// Puts an entry back for a second when its organization has no free slot.
async fn defer(context: &Context, delivery: Delivery) {
    metrics::counter!(DELIVERIES_DEFERRED).increment(1);
    let scheduled = context
        .retries
        .schedule(
            delivery.shard,
            &delivery.event,
            delivery.attempt,
            delivery.series_try,
            DEFER,
        )
        .await;
    match scheduled {
        Ok(()) => {
            let _ = context.finished.send(Finished::ack_only(delivery)).await;
        }
        Err(err) => tracing::error!(error = %err, "cannot defer a delivery; it stays pending"),
    }
}

async fn deliver(context: &Context, delivery: Delivery, target: &WebhookTarget) {
    metrics::gauge!(DELIVERIES_IN_FLIGHT).increment(1.0);
    let attempt = context.sender.send(target, &delivery.event).await;
    metrics::gauge!(DELIVERIES_IN_FLIGHT).decrement(1.0);
    metrics::histogram!(DELIVERY_DURATION).record(attempt.duration.as_secs_f64());

    let event = &delivery.event;
    let now = Utc::now();
    let mut disable_webhook = None;
    let response_status: Option<i32>;
    let (status, last_error, next_retry_at, delivered_at) = match &attempt.outcome {
        Outcome::Delivered { status } => {
            metrics::counter!(DELIVERIES, "outcome" => "delivered").increment(1);
            let end_to_end = (now - event.created_at).num_milliseconds().max(0) as f64 / 1000.0;
            metrics::histogram!(DELIVERY_END_TO_END).record(end_to_end);
            response_status = Some(i32::from(*status));
            (EventStatus::Delivered, None, None, Some(now))
        }
        Outcome::Gone => {
            metrics::counter!(DELIVERIES, "outcome" => "gone").increment(1);
            let reason = "endpoint answered 410 Gone; webhook disabled".to_owned();
            if let Err(err) = context
                .retries
                .dead_letter(delivery.shard, event, &reason)
                .await
            {
                tracing::error!(error = %err, "cannot dead-letter; entry stays pending");
                return;
            }
            metrics::counter!(DEAD_LETTERS).increment(1);
            disable_webhook = Some((event.organization_id, reason.clone()));
            response_status = Some(410);
            (EventStatus::DeadLetter, Some(reason), None, None)
        }
        Outcome::Failed {
            status,
            error,
            retry_after,
        } => {
            response_status = status.map(i32::from);
            match context
                .retries
                .next_delay(delivery.series_try, *retry_after)
            {
                Some(delay) => {
                    metrics::counter!(DELIVERIES, "outcome" => "retry").increment(1);
                    let scheduled = context
                        .retries
                        .schedule(
                            delivery.shard,
                            event,
                            delivery.attempt + 1,
                            delivery.series_try + 1,
                            delay,
                        )
                        .await;
                    if let Err(err) = scheduled {
                        tracing::error!(error = %err, "cannot schedule a retry; entry stays pending");
                        return;
                    }
                    let next = now + chrono::Duration::from_std(delay).unwrap_or_default();
                    (EventStatus::Failed, Some(error.clone()), Some(next), None)
                }
                None => {
                    metrics::counter!(DELIVERIES, "outcome" => "dead_letter").increment(1);
                    if let Err(err) = context
                        .retries
                        .dead_letter(delivery.shard, event, error)
                        .await
                    {
                        tracing::error!(error = %err, "cannot dead-letter; entry stays pending");
                        return;
                    }
                    metrics::counter!(DEAD_LETTERS).increment(1);
                    (EventStatus::DeadLetter, Some(error.clone()), None, None)
                }
            }
        }
    };
    tracing::info!(
        event_id = %event.id,
        organization_id = %event.organization_id,
        attempt = delivery.attempt,
        outcome = status.as_str(),
        "delivery attempt"
    );
    let attempt_row = AttemptRow {
        event_id: event.id,
        attempt: delivery.attempt as i32,
        organization_id: event.organization_id,
        attempted_at: attempt.started_at,
        duration_ms: attempt.duration.as_millis().min(i32::MAX as u128) as i32,
        response_status,
        error: last_error.clone(),
        next_retry_at,
    };
    let outcome = EventOutcome {
        event: event.clone(),
        status: status.as_str(),
        attempts: delivery.attempt as i32,
        last_error,
        delivered_at,
        next_retry_at,
    };
    let _ = context
        .finished
        .send(Finished {
            delivery,
            attempt: Some(attempt_row),
            outcome: Some(outcome),
            disable_webhook,
        })
        .await;
}

/// Every worker moves due retries; the script makes each move happen once.
async fn move_due_retries(retries: Retries, shutdown: CancellationToken) {
    while !shutdown.is_cancelled() {
        let moved = match retries.move_due(MOVE_BATCH).await {
            Ok(moved) => moved,
            Err(err) => {
                tracing::warn!(error = %err, "cannot move due retries");
                0
            }
        };
        if moved < u64::from(MOVE_BATCH) {
            tokio::select! {
                () = shutdown.cancelled() => {}
                () = tokio::time::sleep(MOVE_EVERY) => {}
            }
        }
    }
}
