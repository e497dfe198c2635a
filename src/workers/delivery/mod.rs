//! Webhook delivery: every accepted event of an organization with a webhook
//! is POSTed to it, signed, and retried on a schedule until it succeeds or
//! is dead-lettered.
//!
//! # Flow
//!
//! Delivery workers are the `delivery` consumer group on every shard's event
//! stream and on its redelivery stream (due retries and replays). For each
//! entry a worker looks up the organization's webhook (one query per batch)
//! and, if there is one, sends the request on a task of its own. The task's
//! outcome goes to the recorder, which stores attempts and event states in
//! batches and only then acknowledges the entries.
//!
//! * 2xx: delivered.
//! * 410 Gone: no more retries; the event is dead-lettered and the webhook
//!   disabled until the organization configures one again (in the
//!   transaction that stores the outcome: if the disable fails, the entry
//!   stays pending and is attempted again).
//! * Anything else (another status, a timeout, a connection error): retried
//!   after the next delay of `TRIGGERS_RETRY_SCHEDULE` (jittered, lengthened
//!   by a `Retry-After` on 429/503). A retry waits in the shard's retry set
//!   (a sorted set scored by due time); a mover, run by every worker, shifts
//!   due retries to the redelivery stream atomically. After the last delay
//!   the event is dead-lettered: its own stream, and status `dead_letter`.
//!
//! An organization whose signing secret no configured key opens (sealed
//! under a key since dropped from `TRIGGERS_SECRET_KEYS`) cannot be signed
//! for: its entries are dead-lettered without an attempt, logged and counted
//! (`triggers_deliveries_unsignable_total`), and replayable once the key is
//! back. The lookup fails per organization, so no other is held up; only an
//! unreachable Postgres is waited out.
//!
//! # Fairness and back-pressure
//!
//! A worker keeps at most `TRIGGERS_DELIVERY_CONCURRENCY` entries in memory
//! (in flight or waiting), and reads no more than it has room for, so a slow
//! fleet of endpoints stops the reading instead of filling memory. One
//! organization has at most `TRIGGERS_DELIVERY_PER_ORG` requests in flight
//! and as many entries waiting behind them; a further entry of that
//! organization goes back to the retry set for a second (not counted as an
//! attempt), so one organization's slow or dead endpoint never holds up
//! another's deliveries.
//!
//! # Crashes
//!
//! An entry read by a worker that dies stays pending and is claimed by
//! another worker once it has been idle longer than both the visibility
//! timeout and the webhook timeout (so a slow request in flight is not
//! claimed from a live worker). Delivery is therefore at least once;
//! receivers deduplicate on `webhook-id`, the event id.
//!
//! # Where things are
//!
//! `worker` reads and dispatches; `slots` holds the per-organization
//! limits; `attempt` sends one entry and applies what `policy` (pure, no
//! I/O) decides; `recorder` stores outcomes and acknowledges; `sender`
//! makes the signed request.

mod attempt;
mod policy;
mod recorder;
mod sender;
mod slots;
mod worker;

pub use policy::{Decision, RetryPolicy};
pub use sender::{Outcome, Sender};
pub use worker::{DeliveryWorker, GROUP, Limits};
