//! The SQL of the embedded backend: schema, migrations, and row <-> model conversions.

use cityhub_storage::{EntityFilter, Page, Paging, StoredContext};
use ngsild_core::Entity;
use rusqlite::{params, params_from_iter, Connection, OptionalExtension};

/// Bumped whenever the schema changes; `migrate` brings older files forward.
const SCHEMA_VERSION: i64 = 1;

pub fn configure_writer(conn: &Connection) -> rusqlite::Result<()> {
    // WAL lets readers run beside the writer; synchronous=FULL makes every commit durable against
    // power loss, not only against a crash of the process.
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.pragma_update(None, "busy_timeout", 10_000)?;
    conn.pragma_update(None, "cache_size", -64_000)?;
    Ok(())
}

pub fn configure_reader(conn: &Connection) -> rusqlite::Result<()> {
    conn.pragma_update(None, "busy_timeout", 10_000)?;
    conn.pragma_update(None, "cache_size", -32_000)?;
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
         CREATE TABLE IF NOT EXISTS entities (
             tenant TEXT NOT NULL,
             id TEXT NOT NULL,
             doc TEXT NOT NULL,
             PRIMARY KEY (tenant, id)
         );
         CREATE TABLE IF NOT EXISTS entity_types (
             tenant TEXT NOT NULL,
             type TEXT NOT NULL,
             id TEXT NOT NULL,
             PRIMARY KEY (tenant, type, id)
         ) WITHOUT ROWID;
         CREATE TABLE IF NOT EXISTS contexts (
             id TEXT PRIMARY KEY,
             kind TEXT NOT NULL,
             url TEXT NOT NULL,
             document TEXT NOT NULL,
             created_at TEXT NOT NULL,
             last_used_at TEXT,
             hits INTEGER NOT NULL DEFAULT 0
         );",
    )?;
    tx.pragma_update(None, "user_version", SCHEMA_VERSION)?;
    tx.commit()
}

fn decode(doc: &str) -> rusqlite::Result<Entity> {
    serde_json::from_str(doc).map_err(|e| rusqlite::Error::ToSqlConversionFailure(Box::new(e)))
}

pub fn load_entity(conn: &Connection, tenant: &str, id: &str) -> rusqlite::Result<Option<Entity>> {
    let doc: Option<String> = conn
        .prepare_cached("SELECT doc FROM entities WHERE tenant = ?1 AND id = ?2")?
        .query_row(params![tenant, id], |row| row.get(0))
        .optional()?;
    doc.as_deref().map(decode).transpose()
}

pub fn save_entity(conn: &Connection, tenant: &str, entity: &Entity) -> rusqlite::Result<()> {
    let doc = serde_json::to_string(entity).map_err(|e| rusqlite::Error::ToSqlConversionFailure(Box::new(e)))?;
    conn.prepare_cached(
        "INSERT INTO entities (tenant, id, doc) VALUES (?1, ?2, ?3)
         ON CONFLICT (tenant, id) DO UPDATE SET doc = excluded.doc",
    )?
    .execute(params![tenant, entity.id, doc])?;
    conn.prepare_cached("DELETE FROM entity_types WHERE tenant = ?1 AND id = ?2")?
        .execute(params![tenant, entity.id])?;
    let mut insert_type =
        conn.prepare_cached("INSERT OR IGNORE INTO entity_types (tenant, type, id) VALUES (?1, ?2, ?3)")?;
    for t in &entity.types {
        insert_type.execute(params![tenant, t, entity.id])?;
    }
    Ok(())
}

pub fn delete_entity(conn: &Connection, tenant: &str, id: &str) -> rusqlite::Result<()> {
    conn.prepare_cached("DELETE FROM entities WHERE tenant = ?1 AND id = ?2")?.execute(params![tenant, id])?;
    conn.prepare_cached("DELETE FROM entity_types WHERE tenant = ?1 AND id = ?2")?.execute(params![tenant, id])?;
    Ok(())
}

/// Picks candidates with the indexes the filter allows (ids, then types), checks the rest of the
/// filter in Rust, and keeps only the requested page while counting every match.
pub fn query(conn: &Connection, tenant: &str, filter: &EntityFilter, paging: Paging) -> rusqlite::Result<Page> {
    let mut sql = String::from("SELECT doc FROM entities WHERE tenant = ?");
    let mut args: Vec<&str> = vec![tenant];
    if !filter.ids.is_empty() {
        sql.push_str(&format!(" AND id IN ({})", vec!["?"; filter.ids.len()].join(",")));
        args.extend(filter.ids.iter().map(String::as_str));
    } else if let Some(types) = filter.types.as_ref().and_then(|t| t.as_type_list()) {
        sql.push_str(&format!(
            " AND id IN (SELECT id FROM entity_types WHERE tenant = ? AND type IN ({}))",
            vec!["?"; types.len()].join(",")
        ));
        args.push(tenant);
        args.extend(types);
    }
    sql.push_str(" ORDER BY id");
    let mut stmt = conn.prepare_cached(&sql)?;
    let mut rows = stmt.query(params_from_iter(args))?;
    let mut page = Page::default();
    let mut matched = 0usize;
    while let Some(row) = rows.next()? {
        let doc: String = row.get(0)?;
        let entity = decode(&doc)?;
        if !filter.matches(&entity) {
            continue;
        }
        if matched >= paging.offset && page.entities.len() < paging.limit {
            page.entities.push(entity);
        }
        matched += 1;
        if !paging.count && page.entities.len() >= paging.limit && matched > paging.offset {
            break;
        }
    }
    if paging.count {
        page.total = Some(matched);
    }
    Ok(page)
}

pub fn put_context(conn: &Connection, c: &StoredContext) -> rusqlite::Result<()> {
    let document = c.document.to_string();
    conn.execute(
        "INSERT INTO contexts (id, kind, url, document, created_at, last_used_at, hits)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
         ON CONFLICT (id) DO UPDATE SET kind = excluded.kind, url = excluded.url, document = excluded.document,
             last_used_at = excluded.last_used_at, hits = excluded.hits",
        params![c.id, c.kind, c.url, document, c.created_at, c.last_used_at, c.number_of_hits as i64],
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
    })
}

const CONTEXT_COLUMNS: &str = "id, kind, url, document, created_at, last_used_at, hits";

pub fn get_context(conn: &Connection, id: &str) -> rusqlite::Result<Option<StoredContext>> {
    conn.query_row(&format!("SELECT {CONTEXT_COLUMNS} FROM contexts WHERE id = ?1"), [id], context_from_row).optional()
}

pub fn list_contexts(conn: &Connection) -> rusqlite::Result<Vec<StoredContext>> {
    let mut stmt = conn.prepare(&format!("SELECT {CONTEXT_COLUMNS} FROM contexts ORDER BY created_at, id"))?;
    let rows = stmt.query_map([], context_from_row)?;
    rows.collect()
}
