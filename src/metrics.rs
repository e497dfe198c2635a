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
            let builder = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), LATENCY_BUCKETS)
                .unwrap_or_else(|_| PrometheusBuilder::new());
            let recorder = builder.build_recorder();
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

fn describe() {
    use metrics::{describe_counter, describe_gauge, describe_histogram};
    describe_counter!(HTTP_REQUESTS, "HTTP requests by method, route and status");
    describe_histogram!(HTTP_DURATION, "HTTP request latency by method and route");
    describe_counter!(EVENTS_ACCEPTED, "Events accepted (answered 202)");
    describe_counter!(EVENTS_REJECTED, "Events refused, by reason");
    describe_counter!(
        EVENTS_ARCHIVED,
        "Events written to Postgres by the archiver"
    );
    describe_histogram!(ARCHIVE_LAG, "Time from acceptance to archive in Postgres");
    describe_counter!(
        ARCHIVE_ERRORS,
        "Archiver batches that failed and will be retried"
    );
    describe_gauge!(STREAM_LENGTH, "Entries in each shard stream");
    describe_gauge!(
        STREAM_PENDING,
        "Entries read by the archiver group but not acknowledged"
    );
    describe_counter!(
        AUTH_LOOKUPS,
        "API key lookups by the cache level that answered"
    );
}
