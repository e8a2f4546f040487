//! The HTTP routes of ingestion, on the hub's own port:
//!
//! - provisioning as FIWARE IoT Agents serve it: `/iot/services` (POST `{services: [...]}`, GET
//!   `{count, services}`, PUT and DELETE `?apikey=&resource=`), `/iot/devices` (POST
//!   `{devices: [...]}`, GET `{count, devices}`) and `/iot/devices/{id}` (GET, PUT, DELETE);
//!   created 201 with an empty body, changed and deleted 204;
//! - the HTTP southbound: `POST /iot/json?k=APIKEY&i=DEVICE` (JSON) and `POST /iot/d?k=&i=`
//!   (UltraLight 2.0), answered 200 once the measures are stored;
//! - `GET /cityhub/v1/ingest/status` (`?kind=service|device|ngsiv2&name=` to pick) and `GET /cityhub/v1/ingest/dead-letters`;
//! - `POST /cityhub/v1/ngsiv2/notify`: Orion NGSIv2 notifications, upserted as NGSI-LD.
//!
//! The tenant is `NGSILD-Tenant`, or `fiware-service` when that is absent (what IoT Agent
//! tooling and Orion send); `fiware-servicepath` is kept with what is provisioned. Every request
//! is admitted by the hub's one access decision (the gate, `cityhub_http::extract::admitted`). Errors
//! are ProblemDetails that also carry the IoT Agent `name` and `message` members.

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{FromRequestParts, Path, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Router};
use bytes::Bytes;
use cityhub_http::extract::admitted;
use cityhub_http::{ApiError, SharedState};
use ngsild_core::{ErrorKind, NgsiLdError};
use serde_json::{json, Value};

use crate::agent::{Message, Rejected};
use crate::ngsiv2::{notification_entities, V2Options};
use crate::payload::Format;
use crate::provision::{read_device, read_group};
use crate::registry::Refusal;
use crate::status::SourceKey;
use crate::Ingest;

/// The routes, for `cityhub_http::app_with`.
pub fn routes(ingest: Arc<Ingest>, state: &SharedState) -> Router<SharedState> {
    Router::new()
        .route("/iot/services", post(create_services).get(list_services).put(update_service).delete(delete_service))
        .route("/iot/devices", post(create_devices).get(list_devices))
        .route("/iot/devices/{id}", get(get_device).put(update_device).delete(delete_device))
        .route("/iot/json", post(southbound_json))
        .route("/iot/d", post(southbound_ul))
        .route("/cityhub/v1/ingest/status", get(status))
        .route("/cityhub/v1/ingest/dead-letters", get(dead_letters))
        .route("/cityhub/v1/ngsiv2/notify", post(ngsiv2_notify))
        .layer(axum::middleware::from_fn_with_state(state.clone(), bound_tenants))
        .layer(Extension(ingest))
}

/// A write that would create a tenant passes `--max-tenants` as NGSI-LD writes do (the tenant
/// read as [`IotCall`] reads it); a failed write gives a new tenant back.
async fn bound_tenants(
    State(state): State<SharedState>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    if !matches!(*request.method(), axum::http::Method::POST | axum::http::Method::PUT) {
        return next.run(request).await;
    }
    let (parts, body) = request.into_parts();
    let tenant = match read_call(&parts) {
        Ok(call) => call.tenant,
        Err(e) => return e.into_response(),
    };
    let new = match cityhub_http::admit_tenant(&state, &tenant).await {
        Ok(new) => new,
        Err(e) => return IotError::new(e.0.kind, "TOO_MANY_TENANTS", e.0.detail).into_response(),
    };
    let response = next.run(axum::extract::Request::from_parts(parts, body)).await;
    if new && !response.status().is_success() {
        cityhub_http::release_tenant(&state, &tenant).await;
    }
    response
}

/// An error answered as a ProblemDetails with the IoT Agent `name` and `message`.
pub struct IotError {
    kind: ErrorKind,
    name: &'static str,
    message: String,
}

impl IotError {
    fn new(kind: ErrorKind, name: &'static str, message: impl Into<String>) -> Self {
        IotError { kind, name, message: message.into() }
    }

    fn syntax(message: impl Into<String>) -> Self {
        IotError::new(ErrorKind::BadRequestData, "WRONG_SYNTAX", message)
    }
}

impl From<Refusal> for IotError {
    fn from(r: Refusal) -> Self {
        match r {
            Refusal::Duplicate { name, message } => IotError::new(ErrorKind::AlreadyExists, name, message),
            Refusal::NotFound { name, message } => IotError::new(ErrorKind::ResourceNotFound, name, message),
            Refusal::Syntax(message) => IotError::syntax(message),
            Refusal::Full(message) => IotError::new(ErrorKind::OperationNotSupported, "TOO_MANY_ITEMS", message),
            Refusal::Store(message) => IotError::new(ErrorKind::InternalError, "INTERNAL_ERROR", message),
        }
    }
}

impl From<Rejected> for IotError {
    fn from(r: Rejected) -> Self {
        IotError::new(r.kind, r.name, r.reason)
    }
}

impl From<ApiError> for IotError {
    fn from(e: ApiError) -> Self {
        IotError::new(e.0.kind, "WRONG_SYNTAX", e.0.detail)
    }
}

impl IntoResponse for IotError {
    fn into_response(self) -> Response {
        let error = NgsiLdError::new(self.kind, self.message.clone());
        if self.kind == ErrorKind::InternalError {
            tracing::error!(detail = %self.message, "ingestion failed");
        }
        let mut body = error.problem_details();
        if let Some(map) = body.as_object_mut() {
            map.insert("name".into(), Value::String(self.name.to_owned()));
            map.insert("message".into(), Value::String(self.message));
        }
        let status = StatusCode::from_u16(error.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        (status, [(header::CONTENT_TYPE, "application/json")], body.to_string()).into_response()
    }
}

type IotResult<T = Response> = Result<T, IotError>;

/// What an ingestion handler knows of its request: the tenant (admitted), the service path, the
/// query parameters (each checked against what the route knows).
pub struct IotCall {
    pub tenant: String,
    /// Whether the request named its tenant (a southbound request that does not is any group's).
    pub named: bool,
    pub servicepath: String,
    pub query: HashMap<String, String>,
}

fn header_text<'a>(headers: &'a HeaderMap, name: &str) -> Result<Option<&'a str>, IotError> {
    match headers.get(name) {
        None => Ok(None),
        Some(v) => v.to_str().map(|s| Some(s.trim())).map_err(|_| {
            IotError::new(ErrorKind::BadRequestData, "WRONG_SYNTAX", format!("the {name} header is not visible ASCII"))
        }),
    }
}

impl<S: Send + Sync> FromRequestParts<S> for IotCall {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Response> {
        read_call(parts).map_err(IntoResponse::into_response)
    }
}

fn read_call(parts: &Parts) -> Result<IotCall, IotError> {
    let named = header_text(&parts.headers, "ngsild-tenant")?.or(header_text(&parts.headers, "fiware-service")?);
    let tenant = named.unwrap_or("").to_owned();
    if tenant.len() > 128 || tenant.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return Err(IotError::syntax(format!("invalid tenant name {tenant:?}")));
    }
    // The gate admitted the caller for this route and tenant (access::MERGED_TABLE).
    admitted(parts)?;
    let servicepath = header_text(&parts.headers, "fiware-servicepath")?.unwrap_or("/").to_owned();
    let query = form_urlencoded::parse(parts.uri.query().unwrap_or("").as_bytes()).into_owned().collect();
    Ok(IotCall { tenant, named: named.is_some(), servicepath, query })
}

impl IotCall {
    /// Refuses query parameters other than `known`.
    fn known(&self, known: &[&str]) -> Result<(), IotError> {
        match self.query.keys().find(|k| !known.contains(&k.as_str())) {
            Some(unknown) => Err(IotError::new(
                ErrorKind::InvalidRequest,
                "WRONG_SYNTAX",
                ngsild_core::params::unknown(unknown, known),
            )),
            None => Ok(()),
        }
    }

    fn required(&self, name: &str) -> Result<&str, IotError> {
        self.query
            .get(name)
            .map(String::as_str)
            .filter(|v| !v.is_empty())
            .ok_or_else(|| IotError::syntax(format!("the query parameter {name} is required")))
    }

    fn page(&self) -> Result<(usize, usize), IotError> {
        let number = |name: &str, default: usize| match self.query.get(name) {
            None => Ok(default),
            Some(v) => {
                v.parse::<usize>().map_err(|_| IotError::syntax(format!("{name} must be a whole number, not {v:?}")))
            }
        };
        Ok((number("offset", 0)?, number("limit", 1000)?.min(1000)))
    }
}

fn json_body(body: &Bytes) -> Result<Value, IotError> {
    serde_json::from_slice(body).map_err(|e| IotError::syntax(format!("the body is not JSON: {e}")))
}

/// The items of `{key: [...]}`.
fn items(body: &Bytes, key: &str) -> Result<Vec<Value>, IotError> {
    match json_body(body)? {
        Value::Object(mut map) => match map.remove(key) {
            Some(Value::Array(items)) if !items.is_empty() => Ok(items),
            _ => Err(IotError::syntax(format!("the body must be {{\"{key}\": [...]}} with at least one item"))),
        },
        _ => Err(IotError::syntax(format!("the body must be {{\"{key}\": [...]}}"))),
    }
}

fn created() -> Response {
    StatusCode::CREATED.into_response()
}

fn no_content() -> Response {
    StatusCode::NO_CONTENT.into_response()
}

fn ok_json(body: Value) -> Response {
    (StatusCode::OK, [(header::CONTENT_TYPE, "application/json")], body.to_string()).into_response()
}

async fn create_services(Extension(ingest): Extension<Arc<Ingest>>, call: IotCall, body: Bytes) -> IotResult {
    call.known(&[])?;
    let mut groups = Vec::new();
    for item in items(&body, "services")? {
        let mut group = read_group(item).map_err(|why| refused(&why))?;
        group.service = call.tenant.clone();
        group.subservice = call.servicepath.clone();
        groups.push(group);
    }
    ingest.registry.create_groups(groups).await?;
    Ok(created())
}

/// A provisioning refusal: unsupported features are OperationNotSupported, the rest syntax.
fn refused(why: &str) -> IotError {
    if why.contains("not supported") {
        IotError::new(ErrorKind::OperationNotSupported, "UNSUPPORTED_FEATURE", why)
    } else {
        IotError::syntax(why)
    }
}

async fn list_services(Extension(ingest): Extension<Arc<Ingest>>, call: IotCall) -> IotResult {
    call.known(&["limit", "offset", "apikey", "resource"])?;
    let (offset, limit) = call.page()?;
    let groups: Vec<_> = ingest
        .registry
        .groups(&call.tenant)
        .into_iter()
        .filter(|g| call.query.get("apikey").is_none_or(|k| *k == g.apikey))
        .filter(|g| call.query.get("resource").is_none_or(|r| *r == g.resource))
        .collect();
    let count = groups.len();
    let page: Vec<_> = groups.into_iter().skip(offset).take(limit).collect();
    Ok(ok_json(json!({"count": count, "services": page})))
}

async fn update_service(Extension(ingest): Extension<Arc<Ingest>>, call: IotCall, body: Bytes) -> IotResult {
    call.known(&["apikey", "resource"])?;
    let apikey = call.required("apikey")?;
    ingest.registry.update_group(&call.tenant, apikey, &json_body(&body)?).await?;
    Ok(no_content())
}

async fn delete_service(Extension(ingest): Extension<Arc<Ingest>>, call: IotCall) -> IotResult {
    call.known(&["apikey", "resource", "device"])?;
    let apikey = call.required("apikey")?;
    ingest.registry.delete_group(&call.tenant, apikey).await?;
    Ok(no_content())
}

async fn create_devices(Extension(ingest): Extension<Arc<Ingest>>, call: IotCall, body: Bytes) -> IotResult {
    call.known(&[])?;
    let mut devices = Vec::new();
    for item in items(&body, "devices")? {
        let mut device = read_device(item).map_err(|why| refused(&why))?;
        device.service = call.tenant.clone();
        device.subservice = call.servicepath.clone();
        devices.push(device);
    }
    ingest.registry.create_devices(&call.tenant, devices).await?;
    Ok(created())
}

async fn list_devices(Extension(ingest): Extension<Arc<Ingest>>, call: IotCall) -> IotResult {
    call.known(&["limit", "offset", "detailed", "protocol"])?;
    let (offset, limit) = call.page()?;
    let devices = ingest.registry.devices(&call.tenant);
    let count = devices.len();
    let page: Vec<_> = devices.into_iter().skip(offset).take(limit).collect();
    Ok(ok_json(json!({"count": count, "devices": page})))
}

async fn get_device(Extension(ingest): Extension<Arc<Ingest>>, call: IotCall, Path(id): Path<String>) -> IotResult {
    call.known(&[])?;
    let device = ingest.registry.device(&call.tenant, &id).ok_or_else(|| crate::registry::device_not_found(&id))?;
    Ok(ok_json(json!(device)))
}

async fn update_device(
    Extension(ingest): Extension<Arc<Ingest>>,
    call: IotCall,
    Path(id): Path<String>,
    body: Bytes,
) -> IotResult {
    call.known(&[])?;
    ingest.registry.update_device(&call.tenant, &id, &json_body(&body)?).await?;
    Ok(no_content())
}

async fn delete_device(Extension(ingest): Extension<Arc<Ingest>>, call: IotCall, Path(id): Path<String>) -> IotResult {
    call.known(&[])?;
    ingest.registry.delete_device(&call.tenant, &id).await?;
    Ok(no_content())
}

async fn southbound(ingest: &Ingest, call: &IotCall, format: Format, path: &str, body: &Bytes) -> IotResult {
    call.known(&["k", "i", "t", "getCmd"])?;
    let (apikey, device_id) = (call.required("k")?, call.required("i")?);
    let mut payload = body.to_vec();
    if let (Some(t), Format::Json) = (call.query.get("t"), format) {
        // `?t=` is the time of the measures, as in IoT Agent JSON.
        if let Ok(Value::Object(mut map)) = serde_json::from_slice::<Value>(body) {
            map.entry("TimeInstant").or_insert_with(|| Value::String(t.clone()));
            payload = Value::Object(map).to_string().into_bytes();
        }
    }
    let message = Message {
        apikey,
        device_id,
        format: Some(format),
        single: None,
        payload: &payload,
        source: format!("POST {path}?k={apikey}&i={device_id}"),
        tenant: call.named.then_some(call.tenant.as_str()),
    };
    let pending = ingest.agent.submit(message, true).await?;
    if let Some(pending) = pending {
        match pending.await {
            Ok(Ok(())) => {}
            Ok(Err(rejected)) => return Err(rejected.into()),
            Err(_) => {
                return Err(IotError::new(ErrorKind::InternalError, "INTERNAL_ERROR", "the ingestion writer stopped"))
            }
        }
    }
    Ok(StatusCode::OK.into_response())
}

async fn southbound_json(Extension(ingest): Extension<Arc<Ingest>>, call: IotCall, body: Bytes) -> IotResult {
    southbound(&ingest, &call, Format::Json, "/iot/json", &body).await
}

async fn southbound_ul(Extension(ingest): Extension<Arc<Ingest>>, call: IotCall, body: Bytes) -> IotResult {
    southbound(&ingest, &call, Format::UltraLight, "/iot/d", &body).await
}

async fn status(Extension(ingest): Extension<Arc<Ingest>>, call: IotCall) -> IotResult {
    call.known(&["kind", "name"])?;
    let (kind, name) = (call.query.get("kind").map(|k| k.as_str()), call.query.get("name").map(|n| n.as_str()));
    let sources: Vec<Value> = ingest
        .status
        .sources_where(Some(&call.tenant), kind, name)
        .into_iter()
        .map(|(key, counters)| {
            let mut doc = json!({"kind": key.kind, "name": key.name});
            if let (Some(doc), Value::Object(c)) = (doc.as_object_mut(), json!(counters)) {
                doc.extend(c);
            }
            doc
        })
        .collect();
    Ok(ok_json(json!({"tenant": call.tenant, "sources": sources})))
}

async fn dead_letters(Extension(ingest): Extension<Arc<Ingest>>, call: IotCall) -> IotResult {
    call.known(&[])?;
    let letters = ingest.status.dead_letters(Some(&call.tenant));
    Ok(ok_json(json!({"count": letters.len(), "deadLetters": letters})))
}

/// POST /cityhub/v1/ngsiv2/notify: each entity of an Orion notification upserted (its
/// attributes appended, overwriting) in one store call; 204 when all are stored, 207 with the
/// entities that were and the errors of those that were not.
async fn ngsiv2_notify(
    State(state): State<SharedState>,
    Extension(ingest): Extension<Arc<Ingest>>,
    call: IotCall,
    body: Bytes,
) -> IotResult {
    call.known(&[])?;
    let at = ngsild_core::time::now();
    let doc = json_body(&body)?;
    let subscription = doc.get("subscriptionId").and_then(Value::as_str).unwrap_or("(none)").to_owned();
    let keys = [SourceKey::new(&call.tenant, "ngsiv2", &subscription)];
    ingest.status.received(&keys, &at);
    let source = format!("POST /cityhub/v1/ngsiv2/notify subscription {subscription}");
    let converted = notification_entities(&doc, &V2Options::default()).map_err(|e| {
        ingest.status.rejected(&keys, &at, &source, &e.0, &body);
        IotError::syntax(e.0)
    })?;
    let (modifications, mut errors) = crate::intake::upserts(converted);
    let ids: Vec<String> = modifications.iter().map(|(id, _)| id.clone()).collect();
    let results = state.store.modify(&call.tenant, modifications).await.map_err(ApiError::from)?;
    let mut stored = Vec::new();
    for (id, result) in ids.into_iter().zip(results) {
        match result {
            Ok(_) => stored.push(id),
            Err(e) => errors.push((id, e)),
        }
    }
    if errors.is_empty() {
        ingest.status.stored(&keys, &at);
        return Ok(no_content());
    }
    let reasons: Vec<String> = errors.iter().map(|(id, e)| format!("{id}: {}", e.detail)).collect();
    ingest.status.rejected(&keys, &at, &source, &reasons.join("; "), &body);
    if stored.is_empty() {
        return Err(IotError::syntax(format!("no entity of the notification was stored: {}", reasons.join("; "))));
    }
    let errors: Vec<Value> =
        errors.into_iter().map(|(id, e)| json!({"entityId": id, "error": e.problem_details()})).collect();
    Ok((
        StatusCode::MULTI_STATUS,
        [(header::CONTENT_TYPE, "application/json")],
        json!({"success": stored, "errors": errors}).to_string(),
    )
        .into_response())
}
