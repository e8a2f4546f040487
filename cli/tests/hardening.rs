//! Hostile and careless input, black-box: nothing a client sends may take the hub down. Each
//! crash class of issue 13 (deep nesting of every expression kind in the URL, in a Query body and
//! in a subscription; deep `pick`/`omit`; `joinLevel` over a cycle; multi-byte characters next to
//! operators; lists of 100k names) answers a ProblemDetails that names the limit, or the right
//! answer, and the hub still serves the stored entity afterwards.

mod common;

use std::time::Duration;

use common::*;
use reqwest::Method;
use serde_json::{json, Value};

/// Nesting far past the limit (64): 2,500 levels, where 2,000 used to overflow a worker's stack.
const DEEP: usize = 2_500;

/// A hub whose operator raised `--max-list-items` far past its default (1,000, `limits.rs`), so
/// that a deep `pick` or a long `attrs` list reaches the parsers and the store: those must hold
/// whatever the request-level limit is.
fn lenient_hub() -> Hub {
    Hub::start_with(&["--max-list-items", "1000000"])
}

fn nested(open: &str, inner: &str, close: &str, depth: usize) -> String {
    format!("{}{inner}{}", open.repeat(depth), close.repeat(depth))
}

fn seed(hub: &Hub) {
    let building = json!({
        "id": "urn:ngsi-ld:Building:1", "type": "Building", "scope": "/Seoul",
        "height": {"type": "Property", "value": 300},
        "name": {"type": "Property", "value": "서울 타워"}
    });
    assert_eq!(hub.post("/entities", &building).status(), 201);
}

/// The hub is alive and still answers the stored entity.
fn still_serving(hub: &Hub) {
    let (status, body) = hub.get_json("/entities/urn:ngsi-ld:Building:1");
    assert_eq!(status, 200, "the hub still serves: {body}");
    assert_eq!(body["id"], "urn:ngsi-ld:Building:1");
    assert_eq!(body["height"]["value"], 300);
}

fn assert_limit(response: reqwest::blocking::Response, what: &str) {
    let body = assert_problem(response, 400, "BadRequestData");
    let detail = body["detail"].as_str().unwrap_or_default();
    assert!(detail.contains("64 levels") && detail.contains("limit"), "{what}: the detail names the limit: {body}");
    assert!(detail.contains("at position"), "{what}: the detail names the position: {body}");
}

#[test]
fn deep_nesting_in_the_url_is_refused_and_the_hub_serves_on() {
    let hub = lenient_hub();
    seed(&hub);
    let cases = [
        ("q", nested("(", "height==300", ")", DEEP)),
        ("type", nested("(", "Building", ")", DEEP)),
        ("scopeQ", nested("(", "/Seoul", ")", DEEP)),
        ("pick", nested("a{", "x", "}", DEEP)),
        ("omit", nested("a{", "x", "}", DEEP)),
    ];
    for (param, value) in &cases {
        let path = format!("/entities?type=Building&join=inline&{param}={value}");
        assert_limit(hub.get(&path).send().unwrap(), param);
        still_serving(&hub);
    }
    // At the limit itself every kind still works.
    let at_limit = nested("(", "height==300", ")", 64);
    let (status, body) = hub.get_json(&format!("/entities?type={}&q={at_limit}", nested("(", "Building", ")", 64)));
    assert_eq!((status, body[0]["id"].clone()), (200, json!("urn:ngsi-ld:Building:1")), "{body}");
    // A deep type on retrieval, and on the temporal API.
    let deep_type = nested("(", "Building", ")", DEEP);
    assert_limit(hub.get(&format!("/entities/urn:ngsi-ld:Building:1?type={deep_type}")).send().unwrap(), "retrieve");
    assert_limit(hub.get(&format!("/temporal/entities?type={deep_type}")).send().unwrap(), "temporal type");
    still_serving(&hub);
}

#[test]
fn deep_nesting_in_a_query_body_is_refused() {
    let hub = Hub::start();
    seed(&hub);
    let query = |extra: Value| {
        let mut body = json!({"type": "Query", "entities": [{"type": "Building"}]});
        for (k, v) in extra.as_object().unwrap() {
            body[k] = v.clone();
        }
        hub.send_json(Method::POST, "/entityOperations/query", &body).send().unwrap()
    };
    assert_limit(query(json!({"q": nested("(", "height==300", ")", DEEP)})), "q in a body");
    assert_limit(query(json!({"scopeQ": nested("(", "/Seoul", ")", DEEP)})), "scopeQ in a body");
    assert_limit(query(json!({"entities": [{"type": nested("(", "Building", ")", DEEP)}]})), "type in a body");
    still_serving(&hub);
    let (status, body) = json_of(query(json!({"q": nested("(", "height==300", ")", 64)})));
    assert_eq!((status, body[0]["id"].clone()), (200, json!("urn:ngsi-ld:Building:1")), "{body}");
}

#[test]
fn deep_subscriptions_are_refused_at_creation_and_the_notifier_lives_on() {
    let hub = Hub::start();
    seed(&hub);
    let receiver = Receiver::start();
    let subscription = |id: &str, extra: Value| {
        let mut body = json!({
            "id": id, "type": "Subscription", "entities": [{"type": "Building"}],
            "notification": {"endpoint": {"uri": receiver.url("/notify")}}
        });
        for (k, v) in extra.as_object().unwrap() {
            body[k] = v.clone();
        }
        body
    };
    let refused = [
        json!({"q": nested("(", "height>1", ")", DEEP)}),
        json!({"scopeQ": nested("(", "/Seoul", ")", DEEP)}),
        json!({"entities": [{"type": nested("(", "Building", ")", DEEP)}]}),
    ];
    for (n, extra) in refused.into_iter().enumerate() {
        let id = format!("urn:ngsi-ld:Subscription:deep-{n}");
        assert_limit(hub.post("/subscriptions", &subscription(&id, extra)), &id);
        let (status, _) = hub.get_json(&format!("/subscriptions/{id}"));
        assert_eq!(status, 404, "a refused subscription is not stored");
    }
    let joined = subscription(
        "urn:ngsi-ld:Subscription:join",
        json!({"notification": {"endpoint": {"uri": receiver.url("/notify")}, "join": "inline", "joinLevel": 1000}}),
    );
    let body = assert_problem(hub.post("/subscriptions", &joined), 400, "BadRequestData");
    assert!(body["detail"].as_str().unwrap().contains("limit of this hub, 8"), "{body}");
    // A subscription at the limit is accepted, and matching it notifies.
    let id = "urn:ngsi-ld:Subscription:at-limit";
    let at_limit = subscription(
        id,
        json!({"q": nested("(", "height>1", ")", 64), "scopeQ": nested("(", "/Seoul", ")", 64), "watchedAttributes": ["height"]}),
    );
    assert_eq!(hub.post("/subscriptions", &at_limit).status(), 201);
    // An update cannot make it deep either.
    for patch in [json!({"q": nested("(", "height>1", ")", DEEP)}), json!({"scopeQ": nested("(", "/Seoul", ")", DEEP)})]
    {
        let response = hub.send_json(Method::PATCH, &format!("/subscriptions/{id}"), &patch).send().unwrap();
        assert_limit(response, "PATCH /subscriptions");
    }
    let patch = json!({"height": {"type": "Property", "value": 301}});
    let response = hub.send_json(Method::PATCH, "/entities/urn:ngsi-ld:Building:1/attrs", &patch).send().unwrap();
    assert_eq!(response.status(), 204);
    let got = receiver.wait_for(id, 1, Duration::from_secs(20));
    assert_eq!(got.len(), 1, "the notifier matched the deep (but bounded) subscription");
    assert_eq!(got[0]["data"][0]["height"]["value"], 301);
    let (status, body) = hub.get_json("/entities/urn:ngsi-ld:Building:1");
    assert_eq!((status, body["height"]["value"].clone()), (200, json!(301)));
}

/// Three entities linking in a cycle: A -> B -> C -> A.
fn cycle(hub: &Hub) {
    let node = |me: &str, next: &str| {
        json!({"id": format!("urn:ngsi-ld:Node:{me}"), "type": "Node",
               "label": {"type": "Property", "value": me},
               "next": {"type": "Relationship", "object": format!("urn:ngsi-ld:Node:{next}")}})
    };
    let batch = json!([node("A", "B"), node("B", "C"), node("C", "A")]);
    assert_eq!(hub.post("/entityOperations/create", &batch).status(), 201);
}

#[test]
fn join_level_is_capped_and_cycles_are_cut() {
    let hub = Hub::start();
    seed(&hub);
    cycle(&hub);
    for path in [
        "/entities/urn:ngsi-ld:Node:A?join=inline&joinLevel=1000",
        "/entities?type=Node&join=inline&joinLevel=1000",
        "/entities?type=Node&join=flat&joinLevel=1000",
    ] {
        let body = assert_problem(hub.get(path).send().unwrap(), 400, "BadRequestData");
        assert!(body["detail"].as_str().unwrap().contains("limit of this hub, 8"), "{path}: {body}");
        still_serving(&hub);
    }
    // At the limit over the cycle: each entity once on the path, then the cycle is cut.
    let (status, a) = hub.get_json("/entities/urn:ngsi-ld:Node:A?join=inline&joinLevel=8");
    assert_eq!(status, 200, "{a}");
    let b = &a["next"]["entity"];
    let c = &b["next"]["entity"];
    assert_eq!((b["id"].as_str(), c["id"].as_str()), (Some("urn:ngsi-ld:Node:B"), Some("urn:ngsi-ld:Node:C")), "{a}");
    assert_eq!(c["next"]["object"], "urn:ngsi-ld:Node:A");
    assert!(c["next"].get("entity").is_none(), "A is not embedded inside itself: {a}");
    // Flat: the entity, then each linked entity once.
    let (status, list) = hub.get_json("/entities/urn:ngsi-ld:Node:A?join=flat&joinLevel=8");
    assert_eq!(status, 200, "{list}");
    let ids: Vec<&str> = list.as_array().unwrap().iter().map(|e| e["id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["urn:ngsi-ld:Node:A", "urn:ngsi-ld:Node:B", "urn:ngsi-ld:Node:C"]);
    // A query over the whole cycle, inline: every root shows the other two once.
    let (status, all) = hub.get_json("/entities?type=Node&join=inline&joinLevel=8");
    assert_eq!(status, 200, "{all}");
    for root in all.as_array().unwrap() {
        let first = &root["next"]["entity"];
        let second = &first["next"]["entity"];
        assert!(second["next"].get("entity").is_none(), "the cycle is cut after two hops: {root}");
        let mut seen = vec![root["id"].clone(), first["id"].clone(), second["id"].clone()];
        seen.sort_by_key(|v| v.to_string());
        seen.dedup();
        assert_eq!(seen.len(), 3, "each entity once: {root}");
    }
    still_serving(&hub);
}

#[test]
fn multi_byte_characters_next_to_operators() {
    let hub = Hub::start();
    seed(&hub);
    let ids = |q: &str| {
        let (status, body) = hub.get_json(&format!("/entities?type=Building&q={}", urlencode(q)));
        assert_eq!(status, 200, "{q:?}: {body}");
        body.as_array().unwrap().iter().map(|e| e["id"].as_str().unwrap().to_owned()).collect::<Vec<_>>()
    };
    // Non-breaking and ideographic spaces are white space around names and operators.
    assert_eq!(ids("height\u{a0}==\u{a0}300"), ["urn:ngsi-ld:Building:1"]);
    assert_eq!(ids("\u{3000}height==300\u{3000};\u{3000}name==\"서울 타워\""), ["urn:ngsi-ld:Building:1"]);
    assert_eq!(ids("이름\u{3000}==\u{a0}1"), Vec::<String>::new());
    // Incomplete ones are refused with a position that is a character boundary of the input.
    for q in ["height==\u{a0}", "높이\u{3000}>\u{3000}", "(\u{a0}height==300", "name==\"서울", "\u{a0}!\u{3000}"] {
        let response = hub.get(&format!("/entities?type=Building&q={}", urlencode(q))).send().unwrap();
        let body = assert_problem(response, 400, "BadRequestData");
        let detail = body["detail"].as_str().unwrap();
        let position: usize = detail
            .split("at position ")
            .nth(1)
            .and_then(|rest| rest.split(':').next())
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("{q:?}: the detail names a position: {body}"));
        assert!(q.is_char_boundary(position), "{q:?}: position {position} is a char boundary");
        still_serving(&hub);
    }
}

/// Percent-encodes every byte but ASCII letters and digits.
fn urlencode(text: &str) -> String {
    text.bytes()
        .map(|b| if b.is_ascii_alphanumeric() { (b as char).to_string() } else { format!("%{b:02X}") })
        .collect()
}

#[test]
fn a_query_with_100k_attrs_answers() {
    let hub = lenient_hub();
    seed(&hub);
    let mut attrs: Vec<String> = (0..100_000).map(|i| format!("attribute{i}")).collect();
    attrs.push("height".into());
    let query = json!({"type": "Query", "entities": [{"type": "Building"}], "attrs": attrs});
    let (status, body) = json_of(hub.send_json(Method::POST, "/entityOperations/query", &query).send().unwrap());
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body,
        json!([{"id": "urn:ngsi-ld:Building:1", "type": "Building", "scope": "/Seoul",
                      "height": {"type": "Property", "value": 300}}])
    );
    // 40k ids, one of them stored (past SQLite's 32766 variables with the type and attrs).
    let mut ids: Vec<Value> = (0..40_000).map(|i| json!(format!("urn:ngsi-ld:Building:x{i}"))).collect();
    ids.push(json!("urn:ngsi-ld:Building:1"));
    let entities: Vec<Value> = ids.into_iter().map(|id| json!({"id": id, "type": "Building"})).collect();
    let query = json!({"type": "Query", "entities": entities, "attrs": ["height"]});
    let (status, body) = json_of(hub.send_json(Method::POST, "/entityOperations/query", &query).send().unwrap());
    assert_eq!(status, 200, "{body}");
    assert_eq!(body.as_array().map(Vec::len), Some(1), "{body}");
    still_serving(&hub);
}

/// A body serde_json accepts (up to 128 levels) could be stored deeper than serde_json reads back,
/// leaving an entity no read could decode. Nesting past the limits is refused at the door.
#[test]
fn deep_values_and_sub_attributes_are_refused_before_they_are_stored() {
    let hub = Hub::start();
    seed(&hub);
    let mut sub = json!({"type": "Property", "value": 1});
    for _ in 0..100 {
        sub = json!({"type": "Property", "value": 1, "s": sub});
    }
    let mut value = json!(1);
    for _ in 0..100 {
        value = json!([value]);
    }
    let cases = [
        (json!({"id": "urn:ngsi-ld:Building:2", "type": "Building", "p": sub}), "sub-attributes nested deeper than 16"),
        (
            json!({"id": "urn:ngsi-ld:Building:3", "type": "Building", "p": {"type": "Property", "value": value}}),
            "nested deeper than 64 levels",
        ),
    ];
    for (entity, expected) in cases {
        let body = assert_problem(hub.post("/entities", &entity), 400, "BadRequestData");
        assert!(body["detail"].as_str().unwrap().contains(expected), "{body}");
        let patch = json!({"height": entity["p"].clone()});
        let path = "/entities/urn:ngsi-ld:Building:1/attrs";
        let response = hub.send_json(Method::POST, path, &patch).send().unwrap();
        let body = assert_problem(response, 400, "BadRequestData");
        assert!(body["detail"].as_str().unwrap().contains(expected), "{body}");
        still_serving(&hub);
    }
    let (status, body) = hub.get_json("/entities?type=Building");
    assert_eq!((status, body.as_array().map(Vec::len)), (200, Some(1)), "{body}");
}
