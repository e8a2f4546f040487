//! Two measurements of issue 16, each on its own hubs over one seeded data directory:
//!
//! - `cityhub-bench jwt`: GET /entities/{id} with no credentials on an open-mode hub, then with
//!   a bearer JWT (ES256, checked against a JWKS file; the verified token cached) on every
//!   request on the same data; the throughputs and their ratio (the target: a JWT costs at most
//!   10 %).
//! - `cityhub-bench overload`: 2,000 connections each sending GET /entities/{id} in a closed
//!   loop, against a hub whose in-flight bound is out of reach (as before the bound existed)
//!   against one with the default `--max-in-flight` and one with a tight bound (64); per run the throughput, the p50 and
//!   p99 of the answered requests and how many were shed (503).

use std::path::Path;
use std::time::Duration;

use anyhow::Context as _;
use base64::Engine as _;
use serde_json::json;

use crate::hub::Hub;
use crate::load::{closed_loop, set_bearer, Limits, RunStats, Target};
use crate::runner::seed;
use crate::scenarios;

const SEEDED: u64 = 1000;

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// An ES256 key made now: the JWKS document of its public half and a token signed by it.
fn issuer() -> anyhow::Result<(String, String)> {
    use ring::signature::{EcdsaKeyPair, KeyPair as _, ECDSA_P256_SHA256_FIXED_SIGNING};
    let rng = ring::rand::SystemRandom::new();
    let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
        .map_err(|_| anyhow::anyhow!("no P-256 key"))?;
    let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &rng)
        .map_err(|_| anyhow::anyhow!("the P-256 key does not read"))?;
    let point = pair.public_key().as_ref();
    let jwks = json!({"keys": [{"kty": "EC", "crv": "P-256", "kid": "bench", "alg": "ES256",
                                "x": b64(&point[1..33]), "y": b64(&point[33..65])}]});
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256);
    header.kid = Some("bench".into());
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_secs();
    let claims = json!({"sub": "bench", "exp": now + 3600, "roles": ["admin"]});
    let token = jsonwebtoken::encode(&header, &claims, &jsonwebtoken::EncodingKey::from_ec_der(pkcs8.as_ref()))?;
    Ok((jwks.to_string(), token))
}

fn line(label: &str, stats: &RunStats, cpu: Duration) -> String {
    format!(
        "| {label} | {:.0} | {:.2} | {:.2} | {} | {} | {:.1} |",
        stats.throughput(),
        stats.ms(0.5),
        stats.ms(0.99),
        stats.ok,
        stats.errors,
        cpu_per_request(stats, cpu)
    )
}

/// The hub's CPU time per answered request, in µs: what a request costs the hub, which the
/// other processes of a shared machine disturb less than the throughput.
fn cpu_per_request(stats: &RunStats, cpu: Duration) -> f64 {
    cpu.as_secs_f64() * 1e6 / stats.ok.max(1) as f64
}

/// A run with the hub's CPU time it cost.
fn timed(
    hub: &Hub,
    client: &tokio::runtime::Runtime,
    connections: usize,
    duration: Duration,
) -> anyhow::Result<(RunStats, Duration)> {
    let before = hub.usage()?;
    let stats = client.block_on(get_by_id(hub, connections, duration));
    let cpu = hub.usage()?.since(before).cpu;
    Ok((stats, cpu))
}

async fn get_by_id(hub: &Hub, connections: usize, duration: Duration) -> RunStats {
    let limits = Limits { connections, max_requests: u64::MAX, max_duration: duration };
    // Not strict: a shed request (503) is counted as an error, not a failed run.
    closed_loop(Target::one(hub.addr, false), scenarios::get_by_id(SEEDED).workload, limits).await
}

async fn seeded(bin: &Path, data: &Path) -> anyhow::Result<()> {
    let mut hub = Hub::start(bin, data, None)?;
    let seeding = seed(hub.addr, 0, SEEDED, 4).await;
    if let Some(e) = seeding.errors.first() {
        anyhow::bail!("seeding failed: {e}");
    }
    hub.stop()
}

/// `cityhub-bench jwt`.
pub fn jwt(
    bin: &Path,
    client: &tokio::runtime::Runtime,
    connections: usize,
    duration: Duration,
) -> anyhow::Result<String> {
    let tmp = tempfile::tempdir().context("no temporary directory")?;
    let data = tmp.path().join("data");
    let (jwks, token) = issuer()?;
    let jwks_file = tmp.path().join("jwks.json");
    std::fs::write(&jwks_file, jwks)?;
    client.block_on(seeded(bin, &data))?;
    let mut rows = Vec::new();
    let mut rates = Vec::new();
    for (label, extra, bearer) in [
        ("no credentials (open mode)", vec![], None),
        (
            "bearer JWT on every request (ES256, cached)",
            vec!["--auth-jwks", jwks_file.to_str().unwrap_or_default(), "--rate-limit", "0"],
            Some(token.clone()),
        ),
    ] {
        let mut hub = Hub::start_with(bin, &data, None, &extra)?;
        set_bearer(bearer);
        let (stats, cpu) = timed(&hub, client, connections, duration)?;
        set_bearer(None);
        eprintln!(
            "  {label}: {:.0} req/s, {} errors {:?}",
            stats.throughput(),
            stats.errors,
            stats.error_samples.first()
        );
        rows.push(line(label, &stats, cpu));
        rates.push((stats.throughput(), cpu_per_request(&stats, cpu)));
        hub.stop()?;
    }
    let cost = 100.0 * (1.0 - rates[1].0 / rates[0].0.max(1e-9));
    let cpu_cost = 100.0 * (rates[1].1 / rates[0].1.max(1e-9) - 1.0);
    Ok(format!(
        "GET /entities/{{id}} among {SEEDED} entities, {connections} connections, {:.0} s each\n\n\
         | run | req/s | p50 ms | p99 ms | ok | errors | hub CPU µs/req |\n|---|---|---|---|---|---|---|\n{}\n\n\
         a JWT on every request costs {cost:.1} % of the throughput and {cpu_cost:.1} % more hub CPU per request",
        duration.as_secs_f64(),
        rows.join("\n")
    ))
}

/// `cityhub-bench overload`.
pub fn overload(
    bin: &Path,
    client: &tokio::runtime::Runtime,
    connections: usize,
    duration: Duration,
) -> anyhow::Result<String> {
    let tmp = tempfile::tempdir().context("no temporary directory")?;
    let data = tmp.path().join("data");
    client.block_on(seeded(bin, &data))?;
    let mut rows = Vec::new();
    for (label, bound) in [
        ("no bound (--max-in-flight 1000000)", "1000000"),
        ("--max-in-flight 512 (default)", "512"),
        ("--max-in-flight 64", "64"),
    ] {
        let mut hub = Hub::start_with(bin, &data, None, &["--max-in-flight", bound])?;
        let (stats, cpu) = timed(&hub, client, connections, duration)?;
        eprintln!("  {label}: {:.0} req/s, p99 {:.2} ms, {} shed", stats.throughput(), stats.ms(0.99), stats.errors);
        rows.push(line(label, &stats, cpu));
        hub.stop()?;
    }
    Ok(format!(
        "{connections} connections, closed loop, GET /entities/{{id}} among {SEEDED} entities, {:.0} s each \
         (errors: requests shed with 503)\n\n\
         | run | req/s | p50 ms | p99 ms | ok | errors | hub CPU µs/req |\n|---|---|---|---|---|---|---|\n{}",
        duration.as_secs_f64(),
        rows.join("\n")
    ))
}
