//! Identities (issue 16): API keys made with the CLI, bearer JWTs of an issuer whose JWKS this
//! test serves on loopback, rate limits, the in-flight bound, safe defaults, the config file.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Command, Output};

use common::{store_is_postgres, test_store, Hub};
use serde_json::{json, Value};

fn cityhub(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_cityhub")).args(args).output().expect("cityhub runs")
}

/// `cityhub keys ...` on the store of `data` (its PostgreSQL database under
/// `CITYHUB_TEST_STORE=postgres`).
fn keys(data: &Path, args: &[&str]) -> String {
    let mut all = vec!["keys".to_owned(), "--data".to_owned(), data.display().to_string()];
    if let Some(url) = test_store(data) {
        all.extend(["--store".to_owned(), url]);
    }
    all.extend(args.iter().map(|s| s.to_string()));
    let all: Vec<&str> = all.iter().map(String::as_str).collect();
    let out = cityhub(&all);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "cityhub {all:?}: {}{stdout}", String::from_utf8_lossy(&out.stderr));
    stdout
}

/// Issues a key: (id, key) from the first and last lines of `keys create`.
fn issue(data: &Path, args: &[&str]) -> (String, String) {
    let mut all = vec!["create"];
    all.extend(args);
    let out = keys(data, &all);
    let secret = out.lines().last().expect("a last line").trim().to_owned();
    let id = out.split_whitespace().nth(1).expect("the key's id").to_owned();
    (id, secret)
}

fn whoami(hub: &Hub, header: Option<(&str, &str)>) -> (u16, Value, Option<String>) {
    let mut request = hub.client.get(format!("{}/auth/whoami", hub.base));
    if let Some((name, value)) = header {
        request = request.header(name, value);
    }
    let response = request.send().expect("request sent");
    let challenge = response.headers().get("www-authenticate").map(|v| v.to_str().unwrap().to_owned());
    let (status, body) = common::json_of(response);
    (status, body, challenge)
}

fn assert_unauthorized(got: (u16, Value, Option<String>), detail_has: &str) {
    let (status, body, challenge) = got;
    assert_eq!(status, 401, "{body}");
    assert_eq!(body["type"], "https://cityhub.dev/errors/Unauthorized", "{body}");
    assert_eq!(body["title"], "The request carries no valid credentials");
    let detail = body["detail"].as_str().unwrap();
    assert!(detail.contains(detail_has), "{detail:?} should say {detail_has:?}");
    let challenge = challenge.expect("a WWW-Authenticate header");
    assert!(challenge.starts_with("Bearer realm=\"cityhub\""), "{challenge}");
    assert!(challenge.contains("error=\"invalid_token\""), "{challenge}");
    assert!(challenge.contains("error_description=\""), "{challenge}");
}

/// Every byte the store holds: the SQLite files, or the records table on PostgreSQL.
fn store_bytes(data: &Path) -> Vec<u8> {
    match test_store(data) {
        None => {
            let mut all = Vec::new();
            for file in ["cityhub.sqlite", "cityhub.sqlite-wal"] {
                if let Ok(bytes) = std::fs::read(data.join(file)) {
                    all.extend(bytes);
                }
            }
            all
        }
        Some(url) => {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            runtime.block_on(async {
                let client = cityhub_pgtest::connect(&url).await;
                let rows = client.query("SELECT tenant || kind || id || doc::text FROM records", &[]).await.unwrap();
                rows.iter().map(|r| r.get::<_, String>(0)).collect::<Vec<_>>().join("\n").into_bytes()
            })
        }
    }
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle.as_bytes())
}

#[test]
fn api_keys_made_with_the_cli_are_used_and_revoked_and_never_stored_in_clear() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let (editor_id, editor) = issue(&data, &["--tenant", "seoul", "--role", "editor", "--name", "robot"]);
    let (reader_id, reader) = issue(&data, &["--tenant", "*", "--role", "reader", "--expires", "2999-01-01"]);
    assert!(editor.starts_with("chk_") && editor.len() >= 4 + 43, "{editor}");
    assert_ne!(editor, reader);

    let listed = keys(&data, &["list"]);
    assert!(
        listed.contains(&editor_id) && listed.contains("tenant=seoul") && listed.contains("name=robot"),
        "{listed}"
    );
    assert!(listed.contains(&reader_id) && listed.contains("expires=2999-01-01T00:00:00Z"), "{listed}");
    assert!(!listed.contains(&editor) && !listed.contains(&reader), "the list never shows a key: {listed}");

    let mut hub = Hub::spawn(&data, &["--auth-keys"]);
    let (status, me, _) = whoami(&hub, Some(("Authorization", &format!("Bearer {editor}"))));
    assert_eq!((status, me), (200, json!({"subject": editor_id, "via": "key", "grants": ["seoul:editor"]})));
    let (status, me, _) = whoami(&hub, Some(("X-API-Key", &reader)));
    assert_eq!((status, me), (200, json!({"subject": reader_id, "via": "key", "grants": ["reader"]})));
    let (status, me, challenge) = whoami(&hub, None);
    assert_eq!((status, me), (200, json!({"subject": null, "via": "anonymous", "grants": ["public"]})));
    assert_eq!(challenge, None);
    let forged = format!("chk_{}", "A".repeat(43));
    assert_unauthorized(whoami(&hub, Some(("X-API-Key", &forged))), "not one this hub issued");
    assert_unauthorized(whoami(&hub, Some(("Authorization", "Basic dXNlcjpwdw=="))), "Bearer");

    // The store holds the keys' records, but neither key.
    let bytes = store_bytes(&data);
    assert!(contains(&bytes, &editor_id) && contains(&bytes, &reader_id), "the records are where the test reads");
    assert!(!contains(&bytes, &editor) && !contains(&bytes, &reader), "a key is stored in clear");
    assert!(!contains(&bytes, editor.trim_start_matches("chk_")), "a key's random part is stored in clear");

    let revoked = if store_is_postgres() {
        // Another process revokes while the hub runs: the hub follows the store's events.
        let out = keys(&data, &["revoke", &editor_id]);
        assert!(out.contains("revoked"), "{out}");
        let mut answer = whoami(&hub, Some(("X-API-Key", &editor)));
        for _ in 0..100 {
            if answer.0 == 401 {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
            answer = whoami(&hub, Some(("X-API-Key", &editor)));
        }
        answer
    } else {
        // One process per SQLite directory: revoke while the hub is stopped.
        hub.terminate();
        let out = keys(&data, &["revoke", &editor_id]);
        assert!(out.contains("revoked"), "{out}");
        hub = Hub::spawn(&data, &["--auth-keys"]);
        whoami(&hub, Some(("X-API-Key", &editor)))
    };
    assert_unauthorized(revoked, &format!("the API key {editor_id} was revoked"));
    let (status, me, _) = whoami(&hub, Some(("X-API-Key", &reader)));
    assert_eq!((status, me["subject"].clone()), (200, json!(reader_id)), "the other key still works");
    assert!(keys(&data, &["list"]).contains("revoked=20"), "the list shows the revocation");
    drop(hub);

    // Open mode (no identity source): every caller is an admin, credentials or not.
    let open = Hub::spawn(&data, &[]);
    let (status, me, _) = whoami(&open, Some(("X-API-Key", &editor)));
    assert_eq!((status, me), (200, json!({"subject": null, "via": "anonymous", "grants": ["admin"]})));
}

#[test]
fn an_expired_key_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let (id, key) = issue(&data, &["--tenant", "seoul", "--role", "reader", "--expires", "2020-01-01"]);
    let hub = Hub::spawn(&data, &["--auth-keys"]);
    assert_unauthorized(whoami(&hub, Some(("X-API-Key", &key))), &format!("the API key {id} expired at 2020-01-01"));
}

#[test]
fn one_client_over_its_rate_gets_429_with_retry_after_while_another_is_served() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    // One request per 100 seconds: the second of two in a row is over it, however slow the
    // machine is.
    let (_, slow) = issue(&data, &["--tenant", "*", "--role", "reader", "--rate", "0.01"]);
    let (_, other) = issue(&data, &["--tenant", "*", "--role", "reader"]);
    let hub = Hub::spawn(&data, &["--auth-keys", "--rate-limit", "1000"]);
    let get = |key: &str| hub.get("/entities?type=Thing").header("X-API-Key", key).send().unwrap();
    assert_eq!(get(&slow).status(), 200);
    let over = get(&slow);
    assert_eq!(over.status(), 429);
    let retry: u64 = over.headers()["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=100).contains(&retry), "Retry-After {retry}");
    let (_, body) = common::json_of(over);
    assert_eq!(body["type"], "https://cityhub.dev/errors/TooManyRequests", "{body}");
    assert!(body["detail"].as_str().unwrap().contains("rate limit"), "{body}");
    for _ in 0..5 {
        let response = get(&other);
        assert_eq!(response.status(), 200, "another client is served as before");
    }
}

#[test]
fn over_max_in_flight_a_request_is_shed_at_once_with_503() {
    let hub = Hub::start_with(&["--max-in-flight", "1"]);
    let address = hub.base.trim_start_matches("http://").to_owned();
    // A request whose body never finishes stays in flight.
    let mut stuck = TcpStream::connect(&address).unwrap();
    write!(
        stuck,
        "POST /ngsi-ld/v1/entities HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{{"
    )
    .unwrap();
    let mut shed = None;
    for _ in 0..100 {
        let response = hub.get("/entities?type=Thing").send().unwrap();
        if response.status() == 503 {
            shed = Some(response);
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let shed = shed.expect("a request over --max-in-flight is answered 503");
    assert_eq!(shed.headers()["retry-after"], "1");
    let (_, body) = common::json_of(shed);
    assert_eq!(body["type"], "https://cityhub.dev/errors/Overloaded", "{body}");
    assert!(body["detail"].as_str().unwrap().contains("--max-in-flight"), "{body}");
    drop(stuck.shutdown(std::net::Shutdown::Both));
    let mut rest = Vec::new();
    let _ = stuck.read_to_end(&mut rest);
    // Once the stuck request is gone, requests are served again.
    let mut served = false;
    for _ in 0..100 {
        if hub.get("/entities?type=Thing").send().unwrap().status() == 200 {
            served = true;
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert!(served);
}

#[test]
fn a_hub_serving_other_machines_without_identities_refuses_to_start_unless_allowed() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data").display().to_string();
    // 192.0.2.1 (TEST-NET-1) is on no interface: a start that passes the check fails to bind
    // instead of serving.
    let refused = cityhub(&["serve", "--listen", "192.0.2.1:0", "--data", &data]);
    assert!(!refused.status.success());
    let why = String::from_utf8_lossy(&refused.stderr);
    for flag in ["--auth-jwks", "--auth-keys", "--allow-anonymous"] {
        assert!(why.contains(flag), "the refusal names {flag}: {why}");
    }
    assert!(!why.contains("cannot listen"), "{why}");
    for allowed in [&["--allow-anonymous"][..], &["--auth-keys"][..]] {
        let mut args = vec!["serve", "--listen", "192.0.2.1:0", "--data", &data];
        args.extend(allowed);
        let out = cityhub(&args);
        let why = String::from_utf8_lossy(&out.stderr);
        assert!(why.contains("cannot listen on 192.0.2.1:0"), "{allowed:?} passes the check: {why}");
    }
}
