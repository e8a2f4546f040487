//! The run: seeds the hub size after size, measures every scenario against the hub and against
//! its ceiling, and collects what the report needs.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use crate::ceiling::{Canned, Ceiling};
use crate::hub::Hub;
use crate::load::{closed_loop, open_loop, Conn, Limits, RunStats, Target};
use crate::scenarios::{self, size_label, Scenario};

/// How hard and how long to load.
#[derive(Debug, Clone)]
pub struct Settings {
    pub closed: Limits,
    /// A closed-loop run against the hub before each measured one, not recorded: warms the
    /// hub's caches and lets the machine settle.
    pub warmup: Duration,
    pub open: Limits,
    /// The open-loop rate, as a fraction of the hub's closed-loop throughput.
    pub open_fraction: f64,
    /// Store sizes to seed and query, ascending; the last is the size of the memory measurement
    /// and of the scenarios after the queries.
    pub sizes: Vec<u64>,
    /// Scenario families to run (all when empty).
    pub only: Vec<String>,
    /// Temperature instances in the history of each of the temporal scenarios' entities.
    pub history_per_entity: u64,
    /// Connections used to seed.
    pub seed_connections: usize,
    /// The hub's default body limit, which the ceiling copies.
    pub max_body_bytes: usize,
}

impl Settings {
    fn wants(&self, family: &str) -> bool {
        self.only.is_empty() || self.only.iter().any(|f| f == family)
    }
}

pub struct Seeding {
    pub from: u64,
    pub to: u64,
    pub elapsed: Duration,
    pub errors: Vec<String>,
}

pub struct Memory {
    pub entities: u64,
    pub rss_before: u64,
    pub rss_after: u64,
    pub disk_after: u64,
    pub wal_after: u64,
    /// At the end of the whole run, after every scenario.
    pub rss_end: u64,
    pub peak_rss: u64,
}

impl Memory {
    pub fn rss_per_entity(&self) -> f64 {
        self.rss_after.saturating_sub(self.rss_before) as f64 / self.entities.max(1) as f64
    }

    pub fn disk_per_entity(&self) -> f64 {
        self.disk_after as f64 / self.entities.max(1) as f64
    }
}

/// Loading the temporal history: how long it took and what it cost in memory and on disk.
pub struct HistoryLoad {
    pub instances: u64,
    pub elapsed: Duration,
    pub rss_before: u64,
    pub rss_after: u64,
    pub disk_before: u64,
    pub disk_after: u64,
    pub errors: Vec<String>,
}

impl HistoryLoad {
    pub fn rss_per_instance(&self) -> f64 {
        self.rss_after.saturating_sub(self.rss_before) as f64 / self.instances.max(1) as f64
    }

    pub fn disk_per_instance(&self) -> f64 {
        self.disk_after.saturating_sub(self.disk_before) as f64 / self.instances.max(1) as f64
    }
}

/// The four measurements of one scenario.
pub struct Measured {
    pub hub_closed: RunStats,
    pub ceiling_closed: RunStats,
    pub hub_open: RunStats,
    pub ceiling_open: RunStats,
}

impl Measured {
    pub fn runs(&self) -> [(&'static str, &RunStats); 4] {
        [
            ("hub, closed loop", &self.hub_closed),
            ("ceiling, closed loop", &self.ceiling_closed),
            ("hub, open loop", &self.hub_open),
            ("ceiling, open loop", &self.ceiling_open),
        ]
    }

    pub fn ratio(&self) -> f64 {
        let ceiling = self.ceiling_closed.throughput();
        if ceiling > 0.0 {
            self.hub_closed.throughput() / ceiling
        } else {
            0.0
        }
    }
}

pub struct ScenarioResult {
    pub name: String,
    pub about: String,
    pub per_call: u64,
    /// The measurements, or why there are none.
    pub outcome: Result<Measured, String>,
}

impl ScenarioResult {
    /// Every problem of the scenario: a failed setup or probe, any request that went wrong, a run
    /// that answered nothing, open-loop requests never sent.
    pub fn problems(&self) -> Vec<String> {
        let measured = match &self.outcome {
            Ok(measured) => measured,
            Err(why) => return vec![why.clone()],
        };
        let mut problems = Vec::new();
        for (label, run) in measured.runs() {
            if run.errors > 0 {
                problems.push(format!("{label}: {} errors, e.g. {}", run.errors, run.error_samples.join(" | ")));
            }
            if run.ok == 0 {
                problems.push(format!("{label}: no request answered"));
            }
            if run.not_sent > 0 {
                problems
                    .push(format!("{label}: {} requests never sent (the server fell too far behind)", run.not_sent));
            }
        }
        problems
    }
}

pub struct Outcome {
    pub seedings: Vec<Seeding>,
    pub memory: Option<Memory>,
    pub history: Option<HistoryLoad>,
    /// Scenarios not run, and why.
    pub not_run: Vec<(String, String)>,
    pub scenarios: Vec<ScenarioResult>,
    /// Why the run stopped early, if it did.
    pub aborted: Option<String>,
}

impl Outcome {
    pub fn problems(&self) -> Vec<String> {
        let mut problems: Vec<String> = self.aborted.iter().cloned().collect();
        if let Some(history) = &self.history {
            problems.extend(history.errors.iter().map(|e| format!("temporal history: {e}")));
        }
        for seeding in &self.seedings {
            problems.extend(seeding.errors.iter().map(|e| format!("seeding {}..{}: {e}", seeding.from, seeding.to)));
        }
        for scenario in &self.scenarios {
            problems.extend(scenario.problems().into_iter().map(|p| format!("{}: {p}", scenario.name)));
        }
        problems
    }
}

/// Seeds `from..to` with batch creates over a few connections.
async fn seed(hub: SocketAddr, from: u64, to: u64, connections: usize) -> Seeding {
    let (workload, calls) = scenarios::seeding(from, to);
    eprintln!("seeding entities {from}..{to} in {calls} batches");
    let started = Instant::now();
    let limits = Limits { connections, max_requests: calls, max_duration: Duration::from_secs(3600) };
    let stats = closed_loop(Target { addr: hub, strict: true }, workload, limits).await;
    let mut errors = stats.error_samples.clone();
    if stats.ok != calls && errors.is_empty() {
        errors.push(format!("{} of {calls} batches answered", stats.ok));
    }
    Seeding { from, to, elapsed: started.elapsed(), errors }
}

/// Measures one scenario: setup, one probe request whose answer becomes the ceiling's, then
/// closed loop on hub and ceiling, then open loop on both at the same fraction of the hub's
/// closed-loop throughput.
pub async fn measure(hub: SocketAddr, scenario: Scenario, settings: &Settings) -> ScenarioResult {
    eprintln!("scenario {}: {}", scenario.name, scenario.about);
    let outcome = measure_inner(hub, &scenario, settings).await;
    if let Ok(m) = &outcome {
        eprintln!(
            "  hub {:.0} req/s p99 {:.2} ms; ceiling {:.0} req/s; open loop at {:.0} req/s: hub p99 {:.2} ms",
            m.hub_closed.throughput(),
            m.hub_closed.ms(0.99),
            m.ceiling_closed.throughput(),
            m.hub_open.offered_rate.unwrap_or(0.0),
            m.hub_open.ms(0.99)
        );
    }
    ScenarioResult { name: scenario.name, about: scenario.about, per_call: scenario.per_call, outcome }
}

async fn measure_inner(hub: SocketAddr, scenario: &Scenario, settings: &Settings) -> Result<Measured, String> {
    let mut conn = Conn::open(hub).await.map_err(|e| format!("{e:#}"))?;
    for call in &scenario.setup {
        conn.exchange(call, true).await.map_err(|why| format!("setup: {why}"))?;
    }
    let probe = scenario.workload.next();
    let reply = conn.exchange(&probe, true).await.map_err(|why| format!("probe: {why}"))?;
    drop(conn);
    let ceiling = Ceiling::start(Canned::of(&reply), settings.max_body_bytes).map_err(|e| format!("ceiling: {e:#}"))?;
    let hub = Target { addr: hub, strict: true };
    let ceiling_target = Target { addr: ceiling.addr, strict: false };
    let workload = &scenario.workload;

    let warmup = if settings.warmup > Duration::ZERO {
        let limits = Limits { max_duration: settings.warmup, ..settings.closed };
        Some(closed_loop(hub, workload.clone(), limits).await)
    } else {
        None
    };
    let mut hub_closed = closed_loop(hub, workload.clone(), settings.closed).await;
    if let Some(warmup) = warmup.filter(|w| w.errors > 0) {
        // A wrong answer during the warm-up is as wrong as any other.
        hub_closed.errors += warmup.errors;
        hub_closed.error_samples.extend(warmup.error_samples.into_iter().map(|e| format!("warm-up: {e}")));
    }
    let ceiling_closed = closed_loop(ceiling_target, workload.clone(), settings.closed).await;
    let rate = (hub_closed.throughput() * settings.open_fraction).max(1.0);
    let hub_open = open_loop(hub, workload.clone(), rate, settings.open).await;
    let ceiling_open = open_loop(ceiling_target, workload.clone(), rate, settings.open).await;
    Ok(Measured { hub_closed, ceiling_closed, hub_open, ceiling_open })
}

/// A scenario for a store of this many seeded entities.
type MakeScenario = fn(u64) -> Scenario;

/// The whole run against a started hub.
pub async fn run(hub: &Hub, settings: &Settings) -> Outcome {
    let mut outcome = Outcome {
        seedings: Vec::new(),
        memory: None,
        history: None,
        not_run: scenarios::NOT_RUN.iter().map(|(n, why)| (n.to_string(), why.to_string())).collect(),
        scenarios: Vec::new(),
        aborted: None,
    };
    let rss_before = hub.rss().unwrap_or(0);
    let mut seeded = 0;
    for &size in &settings.sizes {
        let seeding = seed(hub.addr, seeded, size, settings.seed_connections).await;
        let failed = !seeding.errors.is_empty();
        eprintln!("  seeded {} entities in {:.1} s", size - seeded, seeding.elapsed.as_secs_f64());
        outcome.seedings.push(seeding);
        if failed {
            outcome.aborted =
                Some(format!("seeding to {} entities failed; the scenarios were not run", size_label(size)));
            return outcome;
        }
        seeded = size;
        if settings.wants("query-props") {
            outcome.scenarios.push(measure(hub.addr, scenarios::query_props(seeded), settings).await);
        }
        if settings.wants("query-rel") {
            outcome.scenarios.push(measure(hub.addr, scenarios::query_rel(seeded), settings).await);
        }
    }
    let (rss_after, disk_after, wal_after) =
        (hub.rss().unwrap_or(0), hub.disk_bytes().unwrap_or(0), hub.wal_bytes().unwrap_or(0));

    let later: [(&str, MakeScenario); 7] = [
        ("geo-near", scenarios::geo_near),
        ("get-by-id", scenarios::get_by_id),
        ("partial-update", scenarios::partial_update),
        ("update-attrs", scenarios::update_attrs),
        ("create", |_| scenarios::create()),
        ("batch-create", |_| scenarios::batch_create()),
        ("batch-upsert", |_| scenarios::batch_upsert()),
    ];
    for (family, make) in later {
        if settings.wants(family) {
            outcome.scenarios.push(measure(hub.addr, make(seeded), settings).await);
        }
    }
    if settings.wants("temporal-aggregate") || settings.wants("temporal-append") {
        temporal(hub, settings, seeded, &mut outcome).await;
    }
    outcome.memory = Some(Memory {
        entities: seeded,
        rss_before,
        rss_after,
        disk_after,
        wal_after,
        rss_end: hub.rss().unwrap_or(0),
        peak_rss: hub.peak_rss().unwrap_or(0),
    });
    outcome
}

/// The temporal scenarios, when the hub has a temporal API: loads the history (measuring memory
/// and disk per instance), then aggregates over it and appends to the seeded entities.
async fn temporal(hub: &Hub, settings: &Settings, seeded: u64, outcome: &mut Outcome) {
    let available = match Conn::open(hub.addr).await {
        Ok(mut conn) => conn.exchange(&scenarios::temporal_probe(), true).await,
        Err(e) => Err(format!("{e:#}")),
    };
    if let Err(why) = available {
        for name in scenarios::TEMPORAL {
            outcome.not_run.push((name.to_owned(), format!("the hub has no temporal API ({why})")));
        }
        return;
    }
    if settings.wants("temporal-aggregate") {
        let history = load_history(hub, settings).await;
        let loaded = history.errors.is_empty();
        outcome.history = Some(history);
        if loaded {
            let scenario = scenarios::temporal_aggregate(settings.history_per_entity);
            outcome.scenarios.push(measure(hub.addr, scenario, settings).await);
        }
    }
    if settings.wants("temporal-append") {
        outcome.scenarios.push(measure(hub.addr, scenarios::temporal_append(seeded), settings).await);
    }
}

async fn load_history(hub: &Hub, settings: &Settings) -> HistoryLoad {
    let per_entity = settings.history_per_entity;
    let instances = per_entity * scenarios::HISTORY_ENTITIES;
    eprintln!("loading a temporal history of {instances} instances");
    let (rss_before, disk_before) = (hub.rss().unwrap_or(0), hub.disk_bytes().unwrap_or(0));
    let started = Instant::now();
    let (creates, appends, calls) = scenarios::history(per_entity);
    let mut errors = Vec::new();
    match Conn::open(hub.addr).await {
        Ok(mut conn) => {
            for call in &creates {
                if let Err(why) = conn.exchange(call, true).await {
                    errors.push(why);
                    break;
                }
            }
        }
        Err(e) => errors.push(format!("{e:#}")),
    }
    if errors.is_empty() && calls > 0 {
        let limits = Limits {
            connections: settings.seed_connections,
            max_requests: calls,
            max_duration: Duration::from_secs(3600),
        };
        let stats = closed_loop(Target { addr: hub.addr, strict: true }, appends, limits).await;
        errors.extend(stats.error_samples.iter().cloned());
        if stats.ok != calls && errors.is_empty() {
            errors.push(format!("{} of {calls} appends answered", stats.ok));
        }
    }
    let elapsed = started.elapsed();
    eprintln!("  loaded in {:.1} s", elapsed.as_secs_f64());
    HistoryLoad {
        instances,
        elapsed,
        rss_before,
        rss_after: hub.rss().unwrap_or(0),
        disk_before,
        disk_after: hub.disk_bytes().unwrap_or(0),
        errors,
    }
}
