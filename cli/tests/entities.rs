//! Black-box tests of the entity provision and retrieval API against a real `cityhub`.

mod common;

use common::*;
use reqwest::Method;
use serde_json::{json, Value};

fn vehicle(id: &str) -> Value {
    json!({
        "id": id,
        "type": "Vehicle",
        "brandName": {"type": "Property", "value": "Mercedes"},
        "speed": [
            {"type": "Property", "value": 80, "unitCode": "KMH", "observedAt": "2024-05-01T10:00:00Z"},
            {"type": "Property", "value": 81, "datasetId": "urn:ngsi-ld:Dataset:gps"}
        ],
        "isParked": {"type": "Relationship", "object": "urn:ngsi-ld:OffStreetParking:1",
                     "providedBy": {"type": "Relationship", "object": "urn:ngsi-ld:Person:Bob"}},
        "name": {"type": "LanguageProperty", "languageMap": {"en": "Car", "ko": "자동차"}},
        "category": {"type": "VocabProperty", "vocab": "commercial"},
        "config": {"type": "JsonProperty", "json": {"any": ["shape", 1]}},
        "stops": {"type": "ListProperty", "valueList": [1, 2, 3]},
        "location": {"type": "GeoProperty", "value": {"type": "Point", "coordinates": [126.97, 37.56]}}
    })
}

#[test]
fn create_then_retrieve_every_attribute_kind() {
    let hub = Hub::start();
    let id = "urn:ngsi-ld:Vehicle:A1";
    let response = hub.post("/entities", &vehicle(id));
    assert_eq!(response.status(), 201);
    assert_eq!(response.headers()["location"], format!("/ngsi-ld/v1/entities/{id}"));
    assert_eq!(response.text().unwrap(), "", "201 has no body");

    let response = hub.get(&format!("/entities/{id}")).send().unwrap();
    assert_eq!(response.headers()["content-type"], "application/json");
    assert_eq!(response.headers()["link"], link_header(CORE_CONTEXT));
    let (status, body) = json_of(response);
    assert_eq!(status, 200);
    assert_eq!(body, vehicle(id), "normalized retrieval gives back what was created");
}

#[test]
fn retrieval_formats_and_projection() {
    let hub = Hub::start();
    let id = "urn:ngsi-ld:Vehicle:A2";
    assert_eq!(hub.post("/entities", &vehicle(id)).status(), 201);

    let (_, kv) = hub.get_json(&format!("/entities/{id}?options=keyValues&attrs=brandName,isParked"));
    assert_eq!(
        kv,
        json!({"id": id, "type": "Vehicle", "brandName": "Mercedes", "isParked": "urn:ngsi-ld:OffStreetParking:1"})
    );

    let (_, concise) = hub.get_json(&format!("/entities/{id}?format=concise&pick=id,brandName,isParked"));
    assert_eq!(
        concise,
        json!({"id": id, "brandName": "Mercedes",
               "isParked": {"object": "urn:ngsi-ld:OffStreetParking:1", "providedBy": {"object": "urn:ngsi-ld:Person:Bob"}}})
    );

    let (_, omitted) = hub.get_json(&format!("/entities/{id}?omit=speed,name,category,config,stops,location,isParked"));
    assert_eq!(omitted, json!({"id": id, "type": "Vehicle", "brandName": {"type": "Property", "value": "Mercedes"}}));

    let (_, korean) = hub.get_json(&format!("/entities/{id}?attrs=name&lang=ko"));
    assert_eq!(korean["name"], json!({"type": "Property", "value": "자동차", "lang": "ko"}));

    let (_, sys) = hub.get_json(&format!("/entities/{id}?options=sysAttrs&attrs=brandName"));
    let created = sys["createdAt"].as_str().expect("entity createdAt");
    assert_eq!(sys["modifiedAt"].as_str(), Some(created));
    assert!(sys["brandName"]["createdAt"].is_string() && sys["brandName"]["modifiedAt"].is_string());

    let response = hub.get(&format!("/entities/{id}")).header("Accept", "application/ld+json").send().unwrap();
    assert_eq!(response.headers()["content-type"], "application/ld+json");
    assert!(response.headers().get("link").is_none());
    let (_, ld) = json_of(response);
    assert_eq!(ld["@context"], CORE_CONTEXT);

    let response = hub.get(&format!("/entities/{id}")).header("Accept", "application/geo+json").send().unwrap();
    let (_, feature) = json_of(response);
    assert_eq!(feature["type"], "Feature");
    assert_eq!(feature["geometry"], json!({"type": "Point", "coordinates": [126.97, 37.56]}));
    assert_eq!(feature["properties"]["brandName"]["value"], "Mercedes");
}

#[test]
fn user_context_from_link_header_and_body() {
    let hub = Hub::start();
    let ctx = ContextServer::serve(
        json!({"@context": {"Bus": "https://example.org/ns#Bus", "speed": "https://example.org/ns#speed"}}),
    );
    let id = "urn:ngsi-ld:Bus:1";
    let body = json!({"id": id, "type": "Bus", "speed": {"type": "Property", "value": 42}});
    let response =
        hub.send_json(Method::POST, "/entities", &body).header("Link", link_header(&ctx.url)).send().unwrap();
    assert_eq!(response.status(), 201);

    // Without the context, the stored IRIs come back unabbreviated.
    let (_, plain) = hub.get_json(&format!("/entities/{id}"));
    assert_eq!(plain["type"], "https://example.org/ns#Bus");
    assert_eq!(plain["https://example.org/ns#speed"]["value"], 42);

    // With it, the short terms; the same context given inline in a JSON-LD body agrees.
    let response = hub.get(&format!("/entities/{id}")).header("Link", link_header(&ctx.url)).send().unwrap();
    assert_eq!(response.headers()["link"], link_header(&ctx.url));
    let (_, short) = json_of(response);
    assert_eq!(short, body);
    assert_eq!(ctx.hits.load(std::sync::atomic::Ordering::SeqCst), 1, "the remote context is fetched once");

    let inline = json!({"id": "urn:ngsi-ld:Bus:2", "type": "Bus", "speed": 7,
                        "@context": [{"Bus": "https://example.org/ns#Bus", "speed": "https://example.org/ns#speed"}, CORE_CONTEXT]});
    assert_eq!(hub.send_ld(Method::POST, "/entities", &inline).send().unwrap().status(), 201);
    let (_, two) = hub.get_json("/entities/urn:ngsi-ld:Bus:2");
    assert_eq!(two["https://example.org/ns#speed"], json!({"type": "Property", "value": 7}));
}

#[test]
fn context_errors() {
    let hub = Hub::start();
    let body = json!({"id": "urn:ngsi-ld:Bus:9", "type": "Bus", "@context": "http://127.0.0.1:9/nothing-here.jsonld"});
    assert_problem(hub.send_ld(Method::POST, "/entities", &body).send().unwrap(), 503, "LdContextNotAvailable");
    let no_context = json!({"id": "urn:ngsi-ld:Bus:9", "type": "Bus"});
    assert_problem(hub.send_ld(Method::POST, "/entities", &no_context).send().unwrap(), 400, "BadRequestData");
    let with_context = json!({"id": "urn:ngsi-ld:Bus:9", "type": "Bus", "@context": CORE_CONTEXT});
    assert_problem(hub.send_json(Method::POST, "/entities", &with_context).send().unwrap(), 400, "BadRequestData");
    let response =
        hub.send_ld(Method::POST, "/entities", &with_context).header("Link", link_header(CORE_CONTEXT)).send().unwrap();
    assert_problem(response, 400, "BadRequestData");
    assert_eq!(hub.get_json("/entities/urn:ngsi-ld:Bus:9").0, 404, "nothing was created by rejected requests");
}

#[test]
fn create_errors_change_nothing() {
    let hub = Hub::start();
    let id = "urn:ngsi-ld:Vehicle:E1";
    assert_eq!(hub.post("/entities", &vehicle(id)).status(), 201);
    let (_, before) = hub.get_json(&format!("/entities/{id}?options=sysAttrs"));

    assert_problem(hub.post("/entities", &vehicle(id)), 409, "AlreadyExists");
    let bad_json =
        hub.client.post(hub.url("/entities")).header("Content-Type", "application/json").body("{\"id\": ").send();
    assert_problem(bad_json.unwrap(), 400, "InvalidRequest");
    let empty = hub.client.post(hub.url("/entities")).header("Content-Type", "application/json").body("").send();
    assert_problem(empty.unwrap(), 400, "InvalidRequest");
    assert_problem(hub.post("/entities", &json!({"id": "not a uri", "type": "T"})), 400, "BadRequestData");
    assert_problem(hub.post("/entities", &json!({"id": "urn:x:no-type"})), 400, "BadRequestData");
    assert_problem(hub.post("/entities", &json!({"id": "urn:x:1", "type": "T", "bad name": 1})), 400, "BadRequestData");
    assert_problem(
        hub.post("/entities", &json!({"id": "urn:x:1", "type": "T", "r": {"type": "Relationship", "object": "no"}})),
        400,
        "BadRequestData",
    );
    let xml = hub.client.post(hub.url("/entities")).header("Content-Type", "application/xml").body("<a/>").send();
    assert_problem(xml.unwrap(), 415, "about:blank");
    // Without a Content-Type the body is read as JSON: broken JSON is a 400, good JSON is created.
    let untyped_broken = hub.client.post(hub.url("/entities")).body("{\"id\": ").send();
    assert_problem(untyped_broken.unwrap(), 400, "InvalidRequest");
    let untyped = hub.client.post(hub.url("/entities")).body(r#"{"id": "urn:x:untyped", "type": "T"}"#).send();
    assert_eq!(untyped.unwrap().status(), 201);
    let stored: Value = hub.get("/entities/urn:x:untyped").send().unwrap().json().unwrap();
    assert_eq!(stored["type"], "T");
    assert_problem(
        hub.get(&format!("/entities/{id}")).header("Accept", "application/xml").send().unwrap(),
        406,
        "about:blank",
    );
    assert_problem(hub.get("/entities/urn:x:missing").send().unwrap(), 404, "ResourceNotFound");
    assert_problem(hub.get(&format!("/entities/{id}?invalid=1")).send().unwrap(), 400, "InvalidRequest");
    assert_problem(
        hub.send_json(Method::POST, &format!("/entities/{id}"), &json!({})).send().unwrap(),
        405,
        "about:blank",
    );
    assert_problem(hub.send_json(Method::PATCH, "/entities/", &json!({"a": 1})).send().unwrap(), 400, "BadRequestData");

    let (_, after) = hub.get_json(&format!("/entities/{id}?options=sysAttrs"));
    assert_eq!(before, after);
}

#[test]
fn body_size_limit_answers_413() {
    let hub = Hub::start_with(&["--max-body-bytes", "1024"]);
    let big = json!({"id": "urn:x:big", "type": "T", "blob": "x".repeat(4096)});
    assert_problem(hub.post("/entities", &big), 413, "about:blank");
    assert_eq!(hub.get_json("/entities/urn:x:big").0, 404);
}

#[test]
fn attribute_operations() {
    let hub = Hub::start();
    let id = "urn:ngsi-ld:Vehicle:B1";
    let path = format!("/entities/{id}");
    assert_eq!(hub.post("/entities", &vehicle(id)).status(), 201);

    // Append with noOverwrite: the existing attribute is reported, the new one added.
    let response = hub.post(&format!("{path}/attrs?options=noOverwrite"), &json!({"brandName": "Kia", "fuel": 50}));
    let (status, report) = json_of(response);
    assert_eq!(status, 207);
    // UpdateResult names are the expanded IRIs (as the conformance suite expects).
    assert_eq!(report["updated"], json!(["https://uri.etsi.org/ngsi-ld/default-context/fuel"]));
    assert_eq!(report["notUpdated"][0]["attributeName"], "https://uri.etsi.org/ngsi-ld/default-context/brandName");
    let (_, e) = hub.get_json(&format!("{path}?options=keyValues&attrs=brandName,fuel"));
    assert_eq!((e["brandName"].clone(), e["fuel"].clone()), (json!("Mercedes"), json!(50)));

    // Append without noOverwrite replaces.
    assert_eq!(hub.post(&format!("{path}/attrs"), &json!({"brandName": "Kia"})).status(), 204);

    // Update: replaces what exists, adds what does not, and reports a scope the entity lacks.
    let response = hub
        .send_json(Method::PATCH, &format!("{path}/attrs"), &json!({"fuel": 40, "seats": 4, "scope": "/Seoul"}))
        .send()
        .unwrap();
    let (status, report) = json_of(response);
    assert_eq!(status, 207);
    assert_eq!(report["notUpdated"][0]["attributeName"], "https://uri.etsi.org/ngsi-ld/scope");
    let (_, e) = hub.get_json(&format!("{path}?options=keyValues&attrs=fuel,seats"));
    assert_eq!((e["fuel"].clone(), e["seats"].clone(), e.get("scope")), (json!(40), json!(4), None));

    // Partial update keeps the members it does not name.
    let response = hub.send_json(Method::PATCH, &format!("{path}/attrs/speed"), &json!({"value": 99})).send().unwrap();
    assert_eq!(response.status(), 204);
    let (_, e) = hub.get_json(&format!("{path}?attrs=speed"));
    let default_speed = e["speed"].as_array().unwrap().iter().find(|s| s.get("datasetId").is_none()).unwrap().clone();
    assert_eq!(
        default_speed,
        json!({"type": "Property", "value": 99, "unitCode": "KMH", "observedAt": "2024-05-01T10:00:00Z"})
    );

    // Replace one instance by datasetId.
    let response = hub
        .send_json(
            Method::PUT,
            &format!("{path}/attrs/speed"),
            &json!({"type": "Property", "value": 1, "datasetId": "urn:ngsi-ld:Dataset:gps"}),
        )
        .send()
        .unwrap();
    assert_eq!(response.status(), 204);
    assert_problem(
        hub.send_json(Method::PUT, &format!("{path}/attrs/nothing"), &json!({"type": "Property", "value": 1}))
            .send()
            .unwrap(),
        404,
        "ResourceNotFound",
    );

    // Delete one instance, then all.
    assert_eq!(
        hub.delete(&format!("{path}/attrs/speed?datasetId=urn:ngsi-ld:Dataset:gps")).send().unwrap().status(),
        204
    );
    let (_, e) = hub.get_json(&format!("{path}?attrs=speed"));
    assert_eq!(e["speed"]["value"], 99, "one instance left, shown as an object");
    assert_eq!(hub.delete(&format!("{path}/attrs/speed?deleteAll=true")).send().unwrap().status(), 204);
    assert_problem(hub.delete(&format!("{path}/attrs/speed")).send().unwrap(), 404, "ResourceNotFound");
}

#[test]
fn replace_merge_and_delete_entity() {
    let hub = Hub::start();
    let id = "urn:ngsi-ld:Vehicle:C1";
    let path = format!("/entities/{id}");
    assert_eq!(hub.post("/entities", &vehicle(id)).status(), 201);
    let (_, before) = hub.get_json(&format!("{path}?options=sysAttrs"));

    let response = hub
        .send_json(
            Method::PATCH,
            &path,
            &json!({"brandName": {"value": "Hyundai"}, "stops": "urn:ngsi-ld:null", "seats": 5}),
        )
        .header("Content-Type", "application/merge-patch+json")
        .send()
        .unwrap();
    assert_eq!(response.status(), 204);
    let (_, merged) = hub.get_json(&format!("{path}?options=keyValues"));
    assert_eq!(merged["brandName"], "Hyundai");
    assert_eq!(merged["seats"], 5);
    assert!(merged.get("stops").is_none(), "null deletes in a merge");

    let response = hub.send_json(Method::PUT, &path, &json!({"type": "Vehicle", "colour": "red"})).send().unwrap();
    assert_eq!(response.status(), 204);
    let (_, replaced) = hub.get_json(&format!("{path}?options=sysAttrs,keyValues"));
    assert_eq!(replaced["colour"], "red");
    assert!(replaced.get("brandName").is_none());
    let (_, replaced) = hub.get_json(&format!("{path}?options=sysAttrs"));
    assert_eq!(replaced["createdAt"], before["createdAt"], "replace keeps the creation time");

    assert_eq!(hub.delete(&path).send().unwrap().status(), 204);
    assert_problem(hub.get(&path).send().unwrap(), 404, "ResourceNotFound");
    assert_problem(hub.delete(&path).send().unwrap(), 404, "ResourceNotFound");
}

#[test]
fn tenants_are_isolated() {
    let hub = Hub::start();
    let entity = json!({"id": "urn:ngsi-ld:Sensor:T1", "type": "Sensor", "v": 1});
    let response = hub.send_json(Method::POST, "/entities", &entity).header("NGSILD-Tenant", "busan").send().unwrap();
    assert_eq!(response.status(), 201);
    assert_problem(hub.get("/entities/urn:ngsi-ld:Sensor:T1").send().unwrap(), 404, "ResourceNotFound");
    let (status, body) =
        json_of(hub.get("/entities/urn:ngsi-ld:Sensor:T1").header("NGSILD-Tenant", "busan").send().unwrap());
    assert_eq!((status, body["v"]["value"].clone()), (200, json!(1)));
    assert_problem(
        hub.get("/entities/urn:ngsi-ld:Sensor:T1").header("NGSILD-Tenant", "nowhere").send().unwrap(),
        404,
        "NonexistentTenant",
    );
    let (_, list) = json_of(hub.get("/entities?type=Sensor").send().unwrap());
    assert_eq!(list, json!([]));
}
