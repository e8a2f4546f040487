//! Entities and attributes as cityhub stores them: every name, type and vocabulary value already
//! expanded to its IRI, so that the stored form is independent of any client's @context.

use indexmap::IndexMap;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The attribute types of NGSI-LD (clause 4.5).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum AttributeKind {
    Property,
    Relationship,
    GeoProperty,
    LanguageProperty,
    VocabProperty,
    JsonProperty,
    ListProperty,
    ListRelationship,
}

impl AttributeKind {
    pub const ALL: [AttributeKind; 8] = [
        AttributeKind::Property,
        AttributeKind::Relationship,
        AttributeKind::GeoProperty,
        AttributeKind::LanguageProperty,
        AttributeKind::VocabProperty,
        AttributeKind::JsonProperty,
        AttributeKind::ListProperty,
        AttributeKind::ListRelationship,
    ];

    pub fn name(self) -> &'static str {
        match self {
            AttributeKind::Property => "Property",
            AttributeKind::Relationship => "Relationship",
            AttributeKind::GeoProperty => "GeoProperty",
            AttributeKind::LanguageProperty => "LanguageProperty",
            AttributeKind::VocabProperty => "VocabProperty",
            AttributeKind::JsonProperty => "JsonProperty",
            AttributeKind::ListProperty => "ListProperty",
            AttributeKind::ListRelationship => "ListRelationship",
        }
    }

    pub fn from_name(name: &str) -> Option<Self> {
        let name = name.strip_prefix("https://uri.etsi.org/ngsi-ld/").unwrap_or(name);
        AttributeKind::ALL.into_iter().find(|k| k.name() == name)
    }

    /// The member that carries this kind's value in the normalized representation.
    pub fn value_member(self) -> &'static str {
        match self {
            AttributeKind::Property | AttributeKind::GeoProperty => "value",
            AttributeKind::Relationship => "object",
            AttributeKind::LanguageProperty => "languageMap",
            AttributeKind::VocabProperty => "vocab",
            AttributeKind::JsonProperty => "json",
            AttributeKind::ListProperty => "valueList",
            AttributeKind::ListRelationship => "objectList",
        }
    }

    pub fn is_relationship(self) -> bool {
        matches!(self, AttributeKind::Relationship | AttributeKind::ListRelationship)
    }
}

/// One instance of an attribute (or of a sub-attribute).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Attribute {
    #[serde(rename = "type")]
    pub kind: AttributeKind,
    /// The kind's value member: `value`, `object`, `languageMap`, `vocab` (expanded IRIs), `json`,
    /// `valueList` or `objectList`.
    pub value: Value,
    #[serde(rename = "datasetId", default, skip_serializing_if = "Option::is_none")]
    pub dataset_id: Option<String>,
    #[serde(rename = "observedAt", default, skip_serializing_if = "Option::is_none")]
    pub observed_at: Option<String>,
    #[serde(rename = "unitCode", default, skip_serializing_if = "Option::is_none")]
    pub unit_code: Option<String>,
    /// `objectType` of a relationship, expanded.
    #[serde(rename = "objectType", default, skip_serializing_if = "Option::is_none")]
    pub object_type: Option<Value>,
    #[serde(rename = "createdAt", default, skip_serializing_if = "Option::is_none")]
    pub created_at: Option<String>,
    #[serde(rename = "modifiedAt", default, skip_serializing_if = "Option::is_none")]
    pub modified_at: Option<String>,
    /// Sub-attributes by expanded name.
    #[serde(default, skip_serializing_if = "IndexMap::is_empty")]
    pub sub: IndexMap<String, Attribute>,
}

impl Attribute {
    pub fn new(kind: AttributeKind, value: Value) -> Self {
        Attribute {
            kind,
            value,
            dataset_id: None,
            observed_at: None,
            unit_code: None,
            object_type: None,
            created_at: None,
            modified_at: None,
            sub: IndexMap::new(),
        }
    }

    /// Stamps system times: `createdAt` only where it is not set yet, `modifiedAt` always.
    pub fn stamp(&mut self, now: &str) {
        if self.created_at.is_none() {
            self.created_at = Some(now.to_owned());
        }
        self.modified_at = Some(now.to_owned());
        for sub in self.sub.values_mut() {
            sub.stamp(now);
        }
    }
}

/// An entity in stored form.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Entity {
    pub id: String,
    /// Expanded type IRIs, in the order first given.
    #[serde(rename = "type")]
    pub types: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub scope: Vec<String>,
    #[serde(rename = "createdAt", default, skip_serializing_if = "Option::is_none")]
    pub created_at: Option<String>,
    #[serde(rename = "modifiedAt", default, skip_serializing_if = "Option::is_none")]
    pub modified_at: Option<String>,
    /// Attributes by expanded name; each has one instance per datasetId (the default instance has
    /// none).
    #[serde(default)]
    pub attrs: IndexMap<String, Vec<Attribute>>,
}

impl Entity {
    pub fn new(id: impl Into<String>, types: Vec<String>) -> Self {
        Entity { id: id.into(), types, scope: Vec::new(), created_at: None, modified_at: None, attrs: IndexMap::new() }
    }

    /// The instance of `name` with this datasetId (None = the default instance).
    pub fn instance(&self, name: &str, dataset_id: Option<&str>) -> Option<&Attribute> {
        self.attrs.get(name)?.iter().find(|a| a.dataset_id.as_deref() == dataset_id)
    }

    pub fn instance_mut(&mut self, name: &str, dataset_id: Option<&str>) -> Option<&mut Attribute> {
        self.attrs.get_mut(name)?.iter_mut().find(|a| a.dataset_id.as_deref() == dataset_id)
    }

    /// Puts an instance in place of the one with the same datasetId, keeping its createdAt, or adds
    /// it. Returns whether an instance was replaced.
    pub fn put_instance(&mut self, name: &str, mut attr: Attribute, now: &str) -> bool {
        let instances = self.attrs.entry(name.to_owned()).or_default();
        match instances.iter_mut().find(|a| a.dataset_id == attr.dataset_id) {
            Some(existing) => {
                attr.created_at = existing.created_at.clone();
                keep_sub_created_at(&mut attr, existing);
                attr.stamp(now);
                *existing = attr;
                true
            }
            None => {
                attr.created_at = None;
                attr.stamp(now);
                instances.push(attr);
                false
            }
        }
    }

    /// Removes one instance (or all, with `all`); returns how many were removed.
    pub fn remove_instances(&mut self, name: &str, dataset_id: Option<&str>, all: bool) -> usize {
        let Some(instances) = self.attrs.get_mut(name) else {
            return 0;
        };
        let before = instances.len();
        if all {
            instances.clear();
        } else {
            instances.retain(|a| a.dataset_id.as_deref() != dataset_id);
        }
        let removed = before - instances.len();
        if instances.is_empty() {
            self.attrs.shift_remove(name);
        }
        removed
    }

    /// Removes every instance of the attributes `names` (expanded); when one was there, the
    /// entity is modified `now`. Returns whether any was removed.
    pub fn remove_attributes(&mut self, names: &[String], now: &str) -> bool {
        let before = self.attrs.len();
        self.attrs.retain(|name, _| !names.contains(name));
        let removed = self.attrs.len() != before;
        if removed {
            self.touch(now);
        }
        removed
    }

    pub fn touch(&mut self, now: &str) {
        if self.created_at.is_none() {
            self.created_at = Some(now.to_owned());
        }
        self.modified_at = Some(now.to_owned());
    }

    pub fn has_type(&self, iri: &str) -> bool {
        self.types.iter().any(|t| t == iri)
    }
}

fn keep_sub_created_at(new: &mut Attribute, old: &Attribute) {
    for (name, sub) in new.sub.iter_mut() {
        if let Some(old_sub) = old.sub.get(name) {
            sub.created_at = old_sub.created_at.clone();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn removing_attributes_touches_the_entity_only_when_one_was_there() {
        let mut entity = Entity::new("urn:v:1", vec!["T".into()]);
        entity.put_instance("a", Attribute::new(AttributeKind::Property, json!(1)), "2024-01-01T00:00:00Z");
        entity.put_instance("b", Attribute::new(AttributeKind::Property, json!(2)), "2024-01-01T00:00:00Z");
        entity.modified_at = Some("2024-01-01T00:00:00Z".into());
        assert!(!entity.remove_attributes(&["c".into()], "2025-01-01T00:00:00Z"));
        assert_eq!(entity.modified_at.as_deref(), Some("2024-01-01T00:00:00Z"));
        assert!(entity.remove_attributes(&["a".into(), "c".into()], "2025-01-01T00:00:00Z"));
        assert_eq!(entity.attrs.keys().collect::<Vec<_>>(), vec!["b"]);
        assert_eq!(entity.modified_at.as_deref(), Some("2025-01-01T00:00:00Z"));
    }
}
