//! `cityhub serve --notifier-lease-ttl`: the notifier lease's ttl, refused out of range with a
//! message that says what to give.

mod common;

use std::process::{Command, Stdio};

#[test]
fn a_lease_ttl_out_of_range_is_refused_with_what_to_give() {
    let dir = tempfile::tempdir().unwrap();
    for ttl in ["0", "-1", "100000", "NaN"] {
        let out = Command::new(env!("CARGO_BIN_EXE_cityhub"))
            .args([
                "serve",
                "--listen",
                "127.0.0.1:0",
                "--log",
                "warn",
                &format!("--notifier-lease-ttl={ttl}"),
                "--data",
            ])
            .arg(dir.path().join("data"))
            .stdout(Stdio::null())
            .output()
            .expect("cityhub runs");
        assert!(!out.status.success(), "ttl {ttl} is refused");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains("--notifier-lease-ttl") && stderr.contains("from 0.1 to 86400"), "ttl {ttl}: {stderr}");
    }
}

#[test]
fn a_hub_with_a_short_lease_notifies_at_once() {
    // A ttl of 0.3 s renews every 0.1 s; the hub holds the lease from its start and notifies.
    let hub = common::Hub::start_with(&["--notifier-lease-ttl", "0.3"]);
    let receiver = common::Receiver::start();
    let sub = serde_json::json!({
        "id": "urn:ngsi-ld:Subscription:lease",
        "type": "Subscription",
        "entities": [{"type": "Room"}],
        "notification": {"endpoint": {"uri": receiver.url("/notify")}},
    });
    assert_eq!(hub.post("/subscriptions", &sub).status(), 201);
    let room =
        serde_json::json!({"id": "urn:ngsi-ld:Room:lease", "type": "Room", "n": {"type": "Property", "value": 1}});
    assert_eq!(hub.post("/entities", &room).status(), 201);
    let got = receiver.wait_for("urn:ngsi-ld:Subscription:lease", 1, std::time::Duration::from_secs(20));
    assert_eq!(got[0]["data"][0]["id"], "urn:ngsi-ld:Room:lease");
}
