//! Records: context source registrations and access policies, one expanded document each, keyed by tenant, kind and
//! id, listed in the order first written. Creation is create-if-absent through the primary key (so
//! two hubs creating the same id at once get one 201 and one AlreadyExists, with no lock in any
//! process); every write tells every hub (`StoreEvent::Records`) in its transaction, so their
//! registration caches drop the tenant's entry.

use cityhub_storage::{RecordKind, StoreError, StoreEvent};
use ngsild_core::NgsiLdError;
use serde_json::Value;
use tokio_postgres::types::Json;

use crate::{feed, OrBackend, PostgresStore};

pub(crate) async fn create(
    store: &PostgresStore,
    tenant: &str,
    kind: RecordKind,
    id: &str,
    doc: Value,
) -> Result<Result<(), NgsiLdError>, StoreError> {
    let mut client = store.client().await?;
    let tx = client.transaction().await.or_backend()?;
    let created = tx
        .query_opt(
            "INSERT INTO records (tenant, kind, id, doc) VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING RETURNING 1",
            &[&tenant, &kind.name(), &id, &Json(&doc)],
        )
        .await
        .or_backend()?
        .is_some();
    if !created {
        return Ok(Err(NgsiLdError::already_exists(format!("{} {id} already exists", kind.what()))));
    }
    let remember = crate::tenants::touch(store, &tx, tenant).await?;
    let event = StoreEvent::Records { tenant: tenant.to_owned(), kind };
    feed::notify(&tx, &event).await?;
    tx.commit().await.or_backend()?;
    if remember {
        store.remember_tenant(tenant);
    }
    store.feed.tell(event);
    Ok(Ok(()))
}

/// Replaces a record's document (it keeps its place in the order); false when there is none.
pub(crate) async fn replace(
    store: &PostgresStore,
    tenant: &str,
    kind: RecordKind,
    id: &str,
    doc: Value,
) -> Result<bool, StoreError> {
    let mut client = store.client().await?;
    let tx = client.transaction().await.or_backend()?;
    let replaced = tx
        .execute(
            "UPDATE records SET doc = $4 WHERE tenant = $1 AND kind = $2 AND id = $3",
            &[&tenant, &kind.name(), &id, &Json(&doc)],
        )
        .await
        .or_backend()?
        > 0;
    if !replaced {
        return Ok(false);
    }
    let event = StoreEvent::Records { tenant: tenant.to_owned(), kind };
    feed::commit_telling(store, tx, event).await?;
    Ok(true)
}

/// In the order they were first written.
pub(crate) async fn list(store: &PostgresStore, tenant: &str, kind: RecordKind) -> Result<Vec<Value>, StoreError> {
    let client = store.client().await?;
    let rows = client
        .query("SELECT doc FROM records WHERE tenant = $1 AND kind = $2 ORDER BY position", &[&tenant, &kind.name()])
        .await
        .or_backend()?;
    rows.iter().map(|r| Ok(r.try_get::<_, Json<Value>>(0).or_backend()?.0)).collect()
}

pub(crate) async fn delete(
    store: &PostgresStore,
    tenant: &str,
    kind: RecordKind,
    id: &str,
) -> Result<bool, StoreError> {
    let mut client = store.client().await?;
    let tx = client.transaction().await.or_backend()?;
    let deleted = tx
        .execute("DELETE FROM records WHERE tenant = $1 AND kind = $2 AND id = $3", &[&tenant, &kind.name(), &id])
        .await
        .or_backend()?
        > 0;
    if !deleted {
        return Ok(false);
    }
    let event = StoreEvent::Records { tenant: tenant.to_owned(), kind };
    feed::commit_telling(store, tx, event).await?;
    Ok(true)
}
