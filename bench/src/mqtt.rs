//! `cityhub-bench mqtt-ingest`: device measurements through a real mosquitto into the hub's
//! MQTT southbound, against a ceiling — the same messages through the same broker to a client
//! that only parses them (`cityhub_ingest::payload::parse`), so the ceiling is what the broker,
//! the client library and parsing allow on this machine.
//!
//! The bench starts its own mosquitto on a free loopback port (queues unbounded so nothing is
//! dropped), provisions one service group (apikey `bench`, autoprovision) whose `DEVICES`
//! devices each feed their own entity, and publishes at QoS 1 — half JSON (`/json/bench/dN/attrs`,
//! `{"s": seq, "t": …, "h": …}`), half UltraLight (`/ul/bench/dN/attrs`, `s|seq|t|…|h|…`):
//!
//! - **throughput**: `messages` published as fast as the broker takes them; measurements stored
//!   (the group's `stored` count of `/cityhub/v1/ingest/status`) or parsed (ceiling) per second,
//!   from the first publish to the last one stored;
//! - **latency**: `messages / 2` published open-loop at half the hub's throughput; publish →
//!   stored per message, p50 / p99 / max. "Stored" is when the polled `stored` count first covers
//!   the message (one MQTT connection, one writer: messages are stored in order), so a latency
//!   is late by at most one poll and one [`POLL_PAUSE`] (a poll is one HTTP round trip, its time
//!   shown). The pause keeps the poller from taking the CPU the hub ingests with on a small
//!   machine (without it the bench asked ~5,000 times a second).
//!
//! At the end the hub must have stored every message and rejected none, and one entity's `s`
//! must be the last sequence number its device sent.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use bytes::Bytes;
use hdrhistogram::Histogram;
use hyper::{Method, StatusCode};
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use serde_json::{json, Value};

use crate::check::Check;
use crate::hub::Hub;
use crate::load::{Call, Conn};

pub const DEVICES: u64 = 100;
const WAIT: Duration = Duration::from_secs(120);
/// Between two polls of the stored count.
pub const POLL_PAUSE: Duration = Duration::from_millis(1);

/// What a run measured, on the hub or the ceiling.
pub struct Measured {
    pub messages: u64,
    pub per_second: f64,
    pub latency_rate: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

pub struct Report {
    pub hub: Measured,
    pub ceiling: Measured,
    pub poll_ms: f64,
    pub hub_bin: String,
    /// Hub CPU per stored measurement over both runs, and the cores it used meanwhile.
    pub hub_cpu_ms: f64,
    pub hub_cores: f64,
    /// The machine's 1-minute load average at the end.
    pub load: String,
}

impl Report {
    pub fn render(&self) -> String {
        let row = |name: &str, m: &Measured| {
            format!(
                "| {name} | {} | {:.0} | {:.0} | {:.2} | {:.2} | {:.2} |",
                m.messages, m.per_second, m.latency_rate, m.p50_ms, m.p99_ms, m.max_ms
            )
        };
        format!(
            "## MQTT ingestion ({} devices, QoS 1, half JSON half UltraLight)\n\nhub: {}\n\n\
             | run | messages | stored/s (throughput run) | latency run rate /s | p50 ms | p99 ms | max ms |\n\
             |---|---|---|---|---|---|---|\n{}\n{}\n\n\
             hub / ceiling: {:.2}×. Latency is publish → stored (hub) or parsed (ceiling); the hub's \
             is late by at most one status poll (mean poll {:.2} ms) and its 1 ms pause. The hub spent {:.3} ms of CPU per \
             measurement and used {:.2} cores meanwhile; load average {}.\n",
            DEVICES,
            self.hub_bin,
            row("hub", &self.hub),
            row("ceiling (parse only)", &self.ceiling),
            self.hub.per_second / self.ceiling.per_second.max(1e-9),
            self.poll_ms,
            self.hub_cpu_ms,
            self.hub_cores,
            self.load
        )
    }
}

struct Broker {
    child: std::process::Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn broker() -> anyhow::Result<Broker> {
    let dir = tempfile::tempdir()?;
    let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let config = dir.path().join("mosquitto.conf");
    std::fs::write(
        &config,
        format!(
            "listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n\
             max_queued_messages 0\nmax_inflight_messages 1000\nmax_queued_bytes 0\n"
        ),
    )?;
    let binary = ["/usr/sbin/mosquitto", "/usr/bin/mosquitto", "/usr/local/sbin/mosquitto"]
        .into_iter()
        .find(|p| Path::new(p).exists())
        .context("mosquitto is not installed (apt-get install mosquitto)")?;
    let child = std::process::Command::new(binary)
        .arg("-c")
        .arg(&config)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .context("cannot start mosquitto")?;
    let broker = Broker { child, port, _dir: dir };
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        if Instant::now() > deadline {
            bail!("mosquitto does not listen on {port}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(broker)
}

/// Message `seq`: its topic and payload.
fn message(seq: u64) -> (String, Vec<u8>) {
    let device = seq % DEVICES;
    let t = 15.0 + (seq % 200) as f64 / 10.0;
    let h = 30 + seq % 50;
    if seq.is_multiple_of(2) {
        (format!("/json/bench/d{device}/attrs"), format!(r#"{{"s": {seq}, "t": {t}, "h": {h}}}"#).into_bytes())
    } else {
        (format!("/ul/bench/d{device}/attrs"), format!("s|{seq}|t|{t}|h|{h}").into_bytes())
    }
}

#[expect(clippy::disallowed_methods, reason = "the bench is a device publishing to its own broker, not the hub")]
fn options(port: u16, name: &str) -> MqttOptions {
    let mut options = MqttOptions::new(format!("bench-{name}-{}", std::process::id()), "127.0.0.1", port);
    options.set_keep_alive(Duration::from_secs(30));
    options.set_inflight(1000);
    options.set_max_packet_size(1 << 20, 1 << 20);
    options
}

/// Publishes `seqs`, at `rate` per second (None: as fast as acknowledged), recording when each
/// was handed to the client.
async fn publish(
    port: u16,
    seqs: std::ops::Range<u64>,
    rate: Option<f64>,
    sent: Arc<Mutex<Vec<Option<Instant>>>>,
) -> anyhow::Result<()> {
    let (client, mut events) = AsyncClient::new(options(port, "publisher"), 1000);
    let total = seqs.end - seqs.start;
    let driver = tokio::spawn(async move {
        let mut acked = 0u64;
        while acked < total {
            match events.poll().await {
                Ok(Event::Incoming(Packet::PubAck(_))) => acked += 1,
                Ok(_) => {}
                Err(e) => return Err(anyhow::anyhow!("the publisher lost the broker: {e}")),
            }
        }
        Ok(())
    });
    let start = Instant::now();
    for (i, seq) in seqs.enumerate() {
        if let Some(rate) = rate {
            let due = start + Duration::from_secs_f64(i as f64 / rate);
            tokio::time::sleep_until(due.into()).await;
        }
        let (topic, payload) = message(seq);
        sent.lock().unwrap()[seq as usize] = Some(Instant::now());
        client.publish(topic, QoS::AtLeastOnce, false, payload).await?;
    }
    tokio::time::timeout(WAIT, driver).await.context("the broker did not acknowledge every publish")???;
    let _ = client.disconnect().await;
    Ok(())
}

fn stats(
    sent: &[Option<Instant>],
    done: &[Option<Instant>],
    range: std::ops::Range<u64>,
) -> anyhow::Result<(f64, f64, f64)> {
    let mut h = Histogram::<u64>::new_with_bounds(1, 600_000_000, 3)?;
    for seq in range {
        let (Some(s), Some(d)) = (sent[seq as usize], done[seq as usize]) else { bail!("message {seq} has no time") };
        h.record(d.saturating_duration_since(s).as_micros().max(1) as u64)?;
    }
    let ms = |us: u64| us as f64 / 1000.0;
    Ok((ms(h.value_at_quantile(0.5)), ms(h.value_at_quantile(0.99)), ms(h.max())))
}

fn first_last(sent: &[Option<Instant>], done: &[Option<Instant>], range: std::ops::Range<u64>) -> f64 {
    let first = range.clone().filter_map(|s| sent[s as usize]).min();
    let last = range.filter_map(|s| done[s as usize]).max();
    match (first, last) {
        (Some(f), Some(l)) => l.duration_since(f).as_secs_f64(),
        _ => f64::NAN,
    }
}

/// The ceiling: a client that subscribes like the hub and only parses.
async fn ceiling(port: u16, messages: u64, rate_of: impl Fn(f64) -> f64) -> anyhow::Result<Measured> {
    let total = messages + messages / 2;
    let sent = Arc::new(Mutex::new(vec![None; total as usize]));
    let done = Arc::new(Mutex::new(vec![None; total as usize]));
    let (client, mut events) = AsyncClient::new(options(port, "ceiling"), 64);
    let (ready_tx, ready) = tokio::sync::oneshot::channel();
    let parsed = done.clone();
    let reader = tokio::spawn(async move {
        let mut ready_tx = Some(ready_tx);
        let mut seen = 0u64;
        while seen < total {
            match events.poll().await {
                Ok(Event::Incoming(Packet::ConnAck(_))) => {
                    client.subscribe("/json/+/+/attrs", QoS::AtLeastOnce).await?;
                    client.subscribe("/ul/+/+/attrs", QoS::AtLeastOnce).await?;
                }
                Ok(Event::Incoming(Packet::SubAck(_))) => {
                    if let Some(tx) = ready_tx.take() {
                        let _ = tx.send(());
                    }
                }
                Ok(Event::Incoming(Packet::Publish(p))) => {
                    let format = if p.topic.starts_with("/json/") {
                        cityhub_ingest::payload::Format::Json
                    } else {
                        cityhub_ingest::payload::Format::UltraLight
                    };
                    let readings = cityhub_ingest::payload::parse(format, &p.payload).map_err(anyhow::Error::msg)?;
                    let seq = readings[0].measures.iter().find(|(k, _)| k == "s").map(|(_, v)| v.clone());
                    let seq = match seq {
                        Some(Value::Number(n)) => n.as_u64(),
                        Some(Value::String(s)) => s.parse().ok(),
                        _ => None,
                    }
                    .context("a message without its sequence number")?;
                    parsed.lock().unwrap()[seq as usize] = Some(Instant::now());
                    seen += 1;
                }
                Ok(_) => {}
                Err(e) => bail!("the ceiling client lost the broker: {e}"),
            }
        }
        anyhow::Ok(())
    });
    tokio::time::timeout(WAIT, ready).await.context("the ceiling client did not subscribe")??;
    publish(port, 0..messages, None, sent.clone()).await?;
    // Wait for every message of the throughput run before the latency run starts.
    let deadline = Instant::now() + WAIT;
    let throughput_secs = loop {
        let complete = {
            let d = done.lock().unwrap();
            d[..messages as usize]
                .iter()
                .all(Option::is_some)
                .then(|| first_last(&sent.lock().unwrap(), &d, 0..messages))
        };
        if let Some(secs) = complete {
            break secs;
        }
        if Instant::now() > deadline {
            bail!("the ceiling did not get every message");
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    let per_second = messages as f64 / throughput_secs;
    let rate = rate_of(per_second);
    publish(port, messages..total, Some(rate), sent.clone()).await?;
    tokio::time::timeout(WAIT, reader).await.context("the ceiling did not get every message")???;
    let (p50, p99, max) = stats(&sent.lock().unwrap(), &done.lock().unwrap(), messages..total)?;
    Ok(Measured { messages, per_second, latency_rate: rate, p50_ms: p50, p99_ms: p99, max_ms: max })
}

async fn request(
    conn: &mut Conn,
    method: Method,
    path: &str,
    body: Value,
    status: StatusCode,
) -> anyhow::Result<Value> {
    let call = Call {
        method,
        path: path.to_owned(),
        body: if body.is_null() { Bytes::new() } else { Bytes::from(body.to_string()) },
        status,
        check: Check::Status,
    };
    let reply = conn.exchange(&call, false).await.map_err(anyhow::Error::msg)?;
    Ok(if reply.body.is_empty() { Value::Null } else { serde_json::from_slice(&reply.body)? })
}

async fn stored(conn: &mut Conn) -> anyhow::Result<(u64, u64)> {
    let status =
        request(conn, Method::GET, "/cityhub/v1/ingest/status?kind=service&name=bench", Value::Null, StatusCode::OK)
            .await?;
    let group = status["sources"]
        .as_array()
        .and_then(|s| s.iter().find(|s| s["kind"] == "service" && s["name"] == "bench").cloned());
    Ok(group.map(|g| (g["stored"].as_u64().unwrap_or(0), g["rejected"].as_u64().unwrap_or(0))).unwrap_or((0, 0)))
}

/// Polls the stored count until it reaches `until`, marking each message's stored time.
async fn follow(
    conn: &mut Conn,
    offset: u64,
    until: u64,
    done: &mut [Option<Instant>],
    polls: &mut (u64, Duration),
) -> anyhow::Result<()> {
    let deadline = Instant::now() + WAIT;
    let mut marked = offset;
    while marked < until {
        let asked = Instant::now();
        let (count, rejected) = stored(conn).await?;
        let now = Instant::now();
        polls.0 += 1;
        polls.1 += now - asked;
        if rejected > 0 {
            bail!("the hub rejected {rejected} bench message(s); see /cityhub/v1/ingest/dead-letters");
        }
        while marked < count.min(until) {
            done[marked as usize] = Some(now);
            marked += 1;
        }
        if now > deadline {
            bail!("the hub stored {count} of {until} messages in {WAIT:?}");
        }
        if marked < until {
            tokio::time::sleep(POLL_PAUSE).await;
        }
    }
    Ok(())
}

async fn hub_run(
    hub_addr: SocketAddr,
    port: u16,
    messages: u64,
    rate_of: impl Fn(f64) -> f64,
) -> anyhow::Result<(Measured, f64)> {
    let mut conn = Conn::open(hub_addr).await?;
    let group = json!({"services": [{"apikey": "bench", "entity_type": "Sensor", "attributes": [
        {"object_id": "s", "name": "sequence", "type": "Number"},
        {"object_id": "t", "name": "temperature", "type": "Number", "unitCode": "CEL"},
        {"object_id": "h", "name": "relativeHumidity", "type": "Number", "unitCode": "P1"}]}]});
    request(&mut conn, Method::POST, "/iot/services", group, StatusCode::CREATED).await?;
    // The hub subscribes on its own time: probe with an unknown apikey until it is dead-lettered.
    let (probe, mut probe_events) = AsyncClient::new(options(port, "probe"), 16);
    tokio::spawn(async move { while probe_events.poll().await.is_ok() {} });
    let deadline = Instant::now() + WAIT;
    loop {
        probe.publish("/probe/p/attrs", QoS::AtLeastOnce, false, b"x|1".to_vec()).await?;
        tokio::time::sleep(Duration::from_millis(100)).await;
        let letters =
            request(&mut conn, Method::GET, "/cityhub/v1/ingest/dead-letters", Value::Null, StatusCode::OK).await?;
        if letters["count"].as_u64().unwrap_or(0) > 0 {
            break;
        }
        if Instant::now() > deadline {
            bail!("the hub did not read from the broker");
        }
    }
    let _ = probe.disconnect().await;
    let total = messages + messages / 2;
    let sent = Arc::new(Mutex::new(vec![None; total as usize]));
    let mut done = vec![None; total as usize];
    let mut polls = (0u64, Duration::ZERO);
    let publisher = tokio::spawn(publish(port, 0..messages, None, sent.clone()));
    follow(&mut conn, 0, messages, &mut done, &mut polls).await?;
    publisher.await??;
    let per_second = messages as f64 / first_last(&sent.lock().unwrap(), &done, 0..messages);
    let rate = rate_of(per_second);
    let publisher = tokio::spawn(publish(port, messages..total, Some(rate), sent.clone()));
    follow(&mut conn, messages, total, &mut done, &mut polls).await?;
    publisher.await??;
    let (p50, p99, max) = stats(&sent.lock().unwrap(), &done, messages..total)?;
    // Every message is stored and mapped: the last device's entity holds its last sequence.
    let last = total - 1;
    let entity = request(
        &mut conn,
        Method::GET,
        &format!("/ngsi-ld/v1/entities/urn:ngsi-ld:Sensor:d{}", last % DEVICES),
        Value::Null,
        StatusCode::OK,
    )
    .await?;
    if entity["sequence"]["value"] != json!(last) {
        bail!("entity d{} holds sequence {} instead of {last}", last % DEVICES, entity["sequence"]["value"]);
    }
    let poll_ms = polls.1.as_secs_f64() * 1000.0 / polls.0.max(1) as f64;
    Ok((Measured { messages, per_second, latency_rate: rate, p50_ms: p50, p99_ms: p99, max_ms: max }, poll_ms))
}

/// The whole scenario: the ceiling first (the hub not yet running), then the hub.
pub fn run(hub_bin: &Path, messages: u64) -> anyhow::Result<Report> {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let ceiling_broker = broker()?;
    eprintln!("mqtt-ingest: ceiling through mosquitto on {}", ceiling_broker.port);
    let ceiling = runtime.block_on(ceiling(ceiling_broker.port, messages, |r| r / 2.0))?;
    drop(ceiling_broker);
    let broker = broker()?;
    let tmp = tempfile::Builder::new().prefix("cityhub-bench-mqtt-").tempdir()?;
    let url = format!("mqtt://127.0.0.1:{}", broker.port);
    let mut hub = Hub::start_with(hub_bin, &tmp.path().join("data"), None, &["--mqtt-ingest", &url])?;
    eprintln!("mqtt-ingest: hub (pid {}) on {} through mosquitto on {}", hub.pid(), hub.addr, broker.port);
    let (before, started) = (hub.usage()?, Instant::now());
    let outcome = runtime.block_on(hub_run(hub.addr, broker.port, messages, |r| r / 2.0));
    let (used, wall) = (hub.usage()?.since(before).cpu.as_secs_f64(), started.elapsed().as_secs_f64());
    hub.stop()?;
    let (hub_measured, poll_ms) = outcome?;
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    Ok(Report {
        hub: hub_measured,
        ceiling,
        poll_ms,
        hub_bin: hub_bin.display().to_string(),
        hub_cpu_ms: used * 1000.0 / (messages + messages / 2) as f64,
        hub_cores: used / wall,
        load: load.split_whitespace().next().unwrap_or("?").to_owned(),
    })
}
