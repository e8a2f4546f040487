//! Versioned migrations: numbered SQL steps applied in order, each in its own transaction, each
//! recorded in `schema_migrations`. Several hubs starting at once on one database take turns
//! (a transaction-scoped advisory lock), so every step runs exactly once.
//!
//! A step, once it has reached a database anyone runs, never changes: a change of schema is a new
//! step. Every table is keyed so that Citus could distribute it by tenant: the tenant is part of
//! every primary key of per-tenant data, and no foreign key crosses tables (issue 15, item 5).
//! Hub-wide tables (`contexts`, `schema_migrations`) would be Citus reference tables.

use cityhub_storage::StoreError;
use deadpool_postgres::Client;

use crate::OrBackend;

/// One step of the schema.
pub(crate) struct Migration {
    pub version: i32,
    pub name: &'static str,
    pub sql: &'static str,
}

/// Every step, in order. Append only; versions are consecutive from 1.
pub(crate) const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        name: "tenants, contexts, entities, geometries, history",
        sql: include_str!("../migrations/0001_core.sql"),
    },
    Migration {
        version: 2,
        name: "subscriptions, journal, notifier cursor, outbox, leases, records",
        sql: include_str!("../migrations/0002_feed.sql"),
    },
    Migration { version: 3, name: "audit log", sql: include_str!("../migrations/0003_audit.sql") },
    Migration {
        version: 4,
        name: "LZ4 documents, one history index less",
        sql: include_str!("../migrations/0004_leaner_writes.sql"),
    },
    Migration {
        version: 5,
        name: "series generation of each temporal representation",
        sql: include_str!("../migrations/0005_series_generation.sql"),
    },
    Migration {
        version: 6,
        name: "history observed index narrowed to (sid, t_observed)",
        sql: include_str!("../migrations/0006_narrow_observed_index.sql"),
    },
];

/// The key of the advisory lock that serialises migrations across processes ("cityhub" in ASCII).
const MIGRATION_LOCK: i64 = 0x0063_6974_7968_7562;

/// Brings the database's schema up to the last step this build knows. A database migrated by a
/// newer build (a step this one does not know) is refused rather than misread.
pub(crate) async fn migrate(client: &mut Client) -> Result<(), StoreError> {
    // Under the lock too: two hubs creating the table at once would collide in the catalog.
    let tx = client.transaction().await.or_backend()?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK]).await.or_backend()?;
    tx.batch_execute(
        "CREATE TABLE IF NOT EXISTS schema_migrations (
             version integer PRIMARY KEY,
             name text NOT NULL,
             applied_at timestamptz NOT NULL DEFAULT now()
         )",
    )
    .await
    .or_backend()?;
    tx.commit().await.or_backend()?;
    for step in MIGRATIONS {
        let tx = client.transaction().await.or_backend()?;
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK]).await.or_backend()?;
        let done = tx
            .query_opt("SELECT 1 FROM schema_migrations WHERE version = $1", &[&step.version])
            .await
            .or_backend()?
            .is_some();
        if done {
            continue;
        }
        tx.batch_execute(step.sql).await.map_err(|e| {
            StoreError::Backend(format!("migration {} ({}): {}", step.version, step.name, crate::describe(&e)))
        })?;
        tx.execute("INSERT INTO schema_migrations (version, name) VALUES ($1, $2)", &[&step.version, &step.name])
            .await
            .or_backend()?;
        tx.commit().await.or_backend()?;
        tracing::info!(version = step.version, name = step.name, "migrated the PostgreSQL schema");
    }
    let newest: Option<i32> =
        client.query_one("SELECT max(version) FROM schema_migrations", &[]).await.or_backend()?.get(0);
    let known = MIGRATIONS.last().map_or(0, |m| m.version);
    if let Some(newest) = newest.filter(|&n| n > known) {
        return Err(StoreError::Backend(format!(
            "the database has schema version {newest}, newer than this cityhub knows ({known}): run a newer cityhub"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::MIGRATIONS;

    #[test]
    fn versions_are_consecutive_from_one() {
        for (i, step) in MIGRATIONS.iter().enumerate() {
            assert_eq!(step.version as usize, i + 1, "step {:?}", step.name);
            assert!(!step.sql.trim().is_empty(), "step {} is empty", step.version);
        }
    }
}
