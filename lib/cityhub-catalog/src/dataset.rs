//! Datasets (pure): a named selection of a tenant's data with its metadata, as a client writes
//! it, as it is stored (a record of kind `dataset`), and as the NGSI-LD entity of type `Dataset`
//! (Smart Data Models dataModel.DCAT-AP) that NGSI-LD clients find it by.
//!
//! Controlled values map to the EU vocabularies DCAT-AP 3 names: `updateFrequency` to the
//! frequency authority table, `theme` to the data-theme table, `accessLevel` to access-right
//! (public -> PUBLIC, registered and on-approval -> RESTRICTED); `license` is an SPDX id (its
//! spdx.org URL) or a URL.

use std::collections::BTreeMap;

use ngsild_core::params::Params;
use ngsild_core::{Entity, NgsiLdError};
use ngsild_jsonld::Context;
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

/// Text in several languages, by BCP 47 tag (`ko`, `en`, `vi`, `zh`).
pub type LangText = BTreeMap<String, String>;

/// The `Dataset` entity's id prefix; the rest is the dataset's name.
pub const ENTITY_PREFIX: &str = "urn:ngsi-ld:Dataset:";

/// The update frequencies known, with their code in the EU frequency table.
pub const FREQUENCIES: &[(&str, &str)] = &[
    ("continuous", "CONT"),
    ("hourly", "HOURLY"),
    ("daily", "DAILY"),
    ("weekly", "WEEKLY"),
    ("monthly", "MONTHLY"),
    ("quarterly", "QUARTERLY"),
    ("annual", "ANNUAL"),
    ("irregular", "IRREG"),
    ("unknown", "UNKNOWN"),
];

/// The EU data themes (DCAT-AP's controlled vocabulary for `dcat:theme`).
pub const THEMES: &[&str] = &[
    "AGRI",
    "ECON",
    "EDUC",
    "ENER",
    "ENVI",
    "GOVE",
    "HEAL",
    "INTR",
    "JUST",
    "OP_DATPRO",
    "REGI",
    "SOCI",
    "TECH",
    "TRAN",
];

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AccessLevel {
    /// Anyone downloads it, anonymously too.
    Public,
    /// Any identity (an API key or a token) downloads it.
    Registered,
    /// Restricted: only the tenant's readers and the keys an approved access request issued
    /// (`crate::grant`) download it. Written `on-approval` or `restricted`.
    #[serde(alias = "restricted")]
    OnApproval,
}

impl AccessLevel {
    pub fn name(self) -> &'static str {
        match self {
            AccessLevel::Public => "public",
            AccessLevel::Registered => "registered",
            AccessLevel::OnApproval => "on-approval",
        }
    }

    /// The code in the EU access-right table.
    pub fn access_right(self) -> &'static str {
        match self {
            AccessLevel::Public => "PUBLIC",
            AccessLevel::Registered | AccessLevel::OnApproval => "RESTRICTED",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Agent {
    /// A short name (the CKAN organization name): lower-case letters, digits, `-` and `_`.
    pub id: String,
    pub name: LangText,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Contact {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Period {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end: Option<String>,
}

/// Which of the tenant's data the dataset is: NGSI-LD query terms, read as the query API reads
/// them (in the core @context).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Selection {
    pub types: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub q: Option<String>,
    /// A geo-query: `{"georel", "geometry", "coordinates", "geoproperty"?}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub geo: Option<GeoSelection>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub attrs: Vec<String>,
    /// The history's window (`timerel=between` or `after`/`before` when one bound is missing).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_at: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end_time_at: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct GeoSelection {
    pub georel: String,
    pub geometry: String,
    pub coordinates: Value,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub geoproperty: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RetentionAction {
    /// Instances older than `maxAge` are deleted.
    Delete,
    /// Of instances older than `maxAge`, the first of each `period` (per attribute and
    /// datasetId) is kept and the others deleted.
    Downsample,
}

/// What happens to the history of the dataset's entities, at each scheduled run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Retention {
    /// An ISO 8601 duration: instances observed longer ago than this are concerned.
    pub max_age: String,
    pub action: RetentionAction,
    /// With `downsample`: the ISO 8601 duration of which one instance is kept.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub period: Option<String>,
}

impl Retention {
    /// `maxAge` and `period` in seconds, checked.
    pub fn durations(&self) -> Result<(f64, Option<f64>), NgsiLdError> {
        let max_age = ngsild_core::temporal::parse_duration(&self.max_age)
            .map_err(|e| NgsiLdError::bad_request(format!("retention.maxAge: {}", e.detail)))?;
        let period = match (self.action, &self.period) {
            (RetentionAction::Downsample, Some(p)) => Some(
                ngsild_core::temporal::parse_duration(p)
                    .map_err(|e| NgsiLdError::bad_request(format!("retention.period: {}", e.detail)))?,
            ),
            (RetentionAction::Downsample, None) => {
                return Err(NgsiLdError::bad_request(
                    "retention with action downsample needs a period (an ISO 8601 duration such as PT1H): one \
                     instance of each period is kept",
                ))
            }
            (RetentionAction::Delete, _) => None,
        };
        Ok((max_age, period))
    }
}

/// A dataset as written by a client and stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Dataset {
    /// The short name: the CKAN package name and the last part of the URLs and of the entity id.
    pub name: String,
    pub title: LangText,
    pub description: LangText,
    #[serde(default)]
    pub keywords: BTreeMap<String, Vec<String>>,
    pub publisher: Agent,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub contact_point: Option<Contact>,
    pub license: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub update_frequency: Option<String>,
    /// A GeoJSON geometry.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spatial_coverage: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub temporal_coverage: Option<Period>,
    #[serde(default)]
    pub theme: Vec<String>,
    pub access_level: AccessLevel,
    pub selection: Selection,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retention: Option<Retention>,
    /// Set by the hub.
    #[serde(default)]
    pub created_at: String,
    #[serde(default)]
    pub modified_at: String,
}

fn bad(detail: String) -> NgsiLdError {
    NgsiLdError::bad_request(detail)
}

fn check_slug(what: &str, name: &str) -> Result<(), NgsiLdError> {
    let ok = (2..=100).contains(&name.len())
        && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_');
    match ok {
        true => Ok(()),
        false => Err(bad(format!(
            "{what} {name:?} must be 2 to 100 lower-case ASCII letters, digits, '-' or '_' (it is used in URLs and \
             as a CKAN name)"
        ))),
    }
}

fn check_lang(what: &str, text: &LangText, required: bool) -> Result<(), NgsiLdError> {
    if required && text.values().all(|t| t.trim().is_empty()) {
        return Err(bad(format!(
            "{what} needs a text in at least one language, e.g. {{\"en\": \"...\", \"ko\": \"...\"}}"
        )));
    }
    for tag in text.keys() {
        check_tag(what, tag)?;
    }
    Ok(())
}

fn check_tag(what: &str, tag: &str) -> Result<(), NgsiLdError> {
    let ok = !tag.is_empty()
        && tag.split('-').all(|part| (1..=8).contains(&part.len()) && part.chars().all(|c| c.is_ascii_alphanumeric()));
    match ok {
        true => Ok(()),
        false => Err(bad(format!("{what}: {tag:?} is not a language tag (BCP 47, e.g. ko, en, vi, zh)"))),
    }
}

fn is_url(s: &str) -> bool {
    (s.starts_with("http://") || s.starts_with("https://")) && s.len() > 8 && !s.contains(char::is_whitespace)
}

impl Dataset {
    /// Reads and checks a dataset written by a client (`now` stamps it).
    pub fn read(body: &Value, now: &str) -> Result<Dataset, NgsiLdError> {
        let mut body = body.clone();
        if let Some(map) = body.as_object_mut() {
            for member in ["createdAt", "modifiedAt"] {
                map.remove(member);
            }
        }
        let mut dataset: Dataset = serde_json::from_value(body).map_err(|e| {
            bad(format!(
                "the dataset does not read: {e}; a dataset has name, title, description, publisher, license, \
                 accessLevel and selection (and optionally keywords, contactPoint, updateFrequency, spatialCoverage, \
                 temporalCoverage, theme, retention)"
            ))
        })?;
        dataset.check()?;
        dataset.created_at = now.to_owned();
        dataset.modified_at = now.to_owned();
        Ok(dataset)
    }

    pub fn check(&self) -> Result<(), NgsiLdError> {
        check_slug("the dataset name", &self.name)?;
        check_lang("title", &self.title, true)?;
        check_lang("description", &self.description, true)?;
        for tag in self.keywords.keys() {
            check_tag("keywords", tag)?;
        }
        check_slug("publisher.id", &self.publisher.id)?;
        check_lang("publisher.name", &self.publisher.name, true)?;
        license_url(&self.license)?;
        if let Some(f) = &self.update_frequency {
            frequency_code(f)?;
        }
        for t in &self.theme {
            if !THEMES.contains(&t.as_str()) {
                return Err(bad(format!("theme {t:?} is not an EU data theme: use one of {}", THEMES.join(", "))));
            }
        }
        if let Some(geometry) = &self.spatial_coverage {
            ngsild_core::expand::validate_geometry(geometry)
                .map_err(|why| bad(format!("spatialCoverage is not a GeoJSON geometry: {why}")))?;
        }
        if let Some(period) = &self.temporal_coverage {
            for (what, t) in [("start", &period.start), ("end", &period.end)] {
                if let Some(t) = t {
                    ngsild_core::time::parse_datetime(t)
                        .ok_or_else(|| bad(format!("temporalCoverage.{what} {t:?} is not a DateTime")))?;
                }
            }
        }
        if self.selection.types.is_empty() {
            return Err(bad("selection.types must name at least one entity type".into()));
        }
        self.filter()?;
        self.time_rel()?;
        if let Some(retention) = &self.retention {
            retention.durations()?;
        }
        Ok(())
    }

    /// The selection as the query parameters of the NGSI-LD query API.
    pub fn query_params(&self) -> Vec<(String, String)> {
        let s = &self.selection;
        let mut params = vec![("type".to_owned(), s.types.join(","))];
        if let Some(q) = &s.q {
            params.push(("q".into(), q.clone()));
        }
        if let Some(geo) = &s.geo {
            params.push(("georel".into(), geo.georel.clone()));
            params.push(("geometry".into(), geo.geometry.clone()));
            params.push(("coordinates".into(), geo.coordinates.to_string()));
            if let Some(p) = &geo.geoproperty {
                params.push(("geoproperty".into(), p.clone()));
            }
        }
        if !s.attrs.is_empty() {
            params.push(("attrs".into(), s.attrs.join(",")));
        }
        params
    }

    /// The selection as a filter, in the core @context.
    pub fn filter(&self) -> Result<ngsild_query::EntityFilter, NgsiLdError> {
        let params = Params::from_pairs(self.query_params());
        ngsild_query::params::entity_filter(&params, &ngsild_jsonld::core_context())
            .map_err(|e| bad(format!("selection: {}", e.detail)))
    }

    /// The history window of the selection.
    pub fn time_rel(&self) -> Result<Option<ngsild_core::temporal::TimeRel>, NgsiLdError> {
        let s = &self.selection;
        let rel = match (&s.time_at, &s.end_time_at) {
            (None, None) => return Ok(None),
            (Some(_), Some(_)) => "between",
            (Some(_), None) => "after",
            (None, Some(_)) => "before",
        };
        let (at, end) = match rel {
            "before" => (s.end_time_at.as_deref(), None),
            _ => (s.time_at.as_deref(), s.end_time_at.as_deref()),
        };
        ngsild_core::temporal::TimeRel::parse(Some(rel), at, end)
            .map_err(|e| bad(format!("selection.timeAt/endTimeAt: {}", e.detail)))
    }

    /// The entity id of the dataset's `Dataset` entity.
    pub fn entity_id(&self) -> String {
        format!("{ENTITY_PREFIX}{}", self.name)
    }

    /// A text in the preferred language: English, else the first there is.
    pub fn text(text: &LangText) -> String {
        text.get("en").or_else(|| text.values().next()).cloned().unwrap_or_default()
    }

    /// Every keyword, of every language.
    pub fn all_keywords(&self) -> Vec<String> {
        let mut all: Vec<String> = self.keywords.values().flatten().cloned().collect();
        all.sort();
        all.dedup();
        all
    }

    /// The `Dataset` entity (Smart Data Models dataModel.DCAT-AP), keyValues terms of the core
    /// @context; `base` is the hub's public URL, for the distributions and the landing page.
    pub fn entity_body(&self, base: &str) -> Value {
        let mut body = Map::new();
        let prop = |v: Value| json!({"type": "Property", "value": v});
        body.insert("id".into(), json!(self.entity_id()));
        body.insert("type".into(), json!("Dataset"));
        body.insert("name".into(), prop(json!(self.name)));
        body.insert("title".into(), prop(json!(Dataset::text(&self.title))));
        body.insert("description".into(), prop(json!(Dataset::text(&self.description))));
        body.insert("titleMap".into(), json!({"type": "LanguageProperty", "languageMap": self.title}));
        body.insert("descriptionMap".into(), json!({"type": "LanguageProperty", "languageMap": self.description}));
        let keywords = self.all_keywords();
        if !keywords.is_empty() {
            body.insert("keyword".into(), prop(json!(keywords)));
        }
        body.insert("publisher".into(), prop(json!(Dataset::text(&self.publisher.name))));
        if let Some(c) = &self.contact_point {
            body.insert("contactPoint".into(), prop(serde_json::to_value(c).unwrap_or(Value::Null)));
        }
        body.insert("license".into(), prop(json!(license_url(&self.license).unwrap_or_default())));
        let access = match self.access_level {
            AccessLevel::Public => "public",
            AccessLevel::Registered | AccessLevel::OnApproval => "restricted",
        };
        body.insert("accessRights".into(), prop(json!(access)));
        if let Some(f) = &self.update_frequency {
            body.insert("frequency".into(), prop(json!(f)));
        }
        if !self.theme.is_empty() {
            body.insert("theme".into(), prop(json!(self.theme)));
        }
        if let Some(geometry) = &self.spatial_coverage {
            body.insert("location".into(), json!({"type": "GeoProperty", "value": geometry}));
        }
        if let Some(p) = &self.temporal_coverage {
            let period: Vec<Value> = [&p.start, &p.end].iter().filter_map(|t| t.as_ref().map(|t| json!(t))).collect();
            body.insert("temporal".into(), prop(json!(period)));
        }
        let landing = format!("{base}/cityhub/v1/datasets/{}", self.name);
        body.insert("landingPage".into(), prop(json!(landing)));
        let distributions: Vec<Value> = distributions(self, base).into_iter().map(|d| json!(d.access_url)).collect();
        body.insert("datasetDistribution".into(), prop(json!(distributions)));
        Value::Object(body)
    }

    /// The `Dataset` entity in stored form.
    pub fn entity(&self, base: &str) -> Result<Entity, NgsiLdError> {
        let body = self.entity_body(base);
        let map = body.as_object().ok_or_else(|| NgsiLdError::internal("the dataset entity is not an object"))?;
        let ctx: std::sync::Arc<Context> = ngsild_jsonld::core_context();
        Ok(ngsild_core::expand::expand_entity(map, &ctx)?.0)
    }
}

/// The URL of a license: an SPDX id's page at spdx.org, or the URL given.
pub fn license_url(license: &str) -> Result<String, NgsiLdError> {
    if is_url(license) {
        return Ok(license.to_owned());
    }
    let spdx = !license.is_empty()
        && license.len() <= 64
        && license.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '+'));
    match spdx {
        true => Ok(format!("https://spdx.org/licenses/{license}")),
        false => Err(bad(format!(
            "license {license:?} is neither an SPDX license id (e.g. CC-BY-4.0, ODbL-1.0) nor an http(s) URL"
        ))),
    }
}

/// The EU frequency code of an update frequency.
pub fn frequency_code(frequency: &str) -> Result<&'static str, NgsiLdError> {
    FREQUENCIES.iter().find(|(name, _)| *name == frequency).map(|(_, code)| *code).ok_or_else(|| {
        let names: Vec<&str> = FREQUENCIES.iter().map(|(n, _)| *n).collect();
        bad(format!("updateFrequency {frequency:?} is not known: use one of {}", names.join(", ")))
    })
}

/// What a distribution serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DownloadFormat {
    Csv,
    GeoJson,
    NdJson,
}

impl DownloadFormat {
    pub const ALL: [DownloadFormat; 3] = [DownloadFormat::Csv, DownloadFormat::GeoJson, DownloadFormat::NdJson];

    pub fn parse(name: &str) -> Option<DownloadFormat> {
        DownloadFormat::ALL.into_iter().find(|f| f.name() == name)
    }

    pub fn name(self) -> &'static str {
        match self {
            DownloadFormat::Csv => "csv",
            DownloadFormat::GeoJson => "geojson",
            DownloadFormat::NdJson => "ndjson",
        }
    }

    /// The CKAN resource format and the code in the EU file-type table.
    pub fn label(self) -> &'static str {
        match self {
            DownloadFormat::Csv => "CSV",
            DownloadFormat::GeoJson => "GEOJSON",
            DownloadFormat::NdJson => "NDJSON",
        }
    }

    pub fn media_type(self) -> &'static str {
        match self {
            DownloadFormat::Csv => "text/csv",
            DownloadFormat::GeoJson => "application/geo+json",
            DownloadFormat::NdJson => "application/x-ndjson",
        }
    }
}

/// Which part of a dataset a download holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Part {
    Current,
    History,
}

impl Part {
    pub fn parse(name: &str) -> Option<Part> {
        match name {
            "current" => Some(Part::Current),
            "history" => Some(Part::History),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Part::Current => "current",
            Part::History => "history",
        }
    }
}

/// One distribution of a dataset.
#[derive(Debug, Clone, PartialEq)]
pub struct Distribution {
    /// Unique within the dataset: `ngsi-ld`, `current-csv`, `history-ndjson`...
    pub key: String,
    pub title: String,
    pub access_url: String,
    pub download_url: Option<String>,
    pub media_type: String,
    /// The CKAN format and EU file type code.
    pub format: String,
}

/// The distributions of a dataset: the live NGSI-LD query, and a download of each part in each
/// format.
pub fn distributions(dataset: &Dataset, base: &str) -> Vec<Distribution> {
    let query: String = form_urlencoded::Serializer::new(String::new()).extend_pairs(dataset.query_params()).finish();
    let mut all = vec![Distribution {
        key: "ngsi-ld".into(),
        title: "NGSI-LD query (live)".into(),
        access_url: format!("{base}/ngsi-ld/v1/entities?{query}"),
        download_url: None,
        media_type: "application/ld+json".into(),
        format: "JSON-LD".into(),
    }];
    for part in [Part::Current, Part::History] {
        for format in DownloadFormat::ALL {
            let url = format!(
                "{base}/cityhub/v1/datasets/{}/download?format={}&part={}",
                dataset.name,
                format.name(),
                part.name()
            );
            let what = match part {
                Part::Current => "current state",
                Part::History => "history",
            };
            all.push(Distribution {
                key: format!("{}-{}", part.name(), format.name()),
                title: format!("{} ({what}, {})", Dataset::text(&dataset.title), format.label()),
                access_url: url.clone(),
                download_url: Some(url),
                media_type: format.media_type().into(),
                format: format.label().into(),
            });
        }
    }
    all
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub fn sample() -> Value {
        json!({
            "name": "air-quality",
            "title": {"en": "Air quality", "ko": "대기질"},
            "description": {"en": "Air-quality stations", "vi": "Trạm chất lượng không khí"},
            "keywords": {"en": ["air", "pm25"], "zh": ["空气"]},
            "publisher": {"id": "seoul", "name": {"en": "Seoul", "ko": "서울특별시"}},
            "contactPoint": {"name": "Open data desk", "email": "opendata@seoul.example"},
            "license": "CC-BY-4.0",
            "updateFrequency": "hourly",
            "theme": ["ENVI"],
            "accessLevel": "public",
            "selection": {"types": ["AirQualityObserved"], "q": "pm25>=0"},
            "retention": {"maxAge": "P30D", "action": "delete"}
        })
    }

    #[test]
    fn a_dataset_reads_and_its_entity_expands() {
        let d = Dataset::read(&sample(), "2026-01-01T00:00:00Z").unwrap();
        assert_eq!(d.entity_id(), "urn:ngsi-ld:Dataset:air-quality");
        assert!(d.filter().unwrap().types.is_some());
        let entity = d.entity("http://hub").unwrap();
        assert!(entity.types[0].ends_with("/Dataset"), "{:?}", entity.types);
        let dists = distributions(&d, "http://hub");
        assert_eq!(dists.len(), 7);
        assert!(dists[0].access_url.starts_with("http://hub/ngsi-ld/v1/entities?type=AirQualityObserved&q=pm25"));
        assert_eq!(license_url(&d.license).unwrap(), "https://spdx.org/licenses/CC-BY-4.0");
    }

    #[test]
    fn each_wrong_member_is_named() {
        let cases = [
            ("name", json!("Air Quality"), "the dataset name"),
            ("license", json!("not a license!"), "license"),
            ("updateFrequency", json!("sometimes"), "updateFrequency"),
            ("theme", json!(["AIR"]), "theme"),
            ("accessLevel", json!("secret"), "accessLevel"),
            ("title", json!({}), "title"),
            ("selection", json!({"types": ["T"], "q": "a=="}), "selection"),
            ("retention", json!({"maxAge": "30 days", "action": "delete"}), "retention.maxAge"),
            ("retention", json!({"maxAge": "P1D", "action": "downsample"}), "period"),
        ];
        for (member, value, named) in cases {
            let mut body = sample();
            body[member] = value;
            let err = Dataset::read(&body, "t").unwrap_err();
            assert!(err.detail.contains(named), "{member}: {}", err.detail);
        }
    }
}
