//! Access requests end to end (issue 19 item 5, "what must be shown"), black box: a restricted
//! dataset is listed but its download refused; a company (an API key the city issued, role
//! `public`) asks for it; an admin approves; the key issued reads that dataset — its download
//! and, through the NGSI-LD API, only the entities of its selection — and nothing else; it stops
//! at its rate limit (429 with Retry-After), after its expiry and after revocation; usage counts
//! move. Every bad input is a ProblemDetails saying what to change.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::{json_of, test_store, Hub};
use reqwest::blocking::Response;
use reqwest::Method;
use serde_json::{json, Value};

const FORBIDDEN: &str = "https://cityhub.dev/errors/Forbidden";
const UNAUTHORIZED: &str = "https://cityhub.dev/errors/Unauthorized";
const TOO_MANY: &str = "https://cityhub.dev/errors/TooManyRequests";
const ETSI: &str = "https://uri.etsi.org/ngsi-ld/errors/";

/// A key for `role` in `tenant`, made before the hub starts: (id, key).
fn issue(data: &Path, tenant: &str, role: &str) -> (String, String) {
    let mut args = vec!["keys".to_owned(), "--data".to_owned(), data.display().to_string()];
    if let Some(url) = test_store(data) {
        args.extend(["--store".to_owned(), url]);
    }
    args.extend(["create", "--tenant", tenant, "--role", role].map(str::to_owned));
    let out = Command::new(env!("CARGO_BIN_EXE_cityhub")).args(&args).output().expect("cityhub runs");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "{}{stdout}", String::from_utf8_lossy(&out.stderr));
    let key = stdout.lines().last().expect("a last line").trim().to_owned();
    let id = stdout.split_whitespace().nth(1).expect("the key's id").to_owned();
    (id, key)
}

fn call(hub: &Hub, key: Option<&str>, method: Method, path: &str, body: Option<&Value>) -> Response {
    let url = if path.starts_with("/ngsi-ld/") {
        hub.url(&path["/ngsi-ld/v1".len()..])
    } else {
        format!("{}{path}", hub.base)
    };
    let mut request = hub.client.request(method, url);
    if let Some(key) = key {
        request = request.header("X-API-Key", key);
    }
    if let Some(body) = body {
        request = request.header("Content-Type", "application/json").body(body.to_string());
    }
    request.send().expect("an answer")
}

fn get(hub: &Hub, key: Option<&str>, path: &str) -> (u16, Value) {
    json_of(call(hub, key, Method::GET, path, None))
}

fn post(hub: &Hub, key: Option<&str>, path: &str, body: &Value) -> (u16, Value) {
    json_of(call(hub, key, Method::POST, path, Some(body)))
}

/// A ProblemDetails of `kind` (an ETSI name or a full type) whose detail holds `says`.
fn problem(answer: (u16, Value), status: u16, kind: &str, says: &str) -> Value {
    let (got, body) = answer;
    let kind = if kind.contains(':') { kind.to_owned() } else { format!("{ETSI}{kind}") };
    assert_eq!(got, status, "{body}");
    assert_eq!(body["type"], kind, "{body}");
    assert!(body["title"].is_string(), "{body}");
    let detail = body["detail"].as_str().unwrap_or_default();
    assert!(detail.contains(says), "detail {detail:?} should say {says:?}");
    body
}

fn dataset(name: &str, level: &str, selection: Value) -> Value {
    json!({
        "name": name, "title": {"en": name, "ko": name}, "description": {"en": format!("the {name} dataset")},
        "publisher": {"id": "city", "name": {"en": "City"}}, "license": "CC-BY-4.0",
        "accessLevel": level, "selection": selection,
    })
}

fn ids(body: &Value) -> Vec<String> {
    let mut ids: Vec<String> =
        body.as_array().expect("an array").iter().map(|e| e["id"].as_str().unwrap().to_owned()).collect();
    ids.sort();
    ids
}

fn in_seconds(s: i64) -> String {
    (chrono::Utc::now() + chrono::Duration::seconds(s)).to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

#[test]
fn an_access_request_end_to_end() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let (_, admin) = issue(&data, "*", "admin");
    let (company_id, company) = issue(&data, "*", "public");
    let (_, stranger) = issue(&data, "*", "public");
    let hub = Hub::spawn(&data, &["--auth-keys"]);
    let admin = Some(admin.as_str());
    let company = Some(company.as_str());

    let entities = json!([
        {"id": "urn:aq:1", "type": "AirQualityObserved", "pm25": {"type": "Property", "value": 30}},
        {"id": "urn:aq:2", "type": "AirQualityObserved", "pm25": {"type": "Property", "value": 5}},
        {"id": "urn:sl:1", "type": "Streetlight", "on": {"type": "Property", "value": true}},
    ]);
    let (status, body) = post(&hub, admin, "/ngsi-ld/v1/entityOperations/create", &entities);
    assert_eq!(status, 201, "{body}");
    for d in [
        dataset("air", "restricted", json!({"types": ["AirQualityObserved"], "q": "pm25>10"})),
        dataset("lights", "restricted", json!({"types": ["Streetlight"]})),
        dataset("open-lights", "public", json!({"types": ["Streetlight"]})),
    ] {
        let (status, body) = post(&hub, admin, "/cityhub/v1/datasets", &d);
        assert_eq!(status, 201, "{body}");
    }

    // A restricted dataset is listed, in the catalogue and in CKAN, but its download is refused.
    let (status, catalog) = get(&hub, None, "/api/3/action/package_list");
    assert_eq!((status, catalog["result"].clone()), (200, json!(["air", "lights", "open-lights"])));
    let download = "/cityhub/v1/datasets/air/download?format=ndjson";
    problem(get(&hub, None, download), 403, FORBIDDEN, "request access with POST /cityhub/v1/access-requests");
    problem(get(&hub, company, download), 403, FORBIDDEN, "is restricted");
    // A public one stays open to anyone.
    let (status, _) = get(&hub, None, "/cityhub/v1/datasets/open-lights/download?format=csv");
    assert_eq!(status, 200);

    // Asking: an identity is needed, and every bad input says what to change.
    let ask = json!({"dataset": "air", "purpose": "a bus app that avoids polluted streets",
        "contact": {"name": "Kim", "email": "kim@bus.example"}});
    problem(post(&hub, None, "/cityhub/v1/access-requests", &ask), 403, FORBIDDEN, "needs an identity");
    problem(
        post(&hub, company, "/cityhub/v1/access-requests", &json!({"dataset": "air"})),
        400,
        "BadRequestData",
        "needs purpose",
    );
    problem(
        post(
            &hub,
            company,
            "/cityhub/v1/access-requests",
            &json!({"dataset": "nope", "purpose": "p", "contact": {"name": "n"}}),
        ),
        400,
        "BadRequestData",
        "no dataset named \"nope\"",
    );
    problem(
        post(
            &hub,
            company,
            "/cityhub/v1/access-requests",
            &json!({"dataset": "open-lights", "purpose": "p", "contact": {"name": "n"}}),
        ),
        400,
        "BadRequestData",
        "is public",
    );
    let (status, asked) = post(&hub, company, "/cityhub/v1/access-requests", &ask);
    assert_eq!(status, 201, "{asked}");
    assert_eq!((asked["status"].as_str(), asked["requester"].as_str()), (Some("pending"), Some(company_id.as_str())));
    let id = asked["id"].as_str().unwrap().to_owned();
    // Its requester and the admins see it; another company does not.
    assert_eq!(ids(&get(&hub, company, "/cityhub/v1/access-requests").1), vec![id.clone()]);
    assert_eq!(get(&hub, Some(&stranger), "/cityhub/v1/access-requests").1, json!([]));
    problem(
        get(&hub, Some(&stranger), &format!("/cityhub/v1/access-requests/{id}")),
        404,
        "ResourceNotFound",
        "no access request",
    );

    // Deciding is the admins'; approvals need a future expiry and a rate.
    let approve = format!("/cityhub/v1/access-requests/{id}/approve");
    problem(
        post(&hub, company, &approve, &json!({"expiresAt": in_seconds(3600), "rateLimit": 5})),
        403,
        FORBIDDEN,
        "admin",
    );
    problem(
        post(&hub, admin, &approve, &json!({"expiresAt": "2020-01-01T00:00:00Z", "rateLimit": 5})),
        400,
        "BadRequestData",
        "past",
    );
    problem(
        post(&hub, admin, &approve, &json!({"expiresAt": in_seconds(3600)})),
        400,
        "BadRequestData",
        "needs rateLimit",
    );
    let (status, approved) = post(&hub, admin, &approve, &json!({"expiresAt": in_seconds(3600), "rateLimit": 1000}));
    assert_eq!(status, 200, "{approved}");
    assert_eq!(approved["status"], "approved");
    let granted = approved["key"].as_str().expect("the key, shown once").to_owned();
    assert!(granted.starts_with("chk_"));
    let key_id = approved["keyId"].as_str().unwrap().to_owned();
    // Shown once: never again, to anyone.
    let (_, again) = get(&hub, admin, &format!("/cityhub/v1/access-requests/{id}"));
    assert!(again.get("key").is_none() && !again.to_string().contains(&granted), "{again}");
    problem(
        post(&hub, admin, &approve, &json!({"expiresAt": in_seconds(3600), "rateLimit": 5})),
        409,
        "Conflict",
        "is approved",
    );
    let key = Some(granted.as_str());

    // The key reads that dataset: its download...
    let response = call(&hub, key, Method::GET, download, None);
    assert_eq!(response.status().as_u16(), 200);
    let rows = response.text().unwrap();
    assert_eq!(rows.lines().count(), 1, "{rows}");
    assert!(rows.contains("urn:aq:1") && !rows.contains("urn:aq:2"), "{rows}");
    // ... and through the NGSI-LD API only the entities of its selection...
    let (status, seen) = get(&hub, key, "/ngsi-ld/v1/entities?type=AirQualityObserved");
    assert_eq!((status, ids(&seen)), (200, vec!["urn:aq:1".to_owned()]), "{seen}");
    problem(get(&hub, key, "/ngsi-ld/v1/entities/urn:aq:2"), 404, "ResourceNotFound", "urn:aq:2");
    // ... and nothing else: another dataset, other types, writes.
    problem(get(&hub, key, "/cityhub/v1/datasets/lights/download"), 403, FORBIDDEN, "\"lights\" is restricted");
    assert_eq!(get(&hub, key, "/ngsi-ld/v1/entities?type=Streetlight").1, json!([]));
    problem(get(&hub, key, "/ngsi-ld/v1/entities/urn:sl:1"), 404, "ResourceNotFound", "urn:sl:1");
    let patch = json!({"pm25": {"type": "Property", "value": 1}});
    problem(
        json_of(call(&hub, key, Method::PATCH, "/ngsi-ld/v1/entities/urn:aq:1/attrs", Some(&patch))),
        403,
        FORBIDDEN,
        "needs role editor",
    );

    // Usage counts move (counted when the download ends, just after its last byte).
    let usage = format!("/cityhub/v1/access-requests/{id}/usage");
    problem(get(&hub, company, &usage), 403, FORBIDDEN, "admin");
    let mut counted = Value::Null;
    for _ in 0..100 {
        counted = get(&hub, admin, &usage).1;
        if counted["requests"] == 1 {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!((counted["requests"].clone(), counted["rows"].clone()), (json!(1), json!(1)), "{counted}");
    assert_eq!(counted["bytes"], json!(rows.len()), "{counted}");
    assert_eq!(counted["consumer"], json!(key_id));
    let (_, listed) = get(&hub, admin, "/cityhub/v1/access-requests");
    assert_eq!(listed[0]["usage"]["requests"], 1, "{listed}");

    // Refusing: with a reason; a refused request is not approved afterwards.
    let (_, second) = post(
        &hub,
        company,
        "/cityhub/v1/access-requests",
        &json!({"dataset": "lights", "purpose": "p", "contact": {"name": "n"}}),
    );
    let second = second["id"].as_str().unwrap().to_owned();
    problem(
        post(&hub, admin, &format!("/cityhub/v1/access-requests/{second}/refuse"), &json!({})),
        400,
        "BadRequestData",
        "reason",
    );
    let (status, refused) = post(
        &hub,
        admin,
        &format!("/cityhub/v1/access-requests/{second}/refuse"),
        &json!({"reason": "not for resale"}),
    );
    assert_eq!(
        (status, refused["status"].as_str(), refused["reason"].as_str()),
        (200, Some("refused"), Some("not for resale"))
    );
    problem(
        post(
            &hub,
            admin,
            &format!("/cityhub/v1/access-requests/{second}/approve"),
            &json!({"expiresAt": in_seconds(60), "rateLimit": 1}),
        ),
        409,
        "Conflict",
        "is refused",
    );

    // A key at 1 request a second stops at its rate (429, Retry-After), then at its expiry.
    let (_, third) = post(&hub, company, "/cityhub/v1/access-requests", &ask);
    let third = third["id"].as_str().unwrap().to_owned();
    let expiry = 4;
    let (status, short) = post(
        &hub,
        admin,
        &format!("/cityhub/v1/access-requests/{third}/approve"),
        &json!({"expiresAt": in_seconds(expiry), "rateLimit": 1}),
    );
    assert_eq!(status, 200, "{short}");
    let short = short["key"].as_str().unwrap().to_owned();
    let mut limited = None;
    for _ in 0..20 {
        let response = call(&hub, Some(&short), Method::GET, "/ngsi-ld/v1/entities?type=AirQualityObserved", None);
        if response.status().as_u16() == 429 {
            limited = Some(response);
            break;
        }
    }
    let limited = limited.expect("a 429 within 20 requests at 1 request a second");
    let retry: u64 = limited.headers()["retry-after"].to_str().unwrap().parse().unwrap();
    assert!(retry >= 1, "Retry-After {retry}");
    problem(json_of(limited), 429, TOO_MANY, "");
    std::thread::sleep(Duration::from_secs(expiry as u64 + 1));
    problem(get(&hub, Some(&short), "/ngsi-ld/v1/entities?type=AirQualityObserved"), 401, UNAUTHORIZED, "expired");

    // Revocation: the key stops working, and its grant is gone.
    problem(
        post(&hub, admin, &format!("/cityhub/v1/access-requests/{second}/revoke"), &json!({})),
        409,
        "Conflict",
        "is refused",
    );
    let (status, revoked) = post(&hub, admin, &format!("/cityhub/v1/access-requests/{id}/revoke"), &json!({}));
    assert_eq!((status, revoked["status"].as_str()), (200, Some("revoked")), "{revoked}");
    let mut answer = (0, Value::Null);
    for _ in 0..100 {
        answer = get(&hub, key, "/ngsi-ld/v1/entities?type=AirQualityObserved");
        if answer.0 == 401 {
            break;
        }
        // Until this hub's key ring reads the revocation, the grant's policy is gone already.
        assert_eq!(answer.1, json!([]), "a revoked grant shows nothing");
        std::thread::sleep(Duration::from_millis(50));
    }
    problem(answer, 401, UNAUTHORIZED, "was revoked");
    problem(get(&hub, key, download), 401, UNAUTHORIZED, "was revoked");
}
