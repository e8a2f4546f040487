//! The notification machinery and records on PostgreSQL with two stores on one database — what
//! two hub processes share: events told to the other store, leases, the compare-and-set cursor,
//! create-if-absent records, and a journal whose reader never skips an entry.

use std::sync::Arc;
use std::time::Duration;

use cityhub_postgres::PostgresStore;
use cityhub_storage::{
    modify_one, Heard, Modified, NotifierCommit, OutboxItem, RecordKind, Store, StoreError, StoreEvent,
    SubscriptionKind,
};
use ngsild_core::model::{Attribute, AttributeKind};
use ngsild_core::Entity;
use serde_json::json;
use tokio::sync::broadcast::Receiver;

async fn two_stores() -> (Arc<PostgresStore>, Arc<PostgresStore>) {
    let (a, b, _) = two_stores_and_url().await;
    (a, b)
}

async fn two_stores_and_url() -> (Arc<PostgresStore>, Arc<PostgresStore>, String) {
    let url = tokio::task::spawn_blocking(cityhub_pgtest::database).await.unwrap();
    let a = PostgresStore::connect(&url).await.unwrap();
    let b = PostgresStore::connect(&url).await.unwrap();
    (Arc::new(a), Arc::new(b), url)
}

/// The next event other than a journal wake-up, within a bound.
async fn expect_event(events: &mut Receiver<StoreEvent>, expected: &StoreEvent) {
    // Events of commits made before the receiver subscribed may still be on their way (NOTIFY
    // reaches the other store a moment later): those are passed over, the expected one must come.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let mut passed = Vec::new();
    loop {
        match tokio::time::timeout_at(deadline, events.recv()).await {
            Ok(Ok(event)) if &event == expected => return,
            Ok(Ok(event)) => passed.push(event),
            Ok(Err(e)) => panic!("the event receiver failed: {e}"),
            Err(_) => panic!("no {expected:?} within 10 s; heard only {passed:?}"),
        }
    }
}

fn entity(id: &str, n: i64) -> Entity {
    let mut e = Entity::new(id, vec!["https://example.org/T".into()]);
    e.attrs.insert("https://example.org/n".into(), vec![Attribute::new(AttributeKind::Property, json!(n))]);
    e
}

fn item(tenant: &str, n: u64) -> OutboxItem {
    OutboxItem {
        id: 0,
        endpoint: "http://127.0.0.1:9/notify".into(),
        kind: SubscriptionKind::Entity,
        tenant: tenant.into(),
        subscription_id: "urn:s:1".into(),
        message: json!({"n": n}),
        created_at: "2026-01-01T00:00:00Z".into(),
        attempts: 0,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_one_store_commits_the_other_is_told_of() {
    let (a, b) = two_stores().await;
    let mut at_b = b.events();
    a.create_subscription(SubscriptionKind::Entity, "city", "urn:s:1", json!({"id": "urn:s:1"}))
        .await
        .unwrap()
        .unwrap();
    // The tenant came into being with the subscription, then the subscription.
    expect_event(&mut at_b, &StoreEvent::Tenant { tenant: "city".into() }).await;
    let created =
        StoreEvent::Subscription { kind: SubscriptionKind::Entity, tenant: "city".into(), id: "urn:s:1".into() };
    expect_event(&mut at_b, &created).await;
    let seen = b.get_subscription(SubscriptionKind::Entity, "city", "urn:s:1").await.unwrap().unwrap();
    assert_eq!(seen.doc, json!({"id": "urn:s:1"}));

    a.create_record("city", RecordKind::Registration, "urn:r:1", json!({"id": "urn:r:1"})).await.unwrap().unwrap();
    let records = StoreEvent::Records { tenant: "city".into(), kind: RecordKind::Registration };
    expect_event(&mut at_b, &records).await;
    // Create-if-absent holds across stores: the second creation is AlreadyExists, nothing written.
    let again = b.create_record("city", RecordKind::Registration, "urn:r:1", json!({"id": "other"})).await.unwrap();
    let refused = again.unwrap_err();
    assert!(refused.detail.contains("urn:r:1 already exists"), "{}", refused.detail);
    assert_eq!(b.list_records("city", RecordKind::Registration).await.unwrap(), vec![json!({"id": "urn:r:1"})]);
    assert!(b
        .replace_record("city", RecordKind::Registration, "urn:r:1", json!({"id": "urn:r:1", "v": 2}))
        .await
        .unwrap());
    assert!(!b.replace_record("city", RecordKind::Registration, "urn:r:9", json!({})).await.unwrap());
    assert_eq!(a.list_records("city", RecordKind::Registration).await.unwrap(), vec![json!({"id": "urn:r:1", "v": 2})]);

    let mut at_a = a.events();
    assert!(b.delete_subscription(SubscriptionKind::Entity, "city", "urn:s:1").await.unwrap());
    expect_event(&mut at_a, &created).await;
    assert!(a.get_subscription(SubscriptionKind::Entity, "city", "urn:s:1").await.unwrap().is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lease_has_one_holder_and_passes_when_it_expires() {
    let (a, b) = two_stores().await;
    let ttl = Duration::from_millis(600);
    assert!(a.try_lease("notifier", "hub-a", ttl).await.unwrap());
    assert!(!b.try_lease("notifier", "hub-b", ttl).await.unwrap());
    // Renewed by its holder.
    assert!(a.try_lease("notifier", "hub-a", ttl).await.unwrap());
    // Released: the other takes it at once.
    a.release_lease("notifier", "hub-a").await.unwrap();
    assert!(b.try_lease("notifier", "hub-b", ttl).await.unwrap());
    assert!(!a.try_lease("notifier", "hub-a", ttl).await.unwrap());
    // hub-b stops renewing (as a killed hub does): the lease passes after the ttl, not before.
    let mut taken = false;
    for _ in 0..40 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        if a.try_lease("notifier", "hub-a", ttl).await.unwrap() {
            taken = true;
            break;
        }
    }
    assert!(taken, "the expired lease never passed to hub-a");
    assert!(!b.try_lease("notifier", "hub-b", ttl).await.unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cursor_moves_only_from_the_expected_value() {
    let (a, b) = two_stores().await;
    a.create_subscription(SubscriptionKind::Entity, "", "urn:s:1", json!({})).await.unwrap().unwrap();
    for i in 0..4 {
        let e = entity(&format!("urn:e:{i}"), i);
        modify_one(a.as_ref(), "", &e.id.clone(), Box::new(move |_| Ok(Modified::entity(e)))).await.unwrap();
    }
    let entries = b.journal_after(0, 10).await.unwrap();
    assert_eq!(
        entries.iter().map(|e| e.after.as_ref().unwrap().id.clone()).collect::<Vec<_>>(),
        ["urn:e:0", "urn:e:1", "urn:e:2", "urn:e:3"]
    );
    let last = entries[3].seq;
    let first = NotifierCommit {
        expected_cursor: 0,
        cursor: Some(entries[1].seq),
        notifications: vec![item("", 1)],
        outbox_cap: 10,
    };
    let stored = a.commit_notifications(first).await.unwrap();
    assert_eq!(stored.len(), 1);
    // b read the cursor before a moved it: its commit is refused whole.
    let stale =
        NotifierCommit { expected_cursor: 0, cursor: Some(last), notifications: vec![item("", 2)], outbox_cap: 10 };
    match b.commit_notifications(stale).await {
        Err(StoreError::Conflict(why)) => assert!(why.contains("another notifier"), "{why}"),
        other => panic!("expected a conflict, got {other:?}"),
    }
    assert_eq!(b.notifier_cursor().await.unwrap(), entries[1].seq);
    let pending = b.outbox("http://127.0.0.1:9/notify", 10).await.unwrap();
    assert_eq!(pending.iter().map(|i| i.message.clone()).collect::<Vec<_>>(), [json!({"n": 1})]);
    // The consumed entries are gone, the others wait.
    assert_eq!(b.journal_after(0, 10).await.unwrap().len(), 2);
    let fresh = NotifierCommit {
        expected_cursor: entries[1].seq,
        cursor: Some(last),
        notifications: Vec::new(),
        outbox_cap: 10,
    };
    b.commit_notifications(fresh).await.unwrap();
    assert_eq!(a.notifier_cursor().await.unwrap(), last);
    assert!(a.journal_after(last, 10).await.unwrap().is_empty());
}

/// Writers on two stores at once while a reader tails the journal with a cursor, as the notifier
/// does: the reader sees every change exactly once, in an order where each entity's changes keep
/// their order (sequence order is commit order).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_tailing_reader_never_skips_a_journal_entry_under_concurrent_writers() {
    let (a, b) = two_stores().await;
    a.create_subscription(SubscriptionKind::Entity, "t", "urn:s:1", json!({})).await.unwrap().unwrap();
    const WRITERS: i64 = 6;
    const WRITES: i64 = 15;
    let writers: Vec<_> = (0..WRITERS)
        .map(|w| {
            let store = if w % 2 == 0 { a.clone() } else { b.clone() };
            tokio::spawn(async move {
                for n in 0..WRITES {
                    // Two writers per entity, so that row locks and the journal lock interleave.
                    let e = entity(&format!("urn:e:{}", w / 2), w * 100 + n);
                    modify_one(store.as_ref(), "t", &e.id.clone(), Box::new(move |_| Ok(Modified::entity(e))))
                        .await
                        .unwrap();
                }
            })
        })
        .collect();
    let reader = {
        let store = a.clone();
        tokio::spawn(async move {
            let (mut cursor, mut seen) = (0u64, Vec::new());
            for _ in 0..2000 {
                let entries = store.journal_after(cursor, 7).await.unwrap();
                match entries.last() {
                    Some(last) => cursor = last.seq,
                    None if seen.len() as i64 == WRITERS * WRITES => break,
                    None => tokio::time::sleep(Duration::from_millis(5)).await,
                }
                seen.extend(entries);
            }
            seen
        })
    };
    for w in writers {
        w.await.unwrap();
    }
    let seen = reader.await.unwrap();
    assert_eq!(seen.len() as i64, WRITERS * WRITES, "the reader skipped or repeated entries");
    assert!(seen.windows(2).all(|w| w[0].seq < w[1].seq));
    // Each entity's entries chain: every one starts where the one before it ended.
    for id in 0..WRITERS / 2 {
        let chain: Vec<_> = seen.iter().filter(|e| e.after.as_ref().unwrap().id == format!("urn:e:{id}")).collect();
        for pair in chain.windows(2) {
            assert_eq!(pair[1].before, pair[0].after, "the journal of urn:e:{id} is out of commit order");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deliveries_are_counted_in_the_status_and_rows_go_when_sent() {
    let (a, b) = two_stores().await;
    a.create_subscription(SubscriptionKind::CSource, "t", "urn:s:1", json!({})).await.unwrap().unwrap();
    let mut first = item("t", 1);
    first.kind = SubscriptionKind::CSource;
    let mut second = item("t", 2);
    second.kind = SubscriptionKind::CSource;
    // A cap of one row: the second is dropped and counted.
    let commit = NotifierCommit { notifications: vec![first, second], outbox_cap: 1, ..Default::default() };
    let stored = a.commit_notifications(commit).await.unwrap();
    assert_eq!(stored.len(), 1);
    assert_eq!(b.outbox_endpoints().await.unwrap(), ["http://127.0.0.1:9/notify"]);
    let row = &b.outbox("http://127.0.0.1:9/notify", 10).await.unwrap()[0];
    use cityhub_storage::DeliveryOutcome::*;
    b.record_delivery(row, Attempted, "2026-01-01T00:00:01Z").await.unwrap();
    b.record_delivery(row, Failed, "2026-01-01T00:00:02Z").await.unwrap();
    assert_eq!(a.outbox("http://127.0.0.1:9/notify", 10).await.unwrap()[0].attempts, 1);
    b.record_delivery(row, Attempted, "2026-01-01T00:00:03Z").await.unwrap();
    b.record_delivery(row, Sent, "2026-01-01T00:00:04Z").await.unwrap();
    // Recorded again by a hub that delivered it too: the row is gone already, nothing breaks.
    a.record_delivery(row, Sent, "2026-01-01T00:00:05Z").await.unwrap();
    assert!(a.outbox_endpoints().await.unwrap().is_empty());
    let status = a.get_subscription(SubscriptionKind::CSource, "t", "urn:s:1").await.unwrap().unwrap().status;
    assert_eq!((status.times_sent, status.times_failed, status.dropped), (2, 1, 1));
    assert_eq!(status.last_failure.as_deref(), Some("2026-01-01T00:00:02Z"));
    assert_eq!(status.last_success.as_deref(), Some("2026-01-01T00:00:05Z"));
}

/// The listening connection is cut (a DBA's pg_terminate_backend, a failover): every receiver
/// hears that events were missed (everything may have changed), and events flow again once it
/// reconnected. (The feed used to overflow the channel to make receivers lag, which a receiver
/// reading as fast as the overflow was sent never saw: CI caught it once.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_listen_connection_tells_every_receiver_events_were_missed_and_comes_back() {
    let (a, b, url) = two_stores_and_url().await;
    let mut at_a = a.events();
    // The listening backends of this database: the ones that ran LISTEN (or its probe) last.
    let killed = {
        let client = cityhub_pgtest::connect(&url).await;
        client
            .query(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity
                 WHERE datname = current_database() AND pid <> pg_backend_pid()
                   AND (query LIKE 'LISTEN%' OR query = 'SELECT 1')",
                &[],
            )
            .await
            .unwrap()
            .len()
    };
    assert!(killed >= 2, "expected both stores' listening connections, found {killed}");
    // Bounded, with room for a loaded 2-core CI machine.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        match tokio::time::timeout_at(deadline, at_a.recv()).await.map(cityhub_storage::heard) {
            Ok(Heard::Missed) => break,
            Ok(Heard::Event(_)) => continue,
            other => panic!("no missed events told after the listening connection was cut: {other:?}"),
        }
    }
    // Events from the other store reach this one again (the reconnect may take a moment: the
    // event is sent until it arrives, a bounded number of times).
    let mut heard = false;
    for i in 0..50 {
        b.create_record("", RecordKind::Registration, &format!("urn:r:{i}"), json!({})).await.unwrap().unwrap();
        let wait = tokio::time::sleep(Duration::from_millis(200));
        tokio::pin!(wait);
        loop {
            tokio::select! {
                event = at_a.recv() => match event {
                    Ok(StoreEvent::Records { .. }) => { heard = true; break; }
                    _ => continue,
                },
                _ = &mut wait => break,
            }
        }
        if heard {
            break;
        }
    }
    assert!(heard, "events never came back after the reconnect");
}
