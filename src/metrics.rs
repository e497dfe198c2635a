//! Prometheus metrics: names in one place, and the process-wide recorder.

use std::{sync::OnceLock, time::Duration};

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

pub const HTTP_REQUESTS: &str = "triggers_http_requests_total";
pub const HTTP_DURATION: &str = "triggers_http_request_duration_seconds";
pub const EVENTS_ACCEPTED: &str = "triggers_events_accepted_total";
pub const EVENTS_REJECTED: &str = "triggers_events_rejected_total";
pub const EVENTS_ARCHIVED: &str = "triggers_events_archived_total";
pub const ARCHIVE_LAG: &str = "triggers_archive_lag_seconds";
pub const ARCHIVE_ERRORS: &str = "triggers_archive_errors_total";
pub const STREAM_LENGTH: &str = "triggers_stream_length";
pub const STREAM_PENDING: &str = "triggers_stream_pending";
pub const AUTH_LOOKUPS: &str = "triggers_auth_lookups_total";
pub const DELIVERIES: &str = "triggers_deliveries_total";
pub const DELIVERY_DURATION: &str = "triggers_delivery_duration_seconds";
pub const DELIVERY_END_TO_END: &str = "triggers_delivery_end_to_end_seconds";
pub const DELIVERIES_IN_FLIGHT: &str = "triggers_deliveries_in_flight";
pub const DELIVERIES_DEFERRED: &str = "triggers_deliveries_deferred_total";
pub const RETRIES_SCHEDULED: &str = "triggers_retries_scheduled";
pub const DEAD_LETTERS: &str = "triggers_dead_letters_total";
pub const AUTH_KEY_HASHES: &str = "triggers_auth_key_hashes_total";
pub const AUTH_REFUSED: &str = "triggers_auth_refused_total";
pub const HTTP_CONNECTIONS_OPEN: &str = "triggers_http_connections_open";
pub const HTTP_CONNECTIONS_REFUSED: &str = "triggers_http_connections_refused_total";

const LATENCY_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
    60.0, 300.0,
];

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// The process's recorder, installed on first use. Several app instances in
/// one process (tests) share it, as they would share a scrape target.
pub fn handle() -> PrometheusHandle {
    HANDLE
        .get_or_init(|| {
            let recorder = builder().build_recorder();
            let handle = recorder.handle();
            if metrics::set_global_recorder(recorder).is_err() {
                tracing::warn!("a metrics recorder was already installed");
            }
            describe();
            let upkeep = handle.clone();
            std::thread::spawn(move || {
                loop {
                    std::thread::sleep(Duration::from_secs(5));
                    upkeep.run_upkeep();
                }
            });
            handle
        })
        .clone()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Counter,
    Gauge,
    Histogram,
}

/// Every metric with its kind and HELP text, in one place.
const CATALOGUE: &[(&str, Kind, &str)] = &[
    (
        HTTP_REQUESTS,
        Kind::Counter,
        "HTTP requests by method, route and status",
    ),
    (
        HTTP_DURATION,
        Kind::Histogram,
        "HTTP request latency by method and route",
    ),
    (
        EVENTS_ACCEPTED,
        Kind::Counter,
        "Events accepted (answered 202)",
    ),
    (
        EVENTS_REJECTED,
        Kind::Counter,
        "Events refused, by reason (invalid, too_large, duplicate, rate_limited)",
    ),
    (
        EVENTS_ARCHIVED,
        Kind::Counter,
        "Events written to Postgres by the archiver",
    ),
    (
        ARCHIVE_LAG,
        Kind::Histogram,
        "Time from acceptance to archive in Postgres",
    ),
    (
        ARCHIVE_ERRORS,
        Kind::Counter,
        "Archive batches or events that failed and stay pending for a retry",
    ),
    (STREAM_LENGTH, Kind::Gauge, "Entries in each stream"),
    (
        STREAM_PENDING,
        Kind::Gauge,
        "Entries read by a consumer group but not acknowledged, by stream and group",
    ),
    (
        AUTH_LOOKUPS,
        Kind::Counter,
        "API key lookups by the level that answered (memory, redis, database)",
    ),
    (
        DELIVERIES,
        Kind::Counter,
        "Webhook delivery attempts by outcome (delivered, retry, dead_letter, gone)",
    ),
    (
        DELIVERY_DURATION,
        Kind::Histogram,
        "Duration of one webhook request",
    ),
    (
        DELIVERY_END_TO_END,
        Kind::Histogram,
        "Time from acceptance to successful delivery",
    ),
    (
        DELIVERIES_IN_FLIGHT,
        Kind::Gauge,
        "Webhook requests in flight",
    ),
    (
        DELIVERIES_DEFERRED,
        Kind::Counter,
        "Deliveries put back for a second because their organization had no free slot",
    ),
    (
        RETRIES_SCHEDULED,
        Kind::Gauge,
        "Deliveries waiting in the retry sets",
    ),
    (
        DEAD_LETTERS,
        Kind::Counter,
        "Events dead-lettered after their last attempt",
    ),
    (
        AUTH_KEY_HASHES,
        Kind::Counter,
        "argon2 computations of API keys, by purpose (verify, generate)",
    ),
    (
        AUTH_REFUSED,
        Kind::Counter,
        "Key checks refused without hashing, by reason (busy, prefix_failures, address_failures)",
    ),
    (
        HTTP_CONNECTIONS_OPEN,
        Kind::Gauge,
        "Client connections open in this process",
    ),
    (
        HTTP_CONNECTIONS_REFUSED,
        Kind::Counter,
        "Client connections closed on accept because the connection limit was reached",
    ),
];

/// Histograms get buckets (a summary cannot be aggregated across pods).
fn builder() -> PrometheusBuilder {
    PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), LATENCY_BUCKETS)
        .unwrap_or_else(|_| PrometheusBuilder::new())
}

fn describe() {
    for &(name, kind, help) in CATALOGUE {
        match kind {
            Kind::Counter => metrics::describe_counter!(name, help),
            Kind::Gauge => metrics::describe_gauge!(name, help),
            Kind::Histogram => metrics::describe_histogram!(name, metrics::Unit::Seconds, help),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_catalogued_metric_is_scraped_with_its_help_and_type() {
        let recorder = builder().build_recorder();
        let handle = recorder.handle();
        metrics::with_local_recorder(&recorder, || {
            describe();
            for &(name, kind, _) in CATALOGUE {
                match kind {
                    Kind::Counter => metrics::counter!(name).increment(1),
                    Kind::Gauge => metrics::gauge!(name).set(1.0),
                    Kind::Histogram => metrics::histogram!(name).record(0.1),
                }
            }
        });
        let scrape = handle.render();
        for &(name, kind, help) in CATALOGUE {
            assert!(
                scrape.contains(&format!("# HELP {name} {help}")),
                "{name} has no HELP line:\n{scrape}"
            );
            let kind = match kind {
                Kind::Counter => "counter",
                Kind::Gauge => "gauge",
                Kind::Histogram => "histogram",
            };
            assert!(
                scrape.contains(&format!("# TYPE {name} {kind}")),
                "{name} is not a {kind}"
            );
        }
    }
}
