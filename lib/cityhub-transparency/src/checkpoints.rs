//! Signed checkpoints in the background (`--ledger-checkpoint-secs`, `--ledger-checkpoint-leaves`):
//! once a second this task reads each tenant's ledger head (one row) and signs a new checkpoint
//! when the log has grown and either the last checkpoint is `checkpoint_every` old or the log has
//! grown by `checkpoint_leaves` leaves since it. Nothing happens per write; a read of
//! `GET /ledger/checkpoint` serves the stored checkpoint (and signs one itself only when the
//! stored one is past either bound, e.g. before this task's next round).

use std::collections::HashMap;
use std::time::Duration;

use cityhub_storage::{DynStore, StoreError};

use crate::api::{sign_and_keep, stored_checkpoint, StoredCheckpoint};
use crate::Ledger;

/// How often the task looks at the heads.
const ROUND: Duration = Duration::from_secs(1);

/// Starts the task (unless neither bound is set).
pub fn start(store: DynStore, ledger: Ledger) {
    if ledger.checkpoint_every.is_zero() && ledger.checkpoint_leaves == 0 {
        return;
    }
    tokio::spawn(async move {
        let mut last: HashMap<String, StoredCheckpoint> = HashMap::new();
        let mut tick = tokio::time::interval(ROUND);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            match round(&store, &ledger, &mut last).await {
                Ok(()) => {}
                // This hub keeps no ledger (`--ledger off`, or a backend without one), and will
                // not start keeping one while it runs: nothing to sign, ever.
                Err(StoreError::Unsupported(why)) => {
                    tracing::debug!(%why, "no ledger: no checkpoints to sign");
                    return;
                }
                Err(e) => tracing::warn!(error = %e, "could not make the ledger's checkpoints"),
            }
        }
    });
}

/// One look at every tenant's head.
async fn round(
    store: &DynStore,
    ledger: &Ledger,
    last: &mut HashMap<String, StoredCheckpoint>,
) -> Result<(), StoreError> {
    // First the default tenant's head: a store that keeps no ledger says so here.
    store.ledger_head("").await?;
    let mut tenants = store.tenants().await?;
    if !tenants.iter().any(String::is_empty) {
        tenants.insert(0, String::new());
    }
    for tenant in tenants {
        let head = store.ledger_head(&tenant).await?;
        let known = match last.get(&tenant) {
            Some(known) => known.clone(),
            None => stored_checkpoint(store, &tenant).await?.unwrap_or_default(),
        };
        if head.size > known.size && ledger.due(&known, head.size) {
            let made = sign_and_keep(ledger, store, &tenant, &head).await?;
            last.insert(tenant, made);
        } else {
            last.insert(tenant, known);
        }
    }
    Ok(())
}
