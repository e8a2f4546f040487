//! Black-box tests of batch operations and purge.

mod common;

use common::*;
use reqwest::Method;
use serde_json::{json, Value};

fn sensor(n: usize, pm25: f64) -> Value {
    json!({"id": format!("urn:ngsi-ld:AirQualityObserved:{n}"), "type": "AirQualityObserved",
           "pm25": {"type": "Property", "value": pm25}})
}

#[test]
fn batch_create_reports_each_entity() {
    let hub = Hub::start();
    let (status, created) = json_of(hub.post("/entityOperations/create", &json!([sensor(1, 10.0), sensor(2, 20.0)])));
    assert_eq!(status, 201);
    assert_eq!(created, json!(["urn:ngsi-ld:AirQualityObserved:1", "urn:ngsi-ld:AirQualityObserved:2"]));

    // One new, one existing, one invalid: 207 with a BatchOperationResult.
    let batch = json!([sensor(3, 30.0), sensor(1, 99.0), {"id": "urn:ngsi-ld:AirQualityObserved:4"}]);
    let (status, result) = json_of(hub.post("/entityOperations/create", &batch));
    assert_eq!(status, 207);
    assert_eq!(result["success"], json!(["urn:ngsi-ld:AirQualityObserved:3"]));
    let errors = result["errors"].as_array().unwrap();
    assert_eq!(errors.len(), 2);
    let error_of = |id: &str| errors.iter().find(|e| e["entityId"] == id).unwrap()["error"]["type"].clone();
    assert_eq!(error_of("urn:ngsi-ld:AirQualityObserved:1"), "https://uri.etsi.org/ngsi-ld/errors/AlreadyExists");
    assert_eq!(error_of("urn:ngsi-ld:AirQualityObserved:4"), "https://uri.etsi.org/ngsi-ld/errors/BadRequestData");
    let (_, one) = hub.get_json("/entities/urn:ngsi-ld:AirQualityObserved:1?options=keyValues");
    assert_eq!(one["pm25"], 10.0, "a failed create leaves the existing entity alone");

    // The same id twice: the first copy is created, the second refused (ETSI 003_10_01); a
    // delete of one id twice deletes it once and reports the second as not found (006_04_01).
    let (status, result) = json_of(hub.post("/entityOperations/create", &json!([sensor(5, 5.0), sensor(5, 6.0)])));
    assert_eq!(status, 207);
    assert_eq!(result["success"], json!(["urn:ngsi-ld:AirQualityObserved:5"]));
    assert_eq!(result["errors"][0]["entityId"], "urn:ngsi-ld:AirQualityObserved:5");
    let (_, five) = hub.get_json("/entities/urn:ngsi-ld:AirQualityObserved:5?options=keyValues");
    assert_eq!(five["pm25"], 5.0);
    let twice = json!(["urn:ngsi-ld:AirQualityObserved:5", "urn:ngsi-ld:AirQualityObserved:5"]);
    let (status, result) = json_of(hub.post("/entityOperations/delete", &twice));
    assert_eq!(status, 207);
    assert_eq!(result["success"], json!(["urn:ngsi-ld:AirQualityObserved:5"]));
    assert_eq!(result["errors"][0]["error"]["status"], 404);

    assert_problem(hub.post("/entityOperations/create", &json!({"not": "an array"})), 400, "BadRequestData");
}

#[test]
fn batch_upsert_replace_and_update() {
    let hub = Hub::start();
    let first = json!([sensor(1, 10.0), sensor(2, 20.0)]);
    let (status, created) = json_of(hub.post("/entityOperations/upsert", &first));
    assert_eq!((status, created.as_array().map(Vec::len)), (201, Some(2)));

    // Replace (the default): the new attribute set replaces the old.
    let replace = json!([{"id": "urn:ngsi-ld:AirQualityObserved:1", "type": "AirQualityObserved", "no2": 5}]);
    assert_eq!(hub.post("/entityOperations/upsert", &replace).status(), 204);
    let (_, e) = hub.get_json("/entities/urn:ngsi-ld:AirQualityObserved:1?options=keyValues");
    assert_eq!(e, json!({"id": "urn:ngsi-ld:AirQualityObserved:1", "type": "AirQualityObserved", "no2": 5}));

    // Update: attributes are merged in.
    let update = json!([{"id": "urn:ngsi-ld:AirQualityObserved:2", "type": "AirQualityObserved", "no2": 6}]);
    assert_eq!(hub.post("/entityOperations/upsert?options=update", &update).status(), 204);
    let (_, e) = hub.get_json("/entities/urn:ngsi-ld:AirQualityObserved:2?options=keyValues");
    assert_eq!((e["pm25"].clone(), e["no2"].clone()), (json!(20.0), json!(6)));
}

#[test]
fn batch_update_merge_and_delete() {
    let hub = Hub::start();
    assert_eq!(hub.post("/entityOperations/create", &json!([sensor(1, 10.0), sensor(2, 20.0)])).status(), 201);

    let update = json!([{"id": "urn:ngsi-ld:AirQualityObserved:1", "pm25": 11.0}, {"id": "urn:ngsi-ld:AirQualityObserved:9", "pm25": 1}]);
    let (status, result) = json_of(hub.post("/entityOperations/update", &update));
    assert_eq!(status, 207);
    assert_eq!(result["success"], json!(["urn:ngsi-ld:AirQualityObserved:1"]));
    assert_eq!(result["errors"][0]["entityId"], "urn:ngsi-ld:AirQualityObserved:9");
    assert_eq!(result["errors"][0]["error"]["status"], 404);

    // noOverwrite keeps what exists, adds what is new, and reports the entity as not fully updated.
    let keep = json!([{"id": "urn:ngsi-ld:AirQualityObserved:1", "pm25": 12.0, "o3": 1}]);
    let (status, result) = json_of(hub.post("/entityOperations/update?options=noOverwrite", &keep));
    assert_eq!(status, 207);
    assert_eq!(result["errors"][0]["entityId"], "urn:ngsi-ld:AirQualityObserved:1");
    assert!(result["errors"][0]["error"]["detail"].as_str().unwrap().contains("pm25"));
    let (_, e) = hub.get_json("/entities/urn:ngsi-ld:AirQualityObserved:1?options=keyValues");
    assert_eq!((e["pm25"].clone(), e["o3"].clone()), (json!(11.0), json!(1)));

    let merge = json!([{"id": "urn:ngsi-ld:AirQualityObserved:2", "pm25": {"unitCode": "GQ"}, "no2": 3}]);
    assert_eq!(hub.post("/entityOperations/merge", &merge).status(), 204);
    let (_, e) = hub.get_json("/entities/urn:ngsi-ld:AirQualityObserved:2");
    assert_eq!(e["pm25"], json!({"type": "Property", "value": 20.0, "unitCode": "GQ"}));
    assert_eq!(e["no2"]["value"], 3);

    let delete = json!(["urn:ngsi-ld:AirQualityObserved:1", "urn:ngsi-ld:AirQualityObserved:404"]);
    let (status, result) = json_of(hub.post("/entityOperations/delete", &delete));
    assert_eq!(status, 207);
    assert_eq!(result["success"], json!(["urn:ngsi-ld:AirQualityObserved:1"]));
    assert_eq!(hub.get_json("/entities/urn:ngsi-ld:AirQualityObserved:1").0, 404);
    assert_eq!(hub.post("/entityOperations/delete", &json!(["urn:ngsi-ld:AirQualityObserved:2"])).status(), 204);
}

#[test]
fn batch_with_per_entity_json_ld_contexts() {
    let hub = Hub::start();
    let batch = json!([
        {"id": "urn:x:a", "type": "Thing", "p": 1, "@context": {"p": "https://a.example/p", "Thing": "https://a.example/Thing"}},
        {"id": "urn:x:b", "type": "Thing", "p": 2, "@context": {"p": "https://b.example/p", "Thing": "https://b.example/Thing"}}
    ]);
    assert_eq!(hub.send_ld(Method::POST, "/entityOperations/create", &batch).send().unwrap().status(), 201);
    let (_, a) = hub.get_json("/entities/urn:x:a");
    let (_, b) = hub.get_json("/entities/urn:x:b");
    assert_eq!(a["https://a.example/p"]["value"], 1);
    assert_eq!(b["https://b.example/p"]["value"], 2);
}

#[test]
fn purge_by_type_and_attribute_drop_keep() {
    let hub = Hub::start();
    let mut batch: Vec<Value> = (1..=5).map(|n| sensor(n, n as f64)).collect();
    batch.push(json!({"id": "urn:ngsi-ld:ParkingSpot:1", "type": "ParkingSpot", "status": "free", "name": "P1"}));
    assert_eq!(hub.post("/entityOperations/create", &Value::Array(batch)).status(), 201);

    assert_problem(hub.delete("/entities").send().unwrap(), 400, "BadRequestData");
    assert_problem(hub.delete("/entities?type=ParkingSpot&keep=a&drop=b").send().unwrap(), 400, "BadRequestData");

    assert_eq!(hub.delete("/entities?type=ParkingSpot&drop=status").send().unwrap().status(), 204);
    let (_, spot) = hub.get_json("/entities/urn:ngsi-ld:ParkingSpot:1?options=keyValues");
    assert_eq!(spot, json!({"id": "urn:ngsi-ld:ParkingSpot:1", "type": "ParkingSpot", "name": "P1"}));

    assert_eq!(hub.delete("/entities?type=AirQualityObserved").send().unwrap().status(), 204);
    let response = hub.get("/entities?type=AirQualityObserved&count=true").send().unwrap();
    assert_eq!(response.headers()["ngsild-results-count"], "0");
    assert_eq!(hub.get_json("/entities/urn:ngsi-ld:ParkingSpot:1").0, 200, "other types survive");
}
