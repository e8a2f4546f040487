//! The write of an imported or polled entity: an upsert that adds and overwrites the given
//! attributes and keeps the others (batch upsert with `options=update`, clause 5.6.8), except that
//! an attribute whose content is unchanged keeps its stored instance as it is (its `modifiedAt`
//! too), so a second import of the same data, or a poll of an unchanged source, records no new
//! history (`ngsild_core::history::recorded` compares instances).

use cityhub_storage::{Modified, Modifier};
use ngsild_core::expand::{expand_entity, EntityInput};
use ngsild_core::model::{Attribute, Entity};
use ngsild_core::{ops, NgsiLdError};
use ngsild_jsonld::Context;
use serde_json::{Map, Value};

/// The entity's next state: `current` with `entity` upserted, every unchanged instance kept as
/// stored, and `current` itself (its `modifiedAt` too) when nothing changed at all.
pub fn upsert_unchanged(
    current: Option<Entity>,
    entity: Entity,
    input: &EntityInput,
    now: &str,
) -> Result<Entity, NgsiLdError> {
    let Some(before) = current else { return ops::upsert(None, entity, input, true, now) };
    let mut next = ops::upsert(Some(before.clone()), entity, input, true, now)?;
    for (name, instances) in next.attrs.iter_mut() {
        for attr in instances.iter_mut() {
            if let Some(old) = before.instance(name, attr.dataset_id.as_deref()) {
                if same_content(old, attr) {
                    *attr = old.clone();
                }
            }
        }
    }
    if next.attrs == before.attrs && next.types == before.types && next.scope == before.scope {
        return Ok(before);
    }
    Ok(next)
}

/// Equal but for the system times.
fn same_content(a: &Attribute, b: &Attribute) -> bool {
    a.kind == b.kind
        && a.value == b.value
        && a.dataset_id == b.dataset_id
        && a.observed_at == b.observed_at
        && a.unit_code == b.unit_code
        && a.object_type == b.object_type
        && a.sub.len() == b.sub.len()
        && a.sub.iter().all(|(k, s)| b.sub.get(k).is_some_and(|t| same_content(s, t)))
}

/// An entity in normalized form (names of the core @context) as the id and the modifier that
/// upserts it ([`upsert_unchanged`]), or why it is no NGSI-LD entity.
pub fn modifier(entity: &Map<String, Value>) -> Result<(String, Modifier), NgsiLdError> {
    let (entity, input) = expand_entity(entity, &Context::core())?;
    let id = entity.id.clone();
    let modifier: Modifier = Box::new(move |current| {
        let now = ngsild_core::time::now();
        Ok(Modified::entity(upsert_unchanged(current, entity, &input, &now)?))
    });
    Ok((id, modifier))
}

#[cfg(test)]
mod tests {
    use super::*;
    use ngsild_core::history::recorded;
    use serde_json::json;

    fn expanded(v: Value) -> (Entity, EntityInput) {
        expand_entity(v.as_object().unwrap(), &Context::core()).unwrap()
    }

    fn row(pm10: i64, name: &str) -> Value {
        json!({"id": "urn:a", "type": "T", "pm10": {"type": "Property", "value": pm10, "unitCode": "GQ"}, "name": {"type": "Property", "value": name}})
    }

    #[test]
    fn the_same_row_again_records_nothing_and_a_changed_value_only_itself() {
        let (e, i) = expanded(row(41, "Jongno"));
        let first = upsert_unchanged(None, e, &i, "2024-01-01T00:00:00.000000Z").unwrap();
        let (e, i) = expanded(row(41, "Jongno"));
        let again = upsert_unchanged(Some(first.clone()), e, &i, "2024-01-02T00:00:00.000000Z").unwrap();
        assert_eq!(again, first, "nothing changed: the entity is as it was, its modifiedAt too");
        assert!(recorded(Some(&first), Some(&again), "2024-01-02T00:00:00.000000Z").is_empty());
        let (e, i) = expanded(row(42, "Jongno"));
        let changed = upsert_unchanged(Some(first.clone()), e, &i, "2024-01-03T00:00:00.000000Z").unwrap();
        let history = recorded(Some(&first), Some(&changed), "2024-01-03T00:00:00.000000Z");
        assert_eq!(history.len(), 1);
        assert!(history[0].attr.ends_with("/pm10"), "{}", history[0].attr);
        assert_eq!(changed.modified_at.as_deref(), Some("2024-01-03T00:00:00.000000Z"));
    }

    #[test]
    fn attributes_not_in_the_row_are_kept() {
        let (e, i) = expanded(json!({"id": "urn:a", "type": "T", "other": {"type": "Property", "value": 1}}));
        let first = upsert_unchanged(None, e, &i, "2024-01-01T00:00:00.000000Z").unwrap();
        let (e, i) = expanded(row(1, "x"));
        let next = upsert_unchanged(Some(first), e, &i, "2024-01-02T00:00:00.000000Z").unwrap();
        assert_eq!(next.attrs.len(), 3);
    }

    #[test]
    fn a_row_that_is_no_entity_is_refused_with_the_reason() {
        let Err(e) = modifier(json!({"id": "not a uri", "type": "T"}).as_object().unwrap()) else { panic!() };
        assert!(e.detail.contains("id"), "{}", e.detail);
    }
}
