//! The SQL of the embedded backend: schema, migrations, and row <-> model conversions.

use cityhub_storage::{EntityFilter, Page, Paging, StoredContext};
use ngsild_core::model::AttributeKind;
use ngsild_core::Entity;
use ngsild_query::q::{Literal, Op, Operand, QTerm};
use rusqlite::types::Value as SqlValue;
use rusqlite::{params, params_from_iter, Connection, OptionalExtension};
use serde_json::Value;

/// Bumped whenever the schema changes; `migrate` brings older files forward.
const SCHEMA_VERSION: i64 = 4;

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
         -- Rewriting an entity's types looks them up by id; without this, by a scan of the tenant.
         CREATE INDEX IF NOT EXISTS entity_types_by_id ON entity_types (tenant, id);
         CREATE TABLE IF NOT EXISTS contexts (
             id TEXT PRIMARY KEY,
             kind TEXT NOT NULL,
             url TEXT NOT NULL,
             document TEXT NOT NULL,
             created_at TEXT NOT NULL,
             last_used_at TEXT,
             hits INTEGER NOT NULL DEFAULT 0
         );
         -- One row per attribute (num and str NULL: it exists) and per scalar it holds, so that
         -- q terms on an attribute's value are answered by an index.
         CREATE TABLE IF NOT EXISTS attr_values (
             tenant TEXT NOT NULL,
             attr TEXT NOT NULL,
             num REAL,
             str TEXT,
             id TEXT NOT NULL
         );
         CREATE INDEX IF NOT EXISTS attr_values_num ON attr_values (tenant, attr, num);
         CREATE INDEX IF NOT EXISTS attr_values_str ON attr_values (tenant, attr, str);
         CREATE INDEX IF NOT EXISTS attr_values_entity ON attr_values (tenant, id);
         -- Bounding boxes of every GeoProperty instance, for geo-queries.
         CREATE VIRTUAL TABLE IF NOT EXISTS geo_boxes USING rtree (rowid, min_lon, max_lon, min_lat, max_lat);
         CREATE TABLE IF NOT EXISTS geo_entries (
             rowid INTEGER PRIMARY KEY,
             tenant TEXT NOT NULL,
             attr TEXT NOT NULL,
             id TEXT NOT NULL
         );
         CREATE INDEX IF NOT EXISTS geo_entries_entity ON geo_entries (tenant, id);",
    )?;
    tx.execute_batch(crate::temporal::SCHEMA)?;
    tx.execute_batch(crate::subscriptions::SCHEMA)?;
    if version == 1 {
        // Entities stored before the value and spatial indexes existed get their rows now.
        let rows: Vec<(String, String)> = {
            let mut stmt = tx.prepare("SELECT tenant, doc FROM entities")?;
            let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
            rows.collect::<rusqlite::Result<_>>()?
        };
        for (tenant, doc) in rows {
            index_entity(&tx, &tenant, &decode(&doc)?)?;
        }
    }
    tx.pragma_update(None, "user_version", SCHEMA_VERSION)?;
    tx.commit()
}

/// Writes the index rows of one entity (its old rows must be gone).
fn index_entity(conn: &Connection, tenant: &str, entity: &Entity) -> rusqlite::Result<()> {
    let mut insert_value =
        conn.prepare_cached("INSERT INTO attr_values (tenant, attr, num, str, id) VALUES (?1, ?2, ?3, ?4, ?5)")?;
    let mut insert_geo = conn.prepare_cached("INSERT INTO geo_entries (tenant, attr, id) VALUES (?1, ?2, ?3)")?;
    let mut insert_box = conn.prepare_cached(
        "INSERT INTO geo_boxes (rowid, min_lon, max_lon, min_lat, max_lat) VALUES (?1, ?2, ?3, ?4, ?5)",
    )?;
    for (name, instances) in &entity.attrs {
        insert_value.execute(params![tenant, name, None::<f64>, None::<String>, entity.id])?;
        let mut scalars = Vec::new();
        for attr in instances {
            if attr.kind == AttributeKind::GeoProperty {
                if let Some((min_lon, max_lon, min_lat, max_lat)) = ngsild_query::geo::bounding_box(&attr.value) {
                    insert_geo.execute(params![tenant, name, entity.id])?;
                    let rowid = conn.last_insert_rowid();
                    insert_box.execute(params![rowid, min_lon, max_lon, min_lat, max_lat])?;
                }
                continue;
            }
            collect_scalars(attr.kind, &attr.value, &mut scalars);
        }
        for scalar in scalars {
            match scalar {
                Value::Number(n) => {
                    insert_value.execute(params![tenant, name, n.as_f64(), None::<String>, entity.id])?
                }
                Value::String(text) => insert_value.execute(params![tenant, name, None::<f64>, text, entity.id])?,
                _ => 0,
            };
        }
    }
    Ok(())
}

/// The scalars a q comparison on the attribute itself can match (see `ngsild_query::q`).
fn collect_scalars(kind: AttributeKind, value: &Value, out: &mut Vec<Value>) {
    match (kind, value) {
        (AttributeKind::LanguageProperty, Value::Object(map)) => {
            map.values().for_each(|v| collect_scalars(kind, v, out))
        }
        (AttributeKind::ListRelationship, Value::Array(items)) => {
            items.iter().for_each(|i| collect_scalars(AttributeKind::Relationship, i.get("object").unwrap_or(i), out))
        }
        (_, Value::Array(items)) => items.iter().for_each(|i| collect_scalars(kind, i, out)),
        (_, Value::Number(_) | Value::String(_)) => out.push(value.clone()),
        _ => {}
    }
}

fn unindex_entity(conn: &Connection, tenant: &str, id: &str) -> rusqlite::Result<()> {
    conn.prepare_cached("DELETE FROM attr_values WHERE tenant = ?1 AND id = ?2")?.execute(params![tenant, id])?;
    // Delete R*Tree rows one rowid at a time: a `rowid IN (subquery)` delete scans the whole tree.
    let rowids: Vec<i64> = conn
        .prepare_cached("SELECT rowid FROM geo_entries WHERE tenant = ?1 AND id = ?2")?
        .query_map(params![tenant, id], |r| r.get(0))?
        .collect::<rusqlite::Result<_>>()?;
    let mut delete_box = conn.prepare_cached("DELETE FROM geo_boxes WHERE rowid = ?1")?;
    for rowid in &rowids {
        delete_box.execute([rowid])?;
    }
    if !rowids.is_empty() {
        conn.prepare_cached("DELETE FROM geo_entries WHERE tenant = ?1 AND id = ?2")?.execute(params![tenant, id])?;
    }
    Ok(())
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
    unindex_entity(conn, tenant, &entity.id)?;
    index_entity(conn, tenant, entity)
}

pub fn delete_entity(conn: &Connection, tenant: &str, id: &str) -> rusqlite::Result<()> {
    conn.prepare_cached("DELETE FROM entities WHERE tenant = ?1 AND id = ?2")?.execute(params![tenant, id])?;
    conn.prepare_cached("DELETE FROM entity_types WHERE tenant = ?1 AND id = ?2")?.execute(params![tenant, id])?;
    unindex_entity(conn, tenant, id)
}

/// The SQL that selects candidate documents for a filter, narrowed by every index the filter
/// allows: ids, types, indexable `q` terms (value and existence), and the spatial box of a
/// geo-query. Candidates are a superset of the matches; `EntityFilter::matches` decides.
pub fn candidate_sql(tenant: &str, filter: &EntityFilter) -> (String, Vec<SqlValue>) {
    let mut sql = String::from("SELECT doc FROM entities WHERE tenant = ?");
    let mut args: Vec<SqlValue> = vec![tenant.to_owned().into()];
    let list = |n: usize| vec!["?"; n].join(",");
    if !filter.ids.is_empty() {
        sql.push_str(&format!(" AND id IN ({})", list(filter.ids.len())));
        args.extend(filter.ids.iter().map(|id| SqlValue::from(id.clone())));
    }
    if let Some(types) = filter.types.as_ref().and_then(|t| t.as_type_list()) {
        sql.push_str(&format!(
            " AND id IN (SELECT id FROM entity_types WHERE tenant = ? AND type IN ({}))",
            list(types.len())
        ));
        args.push(tenant.to_owned().into());
        args.extend(types.into_iter().map(|t| SqlValue::from(t.to_owned())));
    }
    for term in filter.q.as_ref().map(|q| q.conjuncts()).unwrap_or_default() {
        if let Some((condition, values)) = indexable(term) {
            sql.push_str(&format!(
                " AND id IN (SELECT id FROM attr_values WHERE tenant = ? AND attr = ? AND {condition})"
            ));
            args.push(tenant.to_owned().into());
            args.push(term.path().attr.clone().into());
            args.extend(values);
        }
    }
    if let Some((min_lon, max_lon, min_lat, max_lat)) = filter.geo.as_ref().and_then(|g| g.search_box()) {
        sql.push_str(
            " AND id IN (SELECT e.id FROM geo_entries e JOIN geo_boxes b ON b.rowid = e.rowid
               WHERE e.tenant = ? AND e.attr = ? AND b.max_lon >= ? AND b.min_lon <= ? AND b.max_lat >= ? AND b.min_lat <= ?)",
        );
        let geoproperty = filter.geo.as_ref().map(|g| g.geoproperty.clone()).unwrap_or_default();
        args.extend([
            tenant.to_owned().into(),
            geoproperty.into(),
            min_lon.into(),
            max_lon.into(),
            min_lat.into(),
            max_lat.into(),
        ]);
    }
    sql.push_str(" ORDER BY id");
    (sql, args)
}

/// The SQL condition on `attr_values` that a q term implies, when there is one.
fn indexable(term: &QTerm) -> Option<(String, Vec<SqlValue>)> {
    let path = term.path();
    if !path.sub.is_empty() || !path.compound.is_empty() {
        return None;
    }
    let column = |lit: &Literal| match lit {
        Literal::Number(n) => Some(("num", SqlValue::Real(*n))),
        Literal::Text(t) => Some(("str", SqlValue::Text(t.clone()))),
        _ => None,
    };
    match term {
        QTerm::Exists(_) => Some(("1".to_owned(), Vec::new())),
        QTerm::Compare(_, op, Operand::One(lit)) => {
            let (col, value) = column(lit)?;
            let cmp = match op {
                Op::Eq => "=",
                Op::Gt => ">",
                Op::Ge => ">=",
                Op::Lt => "<",
                Op::Le => "<=",
                _ => return None,
            };
            Some((format!("{col} {cmp} ?"), vec![value]))
        }
        QTerm::Compare(_, Op::Eq, Operand::Range(lo, hi)) => {
            let (col, lo) = column(lo)?;
            let (col2, hi) = column(hi)?;
            (col == col2).then(|| (format!("{col} BETWEEN ? AND ?"), vec![lo, hi]))
        }
        QTerm::Compare(_, Op::Eq, Operand::List(items)) => {
            let columns: Vec<(&str, SqlValue)> = items.iter().map(column).collect::<Option<_>>()?;
            let condition = columns.iter().map(|(col, _)| format!("{col} = ?")).collect::<Vec<_>>().join(" OR ");
            Some((format!("({condition})"), columns.into_iter().map(|(_, v)| v).collect()))
        }
        _ => None,
    }
}

/// Picks candidates with the indexes the filter allows, checks the whole filter in Rust, and keeps
/// only the requested page while counting every match.
pub fn query(conn: &Connection, tenant: &str, filter: &EntityFilter, paging: Paging) -> rusqlite::Result<Page> {
    let (sql, args) = candidate_sql(tenant, filter);

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
