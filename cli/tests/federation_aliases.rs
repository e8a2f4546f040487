//! Hubs that know each other by alias (clauses 5.2.40, 5.12, 5.15.1, 6.3.17, 6.3.18): real
//! `cityhub` processes started with `--alias`, registered with `cityhub federate` (which reads
//! the peer's `/info/sourceIdentity`). Forwards are counted with each hub's forwarding
//! statistics (`timesSent` of its registrations, `options=sysAttrs`).

mod common;

use std::collections::BTreeSet;
use std::process::Command;

use common::{assert_problem, json_of, Hub};
use reqwest::Method;
use serde_json::{json, Value};

fn station(id: &str, pm25: f64) -> Value {
    json!({
        "id": id,
        "type": "AirQualityObserved",
        "pm25": {"type": "Property", "value": pm25},
    })
}

/// A hub named `alias` holding one station per `(id, pm25)`.
fn hub(alias: &str, stations: &[(&str, f64)]) -> Hub {
    let hub = Hub::start_with(&["--alias", alias, "--forward-timeout-ms", "3000"]);
    for (id, pm25) in stations {
        let response = hub.post("/entities", &station(id, *pm25));
        assert_eq!(response.status().as_u16(), 201, "station {id} created");
    }
    hub
}

/// Registers `peer` at `hub` with `cityhub federate`; answers the registration id.
fn federate(hub: &Hub, peer: &Hub) -> String {
    let output = Command::new(env!("CARGO_BIN_EXE_cityhub"))
        .args(["federate", "--hub", &hub.base, "--peer", &peer.base, "--type", "AirQualityObserved"])
        .output()
        .expect("cityhub federate runs");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(output.status.success(), "federate failed: {}", String::from_utf8_lossy(&output.stderr));
    let id = stdout.split_whitespace().nth(1).expect("registered <id>:").trim_end_matches(':').to_owned();
    assert!(id.starts_with("urn:ngsi-ld:ContextSourceRegistration:"), "{stdout}");
    id
}

fn registration(hub: &Hub, id: &str) -> Value {
    let (status, body) = hub.get_json(&format!("/csourceRegistrations/{id}?options=sysAttrs"));
    assert_eq!(status, 200, "{body}");
    body
}

/// How many requests `hub` forwarded under registration `id`, and how many failed.
fn sent(hub: &Hub, id: &str) -> (u64, u64) {
    let reg = registration(hub, id);
    (reg["timesSent"].as_u64().unwrap(), reg["timesFailed"].as_u64().unwrap())
}

/// GET at `hub`: status, the warnings, and the listed entities by id (each id must come once).
fn query(hub: &Hub, path: &str) -> (u16, Vec<String>, Vec<(String, Value)>) {
    let response = hub.get(path).send().expect("query sent");
    let warnings: Vec<String> =
        response.headers().get_all("ngsild-warning").iter().map(|v| v.to_str().unwrap().to_owned()).collect();
    let (status, body) = json_of(response);
    let entities: Vec<(String, Value)> = body
        .as_array()
        .unwrap_or_else(|| panic!("a list: {body}"))
        .iter()
        .map(|e| (e["id"].as_str().unwrap().to_owned(), e["pm25"].clone()))
        .collect();
    let unique: BTreeSet<&String> = entities.iter().map(|(id, _)| id).collect();
    assert_eq!(unique.len(), entities.len(), "each entity listed once: {entities:?}");
    (status, warnings, entities)
}

fn ids(entities: &[(String, Value)]) -> BTreeSet<String> {
    entities.iter().map(|(id, _)| id.clone()).collect()
}

fn set(items: &[&str]) -> BTreeSet<String> {
    items.iter().map(|s| s.to_string()).collect()
}

const JONGNO: &str = "urn:ngsi-ld:AirQualityObserved:seoul:jongno";
const MAPO: &str = "urn:ngsi-ld:AirQualityObserved:seoul:mapo";
const HAEUNDAE: &str = "urn:ngsi-ld:AirQualityObserved:busan:haeundae";
const DAEGU: &str = "urn:ngsi-ld:AirQualityObserved:daegu:jung";

#[test]
fn two_hubs_registered_both_ways_ask_each_other_once_per_read() {
    let seoul = hub("seoul", &[(JONGNO, 31.0), (MAPO, 40.0)]);
    let busan = hub("busan", &[(HAEUNDAE, 18.0)]);
    let at_seoul = federate(&seoul, &busan);
    let at_busan = federate(&busan, &seoul);
    // Each registration names the peer's own alias, read from its /info/sourceIdentity.
    assert_eq!(registration(&seoul, &at_seoul)["contextSourceAlias"], "busan");
    assert_eq!(registration(&busan, &at_busan)["contextSourceAlias"], "seoul");

    let everything = set(&[JONGNO, MAPO, HAEUNDAE]);
    let (status, warnings, entities) = query(&seoul, "/entities?type=AirQualityObserved");
    assert_eq!(status, 200, "{entities:?}");
    assert!(warnings.is_empty(), "{warnings:?}");
    assert_eq!(ids(&entities), everything);
    assert!(entities.contains(&(HAEUNDAE.to_owned(), json!({"type": "Property", "value": 18.0}))), "{entities:?}");
    // Seoul asked Busan once; Busan, seeing `Via: 1.1 seoul`, did not ask Seoul back.
    assert_eq!(sent(&seoul, &at_seoul), (1, 0));
    assert_eq!(sent(&busan, &at_busan), (0, 0));

    let (status, warnings, entities) = query(&busan, "/entities?type=AirQualityObserved&q=pm25>20");
    assert_eq!(status, 200);
    assert!(warnings.is_empty(), "{warnings:?}");
    assert_eq!(ids(&entities), set(&[JONGNO, MAPO]));
    assert_eq!(sent(&busan, &at_busan), (1, 0));
    assert_eq!(sent(&seoul, &at_seoul), (1, 0), "Seoul answered Busan from its own data");

    // A retrieval by id goes once too, and answers the peer's entity whole.
    let (status, one) = seoul.get_json(&format!("/entities/{HAEUNDAE}"));
    assert_eq!(status, 200, "{one}");
    assert_eq!(one["pm25"]["value"], json!(18.0));
    assert_eq!(sent(&seoul, &at_seoul), (2, 0));
    assert_eq!(sent(&busan, &at_busan), (1, 0));
    // And so does a temporal read (cityhub federate registers the temporal operations).
    let response = busan.get(&format!("/temporal/entities/{JONGNO}")).send().unwrap();
    let (status, history) = json_of(response);
    assert_eq!(status, 200, "{history}");
    assert_eq!(history["id"], JONGNO);
    assert_eq!(sent(&busan, &at_busan), (2, 0));
    assert_eq!(sent(&seoul, &at_seoul), (2, 0));
}

#[test]
fn registrations_without_alias_still_end_with_each_entity_once() {
    let seoul = hub("seoul", &[(JONGNO, 31.0)]);
    let busan = hub("busan", &[(HAEUNDAE, 18.0)]);
    // Registered by hand, naming no alias: the peers cannot tell each other from Via.
    let register = |at: &Hub, peer: &Hub, id: &str| {
        let body = json!({
            "id": id, "type": "ContextSourceRegistration",
            "information": [{"entities": [{"type": "AirQualityObserved"}]}], "endpoint": peer.base,
        });
        assert_eq!(at.post("/csourceRegistrations", &body).status().as_u16(), 201);
    };
    register(&seoul, &busan, "urn:ngsi-ld:ContextSourceRegistration:busan");
    register(&busan, &seoul, "urn:ngsi-ld:ContextSourceRegistration:seoul");

    let (status, warnings, entities) = query(&seoul, "/entities?type=AirQualityObserved");
    assert_eq!(status, 200, "no 508 under inclusive registrations: {entities:?}");
    assert!(warnings.is_empty(), "{warnings:?}");
    assert_eq!(ids(&entities), set(&[JONGNO, HAEUNDAE]));
    // Busan asked Seoul back (it could not know), and Seoul, finding itself in Via, answered from
    // its own data without asking anyone again: the extra round trip an alias saves, no more.
    assert_eq!(sent(&seoul, "urn:ngsi-ld:ContextSourceRegistration:busan"), (1, 0));
    assert_eq!(sent(&busan, "urn:ngsi-ld:ContextSourceRegistration:seoul"), (1, 0));
}

#[test]
fn a_chain_of_three_hubs_ends_with_every_entity_once() {
    let a = hub("seoul", &[(JONGNO, 31.0), (MAPO, 40.0)]);
    let b = hub("busan", &[(HAEUNDAE, 18.0)]);
    let c = hub("daegu", &[(DAEGU, 27.0)]);
    // A -> B -> C -> A.
    let a_b = federate(&a, &b);
    let b_c = federate(&b, &c);
    let c_a = federate(&c, &a);
    let everything = set(&[JONGNO, MAPO, HAEUNDAE, DAEGU]);
    for (n, start) in [&a, &b, &c].into_iter().enumerate() {
        let (status, warnings, entities) = query(start, "/entities?type=AirQualityObserved&limit=100");
        assert_eq!(status, 200, "{entities:?}");
        assert!(warnings.is_empty(), "{warnings:?}");
        assert_eq!(ids(&entities), everything, "asked at hub {n}");
        assert!(entities.contains(&(DAEGU.to_owned(), json!({"type": "Property", "value": 27.0}))));
    }
    // Each query went round the chain once and stopped before the hub it started at:
    // at A: A->B, B->C; at B: B->C, C->A; at C: C->A, A->B.
    assert_eq!(sent(&a, &a_b), (2, 0));
    assert_eq!(sent(&b, &b_c), (2, 0));
    assert_eq!(sent(&c, &c_a), (2, 0));
    // A count over the chain counts each entity once.
    let response = a.get("/entities?type=AirQualityObserved&count=true&limit=1").send().unwrap();
    assert_eq!(response.headers()["ngsild-results-count"], "4");
}

#[test]
fn the_source_identity_tells_the_alias() {
    let seoul = hub("seoul", &[]);
    let response = seoul.get("/info/sourceIdentity").send().unwrap();
    let link = response.headers().get("link").map(|v| v.to_str().unwrap().to_owned()).unwrap_or_default();
    assert!(link.contains(common::CORE_CONTEXT), "{link}");
    let (status, identity) = json_of(response);
    assert_eq!(status, 200, "{identity}");
    assert_eq!(identity["id"], "urn:ngsi-ld:ContextSource:seoul");
    assert_eq!(identity["type"], "ContextSourceIdentity");
    assert_eq!(identity["contextSourceAlias"], "seoul");
    let uptime = identity["contextSourceUptime"].as_str().unwrap();
    assert!(uptime.starts_with("PT") && uptime.ends_with('S'), "{uptime}");
    let now = identity["contextSourceTimeAt"].as_str().unwrap();
    assert!(now.ends_with('Z') && now.contains('T'), "{now}");
    assert_eq!(identity["contextSourceExtras"]["name"], "cityhub");
    assert!(identity["contextSourceExtras"]["timeOfStartup"].is_string());
    assert!(identity.get("@context").is_none());

    let response = seoul.get("/info/sourceIdentity").header("Accept", "application/ld+json").send().unwrap();
    let (status, identity) = json_of(response);
    assert_eq!(status, 200);
    assert_eq!(identity["@context"], json!(common::CORE_CONTEXT));
    assert_eq!(identity["contextSourceAlias"], "seoul");

    let body = assert_problem(seoul.get("/info/sourceIdentity?details=true").send().unwrap(), 400, "InvalidRequest");
    assert!(body["detail"].as_str().unwrap().contains("details"), "{body}");

    // By default the alias is the host name and the port: a token, never host:port.
    let plain = Hub::start();
    let (_, identity) = plain.get_json("/info/sourceIdentity");
    let alias = identity["contextSourceAlias"].as_str().unwrap();
    let port = plain.base.rsplit(':').next().unwrap();
    assert!(alias.ends_with(&format!("-{port}")) && !alias.contains(':'), "{alias}");

    // The old flag still names the hub.
    let old = Hub::start_with(&["--via-name", "busan"]);
    assert_eq!(old.get_json("/info/sourceIdentity").1["contextSourceAlias"], "busan");
}

#[test]
fn an_alias_that_is_not_a_token_is_refused() {
    // As a flag: the hub does not start.
    let data = tempfile::tempdir().unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_cityhub"))
        .args(["serve", "--listen", "127.0.0.1:0", "--log", "warn", "--alias", "127.0.0.1:1026", "--data"])
        .arg(data.path())
        .output()
        .expect("cityhub runs");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("--alias \"127.0.0.1:1026\" is not an RFC 7230 token: ':' is not allowed"), "{stderr}");

    // In a registration: 400, saying why.
    let seoul = hub("seoul", &[]);
    for alias in ["busan:1026", "bu san", ""] {
        let body = json!({
            "type": "ContextSourceRegistration", "information": [{"entities": [{"type": "AirQualityObserved"}]}],
            "endpoint": "http://127.0.0.1:9", "contextSourceAlias": alias,
        });
        let problem = assert_problem(seoul.post("/csourceRegistrations", &body), 400, "BadRequestData");
        let detail = problem["detail"].as_str().unwrap();
        assert!(detail.contains(&format!("contextSourceAlias {alias:?}")), "{detail}");
    }
    let (_, listed) = seoul.get_json("/csourceRegistrations?type=AirQualityObserved");
    assert_eq!(listed, json!([]), "nothing was registered");
}

#[test]
fn a_write_is_not_done_twice_and_508_is_for_a_single_source_looping_back() {
    let seoul = hub("seoul", &[(JONGNO, 31.0)]);
    // A write that already passed through this hub: it did its part then.
    let patch = json!({"pm25": {"type": "Property", "value": 99.0}});
    let response = seoul
        .send_json(Method::PATCH, &format!("/entities/{JONGNO}/attrs"), &patch)
        .header("Via", "1.1 busan, 1.1 seoul")
        .send()
        .unwrap();
    let problem = assert_problem(response, 508, "LoopDetected");
    assert!(problem["detail"].as_str().unwrap().contains("already passed through seoul"), "{problem}");
    let (_, entity) = seoul.get_json(&format!("/entities/{JONGNO}"));
    assert_eq!(entity["pm25"]["value"], json!(31.0), "not applied");
    // A read that did is answered from the hub's own data, with a warning.
    let response = seoul.get(&format!("/entities/{JONGNO}")).header("Via", "1.1 seoul").send().unwrap();
    let warning = response.headers()["ngsild-warning"].to_str().unwrap().to_owned();
    assert!(warning.starts_with("199 seoul \"") && warning.contains("already passed through seoul"), "{warning}");
    assert_eq!(json_of(response).0, 200);

    // Vehicles are held by Busan alone (redirect), which sent this very request: clause 6.3.17.
    let redirect = json!({
        "id": "urn:ngsi-ld:ContextSourceRegistration:vehicles", "type": "ContextSourceRegistration",
        "information": [{"entities": [{"type": "Vehicle"}]}], "endpoint": "http://127.0.0.1:9",
        "mode": "redirect", "operations": ["redirectionOps"], "contextSourceAlias": "busan",
    });
    assert_eq!(seoul.post("/csourceRegistrations", &redirect).status().as_u16(), 201);
    let vehicle = json!({"id": "urn:ngsi-ld:Vehicle:1", "type": "Vehicle", "speed": {"type": "Property", "value": 1}});
    let response = seoul.send_json(Method::POST, "/entities", &vehicle).header("Via", "1.1 busan").send().unwrap();
    let problem = assert_problem(response, 508, "LoopDetected");
    let detail = problem["detail"].as_str().unwrap();
    assert!(detail.contains("urn:ngsi-ld:ContextSourceRegistration:vehicles") && detail.contains("busan"), "{detail}");
    assert_eq!(sent(&seoul, "urn:ngsi-ld:ContextSourceRegistration:vehicles"), (0, 0), "nothing was forwarded");
    assert_eq!(seoul.get_json("/entities/urn:ngsi-ld:Vehicle:1?local=true").0, 404, "nor kept here");

    // Under an inclusive registration the same write is the hub's to do: no 508, no forward.
    let inclusive = json!({
        "id": "urn:ngsi-ld:ContextSourceRegistration:parking", "type": "ContextSourceRegistration",
        "information": [{"entities": [{"type": "ParkingSpot"}]}], "endpoint": "http://127.0.0.1:9",
        "operations": ["redirectionOps"], "contextSourceAlias": "busan",
    });
    assert_eq!(seoul.post("/csourceRegistrations", &inclusive).status().as_u16(), 201);
    let spot =
        json!({"id": "urn:ngsi-ld:ParkingSpot:1", "type": "ParkingSpot", "free": {"type": "Property", "value": true}});
    let response = seoul.send_json(Method::POST, "/entities", &spot).header("Via", "1.1 busan").send().unwrap();
    assert_eq!(response.status().as_u16(), 201, "{}", response.text().unwrap());
    assert_eq!(sent(&seoul, "urn:ngsi-ld:ContextSourceRegistration:parking"), (0, 0));
    assert_eq!(seoul.get_json("/entities/urn:ngsi-ld:ParkingSpot:1?local=true").0, 200);
}
