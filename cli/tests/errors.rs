//! Every refusal is a ProblemDetails that says what to change, including the ones hyper makes
//! before the router runs (raw requests over a TcpStream), and the hub keeps serving after each.
//! Also: numbers come back byte for byte and `q` finds them; durations and times do not overflow;
//! deletions in `temporalValues` carry a time.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use common::*;
use serde_json::{json, Value};

const NGSI: &str = "https://uri.etsi.org/ngsi-ld/errors/";

/// The answer to raw request bytes: status, headers (lower-case names) and body.
struct Raw {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Raw {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }

    fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("a JSON body ({e}): {:?}", String::from_utf8_lossy(&self.body)))
    }
}

fn raw(hub: &Hub, request: &[u8]) -> Raw {
    let address = hub.base.trim_start_matches("http://");
    let mut stream = TcpStream::connect(address).expect("connect");
    stream.set_read_timeout(Some(Duration::from_secs(30))).expect("timeout");
    // The hub may answer and close before it read everything (a refused head): ignore EPIPE.
    let _ = stream.write_all(request);
    let mut out = Vec::new();
    let mut buf = [0u8; 65536];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(_) => break,
        }
        if let Some(end) = out.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&out[..end]).to_ascii_lowercase();
            let length = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:").map(|v| v.trim().parse::<usize>().unwrap_or(0)));
            if length.is_some_and(|n| out.len() >= end + 4 + n) {
                break;
            }
        }
    }
    let end = out.windows(4).position(|w| w == b"\r\n\r\n").unwrap_or_else(|| panic!("an answer, got {out:?}"));
    let head = String::from_utf8_lossy(&out[..end]).into_owned();
    let mut lines = head.split("\r\n");
    let status = lines.next().and_then(|l| l.split(' ').nth(1)).and_then(|s| s.parse().ok()).expect("a status");
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    Raw { status, headers, body: out[end + 4..].to_vec() }
}

/// A request with `Connection: close`, the given extra header lines and body.
fn request(method: &str, target: &[u8], headers: &[&[u8]], body: &[u8]) -> Vec<u8> {
    let mut r = [method.as_bytes(), b" ", target, b" HTTP/1.1\r\nHost: hub\r\nConnection: close\r\n"].concat();
    for h in headers {
        r.extend_from_slice(h);
        r.extend_from_slice(b"\r\n");
    }
    if !body.is_empty() && !headers.iter().any(|h| h.to_ascii_lowercase().starts_with(b"content-length")) {
        r.extend_from_slice(format!("Content-Length: {}\r\n", body.len()).as_bytes());
    }
    r.extend_from_slice(b"\r\n");
    r.extend_from_slice(body);
    r
}

/// Asserts a ProblemDetails answer: status, JSON media type, `type`, a title, and a detail holding
/// every one of `says`.
fn assert_refusal(answer: &Raw, status: u16, error_type: &str, says: &[&str]) -> Value {
    assert_eq!(answer.status, status, "status; body {:?}", String::from_utf8_lossy(&answer.body));
    assert_eq!(answer.header("content-type"), Some("application/json"));
    let body = answer.json();
    let expected = if error_type == "about:blank" { error_type.to_owned() } else { format!("{NGSI}{error_type}") };
    assert_eq!(body["type"], expected, "{body}");
    assert!(!body["title"].as_str().unwrap_or_default().is_empty(), "{body}");
    assert_eq!(body["status"], status, "{body}");
    let detail = body["detail"].as_str().unwrap_or_default();
    for needle in says {
        assert!(detail.contains(needle), "detail {detail:?} should say {needle:?}");
    }
    body
}

fn still_serves(hub: &Hub) {
    let (status, body) = hub.get_json("/entities?type=Probe");
    assert_eq!(status, 200, "{body}");
    assert!(body.is_array(), "{body}");
}

/// A name, the raw request, and the status, error type and detail parts expected.
type Case = (&'static str, Vec<u8>, u16, &'static str, Vec<&'static str>);

#[test]
fn refusals_hyper_makes_before_the_router_have_problem_details() {
    let hub = Hub::start();
    let e = "/ngsi-ld/v1/entities";
    let cases: Vec<Case> = vec![
        (
            "NUL in the path",
            request("GET", b"/ngsi-ld/v1/entities/urn:a\x00b", &[], b""),
            400,
            "InvalidRequest",
            vec!["request line", "0x00", "percent-encode"],
        ),
        (
            "control character in the path",
            request("GET", b"/ngsi-ld/v1/entities/urn:a\x01b", &[], b""),
            400,
            "InvalidRequest",
            vec!["0x01"],
        ),
        (
            "DEL in the path",
            request("GET", b"/ngsi-ld/v1/entities/urn:a\x7fb", &[], b""),
            400,
            "InvalidRequest",
            vec!["0x7F"],
        ),
        (
            "NUL in the tenant",
            request("GET", b"/ngsi-ld/v1/entities?type=T", &[b"NGSILD-Tenant: a\x00b"], b""),
            400,
            "InvalidRequest",
            vec!["NGSILD-Tenant", "0x00"],
        ),
        (
            "control character in the tenant",
            request("GET", b"/ngsi-ld/v1/entities?type=T", &[b"NGSILD-Tenant: a\x1bb"], b""),
            400,
            "InvalidRequest",
            vec!["NGSILD-Tenant", "0x1B"],
        ),
        (
            "Content-Length: abc",
            request("POST", e.as_bytes(), &[b"Content-Type: application/json", b"Content-Length: abc"], b"{}"),
            400,
            "InvalidRequest",
            vec!["Content-Length \"abc\"", "decimal digits"],
        ),
        (
            "two Content-Lengths",
            request("POST", e.as_bytes(), &[b"Content-Length: 2", b"Content-Length: 3"], b"{}"),
            400,
            "InvalidRequest",
            vec!["several different Content-Length"],
        ),
        (
            "header name with a space",
            request("GET", b"/ngsi-ld/v1/entities?type=T", &[b"Bad Header: x"], b""),
            400,
            "InvalidRequest",
            vec!["\"Bad Header\"", "not a token"],
        ),
        (
            "unknown HTTP version",
            b"GET /ngsi-ld/v1/entities HTTP/3.0\r\nHost: x\r\n\r\n".to_vec(),
            400,
            "InvalidRequest",
            vec!["HTTP/3.0", "HTTP/1.1"],
        ),
        ("garbage request line", b"GARBAGE\r\n\r\n".to_vec(), 400, "InvalidRequest", vec!["METHOD target HTTP/1.1"]),
        (
            "a 100 KB id",
            request("GET", format!("{e}/urn:ngsi-ld:{}", "a".repeat(100_000)).as_bytes(), &[], b""),
            414,
            "about:blank",
            vec!["65534", "POST /ngsi-ld/v1/entityOperations/query"],
        ),
        (
            "a 1 MB query string",
            request("GET", format!("{e}?type=T&q={}", "a".repeat(1_000_000)).as_bytes(), &[], b""),
            431,
            "about:blank",
            vec!["417792 bytes", "shorten the query string"],
        ),
        (
            "200 header fields",
            {
                let many: Vec<Vec<u8>> = (0..200).map(|i| format!("X-H{i}: v").into_bytes()).collect();
                let refs: Vec<&[u8]> = many.iter().map(Vec::as_slice).collect();
                request("GET", b"/ngsi-ld/v1/entities?type=T", &refs, b"")
            },
            431,
            "about:blank",
            vec!["202 header fields", "at most 100"],
        ),
    ];
    for (name, bytes, status, error_type, says) in cases {
        let answer = raw(&hub, &bytes);
        eprintln!("{name}: {}", String::from_utf8_lossy(&answer.body));
        assert_refusal(&answer, status, error_type, &says);
        still_serves(&hub);
    }
}

#[test]
fn refusals_of_the_framework_and_the_guard_have_problem_details() {
    let hub = Hub::start_with(&["--max-body-bytes", "1024"]);
    let e = "/ngsi-ld/v1/entities";
    let ct: &[u8] = b"Content-Type: application/json";

    let big = format!(r#"{{"id":"urn:x:big","type":"T","blob":"{}"}}"#, "x".repeat(4096));
    let answer = raw(&hub, &request("POST", e.as_bytes(), &[ct], big.as_bytes()));
    assert_refusal(&answer, 413, "about:blank", &["1024 bytes", "--max-body-bytes"]);
    // A declared length over the limit is refused before the body is sent (no 100 Continue).
    let answer =
        raw(&hub, &request("POST", e.as_bytes(), &[ct, b"Expect: 100-continue", b"Content-Length: 99999999999"], b""));
    assert_refusal(&answer, 413, "about:blank", &["1024 bytes", "--max-body-bytes"]);
    // A chunked body over the limit is only found out while reading.
    let chunk = format!("{:x}\r\n{}\r\n0\r\n\r\n", 2000, "x".repeat(2000));
    let answer = raw(&hub, &request("POST", e.as_bytes(), &[ct, b"Transfer-Encoding: chunked"], chunk.as_bytes()));
    assert_refusal(&answer, 413, "about:blank", &["1024 bytes", "--max-body-bytes"]);

    let answer = raw(&hub, &request("DELETE", b"/ngsi-ld/v1/types", &[], b""));
    assert_refusal(&answer, 405, "about:blank", &["DELETE", "/ngsi-ld/v1/types", "GET"]);
    assert_eq!(answer.header("allow"), Some("GET,HEAD"));
    let answer = raw(&hub, &request("PUT", b"/ngsi-ld/v1/subscriptions", &[ct], b"{}"));
    assert_refusal(&answer, 405, "about:blank", &["PUT", "POST, GET"]);
    assert!(answer.header("allow").is_some_and(|a| a.contains("POST")));

    assert_refusal(&raw(&hub, &request("GET", b"/nope", &[], b"")), 404, "ResourceNotFound", &["/nope"]);
    assert_refusal(
        &raw(&hub, &request("GET", b"/ngsi-ld/v1/nope", &[], b"")),
        404,
        "ResourceNotFound",
        &["/ngsi-ld/v1/nope"],
    );

    // Percent-encoding that is not UTF-8, in the path and in the query.
    let answer = raw(&hub, &request("GET", b"/ngsi-ld/v1/entities/urn:ngsi-ld:%ff%fe", &[], b""));
    assert_refusal(&answer, 400, "InvalidRequest", &["UTF-8"]);
    let answer = raw(&hub, &request("GET", b"/ngsi-ld/v1/entities?type=%ff", &[], b""));
    assert_refusal(&answer, 400, "InvalidRequest", &["query string is not UTF-8", "percent-encode"]);
    let answer = raw(&hub, &request("GET", b"/ngsi-ld/v1/entities/urn:ngsi-ld:%zz", &[], b""));
    assert_refusal(&answer, 400, "InvalidRequest", &["path holds a % at byte 33", "%25"]);
    let answer = raw(&hub, &request("GET", b"/ngsi-ld/v1/entities?type=T%2", &[], b""));
    assert_refusal(&answer, 400, "InvalidRequest", &["query string holds a % at byte 6", "%25"]);
    // A header the hub reads that is not ASCII is refused, not ignored.
    let answer = raw(&hub, &request("GET", b"/ngsi-ld/v1/entities?type=T", &[b"Link: <http://x/\xff>; rel=x"], b""));
    assert_refusal(&answer, 400, "InvalidRequest", &["link header", "ASCII"]);
    // A chunked body that breaks off.
    let answer =
        raw(&hub, &request("POST", e.as_bytes(), &[ct, b"Transfer-Encoding: chunked"], b"zz\r\nabc\r\n0\r\n\r\n"));
    assert_refusal(&answer, 400, "InvalidRequest", &["request body"]);

    let answer = raw(&hub, &request("POST", e.as_bytes(), &[ct], b"{nope"));
    assert_refusal(&answer, 400, "InvalidRequest", &["not valid JSON", "line 1 column 2"]);
    let answer = raw(&hub, &request("POST", e.as_bytes(), &[b"Content-Type: text/plain"], b"{}"));
    assert_refusal(&answer, 415, "about:blank", &["text/plain", "application/json or application/ld+json"]);
    let answer = raw(&hub, &request("GET", b"/ngsi-ld/v1/entities?type=T", &[b"Accept: text/html"], b""));
    assert_refusal(&answer, 406, "about:blank", &["text/html", "accept application/json"]);

    let answer = raw(&hub, &request("GET", e.as_bytes(), &[], b""));
    let body = assert_refusal(
        &answer,
        400,
        "BadRequestData",
        &["type, attrs, q, scopeQ or a geo-query", "id and idPattern alone do not select"],
    );
    assert!(!body["detail"].as_str().unwrap_or_default().contains("one of type, id"), "{body}");
    let answer = raw(&hub, &request("GET", b"/ngsi-ld/v1/entities?id=urn:x:1", &[], b""));
    assert_refusal(&answer, 400, "BadRequestData", &["id and idPattern alone do not select"]);
    let answer = raw(&hub, &request("GET", b"/ngsi-ld/v1/temporal/entities?idPattern=.*", &[], b""));
    assert_refusal(&answer, 400, "BadRequestData", &["id and idPattern alone do not select"]);

    let answer = raw(&hub, &request("GET", b"/ngsi-ld/v1/entities?type=T&limit=99999999999999999999999", &[], b""));
    assert_refusal(&answer, 400, "BadRequestData", &["limit must be a non-negative integer of at most"]);
    still_serves(&hub);
}

#[test]
fn durations_and_times_do_not_overflow() {
    let hub = Hub::start();
    let id = "urn:ngsi-ld:Sensor:overflow";
    let body = json!({"id": id, "type": "Sensor", "level": [
        {"type": "Property", "value": 1, "observedAt": "2024-01-01T00:00:00Z"},
        {"type": "Property", "value": 3, "observedAt": "2024-01-01T01:00:00Z"},
    ]});
    assert_eq!(hub.post("/temporal/entities", &body).status(), 201);
    let aggregated = |period: &str| {
        hub.get_json(&format!(
            "/temporal/entities/{id}?options=aggregatedValues&aggrMethods=sum&aggrPeriodDuration={period}"
        ))
    };
    for huge in ["P99999999999999999999Y", "P10001Y", "PT1e400S"] {
        let (status, problem) = aggregated(huge);
        assert_eq!(status, 400, "{huge}: {problem}");
        assert_eq!(problem["type"], format!("{NGSI}BadRequestData"));
        let detail = problem["detail"].as_str().unwrap_or_default();
        assert!(detail.contains("longer than 10000 years") || detail.contains("ISO 8601 duration"), "{detail}");
    }
    // The longest accepted period ends where DateTimes end, never in 1970.
    let (status, answer) = aggregated("P10000Y");
    assert_eq!(status, 200, "{answer}");
    let sum = &answer["level"]["sum"][0];
    assert_eq!(sum[0], 4.0, "{answer}");
    assert_eq!(sum[1], "2024-01-01T00:00:00Z", "{answer}");
    assert_eq!(sum[2], "9999-12-31T23:59:59.999999Z", "{answer}");

    for (param, says) in [
        ("timerel=before&timeAt=10000-01-01T00:00:00Z", "years 0000 to 9999"),
        ("timerel=after&timeAt=%2B10000-01-01T00:00:00", "years 0000 to 9999"),
        ("lastN=99999999999999999999999", "lastN must be a positive integer"),
    ] {
        let (status, problem) = hub.get_json(&format!("/temporal/entities/{id}?{param}"));
        assert_eq!(status, 400, "{param}: {problem}");
        assert_eq!(problem["type"], format!("{NGSI}BadRequestData"));
        assert!(problem["detail"].as_str().unwrap_or_default().contains(says), "{param}: {problem}");
    }
    let late = json!({"id": "urn:x:late", "type": "T", "p": {"type": "Property", "value": 1, "observedAt": "10000-01-01T00:00:00Z"}});
    let problem = assert_problem(hub.post("/entities", &late), 400, "BadRequestData");
    assert!(problem["detail"].as_str().unwrap_or_default().contains("years 0000 to 9999"), "{problem}");

    // Subscription intervals beyond what a timer holds are refused, not a panic in the notifier.
    let sub = json!({"type": "Subscription", "entities": [{"type": "Sensor"}], "timeInterval": 1e300,
        "notification": {"endpoint": {"uri": "http://127.0.0.1:9/notify"}}});
    let problem = assert_problem(hub.post("/subscriptions", &sub), 400, "BadRequestData");
    assert!(problem["detail"].as_str().unwrap_or_default().contains("at most"), "{problem}");
    let (status, _) = hub.get_json(&format!("/temporal/entities/{id}"));
    assert_eq!(status, 200);
}

#[test]
fn temporal_values_show_deletions_with_their_time() {
    let hub = Hub::start();
    let id = "urn:ngsi-ld:Sensor:deleted";
    let body = json!({"id": id, "type": "Sensor",
        "level": {"type": "Property", "value": 7, "observedAt": "2024-01-01T00:00:00Z"}});
    assert_eq!(hub.post("/entities", &body).status(), 201);
    assert_eq!(hub.delete(&format!("/entities/{id}/attrs/level")).send().unwrap().status(), 204);
    let (status, history) = hub.get_json(&format!("/temporal/entities/{id}"));
    assert_eq!(status, 200, "{history}");
    let deleted_at = history["level"]
        .as_array()
        .and_then(|i| i.iter().find_map(|i| i["deletedAt"].as_str()))
        .unwrap_or_else(|| panic!("a deletion in {history}"))
        .to_owned();
    let (status, simplified) = hub.get_json(&format!("/temporal/entities/{id}?options=temporalValues"));
    assert_eq!(status, 200, "{simplified}");
    let pairs = simplified["level"]["values"].as_array().unwrap_or_else(|| panic!("values in {simplified}"));
    assert_eq!(pairs[0], json!([7, "2024-01-01T00:00:00Z"]), "{simplified}");
    assert_eq!(pairs.len(), 2, "{simplified}");
    assert_eq!(pairs[1][0], "urn:ngsi-ld:null", "{simplified}");
    assert_eq!(pairs[1][1], deleted_at, "the deletion's time, never null: {simplified}");
    assert!(pairs.iter().all(|p| p[1].is_string()), "{simplified}");
}

#[test]
fn numbers_round_trip_byte_for_byte_and_q_finds_them() {
    let hub = Hub::start();
    // Written as JSON text, read back as JSON text: the same characters.
    let awkward = [
        "1671165464.3779979",
        "43.462879859445884",
        "5e-324",
        "1.7976931348623157e308",
        "0.30000000000000004",
        "-0.0",
        "1e21",
        "9007199254740993",
        "18446744073709551615",
        "-9223372036854775808",
        "0.1",
        "2.2250738585072014e-308",
    ];
    for (i, text) in awkward.iter().enumerate() {
        let id = format!("urn:ngsi-ld:Number:{i}");
        let body = format!(r#"{{"id":"{id}","type":"Number","n":{{"type":"Property","value":{text}}}}}"#);
        let response =
            hub.client.post(hub.url("/entities")).header("Content-Type", "application/json").body(body).send();
        assert_eq!(response.unwrap().status(), 201, "{text}");
        let read = hub.get(&format!("/entities/{id}?format=keyValues")).send().unwrap().text().unwrap();
        let back = read.split(r#""n":"#).nth(1).and_then(|r| r.strip_suffix('}')).unwrap_or_default();
        // Decimal notation comes back character for character; exponent notation as the same
        // double (serde_json writes the exponent as `e+308`, `e21`, `e-324`).
        if text.contains('e') {
            assert_eq!(back.parse::<f64>().map(f64::to_bits), text.parse::<f64>().map(f64::to_bits), "{text}: {read}");
        } else {
            assert_eq!(back, *text, "{text} came back as {read}");
        }
        let (status, found) = hub.get_json(&format!("/entities?type=Number&q=n=={text}&format=keyValues"));
        assert_eq!(status, 200, "{found}");
        let ids: Vec<&str> = found.as_array().unwrap().iter().filter_map(|e| e["id"].as_str()).collect();
        assert!(ids.contains(&id.as_str()), "q=n=={text} finds {id}: {found}");
    }
    // Floats that differ in the last digit stay apart.
    let (_, found) = hub.get_json("/entities?type=Number&q=n==1671165464.377998&format=keyValues");
    assert_eq!(found, json!([]), "{found}");
}

/// On a kept-alive connection the refusal explains the request that was refused, not the one
/// before it.
#[test]
fn a_refusal_after_a_served_request_on_the_same_connection_explains_that_request() {
    let hub = Hub::start();
    let address = hub.base.trim_start_matches("http://");
    let mut stream = TcpStream::connect(address).expect("connect");
    stream.set_read_timeout(Some(Duration::from_secs(30))).expect("timeout");
    stream.write_all(b"GET /ngsi-ld/v1/entities?type=T HTTP/1.1\r\nHost: hub\r\n\r\n").expect("sent");
    let mut first = Vec::new();
    let mut buf = [0u8; 4096];
    // Bounded: the first answer is `[]` with its head, well under 4 KB, in at most a few reads.
    for _ in 0..100 {
        let n = stream.read(&mut buf).expect("read");
        first.extend_from_slice(&buf[..n]);
        if n == 0 || first.ends_with(b"\r\n\r\n[]") {
            break;
        }
    }
    assert!(first.starts_with(b"HTTP/1.1 200"), "{}", String::from_utf8_lossy(&first));
    let _ = stream.write_all(b"GET /ngsi-ld/v1/entities?type=T HTTP/1.1\r\nHost: hub\r\nNGSILD-Tenant: a\x00b\r\n\r\n");
    let mut second = Vec::new();
    let _ = stream.read_to_end(&mut second);
    let text = String::from_utf8_lossy(&second);
    assert!(text.starts_with("HTTP/1.1 400"), "{text}");
    assert!(text.contains("application/json"), "{text}");
    assert!(text.contains("the NGSILD-Tenant header holds the control character 0x00"), "{text}");
    still_serves(&hub);
}
