//! What the hub tells its operators: the observing layer around every request, `/metrics` and
//! `/ready`.
//!
//! [`observe`] is the outermost layer. It gives the request its id (a sane `x-request-id` the
//! client sent, else a new one) and its trace (a child of a valid W3C `traceparent`, else a new
//! root), opens the `http` span every log line of the request is written in (`request_id`,
//! `trace_id`), runs the request inside `cityhub_metrics::trace::scope` (so the egress client
//! passes `traceparent` on, and writes note it for their notifications), echoes `x-request-id`
//! and `traceparent` in the answer, and counts it: `cityhub_http_requests_total{route, method,
//! status}` and `cityhub_http_request_duration_seconds{route, method}`, where `route` is the
//! matched route *template* (`/ngsi-ld/v1/entities/{id}`, never the id) or `unmatched` for an
//! answer given before or without a route (404s, and the 401/429/503 refusals of the layers
//! outside the router).
//!
//! `/metrics` (Prometheus text) is served to the admins of the default tenant, and to a scraper
//! that sends `Authorization: Bearer <--metrics-token>`: the identify layer lets that token pass
//! on this one path (as [`Scraper`]) instead of reading it as a credential. `/ready` answers
//! 200 once the store answers a cheap read (migrations run when the store opens, before the hub
//! listens) and 503 while it does not, or once the hub is shutting down.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use axum::extract::{MatchedPath, Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use cityhub_metrics::labels;
use cityhub_metrics::trace::{self, RequestTrace, TraceParent};
use tracing::Instrument;

use crate::error::ApiError;
use crate::SharedState;

/// The route label of an answer no route gave.
pub const UNMATCHED: &str = "unmatched";

static DRAINING: AtomicBool = AtomicBool::new(false);

/// Says the hub is shutting down: `/ready` answers 503 from now on.
pub fn drain() {
    DRAINING.store(true, Ordering::Relaxed);
}

/// A scrape that showed the metrics token (put in the request's extensions by the identify layer).
#[derive(Debug, Clone, Copy)]
pub struct Scraper;

/// Whether `request` is a `/metrics` scrape with the operator's token.
pub(crate) fn is_scrape(state: &SharedState, request: &Request) -> bool {
    let Some(token) = state.config.metrics_token.as_deref() else { return false };
    if request.uri().path() != "/metrics" {
        return false;
    }
    let sent = request.headers().get(header::AUTHORIZATION).and_then(|v| v.to_str().ok());
    let Some(sent) = sent.and_then(|v| v.strip_prefix("Bearer ")) else { return false };
    // The same time whatever the first differing byte.
    sent.len() == token.len() && sent.bytes().zip(token.bytes()).fold(0u8, |acc, (a, b)| acc | (a ^ b)) == 0
}

/// Tags an answer with the route that gave it (its template), for [`observe`] outside the
/// router; inside the access gate's and the panic layer's answers too.
pub async fn tag_route(request: Request, next: Next) -> Response {
    let matched = request.extensions().get::<MatchedPath>().cloned();
    let mut response = next.run(request).await;
    if let Some(matched) = matched {
        response.extensions_mut().insert(matched);
    }
    response
}

/// The outermost layer: request id, trace, span, counts (see the module's doc).
pub async fn observe(request: Request, next: Next) -> Response {
    let started = Instant::now();
    let request_id = match request.headers().get("x-request-id").and_then(|v| v.to_str().ok()) {
        Some(id) if trace::sane_request_id(id) => id.to_owned(),
        _ => trace::new_request_id(),
    };
    let sent = request.headers().get("traceparent").and_then(|v| v.to_str().ok()).and_then(TraceParent::parse);
    let span_trace = sent.map_or_else(TraceParent::root, |t| t.child());
    let method = labels::method(request.method().as_str());
    // At the error level, so that it is enabled whatever `--log` filters: every line the
    // request logs carries its id.
    let span = tracing::error_span!(
        "http",
        request_id = %request_id,
        trace_id = %span_trace.trace_id_hex(),
        method,
        path = %request.uri().path(),
    );
    let scoped = RequestTrace { request_id: request_id.as_str().into(), trace: span_trace, continued: sent.is_some() };
    let mut response = trace::scope(scoped, next.run(request)).instrument(span).await;
    let route = response.extensions().get::<MatchedPath>().map_or(UNMATCHED, MatchedPath::as_str).to_owned();
    let status = response.status().as_u16().to_string();
    metrics::counter!("cityhub_http_requests_total", "route" => route.clone(), "method" => method, "status" => status)
        .increment(1);
    metrics::histogram!("cityhub_http_request_duration_seconds", "route" => route, "method" => method)
        .record(started.elapsed().as_secs_f64());
    let headers = response.headers_mut();
    if let Ok(value) = HeaderValue::from_str(&request_id) {
        headers.insert("x-request-id", value);
    }
    if let Ok(value) = HeaderValue::from_str(&span_trace.header()) {
        headers.insert("traceparent", value);
    }
    response
}

/// `/metrics` and `/ready`.
pub fn routes() -> Router<SharedState> {
    Router::new().route("/metrics", get(metrics_text)).route("/ready", get(ready))
}

async fn metrics_text(State(state): State<SharedState>, request: Request) -> Result<Response, ApiError> {
    let (parts, _) = request.into_parts();
    if parts.extensions.get::<Scraper>().is_none() {
        let admin = cityhub_access::Action { group: cityhub_access::Group::Admin, write: false };
        crate::extract::admit(&state, &parts, admin).await.map_err(|e| match e.0.kind {
            ngsild_core::ErrorKind::Forbidden => ApiError::forbidden(format!(
                "{}; a Prometheus scraper sends Authorization: Bearer <the hub's --metrics-token>",
                e.0.detail
            )),
            _ => e,
        })?;
    }
    let Some(text) = cityhub_metrics::recorder::render() else {
        return Err(ApiError(ngsild_core::NgsiLdError::new(
            ngsild_core::ErrorKind::OperationNotSupported,
            "this hub was started without its metrics recorder (only `cityhub serve` installs it)",
        )));
    };
    Ok(([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], text).into_response())
}

async fn ready(State(state): State<SharedState>) -> Response {
    if DRAINING.load(Ordering::Relaxed) {
        return not_ready("the hub is shutting down: send requests to another hub");
    }
    // A point read that reaches the store (the default tenant's existence is known without it).
    let probe = state.store.get_entity("", "urn:ngsi-ld:cityhub:ready-probe");
    match tokio::time::timeout(Duration::from_secs(2), probe).await {
        Ok(Ok(_)) => axum::Json(serde_json::json!({"status": "ready"})).into_response(),
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "not ready: the store failed a read");
            not_ready("the store did not answer a read: see the hub's log, check the database or the disk")
        }
        Err(_) => not_ready("the store took more than 2 s to answer a read: check the database or the disk"),
    }
}

/// 503, as a ProblemDetails.
fn not_ready(detail: &str) -> Response {
    let body = serde_json::json!({
        "type": "https://cityhub.dev/errors/NotReady",
        "title": "The hub is not ready to serve",
        "status": 503,
        "detail": detail,
    });
    let mut response =
        (StatusCode::SERVICE_UNAVAILABLE, [(header::CONTENT_TYPE, "application/json")], body.to_string())
            .into_response();
    response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
    response
}
