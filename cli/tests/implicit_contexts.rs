//! Black-box tests of ImplicitlyCreated @contexts: a subscription's compound @context served by
//! the hub and named by its `jsonldContext`.

mod common;

use std::time::Duration;

use common::*;
use reqwest::Method;
use serde_json::{json, Value};

const WAIT: Duration = Duration::from_secs(10);

fn subscription(hub: &Hub, id: &str, context: Value, endpoint: &str) -> u16 {
    let body = json!({
        "id": id, "type": "Subscription", "entities": [{"type": "Room"}],
        "notification": {"endpoint": {"uri": endpoint, "accept": "application/json"}},
        "@context": context
    });
    hub.send_ld(Method::POST, "/subscriptions", &body).send().unwrap().status().as_u16()
}

fn jsonld_context_of(hub: &Hub, id: &str) -> Option<String> {
    let (status, body) = hub.get_json(&format!("/subscriptions/{id}"));
    assert_eq!(status, 200, "{body}");
    body.get("jsonldContext").map(|v| v.as_str().expect("a URL").to_owned())
}

#[test]
fn a_compound_subscription_context_is_served_named_and_released() {
    let hub = Hub::start();
    let receiver = Receiver::start();
    let rooms = ContextServer::serve(json!({"@context": {"Room": "https://example.org/Room"}}));
    let temps = ContextServer::serve(json!({"@context": {"temp": "https://example.org/temperature"}}));
    let compound = json!([rooms.url, temps.url]);

    assert_eq!(subscription(&hub, "urn:ngsi-ld:Subscription:a", compound.clone(), &receiver.url("/a")), 201);
    let url = jsonld_context_of(&hub, "urn:ngsi-ld:Subscription:a").expect("a compound @context gets a jsonldContext");
    let (_, local_id) = url.rsplit_once("/ngsi-ld/v1/jsonldContexts/").expect("served by the hub");

    // Listed with its kind, served as the compound context itself.
    let (status, listed) = hub.get_json("/jsonldContexts?kind=ImplicitlyCreated&details=true");
    assert_eq!(status, 200);
    let listed = listed.as_array().unwrap();
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(listed[0]["URL"], url);
    assert_eq!(listed[0]["localId"], local_id);
    assert_eq!(listed[0]["kind"], "ImplicitlyCreated");
    assert!(listed[0]["createdAt"].is_string());
    let (status, served) = hub.get_json(&format!("/jsonldContexts/{local_id}"));
    assert_eq!(status, 200);
    assert_eq!(served, json!({"@context": compound}));
    // The contexts it is made of are Cached ones, not Hosted.
    let (_, cached) = hub.get_json("/jsonldContexts?kind=Cached");
    assert!(cached.as_array().unwrap().contains(&json!(rooms.url)), "{cached}");
    let (_, hosted) = hub.get_json("/jsonldContexts?kind=Hosted");
    assert_eq!(hosted, json!([]));

    // The same compound context is served once; a single URL needs no implicit context.
    assert_eq!(subscription(&hub, "urn:ngsi-ld:Subscription:b", compound.clone(), &receiver.url("/b")), 201);
    assert_eq!(jsonld_context_of(&hub, "urn:ngsi-ld:Subscription:b").as_deref(), Some(url.as_str()));
    assert_eq!(subscription(&hub, "urn:ngsi-ld:Subscription:c", json!(rooms.url), &receiver.url("/c")), 201);
    assert_eq!(jsonld_context_of(&hub, "urn:ngsi-ld:Subscription:c"), None);

    // An application/json notification names the whole compound context in one Link.
    let room = json!({"id": "urn:ngsi-ld:Room:1", "type": "Room", "temp": {"type": "Property", "value": 21},
        "@context": compound});
    assert_eq!(hub.send_ld(Method::POST, "/entities", &room).send().unwrap().status(), 201);
    let got = receiver.wait_for("urn:ngsi-ld:Subscription:a", 1, WAIT);
    assert_eq!(got.len(), 1, "one notification");
    assert_eq!(got[0]["data"][0]["temp"]["value"], 21, "compacted with the compound context: {}", got[0]);
    let raw = receiver.all().into_iter().find(|r| r.body["subscriptionId"] == "urn:ngsi-ld:Subscription:a").unwrap();
    assert!(raw.header("link").unwrap().contains(&url), "{:?}", raw.header("link"));

    // It cannot be reloaded: it has no origin to reload from.
    let problem = assert_problem(
        hub.delete(&format!("/jsonldContexts/{local_id}?reload=true")).send().unwrap(),
        400,
        "BadRequestData",
    );
    assert!(problem["detail"].as_str().unwrap().contains("reload"), "{problem}");

    // It goes with the last subscription naming it.
    assert_eq!(hub.delete("/subscriptions/urn:ngsi-ld:Subscription:a").send().unwrap().status(), 204);
    assert_eq!(hub.get_json(&format!("/jsonldContexts/{local_id}")).0, 200, "b still names it");
    assert_eq!(hub.delete("/subscriptions/urn:ngsi-ld:Subscription:b").send().unwrap().status(), 204);
    let problem =
        assert_problem(hub.get(&format!("/jsonldContexts/{local_id}")).send().unwrap(), 404, "ResourceNotFound");
    assert!(problem["detail"].as_str().unwrap().contains(local_id), "{problem}");
}

#[test]
fn an_implicit_context_counts_its_uses_and_can_be_deleted() {
    let hub = Hub::start();
    let rooms = ContextServer::serve(json!({"@context": {"Room": "https://example.org/Room"}}));
    let temps = ContextServer::serve(json!({"@context": {"temp": "https://example.org/temperature"}}));
    let endpoint = "http://127.0.0.1:9/never";
    assert_eq!(subscription(&hub, "urn:ngsi-ld:Subscription:a", json!([rooms.url, temps.url]), endpoint), 201);
    let url = jsonld_context_of(&hub, "urn:ngsi-ld:Subscription:a").unwrap();
    let (_, local_id) = url.rsplit_once("/jsonldContexts/").unwrap();
    let hits = |hub: &Hub| hub.get_json(&format!("/jsonldContexts/{local_id}?details=true")).1["numberOfHits"].clone();
    let before = hits(&hub).as_u64().expect("numberOfHits is a number");

    // A client may write in it by its URL, as in a Link header.
    let room = json!({"id": "urn:ngsi-ld:Room:2", "type": "Room", "temp": {"type": "Property", "value": 19}});
    let response = hub.send_json(Method::POST, "/entities", &room).header("Link", link_header(&url)).send().unwrap();
    assert_eq!(response.status(), 201);
    assert_eq!(hits(&hub), json!(before + 1));
    let (_, entity) = hub.get_json("/entities/urn:ngsi-ld:Room:2?options=keyValues");
    assert_eq!(entity["https://example.org/temperature"], 19, "expanded with the implicit context: {entity}");

    assert_eq!(hub.delete(&format!("/jsonldContexts/{local_id}")).send().unwrap().status(), 204);
    assert_problem(hub.get(&format!("/jsonldContexts/{local_id}")).send().unwrap(), 404, "ResourceNotFound");
    // The subscription keeps its compound @context and no longer names the deleted one.
    assert_eq!(jsonld_context_of(&hub, "urn:ngsi-ld:Subscription:a"), None);
    // Deleting the subscription afterwards is fine.
    assert_eq!(hub.delete("/subscriptions/urn:ngsi-ld:Subscription:a").send().unwrap().status(), 204);
}

#[test]
fn the_contexts_a_hosted_context_imports_are_cached_ones() {
    let hub = Hub::start();
    let rooms = ContextServer::serve(json!({"@context": {"Room": "https://example.org/Room"}}));
    let temps = ContextServer::serve(json!({"@context": {"temp": "https://example.org/temperature"}}));
    let document = json!({"@context": [rooms.url, temps.url]});
    let response = hub.send_json(Method::POST, "/jsonldContexts", &document).send().unwrap();
    assert_eq!(response.status(), 201);
    let location = response.headers()["location"].to_str().unwrap().to_owned();
    let room = json!({"id": "urn:ngsi-ld:Room:3", "type": "Room", "temp": {"type": "Property", "value": 18}});
    let used = hub
        .send_json(Method::POST, "/entities", &room)
        .header("Link", link_header(&format!("{}{location}", hub.base)))
        .send()
        .unwrap();
    assert_eq!(used.status(), 201);
    let (_, hosted) = hub.get_json(&format!("{}?details=true", location.trim_start_matches("/ngsi-ld/v1")));
    assert_eq!(hosted["kind"], "Hosted", "{hosted}");
    for url in [&rooms.url, &temps.url] {
        let encoded: String = url
            .bytes()
            .map(|b| {
                if b.is_ascii_alphanumeric() || b"-._".contains(&b) {
                    (b as char).to_string()
                } else {
                    format!("%{b:02X}")
                }
            })
            .collect();
        let (status, details) = hub.get_json(&format!("/jsonldContexts/{encoded}?details=true"));
        assert_eq!(status, 200, "{details}");
        assert_eq!(details["kind"], "Cached", "{details}");
        assert_eq!(details["URL"], json!(url));
    }
    // Neither is implicitly created: the hosted context already has a URL of its own.
    assert_eq!(hub.get_json("/jsonldContexts?kind=ImplicitlyCreated").1, json!([]));
}

#[test]
fn a_subscription_whose_implicit_context_was_deleted_still_notifies_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let receiver = Receiver::start();
    let rooms = ContextServer::serve(json!({"@context": {"Room": "https://example.org/Room"}}));
    let temps = ContextServer::serve(json!({"@context": {"temp": "https://example.org/temperature"}}));
    let compound = json!([rooms.url, temps.url]);
    let mut hub = Hub::spawn(&data, &[]);
    assert_eq!(subscription(&hub, "urn:ngsi-ld:Subscription:r", compound.clone(), &receiver.url("/r")), 201);
    let url = jsonld_context_of(&hub, "urn:ngsi-ld:Subscription:r").unwrap();
    let (_, local_id) = url.rsplit_once("/jsonldContexts/").unwrap();
    assert_eq!(hub.delete(&format!("/jsonldContexts/{local_id}")).send().unwrap().status(), 204);
    assert!(hub.terminate().success());

    let hub = Hub::spawn(&data, &[]);
    let room = json!({"id": "urn:ngsi-ld:Room:4", "type": "Room", "temp": {"type": "Property", "value": 23},
        "@context": compound});
    assert_eq!(hub.send_ld(Method::POST, "/entities", &room).send().unwrap().status(), 201);
    let got = receiver.wait_for("urn:ngsi-ld:Subscription:r", 1, WAIT);
    assert_eq!(got.len(), 1, "the subscription survived the restart");
    assert_eq!(got[0]["data"][0]["temp"]["value"], 23, "still compacted with its compound context: {}", got[0]);
}
