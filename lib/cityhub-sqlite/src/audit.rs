//! The `audit_log` table: one row per audited request (`cityhub_storage::AuditEntry`), read
//! newest first with the filter of `AuditFilter::matches`, purged by age.

use cityhub_storage::{AuditEntry, AuditFilter, AuditPage};
use rusqlite::{params, Connection, Row};

pub const SCHEMA: &str = "
    CREATE TABLE IF NOT EXISTS audit_log (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        at INTEGER NOT NULL,
        tenant TEXT NOT NULL,
        subject TEXT NOT NULL,
        via TEXT NOT NULL,
        client TEXT NOT NULL,
        method TEXT NOT NULL,
        route TEXT NOT NULL,
        target TEXT,
        status INTEGER NOT NULL,
        error TEXT
    );
    CREATE INDEX IF NOT EXISTS audit_log_at ON audit_log (at, seq);";

pub fn append(conn: &Connection, entries: &[AuditEntry]) -> rusqlite::Result<()> {
    let mut stmt = conn.prepare_cached(
        "INSERT INTO audit_log (at, tenant, subject, via, client, method, route, target, status, error)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
    )?;
    for e in entries {
        stmt.execute(params![
            e.at_micros,
            e.tenant,
            e.subject,
            e.via,
            e.client,
            e.method,
            e.route,
            e.target,
            e.status,
            e.error
        ])?;
    }
    Ok(())
}

/// The filter as SQL: every optional condition is `(?n IS NULL OR ...)`.
const WHERE: &str = "(?1 IS NULL OR tenant = ?1)
    AND (?2 IS NULL OR subject = ?2)
    AND (?3 IS NULL OR method = ?3 OR route = ?3 OR method || ' ' || route = ?3)
    AND status BETWEEN ?4 AND ?5
    AND (?6 IS NULL OR at >= ?6)
    AND (?7 IS NULL OR at < ?7)";

fn entry(row: &Row<'_>) -> rusqlite::Result<AuditEntry> {
    Ok(AuditEntry {
        at_micros: row.get(0)?,
        tenant: row.get(1)?,
        subject: row.get(2)?,
        via: row.get(3)?,
        client: row.get(4)?,
        method: row.get(5)?,
        route: row.get(6)?,
        target: row.get(7)?,
        status: row.get(8)?,
        error: row.get(9)?,
    })
}

pub fn read(conn: &Connection, filter: &AuditFilter, offset: usize, limit: usize) -> rusqlite::Result<AuditPage> {
    let (low, high) = filter.outcome.map(cityhub_storage::AuditOutcome::statuses).unwrap_or((0, u16::MAX));
    let args =
        params![filter.tenant, filter.subject, filter.operation, low, high, filter.since_micros, filter.until_micros];
    let total: i64 =
        conn.prepare_cached(&format!("SELECT count(*) FROM audit_log WHERE {WHERE}"))?.query_row(args, |r| r.get(0))?;
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT at, tenant, subject, via, client, method, route, target, status, error FROM audit_log
         WHERE {WHERE} ORDER BY at DESC, seq DESC LIMIT ?8 OFFSET ?9"
    ))?;
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    let offset = i64::try_from(offset).unwrap_or(i64::MAX);
    let rows = stmt.query_map(
        params![
            filter.tenant,
            filter.subject,
            filter.operation,
            low,
            high,
            filter.since_micros,
            filter.until_micros,
            limit,
            offset
        ],
        entry,
    )?;
    let entries = rows.collect::<rusqlite::Result<Vec<_>>>()?;
    Ok(AuditPage { entries, total: usize::try_from(total).unwrap_or(0) })
}

pub fn purge(conn: &Connection, before_micros: i64) -> rusqlite::Result<u64> {
    let gone = conn.prepare_cached("DELETE FROM audit_log WHERE at < ?1")?.execute(params![before_micros])?;
    Ok(gone as u64)
}
