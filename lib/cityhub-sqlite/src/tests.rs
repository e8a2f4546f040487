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
