//! The current state of entities: one row per (tenant, id) holding the expanded document.
//!
//! `modify` runs all its modifiers in one transaction. Before reading anything it takes a
//! transaction-scoped advisory lock per entity, in one global order (so two batches never
//! deadlock), then reads the rows `FOR UPDATE`: a writer at any hub on the database waits for the
//! one before it, including on an entity that does not exist yet (which a row lock cannot
//! protect, and which a retry could not resolve, since a modifier runs only once). A modifier's
//! refusal leaves its entity as it was; the answers go back only after the commit.

use std::collections::HashMap;
use std::panic::{catch_unwind, AssertUnwindSafe};

use cityhub_storage::{Change, Modification, Modifier, StoreError};
use ngsild_core::{Entity, NgsiLdError};
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

pub(crate) async fn modify(
    store: &PostgresStore,
    tenant: &str,
    modifications: Vec<(String, Modifier)>,
) -> Result<Vec<Result<Change, NgsiLdError>>, StoreError> {
    if modifications.is_empty() {
        return Ok(Vec::new());
    }
    let mut client = store.client().await?;
    let tx = client.transaction().await.or_backend()?;
    let ids: Vec<&str> = modifications.iter().map(|(id, _)| id.as_str()).collect();
    lock(&tx, tenant, &ids).await?;
    let loaded: HashMap<String, Entity> = load_for_update(&tx, tenant, &ids).await?;
    // What this transaction wrote so far, over what it loaded; in the order first written.
    let mut written: Vec<(String, Option<Entity>)> = Vec::new();
    let mut answers = Vec::with_capacity(modifications.len());
    let mut any_ok = false;
    for (id, modifier) in modifications {
        let before = match written.iter().find(|(w, _)| *w == id) {
            Some((_, state)) => state.clone(),
            None => loaded.get(&id).cloned(),
        };
        let result: Modification = match catch_unwind(AssertUnwindSafe(|| modifier(before.clone()))) {
            Ok(result) => result,
            Err(_) => Err(NgsiLdError::internal(format!("the modification of {id} failed unexpectedly"))),
        };
        let (after, report) = match result {
            Ok(modified) => (modified.next, modified.report),
            Err(e) => {
                answers.push(Err(e));
                continue;
            }
        };
        if after.as_ref().is_some_and(|e| e.id != id) {
            answers.push(Err(NgsiLdError::internal("a modification changed the entity id")));
            continue;
        }
        any_ok = true;
        if before.is_some() || after.is_some() {
            match written.iter_mut().find(|(w, _)| *w == id) {
                Some((_, state)) => *state = after.clone(),
                None => written.push((id.clone(), after.clone())),
            }
        }
        answers.push(Ok(Change { before, after, report }));
    }
    let states: Vec<(&str, Option<&Entity>, Option<&Entity>)> =
        written.iter().map(|(id, after)| (id.as_str(), loaded.get(id), after.as_ref())).collect();
    save(&tx, tenant, &states).await?;
    let changes: Vec<&Change> =
        answers.iter().filter_map(|a| a.as_ref().ok()).filter(|c| c.before.is_some() || c.after.is_some()).collect();
    let remember = any_ok && crate::tenants::touch(store, &tx, tenant).await?;
    let mut journaled = false;
    if !changes.is_empty() {
        let now = ngsild_core::time::now();
        crate::temporal::record_changes(store, &tx, tenant, &changes, &now).await?;
        // Same transaction as the change: a change is never acknowledged without its journal
        // entry, and never journaled without being committed. Last before the commit: the
        // journal serialises journaling transactions from here to their commit.
        journaled = crate::feed::journal(&tx, tenant, &changes, &now).await?;
    }
    tx.commit().await.or_backend()?;
    if remember {
        store.remember_tenant(tenant);
    }
    if journaled {
        crate::feed::journaled(store);
    }
    Ok(answers)
}
