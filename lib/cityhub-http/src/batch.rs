//! `/entityOperations/{create,upsert,update,delete,merge}` (clause 5.6.7-5.6.10, 5.6.20).
//!
//! Every entity of a batch is checked and applied on its own; the whole batch is one call to the
//! store, so it costs one durable commit.

use std::sync::Arc;

use axum::http::StatusCode;
use axum::response::Response;
use cityhub_storage::{Change, Modified, Modifier};
use ngsild_core::expand::{entity_from_input, EntityInput};
use ngsild_core::ops;
use ngsild_core::time::now;
use ngsild_core::NgsiLdError;
use ngsild_jsonld::Context;
use serde_json::{json, Value};

use crate::error::ApiResult;
use crate::extract::{params, Call, JsonBody, LocalOnly, Write};
use crate::federation::ProvisionAnswer;
use crate::provision;
use crate::request::{link_context, Ld};
use crate::response::{no_content, plain_json};
use crate::SharedState;
use ngsild_federation::batch::{batch_result, expand_items, item_id, split, EntityError, Failure, Groups, SourceReply};
use ngsild_federation::Operation;

params! {
    Options = &["options", "local"];
}

/// The outcome of one entity of a batch.
type ItemResult = Result<(String, Option<Change>), Failure>;

/// Reads a batch body: an array whose items each come with their active @context.
async fn read_batch(
    Call { state, headers, .. }: &Call,
    JsonBody { value, is_ld }: JsonBody,
) -> Result<Vec<(Value, Result<Arc<Context>, NgsiLdError>)>, crate::ApiError> {
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

async fn apply(
    state: &SharedState,
    tenant: &str,
    modifications: Vec<(String, Modifier)>,
) -> Result<Vec<ItemResult>, crate::ApiError> {
    let ids: Vec<String> = modifications.iter().map(|(id, _)| id.clone()).collect();
    let results = state.store.modify(tenant, modifications).await?;
    Ok(ids.into_iter().zip(results).map(|(id, r)| r.map(|c| (id.clone(), Some(c))).map_err(|e| (id, e))).collect())
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
pub async fn create(write: Write<LocalOnly>, body: JsonBody) -> ApiResult {
    let Call { state, tenant, .. } = &write.call;
    let EntityBatch { inputs, mut failed, remote } =
        entity_batch(&write, body, true, Operation::CreateBatch, "/entityOperations/create").await?;
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
    let (ok, errors) = split(apply(state, tenant, modifications).await?, failed);
    let created: Vec<String> = ok.into_iter().map(|(id, _)| id).collect();
    let (created, errors) = remote.combine(created, errors);
    if errors.is_empty() {
        Ok(remote.warned(plain_json(StatusCode::CREATED, &json!(created))))
    } else {
        Ok(remote.warned(plain_json(StatusCode::MULTI_STATUS, &batch_result(&created, &errors))))
    }
}

/// POST /entityOperations/upsert: creates what is new; replaces (default) or updates what exists.
pub async fn upsert(write: Write<Options>, body: JsonBody) -> ApiResult {
    let Call { state, params, tenant, .. } = &write.call;
    let update_mode = params.has_option("update");
    let EntityBatch { inputs, mut failed, remote } =
        entity_batch(&write, body, true, Operation::UpsertBatch, "/entityOperations/upsert").await?;
    let mut modifications: Vec<(String, Modifier)> = Vec::new();
    for (id, input) in inputs {
        match entity_from_input(&input) {
            Ok(entity) => modifications.push((id, upsert_one(entity, input, update_mode))),
            Err(e) => failed.push((id, e)),
        }
    }
    let (ok, errors) = split(apply(state, tenant, modifications).await?, failed);
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

/// Creates the entity, or replaces (`update_mode`: updates) the one that exists.
fn upsert_one(entity: ngsild_core::Entity, input: EntityInput, update_mode: bool) -> Modifier {
    Box::new(move |current| Ok(Modified::entity(ops::upsert(current, entity, &input, update_mode, &now())?)))
}

/// POST /entityOperations/update: updates existing entities; with noOverwrite, attributes that
/// exist are kept and the entity is reported among the errors, while its new attributes are added.
pub async fn update(write: Write<Options>, body: JsonBody) -> ApiResult {
    let Call { state, params, tenant, .. } = &write.call;
    let no_overwrite = params.has_option("noOverwrite");
    let EntityBatch { inputs, failed, remote } =
        entity_batch(&write, body, false, Operation::UpdateBatch, "/entityOperations/update").await?;
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
    let (ok, mut errors) = split(apply(state, tenant, modifications).await?, failed);
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
pub async fn merge(write: Write<Options>, body: JsonBody) -> ApiResult {
    let Call { state, tenant, .. } = &write.call;
    let EntityBatch { inputs, failed, remote } =
        entity_batch(&write, body, false, Operation::MergeBatch, "/entityOperations/merge").await?;
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
    let (ok, errors) = split(apply(state, tenant, modifications).await?, failed);
    let (successes, errors) = remote.combine(ok.into_iter().map(|(id, _)| id).collect(), errors);
    Ok(remote.warned(no_content_or_multi(successes, errors)))
}

/// POST /entityOperations/delete: the body is an array of entity ids.
pub async fn delete(write: Write<LocalOnly>, body: JsonBody) -> ApiResult {
    let Call { state, tenant, .. } = &write.call;
    let Value::Array(items) = body.value else {
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
    let remote = distribute(&write, &[], None, &mut ids, Operation::DeleteBatch, "/entityOperations/delete").await?;
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
    let (ok, errors) = split(apply(state, tenant, modifications).await?, failed);
    let (successes, errors) = remote.combine(ok.into_iter().map(|(id, _)| id).collect(), errors);
    Ok(remote.warned(no_content_or_multi(successes, errors)))
}

/// What the registered context sources did with their parts of a batch (clause 4.3.6.3), and
/// the `NGSILD-Warning`s of those that failed.
#[derive(Default)]
struct Remote {
    outcome: ngsild_federation::batch::Remote,
    warnings: Vec<crate::federation::SourceFailure>,
}

impl std::ops::Deref for Remote {
    type Target = ngsild_federation::batch::Remote;

    fn deref(&self) -> &Self::Target {
        &self.outcome
    }
}

impl Remote {
    fn warned(&self, response: Response) -> Response {
        provision::warned(response, &self.warnings)
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
async fn entity_batch(
    call: &Call,
    body: JsonBody,
    need_type: bool,
    operation: Operation,
    path: &str,
) -> Result<EntityBatch, crate::ApiError> {
    // The items as sent (with their @context) are what a source is forwarded.
    let originals = body.value.as_array().cloned().unwrap_or_default();
    let items = read_batch(call, body).await?;
    let (mut inputs, failed) = expand_items(items, need_type);
    let remote = distribute(call, &originals, Some(&mut inputs), &mut Vec::new(), operation, path).await?;
    Ok(EntityBatch { inputs, failed, remote })
}

/// Splits a batch among the registrations that serve `operation`: each registration gets one
/// batch request with its part of every entity it covers; the entities left in `inputs` (their
/// attributes narrowed to the hub's part) are the hub's to apply. `inputs` of None: a batch
/// delete, whose `ids` are the entities.
async fn distribute(
    call: &Call,
    originals: &[Value],
    inputs: Option<&mut Vec<(String, EntityInput)>>,
    ids: &mut Vec<String>,
    operation: Operation,
    path: &str,
) -> Result<Remote, crate::ApiError> {
    let Call { state, headers, params, tenant, .. } = call;
    let mut remote = Remote::default();
    if params.flag("local")? {
        return Ok(remote);
    }
    let regs = state.federation.registrations(state.store.as_ref(), tenant).await?;
    if regs.is_empty() {
        return Ok(remote);
    }
    let ld = link_ld(state, headers).await?;
    let parts = Parts { headers, regs: &regs, operation, ld: &ld };
    let (groups, exclusive) = match inputs {
        Some(inputs) => parts.of_entities(state, originals, inputs, &mut remote.outcome).await,
        None => (parts.of_ids(ids, &mut remote.outcome), Vec::new()),
    };
    if groups.is_empty() {
        return Ok(remote);
    }
    let query = provision::forwarded_query(params);
    let sent: Vec<_> =
        groups.parts.iter().map(|(reg, items, _)| (reg.clone(), None, Some(Value::Array(items.clone())))).collect();
    let fwd = provision::forwarding(headers, tenant, &ld);
    let answers = state.federation.send_to_sources(sent, &fwd, axum::http::Method::POST, path, &query).await;
    let read = read_answers(&answers, &groups, &mut remote);
    let stale_copies: Vec<(String, Modifier)> = exclusive
        .into_iter()
        .filter(|(reg, id, _)| read.iter().any(|(r, failed)| r == reg && !failed.contains(id)))
        .map(|(_, id, names)| (id, provision::without_attributes(names)))
        .collect();
    if !stale_copies.is_empty() {
        state.store.modify(tenant, stale_copies).await?;
    }
    Ok(remote)
}

/// The @context of the `Link` header, for items that carry none (the core one when it cannot be
/// had: the hub's own part then fails on it, the sources get the names as written).
async fn link_ld(state: &SharedState, headers: &axum::http::HeaderMap) -> Result<Ld, crate::ApiError> {
    let link = link_context(headers)?.map(Value::String);
    let ctx = match &link {
        Some(l) => state.contexts.resolve(l).await.unwrap_or_else(|_| state.contexts.core()),
        None => state.contexts.core(),
    };
    Ok(Ld { ctx, given: link })
}

/// What decides the parts of a batch: the request's headers (`Via`), the tenant's
/// registrations, the operation and the `Link` @context.
struct Parts<'a> {
    headers: &'a axum::http::HeaderMap,
    regs: &'a [ngsild_federation::Registration],
    operation: Operation,
    ld: &'a Ld,
}

/// (registration id, entity id, attributes) an exclusive registration takes.
type Exclusive = Vec<(String, String, Vec<String>)>;

impl Parts<'_> {
    /// The sources' parts of an entity batch; `inputs` keeps the hub's (narrowed to it).
    async fn of_entities(
        &self,
        state: &SharedState,
        originals: &[Value],
        inputs: &mut Vec<(String, EntityInput)>,
        remote: &mut ngsild_federation::batch::Remote,
    ) -> (Groups, Exclusive) {
        let (mut groups, mut exclusive) = (Groups::default(), Vec::new());
        let mut kept = Vec::with_capacity(inputs.len());
        for (id, mut input) in inputs.drain(..) {
            let attrs: Vec<String> = input.attrs.keys().cloned().collect();
            let plan = match provision::plan_among(self.headers, self.regs, &id, &input.types, &attrs, self.operation) {
                Ok(plan) => plan,
                Err(error) => {
                    remote.errors.push(EntityError { entity_id: id.clone(), error, registration_id: None });
                    remote.remote_only.push(id);
                    continue;
                }
            };
            let original = originals.iter().find(|o| item_id(o) == id).cloned().unwrap_or(Value::Null);
            // Names in an item are the item's own; with a Link they are the Link's.
            let item_ctx = match original.get("@context") {
                Some(c) if !plan.remote.is_empty() => {
                    state.contexts.resolve(c).await.unwrap_or_else(|_| self.ld.ctx.clone())
                }
                _ => self.ld.ctx.clone(),
            };
            for (reg, reg_attrs) in &plan.remote {
                if let (ngsild_federation::Mode::Exclusive, Some(names)) = (reg.mode, reg_attrs) {
                    exclusive.push((reg.id.clone(), id.clone(), names.clone()));
                }
                groups.add(
                    reg,
                    ngsild_federation::provision::narrow_body(&original, reg_attrs.as_deref(), &item_ctx),
                    &id,
                );
            }
            if plan.local {
                input.attrs.retain(|name, _| plan.keeps(name));
                kept.push((id, input));
            } else {
                remote.remote_only.push(id);
            }
        }
        *inputs = kept;
        (groups, exclusive)
    }

    /// The sources' parts of a batch delete; `ids` keeps the hub's.
    fn of_ids(&self, ids: &mut Vec<String>, remote: &mut ngsild_federation::batch::Remote) -> Groups {
        let mut groups = Groups::default();
        let mut kept = Vec::with_capacity(ids.len());
        for id in ids.drain(..) {
            let plan = match provision::plan_among(self.headers, self.regs, &id, &[], &[], self.operation) {
                Ok(plan) => plan,
                Err(error) => {
                    remote.errors.push(EntityError { entity_id: id.clone(), error, registration_id: None });
                    remote.remote_only.push(id);
                    continue;
                }
            };
            for (reg, _) in &plan.remote {
                groups.add(reg, Value::String(id.clone()), &id);
            }
            if plan.local {
                kept.push(id);
            } else {
                remote.remote_only.push(id);
            }
        }
        *ids = kept;
        groups
    }
}

/// Reads each source's answer (each body once) into `remote` (`batch::Remote::read`); answers,
/// for every source that accepted its part, the entities it failed on.
fn read_answers(answers: &[ProvisionAnswer], groups: &Groups, remote: &mut Remote) -> Vec<(String, Vec<String>)> {
    let mut accepted = Vec::new();
    for (answer, (reg, _, ids)) in answers.iter().zip(&groups.parts) {
        let body = answer.result.as_ref().ok().and_then(|a| serde_json::from_slice::<Value>(&a.body).ok());
        let reply = match &answer.result {
            Ok(a) if a.status < 300 => SourceReply::Accepted { status: a.status, body: body.as_ref() },
            _ => {
                let (Some(failure), Some(error)) = (answer.failure(), answer.error()) else { continue };
                remote.warnings.push(failure);
                SourceReply::Failed(error)
            }
        };
        if let Some(failed) = remote.outcome.read(&answer.registration.id, ids, reply) {
            accepted.push((reg.id.clone(), failed));
        }
    }
    accepted
}
