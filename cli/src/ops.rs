//! The operators' flags of `serve` (`OpsArgs`): the metrics token and refresh, the log format, the
//! shutdown grace; and what `serve` runs for them: the logger, the store figures refreshed in the
//! background for `/metrics`, and the bounded graceful stop.
//!
//! A SIGTERM (or Ctrl-C) makes `/ready` answer 503, goes on serving for `--shutdown-delay`
//! seconds (0 by default: a load balancer polling `/ready` stops sending meanwhile), then stops
//! accepting connections and lets the
//! requests in flight finish — their commits included, as a write is answered only after its
//! commit — for at most `--shutdown-grace` seconds; then the notifier's lease is released, the
//! audit entries of the last requests are stored (at most 5 s more) and the embedded store's
//! writer drains its queue. Notifications need no hand-over: each is in the
//! outbox (or its change in the journal) from the commit of its write on, and a restarted hub, or
//! another on the same store, delivers them from there.

use std::time::Duration;

use clap::{Args, ValueEnum};
use tracing_subscriber::EnvFilter;

#[derive(Args)]
pub struct OpsArgs {
    /// A bearer token for Prometheus: `GET /metrics` with `Authorization: Bearer TOKEN` is served
    /// whatever the identity sources say (admins of the default tenant may read it without).
    #[arg(long, env = "CITYHUB_METRICS_TOKEN", hide_env_values = true)]
    pub metrics_token: Option<String>,

    /// Seconds between two refreshes of the store figures of /metrics (size, entities per
    /// tenant, history instances, notification queues): counts over the store's tables.
    #[arg(long, default_value_t = 30.0, env = "CITYHUB_METRICS_REFRESH")]
    pub metrics_refresh: f64,

    /// Log lines as text (for people) or json (one object a line, with the request's span:
    /// request_id, trace_id, route).
    #[arg(long, value_enum, default_value_t = LogFormat::Text, env = "CITYHUB_LOG_FORMAT")]
    pub log_format: LogFormat,

    /// On SIGTERM, seconds the requests in flight may take to finish before the hub stops
    /// anyway.
    #[arg(long, default_value_t = 30.0, env = "CITYHUB_SHUTDOWN_GRACE")]
    pub shutdown_grace: f64,

    /// On SIGTERM, seconds the hub goes on accepting requests while `/ready` answers 503, so a
    /// load balancer polling it sends no new request before the listener closes (set it to the
    /// balancer's check interval times its failure threshold); 0: close at once.
    #[arg(long, default_value_t = 0.0, env = "CITYHUB_SHUTDOWN_DELAY")]
    pub shutdown_delay: f64,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

impl OpsArgs {
    /// Installs the logger on stderr with `filter` (`--log`).
    pub fn init_logging(&self, filter: &str) -> anyhow::Result<()> {
        let filter = EnvFilter::try_new(filter).map_err(|e| anyhow::anyhow!("invalid --log filter: {e}"))?;
        let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
        match self.log_format {
            LogFormat::Text => builder.with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr())).init(),
            LogFormat::Json => builder.json().with_current_span(true).with_span_list(true).init(),
        }
        Ok(())
    }

    pub fn refresh(&self) -> anyhow::Result<Duration> {
        seconds("--metrics-refresh", self.metrics_refresh, 1.0, 86_400.0)
    }

    pub fn grace(&self) -> anyhow::Result<Duration> {
        seconds("--shutdown-grace", self.shutdown_grace, 0.0, 3600.0)
    }

    pub fn delay(&self) -> anyhow::Result<Duration> {
        seconds("--shutdown-delay", self.shutdown_delay, 0.0, 600.0)
    }
}

fn seconds(flag: &str, value: f64, min: f64, max: f64) -> anyhow::Result<Duration> {
    if !(min..=max).contains(&value) {
        anyhow::bail!("{flag} {value} is out of range: give seconds from {min} to {max}");
    }
    Ok(Duration::from_secs_f64(value))
}

/// Where the store figures come from.
#[derive(Clone)]
pub enum Figures {
    Sqlite(std::sync::Arc<cityhub_sqlite::SqliteStore>),
    Postgres(std::sync::Arc<cityhub_postgres::PostgresStore>),
}

/// Installs the recorder and keeps it fed: the store figures every `every`, the histograms
/// drained every 5 s.
pub fn start_metrics(figures: Figures, every: Duration) {
    cityhub_metrics::recorder::install();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        loop {
            tick.tick().await;
            let stats = match &figures {
                Figures::Sqlite(store) => store.stats().await,
                Figures::Postgres(store) => store.stats().await,
            };
            match stats {
                Ok(stats) => stats.publish(),
                Err(e) => tracing::warn!(error = %e, "cannot read the store figures for /metrics"),
            }
        }
    });
    tokio::spawn(async {
        let mut tick = tokio::time::interval(Duration::from_secs(5));
        loop {
            tick.tick().await;
            cityhub_metrics::recorder::upkeep();
        }
    });
}
