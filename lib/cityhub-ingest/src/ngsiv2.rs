//! NGSIv2 (FIWARE Orion) → NGSI-LD, pure: an entity as Orion shows or notifies it becomes an
//! NGSI-LD entity in normalized form with compact names and no `@context` (the caller expands it
//! in the @context it chooses, the core one by default).
//!
//! The rules, one per v2 notion:
//! - `id`: kept when it is already a URI, else `urn:ngsi-ld:<type>:<id>`; `type` is kept.
//! - an attribute `{type, value, metadata}` is a Property with its `value`; a v2 attribute given
//!   as a bare value (the `keyValues` format) is a Property with that value.
//! - `Relationship`, or an attribute named `refX` (X upper-case first), is a Relationship whose
//!   `object` is the value made a URI the same way as ids (`refX` names the target type X).
//! - `geo:json` is a GeoProperty with the GeoJSON value; `geo:point` (`"lat, lon"`), `geo:line`,
//!   `geo:polygon` (lists of points) and `geo:box` (two corners) become GeoJSON (longitude first).
//! - `DateTime` / `ISO8601` values are `{"@type": "DateTime", "@value": …}`.
//! - metadata: `TimeInstant` → `observedAt`, `unitCode` → `unitCode`, any other → a
//!   sub-Property; an entity attribute `TimeInstant` (as IoT Agents add) is the `observedAt` of
//!   every attribute without its own, and is not kept as an attribute.
//! - an attribute whose value is `null` (v2 allows it, NGSI-LD does not) is left out.
//!
//! Anything that cannot be read is a [`ConversionError`] naming the entity and attribute.

use ngsild_core::validate::is_uri;
use serde_json::{json, Map, Value};

/// Why an NGSIv2 document could not be converted: a sentence for the client or the dead-letter
/// list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConversionError(pub String);

impl std::fmt::Display for ConversionError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ConversionError {}

fn fail<T>(why: impl Into<String>) -> Result<T, ConversionError> {
    Err(ConversionError(why.into()))
}

/// How a v2 document is read.
#[derive(Debug, Clone)]
pub struct V2Options {
    /// The type of an entity that names none (Orion's own default is `Thing`).
    pub default_type: String,
}

impl Default for V2Options {
    fn default() -> Self {
        V2Options { default_type: "Thing".to_owned() }
    }
}

/// An NGSI-LD id for a v2 id of `entity_type`: the id itself when it is a URI already, else
/// `urn:ngsi-ld:<type>:<id>`.
pub fn ld_id(entity_type: &str, id: &str) -> String {
    if is_uri(id) {
        id.to_owned()
    } else {
        format!("urn:ngsi-ld:{entity_type}:{id}")
    }
}

/// The entities of an Orion v2 notification body (`{subscriptionId, data: [...]}`), each
/// converted on its own: one that cannot be read does not stop the others.
pub fn notification_entities(
    body: &Value,
    options: &V2Options,
) -> Result<Vec<Result<Value, ConversionError>>, ConversionError> {
    let Some(data) = body.get("data") else {
        return fail("an NGSIv2 notification needs a \"data\" array of entities");
    };
    let Some(items) = data.as_array() else {
        return fail("the \"data\" of an NGSIv2 notification must be an array of entities");
    };
    Ok(items.iter().map(|item| entity_from_v2(item, options)).collect())
}

/// One NGSIv2 entity (normalized or keyValues) as an NGSI-LD entity, normalized, compact names.
pub fn entity_from_v2(v2: &Value, options: &V2Options) -> Result<Value, ConversionError> {
    let Some(doc) = v2.as_object() else {
        return fail("an NGSIv2 entity must be a JSON object");
    };
    let Some(id) = doc.get("id").and_then(Value::as_str).filter(|id| !id.is_empty()) else {
        return fail("an NGSIv2 entity needs an \"id\" string");
    };
    let entity_type = match doc.get("type") {
        None => options.default_type.as_str(),
        Some(Value::String(t)) if !t.is_empty() => t.as_str(),
        Some(_) => return fail(format!("the \"type\" of NGSIv2 entity {id} must be a non-empty string")),
    };
    let entity_time = match doc.get("TimeInstant") {
        Some(attr) => time_instant(attr).map_err(|why| ConversionError(format!("entity {id}: TimeInstant {why}")))?,
        None => None,
    };
    let mut out = Map::new();
    out.insert("id".into(), Value::String(ld_id(entity_type, id)));
    out.insert("type".into(), Value::String(entity_type.to_owned()));
    for (name, attr) in doc {
        if matches!(name.as_str(), "id" | "type" | "TimeInstant") {
            continue;
        }
        let converted = attribute(name, attr, entity_time.as_deref())
            .map_err(|why| ConversionError(format!("entity {id}, attribute {name}: {why}")))?;
        if let Some(converted) = converted {
            out.insert(name.clone(), converted);
        }
    }
    Ok(Value::Object(out))
}

/// The time a `TimeInstant` attribute or metadata holds (normalized or a bare string).
fn time_instant(attr: &Value) -> Result<Option<String>, String> {
    let value = match attr {
        Value::Object(m) => m.get("value").unwrap_or(&Value::Null),
        other => other,
    };
    match value {
        Value::Null => Ok(None),
        Value::String(s) => Ok(Some(s.clone())),
        other => Err(format!("must be a date-time string, not {other}")),
    }
}

/// The v2 type, value and metadata of an attribute in either format.
fn parts(attr: &Value) -> (Option<&str>, &Value, Option<&Map<String, Value>>) {
    match attr {
        Value::Object(m) if m.contains_key("value") || m.contains_key("type") => (
            m.get("type").and_then(Value::as_str),
            m.get("value").unwrap_or(&Value::Null),
            m.get("metadata").and_then(Value::as_object),
        ),
        other => (None, other, None),
    }
}

/// The members of an NGSI-LD attribute a metadata name may not take.
const RESERVED: &[&str] = &[
    "type",
    "value",
    "object",
    "languageMap",
    "observedAt",
    "datasetId",
    "createdAt",
    "modifiedAt",
    "deletedAt",
    "instanceId",
    "@context",
    "@id",
    "@type",
];

/// The target type a `refX` name announces (`refDevice` → `Device`).
fn ref_target(name: &str) -> Option<&str> {
    name.strip_prefix("ref").filter(|rest| rest.chars().next().is_some_and(char::is_uppercase))
}

fn attribute(name: &str, attr: &Value, entity_time: Option<&str>) -> Result<Option<Value>, String> {
    let (v2_type, value, metadata) = parts(attr);
    if value.is_null() {
        return Ok(None);
    }
    let target = ref_target(name);
    let mut out = Map::new();
    match v2_type {
        Some("Relationship") => relationship(&mut out, value, target.unwrap_or("Thing"))?,
        Some(t) if t.starts_with("geo:") => {
            out.insert("type".into(), "GeoProperty".into());
            out.insert("value".into(), geometry(t, value)?);
        }
        Some("DateTime" | "ISO8601") => {
            let Some(time) = value.as_str() else { return Err(format!("a DateTime must be a string, not {value}")) };
            out.insert("type".into(), "Property".into());
            out.insert("value".into(), json!({"@type": "DateTime", "@value": time}));
        }
        _ if target.is_some() && value.is_string() => relationship(&mut out, value, target.unwrap_or("Thing"))?,
        _ => {
            out.insert("type".into(), "Property".into());
            out.insert("value".into(), value.clone());
        }
    }
    let mut observed = entity_time.map(str::to_owned);
    for (meta_name, meta) in metadata.into_iter().flatten() {
        let (meta_type, meta_value, _) = parts(meta);
        match meta_name.as_str() {
            "TimeInstant" => observed = time_instant(meta).map_err(|why| format!("metadata TimeInstant {why}"))?,
            "unitCode" => match meta_value {
                Value::String(code) => {
                    out.insert("unitCode".into(), Value::String(code.clone()));
                }
                other => return Err(format!("metadata unitCode must be a string, not {other}")),
            },
            _ if meta_value.is_null() => {}
            reserved if RESERVED.contains(&reserved) => {
                return Err(format!("metadata {reserved:?} clashes with the NGSI-LD member of that name; rename it"))
            }
            _ => {
                let value = match meta_type {
                    Some("DateTime" | "ISO8601") => json!({"@type": "DateTime", "@value": meta_value}),
                    _ => meta_value.clone(),
                };
                out.insert(meta_name.clone(), json!({"type": "Property", "value": value}));
            }
        }
    }
    if let Some(observed) = observed {
        out.insert("observedAt".into(), Value::String(observed));
    }
    Ok(Some(Value::Object(out)))
}

fn relationship(out: &mut Map<String, Value>, value: &Value, target: &str) -> Result<(), String> {
    let object = match value {
        Value::String(s) => Value::String(ld_id(target, s)),
        Value::Array(items) => items
            .iter()
            .map(|item| match item {
                Value::String(s) => Ok(Value::String(ld_id(target, s))),
                other => Err(format!("a relationship's targets must be entity ids, not {other}")),
            })
            .collect::<Result<Vec<_>, _>>()
            .map(Value::Array)?,
        other => return Err(format!("a Relationship must name an entity id, not {other}")),
    };
    out.insert("type".into(), "Relationship".into());
    out.insert("object".into(), object);
    Ok(())
}

/// One `"lat, lon"` as a GeoJSON position `[lon, lat]`.
fn position(point: &Value) -> Result<Value, String> {
    let text = point.as_str().ok_or_else(|| format!("a point must be a \"lat, lon\" string, not {point}"))?;
    let mut numbers = text.split(',').map(|n| n.trim().parse::<f64>());
    match (numbers.next(), numbers.next(), numbers.next()) {
        (Some(Ok(lat)), Some(Ok(lon)), None) if lat.is_finite() && lon.is_finite() => Ok(json!([lon, lat])),
        _ => Err(format!("a point must be \"lat, lon\" in decimal degrees, not {text:?}")),
    }
}

fn positions(list: &Value, at_least: usize) -> Result<Vec<Value>, String> {
    let items = list.as_array().ok_or_else(|| format!("a list of \"lat, lon\" points is needed, not {list}"))?;
    if items.len() < at_least {
        return Err(format!("at least {at_least} points are needed, {} given", items.len()));
    }
    items.iter().map(position).collect()
}

/// GeoJSON for a v2 geo attribute type.
fn geometry(v2_type: &str, value: &Value) -> Result<Value, String> {
    Ok(match v2_type {
        "geo:json" => value.clone(),
        "geo:point" => json!({"type": "Point", "coordinates": position(value)?}),
        "geo:line" => json!({"type": "LineString", "coordinates": positions(value, 2)?}),
        "geo:polygon" => json!({"type": "Polygon", "coordinates": [positions(value, 4)?]}),
        "geo:box" => {
            let corners = positions(value, 2)?;
            let [a, b] = corners.as_slice() else { return Err("a geo:box has exactly two corners".into()) };
            let (x1, y1, x2, y2) = (a[0].clone(), a[1].clone(), b[0].clone(), b[1].clone());
            json!({"type": "Polygon", "coordinates": [[[x1, y1], [x2, y1], [x2, y2], [x1, y2], [x1, y1]]]})
        }
        other => {
            return Err(format!(
                "unknown geometry type {other:?} (geo:json, geo:point, geo:line, geo:polygon, geo:box)"
            ))
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn convert(v2: Value) -> Value {
        entity_from_v2(&v2, &V2Options::default()).unwrap()
    }

    #[test]
    fn an_orion_entity_becomes_the_ngsi_ld_entity_written_by_hand() {
        let v2 = json!({
            "id": "Room1", "type": "Room",
            "temperature": {"type": "Number", "value": 23.5, "metadata": {
                "TimeInstant": {"type": "DateTime", "value": "2026-01-02T03:04:05.000Z"},
                "unitCode": {"type": "Text", "value": "CEL"},
                "accuracy": {"type": "Number", "value": 0.5}}},
            "location": {"type": "geo:point", "value": "40.41, -3.70", "metadata": {}},
            "refBuilding": {"type": "Text", "value": "B7", "metadata": {}},
            "owner": {"type": "Relationship", "value": "urn:ngsi-ld:Person:ana"},
            "installed": {"type": "DateTime", "value": "2020-05-01T00:00:00.000Z"},
            "note": {"type": "Text", "value": null}
        });
        assert_eq!(
            convert(v2),
            json!({
                "id": "urn:ngsi-ld:Room:Room1", "type": "Room",
                "temperature": {"type": "Property", "value": 23.5, "unitCode": "CEL",
                    "accuracy": {"type": "Property", "value": 0.5}, "observedAt": "2026-01-02T03:04:05.000Z"},
                "location": {"type": "GeoProperty", "value": {"type": "Point", "coordinates": [-3.70, 40.41]}},
                "refBuilding": {"type": "Relationship", "object": "urn:ngsi-ld:Building:B7"},
                "owner": {"type": "Relationship", "object": "urn:ngsi-ld:Person:ana"},
                "installed": {"type": "Property", "value": {"@type": "DateTime", "@value": "2020-05-01T00:00:00.000Z"}}
            })
        );
    }

    #[test]
    fn what_is_converted_is_a_valid_ngsi_ld_entity() {
        let ld = convert(json!({"id": "R", "type": "Room",
            "t": {"type": "Number", "value": 1, "metadata": {"unitCode": {"value": "CEL"}, "TimeInstant": {"value": "2026-01-01T00:00:00Z"}}},
            "refFloor": {"type": "Relationship", "value": "F1"},
            "location": {"type": "geo:point", "value": "1, 2"}}));
        let (entity, _) =
            ngsild_core::expand::expand_entity(ld.as_object().unwrap(), &ngsild_jsonld::Context::core()).unwrap();
        assert_eq!(entity.id, "urn:ngsi-ld:Room:R");
        assert_eq!(entity.attrs.len(), 3);
    }

    #[test]
    fn an_entity_time_instant_is_the_observed_at_of_attributes_without_their_own() {
        let v2 = json!({"id": "urn:x:1", "type": "T",
            "TimeInstant": {"type": "DateTime", "value": "2026-01-01T00:00:00Z"},
            "a": {"type": "Number", "value": 1},
            "b": {"type": "Number", "value": 2, "metadata": {"TimeInstant": {"type": "DateTime", "value": "2026-02-01T00:00:00Z"}}}});
        let ld = convert(v2);
        assert_eq!(ld["id"], "urn:x:1", "a URI id is kept");
        assert_eq!(ld["a"]["observedAt"], "2026-01-01T00:00:00Z");
        assert_eq!(ld["b"]["observedAt"], "2026-02-01T00:00:00Z");
        assert!(ld.get("TimeInstant").is_none());
    }

    #[test]
    fn key_values_and_geometries_convert() {
        let ld = convert(json!({"id": "s", "type": "Street", "name": "Main",
            "line": {"type": "geo:line", "value": ["1,2", "3,4"]},
            "box": {"type": "geo:box", "value": ["0,0", "1,2"]},
            "area": {"type": "geo:json", "value": {"type": "Point", "coordinates": [1, 2]}}}));
        assert_eq!(ld["name"], json!({"type": "Property", "value": "Main"}));
        assert_eq!(ld["line"]["value"], json!({"type": "LineString", "coordinates": [[2.0, 1.0], [4.0, 3.0]]}));
        assert_eq!(ld["box"]["value"]["coordinates"][0][2], json!([2.0, 1.0]));
        assert_eq!(ld["area"]["value"], json!({"type": "Point", "coordinates": [1, 2]}));
        assert_eq!(convert(json!({"id": "x"}))["type"], "Thing");
    }

    #[test]
    fn what_cannot_be_read_names_the_entity_and_the_attribute() {
        let err = entity_from_v2(
            &json!({"id": "r", "type": "Room", "loc": {"type": "geo:point", "value": "north"}}),
            &V2Options::default(),
        )
        .unwrap_err();
        assert!(err.0.contains("entity r, attribute loc") && err.0.contains("lat, lon"), "{err}");
        let err = entity_from_v2(&json!({"type": "Room"}), &V2Options::default()).unwrap_err();
        assert!(err.0.contains("\"id\""), "{err}");
        let err = notification_entities(&json!({"subscriptionId": "s"}), &V2Options::default()).unwrap_err();
        assert!(err.0.contains("data"), "{err}");
    }

    #[test]
    fn a_notification_converts_each_entity_on_its_own() {
        let body = json!({"subscriptionId": "5f", "data": [{"id": "a", "type": "T"}, {"type": "T"}]});
        let items = notification_entities(&body, &V2Options::default()).unwrap();
        assert_eq!(items[0].as_ref().unwrap()["id"], "urn:ngsi-ld:T:a");
        assert!(items[1].is_err());
    }

    proptest! {
        #[test]
        fn any_v2_document_converts_or_says_why_without_panicking(doc in any_json(3)) {
            let _ = entity_from_v2(&doc, &V2Options::default());
        }

        #[test]
        fn every_converted_attribute_is_a_property_relationship_or_geoproperty(
            attrs in prop::collection::btree_map("[a-zA-Z]{1,8}", any_json(2), 0..6)
        ) {
            let mut doc = Map::new();
            doc.insert("id".into(), "e".into());
            doc.insert("type".into(), "T".into());
            for (k, v) in attrs { doc.entry(k).or_insert(v); }
            if let Ok(ld) = entity_from_v2(&Value::Object(doc), &V2Options::default()) {
                for (name, attr) in ld.as_object().unwrap() {
                    if name == "id" || name == "type" { continue; }
                    let kind = attr["type"].as_str().unwrap_or_else(|| panic!("{name}: {attr} in {ld}"));
                    prop_assert!(matches!(kind, "Property" | "Relationship" | "GeoProperty"), "{name}: {attr}");
                    if kind == "Relationship" { prop_assert!(attr["object"].is_string() || attr["object"].is_array()); }
                    else { prop_assert!(!attr["value"].is_null()); }
                }
            }
        }
    }

    fn any_json(depth: u32) -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::from),
            any::<i32>().prop_map(Value::from),
            prop_oneof![
                Just("geo:point".to_owned()),
                Just("Relationship".to_owned()),
                Just("DateTime".to_owned()),
                Just("1, 2".to_owned()),
                "[a-z ,0-9]{0,6}"
            ]
            .prop_map(Value::from),
        ];
        leaf.prop_recursive(depth, 24, 4, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
                prop::collection::btree_map(
                    prop_oneof![
                        Just("type".to_owned()),
                        Just("value".to_owned()),
                        Just("metadata".to_owned()),
                        "[a-z]{1,4}"
                    ],
                    inner,
                    0..4
                )
                .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }
}
