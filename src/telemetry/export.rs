//! The OTLP trace pipeline: on only when an OTLP endpoint is configured,
//! built from the standard `OTEL_*` variables.

use opentelemetry::KeyValue;
use opentelemetry_otlp::{Protocol, SpanExporter, WithExportConfig};
use opentelemetry_sdk::{
    Resource,
    resource::{EnvResourceDetector, TelemetryResourceDetector},
    runtime,
    trace::{SdkTracerProvider, span_processor_with_async_runtime::BatchSpanProcessor},
};

/// Links beyond this are dropped from a span. An archive batch links every
/// event it archives; the default (128) would cut most of a full batch.
const MAX_LINKS_PER_SPAN: u32 = 1_000;

#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error("cannot build the OTLP exporter: {0}")]
    Exporter(#[from] opentelemetry_otlp::ExporterBuildError),
}

/// Whether traces are exported: an OTLP endpoint is set, and neither
/// `OTEL_SDK_DISABLED` nor `OTEL_TRACES_EXPORTER=none` turns them off.
/// `var` reads the environment (a parameter so tests need not change it).
pub fn wanted(var: impl Fn(&str) -> Option<String>) -> bool {
    let set = |name: &str| var(name).is_some_and(|v| !v.trim().is_empty());
    let endpoint = set("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") || set("OTEL_EXPORTER_OTLP_ENDPOINT");
    let disabled = var("OTEL_SDK_DISABLED").is_some_and(|v| v.trim().eq_ignore_ascii_case("true"))
        || var("OTEL_TRACES_EXPORTER").is_some_and(|v| v.trim().eq_ignore_ascii_case("none"));
    endpoint && !disabled
}

/// The process's tracer provider: OTLP over HTTP/protobuf, batched by a task
/// on the current Tokio runtime (the async HTTP client needs one; a batch
/// thread outside it would fail to export), sampled as `OTEL_TRACES_SAMPLER`
/// says. Must be called from inside the runtime.
pub fn provider(role: &str) -> Result<SdkTracerProvider, ExportError> {
    let exporter = SpanExporter::builder()
        .with_http()
        .with_protocol(Protocol::HttpBinary)
        .build()?;
    let processor = BatchSpanProcessor::builder(exporter, runtime::Tokio).build();
    Ok(SdkTracerProvider::builder()
        .with_span_processor(processor)
        .with_resource(resource(role))
        .with_max_links_per_span(MAX_LINKS_PER_SPAN)
        .build())
}

/// This machine's (or pod's) name: `HOSTNAME`, else `/etc/hostname`.
pub fn host_name() -> Option<String> {
    std::env::var("HOSTNAME")
        .ok()
        .filter(|h| !h.is_empty())
        .or_else(|| {
            std::fs::read_to_string("/etc/hostname")
                .ok()
                .map(|h| h.trim().to_owned())
                .filter(|h| !h.is_empty())
        })
}

/// Service, version, host or pod and role; `OTEL_RESOURCE_ATTRIBUTES` and
/// `OTEL_SERVICE_NAME` override them, in that order.
fn resource(role: &str) -> Resource {
    let host = host_name().unwrap_or_else(|| "unknown".to_owned());
    let mut ours = vec![
        KeyValue::new("service.name", "triggers-api"),
        KeyValue::new("service.version", env!("CARGO_PKG_VERSION")),
        KeyValue::new("host.name", host),
        KeyValue::new("triggers.role", role.to_owned()),
    ];
    if let Ok(pod) = std::env::var("POD_NAME") {
        ours.push(KeyValue::new("k8s.pod.name", pod));
    }
    let mut builder = Resource::builder_empty()
        .with_detector(Box::new(TelemetryResourceDetector))
        .with_attributes(ours)
        .with_detector(Box::new(EnvResourceDetector::new()));
    if let Some(name) = std::env::var("OTEL_SERVICE_NAME")
        .ok()
        .filter(|n| !n.is_empty())
    {
        builder = builder.with_service_name(name);
    }
    builder.build()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env<'a>(pairs: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |name| {
            pairs
                .iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| (*v).to_owned())
        }
    }

    #[test]
    fn traces_are_off_unless_an_endpoint_is_set() {
        assert!(!wanted(env(&[])));
        assert!(!wanted(env(&[("OTEL_EXPORTER_OTLP_ENDPOINT", " ")])));
        assert!(!wanted(env(&[("OTEL_SERVICE_NAME", "x")])));
        assert!(wanted(env(&[(
            "OTEL_EXPORTER_OTLP_ENDPOINT",
            "http://collector:4318"
        )])));
        assert!(wanted(env(&[(
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
            "http://collector:4318/v1/traces"
        )])));
    }

    #[test]
    fn the_standard_switches_turn_traces_off() {
        let endpoint = ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318");
        assert!(!wanted(env(&[endpoint, ("OTEL_SDK_DISABLED", "true")])));
        assert!(!wanted(env(&[endpoint, ("OTEL_TRACES_EXPORTER", "none")])));
        assert!(wanted(env(&[endpoint, ("OTEL_TRACES_EXPORTER", "otlp")])));
    }
}
