//! Black-box test support: real `cityhub` processes on free loopback ports.

#![allow(dead_code, reason = "each test binary uses its own part of the support code")]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use reqwest::blocking::{Client, RequestBuilder, Response};
use serde_json::Value;

pub const CORE_CONTEXT: &str = "https://uri.etsi.org/ngsi-ld/v1/ngsi-ld-core-context-v1.8.jsonld";

/// A running hub; killed when dropped.
pub struct Hub {
    child: Child,
    pub base: String,
    pub data: PathBuf,
    _tempdir: Option<tempfile::TempDir>,
    pub client: Client,
}

impl Hub {
    /// Starts a hub on a fresh data directory.
    pub fn start() -> Hub {
        Self::start_with(&[])
    }

    pub fn start_with(extra: &[&str]) -> Hub {
        let tempdir = tempfile::tempdir().expect("a temporary directory");
        let data = tempdir.path().join("data");
        let mut hub = Self::spawn(&data, extra);
        hub._tempdir = Some(tempdir);
        hub
    }

    /// Starts a hub on an existing data directory (the caller keeps it alive). Under
    /// `CITYHUB_TEST_STORE=postgres` the hub stores in PostgreSQL instead (see [`test_store`]).
    pub fn spawn(data: &Path, extra: &[&str]) -> Hub {
        Self::spawn_with_store(data, test_store(data), extra)
    }

    /// Starts a hub on `data` storing in `store` (a PostgreSQL URL), or in SQLite in `data`
    /// when None, whatever `CITYHUB_TEST_STORE` says.
    pub fn spawn_with_store(data: &Path, store: Option<String>, extra: &[&str]) -> Hub {
        // A test may give its own --listen (e.g. 0.0.0.0:0); it is still reached over loopback.
        let listen = if extra.contains(&"--listen") { &[][..] } else { &["--listen", "127.0.0.1:0"][..] };
        let mut child = Command::new(env!("CARGO_BIN_EXE_cityhub"))
            .arg("serve")
            .args(listen)
            .arg("--data")
            .arg(data)
            .args(store.iter().flat_map(|url| ["--store", url.as_str()]))
            .args(["--log", "warn"])
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("cityhub starts");
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(rest) = line.strip_prefix("cityhub listening on ") {
                    let base = rest.trim_end_matches("/ngsi-ld/v1").replace("//0.0.0.0:", "//127.0.0.1:");
                    let _ = tx.send(base);
                }
            }
        });
        let base = rx.recv_timeout(Duration::from_secs(30)).expect("cityhub announces its address within 30 s");
        let client = http_client();
        Hub { child, base, data: data.to_path_buf(), _tempdir: None, client }
    }

    /// The hub's process id (e.g. to read its memory from /proc).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}/ngsi-ld/v1{}", self.base, path)
    }

    pub fn get(&self, path: &str) -> RequestBuilder {
        self.client.get(self.url(path))
    }

    pub fn delete(&self, path: &str) -> RequestBuilder {
        self.client.delete(self.url(path))
    }

    /// A request with a JSON body sent as application/json.
    pub fn send_json(&self, method: reqwest::Method, path: &str, body: &Value) -> RequestBuilder {
        self.client.request(method, self.url(path)).header("Content-Type", "application/json").body(body.to_string())
    }

    /// A request with a JSON-LD body (the body carries its @context).
    pub fn send_ld(&self, method: reqwest::Method, path: &str, body: &Value) -> RequestBuilder {
        self.client.request(method, self.url(path)).header("Content-Type", "application/ld+json").body(body.to_string())
    }

    pub fn post(&self, path: &str, body: &Value) -> Response {
        self.send_json(reqwest::Method::POST, path, body).send().expect("request sent")
    }

    /// GET as application/json, answering status and JSON body.
    pub fn get_json(&self, path: &str) -> (u16, Value) {
        let response = self.get(path).send().expect("request sent");
        json_of(response)
    }

    /// Kills the process with SIGKILL, as a crash would.
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Stops the process with SIGTERM and waits for it.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        self.sigterm();
        self.child.wait().expect("cityhub exits")
    }

    /// Sends SIGTERM and returns at once (the process stops on its own time; [`Hub::wait`]).
    pub fn sigterm(&self) {
        #[allow(unsafe_code, reason = "std cannot send SIGTERM to a child")]
        // SAFETY: signals our own child, not reaped before it is waited for.
        unsafe {
            libc::kill(self.child.id() as i32, libc::SIGTERM);
        }
    }

    /// Waits for the process to exit.
    pub fn wait(&mut self) -> std::process::ExitStatus {
        self.child.wait().expect("cityhub exits")
    }
}

impl Drop for Hub {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The backend the black-box tests run on: `CITYHUB_TEST_STORE=postgres` runs every [`Hub`] on
/// PostgreSQL, unset (or `sqlite`) on the embedded SQLite store in its `--data` directory.
pub fn store_is_postgres() -> bool {
    match std::env::var("CITYHUB_TEST_STORE").as_deref() {
        Ok("postgres") => true,
        Ok("sqlite") | Ok("") | Err(_) => false,
        Ok(other) => panic!("CITYHUB_TEST_STORE={other}: expected `postgres` or `sqlite`"),
    }
}

/// The `--store` URL of a hub on `data`, or None for SQLite. On PostgreSQL each test process has
/// one throwaway cluster (`cityhub_pgtest`) and each data directory its own fresh database, whose
/// URL is kept in the directory: a hub restarted on the same `--data` finds the same database.
pub fn test_store(data: &Path) -> Option<String> {
    if !store_is_postgres() {
        return None;
    }
    static ANNOUNCED: std::sync::Once = std::sync::Once::new();
    std::fs::create_dir_all(data).expect("the data directory");
    let file = data.join("test-store-url");
    let url = match std::fs::read_to_string(&file) {
        Ok(url) => url.trim().to_owned(),
        Err(_) => {
            let url = cityhub_pgtest::database();
            std::fs::write(&file, &url).expect("remember the database URL");
            url
        }
    };
    ANNOUNCED.call_once(|| {
        let cost = cityhub_pgtest::cluster().start_cost();
        uncaptured(&format!(
            "black-box tests on PostgreSQL (CITYHUB_TEST_STORE=postgres; cluster started in {:?})",
            cost.total()
        ));
    });
    Some(url)
}

/// For a test about the SQLite store's files: true on SQLite; on PostgreSQL prints that `test`
/// runs only on SQLite and answers false (the test then returns).
pub fn sqlite_only(test: &str) -> bool {
    if store_is_postgres() {
        uncaptured(&format!(
            "{test}: about the SQLite store's files, runs on SQLite only (not under CITYHUB_TEST_STORE=postgres)"
        ));
        return false;
    }
    true
}

/// A line on stderr that the test harness does not capture, so that CI's log shows it.
fn uncaptured(line: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "{line}");
}

/// A blocking HTTP client for tests (reqwest is built without a default TLS provider).
pub fn http_client() -> Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    Client::builder().timeout(Duration::from_secs(30)).build().expect("an HTTP client")
}

pub fn json_of(response: Response) -> (u16, Value) {
    let status = response.status().as_u16();
    let text = response.text().unwrap_or_default();
    let body = if text.is_empty() { Value::Null } else { serde_json::from_str(&text).unwrap_or(Value::String(text)) };
    (status, body)
}

/// Asserts an NGSI-LD error response: status and ProblemDetails type.
pub fn assert_problem(response: Response, status: u16, error_type: &str) -> Value {
    let (got, body) = json_of(response);
    assert_eq!(got, status, "status; body: {body}");
    // An NGSI-LD error type by name, or a full type URI such as `about:blank`.
    let expected = if error_type.contains(':') {
        error_type.to_owned()
    } else {
        format!("https://uri.etsi.org/ngsi-ld/errors/{error_type}")
    };
    assert_eq!(body["type"], expected, "error type; body: {body}");
    assert!(body["title"].is_string(), "ProblemDetails has a title: {body}");
    body
}

pub fn link_header(url: &str) -> String {
    format!("<{url}>; rel=\"http://www.w3.org/ns/json-ld#context\"; type=\"application/ld+json\"")
}

/// A tiny static HTTP server on loopback serving one JSON document at any path; counts requests.
pub struct ContextServer {
    pub url: String,
    pub hits: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

impl ContextServer {
    pub fn serve(document: Value) -> ContextServer {
        use std::io::{Read, Write};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind loopback");
        let url = format!("http://{}/context.jsonld", listener.local_addr().unwrap());
        let hits = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counter = hits.clone();
        let body = document.to_string();
        std::thread::spawn(move || {
            for stream in listener.incoming().take(1000) {
                let Ok(mut stream) = stream else { continue };
                let mut buf = [0u8; 4096];
                let _ = stream.read(&mut buf);
                counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let reply = format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: application/ld+json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{}",
                    body.len(),
                    body
                );
                let _ = stream.write_all(reply.as_bytes());
            }
        });
        ContextServer { url, hits }
    }
}

/// One request a [`Receiver`] got.
#[derive(Debug, Clone)]
pub struct Received {
    pub path: String,
    /// Header names in lower case.
    pub headers: Vec<(String, String)>,
    pub body: Value,
}

impl Received {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }
}

/// A notification receiver on loopback: records every POST and answers 204 (or, when `silent`,
/// accepts connections and never answers).
pub struct Receiver {
    pub port: u16,
    pub received: std::sync::Arc<std::sync::Mutex<Vec<Received>>>,
}

impl Receiver {
    pub fn start() -> Receiver {
        Self::on(std::net::TcpListener::bind("127.0.0.1:0").expect("bind loopback"), false)
    }

    /// A receiver on a given port (e.g. one an endpoint pointed at while nothing listened).
    pub fn start_on(port: u16) -> Receiver {
        Self::on(std::net::TcpListener::bind(("127.0.0.1", port)).expect("bind loopback port"), false)
    }

    /// An endpoint that accepts connections and never answers.
    pub fn silent() -> Receiver {
        Self::on(std::net::TcpListener::bind("127.0.0.1:0").expect("bind loopback"), true)
    }

    fn on(listener: std::net::TcpListener, silent: bool) -> Receiver {
        let port = listener.local_addr().unwrap().port();
        let received = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let store = received.clone();
        std::thread::spawn(move || {
            let mut held = Vec::new();
            for stream in listener.incoming() {
                let Ok(stream) = stream else { continue };
                if silent {
                    held.push(stream);
                    continue;
                }
                let store = store.clone();
                std::thread::spawn(move || serve_connection(stream, store));
            }
        });
        Receiver { port, received }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{}", self.port, path)
    }

    pub fn all(&self) -> Vec<Received> {
        self.received.lock().unwrap().clone()
    }

    /// Notifications of one subscription, in arrival order.
    pub fn of(&self, subscription_id: &str) -> Vec<Value> {
        self.all().into_iter().filter(|r| r.body["subscriptionId"] == subscription_id).map(|r| r.body).collect()
    }

    /// Waits (at most `timeout`) until `subscription_id` got at least `n` notifications.
    pub fn wait_for(&self, subscription_id: &str, n: usize, timeout: Duration) -> Vec<Value> {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            let got = self.of(subscription_id);
            if got.len() >= n || std::time::Instant::now() >= deadline {
                return got;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// A port nothing listens on (it was free a moment ago).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn serve_connection(stream: std::net::TcpStream, store: std::sync::Arc<std::sync::Mutex<Vec<Received>>>) {
    use std::io::{Read, Write};
    let mut reader = BufReader::new(stream);
    loop {
        let mut request_line = String::new();
        if reader.read_line(&mut request_line).unwrap_or(0) == 0 {
            return;
        }
        let path = request_line.split_whitespace().nth(1).unwrap_or("").to_owned();
        let mut headers = Vec::new();
        loop {
            let mut line = String::new();
            if reader.read_line(&mut line).unwrap_or(0) == 0 {
                return;
            }
            let line = line.trim_end();
            if line.is_empty() {
                break;
            }
            if let Some((name, value)) = line.split_once(':') {
                headers.push((name.trim().to_ascii_lowercase(), value.trim().to_owned()));
            }
        }
        let length: usize =
            headers.iter().find(|(n, _)| n == "content-length").and_then(|(_, v)| v.parse().ok()).unwrap_or(0);
        let mut body = vec![0u8; length];
        if reader.read_exact(&mut body).is_err() {
            return;
        }
        let body = serde_json::from_slice(&body).unwrap_or(Value::Null);
        store.lock().unwrap().push(Received { path, headers, body });
        let _ = reader.get_mut().write_all(b"HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n");
    }
}
