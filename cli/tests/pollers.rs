//! Open-data pollers (`/cityhub/v1/pollers`) against a loopback source shaped like Korea's
//! data.go.kr Open API (`response.body.items.item`, JSON and XML, written here): entities
//! upserted each tick, no history for unchanged values, a failing source shown in the status.

mod common;

use std::io::{Read, Write};
use std::net::TcpListener;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use serde_json::{json, Value};

/// A loopback HTTP source answering every GET with the answer set last.
struct Source {
    base: String,
    answer: Arc<Mutex<(u16, String, String)>>,
    hits: Arc<AtomicUsize>,
}

impl Source {
    fn start() -> Source {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let answer = Arc::new(Mutex::new((200, "application/json".to_owned(), "{}".to_owned())));
        let hits = Arc::new(AtomicUsize::new(0));
        let (a, h) = (answer.clone(), hits.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                let mut head = Vec::new();
                let mut byte = [0u8; 1];
                while !head.ends_with(b"\r\n\r\n") && head.len() < 65536 {
                    match stream.read(&mut byte) {
                        Ok(1) => head.push(byte[0]),
                        _ => break,
                    }
                }
                h.fetch_add(1, Ordering::SeqCst);
                let (status, content_type, body) = a.lock().unwrap().clone();
                let reply = format!(
                    "HTTP/1.1 {status} X\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = stream.write_all(reply.as_bytes());
            }
        });
        Source { base, answer, hits }
    }

    fn set(&self, status: u16, content_type: &str, body: String) {
        *self.answer.lock().unwrap() = (status, content_type.to_owned(), body);
    }
}

/// An answer of data.go.kr's air quality API (getCtprvnRltmMesureDnsty), as JSON.
fn air_json(jongno: &str, jung: &str) -> String {
    json!({"response": {
        "header": {"resultCode": "00", "resultMsg": "NORMAL_CODE"},
        "body": {
            "items": {"item": [
                {"stationName": "Jongno", "pm10Value": jongno, "dataTime": "2024-05-01 09:00"},
                {"stationName": "Jung", "pm10Value": jung, "dataTime": "2024-05-01 09:00"},
            ]},
            "numOfRows": 2, "pageNo": 1, "totalCount": 2
        }
    }})
    .to_string()
}

fn air_xml(jongno: &str) -> String {
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<response><header><resultCode>00</resultCode><resultMsg>NORMAL_CODE</resultMsg></header>\
         <body><items><item><stationName>Jongno</stationName><pm10Value>{jongno}</pm10Value><dataTime>2024-05-01 09:00</dataTime></item></items>\
         <numOfRows>1</numOfRows><pageNo>1</pageNo><totalCount>1</totalCount></body></response>"
    )
}

fn poller(id: &str, url: &str, format: &str) -> Value {
    json!({
        "id": id,
        "url": url,
        "format": format,
        "interval": 0.5,
        "retries": 1,
        "mapping": {
            "type": "AirQualityObserved",
            "id": "stationName",
            "items": "response.body.items.item",
            "observedAt": "dataTime",
            "timezone": "+09:00",
            "nullValues": ["-"],
            "attributes": [{"name": "pm10", "from": "pm10Value", "valueType": "number", "unitCode": "GQ"}]
        }
    })
}

fn pollers_url(hub: &Hub, path: &str) -> String {
    format!("{}/cityhub/v1/pollers{path}", hub.base)
}

fn create(hub: &Hub, body: &Value) -> reqwest::blocking::Response {
    hub.client
        .post(pollers_url(hub, ""))
        .header("Content-Type", "application/json")
        .body(body.to_string())
        .send()
        .unwrap()
}

fn shown(hub: &Hub, id: &str) -> Value {
    let (status, body) = json_of(hub.client.get(pollers_url(hub, &format!("/{id}"))).send().unwrap());
    assert_eq!(status, 200, "{body}");
    body
}

/// Waits (at most 60 s) until the poller's status satisfies `done`; answers it.
fn wait_for(hub: &Hub, id: &str, what: &str, done: impl Fn(&Value) -> bool) -> Value {
    for _ in 0..600 {
        let status = shown(hub, id)["status"].clone();
        if done(&status) {
            return status;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("poller {id}: {what} did not happen within 60 s; status {}", shown(hub, id)["status"]);
}

fn pm10_instances(hub: &Hub, station: &str) -> usize {
    let (status, t) =
        hub.get_json(&format!("/temporal/entities/urn:ngsi-ld:AirQualityObserved:{station}?attrs=pm10&lastN=50"));
    assert_eq!(status, 200, "{t}");
    match &t["pm10"] {
        Value::Array(a) => a.len(),
        Value::Object(_) => 1,
        _ => 0,
    }
}

#[test]
fn a_poller_upserts_each_tick_writes_no_history_for_unchanged_values_and_shows_a_failing_source() {
    let source = Source::start();
    source.set(200, "application/json", air_json("41", "30"));
    let hub = Hub::start_with(&["--poller-min-interval", "0.5"]);
    let url = format!(
        "{}/B552584/ArpltnInforInqireSvc/getCtprvnRltmMesureDnsty?serviceKey=SECRET&returnType=json",
        source.base
    );
    let response = create(&hub, &poller("air-seoul", &url, "json"));
    assert_eq!(response.status().as_u16(), 201);
    assert_eq!(response.headers()["Location"], "/cityhub/v1/pollers/air-seoul");

    let status = wait_for(&hub, "air-seoul", "a first run", |s| s["runs"].as_u64() >= Some(1));
    let run = &status["lastRun"];
    assert_eq!(
        (run["outcome"].as_str(), run["records"].as_u64(), run["stored"].as_u64()),
        (Some("ok"), Some(2), Some(2)),
        "{status}"
    );
    let (_, jongno) = hub.get_json("/entities/urn:ngsi-ld:AirQualityObserved:Jongno");
    assert_eq!(
        jongno,
        json!({
            "id": "urn:ngsi-ld:AirQualityObserved:Jongno",
            "type": "AirQualityObserved",
            "pm10": {"type": "Property", "value": 41, "unitCode": "GQ", "observedAt": "2024-05-01T00:00:00.000000Z"},
        })
    );

    // Further ticks of the same answer store nothing: no new history.
    let status = wait_for(&hub, "air-seoul", "two more runs", |s| s["runs"].as_u64() >= Some(3));
    assert_eq!(status["lastRun"]["unchanged"], 2, "{status}");
    assert_eq!(status["lastRun"]["stored"], 0, "{status}");
    assert_eq!((pm10_instances(&hub, "Jongno"), pm10_instances(&hub, "Jung")), (1, 1));

    // A changed value is upserted at the next tick; `-` (no value) leaves the stored one.
    source.set(200, "application/json", air_json("45", "-"));
    wait_for(&hub, "air-seoul", "the new value", |s| s["lastRun"]["stored"] == 1);
    let (_, jongno) = hub.get_json("/entities/urn:ngsi-ld:AirQualityObserved:Jongno");
    assert_eq!(jongno["pm10"]["value"], 45);
    let (_, jung) = hub.get_json("/entities/urn:ngsi-ld:AirQualityObserved:Jung");
    assert_eq!(jung["pm10"]["value"], 30);
    assert_eq!((pm10_instances(&hub, "Jongno"), pm10_instances(&hub, "Jung")), (2, 1));

    // A failing source: retried once, then shown failed; the entities stay as they were.
    source.set(500, "text/plain", "maintenance".into());
    let status = wait_for(&hub, "air-seoul", "a failed run", |s| s["lastRun"]["outcome"] == "failed");
    let run = &status["lastRun"];
    let error = run["error"].as_str().unwrap();
    assert_eq!(
        error,
        format!(
            "GET {}/B552584/ArpltnInforInqireSvc/getCtprvnRltmMesureDnsty answered 500 Internal Server Error (after 2 attempts)",
            source.base
        )
    );
    assert!(!error.contains("SECRET"), "the query (an API key) is not shown");
    assert_eq!(run["attempts"], 2);
    assert!(status["failures"].as_u64() >= Some(1) && status["lastSuccess"].is_string(), "{status}");
    assert_eq!(hub.get_json("/entities/urn:ngsi-ld:AirQualityObserved:Jongno").1["pm10"]["value"], 45);
    assert!(source.hits.load(Ordering::SeqCst) >= 5);

    // The listing shows the poller as given, with its status.
    let (_, all) = json_of(hub.client.get(pollers_url(&hub, "")).send().unwrap());
    assert_eq!(all.as_array().unwrap().len(), 1);
    assert_eq!(all[0]["url"], url);
    assert_eq!(all[0]["status"]["lastRun"]["outcome"], "failed");
}

#[test]
fn an_xml_source_shaped_like_data_go_kr_is_polled() {
    let source = Source::start();
    source.set(200, "application/xml", air_xml("52"));
    let hub = Hub::start_with(&["--poller-min-interval", "0.5"]);
    let url = format!("{}/getCtprvnRltmMesureDnsty?returnType=xml", source.base);
    assert_eq!(create(&hub, &poller("air-xml", &url, "xml")).status().as_u16(), 201);
    let status = wait_for(&hub, "air-xml", "a run", |s| s["runs"].as_u64() >= Some(1));
    assert_eq!(status["lastRun"]["outcome"], "ok", "{status}");
    let (_, jongno) = hub.get_json("/entities/urn:ngsi-ld:AirQualityObserved:Jongno");
    assert_eq!(
        jongno["pm10"],
        json!({"type": "Property", "value": 52, "unitCode": "GQ", "observedAt": "2024-05-01T00:00:00.000000Z"})
    );

    // A record that does not map is rejected with its number and reason; the others are stored.
    source.set(200, "application/xml", air_xml("high"));
    let status = wait_for(&hub, "air-xml", "a rejection", |s| s["lastRun"]["rejected"] == 1);
    assert_eq!(
        status["lastRun"]["rejections"],
        json!([{"record": 1, "error": "column \"pm10Value\": \"high\" is not a number"}])
    );
    assert_eq!(status["lastRun"]["outcome"], "ok");
}

#[test]
fn pollers_are_checked_and_managed_over_the_api_and_kept_across_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut hub = Hub::spawn(&data, &["--no-pollers"]);
    let url = "http://127.0.0.1:9/api";
    let mut bad = poller("p1", url, "json");
    bad["interval"] = json!(1);
    let body = assert_problem(create(&hub, &bad), 400, "BadRequestData");
    assert_eq!(
        body["detail"],
        "interval 1 is out of range: give seconds from 10 (this hub's --poller-min-interval) to 604800"
    );
    // A source the egress rules refuse (link-local: the cloud metadata address) is refused at
    // once, its key-bearing query not repeated.
    let mut metadata = poller("p1", "http://169.254.169.254/latest?serviceKey=SECRET", "json");
    metadata["interval"] = json!(60);
    let body = assert_problem(create(&hub, &metadata), 400, "BadRequestData");
    let detail = body["detail"].as_str().unwrap();
    assert!(detail.starts_with("the poller's url http://169.254.169.254/latest"), "{detail}");
    assert!(detail.contains("egress rules") && !detail.contains("SECRET"), "{detail}");
    let mut p1 = poller("p1", url, "json");
    p1["interval"] = json!(60);
    assert_eq!(create(&hub, &p1).status().as_u16(), 201);
    let body = assert_problem(create(&hub, &p1), 409, "AlreadyExists");
    assert_eq!(body["detail"], "poller p1 already exists");
    let body = assert_problem(hub.client.get(pollers_url(&hub, "/nope")).send().unwrap(), 404, "ResourceNotFound");
    assert_eq!(body["detail"], "no poller nope in this tenant");

    let mut edited = p1.clone();
    edited.as_object_mut().unwrap().remove("id");
    edited["interval"] = json!(120);
    let put = |body: &Value, id: &str| {
        hub.client
            .put(pollers_url(&hub, &format!("/{id}")))
            .header("Content-Type", "application/json")
            .body(body.to_string())
            .send()
            .unwrap()
    };
    assert_eq!(put(&edited, "p1").status().as_u16(), 204);
    assert_eq!(shown(&hub, "p1")["interval"], 120);
    assert_eq!(shown(&hub, "p1")["status"], json!({"runs": 0, "failures": 0, "lastRun": null, "lastSuccess": null}));
    let body = assert_problem(put(&p1, "p2"), 400, "BadRequestData");
    assert_eq!(body["detail"], "the body's id \"p1\" is not the path's \"p2\"");
    assert_problem(put(&edited, "p2"), 404, "ResourceNotFound");

    let mut p2 = poller("p2", url, "csv");
    p2["interval"] = json!(60);
    assert_eq!(create(&hub, &p2).status().as_u16(), 201);
    assert_eq!(hub.client.delete(pollers_url(&hub, "/p2")).send().unwrap().status().as_u16(), 204);
    assert_problem(hub.client.delete(pollers_url(&hub, "/p2")).send().unwrap(), 404, "ResourceNotFound");

    hub.terminate();
    let hub = Hub::spawn(&data, &["--no-pollers"]);
    let (_, all) = json_of(hub.client.get(pollers_url(&hub, "")).send().unwrap());
    let ids: Vec<&str> = all.as_array().unwrap().iter().map(|p| p["id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["p1"], "kept in the store across a restart");
    assert_eq!(all[0]["interval"], 120);
}

#[test]
fn of_two_hubs_on_one_store_only_the_lease_holder_runs_a_poller() {
    // Hubs share a store on PostgreSQL only; this runs there whatever CITYHUB_TEST_STORE says.
    let source = Source::start();
    source.set(200, "application/json", air_json("41", "30"));
    let db = cityhub_pgtest::database();
    let (a_dir, b_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let args = ["--poller-min-interval", "0.5"];
    let a = Hub::spawn_with_store(a_dir.path(), Some(db.clone()), &args);
    let b = Hub::spawn_with_store(b_dir.path(), Some(db), &args);
    assert_eq!(create(&a, &poller("shared", &format!("{}/api", source.base), "json")).status().as_u16(), 201);
    let mut runners = std::collections::BTreeSet::new();
    let mut last = 0;
    for _ in 0..600 {
        let status = shown(&b, "shared")["status"].clone();
        let runs = status["runs"].as_u64().unwrap_or(0);
        if runs > last {
            last = runs;
            runners.insert(status["lastRun"]["ranBy"].as_str().unwrap_or_default().to_owned());
        }
        if last >= 6 {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(last >= 6, "six runs within 30 s; saw {last}");
    assert_eq!(runners.len(), 1, "one hub ran them all: {runners:?}");
    assert!(runners.iter().all(|r| r.starts_with("hub-")), "{runners:?}");
}
