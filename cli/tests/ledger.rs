//! Black-box tests of the tamper-evident history (issue 22): every temporal instance provable
//! against a signed checkpoint, consistency between checkpoints, the proofs' refusals, export and
//! verify finding tampering (a changed value, a deleted or reordered leaf, an instance edited in
//! the database), and a witness refusing a checkpoint inconsistent with one it co-signed.

mod common;

use std::path::Path;
use std::process::Command;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use cityhub_ledger::canon::canonical;
use cityhub_ledger::merkle::{leaf_hash, verify_consistency, verify_inclusion, Hash};
use cityhub_ledger::note::{Checkpoint, Note, Verifier};
use common::*;
use reqwest::Method;
use serde_json::{json, Value};

const ID: &str = "urn:ngsi-ld:AirQualityObserved:L1";

fn get_text(hub: &Hub, path: &str) -> String {
    let response = hub.client.get(format!("{}{path}", hub.base)).send().unwrap();
    assert_eq!(response.status(), 200, "GET {path}");
    response.text().unwrap()
}

fn get_json_root(hub: &Hub, path: &str) -> (u16, Value) {
    json_of(hub.client.get(format!("{}{path}", hub.base)).send().unwrap())
}

fn hash_of(v: &Value) -> Hash {
    B64.decode(v.as_str().unwrap()).unwrap().try_into().unwrap()
}

fn hashes_of(v: &Value) -> Vec<Hash> {
    v.as_array().unwrap().iter().map(hash_of).collect()
}

/// The hub's key and its current checkpoint, checked.
fn checkpoint(hub: &Hub) -> (Verifier, Checkpoint, String) {
    let key = Verifier::parse(&get_text(hub, "/ledger/key")).unwrap();
    let note = get_text(hub, "/ledger/checkpoint");
    let (cp, _) = Checkpoint::open(&note, &key).expect("the checkpoint is signed by the hub's key");
    (key, cp, note)
}

fn write_history(hub: &Hub) {
    let body = json!({"id": ID, "type": "AirQualityObserved",
        "pm25": {"type": "Property", "value": 10.5, "observedAt": "2026-11-01T08:00:00Z"},
        "level": {"type": "Property", "value": "good"}});
    assert_eq!(hub.post("/entities", &body).status(), 201);
    for v in [12.25, 1e21, 7.0] {
        let patch = json!({"pm25": {"type": "Property", "value": v, "observedAt": "2026-11-01T09:00:00Z"}});
        let r = hub.send_json(Method::PATCH, &format!("/entities/{ID}/attrs"), &patch).send().unwrap();
        assert_eq!(r.status(), 204);
    }
    let r = hub.delete(&format!("/entities/{ID}/attrs/level")).send().unwrap();
    assert_eq!(r.status(), 204);
}

#[test]
fn every_temporal_instance_is_provable_and_checkpoints_are_consistent() {
    // The ledger is the embedded store's (PostgreSQL keeps none yet).
    if !sqlite_only("every_temporal_instance_is_provable_and_checkpoints_are_consistent") {
        return;
    }
    let hub = Hub::start_with(&["--ledger", "on", "--ledger-checkpoint-secs", "0"]);
    let (_, empty, _) = checkpoint(&hub);
    assert_eq!(empty.size, 0);
    write_history(&hub);
    let (_, cp, _) = checkpoint(&hub);
    let (status, temporal) = hub.get_json(&format!("/temporal/entities/{ID}"));
    assert_eq!(status, 200, "{temporal}");
    let mut instances = Vec::new();
    for attr in ["pm25", "level"] {
        for i in temporal[attr].as_array().unwrap() {
            instances.push(i.clone());
        }
    }
    assert_eq!(instances.len() as u64, cp.size, "one leaf per temporal instance: {temporal}");
    for instance in &instances {
        let id = instance["instanceId"].as_str().unwrap();
        let (status, proof) = get_json_root(&hub, &format!("/ledger/proof/inclusion?instance={id}&size={}", cp.size));
        assert_eq!(status, 200, "{proof}");
        let index = proof["leafIndex"].as_u64().unwrap();
        let lines = get_text(&hub, &format!("/ledger/leaves?from={index}&limit=1"));
        let line: Value = serde_json::from_str(lines.lines().next().unwrap()).unwrap();
        let leaf = &line["leaf"];
        assert_eq!(leaf["instanceId"], id);
        assert_eq!(leaf["entity"], ID);
        if instance["value"] != "urn:ngsi-ld:null" {
            assert_eq!(leaf["instance"]["value"].as_f64(), instance["value"].as_f64(), "{leaf}");
        }
        let hash = leaf_hash(&canonical(leaf));
        assert_eq!(hash, hash_of(&proof["leafHash"]), "the leaf hashes to the proven hash");
        assert!(verify_inclusion(index, cp.size, &hash, &hashes_of(&proof["hashes"]), &cp.root), "instance {id}");
    }

    // More writes; the new checkpoint extends the old one.
    let patch = json!({"pm25": {"type": "Property", "value": 3, "observedAt": "2026-11-01T10:00:00Z"}});
    hub.send_json(Method::PATCH, &format!("/entities/{ID}/attrs"), &patch).send().unwrap();
    let (_, later, _) = checkpoint(&hub);
    assert_eq!(later.size, cp.size + 1);
    let (status, proof) = get_json_root(&hub, &format!("/ledger/proof/consistency?from={}&to={}", cp.size, later.size));
    assert_eq!(status, 200, "{proof}");
    assert!(verify_consistency(cp.size, later.size, &cp.root, &later.root, &hashes_of(&proof["hashes"])));

    // Refusals say what to change.
    let r = hub.client.get(format!("{}/ledger/proof/inclusion?leaf=0&size=999", hub.base)).send().unwrap();
    let body = assert_problem(r, 400, "BadRequestData");
    assert!(body["detail"].as_str().unwrap().contains("GET /ledger/checkpoint"), "{body}");
    let r = hub.client.get(format!("{}/ledger/proof/inclusion?size=1", hub.base)).send().unwrap();
    let body = assert_problem(r, 400, "BadRequestData");
    assert!(body["detail"].as_str().unwrap().contains("leaf=<index> or instance=<instanceId>"), "{body}");
    let r = hub
        .client
        .get(format!("{}/ledger/proof/inclusion?instance=urn:ngsi-ld:Instance:999", hub.base))
        .send()
        .unwrap();
    let body = assert_problem(r, 404, "ResourceNotFound");
    assert!(body["detail"].as_str().unwrap().contains("urn:ngsi-ld:Instance:999"), "{body}");
    let r = hub.client.get(format!("{}/ledger/proof/consistency?from=x", hub.base)).send().unwrap();
    let body = assert_problem(r, 400, "BadRequestData");
    assert!(body["detail"].as_str().unwrap().contains("not \"x\""), "{body}");
    let r = hub.client.get(format!("{}/ledger/proof/consistency?from=1&to=0", hub.base)).send().unwrap();
    assert_problem(r, 400, "BadRequestData");

    // Another tenant has its own log and origin.
    let r = hub
        .send_json(
            Method::POST,
            "/entities",
            &json!({"id": "urn:x:1", "type": "T", "p": {"type": "Property", "value": 1}}),
        )
        .header("NGSILD-Tenant", "t2")
        .send()
        .unwrap();
    assert_eq!(r.status(), 201);
    let note = hub.client.get(format!("{}/ledger/checkpoint", hub.base)).header("NGSILD-Tenant", "t2").send().unwrap();
    let cp2 = Checkpoint::parse(&Note::parse(&note.text().unwrap()).unwrap().text).unwrap();
    assert_eq!(cp2.size, 1);
    assert!(cp2.origin.ends_with("/tenant/t2"), "{}", cp2.origin);
}

fn cityhub(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_cityhub")).args(args).output().unwrap()
}

fn verify(export: &Path, cp: &Path, key: &str) -> (bool, String) {
    let out =
        cityhub(&["ledger", "verify", export.to_str().unwrap(), "--checkpoint", cp.to_str().unwrap(), "--key", key]);
    (out.status.success(), format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)))
}

#[test]
fn verify_names_the_first_bad_leaf() {
    if !sqlite_only("verify_names_the_first_bad_leaf") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut hub = Hub::spawn(&data, &["--ledger", "on", "--ledger-checkpoint-secs", "0"]);
    write_history(&hub);
    let (key, cp, note) = checkpoint(&hub);
    hub.terminate();
    let cp_file = dir.path().join("cp.txt");
    std::fs::write(&cp_file, &note).unwrap();
    let key = key.to_string();
    let export = dir.path().join("leaves.ndjson");
    let out = cityhub(&["ledger", "export", "--data", data.to_str().unwrap(), "--to", export.to_str().unwrap()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let (ok, said) = verify(&export, &cp_file, &key);
    assert!(ok, "{said}");
    assert!(said.contains(&format!("the {} leaves", cp.size)), "{said}");
    let lines: Vec<String> = std::fs::read_to_string(&export).unwrap().lines().map(str::to_owned).collect();
    let tampered = dir.path().join("tampered.ndjson");
    let write = |lines: &[String]| std::fs::write(&tampered, lines.join("\n") + "\n").unwrap();

    // A changed value.
    let mut changed = lines.clone();
    let mut line: Value = serde_json::from_str(&changed[2]).unwrap();
    line["leaf"]["instance"]["value"] = json!(99);
    changed[2] = line.to_string();
    write(&changed);
    let (ok, said) = verify(&tampered, &cp_file, &key);
    assert!(!ok && said.contains("leaf 2: its content differs"), "{said}");

    // A deleted leaf.
    let mut deleted = lines.clone();
    deleted.remove(1);
    write(&deleted);
    let (ok, said) = verify(&tampered, &cp_file, &key);
    assert!(!ok && said.contains("leaf 1: line 2 holds leaf 2"), "{said}");

    // Two leaves swapped.
    let mut swapped = lines.clone();
    swapped.swap(3, 4);
    write(&swapped);
    let (ok, said) = verify(&tampered, &cp_file, &key);
    assert!(!ok && said.contains("leaf 3: line 4 holds leaf 4"), "{said}");

    // The last leaf cut off.
    write(&lines[..lines.len() - 1]);
    let (ok, said) = verify(&tampered, &cp_file, &key);
    assert!(!ok && said.contains(&format!("leaf {}: missing", lines.len() - 1)), "{said}");

    // Another hub's key.
    let other = Verifier::parse("PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW").unwrap();
    let (ok, said) = verify(&export, &cp_file, &other.to_string());
    assert!(!ok && said.contains("not signed by PeterNeumann"), "{said}");

    // An instance edited in the database, behind the hub's back: the export shows it as stored.
    let db = rusqlite::Connection::open(data.join("cityhub.sqlite")).unwrap();
    let edited = db
        .execute("UPDATE attr_history SET doc = json_set(doc, '$.value', 11.0) WHERE seq = (SELECT MIN(seq) FROM attr_history)", [])
        .unwrap();
    assert_eq!(edited, 1);
    drop(db);
    let out = cityhub(&["ledger", "export", "--data", data.to_str().unwrap(), "--to", export.to_str().unwrap()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let (ok, said) = verify(&export, &cp_file, &key);
    assert!(!ok && said.contains("leaf 0: its content differs"), "{said}");
}

#[test]
fn a_witness_refuses_a_rewritten_history() {
    if !sqlite_only("a_witness_refuses_a_rewritten_history") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let key_file = dir.path().join("a.key");
    let key_arg = key_file.to_str().unwrap().to_owned();
    let a_args = [
        "--listen",
        listen.as_str(),
        "--ledger",
        "on",
        "--ledger-key",
        key_arg.as_str(),
        "--ledger-checkpoint-secs",
        "0",
    ];
    let mut a = Hub::spawn(&dir.path().join("a1"), &a_args);
    write_history(&a);
    let (_, cp, _) = checkpoint(&a);
    let witness = Hub::start_with(&["--witness-of", &a.base, "--ledger-checkpoint-secs", "0"]);
    let witness_key = Verifier::parse(&get_text(&witness, "/ledger/key")).unwrap();
    let cosigner = Verifier { alg: cityhub_ledger::note::ALG_COSIGNATURE_V1, ..witness_key.clone() };
    let cosigner = Verifier::parse(&cosigner_key(&cosigner)).unwrap();
    let path = format!("/ledger/witnessed?origin={}", cp.origin);
    let mut cosigned = None;
    for _ in 0..300 {
        let (status, _) = get_json_root(&witness, &path);
        if status == 200 {
            let note = Note::parse(&get_text(&witness, &path)).unwrap();
            if Checkpoint::parse(&note.text).unwrap().size == cp.size {
                cosigned = Some(note);
                break;
            }
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let cosigned = cosigned.expect("the witness co-signs the hub's checkpoint");
    assert!(cosigned.signed_by(&cosigner), "the witness's cosignature verifies: {cosigned}");
    let a_key = Verifier::parse(&get_text(&a, "/ledger/key")).unwrap();
    assert!(cosigned.signed_by(&a_key), "the hub's own signature stays");

    // Hub A comes back on another history (a data directory with different writes) with the same
    // key and address: its checkpoint is signed, but not consistent with the co-signed one.
    a.terminate();
    let a2 = Hub::spawn(&dir.path().join("a2"), &a_args);
    for n in 0..(cp.size + 2) {
        let body =
            json!({"id": format!("urn:ngsi-ld:Other:{n}"), "type": "Other", "v": {"type": "Property", "value": n}});
        assert_eq!(a2.post("/entities", &body).status(), 201);
    }
    let mut refusal = None;
    for _ in 0..300 {
        let (_, refusals) = get_json_root(&witness, "/ledger/witness/refusals");
        if let Some(r) = refusals.as_array().and_then(|a| a.first()) {
            refusal = Some(r.clone());
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let refusal = refusal.expect("the witness refuses the rewritten history");
    assert_eq!(refusal["origin"], cp.origin.as_str());
    assert!(refusal["reason"].as_str().unwrap().contains("not consistent with the co-signed one"), "{refusal}");
    // What it co-signed before stays what it offers.
    let note = Note::parse(&get_text(&witness, &path)).unwrap();
    assert_eq!(Checkpoint::parse(&note.text).unwrap(), Checkpoint::parse(&cosigned.text).unwrap());
    drop(a2);
}

/// A cosigner's verifier key text from its fields (alg 0x04, the key hash computed for it).
fn cosigner_key(v: &Verifier) -> String {
    let hash = cityhub_ledger::note::key_hash(&v.name, v.alg, &v.public);
    let mut key = vec![v.alg];
    key.extend_from_slice(&v.public);
    format!("{}+{hash:08x}+{}", v.name, B64.encode(key))
}

/// A hub that keeps no ledger — the default `--ledger off`, or a PostgreSQL store, which has none
/// yet — says so on every ledger read, as the client's request the hub cannot serve (422
/// OperationNotSupported, a detail naming what would keep one), never as a failure of its own.
#[test]
fn a_hub_without_a_ledger_says_so_on_every_ledger_read() {
    let hub = Hub::start();
    let created = hub
        .post("/entities", &json!({"id": ID, "type": "AirQualityObserved", "pm25": {"type": "Property", "value": 3}}));
    assert_eq!(created.status(), 201);
    for path in [
        "/ledger/checkpoint",
        "/ledger/leaves",
        "/ledger/proof/inclusion?leaf=0&size=1",
        "/ledger/proof/consistency?from=1&to=1",
    ] {
        let (status, body) = get_json_root(&hub, path);
        assert_eq!(status, 422, "{path}: {body}");
        assert_eq!(body["type"], "https://uri.etsi.org/ngsi-ld/errors/OperationNotSupported", "{path}: {body}");
        let detail = body["detail"].as_str().unwrap_or_default();
        assert!(detail.contains("keeps no ledger") && detail.contains("--ledger on"), "{path}: {detail}");
    }
    // The verifier key is the hub's own, ledger or not (a witness of other hubs signs with it).
    assert!(get_text(&hub, "/ledger/key").contains('+'));
}

/// The size of the checkpoint the hub keeps for the default tenant, read from its database
/// beside the running hub (not through GET /ledger/checkpoint, which may sign one itself).
fn kept_checkpoint_size(data: &Path) -> Option<u64> {
    let flags = rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY;
    let db = rusqlite::Connection::open_with_flags(data.join("cityhub.sqlite"), flags).ok()?;
    let sql = "SELECT doc FROM records WHERE tenant = '' AND kind = 'ledgerCheckpoint' AND id = 'latest'";
    let doc: String = db.query_row(sql, [], |r| r.get(0)).ok()?;
    serde_json::from_str::<Value>(&doc).ok()?["size"].as_u64()
}

/// Waits (bounded) until the kept checkpoint covers `size` leaves; answers the last size seen.
fn kept_after_waiting(data: &Path, size: u64) -> Option<u64> {
    let mut seen = None;
    for _ in 0..150 {
        seen = kept_checkpoint_size(data);
        if seen == Some(size) {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    seen
}

fn post_counters(hub: &Hub, from: u64, to: u64) {
    for n in from..to {
        let body =
            json!({"id": format!("urn:ngsi-ld:Counter:{n}"), "type": "Counter", "n": {"type": "Property", "value": n}});
        assert_eq!(hub.post("/entities", &body).status(), 201);
    }
}

#[test]
fn checkpoints_are_signed_in_the_background_every_n_leaves_or_seconds() {
    if !sqlite_only("checkpoints_are_signed_in_the_background_every_n_leaves_or_seconds") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    // Every 4 leaves (an hour is never reached here): one leaf per new entity.
    let data = dir.path().join("leaves");
    let hub =
        Hub::spawn(&data, &["--ledger", "on", "--ledger-checkpoint-secs", "3600", "--ledger-checkpoint-leaves", "4"]);
    post_counters(&hub, 0, 4);
    assert_eq!(kept_after_waiting(&data, 4), Some(4), "4 leaves: signed with no read asking for it");
    post_counters(&hub, 4, 6);
    let (_, cp, _) = checkpoint(&hub);
    assert_eq!(cp.size, 4, "2 leaves more, and the checkpoint is young: the kept one is served");
    post_counters(&hub, 6, 8);
    assert_eq!(kept_after_waiting(&data, 8), Some(8), "4 leaves more: signed again");
    let (_, cp, _) = checkpoint(&hub);
    assert_eq!(cp.size, 8);
    drop(hub);

    // Every second, with no leaf bound.
    let data = dir.path().join("secs");
    let hub =
        Hub::spawn(&data, &["--ledger", "on", "--ledger-checkpoint-secs", "1", "--ledger-checkpoint-leaves", "0"]);
    post_counters(&hub, 0, 1);
    assert_eq!(kept_after_waiting(&data, 1), Some(1), "a grown log gets its checkpoint within the period, unread");
    drop(hub);
}
