//! Acknowledged writes survive a crash (SIGKILL), and the hub stops cleanly on SIGTERM.

mod common;

use std::sync::Arc;

use common::*;
use serde_json::json;

#[test]
fn acknowledged_writes_survive_kill_9() {
    const WRITERS: usize = 4;
    const PER_WRITER: usize = 50;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut hub = Hub::spawn(&data, &[]);
    let hub_ref = Arc::new(hub.base.clone());
    let handles: Vec<_> = (0..WRITERS)
        .map(|w| {
            let base = hub_ref.clone();
            std::thread::spawn(move || {
                let client = http_client();
                let mut acknowledged = Vec::new();
                for i in 0..PER_WRITER {
                    let id = format!("urn:ngsi-ld:Counter:{w}-{i}");
                    let body = json!({"id": id, "type": "Counter", "n": i});
                    let response = client
                        .post(format!("{base}/ngsi-ld/v1/entities"))
                        .header("Content-Type", "application/json")
                        .body(body.to_string())
                        .send()
                        .expect("request sent");
                    assert_eq!(response.status(), 201);
                    acknowledged.push(id);
                }
                acknowledged
            })
        })
        .collect();
    let acknowledged: Vec<String> = handles.into_iter().flat_map(|h| h.join().unwrap()).collect();
    assert_eq!(acknowledged.len(), WRITERS * PER_WRITER);
    hub.kill9();

    let hub = Hub::spawn(&data, &[]);
    for id in &acknowledged {
        let (status, body) = hub.get_json(&format!("/entities/{id}"));
        assert_eq!(status, 200, "{id} was acknowledged before the crash");
        assert_eq!(body["id"], id.as_str());
    }
    let response = hub.get("/entities?type=Counter&count=true&limit=1").send().unwrap();
    assert_eq!(response.headers()["ngsild-results-count"], (WRITERS * PER_WRITER).to_string());
}

#[test]
fn sigterm_stops_the_hub_cleanly() {
    let mut hub = Hub::start();
    assert_eq!(hub.post("/entities", &json!({"id": "urn:x:1", "type": "T"})).status(), 201);
    let status = hub.terminate();
    assert!(status.success(), "exit status after SIGTERM: {status:?}");
}
