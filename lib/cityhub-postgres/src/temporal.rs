//! The history of entities: instances of attributes over time, and the temporal queries.

use cityhub_storage::{Change, StoreError, TemporalOutcome, TemporalPage, TemporalQuery, TemporalWrite};
use ngsild_core::NgsiLdError;

use crate::PostgresStore;

/// Inside the transaction of `changes`: records the instances each one made new or changed.
pub(crate) async fn record_changes(
    _tx: &tokio_postgres::Transaction<'_>,
    _tenant: &str,
    _changes: &[&Change],
    _at: &str,
) -> Result<(), StoreError> {
    Ok(())
}

pub(crate) async fn write(
    _store: &PostgresStore,
    _tenant: &str,
    _id: &str,
    _write: TemporalWrite,
) -> Result<Result<TemporalOutcome, NgsiLdError>, StoreError> {
    Err(StoreError::Backend("not implemented yet".into()))
}

pub(crate) async fn query(
    _store: &PostgresStore,
    _tenant: &str,
    _query: &TemporalQuery,
) -> Result<TemporalPage, StoreError> {
    Err(StoreError::Backend("not implemented yet".into()))
}
