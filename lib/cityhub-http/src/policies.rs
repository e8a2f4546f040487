//! `/cityhub/v1/policies`: the access policies of a tenant (`cityhub_access::Policy`), managed
//! by its admins (the access table gives these routes to admin only).
//!
//! A policy's names (entity types, attributes) are expanded with the request's @context and
//! stored expanded as a record (`RecordKind::Policy`); they are shown compacted in the
//! request's @context. Every hub's policy cache drops a tenant's entry on the `Records` event of
//! a write, so a policy put at one hub is decided on by every hub.

use axum::http::StatusCode;
use axum::routing::get;
use axum::Router;
use cityhub_access::Policy;
use cityhub_storage::RecordKind;
use ngsild_core::NgsiLdError;
use serde_json::Value;

use crate::error::{ApiError, ApiResult};
use crate::extract::{Call, LdBody, NoParams, PolicyId, Read, Update, Write};
use crate::request::Ld;
use crate::response::{created, no_content, path_segment, plain_json};
use crate::SharedState;

pub fn routes() -> Router<SharedState> {
    Router::new()
        .route("/cityhub/v1/policies", get(list).post(create))
        .route("/cityhub/v1/policies/{id}", get(retrieve).put(replace).delete(delete))
}

fn read(value: &Value, ld: &Ld) -> Result<Policy, ApiError> {
    Policy::from_json(value, &|name| ld.ctx.expand_term(name).into_owned())
        .map_err(|e| ApiError(NgsiLdError::bad_request(format!("the policy's {} {}", e.field, e.why))))
}

/// The stored document shown in the request's @context.
fn shown(doc: &Value, ld: &Ld) -> Value {
    let mut doc = doc.clone();
    for field in ["entityTypes", "hiddenAttributes", "attributes"] {
        if let Some(names) = doc.get_mut(field).and_then(Value::as_array_mut) {
            for name in names.iter_mut() {
                if let Some(iri) = name.as_str() {
                    *name = Value::String(ld.ctx.compact_iri(iri).into_owned());
                }
            }
        }
    }
    doc
}

async fn stored(call: &Call) -> Result<Vec<Policy>, ApiError> {
    let docs = call.state.store.list_records(&call.tenant, RecordKind::Policy).await?;
    docs.iter()
        .map(|d| Policy::from_json(d, &|s| s.to_owned()).map_err(|e| ApiError(NgsiLdError::internal(e.to_string()))))
        .collect()
}

/// Refuses a policy that cannot sit beside the tenant's others (`Policy::conflict_with`).
fn check_beside(policy: &Policy, others: &[Policy]) -> Result<(), ApiError> {
    match others.iter().find_map(|o| policy.conflict_with(o)) {
        Some(e) => Err(ApiError(NgsiLdError::bad_request(format!("the policy's {} {}", e.field, e.why)))),
        None => Ok(()),
    }
}

fn location(id: &str) -> String {
    format!("/cityhub/v1/policies/{}", path_segment(id))
}

/// POST /cityhub/v1/policies
pub async fn create(write: Write<NoParams>, LdBody { value, ld }: LdBody<false>) -> ApiResult {
    let policy = read(&value, &ld)?;
    check_beside(&policy, &stored(&write).await?)?;
    let Call { state, tenant, .. } = &write.call;
    state.store.create_record(tenant, RecordKind::Policy, &policy.id, policy.to_json()).await??;
    Ok(created(&location(&policy.id)))
}

/// GET /cityhub/v1/policies
pub async fn list(read: Read<NoParams>) -> ApiResult {
    let docs = read.state.store.list_records(&read.tenant, RecordKind::Policy).await?;
    let shown: Vec<Value> = docs.iter().map(|d| shown(d, &read.ld)).collect();
    Ok(plain_json(StatusCode::OK, &Value::Array(shown)))
}

/// GET /cityhub/v1/policies/{id}
pub async fn retrieve(PolicyId(id): PolicyId, read: Read<NoParams>) -> ApiResult {
    let docs = read.state.store.list_records(&read.tenant, RecordKind::Policy).await?;
    let doc = docs.iter().find(|d| d["id"] == id.as_str()).ok_or_else(|| not_found(&id))?;
    Ok(plain_json(StatusCode::OK, &shown(doc, &read.ld)))
}

/// PUT /cityhub/v1/policies/{id}: the whole policy again (its `id`, when given, is the path's).
pub async fn replace(
    PolicyId(id): PolicyId,
    update: Update<NoParams>,
    LdBody { mut value, ld }: LdBody<false>,
) -> ApiResult {
    if let Some(doc) = value.as_object_mut() {
        match doc.get("id") {
            None => {
                doc.insert("id".into(), Value::String(id.clone()));
            }
            Some(given) if given != id.as_str() => {
                return Err(NgsiLdError::bad_request(format!(
                    "the policy's id {given} is not the path's {id}: leave it out or make them equal"
                ))
                .into())
            }
            Some(_) => {}
        }
    }
    let policy = read(&value, &ld)?;
    let others: Vec<Policy> = stored(&update).await?.into_iter().filter(|p| p.id != id).collect();
    check_beside(&policy, &others)?;
    let Call { state, tenant, .. } = &update.call;
    if !state.store.replace_record(tenant, RecordKind::Policy, &id, policy.to_json()).await? {
        return Err(not_found(&id));
    }
    Ok(no_content())
}

/// DELETE /cityhub/v1/policies/{id}
pub async fn delete(PolicyId(id): PolicyId, update: Update<NoParams>) -> ApiResult {
    if !update.state.store.delete_record(&update.tenant, RecordKind::Policy, &id).await? {
        return Err(not_found(&id));
    }
    Ok(no_content())
}

fn not_found(id: &str) -> ApiError {
    ApiError(NgsiLdError::not_found(format!("no policy {id} in this tenant: GET /cityhub/v1/policies lists them")))
}
