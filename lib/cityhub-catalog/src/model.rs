//! Data models (pure): a JSON Schema registered for an entity type, with the documents its
//! `$ref`s point to given at registration (Smart Data Models' `schema.json` refers to
//! `common-schema.json` and the GSMA-Commons by URL: they resolve from what was registered, never
//! from the network), and the check of an entity against it.
//!
//! Smart Data Models describe an entity in its keyValues form, so an entity is checked as
//! [`key_values`] renders it: attribute names compacted with the core @context, and an
//! attribute name that stays an IRI (expanded with a Smart Data Models @context) shortened to
//! its last path segment (`https://smartdatamodels.org/dataModel.Environment/pm25` -> `pm25`).
//!
//! A write of part of an entity (temporal instances) is checked with the `partial` validator:
//! the same schema without its `required` lists, so each attribute given follows its rule.

use std::collections::BTreeMap;

use jsonschema::{Resource, Validator};
use ngsild_core::render::{render_entity, Format, RenderOptions};
use ngsild_core::{Entity, NgsiLdError};
use ngsild_jsonld::Context;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// The most errors one refusal lists.
const MAX_LISTED: usize = 5;

/// A data model as registered and stored (a record of kind `dataModel`, its id the type's IRI).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DataModel {
    /// The entity type as the client named it (`AirQualityObserved`).
    #[serde(rename = "type")]
    pub entity_type: String,
    /// The type expanded: the record's id and what entities carry.
    #[serde(default)]
    pub type_iri: String,
    pub schema: Value,
    /// The documents the schema's `$ref`s point to, by their URL (`$id`).
    #[serde(default)]
    pub resources: BTreeMap<String, Value>,
}

/// A data model compiled: the whole-entity validator and the partial one.
pub struct Checker {
    pub entity_type: String,
    full: Validator,
    partial: Validator,
}

impl std::fmt::Debug for Checker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Checker").field("entity_type", &self.entity_type).finish_non_exhaustive()
    }
}

impl DataModel {
    /// Reads a registration body: `{"type", "schema", "resources"?}`; the type expanded in `ctx`.
    pub fn read(body: &Value, ctx: &Context) -> Result<DataModel, NgsiLdError> {
        let mut model: DataModel = serde_json::from_value(body.clone()).map_err(|e| {
            NgsiLdError::bad_request(format!(
                "a data model is {{\"type\": \"EntityType\", \"schema\": {{JSON Schema}}, \"resources\": {{\"URL\": \
                 {{schema}}}}}}: {e}"
            ))
        })?;
        if model.entity_type.is_empty() {
            return Err(NgsiLdError::bad_request("the data model's type is empty: name the entity type it checks"));
        }
        model.type_iri = ctx.expand_term(&model.entity_type).into_owned();
        if !model.schema.is_object() {
            return Err(NgsiLdError::bad_request("the data model's schema must be a JSON Schema object"));
        }
        model.compile()?;
        Ok(model)
    }

    /// Compiles the schema with its resources; a schema that does not compile, or a `$ref` to a
    /// document not registered with it, is BadRequestData naming what is missing.
    pub fn compile(&self) -> Result<Checker, NgsiLdError> {
        let full = self.validator(&self.schema)?;
        let partial = self.validator(&without_required(&self.schema))?;
        Ok(Checker { entity_type: self.entity_type.clone(), full, partial })
    }

    fn validator(&self, schema: &Value) -> Result<Validator, NgsiLdError> {
        let schema = &known_dialect(schema);
        let mut options = jsonschema::options().with_retriever(Unregistered).should_validate_formats(true);
        for (url, document) in &self.resources {
            let document = &known_dialect(document);
            let resource = Resource::from_contents(document.clone()).map_err(|e| {
                NgsiLdError::bad_request(format!("the resource {url} of the data model is not a schema: {e}"))
            })?;
            options = options.with_resource(url.clone(), resource);
            // Smart Data Models refer to a common schema both with and without a trailing `#`.
            if let Some(id) = document.get("$id").and_then(Value::as_str) {
                if id != url {
                    let again = Resource::from_contents(document.clone())
                        .map_err(|e| NgsiLdError::bad_request(format!("the resource {id} is not a schema: {e}")))?;
                    options = options.with_resource(id.trim_end_matches('#').to_owned(), again);
                }
            }
        }
        options.build(schema).map_err(|e| {
            NgsiLdError::bad_request(format!(
                "the schema of {} does not compile: {e}; give every document its $refs point to in \"resources\", \
                 keyed by its URL",
                self.entity_type
            ))
        })
    }
}

/// A document whose `$schema` names no draft the validator knows (Smart Data Models write
/// `http://json-schema.org/schema#`, "the latest") is read as draft 7, which their schemas follow.
fn known_dialect(document: &Value) -> Value {
    let mut document = document.clone();
    if let Some(Value::String(dialect)) = document.get("$schema") {
        let known = ["draft-04", "draft-06", "draft-07", "2019-09", "2020-12"].iter().any(|d| dialect.contains(d));
        if !known {
            document["$schema"] = Value::String("http://json-schema.org/draft-07/schema#".to_owned());
        }
    }
    document
}

/// The retriever of documents not registered: none is fetched.
struct Unregistered;

impl jsonschema::Retrieve for Unregistered {
    fn retrieve(&self, uri: &jsonschema::Uri<String>) -> Result<Value, Box<dyn std::error::Error + Send + Sync>> {
        Err(format!(
            "{} was not registered with the data model (no document is fetched from the network)",
            uri.as_str()
        )
        .into())
    }
}

/// The schema with every `required` list of the entity itself removed (at its top and in the
/// top-level `allOf`/`anyOf`/`oneOf` members), for checking part of an entity.
fn without_required(schema: &Value) -> Value {
    let mut schema = schema.clone();
    fn strip(v: &mut Value) {
        if let Value::Object(map) = v {
            map.remove("required");
            for key in ["allOf", "anyOf", "oneOf"] {
                if let Some(Value::Array(items)) = map.get_mut(key) {
                    items.iter_mut().for_each(strip);
                }
            }
        }
    }
    strip(&mut schema);
    schema
}

/// An entity in the keyValues form Smart Data Models describe (see the module doc).
pub fn key_values(entity: &Entity, ctx: &Context) -> Value {
    let opts = RenderOptions { format: Format::KeyValues, ..RenderOptions::default() };
    let rendered = render_entity(entity, ctx, &opts);
    let mut out = Map::new();
    for (name, value) in rendered {
        out.insert(local_name(&name).to_owned(), value);
    }
    Value::Object(out)
}

/// The last segment of an IRI (after `/` or `#`); a term stays as it is.
pub fn local_name(name: &str) -> &str {
    if !name.contains("://") && !name.starts_with("urn:") {
        return name;
    }
    name.rsplit(['/', '#']).find(|s| !s.is_empty()).unwrap_or(name)
}

impl Checker {
    /// Checks a whole entity (`partial`: only the attributes it has) in its keyValues form;
    /// a failure is BadRequestData naming each failing attribute and its rule.
    pub fn check(&self, entity: &Entity, ctx: &Context, partial: bool) -> Result<(), NgsiLdError> {
        let instance = key_values(entity, ctx);
        let validator = if partial { &self.partial } else { &self.full };
        let failures: Vec<String> = validator.iter_errors(&instance).take(MAX_LISTED + 1).map(describe).collect();
        if failures.is_empty() {
            return Ok(());
        }
        let mut listed = failures[..failures.len().min(MAX_LISTED)].join("; ");
        if failures.len() > MAX_LISTED {
            listed.push_str("; ...");
        }
        Err(NgsiLdError::bad_request(format!(
            "{} {} does not follow the data model of {}: {listed}; change these attributes (the model checks the \
             entity's keyValues form)",
            self.entity_type, entity.id, self.entity_type
        )))
    }
}

/// One failure as `attribute: what is wrong` (`pm25: -3 is less than the minimum of 0`); a
/// missing attribute is named in the message itself.
fn describe(error: jsonschema::ValidationError<'_>) -> String {
    let path = error.instance_path.to_string();
    let attribute = path.trim_start_matches('/').replace('/', ".");
    match attribute.is_empty() {
        true => error.to_string(),
        false => format!("{attribute}: {error}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ngsild_core::expand::expand_entity;
    use serde_json::json;

    const COMMON: &str = "https://smart-data-models.github.io/data-models/common-schema.json";

    fn model() -> DataModel {
        let common = json!({
            "$id": COMMON,
            "definitions": {
                "EntityIdentifierType": {"type": "string", "minLength": 1},
                "GSMA-Commons": {"type": "object", "properties": {
                    "id": {"$ref": "#/definitions/EntityIdentifierType"},
                    "name": {"type": "string", "maxLength": 12}
                }}
            }
        });
        let schema = json!({
            "$schema": "http://json-schema.org/schema#",
            "type": "object",
            "allOf": [
                {"$ref": format!("{COMMON}#/definitions/GSMA-Commons")},
                {"properties": {
                    "type": {"type": "string", "enum": ["AirQualityObserved"]},
                    "pm25": {"type": "number", "minimum": 0},
                    "airQualityLevel": {"type": "string", "enum": ["good", "moderate", "unhealthy"]},
                    "refPointOfInterest": {"type": "string", "pattern": "^urn:ngsi-ld:PointOfInterest:"}
                }}
            ],
            "required": ["id", "type", "pm25"]
        });
        let body = json!({"type": "AirQualityObserved", "schema": schema, "resources": {COMMON: common}});
        DataModel::read(&body, &ngsild_jsonld::core_context()).unwrap()
    }

    fn entity(body: Value) -> Entity {
        expand_entity(body.as_object().unwrap(), &ngsild_jsonld::core_context()).unwrap().0
    }

    fn refusal(body: Value) -> String {
        let checker = model().compile().unwrap();
        let err = checker.check(&entity(body), &ngsild_jsonld::core_context(), false).unwrap_err();
        assert_eq!(err.kind, ngsild_core::error::ErrorKind::BadRequestData);
        err.detail
    }

    fn aq(extra: Value) -> Value {
        let mut e = json!({"id": "urn:ngsi-ld:AirQualityObserved:1", "type": "AirQualityObserved",
            "pm25": {"type": "Property", "value": 12}});
        for (k, v) in extra.as_object().unwrap() {
            e[k] = v.clone();
        }
        e
    }

    #[test]
    fn a_valid_entity_passes_and_each_kind_of_rule_names_its_attribute() {
        let checker = model().compile().unwrap();
        checker.check(&entity(aq(json!({}))), &ngsild_jsonld::core_context(), false).unwrap();
        let d = refusal(aq(json!({"pm25": {"type": "Property", "value": -3}})));
        assert!(d.contains("pm25: -3 is less than the minimum of 0"), "{d}");
        let d = refusal(aq(json!({"pm25": {"type": "Property", "value": "high"}})));
        assert!(d.contains("pm25: \"high\" is not of type \"number\""), "{d}");
        let d = refusal(aq(json!({"airQualityLevel": {"type": "Property", "value": "awful"}})));
        assert!(d.contains("airQualityLevel: \"awful\" is not one of"), "{d}");
        let d = refusal(aq(json!({"refPointOfInterest": {"type": "Property", "value": "poi-1"}})));
        assert!(d.contains("refPointOfInterest: \"poi-1\" does not match"), "{d}");
        let d = refusal(aq(json!({"name": {"type": "Property", "value": "a name that is too long"}})));
        assert!(d.contains("name: \"a name that is too long\" is longer than 12 characters"), "{d}");
        let d = refusal(json!({"id": "urn:ngsi-ld:AirQualityObserved:1", "type": "AirQualityObserved"}));
        assert!(d.contains("\"pm25\" is a required property"), "{d}");
    }

    #[test]
    fn a_partial_write_is_checked_without_required() {
        let checker = model().compile().unwrap();
        let part = entity(json!({"id": "urn:x:1", "type": "AirQualityObserved", "airQualityLevel": "good"}));
        checker.check(&part, &ngsild_jsonld::core_context(), true).unwrap();
        let bad = entity(json!({"id": "urn:x:1", "type": "AirQualityObserved", "pm25": -1}));
        assert!(checker.check(&bad, &ngsild_jsonld::core_context(), true).is_err());
    }

    #[test]
    fn a_ref_to_an_unregistered_document_is_refused_at_registration() {
        let body = json!({"type": "T", "schema": {"allOf": [{"$ref": "https://example.org/missing.json#/x"}]}});
        let err = DataModel::read(&body, &ngsild_jsonld::core_context()).unwrap_err();
        assert!(err.detail.contains("resources"), "{}", err.detail);
    }

    #[test]
    fn iri_names_shorten_to_their_last_segment() {
        assert_eq!(local_name("https://smartdatamodels.org/dataModel.Environment/pm25"), "pm25");
        assert_eq!(local_name("pm25"), "pm25");
        assert_eq!(local_name("http://example.org/ns#level"), "level");
    }
}
