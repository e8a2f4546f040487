//! The figures `/metrics` shows of the embedded store (`SqliteStore::stats`), read on a read
//! connection every so often by the binary, never per scrape: entities per tenant and the
//! history instances are counts over their tables (index scans), the size is the data
//! directory's files (database, WAL, shared memory).

use rusqlite::Connection;

use cityhub_metrics::StoreStats;

pub(crate) fn read(conn: &Connection, dir: &std::path::Path) -> rusqlite::Result<StoreStats> {
    let pairs = |sql: &str| -> rusqlite::Result<Vec<(String, u64)>> {
        let mut statement = conn.prepare(sql)?;
        let rows = statement.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?.max(0) as u64)))?;
        rows.collect()
    };
    let entities = pairs("SELECT tenant, count(*) FROM entities GROUP BY tenant")?;
    let outbox = pairs("SELECT endpoint, count(*) FROM outbox GROUP BY endpoint")?;
    let history: i64 = conn.query_row("SELECT count(*) FROM attr_history", [], |r| r.get(0))?;
    Ok(StoreStats {
        bytes: cityhub_metrics::dir_bytes(dir),
        entities,
        history_instances: history.max(0) as u64,
        outbox,
    })
}
