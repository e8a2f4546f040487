//! Federation between city hubs: two real `cityhub` processes, "seoul" and "busan", each holding
//! its own air-quality stations, registered with each other as context sources.

mod common;

use std::collections::BTreeSet;
use std::process::Command;

use common::{assert_problem, json_of, Hub};
use reqwest::Method;
use serde_json::{json, Value};

const SEOUL_STATIONS: &[(&str, f64, f64, f64)] = &[
    ("urn:ngsi-ld:AirQualityObserved:seoul:jongno", 126.978, 37.572, 31.0),
    ("urn:ngsi-ld:AirQualityObserved:seoul:gangnam", 127.047, 37.517, 24.5),
    ("urn:ngsi-ld:AirQualityObserved:seoul:mapo", 126.901, 37.566, 40.0),
];

const BUSAN_STATIONS: &[(&str, f64, f64, f64)] = &[
    ("urn:ngsi-ld:AirQualityObserved:busan:haeundae", 129.163, 35.163, 18.0),
    ("urn:ngsi-ld:AirQualityObserved:busan:jung", 129.032, 35.106, 22.0),
];

fn station(id: &str, lon: f64, lat: f64, pm25: f64) -> Value {
    json!({
        "id": id,
        "type": "AirQualityObserved",
        "pm25": {"type": "Property", "value": pm25, "unitCode": "GQ", "observedAt": "2024-05-01T09:00:00Z"},
        "location": {"type": "GeoProperty", "value": {"type": "Point", "coordinates": [lon, lat]}}
    })
}

fn city(stations: &[(&str, f64, f64, f64)]) -> Hub {
    // A short forwarding timeout keeps the dead-peer case quick.
    let hub = Hub::start_with(&["--forward-timeout-ms", "2000"]);
    for (id, lon, lat, pm25) in stations {
        let response = hub.post("/entities", &station(id, *lon, *lat, *pm25));
        assert_eq!(response.status().as_u16(), 201, "station {id} created");
    }
    hub
}

/// Registers `peer` at `hub` for air-quality stations with the `cityhub federate` command.
fn federate(hub: &Hub, peer: &Hub) {
    let output = Command::new(env!("CARGO_BIN_EXE_cityhub"))
        .args(["federate", "--hub", &hub.base, "--peer", &peer.base, "--type", "AirQualityObserved"])
        .output()
        .expect("cityhub federate runs");
    assert!(output.status.success(), "federate failed: {}", String::from_utf8_lossy(&output.stderr));
    assert!(String::from_utf8_lossy(&output.stdout).contains("registered"));
}

/// GET at `hub`; answers status, warnings and the listed entity ids (each id must appear once).
fn query(hub: &Hub, path: &str) -> (u16, Vec<String>, Vec<String>, Value) {
    let response = hub.get(path).send().expect("query sent");
    let warnings: Vec<String> =
        response.headers().get_all("ngsild-warning").iter().map(|v| v.to_str().unwrap().to_owned()).collect();
    let count = response.headers().get("ngsild-results-count").map(|v| v.to_str().unwrap().to_owned());
    let (status, body) = json_of(response);
    let ids: Vec<String> =
        body.as_array().map(|a| a.iter().map(|e| e["id"].as_str().unwrap().to_owned()).collect()).unwrap_or_default();
    let unique: BTreeSet<&String> = ids.iter().collect();
    assert_eq!(unique.len(), ids.len(), "each station listed once: {ids:?}");
    let mut extra = json!({"body": body});
    if let Some(count) = count {
        extra["count"] = json!(count);
    }
    (status, ids, warnings, extra)
}

fn ids_of(stations: &[(&str, f64, f64, f64)]) -> BTreeSet<String> {
    stations.iter().map(|s| s.0.to_owned()).collect()
}

#[test]
fn a_query_at_seoul_returns_both_cities_stations() {
    let seoul = city(SEOUL_STATIONS);
    let busan = city(BUSAN_STATIONS);
    federate(&seoul, &busan);

    let (status, ids, warnings, extra) = query(&seoul, "/entities?type=AirQualityObserved&count=true");
    assert_eq!(status, 200, "{extra}");
    assert!(warnings.is_empty(), "{warnings:?}");
    let all: BTreeSet<String> = ids_of(SEOUL_STATIONS).union(&ids_of(BUSAN_STATIONS)).cloned().collect();
    assert_eq!(ids.iter().cloned().collect::<BTreeSet<_>>(), all);
    assert_eq!(extra["count"], "5");
    let sorted: Vec<String> = all.iter().cloned().collect();
    assert_eq!(ids, sorted, "the merged list is ordered by id, as a local one is");

    // Busan's station comes back whole, in the representation asked for.
    let (_, body) = seoul.get_json("/entities?type=AirQualityObserved&q=pm25<20&options=keyValues");
    assert_eq!(
        body,
        json!([{
            "id": "urn:ngsi-ld:AirQualityObserved:busan:haeundae",
            "type": "AirQualityObserved",
            "pm25": 18.0,
            "location": {"type": "Point", "coordinates": [129.163, 35.163]}
        }])
    );

    // Paging runs over the merged list.
    let (_, first, _, _) = query(&seoul, "/entities?type=AirQualityObserved&limit=2");
    let (_, rest, _, _) = query(&seoul, "/entities?type=AirQualityObserved&limit=10&offset=2");
    assert_eq!(first, sorted[..2].to_vec());
    assert_eq!(rest, sorted[2..].to_vec());

    // One entity of Busan, retrieved through Seoul.
    let (status, one) = seoul.get_json("/entities/urn:ngsi-ld:AirQualityObserved:busan:jung");
    assert_eq!(status, 200, "{one}");
    assert_eq!(one["pm25"]["value"], json!(22.0));
    let (status, _) = seoul.get_json("/entities/urn:ngsi-ld:AirQualityObserved:busan:jung?local=true");
    assert_eq!(status, 404, "local=true does not ask Busan");

    // A geo-query: only the stations within 30 km of Busan's city hall, though Seoul asked both.
    let near_busan =
        "/entities?type=AirQualityObserved&georel=near;maxDistance==30000&geometry=Point&coordinates=[129.075,35.18]";
    let (status, ids, _, extra) = query(&seoul, near_busan);
    assert_eq!(status, 200, "{extra}");
    assert_eq!(ids.into_iter().collect::<BTreeSet<_>>(), ids_of(BUSAN_STATIONS));
    let near_seoul =
        "/entities?type=AirQualityObserved&georel=near;maxDistance==20000&geometry=Point&coordinates=[126.978,37.566]";
    let (_, ids, _, _) = query(&seoul, near_seoul);
    assert_eq!(ids.into_iter().collect::<BTreeSet<_>>(), ids_of(SEOUL_STATIONS));

    // local=true: Seoul's own stations only.
    let (_, ids, _, _) = query(&seoul, "/entities?type=AirQualityObserved&local=true");
    assert_eq!(ids.into_iter().collect::<BTreeSet<_>>(), ids_of(SEOUL_STATIONS));

    // Other types are not forwarded: Busan is registered for stations only.
    let (_, ids, warnings, _) = query(&seoul, "/entities?type=ParkingSpot");
    assert!(ids.is_empty() && warnings.is_empty());
}

#[test]
fn mutual_registrations_do_not_loop() {
    let seoul = city(SEOUL_STATIONS);
    let busan = city(BUSAN_STATIONS);
    federate(&seoul, &busan);
    federate(&busan, &seoul);
    let all: BTreeSet<String> = ids_of(SEOUL_STATIONS).union(&ids_of(BUSAN_STATIONS)).cloned().collect();
    for hub in [&seoul, &busan] {
        let started = std::time::Instant::now();
        let (status, ids, warnings, extra) = query(hub, "/entities?type=AirQualityObserved&count=true");
        assert_eq!(status, 200, "{extra}");
        assert!(warnings.is_empty(), "no source failed, none was asked twice: {warnings:?}");
        assert_eq!(ids.into_iter().collect::<BTreeSet<_>>(), all);
        assert_eq!(extra["count"], "5");
        assert!(started.elapsed() < std::time::Duration::from_secs(2), "answered without waiting on a loop");
    }
    // A read that already crossed a hub is answered from that hub's own data, with a warning,
    // and goes no further: even a peer that ignored Via could not make it loop.
    let (_, identity) = seoul.get_json("/info/sourceIdentity");
    let me = identity["contextSourceAlias"].as_str().unwrap().to_owned();
    let response = seoul.get("/entities?type=AirQualityObserved").header("Via", format!("1.1 {me}")).send().unwrap();
    let warning = response.headers().get("ngsild-warning").map(|v| v.to_str().unwrap().to_owned()).unwrap();
    assert!(warning.starts_with(&format!("199 {me} ")) && warning.contains("already passed through"), "{warning}");
    let (status, body) = json_of(response);
    assert_eq!(status, 200, "{body}");
    let ids: BTreeSet<String> = body.as_array().unwrap().iter().map(|e| e["id"].as_str().unwrap().to_owned()).collect();
    assert_eq!(ids, ids_of(SEOUL_STATIONS));
    // Busan, asked on Seoul's behalf, answers its own stations without asking Seoul back.
    let response = busan.get("/entities?type=AirQualityObserved").header("Via", format!("1.1 {me}")).send().unwrap();
    let (status, body) = json_of(response);
    assert_eq!(status, 200);
    let ids: BTreeSet<String> = body.as_array().unwrap().iter().map(|e| e["id"].as_str().unwrap().to_owned()).collect();
    assert_eq!(ids, ids_of(BUSAN_STATIONS));
}

#[test]
fn a_dead_peer_is_reported_and_costs_nothing_else() {
    let seoul = city(SEOUL_STATIONS);
    let busan = city(BUSAN_STATIONS);
    federate(&seoul, &busan);
    let dead = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let registration = json!({
        "id": "urn:ngsi-ld:ContextSourceRegistration:dead",
        "type": "ContextSourceRegistration",
        "information": [{"entities": [{"type": "AirQualityObserved"}]}],
        "endpoint": format!("http://127.0.0.1:{dead}")
    });
    assert_eq!(seoul.post("/csourceRegistrations", &registration).status().as_u16(), 201);
    let started = std::time::Instant::now();
    let (status, ids, warnings, extra) = query(&seoul, "/entities?type=AirQualityObserved");
    assert!(started.elapsed() < std::time::Duration::from_secs(10));
    assert_eq!(status, 200, "{extra}");
    let all: BTreeSet<String> = ids_of(SEOUL_STATIONS).union(&ids_of(BUSAN_STATIONS)).cloned().collect();
    assert_eq!(ids.into_iter().collect::<BTreeSet<_>>(), all, "Seoul's and Busan's stations are all there");
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(warnings[0].starts_with("199 127.0.0.1:"), "{}", warnings[0]);
    assert!(warnings[0].contains("urn:ngsi-ld:ContextSourceRegistration:dead"), "{}", warnings[0]);

    // The registration counts the failure (system attributes).
    let (_, reg) = seoul.get_json("/csourceRegistrations/urn:ngsi-ld:ContextSourceRegistration:dead?options=sysAttrs");
    assert_eq!(reg["status"], "failed", "{reg}");
    assert!(reg["timesFailed"].as_u64().unwrap() >= 1, "{reg}");
}

fn registration() -> Value {
    json!({
        "id": "urn:ngsi-ld:ContextSourceRegistration:busan",
        "type": "ContextSourceRegistration",
        "registrationName": "Busan air quality",
        "information": [{
            "entities": [{"type": "AirQualityObserved"}],
            "propertyNames": ["pm25", "pm10"]
        }],
        "endpoint": "http://busan.example:1026",
        "location": {"type": "Polygon", "coordinates": [[[128.8, 35.0], [129.3, 35.0], [129.3, 35.4], [128.8, 35.4], [128.8, 35.0]]]},
        "mode": "inclusive",
        "operations": ["retrieveOps"],
        "expiresAt": "2999-01-01T00:00:00Z",
        "contextSourceInfo": [{"key": "x-city", "value": "busan"}],
        "observationInterval": {"startAt": "2024-01-01T00:00:00Z"},
        "city": "Busan"
    })
}

#[test]
fn registrations_are_created_read_queried_updated_and_deleted() {
    let hub = Hub::start();
    let response = hub.post("/csourceRegistrations", &registration());
    assert_eq!(response.status().as_u16(), 201);
    assert_eq!(
        response.headers()["location"],
        "/ngsi-ld/v1/csourceRegistrations/urn:ngsi-ld:ContextSourceRegistration:busan"
    );
    let (status, got) = hub.get_json("/csourceRegistrations/urn:ngsi-ld:ContextSourceRegistration:busan");
    assert_eq!(status, 200);
    assert_eq!(got, registration(), "read back as written");

    assert_problem(hub.post("/csourceRegistrations", &registration()), 409, "AlreadyExists");
    let mut invalid = registration();
    invalid["information"] = Value::Null;
    invalid["id"] = json!("urn:ngsi-ld:ContextSourceRegistration:other");
    assert_problem(hub.post("/csourceRegistrations", &invalid), 400, "BadRequestData");
    let mut invalid = registration();
    invalid["mode"] = json!("sometimes");
    assert_problem(hub.post("/csourceRegistrations", &invalid), 400, "BadRequestData");
    let mut expired = registration();
    expired["expiresAt"] = json!("2001-01-01T00:00:00Z");
    assert_problem(hub.post("/csourceRegistrations", &expired), 400, "BadRequestData");

    // Without an id, the hub assigns one.
    let mut anonymous = registration();
    anonymous.as_object_mut().unwrap().remove("id");
    anonymous["information"] = json!([{"entities": [{"type": "ParkingSpot"}], "propertyNames": ["occupancy"]}]);
    anonymous.as_object_mut().unwrap().remove("location");
    anonymous.as_object_mut().unwrap().remove("city");
    anonymous.as_object_mut().unwrap().remove("observationInterval");
    let response = hub.post("/csourceRegistrations", &anonymous);
    assert_eq!(response.status().as_u16(), 201);
    let location = response.headers()["location"].to_str().unwrap().to_owned();
    assert!(location.starts_with("/ngsi-ld/v1/csourceRegistrations/urn:ngsi-ld:ContextSourceRegistration:"));

    let listed = |path: &str| -> Vec<String> {
        let (status, body) = hub.get_json(path);
        assert_eq!(status, 200, "{path}: {body}");
        body.as_array().unwrap().iter().map(|r| r["id"].as_str().unwrap().to_owned()).collect()
    };
    let busan = "urn:ngsi-ld:ContextSourceRegistration:busan".to_owned();
    assert_problem(hub.get("/csourceRegistrations").send().unwrap(), 400, "BadRequestData");
    assert_eq!(listed(&format!("/csourceRegistrations?id={busan}")), vec![busan.clone()]);
    assert_eq!(listed("/csourceRegistrations?type=AirQualityObserved,ParkingSpot").len(), 2);
    assert_eq!(listed("/csourceRegistrations?type=AirQualityObserved"), vec![busan.clone()]);
    assert_eq!(listed("/csourceRegistrations?attrs=pm25"), vec![busan.clone()]);
    assert_eq!(listed("/csourceRegistrations?csf=city==%22Busan%22"), vec![busan.clone()]);
    assert!(listed("/csourceRegistrations?csf=city==%22Seoul%22").is_empty());
    let near = "/csourceRegistrations?georel=near;maxDistance==10000&geometry=Point&coordinates=[129.07,35.18]";
    assert_eq!(listed(near), vec![busan.clone()]);
    assert_eq!(listed("/csourceRegistrations?timerel=after&timeAt=2024-06-01T00:00:00Z"), vec![busan.clone()]);
    assert_eq!(listed("/csourceRegistrations?type=AirQualityObserved,ParkingSpot&limit=1").len(), 1);
    assert_problem(hub.get("/csourceRegistrations?typo=1").send().unwrap(), 400, "InvalidRequest");

    // Registrations live per tenant.
    let in_busan = hub.get("/csourceRegistrations?type=AirQualityObserved").header("NGSILD-Tenant", "busan");
    let (status, _) = json_of(in_busan.send().unwrap());
    assert_eq!(status, 404, "a tenant nobody wrote to does not exist");

    let patch = json!({"endpoint": "http://busan.example:2026", "expiresAt": null});
    let response = hub
        .send_json(Method::PATCH, "/csourceRegistrations/urn:ngsi-ld:ContextSourceRegistration:busan", &patch)
        .send()
        .unwrap();
    assert_eq!(response.status().as_u16(), 204);
    let (_, got) = hub.get_json("/csourceRegistrations/urn:ngsi-ld:ContextSourceRegistration:busan");
    assert_eq!(got["endpoint"], "http://busan.example:2026");
    assert!(got.get("expiresAt").is_none(), "{got}");
    assert_eq!(got["information"], registration()["information"]);
    let bad = json!({"information": []});
    let response = hub
        .send_json(Method::PATCH, "/csourceRegistrations/urn:ngsi-ld:ContextSourceRegistration:busan", &bad)
        .send()
        .unwrap();
    assert_problem(response, 400, "BadRequestData");

    let response = hub.delete("/csourceRegistrations/urn:ngsi-ld:ContextSourceRegistration:busan").send().unwrap();
    assert_eq!(response.status().as_u16(), 204);
    let response = hub.delete("/csourceRegistrations/urn:ngsi-ld:ContextSourceRegistration:busan").send().unwrap();
    assert_problem(response, 404, "ResourceNotFound");
    assert_problem(hub.get("/csourceRegistrations/not%20a%20uri").send().unwrap(), 400, "BadRequestData");
}

#[test]
fn registrations_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    {
        let hub = Hub::spawn(&data, &[]);
        assert_eq!(hub.post("/csourceRegistrations", &registration()).status().as_u16(), 201);
    }
    let hub = Hub::spawn(&data, &[]);
    let (status, got) = hub.get_json("/csourceRegistrations/urn:ngsi-ld:ContextSourceRegistration:busan");
    assert_eq!(status, 200);
    assert_eq!(got["registrationName"], "Busan air quality");
}

/// Registers at `hub` the attribute `attr` of one entity at `peer`, exclusively.
fn register_exclusive(hub: &Hub, peer: &Hub, entity_id: &str, attr: &str) {
    let registration = json!({
        "type": "ContextSourceRegistration",
        "information": [{"entities": [{"id": entity_id, "type": "AirQualityObserved"}], "propertyNames": [attr]}],
        "endpoint": peer.base,
        "mode": "exclusive",
        "operations": ["redirectionOps", "upsertBatch"],
    });
    assert_eq!(hub.post("/csourceRegistrations", &registration).status().as_u16(), 201);
}

#[test]
fn an_exclusive_attribute_is_updated_at_its_source_only() {
    let seoul = city(SEOUL_STATIONS);
    let busan = city(SEOUL_STATIONS);
    let id = SEOUL_STATIONS[0].0;
    register_exclusive(&seoul, &busan, id, "pm25");
    let patch = json!({"pm25": {"type": "Property", "value": 99.0}, "no2": {"type": "Property", "value": 7.0}});
    let response = seoul.send_json(Method::PATCH, &format!("/entities/{id}/attrs"), &patch).send().unwrap();
    assert_eq!(response.status().as_u16(), 204);
    let (_, at_busan) = busan.get_json(&format!("/entities/{id}?local=true"));
    assert_eq!(at_busan["pm25"]["value"], json!(99.0), "busan got pm25");
    let (_, at_seoul) = seoul.get_json(&format!("/entities/{id}?local=true"));
    assert!(at_seoul.get("pm25").is_none(), "seoul's copy of pm25 from before the registration went: {at_seoul}");
    assert_eq!(at_seoul["no2"]["value"], json!(7.0), "seoul took what is not registered");
    let (_, merged) = seoul.get_json(&format!("/entities/{id}"));
    assert_eq!(merged["pm25"]["value"], json!(99.0), "seoul shows busan's pm25");

    // A batch upsert splits the same way: pm25 to busan, the rest stays at seoul.
    let batch = json!([{"id": id, "type": "AirQualityObserved", "pm25": {"type": "Property", "value": 5.0},
        "o3": {"type": "Property", "value": 1.0}}]);
    let response = seoul.send_json(Method::POST, "/entityOperations/upsert?options=update", &batch).send().unwrap();
    assert!(response.status().is_success(), "{}", response.status());
    let (_, at_busan) = busan.get_json(&format!("/entities/{id}?local=true"));
    assert_eq!(at_busan["pm25"]["value"], json!(5.0));
    assert!(at_busan.get("o3").is_none(), "o3 is not busan's");
    let (_, at_seoul) = seoul.get_json(&format!("/entities/{id}?local=true"));
    assert_eq!(at_seoul["o3"]["value"], json!(1.0));
    assert!(at_seoul.get("pm25").is_none(), "{at_seoul}");
}

/// Registers `peer` at `hub` for air-quality stations, offering only `operations`.
fn register_with(hub: &Hub, peer: &Hub, id: &str, mode: &str, operations: &[&str]) {
    let registration = json!({
        "id": id,
        "type": "ContextSourceRegistration",
        "information": [{"entities": [{"type": "AirQualityObserved"}]}],
        "endpoint": peer.base,
        "mode": mode,
        "operations": operations,
    });
    assert_eq!(hub.post("/csourceRegistrations", &registration).status().as_u16(), 201);
}

#[test]
fn a_source_that_only_takes_query_batches_is_asked_with_one() {
    let seoul = city(SEOUL_STATIONS);
    let busan = city(BUSAN_STATIONS);
    register_with(&seoul, &busan, "urn:ngsi-ld:ContextSourceRegistration:busan-batch", "inclusive", &["queryBatch"]);

    let (status, ids, warnings, extra) = query(&seoul, "/entities?type=AirQualityObserved&q=pm25<25");
    assert_eq!(status, 200, "{extra}");
    assert!(warnings.is_empty(), "{warnings:?}");
    assert_eq!(
        ids,
        [
            "urn:ngsi-ld:AirQualityObserved:busan:haeundae",
            "urn:ngsi-ld:AirQualityObserved:busan:jung",
            "urn:ngsi-ld:AirQualityObserved:seoul:gangnam"
        ]
    );
    assert_eq!(extra["body"][1]["pm25"]["value"], json!(22.0), "busan's station comes whole");

    // A retrieval is a query by id for such a source.
    let (status, one) = seoul.get_json("/entities/urn:ngsi-ld:AirQualityObserved:busan:jung?options=keyValues");
    assert_eq!(status, 200, "{one}");
    assert_eq!(one["pm25"], json!(22.0));
    assert_eq!(one["location"]["coordinates"], json!([129.032, 35.106]));
    let (status, _) = seoul.get_json("/entities/urn:ngsi-ld:AirQualityObserved:busan:nowhere");
    assert_eq!(status, 404);

    // A query posted as a Query body goes on as one.
    let body = json!({"type": "Query", "entities": [{"type": "AirQualityObserved"}], "q": "pm25>20;pm25<30"});
    let (status, found) = json_of(seoul.post("/entityOperations/query", &body));
    assert_eq!(status, 200, "{found}");
    let found: Vec<&str> = found.as_array().unwrap().iter().map(|e| e["id"].as_str().unwrap()).collect();
    assert_eq!(found, ["urn:ngsi-ld:AirQualityObserved:busan:jung", "urn:ngsi-ld:AirQualityObserved:seoul:gangnam"]);
}

#[test]
fn an_inclusive_write_the_peer_rejects_answers_207() {
    let seoul = city(SEOUL_STATIONS);
    let busan = city(BUSAN_STATIONS);
    let registration_id = "urn:ngsi-ld:ContextSourceRegistration:busan-copy";
    register_with(&seoul, &busan, registration_id, "inclusive", &["redirectionOps"]);

    // Busan already holds the station: it refuses the copy, Seoul takes it.
    let (id, lon, lat, pm25) = BUSAN_STATIONS[0];
    let (status, body) = json_of(seoul.post("/entities", &station(id, lon, lat, pm25)));
    assert_eq!(status, 207, "{body}");
    assert_eq!(body["success"], json!([id]));
    let errors = body["errors"].as_array().unwrap();
    assert_eq!(errors.len(), 1, "{body}");
    assert_eq!(errors[0]["entityId"], json!(id));
    assert_eq!(errors[0]["registrationId"], json!(registration_id));
    assert_eq!(errors[0]["error"]["status"], json!(409));
    assert_eq!(errors[0]["error"]["type"], json!("https://uri.etsi.org/ngsi-ld/errors/AlreadyExists"));
    let (status, _) = seoul.get_json(&format!("/entities/{id}?local=true"));
    assert_eq!(status, 200, "seoul holds its copy");

    // A new station goes to both: 201.
    let new = station("urn:ngsi-ld:AirQualityObserved:busan:gijang", 129.2, 35.24, 12.0);
    assert_eq!(seoul.post("/entities", &new).status().as_u16(), 201);
    let (status, at_busan) = busan.get_json("/entities/urn:ngsi-ld:AirQualityObserved:busan:gijang");
    assert_eq!((status, at_busan["pm25"]["value"].clone()), (200, json!(12.0)));

    // Deleting a station only Seoul holds: Busan answers 404, Seoul deletes.
    let seoul_only = SEOUL_STATIONS[0].0;
    let (status, body) = json_of(seoul.delete(&format!("/entities/{seoul_only}")).send().unwrap());
    assert_eq!(status, 207, "{body}");
    assert_eq!(body["success"], json!([seoul_only]));
    assert_eq!(body["errors"][0]["registrationId"], json!(registration_id));
    assert_eq!(body["errors"][0]["error"]["status"], json!(404));
    let (status, _) = seoul.get_json(&format!("/entities/{seoul_only}?local=true"));
    assert_eq!(status, 404);

    // Where both fail, each failure is listed.
    let (status, body) = json_of(seoul.delete(&format!("/entities/{seoul_only}")).send().unwrap());
    assert_eq!(status, 207, "{body}");
    assert_eq!(body["success"], json!([]));
    let statuses: Vec<&Value> = body["errors"].as_array().unwrap().iter().map(|e| &e["error"]["status"]).collect();
    assert_eq!(statuses, [&json!(404), &json!(404)]);
}

#[test]
fn a_purge_is_forwarded_to_the_sources_it_concerns() {
    let seoul = city(SEOUL_STATIONS);
    let busan = city(BUSAN_STATIONS);
    register_with(
        &seoul,
        &busan,
        "urn:ngsi-ld:ContextSourceRegistration:busan-purge",
        "inclusive",
        &["redirectionOps"],
    );
    let parking = json!({"id": "urn:ngsi-ld:ParkingSpot:busan:1", "type": "ParkingSpot",
        "status": {"type": "Property", "value": "free"}});
    assert_eq!(busan.post("/entities", &parking).status().as_u16(), 201);

    let response = seoul.delete("/entities?type=AirQualityObserved&q=pm25<30").send().unwrap();
    assert_eq!(response.status().as_u16(), 204);
    let (_, left_at_seoul, _, _) = query(&seoul, "/entities?type=AirQualityObserved&local=true");
    assert_eq!(
        left_at_seoul,
        ["urn:ngsi-ld:AirQualityObserved:seoul:jongno", "urn:ngsi-ld:AirQualityObserved:seoul:mapo"],
        "pm25 of 30 and more is kept"
    );
    let (_, left_at_busan, _, _) = query(&busan, "/entities?type=AirQualityObserved");
    assert!(left_at_busan.is_empty(), "busan purged its stations too: {left_at_busan:?}");
    let (status, _) = busan.get_json("/entities/urn:ngsi-ld:ParkingSpot:busan:1");
    assert_eq!(status, 200, "another type is not the purge's business");

    // local=true keeps a purge at the hub.
    let again = json!({"id": "urn:ngsi-ld:AirQualityObserved:busan:x", "type": "AirQualityObserved"});
    assert_eq!(busan.post("/entities", &again).status().as_u16(), 201);
    assert_eq!(seoul.delete("/entities?type=AirQualityObserved&local=true").send().unwrap().status().as_u16(), 204);
    let (_, left_at_busan, _, _) = query(&busan, "/entities?type=AirQualityObserved");
    assert_eq!(left_at_busan, ["urn:ngsi-ld:AirQualityObserved:busan:x"]);
}

#[test]
fn types_and_attributes_include_what_the_sources_hold() {
    let seoul = city(SEOUL_STATIONS);
    let busan = city(BUSAN_STATIONS);
    let weather = json!({"id": "urn:ngsi-ld:WeatherObserved:busan:1", "type": "WeatherObserved",
        "temperature": {"type": "Property", "value": 21.5}});
    assert_eq!(busan.post("/entities", &weather).status().as_u16(), 201);
    let parking = json!({"id": "urn:ngsi-ld:ParkingSpot:busan:1", "type": "ParkingSpot",
        "status": {"type": "Property", "value": "free"}});
    assert_eq!(busan.post("/entities", &parking).status().as_u16(), 201);
    // Busan is registered for stations and weather, not for parking.
    let registration = json!({
        "type": "ContextSourceRegistration",
        "information": [{"entities": [{"type": "AirQualityObserved"}, {"type": "WeatherObserved"}]}],
        "endpoint": busan.base,
    });
    assert_eq!(seoul.post("/csourceRegistrations", &registration).status().as_u16(), 201);

    let (status, types) = seoul.get_json("/types");
    assert_eq!(status, 200, "{types}");
    assert_eq!(types["type"], json!("EntityTypeList"));
    assert_eq!(types["typeList"], json!(["AirQualityObserved", "WeatherObserved"]));
    let (_, local) = seoul.get_json("/types?local=true");
    assert_eq!(local["typeList"], json!(["AirQualityObserved"]));

    let (status, details) = seoul.get_json("/types?details=true");
    assert_eq!(status, 200, "{details}");
    assert_eq!(details[1]["typeName"], json!("WeatherObserved"));
    assert_eq!(details[1]["attributeNames"], json!(["temperature"]));

    let (status, attributes) = seoul.get_json("/attributes");
    assert_eq!(status, 200, "{attributes}");
    let mut names: Vec<&str> =
        attributes["attributeList"].as_array().unwrap().iter().map(|n| n.as_str().unwrap()).collect();
    names.sort_unstable();
    assert_eq!(names, ["location", "pm25", "temperature"], "busan's parking status is not registered");
    let (_, details) = seoul.get_json("/attributes?details=true");
    let temperature = details.as_array().unwrap().iter().find(|a| a["attributeName"] == "temperature").unwrap();
    assert_eq!(temperature["typeNames"], json!(["WeatherObserved"]));
}

#[test]
fn a_csource_subscription_hears_of_new_registrations() {
    let seoul = city(SEOUL_STATIONS);
    let busan = city(BUSAN_STATIONS);
    let receiver = common::Receiver::start();
    let subscription = json!({
        "id": "urn:ngsi-ld:Subscription:csr-watch",
        "type": "Subscription",
        "entities": [{"type": "AirQualityObserved"}],
        "notification": {"endpoint": {"uri": receiver.url("/notify"), "accept": "application/json"}},
    });
    assert_eq!(seoul.post("/csourceSubscriptions", &subscription).status().as_u16(), 201);
    let (status, shown) = seoul.get_json("/csourceSubscriptions/urn:ngsi-ld:Subscription:csr-watch");
    assert_eq!(status, 200);
    assert_eq!(shown["id"], json!("urn:ngsi-ld:Subscription:csr-watch"));
    federate(&seoul, &busan);
    let got = receiver.wait_for("urn:ngsi-ld:Subscription:csr-watch", 1, std::time::Duration::from_secs(10));
    assert_eq!(got[0]["triggerReason"], json!("newlyMatching"));
    assert_eq!(got[0]["data"][0]["endpoint"], json!(busan.base));
    let response = seoul.delete("/csourceSubscriptions/urn:ngsi-ld:Subscription:csr-watch").send().unwrap();
    assert_eq!(response.status().as_u16(), 204);
}

/// Records `values` (observed at the given times) in the history of station `id` at `hub`.
fn record_history(hub: &Hub, id: &str, values: &[(f64, &str)]) {
    let instances: Vec<Value> =
        values.iter().map(|(v, at)| json!({"type": "Property", "value": v, "observedAt": at})).collect();
    let body = json!({"id": id, "type": "AirQualityObserved", "pm25": instances});
    let status = hub.post("/temporal/entities", &body).status().as_u16();
    assert!(status == 201 || status == 204, "history of {id} recorded: {status}");
}

fn pm25_history(entity: &Value) -> Vec<(Value, Value)> {
    entity["pm25"].as_array().unwrap().iter().map(|i| (i["value"].clone(), i["observedAt"].clone())).collect()
}

#[test]
fn temporal_reads_merge_the_history_the_peer_holds() {
    let seoul = city(SEOUL_STATIONS);
    let busan = city(BUSAN_STATIONS);
    federate(&seoul, &busan);
    let haeundae = BUSAN_STATIONS[0].0;
    record_history(&busan, haeundae, &[(11.0, "2024-05-02T09:00:00Z"), (13.0, "2024-05-03T09:00:00Z")]);
    // A station both hubs observe: each holds part of its history.
    let shared = "urn:ngsi-ld:AirQualityObserved:shared:border";
    record_history(&seoul, shared, &[(1.0, "2024-05-01T00:00:00Z"), (3.0, "2024-05-03T00:00:00Z")]);
    record_history(&busan, shared, &[(2.0, "2024-05-02T00:00:00Z"), (4.0, "2024-05-04T00:00:00Z")]);

    // A query lists both cities' stations, the busan one with busan's history.
    let (status, ids, warnings, extra) = query(
        &seoul,
        "/temporal/entities?type=AirQualityObserved&attrs=pm25&timerel=after&timeAt=2024-05-01T12:00:00Z",
    );
    assert_eq!(status, 200, "{extra}");
    assert!(warnings.is_empty(), "{warnings:?}");
    assert_eq!(ids, [haeundae, shared], "only entities with history in the window");
    let body = &extra["body"];
    assert_eq!(
        pm25_history(&body[0]),
        [(json!(11.0), json!("2024-05-02T09:00:00Z")), (json!(13.0), json!("2024-05-03T09:00:00Z"))]
    );
    let values: Vec<Value> = pm25_history(&body[1]).into_iter().map(|(v, _)| v).collect();
    assert_eq!(values, [json!(2.0), json!(3.0), json!(4.0)], "both hubs' instances, in time order");

    // A retrieval merges per attribute too; lastN counts over the merged history.
    let (status, entity) = seoul.get_json(&format!("/temporal/entities/{shared}?lastN=3"));
    assert_eq!(status, 200, "{entity}");
    let values: Vec<Value> = pm25_history(&entity).into_iter().map(|(v, _)| v).collect();
    assert_eq!(values, [json!(2.0), json!(3.0), json!(4.0)]);
    let (status, entity) = seoul.get_json(&format!("/temporal/entities/{shared}?options=temporalValues"));
    assert_eq!(status, 200, "{entity}");
    assert_eq!(entity["pm25"]["values"].as_array().unwrap().len(), 4);

    // Aggregation is asked of the source: its station is aggregated there.
    let (status, entity) = seoul.get_json(&format!(
        "/temporal/entities/{haeundae}?options=aggregatedValues&aggrMethods=max,totalCount&aggrPeriodDuration=P1Y"
    ));
    assert_eq!(status, 200, "{entity}");
    assert_eq!(entity["pm25"]["max"][0][0], json!(18.0), "{entity}");
    assert_eq!(entity["pm25"]["totalCount"][0][0], json!(3), "{entity}");

    // local=true keeps it at the hub.
    let (status, entity) = seoul.get_json(&format!("/temporal/entities/{shared}?local=true"));
    assert_eq!(status, 200);
    assert_eq!(pm25_history(&entity).len(), 2);
    let (status, _) = seoul.get_json(&format!("/temporal/entities/{haeundae}?local=true"));
    assert_eq!(status, 404);

    // A source that cannot be reached is a warning, not a failure.
    let dead = json!({
        "id": "urn:ngsi-ld:ContextSourceRegistration:dead",
        "type": "ContextSourceRegistration",
        "information": [{"entities": [{"type": "AirQualityObserved"}]}],
        "endpoint": format!("http://127.0.0.1:{}", common::free_port()),
        "operations": ["queryTemporal"],
    });
    assert_eq!(seoul.post("/csourceRegistrations", &dead).status().as_u16(), 201);
    let (status, ids, warnings, _) = query(&seoul, "/temporal/entities?type=AirQualityObserved&attrs=pm25");
    assert_eq!(status, 200);
    assert!(ids.contains(&haeundae.to_owned()), "{ids:?}");
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(warnings[0].contains("urn:ngsi-ld:ContextSourceRegistration:dead"), "{warnings:?}");
}

#[test]
fn one_type_and_one_attribute_show_what_both_hubs_hold() {
    let seoul = city(SEOUL_STATIONS);
    let busan = city(BUSAN_STATIONS);
    let with_no2 = json!({"id": "urn:ngsi-ld:AirQualityObserved:busan:no2", "type": "AirQualityObserved",
        "no2": {"type": "Property", "value": 0.02}});
    assert_eq!(busan.post("/entities", &with_no2).status().as_u16(), 201);
    federate(&seoul, &busan);

    let (status, info) = seoul.get_json("/types/AirQualityObserved");
    assert_eq!(status, 200, "{info}");
    assert_eq!(info["type"], json!("EntityTypeInfo"));
    assert_eq!(info["entityCount"], json!(6), "three stations here, three at busan");
    let mut names: Vec<&str> =
        info["attributeDetails"].as_array().unwrap().iter().map(|a| a["attributeName"].as_str().unwrap()).collect();
    names.sort_unstable();
    assert_eq!(names, ["location", "no2", "pm25"]);
    let (_, local) = seoul.get_json("/types/AirQualityObserved?local=true");
    assert_eq!(local["entityCount"], json!(3));

    let (status, no2) = seoul.get_json("/attributes/no2");
    assert_eq!(status, 200, "{no2}");
    assert_eq!(no2["attributeCount"], json!(1));
    assert_eq!(no2["attributeTypes"], json!(["Property"]));
    assert_eq!(no2["typeNames"], json!(["AirQualityObserved"]));
    let (status, pm25) = seoul.get_json("/attributes/pm25");
    assert_eq!(status, 200, "{pm25}");
    assert_eq!(pm25["attributeCount"], json!(5));
    let (status, _) = seoul.get_json("/attributes/no2?local=true");
    assert_eq!(status, 404);
    let (status, _) = seoul.get_json("/types/Nowhere");
    assert_eq!(status, 404);
}

#[test]
fn batch_errors_of_a_source_carry_its_registration_and_its_error_type() {
    let seoul = city(SEOUL_STATIONS);
    let busan = city(BUSAN_STATIONS);
    let registration_id = "urn:ngsi-ld:ContextSourceRegistration:busan-batch-copy";
    register_with(&seoul, &busan, registration_id, "inclusive", &["createBatch", "upsertBatch"]);

    // Busan already holds haeundae: it refuses that one, everything else is created.
    let (id, lon, lat, pm25) = BUSAN_STATIONS[0];
    let new_id = "urn:ngsi-ld:AirQualityObserved:busan:gijang";
    let batch = json!([station(id, lon, lat, pm25), station(new_id, 129.2, 35.24, 12.0)]);
    let (status, body) = json_of(seoul.post("/entityOperations/create", &batch));
    assert_eq!(status, 207, "{body}");
    assert_eq!(body["success"], json!([new_id]));
    let errors = body["errors"].as_array().unwrap();
    assert_eq!(errors.len(), 1, "{body}");
    assert_eq!(errors[0]["entityId"], json!(id));
    assert_eq!(errors[0]["registrationId"], json!(registration_id));
    assert_eq!(errors[0]["error"]["type"], json!("https://uri.etsi.org/ngsi-ld/errors/AlreadyExists"));
    assert_eq!(errors[0]["error"]["status"], json!(409));

    // An upsert a source cannot take at all: each of its entities is an error of that source.
    let dead_id = "urn:ngsi-ld:ContextSourceRegistration:dead-batch";
    let dead = json!({
        "id": dead_id,
        "type": "ContextSourceRegistration",
        "information": [{"entities": [{"type": "AirQualityObserved"}]}],
        "endpoint": format!("http://127.0.0.1:{}", common::free_port()),
        "operations": ["upsertBatch"],
    });
    assert_eq!(seoul.post("/csourceRegistrations", &dead).status().as_u16(), 201);
    let batch = json!([station(new_id, 129.2, 35.24, 14.0)]);
    let response = seoul.post("/entityOperations/upsert", &batch);
    let warnings = response.headers().get_all("ngsild-warning").iter().count();
    let (status, body) = json_of(response);
    assert_eq!(status, 207, "{body}");
    assert_eq!(warnings, 1);
    let errors = body["errors"].as_array().unwrap();
    assert_eq!(errors.len(), 1, "{body}");
    assert_eq!(errors[0]["entityId"], json!(new_id));
    assert_eq!(errors[0]["registrationId"], json!(dead_id));
    assert_eq!(errors[0]["error"]["type"], json!("https://uri.etsi.org/ngsi-ld/errors/InternalError"));
    let (_, at_busan) = busan.get_json(&format!("/entities/{new_id}"));
    assert_eq!(at_busan["pm25"]["value"], json!(14.0), "busan took its copy");
}
