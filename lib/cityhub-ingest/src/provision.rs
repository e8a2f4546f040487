//! Provisioning as FIWARE's IoT Agents know it, and how a reading becomes an NGSI-LD entity;
//! pure.
//!
//! A [`ServiceGroup`] (`/iot/services`) is an `apikey` with defaults for its devices
//! (`entity_type`, `attributes`, `static_attributes`, `autoprovision`); a [`Device`]
//! (`/iot/devices`) is a `device_id` with the entity it feeds (`entity_name`, `entity_type`) and
//! its own mappings. Both read the IoT Agent bodies as they are (fields this hub does not use are
//! kept and shown back); `lazy` and `commands` are refused, since the hub sends nothing south.
//!
//! [`measurement_entity`] maps a reading: each measure goes to the attribute whose `object_id`
//! (or `name`) is its key, coerced to that attribute's `type` (`Number`, `Boolean`, `Text`,
//! `DateTime`, `geo:point`, `geo:json`, `Relationship`; others keep the payload value); a
//! measure no attribute maps keeps its key as the name (as IoT Agents do unless `explicitAttrs`).
//! Units come from an attribute's `unitCode` or its `unitCode` metadata; other metadata become
//! sub-Properties. The time of every attribute (`observedAt`) is the reading's `TimeInstant`, or
//! the measure mapped to `TimeInstant`, or the arrival time.

use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

use crate::ngsiv2::ld_id;
use crate::payload::Reading;

/// An attribute a payload key maps to (`{object_id, name, type}`; `metadata`, `unitCode`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AttributeMap {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub object_id: Option<String>,
    pub name: String,
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<Map<String, Value>>,
    #[serde(rename = "unitCode", default, skip_serializing_if = "Option::is_none")]
    pub unit_code: Option<String>,
}

/// An attribute every entity of the group or device holds (`{name, type, value, metadata}`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StaticAttribute {
    pub name: String,
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    pub value: Value,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<Map<String, Value>>,
}

/// A service group of `/iot/services`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ServiceGroup {
    pub apikey: String,
    #[serde(default)]
    pub resource: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entity_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cbroker: Option<String>,
    #[serde(default)]
    pub attributes: Vec<AttributeMap>,
    #[serde(default)]
    pub static_attributes: Vec<StaticAttribute>,
    /// Whether a measurement of a device not provisioned creates its entity (true unless said).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub autoprovision: Option<bool>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub lazy: Vec<Value>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub commands: Vec<Value>,
    /// The tenant (`NGSILD-Tenant` / `fiware-service`), set by the hub.
    #[serde(default)]
    pub service: String,
    /// `fiware-servicepath`, kept as given.
    #[serde(default)]
    pub subservice: String,
    /// Fields of IoT Agent bodies this hub does not read, kept.
    #[serde(flatten)]
    pub other: Map<String, Value>,
}

/// A device of `/iot/devices`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Device {
    pub device_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entity_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entity_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub apikey: Option<String>,
    #[serde(default)]
    pub attributes: Vec<AttributeMap>,
    #[serde(default)]
    pub static_attributes: Vec<StaticAttribute>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub lazy: Vec<Value>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub commands: Vec<Value>,
    #[serde(default)]
    pub service: String,
    #[serde(default)]
    pub subservice: String,
    #[serde(flatten)]
    pub other: Map<String, Value>,
}

/// Reads a service group of a request body, or says why it cannot be.
pub fn read_group(value: Value) -> Result<ServiceGroup, String> {
    let group: ServiceGroup = serde_json::from_value(value).map_err(|e| format!("a service group: {e}"))?;
    if group.apikey.is_empty() || group.apikey.contains(['/', '#', '+']) {
        return Err(format!("a service group needs an apikey without '/', '#' or '+', not {:?}", group.apikey));
    }
    refuse_southbound(&group.lazy, &group.commands)?;
    check_attributes(&group.attributes)?;
    Ok(group)
}

/// Reads a device of a request body, or says why it cannot be.
pub fn read_device(value: Value) -> Result<Device, String> {
    let device: Device = serde_json::from_value(value).map_err(|e| format!("a device: {e}"))?;
    if device.device_id.is_empty() || device.device_id.contains(['/', '#', '+']) {
        return Err(format!("a device needs a device_id without '/', '#' or '+', not {:?}", device.device_id));
    }
    refuse_southbound(&device.lazy, &device.commands)?;
    check_attributes(&device.attributes)?;
    Ok(device)
}

fn refuse_southbound(lazy: &[Value], commands: &[Value]) -> Result<(), String> {
    if !lazy.is_empty() || !commands.is_empty() {
        return Err("lazy attributes and commands are not supported: the hub sends nothing to devices; \
                    provision active attributes only"
            .into());
    }
    Ok(())
}

fn check_attributes(attributes: &[AttributeMap]) -> Result<(), String> {
    for a in attributes {
        if a.name.is_empty() {
            return Err("every attribute needs a name".into());
        }
    }
    Ok(())
}

/// What a device's readings are written to.
#[derive(Debug, Clone, PartialEq)]
pub struct Target {
    pub entity_id: String,
    pub entity_type: String,
    pub attributes: Vec<AttributeMap>,
    pub statics: Vec<StaticAttribute>,
}

/// The target of a device of a group (its mappings first, then the group's).
pub fn target(group: &ServiceGroup, device: Option<&Device>, device_id: &str) -> Target {
    let entity_type = device
        .and_then(|d| d.entity_type.clone())
        .or_else(|| group.entity_type.clone())
        .unwrap_or_else(|| "Thing".to_owned());
    let name = device.and_then(|d| d.entity_name.clone()).unwrap_or_else(|| device_id.to_owned());
    let mut attributes: Vec<AttributeMap> = device.map(|d| d.attributes.clone()).unwrap_or_default();
    attributes.extend(group.attributes.iter().cloned());
    let mut statics: Vec<StaticAttribute> = device.map(|d| d.static_attributes.clone()).unwrap_or_default();
    statics.extend(group.static_attributes.iter().filter(|s| statics_lack(device, &s.name)).cloned());
    Target { entity_id: ld_id(&entity_type, &name), entity_type, attributes, statics }
}

fn statics_lack(device: Option<&Device>, name: &str) -> bool {
    device.is_none_or(|d| d.static_attributes.iter().all(|s| s.name != name))
}

/// The NGSI-LD entity (normalized, compact names) a reading updates: its measures, each
/// `observedAt` the reading's time or `arrival`. Static attributes are [`statics_entity`]'s.
pub fn measurement_entity(target: &Target, reading: &Reading, arrival: &str) -> Result<Value, String> {
    let mapped = |key: &str| {
        target
            .attributes
            .iter()
            .find(|a| a.object_id.as_deref() == Some(key))
            .or_else(|| target.attributes.iter().find(|a| a.object_id.is_none() && a.name == key))
    };
    let mut time = reading.time.clone();
    for (key, value) in &reading.measures {
        if mapped(key).is_some_and(|a| a.name == "TimeInstant") {
            time =
                Some(value.as_str().ok_or_else(|| format!("the time {key:?} must be a date-time string"))?.to_owned());
        }
    }
    let observed = match time {
        Some(t) if ngsild_core::time::parse_datetime(&t).is_some() => t,
        Some(t) => return Err(format!("the reading's time {t:?} is not a date-time (e.g. 2026-01-01T00:00:00Z)")),
        None => arrival.to_owned(),
    };
    let mut out = Map::new();
    out.insert("id".into(), Value::String(target.entity_id.clone()));
    out.insert("type".into(), Value::String(target.entity_type.clone()));
    for (key, value) in &reading.measures {
        let (name, kind, metadata, unit) = match mapped(key) {
            Some(a) if a.name == "TimeInstant" => continue,
            Some(a) => (a.name.as_str(), a.kind.as_deref(), a.metadata.as_ref(), a.unit_code.as_deref()),
            None => (key.as_str(), None, None, None),
        };
        let mut attr = ld_attribute(kind, value, metadata, unit).map_err(|why| format!("measure {key:?}: {why}"))?;
        if let Some(map) = attr.as_object_mut() {
            map.insert("observedAt".into(), Value::String(observed.clone()));
        }
        out.insert(name.to_owned(), attr);
    }
    Ok(Value::Object(out))
}

/// The static attributes of a target as an NGSI-LD fragment (no id, no type).
pub fn statics_entity(target: &Target) -> Result<Value, String> {
    let mut out = Map::new();
    for s in &target.statics {
        let attr = ld_attribute(s.kind.as_deref(), &s.value, s.metadata.as_ref(), None)
            .map_err(|why| format!("static attribute {:?}: {why}", s.name))?;
        out.insert(s.name.clone(), attr);
    }
    Ok(Value::Object(out))
}

/// One NGSI-LD attribute from a value and the IoT Agent type it is declared with.
fn ld_attribute(
    kind: Option<&str>,
    value: &Value,
    metadata: Option<&Map<String, Value>>,
    unit: Option<&str>,
) -> Result<Value, String> {
    let mut out = Map::new();
    match kind.unwrap_or("") {
        "Number" | "Float" | "Integer" | "number" | "float" | "integer" | "Double" | "Decimal" => {
            prop(&mut out, number(value)?)
        }
        "Boolean" | "boolean" | "Bool" => prop(&mut out, boolean(value)?),
        "Text" | "String" | "text" | "string" => prop(&mut out, Value::String(text(value))),
        "DateTime" | "ISO8601" => {
            let t = value.as_str().filter(|t| ngsild_core::time::parse_datetime(t).is_some());
            let Some(t) = t else { return Err(format!("{value} is not a date-time (e.g. 2026-01-01T00:00:00Z)")) };
            prop(&mut out, json!({"@type": "DateTime", "@value": t}));
        }
        "geo:point" | "geo:line" | "geo:polygon" | "geo:box" => {
            out.insert("type".into(), "GeoProperty".into());
            out.insert("value".into(), crate::ngsiv2::geometry(kind.unwrap_or(""), value)?);
        }
        "geo:json" => {
            out.insert("type".into(), "GeoProperty".into());
            out.insert("value".into(), parsed_json(value)?);
        }
        "Relationship" => {
            let Some(object) = value.as_str().filter(|s| !s.is_empty()) else {
                return Err(format!("a Relationship needs an entity id, not {value}"));
            };
            out.insert("type".into(), "Relationship".into());
            out.insert("object".into(), Value::String(ld_id("Thing", object)));
        }
        "StructuredValue" | "Object" | "Array" | "json" => prop(&mut out, parsed_json(value)?),
        _ => prop(&mut out, value.clone()),
    }
    if value.is_null() {
        return Err("a measure cannot be null".into());
    }
    let mut unit = unit.map(str::to_owned);
    for (name, meta) in metadata.into_iter().flatten() {
        let meta_value = meta.get("value").unwrap_or(meta);
        if name == "unitCode" {
            unit = Some(meta_value.as_str().ok_or("metadata unitCode must be a string")?.to_owned());
        } else if !meta_value.is_null() {
            out.insert(name.clone(), json!({"type": "Property", "value": meta_value}));
        }
    }
    if let Some(unit) = unit {
        out.insert("unitCode".into(), Value::String(unit));
    }
    Ok(Value::Object(out))
}

fn prop(out: &mut Map<String, Value>, value: Value) {
    out.insert("type".into(), "Property".into());
    out.insert("value".into(), value);
}

fn number(value: &Value) -> Result<Value, String> {
    match value {
        Value::Number(_) => Ok(value.clone()),
        Value::String(s) => {
            let s = s.trim();
            if let Ok(i) = s.parse::<i64>() {
                return Ok(Value::from(i));
            }
            match s.parse::<f64>() {
                Ok(f) if f.is_finite() => Ok(Value::from(f)),
                _ => Err(format!("{s:?} is not a Number")),
            }
        }
        other => Err(format!("{other} is not a Number")),
    }
}

fn boolean(value: &Value) -> Result<Value, String> {
    match value {
        Value::Bool(_) => Ok(value.clone()),
        Value::String(s) if matches!(s.trim(), "true" | "1") => Ok(Value::Bool(true)),
        Value::String(s) if matches!(s.trim(), "false" | "0") => Ok(Value::Bool(false)),
        Value::Number(n) if n.as_i64() == Some(1) => Ok(Value::Bool(true)),
        Value::Number(n) if n.as_i64() == Some(0) => Ok(Value::Bool(false)),
        other => Err(format!("{other} is not a Boolean (true, false, 1 or 0)")),
    }
}

fn text(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// A JSON value, parsed when a text payload (UltraLight) carries it as text.
fn parsed_json(value: &Value) -> Result<Value, String> {
    match value {
        Value::String(s) => serde_json::from_str(s).map_err(|e| format!("{s:?} is not JSON: {e}")),
        other => Ok(other.clone()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::payload::{parse, Format};

    fn group() -> ServiceGroup {
        read_group(json!({"apikey": "k1", "entity_type": "WeatherObserved", "resource": "/iot/json",
            "attributes": [{"object_id": "h", "name": "relativeHumidity", "type": "Number", "unitCode": "P1"}],
            "static_attributes": [{"name": "source", "type": "Text", "value": "city"}],
            "timezone": "Europe/Madrid"}))
        .unwrap()
    }

    fn device() -> Device {
        read_device(json!({"device_id": "d1", "entity_name": "urn:ngsi-ld:WeatherObserved:w1",
            "attributes": [
                {"object_id": "t", "name": "temperature", "type": "Number", "metadata": {"unitCode": {"type": "Text", "value": "CEL"}}},
                {"object_id": "on", "name": "active", "type": "Boolean"},
                {"object_id": "ts", "name": "TimeInstant", "type": "DateTime"}],
            "static_attributes": [{"name": "location", "type": "geo:point", "value": "37.5, 127.0"}]}))
        .unwrap()
    }

    #[test]
    fn an_ultralight_reading_maps_coerces_and_carries_units_and_time() {
        let t = target(&group(), Some(&device()), "d1");
        assert_eq!(t.entity_id, "urn:ngsi-ld:WeatherObserved:w1");
        let r = &parse(Format::UltraLight, b"t|21.5|h|40|on|1|x|abc").unwrap()[0];
        let e = measurement_entity(&t, r, "2026-03-01T00:00:00Z").unwrap();
        let at = "2026-03-01T00:00:00Z";
        assert_eq!(
            e,
            json!({"id": "urn:ngsi-ld:WeatherObserved:w1", "type": "WeatherObserved",
                "temperature": {"type": "Property", "value": 21.5, "unitCode": "CEL", "observedAt": at},
                "relativeHumidity": {"type": "Property", "value": 40, "unitCode": "P1", "observedAt": at},
                "active": {"type": "Property", "value": true, "observedAt": at},
                "x": {"type": "Property", "value": "abc", "observedAt": at}})
        );
        let statics = statics_entity(&t).unwrap();
        assert_eq!(
            statics["location"],
            json!({"type": "GeoProperty", "value": {"type": "Point", "coordinates": [127.0, 37.5]}})
        );
        assert_eq!(statics["source"], json!({"type": "Property", "value": "city"}));
    }

    #[test]
    fn a_mapped_time_key_or_time_instant_is_observed_at() {
        let t = target(&group(), Some(&device()), "d1");
        let r = &parse(Format::Json, br#"{"t": 20, "ts": "2026-01-01T10:00:00Z"}"#).unwrap()[0];
        let e = measurement_entity(&t, r, "2026-03-01T00:00:00Z").unwrap();
        assert_eq!(e["temperature"]["observedAt"], "2026-01-01T10:00:00Z");
        assert!(e.get("TimeInstant").is_none() && e.get("ts").is_none());
        let r = &parse(Format::UltraLight, b"2026-02-02T00:00:00Z|t|1").unwrap()[0];
        assert_eq!(measurement_entity(&t, r, "x").unwrap()["temperature"]["observedAt"], "2026-02-02T00:00:00Z");
    }

    #[test]
    fn what_does_not_fit_its_type_is_refused_with_a_reason() {
        let t = target(&group(), Some(&device()), "d1");
        let r = &parse(Format::UltraLight, b"t|warm").unwrap()[0];
        let why = measurement_entity(&t, r, "2026-03-01T00:00:00Z").unwrap_err();
        assert!(why.contains("\"t\"") && why.contains("not a Number"), "{why}");
        let r = &parse(Format::Json, br#"{"t": 1, "ts": "yesterday"}"#).unwrap()[0];
        assert!(measurement_entity(&t, r, "x").unwrap_err().contains("not a date-time"));
    }

    #[test]
    fn an_unprovisioned_device_takes_its_group_defaults() {
        let t = target(&group(), None, "dev-9");
        assert_eq!(t.entity_id, "urn:ngsi-ld:WeatherObserved:dev-9");
        assert_eq!(t.statics.len(), 1);
    }

    #[test]
    fn lazy_and_commands_and_bad_ids_are_refused() {
        assert!(read_device(json!({"device_id": "d", "commands": [{"name": "ping"}]}))
            .unwrap_err()
            .contains("not supported"));
        assert!(read_device(json!({"device_id": "a/b"})).unwrap_err().contains("device_id"));
        assert!(read_group(json!({"entity_type": "T"})).unwrap_err().contains("apikey"));
        assert_eq!(group().other["timezone"], "Europe/Madrid", "fields not read are kept");
    }
}
