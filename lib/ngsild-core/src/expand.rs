//! From request payloads to the stored form.
//!
//! Payloads arrive normalized or concise (clause 4.5), with names in the client's @context. This
//! module expands names, makes every attribute's type explicit and validates it. Expansion happens
//! in two steps so that merge operations can overlay a fragment on what is stored before
//! validating: [`expand_fragment`] gives each attribute as a raw member map with expanded keys
//! ([`RawAttribute`]), and [`build_attribute`] turns a raw map into an [`Attribute`].

use indexmap::IndexMap;
use ngsild_jsonld::Context;
use serde_json::{Map, Value};

use crate::error::{NgsiLdError, Result};
use crate::model::{Attribute, AttributeKind, Entity};
use crate::time::parse_datetime;
use crate::validate::{check_name, check_uri, is_valid_scope};

/// The NGSI-LD null: deletes what it is assigned to in a merge.
pub const NGSI_LD_NULL: &str = "urn:ngsi-ld:null";

/// One attribute instance as members with expanded keys and an explicit `type`.
pub type RawAttribute = Map<String, Value>;

/// An attribute as given in a fragment.
#[derive(Debug, Clone, PartialEq)]
pub enum AttributeInput {
    /// `null` or `"urn:ngsi-ld:null"`: delete it (merge operations only).
    Delete,
    Instances(Vec<RawAttribute>),
}

/// An entity or entity fragment as given in a request, names expanded.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct EntityInput {
    pub id: Option<String>,
    pub types: Vec<String>,
    pub scope: Option<Vec<String>>,
    pub attrs: IndexMap<String, AttributeInput>,
}

/// Members of an attribute that are not sub-attributes.
const ATTRIBUTE_MEMBERS: &[&str] = &[
    "type",
    "value",
    "object",
    "objectList",
    "languageMap",
    "vocab",
    "json",
    "valueList",
    "datasetId",
    "observedAt",
    "unitCode",
    "objectType",
    "createdAt",
    "modifiedAt",
    "deletedAt",
    "instanceId",
    "lang",
    "previousValue",
    "previousObject",
    "previousLanguageMap",
    "previousVocab",
    "previousJson",
    "previousValueList",
    "previousObjectList",
];

/// Members that make an object without a value member an attribute fragment (for merges and
/// partial updates) rather than a JSON value.
const FRAGMENT_MEMBERS: &[&str] = &["datasetId", "observedAt", "unitCode", "objectType"];

/// Entity members that are not attributes.
const ENTITY_MEMBERS: &[&str] =
    &["id", "@id", "type", "@type", "scope", "@context", "createdAt", "modifiedAt", "deletedAt"];

const GEOMETRY_TYPES: &[&str] =
    &["Point", "MultiPoint", "LineString", "MultiLineString", "Polygon", "MultiPolygon", "GeometryCollection"];

/// Expands an entity or a fragment of one. Presence of `id` and `type` is the caller's rule.
pub fn expand_fragment(body: &Map<String, Value>, ctx: &Context) -> Result<EntityInput> {
    let mut input = EntityInput::default();
    check_keyword_members(body)?;
    if let Some(id) = body.get("id").or_else(|| body.get("@id")) {
        let id = id.as_str().ok_or_else(|| NgsiLdError::bad_request("the entity id must be a string"))?;
        check_uri(id, "the entity id")?;
        input.id = Some(id.to_owned());
    }
    if let Some(types) = body.get("type").or_else(|| body.get("@type")) {
        input.types = expand_types(types, ctx)?;
    }
    if let Some(scope) = body.get("scope") {
        input.scope = Some(parse_scope(scope)?);
    }
    for (name, value) in body {
        if ENTITY_MEMBERS.contains(&name.as_str()) {
            continue;
        }
        let iri = expand_attribute_name(name, ctx)?;
        let attr = expand_attribute_input(value, ctx).map_err(|e| prefix_detail(e, name))?;
        input.attrs.insert(iri, attr);
    }
    Ok(input)
}

/// JSON-LD keywords among an entity's members. `@id` and `@type` are the JSON-LD spellings of
/// `id` and `type` and are read as such when they stand alone; next to `id` or `type`, or with a
/// value that is not an id or a type, they are an attribute named after a keyword, which JSON-LD
/// expansion would drop: refused, rather than silently lost. `@context` belongs at the top of an
/// application/ld+json body only (the request layer takes it out from there). Any other `@...`
/// member is refused by the attribute name check.
fn check_keyword_members(body: &Map<String, Value>) -> Result<()> {
    let keyword_attribute = |name: &str, why: &str| {
        NgsiLdError::bad_request(format!(
            "attribute {name:?}: {name} is a JSON-LD keyword and cannot name an attribute ({why}); rename the attribute"
        ))
    };
    for (keyword, plain) in [("@id", "id"), ("@type", "type")] {
        let Some(value) = body.get(keyword) else { continue };
        if body.contains_key(plain) {
            return Err(keyword_attribute(
                keyword,
                &format!("the entity already has {plain:?}, which {keyword} would repeat"),
            ));
        }
        let is_id_or_type = match keyword {
            "@id" => value.is_string(),
            _ => value.is_string() || value.as_array().is_some_and(|a| !a.is_empty() && a.iter().all(Value::is_string)),
        };
        if !is_id_or_type {
            return Err(keyword_attribute(
                keyword,
                &format!("as an entity member it can only hold the entity's {plain}"),
            ));
        }
    }
    if body.contains_key("@context") {
        return Err(keyword_attribute(
            "@context",
            "@context is allowed only at the top level of an application/ld+json body",
        ));
    }
    Ok(())
}

/// Expands a complete entity for creation: id and type are required, nothing may be deleted.
pub fn expand_entity(body: &Map<String, Value>, ctx: &Context) -> Result<(Entity, EntityInput)> {
    let input = expand_fragment(body, ctx)?;
    let entity = entity_from_input(&input)?;
    Ok((entity, input))
}

/// Builds a whole entity from an input that must carry id and type.
pub fn entity_from_input(input: &EntityInput) -> Result<Entity> {
    let id = input.id.clone().ok_or_else(|| NgsiLdError::bad_request("the entity has no id"))?;
    if input.types.is_empty() {
        return Err(NgsiLdError::bad_request("the entity has no type"));
    }
    let mut entity = Entity::new(id, input.types.clone());
    entity.scope = input.scope.clone().unwrap_or_default();
    for (name, attr) in &input.attrs {
        let instances = match attr {
            AttributeInput::Delete => {
                return Err(NgsiLdError::bad_request(format!("attribute {name} cannot be null")));
            }
            AttributeInput::Instances(raws) => raws.iter().map(build_attribute).collect::<Result<Vec<_>>>()?,
        };
        check_unique_datasets(name, &instances)?;
        entity.attrs.insert(name.clone(), instances);
    }
    Ok(entity)
}

/// Expands an attribute name, refusing invalid names and names that are JSON-LD keywords.
pub fn expand_attribute_name(name: &str, ctx: &Context) -> Result<String> {
    check_name(name, "attribute")?;
    let iri = ctx.expand_term(name).into_owned();
    if iri.starts_with('@') {
        return Err(NgsiLdError::bad_request(format!("{name:?} is a JSON-LD keyword, not an attribute name")));
    }
    Ok(iri)
}

pub fn check_unique_datasets(name: &str, instances: &[Attribute]) -> Result<()> {
    for (i, a) in instances.iter().enumerate() {
        if instances[..i].iter().any(|b| b.dataset_id == a.dataset_id) {
            return Err(NgsiLdError::bad_request(format!(
                "attribute {name} has two instances with the same datasetId {:?}",
                a.dataset_id.as_deref().unwrap_or("(default)")
            )));
        }
    }
    Ok(())
}

pub fn expand_types(types: &Value, ctx: &Context) -> Result<Vec<String>> {
    let names: Vec<&str> = match types {
        Value::String(s) => vec![s.as_str()],
        Value::Array(items) if !items.is_empty() => items
            .iter()
            .map(|t| t.as_str().ok_or_else(|| NgsiLdError::bad_request("an entity type must be a string")))
            .collect::<Result<_>>()?,
        _ => return Err(NgsiLdError::bad_request("the entity type must be a string or a non-empty array of strings")),
    };
    let mut out: Vec<String> = Vec::with_capacity(names.len());
    for name in names {
        check_name(name, "entity type")?;
        let iri = ctx.expand_term(name).into_owned();
        if iri.starts_with('@') {
            return Err(NgsiLdError::bad_request(format!("{name:?} is a JSON-LD keyword, not an entity type")));
        }
        if !out.contains(&iri) {
            out.push(iri);
        }
    }
    Ok(out)
}

pub fn parse_scope(scope: &Value) -> Result<Vec<String>> {
    let scopes: Vec<String> = match scope {
        Value::String(s) => vec![s.clone()],
        Value::Array(items) => items
            .iter()
            .map(|s| s.as_str().map(str::to_owned).ok_or_else(|| NgsiLdError::bad_request("a scope must be a string")))
            .collect::<Result<_>>()?,
        _ => return Err(NgsiLdError::bad_request("scope must be a string or an array of strings")),
    };
    if let Some(bad) = scopes.iter().find(|s| !is_valid_scope(s)) {
        return Err(NgsiLdError::bad_request(format!("invalid scope {bad:?}")));
    }
    Ok(scopes)
}

fn prefix_detail(mut e: NgsiLdError, name: &str) -> NgsiLdError {
    e.detail = format!("attribute {name}: {}", e.detail);
    e
}

fn is_null(v: &Value) -> bool {
    v.is_null() || v.as_str() == Some(NGSI_LD_NULL)
}

/// Whether an attribute instance given in a merge or partial update asks for its own deletion:
/// its value member is the NGSI-LD null (`{"@none": "urn:ngsi-ld:null"}` for a language map,
/// `["urn:ngsi-ld:null"]` for lists).
pub fn is_deletion(raw: &RawAttribute) -> bool {
    let is_ngsi_ld_null = |v: &Value| v.as_str() == Some(NGSI_LD_NULL);
    AttributeKind::ALL.iter().any(|kind| match raw.get(kind.value_member()) {
        Some(Value::Array(items)) => items.len() == 1 && is_ngsi_ld_null(&items[0]),
        Some(Value::Object(map)) => map.len() == 1 && map.get("@none").is_some_and(is_ngsi_ld_null),
        Some(v) => is_ngsi_ld_null(v),
        None => false,
    })
}

/// Expands one attribute's value as given in an entity body: an instance, an array of instances
/// (multi-attribute) or a concise value.
pub fn expand_attribute_input(value: &Value, ctx: &Context) -> Result<AttributeInput> {
    if is_null(value) {
        return Ok(AttributeInput::Delete);
    }
    if let Value::Array(items) = value {
        if !items.is_empty() && items.iter().all(looks_like_attribute_instance) {
            let raws = items.iter().map(|i| expand_raw_attribute(i, ctx)).collect::<Result<Vec<_>>>()?;
            return Ok(AttributeInput::Instances(raws));
        }
    }
    Ok(AttributeInput::Instances(vec![expand_raw_attribute(value, ctx)?]))
}

fn looks_like_attribute_instance(v: &Value) -> bool {
    v.as_object().is_some_and(|m| {
        m.get("type").and_then(Value::as_str).is_some_and(|t| AttributeKind::from_name(t).is_some())
            || ["value", "object", "objectList", "languageMap", "vocab", "json", "valueList"]
                .iter()
                .any(|k| m.contains_key(*k))
    })
}

/// Expands one attribute instance (normalized or concise) to a raw map with expanded keys and an
/// explicit `type`. Member values are not validated here: see [`build_attribute`].
pub fn expand_raw_attribute(value: &Value, ctx: &Context) -> Result<RawAttribute> {
    expand_raw(value, ctx, false)
}

/// Expands the body of a partial attribute update: always a set of members and sub-attributes,
/// never a concise value.
pub fn expand_attribute_fragment(value: &Value, ctx: &Context) -> Result<RawAttribute> {
    expand_raw(value, ctx, true)
}

fn expand_raw(value: &Value, ctx: &Context, fragment: bool) -> Result<RawAttribute> {
    // Concise forms: a bare value, or an object that is a value (no attribute member at all), is
    // the value of a Property (or of a GeoProperty when it is a geometry). The type is left to
    // `build_attribute` to infer, so that a merge does not mistake inference for a change of type.
    let value_only = || {
        let mut raw = Map::new();
        raw.insert("value".into(), value.clone());
        raw
    };
    let Value::Object(members) = value else { return Ok(value_only()) };
    match members.get("type") {
        Some(Value::String(t)) if AttributeKind::from_name(t).is_some() => {}
        Some(Value::String(t)) if GEOMETRY_TYPES.contains(&t.as_str()) && members.contains_key("coordinates") => {
            return Ok(value_only());
        }
        Some(Value::String(t)) => return Err(NgsiLdError::bad_request(format!("unknown attribute type {t:?}"))),
        Some(other) => {
            return Err(NgsiLdError::bad_request(format!("an attribute type must be a string, not {other}")));
        }
        None if !fragment
            && infer_kind(members).is_none()
            && !FRAGMENT_MEMBERS.iter().any(|m| members.contains_key(*m)) =>
        {
            return Ok(value_only());
        }
        None => {}
    }
    if let Some(member) =
        AttributeKind::ALL.map(AttributeKind::value_member).into_iter().find(|m| members.get(*m) == Some(&Value::Null))
    {
        return Err(NgsiLdError::bad_request(format!("{member} cannot be null (urn:ngsi-ld:null deletes)")));
    }
    let mut raw = Map::new();
    for (key, member) in members {
        match key.as_str() {
            "vocab" | "objectType" => {
                raw.insert(key.clone(), expand_vocab_value(member, ctx)?);
            }
            k if ATTRIBUTE_MEMBERS.contains(&k) => {
                raw.insert(key.clone(), member.clone());
            }
            _ => {
                let iri = expand_attribute_name(key, ctx)?;
                let sub = if is_null(member) {
                    Value::Null
                } else {
                    Value::Object(expand_raw_attribute(member, ctx).map_err(|e| prefix_detail(e, key))?)
                };
                raw.insert(iri, sub);
            }
        }
    }
    Ok(raw)
}

fn infer_kind(members: &Map<String, Value>) -> Option<AttributeKind> {
    if let Some(v) = members.get("value") {
        let is_geometry = v.get("type").and_then(Value::as_str).is_some_and(|t| GEOMETRY_TYPES.contains(&t))
            && v.get("coordinates").is_some();
        return Some(if is_geometry { AttributeKind::GeoProperty } else { AttributeKind::Property });
    }
    [
        ("object", AttributeKind::Relationship),
        ("objectList", AttributeKind::ListRelationship),
        ("languageMap", AttributeKind::LanguageProperty),
        ("vocab", AttributeKind::VocabProperty),
        ("json", AttributeKind::JsonProperty),
        ("valueList", AttributeKind::ListProperty),
    ]
    .into_iter()
    .find_map(|(member, kind)| members.contains_key(member).then_some(kind))
}

fn expand_vocab_value(value: &Value, ctx: &Context) -> Result<Value> {
    match value {
        Value::String(s) => Ok(Value::String(ctx.expand_term(s).into_owned())),
        Value::Array(items) => {
            items.iter().map(|i| expand_vocab_value(i, ctx)).collect::<Result<Vec<_>>>().map(Value::Array)
        }
        Value::Null => Ok(Value::Null),
        other => Err(NgsiLdError::bad_request(format!("a vocabulary value must be a string, not {other}"))),
    }
}

/// Validates a raw attribute and builds it. System members (`createdAt`, `modifiedAt`, ...) in the
/// input are ignored: the hub sets them.
pub fn build_attribute(raw: &RawAttribute) -> Result<Attribute> {
    build_attribute_at(raw, 0)
}

fn build_attribute_at(raw: &RawAttribute, depth: usize) -> Result<Attribute> {
    use crate::limits::{json_depth, MAX_SUB_ATTRIBUTE_NESTING, MAX_VALUE_NESTING};
    if depth > MAX_SUB_ATTRIBUTE_NESTING {
        return Err(NgsiLdError::bad_request(format!(
            "sub-attributes nested deeper than {MAX_SUB_ATTRIBUTE_NESTING} levels, the limit of this hub"
        )));
    }
    let kind = match raw.get("type") {
        Some(t) => t.as_str().and_then(AttributeKind::from_name),
        None => infer_kind(raw),
    }
    .ok_or_else(|| NgsiLdError::bad_request("an attribute needs a valid type or a value"))?;
    let member = kind.value_member();
    let value = raw
        .get(member)
        .filter(|v| !v.is_null())
        .ok_or_else(|| NgsiLdError::bad_request(format!("a {} needs a non-null {member}", kind.name())))?
        .clone();
    if json_depth(&value) > MAX_VALUE_NESTING {
        return Err(NgsiLdError::bad_request(format!(
            "a {member} nested deeper than {MAX_VALUE_NESTING} levels of arrays and objects, the limit of this hub"
        )));
    }
    validate_value(kind, &value)?;
    let mut attr = Attribute::new(kind, value);
    if let Some(ds) = raw.get("datasetId").filter(|v| !v.is_null()) {
        let ds = ds.as_str().ok_or_else(|| NgsiLdError::bad_request("datasetId must be a string"))?;
        check_uri(ds, "datasetId")?;
        attr.dataset_id = Some(ds.to_owned());
    }
    if let Some(at) = raw.get("observedAt").filter(|v| !v.is_null()) {
        let at = at.as_str().filter(|s| parse_datetime(s).is_some());
        attr.observed_at = Some(
            at.ok_or_else(|| {
                NgsiLdError::bad_request(format!("observedAt must be a DateTime: {}", crate::time::DATETIME_HINT))
            })?
            .to_owned(),
        );
    }
    if let Some(unit) = raw.get("unitCode").filter(|v| !v.is_null()) {
        let unit = unit.as_str().ok_or_else(|| NgsiLdError::bad_request("unitCode must be a string"))?;
        attr.unit_code = Some(unit.to_owned());
    }
    if let Some(object_type) = raw.get("objectType").filter(|v| !v.is_null()) {
        if !kind.is_relationship() {
            return Err(NgsiLdError::bad_request("objectType is only allowed on relationships"));
        }
        attr.object_type = Some(object_type.clone());
    }
    for (key, sub) in raw {
        if ATTRIBUTE_MEMBERS.contains(&key.as_str()) || sub.is_null() {
            continue;
        }
        let sub = sub
            .as_object()
            .ok_or_else(|| NgsiLdError::bad_request(format!("sub-attribute {key} must be an object")))?;
        attr.sub.insert(key.clone(), build_attribute_at(sub, depth + 1).map_err(|e| prefix_detail(e, key))?);
    }
    Ok(attr)
}

fn validate_value(kind: AttributeKind, value: &Value) -> Result<()> {
    let bad = |why: &str| Err(NgsiLdError::bad_request(format!("invalid {}: {why}", kind.name())));
    match kind {
        AttributeKind::Property | AttributeKind::JsonProperty => Ok(()),
        AttributeKind::Relationship => match value {
            Value::String(s) => check_uri(s, "a relationship object"),
            Value::Array(items) if !items.is_empty() => items.iter().try_for_each(|o| match o {
                Value::String(s) => check_uri(s, "a relationship object"),
                _ => bad("objects must be URIs"),
            }),
            _ => bad("object must be a URI or a non-empty array of URIs"),
        },
        AttributeKind::GeoProperty => validate_geometry(value).or_else(|why| bad(&why)),
        AttributeKind::LanguageProperty => match value {
            Value::Object(map) if !map.is_empty() => {
                for (lang, text) in map {
                    let ok = text.is_string() || text.as_array().is_some_and(|a| a.iter().all(Value::is_string));
                    if !ok || lang.is_empty() {
                        return bad("languageMap values must be strings");
                    }
                }
                Ok(())
            }
            _ => bad("languageMap must be a non-empty object"),
        },
        AttributeKind::VocabProperty => match value {
            Value::String(_) => Ok(()),
            Value::Array(items) if !items.is_empty() && items.iter().all(Value::is_string) => Ok(()),
            _ => bad("vocab must be a string or an array of strings"),
        },
        AttributeKind::ListProperty => match value {
            Value::Array(_) => Ok(()),
            _ => bad("valueList must be an array"),
        },
        AttributeKind::ListRelationship => match value {
            Value::Array(items) => items.iter().try_for_each(|item| {
                let object = item.get("object").unwrap_or(item);
                match object.as_str() {
                    Some(s) => check_uri(s, "a relationship object"),
                    None => bad("objectList items must be URIs"),
                }
            }),
            _ => bad("objectList must be an array"),
        },
    }
}

/// Checks the shape of a GeoJSON geometry: a known type and coordinates nested as that type needs.
pub fn validate_geometry(value: &Value) -> std::result::Result<(), String> {
    validate_geometry_at(value, 0)
}

fn validate_geometry_at(value: &Value, depth: usize) -> std::result::Result<(), String> {
    let geometry_type = value.get("type").and_then(Value::as_str).ok_or("a geometry needs a type")?;
    if geometry_type == "GeometryCollection" {
        if depth >= crate::limits::MAX_NESTING {
            return Err(format!(
                "GeometryCollections nested deeper than {} levels, the limit of this hub",
                crate::limits::MAX_NESTING
            ));
        }
        let geometries =
            value.get("geometries").and_then(Value::as_array).ok_or("a GeometryCollection needs geometries")?;
        return geometries.iter().try_for_each(|g| validate_geometry_at(g, depth + 1));
    }
    let coordinates = value.get("coordinates").ok_or("a geometry needs coordinates")?;
    let depth = match geometry_type {
        "Point" => 0,
        "MultiPoint" | "LineString" => 1,
        "MultiLineString" | "Polygon" => 2,
        "MultiPolygon" => 3,
        other => return Err(format!("unknown geometry type {other}")),
    };
    check_positions(coordinates, depth)?;
    if geometry_type == "LineString" && coordinates.as_array().is_some_and(|a| a.len() < 2) {
        return Err("a LineString needs at least two positions".into());
    }
    let rings: Vec<&Value> = match geometry_type {
        "Polygon" => coordinates.as_array().map(|r| r.iter().collect()).unwrap_or_default(),
        "MultiPolygon" => coordinates
            .as_array()
            .map(|ps| ps.iter().filter_map(Value::as_array).flatten().collect())
            .unwrap_or_default(),
        _ => Vec::new(),
    };
    for ring in rings {
        let ring = ring.as_array().ok_or("a ring must be an array")?;
        if ring.len() < 4 || ring.first() != ring.last() {
            return Err("a polygon ring needs at least four positions and must be closed".into());
        }
    }
    Ok(())
}

fn check_positions(value: &Value, depth: usize) -> std::result::Result<(), String> {
    let items = value.as_array().ok_or("coordinates must be arrays")?;
    if depth == 0 {
        let ok = (2..=3).contains(&items.len()) && items.iter().all(Value::is_number);
        let lon = items.first().and_then(Value::as_f64).unwrap_or(f64::NAN);
        let lat = items.get(1).and_then(Value::as_f64).unwrap_or(f64::NAN);
        if !ok || !(-180.0..=180.0).contains(&lon) || !(-90.0..=90.0).contains(&lat) {
            return Err(format!("invalid position {value}"));
        }
        return Ok(());
    }
    if items.is_empty() {
        return Err("coordinates must not be empty".into());
    }
    items.iter().try_for_each(|i| check_positions(i, depth - 1))
}

/// The stored attribute back as a raw map (expanded keys, normalized, with system members), so a
/// fragment can be overlaid on it.
pub fn attribute_to_raw(attr: &Attribute) -> RawAttribute {
    let mut raw = Map::new();
    raw.insert("type".into(), Value::String(attr.kind.name().into()));
    raw.insert(attr.kind.value_member().into(), attr.value.clone());
    let optional = [
        ("datasetId", attr.dataset_id.clone().map(Value::String)),
        ("observedAt", attr.observed_at.clone().map(Value::String)),
        ("unitCode", attr.unit_code.clone().map(Value::String)),
        ("objectType", attr.object_type.clone()),
    ];
    for (key, value) in optional {
        if let Some(value) = value {
            raw.insert(key.into(), value);
        }
    }
    for (name, sub) in &attr.sub {
        raw.insert(name.clone(), Value::Object(attribute_to_raw(sub)));
    }
    raw
}

/// Overlays a fragment on a stored attribute (merge semantics): members given replace members
/// stored, a null member removes one, sub-attributes merge the same way. Changing the attribute
/// type replaces the value member too.
pub fn merge_raw(base: &mut RawAttribute, patch: &RawAttribute) {
    let kind_changes = patch.get("type").is_some_and(|t| Some(t) != base.get("type"));
    if kind_changes {
        for member in AttributeKind::ALL.map(AttributeKind::value_member) {
            base.remove(member);
        }
    }
    for (key, value) in patch {
        if value.is_null() || value.as_str() == Some(NGSI_LD_NULL) {
            base.remove(key);
            continue;
        }
        let is_sub_attribute = !ATTRIBUTE_MEMBERS.contains(&key.as_str());
        match (base.get_mut(key), value) {
            (Some(Value::Object(existing)), Value::Object(sub_patch)) if is_sub_attribute => {
                merge_raw(existing, sub_patch)
            }
            _ => {
                base.insert(key.clone(), value.clone());
            }
        }
    }
}

/// A temporal entity (clause 5.7.1 / 5.7.2 body, expanded with `ctx`): every attribute instance
/// as given, each checked as an attribute is; `needs_id_and_type` (a creation) refuses one
/// without an id or a type. A null attribute has no place in a history and is refused.
pub fn expand_temporal_entity(body: &Map<String, Value>, ctx: &Context, needs_id_and_type: bool) -> Result<Entity> {
    let input = expand_fragment(body, ctx)?;
    let id = input.id.clone().unwrap_or_default();
    if needs_id_and_type && (id.is_empty() || input.types.is_empty()) {
        return Err(NgsiLdError::bad_request("a temporal entity needs an id and a type"));
    }
    let mut entity = Entity::new(id, input.types.clone());
    entity.scope = input.scope.clone().unwrap_or_default();
    for (name, attr) in &input.attrs {
        let AttributeInput::Instances(raws) = attr else {
            return Err(NgsiLdError::bad_request(format!("attribute {name} cannot be null")));
        };
        let instances = raws.iter().map(build_attribute).collect::<Result<Vec<_>>>()?;
        entity.attrs.insert(name.clone(), instances);
    }
    Ok(entity)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ngsild_jsonld::core_context;
    use serde_json::json;

    fn expand(v: Value) -> Result<Entity> {
        expand_entity(v.as_object().unwrap(), &core_context()).map(|(e, _)| e)
    }

    const DEFAULT: &str = "https://uri.etsi.org/ngsi-ld/default-context/";

    #[test]
    fn keyword_members_are_refused_not_dropped() {
        let refused = |body: Value, needle: &str| {
            let e = expand(body).unwrap_err();
            assert_eq!(e.kind, crate::ErrorKind::BadRequestData);
            assert!(e.detail.contains(needle), "{}", e.detail);
        };
        let attr = json!({"type": "Property", "value": 1});
        refused(json!({"id": "urn:a", "type": "T", "@id": attr}), "attribute \"@id\"");
        refused(json!({"id": "urn:a", "type": "T", "@type": attr}), "attribute \"@type\"");
        refused(json!({"@id": attr, "type": "T"}), "can only hold the entity's id");
        refused(json!({"id": "urn:a", "type": "T", "@context": {}}), "@context");
        refused(json!({"id": "urn:a", "type": "T", "@value": attr}), "@value");
        // The JSON-LD spellings of id and type alone are the id and the type.
        let e = expand(json!({"@id": "urn:a", "@type": "T"})).unwrap();
        assert_eq!(e.id, "urn:a");
    }

    #[test]
    fn normalized_entity() {
        let e = expand(json!({
            "id": "urn:ngsi-ld:Building:1", "type": "Building",
            "name": {"type": "Property", "value": "Tower", "observedAt": "2020-09-09T16:40:00.000Z",
                     "source": {"type": "Relationship", "object": "urn:ngsi-ld:Sensor:1"}},
            "location": {"type": "GeoProperty", "value": {"type": "Point", "coordinates": [2.29, 48.85]}}
        }))
        .unwrap();
        assert_eq!(e.types, vec![format!("{DEFAULT}Building")]);
        let name = e.instance(&format!("{DEFAULT}name"), None).unwrap();
        assert_eq!(name.value, json!("Tower"));
        assert_eq!(name.sub[&format!("{DEFAULT}source")].kind, AttributeKind::Relationship);
        assert_eq!(e.instance("https://uri.etsi.org/ngsi-ld/location", None).unwrap().kind, AttributeKind::GeoProperty);
    }

    #[test]
    fn concise_entity() {
        let e = expand(json!({
            "id": "urn:x:1", "type": "T",
            "n": 3, "o": {"object": "urn:x:2"}, "g": {"type": "Point", "coordinates": [1, 2]},
            "l": {"languageMap": {"en": "hi"}}, "c": {"a": 1}
        }))
        .unwrap();
        let kind = |n: &str| e.instance(&format!("{DEFAULT}{n}"), None).unwrap().kind;
        assert_eq!(kind("n"), AttributeKind::Property);
        assert_eq!(kind("o"), AttributeKind::Relationship);
        assert_eq!(kind("g"), AttributeKind::GeoProperty);
        assert_eq!(kind("l"), AttributeKind::LanguageProperty);
        assert_eq!(e.instance(&format!("{DEFAULT}c"), None).unwrap().value, json!({"a": 1}));
    }

    #[test]
    fn multi_instance_and_vocab() {
        let e = expand(json!({
            "id": "urn:x:1", "type": "T",
            "speed": [{"type": "Property", "value": 1}, {"type": "Property", "value": 2, "datasetId": "urn:ds:2"}],
            "category": {"type": "VocabProperty", "vocab": ["a", "b"]}
        }))
        .unwrap();
        assert_eq!(e.attrs[&format!("{DEFAULT}speed")].len(), 2);
        assert_eq!(
            e.instance(&format!("{DEFAULT}category"), None).unwrap().value,
            json!([format!("{DEFAULT}a"), format!("{DEFAULT}b")])
        );
    }

    #[test]
    fn rejects_bad_input() {
        assert!(expand(json!({"id": "x", "type": "T"})).is_err(), "id must be a URI");
        assert!(expand(json!({"id": "urn:x:1"})).is_err(), "type is required");
        assert!(expand(json!({"type": "T"})).is_err(), "id is required");
        assert!(expand(json!({"id": "urn:x:1", "type": "T", "a": {"type": "Property"}})).is_err());
        assert!(expand(json!({"id": "urn:x:1", "type": "T", "a": {"type": "Property", "value": null}})).is_err());
        assert!(expand(json!({"id": "urn:x:1", "type": "type"})).is_err(), "type expands to @type");
        assert!(expand(json!({"id": "urn:x:1", "type": "T", "@weird": 1})).is_err());
        assert!(expand(json!({"id": "urn:x:1", "type": "T", "a": {"type": "Relationship", "object": "nope"}})).is_err());
        assert!(expand(json!({"id": "urn:x:1", "type": "T", "a": {"type": "Weird", "value": 1}})).is_err());
        assert!(expand(json!({"id": "urn:x:1", "type": "T", "a b": 1})).is_err());
        assert!(expand(json!({"id": "urn:x:1", "type": "T", "a": null})).is_err());
        assert!(expand(json!({"id": "urn:x:1", "type": "T",
            "location": {"type": "GeoProperty", "value": {"type": "Point", "coordinates": [200, 1]}}}))
        .is_err());
        assert!(
            expand(json!({"id": "urn:x:1", "type": "T",
            "a": [{"type": "Property", "value": 1}, {"type": "Property", "value": 2}]}))
            .is_err(),
            "two default instances"
        );
    }

    #[test]
    fn geometry_validation() {
        assert!(validate_geometry(&json!({"type": "Polygon", "coordinates": [[[0,0],[1,0],[1,1],[0,0]]]})).is_ok());
        assert!(validate_geometry(&json!({"type": "Polygon", "coordinates": [[[0,0],[1,0],[1,1],[0,1]]]})).is_err());
        assert!(validate_geometry(&json!({"type": "LineString", "coordinates": [[0,0]]})).is_err());
        assert!(validate_geometry(&json!({"type": "Point", "coordinates": [[0,0]]})).is_err());
    }

    #[test]
    fn merge_overlays_members_and_sub_attributes() {
        let mut base = json!({"type": "Property", "value": 1, "unitCode": "KMH",
            "s": {"type": "Property", "value": "a", "t": {"type": "Property", "value": 0}}})
        .as_object()
        .unwrap()
        .clone();
        let patch = json!({"value": 2, "unitCode": null, "s": {"value": "b"}}).as_object().unwrap().clone();
        merge_raw(&mut base, &patch);
        assert_eq!(
            Value::Object(base),
            json!({"type": "Property", "value": 2,
            "s": {"type": "Property", "value": "b", "t": {"type": "Property", "value": 0}}})
        );
    }

    #[test]
    fn a_temporal_entity_keeps_every_instance_and_refuses_what_has_no_place_in_a_history() {
        let body = json!({"id": "urn:x:1", "type": "T", "speed": [
            {"type": "Property", "value": 1, "observedAt": "2024-01-01T00:00:00Z"},
            {"type": "Property", "value": 2, "observedAt": "2024-01-02T00:00:00Z"},
        ]});
        let e = expand_temporal_entity(body.as_object().unwrap(), &core_context(), true).unwrap();
        assert_eq!(e.id, "urn:x:1");
        assert_eq!(e.attrs[&format!("{DEFAULT}speed")].len(), 2);
        let no_type = json!({"id": "urn:x:1", "speed": 1});
        let err = expand_temporal_entity(no_type.as_object().unwrap(), &core_context(), true).unwrap_err();
        assert_eq!(err.detail, "a temporal entity needs an id and a type");
        assert!(expand_temporal_entity(no_type.as_object().unwrap(), &core_context(), false).is_ok());
        let null = json!({"id": "urn:x:1", "type": "T", "speed": null});
        let err = expand_temporal_entity(null.as_object().unwrap(), &core_context(), true).unwrap_err();
        assert_eq!(err.detail, format!("attribute {DEFAULT}speed cannot be null"));
    }
}
