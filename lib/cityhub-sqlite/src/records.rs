//! The `records` table: documents kept beside entities, one JSON document per (tenant, kind, id)
//! (context source registrations: `RecordKind`), listed in the order they were first written.

use cityhub_storage::RecordKind;
use rusqlite::{params, Connection};
use serde_json::Value;

use crate::codec::{from_json, to_json};

pub const SCHEMA: &str = "
    CREATE TABLE IF NOT EXISTS records (
        tenant TEXT NOT NULL,
        kind TEXT NOT NULL,
        id TEXT NOT NULL,
        doc TEXT NOT NULL,
        PRIMARY KEY (tenant, kind, id)
    );";

/// Inserts a record; false (nothing written) when the id is taken.
pub fn create(conn: &Connection, tenant: &str, kind: RecordKind, id: &str, doc: &Value) -> rusqlite::Result<bool> {
    Ok(conn
        .prepare_cached("INSERT OR IGNORE INTO records (tenant, kind, id, doc) VALUES (?1, ?2, ?3, ?4)")?
        .execute(params![tenant, kind.name(), id, to_json(doc)?])?
        > 0)
}

/// Replaces a record's document; false (nothing written) when there is none with this id.
pub fn replace(conn: &Connection, tenant: &str, kind: RecordKind, id: &str, doc: &Value) -> rusqlite::Result<bool> {
    Ok(conn
        .prepare_cached("UPDATE records SET doc = ?4 WHERE tenant = ?1 AND kind = ?2 AND id = ?3")?
        .execute(params![tenant, kind.name(), id, to_json(doc)?])?
        > 0)
}

pub fn delete(conn: &Connection, tenant: &str, kind: RecordKind, id: &str) -> rusqlite::Result<bool> {
    Ok(conn.prepare_cached("DELETE FROM records WHERE tenant = ?1 AND kind = ?2 AND id = ?3")?.execute(params![
        tenant,
        kind.name(),
        id
    ])? > 0)
}

/// Every record of a kind in a tenant, in the order they were first written.
pub fn list(conn: &Connection, tenant: &str, kind: RecordKind) -> rusqlite::Result<Vec<Value>> {
    let mut stmt = conn.prepare_cached("SELECT doc FROM records WHERE tenant = ?1 AND kind = ?2 ORDER BY rowid")?;
    let docs = stmt.query_map(params![tenant, kind.name()], |row| row.get::<_, String>(0))?;
    docs.map(|doc| from_json(&doc?)).collect()
}
