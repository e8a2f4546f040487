//! The current state of entities: one row per (tenant, id) holding the expanded document.
//!
//! `modify` runs all its modifiers in one transaction. Before reading anything it takes a
//! transaction-scoped advisory lock per entity, in one global order (so two batches never
//! deadlock), then reads the rows (with no row lock: every writer of `entities` holds the
//! advisory locks first): a writer at any hub on the database waits for the one before it, including on an entity that does not exist yet (which a row lock cannot
//! protect, and which a retry could not resolve, since a modifier runs only once). A modifier's
//! refusal leaves its entity as it was; the answers go back only after the commit. The
//! transaction costs four round trips whatever its size (BEGIN; locks and reads; every write,
//! pipelined; COMMIT), two more when the tenant's changes are journaled.

use std::panic::{catch_unwind, AssertUnwindSafe};

use cityhub_storage::{Change, Modification, Modifier, StoreError};
use ngsild_core::{Entity, NgsiLdError};

use crate::pipeline::Batch;
use crate::rows::{lock_and_load, save_into};
use crate::{OrBackend, PostgresStore};

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
    let loaded = lock_and_load(&tx, tenant, &ids).await?;
    drop(ids);
    let mut written: Vec<(String, Option<Entity>)> = Vec::new();
    let mut answers = Vec::with_capacity(modifications.len());
    let mut any_ok = false;
    for (id, modifier) in modifications {
        let before = match written.iter().find(|(w, _)| *w == id) {
            Some((_, state)) => state.clone(),
            None => loaded.current.get(&id).cloned(),
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
        written.iter().map(|(id, after)| (id.as_str(), loaded.current.get(id), after.as_ref())).collect();
    let changes: Vec<&Change> =
        answers.iter().filter_map(|a| a.as_ref().ok()).filter(|c| c.before.is_some() || c.after.is_some()).collect();
    let remember = any_ok && crate::tenants::touch(store, &tx, tenant).await?;
    let now = ngsild_core::time::now();
    // Every write of the transaction in one pipeline (see `pipeline`): the entities and their
    // index rows, the history and the temporal representation.
    let mut batch = Batch::default();
    save_into(&mut batch, tenant, &states);
    let mut finding = None;
    if !changes.is_empty() {
        finding = crate::temporal::record_changes(store, &tx, &mut batch, tenant, &changes, &now, &loaded).await?;
    }
    let mut journaled = false;
    let answers_of_batch;
    if changes.is_empty() {
        answers_of_batch = batch.run(&tx).await?;
    } else {
        let (ran, watched) = futures_util::future::try_join(batch.run(&tx), crate::feed::watched(&tx, tenant)).await?;
        answers_of_batch = ran;
        if watched {
            // Same transaction as the change: a change is never acknowledged without its journal
            // entry, and never journaled without being committed. Last before the commit: the
            // journal serialises journaling transactions from here to their commit.
            crate::feed::journal_watched(&tx, tenant, &changes, &now).await?;
            journaled = true;
        }
    }
    drop(batch);
    drop(changes);
    tx.commit().await.or_backend()?;
    // Series ids are learnt from committed transactions only.
    let found = finding.and_then(|n| answers_of_batch.into_iter().nth(n));
    if let Some(crate::pipeline::Answer::Rows(rows)) = found {
        crate::temporal::learn(store, tenant, rows, &loaded.gens);
    }
    // No group commit here: each call is its own transaction.
    metrics::counter!("cityhub_store_commits_total").increment(1);
    metrics::counter!("cityhub_store_writes_total").increment(answers.iter().filter(|a| a.is_ok()).count() as u64);
    metrics::histogram!("cityhub_store_group_commit_size").record(1.0);
    if remember {
        store.remember_tenant(tenant);
    }
    if journaled {
        crate::feed::journaled(store);
    }
    Ok(answers)
}
