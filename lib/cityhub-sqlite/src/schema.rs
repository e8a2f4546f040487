//! The SQL of the embedded backend: schema, migrations, and row <-> model conversions.

use cityhub_storage::StoredContext;
use ngsild_core::Entity;
use rusqlite::{params, Connection, OptionalExtension};

/// Bumped whenever the schema changes; `migrate` brings older files forward (version 11 added
/// the `leases` table).
const SCHEMA_VERSION: i64 = 11;

pub fn configure_writer(conn: &Connection) -> rusqlite::Result<()> {
    // WAL lets readers run beside the writer; synchronous=FULL makes every commit durable against
    // power loss, not only against a crash of the process.
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.pragma_update(None, "busy_timeout", 10_000)?;
    // 16 MB, not more: at every commit after a page split SQLite walks the whole page-cache hash
    // table (balance_nonroot renumbers pages through the 1 GiB lock page, which makes
    // pager_end_transaction truncate the cache from there). With 64 MB that walk took 15 % of the
    // writer's CPU under partial updates; with 16 MB, 3 %. The OS page cache serves the misses.
    conn.pragma_update(None, "cache_size", -16_000)?;
    // Checkpoints run on their own thread (see `Checkpointer`), never inside a commit.
    conn.pragma_update(None, "wal_autocheckpoint", 0)?;
    // When the WAL starts over, a file grown by a burst of writes shrinks back to this size.
    conn.pragma_update(None, "journal_size_limit", 64 * 1024 * 1024)?;
    Ok(())
}

pub fn configure_reader(conn: &Connection) -> rusqlite::Result<()> {
    conn.pragma_update(None, "busy_timeout", 10_000)?;
    conn.pragma_update(None, "cache_size", -32_000)?;
    // temp_store stays FILE: a sorter bigger than the cache spills to a temporary file instead of
    // growing in memory, so aggregating a million instances in one GROUP BY keeps memory flat.
    Ok(())
}

pub fn migrate(conn: &mut Connection) -> rusqlite::Result<()> {
    let version: i64 = conn.pragma_query_value(None, "user_version", |row| row.get(0))?;
    if version >= SCHEMA_VERSION {
        return Ok(());
    }
    let tx = conn.transaction()?;
    tx.execute_batch(
        "CREATE TABLE IF NOT EXISTS tenants (name TEXT PRIMARY KEY) WITHOUT ROWID;
         CREATE TABLE IF NOT EXISTS contexts (
             id TEXT PRIMARY KEY,
             kind TEXT NOT NULL,
             url TEXT NOT NULL,
             document TEXT NOT NULL,
             created_at TEXT NOT NULL,
             last_used_at TEXT,
             hits INTEGER NOT NULL DEFAULT 0
         );
         -- Context source registrations and csource subscriptions, one JSON document each.
         CREATE TABLE IF NOT EXISTS records (
             tenant TEXT NOT NULL,
             kind TEXT NOT NULL,
             id TEXT NOT NULL,
             doc TEXT NOT NULL,
             PRIMARY KEY (tenant, kind, id)
         );",
    )?;
    if version < 4 {
        // eid is the key every index refers to; an explicit INTEGER PRIMARY KEY, so that no
        // VACUUM ever renumbers it.
        tx.execute_batch(
            "CREATE TABLE entities_v4 (
                 eid INTEGER PRIMARY KEY,
                 tenant TEXT NOT NULL,
                 id TEXT NOT NULL,
                 doc TEXT NOT NULL,
                 UNIQUE (tenant, id)
             );",
        )?;
    }
    if version > 0 && version < 4 {
        tx.execute_batch(crate::index::DROP_OLD)?;
        tx.execute_batch(
            "INSERT INTO entities_v4 (tenant, id, doc) SELECT tenant, id, doc FROM entities ORDER BY tenant, id;
             DROP TABLE entities;",
        )?;
    }
    if version < 4 {
        tx.execute_batch("ALTER TABLE entities_v4 RENAME TO entities")?;
    }
    tx.execute_batch(crate::index::SCHEMA)?;
    if version > 0 && version < 5 {
        // Version 5 made the observedAt index of the history covering.
        tx.execute_batch("DROP INDEX IF EXISTS attr_history_observed")?;
    }
    // Version 9 keys the history by series (see temporal.rs); an older one moves aside first.
    let old_history = version > 0 && version < 9 && crate::temporal::is_text_keyed(&tx)?;
    if old_history {
        tx.execute_batch(crate::temporal::SET_ASIDE_TEXT_KEYED)?;
    }
    tx.execute_batch(crate::temporal::SCHEMA)?;
    if old_history {
        crate::temporal::move_text_keyed(&tx)?;
    }
    crate::subscriptions::migrate(&tx)?;
    if version < 10 {
        // Version 10 records which tenant hosted a context (contexts from before belong to the
        // default tenant).
        tx.execute_batch("ALTER TABLE contexts ADD COLUMN tenant TEXT NOT NULL DEFAULT ''")?;
    }
    if version < 4 {
        // Entities stored before the integer-keyed indexes existed get their rows now.
        let rows: Vec<(i64, String, String)> = {
            let mut stmt = tx.prepare("SELECT eid, tenant, doc FROM entities")?;
            let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
            rows.collect::<rusqlite::Result<_>>()?
        };
        for (eid, tenant, doc) in rows {
            crate::index::reindex(&tx, &tenant, eid, None, Some(&decode(&doc)?))?;
        }
    }
    tx.pragma_update(None, "user_version", SCHEMA_VERSION)?;
    tx.commit()
}

pub(crate) fn decode(doc: &str) -> rusqlite::Result<Entity> {
    serde_json::from_str(doc).map_err(|e| rusqlite::Error::ToSqlConversionFailure(Box::new(e)))
}

pub fn load_entity(conn: &Connection, tenant: &str, id: &str) -> rusqlite::Result<Option<Entity>> {
    let doc: Option<String> = conn
        .prepare_cached("SELECT doc FROM entities WHERE tenant = ?1 AND id = ?2")?
        .query_row(params![tenant, id], |row| row.get(0))
        .optional()?;
    doc.as_deref().map(decode).transpose()
}

/// Writes `entity`, whose stored state was `before`, and brings its indexes up to date.
pub fn save_entity(conn: &Connection, tenant: &str, before: Option<&Entity>, entity: &Entity) -> rusqlite::Result<()> {
    let doc = serde_json::to_string(entity).map_err(|e| rusqlite::Error::ToSqlConversionFailure(Box::new(e)))?;
    let eid: i64 = conn
        .prepare_cached(
            "INSERT INTO entities (tenant, id, doc) VALUES (?1, ?2, ?3)
             ON CONFLICT (tenant, id) DO UPDATE SET doc = excluded.doc RETURNING eid",
        )?
        .query_row(params![tenant, entity.id, doc], |r| r.get(0))?;
    crate::index::reindex(conn, tenant, eid, before, Some(entity))
}

/// Deletes the entity whose stored state is `before`, with its index rows.
pub fn delete_entity(conn: &Connection, tenant: &str, before: &Entity) -> rusqlite::Result<()> {
    let eid: Option<i64> = conn
        .prepare_cached("DELETE FROM entities WHERE tenant = ?1 AND id = ?2 RETURNING eid")?
        .query_row(params![tenant, before.id], |r| r.get(0))
        .optional()?;
    match eid {
        Some(eid) => crate::index::reindex(conn, tenant, eid, Some(before), None),
        None => Ok(()),
    }
}

pub fn put_context(conn: &Connection, c: &StoredContext) -> rusqlite::Result<()> {
    let document = c.document.to_string();
    conn.execute(
        "INSERT INTO contexts (id, kind, url, document, created_at, last_used_at, hits, tenant)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
         ON CONFLICT (id) DO UPDATE SET kind = excluded.kind, url = excluded.url, document = excluded.document,
             last_used_at = excluded.last_used_at, hits = excluded.hits",
        params![c.id, c.kind, c.url, document, c.created_at, c.last_used_at, c.number_of_hits as i64, c.tenant],
    )?;
    Ok(())
}

fn context_from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<StoredContext> {
    let document: String = row.get(3)?;
    Ok(StoredContext {
        id: row.get(0)?,
        kind: row.get(1)?,
        url: row.get(2)?,
        document: serde_json::from_str(&document).map_err(|e| rusqlite::Error::ToSqlConversionFailure(Box::new(e)))?,
        created_at: row.get(4)?,
        last_used_at: row.get(5)?,
        number_of_hits: row.get::<_, i64>(6)? as u64,
        tenant: row.get(7)?,
    })
}

const CONTEXT_COLUMNS: &str = "id, kind, url, document, created_at, last_used_at, hits, tenant";

pub fn get_context(conn: &Connection, id: &str) -> rusqlite::Result<Option<StoredContext>> {
    conn.query_row(&format!("SELECT {CONTEXT_COLUMNS} FROM contexts WHERE id = ?1"), [id], context_from_row).optional()
}

pub fn list_contexts(conn: &Connection) -> rusqlite::Result<Vec<StoredContext>> {
    let mut stmt = conn.prepare(&format!("SELECT {CONTEXT_COLUMNS} FROM contexts ORDER BY created_at, id"))?;
    let rows = stmt.query_map([], context_from_row)?;
    rows.collect()
}
