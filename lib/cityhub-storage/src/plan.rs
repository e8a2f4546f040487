//! The backend-neutral query plan: which index probes an [`EntityFilter`] turns into, and whether
//! those probes answer it exactly or only narrow the candidates for [`EntityFilter::matches`].
//!
//! A backend keeps indexes of current state and answers each [`Probe`] with the set of entities
//! it selects; the filter's answer is the intersection of those sets. When [`Plan::residual`] is
//! false (and the backend answered every probe exactly, see [`Probe::Geo`]), the intersection
//! **is** the answer: the count is its size and only the requested page need be decoded.
//! Otherwise the candidates (or, with no probe at all, every entity of the tenant) are decoded and
//! `EntityFilter::matches` decides. The plan decides nothing about the data; it only says which
//! parts of the filter an index can decide.
//!
//! [`Probe::matches`] is each probe's definition on one entity; the indexes must agree with it.
//! For any filter and entity: when the plan is exact, `filter.matches(e)` equals every probe
//! matching `e`; when it is residual, `filter.matches(e)` implies every probe matching `e` (a
//! probe never loses a match). The unit tests below check both.
//!
//! What the index of scalars must hold per attribute is [`indexed_scalars`]: the numbers and
//! strings `q` compares for a term on the attribute itself.

use ngsild_core::model::{Attribute, AttributeKind};
use ngsild_core::Entity;
use ngsild_query::geo::{BoundingBox, GeoQuery};
use ngsild_query::q::{Literal, Op, Operand, QExpr, QTerm};
use ngsild_query::EntityFilter;
use serde_json::Value;

/// One scalar of an attribute's values, as a scalar index holds it.
#[derive(Debug, Clone, PartialEq)]
pub enum Scalar {
    Num(f64),
    /// Strings compare bytewise (UTF-8 byte order, as Rust's `str` does): SQLite's BINARY
    /// collation; PostgreSQL needs `COLLATE "C"`.
    Str(String),
}

/// A comparison operator a scalar index answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CmpOp {
    Eq,
    Gt,
    Ge,
    Lt,
    Le,
}

impl CmpOp {
    /// The operator in SQL.
    pub fn sql(self) -> &'static str {
        match self {
            CmpOp::Eq => "=",
            CmpOp::Gt => ">",
            CmpOp::Ge => ">=",
            CmpOp::Lt => "<",
            CmpOp::Le => "<=",
        }
    }
}

/// What one indexed scalar must meet. A number is compared only with numbers, a string only with
/// strings: `Compare(Gt, Num(3))` never selects an attribute holding only strings.
#[derive(Debug, Clone, PartialEq)]
pub enum Condition {
    /// `scalar op value`.
    Compare(CmpOp, Scalar),
    /// `low <= scalar <= high`, both ends included; both bounds of one kind (both numbers or both
    /// strings).
    Between(Scalar, Scalar),
    /// The scalar is one of these numbers or one of these strings (either list may be empty, not
    /// both).
    OneOf { numbers: Vec<f64>, texts: Vec<String> },
}

impl Condition {
    /// Whether one indexed scalar meets the condition.
    pub fn holds(&self, scalar: &Scalar) -> bool {
        match (self, scalar) {
            (Condition::Compare(op, Scalar::Num(v)), Scalar::Num(s)) => compare(*op, s.partial_cmp(v)),
            (Condition::Compare(op, Scalar::Str(v)), Scalar::Str(s)) => compare(*op, Some(s.as_str().cmp(v))),
            (Condition::Between(Scalar::Num(lo), Scalar::Num(hi)), Scalar::Num(s)) => lo <= s && s <= hi,
            (Condition::Between(Scalar::Str(lo), Scalar::Str(hi)), Scalar::Str(s)) => lo <= s && s <= hi,
            (Condition::OneOf { numbers, .. }, Scalar::Num(s)) => numbers.contains(s),
            (Condition::OneOf { texts, .. }, Scalar::Str(s)) => texts.contains(s),
            _ => false,
        }
    }
}

fn compare(op: CmpOp, ordering: Option<std::cmp::Ordering>) -> bool {
    use std::cmp::Ordering::{Equal, Greater, Less};
    matches!(
        (op, ordering),
        (CmpOp::Eq, Some(Equal))
            | (CmpOp::Gt, Some(Greater))
            | (CmpOp::Ge, Some(Greater | Equal))
            | (CmpOp::Lt, Some(Less))
            | (CmpOp::Le, Some(Less | Equal))
    )
}

/// One index probe: a set of entities of the tenant, defined by [`Probe::matches`].
#[derive(Debug, Clone, PartialEq)]
pub enum Probe {
    /// The entities whose id is one of these (exact).
    Ids(Vec<String>),
    /// The entities with at least one of these types (expanded; exact). Planned only when no
    /// `Attrs` or `Scalar` probe carries the types already.
    Types(Vec<String>),
    /// The entities that have at least one of the attributes `attrs` (expanded) and, with
    /// `types`, at least one of those types (exact). From `attrs` and from `q=attr` existence.
    Attrs { attrs: Vec<String>, types: Option<Vec<String>> },
    /// The entities whose attribute `attr` holds at least one scalar ([`indexed_scalars`], over
    /// all its instances) meeting `condition` and, with `types`, that have at least one of those
    /// types (exact). From a `q` comparison on the attribute itself.
    Scalar { attr: String, types: Option<Vec<String>>, condition: Condition },
    /// The entities whose GeoProperty `query.geoproperty` meets the geo-query
    /// (`GeoQuery::matches`). Every matching geometry intersects `search_box` (min lon, max lon,
    /// min lat, max lat), which a spatial index can search. A backend that decides the relation
    /// exactly (SQLite does for points, with `GeoQuery::matches_point`; PostGIS can for any
    /// geometry) answers exactly; one that returns box candidates must treat the whole filter
    /// as residual.
    Geo { query: GeoQuery, search_box: BoundingBox },
}

impl Probe {
    /// The probe's definition: whether it selects `entity`.
    pub fn matches(&self, entity: &Entity) -> bool {
        let typed =
            |types: &Option<Vec<String>>| types.as_ref().is_none_or(|ts| ts.iter().any(|t| entity.types.contains(t)));
        match self {
            Probe::Ids(ids) => ids.contains(&entity.id),
            Probe::Types(types) => types.iter().any(|t| entity.types.contains(t)),
            Probe::Attrs { attrs, types } => typed(types) && attrs.iter().any(|a| entity.attrs.contains_key(a)),
            Probe::Scalar { attr, types, condition } => {
                typed(types)
                    && entity
                        .attrs
                        .get(attr)
                        .is_some_and(|instances| indexed_scalars(instances).iter().any(|s| condition.holds(s)))
            }
            Probe::Geo { query, .. } => query.matches(entity),
        }
    }
}

/// How a filter is answered: the probes whose sets are intersected, and whether the filter must
/// still judge the candidates.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    /// In the order they are best run: ids, `q` terms, attributes, types, geo-query.
    pub probes: Vec<Probe>,
    /// Some part of the filter no probe decides (an id pattern, `scopeQ`, a type expression with
    /// `;`, a `q` with `|` or a term no index holds, a geo-query without a search box): decode
    /// the candidates and let `EntityFilter::matches` decide.
    pub residual: bool,
}

impl Plan {
    /// Whether the probes alone answer the filter (see [`Probe::Geo`] for the geo probe).
    pub fn is_exact(&self) -> bool {
        !self.residual
    }
}

/// The plan of a filter (its `order` selects nothing and is not planned).
pub fn plan(filter: &EntityFilter) -> Plan {
    let mut probes = Vec::new();
    let mut residual = filter.id_pattern.is_some() || filter.scope_q.is_some();
    let type_list = filter.types.as_ref().map(|t| t.as_type_list());
    let types: Option<Vec<String>> =
        type_list.clone().flatten().map(|list| list.into_iter().map(str::to_owned).collect());
    if type_list.is_some() && types.is_none() {
        residual = true;
    }
    let mut types_implied = false;
    if !filter.ids.is_empty() {
        probes.push(Probe::Ids(filter.ids.clone()));
    }
    if let Some(q) = &filter.q {
        let terms = conjunction(q);
        if terms.is_none() {
            residual = true;
        }
        for term in terms.unwrap_or_else(|| q.conjuncts()) {
            let attr = term.path().attr.clone();
            let probe = match term_condition(term) {
                Some(TermProbe::Present) => Probe::Attrs { attrs: vec![attr], types: types.clone() },
                Some(TermProbe::Scalar(condition)) => Probe::Scalar { attr, types: types.clone(), condition },
                None => {
                    residual = true;
                    continue;
                }
            };
            probes.push(probe);
            types_implied |= types.is_some();
        }
    }
    if !filter.attrs.is_empty() {
        probes.push(Probe::Attrs { attrs: filter.attrs.clone(), types: types.clone() });
        types_implied |= types.is_some();
    }
    if let (Some(types), false) = (types, types_implied) {
        probes.push(Probe::Types(types));
    }
    if let Some(query) = &filter.geo {
        match query.search_box() {
            Some(search_box) => probes.push(Probe::Geo { query: query.clone(), search_box }),
            None => residual = true,
        }
    }
    Plan { probes, residual }
}

/// The terms of `q` when it is a plain conjunction (or one term); `None` with any `|`.
fn conjunction(q: &QExpr) -> Option<Vec<&QTerm>> {
    match q {
        QExpr::Term(t) => Some(vec![t]),
        QExpr::And(all) => all.iter().map(|e| if let QExpr::Term(t) = e { Some(t) } else { None }).collect(),
        QExpr::Or(_) => None,
    }
}

enum TermProbe {
    Present,
    Scalar(Condition),
}

/// The exact probe of a q term on an attribute's own value, when there is one.
fn term_condition(term: &QTerm) -> Option<TermProbe> {
    let path = term.path();
    if !path.sub.is_empty() || !path.compound.is_empty() {
        return None;
    }
    let scalar = |lit: &Literal| match lit {
        Literal::Number(n) => Some(Scalar::Num(*n)),
        Literal::Text(t) => Some(Scalar::Str(t.clone())),
        _ => None,
    };
    match term {
        QTerm::Exists(_) => Some(TermProbe::Present),
        QTerm::Compare(_, op, Operand::One(lit)) => {
            let op = match op {
                Op::Eq => CmpOp::Eq,
                Op::Gt => CmpOp::Gt,
                Op::Ge => CmpOp::Ge,
                Op::Lt => CmpOp::Lt,
                Op::Le => CmpOp::Le,
                _ => return None,
            };
            Some(TermProbe::Scalar(Condition::Compare(op, scalar(lit)?)))
        }
        QTerm::Compare(_, Op::Eq, Operand::Range(lo, hi)) => match (scalar(lo)?, scalar(hi)?) {
            (lo @ Scalar::Num(_), hi @ Scalar::Num(_)) | (lo @ Scalar::Str(_), hi @ Scalar::Str(_)) => {
                Some(TermProbe::Scalar(Condition::Between(lo, hi)))
            }
            _ => None,
        },
        QTerm::Compare(_, Op::Eq, Operand::List(items)) => {
            let (mut numbers, mut texts) = (Vec::new(), Vec::new());
            for item in items {
                match item {
                    Literal::Number(n) => numbers.push(*n),
                    Literal::Text(t) => texts.push(t.clone()),
                    _ => return None,
                }
            }
            if numbers.is_empty() && texts.is_empty() {
                return None;
            }
            Some(TermProbe::Scalar(Condition::OneOf { numbers, texts }))
        }
        _ => None,
    }
}

/// The scalars a scalar index holds for one attribute, over all its instances: those
/// `ngsild_query::q` compares for a term on the attribute itself (no sub-attribute or compound
/// path). Numbers and strings of the value, through arrays, the strings of a LanguageProperty's
/// language map, the objects of a ListRelationship; nothing of a GeoProperty. Duplicates kept.
pub fn indexed_scalars(instances: &[Attribute]) -> Vec<Scalar> {
    let mut out = Vec::new();
    for attr in instances {
        if attr.kind != AttributeKind::GeoProperty {
            collect_scalars(attr.kind, &attr.value, &mut out);
        }
    }
    out
}

fn collect_scalars(kind: AttributeKind, value: &Value, out: &mut Vec<Scalar>) {
    match (kind, value) {
        (AttributeKind::LanguageProperty, Value::Object(map)) => {
            map.values().for_each(|v| collect_scalars(AttributeKind::Property, v, out))
        }
        (AttributeKind::ListRelationship, Value::Array(items)) => {
            items.iter().for_each(|i| collect_scalars(AttributeKind::Relationship, i.get("object").unwrap_or(i), out))
        }
        (_, Value::Array(items)) => items.iter().for_each(|i| collect_scalars(kind, i, out)),
        (_, Value::Number(n)) => out.extend(n.as_f64().map(Scalar::Num)),
        (_, Value::String(s)) => out.push(Scalar::Str(s.clone())),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ngsild_core::model::Attribute;
    use ngsild_jsonld::Context;
    use ngsild_query::{ScopeExpr, TypeExpr};
    use serde_json::json;

    const T: &str = "https://example.org/";

    fn ctx() -> Context {
        Context::build(&json!({"@vocab": T}), &ngsild_jsonld::NoDocuments).unwrap()
    }

    fn filter(q: Option<&str>, types: Option<&str>) -> EntityFilter {
        let ctx = ctx();
        EntityFilter {
            q: q.map(|q| QExpr::parse(q, &ctx).unwrap()),
            types: types.map(|t| TypeExpr::parse(t, &ctx).unwrap()),
            ..Default::default()
        }
    }

    fn entity(id: &str, types: &[&str], attrs: &[(&str, AttributeKind, Value)]) -> Entity {
        let mut e = Entity::new(id, types.iter().map(|t| format!("{T}{t}")).collect());
        for (name, kind, value) in attrs {
            e.attrs.entry(format!("{T}{name}")).or_default().push(Attribute::new(*kind, value.clone()));
        }
        e
    }

    fn entities() -> Vec<Entity> {
        use AttributeKind::*;
        vec![
            entity("urn:e:1", &["Room"], &[("temp", Property, json!(20)), ("name", Property, json!("b"))]),
            entity("urn:e:2", &["Room"], &[("temp", Property, json!([18, 25]))]),
            entity("urn:e:3", &["Hall"], &[("temp", Property, json!(30)), ("name", Property, json!("a"))]),
            entity("urn:e:4", &["Room", "Hall"], &[("name", LanguageProperty, json!({"en": "c", "fr": "d"}))]),
            entity("urn:e:5", &["Room"], &[("temp", Property, json!({"v": 20}))]),
            entity(
                "urn:e:6",
                &["Car"],
                &[("owner", ListRelationship, json!([{"object": "urn:p:1"}, {"object": "urn:p:2"}]))],
            ),
            entity(
                "urn:e:7",
                &["Car"],
                &[("location", GeoProperty, json!({"type": "Point", "coordinates": [2.0, 48.0]}))],
            ),
            entity("urn:e:8", &["Room"], &[("temp", Property, json!(true))]),
        ]
    }

    /// Checks the plan's promise over the sample entities; answers whether the plan was exact.
    fn check(filter: &EntityFilter) -> bool {
        let plan = plan(filter);
        for e in entities() {
            let probed = plan.probes.iter().all(|p| p.matches(&e));
            if plan.is_exact() {
                assert_eq!(filter.matches(&e), probed, "exact plan {plan:?} on {}", e.id);
            } else if filter.matches(&e) {
                assert!(probed, "a probe of {plan:?} lost {}", e.id);
            }
        }
        plan.is_exact()
    }

    #[test]
    fn exact_filters_are_answered_by_their_probes_alone() {
        let exact = [
            (Some("temp==20"), None),
            (Some("temp>19;temp<26"), Some("Room")),
            (Some("temp==18..21"), None),
            (Some("name==\"a\",\"c\""), None),
            (Some("name>\"a\""), Some("Room,Hall")),
            (Some("temp==20,30"), None),
            (Some("temp"), Some("Hall")),
            (Some("owner==\"urn:p:2\""), None),
            (None, Some("Room,Car")),
        ];
        for (q, types) in exact {
            assert!(check(&filter(q, types)), "{q:?} {types:?} is exact");
        }
    }

    #[test]
    fn residual_filters_keep_every_match_among_the_candidates() {
        let residual = [
            (Some("temp==20|name==\"a\""), None),
            (Some("temp.v==20"), None),
            (Some("temp!=20"), Some("Room")),
            (Some("name~=\"^a\""), None),
            (Some("temp==true"), None),
            (Some("temp==20;name~=\"b\""), Some("Room")),
            (None, Some("Room;Hall")),
        ];
        for (q, types) in residual {
            assert!(!check(&filter(q, types)), "{q:?} {types:?} is residual");
        }
        let mut scoped = filter(Some("temp==20"), None);
        scoped.scope_q = Some(ScopeExpr::parse("/a").unwrap());
        assert!(!check(&scoped));
        let mut pattern = filter(None, Some("Room"));
        pattern.id_pattern = Some(regex::Regex::new("e:[12]").unwrap());
        assert!(!check(&pattern));
    }

    #[test]
    fn types_ride_on_the_attribute_probes_when_there_are_any() {
        let mut f = filter(Some("temp>19"), Some("Room,Hall"));
        f.attrs = vec![format!("{T}name")];
        f.ids = vec!["urn:e:1".into(), "urn:e:3".into()];
        let p = plan(&f);
        let types = Some(vec![format!("{T}Room"), format!("{T}Hall")]);
        assert_eq!(
            p.probes,
            vec![
                Probe::Ids(vec!["urn:e:1".into(), "urn:e:3".into()]),
                Probe::Scalar {
                    attr: format!("{T}temp"),
                    types: types.clone(),
                    condition: Condition::Compare(CmpOp::Gt, Scalar::Num(19.0))
                },
                Probe::Attrs { attrs: vec![format!("{T}name")], types },
            ]
        );
        assert!(check(&f));
        // Alone, the types are their own probe.
        assert_eq!(plan(&filter(None, Some("Room"))).probes, vec![Probe::Types(vec![format!("{T}Room")])]);
        // No filter: no probe, nothing residual: the whole tenant.
        assert_eq!(plan(&EntityFilter::default()), Plan { probes: vec![], residual: false });
    }

    #[test]
    fn geo_queries_probe_their_search_box_or_stay_residual() {
        let geo = |georel: &str, coordinates: &str| EntityFilter {
            geo: Some(GeoQuery::parse(georel, "Point", coordinates, &format!("{T}location")).unwrap()),
            ..Default::default()
        };
        let near = geo("near;maxDistance==1000", "[2.0,48.0]");
        let p = plan(&near);
        assert!(matches!(&p.probes[..], [Probe::Geo { search_box, .. }] if search_box.0 < 2.0 && search_box.1 > 2.0));
        assert!(check(&near));
        let far = geo("near;minDistance==1000", "[2.0,48.0]");
        assert!(plan(&far).probes.is_empty() && !check(&far));
    }

    #[test]
    fn conditions_compare_numbers_with_numbers_and_strings_bytewise() {
        let gt = Condition::Compare(CmpOp::Gt, Scalar::Num(3.0));
        assert!(gt.holds(&Scalar::Num(3.5)) && !gt.holds(&Scalar::Num(3.0)) && !gt.holds(&Scalar::Str("9".into())));
        let le = Condition::Compare(CmpOp::Le, Scalar::Str("b".into()));
        assert!(le.holds(&Scalar::Str("b".into())) && le.holds(&Scalar::Str("B".into())));
        assert!(!le.holds(&Scalar::Str("é".into())), "bytewise: é (0xC3 0xA9) sorts after b");
        let between = Condition::Between(Scalar::Num(1.0), Scalar::Num(2.0));
        assert!(
            between.holds(&Scalar::Num(1.0)) && between.holds(&Scalar::Num(2.0)) && !between.holds(&Scalar::Num(2.5))
        );
        let one_of = Condition::OneOf { numbers: vec![1.0], texts: vec!["x".into()] };
        assert!(one_of.holds(&Scalar::Str("x".into())) && !one_of.holds(&Scalar::Str("1".into())));
    }

    #[test]
    fn indexed_scalars_are_what_q_compares() {
        use AttributeKind::*;
        let a = |kind, value: Value| Attribute::new(kind, value);
        assert_eq!(
            indexed_scalars(&[
                a(Property, json!([1, "x", [2]])),
                a(Property, json!({"k": 3})),
                a(Property, json!(true))
            ]),
            vec![Scalar::Num(1.0), Scalar::Str("x".into()), Scalar::Num(2.0)]
        );
        assert_eq!(indexed_scalars(&[a(LanguageProperty, json!({"en": "a"}))]), vec![Scalar::Str("a".into())]);
        assert_eq!(
            indexed_scalars(&[a(ListRelationship, json!([{"object": "urn:a"}, "urn:b"]))]),
            vec![Scalar::Str("urn:a".into()), Scalar::Str("urn:b".into())]
        );
        assert!(indexed_scalars(&[a(GeoProperty, json!({"type": "Point", "coordinates": [1, 2]}))]).is_empty());
    }
}
