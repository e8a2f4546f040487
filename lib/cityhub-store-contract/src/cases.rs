//! The contract cases. Each takes a fresh, empty store and panics when the backend breaks the
//! contract of `cityhub_storage::Store`.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use cityhub_storage::{
    modify_one, AggrMethod, AuditEntry, AuditFilter, AuditOutcome, DeliveryOutcome, DynStore, Modified, Modifier,
    NotifierCommit, OutboxItem, Paging, RecordKind, StoreError, StoreEvent, StoredContext, SubscriptionKind,
    TemporalOutcome, TemporalQuery, TemporalWrite, TimeRel, UpdateReport,
};
use ngsild_core::error::ErrorKind;
use ngsild_core::model::{Attribute, AttributeKind};
use ngsild_core::NgsiLdError;
use ngsild_query::{EntityFilter, TypeExpr};
use serde_json::{json, Value};

use crate::support::*;
use crate::Fixture;

pub async fn entities_round_trip(store: DynStore) {
    let s = store.as_ref();
    assert_eq!(s.get_entity("", "urn:c:1").await.unwrap(), None);
    let created = modify_one(s, "", "urn:c:1", create(counter("urn:c:1", 1))).await;
    let change = created.as_ref().unwrap();
    assert_eq!(change.before, None, "a new entity has no state before");
    assert_eq!(n_of(after(&created)), 1);
    let stored = s.get_entity("", "urn:c:1").await.unwrap().expect("the created entity");
    assert_eq!(&stored, after(&created), "get answers what the change answered");

    let again = modify_one(s, "", "urn:c:1", create(counter("urn:c:1", 9))).await;
    assert_eq!(again.unwrap_err().kind, ErrorKind::AlreadyExists, "the modifier saw the stored entity");
    assert_eq!(n_of(&s.get_entity("", "urn:c:1").await.unwrap().unwrap()), 1, "a refused change wrote nothing");

    let replaced = modify_one(s, "", "urn:c:1", put(counter("urn:c:1", 5))).await;
    assert_eq!(replaced.as_ref().unwrap().before.as_ref().map(n_of), Some(1));
    assert_eq!(n_of(after(&replaced)), 5);

    // A rich entity reads back exactly as written: every attribute kind, datasetIds, metadata,
    // sub-attributes, scopes, a geometry.
    let rich = entity(json!({
        "id": "urn:c:rich", "type": ["Counter", "Sensor"], "scope": ["/city/seoul", "/a/b"],
        "n": {"type": "Property", "value": 3.25, "unitCode": "CEL", "observedAt": "2026-01-01T00:00:00Z",
              "accuracy": {"type": "Property", "value": 0.5}},
        "m": [{"type": "Property", "value": 1, "datasetId": "urn:d:1"}, {"type": "Property", "value": "two"}],
        "owner": {"type": "Relationship", "object": "urn:ngsi-ld:Owner:1"},
        "name": {"type": "LanguageProperty", "languageMap": {"en": "Hall", "ko": "회관"}},
        "nested": {"type": "Property", "value": {"a": [1, {"b": null}], "c": "d"}},
        "doc": {"type": "JsonProperty", "json": {"any": ["thing", 1, true]}},
        "list": {"type": "ListProperty", "valueList": [3, 1, 2]},
        "location": {"type": "GeoProperty", "value": {"type": "Point", "coordinates": [126.97, 37.56]}}
    }));
    let made = modify_one(s, "", "urn:c:rich", put(rich.clone())).await;
    assert_eq!(after(&made), &rich);
    assert_eq!(s.get_entity("", "urn:c:rich").await.unwrap().as_ref(), Some(&rich), "read back as written");

    let deleted = modify_one(s, "", "urn:c:1", delete()).await.unwrap();
    assert_eq!(deleted.before.as_ref().map(n_of), Some(5));
    assert_eq!(deleted.after, None);
    assert_eq!(s.get_entity("", "urn:c:1").await.unwrap(), None);
    let missing = modify_one(s, "", "urn:c:1", delete()).await.unwrap_err();
    assert_eq!(missing.kind, ErrorKind::ResourceNotFound, "the modifier saw no entity");
    assert_eq!(ids(&all(s, "").await), ["urn:c:rich"]);
}

pub async fn tenants_come_into_being_with_their_first_write(store: DynStore) {
    let s = store.as_ref();
    assert!(s.tenant_exists("").await.unwrap(), "the default tenant always exists");
    assert!(!s.tenant_exists("seoul").await.unwrap());
    modify_one(s, "seoul", "urn:c:1", create(counter("urn:c:1", 1))).await.unwrap();
    modify_one(s, "busan", "urn:c:1", create(counter("urn:c:1", 2))).await.unwrap();
    assert!(s.tenant_exists("seoul").await.unwrap());
    assert!(s.tenant_exists("busan").await.unwrap());
    let tenants: BTreeSet<String> = s.tenants().await.unwrap().into_iter().collect();
    assert!(tenants.contains("seoul") && tenants.contains("busan"), "{tenants:?}");
    assert!(!tenants.contains("daegu"));
    // Tenants are apart: the same id, two entities; none in the default tenant.
    assert_eq!(n_of(&s.get_entity("seoul", "urn:c:1").await.unwrap().unwrap()), 1);
    assert_eq!(n_of(&s.get_entity("busan", "urn:c:1").await.unwrap().unwrap()), 2);
    assert_eq!(s.get_entity("", "urn:c:1").await.unwrap(), None);
    assert!(all(s, "").await.is_empty());
    modify_one(s, "seoul", "urn:c:1", delete()).await.unwrap();
    assert_eq!(n_of(&s.get_entity("busan", "urn:c:1").await.unwrap().unwrap()), 2);
    assert!(s.tenant_exists("seoul").await.unwrap(), "a tenant stays when its last entity goes");
}

pub async fn modify_answers_each_modifier_independently(store: DynStore) {
    let s = store.as_ref();
    modify_one(s, "", "urn:c:1", create(counter("urn:c:1", 5))).await.unwrap();
    let panics: Modifier = Box::new(|_| panic!("a bug in a modifier (expected by the contract suite)"));
    let results = s
        .modify(
            "",
            vec![
                ("urn:c:1".into(), refuse()),
                ("urn:c:2".into(), create(counter("urn:c:2", 1))),
                ("urn:c:3".into(), panics),
                ("urn:c:4".into(), increment()),
                ("urn:c:5".into(), create(counter("urn:c:5", 7))),
            ],
        )
        .await
        .unwrap();
    assert_eq!(results.len(), 5, "one answer per modifier, in order");
    assert_eq!(results[0].as_ref().unwrap_err().kind, ErrorKind::BadRequestData);
    assert_eq!(results[1].as_ref().unwrap().before, None);
    assert_eq!(results[2].as_ref().unwrap_err().kind, ErrorKind::InternalError, "a panicking modifier fails alone");
    assert_eq!(results[3].as_ref().unwrap_err().kind, ErrorKind::ResourceNotFound);
    assert_eq!(n_of(after(&results[4])), 7);
    assert_eq!(n_of(&s.get_entity("", "urn:c:1").await.unwrap().unwrap()), 5, "the refused one is unchanged");
    assert_eq!(ids(&all(s, "").await), ["urn:c:1", "urn:c:2", "urn:c:5"]);

    // Several modifiers of one entity in one call apply in order, each on the previous result.
    let results = s
        .modify(
            "",
            vec![
                ("urn:c:2".into(), increment()),
                ("urn:c:2".into(), increment()),
                ("urn:c:2".into(), refuse()),
                ("urn:c:2".into(), increment()),
            ],
        )
        .await
        .unwrap();
    let seen: Vec<Option<i64>> = results.iter().map(|r| r.as_ref().ok().map(|c| n_of(after(&Ok(c.clone()))))).collect();
    assert_eq!(seen, [Some(2), Some(3), None, Some(4)]);
    assert_eq!(results[1].as_ref().unwrap().before.as_ref().map(n_of), Some(2), "the second saw the first's result");
    assert_eq!(n_of(&s.get_entity("", "urn:c:2").await.unwrap().unwrap()), 4);
    // A create and a delete of one id in one call.
    let results = s
        .modify("", vec![("urn:c:9".into(), create(counter("urn:c:9", 0))), ("urn:c:9".into(), delete())])
        .await
        .unwrap();
    assert!(results.iter().all(|r| r.is_ok()), "{results:?}");
    assert_eq!(s.get_entity("", "urn:c:9").await.unwrap(), None);
    // An empty call answers nothing.
    assert!(s.modify("", Vec::new()).await.unwrap().is_empty());
}

pub async fn query_pages_and_counts(store: DynStore) {
    let s = store.as_ref();
    let mut mods: Vec<(String, Modifier)> = Vec::new();
    for i in (0..30).rev() {
        let id = format!("urn:c:{i:02}");
        let mut e = counter(&id, i);
        if i % 6 == 0 {
            e.types = vec![iri("Other")];
        }
        mods.push((id, create(e)));
    }
    assert!(s.modify("", mods).await.unwrap().iter().all(|r| r.is_ok()));
    let counters = EntityFilter { types: Some(TypeExpr::Type(iri("Counter"))), ..Default::default() };
    let expected: Vec<String> = (0..30).filter(|i| i % 6 != 0).map(|i| format!("urn:c:{i:02}")).collect();
    let page = |offset, limit, count| Paging { offset, limit, count };
    let got = s.query("", &counters, page(0, 100, true)).await.unwrap();
    assert_eq!(ids(&got.entities), expected, "ordered by id whatever the order of writing");
    assert_eq!(got.total, Some(25));
    let got = s.query("", &counters, page(10, 5, true)).await.unwrap();
    assert_eq!(ids(&got.entities), expected[10..15].to_vec());
    assert_eq!(got.total, Some(25), "the count is of every match, not of the page");
    let got = s.query("", &counters, page(23, 5, false)).await.unwrap();
    assert_eq!(ids(&got.entities), expected[23..].to_vec(), "a last page is short");
    assert_eq!(got.total, None, "no count unless asked");
    let got = s.query("", &counters, page(40, 5, true)).await.unwrap();
    assert!(got.entities.is_empty());
    assert_eq!(got.total, Some(25), "an offset past the end still counts");
    let got = s.query("", &counters, page(0, 0, true)).await.unwrap();
    assert!(got.entities.is_empty(), "limit 0: the count only");
    assert_eq!(got.total, Some(25));
    let got = s.query("", &EntityFilter::default(), page(0, 100, true)).await.unwrap();
    assert_eq!(got.total, Some(30));
    let got = s.query("other-tenant", &counters, page(0, 100, true)).await.unwrap();
    assert_eq!((got.entities.len(), got.total), (0, Some(0)));
    // Walking the pages visits every match once.
    let mut walked = Vec::new();
    for offset in (0..25).step_by(4) {
        walked.extend(s.query("", &counters, page(offset, 4, false)).await.unwrap().entities.into_iter().map(|e| e.id));
    }
    assert_eq!(walked, expected);
    // Keyset paging (`id_after`): each page starts after the last id of the one before, and
    // every match is visited once; a count counts the matches after the key.
    let mut walked: Vec<String> = Vec::new();
    for _ in 0..30 {
        let after = EntityFilter { id_after: walked.last().cloned(), ..counters.clone() };
        let got = s.query("", &after, page(0, 4, false)).await.unwrap();
        let n = got.entities.len();
        walked.extend(got.entities.into_iter().map(|e| e.id));
        if n < 4 {
            break;
        }
    }
    assert_eq!(walked, expected, "keyset pages");
    let after = EntityFilter { id_after: Some("urn:c:20".into()), ..counters.clone() };
    let got = s.query("", &after, page(1, 2, true)).await.unwrap();
    assert_eq!(ids(&got.entities), vec!["urn:c:22".to_owned(), "urn:c:23".to_owned()]);
    assert_eq!(got.total, Some(8), "21..29 but 24: the count is of the matches after the key");
    let q = ngsild_query::QExpr::parse("n>=10", &ngsild_jsonld::Context::core()).expect("a q");
    let some = EntityFilter { q: Some(q), id_after: Some("urn:c:25".into()), ..counters.clone() };
    let got = s.query("", &some, page(0, 10, false)).await.unwrap();
    assert_eq!(
        ids(&got.entities),
        vec!["urn:c:26".to_owned(), "urn:c:27".to_owned(), "urn:c:28".to_owned(), "urn:c:29".to_owned()]
    );
}

const STATION: &str = "urn:ngsi-ld:Station:1";

fn day(d: u32) -> String {
    format!("2026-01-{d:02}T00:00:00Z")
}

fn observation(value: Value, observed: &str, dataset: Option<&str>) -> Attribute {
    let mut a = Attribute::new(AttributeKind::Property, value);
    a.observed_at = Some(observed.to_owned());
    a.dataset_id = dataset.map(str::to_owned);
    a
}

/// A station with temperature observations `values[i]` on day `i + 1` (the default instance) and
/// humidity `10 * (i + 1)` on the same days under datasetId `urn:d:h`.
fn station(values: &[f64]) -> ngsild_core::Entity {
    let mut e = ngsild_core::Entity::new(STATION, vec![iri("Station")]);
    let t: Vec<Attribute> =
        values.iter().enumerate().map(|(i, v)| observation(json!(v), &day(i as u32 + 1), None)).collect();
    let h: Vec<Attribute> =
        (0..values.len()).map(|i| observation(json!(10 * (i + 1)), &day(i as u32 + 1), Some("urn:d:h"))).collect();
    e.attrs.insert(iri("temperature"), t);
    e.attrs.insert(iri("humidity"), h);
    e
}

fn history_of(store_filter_id: &str) -> TemporalQuery {
    TemporalQuery {
        filter: EntityFilter { ids: vec![store_filter_id.into()], ..Default::default() },
        per_attribute: 1000,
        paging: Paging { offset: 0, limit: 100, count: true },
        ..Default::default()
    }
}

fn values_of(page: &cityhub_storage::TemporalPage, attr: &str) -> Vec<Value> {
    page.entities
        .first()
        .and_then(|e| e.attrs.get(&iri(attr)))
        .map(|is| is.iter().map(|i| i.attribute.value.clone()).collect())
        .unwrap_or_default()
}

pub async fn temporal_instances_round_trip(store: DynStore) {
    let s = store.as_ref();
    let missing =
        s.temporal_write("", STATION, TemporalWrite::AddInstances { entity: station(&[1.0]), must_exist: true }).await;
    assert_eq!(missing.unwrap().unwrap_err().kind, ErrorKind::ResourceNotFound, "must_exist on a missing entity");
    let write = TemporalWrite::AddInstances { entity: station(&[1.0, 2.0, 3.0, 4.0]), must_exist: false };
    assert_eq!(s.temporal_write("", STATION, write).await.unwrap().unwrap(), TemporalOutcome::Created);
    // The current entity holds the latest observation of each attribute.
    let current = s.get_entity("", STATION).await.unwrap().expect("the current entity is created too");
    assert_eq!(current.attrs[&iri("temperature")][0].value, json!(4.0));
    assert_eq!(current.attrs[&iri("humidity")][0].value, json!(40));

    let everything = s.temporal_query("", &history_of(STATION)).await.unwrap();
    assert_eq!(everything.total, Some(1));
    assert_eq!(values_of(&everything, "temperature"), [json!(1.0), json!(2.0), json!(3.0), json!(4.0)]);
    let instance_ids: BTreeSet<&str> =
        everything.entities[0].attrs[&iri("temperature")].iter().map(|i| i.instance_id.as_str()).collect();
    assert_eq!(instance_ids.len(), 4, "each instance has its own id");

    let mut q = history_of(STATION);
    q.timerel = Some(TimeRel::After("2026-01-02T12:00:00Z".into()));
    assert_eq!(values_of(&s.temporal_query("", &q).await.unwrap(), "temperature"), [json!(3.0), json!(4.0)]);
    q.timerel = Some(TimeRel::Between("2026-01-01T12:00:00Z".into(), "2026-01-03T12:00:00Z".into()));
    assert_eq!(values_of(&s.temporal_query("", &q).await.unwrap(), "temperature"), [json!(2.0), json!(3.0)]);
    q.timerel = Some(TimeRel::Before("2026-01-02T12:00:00Z".into()));
    assert_eq!(values_of(&s.temporal_query("", &q).await.unwrap(), "humidity"), [json!(10), json!(20)]);

    let mut q = history_of(STATION);
    q.per_attribute = 2;
    q.newest_first = true;
    let newest = s.temporal_query("", &q).await.unwrap();
    let mut t = values_of(&newest, "temperature");
    t.sort_by(|a, b| a.as_f64().partial_cmp(&b.as_f64()).unwrap());
    assert_eq!(t, [json!(3.0), json!(4.0)], "the newest two");

    let mut q = history_of(STATION);
    q.attrs = vec![iri("humidity")];
    let only = s.temporal_query("", &q).await.unwrap();
    assert_eq!(only.entities[0].attrs.keys().collect::<Vec<_>>(), [&iri("humidity")]);
    let mut q = history_of(STATION);
    q.dataset_ids = Some(vec![Some("urn:d:h".into())]);
    let only = s.temporal_query("", &q).await.unwrap();
    assert_eq!(only.entities[0].attrs.keys().collect::<Vec<_>>(), [&iri("humidity")], "datasetId urn:d:h only");
    let mut q = history_of(STATION);
    q.dataset_ids = Some(vec![None]);
    let only = s.temporal_query("", &q).await.unwrap();
    assert_eq!(only.entities[0].attrs.keys().collect::<Vec<_>>(), [&iri("temperature")], "the default instances");

    // More instances: Updated, recorded in time order.
    let write = TemporalWrite::AddInstances {
        entity: {
            let mut e = ngsild_core::Entity::new(STATION, vec![iri("Station")]);
            e.attrs.insert(iri("temperature"), vec![observation(json!(0.5), "2025-12-31T00:00:00Z", None)]);
            e
        },
        must_exist: true,
    };
    assert_eq!(s.temporal_write("", STATION, write).await.unwrap().unwrap(), TemporalOutcome::Updated);
    let t = values_of(&s.temporal_query("", &history_of(STATION)).await.unwrap(), "temperature");
    assert_eq!(t, [json!(0.5), json!(1.0), json!(2.0), json!(3.0), json!(4.0)], "in time order");

    // Replace and delete one instance by id.
    let page = s.temporal_query("", &history_of(STATION)).await.unwrap();
    let instances = &page.entities[0].attrs[&iri("temperature")];
    let (second, third) = (instances[2].instance_id.clone(), instances[3].instance_id.clone());
    let replace = TemporalWrite::ReplaceInstance {
        attr: iri("temperature"),
        instance_id: second.clone(),
        attribute: observation(json!(22.0), &day(2), None),
    };
    s.temporal_write("", STATION, replace).await.unwrap().unwrap();
    s.temporal_write(
        "",
        STATION,
        TemporalWrite::DeleteInstance { attr: iri("temperature"), instance_id: third.clone() },
    )
    .await
    .unwrap()
    .unwrap();
    let page = s.temporal_query("", &history_of(STATION)).await.unwrap();
    assert_eq!(values_of(&page, "temperature"), [json!(0.5), json!(1.0), json!(22.0), json!(4.0)]);
    assert_eq!(page.entities[0].attrs[&iri("temperature")][2].instance_id, second, "a replaced instance keeps its id");
    let gone = s
        .temporal_write("", STATION, TemporalWrite::DeleteInstance { attr: iri("temperature"), instance_id: third })
        .await
        .unwrap();
    assert_eq!(gone.unwrap_err().kind, ErrorKind::ResourceNotFound, "an instance deleted twice");

    // Delete one attribute's history, then the entity.
    let drop_h =
        TemporalWrite::DeleteAttribute { attr: iri("humidity"), dataset_id: Some("urn:d:h".into()), all: false };
    s.temporal_write("", STATION, drop_h).await.unwrap().unwrap();
    let page = s.temporal_query("", &history_of(STATION)).await.unwrap();
    assert!(values_of(&page, "humidity").is_empty(), "{:?}", page.entities[0].attrs.keys());
    assert!(!s.get_entity("", STATION).await.unwrap().unwrap().attrs.contains_key(&iri("humidity")));
    s.temporal_write("", STATION, TemporalWrite::DeleteEntity).await.unwrap().unwrap();
    assert_eq!(s.get_entity("", STATION).await.unwrap(), None);
    let page = s.temporal_query("", &history_of(STATION)).await.unwrap();
    assert!(page.entities.is_empty(), "{page:?}");
    let again = s.temporal_write("", STATION, TemporalWrite::DeleteEntity).await.unwrap();
    assert_eq!(again.unwrap_err().kind, ErrorKind::ResourceNotFound);
}

/// Temporal queries select entities like queries do (types, q on the current state), page them
/// by id with a count, and a query leaves out entities with nothing in its window.
pub async fn temporal_query_selects_and_pages(store: DynStore) {
    let s = store.as_ref();
    for i in 0..6u32 {
        let id = format!("urn:ngsi-ld:Station:{i}");
        let mut e = ngsild_core::Entity::new(&id, vec![iri(if i % 2 == 0 { "Station" } else { "Buoy" })]);
        // Station i observes on day i + 1 and i + 2.
        e.attrs.insert(
            iri("temperature"),
            vec![observation(json!(i), &day(i + 1), None), observation(json!(i + 10), &day(i + 2), None)],
        );
        let write = TemporalWrite::AddInstances { entity: e, must_exist: false };
        s.temporal_write("", &id, write).await.unwrap().unwrap();
    }
    let ctx = ctx();
    let query = |types: &str, offset: usize, limit: usize| TemporalQuery {
        filter: EntityFilter { types: Some(TypeExpr::parse(types, &ctx).unwrap()), ..Default::default() },
        per_attribute: 100,
        paging: Paging { offset, limit, count: true },
        ..Default::default()
    };
    let ids_of = |page: &cityhub_storage::TemporalPage| page.entities.iter().map(|e| e.id.clone()).collect::<Vec<_>>();
    let page = s.temporal_query("", &query("Station", 0, 10)).await.unwrap();
    assert_eq!(ids_of(&page), ["urn:ngsi-ld:Station:0", "urn:ngsi-ld:Station:2", "urn:ngsi-ld:Station:4"]);
    assert_eq!(page.total, Some(3));
    assert_eq!(page.entities[0].types, [iri("Station")]);
    let page = s.temporal_query("", &query("Station,Buoy", 2, 3)).await.unwrap();
    assert_eq!(ids_of(&page), ["urn:ngsi-ld:Station:2", "urn:ngsi-ld:Station:3", "urn:ngsi-ld:Station:4"]);
    assert_eq!(page.total, Some(6), "the count is of every match");
    // q judges the current state: the latest observation of each.
    let mut q = query("Station,Buoy", 0, 10);
    q.filter.q = Some(ngsild_query::QExpr::parse("temperature>=13", &ctx).unwrap());
    let page = s.temporal_query("", &q).await.unwrap();
    assert_eq!(ids_of(&page), ["urn:ngsi-ld:Station:3", "urn:ngsi-ld:Station:4", "urn:ngsi-ld:Station:5"]);
    // A window that only stations 0 and 1 have instances in.
    let mut q = query("Station,Buoy", 0, 10);
    q.timerel = Some(TimeRel::Before("2026-01-02T12:00:00Z".into()));
    q.skip_empty = true;
    let page = s.temporal_query("", &q).await.unwrap();
    assert_eq!(ids_of(&page), ["urn:ngsi-ld:Station:0", "urn:ngsi-ld:Station:1"], "entities with nothing left out");
    assert_eq!(values_of(&page, "temperature"), [json!(0), json!(10)]);
    q.skip_empty = false;
    q.filter.ids = vec!["urn:ngsi-ld:Station:5".into()];
    let page = s.temporal_query("", &q).await.unwrap();
    assert_eq!(ids_of(&page), ["urn:ngsi-ld:Station:5"], "a retrieval answers the entity, empty");
    assert!(values_of(&page, "temperature").is_empty());
}

pub async fn temporal_aggregation_per_period(store: DynStore) {
    let s = store.as_ref();
    let write = TemporalWrite::AddInstances { entity: station(&[1.0, 2.0, 3.0, 5.0]), must_exist: false };
    s.temporal_write("", STATION, write).await.unwrap().unwrap();
    let methods = vec![AggrMethod::TotalCount, AggrMethod::Sum, AggrMethod::Avg, AggrMethod::Min, AggrMethod::Max];
    let mut q = history_of(STATION);
    q.timerel = Some(TimeRel::Between(day(1), "2026-01-05T00:00:00Z".into()));
    q.aggregation = Some((methods.clone(), 2.0 * 86_400.0));
    let page = s.temporal_query("", &q).await.unwrap();
    let series = &page.entities[0].aggregates[&iri("temperature")];
    assert_eq!(series.len(), 1, "one series: the default instances");
    assert_eq!(series[0].dataset_id, None);
    let number = |v: &Value| v.as_f64().unwrap_or_else(|| panic!("a number: {v}"));
    let periods: Vec<(String, String, Vec<f64>)> = series[0]
        .periods
        .iter()
        .map(|p| {
            let values = methods.iter().map(|m| number(&p.values.iter().find(|(k, _)| k == m).unwrap().1)).collect();
            (p.start.clone(), p.end.clone(), values)
        })
        .collect();
    let instant = |t: &str| ngsild_core::time::parse_datetime(t).unwrap_or_else(|| panic!("a time: {t}"));
    assert_eq!(periods.len(), 2, "{periods:?}");
    assert_eq!(instant(&periods[0].0), instant(&day(1)), "periods start at the window's start");
    assert_eq!(instant(&periods[0].1), instant(&day(3)));
    assert_eq!(instant(&periods[1].0), instant(&day(3)));
    assert_eq!(periods[0].2, [2.0, 3.0, 1.5, 1.0, 2.0], "count, sum, avg, min, max of days 1-2");
    assert_eq!(periods[1].2, [2.0, 8.0, 4.0, 3.0, 5.0], "count, sum, avg, min, max of days 3-4");
    let h = &page.entities[0].aggregates[&iri("humidity")];
    assert_eq!(h[0].dataset_id.as_deref(), Some("urn:d:h"), "series per datasetId");
    let sums: Vec<f64> =
        h[0].periods.iter().map(|p| number(&p.values.iter().find(|(k, _)| *k == AggrMethod::Sum).unwrap().1)).collect();
    assert_eq!(sums, [30.0, 70.0]);
    // Period 0: the whole window as one period.
    q.aggregation = Some((vec![AggrMethod::TotalCount, AggrMethod::Max], 0.0));
    let page = s.temporal_query("", &q).await.unwrap();
    let whole = &page.entities[0].aggregates[&iri("temperature")][0].periods;
    assert_eq!(whole.len(), 1);
    assert_eq!(whole[0].values.iter().map(|(_, v)| number(v)).collect::<Vec<_>>(), [4.0, 5.0]);
}

pub async fn modifications_record_history(store: DynStore) {
    let s = store.as_ref();
    modify_one(s, "", "urn:c:1", create(counter("urn:c:1", 1))).await.unwrap();
    modify_one(s, "", "urn:c:1", increment()).await.unwrap();
    modify_one(s, "", "urn:c:1", put(counter("urn:c:1", 2))).await.unwrap();
    let page = s.temporal_query("", &history_of("urn:c:1")).await.unwrap();
    let instances = &page.entities.first().expect("a modified entity has a history").attrs[&iri("n")];
    let values: Vec<&Value> = instances.iter().map(|i| &i.attribute.value).collect();
    assert_eq!(values, [&json!(1), &json!(2)], "a change is recorded; an unchanged value is not again");
    // Removing the attribute records its deletion.
    let drop_n: Modifier = Box::new(|e| {
        let mut e = e.ok_or_else(|| NgsiLdError::not_found("missing"))?;
        e.attrs.shift_remove(&iri("n"));
        e.attrs.insert(iri("other"), vec![Attribute::new(AttributeKind::Property, json!("x"))]);
        Ok(Modified::entity(e))
    });
    modify_one(s, "", "urn:c:1", drop_n).await.unwrap();
    let mut q = history_of("urn:c:1");
    q.attrs = vec![iri("n")];
    let page = s.temporal_query("", &q).await.unwrap();
    let instances = &page.entities[0].attrs[&iri("n")];
    assert_eq!(instances.len(), 3, "{instances:?}");
    assert!(instances[2].deleted_at.is_some(), "the deletion is an instance with deletedAt: {:?}", instances[2]);
    assert_eq!(instances[2].attribute.value, json!(ngsild_core::temporal::NULL));
}

fn context(id: &str, tenant: &str, hits: u64) -> StoredContext {
    StoredContext {
        id: id.into(),
        kind: "Hosted".into(),
        url: format!("http://hub/ngsi-ld/v1/jsonldContexts/{id}"),
        document: json!({"@context": {"n": "https://example.org/n", "id": id}}),
        created_at: "2026-01-01T00:00:00Z".into(),
        last_used_at: None,
        number_of_hits: hits,
        tenant: tenant.into(),
    }
}

pub async fn contexts_round_trip(store: DynStore) {
    let s = store.as_ref();
    assert_eq!(s.get_context("c1").await.unwrap(), None);
    assert!(s.list_contexts().await.unwrap().is_empty());
    s.put_context(context("c1", "seoul", 0)).await.unwrap();
    s.put_context(context("c2", "", 3)).await.unwrap();
    assert_eq!(s.get_context("c1").await.unwrap(), Some(context("c1", "seoul", 0)));
    let mut used = context("c1", "seoul", 7);
    used.last_used_at = Some("2026-01-02T00:00:00Z".into());
    used.kind = "Cached".into();
    s.put_context(used.clone()).await.unwrap();
    assert_eq!(s.get_context("c1").await.unwrap(), Some(used.clone()), "a put replaces");
    let mut listed = s.list_contexts().await.unwrap();
    listed.sort_by(|a, b| a.id.cmp(&b.id));
    assert_eq!(listed, [used, context("c2", "", 3)]);
    assert!(s.delete_context("c1").await.unwrap());
    assert!(!s.delete_context("c1").await.unwrap());
    assert_eq!(s.get_context("c1").await.unwrap(), None);
    assert_eq!(s.list_contexts().await.unwrap().len(), 1);
}

fn subscription_doc(id: &str, n: u32) -> Value {
    json!({"id": id, "type": "Subscription", "entities": [{"type": iri("Counter")}], "version": n,
           "notification": {"endpoint": {"uri": "http://127.0.0.1:9/notify"}}})
}

pub async fn subscriptions_round_trip(store: DynStore) {
    let s = store.as_ref();
    let (e, c) = (SubscriptionKind::Entity, SubscriptionKind::CSource);
    assert_eq!(s.get_subscription(e, "", "urn:s:1").await.unwrap(), None);
    s.create_subscription(e, "", "urn:s:1", subscription_doc("urn:s:1", 1)).await.unwrap().unwrap();
    let dup = s.create_subscription(e, "", "urn:s:1", subscription_doc("urn:s:1", 2)).await.unwrap();
    assert_eq!(dup.unwrap_err().kind, ErrorKind::AlreadyExists);
    // Kinds and tenants have their own ids.
    s.create_subscription(c, "", "urn:s:1", subscription_doc("urn:s:1", 3)).await.unwrap().unwrap();
    s.create_subscription(e, "seoul", "urn:s:1", subscription_doc("urn:s:1", 4)).await.unwrap().unwrap();
    s.create_subscription(e, "", "urn:s:0", subscription_doc("urn:s:0", 5)).await.unwrap().unwrap();
    let got = s.get_subscription(e, "", "urn:s:1").await.unwrap().unwrap();
    assert_eq!((got.kind, got.tenant.as_str(), got.id.as_str()), (e, "", "urn:s:1"));
    assert_eq!(got.doc, subscription_doc("urn:s:1", 1), "the first create won");
    assert_eq!(got.status, Default::default(), "nothing delivered yet");
    assert!(s.replace_subscription(e, "", "urn:s:1", subscription_doc("urn:s:1", 6)).await.unwrap());
    assert!(!s.replace_subscription(e, "", "urn:s:9", subscription_doc("urn:s:9", 6)).await.unwrap());
    assert_eq!(s.get_subscription(e, "", "urn:s:9").await.unwrap(), None, "a replace does not create");
    assert_eq!(s.get_subscription(e, "", "urn:s:1").await.unwrap().unwrap().doc["version"], 6);
    assert_eq!(s.get_subscription(c, "", "urn:s:1").await.unwrap().unwrap().doc["version"], 3);
    let keys = |list: Vec<cityhub_storage::StoredSubscription>| -> Vec<(String, String, u64)> {
        list.into_iter().map(|s| (s.tenant, s.id, s.doc["version"].as_u64().unwrap())).collect()
    };
    let both_tenants = keys(s.list_subscriptions(Some(e), None).await.unwrap());
    let expected = [("", "urn:s:0", 5), ("", "urn:s:1", 6), ("seoul", "urn:s:1", 4)];
    let expected: Vec<(String, String, u64)> =
        expected.iter().map(|(t, i, v)| (t.to_string(), i.to_string(), *v)).collect();
    assert_eq!(both_tenants, expected, "ordered by tenant and id");
    assert_eq!(keys(s.list_subscriptions(Some(e), Some("seoul")).await.unwrap()).len(), 1);
    assert_eq!(keys(s.list_subscriptions(None, Some("")).await.unwrap()).len(), 3, "both kinds");
    assert!(s.delete_subscription(e, "", "urn:s:1").await.unwrap());
    assert!(!s.delete_subscription(e, "", "urn:s:1").await.unwrap());
    assert_eq!(s.get_subscription(e, "", "urn:s:1").await.unwrap(), None);
    assert!(s.get_subscription(c, "", "urn:s:1").await.unwrap().is_some(), "the other kind's stays");
}

fn item(endpoint: &str, tenant: &str, subscription: &str, n: u64) -> OutboxItem {
    OutboxItem {
        id: 0,
        endpoint: endpoint.into(),
        kind: SubscriptionKind::Entity,
        tenant: tenant.into(),
        subscription_id: subscription.into(),
        message: json!({"n": n}),
        created_at: "2026-01-01T00:00:00Z".into(),
        attempts: 0,
    }
}

pub async fn journal_outbox_and_delivery_status(store: DynStore) {
    let s = store.as_ref();
    let e = SubscriptionKind::Entity;
    s.create_subscription(e, "j", "urn:s:1", subscription_doc("urn:s:1", 1)).await.unwrap().unwrap();
    let start = s.notifier_cursor().await.unwrap();
    modify_one(s, "j", "urn:c:1", create(counter("urn:c:1", 1))).await.unwrap();
    modify_one(s, "j", "urn:c:1", increment()).await.unwrap();
    modify_one(s, "j", "urn:c:1", delete()).await.unwrap();
    let journal = s.journal_after(start, 100).await.unwrap();
    let changes: Vec<(Option<i64>, Option<i64>)> =
        journal.iter().map(|j| (j.before.as_ref().map(n_of), j.after.as_ref().map(n_of))).collect();
    assert_eq!(changes, [(None, Some(1)), (Some(1), Some(2)), (Some(2), None)], "each change once, in order");
    assert!(journal.iter().all(|j| j.tenant == "j"));
    assert!(journal.windows(2).all(|w| w[0].seq < w[1].seq), "sequence numbers increase");
    assert!(journal[0].seq > start);
    assert_eq!(s.journal_after(start, 2).await.unwrap().len(), 2, "the limit holds");
    assert_eq!(s.journal_after(journal[0].seq, 100).await.unwrap()[0].seq, journal[1].seq, "strictly after");

    let endpoint = "http://127.0.0.1:9/notify";
    let commit = NotifierCommit {
        cursor: Some(journal[2].seq),
        expected_cursor: start,
        notifications: vec![item(endpoint, "j", "urn:s:1", 1), item(endpoint, "j", "urn:s:1", 2)],
        outbox_cap: 100,
    };
    let stored = s.commit_notifications(commit).await.unwrap();
    assert_eq!(stored.len(), 2);
    assert!(stored[0].id < stored[1].id, "ids give the order of delivery");
    assert_eq!(s.notifier_cursor().await.unwrap(), journal[2].seq);
    assert!(s.journal_after(journal[2].seq, 100).await.unwrap().is_empty());
    assert_eq!(s.outbox_endpoints().await.unwrap(), [endpoint]);
    let pending = s.outbox(endpoint, 10).await.unwrap();
    assert_eq!(pending, stored, "the outbox answers the rows as stored, oldest first");
    assert_eq!(s.outbox(endpoint, 1).await.unwrap().len(), 1);
    assert!(s.outbox("http://elsewhere", 10).await.unwrap().is_empty());

    let status = |s: DynStore| async move { s.get_subscription(e, "j", "urn:s:1").await.unwrap().unwrap().status };
    s.record_delivery(&stored[0], DeliveryOutcome::Attempted, "2026-01-01T00:00:01Z").await.unwrap();
    s.record_delivery(&stored[0], DeliveryOutcome::Sent, "2026-01-01T00:00:02Z").await.unwrap();
    let st = status(store.clone()).await;
    assert_eq!(st.times_sent, 1);
    assert_eq!(st.last_notification.as_deref(), Some("2026-01-01T00:00:01Z"));
    assert_eq!(st.last_success.as_deref(), Some("2026-01-01T00:00:02Z"));
    assert_eq!(s.outbox(endpoint, 10).await.unwrap().iter().map(|i| i.id).collect::<Vec<_>>(), [stored[1].id]);
    s.record_delivery(&stored[1], DeliveryOutcome::Attempted, "2026-01-01T00:00:03Z").await.unwrap();
    s.record_delivery(&stored[1], DeliveryOutcome::Failed, "2026-01-01T00:00:04Z").await.unwrap();
    let st = status(store.clone()).await;
    assert_eq!((st.times_sent, st.times_failed), (2, 1));
    assert_eq!(st.last_failure.as_deref(), Some("2026-01-01T00:00:04Z"));
    assert_eq!(s.outbox(endpoint, 10).await.unwrap().len(), 1, "a failed row stays for a retry");
    s.record_delivery(&stored[1], DeliveryOutcome::GaveUp, "2026-01-01T00:00:05Z").await.unwrap();
    let st = status(store.clone()).await;
    assert_eq!(st.dropped, 1, "given up: dropped");
    assert!(s.outbox(endpoint, 10).await.unwrap().is_empty());
    assert!(s.outbox_endpoints().await.unwrap().is_empty());

    // Deleting a subscription deletes its pending notifications.
    let commit = NotifierCommit {
        cursor: None,
        notifications: vec![item(endpoint, "j", "urn:s:1", 3), item("http://127.0.0.1:9/other", "j", "urn:s:2", 4)],
        outbox_cap: 100,
        ..Default::default()
    };
    s.create_subscription(e, "j", "urn:s:2", subscription_doc("urn:s:2", 1)).await.unwrap().unwrap();
    s.commit_notifications(commit).await.unwrap();
    assert_eq!(s.notifier_cursor().await.unwrap(), journal[2].seq, "no cursor: the cursor stays");
    assert!(s.delete_subscription(e, "j", "urn:s:1").await.unwrap());
    assert!(s.outbox(endpoint, 10).await.unwrap().is_empty(), "its pending notification went with it");
    assert_eq!(s.outbox("http://127.0.0.1:9/other", 10).await.unwrap().len(), 1, "another's stays");
}

pub async fn outbox_is_capped_per_endpoint(store: DynStore) {
    let s = store.as_ref();
    let e = SubscriptionKind::Entity;
    s.create_subscription(e, "", "urn:s:1", subscription_doc("urn:s:1", 1)).await.unwrap().unwrap();
    let (a, b) = ("http://127.0.0.1:9/a", "http://127.0.0.1:9/b");
    let notifications = (0..5).map(|n| item(a, "", "urn:s:1", n)).chain([item(b, "", "urn:s:1", 9)]).collect();
    let stored = s
        .commit_notifications(NotifierCommit { cursor: None, notifications, outbox_cap: 3, ..Default::default() })
        .await
        .unwrap();
    assert_eq!(stored.len(), 4, "3 for a, 1 for b");
    let kept: Vec<Value> = s.outbox(a, 10).await.unwrap().into_iter().map(|i| i.message).collect();
    assert_eq!(kept, [json!({"n": 0}), json!({"n": 1}), json!({"n": 2})], "the oldest are kept");
    let more = vec![item(a, "", "urn:s:1", 7)];
    assert!(s
        .commit_notifications(NotifierCommit { cursor: None, notifications: more, outbox_cap: 3, ..Default::default() })
        .await
        .unwrap()
        .is_empty());
    let status = s.get_subscription(e, "", "urn:s:1").await.unwrap().unwrap().status;
    assert_eq!(status.dropped, 3, "each dropped row counts");
    assert_eq!(s.outbox(b, 10).await.unwrap().len(), 1);
}

pub async fn records_round_trip(store: DynStore) {
    let s = store.as_ref();
    let r = RecordKind::Registration;
    let doc = |id: &str, v: u32| json!({"id": id, "type": "ContextSourceRegistration", "v": v});
    assert!(s.list_records("", r).await.unwrap().is_empty());
    s.create_record("", r, "urn:r:2", doc("urn:r:2", 1)).await.unwrap().unwrap();
    s.create_record("", r, "urn:r:1", doc("urn:r:1", 1)).await.unwrap().unwrap();
    s.create_record("seoul", r, "urn:r:1", doc("urn:r:1", 9)).await.unwrap().unwrap();
    let taken = s.create_record("", r, "urn:r:2", doc("urn:r:2", 5)).await.unwrap();
    assert_eq!(taken.unwrap_err().kind, ErrorKind::AlreadyExists, "create if absent");
    assert!(s.replace_record("", r, "urn:r:2", doc("urn:r:2", 2)).await.unwrap());
    assert!(!s.replace_record("", r, "urn:r:3", doc("urn:r:3", 1)).await.unwrap(), "a replace does not create");
    assert_eq!(
        s.list_records("", r).await.unwrap(),
        [doc("urn:r:2", 2), doc("urn:r:1", 1)],
        "in the order first written; the refused create wrote nothing; a replace keeps the place"
    );
    assert_eq!(s.list_records("seoul", r).await.unwrap(), [doc("urn:r:1", 9)], "tenants apart");
    assert!(s.delete_record("", r, "urn:r:2").await.unwrap());
    assert!(!s.delete_record("", r, "urn:r:2").await.unwrap());
    assert_eq!(s.list_records("", r).await.unwrap(), [doc("urn:r:1", 1)]);
    assert_eq!(s.list_records("seoul", r).await.unwrap().len(), 1);
    // Created again after a delete, it is new: last in order.
    s.create_record("", r, "urn:r:2", doc("urn:r:2", 3)).await.unwrap().unwrap();
    assert_eq!(s.list_records("", r).await.unwrap(), [doc("urn:r:1", 1), doc("urn:r:2", 3)]);
    // Kinds apart: the same id under every other kind is another record, and each event names
    // its kind (a kind's name reads back as that kind).
    let mut events = s.events();
    for kind in RecordKind::ALL.into_iter().filter(|k| *k != r) {
        assert_eq!(RecordKind::ALL.into_iter().find(|k| k.name() == kind.name()), Some(kind));
        s.create_record("", kind, "urn:r:1", json!({"kind": kind.name()})).await.unwrap().unwrap();
        assert_eq!(s.list_records("", kind).await.unwrap(), [json!({"kind": kind.name()})]);
        let again = s.create_record("", kind, "urn:r:1", json!({})).await.unwrap().unwrap_err();
        assert!(again.detail.starts_with(kind.what()), "the refusal names the kind: {}", again.detail);
        assert!(s.replace_record("", kind, "urn:r:1", json!({"kind": kind.name(), "v": 2})).await.unwrap());
        let told = tokio::time::timeout(Duration::from_secs(10), async {
            loop {
                match events.recv().await {
                    Ok(StoreEvent::Records { tenant, kind: k }) if tenant.is_empty() && k == kind => return true,
                    Ok(_) => {}
                    Err(_) => return false,
                }
            }
        })
        .await;
        assert_eq!(told, Ok(true), "a write of a {} record is told with its kind", kind.name());
        assert!(s.delete_record("", kind, "urn:r:1").await.unwrap());
    }
    assert_eq!(s.list_records("", r).await.unwrap(), [doc("urn:r:1", 1), doc("urn:r:2", 3)], "untouched");
}

fn audit_entry(n: i64, tenant: &str, subject: &str, method: &str, route: &str, status: u16) -> AuditEntry {
    AuditEntry {
        // Two entries share each time, so order within one time (later appended first) counts.
        at_micros: 1_700_000_000_000_000 + (n / 2) * 1_000_000,
        tenant: tenant.to_owned(),
        subject: subject.to_owned(),
        via: if subject == "anonymous" { "anonymous" } else { "jwt" }.to_owned(),
        client: format!("127.0.0.1:{}", 40000 + n),
        method: method.to_owned(),
        route: route.to_owned(),
        target: (n % 3 == 0).then(|| format!("urn:ngsi-ld:Room:{n}")),
        status,
        error: (status >= 400).then(|| "BadRequestData".to_owned()),
    }
}

/// Audit entries read back as `AuditFilter::matches` defines, newest first (the later appended
/// first within one time), paged with the total; a purge removes exactly the older ones.
pub async fn audit_log_reads_as_its_filter_defines(store: DynStore) {
    let s = store.as_ref();
    let page = s.read_audit(&AuditFilter::default(), 0, 10).await.unwrap();
    assert_eq!((page.entries.len(), page.total), (0, 0), "an empty log");
    let routes = ["/ngsi-ld/v1/entities", "/ngsi-ld/v1/entities/{id}", "/ngsi-ld/v1/subscriptions"];
    let methods = ["POST", "PATCH", "DELETE"];
    let statuses = [201, 204, 400, 401, 403, 429];
    let all: Vec<AuditEntry> = (0..40)
        .map(|n: i64| {
            let i = n as usize;
            let tenant = ["", "seoul", "busan"][i % 3];
            let subject = ["anonymous", "alice", "key:k1"][i % 4 % 3];
            audit_entry(n, tenant, subject, methods[i % 3], routes[i % 5 % 3], statuses[i % 6])
        })
        .collect();
    // Appended in three batches, as the shell does.
    s.append_audit(all[..15].to_vec()).await.unwrap();
    s.append_audit(all[15..16].to_vec()).await.unwrap();
    s.append_audit(all[16..].to_vec()).await.unwrap();
    s.append_audit(Vec::new()).await.unwrap();
    let t = |n: i64| 1_700_000_000_000_000 + n * 1_000_000;
    let filters = [
        AuditFilter::default(),
        AuditFilter { tenant: Some("seoul".into()), ..Default::default() },
        AuditFilter { tenant: Some(String::new()), ..Default::default() },
        AuditFilter { subject: Some("alice".into()), ..Default::default() },
        AuditFilter { operation: Some("POST".into()), ..Default::default() },
        AuditFilter { operation: Some("/ngsi-ld/v1/entities/{id}".into()), ..Default::default() },
        AuditFilter { operation: Some("PATCH /ngsi-ld/v1/entities/{id}".into()), ..Default::default() },
        AuditFilter { outcome: Some(AuditOutcome::Success), ..Default::default() },
        AuditFilter { outcome: Some(AuditOutcome::Failure), tenant: Some("busan".into()), ..Default::default() },
        AuditFilter { outcome: Some(AuditOutcome::Status(403)), ..Default::default() },
        AuditFilter { since_micros: Some(t(5)), until_micros: Some(t(12)), ..Default::default() },
        AuditFilter { subject: Some("nobody".into()), ..Default::default() },
    ];
    for filter in &filters {
        let mut expected: Vec<AuditEntry> = all.iter().filter(|e| filter.matches(e)).cloned().collect();
        expected.reverse();
        let whole = s.read_audit(filter, 0, 1000).await.unwrap();
        assert_eq!(whole.entries, expected, "{filter:?}");
        assert_eq!(whole.total, expected.len(), "{filter:?}");
        let page = s.read_audit(filter, 2, 3).await.unwrap();
        let want: Vec<AuditEntry> = expected.iter().skip(2).take(3).cloned().collect();
        assert_eq!(page.entries, want, "page 2..5 of {filter:?}");
        assert_eq!(page.total, expected.len(), "the total of a page is of the whole: {filter:?}");
    }
    // Purge: what is older than the time goes, the rest stays.
    let gone = s.purge_audit(t(10)).await.unwrap();
    assert_eq!(gone, 20, "entries 0..20 are older than t(10)");
    let rest = s.read_audit(&AuditFilter::default(), 0, 1000).await.unwrap();
    assert_eq!(rest.total, 20);
    assert!(rest.entries.iter().all(|e| e.at_micros >= t(10)));
    assert_eq!(s.purge_audit(t(10)).await.unwrap(), 0);
}

/// What one handle (hub) appends, every other handle on the same store reads.
pub async fn audit_log_is_one_log_for_every_handle(fixture: &Fixture) {
    let handles = fixture.handles().await;
    for (n, handle) in handles.iter().enumerate() {
        let n = n as i64;
        handle.append_audit(vec![audit_entry(n * 2, "", "alice", "POST", "/ngsi-ld/v1/entities", 201)]).await.unwrap();
    }
    for handle in &handles {
        let page = handle.read_audit(&AuditFilter::default(), 0, 100).await.unwrap();
        assert_eq!(page.total, handles.len(), "every handle's entries, read at each");
    }
}

/// Concurrent creates of one record id: exactly one wins, the others are AlreadyExists.
pub async fn records_create_if_absent_under_concurrency(fixture: &Fixture) {
    let handles = fixture.handles().await;
    let tasks: Vec<_> = (0..8u32)
        .map(|n| {
            let store = handles[n as usize % handles.len()].clone();
            tokio::spawn(async move {
                let doc = json!({"id": "urn:r:1", "type": "ContextSourceRegistration", "by": n});
                store.create_record("", RecordKind::Registration, "urn:r:1", doc).await.unwrap().is_ok()
            })
        })
        .collect();
    let mut won = 0;
    for t in tasks {
        won += usize::from(t.await.unwrap());
    }
    assert_eq!(won, 1, "one create wins");
    assert_eq!(fixture.store.list_records("", RecordKind::Registration).await.unwrap().len(), 1);
}

/// A modifier's report comes back in its change (no side channel).
pub async fn modifier_reports_come_back(store: DynStore) {
    let s = store.as_ref();
    modify_one(s, "", "urn:c:1", create(counter("urn:c:1", 1))).await.unwrap();
    let report = UpdateReport { updated: vec![iri("n")], not_updated: vec![(iri("x"), "not there".into())] };
    let sent = report.clone();
    let update: Modifier = Box::new(move |e| {
        let e = e.ok_or_else(|| NgsiLdError::not_found("missing"))?;
        Ok(Modified::entity(e).with_report(Some(sent)))
    });
    let change = modify_one(s, "", "urn:c:1", update).await.unwrap();
    assert_eq!(change.report, Some(report));
    let plain = modify_one(s, "", "urn:c:1", increment()).await.unwrap();
    assert_eq!(plain.report, None);
    // Deleting an absent entity is no error for the store: nothing happens.
    let nothing: Modifier = Box::new(|_| Ok(Modified::delete()));
    let change = modify_one(s, "", "urn:c:none", nothing).await.unwrap();
    assert_eq!((change.before, change.after), (None, None));
    assert_eq!(s.get_entity("", "urn:c:none").await.unwrap(), None);
}

/// Receives events until `want` arrives (bounded: 200 events or 20 s), answering those before it.
async fn events_until(rx: &mut tokio::sync::broadcast::Receiver<StoreEvent>, want: &StoreEvent) -> Vec<StoreEvent> {
    let mut seen = Vec::new();
    for _ in 0..200 {
        match tokio::time::timeout(Duration::from_secs(20), rx.recv()).await {
            Ok(Ok(event)) => {
                let done = &event == want;
                seen.push(event);
                if done {
                    return seen;
                }
            }
            Ok(Err(e)) => panic!("the event feed failed waiting for {want:?}: {e:?}; saw {seen:?}"),
            Err(_) => panic!("no {want:?} within 20 s; saw {seen:?}"),
        }
    }
    panic!("no {want:?} in 200 events: {seen:?}")
}

/// Every commit tells its event, to this handle and (shared backends) to every other handle on
/// the same store: tenants, subscriptions, journal, records, contexts.
pub async fn events_follow_commits(fixture: &Fixture) {
    let handles = fixture.handles().await;
    for (n, writer) in handles.iter().enumerate() {
        let mut receivers: Vec<_> = handles.iter().map(|h| h.events()).collect();
        let s = writer.as_ref();
        let tenant = format!("t{n}");
        let kind = SubscriptionKind::Entity;
        modify_one(s, &tenant, "urn:c:1", create(counter("urn:c:1", 0))).await.unwrap();
        s.create_subscription(kind, &tenant, "urn:s:1", subscription_doc("urn:s:1", 1)).await.unwrap().unwrap();
        modify_one(s, &tenant, "urn:c:1", increment()).await.unwrap();
        s.create_record(&tenant, RecordKind::Registration, "urn:r:1", json!({"id": "urn:r:1"})).await.unwrap().unwrap();
        s.replace_subscription(kind, &tenant, "urn:s:1", subscription_doc("urn:s:1", 2)).await.unwrap();
        // Nothing changed: no event.
        assert!(!s.replace_subscription(kind, &tenant, "urn:s:none", subscription_doc("urn:s:none", 1)).await.unwrap());
        s.delete_subscription(kind, &tenant, "urn:s:1").await.unwrap();
        let marker = format!("ctx-{n}");
        s.put_context(context(&marker, &tenant, 0)).await.unwrap();
        for (h, rx) in receivers.iter_mut().enumerate() {
            let seen = events_until(rx, &StoreEvent::Context { id: marker.clone() }).await;
            let has = |e: &StoreEvent| seen.contains(e);
            let sub = StoreEvent::Subscription { kind, tenant: tenant.clone(), id: "urn:s:1".into() };
            assert!(has(&StoreEvent::Tenant { tenant: tenant.clone() }), "handle {h}, writes of {n}: tenant: {seen:?}");
            assert!(seen.iter().filter(|e| **e == sub).count() >= 3, "handle {h}: create, replace, delete: {seen:?}");
            assert!(has(&StoreEvent::Journal), "handle {h}: journal: {seen:?}");
            assert!(
                has(&StoreEvent::Records { tenant: tenant.clone(), kind: RecordKind::Registration }),
                "handle {h}: records: {seen:?}"
            );
            assert!(
                !seen.iter().any(|e| matches!(e, StoreEvent::Subscription { id, .. } if id == "urn:s:none")),
                "handle {h}: a replace of nothing tells nothing: {seen:?}"
            );
            let tenant_events = seen.iter().filter(|e| matches!(e, StoreEvent::Tenant { .. })).count();
            assert_eq!(tenant_events, 1, "handle {h}: a tenant comes into being once: {seen:?}");
        }
        s.delete_context(&marker).await.unwrap();
    }
}

/// Leases: one holder at a time, renewal, release, expiry and takeover, across handles.
pub async fn leases_hold_expire_and_pass(fixture: &Fixture) {
    let handles = fixture.handles().await;
    let (a, b) = (&handles[0], &handles[handles.len() - 1]);
    let long = Duration::from_secs(60);
    assert!(a.try_lease("notifier", "hub-a", long).await.unwrap());
    assert!(!b.try_lease("notifier", "hub-b", long).await.unwrap(), "one holder at a time");
    assert!(a.try_lease("notifier", "hub-a", long).await.unwrap(), "the holder renews");
    assert!(b.try_lease("other", "hub-b", long).await.unwrap(), "leases are per name");
    b.release_lease("notifier", "hub-b").await.unwrap();
    assert!(!b.try_lease("notifier", "hub-b", long).await.unwrap(), "a non-holder's release does nothing");
    a.release_lease("notifier", "hub-a").await.unwrap();
    assert!(b.try_lease("notifier", "hub-b", long).await.unwrap(), "released: another takes it at once");
    assert!(!a.try_lease("notifier", "hub-a", long).await.unwrap());

    // Expiry: an unrenewed lease passes to the next holder that asks, and the old holder has lost it.
    let short = Duration::from_millis(300);
    assert!(a.try_lease("short", "hub-a", short).await.unwrap());
    tokio::time::sleep(Duration::from_millis(900)).await;
    assert!(b.try_lease("short", "hub-b", long).await.unwrap(), "an expired lease is taken over");
    assert!(!a.try_lease("short", "hub-a", short).await.unwrap(), "the old holder lost it");

    // Contended: of many holders asking at once, exactly one gets it.
    let tasks: Vec<_> = (0..8)
        .map(|n| {
            let store = handles[n % handles.len()].clone();
            tokio::spawn(async move {
                store.try_lease("contended", &format!("hub-{n}"), Duration::from_secs(60)).await.unwrap()
            })
        })
        .collect();
    let mut holders = 0;
    for t in tasks {
        holders += usize::from(t.await.unwrap());
    }
    assert_eq!(holders, 1, "one holder at a time");
}

/// The notifier cursor moves only from its expected value: a stale commit is a Conflict that
/// writes nothing; of two commits from one cursor, exactly one wins.
pub async fn notifier_cursor_is_compare_and_set(fixture: &Fixture) {
    let handles = fixture.handles().await;
    let s = fixture.store.as_ref();
    s.create_subscription(SubscriptionKind::Entity, "j", "urn:s:1", subscription_doc("urn:s:1", 1))
        .await
        .unwrap()
        .unwrap();
    let start = s.notifier_cursor().await.unwrap();
    for i in 0..3 {
        let id = format!("urn:c:{i}");
        modify_one(s, "j", &id, create(counter(&id, i))).await.unwrap();
    }
    let seqs: Vec<u64> = s.journal_after(start, 10).await.unwrap().iter().map(|j| j.seq).collect();
    assert_eq!(seqs.len(), 3);
    let endpoint = "http://127.0.0.1:9/notify";
    let commit = |expected: u64, cursor: u64, n: u64| NotifierCommit {
        cursor: Some(cursor),
        expected_cursor: expected,
        notifications: vec![item(endpoint, "j", "urn:s:1", n)],
        outbox_cap: 100,
    };
    s.commit_notifications(commit(start, seqs[0], 1)).await.unwrap();
    let other = &handles[handles.len() - 1];
    assert_eq!(other.notifier_cursor().await.unwrap(), seqs[0], "every handle sees the cursor");
    let stale = other.commit_notifications(commit(start, seqs[1], 2)).await;
    assert!(matches!(stale, Err(StoreError::Conflict(_))), "a commit from a stale cursor: {stale:?}");
    assert_eq!(s.notifier_cursor().await.unwrap(), seqs[0], "the conflict moved nothing");
    let messages: Vec<Value> = s.outbox(endpoint, 10).await.unwrap().into_iter().map(|i| i.message).collect();
    assert_eq!(messages, [json!({"n": 1})], "the conflict wrote no notification");
    assert_eq!(s.journal_after(seqs[0], 10).await.unwrap().len(), 2, "nor forgot the journal");
    // Two commits from the same cursor at once: one wins.
    let tasks: Vec<_> = (0..2u64)
        .map(|n| {
            let store = handles[n as usize % handles.len()].clone();
            let c = commit(seqs[0], seqs[2], 10 + n);
            tokio::spawn(async move { store.commit_notifications(c).await })
        })
        .collect();
    let mut wins = 0;
    for t in tasks {
        match t.await.unwrap() {
            Ok(_) => wins += 1,
            Err(StoreError::Conflict(_)) => {}
            Err(e) => panic!("{e}"),
        }
    }
    assert_eq!(wins, 1, "exactly one of two commits from one cursor");
    assert_eq!(s.notifier_cursor().await.unwrap(), seqs[2]);
    assert_eq!(s.outbox(endpoint, 10).await.unwrap().len(), 2, "the winner's notification only");
    // No cursor: the notifications alone, whatever expected_cursor says.
    let plain = NotifierCommit {
        notifications: vec![item(endpoint, "j", "urn:s:1", 99)],
        outbox_cap: 100,
        ..Default::default()
    };
    assert_eq!(s.commit_notifications(plain).await.unwrap().len(), 1);
    assert_eq!(s.notifier_cursor().await.unwrap(), seqs[2]);
}

/// N tasks increment one attribute through modifiers at once: the final value is N times the
/// increments each made (no lost update), and every answer saw a distinct previous value.
pub async fn concurrent_writers_lose_no_update(store: DynStore) {
    const TASKS: usize = 8;
    const EACH: usize = 25;
    modify_one(store.as_ref(), "", "urn:c:1", create(counter("urn:c:1", 0))).await.unwrap();
    let tasks: Vec<_> = (0..TASKS)
        .map(|_| {
            let store = store.clone();
            tokio::spawn(async move {
                let mut seen = Vec::new();
                for _ in 0..EACH {
                    let change = modify_one(store.as_ref(), "", "urn:c:1", increment()).await;
                    seen.push(n_of(after(&change)));
                }
                seen
            })
        })
        .collect();
    let mut seen = Vec::new();
    for t in tasks {
        seen.extend(t.await.unwrap());
    }
    seen.sort();
    assert_eq!(seen, (1..=(TASKS * EACH) as i64).collect::<Vec<_>>(), "each increment saw the one before");
    assert_eq!(n_of(&store.get_entity("", "urn:c:1").await.unwrap().unwrap()), (TASKS * EACH) as i64);
}

/// Concurrent writers in a journaled tenant: every change is journaled exactly once, in the
/// order of the entity's versions, under increasing sequence numbers.
pub async fn journal_under_concurrency(store: DynStore) {
    const TASKS: usize = 4;
    const EACH: usize = 15;
    let s = store.as_ref();
    s.create_subscription(SubscriptionKind::Entity, "j", "urn:s:1", subscription_doc("urn:s:1", 1))
        .await
        .unwrap()
        .unwrap();
    let start = s.notifier_cursor().await.unwrap();
    modify_one(s, "j", "urn:c:shared", create(counter("urn:c:shared", 0))).await.unwrap();
    let tasks: Vec<_> = (0..TASKS)
        .map(|t| {
            let store = store.clone();
            tokio::spawn(async move {
                let own = format!("urn:c:{t}");
                modify_one(store.as_ref(), "j", &own, create(counter(&own, 0))).await.unwrap();
                for _ in 0..EACH {
                    let batch = vec![(own.clone(), increment()), ("urn:c:shared".to_owned(), increment())];
                    for r in store.modify("j", batch).await.unwrap() {
                        r.unwrap();
                    }
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    let mut journal = Vec::new();
    let mut cursor = start;
    for _ in 0..1000 {
        let page = s.journal_after(cursor, 16).await.unwrap();
        let Some(last) = page.last() else { break };
        cursor = last.seq;
        journal.extend(page);
    }
    let expected = 1 + TASKS * (1 + 2 * EACH);
    assert_eq!(journal.len(), expected, "every change once");
    assert!(journal.windows(2).all(|w| w[0].seq < w[1].seq));
    let mut shared: Vec<(Option<i64>, i64)> = Vec::new();
    for j in &journal {
        let after = j.after.as_ref().expect("no deletion here");
        if after.id == "urn:c:shared" {
            shared.push((j.before.as_ref().map(n_of), n_of(after)));
        }
    }
    let want: Vec<(Option<i64>, i64)> =
        (0..=(TASKS * EACH) as i64).map(|n| (if n == 0 { None } else { Some(n - 1) }, n)).collect();
    assert_eq!(shared, want, "the shared entity's versions, in journal order, each from the one before");
}

/// Concurrent notifier commits and deliveries: every stored row has its own id, the outbox
/// answers each once in id order, and a row delivered is gone for everyone.
pub async fn outbox_under_concurrency(store: DynStore) {
    const TASKS: u64 = 4;
    const EACH: u64 = 10;
    let s = store.as_ref();
    s.create_subscription(SubscriptionKind::Entity, "", "urn:s:1", subscription_doc("urn:s:1", 1))
        .await
        .unwrap()
        .unwrap();
    let endpoint = "http://127.0.0.1:9/notify";
    let tasks: Vec<_> = (0..TASKS)
        .map(|t| {
            let store = store.clone();
            tokio::spawn(async move {
                let mut ids = Vec::new();
                for n in 0..EACH {
                    let commit = NotifierCommit {
                        cursor: None,
                        notifications: vec![item(endpoint, "", "urn:s:1", t * 100 + n)],
                        outbox_cap: 10_000,
                        ..Default::default()
                    };
                    ids.extend(store.commit_notifications(commit).await.unwrap().into_iter().map(|i| i.id));
                }
                ids
            })
        })
        .collect();
    let mut ids = Vec::new();
    for t in tasks {
        ids.extend(t.await.unwrap());
    }
    let unique: BTreeSet<u64> = ids.iter().copied().collect();
    assert_eq!(unique.len(), (TASKS * EACH) as usize, "one id per row");
    let pending = s.outbox(endpoint, 1000).await.unwrap();
    assert_eq!(pending.iter().map(|i| i.id).collect::<Vec<_>>(), unique.iter().copied().collect::<Vec<_>>());
    // Deliver concurrently, half the rows each by two tasks: every row goes, once.
    let pending = Arc::new(pending);
    let tasks: Vec<_> = (0..2)
        .map(|half| {
            let (store, pending) = (store.clone(), pending.clone());
            tokio::spawn(async move {
                for item in pending.iter().skip(half).step_by(2) {
                    store.record_delivery(item, DeliveryOutcome::Attempted, "2026-01-01T00:00:00Z").await.unwrap();
                    store.record_delivery(item, DeliveryOutcome::Sent, "2026-01-01T00:00:01Z").await.unwrap();
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    assert!(s.outbox(endpoint, 1000).await.unwrap().is_empty());
    let status = s.get_subscription(SubscriptionKind::Entity, "", "urn:s:1").await.unwrap().unwrap().status;
    assert_eq!(status.times_sent, TASKS * EACH, "no lost status update");
}

/// See [`crate::oracle`]. The seed is fixed, so every run checks the same data;
/// `CITYHUB_CONTRACT_SEED=N` explores another.
pub async fn query_equals_definition(store: DynStore) {
    let seed = std::env::var("CITYHUB_CONTRACT_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or(0x15);
    crate::oracle::run(store, seed).await;
}

/// Everything acknowledged is there after every handle was dropped and the store opened again:
/// entities, history, tenants, subscriptions with status and outbox, the cursor, records,
/// contexts.
pub async fn acknowledged_writes_survive_a_restart(fixture: Fixture) {
    let store = fixture.store.clone();
    let s = store.as_ref();
    let kind = SubscriptionKind::Entity;
    s.create_subscription(kind, "seoul", "urn:s:1", subscription_doc("urn:s:1", 1)).await.unwrap().unwrap();
    let mods: Vec<(String, Modifier)> =
        (0..20).map(|i| (format!("urn:c:{i:02}"), create(counter(&format!("urn:c:{i:02}"), i)))).collect();
    assert!(s.modify("seoul", mods).await.unwrap().iter().all(|r| r.is_ok()));
    modify_one(s, "seoul", "urn:c:00", increment()).await.unwrap();
    let write = TemporalWrite::AddInstances { entity: station(&[1.0, 2.0]), must_exist: false };
    s.temporal_write("seoul", STATION, write).await.unwrap().unwrap();
    let journal = s.journal_after(s.notifier_cursor().await.unwrap(), 1000).await.unwrap();
    let last = journal.last().expect("journaled").seq;
    let endpoint = "http://127.0.0.1:9/notify";
    let commit = NotifierCommit {
        cursor: Some(journal[journal.len() / 2].seq),
        expected_cursor: s.notifier_cursor().await.unwrap(),
        notifications: vec![item(endpoint, "seoul", "urn:s:1", 1), item(endpoint, "seoul", "urn:s:1", 2)],
        outbox_cap: 100,
    };
    let stored = s.commit_notifications(commit).await.unwrap();
    s.record_delivery(&stored[0], DeliveryOutcome::Attempted, "2026-01-01T00:00:01Z").await.unwrap();
    s.record_delivery(&stored[0], DeliveryOutcome::Sent, "2026-01-01T00:00:02Z").await.unwrap();
    s.create_record("seoul", RecordKind::Registration, "urn:r:1", json!({"id": "urn:r:1"})).await.unwrap().unwrap();
    s.put_context(context("c1", "seoul", 2)).await.unwrap();
    let before_entities = all(s, "seoul").await;
    let before_history = s.temporal_query("seoul", &history_of(STATION)).await.unwrap();
    let cursor = s.notifier_cursor().await.unwrap();
    drop(store);

    let (store, _keep) = fixture.restart().await;
    let s = store.as_ref();
    assert!(s.tenant_exists("seoul").await.unwrap());
    assert_eq!(all(s, "seoul").await, before_entities, "the entities");
    assert_eq!(n_of(&s.get_entity("seoul", "urn:c:00").await.unwrap().unwrap()), 1);
    assert_eq!(s.temporal_query("seoul", &history_of(STATION)).await.unwrap(), before_history, "the history");
    assert_eq!(s.notifier_cursor().await.unwrap(), cursor, "the cursor");
    let rest = s.journal_after(cursor, 1000).await.unwrap();
    assert_eq!(rest.last().map(|j| j.seq), Some(last), "the journal past the cursor");
    let pending = s.outbox(endpoint, 10).await.unwrap();
    assert_eq!(pending, stored[1..], "the undelivered notification, as stored");
    let status = s.get_subscription(kind, "seoul", "urn:s:1").await.unwrap().expect("the subscription").status;
    assert_eq!((status.times_sent, status.last_success.as_deref()), (1, Some("2026-01-01T00:00:02Z")));
    assert_eq!(s.list_records("seoul", RecordKind::Registration).await.unwrap(), [json!({"id": "urn:r:1"})]);
    assert_eq!(s.get_context("c1").await.unwrap(), Some(context("c1", "seoul", 2)));
}

/// One step of [`one_call_equals_separate_calls`], made into a fresh modifier for each run.
#[derive(Clone, Copy, Debug)]
enum Step {
    /// A counter with `n` observed at the minute given, at a fixed location.
    Create(i64, u32),
    Increment,
    /// A reading: `n` set with an observedAt, as a device agent writes it.
    Reading(i64, u32),
    Refuse,
    Panic,
    /// The location moved to (lon, lat), observed at the minute given.
    Move(f64, f64, u32),
    /// One more type.
    Retype,
    /// `n` removed (its history records the deletion).
    DropN,
    Delete,
}

impl Step {
    fn modifier(self) -> Modifier {
        let edit = |f: Box<dyn FnOnce(&mut ngsild_core::Entity) + Send>| -> Modifier {
            Box::new(move |e| {
                let mut e = e.ok_or_else(|| NgsiLdError::not_found("missing"))?;
                f(&mut e);
                Ok(Modified::entity(e))
            })
        };
        // Every instance but a deletion has an observedAt: the temporal API answers in its order.
        let point = |lon: f64, lat: f64, minute: u32| {
            let mut a = Attribute::new(AttributeKind::GeoProperty, json!({"type": "Point", "coordinates": [lon, lat]}));
            a.observed_at = Some(format!("2026-01-01T00:{minute:02}:00Z"));
            a
        };
        match self {
            Step::Create(n, minute) => {
                let mut e = counter("", n);
                for a in e.attrs.get_mut(&iri("n")).into_iter().flatten() {
                    a.observed_at = Some(format!("2026-01-01T00:{minute:02}:00Z"));
                }
                e.attrs.insert(LOCATION.into(), vec![point(126.97, 37.56, minute)]);
                Box::new(move |current: Option<ngsild_core::Entity>| match current {
                    Some(_) => Err(NgsiLdError::already_exists("exists")),
                    None => Ok(Modified::entity(e)),
                })
            }
            Step::Increment => increment(),
            Step::Reading(n, minute) => edit(Box::new(move |e| {
                let mut a = Attribute::new(AttributeKind::Property, json!(n));
                a.observed_at = Some(format!("2026-01-01T00:{minute:02}:00Z"));
                e.attrs.insert(iri("n"), vec![a]);
            })),
            Step::Refuse => refuse(),
            Step::Panic => Box::new(|_| panic!("a bug in a modifier (expected by the contract suite)")),
            Step::Move(lon, lat, minute) => edit(Box::new(move |e| {
                e.attrs.insert(LOCATION.into(), vec![point(lon, lat, minute)]);
            })),
            Step::Retype => edit(Box::new(|e| e.types.push(iri("Sensor")))),
            Step::DropN => edit(Box::new(|e| {
                e.attrs.shift_remove(&iri("n"));
            })),
            Step::Delete => delete(),
        }
    }
}

/// A create step names its entity's id when it runs: `Step::Create` builds a counter without one.
fn modifier_for(id: &str, step: Step) -> Modifier {
    let m = step.modifier();
    if !matches!(step, Step::Create(..)) {
        return m;
    }
    let id = id.to_owned();
    Box::new(move |current| {
        m(current).map(|mut modified| {
            if let Some(e) = modified.next.as_mut() {
                e.id = id;
            }
            modified
        })
    })
}

/// One `modify` call that changes the same entities several times, interleaved, equals the same
/// modifiers in separate calls: the answers, the final entities, every history instance (count,
/// values, order), the journal, and the queries the index rows answer (judged by
/// `EntityFilter::matches`). A backend may save an entity once per call (SQLite does); nothing a
/// caller, a subscriber or the temporal API sees may show it.
pub async fn one_call_equals_separate_calls(store: DynStore) {
    let s = store.as_ref();
    let (one, many) = ("one", "many");
    let start = s.notifier_cursor().await.unwrap();
    for tenant in [one, many] {
        let sub = subscription_doc(&format!("urn:s:{tenant}"), 1);
        s.create_subscription(SubscriptionKind::Entity, tenant, &format!("urn:s:{tenant}"), sub)
            .await
            .unwrap()
            .unwrap();
        // Stored before the call: the call starts from its state in the tables.
        modify_one(s, tenant, "urn:c:d", create(counter("urn:c:d", 50))).await.unwrap();
    }
    use Step::*;
    let (a, b, c, d) = ("urn:c:a", "urn:c:b", "urn:c:c", "urn:c:d");
    let steps: Vec<(&str, Step)> = vec![
        (a, Create(1, 0)),
        (b, Create(10, 0)),
        (a, Reading(2, 1)),
        (d, Reading(51, 0)),
        (a, Refuse),
        (a, Reading(3, 2)),
        (b, Reading(11, 1)),
        (a, Panic),
        (a, Move(126.5, 37.2, 3)),
        (c, Create(7, 0)),
        (a, Reading(3, 3)),
        (d, Reading(52, 1)),
        (a, Retype),
        (c, Delete),
        (a, Reading(4, 4)),
        (a, Delete),
        (a, Increment),
        (a, Create(100, 6)),
        (a, Reading(101, 7)),
        (d, DropN),
        (b, Move(127.0, 37.0, 3)),
        (d, Create(9, 0)),
        (b, Reading(12, 2)),
        (c, Increment),
    ];
    let together = s
        .modify(one, steps.iter().map(|(id, step)| (id.to_string(), modifier_for(id, *step))).collect())
        .await
        .unwrap();
    let mut apart = Vec::new();
    for (id, step) in &steps {
        apart.push(modify_one(s, many, id, modifier_for(id, *step)).await);
    }
    assert_eq!(together.len(), steps.len(), "one answer per modifier");
    for (i, (x, y)) in together.iter().zip(&apart).enumerate() {
        match (x, y) {
            (Ok(x), Ok(y)) => assert_eq!(x, y, "step {i} {:?}: the same change", steps[i]),
            (Err(x), Err(y)) => assert_eq!(x.kind, y.kind, "step {i} {:?}: the same refusal", steps[i]),
            _ => panic!("step {i} {:?}: {x:?} in one call, {y:?} in separate calls", steps[i]),
        }
    }
    let refused: Vec<usize> = together.iter().enumerate().filter(|(_, r)| r.is_err()).map(|(i, _)| i).collect();
    assert_eq!(refused, [4, 7, 16, 21, 23], "the refusals, and only they: {together:?}");
    let a_before_move = together[8].as_ref().unwrap().before.as_ref().map(n_of);
    assert_eq!(a_before_move, Some(3), "a refused or panicking modifier leaves the state before it");

    let (final_one, final_many) = (all(s, one).await, all(s, many).await);
    assert_eq!(final_one, final_many, "the same entities at the end");
    assert_eq!(ids(&final_one), [a, b, d]);
    assert_eq!(n_of(&final_one[0]), 101);
    assert!(!final_one[2].attrs.contains_key(&iri("n")), "d lost n");
    for id in [a, b, c, d] {
        assert_eq!(s.get_entity(one, id).await.unwrap(), s.get_entity(many, id).await.unwrap(), "{id} read by id");
    }

    // Every history instance, in order, with its value, observedAt and deletion.
    let history = |tenant: &'static str, id: &'static str| async move {
        let page = s.temporal_query(tenant, &history_of(id)).await.unwrap();
        let mut seen: Vec<(String, Value, Option<String>, bool)> = Vec::new();
        for e in &page.entities {
            for (attr, instances) in &e.attrs {
                for i in instances {
                    let at = i.attribute.observed_at.clone();
                    seen.push((attr.clone(), i.attribute.value.clone(), at, i.deleted_at.is_some()));
                }
            }
        }
        seen
    };
    for id in [a, b, c, d] {
        let (x, y) = (history(one, id).await, history(many, id).await);
        assert_eq!(x, y, "{id}: the same history instances in one call as in separate calls");
    }
    let a_n: Vec<Value> =
        history(one, a).await.into_iter().filter(|(attr, ..)| attr == &iri("n")).map(|(_, v, ..)| v).collect();
    // In observedAt order: 1, 2, 3 (then a refusal, a panic, a move), 3 again observed later, 4,
    // (deleted, refused), 100, 101; the deletion has no observedAt and comes last.
    let null = json!(ngsild_core::temporal::NULL);
    assert_eq!(a_n, [json!(1), json!(2), json!(3), json!(3), json!(4), json!(100), json!(101), null], "a's n");

    // The journal: each change once, in order, in both tenants alike.
    let journal = s.journal_after(start, 1000).await.unwrap();
    let of = |tenant: &str| -> Vec<(Option<ngsild_core::Entity>, Option<ngsild_core::Entity>)> {
        journal.iter().filter(|j| j.tenant == tenant).map(|j| (j.before.clone(), j.after.clone())).collect()
    };
    let changes: Vec<_> =
        together.iter().filter_map(|r| r.as_ref().ok()).map(|c| (c.before.clone(), c.after.clone())).collect();
    assert_eq!(of(one)[1..], changes[..], "one journal entry per change of the call, in order, as answered");
    assert_eq!(of(one), of(many), "the same journal");

    // The index rows (types, facets, geo) follow the last state: queries answer as the definition.
    let ctx = ctx();
    let near = |at: &str, metres: u32| {
        ngsild_query::GeoQuery::parse(&format!("near;maxDistance=={metres}"), "Point", at, LOCATION).unwrap()
    };
    let filters = [
        EntityFilter { q: Some(ngsild_query::QExpr::parse("n>50", &ctx).unwrap()), ..Default::default() },
        EntityFilter { q: Some(ngsild_query::QExpr::parse("n==3|n==12|n==101", &ctx).unwrap()), ..Default::default() },
        EntityFilter { types: Some(TypeExpr::parse("Sensor", &ctx).unwrap()), ..Default::default() },
        EntityFilter { types: Some(TypeExpr::parse("Counter", &ctx).unwrap()), ..Default::default() },
        EntityFilter { attrs: vec![iri("n")], ..Default::default() },
        EntityFilter { geo: Some(near("[126.97,37.56]", 1000)), ..Default::default() },
        EntityFilter { geo: Some(near("[126.5,37.2]", 1000)), ..Default::default() },
        EntityFilter { geo: Some(near("[127.0,37.0]", 1000)), ..Default::default() },
    ];
    let everything = all(s, one).await;
    for (i, f) in filters.iter().enumerate() {
        let expected: Vec<&str> = everything.iter().filter(|e| f.matches(e)).map(|e| e.id.as_str()).collect();
        for tenant in [one, many] {
            let page = s.query(tenant, f, Paging { offset: 0, limit: 100, count: true }).await.unwrap();
            assert_eq!(ids(&page.entities), expected, "filter #{i} in {tenant}: as EntityFilter::matches says");
            assert_eq!(page.total, Some(expected.len()), "filter #{i} in {tenant}: the count");
        }
    }
    let sensors = s.query(one, &filters[2], Paging { offset: 0, limit: 100, count: true }).await.unwrap();
    assert!(sensors.entities.is_empty(), "a was retyped, then deleted and made again as a Counter: {sensors:?}");
    let moved = s.query(one, &filters[7], Paging { offset: 0, limit: 100, count: true }).await.unwrap();
    assert_eq!(ids(&moved.entities), [b], "b is found where it moved, not where it was");
}
