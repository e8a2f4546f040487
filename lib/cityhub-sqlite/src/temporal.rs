//! The history of entities: every attribute instance ever written, indexed by entity, attribute
//! and each time property; aggregation runs as SQL `GROUP BY` over it, so the store never holds
//! more than one period's accumulators per series in memory.

use chrono::{Duration, SecondsFormat};
use cityhub_storage::{TemporalOutcome, TemporalPage, TemporalQuery, TemporalWrite};
use indexmap::IndexMap;
use ngsild_core::model::{Attribute, AttributeKind};
use ngsild_core::temporal::{
    deletion_of, AggrMethod, AggregatePeriod, AggregateSeries, Instance, TemporalEntity, TimeProperty,
};
use ngsild_core::time::{format_time, now, parse_datetime};
use ngsild_core::{Entity, NgsiLdError};
use rusqlite::types::Value as SqlValue;
use rusqlite::{params, params_from_iter, Connection, OptionalExtension};
use serde_json::Value;

use crate::schema;

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
    -- t_* hold each time normalised (microseconds, Z) so that they compare as strings.
    CREATE TABLE IF NOT EXISTS attr_history (
        seq INTEGER PRIMARY KEY,
        tenant TEXT NOT NULL,
        entity_id TEXT NOT NULL,
        attr TEXT NOT NULL,
        instance_id TEXT NOT NULL,
        dataset_id TEXT,
        doc TEXT NOT NULL,
        val TEXT NOT NULL,
        num REAL,
        t_observed TEXT,
        t_created TEXT NOT NULL,
        t_modified TEXT NOT NULL,
        t_deleted TEXT
    );
    CREATE UNIQUE INDEX IF NOT EXISTS attr_history_instance ON attr_history (tenant, entity_id, attr, instance_id);
    -- Covering for numeric aggregation over observedAt (see aggregate()).
    CREATE INDEX IF NOT EXISTS attr_history_observed
        ON attr_history (tenant, entity_id, attr, t_observed, dataset_id, t_deleted, num);
    CREATE INDEX IF NOT EXISTS attr_history_created ON attr_history (tenant, entity_id, attr, t_created);
    CREATE INDEX IF NOT EXISTS attr_history_modified ON attr_history (tenant, entity_id, attr, t_modified);
    CREATE INDEX IF NOT EXISTS attr_history_deleted ON attr_history (tenant, entity_id, attr, t_deleted);
";

fn sql_err(e: impl std::error::Error + Send + Sync + 'static) -> rusqlite::Error {
    rusqlite::Error::ToSqlConversionFailure(Box::new(e))
}

fn normalized_str(t: &str) -> Option<String> {
    normalized(Some(t))
}

fn normalized(t: Option<&str>) -> Option<String> {
    t.and_then(parse_datetime).map(format_time)
}

fn new_instance_id() -> String {
    format!("urn:ngsi-ld:Instance:{}", uuid::Uuid::new_v4())
}

fn column(property: TimeProperty) -> &'static str {
    match property {
        TimeProperty::ObservedAt => "t_observed",
        TimeProperty::CreatedAt => "t_created",
        TimeProperty::ModifiedAt => "t_modified",
        TimeProperty::DeletedAt => "t_deleted",
    }
}

fn insert_instance(
    conn: &Connection,
    tenant: &str,
    entity_id: &str,
    attr_name: &str,
    instance: &Instance,
) -> rusqlite::Result<()> {
    let attr = &instance.attribute;
    let doc = serde_json::to_string(attr).map_err(sql_err)?;
    let num = match &attr.value {
        Value::Number(n) => n.as_f64(),
        Value::Bool(b) => Some(if *b { 1.0 } else { 0.0 }),
        _ => None,
    };
    let fallback = now();
    let created = normalized(attr.created_at.as_deref()).unwrap_or_else(|| fallback.clone());
    let modified = normalized(attr.modified_at.as_deref()).unwrap_or(fallback);
    conn.prepare_cached(
        "INSERT INTO attr_history (tenant, entity_id, attr, instance_id, dataset_id, doc, val, num,
                                   t_observed, t_created, t_modified, t_deleted)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
    )?
    .execute(params![
        tenant,
        entity_id,
        attr_name,
        instance.instance_id,
        attr.dataset_id,
        doc,
        attr.value.to_string(),
        num,
        normalized(attr.observed_at.as_deref()),
        created,
        modified,
        normalized(instance.deleted_at.as_deref()),
    ])?;
    Ok(())
}

/// Creates or refreshes the entity's row of the temporal representation.
fn touch_entity(conn: &Connection, tenant: &str, entity: &Entity, now: &str) -> rusqlite::Result<()> {
    let types = serde_json::to_string(&entity.types).map_err(sql_err)?;
    let scope = serde_json::to_string(&entity.scope).map_err(sql_err)?;
    let stored_types: Option<String> = conn
        .prepare_cached("SELECT types FROM temporal_entities WHERE tenant = ?1 AND id = ?2")?
        .query_row(params![tenant, entity.id], |row| row.get(0))
        .optional()?;
    conn.prepare_cached(
        "INSERT INTO temporal_entities (tenant, id, types, scope, created_at, modified_at, deleted_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?5, NULL)
         ON CONFLICT (tenant, id) DO UPDATE SET types = ?3, scope = ?4, modified_at = ?5, deleted_at = NULL",
    )?
    .execute(params![tenant, entity.id, types, scope, now])?;
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

/// Records what a modification through the entity API changed: every instance that is new or
/// different, and a deletion for every instance that went.
pub fn record_change(
    conn: &Connection,
    tenant: &str,
    before: Option<&Entity>,
    after: Option<&Entity>,
    now: &str,
) -> rusqlite::Result<()> {
    if let Some(after) = after {
        touch_entity(conn, tenant, after, now)?;
        for (name, instances) in &after.attrs {
            for attr in instances {
                let previous = before.and_then(|b| b.instance(name, attr.dataset_id.as_deref()));
                if previous != Some(attr) {
                    let instance =
                        Instance { attribute: attr.clone(), instance_id: new_instance_id(), deleted_at: None };
                    insert_instance(conn, tenant, &after.id, name, &instance)?;
                }
            }
        }
    }
    if let Some(before) = before {
        for (name, instances) in &before.attrs {
            for attr in instances {
                let kept = after.and_then(|a| a.instance(name, attr.dataset_id.as_deref())).is_some();
                if !kept {
                    let instance = Instance {
                        attribute: deletion_of(attr, now),
                        instance_id: new_instance_id(),
                        deleted_at: Some(now.to_owned()),
                    };
                    insert_instance(conn, tenant, &before.id, name, &instance)?;
                }
            }
        }
        if let Some(after) = after.filter(|a| a.scope.is_empty() && !before.scope.is_empty()) {
            // The scope went (DELETE .../attrs/scope): its history is an instance of "scope"
            // whose value is the empty list, as clause 4.18 shows deleted scopes.
            let mut gone = Attribute::new(AttributeKind::Property, Value::Array(Vec::new()));
            gone.created_at = Some(now.to_owned());
            gone.modified_at = Some(now.to_owned());
            let instance =
                Instance { attribute: gone, instance_id: new_instance_id(), deleted_at: Some(now.to_owned()) };
            insert_instance(conn, tenant, &after.id, ngsild_core::ops::SCOPE_IRI, &instance)?;
        }
        if after.is_none() {
            conn.prepare_cached(
                "UPDATE temporal_entities SET deleted_at = ?3, modified_at = ?3 WHERE tenant = ?1 AND id = ?2",
            )?
            .execute(params![tenant, before.id, now])?;
        }
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
            let current = schema::load_entity(conn, tenant, id)?;
            let mut entity = current.clone().unwrap_or_else(|| {
                let mut e = Entity::new(id, input.types.clone());
                e.created_at = Some(now.clone());
                e
            });
            for t in &input.types {
                if !entity.types.contains(t) {
                    entity.types.push(t.clone());
                }
            }
            if !input.scope.is_empty() {
                entity.scope = input.scope.clone();
            }
            for (name, instances) in input.attrs.iter_mut() {
                for attr in instances.iter_mut() {
                    attr.stamp(&now);
                    // An observation of the same series at the same time replaces the earlier one.
                    if let Some(observed) = normalized(attr.observed_at.as_deref()) {
                        conn.prepare_cached(
                            "DELETE FROM attr_history WHERE tenant = ?1 AND entity_id = ?2 AND attr = ?3
                             AND dataset_id IS ?4 AND t_observed = ?5",
                        )?
                        .execute(params![tenant, id, name, attr.dataset_id, observed])?;
                    }
                    let instance =
                        Instance { attribute: attr.clone(), instance_id: new_instance_id(), deleted_at: None };
                    insert_instance(conn, tenant, id, name, &instance)?;
                }
                // The current state holds the latest observation of each datasetId.
                let mut latest: IndexMap<Option<String>, Attribute> = IndexMap::new();
                for attr in instances.iter() {
                    let newer = latest.get(&attr.dataset_id).is_none_or(|l| {
                        normalized(attr.observed_at.as_deref()) >= normalized(l.observed_at.as_deref())
                    });
                    if newer {
                        latest.insert(attr.dataset_id.clone(), attr.clone());
                    }
                }
                for (_, attr) in latest {
                    entity.put_instance(name, attr, &now);
                }
            }
            entity.modified_at = Some(now.clone());
            schema::save_entity(conn, tenant, current.as_ref(), &entity)?;
            touch_entity(conn, tenant, &entity, &now)?;
            Ok(Ok(if exists { TemporalOutcome::Updated } else { TemporalOutcome::Created }))
        }
        TemporalWrite::DeleteEntity => {
            if !exists {
                return not_found();
            }
            for table in [
                "attr_history WHERE tenant = ?1 AND entity_id = ?2",
                "temporal_entities WHERE tenant = ?1 AND id = ?2",
                "temporal_types WHERE tenant = ?1 AND id = ?2",
            ] {
                conn.execute(&format!("DELETE FROM {table}"), params![tenant, id])?;
            }
            if let Some(current) = schema::load_entity(conn, tenant, id)? {
                schema::delete_entity(conn, tenant, &current)?;
            }
            Ok(Ok(TemporalOutcome::Updated))
        }
        TemporalWrite::DeleteAttribute { attr, dataset_id, all } => {
            if !exists {
                return not_found();
            }
            let deleted = if all {
                conn.execute(
                    "DELETE FROM attr_history WHERE tenant = ?1 AND entity_id = ?2 AND attr = ?3",
                    params![tenant, id, attr],
                )?
            } else {
                conn.execute(
                    "DELETE FROM attr_history WHERE tenant = ?1 AND entity_id = ?2 AND attr = ?3 AND dataset_id IS ?4",
                    params![tenant, id, attr, dataset_id],
                )?
            };
            if deleted == 0 {
                return Ok(Err(NgsiLdError::not_found(format!("{id} has no history of attribute {attr}"))));
            }
            if let Some(current) = schema::load_entity(conn, tenant, id)? {
                let mut entity = current.clone();
                if entity.remove_instances(&attr, dataset_id.as_deref(), all) > 0 {
                    entity.modified_at = Some(now.clone());
                    schema::save_entity(conn, tenant, Some(&current), &entity)?;
                }
            }
            Ok(Ok(TemporalOutcome::Updated))
        }
        TemporalWrite::ReplaceInstance { attr, instance_id, mut attribute } => {
            let found: Option<(String, String)> = conn
                .prepare_cached(
                    "SELECT doc, t_created FROM attr_history WHERE tenant = ?1 AND entity_id = ?2 AND attr = ?3 AND instance_id = ?4",
                )?
                .query_row(params![tenant, id, attr, instance_id], |r| Ok((r.get(0)?, r.get(1)?)))
                .optional()?;
            let Some((doc, _)) = found else {
                return Ok(Err(NgsiLdError::not_found(format!("no instance {instance_id} of {attr} in {id}"))));
            };
            let old: Attribute = serde_json::from_str(&doc).map_err(sql_err)?;
            attribute.created_at = old.created_at.clone();
            attribute.modified_at = Some(now.clone());
            if attribute.dataset_id.is_none() {
                attribute.dataset_id = old.dataset_id.clone();
            }
            conn.execute(
                "DELETE FROM attr_history WHERE tenant = ?1 AND entity_id = ?2 AND attr = ?3 AND instance_id = ?4",
                params![tenant, id, attr, instance_id],
            )?;
            insert_instance(conn, tenant, id, &attr, &Instance { attribute, instance_id, deleted_at: None })?;
            Ok(Ok(TemporalOutcome::Updated))
        }
        TemporalWrite::DeleteInstance { attr, instance_id } => {
            let deleted = conn.execute(
                "DELETE FROM attr_history WHERE tenant = ?1 AND entity_id = ?2 AND attr = ?3 AND instance_id = ?4",
                params![tenant, id, attr, instance_id],
            )?;
            if deleted == 0 {
                return Ok(Err(NgsiLdError::not_found(format!("no instance {instance_id} of {attr} in {id}"))));
            }
            Ok(Ok(TemporalOutcome::Updated))
        }
    }
}

/// Runs a temporal query.
pub fn query(conn: &Connection, tenant: &str, q: &TemporalQuery) -> rusqlite::Result<TemporalPage> {
    let ids = matching_ids(conn, tenant, q)?;
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

/// Ids of entities with a history that the query selects, in id order.
fn matching_ids(conn: &Connection, tenant: &str, q: &TemporalQuery) -> rusqlite::Result<Vec<String>> {
    let f = &q.filter;
    let mut sql = String::from("SELECT id, types FROM temporal_entities WHERE tenant = ?");
    let mut args: Vec<SqlValue> = vec![tenant.to_owned().into()];
    if !f.ids.is_empty() {
        sql.push_str(&format!(" AND id IN ({})", vec!["?"; f.ids.len()].join(",")));
        args.extend(f.ids.iter().map(|i| SqlValue::from(i.clone())));
    }
    if let Some(names) = f.types.as_ref().and_then(|t| t.as_type_list()) {
        {
            sql.push_str(&format!(
                " AND id IN (SELECT id FROM temporal_types WHERE tenant = ? AND type IN ({}))",
                vec!["?"; names.len()].join(",")
            ));
            args.push(tenant.to_owned().into());
            args.extend(names.iter().map(|n| SqlValue::from(n.to_string())));
        }
    }
    sql.push_str(" ORDER BY id");
    let mut stmt = conn.prepare(&sql)?;
    let rows = stmt.query_map(params_from_iter(args), |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))?;
    let needs_current = f.q.is_some() || f.scope_q.is_some() || f.geo.is_some();
    let mut ids = Vec::new();
    for row in rows {
        let (id, types) = row?;
        let types: Vec<String> = serde_json::from_str(&types).map_err(sql_err)?;
        if f.id_pattern.as_ref().is_some_and(|re| !re.is_match(&id))
            || f.types.as_ref().is_some_and(|t| !t.matches(&types))
        {
            continue;
        }
        if needs_current {
            let current = schema::load_entity(conn, tenant, &id)?;
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
        types: serde_json::from_str(&types).map_err(sql_err)?,
        scope: serde_json::from_str(&scope).map_err(sql_err)?,
        created_at: Some(created_at),
        modified_at: Some(modified_at),
        deleted_at,
        ..Default::default()
    };
    let attrs: Vec<String> = if q.attrs.is_empty() {
        let mut stmt = conn.prepare_cached(
            "SELECT attr FROM attr_history WHERE tenant = ?1 AND entity_id = ?2 GROUP BY attr ORDER BY MIN(seq)",
        )?;
        let names = stmt.query_map(params![tenant, id], |r| r.get(0))?;
        names.collect::<rusqlite::Result<_>>()?
    } else {
        q.attrs.clone()
    };
    let col = column(q.time_property);
    // Without a time window every instance counts, even one lacking the time property.
    let mut window = String::new();
    let mut window_args: Vec<SqlValue> = Vec::new();
    if let Some(timerel) = &q.timerel {
        let (from, to) = timerel.bounds();
        if let Some(from) = from {
            window.push_str(&format!(" AND {col} >= ?"));
            window_args.push(from.to_owned().into());
        }
        if let Some(to) = to {
            window.push_str(&format!(" AND {col} < ?"));
            window_args.push(to.to_owned().into());
        }
    } else if q.time_property == TimeProperty::DeletedAt {
        window.push_str(" AND t_deleted IS NOT NULL");
    }
    let mut datasets = String::new();
    let mut dataset_args: Vec<SqlValue> = Vec::new();
    if let Some(ids) = &q.dataset_ids {
        let parts: Vec<&str> =
            ids.iter().map(|d| if d.is_some() { "dataset_id = ?" } else { "dataset_id IS NULL" }).collect();
        datasets = format!(" AND ({})", parts.join(" OR "));
        dataset_args.extend(ids.iter().flatten().map(|d| SqlValue::from(d.clone())));
    }
    window.push_str(&datasets);
    window_args.extend(dataset_args.iter().cloned());
    let sort = format!("COALESCE({col}, t_created)");
    for attr in attrs {
        let mut args: Vec<SqlValue> = vec![tenant.to_owned().into(), id.to_owned().into(), attr.clone().into()];
        args.extend(window_args.iter().cloned());
        if let Some((methods, period)) = &q.aggregation {
            let series = aggregate(conn, &window, &args, (&datasets, &dataset_args), col, methods, *period, q)?;
            if !series.is_empty() {
                entity.aggregates.insert(attr, series);
            }
            continue;
        }
        let order = if q.newest_first { "DESC" } else { "ASC" };
        let sql = format!(
            "SELECT doc, instance_id, t_deleted FROM attr_history
             WHERE tenant = ? AND entity_id = ? AND attr = ?{window}
             ORDER BY {sort} {order}, seq {order} LIMIT {}",
            q.per_attribute
        );
        let mut stmt = conn.prepare_cached(&sql)?;
        let rows = stmt.query_map(params_from_iter(args), |r| {
            Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?, r.get::<_, Option<String>>(2)?))
        })?;
        let mut instances = Vec::new();
        for row in rows {
            let (doc, instance_id, deleted_at) = row?;
            let attribute: Attribute = serde_json::from_str(&doc).map_err(sql_err)?;
            instances.push(Instance { attribute, instance_id, deleted_at });
        }
        if !instances.is_empty() {
            entity.attrs.insert(attr, instances);
        }
    }
    Ok(Some(entity))
}

/// Up to this many periods are aggregated one range query each; more in one GROUP BY.
const MAX_RANGE_QUERIES: i64 = 2048;

/// Aggregates one attribute's instances per datasetId and period, in SQL.
#[allow(clippy::too_many_arguments)]
fn aggregate(
    conn: &Connection,
    window: &str,
    args: &[SqlValue],
    (datasets, dataset_args): (&str, &[SqlValue]),
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
    let base = format!(
        "FROM {source} WHERE tenant = ? AND entity_id = ? AND attr = ? AND t_deleted IS NULL AND {col} IS NOT NULL{window}"
    );
    // The first and last instances, from either end of the time index (MIN/MAX would scan,
    // since `t_deleted IS NULL` follows the time in the index).
    let edge = |order: &str| -> rusqlite::Result<Option<String>> {
        conn.prepare_cached(&format!("SELECT {col} {base} ORDER BY {col} {order} LIMIT 1"))?
            .query_row(params_from_iter(args.iter()), |r| r.get(0))
            .optional()
    };
    let (Some(first), Some(last)) = (edge("ASC")?, edge("DESC")?) else { return Ok(Vec::new()) };
    let start = from.map(str::to_owned).unwrap_or(first);
    let Some(start_time) = parse_datetime(&start) else { return Ok(Vec::new()) };
    let bucket = if period > 0.0 {
        // The start's Julian day is computed once here, not once per row by SQLite.
        format!("CAST((julianday({col}) - ?) * 86400.0 / {period} AS INTEGER)")
    } else {
        "0".to_owned()
    };
    // Only what the methods need goes through the GROUP BY's sorter: the rows it sorts stay a
    // few dozen bytes, so it works in memory (carrying `doc` made it spill ~300 B per instance
    // to disk). Text extremes and distinct counts need `val`, from the table: they are asked
    // for only when some period holds no number, or when the method is asked.
    let wants = |m: AggrMethod| methods.contains(&m);
    let distinct = if wants(AggrMethod::DistinctCount) { "COUNT(DISTINCT val)" } else { "0" };
    let aggregates =
        format!("COUNT(*), {distinct}, SUM(num), AVG(num), SUM(num * num), COUNT(num), MIN(num), MAX(num)");
    let kind_doc: String = conn
        .prepare_cached(&format!("SELECT doc {base} LIMIT 1"))?
        .query_row(params_from_iter(args.iter()), |r| r.get(0))?;
    let kind = serde_json::from_str::<Attribute>(&kind_doc).map_err(sql_err)?.kind;
    let mut all_args: Vec<SqlValue> = Vec::new();
    if period > 0.0 {
        let start_julian_day = start_time.timestamp_micros() as f64 / 86_400e6 + 2_440_587.5;
        all_args.push(start_julian_day.into());
    }
    all_args.extend(args.iter().cloned());
    type Group = (Option<String>, i64, i64, i64, Option<f64>, Option<f64>, Option<f64>, i64, Option<f64>, Option<f64>);
    let run = |sql: &str, args: &[SqlValue]| -> rusqlite::Result<Vec<Group>> {
        conn.prepare_cached(sql)?
            .query_map(params_from_iter(args.iter()), |r| {
                Ok((
                    r.get(0)?,
                    r.get(1)?,
                    r.get(2)?,
                    r.get(3)?,
                    r.get(4)?,
                    r.get(5)?,
                    r.get(6)?,
                    r.get(7)?,
                    r.get(8)?,
                    r.get(9)?,
                ))
            })?
            .collect()
    };
    let period_micros = (period * 1e6) as i64;
    let periods = match (period_micros > 0, parse_datetime(&last)) {
        (true, Some(last_time)) => (last_time - start_time).num_microseconds().unwrap_or(i64::MAX) / period_micros + 1,
        _ => 1,
    };
    let groups: Vec<Group> = if period_micros > 0 && periods <= MAX_RANGE_QUERIES {
        // One range scan of the time index per period: no per-row date arithmetic and no sort
        // of the whole window, only of one period's rows by datasetId. The period's bounds
        // replace the window's (clamped to it): with two ranges on one column SQLite seeks by
        // one and filters by the other, which scanned the whole window once per period.
        let sql = format!(
            "SELECT dataset_id, ? AS bucket, {aggregates} FROM {source}
             WHERE tenant = ? AND entity_id = ? AND attr = ? AND t_deleted IS NULL
             AND {col} >= ? AND {col} < ?{datasets} GROUP BY dataset_id"
        );
        let mut groups = Vec::new();
        for k in 0..periods {
            let lo = start_time + Duration::microseconds(period_micros * k);
            let mut hi = format_time(lo + Duration::microseconds(period_micros));
            if let Some(end) = to.and_then(normalized_str) {
                hi = hi.min(end);
            }
            let mut period_args: Vec<SqlValue> = vec![k.into()];
            period_args.extend(args.iter().take(3).cloned());
            period_args.push(format_time(lo).into());
            period_args.push(hi.into());
            period_args.extend(dataset_args.iter().cloned());
            groups.extend(run(&sql, &period_args)?);
        }
        groups.sort_by(|a, b| (&a.0, a.1).cmp(&(&b.0, b.1)));
        groups
    } else {
        let sql = format!(
            "SELECT dataset_id, {bucket} AS bucket, {aggregates} {base} GROUP BY dataset_id, bucket ORDER BY dataset_id, bucket"
        );
        run(&sql, &all_args)?
    };
    let mut text_extremes: std::collections::HashMap<(Option<String>, i64), (String, String)> = Default::default();
    if (wants(AggrMethod::Min) || wants(AggrMethod::Max)) && groups.iter().any(|g| g.7 == 0) {
        let sql = format!(
            "SELECT dataset_id, {bucket} AS bucket, MIN(val), MAX(val) {base} GROUP BY dataset_id, bucket",
            base = base.replace(" INDEXED BY attr_history_observed", "")
        );
        let mut stmt = conn.prepare_cached(&sql)?;
        let rows = stmt
            .query_map(params_from_iter(all_args.iter()), |r| Ok(((r.get(0)?, r.get(1)?), (r.get(2)?, r.get(3)?))))?;
        for row in rows {
            let (key, extremes) = row?;
            text_extremes.insert(key, extremes);
        }
    }
    let mut series: Vec<AggregateSeries> = Vec::new();
    let stamp = |t: chrono::DateTime<chrono::Utc>| t.to_rfc3339_opts(SecondsFormat::AutoSi, true);
    let whole_end = to.and_then(parse_datetime).or_else(|| parse_datetime(&last));
    for (dataset_id, bucket, total, distinct, sum, avg, sumsq, numeric, min, max) in groups {
        let no_text = (String::new(), String::new());
        let (min_val, max_val) = text_extremes.get(&(dataset_id.clone(), bucket)).unwrap_or(&no_text);
        let (period_start, period_end) = if period > 0.0 {
            let micros = (period * 1e6) as i64;
            let s = start_time + Duration::microseconds(micros * bucket);
            (s, s + Duration::microseconds(micros))
        } else {
            (start_time, whole_end.unwrap_or(start_time))
        };
        let number = |v: Option<f64>| v.map(Value::from).unwrap_or(Value::Null);
        let text = |v: &str| serde_json::from_str::<Value>(v).unwrap_or(Value::Null);
        let values = methods
            .iter()
            .map(|m| {
                let v = match m {
                    AggrMethod::TotalCount => Value::from(total),
                    AggrMethod::DistinctCount => Value::from(distinct),
                    AggrMethod::Sum => number(sum),
                    AggrMethod::Avg => number(avg),
                    AggrMethod::Min if numeric == 0 => text(min_val),
                    AggrMethod::Max if numeric == 0 => text(max_val),
                    AggrMethod::Min => number(min),
                    AggrMethod::Max => number(max),
                    AggrMethod::Sumsq => number(sumsq),
                    // Population standard deviation, from the streamed sums.
                    AggrMethod::Stddev => match (sumsq, avg) {
                        (Some(sq), Some(mean)) if numeric > 0 => {
                            Value::from((sq / numeric as f64 - mean * mean).max(0.0).sqrt())
                        }
                        _ => Value::Null,
                    },
                };
                (*m, v)
            })
            .collect();
        let period = AggregatePeriod { start: stamp(period_start), end: stamp(period_end), values };
        match series.iter_mut().find(|s| s.dataset_id == dataset_id) {
            Some(s) => s.periods.push(period),
            None => series.push(AggregateSeries { kind, dataset_id, periods: vec![period] }),
        }
    }
    Ok(series)
}
