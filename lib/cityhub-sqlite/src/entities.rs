//! The `entities` table (current state: an integer key `eid` and the JSON document per tenant
//! and id) and `tenants` (every tenant that holds something). Writing an entity brings its
//! secondary indexes (`index`) up to date in the same transaction.

use ngsild_core::Entity;
use rusqlite::{params, Connection, OptionalExtension};

use crate::codec::{decode, to_json};
use crate::index::{self, Keys};

pub const TENANTS: &str = "CREATE TABLE IF NOT EXISTS tenants (name TEXT PRIMARY KEY) WITHOUT ROWID;";

/// The entities table as schema version 4 made it, under the name a migration moves it from.
/// eid is the key every index refers to; an explicit INTEGER PRIMARY KEY, so that no VACUUM ever
/// renumbers it.
pub const ENTITIES_V4: &str = "
    CREATE TABLE entities_v4 (
        eid INTEGER PRIMARY KEY,
        tenant TEXT NOT NULL,
        id TEXT NOT NULL,
        doc TEXT NOT NULL,
        UNIQUE (tenant, id)
    );";

/// Records that `tenant` holds something; true when it is new (the default tenant always exists
/// and is never recorded).
pub fn note_tenant(conn: &Connection, tenant: &str) -> rusqlite::Result<bool> {
    Ok(!tenant.is_empty()
        && conn.prepare_cached("INSERT OR IGNORE INTO tenants (name) VALUES (?1)")?.execute([tenant])? > 0)
}

pub fn tenant_exists(conn: &Connection, tenant: &str) -> rusqlite::Result<bool> {
    Ok(conn.query_row("SELECT 1 FROM tenants WHERE name = ?1", [tenant], |_| Ok(())).optional()?.is_some())
}

/// The tenants that hold something, by name.
pub fn tenants(conn: &Connection) -> rusqlite::Result<Vec<String>> {
    let mut stmt = conn.prepare("SELECT name FROM tenants ORDER BY name")?;
    let names = stmt.query_map([], |row| row.get(0))?;
    names.collect()
}

pub fn load_entity(conn: &Connection, tenant: &str, id: &str) -> rusqlite::Result<Option<Entity>> {
    let doc: Option<String> = conn
        .prepare_cached("SELECT doc FROM entities WHERE tenant = ?1 AND id = ?2")?
        .query_row(params![tenant, id], |row| row.get(0))
        .optional()?;
    doc.as_deref().map(decode).transpose()
}

/// Writes `entity`, whose stored state was `before`, and brings its indexes up to date.
pub fn save_entity(
    conn: &Connection,
    keys: &mut Keys,
    tenant: &str,
    before: Option<&Entity>,
    entity: &Entity,
) -> rusqlite::Result<()> {
    let doc = to_json(entity)?;
    let eid: i64 = conn
        .prepare_cached(
            "INSERT INTO entities (tenant, id, doc) VALUES (?1, ?2, ?3)
             ON CONFLICT (tenant, id) DO UPDATE SET doc = excluded.doc RETURNING eid",
        )?
        .query_row(params![tenant, entity.id, doc], |r| r.get(0))?;
    index::reindex(conn, keys, tenant, eid, before, Some(entity))
}

/// Deletes the entity whose stored state is `before`, with its index rows.
pub fn delete_entity(conn: &Connection, keys: &mut Keys, tenant: &str, before: &Entity) -> rusqlite::Result<()> {
    let eid: Option<i64> = conn
        .prepare_cached("DELETE FROM entities WHERE tenant = ?1 AND id = ?2 RETURNING eid")?
        .query_row(params![tenant, before.id], |r| r.get(0))
        .optional()?;
    match eid {
        Some(eid) => index::reindex(conn, keys, tenant, eid, Some(before), None),
        None => Ok(()),
    }
}
