//! `/entityOperations/{create,upsert,update,delete,merge}` (clause 5.6.7-5.6.10, 5.6.20).
//!
//! Every entity of a batch is checked and applied on its own; the whole batch is one call to the
//! store, so it costs one durable commit.

use std::sync::Arc;

use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use bytes::Bytes;
use cityhub_storage::{Change, Modified, Modifier};
use ngsild_core::expand::{entity_from_input, expand_fragment, EntityInput};
use ngsild_core::ops;
use ngsild_core::time::now;
use ngsild_core::NgsiLdError;
use ngsild_jsonld::Context;
use serde_json::{json, Value};

use crate::error::ApiResult;
use crate::federation::source_error;
use crate::request::{link_context, read_json_body, tenant, Params};
use crate::response::{no_content, plain_json};
use crate::SharedState;
use ngsild_federation::Operation;

/// An entity id with why it failed.
type Failure = (String, NgsiLdError);

/// An entity of the batch that failed, at the hub or at a context source (its registration).
struct EntityError {
    entity_id: String,
    error: NgsiLdError,
    registration_id: Option<String>,
}

/// The outcome of one entity of a batch.
type ItemResult = Result<(String, Option<Change>), Failure>;

/// Reads a batch body: an array whose items each come with their active @context.
async fn read_batch(
    state: &SharedState,
    headers: &HeaderMap,
    body: &Bytes,
) -> Result<Vec<(Value, Result<Arc<Context>, NgsiLdError>)>, crate::ApiError> {
    let (value, is_ld) = read_json_body(headers, body, false)?;
    let Value::Array(items) = value else {
        return Err(NgsiLdError::bad_request("a batch operation needs a JSON array").into());
    };
    if items.is_empty() {
        return Err(NgsiLdError::bad_request("a batch operation needs at least one item").into());
    }
    let link = link_context(headers)?.map(Value::String);
    let mut out = Vec::with_capacity(items.len());
    for mut item in items {
        let given = if is_ld { item.as_object_mut().and_then(|m| m.remove("@context")) } else { link.clone() };
        let ctx = match (&given, is_ld) {
            _ if !is_ld && item.get("@context").is_some() => {
                Err(NgsiLdError::bad_request("an application/json entity must not contain @context; use a Link header"))
            }
            (Some(g), _) => state.contexts.resolve(g).await,
            (None, true) if item.is_object() => {
                Err(NgsiLdError::bad_request("an application/ld+json entity must contain @context"))
            }
            (None, _) => Ok(state.contexts.core()),
        };
        out.push((item, ctx));
    }
    Ok(out)
}

fn item_id(item: &Value) -> String {
    item.get("id").or_else(|| item.get("@id")).and_then(Value::as_str).unwrap_or("").to_owned()
}

/// Expands every item; items that fail are answered at once, the rest go to the store.
fn expand_items(
    items: Vec<(Value, Result<Arc<Context>, NgsiLdError>)>,
    need_type: bool,
) -> (Vec<(String, EntityInput)>, Vec<Failure>) {
    let mut ok = Vec::new();
    let mut failed = Vec::new();
    for (item, ctx) in items {
        let id = item_id(&item);
        let result = ctx.and_then(|ctx| {
            let map = item.as_object().ok_or_else(|| NgsiLdError::bad_request("a batch item must be a JSON object"))?;
            let input = expand_fragment(map, &ctx)?;
            if input.id.is_none() {
                return Err(NgsiLdError::bad_request("the entity has no id"));
            }
            if need_type && input.types.is_empty() {
                return Err(NgsiLdError::bad_request("the entity has no type"));
            }
            Ok(input)
        });
        match result {
            Ok(input) => ok.push((id, input)),
            Err(e) => failed.push((id, e)),
        }
    }
    (ok, failed)
}

async fn apply(
    state: &SharedState,
    tenant: &str,
    modifications: Vec<(String, Modifier)>,
) -> Result<Vec<ItemResult>, crate::ApiError> {
    let ids: Vec<String> = modifications.iter().map(|(id, _)| id.clone()).collect();
    let results = state.store.modify(tenant, modifications).await?;
    Ok(ids.into_iter().zip(results).map(|(id, r)| r.map(|c| (id.clone(), Some(c))).map_err(|e| (id, e))).collect())
}

/// The BatchOperationResult body (clause 5.2.16).
fn batch_result(successes: &[String], errors: &[EntityError]) -> Value {
    let errors: Vec<Value> = errors
        .iter()
        .map(|e| crate::provision::batch_entity_error(Some(&e.entity_id), e.registration_id.as_deref(), &e.error))
        .collect();
    json!({"success": successes, "errors": errors})
}

fn split(results: Vec<ItemResult>, mut errors: Vec<Failure>) -> (Vec<(String, Option<Change>)>, Vec<Failure>) {
    let mut ok = Vec::new();
    for r in results {
        match r {
            Ok(x) => ok.push(x),
            Err(e) => errors.push(e),
        }
    }
    (ok, errors)
}

/// 204 when everything succeeded, 207 with a BatchOperationResult otherwise.
fn no_content_or_multi(successes: Vec<String>, errors: Vec<EntityError>) -> Response {
    if errors.is_empty() {
        no_content()
    } else {
        plain_json(StatusCode::MULTI_STATUS, &batch_result(&successes, &errors))
    }
}

/// POST /entityOperations/create
pub async fn create(
    State(state): State<SharedState>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
    body: Bytes,
) -> ApiResult {
    let params = Params::parse(raw.as_deref(), &["local"])?;
    let tenant = tenant(&headers)?;
    let EntityBatch { inputs, mut failed, remote } = entity_batch(
        &state,
        &headers,
        &tenant,
        &params,
        &body,
        true,
        Operation::CREATE_BATCH,
        "/entityOperations/create",
    )
    .await?;
    let mut modifications: Vec<(String, Modifier)> = Vec::new();
    for (id, input) in inputs {
        if modifications.iter().any(|(other, _)| other == &id) {
            failed.push((id, NgsiLdError::already_exists("the entity appears twice in the batch")));
            continue;
        }
        match entity_from_input(&input) {
            Ok(mut entity) => modifications.push((
                id,
                Box::new(move |current| {
                    if current.is_some() {
                        return Err(NgsiLdError::already_exists(format!("entity {} already exists", entity.id)));
                    }
                    ops::stamp_new_entity(&mut entity, &now());
                    Ok(Modified::entity(entity))
                }),
            )),
            Err(e) => failed.push((id, e)),
        }
    }
    let (ok, errors) = split(apply(&state, &tenant, modifications).await?, failed);
    let created: Vec<String> = ok.into_iter().map(|(id, _)| id).collect();
    let (created, errors) = remote.combine(created, errors);
    if errors.is_empty() {
        Ok(remote.warned(plain_json(StatusCode::CREATED, &json!(created))))
    } else {
        Ok(remote.warned(plain_json(StatusCode::MULTI_STATUS, &batch_result(&created, &errors))))
    }
}

/// POST /entityOperations/upsert: creates what is new; replaces (default) or updates what exists.
pub async fn upsert(
    State(state): State<SharedState>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
    body: Bytes,
) -> ApiResult {
    let params = Params::parse(raw.as_deref(), &["options", "local"])?;
    let update_mode = params.has_option("update");
    let tenant = tenant(&headers)?;
    let EntityBatch { inputs, mut failed, remote } = entity_batch(
        &state,
        &headers,
        &tenant,
        &params,
        &body,
        true,
        Operation::UPSERT_BATCH,
        "/entityOperations/upsert",
    )
    .await?;
    let mut modifications: Vec<(String, Modifier)> = Vec::new();
    for (id, input) in inputs {
        let entity = match entity_from_input(&input) {
            Ok(e) => e,
            Err(e) => {
                failed.push((id, e));
                continue;
            }
        };
        modifications.push((
            id,
            Box::new(move |current| {
                let now = now();
                Ok(Modified::entity(match current {
                    None => {
                        let mut entity = entity;
                        ops::stamp_new_entity(&mut entity, &now);
                        entity
                    }
                    Some(mut existing) if update_mode => {
                        ops::upsert_update(&mut existing, &input, false, &now)?;
                        existing
                    }
                    Some(existing) => ops::replace_entity(&existing, entity, &now),
                }))
            }),
        ));
    }
    let (ok, errors) = split(apply(&state, &tenant, modifications).await?, failed);
    let mut created: Vec<String> =
        ok.iter().filter(|(_, c)| c.as_ref().is_some_and(|c| c.before.is_none())).map(|(id, _)| id.clone()).collect();
    created.extend(remote.created.iter().filter(|id| remote.remote_only.contains(id)).cloned());
    let (successes, errors) = remote.combine(ok.into_iter().map(|(id, _)| id).collect(), errors);
    if !errors.is_empty() {
        return Ok(remote.warned(plain_json(StatusCode::MULTI_STATUS, &batch_result(&successes, &errors))));
    }
    if created.is_empty() {
        Ok(remote.warned(no_content()))
    } else {
        Ok(remote.warned(plain_json(StatusCode::CREATED, &json!(created))))
    }
}

/// POST /entityOperations/update: updates existing entities; with noOverwrite, attributes that
/// exist are kept and the entity is reported among the errors, while its new attributes are added.
pub async fn update(
    State(state): State<SharedState>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
    body: Bytes,
) -> ApiResult {
    let params = Params::parse(raw.as_deref(), &["options", "local"])?;
    let no_overwrite = params.has_option("noOverwrite");
    let tenant = tenant(&headers)?;
    let EntityBatch { inputs, failed, remote } = entity_batch(
        &state,
        &headers,
        &tenant,
        &params,
        &body,
        false,
        Operation::UPDATE_BATCH,
        "/entityOperations/update",
    )
    .await?;
    let modifications = inputs
        .into_iter()
        .map(|(id, input)| {
            let missing = id.clone();
            let modifier: Modifier = Box::new(move |current| {
                let mut entity =
                    current.ok_or_else(|| NgsiLdError::not_found(format!("entity {missing} not found")))?;
                let outcome = if no_overwrite {
                    ops::append_attributes(&mut entity, &input, true, &now())?
                } else {
                    ops::update_attributes(&mut entity, &input, &now())?
                };
                Ok(Modified::entity(entity).with_report(Some(outcome)))
            });
            (id, modifier)
        })
        .collect();
    let (ok, mut errors) = split(apply(&state, &tenant, modifications).await?, failed);
    let mut successes = Vec::new();
    for (id, change) in ok {
        match change.and_then(|c| c.report) {
            Some(r) if !r.is_complete() => {
                let names: Vec<&str> = r.not_updated.iter().map(|(n, _)| n.as_str()).collect();
                errors.push((id, NgsiLdError::bad_request(format!("not updated: {}", names.join(", ")))));
            }
            _ => successes.push(id),
        }
    }
    let (successes, errors) = remote.combine(successes, errors);
    Ok(remote.warned(no_content_or_multi(successes, errors)))
}

/// POST /entityOperations/merge
pub async fn merge(
    State(state): State<SharedState>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
    body: Bytes,
) -> ApiResult {
    let params = Params::parse(raw.as_deref(), &["options", "local"])?;
    let tenant = tenant(&headers)?;
    let EntityBatch { inputs, failed, remote } = entity_batch(
        &state,
        &headers,
        &tenant,
        &params,
        &body,
        false,
        Operation::MERGE_BATCH,
        "/entityOperations/merge",
    )
    .await?;
    let modifications = inputs
        .into_iter()
        .map(|(id, input)| {
            let missing = id.clone();
            let modifier: Modifier = Box::new(move |current| {
                let mut entity =
                    current.ok_or_else(|| NgsiLdError::not_found(format!("entity {missing} not found")))?;
                ops::merge_entity(&mut entity, &input, &now())?;
                Ok(Modified::entity(entity))
            });
            (id, modifier)
        })
        .collect();
    let (ok, errors) = split(apply(&state, &tenant, modifications).await?, failed);
    let (successes, errors) = remote.combine(ok.into_iter().map(|(id, _)| id).collect(), errors);
    Ok(remote.warned(no_content_or_multi(successes, errors)))
}

/// POST /entityOperations/delete: the body is an array of entity ids.
pub async fn delete(
    State(state): State<SharedState>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
    body: Bytes,
) -> ApiResult {
    let params = Params::parse(raw.as_deref(), &["local"])?;
    let tenant = tenant(&headers)?;
    let (value, _) = read_json_body(&headers, &body, false)?;
    let Value::Array(items) = value else {
        return Err(NgsiLdError::bad_request("a batch delete needs a JSON array of entity ids").into());
    };
    if items.is_empty() {
        return Err(NgsiLdError::bad_request("a batch delete needs at least one id").into());
    }
    let mut failed = Vec::new();
    let mut ids = Vec::new();
    for item in items {
        let id = item.as_str().unwrap_or("").to_owned();
        if let Err(e) = ngsild_core::validate::check_uri(&id, "the entity id") {
            failed.push((item.as_str().map(str::to_owned).unwrap_or_else(|| item.to_string()), e));
            continue;
        }
        ids.push(id);
    }
    let remote = distribute(
        &state,
        &headers,
        &tenant,
        &params,
        &body,
        None,
        &mut ids,
        Operation::DELETE_BATCH,
        "/entityOperations/delete",
    )
    .await?;
    let mut modifications: Vec<(String, Modifier)> = Vec::new();
    for id in ids {
        let missing = id.clone();
        modifications.push((
            id,
            Box::new(move |current| match current {
                Some(_) => Ok(Modified::delete()),
                None => Err(NgsiLdError::not_found(format!("entity {missing} not found"))),
            }),
        ));
    }
    let (ok, errors) = split(apply(&state, &tenant, modifications).await?, failed);
    let (successes, errors) = remote.combine(ok.into_iter().map(|(id, _)| id).collect(), errors);
    Ok(remote.warned(no_content_or_multi(successes, errors)))
}

/// What the registered context sources did with their parts of a batch (clause 4.3.6.3).
#[derive(Default)]
struct Remote {
    /// Entities handled by the sources alone (the hub keeps nothing of them).
    remote_only: Vec<String>,
    /// Entities a source failed on.
    errors: Vec<EntityError>,
    /// Entities a source answered as created.
    created: Vec<String>,
    warnings: Vec<crate::federation::SourceFailure>,
}

impl Remote {
    /// Successes and errors of the whole batch from the hub's own: every entity a part of
    /// failed on is an error, the hub's own error first.
    fn combine(&self, mut successes: Vec<String>, errors: Vec<Failure>) -> (Vec<String>, Vec<EntityError>) {
        for id in &self.remote_only {
            if !successes.contains(id) {
                successes.push(id.clone());
            }
        }
        let mut errors: Vec<EntityError> = errors
            .into_iter()
            .map(|(entity_id, error)| EntityError { entity_id, error, registration_id: None })
            .collect();
        for remote in &self.errors {
            if !errors.iter().any(|e| e.entity_id == remote.entity_id) {
                errors.push(EntityError {
                    entity_id: remote.entity_id.clone(),
                    error: remote.error.clone(),
                    registration_id: remote.registration_id.clone(),
                });
            }
        }
        // An entity a source refused did not fully succeed. A local error does not undo a local
        // success of the same id: the second copy of an id in one batch fails, the first stands.
        successes.retain(|id| !self.errors.iter().any(|e| &e.entity_id == id));
        (successes, errors)
    }

    fn warned(&self, response: Response) -> Response {
        crate::provision::warned(response, &self.warnings)
    }
}

/// An entity batch (create, upsert, update, merge) read and expanded, the sources' parts sent.
struct EntityBatch {
    /// What is left for the hub, narrowed to its part.
    inputs: Vec<(String, EntityInput)>,
    failed: Vec<Failure>,
    remote: Remote,
}

/// Reads an entity batch (`need_type`: each entity must name its type) and distributes it.
#[allow(
    clippy::too_many_arguments,
    reason = "the parts of one request, passed as read; issue 14 gathers them into one request context"
)]
async fn entity_batch(
    state: &SharedState,
    headers: &HeaderMap,
    tenant: &str,
    params: &Params,
    body: &Bytes,
    need_type: bool,
    operation: &str,
    path: &str,
) -> Result<EntityBatch, crate::ApiError> {
    let items = read_batch(state, headers, body).await?;
    let (mut inputs, failed) = expand_items(items, need_type);
    let remote =
        distribute(state, headers, tenant, params, body, Some(&mut inputs), &mut Vec::new(), operation, path).await?;
    Ok(EntityBatch { inputs, failed, remote })
}

/// Splits a batch among the registrations that serve `operation`: each registration gets one
/// batch request with its part of every entity it covers; the entities left in `inputs` (their
/// attributes narrowed to the hub's part) are the hub's to apply. `inputs` of None: a batch
/// delete, whose `ids` are the entities.
#[allow(
    clippy::too_many_arguments,
    reason = "the parts of one request, passed as read; issue 14 gathers them into one request context"
)]
async fn distribute(
    state: &SharedState,
    headers: &HeaderMap,
    tenant: &str,
    params: &Params,
    body: &Bytes,
    inputs: Option<&mut Vec<(String, EntityInput)>>,
    ids: &mut Vec<String>,
    operation: &str,
    path: &str,
) -> Result<Remote, crate::ApiError> {
    use crate::provision;
    let mut remote = Remote::default();
    if params.flag("local")? {
        return Ok(remote);
    }
    let regs = state.federation.registrations(state.store.as_ref(), tenant).await?;
    if regs.is_empty() {
        return Ok(remote);
    }
    let originals: Vec<Value> =
        serde_json::from_slice::<Value>(body).ok().and_then(|v| v.as_array().cloned()).unwrap_or_default();
    let link = link_context(headers)?.map(Value::String);
    let ctx = match &link {
        Some(l) => state.contexts.resolve(l).await.unwrap_or_else(|_| state.contexts.core()),
        None => state.contexts.core(),
    };
    let ld = crate::request::Ld { ctx, given: link };
    // Registration id -> (registration, items, entity ids).
    let mut groups: Vec<(ngsild_federation::Registration, Vec<Value>, Vec<String>)> = Vec::new();
    // (registration id, entity id, attributes) an exclusive registration takes.
    let mut exclusive: Vec<(String, String, Vec<String>)> = Vec::new();
    let mut add = |reg: &ngsild_federation::Registration, item: Value, id: &str| match groups
        .iter_mut()
        .find(|(r, ..)| r.id == reg.id)
    {
        Some((_, items, ids)) => {
            items.push(item);
            ids.push(id.to_owned());
        }
        None => groups.push((reg.clone(), vec![item], vec![id.to_owned()])),
    };
    match inputs {
        Some(inputs) => {
            let mut kept = Vec::with_capacity(inputs.len());
            for (id, mut input) in inputs.drain(..) {
                let attrs: Vec<String> = input.attrs.keys().cloned().collect();
                let plan = provision::plan_among(headers, &regs, &id, &input.types, &attrs, operation);
                if let Some(error) = plan.looped {
                    remote.errors.push(EntityError { entity_id: id.clone(), error, registration_id: None });
                    remote.remote_only.push(id);
                    continue;
                }
                let original = originals.iter().find(|o| item_id(o) == id).cloned().unwrap_or(Value::Null);
                for (reg, reg_attrs) in &plan.remote {
                    if let (ngsild_federation::Mode::Exclusive, Some(names)) = (reg.mode, reg_attrs) {
                        exclusive.push((reg.id.clone(), id.clone(), names.clone()));
                    }
                    // Names in an item are the item's own; with a Link they are the Link's.
                    let item_ctx = match original.get("@context") {
                        Some(c) => state.contexts.resolve(c).await.unwrap_or_else(|_| ld.ctx.clone()),
                        None => ld.ctx.clone(),
                    };
                    add(reg, provision::narrow_body(&original, reg_attrs.as_deref(), &item_ctx), &id);
                }
                if plan.local {
                    input.attrs.retain(|name, _| plan.keeps(name));
                    kept.push((id, input));
                } else {
                    remote.remote_only.push(id);
                }
            }
            *inputs = kept;
        }
        None => {
            let mut kept = Vec::with_capacity(ids.len());
            for id in ids.drain(..) {
                let plan = provision::plan_among(headers, &regs, &id, &[], &[], operation);
                if let Some(error) = plan.looped {
                    remote.errors.push(EntityError { entity_id: id.clone(), error, registration_id: None });
                    remote.remote_only.push(id);
                    continue;
                }
                for (reg, _) in &plan.remote {
                    add(reg, Value::String(id.clone()), &id);
                }
                if plan.local {
                    kept.push(id);
                } else {
                    remote.remote_only.push(id);
                }
            }
            *ids = kept;
        }
    }
    if groups.is_empty() {
        return Ok(remote);
    }
    let query = provision::forwarded_query(params);
    let parts: Vec<_> =
        groups.iter().map(|(reg, items, _)| (reg.clone(), None, Some(Value::Array(items.clone())))).collect();
    let fwd = provision::forwarding(headers, tenant, &ld);
    let answers = state.federation.send_to_sources(parts, &fwd, axum::http::Method::POST, path, &query).await;
    let mut stale_copies: Vec<(String, Modifier)> = Vec::new();
    for (answer, (reg, _, _)) in answers.iter().zip(&groups) {
        if !answer.accepted() {
            continue;
        }
        let failed_ids: Vec<String> = match &answer.result {
            Ok(a) if a.status == 207 => serde_json::from_slice::<Value>(&a.body)
                .ok()
                .and_then(|b| b.get("errors").and_then(Value::as_array).cloned())
                .unwrap_or_default()
                .iter()
                .filter_map(|e| e.get("entityId").and_then(Value::as_str).map(str::to_owned))
                .collect(),
            _ => Vec::new(),
        };
        for (_, id, names) in exclusive.iter().filter(|(r, id, _)| r == &reg.id && !failed_ids.contains(id)) {
            stale_copies.push((id.clone(), provision::without_attributes(names.clone())));
        }
    }
    if !stale_copies.is_empty() {
        state.store.modify(tenant, stale_copies).await?;
    }
    for (answer, (_, _, ids)) in answers.iter().zip(&groups) {
        match &answer.result {
            Ok(a) if a.status < 300 && a.status != 207 => {
                if a.status == 201 {
                    let body: Value = serde_json::from_slice(&a.body).unwrap_or(Value::Null);
                    let listed: Vec<String> = body
                        .as_array()
                        .map(|l| l.iter().filter_map(Value::as_str).map(str::to_owned).collect())
                        .unwrap_or_else(|| ids.clone());
                    remote.created.extend(listed);
                }
            }
            Ok(a) if a.status == 207 => {
                let body: Value = serde_json::from_slice(&a.body).unwrap_or(Value::Null);
                let registration_id = &answer.registration.id;
                for item in body.get("errors").and_then(Value::as_array).cloned().unwrap_or_default() {
                    let problem = item.get("error");
                    let status = problem.and_then(|p| p.get("status")).and_then(Value::as_u64).unwrap_or(400);
                    let detail = problem.and_then(|p| p.get("detail")).and_then(Value::as_str).unwrap_or("failed");
                    let error = source_error(registration_id, status as u16, problem, detail);
                    let entity_id = item.get("entityId").and_then(Value::as_str).unwrap_or("").to_owned();
                    remote.errors.push(EntityError {
                        entity_id,
                        error,
                        registration_id: Some(registration_id.clone()),
                    });
                }
            }
            _ => {
                let (Some(failure), Some(error)) = (answer.failure(), answer.error()) else { continue };
                for id in ids {
                    remote.errors.push(EntityError {
                        entity_id: id.clone(),
                        error: error.clone(),
                        registration_id: Some(failure.registration_id.clone()),
                    });
                }
                remote.warnings.push(failure);
            }
        }
    }
    Ok(remote)
}
