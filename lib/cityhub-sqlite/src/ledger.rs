//! The tamper-evident history's tables (issue 22): one leaf per history row, appended by the
//! history's writes in their transaction (`record`, `changed`), and each tenant's head — its size
//! and the right edge of its tree — so that a checkpoint's root is O(log n) to read.
//!
//! Cost per history row: its canonical JSON and one SHA-256 (`cityhub_ledger`), one leaf row
//! (about 100 bytes of fixed columns plus the leaf, which repeats the instance's document) and
//! the head row rewritten once per row. Proofs read the tenant's leaf hashes (32 bytes each,
//! in index order from the primary key) and hash O(n) nodes once.
//!
//! `ledger_leaves.seq` is the history row's sequence number (`attr_history.seq`), so an export
//! shows each recorded instance as the history holds it now: an edit made to the history
//! outside the hub changes the leaf an export shows, and its proof fails.

use std::sync::atomic::{AtomicBool, Ordering};

use cityhub_ledger::leaf::{Change, Op};
use cityhub_ledger::merkle::leaf_hash;
use cityhub_ledger::Frontier;
use cityhub_storage::{LedgerHead, LedgerLeaf};
use rusqlite::{params, Connection, OptionalExtension};

pub const SCHEMA: &str = "
    CREATE TABLE IF NOT EXISTS ledger_leaves (
        tenant TEXT NOT NULL,
        idx INTEGER NOT NULL,
        hash BLOB NOT NULL,
        leaf BLOB NOT NULL,
        seq INTEGER,
        PRIMARY KEY (tenant, idx)
    ) WITHOUT ROWID;
    CREATE INDEX IF NOT EXISTS ledger_leaves_seq ON ledger_leaves (seq) WHERE seq IS NOT NULL;
    CREATE TABLE IF NOT EXISTS ledger_heads (
        tenant TEXT PRIMARY KEY,
        size INTEGER NOT NULL,
        frontier BLOB NOT NULL
    ) WITHOUT ROWID;
";

/// Whether history writes append leaves (on unless the process turned it off: `cityhub serve
/// --ledger off`, for measuring its cost). A log with writes made while it was off misses them
/// for good, which `cityhub ledger verify` cannot see; it is a switch for benchmarks.
static ENABLED: AtomicBool = AtomicBool::new(true);

pub fn set_enabled(on: bool) {
    ENABLED.store(on, Ordering::Relaxed);
}

pub fn enabled() -> bool {
    ENABLED.load(Ordering::Relaxed)
}

fn frontier_of(size: u64, blob: &[u8]) -> rusqlite::Result<Frontier> {
    let hashes: Vec<[u8; 32]> = blob.chunks_exact(32).map(|c| <[u8; 32]>::try_from(c).unwrap_or_default()).collect();
    Frontier::restore(size, &hashes).ok_or_else(|| {
        rusqlite::Error::ToSqlConversionFailure(format!("the ledger head of size {size} is damaged").into())
    })
}

/// Appends one leaf to the tenant's log.
fn append(conn: &Connection, tenant: &str, bytes: &[u8], seq: Option<i64>) -> rusqlite::Result<()> {
    let head: Option<(i64, Vec<u8>)> = conn
        .prepare_cached("SELECT size, frontier FROM ledger_heads WHERE tenant = ?1")?
        .query_row([tenant], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?;
    let mut frontier = match &head {
        Some((size, blob)) => frontier_of(*size as u64, blob)?,
        None => Frontier::default(),
    };
    let index = frontier.size() as i64;
    let hash = leaf_hash(bytes);
    conn.prepare_cached("INSERT INTO ledger_leaves (tenant, idx, hash, leaf, seq) VALUES (?1, ?2, ?3, ?4, ?5)")?
        .execute(params![tenant, index, &hash[..], bytes, seq])?;
    frontier.push(hash);
    let blob: Vec<u8> = frontier.hashes().concat();
    conn.prepare_cached(
        "INSERT INTO ledger_heads (tenant, size, frontier) VALUES (?1, ?2, ?3)
         ON CONFLICT (tenant) DO UPDATE SET size = ?2, frontier = ?3",
    )?
    .execute(params![tenant, index + 1, blob])?;
    Ok(())
}

fn instance_id(seq: i64) -> String {
    ngsild_core::history::instance_id(seq, None)
}

/// The leaf of a history row just written (`attr_history.seq` = `seq`, its document `doc`, and
/// for a recorded deletion its time).
#[allow(clippy::too_many_arguments, reason = "one leaf's fields, named at the call")]
pub fn record(
    conn: &Connection,
    tenant: &str,
    entity: &str,
    attr: &str,
    dataset_id: Option<&str>,
    seq: i64,
    doc: &str,
    deleted_at: Option<&str>,
) -> rusqlite::Result<()> {
    if !enabled() {
        return Ok(());
    }
    leaf_of_row(conn, tenant, entity, attr, dataset_id, seq, Some(doc), Op::Record, deleted_at)
}

/// The leaf of an instance the temporal API replaced in place (`seq`, its new document `doc`).
pub fn replaced(conn: &Connection, tenant: &str, seq: i64, doc: &str) -> rusqlite::Result<()> {
    if !enabled() {
        return Ok(());
    }
    let Some((entity, attr, dataset_id)) = series_of(conn, seq)? else { return Ok(()) };
    leaf_of_row(conn, tenant, &entity, &attr, dataset_id.as_deref(), seq, Some(doc), Op::Replace, None)
}

/// Which history rows the temporal API is about to delete.
pub enum Removal<'a> {
    /// Every row of the entity's history.
    Entity { entity: &'a str },
    /// The rows of a series (`attr_series.sid`), of one datasetId when `dataset_id` is `Some`.
    Series { sid: i64, dataset_id: Option<Option<&'a str>> },
    /// The observation of a series at one time and datasetId (replaced by a new one).
    Observation { sid: i64, observed: i64, dataset_id: Option<&'a str> },
    /// One row.
    Row { seq: i64 },
}

/// One removal leaf for each history row `removal` selects: to be called before they are deleted,
/// in the same transaction.
pub fn removing(conn: &Connection, tenant: &str, removal: Removal<'_>) -> rusqlite::Result<()> {
    if !enabled() {
        return Ok(());
    }
    const SELECT: &str =
        "SELECT h.seq, s.entity_id, s.attr, h.dataset_id FROM attr_history h JOIN attr_series s ON s.sid = h.sid";
    let rows: Vec<(i64, String, String, Option<String>)> = {
        let map = |r: &rusqlite::Row<'_>| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?));
        match removal {
            Removal::Entity { entity } => conn
                .prepare_cached(&format!("{SELECT} WHERE s.tenant = ?1 AND s.entity_id = ?2 ORDER BY h.seq"))?
                .query_map(params![tenant, entity], map)?
                .collect::<rusqlite::Result<_>>()?,
            Removal::Series { sid, dataset_id: None } => conn
                .prepare_cached(&format!("{SELECT} WHERE h.sid = ?1 ORDER BY h.seq"))?
                .query_map(params![sid], map)?
                .collect::<rusqlite::Result<_>>()?,
            Removal::Series { sid, dataset_id: Some(d) } => conn
                .prepare_cached(&format!("{SELECT} WHERE h.sid = ?1 AND h.dataset_id IS ?2 ORDER BY h.seq"))?
                .query_map(params![sid, d], map)?
                .collect::<rusqlite::Result<_>>()?,
            Removal::Observation { sid, observed, dataset_id } => conn
                .prepare_cached(&format!(
                    "{SELECT} WHERE h.sid = ?1 AND h.t_observed = ?2 AND h.dataset_id IS ?3 ORDER BY h.seq"
                ))?
                .query_map(params![sid, observed, dataset_id], map)?
                .collect::<rusqlite::Result<_>>()?,
            Removal::Row { seq } => conn
                .prepare_cached(&format!("{SELECT} WHERE h.seq = ?1"))?
                .query_map(params![seq], map)?
                .collect::<rusqlite::Result<_>>()?,
        }
    };
    for (seq, entity, attr, dataset_id) in rows {
        leaf_of_row(conn, tenant, &entity, &attr, dataset_id.as_deref(), seq, None, Op::Remove, None)?;
    }
    Ok(())
}

fn series_of(conn: &Connection, seq: i64) -> rusqlite::Result<Option<(String, String, Option<String>)>> {
    conn.prepare_cached(
        "SELECT s.entity_id, s.attr, h.dataset_id FROM attr_history h JOIN attr_series s ON s.sid = h.sid
         WHERE h.seq = ?1",
    )?
    .query_row([seq], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
    .optional()
}

#[allow(clippy::too_many_arguments, reason = "one leaf's fields, named at the call")]
fn leaf_of_row(
    conn: &Connection,
    tenant: &str,
    entity: &str,
    attr: &str,
    dataset_id: Option<&str>,
    seq: i64,
    doc: Option<&str>,
    op: Op,
    deleted_at: Option<&str>,
) -> rusqlite::Result<()> {
    let instance = match doc {
        Some(doc) => Some(serde_json::from_str(doc).map_err(|e| rusqlite::Error::ToSqlConversionFailure(e.into()))?),
        None => None,
    };
    let at = ngsild_core::time::now();
    let id = instance_id(seq);
    let change = Change {
        tenant,
        entity,
        attr: Some(attr),
        dataset_id,
        instance_id: Some(&id),
        instance,
        op,
        deleted_at,
        at: &at,
    };
    append(conn, tenant, &change.bytes(), Some(seq))
}

pub fn head(conn: &Connection, tenant: &str) -> rusqlite::Result<LedgerHead> {
    let head: Option<(i64, Vec<u8>)> = conn
        .prepare_cached("SELECT size, frontier FROM ledger_heads WHERE tenant = ?1")?
        .query_row([tenant], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?;
    Ok(match head {
        Some((size, blob)) => {
            let frontier = frontier_of(size as u64, &blob)?;
            LedgerHead { size: size as u64, frontier: frontier.hashes() }
        }
        None => LedgerHead::default(),
    })
}

pub fn hashes(conn: &Connection, tenant: &str, to: u64) -> rusqlite::Result<Vec<[u8; 32]>> {
    let mut stmt = conn.prepare_cached("SELECT hash FROM ledger_leaves WHERE tenant = ?1 AND idx < ?2 ORDER BY idx")?;
    let rows = stmt.query_map(params![tenant, to.min(i64::MAX as u64) as i64], |r| {
        let b: Vec<u8> = r.get(0)?;
        Ok(<[u8; 32]>::try_from(b.as_slice()).unwrap_or_default())
    })?;
    rows.collect()
}

pub fn leaves(conn: &Connection, tenant: &str, from: u64, limit: usize) -> rusqlite::Result<Vec<LedgerLeaf>> {
    let mut stmt = conn.prepare_cached(
        "SELECT l.idx, l.hash, l.leaf, h.doc,
                l.seq IS NOT NULL AND NOT EXISTS (SELECT 1 FROM ledger_leaves n WHERE n.seq = l.seq AND n.idx > l.idx)
         FROM ledger_leaves l LEFT JOIN attr_history h ON h.seq = l.seq
         WHERE l.tenant = ?1 AND l.idx >= ?2 ORDER BY l.idx LIMIT ?3",
    )?;
    let rows = stmt.query_map(params![tenant, from.min(i64::MAX as u64) as i64, limit as i64], |r| {
        let hash: Vec<u8> = r.get(1)?;
        Ok(LedgerLeaf {
            index: r.get::<_, i64>(0)? as u64,
            hash: <[u8; 32]>::try_from(hash.as_slice()).unwrap_or_default(),
            bytes: r.get(2)?,
            instance_now: r.get(3)?,
            latest_of_instance: r.get(4)?,
        })
    })?;
    rows.collect()
}

pub fn find(conn: &Connection, tenant: &str, instance_id: &str) -> rusqlite::Result<Vec<u64>> {
    let Some(seq) = instance_id.strip_prefix(ngsild_core::history::INSTANCE_PREFIX).and_then(|n| n.parse::<i64>().ok())
    else {
        return Ok(Vec::new());
    };
    let mut stmt = conn.prepare_cached("SELECT idx FROM ledger_leaves WHERE seq = ?1 AND tenant = ?2 ORDER BY idx")?;
    let rows = stmt.query_map(params![seq, tenant], |r| Ok(r.get::<_, i64>(0)? as u64))?;
    rows.collect()
}
