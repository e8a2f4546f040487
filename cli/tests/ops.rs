//! Operations (issue 21): `/metrics` read with a real Prometheus text parser, `/ready`, request
//! ids in answers and log lines, `traceparent` carried to a notification, and SIGTERM under
//! concurrent writers losing no acknowledged write.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::*;
use serde_json::{json, Value};

const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const TRACEPARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

/// One sample as Prometheus' own Python client (`prometheus_client.parser`) reads it.
#[derive(Debug, serde::Deserialize)]
struct Sample {
    /// The family's type: counter, gauge, histogram...
    r#type: String,
    name: String,
    labels: std::collections::BTreeMap<String, String>,
    value: Option<f64>,
}

/// The parser of the Prometheus project's Python client: the reference reader of the text
/// format. (The `prometheus-parse` crate cannot be used: its sample regex `\{[^}]+\}` breaks on a
/// `}` inside a label value, as in every route template `/entities/{id}`.)
const PARSER: &str = r#"
import json, math, sys
from prometheus_client.parser import text_string_to_metric_families
out = []
for family in text_string_to_metric_families(sys.stdin.read()):
    for s in family.samples:
        value = s.value if math.isfinite(s.value) else None
        out.append({"type": family.type, "name": s.name, "labels": s.labels, "value": value})
print(json.dumps(out))
"#;

fn scrape(hub: &Hub) -> Vec<Sample> {
    let response = hub.client.get(format!("{}/metrics", hub.base)).send().unwrap();
    assert_eq!(response.status(), 200);
    let content_type = response.headers()["content-type"].to_str().unwrap().to_owned();
    assert!(content_type.starts_with("text/plain; version=0.0.4"), "{content_type}");
    parse(&response.text().unwrap())
}

fn parse(text: &str) -> Vec<Sample> {
    use std::io::Write;
    let mut python = Command::new("python3")
        .args(["-c", PARSER])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3 runs (with prometheus_client: .ci/run installs it)");
    python.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
    let output = python.wait_with_output().unwrap();
    assert!(output.status.success(), "not Prometheus text: {}\n{text}", String::from_utf8_lossy(&output.stderr));
    serde_json::from_slice(&output.stdout).unwrap()
}

fn samples<'a>(scrape: &'a [Sample], name: &str, labels: &[(&str, &str)]) -> Vec<&'a Sample> {
    scrape
        .iter()
        .filter(|s| s.name == name && labels.iter().all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v)))
        .collect()
}

fn counter(scrape: &[Sample], name: &str, labels: &[(&str, &str)]) -> f64 {
    samples(scrape, name, labels).iter().map(|s| s.value.unwrap_or(0.0)).sum()
}

#[test]
fn metrics_count_requests_by_route_template_and_never_name_an_entity() {
    let hub = Hub::start_with(&["--metrics-refresh", "1"]);
    let ids: Vec<String> = (0..3).map(|i| format!("urn:ngsi-ld:Sensor:metrics-{i}-{}", std::process::id())).collect();
    let before = scrape(&hub);
    let by_id = [("route", "/ngsi-ld/v1/entities/{id}"), ("method", "GET"), ("status", "200")];
    let created = [("route", "/ngsi-ld/v1/entities"), ("method", "POST"), ("status", "201")];
    for id in &ids {
        let entity = json!({"id": id, "type": "Sensor", "temperature": {"type": "Property", "value": 21}});
        assert_eq!(hub.post("/entities", &entity).status(), 201);
        let (status, body) = hub.get_json(&format!("/entities/{id}"));
        assert_eq!((status, body["id"].as_str()), (200, Some(id.as_str())));
    }
    let missing = hub.get("/entities/urn:ngsi-ld:Sensor:nobody").send().unwrap();
    assert_problem(missing, 404, "https://uri.etsi.org/ngsi-ld/errors/ResourceNotFound");
    assert_eq!(hub.client.get(format!("{}/no/such/route", hub.base)).send().unwrap().status(), 404);

    // The per-tenant gauges are refreshed every second: wait (bounded) for them.
    let mut after = scrape(&hub);
    for _ in 0..100 {
        if counter(&after, "cityhub_entities", &[("tenant", "default")]) >= 3.0 {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
        after = scrape(&hub);
    }
    assert_eq!(
        counter(&after, "cityhub_http_requests_total", &by_id)
            - counter(&before, "cityhub_http_requests_total", &by_id),
        3.0
    );
    assert_eq!(
        counter(&after, "cityhub_http_requests_total", &created)
            - counter(&before, "cityhub_http_requests_total", &created),
        3.0
    );
    let not_found = [("route", "/ngsi-ld/v1/entities/{id}"), ("method", "GET"), ("status", "404")];
    assert_eq!(counter(&after, "cityhub_http_requests_total", &not_found), 1.0);
    let unmatched = [("route", "unmatched"), ("status", "404")];
    assert!(counter(&after, "cityhub_http_requests_total", &unmatched) >= 1.0);
    assert_eq!(counter(&after, "cityhub_entities", &[("tenant", "default")]), 3.0);
    assert!(counter(&after, "cityhub_store_writes_total", &[]) >= 3.0);
    assert!(counter(&after, "cityhub_store_bytes", &[]) > 0.0);
    let history = samples(&after, "cityhub_history_instances", &[]);
    assert_eq!(history.len(), 1, "the history instances gauge");
    // PostgreSQL's figure is its statistics' estimate, which follows the writes only later.
    if !store_is_postgres() {
        assert_eq!(history[0].value, Some(3.0), "one instance per entity created");
    }

    // Latency histograms, with their buckets.
    let buckets = samples(&after, "cityhub_http_request_duration_seconds_bucket", &by_id[..2]);
    assert!(buckets.iter().all(|b| b.r#type == "histogram"), "{buckets:?}");
    assert!(buckets.len() >= 10, "{buckets:?}");
    let all = buckets.iter().find(|b| b.labels["le"] == "+Inf").expect("a +Inf bucket");
    // Three GETs found and the one that was not: the histogram is per route and method.
    assert_eq!(all.value, Some(4.0), "every GET in the +Inf bucket: {buckets:?}");
    let commits = samples(&after, "cityhub_store_group_commit_size_bucket", &[]);
    assert!(!commits.is_empty() && commits[0].r#type == "histogram", "group-commit sizes");

    // No label value is, or holds, an entity id the test used.
    for sample in &after {
        for (name, value) in &sample.labels {
            for id in ids.iter().map(String::as_str).chain(["urn:ngsi-ld:Sensor:nobody", "/no/such/route"]) {
                assert!(!value.contains(id), "{}{{{name}={value:?}}} names {id}", sample.name);
            }
        }
    }
}

#[test]
fn metrics_are_for_admins_and_the_scrape_token_and_ready_is_for_anyone() {
    let hub = Hub::start_with(&["--auth-keys", "--metrics-token", "scrape-s3cret"]);
    let refused = hub.client.get(format!("{}/metrics", hub.base)).send().unwrap();
    let problem = assert_problem(refused, 403, "https://cityhub.dev/errors/Forbidden");
    let detail = problem["detail"].as_str().unwrap();
    assert!(detail.contains("--metrics-token"), "{detail}");
    let wrong = hub.client.get(format!("{}/metrics", hub.base)).bearer_auth("scrape-wrong").send().unwrap();
    assert_eq!(wrong.status(), 401, "a wrong token is a bad credential");
    let scraped = hub.client.get(format!("{}/metrics", hub.base)).bearer_auth("scrape-s3cret").send().unwrap();
    assert_eq!(scraped.status(), 200);
    assert!(scraped.text().unwrap().contains("cityhub_http_requests_total"));
    // The token opens nothing else.
    let other =
        hub.client.get(format!("{}/ngsi-ld/v1/entities?type=T", hub.base)).bearer_auth("scrape-s3cret").send().unwrap();
    assert_eq!(other.status(), 401);

    let (status, body) = json_of(hub.client.get(format!("{}/ready", hub.base)).send().unwrap());
    assert_eq!((status, body), (200, json!({"status": "ready"})));
}

/// A hub whose stderr (JSON log lines) is collected; `stop` sends SIGTERM and answers the lines.
struct LoggedHub {
    child: std::process::Child,
    base: String,
    lines: std::sync::mpsc::Receiver<String>,
    _dir: tempfile::TempDir,
}

impl LoggedHub {
    fn start() -> LoggedHub {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let store = test_store(&data);
        let mut child = Command::new(env!("CARGO_BIN_EXE_cityhub"))
            .args(["serve", "--listen", "127.0.0.1:0", "--log-format", "json", "--log", "warn,tower_http=debug"])
            .arg("--data")
            .arg(&data)
            .args(store.iter().flat_map(|url| ["--store", url.as_str()]))
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let stderr = child.stderr.take().unwrap();
        let (base_tx, base_rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(rest) = line.strip_prefix("cityhub listening on ") {
                    let _ = base_tx.send(rest.trim_end_matches("/ngsi-ld/v1").to_owned());
                }
            }
        });
        let (tx, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let base = base_rx.recv_timeout(Duration::from_secs(30)).unwrap();
        LoggedHub { child, base, lines, _dir: dir }
    }

    fn stop(mut self) -> Vec<String> {
        #[allow(unsafe_code, reason = "std cannot send SIGTERM to a child")]
        // SAFETY: signals our own child, not reaped before the wait below.
        unsafe {
            libc::kill(self.child.id() as i32, libc::SIGTERM);
        }
        assert!(self.child.wait().unwrap().success());
        let mut lines = Vec::new();
        while let Ok(line) = self.lines.recv_timeout(Duration::from_secs(5)) {
            lines.push(line);
        }
        lines
    }
}

impl Drop for LoggedHub {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The `http` span's fields of a JSON log line.
fn http_span(line: &Value) -> Option<&Value> {
    line["spans"].as_array()?.iter().find(|s| s["name"] == "http")
}

#[test]
fn a_request_id_is_echoed_and_on_the_log_lines_of_its_request() {
    let hub = LoggedHub::start();
    let client = http_client();
    let entity = json!({"id": "urn:ngsi-ld:T:logged", "type": "T"});
    let response = client
        .post(format!("{}/ngsi-ld/v1/entities", hub.base))
        .header("Content-Type", "application/json")
        .header("x-request-id", "ops-test-42")
        .header("traceparent", TRACEPARENT)
        .body(entity.to_string())
        .send()
        .unwrap();
    assert_eq!(response.status(), 201);
    assert_eq!(response.headers()["x-request-id"], "ops-test-42");
    let echoed = response.headers()["traceparent"].to_str().unwrap().to_owned();
    assert!(echoed.starts_with(&format!("00-{TRACE_ID}-")) && echoed.ends_with("-01"), "{echoed}");
    assert_ne!(echoed, TRACEPARENT, "the hub's own span id");
    // A request id that is not sane is replaced; a malformed traceparent starts a new trace.
    let replaced = client
        .get(format!("{}/ngsi-ld/v1/entities/urn:ngsi-ld:T:logged", hub.base))
        .header("x-request-id", "two words")
        .header("traceparent", "00-zz-00f067aa0ba902b7-01")
        .send()
        .unwrap();
    assert_eq!(replaced.status(), 200);
    let new_id = replaced.headers()["x-request-id"].to_str().unwrap().to_owned();
    assert_eq!(new_id.len(), 36, "a generated UUID: {new_id}");
    assert!(!replaced.headers()["traceparent"].to_str().unwrap().contains(TRACE_ID));

    let lines: Vec<Value> = hub.stop().iter().map(|l| serde_json::from_str(l).expect("a JSON log line")).collect();
    let ours: Vec<&Value> =
        lines.iter().filter(|l| http_span(l).is_some_and(|s| s["request_id"] == "ops-test-42")).collect();
    assert!(!ours.is_empty(), "no log line of request ops-test-42 in {lines:#?}");
    for line in &ours {
        assert_eq!(http_span(line).unwrap()["trace_id"], TRACE_ID, "{line}");
    }
    assert!(lines.iter().any(|l| http_span(l).is_some_and(|s| s["request_id"] == new_id.as_str())));
}

#[test]
fn a_notification_carries_the_trace_of_the_write_that_caused_it() {
    let receiver = Receiver::start();
    let hub = Hub::start();
    let subscription = json!({
        "id": "urn:ngsi-ld:Subscription:traced",
        "type": "Subscription",
        "entities": [{"type": "Traced"}],
        "notification": {"endpoint": {"uri": receiver.url("/notify"), "accept": "application/json"}},
    });
    assert_eq!(hub.post("/subscriptions", &subscription).status(), 201);
    let entity = json!({"id": "urn:ngsi-ld:Traced:1", "type": "Traced", "n": {"type": "Property", "value": 1}});
    let response =
        hub.send_json(reqwest::Method::POST, "/entities", &entity).header("traceparent", TRACEPARENT).send().unwrap();
    assert_eq!(response.status(), 201);
    let got = receiver.wait_for("urn:ngsi-ld:Subscription:traced", 1, Duration::from_secs(20));
    assert_eq!(got.len(), 1, "one notification");
    assert_eq!(got[0]["data"][0]["id"], "urn:ngsi-ld:Traced:1");
    let all = receiver.all();
    let header = all[0].header("traceparent").expect("a traceparent on the notification");
    assert!(header.starts_with(&format!("00-{TRACE_ID}-")), "{header}");
    assert_ne!(header, TRACEPARENT, "sent by the hub's own span");

    // Counted: one delivery sent to the receiver's host.
    let after = scrape(&hub);
    let host = format!("127.0.0.1:{}", receiver.port);
    let sent = [("endpoint_host", host.as_str()), ("outcome", "sent")];
    assert_eq!(counter(&after, "cityhub_notifications_total", &sent), 1.0);
}

#[test]
fn sigterm_under_concurrent_writers_answers_every_request_and_loses_no_acknowledged_write() {
    const WRITERS: usize = 4;
    const PER_WRITER: usize = 400;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut hub = Hub::spawn(&data, &["--shutdown-grace", "20"]);
    let base = Arc::new(hub.base.clone());
    let acked = Arc::new(AtomicUsize::new(0));
    let handles: Vec<_> = (0..WRITERS)
        .map(|w| {
            let (base, acked) = (base.clone(), acked.clone());
            std::thread::spawn(move || {
                let client = http_client();
                let mut acknowledged = Vec::new();
                let mut refused = 0;
                for i in 0..PER_WRITER {
                    let id = format!("urn:ngsi-ld:Term:{w}-{i}");
                    let body = json!({"id": id, "type": "Term", "n": {"type": "Property", "value": i}});
                    let sent = client
                        .post(format!("{base}/ngsi-ld/v1/entities"))
                        .header("Content-Type", "application/json")
                        .body(body.to_string())
                        .send();
                    match sent {
                        // A complete answer: its status and its whole body.
                        Ok(response) => {
                            let status = response.status().as_u16();
                            let text = response.text().expect("an answer begun is finished");
                            match status {
                                201 => {
                                    acknowledged.push(id);
                                    acked.fetch_add(1, Ordering::Relaxed);
                                }
                                other => {
                                    let problem: Value = serde_json::from_str(&text).expect("a ProblemDetails");
                                    panic!("{id}: {other} {problem}");
                                }
                            }
                        }
                        // The hub stopped accepting: a connection error, never half an answer.
                        Err(e) => {
                            assert!(e.is_connect() || e.is_request(), "{id}: {e:?}");
                            refused += 1;
                            if refused >= 3 {
                                break;
                            }
                        }
                    }
                }
                acknowledged
            })
        })
        .collect();
    // SIGTERM once the writers are well under way (bounded: the writers stop by themselves).
    for _ in 0..600 {
        if acked.load(Ordering::Relaxed) >= 40 {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let status = hub.terminate();
    assert!(status.success(), "exit status after SIGTERM: {status:?}");
    let acknowledged: Vec<String> = handles.into_iter().flat_map(|h| h.join().unwrap()).collect();
    assert!(acknowledged.len() >= 40, "{} writes acknowledged", acknowledged.len());
    assert!(acknowledged.len() < WRITERS * PER_WRITER, "the hub stopped while the writers ran");
    eprintln!("SIGTERM: {} of {} writes acknowledged before the hub stopped", acknowledged.len(), WRITERS * PER_WRITER);

    let hub = Hub::spawn(&data, &[]);
    for id in &acknowledged {
        let (status, body) = hub.get_json(&format!("/entities/{id}"));
        assert_eq!(status, 200, "{id} was acknowledged before SIGTERM");
        assert_eq!(body["id"], id.as_str());
    }
    // And audited: the entries of the last requests were stored before the hub exited.
    let audit = hub.client.get(format!("{}/cityhub/v1/audit?limit=1000", hub.base)).send().unwrap();
    let (status, entries) = json_of(audit);
    assert_eq!(status, 200, "{entries}");
    let created = entries
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["operation"] == "POST /ngsi-ld/v1/entities" && e["status"] == 201)
        .count();
    assert_eq!(created, acknowledged.len(), "one audit entry per acknowledged write");
}

#[test]
fn serve_flags_are_read_from_the_environment() {
    // --metrics-token from CITYHUB_METRICS_TOKEN, --auth-keys from CITYHUB_AUTH_KEYS.
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let store = test_store(&data);
    let mut child = Command::new(env!("CARGO_BIN_EXE_cityhub"))
        .args(["serve", "--listen", "127.0.0.1:0", "--log", "warn"])
        .arg("--data")
        .arg(&data)
        .args(store.iter().flat_map(|url| ["--store", url.as_str()]))
        .env("CITYHUB_METRICS_TOKEN", "from-the-env")
        .env("CITYHUB_AUTH_KEYS", "true")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let base = BufReader::new(stdout)
        .lines()
        .map_while(Result::ok)
        .find_map(|l| l.strip_prefix("cityhub listening on ").map(|r| r.trim_end_matches("/ngsi-ld/v1").to_owned()))
        .unwrap();
    let client = http_client();
    let anonymous = client.get(format!("{base}/metrics")).send().unwrap();
    let scraped = client.get(format!("{base}/metrics")).bearer_auth("from-the-env").send().unwrap();
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(anonymous.status(), 403, "CITYHUB_AUTH_KEYS enforced identities");
    assert_eq!(scraped.status(), 200, "CITYHUB_METRICS_TOKEN is the scrape token");
}

#[test]
fn a_request_forwarded_to_a_context_source_carries_the_callers_trace() {
    let source = Receiver::start();
    let hub = Hub::start();
    let registration = json!({
        "id": "urn:ngsi-ld:ContextSourceRegistration:traced",
        "type": "ContextSourceRegistration",
        "information": [{"entities": [{"type": "Federated"}]}],
        "endpoint": format!("http://127.0.0.1:{}", source.port),
    });
    assert_eq!(hub.post("/csourceRegistrations", &registration).status(), 201);
    let response = hub.get("/entities?type=Federated").header("traceparent", TRACEPARENT).send().unwrap();
    // The source answers 204 without a body: its part is missing, the hub's is answered.
    assert_eq!(response.status(), 200);
    let asked: Vec<Received> =
        source.all().into_iter().filter(|r| r.path.starts_with("/ngsi-ld/v1/entities")).collect();
    assert_eq!(
        asked.len(),
        1,
        "the source is asked once: {:?}",
        source.all().iter().map(|r| &r.path).collect::<Vec<_>>()
    );
    let header = asked[0].header("traceparent").expect("a traceparent on the forwarded request");
    assert!(header.starts_with(&format!("00-{TRACE_ID}-")) && header != TRACEPARENT, "{header}");

    let after = scrape(&hub);
    let peer = format!("127.0.0.1:{}", source.port);
    assert_eq!(counter(&after, "cityhub_federation_requests_total", &[("peer", peer.as_str())]), 1.0);
}

#[test]
fn a_notification_pending_at_sigterm_is_delivered_after_the_restart_with_its_trace() {
    let port = free_port();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut hub = Hub::spawn(&data, &["--metrics-refresh", "1"]);
    let subscription = json!({
        "id": "urn:ngsi-ld:Subscription:pending",
        "type": "Subscription",
        "entities": [{"type": "Pending"}],
        "notification": {"endpoint": {"uri": format!("http://127.0.0.1:{port}/notify"), "accept": "application/json"}},
    });
    assert_eq!(hub.post("/subscriptions", &subscription).status(), 201);
    let entity = json!({"id": "urn:ngsi-ld:Pending:1", "type": "Pending", "n": {"type": "Property", "value": 1}});
    let response =
        hub.send_json(reqwest::Method::POST, "/entities", &entity).header("traceparent", TRACEPARENT).send().unwrap();
    assert_eq!(response.status(), 201);
    // Nothing listens at the endpoint: wait (bounded) for the failed attempt, so the notification
    // is in the outbox.
    let mut failed = false;
    for _ in 0..200 {
        let (_, sub) = hub.get_json("/subscriptions/urn:ngsi-ld:Subscription:pending");
        if sub["notification"]["lastFailure"].is_string() {
            failed = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(failed, "the first delivery failed");
    // The queue of the endpoint's host shows it (refreshed every second: bounded wait).
    let host = format!("127.0.0.1:{port}");
    let depth = |hub: &Hub| counter(&scrape(hub), "cityhub_notification_queue_depth", &[("endpoint_host", &host)]);
    let mut queued = depth(&hub);
    for _ in 0..100 {
        if queued >= 1.0 {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
        queued = depth(&hub);
    }
    assert_eq!(queued, 1.0, "one notification waits for {host}");
    let failures = [("endpoint_host", host.as_str()), ("outcome", "failed")];
    assert!(counter(&scrape(&hub), "cityhub_notifications_total", &failures) >= 1.0);
    assert!(hub.terminate().success());

    let receiver = Receiver::start_on(port);
    let _hub = Hub::spawn(&data, &[]);
    let got = receiver.wait_for("urn:ngsi-ld:Subscription:pending", 1, Duration::from_secs(30));
    assert!(!got.is_empty(), "the restarted hub delivered the pending notification");
    assert_eq!(got[0]["data"][0]["id"], "urn:ngsi-ld:Pending:1");
    let header = receiver.all()[0].header("traceparent").map(str::to_owned).expect("its trace, kept in the outbox");
    assert!(header.starts_with(&format!("00-{TRACE_ID}-")), "{header}");
}

#[test]
fn rate_limit_refusals_are_counted_and_the_scraper_is_not_limited() {
    // One request per 1000 s, two at once: the third anonymous request is refused.
    let hub = Hub::start_with(&["--auth-keys", "--rate-limit", "0.001", "--rate-burst", "2", "--metrics-token", "t0k"]);
    let statuses: Vec<u16> =
        (0..3).map(|_| hub.client.get(format!("{}/health", hub.base)).send().unwrap().status().as_u16()).collect();
    assert_eq!(statuses, [200, 200, 429]);
    let scrape_once = || {
        let response = hub.client.get(format!("{}/metrics", hub.base)).bearer_auth("t0k").send().unwrap();
        assert_eq!(response.status(), 200, "the scraper has no rate bucket");
        parse(&response.text().unwrap())
    };
    let first = scrape_once();
    let after = scrape_once();
    assert_eq!(counter(&first, "cityhub_rate_limited_total", &[]), 1.0);
    assert_eq!(counter(&after, "cityhub_rate_limited_total", &[]), 1.0);
    // Refused before any route: counted under `unmatched`, with its status.
    assert_eq!(counter(&after, "cityhub_http_requests_total", &[("route", "unmatched"), ("status", "429")]), 1.0);
    assert_eq!(counter(&after, "cityhub_http_requests_total", &[("route", "/health"), ("status", "200")]), 2.0);
}

/// `--shutdown-delay`: after SIGTERM the hub answers `/ready` 503 (so a load balancer stops
/// sending) while it still serves, then stops and exits 0.
#[test]
fn during_the_shutdown_delay_ready_answers_503_and_requests_are_still_served() {
    let mut hub = Hub::start_with(&["--shutdown-delay", "3"]);
    let ready = |hub: &Hub| json_of(hub.client.get(format!("{}/ready", hub.base)).send().expect("an answer"));
    assert_eq!(ready(&hub), (200, json!({"status": "ready"})));
    hub.sigterm();
    let mut answer = ready(&hub);
    for _ in 0..40 {
        if answer.0 == 503 {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
        answer = ready(&hub);
    }
    let (status, body) = answer;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["type"], "https://cityhub.dev/errors/NotReady", "{body}");
    assert!(body["detail"].as_str().unwrap().contains("shutting down"), "{body}");
    let (status, body) = hub.get_json("/entities?type=Thing");
    assert_eq!((status, body), (200, json!([])), "still served during the delay");
    let response = hub.client.get(format!("{}/ready", hub.base)).send().expect("an answer");
    assert_eq!(response.headers()["retry-after"], "5");
    assert!(hub.wait().success(), "exits 0 after the delay");
}
