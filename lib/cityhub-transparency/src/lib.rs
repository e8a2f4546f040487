//! The tamper-evident history's shell (issue 22): what the hub serves of its ledger and how it
//! witnesses a peer's.
//!
//! - `GET /ledger/key`: the hub's verifier key (C2SP signed-note form).
//! - `GET /ledger/checkpoint` (per tenant, `NGSILD-Tenant`): the latest signed checkpoint, kept
//!   as the tenant's `LedgerCheckpoint` record (so every hub on a store serves the same). A
//!   background task ([`checkpoints`]) signs a new one once the log has grown and the last one
//!   is `--ledger-checkpoint-secs` old or `--ledger-checkpoint-leaves` behind; a read signs
//!   one itself only when the kept one is past a bound.
//! - `GET /ledger/proof/inclusion?leaf=N&size=S` (or `instance=<instanceId>`): the audit path of
//!   a leaf; `GET /ledger/proof/consistency?from=M&to=N`. Hashes only: public like the checkpoint.
//! - `GET /ledger/leaves?from=&limit=`: the leaves themselves as NDJSON, the export's format
//!   (`cityhub ledger export`); they hold the tenant's data, so they are the admins'.
//! - `GET /ledger/witnessed?origin=O`: the last checkpoint of the hub of origin `O` this hub
//!   co-signed as its witness; `GET /ledger/witness/refusals`: the checkpoints it refused.
//!
//! The witness ([`witness`]) polls each `--witness-of URL`, checks the peer's signature (its key
//! pinned at first contact) and a consistency proof from the last checkpoint it co-signed, and
//! co-signs only then; an inconsistent checkpoint is refused, logged and kept as a refusal.
//!
//! **May:** read the ledger through `Store`, sign with the key the shell hands in, fetch peers
//! through `cityhub-egress`. **Never:** write a leaf (the backends do, in the history's
//! transaction), log or serve the signer key.

pub mod api;
pub mod checkpoints;
pub mod keys;
pub mod witness;

use std::sync::Arc;
use std::time::Duration;

use axum::routing::get;
use axum::{Extension, Router};
use cityhub_http::SharedState;
use cityhub_ledger::note::Signer;

/// What the routes and the witness share.
#[derive(Clone)]
pub struct Ledger {
    pub signer: Arc<Signer>,
    /// How old the last checkpoint may get once the log has grown (`--ledger-checkpoint-secs`;
    /// zero: a read of a grown log signs a new one).
    pub checkpoint_every: Duration,
    /// How many leaves the log may grow by before a new checkpoint is signed, however young the
    /// last one (`--ledger-checkpoint-leaves`; 0: no such bound).
    pub checkpoint_leaves: u64,
}

impl Ledger {
    /// Whether a log of `size` leaves is due a checkpoint newer than `last`: it grew, and `last`
    /// is `checkpoint_every` old or `checkpoint_leaves` behind.
    pub fn due(&self, last: &api::StoredCheckpoint, size: u64) -> bool {
        let old = api::now_secs().saturating_sub(last.made) >= self.checkpoint_every.as_secs();
        let behind = self.checkpoint_leaves > 0 && size.saturating_sub(last.size) >= self.checkpoint_leaves;
        size > last.size && (old || behind)
    }

    /// The checkpoint origin of a tenant's log: the key name, and `/tenant/<name>` but for the
    /// default tenant.
    pub fn origin(&self, tenant: &str) -> String {
        match tenant {
            "" => self.signer.name().to_owned(),
            t => format!("{}/tenant/{t}", self.signer.name()),
        }
    }
}

/// The ledger's routes, to merge into the hub's router (their rows are in cityhub-http's
/// `access::MERGED_TABLE`).
pub fn routes(ledger: Ledger) -> Router<SharedState> {
    Router::new()
        .route("/ledger/key", get(api::key))
        .route("/ledger/checkpoint", get(api::checkpoint))
        .route("/ledger/proof/inclusion", get(api::inclusion))
        .route("/ledger/proof/consistency", get(api::consistency))
        .route("/ledger/leaves", get(api::leaves))
        .route("/ledger/witnessed", get(api::witnessed))
        .route("/ledger/witness/refusals", get(api::refusals))
        .layer(Extension(ledger))
}
