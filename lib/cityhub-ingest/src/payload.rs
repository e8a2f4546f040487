//! Device payloads, pure: the bytes a device sends become [`Reading`]s, each a list of
//! `(key, value)` measures and the time the device gave, if any.
//!
//! - JSON (IoT Agent JSON): an object `{"t": 21.5, "h": 40}`, or an array of such objects (one
//!   reading each). A `TimeInstant` key is the reading's time, not a measure.
//! - UltraLight 2.0: `t|21.5|h|40`, key and value alternating; readings separated by `#`; a
//!   reading with an odd number of fields starts with its time (`2026-01-01T00:00:00Z|t|21.5`).
//!   Values are text; they are coerced later, by the type of the attribute they map to.
//!
//! Anything else is refused with a reason (a sentence), which the dead-letter list keeps.

use serde_json::{Map, Value};

/// The formats a device may send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Json,
    UltraLight,
}

impl Format {
    pub fn name(self) -> &'static str {
        match self {
            Format::Json => "JSON",
            Format::UltraLight => "UltraLight 2.0",
        }
    }
}

/// One reading: measures by payload key, in payload order, and the time the device gave.
#[derive(Debug, Clone, PartialEq)]
pub struct Reading {
    pub measures: Vec<(String, Value)>,
    pub time: Option<String>,
}

/// The most readings one payload may hold.
pub const MAX_READINGS: usize = 1000;

/// The readings of one payload.
pub fn parse(format: Format, bytes: &[u8]) -> Result<Vec<Reading>, String> {
    let readings = match format {
        Format::Json => json(bytes)?,
        Format::UltraLight => ultralight(bytes)?,
    };
    if readings.is_empty() {
        return Err(format!("the {} payload holds no measure", format.name()));
    }
    if readings.len() > MAX_READINGS {
        return Err(format!(
            "the payload holds {} readings, more than the {MAX_READINGS} one payload may",
            readings.len()
        ));
    }
    Ok(readings)
}

/// The format of a payload on a topic that names none: JSON when it starts like a JSON object or
/// array, else UltraLight.
pub fn sniff(bytes: &[u8]) -> Format {
    match bytes.iter().find(|b| !b.is_ascii_whitespace()) {
        Some(b'{' | b'[') => Format::Json,
        _ => Format::UltraLight,
    }
}

/// The payload of `/<apikey>/<device>/attrs/<attr>`: the one value of `attr`, JSON when it reads
/// as JSON, else text.
pub fn single(attr: &str, bytes: &[u8]) -> Result<Reading, String> {
    if attr.is_empty() || attr == "TimeInstant" {
        return Err(format!("{attr:?} cannot be a measure's key"));
    }
    let value = match serde_json::from_slice::<Value>(bytes) {
        Ok(value) if !value.is_null() => value,
        Ok(_) => return Err(format!("the value of {attr:?} is null")),
        Err(_) => {
            let text = std::str::from_utf8(bytes).map_err(|_| format!("the value of {attr:?} is not UTF-8 text"))?;
            Value::String(text.trim().to_owned())
        }
    };
    Ok(Reading { measures: vec![(attr.to_owned(), value)], time: None })
}

fn json(bytes: &[u8]) -> Result<Vec<Reading>, String> {
    let value: Value = serde_json::from_slice(bytes).map_err(|e| format!("the payload is not JSON: {e}"))?;
    match value {
        Value::Object(map) => Ok(vec![json_reading(map)?]),
        Value::Array(items) => items
            .into_iter()
            .map(|item| match item {
                Value::Object(map) => json_reading(map),
                other => Err(format!("a JSON payload array must hold objects of measures, not {other}")),
            })
            .collect(),
        other => Err(format!("a JSON payload must be an object of measures (e.g. {{\"t\": 21.5}}), not {other}")),
    }
}

fn json_reading(map: Map<String, Value>) -> Result<Reading, String> {
    let mut time = None;
    let mut measures = Vec::with_capacity(map.len());
    for (key, value) in map {
        if key.is_empty() {
            return Err("a measure has an empty key".into());
        }
        if key == "TimeInstant" {
            match value {
                Value::String(t) => time = Some(t),
                other => return Err(format!("TimeInstant must be a date-time string, not {other}")),
            }
        } else {
            measures.push((key, value));
        }
    }
    if measures.is_empty() {
        return Err("a JSON reading holds no measure".into());
    }
    Ok(Reading { measures, time })
}

fn ultralight(bytes: &[u8]) -> Result<Vec<Reading>, String> {
    let text = std::str::from_utf8(bytes).map_err(|_| "an UltraLight payload must be UTF-8 text".to_owned())?;
    let text = text.trim();
    if text.is_empty() {
        return Err("the UltraLight payload is empty".into());
    }
    text.split('#').map(|group| ul_reading(group.trim())).collect()
}

fn ul_reading(group: &str) -> Result<Reading, String> {
    let mut fields: Vec<&str> = group.split('|').map(str::trim).collect();
    let time = match fields.len() % 2 {
        1 if ngsild_core::time::parse_datetime(fields[0]).is_some() => Some(fields.remove(0).to_owned()),
        1 => {
            return Err(format!(
                "the UltraLight reading {group:?} has an odd number of fields and does not start with a date-time: \
                 write key|value pairs, optionally after a timestamp"
            ))
        }
        _ => None,
    };
    if fields.is_empty() {
        return Err(format!("the UltraLight reading {group:?} holds no key|value pair"));
    }
    let measures = fields
        .chunks(2)
        .map(|pair| match pair {
            [key, value] if !key.is_empty() => Ok(((*key).to_owned(), Value::String((*value).to_owned()))),
            _ => Err(format!("the UltraLight reading {group:?} has a measure without a key (key|value|key|value…)")),
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Reading { measures, time })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    fn measures(r: &Reading) -> Vec<(&str, Value)> {
        r.measures.iter().map(|(k, v)| (k.as_str(), v.clone())).collect()
    }

    #[test]
    fn a_json_object_is_one_reading_and_time_instant_its_time() {
        let r = parse(Format::Json, br#"{"t": 21.5, "h": 40, "TimeInstant": "2026-01-01T00:00:00Z"}"#).unwrap();
        assert_eq!(r.len(), 1);
        assert_eq!(measures(&r[0]), vec![("t", json!(21.5)), ("h", json!(40))]);
        assert_eq!(r[0].time.as_deref(), Some("2026-01-01T00:00:00Z"));
        assert_eq!(parse(Format::Json, br#"[{"t": 1}, {"t": 2}]"#).unwrap().len(), 2);
    }

    #[test]
    fn ultralight_pairs_groups_and_a_leading_timestamp() {
        let r = parse(Format::UltraLight, b"t|21.5|h|40").unwrap();
        assert_eq!(measures(&r[0]), vec![("t", json!("21.5")), ("h", json!("40"))]);
        assert_eq!(r[0].time, None);
        let r = parse(Format::UltraLight, b"2026-01-01T00:00:00Z|t|1#t|2\n").unwrap();
        assert_eq!(r.len(), 2);
        assert_eq!(r[0].time.as_deref(), Some("2026-01-01T00:00:00Z"));
        assert_eq!(measures(&r[1]), vec![("t", json!("2"))]);
    }

    #[test]
    fn malformed_payloads_say_why() {
        let why = |f, b: &[u8]| parse(f, b).unwrap_err();
        assert!(why(Format::Json, b"{not json").contains("not JSON"));
        assert!(why(Format::Json, b"42").contains("object of measures"));
        assert!(why(Format::Json, b"{}").contains("no measure"));
        assert!(why(Format::Json, br#"{"TimeInstant": 5, "t": 1}"#).contains("TimeInstant"));
        assert!(why(Format::UltraLight, b"").contains("empty"));
        assert!(why(Format::UltraLight, b"t|1|h").contains("odd number of fields"));
        assert!(why(Format::UltraLight, b"2026-01-01T00:00:00Z").contains("no key|value"));
        assert!(why(Format::UltraLight, b"|1").contains("without a key"));
        assert!(why(Format::UltraLight, &[0xff, 0xfe]).contains("UTF-8"));
    }

    #[test]
    fn a_single_attribute_payload_and_sniffing() {
        assert_eq!(single("t", b"21.5").unwrap().measures, vec![("t".to_owned(), json!(21.5))]);
        assert_eq!(single("s", b"on").unwrap().measures, vec![("s".to_owned(), json!("on"))]);
        assert!(single("t", b"null").is_err());
        assert_eq!(sniff(b"  {\"t\":1}"), Format::Json);
        assert_eq!(sniff(b"t|1"), Format::UltraLight);
    }

    proptest! {
        #[test]
        fn any_bytes_parse_or_say_why(bytes in prop::collection::vec(any::<u8>(), 0..64)) {
            for format in [Format::Json, Format::UltraLight] {
                match parse(format, &bytes) {
                    Ok(readings) => prop_assert!(readings.iter().all(|r| !r.measures.is_empty())),
                    Err(why) => prop_assert!(!why.is_empty()),
                }
            }
        }

        #[test]
        fn ultralight_written_from_pairs_reads_back(pairs in prop::collection::vec(("[a-z]{1,6}", "[a-zA-Z0-9.\\-]{0,8}"), 1..6)) {
            let text: Vec<String> = pairs.iter().map(|(k, v)| format!("{k}|{v}")).collect();
            let r = parse(Format::UltraLight, text.join("|").as_bytes()).unwrap();
            let expected: Vec<(String, Value)> = pairs.into_iter().map(|(k, v)| (k, Value::String(v))).collect();
            prop_assert_eq!(&r[0].measures, &expected);
        }
    }
}
