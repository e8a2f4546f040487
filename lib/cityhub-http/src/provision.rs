//! Provision operations on one entity with registered context sources (clause 4.3.6.3): which
//! part of a request each registration gets (`ngsild_federation::provision`), forwarding the
//! parts at once, and one answer from the hub's and the sources' outcomes — 204 (201) when all
//! took their part, 207 with an UpdateResult naming what each one did not take otherwise.
//!
//! # The flow of a distributed write
//!
//! Take `PATCH /entities/{id}/attrs` at Seoul, where Busan holds `pm25` of that entity under an
//! `exclusive` registration with `redirectionOps`:
//!
//! 1. `entities::write_fragment` (shared by replace, merge, append and update of attributes) reads the fragment as for a local update and lists its attributes (expanded).
//! 2. `provision::plan` runs `matching::targets` for `updateAttrs` with the entity id, its types (when
//!    the body gives them) and those attributes, and `ngsild_federation::provision::split_unless_looping`
//!    leaves out the sources the request crossed (alias or endpoint in `Via`; what the hub keeps is
//!    decided with them counted, so a crossed exclusive source's attributes do not become the hub's);
//!    when only crossed exclusive/redirect sources hold the data — a single source registered to
//!    redirect back where the request came from — the write is 508 `LoopDetected` (clause 6.3.17;
//!    in a batch, that entity's BatchEntityError). `ngsild_federation::provision::split` decides the parts: an `inclusive` source gets a copy of
//!    what it covers, an `exclusive` one takes the attributes it names away from the hub, a
//!    `redirect` one takes what it covers (the whole entity when it names no attributes), an
//!    `auxiliary` one never sees a write. An exclusive registration that names no attribute is not
//!    forwarded to at all: exclusive registrations are about specific attributes (clause 4.3.6.3).
//!    What is left is the hub's part; with nothing left the hub does not apply it at all.
//! 3. Every source gets its part at once (`Federation::provision_sources`): the same method, path and
//!    query (minus `local`), the body cut down to its attributes (`ngsild_federation::provision::narrow_body`; an attribute path
//!    operation goes whole), the client's @context as it came (body or `Link`).
//! 4. Once an exclusive source accepted its attributes, a copy the hub still holds of them (from
//!    before the registration) is removed (`provision::drop_exclusive_copies`): the hub never
//!    answers a stale value of an attribute it does not own.
//! 5. The hub applies its part through the usual modifier, then `provision::answer` makes one
//!    answer: 204 (201 for a create) when every part was taken; 207 with an UpdateResult listing
//!    each attribute not taken, with the `registrationId` of a failing source, otherwise; the
//!    hub's own error when nobody took anything. Failing sources also show as `NGSILD-Warning`.
//!
//! Replace, merge, append, update, partial update, replace attribute and delete attribute work this
//! way; replace, merge, append and update share `entities::write_fragment`, whose `prepare` step
//! reads the hub's part (for a replace: the whole new entity, so an invalid one is refused before
//! the entity is looked up, as 400 rather than 404). Creation and deletion of one entity are planned the same way; their answer
//! (`provision::entity_answer`) is 201/204 when every part was done, the error itself when the only
//! part failed, and otherwise 207 with a BatchOperationResult: one BatchEntityError per failed part
//! (the hub's, or a source's with its `registrationId`). Batch operations (`batch::distribute`)
//! plan each entity the same way and send each registration one batch of its parts
//! (`/entityOperations/{op}`); the hub runs the batch of what is left, and the BatchOperationResult
//! joins the hub's errors with the entities a source failed on: each a BatchEntityError with the
//! `registrationId` and a ProblemDetails of the type the source's own answer names (or, failing
//! that, its status stands for) — `federation::source_error`, which single-entity writes use too. A purge (`DELETE /entities?…`) goes
//! to every registration it selects that offers `purgeEntity` (or `deleteEntity`) with the same
//! query, and the hub purges its own entities; a failing source makes it a 207.

use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::Response;
use ngsild_core::ops::UpdateReport;
use ngsild_core::time::now;
use ngsild_core::NgsiLdError;
use ngsild_federation::provision::{self, EntityAnswer, Plan, WriteAnswer};
use ngsild_federation::{Operation, Registration};
use serde_json::Value;

use crate::error::{ApiError, ApiResult};
use crate::extract::Call;
use crate::federation::{Federation, Forwarding, ProvisionAnswer, SourceFailure};
use crate::request::{Ld, Params};
use crate::response::{append_header, plain_json};
use crate::SharedState;

/// Splits a provision request on entity `id` (of `types`, when known) carrying `attrs` among
/// the registrations that serve `operation`. `local=true` keeps it all here.
pub async fn plan(
    Call { state, headers, params, tenant, .. }: &Call,
    id: &str,
    types: &[String],
    attrs: &[String],
    operation: Operation,
) -> Result<Plan, ApiError> {
    if params.flag("local")? {
        return Ok(Plan::local_only());
    }
    let regs = state.federation.registrations(state.store.as_ref(), tenant).await?;
    Ok(plan_among(headers, &regs, id, types, attrs, operation)?)
}

/// As [`plan`], with the tenant's registrations at hand (a batch plans many entities):
/// `ngsild_federation::provision::plan_among` with the request's `Via` hops, now.
pub fn plan_among(
    headers: &HeaderMap,
    regs: &[Registration],
    id: &str,
    types: &[String],
    attrs: &[String],
    operation: Operation,
) -> Result<Plan, NgsiLdError> {
    provision::plan_among(regs, id, types, attrs, operation, &Federation::hops(headers), &now())
}

/// The body as the client sent it: its @context goes back in when it came in the body.
pub fn forwardable(mut value: Value, headers: &HeaderMap, ld: &Ld) -> Value {
    let is_ld = headers.get("content-type").and_then(|v| v.to_str().ok()).is_some_and(|v| v.contains("ld+json"));
    if let (true, Some(map), Some(context)) = (is_ld, value.as_object_mut(), ld.given.clone()) {
        map.insert("@context".into(), context);
    }
    value
}

/// The client's query parameters minus `local`.
pub fn forwarded_query(params: &Params) -> Vec<(String, String)> {
    params.pairs().iter().filter(|(n, _)| n != "local").cloned().collect()
}

pub fn forwarding(headers: &HeaderMap, tenant: &str, ld: &Ld) -> Forwarding {
    let credentials = crate::federation::CREDENTIAL_HEADERS
        .iter()
        .filter_map(|name| Some((axum::http::HeaderName::from_static(name), headers.get(*name)?.clone())))
        .collect();
    Forwarding { tenant: tenant.to_owned(), hops: Federation::hops(headers), ld: ld.clone(), credentials }
}

/// The request a source of a provision operation gets: the same method and path (under
/// `/ngsi-ld/v1`), the client's parameters but `local`, and the body as the client sent it.
pub struct ForwardRequest {
    pub method: Method,
    pub path: String,
    pub query: Vec<(String, String)>,
    pub body: Option<Value>,
    /// The body is an entity fragment, cut down to the attributes each registration gets;
    /// otherwise it goes whole (it is one attribute).
    pub narrow: bool,
}

impl ForwardRequest {
    /// The request as it came (`params` of the client), without a body.
    pub fn new(method: Method, path: String, params: &Params) -> ForwardRequest {
        ForwardRequest { method, path, query: forwarded_query(params), body: None, narrow: false }
    }

    /// With the client's body (its @context back in when it came in the body); `narrow`: see
    /// [`ForwardRequest::narrow`].
    pub fn with_body(self, value: Value, headers: &HeaderMap, ld: &Ld, narrow: bool) -> ForwardRequest {
        ForwardRequest { body: Some(forwardable(value, headers, ld)), narrow, ..self }
    }
}

/// Sends `request` to every remote part of `plan`.
pub async fn forward(call: &Call, ld: &Ld, plan: &Plan, request: ForwardRequest) -> Vec<ProvisionAnswer> {
    if plan.remote.is_empty() {
        return Vec::new();
    }
    let ForwardRequest { method, path, query, body, narrow } = request;
    let parts = plan
        .remote
        .iter()
        .map(|(reg, attrs)| {
            let body = body.as_ref().map(|b| {
                if narrow {
                    provision::narrow_body(b, attrs.as_deref(), &ld.ctx)
                } else {
                    b.clone()
                }
            });
            (reg.clone(), attrs.clone(), body)
        })
        .collect();
    let fwd = forwarding(&call.headers, &call.tenant, ld);
    call.state.federation.send_to_sources(parts, &fwd, method, &path, &query).await
}

pub fn warned(mut response: Response, failures: &[SourceFailure]) -> Response {
    for failure in failures {
        response = append_header(response, "ngsild-warning", &failure.warning());
    }
    response
}

/// One answer from the hub's outcome (`local`: None when it had no part) and the sources'
/// (`provision::combine_write`); `attrs` are the request's attributes (expanded), `success` the
/// answer when all went well. A failing source is named in an `NGSILD-Warning`.
pub fn answer(
    local: Option<Result<Option<UpdateReport>, ApiError>>,
    remote: Vec<ProvisionAnswer>,
    plan: &Plan,
    attrs: &[String],
    success: Response,
) -> ApiResult {
    let failures: Vec<SourceFailure> = remote.iter().filter_map(ProvisionAnswer::failure).collect();
    let parts: Vec<provision::SourcePart> = remote.iter().map(ProvisionAnswer::part).collect();
    let local = local.map(|outcome| outcome.map_err(|e| e.0));
    match provision::combine_write(local, &parts, plan.local_attrs.as_deref(), attrs) {
        WriteAnswer::Done => Ok(warned(success, &failures)),
        WriteAnswer::Failed(e) => Err(e.into()),
        WriteAnswer::Partial(result) => Ok(warned(plain_json(StatusCode::MULTI_STATUS, &result), &failures)),
    }
}

/// One answer for an operation on a whole entity (create, delete) from the hub's outcome
/// (`local`: None when it had no part) and the sources': `success` when every part was done;
/// the error itself when the only part failed; otherwise 207 with a BatchOperationResult whose
/// `errors` hold one BatchEntityError per part that failed (clause 5.2.17, with the
/// `registrationId` of a failing source).
pub fn entity_answer(
    id: &str,
    local: Option<Result<(), ApiError>>,
    remote: Vec<ProvisionAnswer>,
    success: Response,
) -> ApiResult {
    let failures: Vec<SourceFailure> = remote.iter().filter_map(ProvisionAnswer::failure).collect();
    let parts: Vec<(String, Option<NgsiLdError>)> =
        remote.iter().map(|answer| (answer.registration.id.clone(), answer.error())).collect();
    match provision::combine_entity(id, local.map(|outcome| outcome.map_err(|e| e.0)), &parts) {
        EntityAnswer::Done => Ok(warned(success, &failures)),
        EntityAnswer::Failed(e) => Err(e.into()),
        EntityAnswer::Partial(body) => Ok(warned(plain_json(StatusCode::MULTI_STATUS, &body), &failures)),
    }
}

/// An exclusive registration takes its attributes away from the hub (clause 4.3.6.3): once its
/// source accepted a write of them, a copy the hub still holds from before the registration is
/// stale, so it goes.
pub async fn drop_exclusive_copies(
    state: &SharedState,
    tenant: &str,
    id: &str,
    remote: &[ProvisionAnswer],
) -> Result<(), ApiError> {
    let taken: Vec<String> = remote
        .iter()
        .filter(|a| a.registration.mode == ngsild_federation::Mode::Exclusive && a.accepted())
        .flat_map(|a| a.attrs.clone().unwrap_or_default())
        .collect();
    // Most writes find no copy: a read spares them a write (and a journal entry).
    let holds_copy = match taken.is_empty() {
        true => false,
        false => {
            state.store.get_entity(tenant, id).await?.is_some_and(|e| taken.iter().any(|n| e.attrs.contains_key(n)))
        }
    };
    if !holds_copy {
        return Ok(());
    }
    cityhub_storage::modify_one(state.store.as_ref(), tenant, id, without_attributes(taken)).await?;
    Ok(())
}

/// A modifier that removes the attributes `names` (expanded) from an entity, if it exists
/// (`Entity::remove_attributes`).
pub fn without_attributes(names: Vec<String>) -> cityhub_storage::Modifier {
    Box::new(move |current| {
        Ok(cityhub_storage::Modified::from(current.map(|mut entity| {
            entity.remove_attributes(&names, &now());
            entity
        })))
    })
}
