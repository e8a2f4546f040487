//! `/temporal/entities`: the temporal evolution of entities (clauses 5.6.11–5.6.18, 5.7.3, 5.7.4).

use axum::http::{HeaderMap, StatusCode};
use cityhub_storage::{TemporalOutcome, TemporalQuery, TemporalWrite};
use ngsild_core::expand::{build_attribute, expand_raw_attribute, expand_temporal_entity};
use ngsild_core::temporal::{render_temporal, TemporalFormat};
use ngsild_core::temporal_cut::{content_range, content_range_end, earliest_cut, page_cut};
use ngsild_core::{Entity, NgsiLdError};
use ngsild_federation::matching::Operation;
use ngsild_federation::merge::{merge_temporal, MergedCount, TemporalFragments};
use ngsild_federation::Mode;
use serde_json::Value;

use crate::entities::distributed_targets;
use crate::error::{ApiError, ApiResult};
use crate::extract::{
    params, Accepting, Call, EntityAttr, EntityId, InstancePath, LdBody, LocalOnly, Read, Update, Write,
};
use crate::federation::{results_count, SourceAnswer, SourceFailure};
use crate::provision;
use crate::request::{as_object, Accept, Ld, Params};
use crate::response::{created, ld_json, no_content, with_header};
use crate::SharedState;
use ngsild_query::params::{entity_filter, push_query_body, render_options};

params! {
    Retrieve = cityhub_openapi::query::TEMPORAL_RETRIEVE;
    Query = cityhub_openapi::query::TEMPORAL_QUERY;
    QueryPost = cityhub_openapi::query::TEMPORAL_QUERY_POST;
    LocalAndType = &["local", "type"];
    DeleteAttr = &["datasetId", "deleteAll", "local"];
}

/// Expands a temporal entity body: every attribute may hold many instances, several per datasetId.
fn temporal_entity(body: Value, ld: &Ld, needs_id_and_type: bool) -> Result<Entity, ApiError> {
    Ok(expand_temporal_entity(&as_object(body, "a temporal entity")?, &ld.ctx, needs_id_and_type)?)
}

/// POST /temporal/entities: creates a temporal entity, or adds instances to one (204).
pub async fn create(write: Write<LocalOnly>, LdBody { value, ld }: LdBody<false>) -> ApiResult {
    let Call { state, tenant, .. } = write.call;
    let entity = temporal_entity(value, &ld, true)?;
    let id = entity.id.clone();
    match state.store.temporal_write(&tenant, &id, TemporalWrite::AddInstances { entity, must_exist: false }).await?? {
        TemporalOutcome::Created => Ok(created(&format!("/ngsi-ld/v1/temporal/entities/{id}"))),
        TemporalOutcome::Updated => Ok(no_content()),
    }
}

/// POST /temporal/entities/{id}/attrs: adds attribute instances to an existing temporal entity.
pub async fn add_attrs(
    EntityId(id): EntityId,
    update: Update<LocalOnly>,
    LdBody { value, ld }: LdBody<false>,
) -> ApiResult {
    let Call { state, tenant, .. } = update.call;
    let mut entity = temporal_entity(value, &ld, false)?;
    if entity.attrs.is_empty() {
        return Err(NgsiLdError::bad_request("no attribute to add").into());
    }
    entity.id = id.clone();
    state.store.temporal_write(&tenant, &id, TemporalWrite::AddInstances { entity, must_exist: true }).await??;
    Ok(no_content())
}

/// DELETE /temporal/entities/{id}
pub async fn delete(EntityId(id): EntityId, update: Update<LocalAndType>) -> ApiResult {
    let Call { state, tenant, .. } = update.call;
    state.store.temporal_write(&tenant, &id, TemporalWrite::DeleteEntity).await??;
    Ok(no_content())
}

fn attribute_name(attr: &str, ld: &Ld) -> Result<String, ApiError> {
    Ok(ngsild_core::expand::expand_attribute_name(attr, &ld.ctx)?)
}

/// DELETE /temporal/entities/{id}/attrs/{attrId}
pub async fn delete_attr(EntityAttr(id, attr): EntityAttr, Read { call, ld, .. }: Read<DeleteAttr>) -> ApiResult {
    let Call { state, params, tenant, .. } = call;
    let attr = attribute_name(&attr, &ld)?;
    let dataset_id = params.get("datasetId").map(str::to_owned);
    let all = params.flag("deleteAll")?;
    state.store.temporal_write(&tenant, &id, TemporalWrite::DeleteAttribute { attr, dataset_id, all }).await??;
    Ok(no_content())
}

/// PATCH /temporal/entities/{id}/attrs/{attrId}/{instanceId}
pub async fn patch_instance(
    InstancePath(id, attr, instance_id): InstancePath,
    update: Update<LocalOnly>,
    LdBody { value, ld }: LdBody<false>,
) -> ApiResult {
    let Call { state, tenant, .. } = update.call;
    let attr = attribute_name(&attr, &ld)?;
    let mut fragment = as_object(value, "an attribute fragment")?;
    fragment.remove("@context");
    // The body is the instance itself, or names the attribute: `{"speed": {...}}`.
    let bare = fragment.contains_key("type") || fragment.contains_key("value") || fragment.contains_key("object");
    let fragment = Value::Object(fragment);
    let instance = if bare {
        &fragment
    } else {
        let (name, instance) = fragment
            .as_object()
            .and_then(|m| m.iter().next())
            .ok_or_else(|| NgsiLdError::bad_request("the body names no attribute"))?;
        if attribute_name(name, &ld)? != attr {
            return Err(NgsiLdError::bad_request(format!("the body changes {name}, not {attr}")).into());
        }
        instance
    };
    let instance = match instance {
        Value::Array(items) if items.len() == 1 => &items[0],
        Value::Array(_) => return Err(NgsiLdError::bad_request("one instance at a time").into()),
        other => other,
    };
    let raw = expand_raw_attribute(instance, &ld.ctx)?;
    let attribute = build_attribute(&raw)?;
    state.store.temporal_write(&tenant, &id, TemporalWrite::ReplaceInstance { attr, instance_id, attribute }).await??;
    Ok(no_content())
}

/// DELETE /temporal/entities/{id}/attrs/{attrId}/{instanceId}
pub async fn delete_instance(
    InstancePath(id, attr, instance_id): InstancePath,
    Read { call, ld, .. }: Read<LocalOnly>,
) -> ApiResult {
    let Call { state, tenant, .. } = call;
    let attr = attribute_name(&attr, &ld)?;
    state.store.temporal_write(&tenant, &id, TemporalWrite::DeleteInstance { attr, instance_id }).await??;
    Ok(no_content())
}

/// What a temporal retrieval or query asks beyond the entity selection.
struct TemporalAsk {
    format: TemporalFormat,
    query: TemporalQuery,
    last_n: Option<usize>,
    /// The most instances one response holds.
    limit: usize,
}

/// The temporal parameters ([`ngsild_core::temporal_ask`]) as the store's query.
fn temporal_ask(params: &Params, ld: &Ld, instance_limit: usize) -> Result<TemporalAsk, ApiError> {
    let ask = ngsild_core::temporal_ask::TemporalAsk::parse(params, &ld.ctx, instance_limit)?;
    let query = TemporalQuery {
        per_attribute: ask.per_attribute(),
        attrs: ask.attrs,
        dataset_ids: ask.dataset_ids,
        timerel: ask.timerel,
        time_property: ask.time_property,
        newest_first: ask.last_n.is_some(),
        skip_empty: true,
        aggregation: ask.aggregation,
        ..Default::default()
    };
    Ok(TemporalAsk { format: ask.format, query, last_n: ask.last_n, limit: ask.limit })
}

/// Renders temporal entities, cutting instances to one page; 206 with `Content-Range` when cut.
/// `source_cut`: where a context source cut its share of them (see [`RemoteHistory::cut`]).
fn respond(
    mut entities: Vec<cityhub_storage::TemporalEntity>,
    ask: &TemporalAsk,
    params: &Params,
    ld: &Ld,
    accept: Accept,
    single: bool,
    source_cut: Option<String>,
) -> ApiResult {
    let property = ask.query.time_property;
    let cut = match ask.format {
        TemporalFormat::Aggregated => None,
        _ => page_cut(&mut entities, ask.limit, ask.last_n, property, source_cut),
    };
    let opts = render_options(&params.without_temporal_format(), &ld.ctx)?;
    let rendered: Vec<Value> = entities
        .iter()
        .map(|e| Value::Object(render_temporal(e, &ld.ctx, ask.format, property, &opts)))
        .filter(|v| v.as_object().is_some_and(|m| !m.is_empty()))
        .collect();
    let body = if single {
        rendered
            .into_iter()
            .next()
            .ok_or_else(|| NgsiLdError::not_found("the temporal entity has nothing matching the projection"))?
    } else {
        Value::Array(rendered)
    };
    let Some(cut) = cut else {
        return Ok(ld_json(StatusCode::OK, body, ld, accept));
    };
    let range = content_range(&entities, &cut, ask.last_n, ask.query.timerel.as_ref(), property);
    Ok(with_header(ld_json(StatusCode::PARTIAL_CONTENT, body, ld, accept), "content-range", &range))
}

/// GET /temporal/entities/{id}: the hub's history of the entity merged with what the context
/// sources registered for it hold (`retrieveTemporal`, or `queryTemporal` by id).
pub async fn retrieve(
    EntityId(id): EntityId,
    Read { call, ld, .. }: Read<Retrieve>,
    Accepting(accept): Accepting<false>,
) -> ApiResult {
    let Call { state, headers, params, tenant, scope, .. } = call;
    let mut ask = temporal_ask(&params, &ld, state.config.temporal_instance_limit)?;
    ask.query.filter.ids = vec![id.clone()];
    ask.query.filter = scope.narrow(std::mem::take(&mut ask.query.filter))?;
    ask.query.skip_empty = false;
    ask.query.paging = cityhub_storage::Paging { offset: 0, limit: 1, count: false };
    let page = state.store.temporal_query(&tenant, &ask.query).await?;
    let selection =
        cityhub_storage::EntityFilter { ids: vec![id.clone()], attrs: ask.query.attrs.clone(), ..Default::default() };
    let read = HistoryRead { operation: Operation::RetrieveTemporal, filter: &selection, retrieval: Some(&id) };
    let remote = remote_history(&state, &headers, &tenant, &params, &ld, &ask, read).await?;
    let entities = remote.merged_with(page.entities, &ask);
    // A history the caller may not see is not found; attributes it may not see are left out.
    let entities: Vec<_> = entities.into_iter().filter_map(|e| scope.redact_history(e)).collect();
    if entities.is_empty() {
        return Err(NgsiLdError::not_found(format!("no temporal representation of {id}")).into());
    }
    if !ask.query.attrs.is_empty()
        && ask.query.timerel.is_none()
        && entities.iter().all(|e| e.attrs.values().all(Vec::is_empty) && e.aggregates.is_empty())
    {
        return Err(NgsiLdError::not_found(format!("{id} has no history of the attributes asked for")).into());
    }
    let response = respond(entities, &ask, &params, &ld, accept, true, remote.cut)?;
    Ok(provision::warned(response, &remote.failures))
}

/// What a distributed temporal read asks the context sources.
struct HistoryRead<'a> {
    operation: Operation,
    /// The entities and attributes it selects, for choosing the registrations.
    filter: &'a cityhub_storage::EntityFilter,
    /// The id of the one entity a retrieval asks for.
    retrieval: Option<&'a str>,
}

/// What the registered context sources answered of a temporal read.
#[derive(Default)]
struct RemoteHistory {
    /// Whether any source was asked.
    asked: bool,
    sources: Vec<TemporalFragments>,
    /// Per source: the ids it listed and the count it gave.
    counts: Vec<(Vec<String>, Option<usize>)>,
    /// A source that cut its instances at its own limit (206) has nothing past that time: the
    /// earliest such cut (the latest with `lastN`, which reads backwards), where the merged
    /// page has to stop too.
    cut: Option<String>,
    failures: Vec<SourceFailure>,
}

/// One source's answer to a forwarded temporal read.
#[derive(Default)]
struct SourceHistory {
    entities: Vec<cityhub_storage::TemporalEntity>,
    count: Option<usize>,
    cut: Option<String>,
}

impl RemoteHistory {
    /// The hub's own history merged with the sources'.
    fn merged_with(
        &self,
        local: Vec<cityhub_storage::TemporalEntity>,
        ask: &TemporalAsk,
    ) -> Vec<cityhub_storage::TemporalEntity> {
        if !self.asked {
            return local;
        }
        let mut all = vec![TemporalFragments { entities: local, auxiliary: false }];
        all.extend(
            self.sources.iter().map(|s| TemporalFragments { entities: s.entities.clone(), auxiliary: s.auxiliary }),
        );
        merge_temporal(all, ask.query.time_property, ask.last_n.is_some())
    }
}

/// Asks the registrations that serve a temporal read (none with `local=true`), each in the way
/// it offers, with the client's parameters (`narrowed`: timerel, lastN, aggregation and the
/// rest as given); reads each answer back into the history model.
async fn remote_history(
    state: &SharedState,
    headers: &HeaderMap,
    tenant: &str,
    params: &Params,
    ld: &Ld,
    ask: &TemporalAsk,
    read: HistoryRead<'_>,
) -> Result<RemoteHistory, ApiError> {
    let sources = distributed_targets(state, headers, tenant, params, read.filter, read.operation).await?;
    if sources.is_empty() {
        return Ok(RemoteHistory::default());
    }
    let targets = sources.targets();
    let fwd = provision::forwarding(headers, tenant, ld);
    let (ctx, aggregated) = (ld.ctx.clone(), ask.format == TemporalFormat::Aggregated);
    let read_answer = move |answer: &SourceAnswer| -> Result<SourceHistory, String> {
        let value: Value = serde_json::from_slice(&answer.body).map_err(|e| format!("answered invalid JSON: {e}"))?;
        let items = match value {
            Value::Array(items) => items,
            one @ Value::Object(_) => vec![one],
            _ => return Err("answered something other than temporal entities".to_owned()),
        };
        let mut entities = Vec::with_capacity(items.len());
        for item in items.iter().filter_map(Value::as_object) {
            match ngsild_core::temporal::read_temporal(item, &ctx, aggregated) {
                Ok(entity) => entities.push(entity),
                Err(e) => {
                    tracing::warn!(error = %e, "a context source answered a temporal entity that is not valid; left out")
                }
            }
        }
        let range = answer.headers.get("content-range").and_then(|v| v.to_str().ok());
        let cut = range.filter(|_| answer.status == 206).and_then(content_range_end);
        Ok(SourceHistory { entities, count: results_count(answer), cut })
    };
    let (answers, failures) =
        state.federation.read_sources(&targets, &fwd, params.pairs(), read.retrieval, read_answer).await;
    let newest_first = ask.last_n.is_some();
    let mut remote = RemoteHistory { asked: true, failures, ..Default::default() };
    for (reg, answer) in answers {
        remote.cut = earliest_cut(remote.cut.take(), answer.cut, newest_first);
        remote.counts.push((answer.entities.iter().map(|e| e.id.clone()).collect(), answer.count));
        remote.sources.push(TemporalFragments { entities: answer.entities, auxiliary: reg.mode == Mode::Auxiliary });
    }
    Ok(remote)
}

/// GET /temporal/entities
pub async fn query(Read { call, ld, .. }: Read<Query>, Accepting(accept): Accepting<false>) -> ApiResult {
    run_query(call, accept, ld, true).await
}

/// POST /temporal/entityOperations/query
pub async fn query_post(
    Update { mut call, .. }: Update<QueryPost>,
    Accepting(accept): Accepting<false>,
    LdBody { value, ld }: LdBody<false>,
) -> ApiResult {
    push_query_body(&as_object(value, "a Query")?, &mut call.params);
    crate::limits::check_lists(&call.params, call.state.config.max_list_items)?;
    run_query(call, accept, ld, false).await
}

/// A temporal query, in the @context of the `Link` header (GET) or of the Query body (POST).
async fn run_query(call: Call, accept: Accept, ld: Ld, needs_selector: bool) -> ApiResult {
    let Call { ref state, ref headers, ref params, ref tenant, ref scope, .. } = call;
    // Ids alone do not select, as in an entity query (clause 5.7.4).
    let selects = ["type", "attrs", "q", "georel", "scopeQ"].iter().any(|p| params.get(p).is_some());
    if needs_selector && !selects && !params.flag("local")? {
        return Err(NgsiLdError::bad_request(crate::entities::TOO_WIDE_QUERY).into());
    }
    let mut ask = temporal_ask(params, &ld, state.config.temporal_instance_limit)?;
    // Narrowed before the store is asked: pages and counts hold only what the caller sees.
    let selection = scope.narrow(entity_filter(params, &ld.ctx)?)?;
    ask.query.filter = selection.clone();
    // attrs selects instances here, not entities.
    ask.query.filter.attrs.clear();
    let limit = params.usize("limit")?.unwrap_or(state.config.default_page_size);
    if limit > state.config.max_page_size {
        return Err(NgsiLdError::new(
            ngsild_core::ErrorKind::TooManyResults,
            format!("limit may be at most {}", state.config.max_page_size),
        )
        .into());
    }
    let count = params.flag("count")?;
    let offset = params.usize("offset")?.unwrap_or(0);
    let read = HistoryRead { operation: Operation::QueryTemporal, filter: &selection, retrieval: None };
    let remote = remote_history(state, headers, tenant, params, &ld, &ask, read).await?;
    let (entities, total) = if remote.asked {
        // Each source was asked for its first offset + limit entities; the merged list is paged here.
        ask.query.paging = cityhub_storage::Paging { offset: 0, limit: offset + limit, count };
        let page = state.store.temporal_query(tenant, &ask.query).await?;
        let mut total = MergedCount::new(page.entities.iter().map(|e| e.id.as_str()), page.total);
        for (ids, source_count) in &remote.counts {
            // A source's count may count what the caller may not see: then only what it listed counts.
            let source_count = source_count.filter(|_| *scope == cityhub_access::Scope::All);
            total.add(ids.iter().map(String::as_str), source_count);
        }
        let merged = remote.merged_with(page.entities, &ask);
        let mut merged: Vec<_> = merged.into_iter().filter_map(|e| scope.redact_history(e)).collect();
        if let Some(order) = &selection.order {
            order.sort_histories(&mut merged);
        }
        (merged.into_iter().skip(offset).take(limit).collect(), count.then_some(total.total))
    } else {
        ask.query.paging = cityhub_storage::Paging { offset, limit, count };
        let page = state.store.temporal_query(tenant, &ask.query).await?;
        (page.entities.into_iter().filter_map(|e| scope.redact_history(e)).collect(), page.total)
    };
    let mut response = respond(entities, &ask, params, &ld, accept, false, remote.cut.clone())?;
    if let Some(total) = total {
        response = with_header(response, "ngsild-results-count", &total.to_string());
    }
    Ok(provision::warned(response, &remote.failures))
}
