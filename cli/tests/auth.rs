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
    let send_stuck = || {
        // A request whose body never finishes stays in flight.
        let mut stuck = TcpStream::connect(&address).unwrap();
        write!(
            stuck,
            "POST /ngsi-ld/v1/entities HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{{"
        )
        .unwrap();
        stuck.set_nonblocking(true).unwrap();
        stuck
    };
    let mut stuck = send_stuck();
    let mut shed = None;
    let mut seen = Vec::new();
    for _ in 0..200 {
        let response = hub.get("/entities?type=Thing").send().unwrap();
        if response.status() == 503 {
            shed = Some(response);
            break;
        }
        seen.push(response.status().as_u16());
        // The stuck request may have come in while a probe was in flight, and been shed itself:
        // then send another.
        let mut got = [0u8; 64];
        match stuck.read(&mut got) {
            Ok(0) => stuck = send_stuck(),
            Ok(_) => {
                assert!(got.starts_with(b"HTTP/1.1 503"), "{}", String::from_utf8_lossy(&got));
                stuck = send_stuck();
            }
            Err(e) => assert_eq!(e.kind(), std::io::ErrorKind::WouldBlock, "{e}"),
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let shed = shed.unwrap_or_else(|| panic!("no 503 over --max-in-flight; answers {seen:?}"));
    stuck.set_nonblocking(false).unwrap();
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
    // And the shed requests are counted for the operator.
    let metrics = hub.client.get(format!("{}/metrics", hub.base)).send().unwrap().text().unwrap();
    let shed_total: f64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("cityhub_in_flight_shed_total "))
        .unwrap_or_else(|| panic!("no cityhub_in_flight_shed_total in /metrics:\n{metrics}"))
        .trim()
        .parse()
        .unwrap();
    assert!(shed_total >= 1.0, "{shed_total} requests counted shed");
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

/// A signing key the test made with openssl, and its public JWK.
struct SigningKey {
    kid: String,
    alg: jsonwebtoken::Algorithm,
    encoding: jsonwebtoken::EncodingKey,
    jwk: Value,
}

fn openssl(args: &[&str]) -> Vec<u8> {
    let out = Command::new("openssl").args(args).output().expect("openssl runs (the JWT tests need it)");
    assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    out.stdout
}

fn b64(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

fn hex_bytes(hex: &str) -> Vec<u8> {
    (0..hex.len()).step_by(2).map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap()).collect()
}

fn rsa_key(dir: &Path, kid: &str) -> SigningKey {
    let pem = dir.join(format!("{kid}.pem"));
    let pem = pem.to_str().unwrap();
    openssl(&["genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048", "-out", pem]);
    let modulus = String::from_utf8(openssl(&["rsa", "-in", pem, "-noout", "-modulus"])).unwrap();
    let n = hex_bytes(modulus.trim().trim_start_matches("Modulus="));
    let encoding = jsonwebtoken::EncodingKey::from_rsa_pem(&std::fs::read(pem).unwrap()).unwrap();
    let jwk = json!({"kty": "RSA", "kid": kid, "use": "sig", "alg": "RS256", "n": b64(&n), "e": "AQAB"});
    SigningKey { kid: kid.into(), alg: jsonwebtoken::Algorithm::RS256, encoding, jwk }
}

fn ec_key(dir: &Path, kid: &str) -> SigningKey {
    let pem = dir.join(format!("{kid}.pem"));
    let pem = pem.to_str().unwrap();
    openssl(&["genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", pem]);
    // The public key's DER ends with the uncompressed point: 0x04, x, y.
    let der = openssl(&["pkey", "-in", pem, "-pubout", "-outform", "DER"]);
    let point = &der[der.len() - 65..];
    assert_eq!(point[0], 4);
    let encoding = jsonwebtoken::EncodingKey::from_ec_pem(&std::fs::read(pem).unwrap()).unwrap();
    let jwk = json!({"kty": "EC", "kid": kid, "crv": "P-256", "x": b64(&point[1..33]), "y": b64(&point[33..])});
    SigningKey { kid: kid.into(), alg: jsonwebtoken::Algorithm::ES256, encoding, jwk }
}

fn jwks(keys: &[&SigningKey]) -> String {
    json!({"keys": keys.iter().map(|k| k.jwk.clone()).collect::<Vec<_>>()}).to_string()
}

fn now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64
}

const ISSUER: &str = "https://issuer.test/realms/city";

fn claims(roles: &[&str]) -> Value {
    json!({"iss": ISSUER, "aud": ["account", "cityhub"], "sub": "alice", "exp": now() + 600, "iat": now(),
           "realm_access": {"roles": roles}})
}

fn sign(key: &SigningKey, claims: &Value) -> String {
    let mut header = jsonwebtoken::Header::new(key.alg);
    header.kid = Some(key.kid.clone());
    jsonwebtoken::encode(&header, claims, &key.encoding).unwrap()
}

/// A JWKS served on loopback, its document replaceable, its fetches counted; it answers at most
/// 1000 requests.
struct Issuer {
    url: String,
    document: std::sync::Arc<std::sync::Mutex<String>>,
    fetches: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

impl Issuer {
    fn serve(document: String) -> Issuer {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/certs", listener.local_addr().unwrap());
        let document = std::sync::Arc::new(std::sync::Mutex::new(document));
        let fetches = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let (doc, count) = (document.clone(), fetches.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming().take(1000) {
                let Ok(mut stream) = stream else { continue };
                let mut head = Vec::new();
                let mut byte = [0u8; 1];
                while !head.ends_with(b"\r\n\r\n") && head.len() < 16 * 1024 {
                    match stream.read(&mut byte) {
                        Ok(1) => head.push(byte[0]),
                        _ => break,
                    }
                }
                count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let body = doc.lock().unwrap().clone();
                let _ = write!(
                    stream,
                    "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
            }
        });
        Issuer { url, document, fetches }
    }

    fn fetches(&self) -> usize {
        self.fetches.load(std::sync::atomic::Ordering::SeqCst)
    }
}

fn bearer(hub: &Hub, token: &str) -> (u16, Value, Option<String>) {
    whoami(hub, Some(("Authorization", &format!("Bearer {token}"))))
}

#[test]
fn jwts_are_checked_against_the_issuers_jwks_and_their_roles_reach_the_caller() {
    let dir = tempfile::tempdir().unwrap();
    let rsa = rsa_key(dir.path(), "rsa-1");
    let ec = ec_key(dir.path(), "ec-1");
    let issuer = Issuer::serve(jwks(&[&rsa, &ec]));
    let hub = Hub::start_with(&[
        "--auth-jwks",
        &issuer.url,
        "--auth-issuer",
        ISSUER,
        "--auth-audience",
        "cityhub",
        "--auth-roles-claim",
        "realm_access.roles",
    ]);

    // Valid tokens of both key types: the roles that are roles reach the caller.
    let (status, me, _) = bearer(&hub, &sign(&rsa, &claims(&["seoul:editor", "reader", "offline_access"])));
    assert_eq!((status, me), (200, json!({"subject": "alice", "via": "token", "grants": ["seoul:editor", "reader"]})));
    let (status, me, _) = bearer(&hub, &sign(&ec, &claims(&["busan:admin"])));
    assert_eq!((status, me), (200, json!({"subject": "alice", "via": "token", "grants": ["busan:admin"]})));
    // The same token again is served from the cache, with the same identity.
    let token = sign(&ec, &claims(&["busan:admin"]));
    for _ in 0..3 {
        assert_eq!(bearer(&hub, &token).1["grants"], json!(["busan:admin"]));
    }

    let mut expired = claims(&["admin"]);
    expired["exp"] = json!(now() - 600);
    assert_unauthorized(bearer(&hub, &sign(&rsa, &expired)), "the token has expired");
    let mut early = claims(&["admin"]);
    early["nbf"] = json!(now() + 600);
    assert_unauthorized(bearer(&hub, &sign(&rsa, &early)), "not valid yet");
    let mut audience = claims(&["admin"]);
    audience["aud"] = json!("another-service");
    assert_unauthorized(bearer(&hub, &sign(&rsa, &audience)), "audience (aud) does not hold cityhub");
    let mut issued_elsewhere = claims(&["admin"]);
    issued_elsewhere["iss"] = json!("https://evil.test");
    assert_unauthorized(bearer(&hub, &sign(&ec, &issued_elsewhere)), &format!("issuer (iss) is not {ISSUER}"));

    // A tampered payload (roles raised) under the original signature.
    let good = sign(&rsa, &claims(&["seoul:reader"]));
    let parts: Vec<&str> = good.split('.').collect();
    let raised = b64(claims(&["admin"]).to_string().as_bytes());
    assert_unauthorized(bearer(&hub, &format!("{}.{raised}.{}", parts[0], parts[2])), "signature does not verify");
    // alg none, and an HMAC "signed" with the public key.
    let none = format!("{}.{}.", b64(br#"{"alg":"none","typ":"JWT"}"#), b64(claims(&["admin"]).to_string().as_bytes()));
    assert_unauthorized(bearer(&hub, &none), "algorithm \"none\" is not accepted");
    let hs = jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &claims(&["admin"]),
        &jsonwebtoken::EncodingKey::from_secret(rsa.jwk["n"].as_str().unwrap().as_bytes()),
    )
    .unwrap();
    assert_unauthorized(bearer(&hub, &hs), "algorithm \"HS256\" is not accepted");
    assert_unauthorized(bearer(&hub, "not-a-jwt"), "not a JWT");

    // The issuer rotates to a new key: a token of the new kid is accepted once the hub read the
    // JWKS again (at once for an unknown kid, but at most once per 5 s); the old key is gone.
    let rsa2 = rsa_key(dir.path(), "rsa-2");
    *issuer.document.lock().unwrap() = jwks(&[&rsa2, &ec]);
    let rotated = sign(&rsa2, &claims(&["seoul:reader"]));
    let mut answer = bearer(&hub, &rotated);
    for _ in 0..40 {
        if answer.0 == 200 {
            break;
        }
        assert_unauthorized(answer, "kid \"rsa-2\" is not a key of the issuer's JWKS");
        std::thread::sleep(std::time::Duration::from_millis(250));
        answer = bearer(&hub, &rotated);
    }
    assert_eq!((answer.0, answer.1["grants"].clone()), (200, json!(["seoul:reader"])));
    assert_unauthorized(bearer(&hub, &sign(&rsa, &claims(&["reader"]))), "kid \"rsa-1\" is not a key");

    // A flood of made-up kids does not hammer the issuer: at most one fetch per 5 s.
    let before = issuer.fetches();
    let flood = std::time::Instant::now();
    for i in 0..20 {
        let forged = SigningKey { kid: format!("made-up-{i}"), ..rsa_like(&rsa2) };
        assert_unauthorized(bearer(&hub, &sign(&forged, &claims(&["admin"]))), "is not a key of the issuer's JWKS");
    }
    // One fetch per started 5 s of the flood, at most (plus one already due when it began).
    let allowed = 1 + (flood.elapsed().as_secs() / 5 + 1) as usize;
    let fetched = issuer.fetches() - before;
    assert!(fetched <= allowed.min(20 / 2), "{fetched} fetches for 20 unknown kids (allowed {allowed})");
}

/// Another handle on the same RSA signing key (a SigningKey is not Clone).
fn rsa_like(key: &SigningKey) -> SigningKey {
    SigningKey { kid: key.kid.clone(), alg: key.alg, encoding: key.encoding.clone(), jwk: key.jwk.clone() }
}

#[test]
fn a_jwks_file_is_read_at_start_and_a_missing_one_stops_the_start() {
    let dir = tempfile::tempdir().unwrap();
    let ec = ec_key(dir.path(), "ec-file");
    let file = dir.path().join("jwks.json");
    std::fs::write(&file, jwks(&[&ec])).unwrap();
    let hub = Hub::start_with(&["--auth-jwks", file.to_str().unwrap()]);
    let mut no_audience = claims(&["reader"]);
    no_audience.as_object_mut().unwrap().remove("aud");
    let (status, me, _) = bearer(&hub, &sign(&ec, &no_audience));
    assert_eq!((status, me["grants"].clone()), (200, json!([])), "roles are read at `roles` by default");
    let mut top_level = no_audience.clone();
    top_level["roles"] = json!(["seoul:reader"]);
    assert_eq!(bearer(&hub, &sign(&ec, &top_level)).1["grants"], json!(["seoul:reader"]));
    // Without --auth-keys, an API key is not accepted.
    assert_unauthorized(whoami(&hub, Some(("X-API-Key", "chk_x"))), "--auth-keys");

    let missing = dir.path().join("missing.json");
    let data = dir.path().join("data2").display().to_string();
    let out = cityhub(&["serve", "--listen", "127.0.0.1:0", "--data", &data, "--auth-jwks", missing.to_str().unwrap()]);
    assert!(!out.status.success());
    let why = String::from_utf8_lossy(&out.stderr);
    assert!(why.contains("--auth-jwks") && why.contains("missing.json"), "{why}");
}

#[test]
fn a_config_file_sets_serve_flags_below_the_command_line_and_above_the_environment() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("cityhub.toml");
    std::fs::write(
        &file,
        "# what the hub would get on its command line\nlisten = \"192.0.2.1:0\"\nauth_keys = true\nmax-body-bytes = 100\n",
    )
    .unwrap();
    let file = file.to_str().unwrap();
    // The command line's --listen (127.0.0.1:0, from Hub) wins over the file's; the rest holds.
    let hub = Hub::start_with(&["--config", file]);
    assert_unauthorized(whoami(&hub, Some(("X-API-Key", "chk_forged"))), "not one this hub issued");
    let big =
        json!({"id": "urn:ngsi-ld:Thing:1", "type": "Thing", "name": {"type": "Property", "value": "x".repeat(200)}});
    let (status, body) = common::json_of(hub.post("/entities", &big));
    assert_eq!(status, 413, "{body}");
    assert!(body["detail"].as_str().unwrap().contains("the 100 bytes"), "{body}");

    // The file wins over the environment.
    let data = dir.path().join("data2").display().to_string();
    let out = Command::new(env!("CARGO_BIN_EXE_cityhub"))
        .args(["serve", "--config", file, "--data", &data])
        .env("CITYHUB_LISTEN", "127.0.0.1:0")
        .output()
        .unwrap();
    let why = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && why.contains("cannot listen on 192.0.2.1:0"), "{why}");

    // A key that is no flag is an error naming it.
    let typo = dir.path().join("typo.toml");
    std::fs::write(&typo, "listen = \"127.0.0.1:0\"\nmax_bdy_bytes = 5\n").unwrap();
    let out = cityhub(&["serve", "--config", typo.to_str().unwrap(), "--data", &data]);
    let why = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && why.contains("unknown key `max_bdy_bytes`"), "{why}");
}

#[test]
fn a_client_that_never_finishes_its_request_head_is_disconnected() {
    let hub = Hub::start_with(&["--header-timeout-secs", "1"]);
    let address = hub.base.trim_start_matches("http://").to_owned();
    let mut slow = TcpStream::connect(&address).unwrap();
    // Bounds the test: were the hub never to close, this read fails instead of hanging.
    slow.set_read_timeout(Some(std::time::Duration::from_secs(60))).unwrap();
    write!(slow, "GET /health HTTP/1.1\r\nHost: x\r\nX-Slow: 1").unwrap();
    let mut got = Vec::new();
    let closed = slow.read_to_end(&mut got);
    assert!(closed.is_ok(), "the hub closed the connection: {closed:?}");
    assert!(got.is_empty(), "{}", String::from_utf8_lossy(&got));
    // A silent connection is closed the same way; a prompt client is served.
    let mut silent = TcpStream::connect(&address).unwrap();
    silent.set_read_timeout(Some(std::time::Duration::from_secs(60))).unwrap();
    assert!(silent.read_to_end(&mut Vec::new()).is_ok());
    let (status, body) = common::json_of(hub.client.get(format!("{}/health", hub.base)).send().unwrap());
    assert_eq!((status, body["status"].clone()), (200, json!("ok")));
}

#[test]
fn anonymous_callers_share_their_address_bucket_and_a_key_holder_has_its_own() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let (_, key) = issue(&data, &["--tenant", "*", "--role", "reader"]);
    // The default: one request per 100 s, no burst beyond it.
    let hub = Hub::spawn(&data, &["--auth-keys", "--rate-limit", "0.01", "--rate-burst", "1"]);
    assert_eq!(whoami(&hub, None).0, 200);
    let (status, body, _) = whoami(&hub, None);
    assert_eq!(status, 429, "{body}");
    assert_eq!(body["type"], "https://cityhub.dev/errors/TooManyRequests");
    let (status, me, _) = whoami(&hub, Some(("X-API-Key", &key)));
    assert_eq!((status, me["via"].clone()), (200, json!("key")), "the key's bucket is its own");
}

/// `/cityhub/v1/keys`: an admin issues, lists and revokes keys while the hub runs; an issued
/// key works at once and a revoked one is refused at once; a tenant's admin manages its
/// tenant's keys only; bad requests say what to change; the key is never listed or stored.
#[test]
fn admins_issue_list_and_revoke_keys_over_http_while_the_hub_runs() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let (_, root) = issue(&data, &["--tenant", "*", "--role", "admin", "--name", "operator"]);
    let (_, seoul_admin) = issue(&data, &["--tenant", "seoul", "--role", "admin"]);
    let hub = Hub::spawn(&data, &["--auth-keys"]);
    let keys_url = format!("{}/cityhub/v1/keys", hub.base);
    let send = |method: reqwest::Method, url: &str, key: &str, tenant: Option<&str>, body: Option<Value>| {
        let mut request = hub.client.request(method, url).header("X-API-Key", key);
        if let Some(t) = tenant {
            request = request.header("NGSILD-Tenant", t);
        }
        if let Some(b) = body {
            request = request.header("Content-Type", "application/json").body(b.to_string());
        }
        common::json_of(request.send().expect("request sent"))
    };
    let post =
        |key: &str, tenant: Option<&str>, body: Value| send(reqwest::Method::POST, &keys_url, key, tenant, Some(body));

    // The operator issues a reader of seoul; it works at once.
    let (status, issued) =
        post(&root, Some("seoul"), json!({"role": "reader", "name": "dashboard", "expires": "2999-01-01T00:00:00Z"}));
    assert_eq!(status, 201, "{issued}");
    let (id, secret) = (issued["id"].as_str().unwrap().to_owned(), issued["key"].as_str().unwrap().to_owned());
    assert!(secret.starts_with("chk_"), "{issued}");
    assert_eq!(
        (&issued["tenant"], &issued["role"], &issued["name"], &issued["state"], &issued["allTenants"]),
        (&json!("seoul"), &json!("reader"), &json!("dashboard"), &json!("active"), &json!(false))
    );
    assert!(issued.get("sha256").is_none(), "the hash is not shown: {issued}");
    let (status, me, _) = whoami(&hub, Some(("X-API-Key", &secret)));
    assert_eq!((status, me), (200, json!({"subject": id, "via": "key", "grants": ["seoul:reader"]})));

    // Listed without the key; retrievable; the store holds no key in clear.
    let (status, listed) = send(reqwest::Method::GET, &keys_url, &root, None, None);
    assert_eq!(status, 200, "{listed}");
    let ids: Vec<&str> = listed.as_array().unwrap().iter().filter_map(|k| k["id"].as_str()).collect();
    assert_eq!(ids.len(), 3, "the operator sees every key: {listed}");
    assert!(ids.contains(&id.as_str()) && !listed.to_string().contains(&secret), "{listed}");
    let one = format!("{keys_url}/{id}");
    let (status, got) = send(reqwest::Method::GET, &one, &root, None, None);
    assert_eq!((status, &got["name"]), (200, &json!("dashboard")), "{got}");
    assert!(!contains(&store_bytes(&data), &secret), "a key is stored in clear");

    // Seoul's admin sees seoul's keys only, issues for seoul, not for every tenant.
    let (status, listed) = send(reqwest::Method::GET, &keys_url, &seoul_admin, Some("seoul"), None);
    assert_eq!(status, 200, "{listed}");
    assert!(listed.as_array().unwrap().iter().all(|k| k["tenant"] == "seoul"), "{listed}");
    assert_eq!(listed.as_array().unwrap().len(), 2, "{listed}");
    let (status, refused) = post(&seoul_admin, Some("seoul"), json!({"role": "admin", "allTenants": true}));
    assert_eq!(status, 403, "{refused}");
    assert!(refused["detail"].as_str().unwrap().contains("leave allTenants out"), "{refused}");
    let (status, refused) = post(&seoul_admin, Some("busan"), json!({"role": "reader"}));
    assert_eq!(status, 403, "an admin of seoul is no admin of busan: {refused}");
    let (status, other) = send(reqwest::Method::GET, &format!("{keys_url}/{id}"), &seoul_admin, Some("busan"), None);
    assert_eq!(status, 403, "{other}");
    // A reader may not manage keys.
    let (status, refused) = send(reqwest::Method::GET, &keys_url, &secret, Some("seoul"), None);
    assert_eq!((status, refused["type"].as_str()), (403, Some("https://cityhub.dev/errors/Forbidden")), "{refused}");

    // Bad requests say what to change, and issue nothing.
    for (body, says) in [
        (json!({"role": "superuser"}), "give one of public, reader, editor, admin"),
        (json!({}), "role is needed"),
        (json!({"role": "reader", "expires": "2001-01-01T00:00:00Z"}), "is past"),
        (json!({"role": "reader", "expires": "tomorrow"}), "is not a DateTime"),
        (json!({"role": "reader", "rateLimit": -1}), "above 0"),
        (json!({"role": "reader", "tenant": "x"}), "no field \"tenant\""),
        (json!(["reader"]), "a JSON object"),
    ] {
        let (status, problem) = post(&root, Some("seoul"), body.clone());
        assert_eq!(status, 400, "{body}: {problem}");
        assert_eq!(problem["type"], "https://uri.etsi.org/ngsi-ld/errors/BadRequestData", "{problem}");
        assert!(problem["detail"].as_str().unwrap().contains(says), "{body}: {problem}");
    }
    let (_, listed) = send(reqwest::Method::GET, &keys_url, &root, None, None);
    assert_eq!(listed.as_array().unwrap().len(), 3, "nothing issued by a bad request");

    // Revoked by seoul's admin: refused at once, listed as revoked.
    let (status, revoked) = send(reqwest::Method::DELETE, &one, &seoul_admin, Some("seoul"), None);
    assert_eq!((status, &revoked["state"]), (200, &json!("revoked")), "{revoked}");
    assert_unauthorized(whoami(&hub, Some(("X-API-Key", &secret))), &format!("the API key {id} was revoked"));
    let (status, missing) = send(reqwest::Method::DELETE, &format!("{keys_url}/key-0000"), &root, None, None);
    assert_eq!((status, missing["type"].as_str()), (404, Some("https://uri.etsi.org/ngsi-ld/errors/ResourceNotFound")));
}
