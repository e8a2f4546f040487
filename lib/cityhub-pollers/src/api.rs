//! `/cityhub/v1/pollers`: create (POST), list (GET), read, replace (PUT) and delete one; each
//! shown with its last-run status. Handlers open with `cityhub_http::extract`'s extractors, so
//! the hub's one access decision covers them.

use axum::extract::Path;
use axum::http::StatusCode;
use axum::response::Response;
use axum::Extension;
use cityhub_http::extract::{Call, JsonBody, NoParams, Read, Update, Write};
use cityhub_http::response::{created, no_content, plain_json};
use cityhub_http::ApiError;
use cityhub_storage::RecordKind;
use ngsild_core::NgsiLdError;
use serde_json::Value;

use crate::poller::{check_id, Poller};
use crate::run::{status, PollerConfig};

type ApiResult<T = Response> = Result<T, ApiError>;

/// The API's base path.
pub const BASE: &str = "/cityhub/v1/pollers";

/// A poller's document with its status.
async fn shown(call: &Call, doc: Value) -> ApiResult<Value> {
    let id = doc.get("id").and_then(Value::as_str).unwrap_or_default().to_owned();
    let status = status(&call.state.store, &call.tenant, &id).await?;
    let mut doc = doc;
    doc["status"] = serde_json::to_value(status.unwrap_or_default()).unwrap_or_default();
    Ok(doc)
}

async fn find(call: &Call, id: &str) -> ApiResult<Value> {
    check_id(id)?;
    let docs = call.state.store.list_records(&call.tenant, RecordKind::Poller).await?;
    let doc = docs.into_iter().find(|d| d.get("id").and_then(Value::as_str) == Some(id));
    Ok(doc.ok_or_else(|| NgsiLdError::not_found(format!("no poller {id} in this tenant")))?)
}

/// A poller's source must be one the hub's egress rules let it reach: refused at once (400), as
/// a subscription's endpoint is, rather than failing at every run. The URL is shown without its
/// query, which may hold the source's API key.
async fn vet(config: &PollerConfig, poller: &Poller) -> ApiResult<()> {
    config.egress.vet(poller.url.as_str()).await.map_err(|refusal| {
        NgsiLdError::bad_request(format!(
            "the poller's url {} is refused by the hub's egress rules: {}",
            poller.shown_url(),
            refusal.detail()
        ))
        .into()
    })
}

/// POST /cityhub/v1/pollers
pub async fn create(Extension(config): Extension<PollerConfig>, write: Write<NoParams>, body: JsonBody) -> ApiResult {
    let Call { state, tenant, .. } = &write.call;
    let poller = Poller::read(body.value, config.min_interval)?;
    vet(&config, &poller).await?;
    state.store.create_record(tenant, RecordKind::Poller, &poller.id, poller.doc.clone()).await??;
    Ok(created(&format!("{BASE}/{}", poller.id)))
}

/// GET /cityhub/v1/pollers
pub async fn list(read: Read<NoParams>) -> ApiResult {
    let docs = read.call.state.store.list_records(&read.call.tenant, RecordKind::Poller).await?;
    let mut out = Vec::with_capacity(docs.len());
    for doc in docs {
        out.push(shown(&read.call, doc).await?);
    }
    Ok(plain_json(StatusCode::OK, &Value::Array(out)))
}

/// GET /cityhub/v1/pollers/{id}
pub async fn retrieve(Path(id): Path<String>, read: Read<NoParams>) -> ApiResult {
    let doc = find(&read.call, &id).await?;
    Ok(plain_json(StatusCode::OK, &shown(&read.call, doc).await?))
}

/// PUT /cityhub/v1/pollers/{id}: the whole definition again (its id may be left out).
pub async fn replace(
    Path(id): Path<String>,
    Extension(config): Extension<PollerConfig>,
    update: Update<NoParams>,
    body: JsonBody,
) -> ApiResult {
    let Call { state, tenant, .. } = &update.call;
    check_id(&id)?;
    let mut doc = body.value;
    match doc.get("id") {
        None if doc.is_object() => doc["id"] = Value::String(id.clone()),
        Some(given) if given != &Value::String(id.clone()) => {
            return Err(NgsiLdError::bad_request(format!("the body's id {given} is not the path's {id:?}")).into())
        }
        _ => {}
    }
    let poller = Poller::read(doc, config.min_interval)?;
    vet(&config, &poller).await?;
    if !state.store.replace_record(tenant, RecordKind::Poller, &id, poller.doc).await? {
        return Err(NgsiLdError::not_found(format!("no poller {id} in this tenant")).into());
    }
    Ok(no_content())
}

/// DELETE /cityhub/v1/pollers/{id}
pub async fn delete(Path(id): Path<String>, update: Update<NoParams>) -> ApiResult {
    let Call { state, tenant, .. } = &update.call;
    check_id(&id)?;
    if !state.store.delete_record(tenant, RecordKind::Poller, &id).await? {
        return Err(NgsiLdError::not_found(format!("no poller {id} in this tenant")).into());
    }
    state.store.delete_record(tenant, RecordKind::PollerStatus, &id).await?;
    Ok(no_content())
}
