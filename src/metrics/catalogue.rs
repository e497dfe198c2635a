//! Every metric with its kind and HELP text, and what exists from the
//! first scrape.

use super::*;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Kind {
    Counter,
    Gauge,
    Histogram,
}

/// Every metric with its kind and HELP text, in one place.
pub(super) const CATALOGUE: &[(&str, Kind, &str)] = &[
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
pub(super) fn start_at_zero() {
    labels::start_at_zero();
    for &(name, kind, _) in CATALOGUE {
        if labels::is_labelled(name) || OBSERVED.contains(&name) {
            continue;
        }
        match kind {
            Kind::Counter => metrics::counter!(name).increment(0),
            Kind::Gauge => metrics::gauge!(name).increment(0.0),
            Kind::Histogram => {}
        }
    }
    metrics::gauge!(
        BUILD_INFO,
        "version" => env!("CARGO_PKG_VERSION"),
        "commit" => COMMIT
    )
    .set(1.0);
}

pub(super) fn describe() {
    for &(name, kind, help) in CATALOGUE {
        match kind {
            Kind::Counter => metrics::describe_counter!(name, help),
            Kind::Gauge => metrics::describe_gauge!(name, help),
            Kind::Histogram => metrics::describe_histogram!(name, metrics::Unit::Seconds, help),
        }
    }
}
