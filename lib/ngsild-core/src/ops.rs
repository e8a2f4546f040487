//! What each provision operation (clause 5.6) does to an entity. Pure functions: the storage
//! layer runs them inside its transaction.

use serde_json::{json, Value};

use crate::error::{NgsiLdError, Result};
use crate::expand::{
    attribute_to_raw, build_attribute, check_unique_datasets, is_deletion, merge_raw, AttributeInput, EntityInput,
    RawAttribute,
};
use crate::model::{Attribute, Entity};

/// `scope` as an attribute name: deleting it removes the entity's scopes (and the history records
/// that deletion under this name).
pub const SCOPE_IRI: &str = "https://uri.etsi.org/ngsi-ld/scope";

/// Which attributes an update changed and which it did not, with why (UpdateResult, clause 5.2.18).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct UpdateReport {
    pub updated: Vec<String>,
    pub not_updated: Vec<(String, String)>,
}

impl UpdateReport {
    pub fn is_complete(&self) -> bool {
        self.not_updated.is_empty()
    }

    /// The UpdateResult body with names compacted by `compact`.
    pub fn to_json(&self, compact: impl Fn(&str) -> String) -> Value {
        json!({
            "updated": self.updated.iter().map(|n| compact(n)).collect::<Vec<_>>(),
            "notUpdated": self.not_updated.iter().map(|(n, reason)| json!({"attributeName": compact(n), "reason": reason})).collect::<Vec<_>>(),
        })
    }
}

/// Sets system times on a new entity.
pub fn stamp_new_entity(entity: &mut Entity, now: &str) {
    entity.created_at = None;
    entity.touch(now);
    for instances in entity.attrs.values_mut() {
        for attr in instances {
            attr.created_at = None;
            attr.stamp(now);
        }
    }
}

fn add_types(entity: &mut Entity, input: &EntityInput) {
    for t in &input.types {
        if !entity.has_type(t) {
            entity.types.push(t.clone());
        }
    }
}

fn instances_of<'a>(name: &str, input: &'a AttributeInput) -> Result<&'a [RawAttribute]> {
    match input {
        AttributeInput::Delete => Err(NgsiLdError::bad_request(format!("attribute {name} cannot be null here"))),
        AttributeInput::Instances(raws) => Ok(raws),
    }
}

fn build_all(name: &str, raws: &[RawAttribute]) -> Result<Vec<Attribute>> {
    let built = raws.iter().map(build_attribute).collect::<Result<Vec<_>>>()?;
    check_unique_datasets(name, &built)?;
    Ok(built)
}

/// Append Entity Attributes (5.6.3): adds attributes, overwriting instances with the same
/// datasetId unless `no_overwrite`.
pub fn append_attributes(
    entity: &mut Entity,
    input: &EntityInput,
    no_overwrite: bool,
    now: &str,
) -> Result<UpdateReport> {
    let mut report = UpdateReport::default();
    let mut built = Vec::new();
    for (name, attr) in &input.attrs {
        built.push((name, build_all(name, instances_of(name, attr)?)?));
    }
    add_types(entity, input);
    if let Some(scope) = &input.scope {
        if no_overwrite {
            for s in scope {
                if !entity.scope.contains(s) {
                    entity.scope.push(s.clone());
                }
            }
        } else {
            entity.scope = scope.clone();
        }
    }
    for (name, instances) in built {
        let mut changed = false;
        for attr in instances {
            if no_overwrite && entity.instance(name, attr.dataset_id.as_deref()).is_some() {
                report
                    .not_updated
                    .push((name.clone(), "attribute already exists and noOverwrite was requested".into()));
                continue;
            }
            entity.put_instance(name, attr, now);
            changed = true;
        }
        if changed {
            report.updated.push(name.clone());
        }
    }
    entity.touch(now);
    Ok(report)
}

/// Update Entity Attributes (5.6.2), as the conformance suite exercises it: attributes given
/// replace the instance with the same datasetId or are added, the NGSI-LD null deletes, types are
/// added, and a scope replaces the scope only where the entity has one already.
pub fn update_attributes(entity: &mut Entity, input: &EntityInput, now: &str) -> Result<UpdateReport> {
    let mut report = UpdateReport::default();
    let mut planned = Vec::new();
    for (name, attr) in &input.attrs {
        match attr {
            AttributeInput::Delete => planned.push((name, None)),
            AttributeInput::Instances(raws) => {
                let (deletions, values): (Vec<&RawAttribute>, Vec<&RawAttribute>) =
                    raws.iter().partition(|raw| is_deletion(raw));
                let built = values.into_iter().map(build_attribute).collect::<Result<Vec<_>>>()?;
                check_unique_datasets(name, &built)?;
                let deleted: Vec<Option<String>> = deletions
                    .iter()
                    .map(|raw| raw.get("datasetId").and_then(Value::as_str).map(str::to_owned))
                    .collect();
                planned.push((name, Some((built, deleted))));
            }
        }
    }
    for t in &input.types {
        if !entity.has_type(t) {
            entity.types.push(t.clone());
        }
    }
    if let Some(scope) = &input.scope {
        if entity.scope.is_empty() {
            report.not_updated.push((SCOPE_IRI.to_owned(), "the entity has no scope to update".into()));
        } else {
            entity.scope = scope.clone();
            report.updated.push(SCOPE_IRI.to_owned());
        }
    }
    for (name, plan) in planned {
        match plan {
            None => {
                entity.remove_instances(name, None, true);
            }
            Some((instances, deleted)) => {
                for dataset_id in deleted {
                    entity.remove_instances(name, dataset_id.as_deref(), false);
                }
                for attr in instances {
                    entity.put_instance(name, attr, now);
                }
            }
        }
        report.updated.push(name.clone());
    }
    entity.touch(now);
    Ok(report)
}

/// Partial Attribute Update (5.6.4): merges a fragment into the existing instance.
pub fn partial_update_attribute(entity: &mut Entity, name: &str, patch: &RawAttribute, now: &str) -> Result<()> {
    let dataset_id = patch.get("datasetId").and_then(Value::as_str);
    let existing = entity.instance(name, dataset_id).ok_or_else(|| {
        NgsiLdError::not_found(format!("entity {} has no attribute {name} with that datasetId", entity.id))
    })?;
    if is_deletion(patch) {
        entity.remove_instances(name, dataset_id, false);
        entity.touch(now);
        return Ok(());
    }
    let mut raw = attribute_to_raw(existing);
    let mut patch = patch.clone();
    match patch.remove("type") {
        Some(t) if Some(&t) != raw.get("type") => {
            return Err(NgsiLdError::bad_request(format!(
                "attribute {name} is a {}, a partial update cannot make it a {t}",
                existing.kind.name()
            )));
        }
        _ => {}
    }
    merge_raw(&mut raw, &patch);
    let attr = build_attribute(&raw)?;
    entity.put_instance(name, attr, now);
    entity.touch(now);
    Ok(())
}

/// Replace Entity Attribute (5.6.19): the instance must exist and is replaced whole.
pub fn replace_attribute(entity: &mut Entity, name: &str, raw: &RawAttribute, now: &str) -> Result<()> {
    let attr = build_attribute(raw)?;
    if entity.instance(name, attr.dataset_id.as_deref()).is_none() {
        return Err(NgsiLdError::not_found(format!(
            "entity {} has no attribute {name} with that datasetId",
            entity.id
        )));
    }
    entity.put_instance(name, attr, now);
    entity.touch(now);
    Ok(())
}

/// Delete Entity Attribute (5.6.5).
pub fn delete_attribute(
    entity: &mut Entity,
    name: &str,
    dataset_id: Option<&str>,
    delete_all: bool,
    now: &str,
) -> Result<()> {
    if name == SCOPE_IRI {
        if entity.scope.is_empty() {
            return Err(NgsiLdError::not_found(format!("entity {} has no scope", entity.id)));
        }
        entity.scope.clear();
        entity.touch(now);
        return Ok(());
    }
    if entity.remove_instances(name, dataset_id, delete_all) == 0 {
        return Err(NgsiLdError::not_found(format!(
            "entity {} has no attribute {name} with that datasetId",
            entity.id
        )));
    }
    entity.touch(now);
    Ok(())
}

/// Merge Entity (5.6.17): attributes given are merged into existing ones or added, null deletes,
/// types and scopes are added.
pub fn merge_entity(entity: &mut Entity, input: &EntityInput, now: &str) -> Result<()> {
    let mut next = entity.clone();
    add_types(&mut next, input);
    if let Some(scope) = &input.scope {
        next.scope = scope.clone();
    }
    for (name, attr) in &input.attrs {
        match attr {
            AttributeInput::Delete => {
                next.remove_instances(name, None, true);
            }
            AttributeInput::Instances(raws) => {
                for patch in raws {
                    let dataset_id = patch.get("datasetId").and_then(Value::as_str);
                    if is_deletion(patch) {
                        next.remove_instances(name, dataset_id, false);
                        continue;
                    }
                    let merged = match next.instance(name, dataset_id) {
                        Some(existing) => {
                            let mut raw = attribute_to_raw(existing);
                            merge_raw(&mut raw, patch);
                            raw
                        }
                        None => patch.clone(),
                    };
                    next.put_instance(name, build_attribute(&merged)?, now);
                }
            }
        }
    }
    next.touch(now);
    *entity = next;
    Ok(())
}

/// Replace Entity (5.6.18): everything but the id and the creation time is replaced.
pub fn replace_entity(old: &Entity, mut new: Entity, now: &str) -> Entity {
    stamp_new_entity(&mut new, now);
    new.created_at = old.created_at.clone();
    new
}

/// Batch update/upsert with `update` semantics on an existing entity: append, overwriting unless
/// `no_overwrite`.
pub fn upsert_update(entity: &mut Entity, input: &EntityInput, no_overwrite: bool, now: &str) -> Result<UpdateReport> {
    append_attributes(entity, input, no_overwrite, now)
}

/// Batch upsert (clause 5.6.8) of one entity: `entity` (expanded from `input`) is created when
/// there is no `current` one; otherwise it replaces it, or (`update_mode`) its attributes are
/// appended to it, overwriting.
pub fn upsert(
    current: Option<Entity>,
    entity: Entity,
    input: &EntityInput,
    update_mode: bool,
    now: &str,
) -> Result<Entity> {
    Ok(match current {
        None => {
            let mut entity = entity;
            stamp_new_entity(&mut entity, now);
            entity
        }
        Some(mut existing) if update_mode => {
            upsert_update(&mut existing, input, false, now)?;
            existing
        }
        Some(existing) => replace_entity(&existing, entity, now),
    })
}

/// Purge of one entity (clause 5.6.21, `DELETE /entities?…`): with `keep` (the query's `attrs`)
/// only those attributes stay, with `drop` (`deleteAttrs`) those go, and with neither the
/// entity goes (None). A changed entity is modified `now`.
pub fn purge(mut entity: Entity, keep: Option<&[String]>, drop: Option<&[String]>, now: &str) -> Option<Entity> {
    match (keep, drop) {
        (Some(keep), _) => entity.attrs.retain(|name, _| keep.contains(name)),
        (_, Some(drop)) => entity.attrs.retain(|name, _| !drop.contains(name)),
        (None, None) => return None,
    }
    entity.touch(now);
    Some(entity)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::expand::{expand_entity, expand_fragment};
    use ngsild_jsonld::core_context;
    use serde_json::json;

    const D: &str = "https://uri.etsi.org/ngsi-ld/default-context/";

    fn entity() -> Entity {
        let body =
            json!({"id": "urn:x:1", "type": "T", "a": {"type": "Property", "value": 1, "unitCode": "KMH"}, "b": 2});
        let mut e = expand_entity(body.as_object().unwrap(), &core_context()).unwrap().0;
        stamp_new_entity(&mut e, "2024-01-01T00:00:00Z");
        e
    }

    fn frag(v: Value) -> EntityInput {
        expand_fragment(v.as_object().unwrap(), &core_context()).unwrap()
    }

    #[test]
    fn append_respects_no_overwrite() {
        let mut e = entity();
        let report = append_attributes(&mut e, &frag(json!({"a": 5, "c": 3})), true, "2024-01-02T00:00:00Z").unwrap();
        assert_eq!(report.updated, vec![format!("{D}c")]);
        assert_eq!(report.not_updated.len(), 1);
        assert_eq!(e.instance(&format!("{D}a"), None).unwrap().value, json!(1));
        append_attributes(&mut e, &frag(json!({"a": 5})), false, "2024-01-02T00:00:00Z").unwrap();
        let a = e.instance(&format!("{D}a"), None).unwrap();
        assert_eq!(a.value, json!(5));
        assert_eq!(a.created_at.as_deref(), Some("2024-01-01T00:00:00Z"), "createdAt survives an overwrite");
    }

    #[test]
    fn update_replaces_adds_deletes_and_guards_scope() {
        let mut e = entity();
        let fragment = frag(json!({"a": 7, "zzz": 1, "b": "urn:ngsi-ld:null", "scope": "/x"}));
        let report = update_attributes(&mut e, &fragment, "2024-01-02T00:00:00Z").unwrap();
        assert_eq!(e.instance(&format!("{D}a"), None).unwrap().value, json!(7));
        assert_eq!(e.instance(&format!("{D}zzz"), None).unwrap().value, json!(1));
        assert!(!e.attrs.contains_key(&format!("{D}b")), "the NGSI-LD null deletes");
        assert_eq!(report.not_updated, vec![(SCOPE_IRI.to_owned(), "the entity has no scope to update".to_owned())]);
        assert!(e.scope.is_empty(), "a scope is not added by an update");
        e.scope = vec!["/old".into()];
        update_attributes(&mut e, &frag(json!({"scope": ["/new"]})), "t").unwrap();
        assert_eq!(e.scope, vec!["/new".to_owned()]);
    }

    #[test]
    fn partial_update_refuses_a_change_of_type() {
        let mut e = entity();
        let patch = json!({"type": "Relationship", "object": "urn:x:2"}).as_object().unwrap().clone();
        assert_eq!(partial_update_attribute(&mut e, &format!("{D}a"), &patch, "t").unwrap_err().status(), 400);
    }

    #[test]
    fn partial_update_merges() {
        let mut e = entity();
        let patch = json!({"value": 9}).as_object().unwrap().clone();
        partial_update_attribute(&mut e, &format!("{D}a"), &patch, "2024-01-02T00:00:00Z").unwrap();
        let a = e.instance(&format!("{D}a"), None).unwrap();
        assert_eq!((a.value.clone(), a.unit_code.as_deref()), (json!(9), Some("KMH")));
        assert!(partial_update_attribute(&mut e, &format!("{D}nope"), &patch, "x").is_err());
    }

    #[test]
    fn merge_deletes_with_null_and_adds() {
        let mut e = entity();
        merge_entity(
            &mut e,
            &frag(json!({"a": "urn:ngsi-ld:null", "c": {"value": 1}, "type": "U"})),
            "2024-01-02T00:00:00Z",
        )
        .unwrap();
        assert!(e.instance(&format!("{D}a"), None).is_none());
        assert!(e.instance(&format!("{D}c"), None).is_some());
        assert_eq!(e.types, vec![format!("{D}T"), format!("{D}U")]);
    }

    #[test]
    fn ngsi_ld_null_deletes_one_instance() {
        let mut e = entity();
        let fragment = frag(json!({"a": [{"type": "Property", "value": 3, "datasetId": "urn:ds:1"}]}));
        merge_entity(&mut e, &fragment, "t1").unwrap();
        assert_eq!(e.attrs[&format!("{D}a")].len(), 2);
        let fragment = frag(json!({"a": {"type": "Property", "value": "urn:ngsi-ld:null", "datasetId": "urn:ds:1"}}));
        merge_entity(&mut e, &fragment, "t2").unwrap();
        assert_eq!(e.attrs[&format!("{D}a")].len(), 1);
        assert!(e.instance(&format!("{D}a"), None).is_some(), "the default instance stays");
        let patch = json!({"languageMap": {"@none": "urn:ngsi-ld:null"}}).as_object().unwrap().clone();
        partial_update_attribute(&mut e, &format!("{D}a"), &patch, "t3").unwrap();
        assert!(!e.attrs.contains_key(&format!("{D}a")));
    }

    #[test]
    fn delete_attribute_reports_missing() {
        let mut e = entity();
        delete_attribute(&mut e, &format!("{D}a"), None, false, "t").unwrap();
        assert_eq!(delete_attribute(&mut e, &format!("{D}a"), None, false, "t").unwrap_err().status(), 404);
    }

    #[test]
    fn an_upsert_creates_replaces_or_updates() {
        let input = frag(json!({"id": "urn:x:1", "type": "T", "c": 3}));
        let new = crate::expand::entity_from_input(&input).unwrap();
        let later = "2024-02-01T00:00:00Z";
        let created = upsert(None, new.clone(), &input, false, later).unwrap();
        assert_eq!(created.created_at.as_deref(), Some(later));
        let replaced = upsert(Some(entity()), new.clone(), &input, false, later).unwrap();
        assert_eq!(replaced.attrs.keys().collect::<Vec<_>>(), vec![&format!("{D}c")]);
        assert_eq!(replaced.created_at.as_deref(), Some("2024-01-01T00:00:00Z"), "createdAt survives a replace");
        let updated = upsert(Some(entity()), new, &input, true, later).unwrap();
        let mut names: Vec<&String> = updated.attrs.keys().collect();
        names.sort();
        assert_eq!(names, vec![&format!("{D}a"), &format!("{D}b"), &format!("{D}c")]);
        assert_eq!(updated.modified_at.as_deref(), Some(later));
    }

    #[test]
    fn a_purge_keeps_drops_or_deletes() {
        let (a, b) = (format!("{D}a"), format!("{D}b"));
        let later = "2024-02-01T00:00:00Z";
        let kept = purge(entity(), Some(std::slice::from_ref(&a)), None, later).unwrap();
        assert_eq!(kept.attrs.keys().collect::<Vec<_>>(), vec![&a]);
        assert_eq!(kept.modified_at.as_deref(), Some(later));
        let dropped = purge(entity(), None, Some(std::slice::from_ref(&a)), later).unwrap();
        assert_eq!(dropped.attrs.keys().collect::<Vec<_>>(), vec![&b]);
        assert_eq!(purge(entity(), None, None, later), None, "no attrs: the entity goes");
    }
}
