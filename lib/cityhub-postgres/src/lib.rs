//! The server backend of cityhub: PostgreSQL 15+ with PostGIS 3, shared by any number of hubs.
//!
//! Every hub process is stateless towards the store: what one hub commits is what the next
//! request at any other hub reads. Each `Store` method is one or a few statements on a pooled
//! connection (deadpool-postgres over tokio-postgres); writes are acknowledged only after their
//! transaction committed with `synchronous_commit = on`.
//!
//! The modules split by concern: `entities` (current state, `modify`), `query` (filters), `temporal`
//! (history), `contexts`, `tenants`; `subscriptions`, `feed` (journal, outbox, leases, events) and
//! `records` hold the notification machinery and registrations. `schema` runs the versioned
//! migrations.

#![forbid(unsafe_code)]
#![warn(clippy::unwrap_used, clippy::expect_used)]

mod audit;
mod contexts;
mod dump;
mod entities;
mod feed;
mod index;
mod pipeline;
mod query;
mod records;
mod rows;
mod schema;
mod series;
mod stats;
mod subscriptions;
mod temporal;
mod tenants;

use std::collections::HashSet;
use std::str::FromStr;
use std::sync::RwLock;

use async_trait::async_trait;
use cityhub_storage::{
    AuditEntry, AuditFilter, AuditPage, Change, DeliveryOutcome, EntityFilter, JournalEntry, Modifier, NotifierCommit,
    OutboxItem, Page, Paging, RecordKind, Store, StoreError, StoreEvent, StoredContext, StoredSubscription,
    SubscriptionKind, TemporalOutcome, TemporalPage, TemporalQuery, TemporalWrite, Tenant,
};
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use ngsild_core::{Entity, NgsiLdError};
use serde_json::Value;
use tokio_postgres::NoTls;

/// A transaction on a pooled connection (its prepared statements cached per connection).
pub(crate) type Tx<'a> = deadpool_postgres::Transaction<'a>;

/// Connections a hub keeps to the database at most.
const DEFAULT_POOL_SIZE: usize = 16;

/// The PostgreSQL store. Cheap to share (`Arc` it); every method takes a pooled connection.
pub struct PostgresStore {
    pub(crate) pool: Pool,
    /// The notification machinery's process-side state (see `feed`).
    pub(crate) feed: feed::Feed,
    /// Tenants this process saw committed (a tenant is never deleted).
    known_tenants: RwLock<HashSet<String>>,
    /// Months whose history partition this process saw exist (a partition is never dropped by a hub).
    partitions: RwLock<HashSet<i64>>,
    /// History series ids of entities written lately, checked against each entity's series
    /// generation in the transaction that uses them (see `series`).
    pub(crate) series: series::SeriesIds,
}

impl PostgresStore {
    /// Connects to `url` (`postgres://USER[:PASSWORD]@HOST[:PORT]/DB`, or a libpq key=value
    /// string) and brings the schema up to date.
    pub async fn connect(url: &str) -> Result<PostgresStore, StoreError> {
        PostgresStore::connect_with(url, DEFAULT_POOL_SIZE).await
    }

    /// [`PostgresStore::connect`] with at most `pool_size` connections.
    pub async fn connect_with(url: &str, pool_size: usize) -> Result<PostgresStore, StoreError> {
        let mut config = tokio_postgres::Config::from_str(url)
            .map_err(|e| StoreError::Backend(format!("invalid PostgreSQL URL: {e}")))?;
        // A write is acknowledged after its commit reached the disk (and the synchronous
        // standbys, if the DBA has configured any), whatever the database's default says.
        config.options("-c synchronous_commit=on");
        if config.get_application_name().is_none() {
            config.application_name("cityhub");
        }
        let listen_config = config.clone();
        let manager = Manager::from_config(config, NoTls, ManagerConfig { recycling_method: RecyclingMethod::Fast });
        let pool = Pool::builder(manager)
            .max_size(pool_size.max(2))
            .build()
            .map_err(|e| StoreError::Backend(e.to_string()))?;
        let mut client = pool.get().await.or_backend()?;
        schema::migrate(&mut client).await?;
        drop(client);
        let feed = feed::Feed::start(&listen_config).await?;
        Ok(PostgresStore {
            pool,
            feed,
            known_tenants: RwLock::new(HashSet::new()),
            partitions: RwLock::new(HashSet::new()),
            series: series::SeriesIds::default(),
        })
    }

    pub(crate) fn known_tenant(&self, tenant: &str) -> bool {
        self.known_tenants.read().is_ok_and(|known| known.contains(tenant))
    }

    pub(crate) fn remember_tenant(&self, tenant: &str) {
        if let Ok(mut known) = self.known_tenants.write() {
            known.insert(tenant.to_owned());
        }
    }

    pub(crate) fn partition_known(&self, month: i64) -> bool {
        self.partitions.read().is_ok_and(|known| known.contains(&month))
    }

    pub(crate) fn remember_partition(&self, month: i64) {
        if let Ok(mut known) = self.partitions.write() {
            known.insert(month);
        }
    }

    /// A pooled connection.
    /// The figures `/metrics` shows of this store (see `stats`), for a caller that refreshes
    /// them every so often.
    pub async fn stats(&self) -> Result<cityhub_metrics::StoreStats, StoreError> {
        stats::read(self).await
    }

    pub(crate) async fn client(&self) -> Result<deadpool_postgres::Client, StoreError> {
        self.pool.get().await.or_backend()
    }
}

/// Says what went wrong in the database, with PostgreSQL's own message, code and detail.
pub(crate) fn describe(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => {
            let mut text = format!("PostgreSQL {} {}: {}", db.severity(), db.code().code(), db.message());
            if let Some(detail) = db.detail() {
                text.push_str(&format!(" ({detail})"));
            }
            text
        }
        None => match std::error::Error::source(e) {
            Some(source) => format!("PostgreSQL: {e}: {source}"),
            None => format!("PostgreSQL: {e}"),
        },
    }
}

/// Turns the errors of the database and of decoding into a [`StoreError::Backend`].
pub(crate) trait OrBackend<T> {
    fn or_backend(self) -> Result<T, StoreError>;
}

impl<T> OrBackend<T> for Result<T, tokio_postgres::Error> {
    fn or_backend(self) -> Result<T, StoreError> {
        self.map_err(|e| StoreError::Backend(describe(&e)))
    }
}

impl<T> OrBackend<T> for Result<T, deadpool_postgres::PoolError> {
    fn or_backend(self) -> Result<T, StoreError> {
        self.map_err(|e| match e {
            deadpool_postgres::PoolError::Backend(e) => StoreError::Backend(describe(&e)),
            other => StoreError::Backend(format!("PostgreSQL connection pool: {other}")),
        })
    }
}

impl<T> OrBackend<T> for Result<T, serde_json::Error> {
    fn or_backend(self) -> Result<T, StoreError> {
        self.map_err(|e| StoreError::Backend(format!("a stored document does not decode: {e}")))
    }
}

#[async_trait]
impl Store for PostgresStore {
    async fn tenant_exists(&self, tenant: &Tenant) -> Result<bool, StoreError> {
        tenants::exists(self, tenant).await
    }

    async fn tenants(&self) -> Result<Vec<String>, StoreError> {
        tenants::list(self).await
    }

    async fn get_entity(&self, tenant: &Tenant, id: &str) -> Result<Option<Entity>, StoreError> {
        rows::get(self, tenant, id).await
    }

    async fn modify(
        &self,
        tenant: &Tenant,
        modifications: Vec<(String, Modifier)>,
    ) -> Result<Vec<Result<Change, NgsiLdError>>, StoreError> {
        entities::modify(self, tenant, modifications).await
    }

    async fn query(&self, tenant: &Tenant, filter: &EntityFilter, paging: Paging) -> Result<Page, StoreError> {
        query::query(self, tenant, filter, paging).await
    }

    async fn temporal_write(
        &self,
        tenant: &Tenant,
        id: &str,
        write: TemporalWrite,
    ) -> Result<Result<TemporalOutcome, NgsiLdError>, StoreError> {
        temporal::write(self, tenant, id, write).await
    }

    async fn temporal_query(&self, tenant: &Tenant, query: &TemporalQuery) -> Result<TemporalPage, StoreError> {
        temporal::query(self, tenant, query).await
    }

    async fn put_context(&self, context: StoredContext) -> Result<(), StoreError> {
        contexts::put(self, context).await
    }

    async fn get_context(&self, id: &str) -> Result<Option<StoredContext>, StoreError> {
        contexts::get(self, id).await
    }

    async fn list_contexts(&self) -> Result<Vec<StoredContext>, StoreError> {
        contexts::list(self).await
    }

    async fn delete_context(&self, id: &str) -> Result<bool, StoreError> {
        contexts::delete(self, id).await
    }

    async fn create_subscription(
        &self,
        kind: SubscriptionKind,
        tenant: &Tenant,
        id: &str,
        doc: Value,
    ) -> Result<Result<(), NgsiLdError>, StoreError> {
        subscriptions::create(self, kind, tenant, id, doc).await
    }

    async fn replace_subscription(
        &self,
        kind: SubscriptionKind,
        tenant: &Tenant,
        id: &str,
        doc: Value,
    ) -> Result<bool, StoreError> {
        subscriptions::replace(self, kind, tenant, id, doc).await
    }

    async fn delete_subscription(&self, kind: SubscriptionKind, tenant: &Tenant, id: &str) -> Result<bool, StoreError> {
        subscriptions::delete(self, kind, tenant, id).await
    }

    async fn get_subscription(
        &self,
        kind: SubscriptionKind,
        tenant: &Tenant,
        id: &str,
    ) -> Result<Option<StoredSubscription>, StoreError> {
        subscriptions::get(self, kind, tenant, id).await
    }

    async fn list_subscriptions(
        &self,
        kind: Option<SubscriptionKind>,
        tenant: Option<&Tenant>,
    ) -> Result<Vec<StoredSubscription>, StoreError> {
        subscriptions::list(self, kind, tenant).await
    }

    async fn journal_after(&self, cursor: u64, limit: usize) -> Result<Vec<JournalEntry>, StoreError> {
        feed::journal_after(self, cursor, limit).await
    }

    async fn notifier_cursor(&self) -> Result<u64, StoreError> {
        feed::notifier_cursor(self).await
    }

    async fn commit_notifications(&self, commit: NotifierCommit) -> Result<Vec<OutboxItem>, StoreError> {
        feed::commit_notifications(self, commit).await
    }

    async fn outbox_endpoints(&self) -> Result<Vec<String>, StoreError> {
        feed::outbox_endpoints(self).await
    }

    async fn outbox(&self, endpoint: &str, limit: usize) -> Result<Vec<OutboxItem>, StoreError> {
        feed::outbox(self, endpoint, limit).await
    }

    async fn record_delivery(&self, item: &OutboxItem, outcome: DeliveryOutcome, at: &str) -> Result<(), StoreError> {
        feed::record_delivery(self, item, outcome, at).await
    }

    fn events(&self) -> tokio::sync::broadcast::Receiver<StoreEvent> {
        feed::events(self)
    }

    async fn try_lease(&self, name: &str, holder: &str, ttl: std::time::Duration) -> Result<bool, StoreError> {
        feed::try_lease(self, name, holder, ttl).await
    }

    async fn release_lease(&self, name: &str, holder: &str) -> Result<(), StoreError> {
        feed::release_lease(self, name, holder).await
    }

    async fn create_record(
        &self,
        tenant: &Tenant,
        kind: RecordKind,
        id: &str,
        doc: Value,
    ) -> Result<Result<(), NgsiLdError>, StoreError> {
        records::create(self, tenant, kind, id, doc).await
    }

    async fn replace_record(
        &self,
        tenant: &Tenant,
        kind: RecordKind,
        id: &str,
        doc: Value,
    ) -> Result<bool, StoreError> {
        records::replace(self, tenant, kind, id, doc).await
    }

    async fn list_records(&self, tenant: &Tenant, kind: RecordKind) -> Result<Vec<Value>, StoreError> {
        records::list(self, tenant, kind).await
    }

    async fn delete_record(&self, tenant: &Tenant, kind: RecordKind, id: &str) -> Result<bool, StoreError> {
        records::delete(self, tenant, kind, id).await
    }

    async fn append_audit(&self, entries: Vec<AuditEntry>) -> Result<(), StoreError> {
        audit::append(self, &entries).await
    }

    async fn read_audit(&self, filter: &AuditFilter, offset: usize, limit: usize) -> Result<AuditPage, StoreError> {
        audit::read(self, filter, offset, limit).await
    }

    async fn purge_audit(&self, before_micros: i64) -> Result<u64, StoreError> {
        audit::purge(self, before_micros).await
    }

    // The ledger (issue 22) is the embedded store's so far: PostgreSQL says it keeps none, and
    // the contract's ledger cases skip it.
    async fn ledger_head(&self, _tenant: &Tenant) -> Result<cityhub_storage::LedgerHead, StoreError> {
        Err(StoreError::Unsupported(NO_LEDGER.into()))
    }

    async fn ledger_hashes(&self, _tenant: &Tenant, _to: u64) -> Result<Vec<[u8; 32]>, StoreError> {
        Err(StoreError::Unsupported(NO_LEDGER.into()))
    }

    async fn ledger_leaves(
        &self,
        _tenant: &Tenant,
        _from: u64,
        _limit: usize,
    ) -> Result<Vec<cityhub_storage::LedgerLeaf>, StoreError> {
        Err(StoreError::Unsupported(NO_LEDGER.into()))
    }

    async fn ledger_find(&self, _tenant: &Tenant, _instance_id: &str) -> Result<Vec<u64>, StoreError> {
        Err(StoreError::Unsupported(NO_LEDGER.into()))
    }
}

const NO_LEDGER: &str =
    "this hub keeps no ledger: the PostgreSQL store has none yet (the embedded store keeps one with `serve --ledger on`)";
