//! The `contexts` table: JSON-LD @context documents the hub hosts (`/jsonldContexts`) or cached,
//! served hub-wide; each records the tenant that added it.

use cityhub_storage::StoredContext;
use rusqlite::{params, Connection, OptionalExtension};

use crate::codec::{from_json, has_column};

/// The table as schema version 1 made it; [`migrate`] adds what later versions did.
pub const SCHEMA: &str = "
    CREATE TABLE IF NOT EXISTS contexts (
        id TEXT PRIMARY KEY,
        kind TEXT NOT NULL,
        url TEXT NOT NULL,
        document TEXT NOT NULL,
        created_at TEXT NOT NULL,
        last_used_at TEXT,
        hits INTEGER NOT NULL DEFAULT 0
    );";

/// Version 10 records which tenant hosted a context (contexts from before belong to the default
/// tenant).
pub fn migrate(conn: &Connection) -> rusqlite::Result<()> {
    if !has_column(conn, "contexts", "tenant")? {
        conn.execute_batch("ALTER TABLE contexts ADD COLUMN tenant TEXT NOT NULL DEFAULT ''")?;
    }
    Ok(())
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
        document: from_json(&document)?,
        created_at: row.get(4)?,
        last_used_at: row.get(5)?,
        number_of_hits: row.get::<_, i64>(6)? as u64,
        tenant: row.get(7)?,
    })
}

const CONTEXT_COLUMNS: &str = "id, kind, url, document, created_at, last_used_at, hits, tenant";

pub fn delete_context(conn: &Connection, id: &str) -> rusqlite::Result<bool> {
    Ok(conn.execute("DELETE FROM contexts WHERE id = ?1", [id])? > 0)
}

pub fn get_context(conn: &Connection, id: &str) -> rusqlite::Result<Option<StoredContext>> {
    conn.query_row(&format!("SELECT {CONTEXT_COLUMNS} FROM contexts WHERE id = ?1"), [id], context_from_row).optional()
}

pub fn list_contexts(conn: &Connection) -> rusqlite::Result<Vec<StoredContext>> {
    let mut stmt = conn.prepare(&format!("SELECT {CONTEXT_COLUMNS} FROM contexts ORDER BY created_at, id"))?;
    let rows = stmt.query_map([], context_from_row)?;
    rows.collect()
}
