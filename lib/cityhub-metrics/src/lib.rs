//! What cityhub tells its operators: the Prometheus recorder (`recorder`), label values kept to
//! bounded sets (`labels`), the store figures refreshed in the background (`StoreStats`), and the
//! W3C trace context a request carries on to the hub's outgoing requests (`trace`).
//!
//! Every crate of the hub counts through the `metrics` facade (`metrics::counter!` and kin); this
//! crate installs the one recorder the binary renders at `/metrics`. Crates that never call
//! [`recorder::install`] (unit tests, tools) count into the facade's no-op recorder.
//!
//! **May:** hold process-wide counters, the recorder, a bounded map of recent writes' traces.
//! **May never:** take an entity id, or any text a tenant chooses without bound, as a label value
//! (`labels::Bounded` folds the rest into `other`); do I/O; decide anything about a request.

#![forbid(unsafe_code)]
#![warn(clippy::unwrap_used, clippy::expect_used)]

pub mod labels;
pub mod recorder;
pub mod trace;

/// The figures of a store that are too dear to count per scrape: a backend computes them, the
/// binary refreshes them every so often and [`StoreStats::publish`] sets the gauges.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StoreStats {
    /// The store's size on disk: the data directory's files, or the PostgreSQL database's size.
    pub bytes: u64,
    /// Entities per tenant ("" is the default tenant).
    pub entities: Vec<(String, u64)>,
    /// Temporal instances kept (an estimate on PostgreSQL, from its statistics).
    pub history_instances: u64,
    /// Pending notifications per endpoint URI.
    pub outbox: Vec<(String, u64)>,
}

/// The tenants one scrape names at most; the hub's `--max-tenants` bounds them already.
pub const MAX_TENANT_LABELS: usize = 10_000;
/// The endpoint hosts and federation peers one scrape names at most; the rest are `other`.
pub const MAX_HOST_LABELS: usize = 200;

static TENANTS: labels::Bounded = labels::Bounded::new(MAX_TENANT_LABELS);
/// Notification endpoints' hosts.
pub static ENDPOINT_HOSTS: labels::Bounded = labels::Bounded::new(MAX_HOST_LABELS);
/// Federation peers' hosts.
pub static PEER_HOSTS: labels::Bounded = labels::Bounded::new(MAX_HOST_LABELS);

impl StoreStats {
    /// Sets the store gauges: `cityhub_store_bytes`, `cityhub_entities{tenant}`,
    /// `cityhub_entities_total`, `cityhub_history_instances`,
    /// `cityhub_notification_queue_depth{endpoint_host}`.
    pub fn publish(&self) {
        metrics::gauge!("cityhub_store_bytes").set(self.bytes as f64);
        metrics::gauge!("cityhub_history_instances").set(self.history_instances as f64);
        let total: u64 = self.entities.iter().map(|(_, n)| n).sum();
        metrics::gauge!("cityhub_entities_total").set(total as f64);
        for (tenant, n) in &self.entities {
            let tenant = TENANTS.label(if tenant.is_empty() { "default" } else { tenant });
            metrics::gauge!("cityhub_entities", "tenant" => tenant).set(*n as f64);
        }
        let mut per_host: std::collections::BTreeMap<String, u64> = Default::default();
        for (endpoint, n) in &self.outbox {
            *per_host.entry(ENDPOINT_HOSTS.label(&labels::host_of(endpoint))).or_default() += n;
        }
        // A host whose queue emptied reads 0, not its last depth.
        for host in ENDPOINT_HOSTS.known() {
            let depth = per_host.get(&host).copied().unwrap_or(0);
            metrics::gauge!("cityhub_notification_queue_depth", "endpoint_host" => host).set(depth as f64);
        }
    }
}

/// Bytes of the files under `dir` (not following links; unreadable entries count 0).
pub fn dir_bytes(dir: &std::path::Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else { return 0 };
    entries
        .flatten()
        .map(|e| match e.file_type() {
            Ok(t) if t.is_dir() => dir_bytes(&e.path()),
            Ok(t) if t.is_file() => e.metadata().map(|m| m.len()).unwrap_or(0),
            _ => 0,
        })
        .sum()
}
