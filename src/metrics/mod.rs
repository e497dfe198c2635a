//! Prometheus metrics: names in one place, and the process-wide recorder.
//!
//! Every metric exists from the first scrape: counters start at zero (for
//! every value of a label whose values are known), unlabelled gauges are
//! set, histograms are described; those in `OBSERVED` appear once a value is
//! known. No metric has a per-organization label.

use std::{sync::OnceLock, time::Duration};

use fred::interfaces::{ClientLike, MetricsInterface};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use metrics_process::Collector;

use crate::store::Store;

mod catalogue;
pub mod labels;

#[cfg(test)]
use catalogue::{CATALOGUE, Kind};
use catalogue::{describe, start_at_zero};

/// The commit the binary was built from (`build.rs`).
pub const COMMIT: &str = env!("TRIGGERS_GIT_COMMIT");

pub const HTTP_REQUESTS: &str = "triggers_http_requests_total";
pub const HTTP_DURATION: &str = "triggers_http_request_duration_seconds";
pub const EVENTS_ACCEPTED: &str = "triggers_events_accepted_total";
pub const EVENTS_REJECTED: &str = "triggers_events_rejected_total";
pub const EVENTS_ARCHIVED: &str = "triggers_events_archived_total";
pub const ARCHIVE_LAG: &str = "triggers_archive_lag_seconds";
pub const ARCHIVE_ERRORS: &str = "triggers_archive_errors_total";
pub const ARCHIVE_PARTITIONS_AHEAD: &str = "triggers_archive_partitions_ahead";
pub const STREAM_LENGTH: &str = "triggers_stream_length";
pub const STREAM_PENDING: &str = "triggers_stream_pending";
pub const AUTH_LOOKUPS: &str = "triggers_auth_lookups_total";
pub const DELIVERIES: &str = "triggers_deliveries_total";
pub const DELIVERY_DURATION: &str = "triggers_delivery_duration_seconds";
pub const DELIVERY_END_TO_END: &str = "triggers_delivery_end_to_end_seconds";
pub const DELIVERIES_IN_FLIGHT: &str = "triggers_deliveries_in_flight";
pub const DELIVERIES_DEFERRED: &str = "triggers_deliveries_deferred_total";
pub const DELIVERIES_UNSIGNABLE: &str = "triggers_deliveries_unsignable_total";
pub const RETRIES_SCHEDULED: &str = "triggers_retries_scheduled";
pub const DEAD_LETTERS: &str = "triggers_dead_letters_total";
pub const BUILD_INFO: &str = "triggers_build_info";
pub const STREAM_LAG: &str = "triggers_stream_lag";
pub const STREAM_OLDEST_PENDING: &str = "triggers_stream_oldest_pending_seconds";
pub const DEAD_LETTER_STREAM_LENGTH: &str = "triggers_dead_letter_stream_length";
pub const DB_POOL_CONNECTIONS: &str = "triggers_db_pool_connections";
pub const DB_POOL_MAX_CONNECTIONS: &str = "triggers_db_pool_max_connections";
pub const REDIS_POOL_CONNECTIONS: &str = "triggers_redis_pool_connections";
pub const REDIS_COMMANDS_QUEUED: &str = "triggers_redis_commands_queued";
// Written by the `metrics-process` collector, under the names every
// Prometheus client library uses.
pub const PROCESS_CPU: &str = "process_cpu_seconds_total";
pub const PROCESS_RSS: &str = "process_resident_memory_bytes";
pub const PROCESS_VIRTUAL: &str = "process_virtual_memory_bytes";
pub const PROCESS_VIRTUAL_MAX: &str = "process_virtual_memory_max_bytes";
pub const PROCESS_OPEN_FDS: &str = "process_open_fds";
pub const PROCESS_MAX_FDS: &str = "process_max_fds";
pub const PROCESS_START_TIME: &str = "process_start_time_seconds";
pub const PROCESS_THREADS: &str = "process_threads";
pub const AUTH_KEY_HASHES: &str = "triggers_auth_key_hashes_total";
pub const AUTH_REFUSED: &str = "triggers_auth_refused_total";
pub const HTTP_CONNECTIONS_OPEN: &str = "triggers_http_connections_open";
pub const HTTP_CONNECTIONS_REFUSED: &str = "triggers_http_connections_refused_total";

const LATENCY_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
    60.0, 300.0,
];

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
static PROCESS: OnceLock<Collector> = OnceLock::new();

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
            start_at_zero();
            sample_process();
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

/// CPU, memory, threads and file descriptors of this process, now: for
/// each scrape.
pub fn sample_process() {
    PROCESS.get_or_init(|| Collector::new("")).collect();
}

/// How saturated this process's Postgres and Redis pools are, now: for
/// each scrape (reading them costs no I/O).
pub fn sample_pools(store: &Store, redis: &fred::prelude::Pool) {
    let db = store.pool_usage();
    let used = db.open.saturating_sub(db.idle);
    metrics::gauge!(DB_POOL_CONNECTIONS, "state" => "idle").set(f64::from(db.idle));
    metrics::gauge!(DB_POOL_CONNECTIONS, "state" => "used").set(f64::from(used));
    metrics::gauge!(DB_POOL_MAX_CONNECTIONS).set(f64::from(db.max));

    let clients = redis.clients();
    let connected = clients.iter().filter(|c| c.is_connected()).count();
    let queued: usize = clients.iter().map(|c| c.command_queue_len()).sum();
    metrics::gauge!(REDIS_POOL_CONNECTIONS, "state" => "connected").set(connected as f64);
    metrics::gauge!(REDIS_POOL_CONNECTIONS, "state" => "disconnected")
        .set(clients.len().saturating_sub(connected) as f64);
    metrics::gauge!(REDIS_COMMANDS_QUEUED).set(queued as f64);
}

/// Histograms get buckets (a summary cannot be aggregated across pods).
fn builder() -> PrometheusBuilder {
    PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), LATENCY_BUCKETS)
        .unwrap_or_else(|_| PrometheusBuilder::new())
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

    #[test]
    fn every_metric_exists_before_anything_happened() {
        let recorder = builder().build_recorder();
        let handle = recorder.handle();
        metrics::with_local_recorder(&recorder, || {
            describe();
            start_at_zero();
        });
        let scrape = handle.render();
        assert!(
            scrape.contains("triggers_events_accepted_total 0"),
            "{scrape}"
        );
        assert!(scrape.contains("triggers_archive_errors_total 0"));
        assert!(scrape.contains("triggers_deliveries_deferred_total 0"));
        assert!(scrape.contains("triggers_deliveries_unsignable_total 0"));
        assert!(scrape.contains(r#"triggers_events_rejected_total{reason="rate_limited"} 0"#));
        assert!(scrape.contains(r#"triggers_deliveries_total{outcome="gone"} 0"#));
        assert!(scrape.contains("triggers_deliveries_in_flight 0"));
        let build = format!(
            r#"triggers_build_info{{version="{}",commit="{COMMIT}"}} 1"#,
            env!("CARGO_PKG_VERSION")
        );
        assert!(scrape.contains(&build), "{scrape}");
    }

    #[test]
    fn what_the_process_collector_writes_is_catalogued() {
        let recorder = builder().build_recorder();
        let handle = recorder.handle();
        metrics::with_local_recorder(&recorder, || {
            describe();
            Collector::new("").collect();
        });
        let scrape = handle.render();
        let names: Vec<&str> = scrape
            .lines()
            .filter(|l| !l.starts_with('#') && !l.is_empty())
            .filter_map(|l| l.split([' ', '{']).next())
            .collect();
        assert!(names.contains(&PROCESS_CPU) && names.contains(&PROCESS_RSS));
        for name in names {
            assert!(
                CATALOGUE.iter().any(|(n, ..)| *n == name),
                "{name} is not in the catalogue"
            );
        }
    }
}
