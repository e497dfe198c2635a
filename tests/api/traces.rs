//! Traces, against the real binary (the tracer provider is process-wide,
//! so each traced service runs in a process of its own): a request's trace
//! continues the caller's, and reaches the webhook deliveries of its event,
//! retries included.

use std::{net::SocketAddr, time::Duration};

use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::{
    collector::{Collector, Span},
    helpers::{eventually, never, unique_prefix},
    process::{Process, create_key, start_with},
    receiver::{Receiver, status},
};

/// A caller's span, as a W3C `traceparent`: (header, trace id, span id).
fn caller_context() -> (String, String, String) {
    let trace_id = Uuid::new_v4().simple().to_string();
    let span_id = Uuid::new_v4().simple().to_string()[..16].to_owned();
    (format!("00-{trace_id}-{span_id}-01"), trace_id, span_id)
}

/// An organization with its webhook at `receiver`; returns its key.
async fn org_with_webhook(
    client: &reqwest::Client,
    process: &Process,
    receiver: &Receiver,
) -> String {
    let key = create_key(client, &process.base).await;
    let configured = client
        .post(format!("{}/api/webhook/config", process.base))
        .header("x-api-key", &key)
        .json(&json!({ "webhook_url": receiver.url }))
        .send()
        .await
        .unwrap();
    assert_eq!(configured.status(), 200);
    key
}

async fn send_event(
    client: &reqwest::Client,
    process: &Process,
    key: &str,
    traceparent: &str,
) -> String {
    let response = client
        .post(format!("{}/api/events", process.base))
        .header("x-api-key", key)
        .header("traceparent", traceparent)
        .json(&json!({ "type": "traced", "payload": { "n": 1 } }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 202);
    let body: Value = response.json().await.unwrap();
    body["id"].as_str().unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_and_every_delivery_attempt_of_its_event_are_one_trace() {
    let prefix = unique_prefix();
    let client = reqwest::Client::new();
    let collector = Collector::start().await;
    let receiver = Receiver::start().await;
    // The first attempt fails: the second comes from the retry set.
    receiver.script(&[status(503)]);
    let service = format!("triggers-{prefix}");
    let process = start_with(
        &prefix,
        "traced",
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", collector.endpoint.as_str()),
            ("OTEL_SERVICE_NAME", service.as_str()),
            ("OTEL_BSP_SCHEDULE_DELAY", "100"),
            // Logs quiet but for delivery attempts; spans must be exported
            // all the same.
            ("RUST_LOG", "warn,triggers_api::workers::delivery=info"),
            ("TRIGGERS_ALLOW_PRIVATE_WEBHOOKS", "true"),
            ("TRIGGERS_RETRY_SCHEDULE", "1s"),
            ("TRIGGERS_WEBHOOK_TRACEPARENT", "true"),
        ],
    )
    .await;
    let key = org_with_webhook(&client, &process, &receiver).await;
    for _ in 0..3 {
        let health = client.get(format!("{}/health", process.base)).send().await;
        assert!(health.is_ok_and(|r| r.status() == 200));
    }

    let (traceparent, trace_id, caller_span) = caller_context();
    let id = send_event(&client, &process, &key, &traceparent).await;
    eventually(Duration::from_secs(30), || async { receiver.count() == 2 }).await;

    // The request's server span, a child of the caller's span.
    let server = eventually(Duration::from_secs(20), || async {
        collector
            .in_trace(&trace_id)
            .into_iter()
            .find(|s| s.kind == SpanKind::Server)
    })
    .await;
    assert_eq!(server.service, service);
    assert_eq!(server.parent_span_id, caller_span);
    assert_eq!(server.name, "POST /api/events");
    assert_eq!(server.attr("http.route"), Some("/api/events"));
    assert_eq!(server.attr("http.request.method"), Some("POST"));
    assert_eq!(server.attr("url.path"), Some("/api/events"));
    assert_eq!(server.attr("http.response.status_code"), Some("202"));
    assert_eq!(server.attr("event_id"), Some(id.as_str()));

    // Both attempts: children of the server span, in its trace.
    let deliveries: Vec<Span> = eventually(Duration::from_secs(20), || async {
        let found: Vec<Span> = collector
            .in_trace(&trace_id)
            .into_iter()
            .filter(|s| s.kind == SpanKind::Client)
            .collect();
        (found.len() == 2).then_some(found)
    })
    .await;
    let attempt = |n: &str| {
        deliveries
            .iter()
            .find(|s| s.attr("triggers.delivery.attempt") == Some(n))
            .unwrap_or_else(|| panic!("no span of attempt {n}: {deliveries:#?}"))
    };
    let (first, second) = (attempt("1"), attempt("2"));
    for span in [first, second] {
        assert_eq!(span.parent_span_id, server.span_id);
        assert_eq!(span.attr("server.address"), Some("127.0.0.1"));
        assert_eq!(span.attr("event_id"), Some(id.as_str()));
    }
    assert_eq!(first.attr("http.response.status_code"), Some("503"));
    assert_eq!(second.attr("http.response.status_code"), Some("200"));

    // Opted in: the endpoint got each attempt's own span as its parent.
    let got = receiver.received();
    for (request, span) in got.iter().zip([first, second]) {
        let header = request.headers["traceparent"].to_str().unwrap();
        assert_eq!(header, format!("00-{trace_id}-{}-01", span.span_id));
    }

    // The archive batch is a trace of its own, linked to the request.
    eventually(Duration::from_secs(20), || async {
        collector.spans().iter().any(|s| {
            s.name == "archive batch"
                && s.links
                    .contains(&(trace_id.clone(), server.span_id.clone()))
        })
    })
    .await;

    // Log lines inside a span name its trace and span.
    let log = std::fs::read_to_string(&process.log).unwrap();
    let attempt_line = log
        .lines()
        .find(|l| l.contains("\"delivery attempt\""))
        .expect("a delivery attempt is logged");
    assert!(
        attempt_line.contains(&format!("\"trace_id\":\"{trace_id}\"")),
        "{attempt_line}"
    );
    assert!(
        !log.contains("\"request\""),
        "RUST_LOG=warn still logs request spans"
    );

    // Probes have no spans.
    let probed = collector.spans().into_iter().find(|s| {
        ["/health", "/ready", "/metrics"]
            .iter()
            .any(|path| s.attr("url.path") == Some(*path) || s.name.contains(path))
    });
    assert!(probed.is_none(), "a probe has a span: {probed:?}");
    let _ = std::fs::remove_file(&process.log);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_an_endpoint_nothing_is_exported_or_propagated() {
    let prefix = unique_prefix();
    let client = reqwest::Client::new();
    // Where an exporter would send by default: anything sent would land here.
    let default_endpoint = Collector::start_on(SocketAddr::from(([127, 0, 0, 1], 4318))).await;
    let receiver = Receiver::start().await;
    let process = start_with(
        &prefix,
        "untraced",
        &[
            ("TRIGGERS_ALLOW_PRIVATE_WEBHOOKS", "true"),
            // Asked for, but there is no trace to send.
            ("TRIGGERS_WEBHOOK_TRACEPARENT", "true"),
            ("OTEL_BSP_SCHEDULE_DELAY", "100"),
        ],
    )
    .await;
    let key = org_with_webhook(&client, &process, &receiver).await;
    let (traceparent, ..) = caller_context();
    send_event(&client, &process, &key, &traceparent).await;
    eventually(Duration::from_secs(30), || async { receiver.count() == 1 }).await;
    assert!(
        receiver.received()[0].headers.get("traceparent").is_none(),
        "a traceparent was sent without tracing"
    );

    let log = std::fs::read_to_string(&process.log).unwrap();
    assert!(log.contains("traces off: no OTLP endpoint set"), "{log}");
    assert!(!log.contains("exporting traces over OTLP"));
    assert!(!log.contains("\"trace_id\""));
    match default_endpoint {
        Some(collector) => {
            // Long enough for several export rounds, had an exporter run.
            never(5, Duration::from_millis(100), || async {
                !collector.spans().is_empty()
            })
            .await;
            assert!(
                collector.spans().is_empty(),
                "spans exported without an endpoint"
            );
        }
        None => eprintln!("127.0.0.1:4318 is taken; checked the log only"),
    }
    let _ = std::fs::remove_file(&process.log);
}
