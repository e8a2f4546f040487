//! One answer from what several sources hold of the same entities (clause 4.3.6.2, 5.7.1.4):
//! entities meet by id, their types and scopes unite, and where two sources hold the same
//! attribute instance (name and datasetId) the more recent one wins — by `observedAt`, then
//! `modifiedAt` — with auxiliary sources losing to all others.
//!
//! Histories (clause 5.7.3, 5.7.4) merge the same way by entity, but an attribute's instances
//! from every source are kept side by side in time order ([`merge_temporal`]).

use indexmap::IndexMap;
use ngsild_core::temporal::{TemporalEntity, TimeProperty};
use ngsild_core::{Attribute, Entity};

/// Entities from one source, and whether that source is only auxiliary.
pub struct Fragments {
    pub entities: Vec<Entity>,
    pub auxiliary: bool,
}

/// Which source each attribute instance (name, datasetId) came from: whether it was auxiliary.
type Origins = IndexMap<(String, Option<String>), bool>;

/// Merges the fragments of every source, the hub's own first; answers the entities by id.
pub fn merge_entities(sources: Vec<Fragments>) -> Vec<Entity> {
    let mut merged: IndexMap<String, (Entity, Origins)> = IndexMap::new();
    for source in sources {
        for entity in source.entities {
            match merged.get_mut(&entity.id) {
                None => {
                    let origins = entity
                        .attrs
                        .iter()
                        .flat_map(|(n, is)| {
                            is.iter().map(move |a| ((n.clone(), a.dataset_id.clone()), source.auxiliary))
                        })
                        .collect();
                    merged.insert(entity.id.clone(), (entity, origins));
                }
                Some((into, origins)) => merge_into(into, origins, entity, source.auxiliary),
            }
        }
    }
    let mut out: Vec<Entity> = merged.into_values().map(|(e, _)| e).collect();
    out.sort_by(|a, b| a.id.cmp(&b.id));
    out
}

/// Adds to `into` what `from` has and it lacks, in `from`'s order.
fn union_into(into: &mut Vec<String>, from: Vec<String>) {
    for item in from {
        if !into.contains(&item) {
            into.push(item);
        }
    }
}

fn merge_into(into: &mut Entity, origins: &mut Origins, from: Entity, auxiliary: bool) {
    union_into(&mut into.types, from.types);
    union_into(&mut into.scope, from.scope);
    into.created_at = min_time(into.created_at.take(), from.created_at);
    into.modified_at = max_time(into.modified_at.take(), from.modified_at);
    for (name, instances) in from.attrs {
        for attr in instances {
            let key = (name.clone(), attr.dataset_id.clone());
            let held = into.attrs.entry(name.clone()).or_default();
            match held.iter_mut().find(|a| a.dataset_id == attr.dataset_id) {
                None => {
                    held.push(attr);
                    origins.insert(key, auxiliary);
                }
                Some(current) => {
                    let current_auxiliary = origins.get(&key).copied().unwrap_or(false);
                    if wins(&attr, auxiliary, current, current_auxiliary) {
                        *current = attr;
                        origins.insert(key, auxiliary);
                    }
                }
            }
        }
    }
}

/// Whether `challenger` replaces `current`.
fn wins(challenger: &Attribute, challenger_auxiliary: bool, current: &Attribute, current_auxiliary: bool) -> bool {
    if challenger_auxiliary != current_auxiliary {
        return current_auxiliary;
    }
    let stamp = |a: &Attribute| (a.observed_at.clone(), a.modified_at.clone());
    let (c_obs, c_mod) = stamp(challenger);
    let (h_obs, h_mod) = stamp(current);
    match (later(&c_obs, &h_obs), later(&h_obs, &c_obs)) {
        (true, _) => true,
        (_, true) => false,
        _ => later(&c_mod, &h_mod),
    }
}

/// Temporal entities from one source, and whether that source is only auxiliary.
pub struct TemporalFragments {
    pub entities: Vec<TemporalEntity>,
    pub auxiliary: bool,
}

/// Merges the histories of every source, the hub's own first; answers the entities by id.
///
/// An attribute's series (name and datasetId) takes the instances of every source that is not
/// auxiliary; an auxiliary source's series counts only where no other source has that series.
/// An instance another source already gave — same datasetId, time under `property` and value,
/// as when an inclusive source holds a copy of the hub's writes — is kept once. Instances end
/// up ordered by their time under `property`, the newest first when `newest_first` (what
/// `lastN` cuts from). Aggregated series cannot be combined exactly (an average of averages is
/// not the average), so where two sources aggregated the same series the first one's stands.
pub fn merge_temporal(
    sources: Vec<TemporalFragments>,
    property: TimeProperty,
    newest_first: bool,
) -> Vec<TemporalEntity> {
    let mut merged: IndexMap<String, (TemporalEntity, Origins)> = IndexMap::new();
    for source in sources {
        for entity in source.entities {
            let (into, origins) = merged.entry(entity.id.clone()).or_insert_with(|| {
                let empty = TemporalEntity { id: entity.id.clone(), ..Default::default() };
                (empty, Origins::new())
            });
            merge_history(into, origins, entity, source.auxiliary);
        }
    }
    let time_of = |i: &ngsild_core::temporal::Instance| {
        i.time(property).or(i.attribute.created_at.as_deref()).and_then(ngsild_core::time::parse_datetime)
    };
    let mut out: Vec<TemporalEntity> = merged.into_values().map(|(e, _)| e).collect();
    for entity in &mut out {
        for instances in entity.attrs.values_mut() {
            instances.sort_by_key(|i| time_of(i));
            if newest_first {
                instances.reverse();
            }
        }
    }
    out.sort_by(|a, b| a.id.cmp(&b.id));
    out
}

fn merge_history(into: &mut TemporalEntity, origins: &mut Origins, from: TemporalEntity, auxiliary: bool) {
    union_into(&mut into.types, from.types);
    union_into(&mut into.scope, from.scope);
    into.created_at = min_time(into.created_at.take(), from.created_at);
    into.modified_at = max_time(into.modified_at.take(), from.modified_at);
    into.deleted_at = into.deleted_at.take().or(from.deleted_at);
    for (name, instances) in from.attrs {
        let held = into.attrs.entry(name.clone()).or_default();
        let mut series: Vec<Option<String>> = instances.iter().map(|i| i.attribute.dataset_id.clone()).collect();
        series.dedup();
        for dataset_id in series {
            let key = (name.clone(), dataset_id.clone());
            match origins.get(&key).copied() {
                // Held by a source that is not auxiliary: an auxiliary one adds nothing to it.
                Some(false) if auxiliary => continue,
                // Held by an auxiliary source only: any other source's series replaces it.
                Some(true) if !auxiliary => held.retain(|i| i.attribute.dataset_id != dataset_id),
                _ => {}
            }
            origins.insert(key, auxiliary);
            for instance in instances.iter().filter(|i| i.attribute.dataset_id == dataset_id) {
                let same = |i: &ngsild_core::temporal::Instance| {
                    i.attribute.dataset_id == instance.attribute.dataset_id
                        && i.attribute.observed_at == instance.attribute.observed_at
                        && i.attribute.value == instance.attribute.value
                        && i.deleted_at == instance.deleted_at
                };
                if !held.iter().any(same) {
                    held.push(instance.clone());
                }
            }
        }
    }
    for (name, series) in from.aggregates {
        let held = into.aggregates.entry(name).or_default();
        for one in series {
            if !held.iter().any(|h| h.dataset_id == one.dataset_id) {
                held.push(one);
            }
        }
    }
}

fn later(a: &Option<String>, b: &Option<String>) -> bool {
    let parse = |s: &Option<String>| s.as_deref().and_then(ngsild_core::time::parse_datetime);
    match (parse(a), parse(b)) {
        (Some(a), Some(b)) => a > b,
        (Some(_), None) => true,
        _ => false,
    }
}

fn min_time(a: Option<String>, b: Option<String>) -> Option<String> {
    match (&a, &b) {
        (Some(_), Some(_)) => {
            if later(&a, &b) {
                b
            } else {
                a
            }
        }
        _ => a.or(b),
    }
}

fn max_time(a: Option<String>, b: Option<String>) -> Option<String> {
    match (&a, &b) {
        (Some(_), Some(_)) => {
            if later(&b, &a) {
                b
            } else {
                a
            }
        }
        _ => a.or(b),
    }
}

/// How many entities a distributed query matches: the hub's count plus each source's, less the
/// entities already counted (those an earlier answer listed).
pub struct MergedCount {
    pub total: usize,
    seen: std::collections::HashSet<String>,
}

impl MergedCount {
    pub fn new<'a>(local_ids: impl Iterator<Item = &'a str>, local_total: Option<usize>) -> MergedCount {
        let seen: std::collections::HashSet<String> = local_ids.map(str::to_owned).collect();
        MergedCount { total: local_total.unwrap_or(seen.len()), seen }
    }

    /// Adds a source's answer: the ids it listed and the count it gave, if any.
    pub fn add<'a>(&mut self, ids: impl Iterator<Item = &'a str>, count: Option<usize>) {
        let (mut listed, mut fresh) = (0, 0);
        for id in ids {
            listed += 1;
            if self.seen.insert(id.to_owned()) {
                fresh += 1;
            }
        }
        self.total += count.map(|c| c.saturating_sub(listed - fresh)).unwrap_or(fresh);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ngsild_core::AttributeKind;
    use serde_json::json;

    fn entity(id: &str, attrs: &[(&str, f64, &str)]) -> Entity {
        let mut e = Entity::new(id, vec!["T".into()]);
        for (name, value, observed) in attrs {
            let mut a = Attribute::new(AttributeKind::Property, json!(value));
            a.observed_at = Some(observed.to_string());
            e.attrs.insert(name.to_string(), vec![a]);
        }
        e
    }

    fn value(e: &Entity, name: &str) -> serde_json::Value {
        e.attrs[name][0].value.clone()
    }

    #[test]
    fn entities_meet_by_id_and_keep_every_attribute() {
        let local =
            Fragments { entities: vec![entity("urn:b", &[("pm25", 1.0, "2024-01-01T00:00:00Z")])], auxiliary: false };
        let remote = Fragments {
            entities: vec![
                entity("urn:a", &[("pm25", 2.0, "2024-01-01T00:00:00Z")]),
                entity("urn:b", &[("no2", 3.0, "2024-01-01T00:00:00Z")]),
            ],
            auxiliary: false,
        };
        let merged = merge_entities(vec![local, remote]);
        assert_eq!(merged.iter().map(|e| e.id.as_str()).collect::<Vec<_>>(), ["urn:a", "urn:b"]);
        assert_eq!(merged[1].attrs.len(), 2);
    }

    #[test]
    fn the_most_recent_observation_wins() {
        let older =
            Fragments { entities: vec![entity("urn:a", &[("pm25", 1.0, "2024-01-01T00:00:00Z")])], auxiliary: false };
        let newer =
            Fragments { entities: vec![entity("urn:a", &[("pm25", 2.0, "2024-01-02T00:00:00Z")])], auxiliary: false };
        assert_eq!(value(&merge_entities(vec![older, newer])[0], "pm25"), json!(2.0));
        let older =
            Fragments { entities: vec![entity("urn:a", &[("pm25", 1.0, "2024-01-01T00:00:00Z")])], auxiliary: false };
        let newer =
            Fragments { entities: vec![entity("urn:a", &[("pm25", 2.0, "2024-01-02T00:00:00Z")])], auxiliary: false };
        assert_eq!(value(&merge_entities(vec![newer, older])[0], "pm25"), json!(2.0));
    }

    fn history(id: &str, instances: &[(f64, &str)]) -> TemporalEntity {
        let mut e = TemporalEntity { id: id.into(), types: vec!["T".into()], ..Default::default() };
        let series = instances
            .iter()
            .map(|(value, observed)| {
                let mut a = Attribute::new(AttributeKind::Property, json!(value));
                a.observed_at = Some(observed.to_string());
                ngsild_core::temporal::Instance { attribute: a, instance_id: String::new(), deleted_at: None }
            })
            .collect();
        e.attrs.insert("pm25".into(), series);
        e
    }

    fn values(e: &TemporalEntity) -> Vec<serde_json::Value> {
        e.attrs["pm25"].iter().map(|i| i.attribute.value.clone()).collect()
    }

    #[test]
    fn histories_interleave_in_time_and_copies_count_once() {
        let local = TemporalFragments {
            entities: vec![history("urn:a", &[(1.0, "2024-01-01T00:00:00Z"), (3.0, "2024-01-03T00:00:00Z")])],
            auxiliary: false,
        };
        let remote = TemporalFragments {
            entities: vec![
                history("urn:a", &[(2.0, "2024-01-02T00:00:00Z"), (3.0, "2024-01-03T00:00:00Z")]),
                history("urn:b", &[(9.0, "2024-01-01T00:00:00Z")]),
            ],
            auxiliary: false,
        };
        let merged = merge_temporal(vec![local, remote], TimeProperty::ObservedAt, false);
        assert_eq!(merged.iter().map(|e| e.id.as_str()).collect::<Vec<_>>(), ["urn:a", "urn:b"]);
        assert_eq!(values(&merged[0]), [json!(1.0), json!(2.0), json!(3.0)]);
        let again = merge_temporal(
            vec![TemporalFragments { entities: vec![merged[0].clone()], auxiliary: false }],
            TimeProperty::ObservedAt,
            true,
        );
        assert_eq!(values(&again[0]), [json!(3.0), json!(2.0), json!(1.0)], "newest first for lastN");
    }

    #[test]
    fn an_auxiliary_history_only_fills_gaps() {
        let aux =
            TemporalFragments { entities: vec![history("urn:a", &[(9.0, "2024-06-01T00:00:00Z")])], auxiliary: true };
        let main =
            TemporalFragments { entities: vec![history("urn:a", &[(1.0, "2024-01-01T00:00:00Z")])], auxiliary: false };
        let merged = merge_temporal(vec![aux, main], TimeProperty::ObservedAt, false);
        assert_eq!(values(&merged[0]), [json!(1.0)]);
    }

    #[test]
    fn auxiliary_sources_lose_even_when_newer() {
        let main =
            Fragments { entities: vec![entity("urn:a", &[("pm25", 1.0, "2024-01-01T00:00:00Z")])], auxiliary: false };
        let aux =
            Fragments { entities: vec![entity("urn:a", &[("pm25", 9.0, "2024-06-01T00:00:00Z")])], auxiliary: true };
        assert_eq!(value(&merge_entities(vec![aux, main])[0], "pm25"), json!(1.0));
    }

    #[test]
    fn a_merged_count_adds_each_source_less_what_was_already_counted() {
        // The hub counted 3 and listed a, b; a source counts 4 and lists b, c: b is counted once.
        let mut count = MergedCount::new(["a", "b"].into_iter(), Some(3));
        count.add(["b", "c"].into_iter(), Some(4));
        assert_eq!(count.total, 3 + 4 - 1);
        // A source without a count adds what it lists that is new.
        count.add(["c", "d", "e"].into_iter(), None);
        assert_eq!(count.total, 8);
        // Without a local count, the local ids are the count.
        let mut count = MergedCount::new(["a"].into_iter(), None);
        count.add(["a"].into_iter(), Some(0));
        assert_eq!(count.total, 1, "a count below what was listed adds nothing");
    }
}
