//! Two notifiers on one store (as two hubs on one database): only the lease holder notifies, so
//! a change is notified once in total, and a subscription created through the store alone (as at
//! another hub) is in force at both through the store's events.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use cityhub_notify::{ContextResolver, Notifier, NotifyConfig};
use cityhub_storage::{modify_one, DynStore, Modified, SubscriptionKind};
use ngsild_core::model::{Attribute, AttributeKind};
use ngsild_core::{Entity, NgsiLdError};
use ngsild_jsonld::Context;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

struct CoreOnly;

#[async_trait]
impl ContextResolver for CoreOnly {
    async fn resolve(&self, _: Option<&Value>) -> Result<Arc<Context>, NgsiLdError> {
        Ok(ngsild_jsonld::core_context())
    }
}

/// A receiver on 127.0.0.1 that answers 204 to every request and counts them.
async fn receiver() -> (String, Arc<AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/notify", listener.local_addr().unwrap());
    let count = Arc::new(AtomicUsize::new(0));
    let counted = count.clone();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let counted = counted.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                // One request per connection is enough here: read the head and its body.
                loop {
                    let Ok(n) = socket.read(&mut chunk).await else { return };
                    if n == 0 {
                        return;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                    let text = String::from_utf8_lossy(&buf).to_string();
                    if let Some(end) = text.find("\r\n\r\n") {
                        let length = text[..end]
                            .lines()
                            .find_map(|l| {
                                l.to_ascii_lowercase()
                                    .strip_prefix("content-length:")
                                    .map(|v| v.trim().parse::<usize>().unwrap_or(0))
                            })
                            .unwrap_or(0);
                        if buf.len() >= end + 4 + length {
                            counted.fetch_add(1, Ordering::SeqCst);
                            let _ = socket.write_all(b"HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n").await;
                            return;
                        }
                    }
                }
            });
        }
    });
    (url, count)
}

/// Waits (at most 20 s) until `done` holds.
async fn until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn room(n: i64) -> Entity {
    let mut e = Entity::new("urn:ngsi-ld:Room:1", vec!["https://example.org/Room".into()]);
    e.attrs.insert("https://example.org/n".into(), vec![Attribute::new(AttributeKind::Property, json!(n))]);
    e
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_notifiers_on_one_store_notify_each_change_once() {
    // reqwest is built without a default TLS provider (as `cityhub serve` does).
    let _ = rustls::crypto::ring::default_provider().install_default();
    let dir = tempfile::tempdir().unwrap();
    let store: DynStore = Arc::new(cityhub_sqlite::SqliteStore::open(dir.path()).unwrap());
    let config = NotifyConfig { lease_ttl: Duration::from_millis(600), ..NotifyConfig::default() };
    let a = Notifier::start(store.clone(), Arc::new(CoreOnly), config.clone());
    let b = Notifier::start(store.clone(), Arc::new(CoreOnly), config);
    until("one of them holds the lease", || a.leading() || b.leading()).await;
    assert!(!(a.leading() && b.leading()), "never both");

    let (url, count) = receiver().await;
    let payload = json!({
        "id": "urn:ngsi-ld:Subscription:once",
        "type": "Subscription",
        "entities": [{"type": "https://example.org/Room"}],
        "notification": {"endpoint": {"uri": url}},
    });
    let sub = cityhub_notify::subscription::from_payload(
        payload.as_object().unwrap(),
        &ngsild_jsonld::core_context(),
        None,
        "2000-01-01T00:00:00Z",
    )
    .unwrap();
    // Written to the store only, as another hub would: neither notifier is told but by the event.
    let doc = serde_json::to_value(&sub).unwrap();
    store.create_subscription(SubscriptionKind::Entity, "", &sub.id, doc).await.unwrap().unwrap();

    for n in 0..3 {
        let create_or_update: cityhub_storage::Modifier = Box::new(move |_| Ok(Modified::entity(room(n))));
        modify_one(store.as_ref(), "", "urn:ngsi-ld:Room:1", create_or_update).await.unwrap();
    }
    until("three notifications arrived", || count.load(Ordering::SeqCst) >= 3).await;
    // Everything the notifiers had to do is done once the journal is consumed and the outbox
    // empty; only then is the count final.
    settled(&store).await;
    assert_eq!(count.load(Ordering::SeqCst), 3, "each change notified once in total, not once per notifier");
    let status = store.get_subscription(SubscriptionKind::Entity, "", &sub.id).await.unwrap().unwrap().status;
    assert_eq!((status.times_sent, status.times_failed), (3, 0));

    // The holder gives the lease up (a hub shutting down); the other takes over within a third
    // of the ttl and notifies the next change, once: the old holder's delivery worker, still
    // there, sends nothing.
    let (leader, other) = if a.leading() { (&a, &b) } else { (&b, &a) };
    leader.release().await;
    until("the lease passed on", || other.leading()).await;
    assert!(!leader.leading());
    let change: cityhub_storage::Modifier = Box::new(move |_| Ok(Modified::entity(room(99))));
    modify_one(store.as_ref(), "", "urn:ngsi-ld:Room:1", change).await.unwrap();
    until("the fourth notification arrived", || count.load(Ordering::SeqCst) >= 4).await;
    settled(&store).await;
    assert_eq!(count.load(Ordering::SeqCst), 4, "the fourth change notified once");
}

/// Waits until the notifiers have nothing left to do: the journal consumed, the outbox empty.
async fn settled(store: &DynStore) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let journal = store.journal_after(store.notifier_cursor().await.unwrap(), 10).await.unwrap();
        let pending = store.outbox_endpoints().await.unwrap();
        if journal.is_empty() && pending.is_empty() {
            return;
        }
        assert!(Instant::now() < deadline, "the notifiers did not finish: {journal:?} {pending:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Counts how often the notifier resolves a subscription's @context (each resolution counts as a
/// use of the context, `numberOfHits`, in the hub's resolver).
struct Counting(AtomicUsize);

#[async_trait]
impl ContextResolver for Counting {
    async fn resolve(&self, _: Option<&Value>) -> Result<Arc<Context>, NgsiLdError> {
        self.0.fetch_add(1, Ordering::SeqCst);
        Ok(ngsild_jsonld::core_context())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_event_that_changes_nothing_does_not_compile_the_subscription_again() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let dir = tempfile::tempdir().unwrap();
    let store: DynStore = Arc::new(cityhub_sqlite::SqliteStore::open(dir.path()).unwrap());
    let resolver = Arc::new(Counting(AtomicUsize::new(0)));
    let _notifier = Notifier::start(store.clone(), resolver.clone(), NotifyConfig::default());
    let doc = |description: &str| {
        let payload = json!({
            "id": "urn:ngsi-ld:Subscription:same", "type": "Subscription", "description": description,
            "entities": [{"type": "https://example.org/Room"}],
            "notification": {"endpoint": {"uri": "http://127.0.0.1:9/never"}},
        });
        let sub = cityhub_notify::subscription::from_payload(
            payload.as_object().unwrap(),
            &ngsild_jsonld::core_context(),
            None,
            "2000-01-01T00:00:00Z",
        )
        .unwrap();
        serde_json::to_value(&sub).unwrap()
    };
    let id = "urn:ngsi-ld:Subscription:same";
    store.create_subscription(SubscriptionKind::Entity, "", id, doc("first")).await.unwrap().unwrap();
    let resolves = || resolver.0.load(Ordering::SeqCst);
    until("the new subscription was compiled", || resolves() >= 1).await;
    let after_create = resolves();
    // The same document written again: an event, but nothing to compile.
    assert!(store.replace_subscription(SubscriptionKind::Entity, "", id, doc("first")).await.unwrap());
    // A real change after it: events are handled in order, so once this one is compiled the one
    // before it was handled too.
    assert!(store.replace_subscription(SubscriptionKind::Entity, "", id, doc("second")).await.unwrap());
    until("the changed subscription was compiled", || resolves() > after_create).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(resolves(), after_create * 2, "one compilation for the change, none for the event that changed nothing");
}
