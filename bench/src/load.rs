//! Load generation over keep-alive HTTP/1.1 connections: closed-loop runs (a fixed number of
//! connections, each sending its next request when the previous one is answered) and open-loop
//! runs (requests due at a fixed rate, latency measured from when each was due).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use bytes::Bytes;
use hdrhistogram::Histogram;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper::header::{ACCEPT, CONTENT_TYPE, HOST};
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio::task::JoinSet;

use crate::check::{Check, Reply};

/// A request that takes longer than this is an error; it also bounds how long a run can hang.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// How many error messages a run keeps to show.
const ERROR_SAMPLES: usize = 5;

/// One request and what its answer must be.
pub struct Call {
    pub method: Method,
    /// Path and query, already percent-encoded.
    pub path: String,
    pub body: Bytes,
    pub status: StatusCode,
    pub check: Check,
}

/// An endless source of requests. Each call may differ (ids, values); implementations keep
/// their own counters, so they are shared by all the connections of a run.
pub trait Workload: Send + Sync {
    fn next(&self) -> Call;
}

impl<F: Fn() -> Call + Send + Sync> Workload for F {
    fn next(&self) -> Call {
        self()
    }
}

/// A server to load. `strict` asks for the full content check of every response. With `also`,
/// the connections alternate between `addr` and `also` (two hubs on one database).
#[derive(Debug, Clone, Copy)]
pub struct Target {
    pub addr: SocketAddr,
    pub also: Option<SocketAddr>,
    pub strict: bool,
}

impl Target {
    /// One server.
    pub fn one(addr: SocketAddr, strict: bool) -> Target {
        Target { addr, also: None, strict }
    }

    /// The server of the `i`-th connection of a run.
    fn addr_of(&self, i: usize) -> SocketAddr {
        match self.also {
            Some(other) if i % 2 == 1 => other,
            _ => self.addr,
        }
    }
}

/// The bounds of a run: it stops at whichever of count and time comes first.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub connections: usize,
    pub max_requests: u64,
    pub max_duration: Duration,
}

/// The `Authorization: Bearer` token every connection sends, when set (the `jwt` mode measures
/// the cost of checking one on every request).
static BEARER: std::sync::RwLock<Option<String>> = std::sync::RwLock::new(None);

/// Sets (or clears) the bearer token every request carries from now on.
pub fn set_bearer(token: Option<String>) {
    *BEARER.write().unwrap_or_else(std::sync::PoisonError::into_inner) = token;
}

/// One keep-alive connection.
pub struct Conn {
    sender: SendRequest<Full<Bytes>>,
    host: String,
}

impl Conn {
    pub async fn open(addr: SocketAddr) -> anyhow::Result<Conn> {
        let stream = TcpStream::connect(addr).await.with_context(|| format!("cannot connect to {addr}"))?;
        // Without it, Nagle's algorithm and delayed ACKs add tens of milliseconds to small requests.
        stream.set_nodelay(true)?;
        let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
        tokio::spawn(connection);
        Ok(Conn { sender, host: addr.to_string() })
    }

    pub async fn send(&mut self, call: &Call) -> anyhow::Result<Reply> {
        self.sender.ready().await?;
        let mut request = Request::builder()
            .method(call.method.clone())
            .uri(&call.path)
            .header(HOST, &self.host)
            .header(ACCEPT, "application/json");
        if !call.body.is_empty() {
            request = request.header(CONTENT_TYPE, "application/json");
        }
        if let Some(token) = BEARER.read().unwrap_or_else(std::sync::PoisonError::into_inner).as_deref() {
            request = request.header(hyper::header::AUTHORIZATION, format!("Bearer {token}"));
        }
        let response = self.sender.send_request(request.body(Full::new(call.body.clone()))?).await?;
        let (parts, body) = response.into_parts();
        let body = body.collect().await?.to_bytes();
        Ok(Reply { status: parts.status, headers: parts.headers, body })
    }

    /// Sends one call and checks the answer.
    pub async fn exchange(&mut self, call: &Call, strict: bool) -> Result<Reply, String> {
        let reply = match tokio::time::timeout(REQUEST_TIMEOUT, self.send(call)).await {
            Ok(Ok(reply)) => reply,
            Ok(Err(e)) => return Err(format!("{} {}: {e:#}", call.method, call.path)),
            Err(_) => return Err(format!("{} {}: no answer within {REQUEST_TIMEOUT:?}", call.method, call.path)),
        };
        call.check
            .verify(call.status, &reply, strict)
            .map_err(|why| format!("{} {}: {why}", call.method, call.path))?;
        Ok(reply)
    }
}

/// Opens the connections of a run before its clock starts, each with the server it talks to.
async fn open_all(target: Target, n: usize) -> anyhow::Result<Vec<(SocketAddr, Conn)>> {
    let mut conns = Vec::with_capacity(n);
    for i in 0..n {
        let addr = target.addr_of(i);
        conns.push((addr, Conn::open(addr).await?));
    }
    Ok(conns)
}

/// Microseconds, from 1 µs to 100 s, 3 significant digits.
pub fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 100_000_000, 3).expect("valid histogram bounds")
}

pub fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX).max(1)
}

/// The outcome of a run.
#[derive(Debug, Clone)]
pub struct RunStats {
    /// Requests answered correctly.
    pub ok: u64,
    /// Requests that failed: transport error, timeout, wrong status or wrong content.
    pub errors: u64,
    pub error_samples: Vec<String>,
    /// Open loop only: requests still due when the run had to give up.
    pub not_sent: u64,
    pub elapsed: Duration,
    /// Latency of the correct answers, in µs: from the send (closed loop) or from when the request
    /// was due (open loop, corrected for coordinated omission).
    pub latency: Histogram<u64>,
    /// Open loop only: from the actual send, to show what the correction adds.
    pub service: Histogram<u64>,
    /// Open loop only: the rate the requests were due at.
    pub offered_rate: Option<f64>,
}

impl RunStats {
    fn empty() -> RunStats {
        RunStats {
            ok: 0,
            errors: 0,
            error_samples: Vec::new(),
            not_sent: 0,
            elapsed: Duration::ZERO,
            latency: histogram(),
            service: histogram(),
            offered_rate: None,
        }
    }

    /// A run that could not start.
    pub fn failed(why: String) -> RunStats {
        let mut stats = RunStats::empty();
        stats.errors = 1;
        stats.error_samples.push(why);
        stats
    }

    pub fn throughput(&self) -> f64 {
        let secs = self.elapsed.as_secs_f64();
        if secs > 0.0 {
            self.ok as f64 / secs
        } else {
            0.0
        }
    }

    /// A latency quantile in milliseconds.
    pub fn ms(&self, quantile: f64) -> f64 {
        self.latency.value_at_quantile(quantile) as f64 / 1000.0
    }

    pub fn service_ms(&self, quantile: f64) -> f64 {
        self.service.value_at_quantile(quantile) as f64 / 1000.0
    }

    fn record(&mut self, outcome: Result<Reply, String>, latency: Duration, service: Duration) {
        match outcome {
            Ok(_) => {
                self.ok += 1;
                self.latency.saturating_record(micros(latency));
                self.service.saturating_record(micros(service));
            }
            Err(why) => self.error(why),
        }
    }

    fn error(&mut self, why: String) {
        self.errors += 1;
        if self.error_samples.len() < ERROR_SAMPLES {
            self.error_samples.push(why);
        }
    }

    fn merge(&mut self, other: RunStats) {
        self.ok += other.ok;
        self.errors += other.errors;
        self.not_sent += other.not_sent;
        for why in other.error_samples {
            if self.error_samples.len() < ERROR_SAMPLES {
                self.error_samples.push(why);
            }
        }
        self.latency.add(&other.latency).expect("histograms of the same bounds");
        self.service.add(&other.service).expect("histograms of the same bounds");
    }
}

/// Sends one request after a connection error, on a fresh connection, so a dropped keep-alive
/// connection costs one error and not the rest of the run.
async fn exchange_or_reconnect(
    conn: &mut Option<Conn>,
    addr: SocketAddr,
    strict: bool,
    call: &Call,
) -> Result<Reply, String> {
    if conn.is_none() {
        *conn = Some(Conn::open(addr).await.map_err(|e| format!("{e:#}"))?);
    }
    let result = conn.as_mut().expect("just opened").exchange(call, strict).await;
    if result.is_err() {
        // The connection may be mid-response or closed; never reuse it after a failure.
        *conn = None;
    }
    result
}

/// Closed loop: `connections` connections send back to back until `max_requests` have been sent
/// or `max_duration` has passed.
pub async fn closed_loop(target: Target, workload: Arc<dyn Workload>, limits: Limits) -> RunStats {
    let conns = match open_all(target, limits.connections).await {
        Ok(conns) => conns,
        Err(e) => return RunStats::failed(format!("{e:#}")),
    };
    let issued = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let deadline = start + limits.max_duration;
    let mut tasks = JoinSet::new();
    for (addr, conn) in conns {
        let (issued, workload) = (issued.clone(), workload.clone());
        tasks.spawn(async move {
            let mut part = RunStats::empty();
            let mut conn = Some(conn);
            while Instant::now() < deadline && issued.fetch_add(1, Ordering::Relaxed) < limits.max_requests {
                let call = workload.next();
                let sent = Instant::now();
                let outcome = exchange_or_reconnect(&mut conn, addr, target.strict, &call).await;
                let took = sent.elapsed();
                part.record(outcome, took, took);
            }
            part
        });
    }
    let mut stats = join(tasks).await;
    stats.elapsed = start.elapsed();
    stats
}

/// Open loop: `rate` requests per second are due, the i-th at `start + i / rate`, spread over
/// `connections` connections; a request waits for a free connection if none is, and its latency
/// counts from when it was due, so a stalled server is charged for every request it delayed.
/// The run offers at most `max_requests` and `rate × max_duration` requests, and gives up on the
/// ones still due long after the last was.
pub async fn open_loop(target: Target, workload: Arc<dyn Workload>, rate: f64, limits: Limits) -> RunStats {
    let due = ((rate * limits.max_duration.as_secs_f64()).ceil() as u64).clamp(1, limits.max_requests.max(1));
    let conns = match open_all(target, limits.connections).await {
        Ok(conns) => conns,
        Err(e) => return RunStats::failed(format!("{e:#}")),
    };
    let next = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let give_up = start + limits.max_duration * 2 + Duration::from_secs(5);
    let mut tasks = JoinSet::new();
    for (addr, conn) in conns {
        let (next, workload) = (next.clone(), workload.clone());
        tasks.spawn(async move {
            let mut part = RunStats::empty();
            let mut conn = Some(conn);
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= due {
                    break;
                }
                if Instant::now() >= give_up {
                    part.not_sent += 1;
                    continue;
                }
                let intended = start + Duration::from_secs_f64(i as f64 / rate);
                let call = workload.next();
                tokio::time::sleep_until(intended.into()).await;
                let sent = Instant::now();
                let outcome = exchange_or_reconnect(&mut conn, addr, target.strict, &call).await;
                let done = Instant::now();
                part.record(outcome, done - intended, done - sent);
            }
            part
        });
    }
    let mut stats = join(tasks).await;
    stats.elapsed = start.elapsed();
    stats.offered_rate = Some(rate);
    stats
}

async fn join(mut tasks: JoinSet<RunStats>) -> RunStats {
    let mut stats = RunStats::empty();
    while let Some(part) = tasks.join_next().await {
        match part {
            Ok(part) => stats.merge(part),
            Err(e) => stats.error(format!("a load task failed: {e}")),
        }
    }
    stats
}
