//! Readers: a source's bytes into records, one at a time, each with where it starts (line) and
//! where the next one does ([`Cursor`], what a checkpoint keeps to resume from).
//!
//! - CSV (the header row names the fields; a row with another number of fields, or not UTF-8,
//!   fails alone);
//! - NDJSON (one JSON object per line; blank lines skipped);
//! - a GeoJSON FeatureCollection (each feature's `properties`, its `geometry` under `geometry` and
//!   its `id` under `id` unless the properties have them) and an NGSI-LD JSON array (each item as
//!   it is): both streamed — serde's deserializer walks the document and hands one element at a
//!   time to a visitor, so a 1 GB file never is one `Value`; the line of each element is counted
//!   from the bytes the deserializer consumed;
//! - XML (the elements at a path, each child element a field: data.go.kr's
//!   `response/body/items/item`), streamed with quick-xml;
//! - a JSON document already in memory (a poller's answer): the records at a dotted path.
//!
//! A record that cannot be read is handed over as `Err(reason)` with its line, and reading goes
//! on; a source that cannot be read on (an I/O error, JSON or XML broken in its structure) ends
//! with `Err`.

use std::cell::Cell;
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom};
use std::rc::Rc;

use serde::de::{DeserializeSeed, Error as _, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::{Map, Value};

use crate::mapping::{lookup, Record};

/// The formats a source may be in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    Csv,
    NdJson,
    GeoJson,
    /// An NGSI-LD JSON array of entities.
    NgsiLd,
    /// A JSON document whose records are at the mapping's `items` path (pollers).
    Json,
    Xml,
}

impl Format {
    pub const NAMES: &'static str = "csv, ndjson, geojson, ngsild, json, xml";

    pub fn parse(name: &str) -> Option<Format> {
        Some(match name.to_ascii_lowercase().as_str() {
            "csv" => Format::Csv,
            "ndjson" | "jsonl" => Format::NdJson,
            "geojson" => Format::GeoJson,
            "ngsild" | "ngsi-ld" => Format::NgsiLd,
            "json" => Format::Json,
            "xml" => Format::Xml,
            _ => return None,
        })
    }

    /// A file's format from its extension (`.json` is an NGSI-LD array).
    pub fn of_path(path: &str) -> Option<Format> {
        let ext = path.rsplit_once('.')?.1.to_ascii_lowercase();
        match ext.as_str() {
            "json" | "jsonld" => Some(Format::NgsiLd),
            other => Format::parse(other),
        }
    }
}

/// Where the next record starts: how many came before it, its byte offset and its line (1-based).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cursor {
    pub records: u64,
    pub byte: u64,
    pub line: u64,
}

impl Default for Cursor {
    fn default() -> Self {
        Cursor { records: 0, byte: 0, line: 1 }
    }
}

/// One record as read: the line it starts on (for a JSON element, the line of its first
/// character), the cursor just past it, and the record or why it could not be read.
#[derive(Debug, Clone, PartialEq)]
pub struct Item {
    pub line: u64,
    pub after: Cursor,
    pub record: Result<Record, String>,
}

/// Returned by a callback to stop reading (the caller keeps its own reason).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stop;

/// What stopped a reader early: the callback, or a source that cannot be read on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ended {
    Stopped,
    Broken(String),
}

type Each<'a> = dyn FnMut(Item) -> Result<(), Stop> + 'a;

/// Reads every record of a seekable source from `from` on (a checkpoint's cursor, or the start).
pub fn read<R: Read + Seek>(format: Format, input: R, from: Cursor, each: &mut Each<'_>) -> Result<(), Ended> {
    match format {
        Format::Csv => csv(input, from, each),
        Format::NdJson => ndjson(input, from, each),
        Format::GeoJson | Format::NgsiLd | Format::Json => streamed_json(input, from, None, each),
        Format::Xml => Err(Ended::Broken("XML is read with read_xml and the mapping's items path".into())),
    }
}

fn broken(e: impl std::fmt::Display) -> Ended {
    Ended::Broken(e.to_string())
}

fn csv<R: Read + Seek>(input: R, from: Cursor, each: &mut Each<'_>) -> Result<(), Ended> {
    let mut reader = csv::ReaderBuilder::new().flexible(false).from_reader(input);
    let headers = reader.headers().map_err(|e| broken(format!("the CSV header cannot be read: {e}")))?.clone();
    if headers.is_empty() {
        return Err(broken("the CSV has no header row"));
    }
    if from.byte > 0 {
        let mut at = csv::Position::new();
        at.set_byte(from.byte).set_line(from.line).set_record(from.records + 1);
        reader.seek(at).map_err(|e| broken(format!("cannot resume at byte {}: {e}", from.byte)))?;
    }
    let mut row = csv::StringRecord::new();
    let mut records = from.records;
    loop {
        let start = reader.position().line();
        let outcome = reader.read_record(&mut row);
        let record = match outcome {
            Ok(false) => return Ok(()),
            Ok(true) => Ok(headers.iter().zip(row.iter()).map(|(h, v)| (h.to_owned(), Value::from(v))).collect()),
            Err(e) => match e.kind() {
                csv::ErrorKind::UnequalLengths { expected_len, len, .. } => {
                    Err(format!("the row has {len} fields, the header {expected_len}"))
                }
                csv::ErrorKind::Utf8 { .. } => Err("the row is not UTF-8 text".to_owned()),
                csv::ErrorKind::Io(_) => return Err(broken(format!("reading line {start}: {e}"))),
                _ => Err(e.to_string()),
            },
        };
        let line = row.position().map(csv::Position::line).filter(|_| record.is_ok()).unwrap_or(start);
        records += 1;
        let at = reader.position();
        let after = Cursor { records, byte: at.byte(), line: at.line() };
        each(Item { line, after, record }).map_err(|_| Ended::Stopped)?;
    }
}

fn ndjson<R: Read + Seek>(mut input: R, from: Cursor, each: &mut Each<'_>) -> Result<(), Ended> {
    input.seek(SeekFrom::Start(from.byte)).map_err(|e| broken(format!("cannot resume at byte {}: {e}", from.byte)))?;
    let mut input = BufReader::with_capacity(1 << 16, input);
    let (mut byte, mut line, mut records) = (from.byte, from.line, from.records);
    let mut buf = Vec::new();
    loop {
        buf.clear();
        let n = input.read_until(b'\n', &mut buf).map_err(|e| broken(format!("reading line {line}: {e}")))?;
        if n == 0 {
            return Ok(());
        }
        byte += n as u64;
        let this = line;
        line += 1;
        let text = buf.trim_ascii();
        if text.is_empty() {
            continue;
        }
        records += 1;
        let record = match serde_json::from_slice::<Value>(text) {
            Ok(Value::Object(m)) => Ok(m),
            Ok(_) => Err("the line is not a JSON object".to_owned()),
            Err(e) => Err(format!("the line is not JSON: {e}")),
        };
        each(Item { line: this, after: Cursor { records, byte, line }, record }).map_err(|_| Ended::Stopped)?;
    }
}

/// Counts the bytes and newlines the deserializer takes, for lines and cursors.
struct Counting<R> {
    inner: R,
    bytes: Rc<Cell<u64>>,
    lines: Rc<Cell<u64>>,
}

impl<R: Read> Read for Counting<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.bytes.set(self.bytes.get() + n as u64);
        let newlines = buf[..n].iter().filter(|b| **b == b'\n').count() as u64;
        self.lines.set(self.lines.get() + newlines);
        Ok(n)
    }
}

const STOP: &str = "cityhub-import: stopped by the caller";

/// What the visitors share: the callback, where to start, and the counters.
struct Walk<'a, 'b> {
    each: &'a mut Each<'b>,
    skip: u64,
    records: u64,
    bytes: Rc<Cell<u64>>,
    lines: Rc<Cell<u64>>,
    /// Whether elements are GeoJSON features (else records as they are).
    features: bool,
    /// The top-level object had a `features` array.
    saw_features: bool,
}

/// A JSON array of records, or a GeoJSON FeatureCollection, streamed element by element.
/// `items`: only for in-memory use; streamed sources have their records at the top.
fn streamed_json<R: Read>(input: R, from: Cursor, _items: Option<&str>, each: &mut Each<'_>) -> Result<(), Ended> {
    let bytes = Rc::new(Cell::new(0));
    let lines = Rc::new(Cell::new(0));
    let counting =
        Counting { inner: BufReader::with_capacity(1 << 16, input), bytes: bytes.clone(), lines: lines.clone() };
    let mut de = serde_json::Deserializer::from_reader(counting);
    let mut walk = Walk { each, skip: from.records, records: 0, bytes, lines, features: false, saw_features: false };
    let outcome = (&mut de).deserialize_any(Top(&mut walk)).and_then(|()| de.end());
    match outcome {
        Err(e) if e.to_string().starts_with(STOP) => Err(Ended::Stopped),
        Err(e) => Err(broken(format!("the JSON cannot be read on: {e}"))),
        Ok(()) if walk.features && !walk.saw_features => {
            Err(broken("the JSON object is not a GeoJSON FeatureCollection: it has no \"features\" array"))
        }
        Ok(()) => Ok(()),
    }
}

struct Top<'w, 'a, 'b>(&'w mut Walk<'a, 'b>);

impl<'de> Visitor<'de> for Top<'_, '_, '_> {
    type Value = ();

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a JSON array of records or a GeoJSON FeatureCollection")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<(), A::Error> {
        Elements(self.0).visit_seq(seq)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        self.0.features = true;
        while let Some(key) = map.next_key::<String>()? {
            if key == "features" {
                self.0.saw_features = true;
                map.next_value_seed(Elements(&mut *self.0))?;
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        Ok(())
    }
}

struct Elements<'w, 'a, 'b>(&'w mut Walk<'a, 'b>);

impl<'de> DeserializeSeed<'de> for Elements<'_, '_, '_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for Elements<'_, '_, '_> {
    type Value = ();

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("an array")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while seq.next_element_seed(One(&mut *self.0))?.is_some() {}
        Ok(())
    }
}

struct One<'w, 'a, 'b>(&'w mut Walk<'a, 'b>);

impl<'de> DeserializeSeed<'de> for One<'_, '_, '_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        let walk = self.0;
        // The deserializer has taken the element's first character: its line is this one.
        let line = walk.lines.get() + 1;
        walk.records += 1;
        if walk.records <= walk.skip {
            IgnoredAny::deserialize(d)?;
            return Ok(());
        }
        let value = Value::deserialize(d)?;
        let record = match walk.features {
            true => feature(value),
            false => match value {
                Value::Object(m) => Ok(m),
                _ => Err("the item is not a JSON object".to_owned()),
            },
        };
        let after = Cursor { records: walk.records, byte: walk.bytes.get(), line: walk.lines.get() + 1 };
        (walk.each)(Item { line, after, record }).map_err(|_| D::Error::custom(STOP))
    }
}

/// A GeoJSON Feature as a record (see the module doc).
pub fn feature(value: Value) -> Result<Record, String> {
    let Value::Object(mut f) = value else { return Err("a feature must be a JSON object".into()) };
    match f.get("type").and_then(Value::as_str) {
        Some("Feature") => {}
        other => return Err(format!("not a GeoJSON Feature: its type is {other:?}")),
    }
    let mut record = match f.remove("properties") {
        Some(Value::Object(p)) => p,
        None | Some(Value::Null) => Map::new(),
        Some(_) => return Err("the feature's properties are not a JSON object".into()),
    };
    if let Some(g) = f.remove("geometry").filter(|g| !g.is_null()) {
        record.entry("geometry").or_insert(g);
    }
    if let Some(id) = f.remove("id") {
        record.entry("id").or_insert(id);
    }
    Ok(record)
}

/// The records of a JSON document in memory (a poller's answer): the array or object at the
/// dotted `items` path (an object is one record; data.go.kr answers one item so), else the
/// document itself, or its features when it is a GeoJSON FeatureCollection.
pub fn records_at(doc: Value, items: Option<&str>) -> Result<Vec<Result<Record, String>>, String> {
    let found = match items {
        Some(path) => {
            let Value::Object(top) = &doc else {
                return Err(format!("the document is not a JSON object, so it has no {path:?}"));
            };
            match lookup(top, path) {
                Some(v) => v.clone(),
                None => return Err(format!("the document has no {path:?}")),
            }
        }
        None => doc,
    };
    let is_collection = found.get("type").and_then(Value::as_str) == Some("FeatureCollection");
    Ok(match found {
        Value::Object(mut m) if is_collection => match m.remove("features") {
            Some(Value::Array(features)) => features.into_iter().map(feature).collect(),
            _ => return Err("the FeatureCollection has no features array".into()),
        },
        Value::Array(items) => items
            .into_iter()
            .map(|v| match v {
                Value::Object(m) => Ok(m),
                _ => Err("the item is not a JSON object".to_owned()),
            })
            .collect(),
        Value::Object(m) => vec![Ok(m)],
        // data.go.kr answers "items": "" when there are none.
        Value::Null | Value::String(_) => Vec::new(),
        other => return Err(format!("the records are {other}, not an array or object")),
    })
}

/// The elements at `items` (a dotted or `/` path of element names from the root, e.g.
/// `response.body.items.item`) of an XML document, each a record: a child element with only text
/// is a text field, one with children a nested object, repeated names an array; attributes are
/// fields named `@name`.
pub fn read_xml<R: BufRead>(input: R, items: &str, each: &mut Each<'_>) -> Result<(), Ended> {
    use quick_xml::events::Event;
    let path: Vec<&str> = items.split(['.', '/']).filter(|s| !s.is_empty()).collect();
    if path.is_empty() {
        return Err(broken("XML needs the path of its records (the mapping's items), e.g. response.body.items.item"));
    }
    let mut reader = quick_xml::Reader::from_reader(input);
    let mut stack: Vec<String> = Vec::new();
    // The record being read: a frame per open element inside it (name, fields, text).
    let mut frames: Vec<(String, Map<String, Value>, String)> = Vec::new();
    let mut buf = Vec::new();
    let mut records = 0u64;
    let mut start_line = 1u64;
    let mut lines = 1u64;
    loop {
        let before = reader.buffer_position();
        let event = reader.read_event_into(&mut buf).map_err(|e| broken(format!("the XML cannot be read on: {e}")))?;
        let _ = before;
        match event {
            Event::Start(e) => {
                let name = String::from_utf8_lossy(e.local_name().as_ref()).into_owned();
                stack.push(name.clone());
                if !frames.is_empty() || stack.len() == path.len() && stack.iter().zip(&path).all(|(a, b)| a == b) {
                    if frames.is_empty() {
                        start_line = lines;
                    }
                    let mut fields = Map::new();
                    for a in e.attributes().flatten() {
                        let key = format!("@{}", String::from_utf8_lossy(a.key.local_name().as_ref()));
                        let value = a.unescape_value().map(|v| v.into_owned()).unwrap_or_default();
                        fields.insert(key, Value::String(value));
                    }
                    frames.push((name, fields, String::new()));
                }
            }
            Event::Empty(e) => {
                if let Some((_, fields, _)) = frames.last_mut() {
                    let name = String::from_utf8_lossy(e.local_name().as_ref()).into_owned();
                    add_field(fields, name, Value::String(String::new()));
                }
            }
            Event::Text(t) => {
                let raw: &[u8] = t.as_ref();
                lines += raw.iter().filter(|b| **b == b'\n').count() as u64;
                if let Some((_, _, text)) = frames.last_mut() {
                    let decoded = t.decode().map_err(|e| broken(format!("the XML text cannot be read: {e}")))?;
                    let unescaped = quick_xml::escape::unescape(&decoded)
                        .map(|c| c.into_owned())
                        .unwrap_or_else(|_| decoded.into_owned());
                    text.push_str(&unescaped);
                }
            }
            Event::CData(t) => {
                if let Some((_, _, text)) = frames.last_mut() {
                    text.push_str(&String::from_utf8_lossy(t.as_ref()));
                }
            }
            Event::GeneralRef(r) => {
                if let Some((_, _, text)) = frames.last_mut() {
                    let name = String::from_utf8_lossy(r.as_ref()).into_owned();
                    let resolved = quick_xml::escape::resolve_predefined_entity(&name).map(str::to_owned);
                    match resolved.or_else(|| r.resolve_char_ref().ok().flatten().map(String::from)) {
                        Some(s) => text.push_str(&s),
                        None => text.push_str(&format!("&{name};")),
                    }
                }
            }
            Event::End(_) => {
                stack.pop();
                if let Some((name, fields, text)) = frames.pop() {
                    let value =
                        if fields.is_empty() { Value::String(text.trim().to_owned()) } else { Value::Object(fields) };
                    match frames.last_mut() {
                        Some((_, parent, _)) => add_field(parent, name, value),
                        None => {
                            records += 1;
                            let record = match value {
                                Value::Object(m) => Ok(m),
                                _ => Err(format!("the <{name}> element holds no fields")),
                            };
                            let after = Cursor { records, byte: reader.buffer_position(), line: lines };
                            each(Item { line: start_line, after, record }).map_err(|_| Ended::Stopped)?;
                        }
                    }
                }
            }
            Event::Eof => return Ok(()),
            _ => {}
        }
        buf.clear();
    }
}

fn add_field(fields: &mut Map<String, Value>, name: String, value: Value) {
    match fields.get_mut(&name) {
        Some(Value::Array(values)) => values.push(value),
        Some(existing) => {
            let first = existing.take();
            *existing = Value::Array(vec![first, value]);
        }
        None => {
            fields.insert(name, value);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::io::Cursor as Bytes;

    fn all(format: Format, text: &str, from: Cursor) -> Result<Vec<Item>, Ended> {
        let mut items = Vec::new();
        read(format, Bytes::new(text.as_bytes().to_vec()), from, &mut |item| {
            items.push(item);
            Ok(())
        })?;
        Ok(items)
    }

    fn lines_and_ids(items: &[Item]) -> Vec<(u64, Result<String, String>)> {
        items
            .iter()
            .map(|i| (i.line, i.record.clone().map(|r| r.get("id").map(|v| v.to_string()).unwrap_or_default())))
            .collect()
    }

    #[test]
    fn csv_rows_carry_their_lines_and_bad_rows_fail_alone() {
        let text = "id,v\n1,a\n2,b,extra\n3,\"multi\nline\"\n4,d\n";
        let items = all(Format::Csv, text, Cursor::default()).unwrap();
        assert_eq!(
            lines_and_ids(&items),
            vec![
                (2, Ok("\"1\"".into())),
                (3, Err("the row has 3 fields, the header 2".into())),
                (4, Ok("\"3\"".into())),
                (6, Ok("\"4\"".into())),
            ]
        );
        // Resuming after the second record reads the rest, with the same lines.
        let rest = all(Format::Csv, text, items[1].after).unwrap();
        assert_eq!(lines_and_ids(&rest), lines_and_ids(&items[2..]));
        assert_eq!(rest.last().unwrap().after.records, 4);
    }

    #[test]
    fn ndjson_resumes_at_its_cursor() {
        let text = "{\"id\": 1}\n\nnot json\n[1]\n{\"id\": 2}";
        let items = all(Format::NdJson, text, Cursor::default()).unwrap();
        assert_eq!(items.iter().map(|i| i.line).collect::<Vec<_>>(), [1, 3, 4, 5]);
        assert!(items[1].record.as_ref().unwrap_err().starts_with("the line is not JSON"));
        assert_eq!(items[2].record, Err("the line is not a JSON object".into()));
        let rest = all(Format::NdJson, text, items[0].after).unwrap();
        assert_eq!(rest, items[1..]);
    }

    #[test]
    fn geojson_is_streamed_feature_by_feature_with_lines() {
        let text = r#"{"type": "FeatureCollection", "name": "parks",
"features": [
{"type": "Feature", "id": "p1", "properties": {"name": "A"}, "geometry": {"type": "Point", "coordinates": [1, 2]}},
{"type": "Nope"},
{"type": "Feature", "properties": {"id": "p3"}, "geometry": null}
], "crs": {"x": 1}}"#;
        let items = all(Format::GeoJson, text, Cursor::default()).unwrap();
        assert_eq!(
            lines_and_ids(&items),
            vec![
                (3, Ok("\"p1\"".into())),
                (4, Err("not a GeoJSON Feature: its type is Some(\"Nope\")".into())),
                (5, Ok("\"p3\"".into()))
            ]
        );
        assert_eq!(items[0].record.as_ref().unwrap()["geometry"], json!({"type": "Point", "coordinates": [1, 2]}));
        let rest = all(Format::GeoJson, text, items[0].after).unwrap();
        assert_eq!(lines_and_ids(&rest), lines_and_ids(&items[1..]));
        assert_eq!(
            all(Format::GeoJson, "{\"type\": \"Feature\"}", Cursor::default()).unwrap_err(),
            Ended::Broken("the JSON object is not a GeoJSON FeatureCollection: it has no \"features\" array".into())
        );
    }

    #[test]
    fn an_ngsi_ld_array_is_streamed_and_a_broken_one_ends_with_where() {
        let items = all(Format::NgsiLd, "[{\"id\": \"urn:a\"},\n 7]", Cursor::default()).unwrap();
        assert_eq!(
            lines_and_ids(&items),
            vec![(1, Ok("\"urn:a\"".into())), (2, Err("the item is not a JSON object".into()))]
        );
        let Err(Ended::Broken(why)) = all(Format::NgsiLd, "[{\"id\": 1},\n{\"id\" 2}]", Cursor::default()) else {
            panic!("broken JSON must end the read")
        };
        assert!(why.contains("line 2"), "{why}");
    }

    #[test]
    fn a_stop_ends_reading_at_once() {
        let mut seen = 0;
        let r = read(Format::NgsiLd, Bytes::new(b"[{}, {}, {}]".to_vec()), Cursor::default(), &mut |_| {
            seen += 1;
            if seen == 2 {
                Err(Stop)
            } else {
                Ok(())
            }
        });
        assert_eq!((r, seen), (Err(Ended::Stopped), 2));
    }

    #[test]
    fn data_go_kr_xml_and_json_answers_read_as_records() {
        let xml = r#"<?xml version="1.0" encoding="UTF-8"?>
<response><header><resultCode>00</resultCode></header>
<body><items>
<item><stationName>종로구</stationName><pm10Value>41</pm10Value><dataTime>2024-05-01 09:00</dataTime></item>
<item code="7"><stationName>A &amp; B</stationName><pm10Value>-</pm10Value></item>
</items><totalCount>2</totalCount></body></response>"#;
        let mut records = Vec::new();
        read_xml(xml.as_bytes(), "response.body.items.item", &mut |i| {
            records.push((i.line, i.record.unwrap()));
            Ok(())
        })
        .unwrap();
        assert_eq!(records.len(), 2);
        assert_eq!(records[0].0, 4);
        assert_eq!(records[0].1["stationName"], "종로구");
        assert_eq!(
            records[1].1,
            serde_json::from_value::<Record>(json!({"@code": "7", "stationName": "A & B", "pm10Value": "-"})).unwrap()
        );

        let doc = json!({"response": {"body": {"items": {"item": [{"a": 1}, {"a": 2}]}, "totalCount": 2}}});
        assert_eq!(records_at(doc, Some("response.body.items.item")).unwrap().len(), 2);
        let one = json!({"response": {"body": {"items": {"item": {"a": 1}}}}});
        assert_eq!(records_at(one, Some("response.body.items.item")).unwrap().len(), 1);
        assert_eq!(
            records_at(json!({"x": 1}), Some("response.body")).unwrap_err(),
            "the document has no \"response.body\""
        );
    }

    proptest::proptest! {
        #[test]
        fn csv_resumed_at_any_record_reads_what_remains(rows in proptest::collection::vec("[a-z0-9 ,\"]{0,8}", 1..20), cut in 0usize..20) {
            let mut text = String::from("id,v\n");
            for (i, r) in rows.iter().enumerate() {
                text.push_str(&format!("{i},\"{}\"\n", r.replace('"', "\"\"")));
            }
            let items = all(Format::Csv, &text, Cursor::default()).unwrap();
            proptest::prop_assert_eq!(items.len(), rows.len());
            let cut = cut.min(items.len() - 1);
            let rest = all(Format::Csv, &text, items[cut].after).unwrap();
            proptest::prop_assert_eq!(lines_and_ids(&rest), lines_and_ids(&items[cut + 1..]));
        }
    }
}
