//! `cityhub import FILE --type T --id COLUMN [--mapping FILE] [--hub URL | --data DIR | --store URL]`:
//! a file's records (CSV, GeoJSON, NDJSON, an NGSI-LD JSON array) upserted as entities.
//!
//! The file is streamed (`cityhub_import::read`): memory holds one batch (`--batch`), never the
//! file. Each record is mapped (`cityhub_import::Mapping`; an NGSI-LD array's items are entities
//! already), and each batch is written either
//! - to a running hub (`--hub`): the batch's entities are read back first
//!   (`GET /entities?id=...`); those it does not hold are created (`POST
//!   /entityOperations/create`; one the hub committed meanwhile — a killed run's batch still in
//!   flight — answers AlreadyExists and is compared again), and of the others only the attributes
//!   that differ are sent, with `POST /entityOperations/upsert?options=update`; or
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
use std::time::{Duration, Instant};

use anyhow::Context as _;
use cityhub_import::read::{self, Cursor, Ended, Format, Item, Stop};
use cityhub_import::Mapping;
use clap::Args;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

use crate::ngsiv2::V2Source;
use crate::sink::{usage, Outcome, Sink, Target};

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

pub fn import(args: ImportArgs) -> anyhow::Result<Outcome> {
    // `Err` only says a provider is installed already, which serves as well.
    let _ = rustls::crypto::ring::default_provider().install_default();
    if !(1..=1000).contains(&args.batch) {
        return Err(usage(format!("--batch {} is out of range: give 1 to 1000", args.batch)));
    }
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    let target = Target {
        hub: args.hub.clone(),
        data: args.data.clone(),
        store: args.store.clone(),
        api_key: args.api_key.clone(),
        token: args.token.clone(),
    };
    let sink = runtime.block_on(Sink::open(&target))?;
    if let Some(url) = &args.from_ngsiv2 {
        let source = V2Source {
            url: url.clone(),
            service: args.fiware_service.clone(),
            service_path: args.fiware_servicepath.clone(),
            default_type: args.entity_type.clone(),
            report: args.report.clone(),
            tenant: args.tenant.clone().unwrap_or_default(),
            page: args.batch,
        };
        return runtime.block_on(crate::ngsiv2::copy(&source, &sink));
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
