//! A poller's definition as given over the API, checked ([`Poller::read`]), and its last-run
//! status ([`Status`]): pure data.

use std::time::Duration;

use cityhub_import::{Format, Mapping};
use ngsild_core::NgsiLdError;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// The longest interval between two runs.
pub const MAX_INTERVAL_SECS: u64 = 7 * 24 * 3600;
/// The most retries of one run.
pub const MAX_RETRIES: u32 = 10;

/// A poller: a GET of `url` every `interval`, its answer (`format`) mapped by `mapping`.
#[derive(Debug, Clone, PartialEq)]
pub struct Poller {
    pub id: String,
    pub url: reqwest::Url,
    pub format: Format,
    pub interval: Duration,
    /// Attempts after a failed one, waiting 0.5 s, 1 s, 2 s, ... (at most 30 s) between them.
    pub retries: u32,
    pub timeout: Duration,
    /// Extra request headers (an API key, an Accept).
    pub headers: Vec<(String, String)>,
    pub mapping: Mapping,
    /// The document as given (shown back as it is).
    pub doc: Value,
}

fn bad(detail: impl Into<String>) -> NgsiLdError {
    NgsiLdError::bad_request(detail)
}

impl Poller {
    /// Reads a poller's document; `min_interval` is the hub's `--poller-min-interval`.
    pub fn read(doc: Value, min_interval: Duration) -> Result<Poller, NgsiLdError> {
        let Value::Object(m) = &doc else { return Err(bad("a poller must be a JSON object")) };
        const MEMBERS: &[&str] = &["id", "url", "format", "interval", "retries", "timeout", "headers", "mapping"];
        if let Some(unknown) = m.keys().find(|k| !MEMBERS.contains(&k.as_str())) {
            return Err(bad(format!("a poller has no member {unknown:?}; its members are {}", MEMBERS.join(", "))));
        }
        let id = text(m, "id")?;
        check_id(&id)?;
        let url = text(m, "url")?;
        let url = reqwest::Url::parse(&url).map_err(|e| bad(format!("url {url:?} is not a URL: {e}")))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(bad(format!("url must be http or https, not {}", url.scheme())));
        }
        let format_name = text(m, "format")?;
        let format = Format::parse(&format_name)
            .filter(|f| matches!(f, Format::Json | Format::Csv | Format::Xml | Format::GeoJson))
            .ok_or_else(|| bad(format!("format {format_name:?} is not one of json, csv, xml, geojson")))?;
        let interval = seconds(m, "interval", None)?;
        let min = min_interval.as_secs_f64();
        if interval < min || interval > MAX_INTERVAL_SECS as f64 {
            return Err(bad(format!(
                "interval {interval} is out of range: give seconds from {min} (this hub's --poller-min-interval) to {MAX_INTERVAL_SECS}"
            )));
        }
        let retries = match m.get("retries") {
            None => 2,
            Some(v) => v
                .as_u64()
                .filter(|r| *r <= u64::from(MAX_RETRIES))
                .map(|r| r as u32)
                .ok_or_else(|| bad(format!("retries must be an integer from 0 to {MAX_RETRIES}, not {v}")))?,
        };
        let timeout = seconds(m, "timeout", Some(30.0))?;
        if !(0.1..=300.0).contains(&timeout) {
            return Err(bad(format!("timeout {timeout} is out of range: give seconds from 0.1 to 300")));
        }
        let headers = match m.get("headers") {
            None => Vec::new(),
            Some(Value::Object(h)) => h
                .iter()
                .map(|(k, v)| match v {
                    Value::String(s) if reqwest::header::HeaderName::try_from(k.as_str()).is_ok() => {
                        Ok((k.clone(), s.clone()))
                    }
                    _ => Err(bad(format!("headers: {k:?} must be a header name with a text value"))),
                })
                .collect::<Result<_, _>>()?,
            Some(_) => return Err(bad("headers must be an object of header names and texts")),
        };
        let mapping = m.get("mapping").ok_or_else(|| bad("a poller needs a mapping (id, type, attributes)"))?;
        let mapping: Mapping =
            serde_json::from_value(mapping.clone()).map_err(|e| bad(format!("the mapping is not valid: {e}")))?;
        let mapping = mapping.complete(None, None).map_err(|e| bad(format!("the mapping: {e}")))?;
        if format == Format::Xml && mapping.items.is_none() {
            return Err(bad(
                "an xml poller's mapping needs items: the path of the records, e.g. response.body.items.item",
            ));
        }
        Ok(Poller {
            id,
            url,
            format,
            interval: Duration::from_secs_f64(interval),
            retries,
            timeout: Duration::from_secs_f64(timeout),
            headers,
            mapping,
            doc,
        })
    }

    /// The URL without its query (which may hold an API key), for statuses and logs.
    pub fn shown_url(&self) -> String {
        let mut url = self.url.clone();
        url.set_query(None);
        url.to_string()
    }
}

/// A poller id: 1 to 256 letters, digits and `-._~:`.
pub fn check_id(id: &str) -> Result<(), NgsiLdError> {
    let fine = !id.is_empty()
        && id.len() <= 256
        && id.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_' | '~' | ':'));
    if fine {
        Ok(())
    } else {
        Err(bad(format!("poller id {id:?} is not 1 to 256 letters, digits and -._~:")))
    }
}

fn text(m: &Map<String, Value>, name: &str) -> Result<String, NgsiLdError> {
    match m.get(name) {
        Some(Value::String(s)) if !s.trim().is_empty() => Ok(s.trim().to_owned()),
        Some(other) => Err(bad(format!("{name} must be a non-empty text, not {other}"))),
        None => Err(bad(format!("a poller needs {name}"))),
    }
}

fn seconds(m: &Map<String, Value>, name: &str, default: Option<f64>) -> Result<f64, NgsiLdError> {
    match (m.get(name), default) {
        (None, Some(d)) => Ok(d),
        (None, None) => Err(bad(format!("a poller needs {name} (seconds between runs)"))),
        (Some(v), _) => v
            .as_f64()
            .filter(|s| s.is_finite() && *s > 0.0)
            .ok_or_else(|| bad(format!("{name} must be a positive number of seconds, not {v}"))),
    }
}

/// What a poller's runs did, kept as a `PollerStatus` record by the hub that runs it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Status {
    pub runs: u64,
    pub failures: u64,
    pub last_run: Option<Run>,
    pub last_success: Option<String>,
}

/// One run.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Run {
    pub started_at: String,
    pub ended_at: String,
    /// `ok` or `failed`.
    pub outcome: String,
    /// The hub that ran it (a name it drew at start): of the hubs on one store, the lease holder.
    pub ran_by: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    pub attempts: u32,
    /// Records in the answer.
    pub records: u64,
    pub stored: u64,
    pub unchanged: u64,
    pub rejected: u64,
    /// The first rejected records: their number in the answer (1-based) and why.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub rejections: Vec<Rejection>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Rejection {
    pub record: u64,
    pub error: String,
}

/// The most rejections a status lists.
pub const MAX_REJECTIONS: usize = 10;

impl Status {
    /// The status after `run`.
    pub fn after(mut self, run: Run) -> Status {
        self.runs += 1;
        if run.outcome == "ok" {
            self.last_success = Some(run.ended_at.clone());
        } else {
            self.failures += 1;
        }
        self.last_run = Some(run);
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn doc() -> Value {
        json!({
            "id": "air-seoul",
            "url": "http://127.0.0.1:9/api?serviceKey=secret",
            "format": "json",
            "interval": 60,
            "mapping": {"type": "AirQualityObserved", "id": "stationName", "items": "response.body.items.item"}
        })
    }

    fn refusal(change: impl FnOnce(&mut Map<String, Value>)) -> String {
        let mut d = doc();
        change(d.as_object_mut().unwrap());
        Poller::read(d, Duration::from_secs(1)).unwrap_err().detail
    }

    #[test]
    fn a_poller_reads_with_its_defaults_and_hides_its_query() {
        let p = Poller::read(doc(), Duration::from_secs(1)).unwrap();
        assert_eq!((p.retries, p.timeout, p.interval), (2, Duration::from_secs(30), Duration::from_secs(60)));
        assert_eq!(p.shown_url(), "http://127.0.0.1:9/api");
        assert_eq!(p.mapping.entity_type.as_deref(), Some("AirQualityObserved"));
    }

    #[test]
    fn a_bad_poller_is_refused_saying_what_to_change() {
        assert_eq!(
            refusal(|m| {
                m.insert("interval".into(), json!(0.5));
            }),
            "interval 0.5 is out of range: give seconds from 1 (this hub's --poller-min-interval) to 604800"
        );
        assert_eq!(
            refusal(|m| {
                m.insert("format".into(), json!("yaml"));
            }),
            "format \"yaml\" is not one of json, csv, xml, geojson"
        );
        assert_eq!(
            refusal(|m| {
                m.insert("url".into(), json!("ftp://x/y"));
            }),
            "url must be http or https, not ftp"
        );
        assert_eq!(
            refusal(|m| {
                m.insert("id".into(), json!("a b"));
            }),
            "poller id \"a b\" is not 1 to 256 letters, digits and -._~:"
        );
        assert_eq!(
            refusal(|m| {
                m.insert("intervall".into(), json!(5));
            }),
            "a poller has no member \"intervall\"; its members are id, url, format, interval, retries, timeout, headers, mapping"
        );
        assert_eq!(
            refusal(|m| {
                m["mapping"].as_object_mut().unwrap().remove("id");
            }),
            "the mapping: no id column: give --id COLUMN or \"id\" in the mapping"
        );
        assert_eq!(
            refusal(|m| {
                m.insert("format".into(), json!("xml"));
                m["mapping"].as_object_mut().unwrap().remove("items");
            }),
            "an xml poller's mapping needs items: the path of the records, e.g. response.body.items.item"
        );
    }

    #[test]
    fn a_status_counts_runs_failures_and_the_last_success() {
        let ok = Run { outcome: "ok".into(), ended_at: "t1".into(), ..Run::default() };
        let failed = Run { outcome: "failed".into(), ended_at: "t2".into(), error: Some("x".into()), ..Run::default() };
        let s = Status::default().after(ok).after(failed.clone());
        assert_eq!((s.runs, s.failures, s.last_success.as_deref()), (2, 1, Some("t1")));
        assert_eq!(s.last_run, Some(failed));
        let back: Status = serde_json::from_value(serde_json::to_value(&s).unwrap()).unwrap();
        assert_eq!(back, s);
    }
}
