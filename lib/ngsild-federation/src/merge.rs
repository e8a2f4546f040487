//! One answer from what several sources hold of the same entities (clause 4.3.6.2, 5.7.1.4):
//! entities meet by id, their types and scopes unite, and where two sources hold the same
//! attribute instance (name and datasetId) the more recent one wins — by `observedAt`, then
//! `modifiedAt` — with auxiliary sources losing to all others.

use indexmap::IndexMap;
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

fn merge_into(into: &mut Entity, origins: &mut Origins, from: Entity, auxiliary: bool) {
    for t in from.types {
        if !into.types.contains(&t) {
            into.types.push(t);
        }
    }
    for s in from.scope {
        if !into.scope.contains(&s) {
            into.scope.push(s);
        }
    }
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

    #[test]
    fn auxiliary_sources_lose_even_when_newer() {
        let main =
            Fragments { entities: vec![entity("urn:a", &[("pm25", 1.0, "2024-01-01T00:00:00Z")])], auxiliary: false };
        let aux =
            Fragments { entities: vec![entity("urn:a", &[("pm25", 9.0, "2024-06-01T00:00:00Z")])], auxiliary: true };
        assert_eq!(value(&merge_entities(vec![aux, main])[0], "pm25"), json!(1.0));
    }
}
