//! Black-box tests of queries (q, scopeQ, geo, types, paging) and discovery.

mod common;

use common::*;
use reqwest::Method;
use serde_json::{json, Value};

/// Stations around Seoul City Hall (126.9780, 37.5665), at known distances north of it.
fn seed(hub: &Hub) {
    let station = |n: u32, dlat: f64, pm25: f64, level: &str, scope: &str, district: &str| {
        json!({
            "id": format!("urn:ngsi-ld:AirQualityObserved:{n}"), "type": "AirQualityObserved",
            "pm25": {"type": "Property", "value": pm25, "observedAt": format!("2026-11-2{n}T08:00:00Z")},
            "airQualityLevel": {"type": "Property", "value": level},
            "refArea": {"type": "Relationship", "object": format!("urn:ngsi-ld:AdministrativeArea:{district}")},
            "address": {"type": "Property", "value": {"district": district, "city": "Seoul"}},
            "location": {"type": "GeoProperty", "value": {"type": "Point", "coordinates": [126.9780, 37.5665 + dlat]}},
            "scope": scope
        })
    };
    let batch = json!([
        station(1, 0.0, 8.0, "good", "/Seoul/Jongno", "Jongno"),
        station(2, 0.005, 22.5, "moderate", "/Seoul/Jongno/Sajik", "Jongno"),   // ~556 m north
        station(3, 0.02, 40.0, "unhealthy", "/Seoul/Gangnam", "Gangnam"),       // ~2.2 km north
        station(4, 0.2, 12.0, "good", "/Busan", "Haeundae"),                    // ~22 km north
        {"id": "urn:ngsi-ld:ParkingSpot:1", "type": ["ParkingSpot", "Asset"], "status": "free",
         "location": {"type": "GeoProperty", "value": {"type": "Point", "coordinates": [126.9785, 37.5667]}}}
    ]);
    assert_eq!(hub.post("/entityOperations/create", &batch).status(), 201);
}

fn ids(body: &Value) -> Vec<String> {
    let mut ids: Vec<String> = body.as_array().unwrap().iter().map(|e| e["id"].as_str().unwrap().to_owned()).collect();
    ids.sort();
    ids
}

fn query_ids(hub: &Hub, query: &str) -> Vec<String> {
    let (status, body) = hub.get_json(&format!("/entities?{query}"));
    assert_eq!(status, 200, "{query}: {body}");
    ids(&body)
}

fn aq(ns: &[u32]) -> Vec<String> {
    ns.iter().map(|n| format!("urn:ngsi-ld:AirQualityObserved:{n}")).collect()
}

#[test]
fn q_language() {
    let hub = Hub::start();
    seed(&hub);
    let t = "type=AirQualityObserved";
    assert_eq!(query_ids(&hub, &format!("{t}&q=pm25>20")), aq(&[2, 3]));
    assert_eq!(query_ids(&hub, &format!("{t}&q=pm25==10..30")), aq(&[2, 4]));
    assert_eq!(query_ids(&hub, &format!("{t}&q=airQualityLevel==%22good%22,%22unhealthy%22")), aq(&[1, 3, 4]));
    assert_eq!(query_ids(&hub, &format!("{t}&q=pm25<20;airQualityLevel!=%22good%22")), Vec::<String>::new());
    assert_eq!(query_ids(&hub, &format!("{t}&q=pm25<10|pm25>30")), aq(&[1, 3]));
    assert_eq!(query_ids(&hub, &format!("{t}&q=(pm25<10|pm25>30);airQualityLevel==%22good%22")), aq(&[1]));
    assert_eq!(query_ids(&hub, &format!("{t}&q=refArea==%22urn:ngsi-ld:AdministrativeArea:Jongno%22")), aq(&[1, 2]));
    assert_eq!(query_ids(&hub, &format!("{t}&q=address[district]==%22Gangnam%22")), aq(&[3]));
    assert_eq!(query_ids(&hub, &format!("{t}&q=pm25.observedAt>=2026-11-23T00:00:00Z")), aq(&[3, 4]));
    assert_eq!(query_ids(&hub, &format!("{t}&q=airQualityLevel~=^mod")), aq(&[2]));
    assert_eq!(query_ids(&hub, "q=status"), vec!["urn:ngsi-ld:ParkingSpot:1".to_owned()]);
    let error =
        assert_problem(hub.get("/entities?type=AirQualityObserved&q=pm25>>1").send().unwrap(), 400, "BadRequestData");
    assert!(error["detail"].as_str().unwrap().contains("position 5"), "the error names the position: {error}");
}

#[test]
fn types_scopes_ids_and_attrs() {
    let hub = Hub::start();
    seed(&hub);
    assert_eq!(query_ids(&hub, "type=ParkingSpot;Asset"), vec!["urn:ngsi-ld:ParkingSpot:1".to_owned()]);
    assert_eq!(query_ids(&hub, "type=ParkingSpot;AirQualityObserved").len(), 0);
    assert_eq!(query_ids(&hub, "type=Asset,AirQualityObserved").len(), 5);
    assert_eq!(query_ids(&hub, "scopeQ=/Seoul/%23"), aq(&[1, 2, 3]));
    assert_eq!(query_ids(&hub, "scopeQ=/Seoul/%2B"), aq(&[1, 3]));
    assert_eq!(query_ids(&hub, "scopeQ=/Busan,/Seoul/Gangnam"), aq(&[3, 4]));
    assert_eq!(query_ids(&hub, "type=AirQualityObserved&idPattern=.*:[12]$"), aq(&[1, 2]));
    assert_eq!(query_ids(&hub, "type=AirQualityObserved&id=urn:ngsi-ld:AirQualityObserved:4"), aq(&[4]));
    assert_eq!(query_ids(&hub, "attrs=status"), vec!["urn:ngsi-ld:ParkingSpot:1".to_owned()]);
    assert_problem(hub.get("/entities?id=urn:ngsi-ld:AirQualityObserved:4").send().unwrap(), 400, "BadRequestData");
    assert_problem(hub.get("/entities?scopeQ=Seoul").send().unwrap(), 400, "BadRequestData");
    assert_problem(hub.get("/entities?type=A,").send().unwrap(), 400, "BadRequestData");
}

#[test]
fn geo_queries() {
    let hub = Hub::start();
    seed(&hub);
    let near = |d: u32| {
        format!("type=AirQualityObserved&georel=near;maxDistance=={d}&geometry=Point&coordinates=[126.9780,37.5665]")
    };
    assert_eq!(query_ids(&hub, &near(100)), aq(&[1]));
    assert_eq!(query_ids(&hub, &near(1000)), aq(&[1, 2]));
    assert_eq!(query_ids(&hub, &near(3000)), aq(&[1, 2, 3]));
    let far = "type=AirQualityObserved&georel=near;minDistance==3000&geometry=Point&coordinates=[126.9780,37.5665]";
    assert_eq!(query_ids(&hub, far), aq(&[4]));
    let box_around_city_hall = "[[[126.97,37.56],[126.99,37.56],[126.99,37.575],[126.97,37.575],[126.97,37.56]]]";
    assert_eq!(
        query_ids(
            &hub,
            &format!("type=AirQualityObserved&georel=within&geometry=Polygon&coordinates={box_around_city_hall}")
        ),
        aq(&[1, 2])
    );
    assert_eq!(
        query_ids(
            &hub,
            &format!("type=AirQualityObserved&georel=disjoint&geometry=Polygon&coordinates={box_around_city_hall}")
        ),
        aq(&[3, 4])
    );
    let open_ring = "[[[126.97,37.56],[126.99,37.56],[126.99,37.575],[126.97,37.575]]]";
    assert_problem(
        hub.get(&format!("/entities?type=AirQualityObserved&georel=within&geometry=Polygon&coordinates={open_ring}"))
            .send()
            .unwrap(),
        400,
        "BadRequestData",
    );
    assert_problem(
        hub.get("/entities?type=AirQualityObserved&georel=near;maxDistance==5").send().unwrap(),
        400,
        "BadRequestData",
    );

    let response =
        hub.get(&format!("/entities?{}", near(1000))).header("Accept", "application/geo+json").send().unwrap();
    assert_eq!(response.headers()["content-type"], "application/geo+json");
    let (_, collection) = json_of(response);
    assert_eq!(collection["type"], "FeatureCollection");
    assert_eq!(collection["features"].as_array().unwrap().len(), 2);
    assert_eq!(collection["features"][0]["geometry"]["type"], "Point");
}

/// The paging `Link` headers of a GET (the @context link aside).
fn response_links(hub: &Hub, path: &str) -> Vec<String> {
    let response = hub.get(path).send().unwrap();
    assert_eq!(response.status(), 200);
    response
        .headers()
        .get_all("link")
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .filter(|v| v.contains("rel=\"prev\"") || v.contains("rel=\"next\""))
        .collect()
}

#[test]
fn paging_count_and_post_query() {
    let hub = Hub::start();
    seed(&hub);
    let response = hub.get("/entities?type=AirQualityObserved&limit=2&offset=1&count=true").send().unwrap();
    assert_eq!(response.headers()["ngsild-results-count"], "4");
    let (_, body) = json_of(response);
    assert_eq!(ids(&body), aq(&[2, 3]));
    let links = response_links(&hub, "/entities?type=AirQualityObserved&limit=2&offset=1&count=true");
    assert_eq!(
        links,
        [
            "</ngsi-ld/v1/entities?type=AirQualityObserved&count=true&limit=2&offset=0>; rel=\"prev\"",
            "</ngsi-ld/v1/entities?type=AirQualityObserved&count=true&limit=2&offset=3>; rel=\"next\"",
        ]
    );
    // Following next to the end: the last page has no next link.
    let last = response_links(&hub, "/entities?type=AirQualityObserved&count=true&limit=2&offset=3");
    assert_eq!(last, ["</ngsi-ld/v1/entities?type=AirQualityObserved&count=true&limit=2&offset=1>; rel=\"prev\""]);
    assert!(response_links(&hub, "/entities?type=AirQualityObserved").is_empty(), "one page, no links");
    let (_, empty) = hub.get_json("/entities?type=AirQualityObserved&limit=0&count=true");
    assert_eq!(empty, json!([]));
    assert_problem(hub.get("/entities?type=AirQualityObserved&limit=0").send().unwrap(), 400, "BadRequestData");
    assert_problem(hub.get("/entities?type=AirQualityObserved&limit=100000").send().unwrap(), 403, "TooManyResults");

    let query = json!({"type": "Query", "entities": [{"type": "ParkingSpot"}, {"type": "AirQualityObserved"}], "q": "pm25>30|status"});
    let (status, body) = json_of(hub.send_json(Method::POST, "/entityOperations/query", &query).send().unwrap());
    assert_eq!(status, 200);
    assert_eq!(ids(&body), vec!["urn:ngsi-ld:AirQualityObserved:3".to_owned(), "urn:ngsi-ld:ParkingSpot:1".to_owned()]);
}

#[test]
fn discovery_of_types_and_attributes() {
    let hub = Hub::start();
    seed(&hub);
    let (_, list) = hub.get_json("/types");
    assert_eq!(list["type"], "EntityTypeList");
    assert_eq!(list["typeList"], json!(["AirQualityObserved", "Asset", "ParkingSpot"]));
    let (_, info) = hub.get_json("/types/AirQualityObserved");
    assert_eq!(info["entityCount"], 4);
    let pm25 = info["attributeDetails"].as_array().unwrap().iter().find(|a| a["attributeName"] == "pm25").unwrap();
    assert_eq!(pm25["attributeTypes"], json!(["Property"]));
    let (_, attribute) = hub.get_json("/attributes/refArea");
    assert_eq!(attribute["attributeCount"], 4);
    assert_eq!(attribute["attributeTypes"], json!(["Relationship"]));
    assert_eq!(attribute["typeNames"], json!(["AirQualityObserved"]));
    let (_, details) = hub.get_json("/types?details=true");
    let parking = details.as_array().unwrap().iter().find(|t| t["typeName"] == "ParkingSpot").unwrap();
    assert_eq!(parking["attributeNames"], json!(["status", "location"]));
    assert_problem(hub.get("/types/Nothing").send().unwrap(), 404, "ResourceNotFound");
}

#[test]
fn pick_on_query_lists_only_entities_with_something_to_show() {
    let hub = Hub::start();
    seed(&hub);
    let (status, body) = hub.get_json("/entities?type=AirQualityObserved,ParkingSpot&pick=status");
    assert_eq!(status, 200);
    assert_eq!(body, json!([{"status": {"type": "Property", "value": "free"}}]));
    let (_, body) = hub.get_json("/entities?type=AirQualityObserved&pick=id,airQualityLevel&q=pm25>30");
    assert_eq!(
        body,
        json!([{"id": "urn:ngsi-ld:AirQualityObserved:3", "airQualityLevel": {"type": "Property", "value": "unhealthy"}}])
    );
}

/// A parking spot in a district of a city: two hops of relationships.
fn seed_linked(hub: &Hub) {
    let batch = json!([
        {"id": "urn:ngsi-ld:ParkingSpot:P1", "type": "ParkingSpot", "status": {"type": "Property", "value": "free"},
         "refDistrict": {"type": "Relationship", "object": "urn:ngsi-ld:District:Jongno"}},
        {"id": "urn:ngsi-ld:ParkingSpot:P2", "type": "ParkingSpot", "status": {"type": "Property", "value": "occupied"},
         "refDistrict": {"type": "Relationship", "object": "urn:ngsi-ld:District:Missing"}},
        {"id": "urn:ngsi-ld:District:Jongno", "type": "District", "name": {"type": "Property", "value": "Jongno-gu"},
         "population": {"type": "Property", "value": 141000},
         "inCity": {"type": "Relationship", "object": "urn:ngsi-ld:City:Seoul"}},
        {"id": "urn:ngsi-ld:City:Seoul", "type": "City", "name": {"type": "Property", "value": "Seoul"}}
    ]);
    assert_eq!(hub.post("/entityOperations/create", &batch).status(), 201);
}

#[test]
fn linked_entity_retrieval_inline_and_flat() {
    let hub = Hub::start();
    seed_linked(&hub);
    let district = json!({"id": "urn:ngsi-ld:District:Jongno", "type": "District",
        "name": {"type": "Property", "value": "Jongno-gu"}, "population": {"type": "Property", "value": 141000},
        "inCity": {"type": "Relationship", "object": "urn:ngsi-ld:City:Seoul"}});

    let (status, body) = hub.get_json("/entities/urn:ngsi-ld:ParkingSpot:P1?join=inline");
    assert_eq!(status, 200);
    assert_eq!(
        body["refDistrict"],
        json!({"type": "Relationship", "object": "urn:ngsi-ld:District:Jongno", "entity": district})
    );

    // Two levels deep, keyValues: the relationship's value is the linked entity itself.
    let (_, body) = hub.get_json("/entities/urn:ngsi-ld:ParkingSpot:P1?join=inline&joinLevel=2&options=keyValues");
    assert_eq!(
        body["refDistrict"],
        json!({"id": "urn:ngsi-ld:District:Jongno", "type": "District", "name": "Jongno-gu", "population": 141000,
               "inCity": {"id": "urn:ngsi-ld:City:Seoul", "type": "City", "name": "Seoul"}})
    );

    // Flat: the entity, then what it links to, breadth first.
    let (_, body) =
        hub.get_json("/entities/urn:ngsi-ld:ParkingSpot:P1?join=flat&joinLevel=2&pick=id,refDistrict{id,inCity}");
    assert_eq!(
        body,
        json!([
            {"id": "urn:ngsi-ld:ParkingSpot:P1", "refDistrict": {"type": "Relationship", "object": "urn:ngsi-ld:District:Jongno"}},
            {"id": "urn:ngsi-ld:District:Jongno", "inCity": {"type": "Relationship", "object": "urn:ngsi-ld:City:Seoul"}},
            {"id": "urn:ngsi-ld:City:Seoul", "type": "City", "name": {"type": "Property", "value": "Seoul"}}
        ])
    );
    // A link to an entity that does not exist is shown as a plain relationship.
    let (status, body) = hub.get_json("/entities/urn:ngsi-ld:ParkingSpot:P2?join=flat");
    assert_eq!(status, 200);
    assert_eq!(body["refDistrict"], json!({"type": "Relationship", "object": "urn:ngsi-ld:District:Missing"}));

    // Query: omit inside the linked entity only; each linked entity listed once.
    let (_, body) = hub.get_json("/entities?type=ParkingSpot&join=flat&omit=status,refDistrict{population,inCity}");
    assert_eq!(
        ids(&body),
        vec!["urn:ngsi-ld:District:Jongno", "urn:ngsi-ld:ParkingSpot:P1", "urn:ngsi-ld:ParkingSpot:P2"]
    );
    assert_eq!(
        body[2],
        json!({"id": "urn:ngsi-ld:District:Jongno", "type": "District", "name": {"type": "Property", "value": "Jongno-gu"}})
    );
    assert!(body[0].get("status").is_none());

    // The same through POST /entityOperations/query.
    let query =
        json!({"type": "Query", "entities": [{"type": "ParkingSpot"}], "join": "inline", "q": "status==\"free\""});
    let (_, body) = json_of(hub.send_json(Method::POST, "/entityOperations/query", &query).send().unwrap());
    assert_eq!(body[0]["refDistrict"]["entity"], district);

    // A projection into linked entities needs a join deep enough.
    assert_problem(
        hub.get("/entities/urn:ngsi-ld:ParkingSpot:P1?pick=refDistrict{name}").send().unwrap(),
        400,
        "BadRequestData",
    );
    assert_problem(
        hub.get("/entities/urn:ngsi-ld:ParkingSpot:P1?join=inline&pick=refDistrict{inCity{name}}").send().unwrap(),
        400,
        "BadRequestData",
    );
    assert_problem(
        hub.get("/entities/urn:ngsi-ld:ParkingSpot:P1?join=sideways").send().unwrap(),
        400,
        "BadRequestData",
    );
    assert_problem(
        hub.get("/entities/urn:ngsi-ld:ParkingSpot:P1?join=flat&joinLevel=0").send().unwrap(),
        400,
        "BadRequestData",
    );
    assert_problem(hub.get("/entities?type=ParkingSpot&pick=status,{name}").send().unwrap(), 400, "BadRequestData");
}
