//! The agent and the registry on a real store (SQLite): provisioning follows the store's events
//! and survives a reopen; many messages queued at once are all stored, each reading in order.

use std::sync::Arc;

use cityhub_ingest::agent::{Agent, Message};
use cityhub_ingest::payload::Format;
use cityhub_ingest::provision::read_group;
use cityhub_ingest::registry::{Limits, Registry};
use cityhub_ingest::status::{SourceKey, StatusBook};
use cityhub_storage::DynStore;
use serde_json::json;

fn store(dir: &std::path::Path) -> DynStore {
    Arc::new(cityhub_sqlite::SqliteStore::open(dir).unwrap())
}

fn group(apikey: &str, tenant: &str) -> cityhub_ingest::provision::ServiceGroup {
    let mut g = read_group(json!({"apikey": apikey, "entity_type": "Sensor",
        "attributes": [{"object_id": "s", "name": "sequence", "type": "Number"}]}))
    .unwrap();
    g.service = tenant.to_owned();
    g
}

#[tokio::test]
async fn a_second_registry_on_the_store_follows_and_a_reopened_one_reloads() {
    let dir = tempfile::tempdir().unwrap();
    let s = store(dir.path());
    let writer = Registry::open(s.clone(), Limits::default()).await.unwrap();
    let follower = Registry::open(s.clone(), Limits::default()).await.unwrap();
    writer.create_groups(vec![group("k1", "city")]).await.unwrap();
    let mut seen = false;
    for _ in 0..200 {
        if follower.group("k1").is_some() {
            seen = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert!(seen, "the follower learns the group from the store's event");
    writer.delete_group("city", "k1").await.unwrap();
    writer.create_groups(vec![group("k2", "city")]).await.unwrap();
    drop((writer, follower));
    drop(s);
    let reopened = Registry::open(store(dir.path()), Limits::default()).await.unwrap();
    assert!(reopened.group("k1").is_none());
    assert_eq!(reopened.group("k2").unwrap().service, "city", "provisioning survives a reopen");
}

#[tokio::test]
async fn many_queued_messages_are_all_stored_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let s = store(dir.path());
    let registry = Registry::open(s.clone(), Limits::default()).await.unwrap();
    registry.create_groups(vec![group("k", "t")]).await.unwrap();
    let status = Arc::new(StatusBook::new(1000, 10));
    let agent = Agent::start(s.clone(), registry, status.clone());
    let mut last = None;
    for seq in 0..600u32 {
        let device = format!("d{}", seq % 30);
        let payload = format!("s|{seq}");
        let message = Message {
            apikey: "k",
            device_id: &device,
            format: Some(Format::UltraLight),
            single: None,
            payload: payload.as_bytes(),
            source: "test".into(),
            tenant: None,
        };
        last = agent.submit(message, seq == 599).await.unwrap();
    }
    last.unwrap().await.unwrap().unwrap();
    let counters = status.get(&SourceKey::new("t", "service", "k")).unwrap();
    assert_eq!((counters.received, counters.stored, counters.rejected), (600, 600, 0));
    for d in 0..30u32 {
        let entity = s.get_entity("t", &format!("urn:ngsi-ld:Sensor:d{d}")).await.unwrap().unwrap();
        let seq = &entity.attrs["https://uri.etsi.org/ngsi-ld/default-context/sequence"][0];
        let value = serde_json::to_value(seq).unwrap();
        assert_eq!(value["value"], json!(570 + d), "the last reading of each device is its state: {value}");
    }
}
