//! Temporal evolution of entities (clauses 4.5.7–4.5.9, 4.5.19, 5.7.3, 5.7.4): the history model,
//! `timerel` / `timeproperty`, aggregation methods and periods, and the three temporal
//! representations (normalized, `temporalValues`, `aggregatedValues`).

use indexmap::IndexMap;
use ngsild_jsonld::Context;
use serde_json::{Map, Value};

use crate::error::{NgsiLdError, Result};
use crate::model::{Attribute, AttributeKind};
use crate::render::{one_or_many, render_attribute, render_core_members, CoreMembers, Format, RenderOptions};
use crate::time::{format_time, parse_datetime};

/// The value a deleted attribute instance carries in the history (clause 4.5.7).
pub const NULL: &str = "urn:ngsi-ld:null";

/// One recorded instance of an attribute.
#[derive(Debug, Clone, PartialEq)]
pub struct Instance {
    pub attribute: Attribute,
    pub instance_id: String,
    pub deleted_at: Option<String>,
}

impl Instance {
    /// The instance's time under a time property (None: it has no such time).
    pub fn time(&self, property: TimeProperty) -> Option<&str> {
        match property {
            TimeProperty::ObservedAt => self.attribute.observed_at.as_deref(),
            TimeProperty::CreatedAt => self.attribute.created_at.as_deref(),
            TimeProperty::ModifiedAt => self.attribute.modified_at.as_deref(),
            TimeProperty::DeletedAt => self.deleted_at.as_deref(),
        }
    }
}

/// The deletion of an attribute instance, as the history records it.
pub fn deletion_of(attr: &Attribute, now: &str) -> Attribute {
    let value = match attr.kind {
        AttributeKind::LanguageProperty => serde_json::json!({"@none": NULL}),
        AttributeKind::ListProperty | AttributeKind::ListRelationship => Value::Array(vec![Value::String(NULL.into())]),
        _ => Value::String(NULL.into()),
    };
    let mut deleted = Attribute::new(attr.kind, value);
    deleted.dataset_id = attr.dataset_id.clone();
    deleted.created_at = Some(now.to_owned());
    deleted.modified_at = Some(now.to_owned());
    deleted
}

/// An entity's history, as a temporal query answers it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TemporalEntity {
    pub id: String,
    pub types: Vec<String>,
    pub scope: Vec<String>,
    pub created_at: Option<String>,
    pub modified_at: Option<String>,
    pub deleted_at: Option<String>,
    /// Instances by expanded attribute name, in time order.
    pub attrs: IndexMap<String, Vec<Instance>>,
    /// With `aggregatedValues`: the aggregated series by expanded attribute name.
    pub aggregates: IndexMap<String, Vec<AggregateSeries>>,
}

/// The aggregation of one attribute instance series (one datasetId) over periods.
#[derive(Debug, Clone, PartialEq)]
pub struct AggregateSeries {
    pub kind: AttributeKind,
    pub dataset_id: Option<String>,
    pub periods: Vec<AggregatePeriod>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct AggregatePeriod {
    pub start: String,
    pub end: String,
    pub values: Vec<(AggrMethod, Value)>,
}

/// Which time of an instance `timerel` compares (clause 4.11).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TimeProperty {
    #[default]
    ObservedAt,
    CreatedAt,
    ModifiedAt,
    DeletedAt,
}

impl TimeProperty {
    pub fn parse(name: &str) -> Result<TimeProperty> {
        Ok(match name {
            "observedAt" => TimeProperty::ObservedAt,
            "createdAt" => TimeProperty::CreatedAt,
            "modifiedAt" => TimeProperty::ModifiedAt,
            "deletedAt" => TimeProperty::DeletedAt,
            other => {
                return Err(NgsiLdError::bad_request(format!(
                    "timeproperty must be observedAt, createdAt, modifiedAt or deletedAt, not {other:?}"
                )))
            }
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            TimeProperty::ObservedAt => "observedAt",
            TimeProperty::CreatedAt => "createdAt",
            TimeProperty::ModifiedAt => "modifiedAt",
            TimeProperty::DeletedAt => "deletedAt",
        }
    }
}

/// A temporal query's time window; bounds are normalised to the stored timestamp form, so that
/// they compare as strings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TimeRel {
    Before(String),
    After(String),
    Between(String, String),
}

impl TimeRel {
    /// `timerel`, `timeAt`, `endTimeAt` as a request gives them.
    pub fn parse(timerel: Option<&str>, time_at: Option<&str>, end_time_at: Option<&str>) -> Result<Option<TimeRel>> {
        let time = |name: &str, value: Option<&str>| -> Result<String> {
            let value = value.ok_or_else(|| NgsiLdError::bad_request(format!("timerel needs {name}")))?;
            parse_datetime(value).map(format_time).ok_or_else(|| {
                NgsiLdError::bad_request(format!("{name} is not a DateTime: {value:?}; {}", crate::time::DATETIME_HINT))
            })
        };
        Ok(match timerel {
            None if time_at.is_none() && end_time_at.is_none() => None,
            None => return Err(NgsiLdError::bad_request("timeAt and endTimeAt need timerel")),
            Some("before") => Some(TimeRel::Before(time("timeAt", time_at)?)),
            Some("after") => Some(TimeRel::After(time("timeAt", time_at)?)),
            Some("between") => {
                let (start, end) = (time("timeAt", time_at)?, time("endTimeAt", end_time_at)?);
                if end <= start {
                    return Err(NgsiLdError::bad_request("endTimeAt must be after timeAt"));
                }
                Some(TimeRel::Between(start, end))
            }
            Some(other) => {
                return Err(NgsiLdError::bad_request(format!(
                    "timerel must be before, after or between, not {other:?}"
                )))
            }
        })
    }

    /// The window as an inclusive lower and exclusive upper bound.
    pub fn bounds(&self) -> (Option<&str>, Option<&str>) {
        match self {
            TimeRel::Before(t) => (None, Some(t)),
            TimeRel::After(t) => (Some(t), None),
            TimeRel::Between(a, b) => (Some(a), Some(b)),
        }
    }
}

/// The aggregation functions of clause 4.5.19.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AggrMethod {
    TotalCount,
    DistinctCount,
    Sum,
    Avg,
    Min,
    Max,
    Stddev,
    Sumsq,
}

impl AggrMethod {
    pub const ALL: [AggrMethod; 8] = [
        AggrMethod::TotalCount,
        AggrMethod::DistinctCount,
        AggrMethod::Sum,
        AggrMethod::Avg,
        AggrMethod::Min,
        AggrMethod::Max,
        AggrMethod::Stddev,
        AggrMethod::Sumsq,
    ];

    pub fn name(self) -> &'static str {
        match self {
            AggrMethod::TotalCount => "totalCount",
            AggrMethod::DistinctCount => "distinctCount",
            AggrMethod::Sum => "sum",
            AggrMethod::Avg => "avg",
            AggrMethod::Min => "min",
            AggrMethod::Max => "max",
            AggrMethod::Stddev => "stddev",
            AggrMethod::Sumsq => "sumsq",
        }
    }

    /// A comma-separated `aggrMethods` list.
    pub fn parse_list(list: &str) -> Result<Vec<AggrMethod>> {
        list.split(',')
            .map(str::trim)
            .map(|name| {
                AggrMethod::ALL
                    .into_iter()
                    .find(|m| m.name() == name)
                    .ok_or_else(|| NgsiLdError::bad_request(format!("unknown aggregation method {name:?}")))
            })
            .collect()
    }
}

/// The longest duration [`parse_duration`] accepts: 10000 years of 365 days, the span of the
/// DateTimes the hub holds. Anything longer could only overflow the time arithmetic.
pub const MAX_DURATION_SECONDS: f64 = 10_000.0 * 365.0 * 86400.0;

/// An ISO 8601 duration (`PT1H`, `P1D`, `P1Y2M10DT2H30M`, `PT0S`) in seconds. Years count 365
/// days and months 30: aggregation periods are fixed lengths, not calendar units. A duration
/// longer than [`MAX_DURATION_SECONDS`], or shorter than the microsecond the history counts in
/// (but not zero), is refused.
pub fn parse_duration(text: &str) -> Result<f64> {
    let bad = || {
        NgsiLdError::bad_request(format!(
            "{text:?} is not an ISO 8601 duration: write P[nY][nM][nW][nD][T[nH][nM][nS]], e.g. PT1H or P1DT12H"
        ))
    };
    let rest = text.strip_prefix('P').ok_or_else(bad)?;
    let (date, time) = match rest.split_once('T') {
        Some((d, t)) if !t.is_empty() => (d, Some(t)),
        Some(_) => return Err(bad()),
        None => (rest, None),
    };
    let mut seconds = 0.0;
    let mut any = false;
    let mut add = |part: &str, units: &[(char, f64)]| -> Result<()> {
        let mut number = String::new();
        for c in part.chars() {
            if c.is_ascii_digit() || c == '.' {
                number.push(c);
            } else {
                let scale = units.iter().find(|(u, _)| *u == c).map(|(_, s)| *s).ok_or_else(bad)?;
                seconds += number.parse::<f64>().map_err(|_| bad())? * scale;
                number.clear();
                any = true;
            }
        }
        if number.is_empty() {
            Ok(())
        } else {
            Err(bad())
        }
    };
    add(date, &[('Y', 365.0 * 86400.0), ('M', 30.0 * 86400.0), ('W', 7.0 * 86400.0), ('D', 86400.0)])?;
    if let Some(time) = time {
        add(time, &[('H', 3600.0), ('M', 60.0), ('S', 1.0)])?;
    }
    if !any {
        return Err(bad());
    }
    if !seconds.is_finite() || seconds > MAX_DURATION_SECONDS {
        return Err(NgsiLdError::bad_request(format!(
            "the duration {text:?} is longer than 10000 years, the span of the DateTimes this hub holds: \
             give a shorter one (PT0S aggregates the whole time window as one period)"
        )));
    }
    if seconds > 0.0 && seconds < 1e-6 {
        return Err(NgsiLdError::bad_request(format!(
            "the duration {text:?} is shorter than a microsecond, the resolution of the history: give PT0.000001S or more"
        )));
    }
    Ok(seconds)
}

/// Instance pagination (clause 5.5.9): a response holds at most `limit` instances in all, and
/// each attribute at most `last_n`, the newest, when asked. The store fetched one instance more
/// per attribute than may be shown. Where the limit is passed, every attribute is cut at one time
/// so that none shows a gap the next page would not fill (an attribute wholly past the cut stays,
/// empty). Answers the cut time when something was cut; leaves instances in time order.
pub fn cut_instances(
    entities: &mut [TemporalEntity],
    limit: usize,
    last_n: Option<usize>,
    property: TimeProperty,
) -> Option<String> {
    let newest_first = last_n.is_some();
    let per_attribute = last_n.unwrap_or(limit).min(limit);
    let time_of = |i: &Instance| i.time(property).or(i.attribute.created_at.as_deref()).and_then(parse_datetime);
    let mut times = Vec::new();
    for instances in entities.iter_mut().flat_map(|e| e.attrs.values_mut()) {
        instances.truncate(per_attribute);
        times.extend(instances.iter().filter_map(time_of));
    }
    times.sort_unstable();
    if newest_first {
        times.reverse();
    }
    // lastN alone is not paging: the client asked for that many.
    let cut = (times.len() > limit).then(|| times[limit.max(1) - 1]);
    for entity in entities.iter_mut() {
        for instances in entity.attrs.values_mut() {
            if let Some(cut) = cut {
                instances.retain(|i| time_of(i).is_none_or(|t| if newest_first { t >= cut } else { t <= cut }));
            }
            if newest_first {
                instances.reverse();
            }
        }
    }
    cut.map(format_time)
}

/// The earliest and latest time of the instances shown.
pub fn time_span(entities: &[TemporalEntity], property: TimeProperty) -> Option<(String, String)> {
    let times = entities
        .iter()
        .flat_map(|e| e.attrs.values().flatten())
        .filter_map(|i| i.time(property).or(i.attribute.created_at.as_deref()).and_then(parse_datetime));
    let (mut min, mut max) = (None, None);
    for t in times {
        min = Some(min.map_or(t, |m: chrono::DateTime<chrono::Utc>| m.min(t)));
        max = Some(max.map_or(t, |m: chrono::DateTime<chrono::Utc>| m.max(t)));
    }
    Some((format_time(min?), format_time(max?)))
}

/// How a temporal entity is shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TemporalFormat {
    #[default]
    Normalized,
    /// `temporalValues`: `[value, time]` pairs per attribute.
    TemporalValues,
    /// `aggregatedValues`: `[value, start, end]` triples per method.
    Aggregated,
}

/// Renders a temporal entity (without `@context`).
pub fn render_temporal(
    entity: &TemporalEntity,
    ctx: &Context,
    format: TemporalFormat,
    time_property: TimeProperty,
    opts: &RenderOptions,
) -> Map<String, Value> {
    let proj = &opts.projection;
    let core = CoreMembers { id: &entity.id, types: &entity.types, scope: &entity.scope };
    let system_times = opts.sys_attrs.then_some((&entity.created_at, &entity.modified_at));
    let mut out = render_core_members(&core, system_times, ctx, proj);
    if let Some(deleted) = &entity.deleted_at {
        out.insert("deletedAt".into(), Value::String(deleted.clone()));
    }
    let instance_opts = RenderOptions { format: Format::Normalized, lang: None, ..opts.clone() };
    if format == TemporalFormat::Aggregated {
        for (name, series) in &entity.aggregates {
            if !proj.includes(name) {
                continue;
            }
            let rendered: Vec<Value> = series.iter().map(render_aggregate).collect();
            out.insert(ctx.compact_iri(name).into_owned(), one_or_many(rendered));
        }
        return out;
    }
    for (name, instances) in &entity.attrs {
        if !proj.includes(name) {
            continue;
        }
        let value = match format {
            // Cut away by paging: the series is there, with nothing in this page.
            TemporalFormat::TemporalValues if instances.is_empty() => {
                serde_json::json!({"type": "Property", "values": []})
            }
            TemporalFormat::TemporalValues => one_or_many(temporal_values(instances, time_property, ctx)),
            _ => Value::Array(
                instances
                    .iter()
                    .map(|i| {
                        let mut v = render_attribute(&i.attribute, ctx, &instance_opts);
                        if let Value::Object(m) = &mut v {
                            m.insert("instanceId".into(), Value::String(i.instance_id.clone()));
                            if let Some(d) = &i.deleted_at {
                                m.insert("deletedAt".into(), Value::String(d.clone()));
                            }
                        }
                        v
                    })
                    .collect(),
            ),
        };
        out.insert(ctx.compact_iri(name).into_owned(), value);
    }
    out
}

/// Reads a temporal entity as another broker answers it — the normalized representation, or
/// `aggregatedValues` when `aggregated` — back into the history model, names expanded with `ctx`:
/// what a distributed temporal query merges with the hub's own history.
pub fn read_temporal(body: &Map<String, Value>, ctx: &Context, aggregated: bool) -> Result<TemporalEntity> {
    let id = body.get("id").and_then(Value::as_str).ok_or_else(|| NgsiLdError::bad_request("no id"))?;
    crate::validate::check_uri(id, "the entity id")?;
    let types = body.get("type").map(|t| crate::expand::expand_types(t, ctx)).transpose()?.unwrap_or_default();
    let time = |v: Option<&Value>| v.and_then(Value::as_str).map(str::to_owned);
    let mut entity = TemporalEntity {
        id: id.to_owned(),
        types,
        scope: body.get("scope").map(crate::expand::parse_scope).transpose()?.unwrap_or_default(),
        created_at: time(body.get("createdAt")),
        modified_at: time(body.get("modifiedAt")),
        deleted_at: time(body.get("deletedAt")),
        ..Default::default()
    };
    for (key, value) in body {
        if matches!(
            key.as_str(),
            "id" | "@id" | "type" | "@type" | "scope" | "@context" | "createdAt" | "modifiedAt" | "deletedAt"
        ) {
            continue;
        }
        let name = crate::expand::expand_attribute_name(key, ctx)?;
        let items: Vec<&Value> = match value {
            Value::Array(items) => items.iter().collect(),
            one => vec![one],
        };
        for item in items {
            if aggregated {
                entity.aggregates.entry(name.clone()).or_default().push(read_aggregate(item)?);
            } else {
                entity.attrs.entry(name.clone()).or_default().push(read_instance(item, ctx)?);
            }
        }
    }
    Ok(entity)
}

fn read_instance(item: &Value, ctx: &Context) -> Result<Instance> {
    let raw = crate::expand::expand_raw_attribute(item, ctx)?;
    let mut attribute = crate::expand::build_attribute(&raw)?;
    let text = |member: &str| raw.get(member).and_then(Value::as_str).map(str::to_owned);
    attribute.created_at = text("createdAt");
    attribute.modified_at = text("modifiedAt");
    Ok(Instance { attribute, instance_id: text("instanceId").unwrap_or_default(), deleted_at: text("deletedAt") })
}

fn read_aggregate(item: &Value) -> Result<AggregateSeries> {
    let bad = || NgsiLdError::bad_request("an aggregated attribute needs a type and [value, start, end] triples");
    let map = item.as_object().ok_or_else(bad)?;
    let kind = map.get("type").and_then(Value::as_str).and_then(AttributeKind::from_name).ok_or_else(bad)?;
    let dataset_id = map.get("datasetId").and_then(Value::as_str).map(str::to_owned);
    let mut periods: Vec<AggregatePeriod> = Vec::new();
    for method in AggrMethod::ALL {
        for triple in map.get(method.name()).and_then(Value::as_array).into_iter().flatten() {
            let (Some(value), Some(start), Some(end)) =
                (triple.get(0), triple.get(1).and_then(Value::as_str), triple.get(2).and_then(Value::as_str))
            else {
                return Err(bad());
            };
            match periods.iter_mut().find(|p| p.start == start && p.end == end) {
                Some(period) => period.values.push((method, value.clone())),
                None => periods.push(AggregatePeriod {
                    start: start.to_owned(),
                    end: end.to_owned(),
                    values: vec![(method, value.clone())],
                }),
            }
        }
    }
    periods.sort_by(|a, b| a.start.cmp(&b.start));
    Ok(AggregateSeries { kind, dataset_id, periods })
}

/// The time of an instance's `[value, time]` pair: its time under the time property or, lacking
/// one, the time the history orders it by: a deletion's `deletedAt` (when the value stopped),
/// else its `createdAt`. Clause 4.5.9 makes the second element a time, never `null`.
fn pair_time(instance: &Instance, time_property: TimeProperty) -> Option<&str> {
    instance.time(time_property).or(instance.deleted_at.as_deref()).or(instance.attribute.created_at.as_deref())
}

/// The simplified temporal representation (clause 4.5.9): one object per datasetId with the
/// `[value, time]` pairs under the kind's plural member. An instance with no time at all (none
/// the hub writes) is left out rather than paired with `null`.
fn temporal_values(instances: &[Instance], time_property: TimeProperty, ctx: &Context) -> Vec<Value> {
    let mut series: IndexMap<(Option<String>, AttributeKind), Vec<Value>> = IndexMap::new();
    let opts = RenderOptions { format: Format::KeyValues, ..Default::default() };
    for instance in instances {
        let attr = &instance.attribute;
        let Some(time) = pair_time(instance, time_property).map(|t| Value::String(t.to_owned())) else { continue };
        let mut value = render_attribute(attr, ctx, &opts);
        // Values that are objects themselves keep their member name, so that a language map or a
        // JSON value cannot be mistaken for one another.
        if matches!(
            attr.kind,
            AttributeKind::LanguageProperty | AttributeKind::JsonProperty | AttributeKind::VocabProperty
        ) {
            let mut wrapped = Map::new();
            wrapped.insert(attr.kind.value_member().into(), value);
            value = Value::Object(wrapped);
        }
        series.entry((attr.dataset_id.clone(), attr.kind)).or_default().push(Value::Array(vec![value, time]));
    }
    series
        .into_iter()
        .map(|((dataset_id, kind), pairs)| {
            let mut out = Map::new();
            out.insert("type".into(), Value::String(kind.name().into()));
            out.insert(plural_member(kind).into(), Value::Array(pairs));
            if let Some(ds) = dataset_id {
                out.insert("datasetId".into(), Value::String(ds));
            }
            Value::Object(out)
        })
        .collect()
}

fn plural_member(kind: AttributeKind) -> &'static str {
    match kind {
        AttributeKind::Relationship => "objects",
        AttributeKind::LanguageProperty => "languageMaps",
        AttributeKind::VocabProperty => "vocabs",
        AttributeKind::JsonProperty => "jsons",
        AttributeKind::ListProperty => "valueLists",
        AttributeKind::ListRelationship => "objectLists",
        AttributeKind::Property | AttributeKind::GeoProperty => "values",
    }
}

fn render_aggregate(series: &AggregateSeries) -> Value {
    let mut out = Map::new();
    out.insert("type".into(), Value::String(series.kind.name().into()));
    if let Some(ds) = &series.dataset_id {
        out.insert("datasetId".into(), Value::String(ds.clone()));
    }
    let methods: Vec<AggrMethod> =
        series.periods.first().map(|p| p.values.iter().map(|(m, _)| *m).collect()).unwrap_or_default();
    for method in methods {
        let triples: Vec<Value> = series
            .periods
            .iter()
            .filter_map(|p| {
                let value = p.values.iter().find(|(m, _)| *m == method).map(|(_, v)| v.clone())?;
                Some(Value::Array(vec![value, Value::String(p.start.clone()), Value::String(p.end.clone())]))
            })
            .collect();
        out.insert(method.name().into(), Value::Array(triples));
    }
    Value::Object(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("PT1H").unwrap(), 3600.0);
        assert_eq!(parse_duration("P1D").unwrap(), 86400.0);
        assert_eq!(parse_duration("PT0S").unwrap(), 0.0);
        assert_eq!(parse_duration("P1DT2H30M").unwrap(), 86400.0 + 9000.0);
        assert_eq!(parse_duration("PT0.5S").unwrap(), 0.5);
        for bad in ["", "P", "PT", "1H", "PT1X", "P1H", "PT1", "P1..2D"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
        assert_eq!(parse_duration("P10000Y").unwrap(), MAX_DURATION_SECONDS);
        for huge in ["P99999999999999999999Y", "P10001Y", &format!("PT{}S", "9".repeat(400)), "P3650001D"] {
            let e = parse_duration(huge).unwrap_err();
            assert_eq!(e.kind, crate::ErrorKind::BadRequestData);
            assert!(e.detail.contains("longer than 10000 years"), "{huge}: {}", e.detail);
        }
        assert!(parse_duration("PT0.0000001S").unwrap_err().detail.contains("shorter than a microsecond"));
    }

    #[test]
    fn timerel() {
        let t = "2020-08-01T12:00:00Z";
        assert_eq!(
            TimeRel::parse(Some("after"), Some(t), None).unwrap(),
            Some(TimeRel::After("2020-08-01T12:00:00.000000Z".into()))
        );
        assert!(TimeRel::parse(Some("between"), Some(t), None).is_err());
        assert!(TimeRel::parse(Some("between"), Some(t), Some("2020-08-01T11:00:00Z")).is_err());
        assert!(TimeRel::parse(Some("around"), Some(t), None).is_err());
        assert!(TimeRel::parse(Some("before"), Some("yesterday"), None).is_err());
        assert!(TimeRel::parse(None, Some(t), None).is_err());
        assert_eq!(TimeRel::parse(None, None, None).unwrap(), None);
    }

    #[test]
    fn temporal_values_pair_a_deletion_with_its_deletion_time() {
        let ctx = ngsild_jsonld::core_context();
        let mut kept = Attribute::new(AttributeKind::Property, serde_json::json!(21));
        kept.observed_at = Some("2024-01-01T00:00:00Z".into());
        kept.created_at = Some("2024-01-01T00:00:01Z".into());
        let deleted_at = "2024-01-02T00:00:00.000000Z";
        let deletion = Instance {
            attribute: deletion_of(&kept, deleted_at),
            instance_id: "urn:ngsi-ld:Instance:2".into(),
            deleted_at: Some(deleted_at.into()),
        };
        let timeless = Instance {
            attribute: Attribute::new(AttributeKind::Property, serde_json::json!(1)),
            instance_id: "urn:ngsi-ld:Instance:3".into(),
            deleted_at: None,
        };
        let instances = vec![
            Instance { attribute: kept, instance_id: "urn:ngsi-ld:Instance:1".into(), deleted_at: None },
            deletion,
            timeless,
        ];
        let out = temporal_values(&instances, TimeProperty::ObservedAt, &ctx);
        assert_eq!(
            out,
            vec![serde_json::json!({
                "type": "Property",
                "values": [[21, "2024-01-01T00:00:00Z"], [NULL, deleted_at]],
            })]
        );
    }

    #[test]
    fn aggregation_methods() {
        assert_eq!(AggrMethod::parse_list("avg,max").unwrap(), vec![AggrMethod::Avg, AggrMethod::Max]);
        assert!(AggrMethod::parse_list("avg,median").is_err());
    }
}
