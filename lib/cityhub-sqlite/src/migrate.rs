//! The top layer of the embedded backend: connection settings and the migrations that bring a
//! file of any earlier schema version to the current one, from the DDL each table module owns
//! (`entities`, `contexts`, `records`, `audit`, `index`, `temporal`, `subscriptions`).

use rusqlite::Connection;

use crate::codec::decode;
use crate::{audit, contexts, entities, index, records, subscriptions, temporal};

/// Bumped whenever the schema changes; `migrate` brings older files forward (version 11 added
/// the `leases` table, 12 the `audit_log`, 13 made `facets` one WITHOUT ROWID table).
pub(crate) const SCHEMA_VERSION: i64 = 13;

pub fn configure_writer(conn: &Connection) -> rusqlite::Result<()> {
    // WAL lets readers run beside the writer; synchronous=FULL makes every commit durable against
    // power loss, not only against a crash of the process.
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.pragma_update(None, "busy_timeout", 10_000)?;
    // 16 MB, not more: at every commit after a page split SQLite walks the whole page-cache hash
    // table (balance_nonroot renumbers pages through the 1 GiB lock page, which makes
    // pager_end_transaction truncate the cache from there). With 64 MB that walk took 15 % of the
    // writer's CPU under partial updates; with 16 MB, 3 %. The OS page cache serves the misses.
    conn.pragma_update(None, "cache_size", -16_000)?;
    // Checkpoints run on their own thread (see `Checkpointer`), never inside a commit.
    conn.pragma_update(None, "wal_autocheckpoint", 0)?;
    // When the WAL starts over, a file grown by a burst of writes shrinks back to this size.
    conn.pragma_update(None, "journal_size_limit", 64 * 1024 * 1024)?;
    // The writer runs ~40 distinct statements per entity write (entity, index, facet, geo,
    // history, journal); rusqlite keeps 16 by default, so every write evicted and parsed again
    // statements it had just used (SQLite's parser was ~4 % of the writer's CPU in batches).
    conn.set_prepared_statement_cache_capacity(WRITER_STATEMENTS);
    Ok(())
}

/// Prepared statements the writer connection keeps (more than it uses, so none is evicted).
const WRITER_STATEMENTS: usize = 256;

pub fn configure_reader(conn: &Connection) -> rusqlite::Result<()> {
    conn.pragma_update(None, "busy_timeout", 10_000)?;
    conn.pragma_update(None, "cache_size", -32_000)?;
    // temp_store stays FILE: a sorter bigger than the cache spills to a temporary file instead of
    // growing in memory, so the one aggregate that sorts (text minimum and maximum per datasetId and
    // period) keeps memory flat over a million instances.
    Ok(())
}

pub fn migrate(conn: &mut Connection) -> rusqlite::Result<()> {
    let version: i64 = conn.pragma_query_value(None, "user_version", |row| row.get(0))?;
    if version >= SCHEMA_VERSION {
        return Ok(());
    }
    let tx = conn.transaction()?;
    tx.execute_batch(entities::TENANTS)?;
    tx.execute_batch(contexts::SCHEMA)?;
    tx.execute_batch(records::SCHEMA)?;
    tx.execute_batch(audit::SCHEMA)?;
    if version < 4 {
        tx.execute_batch(entities::ENTITIES_V4)?;
    }
    if version > 0 && version < 4 {
        tx.execute_batch(index::DROP_OLD)?;
        tx.execute_batch(
            "INSERT INTO entities_v4 (tenant, id, doc) SELECT tenant, id, doc FROM entities ORDER BY tenant, id;
             DROP TABLE entities;",
        )?;
    }
    if version < 4 {
        tx.execute_batch("ALTER TABLE entities_v4 RENAME TO entities")?;
    }
    if (4..13).contains(&version) && index::has_v12_facets(&tx)? {
        // Versions 4 to 12 kept facets in a rowid table with three indexes.
        index::convert_v12_facets(&tx)?;
    }
    tx.execute_batch(index::SCHEMA)?;
    if version > 0 && version < 5 {
        // Version 5 made the observedAt index of the history covering.
        tx.execute_batch("DROP INDEX IF EXISTS attr_history_observed")?;
    }
    // Version 9 keys the history by series (see temporal.rs); an older one moves aside first.
    let old_history = version > 0 && version < 9 && temporal::is_text_keyed(&tx)?;
    if old_history {
        tx.execute_batch(temporal::SET_ASIDE_TEXT_KEYED)?;
    }
    tx.execute_batch(temporal::SCHEMA)?;
    if old_history {
        temporal::move_text_keyed(&tx)?;
    }
    subscriptions::migrate(&tx)?;
    contexts::migrate(&tx)?;
    if version < 4 {
        // Entities stored before the integer-keyed indexes existed get their rows now.
        let rows: Vec<(i64, String, String)> = {
            let mut stmt = tx.prepare("SELECT eid, tenant, doc FROM entities")?;
            let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
            rows.collect::<rusqlite::Result<_>>()?
        };
        for (eid, tenant, doc) in rows {
            index::reindex(&tx, &mut index::Keys::default(), &tenant, eid, None, Some(&decode(&doc)?))?;
        }
    }
    tx.pragma_update(None, "user_version", SCHEMA_VERSION)?;
    tx.commit()
}
