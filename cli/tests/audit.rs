//! The audit log, black-box (issue 16 item 6): writes and refusals are recorded with who, where
//! from, which tenant, what, on what and how it ended; read newest first at
//! `GET /cityhub/v1/audit` with filters and paging; no secret of a request reaches the store.

mod common;

use std::time::Duration;

use common::*;
use reqwest::Method;
use serde_json::{json, Value};

fn room(id: &str) -> Value {
    json!({"id": id, "type": "Room", "temperature": {"type": "Property", "value": 21}})
}

/// The audit log read with `query`, once it holds at least `n` entries (bounded wait: appends
/// are asynchronous).
fn audit(hub: &Hub, query: &str, n: usize) -> (Value, reqwest::header::HeaderMap) {
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let response = hub.client.get(format!("{}/cityhub/v1/audit?{query}", hub.base)).send().unwrap();
        assert_eq!(response.status(), 200);
        let headers = response.headers().clone();
        let body: Value = response.json().unwrap();
        if body.as_array().unwrap().len() >= n || std::time::Instant::now() >= deadline {
            return (body, headers);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn writes_and_refusals_are_recorded_with_their_fields_newest_first() {
    let hub = Hub::start();
    let created =
        hub.send_json(Method::POST, "/entities", &room("urn:ngsi-ld:Room:1")).header("NGSILD-Tenant", "seoul");
    assert_eq!(created.send().unwrap().status(), 201);
    // Reads are not audited.
    let (status, _) = hub.get_json("/entities/urn:ngsi-ld:Room:1");
    assert_eq!(status, 404, "the default tenant has no such room");
    let patch = json!({"temperature": {"type": "Property", "value": 22}});
    let missing = hub.send_json(Method::PATCH, "/entities/urn:ngsi-ld:Room:404/attrs", &patch).send().unwrap();
    assert_eq!(missing.status(), 404);
    let refused = json!({
        "id": "urn:ngsi-ld:Subscription:m", "type": "Subscription", "entities": [{"type": "Room"}],
        "notification": {"endpoint": {"uri": "http://169.254.169.254/latest/meta-data/"}},
    });
    assert_problem(hub.post("/subscriptions", &refused), 400, "BadRequestData");

    let (entries, _) = audit(&hub, "", 3);
    let entries = entries.as_array().unwrap();
    assert_eq!(entries.len(), 3, "two writes and one egress refusal, no read: {entries:?}");
    let [subscription, patched, create] = [&entries[0], &entries[1], &entries[2]];
    assert_eq!(create["operation"], "POST /ngsi-ld/v1/entities");
    assert_eq!(create["tenant"], "seoul");
    assert_eq!(create["status"], 201);
    assert!(create.get("errorType").is_none(), "{create}");
    assert!(create.get("target").is_none(), "the path names no entity: {create}");
    assert_eq!(patched["operation"], "PATCH /ngsi-ld/v1/entities/{id}/attrs");
    assert_eq!(patched["target"], "urn:ngsi-ld:Room:404");
    assert_eq!(patched["tenant"], "");
    assert_eq!(patched["status"], 404);
    assert_eq!(patched["errorType"], "ResourceNotFound");
    assert_eq!(subscription["operation"], "POST /ngsi-ld/v1/subscriptions");
    assert_eq!(subscription["status"], 400);
    assert_eq!(subscription["errorType"], "BadRequestData");
    for entry in entries {
        assert_eq!(entry["subject"], "anonymous", "{entry}");
        assert_eq!(entry["via"], "anonymous", "{entry}");
        assert!(entry["client"].as_str().unwrap().starts_with("127.0.0.1:"), "{entry}");
        assert!(entry["time"].as_str().unwrap().ends_with('Z'), "{entry}");
    }
    assert!(entries[0]["time"].as_str() >= entries[2]["time"].as_str(), "newest first");
}

#[test]
fn filters_and_paging_select_entries() {
    let hub = Hub::start();
    for (tenant, id) in [("a", "urn:ngsi-ld:Room:1"), ("a", "urn:ngsi-ld:Room:2"), ("b", "urn:ngsi-ld:Room:3")] {
        let request = hub.send_json(Method::POST, "/entities", &room(id)).header("NGSILD-Tenant", tenant);
        assert_eq!(request.send().unwrap().status(), 201);
    }
    let again = hub.send_json(Method::POST, "/entities", &room("urn:ngsi-ld:Room:1")).header("NGSILD-Tenant", "a");
    assert_eq!(again.send().unwrap().status(), 409);
    let delete = hub.delete("/entities/urn:ngsi-ld:Room:3").header("NGSILD-Tenant", "b").send().unwrap();
    assert_eq!(delete.status(), 204);
    let (all, _) = audit(&hub, "", 5);
    assert_eq!(all.as_array().unwrap().len(), 5, "{all}");

    let (a, _) = audit(&hub, "tenant=a", 3);
    assert_eq!(a.as_array().unwrap().len(), 3, "{a}");
    assert!(a.as_array().unwrap().iter().all(|e| e["tenant"] == "a"));
    let (failed, _) = audit(&hub, "outcome=failure", 1);
    assert_eq!(failed.as_array().unwrap().len(), 1, "{failed}");
    assert_eq!(failed[0]["errorType"], "AlreadyExists");
    let (conflicts, _) = audit(&hub, "outcome=409&tenant=a", 1);
    assert_eq!(conflicts, failed);
    let (deletes, _) = audit(&hub, "operation=DELETE", 1);
    assert_eq!(deletes.as_array().unwrap().len(), 1);
    assert_eq!(deletes[0]["target"], "urn:ngsi-ld:Room:3");
    let (by_route, _) = audit(&hub, "operation=POST%20/ngsi-ld/v1/entities", 4);
    assert_eq!(by_route.as_array().unwrap().len(), 4, "{by_route}");
    let (anonymous, _) = audit(&hub, "subject=anonymous", 5);
    assert_eq!(anonymous.as_array().unwrap().len(), 5);
    let (none, _) = audit(&hub, "subject=alice", 0);
    assert_eq!(none, json!([]));
    let (future, _) = audit(&hub, "since=2999-01-01T00:00:00Z", 0);
    assert_eq!(future, json!([]));
    let (past, _) = audit(&hub, "until=2000-01-01T00:00:00Z", 0);
    assert_eq!(past, json!([]));

    // Paging, newest first, with the total.
    let (page, headers) = audit(&hub, "limit=2&offset=1&count=true", 2);
    assert_eq!(headers["ngsild-results-count"], "5");
    assert_eq!(page.as_array().unwrap(), &all.as_array().unwrap()[1..3]);

    let bad = hub.client.get(format!("{}/cityhub/v1/audit?outcome=maybe", hub.base)).send().unwrap();
    let body = assert_problem(bad, 400, "BadRequestData");
    assert!(body["detail"].as_str().unwrap().contains("outcome is success, failure or an HTTP status"), "{body}");
    let bad = hub.client.get(format!("{}/cityhub/v1/audit?who=me", hub.base)).send().unwrap();
    assert_problem(bad, 400, "InvalidRequest");
}

#[test]
fn no_secret_of_a_request_reaches_the_stored_log() {
    let hub = Hub::start();
    let token = "eyJhbGciOiJSUzI1NiJ9.SECRET-TOKEN-BODY-7f3a9c.signature";
    let key = "chk_SECRET-API-KEY-5e1d22b0";
    let with_token = hub
        .send_json(Method::POST, "/entities", &room("urn:ngsi-ld:Room:1"))
        .header("Authorization", format!("Bearer {token}"));
    assert_eq!(with_token.send().unwrap().status(), 201);
    let with_key = hub.send_json(Method::POST, "/entities", &room("urn:ngsi-ld:Room:2")).header("X-API-Key", key);
    assert_eq!(with_key.send().unwrap().status(), 201);
    let in_query = hub
        .client
        .delete(format!("{}/ngsi-ld/v1/entities/urn:ngsi-ld:Room:2?access_token={token}", hub.base))
        .header("Authorization", format!("Basic {key}"))
        .send()
        .unwrap();
    assert_eq!(in_query.status(), 400, "an unknown parameter");
    let (entries, _) = audit(&hub, "", 3);
    assert_eq!(entries.as_array().unwrap().len(), 3, "{entries}");
    let answered = entries.to_string();
    for secret in ["SECRET-TOKEN-BODY", "SECRET-API-KEY", "Bearer", "Basic", "access_token"] {
        assert!(!answered.contains(secret), "{secret} in the audit answer: {answered}");
    }
    let stored = stored_text(&hub);
    assert!(stored.contains("/ngsi-ld/v1/entities"), "the stored log was read");
    for secret in ["SECRET-TOKEN-BODY", "SECRET-API-KEY"] {
        assert!(!stored.contains(secret), "{secret} is in the store");
    }
}

/// Everything the store holds, as text: the SQLite files of the data directory, or on
/// PostgreSQL every audit row.
fn stored_text(hub: &Hub) -> String {
    if store_is_postgres() {
        let url = std::fs::read_to_string(hub.data.join("test-store-url")).unwrap();
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        return runtime.block_on(async {
            let client = cityhub_pgtest::connect(url.trim()).await;
            let row =
                client.query_one("SELECT coalesce(string_agg(a::text, ' '), '') FROM audit_log a", &[]).await.unwrap();
            row.get::<_, String>(0)
        });
    }
    let mut text = String::new();
    for entry in std::fs::read_dir(&hub.data).unwrap().flatten() {
        let bytes = std::fs::read(entry.path()).unwrap_or_default();
        text.push_str(&String::from_utf8_lossy(&bytes));
    }
    text
}
