//! Notification latency: a local HTTP receiver records when each notification arrives, and an
//! open-loop driver sends PATCH updates at a fixed rate; each notified entity is matched to the
//! update that caused it by entity id and the value the update carried.
//!
//! Two scenarios, each on a fresh set of `ENTITIES` entities (the ~1.4 KB template plus an
//! integer property `sequence`):
//!
//! - `subscription-notify-1`: one subscription, `type=BeeHive` + an `idPattern` that selects
//!   exactly the scenario's entities, `watchedAttributes=[sequence]`;
//! - `subscription-notify-1000`: 1,000 subscriptions, each watching one entity by id; every
//!   update matches exactly one of them.
//!
//! Every update is `PATCH /entities/{id}/attrs/sequence` with a value unique in the run, on the
//! entities in turn (update i goes to entity i mod `ENTITIES`). Every subscription notifies the
//! same endpoint (`http://127.0.0.1:PORT/notify`, so one delivery queue in the hub) in
//! keyValues with only `sequence`, and the receiver answers 204 at once.

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::StatusCode as AxumStatus;
use axum::routing::post;
use axum::Router;
use bytes::Bytes;
use hdrhistogram::Histogram;
use hyper::{Method, StatusCode};
use serde_json::{json, Value};
use tokio::runtime::Runtime;
use tokio::task::JoinSet;

use crate::check::Check;
use crate::data::{fresh_entity, QUERIED_TYPE};
use crate::hub::Hub;
use crate::load::{closed_loop, histogram, micros, Call, Conn, Limits, Target};
use crate::settings::Settings;

pub const FAMILY: &str = "subscription-notify";
/// The subscription counts of the scenarios.
pub const SUBSCRIPTIONS: [u64; 2] = [1, 1000];
/// Entities each scenario creates and updates.
pub const ENTITIES: u64 = 1000;
/// The property every update sets; its value is the update's sequence number.
const ATTR: &str = "sequence";
const API: &str = "/ngsi-ld/v1";
/// How many error or mismatch messages a scenario keeps to show.
const SAMPLES: usize = 5;

pub fn scenario_name(subscriptions: u64) -> String {
    format!("{FAMILY}-{subscriptions}")
}

/// One notified entity, as the receiver got it.
struct Receipt {
    at: Instant,
    subscription: String,
    id: String,
    seq: Option<u64>,
}

#[derive(Default)]
struct Inbox {
    receipts: Vec<Receipt>,
    /// Requests the receiver could not read as a notification.
    unreadable: Vec<String>,
}

/// The local notification receiver: axum on a runtime of its own, on 127.0.0.1, ephemeral port.
pub struct Receiver {
    pub addr: SocketAddr,
    inbox: Arc<Mutex<Inbox>>,
    runtime: Option<Runtime>,
}

impl Receiver {
    pub fn start() -> anyhow::Result<Receiver> {
        let listener = std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .thread_name("receiver")
            .build()?;
        let inbox = Arc::new(Mutex::new(Inbox::default()));
        let app = Router::new().route("/notify", post(receive)).with_state(inbox.clone());
        runtime.spawn(async move {
            match tokio::net::TcpListener::from_std(listener) {
                Ok(listener) => {
                    if let Err(e) = axum::serve(listener, app).await {
                        eprintln!("the notification receiver stopped: {e}");
                    }
                }
                Err(e) => eprintln!("the notification receiver cannot listen: {e}"),
            }
        });
        Ok(Receiver { addr, inbox, runtime: Some(runtime) })
    }

    pub fn endpoint(&self) -> String {
        format!("http://{}/notify", self.addr)
    }

    fn received(&self) -> usize {
        self.inbox.lock().unwrap().receipts.len()
    }

    fn take(&self) -> Inbox {
        std::mem::take(&mut *self.inbox.lock().unwrap())
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

/// Takes the time first, then reads the notification.
async fn receive(State(inbox): State<Arc<Mutex<Inbox>>>, body: Bytes) -> AxumStatus {
    let at = Instant::now();
    let parsed: Result<Value, _> = serde_json::from_slice(&body);
    let mut inbox = inbox.lock().unwrap();
    match parsed {
        Ok(n) if n["type"] == "Notification" && n["data"].is_array() => {
            let subscription = n["subscriptionId"].as_str().unwrap_or_default().to_owned();
            for item in n["data"].as_array().into_iter().flatten() {
                inbox.receipts.push(Receipt {
                    at,
                    subscription: subscription.clone(),
                    id: item["id"].as_str().unwrap_or_default().to_owned(),
                    seq: item[ATTR].as_u64(),
                });
            }
        }
        _ => {
            let text = String::from_utf8_lossy(&body);
            inbox.unreadable.push(text.chars().take(200).collect());
        }
    }
    AxumStatus::NO_CONTENT
}

/// The measurements of one notification scenario.
pub struct NotifyStats {
    pub rate: f64,
    /// Updates acknowledged (204).
    pub updates: u64,
    pub update_errors: u64,
    pub not_sent: u64,
    /// Notified entities received that matched an update (once each).
    pub received: u64,
    /// Acknowledged updates whose notification never arrived within the drain time.
    pub missing: u64,
    /// Notified entities that matched no update, or the wrong entity or subscription.
    pub unexpected: u64,
    /// Second and later receipts of the same update.
    pub duplicates: u64,
    /// Notifications that arrived before their PATCH was acknowledged.
    pub before_ack: u64,
    pub samples: Vec<String>,
    /// From when the update was due (open loop, coordinated omission corrected) to receipt.
    pub from_due: Histogram<u64>,
    /// From when the PATCH was sent to receipt.
    pub from_sent: Histogram<u64>,
    /// From the PATCH's 204 to receipt (0 when the notification came first).
    pub from_ack: Histogram<u64>,
    /// The PATCH itself, sent to acknowledged.
    pub ack: Histogram<u64>,
    /// From the first update's due time to the last receipt.
    pub elapsed: Duration,
    /// Creating the subscriptions (not timed in the latencies).
    pub subscribe_elapsed: Duration,
}

impl NotifyStats {
    fn new(rate: f64) -> NotifyStats {
        NotifyStats {
            rate,
            updates: 0,
            update_errors: 0,
            not_sent: 0,
            received: 0,
            missing: 0,
            unexpected: 0,
            duplicates: 0,
            before_ack: 0,
            samples: Vec::new(),
            from_due: histogram(),
            from_sent: histogram(),
            from_ack: histogram(),
            ack: histogram(),
            elapsed: Duration::ZERO,
            subscribe_elapsed: Duration::ZERO,
        }
    }

    fn sample(&mut self, why: String) {
        if self.samples.len() < SAMPLES {
            self.samples.push(why);
        }
    }

    /// Notifications per second, first due update to last receipt.
    pub fn throughput(&self) -> f64 {
        let secs = self.elapsed.as_secs_f64();
        if secs > 0.0 {
            self.received as f64 / secs
        } else {
            0.0
        }
    }

    pub fn ms(histogram: &Histogram<u64>, quantile: f64) -> f64 {
        histogram.value_at_quantile(quantile) as f64 / 1000.0
    }

    pub fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        let detail =
            if self.samples.is_empty() { String::new() } else { format!(", e.g. {}", self.samples.join(" | ")) };
        if self.update_errors > 0 {
            problems.push(format!("{} updates failed{detail}", self.update_errors));
        }
        if self.not_sent > 0 {
            problems.push(format!("{} updates never sent (the hub fell too far behind)", self.not_sent));
        }
        if self.updates == 0 {
            problems.push("no update acknowledged".to_owned());
        }
        if self.missing > 0 {
            problems.push(format!("{} of {} notifications missing{detail}", self.missing, self.updates));
        }
        if self.unexpected > 0 || self.duplicates > 0 {
            problems.push(format!(
                "{} unexpected and {} duplicate notified entities{detail}",
                self.unexpected, self.duplicates
            ));
        }
        problems
    }
}

pub struct NotifyResult {
    pub name: String,
    pub about: String,
    pub subscriptions: u64,
    /// Entities in the hub besides the scenario's own.
    pub store: u64,
    pub outcome: Result<NotifyStats, String>,
}

impl NotifyResult {
    pub fn problems(&self) -> Vec<String> {
        match &self.outcome {
            Ok(stats) => stats.problems(),
            Err(why) => vec![why.clone()],
        }
    }
}

/// What one scenario creates and expects.
struct Plan {
    subscriptions: u64,
}

impl Plan {
    fn entity(&self, k: u64) -> String {
        format!("urn:ngsi-ld:{QUERIED_TYPE}:notify-{}:{k}", self.subscriptions)
    }

    fn subscription_id(&self, s: u64) -> String {
        format!("urn:ngsi-ld:Subscription:bench:{}:{s}", self.subscriptions)
    }

    /// The subscription that must notify an update of entity k.
    fn subscription_of(&self, k: u64) -> String {
        self.subscription_id(if self.subscriptions == 1 { 0 } else { k })
    }

    fn subscription(&self, s: u64, endpoint: &str) -> Value {
        let entities = if self.subscriptions == 1 {
            json!([{"type": QUERIED_TYPE, "idPattern": format!("^urn:ngsi-ld:{QUERIED_TYPE}:notify-1:")}])
        } else {
            json!([{"type": QUERIED_TYPE, "id": self.entity(s)}])
        };
        json!({
            "id": self.subscription_id(s),
            "type": "Subscription",
            "entities": entities,
            "watchedAttributes": [ATTR],
            "notification": {
                "attributes": [ATTR],
                "format": "keyValues",
                "endpoint": {"uri": endpoint, "accept": "application/json"}
            }
        })
    }

    /// Update `seq` goes to entity seq mod ENTITIES and sets `sequence` to seq.
    fn update(&self, seq: u64) -> Call {
        Call {
            method: Method::PATCH,
            path: format!("{API}/entities/{}/attrs/{ATTR}", self.entity(seq % ENTITIES)),
            body: body(&json!({"type": "Property", "value": seq})),
            status: StatusCode::NO_CONTENT,
            check: Check::Status,
        }
    }
}

fn body(value: &Value) -> Bytes {
    Bytes::from(serde_json::to_vec(value).expect("JSON values serialise"))
}

/// Sends `n` calls, `make(0..n)`, over a few connections; Err on the first wrong answer.
async fn all_of(
    hub: SocketAddr,
    n: u64,
    connections: usize,
    make: impl Fn(u64) -> Call + Send + Sync + 'static,
) -> Result<(), String> {
    let next = AtomicU64::new(0);
    let workload = Arc::new(move || make(next.fetch_add(1, Ordering::Relaxed)));
    let limits = Limits { connections, max_requests: n, max_duration: Duration::from_secs(600) };
    let stats = closed_loop(Target::one(hub, true), workload, limits).await;
    if let Some(why) = stats.error_samples.first() {
        return Err(why.clone());
    }
    if stats.ok != n {
        return Err(format!("{} of {n} answered", stats.ok));
    }
    Ok(())
}

/// The notification scenarios, on the hub of the entity phase (which holds `store` entities).
pub async fn run(hub: &Hub, settings: &Settings, store: u64) -> Vec<NotifyResult> {
    let receiver = match Receiver::start() {
        Ok(receiver) => receiver,
        Err(e) => {
            return SUBSCRIPTIONS
                .iter()
                .map(|&n| NotifyResult {
                    name: scenario_name(n),
                    about: String::new(),
                    subscriptions: n,
                    store,
                    outcome: Err(format!("cannot start the receiver: {e:#}")),
                })
                .collect()
        }
    };
    let mut results = Vec::new();
    // Sequence numbers are unique over the run, so no receipt can be taken for another's.
    let mut next_seq = 1;
    for subscriptions in SUBSCRIPTIONS {
        let name = scenario_name(subscriptions);
        let about = if subscriptions == 1 {
            format!("1 subscription (type + idPattern) over {ENTITIES} entities, PATCH one attribute")
        } else {
            format!("{subscriptions} subscriptions, one per entity id, PATCH one attribute; one matches each update")
        };
        eprintln!("scenario {name}: {about}");
        let plan = Plan { subscriptions };
        let outcome = scenario(hub.addr, &plan, settings, &receiver, &mut next_seq).await;
        match &outcome {
            Ok(s) => eprintln!(
                "  {} updates at {:.0}/s: notification p50 {:.2} ms p99 {:.2} ms from the send, {} missing",
                s.updates,
                s.rate,
                NotifyStats::ms(&s.from_sent, 0.5),
                NotifyStats::ms(&s.from_sent, 0.99),
                s.missing
            ),
            Err(why) => eprintln!("  failed: {why}"),
        }
        results.push(NotifyResult { name, about, subscriptions, store, outcome });
    }
    results
}

async fn scenario(
    hub: SocketAddr,
    plan: &Plan,
    settings: &Settings,
    receiver: &Receiver,
    next_seq: &mut u64,
) -> Result<NotifyStats, String> {
    let connections = settings.seed_connections;
    let subs = plan.subscriptions;
    let entities = Arc::new(Plan { subscriptions: subs });
    all_of(hub, ENTITIES.div_ceil(crate::scenarios::BATCH), connections, move |b| {
        let from = b * crate::scenarios::BATCH;
        let to = (from + crate::scenarios::BATCH).min(ENTITIES);
        let batch: Vec<Value> = (from..to)
            .map(|k| {
                let mut entity = fresh_entity(&entities.entity(k), k);
                entity[ATTR] = json!({"type": "Property", "value": 0});
                entity
            })
            .collect();
        Call {
            method: Method::POST,
            path: format!("{API}/entityOperations/create"),
            body: body(&Value::Array(batch.clone())),
            status: StatusCode::CREATED,
            check: Check::CreatedIds(batch.len()),
        }
    })
    .await
    .map_err(|why| format!("creating the entities: {why}"))?;

    let subscribed = Instant::now();
    let endpoint = receiver.endpoint();
    let make = Arc::new(Plan { subscriptions: subs });
    all_of(hub, subs, connections, move |s| Call {
        method: Method::POST,
        path: format!("{API}/subscriptions"),
        body: body(&make.subscription(s, &endpoint)),
        status: StatusCode::CREATED,
        check: Check::Status,
    })
    .await
    .map_err(|why| format!("creating the subscriptions: {why}"))?;
    let subscribe_elapsed = subscribed.elapsed();

    let rate = settings.notify_rate;
    let limits = settings.open;
    if !settings.warmup.is_zero() {
        let count = ((rate * settings.warmup.as_secs_f64()).ceil() as u64).max(1);
        let warm = updates(hub, plan, receiver, *next_seq, count, rate, limits, settings.notify_drain).await;
        *next_seq += count;
        if let Some(problem) = warm.problems().first() {
            return Err(format!("warm-up: {problem}"));
        }
    }
    let count = ((rate * limits.max_duration.as_secs_f64()).ceil() as u64).clamp(1, limits.max_requests.max(1));
    let mut stats = updates(hub, plan, receiver, *next_seq, count, rate, limits, settings.notify_drain).await;
    *next_seq += count;
    stats.subscribe_elapsed = subscribe_elapsed;

    // The next scenario starts without these subscriptions.
    let ids = Arc::new(Plan { subscriptions: subs });
    if let Err(why) = all_of(hub, subs, connections, move |s| Call {
        method: Method::DELETE,
        path: format!("{API}/subscriptions/{}", ids.subscription_id(s)),
        body: Bytes::new(),
        status: StatusCode::NO_CONTENT,
        check: Check::Status,
    })
    .await
    {
        stats.update_errors += 1;
        stats.sample(format!("deleting the subscriptions: {why}"));
    }
    Ok(stats)
}

/// One update as the driver sent it.
struct Sent {
    seq: u64,
    due: Instant,
    sent: Instant,
    acked: Result<Instant, String>,
}

/// Open loop: `count` updates due at `rate` per second from now (sequence numbers `first..`),
/// then waits up to `drain` for their notifications and matches them.
#[allow(clippy::too_many_arguments, reason = "one scenario's knobs, each named at the call")]
async fn updates(
    hub: SocketAddr,
    plan: &Plan,
    receiver: &Receiver,
    first: u64,
    count: u64,
    rate: f64,
    limits: Limits,
    drain: Duration,
) -> NotifyStats {
    let mut stats = NotifyStats::new(rate);
    receiver.take();
    let mut conns = Vec::new();
    for _ in 0..limits.connections {
        match Conn::open(hub).await {
            Ok(conn) => conns.push(conn),
            Err(e) => {
                stats.update_errors += 1;
                stats.sample(format!("{e:#}"));
                return stats;
            }
        }
    }
    let next = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let give_up = start + limits.max_duration * 2 + Duration::from_secs(5);
    let mut tasks = JoinSet::new();
    for conn in conns {
        let next = next.clone();
        let plan = Plan { subscriptions: plan.subscriptions };
        tasks.spawn(async move {
            let mut conn = Some(conn);
            let mut sent = Vec::new();
            let mut not_sent = 0;
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= count {
                    break;
                }
                if Instant::now() >= give_up {
                    not_sent += 1;
                    continue;
                }
                let seq = first + i;
                let due = start + Duration::from_secs_f64(i as f64 / rate);
                let call = plan.update(seq);
                tokio::time::sleep_until(due.into()).await;
                let at = Instant::now();
                let acked = match conn.as_mut() {
                    Some(c) => c.exchange(&call, true).await.map(|_| Instant::now()),
                    None => match Conn::open(hub).await {
                        Ok(c) => conn.insert(c).exchange(&call, true).await.map(|_| Instant::now()),
                        Err(e) => Err(format!("cannot connect to {hub}: {e:#}")),
                    },
                };
                if acked.is_err() {
                    conn = None;
                }
                sent.push(Sent { seq, due, sent: at, acked });
            }
            (sent, not_sent)
        });
    }
    let mut sent = Vec::new();
    while let Some(part) = tasks.join_next().await {
        match part {
            Ok((part, not_sent)) => {
                sent.extend(part);
                stats.not_sent += not_sent;
            }
            Err(e) => {
                stats.update_errors += 1;
                stats.sample(format!("an update task failed: {e}"));
            }
        }
    }
    let acked = sent.iter().filter(|s| s.acked.is_ok()).count();
    let deadline = Instant::now() + drain;
    while receiver.received() < acked && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // A moment more for duplicates or strays to show.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let inbox = receiver.take();
    for text in &inbox.unreadable {
        stats.unexpected += 1;
        stats.sample(format!("unreadable notification: {text}"));
    }
    let mut by_seq: HashMap<u64, (&Sent, bool)> = HashMap::new();
    for s in &sent {
        match &s.acked {
            Ok(_) => {
                stats.updates += 1;
                by_seq.insert(s.seq, (s, false));
            }
            Err(why) => {
                stats.update_errors += 1;
                stats.sample(why.clone());
            }
        }
    }
    let mut last = start;
    for r in &inbox.receipts {
        let Some((s, seen)) = r.seq.and_then(|seq| by_seq.get_mut(&seq)) else {
            stats.unexpected += 1;
            stats.sample(format!("a notification of {} with {ATTR} {:?} matches no update", r.id, r.seq));
            continue;
        };
        let k = s.seq % ENTITIES;
        if r.id != plan.entity(k) || r.subscription != plan.subscription_of(k) {
            stats.unexpected += 1;
            stats.sample(format!(
                "update {} of {} was notified as {} by {}",
                s.seq,
                plan.entity(k),
                r.id,
                r.subscription
            ));
            continue;
        }
        if *seen {
            stats.duplicates += 1;
            continue;
        }
        *seen = true;
        stats.received += 1;
        last = last.max(r.at);
        let acked = *s.acked.as_ref().expect("only acknowledged updates are kept");
        stats.from_due.saturating_record(micros(r.at.saturating_duration_since(s.due)));
        stats.from_sent.saturating_record(micros(r.at.saturating_duration_since(s.sent)));
        stats.ack.saturating_record(micros(acked.saturating_duration_since(s.sent)));
        if r.at < acked {
            stats.before_ack += 1;
        }
        stats.from_ack.saturating_record(micros(r.at.saturating_duration_since(acked)));
    }
    let missing: Vec<u64> = by_seq.values().filter(|(_, seen)| !seen).map(|(s, _)| s.seq).collect();
    stats.missing = missing.len() as u64;
    if let Some(seq) = missing.first() {
        stats.sample(format!("no notification for update {seq} within {drain:?}"));
    }
    stats.elapsed = last.saturating_duration_since(start);
    stats
}
