//! A store in front of the hub's store: a [`Layer`] sees the writes it cares about (entity
//! changes, temporal writes, record writes) and passes every other call through unchanged.
//!
//! Layers are how the hub adds behaviour at the one place every write passes without each
//! writer remembering it: data models checked before a commit (`cityhub_catalog::validating`),
//! the live channel told after one (`cityhub_http::live`). A layer implements only what it
//! changes; the blanket [`Store`] implementation below forwards the rest to [`Layer::inner`], so a
//! method added to [`Store`] is forwarded here once, not in every layer.
//!
//! **May:** wrap a call, look at its arguments and results. **Never:** hold NGSI-LD rules of its
//! own (a layer applies a rule of a pure crate), or store anything behind the inner store's back.

use std::time::Duration;

use async_trait::async_trait;
use ngsild_core::{Entity, NgsiLdError};
use serde_json::Value;

use crate::*;

/// A store that wraps another: override the writes to intercept, forward the rest.
#[async_trait]
pub trait Layer: Send + Sync + 'static {
    /// The store behind this one.
    fn inner(&self) -> &DynStore;

    async fn modify(
        &self,
        tenant: &Tenant,
        modifications: Vec<(String, Modifier)>,
    ) -> Result<Vec<Result<Change, NgsiLdError>>, StoreError> {
        self.inner().modify(tenant, modifications).await
    }

    async fn temporal_write(
        &self,
        tenant: &Tenant,
        id: &str,
        write: TemporalWrite,
    ) -> Result<Result<TemporalOutcome, NgsiLdError>, StoreError> {
        self.inner().temporal_write(tenant, id, write).await
    }

    async fn create_record(
        &self,
        tenant: &Tenant,
        kind: RecordKind,
        id: &str,
        doc: Value,
    ) -> Result<Result<(), NgsiLdError>, StoreError> {
        self.inner().create_record(tenant, kind, id, doc).await
    }

    async fn replace_record(
        &self,
        tenant: &Tenant,
        kind: RecordKind,
        id: &str,
        doc: Value,
    ) -> Result<bool, StoreError> {
        self.inner().replace_record(tenant, kind, id, doc).await
    }

    async fn delete_record(&self, tenant: &Tenant, kind: RecordKind, id: &str) -> Result<bool, StoreError> {
        self.inner().delete_record(tenant, kind, id).await
    }
}

#[async_trait]
impl<L: Layer> Store for L {
    async fn modify(
        &self,
        tenant: &Tenant,
        modifications: Vec<(String, Modifier)>,
    ) -> Result<Vec<Result<Change, NgsiLdError>>, StoreError> {
        Layer::modify(self, tenant, modifications).await
    }

    async fn temporal_write(
        &self,
        tenant: &Tenant,
        id: &str,
        write: TemporalWrite,
    ) -> Result<Result<TemporalOutcome, NgsiLdError>, StoreError> {
        Layer::temporal_write(self, tenant, id, write).await
    }

    async fn create_record(
        &self,
        tenant: &Tenant,
        kind: RecordKind,
        id: &str,
        doc: Value,
    ) -> Result<Result<(), NgsiLdError>, StoreError> {
        Layer::create_record(self, tenant, kind, id, doc).await
    }

    async fn replace_record(
        &self,
        tenant: &Tenant,
        kind: RecordKind,
        id: &str,
        doc: Value,
    ) -> Result<bool, StoreError> {
        Layer::replace_record(self, tenant, kind, id, doc).await
    }

    async fn delete_record(&self, tenant: &Tenant, kind: RecordKind, id: &str) -> Result<bool, StoreError> {
        Layer::delete_record(self, tenant, kind, id).await
    }

    async fn tenant_exists(&self, tenant: &Tenant) -> Result<bool, StoreError> {
        self.inner().tenant_exists(tenant).await
    }

    async fn tenants(&self) -> Result<Vec<String>, StoreError> {
        self.inner().tenants().await
    }

    async fn get_entity(&self, tenant: &Tenant, id: &str) -> Result<Option<Entity>, StoreError> {
        self.inner().get_entity(tenant, id).await
    }

    async fn query(&self, tenant: &Tenant, filter: &EntityFilter, paging: Paging) -> Result<Page, StoreError> {
        self.inner().query(tenant, filter, paging).await
    }

    async fn temporal_query(&self, tenant: &Tenant, query: &TemporalQuery) -> Result<TemporalPage, StoreError> {
        self.inner().temporal_query(tenant, query).await
    }

    async fn put_context(&self, context: StoredContext) -> Result<(), StoreError> {
        self.inner().put_context(context).await
    }

    async fn get_context(&self, id: &str) -> Result<Option<StoredContext>, StoreError> {
        self.inner().get_context(id).await
    }

    async fn list_contexts(&self) -> Result<Vec<StoredContext>, StoreError> {
        self.inner().list_contexts().await
    }

    async fn delete_context(&self, id: &str) -> Result<bool, StoreError> {
        self.inner().delete_context(id).await
    }

    async fn create_subscription(
        &self,
        kind: SubscriptionKind,
        tenant: &Tenant,
        id: &str,
        doc: Value,
    ) -> Result<Result<(), NgsiLdError>, StoreError> {
        self.inner().create_subscription(kind, tenant, id, doc).await
    }

    async fn replace_subscription(
        &self,
        kind: SubscriptionKind,
        tenant: &Tenant,
        id: &str,
        doc: Value,
    ) -> Result<bool, StoreError> {
        self.inner().replace_subscription(kind, tenant, id, doc).await
    }

    async fn delete_subscription(&self, kind: SubscriptionKind, tenant: &Tenant, id: &str) -> Result<bool, StoreError> {
        self.inner().delete_subscription(kind, tenant, id).await
    }

    async fn get_subscription(
        &self,
        kind: SubscriptionKind,
        tenant: &Tenant,
        id: &str,
    ) -> Result<Option<StoredSubscription>, StoreError> {
        self.inner().get_subscription(kind, tenant, id).await
    }

    async fn list_subscriptions(
        &self,
        kind: Option<SubscriptionKind>,
        tenant: Option<&Tenant>,
    ) -> Result<Vec<StoredSubscription>, StoreError> {
        self.inner().list_subscriptions(kind, tenant).await
    }

    async fn journal_after(&self, cursor: u64, limit: usize) -> Result<Vec<JournalEntry>, StoreError> {
        self.inner().journal_after(cursor, limit).await
    }

    async fn notifier_cursor(&self) -> Result<u64, StoreError> {
        self.inner().notifier_cursor().await
    }

    async fn commit_notifications(&self, commit: NotifierCommit) -> Result<Vec<OutboxItem>, StoreError> {
        self.inner().commit_notifications(commit).await
    }

    async fn outbox_endpoints(&self) -> Result<Vec<String>, StoreError> {
        self.inner().outbox_endpoints().await
    }

    async fn outbox(&self, endpoint: &str, limit: usize) -> Result<Vec<OutboxItem>, StoreError> {
        self.inner().outbox(endpoint, limit).await
    }

    async fn record_delivery(&self, item: &OutboxItem, outcome: DeliveryOutcome, at: &str) -> Result<(), StoreError> {
        self.inner().record_delivery(item, outcome, at).await
    }

    fn events(&self) -> tokio::sync::broadcast::Receiver<StoreEvent> {
        self.inner().events()
    }

    async fn try_lease(&self, name: &str, holder: &str, ttl: Duration) -> Result<bool, StoreError> {
        self.inner().try_lease(name, holder, ttl).await
    }

    async fn release_lease(&self, name: &str, holder: &str) -> Result<(), StoreError> {
        self.inner().release_lease(name, holder).await
    }

    async fn list_records(&self, tenant: &Tenant, kind: RecordKind) -> Result<Vec<Value>, StoreError> {
        self.inner().list_records(tenant, kind).await
    }

    async fn append_audit(&self, entries: Vec<AuditEntry>) -> Result<(), StoreError> {
        self.inner().append_audit(entries).await
    }

    async fn read_audit(&self, filter: &AuditFilter, offset: usize, limit: usize) -> Result<AuditPage, StoreError> {
        self.inner().read_audit(filter, offset, limit).await
    }

    async fn purge_audit(&self, before_micros: i64) -> Result<u64, StoreError> {
        self.inner().purge_audit(before_micros).await
    }

    async fn ledger_head(&self, tenant: &Tenant) -> Result<LedgerHead, StoreError> {
        self.inner().ledger_head(tenant).await
    }

    async fn ledger_hashes(&self, tenant: &Tenant, to: u64) -> Result<Vec<[u8; 32]>, StoreError> {
        self.inner().ledger_hashes(tenant, to).await
    }

    async fn ledger_leaves(&self, tenant: &Tenant, from: u64, limit: usize) -> Result<Vec<LedgerLeaf>, StoreError> {
        self.inner().ledger_leaves(tenant, from, limit).await
    }

    async fn ledger_find(&self, tenant: &Tenant, instance_id: &str) -> Result<Vec<u64>, StoreError> {
        self.inner().ledger_find(tenant, instance_id).await
    }
}
