//! Records: context source registrations, one expanded document each.
//!
//! Owned by helper "ops"; the skeleton only fixes the functions `lib.rs` calls.

use cityhub_storage::{RecordKind, StoreError};
use ngsild_core::NgsiLdError;
use serde_json::Value;

use crate::PostgresStore;

fn not_yet() -> StoreError {
    StoreError::Backend("not implemented yet".into())
}

pub(crate) async fn create(
    _store: &PostgresStore,
    _tenant: &str,
    _kind: RecordKind,
    _id: &str,
    _doc: Value,
) -> Result<Result<(), NgsiLdError>, StoreError> {
    Err(not_yet())
}

pub(crate) async fn replace(
    _store: &PostgresStore,
    _tenant: &str,
    _kind: RecordKind,
    _id: &str,
    _doc: Value,
) -> Result<bool, StoreError> {
    Err(not_yet())
}

/// In the order they were first written.
pub(crate) async fn list(_store: &PostgresStore, _tenant: &str, _kind: RecordKind) -> Result<Vec<Value>, StoreError> {
    Err(not_yet())
}

pub(crate) async fn delete(
    _store: &PostgresStore,
    _tenant: &str,
    _kind: RecordKind,
    _id: &str,
) -> Result<bool, StoreError> {
    Err(not_yet())
}
