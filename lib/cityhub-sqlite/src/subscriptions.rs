//! Subscriptions and the persistence of the notification machinery: the change journal (written
//! by the writer in the transaction of each entity change, only in tenants with subscriptions),
//! the notifier's cursor, and the outbox of pending notifications, one ordered queue per endpoint.

use std::collections::{HashMap, HashSet};

use cityhub_storage::{
    DeliveryOutcome, DeliveryStatus, JournalEntry, NotifierCommit, OutboxItem, StoreError, StoredSubscription,
    SubscriptionKind,
};
use ngsild_core::Entity;
use rusqlite::{params, Connection, OptionalExtension, Row};
use serde_json::Value;

use crate::codec::{from_json, has_column, to_json};

/// Subscriptions of both kinds (`kind`: entity or csource, see `SubscriptionKind`) share the
/// status columns and the outbox, so that one delivery path serves both.
const SCHEMA: &str = "
    CREATE TABLE IF NOT EXISTS subscriptions (
        kind TEXT NOT NULL,
        tenant TEXT NOT NULL,
        id TEXT NOT NULL,
        doc TEXT NOT NULL,
        times_sent INTEGER NOT NULL DEFAULT 0,
        times_failed INTEGER NOT NULL DEFAULT 0,
        dropped INTEGER NOT NULL DEFAULT 0,
        last_notification TEXT,
        last_success TEXT,
        last_failure TEXT,
        PRIMARY KEY (tenant, kind, id)
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
        kind TEXT NOT NULL,
        tenant TEXT NOT NULL,
        subscription_id TEXT NOT NULL,
        message TEXT NOT NULL,
        created_at TEXT NOT NULL,
        attempts INTEGER NOT NULL DEFAULT 0
    );
    CREATE INDEX IF NOT EXISTS outbox_by_endpoint ON outbox (endpoint, id);
    -- One holder per lease name (the notifier's: `notifier`); expires_at in microseconds since
    -- the Unix epoch, after which another holder may take it.
    CREATE TABLE IF NOT EXISTS leases (
        name TEXT PRIMARY KEY,
        holder TEXT NOT NULL,
        expires_at INTEGER NOT NULL
    );
    CREATE INDEX IF NOT EXISTS outbox_by_subscription ON outbox (tenant, kind, subscription_id);
";

/// Creates the tables, bringing those of schema versions before 8 forward: version 8 gave
/// subscriptions and outbox rows a kind, and moved csource subscriptions out of `records`
/// (where they had no delivery status) into `subscriptions`.
pub fn migrate(tx: &Connection) -> rusqlite::Result<()> {
    let old_subscriptions = has_column(tx, "subscriptions", "id")? && !has_column(tx, "subscriptions", "kind")?;
    if old_subscriptions {
        tx.execute_batch(
            "ALTER TABLE subscriptions RENAME TO subscriptions_v7; DROP INDEX IF EXISTS outbox_by_subscription;",
        )?;
    }
    if has_column(tx, "outbox", "id")? && !has_column(tx, "outbox", "kind")? {
        tx.execute_batch("ALTER TABLE outbox ADD COLUMN kind TEXT NOT NULL DEFAULT 'entity'")?;
    }
    tx.execute_batch(SCHEMA)?;
    if old_subscriptions {
        tx.execute_batch(
            "INSERT INTO subscriptions (kind, tenant, id, doc, times_sent, times_failed, dropped,
                 last_notification, last_success, last_failure)
             SELECT 'entity', tenant, id, doc, times_sent, times_failed, dropped,
                 last_notification, last_success, last_failure FROM subscriptions_v7;
             DROP TABLE subscriptions_v7;",
        )?;
    }
    tx.execute(
        "INSERT OR IGNORE INTO subscriptions (kind, tenant, id, doc)
         SELECT ?1, tenant, id, doc FROM records WHERE kind = 'csourceSubscription'",
        [SubscriptionKind::CSource.name()],
    )?;
    tx.execute("DELETE FROM records WHERE kind = 'csourceSubscription'", [])?;
    Ok(())
}

/// The tenants whose entity changes are journaled: those with at least one entity subscription.
pub fn journaled_tenants(conn: &Connection) -> rusqlite::Result<HashSet<String>> {
    let mut stmt = conn.prepare("SELECT DISTINCT tenant FROM subscriptions WHERE kind = ?1")?;
    let rows = stmt.query_map([SubscriptionKind::Entity.name()], |row| row.get(0))?;
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
    let encode = |e: Option<&Entity>| e.map(to_json).transpose();
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
    "kind, tenant, id, doc, times_sent, times_failed, dropped, last_notification, last_success, last_failure";

fn kind_from_row(row: &Row<'_>, index: usize) -> rusqlite::Result<SubscriptionKind> {
    let name: String = row.get(index)?;
    SubscriptionKind::parse(&name).ok_or_else(|| {
        rusqlite::Error::FromSqlConversionFailure(index, rusqlite::types::Type::Text, format!("kind {name:?}").into())
    })
}

fn subscription_from_row(row: &Row<'_>) -> rusqlite::Result<StoredSubscription> {
    let doc: String = row.get(3)?;
    Ok(StoredSubscription {
        kind: kind_from_row(row, 0)?,
        tenant: row.get(1)?,
        id: row.get(2)?,
        doc: from_json(&doc)?,
        status: status_from_row(row, 4)?,
    })
}

pub fn get(
    conn: &Connection,
    kind: SubscriptionKind,
    tenant: &str,
    id: &str,
) -> rusqlite::Result<Option<StoredSubscription>> {
    conn.prepare_cached(&format!(
        "SELECT {SUBSCRIPTION_COLUMNS} FROM subscriptions WHERE tenant = ?1 AND kind = ?2 AND id = ?3"
    ))?
    .query_row(params![tenant, kind.name(), id], subscription_from_row)
    .optional()
}

pub fn list(
    conn: &Connection,
    kind: Option<SubscriptionKind>,
    tenant: Option<&str>,
) -> rusqlite::Result<Vec<StoredSubscription>> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {SUBSCRIPTION_COLUMNS} FROM subscriptions
         WHERE (?1 IS NULL OR kind = ?1) AND (?2 IS NULL OR tenant = ?2) ORDER BY tenant, id"
    ))?;
    let rows = stmt.query_map(params![kind.map(SubscriptionKind::name), tenant], subscription_from_row)?;
    rows.collect()
}

/// Inserts a subscription; false when the id is taken.
pub fn create(
    conn: &Connection,
    kind: SubscriptionKind,
    tenant: &str,
    id: &str,
    doc: &Value,
) -> rusqlite::Result<bool> {
    let doc = to_json(doc)?;
    Ok(conn.execute(
        "INSERT OR IGNORE INTO subscriptions (kind, tenant, id, doc) VALUES (?1, ?2, ?3, ?4)",
        params![kind.name(), tenant, id, doc],
    )? > 0)
}

pub fn replace(
    conn: &Connection,
    kind: SubscriptionKind,
    tenant: &str,
    id: &str,
    doc: &Value,
) -> rusqlite::Result<bool> {
    let doc = to_json(doc)?;
    Ok(conn.execute(
        "UPDATE subscriptions SET doc = ?4 WHERE tenant = ?1 AND kind = ?2 AND id = ?3",
        params![tenant, kind.name(), id, doc],
    )? > 0)
}

pub fn delete(conn: &Connection, kind: SubscriptionKind, tenant: &str, id: &str) -> rusqlite::Result<bool> {
    let key = params![tenant, kind.name(), id];
    conn.execute("DELETE FROM outbox WHERE tenant = ?1 AND kind = ?2 AND subscription_id = ?3", key)?;
    Ok(conn.execute("DELETE FROM subscriptions WHERE tenant = ?1 AND kind = ?2 AND id = ?3", key)? > 0)
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
        let decode =
            |text: Option<String>| -> rusqlite::Result<Option<Entity>> { text.map(|t| from_json(&t)).transpose() };
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
/// their subscription's status), then the cursor, then the consumed journal rows go. When the
/// commit moves the cursor and the stored one is not its `expected_cursor`, nothing is written
/// (the inner error).
pub fn commit_notifications(
    conn: &Connection,
    commit: NotifierCommit,
) -> rusqlite::Result<Result<Vec<OutboxItem>, StoreError>> {
    if commit.cursor.is_some() {
        let current = cursor(conn)?;
        if current != commit.expected_cursor {
            return Ok(Err(StoreError::Conflict(format!(
                "the notifier cursor is at {current}, not at {} as expected: another notifier consumed the journal",
                commit.expected_cursor
            ))));
        }
    }
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
            conn.prepare_cached(
                "UPDATE subscriptions SET dropped = dropped + 1 WHERE tenant = ?1 AND kind = ?2 AND id = ?3",
            )?
            .execute(params![item.tenant, item.kind.name(), item.subscription_id])?;
            continue;
        }
        *count += 1;
        let message = to_json(&item.message)?;
        conn.prepare_cached(
            "INSERT INTO outbox (endpoint, kind, tenant, subscription_id, message, created_at, attempts)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, 0)",
        )?
        .execute(params![
            item.endpoint,
            item.kind.name(),
            item.tenant,
            item.subscription_id,
            message,
            item.created_at
        ])?;
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
    Ok(Ok(stored))
}

fn micros_now() -> i64 {
    let since = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    i64::try_from(since.as_micros()).unwrap_or(i64::MAX)
}

/// Takes or renews the lease `name` for `holder` until `ttl` from now, unless another holder's
/// lease has not expired yet; answers whether `holder` holds it.
pub fn try_lease(conn: &Connection, name: &str, holder: &str, ttl: std::time::Duration) -> rusqlite::Result<bool> {
    let now = micros_now();
    let until = now.saturating_add(i64::try_from(ttl.as_micros()).unwrap_or(i64::MAX));
    let taken = conn
        .prepare_cached(
            "INSERT INTO leases (name, holder, expires_at) VALUES (?1, ?2, ?3)
             ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, expires_at = excluded.expires_at
             WHERE leases.holder = excluded.holder OR leases.expires_at <= ?4",
        )?
        .execute(params![name, holder, until, now])?;
    Ok(taken > 0)
}

/// Gives the lease up when `holder` holds it.
pub fn release_lease(conn: &Connection, name: &str, holder: &str) -> rusqlite::Result<()> {
    conn.prepare_cached("DELETE FROM leases WHERE name = ?1 AND holder = ?2")?.execute(params![name, holder])?;
    Ok(())
}

pub fn outbox_endpoints(conn: &Connection) -> rusqlite::Result<Vec<String>> {
    let mut stmt = conn.prepare_cached("SELECT DISTINCT endpoint FROM outbox")?;
    let rows = stmt.query_map([], |row| row.get(0))?;
    rows.collect()
}

pub fn outbox(conn: &Connection, endpoint: &str, limit: usize) -> rusqlite::Result<Vec<OutboxItem>> {
    let mut stmt = conn.prepare_cached(
        "SELECT id, endpoint, kind, tenant, subscription_id, message, created_at, attempts FROM outbox
         WHERE endpoint = ?1 ORDER BY id LIMIT ?2",
    )?;
    let rows = stmt.query_map(params![endpoint, limit as i64], |row| {
        let message: String = row.get(5)?;
        Ok(OutboxItem {
            id: row.get::<_, i64>(0)? as u64,
            endpoint: row.get(1)?,
            kind: kind_from_row(row, 2)?,
            tenant: row.get(3)?,
            subscription_id: row.get(4)?,
            message: from_json(&message)?,
            created_at: row.get(6)?,
            attempts: row.get(7)?,
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
    let key = params![item.tenant, item.kind.name(), item.subscription_id, at];
    let of_subscription = "WHERE tenant = ?1 AND kind = ?2 AND id = ?3";
    let remove_row = || conn.prepare_cached("DELETE FROM outbox WHERE id = ?1")?.execute([item.id as i64]);
    match outcome {
        DeliveryOutcome::Attempted => {
            conn.prepare_cached(&format!(
                "UPDATE subscriptions SET times_sent = times_sent + 1, last_notification = ?4 {of_subscription}"
            ))?
            .execute(key)?;
        }
        DeliveryOutcome::Sent => {
            remove_row()?;
            conn.prepare_cached(&format!("UPDATE subscriptions SET last_success = ?4 {of_subscription}"))?
                .execute(key)?;
        }
        DeliveryOutcome::Failed | DeliveryOutcome::GaveUp => {
            if outcome == DeliveryOutcome::GaveUp {
                remove_row()?;
                conn.prepare_cached(&format!("UPDATE subscriptions SET dropped = dropped + 1 {of_subscription}"))?
                    .execute(params![item.tenant, item.kind.name(), item.subscription_id])?;
            } else {
                conn.prepare_cached("UPDATE outbox SET attempts = attempts + 1 WHERE id = ?1")?
                    .execute([item.id as i64])?;
            }
            conn.prepare_cached(&format!(
                "UPDATE subscriptions SET times_failed = times_failed + 1, last_failure = ?4 {of_subscription}"
            ))?
            .execute(key)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The tables as schema version 7 left them.
    const V7: &str = "
        CREATE TABLE records (tenant TEXT NOT NULL, kind TEXT NOT NULL, id TEXT NOT NULL, doc TEXT NOT NULL,
            PRIMARY KEY (tenant, kind, id));
        CREATE TABLE subscriptions (tenant TEXT NOT NULL, id TEXT NOT NULL, doc TEXT NOT NULL,
            times_sent INTEGER NOT NULL DEFAULT 0, times_failed INTEGER NOT NULL DEFAULT 0,
            dropped INTEGER NOT NULL DEFAULT 0, last_notification TEXT, last_success TEXT, last_failure TEXT,
            PRIMARY KEY (tenant, id));
        CREATE TABLE outbox (id INTEGER PRIMARY KEY AUTOINCREMENT, endpoint TEXT NOT NULL, tenant TEXT NOT NULL,
            subscription_id TEXT NOT NULL, message TEXT NOT NULL, created_at TEXT NOT NULL,
            attempts INTEGER NOT NULL DEFAULT 0);
        CREATE INDEX outbox_by_subscription ON outbox (tenant, subscription_id);
        INSERT INTO subscriptions (tenant, id, doc, times_sent) VALUES ('', 'urn:s:1', '{}', 3);
        INSERT INTO outbox (endpoint, tenant, subscription_id, message, created_at)
            VALUES ('http://e', '', 'urn:s:1', '{}', 't');
        INSERT INTO records VALUES ('t1', 'csourceSubscription', 'urn:s:1', '{\"id\":\"urn:s:1\"}');
        INSERT INTO records VALUES ('t1', 'csourceRegistration', 'urn:r:1', '{}');
    ";

    #[test]
    fn version_7_tables_gain_kinds_and_csource_subscriptions_leave_the_records() {
        let conn = Connection::open_in_memory().unwrap();
        conn.execute_batch(V7).unwrap();
        migrate(&conn).unwrap();
        let entity = get(&conn, SubscriptionKind::Entity, "", "urn:s:1").unwrap().unwrap();
        assert_eq!(entity.status.times_sent, 3);
        let csource = get(&conn, SubscriptionKind::CSource, "t1", "urn:s:1").unwrap().unwrap();
        assert_eq!(csource.doc, serde_json::json!({"id": "urn:s:1"}));
        let outbox = outbox(&conn, "http://e", 10).unwrap();
        assert_eq!((outbox.len(), outbox[0].kind), (1, SubscriptionKind::Entity));
        let records: Vec<String> = conn
            .prepare("SELECT kind FROM records")
            .unwrap()
            .query_map([], |row| row.get(0))
            .unwrap()
            .collect::<rusqlite::Result<_>>()
            .unwrap();
        assert_eq!(records, vec!["csourceRegistration"]);
        assert_eq!(journaled_tenants(&conn).unwrap(), HashSet::from([String::new()]));
        // Migrating again changes nothing.
        migrate(&conn).unwrap();
        assert_eq!(list(&conn, None, None).unwrap().len(), 2);
    }
}
