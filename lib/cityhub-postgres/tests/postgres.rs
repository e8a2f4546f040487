//! What only the PostgreSQL backend does: several handles (hubs) on one database, versioned
//! migrations, history partitions made on demand, documents read back as written.

use std::sync::Arc;

use cityhub_postgres::PostgresStore;
use cityhub_storage::{Store, TemporalQuery, TemporalWrite, TimeProperty};
use cityhub_store_contract::support::{counter, create, ctx, entity, iri, put};
use ngsild_core::model::{Attribute, AttributeKind};
use ngsild_core::ErrorKind;
use serde_json::json;

async fn open(url: &str) -> Arc<PostgresStore> {
    Arc::new(PostgresStore::connect_with(url, 4).await.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hubs_creating_one_entity_at_once_create_it_once() {
    let url = cityhub_pgtest::database();
    let hubs = [open(&url).await, open(&url).await];
    let mut tasks = Vec::new();
    for n in 0..16 {
        let hub = hubs[n % 2].clone();
        tasks.push(tokio::spawn(async move {
            let e = entity(json!({"id": "urn:ngsi-ld:Bin:1", "type": "Bin", "n": n}));
            cityhub_storage::modify_one(hub.as_ref(), "", "urn:ngsi-ld:Bin:1", create(e)).await
        }));
    }
    let mut created = Vec::new();
    for task in tasks {
        match task.await.unwrap() {
            Ok(change) => created.push(change.after.unwrap()),
            Err(e) => assert_eq!(e.kind, ErrorKind::AlreadyExists, "{e:?}"),
        }
    }
    assert_eq!(created.len(), 1, "exactly one creation wins the race between hubs");
    let stored = hubs[1].get_entity("", "urn:ngsi-ld:Bin:1").await.unwrap().unwrap();
    assert_eq!(stored, created[0], "the winner's entity is the one stored");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hubs_starting_together_migrate_once() {
    let url = cityhub_pgtest::database();
    let starts: Vec<_> = (0..3)
        .map(|_| {
            tokio::spawn({
                let url = url.clone();
                async move { PostgresStore::connect_with(&url, 2).await.map(|_| ()) }
            })
        })
        .collect();
    for start in starts {
        start.await.unwrap().unwrap();
    }
    let admin = cityhub_pgtest::connect(&url).await;
    let rows = admin.query("SELECT version FROM schema_migrations ORDER BY version", &[]).await.unwrap();
    let versions: Vec<i32> = rows.iter().map(|r| r.get(0)).collect();
    let expected: Vec<i32> = (1..=versions.len() as i32).collect();
    assert!(!versions.is_empty());
    assert_eq!(versions, expected, "each step recorded once, in order");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_of_a_newer_cityhub_is_refused() {
    let url = cityhub_pgtest::database();
    drop(open(&url).await);
    let admin = cityhub_pgtest::connect(&url).await;
    admin.execute("INSERT INTO schema_migrations (version, name) VALUES (999, 'from the future')", &[]).await.unwrap();
    let refused = PostgresStore::connect(&url).await.err().expect("a newer schema is refused");
    let why = refused.to_string();
    assert!(why.contains("schema version 999") && why.contains("newer cityhub"), "{why}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_partitions_are_made_on_demand() {
    let url = cityhub_pgtest::database();
    let store = open(&url).await;
    let recent = chrono::Utc::now() - chrono::Duration::days(40);
    let recent_at = recent.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let mut station = ngsild_core::Entity::new("urn:ngsi-ld:Station:1", vec![iri("Station")]);
    let observed = |value: i64, at: &str| {
        let mut a = Attribute::new(AttributeKind::Property, json!(value));
        a.observed_at = Some(at.to_owned());
        a
    };
    station.attrs.insert(iri("t"), vec![observed(1, "1990-06-01T00:00:00Z"), observed(2, &recent_at)]);
    let write = TemporalWrite::AddInstances { entity: station, must_exist: false };
    store.temporal_write("", "urn:ngsi-ld:Station:1", write).await.unwrap().unwrap();

    let admin = cityhub_pgtest::connect(&url).await;
    let month = format!("attr_history_p{}", recent.format("%Y%m"));
    let made: Option<String> = admin.query_one("SELECT to_regclass($1)::text", &[&month]).await.unwrap().get(0);
    assert_eq!(made.as_deref(), Some(month.as_str()), "the month of a recent observation has its partition");
    let in_month: i64 = admin.query_one(&format!("SELECT count(*) FROM {month}"), &[]).await.unwrap().get(0);
    let in_default: i64 = admin.query_one("SELECT count(*) FROM attr_history_default", &[]).await.unwrap().get(0);
    assert_eq!((in_month, in_default), (1, 1), "1990 is outside the partitioned years: the default partition");

    let mut q = TemporalQuery { per_attribute: 100, time_property: TimeProperty::ObservedAt, ..Default::default() };
    q.filter.ids = vec!["urn:ngsi-ld:Station:1".into()];
    q.paging.limit = 10;
    let page = store.temporal_query("", &q).await.unwrap();
    let values: Vec<_> = page.entities[0].attrs[&iri("t")].iter().map(|i| i.attribute.value.clone()).collect();
    assert_eq!(values, [json!(1), json!(2)], "one history across partitions, in time order");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn documents_read_back_in_member_order() {
    let url = cityhub_pgtest::database();
    let store = open(&url).await;
    let e = entity(json!({"id": "urn:ngsi-ld:Bin:1", "type": "Bin", "zeta": 1, "alpha": 2, "mu": 3}));
    cityhub_storage::modify_one(store.as_ref(), "", "urn:ngsi-ld:Bin:1", create(e)).await.unwrap();
    let back = store.get_entity("", "urn:ngsi-ld:Bin:1").await.unwrap().unwrap();
    let names: Vec<&str> = back.attrs.keys().map(|k| k.rsplit('/').next().unwrap()).collect();
    assert_eq!(names, ["zeta", "alpha", "mu"], "json keeps the order the attributes were written in");
}

/// The facet rows of one entity, without its id: (attr, type, num, str), sorted.
async fn facets_of(admin: &tokio_postgres::Client, id: &str) -> Vec<(String, String, Option<f64>, Option<String>)> {
    let rows = admin
        .query("SELECT attr, type, num, str FROM facets WHERE id = $1 ORDER BY attr, type, num, str", &[&id])
        .await
        .unwrap();
    rows.iter().map(|r| (r.get(0), r.get(1), r.get(2), r.get(3))).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn index_rows_kept_by_difference_are_those_written_afresh() {
    let url = cityhub_pgtest::database();
    let store = open(&url).await;
    let admin = cityhub_pgtest::connect(&url).await;
    let ds = |n: u32| format!("urn:ngsi-ld:Dataset:{n}");
    // One value changing, one added and one gone, values held twice (across datasetIds), an
    // attribute gone and back, a number turned to text, and the type changing.
    let states = [
        json!({"id": "urn:ngsi-ld:Hive:a", "type": "Hive", "w": 1, "s": "ok", "t": [
            {"type": "Property", "value": 5, "datasetId": ds(1)}, {"type": "Property", "value": 6, "datasetId": ds(2)}]}),
        json!({"id": "urn:ngsi-ld:Hive:a", "type": "Hive", "w": 2, "s": "ok", "t": [
            {"type": "Property", "value": 6, "datasetId": ds(1)}, {"type": "Property", "value": 7, "datasetId": ds(2)}]}),
        json!({"id": "urn:ngsi-ld:Hive:a", "type": "Hive", "w": 2, "s": "warning", "t": [
            {"type": "Property", "value": 7, "datasetId": ds(1)}, {"type": "Property", "value": 7, "datasetId": ds(2)}]}),
        json!({"id": "urn:ngsi-ld:Hive:a", "type": "Hive", "w": "heavy", "t": [
            {"type": "Property", "value": 7, "datasetId": ds(1)}, {"type": "Property", "value": 8, "datasetId": ds(2)}]}),
        json!({"id": "urn:ngsi-ld:Hive:a", "type": "Hive", "w": 3, "s": "ok", "t": {"type": "Property", "value": 8}}),
        json!({"id": "urn:ngsi-ld:Hive:a", "type": ["Hive", "Box"], "w": 4, "s": "ok", "t": {"type": "Property", "value": 8}}),
        json!({"id": "urn:ngsi-ld:Hive:a", "type": ["Hive", "Box"], "w": 5, "s": "new", "t": {"type": "Property", "value": 9}}),
    ];
    for (n, state) in states.iter().enumerate() {
        cityhub_storage::modify_one(store.as_ref(), "", "urn:ngsi-ld:Hive:a", put(entity(state.clone())))
            .await
            .unwrap();
        let mut fresh = state.clone();
        let fresh_id = format!("urn:ngsi-ld:Hive:fresh{n}");
        fresh["id"] = json!(fresh_id);
        cityhub_storage::modify_one(store.as_ref(), "", &fresh_id, create(entity(fresh))).await.unwrap();
        let kept = facets_of(&admin, "urn:ngsi-ld:Hive:a").await;
        assert!(!kept.is_empty());
        assert_eq!(kept, facets_of(&admin, &fresh_id).await, "state {n}: {state}");
    }
    let hits = |q: &str| {
        let store = store.clone();
        let q = q.to_owned();
        async move {
            let filter = cityhub_storage::EntityFilter {
                q: Some(ngsild_query::QExpr::parse(&q, &ctx()).unwrap()),
                ..Default::default()
            };
            let page = store.query("", &filter, cityhub_storage::Paging { offset: 0, limit: 100, count: false }).await;
            page.unwrap().entities.into_iter().map(|e| e.id).filter(|id| id.ends_with(":a")).count()
        }
    };
    assert_eq!((hits("w==5").await, hits("w==4").await, hits("t==9").await, hits("t==8").await), (1, 0, 1, 0));
}

/// The values of `n` in the history of `id`, as `hub` reads it.
async fn history_of_n(hub: &PostgresStore, id: &str) -> Vec<serde_json::Value> {
    let mut q = TemporalQuery { per_attribute: 100, time_property: TimeProperty::ObservedAt, ..Default::default() };
    q.filter.ids = vec![id.into()];
    q.paging.limit = 10;
    let page = hub.temporal_query("", &q).await.unwrap();
    let Some(entity) = page.entities.first() else { return Vec::new() };
    entity.attrs.get(&iri("n")).map(|i| i.iter().map(|i| i.attribute.value.clone()).collect()).unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_series_deleted_at_one_hub_is_not_reused_by_another_hubs_memory() {
    let url = cityhub_pgtest::database();
    let (a, b) = (open(&url).await, open(&url).await);
    let admin = cityhub_pgtest::connect(&url).await;
    let id = "urn:ngsi-ld:Counter:1";
    let put_at = |hub: &Arc<PostgresStore>, n: i64| {
        let hub = hub.clone();
        async move { cityhub_storage::modify_one(hub.as_ref(), "", id, put(counter(id, n))).await.unwrap() }
    };
    // B's second write names the series from what its first one learnt.
    put_at(&b, 1).await;
    put_at(&b, 2).await;
    assert_eq!(history_of_n(&a, id).await, [json!(1), json!(2)]);

    // A drops the series; B writes at once, before any notification could have reached it.
    let drop_n = TemporalWrite::DeleteAttribute { attr: iri("n"), dataset_id: None, all: true };
    a.temporal_write("", id, drop_n).await.unwrap().unwrap();
    put_at(&b, 3).await;
    put_at(&b, 4).await;
    assert_eq!(history_of_n(&a, id).await, [json!(3), json!(4)], "B recorded into the series A made anew");

    // The same when A deletes the whole temporal representation.
    a.temporal_write("", id, TemporalWrite::DeleteEntity).await.unwrap().unwrap();
    put_at(&b, 5).await;
    put_at(&b, 6).await;
    assert_eq!(history_of_n(&a, id).await, [json!(5), json!(6)], "B recorded into the entity's new series");
    assert_eq!(history_of_n(&b, id).await, [json!(5), json!(6)]);

    let orphans: i64 = admin
        .query_one(
            "SELECT count(*) FROM attr_history h
             WHERE NOT EXISTS (SELECT 1 FROM attr_series s WHERE s.tenant = h.tenant AND s.sid = h.sid)",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(orphans, 0, "no history row names a series that is gone");
    let series: i64 =
        admin.query_one("SELECT count(*) FROM attr_series WHERE entity_id = $1", &[&id]).await.unwrap().get(0);
    assert_eq!(series, 1, "one series of n");
}
