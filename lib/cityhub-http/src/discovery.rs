//! Discovery (clause 5.7.5-5.7.10): which entity types and attributes the hub holds.
//!
//! Summaries are computed from the tenant's entities in one pass of the store; names come back
//! compacted with the request's @context, identifiers as full IRIs.

use indexmap::IndexMap;

use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use cityhub_storage::{EntityFilter, Paging};
use ngsild_core::{Entity, NgsiLdError};
use serde_json::{json, Value};

use crate::error::ApiResult;
use crate::request::{accept, existing_tenant, header_ld, Ld, Params};
use crate::response::ld_json;
use crate::SharedState;

#[derive(Default)]
struct TypeSummary {
    entity_count: usize,
    /// attribute IRI -> attribute kinds seen
    attributes: IndexMap<String, Vec<&'static str>>,
}

#[derive(Default)]
struct AttributeSummary {
    count: usize,
    kinds: Vec<&'static str>,
    types: Vec<String>,
}

fn push_unique<T: PartialEq>(items: &mut Vec<T>, item: T) {
    if !items.contains(&item) {
        items.push(item);
    }
}

async fn all_entities(state: &SharedState, tenant: &str) -> Result<Vec<Entity>, crate::ApiError> {
    let page = state
        .store
        .query(tenant, &EntityFilter::default(), Paging { offset: 0, limit: usize::MAX, count: false })
        .await?;
    Ok(page.entities)
}

/// Types in IRI order (stable across calls); each type's attributes in the order first seen.
fn type_summaries(entities: &[Entity]) -> IndexMap<String, TypeSummary> {
    let mut types: IndexMap<String, TypeSummary> = IndexMap::new();
    for e in entities {
        for t in &e.types {
            let summary = types.entry(t.clone()).or_default();
            summary.entity_count += 1;
            for (name, instances) in &e.attrs {
                let kinds = summary.attributes.entry(name.clone()).or_default();
                for a in instances {
                    push_unique(kinds, a.kind.name());
                }
            }
        }
    }
    types.sort_keys();
    types
}

fn attribute_summaries(entities: &[Entity]) -> IndexMap<String, AttributeSummary> {
    let mut attributes: IndexMap<String, AttributeSummary> = IndexMap::new();
    for e in entities {
        for (name, instances) in &e.attrs {
            let summary = attributes.entry(name.clone()).or_default();
            summary.count += instances.len();
            for a in instances {
                push_unique(&mut summary.kinds, a.kind.name());
            }
            for t in &e.types {
                push_unique(&mut summary.types, t.clone());
            }
        }
    }
    attributes
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
pub async fn types(State(state): State<SharedState>, headers: HeaderMap, RawQuery(raw): RawQuery) -> ApiResult {
    let params = Params::parse(raw.as_deref(), &["details", "local", "via"])?;
    let accept = accept(&headers, false)?;
    let tenant = existing_tenant(&state, &headers).await?;
    let ld = header_ld(&state, &headers).await?;
    let summaries = type_summaries(&all_entities(&state, &tenant).await?);
    let body = if details(&params)? {
        Value::Array(
            summaries
                .iter()
                .map(|(iri, s)| {
                    json!({
                        "id": iri,
                        "type": "EntityType",
                        "typeName": compact(&ld, iri),
                        "attributeNames": s.attributes.keys().map(|a| compact(&ld, a)).collect::<Vec<_>>(),
                    })
                })
                .collect(),
        )
    } else {
        json!({
            "id": format!("urn:ngsi-ld:EntityTypeList:{}", uuid::Uuid::new_v4()),
            "type": "EntityTypeList",
            "typeList": summaries.keys().map(|t| compact(&ld, t)).collect::<Vec<_>>(),
        })
    };
    Ok(ld_json(StatusCode::OK, body, &ld, accept))
}

/// GET /types/{type}
pub async fn type_info(
    State(state): State<SharedState>,
    headers: HeaderMap,
    Path(name): Path<String>,
    RawQuery(raw): RawQuery,
) -> ApiResult {
    Params::parse(raw.as_deref(), &["local", "via"])?;
    let accept = accept(&headers, false)?;
    let tenant = existing_tenant(&state, &headers).await?;
    let ld = header_ld(&state, &headers).await?;
    let iri = ld.ctx.expand_term(&name).into_owned();
    let summaries = type_summaries(&all_entities(&state, &tenant).await?);
    let summary = summaries.get(&iri).ok_or_else(|| NgsiLdError::not_found(format!("no entity of type {name}")))?;
    let body = json!({
        "id": iri,
        "type": "EntityTypeInfo",
        "typeName": compact(&ld, &iri),
        "entityCount": summary.entity_count,
        "attributeDetails": summary.attributes.iter().map(|(a, kinds)| json!({
            "id": a,
            "type": "Attribute",
            "attributeName": compact(&ld, a),
            "attributeTypes": kinds,
        })).collect::<Vec<_>>(),
    });
    Ok(ld_json(StatusCode::OK, body, &ld, accept))
}

/// GET /attributes
pub async fn attributes(State(state): State<SharedState>, headers: HeaderMap, RawQuery(raw): RawQuery) -> ApiResult {
    let params = Params::parse(raw.as_deref(), &["details", "local", "via"])?;
    let accept = accept(&headers, false)?;
    let tenant = existing_tenant(&state, &headers).await?;
    let ld = header_ld(&state, &headers).await?;
    let summaries = attribute_summaries(&all_entities(&state, &tenant).await?);
    let body = if details(&params)? {
        Value::Array(
            summaries
                .iter()
                .map(|(iri, s)| {
                    json!({
                        "id": iri,
                        "type": "Attribute",
                        "attributeName": compact(&ld, iri),
                        "typeNames": s.types.iter().map(|t| compact(&ld, t)).collect::<Vec<_>>(),
                    })
                })
                .collect(),
        )
    } else {
        json!({
            "id": format!("urn:ngsi-ld:AttributeList:{}", uuid::Uuid::new_v4()),
            "type": "AttributeList",
            "attributeList": summaries.keys().map(|a| compact(&ld, a)).collect::<Vec<_>>(),
        })
    };
    Ok(ld_json(StatusCode::OK, body, &ld, accept))
}

/// GET /attributes/{attr}
pub async fn attribute_info(
    State(state): State<SharedState>,
    headers: HeaderMap,
    Path(name): Path<String>,
    RawQuery(raw): RawQuery,
) -> ApiResult {
    Params::parse(raw.as_deref(), &["local", "via"])?;
    let accept = accept(&headers, false)?;
    let tenant = existing_tenant(&state, &headers).await?;
    let ld = header_ld(&state, &headers).await?;
    let iri = ld.ctx.expand_term(&name).into_owned();
    let summaries = attribute_summaries(&all_entities(&state, &tenant).await?);
    let s = summaries.get(&iri).ok_or_else(|| NgsiLdError::not_found(format!("no attribute {name}")))?;
    let body = json!({
        "id": iri,
        "type": "Attribute",
        "attributeName": compact(&ld, &iri),
        "attributeCount": s.count,
        "attributeTypes": s.kinds,
        "typeNames": s.types.iter().map(|t| compact(&ld, t)).collect::<Vec<_>>(),
    });
    Ok(ld_json(StatusCode::OK, body, &ld, accept))
}
