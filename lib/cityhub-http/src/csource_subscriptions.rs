//! `/csourceSubscriptions` (clauses 5.11, 6.10, 6.11): subscriptions to context source
//! registrations. They use the Subscription data type of `cityhub_notify::subscription`, are
//! stored as records (`RecordKind::CSourceSubscription`), and notify their endpoint (HTTP POST,
//! a `CSourceNotification`) when a registration they match is created, updated or deleted, and
//! once on creation with every registration that matches then. Delivery statistics are kept in
//! memory, as those of the forwarding client.

use std::collections::HashMap;
use std::sync::Mutex;

use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use bytes::Bytes;
use cityhub_notify::subscription::{self, Subscription};
use cityhub_storage::{DeliveryStatus, RecordKind};
use ngsild_core::time::now;
use ngsild_core::NgsiLdError;
use ngsild_federation::registration::render_registration;
use ngsild_federation::Registration;
use serde_json::{json, Value};

use crate::error::{ApiError, ApiResult};
use crate::request::{accept, as_object, body_ld, existing_tenant, header_ld, tenant, Params};
use crate::response::{created, ld_json, no_content, path_segment, with_header};
use crate::SharedState;

/// Delivery statistics per (tenant, subscription id).
#[derive(Default)]
pub struct CSourceNotifier {
    stats: Mutex<HashMap<(String, String), DeliveryStatus>>,
    client: reqwest::Client,
}

fn location(id: &str) -> String {
    format!("/ngsi-ld/v1/csourceSubscriptions/{}", path_segment(id))
}

fn not_found(id: &str) -> ApiError {
    NgsiLdError::not_found(format!("csource subscription {id} not found")).into()
}

fn check_id(id: &str) -> Result<(), NgsiLdError> {
    ngsild_core::validate::check_uri(id, "the subscription id")
}

async fn load(state: &SharedState, tenant: &str) -> Result<Vec<Subscription>, ApiError> {
    let docs = state.store.list_records(tenant, RecordKind::CSourceSubscription).await?;
    Ok(docs.into_iter().filter_map(|d| serde_json::from_value(d).ok()).collect())
}

async fn save(state: &SharedState, tenant: &str, sub: &Subscription) -> Result<(), ApiError> {
    let doc = serde_json::to_value(sub).map_err(|e| NgsiLdError::internal(e.to_string()))?;
    state.store.put_record(tenant, RecordKind::CSourceSubscription, &sub.id, doc).await?;
    Ok(())
}

fn status(state: &SharedState, tenant: &str, id: &str) -> DeliveryStatus {
    state.csource_notifier.stats.lock().unwrap().get(&(tenant.to_owned(), id.to_owned())).cloned().unwrap_or_default()
}

fn render(state: &SharedState, tenant: &str, sub: &Subscription, ctx: &ngsild_jsonld::Context, sys: bool) -> Value {
    Value::Object(subscription::render(sub, &status(state, tenant, &sub.id), ctx, sys))
}

/// POST /csourceSubscriptions
pub async fn create(
    State(state): State<SharedState>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
    body: Bytes,
) -> ApiResult {
    Params::parse(raw.as_deref(), &["local"])?;
    let tenant = tenant(&headers)?;
    let (value, ld) = body_ld(&state, &headers, &body, false).await?;
    let mut map = as_object(value, "a subscription")?;
    // temporalQ (registrations' time ranges) is not evaluated.
    map.remove("temporalQ");
    let sub = subscription::from_payload(&map, &ld.ctx, ld.given.clone(), &now())?;
    let _writing = state.federation.writes.lock().await;
    if load(&state, &tenant).await?.iter().any(|s| s.id == sub.id) {
        return Err(NgsiLdError::already_exists(format!("csource subscription {} already exists", sub.id)).into());
    }
    save(&state, &tenant, &sub).await?;
    // The initial notification: every registration that matches now.
    let regs = state.federation.registrations(state.store.as_ref(), &tenant).await?;
    let matching: Vec<Registration> = regs.iter().filter(|r| matches(&sub, r)).cloned().collect();
    if active(&sub) && !matching.is_empty() {
        notify(&state, &tenant, &sub, matching, "newlyMatching").await;
    }
    Ok(created(&location(&sub.id)))
}

/// GET /csourceSubscriptions/{id}
pub async fn retrieve(
    State(state): State<SharedState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    RawQuery(raw): RawQuery,
) -> ApiResult {
    let params = Params::parse(raw.as_deref(), &["options", "local"])?;
    let accept = accept(&headers, false)?;
    check_id(&id)?;
    let tenant = existing_tenant(&state, &headers).await?;
    let ld = header_ld(&state, &headers).await?;
    let sub = load(&state, &tenant).await?.into_iter().find(|s| s.id == id).ok_or_else(|| not_found(&id))?;
    Ok(ld_json(StatusCode::OK, render(&state, &tenant, &sub, &ld.ctx, params.sys_attrs_only()?), &ld, accept))
}

/// GET /csourceSubscriptions
pub async fn query(State(state): State<SharedState>, headers: HeaderMap, RawQuery(raw): RawQuery) -> ApiResult {
    let params = Params::parse(raw.as_deref(), &["limit", "offset", "count", "options", "local"])?;
    let accept = accept(&headers, false)?;
    let tenant = existing_tenant(&state, &headers).await?;
    let ld = header_ld(&state, &headers).await?;
    let paging = params.page(&state.config)?;
    let cityhub_storage::Paging { offset, limit, count } = paging;
    let sys = params.sys_attrs_only()?;
    let all = load(&state, &tenant).await?;
    let page: Vec<Value> =
        all.iter().skip(offset).take(limit).map(|s| render(&state, &tenant, s, &ld.ctx, sys)).collect();
    let mut response = ld_json(StatusCode::OK, Value::Array(page), &ld, accept);
    if count {
        response = with_header(response, "ngsild-results-count", &all.len().to_string());
    }
    Ok(response)
}

/// PATCH /csourceSubscriptions/{id}
pub async fn update(
    State(state): State<SharedState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    RawQuery(raw): RawQuery,
    body: Bytes,
) -> ApiResult {
    Params::parse(raw.as_deref(), &["local"])?;
    check_id(&id)?;
    let tenant = existing_tenant(&state, &headers).await?;
    let (value, ld) = body_ld(&state, &headers, &body, true).await?;
    let mut fragment = as_object(value, "a subscription fragment")?;
    fragment.remove("temporalQ");
    let _writing = state.federation.writes.lock().await;
    let current = load(&state, &tenant).await?.into_iter().find(|s| s.id == id).ok_or_else(|| not_found(&id))?;
    let mut next = subscription::patch(&current, &fragment, &ld.ctx, &now())?;
    if ld.given.is_some() {
        next.context = ld.given.clone();
    }
    save(&state, &tenant, &next).await?;
    Ok(no_content())
}

/// DELETE /csourceSubscriptions/{id}
pub async fn delete(
    State(state): State<SharedState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    RawQuery(raw): RawQuery,
) -> ApiResult {
    Params::parse(raw.as_deref(), &["local"])?;
    check_id(&id)?;
    let tenant = existing_tenant(&state, &headers).await?;
    let _writing = state.federation.writes.lock().await;
    if !state.store.delete_record(&tenant, RecordKind::CSourceSubscription, &id).await? {
        return Err(not_found(&id));
    }
    state.csource_notifier.stats.lock().unwrap().remove(&(tenant, id));
    Ok(no_content())
}

fn active(sub: &Subscription) -> bool {
    sub.is_active && sub.expires_at.as_deref().is_none_or(|at| at > now().as_str())
}

/// Whether a registration is of interest to a subscription: an entity selector of the
/// subscription meets one of the registration's (same type; ids, when both name one, equal),
/// and a watched attribute is among those it registers (a registration naming none has all).
pub fn matches(sub: &Subscription, reg: &Registration) -> bool {
    let entities_match = sub.entities.is_empty()
        || sub.entities.iter().any(|want| {
            reg.information.iter().any(|info| {
                info.entities.is_empty()
                    || info.entities.iter().any(|have| {
                        let type_ok = want.r#type.as_ref().is_none_or(|t| have.types.iter().any(|h| h == t));
                        let id_ok = match (&want.id, &have.id) {
                            (Some(a), Some(b)) => a == b,
                            _ => true,
                        };
                        type_ok && id_ok
                    })
            })
        });
    let attrs_match = sub.watched_attributes.is_empty()
        || reg.information.iter().any(|info| {
            let names: Vec<&String> = info.attribute_names().collect();
            names.is_empty() || names.iter().any(|n| sub.watched_attributes.contains(n))
        });
    entities_match && attrs_match
}

/// Tells the tenant's csource subscriptions that a registration changed: `before`/`after` are
/// its versions (None: it did not exist / no longer exists).
pub async fn registration_changed(
    state: &SharedState,
    tenant: &str,
    before: Option<&Registration>,
    after: Option<&Registration>,
) {
    let Ok(subs) = load(state, tenant).await else { return };
    for sub in subs.iter().filter(|s| active(s)) {
        let was = before.is_some_and(|r| matches(sub, r));
        let is = after.is_some_and(|r| matches(sub, r));
        let (reason, reg) = match (was, is) {
            (false, true) => ("newlyMatching", after),
            (true, true) => ("updated", after),
            (true, false) => ("noLongerMatching", after.or(before)),
            (false, false) => continue,
        };
        if let Some(reg) = reg {
            notify(state, tenant, sub, vec![reg.clone()], reason).await;
        }
    }
}

/// Sends one CSourceNotification in the background.
async fn notify(state: &SharedState, tenant: &str, sub: &Subscription, regs: Vec<Registration>, reason: &str) {
    let ctx = match &sub.context {
        Some(c) => state.contexts.resolve(c).await.unwrap_or_else(|_| state.contexts.core()),
        None => state.contexts.core(),
    };
    let data: Vec<Value> = regs.iter().map(|r| Value::Object(render_registration(r, &ctx, false))).collect();
    let ld = sub.notification.endpoint.accept.contains("ld+json");
    let mut body = json!({
        "id": format!("urn:ngsi-ld:Notification:{}", uuid::Uuid::new_v4()),
        "type": "ContextSourceNotification",
        "subscriptionId": sub.id,
        "notifiedAt": now(),
        "data": data,
        "triggerReason": reason,
    });
    let context = sub.context.clone().unwrap_or_else(|| json!(ngsild_jsonld::CORE_CONTEXT_URL));
    if ld {
        body["@context"] = context.clone();
    }
    let state = state.clone();
    let (tenant, id, endpoint) = (tenant.to_owned(), sub.id.clone(), sub.notification.endpoint.clone());
    tokio::spawn(async move {
        let mut request = state
            .csource_notifier
            .client
            .post(&endpoint.uri)
            .timeout(std::time::Duration::from_secs(5))
            .header("Content-Type", if ld { "application/ld+json" } else { "application/json" });
        if !ld {
            let url = match &context {
                Value::String(s) => s.clone(),
                Value::Array(items) if items.len() == 1 => {
                    items[0].as_str().unwrap_or(ngsild_jsonld::CORE_CONTEXT_URL).to_owned()
                }
                _ => ngsild_jsonld::CORE_CONTEXT_URL.to_owned(),
            };
            request = request.header(
                "Link",
                format!("<{url}>; rel=\"http://www.w3.org/ns/json-ld#context\"; type=\"application/ld+json\""),
            );
        }
        if !tenant.is_empty() {
            request = request.header(crate::request::TENANT_HEADER, &tenant);
        }
        for kv in &endpoint.receiver_info {
            request = request.header(kv.key.as_str(), kv.value.as_str());
        }
        let at = now();
        let ok = matches!(request.body(body.to_string()).send().await, Ok(r) if r.status().is_success());
        let mut stats = state.csource_notifier.stats.lock().unwrap();
        let status = stats.entry((tenant, id)).or_default();
        status.times_sent += 1;
        status.last_notification = Some(at.clone());
        if ok {
            status.last_success = Some(at);
        } else {
            status.times_failed += 1;
            status.last_failure = Some(at);
        }
    });
}
