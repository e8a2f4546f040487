//! Data flowing into the hub without code (issue 17): what arrives from devices and from older
//! FIWARE NGSIv2 deployments, turned into NGSI-LD.
//!
//! - [`ngsiv2`] (pure): an Orion NGSIv2 entity or notification → NGSI-LD entities, normalized
//!   and context-free in compact form, for the NGSIv2 intake and `cityhub import --from-ngsiv2`.
//! - [`payload`] (pure): JSON and UltraLight 2.0 device payloads → readings.
//! - [`provision`] (pure): IoT Agent service groups and devices; a reading → an NGSI-LD entity.
//! - [`registry`]: provisioning kept as store records, cached, following store events.
//! - [`agent`]: a device message → readings → batched `Store::modify` (the flow is told there).
//! - [`mqtt`], [`api`]: the southbounds (MQTT client; `/iot/json`, `/iot/d`), the provisioning
//!   API, status, dead letters and the NGSIv2 intake, on the hub's own port.
//! - [`status`]: counters per source and the bounded dead-letter list, for any way data comes in.
//!
//! **What this crate may do:** read payloads, keep provisioning as store records, and write
//! entities only through the core write path (`ngsild_core::ops` as `Store::modify` modifiers),
//! so history, subscriptions and access control apply as to any NGSI-LD write.
//! **What it may never do:** write tables directly, or decide an NGSI-LD rule of its own (the
//! expansion and the operations are `ngsild_core`'s).

#![forbid(unsafe_code)]
#![warn(clippy::unwrap_used, clippy::expect_used)]

pub mod agent;
pub mod api;
pub mod intake;
pub mod mqtt;
pub mod ngsiv2;
pub mod payload;
pub mod provision;
pub mod registry;
pub mod status;

use std::sync::Arc;

use cityhub_storage::{DynStore, StoreError};

/// Ingestion, started: the provisioning, the writer, the status book.
pub struct Ingest {
    pub registry: Arc<registry::Registry>,
    pub agent: Arc<agent::Agent>,
    pub status: Arc<status::StatusBook>,
}

/// Sources kept in the status book at most.
pub const MAX_SOURCES: usize = 100_000;
/// Dead letters kept at most.
pub const MAX_DEAD_LETTERS: usize = 1000;

impl Ingest {
    /// Loads the provisioning and starts the writer (on the current tokio runtime).
    pub async fn start(store: DynStore, limits: registry::Limits) -> Result<Arc<Ingest>, StoreError> {
        let registry = registry::Registry::open(store.clone(), limits).await?;
        let status = Arc::new(status::StatusBook::new(MAX_SOURCES, MAX_DEAD_LETTERS));
        let agent = agent::Agent::start(store, registry.clone(), status.clone());
        Ok(Arc::new(Ingest { registry, agent, status }))
    }

    /// Connects to the MQTT broker of `url` (`mqtt://HOST:PORT`) and ingests what devices publish.
    pub fn connect_mqtt(&self, url: &str) -> Result<(), String> {
        mqtt::start(self.agent.clone(), url)
    }
}

pub use api::routes;
