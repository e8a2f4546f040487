//! Subscriptions and notifications, black-box: a real hub, real receivers on loopback, a real
//! mosquitto. Every wait is bounded; timing is asserted only through generous timeouts.

mod common;

use std::time::Duration;

use common::*;
use reqwest::Method;
use serde_json::{json, Value};

const WAIT: Duration = Duration::from_secs(20);

fn subscribe(hub: &Hub, body: Value) -> String {
    let id = body["id"].as_str().expect("test subscriptions name their id").to_owned();
    let response = hub.post("/subscriptions", &body);
    assert_eq!(response.status(), 201, "{}", response.text().unwrap_or_default());
    id
}

fn subscription(id: &str, uri: &str, extra: Value) -> Value {
    let mut body = json!({
        "id": id,
        "type": "Subscription",
        "entities": [{"type": "Room"}],
        "notification": {"endpoint": {"uri": uri}},
    });
    for (k, v) in extra.as_object().unwrap() {
        body[k] = v.clone();
    }
    body
}

fn room(id: &str, temperature: f64) -> Value {
    json!({"id": id, "type": "Room", "temperature": {"type": "Property", "value": temperature}})
}

fn patch_attrs(hub: &Hub, id: &str, body: Value) {
    let response = hub.send_json(Method::PATCH, &format!("/entities/{id}/attrs"), &body).send().unwrap();
    assert_eq!(response.status(), 204, "{}", response.text().unwrap_or_default());
}

fn status_of(hub: &Hub, id: &str) -> Value {
    let (status, body) = hub.get_json(&format!("/subscriptions/{id}"));
    assert_eq!(status, 200, "{body}");
    body
}

#[test]
fn subscriptions_are_created_listed_retrieved_updated_and_deleted() {
    let hub = Hub::start();
    let body = subscription(
        "urn:ngsi-ld:Subscription:crud",
        "http://127.0.0.1:9/notify",
        json!({"watchedAttributes": ["temperature"], "q": "temperature>20", "description": "warm rooms"}),
    );
    let response = hub.post("/subscriptions", &body);
    assert_eq!(response.status(), 201);
    assert_eq!(response.headers()["location"], "/ngsi-ld/v1/subscriptions/urn:ngsi-ld:Subscription:crud");
    assert_problem(hub.post("/subscriptions", &body), 409, "AlreadyExists");

    let got = status_of(&hub, "urn:ngsi-ld:Subscription:crud");
    assert_eq!(got["type"], "Subscription");
    assert_eq!(got["entities"], json!([{"type": "Room"}]));
    assert_eq!(got["watchedAttributes"], json!(["temperature"]));
    assert_eq!(got["q"], "temperature>20");
    assert_eq!(got["status"], "active");
    assert!(got.get("isActive").is_none(), "isActive is shown only when false: {got}");
    assert!(got["notification"].get("status").is_none(), "no delivery status before a delivery: {got}");
    assert_eq!(got["notification"]["endpoint"]["accept"], "application/json");
    assert_eq!(got["notification"]["format"], "normalized");

    // A generated id.
    let mut anonymous = body.clone();
    anonymous.as_object_mut().unwrap().remove("id");
    let response = hub.post("/subscriptions", &anonymous);
    assert_eq!(response.status(), 201);
    let location = response.headers()["location"].to_str().unwrap().to_owned();
    assert!(location.starts_with("/ngsi-ld/v1/subscriptions/urn:ngsi-ld:Subscription:"), "{location}");

    let response = hub.get("/subscriptions?limit=1&count=true").send().unwrap();
    assert_eq!(response.headers()["ngsild-results-count"], "2");
    let links: Vec<&str> = response.headers().get_all("link").iter().map(|v| v.to_str().unwrap()).collect();
    assert!(links.iter().any(|l| l.contains("rel=\"next\"")), "{links:?}");
    let (_, page) = json_of(response);
    assert_eq!(page.as_array().unwrap().len(), 1);

    let response = hub
        .send_json(
            Method::PATCH,
            "/subscriptions/urn:ngsi-ld:Subscription:crud",
            &json!({"isActive": false, "q": null}),
        )
        .send()
        .unwrap();
    assert_eq!(response.status(), 204);
    let got = status_of(&hub, "urn:ngsi-ld:Subscription:crud");
    assert_eq!(got["status"], "paused");
    assert_eq!(got["isActive"], false);
    assert!(got.get("q").is_none(), "{got}");

    assert_eq!(hub.delete("/subscriptions/urn:ngsi-ld:Subscription:crud").send().unwrap().status(), 204);
    assert_problem(hub.get("/subscriptions/urn:ngsi-ld:Subscription:crud").send().unwrap(), 404, "ResourceNotFound");
    assert_problem(hub.delete("/subscriptions/urn:ngsi-ld:Subscription:crud").send().unwrap(), 404, "ResourceNotFound");
    assert_problem(hub.get("/subscriptions/not-a-uri").send().unwrap(), 400, "BadRequestData");
    assert_problem(hub.get("/subscriptions?bogus=1").send().unwrap(), 400, "InvalidRequest");
}

#[test]
fn invalid_subscriptions_are_refused_with_problem_details() {
    let hub = Hub::start();
    let valid = subscription("urn:ngsi-ld:Subscription:v", "http://127.0.0.1:9/n", json!({}));
    let cases = [
        ("type", json!("Nope")),
        ("id", json!("not a uri")),
        ("throttling", json!(-1)),
        ("timeInterval", json!(0)),
        ("notificationTrigger", json!(["entityExploded"])),
        ("q", json!("temperature>>")),
        ("geoQ", json!({"georel": "near;maxDistance==10", "geometry": "Point", "coordinates": "[1]"})),
        ("scopeQ", json!("no scope")),
        ("expiresAt", json!("2000-01-01T00:00:00Z")),
        ("notification", json!({"endpoint": {"uri": "ftp://example.org/x"}})),
        ("notification", json!({"endpoint": {"uri": "http://127.0.0.1:9/n"}, "format": "poetry"})),
        ("entities", json!([])),
        ("color", json!("blue")),
    ];
    for (member, value) in cases {
        let mut body = valid.clone();
        body[member] = value.clone();
        let problem = assert_problem(hub.post("/subscriptions", &body), 400, "BadRequestData");
        assert!(problem["detail"].is_string(), "{member}={value}: {problem}");
    }
    let mut both = valid.clone();
    both["timeInterval"] = json!(5);
    both["throttling"] = json!(5);
    assert_problem(hub.post("/subscriptions", &both), 400, "BadRequestData");
    let response = hub
        .client
        .post(hub.url("/subscriptions"))
        .header("Content-Type", "application/json")
        .body("{not json")
        .send()
        .unwrap();
    assert_problem(response, 400, "InvalidRequest");
    let response = hub
        .send_json(Method::PATCH, "/subscriptions/urn:ngsi-ld:Subscription:none", &json!({"isActive": true}))
        .send()
        .unwrap();
    assert_problem(response, 404, "ResourceNotFound");
}

#[test]
fn each_trigger_notifies_its_own_changes() {
    let hub = Hub::start();
    let receiver = Receiver::start();
    let triggers =
        ["entityCreated", "entityUpdated", "entityDeleted", "attributeCreated", "attributeUpdated", "attributeDeleted"];
    for t in triggers {
        subscribe(
            &hub,
            subscription(
                &format!("urn:ngsi-ld:Subscription:{t}"),
                &receiver.url("/notify"),
                json!({"notificationTrigger": [t]}),
            ),
        );
    }
    let id = "urn:ngsi-ld:Room:triggers";
    assert_eq!(hub.post("/entities", &room(id, 20.0)).status(), 201);
    patch_attrs(&hub, id, json!({"temperature": {"type": "Property", "value": 21}}));
    let response = hub.send_json(
        Method::POST,
        &format!("/entities/{id}/attrs"),
        &json!({"humidity": {"type": "Property", "value": 40}}),
    );
    assert_eq!(response.send().unwrap().status(), 204);
    assert_eq!(hub.delete(&format!("/entities/{id}/attrs/humidity")).send().unwrap().status(), 204);
    assert_eq!(hub.delete(&format!("/entities/{id}")).send().unwrap().status(), 204);

    // created; temperature updated, humidity appended, humidity deleted; deleted.
    let expected = [
        ("entityCreated", 1),
        ("entityUpdated", 3),
        ("entityDeleted", 1),
        ("attributeCreated", 2),
        ("attributeUpdated", 1),
        ("attributeDeleted", 2),
    ];
    for (t, n) in expected {
        let got = receiver.wait_for(&format!("urn:ngsi-ld:Subscription:{t}"), n, WAIT);
        assert_eq!(got.len(), n, "{t}: {got:#?}");
        for notification in &got {
            assert_eq!(notification["type"], "Notification");
            assert!(notification["id"].as_str().unwrap().starts_with("urn:ngsi-ld:Notification:"));
            assert!(notification["notifiedAt"].is_string());
            assert_eq!(notification["data"][0]["id"], id);
        }
    }
    let deleted = receiver.of("urn:ngsi-ld:Subscription:entityDeleted");
    let entity = deleted[0]["data"][0].as_object().unwrap();
    assert_eq!(entity.len(), 3, "id, type, deletedAt: {entity:?}");
    assert!(entity.contains_key("deletedAt"));
    let attr_deleted = receiver.of("urn:ngsi-ld:Subscription:attributeDeleted");
    assert_eq!(attr_deleted[0]["data"][0]["humidity"]["value"], "urn:ngsi-ld:null");
    // Nothing more arrives later (each change notified exactly once per trigger).
    std::thread::sleep(Duration::from_millis(500));
    for (t, n) in expected {
        assert_eq!(receiver.of(&format!("urn:ngsi-ld:Subscription:{t}")).len(), n, "{t}");
    }
}

#[test]
fn watched_attributes_q_scope_and_geo_filter_notifications() {
    let hub = Hub::start();
    let receiver = Receiver::start();
    let uri = receiver.url("/n");
    subscribe(&hub, subscription("urn:ngsi-ld:Subscription:watched", &uri, json!({"watchedAttributes": ["humidity"]})));
    subscribe(&hub, subscription("urn:ngsi-ld:Subscription:q", &uri, json!({"q": "temperature>25"})));
    subscribe(&hub, subscription("urn:ngsi-ld:Subscription:scope", &uri, json!({"scopeQ": "/Seoul/#"})));
    subscribe(
        &hub,
        subscription(
            "urn:ngsi-ld:Subscription:geo",
            &uri,
            json!({"geoQ": {"georel": "near;maxDistance==2000", "geometry": "Point", "coordinates": [126.97, 37.56]}}),
        ),
    );
    subscribe(
        &hub,
        json!({"id": "urn:ngsi-ld:Subscription:pattern", "type": "Subscription",
               "entities": [{"idPattern": "^urn:ngsi-ld:Room:seoul", "type": "Room"}],
               "notification": {"endpoint": {"uri": uri}}}),
    );
    let mut seoul = room("urn:ngsi-ld:Room:seoul-1", 20.0);
    seoul["scope"] = json!("/Seoul/Jung");
    seoul["location"] = json!({"type": "GeoProperty", "value": {"type": "Point", "coordinates": [126.978, 37.566]}});
    let mut busan = room("urn:ngsi-ld:Room:busan-1", 30.0);
    busan["scope"] = json!("/Busan");
    busan["location"] = json!({"type": "GeoProperty", "value": {"type": "Point", "coordinates": [129.07, 35.18]}});
    assert_eq!(hub.post("/entities", &seoul).status(), 201);
    assert_eq!(hub.post("/entities", &busan).status(), 201);
    patch_attrs(&hub, "urn:ngsi-ld:Room:seoul-1", json!({"temperature": {"type": "Property", "value": 26}}));
    let watched = "urn:ngsi-ld:Subscription:watched";
    assert!(receiver.of(watched).is_empty());
    patch_attrs(&hub, "urn:ngsi-ld:Room:busan-1", json!({"humidity": {"type": "Property", "value": 50}}));

    let got = receiver.wait_for(watched, 1, WAIT);
    assert_eq!(got.len(), 1);
    assert_eq!(got[0]["data"][0]["id"], "urn:ngsi-ld:Room:busan-1");
    // q: busan (30) when created, seoul once above 25.
    let q = receiver.wait_for("urn:ngsi-ld:Subscription:q", 3, Duration::from_secs(5));
    let ids: Vec<&str> = q.iter().map(|n| n["data"][0]["id"].as_str().unwrap()).collect();
    assert!(ids.contains(&"urn:ngsi-ld:Room:seoul-1") && ids.contains(&"urn:ngsi-ld:Room:busan-1"), "{ids:?}");
    assert!(q.iter().all(|n| n["data"][0]["temperature"]["value"].as_f64().unwrap() > 25.0));
    for sub in ["scope", "geo", "pattern"] {
        let got = receiver.wait_for(&format!("urn:ngsi-ld:Subscription:{sub}"), 2, WAIT);
        assert_eq!(got.len(), 2, "{sub}: {got:#?}");
        assert!(got.iter().all(|n| n["data"][0]["id"] == "urn:ngsi-ld:Room:seoul-1"), "{sub}: {got:#?}");
    }
}

#[test]
fn formats_projection_show_changes_headers_and_context() {
    let hub = Hub::start();
    let receiver = Receiver::start();
    let context = ContextServer::serve(json!({"@context": {"temp": "https://example.org/temperature"}}));
    let notify = |id: &str, extra: Value| {
        let mut n = json!({"endpoint": {"uri": receiver.url("/n")}});
        for (k, v) in extra.as_object().unwrap() {
            n[k] = v.clone();
        }
        subscription(id, "", json!({"notification": n}))
    };
    subscribe(&hub, notify("urn:ngsi-ld:Subscription:kv", json!({"format": "keyValues"})));
    subscribe(&hub, notify("urn:ngsi-ld:Subscription:concise", json!({"format": "concise"})));
    subscribe(
        &hub,
        notify(
            "urn:ngsi-ld:Subscription:changes",
            json!({"showChanges": true, "attributes": ["temperature"],
                   "endpoint": {"uri": receiver.url("/n"), "accept": "application/ld+json",
                                "receiverInfo": [{"key": "X-Api-Key", "value": "secret"}]}}),
        ),
    );
    let mut with_context = notify("urn:ngsi-ld:Subscription:ctx", json!({}));
    with_context["@context"] = json!(context.url);
    let response = hub.send_ld(Method::POST, "/subscriptions", &with_context).send().unwrap();
    assert_eq!(response.status(), 201);

    let id = "urn:ngsi-ld:Room:formats";
    let mut entity = room(id, 20.0);
    entity["name"] = json!({"type": "Property", "value": "hall"});
    entity["https://example.org/temperature"] = json!({"type": "Property", "value": 1});
    assert_eq!(hub.post("/entities", &entity).status(), 201);
    patch_attrs(&hub, id, json!({"temperature": {"type": "Property", "value": 22}}));

    let kv = receiver.wait_for("urn:ngsi-ld:Subscription:kv", 2, WAIT);
    assert_eq!(kv[1]["data"][0]["temperature"], 22);
    assert_eq!(kv[1]["data"][0]["name"], "hall");
    let concise = receiver.wait_for("urn:ngsi-ld:Subscription:concise", 2, WAIT);
    // Concise: a Property without metadata is its bare value; the entity keeps no "type" members.
    assert_eq!(concise[1]["data"][0]["temperature"], 22);
    assert_eq!(concise[1]["data"][0]["name"], "hall");

    let changes = receiver.wait_for("urn:ngsi-ld:Subscription:changes", 2, WAIT);
    let entity = &changes[1]["data"][0];
    assert_eq!(entity["temperature"], json!({"type": "Property", "value": 22, "previousValue": 20.0}));
    assert!(entity.get("name").is_none(), "projected to temperature: {entity}");
    assert!(entity.get("@context").is_some(), "application/ld+json carries @context: {entity}");
    let raw =
        receiver.all().into_iter().find(|r| r.body["subscriptionId"] == "urn:ngsi-ld:Subscription:changes").unwrap();
    assert_eq!(raw.header("content-type"), Some("application/ld+json"));
    assert_eq!(raw.header("x-api-key"), Some("secret"));
    assert!(raw.header("link").is_none());

    let ctx = receiver.wait_for("urn:ngsi-ld:Subscription:ctx", 1, WAIT);
    assert_eq!(ctx[0]["data"][0]["temp"]["value"], 1, "compacted with the subscription's @context: {}", ctx[0]);
    let raw = receiver.all().into_iter().find(|r| r.body["subscriptionId"] == "urn:ngsi-ld:Subscription:ctx").unwrap();
    assert_eq!(raw.header("content-type"), Some("application/json"));
    assert!(raw.header("link").unwrap().contains(&context.url));
}

#[test]
fn joined_notifications_carry_the_linked_entities_flat_or_inline() {
    let hub = Hub::start();
    let receiver = Receiver::start();
    let joined = |id: &str, extra: Value| {
        let mut n = json!({"endpoint": {"uri": receiver.url("/n")}});
        for (k, v) in extra.as_object().unwrap() {
            n[k] = v.clone();
        }
        json!({"id": id, "type": "Subscription", "entities": [{"type": "Building"}], "notification": n})
    };
    subscribe(&hub, joined("urn:ngsi-ld:Subscription:flat", json!({"join": "flat", "joinLevel": 1})));
    subscribe(&hub, joined("urn:ngsi-ld:Subscription:inline", json!({"join": "inline"})));
    subscribe(
        &hub,
        joined(
            "urn:ngsi-ld:Subscription:inline-kv",
            json!({"join": "inline", "format": "keyValues", "attributes": ["locatedAt"]}),
        ),
    );
    subscribe(&hub, joined("urn:ngsi-ld:Subscription:deep", json!({"join": "flat", "joinLevel": 2})));
    let (status, shown) = hub.get_json("/subscriptions/urn:ngsi-ld:Subscription:flat");
    assert_eq!(status, 200);
    assert_eq!((&shown["notification"]["join"], &shown["notification"]["joinLevel"]), (&json!("flat"), &json!(1)));
    assert_eq!(
        hub.post("/subscriptions", &joined("urn:ngsi-ld:Subscription:bad", json!({"join": "sideways"}))).status(),
        400
    );

    let country =
        json!({"id": "urn:ngsi-ld:Country:FR", "type": "Country", "name": {"type": "Property", "value": "France"}});
    let city = json!({"id": "urn:ngsi-ld:City:Paris", "type": "City",
        "name": {"type": "Property", "value": "Paris"},
        "isInCountry": {"type": "Relationship", "object": "urn:ngsi-ld:Country:FR"}});
    assert_eq!(hub.post("/entities", &country).status(), 201);
    assert_eq!(hub.post("/entities", &city).status(), 201);
    let tower = "urn:ngsi-ld:Building:tower";
    let building = json!({"id": tower, "type": "Building",
        "locatedAt": {"type": "Relationship", "object": "urn:ngsi-ld:City:Paris"}});
    assert_eq!(hub.post("/entities", &building).status(), 201);
    patch_attrs(&hub, tower, json!({"name": {"type": "Property", "value": "Tour Eiffel"}}));

    let flat = receiver.wait_for("urn:ngsi-ld:Subscription:flat", 2, WAIT);
    let data = flat[1]["data"].as_array().unwrap();
    assert_eq!(data.len(), 2, "the entity, then the one it links to: {data:?}");
    assert_eq!(data[0]["id"], tower);
    assert_eq!(data[0]["name"]["value"], "Tour Eiffel");
    assert_eq!(data[1]["id"], "urn:ngsi-ld:City:Paris");
    assert_eq!(data[1]["name"]["value"], "Paris");

    let inline = receiver.wait_for("urn:ngsi-ld:Subscription:inline", 2, WAIT);
    let data = inline[1]["data"].as_array().unwrap();
    assert_eq!(data.len(), 1);
    assert_eq!(data[0]["locatedAt"]["object"], "urn:ngsi-ld:City:Paris");
    assert_eq!(data[0]["locatedAt"]["entity"]["id"], "urn:ngsi-ld:City:Paris");
    assert_eq!(data[0]["locatedAt"]["entity"]["name"]["value"], "Paris");

    let kv = receiver.wait_for("urn:ngsi-ld:Subscription:inline-kv", 2, WAIT);
    let located = &kv[1]["data"][0]["locatedAt"];
    assert_eq!((&located["id"], &located["name"]), (&json!("urn:ngsi-ld:City:Paris"), &json!("Paris")), "{located}");
    assert!(kv[1]["data"][0].get("name").is_none(), "projected to locatedAt: {}", kv[1]);

    let deep = receiver.wait_for("urn:ngsi-ld:Subscription:deep", 2, WAIT);
    let ids: Vec<&Value> = deep[1]["data"].as_array().unwrap().iter().map(|e| &e["id"]).collect();
    assert_eq!(ids, [&json!(tower), &json!("urn:ngsi-ld:City:Paris"), &json!("urn:ngsi-ld:Country:FR")]);
}

#[test]
fn deleted_instances_notify_per_dataset_and_a_whole_deletion_as_one_null() {
    let hub = Hub::start();
    let receiver = Receiver::start();
    let on_delete = |id: &str, format: &str| {
        json!({"id": id, "type": "Subscription", "entities": [{"type": "Building"}],
            "watchedAttributes": ["name"], "notificationTrigger": ["attributeDeleted"],
            "notification": {"format": format, "endpoint": {"uri": receiver.url("/n")}}})
    };
    subscribe(&hub, on_delete("urn:ngsi-ld:Subscription:kv", "keyValues"));
    subscribe(&hub, on_delete("urn:ngsi-ld:Subscription:normalized", "normalized"));
    let id = "urn:ngsi-ld:Building:datasets";
    let building = json!({"id": id, "type": "Building", "name": [
        {"type": "Property", "value": "Eiffel Tower"},
        {"type": "Property", "value": "Tour Eiffel", "datasetId": "urn:ngsi-ld:Dataset:fr"},
        {"type": "Property", "value": "Eiffelturm", "datasetId": "urn:ngsi-ld:Dataset:de"}]});
    assert_eq!(hub.post("/entities", &building).status(), 201);

    let one = hub.delete(&format!("/entities/{id}/attrs/name?datasetId=urn:ngsi-ld:Dataset:fr")).send().unwrap();
    assert_eq!(one.status(), 204);
    let kv = receiver.wait_for("urn:ngsi-ld:Subscription:kv", 1, WAIT);
    assert_eq!(
        kv[0]["data"][0]["name"],
        json!({"dataset": {"@none": "Eiffel Tower", "urn:ngsi-ld:Dataset:de": "Eiffelturm",
            "urn:ngsi-ld:Dataset:fr": "urn:ngsi-ld:null"}})
    );
    let normalized = receiver.wait_for("urn:ngsi-ld:Subscription:normalized", 1, WAIT);
    let instances = normalized[0]["data"][0]["name"].as_array().unwrap().clone();
    assert_eq!(instances.len(), 3, "{instances:?}");
    assert!(instances
        .contains(&json!({"type": "Property", "value": "urn:ngsi-ld:null", "datasetId": "urn:ngsi-ld:Dataset:fr"})));

    let all = hub.delete(&format!("/entities/{id}/attrs/name?deleteAll=true")).send().unwrap();
    assert_eq!(all.status(), 204);
    let normalized = receiver.wait_for("urn:ngsi-ld:Subscription:normalized", 2, WAIT);
    assert_eq!(normalized[1]["data"][0]["name"], json!({"type": "Property", "value": "urn:ngsi-ld:null"}));
}

#[test]
fn periodic_subscriptions_repeat_and_throttled_ones_hold_back() {
    let hub = Hub::start();
    let receiver = Receiver::start();
    assert_eq!(hub.post("/entities", &room("urn:ngsi-ld:Room:periodic", 20.0)).status(), 201);
    subscribe(&hub, subscription("urn:ngsi-ld:Subscription:periodic", &receiver.url("/p"), json!({"timeInterval": 1})));
    let got = receiver.wait_for("urn:ngsi-ld:Subscription:periodic", 2, WAIT);
    assert!(got.len() >= 2, "{got:#?}");
    assert_eq!(got[0]["data"][0]["id"], "urn:ngsi-ld:Room:periodic");

    subscribe(
        &hub,
        subscription("urn:ngsi-ld:Subscription:throttled", &receiver.url("/t"), json!({"throttling": 3600})),
    );
    for t in 0..5 {
        patch_attrs(&hub, "urn:ngsi-ld:Room:periodic", json!({"temperature": {"type": "Property", "value": 30 + t}}));
    }
    let got = receiver.wait_for("urn:ngsi-ld:Subscription:throttled", 1, WAIT);
    assert_eq!(got.len(), 1);
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(receiver.of("urn:ngsi-ld:Subscription:throttled").len(), 1, "at most one per throttling period");
}

#[test]
fn paused_and_expired_subscriptions_do_not_notify() {
    let hub = Hub::start();
    let receiver = Receiver::start();
    let uri = receiver.url("/n");
    subscribe(&hub, subscription("urn:ngsi-ld:Subscription:paused", &uri, json!({"isActive": false})));
    let soon = chrono_in(2);
    subscribe(&hub, subscription("urn:ngsi-ld:Subscription:expiring", &uri, json!({"expiresAt": soon})));
    subscribe(&hub, subscription("urn:ngsi-ld:Subscription:live", &uri, json!({})));
    assert_eq!(status_of(&hub, "urn:ngsi-ld:Subscription:paused")["status"], "paused");
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(status_of(&hub, "urn:ngsi-ld:Subscription:expiring")["status"], "expired");
    assert_eq!(hub.post("/entities", &room("urn:ngsi-ld:Room:quiet", 20.0)).status(), 201);
    assert_eq!(receiver.wait_for("urn:ngsi-ld:Subscription:live", 1, WAIT).len(), 1);
    std::thread::sleep(Duration::from_millis(300));
    assert!(receiver.of("urn:ngsi-ld:Subscription:paused").is_empty());
    assert!(receiver.of("urn:ngsi-ld:Subscription:expiring").is_empty());

    // Resumed, it notifies again.
    let response = hub
        .send_json(Method::PATCH, "/subscriptions/urn:ngsi-ld:Subscription:paused", &json!({"isActive": true}))
        .send()
        .unwrap();
    assert_eq!(response.status(), 204);
    patch_attrs(&hub, "urn:ngsi-ld:Room:quiet", json!({"temperature": {"type": "Property", "value": 23}}));
    assert_eq!(receiver.wait_for("urn:ngsi-ld:Subscription:paused", 1, WAIT).len(), 1);
}

/// An RFC 3339 time `seconds` from now (UTC), computed without a date library.
fn chrono_in(seconds: u64) -> String {
    let at = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() + seconds;
    let (days, rem) = (at / 86_400, at % 86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z", rem / 3600, rem % 3600 / 60, rem % 60)
}

#[test]
fn a_dead_endpoint_does_not_delay_a_live_one() {
    let hub = Hub::start();
    let live = Receiver::start();
    let silent = Receiver::silent();
    let nobody = free_port();
    subscribe(
        &hub,
        subscription("urn:ngsi-ld:Subscription:refused", &format!("http://127.0.0.1:{nobody}/n"), json!({})),
    );
    subscribe(&hub, subscription("urn:ngsi-ld:Subscription:hanging", &silent.url("/n"), json!({})));
    subscribe(&hub, subscription("urn:ngsi-ld:Subscription:live", &live.url("/n"), json!({})));
    for i in 0..5 {
        assert_eq!(hub.post("/entities", &room(&format!("urn:ngsi-ld:Room:dead-{i}"), 20.0)).status(), 201);
    }
    let got = live.wait_for("urn:ngsi-ld:Subscription:live", 5, WAIT);
    assert_eq!(got.len(), 5, "the live endpoint got every notification while the others failed");
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let refused = status_of(&hub, "urn:ngsi-ld:Subscription:refused");
        let n = &refused["notification"];
        if n["timesFailed"].as_u64().unwrap_or(0) >= 2 {
            assert_eq!(n["status"], "failed");
            assert!(n["lastFailure"].is_string());
            assert!(n.get("lastSuccess").is_none());
            break;
        }
        assert!(std::time::Instant::now() < deadline, "the dead endpoint keeps failing: {refused}");
        std::thread::sleep(Duration::from_millis(200));
    }
    let live_status = status_of(&hub, "urn:ngsi-ld:Subscription:live");
    assert_eq!(live_status["notification"]["timesSent"], 5);
    assert_eq!(live_status["notification"]["status"], "ok");
}

#[test]
fn a_full_outbox_drops_and_counts() {
    let hub = Hub::start_with(&["--notification-outbox-cap", "2"]);
    let nobody = free_port();
    subscribe(&hub, subscription("urn:ngsi-ld:Subscription:full", &format!("http://127.0.0.1:{nobody}/n"), json!({})));
    for i in 0..6 {
        assert_eq!(hub.post("/entities", &room(&format!("urn:ngsi-ld:Room:full-{i}"), 20.0)).status(), 201);
    }
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let status = status_of(&hub, "urn:ngsi-ld:Subscription:full");
        if status["notification"]["droppedNotifications"] == 4 {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "4 of 6 notifications dropped: {status}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn pending_notifications_survive_kill_9() {
    const CHANGES: usize = 10;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let port = free_port();
    let mut hub = Hub::spawn(&data, &[]);
    subscribe(&hub, subscription("urn:ngsi-ld:Subscription:crash", &format!("http://127.0.0.1:{port}/n"), json!({})));
    for i in 0..CHANGES {
        assert_eq!(hub.post("/entities", &room(&format!("urn:ngsi-ld:Room:crash-{i}"), i as f64)).status(), 201);
    }
    // Wait until the hub has tried (and failed) at least once, so notifications are pending.
    let deadline = std::time::Instant::now() + WAIT;
    while status_of(&hub, "urn:ngsi-ld:Subscription:crash")["notification"]["timesFailed"].as_u64().unwrap_or(0) == 0 {
        assert!(std::time::Instant::now() < deadline, "no delivery attempt");
        std::thread::sleep(Duration::from_millis(100));
    }
    hub.kill9();

    let hub = Hub::spawn(&data, &[]);
    let receiver = Receiver::start_on(port);
    let got = receiver.wait_for("urn:ngsi-ld:Subscription:crash", CHANGES, Duration::from_secs(60));
    let mut ids: Vec<String> = got.iter().map(|n| n["data"][0]["id"].as_str().unwrap().to_owned()).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), CHANGES, "every pending notification arrived after the restart: {ids:?}");
    let status = status_of(&hub, "urn:ngsi-ld:Subscription:crash");
    assert_eq!(status["notification"]["status"], "ok", "{status}");
}

#[test]
fn mqtt_notifications_go_through_mosquitto() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let config = dir.path().join("mosquitto.conf");
    std::fs::write(&config, format!("listener {port} 127.0.0.1\nallow_anonymous true\n")).unwrap();
    let mosquitto = ["/usr/sbin/mosquitto", "/usr/bin/mosquitto", "mosquitto"]
        .into_iter()
        .find(|p| !p.starts_with('/') || std::path::Path::new(p).exists())
        .unwrap();
    let mut broker = std::process::Command::new(mosquitto)
        .arg("-c")
        .arg(&config)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("mosquitto is installed (.ci/run installs it)");
    struct KillOnDrop<'a>(&'a mut std::process::Child);
    impl Drop for KillOnDrop<'_> {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let _broker = KillOnDrop(&mut broker);
    let deadline = std::time::Instant::now() + WAIT;
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(std::time::Instant::now() < deadline, "mosquitto listens");
        std::thread::sleep(Duration::from_millis(50));
    }

    #[expect(clippy::disallowed_methods, reason = "the test's own subscriber to the broker, not the hub's egress")]
    let mut options = rumqttc::MqttOptions::new("cityhub-test", "127.0.0.1", port);
    options.set_keep_alive(Duration::from_secs(5));
    let (client, mut connection) = rumqttc::Client::new(options, 16);
    client.subscribe("city/rooms", rumqttc::QoS::AtLeastOnce).unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for event in connection.iter() {
            match event {
                Ok(rumqttc::Event::Incoming(rumqttc::Packet::SubAck(_))) => {
                    let _ = tx.send(None);
                }
                Ok(rumqttc::Event::Incoming(rumqttc::Packet::Publish(p))) => {
                    let _ = tx.send(Some((p.topic.clone(), p.qos, p.payload.to_vec())));
                }
                Ok(_) => {}
                Err(_) => break,
            }
        }
    });
    assert_eq!(rx.recv_timeout(WAIT).expect("subscribed"), None);

    let hub = Hub::start();
    let uri = format!("mqtt://127.0.0.1:{port}/city/rooms");
    subscribe(
        &hub,
        subscription(
            "urn:ngsi-ld:Subscription:mqtt",
            &uri,
            json!({"notification": {"endpoint": {"uri": uri, "accept": "application/json",
                "receiverInfo": [{"key": "X-Region", "value": "north"}],
                "notifierInfo": [{"key": "MQTT-QoS", "value": "1"}, {"key": "MQTT-Version", "value": "mqtt3.1.1"}]}}}),
        ),
    );
    assert_eq!(hub.post("/entities", &room("urn:ngsi-ld:Room:mqtt", 19.5)).status(), 201);
    let (topic, qos, payload) = rx.recv_timeout(WAIT).expect("a notification over MQTT").expect("a publish");
    assert_eq!(topic, "city/rooms");
    assert_eq!(qos, rumqttc::QoS::AtLeastOnce);
    let message: Value = serde_json::from_slice(&payload).unwrap();
    assert_eq!(message["metadata"]["X-Region"], "north");
    assert_eq!(message["metadata"]["Content-Type"], "application/json");
    assert_eq!(message["body"]["type"], "Notification");
    assert_eq!(message["body"]["subscriptionId"], "urn:ngsi-ld:Subscription:mqtt");
    assert_eq!(message["body"]["data"][0]["temperature"]["value"], 19.5);
    let deadline = std::time::Instant::now() + WAIT;
    while status_of(&hub, "urn:ngsi-ld:Subscription:mqtt")["notification"]["timesSent"] != 1 {
        assert!(std::time::Instant::now() < deadline, "the MQTT delivery is counted");
        std::thread::sleep(Duration::from_millis(100));
    }
}
