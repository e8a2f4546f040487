//! Black-box test support: real `cityhub` processes on free loopback ports.

#![allow(dead_code)]

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

    /// Starts a hub on an existing data directory (the caller keeps it alive).
    pub fn spawn(data: &Path, extra: &[&str]) -> Hub {
        let mut child = Command::new(env!("CARGO_BIN_EXE_cityhub"))
            .args(["serve", "--listen", "127.0.0.1:0", "--data"])
            .arg(data)
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
                    let _ = tx.send(rest.trim_end_matches("/ngsi-ld/v1").to_owned());
                }
            }
        });
        let base = rx.recv_timeout(Duration::from_secs(30)).expect("cityhub announces its address within 30 s");
        let client = http_client();
        Hub { child, base, data: data.to_path_buf(), _tempdir: None, client }
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
        unsafe {
            libc::kill(self.child.id() as i32, libc::SIGTERM);
        }
        self.child.wait().expect("cityhub exits")
    }
}

impl Drop for Hub {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
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
    assert_eq!(body["type"], format!("https://uri.etsi.org/ngsi-ld/errors/{error_type}"), "error type; body: {body}");
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
