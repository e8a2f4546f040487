//! Running pollers: the schedule, one run, its status.
//!
//! Every hub keeps the pollers of every tenant in memory, read from the store at start and again
//! for a tenant on each `StoreEvent::Records` of kind `Poller` (everything again after missed
//! events), so a poller created, edited or deleted at any hub is run as it now is. A poller is
//! due every `interval`; when due, a hub first takes the store lease `poller/<tenant>/<id>`
//! (ttl: the interval plus 30 s, renewed by each run): of the hubs on one store only the holder
//! runs it, and when the holder dies another takes over after at most two intervals and 30 s.
//!
//! A run GETs the source with the outgoing client ([`outgoing_client`]), retrying a failure
//! (network, 5xx, 429) `retries` times with backoff, reads the records (JSON at the mapping's
//! `items`, GeoJSON, CSV, XML), maps them, and writes them through `Store::modify` with
//! `cityhub_import::upsert`'s modifier, the NGSI-LD API's own path: history, subscriptions;
//! an unchanged value writes no history. Its outcome becomes the poller's `PollerStatus` record.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use cityhub_import::read::{self, Cursor, Item};
use cityhub_import::{Format, Record};
use cityhub_storage::{DynStore, RecordKind, StoreError, StoreEvent};
use tokio::time::Instant;

use crate::poller::{Poller, Rejection, Run, Status, MAX_REJECTIONS};

/// Settings of the pollers of a hub.
#[derive(Debug, Clone)]
pub struct PollerConfig {
    /// The shortest interval a poller may have.
    pub min_interval: Duration,
    /// Whether this hub runs pollers (the API works either way).
    pub run: bool,
    /// The largest answer a source may give, in bytes.
    pub max_answer_bytes: usize,
    /// Where the pollers may send their GETs: the hub's egress rules (`--egress-allow`).
    pub egress: cityhub_egress::Egress,
}

impl Default for PollerConfig {
    fn default() -> Self {
        PollerConfig {
            min_interval: Duration::from_secs(10),
            run: true,
            max_answer_bytes: 64 << 20,
            egress: cityhub_egress::Egress::default(),
        }
    }
}

/// The HTTP client of every outgoing poller request, under the hub's egress rules: the one place
/// it is built. Each GET sets its own timeout.
pub fn outgoing_client(egress: &cityhub_egress::Egress) -> cityhub_egress::EgressClient {
    egress.client(&cityhub_egress::ClientOptions {
        timeout: Duration::from_secs(3600),
        max_redirects: 5,
        ..cityhub_egress::ClientOptions::default()
    })
}

/// The status record of a poller.
pub async fn status(store: &DynStore, tenant: &str, id: &str) -> Result<Option<Status>, StoreError> {
    let all = store.list_records(tenant, RecordKind::PollerStatus).await?;
    Ok(all
        .into_iter()
        .find(|doc| doc.get("id").and_then(serde_json::Value::as_str) == Some(id))
        .and_then(|doc| serde_json::from_value(doc).ok()))
}

async fn save_status(store: &DynStore, tenant: &str, id: &str, status: &Status) -> Result<(), StoreError> {
    let mut doc = serde_json::to_value(status).unwrap_or_default();
    doc["id"] = serde_json::Value::String(id.to_owned());
    if !store.replace_record(tenant, RecordKind::PollerStatus, id, doc.clone()).await? {
        // Created by this hub alone: it holds the poller's lease.
        let _ = store.create_record(tenant, RecordKind::PollerStatus, id, doc).await?;
    }
    Ok(())
}

/// A scheduled poller.
struct Entry {
    poller: Arc<Poller>,
    next: Instant,
    running: Arc<AtomicBool>,
}

/// Starts running the pollers of every tenant of `store` (on the current tokio runtime).
pub fn start(store: DynStore, config: PollerConfig) {
    if !config.run {
        return;
    }
    tokio::spawn(schedule(store, config));
}

async fn schedule(store: DynStore, config: PollerConfig) {
    let holder = format!("hub-{}", uuid::Uuid::new_v4());
    let client = outgoing_client(&config.egress);
    let mut events = store.events();
    let mut entries: HashMap<(String, String), Entry> = HashMap::new();
    reload(&store, &config, None, &mut entries).await;
    let mut tick = tokio::time::interval(Duration::from_millis(200));
    loop {
        tokio::select! {
            event = events.recv() => {
                use cityhub_storage::Heard;
                match cityhub_storage::heard(event) {
                    Heard::Event(StoreEvent::Records { tenant, kind: RecordKind::Poller }) => {
                        reload(&store, &config, Some(&tenant), &mut entries).await
                    }
                    Heard::Event(StoreEvent::Tenant { tenant }) => reload(&store, &config, Some(&tenant), &mut entries).await,
                    Heard::Event(_) => {}
                    Heard::Missed => reload(&store, &config, None, &mut entries).await,
                    Heard::Closed => return,
                }
            }
            _ = tick.tick() => {
                let now = Instant::now();
                for ((tenant, _), entry) in entries.iter_mut() {
                    if entry.next > now || entry.running.swap(true, Ordering::SeqCst) {
                        continue;
                    }
                    entry.next = now + entry.poller.interval;
                    let job = Job {
                        store: store.clone(),
                        client: client.clone(),
                        tenant: tenant.clone(),
                        poller: entry.poller.clone(),
                        holder: holder.clone(),
                        max_bytes: config.max_answer_bytes,
                    };
                    let running = entry.running.clone();
                    tokio::spawn(async move {
                        job.run().await;
                        running.store(false, Ordering::SeqCst);
                    });
                }
            }
        }
    }
}

/// Reads the pollers of `tenant` (None: of every tenant) again; an unchanged poller keeps its
/// schedule, a new or edited one is due at once.
async fn reload(
    store: &DynStore,
    config: &PollerConfig,
    tenant: Option<&str>,
    entries: &mut HashMap<(String, String), Entry>,
) {
    let tenants = match tenant {
        Some(t) => vec![t.to_owned()],
        None => match store.tenants().await {
            Ok(mut all) => {
                if !all.iter().any(String::is_empty) {
                    all.push(String::new());
                }
                all
            }
            Err(e) => {
                tracing::error!(error = %e, "the pollers cannot be read: they run as they were");
                return;
            }
        },
    };
    for tenant in tenants {
        let docs = match store.list_records(&tenant, RecordKind::Poller).await {
            Ok(docs) => docs,
            Err(e) => {
                tracing::error!(%tenant, error = %e, "the pollers of a tenant cannot be read: they run as they were");
                continue;
            }
        };
        let mut kept = HashMap::new();
        for doc in docs {
            let id = doc.get("id").and_then(serde_json::Value::as_str).unwrap_or_default().to_owned();
            // Read with no lower bound: the bound was checked when it was written.
            let poller = match Poller::read(doc, Duration::ZERO) {
                Ok(p) => p,
                Err(e) => {
                    tracing::error!(%tenant, poller = %id, error = %e.detail, "a stored poller does not read: it does not run");
                    continue;
                }
            };
            let key = (tenant.clone(), id);
            let entry = match entries.remove(&key) {
                Some(old) if *old.poller == poller => old,
                _ => {
                    Entry { poller: Arc::new(poller), next: Instant::now(), running: Arc::new(AtomicBool::new(false)) }
                }
            };
            kept.insert(key, entry);
        }
        entries.retain(|(t, _), _| *t != tenant);
        entries.extend(kept);
    }
    let _ = config;
}

/// One run of one poller.
struct Job {
    store: DynStore,
    client: cityhub_egress::EgressClient,
    tenant: String,
    poller: Arc<Poller>,
    holder: String,
    max_bytes: usize,
}

impl Job {
    async fn run(self) {
        let p = &self.poller;
        let lease = format!("poller/{}/{}", self.tenant, p.id);
        match self.store.try_lease(&lease, &self.holder, p.interval + Duration::from_secs(30)).await {
            Ok(true) => {}
            Ok(false) => return,
            Err(e) => {
                tracing::warn!(poller = %p.id, error = %e, "the poller's lease cannot be had: this run is skipped");
                return;
            }
        }
        let started_at = ngsild_core::time::now();
        let mut run = Run { started_at, ran_by: self.holder.clone(), ..Run::default() };
        match self.fetch(&mut run).await {
            Ok(body) => {
                if let Err(e) = self.write(&body, &mut run).await {
                    run.error = Some(e);
                }
            }
            Err(e) => run.error = Some(e),
        }
        run.outcome = if run.error.is_some() { "failed" } else { "ok" }.to_owned();
        run.ended_at = ngsild_core::time::now();
        if let Some(e) = &run.error {
            tracing::warn!(tenant = %self.tenant, poller = %p.id, error = %e, "a poller run failed");
        }
        let previous = match status(&self.store, &self.tenant, &p.id).await {
            Ok(s) => s.unwrap_or_default(),
            Err(e) => {
                tracing::error!(poller = %p.id, error = %e, "the poller's status cannot be read: not updated");
                return;
            }
        };
        if let Err(e) = save_status(&self.store, &self.tenant, &p.id, &previous.after(run)).await {
            tracing::error!(poller = %p.id, error = %e, "the poller's status cannot be written");
        }
    }

    /// The source's answer, after up to `retries` retries with backoff.
    async fn fetch(&self, run: &mut Run) -> Result<Vec<u8>, String> {
        let p = &self.poller;
        let mut wait = Duration::from_millis(500);
        loop {
            run.attempts += 1;
            let failure = match self.get().await {
                Ok(body) => return Ok(body),
                Err((why, retry)) if retry => why,
                Err((why, _)) => return Err(why),
            };
            if run.attempts > p.retries {
                return Err(format!("{failure} (after {} attempts)", run.attempts));
            }
            tokio::time::sleep(wait).await;
            wait = (wait * 2).min(Duration::from_secs(30));
        }
    }

    /// One GET: the body, or why not and whether a retry may help.
    async fn get(&self) -> Result<Vec<u8>, (String, bool)> {
        let p = &self.poller;
        let shown = p.shown_url();
        let mut request = self
            .client
            .get(p.url.as_str())
            .timeout(p.timeout)
            .header(reqwest::header::USER_AGENT, concat!("cityhub-poller/", env!("CARGO_PKG_VERSION")));
        for (k, v) in &p.headers {
            request = request.header(k, v);
        }
        let mut response =
            self.client.execute(request).await.map_err(|e| (format!("GET {shown} failed: {e}"), true))?;
        let status = response.status();
        if !status.is_success() {
            let retry = status.is_server_error() || status.as_u16() == 429;
            return Err((format!("GET {shown} answered {status}"), retry));
        }
        let mut body = Vec::new();
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|e| (format!("GET {shown}: the answer broke off: {}", without_url(&e)), true))?
        {
            if body.len() + chunk.len() > self.max_bytes {
                return Err((format!("GET {shown}: the answer is larger than {} bytes", self.max_bytes), false));
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body)
    }

    /// Maps the answer's records and upserts them; `Err` when the answer cannot be read or the
    /// store fails.
    async fn write(&self, body: &[u8], run: &mut Run) -> Result<(), String> {
        let p = &self.poller;
        let records = records(p.format, body, p.mapping.items.as_deref())?;
        run.records = records.len() as u64;
        let mut batch = Vec::new();
        let reject = |run: &mut Run, n: u64, error: String| {
            run.rejected += 1;
            if run.rejections.len() < MAX_REJECTIONS {
                run.rejections.push(Rejection { record: n, error });
            }
        };
        for (i, record) in records.into_iter().enumerate() {
            let n = i as u64 + 1;
            match record
                .and_then(|r| p.mapping.map(&r))
                .and_then(|e| cityhub_import::upsert::modifier(&e).map_err(|e| e.detail))
            {
                Ok(modification) => batch.push((n, modification)),
                Err(why) => reject(run, n, why),
            }
        }
        while !batch.is_empty() {
            let rest = batch.split_off(batch.len().min(500));
            let (numbers, modifications): (Vec<u64>, Vec<_>) = std::mem::replace(&mut batch, rest).into_iter().unzip();
            let results = self.store.modify(&self.tenant, modifications).await.map_err(|e| e.to_string())?;
            for (n, result) in numbers.into_iter().zip(results) {
                match result {
                    Ok(change) if change.before == change.after => run.unchanged += 1,
                    Ok(_) => run.stored += 1,
                    Err(e) => reject(run, n, e.detail),
                }
            }
        }
        Ok(())
    }
}

/// A reqwest error's text without the URL (its query may hold an API key).
fn without_url(e: &reqwest::Error) -> String {
    let mut text = e.to_string();
    if let Some(url) = e.url() {
        text = text.replace(url.as_str(), "the source");
    }
    text
}

/// The records of an answer.
pub fn records(format: Format, body: &[u8], items: Option<&str>) -> Result<Vec<Result<Record, String>>, String> {
    let mut out = Vec::new();
    let mut push = |item: Item| {
        out.push(item.record);
        Ok(())
    };
    match format {
        Format::Json | Format::GeoJson | Format::NgsiLd => {
            let doc = serde_json::from_slice(body).map_err(|e| format!("the answer is not JSON: {e}"))?;
            return read::records_at(doc, items);
        }
        Format::Csv | Format::NdJson => read::read(format, std::io::Cursor::new(body), Cursor::default(), &mut push),
        Format::Xml => read::read_xml(body, items.unwrap_or_default(), &mut push),
    }
    .map_err(|e| match e {
        read::Ended::Broken(why) => why,
        read::Ended::Stopped => "stopped".to_owned(),
    })?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_answer_reads_as_records_in_each_format() {
        let csv = records(Format::Csv, b"id,v\n1,a\n2\n", None).unwrap();
        assert_eq!(csv.len(), 2);
        assert_eq!(csv[0].as_ref().unwrap()["v"], "a");
        assert_eq!(csv[1], Err("the row has 1 fields, the header 2".into()));
        let geo = br#"{"type": "FeatureCollection", "features": [{"type": "Feature", "properties": {"id": "p"}, "geometry": null}]}"#;
        assert_eq!(records(Format::GeoJson, geo, None).unwrap()[0].as_ref().unwrap()["id"], "p");
        let xml = b"<response><body><items><item><a>1</a></item></items></body></response>";
        assert_eq!(records(Format::Xml, xml, Some("response/body/items/item")).unwrap().len(), 1);
        assert!(records(Format::Json, b"<html>", None).unwrap_err().starts_with("the answer is not JSON"));
        assert_eq!(
            records(
                Format::Json,
                br#"{"response": {"header": {"resultCode": "30"}}}"#,
                Some("response.body.items.item")
            )
            .unwrap_err(),
            "the document has no \"response.body.items.item\""
        );
    }
}
