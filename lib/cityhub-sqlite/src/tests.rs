//! Tests of the embedded backend through the `Store` contract.

use std::sync::Arc;

use cityhub_storage::{modify_one, Modifier, Paging, Store, StoredContext};
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
        None => Ok(Some(entity)),
    })
}

fn increment() -> Modifier {
    Box::new(|current| {
        let mut e = current.ok_or_else(|| NgsiLdError::not_found("missing"))?;
        let n = &mut e.attrs.get_mut("https://example.org/n").unwrap()[0].value;
        *n = json!(n.as_i64().unwrap() + 1);
        Ok(Some(e))
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
    let plan = |filter: &EntityFilter| {
        let (sql, args) = crate::schema::candidate_sql("", filter);
        let conn = rusqlite::Connection::open(dir.path().join("cityhub.sqlite")).unwrap();
        conn.execute_batch("ANALYZE").unwrap();
        let mut stmt = conn.prepare(&format!("EXPLAIN QUERY PLAN {sql}")).unwrap();
        let rows = stmt.query_map(rusqlite::params_from_iter(args), |r| r.get::<_, String>(3)).unwrap();
        rows.collect::<Result<Vec<_>, _>>().unwrap().join("\n")
    };
    let q_plan = plan(&type_and_q);
    assert!(q_plan.contains("attr_values_num") || q_plan.contains("attr_values_str"), "type+q plan:\n{q_plan}");
    assert!(!q_plan.contains("SCAN entities"), "type+q must not scan entities:\n{q_plan}");
    let geo_plan = plan(&near);
    assert!(geo_plan.contains("VIRTUAL TABLE INDEX"), "near plan uses the R*Tree:\n{geo_plan}");
    assert!(!geo_plan.contains("SCAN entities"), "near must not scan entities:\n{geo_plan}");

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
