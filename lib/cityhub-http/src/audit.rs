//! The audit log (issue 16 item 6): every write and every refusal, kept in the store, read by
//! admins at `GET /cityhub/v1/audit`.
//!
//! # How a request is audited
//!
//! 1. [`reached`], a route layer, runs once a route matched: it tags the response with the
//!    matched route and what the path names (`Reached`).
//! 2. [`record`], the outermost layer (outside the guard, and outside the identify layer that
//!    puts a [`cityhub_access::Identity`] in the response's extensions, so its 401s are seen),
//!    sees the answer: a non-GET that reached a handler, or any 401, 403 or 429, becomes an
//!    [`AuditEntry`] — time, identity (subject or key id and how it was established; anonymous
//!    without one), client address, tenant header, method and route (the path itself when no
//!    route matched), target, status and the ProblemDetails error type (`ApiError` tags its
//!    answers with their `ErrorKind`). Nothing else of the request is read: no query string, no
//!    header but the tenant, so no token, key or `Authorization` value reaches the log.
//! 3. The entry is offered to a bounded queue ([`AuditLog::offer`]) and the request goes on; a
//!    full queue drops the entry and counts it (logged at powers of two), never blocking.
//!    One task appends what is queued in batches (`Store::append_audit`); another deletes what
//!    is older than `--audit-retention-days`, hourly.
//!
//! The read route is guarded by the same extractors as every API route (`Look`: the caller,
//! `admit`); access control is to classify it admin-only.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{ConnectInfo, MatchedPath, RawPathParams, Request, State};
use axum::http::{Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use cityhub_access::{Identity, Via};
use cityhub_storage::{AuditEntry, AuditFilter, AuditOutcome, DynStore};
use ngsild_core::{ErrorKind, NgsiLdError};
use serde_json::{json, Value};
use tokio::sync::mpsc;

use crate::error::ApiResult;
use crate::extract::{params, Call, Look};
use crate::request::{Params, TENANT_HEADER};
use crate::response::with_header;
use crate::{ClientAddr, SharedState};

/// Entries appended in one store commit at most.
const BATCH: usize = 256;

/// The queue of entries on their way to the store.
pub struct AuditLog {
    queue: mpsc::Sender<AuditEntry>,
    dropped: AtomicU64,
    /// Turns true once the appending task stored the last entry queued (the log was dropped).
    stored: tokio::sync::watch::Receiver<bool>,
}

impl AuditLog {
    /// Starts the appending and the retention tasks (on the current tokio runtime).
    pub fn start(store: DynStore, retention: Duration, queue: usize) -> Arc<AuditLog> {
        let (mut log, rx) = AuditLog::queue(queue);
        let (stored, stored_rx) = tokio::sync::watch::channel(false);
        log.stored = stored_rx;
        let appending = store.clone();
        tokio::spawn(async move {
            append(appending, rx).await;
            let _ = stored.send(true);
        });
        tokio::spawn(retain(store, retention));
        Arc::new(log)
    }

    /// The log and the receiving end of its queue.
    fn queue(queue: usize) -> (AuditLog, mpsc::Receiver<AuditEntry>) {
        let (tx, rx) = mpsc::channel(queue.max(1));
        let (_, stored) = tokio::sync::watch::channel(false);
        (AuditLog { queue: tx, dropped: AtomicU64::new(0), stored }, rx)
    }

    /// Resolves once every entry queued is stored, after the log is dropped with the hub's
    /// state (at shutdown: the entries of the last requests are not lost with the process).
    pub fn stored(&self) -> impl std::future::Future<Output = ()> + Send + 'static {
        let mut stored = self.stored.clone();
        async move {
            let _ = stored.wait_for(|done| *done).await;
        }
    }

    /// Queues an entry without waiting; a full queue drops it and counts it.
    pub fn offer(&self, entry: AuditEntry) {
        if self.queue.try_send(entry).is_err() {
            let dropped = self.dropped.fetch_add(1, Ordering::Relaxed) + 1;
            if dropped.is_power_of_two() {
                tracing::warn!(dropped, "the audit queue is full (the store is slow): audit entries were dropped");
            }
        }
    }

    /// How many entries were dropped since start.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

async fn append(store: DynStore, mut queue: mpsc::Receiver<AuditEntry>) {
    while let Some(first) = queue.recv().await {
        let mut batch = vec![first];
        while batch.len() < BATCH {
            match queue.try_recv() {
                Ok(entry) => batch.push(entry),
                Err(_) => break,
            }
        }
        let n = batch.len();
        if let Err(e) = store.append_audit(batch).await {
            tracing::warn!(error = %e, entries = n, "audit entries could not be stored and are lost");
        }
    }
}

async fn retain(store: DynStore, retention: Duration) {
    let mut every = tokio::time::interval(Duration::from_secs(3600));
    let keep = i64::try_from(retention.as_micros()).unwrap_or(i64::MAX);
    loop {
        every.tick().await;
        let before = chrono::Utc::now().timestamp_micros().saturating_sub(keep);
        match store.purge_audit(before).await {
            Ok(0) => {}
            Ok(gone) => tracing::info!(gone, "audit entries past --audit-retention-days deleted"),
            Err(e) => tracing::warn!(error = %e, "old audit entries could not be deleted; retried in an hour"),
        }
    }
}

/// The route a request matched and what its path names, for [`record`].
#[derive(Debug, Clone)]
struct Reached {
    route: String,
    target: Option<String>,
}

/// Tags a routed request's response with its route and target.
pub async fn reached(
    matched: MatchedPath,
    path: Result<RawPathParams, axum::extract::rejection::RawPathParamsRejection>,
    request: Request,
    next: Next,
) -> Response {
    let route = matched.as_str().to_owned();
    let target = path.ok().and_then(|params| {
        let values: Vec<String> = params
            .iter()
            .map(|(_, v)| percent_encoding::percent_decode_str(v).decode_utf8_lossy().into_owned())
            .collect();
        (!values.is_empty()).then(|| values.join("/"))
    });
    let mut response = next.run(request).await;
    response.extensions_mut().insert(Reached { route, target });
    response
}

/// Audits a write or a refusal once answered (see the module's doc).
pub async fn record(State(log): State<Arc<AuditLog>>, request: Request, next: Next) -> Response {
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    let tenant = request
        .headers()
        .get(TENANT_HEADER)
        .and_then(|v| v.to_str().ok())
        .map(|t| t.trim().chars().take(128).collect::<String>())
        .unwrap_or_default();
    let client = request.extensions().get::<ConnectInfo<ClientAddr>>().map(|c| c.0 .0.to_string()).unwrap_or_default();
    let response = next.run(request).await;
    let status = response.status().as_u16();
    let reached = response.extensions().get::<Reached>();
    let write = !matches!(method, Method::GET | Method::HEAD | Method::OPTIONS);
    if !(matches!(status, 401 | 403 | 429) || (write && reached.is_some())) {
        return response;
    }
    let anonymous = Identity::anonymous();
    let identity = response.extensions().get::<Arc<Identity>>().map_or(&anonymous, |i| &**i);
    let (subject, via) = match (identity.via, &identity.subject) {
        (Via::Token, Some(sub)) => (sub.clone(), "token"),
        (Via::Key, Some(id)) => (format!("key:{id}"), "key"),
        (Via::Token, None) => ("(no subject)".to_owned(), "token"),
        (Via::Key, None) => ("key:(no id)".to_owned(), "key"),
        (Via::Anonymous, _) => ("anonymous".to_owned(), "anonymous"),
    };
    let entry = AuditEntry {
        at_micros: chrono::Utc::now().timestamp_micros(),
        tenant,
        subject,
        via: via.to_owned(),
        client,
        method: method.to_string(),
        route: reached.map(|r| r.route.clone()).unwrap_or(path),
        target: reached.and_then(|r| r.target.clone()),
        status,
        error: response.extensions().get::<ErrorKind>().map(|k| k.name().to_owned()),
    };
    log.offer(entry);
    response
}

params! {
    AuditParams = cityhub_openapi::query::AUDIT_QUERY;
}

/// The routes of the audit log (merged into the router once).
pub fn routes() -> Router<SharedState> {
    Router::new().route("/cityhub/v1/audit", get(read))
}

/// GET /cityhub/v1/audit: newest first, filtered, paged; `count=true` adds the total.
async fn read(look: Look<AuditParams>) -> ApiResult {
    let Call { state, params, .. } = look.call;
    let filter = filter_of(&params)?;
    let paging = crate::request::page(&params, &state.config)?;
    let page = state.store.read_audit(&filter, paging.offset, paging.limit).await?;
    let body = Value::Array(page.entries.iter().map(render).collect());
    let mut response = (StatusCode::OK, axum::Json(body)).into_response();
    if paging.count {
        response = with_header(response, "ngsild-results-count", &page.total.to_string());
    }
    Ok(response)
}

/// The filter of a read's parameters.
fn filter_of(params: &Params) -> Result<AuditFilter, NgsiLdError> {
    let time = |name: &str| {
        params
            .get(name)
            .map(|t| {
                ngsild_core::time::micros(t).ok_or_else(|| {
                    NgsiLdError::bad_request(format!("{name} is not a date-time: {}", ngsild_core::time::DATETIME_HINT))
                })
            })
            .transpose()
    };
    let outcome = match params.get("outcome") {
        None => None,
        Some("success") => Some(AuditOutcome::Success),
        Some("failure") => Some(AuditOutcome::Failure),
        Some(s) => match s.parse::<u16>() {
            Ok(status) if (100..=599).contains(&status) => Some(AuditOutcome::Status(status)),
            _ => {
                return Err(NgsiLdError::bad_request(format!(
                    "outcome is success, failure or an HTTP status such as 403, not {s:?}"
                )))
            }
        },
    };
    Ok(AuditFilter {
        tenant: params.get("tenant").map(str::to_owned),
        subject: params.get("subject").map(str::to_owned),
        operation: params.get("operation").map(str::to_owned),
        outcome,
        since_micros: time("since")?,
        until_micros: time("until")?,
    })
}

fn render(entry: &AuditEntry) -> Value {
    let time = chrono::DateTime::from_timestamp_micros(entry.at_micros).map(ngsild_core::time::format_time);
    let mut shown = json!({
        "time": time,
        "tenant": entry.tenant,
        "subject": entry.subject,
        "via": entry.via,
        "client": entry.client,
        "operation": format!("{} {}", entry.method, entry.route),
        "status": entry.status,
    });
    if let Some(target) = &entry.target {
        shown["target"] = json!(target);
    }
    if let Some(error) = &entry.error {
        shown["errorType"] = json!(error);
    }
    shown
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ApiError;
    use axum::body::Body;
    use tower::ServiceExt;

    /// A router audited as the hub's is: `/open` answers 200 to GET and POST, `/closed/{id}` a
    /// 403 for the identity `alice`, `/busy` a 429 with a bearer identity.
    fn audited(log: Arc<AuditLog>) -> Router {
        async fn refuse() -> Response {
            let mut response = ApiError(NgsiLdError::new(ErrorKind::BadRequestData, "not for alice")).into_response();
            *response.status_mut() = StatusCode::FORBIDDEN;
            let alice = Identity { subject: Some("alice".into()), via: Via::Token, grants: vec![] };
            response.extensions_mut().insert(Arc::new(alice));
            response
        }
        async fn busy() -> Response {
            let mut response = StatusCode::TOO_MANY_REQUESTS.into_response();
            let key = Identity { subject: Some("k1".into()), via: Via::Key, grants: vec![] };
            response.extensions_mut().insert(Arc::new(key));
            response
        }
        Router::new()
            .route("/open", get(|| async { "ok" }).post(|| async { "ok" }))
            .route("/closed/{id}", get(refuse))
            .route("/busy", get(busy))
            .route_layer(axum::middleware::from_fn(reached))
            .layer(axum::middleware::from_fn_with_state(log, record))
    }

    async fn send(app: &Router, method: &str, uri: &str) {
        let request = axum::http::Request::builder()
            .method(method)
            .uri(uri)
            .header("NGSILD-Tenant", "seoul")
            .header("Authorization", "Bearer SECRET")
            .body(Body::empty())
            .unwrap();
        app.clone().oneshot(request).await.unwrap();
    }

    #[tokio::test]
    async fn writes_and_refusals_are_offered_reads_are_not() {
        let (log, mut rx) = AuditLog::queue(16);
        let app = audited(Arc::new(log));
        send(&app, "GET", "/open").await;
        send(&app, "POST", "/open?token=SECRET").await;
        send(&app, "GET", "/closed/urn:ngsi-ld:Room:1").await;
        send(&app, "GET", "/busy").await;
        send(&app, "GET", "/nowhere").await;
        let mut got = Vec::new();
        while let Ok(entry) = rx.try_recv() {
            got.push(entry);
        }
        assert_eq!(got.len(), 3, "the POST, the 403 and the 429: {got:?}");
        assert_eq!((got[0].method.as_str(), got[0].route.as_str(), got[0].status), ("POST", "/open", 200));
        assert_eq!((got[0].subject.as_str(), got[0].via.as_str()), ("anonymous", "anonymous"));
        assert_eq!(got[1].route, "/closed/{id}");
        assert_eq!(got[1].target.as_deref(), Some("urn:ngsi-ld:Room:1"));
        assert_eq!((got[1].subject.as_str(), got[1].via.as_str(), got[1].status), ("alice", "token", 403));
        assert_eq!(got[1].error.as_deref(), Some("BadRequestData"));
        assert_eq!((got[2].subject.as_str(), got[2].via.as_str(), got[2].status), ("key:k1", "key", 429));
        assert!(got.iter().all(|e| e.tenant == "seoul"));
        assert!(!format!("{got:?}").contains("SECRET"), "{got:?}");
    }

    #[tokio::test]
    async fn a_full_queue_drops_and_counts_without_waiting() {
        let (log, _rx) = AuditLog::queue(1);
        let log = Arc::new(log);
        let app = audited(log.clone());
        for _ in 0..3 {
            send(&app, "POST", "/open").await;
        }
        assert_eq!(log.dropped(), 2);
    }

    fn params(query: &str) -> Params {
        Params::parse(Some(query), <AuditParams as crate::extract::Allowed>::NAMES).unwrap()
    }

    #[test]
    fn read_parameters_become_a_filter() {
        let f = filter_of(&params(
            "tenant=seoul&subject=alice&operation=POST&outcome=403&since=2026-01-01T00:00:00Z&until=2026-01-02T00:00:00Z",
        ))
        .unwrap();
        assert_eq!(f.tenant.as_deref(), Some("seoul"));
        assert_eq!(f.subject.as_deref(), Some("alice"));
        assert_eq!(f.operation.as_deref(), Some("POST"));
        assert_eq!(f.outcome, Some(AuditOutcome::Status(403)));
        assert_eq!(f.until_micros.unwrap() - f.since_micros.unwrap(), 86_400_000_000);
        assert_eq!(filter_of(&params("outcome=success")).unwrap().outcome, Some(AuditOutcome::Success));
        assert_eq!(filter_of(&params("tenant=")).unwrap().tenant.as_deref(), Some(""), "the default tenant");
        for bad in ["outcome=bad", "outcome=42", "since=yesterday"] {
            let e = filter_of(&params(bad)).unwrap_err();
            assert_eq!(e.kind, ErrorKind::BadRequestData, "{bad}");
            assert!(e.detail.contains("such as") || e.detail.contains("ISO 8601"), "{bad}: {}", e.detail);
        }
    }

    #[test]
    fn an_entry_renders_its_operation_and_its_error() {
        let entry = AuditEntry {
            at_micros: 1_767_225_600_000_000,
            tenant: "seoul".into(),
            subject: "key:k1".into(),
            via: "key".into(),
            client: "127.0.0.1:5000".into(),
            method: "POST".into(),
            route: "/ngsi-ld/v1/subscriptions".into(),
            target: None,
            status: 400,
            error: Some("BadRequestData".into()),
        };
        let shown = render(&entry);
        assert_eq!(shown["time"], "2026-01-01T00:00:00.000000Z");
        assert_eq!(shown["operation"], "POST /ngsi-ld/v1/subscriptions");
        assert_eq!(shown["errorType"], "BadRequestData");
        assert!(shown.get("target").is_none());
    }
}
