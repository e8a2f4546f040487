//! Row I/O of the `entities` table, at the bottom of the crate's entity writes: the per-entity
//! advisory locks, reading rows `FOR UPDATE`, and saving final states with their index rows.
//! `entities::modify` (the `Store::modify` path), `temporal` (the temporal API's writes) and
//! `dump` (imports) all write through here, so none of them imports another.

use std::collections::HashMap;

use cityhub_storage::StoreError;
use ngsild_core::Entity;
use tokio_postgres::types::Json;

use crate::pipeline::Batch;
use crate::{OrBackend, PostgresStore, Tx};

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

const LOCK_SQL: &str = "SELECT count(pg_advisory_xact_lock(k)) FROM unnest($1::bigint[]) WITH ORDINALITY AS u(k, n)";
/// No `FOR UPDATE`: every writer of `entities` holds the entity's advisory lock first (`lock`), so
/// a row lock would add nothing but a write to each row (and its WAL) before the row's update.
const LOAD_SQL: &str = "SELECT id, doc FROM entities WHERE tenant = $1 AND id = ANY($2)";
/// After the lock, so the series generation read is the one no other writer can change before
/// this transaction ends (see `series`).
const TEMPORAL_TYPES_SQL: &str =
    "SELECT id, types, COALESCE(series_gen, 0) FROM temporal_entities WHERE tenant = $1 AND id = ANY($2)";

fn lock_keys(tenant: &str, ids: &[&str]) -> Vec<i64> {
    let mut keys: Vec<i64> = ids.iter().map(|id| lock_key(tenant, id)).collect();
    keys.sort_unstable();
    keys.dedup();
    keys
}

/// Inside `tx`: waits until this transaction alone may write these entities.
pub(crate) async fn lock(tx: &Tx<'_>, tenant: &str, ids: &[&str]) -> Result<(), StoreError> {
    let statement = tx.prepare_cached(LOCK_SQL).await.or_backend()?;
    tx.execute(&statement, &[&lock_keys(tenant, ids)]).await.or_backend()?;
    Ok(())
}

/// Inside `tx`, after `lock`: the current state of these entities.
pub(crate) async fn load_for_update(
    tx: &Tx<'_>,
    tenant: &str,
    ids: &[&str],
) -> Result<HashMap<String, Entity>, StoreError> {
    let statement = tx.prepare_cached(LOAD_SQL).await.or_backend()?;
    let rows = tx.query(&statement, &[&tenant, &ids]).await.or_backend()?;
    Ok(rows.into_iter().map(|r| (r.get(0), r.get::<_, Json<Entity>>(1).0)).collect())
}

/// What a write of these entities reads before it runs its modifiers, all in one round trip:
/// `lock`, then the current state of each (`load_for_update`), the types of its temporal
/// representation (which tell `temporal` whether its type index must change) and its series
/// generation (none: it has no temporal representation).
pub(crate) async fn lock_and_load(tx: &Tx<'_>, tenant: &str, ids: &[&str]) -> Result<Loaded, StoreError> {
    let (lock, load, types) = futures_util::future::try_join3(
        tx.prepare_cached(LOCK_SQL),
        tx.prepare_cached(LOAD_SQL),
        tx.prepare_cached(TEMPORAL_TYPES_SQL),
    )
    .await
    .or_backend()?;
    let keys = lock_keys(tenant, ids);
    // Sent in this order on first poll; the server runs the reads after the lock is granted.
    let (_, current, temporal) = futures_util::future::try_join3(
        tx.execute(&lock, &[&keys]),
        tx.query(&load, &[&tenant, &ids]),
        tx.query(&types, &[&tenant, &ids]),
    )
    .await
    .or_backend()?;
    let current = current.into_iter().map(|r| (r.get(0), r.get::<_, Json<Entity>>(1).0)).collect();
    let mut types = HashMap::with_capacity(temporal.len());
    let mut gens = HashMap::with_capacity(temporal.len());
    for r in temporal {
        let id: String = r.get(0);
        gens.insert(id.clone(), r.get(2));
        types.insert(id, r.get::<_, Json<Vec<String>>>(1).0);
    }
    Ok(Loaded { current, types, gens })
}

/// What `lock_and_load` read.
pub(crate) struct Loaded {
    /// The current state of each entity that has one.
    pub current: HashMap<String, Entity>,
    /// The types of each temporal representation.
    pub types: HashMap<String, Vec<String>>,
    /// The series generation of each temporal representation.
    pub gens: HashMap<String, i64>,
}

/// Inside `tx`: writes the final state of each entity (None deletes it), whose stored state
/// was `before`, and brings its indexes up to date.
pub(crate) async fn save(
    tx: &Tx<'_>,
    tenant: &str,
    states: &[(&str, Option<&Entity>, Option<&Entity>)],
) -> Result<(), StoreError> {
    let mut batch = Batch::default();
    save_into(&mut batch, tenant, states);
    batch.run(tx).await.map(drop)
}

/// `save` as statements added to `batch`.
pub(crate) fn save_into<'a>(
    batch: &mut Batch<'a>,
    tenant: &'a str,
    states: &[(&'a str, Option<&'a Entity>, Option<&'a Entity>)],
) {
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
        batch.push(
            "INSERT INTO entities (tenant, id, doc) SELECT $1, u.id, u.doc FROM unnest($2::text[], $3::json[]) AS u(id, doc)
             ON CONFLICT (tenant, id) DO UPDATE SET doc = excluded.doc",
            vec![Box::new(tenant), Box::new(ids), Box::new(docs)],
        );
    }
    if !gone.is_empty() {
        batch.push("DELETE FROM entities WHERE tenant = $1 AND id = ANY($2)", vec![Box::new(tenant), Box::new(gone)]);
    }
    delta.apply(batch, tenant);
}
