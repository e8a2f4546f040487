//! The tamper-evident history's tables (issue 22): one leaf per history row, appended by the
//! history's writes in their transaction (`record`, `replaced`, `removing`), and each tenant's
//! head — its size and the right edge of its tree — so that a checkpoint's root is O(log n) to
//! read.
//!
//! # What a leaf row keeps
//!
//! A leaf's bytes (`cityhub_ledger::leaf`) are the history row it records plus the leaf's time
//! and op. While that row still holds what the leaf recorded, `ledger_entries` keeps only the
//! leaf's index, its hash (computed at commit), the row's `seq`, the op and the time
//! (`leaf IS NULL`): the bytes are rebuilt from the row (`attr_history` + `attr_series`) when
//! read. Before the hub itself changes or deletes a history row (the temporal API's replace and
//! removals), the bytes of every leaf that points at it are written into the leaf row
//! (`materialise`), so they keep showing what was recorded. A leaf whose row goes with it
//! (`remove`) is stored whole.
//!
//! Tamper evidence is unchanged by this: the hash is fixed at commit, so an edit of a history
//! row behind the hub's back (its value, entity, attribute, tenant, datasetId, deletion time) or
//! of a leaf row's time or op rebuilds into bytes whose hash is not the recorded one, and an
//! edit of the recorded hash no longer adds up to the signed root.
//!
//! # The head in the writer's memory
//!
//! The writer thread keeps each tenant's frontier (`Frontier`: size and right edge) in memory
//! (`HEADS`, a thread-local of the writer thread, which alone writes history): a leaf costs one
//! row and no read. The head row is written once per tenant per committed group (`flush`, just
//! before the commit); `settle` forgets what a rolled-back group appended, `mark`/`rewind` what a
//! temporal write rolled back to its savepoint. A frontier not in memory is read from its head
//! row, checked against the leaves (rebuilt from their hashes if the two disagree).
//!
//! Cost per history row: its canonical JSON and one SHA-256 (`cityhub_ledger`), one leaf row of
//! about 80 bytes (with its `seq` index entry). Proofs read the tenant's leaf hashes (32 bytes
//! each, in index order from the primary key) and hash O(n) nodes once.

use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};

use cityhub_ledger::leaf::{Change, Op};
use cityhub_ledger::merkle::leaf_hash;
use cityhub_ledger::Frontier;
use cityhub_storage::{LedgerHead, LedgerLeaf};
use ngsild_core::time::{datetime_of_micros, format_time, micros};
use rusqlite::{params, Connection, OptionalExtension};

pub const SCHEMA: &str = "
    CREATE TABLE IF NOT EXISTS ledger_entries (
        tenant TEXT NOT NULL,
        idx INTEGER NOT NULL,
        hash BLOB NOT NULL,
        seq INTEGER,
        op INTEGER,
        at INTEGER,
        leaf BLOB,
        PRIMARY KEY (tenant, idx)
    ) WITHOUT ROWID;
    CREATE INDEX IF NOT EXISTS ledger_entries_seq ON ledger_entries (seq) WHERE seq IS NOT NULL;
    CREATE TABLE IF NOT EXISTS ledger_heads (
        tenant TEXT PRIMARY KEY,
        size INTEGER NOT NULL,
        frontier BLOB NOT NULL
    ) WITHOUT ROWID;
";

/// Brings the tables up to date at open: a `ledger_leaves` table of an earlier build (every leaf
/// stored whole) becomes `ledger_entries` rows with their bytes.
pub fn open(conn: &Connection) -> rusqlite::Result<()> {
    conn.execute_batch(SCHEMA)?;
    let old: bool = conn.query_row(
        "SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'ledger_leaves')",
        [],
        |r| r.get(0),
    )?;
    if old {
        conn.execute_batch(
            "BEGIN IMMEDIATE;
             INSERT INTO ledger_entries (tenant, idx, hash, seq, op, at, leaf)
                 SELECT tenant, idx, hash, seq, NULL, NULL, leaf FROM ledger_leaves;
             DROP TABLE ledger_leaves;
             COMMIT;",
        )?;
    }
    Ok(())
}

/// Whether history writes append leaves (`cityhub serve --ledger on|off`). A log with writes
/// made while it was off misses them for good, which `cityhub ledger verify` cannot see.
static ENABLED: AtomicBool = AtomicBool::new(true);

pub fn set_enabled(on: bool) {
    ENABLED.store(on, Ordering::Relaxed);
}

pub fn enabled() -> bool {
    ENABLED.load(Ordering::Relaxed)
}

/// A tenant's frontier in the writer's memory, and whether it holds leaves its head row has not.
#[derive(Clone)]
pub struct Head {
    frontier: Frontier,
    dirty: bool,
}

thread_local! {
    /// The writer thread's heads, per tenant (see the module doc).
    static HEADS: RefCell<HashMap<String, Head>> = RefCell::new(HashMap::new());
}

/// Heads kept in memory at most; past it, the clean ones are forgotten after a commit.
const MAX_HEADS: usize = 4096;

/// Writes the head row of every tenant the current group appended to: once per group, in its
/// transaction, just before its commit.
pub fn flush(conn: &Connection) -> rusqlite::Result<()> {
    HEADS.with(|heads| {
        for (tenant, head) in heads.borrow().iter().filter(|(_, h)| h.dirty) {
            let blob: Vec<u8> = head.frontier.hashes().concat();
            conn.prepare_cached(
                "INSERT INTO ledger_heads (tenant, size, frontier) VALUES (?1, ?2, ?3)
                 ON CONFLICT (tenant) DO UPDATE SET size = ?2, frontier = ?3",
            )?
            .execute(params![tenant, head.frontier.size() as i64, blob])?;
        }
        Ok(())
    })
}

/// After a group: committed, its heads are what the table holds; rolled back, the heads it
/// appended to are forgotten (read again from the table when next needed).
pub fn settle(committed: bool) {
    HEADS.with(|heads| {
        let mut heads = heads.borrow_mut();
        if committed {
            heads.values_mut().for_each(|h| h.dirty = false);
            if heads.len() > MAX_HEADS {
                heads.clear();
            }
        } else {
            heads.retain(|_, h| !h.dirty);
        }
    })
}

/// The tenant's head before a write that may roll back to its savepoint (`rewind`).
pub fn mark(tenant: &str) -> Option<Head> {
    HEADS.with(|heads| heads.borrow().get(tenant).cloned())
}

/// The tenant's head back to what `mark` saw: the leaves appended since were rolled back.
pub fn rewind(tenant: &str, mark: Option<Head>) {
    HEADS.with(|heads| {
        let mut heads = heads.borrow_mut();
        match mark {
            Some(head) => heads.insert(tenant.to_owned(), head),
            None => heads.remove(tenant),
        };
    })
}

fn frontier_of(size: u64, blob: &[u8]) -> rusqlite::Result<Frontier> {
    let hashes: Vec<[u8; 32]> = blob.chunks_exact(32).map(|c| <[u8; 32]>::try_from(c).unwrap_or_default()).collect();
    Frontier::restore(size, &hashes).ok_or_else(|| {
        rusqlite::Error::ToSqlConversionFailure(format!("the ledger head of size {size} is damaged").into())
    })
}

fn stored_head(conn: &Connection, tenant: &str) -> rusqlite::Result<Option<(i64, Vec<u8>)>> {
    conn.prepare_cached("SELECT size, frontier FROM ledger_heads WHERE tenant = ?1")?
        .query_row([tenant], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()
}

/// The tenant's frontier from its head row, checked against its leaves.
fn load(conn: &Connection, tenant: &str) -> rusqlite::Result<Frontier> {
    let frontier = match stored_head(conn, tenant)? {
        Some((size, blob)) => frontier_of(size as u64, &blob)?,
        None => Frontier::default(),
    };
    let leaves: i64 = conn
        .prepare_cached("SELECT COALESCE(MAX(idx) + 1, 0) FROM ledger_entries WHERE tenant = ?1")?
        .query_row([tenant], |r| r.get(0))?;
    if leaves as u64 == frontier.size() {
        return Ok(frontier);
    }
    tracing::warn!(
        tenant,
        head = frontier.size(),
        leaves,
        "the ledger head disagrees with its leaves: rebuilt from them"
    );
    let mut rebuilt = Frontier::default();
    for hash in hashes(conn, tenant, u64::MAX)? {
        rebuilt.push(hash);
    }
    Ok(rebuilt)
}

fn op_code(op: Op) -> i64 {
    match op {
        Op::Record => 0,
        Op::Replace => 1,
        Op::Remove => 2,
    }
}

/// Appends one leaf to the tenant's log: its hash, and its bytes unless `by_reference` (they are
/// rebuilt from the history row `seq`).
fn append(
    conn: &Connection,
    tenant: &str,
    bytes: &[u8],
    seq: Option<i64>,
    op: Op,
    at: i64,
    by_reference: bool,
) -> rusqlite::Result<()> {
    let hash = leaf_hash(bytes);
    let index = HEADS.with(|heads| -> rusqlite::Result<u64> {
        let mut heads = heads.borrow_mut();
        let head = match heads.get_mut(tenant) {
            Some(head) => head,
            None => heads.entry(tenant.to_owned()).or_insert(Head { frontier: load(conn, tenant)?, dirty: false }),
        };
        let index = head.frontier.size();
        head.frontier.push(hash);
        head.dirty = true;
        Ok(index)
    })?;
    let leaf = if by_reference { None } else { Some(bytes) };
    conn.prepare_cached(
        "INSERT INTO ledger_entries (tenant, idx, hash, seq, op, at, leaf) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    )?
    .execute(params![tenant, index as i64, &hash[..], seq, op_code(op), at, leaf])?;
    Ok(())
}

fn instance_id(seq: i64) -> String {
    ngsild_core::history::instance_id(seq, None)
}

/// A history row's fields a leaf shows (all `None` when the row is gone).
#[derive(Default)]
struct RowNow {
    tenant: Option<String>,
    entity: Option<String>,
    attr: Option<String>,
    dataset_id: Option<String>,
    doc: Option<String>,
    deleted: Option<i64>,
}

impl RowNow {
    /// The fields from a result row that selects `s.tenant, s.entity_id, s.attr, h.dataset_id,
    /// h.doc, h.t_deleted` from column `first` on.
    fn read(r: &rusqlite::Row<'_>, first: usize) -> rusqlite::Result<RowNow> {
        Ok(RowNow {
            tenant: r.get(first)?,
            entity: r.get(first + 1)?,
            attr: r.get(first + 2)?,
            dataset_id: r.get(first + 3)?,
            doc: r.get(first + 4)?,
            deleted: r.get(first + 5)?,
        })
    }
}

/// The bytes of the leaf `op` at `at` (µs) about the history row `seq` as it is now.
fn rebuilt(row: &RowNow, seq: i64, op: Op, at: i64) -> Vec<u8> {
    let instance = row.doc.as_deref().map(|doc| serde_json::from_str(doc).unwrap_or_else(|_| doc.into()));
    let deleted_at = row.deleted.map(|t| format_time(datetime_of_micros(t)));
    let at = format_time(datetime_of_micros(at));
    let id = instance_id(seq);
    Change {
        tenant: row.tenant.as_deref().unwrap_or_default(),
        entity: row.entity.as_deref().unwrap_or_default(),
        attr: row.attr.as_deref(),
        dataset_id: row.dataset_id.as_deref(),
        instance_id: Some(&id),
        instance,
        op,
        deleted_at: deleted_at.as_deref(),
        at: &at,
    }
    .bytes()
}

fn row_now(conn: &Connection, seq: i64) -> rusqlite::Result<RowNow> {
    Ok(conn
        .prepare_cached(
            "SELECT s.tenant, s.entity_id, s.attr, h.dataset_id, h.doc, h.t_deleted
             FROM attr_history h JOIN attr_series s ON s.sid = h.sid WHERE h.seq = ?1",
        )?
        .query_row([seq], |r| RowNow::read(r, 0))
        .optional()?
        .unwrap_or_default())
}

/// The time of a new leaf, in µs (its RFC 3339 form is `format_time` of it, exactly).
fn now_micros() -> i64 {
    chrono::Utc::now().timestamp_micros()
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
    let row = RowNow {
        tenant: Some(tenant.to_owned()),
        entity: Some(entity.to_owned()),
        attr: Some(attr.to_owned()),
        dataset_id: dataset_id.map(str::to_owned),
        doc: Some(doc.to_owned()),
        // As the row keeps it (`InstanceColumns::deleted`), so that the row rebuilds the leaf.
        deleted: deleted_at.and_then(micros),
    };
    let at = now_micros();
    append(conn, tenant, &rebuilt(&row, seq, Op::Record, at), Some(seq), Op::Record, at, true)
}

/// Before the temporal API replaces the history row `seq` in place: its leaves keep what they
/// recorded.
pub fn replacing(conn: &Connection, seq: i64) -> rusqlite::Result<()> {
    if !enabled() {
        return Ok(());
    }
    materialise(conn, seq)
}

/// The leaf of an instance the temporal API replaced in place (`seq`, just rewritten).
pub fn replaced(conn: &Connection, tenant: &str, seq: i64, _doc: &str) -> rusqlite::Result<()> {
    if !enabled() {
        return Ok(());
    }
    let row = row_now(conn, seq)?;
    if row.doc.is_none() {
        return Ok(());
    }
    let at = now_micros();
    append(conn, tenant, &rebuilt(&row, seq, Op::Replace, at), Some(seq), Op::Replace, at, true)
}

/// Writes the bytes of every leaf that rebuilds from the history row `seq` into its leaf row,
/// before the row changes or goes.
fn materialise(conn: &Connection, seq: i64) -> rusqlite::Result<()> {
    let refs: Vec<(String, i64, i64, i64)> = conn
        .prepare_cached("SELECT tenant, idx, op, at FROM ledger_entries WHERE seq = ?1 AND leaf IS NULL")?
        .query_map([seq], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))?
        .collect::<rusqlite::Result<_>>()?;
    if refs.is_empty() {
        return Ok(());
    }
    let row = row_now(conn, seq)?;
    for (tenant, idx, op, at) in refs {
        let op = if op == 1 { Op::Replace } else { Op::Record };
        conn.prepare_cached("UPDATE ledger_entries SET leaf = ?3 WHERE tenant = ?1 AND idx = ?2")?.execute(params![
            tenant,
            idx,
            rebuilt(&row, seq, op, at)
        ])?;
    }
    Ok(())
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
        materialise(conn, seq)?;
        let at = format_time(datetime_of_micros(now_micros()));
        let id = instance_id(seq);
        let change = Change {
            tenant,
            entity: &entity,
            attr: Some(&attr),
            dataset_id: dataset_id.as_deref(),
            instance_id: Some(&id),
            instance: None,
            op: Op::Remove,
            deleted_at: None,
            at: &at,
        };
        append(conn, tenant, &change.bytes(), Some(seq), Op::Remove, micros(&at).unwrap_or_default(), false)?;
    }
    Ok(())
}

pub fn head(conn: &Connection, tenant: &str) -> rusqlite::Result<LedgerHead> {
    Ok(match stored_head(conn, tenant)? {
        Some((size, blob)) => {
            let frontier = frontier_of(size as u64, &blob)?;
            LedgerHead { size: size as u64, frontier: frontier.hashes() }
        }
        None => LedgerHead::default(),
    })
}

pub fn hashes(conn: &Connection, tenant: &str, to: u64) -> rusqlite::Result<Vec<[u8; 32]>> {
    let mut stmt =
        conn.prepare_cached("SELECT hash FROM ledger_entries WHERE tenant = ?1 AND idx < ?2 ORDER BY idx")?;
    let rows = stmt.query_map(params![tenant, to.min(i64::MAX as u64) as i64], |r| {
        let b: Vec<u8> = r.get(0)?;
        Ok(<[u8; 32]>::try_from(b.as_slice()).unwrap_or_default())
    })?;
    rows.collect()
}

/// The leaves from `from`, each with its bytes as the store shows them now: stored, or rebuilt
/// from the history row it records.
pub fn leaves(conn: &Connection, tenant: &str, from: u64, limit: usize) -> rusqlite::Result<Vec<LedgerLeaf>> {
    let mut stmt = conn.prepare_cached(
        "SELECT l.idx, l.hash, l.leaf, l.seq, l.op, l.at,
                s.tenant, s.entity_id, s.attr, h.dataset_id, h.doc, h.t_deleted,
                l.seq IS NOT NULL AND NOT EXISTS (SELECT 1 FROM ledger_entries n WHERE n.seq = l.seq AND n.idx > l.idx)
         FROM ledger_entries l LEFT JOIN attr_history h ON h.seq = l.seq LEFT JOIN attr_series s ON s.sid = h.sid
         WHERE l.tenant = ?1 AND l.idx >= ?2 ORDER BY l.idx LIMIT ?3",
    )?;
    let rows = stmt.query_map(params![tenant, from.min(i64::MAX as u64) as i64, limit as i64], |r| {
        let hash: Vec<u8> = r.get(1)?;
        let stored: Option<Vec<u8>> = r.get(2)?;
        let row = RowNow::read(r, 6)?;
        let bytes = match stored {
            Some(bytes) => bytes,
            None => {
                let op = if r.get::<_, Option<i64>>(4)? == Some(1) { Op::Replace } else { Op::Record };
                let seq: Option<i64> = r.get(3)?;
                rebuilt(&row, seq.unwrap_or_default(), op, r.get::<_, Option<i64>>(5)?.unwrap_or_default())
            }
        };
        Ok(LedgerLeaf {
            index: r.get::<_, i64>(0)? as u64,
            hash: <[u8; 32]>::try_from(hash.as_slice()).unwrap_or_default(),
            bytes,
            instance_now: row.doc,
            latest_of_instance: r.get(12)?,
        })
    })?;
    rows.collect()
}

pub fn find(conn: &Connection, tenant: &str, instance_id: &str) -> rusqlite::Result<Vec<u64>> {
    let Some(seq) = instance_id.strip_prefix(ngsild_core::history::INSTANCE_PREFIX).and_then(|n| n.parse::<i64>().ok())
    else {
        return Ok(Vec::new());
    };
    let mut stmt = conn.prepare_cached("SELECT idx FROM ledger_entries WHERE seq = ?1 AND tenant = ?2 ORDER BY idx")?;
    let rows = stmt.query_map(params![seq, tenant], |r| Ok(r.get::<_, i64>(0)? as u64))?;
    rows.collect()
}

#[cfg(test)]
mod tests {
    use cityhub_ledger::merkle::root;
    use cityhub_storage::{Modified, Modifier, Store};
    use ngsild_core::model::{Attribute, AttributeKind};
    use ngsild_core::{Entity, NgsiLdError};
    use serde_json::json;

    use super::*;
    use crate::SqliteStore;

    fn create(id: &str, n: i64) -> (String, Modifier) {
        let mut e = Entity::new(id, vec!["https://example.org/Counter".into()]);
        e.attrs.insert("https://example.org/n".into(), vec![Attribute::new(AttributeKind::Property, json!(n))]);
        (
            id.to_owned(),
            Box::new(move |current| match current {
                Some(_) => Err(NgsiLdError::already_exists("exists")),
                None => Ok(Modified::entity(e)),
            }),
        )
    }

    /// Every leaf's bytes hash to its recorded hash, and all add up to the head's root.
    async fn consistent(store: &SqliteStore, tenant: &str) -> u64 {
        let head = store.ledger_head(tenant).await.unwrap();
        let leaves = store.ledger_leaves(tenant, 0, 100_000).await.unwrap();
        assert_eq!(leaves.len() as u64, head.size);
        for (i, leaf) in leaves.iter().enumerate() {
            assert_eq!(leaf.index, i as u64);
            assert_eq!(leaf.hash, leaf_hash(&leaf.bytes), "leaf {i} rebuilds to its hash");
        }
        let hashes: Vec<_> = leaves.iter().map(|l| l.hash).collect();
        assert_eq!(Frontier::restore(head.size, &head.frontier).unwrap().root(), root(&hashes));
        head.size
    }

    fn db(dir: &std::path::Path) -> Connection {
        Connection::open(dir.join("cityhub.sqlite")).unwrap()
    }

    #[tokio::test]
    async fn a_group_writes_its_head_once_and_leaves_point_at_their_rows() {
        let dir = tempfile::tempdir().unwrap();
        SqliteStore::open(dir.path()).unwrap().close();
        // Count every write of a head row, from outside the store.
        db(dir.path())
            .execute_batch(
                "CREATE TABLE head_writes (n INTEGER);
                 CREATE TRIGGER hw_i AFTER INSERT ON ledger_heads BEGIN INSERT INTO head_writes VALUES (1); END;
                 CREATE TRIGGER hw_u AFTER UPDATE ON ledger_heads BEGIN INSERT INTO head_writes VALUES (1); END;",
            )
            .unwrap();
        let store = SqliteStore::open(dir.path()).unwrap();
        let batch: Vec<_> = (0..50).map(|i| create(&format!("urn:c:{i}"), i)).collect();
        let answers = store.modify("", batch).await.unwrap();
        assert!(answers.iter().all(Result::is_ok));
        assert_eq!(consistent(&store, "").await, 50);
        store.close();
        let conn = db(dir.path());
        let writes: i64 = conn.query_row("SELECT COUNT(*) FROM head_writes", [], |r| r.get(0)).unwrap();
        assert_eq!(writes, 1, "50 leaves in one group, one head write");
        let whole: i64 =
            conn.query_row("SELECT COUNT(*) FROM ledger_entries WHERE leaf IS NOT NULL", [], |r| r.get(0)).unwrap();
        assert_eq!(whole, 0, "a recorded instance's leaf is rebuilt from its history row, not stored again");
    }

    #[tokio::test]
    async fn a_reopened_store_goes_on_from_its_head() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(dir.path()).unwrap();
        store.modify("", vec![create("urn:c:1", 1), create("urn:c:2", 2)]).await.unwrap();
        store.modify("t", vec![create("urn:c:1", 1)]).await.unwrap();
        store.close();
        let store = SqliteStore::open(dir.path()).unwrap();
        store.modify("", vec![create("urn:c:3", 3)]).await.unwrap();
        assert_eq!(consistent(&store, "").await, 3);
        assert_eq!(consistent(&store, "t").await, 1);
    }

    #[test]
    fn a_rolled_back_append_is_forgotten() {
        let conn = Connection::open_in_memory().unwrap();
        conn.execute_batch(SCHEMA).unwrap();
        let leaf = |conn: &Connection, n: i64| append(conn, "", &n.to_be_bytes(), None, Op::Record, n, false);
        conn.execute_batch("BEGIN").unwrap();
        (0..3).for_each(|n| leaf(&conn, n).unwrap());
        flush(&conn).unwrap();
        conn.execute_batch("COMMIT").unwrap();
        settle(true);
        // A group that rolls back.
        conn.execute_batch("BEGIN").unwrap();
        leaf(&conn, 10).unwrap();
        conn.execute_batch("ROLLBACK").unwrap();
        settle(false);
        // A temporal write rolled back to its savepoint, inside a group that commits.
        conn.execute_batch("BEGIN").unwrap();
        leaf(&conn, 3).unwrap();
        let before = mark("");
        conn.execute_batch("SAVEPOINT t").unwrap();
        leaf(&conn, 11).unwrap();
        conn.execute_batch("ROLLBACK TO t; RELEASE t").unwrap();
        rewind("", before);
        leaf(&conn, 4).unwrap();
        flush(&conn).unwrap();
        conn.execute_batch("COMMIT").unwrap();
        settle(true);
        let head = head(&conn, "").unwrap();
        let expected: Vec<_> = (0..5i64).map(|n| leaf_hash(&n.to_be_bytes())).collect();
        assert_eq!(hashes(&conn, "", 100).unwrap(), expected, "indices 0..5 with no gap and no rolled-back leaf");
        assert_eq!(Frontier::restore(head.size, &head.frontier).unwrap().root(), root(&expected));
        HEADS.with(|h| h.borrow_mut().clear());
    }

    #[tokio::test]
    async fn an_edit_behind_the_hubs_back_changes_the_leaf() {
        for edit in [
            "UPDATE attr_history SET doc = json_set(doc, '$.value', 11) WHERE seq = 1",
            "UPDATE attr_history SET dataset_id = 'urn:d' WHERE seq = 1",
            "UPDATE attr_series SET entity_id = 'urn:c:9' WHERE sid = 1",
            "UPDATE attr_series SET tenant = 'other' WHERE sid = 1",
            "UPDATE ledger_entries SET at = at + 1 WHERE idx = 0",
            "UPDATE ledger_entries SET op = 1 WHERE idx = 0",
            "DELETE FROM attr_history WHERE seq = 1",
        ] {
            let dir = tempfile::tempdir().unwrap();
            let store = SqliteStore::open(dir.path()).unwrap();
            store.modify("", vec![create("urn:c:1", 1), create("urn:c:2", 2)]).await.unwrap();
            consistent(&store, "").await;
            store.close();
            assert_eq!(db(dir.path()).execute(edit, []).unwrap(), 1, "{edit}");
            let store = SqliteStore::open(dir.path()).unwrap();
            let leaves = store.ledger_leaves("", 0, 10).await.unwrap();
            assert_ne!(leaves[0].hash, leaf_hash(&leaves[0].bytes), "{edit}: leaf 0 no longer hashes as recorded");
            assert_eq!(leaves[1].hash, leaf_hash(&leaves[1].bytes), "{edit}: leaf 1 is untouched");
        }
    }

    #[tokio::test]
    async fn an_earlier_builds_whole_leaves_move_over() {
        let dir = tempfile::tempdir().unwrap();
        SqliteStore::open(dir.path()).unwrap().close();
        let bytes = br#"{"op":"record"}"#;
        let mut frontier = Frontier::default();
        frontier.push(leaf_hash(bytes));
        db(dir.path())
            .execute_batch(&format!(
                "DROP TABLE ledger_entries;
                 CREATE TABLE ledger_leaves (tenant TEXT NOT NULL, idx INTEGER NOT NULL, hash BLOB NOT NULL,
                     leaf BLOB NOT NULL, seq INTEGER, PRIMARY KEY (tenant, idx)) WITHOUT ROWID;
                 INSERT INTO ledger_leaves VALUES ('', 0, X'{}', CAST('{}' AS BLOB), NULL);
                 INSERT INTO ledger_heads VALUES ('', 1, X'{}');",
                hex(&leaf_hash(bytes)),
                std::str::from_utf8(bytes).unwrap(),
                hex(&frontier.hashes().concat()),
            ))
            .unwrap();
        let store = SqliteStore::open(dir.path()).unwrap();
        store.modify("", vec![create("urn:c:1", 1)]).await.unwrap();
        assert_eq!(consistent(&store, "").await, 2);
        assert_eq!(store.ledger_leaves("", 0, 1).await.unwrap()[0].bytes, bytes);
        store.close();
        let old: i64 = db(dir.path())
            .query_row("SELECT COUNT(*) FROM sqlite_master WHERE name = 'ledger_leaves'", [], |r| r.get(0))
            .unwrap();
        assert_eq!(old, 0);
    }

    fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }
}
