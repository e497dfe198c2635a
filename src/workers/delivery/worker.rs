//! The delivery worker: takes entries from the consume loop, dispatches
//! them within the concurrency limits, and moves due retries back to work.

use std::{sync::Arc, time::Duration};

use tokio::sync::{Semaphore, mpsc};
use tokio_util::{sync::CancellationToken, task::TaskTracker};
use uuid::Uuid;

use super::{
    attempt::{Context, deliver},
    policy::RetryPolicy,
    recorder::{Finished, Recorder},
    sender::Sender,
    slots::{Admit, OrgSlots},
};
use crate::{
    config::{ConsumerSettings, DeliverySettings, OutageSettings},
    domain::EventStatus,
    metrics::{
        DEAD_LETTER_STREAM_LENGTH, DEAD_LETTERS, DELIVERIES_DEFERRED, DELIVERIES_UNSIGNABLE,
        RETRIES_SCHEDULED,
    },
    redis::RedisError,
    sealing::SealingError,
    store::{EventOutcome, Store, StoreError, WebhookTargets},
    streams::{Consumer, Received, RetryQueue, StreamKind},
    workers::{Backends, Handler, Settings, WorkerError, consume, outage::WaitOut},
};

/// The consumer group of the delivery workers.
pub const GROUP: &str = "delivery";

const READ_BATCH: u64 = 100;
/// How long an entry whose organization has no free slot waits before it is read again.
const DEFER: Duration = Duration::from_secs(1);
const MOVE_EVERY: Duration = Duration::from_millis(200);
const MOVE_BATCH: u32 = 500;
/// Why an entry of an organization whose signing secret cannot be opened is
/// dead-lettered: what its owner sees as the event's `last_error`.
const UNSIGNABLE: &str = "cannot open the webhook signing secret \
                          (sealed under a key not in TRIGGERS_SECRET_KEYS?)";

#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Requests in flight in this process.
    pub total: u32,
    /// Requests in flight for one organization in this process.
    pub per_org: u32,
    /// How long an entry may stay unacknowledged before another worker
    /// takes it: longer than any request may last.
    pub claim_after: Duration,
    /// Longest pause between retries of a webhook lookup or an outcome
    /// write while Postgres is unreachable.
    pub store_retry_max: Duration,
}

/// How much longer than a request may last an entry stays unacknowledged
/// before another worker claims it, so a slow request in flight is not
/// claimed from a live worker.
const CLAIM_MARGIN: Duration = Duration::from_secs(5);

impl Limits {
    fn new(
        delivery: &DeliverySettings,
        consumers: &ConsumerSettings,
        outages: &OutageSettings,
        request_timeout: Duration,
    ) -> Self {
        Self {
            total: delivery.delivery_concurrency,
            per_org: delivery.delivery_per_org,
            claim_after: consumers
                .visibility_timeout
                .max(request_timeout + CLAIM_MARGIN),
            store_retry_max: outages.store_retry_max,
        }
    }
}

pub struct DeliveryWorker {
    store: Store,
    consumer: Consumer,
    sender: Sender,
    policy: RetryPolicy,
    retries: RetryQueue,
    limits: Limits,
}

/// The worker while it runs: what the consume loop hands entries to.
struct Dispatcher {
    store: Store,
    context: Arc<Context>,
    /// Entries in memory (in flight or waiting for their organization).
    global: Arc<Semaphore>,
    orgs: OrgSlots,
    tasks: TaskTracker,
    wait_out: WaitOut,
}

impl DeliveryWorker {
    /// Joins the delivery group as this process's consumer. Its group then
    /// exists before any worker trims a stream, so none can trim away an
    /// entry this group has not consumed.
    pub async fn join(
        backends: &Backends,
        sender: Sender,
        delivery: &DeliverySettings,
        consumers: &ConsumerSettings,
        outages: &OutageSettings,
    ) -> Result<Self, RedisError> {
        let consumer = backends
            .join(
                &[StreamKind::Events, StreamKind::Redeliver],
                GROUP,
                &consumers.name(),
            )
            .await?;
        let limits = Limits::new(delivery, consumers, outages, sender.timeout());
        Ok(Self {
            store: backends.store.clone(),
            consumer,
            sender,
            policy: RetryPolicy::new(delivery.retry_schedule.0.clone()),
            retries: RetryQueue::new(backends.pool.clone(), backends.keys.clone()),
            limits,
        })
    }

    /// Delivers until `shutdown`, then lets requests in flight finish and
    /// stores their outcomes before returning.
    pub async fn run(self, shutdown: CancellationToken) {
        let (finished, rx) = mpsc::channel(self.limits.total as usize + READ_BATCH as usize);
        let wait_out = WaitOut::new(self.limits.store_retry_max, shutdown.clone());
        let recorder = tokio::spawn(
            Recorder::new(
                self.store.clone(),
                self.consumer.clone(),
                rx,
                wait_out.clone(),
            )
            .run(),
        );
        let mover = tokio::spawn(move_due_retries(self.retries.clone(), shutdown.clone()));
        let dispatcher = Dispatcher {
            store: self.store.clone(),
            context: Arc::new(Context {
                sender: self.sender,
                policy: self.policy,
                retries: self.retries,
                finished,
            }),
            global: Arc::new(Semaphore::new(self.limits.total as usize)),
            orgs: OrgSlots::new(self.limits.per_org),
            tasks: TaskTracker::new(),
            wait_out,
        };
        let settings = Settings {
            batch: READ_BATCH,
            claim_after: self.limits.claim_after,
            standby: None,
        };
        tracing::info!(consumer = self.consumer.name(), "delivery worker started");
        consume(&self.consumer, &dispatcher, settings, &shutdown).await;

        dispatcher.tasks.close();
        dispatcher.tasks.wait().await;
        // The recorder stops once every sender of outcomes is gone.
        drop(dispatcher);
        let _ = recorder.await;
        let _ = mover.await;
        tracing::info!(consumer = self.consumer.name(), "delivery worker stopped");
    }
}

impl Handler for Dispatcher {
    /// Back-pressure: nothing is read while every slot is taken.
    async fn room(&self, shutdown: &CancellationToken) -> Option<usize> {
        let free = self.global.available_permits();
        if free > 0 {
            return Some(free);
        }
        tokio::select! {
            () = shutdown.cancelled() => None,
            permit = Arc::clone(&self.global).acquire_owned() => {
                drop(permit);
                Some(self.global.available_permits().max(1))
            }
        }
    }

    async fn handle(&self, batch: Vec<Received>) -> Result<(), WorkerError> {
        self.dispatch(batch).await
    }

    async fn housekeeping(&self) {
        match self.context.retries.sizes().await {
            Ok(shards) => {
                for sizes in shards {
                    let shard = sizes.shard.to_string();
                    metrics::gauge!(RETRIES_SCHEDULED, "shard" => shard.clone())
                        .set(sizes.scheduled as f64);
                    metrics::gauge!(DEAD_LETTER_STREAM_LENGTH, "shard" => shard)
                        .set(sizes.dead_letters as f64);
                }
            }
            Err(err) => tracing::debug!(error = %err, "cannot read retry and dead-letter sizes"),
        }
    }
}

impl Dispatcher {
    /// Sends each entry on a task of its own. Entries of an organization
    /// whose webhook cannot be used are dead-lettered here; the others go on.
    async fn dispatch(&self, batch: Vec<Received>) -> Result<(), WorkerError> {
        if batch.is_empty() {
            return Ok(());
        }
        let targets = self.webhook_targets(&batch).await?;
        for received in batch {
            let organization_id = received.entry.event.organization_id;
            let target = match targets.get(&organization_id) {
                Some(Ok(target)) => target,
                Some(Err(_)) => {
                    let _ = self.context.finished.send(unsignable(received)).await;
                    continue;
                }
                None => {
                    let _ = self.context.finished.send(without_webhook(received)).await;
                    continue;
                }
            };
            // Entries in memory (waiting or in flight) never exceed the
            // global limit: the loop reads no more than there is room for.
            let Ok(held) = Arc::clone(&self.global).acquire_owned().await else {
                return Ok(());
            };
            let org_slot = match self.orgs.admit(organization_id) {
                Admit::Now(permit) => Ok(permit),
                Admit::Wait(slot) => Err(slot),
                Admit::Defer => {
                    drop(held);
                    self.defer(received).await;
                    continue;
                }
            };
            let (context, target) = (Arc::clone(&self.context), target.clone());
            self.tasks.spawn(async move {
                let permit = match org_slot {
                    Ok(permit) => permit,
                    Err(slot) => match slot.acquire().await {
                        Some(permit) => permit,
                        None => return,
                    },
                };
                deliver(&context, received, &target).await;
                drop((permit, held));
            });
        }
        Ok(())
    }

    /// The enabled webhooks of the batch's organizations, waiting out an
    /// unreachable Postgres. An error (Postgres still away at shutdown, or
    /// refusing the query) leaves the batch pending.
    async fn webhook_targets(&self, batch: &[Received]) -> Result<WebhookTargets, StoreError> {
        let mut ids: Vec<Uuid> = batch
            .iter()
            .map(|r| r.entry.event.organization_id)
            .collect();
        ids.sort_unstable();
        ids.dedup();
        let targets = self
            .wait_out
            .run("looking up webhooks", StoreError::is_outage, || {
                self.store.webhook_targets(&ids)
            })
            .await?;
        for (organization_id, target) in &targets {
            if let Err(err) = target {
                report_unsignable(*organization_id, err, batch);
            }
        }
        Ok(targets)
    }

    /// Puts an entry back for a second when its organization has no free slot.
    async fn defer(&self, received: Received) {
        metrics::counter!(DELIVERIES_DEFERRED).increment(1);
        match self.context.retries.schedule(&received.entry, DEFER).await {
            Ok(()) => {
                let _ = self
                    .context
                    .finished
                    .send(Finished::ack_only(received))
                    .await;
            }
            Err(err) => tracing::error!(error = %err, "cannot defer a delivery; it stays pending"),
        }
    }
}

/// An organization without an (enabled) webhook is a pull consumer: its new
/// events just wait in the inbox. A retry or replay that finds the webhook
/// gone is dead-lettered, so it stays visible and can be replayed later.
fn without_webhook(received: Received) -> Finished {
    if received.kind == StreamKind::Events {
        return Finished::ack_only(received);
    }
    dead_letter_unattempted(received, "no enabled webhook to deliver to")
}

/// One line and one count per organization and batch; the secret itself
/// is never logged.
fn report_unsignable(organization_id: Uuid, err: &SealingError, batch: &[Received]) {
    let entries = batch
        .iter()
        .filter(|r| r.entry.event.organization_id == organization_id)
        .count();
    metrics::counter!(DELIVERIES_UNSIGNABLE).increment(entries as u64);
    tracing::error!(
        %organization_id,
        entries,
        error = %err,
        "cannot open this organization's webhook signing secret; its deliveries are dead-lettered"
    );
}

/// An entry of an organization whose signing secret no configured key
/// opens: no request can be signed for it, and waiting would hold it
/// forever. It is dead-lettered without an attempt; once the key is
/// configured again, the organization replays it.
fn unsignable(received: Received) -> Finished {
    dead_letter_unattempted(received, UNSIGNABLE)
}

/// Gives up on an entry before any request was made for it.
fn dead_letter_unattempted(received: Received, reason: &str) -> Finished {
    metrics::counter!(DEAD_LETTERS).increment(1);
    let outcome = EventOutcome {
        event: received.entry.event.clone(),
        status: EventStatus::DeadLetter,
        attempts: received.entry.attempt.saturating_sub(1) as i32,
        last_error: Some(reason.to_owned()),
        delivered_at: None,
        next_retry_at: None,
    };
    Finished {
        received,
        attempt: None,
        outcome: Some(outcome),
        disable_webhook: None,
    }
}

/// Every worker moves due retries; the script makes each move happen once.
async fn move_due_retries(retries: RetryQueue, shutdown: CancellationToken) {
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
