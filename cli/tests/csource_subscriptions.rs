//! Csource subscriptions (`/csourceSubscriptions`), black-box: a real hub, real receivers on
//! loopback. Every wait is bounded; timing is asserted only through generous timeouts.

mod common;

use std::time::Duration;

use common::*;
use reqwest::Method;
use serde_json::{json, Value};

const WAIT: Duration = Duration::from_secs(20);

fn subscribe(hub: &Hub, id: &str, uri: &str, extra: Value) {
    let mut body = json!({
        "id": id,
        "type": "Subscription",
        "entities": [{"type": "Building"}],
        "notification": {"endpoint": {"uri": uri}},
    });
    for (k, v) in extra.as_object().unwrap() {
        body[k] = v.clone();
    }
    let response = hub.post("/csourceSubscriptions", &body);
    assert_eq!(response.status(), 201, "{}", response.text().unwrap_or_default());
}

fn register(hub: &Hub, id: &str, extra: Value) {
    let mut body = json!({
        "id": id,
        "type": "ContextSourceRegistration",
        "information": [{"entities": [{"type": "Building"}]}],
        "endpoint": "http://127.0.0.1:9",
    });
    for (k, v) in extra.as_object().unwrap() {
        body[k] = v.clone();
    }
    let response = hub.post("/csourceRegistrations", &body);
    assert_eq!(response.status(), 201, "{}", response.text().unwrap_or_default());
}

fn ids(notification: &Value) -> Vec<&str> {
    notification["data"].as_array().unwrap().iter().map(|r| r["id"].as_str().unwrap()).collect()
}

#[test]
fn registration_changes_notify_newly_matching_updated_and_no_longer_matching() {
    let hub = Hub::start();
    let receiver = Receiver::start();
    let sub = "urn:ngsi-ld:Subscription:changes";
    subscribe(&hub, sub, &receiver.url("/notify"), json!({}));
    let reg = "urn:ngsi-ld:ContextSourceRegistration:b1";
    // Building and Bus: only the matching RegistrationInfo is notified.
    register(
        &hub,
        reg,
        json!({"information": [{"entities": [{"type": "Building"}]}, {"entities": [{"type": "Bus"}]}]}),
    );
    // A registration of another type is none of its business.
    register(
        &hub,
        "urn:ngsi-ld:ContextSourceRegistration:car",
        json!({"information": [{"entities": [{"type": "Car"}]}]}),
    );
    let got = receiver.wait_for(sub, 1, WAIT);
    assert_eq!(got[0]["type"], "ContextSourceNotification");
    assert_eq!(got[0]["triggerReason"], "newlyMatching");
    assert_eq!(ids(&got[0]), vec![reg]);
    assert_eq!(got[0]["data"][0]["information"], json!([{"entities": [{"type": "Building"}]}]));
    assert!(got[0]["notifiedAt"].is_string());

    let fragment = json!({"endpoint": "http://127.0.0.1:10"});
    let response = hub.send_json(Method::PATCH, &format!("/csourceRegistrations/{reg}"), &fragment).send().unwrap();
    assert_eq!(response.status(), 204);
    let got = receiver.wait_for(sub, 2, WAIT);
    assert_eq!(got[1]["triggerReason"], "updated");
    assert_eq!(got[1]["data"][0]["endpoint"], "http://127.0.0.1:10");

    let fragment = json!({"information": [{"entities": [{"type": "Car"}]}]});
    let response = hub.send_json(Method::PATCH, &format!("/csourceRegistrations/{reg}"), &fragment).send().unwrap();
    assert_eq!(response.status(), 204);
    let got = receiver.wait_for(sub, 3, WAIT);
    assert_eq!(got[2]["triggerReason"], "noLongerMatching");
    assert_eq!(ids(&got[2]), vec![reg]);

    // Deleting a matching registration.
    let other = "urn:ngsi-ld:ContextSourceRegistration:b2";
    register(&hub, other, json!({}));
    assert_eq!(receiver.wait_for(sub, 4, WAIT)[3]["triggerReason"], "newlyMatching");
    assert_eq!(hub.delete(&format!("/csourceRegistrations/{other}")).send().unwrap().status(), 204);
    let got = receiver.wait_for(sub, 5, WAIT);
    assert_eq!(got[4]["triggerReason"], "noLongerMatching");
    assert_eq!(ids(&got[4]), vec![other]);
    assert_eq!(got.len(), 5, "the Car registration notified nothing: {got:?}");

    let (_, shown) = hub.get_json(&format!("/csourceSubscriptions/{sub}"));
    assert_eq!(shown["notification"]["status"], "ok", "{shown}");
    assert_eq!(shown["notification"]["timesSent"], 5, "{shown}");
    assert!(shown["notification"]["lastSuccess"].is_string(), "{shown}");
    assert!(shown.get("notificationTrigger").is_none(), "entity triggers are not shown: {shown}");
}

#[test]
fn a_subscription_notifies_at_once_of_what_matches_and_again_when_updated() {
    let hub = Hub::start();
    let receiver = Receiver::start();
    register(&hub, "urn:ngsi-ld:ContextSourceRegistration:building", json!({}));
    register(
        &hub,
        "urn:ngsi-ld:ContextSourceRegistration:bus",
        json!({"information": [{"entities": [{"type": "Bus"}]}]}),
    );
    let sub = "urn:ngsi-ld:Subscription:initial";
    subscribe(&hub, sub, &receiver.url("/notify"), json!({}));
    let got = receiver.wait_for(sub, 1, WAIT);
    assert_eq!(got[0]["triggerReason"], "newlyMatching");
    assert_eq!(ids(&got[0]), vec!["urn:ngsi-ld:ContextSourceRegistration:building"]);

    let fragment = json!({"entities": [{"type": "Building"}, {"type": "Bus"}]});
    let response = hub.send_json(Method::PATCH, &format!("/csourceSubscriptions/{sub}"), &fragment).send().unwrap();
    assert_eq!(response.status(), 204);
    let got = receiver.wait_for(sub, 2, WAIT);
    assert_eq!(got[1]["triggerReason"], "newlyMatching");
    let mut both = ids(&got[1]);
    both.sort_unstable();
    assert_eq!(
        both,
        vec!["urn:ngsi-ld:ContextSourceRegistration:building", "urn:ngsi-ld:ContextSourceRegistration:bus"]
    );

    // A paused subscription says nothing.
    let fragment = json!({"isActive": false});
    let response = hub.send_json(Method::PATCH, &format!("/csourceSubscriptions/{sub}"), &fragment).send().unwrap();
    assert_eq!(response.status(), 204);
    register(&hub, "urn:ngsi-ld:ContextSourceRegistration:later", json!({}));
    let (_, shown) = hub.get_json(&format!("/csourceSubscriptions/{sub}"));
    assert_eq!(shown["status"], "paused");
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(receiver.of(sub).len(), 2, "paused: {:?}", receiver.of(sub));
}

#[test]
fn periodic_subscriptions_notify_every_interval_even_when_nothing_matches() {
    let hub = Hub::start();
    let receiver = Receiver::start();
    register(&hub, "urn:ngsi-ld:ContextSourceRegistration:p", json!({}));
    let sub = "urn:ngsi-ld:Subscription:periodic";
    subscribe(&hub, sub, &receiver.url("/notify"), json!({"timeInterval": 1}));
    let got = receiver.wait_for(sub, 2, WAIT);
    assert!(got.len() >= 2, "{got:?}");
    for notification in &got[..2] {
        assert_eq!(ids(notification), vec!["urn:ngsi-ld:ContextSourceRegistration:p"]);
    }
    // A registration change is not a reason for a periodic subscription to notify on its own.
    let empty = "urn:ngsi-ld:Subscription:periodic-empty";
    subscribe(&hub, empty, &receiver.url("/notify"), json!({"timeInterval": 1, "entities": [{"type": "Bus"}]}));
    let got = receiver.wait_for(empty, 2, WAIT);
    assert!(got.len() >= 2 && got.iter().all(|n| n["data"] == json!([])), "{got:?}");
}

#[test]
fn geo_q_and_csf_match_registration_location_and_properties() {
    let hub = Hub::start();
    let receiver = Receiver::start();
    let near = "urn:ngsi-ld:Subscription:near";
    subscribe(
        &hub,
        near,
        &receiver.url("/notify"),
        json!({"geoQ": {"georel": "near;maxDistance==2000", "geometry": "Point", "coordinates": [-8.52, 41.2]}}),
    );
    let brand = "urn:ngsi-ld:Subscription:brand";
    subscribe(&hub, brand, &receiver.url("/notify"), json!({"csf": "brand==\"acme\""}));
    register(
        &hub,
        "urn:ngsi-ld:ContextSourceRegistration:porto",
        json!({"location": {"type": "Point", "coordinates": [-8.521, 41.2]}}),
    );
    register(
        &hub,
        "urn:ngsi-ld:ContextSourceRegistration:paris",
        json!({"location": {"type": "Point", "coordinates": [2.35, 48.85]}, "brand": "acme"}),
    );
    let got = receiver.wait_for(near, 1, WAIT);
    assert_eq!(ids(&got[0]), vec!["urn:ngsi-ld:ContextSourceRegistration:porto"]);
    assert_eq!(got[0]["data"][0]["location"], json!({"type": "Point", "coordinates": [-8.521, 41.2]}));
    let got = receiver.wait_for(brand, 1, WAIT);
    assert_eq!(ids(&got[0]), vec!["urn:ngsi-ld:ContextSourceRegistration:paris"]);
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(receiver.of(near).len(), 1, "Paris is not near Porto: {:?}", receiver.of(near));
    assert_eq!(receiver.of(brand).len(), 1, "{:?}", receiver.of(brand));
}

#[test]
fn a_failed_delivery_shows_in_the_status_and_is_retried() {
    let hub = Hub::start();
    let port = free_port();
    let sub = "urn:ngsi-ld:Subscription:unreachable";
    subscribe(&hub, sub, &format!("http://127.0.0.1:{port}/notify"), json!({}));
    register(&hub, "urn:ngsi-ld:ContextSourceRegistration:f", json!({}));
    let deadline = std::time::Instant::now() + WAIT;
    let shown = loop {
        let (_, shown) = hub.get_json(&format!("/csourceSubscriptions/{sub}"));
        if shown["notification"]["lastFailure"].is_string() || std::time::Instant::now() >= deadline {
            break shown;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let notification = &shown["notification"];
    assert_eq!(notification["status"], "failed", "{shown}");
    assert!(notification["timesSent"].as_u64().unwrap() >= 1, "{shown}");
    assert!(notification["timesFailed"].as_u64().unwrap() >= 1, "{shown}");
    assert!(notification["lastNotification"].is_string(), "{shown}");
    assert!(notification.get("lastSuccess").is_none(), "{shown}");

    // The outbox keeps the notification: once the endpoint listens, it arrives.
    let receiver = Receiver::start_on(port);
    let got = receiver.wait_for(sub, 1, WAIT);
    assert_eq!(got[0]["triggerReason"], "newlyMatching", "{got:?}");
    let deadline = std::time::Instant::now() + WAIT;
    let shown = loop {
        let (_, shown) = hub.get_json(&format!("/csourceSubscriptions/{sub}"));
        if shown["notification"]["status"] == "ok" || std::time::Instant::now() >= deadline {
            break shown;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(shown["notification"]["status"], "ok", "{shown}");
    assert!(shown["notification"]["lastSuccess"].is_string(), "{shown}");
}

#[test]
fn csource_subscriptions_are_their_own_collection() {
    let hub = Hub::start();
    let id = "urn:ngsi-ld:Subscription:same-id";
    subscribe(
        &hub,
        id,
        "http://127.0.0.1:9/notify",
        json!({"csf": "brand==\"acme\"", "expiresAt": "2099-01-01T00:00:00Z"}),
    );
    // The same id is free among entity subscriptions.
    let entity_sub = json!({"id": id, "type": "Subscription", "entities": [{"type": "Building"}],
        "notification": {"endpoint": {"uri": "http://127.0.0.1:9/notify"}}});
    assert_eq!(hub.post("/subscriptions", &entity_sub).status(), 201);
    let (_, listed) = hub.get_json("/csourceSubscriptions");
    assert_eq!(listed.as_array().unwrap().len(), 1, "{listed}");
    assert_eq!(listed[0]["csf"], "brand==\"acme\"");
    assert_eq!(listed[0]["expiresAt"], "2099-01-01T00:00:00Z");
    let (_, listed) = hub.get_json("/subscriptions");
    assert_eq!(listed.as_array().unwrap().len(), 1, "{listed}");
    assert_eq!(listed[0]["notificationTrigger"], json!(["attributeCreated", "attributeUpdated"]));

    assert_eq!(hub.delete(&format!("/csourceSubscriptions/{id}")).send().unwrap().status(), 204);
    assert_problem(hub.delete(&format!("/csourceSubscriptions/{id}")).send().unwrap(), 404, "ResourceNotFound");
    assert_eq!(hub.get_json(&format!("/subscriptions/{id}")).0, 200, "the entity subscription stays");
    assert_problem(hub.delete("/csourceSubscriptions/not-a-uri").send().unwrap(), 400, "BadRequestData");
    let invalid = json!({"type": "Subscription", "entities": [{"type": "Building"}], "csf": "(broken",
        "notification": {"endpoint": {"uri": "http://127.0.0.1:9/notify"}}});
    assert_problem(hub.post("/csourceSubscriptions", &invalid), 400, "BadRequestData");
}

#[test]
fn csource_subscriptions_and_their_outbox_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let port = free_port();
    let sub = "urn:ngsi-ld:Subscription:durable";
    {
        let mut hub = Hub::spawn(&data, &[]);
        subscribe(&hub, sub, &format!("http://127.0.0.1:{port}/notify"), json!({}));
        register(&hub, "urn:ngsi-ld:ContextSourceRegistration:d", json!({}));
        let deadline = std::time::Instant::now() + WAIT;
        while hub.get_json(&format!("/csourceSubscriptions/{sub}")).1["notification"]["lastFailure"].is_null()
            && std::time::Instant::now() < deadline
        {
            std::thread::sleep(Duration::from_millis(50));
        }
        hub.kill9();
    }
    let receiver = Receiver::start_on(port);
    let hub = Hub::spawn(&data, &[]);
    let got = receiver.wait_for(sub, 1, WAIT);
    assert_eq!(ids(&got[0]), vec!["urn:ngsi-ld:ContextSourceRegistration:d"]);
    // And it still matches new registrations.
    register(&hub, "urn:ngsi-ld:ContextSourceRegistration:e", json!({}));
    let got = receiver.wait_for(sub, 2, WAIT);
    assert_eq!(ids(&got[1]), vec!["urn:ngsi-ld:ContextSourceRegistration:e"]);
}
