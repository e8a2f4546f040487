//! `cityhub import --from-ngsiv2 URL [--fiware-service S] [--fiware-servicepath P]`: copies an
//! Orion NGSIv2 broker's entities once.
//!
//! Pages through `GET /v2/entities?limit=N&offset=O&options=count` (N = `--batch`), in Orion's
//! order, until the `Fiware-Total-Count` it answers is reached (or a page comes back short);
//! converts each entity with `cityhub_ingest::ngsiv2::entity_from_v2` (the same rules as the
//! NGSIv2 notification intake) and upserts each page as one batch, like a file's
//! (`sink::Sink`): unchanged values write nothing, so copying again changes nothing. An entity
//! that does not convert, or that the hub refuses, is reported with its position in the listing
//! (1-based) in place of a line.

use std::io::Write as _;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use cityhub_ingest::ngsiv2::{entity_from_v2, V2Options};
use serde_json::{json, Map, Value};

use crate::sink::{body_detail, outgoing_client, usage, Outcome, Sink};

/// The broker to copy from, and how (from `cityhub import`'s flags).
pub struct V2Source {
    pub url: String,
    pub service: Option<String>,
    pub service_path: Option<String>,
    /// The type of an entity that names none.
    pub default_type: Option<String>,
    pub report: Option<std::path::PathBuf>,
    pub tenant: String,
    /// Entities per page, and per batch.
    pub page: usize,
}

pub async fn copy(args: &V2Source, sink: &Sink) -> anyhow::Result<Outcome> {
    let url = &args.url;
    let base = url.trim_end_matches('/').trim_end_matches("/v2/entities").trim_end_matches("/v2").to_owned();
    if !(base.starts_with("http://") || base.starts_with("https://")) {
        return Err(usage(format!("--from-ngsiv2 must be an http(s) URL, not {url:?}")));
    }
    let client = outgoing_client(Duration::from_secs(60))?;
    let options = V2Options { default_type: args.default_type.clone().unwrap_or_else(|| "Thing".to_owned()) };
    let mut report = match &args.report {
        Some(p) => Some(std::fs::File::create(p).with_context(|| format!("cannot write the report {}", p.display()))?),
        None => None,
    };
    let tenant = args.tenant.clone();
    let page = args.page;
    let (mut offset, mut stored, mut unchanged, mut rejected) = (0u64, 0u64, 0u64, 0u64);
    let started = Instant::now();
    let mut reject = |position: u64, id: Option<String>, why: String| {
        rejected += 1;
        match &mut report {
            Some(r) => {
                let _ = writeln!(r, "{}", json!({"line": position, "id": id, "error": why}));
            }
            None => eprintln!("entity {position}: {why}"),
        }
    };
    loop {
        let mut request = client.get(format!("{base}/v2/entities?limit={page}&offset={offset}&options=count"));
        if let Some(service) = &args.service {
            request = request.header("Fiware-Service", service);
        }
        if let Some(path) = &args.service_path {
            request = request.header("Fiware-ServicePath", path);
        }
        let response = request.send().await.with_context(|| format!("GET {base}/v2/entities failed"))?;
        let status = response.status();
        let total = response
            .headers()
            .get("Fiware-Total-Count")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok());
        let bytes = response.bytes().await.context("the broker's answer broke off")?;
        let body: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        if !status.is_success() {
            anyhow::bail!(
                "GET {base}/v2/entities (offset {offset}) answered {status} {}; {offset} entities were copied, copy \
                 again to finish (what is copied is unchanged then)",
                orion_error(&body)
            );
        }
        let Some(entities) = body.as_array() else {
            anyhow::bail!("GET {base}/v2/entities answered no JSON array of entities");
        };
        let mut batch: Vec<(u64, Map<String, Value>)> = Vec::with_capacity(entities.len());
        for (i, v2) in entities.iter().enumerate() {
            let position = offset + i as u64 + 1;
            match entity_from_v2(v2, &options) {
                Ok(Value::Object(entity)) => batch.push((position, entity)),
                Ok(_) => reject(position, v2_id(v2), "the conversion gave no JSON object".into()),
                Err(e) => reject(position, v2_id(v2), e.0),
            }
        }
        let n = entities.len() as u64;
        let written = sink.write(&tenant, batch).await?;
        stored += written.stored;
        unchanged += written.unchanged;
        for (position, id, why) in written.rejected {
            reject(position, id, why);
        }
        offset += n;
        let done = match total {
            Some(total) => offset >= total,
            None => n < page as u64,
        };
        if done || n == 0 {
            break;
        }
        println!("import: {offset} of {} entities copied", total.map(|t| t.to_string()).unwrap_or("?".into()));
    }
    let rate = offset as f64 / started.elapsed().as_secs_f64().max(1e-3);
    println!(
        "imported {offset} records: {stored} stored, {unchanged} unchanged, {rejected} rejected ({rate:.0} records/s)"
    );
    Ok(if rejected > 0 { Outcome::Rejected } else { Outcome::Complete })
}

fn v2_id(v2: &Value) -> Option<String> {
    v2.get("id").and_then(Value::as_str).map(str::to_owned)
}

/// Orion's error body (`{"error": ..., "description": ...}`) or a ProblemDetails, for messages.
fn orion_error(body: &Value) -> String {
    match (body.get("error").and_then(Value::as_str), body.get("description").and_then(Value::as_str)) {
        (Some(e), Some(d)) => format!("{e}: {d}"),
        (Some(e), None) => e.to_owned(),
        _ => body_detail(body),
    }
}
