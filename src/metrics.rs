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
    (
        ARCHIVE_PARTITIONS_AHEAD,
        Kind::Gauge,
        "Months after the current one that every archive table has a partition for (0: next month's events would find none)",
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
        DELIVERIES_UNSIGNABLE,
        Kind::Counter,
        "Deliveries dead-lettered without an attempt because their organization's webhook signing secret cannot be opened (sealed under a key not in TRIGGERS_SECRET_KEYS)",
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
        BUILD_INFO,
        Kind::Gauge,
        "Always 1, labelled with the version and the commit of the running binary",
    ),
    (
        STREAM_LAG,
        Kind::Gauge,
        "Entries of a stream not yet delivered to a consumer group (XINFO GROUPS lag), by stream and group",
    ),
    (
        STREAM_OLDEST_PENDING,
        Kind::Gauge,
        "Age of the oldest entry a consumer group read and has not acknowledged (0 when none), by stream and group",
    ),
    (
        DEAD_LETTER_STREAM_LENGTH,
        Kind::Gauge,
        "Entries in each shard's dead-letter stream",
    ),
    (
        DB_POOL_CONNECTIONS,
        Kind::Gauge,
        "Postgres connections of this process, by state (idle, used)",
    ),
    (
        DB_POOL_MAX_CONNECTIONS,
        Kind::Gauge,
        "Most Postgres connections this process opens",
    ),
    (
        REDIS_POOL_CONNECTIONS,
        Kind::Gauge,
        "Connections of this process's Redis pool, by state (connected, disconnected)",
    ),
    (
        REDIS_COMMANDS_QUEUED,
        Kind::Gauge,
        "Redis commands of this process's pool buffered and not yet written to a connection",
    ),
    (
        PROCESS_CPU,
        Kind::Counter,
        "User and system CPU time of this process, in whole seconds",
    ),
    (PROCESS_RSS, Kind::Gauge, "Resident memory of this process"),
    (
        PROCESS_VIRTUAL,
        Kind::Gauge,
        "Virtual memory of this process",
    ),
    (
        PROCESS_VIRTUAL_MAX,
        Kind::Gauge,
        "Most virtual memory this process may have",
    ),
    (PROCESS_OPEN_FDS, Kind::Gauge, "Open file descriptors"),
    (
        PROCESS_MAX_FDS,
        Kind::Gauge,
        "Most file descriptors this process may open",
    ),
    (
        PROCESS_START_TIME,
        Kind::Gauge,
        "When this process started, in seconds since the Unix epoch",
    ),
    (
        PROCESS_THREADS,
        Kind::Gauge,
        "Operating-system threads of this process",
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

/// Labels of counters whose values are all known up front: each series
/// starts at zero, so `rate()` and `increase()` see its first increment.
const KNOWN_LABELS: &[(&str, &str, &[&str])] = &[
    (
        EVENTS_REJECTED,
        "reason",
        &["invalid", "too_large", "duplicate", "rate_limited"],
    ),
    (AUTH_LOOKUPS, "source", &["memory", "redis", "database"]),
    (AUTH_KEY_HASHES, "purpose", &["verify", "generate"]),
    (
        AUTH_REFUSED,
        "reason",
        &["busy", "prefix_failures", "address_failures"],
    ),
    (
        DELIVERIES,
        "outcome",
        &["delivered", "retry", "dead_letter", "gone"],
    ),
];

/// Metrics whose labels are only known at run time (routes and statuses,
/// streams, shards, states), or that a sampler sets: they appear when first
/// observed, not at zero. The partitions gauge is among them because only a
/// process that runs retention passes knows its value: a 0 from every api
/// replica would read as "no partition ahead" and fire the alert forever.
const OBSERVED: &[&str] = &[
    HTTP_REQUESTS,
    ARCHIVE_PARTITIONS_AHEAD,
    STREAM_LENGTH,
    STREAM_PENDING,
    STREAM_LAG,
    STREAM_OLDEST_PENDING,
    RETRIES_SCHEDULED,
    DEAD_LETTER_STREAM_LENGTH,
    DB_POOL_CONNECTIONS,
    DB_POOL_MAX_CONNECTIONS,
    REDIS_POOL_CONNECTIONS,
    REDIS_COMMANDS_QUEUED,
    BUILD_INFO,
    PROCESS_CPU,
    PROCESS_RSS,
    PROCESS_VIRTUAL,
    PROCESS_VIRTUAL_MAX,
    PROCESS_OPEN_FDS,
    PROCESS_MAX_FDS,
    PROCESS_START_TIME,
    PROCESS_THREADS,
];

/// Registers every counter at zero and every unlabelled gauge at its
/// initial value, and the build's identity.
fn start_at_zero() {
    for &(name, kind, _) in CATALOGUE {
        let labelled = KNOWN_LABELS.iter().find(|(n, ..)| *n == name);
        match (kind, labelled) {
            (Kind::Counter, Some(&(_, label, values))) => {
                for &value in values {
                    metrics::counter!(name, label => value).increment(0);
                }
            }
            _ if OBSERVED.contains(&name) => {}
            (Kind::Counter, None) => metrics::counter!(name).increment(0),
            (Kind::Gauge, _) => metrics::gauge!(name).increment(0.0),
            (Kind::Histogram, _) => {}
        }
    }
    metrics::gauge!(
        BUILD_INFO,
        "version" => env!("CARGO_PKG_VERSION"),
        "commit" => COMMIT
    )
    .set(1.0);
}

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
