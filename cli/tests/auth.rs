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
    for i in 0..20 {
        let forged = SigningKey { kid: format!("made-up-{i}"), ..rsa_like(&rsa2) };
        assert_unauthorized(bearer(&hub, &sign(&forged, &claims(&["admin"]))), "is not a key of the issuer's JWKS");
    }
    assert!(issuer.fetches() - before <= 2, "{} fetches for 20 unknown kids", issuer.fetches() - before);
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
