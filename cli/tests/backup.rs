//! `cityhub backup` / `cityhub restore` (issue 21): a backup taken while batches of related
//! updates are being written restores to a hub where no batch is half applied and every
//! entity's history ends at its current state; a corrupted file or a non-empty target is refused
//! with nothing written. On PostgreSQL too (`CITYHUB_TEST_STORE=postgres`).

mod common;

use std::path::Path;
use std::process::{Command, Output};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use common::{store_is_postgres, test_store, Hub};
use serde_json::{json, Value};

const ENTITIES: usize = 12;
const MAX_ROUNDS: u64 = 120;

fn cityhub(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_cityhub")).args(args).output().expect("cityhub runs")
}

/// One round: every entity's `round` set to `k` in one batch, with an observedAt of its own.
fn batch(k: u64) -> Value {
    let at = format!("2026-01-01T00:{:02}:{:02}Z", k / 60, k % 60);
    Value::Array(
        (0..ENTITIES)
            .map(|i| {
                json!({
                    "id": format!("urn:ngsi-ld:Counter:{i:02}"), "type": "Counter",
                    "round": {"type": "Property", "value": k, "observedAt": at}
                })
            })
            .collect(),
    )
}

/// Where a backup is taken from and restored to: `--data DIR` or `--store URL`.
fn target_args(data: &Path, store: &Option<String>) -> Vec<String> {
    match store {
        Some(url) => vec!["--store".into(), url.clone()],
        None => vec!["--data".into(), data.display().to_string()],
    }
}

#[test]
fn a_backup_under_write_load_restores_whole_batches_and_a_corrupted_file_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let hub = Hub::start();
    let store = test_store(&hub.data);
    assert_eq!(hub.post("/entityOperations/upsert", &batch(0)).status().as_u16(), 201);

    // Bounded write load: rounds of related updates, one batch each, until the backup is done.
    let (done, rounds) = (Arc::new(AtomicBool::new(false)), Arc::new(AtomicU64::new(0)));
    let writer = {
        let (done, rounds, base, client) = (done.clone(), rounds.clone(), hub.base.clone(), hub.client.clone());
        std::thread::spawn(move || {
            let mut after_done = 0;
            for k in 1..=MAX_ROUNDS {
                let url = format!("{base}/ngsi-ld/v1/entityOperations/upsert?options=update");
                let status =
                    client.post(url).header("Content-Type", "application/json").body(batch(k).to_string()).send();
                assert_eq!(status.unwrap().status().as_u16(), 204, "round {k}");
                rounds.store(k, Ordering::SeqCst);
                if done.load(Ordering::SeqCst) {
                    after_done += 1;
                    if after_done >= 5 {
                        break;
                    }
                }
            }
        })
    };
    while rounds.load(Ordering::SeqCst) < 10 && !writer.is_finished() {
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    let file = dir.path().join("hub.backup");
    let mut args = vec!["backup".to_owned()];
    args.extend(target_args(&hub.data, &store));
    args.extend(["--to".to_owned(), file.display().to_string()]);
    let out = cityhub(&args.iter().map(String::as_str).collect::<Vec<_>>());
    let at_backup = rounds.load(Ordering::SeqCst);
    done.store(true, Ordering::SeqCst);
    writer.join().unwrap();
    assert!(out.status.success(), "backup failed: {}", String::from_utf8_lossy(&out.stderr));
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(said.contains("sha256"), "{said}");
    let written = rounds.load(Ordering::SeqCst);
    eprintln!("backup taken while round {at_backup} was acknowledged; the writer went on to round {written}");

    // The restored store: a new directory (and on PostgreSQL a new database).
    let restored = dir.path().join("restored");
    let restored_store = store.as_ref().map(|_| {
        std::fs::create_dir_all(&restored).unwrap();
        let url = cityhub_pgtest::database();
        std::fs::write(restored.join("test-store-url"), &url).unwrap();
        url
    });
    let restore_args = |force: bool| {
        let mut args = vec!["restore".to_owned(), "--from".into(), file.display().to_string()];
        match &restored_store {
            Some(url) => args.extend(["--store".to_owned(), url.clone()]),
            None => args.extend(["--data".to_owned(), restored.display().to_string()]),
        }
        if force {
            args.push("--force".into());
        }
        args
    };
    let run = |args: Vec<String>| cityhub(&args.iter().map(String::as_str).collect::<Vec<_>>());

    // A flipped byte in the payload: refused, nothing written.
    let good = std::fs::read(&file).unwrap();
    let mut bad = good.clone();
    let middle = good.len() - (good.len() - good.iter().position(|b| *b == b'\n').unwrap()) / 2;
    bad[middle] ^= 0x01;
    std::fs::write(&file, &bad).unwrap();
    let out = run(restore_args(false));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "a corrupted backup was restored");
    assert!(stderr.contains("is corrupted") && stderr.contains("nothing was restored"), "{stderr}");
    if restored_store.is_none() {
        assert!(!restored.exists(), "the refused restore wrote {}", restored.display());
    }
    std::fs::write(&file, &good).unwrap();

    let out = run(restore_args(false));
    assert!(out.status.success(), "restore failed: {}", String::from_utf8_lossy(&out.stderr));

    // Once a store is there, another restore is refused unless forced.
    let out = run(restore_args(false));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && stderr.contains("not empty") && stderr.contains("--force"), "{stderr}");
    let out = run(restore_args(true));
    assert!(out.status.success(), "a forced restore failed: {}", String::from_utf8_lossy(&out.stderr));

    drop(hub);
    // Every instance in one answer (rounds are bounded by MAX_ROUNDS).
    let hub = Hub::spawn_with_store(&restored, restored_store.clone(), &["--temporal-instance-limit", "1000"]);
    let (status, entities) = hub.get_json("/entities?type=Counter&limit=100");
    assert_eq!(status, 200, "{entities}");
    let entities = entities.as_array().unwrap();
    assert_eq!(entities.len(), ENTITIES, "{entities:?}");
    let round = entities[0]["round"]["value"].as_u64().unwrap();
    // No batch half applied: every entity is at the same round.
    for e in entities {
        assert_eq!(e["round"]["value"].as_u64(), Some(round), "a batch was half applied in the backup: {entities:?}");
    }
    assert!(round >= 10 && round <= written, "round {round} (backup during rounds {at_backup}..{written})");
    // Every entity's history ends at its current state: rounds 0..=round, the last one current.
    for e in entities {
        let id = e["id"].as_str().unwrap();
        let (status, temporal) = hub.get_json(&format!("/temporal/entities/{id}?attrs=round"));
        assert_eq!(status, 200, "{temporal}");
        let instances = temporal["round"].as_array().unwrap_or_else(|| panic!("{temporal}"));
        let mut values: Vec<u64> = instances.iter().map(|i| i["value"].as_u64().unwrap()).collect();
        values.sort_unstable();
        assert_eq!(values, (0..=round).collect::<Vec<_>>(), "{id}'s history does not end at its current round {round}");
    }
    if store_is_postgres() {
        eprintln!("restored on PostgreSQL");
    }
}

#[test]
fn backup_and_restore_refuse_what_is_not_a_store_or_a_backup() {
    let dir = tempfile::tempdir().unwrap();
    let empty = dir.path().join("nothing");
    let out = cityhub(&["backup", "--data", empty.to_str().unwrap(), "--to", dir.path().join("b").to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no hub store there"), "{:?}", out);

    let not_a_backup = dir.path().join("notes.txt");
    std::fs::write(&not_a_backup, "hello\n").unwrap();
    let target = dir.path().join("target");
    let out = cityhub(&["restore", "--from", not_a_backup.to_str().unwrap(), "--data", target.to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("is not a cityhub backup"), "{:?}", out);
    assert!(!target.exists());
}
