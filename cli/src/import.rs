//! `cityhub import FILE --type T --id COLUMN [--mapping FILE] [--hub URL | --data DIR | --store URL]`:
//! a file's records (CSV, GeoJSON, NDJSON, an NGSI-LD JSON array) upserted as entities.
//!
//! The file is streamed (`cityhub_import::read`): memory holds one batch (`--batch`), never the
//! file. Each record is mapped (`cityhub_import::Mapping`; an NGSI-LD array's items are entities
//! already), and each batch is written either
//! - to a running hub (`--hub`): the batch's entities are read back first
//!   (`GET /entities?id=...`) and only the attributes that differ are sent, with
//!   `POST /entityOperations/upsert?options=update`; or
//! - into a stopped hub's store (`--data` or `--store`) through `Store::modify`, the NGSI-LD API's
//!   own write path (history, journal for subscriptions), with `cityhub_import::upsert`'s modifier.
//!
//! Either way an unchanged value writes nothing and records no history, so importing the same
//! file twice changes nothing. After every committed batch a checkpoint (the cursor past the
//! batch's last record, and the counts) is written atomically beside the file (`--checkpoint`);
//! an interrupted import run again resumes there (records of a batch committed but not yet
//! checkpointed are written again, as unchanged: nothing is stored twice). `--restart` ignores a
//! checkpoint; a finished import removes it.
//!
//! Rows that cannot be mapped, and entities the hub or the store refuses, go to `--report` (one
//! JSON object per line: `line`, `id`, `error`). Progress: a bar with rate and ETA on a terminal,
//! else a plain line every two seconds. Exit codes: 0 every record stored or unchanged, 3 done
//! with rejected records (see the report), 1 stopped by an error (run again to resume), 2 usage.

use std::fs::File;
use std::io::{IsTerminal, Write as _};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use cityhub_import::read::{self, Cursor, Ended, Format, Item, Stop};
use cityhub_import::Mapping;
use cityhub_postgres::PostgresStore;
use cityhub_sqlite::SqliteStore;
use cityhub_storage::DynStore;
use clap::Args;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

#[derive(Args)]
pub struct ImportArgs {
    /// The file to import: CSV (a header row), GeoJSON (a FeatureCollection), NDJSON (one JSON
    /// object a line) or an NGSI-LD JSON array (.json).
    file: Option<PathBuf>,

    /// The file's format, when its extension does not tell: csv, geojson, ndjson or ngsild.
    #[arg(long)]
    format: Option<String>,

    /// The entity type of every record (overrides the mapping's).
    #[arg(long = "type")]
    entity_type: Option<String>,

    /// The column (or dotted path) of the entity id (overrides the mapping's); an id that is not
    /// a URI gets the prefix urn:ngsi-ld:<type>:.
    #[arg(long)]
    id: Option<String>,

    /// A mapping file (JSON or TOML): id, type, attributes with their NGSI-LD type, value type and
    /// unit, observedAt, location. Without one, every column becomes a Property.
    #[arg(long)]
    mapping: Option<PathBuf>,

    /// Write to this running hub (its base URL, e.g. http://127.0.0.1:1026).
    #[arg(long, conflicts_with_all = ["data", "store"])]
    hub: Option<String>,

    /// Write into the store of a stopped hub: its --data directory.
    #[arg(long, conflicts_with = "store")]
    data: Option<PathBuf>,

    /// Write into a PostgreSQL store: postgres://USER[:PASSWORD]@HOST[:PORT]/DB.
    #[arg(long)]
    store: Option<String>,

    /// The tenant to write in (default: the default tenant).
    #[arg(long)]
    tenant: Option<String>,

    /// Entities per batch (one upsert, one commit), 1 to 1000.
    #[arg(long, default_value_t = 500)]
    batch: usize,

    /// Where rejected records are listed, one JSON object a line: line, id, error.
    #[arg(long)]
    report: Option<PathBuf>,

    /// The checkpoint file (default: FILE.import-checkpoint beside the file).
    #[arg(long)]
    checkpoint: Option<PathBuf>,

    /// Start from the beginning even when a checkpoint says where an earlier run stopped.
    #[arg(long)]
    restart: bool,

    /// An API key for a hub that checks them (sent as X-API-Key).
    #[arg(long, env = "CITYHUB_API_KEY", hide_env_values = true)]
    api_key: Option<String>,

    /// A bearer token for a hub that checks them (sent as Authorization: Bearer).
    #[arg(long, env = "CITYHUB_TOKEN", hide_env_values = true)]
    token: Option<String>,

    /// Copy every entity of an Orion NGSIv2 broker (its base URL, e.g. http://orion:1026) instead
    /// of a file, page by page through /v2/entities.
    #[arg(long, conflicts_with = "file")]
    from_ngsiv2: Option<String>,

    /// The NGSIv2 service (Fiware-Service) to copy from.
    #[arg(long, requires = "from_ngsiv2")]
    fiware_service: Option<String>,

    /// The NGSIv2 service path (Fiware-ServicePath) to copy from.
    #[arg(long, requires = "from_ngsiv2")]
    fiware_servicepath: Option<String>,
}

impl ImportArgs {
    pub fn entity_type(&self) -> Option<&str> {
        self.entity_type.as_deref()
    }

    pub fn report(&self) -> Option<&Path> {
        self.report.as_deref()
    }

    pub fn tenant(&self) -> &str {
        self.tenant.as_deref().unwrap_or_default()
    }

    pub fn batch(&self) -> usize {
        self.batch
    }

    pub fn fiware_service(&self) -> Option<&str> {
        self.fiware_service.as_deref()
    }

    pub fn fiware_servicepath(&self) -> Option<&str> {
        self.fiware_servicepath.as_deref()
    }
}

/// How an import ended, as the process's exit code.
pub enum Outcome {
    Complete,
    Rejected,
}

impl Outcome {
    pub fn code(&self) -> i32 {
        match self {
            Outcome::Complete => 0,
            Outcome::Rejected => 3,
        }
    }
}

/// A usage error: exit code 2, as clap's.
#[derive(Debug)]
pub struct Usage(pub String);

impl std::fmt::Display for Usage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Usage {}

pub fn usage(why: impl Into<String>) -> anyhow::Error {
    anyhow::Error::new(Usage(why.into()))
}

pub fn import(args: ImportArgs) -> anyhow::Result<Outcome> {
    // `Err` only says a provider is installed already, which serves as well.
    let _ = rustls::crypto::ring::default_provider().install_default();
    if !(1..=1000).contains(&args.batch) {
        return Err(usage(format!("--batch {} is out of range: give 1 to 1000", args.batch)));
    }
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    let sink = runtime.block_on(Sink::open(&args))?;
    if let Some(url) = &args.from_ngsiv2 {
        return runtime.block_on(crate::ngsiv2::copy(&args, url, &sink));
    }
    let Some(file) = args.file.clone() else {
        return Err(usage("give the FILE to import (or --from-ngsiv2 URL)"));
    };
    let format = match &args.format {
        Some(name) => Format::parse(name)
            .filter(|f| *f != Format::Json && *f != Format::Xml)
            .ok_or_else(|| usage(format!("--format {name}: give csv, geojson, ndjson or ngsild")))?,
        None => Format::of_path(&file.to_string_lossy()).ok_or_else(|| {
            usage(format!(
                "{}: the extension does not tell the format: give --format csv, geojson, ndjson or ngsild",
                file.display()
            ))
        })?,
    };
    let mapper = Mapper::new(&args, format)?;
    let mut run = Run::start(&args, &file, format, &mapper)?;
    let input = File::open(&file).with_context(|| format!("cannot open {}", file.display()))?;
    let from = run.checkpoint.cursor;
    let mut batch: Vec<(u64, Map<String, Value>)> = Vec::with_capacity(args.batch);
    let mut fatal: Option<anyhow::Error> = None;
    let mut last = from;
    let tenant = args.tenant.clone().unwrap_or_default();
    let mut each = |item: Item| -> Result<(), Stop> {
        last = item.after;
        match item.record.and_then(|r| mapper.map(r)) {
            Ok(entity) => batch.push((item.line, entity)),
            Err(reason) => run.reject(item.line, None, &reason),
        }
        if batch.len() >= args.batch {
            if let Err(e) = runtime.block_on(run.commit(&sink, &tenant, std::mem::take(&mut batch), last)) {
                fatal = Some(e);
                return Err(Stop);
            }
        }
        Ok(())
    };
    let read = read::read(format, input, from, &mut each);
    if let Some(e) = fatal {
        run.interrupted();
        return Err(e);
    }
    if let Err(Ended::Broken(why)) = read {
        run.interrupted();
        anyhow::bail!("{}: {why}; fix the file and run again (records before it are imported)", file.display());
    }
    runtime.block_on(run.commit(&sink, &tenant, batch, last))?;
    Ok(run.finish())
}

/// What a record becomes: a mapped entity, or (an NGSI-LD array) the entity as given.
enum Mapper {
    Mapped(Box<Mapping>),
    AsGiven(Option<String>),
}

impl Mapper {
    fn new(args: &ImportArgs, format: Format) -> anyhow::Result<Mapper> {
        let given = match &args.mapping {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .with_context(|| format!("cannot read the mapping {}", path.display()))?;
                Some(Mapping::parse(&text).map_err(|e| usage(format!("{}: {e}", path.display())))?)
            }
            None => None,
        };
        if format == Format::NgsiLd && given.is_none() {
            return Ok(Mapper::AsGiven(args.entity_type.clone()));
        }
        let mapping = given.unwrap_or_default().complete(args.entity_type.as_deref(), args.id.as_deref());
        Ok(Mapper::Mapped(Box::new(mapping.map_err(usage)?)))
    }

    fn map(&self, record: cityhub_import::Record) -> Result<Map<String, Value>, String> {
        match self {
            Mapper::Mapped(m) => m.map(&record),
            Mapper::AsGiven(t) => cityhub_import::mapping::pass_through(record, t.as_deref()),
        }
    }

    /// What the checkpoint must agree on to resume.
    fn fingerprint(&self) -> String {
        match self {
            Mapper::Mapped(m) => format!("{m:?}"),
            Mapper::AsGiven(t) => format!("as given {t:?}"),
        }
    }
}

/// Where batches go.
pub enum Sink {
    Hub(Hub),
    Store(DynStore),
}

/// A running hub's batch endpoints.
pub struct Hub {
    base: String,
    client: reqwest::Client,
    api_key: Option<String>,
    token: Option<String>,
}

/// What one batch did.
#[derive(Default)]
pub struct Written {
    pub stored: u64,
    pub unchanged: u64,
    /// (line, id, reason).
    pub rejected: Vec<(u64, Option<String>, String)>,
}

impl Sink {
    async fn open(args: &ImportArgs) -> anyhow::Result<Sink> {
        if let Some(hub) = &args.hub {
            let base = hub.trim_end_matches('/').trim_end_matches("/ngsi-ld/v1").to_owned();
            if !(base.starts_with("http://") || base.starts_with("https://")) {
                return Err(usage(format!("--hub must be an http(s) URL, not {hub:?}")));
            }
            let client = outgoing_client(Duration::from_secs(60))?;
            return Ok(Sink::Hub(Hub { base, client, api_key: args.api_key.clone(), token: args.token.clone() }));
        }
        let store: DynStore = match (&args.data, &args.store) {
            (_, Some(url)) => Arc::new(
                PostgresStore::connect(url)
                    .await
                    .with_context(|| format!("cannot open the store {}", crate::redact(url)))?,
            ),
            (Some(dir), None) => {
                if !dir.join("cityhub.sqlite").is_file() {
                    return Err(usage(format!(
                        "--data {}: no hub store there (no cityhub.sqlite): give a hub's --data directory",
                        dir.display()
                    )));
                }
                Arc::new(SqliteStore::open(dir).with_context(|| {
                    format!(
                        "cannot open the store in {} (is a hub running on it? stop it, or use --hub)",
                        dir.display()
                    )
                })?)
            }
            (None, None) => return Err(usage("say where to import to: --hub URL, --data DIR or --store URL")),
        };
        Ok(Sink::Store(store))
    }

    /// Upserts a batch of `(line, entity)`; an `Err` is a failure of the whole batch (nothing of
    /// it is counted; run again to resume).
    pub async fn write(&self, tenant: &str, batch: Vec<(u64, Map<String, Value>)>) -> anyhow::Result<Written> {
        match self {
            Sink::Hub(hub) => hub.write(tenant, batch).await,
            Sink::Store(store) => write_store(store, tenant, batch).await,
        }
    }
}

async fn write_store(store: &DynStore, tenant: &str, batch: Vec<(u64, Map<String, Value>)>) -> anyhow::Result<Written> {
    let mut written = Written::default();
    let mut lines = Vec::with_capacity(batch.len());
    let mut modifications = Vec::with_capacity(batch.len());
    for (line, entity) in &batch {
        match cityhub_import::upsert::modifier(entity) {
            Ok((id, modifier)) => {
                lines.push((*line, id.clone()));
                modifications.push((id, modifier));
            }
            Err(e) => written.rejected.push((*line, entity_id(entity), e.detail)),
        }
    }
    if modifications.is_empty() {
        return Ok(written);
    }
    let results = store.modify(tenant, modifications).await.context("the store failed")?;
    for ((line, id), result) in lines.into_iter().zip(results) {
        match result {
            Ok(change) if change.before == change.after => written.unchanged += 1,
            Ok(_) => written.stored += 1,
            Err(e) => written.rejected.push((line, Some(id), e.detail)),
        }
    }
    Ok(written)
}

/// The HTTP client of the command's outgoing requests (to the hub, to an NGSIv2 broker): one
/// place to build it.
pub fn outgoing_client(timeout: Duration) -> anyhow::Result<reqwest::Client> {
    Ok(reqwest::Client::builder().timeout(timeout).build()?)
}

fn entity_id(entity: &Map<String, Value>) -> Option<String> {
    entity.get("id").and_then(Value::as_str).map(str::to_owned)
}

impl Hub {
    fn request(&self, method: reqwest::Method, path: &str, tenant: &str) -> reqwest::RequestBuilder {
        let mut request = self.client.request(method, format!("{}/ngsi-ld/v1{path}", self.base));
        if !tenant.is_empty() {
            request = request.header("NGSILD-Tenant", tenant);
        }
        if let Some(key) = &self.api_key {
            request = request.header("X-API-Key", key);
        }
        if let Some(token) = &self.token {
            request = request.bearer_auth(token);
        }
        request
    }

    /// Sends a request, retrying (with backoff, five times) what the network or a busy hub
    /// failed; answers the status and the body.
    async fn send(&self, build: impl Fn() -> reqwest::RequestBuilder) -> anyhow::Result<(u16, Value)> {
        let mut wait = Duration::from_millis(200);
        for attempt in 1..=6 {
            let failure = match build().send().await {
                Ok(response) => {
                    let status = response.status().as_u16();
                    let bytes = response.bytes().await.unwrap_or_default();
                    let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
                    if status < 500 && status != 429 {
                        return Ok((status, body));
                    }
                    format!("the hub answered {status} {}", body_detail(&body))
                }
                Err(e) => format!("the hub cannot be reached: {e}"),
            };
            if attempt == 6 {
                anyhow::bail!("{failure} (tried 6 times)");
            }
            tokio::time::sleep(wait).await;
            wait = (wait * 2).min(Duration::from_secs(5));
        }
        anyhow::bail!("unreachable")
    }

    async fn write(&self, tenant: &str, batch: Vec<(u64, Map<String, Value>)>) -> anyhow::Result<Written> {
        let mut written = Written::default();
        if batch.is_empty() {
            return Ok(written);
        }
        let held = self.held(tenant, &batch).await?;
        let mut lines: std::collections::HashMap<String, u64> = std::collections::HashMap::new();
        let mut items = Vec::new();
        for (line, entity) in batch {
            let Some(id) = entity_id(&entity) else {
                written.rejected.push((line, None, "the entity has no id".into()));
                continue;
            };
            match changed_part(entity, held.get(&id)) {
                Some(part) => {
                    lines.insert(id, line);
                    items.push(Value::Object(part));
                }
                None => written.unchanged += 1,
            }
        }
        if items.is_empty() {
            return Ok(written);
        }
        let sent = items.len() as u64;
        let body = Value::Array(items);
        let (status, answer) = self
            .send(|| {
                self.request(reqwest::Method::POST, "/entityOperations/upsert?options=update", tenant)
                    .header("Content-Type", "application/json")
                    .body(body.to_string())
            })
            .await?;
        match status {
            200..=206 => written.stored += sent,
            207 => {
                let errors = answer.get("errors").and_then(Value::as_array).cloned().unwrap_or_default();
                for e in &errors {
                    let id = e.get("entityId").and_then(Value::as_str).unwrap_or_default().to_owned();
                    let line = lines.get(&id).copied().unwrap_or(0);
                    written.rejected.push((line, Some(id), body_detail(e.get("error").unwrap_or(&Value::Null))));
                }
                written.stored += sent.saturating_sub(errors.len() as u64);
            }
            _ => anyhow::bail!("the hub refused the batch: {status} {}", body_detail(&answer)),
        }
        Ok(written)
    }

    /// The batch's entities as the hub holds them now (normalized, in the core @context), by id.
    async fn held(
        &self,
        tenant: &str,
        batch: &[(u64, Map<String, Value>)],
    ) -> anyhow::Result<std::collections::HashMap<String, Map<String, Value>>> {
        let mut ids: Vec<String> = batch.iter().filter_map(|(_, e)| entity_id(e)).collect();
        ids.sort();
        ids.dedup();
        let mut held = std::collections::HashMap::new();
        // Ids with a comma cannot be listed in `id=`: they are upserted without comparison.
        ids.retain(|id| !id.contains(','));
        if ids.is_empty() {
            return Ok(held);
        }
        let query: String = form_urlencoded::Serializer::new(String::new())
            .append_pair("id", &ids.join(","))
            .append_pair("limit", &ids.len().to_string())
            // The hub's own entities, which the upsert writes (a registered source is not asked).
            .append_pair("local", "true")
            .finish();
        let path = format!("/entities?{query}");
        let (status, answer) = self
            .send(|| self.request(reqwest::Method::GET, &path, tenant).header("Accept", "application/json"))
            .await?;
        match status {
            200 => {}
            // A tenant that does not exist yet holds nothing.
            404 if answer.get("type").and_then(Value::as_str).is_some_and(|t| t.ends_with("NonexistentTenant")) => {
                return Ok(held)
            }
            _ => anyhow::bail!("the hub refused to read the batch's entities: {status} {}", body_detail(&answer)),
        }
        for entity in answer.as_array().into_iter().flatten() {
            if let (Some(id), Some(m)) = (entity.get("id").and_then(Value::as_str), entity.as_object()) {
                held.insert(id.to_owned(), m.clone());
            }
        }
        Ok(held)
    }
}

/// What of `entity` differs from what the hub `held`: its id and type with the attributes that
/// are new or differ; None when nothing does.
fn changed_part(mut entity: Map<String, Value>, held: Option<&Map<String, Value>>) -> Option<Map<String, Value>> {
    let Some(held) = held else { return Some(entity) };
    let same_type = match (entity.get("type"), held.get("type")) {
        (Some(Value::String(t)), Some(Value::String(h))) => t == h,
        (Some(Value::String(t)), Some(Value::Array(h))) => h.iter().any(|x| x == t),
        (given, h) => given == h,
    };
    entity.retain(|name, value| matches!(name.as_str(), "id" | "type") || held.get(name) != Some(value));
    (!same_type || entity.len() > 2).then_some(entity)
}

/// A ProblemDetails' title and detail, for messages.
pub fn body_detail(body: &Value) -> String {
    let title = body.get("title").and_then(Value::as_str).unwrap_or_default();
    let detail = body.get("detail").and_then(Value::as_str).unwrap_or_default();
    match (title, detail) {
        ("", "") if body.is_null() => String::new(),
        ("", "") => body.to_string(),
        (t, "") => t.to_owned(),
        ("", d) => d.to_owned(),
        (t, d) => format!("{t}: {d}"),
    }
}

/// Where an import stands: what a checkpoint keeps.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
struct Checkpoint {
    file: String,
    size: u64,
    modified: u64,
    fingerprint: String,
    cursor: Cursor,
    stored: u64,
    unchanged: u64,
    rejected: u64,
}

/// One import run: its checkpoint, report and progress.
struct Run {
    checkpoint: Checkpoint,
    path: PathBuf,
    report: Option<File>,
    shown: u64,
    progress: Progress,
    started: Instant,
    rows_at_start: u64,
}

impl Run {
    fn start(args: &ImportArgs, file: &Path, format: Format, mapper: &Mapper) -> anyhow::Result<Run> {
        let meta = std::fs::metadata(file).with_context(|| format!("cannot read {}", file.display()))?;
        let modified = meta
            .modified()
            .ok()
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let target = match (&args.hub, &args.data, &args.store) {
            (Some(h), _, _) => format!("hub {h}"),
            (_, Some(d), _) => format!("data {}", d.display()),
            (_, _, Some(s)) => format!("store {}", crate::redact(s)),
            _ => String::new(),
        };
        let fingerprint =
            format!("{format:?} {} tenant {:?} {target}", mapper.fingerprint(), args.tenant.as_deref().unwrap_or(""));
        let fresh = Checkpoint {
            file: file.display().to_string(),
            size: meta.len(),
            modified,
            fingerprint,
            ..Checkpoint::default()
        };
        let path = args.checkpoint.clone().unwrap_or_else(|| {
            let mut name = file.as_os_str().to_owned();
            name.push(".import-checkpoint");
            PathBuf::from(name)
        });
        let mut checkpoint = fresh.clone();
        if path.exists() && !args.restart {
            let text = std::fs::read_to_string(&path).with_context(|| format!("cannot read {}", path.display()))?;
            let saved: Checkpoint = serde_json::from_str(&text).map_err(|e| {
                usage(format!("the checkpoint {} cannot be read ({e}): remove it or give --restart", path.display()))
            })?;
            let same =
                saved.size == fresh.size && saved.modified == fresh.modified && saved.fingerprint == fresh.fingerprint;
            if !same {
                return Err(usage(format!(
                    "the checkpoint {} is of another import (the file, mapping, tenant or target changed): give \
                     --restart to import from the start, or --checkpoint FILE",
                    path.display()
                )));
            }
            eprintln!(
                "resuming after {} records (line {}): {} stored, {} unchanged, {} rejected so far",
                saved.cursor.records, saved.cursor.line, saved.stored, saved.unchanged, saved.rejected
            );
            checkpoint = saved;
        }
        let resuming = checkpoint.cursor.records > 0;
        let report = match &args.report {
            Some(p) => Some(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(resuming)
                    .write(true)
                    .truncate(!resuming)
                    .open(p)
                    .with_context(|| format!("cannot write the report {}", p.display()))?,
            ),
            None => None,
        };
        let progress = Progress::new(meta.len());
        let rows_at_start = checkpoint.cursor.records;
        Ok(Run { checkpoint, path, report, shown: 0, progress, started: Instant::now(), rows_at_start })
    }

    fn reject(&mut self, line: u64, id: Option<&str>, reason: &str) {
        self.checkpoint.rejected += 1;
        match &mut self.report {
            Some(report) => {
                let _ = writeln!(report, "{}", json!({"line": line, "id": id, "error": reason}));
            }
            None if self.shown < 20 => {
                self.shown += 1;
                self.progress.println(&format!("line {line}: {reason}"));
                if self.shown == 20 {
                    self.progress.println("(more rejected records: give --report FILE to list them all)");
                }
            }
            None => {}
        }
    }

    /// Writes a batch, then the checkpoint past it.
    async fn commit(
        &mut self,
        sink: &Sink,
        tenant: &str,
        batch: Vec<(u64, Map<String, Value>)>,
        after: Cursor,
    ) -> anyhow::Result<()> {
        let written = sink.write(tenant, batch).await?;
        self.checkpoint.stored += written.stored;
        self.checkpoint.unchanged += written.unchanged;
        for (line, id, reason) in &written.rejected {
            self.reject(*line, id.as_deref(), reason);
        }
        if let Some(report) = &mut self.report {
            report.flush().context("cannot write the report")?;
        }
        self.checkpoint.cursor = after;
        self.save().context("cannot write the checkpoint")?;
        self.progress.show(&self.checkpoint, self.started, self.rows_at_start);
        Ok(())
    }

    fn save(&self) -> std::io::Result<()> {
        let mut tmp = self.path.as_os_str().to_owned();
        tmp.push(".tmp");
        let tmp = PathBuf::from(tmp);
        let mut f = File::create(&tmp)?;
        f.write_all(serde_json::to_string(&self.checkpoint).unwrap_or_default().as_bytes())?;
        f.sync_all()?;
        std::fs::rename(&tmp, &self.path)
    }

    fn interrupted(&mut self) {
        self.progress.finish();
        eprintln!(
            "stopped after {} records (line {}); the checkpoint {} resumes there: run the same command again",
            self.checkpoint.cursor.records,
            self.checkpoint.cursor.line,
            self.path.display()
        );
    }

    fn finish(mut self) -> Outcome {
        self.progress.finish();
        let _ = std::fs::remove_file(&self.path);
        let c = &self.checkpoint;
        let secs = self.started.elapsed().as_secs_f64().max(1e-3);
        let rate = (c.cursor.records - self.rows_at_start) as f64 / secs;
        println!(
            "imported {} records: {} stored, {} unchanged, {} rejected ({rate:.0} records/s)",
            c.cursor.records, c.stored, c.unchanged, c.rejected
        );
        if c.rejected > 0 {
            Outcome::Rejected
        } else {
            Outcome::Complete
        }
    }
}

/// A bar with rate and ETA on a terminal, plain lines every two seconds otherwise.
struct Progress {
    bar: Option<ProgressBar>,
    size: u64,
    last_line: Instant,
}

impl Progress {
    fn new(size: u64) -> Progress {
        let bar = std::io::stdout().is_terminal().then(|| {
            let bar = ProgressBar::with_draw_target(Some(size), ProgressDrawTarget::stdout());
            bar.set_style(
                ProgressStyle::with_template("[{bar:30}] {percent:>3}% {msg} ETA {eta}")
                    .unwrap_or_else(|_| ProgressStyle::default_bar()),
            );
            bar
        });
        Progress { bar, size, last_line: Instant::now() }
    }

    fn show(&mut self, c: &Checkpoint, started: Instant, rows_at_start: u64) {
        let secs = started.elapsed().as_secs_f64().max(1e-3);
        let rate = (c.cursor.records - rows_at_start) as f64 / secs;
        let msg = format!(
            "{} records, {rate:.0}/s ({} stored, {} unchanged, {} rejected)",
            c.cursor.records, c.stored, c.unchanged, c.rejected
        );
        match &self.bar {
            Some(bar) => {
                bar.set_position(c.cursor.byte.min(self.size));
                bar.set_message(msg);
            }
            None if self.last_line.elapsed() >= Duration::from_secs(2) => {
                self.last_line = Instant::now();
                let done = c.cursor.byte as f64 / self.size.max(1) as f64;
                let eta = if done > 0.0 { secs * (1.0 - done) / done } else { 0.0 };
                println!("import: {msg}, {:.0}% of the file, ETA {eta:.0}s", done * 100.0);
            }
            None => {}
        }
    }

    fn println(&self, line: &str) {
        match &self.bar {
            Some(bar) => bar.println(line),
            None => eprintln!("{line}"),
        }
    }

    fn finish(&mut self) {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_what_differs_from_the_hub_is_sent() {
        let entity = |v: Value| v.as_object().cloned().unwrap();
        let mine = entity(
            json!({"id": "urn:a", "type": "T", "a": {"type": "Property", "value": 1}, "b": {"type": "Property", "value": 2}}),
        );
        assert_eq!(changed_part(mine.clone(), None), Some(mine.clone()));
        let held = entity(
            json!({"id": "urn:a", "type": "T", "a": {"type": "Property", "value": 1}, "b": {"type": "Property", "value": 3}}),
        );
        assert_eq!(
            changed_part(mine.clone(), Some(&held)),
            Some(entity(json!({"id": "urn:a", "type": "T", "b": {"type": "Property", "value": 2}})))
        );
        let same = entity(
            json!({"id": "urn:a", "type": ["T", "U"], "b": {"type": "Property", "value": 2}, "a": {"type": "Property", "value": 1}, "c": {"type": "Property", "value": 0}}),
        );
        assert_eq!(changed_part(mine, Some(&same)), None, "attribute order and other attributes do not count");
    }
}
