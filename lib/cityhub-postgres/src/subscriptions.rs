//! Subscriptions of both kinds with their delivery status.
//!
//! Owned by helper "ops"; the skeleton only fixes the functions `lib.rs` calls.

use cityhub_storage::{StoreError, StoredSubscription, SubscriptionKind};
use ngsild_core::NgsiLdError;
use serde_json::Value;

use crate::PostgresStore;

fn not_yet() -> StoreError {
    StoreError::Backend("not implemented yet".into())
}

pub(crate) async fn create(
    _store: &PostgresStore,
    _kind: SubscriptionKind,
    _tenant: &str,
    _id: &str,
    _doc: Value,
) -> Result<Result<(), NgsiLdError>, StoreError> {
    Err(not_yet())
}

pub(crate) async fn replace(
    _store: &PostgresStore,
    _kind: SubscriptionKind,
    _tenant: &str,
    _id: &str,
    _doc: Value,
) -> Result<bool, StoreError> {
    Err(not_yet())
}

pub(crate) async fn delete(
    _store: &PostgresStore,
    _kind: SubscriptionKind,
    _tenant: &str,
    _id: &str,
) -> Result<bool, StoreError> {
    Err(not_yet())
}

pub(crate) async fn get(
    _store: &PostgresStore,
    _kind: SubscriptionKind,
    _tenant: &str,
    _id: &str,
) -> Result<Option<StoredSubscription>, StoreError> {
    Err(not_yet())
}

/// Ordered by tenant and id.
pub(crate) async fn list(
    _store: &PostgresStore,
    _kind: Option<SubscriptionKind>,
    _tenant: Option<&str>,
) -> Result<Vec<StoredSubscription>, StoreError> {
    Err(not_yet())
}
