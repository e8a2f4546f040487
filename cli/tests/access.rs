//! Authorization (issue 16 item 2), black box: every role × every API group × its own and
//! another tenant, allowed or refused (401/403, bodies asserted), and for reads that what a
//! policy hides appears nowhere: bodies, counts, `/types`, `/attributes`, temporal answers,
//! notifications and federated answers.
//!
//! One hub with API keys (`--auth-keys`); keys made with `cityhub keys create` before it starts.
//! Tenant `seoul` has the issue's policy: public may read `AirQualityObserved` without
//! `deviceId`; `busan` has none.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::{test_store, Hub, Receiver};
use reqwest::Method;
use serde_json::{json, Value};

const FORBIDDEN: &str = "https://cityhub.dev/errors/Forbidden";

fn keys(data: &Path, args: &[&str]) -> String {
    let mut all = vec!["keys".to_owned(), "--data".to_owned(), data.display().to_string()];
    if let Some(url) = test_store(data) {
        all.extend(["--store".to_owned(), url]);
    }
    all.extend(args.iter().map(|s| s.to_string()));
    let out = Command::new(env!("CARGO_BIN_EXE_cityhub")).args(&all).output().expect("cityhub runs");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "cityhub {all:?}: {}{stdout}", String::from_utf8_lossy(&out.stderr));
    stdout
}

/// A key for `role` in `tenant` (`*`: every tenant): (id, key).
fn issue(data: &Path, tenant: &str, role: &str) -> (String, String) {
    let out = keys(data, &["create", "--tenant", tenant, "--role", role]);
    let key = out.lines().last().expect("a last line").trim().to_owned();
    let id = out.split_whitespace().nth(1).expect("the key's id").to_owned();
    (id, key)
}

struct Caller {
    role: &'static str,
    key: Option<String>,
}

fn send(
    hub: &Hub,
    who: &Caller,
    tenant: &str,
    method: Method,
    path: &str,
    body: Option<&Value>,
) -> (u16, Value, Option<String>) {
    let url = if path.starts_with("/cityhub/") { format!("{}{path}", hub.base) } else { hub.url(path) };
    let mut request = hub.client.request(method, url).header("NGSILD-Tenant", tenant);
    if let Some(key) = &who.key {
        request = request.header("X-API-Key", key);
    }
    if let Some(body) = body {
        request = request.header("Content-Type", "application/json").body(body.to_string());
    }
    let response = request.send().expect("an answer");
    let count = response.headers().get("ngsild-results-count").map(|v| v.to_str().unwrap().to_owned());
    let (status, body) = common::json_of(response);
    (status, body, count)
}

const ROLES: [&str; 4] = ["public", "reader", "editor", "admin"];

fn rank(role: &str) -> usize {
    ROLES.iter().position(|r| *r == role).expect("a role")
}

fn seed(hub: &Hub, admin: &Caller, tenant: &str) {
    let entities = json!([
        {"id": "urn:aq:1", "type": "AirQualityObserved", "pm10": {"type": "Property", "value": 30},
         "deviceId": {"type": "Property", "value": "d1"}},
        {"id": "urn:sl:1", "type": "Streetlight", "on": {"type": "Property", "value": true}}
    ]);
    let (status, body, _) = send(hub, admin, tenant, Method::POST, "/entityOperations/upsert", Some(&entities));
    assert!(status == 201 || status == 204, "seed {tenant}: {status} {body}");
}

/// One request of an API group and the least role that may send it.
struct Row {
    group: &'static str,
    method: Method,
    path: String,
    body: Option<Value>,
    least: &'static str,
    /// A read of entity data, which seoul's policy opens to public.
    data_read: bool,
}

fn rows(n: &str, receiver: &str) -> Vec<Row> {
    let row = |group, method, path: &str, body: Option<Value>, least, data_read| Row {
        group,
        method,
        path: path.to_owned(),
        body,
        least,
        data_read,
    };
    let entity = |id: String| json!({"id": id, "type": "Thing", "n": {"type": "Property", "value": 1}});
    let subscription = json!({"type": "Subscription", "id": format!("urn:sub:{n}"), "entities": [{"type": "Thing"}],
        "notification": {"endpoint": {"uri": receiver}}});
    let csub = json!({"type": "Subscription", "id": format!("urn:csub:{n}"), "entities": [{"type": "Thing"}],
        "notification": {"endpoint": {"uri": receiver}}});
    let registration = json!({"type": "ContextSourceRegistration", "id": format!("urn:reg:{n}"),
        "information": [{"entities": [{"type": "Nothing"}]}], "endpoint": "http://127.0.0.1:9"});
    let policy = json!({"id": format!("urn:policy:{n}"), "role": "editor", "effect": "deny", "hiddenAttributes": ["nothingAtAll"]});
    vec![
        row("entities: query", Method::GET, "/entities?type=Streetlight", None, "reader", true),
        row("entities: retrieve", Method::GET, "/entities/urn:aq:1", None, "reader", true),
        row("entities: create", Method::POST, "/entities", Some(entity(format!("urn:thing:{n}"))), "editor", false),
        row(
            "entities: update",
            Method::PATCH,
            "/entities/urn:aq:1/attrs",
            Some(json!({"pm10": {"type": "Property", "value": 31}})),
            "editor",
            false,
        ),
        row("entities: delete", Method::DELETE, &format!("/entities/urn:nothing:{n}"), None, "editor", false),
        row(
            "batch: upsert",
            Method::POST,
            "/entityOperations/upsert",
            Some(json!([entity(format!("urn:batch:{n}"))])),
            "editor",
            false,
        ),
        row(
            "batch: query",
            Method::POST,
            "/entityOperations/query",
            Some(json!({"type": "Query", "entities": [{"type": "AirQualityObserved"}]})),
            "reader",
            true,
        ),
        row("purge", Method::DELETE, "/entities?type=Nothing", None, "admin", false),
        row("temporal: query", Method::GET, "/temporal/entities?type=AirQualityObserved", None, "reader", true),
        row(
            "temporal: write",
            Method::POST,
            "/temporal/entities/urn:aq:1/attrs",
            Some(json!({"pm10": [{"type": "Property", "value": 5, "observedAt": "2026-01-01T00:00:00Z"}]})),
            "editor",
            false,
        ),
        row("discovery: types", Method::GET, "/types", None, "reader", true),
        row("discovery: attributes", Method::GET, "/attributes", None, "reader", true),
        row("subscriptions: create", Method::POST, "/subscriptions", Some(subscription), "reader", false),
        row("subscriptions: list", Method::GET, "/subscriptions", None, "reader", false),
        row("csourceRegistrations: create", Method::POST, "/csourceRegistrations", Some(registration), "admin", false),
        row("csourceRegistrations: list", Method::GET, "/csourceRegistrations?type=Nothing", None, "reader", false),
        row("csourceSubscriptions: create", Method::POST, "/csourceSubscriptions", Some(csub), "reader", false),
        row("csourceSubscriptions: list", Method::GET, "/csourceSubscriptions", None, "reader", false),
        row("jsonldContexts: list", Method::GET, "/jsonldContexts", None, "reader", false),
        row(
            "jsonldContexts: add",
            Method::POST,
            "/jsonldContexts",
            Some(json!({"@context": {"n": format!("urn:n:{n}")}})),
            "editor",
            false,
        ),
        row("info", Method::GET, "/info/sourceIdentity", None, "public", false),
        row("policies: list", Method::GET, "/cityhub/v1/policies", None, "admin", false),
        row("policies: create", Method::POST, "/cityhub/v1/policies", Some(policy), "admin", false),
    ]
}

/// Two deny policies on the key `subject`: no entity of type Streetlight, no attribute deviceId.
fn deny_lights_and_device_ids(hub: &Hub, root: &Caller, subject: &str) {
    for (n, policy) in [
        ("lights", json!({"subject": subject, "effect": "deny", "entityTypes": ["Streetlight"]})),
        ("device", json!({"subject": subject, "effect": "deny", "hiddenAttributes": ["deviceId"]})),
    ] {
        let mut policy = policy;
        policy["id"] = json!(format!("urn:policy:{n}"));
        let (status, body, _) = send(hub, root, "seoul", Method::POST, "/cityhub/v1/policies", Some(&policy));
        assert_eq!(status, 201, "{body}");
    }
}

fn air_quality_policy(hub: &Hub, admin: &Caller) {
    let policy = json!({"id": "urn:policy:air", "role": "public", "effect": "allow",
        "entityTypes": ["AirQualityObserved"], "hiddenAttributes": ["deviceId"]});
    let (status, body, _) = send(hub, admin, "seoul", Method::POST, "/cityhub/v1/policies", Some(&policy));
    assert_eq!(status, 201, "{body}");
}

#[test]
fn every_role_in_every_group_of_its_own_and_another_tenant() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let (_, root) = issue(&data, "*", "admin");
    let mut callers = vec![Caller { role: "public", key: None }];
    for role in ["reader", "editor", "admin"] {
        callers.push(Caller { role, key: Some(issue(&data, "seoul", role).1) });
    }
    let hub = Hub::spawn(&data, &["--auth-keys"]);
    let root = Caller { role: "admin", key: Some(root) };
    seed(&hub, &root, "seoul");
    seed(&hub, &root, "busan");
    air_quality_policy(&hub, &root);
    let receiver = Receiver::start();

    // A bad key is 401 whatever it asks.
    let forged = Caller { role: "admin", key: Some("chk_forged".into()) };
    let (status, body, _) = send(&hub, &forged, "seoul", Method::GET, "/entities?type=Streetlight", None);
    assert_eq!((status, body["type"].as_str()), (401, Some("https://cityhub.dev/errors/Unauthorized")), "{body}");

    let mut checked = 0;
    for who in &callers {
        for tenant in ["seoul", "busan"] {
            let n = format!("{}-{tenant}", who.role);
            for row in rows(&n, &receiver.url("/notify")) {
                let own = tenant == "seoul";
                let allowed = (own && rank(who.role) >= rank(row.least))
                    || row.least == "public"
                    || (row.data_read && own && who.role == "public");
                let (status, body, _) = send(&hub, who, tenant, row.method.clone(), &row.path, row.body.as_ref());
                let case = format!("{} in {tenant} ({} {}): {status} {body}", who.role, row.group, row.path);
                if allowed {
                    assert!(status < 400 || status == 404 && row.method == Method::DELETE, "allowed: {case}");
                } else {
                    assert_eq!(status, 403, "refused: {case}");
                    assert_eq!(body["type"], FORBIDDEN, "{case}");
                    assert_eq!(body["title"], "The caller may not do this", "{case}");
                    let detail = body["detail"].as_str().unwrap_or_default();
                    let held = if own { who.role } else { "public" };
                    assert!(
                        detail.contains(&format!("needs role {}", row.least))
                            && detail.contains(&format!("'{tenant}'"))
                            && detail.contains(&format!("it has role {held}")),
                        "the detail names the role needed, the tenant and the role held: {case}"
                    );
                }
                checked += 1;
            }
        }
    }
    assert_eq!(checked, 4 * 2 * rows("", "").len());
}

fn ids(body: &Value) -> Vec<String> {
    let mut ids: Vec<String> =
        body.as_array().into_iter().flatten().map(|e| e["id"].as_str().unwrap_or("").to_owned()).collect();
    ids.sort();
    ids
}

#[test]
fn what_a_policy_hides_appears_nowhere() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let (_, root) = issue(&data, "*", "admin");
    let (_, reader) = issue(&data, "seoul", "reader");
    let (narrow_id, narrow) = issue(&data, "seoul", "reader");
    // A second hub, open, as a context source of seoul's AirQualityObserved and Streetlight.
    let source = Hub::start();
    let remote = json!([
        {"id": "urn:aq:remote", "type": "AirQualityObserved", "pm10": {"type": "Property", "value": 7},
         "deviceId": {"type": "Property", "value": "remote-device"}},
        {"id": "urn:sl:remote", "type": "Streetlight", "on": {"type": "Property", "value": false}}
    ]);
    let open = Caller { role: "admin", key: None };
    let (status, body, _) = send(&source, &open, "seoul", Method::POST, "/entityOperations/upsert", Some(&remote));
    assert_eq!(status, 201, "{body}");

    let hub = Hub::spawn(&data, &["--auth-keys"]);
    let root = Caller { role: "admin", key: Some(root) };
    let public = Caller { role: "public", key: None };
    let reader = Caller { role: "reader", key: Some(reader) };
    let narrow = Caller { role: "reader", key: Some(narrow) };
    seed(&hub, &root, "seoul");
    air_quality_policy(&hub, &root);
    // The narrow reader may not see streetlights, nor any deviceId (two deny policies on its key).
    deny_lights_and_device_ids(&hub, &root, &narrow_id);
    // A bad policy names its field.
    let bad = json!({"id": "urn:policy:bad", "role": "public", "effect": "allow", "entityTypes": "AirQualityObserved"});
    let (status, body, _) = send(&hub, &root, "seoul", Method::POST, "/cityhub/v1/policies", Some(&bad));
    assert_eq!(
        (status, body["type"].as_str()),
        (400, Some("https://uri.etsi.org/ngsi-ld/errors/BadRequestData")),
        "{body}"
    );
    assert!(body["detail"].as_str().unwrap().contains("entityTypes"), "{body}");

    // Bodies and counts: public sees the one AirQualityObserved, without deviceId.
    let both = "/entities?type=AirQualityObserved,Streetlight&count=true&local=true";
    let (status, body, count) = send(&hub, &public, "seoul", Method::GET, both, None);
    assert_eq!((status, ids(&body), count.as_deref()), (200, vec!["urn:aq:1".to_owned()], Some("1")), "{body}");
    assert!(!body.to_string().contains("deviceId") && !body.to_string().contains("d1"), "{body}");
    let (status, body, count) = send(&hub, &reader, "seoul", Method::GET, both, None);
    assert_eq!((status, ids(&body).len(), count.as_deref()), (200, 2, Some("2")), "the reader sees both: {body}");
    assert!(body.to_string().contains("deviceId"), "{body}");
    let (status, body, _) = send(&hub, &public, "seoul", Method::GET, "/entities/urn:sl:1", None);
    assert_eq!(
        (status, body["type"].as_str()),
        (404, Some("https://uri.etsi.org/ngsi-ld/errors/ResourceNotFound")),
        "{body}"
    );
    let (status, body, _) = send(&hub, &public, "seoul", Method::GET, "/entities/urn:aq:1", None);
    assert_eq!(status, 200, "{body}");
    assert!(body.get("pm10").is_some() && body.get("deviceId").is_none(), "{body}");
    // A query on the hidden attribute is refused, naming it (a count of it would tell).
    let (status, body, _) =
        send(&hub, &public, "seoul", Method::GET, "/entities?type=AirQualityObserved&q=deviceId==%22d1%22", None);
    assert_eq!((status, body["type"].as_str()), (403, Some(FORBIDDEN)), "{body}");
    assert!(body["detail"].as_str().unwrap().contains("deviceId"), "{body}");

    // /types and /attributes name nothing hidden.
    let (_, types, _) = send(&hub, &public, "seoul", Method::GET, "/types", None);
    assert_eq!(types["typeList"], json!(["AirQualityObserved"]), "{types}");
    let (_, attrs, _) = send(&hub, &public, "seoul", Method::GET, "/attributes", None);
    assert_eq!(attrs["attributeList"], json!(["pm10"]), "{attrs}");
    let (status, _, _) = send(&hub, &public, "seoul", Method::GET, "/types/Streetlight", None);
    assert_eq!(status, 404);
    let (_, types, _) = send(&hub, &reader, "seoul", Method::GET, "/types", None);
    assert_eq!(types["typeList"], json!(["AirQualityObserved", "Streetlight"]), "{types}");

    // Temporal answers.
    let history = json!({"pm10": [{"type": "Property", "value": 1, "observedAt": "2026-01-01T00:00:00Z"}],
        "deviceId": [{"type": "Property", "value": "d1", "observedAt": "2026-01-01T00:00:00Z"}]});
    let (status, body, _) =
        send(&hub, &root, "seoul", Method::POST, "/temporal/entities/urn:aq:1/attrs", Some(&history));
    assert_eq!(status, 204, "{body}");
    let (status, body, count) = send(
        &hub,
        &public,
        "seoul",
        Method::GET,
        "/temporal/entities?type=AirQualityObserved,Streetlight&count=true",
        None,
    );
    assert_eq!((status, ids(&body), count.as_deref()), (200, vec!["urn:aq:1".to_owned()], Some("1")), "{body}");
    assert!(!body.to_string().contains("deviceId") && body.to_string().contains("pm10"), "{body}");
    let (status, _, _) = send(&hub, &public, "seoul", Method::GET, "/temporal/entities/urn:sl:1", None);
    assert_eq!(status, 404);

    // Notifications: the narrow reader's subscription carries no streetlight and no deviceId,
    // and stops when its key is revoked; a reader's beside it (same endpoint, so in order)
    // marks when the narrow one would have been sent.
    let receiver = Receiver::start();
    let subscribe = |who: &Caller, id: &str| {
        let sub = json!({"type": "Subscription", "id": id,
            "entities": [{"type": "AirQualityObserved"}, {"type": "Streetlight"}],
            "notification": {"endpoint": {"uri": receiver.url("/notify")}}});
        let (status, body, _) = send(&hub, who, "seoul", Method::POST, "/subscriptions", Some(&sub));
        assert_eq!(status, 201, "{body}");
    };
    subscribe(&narrow, "urn:sub:narrow");
    subscribe(&reader, "urn:sub:reader");
    // A subscriber sees and changes its own subscriptions; an admin sees every one.
    for (who, listed) in [
        (&narrow, vec!["urn:sub:narrow"]),
        (&reader, vec!["urn:sub:reader"]),
        (&root, vec!["urn:sub:narrow", "urn:sub:reader"]),
    ] {
        let (status, body, _) = send(&hub, who, "seoul", Method::GET, "/subscriptions", None);
        assert_eq!((status, ids(&body)), (200, listed.iter().map(|s| s.to_string()).collect::<Vec<_>>()), "{body}");
    }
    let (status, body, _) = send(&hub, &narrow, "seoul", Method::DELETE, "/subscriptions/urn:sub:reader", None);
    assert_eq!(
        (status, body["type"].as_str()),
        (404, Some("https://uri.etsi.org/ngsi-ld/errors/ResourceNotFound")),
        "{body}"
    );
    for (id, attr, value) in [("urn:sl:1", "on", json!(false)), ("urn:aq:1", "pm10", json!(40))] {
        let patch =
            json!({attr: {"type": "Property", "value": value}, "deviceId": {"type": "Property", "value": "d2"}});
        let (status, body, _) =
            send(&hub, &root, "seoul", Method::PATCH, &format!("/entities/{id}/attrs"), Some(&patch));
        assert_eq!(status, 204, "{body}");
    }
    let seen = receiver.wait_for("urn:sub:reader", 2, Duration::from_secs(20));
    assert_eq!(seen.len(), 2, "the reader is told of both changes");
    assert!(seen.iter().any(|n| n["data"].to_string().contains("\"d2\"")), "the reader sees deviceId: {seen:?}");
    let narrowed = receiver.wait_for("urn:sub:narrow", 1, Duration::from_secs(20));
    let all = receiver.of("urn:sub:narrow");
    assert_eq!(narrowed.len(), 1, "one notification, of the air quality only: {all:?}");
    // The data only: the notification's own id is a random UUID, which may hold "d2".
    let text = all[0]["data"].to_string();
    assert!(
        text.contains("urn:aq:1") && !text.contains("urn:sl:1") && !text.contains("deviceId") && !text.contains("d2"),
        "{text}"
    );

    // Federated answers: a registration of seoul points at the open source hub; what it
    // answers is narrowed like the hub's own.
    let registration = json!({"type": "ContextSourceRegistration", "id": "urn:reg:source",
        "information": [{"entities": [{"type": "AirQualityObserved"}, {"type": "Streetlight"}]}],
        "endpoint": source.base, "tenant": "seoul",
        "contextSourceInfo": [{"key": "X-Peer-Token", "value": "peer-secret"}]});
    let (status, body, _) = send(&hub, &root, "seoul", Method::POST, "/csourceRegistrations", Some(&registration));
    assert_eq!(status, 201, "{body}");
    // The headers a registration sends its source (credentials, often) are its admins' to see.
    for path in ["/csourceRegistrations/urn:reg:source", "/csourceRegistrations?type=AirQualityObserved"] {
        let (status, body, _) = send(&hub, &reader, "seoul", Method::GET, path, None);
        assert_eq!(status, 200, "{body}");
        assert!(body.to_string().contains("urn:reg:source") && !body.to_string().contains("peer-secret"), "{body}");
        let (_, body, _) = send(&hub, &root, "seoul", Method::GET, path, None);
        assert!(body.to_string().contains("peer-secret"), "the admin sees them: {body}");
    }
    let federated = "/entities?type=AirQualityObserved,Streetlight&count=true";
    let (status, body, count) = send(&hub, &public, "seoul", Method::GET, federated, None);
    assert_eq!(status, 200, "{body}");
    assert_eq!(ids(&body), vec!["urn:aq:1".to_owned(), "urn:aq:remote".to_owned()], "{body}");
    assert_eq!(count.as_deref(), Some("2"), "the count counts only what is seen");
    assert!(!body.to_string().contains("deviceId") && !body.to_string().contains("remote-device"), "{body}");
    let (status, body, _) = send(&hub, &reader, "seoul", Method::GET, federated, None);
    assert_eq!((status, ids(&body).len()), (200, 4), "the reader sees all four: {body}");
    // Discovery with the source: nothing hidden named, whoever names it.
    let (_, types, _) = send(&hub, &public, "seoul", Method::GET, "/types", None);
    assert_eq!(types["typeList"], json!(["AirQualityObserved"]), "{types}");
    let (status, info, _) = send(&hub, &public, "seoul", Method::GET, "/types/AirQualityObserved", None);
    assert_eq!(status, 200, "{info}");
    assert!(info.to_string().contains("pm10") && !info.to_string().contains("deviceId"), "{info}");
    let (_, attrs, _) = send(&hub, &public, "seoul", Method::GET, "/attributes?details=true", None);
    assert!(!attrs.to_string().contains("deviceId") && !attrs.to_string().contains("Streetlight"), "{attrs}");

    // A revoked key's subscription stops notifying (on SQLite the hub is stopped to revoke).
    drop(hub);
    let out = keys(&data, &["revoke", &narrow_id]);
    assert!(out.contains("revoked"), "{out}");
    let hub = Hub::spawn(&data, &["--auth-keys"]);
    let patch = json!({"pm10": {"type": "Property", "value": 41}});
    let (status, body, _) = send(&hub, &root, "seoul", Method::PATCH, "/entities/urn:aq:1/attrs", Some(&patch));
    assert_eq!(status, 204, "{body}");
    let seen = receiver.wait_for("urn:sub:reader", 3, Duration::from_secs(20));
    assert_eq!(seen.len(), 3, "the reader is told");
    assert_eq!(receiver.of("urn:sub:narrow").len(), 1, "the revoked key's subscription told nothing more");
}

/// A forwarded request says who asks: the caller's own key (`--federation-auth caller`, the
/// default), or the hub's token (`--federation-auth hub --federation-token`); the source decides
/// on it like on any request.
#[test]
fn a_forwarded_request_carries_the_callers_or_the_hubs_credentials() {
    let dir = tempfile::tempdir().unwrap();
    let (source_data, data) = (dir.path().join("source"), dir.path().join("hub"));
    // The source enforces keys too; the hub's token there is a reader key of seoul.
    let (_, source_root) = issue(&source_data, "*", "admin");
    let (_, hub_token) = issue(&source_data, "seoul", "reader");
    let source = Hub::spawn(&source_data, &["--auth-keys"]);
    let source_root = Caller { role: "admin", key: Some(source_root) };
    let remote =
        json!([{"id": "urn:aq:remote", "type": "AirQualityObserved", "pm10": {"type": "Property", "value": 7}}]);
    let (status, body, _) =
        send(&source, &source_root, "seoul", Method::POST, "/entityOperations/upsert", Some(&remote));
    assert_eq!(status, 201, "{body}");

    let (_, root) = issue(&data, "*", "admin");
    let root = Caller { role: "admin", key: Some(root) };
    let registration = json!({"type": "ContextSourceRegistration", "id": "urn:reg:source",
        "information": [{"entities": [{"type": "AirQualityObserved"}]}], "endpoint": source.base, "tenant": "seoul"});
    let query = "/entities?type=AirQualityObserved";
    // (flags, whether the source answers, what the source's refusal says when it does not)
    for (flags, sees_remote, refusal) in [
        // The caller's key goes on: not one the source issued, so the source answers 401.
        (&["--auth-keys"][..], false, Some("401")),
        (&["--auth-keys", "--federation-auth", "hub", "--federation-token", hub_token.as_str()][..], true, None),
        // As the hub without a token: the source takes it for public (403).
        (&["--auth-keys", "--federation-auth", "hub"][..], false, Some("403")),
    ] {
        let hub = Hub::spawn(&data, flags);
        let _ = send(&hub, &root, "seoul", Method::POST, "/csourceRegistrations", Some(&registration));
        let response = hub
            .client
            .get(hub.url(query))
            .header("NGSILD-Tenant", "seoul")
            .header("X-API-Key", root.key.as_deref().unwrap())
            .send()
            .unwrap();
        let warning = response.headers().get("ngsild-warning").map(|v| v.to_str().unwrap().to_owned());
        let (status, body) = common::json_of(response);
        assert_eq!(status, 200, "{flags:?}: {body}");
        assert_eq!(ids(&body) == vec!["urn:aq:remote".to_owned()], sees_remote, "{flags:?}: {body}");
        match refusal {
            Some(code) => {
                assert!(warning.as_deref().is_some_and(|w| w.contains(code)), "{flags:?}: warning {warning:?}")
            }
            None => assert_eq!(warning, None, "{flags:?}"),
        }
        drop(hub);
    }
}

/// Policies are kept in the store and every hub's cache follows its events: a policy put at one
/// hub holds at another on the same PostgreSQL database, and so does its removal.
#[test]
fn a_policy_put_at_one_hub_holds_at_another() {
    let dir = tempfile::tempdir().unwrap();
    let db = cityhub_pgtest::database();
    let hub_on = |name: &str| {
        let data = dir.path().join(name);
        std::fs::create_dir_all(&data).unwrap();
        // Under CITYHUB_TEST_STORE=postgres the harness reads the database from this file.
        std::fs::write(data.join("test-store-url"), &db).unwrap();
        let mut args = vec!["--auth-keys"];
        if !common::store_is_postgres() {
            args.extend(["--store", db.as_str()]);
        }
        (Hub::spawn(&data, &args), data)
    };
    let out = Command::new(env!("CARGO_BIN_EXE_cityhub"))
        .args(["keys", "--data", &dir.path().join("keys").display().to_string(), "--store", &db])
        .args(["create", "--tenant", "*", "--role", "admin"])
        .output()
        .expect("cityhub runs");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let root = Caller {
        role: "admin",
        key: Some(String::from_utf8_lossy(&out.stdout).lines().last().unwrap().trim().to_owned()),
    };
    let ((a, _), (b, _)) = (hub_on("a"), hub_on("b"));
    let public = Caller { role: "public", key: None };
    seed(&a, &root, "seoul");
    let query = "/entities?type=AirQualityObserved,Streetlight";
    let (status, body, _) = send(&b, &public, "seoul", Method::GET, query, None);
    assert_eq!((status, body["type"].as_str()), (403, Some(FORBIDDEN)), "no policy yet: {body}");
    air_quality_policy(&a, &root);
    // Bounded: the other hub reads the policy once the store's event reaches it.
    let mut seen = (0, Value::Null);
    for _ in 0..100 {
        let (status, body, _) = send(&b, &public, "seoul", Method::GET, query, None);
        seen = (status, body);
        if seen.0 == 200 {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!((seen.0, ids(&seen.1)), (200, vec!["urn:aq:1".to_owned()]), "{}", seen.1);
    assert!(!seen.1.to_string().contains("deviceId"), "{}", seen.1);
    let (status, body, _) = send(&a, &root, "seoul", Method::DELETE, "/cityhub/v1/policies/urn:policy:air", None);
    assert_eq!(status, 204, "{body}");
    for _ in 0..100 {
        let (status, body, _) = send(&b, &public, "seoul", Method::GET, query, None);
        seen = (status, body);
        if seen.0 == 403 {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!((seen.0, seen.1["type"].as_str()), (403, Some(FORBIDDEN)), "the removal holds too: {}", seen.1);
}

/// The routes that take their tenant from `fiware-service` (device provisioning, the NGSIv2
/// intake) are decided for that tenant: an editor of seoul may feed seoul that way, not busan.
#[test]
fn a_tenant_named_by_fiware_service_is_the_one_decided_for() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let (_, editor) = issue(&data, "seoul", "editor");
    let hub = Hub::spawn(&data, &["--auth-keys"]);
    let notification = json!({"subscriptionId": "s1", "data": [{"id": "Room1", "type": "Room",
        "temperature": {"type": "Number", "value": 21.5, "metadata": {}}}]});
    let notify = |service: &str| {
        hub.client
            .post(format!("{}/cityhub/v1/ngsiv2/notify", hub.base))
            .header("fiware-service", service)
            .header("X-API-Key", &editor)
            .json(&notification)
            .send()
            .unwrap()
    };
    let refused = notify("busan");
    assert_eq!(refused.status().as_u16(), 403);
    let body: Value = refused.json().unwrap();
    assert_eq!(body["type"], FORBIDDEN, "{body}");
    assert!(body["detail"].as_str().unwrap().contains("busan"), "{body}");
    assert_eq!(notify("seoul").status().as_u16(), 204);
    let stored = hub
        .client
        .get(hub.url("/entities/urn:ngsi-ld:Room:Room1"))
        .header("NGSILD-Tenant", "seoul")
        .header("X-API-Key", &editor)
        .send()
        .unwrap();
    assert_eq!(stored.status().as_u16(), 200, "written in seoul");
}

/// The live channel (`/cityhub/v1/live`) hides what the listener's policies hide, as every read
/// does: no entity of a denied type (nor its deletion), no hidden attribute.
#[test]
fn the_live_channel_tells_a_listener_only_what_its_policies_let_it_see() {
    use std::io::BufRead;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let (_, root) = issue(&data, "*", "admin");
    let (narrow_id, narrow) = issue(&data, "seoul", "reader");
    let hub = Hub::spawn(&data, &["--auth-keys"]);
    let root = Caller { role: "admin", key: Some(root) };
    deny_lights_and_device_ids(&hub, &root, &narrow_id);
    let light = json!({"id": "urn:sl:1", "type": "Streetlight", "on": {"type": "Property", "value": true}});
    let (status, body, _) = send(&hub, &root, "seoul", Method::POST, "/entities", Some(&light));
    assert_eq!(status, 201, "{body}");

    // The narrow reader listens (the stream is read on a thread; lines come through a channel).
    let response = reqwest::blocking::Client::builder()
        .timeout(None)
        .build()
        .unwrap()
        .get(format!("{}/cityhub/v1/live", hub.base))
        .header("NGSILD-Tenant", "seoul")
        .header("X-API-Key", &narrow)
        .send()
        .expect("the stream opens");
    assert_eq!(response.status().as_u16(), 200);
    let (lines, received) = std::sync::mpsc::channel::<String>();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(response).lines() {
            let Ok(line) = line else { return };
            if lines.send(line).is_err() {
                return;
            }
        }
    });

    let aq = json!({"id": "urn:aq:1", "type": "AirQualityObserved", "pm10": {"type": "Property", "value": 9},
                    "deviceId": {"type": "Property", "value": "d-secret"}});
    let (status, body, _) = send(&hub, &root, "seoul", Method::POST, "/entities", Some(&aq));
    assert_eq!(status, 201, "{body}");
    let patch = json!({"on": {"type": "Property", "value": false}});
    let (status, body, _) = send(&hub, &root, "seoul", Method::PATCH, "/entities/urn:sl:1/attrs", Some(&patch));
    assert_eq!(status, 204, "{body}");
    let (status, body, _) = send(&hub, &root, "seoul", Method::DELETE, "/entities/urn:sl:1", None);
    assert_eq!(status, 204, "{body}");
    let last = json!({"id": "urn:aq:last", "type": "AirQualityObserved", "pm10": {"type": "Property", "value": 1}});
    let (status, body, _) = send(&hub, &root, "seoul", Method::POST, "/entities", Some(&last));
    assert_eq!(status, 201, "{body}");

    let mut events = Vec::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while !events.iter().any(|e: &Value| e["id"] == "urn:aq:last") {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        let line = received.recv_timeout(left).unwrap_or_else(|_| panic!("urn:aq:last never told: {events:?}"));
        if let Some(data) = line.strip_prefix("data:") {
            events.push(serde_json::from_str(data.trim()).expect("an event's data is JSON"));
        }
    }
    let ids: Vec<&str> = events.iter().filter_map(|e| e["id"].as_str()).collect();
    assert_eq!(ids, ["urn:aq:1", "urn:aq:last"], "no streetlight, not even its deletion: {events:?}");
    assert_eq!(events[0]["entity"]["pm10"], 9, "{events:?}");
    let text = serde_json::to_string(&events).unwrap();
    assert!(!text.contains("deviceId") && !text.contains("d-secret"), "the hidden attribute is not told: {text}");
}
