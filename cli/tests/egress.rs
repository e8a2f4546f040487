//! Egress rules, black-box (issue 16 item 4): where a hub may send notifications, forwarded
//! requests and @context fetches. A hub listening on 0.0.0.0 (reached over 127.0.0.1 only, and
//! killed at the end like every test hub; `--allow-anonymous`, since a hub serving other machines
//! with no identity source refuses to start) refuses internal destinations and itself unless
//! allowed; a loopback hub keeps delivering to loopback but never to itself.

mod common;

use std::io::{Read, Write};
use std::time::Duration;

use common::*;
use reqwest::Method;
use serde_json::{json, Value};

fn subscription(id: &str, uri: &str) -> Value {
    json!({
        "id": id,
        "type": "Subscription",
        "entities": [{"type": "Room"}],
        "notification": {"endpoint": {"uri": uri}},
    })
}

fn hub_port(hub: &Hub) -> u16 {
    hub.base.rsplit(':').next().unwrap().parse().unwrap()
}

/// Asserts a 400 BadRequestData whose detail names `endpoint` and contains every `words`.
fn assert_refused(response: reqwest::blocking::Response, endpoint: &str, words: &[&str]) {
    let body = assert_problem(response, 400, "BadRequestData");
    let detail = body["detail"].as_str().unwrap();
    assert!(detail.contains(endpoint), "the detail names the endpoint {endpoint}: {detail}");
    assert!(detail.contains("egress rules"), "{detail}");
    for word in words {
        assert!(detail.contains(word), "{word:?} in {detail}");
    }
}

#[test]
fn a_hub_on_all_addresses_refuses_internal_endpoints_and_itself() {
    let hub = Hub::start_with(&["--listen", "0.0.0.0:0", "--allow-anonymous"]);
    let me = hub_port(&hub);
    let metadata = "http://169.254.169.254/latest/meta-data/";
    let ssh = "http://127.0.0.1:22/";
    let private = "mqtt://10.1.2.3:1883/city/rooms";
    let itself = format!("http://127.0.0.1:{me}/ngsi-ld/v1/entities");
    let response = hub.post("/subscriptions", &subscription("urn:ngsi-ld:Subscription:m", metadata));
    assert_refused(response, metadata, &["cloud metadata", "--egress-allow 169.254.169.254"]);
    let response = hub.post("/subscriptions", &subscription("urn:ngsi-ld:Subscription:s", ssh));
    assert_refused(response, ssh, &["127.0.0.1:22 is a loopback address", "--egress-allow 127.0.0.1:22"]);
    let response = hub.post("/subscriptions", &subscription("urn:ngsi-ld:Subscription:p", private));
    assert_refused(response, private, &["private-network", "--egress-allow 10.1.2.3:1883"]);
    // The hub's own /entities with another tenant in receiverInfo: never.
    let mut into_other_tenant = subscription("urn:ngsi-ld:Subscription:self", &itself);
    into_other_tenant["notification"]["endpoint"]["receiverInfo"] =
        json!([{"key": "NGSILD-Tenant", "value": "victim"}]);
    assert_refused(hub.post("/subscriptions", &into_other_tenant), &itself, &["own address"]);
    // The same for csource subscriptions and registrations, at creation and on PATCH.
    let csub = json!({
        "id": "urn:ngsi-ld:Subscription:cs", "type": "Subscription",
        "entities": [{"type": "Room"}], "notification": {"endpoint": {"uri": metadata}},
    });
    assert_refused(hub.post("/csourceSubscriptions", &csub), metadata, &["cloud metadata"]);
    let registration = json!({
        "id": "urn:ngsi-ld:ContextSourceRegistration:r", "type": "ContextSourceRegistration",
        "information": [{"entities": [{"type": "Room"}]}], "endpoint": "http://192.168.1.20:1026",
    });
    assert_refused(hub.post("/csourceRegistrations", &registration), "http://192.168.1.20:1026", &["private-network"]);
    // A name that does not resolve now is judged when it is connected to.
    let allowed = subscription("urn:ngsi-ld:Subscription:later", "http://receiver.invalid/notify");
    assert_eq!(hub.post("/subscriptions", &allowed).status(), 201);
    let patch = json!({"notification": {"endpoint": {"uri": metadata}}});
    let response =
        hub.send_json(Method::PATCH, "/subscriptions/urn:ngsi-ld:Subscription:later", &patch).send().unwrap();
    assert_refused(response, metadata, &["cloud metadata"]);
    let (_, kept) = hub.get_json("/subscriptions/urn:ngsi-ld:Subscription:later");
    assert_eq!(kept["notification"]["endpoint"]["uri"], "http://receiver.invalid/notify", "{kept}");
    let (_, listed) = hub.get_json("/subscriptions");
    assert_eq!(listed.as_array().unwrap().len(), 1, "only the allowed subscription exists: {listed}");
}

#[test]
fn refused_destinations_are_allowed_once_configured_but_never_the_hub_itself() {
    let hub = Hub::start_with(&[
        "--listen",
        "0.0.0.0:0",
        "--allow-anonymous",
        "--egress-allow",
        "127.0.0.1:22,169.254.169.254",
    ]);
    let me = hub_port(&hub);
    for (id, uri) in [("m", "http://169.254.169.254/latest/meta-data/"), ("s", "http://127.0.0.1:22/")] {
        let response = hub.post("/subscriptions", &subscription(&format!("urn:ngsi-ld:Subscription:{id}"), uri));
        assert_eq!(response.status(), 201, "{uri}: {}", response.text().unwrap_or_default());
    }
    // Allowing a port does not allow its neighbours.
    let response = hub.post("/subscriptions", &subscription("urn:ngsi-ld:Subscription:t", "http://127.0.0.1:23/"));
    assert_refused(response, "http://127.0.0.1:23/", &["--egress-allow 127.0.0.1:23"]);
    let allowing_itself =
        Hub::start_with(&["--listen", "0.0.0.0:0", "--allow-anonymous", "--egress-allow", "127.0.0.0/8"]);
    let me2 = hub_port(&allowing_itself);
    let itself = format!("http://127.0.0.1:{me2}/ngsi-ld/v1/entities");
    let response = allowing_itself.post("/subscriptions", &subscription("urn:ngsi-ld:Subscription:self", &itself));
    assert_refused(response, &itself, &["own address"]);
    assert_ne!(me, me2);
}

/// A loopback HTTP server answering every request with a redirect to `location`.
fn redirector(location: String) -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in listener.incoming().take(100) {
            let Ok(mut stream) = stream else { continue };
            let mut buf = [0u8; 4096];
            let _ = stream.read(&mut buf);
            let reply =
                format!("HTTP/1.1 302 Found\r\nLocation: {location}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
            let _ = stream.write_all(reply.as_bytes());
        }
    });
    port
}

fn create_with_context(hub: &Hub, context: &str) -> reqwest::blocking::Response {
    let room = json!({"id": "urn:ngsi-ld:Room:1", "type": "Room", "temperature": {"type": "Property", "value": 21}});
    hub.send_json(Method::POST, "/entities", &room).header("Link", link_header(context)).send().unwrap()
}

fn assert_context_refused(response: reqwest::blocking::Response, url: &str) {
    let body = assert_problem(response, 503, "LdContextNotAvailable");
    let detail = body["detail"].as_str().unwrap();
    assert!(detail.contains(url), "{detail}");
    assert!(detail.contains("refused by the hub's egress rules (--egress-allow, --egress-deny)"), "{detail}");
}

#[test]
fn an_at_context_that_redirects_to_a_refused_address_is_refused() {
    // A loopback hub fetches a loopback @context, but not through a redirect to the metadata
    // service or to itself.
    let hub = Hub::start();
    let me = hub_port(&hub);
    let to_metadata = format!("http://127.0.0.1:{}/ctx.jsonld", redirector("http://169.254.169.254/ctx.jsonld".into()));
    assert_context_refused(create_with_context(&hub, &to_metadata), &to_metadata);
    let to_itself =
        format!("http://127.0.0.1:{}/ctx.jsonld", redirector(format!("http://localhost:{me}/ngsi-ld/v1/entities")));
    assert_context_refused(create_with_context(&hub, &to_itself), &to_itself);
    // A hub on 0.0.0.0 allowed to fetch from one loopback port is refused the hop to another.
    let context = ContextServer::serve(json!({"@context": {"temperature": "https://example.org/temperature"}}));
    let bouncer = redirector(context.url.clone());
    let open = Hub::start_with(&[
        "--listen",
        "0.0.0.0:0",
        "--allow-anonymous",
        "--egress-allow",
        &format!("127.0.0.1:{bouncer}"),
    ]);
    let bounced = format!("http://127.0.0.1:{bouncer}/ctx.jsonld");
    assert_context_refused(create_with_context(&open, &bounced), &bounced);
    assert_eq!(context.hits.load(std::sync::atomic::Ordering::SeqCst), 0, "the refused hop was never connected to");
    // Allowed directly, the same document serves.
    let direct = Hub::start_with(&[
        "--listen",
        "0.0.0.0:0",
        "--allow-anonymous",
        "--egress-allow",
        context.url.split('/').nth(2).unwrap(),
    ]);
    let response = create_with_context(&direct, &context.url);
    assert_eq!(response.status(), 201, "{}", response.text().unwrap_or_default());
}

#[test]
fn a_loopback_hub_still_notifies_a_loopback_receiver() {
    let hub = Hub::start();
    let receiver = Receiver::start();
    let sub = subscription("urn:ngsi-ld:Subscription:local", &receiver.url("/notify"));
    assert_eq!(hub.post("/subscriptions", &sub).status(), 201);
    let room = json!({"id": "urn:ngsi-ld:Room:1", "type": "Room", "temperature": {"type": "Property", "value": 21}});
    assert_eq!(hub.post("/entities", &room).status(), 201);
    let got = receiver.wait_for("urn:ngsi-ld:Subscription:local", 1, Duration::from_secs(20));
    assert_eq!(got.len(), 1, "one notification");
    assert_eq!(got[0]["data"][0]["id"], "urn:ngsi-ld:Room:1");
    // But never to itself, even on loopback.
    let itself = format!("{}/ngsi-ld/v1/entities", hub.base);
    assert_refused(
        hub.post("/subscriptions", &subscription("urn:ngsi-ld:Subscription:self", &itself)),
        &itself,
        &["own address"],
    );
}
