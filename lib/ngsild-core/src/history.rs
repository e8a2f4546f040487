//! The NGSI-LD rules of an entity's history (clause 4.18, 5.5.11), for every backend to share:
//! what a change of the current entity adds to the history ([`recorded`]), how temporal
//! instances written through the temporal API fold into the current entity ([`fold_instances`]),
//! and how aggregated temporal values accumulate per datasetId and period ([`SeriesAccumulator`]).
//!
//! A backend stores the instances these functions name and streams its rows into the
//! accumulator; it decides nothing about what a history holds.

/// How a recorded instance is named when its store numbers it: `urn:ngsi-ld:Instance:<seq>`.
pub const INSTANCE_PREFIX: &str = "urn:ngsi-ld:Instance:";

/// The instanceId of the `seq`-th recorded instance, or the one it kept from the store it was
/// copied from (`cityhub migrate`).
pub fn instance_id(seq: i64, kept: Option<String>) -> String {
    kept.unwrap_or_else(|| format!("{INSTANCE_PREFIX}{seq}"))
}

use std::collections::{BTreeMap, HashSet};

use chrono::SecondsFormat;
use indexmap::IndexMap;
use serde_json::Value;

use crate::model::{Attribute, AttributeKind, Entity};
use crate::temporal::{deletion_of, AggrMethod, AggregatePeriod, AggregateSeries};
use crate::time::{from_micros, max_datetime, micros_of, parse_datetime};

/// The columns every backend's history row keeps for one instance beside its JSON document: the
/// value as JSON text (what distinct counts and the minimum and maximum of texts compare), the
/// number aggregations add up (a boolean counts as 1 or 0), and its times in microseconds
/// ([`crate::time::micros`]); a missing createdAt or modifiedAt reads as `now_micros`.
#[derive(Debug, Clone, PartialEq)]
pub struct InstanceColumns {
    pub dataset_id: Option<String>,
    pub val: String,
    pub num: Option<f64>,
    pub observed: Option<i64>,
    pub created: i64,
    pub modified: i64,
    pub deleted: Option<i64>,
}

impl InstanceColumns {
    pub fn of(attr: &Attribute, deleted_at: Option<&str>, now_micros: i64) -> InstanceColumns {
        let num = match &attr.value {
            Value::Number(n) => n.as_f64(),
            Value::Bool(b) => Some(if *b { 1.0 } else { 0.0 }),
            _ => None,
        };
        InstanceColumns {
            dataset_id: attr.dataset_id.clone(),
            val: attr.value.to_string(),
            num,
            observed: micros_of(attr.observed_at.as_deref()),
            created: micros_of(attr.created_at.as_deref()).unwrap_or(now_micros),
            modified: micros_of(attr.modified_at.as_deref()).unwrap_or(now_micros),
            deleted: micros_of(deleted_at),
        }
    }
}

/// One instance to append to the history of attribute `attr` (expanded name).
#[derive(Debug, Clone, PartialEq)]
pub struct Recorded {
    pub attr: String,
    pub attribute: Attribute,
    /// Set for an instance that records a deletion: when it happened.
    pub deleted_at: Option<String>,
}

/// What a change of the current entity from `before` to `after` (either absent) adds to its
/// history at `now`: every instance of `after` that is new or differs from the instance of the
/// same attribute and datasetId in `before`; for every instance of `before` that is gone, its
/// deletion (`temporal::deletion_of`, with `deleted_at`); and when the scope went, an instance
/// of `scope` whose value is the empty list (as clause 4.18 shows deleted scopes). An unchanged
/// instance adds nothing.
pub fn recorded(before: Option<&Entity>, after: Option<&Entity>, now: &str) -> Vec<Recorded> {
    let mut out = Vec::new();
    if let Some(after) = after {
        for (name, instances) in &after.attrs {
            for attr in instances {
                let previous = before.and_then(|b| b.instance(name, attr.dataset_id.as_deref()));
                if previous != Some(attr) {
                    out.push(Recorded { attr: name.clone(), attribute: attr.clone(), deleted_at: None });
                }
            }
        }
    }
    if let Some(before) = before {
        for (name, instances) in &before.attrs {
            for attr in instances {
                let kept = after.and_then(|a| a.instance(name, attr.dataset_id.as_deref())).is_some();
                if !kept {
                    out.push(Recorded {
                        attr: name.clone(),
                        attribute: deletion_of(attr, now),
                        deleted_at: Some(now.to_owned()),
                    });
                }
            }
        }
        if after.is_some_and(|a| a.scope.is_empty() && !before.scope.is_empty()) {
            let mut gone = Attribute::new(AttributeKind::Property, Value::Array(Vec::new()));
            gone.created_at = Some(now.to_owned());
            gone.modified_at = Some(now.to_owned());
            out.push(Recorded {
                attr: crate::ops::SCOPE_IRI.to_owned(),
                attribute: gone,
                deleted_at: Some(now.to_owned()),
            });
        }
    }
    out
}

/// What adding temporal instances does: the entity's next current state and the instances to
/// record, in the order given.
#[derive(Debug, Clone, PartialEq)]
pub struct Fold {
    pub entity: Entity,
    /// (attribute, instance stamped with `createdAt`/`modifiedAt`). An instance of a series
    /// (attribute and datasetId) with the same `observedAt` as a recorded one replaces it: the
    /// backend removes the earlier one before appending this.
    pub instances: Vec<(String, Attribute)>,
}

/// Folds the temporal instances of `input` (several per attribute and datasetId allowed) into
/// the current entity `current` (`None`: it is created, with `input`'s types and `createdAt`
/// `now`): the input's types are added, a non-empty scope replaces the scope, and the current
/// state of each attribute and datasetId becomes its latest instance by `observedAt` (of equal
/// ones, the last given; one without `observedAt` counts as oldest).
pub fn fold_instances(current: Option<&Entity>, mut input: Entity, now: &str) -> Fold {
    let mut entity = current.cloned().unwrap_or_else(|| {
        let mut e = Entity::new(input.id.clone(), input.types.clone());
        e.created_at = Some(now.to_owned());
        e
    });
    for t in &input.types {
        if !entity.types.contains(t) {
            entity.types.push(t.clone());
        }
    }
    if !input.scope.is_empty() {
        entity.scope = input.scope.clone();
    }
    let observed = |a: &Attribute| a.observed_at.as_deref().and_then(parse_datetime).map(|t| t.timestamp_micros());
    let mut instances = Vec::new();
    for (name, given) in input.attrs.iter_mut() {
        let mut latest: IndexMap<Option<String>, Attribute> = IndexMap::new();
        for attr in given.iter_mut() {
            attr.stamp(now);
            instances.push((name.clone(), attr.clone()));
            if latest.get(&attr.dataset_id).is_none_or(|l| observed(attr) >= observed(l)) {
                latest.insert(attr.dataset_id.clone(), attr.clone());
            }
        }
        for (_, attr) in latest {
            entity.put_instance(name, attr, now);
        }
    }
    entity.modified_at = Some(now.to_owned());
    Fold { entity, instances }
}

/// The aggregates of one datasetId's instances in one period.
#[derive(Debug, Clone, Default)]
pub struct Accumulator {
    total: i64,
    numeric: i64,
    /// Kahan-Babuska-Neumaier sums, as SQLite's SUM and AVG keep them.
    sum: (f64, f64),
    sumsq: (f64, f64),
    min: Option<f64>,
    max: Option<f64>,
    distinct: HashSet<String>,
    /// Least and greatest value text (bytewise), for min/max of a period without numbers.
    text: Option<(String, String)>,
}

fn add_compensated((sum, error): &mut (f64, f64), x: f64) {
    let t = *sum + x;
    *error += if sum.abs() >= x.abs() { (*sum - t) + x } else { (x - t) + *sum };
    *sum = t;
}

impl Accumulator {
    /// One instance: `number` its value as a number (a number, or a boolean as 1/0; None
    /// otherwise), `value` its value as JSON text when the backend reads it (distinct counts,
    /// and min/max of a period without numbers, need it).
    pub fn add(&mut self, number: Option<f64>, value: Option<&str>) {
        self.total += 1;
        if let Some(n) = number {
            self.numeric += 1;
            add_compensated(&mut self.sum, n);
            add_compensated(&mut self.sumsq, n * n);
            self.min = Some(self.min.map_or(n, |m| m.min(n)));
            self.max = Some(self.max.map_or(n, |m| m.max(n)));
        }
        if let Some(v) = value {
            if !self.distinct.contains(v) {
                self.distinct.insert(v.to_owned());
            }
            self.text = Some(match self.text.take() {
                None => (v.to_owned(), v.to_owned()),
                Some((lo, hi)) => {
                    (if v < lo.as_str() { v.to_owned() } else { lo }, if v > hi.as_str() { v.to_owned() } else { hi })
                }
            });
        }
    }

    /// Whether the period has no number (its min/max are those of the value texts).
    pub fn is_textual(&self) -> bool {
        self.numeric == 0
    }

    /// The least and greatest value text, computed by the backend (when it did not pass values).
    pub fn set_text_extremes(&mut self, min: String, max: String) {
        self.text = Some((min, max));
    }

    /// Sum, average and sum of squares; none without a number, as in SQL.
    fn sums(&self) -> (Option<f64>, Option<f64>, Option<f64>) {
        if self.numeric == 0 {
            return (None, None, None);
        }
        let sum = self.sum.0 + self.sum.1;
        (Some(sum), Some(sum / self.numeric as f64), Some(self.sumsq.0 + self.sumsq.1))
    }

    /// The value of one aggregation method (clause 4.5.19): `totalCount` and `distinctCount`
    /// count instances; `sum`, `avg`, `sumsq`, `stddev` (population) are over the numbers and
    /// null without one; `min`/`max` over the numbers, or over the values (compared as JSON text)
    /// in a period without numbers.
    pub fn value(&self, method: AggrMethod) -> Value {
        let (sum, avg, sumsq) = self.sums();
        let number = |v: Option<f64>| v.map(Value::from).unwrap_or(Value::Null);
        let text = |pick: fn(&(String, String)) -> &String| {
            self.text.as_ref().and_then(|t| serde_json::from_str::<Value>(pick(t)).ok()).unwrap_or(Value::Null)
        };
        match method {
            AggrMethod::TotalCount => Value::from(self.total),
            AggrMethod::DistinctCount => Value::from(self.distinct.len()),
            AggrMethod::Sum => number(sum),
            AggrMethod::Avg => number(avg),
            AggrMethod::Min if self.numeric == 0 => text(|t| &t.0),
            AggrMethod::Max if self.numeric == 0 => text(|t| &t.1),
            AggrMethod::Min => number(self.min),
            AggrMethod::Max => number(self.max),
            AggrMethod::Sumsq => number(sumsq),
            AggrMethod::Stddev => match (sumsq, avg) {
                (Some(sq), Some(mean)) if self.numeric > 0 => {
                    Value::from((sq / self.numeric as f64 - mean * mean).max(0.0).sqrt())
                }
                _ => Value::Null,
            },
        }
    }
}

/// The accumulators of one attribute's history: per datasetId, per period. Periods are
/// `period` long from `start` (the window's start, or the series' first instance); with a
/// period of 0 the whole window is one period. Times are microseconds since the Unix epoch.
#[derive(Debug, Clone)]
pub struct SeriesAccumulator {
    start: i64,
    period: i64,
    /// In the order datasetIds first appear; sorted when finished.
    by_dataset: Vec<(Option<String>, BTreeMap<i64, Accumulator>)>,
}

impl SeriesAccumulator {
    /// `period_seconds`: the period length (0: one period).
    pub fn new(start: i64, period_seconds: f64) -> SeriesAccumulator {
        SeriesAccumulator { start, period: (period_seconds * 1e6) as i64, by_dataset: Vec::new() }
    }

    /// The period length in microseconds (0: one period).
    pub fn period_micros(&self) -> i64 {
        self.period
    }

    /// The period (0, 1, ...) an instance at time `t` falls in.
    pub fn bucket(&self, t: i64) -> i64 {
        if self.period > 0 {
            (t - self.start).div_euclid(self.period)
        } else {
            0
        }
    }

    /// The accumulator of a datasetId's period, made on first use.
    pub fn at(&mut self, dataset_id: Option<&str>, bucket: i64) -> &mut Accumulator {
        let slot = match self.by_dataset.iter().position(|(d, _)| d.as_deref() == dataset_id) {
            Some(slot) => slot,
            None => {
                self.by_dataset.push((dataset_id.map(str::to_owned), BTreeMap::new()));
                self.by_dataset.len() - 1
            }
        };
        self.by_dataset[slot].1.entry(bucket).or_default()
    }

    /// One instance at time `t` (see [`Accumulator::add`]).
    pub fn add(&mut self, dataset_id: Option<&str>, t: i64, number: Option<f64>, value: Option<&str>) {
        let bucket = self.bucket(t);
        self.at(dataset_id, bucket).add(number, value);
    }

    /// Whether some period has no number (its min/max come from the value texts).
    pub fn has_textual_period(&self) -> bool {
        self.by_dataset.iter().any(|(_, periods)| periods.values().any(Accumulator::is_textual))
    }

    /// The aggregated series, datasetIds in order (the default instance first), periods in time
    /// order, with the values of `methods`; `end` closes the one period of a zero period length.
    pub fn finish(mut self, kind: AttributeKind, methods: &[AggrMethod], end: i64) -> Vec<AggregateSeries> {
        let datetime = |micros: i64| from_micros(micros).unwrap_or_else(max_datetime);
        let stamp = |micros: i64| datetime(micros).to_rfc3339_opts(SecondsFormat::AutoSi, true);
        self.by_dataset.sort_by(|a, b| a.0.cmp(&b.0));
        let (start, period) = (self.start, self.period);
        self.by_dataset
            .into_iter()
            .map(|(dataset_id, periods)| AggregateSeries {
                kind,
                dataset_id,
                periods: periods
                    .into_iter()
                    .map(|(bucket, acc)| {
                        let (from, to) = if period > 0 {
                            // Checked: a long period after a late start ends past year 9999
                            // (clamped there).
                            let s = period.checked_mul(bucket).and_then(|o| start.checked_add(o)).unwrap_or(i64::MAX);
                            (s, s.checked_add(period).unwrap_or(i64::MAX))
                        } else {
                            (start, end)
                        };
                        AggregatePeriod {
                            start: stamp(from),
                            end: stamp(to),
                            values: methods.iter().map(|m| (*m, acc.value(*m))).collect(),
                        }
                    })
                    .collect(),
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const NOW: &str = "2024-01-01T00:00:00Z";

    fn attr(value: Value) -> Attribute {
        Attribute::new(AttributeKind::Property, value)
    }

    fn with_dataset(mut a: Attribute, id: &str) -> Attribute {
        a.dataset_id = Some(id.to_owned());
        a
    }

    fn observed(mut a: Attribute, at: &str) -> Attribute {
        a.observed_at = Some(at.to_owned());
        a
    }

    fn entity(attrs: Vec<(&str, Attribute)>) -> Entity {
        let mut e = Entity::new("urn:e:1", vec!["T".into()]);
        for (name, a) in attrs {
            e.attrs.entry(name.to_owned()).or_default().push(a);
        }
        e
    }

    #[test]
    fn a_change_records_new_and_changed_instances_and_deletions() {
        let before =
            entity(vec![("a", attr(json!(1))), ("b", attr(json!(2))), ("b", with_dataset(attr(json!(3)), "d"))]);
        let after = entity(vec![("a", attr(json!(1))), ("b", attr(json!(5))), ("c", attr(json!(6)))]);
        let got = recorded(Some(&before), Some(&after), NOW);
        let summary: Vec<(&str, Value, Option<&str>, Option<&str>)> = got
            .iter()
            .map(|r| {
                (r.attr.as_str(), r.attribute.value.clone(), r.attribute.dataset_id.as_deref(), r.deleted_at.as_deref())
            })
            .collect();
        assert_eq!(
            summary,
            vec![
                ("b", json!(5), None, None),
                ("c", json!(6), None, None),
                ("b", json!(crate::temporal::NULL), Some("d"), Some(NOW)),
            ],
            "a is unchanged; b's datasetId d went"
        );
        // Creation records everything; deletion records a deletion of everything.
        assert_eq!(recorded(None, Some(&after), NOW).len(), 3);
        let deleted = recorded(Some(&before), None, NOW);
        assert_eq!(deleted.len(), 3);
        assert!(deleted.iter().all(|r| r.deleted_at.as_deref() == Some(NOW)));
        assert!(recorded(Some(&after), Some(&after), NOW).is_empty());
    }

    #[test]
    fn a_scope_that_went_is_recorded_as_an_empty_list() {
        let mut before = entity(vec![]);
        before.scope = vec!["/a".into()];
        let after = entity(vec![]);
        let got = recorded(Some(&before), Some(&after), NOW);
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].attr, crate::ops::SCOPE_IRI);
        assert_eq!(got[0].attribute.value, json!([]));
        assert_eq!(got[0].deleted_at.as_deref(), Some(NOW));
    }

    #[test]
    fn instances_fold_into_the_current_entity_latest_observation_first() {
        let input = entity(vec![
            ("a", observed(attr(json!(2)), "2024-01-02T00:00:00Z")),
            ("a", observed(attr(json!(1)), "2024-01-01T00:00:00Z")),
            ("a", with_dataset(observed(attr(json!(7)), "2023-01-01T00:00:00Z"), "d")),
        ]);
        let fold = fold_instances(None, input, NOW);
        assert_eq!(fold.instances.len(), 3, "every instance is recorded");
        assert!(fold.instances.iter().all(|(_, a)| a.created_at.as_deref() == Some(NOW)));
        assert_eq!(
            fold.entity.instance("a", None).map(|a| a.value.clone()),
            Some(json!(2)),
            "the latest, not the last"
        );
        assert_eq!(fold.entity.instance("a", Some("d")).map(|a| a.value.clone()), Some(json!(7)));
        assert_eq!(fold.entity.created_at.as_deref(), Some(NOW));
        // Into an existing entity: types are added, the other attributes stay.
        let mut current = entity(vec![("b", attr(json!(0)))]);
        current.created_at = Some("2000-01-01T00:00:00Z".into());
        let mut input = Entity::new("urn:e:1", vec!["U".into()]);
        input.attrs.insert("a".into(), vec![attr(json!(3))]);
        let fold = fold_instances(Some(&current), input, NOW);
        assert_eq!(fold.entity.types, vec!["T".to_owned(), "U".to_owned()]);
        assert!(fold.entity.attrs.contains_key("b") && fold.entity.attrs.contains_key("a"));
        assert_eq!(fold.entity.created_at.as_deref(), Some("2000-01-01T00:00:00Z"));
        assert_eq!(fold.entity.modified_at.as_deref(), Some(NOW));
    }

    #[test]
    fn accumulation_per_dataset_and_period() {
        const H: i64 = 3_600_000_000;
        let mut acc = SeriesAccumulator::new(0, 3600.0);
        for (t, n) in [(0, 1.0), (H / 2, 3.0), (H, 10.0)] {
            acc.add(None, t, Some(n), Some(&n.to_string()));
        }
        acc.add(Some("d"), 0, None, Some("\"b\""));
        acc.add(Some("d"), 1, None, Some("\"a\""));
        assert!(acc.has_textual_period());
        let methods = [AggrMethod::TotalCount, AggrMethod::Sum, AggrMethod::Avg, AggrMethod::Min, AggrMethod::Max];
        let series = acc.finish(AttributeKind::Property, &methods, 0);
        assert_eq!(series.len(), 2);
        assert_eq!(series[0].dataset_id, None, "the default instance first");
        let first = &series[0].periods[0];
        assert_eq!((first.start.as_str(), first.end.as_str()), ("1970-01-01T00:00:00Z", "1970-01-01T01:00:00Z"));
        let values: Vec<Value> = first.values.iter().map(|(_, v)| v.clone()).collect();
        assert_eq!(values, vec![json!(2), json!(4.0), json!(2.0), json!(1.0), json!(3.0)]);
        assert_eq!(series[0].periods[1].values[0].1, json!(1));
        let text: Vec<Value> = series[1].periods[0].values.iter().map(|(_, v)| v.clone()).collect();
        assert_eq!(text, vec![json!(2), Value::Null, Value::Null, json!("a"), json!("b")]);
    }

    #[test]
    fn statistics_are_compensated_and_population_based() {
        let mut acc = Accumulator::default();
        for n in [2.0, 4.0, 4.0, 4.0, 5.0, 5.0, 7.0, 9.0] {
            acc.add(Some(n), Some(&n.to_string()));
        }
        assert_eq!(acc.value(AggrMethod::Stddev), json!(2.0));
        assert_eq!(acc.value(AggrMethod::DistinctCount), json!(5));
        assert_eq!(acc.value(AggrMethod::Sumsq), json!(232.0));
        let mut tiny = Accumulator::default();
        for n in [1e16, 1.0, -1e16] {
            tiny.add(Some(n), None);
        }
        assert_eq!(tiny.value(AggrMethod::Sum), json!(1.0), "Neumaier summation keeps the 1");
        assert_eq!(Accumulator::default().value(AggrMethod::Avg), Value::Null);
    }

    #[test]
    fn one_period_spans_the_window_and_late_periods_clamp_at_year_9999() {
        let mut acc = SeriesAccumulator::new(5_000_000, 0.0);
        acc.add(None, 9_000_000, Some(1.0), None);
        let series = acc.finish(AttributeKind::Property, &[AggrMethod::TotalCount], 60_000_000);
        assert_eq!(series[0].periods[0].start, "1970-01-01T00:00:05Z");
        assert_eq!(series[0].periods[0].end, "1970-01-01T00:01:00Z");
        let mut acc = SeriesAccumulator::new(253_402_300_000_000_000, 3.0e9);
        acc.add(None, 253_402_300_000_000_000, Some(1.0), None);
        let series = acc.finish(AttributeKind::Property, &[AggrMethod::TotalCount], 0);
        assert!(series[0].periods[0].end.starts_with("9999-12-31"), "{}", series[0].periods[0].end);
    }
}
