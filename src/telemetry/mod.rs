//! Logs and traces.
//!
//! Logs are JSON lines through `tracing`, filtered by `RUST_LOG`. Traces are
//! exported over OTLP (HTTP/protobuf) only when an OTLP endpoint is set
//! ([`export::wanted`]); they have a filter of their own, so `RUST_LOG=warn`
//! quiets the logs without losing a request or delivery span. With traces
//! off, no OpenTelemetry layer is installed and nothing about them runs.
//!
//! Spans exported: the server span of every request but the probes
//! (`/health`, `/ready`, `/metrics`); a delivery span per webhook attempt,
//! a child of the request that accepted the event; an archive span per
//! batch, linked to the request of each event in it. The trace context
//! travels with the event in its stream entry ([`TraceContext`]).

mod context;
pub mod export;
mod log_line;

use std::{
    sync::atomic::{AtomicBool, Ordering},
    time::Duration,
};

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing::level_filters::LevelFilter;
use tracing_subscriber::{EnvFilter, Layer, filter::Targets, fmt, prelude::*};

pub use context::{TraceContext, continue_from_headers};

/// The spans exported: this crate's, at info and above, whatever `RUST_LOG` says.
const TRACED_TARGET: &str = "triggers_api";
/// Without `RUST_LOG`: our info, and only the warnings of the libraries
/// (the OpenTelemetry SDK warns there when an export fails).
const DEFAULT_LOG_FILTER: &str = "info,sqlx=warn,fred=warn,opentelemetry=warn,opentelemetry_sdk=warn,opentelemetry_otlp=warn,opentelemetry_http=warn";
/// How long shutdown waits for the last spans to reach the collector.
const FLUSH_TIMEOUT: Duration = Duration::from_secs(5);

static TRACING_ON: AtomicBool = AtomicBool::new(false);

/// Whether spans are exported; everything trace-related is skipped when not.
pub fn tracing_on() -> bool {
    TRACING_ON.load(Ordering::Relaxed)
}

/// What must outlive the service: the tracer provider, to flush at the end.
#[must_use = "call shutdown() so the last spans are exported"]
pub struct Telemetry {
    provider: Option<SdkTracerProvider>,
}

/// Installs logging, and trace export when configured, for a process of
/// `role`. Call from inside the Tokio runtime: the span exporter runs on it.
pub fn init(role: &str) -> Telemetry {
    let logs = fmt::layer()
        .json()
        .event_format(log_line::WithTraceIds(
            fmt::format()
                .json()
                .flatten_event(true)
                .with_current_span(true),
        ))
        .with_filter(
            EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| EnvFilter::new(DEFAULT_LOG_FILTER)),
        );
    let wanted = export::wanted(|name| std::env::var(name).ok());
    let (provider, failure) = match wanted.then(|| export::provider(role)) {
        Some(Ok(provider)) => (Some(provider), None),
        Some(Err(err)) => (None, Some(err)),
        None => (None, None),
    };
    let traces = provider.as_ref().map(|provider| {
        tracing_opentelemetry::layer()
            .with_tracer(provider.tracer("triggers-api"))
            .with_filter(Targets::new().with_target(TRACED_TARGET, LevelFilter::INFO))
    });
    let installed = tracing_subscriber::registry()
        .with(logs)
        .with(traces)
        .try_init()
        .is_ok();
    TRACING_ON.store(installed && provider.is_some(), Ordering::Relaxed);
    match (&provider, failure) {
        (Some(_), _) => tracing::info!("exporting traces over OTLP"),
        (None, Some(err)) => tracing::error!(error = %err, "traces off"),
        (None, None) => tracing::debug!("traces off: no OTLP endpoint set"),
    }
    Telemetry { provider }
}

impl Telemetry {
    /// Exports the spans still queued and stops the exporter.
    pub async fn shutdown(self) {
        let Some(provider) = self.provider else {
            return;
        };
        // The provider blocks until its exporter task (on this runtime) has
        // flushed; block a thread meant for it, not a runtime worker.
        let flushed =
            tokio::task::spawn_blocking(move || provider.shutdown_with_timeout(FLUSH_TIMEOUT));
        match tokio::time::timeout(FLUSH_TIMEOUT + Duration::from_secs(1), flushed).await {
            Ok(Ok(Ok(()))) => {}
            Ok(Ok(Err(err))) => tracing::warn!(error = %err, "could not flush traces"),
            Ok(Err(err)) => tracing::warn!(error = %err, "could not flush traces"),
            Err(_) => tracing::warn!("flushing traces timed out"),
        }
    }
}
