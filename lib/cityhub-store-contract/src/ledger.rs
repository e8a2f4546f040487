//! The ledger cases (issue 22): every history row a backend writes comes with one leaf of its
//! tenant's log, in the same commit; leaves hash as `cityhub_ledger` says, the head's right edge
//! gives the root of all leaf hashes, every recorded instance is provable, and a refused
//! modification leaves no leaf.

use cityhub_ledger::merkle::{inclusion_proof, leaf_hash, root, verify_inclusion};
use cityhub_ledger::Frontier;
use cityhub_storage::{modify_one, DynStore, Paging, Store, TemporalQuery, TemporalWrite};
use ngsild_core::model::{Attribute, AttributeKind};
use ngsild_query::EntityFilter;
use serde_json::{json, Value};

use crate::support::*;

fn history_of(id: &str) -> TemporalQuery {
    TemporalQuery {
        filter: EntityFilter { ids: vec![id.into()], ..Default::default() },
        per_attribute: 1000,
        paging: Paging { offset: 0, limit: 100, count: true },
        ..Default::default()
    }
}

/// Every leaf of a tenant, checked against its head: hashes, root, proofs.
async fn checked_leaves(s: &dyn Store, tenant: &str) -> Vec<Value> {
    let head = s.ledger_head(tenant).await.unwrap();
    let leaves = s.ledger_leaves(tenant, 0, 10_000).await.unwrap();
    assert_eq!(leaves.len() as u64, head.size, "one leaf per index up to the head");
    let hashes = s.ledger_hashes(tenant, head.size).await.unwrap();
    for (i, leaf) in leaves.iter().enumerate() {
        assert_eq!(leaf.index, i as u64, "leaves come in index order from 0");
        assert_eq!(leaf.hash, leaf_hash(&leaf.bytes), "leaf {i}'s hash is that of its bytes");
        assert_eq!(hashes[i], leaf.hash);
    }
    let frontier = Frontier::restore(head.size, &head.frontier).expect("the head's right edge fits its size");
    assert_eq!(frontier.root(), root(&hashes), "the head's root is the root of every leaf");
    for i in 0..head.size {
        let proof = inclusion_proof(&hashes, i, head.size).unwrap();
        assert!(verify_inclusion(i, head.size, &hashes[i as usize], &proof, &frontier.root()));
    }
    leaves.iter().map(|l| serde_json::from_slice(&l.bytes).expect("a leaf is JSON")).collect()
}

pub async fn ledger_leaf_per_history_row(store: DynStore) {
    let s = store.as_ref();
    if let Err(cityhub_storage::StoreError::Unsupported(why)) = s.ledger_head("").await {
        eprintln!("this backend keeps no ledger ({why}): the ledger cases are skipped");
        return;
    }
    assert_eq!(s.ledger_head("").await.unwrap().size, 0, "an empty store has an empty log");
    modify_one(s, "", "urn:c:1", create(counter("urn:c:1", 1))).await.unwrap();
    modify_one(s, "", "urn:c:1", increment()).await.unwrap();
    assert!(modify_one(s, "", "urn:c:1", refuse()).await.is_err());
    modify_one(s, "", "urn:c:1", delete()).await.unwrap();
    let leaves = checked_leaves(s, "").await;
    let page = s.temporal_query("", &history_of("urn:c:1")).await.unwrap();
    let instances = &page.entities[0].attrs[&iri("n")];
    assert_eq!(leaves.len(), instances.len(), "one leaf per recorded instance, none for the refusal: {leaves:?}");
    for (leaf, instance) in leaves.iter().zip(instances) {
        assert_eq!(leaf["op"], "record");
        assert_eq!(leaf["tenant"], "");
        assert_eq!(leaf["entity"], "urn:c:1");
        assert_eq!(leaf["attr"], iri("n"));
        assert_eq!(leaf["instanceId"], instance.instance_id.as_str());
        assert_eq!(leaf["instance"]["value"].as_f64(), instance.attribute.value.as_f64());
        let found = s.ledger_find("", &instance.instance_id).await.unwrap();
        assert_eq!(found.len(), 1, "each instance names its leaf");
        assert_eq!(leaves[found[0] as usize]["instanceId"], instance.instance_id.as_str());
    }
    assert!(leaves[2]["deletedAt"].is_string(), "the deletion is a leaf too: {}", leaves[2]);

    // Another tenant has a log of its own.
    modify_one(s, "t2", "urn:c:2", create(counter("urn:c:2", 5))).await.unwrap();
    assert_eq!(s.ledger_head("t2").await.unwrap().size, 1);
    assert_eq!(s.ledger_head("").await.unwrap().size, 3, "the default tenant's log is unchanged");
    assert_eq!(checked_leaves(s, "t2").await[0]["tenant"], "t2");
}

pub async fn ledger_records_temporal_writes(store: DynStore) {
    let s = store.as_ref();
    if let Err(cityhub_storage::StoreError::Unsupported(why)) = s.ledger_head("").await {
        eprintln!("this backend keeps no ledger ({why}): the ledger cases are skipped");
        return;
    }
    let id = "urn:ngsi-ld:Station:L";
    let mut e = ngsild_core::Entity::new(id, vec![iri("Station")]);
    let obs = |v: f64, d: u32| {
        let mut a = Attribute::new(AttributeKind::Property, json!(v));
        a.observed_at = Some(format!("2026-01-{d:02}T00:00:00Z"));
        a
    };
    e.attrs.insert(iri("temperature"), vec![obs(1.0, 1), obs(2.0, 2), obs(3.0, 3)]);
    s.temporal_write("", id, TemporalWrite::AddInstances { entity: e, must_exist: false }).await.unwrap().unwrap();
    assert_eq!(s.ledger_head("").await.unwrap().size, 3);
    let page = s.temporal_query("", &history_of(id)).await.unwrap();
    let ids: Vec<String> = page.entities[0].attrs[&iri("temperature")].iter().map(|i| i.instance_id.clone()).collect();
    let replace = TemporalWrite::ReplaceInstance {
        attr: iri("temperature"),
        instance_id: ids[1].clone(),
        attribute: obs(9.0, 2),
    };
    s.temporal_write("", id, replace).await.unwrap().unwrap();
    let delete = TemporalWrite::DeleteInstance { attr: iri("temperature"), instance_id: ids[0].clone() };
    s.temporal_write("", id, delete).await.unwrap().unwrap();
    let leaves = checked_leaves(s, "").await;
    let ops: Vec<&str> = leaves.iter().map(|l| l["op"].as_str().unwrap()).collect();
    assert_eq!(ops, ["record", "record", "record", "replace", "remove"]);
    assert_eq!(leaves[3]["instanceId"], ids[1].as_str());
    assert_eq!(leaves[3]["instance"]["value"].as_f64(), Some(9.0));
    assert_eq!(leaves[4]["instanceId"], ids[0].as_str());
    assert_eq!(leaves[4]["instance"], Value::Null);
    assert_eq!(s.ledger_find("", &ids[1]).await.unwrap(), [1, 3], "a replaced instance names both its leaves");
    let latest: Vec<bool> = s.ledger_leaves("", 0, 100).await.unwrap().iter().map(|l| l.latest_of_instance).collect();
    assert_eq!(latest, [false, false, true, true, true]);
    // The whole entity's history goes: one removal leaf per instance still there.
    s.temporal_write("", id, TemporalWrite::DeleteEntity).await.unwrap().unwrap();
    let leaves = checked_leaves(s, "").await;
    assert_eq!(leaves.len(), 7, "{leaves:?}");
    assert!(leaves[5..].iter().all(|l| l["op"] == "remove" && l["instance"].is_null()));
}
