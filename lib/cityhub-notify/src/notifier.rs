//! The running machinery: one task tails the change journal and turns matches into outbox rows
//! (committed together with its cursor), one task per periodic subscription, and one delivery
//! worker per endpoint that sends its outbox in order, retrying with exponential backoff.
//!
//! Entity subscriptions and csource subscriptions (`SubscriptionKind`) are installed side by
//! side: entity changes come from the journal, registration changes from `registration_changed`
//! (the registration API tells), and both kinds' notifications go through the same outbox,
//! workers and delivery status.
//!
//! Several hubs may share one store. Only the holder of the store lease [`LEASE`] (renewed every
//! third of `NotifyConfig::lease_ttl`) tails the journal, runs the periodic subscriptions and
//! delivers the outbox, so each change is notified once in total; when it stops renewing (killed)
//! the lease expires and another hub takes over, pending outbox included. The journal cursor
//! moves by compare-and-set, so two holders overlapping for a moment never consume one entry
//! twice. Every hub follows the store's events (`Store::events`): a subscription created,
//! replaced or deleted at another hub is read again from the store, and a receiver that lagged
//! reloads them all.
//!
//! # The flow of a notification
//!
//! Entity subscriptions (`/subscriptions`) go as follows; csource subscriptions (above) share steps
//! 3 (their rows come from registration changes instead of the journal), 4 and 5.
//!
//! 1. `POST /subscriptions` (`cityhub-http::subscriptions`) reads the payload with the request's
//!    @context into a `Subscription`, compiles it (`jsonldContext` resolved: 503 when unreachable),
//!    stores it (`Store::create_subscription`; 409 for a taken id) and installs it in the `Notifier`.
//!    From that commit on the writer thread journals the tenant's changes: it keeps the set of
//!    tenants with subscriptions in memory, so a hub without subscriptions pays nothing.
//! 2. Every entity change in such a tenant — entity API, batch operations, the temporal API — appends
//!    a row to `journal` (tenant, seq, before, after, time) **in the transaction of the change**, and
//!    the store sends `StoreEvent::Journal` after the commit, which wakes the notifier.
//! 3. The notifier reads journal entries after its cursor, matches them against the installed
//!    entity subscriptions (active, not expired, created before the change, not throttled) and in **one
//!    commit** writes an `outbox` row per notification (the full message, keyed by endpoint URI),
//!    advances its cursor (compare-and-set: if another notifier moved it, nothing is written and the
//!    cursor is read again) and deletes the consumed journal rows. An endpoint's outbox holds at most
//!    `outbox_cap` rows; the rest are dropped and counted.
//!    A subscription with `notification.join` (flat or inline) reads the linked entities as they
//!    are at matching time, one store query per `joinLevel` hop, and renders them with
//!    `ngsild_core::render` as Linked Entity retrieval does for queries.
//! 4. One worker per endpoint reads its outbox oldest first, at most `queue_cap` rows in memory,
//!    and sends each: `timesSent`/`lastNotification` are recorded as the attempt starts; success
//!    deletes the row (`lastSuccess`), failure records `timesFailed`/`lastFailure` and retries with
//!    exponential backoff (0.5 s doubling to 5 s); a row older than `give_up_after` (1 h) is given up
//!    and counted. A dead or hanging endpoint holds back only its own queue.
//! 5. On start the notifier loads the subscriptions, wakes a worker for every endpoint with pending
//!    rows, and tails the journal from its stored cursor: a crash loses no notification (delivery is
//!    at least once; a notification sent but not yet recorded as sent is sent again).
//!
//! Steps 3 and 4 and the periodic subscriptions run only in the process holding the store lease
//! `notifier` (`NotifyConfig::lease_ttl`, `cityhub serve --notifier-lease-ttl`, default 10 s, renewed
//! every third of it), so hubs sharing a store notify each change once; a holder killed with -9 stops
//! renewing, and the next holder wakes the workers of every pending endpoint (as every holder does
//! at each renewal, for the rows other hubs queued: csource notifications of their registration
//! changes). (The embedded SQLite
//! store belongs to one process: it forgets leases when opened.) Every hub follows `Store::events`:
//! a `Subscription` event makes the notifier read that subscription again (so one created at another
//! hub is in force), and the HTTP caches drop what an event changes — a tenant's registrations
//! (`Records`), the known tenants of the tenant gate (`Tenant`), the term maps built from hosted
//! @contexts (`Context`); a lagged receiver drops them all.
//!
//! `droppedNotifications` in a subscription's `notification` member is a cityhub extension: how many
//! of its notifications were dropped (outbox full, or given up).
//!
//! # Context source subscriptions
//!
//! `/csourceSubscriptions` is the Subscription data type too, served by the handlers of
//! `subscriptions.rs` with `SubscriptionKind::CSource`: stored in the same `subscriptions` table
//! (its own id space), installed in the same `Notifier`, delivered through the same outbox and
//! workers, with the same durable status (`timesSent`, `lastSuccess`, `lastFailure`, `status`).
//! What differs is what they match (`cityhub_notify::csource`) and what feeds them:
//!
//! 1. Every registration created, updated or deleted through `/csourceRegistrations` calls
//!    `Notifier::registration_changed(tenant, before, after)` before the request is answered. Each
//!    live, non-periodic csource subscription of the tenant compares both versions: `newlyMatching`,
//!    `updated` or `noLongerMatching` (the registration as it matched), and the CSourceNotifications
//!    are committed to the outbox in one commit.
//! 2. Creating or updating a non-periodic csource subscription notifies at once of every
//!    registration it matches then (`newlyMatching`; nothing when none matches).
//! 3. A `timeInterval` subscription notifies on creation and every interval with all registrations
//!    it matches, even none (clause 5.11.7: regardless of any change); its task reads the
//!    registration records.
//! 4. `data` holds the registrations with only their matching RegistrationInfo elements, rendered
//!    in the subscription's @context (`jsonldContext` when given). `temporalQ` is accepted and not
//!    evaluated.

use parking_lot::{Mutex, RwLock};
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use cityhub_storage::{
    DeliveryOutcome, DynStore, Heard, NotifierCommit, OutboxItem, Paging, RecordKind, StoreError, StoreEvent,
    SubscriptionKind,
};
use ngsild_core::render::{link_targets, Projection};
use ngsild_core::time::{now, parse_datetime};
use ngsild_core::{Entity, NgsiLdError};
use ngsild_federation::Registration;
use ngsild_jsonld::Context;
use ngsild_query::EntityFilter;
use serde_json::Value;
use tokio::sync::{watch, Notify};
use tokio::task::JoinHandle;

use crate::csource::TriggerReason;
use crate::matching::Compiled;
use crate::subscription::{Subscriber, Subscription};
use cityhub_access::Scope;

/// What a subscriber may read of a tenant when a notification is made (access control, issue
/// 16): the shell answers it from the subscriber's grants and the tenant's policies as they are
/// then, so a revoked key or a narrowed policy holds from the next notification on.
#[async_trait]
pub trait Audience: Send + Sync + 'static {
    /// None: the subscriber may read nothing of the tenant now, and is not notified.
    async fn scope(&self, tenant: &str, subscriber: Option<&Subscriber>) -> Option<Scope>;
}

/// Resolves a subscription's @context (a URL, an object, an array; None: the core context).
#[async_trait]
pub trait ContextResolver: Send + Sync + 'static {
    async fn resolve(&self, context: Option<&Value>) -> Result<Arc<Context>, NgsiLdError>;
}

#[derive(Debug, Clone)]
pub struct NotifyConfig {
    /// Pending notifications one endpoint's outbox holds at most; more are dropped and counted.
    pub outbox_cap: usize,
    /// Outbox rows a delivery worker holds in memory at once.
    pub queue_cap: usize,
    pub retry_initial: Duration,
    pub retry_max: Duration,
    /// A notification still undelivered this long after it was queued is given up (dropped).
    pub give_up_after: Duration,
    /// How long one delivery attempt may take.
    pub send_timeout: Duration,
    /// Journal entries matched per notifier commit.
    pub journal_batch: usize,
    /// How long the notifier lease lasts unrenewed: a killed hub's notifications pass to another
    /// hub on the same store after at most this long. Renewed every third of it.
    pub lease_ttl: Duration,
    /// Where notifications may be sent.
    pub egress: cityhub_egress::Egress,
}

/// The name of the store lease whose holder notifies.
pub const LEASE: &str = "notifier";

impl Default for NotifyConfig {
    fn default() -> Self {
        NotifyConfig {
            outbox_cap: 10_000,
            queue_cap: 64,
            retry_initial: Duration::from_millis(500),
            retry_max: Duration::from_secs(5),
            give_up_after: Duration::from_secs(3600),
            send_timeout: Duration::from_secs(5),
            journal_batch: 256,
            lease_ttl: Duration::from_secs(10),
            egress: cityhub_egress::Egress::default(),
        }
    }
}

/// A subscription: its kind, tenant and id.
type Key = (SubscriptionKind, String, String);

fn key(c: &Compiled) -> Key {
    (c.kind, c.tenant.clone(), c.sub.id.clone())
}

struct Inner {
    store: DynStore,
    resolver: Arc<dyn ContextResolver>,
    config: NotifyConfig,
    http: cityhub_egress::EgressClient,
    subs: RwLock<HashMap<Key, Arc<Compiled>>>,
    journal_wake: Arc<Notify>,
    workers: Mutex<HashMap<String, Arc<Notify>>>,
    periodic: Mutex<HashMap<Key, JoinHandle<()>>>,
    /// When each throttled subscription last notified.
    last_notified: Mutex<HashMap<Key, Instant>>,
    /// Who this process is, as a lease holder.
    holder: String,
    /// Whether this process holds the lease (and so notifies).
    leading: watch::Sender<bool>,
    /// Set by `release`: the lease is not taken again.
    released: std::sync::atomic::AtomicBool,
    /// Who may read what (None: every subscriber reads everything).
    audience: RwLock<Option<Arc<dyn Audience>>>,
}

/// A handle on the notification machinery (cheap to clone).
#[derive(Clone)]
pub struct Notifier {
    inner: Arc<Inner>,
}

impl Notifier {
    /// Starts the machinery on the current tokio runtime: loads the stored subscriptions, replays
    /// the outbox, and tails the journal from where it stopped.
    pub fn start(store: DynStore, resolver: Arc<dyn ContextResolver>, config: NotifyConfig) -> Notifier {
        let http = config.egress.client(&cityhub_egress::ClientOptions {
            // Receivers (the ETSI suite's among them) read header names as written in the spec.
            title_case_headers: true,
            timeout: config.send_timeout,
            connect_timeout: config.send_timeout,
            ..cityhub_egress::ClientOptions::default()
        });
        let journal_wake = Arc::new(Notify::new());
        // Before loading: no change made while loading goes unseen.
        let events = store.events();
        let inner = Arc::new(Inner {
            store,
            resolver,
            config,
            http,
            subs: RwLock::new(HashMap::new()),
            journal_wake,
            workers: Mutex::new(HashMap::new()),
            periodic: Mutex::new(HashMap::new()),
            last_notified: Mutex::new(HashMap::new()),
            holder: format!("cityhub-{}", uuid::Uuid::new_v4()),
            leading: watch::channel(false).0,
            released: std::sync::atomic::AtomicBool::new(false),
            audience: RwLock::new(None),
        });
        let notifier = Notifier { inner };
        let starting = notifier.clone();
        tokio::spawn(async move {
            // The first attempt at the lease comes first, so that a hub that gets it notifies
            // its periodic subscriptions at once as it loads them.
            starting.renew_lease().await;
            let leasing = starting.clone();
            tokio::spawn(async move { leasing.hold_lease().await });
            starting.load().await;
            let following = starting.clone();
            tokio::spawn(async move { following.follow_events(events).await });
            starting.tail_journal().await;
        });
        notifier
    }

    /// From now on a notification carries only what `audience` says its subscriber may read.
    pub fn set_audience(&self, audience: Arc<dyn Audience>) {
        *self.inner.audience.write() = Some(audience);
    }

    /// What the subscriber of `c` may read now; None: nothing (it is not notified).
    async fn scope_of(&self, c: &Compiled) -> Option<Scope> {
        let audience = self.inner.audience.read().clone();
        match audience {
            None => Some(Scope::All),
            Some(a) => a.scope(&c.tenant, c.sub.subscriber.as_ref()).await,
        }
    }

    /// Whether this process holds the notifier lease now.
    pub fn leading(&self) -> bool {
        *self.inner.leading.borrow()
    }

    /// Waits until this process holds the notifier lease.
    async fn until_leading(&self) {
        let mut leading = self.inner.leading.subscribe();
        let _ = leading.wait_for(|held| *held).await;
    }

    /// Takes or renews the lease; while held, wakes every worker with pending rows (on taking
    /// it: those a killed holder left; later: those other hubs queued), and on taking it the
    /// journal tail.
    async fn renew_lease(&self) {
        if self.inner.released.load(std::sync::atomic::Ordering::Relaxed) {
            return;
        }
        let ttl = self.inner.config.lease_ttl;
        let held = match self.inner.store.try_lease(LEASE, &self.inner.holder, ttl).await {
            Ok(held) => held,
            Err(e) => {
                tracing::warn!(error = %e, "cannot renew the notifier lease");
                false
            }
        };
        let was = self.inner.leading.send_replace(held);
        if held {
            if !was {
                tracing::info!(holder = %self.inner.holder, "this hub holds the notifier lease and notifies");
                self.inner.journal_wake.notify_one();
            }
            // Rows other hubs queued (csource notifications of their registration changes) have
            // no event: at each renewal the workers of every pending endpoint are woken.
            self.wake_pending_workers().await;
        } else if was {
            tracing::warn!(holder = %self.inner.holder, "this hub lost the notifier lease");
        }
    }

    async fn hold_lease(&self) {
        let period = (self.inner.config.lease_ttl / 3).max(Duration::from_millis(10));
        loop {
            tokio::time::sleep(period).await;
            self.renew_lease().await;
        }
    }

    /// Gives the lease up for good (at shutdown), so that another hub takes over at once; this
    /// notifier notifies no more.
    pub async fn release(&self) {
        self.inner.released.store(true, std::sync::atomic::Ordering::Relaxed);
        self.inner.leading.send_replace(false);
        if let Err(e) = self.inner.store.release_lease(LEASE, &self.inner.holder).await {
            tracing::warn!(error = %e, "cannot release the notifier lease");
        }
    }

    async fn wake_pending_workers(&self) {
        match self.inner.store.outbox_endpoints().await {
            Ok(endpoints) => {
                for endpoint in endpoints {
                    self.worker(&endpoint).notify_one();
                }
            }
            Err(e) => tracing::error!(error = %e, "cannot read the outbox"),
        }
    }

    /// Follows the store's events: journal entries wake the tail, a subscription changed
    /// anywhere is read again, and after a lag everything is.
    async fn follow_events(&self, mut events: tokio::sync::broadcast::Receiver<StoreEvent>) {
        loop {
            match cityhub_storage::heard(events.recv().await) {
                Heard::Event(StoreEvent::Journal) => self.inner.journal_wake.notify_one(),
                Heard::Event(StoreEvent::Subscription { kind, tenant, id }) => self.reload(kind, &tenant, &id).await,
                Heard::Event(_) => {}
                Heard::Missed => {
                    tracing::debug!("store events missed: reloading the subscriptions");
                    self.load().await;
                    self.inner.journal_wake.notify_one();
                }
                Heard::Closed => return,
            }
        }
    }

    /// Brings one installed subscription in line with the store.
    async fn reload(&self, kind: SubscriptionKind, tenant: &str, id: &str) {
        match self.inner.store.get_subscription(kind, tenant, id).await {
            Ok(None) => self.remove(kind, tenant, id),
            Ok(Some(s)) => match serde_json::from_value::<Subscription>(s.doc) {
                // The event of a change this process made and installed already (or one that
                // changed nothing): compiling again would resolve its @contexts once more, and
                // count a use of them (`numberOfHits`) that no client made.
                Ok(sub) if self.installed_as(kind, tenant, &sub) => {}
                Ok(sub) => match self.compile(kind, tenant, sub).await {
                    Ok(compiled) => self.install(compiled),
                    Err(e) => tracing::warn!(%id, error = %e.detail, "a subscription cannot be compiled"),
                },
                Err(e) => tracing::error!(%id, error = %e, "an unreadable stored subscription is ignored"),
            },
            Err(e) => tracing::warn!(%id, error = %e, "a changed subscription could not be read"),
        }
    }

    /// Installs every stored subscription (those installed and unchanged stay as they are) and
    /// removes those the store no longer holds; wakes the workers of pending rows.
    async fn load(&self) {
        loop {
            match self.inner.store.list_subscriptions(None, None).await {
                Ok(stored) => {
                    let present: HashSet<Key> =
                        stored.iter().map(|s| (s.kind, s.tenant.clone(), s.id.clone())).collect();
                    let gone: Vec<Key> =
                        self.inner.subs.read().keys().filter(|k| !present.contains(*k)).cloned().collect();
                    for (kind, tenant, id) in gone {
                        self.remove(kind, &tenant, &id);
                    }
                    for s in stored {
                        let sub: Subscription = match serde_json::from_value(s.doc) {
                            Ok(sub) => sub,
                            Err(e) => {
                                tracing::error!(id = %s.id, error = %e, "an unreadable stored subscription is ignored");
                                continue;
                            }
                        };
                        match self.compile(s.kind, &s.tenant, sub).await {
                            Ok(compiled) => self.install(compiled),
                            Err(e) => {
                                tracing::warn!(id = %s.id, error = %e.detail, "a subscription cannot be compiled")
                            }
                        }
                    }
                    break;
                }
                Err(e) => {
                    tracing::error!(error = %e, "cannot load the subscriptions; retrying");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        }
        self.wake_pending_workers().await;
    }

    /// Resolves the subscription's contexts and parses its expressions.
    pub async fn compile(
        &self,
        kind: SubscriptionKind,
        tenant: &str,
        sub: Subscription,
    ) -> Result<Compiled, NgsiLdError> {
        let ctx = self.inner.resolver.resolve(sub.context.as_ref()).await?;
        let notify_ctx = match &sub.jsonld_context {
            Some(url) => self.inner.resolver.resolve(Some(&Value::String(url.clone()))).await?,
            None => ctx.clone(),
        };
        Compiled::new(kind, tenant, sub, &ctx, notify_ctx)
    }

    /// Whether `sub` is the subscription installed under its key already.
    fn installed_as(&self, kind: SubscriptionKind, tenant: &str, sub: &Subscription) -> bool {
        let key = (kind, tenant.to_owned(), sub.id.clone());
        self.inner.subs.read().get(&key).is_some_and(|installed| installed.sub == *sub)
    }

    /// Makes a created or updated subscription the one that matches from now on. The same
    /// subscription installed again (its store event after the request installed it) changes
    /// nothing: its throttling and periodic task go on.
    pub fn install(&self, compiled: Compiled) {
        let key = key(&compiled);
        if self.inner.subs.read().get(&key).is_some_and(|installed| installed.sub == compiled.sub) {
            return;
        }
        let compiled = Arc::new(compiled);
        self.inner.subs.write().insert(key.clone(), compiled.clone());
        self.inner.last_notified.lock().remove(&key);
        let mut periodic = self.inner.periodic.lock();
        if let Some(task) = periodic.remove(&key) {
            task.abort();
        }
        if let Some(seconds) = compiled.sub.time_interval {
            let notifier = self.clone();
            periodic.insert(key, tokio::spawn(async move { notifier.run_periodic(compiled, seconds).await }));
        }
    }

    pub fn remove(&self, kind: SubscriptionKind, tenant: &str, id: &str) {
        let key = (kind, tenant.to_owned(), id.to_owned());
        self.inner.subs.write().remove(&key);
        if let Some(task) = self.inner.periodic.lock().remove(&key) {
            task.abort();
        }
    }

    fn throttled(&self, c: &Compiled) -> bool {
        let Some(seconds) = c.sub.throttling else { return false };
        let key = key(c);
        let mut last = self.inner.last_notified.lock();
        match last.get(&key) {
            Some(at) if at.elapsed() < seconds_or_never(seconds) => true,
            _ => {
                last.insert(key, Instant::now());
                false
            }
        }
    }

    /// While this process holds the lease: the journal after the stored cursor, matched, and
    /// committed with the cursor moved past it (compare-and-set: when another holder moved it
    /// meanwhile, the cursor is read again and nothing is queued twice).
    async fn tail_journal(&self) {
        loop {
            self.until_leading().await;
            self.tail_while_leading().await;
        }
    }

    async fn tail_while_leading(&self) {
        let store = &self.inner.store;
        let mut cursor = loop {
            match store.notifier_cursor().await {
                Ok(c) => break c,
                Err(e) => {
                    tracing::error!(error = %e, "cannot read the notifier cursor; retrying");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        };
        while self.leading() {
            let entries = match store.journal_after(cursor, self.inner.config.journal_batch).await {
                Ok(entries) => entries,
                Err(e) => {
                    tracing::error!(error = %e, "cannot read the change journal");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue;
                }
            };
            let Some(last) = entries.last().map(|e| e.seq) else {
                // Woken by the store after each journaling commit; the timeout is a safety net.
                let _ = tokio::time::timeout(Duration::from_secs(1), self.inner.journal_wake.notified()).await;
                continue;
            };
            let subs: Vec<Arc<Compiled>> = self.inner.subs.read().values().cloned().collect();
            let now_time = chrono::Utc::now();
            let stamp = now();
            let mut notifications = Vec::new();
            // What each subscriber may read, decided once per batch.
            let mut scopes: HashMap<Key, Option<Scope>> = HashMap::new();
            for entry in &entries {
                let watching = |c: &&Arc<Compiled>| {
                    c.kind == SubscriptionKind::Entity && c.tenant == entry.tenant && c.sub.time_interval.is_none()
                };
                for c in subs.iter().filter(watching) {
                    // Changes from before the subscription existed are not its business.
                    if !c.is_live(now_time) || entry.at < c.sub.created_at {
                        continue;
                    }
                    let scope = match scopes.get(&key(c)) {
                        Some(scope) => scope.clone(),
                        None => {
                            let scope = self.scope_of(c).await;
                            scopes.insert(key(c), scope.clone());
                            scope
                        }
                    };
                    let Some(scope) = scope else { continue };
                    // The change as the subscriber may see it: an entity it may not see did not
                    // change for it, an attribute it may not see is not there.
                    let redacted;
                    let (before, after) = if scope == Scope::All {
                        (entry.before.as_ref(), entry.after.as_ref())
                    } else {
                        let redact = |e: &Option<Entity>| e.clone().and_then(|e| scope.redact(e));
                        redacted = (redact(&entry.before), redact(&entry.after));
                        (redacted.0.as_ref(), redacted.1.as_ref())
                    };
                    if before.is_none() && after.is_none() {
                        continue;
                    }
                    let Some(deleted) = c.fire(before, after) else {
                        continue;
                    };
                    if self.throttled(c) {
                        continue;
                    }
                    let linked = match after.or(before) {
                        Some(root) => self.linked(c, root, &scope).await,
                        None => HashMap::new(),
                    };
                    let data = c.render_change(before, after, &deleted, &entry.at, &linked);
                    let message = traced(c.message(data, &stamp), &c.tenant, after.or(before).map(|e| e.id.as_str()));
                    notifications.push(outbox_item(c, message, &stamp));
                }
            }
            match self.commit(Some((cursor, last)), notifications).await {
                Ok(()) => cursor = last,
                Err(StoreError::Conflict(why)) => {
                    tracing::debug!(%why, "the journal cursor moved elsewhere; reading it again");
                    return;
                }
                Err(e) => {
                    tracing::error!(error = %e, "cannot queue notifications; retrying");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        }
    }

    /// Queues notifications; with `cursors` (expected, next), moves the journal cursor as well.
    async fn commit(&self, cursors: Option<(u64, u64)>, notifications: Vec<OutboxItem>) -> Result<(), StoreError> {
        if cursors.is_none() && notifications.is_empty() {
            return Ok(());
        }
        let commit = NotifierCommit {
            expected_cursor: cursors.map_or(0, |(expected, _)| expected),
            cursor: cursors.map(|(_, next)| next),
            notifications,
            outbox_cap: self.inner.config.outbox_cap,
        };
        let stored = self.inner.store.commit_notifications(commit).await?;
        let endpoints: HashSet<&str> = stored.iter().map(|i| i.endpoint.as_str()).collect();
        for endpoint in endpoints {
            self.worker(endpoint).notify_one();
        }
        Ok(())
    }

    async fn run_periodic(&self, c: Arc<Compiled>, seconds: f64) {
        let mut ticks = tokio::time::interval(seconds_or_never(seconds.max(0.1)));
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            // The first tick is at once: a periodic subscription notifies on creation, too.
            ticks.tick().await;
            // Only the lease holder notifies: N hubs send one notification per interval.
            if !self.leading() || !c.is_live(chrono::Utc::now()) {
                continue;
            }
            let stamp = now();
            let message = match c.kind {
                SubscriptionKind::Entity => self.current_entities(&c).await.map(|data| c.message(data, &stamp)),
                // Sent even when nothing matches (clause 5.11.7: regardless of any change).
                SubscriptionKind::CSource => self
                    .current_registrations(&c)
                    .await
                    .map(|regs| c.csource_message(&regs, TriggerReason::NewlyMatching, &stamp)),
            };
            let Some(message) = message else { continue };
            if let Err(e) = self.commit(None, vec![outbox_item(&c, message, &stamp)]).await {
                tracing::warn!(error = %e, "a periodic notification could not be queued");
            }
        }
    }

    /// The entities an entity subscription selects now, rendered; None when there are none.
    async fn current_entities(&self, c: &Compiled) -> Option<Vec<Value>> {
        let scope = self.scope_of(c).await?;
        let mut data = Vec::new();
        let mut seen = HashSet::new();
        for filter in c.filters() {
            let paging = Paging { offset: 0, limit: 1000, count: false };
            let Ok(filter) = scope.narrow(filter) else { continue };
            match self.inner.store.query(&c.tenant, &filter, paging).await {
                Ok(page) => {
                    for entity in page.entities.into_iter().filter_map(|e| scope.redact(e)) {
                        if c.selects(&entity) && seen.insert(entity.id.clone()) {
                            let linked = self.linked(c, &entity, &scope).await;
                            data.extend(c.render_current(&entity, &linked));
                        }
                    }
                }
                Err(e) => tracing::warn!(error = %e, "a periodic notification could not query"),
            }
        }
        (!data.is_empty()).then_some(data)
    }

    /// The relevant parts of the registrations a csource subscription matches now; None when
    /// the registrations cannot be read.
    async fn current_registrations(&self, c: &Compiled) -> Option<Vec<Registration>> {
        match self.inner.store.list_records(&c.tenant, RecordKind::Registration).await {
            Ok(docs) => {
                let stamp = now();
                let (regs, problems) = Registration::decode_all(docs);
                for why in problems {
                    tracing::error!(tenant = %c.tenant, %why, "a registration is left out of a csource notification");
                }
                Some(regs.iter().filter_map(|r| c.relevant(r, &stamp)).collect())
            }
            Err(e) => {
                tracing::warn!(error = %e, "the registrations could not be read for a csource notification");
                None
            }
        }
    }

    /// Notifies a csource subscription of every registration it matches now, when there is one
    /// (`newlyMatching`): on its creation and on its update (clause 5.11.2). A periodic one does
    /// so on its own first tick.
    pub async fn notify_matching_registrations(&self, kind: SubscriptionKind, tenant: &str, id: &str) {
        let installed = self.inner.subs.read().get(&(kind, tenant.to_owned(), id.to_owned())).cloned();
        let Some(c) = installed else { return };
        if c.kind != SubscriptionKind::CSource || c.sub.time_interval.is_some() || !c.is_live(chrono::Utc::now()) {
            return;
        }
        let Some(regs) = self.current_registrations(&c).await else { return };
        if regs.is_empty() {
            return;
        }
        let stamp = now();
        let message = c.csource_message(&regs, TriggerReason::NewlyMatching, &stamp);
        if let Err(e) = self.commit(None, vec![outbox_item(&c, message, &stamp)]).await {
            tracing::warn!(error = %e, "a csource notification could not be queued");
        }
    }

    /// Tells the tenant's csource subscriptions that a registration changed: `before`/`after` are
    /// its versions (None: it did not exist / no longer exists). Returns once the notifications
    /// are in the outbox.
    pub async fn registration_changed(
        &self,
        tenant: &str,
        before: Option<&Registration>,
        after: Option<&Registration>,
    ) {
        let subs: Vec<Arc<Compiled>> = self
            .inner
            .subs
            .read()
            .values()
            .filter(|c| c.kind == SubscriptionKind::CSource && c.tenant == tenant && c.sub.time_interval.is_none())
            .cloned()
            .collect();
        let stamp = now();
        let live_at = chrono::Utc::now();
        let mut notifications = Vec::new();
        for c in subs.iter().filter(|c| c.is_live(live_at)) {
            let Some((reason, reg)) = c.on_registration_change(before, after, &stamp) else { continue };
            if self.throttled(c) {
                continue;
            }
            notifications.push(outbox_item(c, c.csource_message(&[reg], reason, &stamp), &stamp));
        }
        if let Err(e) = self.commit(None, notifications).await {
            tracing::warn!(error = %e, "csource notifications could not be queued");
        }
    }

    /// With `join`: the entities `root`'s shown relationships link to, `joinLevel` hops deep, one
    /// store query per hop (as Linked Entity retrieval does for queries). Empty without a join;
    /// an entity that cannot be read is left out.
    async fn linked(&self, c: &Compiled, root: &Entity, scope: &Scope) -> HashMap<String, Entity> {
        let mut linked: HashMap<String, Entity> = HashMap::new();
        let opts = c.render_options();
        let Some((_, levels)) = opts.join else {
            return linked;
        };
        let mut frontier: Vec<(String, Projection)> = link_targets(root, &opts.projection);
        for _ in 0..levels {
            let mut ids: Vec<String> = frontier.iter().map(|(id, _)| id.clone()).collect();
            ids.sort_unstable();
            ids.dedup();
            ids.retain(|id| !linked.contains_key(id) && id != &root.id);
            if ids.is_empty() {
                break;
            }
            let limit = ids.len();
            let filter = EntityFilter { ids, ..Default::default() };
            match self.inner.store.query(&c.tenant, &filter, Paging { offset: 0, limit, count: false }).await {
                Ok(page) => {
                    linked.extend(page.entities.into_iter().filter_map(|e| scope.redact(e)).map(|e| (e.id.clone(), e)))
                }
                Err(e) => {
                    tracing::warn!(error = %e, "a joined notification could not read the linked entities");
                    break;
                }
            }
            frontier = frontier
                .iter()
                .filter_map(|(id, proj)| linked.get(id).map(|e| link_targets(e, proj)))
                .flatten()
                .collect();
        }
        linked
    }

    /// The wake-up of an endpoint's delivery worker, started on first use.
    fn worker(&self, endpoint: &str) -> Arc<Notify> {
        let mut workers = self.inner.workers.lock();
        if let Some(wake) = workers.get(endpoint) {
            return wake.clone();
        }
        let wake = Arc::new(Notify::new());
        workers.insert(endpoint.to_owned(), wake.clone());
        let notifier = self.clone();
        let (endpoint, worker_wake) = (endpoint.to_owned(), wake.clone());
        tokio::spawn(async move { notifier.deliver(endpoint, worker_wake).await });
        wake
    }

    /// One endpoint's worker: its outbox in order, each row until delivered or given up. A slow
    /// or dead endpoint holds back only its own queue.
    async fn deliver(&self, endpoint: String, wake: Arc<Notify>) {
        let config = &self.inner.config;
        loop {
            self.until_leading().await;
            let items = match self.inner.store.outbox(&endpoint, config.queue_cap).await {
                Ok(items) => items,
                Err(e) => {
                    tracing::error!(error = %e, %endpoint, "cannot read the outbox");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue;
                }
            };
            if items.is_empty() {
                let _ = tokio::time::timeout(Duration::from_secs(30), wake.notified()).await;
                continue;
            }
            for item in items {
                if !self.leading() {
                    break;
                }
                self.deliver_one(&item).await;
            }
        }
    }

    async fn deliver_one(&self, item: &OutboxItem) {
        let config = &self.inner.config;
        let mut delay = config.retry_initial;
        loop {
            let key = (item.kind, item.tenant.clone(), item.subscription_id.clone());
            if !self.inner.subs.read().contains_key(&key) {
                // Deleted meanwhile: the store dropped its rows with it.
                return;
            }
            if !self.leading() {
                // The row stays in the outbox for the lease's next holder.
                return;
            }
            // timesSent and lastNotification count the attempt as it starts.
            if let Err(e) = self.inner.store.record_delivery(item, DeliveryOutcome::Attempted, &now()).await {
                tracing::error!(error = %e, "cannot record a delivery attempt");
            }
            let outcome = match crate::delivery::send(
                &self.inner.http,
                &self.inner.config.egress,
                &item.message,
                config.send_timeout,
            )
            .await
            {
                Ok(()) => DeliveryOutcome::Sent,
                Err(why) => {
                    tracing::debug!(endpoint = %item.endpoint, %why, "a notification was not delivered");
                    let age = parse_datetime(&item.created_at)
                        .map(|at| (chrono::Utc::now() - at).to_std().unwrap_or_default())
                        .unwrap_or_default();
                    if age >= config.give_up_after {
                        DeliveryOutcome::GaveUp
                    } else {
                        DeliveryOutcome::Failed
                    }
                }
            };
            if let Err(e) = self.inner.store.record_delivery(item, outcome, &now()).await {
                tracing::error!(error = %e, "cannot record a delivery");
            }
            let host = cityhub_metrics::ENDPOINT_HOSTS.label(&cityhub_metrics::labels::host_of(&item.endpoint));
            let counted = match outcome {
                DeliveryOutcome::Sent => "sent",
                DeliveryOutcome::GaveUp => "gave_up",
                _ => "failed",
            };
            metrics::counter!("cityhub_notifications_total", "endpoint_host" => host, "outcome" => counted)
                .increment(1);
            if outcome != DeliveryOutcome::Failed {
                return;
            }
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(config.retry_max);
        }
    }
}

/// A notification of a change with the `traceparent` of the request that wrote it, when this hub
/// served that request lately (`cityhub_metrics::trace`): kept in the outbox with the message, so
/// a delivery after a restart carries it too.
fn traced(mut message: Value, tenant: &str, id: Option<&str>) -> Value {
    let Some(trace) = id.and_then(|id| cityhub_metrics::trace::written(tenant, id)) else { return message };
    if let Some(headers) = message.get_mut("headers").and_then(Value::as_object_mut) {
        if !headers.keys().any(|k| k.eq_ignore_ascii_case("traceparent")) {
            headers.insert("traceparent".to_owned(), Value::String(trace.child().header()));
        }
    }
    message
}

fn outbox_item(c: &Compiled, message: Value, stamp: &str) -> OutboxItem {
    OutboxItem {
        id: 0,
        endpoint: c.sub.notification.endpoint.uri.clone(),
        kind: c.kind,
        tenant: c.tenant.clone(),
        subscription_id: c.sub.id.clone(),
        message,
        created_at: stamp.to_owned(),
        attempts: 0,
    }
}

/// A duration of seconds as a timer can hold it: one stored before `timeInterval` and
/// `throttling` were bounded, or not a number, is read as 100 years (never, in practice) rather
/// than panicking in `Duration::from_secs_f64`.
fn seconds_or_never(seconds: f64) -> Duration {
    let never = crate::subscription::MAX_INTERVAL_SECONDS;
    Duration::try_from_secs_f64(if seconds.is_finite() { seconds.min(never) } else { never })
        .unwrap_or(Duration::from_secs(never as u64))
}
