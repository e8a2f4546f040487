//! `cityhub`: the command line of the hub.

#![forbid(unsafe_code)]
#![warn(clippy::unwrap_used, clippy::expect_used)]

mod access;
mod auth;
mod backup;
mod catalog;
mod config;
mod demo;
mod guard;
mod import;
mod ledger;
mod migrate;
mod ngsiv2;
mod ops;
mod sink;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context as _;
use cityhub_http::{AppState, ContextLimits, HttpConfig, NotifyConfig};
use cityhub_postgres::PostgresStore;
use cityhub_sqlite::SqliteStore;
use cityhub_storage::DynStore;
use clap::{Args, Parser, Subcommand};

/// glibc's allocator took a fifth of the hub's CPU under GET-by-id load (malloc_consolidate,
/// contended arenas between the runtime's and the blocking pool's threads); see
/// docs/benchmarks.md for the before/after.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// cityhub: an NGSI-LD smart-city data hub in one binary.
#[derive(Parser)]
#[command(version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the hub: the NGSI-LD API under /ngsi-ld/v1, a health check at /health.
    #[command(args_override_self = true)]
    Serve(Box<ServeArgs>),
    /// Register another city's hub as a context source of this one, for the given entity types:
    /// queries at this hub then also ask the peer and merge its answers.
    Federate(FederateArgs),
    /// Copy a stopped hub's whole embedded store (its --data directory) into a new PostgreSQL
    /// database, then check the copy: counts of every part and a sample compared item by item.
    Migrate(migrate::MigrateArgs),
    /// Issue, list and revoke the API keys of the hubs of a store (`serve --auth-keys`).
    Keys(auth::KeysArgs),
    /// Data models (JSON Schemas every write of their entity type is checked against).
    Models(catalog::ModelsArgs),
    /// Import a file (CSV, GeoJSON, NDJSON, an NGSI-LD JSON array) or an NGSIv2 broker's entities:
    /// streamed, upserted in batches, resumable; exit 0 all stored, 3 some rows rejected, 1 stopped
    /// by an error (run again to resume), 2 usage.
    Import(import::ImportArgs),
    /// Write one point in time of a hub's store (--data DIR or --store postgres://...) to a file
    /// with its SHA-256, while the hub runs.
    Backup(backup::BackupArgs),
    /// Put a backup file back into a new data directory or database, after checking its SHA-256.
    Restore(backup::RestoreArgs),
    /// The tamper-evident history: export a stopped hub's ledger, verify an export against a
    /// signed checkpoint (docs/ledger.md).
    Ledger(ledger::LedgerCmd),
}

#[derive(Args)]
struct FederateArgs {
    /// The peer hub's base URL (without /ngsi-ld/v1), e.g. http://busan.example:1026.
    #[arg(long)]
    peer: String,

    /// Entity types the peer is registered for (repeat, or separate with commas).
    #[arg(long = "type", value_delimiter = ',', required = true)]
    types: Vec<String>,

    /// This hub's base URL, where the registration is made.
    #[arg(long, default_value = "http://127.0.0.1:1026", env = "CITYHUB_URL")]
    hub: String,

    /// Registration mode: inclusive (merge with local data), auxiliary, exclusive or redirect.
    #[arg(long, default_value = "inclusive")]
    mode: String,

    /// The registration id (default: derived from the peer URL, so federating twice updates).
    #[arg(long)]
    id: Option<String>,

    /// The @context URL the types are expanded with (default: the core context).
    #[arg(long)]
    context: Option<String>,

    /// Tenant of this hub to register in.
    #[arg(long)]
    tenant: Option<String>,

    /// Tenant to use at the peer.
    #[arg(long)]
    peer_tenant: Option<String>,

    /// The peer's contextSourceAlias, for a peer without /info/sourceIdentity (default: the
    /// alias the peer serves there).
    #[arg(long)]
    peer_alias: Option<String>,
}

#[derive(Args)]
struct ServeArgs {
    /// A TOML file of serve settings: keys are the flags' long names (listen = "0.0.0.0:1026",
    /// auth-keys = true); an unknown key is an error. The command line wins over the file, the
    /// file over CITYHUB_* variables, those over the defaults.
    #[arg(long, env = "CITYHUB_CONFIG")]
    config: Option<PathBuf>,

    /// Address and port to listen on. Use 0.0.0.0:1026 to serve other machines.
    #[arg(long, default_value = "127.0.0.1:1026", env = "CITYHUB_LISTEN")]
    listen: SocketAddr,

    /// Directory of the embedded store (created if missing; holds cityhub.sqlite). Unused with
    /// --store.
    #[arg(long, default_value = "./cityhub-data", env = "CITYHUB_DATA")]
    data: PathBuf,

    /// A PostgreSQL (15+, with PostGIS 3) database to store everything in, instead of the
    /// embedded store in --data: postgres://USER[:PASSWORD]@HOST[:PORT]/DB. Any number of hubs
    /// may share one database.
    #[arg(long, env = "CITYHUB_STORE")]
    store: Option<String>,

    /// Load the demo city data (air quality, parking, districts in Seoul, Busan, Ho Chi Minh City
    /// and Shenzhen) into the default tenant; entities that already exist are left as they are.
    #[arg(long, env = "CITYHUB_DEMO")]
    demo: bool,

    /// Largest request body accepted, in bytes; larger requests answer 413.
    #[arg(long, default_value_t = 8 * 1024 * 1024, env = "CITYHUB_MAX_BODY_BYTES")]
    max_body_bytes: usize,

    /// Seconds to wait for a remote JSON-LD @context before answering LdContextNotAvailable.
    #[arg(long, default_value_t = 5, env = "CITYHUB_CONTEXT_TIMEOUT_SECS")]
    context_timeout_secs: u64,

    /// The largest remote @context document read, in bytes; a larger one is refused
    /// (LdContextNotAvailable) as soon as the fetch passes it.
    #[arg(long, default_value_t = 1 << 20, env = "CITYHUB_CONTEXT_MAX_BYTES")]
    context_max_bytes: usize,

    /// The most @context documents (remote, cached or hosted) one request's @context may need,
    /// through arrays and @import included.
    #[arg(long, default_value_t = 16, env = "CITYHUB_CONTEXT_MAX_DOCUMENTS")]
    context_max_documents: usize,

    /// Redirects followed when fetching one remote @context (to http(s) URLs only).
    #[arg(long, default_value_t = 5, env = "CITYHUB_CONTEXT_MAX_REDIRECTS")]
    context_max_redirects: usize,

    /// Memory for cached @context documents and the term maps built from them, in bytes (half
    /// each, weighed by estimated heap size); the least recently used are evicted past it.
    #[arg(long, default_value_t = 64 << 20, env = "CITYHUB_CONTEXT_CACHE_BYTES")]
    context_cache_bytes: u64,

    /// The most items one attrs, pick, omit, id or type list of a request may hold.
    #[arg(long, default_value_t = 1000, env = "CITYHUB_MAX_LIST_ITEMS")]
    max_list_items: usize,

    /// The most tenants the hub holds besides the default one; a write that would create one
    /// more is refused.
    #[arg(long, default_value_t = 1000, env = "CITYHUB_MAX_TENANTS")]
    max_tenants: usize,

    /// The most subscriptions (entity and csource subscriptions together) one tenant may hold.
    #[arg(long, default_value_t = 10_000, env = "CITYHUB_MAX_SUBSCRIPTIONS_PER_TENANT")]
    max_subscriptions_per_tenant: usize,

    /// The most context source registrations one tenant may hold.
    #[arg(long, default_value_t = 10_000, env = "CITYHUB_MAX_REGISTRATIONS_PER_TENANT")]
    max_registrations_per_tenant: usize,

    /// The most instances of one attribute a temporal answer holds; beyond it the hub answers
    /// 206 Partial Content with a Content-Range to continue from.
    #[arg(long, default_value_t = 30, env = "CITYHUB_TEMPORAL_INSTANCE_LIMIT")]
    temporal_instance_limit: usize,

    /// Pending notifications one endpoint's outbox holds at most; more are dropped and counted in
    /// the subscription's `notification.droppedNotifications`.
    #[arg(long, default_value_t = 10_000, env = "CITYHUB_NOTIFICATION_OUTBOX_CAP")]
    notification_outbox_cap: usize,

    /// Seconds the notifier lease lasts unrenewed. Of the hubs on one store, only the holder of
    /// the lease notifies (renewing it every third of this); when it dies, another takes over
    /// with its pending notifications after at most this long.
    #[arg(long, default_value_t = 10.0, env = "CITYHUB_NOTIFIER_LEASE_TTL")]
    notifier_lease_ttl: f64,

    /// Log filter, as in RUST_LOG (e.g. "info", "cityhub_http=debug").
    #[arg(long, default_value = "info", env = "CITYHUB_LOG")]
    log: String,

    /// Milliseconds a registered context source may take to answer a forwarded request before
    /// it is reported as failed (the other sources' answers are kept).
    #[arg(long, default_value_t = 5000, env = "CITYHUB_FORWARD_TIMEOUT_MS")]
    forward_timeout_ms: u64,

    /// This hub's contextSourceAlias (clause 5.2.40): the name it puts in the Via header of the
    /// requests it forwards and serves at /ngsi-ld/v1/info/sourceIdentity, so that peers
    /// registering it (with this contextSourceAlias) never ask it what it already asked them. An
    /// RFC 7230 token: letters, digits and !#$%&'*+-.^_`|~, no ':'. Default: the host name and
    /// the port, e.g. seoul-hub-1026.
    #[arg(long, env = "CITYHUB_ALIAS")]
    alias: Option<String>,

    #[command(flatten)]
    ui: UiArgs,

    /// Deprecated synonym of --alias (it used to take host:port, which is not an alias).
    #[arg(long, env = "CITYHUB_VIA_NAME", hide = true)]
    via_name: Option<String>,

    #[command(flatten)]
    ingest: IngestArgs,

    #[command(flatten)]
    guard: guard::GuardArgs,

    #[command(flatten)]
    auth: auth::AuthArgs,

    #[command(flatten)]
    catalog: catalog::CatalogArgs,

    #[command(flatten)]
    pollers: PollerArgs,

    #[command(flatten)]
    access: access::AccessArgs,

    #[command(flatten)]
    ops: ops::OpsArgs,

    #[command(flatten)]
    ledger: ledger::LedgerArgs,
}

/// Device ingestion (cityhub-ingest): the IoT Agent API and HTTP southbound are always served;
/// the MQTT southbound when a broker is named.
#[derive(Args)]
struct IngestArgs {
    /// An MQTT broker to ingest device measurements from, mqtt://HOST:PORT: the hub subscribes to
    /// /<apikey>/<device_id>/attrs (and /json/..., /ul/..., .../attrs/<attr>) as IoT Agents do.
    #[arg(long, env = "CITYHUB_MQTT_INGEST")]
    mqtt_ingest: Option<String>,

    /// The most IoT Agent service groups (/iot/services) one tenant may hold.
    #[arg(long, default_value_t = 1000, env = "CITYHUB_MAX_SERVICE_GROUPS_PER_TENANT")]
    max_service_groups_per_tenant: usize,

    /// The most provisioned devices (/iot/devices) one tenant may hold.
    #[arg(long, default_value_t = 100_000, env = "CITYHUB_MAX_DEVICES_PER_TENANT")]
    max_devices_per_tenant: usize,
}

/// The browser UI at `/` and the live demo city.
#[derive(Args)]
struct UiArgs {
    /// A tile server for the UI's map, as a URL template such as
    /// https://tiles.city.example/{z}/{x}/{y}.png (default: the offline base layer, a graticule
    /// and the hub's own districts).
    #[arg(long, env = "CITYHUB_BASEMAP")]
    basemap: Option<String>,

    /// With --demo: seconds between the demo city's new observations.
    #[arg(long, default_value_t = 5.0, env = "CITYHUB_DEMO_INTERVAL")]
    demo_interval: f64,
}

/// The open-data pollers (`/cityhub/v1/pollers`).
#[derive(Args)]
struct PollerArgs {
    /// The shortest interval, in seconds, a poller may be given.
    #[arg(long, default_value_t = 10.0, env = "CITYHUB_POLLER_MIN_INTERVAL")]
    poller_min_interval: f64,

    /// Run no pollers on this hub (the API still manages them; other hubs on the store run them).
    #[arg(long, env = "CITYHUB_NO_POLLERS")]
    no_pollers: bool,

    /// The largest answer, in bytes, a poller's source may give.
    #[arg(long, default_value_t = 64 << 20, env = "CITYHUB_POLLER_MAX_ANSWER_BYTES")]
    poller_max_answer_bytes: usize,
}

impl PollerArgs {
    fn config(&self, egress: &cityhub_egress::Egress) -> anyhow::Result<cityhub_pollers::PollerConfig> {
        if !(0.1..=86_400.0).contains(&self.poller_min_interval) {
            anyhow::bail!(
                "--poller-min-interval {} is out of range: give seconds from 0.1 to 86400, e.g. 10",
                self.poller_min_interval
            );
        }
        Ok(cityhub_pollers::PollerConfig {
            min_interval: std::time::Duration::from_secs_f64(self.poller_min_interval),
            run: !self.no_pollers,
            max_answer_bytes: self.poller_max_answer_bytes.max(1),
            egress: egress.clone(),
        })
    }
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse_from(config::expand(std::env::args_os().collect())?);
    match cli.command {
        Command::Serve(args) => serve(*args),
        Command::Federate(args) => federate(args),
        Command::Migrate(args) => migrate::migrate(args),
        Command::Keys(args) => auth::keys(args),
        Command::Models(args) => catalog::models(args),
        Command::Backup(args) => backup::backup(args),
        Command::Restore(args) => backup::restore(args),
        Command::Ledger(args) => ledger::run(args),
        Command::Import(args) => match import::import(args) {
            Ok(outcome) => std::process::exit(outcome.code()),
            Err(e) if e.is::<sink::Usage>() => {
                eprintln!("error: {e}");
                std::process::exit(2)
            }
            Err(e) => Err(e),
        },
    }
}

fn serve(args: ServeArgs) -> anyhow::Result<()> {
    args.ops.init_logging(&args.log)?;
    let (refresh, grace, delay) = (args.ops.refresh()?, args.ops.grace()?, args.ops.delay()?);
    let alias = match (&args.alias, &args.via_name) {
        (Some(alias), _) => alias.clone(),
        (None, Some(via_name)) => {
            tracing::warn!("--via-name (CITYHUB_VIA_NAME) is deprecated: use --alias (CITYHUB_ALIAS)");
            via_name.clone()
        }
        (None, None) => ngsild_federation::via::default_alias(&host_name(), args.listen.port()),
    };
    if let Err(why) = ngsild_federation::via::check_alias(&alias) {
        anyhow::bail!("--alias {alias:?} {why}; for example --alias seoul");
    }
    args.auth.check_safe(args.listen)?;
    // reqwest is built without a default TLS provider; https @contexts and notifications use ring.
    // `Err` only says a provider is installed already, which serves as well.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    args.ledger.apply();
    runtime.block_on(async move {
        let (store, figures): (DynStore, ops::Figures) = match &args.store {
            Some(url) => {
                let store = Arc::new(
                    PostgresStore::connect(url)
                        .await
                        .with_context(|| format!("cannot open the store {}", redact(url)))?,
                );
                (store.clone(), ops::Figures::Postgres(store))
            }
            None => {
                let store = Arc::new(
                    SqliteStore::open(&args.data)
                        .with_context(|| format!("cannot open the store in {}", args.data.display()))?,
                );
                (store.clone(), ops::Figures::Sqlite(store))
            }
        };
        ops::start_metrics(figures.clone(), refresh);
        let (store, models) = catalog::enforce_models(store);
        let identities = cityhub_auth::Auth::start(store.clone(), &args.auth.config())
            .await
            .map_err(|why| anyhow::anyhow!("cannot start checking identities: {why}"))?;
        let mode = identities.mode();
        if args.demo {
            let loaded = demo::load(store.as_ref()).await?;
            tracing::info!(entities = loaded, "demo city data loaded");
        }
        let listener = tokio::net::TcpListener::bind(args.listen)
            .await
            .with_context(|| format!("cannot listen on {}", args.listen))?;
        let address = listener.local_addr()?;
        // Port 0 binds a free port: the default alias names the one bound.
        let alias = match (&args.alias, &args.via_name, args.listen.port()) {
            (None, None, 0) => ngsild_federation::via::default_alias(&host_name(), address.port()),
            _ => alias,
        };
        let config = HttpConfig {
            max_body_bytes: args.max_body_bytes,
            context_fetch_timeout: std::time::Duration::from_secs(args.context_timeout_secs),
            temporal_instance_limit: args.temporal_instance_limit.max(1),
            alias: alias.clone(),
            forward_timeout: std::time::Duration::from_millis(args.forward_timeout_ms.max(1)),
            context_limits: ContextLimits {
                max_document_bytes: args.context_max_bytes,
                max_documents: args.context_max_documents,
                max_redirects: args.context_max_redirects,
                cache_bytes: args.context_cache_bytes,
            },
            max_list_items: args.max_list_items.max(1),
            max_tenants: args.max_tenants,
            max_subscriptions_per_tenant: args.max_subscriptions_per_tenant,
            max_registrations_per_tenant: args.max_registrations_per_tenant,
            ui: cityhub_ui_config(&args.ui),
            egress: args.guard.egress(address),
            audit_retention: args.guard.audit_retention(),
            audit_queue: args.guard.audit_queue.max(1),
            max_in_flight: args.auth.max_in_flight.max(1),
            federation_auth: args.access.federation_auth()?,
            metrics_token: args.ops.metrics_token.clone().filter(|t| !t.is_empty()),
            ..HttpConfig::default()
        };
        let notify = NotifyConfig {
            outbox_cap: args.notification_outbox_cap.max(1),
            lease_ttl: lease_ttl(args.notifier_lease_ttl)?,
            ..NotifyConfig::default()
        };
        let limits = cityhub_ingest::registry::Limits {
            groups_per_tenant: args.ingest.max_service_groups_per_tenant,
            devices_per_tenant: args.ingest.max_devices_per_tenant,
        };
        let state = AppState::with_auth(store, config, notify, identities);
        // On the state's store, so that the live channel tells measurements too.
        let ingest = cityhub_ingest::Ingest::start(state.store.clone(), limits)
            .await
            .context("cannot load the device provisioning")?;
        if let Some(url) = &args.ingest.mqtt_ingest {
            ingest.connect_mqtt(url).map_err(anyhow::Error::msg)?;
        }
        if args.demo {
            demo::live::start(state.store.clone(), demo_interval(args.ui.demo_interval)?).await?;
        }
        let pollers = args.pollers.config(&state.config.egress)?;
        cityhub_pollers::start(state.store.clone(), pollers.clone());
        let notifier = state.notifier.clone();
        let audit_stored = state.audit.stored();
        let catalog = catalog::start(&args.catalog, models)?;
        if args.demo {
            let base = args.catalog.public_url.clone().unwrap_or_else(|| format!("http://{address}"));
            let published = catalog::publish_demo_datasets(&catalog, &base).await?;
            tracing::info!(datasets = published, "demo datasets published");
        }
        let ledger = args.ledger.start(&args.data, &alias, state.store.clone(), &state.config.egress)?;
        let routes = cityhub_ingest::routes(ingest, &state)
            .merge(cityhub_transparency::routes(ledger))
            .merge(cityhub_catalog::routes::routes(catalog))
            .merge(cityhub_pollers::routes(pollers));
        let app = cityhub_http::app_with(state, routes);
        // A plain line on stdout, for people and for scripts that start the hub on port 0.
        println!("cityhub listening on http://{address}/ngsi-ld/v1");
        let stored_in = match &args.store {
            Some(url) => redact(url),
            None => args.data.display().to_string(),
        };
        tracing::info!(%address, %alias, store = %stored_in, %mode, "cityhub is serving NGSI-LD");
        // The client's address: what the audit log records and an anonymous caller's rate bucket
        // is named by.
        let service = axum::ServiceExt::<axum::extract::Request>::into_make_service_with_connect_info::<
            cityhub_http::ClientAddr,
        >(app);
        let listener = cityhub_http::GuardedListener::new(listener).with_head_timeout(args.auth.header_timeout());
        let (stopping, mut stopped) = tokio::sync::watch::channel(false);
        let signal = async move {
            shutdown_signal().await;
            cityhub_http::ops::drain();
            if !delay.is_zero() {
                tracing::info!(?delay, "stopping: /ready answers 503; still serving for --shutdown-delay");
                tokio::time::sleep(delay).await;
            }
            let _ = stopping.send(true);
        };
        let server =
            std::future::IntoFuture::into_future(axum::serve(listener, service).with_graceful_shutdown(signal));
        let outlasted = async move {
            let _ = stopped.wait_for(|s| *s).await;
            tokio::time::sleep(grace).await;
        };
        tokio::select! {
            served = server => served?,
            () = outlasted => tracing::warn!(
                grace = ?grace,
                "requests in flight outlasted --shutdown-grace: stopping without their answers"
            ),
        }
        // Another hub on the same store takes over the notifications at once.
        notifier.release().await;
        // The audit entries of the last requests, queued when they were answered: stored once
        // the state (the queue's sender) went with the server, within a bound.
        if tokio::time::timeout(std::time::Duration::from_secs(5), audit_stored).await.is_err() {
            tracing::warn!("the last audit entries were not stored within 5 s of the stop");
        }
        // Every write acknowledged is committed already; the writer finishes what it was handed.
        if let ops::Figures::Sqlite(store) = &figures {
            store.close();
        }
        tracing::info!("cityhub stopped");
        anyhow::Ok(())
    })
}

/// A store URL fit for logs and error messages: its password, if any, replaced by `***`.
fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        // The key=value form: `host=... user=... password=...`.
        let words = url.split_whitespace().map(|w| if w.starts_with("password=") { "password=***" } else { w });
        return words.collect::<Vec<_>>().join(" ");
    };
    let Some((userinfo, host)) = rest.rsplit_once('@') else {
        return url.to_owned();
    };
    match userinfo.split_once(':') {
        Some((user, _)) => format!("{scheme}://{user}:***@{host}"),
        None => url.to_owned(),
    }
}

fn cityhub_ui_config(args: &UiArgs) -> cityhub_http::UiConfig {
    cityhub_http::UiConfig { basemap: args.basemap.clone() }
}

/// `--demo-interval` as a duration: from 0.1 s to one hour.
fn demo_interval(seconds: f64) -> anyhow::Result<std::time::Duration> {
    if !(0.1..=3600.0).contains(&seconds) {
        anyhow::bail!("--demo-interval {seconds} is out of range: give seconds from 0.1 to 3600, e.g. 5");
    }
    Ok(std::time::Duration::from_secs_f64(seconds))
}

/// `--notifier-lease-ttl` as a duration: from 0.1 s to one day.
fn lease_ttl(seconds: f64) -> anyhow::Result<std::time::Duration> {
    if !(0.1..=86_400.0).contains(&seconds) {
        anyhow::bail!("--notifier-lease-ttl {seconds} is out of range: give seconds from 0.1 to 86400, e.g. 10");
    }
    Ok(std::time::Duration::from_secs_f64(seconds))
}

/// Posts (or, when it exists, updates) the registration of a peer hub at this hub.
fn federate(args: FederateArgs) -> anyhow::Result<()> {
    // `Err` only says a provider is installed already, which serves as well.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let peer = args.peer.trim_end_matches('/').trim_end_matches("/ngsi-ld/v1").to_owned();
    if !(peer.starts_with("http://") || peer.starts_with("https://")) {
        anyhow::bail!("--peer must be an http(s) URL, not {peer:?}");
    }
    let id = args.id.clone().unwrap_or_else(|| {
        let name: String = peer
            .split("://")
            .nth(1)
            .unwrap_or(&peer)
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() || c == '.' || c == '-' { c } else { '-' })
            .collect();
        format!("urn:ngsi-ld:ContextSourceRegistration:peer:{name}")
    });
    let entities: Vec<serde_json::Value> = args.types.iter().map(|t| serde_json::json!({"type": t})).collect();
    let mut registration = serde_json::json!({
        "id": id,
        "type": "ContextSourceRegistration",
        "registrationName": format!("cityhub peer {peer}"),
        "information": [{"entities": entities}],
        "endpoint": peer,
        "mode": args.mode,
        // A peer hub serves history as well: federationOps alone leaves the temporal
        // operations out (clause 4.20, Table 4.20-2).
        "operations": ["federationOps", "retrieveTemporal", "queryTemporal"],
    });
    if let Some(tenant) = &args.peer_tenant {
        registration["tenant"] = serde_json::Value::String(tenant.clone());
    }
    let hub = args.hub.trim_end_matches('/').trim_end_matches("/ngsi-ld/v1").to_owned();
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    runtime.block_on(async move {
        #[expect(
            clippy::disallowed_methods,
            reason = "a command-line client of the operator's own hub and peer, not the hub's egress"
        )]
        let client = reqwest::Client::builder().timeout(std::time::Duration::from_secs(10)).build()?;
        let with_headers = |request: reqwest::RequestBuilder| {
            let mut request = request.header("Content-Type", "application/json");
            if let Some(context) = &args.context {
                request = request.header(
                    "Link",
                    format!("<{context}>; rel=\"http://www.w3.org/ns/json-ld#context\"; type=\"application/ld+json\""),
                );
            }
            if let Some(tenant) = &args.tenant {
                request = request.header("NGSILD-Tenant", tenant);
            }
            request
        };
        // The peer's own name for itself goes into the registration, so that this hub never asks
        // it a request that already crossed it (clause 5.12).
        let alias = match &args.peer_alias {
            Some(alias) => Ok(alias.clone()),
            None => peer_alias(&client, &peer, args.peer_tenant.as_deref()).await,
        };
        match &alias {
            Ok(alias) => {
                if let Err(why) = ngsild_federation::via::check_alias(alias) {
                    anyhow::bail!("the peer's alias {alias:?} {why}; give one with --peer-alias");
                }
                registration["contextSourceAlias"] = serde_json::Value::String(alias.clone());
            }
            Err(why) => eprintln!(
                "note: {why}; registered without a contextSourceAlias (give one with --peer-alias), so \
                 requests that already crossed the peer are known by its host:port only"
            ),
        }
        let alias = alias.ok();
        let url = format!("{hub}/ngsi-ld/v1/csourceRegistrations");
        let created = with_headers(client.post(&url)).body(registration.to_string()).send().await?;
        let status = created.status();
        if status.as_u16() == 409 {
            let mut fragment = registration.clone();
            if let Some(m) = fragment.as_object_mut() {
                m.remove("id");
                m.remove("type");
            }
            let updated = with_headers(client.patch(format!("{url}/{id}"))).body(fragment.to_string()).send().await?;
            if !updated.status().is_success() {
                anyhow::bail!("the hub refused the update: {} {}", updated.status(), body_text(updated).await);
            }
            println!("updated registration {id}: {peer}{} for {}", alias_note(&alias), args.types.join(", "));
        } else if status.is_success() {
            println!("registered {id}: {peer}{} for {}", alias_note(&alias), args.types.join(", "));
        } else {
            anyhow::bail!("the hub refused the registration: {status} {}", body_text(created).await);
        }
        anyhow::Ok(())
    })
}

/// The `contextSourceAlias` a peer serves at `/info/sourceIdentity` (clause 5.15.1), or why
/// there is none to be had (unreachable, refused, not JSON, no alias).
async fn peer_alias(client: &reqwest::Client, peer: &str, tenant: Option<&str>) -> Result<String, String> {
    let url = format!("{peer}/ngsi-ld/v1/info/sourceIdentity");
    let mut request = client.get(&url).header("Accept", "application/json");
    if let Some(tenant) = tenant {
        request = request.header("NGSILD-Tenant", tenant);
    }
    let response = request.send().await.map_err(|e| format!("GET {url} failed: {e}"))?;
    let status = response.status();
    if !status.is_success() {
        return Err(format!("GET {url} answered {status}"));
    }
    let bytes = response.bytes().await.map_err(|e| format!("GET {url}: the answer could not be read: {e}"))?;
    let identity: serde_json::Value =
        serde_json::from_slice(&bytes).map_err(|e| format!("GET {url} answered no JSON: {e}"))?;
    identity
        .get("contextSourceAlias")
        .and_then(serde_json::Value::as_str)
        .map(str::to_owned)
        .ok_or_else(|| format!("GET {url} names no contextSourceAlias"))
}

/// An answer's body for an error message, or why it could not be read.
async fn body_text(response: reqwest::Response) -> String {
    response.text().await.unwrap_or_else(|e| format!("(the body could not be read: {e})"))
}

fn alias_note(alias: &Option<String>) -> String {
    alias.as_ref().map(|a| format!(" (alias {a})")).unwrap_or_default()
}

/// This machine's host name, as the kernel knows it ("" when it cannot be read).
fn host_name() -> String {
    ["/proc/sys/kernel/hostname", "/etc/hostname"]
        .iter()
        .find_map(|path| std::fs::read_to_string(path).ok().filter(|s| !s.trim().is_empty()))
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_default()
        .trim()
        .to_owned()
}

async fn shutdown_signal() {
    // A handler that cannot be installed is told and then never fires: it must not shut the
    // hub down at once.
    let ctrl_c = async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            tracing::error!(error = %e, "cannot listen for Ctrl-C; stop the hub with SIGTERM");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot listen for SIGTERM; stop the hub with Ctrl-C");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = terminate => {},
    }
    tracing::info!("shutting down: finishing requests in flight");
}

#[cfg(test)]
mod tests {
    use super::redact;

    /// Containers and systemd units set the hub up through its environment: every `serve` flag
    /// has its `CITYHUB_*` variable.
    #[test]
    fn every_serve_flag_is_settable_from_the_environment() {
        use clap::CommandFactory;
        let cli = super::Cli::command();
        let serve = cli.find_subcommand("serve").expect("a serve subcommand");
        let mut missing = Vec::new();
        for arg in serve.get_arguments() {
            let Some(long) = arg.get_long() else { continue };
            if matches!(long, "help" | "version") {
                continue;
            }
            match arg.get_env().and_then(|e| e.to_str()) {
                Some(env) => assert!(env.starts_with("CITYHUB_"), "--{long} reads {env}"),
                None => missing.push(long.to_owned()),
            }
        }
        assert!(missing.is_empty(), "serve flags without a CITYHUB_* variable: {missing:?}");
    }

    #[test]
    fn store_urls_are_logged_without_their_password() {
        assert_eq!(redact("postgres://city:s3cret@db:5433/hub"), "postgres://city:***@db:5433/hub");
        assert_eq!(redact("postgres://city@db/hub"), "postgres://city@db/hub");
        assert_eq!(redact("host=db user=city password=s3cret dbname=hub"), "host=db user=city password=*** dbname=hub");
    }
}
