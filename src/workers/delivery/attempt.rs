//! One delivery attempt: send, decide what follows (the retry policy), apply
//! the decision in Redis, and hand the result to the recorder.

use chrono::{DateTime, Utc};
use tokio::sync::mpsc;
use tracing::{Instrument, Span, field::Empty};

use super::{
    policy::{Decision, RetryPolicy},
    recorder::Finished,
    sender::{Outcome, Sender, Sent},
};
use crate::{
    domain::EventStatus,
    metrics::{
        DEAD_LETTERS, DELIVERIES_IN_FLIGHT, DELIVERY_DURATION, DELIVERY_END_TO_END,
        labels::{CounterLabel, DeliveryOutcome},
    },
    redis::RedisError,
    store::{AttemptRow, EventOutcome, WebhookTarget},
    streams::{Received, RetryQueue},
};

/// What every delivery task needs.
pub struct Context {
    pub sender: Sender,
    pub policy: RetryPolicy,
    pub retries: RetryQueue,
    pub finished: mpsc::Sender<Finished>,
}

/// Delivers one entry to `target` and hands the result to the recorder.
/// When the decision cannot be applied (Redis away), nothing is recorded:
/// the entry stays pending and is attempted again later.
pub async fn deliver(context: &Context, received: Received, target: &WebhookTarget) {
    let span = span_of(&received, target);
    attempt(context, received, target).instrument(span).await;
}

/// The client span of one attempt: a child of the request that accepted
/// (or replayed) the event, whichever worker, replica or retry sends it.
fn span_of(received: &Received, target: &WebhookTarget) -> Span {
    let url = reqwest::Url::parse(&target.webhook_url).ok();
    let span = tracing::info_span!(
        "webhook delivery",
        otel.name = "POST webhook",
        otel.kind = "client",
        otel.status_code = Empty,
        http.request.method = "POST",
        server.address = url.as_ref().and_then(|u| u.host_str()).unwrap_or_default(),
        server.port = url.as_ref().and_then(reqwest::Url::port_or_known_default),
        http.response.status_code = Empty,
        error.type = Empty,
        triggers.delivery.attempt = received.entry.attempt,
        event_id = %received.entry.event.id,
        organization_id = %received.entry.event.organization_id,
    );
    if let Some(trace) = &received.entry.trace {
        trace.adopt(&span);
    }
    span
}

async fn attempt(context: &Context, received: Received, target: &WebhookTarget) {
    metrics::gauge!(DELIVERIES_IN_FLIGHT).increment(1.0);
    let sent = context.sender.send(target, &received.entry.event).await;
    metrics::gauge!(DELIVERIES_IN_FLIGHT).decrement(1.0);
    metrics::histogram!(DELIVERY_DURATION).record(sent.duration.as_secs_f64());
    record_on_span(&Span::current(), &sent.outcome);

    let jitter = RetryPolicy::jitter(&mut rand::thread_rng());
    let decision = context
        .policy
        .decide(&sent.outcome, received.entry.series_try, jitter);
    if let Err(err) = apply(context, &received, &decision).await {
        tracing::error!(
            event_id = %received.entry.event.id,
            error = %err,
            "cannot store what follows a delivery attempt; its entry stays pending"
        );
        return;
    }
    count(&decision, &received, Utc::now());
    tracing::info!(
        event_id = %received.entry.event.id,
        organization_id = %received.entry.event.organization_id,
        attempt = received.entry.attempt,
        outcome = %status_after(&decision),
        "delivery attempt"
    );
    let finished = finished(received, &sent, &decision);
    let _ = context.finished.send(finished).await;
}

/// The Redis side of a decision: a retry scheduled, or a dead letter written.
async fn apply(
    context: &Context,
    received: &Received,
    decision: &Decision,
) -> Result<(), RedisError> {
    match decision {
        Decision::Delivered => Ok(()),
        Decision::Retry { after } => {
            context
                .retries
                .schedule(&received.entry.next_try(), *after)
                .await
        }
        Decision::DeadLetter { reason, .. } => {
            context.retries.dead_letter(&received.entry, reason).await
        }
    }
}

/// The response status, and an error status unless the endpoint took it.
fn record_on_span(span: &Span, outcome: &Outcome) {
    let (status, error) = match outcome {
        Outcome::Delivered { status } => (Some(*status), None),
        Outcome::Gone => (Some(410), Some("410")),
        Outcome::Failed {
            status: Some(status),
            ..
        } => (Some(*status), None),
        Outcome::Failed { status: None, .. } => (None, Some("request_failed")),
    };
    if let Some(status) = status {
        span.record("http.response.status_code", status);
    }
    if !matches!(outcome, Outcome::Delivered { .. }) {
        span.record("otel.status_code", "ERROR");
        let kind = match (error, status) {
            (Some(kind), _) => kind.to_owned(),
            (None, Some(status)) => status.to_string(),
            (None, None) => "request_failed".to_owned(),
        };
        span.record("error.type", kind);
    }
}

fn count(decision: &Decision, received: &Received, now: DateTime<Utc>) {
    let outcome = match decision {
        Decision::Delivered => {
            let end_to_end = (now - received.entry.event.created_at)
                .num_milliseconds()
                .max(0) as f64
                / 1000.0;
            metrics::histogram!(DELIVERY_END_TO_END).record(end_to_end);
            DeliveryOutcome::Delivered
        }
        Decision::Retry { .. } => DeliveryOutcome::Retry,
        Decision::DeadLetter {
            disable_webhook: true,
            ..
        } => DeliveryOutcome::Gone,
        Decision::DeadLetter { .. } => DeliveryOutcome::DeadLetter,
    };
    outcome.count();
    if matches!(decision, Decision::DeadLetter { .. }) {
        metrics::counter!(DEAD_LETTERS).increment(1);
    }
}

fn status_after(decision: &Decision) -> EventStatus {
    match decision {
        Decision::Delivered => EventStatus::Delivered,
        Decision::Retry { .. } => EventStatus::Failed,
        Decision::DeadLetter { .. } => EventStatus::DeadLetter,
    }
}

/// The attempt and the event's new state, as the recorder stores them.
fn finished(received: Received, sent: &Sent, decision: &Decision) -> Finished {
    let entry = &received.entry;
    let event = &entry.event;
    let decided_at =
        sent.started_at + chrono::Duration::from_std(sent.duration).unwrap_or_default();
    let last_error = match (decision, &sent.outcome) {
        (Decision::Delivered, _) => None,
        (Decision::DeadLetter { reason, .. }, _) => Some(reason.clone()),
        (Decision::Retry { .. }, Outcome::Failed { error, .. }) => Some(error.clone()),
        (Decision::Retry { .. }, _) => None,
    };
    let next_retry_at = match decision {
        Decision::Retry { after } => {
            Some(decided_at + chrono::Duration::from_std(*after).unwrap_or_default())
        }
        _ => None,
    };
    let response_status = match &sent.outcome {
        Outcome::Delivered { status } => Some(i32::from(*status)),
        Outcome::Gone => Some(410),
        Outcome::Failed { status, .. } => status.map(i32::from),
    };
    let attempt = AttemptRow {
        event_id: event.id,
        attempt: entry.attempt as i32,
        organization_id: event.organization_id,
        attempted_at: sent.started_at,
        duration_ms: sent.duration.as_millis().min(i32::MAX as u128) as i32,
        response_status,
        error: last_error.clone(),
        next_retry_at,
    };
    let outcome = EventOutcome {
        event: event.clone(),
        status: status_after(decision),
        attempts: entry.attempt as i32,
        last_error,
        delivered_at: matches!(decision, Decision::Delivered).then_some(decided_at),
        next_retry_at,
    };
    let disable_webhook = match decision {
        Decision::DeadLetter {
            reason,
            disable_webhook: true,
        } => Some((event.organization_id, reason.clone())),
        _ => None,
    };
    Finished {
        received,
        attempt: Some(attempt),
        outcome: Some(outcome),
        disable_webhook,
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use uuid::Uuid;

    use super::*;
    use crate::{
        domain::{EventRecord, mint_event_id},
        streams::{StreamEntry, StreamKind},
    };

    fn received(attempt: u32) -> Received {
        let (id, created_at) = mint_event_id();
        let event = EventRecord {
            id,
            organization_id: Uuid::now_v7(),
            event_type: "t".into(),
            dedup_id: None,
            payload: "{}".into(),
            created_at,
        };
        Received {
            shard: 0,
            stream: "s".into(),
            kind: StreamKind::Redeliver,
            entry_id: "1-0".into(),
            entry: StreamEntry {
                attempt,
                ..StreamEntry::new(event)
            },
        }
    }

    fn sent(outcome: Outcome) -> Sent {
        Sent {
            outcome,
            started_at: Utc::now(),
            duration: Duration::from_millis(120),
        }
    }

    #[test]
    fn a_retry_records_the_failure_and_when_it_comes_back() {
        let sent = sent(Outcome::Failed {
            status: Some(503),
            error: "HTTP 503".into(),
            retry_after: None,
        });
        let after = Duration::from_secs(300);
        let done = finished(received(2), &sent, &Decision::Retry { after });
        let attempt = done.attempt.expect("attempt recorded");
        let outcome = done.outcome.expect("outcome recorded");
        assert_eq!(attempt.attempt, 2);
        assert_eq!(attempt.response_status, Some(503));
        assert_eq!(attempt.duration_ms, 120);
        assert_eq!(outcome.status, EventStatus::Failed);
        assert_eq!(outcome.attempts, 2);
        assert_eq!(outcome.last_error.as_deref(), Some("HTTP 503"));
        let due = outcome.next_retry_at.expect("next retry") - sent.started_at;
        assert_eq!(due.num_milliseconds(), 300_120);
        assert!(done.disable_webhook.is_none());
    }

    #[test]
    fn a_gone_endpoint_is_disabled_and_a_success_clears_the_error() {
        let gone = Decision::DeadLetter {
            reason: "gone".into(),
            disable_webhook: true,
        };
        let done = finished(received(1), &sent(Outcome::Gone), &gone);
        let org = done.received.entry.event.organization_id;
        assert_eq!(done.disable_webhook, Some((org, "gone".into())));
        assert_eq!(done.outcome.unwrap().status, EventStatus::DeadLetter);

        let delivered = sent(Outcome::Delivered { status: 204 });
        let done = finished(received(3), &delivered, &Decision::Delivered);
        let outcome = done.outcome.unwrap();
        assert_eq!(outcome.status, EventStatus::Delivered);
        assert!(outcome.last_error.is_none() && outcome.next_retry_at.is_none());
        assert!(outcome.delivered_at.is_some());
        assert_eq!(done.attempt.unwrap().response_status, Some(204));
    }
}
