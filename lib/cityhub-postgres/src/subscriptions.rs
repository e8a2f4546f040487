//! Subscriptions of both kinds (`SubscriptionKind`: entity or csource), keyed by tenant, kind and
//! id, with the delivery status the notifier keeps (`feed::record_delivery`). Every write tells
//! every hub (`StoreEvent::Subscription`) in its transaction, so a subscription created at one
//! hub is in force at the others once it committed.

use cityhub_storage::{DeliveryStatus, StoreError, StoreEvent, StoredSubscription, SubscriptionKind};
use ngsild_core::NgsiLdError;
use serde_json::Value;
use tokio_postgres::types::Json;
use tokio_postgres::Row;

use crate::{feed, OrBackend, PostgresStore};

pub(crate) const COLUMNS: &str =
    "kind, tenant, id, doc, times_sent, times_failed, dropped, last_notification, last_success, last_failure";

fn count(row: &Row, index: usize) -> Result<u64, StoreError> {
    Ok(row.try_get::<_, i64>(index).or_backend()?.max(0) as u64)
}

pub(crate) fn from_row(row: &Row) -> Result<StoredSubscription, StoreError> {
    let kind: String = row.try_get(0).or_backend()?;
    Ok(StoredSubscription {
        kind: SubscriptionKind::parse(&kind)
            .ok_or_else(|| StoreError::Backend(format!("a stored subscription has the unknown kind {kind:?}")))?,
        tenant: row.try_get(1).or_backend()?,
        id: row.try_get(2).or_backend()?,
        doc: row.try_get::<_, Json<Value>>(3).or_backend()?.0,
        status: DeliveryStatus {
            times_sent: count(row, 4)?,
            times_failed: count(row, 5)?,
            dropped: count(row, 6)?,
            last_notification: row.try_get(7).or_backend()?,
            last_success: row.try_get(8).or_backend()?,
            last_failure: row.try_get(9).or_backend()?,
        },
    })
}

/// Stores a new subscription (AlreadyExists when the id is taken in its tenant and kind); the
/// tenant comes into being with it. From this commit on, every entity transaction of the tenant
/// sees it and journals (`feed::journal`).
pub(crate) async fn create(
    store: &PostgresStore,
    kind: SubscriptionKind,
    tenant: &str,
    id: &str,
    doc: Value,
) -> Result<Result<(), NgsiLdError>, StoreError> {
    let mut client = store.client().await?;
    let tx = client.transaction().await.or_backend()?;
    let created = tx
        .query_opt(
            "INSERT INTO subscriptions (kind, tenant, id, doc) VALUES ($1, $2, $3, $4)
             ON CONFLICT DO NOTHING RETURNING 1",
            &[&kind.name(), &tenant, &id, &Json(&doc)],
        )
        .await
        .or_backend()?
        .is_some();
    if !created {
        return Ok(Err(NgsiLdError::already_exists(format!("subscription {id} already exists"))));
    }
    let remember = crate::tenants::touch(store, &tx, tenant).await?;
    let event = StoreEvent::Subscription { kind, tenant: tenant.to_owned(), id: id.to_owned() };
    feed::notify(&tx, &event).await?;
    tx.commit().await.or_backend()?;
    if remember {
        store.remember_tenant(tenant);
    }
    store.feed.tell(event);
    Ok(Ok(()))
}

/// Replaces a subscription's document (its status stays); false when there is none.
pub(crate) async fn replace(
    store: &PostgresStore,
    kind: SubscriptionKind,
    tenant: &str,
    id: &str,
    doc: Value,
) -> Result<bool, StoreError> {
    let mut client = store.client().await?;
    let tx = client.transaction().await.or_backend()?;
    let replaced = tx
        .execute(
            "UPDATE subscriptions SET doc = $4 WHERE tenant = $1 AND kind = $2 AND id = $3",
            &[&tenant, &kind.name(), &id, &Json(&doc)],
        )
        .await
        .or_backend()?
        > 0;
    if !replaced {
        return Ok(false);
    }
    let event = StoreEvent::Subscription { kind, tenant: tenant.to_owned(), id: id.to_owned() };
    feed::commit_telling(store, tx, event).await?;
    Ok(true)
}

/// Deletes a subscription with its pending notifications; false when there is none.
pub(crate) async fn delete(
    store: &PostgresStore,
    kind: SubscriptionKind,
    tenant: &str,
    id: &str,
) -> Result<bool, StoreError> {
    let mut client = store.client().await?;
    let tx = client.transaction().await.or_backend()?;
    tx.execute(
        "DELETE FROM outbox WHERE tenant = $1 AND kind = $2 AND subscription_id = $3",
        &[&tenant, &kind.name(), &id],
    )
    .await
    .or_backend()?;
    let deleted = tx
        .execute("DELETE FROM subscriptions WHERE tenant = $1 AND kind = $2 AND id = $3", &[&tenant, &kind.name(), &id])
        .await
        .or_backend()?
        > 0;
    if !deleted {
        return Ok(false);
    }
    let event = StoreEvent::Subscription { kind, tenant: tenant.to_owned(), id: id.to_owned() };
    feed::commit_telling(store, tx, event).await?;
    Ok(true)
}

pub(crate) async fn get(
    store: &PostgresStore,
    kind: SubscriptionKind,
    tenant: &str,
    id: &str,
) -> Result<Option<StoredSubscription>, StoreError> {
    let client = store.client().await?;
    let row = client
        .query_opt(
            &format!("SELECT {COLUMNS} FROM subscriptions WHERE tenant = $1 AND kind = $2 AND id = $3"),
            &[&tenant, &kind.name(), &id],
        )
        .await
        .or_backend()?;
    row.as_ref().map(from_row).transpose()
}

/// Ordered by tenant and id.
pub(crate) async fn list(
    store: &PostgresStore,
    kind: Option<SubscriptionKind>,
    tenant: Option<&str>,
) -> Result<Vec<StoredSubscription>, StoreError> {
    let client = store.client().await?;
    let rows = client
        .query(
            &format!(
                "SELECT {COLUMNS} FROM subscriptions
                 WHERE ($1::text IS NULL OR kind = $1) AND ($2::text IS NULL OR tenant = $2)
                 ORDER BY tenant, id, kind"
            ),
            &[&kind.map(SubscriptionKind::name), &tenant],
        )
        .await
        .or_backend()?;
    rows.iter().map(from_row).collect()
}
