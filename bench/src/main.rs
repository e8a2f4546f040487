//! `cityhub-bench`: starts a fresh cityhub, seeds it, loads it scenario by scenario and measures
//! each scenario against a ceiling server in the same run.
//!
//! ```sh
//! cargo run --release -p cityhub-bench -- all      # the full run (minutes), release hub
//! cargo run -p cityhub-bench -- quick              # every scenario, small counts, debug hub
//! cargo run --release -p cityhub-bench -- get-by-id create --sizes 1000,10000
//! cargo run -p cityhub-bench -- quick --store postgres   # SQLite, then PostgreSQL, side by side
//! cargo run -p cityhub-bench -- mqtt-ingest --messages 20000   # MQTT ingestion vs its ceiling
//! ```

mod auth;
mod ceiling;
mod check;
mod data;
mod hub;
mod load;
mod mqtt;
mod notify;
mod report;
mod runner;
mod scenarios;
mod settings;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use clap::{Parser, ValueEnum};

use crate::load::Limits;
use crate::settings::{Settings, Store};

/// Load generator for cityhub: every scenario against the hub and against a ceiling server.
#[derive(Parser)]
#[command(version, about)]
struct Args {
    /// `all` (every scenario, stores of 1k, 10k and 100k entities), `quick` (every scenario,
    /// small counts, checks answers only), or scenario families to run with the `all` settings:
    /// query-props, query-rel, geo-near, get-by-id, partial-update, update-attrs, create,
    /// batch-create, batch-upsert, subscription-notify, memory, temporal-aggregate, temporal-append.
    /// Alone: `jwt` (GET by id without and with a bearer JWT on every request) or `overload`
    /// (2,000 connections against no in-flight bound and the default one).
    #[arg(required = true)]
    what: Vec<String>,

    /// The cityhub binary to run; when absent it is built with cargo in the chosen profile.
    #[arg(long)]
    hub_bin: Option<PathBuf>,

    /// The cargo profile to build the hub with (default: debug for `quick`, release otherwise).
    #[arg(long, value_enum)]
    profile: Option<Profile>,

    /// Connections per run.
    #[arg(long)]
    connections: Option<usize>,

    /// Longest closed-loop and open-loop run, in seconds.
    #[arg(long)]
    duration: Option<f64>,

    /// Store sizes to seed and query, comma-separated, ascending (e.g. 1000,10000).
    #[arg(long, value_delimiter = ',')]
    sizes: Vec<u64>,

    /// The open-loop rate as a fraction of the hub's closed-loop throughput.
    #[arg(long, default_value_t = 0.6)]
    open_fraction: f64,

    /// Updates per second of the notification scenarios (default: 20 for `quick`, 50 otherwise).
    #[arg(long)]
    notify_rate: Option<f64>,

    /// Instances in the history of each temporal scenario's entity (default: 1,000 for `quick`,
    /// 100,000 for `all`, 10,000 otherwise).
    #[arg(long)]
    history: Option<u64>,

    /// Where the hubs store, comma-separated: `sqlite` (the default), `postgres` (a throwaway
    /// PostgreSQL+PostGIS cluster the bench starts and stops) or `postgres://USER@HOST:PORT/DB`
    /// (a server on which the bench creates a fresh database per hub; its user must be allowed
    /// to). With PostgreSQL every scenario also runs on SQLite, first, the report sets them side
    /// by side, and the `two-hubs` family (one hub against two on one database) runs too.
    #[arg(long, value_delimiter = ',')]
    store: Vec<String>,

    /// Messages of the `mqtt-ingest` throughput run (its latency run publishes half as many).
    #[arg(long, default_value_t = 20_000)]
    messages: u64,

    /// Also write the Markdown report to this file.
    #[arg(long)]
    out: Option<PathBuf>,
}

/// The parts of a pass over one store, each on a fresh hub (and database).
enum Phase {
    Entities,
    Fresh,
    /// Two hubs on one database (PostgreSQL only).
    TwoHubs,
}

/// The stores of the run: SQLite first, then at most one PostgreSQL.
fn stores(args: &Args) -> anyhow::Result<Vec<Store>> {
    let mut stores = vec![Store::Sqlite];
    for text in &args.store {
        let store = Store::parse(text).map_err(anyhow::Error::msg)?;
        if store.is_postgres() && stores.iter().any(Store::is_postgres) {
            bail!("--store names PostgreSQL twice: give one postgres or postgres://… store");
        }
        if !stores.contains(&store) {
            stores.push(store);
        }
    }
    if let Some(Store::Postgres(Some(url))) = stores.last() {
        // cityhub_pgtest makes its databases on this server instead of a throwaway cluster.
        std::env::set_var(cityhub_pgtest::ENV_SERVER, url);
    }
    Ok(stores)
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Profile {
    Debug,
    Release,
}

/// The preset of a mode, before the flags that override it.
fn settings(args: &Args) -> anyhow::Result<Settings> {
    let quick = args.what == ["quick"];
    let full = args.what == ["all"];
    let only = if quick || full { Vec::new() } else { args.what.clone() };
    if let Some(unknown) = only.iter().find(|f| !scenarios::FAMILIES.contains(&f.as_str())) {
        bail!("unknown scenario {unknown:?}: use all, quick or some of {}", scenarios::FAMILIES.join(", "));
    }
    let connections = args.connections.unwrap_or(if quick { 4 } else { 16 });
    let (duration, max_requests, open_max) = if quick { (1.0, 40, 30) } else { (10.0, 2_000_000, 2_000_000) };
    let duration = Duration::from_secs_f64(args.duration.unwrap_or(duration));
    let sizes = match (&args.sizes[..], quick, full) {
        ([], true, _) => vec![1000],
        ([], _, true) => vec![1000, 10_000, 100_000],
        ([], _, _) => vec![1000, 10_000],
        (given, _, _) => given.to_vec(),
    };
    if sizes.is_empty() || sizes.windows(2).any(|w| w[0] >= w[1]) || sizes[0] == 0 {
        bail!("--sizes must be positive and ascending");
    }
    if !(0.0..=1.0).contains(&args.open_fraction) || args.open_fraction == 0.0 {
        bail!("--open-fraction must be in (0, 1]");
    }
    Ok(Settings {
        closed: Limits { connections, max_requests, max_duration: duration },
        warmup: if quick { Duration::ZERO } else { Duration::from_secs(1) },
        open: Limits { connections, max_requests: open_max, max_duration: duration },
        open_fraction: args.open_fraction,
        sizes,
        only,
        history_per_entity: match (args.history, quick, full) {
            (Some(n), _, _) => n,
            (None, true, _) => 1000,
            (None, _, true) => 100_000,
            (None, _, _) => 10_000,
        },
        seed_connections: 4,
        max_body_bytes: 8 * 1024 * 1024,
        notify_rate: notify_rate(args, quick)?,
        notify_drain: Duration::from_secs(if quick { 20 } else { 60 }),
    })
}

fn notify_rate(args: &Args, quick: bool) -> anyhow::Result<f64> {
    let rate = args.notify_rate.unwrap_or(if quick { 20.0 } else { 50.0 });
    if !(rate.is_finite() && rate > 0.0) {
        bail!("--notify-rate must be positive");
    }
    Ok(rate)
}

fn main() -> ExitCode {
    match run() {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("cityhub-bench: {e:#}");
            ExitCode::from(2)
        }
    }
}

/// Answers whether every scenario ran and answered correctly.
fn run() -> anyhow::Result<bool> {
    let args = Args::parse();
    if args.what == ["mqtt-ingest"] {
        return mqtt_ingest(&args);
    }
    if let [mode] = &args.what[..] {
        if mode == "jwt" || mode == "overload" {
            let profile = args.profile.unwrap_or(Profile::Release);
            let hub_bin = match &args.hub_bin {
                Some(bin) => bin.clone(),
                None => hub::build(profile == Profile::Release)?,
            };
            let client = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
            let duration = Duration::from_secs_f64(args.duration.unwrap_or(10.0));
            let text = match mode.as_str() {
                "jwt" => auth::jwt(&hub_bin, &client, args.connections.unwrap_or(16), duration)?,
                _ => auth::overload(&hub_bin, &client, args.connections.unwrap_or(2000), duration)?,
            };
            println!("{text}");
            return Ok(true);
        }
    }
    let settings = settings(&args)?;
    let stores = stores(&args)?;
    let quick = args.what == ["quick"];
    let profile = args.profile.unwrap_or(if quick { Profile::Debug } else { Profile::Release });
    let hub_bin = match &args.hub_bin {
        Some(bin) => bin.clone(),
        None => hub::build(profile == Profile::Release)?,
    };
    let started = Instant::now();
    // One client thread: the load generator takes at most one core of the machine, and the same
    // one whether it loads the hub or the ceiling.
    let client = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let mut runs: Vec<(Store, runner::Outcome)> = Vec::new();
    let mut stop_problems = Vec::new();
    for store in &stores {
        let outcome = pass(&client, &hub_bin, store, &settings, &mut stop_problems)?;
        let aborted = outcome.aborted.is_some();
        runs.push((store.clone(), outcome));
        if aborted {
            break;
        }
    }
    let header = report::Header {
        mode: args.what.join(" "),
        machine: hub::machine(),
        stores: stores.iter().map(Store::label).collect::<Vec<_>>().join(", "),
        hub: match (&args.hub_bin, profile) {
            (Some(bin), _) => format!("{} (given)", bin.display()),
            (None, Profile::Release) => format!("{} (release build)", hub_bin.display()),
            (None, Profile::Debug) => format!("{} (debug build)", hub_bin.display()),
        },
    };
    let text = report::render(&header, &settings, &runs);
    println!("{text}");
    if let Some(path) = &args.out {
        std::fs::write(path, &text).with_context(|| format!("cannot write {}", path.display()))?;
    }
    let mut problems = Vec::new();
    for (store, outcome) in &runs {
        let prefix = if runs.len() > 1 { format!("{}: ", store.label()) } else { String::new() };
        let mut found = outcome.problems();
        let temporal = !outcome.not_run.iter().any(|(name, _)| scenarios::TEMPORAL.contains(&name.as_str()));
        let expected = expected_scenarios(&settings, temporal, store);
        let ran: Vec<&str> = outcome
            .scenarios
            .iter()
            .map(|s| s.name.as_str())
            .chain(outcome.notify.iter().map(|s| s.name.as_str()))
            .collect();
        found.extend(expected.iter().filter(|e| !ran.contains(&e.as_str())).map(|e| format!("{e}: did not run")));
        problems.extend(found.into_iter().map(|p| format!("{prefix}{p}")));
    }
    if runs.len() < stores.len() {
        problems.push(format!("{} of {} stores were run", runs.len(), stores.len()));
    }
    problems.extend(stop_problems);
    eprintln!("cityhub-bench {} took {:.1} s", args.what.join(" "), started.elapsed().as_secs_f64());
    if problems.is_empty() {
        eprintln!("every scenario ran and every answer was correct");
        Ok(true)
    } else {
        eprintln!("{} problem(s):", problems.len());
        for problem in &problems {
            eprintln!("- {problem}");
        }
        Ok(false)
    }
}

/// `mqtt-ingest` (bench/src/mqtt.rs): on its own, since it needs a broker and no seeding.
fn mqtt_ingest(args: &Args) -> anyhow::Result<bool> {
    let profile = args.profile.unwrap_or(Profile::Debug);
    let hub_bin = match &args.hub_bin {
        Some(bin) => bin.clone(),
        None => hub::build(profile == Profile::Release)?,
    };
    let report = mqtt::run(&hub_bin, args.messages.max(100))?;
    let text = format!("{}\n{}", hub::machine(), report.render());
    println!("{text}");
    if let Some(path) = &args.out {
        std::fs::write(path, &text).with_context(|| format!("cannot write {}", path.display()))?;
    }
    Ok(true)
}

/// Every phase of one store's pass, each on a fresh hub and (PostgreSQL) a fresh database.
fn pass(
    client: &tokio::runtime::Runtime,
    hub_bin: &std::path::Path,
    store: &Store,
    settings: &Settings,
    stop_problems: &mut Vec<String>,
) -> anyhow::Result<runner::Outcome> {
    let mut outcome = runner::Outcome::new();
    // Each phase gets its own hub on its own data directory; the first is stopped before the
    // second starts so they never compete for the machine.
    let mut phases = Vec::new();
    if runner::wants_entity_phase(settings) {
        phases.push(Phase::Entities);
    }
    if runner::wants_fresh_phase(settings) {
        phases.push(Phase::Fresh);
    }
    if store.is_postgres() && settings.wants(runner::TWO_HUBS) {
        phases.push(Phase::TwoHubs);
    }
    for phase in phases {
        let label = match phase {
            Phase::Entities => "entity scenarios",
            Phase::Fresh => "memory and temporal",
            Phase::TwoHubs => "two hubs on one database",
        };
        let tmp =
            tempfile::Builder::new().prefix("cityhub-bench-").tempdir().context("cannot make a temporary directory")?;
        let url = store.is_postgres().then(cityhub_pgtest::database);
        let mut hub = hub::Hub::start(hub_bin, &tmp.path().join("data"), url.as_deref())?;
        eprintln!("{} {label}: hub {} (pid {}) on {}", store.label(), hub_bin.display(), hub.pid(), hub.addr);
        match phase {
            Phase::Entities => client.block_on(runner::entity_phase(&hub, settings, &mut outcome)),
            Phase::Fresh => client.block_on(runner::fresh_phase(&hub, settings, &mut outcome)),
            Phase::TwoHubs => {
                let mut second = hub::Hub::start(hub_bin, &tmp.path().join("data-b"), url.as_deref())?;
                eprintln!("  and hub (pid {}) on {}, same database", second.pid(), second.addr);
                client.block_on(runner::two_hubs_phase(&hub, &second, settings, &mut outcome));
                if let Err(e) = second.stop() {
                    stop_problems.push(format!("stopping the second hub of the {label} phase: {e:#}"));
                }
            }
        }
        if let Err(e) = hub.stop() {
            stop_problems.push(format!("stopping the {} hub of the {label} phase: {e:#}", store.label()));
        }
        if outcome.aborted.is_some() {
            break;
        }
    }
    Ok(outcome)
}

/// The scenario names a run with these settings must produce on `store`.
fn expected_scenarios(settings: &Settings, temporal: bool, store: &Store) -> Vec<String> {
    let wants = |f: &str| settings.only.is_empty() || settings.only.iter().any(|o| o == f);
    let largest = scenarios::size_label(*settings.sizes.last().expect("sizes are checked"));
    let mut names = Vec::new();
    for &size in &settings.sizes {
        for family in ["query-props", "query-rel"] {
            if wants(family) {
                names.push(format!("{family}-{}", scenarios::size_label(size)));
            }
        }
    }
    let batch = scenarios::BATCH;
    let later = [
        ("geo-near", format!("geo-near-{largest}")),
        ("get-by-id", "get-by-id".to_owned()),
        ("partial-update", "partial-update".to_owned()),
        ("update-attrs", "update-attrs".to_owned()),
        ("create", "create".to_owned()),
        ("batch-create", format!("batch-create-{batch}")),
        ("batch-upsert", format!("batch-upsert-{batch}")),
    ];
    names.extend(later.into_iter().filter(|(f, _)| wants(f)).map(|(_, name)| name));
    if wants(notify::FAMILY) {
        names.extend(notify::SUBSCRIPTIONS.iter().map(|&n| notify::scenario_name(n)));
    }
    if temporal {
        let history = scenarios::size_label(settings.history_per_entity);
        let temporal = [
            ("temporal-aggregate", format!("temporal-aggregate-{history}")),
            ("temporal-append", "temporal-append".to_owned()),
        ];
        names.extend(temporal.into_iter().filter(|(f, _)| wants(f)).map(|(_, name)| name));
    }
    if store.is_postgres() && wants(runner::TWO_HUBS) {
        names.extend([runner::ONE_HUB_MIXED.to_owned(), runner::TWO_HUBS_MIXED.to_owned()]);
    }
    names
}
