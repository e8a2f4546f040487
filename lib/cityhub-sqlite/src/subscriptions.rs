//! Subscriptions and the persistence of the notification machinery: the change journal (written
//! by the writer in the transaction of each entity change, only in tenants with subscriptions),
//! the notifier's cursor, and the outbox of pending notifications, one ordered queue per endpoint.

use std::collections::{HashMap, HashSet};

use cityhub_storage::{DeliveryOutcome, DeliveryStatus, JournalEntry, NotifierCommit, OutboxItem, StoredSubscription};
use ngsild_core::Entity;
use rusqlite::{params, Connection, OptionalExtension, Row};
use serde_json::Value;

pub const SCHEMA: &str = "
    CREATE TABLE IF NOT EXISTS subscriptions (
        tenant TEXT NOT NULL,
        id TEXT NOT NULL,
        doc TEXT NOT NULL,
        times_sent INTEGER NOT NULL DEFAULT 0,
        times_failed INTEGER NOT NULL DEFAULT 0,
        dropped INTEGER NOT NULL DEFAULT 0,
        last_notification TEXT,
        last_success TEXT,
        last_failure TEXT,
        PRIMARY KEY (tenant, id)
    );
    -- Entity changes not yet turned into notifications. AUTOINCREMENT: a sequence number is never
    -- reused, even after the rows below the cursor are deleted.
    CREATE TABLE IF NOT EXISTS journal (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        tenant TEXT NOT NULL,
        before TEXT,
        after TEXT,
        at TEXT NOT NULL
    );
    CREATE TABLE IF NOT EXISTS notifier_state (
        name TEXT PRIMARY KEY,
        value INTEGER NOT NULL
    );
    CREATE TABLE IF NOT EXISTS outbox (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        endpoint TEXT NOT NULL,
        tenant TEXT NOT NULL,
        subscription_id TEXT NOT NULL,
        message TEXT NOT NULL,
        created_at TEXT NOT NULL,
        attempts INTEGER NOT NULL DEFAULT 0
    );
    CREATE INDEX IF NOT EXISTS outbox_by_endpoint ON outbox (endpoint, id);
    CREATE INDEX IF NOT EXISTS outbox_by_subscription ON outbox (tenant, subscription_id);
";

fn json_err(e: serde_json::Error) -> rusqlite::Error {
    rusqlite::Error::ToSqlConversionFailure(Box::new(e))
}

/// The tenants whose entity changes are journaled: those with at least one subscription.
pub fn journaled_tenants(conn: &Connection) -> rusqlite::Result<HashSet<String>> {
    let mut stmt = conn.prepare("SELECT DISTINCT tenant FROM subscriptions")?;
    let rows = stmt.query_map([], |row| row.get(0))?;
    rows.collect()
}

/// Appends one change to the journal.
pub fn journal(
    conn: &Connection,
    tenant: &str,
    before: Option<&Entity>,
    after: Option<&Entity>,
    at: &str,
) -> rusqlite::Result<()> {
    let encode = |e: Option<&Entity>| e.map(serde_json::to_string).transpose().map_err(json_err);
    conn.prepare_cached("INSERT INTO journal (tenant, before, after, at) VALUES (?1, ?2, ?3, ?4)")?
        .execute(params![tenant, encode(before)?, encode(after)?, at])?;
    Ok(())
}

fn status_from_row(row: &Row<'_>, first: usize) -> rusqlite::Result<DeliveryStatus> {
    Ok(DeliveryStatus {
        times_sent: row.get::<_, i64>(first)? as u64,
        times_failed: row.get::<_, i64>(first + 1)? as u64,
        dropped: row.get::<_, i64>(first + 2)? as u64,
        last_notification: row.get(first + 3)?,
        last_success: row.get(first + 4)?,
        last_failure: row.get(first + 5)?,
    })
}

const SUBSCRIPTION_COLUMNS: &str =
    "tenant, id, doc, times_sent, times_failed, dropped, last_notification, last_success, last_failure";

fn subscription_from_row(row: &Row<'_>) -> rusqlite::Result<StoredSubscription> {
    let doc: String = row.get(2)?;
    Ok(StoredSubscription {
        tenant: row.get(0)?,
        id: row.get(1)?,
        doc: serde_json::from_str(&doc).map_err(json_err)?,
        status: status_from_row(row, 3)?,
    })
}

pub fn get(conn: &Connection, tenant: &str, id: &str) -> rusqlite::Result<Option<StoredSubscription>> {
    conn.prepare_cached(&format!("SELECT {SUBSCRIPTION_COLUMNS} FROM subscriptions WHERE tenant = ?1 AND id = ?2"))?
        .query_row(params![tenant, id], subscription_from_row)
        .optional()
}

pub fn list(conn: &Connection, tenant: Option<&str>) -> rusqlite::Result<Vec<StoredSubscription>> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {SUBSCRIPTION_COLUMNS} FROM subscriptions WHERE ?1 IS NULL OR tenant = ?1 ORDER BY tenant, id"
    ))?;
    let rows = stmt.query_map(params![tenant], subscription_from_row)?;
    rows.collect()
}

/// Inserts a subscription; false when the id is taken.
pub fn create(conn: &Connection, tenant: &str, id: &str, doc: &Value) -> rusqlite::Result<bool> {
    let doc = serde_json::to_string(doc).map_err(json_err)?;
    Ok(conn.execute(
        "INSERT OR IGNORE INTO subscriptions (tenant, id, doc) VALUES (?1, ?2, ?3)",
        params![tenant, id, doc],
    )? > 0)
}

pub fn replace(conn: &Connection, tenant: &str, id: &str, doc: &Value) -> rusqlite::Result<bool> {
    let doc = serde_json::to_string(doc).map_err(json_err)?;
    Ok(conn.execute("UPDATE subscriptions SET doc = ?3 WHERE tenant = ?1 AND id = ?2", params![tenant, id, doc])? > 0)
}

pub fn delete(conn: &Connection, tenant: &str, id: &str) -> rusqlite::Result<bool> {
    conn.execute("DELETE FROM outbox WHERE tenant = ?1 AND subscription_id = ?2", params![tenant, id])?;
    Ok(conn.execute("DELETE FROM subscriptions WHERE tenant = ?1 AND id = ?2", params![tenant, id])? > 0)
}

pub fn cursor(conn: &Connection) -> rusqlite::Result<u64> {
    let value: Option<i64> = conn
        .prepare_cached("SELECT value FROM notifier_state WHERE name = 'cursor'")?
        .query_row([], |row| row.get(0))
        .optional()?;
    Ok(value.unwrap_or(0) as u64)
}

pub fn journal_after(conn: &Connection, cursor: u64, limit: usize) -> rusqlite::Result<Vec<JournalEntry>> {
    let mut stmt =
        conn.prepare_cached("SELECT seq, tenant, before, after, at FROM journal WHERE seq > ?1 ORDER BY seq LIMIT ?2")?;
    let rows = stmt.query_map(params![cursor as i64, limit as i64], |row| {
        let decode = |text: Option<String>| -> rusqlite::Result<Option<Entity>> {
            text.map(|t| serde_json::from_str(&t).map_err(json_err)).transpose()
        };
        Ok(JournalEntry {
            seq: row.get::<_, i64>(0)? as u64,
            tenant: row.get(1)?,
            before: decode(row.get(2)?)?,
            after: decode(row.get(3)?)?,
            at: row.get(4)?,
        })
    })?;
    rows.collect()
}

/// The notifier's commit: outbox rows (those beyond an endpoint's cap are dropped and counted in
/// their subscription's status), then the cursor, then the consumed journal rows go.
pub fn commit_notifications(conn: &Connection, commit: NotifierCommit) -> rusqlite::Result<Vec<OutboxItem>> {
    let mut counts: HashMap<String, usize> = HashMap::new();
    let mut stored = Vec::with_capacity(commit.notifications.len());
    for mut item in commit.notifications {
        let count = match counts.get_mut(&item.endpoint) {
            Some(count) => count,
            None => {
                let current: i64 = conn
                    .prepare_cached("SELECT COUNT(*) FROM outbox WHERE endpoint = ?1")?
                    .query_row([&item.endpoint], |row| row.get(0))?;
                counts.entry(item.endpoint.clone()).or_insert(current as usize)
            }
        };
        if *count >= commit.outbox_cap {
            conn.prepare_cached("UPDATE subscriptions SET dropped = dropped + 1 WHERE tenant = ?1 AND id = ?2")?
                .execute(params![item.tenant, item.subscription_id])?;
            continue;
        }
        *count += 1;
        let message = serde_json::to_string(&item.message).map_err(json_err)?;
        conn.prepare_cached(
            "INSERT INTO outbox (endpoint, tenant, subscription_id, message, created_at, attempts)
             VALUES (?1, ?2, ?3, ?4, ?5, 0)",
        )?
        .execute(params![item.endpoint, item.tenant, item.subscription_id, message, item.created_at])?;
        item.id = conn.last_insert_rowid() as u64;
        stored.push(item);
    }
    if let Some(cursor) = commit.cursor {
        conn.prepare_cached(
            "INSERT INTO notifier_state (name, value) VALUES ('cursor', ?1)
             ON CONFLICT (name) DO UPDATE SET value = excluded.value",
        )?
        .execute([cursor as i64])?;
        conn.prepare_cached("DELETE FROM journal WHERE seq <= ?1")?.execute([cursor as i64])?;
    }
    Ok(stored)
}

pub fn outbox_endpoints(conn: &Connection) -> rusqlite::Result<Vec<String>> {
    let mut stmt = conn.prepare_cached("SELECT DISTINCT endpoint FROM outbox")?;
    let rows = stmt.query_map([], |row| row.get(0))?;
    rows.collect()
}

pub fn outbox(conn: &Connection, endpoint: &str, limit: usize) -> rusqlite::Result<Vec<OutboxItem>> {
    let mut stmt = conn.prepare_cached(
        "SELECT id, endpoint, tenant, subscription_id, message, created_at, attempts FROM outbox
         WHERE endpoint = ?1 ORDER BY id LIMIT ?2",
    )?;
    let rows = stmt.query_map(params![endpoint, limit as i64], |row| {
        let message: String = row.get(4)?;
        Ok(OutboxItem {
            id: row.get::<_, i64>(0)? as u64,
            endpoint: row.get(1)?,
            tenant: row.get(2)?,
            subscription_id: row.get(3)?,
            message: serde_json::from_str(&message).map_err(json_err)?,
            created_at: row.get(5)?,
            attempts: row.get(6)?,
        })
    })?;
    rows.collect()
}

pub fn record_delivery(
    conn: &Connection,
    item: &OutboxItem,
    outcome: DeliveryOutcome,
    at: &str,
) -> rusqlite::Result<()> {
    let key = params![item.tenant, item.subscription_id, at];
    match outcome {
        DeliveryOutcome::Attempted => {
            conn.prepare_cached(
                "UPDATE subscriptions SET times_sent = times_sent + 1, last_notification = ?3
                 WHERE tenant = ?1 AND id = ?2",
            )?
            .execute(key)?;
        }
        DeliveryOutcome::Sent => {
            conn.prepare_cached("DELETE FROM outbox WHERE id = ?1")?.execute([item.id as i64])?;
            conn.prepare_cached("UPDATE subscriptions SET last_success = ?3 WHERE tenant = ?1 AND id = ?2")?
                .execute(key)?;
        }
        DeliveryOutcome::Failed | DeliveryOutcome::GaveUp => {
            if outcome == DeliveryOutcome::GaveUp {
                conn.prepare_cached("DELETE FROM outbox WHERE id = ?1")?.execute([item.id as i64])?;
                conn.prepare_cached("UPDATE subscriptions SET dropped = dropped + 1 WHERE tenant = ?1 AND id = ?2")?
                    .execute(params![item.tenant, item.subscription_id])?;
            } else {
                conn.prepare_cached("UPDATE outbox SET attempts = attempts + 1 WHERE id = ?1")?
                    .execute([item.id as i64])?;
            }
            conn.prepare_cached(
                "UPDATE subscriptions SET times_failed = times_failed + 1, last_failure = ?3
                 WHERE tenant = ?1 AND id = ?2",
            )?
            .execute(key)?;
        }
    }
    Ok(())
}
