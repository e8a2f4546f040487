//! `/entities`: create, retrieve, query, replace, merge, delete, purge, and attribute operations.
//!
//! # The flow of a request
//!
//! Take `PATCH /ngsi-ld/v1/entities/{id}/attrs` (update attributes):
//!
//! 1. The extractors of `update_attrs` (`extract.rs`): `EntityId` checks the
//!    id, `Write<Append>` the query parameters against the ones the operation knows (an unknown one
//!    is `InvalidRequest`) and the tenant, and `LdBody` reads the body:
//! 2. `request::body_ld` checks `Content-Type` (415), parses JSON (`InvalidRequest`), applies the
//!    @context rules of clause 6.3.5 (Link header vs body `@context`) and resolves the context
//!    through `ContextService` (remote fetch, `LdContextNotAvailable` 503 when it fails).
//! 3. `ngsild_core::expand::expand_fragment` expands names and values into an `EntityInput`.
//! 4. The handler wraps `ngsild_core::ops::update_attributes` in a `Modifier` and calls
//!    `Store::modify`. The SQLite backend's writer thread loads the entity, runs the modifier, writes
//!    the result and commits — together with whatever other modifications were queued (group commit)
//!    — and only then answers.
//! 5. The handler answers 204, or 207 with an UpdateResult whose names are compacted back with the
//!    request's context.
//!
//! Reads go the other way: `Store::get_entity`/`query` return stored entities,
//! `ngsild_core::render` compacts them with the request's context and the response carries that
//! context in a `Link` header (`application/json`) or in the body (`application/ld+json`).

use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use cityhub_access::Scope;
use cityhub_storage::{modify_one, EntityFilter, Modified, Modifier, Paging};
use ngsild_core::expand::{entity_from_input, expand_fragment, expand_raw_attribute, AttributeInput};
use ngsild_core::ops;
use ngsild_core::render::{
    flat_linked, link_targets, render_entity, render_entity_inline, Join, Projection, RenderOptions,
};
use ngsild_core::time::now;
use ngsild_core::Entity;
use ngsild_core::NgsiLdError;
use ngsild_query::TypeExpr;
use serde_json::{json, Map, Value};
use std::collections::HashMap;

use crate::error::{ApiError, ApiResult};
use crate::extract::{params, Accepting, Call, EntityAttr, EntityId, LdBody, LocalOnly, NoParams, Read, Update, Write};
use crate::federation::{Federation, ProvisionAnswer, SourceFailure};
use crate::provision::{self, ForwardRequest};
use crate::request::{as_object, Accept, Ld, Params};
use crate::response::{
    append_header, created, ld_json, no_content, page_links, path_segment, plain_json, with_header, LinkStyle,
};
use crate::SharedState;
use axum::http::Method;
use ngsild_federation::matching::{self, Operation, Request as FederationRequest};
use ngsild_federation::merge::{merge_entities, Fragments, MergedCount};
use ngsild_federation::{Mode, Registration, Target};
use ngsild_query::params::{entity_filter, push_query_body, render_options};

params! {
    Retrieve = cityhub_openapi::query::ENTITY_RETRIEVE;
    Query = cityhub_openapi::query::ENTITY_QUERY;
    QueryPost = cityhub_openapi::query::ENTITY_QUERY_POST;
    Append = &["options", "local"];
    Purge = &["id", "idPattern", "type", "q", "scopeQ", "keep", "drop", "local"];
    LocalAndType = &["local", "type"];
    MergeParams = &["local", "type", "options", "format"];
    DeleteAttr = &["datasetId", "deleteAll", "local", "lang"];
}

fn location(id: &str) -> String {
    format!("/ngsi-ld/v1/entities/{}", path_segment(id))
}

/// POST /entities
pub async fn create(write: Write<LocalOnly>, LdBody { value, ld }: LdBody<false>) -> ApiResult {
    let call = &write.call;
    let Call { state, headers, params, tenant, .. } = call;
    let input = expand_fragment(&as_object(value.clone(), "an entity")?, &ld.ctx)?;
    let mut entity = entity_from_input(&input)?;
    let id = entity.id.clone();
    let attrs: Vec<String> = entity.attrs.keys().cloned().collect();
    let plan = provision::plan(call, &id, &entity.types, &attrs, Operation::CreateEntity).await?;
    // A create is forwarded without the client's parameters.
    let request = ForwardRequest { query: Vec::new(), ..ForwardRequest::new(Method::POST, "/entities".into(), params) };
    let remote = provision::forward(call, &ld, &plan, request.with_body(value, headers, &ld, true)).await;
    let local = if plan.local {
        entity.attrs.retain(|name, _| plan.keeps(name));
        let modifier: Modifier = Box::new(move |current| {
            if current.is_some() {
                return Err(NgsiLdError::already_exists(format!("entity {} already exists", entity.id)));
            }
            ops::stamp_new_entity(&mut entity, &now());
            Ok(Modified::entity(entity))
        });
        Some(modify_one(state.store.as_ref(), tenant, &id, modifier).await.map(|_| ()).map_err(ApiError::from))
    } else {
        None
    };
    provision::entity_answer(&id, local, remote, created(&location(&id)))
}

/// GET /entities/{id}
pub async fn retrieve(EntityId(id): EntityId, read: Read<Retrieve>, Accepting(accept): Accepting<true>) -> ApiResult {
    let (Call { state, headers, params, tenant, scope, .. }, ld) = (read.call, read.ld);
    let opts = render_options(&params, &ld.ctx)?;
    let local = state.store.get_entity(&tenant, &id).await?;
    let (entity, failures) = distributed_retrieve(&state, &headers, &tenant, &params, &ld, &id, local).await?;
    // An entity the caller may not see is not found, as if it were not there.
    let entity =
        entity.and_then(|e| scope.redact(e)).ok_or_else(|| NgsiLdError::not_found(format!("entity {id} not found")))?;
    of_requested_type(&params, &ld, &entity)?;
    let roots = std::slice::from_ref(&entity);
    let linked = linked_entities(&state, &tenant, &scope, roots, &opts).await?;
    let mut rendered = render_joined(roots, &ld, &opts, &linked);
    let rendered = rendered.pop().unwrap_or_default();
    // Nothing left to show (attributes asked for that the entity lacks, a pick that matches
    // nothing, an omit of everything) is answered as not found.
    let asked_attrs = opts.projection.only.as_ref().filter(|_| !opts.projection.strict_core);
    let lacks_asked = asked_attrs.is_some_and(|names| !names.iter().any(|n| entity.attrs.contains_key(n)));
    if rendered.is_empty() || lacks_asked {
        return Err(NgsiLdError::not_found(format!("entity {id} has nothing matching the requested projection")).into());
    }
    if accept == Accept::GeoJson {
        let geometry_property = geometry_property(&params, &ld);
        let feature = geojson_feature(Value::Object(rendered), &entity, &geometry_property, &ld);
        return Ok(ld_json(StatusCode::OK, feature, &ld, Accept::GeoJson));
    }
    let warned = |response: Response| provision::warned(response, &failures);
    if let Some((Join::Flat, levels)) = opts.join {
        // A flat join answers a list, the Entity then the Entities it links to; with nothing
        // linked it answers the Entity alone, as without a join.
        let flat = render_flat_linked(roots, &ld, &opts, &linked, levels);
        if !flat.is_empty() {
            let all = std::iter::once(Value::Object(rendered)).chain(flat).collect();
            return Ok(warned(ld_json(StatusCode::OK, Value::Array(all), &ld, accept)));
        }
    }
    Ok(warned(ld_json(StatusCode::OK, Value::Object(rendered), &ld, accept)))
}

/// A retrieval's `type`: the entity is not found unless it is of that type.
fn of_requested_type(params: &Params, ld: &Ld, entity: &Entity) -> Result<(), NgsiLdError> {
    let Some(types) = params.get("type") else { return Ok(()) };
    let types = TypeExpr::parse(types, &ld.ctx).map_err(|e| NgsiLdError::bad_request(format!("invalid type: {e}")))?;
    match types.matches(&entity.types) {
        true => Ok(()),
        false => Err(NgsiLdError::not_found(format!("entity {} is not of the requested type", entity.id))),
    }
}

/// Linked Entity retrieval: fetches the Entities that the shown relationships of `roots` point
/// to, `joinLevel` hops deep, one store query per hop.
async fn linked_entities(
    state: &SharedState,
    tenant: &str,
    scope: &Scope,
    roots: &[Entity],
    opts: &RenderOptions,
) -> Result<HashMap<String, Entity>, ApiError> {
    let Some((_, levels)) = opts.join else {
        return Ok(HashMap::new());
    };
    // The roots count as fetched: a root another root links to is embedded (inline) without a
    // second read, and every id is read at most once, so a cycle ends the hops.
    let mut linked: HashMap<String, Entity> = roots.iter().map(|e| (e.id.clone(), e.clone())).collect();
    let mut frontier: Vec<(String, Projection)> =
        roots.iter().flat_map(|e| link_targets(e, &opts.projection)).collect();
    for _ in 0..levels {
        let mut ids: Vec<String> = frontier.iter().map(|(id, _)| id.clone()).collect();
        ids.sort_unstable();
        ids.dedup();
        ids.retain(|id| !linked.contains_key(id));
        if ids.is_empty() {
            break;
        }
        let limit = ids.len();
        let filter = scope.narrow(EntityFilter { ids, ..Default::default() })?;
        let page = state.store.query(tenant, &filter, Paging { offset: 0, limit, count: false }).await?;
        linked.extend(page.entities.into_iter().filter_map(|e| scope.redact(e)).map(|e| (e.id.clone(), e)));
        frontier =
            frontier.iter().filter_map(|(id, proj)| linked.get(id).map(|e| link_targets(e, proj))).flatten().collect();
    }
    Ok(linked)
}

/// Renders `roots`, with linked Entities embedded when the join is inline.
fn render_joined(
    roots: &[Entity],
    ld: &Ld,
    opts: &RenderOptions,
    linked: &HashMap<String, Entity>,
) -> Vec<Map<String, Value>> {
    roots
        .iter()
        .map(|e| match opts.join {
            Some((Join::Inline, levels)) => render_entity_inline(e, &ld.ctx, opts, linked, levels),
            _ => render_entity(e, &ld.ctx, opts),
        })
        .collect()
}

/// The Entities a flat join lists after `roots`, each with the projection it was reached by.
fn render_flat_linked(
    roots: &[Entity],
    ld: &Ld,
    opts: &RenderOptions,
    linked: &HashMap<String, Entity>,
    levels: u32,
) -> Vec<Value> {
    let roots: Vec<(&Entity, &Projection)> = roots.iter().map(|e| (e, &opts.projection)).collect();
    flat_linked(&roots, linked, levels)
        .into_iter()
        .map(|(entity, projection)| {
            let linked_opts = RenderOptions { projection, ..opts.clone() };
            Value::Object(render_entity(entity, &ld.ctx, &linked_opts))
        })
        .collect()
}

fn geometry_property(params: &Params, ld: &Ld) -> String {
    ld.ctx.expand_term(params.get("geometryProperty").unwrap_or("location")).into_owned()
}

/// Wraps a rendered entity as a GeoJSON Feature (clause 4.5.16).
fn geojson_feature(rendered: Value, entity: &Entity, geometry_property: &str, ld: &Ld) -> Value {
    let geometry = entity.instance(geometry_property, None).map(|a| a.value.clone()).unwrap_or(Value::Null);
    let mut properties = rendered;
    let id = properties.as_object_mut().and_then(|m| m.remove("id")).unwrap_or(Value::String(entity.id.clone()));
    json!({"id": id, "type": "Feature", "geometry": geometry, "properties": properties, "@context": ld.body_context()})
}

/// GET /entities
pub async fn query(read: Read<Query>, Accepting(accept): Accepting<true>) -> ApiResult {
    let (Call { state, headers, params, tenant, scope, .. }, ld) = (read.call, read.ld);
    let asked = Asked { headers: &headers, tenant: &tenant, scope: &scope, params: &params, ld: &ld };
    run_query(&state, asked, accept, Some("/ngsi-ld/v1/entities")).await
}

/// POST /entityOperations/query: the same query, its terms in a Query body.
pub async fn query_post(
    call: Update<QueryPost>,
    Accepting(accept): Accepting<true>,
    LdBody { value, ld }: LdBody<false>,
) -> ApiResult {
    let Call { state, headers, mut params, tenant, scope, .. } = call.call;
    push_query_body(&as_object(value, "a Query")?, &mut params);
    crate::limits::check_lists(&params, state.config.max_list_items)?;
    let asked = Asked { headers: &headers, tenant: &tenant, scope: &scope, params: &params, ld: &ld };
    run_query(&state, asked, accept, None).await
}

/// The refusal of a query that names nothing it selects by (clause 5.7.2: type, attrs, q, a
/// geo-query or scopeQ; `id` and `idPattern` only narrow such a selection).
pub const TOO_WIDE_QUERY: &str = "a query must name at least one of type, attrs, q, scopeQ or a geo-query \
     (georel, geometry, coordinates) (clause 5.7.2); id and idPattern alone do not select: add type=<the entities' type> \
     (or retrieve one entity with its id in the path), or local=true to list every entity of this hub";

/// What a query asks, and of whom.
struct Asked<'a> {
    headers: &'a HeaderMap,
    tenant: &'a str,
    /// What the caller may see: the filter is narrowed to it before the store is asked, so
    /// pages and counts hold only what it sees.
    scope: &'a Scope,
    params: &'a Params,
    ld: &'a Ld,
}

async fn run_query(state: &SharedState, asked: Asked<'_>, accept: Accept, get_path: Option<&str>) -> ApiResult {
    let Asked { headers, tenant, scope, params, ld } = asked;
    // GET needs a selector and answers paging links; POST carries its selectors in the body.
    let needs_selector = get_path.is_some();
    let filter = scope.narrow(entity_filter(params, &ld.ctx)?)?;
    // Ids alone do not select (clause 5.7.2): a query names types, attributes, q, a geo-query or
    // scopes.
    let selects = ["type", "attrs", "q", "georel", "scopeQ"].iter().any(|p| params.get(p).is_some());
    if needs_selector && !selects && !params.flag("local")? {
        return Err(NgsiLdError::bad_request(TOO_WIDE_QUERY).into());
    }
    let opts = render_options(params, &ld.ctx)?;
    let paging = crate::request::page(params, &state.config)?;
    let Paging { offset, limit, count } = paging;
    // A query posted as a Query body goes on as one where the source takes it (clause 5.7.3).
    let operation = if get_path.is_some() { Operation::QueryEntity } else { Operation::QueryBatch };
    let targets = distributed_targets(state, headers, tenant, params, &filter, operation).await?;
    let (page, has_next, failures) = if targets.is_empty() {
        // One entity more than the page tells whether a next page exists.
        let mut page = state.store.query(tenant, &filter, Paging { offset, limit: limit + 1, count }).await?;
        let has_next = page.entities.len() > limit;
        page.entities.truncate(limit);
        (page, has_next, Vec::new())
    } else {
        let query = DistributedQuery { params, ld, filter: &filter, sources: &targets, paging, scope };
        distributed_page(state, headers, tenant, query).await?
    };
    // What the store answered is narrowed already; the attributes the caller may not see go.
    let mut page = page;
    page.entities = std::mem::take(&mut page.entities).into_iter().filter_map(|e| scope.redact(e)).collect();
    let geometry_property = geometry_property(params, ld);
    let linked = linked_entities(state, tenant, scope, &page.entities, &opts).await?;
    let mut body: Vec<Value> = page
        .entities
        .iter()
        .zip(render_joined(&page.entities, ld, &opts, &linked))
        // An entity the projection leaves nothing of (a pick of attributes it lacks) is not listed.
        .filter(|(_, rendered)| !rendered.is_empty())
        .map(|(e, rendered)| {
            let rendered = Value::Object(rendered);
            if accept == Accept::GeoJson {
                let mut feature = geojson_feature(rendered, e, &geometry_property, ld);
                feature.as_object_mut().map(|m| m.remove("@context"));
                feature
            } else {
                rendered
            }
        })
        .collect();
    if let (Some((Join::Flat, levels)), false) = (opts.join, accept == Accept::GeoJson) {
        body.extend(render_flat_linked(&page.entities, ld, &opts, &linked, levels));
    }
    let mut response = if accept == Accept::GeoJson {
        ld_json(
            StatusCode::OK,
            json!({"type": "FeatureCollection", "features": body, "@context": ld.body_context()}),
            ld,
            accept,
        )
    } else {
        ld_json(StatusCode::OK, Value::Array(body), ld, accept)
    };
    if let Some(total) = page.total {
        response = with_header(response, "ngsild-results-count", &total.to_string());
    }
    for failure in &failures {
        response = append_header(response, "ngsild-warning", &failure.warning());
    }
    if let Some(path) = get_path {
        response = page_links(response, path, params, paging, has_next, LinkStyle::Entities);
    }
    Ok(response)
}

/// The registrations a read must also ask (none with `local=true`), never a hub the request
/// already crossed.
pub(crate) async fn distributed_targets(
    state: &SharedState,
    headers: &HeaderMap,
    tenant: &str,
    params: &Params,
    filter: &EntityFilter,
    operation: Operation,
) -> Result<Sources, ApiError> {
    if params.flag("local")? {
        return Ok(Sources::default());
    }
    let regs = state.federation.registrations(state.store.as_ref(), tenant).await?;
    if regs.is_empty() {
        return Ok(Sources::default());
    }
    let request = FederationRequest { operation, filter, entity_types: &[] };
    let targets = matching::targets(&regs, &request, &now());
    let hops = Federation::hops(headers);
    Ok(Sources::of(state.federation.reachable(targets, &hops)))
}

/// The sources a read asks, matched once per request: each registration with what to ask it
/// (the parts of its `Target`, owned, so they outlive the tenant's registration snapshot).
#[derive(Default)]
pub(crate) struct Sources {
    registrations: Vec<Registration>,
    asks: Vec<Ask>,
}

/// Per registration: the attributes, ids and types to ask for, and the way to ask.
type Ask = (Option<Vec<String>>, Option<Vec<String>>, Vec<String>, Operation);

impl Sources {
    fn of(targets: Vec<Target<'_>>) -> Sources {
        let mut sources = Sources::default();
        for t in targets {
            sources.registrations.push(t.registration.clone());
            sources.asks.push((t.attrs, t.ids, t.types, t.way));
        }
        sources
    }

    pub fn is_empty(&self) -> bool {
        self.registrations.is_empty()
    }

    /// The targets again, as matched.
    pub fn targets(&self) -> Vec<Target<'_>> {
        let asks = self.registrations.iter().zip(&self.asks);
        asks.map(|(registration, (attrs, ids, types, way))| Target {
            registration,
            attrs: attrs.clone(),
            ids: ids.clone(),
            types: types.clone(),
            way: *way,
        })
        .collect()
    }

    pub fn into_registrations(self) -> Vec<Registration> {
        self.registrations
    }
}

/// One query as the hub and its context sources are asked it.
struct DistributedQuery<'a> {
    params: &'a Params,
    ld: &'a Ld,
    filter: &'a EntityFilter,
    sources: &'a Sources,
    /// The page the client asks for.
    paging: Paging,
    /// What the caller may see: a source's entities it may not see are left out, and so is
    /// the source's count, which may count them.
    scope: &'a Scope,
}

/// A query answered from the hub and its context sources together: each source is asked for
/// the first `offset + limit` matches, the answers merge by entity id, and the merged list is
/// paged here.
async fn distributed_page(
    state: &SharedState,
    headers: &HeaderMap,
    tenant: &str,
    DistributedQuery { params, ld, filter, sources, paging, scope }: DistributedQuery<'_>,
) -> Result<(cityhub_storage::Page, bool, Vec<SourceFailure>), ApiError> {
    let Paging { offset, limit, count } = paging;
    let window = offset + limit;
    let local = state.store.query(tenant, filter, Paging { offset: 0, limit: window + 1, count }).await?;
    let targets = sources.targets();
    let mut forwarded: Vec<(String, String)> = params.pairs().to_vec();
    if !forwarded.iter().any(|(n, _)| n == "limit") {
        forwarded.push(("limit".to_owned(), limit.to_string()));
    }
    let fwd = provision::forwarding(headers, tenant, ld);
    let (answers, failures) = state.federation.entities_from_sources(&targets, &fwd, &forwarded, None).await;
    let mut total = MergedCount::new(local.entities.iter().map(|e| e.id.as_str()), local.total);
    let mut sources = vec![Fragments { entities: local.entities, auxiliary: false }];
    for (reg, entities, remote_count) in answers {
        let entities: Vec<Entity> = entities.into_iter().filter_map(|e| scope.redact(e)).collect();
        let remote_count = remote_count.filter(|_| *scope == Scope::All);
        total.add(entities.iter().map(|e| e.id.as_str()), remote_count);
        sources.push(Fragments { entities, auxiliary: reg.mode == Mode::Auxiliary });
    }
    let total = total.total;
    let mut merged = merge_entities(sources);
    // The merge meets entities by id; an orderBy applies to the merged list.
    if let Some(order) = &filter.order {
        order.sort(&mut merged);
    }
    let has_next = merged.len() > window;
    let page_entities: Vec<Entity> = merged.drain(..).skip(offset).take(limit).collect();
    let page = cityhub_storage::Page { entities: page_entities, total: count.then_some(total) };
    Ok((page, has_next, failures))
}

/// One entity from the hub and the context sources registered for it, merged.
async fn distributed_retrieve(
    state: &SharedState,
    headers: &HeaderMap,
    tenant: &str,
    params: &Params,
    ld: &Ld,
    id: &str,
    local: Option<Entity>,
) -> Result<(Option<Entity>, Vec<SourceFailure>), ApiError> {
    let mut filter = EntityFilter { ids: vec![id.to_owned()], ..Default::default() };
    if let Some(types) = params.get("type") {
        filter.types =
            Some(TypeExpr::parse(types, &ld.ctx).map_err(|e| NgsiLdError::bad_request(format!("invalid type: {e}")))?);
    }
    if let Some(attrs) = params.list("attrs")? {
        filter.attrs = attrs.iter().map(|a| ld.ctx.expand_term(a).into_owned()).collect();
    }
    let sources = distributed_targets(state, headers, tenant, params, &filter, Operation::RetrieveEntity).await?;
    if sources.is_empty() {
        return Ok((local, Vec::new()));
    }
    let targets = sources.targets();
    let fwd = provision::forwarding(headers, tenant, ld);
    let (answers, failures) = state.federation.entities_from_sources(&targets, &fwd, params.pairs(), Some(id)).await;
    let mut sources = vec![Fragments { entities: local.into_iter().collect(), auxiliary: false }];
    for (reg, entities, _) in answers {
        let entities = entities.into_iter().filter(|e| e.id == id).collect();
        sources.push(Fragments { entities, auxiliary: reg.mode == Mode::Auxiliary });
    }
    Ok((merge_entities(sources).pop(), failures))
}

/// DELETE /entities/{id}
pub async fn delete(EntityId(id): EntityId, read: Read<LocalAndType>) -> ApiResult {
    let (call, ld) = (&read.call, &read.ld);
    let Call { state, params, tenant, .. } = call;
    let plan = provision::plan(call, &id, &[], &[], Operation::DeleteEntity).await?;
    let request = ForwardRequest::new(Method::DELETE, format!("/entities/{}", path_segment(&id)), params);
    let remote = provision::forward(call, ld, &plan, request).await;
    let local = if plan.local {
        let missing = id.clone();
        let modifier: Modifier = Box::new(move |current| match current {
            Some(_) => Ok(Modified::delete()),
            None => Err(NgsiLdError::not_found(format!("entity {missing} not found"))),
        });
        Some(modify_one(state.store.as_ref(), tenant, &id, modifier).await.map(|_| ()).map_err(ApiError::from))
    } else {
        None
    };
    provision::entity_answer(&id, local, remote, no_content())
}

/// Runs an operation on an existing entity, or answers 404.
async fn modify_existing(
    state: &SharedState,
    tenant: &str,
    id: &str,
    op: impl FnOnce(&mut Entity) -> Result<Option<ops::UpdateReport>, NgsiLdError> + Send + 'static,
) -> Result<Option<ops::UpdateReport>, ApiError> {
    let missing = id.to_owned();
    let modifier: Modifier = Box::new(move |current| {
        let mut entity = current.ok_or_else(|| NgsiLdError::not_found(format!("entity {missing} not found")))?;
        let report = op(&mut entity)?;
        Ok(Modified::entity(entity).with_report(report))
    });
    Ok(modify_one(state.store.as_ref(), tenant, id, modifier).await?.report)
}

/// Reads a fragment body for an existing entity: id and type in it, if any, must agree.
fn fragment(value: &Value, ld: &Ld, id: &str) -> Result<ngsild_core::expand::EntityInput, ApiError> {
    let input = expand_fragment(&as_object(value.clone(), "an entity fragment")?, &ld.ctx)?;
    if input.id.as_deref().is_some_and(|given| given != id) {
        return Err(NgsiLdError::bad_request("the id in the body differs from the id in the URL").into());
    }
    Ok(input)
}

/// PUT /entities/{id}: the fragment is the whole new entity; an invalid one (no type, a null
/// attribute) is refused before the entity's existence is looked at.
pub async fn replace(EntityId(id): EntityId, write: Write<LocalAndType>, body: LdBody<false>) -> ApiResult {
    let path = format!("/entities/{}", path_segment(&id));
    let how = FragmentWrite { operation: Operation::ReplaceEntity, method: Method::PUT, path };
    let whole_id = id.clone();
    let replacement = move |mut input: ngsild_core::expand::EntityInput| {
        input.id = Some(whole_id);
        entity_from_input(&input)
    };
    write_fragment(&write, &id, body, how, replacement, |entity, replacement| {
        *entity = ops::replace_entity(entity, replacement, &now());
        Ok(None)
    })
    .await
}

/// PATCH /entities/{id}
pub async fn merge(EntityId(id): EntityId, write: Write<MergeParams>, body: LdBody<true>) -> ApiResult {
    let path = format!("/entities/{}", path_segment(&id));
    let how = FragmentWrite { operation: Operation::MergeEntity, method: Method::PATCH, path };
    write_fragment(&write, &id, body, how, Ok, |entity, input| ops::merge_entity(entity, &input, &now()).map(|_| None))
        .await
}

/// POST /entities/{id}/attrs
pub async fn append_attrs(EntityId(id): EntityId, write: Write<Append>, body: LdBody<false>) -> ApiResult {
    let no_overwrite = write.params.has_option("noOverwrite");
    let path = format!("/entities/{}/attrs", path_segment(&id));
    let how = FragmentWrite { operation: Operation::AppendAttrs, method: Method::POST, path };
    write_fragment(&write, &id, body, how, Ok, move |entity, input| {
        ops::append_attributes(entity, &input, no_overwrite, &now()).map(Some)
    })
    .await
}

/// PATCH /entities/{id}/attrs
pub async fn update_attrs(EntityId(id): EntityId, write: Write<Append>, body: LdBody<true>) -> ApiResult {
    let path = format!("/entities/{}/attrs", path_segment(&id));
    let how = FragmentWrite { operation: Operation::UpdateAttrs, method: Method::PATCH, path };
    write_fragment(&write, &id, body, how, Ok, |entity, input| ops::update_attributes(entity, &input, &now()).map(Some))
        .await
}

/// How a write of an attribute fragment to one entity travels.
struct FragmentWrite {
    operation: Operation,
    /// Method and path (under `/ngsi-ld/v1`) of the same request at a context source.
    method: Method,
    path: String,
}

/// A fragment written to one entity, split between the registrations that cover its attributes
/// (forwarded as they are) and the hub: `prepare` reads the attributes left to it (an error
/// there is the hub's part failing, before the entity is looked up), `op` applies them.
#[allow(
    clippy::too_many_arguments,
    reason = "the parts of one request, passed as read; issue 14 gathers them into one request context"
)]
async fn write_fragment<T: Send + 'static, const MERGE_PATCH: bool>(
    call: &Call,
    id: &str,
    LdBody { value, ld }: LdBody<MERGE_PATCH>,
    write: FragmentWrite,
    prepare: impl FnOnce(ngsild_core::expand::EntityInput) -> Result<T, NgsiLdError>,
    op: impl FnOnce(&mut Entity, T) -> Result<Option<ops::UpdateReport>, NgsiLdError> + Send + 'static,
) -> ApiResult {
    let Call { state, headers, params, tenant, .. } = call;
    let mut input = fragment(&value, &ld, id)?;
    let attrs: Vec<String> = input.attrs.keys().cloned().collect();
    let plan = provision::plan(call, id, &input.types, &attrs, write.operation).await?;
    let request = ForwardRequest::new(write.method, write.path, params).with_body(value, headers, &ld, true);
    let remote = provision::forward(call, &ld, &plan, request).await;
    provision::drop_exclusive_copies(state, tenant, id, &remote).await?;
    let local = if plan.local {
        input.attrs.retain(|name, _| plan.keeps(name));
        Some(match prepare(input) {
            Ok(prepared) => modify_existing(state, tenant, id, move |entity| op(entity, prepared)).await,
            Err(e) => Err(e.into()),
        })
    } else {
        None
    };
    provision::answer(local, remote, &plan, &attrs, no_content())
}

/// The attribute named in a path: a valid name, expanded, and not one of the entity's own members.
fn attribute_in_path(attr: &str, ld: &Ld) -> Result<String, NgsiLdError> {
    if matches!(attr, "id" | "type" | "scope" | "@context") {
        return Err(NgsiLdError::bad_request(format!("{attr} is not an attribute")));
    }
    ngsild_core::expand::expand_attribute_name(attr, &ld.ctx)
}

/// The body of an attribute operation: one instance of the attribute, names expanded.
fn attribute_body(value: &Value, ld: &Ld, attr: &str) -> Result<(String, ngsild_core::expand::RawAttribute), ApiError> {
    let name = attribute_in_path(attr, ld)?;
    let raw = match ngsild_core::expand::expand_attribute_input(value, &ld.ctx)? {
        AttributeInput::Instances(mut instances) if instances.len() == 1 => instances.pop().unwrap_or_default(),
        _ => expand_raw_attribute(value, &ld.ctx)?,
    };
    Ok((name, raw))
}

/// PATCH /entities/{id}/attrs/{attr}
pub async fn partial_update_attr(path: EntityAttr, write: Write<LocalOnly>, body: LdBody<true>) -> ApiResult {
    let name = attribute_in_path(&path.1, &body.ld)?;
    let patch = ngsild_core::expand::expand_attribute_fragment(&body.value, &body.ld.ctx)?;
    if patch.is_empty() {
        return Err(NgsiLdError::bad_request("the attribute fragment is empty").into());
    }
    let how = AttributeWrite { operation: Operation::UpdateAttrs, method: Method::PATCH, name, body: Some(body.value) };
    write_attribute(&write, &path, &body.ld, how, move |entity, name| {
        ops::partial_update_attribute(entity, name, &patch, &now()).map(drop)
    })
    .await
}

/// PUT /entities/{id}/attrs/{attr}
pub async fn replace_attr(path: EntityAttr, write: Write<LocalOnly>, body: LdBody<false>) -> ApiResult {
    let (name, raw_attr) = attribute_body(&body.value, &body.ld, &path.1)?;
    let how = AttributeWrite { operation: Operation::ReplaceAttrs, method: Method::PUT, name, body: Some(body.value) };
    write_attribute(&write, &path, &body.ld, how, move |entity, name| {
        ops::replace_attribute(entity, name, &raw_attr, &now()).map(drop)
    })
    .await
}

/// DELETE /entities/{id}/attrs/{attr}
pub async fn delete_attr(path: EntityAttr, read: Read<DeleteAttr>) -> ApiResult {
    // `scope` may be deleted like an attribute (clause 4.18).
    let ld = &read.ld;
    let name =
        if path.1 == "scope" { ld.ctx.expand_term("scope").into_owned() } else { attribute_in_path(&path.1, ld)? };
    let dataset_id = read.params.get("datasetId").map(str::to_owned);
    if let Some(ds) = &dataset_id {
        ngsild_core::validate::check_uri(ds, "datasetId")?;
    }
    let delete_all = read.params.flag("deleteAll")?;
    let how = AttributeWrite { operation: Operation::DeleteAttrs, method: Method::DELETE, name, body: None };
    write_attribute(&read, &path, ld, how, move |entity, name| {
        ops::delete_attribute(entity, name, dataset_id.as_deref(), delete_all, &now()).map(drop)
    })
    .await
}

/// A write on one attribute of one entity, and how the same request travels to a source.
struct AttributeWrite {
    operation: Operation,
    method: Method,
    /// The attribute, expanded.
    name: String,
    /// The body as the client sent it (none for a deletion).
    body: Option<Value>,
}

/// Writes one attribute (`/entities/{id}/attrs/{attr}`): the registrations holding the attribute
/// get the request as it came, the hub applies `op` to its part (404 for an entity it lacks).
async fn write_attribute(
    call: &Call,
    EntityAttr(id, attr): &EntityAttr,
    ld: &Ld,
    how: AttributeWrite,
    op: impl FnOnce(&mut Entity, &str) -> Result<(), NgsiLdError> + Send + 'static,
) -> ApiResult {
    let Call { state, headers, params, tenant, .. } = call;
    let AttributeWrite { operation, method, name, body } = how;
    let attrs = vec![name.clone()];
    let plan = provision::plan(call, id, &[], &attrs, operation).await?;
    let path = format!("/entities/{}/attrs/{}", path_segment(id), path_segment(attr));
    let request = ForwardRequest::new(method, path, params);
    let request = match body {
        Some(value) => request.with_body(value, headers, ld, false),
        None => request,
    };
    let remote = provision::forward(call, ld, &plan, request).await;
    provision::drop_exclusive_copies(state, tenant, id, &remote).await?;
    let local = match plan.local {
        true => Some(modify_existing(state, tenant, id, move |entity| op(entity, &name).map(|()| None)).await),
        false => None,
    };
    provision::answer(local, remote, &plan, &attrs, no_content())
}

/// PUT or PATCH on /entities without an id (after the parameters are checked, as every
/// operation's).
pub async fn missing_id(_: Write<NoParams>) -> ApiError {
    NgsiLdError::bad_request("the entity id is missing from the path").into()
}

/// DELETE /entities: purge the entities a query selects, or some of their attributes.
pub async fn purge(read: Read<Purge>) -> ApiResult {
    let (Call { state, headers, params, tenant, .. }, ld) = (read.call, read.ld);
    let keep = params.list("keep")?;
    let drop = params.list("drop")?;
    if keep.is_some() && drop.is_some() {
        return Err(NgsiLdError::bad_request("keep and drop cannot be used together").into());
    }
    let selects = ["id", "idPattern", "type", "q", "scopeQ"].iter().any(|p| params.get(p).is_some());
    if !selects && !params.flag("local")? {
        return Err(NgsiLdError::bad_request(
            "purge needs at least one of type, id, idPattern, q, scopeQ, or local=true",
        )
        .into());
    }
    let filter = entity_filter(&params, &ld.ctx)?;
    let remote = purge_sources(&state, &headers, &tenant, &params, &ld, &filter).await?;
    let expand =
        |names: Vec<String>| names.into_iter().map(|n| ld.ctx.expand_term(&n).into_owned()).collect::<Vec<_>>();
    let ids = matching_ids(&state, &tenant, &filter).await?;
    let modifications =
        ids.into_iter().map(|id| (id, purge_one(keep.clone().map(expand), drop.clone().map(expand)))).collect();
    state.store.modify(&tenant, modifications).await?;
    Ok(purge_answer(&remote))
}

/// The ids of every entity `filter` selects, read a thousand at a time.
async fn matching_ids(state: &SharedState, tenant: &str, filter: &EntityFilter) -> Result<Vec<String>, ApiError> {
    let mut ids = Vec::new();
    let chunk = 1000;
    loop {
        let page = state.store.query(tenant, filter, Paging { offset: ids.len(), limit: chunk, count: false }).await?;
        let n = page.entities.len();
        ids.extend(page.entities.into_iter().map(|e| e.id));
        if n < chunk {
            return Ok(ids);
        }
    }
}

/// Purges one entity: all of it, or all but the `keep` attributes, or the `drop` ones.
fn purge_one(keep: Option<Vec<String>>, drop: Option<Vec<String>>) -> Modifier {
    Box::new(move |current| {
        let purged = current.and_then(|entity| ops::purge(entity, keep.as_deref(), drop.as_deref(), &now()));
        Ok(purged.map_or_else(Modified::delete, Modified::entity))
    })
}

/// 204 when every source purged its part too; else 207 with one error per source that did not
/// (`provision::purge_result`; the hub purged its own part).
fn purge_answer(remote: &[ProvisionAnswer]) -> Response {
    let warnings: Vec<SourceFailure> = remote.iter().filter_map(ProvisionAnswer::failure).collect();
    let outcomes: Vec<(String, Option<NgsiLdError>)> =
        remote.iter().map(|a| (a.registration.id.clone(), a.error())).collect();
    match ngsild_federation::provision::purge_result(&outcomes) {
        None => provision::warned(no_content(), &warnings),
        Some(body) => provision::warned(plain_json(StatusCode::MULTI_STATUS, &body), &warnings),
    }
}

/// Forwards a purge to the registrations whose entities it selects (as `purgeEntity`, or
/// `deleteEntity` by a source that offers no purge): the same query, minus `local`.
async fn purge_sources(
    state: &SharedState,
    headers: &HeaderMap,
    tenant: &str,
    params: &Params,
    ld: &Ld,
    filter: &EntityFilter,
) -> Result<Vec<ProvisionAnswer>, ApiError> {
    let registrations = distributed_targets(state, headers, tenant, params, filter, Operation::PurgeEntity).await?;
    if registrations.is_empty() {
        return Ok(Vec::new());
    }
    let parts = registrations.into_registrations().into_iter().map(|reg| (reg, None, None)).collect();
    let fwd = provision::forwarding(headers, tenant, ld);
    let query = provision::forwarded_query(params);
    Ok(state.federation.send_to_sources(parts, &fwd, Method::DELETE, "/entities", &query).await)
}
