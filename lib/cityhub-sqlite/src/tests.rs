//! Tests of the embedded backend through the `Store` contract.

use std::sync::Arc;

use cityhub_storage::{modify_one, Modified, Modifier, Paging, Store, StoredContext};
use ngsild_core::model::{Attribute, AttributeKind};
use ngsild_core::{Entity, NgsiLdError};
use ngsild_query::{EntityFilter, TypeExpr};
use serde_json::json;

use crate::SqliteStore;

fn counter(id: &str, n: i64) -> Entity {
    let mut e = Entity::new(id, vec!["https://example.org/Counter".into()]);
    e.attrs.insert("https://example.org/n".into(), vec![Attribute::new(AttributeKind::Property, json!(n))]);
    e
}

fn create(entity: Entity) -> Modifier {
    Box::new(move |current| match current {
        Some(_) => Err(NgsiLdError::already_exists("exists")),
        None => Ok(Modified::entity(entity)),
    })
}

fn increment() -> Modifier {
    Box::new(|current| {
        let mut e = current.ok_or_else(|| NgsiLdError::not_found("missing"))?;
        let n = &mut e.attrs.get_mut("https://example.org/n").unwrap()[0].value;
        *n = json!(n.as_i64().unwrap() + 1);
        Ok(Modified::entity(e))
    })
}

fn value_of(e: &Entity) -> i64 {
    e.attrs["https://example.org/n"][0].value.as_i64().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_read_modify_write_loses_no_update() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(SqliteStore::open(dir.path()).unwrap());
    modify_one(store.as_ref(), "", "urn:c:1", create(counter("urn:c:1", 0))).await.unwrap();
    let commits_before = store.commits();
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let store = store.clone();
            tokio::spawn(async move {
                for _ in 0..200 {
                    modify_one(store.as_ref(), "", "urn:c:1", increment()).await.unwrap();
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    let e = store.get_entity("", "urn:c:1").await.unwrap().unwrap();
    assert_eq!(value_of(&e), 1600);
    let commits = store.commits() - commits_before;
    assert!(commits < 1600, "group commit shares transactions under concurrency: {commits} commits for 1600 writes");
}

#[tokio::test]
async fn a_refused_modification_leaves_its_entity_and_the_batch_alone() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path()).unwrap();
    modify_one(&store, "", "urn:c:1", create(counter("urn:c:1", 5))).await.unwrap();
    let refuse: Modifier = Box::new(|_| Err(NgsiLdError::bad_request("no")));
    let panics: Modifier = Box::new(|_| panic!("a bug in a modifier"));
    let results = store
        .modify(
            "",
            vec![
                ("urn:c:1".into(), refuse),
                ("urn:c:2".into(), create(counter("urn:c:2", 1))),
                ("urn:c:3".into(), panics),
            ],
        )
        .await
        .unwrap();
    assert_eq!(results[0].as_ref().unwrap_err().status(), 400);
    assert!(results[1].as_ref().unwrap().before.is_none());
    assert_eq!(results[2].as_ref().unwrap_err().status(), 500);
    assert_eq!(value_of(&store.get_entity("", "urn:c:1").await.unwrap().unwrap()), 5);
    assert!(store.get_entity("", "urn:c:2").await.unwrap().is_some());
    assert!(store.get_entity("", "urn:c:3").await.unwrap().is_none());
}

#[tokio::test]
async fn tenants_queries_paging_and_reopen() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = SqliteStore::open(dir.path()).unwrap();
        let mods: Vec<(String, Modifier)> =
            (0..30).map(|i| (format!("urn:c:{i:02}"), create(counter(&format!("urn:c:{i:02}"), i)))).collect();
        store.modify("seoul", mods).await.unwrap();
        let mut other = counter("urn:c:x", 0);
        other.types = vec!["https://example.org/Other".into()];
        modify_one(&store, "seoul", "urn:c:x", create(other)).await.unwrap();
        store
            .put_context(StoredContext {
                id: "c1".into(),
                kind: "Hosted".into(),
                url: "http://h/ngsi-ld/v1/jsonldContexts/c1".into(),
                document: json!({"@context": {}}),
                created_at: "2026-01-01T00:00:00Z".into(),
                last_used_at: None,
                number_of_hits: 0,
                tenant: "seoul".into(),
            })
            .await
            .unwrap();
    }
    let store = SqliteStore::open(dir.path()).unwrap();
    assert!(store.tenant_exists("seoul").await.unwrap());
    assert!(!store.tenant_exists("busan").await.unwrap());
    assert!(store.get_entity("", "urn:c:01").await.unwrap().is_none(), "the default tenant sees nothing of seoul");
    let filter =
        EntityFilter { types: Some(TypeExpr::Type("https://example.org/Counter".into())), ..Default::default() };
    let page = store.query("seoul", &filter, Paging { offset: 10, limit: 5, count: true }).await.unwrap();
    assert_eq!(page.total, Some(30));
    let ids: Vec<&str> = page.entities.iter().map(|e| e.id.as_str()).collect();
    assert_eq!(ids, vec!["urn:c:10", "urn:c:11", "urn:c:12", "urn:c:13", "urn:c:14"]);
    assert_eq!(store.list_contexts().await.unwrap().len(), 1);
    assert_eq!(store.get_context("c1").await.unwrap().unwrap().tenant, "seoul", "the hosting tenant is kept");
    assert!(store.delete_context("c1").await.unwrap());
    assert!(!store.delete_context("c1").await.unwrap());
}

/// Evidence for the query planner: over 100k entities, a `type` + `q` query and a `near`
/// geo-query are answered through indexes, never by scanning every entity.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queries_over_100k_entities_use_indexes() {
    use ngsild_jsonld::core_context;
    use ngsild_query::{GeoQuery, QExpr};

    const N: usize = 100_000;
    let started = std::time::Instant::now();
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path()).unwrap();
    let ctx = core_context();
    let types = ["Sensor", "Parking", "Bin", "Light"];
    for chunk in 0..N / 5000 {
        let mods: Vec<(String, Modifier)> = (chunk * 5000..(chunk + 1) * 5000)
            .map(|i| {
                let id = format!("urn:ngsi-ld:{}:{i:06}", types[i % 4]);
                let body = json!({
                    "id": id, "type": types[i % 4],
                    "pm25": (i % 500) as f64 / 10.0,
                    "status": if i % 3 == 0 { "free" } else { "occupied" },
                    "location": {"type": "Point", "coordinates": [126.0 + (i % 1000) as f64 / 1000.0, 37.0 + (i / 1000) as f64 / 1000.0]}
                });
                let (entity, _) = ngsild_core::expand::expand_entity(body.as_object().unwrap(), &ctx).unwrap();
                (id, create(entity))
            })
            .collect();
        store.modify("", mods).await.unwrap();
    }
    let type_and_q = EntityFilter {
        types: Some(TypeExpr::parse("Sensor", &ctx).unwrap()),
        q: Some(QExpr::parse("pm25>49.5;status==\"free\"", &ctx).unwrap()),
        ..Default::default()
    };
    let near = EntityFilter {
        geo: Some(
            GeoQuery::parse("near;maxDistance==150", "Point", "[126.5,37.05]", "https://uri.etsi.org/ngsi-ld/location")
                .unwrap(),
        ),
        ..Default::default()
    };
    let conn = rusqlite::Connection::open(dir.path().join("cityhub.sqlite")).unwrap();
    conn.execute_batch("ANALYZE").unwrap();
    let plan = |filter: &EntityFilter| {
        let plan = crate::index::plan("", filter);
        assert!(!plan.residual, "every part of this filter is answered by an index");
        let mut lines = Vec::new();
        for lookup in plan.lookups.iter().chain(plan.geo.iter()) {
            let mut stmt = conn.prepare(&format!("EXPLAIN QUERY PLAN {}", lookup.sql)).unwrap();
            let rows =
                stmt.query_map(rusqlite::params_from_iter(lookup.args.iter()), |r| r.get::<_, String>(3)).unwrap();
            lines.extend(rows.map(Result::unwrap));
        }
        lines.join("\n")
    };
    let q_plan = plan(&type_and_q);
    assert!(q_plan.contains("facets USING PRIMARY KEY"), "type+q plan:\n{q_plan}");
    assert!(!q_plan.contains("SCAN"), "type+q must not scan a table:\n{q_plan}");
    let geo_plan = plan(&near);
    assert!(geo_plan.contains("VIRTUAL TABLE INDEX"), "near plan uses the R*Tree:\n{geo_plan}");
    assert!(!geo_plan.contains("SCAN e") && !geo_plan.contains("SCAN entities"), "near must not scan:\n{geo_plan}");

    // And the answers are the ones a plain scan would give.
    let expected = (0..N).filter(|i| i % 4 == 0 && i % 3 == 0 && (i % 500) as f64 / 10.0 > 49.5).count();
    let page = store.query("", &type_and_q, Paging { offset: 0, limit: 1000, count: true }).await.unwrap();
    assert_eq!(page.total, Some(expected));
    let sensors_free_high = EntityFilter {
        types: Some(TypeExpr::parse("Sensor", &ctx).unwrap()),
        q: Some(QExpr::parse("pm25>=49.6;status==\"free\"", &ctx).unwrap()),
        ..Default::default()
    };
    let expected = (0..N).filter(|i| i % 4 == 0 && i % 3 == 0 && (i % 500) as f64 / 10.0 >= 49.6).count();
    let page = store.query("", &sensors_free_high, Paging { offset: 0, limit: 1000, count: true }).await.unwrap();
    assert_eq!(page.total, Some(expected));
    let page = store.query("", &near, Paging { offset: 0, limit: 1000, count: true }).await.unwrap();
    // 150 m around (126.5, 37.05): the grid point and its 8 neighbours (0.001° is 89 m east-west
    // and 111 m north-south here, 142 m diagonally); the next ring is 178 m or more away.
    assert_eq!(page.total, Some(9), "{:?}", page.entities.iter().map(|e| &e.id).collect::<Vec<_>>());
    println!(
        "type+q plan:\n{q_plan}\nnear plan:\n{geo_plan}\n{N} entities loaded and queried in {:?}",
        started.elapsed()
    );
}

/// The index planner gives the answers of the plain definition: for a mix of filters (exact
/// ones answered from the indexes alone, and ones left partly to the decoded entity), the count
/// and the page equal those of `EntityFilter::matches` over every entity, after creates,
/// updates that move values, types and geometries, and deletes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn indexed_answers_equal_the_definition() {
    use ngsild_jsonld::core_context;
    use ngsild_query::{GeoQuery, QExpr};

    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path()).unwrap();
    let ctx = core_context();
    let body = |i: usize, round: usize| {
        let k = i + round * 7;
        let ty: serde_json::Value = match i % 5 {
            0 => json!(["Sensor", "Bin"]),
            1 | 2 => json!("Sensor"),
            _ => json!("Bin"),
        };
        let location = if i.is_multiple_of(9) {
            json!({"type": "Polygon", "coordinates": [[[126.0, 37.0], [126.0 + (k % 10) as f64 / 100.0, 37.0], [126.0, 37.05], [126.0, 37.0]]]})
        } else {
            json!({"type": "Point", "coordinates": [126.0 + (k % 40) as f64 / 1000.0, 37.0 + (k % 30) as f64 / 1000.0]})
        };
        let mut b = json!({
            "id": format!("urn:ngsi-ld:E:{i:04}"), "type": ty,
            "pm25": if i.is_multiple_of(2) {
                json!((k % 50) as f64)
            } else {
                json!([{"type": "Property", "value": (k % 50) as f64}, {"type": "Property", "value": (k % 13) as f64, "datasetId": "urn:d:2"}])
            },
            "status": (["free", "occupied", "broken"][(k / 2) % 3]),
            "tags": {"type": "Property", "value": [format!("t{}", k % 4), format!("t{}", k % 6)]},
            "name": {"type": "LanguageProperty", "languageMap": {"en": format!("n{}", k % 5), "ko": "이름"}},
            "location": location,
        });
        if k.is_multiple_of(4) {
            b["owner"] = json!({"type": "Relationship", "object": format!("urn:ngsi-ld:Owner:{}", k % 3)});
        }
        if k.is_multiple_of(11) {
            b["empty"] = json!({"type": "Property", "value": []});
        }
        ngsild_core::expand::expand_entity(b.as_object().unwrap(), &ctx).unwrap().0
    };
    const N: usize = 600;
    let replace = |e: Entity| -> Modifier { Box::new(move |_| Ok(Modified::entity(e))) };
    store.modify("", (0..N).map(|i| (format!("urn:ngsi-ld:E:{i:04}"), create(body(i, 0)))).collect()).await.unwrap();
    // Move values, types and geometries of some, delete others.
    store
        .modify("", (0..N).step_by(3).map(|i| (format!("urn:ngsi-ld:E:{i:04}"), replace(body(i, 1)))).collect())
        .await
        .unwrap();
    let gone: Vec<(String, Modifier)> = (0..N)
        .step_by(17)
        .map(|i| (format!("urn:ngsi-ld:E:{i:04}"), Box::new(|_| Ok(Modified::delete())) as Modifier))
        .collect();
    store.modify("", gone).await.unwrap();
    let everything =
        store.query("", &EntityFilter::default(), Paging { offset: 0, limit: 10_000, count: true }).await.unwrap();
    assert_eq!(everything.total, Some(N - N.div_ceil(17)));

    let q = |text: &str| Some(QExpr::parse(text, &ctx).unwrap());
    let types = |text: &str| Some(TypeExpr::parse(text, &ctx).unwrap());
    let geo = |rel: &str, geometry: &str, coords: &str| {
        Some(GeoQuery::parse(rel, geometry, coords, "https://uri.etsi.org/ngsi-ld/location").unwrap())
    };
    let filters = vec![
        EntityFilter { types: types("Sensor"), q: q("pm25>20;status==\"free\""), ..Default::default() },
        EntityFilter { types: types("Sensor,Bin"), q: q("pm25==3..9"), ..Default::default() },
        EntityFilter { types: types("Bin"), ..Default::default() },
        EntityFilter { types: types("Sensor;Bin"), ..Default::default() },
        EntityFilter { q: q("status==\"broken\",\"free\";tags==\"t1\""), ..Default::default() },
        EntityFilter { q: q("owner==\"urn:ngsi-ld:Owner:1\""), ..Default::default() },
        EntityFilter { q: q("owner"), ..Default::default() },
        EntityFilter { q: q("!owner"), ..Default::default() },
        EntityFilter { q: q("empty"), ..Default::default() },
        EntityFilter { q: q("name==\"n2\""), ..Default::default() },
        EntityFilter { q: q("pm25>40|status==\"broken\""), ..Default::default() },
        EntityFilter { q: q("pm25!=3"), types: types("Bin"), ..Default::default() },
        EntityFilter { q: q("status~=\"fr.*\""), ..Default::default() },
        EntityFilter {
            attrs: vec!["https://uri.etsi.org/ngsi-ld/default-context/owner".into()],
            types: types("Bin"),
            ..Default::default()
        },
        EntityFilter {
            id_pattern: Some(regex::Regex::new("E:00[0-4]").unwrap()),
            q: q("pm25<10"),
            ..Default::default()
        },
        EntityFilter {
            ids: vec!["urn:ngsi-ld:E:0001".into(), "urn:ngsi-ld:E:0005".into(), "urn:ngsi-ld:E:0017".into()],
            ..Default::default()
        },
        EntityFilter { geo: geo("near;maxDistance==1500", "Point", "[126.01,37.01]"), ..Default::default() },
        EntityFilter {
            geo: geo("near;maxDistance==1500", "Point", "[126.01,37.01]"),
            types: types("Sensor"),
            q: q("pm25>10"),
            ..Default::default()
        },
        EntityFilter {
            geo: geo("within", "Polygon", "[[[126.0,37.0],[126.02,37.0],[126.02,37.02],[126.0,37.02],[126.0,37.0]]]"),
            ..Default::default()
        },
        EntityFilter { geo: geo("intersects", "Point", "[126.001,37.001]"), ..Default::default() },
        EntityFilter { geo: geo("near;minDistance==2000", "Point", "[126.01,37.01]"), ..Default::default() },
    ];
    for (n, filter) in filters.iter().enumerate() {
        let expected: Vec<&str> =
            everything.entities.iter().filter(|e| filter.matches(e)).map(|e| e.id.as_str()).collect();
        for (offset, limit) in [(0, 1000), (0, 7), (5, 3)] {
            let page = store.query("", filter, Paging { offset, limit, count: true }).await.unwrap();
            let ids: Vec<&str> = page.entities.iter().map(|e| e.id.as_str()).collect();
            let want: Vec<&str> = expected.iter().skip(offset).take(limit).copied().collect();
            assert_eq!(page.total, Some(expected.len()), "filter #{n} count");
            assert_eq!(ids, want, "filter #{n} page {offset}+{limit}");
        }
        assert!(!expected.is_empty() || n == 3, "filter #{n} should match something, or it tests little");
    }
}

/// A store written by schema version 7 (history keyed by text, random instance ids) opens with
/// its history moved to series: the same instances under the same ids, time windows over them,
/// and an edit by the old id.
#[tokio::test]
async fn a_version_7_history_moves_to_series_keeping_instance_ids() {
    use cityhub_storage::{TemporalQuery, TemporalWrite};
    use ngsild_core::temporal::TimeRel;

    const E: &str = "urn:ngsi-ld:Station:1";
    const T: &str = "https://example.org/temperature";
    let dir = tempfile::tempdir().unwrap();
    {
        let conn = rusqlite::Connection::open(dir.path().join("cityhub.sqlite")).unwrap();
        conn.execute_batch(
            "CREATE TABLE entities (eid INTEGER PRIMARY KEY, tenant TEXT NOT NULL, id TEXT NOT NULL,
                                    doc TEXT NOT NULL, UNIQUE (tenant, id));
             CREATE TABLE temporal_entities (tenant TEXT NOT NULL, id TEXT NOT NULL, types TEXT NOT NULL,
                 scope TEXT NOT NULL, created_at TEXT NOT NULL, modified_at TEXT NOT NULL, deleted_at TEXT,
                 PRIMARY KEY (tenant, id)) WITHOUT ROWID;
             CREATE TABLE attr_history (seq INTEGER PRIMARY KEY, tenant TEXT NOT NULL, entity_id TEXT NOT NULL,
                 attr TEXT NOT NULL, instance_id TEXT NOT NULL, dataset_id TEXT, doc TEXT NOT NULL,
                 val TEXT NOT NULL, num REAL, t_observed TEXT, t_created TEXT NOT NULL,
                 t_modified TEXT NOT NULL, t_deleted TEXT);
             CREATE UNIQUE INDEX attr_history_instance ON attr_history (tenant, entity_id, attr, instance_id);
             CREATE INDEX attr_history_observed
                 ON attr_history (tenant, entity_id, attr, t_observed, dataset_id, t_deleted, num);
             INSERT INTO temporal_entities VALUES ('', 'urn:ngsi-ld:Station:1', '[\"https://example.org/Station\"]',
                 '[]', '2026-01-01T00:00:00.000000Z', '2026-01-01T00:00:00.000000Z', NULL);
             PRAGMA user_version = 7;",
        )
        .unwrap();
        for (n, value) in [10, 20, 30].into_iter().enumerate() {
            let observed = format!("2026-01-0{}T00:00:00.000000Z", n + 1);
            let doc = json!({"type": "Property", "value": value, "observedAt": observed});
            conn.execute(
                "INSERT INTO attr_history (tenant, entity_id, attr, instance_id, doc, val, num, t_observed,
                                           t_created, t_modified)
                 VALUES ('', ?1, ?2, ?3, ?4, ?5, ?5, ?6, ?6, ?6)",
                rusqlite::params![E, T, format!("urn:ngsi-ld:Instance:old-{n}"), doc.to_string(), value, observed],
            )
            .unwrap();
        }
    }
    let store = SqliteStore::open(dir.path()).unwrap();
    let from_day_2 = |store: SqliteStore| async move {
        let query = TemporalQuery {
            filter: EntityFilter { ids: vec![E.into()], ..Default::default() },
            timerel: Some(TimeRel::After("2026-01-02T00:00:00Z".into())),
            per_attribute: 100,
            paging: Paging { offset: 0, limit: 10, count: false },
            ..Default::default()
        };
        let page = store.temporal_query("", &query).await.unwrap();
        let shown: Vec<(String, i64)> = page.entities[0].attrs[T]
            .iter()
            .map(|i| (i.instance_id.clone(), i.attribute.value.as_i64().unwrap()))
            .collect();
        (store, shown)
    };
    let (store, shown) = from_day_2(store).await;
    assert_eq!(
        shown,
        vec![("urn:ngsi-ld:Instance:old-1".to_string(), 20), ("urn:ngsi-ld:Instance:old-2".to_string(), 30)]
    );
    let mut replacement = Attribute::new(AttributeKind::Property, json!(25));
    replacement.observed_at = Some("2026-01-02T00:00:00Z".into());
    let write = TemporalWrite::ReplaceInstance {
        attr: T.into(),
        instance_id: "urn:ngsi-ld:Instance:old-1".into(),
        attribute: replacement,
    };
    store.temporal_write("", E, write).await.unwrap().unwrap();
    let (store, shown) = from_day_2(store).await;
    assert_eq!(shown[0], ("urn:ngsi-ld:Instance:old-1".to_string(), 25));
    let gone = TemporalWrite::DeleteInstance { attr: T.into(), instance_id: "urn:ngsi-ld:Instance:old-2".into() };
    store.temporal_write("", E, gone).await.unwrap().unwrap();
    let (_, shown) = from_day_2(store).await;
    assert_eq!(shown.len(), 1);
}

/// Every list of a filter is bound as one variable, so no list length reaches SQLite's limit of
/// 32766 variables ("too many SQL variables") or its 500 terms of a compound SELECT.
#[tokio::test]
async fn lists_of_any_length_query_fine() {
    use ngsild_query::QExpr;
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path()).unwrap();
    for i in 0..3 {
        let id = format!("urn:c:{i}");
        modify_one(&store, "", &id, create(counter(&id, i))).await.unwrap();
    }
    let paging = Paging { offset: 0, limit: 10, count: true };
    let ids = |page: &cityhub_storage::Page| page.entities.iter().map(|e| e.id.clone()).collect::<Vec<_>>();
    // 100k attribute names, one of which the entities have.
    let mut attrs: Vec<String> = (0..100_000).map(|i| format!("https://example.org/a{i}")).collect();
    attrs.push("https://example.org/n".into());
    let filter = EntityFilter { attrs, ..Default::default() };
    let page = store.query("", &filter, paging).await.unwrap();
    assert_eq!(ids(&page), ["urn:c:0", "urn:c:1", "urn:c:2"]);
    assert_eq!(page.total, Some(3));
    // 50k ids, two of them stored, with 40k types.
    let mut wanted: Vec<String> = (0..50_000).map(|i| format!("urn:x:{i}")).collect();
    wanted.extend(["urn:c:2".to_owned(), "urn:c:0".to_owned()]);
    let types = (0..40_000).map(|i| format!("T{i}")).chain(["Counter".to_owned()]).collect::<Vec<_>>().join(",");
    let ctx =
        ngsild_jsonld::Context::build(&json!({"@vocab": "https://example.org/"}), &ngsild_jsonld::NoDocuments).unwrap();
    let filter =
        EntityFilter { ids: wanted.clone(), types: Some(TypeExpr::parse(&types, &ctx).unwrap()), ..Default::default() };
    let page = store.query("", &filter, paging).await.unwrap();
    assert_eq!(ids(&page), ["urn:c:0", "urn:c:2"]);
    // A q value list of 40k numbers and strings.
    let values = (10..40_000).map(|i| i.to_string()).chain(["1".into(), "\"x\"".into()]).collect::<Vec<_>>().join(",");
    let filter = EntityFilter { q: Some(QExpr::parse(&format!("n=={values}"), &ctx).unwrap()), ..Default::default() };
    let page = store.query("", &filter, paging).await.unwrap();
    assert_eq!(ids(&page), ["urn:c:1"]);
    // The same lists in a temporal query.
    let query = cityhub_storage::TemporalQuery {
        filter: EntityFilter { ids: wanted, ..Default::default() },
        dataset_ids: Some((0..40_000).map(|i| Some(format!("urn:d:{i}"))).chain([None]).collect()),
        per_attribute: 10,
        paging,
        ..Default::default()
    };
    let page = store.temporal_query("", &query).await.unwrap();
    let ids: Vec<&str> = page.entities.iter().map(|e| e.id.as_str()).collect();
    assert_eq!(ids, ["urn:c:0", "urn:c:2"]);
}

/// The store events a receiver holds now, in order.
fn drain(
    events: &mut tokio::sync::broadcast::Receiver<cityhub_storage::StoreEvent>,
) -> Vec<cityhub_storage::StoreEvent> {
    std::iter::from_fn(|| events.try_recv().ok()).collect()
}

#[tokio::test]
async fn commits_are_told_as_store_events_and_refusals_are_not() {
    use cityhub_storage::{RecordKind, StoreEvent, SubscriptionKind};
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path()).unwrap();
    let mut events = store.events();
    modify_one(&store, "t1", "urn:ngsi-ld:E:1", create(counter("urn:ngsi-ld:E:1", 0))).await.unwrap();
    assert_eq!(drain(&mut events), vec![StoreEvent::Tenant { tenant: "t1".into() }]);
    // A second write in the tenant creates nothing; no subscription yet, so nothing is journaled.
    modify_one(&store, "t1", "urn:ngsi-ld:E:1", increment()).await.unwrap();
    assert_eq!(drain(&mut events), vec![]);
    store.create_subscription(SubscriptionKind::Entity, "t1", "urn:s:1", json!({})).await.unwrap().unwrap();
    let sub = StoreEvent::Subscription { kind: SubscriptionKind::Entity, tenant: "t1".into(), id: "urn:s:1".into() };
    assert_eq!(drain(&mut events), vec![sub.clone()]);
    modify_one(&store, "t1", "urn:ngsi-ld:E:1", increment()).await.unwrap();
    assert_eq!(drain(&mut events), vec![StoreEvent::Journal]);
    // A refused modification writes nothing and tells nothing.
    let refused = modify_one(&store, "t1", "urn:ngsi-ld:E:1", create(counter("urn:ngsi-ld:E:1", 0))).await;
    assert_eq!(refused.unwrap_err().kind, ngsild_core::ErrorKind::AlreadyExists);
    assert_eq!(drain(&mut events), vec![]);
    assert!(store.replace_subscription(SubscriptionKind::Entity, "t1", "urn:s:1", json!({"a": 1})).await.unwrap());
    assert!(!store.replace_subscription(SubscriptionKind::Entity, "t1", "urn:s:none", json!({})).await.unwrap());
    assert!(store.delete_subscription(SubscriptionKind::Entity, "t1", "urn:s:1").await.unwrap());
    assert_eq!(drain(&mut events), vec![sub.clone(), sub]);
    let records = StoreEvent::Records { tenant: "t2".into(), kind: RecordKind::Registration };
    store.create_record("t2", RecordKind::Registration, "urn:r:1", json!({"v": 1})).await.unwrap().unwrap();
    assert_eq!(drain(&mut events), vec![StoreEvent::Tenant { tenant: "t2".into() }, records.clone()]);
    let context = StoredContext {
        id: "c1".into(),
        kind: "Hosted".into(),
        url: "http://h/c1".into(),
        document: json!({"@context": {}}),
        created_at: "2024-01-01T00:00:00Z".into(),
        last_used_at: None,
        number_of_hits: 0,
        tenant: String::new(),
    };
    store.put_context(context).await.unwrap();
    assert!(store.delete_context("c1").await.unwrap());
    assert!(!store.delete_context("c1").await.unwrap());
    let told = StoreEvent::Context { id: "c1".into() };
    assert_eq!(drain(&mut events), vec![told.clone(), told]);
}

#[tokio::test]
async fn records_are_created_if_absent_and_replaced_if_present() {
    use cityhub_storage::RecordKind::Registration;
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path()).unwrap();
    assert!(!store.replace_record("", Registration, "urn:r:1", json!({"v": 0})).await.unwrap());
    assert!(store.list_records("", Registration).await.unwrap().is_empty(), "a replace creates nothing");
    store.create_record("", Registration, "urn:r:1", json!({"v": 1})).await.unwrap().unwrap();
    let taken = store.create_record("", Registration, "urn:r:1", json!({"v": 2})).await.unwrap().unwrap_err();
    assert_eq!(taken.kind, ngsild_core::ErrorKind::AlreadyExists);
    assert!(taken.detail.contains("urn:r:1"), "{}", taken.detail);
    assert_eq!(store.list_records("", Registration).await.unwrap(), vec![json!({"v": 1})]);
    assert!(store.replace_record("", Registration, "urn:r:1", json!({"v": 3})).await.unwrap());
    // Another tenant has its own ids.
    store.create_record("t", Registration, "urn:r:1", json!({"v": 4})).await.unwrap().unwrap();
    assert_eq!(store.list_records("", Registration).await.unwrap(), vec![json!({"v": 3})]);
    assert_eq!(store.list_records("t", Registration).await.unwrap(), vec![json!({"v": 4})]);
}

#[tokio::test]
async fn a_lease_has_one_holder_until_it_expires_or_is_released() {
    use std::time::Duration;
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path()).unwrap();
    let long = Duration::from_secs(3600);
    assert!(store.try_lease("notifier", "a", long).await.unwrap());
    assert!(!store.try_lease("notifier", "b", long).await.unwrap(), "b waits while a holds it");
    assert!(store.try_lease("notifier", "a", long).await.unwrap(), "a renews");
    assert!(store.try_lease("other", "b", long).await.unwrap(), "names are independent");
    store.release_lease("notifier", "b").await.unwrap();
    assert!(!store.try_lease("notifier", "b", long).await.unwrap(), "only the holder releases");
    store.release_lease("notifier", "a").await.unwrap();
    assert!(store.try_lease("notifier", "b", Duration::ZERO).await.unwrap(), "released: b takes it");
    // b's lease lasted no time at all: it has expired, and a takes it over.
    assert!(store.try_lease("notifier", "a", long).await.unwrap());
    assert!(!store.try_lease("notifier", "b", long).await.unwrap());
    // Reopened, the store forgets the leases of the process that had it open.
    store.close();
    drop(store);
    let store = SqliteStore::open(dir.path()).unwrap();
    assert!(store.try_lease("notifier", "b", long).await.unwrap());
}

#[tokio::test]
async fn the_notifier_cursor_moves_only_from_the_expected_value() {
    use cityhub_storage::{NotifierCommit, OutboxItem, StoreError, SubscriptionKind};
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path()).unwrap();
    store.create_subscription(SubscriptionKind::Entity, "", "urn:s:1", json!({})).await.unwrap().unwrap();
    for i in 0..3 {
        modify_one(&store, "", &format!("urn:ngsi-ld:E:{i}"), create(counter(&format!("urn:ngsi-ld:E:{i}"), 0)))
            .await
            .unwrap();
    }
    let journal = store.journal_after(0, 10).await.unwrap();
    assert_eq!(journal.len(), 3);
    let item = OutboxItem {
        id: 0,
        endpoint: "http://e".into(),
        kind: SubscriptionKind::Entity,
        tenant: String::new(),
        subscription_id: "urn:s:1".into(),
        message: json!({}),
        created_at: "t".into(),
        attempts: 0,
    };
    let commit = |expected: u64, to: u64| NotifierCommit {
        expected_cursor: expected,
        cursor: Some(to),
        notifications: vec![item.clone()],
        outbox_cap: 100,
    };
    store.commit_notifications(commit(0, journal[1].seq)).await.unwrap();
    assert_eq!(store.notifier_cursor().await.unwrap(), journal[1].seq);
    // A second notifier that read the cursor at 0 loses: nothing of its commit is written.
    let late = store.commit_notifications(commit(0, journal[2].seq)).await;
    assert!(matches!(&late, Err(StoreError::Conflict(why)) if why.contains("another notifier")), "{late:?}");
    assert_eq!(store.notifier_cursor().await.unwrap(), journal[1].seq);
    assert_eq!(store.outbox("http://e", 10).await.unwrap().len(), 1);
    assert_eq!(store.journal_after(0, 10).await.unwrap().len(), 1, "only the consumed entries left");
    store.commit_notifications(commit(journal[1].seq, journal[2].seq)).await.unwrap();
    assert_eq!(store.outbox("http://e", 10).await.unwrap().len(), 2);
    // Without a cursor (notifications of registration changes) nothing is compared.
    let no_cursor = NotifierCommit { expected_cursor: 12345, cursor: None, ..commit(0, 0) };
    store.commit_notifications(no_cursor).await.unwrap();
    assert_eq!(store.outbox("http://e", 10).await.unwrap().len(), 3);
}

#[tokio::test]
async fn a_modifier_report_comes_back_in_its_change() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path()).unwrap();
    modify_one(&store, "", "urn:ngsi-ld:E:1", create(counter("urn:ngsi-ld:E:1", 0))).await.unwrap();
    let report = ngsild_core::ops::UpdateReport {
        updated: vec!["https://example.org/n".into()],
        not_updated: vec![("https://example.org/m".into(), "absent".into())],
    };
    let sent = report.clone();
    let reporting: Modifier = Box::new(move |current| Ok(Modified::from(current).with_report(Some(sent))));
    let change = modify_one(&store, "", "urn:ngsi-ld:E:1", reporting).await.unwrap();
    assert_eq!(change.report, Some(report));
    assert_eq!(change.after.as_ref().map(value_of), Some(0));
    assert_eq!(modify_one(&store, "", "urn:ngsi-ld:E:1", increment()).await.unwrap().report, None);
}

/// The writer remembers each attribute's history series; a temporal delete of the attribute
/// removes the series, and the next entity write must record into a new one, not the old key.
#[tokio::test]
async fn history_after_a_temporal_attribute_delete_goes_to_a_new_series() {
    use cityhub_storage::{TemporalQuery, TemporalWrite};
    const N: &str = "https://example.org/n";
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path()).unwrap();
    modify_one(&store, "", "urn:c:h", create(counter("urn:c:h", 1))).await.unwrap();
    modify_one(&store, "", "urn:c:h", increment()).await.unwrap();
    let gone = TemporalWrite::DeleteAttribute { attr: N.into(), dataset_id: None, all: true };
    store.temporal_write("", "urn:c:h", gone).await.unwrap().unwrap();
    let put_back: Modifier = Box::new(|current| {
        let mut e = current.ok_or_else(|| NgsiLdError::not_found("missing"))?;
        e.attrs.insert(N.into(), vec![Attribute::new(AttributeKind::Property, json!(7))]);
        Ok(Modified::entity(e))
    });
    modify_one(&store, "", "urn:c:h", put_back).await.unwrap();
    let query = TemporalQuery {
        filter: EntityFilter { ids: vec!["urn:c:h".into()], ..Default::default() },
        per_attribute: 100,
        paging: Paging { offset: 0, limit: 10, count: false },
        ..Default::default()
    };
    let page = store.temporal_query("", &query).await.unwrap();
    let values: Vec<i64> = page.entities[0]
        .attrs
        .get(N)
        .map(|is| is.iter().map(|i| i.attribute.value.as_i64().unwrap()).collect())
        .unwrap_or_default();
    assert_eq!(values, vec![7], "the history of n after its deletion holds the one new instance");
}

/// A store whose facets are in the shape of schema versions 4 to 12 (a rowid table, a row per
/// scalar held, duplicates included, three indexes) opens converted to the WITHOUT ROWID table of
/// version 13, and every query answers as before the conversion and as `EntityFilter::matches`
/// says, attributes mixing numbers and texts included (a number comparison selects no text).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn version_12_facets_convert_and_answer_the_same() {
    use cityhub_storage::plan;
    use ngsild_jsonld::core_context;
    use ngsild_query::QExpr;

    let dir = tempfile::tempdir().unwrap();
    let ctx = core_context();
    const N: usize = 240;
    // Entity i with the values of k.
    let body = |i: usize, k: usize| {
        let ty = if i.is_multiple_of(3) { json!(["Sensor", "Bin"]) } else { json!("Sensor") };
        let mut b = json!({
            "id": format!("urn:ngsi-ld:E:{i:04}"), "type": ty,
            "pm25": (k % 50) as f64,
            "status": (["free", "occupied", "broken"][k % 3]),
            // The same scalar twice: two rows in version 12, one in 13.
            "dup": {"type": "Property", "value": [k % 4, k % 4, format!("d{}", k % 2)]},
            // Numbers and texts in one attribute, texts that read as numbers among them.
            "mixed": {"type": "Property", "value": [k % 7, format!("{}", k % 5), (["a", "b", "c"][k % 3])]},
            "name": {"type": "LanguageProperty", "languageMap": {"en": format!("n{}", k % 5)}},
        });
        if i.is_multiple_of(4) {
            b["owner"] = json!({"type": "Relationship", "object": format!("urn:ngsi-ld:Owner:{}", i % 3)});
        }
        ngsild_core::expand::expand_entity(b.as_object().unwrap(), &ctx).unwrap().0
    };
    let q = |text: &str| Some(QExpr::parse(text, &ctx).unwrap());
    let types = |text: &str| Some(TypeExpr::parse(text, &ctx).unwrap());
    let filters = vec![
        EntityFilter { types: types("Sensor"), q: q("pm25>20;status==\"free\""), ..Default::default() },
        EntityFilter { types: types("Bin"), q: q("pm25==3..9"), ..Default::default() },
        EntityFilter { q: q("mixed>3"), ..Default::default() },
        EntityFilter { q: q("mixed<=2"), ..Default::default() },
        EntityFilter { q: q("mixed<\"b\""), ..Default::default() },
        EntityFilter { q: q("mixed>=\"3\""), ..Default::default() },
        EntityFilter { q: q("mixed==\"4\""), ..Default::default() },
        EntityFilter { q: q("mixed==4"), ..Default::default() },
        EntityFilter { q: q("mixed==1,\"1\",\"c\""), ..Default::default() },
        EntityFilter { q: q("mixed==\"1\"..\"3\""), ..Default::default() },
        EntityFilter { q: q("dup==3;dup==\"d1\""), ..Default::default() },
        EntityFilter { q: q("owner"), types: types("Bin"), ..Default::default() },
        EntityFilter { q: q("name==\"n2\""), ..Default::default() },
        EntityFilter { q: q("!owner"), ..Default::default() },
    ];
    async fn answers(store: &SqliteStore, filters: &[EntityFilter]) -> Vec<Vec<String>> {
        let everything = EntityFilter::default();
        let all = store.query("", &everything, Paging { offset: 0, limit: 10_000, count: true }).await.unwrap();
        let mut out = Vec::new();
        for (n, filter) in filters.iter().enumerate() {
            let page = store.query("", filter, Paging { offset: 0, limit: 10_000, count: true }).await.unwrap();
            let ids: Vec<String> = page.entities.iter().map(|e| e.id.clone()).collect();
            let want: Vec<String> = all.entities.iter().filter(|e| filter.matches(e)).map(|e| e.id.clone()).collect();
            assert_eq!(ids, want, "filter #{n} against the definition");
            assert_eq!(page.total, Some(want.len()), "filter #{n} count");
            assert!(!want.is_empty(), "filter #{n} should match something, or it tests little");
            out.push(ids);
        }
        out
    }
    let before = {
        let store = SqliteStore::open(dir.path()).unwrap();
        let mods = (0..N).map(|i| (format!("urn:ngsi-ld:E:{i:04}"), create(body(i, i)))).collect();
        store.modify("", mods).await.unwrap();
        answers(&store, &filters).await
    };
    // Back to the layout of version 12, rows as its writer made them: a presence row (both
    // columns NULL) and one row per scalar held, for each type of the entity.
    {
        let conn = rusqlite::Connection::open(dir.path().join("cityhub.sqlite")).unwrap();
        conn.execute_batch(&format!("DROP TABLE facets; {}", crate::index::FACETS_V12)).unwrap();
        let docs: Vec<(i64, String)> = conn
            .prepare("SELECT eid, doc FROM entities")
            .unwrap()
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .unwrap()
            .map(Result::unwrap)
            .collect();
        let mut rows = 0;
        let mut insert = conn.prepare("INSERT INTO facets (key, num, str, eid) VALUES (?1, ?2, ?3, ?4)").unwrap();
        for (eid, doc) in docs {
            let entity = crate::codec::decode(&doc).unwrap();
            for ty in &entity.types {
                for (attr, instances) in &entity.attrs {
                    let key: i64 = conn
                        .query_row(
                            "SELECT key FROM facet_keys WHERE tenant = '' AND attr = ?1 AND type = ?2",
                            [attr, ty],
                            |r| r.get(0),
                        )
                        .unwrap();
                    insert.execute(rusqlite::params![key, None::<f64>, None::<String>, eid]).unwrap();
                    for scalar in plan::indexed_scalars(instances) {
                        match scalar {
                            plan::Scalar::Num(n) => insert.execute(rusqlite::params![key, n, None::<String>, eid]),
                            plan::Scalar::Str(s) => insert.execute(rusqlite::params![key, None::<f64>, s, eid]),
                        }
                        .unwrap();
                        rows += 1;
                    }
                    rows += 1;
                }
            }
        }
        drop(insert);
        conn.pragma_update(None, "user_version", 12).unwrap();
        let duplicates: i64 = conn
            .query_row(
                "SELECT COUNT(*) - (SELECT COUNT(*) FROM (SELECT DISTINCT key, num, str, eid FROM facets)) FROM facets",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert!(duplicates > 0, "version 12 kept a scalar held twice as two rows ({rows} rows)");
    }
    let store = SqliteStore::open(dir.path()).unwrap();
    assert_eq!(answers(&store, &filters).await, before, "the converted store answers as before");
    let conn = rusqlite::Connection::open(dir.path().join("cityhub.sqlite")).unwrap();
    let version: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0)).unwrap();
    assert_eq!(version, crate::migrate::SCHEMA_VERSION);
    assert!(!crate::index::has_v12_facets(&conn).unwrap(), "the rowid table is gone");
    let old_indexes: i64 = conn
        .query_row(
            "SELECT COUNT(*) FROM sqlite_master WHERE name IN ('facets_num', 'facets_str', 'facets_v13')",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(old_indexes, 0);
    // Writes after the conversion keep the index right: values move, an entity goes.
    let replace = |e: Entity| -> Modifier { Box::new(move |_| Ok(Modified::entity(e))) };
    let mods = (0..N).step_by(5).map(|i| (format!("urn:ngsi-ld:E:{i:04}"), replace(body(i, i + 1)))).collect();
    store.modify("", mods).await.unwrap();
    modify_one(&store, "", "urn:ngsi-ld:E:0007", Box::new(|_| Ok(Modified::delete()))).await.unwrap();
    answers(&store, &filters).await;
}

/// A group saves each entity its modifiers changed once (`unsaved`); a temporal-API write queued
/// behind them in the same group reads and updates the entity in its table, so it must find the
/// modifiers' last state there, and the group's end must not write an older state over its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_temporal_write_behind_modifiers_in_one_group_sees_their_state() {
    use cityhub_storage::{TemporalQuery, TemporalWrite};
    const N: &str = "https://example.org/n";
    const M: &str = "https://example.org/m";
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path()).unwrap();
    modify_one(&store, "", "urn:c:t", create(counter("urn:c:t", 0))).await.unwrap();
    // Keeps the writer busy, so the two writes after it queue into one group.
    let busy: Vec<(String, Modifier)> =
        (0..300).map(|i| format!("urn:c:busy{i}")).map(|id| (id.clone(), create(counter(&id, 0)))).collect();
    let add_m: Modifier = Box::new(|current| {
        let mut e = current.ok_or_else(|| NgsiLdError::not_found("missing"))?;
        e.attrs.insert(M.into(), vec![Attribute::new(AttributeKind::Property, json!("kept"))]);
        Ok(Modified::entity(e))
    });
    let changes =
        vec![("urn:c:t".to_owned(), increment()), ("urn:c:t".to_owned(), add_m), ("urn:c:t".to_owned(), increment())];
    let mut observed = counter("urn:c:t", 42);
    observed.attrs.get_mut(N).unwrap()[0].observed_at = Some("2030-01-01T00:00:00Z".into());
    let write = TemporalWrite::AddInstances { entity: observed, must_exist: true };
    let (busy, changed, written) =
        tokio::join!(store.modify("", busy), store.modify("", changes), store.temporal_write("", "urn:c:t", write));
    assert!(busy.unwrap().iter().all(|r| r.is_ok()));
    let changed = changed.unwrap();
    assert_eq!(
        changed.iter().map(|c| value_of(c.as_ref().unwrap().after.as_ref().unwrap())).collect::<Vec<_>>(),
        [1, 1, 2]
    );
    written.unwrap().unwrap();
    let e = store.get_entity("", "urn:c:t").await.unwrap().unwrap();
    assert_eq!(value_of(&e), 42, "the temporal write's latest observation is the current n: {e:?}");
    assert_eq!(e.attrs[M][0].value, json!("kept"), "the modifiers' attribute survived the temporal write: {e:?}");
    let query = TemporalQuery {
        filter: EntityFilter { ids: vec!["urn:c:t".into()], ..Default::default() },
        per_attribute: 100,
        paging: Paging { offset: 0, limit: 10, count: false },
        ..Default::default()
    };
    let page = store.temporal_query("", &query).await.unwrap();
    let mut values: Vec<i64> = page.entities[0].attrs[N].iter().map(|i| i.attribute.value.as_i64().unwrap()).collect();
    values.sort_unstable();
    assert_eq!(values, [0, 1, 2, 42], "every change's instance and the temporal one");
    let found = store
        .query(
            "",
            &EntityFilter { attrs: vec![M.into()], ..Default::default() },
            Paging { offset: 0, limit: 10, count: true },
        )
        .await
        .unwrap();
    assert_eq!(found.total, Some(1), "the index rows follow the entity as stored");
}
