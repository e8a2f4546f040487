//! The change journal, the notifier's cursor, the outbox, leases, and the events told to every hub
//! on the database.
//!
//! **Journal.** Entity transactions call [`journal`] as their last statement before COMMIT. In a
//! tenant with an entity subscription it takes the journal advisory lock ([`JOURNAL_LOCK`], held
//! to the end of the transaction), reserves consecutive numbers of `journal_seq` and inserts the
//! entries. Since every writer holds the lock from its numbers to its commit, sequence order is
//! commit order, and the notifier reading `seq > cursor` never skips an entry committed late with
//! a lower number. Lock order is always entity locks, then the journal lock, so no deadlock.
//!
//! **Cursor.** `notifier_state('cursor')` moves only by compare-and-set in
//! [`commit_notifications`]: a notifier that lost its lease and another that took it cannot both
//! consume the same entries ([`StoreError::Conflict`]).
//!
//! **Leases.** One atomic upsert on the database's clock (`now()`): taken when free, expired or
//! already ours; renewed by the holder. A hub killed with -9 stops renewing and its lease passes
//! after `ttl`.
//!
//! **Events.** Every transaction that changes subscriptions, records, contexts, tenants or the
//! journal does `pg_notify('cityhub_events', payload)` in the transaction itself, so the event is
//! delivered (to every hub, this one included) exactly when the commit happened. [`Feed`] keeps
//! one dedicated connection doing `LISTEN cityhub_events` and forwards each payload into a tokio
//! broadcast. When that connection is lost it reconnects and tells every receiver
//! [`StoreEvent::Missed`] (the receivers' "everything changed"), since notifications sent
//! meanwhile are gone. The hub that
//! committed also tells its own receivers at once after the commit ([`Feed::tell`]), so its own
//! caches never wait for the round trip.

use std::time::Duration;

use cityhub_storage::{
    Change, DeliveryOutcome, JournalEntry, NotifierCommit, OutboxItem, RecordKind, StoreError, StoreEvent,
    SubscriptionKind,
};
use ngsild_core::Entity;
use serde_json::{json, Value};
use tokio::sync::broadcast;
use tokio::task::JoinHandle;
use tokio_postgres::types::Json;
use tokio_postgres::{AsyncMessage, NoTls, Transaction};

use crate::{OrBackend, PostgresStore};

/// The advisory lock every journal writer holds from reserving its sequence numbers to its commit
/// ("cityjnl"; a small key, apart from the entity keys, which set the top bit).
pub(crate) const JOURNAL_LOCK: i64 = 0x0063_6974_796a_6e6c;

/// The LISTEN/NOTIFY channel of store events.
pub(crate) const CHANNEL: &str = "cityhub_events";

/// Events a receiver may fall behind by before it lags (and must assume everything changed).
const EVENT_CAPACITY: usize = 1024;

/// A NOTIFY payload must stay under 8,000 bytes; a longer event is told as "lagged".
const MAX_PAYLOAD: usize = 7000;

/// How often the listening connection proves it is alive when nothing arrives.
const LISTEN_PROBE: Duration = Duration::from_secs(5);

/// What this process keeps of the notification machinery: the broadcast of store events and the
/// task that feeds it from `LISTEN`.
pub(crate) struct Feed {
    events: broadcast::Sender<StoreEvent>,
    listener: JoinHandle<()>,
}

impl Drop for Feed {
    fn drop(&mut self) {
        self.listener.abort();
    }
}

impl Feed {
    /// Opens the listening connection (with the pool's settings) before answering, so that no
    /// event committed after `connect` returns is missed.
    pub(crate) async fn start(config: &tokio_postgres::Config) -> Result<Feed, StoreError> {
        let (events, _) = broadcast::channel(EVENT_CAPACITY);
        let first = listen(config).await?;
        let listener = tokio::spawn(run_listener(config.clone(), events.clone(), first));
        Ok(Feed { events, listener })
    }

    pub(crate) fn subscribe(&self) -> broadcast::Receiver<StoreEvent> {
        self.events.subscribe()
    }

    /// Tells this process's receivers at once (after a commit of this process; every hub, this
    /// one too, hears it again through NOTIFY).
    pub(crate) fn tell(&self, event: StoreEvent) {
        // No receiver yet is no error.
        let _ = self.events.send(event);
    }
}

/// Tells every receiver that events may have been missed ([`StoreEvent::Missed`]): everything
/// may have changed.
fn everything_changed(events: &broadcast::Sender<StoreEvent>) {
    let _ = events.send(StoreEvent::Missed);
}

type Listening = (tokio_postgres::Client, tokio::sync::mpsc::UnboundedReceiver<Option<String>>);

/// A new connection that has run `LISTEN`; its notifications' payloads arrive on the channel
/// (`None`: the connection ended).
async fn listen(config: &tokio_postgres::Config) -> Result<Listening, StoreError> {
    let (client, mut connection) = config.connect(NoTls).await.or_backend()?;
    let (sender, receiver) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        loop {
            match std::future::poll_fn(|cx| connection.poll_message(cx)).await {
                Some(Ok(AsyncMessage::Notification(n))) => {
                    if sender.send(Some(n.payload().to_owned())).is_err() {
                        return;
                    }
                }
                Some(Ok(_)) => {}
                Some(Err(e)) => {
                    tracing::warn!(error = %e, "the connection listening for store events failed");
                    break;
                }
                None => break,
            }
        }
        let _ = sender.send(None);
    });
    client.batch_execute(&format!("LISTEN {CHANNEL}")).await.or_backend()?;
    Ok((client, receiver))
}

async fn run_listener(config: tokio_postgres::Config, events: broadcast::Sender<StoreEvent>, first: Listening) {
    let mut current = Some(first);
    loop {
        let (client, mut payloads) = match current.take() {
            Some(listening) => listening,
            None => match listen(&config).await {
                Ok(listening) => {
                    // Whatever was notified while we were away is lost.
                    everything_changed(&events);
                    tracing::info!("listening for store events again");
                    listening
                }
                Err(e) => {
                    tracing::warn!(error = %e, "cannot listen for store events; retrying");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue;
                }
            },
        };
        loop {
            match tokio::time::timeout(LISTEN_PROBE, payloads.recv()).await {
                Ok(Some(Some(payload))) => match decode_event(&payload) {
                    Some(event) => {
                        let _ = events.send(event);
                    }
                    None => everything_changed(&events),
                },
                Ok(Some(None) | None) => break,
                Err(_) => {
                    if let Err(e) = client.simple_query("SELECT 1").await {
                        tracing::warn!(error = %e, "the connection listening for store events is gone");
                        break;
                    }
                }
            }
        }
        everything_changed(&events);
    }
}

/// The NOTIFY payload of an event (see SEAM.md "pg/ops agreements").
pub(crate) fn encode_event(event: &StoreEvent) -> String {
    let value = match event {
        StoreEvent::Journal => json!({"e": "journal"}),
        StoreEvent::Subscription { kind, tenant, id } => {
            json!({"e": "subscription", "kind": kind.name(), "tenant": tenant, "id": id})
        }
        StoreEvent::Records { tenant, kind } => json!({"e": "records", "tenant": tenant, "kind": kind.name()}),
        StoreEvent::Context { id } => json!({"e": "context", "id": id}),
        StoreEvent::Tenant { tenant } => json!({"e": "tenant", "tenant": tenant}),
        // Read back as "everything changed" by every hub.
        StoreEvent::Missed => json!({"e": "lagged"}),
    };
    let text = value.to_string();
    if text.len() > MAX_PAYLOAD {
        return json!({"e": "lagged"}).to_string();
    }
    text
}

/// The event of a payload; None for "lagged" or anything unreadable (then everything changed).
pub(crate) fn decode_event(payload: &str) -> Option<StoreEvent> {
    let value: Value = serde_json::from_str(payload).ok()?;
    let text = |name: &str| value.get(name).and_then(Value::as_str).map(str::to_owned);
    match value.get("e")?.as_str()? {
        "journal" => Some(StoreEvent::Journal),
        "subscription" => Some(StoreEvent::Subscription {
            kind: SubscriptionKind::parse(&text("kind")?)?,
            tenant: text("tenant")?,
            id: text("id")?,
        }),
        "records" => {
            let kind = text("kind")?;
            let kind = RecordKind::parse(&kind)?;
            Some(StoreEvent::Records { tenant: text("tenant")?, kind })
        }
        "context" => Some(StoreEvent::Context { id: text("id")? }),
        "tenant" => Some(StoreEvent::Tenant { tenant: text("tenant")? }),
        _ => None,
    }
}

/// Inside a transaction: tells every hub of `event` when (and only if) the transaction commits.
pub(crate) async fn notify(client: &Transaction<'_>, event: &StoreEvent) -> Result<(), StoreError> {
    client.execute("SELECT pg_notify($1, $2)", &[&CHANNEL, &encode_event(event)]).await.or_backend()?;
    Ok(())
}

/// Commits `tx` with `event` told to every hub: through NOTIFY on commit, and to this hub's own
/// receivers at once after it.
pub(crate) async fn commit_telling(
    store: &PostgresStore,
    tx: deadpool_postgres::Transaction<'_>,
    event: StoreEvent,
) -> Result<(), StoreError> {
    notify(&tx, &event).await?;
    tx.commit().await.or_backend()?;
    store.feed.tell(event);
    Ok(())
}

/// Called by `entities` and `temporal` as the last statement before COMMIT of entity changes (in
/// each, before or after is an entity; in the order they happened): writes their journal entries
/// when the tenant has an entity subscription. Answers whether it journaled.
pub(crate) async fn journal(
    tx: &crate::Tx<'_>,
    tenant: &str,
    changes: &[&Change],
    at: &str,
) -> Result<bool, StoreError> {
    if changes.is_empty() || !watched(tx, tenant).await? {
        return Ok(false);
    }
    journal_watched(tx, tenant, changes, at).await?;
    Ok(true)
}

/// Whether `tenant` has an entity subscription, so that its changes are journaled.
pub(crate) async fn watched(tx: &crate::Tx<'_>, tenant: &str) -> Result<bool, StoreError> {
    let statement =
        tx.prepare_cached("SELECT 1 FROM subscriptions WHERE tenant = $1 AND kind = $2 LIMIT 1").await.or_backend()?;
    Ok(tx.query_opt(&statement, &[&tenant, &SubscriptionKind::Entity.name()]).await.or_backend()?.is_some())
}

/// `journal` once `watched` said yes.
pub(crate) async fn journal_watched(
    tx: &Transaction<'_>,
    tenant: &str,
    changes: &[&Change],
    at: &str,
) -> Result<(), StoreError> {
    let befores: Vec<Option<Json<&Entity>>> = changes.iter().map(|c| c.before.as_ref().map(Json)).collect();
    let afters: Vec<Option<Json<&Entity>>> = changes.iter().map(|c| c.after.as_ref().map(Json)).collect();
    append_journal(tx, tenant, &befores, &afters, &vec![at; changes.len()]).await
}

/// Under the journal lock: numbers the entries consecutively (in the order given) and inserts
/// them (`ats`: the time of each). Tells every hub on commit.
pub(crate) async fn append_journal<T: tokio_postgres::types::ToSql + Sync>(
    tx: &Transaction<'_>,
    tenant: &str,
    befores: &[Option<T>],
    afters: &[Option<T>],
    ats: &[&str],
) -> Result<(), StoreError> {
    let count = befores.len() as i64;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&JOURNAL_LOCK]).await.or_backend()?;
    // Under the lock nobody else draws from the sequence, so `count` numbers are consecutive.
    let last: i64 = tx
        .query_one("SELECT setval('journal_seq', nextval('journal_seq') + $1 - 1)", &[&count])
        .await
        .or_backend()?
        .get(0);
    let seqs: Vec<i64> = (last - count + 1..=last).collect();
    tx.execute(
        "INSERT INTO journal (tenant, seq, before, after, at)
         SELECT $1, s, b, a, t FROM unnest($2::bigint[], $3::json[], $4::json[], $5::text[]) AS u(s, b, a, t)",
        &[&tenant, &seqs, &befores, &afters, &ats],
    )
    .await
    .or_backend()?;
    notify(tx, &StoreEvent::Journal).await
}

/// Called inside the transaction that created `tenant` (its first row in `tenants`).
pub(crate) async fn tenant_created(tx: &Transaction<'_>, tenant: &str) -> Result<(), StoreError> {
    notify(tx, &StoreEvent::Tenant { tenant: tenant.to_owned() }).await
}

/// Called inside the transaction that put or deleted the context `id`.
pub(crate) async fn context_changed(tx: &Transaction<'_>, id: &str) -> Result<(), StoreError> {
    notify(tx, &StoreEvent::Context { id: id.to_owned() }).await
}

/// Called after the commit of a transaction in which `journal` answered true: wakes this
/// process's notifier at once.
pub(crate) fn journaled(store: &PostgresStore) {
    store.feed.tell(StoreEvent::Journal);
}

pub(crate) fn events(store: &PostgresStore) -> broadcast::Receiver<StoreEvent> {
    store.feed.subscribe()
}

fn entity_of(value: Option<Json<Entity>>) -> Option<Entity> {
    value.map(|Json(e)| e)
}

pub(crate) async fn journal_after(
    store: &PostgresStore,
    cursor: u64,
    limit: usize,
) -> Result<Vec<JournalEntry>, StoreError> {
    let client = store.client().await?;
    let rows = client
        .query(
            "SELECT seq, tenant, before, after, at FROM journal WHERE seq > $1 ORDER BY seq LIMIT $2",
            &[&(cursor as i64), &(limit as i64)],
        )
        .await
        .or_backend()?;
    rows.iter()
        .map(|row| {
            Ok(JournalEntry {
                seq: row.try_get::<_, i64>(0).or_backend()? as u64,
                tenant: row.try_get(1).or_backend()?,
                before: entity_of(row.try_get(2).or_backend()?),
                after: entity_of(row.try_get(3).or_backend()?),
                at: row.try_get(4).or_backend()?,
            })
        })
        .collect()
}

pub(crate) async fn notifier_cursor(store: &PostgresStore) -> Result<u64, StoreError> {
    let client = store.client().await?;
    let row = client.query_opt("SELECT value FROM notifier_state WHERE name = 'cursor'", &[]).await.or_backend()?;
    Ok(row.map_or(0, |r| r.get::<_, i64>(0).max(0) as u64))
}

/// In one transaction: the cursor by compare-and-set (nothing written and Conflict when it moved),
/// the outbox rows (those past an endpoint's cap dropped and counted in their subscription's
/// status), the journal up to the cursor forgotten. Tells every hub when rows were stored, so
/// that the lease holder delivers rows another hub queued.
pub(crate) async fn commit_notifications(
    store: &PostgresStore,
    commit: NotifierCommit,
) -> Result<Vec<OutboxItem>, StoreError> {
    let mut client = store.client().await?;
    let tx = client.transaction().await.or_backend()?;
    if let Some(cursor) = commit.cursor {
        let moved = tx
            .execute(
                "UPDATE notifier_state SET value = $1 WHERE name = 'cursor' AND value = $2",
                &[&(cursor as i64), &(commit.expected_cursor as i64)],
            )
            .await
            .or_backend()?;
        if moved == 0 {
            let current =
                tx.query_opt("SELECT value FROM notifier_state WHERE name = 'cursor'", &[]).await.or_backend()?;
            let current = current.map_or(0, |r| r.get::<_, i64>(0));
            return Err(StoreError::Conflict(format!(
                "the notifier cursor is at {current}, not at {} as expected: another notifier consumed the journal",
                commit.expected_cursor
            )));
        }
    }
    let mut counts: std::collections::HashMap<String, usize> = std::collections::HashMap::new();
    let mut stored = Vec::with_capacity(commit.notifications.len());
    for mut item in commit.notifications {
        let count = match counts.get_mut(&item.endpoint) {
            Some(count) => count,
            None => {
                let current: i64 = tx
                    .query_one("SELECT count(*) FROM outbox WHERE endpoint = $1", &[&item.endpoint])
                    .await
                    .or_backend()?
                    .get(0);
                counts.entry(item.endpoint.clone()).or_insert(current as usize)
            }
        };
        if *count >= commit.outbox_cap {
            tx.execute(
                "UPDATE subscriptions SET dropped = dropped + 1 WHERE tenant = $1 AND kind = $2 AND id = $3",
                &[&item.tenant, &item.kind.name(), &item.subscription_id],
            )
            .await
            .or_backend()?;
            continue;
        }
        *count += 1;
        let id: i64 = tx
            .query_one(
                "INSERT INTO outbox (tenant, endpoint, kind, subscription_id, message, created_at, attempts)
                 VALUES ($1, $2, $3, $4, $5, $6, 0) RETURNING id",
                &[
                    &item.tenant,
                    &item.endpoint,
                    &item.kind.name(),
                    &item.subscription_id,
                    &Json(&item.message),
                    &item.created_at,
                ],
            )
            .await
            .or_backend()?
            .get(0);
        item.id = id as u64;
        stored.push(item);
    }
    if let Some(cursor) = commit.cursor {
        tx.execute("DELETE FROM journal WHERE seq <= $1", &[&(cursor as i64)]).await.or_backend()?;
    }
    if !stored.is_empty() {
        notify(&tx, &StoreEvent::Journal).await?;
    }
    tx.commit().await.or_backend()?;
    Ok(stored)
}

pub(crate) async fn outbox_endpoints(store: &PostgresStore) -> Result<Vec<String>, StoreError> {
    let client = store.client().await?;
    let rows = client.query("SELECT DISTINCT endpoint FROM outbox ORDER BY endpoint", &[]).await.or_backend()?;
    Ok(rows.iter().map(|r| r.get(0)).collect())
}

fn outbox_item(row: &tokio_postgres::Row) -> Result<OutboxItem, StoreError> {
    let kind: String = row.try_get(2).or_backend()?;
    Ok(OutboxItem {
        id: row.try_get::<_, i64>(0).or_backend()? as u64,
        endpoint: row.try_get(1).or_backend()?,
        kind: SubscriptionKind::parse(&kind)
            .ok_or_else(|| StoreError::Backend(format!("an outbox row has the unknown kind {kind:?}")))?,
        tenant: row.try_get(3).or_backend()?,
        subscription_id: row.try_get(4).or_backend()?,
        message: row.try_get::<_, Json<Value>>(5).or_backend()?.0,
        created_at: row.try_get(6).or_backend()?,
        attempts: row.try_get::<_, i32>(7).or_backend()?.max(0) as u32,
    })
}

pub(crate) const OUTBOX_COLUMNS: &str = "id, endpoint, kind, tenant, subscription_id, message, created_at, attempts";

/// The oldest pending notifications of one endpoint.
pub(crate) async fn outbox(store: &PostgresStore, endpoint: &str, limit: usize) -> Result<Vec<OutboxItem>, StoreError> {
    let client = store.client().await?;
    let rows = client
        .query(
            &format!("SELECT {OUTBOX_COLUMNS} FROM outbox WHERE endpoint = $1 ORDER BY id LIMIT $2"),
            &[&endpoint, &(limit as i64)],
        )
        .await
        .or_backend()?;
    rows.iter().map(outbox_item).collect()
}

/// One delivery attempt in one transaction: the outbox row (gone when sent or given up, its
/// attempts counted on failure) and its subscription's status. A row another hub already
/// delivered changes nothing but the status.
pub(crate) async fn record_delivery(
    store: &PostgresStore,
    item: &OutboxItem,
    outcome: DeliveryOutcome,
    at: &str,
) -> Result<(), StoreError> {
    let mut client = store.client().await?;
    let tx = client.transaction().await.or_backend()?;
    let id = item.id as i64;
    let kind = item.kind.name();
    let key: [&(dyn tokio_postgres::types::ToSql + Sync); 4] = [&item.tenant, &kind, &item.subscription_id, &at];
    let of_subscription = "WHERE tenant = $1 AND kind = $2 AND id = $3";
    let remove_row = "DELETE FROM outbox WHERE tenant = $1 AND id = $2";
    match outcome {
        DeliveryOutcome::Attempted => {
            tx.execute(
                &format!(
                    "UPDATE subscriptions SET times_sent = times_sent + 1, last_notification = $4 {of_subscription}"
                ),
                &key,
            )
            .await
            .or_backend()?;
        }
        DeliveryOutcome::Sent => {
            tx.execute(remove_row, &[&item.tenant, &id]).await.or_backend()?;
            tx.execute(&format!("UPDATE subscriptions SET last_success = $4 {of_subscription}"), &key)
                .await
                .or_backend()?;
        }
        DeliveryOutcome::Failed | DeliveryOutcome::GaveUp => {
            if outcome == DeliveryOutcome::GaveUp {
                tx.execute(remove_row, &[&item.tenant, &id]).await.or_backend()?;
                tx.execute(&format!("UPDATE subscriptions SET dropped = dropped + 1 {of_subscription}"), &key[..3])
                    .await
                    .or_backend()?;
            } else {
                tx.execute(
                    "UPDATE outbox SET attempts = attempts + 1 WHERE tenant = $1 AND id = $2",
                    &[&item.tenant, &id],
                )
                .await
                .or_backend()?;
            }
            tx.execute(
                &format!(
                    "UPDATE subscriptions SET times_failed = times_failed + 1, last_failure = $4 {of_subscription}"
                ),
                &key,
            )
            .await
            .or_backend()?;
        }
    }
    tx.commit().await.or_backend()
}

/// Acquires the lease `name` for `holder`, or renews it: one atomic upsert on the database's
/// clock. True while `holder` holds it.
pub(crate) async fn try_lease(
    store: &PostgresStore,
    name: &str,
    holder: &str,
    ttl: Duration,
) -> Result<bool, StoreError> {
    let client = store.client().await?;
    let seconds = ttl.as_secs_f64();
    let row = client
        .query_opt(
            "INSERT INTO leases (name, holder, expires_at)
             VALUES ($1, $2, clock_timestamp() + $3::float8 * interval '1 second')
             ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, expires_at = excluded.expires_at
             WHERE leases.holder = excluded.holder OR leases.expires_at <= clock_timestamp()
             RETURNING holder",
            &[&name, &holder, &seconds],
        )
        .await
        .or_backend()?;
    Ok(row.is_some())
}

/// Gives the lease up at once, when `holder` holds it.
pub(crate) async fn release_lease(store: &PostgresStore, name: &str, holder: &str) -> Result<(), StoreError> {
    let client = store.client().await?;
    client.execute("DELETE FROM leases WHERE name = $1 AND holder = $2", &[&name, &holder]).await.or_backend()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_travel_as_their_payload() {
        let events = [
            StoreEvent::Journal,
            StoreEvent::Subscription { kind: SubscriptionKind::CSource, tenant: "t".into(), id: "urn:s:1".into() },
            StoreEvent::Records { tenant: String::new(), kind: RecordKind::Registration },
            StoreEvent::Context { id: "c1".into() },
            StoreEvent::Tenant { tenant: "city".into() },
        ];
        for event in events {
            assert_eq!(decode_event(&encode_event(&event)), Some(event));
        }
        // Too long for NOTIFY: told as lagged, which reads as "everything changed".
        let long = StoreEvent::Context { id: "x".repeat(MAX_PAYLOAD) };
        assert_eq!(encode_event(&long), r#"{"e":"lagged"}"#);
        assert_eq!(decode_event(&encode_event(&long)), None);
        assert_eq!(decode_event("not json"), None);
    }
}
