//! The declarative mapping from a record (a CSV row, a GeoJSON feature, a JSON or XML item) to
//! an NGSI-LD entity in normalized form, its names as written (the core @context expands them).
//!
//! A mapping names, by column or dotted path (`properties.name`, `response.body.items.item`):
//! the entity id (prefixed with `idPrefix`, by default `urn:ngsi-ld:<type>:`, unless it is a URI
//! already), the type, the attributes (name, column, NGSI-LD type, value type, `unitCode`,
//! `observedAt`), the `observedAt` of every attribute, and the location (latitude and longitude
//! columns, a WKT column or a GeoJSON one). Without listed attributes every other column becomes
//! a Property whose value type is guessed (integer, number, boolean, else text); a column whose
//! name is not a valid attribute name has its offending characters replaced by `_`.
//!
//! An empty cell (or a null) leaves its attribute out; a cell that does not read as its declared
//! value type fails the row, with a reason naming the column and what was expected.

use ngsild_core::time::{format_time, parse_datetime};
use ngsild_core::validate::{check_uri, is_valid_name};
use serde::Deserialize;
use serde_json::{json, Map, Value};

/// One record of a source: named fields (nested values allowed).
pub type Record = Map<String, Value>;

/// How records become entities (see the module doc). Read from JSON or TOML.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Mapping {
    /// The entity type (a term of the core @context or an IRI).
    #[serde(rename = "type")]
    pub entity_type: Option<String>,
    /// The column or path of the entity id.
    pub id: Option<String>,
    /// Put before an id that is not a URI (default `urn:ngsi-ld:<type>:`).
    pub id_prefix: Option<String>,
    /// Where a JSON or XML document holds its records (dotted path), e.g.
    /// `response.body.items.item`; default: the document itself (an array, or a GeoJSON
    /// FeatureCollection's features).
    pub items: Option<String>,
    /// The column or path of the `observedAt` of every attribute.
    pub observed_at: Option<String>,
    pub location: Option<Location>,
    /// The attributes; none listed: every other column (see the module doc).
    #[serde(default)]
    pub attributes: Vec<AttributeMap>,
    /// With listed attributes, also turn the unlisted columns into Properties.
    #[serde(default)]
    pub other_columns: bool,
    /// Cell texts that mean "no value" besides the empty one (data.go.kr writes `-`).
    #[serde(default)]
    pub null_values: Vec<String>,
    /// The UTC offset of times written without one (`2024-05-01 09:00` with `+09:00`);
    /// default UTC.
    pub timezone: Option<String>,
}

/// Where a record's location comes from: exactly one of `lat`+`lon`, `wkt` or `geojson`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Location {
    pub lat: Option<String>,
    pub lon: Option<String>,
    pub wkt: Option<String>,
    pub geojson: Option<String>,
    /// The GeoProperty's name (default `location`).
    pub name: Option<String>,
}

/// One attribute of the entity.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct AttributeMap {
    pub name: String,
    /// The column or path (default: the attribute's name).
    #[serde(alias = "column", alias = "path")]
    pub from: Option<String>,
    /// `Property` (default), `Relationship` or `GeoProperty`.
    #[serde(rename = "type", default)]
    pub kind: Kind,
    #[serde(default)]
    pub value_type: ValueType,
    pub unit_code: Option<String>,
    /// The column or path of this attribute's `observedAt` (default: the mapping's).
    pub observed_at: Option<String>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
pub enum Kind {
    #[default]
    Property,
    Relationship,
    GeoProperty,
}

/// What a cell's text is read as.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ValueType {
    /// integer, number, boolean, else text.
    #[default]
    Auto,
    Number,
    Integer,
    Boolean,
    String,
    /// An NGSI-LD DateTime (`{"@type": "DateTime", "@value": ...}`).
    DateTime,
    /// JSON text parsed (a cell holding `{"a": 1}`).
    Json,
}

/// The columns read as a point when no location is mapped and no attribute is listed.
const LAT_NAMES: &[&str] = &["lat", "latitude", "LAT", "Latitude", "y"];
const LON_NAMES: &[&str] = &["lon", "lng", "longitude", "LON", "Longitude", "x"];
const OBSERVED_NAMES: &[&str] = &["observedAt", "TimeInstant", "dateObserved"];

impl Mapping {
    /// A mapping file's text, JSON when it starts with `{`, TOML otherwise.
    pub fn parse(text: &str) -> Result<Mapping, String> {
        if text.trim_start().starts_with('{') {
            serde_json::from_str(text).map_err(|e| format!("the mapping is not valid JSON of a mapping: {e}"))
        } else {
            toml::from_str(text).map_err(|e| format!("the mapping is not valid TOML of a mapping: {e}"))
        }
    }

    /// Fills in the type and id given beside the mapping (command-line flags win), then checks
    /// that it can map anything: a type, an id, valid names and one location form.
    pub fn complete(mut self, entity_type: Option<&str>, id: Option<&str>) -> Result<Mapping, String> {
        if let Some(t) = entity_type {
            self.entity_type = Some(t.to_owned());
        }
        if let Some(i) = id {
            self.id = Some(i.to_owned());
        }
        let Some(t) = &self.entity_type else {
            return Err("no entity type: give --type or \"type\" in the mapping".into());
        };
        if !is_valid_name(t) {
            return Err(format!("the entity type {t:?} is not a valid NGSI-LD type name"));
        }
        if self.id.as_deref().is_none_or(str::is_empty) {
            return Err("no id column: give --id COLUMN or \"id\" in the mapping".into());
        }
        for a in &self.attributes {
            if !is_valid_name(&a.name) {
                return Err(format!("the attribute name {:?} is not a valid NGSI-LD name: rename it", a.name));
            }
        }
        if let Some(l) = &self.location {
            let forms = [l.lat.is_some() && l.lon.is_some(), l.wkt.is_some(), l.geojson.is_some()];
            if forms.iter().filter(|f| **f).count() != 1 || (l.lat.is_some() != l.lon.is_some()) {
                return Err("the location needs exactly one of: lat and lon, wkt, geojson".into());
            }
        }
        Ok(self)
    }

    fn entity_type(&self) -> &str {
        self.entity_type.as_deref().unwrap_or("Thing")
    }

    /// The entity a record maps to, or why the record cannot be one.
    pub fn map(&self, record: &Record) -> Result<Map<String, Value>, String> {
        let id_path = self.id.as_deref().unwrap_or("id");
        let id = match lookup(record, id_path) {
            None | Some(Value::Null) => return Err(format!("no id: the record has no {id_path:?}")),
            Some(Value::String(s)) if s.trim().is_empty() => return Err(format!("no id: {id_path:?} is empty")),
            Some(Value::String(s)) => s.trim().to_owned(),
            Some(Value::Number(n)) => n.to_string(),
            Some(other) => return Err(format!("the id {id_path:?} is {other}, not a text or number")),
        };
        let id = self.entity_id(&id)?;
        let mut entity = Map::new();
        entity.insert("id".into(), Value::String(id));
        entity.insert("type".into(), Value::String(self.entity_type().to_owned()));
        let observed = match self.observed_at.as_deref().or_else(|| self.auto_observed(record)) {
            Some(path) => self.datetime_at(record, path)?,
            None => None,
        };
        let mut used: Vec<String> = vec![id_path.to_owned()];
        used.extend(self.observed_at.as_deref().or_else(|| self.auto_observed(record)).map(str::to_owned));
        if let Some((name, value, from)) = self.location(record)? {
            used.extend(from);
            if let Some(value) = value {
                entity.insert(name, json!({"type": "GeoProperty", "value": value}));
            }
        }
        for a in &self.attributes {
            let from = a.from.as_deref().unwrap_or(&a.name);
            used.push(from.to_owned());
            let Some(value) = self.present(lookup(record, from)) else { continue };
            let mut attr = Map::new();
            match a.kind {
                Kind::Property => {
                    attr.insert("type".into(), "Property".into());
                    attr.insert("value".into(), typed(value, a.value_type, from)?);
                }
                Kind::Relationship => {
                    let object = value.as_str().map(str::trim).unwrap_or_default();
                    check_uri(object, "the object").map_err(|e| format!("column {from:?}: {}", e.detail))?;
                    attr.insert("type".into(), "Relationship".into());
                    attr.insert("object".into(), object.into());
                }
                Kind::GeoProperty => {
                    attr.insert("type".into(), "GeoProperty".into());
                    attr.insert("value".into(), geometry(value, from)?);
                }
            }
            if let Some(unit) = &a.unit_code {
                attr.insert("unitCode".into(), unit.clone().into());
            }
            let own = match &a.observed_at {
                Some(path) => self.datetime_at(record, path)?,
                None => observed.clone(),
            };
            if let Some(t) = own {
                attr.insert("observedAt".into(), t.into());
            }
            entity.insert(a.name.clone(), Value::Object(attr));
        }
        if self.attributes.is_empty() || self.other_columns {
            for (column, value) in record {
                if used.iter().any(|u| u == column) || entity.contains_key(column) {
                    continue;
                }
                let Some(value) = self.present(Some(value)) else { continue };
                let name = attribute_name(column);
                if entity.contains_key(&name) || ENTITY_MEMBERS.contains(&name.as_str()) {
                    continue;
                }
                let mut attr = Map::new();
                attr.insert("type".into(), "Property".into());
                attr.insert("value".into(), typed(value, ValueType::Auto, column)?);
                if let Some(t) = &observed {
                    attr.insert("observedAt".into(), t.clone().into());
                }
                entity.insert(name, Value::Object(attr));
            }
        }
        Ok(entity)
    }

    fn entity_id(&self, raw: &str) -> Result<String, String> {
        let id = if raw.contains(':') && check_uri(raw, "").is_ok() {
            raw.to_owned()
        } else {
            let prefix = match &self.id_prefix {
                Some(p) => p.clone(),
                None => format!("urn:ngsi-ld:{}:", self.entity_type()),
            };
            format!("{prefix}{}", raw.replace(|c: char| c.is_whitespace() || c.is_control(), "_"))
        };
        check_uri(&id, "the entity id").map_err(|e| e.detail)?;
        Ok(id)
    }

    fn auto_observed(&self, record: &Record) -> Option<&'static str> {
        if !self.attributes.is_empty() && !self.other_columns {
            return None;
        }
        OBSERVED_NAMES.iter().copied().find(|n| record.contains_key(*n))
    }

    /// The location's attribute name, its geometry (None: the cells are empty) and the columns
    /// it read.
    fn location(&self, record: &Record) -> Result<Option<Placed>, String> {
        let location = match &self.location {
            Some(l) => l.clone(),
            None if self.attributes.is_empty() || self.other_columns => {
                let lat = LAT_NAMES.iter().find(|n| record.contains_key(**n));
                let lon = LON_NAMES.iter().find(|n| record.contains_key(**n));
                match (lat, lon) {
                    (Some(lat), Some(lon)) => {
                        Location { lat: Some((*lat).to_owned()), lon: Some((*lon).to_owned()), ..Location::default() }
                    }
                    _ if record.get("geometry").is_some_and(Value::is_object) => {
                        Location { geojson: Some("geometry".to_owned()), ..Location::default() }
                    }
                    _ => return Ok(None),
                }
            }
            None => return Ok(None),
        };
        let name = location.name.clone().unwrap_or_else(|| "location".to_owned());
        let (value, from) = match (&location.lat, &location.lon, &location.wkt) {
            (Some(lat), Some(lon), _) => {
                let value = match (self.present(lookup(record, lat)), self.present(lookup(record, lon))) {
                    (None, None) => None,
                    (Some(y), Some(x)) => {
                        let (y, x) = (coordinate(y, lat, 90.0)?, coordinate(x, lon, 180.0)?);
                        Some(json!({"type": "Point", "coordinates": [x, y]}))
                    }
                    _ => return Err(format!("the location needs both {lat:?} and {lon:?}")),
                };
                (value, vec![lat.clone(), lon.clone()])
            }
            (_, _, Some(wkt)) => {
                (self.present(lookup(record, wkt)).map(|v| geometry(v, wkt)).transpose()?, vec![wkt.clone()])
            }
            _ => {
                let path = location.geojson.clone().unwrap_or_else(|| "geometry".to_owned());
                (self.present(lookup(record, &path)).map(|v| geometry(v, &path)).transpose()?, vec![path])
            }
        };
        Ok(Some((name, value, from)))
    }
}

/// A location's attribute name, its geometry (None: empty cells) and the columns it read.
type Placed = (String, Option<Value>, Vec<String>);

/// Entity members a column must not become.
const ENTITY_MEMBERS: &[&str] = &["id", "type", "@context", "scope", "createdAt", "modifiedAt", "@id", "@type"];

/// A column name as an attribute name: characters NGSI-LD names may not hold become `_`.
pub fn attribute_name(column: &str) -> String {
    if is_valid_name(column) {
        return column.to_owned();
    }
    let name: String = column.trim().chars().map(|c| if is_valid_name(&c.to_string()) { c } else { '_' }).collect();
    let name = name.trim_start_matches('@').to_owned();
    if name.is_empty() {
        "_".to_owned()
    } else {
        name
    }
}

/// The value at `path`: the field of that exact name, else the dotted path into nested objects
/// (a numeric segment indexes an array).
pub fn lookup<'a>(record: &'a Record, path: &str) -> Option<&'a Value> {
    if let Some(v) = record.get(path) {
        return Some(v);
    }
    let mut parts = path.split('.');
    let mut value = record.get(parts.next()?)?;
    for part in parts {
        value = match value {
            Value::Object(m) => m.get(part)?,
            Value::Array(a) => a.get(part.parse::<usize>().ok()?)?,
            _ => return None,
        };
    }
    Some(value)
}

impl Mapping {
    /// A value that counts as given: not null, not an empty or blank text, not a null value.
    fn present<'a>(&self, value: Option<&'a Value>) -> Option<&'a Value> {
        match value {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) if s.trim().is_empty() || self.null_values.iter().any(|n| n == s.trim()) => None,
            v => v,
        }
    }

    /// The DateTime at `path`, as the hub writes times; None when the cell is empty.
    fn datetime_at(&self, record: &Record, path: &str) -> Result<Option<String>, String> {
        let Some(value) = self.present(lookup(record, path)) else { return Ok(None) };
        let text = value.as_str().map(str::trim).unwrap_or_default();
        let t = self.datetime(text).ok_or_else(|| {
            format!("column {path:?}: {value} is not a DateTime (RFC 3339, e.g. 2024-05-01T09:00:00Z)")
        })?;
        Ok(Some(t))
    }

    /// An RFC 3339 time, or one of the common local forms (`2024-05-01 09:00[:00]`,
    /// `202405010900`) in the mapping's timezone.
    fn datetime(&self, text: &str) -> Option<String> {
        if let Some(t) = parse_datetime(text) {
            return Some(format_time(t));
        }
        let offset = match self.timezone.as_deref() {
            Some(tz) => {
                chrono::DateTime::parse_from_rfc3339(&format!("2000-01-01T00:00:00{tz}")).ok()?.offset().to_owned()
            }
            None => chrono::FixedOffset::east_opt(0)?,
        };
        let local = [
            "%Y-%m-%d %H:%M:%S",
            "%Y-%m-%d %H:%M",
            "%Y-%m-%dT%H:%M",
            "%Y%m%d%H%M%S",
            "%Y%m%d%H%M",
            "%Y/%m/%d %H:%M:%S",
            "%Y/%m/%d %H:%M",
        ]
        .iter()
        .find_map(|f| chrono::NaiveDateTime::parse_from_str(text, f).ok())?;
        let t = local.and_local_timezone(offset).single()?;
        parse_datetime(&t.to_rfc3339()).map(format_time)
    }
}

/// A cell read as `kind`; JSON values (not text) are kept as they are, checked against `kind`.
fn typed(value: &Value, kind: ValueType, column: &str) -> Result<Value, String> {
    let text = match value {
        Value::String(s) => s.trim(),
        other => {
            let fits = match kind {
                ValueType::Number | ValueType::Integer => other.is_number(),
                ValueType::Boolean => other.is_boolean(),
                _ => true,
            };
            return match fits {
                true if kind == ValueType::Integer && other.as_i64().is_none() => {
                    Err(format!("column {column:?}: {other} is not an integer"))
                }
                true => Ok(other.clone()),
                false => Err(format!("column {column:?}: {other} is not a {}", kind_name(kind))),
            };
        }
    };
    let number = || -> Option<Value> {
        if let Ok(i) = text.parse::<i64>() {
            return Some(i.into());
        }
        let f = text.parse::<f64>().ok().filter(|f| f.is_finite())?;
        serde_json::Number::from_f64(f).map(Value::Number)
    };
    let boolean = || match text {
        "true" | "TRUE" | "True" => Some(Value::Bool(true)),
        "false" | "FALSE" | "False" => Some(Value::Bool(false)),
        _ => None,
    };
    let bad = || format!("column {column:?}: {text:?} is not a {}", kind_name(kind));
    match kind {
        ValueType::Auto => Ok(number().or_else(boolean).unwrap_or_else(|| text.into())),
        ValueType::Number => number().ok_or_else(bad),
        ValueType::Integer => text.parse::<i64>().map(Value::from).map_err(|_| bad()),
        ValueType::Boolean => boolean().ok_or_else(bad),
        ValueType::String => Ok(text.into()),
        ValueType::DateTime => {
            let t = parse_datetime(text).ok_or_else(bad)?;
            Ok(json!({"@type": "DateTime", "@value": format_time(t)}))
        }
        ValueType::Json => serde_json::from_str(text).map_err(|e| format!("column {column:?}: not JSON ({e})")),
    }
}

fn kind_name(kind: ValueType) -> &'static str {
    match kind {
        ValueType::Auto | ValueType::String => "text",
        ValueType::Number => "number",
        ValueType::Integer => "integer",
        ValueType::Boolean => "boolean (true or false)",
        ValueType::DateTime => "DateTime (RFC 3339, e.g. 2024-05-01T09:00:00Z)",
        ValueType::Json => "JSON value",
    }
}

/// A latitude or longitude within ±`limit`.
fn coordinate(value: &Value, column: &str, limit: f64) -> Result<f64, String> {
    let n = match value {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.trim().parse::<f64>().ok(),
        _ => None,
    };
    match n {
        Some(n) if n.is_finite() && n.abs() <= limit => Ok(n),
        _ => Err(format!("column {column:?}: {value} is not a coordinate between -{limit} and {limit}")),
    }
}

/// A geometry from a GeoJSON object, GeoJSON text or WKT text, checked.
fn geometry(value: &Value, column: &str) -> Result<Value, String> {
    let geometry = match value {
        Value::Object(_) => value.clone(),
        Value::String(s) if s.trim_start().starts_with('{') => {
            serde_json::from_str(s).map_err(|e| format!("column {column:?}: not GeoJSON ({e})"))?
        }
        Value::String(s) => crate::wkt::parse(s).map_err(|e| format!("column {column:?}: {e}"))?,
        other => return Err(format!("column {column:?}: {other} is not a geometry (GeoJSON or WKT)")),
    };
    ngsild_core::expand::validate_geometry(&geometry).map_err(|e| format!("column {column:?}: {e}"))?;
    Ok(geometry)
}

/// An NGSI-LD entity given as such (an NGSI-LD JSON array's item): checked to have an id, with
/// `default_type` when it has no type.
pub fn pass_through(mut record: Record, default_type: Option<&str>) -> Result<Map<String, Value>, String> {
    match record.get("id").and_then(Value::as_str) {
        Some(id) => check_uri(id, "the entity id").map_err(|e| e.detail)?,
        None => return Err("the entity has no id".into()),
    }
    if !record.contains_key("type") {
        let Some(t) = default_type else { return Err("the entity has no type: give --type".into()) };
        record.insert("type".into(), t.into());
    }
    Ok(record)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(pairs: &[(&str, &str)]) -> Record {
        pairs.iter().map(|(k, v)| ((*k).to_owned(), Value::String((*v).to_owned()))).collect()
    }

    fn auto(t: &str, id: &str) -> Mapping {
        Mapping::default().complete(Some(t), Some(id)).unwrap()
    }

    #[test]
    fn without_attributes_every_column_is_a_property_with_a_guessed_type() {
        let m = auto("AirQualityObserved", "station");
        let e = m
            .map(&row(&[
                ("station", "S 1"),
                ("pm10", "41"),
                ("no2", "0.021"),
                ("ok", "true"),
                ("name", "Jongno"),
                ("lat", "37.57"),
                ("lon", "126.98"),
                ("observedAt", "2024-05-01T09:00:00+09:00"),
                ("empty", ""),
                ("wind speed", "3"),
            ]))
            .unwrap();
        let t = "2024-05-01T00:00:00.000000Z";
        assert_eq!(
            Value::Object(e),
            json!({
                "id": "urn:ngsi-ld:AirQualityObserved:S_1",
                "type": "AirQualityObserved",
                "location": {"type": "GeoProperty", "value": {"type": "Point", "coordinates": [126.98, 37.57]}},
                "pm10": {"type": "Property", "value": 41, "observedAt": t},
                "no2": {"type": "Property", "value": 0.021, "observedAt": t},
                "ok": {"type": "Property", "value": true, "observedAt": t},
                "name": {"type": "Property", "value": "Jongno", "observedAt": t},
                "wind_speed": {"type": "Property", "value": 3, "observedAt": t},
            })
        );
    }

    #[test]
    fn listed_attributes_carry_their_type_unit_and_relationships() {
        let m = Mapping::parse(
            r#"
            type = "ParkingSpot"
            id = "code"
            idPrefix = "urn:spot:"
            observedAt = "at"
            location = { wkt = "geom" }
            [[attributes]]
            name = "occupancy"
            column = "occ"
            valueType = "number"
            unitCode = "P1"
            [[attributes]]
            name = "refParkingSite"
            column = "site"
            type = "Relationship"
            "#,
        )
        .unwrap()
        .complete(None, None)
        .unwrap();
        let e = m
            .map(&row(&[
                ("code", "7"),
                ("occ", "0.5"),
                ("site", "urn:site:1"),
                ("geom", "POINT (127 37.5)"),
                ("at", "2024-05-01T00:00:00Z"),
                ("ignored", "x"),
            ]))
            .unwrap();
        assert_eq!(
            Value::Object(e),
            json!({
                "id": "urn:spot:7",
                "type": "ParkingSpot",
                "location": {"type": "GeoProperty", "value": {"type": "Point", "coordinates": [127.0, 37.5]}},
                "occupancy": {"type": "Property", "value": 0.5, "unitCode": "P1", "observedAt": "2024-05-01T00:00:00.000000Z"},
                "refParkingSite": {"type": "Relationship", "object": "urn:site:1", "observedAt": "2024-05-01T00:00:00.000000Z"},
            })
        );
    }

    #[test]
    fn a_bad_cell_fails_its_row_naming_the_column() {
        let m = Mapping {
            attributes: vec![AttributeMap {
                name: "pm10".into(),
                from: None,
                kind: Kind::Property,
                value_type: ValueType::Number,
                unit_code: None,
                observed_at: None,
            }],
            ..Mapping::default()
        }
        .complete(Some("T"), Some("id"))
        .unwrap();
        assert_eq!(
            m.map(&row(&[("id", "1"), ("pm10", "high")])).unwrap_err(),
            "column \"pm10\": \"high\" is not a number"
        );
        assert_eq!(m.map(&row(&[("id", ""), ("pm10", "1")])).unwrap_err(), "no id: \"id\" is empty");
        assert_eq!(m.map(&row(&[("pm10", "1")])).unwrap_err(), "no id: the record has no \"id\"");
        let auto = auto("T", "id");
        assert_eq!(
            auto.map(&row(&[("id", "1"), ("lat", "91"), ("lon", "0")])).unwrap_err(),
            "column \"lat\": \"91\" is not a coordinate between -90 and 90"
        );
        assert!(m.map(&row(&[("id", "1"), ("pm10", "")])).unwrap().get("pm10").is_none(), "empty cells are left out");
    }

    #[test]
    fn nested_paths_and_json_values_read_as_they_are() {
        let m = Mapping::parse(r#"{"type": "Station", "id": "properties.code", "attributes": [{"name": "name", "path": "properties.info.name"}, {"name": "level", "from": "properties.level", "valueType": "integer"}]}"#)
            .unwrap()
            .complete(None, None)
            .unwrap();
        let record: Record =
            serde_json::from_value(json!({"properties": {"code": 12, "info": {"name": "Gangnam"}, "level": 3}}))
                .unwrap();
        let e = m.map(&record).unwrap();
        assert_eq!(e["id"], "urn:ngsi-ld:Station:12");
        assert_eq!(e["name"]["value"], "Gangnam");
        assert_eq!(e["level"]["value"], 3);
        let record: Record = serde_json::from_value(json!({"properties": {"code": 1, "level": 2.5}})).unwrap();
        assert_eq!(m.map(&record).unwrap_err(), "column \"properties.level\": 2.5 is not an integer");
    }

    #[test]
    fn local_times_read_in_the_mappings_timezone_and_null_values_are_empty() {
        let m = Mapping::parse(r#"{"type": "T", "id": "stationName", "observedAt": "dataTime", "timezone": "+09:00", "nullValues": ["-"], "attributes": [{"name": "pm10", "from": "pm10Value", "valueType": "number"}]}"#)
            .unwrap()
            .complete(None, None)
            .unwrap();
        let e =
            m.map(&row(&[("stationName", "Jongno"), ("pm10Value", "41"), ("dataTime", "2024-05-01 09:00")])).unwrap();
        assert_eq!(e["pm10"]["observedAt"], "2024-05-01T00:00:00.000000Z");
        let e =
            m.map(&row(&[("stationName", "Jongno"), ("pm10Value", "-"), ("dataTime", "2024-05-01 09:00")])).unwrap();
        assert!(e.get("pm10").is_none(), "`-` is no value");
        assert!(m
            .map(&row(&[("stationName", "J"), ("dataTime", "May 1st")]))
            .unwrap_err()
            .contains("is not a DateTime"));
    }

    #[test]
    fn an_incomplete_mapping_says_what_to_add() {
        assert_eq!(
            Mapping::default().complete(None, Some("id")).unwrap_err(),
            "no entity type: give --type or \"type\" in the mapping"
        );
        assert_eq!(
            Mapping::default().complete(Some("T"), None).unwrap_err(),
            "no id column: give --id COLUMN or \"id\" in the mapping"
        );
        let both = Mapping {
            location: Some(Location { wkt: Some("a".into()), geojson: Some("b".into()), ..Location::default() }),
            ..Mapping::default()
        };
        assert_eq!(
            both.complete(Some("T"), Some("id")).unwrap_err(),
            "the location needs exactly one of: lat and lon, wkt, geojson"
        );
        assert!(Mapping::parse("{\"tpye\": \"T\"}").unwrap_err().contains("unknown field `tpye`"));
    }

    proptest::proptest! {
        #[test]
        fn any_row_maps_or_fails_with_a_reason_and_maps_to_a_valid_entity(
            id in "[a-zA-Z0-9 :_-]{0,12}", a in ".{0,12}", b in "-?[0-9]{1,5}(\\.[0-9]{1,3})?"
        ) {
            let m = auto("T", "id");
            match m.map(&row(&[("id", &id), ("a", &a), ("b", &b)])) {
                Ok(entity) => {
                    let (e, _) = ngsild_core::expand::expand_entity(&entity, &ngsild_jsonld::Context::core())
                        .map_err(|e| proptest::test_runner::TestCaseError::fail(e.detail))?;
                    proptest::prop_assert!(e.id.contains(':'));
                    proptest::prop_assert!(e.attrs.keys().any(|k| k.ends_with("/b")));
                }
                Err(reason) => proptest::prop_assert!(!reason.is_empty()),
            }
        }
    }
}
