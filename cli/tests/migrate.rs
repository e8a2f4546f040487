//! `cityhub migrate`, black-box: a hub on the embedded store with data of every kind (entities
//! in two tenants, indexed by type, value and location; history from updates and from the
//! temporal API; subscriptions with their delivery status and a pending notification;
//! a registration; a hosted context) is stopped and copied into a new PostgreSQL database; a hub
//! on the copy answers what the original answered, body for body, and delivers the pending
//! notification. The source is SQLite and the target PostgreSQL whatever `CITYHUB_TEST_STORE`
//! says. Every wait is bounded.

mod common;

use std::process::Command;
use std::time::Duration;

use common::*;
use reqwest::Method;
use serde_json::{json, Value};

const WAIT: Duration = Duration::from_secs(20);

fn station(id: &str, n: i64, lon: f64) -> Value {
    json!({
        "id": id, "type": "Station",
        "n": {"type": "Property", "value": n},
        "location": {"type": "GeoProperty", "value": {"type": "Point", "coordinates": [lon, 37.5]}},
    })
}

fn created(response: reqwest::blocking::Response) {
    let status = response.status();
    assert!(status == 201 || status == 204, "{status}: {}", response.text().unwrap_or_default());
}

fn subscription(id: &str, uri: &str) -> Value {
    json!({
        "id": id, "type": "Subscription",
        "entities": [{"type": "Station"}], "watchedAttributes": ["n"],
        "notification": {"endpoint": {"uri": uri, "accept": "application/json"}},
    })
}

/// The requests whose answers must be the same before and after the copy.
fn reads(context: &str) -> Vec<(String, Option<&'static str>)> {
    let near = "/entities?type=Station&georel=near;maxDistance==3000&geometry=Point&coordinates=[127.0,37.5]";
    [
        ("/entities?type=Station&options=sysAttrs".to_owned(), None),
        ("/entities?type=Station&q=n>2".to_owned(), None),
        (near.to_owned(), None),
        ("/entities?type=Station&options=sysAttrs".to_owned(), Some("harbour")),
        ("/temporal/entities/urn:ngsi-ld:Station:1".to_owned(), None),
        ("/temporal/entities/urn:ngsi-ld:Station:t".to_owned(), None),
        ("/temporal/entities?type=Station&timerel=after&timeAt=2000-01-01T00:00:00Z".to_owned(), None),
        ("/subscriptions/urn:ngsi-ld:Subscription:delivered".to_owned(), None),
        ("/csourceRegistrations?type=Remote".to_owned(), None),
        (context.to_owned(), None),
        ("/types/Station".to_owned(), None),
    ]
    .into_iter()
    .collect()
}

fn answers(hub: &Hub, reads: &[(String, Option<&'static str>)]) -> Vec<(u16, Value)> {
    reads
        .iter()
        .map(|(path, tenant)| {
            let mut request = hub.get(path);
            if let Some(tenant) = tenant {
                request = request.header("NGSILD-Tenant", *tenant);
            }
            json_of(request.send().unwrap())
        })
        .collect()
}

fn migrate(from: &std::path::Path, to: &str) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_cityhub"))
        .args(["migrate", "--from"])
        .arg(from)
        .args(["--to", to, "--batch", "2"])
        .env_remove("CITYHUB_STORE")
        .output()
        .expect("cityhub migrate runs")
}

#[test]
fn a_migrated_store_answers_as_the_original_did() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("sqlite");
    let mut source = Hub::spawn_with_store(&data, None, &[]);

    let receiver = Receiver::start();
    created(source.post("/subscriptions", &subscription("urn:ngsi-ld:Subscription:delivered", &receiver.url("/n"))));
    let down = free_port();
    let pending = subscription("urn:ngsi-ld:Subscription:pending", &format!("http://127.0.0.1:{down}/n"));
    created(source.post("/subscriptions", &pending));
    created(source.post("/entities", &station("urn:ngsi-ld:Station:1", 1, 127.0)));
    created(source.post("/entities", &station("urn:ngsi-ld:Station:2", 5, 129.0)));
    created(source.send_json(Method::PATCH, "/entities/urn:ngsi-ld:Station:1/attrs", &json!({"n": 3})).send().unwrap());
    let harbour = source
        .send_json(Method::POST, "/entities", &station("urn:ngsi-ld:Station:h", 9, 126.0))
        .header("NGSILD-Tenant", "harbour")
        .send()
        .unwrap();
    created(harbour);
    let reading = |n: i64, at: &str| json!({"type": "Property", "value": n, "observedAt": at});
    let temporal = json!({"id": "urn:ngsi-ld:Station:t", "type": "Station",
        "n": [reading(10, "2026-11-01T08:00:00Z"), reading(20, "2026-11-01T09:00:00Z")]});
    created(source.post("/temporal/entities", &temporal));
    let registration = json!({
        "id": "urn:ngsi-ld:ContextSourceRegistration:m", "type": "ContextSourceRegistration",
        "information": [{"entities": [{"type": "Remote"}]}], "endpoint": "http://127.0.0.1:9",
    });
    created(source.post("/csourceRegistrations", &registration));
    let document = json!({"@context": {"Kiosk": "https://city.example/Kiosk"}});
    let response = source.send_json(Method::POST, "/jsonldContexts", &document).send().unwrap();
    assert_eq!(response.status(), 201);
    let context = response.headers()["location"].to_str().unwrap().trim_start_matches("/ngsi-ld/v1").to_owned();
    // The delivered subscription's notifications (three creations, one of them through the
    // temporal API, and one update) are in.
    assert_eq!(receiver.wait_for("urn:ngsi-ld:Subscription:delivered", 4, WAIT).len(), 4);
    std::thread::sleep(Duration::from_millis(300));

    let reads = reads(&context);
    let before = answers(&source, &reads);
    for ((path, _), (status, body)) in reads.iter().zip(&before) {
        assert_eq!(*status, 200, "{path}: {body}");
    }
    let (_, pending_before) = source.get_json("/subscriptions/urn:ngsi-ld:Subscription:pending");
    assert!(source.terminate().success());

    let db = cityhub_pgtest::database();
    let output = migrate(&data, &db);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&output.stderr));
    // The count table: 4 entities in two tenants, histories of the same 4, 2 subscriptions,
    // 1 registration, 1 context, 1 tenant besides the default one, pending notifications.
    let table: std::collections::BTreeMap<&str, (u64, u64)> = stdout
        .lines()
        .filter_map(|line| match line.split_whitespace().collect::<Vec<_>>()[..] {
            [name, a, b] => Some((name, (a.parse().ok()?, b.parse().ok()?))),
            _ => None,
        })
        .collect();
    for (section, n) in
        [("entities", 4), ("history", 4), ("subscriptions", 2), ("records", 1), ("contexts", 1), ("tenants", 1)]
    {
        assert_eq!(table.get(section), Some(&(n, n)), "{section} in:\n{stdout}");
    }
    assert!(table["outbox"].0 >= 1 && table["outbox"].0 == table["outbox"].1, "{stdout}");
    assert!(stdout.contains("the copy holds the same items as the source"), "{stdout}");
    // A second copy into the same database is refused: nothing is written twice.
    let again = migrate(&data, &db);
    assert!(!again.status.success());
    let why = String::from_utf8_lossy(&again.stderr);
    assert!(why.contains("the --to database is not empty"), "{why}");

    let target = Hub::spawn_with_store(&dir.path().join("pg"), Some(db), &[]);
    let after = answers(&target, &reads);
    for (((path, tenant), a), b) in reads.iter().zip(&before).zip(&after) {
        assert_eq!(a, b, "{path} (tenant {tenant:?}) answers differently after the copy");
    }
    // The pending notification came along with its subscription, and is delivered from the copy
    // once its endpoint is up.
    let (_, pending_after) = target.get_json("/subscriptions/urn:ngsi-ld:Subscription:pending");
    assert_eq!(pending_after["entities"], pending_before["entities"]);
    assert_eq!(pending_after["notification"]["endpoint"], pending_before["notification"]["endpoint"]);
    let late = Receiver::start_on(down);
    let got = late.wait_for("urn:ngsi-ld:Subscription:pending", 4, WAIT);
    assert_eq!(got.len(), 4, "{got:?}");
    assert!(got.iter().all(|n| n["data"][0]["type"] == "Station"), "{got:?}");
}
