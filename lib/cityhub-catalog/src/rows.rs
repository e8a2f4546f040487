//! The lines of a download (pure): entities (current state) and history instances as CSV,
//! GeoJSON features and NDJSON, in the keyValues form with names of the core @context.
//!
//! A download is written page by page, so each format is a head, items, and a tail:
//! CSV's header comes from the first page (the dataset's `attrs` when it names them, else the
//! attributes of the first page's entities; attributes first seen later go to the last column,
//! `other`, as a JSON object); GeoJSON is one FeatureCollection whose features are written one
//! after the other.

use ngsild_core::render::{render_entity, Format, RenderOptions};
use ngsild_core::temporal::Instance;
use ngsild_core::Entity;
use ngsild_jsonld::Context;
use serde_json::{json, Map, Value};

use crate::dataset::{DownloadFormat, Part};

/// The history columns of CSV, in order.
pub const HISTORY_COLUMNS: &[&str] = &[
    "entityId",
    "entityType",
    "attribute",
    "datasetId",
    "instanceId",
    "observedAt",
    "modifiedAt",
    "unitCode",
    "value",
];

/// A CSV field, quoted when it must be.
pub fn csv_field(text: &str) -> String {
    if text.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", text.replace('"', "\"\""))
    } else {
        text.to_owned()
    }
}

fn cell(value: Option<&Value>) -> String {
    match value {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(s)) => csv_field(s),
        Some(other) => csv_field(&other.to_string()),
    }
}

fn line(fields: impl IntoIterator<Item = String>) -> String {
    let mut out = fields.into_iter().collect::<Vec<_>>().join(",");
    out.push_str("\r\n");
    out
}

/// Writes one download: its head once, then its items, then its tail.
pub struct Writer {
    format: DownloadFormat,
    part: Part,
    ctx: std::sync::Arc<Context>,
    opts: RenderOptions,
    /// CSV (current): the attribute columns, fixed by the first page.
    columns: Option<Vec<String>>,
    /// GeoJSON: whether a feature was written (the next needs a comma).
    written: bool,
}

impl Writer {
    /// `attrs`: the dataset's projection (expanded names; empty: every attribute).
    pub fn new(format: DownloadFormat, part: Part, attrs: &[String]) -> Writer {
        let mut opts = RenderOptions { format: Format::KeyValues, ..RenderOptions::default() };
        if !attrs.is_empty() {
            opts.projection.only = Some(attrs.to_vec());
        }
        let ctx = ngsild_jsonld::core_context();
        let columns = match (part, attrs.is_empty()) {
            (Part::Current, false) => Some(attrs.iter().map(|a| ctx.compact_iri(a).into_owned()).collect()),
            _ => None,
        };
        Writer { format, part, ctx, opts, columns, written: false }
    }

    /// A head for GeoJSON; CSV writes its header with its first page ([`Writer::entities`]).
    pub fn head(&mut self) -> String {
        match (self.format, self.part) {
            (DownloadFormat::GeoJson, _) => "{\"type\":\"FeatureCollection\",\"features\":[\n".to_owned(),
            (DownloadFormat::Csv, Part::History) => line(HISTORY_COLUMNS.iter().map(|c| c.to_string())),
            _ => String::new(),
        }
    }

    pub fn tail(&mut self) -> String {
        let mut out = String::new();
        if self.format == DownloadFormat::Csv && self.part == Part::Current && !self.written {
            // An empty download still has its header.
            out.push_str(&self.entities(&[]));
        }
        if self.format == DownloadFormat::GeoJson {
            out.push_str("\n]}\n");
        }
        out
    }

    fn header(&mut self, first: &[Map<String, Value>]) -> String {
        let mut columns: Vec<String> = Vec::new();
        for e in first {
            for name in e.keys() {
                if !matches!(name.as_str(), "id" | "type") && !columns.contains(name) {
                    columns.push(name.clone());
                }
            }
        }
        let header =
            line(["id", "type"].iter().map(|s| s.to_string()).chain(columns.iter().cloned()).chain(["other".into()]));
        self.columns = Some(columns);
        header
    }

    /// One page of entities (current state).
    pub fn entities(&mut self, page: &[Entity]) -> String {
        let rendered: Vec<Map<String, Value>> = page.iter().map(|e| render_entity(e, &self.ctx, &self.opts)).collect();
        let mut out = String::new();
        match self.format {
            DownloadFormat::Csv => {
                if self.columns.is_none() {
                    out.push_str(&self.header(&rendered));
                } else if !self.written {
                    let given = self.columns.clone().unwrap_or_default();
                    out.push_str(&line(["id".into(), "type".into()].into_iter().chain(given).chain(["other".into()])));
                }
                self.written = true;
                let columns = self.columns.clone().unwrap_or_default();
                for mut e in rendered {
                    let mut fields = vec![cell(e.get("id")), cell(e.get("type"))];
                    for c in &columns {
                        fields.push(cell(e.get(c)));
                    }
                    e.remove("id");
                    e.remove("type");
                    e.retain(|k, _| !columns.contains(k));
                    fields.push(if e.is_empty() { String::new() } else { csv_field(&Value::Object(e).to_string()) });
                    out.push_str(&line(fields));
                }
            }
            DownloadFormat::NdJson => {
                for e in rendered {
                    out.push_str(&Value::Object(e).to_string());
                    out.push('\n');
                }
            }
            DownloadFormat::GeoJson => {
                for mut e in rendered {
                    let id = e.remove("id").unwrap_or(Value::Null);
                    let geometry = e.remove("location").filter(Value::is_object).unwrap_or(Value::Null);
                    let feature = json!({"type": "Feature", "id": id, "geometry": geometry, "properties": e});
                    self.feature(&mut out, feature);
                }
            }
        }
        out
    }

    fn feature(&mut self, out: &mut String, feature: Value) {
        if self.written {
            out.push_str(",\n");
        }
        self.written = true;
        out.push_str(&feature.to_string());
    }

    /// The instances of one entity's attribute (history).
    pub fn instances(&mut self, entity_id: &str, types: &[String], attr: &str, instances: &[Instance]) -> String {
        let types: Vec<String> = types.iter().map(|t| self.ctx.compact_iri(t).into_owned()).collect();
        let type_text = types.join(",");
        let name = self.ctx.compact_iri(attr).into_owned();
        let mut out = String::new();
        for i in instances {
            let a = &i.attribute;
            let value = ngsild_core::render::render_attribute(a, &self.ctx, &self.opts);
            let record = json!({
                "entityId": entity_id, "entityType": type_text, "attribute": name, "datasetId": a.dataset_id,
                "instanceId": i.instance_id, "observedAt": a.observed_at, "modifiedAt": a.modified_at,
                "unitCode": a.unit_code, "value": value,
            });
            match self.format {
                DownloadFormat::Csv => out.push_str(&line(HISTORY_COLUMNS.iter().map(|c| cell(record.get(*c))))),
                DownloadFormat::NdJson => {
                    out.push_str(&record.to_string());
                    out.push('\n');
                }
                DownloadFormat::GeoJson => {
                    let geometry = match a.kind {
                        ngsild_core::model::AttributeKind::GeoProperty => value.clone(),
                        _ => Value::Null,
                    };
                    let mut properties = record.as_object().cloned().unwrap_or_default();
                    properties.remove("entityId");
                    let feature = json!({"type": "Feature", "id": i.instance_id, "geometry": geometry,
                        "properties": {"entityId": entity_id, "record": properties}});
                    self.feature(&mut out, feature);
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ngsild_core::expand::expand_entity;

    fn entities() -> Vec<Entity> {
        let ctx = ngsild_jsonld::core_context();
        [
            json!({"id": "urn:a:1", "type": "Spot", "name": "A, \"one\"", "location": {"type": "GeoProperty", "value": {"type": "Point", "coordinates": [1, 2]}}}),
            json!({"id": "urn:a:2", "type": "Spot", "name": "B", "extra": 3}),
        ]
        .iter()
        .map(|b| expand_entity(b.as_object().unwrap(), &ctx).unwrap().0)
        .collect()
    }

    #[test]
    fn csv_takes_its_columns_from_the_first_page_and_quotes() {
        let all = entities();
        let mut w = Writer::new(DownloadFormat::Csv, Part::Current, &[]);
        let mut out = w.head();
        out.push_str(&w.entities(&all[..1]));
        out.push_str(&w.entities(&all[1..]));
        out.push_str(&w.tail());
        let lines: Vec<&str> = out.split("\r\n").collect();
        assert_eq!(lines[0], "id,type,name,location,other");
        assert!(lines[1].starts_with("urn:a:1,Spot,\"A, \"\"one\"\"\",\"{"), "{}", lines[1]);
        assert_eq!(lines[2], "urn:a:2,Spot,B,,\"{\"\"extra\"\":3}\"");
    }

    #[test]
    fn geojson_is_one_feature_collection() {
        let mut w = Writer::new(DownloadFormat::GeoJson, Part::Current, &[]);
        let all = entities();
        let text = format!("{}{}{}{}", w.head(), w.entities(&all[..1]), w.entities(&all[1..]), w.tail());
        let v: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["features"].as_array().unwrap().len(), 2);
        assert_eq!(v["features"][0]["geometry"]["type"], "Point");
        assert_eq!(v["features"][1]["geometry"], Value::Null);
    }
}
