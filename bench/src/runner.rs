//! The run, in two phases on two fresh hubs. The first seeds the hub size after size and
//! measures every entity scenario against the hub and against its ceiling. The second loads a
//! fresh hub with nothing else going on, to measure memory and disk per entity and per temporal
//! instance, then runs the temporal scenarios on that history.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use crate::ceiling::{Canned, Ceiling};
use crate::hub::{Hub, Usage};
use crate::load::{closed_loop, open_loop, Conn, Limits, RunStats, Target};
use crate::notify::{self, NotifyResult};
use crate::scenarios::{self, size_label, Scenario};
use crate::settings::Settings;

pub struct Seeding {
    pub from: u64,
    pub to: u64,
    pub elapsed: Duration,
    pub errors: Vec<String>,
}

/// Memory and disk after seeding a fresh hub, with no other load in between.
pub struct Memory {
    pub entities: u64,
    pub seed_elapsed: Duration,
    pub rss_before: u64,
    pub rss_after: u64,
    pub disk_after: u64,
    pub wal_after: u64,
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
    /// What the hub process consumed during its closed-loop run.
    pub hub_usage: Usage,
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

    /// Hub CPU time over the closed-loop run's wall time: near the core count means CPU-bound.
    pub fn hub_cores(&self) -> f64 {
        self.hub_usage.cpu.as_secs_f64() / self.hub_closed.elapsed.as_secs_f64().max(1e-9)
    }

    pub fn hub_cpu_ms_per_request(&self) -> f64 {
        self.hub_usage.cpu.as_secs_f64() * 1000.0 / self.hub_closed.ok.max(1) as f64
    }

    pub fn hub_kib_written_per_request(&self) -> f64 {
        self.hub_usage.written as f64 / 1024.0 / self.hub_closed.ok.max(1) as f64
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
    /// The first hub's RSS at the end of its phase, and its peak.
    pub rss_under_load: Option<(u64, u64)>,
    pub memory: Option<Memory>,
    pub history: Option<HistoryLoad>,
    /// Scenarios not run, and why.
    pub not_run: Vec<(String, String)>,
    pub scenarios: Vec<ScenarioResult>,
    /// The notification scenarios.
    pub notify: Vec<NotifyResult>,
    /// Why the run stopped early, if it did.
    pub aborted: Option<String>,
    /// Readings of the hub process (RSS, disk) that failed: their figures show as 0.
    pub readings: Vec<String>,
}

impl Outcome {
    pub fn new() -> Outcome {
        Outcome {
            seedings: Vec::new(),
            rss_under_load: None,
            memory: None,
            history: None,
            not_run: scenarios::NOT_RUN.iter().map(|(n, why)| (n.to_string(), why.to_string())).collect(),
            scenarios: Vec::new(),
            notify: Vec::new(),
            aborted: None,
            readings: Vec::new(),
        }
    }

    pub fn problems(&self) -> Vec<String> {
        let mut problems: Vec<String> = self.aborted.iter().cloned().collect();
        problems.extend(self.readings.iter().cloned());
        if let Some(history) = &self.history {
            problems.extend(history.errors.iter().map(|e| format!("temporal history: {e}")));
        }
        for seeding in &self.seedings {
            problems.extend(seeding.errors.iter().map(|e| format!("seeding {}..{}: {e}", seeding.from, seeding.to)));
        }
        for scenario in &self.scenarios {
            problems.extend(scenario.problems().into_iter().map(|p| format!("{}: {p}", scenario.name)));
        }
        for scenario in &self.notify {
            problems.extend(scenario.problems().into_iter().map(|p| format!("{}: {p}", scenario.name)));
        }
        problems
    }
}

/// Seeds `from..to` with batch creates over a few connections.
pub async fn seed(hub: SocketAddr, from: u64, to: u64, connections: usize) -> Seeding {
    let (workload, calls) = scenarios::seeding(from, to);
    eprintln!("seeding entities {from}..{to} in {calls} batches");
    let started = Instant::now();
    let limits = Limits { connections, max_requests: calls, max_duration: Duration::from_secs(3600) };
    let stats = closed_loop(Target::one(hub, true), workload, limits).await;
    let mut errors = stats.error_samples.clone();
    if stats.ok != calls && errors.is_empty() {
        errors.push(format!("{} of {calls} batches answered", stats.ok));
    }
    Seeding { from, to, elapsed: started.elapsed(), errors }
}

/// Measures one scenario: setup, one probe request whose answer becomes the ceiling's, then
/// closed loop on hub and ceiling, then open loop on both at the same fraction of the hub's
/// closed-loop throughput.
pub async fn measure(hub: &Hub, scenario: Scenario, settings: &Settings) -> ScenarioResult {
    measure_on(&[hub], scenario, settings).await
}

/// [`measure`] with the load spread over several hubs (connections alternate between them);
/// setup and probe go to the first, CPU time is the sum of all of them.
pub async fn measure_on(hubs: &[&Hub], scenario: Scenario, settings: &Settings) -> ScenarioResult {
    eprintln!("scenario {}: {}", scenario.name, scenario.about);
    let outcome = measure_inner(hubs, &scenario, settings).await;
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

async fn measure_inner(hubs: &[&Hub], scenario: &Scenario, settings: &Settings) -> Result<Measured, String> {
    let first = hubs.first().ok_or("no hub to measure")?;
    let hub = first.addr;
    let mut conn = Conn::open(hub).await.map_err(|e| format!("{e:#}"))?;
    for call in &scenario.setup {
        conn.exchange(call, true).await.map_err(|why| format!("setup: {why}"))?;
    }
    let mut canned = Vec::new();
    for _ in 0..scenario.probes.max(1) {
        let probe = scenario.workload.next();
        let reply = conn.exchange(&probe, true).await.map_err(|why| format!("probe: {why}"))?;
        if !canned.iter().any(|(m, _)| *m == probe.method) {
            canned.push((probe.method.clone(), Canned::of(&reply)));
        }
    }
    drop(conn);
    let ceiling = Ceiling::start(canned, settings.max_body_bytes).map_err(|e| format!("ceiling: {e:#}"))?;
    let hub = Target { addr: hub, also: hubs.get(1).map(|h| h.addr), strict: true };
    let ceiling_target = Target::one(ceiling.addr, false);
    let workload = &scenario.workload;

    let warmup = if settings.warmup > Duration::ZERO {
        let limits = Limits { max_duration: settings.warmup, ..settings.closed };
        Some(closed_loop(hub, workload.clone(), limits).await)
    } else {
        None
    };
    let usage = || {
        hubs.iter().try_fold(Usage::default(), |sum, h| {
            h.usage().map(|u| sum.plus(u)).map_err(|e| format!("cannot read the hub's CPU time: {e:#}"))
        })
    };
    let before = usage()?;
    let mut hub_closed = closed_loop(hub, workload.clone(), settings.closed).await;
    let hub_usage = usage()?.since(before);
    if let Some(warmup) = warmup.filter(|w| w.errors > 0) {
        // A wrong answer during the warm-up is as wrong as any other.
        hub_closed.errors += warmup.errors;
        hub_closed.error_samples.extend(warmup.error_samples.into_iter().map(|e| format!("warm-up: {e}")));
    }
    let ceiling_closed = closed_loop(ceiling_target, workload.clone(), settings.closed).await;
    let rate = (hub_closed.throughput() * settings.open_fraction).max(1.0);
    let hub_open = open_loop(hub, workload.clone(), rate, settings.open).await;
    let ceiling_open = open_loop(ceiling_target, workload.clone(), rate, settings.open).await;
    Ok(Measured { hub_closed, hub_usage, ceiling_closed, hub_open, ceiling_open })
}

/// A scenario for a store of this many seeded entities.
type MakeScenario = fn(u64) -> Scenario;

/// The first phase: seeds size after size, measuring the queries at each size, then the other
/// entity scenarios at the largest size.
pub async fn entity_phase(hub: &Hub, settings: &Settings, outcome: &mut Outcome) {
    let mut seeded = 0;
    for &size in &settings.sizes {
        let seeding = seed(hub.addr, seeded, size, settings.seed_connections).await;
        let failed = !seeding.errors.is_empty();
        eprintln!("  seeded {} entities in {:.1} s", size - seeded, seeding.elapsed.as_secs_f64());
        outcome.seedings.push(seeding);
        if failed {
            outcome.aborted =
                Some(format!("seeding to {} entities failed; the scenarios were not run", size_label(size)));
            return;
        }
        seeded = size;
        if settings.wants("query-props") {
            outcome.scenarios.push(measure(hub, scenarios::query_props(seeded), settings).await);
        }
        if settings.wants("query-rel") {
            outcome.scenarios.push(measure(hub, scenarios::query_rel(seeded), settings).await);
        }
    }
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
            outcome.scenarios.push(measure(hub, make(seeded), settings).await);
        }
    }
    let rss = reading("RSS", hub.rss(), &mut outcome.readings);
    let peak = reading("peak RSS", hub.peak_rss(), &mut outcome.readings);
    outcome.rss_under_load = Some((rss, peak));
    // Last: from here on the hub journals every change of the default tenant.
    if settings.wants(notify::FAMILY) {
        outcome.notify = notify::run(hub, settings, seeded).await;
    }
}

/// The families measured on the second, fresh hub; all others but [`TWO_HUBS`] belong to the first.
const FRESH_FAMILIES: [&str; 3] = ["memory", "temporal-aggregate", "temporal-append"];

/// The family of one hub against two hubs on one database (PostgreSQL only), on fresh hubs.
pub const TWO_HUBS: &str = "two-hubs";
/// Its scenarios: the same mixed load on one hub, then spread over two.
pub const ONE_HUB_MIXED: &str = "mixed-1-hub";
pub const TWO_HUBS_MIXED: &str = "mixed-2-hubs";

/// Whether the first phase has anything to do.
pub fn wants_entity_phase(settings: &Settings) -> bool {
    scenarios::FAMILIES.iter().filter(|f| !FRESH_FAMILIES.contains(f) && **f != TWO_HUBS).any(|f| settings.wants(f))
}

/// The phase of two hubs on one database: seeds the largest size through the first, then
/// measures the mixed load on the first alone and over both.
pub async fn two_hubs_phase(a: &Hub, b: &Hub, settings: &Settings, outcome: &mut Outcome) {
    let entities = *settings.sizes.last().expect("sizes are checked");
    let seeding = seed(a.addr, 0, entities, settings.seed_connections).await;
    eprintln!("  seeded {entities} entities through the first hub in {:.1} s", seeding.elapsed.as_secs_f64());
    if let Some(e) = seeding.errors.first() {
        outcome.aborted = Some(format!("seeding the two-hub database failed: {e}"));
        return;
    }
    outcome.scenarios.push(measure_on(&[a], scenarios::mixed(entities, ONE_HUB_MIXED), settings).await);
    outcome.scenarios.push(measure_on(&[a, b], scenarios::mixed(entities, TWO_HUBS_MIXED), settings).await);
}

/// Whether the second phase has anything to do.
pub fn wants_fresh_phase(settings: &Settings) -> bool {
    FRESH_FAMILIES.iter().any(|f| settings.wants(f))
}

/// The second phase, on a fresh hub: memory and disk per entity after seeding the largest size,
/// then, when the hub has a temporal API, per instance after loading the history, and the
/// temporal scenarios.
pub async fn fresh_phase(hub: &Hub, settings: &Settings, outcome: &mut Outcome) {
    let entities = *settings.sizes.last().expect("sizes are checked");
    let rss_before = reading("RSS", hub.rss(), &mut outcome.readings);
    let seeding = seed(hub.addr, 0, entities, settings.seed_connections).await;
    eprintln!("  seeded {entities} entities in {:.1} s", seeding.elapsed.as_secs_f64());
    if let Some(e) = seeding.errors.first() {
        outcome.aborted = Some(format!("seeding the fresh hub failed: {e}"));
        return;
    }
    outcome.memory = Some(Memory {
        entities,
        seed_elapsed: seeding.elapsed,
        rss_before,
        rss_after: reading("RSS", hub.rss(), &mut outcome.readings),
        disk_after: reading("disk use", hub.disk_bytes(), &mut outcome.readings),
        wal_after: reading("WAL size", hub.wal_bytes(), &mut outcome.readings),
    });
    if settings.wants("temporal-aggregate") || settings.wants("temporal-append") {
        temporal(hub, settings, entities, outcome).await;
    }
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
        let history = load_history(hub, settings, &mut outcome.readings).await;
        let loaded = history.errors.is_empty();
        outcome.history = Some(history);
        if loaded {
            let scenario = scenarios::temporal_aggregate(settings.history_per_entity);
            outcome.scenarios.push(measure(hub, scenario, settings).await);
        }
    }
    if settings.wants("temporal-append") {
        outcome.scenarios.push(measure(hub, scenarios::temporal_append(seeded), settings).await);
    }
}

async fn load_history(hub: &Hub, settings: &Settings, readings: &mut Vec<String>) -> HistoryLoad {
    let per_entity = settings.history_per_entity;
    let instances = per_entity * scenarios::HISTORY_ENTITIES;
    eprintln!("loading a temporal history of {instances} instances");
    let rss_before = reading("RSS", hub.rss(), readings);
    let disk_before = reading("disk use", hub.disk_bytes(), readings);
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
        let stats = closed_loop(Target::one(hub.addr, true), appends, limits).await;
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
        rss_after: reading("RSS", hub.rss(), readings),
        disk_before,
        disk_after: reading("disk use", hub.disk_bytes(), readings),
        errors,
    }
}

/// A reading of the hub process, or 0 with the failure kept among the run's problems.
fn reading(what: &str, value: anyhow::Result<u64>, problems: &mut Vec<String>) -> u64 {
    value.unwrap_or_else(|e| {
        problems.push(format!("cannot read the hub's {what}: {e:#}"));
        0
    })
}
