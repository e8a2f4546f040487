//! The secondary indexes of current state, and the query planner that uses them.
//!
//! Every entity row has an integer key, `eid`. Three indexes refer to it:
//! - `entity_types`: (tenant, type, id) -> eid, in id order per type;
//! - `facets`: one row per (type, attribute) of an entity saying the attribute is there, and one
//!   per distinct scalar its instances hold, under an integer key for (tenant, type, attribute)
//!   from `facet_keys`. Keying by type makes `type=T&q=...` one range scan per term, over T's
//!   entities only, not over every entity that has the attribute. One WITHOUT ROWID table keyed
//!   (key, v, eid), numbers and texts in one untyped column `v`, plus the (eid, key) index: two
//!   b-tree inserts per row (schema version 13; up to 12 a rowid table with three indexes, four);
//! - `geo_entries` + the `geo_boxes` R*Tree: the bounding box of every GeoProperty instance, with
//!   the exact coordinates of points.
//!
//! A query takes the backend-neutral plan of its filter (`cityhub_storage::plan`: probes, and
//! whether they answer it exactly), turns each probe into a sorted set of eids and intersects
//! them. When every part was answered exactly, the count is the set's size and only
//! the requested page is read and decoded; otherwise the remaining candidates are decoded and the
//! whole filter decides, as before.
//!
//! Writes keep the indexes by difference: only the attributes whose scalars changed are rewritten,
//! the types only when they changed, the R*Tree only when a geometry moved.

use std::collections::{BTreeMap, HashSet};

use cityhub_storage::plan::{self, Probe};
use cityhub_storage::{EntityFilter, Page, Paging};
use ngsild_core::model::{Attribute, AttributeKind};
use ngsild_core::Entity;
use ngsild_query::geo::GeoQuery;
use rusqlite::types::Value as SqlValue;
use rusqlite::{params, params_from_iter, Connection, OptionalExtension};
use serde_json::Value;

use crate::codec::{decode, json_list, one_of, IN_LIST};

pub const SCHEMA: &str = "
    CREATE TABLE IF NOT EXISTS entity_types (
        tenant TEXT NOT NULL,
        type TEXT NOT NULL,
        id TEXT NOT NULL,
        eid INTEGER NOT NULL,
        PRIMARY KEY (tenant, type, id)
    ) WITHOUT ROWID;
    CREATE INDEX IF NOT EXISTS entity_types_by_eid ON entity_types (eid);
    CREATE TABLE IF NOT EXISTS facet_keys (
        key INTEGER PRIMARY KEY,
        tenant TEXT NOT NULL,
        attr TEXT NOT NULL,
        type TEXT NOT NULL,
        UNIQUE (tenant, attr, type)
    );
    -- `v` is an empty blob when the row says the attribute is there, else one scalar of its
    -- values, a REAL or a TEXT. The column has no affinity, so SQLite keeps each value as it
    -- came and orders numbers < texts < blobs: a comparison bounded to its kind's range is one
    -- range of the primary key. A set, not a multiset: a scalar two instances hold is one row.
    -- WITHOUT ROWID, so a row costs two b-tree inserts (this table and the (eid, key) index);
    -- the rowid table of schema version 12 with its three indexes cost four (`FACETS_V12`).
    CREATE TABLE IF NOT EXISTS facets (
        key INTEGER NOT NULL,
        v NOT NULL,
        eid INTEGER NOT NULL,
        PRIMARY KEY (key, v, eid)
    ) WITHOUT ROWID;
    CREATE INDEX IF NOT EXISTS facets_entity ON facets (eid, key);
    CREATE VIRTUAL TABLE IF NOT EXISTS geo_boxes USING rtree (rowid, min_lon, max_lon, min_lat, max_lat);
    -- lon/lat: the exact position when the geometry is a Point (the R*Tree rounds to 32 bits).
    CREATE TABLE IF NOT EXISTS geo_entries (
        rowid INTEGER PRIMARY KEY,
        tenant TEXT NOT NULL,
        attr TEXT NOT NULL,
        eid INTEGER NOT NULL,
        lon REAL,
        lat REAL
    );
    CREATE INDEX IF NOT EXISTS geo_entries_entity ON geo_entries (eid, attr);
";

/// Removes the indexes of schema versions before 4 (text-keyed), so `SCHEMA` can create the new
/// ones and every entity be indexed again.
pub const DROP_OLD: &str = "
    DROP TABLE IF EXISTS attr_values;
    DROP TABLE IF EXISTS entity_types;
    DROP TABLE IF EXISTS geo_entries;
    DROP TABLE IF EXISTS geo_boxes;
";

/// The facets table of schema versions 4 to 12: a rowid table, one row per scalar held (a
/// multiset), with three indexes: how tests make a file `convert_v12_facets` converts.
#[cfg(test)]
pub const FACETS_V12: &str = "
    CREATE TABLE facets (
        key INTEGER NOT NULL,
        num REAL,
        str TEXT,
        eid INTEGER NOT NULL
    );
    CREATE INDEX facets_num ON facets (key, num, eid);
    CREATE INDEX facets_str ON facets (key, str, eid);
    CREATE INDEX facets_entity ON facets (eid, key);
";

/// Whether the `facets` table is the one of `FACETS_V12`.
pub fn has_v12_facets(conn: &Connection) -> rusqlite::Result<bool> {
    crate::codec::has_column(conn, "facets", "num")
}

/// Converts the facets of schema version 12 (`FACETS_V12`) to the current table, row for row
/// (a scalar held twice becomes one row), before `SCHEMA` runs. The facet keys stay.
pub fn convert_v12_facets(conn: &Connection) -> rusqlite::Result<()> {
    conn.execute_batch(
        "CREATE TABLE facets_v13 (
             key INTEGER NOT NULL,
             v NOT NULL,
             eid INTEGER NOT NULL,
             PRIMARY KEY (key, v, eid)
         ) WITHOUT ROWID;
         INSERT OR IGNORE INTO facets_v13 (key, v, eid)
             SELECT key, CASE WHEN num IS NOT NULL THEN num WHEN str IS NOT NULL THEN str ELSE x'' END, eid
             FROM facets ORDER BY 1, 2, 3;
         DROP TABLE facets;
         ALTER TABLE facets_v13 RENAME TO facets;",
    )
}

/// A facet row: the attribute is there, or one of its scalars (`plan::indexed_scalars`).
#[derive(Debug, Clone, PartialEq)]
enum Scalar {
    Present,
    Num(f64),
    Str(String),
}

/// `v` of the row that says an attribute is there: an empty blob, after every number and text.
const PRESENT: &[u8] = &[];

/// The facet rows of one attribute, over all its instances: a set (the table's key holds each
/// (key, value, eid) once), in the order first seen.
fn attribute_scalars(instances: &[Attribute]) -> Vec<Scalar> {
    let mut all = vec![Scalar::Present];
    all.extend(plan::indexed_scalars(instances).into_iter().map(|s| match s {
        plan::Scalar::Num(n) => Scalar::Num(n),
        plan::Scalar::Str(s) => Scalar::Str(s),
    }));
    if all.len() <= 2 {
        return all;
    }
    let keep: Vec<bool> = {
        let mut seen = HashSet::new();
        all.iter().map(|s| seen.insert(s.identity())).collect()
    };
    all.into_iter().zip(keep).filter_map(|(s, keep)| keep.then_some(s)).collect()
}

/// What makes two facet rows of one attribute the same row, hashable.
#[derive(PartialEq, Eq, Hash)]
enum Identity<'a> {
    Present,
    Num(u64),
    Str(&'a str),
}

impl Scalar {
    fn identity(&self) -> Identity<'_> {
        match self {
            Scalar::Present => Identity::Present,
            // Equal as SQLite compares them: 0.0 and -0.0 are one row.
            Scalar::Num(n) => Identity::Num(if *n == 0.0 { 0 } else { n.to_bits() }),
            Scalar::Str(s) => Identity::Str(s),
        }
    }
}

fn geo_values(instances: &[Attribute]) -> Vec<&Value> {
    instances.iter().filter(|a| a.kind == AttributeKind::GeoProperty).map(|a| &a.value).collect()
}

/// Integer keys the writer has looked up or made in this store (facet keys, history series), so
/// that a write need not ask SQLite again for each attribute: a batch of 200 Stellio entities
/// asked ~4,600 such lookups. Only the writer thread holds one; it forgets everything when a
/// transaction rolls back (a key made inside it is gone) and the series whenever a temporal
/// write may have deleted some. Bounded: past `KEYS_CAP` entries a map starts over.
#[derive(Default)]
pub struct Keys {
    facets: std::collections::HashMap<String, i64>,
    pub(crate) series: std::collections::HashMap<String, i64>,
}

/// Entries a map of [`Keys`] holds at most (~130 bytes each: ~2 MiB, not a cost per entity in
/// the memory figures). The series of 1,600 entities of ten attributes fit.
const KEYS_CAP: usize = 16_384;

impl Keys {
    /// The key of three text parts (joined by NUL, which none of them holds).
    pub(crate) fn name(a: &str, b: &str, c: &str) -> String {
        let mut key = String::with_capacity(a.len() + b.len() + c.len() + 2);
        key.push_str(a);
        key.push('\0');
        key.push_str(b);
        key.push('\0');
        key.push_str(c);
        key
    }

    pub(crate) fn remember(map: &mut std::collections::HashMap<String, i64>, name: String, key: i64) {
        if map.len() >= KEYS_CAP {
            map.clear();
        }
        map.insert(name, key);
    }

    /// Forgets everything (the transaction that made some of these keys rolled back).
    pub fn forget(&mut self) {
        self.facets.clear();
        self.series.clear();
    }

    /// Forgets the history series (a temporal write may have deleted some).
    pub fn forget_series(&mut self) {
        self.series.clear();
    }
}

fn facet_key(conn: &Connection, keys: &mut Keys, tenant: &str, ty: &str, attr: &str) -> rusqlite::Result<i64> {
    let name = Keys::name(tenant, attr, ty);
    if let Some(key) = keys.facets.get(&name) {
        return Ok(*key);
    }
    let key = stored_facet_key(conn, tenant, ty, attr)?;
    Keys::remember(&mut keys.facets, name, key);
    Ok(key)
}

fn stored_facet_key(conn: &Connection, tenant: &str, ty: &str, attr: &str) -> rusqlite::Result<i64> {
    let found: Option<i64> = conn
        .prepare_cached("SELECT key FROM facet_keys WHERE tenant = ?1 AND attr = ?2 AND type = ?3")?
        .query_row(params![tenant, attr, ty], |r| r.get(0))
        .optional()?;
    if let Some(key) = found {
        return Ok(key);
    }
    conn.prepare_cached("INSERT INTO facet_keys (tenant, attr, type) VALUES (?1, ?2, ?3)")?
        .execute(params![tenant, attr, ty])?;
    Ok(conn.last_insert_rowid())
}

fn write_facets(
    conn: &Connection,
    keys: &mut Keys,
    tenant: &str,
    eid: i64,
    types: &[String],
    attr: &str,
    scalars: &[Scalar],
) -> rusqlite::Result<()> {
    if scalars.is_empty() {
        return Ok(());
    }
    // OR IGNORE: a row already there (the same scalar under a key) is the same fact.
    let mut insert = conn.prepare_cached("INSERT OR IGNORE INTO facets (key, v, eid) VALUES (?1, ?2, ?3)")?;
    for ty in types {
        let key = facet_key(conn, keys, tenant, ty, attr)?;
        for scalar in scalars {
            match scalar {
                Scalar::Present => insert.execute(params![key, PRESENT, eid])?,
                Scalar::Num(n) => insert.execute(params![key, n, eid])?,
                Scalar::Str(s) => insert.execute(params![key, s, eid])?,
            };
        }
    }
    Ok(())
}

/// What `old` has that `new` has not, and the reverse (both sets, as `attribute_scalars` makes
/// them).
fn difference(old: &[Scalar], new: &[Scalar]) -> (Vec<Scalar>, Vec<Scalar>) {
    let old_ids: HashSet<Identity<'_>> = old.iter().map(Scalar::identity).collect();
    let new_ids: HashSet<Identity<'_>> = new.iter().map(Scalar::identity).collect();
    let gone = old.iter().filter(|s| !new_ids.contains(&s.identity())).cloned().collect();
    let added = new.iter().filter(|s| !old_ids.contains(&s.identity())).cloned().collect();
    (gone, added)
}

/// Deletes the facet row of each scalar of `scalars`.
fn unwrite_facets(
    conn: &Connection,
    keys: &mut Keys,
    tenant: &str,
    eid: i64,
    types: &[String],
    attr: &str,
    scalars: &[Scalar],
) -> rusqlite::Result<()> {
    if scalars.is_empty() {
        return Ok(());
    }
    let mut delete = conn.prepare_cached("DELETE FROM facets WHERE key = ?1 AND v = ?2 AND eid = ?3")?;
    for ty in types {
        let key = facet_key(conn, keys, tenant, ty, attr)?;
        for scalar in scalars {
            match scalar {
                Scalar::Present => delete.execute(params![key, PRESENT, eid])?,
                Scalar::Num(n) => delete.execute(params![key, n, eid])?,
                Scalar::Str(s) => delete.execute(params![key, s, eid])?,
            };
        }
    }
    Ok(())
}

fn write_geo(conn: &Connection, tenant: &str, eid: i64, attr: &str, values: &[&Value]) -> rusqlite::Result<()> {
    let mut insert_entry =
        conn.prepare_cached("INSERT INTO geo_entries (tenant, attr, eid, lon, lat) VALUES (?1, ?2, ?3, ?4, ?5)")?;
    let mut insert_box = conn.prepare_cached(
        "INSERT INTO geo_boxes (rowid, min_lon, max_lon, min_lat, max_lat) VALUES (?1, ?2, ?3, ?4, ?5)",
    )?;
    for value in values {
        let Some((min_lon, max_lon, min_lat, max_lat)) = ngsild_query::geo::bounding_box(value) else { continue };
        let point = (value.get("type").and_then(Value::as_str) == Some("Point")).then_some((min_lon, min_lat));
        insert_entry.execute(params![tenant, attr, eid, point.map(|p| p.0), point.map(|p| p.1)])?;
        let rowid = conn.last_insert_rowid();
        insert_box.execute(params![rowid, min_lon, max_lon, min_lat, max_lat])?;
    }
    Ok(())
}

fn erase_geo(conn: &Connection, eid: i64, attr: Option<&str>) -> rusqlite::Result<()> {
    // One rowid at a time: a `rowid IN (subquery)` delete scans the whole R*Tree.
    let rowids: Vec<i64> = conn
        .prepare_cached("SELECT rowid FROM geo_entries WHERE eid = ?1 AND (?2 IS NULL OR attr = ?2)")?
        .query_map(params![eid, attr], |r| r.get(0))?
        .collect::<rusqlite::Result<_>>()?;
    let mut delete_box = conn.prepare_cached("DELETE FROM geo_boxes WHERE rowid = ?1")?;
    let mut delete_entry = conn.prepare_cached("DELETE FROM geo_entries WHERE rowid = ?1")?;
    for rowid in &rowids {
        delete_box.execute([rowid])?;
        delete_entry.execute([rowid])?;
    }
    Ok(())
}

/// Brings the indexes of entity `eid` from `before` to `after` (either may be absent).
pub fn reindex(
    conn: &Connection,
    keys: &mut Keys,
    tenant: &str,
    eid: i64,
    before: Option<&Entity>,
    after: Option<&Entity>,
) -> rusqlite::Result<()> {
    let no_types: &[String] = &[];
    let old_types = before.map_or(no_types, |e| &e.types[..]);
    let new_types = after.map_or(no_types, |e| &e.types[..]);
    if old_types != new_types {
        // Facet keys depend on the types: start again from nothing. A new entity has a new eid,
        // and no index row refers to it yet (deleting an entity deletes its rows): nothing to
        // erase, and three statements fewer per created entity.
        if before.is_some() {
            conn.prepare_cached("DELETE FROM entity_types WHERE eid = ?1")?.execute([eid])?;
            conn.prepare_cached("DELETE FROM facets WHERE eid = ?1")?.execute([eid])?;
            erase_geo(conn, eid, None)?;
        }
        if let Some(entity) = after {
            let mut insert = conn
                .prepare_cached("INSERT OR IGNORE INTO entity_types (tenant, type, id, eid) VALUES (?1, ?2, ?3, ?4)")?;
            for t in &entity.types {
                insert.execute(params![tenant, t, entity.id, eid])?;
            }
            for (name, instances) in &entity.attrs {
                write_facets(conn, keys, tenant, eid, &entity.types, name, &attribute_scalars(instances))?;
                write_geo(conn, tenant, eid, name, &geo_values(instances))?;
            }
        }
        return Ok(());
    }
    let (Some(before), Some(after)) = (before, after) else { return Ok(()) };
    let mut names: BTreeMap<&str, ()> = BTreeMap::new();
    names.extend(before.attrs.keys().map(|k| (k.as_str(), ())));
    names.extend(after.attrs.keys().map(|k| (k.as_str(), ())));
    let empty: Vec<Attribute> = Vec::new();
    for name in names.keys() {
        let old = before.attrs.get(*name).unwrap_or(&empty);
        let new = after.attrs.get(*name).unwrap_or(&empty);
        let old_scalars = if old.is_empty() { Vec::new() } else { attribute_scalars(old) };
        let new_scalars = if new.is_empty() { Vec::new() } else { attribute_scalars(new) };
        if old_scalars != new_scalars {
            // Only the rows that differ: a changed value is one row out and one in; the
            // attribute's presence and its unchanged scalars stay where they are.
            let (gone, added) = difference(&old_scalars, &new_scalars);
            unwrite_facets(conn, keys, tenant, eid, new_types, name, &gone)?;
            write_facets(conn, keys, tenant, eid, new_types, name, &added)?;
        }
        let (old_geo, new_geo) = (geo_values(old), geo_values(new));
        if old_geo != new_geo {
            erase_geo(conn, eid, Some(name))?;
            write_geo(conn, tenant, eid, name, &new_geo)?;
        }
    }
    Ok(())
}

/// A sorted, duplicate-free set of eids.
type EidSet = Vec<i64>;

fn sorted(mut eids: Vec<i64>) -> EidSet {
    eids.sort_unstable();
    eids.dedup();
    eids
}

fn intersect(a: &EidSet, b: &EidSet) -> EidSet {
    let (small, large) = if a.len() <= b.len() { (a, b) } else { (b, a) };
    small.iter().copied().filter(|e| large.binary_search(e).is_ok()).collect()
}

/// The SQL condition on `facets.v` of a scalar probe's condition. A comparison is bounded to the
/// range of its kind (numbers sort before every text, texts before the blob of presence), so
/// `v > 3` selects no text and `v < 'b'` no number.
fn facet_condition(condition: &plan::Condition, args: &mut Vec<SqlValue>) -> String {
    let value = |scalar: &plan::Scalar| match scalar {
        plan::Scalar::Num(n) => SqlValue::Real(*n),
        plan::Scalar::Str(t) => SqlValue::Text(t.clone()),
    };
    let range = |scalar: &plan::Scalar| match scalar {
        plan::Scalar::Num(_) => "v < ''",
        plan::Scalar::Str(_) => "v >= '' AND v < x''",
    };
    match condition {
        plan::Condition::Compare(op, scalar) => {
            args.push(value(scalar));
            format!("v {} ? AND {}", op.sql(), range(scalar))
        }
        plan::Condition::Between(lo, hi) => {
            // Both bounds are of one kind (`plan`), so the range holds that kind only.
            args.extend([value(lo), value(hi)]);
            "v BETWEEN ? AND ?".to_owned()
        }
        plan::Condition::OneOf { numbers, texts } => {
            // One JSON list of numbers and texts, however long: json_each gives each back as a
            // REAL or a TEXT, which equals only a value of its own kind.
            let items: Vec<Value> = numbers
                .iter()
                .map(|n| serde_json::Number::from_f64(*n).map_or(Value::Null, Value::Number))
                .chain(texts.iter().map(|t| Value::String(t.clone())))
                .collect();
            args.push(json_list(&items));
            format!("v IN {IN_LIST}")
        }
    }
}

/// One index lookup of a query: its SQL, its arguments, and whether it is exact.
pub struct Lookup {
    pub sql: String,
    pub args: Vec<SqlValue>,
}

/// A filter's plan (`cityhub_storage::plan`) in SQL: the lookups whose eid sets are intersected,
/// and whether anything is left for the decoded entity to decide.
pub struct Plan {
    pub lookups: Vec<Lookup>,
    /// The geo-query's lookup, which also returns exact point positions.
    pub geo: Option<Lookup>,
    /// Some part of the filter no index answers exactly: decode candidates and match them.
    pub residual: bool,
}

/// The facet keys of the attributes `attrs` among `types` (all types when `None`), as a subquery.
fn keys_subquery(tenant: &str, attrs: &[String], types: Option<&[String]>, args: &mut Vec<SqlValue>) -> String {
    args.push(tenant.to_owned().into());
    let attr = one_of("attr", attrs, args);
    match types {
        Some(types) => {
            let types = one_of("type", types, args);
            format!("SELECT key FROM facet_keys WHERE tenant = ? AND {attr} AND {types}")
        }
        None => format!("SELECT key FROM facet_keys WHERE tenant = ? AND {attr}"),
    }
}

/// Translates the backend-neutral plan of `filter` into lookups on this backend's tables.
pub fn plan(tenant: &str, filter: &EntityFilter) -> Plan {
    let neutral = plan::plan(filter);
    let mut lookups = Vec::new();
    let mut geo = None;
    for probe in &neutral.probes {
        let mut args: Vec<SqlValue> = Vec::new();
        let sql = match probe {
            Probe::Ids(ids) => {
                args.push(tenant.to_owned().into());
                format!("SELECT eid FROM entities WHERE tenant = ? AND {}", one_of("id", ids, &mut args))
            }
            Probe::Types(types) => {
                args.push(tenant.to_owned().into());
                format!("SELECT eid FROM entity_types WHERE tenant = ? AND {}", one_of("type", types, &mut args))
            }
            Probe::Attrs { attrs, types } => {
                let keys = keys_subquery(tenant, attrs, types.as_deref(), &mut args);
                format!("SELECT eid FROM facets WHERE key IN ({keys}) AND v = x''")
            }
            Probe::Scalar { attr, types, condition } => {
                let keys = keys_subquery(tenant, std::slice::from_ref(attr), types.as_deref(), &mut args);
                let condition = facet_condition(condition, &mut args);
                format!("SELECT eid FROM facets WHERE key IN ({keys}) AND {condition}")
            }
            Probe::Geo { query, search_box: (min_lon, max_lon, min_lat, max_lat) } => {
                // Driven by the R*Tree: the box narrows first, the entry rows follow by rowid.
                geo = Some(Lookup {
                    sql: "SELECT e.eid, e.lon, e.lat FROM geo_boxes b CROSS JOIN geo_entries e ON e.rowid = b.rowid
                          WHERE b.max_lon >= ? AND b.min_lon <= ? AND b.max_lat >= ? AND b.min_lat <= ?
                          AND e.tenant = ? AND e.attr = ?"
                        .to_owned(),
                    args: vec![
                        (*min_lon).into(),
                        (*max_lon).into(),
                        (*min_lat).into(),
                        (*max_lat).into(),
                        tenant.to_owned().into(),
                        query.geoproperty.clone().into(),
                    ],
                });
                continue;
            }
        };
        lookups.push(Lookup { sql, args });
    }
    if let Some(after) = &filter.id_after {
        // Keyset paging: only the ids after it (the entities table is keyed by tenant and id).
        lookups.push(Lookup {
            sql: "SELECT eid FROM entities WHERE tenant = ? AND id > ?".to_owned(),
            args: vec![tenant.to_owned().into(), after.clone().into()],
        });
    }
    Plan { lookups, geo, residual: neutral.residual }
}

fn eids(conn: &Connection, lookup: &Lookup) -> rusqlite::Result<EidSet> {
    let mut stmt = conn.prepare_cached(&lookup.sql)?;
    let rows = stmt.query_map(params_from_iter(lookup.args.iter()), |r| r.get::<_, i64>(0))?;
    Ok(sorted(rows.collect::<rusqlite::Result<_>>()?))
}

/// Candidates of the geo lookup; the second set holds those whose match is decided here (every
/// in-box entry of a point is judged exactly; any other geometry leaves its entity to the
/// decoded match).
fn geo_eids(conn: &Connection, lookup: &Lookup, query: &GeoQuery) -> rusqlite::Result<(EidSet, bool)> {
    let mut stmt = conn.prepare_cached(&lookup.sql)?;
    let mut rows = stmt.query(params_from_iter(lookup.args.iter()))?;
    let mut out = Vec::new();
    let mut exact = true;
    while let Some(row) = rows.next()? {
        let eid: i64 = row.get(0)?;
        match (row.get::<_, Option<f64>>(1)?, row.get::<_, Option<f64>>(2)?) {
            (Some(lon), Some(lat)) => {
                if query.matches_point(lon, lat) {
                    out.push(eid);
                }
            }
            _ => {
                exact = false;
                out.push(eid);
            }
        }
    }
    Ok((sorted(out), exact))
}

/// The entities matching `filter`, ordered by id, one page of them, with the count when asked.
pub fn query(conn: &Connection, tenant: &str, filter: &EntityFilter, paging: Paging) -> rusqlite::Result<Page> {
    if let Some(page) = keyset_page(conn, tenant, filter, paging)? {
        return Ok(page);
    }
    let plan = plan(tenant, filter);
    let mut candidates: Option<EidSet> = None;
    let mut residual = plan.residual;
    let mut narrow = |set: EidSet| {
        candidates = Some(match candidates.take() {
            Some(c) => intersect(&c, &set),
            None => set,
        })
    };
    for lookup in &plan.lookups {
        narrow(eids(conn, lookup)?);
    }
    if let (Some(lookup), Some(query)) = (&plan.geo, &filter.geo) {
        let (set, exact) = geo_eids(conn, lookup, query)?;
        residual |= !exact;
        narrow(set);
    }
    let mut page = Page::default();
    let wanted = paging.offset.saturating_add(paging.limit);
    let decode_row = |eid: i64| -> rusqlite::Result<Option<Entity>> {
        let doc: Option<String> = conn
            .prepare_cached("SELECT doc FROM entities WHERE eid = ?1")?
            .query_row([eid], |r| r.get(0))
            .optional()?;
        doc.as_deref().map(decode).transpose()
    };
    if let Some(order) = filter.order.as_ref().filter(|o| !o.is_by_id()) {
        return ordered_page(conn, tenant, filter, order, candidates.as_ref(), paging, decode_row);
    }
    if !residual {
        if let Some(set) = &candidates {
            if paging.count {
                page.total = Some(set.len());
            }
            for (_, eid) in ordered(conn, tenant, filter, set, wanted)?.into_iter().skip(paging.offset) {
                page.entities.extend(decode_row(eid)?);
            }
            return Ok(page);
        }
    }
    // Some part of the filter needs the entity itself: walk the candidates (or the tenant) in id
    // order, decode each and let the whole filter decide.
    let mut matched = 0usize;
    let mut visit = |entity: Entity| -> bool {
        if filter.matches(&entity) {
            if matched >= paging.offset && page.entities.len() < paging.limit {
                page.entities.push(entity);
            }
            matched += 1;
        }
        paging.count || page.entities.len() < paging.limit
    };
    match &candidates {
        Some(set) => {
            for (_, eid) in ordered(conn, tenant, filter, set, usize::MAX)? {
                if let Some(entity) = decode_row(eid)? {
                    if !visit(entity) {
                        break;
                    }
                }
            }
        }
        None => {
            let mut stmt = conn.prepare_cached("SELECT doc FROM entities WHERE tenant = ?1 ORDER BY id")?;
            let mut rows = stmt.query([tenant])?;
            while let Some(row) = rows.next()? {
                let doc: String = row.get(0)?;
                if !visit(decode(&doc)?) {
                    break;
                }
            }
        }
    }
    if paging.count {
        page.total = Some(matched);
    }
    Ok(page)
}

/// A page of a query with an `orderBy` other than by id: every match is decoded (the order needs
/// its values) and only the first `offset + limit` in order are kept at any time.
fn ordered_page(
    conn: &Connection,
    tenant: &str,
    filter: &EntityFilter,
    order: &ngsild_query::OrderBy,
    candidates: Option<&EidSet>,
    paging: Paging,
    decode_row: impl Fn(i64) -> rusqlite::Result<Option<Entity>>,
) -> rusqlite::Result<Page> {
    let mut first = ngsild_query::order::FirstInOrder::new(order, paging.offset.saturating_add(paging.limit));
    let mut matched = 0usize;
    let mut visit = |entity: Entity| {
        if filter.matches(&entity) {
            matched += 1;
            first.push(order.key(&entity), entity);
        }
    };
    match candidates {
        Some(set) => {
            for (_, eid) in ordered(conn, tenant, filter, set, usize::MAX)? {
                if let Some(entity) = decode_row(eid)? {
                    visit(entity);
                }
            }
        }
        None => {
            let mut stmt = conn.prepare_cached("SELECT doc FROM entities WHERE tenant = ?1 ORDER BY id")?;
            let mut rows = stmt.query([tenant])?;
            while let Some(row) = rows.next()? {
                let doc: String = row.get(0)?;
                visit(decode(&doc)?);
            }
        }
    }
    let entities = first.finish().into_iter().skip(paging.offset).collect();
    Ok(Page { entities, total: paging.count.then_some(matched) })
}

/// A keyset page of one type (`id_after`, no count, in id order): the type's ids walked from
/// the key on, each entity judged by the whole filter, until the page is full. Its cost follows
/// the page, not the type's size, so a reader walking a large type page by page (a dataset
/// download) reads it once. None when the filter is not of that shape.
fn keyset_page(
    conn: &Connection,
    tenant: &str,
    filter: &EntityFilter,
    paging: Paging,
) -> rusqlite::Result<Option<Page>> {
    let Some(after) = &filter.id_after else { return Ok(None) };
    let by_id = filter.order.as_ref().is_none_or(|o| o.is_by_id());
    let one_type = filter.types.as_ref().and_then(|t| t.as_type_list()).filter(|l| l.len() == 1);
    let (Some(list), true, false) = (one_type, by_id, paging.count) else { return Ok(None) };
    let mut stmt = conn.prepare_cached(
        "SELECT e.doc FROM entity_types t JOIN entities e ON e.eid = t.eid
         WHERE t.tenant = ?1 AND t.type = ?2 AND t.id > ?3 ORDER BY t.id",
    )?;
    let mut rows = stmt.query(rusqlite::params![tenant, list[0], after])?;
    let (mut page, mut matched) = (Page::default(), 0usize);
    while page.entities.len() < paging.limit {
        let Some(row) = rows.next()? else { break };
        let entity = decode(&row.get::<_, String>(0)?)?;
        if filter.matches(&entity) {
            if matched >= paging.offset {
                page.entities.push(entity);
            }
            matched += 1;
        }
    }
    Ok(Some(page))
}

/// The first `wanted` members of `set` in id order, with their ids.
fn ordered(
    conn: &Connection,
    tenant: &str,
    filter: &EntityFilter,
    set: &EidSet,
    wanted: usize,
) -> rusqlite::Result<Vec<(String, i64)>> {
    // A small set is cheapest looked up one by one and sorted; a large one by walking ids in
    // order (those of the one queried type, or the tenant's: both indexes hold the eid),
    // stopping once enough are found.
    const LOOKUP_AT_MOST: usize = 4096;
    let mut out = Vec::new();
    if set.len() <= LOOKUP_AT_MOST || wanted >= set.len() {
        // From the type index, which is small and covers (eid -> id); the entities table would
        // cost a page of JSON per probe.
        let mut stmt = conn.prepare_cached("SELECT id FROM entity_types WHERE eid = ?1 LIMIT 1")?;
        for &eid in set {
            if let Some(id) = stmt.query_row([eid], |r| r.get::<_, String>(0)).optional()? {
                out.push((id, eid));
            }
        }
        out.sort_unstable();
        out.truncate(wanted);
        return Ok(out);
    }
    let one_type = filter.types.as_ref().and_then(|t| t.as_type_list()).filter(|l| l.len() == 1);
    let (sql, args): (&str, Vec<SqlValue>) = match one_type {
        Some(list) => (
            "SELECT id, eid FROM entity_types WHERE tenant = ?1 AND type = ?2 ORDER BY id",
            vec![tenant.to_owned().into(), list[0].to_owned().into()],
        ),
        None => ("SELECT id, eid FROM entities WHERE tenant = ?1 ORDER BY id", vec![tenant.to_owned().into()]),
    };
    let mut stmt = conn.prepare_cached(sql)?;
    let mut rows = stmt.query(params_from_iter(args))?;
    while out.len() < wanted {
        let Some(row) = rows.next()? else { break };
        let eid: i64 = row.get(1)?;
        if set.binary_search(&eid).is_ok() {
            out.push((row.get(0)?, eid));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::{attribute_scalars, difference, Scalar};
    use ngsild_core::model::{Attribute, AttributeKind};
    use serde_json::json;

    #[test]
    fn a_changed_scalar_is_one_row_out_and_one_in() {
        let old = [Scalar::Present, Scalar::Num(1.0), Scalar::Str("a".into()), Scalar::Str("b".into())];
        let new = [Scalar::Present, Scalar::Num(2.0), Scalar::Str("a".into())];
        let (gone, added) = difference(&old, &new);
        assert_eq!(gone, vec![Scalar::Num(1.0), Scalar::Str("b".into())]);
        assert_eq!(added, vec![Scalar::Num(2.0)]);
        let (gone, added) = difference(&old, &[]);
        assert_eq!(gone.len(), 4);
        assert!(added.is_empty());
        // 0.0 and -0.0 are one value to SQLite, and so one row here.
        assert_eq!(difference(&[Scalar::Num(0.0)], &[Scalar::Num(-0.0)]), (vec![], vec![]));
    }

    #[test]
    fn an_attribute_is_a_set_of_rows_in_the_order_first_held() {
        let instances = [
            Attribute::new(AttributeKind::Property, json!([3, "x", 3, 0.0, "x"])),
            Attribute::new(AttributeKind::Property, json!(-0.0)),
            Attribute::new(AttributeKind::Property, json!("3")),
        ];
        assert_eq!(
            attribute_scalars(&instances),
            vec![Scalar::Present, Scalar::Num(3.0), Scalar::Str("x".into()), Scalar::Num(0.0), Scalar::Str("3".into())]
        );
        let one = [Attribute::new(AttributeKind::Property, json!(7))];
        assert_eq!(attribute_scalars(&one), vec![Scalar::Present, Scalar::Num(7.0)]);
    }
}
