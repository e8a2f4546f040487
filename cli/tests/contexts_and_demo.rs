//! The @context management API, the health endpoint and the demo data set.

mod common;

use common::*;
use reqwest::Method;
use serde_json::{json, Value};

#[test]
fn hosted_context_lifecycle() {
    let hub = Hub::start();
    let document =
        json!({"@context": {"Station": "https://city.example/Station", "pm25": "https://city.example/pm25"}});
    let response = hub.send_json(Method::POST, "/jsonldContexts", &document).send().unwrap();
    assert_eq!(response.status(), 201);
    let location = response.headers()["location"].to_str().unwrap().to_owned();
    let local_id =
        location.strip_prefix("/ngsi-ld/v1/jsonldContexts/").expect("location under /jsonldContexts").to_owned();

    let (_, served) = hub.get_json(&format!("/jsonldContexts/{local_id}"));
    assert_eq!(served, document);
    let (_, list) = hub.get_json("/jsonldContexts");
    let url = format!("{}{location}", hub.base);
    assert_eq!(list, json!([url]));

    // A client uses the hosted context by URL: it is resolved locally and its hits counted.
    let entity = json!({"id": "urn:ngsi-ld:Station:1", "type": "Station", "pm25": 12});
    let response = hub.send_json(Method::POST, "/entities", &entity).header("Link", link_header(&url)).send().unwrap();
    assert_eq!(response.status(), 201);
    let (_, stored) = hub.get_json("/entities/urn:ngsi-ld:Station:1");
    assert_eq!(stored["type"], "https://city.example/Station");
    let (_, details) = hub.get_json(&format!("/jsonldContexts/{local_id}?details=true"));
    assert_eq!(details["kind"], "Hosted");
    assert_eq!(details["URL"], url);
    assert_eq!(details["numberOfHits"], 1);

    assert_problem(hub.get("/jsonldContexts?kind=Other").send().unwrap(), 400, "BadRequestData");
    assert_problem(hub.get("/jsonldContexts?details=maybe").send().unwrap(), 400, "BadRequestData");
    assert_problem(
        hub.send_json(Method::POST, "/jsonldContexts", &json!({"no": "context"})).send().unwrap(),
        400,
        "InvalidRequest",
    );

    assert_eq!(hub.delete(&format!("/jsonldContexts/{local_id}")).send().unwrap().status(), 204);
    assert_problem(hub.get(&format!("/jsonldContexts/{local_id}")).send().unwrap(), 404, "ResourceNotFound");
    assert_problem(hub.delete(&format!("/jsonldContexts/{local_id}")).send().unwrap(), 404, "ResourceNotFound");
}

#[test]
fn remote_contexts_are_listed_as_cached() {
    let hub = Hub::start();
    let ctx = ContextServer::serve(json!({"@context": {"Bin": "https://waste.example/Bin"}}));
    let response = hub
        .send_json(Method::POST, "/entities", &json!({"id": "urn:x:bin", "type": "Bin"}))
        .header("Link", link_header(&ctx.url))
        .send()
        .unwrap();
    assert_eq!(response.status(), 201);
    let (_, cached) = hub.get_json("/jsonldContexts?kind=Cached&details=true");
    let entries = cached.as_array().unwrap();
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0]["URL"], ctx.url.as_str());
    assert_eq!(entries[0]["kind"], "Cached");
    let encoded = percent_encode(&ctx.url);
    assert_eq!(hub.delete(&format!("/jsonldContexts/{encoded}")).send().unwrap().status(), 204);
    let (_, cached) = hub.get_json("/jsonldContexts?kind=Cached");
    assert_eq!(cached, json!([]));
}

fn percent_encode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b == b'-' || b == b'.' || b == b'_' {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

#[test]
fn health_and_demo_data() {
    let hub = Hub::start_with(&["--demo"]);
    let health: Value = hub.client.get(format!("{}/health", hub.base)).send().unwrap().json().unwrap();
    assert_eq!(health["status"], "ok");

    let response = hub.get("/entities?type=AirQualityObserved&count=true&limit=1").send().unwrap();
    assert_eq!(response.headers()["ngsild-results-count"], "16", "2 stations in each of 2 districts of 4 cities");
    let (_, spot) = hub.get_json("/entities/urn:ngsi-ld:ParkingSpot:Seoul:Jongno-gu:1?options=keyValues");
    assert_eq!(spot["refArea"], "urn:ngsi-ld:AdministrativeArea:Seoul:Jongno-gu");
    assert_eq!(spot["location"]["type"], "Point");
}
