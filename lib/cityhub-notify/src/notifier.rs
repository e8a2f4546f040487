//! The running machinery: one task tails the change journal and turns matches into outbox rows
//! (committed together with its cursor), one task per periodic subscription, and one delivery
//! worker per endpoint that sends its outbox in order, retrying with exponential backoff.
//!
//! Entity subscriptions and csource subscriptions (`SubscriptionKind`) are installed side by
//! side: entity changes come from the journal, registration changes from `registration_changed`
//! (the registration API tells), and both kinds' notifications go through the same outbox,
//! workers and delivery status.

use parking_lot::{Mutex, RwLock};
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use cityhub_storage::{
    DeliveryOutcome, DynStore, NotifierCommit, OutboxItem, Paging, RecordKind, StoreError, SubscriptionKind,
};
use ngsild_core::render::{link_targets, Projection};
use ngsild_core::time::{now, parse_datetime};
use ngsild_core::{Entity, NgsiLdError};
use ngsild_federation::Registration;
use ngsild_jsonld::Context;
use ngsild_query::EntityFilter;
use serde_json::Value;
use tokio::sync::Notify;
use tokio::task::JoinHandle;

use crate::csource::TriggerReason;
use crate::matching::Compiled;
use crate::subscription::Subscription;

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
}

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
    http: reqwest::Client,
    subs: RwLock<HashMap<Key, Arc<Compiled>>>,
    journal_wake: Arc<Notify>,
    workers: Mutex<HashMap<String, Arc<Notify>>>,
    periodic: Mutex<HashMap<Key, JoinHandle<()>>>,
    /// When each throttled subscription last notified.
    last_notified: Mutex<HashMap<Key, Instant>>,
}

/// A handle on the notification machinery (cheap to clone).
#[derive(Clone)]
pub struct Notifier {
    inner: Arc<Inner>,
}

impl Notifier {
    /// Starts the machinery on the current tokio runtime: loads the stored subscriptions, replays
    /// the outbox, and tails the journal from where it stopped.
    #[expect(
        clippy::expect_used,
        reason = "runs once at start-up, before any request; reqwest fails only without a TLS backend"
    )]
    pub fn start(store: DynStore, resolver: Arc<dyn ContextResolver>, config: NotifyConfig) -> Notifier {
        let http = reqwest::Client::builder()
            // Receivers (the ETSI suite's among them) read header names as written in the spec.
            .http1_title_case_headers()
            .timeout(config.send_timeout)
            .connect_timeout(config.send_timeout)
            .build()
            .expect("an HTTP client with default TLS settings builds");
        let journal_wake = Arc::new(Notify::new());
        let wake = journal_wake.clone();
        store.on_journal(Arc::new(move || wake.notify_one()));
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
        });
        let notifier = Notifier { inner };
        let starting = notifier.clone();
        tokio::spawn(async move {
            starting.load().await;
            starting.tail_journal().await;
        });
        notifier
    }

    async fn load(&self) {
        loop {
            match self.inner.store.list_subscriptions(None, None).await {
                Ok(stored) => {
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
        match self.inner.store.outbox_endpoints().await {
            Ok(endpoints) => {
                for endpoint in endpoints {
                    self.worker(&endpoint).notify_one();
                }
            }
            Err(e) => tracing::error!(error = %e, "cannot read the outbox"),
        }
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

    /// Makes a created or updated subscription the one that matches from now on.
    pub fn install(&self, compiled: Compiled) {
        let key = key(&compiled);
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

    async fn tail_journal(&self) {
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
        loop {
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
            for entry in &entries {
                let watching = |c: &&Arc<Compiled>| {
                    c.kind == SubscriptionKind::Entity && c.tenant == entry.tenant && c.sub.time_interval.is_none()
                };
                for c in subs.iter().filter(watching) {
                    // Changes from before the subscription existed are not its business.
                    if !c.is_live(now_time) || entry.at < c.sub.created_at {
                        continue;
                    }
                    let (before, after) = (entry.before.as_ref(), entry.after.as_ref());
                    let Some(deleted) = c.fire(before, after) else {
                        continue;
                    };
                    if self.throttled(c) {
                        continue;
                    }
                    let linked = match after.or(before) {
                        Some(root) => self.linked(c, root).await,
                        None => HashMap::new(),
                    };
                    let data = c.render_change(before, after, &deleted, &entry.at, &linked);
                    notifications.push(outbox_item(c, c.message(data, &stamp), &stamp));
                }
            }
            match self.commit(Some(last), notifications).await {
                Ok(()) => cursor = last,
                Err(e) => {
                    tracing::error!(error = %e, "cannot queue notifications; retrying");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        }
    }

    async fn commit(&self, cursor: Option<u64>, notifications: Vec<OutboxItem>) -> Result<(), StoreError> {
        if cursor.is_none() && notifications.is_empty() {
            return Ok(());
        }
        let commit = NotifierCommit { cursor, notifications, outbox_cap: self.inner.config.outbox_cap };
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
            if !c.is_live(chrono::Utc::now()) {
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
        let mut data = Vec::new();
        let mut seen = HashSet::new();
        for filter in c.filters() {
            let paging = Paging { offset: 0, limit: 1000, count: false };
            match self.inner.store.query(&c.tenant, &filter, paging).await {
                Ok(page) => {
                    for entity in page.entities {
                        if c.selects(&entity) && seen.insert(entity.id.clone()) {
                            let linked = self.linked(c, &entity).await;
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
    async fn linked(&self, c: &Compiled, root: &Entity) -> HashMap<String, Entity> {
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
                Ok(page) => linked.extend(page.entities.into_iter().map(|e| (e.id.clone(), e))),
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
            // timesSent and lastNotification count the attempt as it starts.
            if let Err(e) = self.inner.store.record_delivery(item, DeliveryOutcome::Attempted, &now()).await {
                tracing::error!(error = %e, "cannot record a delivery attempt");
            }
            let outcome = match crate::delivery::send(&self.inner.http, &item.message, config.send_timeout).await {
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
            if outcome != DeliveryOutcome::Failed {
                return;
            }
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(config.retry_max);
        }
    }
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
