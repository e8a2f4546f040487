//! Discovery (clauses 5.7.5-5.7.10) computed from entities and from other brokers' answers:
//! the summaries of the types and attributes a set of entities holds, and the
//! EntityTypeInfo / Attribute info of one name where the hub's own summary and each context
//! source's answer (kept to what its registration names) add up. Names are expanded IRIs;
//! [`DiscoveryInfo::body`] compacts them in the client's @context.

use indexmap::IndexMap;
use ngsild_jsonld::Context;
use serde_json::{json, Value};

use crate::Entity;

/// What a set of entities holds of one type.
#[derive(Default)]
pub struct TypeSummary {
    pub entity_count: usize,
    /// attribute IRI -> attribute kinds seen
    pub attributes: IndexMap<String, Vec<&'static str>>,
}

/// What a set of entities holds of one attribute: instances, kinds, and the types holding it.
#[derive(Default)]
pub struct AttributeSummary {
    pub count: usize,
    pub kinds: Vec<&'static str>,
    pub types: Vec<String>,
}

/// Adds `item` unless `items` holds it already (a set that keeps the order first seen).
pub fn push_unique<T: PartialEq>(items: &mut Vec<T>, item: T) {
    if !items.contains(&item) {
        items.push(item);
    }
}

/// Types in IRI order (stable across calls); each type's attributes in the order first seen.
pub fn type_summaries(entities: &[Entity]) -> IndexMap<String, TypeSummary> {
    let mut types: IndexMap<String, TypeSummary> = IndexMap::new();
    for e in entities {
        for t in &e.types {
            let summary = types.entry(t.clone()).or_default();
            summary.entity_count += 1;
            for (name, instances) in &e.attrs {
                let kinds = summary.attributes.entry(name.clone()).or_default();
                for a in instances {
                    push_unique(kinds, a.kind.name());
                }
            }
        }
    }
    types.sort_keys();
    types
}

/// Attributes in the order first seen: instance counts, kinds and the types holding them.
pub fn attribute_summaries(entities: &[Entity]) -> IndexMap<String, AttributeSummary> {
    let mut attributes: IndexMap<String, AttributeSummary> = IndexMap::new();
    for e in entities {
        for (name, instances) in &e.attrs {
            let summary = attributes.entry(name.clone()).or_default();
            summary.count += instances.len();
            for a in instances {
                push_unique(&mut summary.kinds, a.kind.name());
            }
            for t in &e.types {
                push_unique(&mut summary.types, t.clone());
            }
        }
    }
    attributes
}

fn compact(ctx: &Context, iri: &str) -> Value {
    Value::String(ctx.compact_iri(iri).into_owned())
}

/// What a context source answered for one name, with what its registration names: the
/// attributes (None: any) and the entity types (empty: any).
pub struct SourceInfo {
    pub attrs: Option<Vec<String>>,
    pub types: Vec<String>,
    pub body: Value,
}

/// What the hub knows of a type or an attribute, to which each source's answer adds.
pub trait DiscoveryInfo {
    /// Whether the hub or any source knows the name (otherwise the answer is a 404).
    fn found(&self) -> bool;
    /// Adds a source's answer, its names in the client's @context `ctx`.
    fn add_source(&mut self, answer: &SourceInfo, ctx: &Context);
    /// The EntityTypeInfo or Attribute of `iri`, names compacted in `ctx`.
    fn body(&self, iri: &str, ctx: &Context) -> Value;
}

/// What the hub and the sources know of one entity type: counts add up, attributes unite.
pub struct TypeInfo {
    found: bool,
    entity_count: usize,
    /// attribute IRI -> attribute kinds
    attributes: IndexMap<String, Vec<String>>,
}

impl TypeInfo {
    /// What the hub holds of the type (`None`: no entity of it).
    pub fn local(summary: Option<&TypeSummary>) -> TypeInfo {
        let attributes = summary
            .map(|s| {
                s.attributes
                    .iter()
                    .map(|(a, kinds)| (a.clone(), kinds.iter().map(|k| k.to_string()).collect()))
                    .collect()
            })
            .unwrap_or_default();
        TypeInfo { found: summary.is_some(), entity_count: summary.map_or(0, |s| s.entity_count), attributes }
    }
}

impl DiscoveryInfo for TypeInfo {
    fn found(&self) -> bool {
        self.found
    }

    /// Adds a source's EntityTypeInfo, kept to the attributes its registration names (if any).
    fn add_source(&mut self, SourceInfo { attrs: registered, body, .. }: &SourceInfo, ctx: &Context) {
        self.found = true;
        self.entity_count += body.get("entityCount").and_then(Value::as_u64).unwrap_or(0) as usize;
        for detail in body.get("attributeDetails").and_then(Value::as_array).into_iter().flatten() {
            let Some(attr) = detail.get("attributeName").and_then(Value::as_str) else { continue };
            let attr = ctx.expand_term(attr).into_owned();
            if registered.as_ref().is_some_and(|registered| !registered.contains(&attr)) {
                continue;
            }
            let kinds = self.attributes.entry(attr).or_default();
            for kind in detail.get("attributeTypes").and_then(Value::as_array).into_iter().flatten() {
                if let Some(k) = kind.as_str() {
                    push_unique(kinds, k.to_owned());
                }
            }
        }
    }

    fn body(&self, iri: &str, ctx: &Context) -> Value {
        json!({
            "id": iri,
            "type": "EntityTypeInfo",
            "typeName": compact(ctx, iri),
            "entityCount": self.entity_count,
            "attributeDetails": self.attributes.iter().map(|(a, kinds)| json!({
                "id": a,
                "type": "Attribute",
                "attributeName": compact(ctx, a),
                "attributeTypes": kinds,
            })).collect::<Vec<_>>(),
        })
    }
}

/// What the hub and the sources know of one attribute: counts add up, kinds and types unite.
pub struct AttributeInfo {
    found: bool,
    count: usize,
    kinds: Vec<String>,
    types: Vec<String>,
}

impl AttributeInfo {
    /// What the hub holds of the attribute (`None`: no entity has it).
    pub fn local(summary: Option<&AttributeSummary>) -> AttributeInfo {
        AttributeInfo {
            found: summary.is_some(),
            count: summary.map_or(0, |s| s.count),
            kinds: summary.map(|s| s.kinds.iter().map(|k| k.to_string()).collect()).unwrap_or_default(),
            types: summary.map(|s| s.types.clone()).unwrap_or_default(),
        }
    }
}

impl DiscoveryInfo for AttributeInfo {
    fn found(&self) -> bool {
        self.found
    }

    /// Adds a source's Attribute info, kept to the types its registration names (if any): the
    /// attribute counts only where it belongs to a registered type.
    fn add_source(&mut self, SourceInfo { types: registered_types, body, .. }: &SourceInfo, ctx: &Context) {
        let held: Vec<String> = body
            .get("typeNames")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .map(|t| ctx.expand_term(t).into_owned())
            .filter(|t| registered_types.is_empty() || registered_types.contains(t))
            .collect();
        if held.is_empty() {
            return;
        }
        self.found = true;
        self.count += body.get("attributeCount").and_then(Value::as_u64).unwrap_or(0) as usize;
        for t in held {
            push_unique(&mut self.types, t);
        }
        for kind in body.get("attributeTypes").and_then(Value::as_array).into_iter().flatten() {
            if let Some(k) = kind.as_str() {
                push_unique(&mut self.kinds, k.to_owned());
            }
        }
    }

    fn body(&self, iri: &str, ctx: &Context) -> Value {
        json!({
            "id": iri,
            "type": "Attribute",
            "attributeName": compact(ctx, iri),
            "attributeCount": self.count,
            "attributeTypes": self.kinds,
            "typeNames": self.types.iter().map(|t| compact(ctx, t)).collect::<Vec<_>>(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Attribute, AttributeKind};

    fn entity(id: &str, types: &[&str], attrs: &[(&str, AttributeKind)]) -> Entity {
        let mut e = Entity::new(id, types.iter().map(|t| t.to_string()).collect());
        for (name, kind) in attrs {
            e.attrs.entry(name.to_string()).or_default().push(Attribute::new(*kind, json!(1)));
        }
        e
    }

    fn entities() -> Vec<Entity> {
        vec![
            entity("urn:a", &["urn:T:B", "urn:T:A"], &[("urn:p", AttributeKind::Property)]),
            entity(
                "urn:b",
                &["urn:T:A"],
                &[("urn:p", AttributeKind::Property), ("urn:r", AttributeKind::Relationship)],
            ),
        ]
    }

    #[test]
    fn summaries_count_entities_per_type_and_instances_per_attribute() {
        let types = type_summaries(&entities());
        assert_eq!(types.keys().collect::<Vec<_>>(), vec!["urn:T:A", "urn:T:B"]);
        assert_eq!(types["urn:T:A"].entity_count, 2);
        assert_eq!(types["urn:T:A"].attributes.keys().collect::<Vec<_>>(), vec!["urn:p", "urn:r"]);
        let attrs = attribute_summaries(&entities());
        assert_eq!(attrs["urn:p"].count, 2);
        assert_eq!(attrs["urn:p"].types, vec!["urn:T:B", "urn:T:A"]);
        assert_eq!(attrs["urn:r"].kinds, vec!["Relationship"]);
    }

    #[test]
    fn a_source_adds_to_a_type_only_the_attributes_it_registers() {
        let ctx = Context::core();
        let mut info = TypeInfo::local(type_summaries(&entities()).get("urn:T:A"));
        let body = json!({"entityCount": 3, "attributeDetails": [
            {"attributeName": "urn:q", "attributeTypes": ["Property"]},
            {"attributeName": "urn:s", "attributeTypes": ["Property"]},
        ]});
        info.add_source(&SourceInfo { attrs: Some(vec!["urn:q".into()]), types: vec![], body }, &ctx);
        let shown = info.body("urn:T:A", &ctx);
        assert_eq!(shown["entityCount"], json!(5));
        let names: Vec<&str> =
            shown["attributeDetails"].as_array().unwrap().iter().map(|d| d["id"].as_str().unwrap()).collect();
        assert_eq!(names, vec!["urn:p", "urn:r", "urn:q"]);
    }

    #[test]
    fn a_source_counts_an_attribute_only_on_a_registered_type() {
        let ctx = Context::core();
        let mut info = AttributeInfo::local(None);
        assert!(!info.found());
        let body = json!({"attributeCount": 4, "attributeTypes": ["Property"], "typeNames": ["urn:T:C"]});
        let elsewhere = SourceInfo { attrs: None, types: vec!["urn:T:D".into()], body: body.clone() };
        info.add_source(&elsewhere, &ctx);
        assert!(!info.found(), "an attribute of an unregistered type is not the source's to tell");
        info.add_source(&SourceInfo { attrs: None, types: vec![], body }, &ctx);
        let shown = info.body("urn:p", &ctx);
        assert_eq!((shown["attributeCount"].clone(), shown["typeNames"].clone()), (json!(4), json!(["urn:T:C"])));
    }
}
