//! The change journal, the notifier's cursor, the outbox, leases and the events told to every hub
//! on the database (LISTEN/NOTIFY).
//!
//! Owned by helper "ops"; the skeleton only fixes the functions the rest of the crate calls.

use std::time::Duration;

use cityhub_storage::{Change, DeliveryOutcome, JournalEntry, NotifierCommit, OutboxItem, StoreError, StoreEvent};
use deadpool_postgres::Pool;
use tokio::sync::broadcast;

use crate::PostgresStore;

fn not_yet() -> StoreError {
    StoreError::Backend("not implemented yet".into())
}

/// What this process keeps of the notification machinery.
pub(crate) struct Feed {
    events: broadcast::Sender<StoreEvent>,
}

impl Feed {
    pub(crate) async fn start(_pool: &Pool) -> Result<Feed, StoreError> {
        Ok(Feed { events: broadcast::channel(1024).0 })
    }
}

/// Called by `entities` and `temporal` inside the transaction of entity changes (in each, before
/// or after is an entity; in the order they happened): writes their journal entries when the
/// tenant has entity subscriptions. Answers whether it journaled.
pub(crate) async fn journal(
    _tx: &tokio_postgres::Transaction<'_>,
    _tenant: &str,
    _changes: &[&Change],
    _at: &str,
) -> Result<bool, StoreError> {
    Ok(false)
}

/// Called inside the transaction that created `tenant` (its first row in `tenants`).
pub(crate) async fn tenant_created(_tx: &tokio_postgres::Transaction<'_>, _tenant: &str) -> Result<(), StoreError> {
    Ok(())
}

/// Called inside the transaction that put or deleted the context `id`.
pub(crate) async fn context_changed(_tx: &tokio_postgres::Transaction<'_>, _id: &str) -> Result<(), StoreError> {
    Ok(())
}

/// Called after the commit of a transaction in which `journal` answered true.
pub(crate) fn journaled(store: &PostgresStore) {
    let _ = store.feed.events.send(StoreEvent::Journal);
}

pub(crate) fn events(store: &PostgresStore) -> broadcast::Receiver<StoreEvent> {
    store.feed.events.subscribe()
}

pub(crate) async fn try_lease(
    _store: &PostgresStore,
    _name: &str,
    _holder: &str,
    _ttl: Duration,
) -> Result<bool, StoreError> {
    Err(not_yet())
}

pub(crate) async fn release_lease(_store: &PostgresStore, _name: &str, _holder: &str) -> Result<(), StoreError> {
    Err(not_yet())
}

pub(crate) async fn journal_after(
    _store: &PostgresStore,
    _cursor: u64,
    _limit: usize,
) -> Result<Vec<JournalEntry>, StoreError> {
    Err(not_yet())
}

pub(crate) async fn notifier_cursor(_store: &PostgresStore) -> Result<u64, StoreError> {
    Err(not_yet())
}

pub(crate) async fn commit_notifications(
    _store: &PostgresStore,
    _commit: NotifierCommit,
) -> Result<Vec<OutboxItem>, StoreError> {
    Err(not_yet())
}

pub(crate) async fn outbox_endpoints(_store: &PostgresStore) -> Result<Vec<String>, StoreError> {
    Err(not_yet())
}

pub(crate) async fn outbox(
    _store: &PostgresStore,
    _endpoint: &str,
    _limit: usize,
) -> Result<Vec<OutboxItem>, StoreError> {
    Err(not_yet())
}

pub(crate) async fn record_delivery(
    _store: &PostgresStore,
    _item: &OutboxItem,
    _outcome: DeliveryOutcome,
    _at: &str,
) -> Result<(), StoreError> {
    Err(not_yet())
}
