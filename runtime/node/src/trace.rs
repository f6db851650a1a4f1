//! Trace context across nodes: the W3C `traceparent` and `tracestate` of a request become the
//! remote parent of its span, and the context of the current span goes out with what this node
//! sends on (a command on the forwarding exchange, a forwarded HTTP request).
//!
//! Spans are `tracing` spans at `DEBUG` level; the program installs the OpenTelemetry layer and
//! the W3C propagator only with `--otlp-endpoint`. Without them every span here is disabled,
//! and these functions return at once without reading headers or allocating.

use std::collections::HashMap;

use cella_cluster::mux::TraceContext;
use hyper::{HeaderMap, header::HeaderValue};
use tracing_opentelemetry::OpenTelemetrySpanExt;

/// The W3C header that names the trace and the parent span.
pub const TRACEPARENT: &str = "traceparent";
/// The W3C header with vendor-specific trace state.
pub const TRACESTATE: &str = "tracestate";

/// The trace context that `headers` carry (empty when they carry none).
pub fn from_headers(headers: &HeaderMap) -> TraceContext {
    let field = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string()
    };
    TraceContext {
        traceparent: field(TRACEPARENT),
        tracestate: field(TRACESTATE),
    }
}

/// Makes the span that `context` names (from another node or a client) the parent of `span`.
/// Nothing happens when `span` is disabled (no tracing layer wants it) or `context` is empty.
pub fn set_parent(span: &tracing::Span, context: &TraceContext) {
    if span.is_disabled() || context.traceparent.is_empty() {
        return;
    }
    let mut fields = HashMap::with_capacity(2);
    fields.insert(TRACEPARENT.to_string(), context.traceparent.clone());
    if !context.tracestate.is_empty() {
        fields.insert(TRACESTATE.to_string(), context.tracestate.clone());
    }
    let parent =
        opentelemetry::global::get_text_map_propagator(|propagator| propagator.extract(&fields));
    // Fails only without the OpenTelemetry layer, when there is no trace to join.
    let _ = span.set_parent(parent);
}

/// Sets the parent of `span` from the `traceparent` and `tracestate` of `headers`.
pub fn set_parent_from_headers(span: &tracing::Span, headers: &HeaderMap) {
    if span.is_disabled() || !headers.contains_key(TRACEPARENT) {
        return;
    }
    set_parent(span, &from_headers(headers));
}

/// The trace context of the current span, to send on with a request (empty when the current
/// span is disabled).
pub fn current() -> TraceContext {
    let span = tracing::Span::current();
    if span.is_disabled() {
        return TraceContext::default();
    }
    let mut fields: HashMap<String, String> = HashMap::with_capacity(2);
    let context = span.context();
    opentelemetry::global::get_text_map_propagator(|propagator| {
        propagator.inject_context(&context, &mut fields)
    });
    TraceContext {
        traceparent: fields.remove(TRACEPARENT).unwrap_or_default(),
        tracestate: fields.remove(TRACESTATE).unwrap_or_default(),
    }
}

/// `context` as the headers of an HTTP request (none when empty or not valid header values).
pub fn headers(context: &TraceContext) -> Vec<(hyper::header::HeaderName, HeaderValue)> {
    let mut headers = Vec::new();
    for (name, value) in [
        (TRACEPARENT, &context.traceparent),
        (TRACESTATE, &context.tracestate),
    ] {
        if let Ok(value) = HeaderValue::from_str(value)
            && !value.is_empty()
        {
            headers.push((hyper::header::HeaderName::from_static(name), value));
        }
    }
    headers
}

/// The span of one HTTP request from a client (none for the requests between nodes: raft
/// traffic is not traced, and a forwarded command gets its span from the exchange), a child of
/// the span its `traceparent` names. Its route and status are recorded as they become known.
pub fn request_span<B>(req: &hyper::Request<B>) -> tracing::Span {
    if req.uri().path().starts_with("/v1/peer/") {
        return tracing::Span::none();
    }
    let span = tracing::debug_span!(
        "http.request",
        otel.name = tracing::field::Empty,
        otel.kind = "server",
        http.request.method = %req.method(),
        http.route = tracing::field::Empty,
        http.response.status_code = tracing::field::Empty,
    );
    set_parent_from_headers(&span, req.headers());
    span
}

/// Records the route (its path template, which `route` gives) the current request matched.
pub fn record_route(method: &hyper::Method, route: impl FnOnce() -> &'static str) {
    let span = tracing::Span::current();
    if span.is_disabled() {
        return;
    }
    let route = route();
    span.record("http.route", route);
    span.record("otel.name", format!("{method} {route}"));
}

/// Records the status a request was answered with.
pub fn record_status(span: &tracing::Span, status: hyper::StatusCode) {
    if !span.is_disabled() {
        span.record("http.response.status_code", status.as_u16());
    }
}
