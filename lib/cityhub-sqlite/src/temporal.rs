//! The history of entities: every attribute instance ever written, indexed by entity, attribute
//! and each time property. This module stores and retrieves only: which instances a change
//! records, how temporal-API instances fold into the current entity, and how aggregated values
//! accumulate are `ngsild_core::history`'s. Aggregation is one range scan per series over the
//! covering index, its rows streamed in time order into a `history::SeriesAccumulator`, so the
//! store holds one period's accumulators per series in memory, never the instances.

use cityhub_storage::{TemporalOutcome, TemporalPage, TemporalQuery, TemporalWrite};
use ngsild_core::history;
use ngsild_core::model::Attribute;
use ngsild_core::temporal::{AggrMethod, AggregateSeries, Instance, TemporalEntity, TimeProperty};
use ngsild_core::time::{datetime_of_micros, format_time, micros, micros_of, now};
use ngsild_core::{Entity, NgsiLdError};
use rusqlite::types::Value as SqlValue;
use rusqlite::{params, params_from_iter, Connection, OptionalExtension};

use crate::codec::{from_json, one_of, sql_err, to_json};
use crate::index::Keys;
use crate::{entities, ledger};

pub const SCHEMA: &str = "
    CREATE TABLE IF NOT EXISTS temporal_entities (
        tenant TEXT NOT NULL,
        id TEXT NOT NULL,
        types TEXT NOT NULL,
        scope TEXT NOT NULL,
        created_at TEXT NOT NULL,
        modified_at TEXT NOT NULL,
        deleted_at TEXT,
        PRIMARY KEY (tenant, id)
    ) WITHOUT ROWID;
    CREATE TABLE IF NOT EXISTS temporal_types (
        tenant TEXT NOT NULL,
        type TEXT NOT NULL,
        id TEXT NOT NULL,
        PRIMARY KEY (tenant, type, id)
    ) WITHOUT ROWID;
    CREATE INDEX IF NOT EXISTS temporal_types_by_id ON temporal_types (tenant, id);
    -- One row per (entity, attribute) with a history. The history's rows and indexes carry its
    -- integer sid instead of three text keys: an index entry is ~25 bytes instead of ~130, so
    -- an aggregation streams a quarter of the pages and a write touches fewer.
    CREATE TABLE IF NOT EXISTS attr_series (
        sid INTEGER PRIMARY KEY,
        tenant TEXT NOT NULL,
        entity_id TEXT NOT NULL,
        attr TEXT NOT NULL,
        UNIQUE (tenant, entity_id, attr)
    );
    -- t_* are microseconds since the Unix epoch. An instance's id is urn:ngsi-ld:Instance:<seq>
    -- (AUTOINCREMENT: the seq of a deleted instance is never given again), except for instances
    -- stored before schema version 9, which keep theirs in legacy_instance_id.
    CREATE TABLE IF NOT EXISTS attr_history (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        sid INTEGER NOT NULL,
        dataset_id TEXT,
        doc TEXT NOT NULL,
        val TEXT NOT NULL,
        num REAL,
        t_observed INTEGER,
        t_created INTEGER NOT NULL,
        t_modified INTEGER NOT NULL,
        t_deleted INTEGER,
        legacy_instance_id TEXT
    );
    -- Covering for numeric aggregation over observedAt (see aggregate()). Queries over
    -- modifiedAt and deletedAt read the series through it and filter: they are rare, and two
    -- more indexes would cost every write two more random pages.
    CREATE INDEX IF NOT EXISTS attr_history_observed ON attr_history (sid, t_observed, dataset_id, t_deleted, num);
    CREATE INDEX IF NOT EXISTS attr_history_created ON attr_history (sid, t_created);
    CREATE UNIQUE INDEX IF NOT EXISTS attr_history_legacy ON attr_history (legacy_instance_id)
        WHERE legacy_instance_id IS NOT NULL;
";

/// Whether `attr_history` is the one of schema versions before 9, keyed by text.
pub fn is_text_keyed(conn: &Connection) -> rusqlite::Result<bool> {
    let columns: i64 = conn.query_row(
        "SELECT COUNT(*) FROM pragma_table_info('attr_history') WHERE name IN ('entity_id', 'instance_id')",
        [],
        |r| r.get(0),
    )?;
    Ok(columns == 2)
}

/// Renames the text-keyed history and drops its indexes, whose names the new schema reuses.
pub const SET_ASIDE_TEXT_KEYED: &str = "
    DROP INDEX IF EXISTS attr_history_instance;
    DROP INDEX IF EXISTS attr_history_observed;
    DROP INDEX IF EXISTS attr_history_created;
    DROP INDEX IF EXISTS attr_history_modified;
    DROP INDEX IF EXISTS attr_history_deleted;
    ALTER TABLE attr_history RENAME TO attr_history_text_keyed;
";

/// Copies the set-aside history into the series-keyed one, in its order, keeping instance ids.
pub fn move_text_keyed(conn: &Connection) -> rusqlite::Result<()> {
    type OldRow = (String, String, String, String, Option<String>, String, String, Option<f64>);
    let rows: Vec<(OldRow, [Option<String>; 4])> = {
        let mut stmt = conn.prepare(
            "SELECT tenant, entity_id, attr, instance_id, dataset_id, doc, val, num,
                    t_observed, t_created, t_modified, t_deleted
             FROM attr_history_text_keyed ORDER BY seq",
        )?;
        let rows = stmt.query_map([], |r| {
            Ok((
                (r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?, r.get(6)?, r.get(7)?),
                [r.get(8)?, r.get(9)?, r.get(10)?, r.get(11)?],
            ))
        })?;
        rows.collect::<rusqlite::Result<_>>()?
    };
    let mut insert = conn.prepare(
        "INSERT INTO attr_history (sid, dataset_id, doc, val, num, t_observed, t_created, t_modified, t_deleted,
                                   legacy_instance_id)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
    )?;
    for ((tenant, entity_id, attr, instance_id, dataset_id, doc, val, num), times) in rows {
        let sid = series_id(conn, &mut Keys::default(), &tenant, &entity_id, &attr)?;
        let [observed, created, modified, deleted] = times.map(|t| micros_of(t.as_deref()));
        insert.execute(params![
            sid,
            dataset_id,
            doc,
            val,
            num,
            observed,
            created.unwrap_or_default(),
            modified.unwrap_or_default(),
            deleted,
            instance_id
        ])?;
    }
    conn.execute_batch("DROP TABLE attr_history_text_keyed")
}

/// The row of the instance `instance_id` of the series `sid`, if it has one.
fn find_instance(conn: &Connection, sid: i64, instance_id: &str) -> rusqlite::Result<Option<i64>> {
    match instance_id.strip_prefix(history::INSTANCE_PREFIX).and_then(|n| n.parse::<i64>().ok()) {
        Some(seq) => conn
            .prepare_cached("SELECT seq FROM attr_history WHERE seq = ?1 AND sid = ?2 AND legacy_instance_id IS NULL")?
            .query_row(params![seq, sid], |r| r.get(0))
            .optional(),
        None => conn
            .prepare_cached("SELECT seq FROM attr_history WHERE legacy_instance_id = ?1 AND sid = ?2")?
            .query_row(params![instance_id, sid], |r| r.get(0))
            .optional(),
    }
}

/// The series of an entity's attribute; `create` makes it when missing.
fn series(conn: &Connection, tenant: &str, entity_id: &str, attr: &str) -> rusqlite::Result<Option<i64>> {
    conn.prepare_cached("SELECT sid FROM attr_series WHERE tenant = ?1 AND entity_id = ?2 AND attr = ?3")?
        .query_row(params![tenant, entity_id, attr], |r| r.get(0))
        .optional()
}

/// The series id of (entity, attribute), created when it has none yet.
fn series_id(conn: &Connection, keys: &mut Keys, tenant: &str, entity_id: &str, attr: &str) -> rusqlite::Result<i64> {
    let name = Keys::name(tenant, entity_id, attr);
    if let Some(sid) = keys.series.get(&name) {
        return Ok(*sid);
    }
    let sid = match series(conn, tenant, entity_id, attr)? {
        Some(sid) => sid,
        None => {
            conn.prepare_cached("INSERT INTO attr_series (tenant, entity_id, attr) VALUES (?1, ?2, ?3)")?
                .execute(params![tenant, entity_id, attr])?;
            conn.last_insert_rowid()
        }
    };
    Keys::remember(&mut keys.series, name, sid);
    Ok(sid)
}

fn column(property: TimeProperty) -> &'static str {
    match property {
        TimeProperty::ObservedAt => "t_observed",
        TimeProperty::CreatedAt => "t_created",
        TimeProperty::ModifiedAt => "t_modified",
        TimeProperty::DeletedAt => "t_deleted",
    }
}

/// One instance's row: its document and the columns `ngsild_core::history` says it keeps.
struct InstanceRow {
    doc: String,
    cols: history::InstanceColumns,
}

impl InstanceRow {
    fn of(attr: &Attribute, deleted_at: Option<&str>) -> rusqlite::Result<InstanceRow> {
        let now = chrono::Utc::now().timestamp_micros();
        Ok(InstanceRow { doc: to_json(attr)?, cols: history::InstanceColumns::of(attr, deleted_at, now) })
    }

    /// Runs `sql` with `?1` bound to `key` and `?2`..`?9` to the row's columns.
    fn write(&self, conn: &Connection, sql: &str, key: i64) -> rusqlite::Result<usize> {
        conn.prepare_cached(sql)?.execute(params![
            key,
            self.cols.dataset_id,
            self.doc,
            self.cols.val,
            self.cols.num,
            self.cols.observed,
            self.cols.created,
            self.cols.modified,
            self.cols.deleted
        ])
    }
}

/// Appends an instance to the history of `attr_name`.
fn insert_instance(
    conn: &Connection,
    keys: &mut Keys,
    tenant: &str,
    entity_id: &str,
    attr_name: &str,
    attr: &Attribute,
    deleted_at: Option<&str>,
) -> rusqlite::Result<()> {
    let sid = series_id(conn, keys, tenant, entity_id, attr_name)?;
    let row = InstanceRow::of(attr, deleted_at)?;
    row.write(
        conn,
        "INSERT INTO attr_history (sid, dataset_id, doc, val, num, t_observed, t_created, t_modified, t_deleted)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
        sid,
    )?;
    let seq = conn.last_insert_rowid();
    ledger::record(conn, tenant, entity_id, attr_name, attr.dataset_id.as_deref(), seq, &row.doc, deleted_at)
}

/// Creates or refreshes the entity's row of the temporal representation: `created` is its
/// creation time if the row is new, `modified` its modification time.
pub fn touch_entity(
    conn: &Connection,
    tenant: &str,
    entity: &Entity,
    created: &str,
    modified: &str,
) -> rusqlite::Result<()> {
    let types = to_json(&entity.types)?;
    let scope = to_json(&entity.scope)?;
    let stored_types: Option<String> = conn
        .prepare_cached("SELECT types FROM temporal_entities WHERE tenant = ?1 AND id = ?2")?
        .query_row(params![tenant, entity.id], |row| row.get(0))
        .optional()?;
    conn.prepare_cached(
        "INSERT INTO temporal_entities (tenant, id, types, scope, created_at, modified_at, deleted_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, NULL)
         ON CONFLICT (tenant, id) DO UPDATE SET types = ?3, scope = ?4, modified_at = ?6, deleted_at = NULL",
    )?
    .execute(params![tenant, entity.id, types, scope, created, modified])?;
    // Most writes keep the types; rewriting the type index on each would double their work.
    if stored_types.as_deref() != Some(types.as_str()) {
        conn.prepare_cached("DELETE FROM temporal_types WHERE tenant = ?1 AND id = ?2")?
            .execute(params![tenant, entity.id])?;
        let mut insert =
            conn.prepare_cached("INSERT OR IGNORE INTO temporal_types (tenant, type, id) VALUES (?1, ?2, ?3)")?;
        for t in &entity.types {
            insert.execute(params![tenant, t, entity.id])?;
        }
    }
    Ok(())
}

/// Records what a modification through the entity API changed (`ngsild_core::history::recorded`:
/// every instance that is new or different, and a deletion for every instance that went).
/// The entity's row of the temporal representation is the caller's to refresh when the change
/// leaves the entity existing ([`touch_entity`]; the writer does it once per entity per group),
/// and must be refreshed before a deletion is recorded here.
pub fn record_change(
    conn: &Connection,
    keys: &mut Keys,
    tenant: &str,
    before: Option<&Entity>,
    after: Option<&Entity>,
    now: &str,
) -> rusqlite::Result<()> {
    let Some(id) = after.or(before).map(|e| e.id.as_str()) else { return Ok(()) };
    for r in history::recorded(before, after, now) {
        insert_instance(conn, keys, tenant, id, &r.attr, &r.attribute, r.deleted_at.as_deref())?;
    }
    if before.is_some() && after.is_none() {
        conn.prepare_cached(
            "UPDATE temporal_entities SET deleted_at = ?3, modified_at = ?3 WHERE tenant = ?1 AND id = ?2",
        )?
        .execute(params![tenant, id, now])?;
    }
    Ok(())
}

/// Applies a write of the temporal API inside the caller's transaction.
pub fn apply_write(
    conn: &Connection,
    tenant: &str,
    id: &str,
    write: TemporalWrite,
) -> rusqlite::Result<Result<TemporalOutcome, NgsiLdError>> {
    let now = now();
    // Its own keys: this write may delete series the writer's cache would still name.
    let keys = &mut Keys::default();
    let exists = conn
        .prepare_cached("SELECT 1 FROM temporal_entities WHERE tenant = ?1 AND id = ?2")?
        .query_row(params![tenant, id], |_| Ok(()))
        .optional()?
        .is_some();
    let not_found = || Ok(Err(NgsiLdError::not_found(format!("no temporal representation of {id}"))));
    match write {
        TemporalWrite::AddInstances { entity: mut input, must_exist } => {
            if must_exist && !exists {
                return not_found();
            }
            let current = entities::load_entity(conn, tenant, id)?;
            input.id = id.to_owned();
            let fold = history::fold_instances(current.as_ref(), input, &now);
            for (name, attr) in &fold.instances {
                // An observation of the same series at the same time replaces the earlier one.
                if let (Some(observed), Some(sid)) =
                    (micros_of(attr.observed_at.as_deref()), series(conn, tenant, id, name)?)
                {
                    let dataset_id = attr.dataset_id.as_deref();
                    ledger::removing(conn, tenant, ledger::Removal::Observation { sid, observed, dataset_id })?;
                    conn.prepare_cached(
                        "DELETE FROM attr_history WHERE sid = ?1 AND t_observed = ?2 AND dataset_id IS ?3",
                    )?
                    .execute(params![sid, observed, attr.dataset_id])?;
                }
                insert_instance(conn, keys, tenant, id, name, attr, None)?;
            }
            entities::save_entity(conn, keys, tenant, current.as_ref(), &fold.entity)?;
            touch_entity(conn, tenant, &fold.entity, &now, &now)?;
            Ok(Ok(if exists { TemporalOutcome::Updated } else { TemporalOutcome::Created }))
        }
        TemporalWrite::DeleteEntity => {
            if !exists {
                return not_found();
            }
            ledger::removing(conn, tenant, ledger::Removal::Entity { entity: id })?;
            for table in [
                "attr_history WHERE sid IN (SELECT sid FROM attr_series WHERE tenant = ?1 AND entity_id = ?2)",
                "attr_series WHERE tenant = ?1 AND entity_id = ?2",
                "temporal_entities WHERE tenant = ?1 AND id = ?2",
                "temporal_types WHERE tenant = ?1 AND id = ?2",
            ] {
                conn.execute(&format!("DELETE FROM {table}"), params![tenant, id])?;
            }
            if let Some(current) = entities::load_entity(conn, tenant, id)? {
                entities::delete_entity(conn, keys, tenant, &current)?;
            }
            Ok(Ok(TemporalOutcome::Updated))
        }
        TemporalWrite::DeleteAttribute { attr, dataset_id, all } => {
            if !exists {
                return not_found();
            }
            let sid = series(conn, tenant, id, &attr)?;
            let deleted = match sid {
                None => 0,
                Some(sid) if all => {
                    ledger::removing(conn, tenant, ledger::Removal::Series { sid, dataset_id: None })?;
                    conn.execute("DELETE FROM attr_series WHERE sid = ?1", [sid])?;
                    conn.execute("DELETE FROM attr_history WHERE sid = ?1", [sid])?
                }
                Some(sid) => {
                    let removal = ledger::Removal::Series { sid, dataset_id: Some(dataset_id.as_deref()) };
                    ledger::removing(conn, tenant, removal)?;
                    conn.execute(
                        "DELETE FROM attr_history WHERE sid = ?1 AND dataset_id IS ?2",
                        params![sid, dataset_id],
                    )?
                }
            };
            if deleted == 0 {
                return Ok(Err(NgsiLdError::not_found(format!("{id} has no history of attribute {attr}"))));
            }
            if let Some(current) = entities::load_entity(conn, tenant, id)? {
                let mut entity = current.clone();
                if entity.remove_instances(&attr, dataset_id.as_deref(), all) > 0 {
                    entity.modified_at = Some(now.clone());
                    entities::save_entity(conn, keys, tenant, Some(&current), &entity)?;
                }
            }
            Ok(Ok(TemporalOutcome::Updated))
        }
        TemporalWrite::ReplaceInstance { attr, instance_id, mut attribute } => {
            let not_found = || Ok(Err(NgsiLdError::not_found(format!("no instance {instance_id} of {attr} in {id}"))));
            let Some(sid) = series(conn, tenant, id, &attr)? else { return not_found() };
            let Some(seq) = find_instance(conn, sid, &instance_id)? else { return not_found() };
            let doc: String =
                conn.prepare_cached("SELECT doc FROM attr_history WHERE seq = ?1")?.query_row([seq], |r| r.get(0))?;
            let old: Attribute = from_json(&doc)?;
            attribute.created_at = old.created_at.clone();
            attribute.modified_at = Some(now.clone());
            if attribute.dataset_id.is_none() {
                attribute.dataset_id = old.dataset_id.clone();
            }
            // In place, so that the instance keeps its id.
            ledger::replacing(conn, seq)?;
            let row = InstanceRow::of(&attribute, None)?;
            row.write(
                conn,
                "UPDATE attr_history SET dataset_id = ?2, doc = ?3, val = ?4, num = ?5, t_observed = ?6,
                 t_created = ?7, t_modified = ?8, t_deleted = ?9 WHERE seq = ?1",
                seq,
            )?;
            ledger::replaced(conn, tenant, seq, &row.doc)?;
            Ok(Ok(TemporalOutcome::Updated))
        }
        TemporalWrite::DeleteInstance { attr, instance_id } => {
            let seq = match series(conn, tenant, id, &attr)? {
                Some(sid) => find_instance(conn, sid, &instance_id)?,
                None => None,
            };
            let Some(seq) = seq else {
                return Ok(Err(NgsiLdError::not_found(format!("no instance {instance_id} of {attr} in {id}"))));
            };
            ledger::removing(conn, tenant, ledger::Removal::Row { seq })?;
            conn.execute("DELETE FROM attr_history WHERE seq = ?1", [seq])?;
            Ok(Ok(TemporalOutcome::Updated))
        }
    }
}

/// Runs a temporal query.
pub fn query(conn: &Connection, tenant: &str, q: &TemporalQuery) -> rusqlite::Result<TemporalPage> {
    let mut ids = matching_ids(conn, tenant, q)?;
    if let Some(order) = q.filter.order.as_ref().filter(|o| !o.is_by_id()) {
        ids = ordered_ids(conn, tenant, ids, order, q.paging.offset.saturating_add(q.paging.limit))?;
    }
    let total = q.paging.count.then_some(ids.len());
    let mut entities = Vec::new();
    for id in ids.into_iter().skip(q.paging.offset).take(q.paging.limit) {
        if let Some(entity) = load(conn, tenant, &id, q)? {
            if !(q.skip_empty && entity.attrs.is_empty() && entity.aggregates.is_empty()) {
                entities.push(entity);
            }
        }
    }
    Ok(TemporalPage { entities, total })
}

/// The first `wanted` of `ids` in an `orderBy`, judged on each entity's current state (an entity
/// with only a history has no values and goes last); the rest follow in id order so the count
/// stays whole.
fn ordered_ids(
    conn: &Connection,
    tenant: &str,
    ids: Vec<String>,
    order: &ngsild_query::OrderBy,
    wanted: usize,
) -> rusqlite::Result<Vec<String>> {
    let mut first = ngsild_query::order::FirstInOrder::new(order, wanted);
    for id in &ids {
        let current = entities::load_entity(conn, tenant, id)?.unwrap_or_else(|| Entity::new(id.clone(), Vec::new()));
        first.push(order.key(&current), id.clone());
    }
    let mut out = first.finish();
    let taken: std::collections::HashSet<&String> = out.iter().collect();
    let rest: Vec<String> = ids.iter().filter(|id| !taken.contains(id)).cloned().collect();
    out.extend(rest);
    Ok(out)
}

/// Ids of entities with a history that the query selects, in id order.
fn matching_ids(conn: &Connection, tenant: &str, q: &TemporalQuery) -> rusqlite::Result<Vec<String>> {
    let f = &q.filter;
    let mut sql = String::from("SELECT id, types FROM temporal_entities WHERE tenant = ?");
    let mut args: Vec<SqlValue> = vec![tenant.to_owned().into()];
    if !f.ids.is_empty() {
        let ids = one_of("id", &f.ids, &mut args);
        sql.push_str(&format!(" AND {ids}"));
    }
    if let Some(names) = f.types.as_ref().and_then(|t| t.as_type_list()) {
        args.push(tenant.to_owned().into());
        let names: Vec<String> = names.into_iter().map(str::to_owned).collect();
        let types = one_of("type", &names, &mut args);
        sql.push_str(&format!(" AND id IN (SELECT id FROM temporal_types WHERE tenant = ? AND {types})"));
    }
    sql.push_str(" ORDER BY id");
    let mut stmt = conn.prepare(&sql)?;
    let rows = stmt.query_map(params_from_iter(args), |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))?;
    let needs_current = f.q.is_some() || f.scope_q.is_some() || f.geo.is_some();
    let mut ids = Vec::new();
    for row in rows {
        let (id, types) = row?;
        let types: Vec<String> = from_json(&types)?;
        if f.id_pattern.as_ref().is_some_and(|re| !re.is_match(&id))
            || f.types.as_ref().is_some_and(|t| !t.matches(&types))
        {
            continue;
        }
        if needs_current {
            let current = entities::load_entity(conn, tenant, &id)?;
            let matches = current.is_some_and(|e| {
                f.q.as_ref().is_none_or(|q| q.matches(&e))
                    && f.scope_q.as_ref().is_none_or(|s| s.matches(&e.scope))
                    && f.geo.as_ref().is_none_or(|g| g.matches(&e))
            });
            if !matches {
                continue;
            }
        }
        ids.push(id);
    }
    Ok(ids)
}

/// A bound of a time window, as the history stores times.
fn bound(t: &str) -> rusqlite::Result<i64> {
    micros(t).ok_or_else(|| sql_err(std::io::Error::other(format!("not a DateTime: {t}"))))
}

/// Loads one entity's history (or aggregates) as the query asks.
fn load(conn: &Connection, tenant: &str, id: &str, q: &TemporalQuery) -> rusqlite::Result<Option<TemporalEntity>> {
    let row: Option<(String, String, String, String, Option<String>)> = conn
        .prepare_cached(
            "SELECT types, scope, created_at, modified_at, deleted_at FROM temporal_entities WHERE tenant = ?1 AND id = ?2",
        )?
        .query_row(params![tenant, id], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)))
        .optional()?;
    let Some((types, scope, created_at, modified_at, deleted_at)) = row else { return Ok(None) };
    let mut entity = TemporalEntity {
        id: id.to_owned(),
        types: from_json(&types)?,
        scope: from_json(&scope)?,
        created_at: Some(created_at),
        modified_at: Some(modified_at),
        deleted_at,
        ..Default::default()
    };
    // Series in the order their attributes first appeared, those with instances left.
    let attrs: Vec<(String, i64)> = if q.attrs.is_empty() {
        let mut stmt = conn.prepare_cached(
            "SELECT attr, sid FROM attr_series s WHERE tenant = ?1 AND entity_id = ?2
             AND EXISTS (SELECT 1 FROM attr_history h WHERE h.sid = s.sid) ORDER BY sid",
        )?;
        let names = stmt.query_map(params![tenant, id], |r| Ok((r.get(0)?, r.get(1)?)))?;
        names.collect::<rusqlite::Result<_>>()?
    } else {
        let mut found = Vec::new();
        for attr in &q.attrs {
            if let Some(sid) = series(conn, tenant, id, attr)? {
                found.push((attr.clone(), sid));
            }
        }
        found
    };
    let col = column(q.time_property);
    // Without a time window every instance counts, even one lacking the time property.
    let mut window = String::new();
    let mut window_args: Vec<SqlValue> = Vec::new();
    if let Some(timerel) = &q.timerel {
        let (from, to) = timerel.bounds();
        if let Some(from) = from {
            window.push_str(&format!(" AND {col} >= ?"));
            window_args.push(bound(from)?.into());
        }
        if let Some(to) = to {
            window.push_str(&format!(" AND {col} < ?"));
            window_args.push(bound(to)?.into());
        }
    } else if q.time_property == TimeProperty::DeletedAt {
        window.push_str(" AND t_deleted IS NOT NULL");
    }
    if let Some(ids) = &q.dataset_ids {
        let named: Vec<String> = ids.iter().flatten().cloned().collect();
        let mut parts = Vec::new();
        if !named.is_empty() {
            parts.push(one_of("dataset_id", &named, &mut window_args));
        }
        if ids.iter().any(Option::is_none) {
            parts.push("dataset_id IS NULL".to_owned());
        }
        if parts.is_empty() {
            parts.push("0".to_owned());
        }
        window.push_str(&format!(" AND ({})", parts.join(" OR ")));
    }
    let sort = format!("COALESCE({col}, t_created)");
    for (attr, sid) in attrs {
        let mut args: Vec<SqlValue> = vec![sid.into()];
        args.extend(window_args.iter().cloned());
        if let Some((methods, period)) = &q.aggregation {
            let series = aggregate(conn, &window, &args, col, methods, *period, q)?;
            if !series.is_empty() {
                entity.aggregates.insert(attr, series);
            }
            continue;
        }
        let order = if q.newest_first { "DESC" } else { "ASC" };
        let sql = format!(
            "SELECT doc, seq, legacy_instance_id, t_deleted FROM attr_history
             WHERE sid = ?{window}
             ORDER BY {sort} {order}, seq {order} LIMIT {}",
            q.per_attribute
        );
        let mut stmt = conn.prepare_cached(&sql)?;
        let rows = stmt.query_map(params_from_iter(args), |r| {
            Ok((r.get::<_, String>(0)?, r.get(1)?, r.get(2)?, r.get::<_, Option<i64>>(3)?))
        })?;
        let mut instances = Vec::new();
        for row in rows {
            let (doc, seq, legacy, deleted) = row?;
            let attribute: Attribute = from_json(&doc)?;
            let deleted_at = deleted.map(|t| format_time(datetime_of_micros(t)));
            instances.push(Instance { attribute, instance_id: history::instance_id(seq, legacy), deleted_at });
        }
        if !instances.is_empty() {
            entity.attrs.insert(attr, instances);
        }
    }
    Ok(Some(entity))
}

/// Aggregates one attribute's instances per datasetId and period, in SQL.
fn aggregate(
    conn: &Connection,
    window: &str,
    args: &[SqlValue],
    col: &str,
    methods: &[AggrMethod],
    period: f64,
    q: &TemporalQuery,
) -> rusqlite::Result<Vec<AggregateSeries>> {
    // Periods start at the window's start, or at the series' first instance.
    let (from, to) = q.timerel.as_ref().map(|t| t.bounds()).unwrap_or((None, None));
    // Over observedAt the covering index answers the numeric aggregates without visiting the
    // table (the planner would otherwise pick the deletedAt index for `t_deleted IS NULL`).
    let source = if col == "t_observed" { "attr_history INDEXED BY attr_history_observed" } else { "attr_history" };
    let base = format!("FROM {source} WHERE sid = ? AND t_deleted IS NULL AND {col} IS NOT NULL{window}");
    // The first and last instances, from either end of the time index (MIN/MAX would scan,
    // since `t_deleted IS NULL` follows the time in the index).
    let edge = |order: &str| -> rusqlite::Result<Option<i64>> {
        conn.prepare_cached(&format!("SELECT {col} {base} ORDER BY {col} {order} LIMIT 1"))?
            .query_row(params_from_iter(args.iter()), |r| r.get(0))
            .optional()
    };
    let (Some(first), Some(last)) = (edge("ASC")?, edge("DESC")?) else { return Ok(Vec::new()) };
    let start = match from {
        Some(from) => bound(from)?,
        None => first,
    };
    let mut acc = history::SeriesAccumulator::new(start, period);
    let period_micros = acc.period_micros();
    let wants = |m: AggrMethod| methods.contains(&m);
    let kind_doc: String = conn
        .prepare_cached(&format!("SELECT doc {base} LIMIT 1"))?
        .query_row(params_from_iter(args.iter()), |r| r.get(0))?;
    let kind = from_json::<Attribute>(&kind_doc)?.kind;
    // One pass over the window, accumulated per datasetId and period (ngsild_core::history).
    // Over observedAt the covering index serves it without the table; a GROUP BY would sort
    // every row by datasetId first (that sort and one query per period were most of the 70 ms a
    // 100k-instance aggregation took). Distinct counts need `val`, from the table, only when
    // asked for.
    let with_val = wants(AggrMethod::DistinctCount);
    let val = if with_val { ", val" } else { "" };
    let mut stmt = conn.prepare_cached(&format!("SELECT dataset_id, {col}, num{val} {base}"))?;
    let mut rows = stmt.query(params_from_iter(args.iter()))?;
    while let Some(row) = rows.next()? {
        let dataset = row.get_ref(0)?.as_str_or_null()?;
        let t: i64 = row.get(1)?;
        let number = row.get::<_, Option<f64>>(2)?;
        let value = if with_val { Some(row.get_ref(3)?.as_str()?) } else { None };
        acc.add(dataset, t, number, value);
    }
    drop(rows);
    if (wants(AggrMethod::Min) || wants(AggrMethod::Max)) && !with_val && acc.has_textual_period() {
        // The min/max of a period without numbers are those of the value texts.
        let bucket = if period_micros > 0 { format!("(({col} - ?) / {period_micros})") } else { "0".to_owned() };
        let mut all_args: Vec<SqlValue> = Vec::new();
        if period_micros > 0 {
            all_args.push(start.into());
        }
        all_args.extend(args.iter().cloned());
        let sql = format!(
            "SELECT dataset_id, {bucket} AS bucket, MIN(val), MAX(val) {base} GROUP BY dataset_id, bucket",
            base = base.replace(" INDEXED BY attr_history_observed", "")
        );
        let mut stmt = conn.prepare_cached(&sql)?;
        let mut rows = stmt.query(params_from_iter(all_args.iter()))?;
        while let Some(row) = rows.next()? {
            let (dataset, bucket): (Option<String>, i64) = (row.get(0)?, row.get(1)?);
            acc.at(dataset.as_deref(), bucket).set_text_extremes(row.get(2)?, row.get(3)?);
        }
    }
    let end = match to {
        Some(to) => bound(to)?,
        None => last,
    };
    Ok(acc.finish(kind, methods, end))
}
