//! Trace context that travels: in and out of HTTP headers, and with an event
//! through the streams, as W3C `traceparent`/`tracestate` strings.

use std::collections::HashMap;

use axum::http::HeaderMap;
use opentelemetry::{
    propagation::{Extractor, Injector, TextMapPropagator},
    trace::{SpanContext, TraceContextExt},
};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use tracing::Span;
use tracing_opentelemetry::OpenTelemetrySpanExt;

use super::tracing_on;

const TRACEPARENT: &str = "traceparent";
const TRACESTATE: &str = "tracestate";

/// A span's place in its trace, as W3C Trace Context headers carry it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TraceContext {
    pub traceparent: String,
    pub tracestate: Option<String>,
}

impl TraceContext {
    /// The context of the current span; `None` when traces are off.
    pub fn current() -> Option<Self> {
        Self::of(&Span::current())
    }

    /// The context of `span`; `None` when traces are off or the span is
    /// disabled.
    pub fn of(span: &Span) -> Option<Self> {
        if !tracing_on() {
            return None;
        }
        let mut carrier = HashMap::new();
        TraceContextPropagator::new().inject_context(&span.context(), &mut Carrier(&mut carrier));
        Some(Self {
            traceparent: carrier.remove(TRACEPARENT)?,
            tracestate: carrier.remove(TRACESTATE).filter(|s| !s.is_empty()),
        })
    }

    /// The span this context names, as a parent or a link; `None` for a
    /// malformed `traceparent`.
    pub fn span_context(&self) -> Option<SpanContext> {
        let span = self.as_parent().span().span_context().clone();
        span.is_valid().then_some(span)
    }

    /// Makes `span` (not started yet) a child of this context.
    pub fn adopt(&self, span: &Span) {
        if tracing_on() {
            // Fails only when the span is disabled or already started:
            // then it just stays a root, which loses nothing else.
            let _ = span.set_parent(self.as_parent());
        }
    }

    /// Links `span` (not started yet) to this context's span.
    pub fn link(&self, span: &Span) {
        if tracing_on() {
            if let Some(context) = self.span_context() {
                span.add_link(context);
            }
        }
    }

    fn as_parent(&self) -> opentelemetry::Context {
        let mut carrier = HashMap::from([(TRACEPARENT.to_owned(), self.traceparent.clone())]);
        if let Some(state) = &self.tracestate {
            carrier.insert(TRACESTATE.to_owned(), state.clone());
        }
        TraceContextPropagator::new().extract(&Carrier(&mut carrier))
    }

    /// The W3C headers, for an outgoing request.
    pub fn headers(&self) -> impl Iterator<Item = (&'static str, &str)> {
        std::iter::once((TRACEPARENT, self.traceparent.as_str()))
            .chain(self.tracestate.as_deref().map(|s| (TRACESTATE, s)))
    }
}

/// Makes `span` a child of the trace an incoming request names in its
/// `traceparent`/`tracestate` headers, if any.
pub fn continue_from_headers(span: &Span, headers: &HeaderMap) {
    if !tracing_on() || !headers.contains_key(TRACEPARENT) {
        return;
    }
    let parent = TraceContextPropagator::new().extract(&HeaderCarrier(headers));
    let _ = span.set_parent(parent);
}

struct Carrier<'a>(&'a mut HashMap<String, String>);

impl Injector for Carrier<'_> {
    fn set(&mut self, key: &str, value: String) {
        self.0.insert(key.to_owned(), value);
    }
}

impl Extractor for Carrier<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).map(String::as_str)
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(String::as_str).collect()
    }
}

struct HeaderCarrier<'a>(&'a HeaderMap);

impl Extractor for HeaderCarrier<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(|k| k.as_str()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stored_context_names_its_span() {
        let context = TraceContext {
            traceparent: "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".into(),
            tracestate: Some("vendor=1".into()),
        };
        let span = context.span_context().expect("valid");
        assert_eq!(
            span.trace_id().to_string(),
            "4bf92f3577b34da6a3ce929d0e0e4736"
        );
        assert_eq!(span.span_id().to_string(), "00f067aa0ba902b7");
        assert!(span.is_sampled() && span.is_remote());
        assert_eq!(span.trace_state().header(), "vendor=1");
    }

    #[test]
    fn a_malformed_context_is_no_context() {
        let context = TraceContext {
            traceparent: "00-not-a-trace-01".into(),
            tracestate: None,
        };
        assert!(context.span_context().is_none());
    }
}
