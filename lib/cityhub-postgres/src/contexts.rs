//! Hosted and cached JSON-LD @context documents, hub-wide (every tenant reads them).

use cityhub_storage::{StoreError, StoredContext};
use tokio_postgres::Row;

use crate::{OrBackend, PostgresStore};

const COLUMNS: &str = "id, kind, url, document, created_at, last_used_at, hits, tenant";

fn from_row(row: &Row) -> StoredContext {
    StoredContext {
        id: row.get(0),
        kind: row.get(1),
        url: row.get(2),
        document: row.get(3),
        created_at: row.get(4),
        last_used_at: row.get(5),
        number_of_hits: row.get::<_, i64>(6).max(0) as u64,
        tenant: row.get(7),
    }
}

/// Creates or replaces; a replacement keeps the creation time and tenant of the first.
pub(crate) async fn put(store: &PostgresStore, c: StoredContext) -> Result<(), StoreError> {
    let mut client = store.client().await?;
    let tx = client.transaction().await.or_backend()?;
    let hits = i64::try_from(c.number_of_hits).unwrap_or(i64::MAX);
    tx.execute(
        "INSERT INTO contexts (id, kind, url, document, created_at, last_used_at, hits, tenant)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
         ON CONFLICT (id) DO UPDATE SET kind = excluded.kind, url = excluded.url, document = excluded.document,
             last_used_at = excluded.last_used_at, hits = excluded.hits",
        &[&c.id, &c.kind, &c.url, &c.document, &c.created_at, &c.last_used_at, &hits, &c.tenant],
    )
    .await
    .or_backend()?;
    crate::feed::context_changed(&tx, &c.id).await?;
    tx.commit().await.or_backend()
}

pub(crate) async fn get(store: &PostgresStore, id: &str) -> Result<Option<StoredContext>, StoreError> {
    let client = store.client().await?;
    let row = client.query_opt(&format!("SELECT {COLUMNS} FROM contexts WHERE id = $1"), &[&id]).await.or_backend()?;
    Ok(row.as_ref().map(from_row))
}

/// By creation time, then id.
pub(crate) async fn list(store: &PostgresStore) -> Result<Vec<StoredContext>, StoreError> {
    let client = store.client().await?;
    let rows =
        client.query(&format!("SELECT {COLUMNS} FROM contexts ORDER BY created_at, id"), &[]).await.or_backend()?;
    Ok(rows.iter().map(from_row).collect())
}

pub(crate) async fn delete(store: &PostgresStore, id: &str) -> Result<bool, StoreError> {
    let mut client = store.client().await?;
    let tx = client.transaction().await.or_backend()?;
    let deleted = tx.execute("DELETE FROM contexts WHERE id = $1", &[&id]).await.or_backend()? > 0;
    if deleted {
        crate::feed::context_changed(&tx, id).await?;
    }
    tx.commit().await.or_backend()?;
    Ok(deleted)
}
