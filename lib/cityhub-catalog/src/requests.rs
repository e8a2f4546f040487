//! `/cityhub/v1/access-requests`: access requests for datasets, their decisions and their usage
//! (the rules are [`crate::grant`]'s).
//!
//! | route | who |
//! |---|---|
//! | `POST /cityhub/v1/access-requests` `{dataset, purpose, contact}` | an identity (key or token) |
//! | `GET /cityhub/v1/access-requests[/{id}]` | the requester its own; admins all of the tenant, with usage |
//! | `POST .../{id}/approve` `{expiresAt, rateLimit}` | admin: issues the key, shown once |
//! | `POST .../{id}/refuse` `{reason}`, `POST .../{id}/revoke` | admin |
//! | `GET .../{id}/usage` | admin |
//!
//! Approval issues an API key (`cityhub_auth::issue_key`: role `public` in the tenant, the
//! expiry and rate given) and stores the grant's allow policy for that key (`RecordKind::Policy`),
//! so the hub's one access decision opens the dataset's selection to it and nothing else;
//! revocation revokes the key and deletes the policy. Requests are `RecordKind::AccessRequest`
//! records, usage `RecordKind::AccessUsage` (counted when a download ends; two downloads ending
//! at the same moment at two hubs may count as one, as the record is read, added to and
//! replaced).

use std::sync::Arc;

use axum::extract::Path;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Router};
use cityhub_access::{Identity, Role};
use cityhub_http::extract::{JsonBody, Read, Update};
use cityhub_http::{ApiError, SharedState};
use cityhub_storage::{DynStore, RecordKind};
use ngsild_core::NgsiLdError;
use serde_json::{json, Value};

use crate::grant::{self, AccessRequest, Approval, Usage};
use crate::state::{Catalog, NoParams};

type Answer = Result<Response, ApiError>;

pub fn routes() -> Router<SharedState> {
    Router::new()
        .route("/cityhub/v1/access-requests", get(list).post(create))
        .route("/cityhub/v1/access-requests/{id}", get(retrieve))
        .route("/cityhub/v1/access-requests/{id}/approve", post(approve))
        .route("/cityhub/v1/access-requests/{id}/refuse", post(refuse))
        .route("/cityhub/v1/access-requests/{id}/revoke", post(revoke))
        .route("/cityhub/v1/access-requests/{id}/usage", get(usage))
}

fn answer(status: StatusCode, body: &Value) -> Response {
    (status, [(header::CONTENT_TYPE, "application/json")], serde_json::to_vec(body).unwrap_or_default()).into_response()
}

fn internal(e: impl std::fmt::Display) -> NgsiLdError {
    NgsiLdError::internal(e.to_string())
}

/// Every access request of a tenant.
pub async fn requests(store: &DynStore, tenant: &str) -> Result<Vec<AccessRequest>, NgsiLdError> {
    let docs = store.list_records(tenant, RecordKind::AccessRequest).await?;
    docs.into_iter()
        .map(|d| serde_json::from_value(d).map_err(|e| internal(format!("a stored access request does not read: {e}"))))
        .collect()
}

async fn find(store: &DynStore, tenant: &str, id: &str, caller: &Identity) -> Result<AccessRequest, NgsiLdError> {
    requests(store, tenant).await?.into_iter().find(|r| r.id == id && r.shown_to(caller, tenant)).ok_or_else(|| {
        NgsiLdError::not_found(format!(
            "no access request {id:?} of yours in this tenant: GET /cityhub/v1/access-requests lists them"
        ))
    })
}

async fn save(store: &DynStore, tenant: &str, request: &AccessRequest) -> Result<(), NgsiLdError> {
    let doc = serde_json::to_value(request).map_err(internal)?;
    match store.replace_record(tenant, RecordKind::AccessRequest, &request.id, doc).await? {
        true => Ok(()),
        false => Err(NgsiLdError::not_found(format!("access request {} was deleted meanwhile", request.id))),
    }
}

/// The usage of one consumer of one dataset (zero when it took nothing yet).
pub async fn usage_of(store: &DynStore, tenant: &str, dataset: &str, consumer: &str) -> Result<Usage, NgsiLdError> {
    let key = Usage::key(dataset, consumer);
    for doc in store.list_records(tenant, RecordKind::AccessUsage).await? {
        let u: Usage = serde_json::from_value(doc).map_err(internal)?;
        if Usage::key(&u.dataset, &u.consumer) == key {
            return Ok(u);
        }
    }
    Ok(Usage { dataset: dataset.to_owned(), consumer: consumer.to_owned(), ..Usage::default() })
}

/// Counts a download of `rows` rows and `bytes` bytes by `consumer`.
pub async fn count(store: &DynStore, tenant: &str, dataset: &str, consumer: &str, rows: u64, bytes: u64) {
    let counted = async {
        let mut u = usage_of(store, tenant, dataset, consumer).await?;
        u.add(rows, bytes, &ngsild_core::time::now());
        let key = Usage::key(dataset, consumer);
        let doc = serde_json::to_value(&u).map_err(internal)?;
        if !store.replace_record(tenant, RecordKind::AccessUsage, &key, doc.clone()).await? {
            store.create_record(tenant, RecordKind::AccessUsage, &key, doc).await??;
        }
        Ok::<_, NgsiLdError>(())
    };
    if let Err(e) = counted.await {
        tracing::warn!(dataset, consumer, error = %e.detail, "a download's usage could not be counted");
    }
}

fn view(r: &AccessRequest, usage: Option<&Usage>) -> Value {
    let mut v = serde_json::to_value(r).unwrap_or(Value::Null);
    if let Some(u) = usage {
        v["usage"] = json!({"requests": u.requests, "rows": u.rows, "bytes": u.bytes, "lastAt": u.last_at});
    }
    v
}

fn by(caller: &Identity) -> String {
    caller.subject.clone().unwrap_or_else(|| "admin".to_owned())
}

async fn create(Extension(c): Extension<Arc<Catalog>>, u: Update<NoParams>, body: JsonBody) -> Answer {
    let requester = grant::requester(&u.caller, &u.tenant)?;
    let datasets = c.datasets(&u.tenant).await?;
    let id = format!("ar-{}", &uuid::Uuid::new_v4().simple().to_string()[..16]);
    let request = AccessRequest::read(&body.value, id, requester, &datasets, &ngsild_core::time::now())?;
    let doc = serde_json::to_value(&request).map_err(internal)?;
    c.store.create_record(&u.tenant, RecordKind::AccessRequest, &request.id, doc).await??;
    let mut response = answer(StatusCode::CREATED, &view(&request, None));
    if let Ok(v) = HeaderValue::from_str(&format!("/cityhub/v1/access-requests/{}", request.id)) {
        response.headers_mut().insert(header::LOCATION, v);
    }
    Ok(response)
}

async fn list(Extension(c): Extension<Arc<Catalog>>, r: Read<NoParams>) -> Answer {
    let admin = r.caller.role_in(&r.tenant) == Role::Admin;
    let mut shown = Vec::new();
    for request in requests(&c.store, &r.tenant).await? {
        if !request.shown_to(&r.caller, &r.tenant) {
            continue;
        }
        let usage = match (admin, &request.key_id) {
            (true, Some(key)) => Some(usage_of(&c.store, &r.tenant, &request.dataset, key).await?),
            _ => None,
        };
        shown.push(view(&request, usage.as_ref()));
    }
    Ok(answer(StatusCode::OK, &Value::Array(shown)))
}

async fn retrieve(Extension(c): Extension<Arc<Catalog>>, Path(id): Path<String>, r: Read<NoParams>) -> Answer {
    let request = find(&c.store, &r.tenant, &id, &r.caller).await?;
    Ok(answer(StatusCode::OK, &view(&request, None)))
}

async fn approve(
    Extension(c): Extension<Arc<Catalog>>,
    Path(id): Path<String>,
    u: Update<NoParams>,
    body: JsonBody,
) -> Answer {
    let mut request = find(&c.store, &u.tenant, &id, &u.caller).await?;
    request.can_approve()?;
    let approval = Approval::read(&body.value, chrono::Utc::now())?;
    let dataset = c.dataset(&u.tenant, &request.dataset).await?;
    let ctx = ngsild_jsonld::core_context();
    let ty = |t: &str| ctx.expand_term(t).into_owned();
    let attr = |a: &str| ngsild_core::expand::expand_attribute_name(a, &ctx);
    // Checked before a key exists: a dataset that cannot be granted issues none.
    grant::grant_policy(&request, &dataset, "key-?", &ty, &attr)?;
    let name = format!("access request {id} for dataset {}", request.dataset);
    let store = c.store.as_ref();
    let (key_id, secret) = cityhub_auth::issue_key(
        store,
        Some(&u.tenant),
        Role::Public,
        Some(approval.expires),
        Some(&name),
        Some(approval.rate_limit),
    )
    .await?;
    let policy = grant::grant_policy(&request, &dataset, &key_id, &ty, &attr)?;
    let granted = async {
        store.create_record(&u.tenant, RecordKind::Policy, &request.policy_id(), policy).await??;
        request.approve(&approval, key_id.clone(), &by(&u.caller), &ngsild_core::time::now())?;
        save(&c.store, &u.tenant, &request).await
    };
    if let Err(e) = granted.await {
        // Nothing half granted: the key goes, and so does its policy.
        cityhub_auth::revoke_key(store, &key_id).await?;
        store.delete_record(&u.tenant, RecordKind::Policy, &request.policy_id()).await?;
        return Err(e.into());
    }
    // The key works at this hub from the answer on (the store's event reaches the others).
    u.state.auth.keys_changed(store).await?;
    let mut shown = view(&request, None);
    shown["key"] = json!(secret);
    shown["keyNote"] = json!("the key is shown this once and cannot be read back: hand it to the requester now");
    Ok(answer(StatusCode::OK, &shown))
}

async fn refuse(
    Extension(c): Extension<Arc<Catalog>>,
    Path(id): Path<String>,
    u: Update<NoParams>,
    body: JsonBody,
) -> Answer {
    let mut request = find(&c.store, &u.tenant, &id, &u.caller).await?;
    let reason = grant::read_refusal(&body.value)?;
    request.refuse(reason, &by(&u.caller), &ngsild_core::time::now())?;
    save(&c.store, &u.tenant, &request).await?;
    Ok(answer(StatusCode::OK, &view(&request, None)))
}

async fn revoke(Extension(c): Extension<Arc<Catalog>>, Path(id): Path<String>, u: Update<NoParams>) -> Answer {
    let mut request = find(&c.store, &u.tenant, &id, &u.caller).await?;
    request.revoke(&ngsild_core::time::now())?;
    if let Some(key) = &request.key_id {
        cityhub_auth::revoke_key(c.store.as_ref(), key).await?;
        u.state.auth.keys_changed(c.store.as_ref()).await?;
    }
    c.store.delete_record(&u.tenant, RecordKind::Policy, &request.policy_id()).await?;
    save(&c.store, &u.tenant, &request).await?;
    Ok(answer(StatusCode::OK, &view(&request, None)))
}

async fn usage(Extension(c): Extension<Arc<Catalog>>, Path(id): Path<String>, r: Read<NoParams>) -> Answer {
    let request = find(&c.store, &r.tenant, &id, &r.caller).await?;
    let Some(key) = &request.key_id else {
        return Err(NgsiLdError::not_found(format!(
            "access request {id} is {}: only an approved one has a consumer whose usage is counted",
            request.status.name()
        ))
        .into());
    };
    let u = usage_of(&c.store, &r.tenant, &request.dataset, key).await?;
    Ok(answer(StatusCode::OK, &serde_json::to_value(&u).map_err(internal)?))
}
