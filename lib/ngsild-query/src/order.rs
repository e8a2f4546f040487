//! `orderBy`: the order of a query's results (GS CIM 009 V1.9.1, `orderBy` on entity and temporal
//! queries).
//!
//! `orderBy` is a comma-separated list of keys, the first deciding first; each key is an entity
//! member (`id`, `type`, `createdAt`, `modifiedAt`) or an attribute path written as in `q`
//! (`name`, `name.subProperty`, `name.observedAt`, `address[city]`), optionally followed by `;asc`
//! (the default) or `;desc`.
//!
//! Decisions the suite and the spec leave open, made here once:
//! - an attribute with several values (datasetIds, arrays) sorts by its smallest value ascending
//!   and by its largest descending;
//! - values of different kinds order numbers, then date-times, then text, then booleans, then
//!   anything else (by its JSON text); text compares by code point;
//! - an entity without a value for a key sorts after every entity that has one, in either
//!   direction, so a page of "the highest first" starts with real values;
//! - entities equal on every key keep id order, so paging through an ordered query is stable.

use std::cmp::Ordering;

use ngsild_core::temporal::TemporalEntity;
use ngsild_core::time::parse_datetime;
use ngsild_core::Entity;
use ngsild_jsonld::Context;
use serde_json::Value;

use crate::q::{parse_path, values_at, AttrPath};
use crate::ParseError;

/// At most this many keys in one `orderBy`.
pub const MAX_ORDER_KEYS: usize = 16;

/// What one key orders by.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OrderPath {
    Id,
    Type,
    CreatedAt,
    ModifiedAt,
    /// An attribute, a sub-attribute or metadata of it, or a member of its compound value.
    Attribute(AttrPath),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderKey {
    pub path: OrderPath,
    pub descending: bool,
}

/// A parsed `orderBy`, names expanded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderBy {
    pub keys: Vec<OrderKey>,
}

/// A value an entity is sorted by. Variants are declared in their cross-kind order.
#[derive(Debug, Clone, PartialEq)]
enum SortValue {
    Number(f64),
    /// Microseconds since the epoch.
    DateTime(i64),
    Text(String),
    Bool(bool),
    Other(String),
}

impl SortValue {
    fn from_json(v: &Value) -> Option<SortValue> {
        Some(match v {
            Value::Null => return None,
            Value::Number(n) => SortValue::Number(n.as_f64()?),
            Value::Bool(b) => SortValue::Bool(*b),
            Value::String(s) => match parse_datetime(s) {
                Some(t) => SortValue::DateTime(t.timestamp_micros()),
                None => SortValue::Text(s.clone()),
            },
            other => SortValue::Other(other.to_string()),
        })
    }

    fn rank(&self) -> u8 {
        match self {
            SortValue::Number(_) => 0,
            SortValue::DateTime(_) => 1,
            SortValue::Text(_) => 2,
            SortValue::Bool(_) => 3,
            SortValue::Other(_) => 4,
        }
    }

    fn cmp(&self, other: &SortValue) -> Ordering {
        match (self, other) {
            (SortValue::Number(a), SortValue::Number(b)) => a.total_cmp(b),
            (SortValue::DateTime(a), SortValue::DateTime(b)) => a.cmp(b),
            (SortValue::Text(a), SortValue::Text(b)) | (SortValue::Other(a), SortValue::Other(b)) => a.cmp(b),
            (SortValue::Bool(a), SortValue::Bool(b)) => a.cmp(b),
            _ => self.rank().cmp(&other.rank()),
        }
    }
}

/// The values one entity sorts by, one per key, and its id (the last tie-break).
#[derive(Debug, Clone)]
pub struct SortKey {
    values: Vec<Option<SortValue>>,
    id: String,
}

impl OrderBy {
    /// Parses `orderBy`, expanding attribute names with `ctx`. Positions in errors are byte
    /// offsets into the whole parameter.
    pub fn parse(input: &str, ctx: &Context) -> Result<OrderBy, ParseError> {
        let mut keys = Vec::new();
        let mut start = 0usize;
        for item in input.split(',') {
            let at = |offset: usize, message: String| ParseError { position: start + offset, message };
            if keys.len() == MAX_ORDER_KEYS {
                return Err(at(0, format!("at most {MAX_ORDER_KEYS} keys in orderBy")));
            }
            let (path, direction) = match item.split_once(';') {
                Some((path, direction)) => (path, Some(direction)),
                None => (item, None),
            };
            let descending = match direction.map(str::trim) {
                None | Some("asc") => false,
                Some("desc") => true,
                Some(other) => {
                    return Err(at(path.len() + 1, format!("expected asc or desc after ';', found {other:?}")));
                }
            };
            let trimmed = path.trim();
            if trimmed.is_empty() {
                return Err(at(0, "expected an attribute path, id, type, createdAt or modifiedAt".into()));
            }
            let path = match trimmed {
                "id" | "@id" => OrderPath::Id,
                "type" | "@type" => OrderPath::Type,
                "createdAt" => OrderPath::CreatedAt,
                "modifiedAt" => OrderPath::ModifiedAt,
                _ => OrderPath::Attribute(parse_path(path, ctx).map_err(|e| at(e.position, e.message))?),
            };
            keys.push(OrderKey { path, descending });
            start += item.len() + 1;
        }
        Ok(OrderBy { keys })
    }

    /// True when this order is the one queries answer in anyway (by id, ascending).
    pub fn is_by_id(&self) -> bool {
        matches!(self.keys.first(), Some(OrderKey { path: OrderPath::Id, descending: false }))
    }

    /// The values `entity` sorts by.
    pub fn key(&self, entity: &Entity) -> SortKey {
        let values = self
            .keys
            .iter()
            .map(|k| {
                let candidates: Vec<SortValue> = match &k.path {
                    OrderPath::Id => vec![SortValue::Text(entity.id.clone())],
                    OrderPath::Type => entity.types.iter().map(|t| SortValue::Text(t.clone())).collect(),
                    OrderPath::CreatedAt => entity
                        .created_at
                        .iter()
                        .filter_map(|t| SortValue::from_json(&Value::String(t.clone())))
                        .collect(),
                    OrderPath::ModifiedAt => entity
                        .modified_at
                        .iter()
                        .filter_map(|t| SortValue::from_json(&Value::String(t.clone())))
                        .collect(),
                    OrderPath::Attribute(path) => {
                        values_at(entity, path).iter().filter_map(SortValue::from_json).collect()
                    }
                };
                let pick = if k.descending { Ordering::Greater } else { Ordering::Less };
                candidates.into_iter().reduce(|best, v| if v.cmp(&best) == pick { v } else { best })
            })
            .collect();
        SortKey { values, id: entity.id.clone() }
    }

    /// How two entities' keys compare in this order.
    pub fn compare(&self, a: &SortKey, b: &SortKey) -> Ordering {
        for (k, (x, y)) in self.keys.iter().zip(a.values.iter().zip(&b.values)) {
            let o = match (x, y) {
                (Some(x), Some(y)) => {
                    let o = x.cmp(y);
                    if k.descending {
                        o.reverse()
                    } else {
                        o
                    }
                }
                // Missing values go last whatever the direction.
                (Some(_), None) => Ordering::Less,
                (None, Some(_)) => Ordering::Greater,
                (None, None) => Ordering::Equal,
            };
            if o != Ordering::Equal {
                return o;
            }
        }
        a.id.cmp(&b.id)
    }

    /// Sorts entities in this order.
    pub fn sort(&self, entities: &mut Vec<Entity>) {
        let mut keyed: Vec<(SortKey, Entity)> = entities.drain(..).map(|e| (self.key(&e), e)).collect();
        keyed.sort_by(|a, b| self.compare(&a.0, &b.0));
        entities.extend(keyed.into_iter().map(|(_, e)| e));
    }

    /// Sorts histories in this order, each judged by its latest instance of every attribute not
    /// deleted (what its current state would be), as a store orders its own.
    pub fn sort_histories(&self, histories: &mut Vec<TemporalEntity>) {
        let mut keyed: Vec<(SortKey, TemporalEntity)> = histories
            .drain(..)
            .map(|h| {
                let mut latest = Entity::new(h.id.clone(), h.types.clone());
                latest.created_at = h.created_at.clone();
                latest.modified_at = h.modified_at.clone();
                for (name, instances) in &h.attrs {
                    if let Some(last) = instances.iter().rev().find(|i| i.deleted_at.is_none()) {
                        latest.attrs.insert(name.clone(), vec![last.attribute.clone()]);
                    }
                }
                (self.key(&latest), h)
            })
            .collect();
        keyed.sort_by(|a, b| self.compare(&a.0, &b.0));
        histories.extend(keyed.into_iter().map(|(_, h)| h));
    }
}

/// Keeps the first `wanted` of a stream of items in an order, holding at most twice that many at
/// once: what a store needs to page an ordered query without sorting every match in memory.
pub struct FirstInOrder<'a, T> {
    order: &'a OrderBy,
    wanted: usize,
    items: Vec<(SortKey, T)>,
}

impl<'a, T> FirstInOrder<'a, T> {
    pub fn new(order: &'a OrderBy, wanted: usize) -> Self {
        FirstInOrder { order, wanted, items: Vec::new() }
    }

    pub fn push(&mut self, key: SortKey, item: T) {
        if self.wanted == 0 {
            return;
        }
        self.items.push((key, item));
        if self.items.len() >= self.wanted.saturating_mul(2).max(64) {
            self.shrink();
        }
    }

    fn shrink(&mut self) {
        let order = self.order;
        self.items.sort_by(|a, b| order.compare(&a.0, &b.0));
        self.items.truncate(self.wanted);
    }

    /// The first `wanted` items, in order.
    pub fn finish(mut self) -> Vec<T> {
        self.shrink();
        self.items.into_iter().map(|(_, item)| item).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ngsild_core::expand::expand_entity;
    use ngsild_jsonld::core_context;
    use serde_json::json;

    fn building(n: u32, name: Option<&str>, sub: i64, created: &str) -> Entity {
        let mut body = json!({"id": format!("urn:ngsi-ld:Building:{n}"), "type": "Building"});
        if let Some(name) = name {
            body["name"] = json!({"type": "Property", "value": name, "sub": {"type": "Property", "value": sub}});
        }
        let mut e = expand_entity(body.as_object().unwrap(), &core_context()).unwrap().0;
        e.created_at = Some(created.to_owned());
        e
    }

    fn ids(order: &str, mut entities: Vec<Entity>) -> Vec<String> {
        let order = OrderBy::parse(order, &core_context()).unwrap();
        order.sort(&mut entities);
        entities.into_iter().map(|e| e.id.rsplit(':').next().unwrap().to_owned()).collect()
    }

    fn three() -> Vec<Entity> {
        vec![
            building(2, Some("B"), 2, "2024-01-01T00:00:00Z"),
            building(1, Some("A"), 1, "2024-01-01T00:00:00.5Z"),
            building(3, Some("C"), 3, "2024-01-01T00:00:01Z"),
        ]
    }

    #[test]
    fn members_attributes_and_directions() {
        assert_eq!(ids("name", three()), ["1", "2", "3"]);
        assert_eq!(ids("name;desc", three()), ["3", "2", "1"]);
        assert_eq!(ids("id", three()), ["1", "2", "3"]);
        assert_eq!(ids("id;desc", three()), ["3", "2", "1"]);
        // Date-times compare as times, not as text ("00Z" sorts after "00.5Z" as text).
        assert_eq!(ids("createdAt", three()), ["2", "1", "3"]);
        assert_eq!(ids("name.sub;desc", three()), ["3", "2", "1"]);
        assert_eq!(ids("type;asc,name.sub;desc,name;asc", three()), ["3", "2", "1"]);
        assert_eq!(ids("type,name", three()), ["1", "2", "3"]);
    }

    #[test]
    fn missing_values_go_last_and_ties_go_by_id() {
        let mut all = three();
        all.push(building(0, None, 0, "2024-01-01T00:00:02Z"));
        all.push(building(4, Some("A"), 9, "2024-01-01T00:00:03Z"));
        assert_eq!(ids("name", all.clone()), ["1", "4", "2", "3", "0"]);
        assert_eq!(ids("name;desc", all), ["3", "2", "1", "4", "0"]);
    }

    #[test]
    fn numbers_before_text() {
        let mut odd = building(9, Some("x"), 0, "2024-01-01T00:00:00Z");
        odd.attrs.get_mut("https://uri.etsi.org/ngsi-ld/default-context/name").unwrap()[0].value = json!(5);
        let mut all = three();
        all.push(odd);
        assert_eq!(ids("name", all), ["9", "1", "2", "3"]);
    }

    #[test]
    fn errors_name_their_position() {
        let ctx = core_context();
        let e = OrderBy::parse("name;up", &ctx).unwrap_err();
        assert_eq!(e.position, 5);
        assert!(e.message.contains("asc or desc"), "{}", e.message);
        let e = OrderBy::parse("name,,id", &ctx).unwrap_err();
        assert_eq!(e.position, 5);
        let e = OrderBy::parse("name,a b", &ctx).unwrap_err();
        assert_eq!(e.position, 6);
        let many = vec!["id"; MAX_ORDER_KEYS + 1].join(",");
        assert!(OrderBy::parse(&many, &ctx).unwrap_err().message.contains("at most 16"));
        assert!(OrderBy::parse("id", &ctx).unwrap().is_by_id());
        assert!(!OrderBy::parse("id;desc", &ctx).unwrap().is_by_id());
    }

    #[test]
    fn first_in_order_keeps_the_first() {
        let order = OrderBy::parse("name.sub;desc", &core_context()).unwrap();
        let mut first = FirstInOrder::new(&order, 3);
        for n in 0..200u32 {
            let e = building(n, Some("n"), i64::from(n % 97), "2024-01-01T00:00:00Z");
            first.push(order.key(&e), e.id.clone());
        }
        let kept = first.finish();
        assert_eq!(kept, ["urn:ngsi-ld:Building:193", "urn:ngsi-ld:Building:96", "urn:ngsi-ld:Building:192"]);
    }

    #[test]
    fn histories_sort_by_their_latest_instance_not_deleted() {
        use ngsild_core::model::{Attribute, AttributeKind};
        use ngsild_core::temporal::Instance;
        let ctx = core_context();
        let name = ctx.expand_term("name").into_owned();
        let history = |id: &str, values: &[(&str, bool)]| {
            let mut h = TemporalEntity { id: id.to_owned(), types: vec!["urn:T".into()], ..Default::default() };
            h.attrs.insert(
                name.clone(),
                values
                    .iter()
                    .map(|(v, deleted)| Instance {
                        attribute: Attribute::new(AttributeKind::Property, json!(v)),
                        instance_id: format!("urn:i:{v}"),
                        deleted_at: deleted.then(|| "2024-01-01T00:00:00Z".to_owned()),
                    })
                    .collect(),
            );
            h
        };
        // urn:a's latest live value is "c" (its "a" was deleted); urn:b's is "b".
        let mut histories =
            vec![history("urn:a", &[("c", false), ("a", true)]), history("urn:b", &[("z", false), ("b", false)])];
        OrderBy::parse("name", &ctx).unwrap().sort_histories(&mut histories);
        assert_eq!(histories.iter().map(|h| h.id.as_str()).collect::<Vec<_>>(), vec!["urn:b", "urn:a"]);
    }
}
