//! Tenants: a tenant comes into being with its first write and is never forgotten, so a hub may
//! remember the ones it has seen (a row it saw committed stays).

use cityhub_storage::{StoreError, DEFAULT_TENANT};

use crate::{OrBackend, PostgresStore};

pub(crate) async fn exists(store: &PostgresStore, tenant: &str) -> Result<bool, StoreError> {
    if tenant == DEFAULT_TENANT || store.known_tenant(tenant) {
        return Ok(true);
    }
    let client = store.client().await?;
    let found = client.query_opt("SELECT 1 FROM tenants WHERE tenant = $1", &[&tenant]).await.or_backend()?.is_some();
    if found {
        store.remember_tenant(tenant);
    }
    Ok(found)
}

/// Every tenant but the default one, by name.
pub(crate) async fn list(store: &PostgresStore) -> Result<Vec<String>, StoreError> {
    let client = store.client().await?;
    let rows = client.query("SELECT tenant FROM tenants ORDER BY tenant", &[]).await.or_backend()?;
    Ok(rows.iter().map(|r| r.get(0)).collect())
}

/// Inside a writing transaction: makes sure `tenant` exists. Answers whether the caller should
/// remember it after the commit.
pub(crate) async fn touch(
    store: &PostgresStore,
    tx: &tokio_postgres::Transaction<'_>,
    tenant: &str,
) -> Result<bool, StoreError> {
    if tenant == DEFAULT_TENANT || store.known_tenant(tenant) {
        return Ok(false);
    }
    let created = tx
        .query_opt("INSERT INTO tenants (tenant) VALUES ($1) ON CONFLICT DO NOTHING RETURNING 1", &[&tenant])
        .await
        .or_backend()?
        .is_some();
    if created {
        crate::feed::tenant_created(tx, tenant).await?;
    }
    Ok(true)
}
