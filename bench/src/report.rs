//! The report, in Markdown: what ran, on what, the numbers, the targets, and what did not run.

use std::fmt::Write as _;

use crate::notify::{NotifyResult, NotifyStats};
use crate::runner::{HistoryLoad, Outcome, ScenarioResult, ONE_HUB_MIXED, TWO_HUBS_MIXED};
use crate::scenarios::size_label;
use crate::settings::{Settings, Store};

/// What the report says about the run besides its results.
pub struct Header {
    pub mode: String,
    pub machine: String,
    pub hub: String,
    /// The stores the run went over, in order.
    pub stores: String,
}

const KIB: f64 = 1024.0;
const MIB: f64 = 1024.0 * 1024.0;

/// The targets of the issue: a scenario family, the least hub/ceiling ratio, and for queries the
/// largest p99 in milliseconds.
const RATIO_TARGETS: [(&str, f64, Option<f64>); 5] = [
    ("get-by-id", 0.5, None),
    ("create", 0.25, None),
    ("partial-update", 0.25, None),
    ("query-props", 0.1, Some(20.0)),
    ("query-rel", 0.1, Some(20.0)),
];
const RSS_TARGET_BYTES: f64 = 2048.0;
/// Issue 15: query p99 on PostgreSQL at most this many times SQLite's.
const PG_QUERY_P99_FACTOR: f64 = 2.0;
/// Issue 15: batch upsert on PostgreSQL at least this many entities per second.
const PG_UPSERT_ENTITIES_PER_S: f64 = 5000.0;

/// The whole report: the run's settings, then each store's pass (under a heading of its own
/// when there are several), then PostgreSQL beside SQLite.
pub fn render(header: &Header, settings: &Settings, runs: &[(Store, Outcome)]) -> String {
    let mut out = String::new();
    let w = &mut out;
    let _ = writeln!(w, "# cityhub-bench `{}`\n", header.mode);
    let _ = writeln!(w, "- machine: {} (shared: other jobs may run beside the benchmark)", header.machine);
    let _ = writeln!(w, "- hub: `{}` on 127.0.0.1, fresh temporary data directory", header.hub);
    let _ = writeln!(
        w,
        "- stores: {}{}",
        header.stores,
        if runs.iter().any(|(s, _)| s.is_postgres()) {
            " (PostgreSQL: a fresh database per hub on one cluster, same machine; the hub's CPU and RSS \
             exclude the server's; disk is `pg_database_size`, the cluster's WAL not counted)"
        } else {
            ""
        }
    );
    let _ = writeln!(
        w,
        "- load: {} keep-alive HTTP/1.1 connections from one client thread; closed loop: at most {} requests or {:.0} s per run{}; open loop: {:.0}% of the hub's closed-loop throughput, at most {} requests or {:.0} s",
        settings.closed.connections,
        settings.closed.max_requests,
        settings.closed.max_duration.as_secs_f64(),
        if settings.warmup.is_zero() { String::new() } else { format!(" after a {:.0} s warm-up", settings.warmup.as_secs_f64()) },
        settings.open_fraction * 100.0,
        settings.open.max_requests,
        settings.open.max_duration.as_secs_f64(),
    );
    let _ = writeln!(
        w,
        "- ceiling: axum on its own tokio runtime, replaying the hub's answer after parsing the request body\n"
    );
    for (store, outcome) in runs {
        if runs.len() > 1 {
            let _ = writeln!(w, "# On {}\n", store.label());
        }
        render_outcome(w, settings, outcome);
    }
    if runs.len() > 1 {
        side_by_side(w, runs);
    }
    out
}

fn render_outcome(w: &mut String, settings: &Settings, outcome: &Outcome) {
    seeding_section(w, outcome);
    closed_section(w, &outcome.scenarios);
    open_section(w, &outcome.scenarios);
    if !outcome.notify.is_empty() {
        notify_section(w, &outcome.notify);
    }
    if outcome.memory.is_some() || outcome.rss_under_load.is_some() {
        memory_section(w, outcome);
    }
    if let Some(history) = &outcome.history {
        history_section(w, history);
    }
    targets_section(w, outcome, settings);
    let _ = writeln!(w, "## Not run\n");
    if outcome.not_run.is_empty() {
        let _ = writeln!(w, "Nothing: every scenario family the hub has an API for ran.");
    }
    for (name, why) in &outcome.not_run {
        let _ = writeln!(w, "- `{name}`: not run: {why}");
    }
    let problems = outcome.problems();
    let _ = writeln!(w, "\n## Problems\n");
    if problems.is_empty() {
        let _ = writeln!(w, "None: every request of every scenario was answered with the expected status and content.");
    }
    for problem in problems {
        let _ = writeln!(w, "- {problem}");
    }
    let _ = writeln!(w);
}

/// Every scenario measured on both stores, PostgreSQL against SQLite, the targets of issue 15,
/// and one hub against two on one database.
fn side_by_side(w: &mut String, runs: &[(Store, Outcome)]) {
    let Some((_, sqlite)) = runs.iter().find(|(s, _)| *s == Store::Sqlite) else { return };
    let Some((_, pg)) = runs.iter().find(|(s, _)| s.is_postgres()) else { return };
    let find = |o: &Outcome, name: &str| -> Option<(u64, f64, f64)> {
        let s = o.scenarios.iter().find(|s| s.name == name)?;
        let m = s.outcome.as_ref().ok()?;
        Some((s.per_call, m.hub_closed.throughput(), m.hub_closed.ms(0.99)))
    };
    let _ = writeln!(w, "# PostgreSQL beside SQLite (closed loop, hub only)\n");
    let _ = writeln!(
        w,
        "| scenario | SQLite req/s | p99 ms | PostgreSQL req/s | p99 ms | req/s PG/SQLite | p99 PG/SQLite |\n|---|---:|---:|---:|---:|---:|---:|"
    );
    for s in &sqlite.scenarios {
        let (Some((_, s_rate, s_p99)), Some((_, p_rate, p_p99))) = (find(sqlite, &s.name), find(pg, &s.name)) else {
            continue;
        };
        let _ = writeln!(
            w,
            "| {} | {s_rate:.0} | {s_p99:.2} | {p_rate:.0} | {p_p99:.2} | {:.2} | {:.2} |",
            s.name,
            p_rate / s_rate.max(1e-9),
            p_p99 / s_p99.max(1e-9)
        );
    }
    let _ = writeln!(w, "\n## Targets of issue 15\n");
    let _ = writeln!(w, "| target | measured | met |\n|---|---|---|");
    let queries = sqlite
        .scenarios
        .iter()
        .filter(|s| ["query-props-", "query-rel-", "geo-near-"].iter().any(|prefix| s.name.starts_with(prefix)));
    for s in queries {
        let (Some((_, _, s_p99)), Some((_, _, p_p99))) = (find(sqlite, &s.name), find(pg, &s.name)) else {
            continue;
        };
        let met = p_p99 <= PG_QUERY_P99_FACTOR * s_p99;
        let _ = writeln!(
            w,
            "| {}: p99 on PostgreSQL ≤ {PG_QUERY_P99_FACTOR}× SQLite's | {p_p99:.2} ms vs {s_p99:.2} ms ({:.2}×) | {} |",
            s.name,
            p_p99 / s_p99.max(1e-9),
            if met { "yes" } else { "**no**" }
        );
    }
    let upsert = format!("batch-upsert-{}", crate::scenarios::BATCH);
    if let Some((per_call, rate, _)) = find(pg, &upsert) {
        let entities = rate * per_call as f64;
        let met = entities >= PG_UPSERT_ENTITIES_PER_S;
        let sqlite_entities = find(sqlite, &upsert).map(|(n, r, _)| format!(" (SQLite {:.0})", r * n as f64));
        let _ = writeln!(
            w,
            "| {upsert} on PostgreSQL ≥ {PG_UPSERT_ENTITIES_PER_S:.0} entities/s | {entities:.0} entities/s{} | {} |",
            sqlite_entities.unwrap_or_default(),
            if met { "yes" } else { "**no**" }
        );
    }
    let _ = writeln!(w);
    let one = pg.scenarios.iter().find(|s| s.name == ONE_HUB_MIXED).and_then(|s| s.outcome.as_ref().ok());
    let two = pg.scenarios.iter().find(|s| s.name == TWO_HUBS_MIXED).and_then(|s| s.outcome.as_ref().ok());
    if let (Some(one), Some(two)) = (one, two) {
        let _ = writeln!(w, "## One hub against two hubs on one PostgreSQL database\n");
        let _ = writeln!(
            w,
            "| hubs | req/s | p50 ms | p99 ms | hub cores busy | open loop p99 ms |\n|---:|---:|---:|---:|---:|---:|"
        );
        for (n, m) in [(1, one), (2, two)] {
            let _ = writeln!(
                w,
                "| {n} | {:.0} | {:.2} | {:.2} | {:.2} | {:.2} |",
                m.hub_closed.throughput(),
                m.hub_closed.ms(0.5),
                m.hub_closed.ms(0.99),
                m.hub_cores(),
                m.hub_open.ms(0.99)
            );
        }
        let _ = writeln!(
            w,
            "\nThe same load (query-props and partial-update in turn) from the same connections, spread \
             over two hubs in the second row; two hubs gain only where one hub, not the database or the \
             machine's cores, was the bound ({:.2}× the throughput).\n",
            two.hub_closed.throughput() / one.hub_closed.throughput().max(1e-9)
        );
    }
}

fn seeding_section(w: &mut String, outcome: &Outcome) {
    let _ = writeln!(w, "## Seeding (batch create, {} entities per batch)\n", crate::scenarios::BATCH);
    let _ = writeln!(w, "| entities | added | seconds | entities/s |\n|---:|---:|---:|---:|");
    for s in &outcome.seedings {
        let added = s.to - s.from;
        let secs = s.elapsed.as_secs_f64();
        let _ = writeln!(w, "| {} | {added} | {secs:.1} | {:.0} |", size_label(s.to), added as f64 / secs.max(1e-9));
    }
    let _ = writeln!(w);
}

fn closed_section(w: &mut String, scenarios: &[ScenarioResult]) {
    let _ = writeln!(w, "## Closed loop (latency in ms)\n");
    let _ = writeln!(
        w,
        "| scenario | hub req/s | p50 | p95 | p99 | ceiling req/s | p50 | p95 | p99 | hub/ceiling |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
    );
    for s in scenarios {
        match &s.outcome {
            Ok(m) => {
                let (h, c) = (&m.hub_closed, &m.ceiling_closed);
                let _ = writeln!(
                    w,
                    "| {} | {:.0} | {:.2} | {:.2} | {:.2} | {:.0} | {:.2} | {:.2} | {:.2} | {:.3} |",
                    s.name,
                    h.throughput(),
                    h.ms(0.5),
                    h.ms(0.95),
                    h.ms(0.99),
                    c.throughput(),
                    c.ms(0.5),
                    c.ms(0.95),
                    c.ms(0.99),
                    m.ratio()
                );
            }
            Err(why) => {
                let _ = writeln!(w, "| {} | failed: {} | | | | | | | | |", s.name, why.replace('|', "\\|"));
            }
        }
    }
    let _ = writeln!(w);
    let _ = writeln!(
        w,
        "What the hub process used during its closed-loop run (from /proc: user + system CPU, bytes written to storage):\n"
    );
    let _ = writeln!(
        w,
        "| scenario | hub CPU cores busy | hub CPU ms/request | KiB written/request |\n|---|---:|---:|---:|"
    );
    for s in scenarios {
        if let Ok(m) = &s.outcome {
            let _ = writeln!(
                w,
                "| {} | {:.2} | {:.3} | {:.1} |",
                s.name,
                m.hub_cores(),
                m.hub_cpu_ms_per_request(),
                m.hub_kib_written_per_request()
            );
        }
    }
    let _ = writeln!(w);
    for s in scenarios.iter().filter(|s| s.per_call > 1) {
        if let Ok(m) = &s.outcome {
            let _ = writeln!(
                w,
                "- {}: {:.0} entities/s on the hub, {:.0} on the ceiling",
                s.name,
                m.hub_closed.throughput() * s.per_call as f64,
                m.ceiling_closed.throughput() * s.per_call as f64
            );
        }
    }
    let _ = writeln!(w, "\nWhat each scenario sends:\n");
    for s in scenarios {
        let _ = writeln!(w, "- `{}`: {}", s.name, s.about);
    }
    let _ = writeln!(w);
}

fn open_section(w: &mut String, scenarios: &[ScenarioResult]) {
    let _ = writeln!(w, "## Open loop (latency in ms from each request's intended send time)\n");
    let _ = writeln!(
        w,
        "| scenario | rate req/s | hub p50 | p95 | p99 | hub p99 from actual send | ceiling p50 | p95 | p99 | answered (hub) |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
    );
    for s in scenarios {
        if let Ok(m) = &s.outcome {
            let (h, c) = (&m.hub_open, &m.ceiling_open);
            let _ = writeln!(
                w,
                "| {} | {:.0} | {:.2} | {:.2} | {:.2} | {:.2} | {:.2} | {:.2} | {:.2} | {} |",
                s.name,
                h.offered_rate.unwrap_or(0.0),
                h.ms(0.5),
                h.ms(0.95),
                h.ms(0.99),
                h.service_ms(0.99),
                c.ms(0.5),
                c.ms(0.95),
                c.ms(0.99),
                h.ok
            );
        }
    }
    let _ = writeln!(w);
}

fn notify_section(w: &mut String, results: &[NotifyResult]) {
    let _ = writeln!(w, "## Notifications (PATCH update → receipt on a local receiver; latency in ms)\n");
    let _ = writeln!(
        w,
        "| scenario | subscriptions | rate upd/s | updates | received | missing | from send p50 | p95 | p99 | from due p99 | from 204 p50 | p99 | PATCH p99 | notifications/s |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
    );
    let ms = NotifyStats::ms;
    for r in results {
        match &r.outcome {
            Ok(s) => {
                let _ = writeln!(
                    w,
                    "| {} | {} | {:.0} | {} | {} | {} | {:.2} | {:.2} | {:.2} | {:.2} | {:.2} | {:.2} | {:.2} | {:.0} |",
                    r.name,
                    r.subscriptions,
                    s.rate,
                    s.updates,
                    s.received,
                    s.missing,
                    ms(&s.from_sent, 0.5),
                    ms(&s.from_sent, 0.95),
                    ms(&s.from_sent, 0.99),
                    ms(&s.from_due, 0.99),
                    ms(&s.from_ack, 0.5),
                    ms(&s.from_ack, 0.99),
                    ms(&s.ack, 0.99),
                    s.throughput()
                );
            }
            Err(why) => {
                let _ = writeln!(
                    w,
                    "| {} | {} | failed: {} |||||||||||||",
                    r.name,
                    r.subscriptions,
                    why.replace('|', "\\|")
                );
            }
        }
    }
    let _ = writeln!(w);
    for r in results {
        let _ = writeln!(w, "- `{}`: {}; store of {} other entities", r.name, r.about, size_label(r.store));
        if let Ok(s) = &r.outcome {
            let _ = writeln!(
                w,
                "  - subscriptions created in {:.1} s; {} notifications arrived before their PATCH's 204; {} unexpected, {} duplicates",
                s.subscribe_elapsed.as_secs_f64(),
                s.before_ack,
                s.unexpected,
                s.duplicates
            );
        }
    }
    let _ = writeln!(w);
}

fn memory_section(w: &mut String, outcome: &Outcome) {
    if let Some(m) = &outcome.memory {
        let _ = writeln!(
            w,
            "## Memory and disk ({} entities of the template, fresh hub, no other load)\n",
            size_label(m.entities)
        );
        let secs = m.seed_elapsed.as_secs_f64();
        let _ = writeln!(w, "- seeded in {secs:.1} s ({:.0} entities/s)", m.entities as f64 / secs.max(1e-9));
        let _ = writeln!(
            w,
            "- hub RSS: {:.1} MiB before seeding, {:.1} MiB after: {:.0} bytes ({:.2} KiB) per entity",
            m.rss_before as f64 / MIB,
            m.rss_after as f64 / MIB,
            m.rss_per_entity(),
            m.rss_per_entity() / KIB
        );
        let _ = writeln!(
            w,
            "- data directory: {:.1} MiB: {:.0} bytes per entity ({:.1} MiB of it the WAL, not yet checkpointed)",
            m.disk_after as f64 / MIB,
            m.disk_per_entity(),
            m.wal_after as f64 / MIB
        );
    }
    if let Some((end, peak)) = outcome.rss_under_load {
        let _ = writeln!(
            w,
            "- the entity-scenario hub, at the end of its phase: RSS {:.1} MiB, peak {:.1} MiB",
            end as f64 / MIB,
            peak as f64 / MIB
        );
    }
    let _ = writeln!(w);
}

fn history_section(w: &mut String, h: &HistoryLoad) {
    let _ = writeln!(w, "## Temporal history ({} instances)\n", size_label(h.instances));
    let secs = h.elapsed.as_secs_f64();
    let _ = writeln!(
        w,
        "- loaded in {secs:.1} s ({:.0} instances/s, {} per request)",
        h.instances as f64 / secs.max(1e-9),
        crate::scenarios::HISTORY_CHUNK
    );
    let _ = writeln!(
        w,
        "- hub RSS: {:.1} MiB before, {:.1} MiB after: {:.0} bytes per instance",
        h.rss_before as f64 / MIB,
        h.rss_after as f64 / MIB,
        h.rss_per_instance()
    );
    let _ = writeln!(
        w,
        "- data directory: {:.1} MiB before, {:.1} MiB after: {:.0} bytes per instance\n",
        h.disk_before as f64 / MIB,
        h.disk_after as f64 / MIB,
        h.disk_per_instance()
    );
}

fn targets_section(w: &mut String, outcome: &Outcome, settings: &Settings) {
    let _ = writeln!(w, "## Targets of issue 6\n");
    let _ = writeln!(w, "| target | measured | met |\n|---|---|---|");
    let largest = settings.sizes.last().map(|&n| size_label(n)).unwrap_or_default();
    for (family, least_ratio, max_p99) in RATIO_TARGETS {
        let name = if max_p99.is_some() { format!("{family}-{largest}") } else { family.to_owned() };
        let Some(Ok(m)) = outcome.scenarios.iter().find(|s| s.name == name).map(|s| &s.outcome) else {
            continue;
        };
        let ratio = m.ratio();
        let p99 = m.hub_closed.ms(0.99);
        let (target, met) = match max_p99 {
            Some(limit) => {
                (format!("{name}: ≥ {least_ratio}× ceiling, p99 < {limit} ms"), ratio >= least_ratio && p99 < limit)
            }
            None => (format!("{name}: ≥ {least_ratio}× ceiling"), ratio >= least_ratio),
        };
        let _ = writeln!(w, "| {target} | {ratio:.3}×, p99 {p99:.2} ms | {} |", if met { "yes" } else { "**no**" });
    }
    if let Some(m) = &outcome.memory {
        let per = m.rss_per_entity();
        let met = per <= RSS_TARGET_BYTES;
        let _ = writeln!(
            w,
            "| RSS ≤ 2 KiB per entity ({}) | {per:.0} bytes | {} |",
            size_label(m.entities),
            if met { "yes" } else { "**no**" }
        );
    }
    let _ = writeln!(w);
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::hub::Usage;
    use crate::load::{histogram, RunStats};
    use crate::runner::Measured;

    /// A closed-loop run of `ok` requests over one second, every one taking `ms`.
    /// (hdrhistogram keeps 3 significant digits: 10 ms reads back as 10.01.)
    fn run(ok: u64, ms: u64) -> RunStats {
        let mut latency = histogram();
        latency.record_n(ms * 1000, ok).unwrap();
        RunStats {
            ok,
            errors: 0,
            error_samples: Vec::new(),
            not_sent: 0,
            elapsed: Duration::from_secs(1),
            latency: latency.clone(),
            service: latency,
            offered_rate: None,
        }
    }

    fn scenario(name: &str, per_call: u64, ok: u64, ms: u64) -> ScenarioResult {
        let measured = Measured {
            hub_closed: run(ok, ms),
            hub_usage: Usage::default(),
            ceiling_closed: run(ok * 10, 1),
            hub_open: run(ok / 2, ms),
            ceiling_open: run(ok / 2, 1),
        };
        ScenarioResult { name: name.into(), about: String::new(), per_call, outcome: Ok(measured) }
    }

    fn outcome(scenarios: Vec<ScenarioResult>) -> Outcome {
        let mut outcome = Outcome::new();
        outcome.scenarios = scenarios;
        outcome
    }

    #[test]
    fn postgresql_is_set_beside_sqlite_against_the_targets_of_issue_15() {
        let sqlite = outcome(vec![scenario("query-props-1k", 1, 1000, 10), scenario("batch-upsert-200", 200, 40, 50)]);
        let pg = outcome(vec![
            scenario("query-props-1k", 1, 400, 25),
            scenario("batch-upsert-200", 200, 30, 60),
            scenario(ONE_HUB_MIXED, 1, 500, 8),
            scenario(TWO_HUBS_MIXED, 1, 600, 7),
        ]);
        let mut w = String::new();
        side_by_side(&mut w, &[(Store::Sqlite, sqlite), (Store::Postgres(None), pg)]);
        assert!(w.contains("| query-props-1k | 1000 | 10.01 | 400 | 25.01 | 0.40 | 2.50 |"), "{w}");
        assert!(
            w.contains("| query-props-1k: p99 on PostgreSQL ≤ 2× SQLite's | 25.01 ms vs 10.01 ms (2.50×) | **no** |"),
            "{w}"
        );
        assert!(
            w.contains("| batch-upsert-200 on PostgreSQL ≥ 5000 entities/s | 6000 entities/s (SQLite 8000) | yes |"),
            "{w}"
        );
        assert!(w.contains("## One hub against two hubs on one PostgreSQL database"), "{w}");
        assert!(w.contains("| 2 | 600 | 7.00 | 7.00 |"), "{w}");
        assert!(w.contains("(1.20× the throughput)"), "{w}");
    }

    #[test]
    fn one_store_alone_has_no_comparison() {
        let mut w = String::new();
        side_by_side(&mut w, &[(Store::Sqlite, outcome(vec![scenario("get-by-id", 1, 10, 1)]))]);
        assert!(w.is_empty(), "{w}");
    }
}
