//! What each provision operation (clause 5.6) does to an entity. Pure functions: the storage
//! layer runs them inside its transaction.

use serde_json::{json, Value};

use crate::error::{NgsiLdError, Result};
use crate::expand::{
    attribute_to_raw, build_attribute, check_unique_datasets, is_deletion, merge_raw, AttributeInput, EntityInput,
    RawAttribute,
};
use crate::model::{Attribute, Entity};

/// `scope` as an attribute name: deleting it removes the entity's scopes.
const SCOPE_IRI: &str = "https://uri.etsi.org/ngsi-ld/scope";

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

fn add_types_and_scope(entity: &mut Entity, input: &EntityInput) {
    for t in &input.types {
        if !entity.has_type(t) {
            entity.types.push(t.clone());
        }
    }
    if let Some(scope) = &input.scope {
        for s in scope {
            if !entity.scope.contains(s) {
                entity.scope.push(s.clone());
            }
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
    add_types_and_scope(entity, input);
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

/// Update Entity Attributes (5.6.2): replaces attributes that exist; the others are reported as
/// not updated.
pub fn update_attributes(entity: &mut Entity, input: &EntityInput, now: &str) -> Result<UpdateReport> {
    let mut report = UpdateReport::default();
    let mut built = Vec::new();
    for (name, attr) in &input.attrs {
        built.push((name, build_all(name, instances_of(name, attr)?)?));
    }
    add_types_and_scope(entity, input);
    for (name, instances) in built {
        let mut changed = false;
        for attr in instances {
            if entity.instance(name, attr.dataset_id.as_deref()).is_none() {
                report.not_updated.push((name.clone(), "attribute (with this datasetId) does not exist".into()));
                continue;
            }
            entity.put_instance(name, attr, now);
            changed = true;
        }
        if changed {
            report.updated.push(name.clone());
        }
    }
    if !report.updated.is_empty() {
        entity.touch(now);
    }
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
    if patch.get("type") == raw.get("type") {
        // Restating the type is not a change of type: keep the value member as it is merged.
        patch.remove("type");
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
    add_types_and_scope(&mut next, input);
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
    fn update_only_touches_existing() {
        let mut e = entity();
        let report = update_attributes(&mut e, &frag(json!({"a": 7, "zzz": 1})), "2024-01-02T00:00:00Z").unwrap();
        assert_eq!(report.updated, vec![format!("{D}a")]);
        assert_eq!(report.not_updated[0].0, format!("{D}zzz"));
        assert!(e.instance(&format!("{D}zzz"), None).is_none());
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
}
