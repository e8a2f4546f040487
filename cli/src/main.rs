//! `cityhub`: the command line of the hub.

mod demo;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context as _;
use cityhub_http::{app, AppState, HttpConfig, NotifyConfig};
use cityhub_sqlite::SqliteStore;
use cityhub_storage::DynStore;
use clap::{Args, Parser, Subcommand};
use tracing_subscriber::EnvFilter;

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
    Serve(ServeArgs),
}

#[derive(Args)]
struct ServeArgs {
    /// Address and port to listen on. Use 0.0.0.0:1026 to serve other machines.
    #[arg(long, default_value = "127.0.0.1:1026", env = "CITYHUB_LISTEN")]
    listen: SocketAddr,

    /// Directory of the embedded store (created if missing; holds cityhub.sqlite).
    #[arg(long, default_value = "./cityhub-data", env = "CITYHUB_DATA")]
    data: PathBuf,

    /// Load the demo city data (air quality, parking, districts in Seoul, Busan, Ho Chi Minh City
    /// and Shenzhen) into the default tenant; entities that already exist are left as they are.
    #[arg(long)]
    demo: bool,

    /// Largest request body accepted, in bytes; larger requests answer 413.
    #[arg(long, default_value_t = 8 * 1024 * 1024, env = "CITYHUB_MAX_BODY_BYTES")]
    max_body_bytes: usize,

    /// Seconds to wait for a remote JSON-LD @context before answering LdContextNotAvailable.
    #[arg(long, default_value_t = 5)]
    context_timeout_secs: u64,

    /// The most instances of one attribute a temporal answer holds; beyond it the hub answers
    /// 206 Partial Content with a Content-Range to continue from.
    #[arg(long, default_value_t = 30, env = "CITYHUB_TEMPORAL_INSTANCE_LIMIT")]
    temporal_instance_limit: usize,

    /// Pending notifications one endpoint's outbox holds at most; more are dropped and counted in
    /// the subscription's `notification.droppedNotifications`.
    #[arg(long, default_value_t = 10_000, env = "CITYHUB_NOTIFICATION_OUTBOX_CAP")]
    notification_outbox_cap: usize,

    /// Log filter, as in RUST_LOG (e.g. "info", "cityhub_http=debug").
    #[arg(long, default_value = "info", env = "CITYHUB_LOG")]
    log: String,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve(args) => serve(args),
    }
}

fn serve(args: ServeArgs) -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::try_new(&args.log).context("invalid --log filter")?)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    // reqwest is built without a default TLS provider; https @contexts and notifications use ring.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(async move {
        let store: DynStore = Arc::new(
            SqliteStore::open(&args.data)
                .with_context(|| format!("cannot open the store in {}", args.data.display()))?,
        );
        if args.demo {
            let loaded = demo::load(store.as_ref()).await?;
            tracing::info!(entities = loaded, "demo city data loaded");
        }
        let config = HttpConfig {
            max_body_bytes: args.max_body_bytes,
            context_fetch_timeout: std::time::Duration::from_secs(args.context_timeout_secs),
            temporal_instance_limit: args.temporal_instance_limit.max(1),
            ..HttpConfig::default()
        };
        let notify = NotifyConfig { outbox_cap: args.notification_outbox_cap.max(1), ..NotifyConfig::default() };
        let app = app(AppState::with_notify(store, config, notify));
        let listener = tokio::net::TcpListener::bind(args.listen)
            .await
            .with_context(|| format!("cannot listen on {}", args.listen))?;
        let address = listener.local_addr()?;
        // A plain line on stdout, for people and for scripts that start the hub on port 0.
        println!("cityhub listening on http://{address}/ngsi-ld/v1");
        tracing::info!(%address, data = %args.data.display(), "cityhub is serving NGSI-LD");
        let service = axum::ServiceExt::<axum::extract::Request>::into_make_service(app);
        axum::serve(listener, service).with_graceful_shutdown(shutdown_signal()).await?;
        tracing::info!("cityhub stopped");
        anyhow::Ok(())
    })
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        if let Ok(mut s) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            s.recv().await;
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
