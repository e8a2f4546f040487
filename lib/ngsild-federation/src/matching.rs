//! Which registrations serve a request (clause 4.3.6.4), and what to ask each of them.

use ngsild_query::EntityFilter;

use crate::registration::{Information, Mode, Registration, Selector};

/// The NGSI-LD operations of clause 4.20 (Table 4.20-1) the hub forwards.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Operation {
    QueryEntity,
    RetrieveEntity,
    RetrieveTypes,
    RetrieveAttrs,
    RetrieveTypeInfo,
    RetrieveAttrInfo,
    QueryTemporal,
    RetrieveTemporal,
    CreateEntity,
    UpdateAttrs,
    AppendAttrs,
    DeleteAttrs,
    DeleteEntity,
    MergeEntity,
    ReplaceEntity,
    ReplaceAttrs,
    UpdateEntity,
    CreateBatch,
    UpsertBatch,
    UpdateBatch,
    DeleteBatch,
    MergeBatch,
    QueryBatch,
    PurgeEntity,
}

impl Operation {
    /// The operation's name in clause 4.20, as registrations list it.
    pub fn name(self) -> &'static str {
        match self {
            Operation::QueryEntity => "queryEntity",
            Operation::RetrieveEntity => "retrieveEntity",
            Operation::RetrieveTypes => "retrieveEntityTypes",
            Operation::RetrieveAttrs => "retrieveAttrTypes",
            Operation::RetrieveTypeInfo => "retrieveEntityTypeInfo",
            Operation::RetrieveAttrInfo => "retrieveAttrTypeInfo",
            Operation::QueryTemporal => "queryTemporal",
            Operation::RetrieveTemporal => "retrieveTemporal",
            Operation::CreateEntity => "createEntity",
            Operation::UpdateAttrs => "updateAttrs",
            Operation::AppendAttrs => "appendAttrs",
            Operation::DeleteAttrs => "deleteAttrs",
            Operation::DeleteEntity => "deleteEntity",
            Operation::MergeEntity => "mergeEntity",
            Operation::ReplaceEntity => "replaceEntity",
            Operation::ReplaceAttrs => "replaceAttrs",
            Operation::UpdateEntity => "updateEntity",
            Operation::CreateBatch => "createBatch",
            Operation::UpsertBatch => "upsertBatch",
            Operation::UpdateBatch => "updateBatch",
            Operation::DeleteBatch => "deleteBatch",
            Operation::MergeBatch => "mergeBatch",
            Operation::QueryBatch => "queryBatch",
            Operation::PurgeEntity => "purgeEntity",
        }
    }

    /// Whether an operation changes data (auxiliary sources never see those).
    pub fn is_provision(self) -> bool {
        !self.name().starts_with("retrieve") && !self.name().starts_with("query")
    }

    /// Every operation, in the order of their declaration (`ALL[op as usize] == op`).
    pub const ALL: [Operation; 24] = [
        Self::QueryEntity,
        Self::RetrieveEntity,
        Self::RetrieveTypes,
        Self::RetrieveAttrs,
        Self::RetrieveTypeInfo,
        Self::RetrieveAttrInfo,
        Self::QueryTemporal,
        Self::RetrieveTemporal,
        Self::CreateEntity,
        Self::UpdateAttrs,
        Self::AppendAttrs,
        Self::DeleteAttrs,
        Self::DeleteEntity,
        Self::MergeEntity,
        Self::ReplaceEntity,
        Self::ReplaceAttrs,
        Self::UpdateEntity,
        Self::CreateBatch,
        Self::UpsertBatch,
        Self::UpdateBatch,
        Self::DeleteBatch,
        Self::MergeBatch,
        Self::QueryBatch,
        Self::PurgeEntity,
    ];

    /// The operations a source may be asked with to serve `operation`, the preferred first: the
    /// three ways of reading entities answer each other (a retrieval is a query by id), so do the
    /// two of reading history, and a purge is a deletion of the entities a query selects.
    pub fn ways(self) -> &'static [Operation] {
        match self {
            Self::QueryEntity => &[Self::QueryEntity, Self::QueryBatch],
            Self::QueryBatch => &[Self::QueryBatch, Self::QueryEntity],
            Self::RetrieveEntity => &[Self::RetrieveEntity, Self::QueryEntity, Self::QueryBatch],
            Self::PurgeEntity => &[Self::PurgeEntity, Self::DeleteEntity],
            Self::RetrieveTemporal => &[Self::RetrieveTemporal, Self::QueryTemporal],
            // updateEntity is not forwarded.
            Self::UpdateEntity => &[],
            // Every other operation is asked as itself.
            other => std::slice::from_ref(&Self::ALL[other as usize]),
        }
    }

    /// How to ask `registration` for `operation`: the first of its [`ways`](Self::ways) the
    /// registration offers.
    pub fn way(self, registration: &Registration) -> Option<Operation> {
        self.ways().iter().copied().find(|w| registration.supports(w.name()))
    }
}

/// What a client asks: the operation and the entities it concerns.
pub struct Request<'a> {
    pub operation: Operation,
    /// Ids, types, attributes and the geo-query of the request; q and scopeQ are left to the
    /// sources.
    pub filter: &'a EntityFilter,
    /// For an operation on one entity whose types are known (a create): its types.
    pub entity_types: &'a [String],
}

/// One registration to forward to, and how to narrow the request for it.
#[derive(Debug, Clone, PartialEq)]
pub struct Target<'r> {
    pub registration: &'r Registration,
    /// The attributes to ask for (expanded); None: as the client asked.
    pub attrs: Option<Vec<String>>,
    /// The entity ids the registration names, when the client named none; None: as the client
    /// asked.
    pub ids: Option<Vec<String>>,
    /// The entity types (expanded) of the registration's selectors that matched: what to ask
    /// for when the request names no type but the way of asking needs one (a query by id).
    pub types: Vec<String>,
    /// The operation to ask the source with (one of [`Operation::ways`] of the request's).
    pub way: Operation,
}

/// The registrations that serve `request`, in their stored order. Expired registrations, those
/// that offer no way to serve the operation, auxiliary ones for provision operations, and
/// exclusive ones that name no attribute are left out: an exclusive registration is about
/// specific attributes (clause 4.3.6.3), so one naming none gives nothing to take away from
/// the hub.
pub fn targets<'r>(registrations: &'r [Registration], request: &Request<'_>, now: &str) -> Vec<Target<'r>> {
    registrations
        .iter()
        .filter(|r| !r.expired(now))
        .filter(|r| !(r.mode == Mode::Auxiliary && request.operation.is_provision()))
        .filter(|r| !(r.mode == Mode::Exclusive && r.information.iter().all(|i| i.attribute_names().next().is_none())))
        .filter(|r| within_reach(r, request.filter))
        .filter_map(|r| Some((r, request.operation.way(r)?)))
        .filter_map(|(r, way)| target(r, request, way))
        .collect()
}

/// A registration with a location outside the geo-query's area cannot hold matching entities.
fn within_reach(reg: &Registration, filter: &EntityFilter) -> bool {
    let (Some(geo), Some(area)) = (&filter.geo, &reg.location) else {
        return true;
    };
    // Where it cannot be decided, keep the source.
    crate::registration::area_meets(area, geo).unwrap_or(true)
}

fn target<'r>(reg: &'r Registration, request: &Request<'_>, way: Operation) -> Option<Target<'r>> {
    let mut any = false;
    let mut types: Vec<String> = Vec::new();
    let mut all_attrs = false;
    let mut attrs: Vec<String> = Vec::new();
    let mut ids: Vec<String> = Vec::new();
    let mut unnamed_ids = false;
    for info in &reg.information {
        let Some((selected_ids, selected_types)) = selects_entities(info, request) else { continue };
        let registered: Vec<&String> = info.attribute_names().collect();
        let asked = &request.filter.attrs;
        let narrowed: Vec<String> = match (registered.is_empty(), asked.is_empty()) {
            (true, _) => {
                all_attrs = true;
                Vec::new()
            }
            (false, true) => registered.into_iter().cloned().collect(),
            (false, false) => registered.into_iter().filter(|n| asked.contains(n)).cloned().collect(),
        };
        if !all_attrs && narrowed.is_empty() && !asked.is_empty() {
            continue;
        }
        any = true;
        for t in selected_types {
            if !types.contains(&t) {
                types.push(t);
            }
        }
        for name in narrowed {
            if !attrs.contains(&name) {
                attrs.push(name);
            }
        }
        match selected_ids {
            Some(named) => ids.extend(named),
            None => unnamed_ids = true,
        }
    }
    if !any {
        return None;
    }
    let attrs = if all_attrs || (attrs.is_empty()) { None } else { Some(attrs) };
    let ids = if unnamed_ids || ids.is_empty() || !request.filter.ids.is_empty() {
        None
    } else {
        ids.sort();
        ids.dedup();
        Some(ids)
    };
    Some(Target { registration: reg, attrs, ids, types, way })
}

/// Whether the information covers the entities asked for: None when it does not; otherwise the
/// ids its selectors name (None inside: any id) and the types of the selectors that matched.
fn selects_entities(info: &Information, request: &Request<'_>) -> Option<(Option<Vec<String>>, Vec<String>)> {
    if info.entities.is_empty() {
        return Some((None, Vec::new()));
    }
    let mut named = Vec::new();
    let mut types = Vec::new();
    let mut unnamed = false;
    let mut matched = false;
    for selector in &info.entities {
        if !selector_matches(selector, request) {
            continue;
        }
        matched = true;
        types.extend(selector.types.iter().cloned());
        match &selector.id {
            Some(id) => named.push(id.clone()),
            None => unnamed = true,
        }
    }
    match (matched, unnamed) {
        (false, _) => None,
        (true, true) => Some((None, types)),
        (true, false) => Some((Some(named), types)),
    }
}

fn selector_matches(selector: &Selector, request: &Request<'_>) -> bool {
    let filter = request.filter;
    let types_match = match (&filter.types, request.entity_types.is_empty()) {
        (Some(expr), _) => expr.matches(&selector.types),
        (None, false) => selector.types.iter().any(|t| request.entity_types.contains(t)),
        (None, true) => true,
    };
    if !types_match {
        return false;
    }
    let id_matches = |id: &str| {
        selector.id.as_deref().is_none_or(|own| own == id)
            && selector.id_pattern.as_deref().is_none_or(|p| regex::Regex::new(p).is_ok_and(|re| re.is_match(id)))
    };
    if !filter.ids.is_empty() && !filter.ids.iter().any(|id| id_matches(id)) {
        return false;
    }
    if let (Some(pattern), Some(own)) = (&filter.id_pattern, &selector.id) {
        return pattern.is_match(own);
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registration::parse_registration;
    use ngsild_query::{GeoQuery, TypeExpr};
    use serde_json::json;

    const NOW: &str = "2024-01-01T00:00:00Z";

    fn reg(body: serde_json::Value) -> Registration {
        let mut body = body;
        body["type"] = json!("ContextSourceRegistration");
        body["id"] = json!("urn:ngsi-ld:ContextSourceRegistration:x");
        body["endpoint"] = json!("http://busan:1026");
        parse_registration(body.as_object().unwrap(), &ngsild_jsonld::core_context(), NOW).unwrap()
    }

    fn filter(types: Option<&str>, ids: &[&str], attrs: &[&str]) -> EntityFilter {
        let ctx = ngsild_jsonld::core_context();
        EntityFilter {
            ids: ids.iter().map(|s| s.to_string()).collect(),
            types: types.map(|t| TypeExpr::parse(t, &ctx).unwrap()),
            attrs: attrs.iter().map(|a| ctx.expand_term(a).into_owned()).collect(),
            ..Default::default()
        }
    }

    fn serve<'r>(regs: &'r [Registration], op: Operation, f: &EntityFilter) -> Vec<Target<'r>> {
        targets(regs, &Request { operation: op, filter: f, entity_types: &[] }, NOW)
    }

    #[test]
    fn a_registration_serves_queries_for_its_types_only() {
        let regs = vec![reg(json!({"information": [{"entities": [{"type": "AirQualityObserved"}]}]}))];
        assert_eq!(serve(&regs, Operation::QueryEntity, &filter(Some("AirQualityObserved"), &[], &[])).len(), 1);
        assert_eq!(serve(&regs, Operation::QueryEntity, &filter(Some("Parking"), &[], &[])).len(), 0);
        assert_eq!(
            serve(&regs, Operation::QueryEntity, &filter(Some("Parking|AirQualityObserved"), &[], &[])).len(),
            1
        );
    }

    #[test]
    fn registered_attributes_narrow_what_is_asked() {
        let regs = vec![reg(
            json!({"information": [{"entities": [{"type": "V", "id": "urn:v:1"}], "propertyNames": ["speed"]}]}),
        )];
        let all = serve(&regs, Operation::QueryEntity, &filter(Some("V"), &[], &[]));
        assert_eq!(
            all[0].attrs.as_deref(),
            Some(&[ngsild_jsonld::core_context().expand_term("speed").into_owned()][..])
        );
        assert_eq!(all[0].ids.as_deref(), Some(&["urn:v:1".to_owned()][..]));
        assert!(serve(&regs, Operation::QueryEntity, &filter(Some("V"), &[], &["brand"])).is_empty());
        assert!(serve(&regs, Operation::QueryEntity, &filter(None, &["urn:v:2"], &[])).is_empty());
        assert_eq!(serve(&regs, Operation::RetrieveEntity, &filter(None, &["urn:v:1"], &[])).len(), 1);
    }

    #[test]
    fn id_patterns_select_ids() {
        let regs = vec![reg(json!({"information": [{"entities": [{"type": "P", "idPattern": ".*downtown$"}]}]}))];
        assert_eq!(serve(&regs, Operation::RetrieveEntity, &filter(None, &["urn:p:downtown"], &[])).len(), 1);
        assert!(serve(&regs, Operation::RetrieveEntity, &filter(None, &["urn:p:uptown"], &[])).is_empty());
    }

    #[test]
    fn operations_and_modes_decide_what_is_forwarded() {
        let mut regs = vec![reg(json!({"information": [{"entities": [{"type": "V"}]}], "mode": "auxiliary"}))];
        let f = filter(Some("V"), &[], &[]);
        assert_eq!(serve(&regs, Operation::QueryEntity, &f).len(), 1);
        assert!(serve(&regs, Operation::CreateEntity, &f).is_empty());
        regs[0].mode = Mode::Redirect;
        assert!(serve(&regs, Operation::CreateEntity, &f).is_empty(), "federationOps has no createEntity");
        regs[0].operations = Some(vec!["redirectionOps".into()]);
        assert_eq!(serve(&regs, Operation::CreateEntity, &f).len(), 1);
        regs[0].expires_at = Some("2020-01-01T00:00:00Z".into());
        assert!(serve(&regs, Operation::QueryEntity, &f).is_empty(), "expired");
    }

    #[test]
    fn a_source_is_asked_the_way_it_offers() {
        let mut regs = vec![reg(json!({"information": [{"entities": [{"type": "V"}]}]}))];
        let by_id = filter(None, &["urn:v:1"], &[]);
        let ways = |regs: &[Registration], op: Operation, f: &EntityFilter| -> Vec<Operation> {
            serve(regs, op, f).iter().map(|t| t.way).collect()
        };
        assert_eq!(ways(&regs, Operation::RetrieveEntity, &by_id), [Operation::RetrieveEntity]);
        assert_eq!(ways(&regs, Operation::QueryBatch, &by_id), [Operation::QueryBatch]);
        regs[0].operations = Some(vec!["queryBatch".into()]);
        let retrieval = serve(&regs, Operation::RetrieveEntity, &by_id);
        assert_eq!(retrieval[0].way, Operation::QueryBatch, "a retrieval becomes a query by id");
        assert_eq!(retrieval[0].types, [ngsild_jsonld::core_context().expand_term("V").into_owned()]);
        regs[0].operations = Some(vec!["retrieveOps".into()]);
        assert_eq!(ways(&regs, Operation::QueryBatch, &by_id), [Operation::QueryEntity]);
        regs[0].operations = Some(vec!["redirectionOps".into()]);
        assert_eq!(ways(&regs, Operation::PurgeEntity, &filter(Some("V"), &[], &[])), [Operation::PurgeEntity]);
        regs[0].operations = Some(vec!["deleteEntity".into()]);
        assert_eq!(ways(&regs, Operation::PurgeEntity, &filter(Some("V"), &[], &[])), [Operation::DeleteEntity]);
        regs[0].operations = Some(vec!["queryTemporal".into()]);
        assert_eq!(ways(&regs, Operation::RetrieveTemporal, &by_id), [Operation::QueryTemporal]);
    }

    #[test]
    fn an_exclusive_registration_without_attributes_takes_nothing() {
        let mut regs = vec![reg(json!({"information": [{"entities": [{"type": "V", "id": "urn:v:1"}]}]}))];
        regs[0].mode = Mode::Exclusive;
        regs[0].operations = Some(vec!["redirectionOps".into()]);
        assert!(serve(&regs, Operation::DeleteEntity, &filter(None, &["urn:v:1"], &[])).is_empty());
        regs[0].information[0].property_names = vec![ngsild_jsonld::core_context().expand_term("speed").into_owned()];
        assert_eq!(serve(&regs, Operation::DeleteEntity, &filter(None, &["urn:v:1"], &[])).len(), 1);
    }

    #[test]
    fn a_registered_location_far_from_the_query_area_is_not_asked() {
        let regs = vec![reg(json!({
            "information": [{"entities": [{"type": "V"}]}],
            "location": {"type": "Polygon", "coordinates": [[[128.9, 35.0], [129.3, 35.0], [129.3, 35.3], [128.9, 35.3], [128.9, 35.0]]]}
        }))];
        let location = ngsild_jsonld::core_context().expand_term("location").into_owned();
        let mut f = filter(Some("V"), &[], &[]);
        f.geo = Some(
            GeoQuery::parse(
                "within",
                "Polygon",
                "[[[126.8,37.4],[127.2,37.4],[127.2,37.7],[126.8,37.7],[126.8,37.4]]]",
                &location,
            )
            .unwrap(),
        );
        assert!(serve(&regs, Operation::QueryEntity, &f).is_empty(), "Seoul's box does not reach Busan");
        f.geo = Some(
            GeoQuery::parse(
                "within",
                "Polygon",
                "[[[128.0,34.0],[130.0,34.0],[130.0,36.0],[128.0,36.0],[128.0,34.0]]]",
                &location,
            )
            .unwrap(),
        );
        assert_eq!(serve(&regs, Operation::QueryEntity, &f).len(), 1);
    }

    #[test]
    fn every_operation_is_asked_as_itself_unless_another_way_answers_it() {
        for (index, op) in Operation::ALL.iter().enumerate() {
            assert_eq!(*op as usize, index, "{op:?} out of order in ALL");
            match op {
                Operation::UpdateEntity => assert!(op.ways().is_empty()),
                _ => assert_eq!(op.ways()[0], *op, "{op:?} is first of all asked as itself"),
            }
        }
        assert_eq!(Operation::CreateBatch.ways(), [Operation::CreateBatch]);
        assert_eq!(Operation::PurgeEntity.ways(), [Operation::PurgeEntity, Operation::DeleteEntity]);
        assert_eq!(Operation::RetrieveTemporal.ways(), [Operation::RetrieveTemporal, Operation::QueryTemporal]);
        assert_eq!(Operation::QueryBatch.name(), "queryBatch");
    }
}
