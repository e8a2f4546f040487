//! Black-box tests of `orderBy` on entity and temporal queries.

mod common;

use common::*;
use serde_json::{json, Value};

/// Five stations; station 5 has no pm25 at all.
fn seed(hub: &Hub) {
    let station = |n: u32, pm25: Option<f64>, reliability: f64, district: &str| {
        let mut e = json!({
            "id": format!("urn:ngsi-ld:AirQualityObserved:{n}"), "type": "AirQualityObserved",
            "address": {"type": "Property", "value": {"district": district, "city": "Seoul"}},
            "stationName": {"type": "Property", "value": format!("station {n}")}
        });
        if let Some(v) = pm25 {
            e["pm25"] = json!({"type": "Property", "value": v,
                "reliability": {"type": "Property", "value": reliability}});
        }
        e
    };
    let batch = json!([
        station(3, Some(40.0), 0.5, "Gangnam"),
        station(1, Some(8.0), 0.9, "Jongno"),
        station(5, None, 0.0, "Jongno"),
        station(2, Some(22.5), 0.7, "Jongno"),
        station(4, Some(12.0), 0.9, "Gangnam"),
    ]);
    assert_eq!(hub.post("/entityOperations/create", &batch).status(), 201);
}

fn in_order(body: &Value) -> Vec<u32> {
    body.as_array()
        .unwrap_or_else(|| panic!("an array: {body}"))
        .iter()
        .map(|e| e["id"].as_str().unwrap().rsplit(':').next().unwrap().parse().unwrap())
        .collect()
}

fn order(hub: &Hub, path: &str) -> Vec<u32> {
    let (status, body) = hub.get_json(path);
    assert_eq!(status, 200, "{path}: {body}");
    in_order(&body)
}

#[test]
fn entity_queries_follow_order_by() {
    let hub = Hub::start();
    seed(&hub);
    let q = |o: &str| order(&hub, &format!("/entities?type=AirQualityObserved&orderBy={o}"));
    // Ascending is the default; an entity without the attribute goes last in either direction.
    assert_eq!(q("pm25"), [1, 4, 2, 3, 5]);
    assert_eq!(q("pm25;asc"), [1, 4, 2, 3, 5]);
    assert_eq!(q("pm25;desc"), [3, 2, 4, 1, 5]);
    assert_eq!(q("id;desc"), [5, 4, 3, 2, 1]);
    // A sub-attribute; equal values keep id order.
    assert_eq!(q("pm25.reliability;desc"), [1, 4, 2, 3, 5]);
    // A member of a compound value, then a second key.
    assert_eq!(q("address[district],pm25;desc"), [3, 4, 2, 1, 5]);
    // keyValues orders the same way.
    assert_eq!(order(&hub, "/entities?type=AirQualityObserved&orderBy=pm25;desc&format=keyValues"), [3, 2, 4, 1, 5]);
    // Creation time: an entity created after the batch comes last, first when descending.
    let later = json!({"id": "urn:ngsi-ld:AirQualityObserved:0", "type": "AirQualityObserved"});
    assert_eq!(hub.post("/entities", &later).status(), 201);
    assert_eq!(q("createdAt").last(), Some(&0));
    assert_eq!(q("createdAt;desc").first(), Some(&0));
}

#[test]
fn ordered_queries_page_through_the_whole_order() {
    let hub = Hub::start();
    seed(&hub);
    let mut seen = Vec::new();
    for offset in [0, 2, 4] {
        let response = hub
            .get(&format!("/entities?type=AirQualityObserved&orderBy=pm25;desc&limit=2&offset={offset}&count=true"))
            .send()
            .unwrap();
        assert_eq!(response.headers()["ngsild-results-count"], "5");
        let (status, body) = json_of(response);
        assert_eq!(status, 200, "{body}");
        seen.extend(in_order(&body));
    }
    assert_eq!(seen, [3, 2, 4, 1, 5]);
    // A posted Query orders by the orderBy of its URL.
    let query = json!({"type": "Query", "entities": [{"type": "AirQualityObserved"}]});
    let (status, body) = json_of(hub.post("/entityOperations/query?orderBy=pm25;desc&limit=3", &query));
    assert_eq!(status, 200, "{body}");
    assert_eq!(in_order(&body), [3, 2, 4]);
    // A filter and an order together: only Jongno, highest first.
    assert_eq!(
        order(&hub, "/entities?type=AirQualityObserved&q=address[district]==%22Jongno%22&orderBy=pm25;desc"),
        [2, 1, 5]
    );
}

#[test]
fn temporal_queries_follow_order_by() {
    let hub = Hub::start();
    seed(&hub);
    let base =
        "/temporal/entities?type=AirQualityObserved&timerel=after&timeAt=1970-01-01T00:00:00Z&timeproperty=createdAt";
    assert_eq!(order(&hub, &format!("{base}&orderBy=pm25;desc")), [3, 2, 4, 1, 5]);
    assert_eq!(order(&hub, &format!("{base}&orderBy=stationName;desc")), [5, 4, 3, 2, 1]);
    assert_eq!(order(&hub, &format!("{base}&orderBy=pm25&limit=2&offset=2")), [2, 3]);
}

#[test]
fn an_invalid_order_by_says_what_to_write() {
    let hub = Hub::start();
    seed(&hub);
    let problem = assert_problem(
        hub.get("/entities?type=AirQualityObserved&orderBy=pm25;up").send().unwrap(),
        400,
        "BadRequestData",
    );
    let detail = problem["detail"].as_str().unwrap();
    assert!(detail.contains("orderBy") && detail.contains("asc or desc"), "{detail}");
    let problem = assert_problem(
        hub.get(
            "/temporal/entities?type=AirQualityObserved&timerel=after&timeAt=1970-01-01T00:00:00Z&orderBy=pm25,,id",
        )
        .send()
        .unwrap(),
        400,
        "BadRequestData",
    );
    assert!(problem["detail"].as_str().unwrap().contains("invalid orderBy: at position 5"), "{problem}");
}

/// A hub holding `(id, pm25)` stations.
fn city(stations: &[(&str, f64)]) -> Hub {
    let hub = Hub::start_with(&["--forward-timeout-ms", "5000"]);
    for (id, pm25) in stations {
        let e = json!({"id": id, "type": "AirQualityObserved", "pm25": {"type": "Property", "value": pm25}});
        assert_eq!(hub.post("/entities", &e).status(), 201);
    }
    hub
}

#[test]
fn a_distributed_query_orders_the_merged_answer() {
    let seoul = city(&[
        ("urn:ngsi-ld:AirQualityObserved:seoul:jongno", 31.0),
        ("urn:ngsi-ld:AirQualityObserved:seoul:mapo", 40.0),
    ]);
    let busan = city(&[
        ("urn:ngsi-ld:AirQualityObserved:busan:jung", 35.0),
        ("urn:ngsi-ld:AirQualityObserved:busan:haeundae", 18.0),
    ]);
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_cityhub"))
        .args(["federate", "--hub", &seoul.base, "--peer", &busan.base, "--type", "AirQualityObserved"])
        .output()
        .expect("cityhub federate runs");
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let names = |path: &str| -> Vec<String> {
        let (status, body) = seoul.get_json(path);
        assert_eq!(status, 200, "{body}");
        body.as_array()
            .unwrap()
            .iter()
            .map(|e| e["id"].as_str().unwrap().rsplit(':').next().unwrap().to_owned())
            .collect()
    };
    // Merged by id the cities would stay apart; ordered, they interleave.
    assert_eq!(names("/entities?type=AirQualityObserved&orderBy=pm25;desc"), ["mapo", "jung", "jongno", "haeundae"]);
    assert_eq!(names("/entities?type=AirQualityObserved&orderBy=pm25;desc&limit=2&offset=1"), ["jung", "jongno"]);
    assert_eq!(names("/entities?type=AirQualityObserved&orderBy=pm25"), ["haeundae", "jongno", "jung", "mapo"]);
    // Histories merged from both cities are ordered by each one's latest values.
    let temporal =
        "/temporal/entities?type=AirQualityObserved&timerel=after&timeAt=1970-01-01T00:00:00Z&timeproperty=createdAt";
    assert_eq!(names(&format!("{temporal}&orderBy=pm25;desc")), ["mapo", "jung", "jongno", "haeundae"]);
}
