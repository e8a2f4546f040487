//! Row I/O of the `entities` table, at the bottom of the crate's entity writes: the per-entity
//! advisory locks, reading rows `FOR UPDATE`, and saving final states with their index rows.
//! `entities::modify` (the `Store::modify` path), `temporal` (the temporal API's writes) and
//! `dump` (imports) all write through here, so none of them imports another.

use std::collections::HashMap;

use cityhub_storage::StoreError;
use ngsild_core::Entity;
use tokio_postgres::types::Json;

use crate::{OrBackend, PostgresStore};

pub(crate) async fn get(store: &PostgresStore, tenant: &str, id: &str) -> Result<Option<Entity>, StoreError> {
    let client = store.client().await?;
    let row = client
        .query_opt("SELECT doc FROM entities WHERE tenant = $1 AND id = $2", &[&tenant, &id])
        .await
        .or_backend()?;
    Ok(row.map(|r| r.get::<_, Json<Entity>>(0).0))
}

/// The advisory-lock key of one entity: FNV-1a over tenant and id, in a space of its own.
pub(crate) fn lock_key(tenant: &str, id: &str) -> i64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in tenant.bytes().chain([0xff]).chain(id.bytes()) {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    // The top bit set: apart from the small constant keys of migrations and leases.
    (hash | (1 << 63)) as i64
}

/// Inside `tx`: waits until this transaction alone may write these entities.
pub(crate) async fn lock(tx: &tokio_postgres::Transaction<'_>, tenant: &str, ids: &[&str]) -> Result<(), StoreError> {
    let mut keys: Vec<i64> = ids.iter().map(|id| lock_key(tenant, id)).collect();
    keys.sort_unstable();
    keys.dedup();
    tx.execute("SELECT count(pg_advisory_xact_lock(k)) FROM unnest($1::bigint[]) WITH ORDINALITY AS u(k, n)", &[&keys])
        .await
        .or_backend()?;
    Ok(())
}

/// Inside `tx`, after `lock`: the current state of these entities.
pub(crate) async fn load_for_update(
    tx: &tokio_postgres::Transaction<'_>,
    tenant: &str,
    ids: &[&str],
) -> Result<HashMap<String, Entity>, StoreError> {
    let rows = tx
        .query("SELECT id, doc FROM entities WHERE tenant = $1 AND id = ANY($2) FOR UPDATE", &[&tenant, &ids])
        .await
        .or_backend()?;
    Ok(rows.into_iter().map(|r| (r.get(0), r.get::<_, Json<Entity>>(1).0)).collect())
}

/// Inside `tx`: writes the final state of each entity (None deletes it), whose stored state
/// was `before`, and brings its indexes up to date.
pub(crate) async fn save(
    tx: &tokio_postgres::Transaction<'_>,
    tenant: &str,
    states: &[(&str, Option<&Entity>, Option<&Entity>)],
) -> Result<(), StoreError> {
    let (mut ids, mut docs, mut gone) = (Vec::new(), Vec::new(), Vec::new());
    let mut delta = crate::index::Delta::default();
    for &(id, before, after) in states {
        match after {
            Some(entity) => {
                ids.push(id);
                docs.push(Json(entity));
            }
            None => gone.push(id),
        }
        delta.change(id, before, after);
    }
    if !ids.is_empty() {
        tx.execute(
            "INSERT INTO entities (tenant, id, doc) SELECT $1, u.id, u.doc FROM unnest($2::text[], $3::json[]) AS u(id, doc)
             ON CONFLICT (tenant, id) DO UPDATE SET doc = excluded.doc",
            &[&tenant, &ids, &docs],
        )
        .await
        .or_backend()?;
    }
    if !gone.is_empty() {
        tx.execute("DELETE FROM entities WHERE tenant = $1 AND id = ANY($2)", &[&tenant, &gone]).await.or_backend()?;
    }
    delta.apply(tx, tenant).await
}
