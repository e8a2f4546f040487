//! Discovery (clause 5.7.5-5.7.10): which entity types and attributes the hub holds.
//!
//! Summaries are computed from the tenant's entities in one pass of the store; names come back
//! compacted with the request's @context, identifiers as full IRIs.

use indexmap::IndexMap;

use axum::extract::Path;
use axum::http::{HeaderMap, StatusCode};
use cityhub_access::Scope;
use cityhub_storage::{EntityFilter, Paging};
use ngsild_core::discovery::{
    attribute_summaries, push_unique, type_summaries, AttributeInfo, DiscoveryInfo, SourceInfo, TypeInfo,
};
use ngsild_core::{Entity, NgsiLdError};
use serde_json::{json, Value};

use axum::http::Method;
use ngsild_federation::matching::{self, Operation, Request as FederationRequest};

use crate::error::ApiResult;
use crate::extract::{params, Accepting, Call, Read};
use crate::federation::{Federation, SourceFailure};
use crate::request::{Accept, Ld, Params};
use crate::response::{ld_json, path_segment};
use crate::SharedState;

params! {
    Details = &["details", "local", "via"];
    Info = &["local", "via"];
}

/// Every entity of the tenant the caller sees, without the attributes it may not see: what
/// the summaries are made of, so a hidden type or attribute is never named.
async fn all_entities(call: &Call) -> Result<Vec<Entity>, crate::ApiError> {
    let filter = call.scope.narrow(EntityFilter::default())?;
    let page =
        call.state.store.query(&call.tenant, &filter, Paging { offset: 0, limit: usize::MAX, count: false }).await?;
    Ok(page.entities.into_iter().filter_map(|e| call.scope.redact(e)).collect())
}

/// The names the caller may not see left out of what sources answered: `is_types` says
/// whether the keys are types (and the values attributes) or the other way round.
fn seen_names(names: &mut IndexMap<String, Vec<String>>, scope: &Scope, is_types: bool) {
    let seen = |name: &str, as_type: bool| if as_type { scope.shows_type(name) } else { scope.shows_attr(name) };
    names.retain(|k, values| {
        values.retain(|v| seen(v, !is_types));
        seen(k, is_types) && (is_types || !values.is_empty())
    });
}

/// The attributes and types a detail body names (what sources added included) that the caller
/// may see: `attributeDetails` by their ids, `typeNames` by their expanded names.
fn seen_details(body: &mut Value, scope: &Scope, ld: &Ld) {
    if let Some(details) = body.get_mut("attributeDetails").and_then(Value::as_array_mut) {
        details.retain(|d| d["id"].as_str().is_none_or(|a| scope.shows_attr(a)));
    }
    if let Some(types) = body.get_mut("typeNames").and_then(Value::as_array_mut) {
        types.retain(|t| t.as_str().is_none_or(|t| scope.shows_type(&ld.ctx.expand_term(t))));
    }
}

/// A type or attribute the caller may not see is not found, as if no entity had it.
fn hidden(call: &Call, iri: &str, is_type: bool, missing: String) -> Result<(), NgsiLdError> {
    let seen = if is_type { call.scope.shows_type(iri) } else { call.scope.shows_attr(iri) };
    if seen {
        Ok(())
    } else {
        Err(NgsiLdError::not_found(missing))
    }
}

fn compact(ld: &Ld, iri: &str) -> Value {
    Value::String(ld.ctx.compact_iri(iri).into_owned())
}

fn details(params: &Params) -> Result<bool, NgsiLdError> {
    match params.get("details") {
        None | Some("false") => Ok(false),
        Some("true") => Ok(true),
        Some(other) => Err(NgsiLdError::bad_request(format!("details must be true or false, not {other:?}"))),
    }
}

/// GET /types
pub async fn types(Read { call, ld, .. }: Read<Details>, Accepting(accept): Accepting<false>) -> ApiResult {
    let details = details(&call.params)?;
    let summaries = type_summaries(&all_entities(&call).await?);
    let Call { state, headers, params, tenant, scope, .. } = call;
    // type IRI -> attribute IRIs
    let mut names: IndexMap<String, Vec<String>> =
        summaries.iter().map(|(t, s)| (t.clone(), s.attributes.keys().cloned().collect())).collect();
    let sources = RemoteNames { operation: Operation::RetrieveTypes, path: "/types" };
    let failures = sources.merge_into(&mut names, &state, &headers, &tenant, &params, &ld).await?;
    seen_names(&mut names, &scope, true);
    names.sort_keys();
    let body = if details {
        Value::Array(
            names
                .iter()
                .map(|(iri, attrs)| {
                    json!({
                        "id": iri,
                        "type": "EntityType",
                        "typeName": compact(&ld, iri),
                        "attributeNames": attrs.iter().map(|a| compact(&ld, a)).collect::<Vec<_>>(),
                    })
                })
                .collect(),
        )
    } else {
        json!({
            "id": format!("urn:ngsi-ld:EntityTypeList:{}", uuid::Uuid::new_v4()),
            "type": "EntityTypeList",
            "typeList": names.keys().map(|t| compact(&ld, t)).collect::<Vec<_>>(),
        })
    };
    Ok(crate::provision::warned(ld_json(StatusCode::OK, body, &ld, accept), &failures))
}

/// The names the registered context sources hold for a discovery request (clause 5.7.5-5.7.8).
/// Sources are asked for details (`typeName` with `attributeNames`, `attributeName` with
/// `typeNames`) so that a registration's answer can be kept to the types and attributes it
/// registers; a failing source is reported and left out.
struct RemoteNames {
    operation: Operation,
    path: &'static str,
}

impl RemoteNames {
    /// Adds each source's names (expanded) to `names`: name -> the names it relates to.
    async fn merge_into(
        &self,
        names: &mut IndexMap<String, Vec<String>>,
        state: &SharedState,
        headers: &HeaderMap,
        tenant: &str,
        params: &Params,
        ld: &Ld,
    ) -> Result<Vec<SourceFailure>, crate::ApiError> {
        if params.flag("local")? {
            return Ok(Vec::new());
        }
        let regs = state.federation.registrations(state.store.as_ref(), tenant).await?;
        let filter = EntityFilter::default();
        let request = FederationRequest { operation: self.operation, filter: &filter, entity_types: &[] };
        let targets = matching::targets(&regs, &request, &ngsild_core::time::now());
        let targets = state.federation.reachable(targets, &Federation::hops(headers));
        if targets.is_empty() {
            return Ok(Vec::new());
        }
        let query = vec![("details".to_owned(), "true".to_owned())];
        let parts = targets.iter().map(|t| (t.registration.clone(), t.attrs.clone(), None)).collect();
        let fwd = crate::provision::forwarding(headers, tenant, ld);
        let answers = state.federation.send_to_sources(parts, &fwd, Method::GET, self.path, &query).await;
        let is_types = self.operation == Operation::RetrieveTypes;
        let (name_member, related_member) =
            if is_types { ("typeName", "attributeNames") } else { ("attributeName", "typeNames") };
        let mut failures = Vec::new();
        for (answer, target) in answers.iter().zip(&targets) {
            let body = match &answer.result {
                Ok(a) if a.status == 200 => serde_json::from_slice::<Value>(&a.body).unwrap_or(Value::Null),
                _ => {
                    failures.extend(answer.failure());
                    continue;
                }
            };
            let expand = |v: &Value| v.as_str().map(|n| ld.ctx.expand_term(n).into_owned());
            let type_registered = |t: &str| target.types.is_empty() || target.types.iter().any(|r| r == t);
            let attr_registered = |a: &str| target.attrs.as_deref().is_none_or(|r| r.iter().any(|n| n == a));
            let name_registered = |n: &str| if is_types { type_registered(n) } else { attr_registered(n) };
            let related_registered = |r: &str| if is_types { attr_registered(r) } else { type_registered(r) };
            for item in body.as_array().into_iter().flatten() {
                let Some(name) = item.get(name_member).and_then(expand).filter(|n| name_registered(n)) else {
                    continue;
                };
                let related: Vec<String> = item
                    .get(related_member)
                    .and_then(Value::as_array)
                    .map(|l| l.iter().filter_map(expand).filter(|r| related_registered(r)).collect())
                    .unwrap_or_default();
                // An attribute counts only where it belongs to a registered type.
                if !is_types && related.is_empty() {
                    continue;
                }
                let held = names.entry(name).or_default();
                for r in related {
                    push_unique(held, r);
                }
            }
        }
        Ok(failures)
    }
}

/// GET /types/{type}: the hub's entities of the type, and what the context sources registered
/// for it hold (`retrieveEntityTypeInfo`): counts add up, attributes unite.
pub async fn type_info(
    Path(name): Path<String>,
    Read { call, ld, .. }: Read<Info>,
    Accepting(accept): Accepting<false>,
) -> ApiResult {
    let iri = ld.ctx.expand_term(&name).into_owned();
    hidden(&call, &iri, true, format!("no entity of type {name}"))?;
    let summaries = type_summaries(&all_entities(&call).await?);
    let known = TypeInfo::local(summaries.get(&iri));
    let types = ngsild_query::TypeExpr::parse(&iri, &ld.ctx).map_err(|e| NgsiLdError::bad_request(e.to_string()))?;
    let info = RemoteInfo {
        operation: Operation::RetrieveTypeInfo,
        path: format!("/types/{}", path_segment(&name)),
        filter: EntityFilter { types: Some(types), ..Default::default() },
        missing: format!("no entity of type {name}"),
    };
    info_answer(&call, &ld, accept, known, info, &iri).await
}

/// `/types/{type}` or `/attributes/{attr}` answered from what the hub knows (`known`) and what
/// the sources add; 404 when nobody knows the name.
async fn info_answer(
    call: &Call,
    ld: &Ld,
    accept: Accept,
    mut known: impl DiscoveryInfo,
    info: RemoteInfo,
    iri: &str,
) -> ApiResult {
    let (answers, failures) = info.ask(&call.state, &call.headers, &call.tenant, &call.params, ld).await?;
    for answer in &answers {
        known.add_source(answer, &ld.ctx);
    }
    if !known.found() {
        return Err(NgsiLdError::not_found(info.missing).into());
    }
    let mut body = known.body(iri, &ld.ctx);
    seen_details(&mut body, &call.scope, ld);
    Ok(crate::provision::warned(ld_json(StatusCode::OK, body, ld, accept), &failures))
}

/// The details of one type or one attribute the registered context sources hold (clause 5.7.7,
/// 5.7.10): the registrations that serve it are asked at once; a source that does not know it
/// (404) adds nothing, a failing one is reported and left out.
struct RemoteInfo {
    operation: Operation,
    /// The same request at a source (the name as the client wrote it, in its @context).
    path: String,
    /// What the registrations must cover: the type, or the attribute.
    filter: EntityFilter,
    /// The detail of the 404 when nobody knows the name.
    missing: String,
}

impl RemoteInfo {
    async fn ask(
        &self,
        state: &SharedState,
        headers: &HeaderMap,
        tenant: &str,
        params: &Params,
        ld: &Ld,
    ) -> Result<(Vec<SourceInfo>, Vec<SourceFailure>), crate::ApiError> {
        let filter = &self.filter;
        if params.flag("local")? {
            return Ok((Vec::new(), Vec::new()));
        }
        let regs = state.federation.registrations(state.store.as_ref(), tenant).await?;
        let request = FederationRequest { operation: self.operation, filter, entity_types: &[] };
        let targets = matching::targets(&regs, &request, &ngsild_core::time::now());
        let targets = state.federation.reachable(targets, &Federation::hops(headers));
        if targets.is_empty() {
            return Ok((Vec::new(), Vec::new()));
        }
        let parts = targets.iter().map(|t| (t.registration.clone(), t.attrs.clone(), None)).collect();
        let fwd = crate::provision::forwarding(headers, tenant, ld);
        let answers = state.federation.send_to_sources(parts, &fwd, Method::GET, &self.path, &[]).await;
        let mut found = Vec::new();
        let mut failures = Vec::new();
        for (answer, target) in answers.iter().zip(&targets) {
            match &answer.result {
                Ok(a) if a.status == 200 => {
                    let body = serde_json::from_slice::<Value>(&a.body).unwrap_or(Value::Null);
                    found.push(SourceInfo { attrs: target.attrs.clone(), types: target.types.clone(), body });
                }
                Ok(a) if a.status == 404 => {}
                _ => failures.extend(answer.failure()),
            }
        }
        Ok((found, failures))
    }
}

/// GET /attributes
pub async fn attributes(Read { call, ld, .. }: Read<Details>, Accepting(accept): Accepting<false>) -> ApiResult {
    let details = details(&call.params)?;
    let summaries = attribute_summaries(&all_entities(&call).await?);
    let Call { state, headers, params, tenant, scope, .. } = call;
    // attribute IRI -> type IRIs
    let mut names: IndexMap<String, Vec<String>> = summaries.into_iter().map(|(a, s)| (a, s.types)).collect();
    let sources = RemoteNames { operation: Operation::RetrieveAttrs, path: "/attributes" };
    let failures = sources.merge_into(&mut names, &state, &headers, &tenant, &params, &ld).await?;
    seen_names(&mut names, &scope, false);
    let body = if details {
        Value::Array(
            names
                .iter()
                .map(|(iri, types)| {
                    json!({
                        "id": iri,
                        "type": "Attribute",
                        "attributeName": compact(&ld, iri),
                        "typeNames": types.iter().map(|t| compact(&ld, t)).collect::<Vec<_>>(),
                    })
                })
                .collect(),
        )
    } else {
        json!({
            "id": format!("urn:ngsi-ld:AttributeList:{}", uuid::Uuid::new_v4()),
            "type": "AttributeList",
            "attributeList": names.keys().map(|a| compact(&ld, a)).collect::<Vec<_>>(),
        })
    };
    Ok(crate::provision::warned(ld_json(StatusCode::OK, body, &ld, accept), &failures))
}

/// GET /attributes/{attr}: the hub's instances of the attribute, and what the context sources
/// registered for it hold (`retrieveAttrTypeInfo`): counts add up, kinds and types unite.
pub async fn attribute_info(
    Path(name): Path<String>,
    Read { call, ld, .. }: Read<Info>,
    Accepting(accept): Accepting<false>,
) -> ApiResult {
    let iri = ld.ctx.expand_term(&name).into_owned();
    hidden(&call, &iri, false, format!("no attribute {name}"))?;
    let summaries = attribute_summaries(&all_entities(&call).await?);
    let known = AttributeInfo::local(summaries.get(&iri));
    let info = RemoteInfo {
        operation: Operation::RetrieveAttrInfo,
        path: format!("/attributes/{}", path_segment(&name)),
        filter: EntityFilter { attrs: vec![iri.clone()], ..Default::default() },
        missing: format!("no attribute {name}"),
    };
    info_answer(&call, &ld, accept, known, info, &iri).await
}
