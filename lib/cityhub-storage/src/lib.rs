//! The storage contract of cityhub.
//!
//! Every backend (embedded SQLite, PostgreSQL) implements [`Store`]. The contract is deliberately
//! small: entities are read by id or by [`EntityFilter`], and written only through [`Modifier`]s,
//! pure functions from the current state of one entity to its next state. The backend runs each
//! modifier inside a transaction, so a read-modify-write never races another writer, and it may
//! commit many modifiers together (group commit) without the caller knowing.
//!
//! A write is acknowledged (its future resolves) only once it is durable.

#![forbid(unsafe_code)]
#![warn(clippy::unwrap_used, clippy::expect_used)]

pub mod audit;
pub mod dump;
pub mod layer;
pub mod ledger;
pub mod plan;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use ngsild_core::{Entity, NgsiLdError};
use serde_json::Value;

pub use ngsild_core::ops::UpdateReport;

pub use audit::{AuditEntry, AuditFilter, AuditOutcome, AuditPage};
pub use layer::Layer;
pub use ledger::{LedgerHead, LedgerLeaf};
pub use ngsild_core::temporal::{AggrMethod, Instance, TemporalEntity, TimeProperty, TimeRel};
pub use ngsild_query::EntityFilter;

/// A tenant name; the default tenant is the empty string.
pub type Tenant = str;

pub const DEFAULT_TENANT: &str = "";

/// What a [`Modifier`] answers when it succeeds: the entity's next state (`None` deletes it, or
/// leaves an absent entity absent) and, for attribute updates, what was and was not updated.
/// The report travels back to the caller in [`Change::report`].
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Modified {
    pub next: Option<Entity>,
    pub report: Option<UpdateReport>,
}

impl Modified {
    /// The entity's next state.
    pub fn entity(entity: Entity) -> Modified {
        Modified { next: Some(entity), report: None }
    }

    /// The entity goes (nothing happens when it did not exist).
    pub fn delete() -> Modified {
        Modified { next: None, report: None }
    }

    /// The same outcome, with the update's report.
    pub fn with_report(self, report: Option<UpdateReport>) -> Modified {
        Modified { report, ..self }
    }
}

impl From<Option<Entity>> for Modified {
    fn from(next: Option<Entity>) -> Modified {
        Modified { next, report: None }
    }
}

/// What a [`Modifier`] answers: its outcome, or a refusal that leaves the entity unchanged.
pub type Modification = Result<Modified, NgsiLdError>;

/// A pure function from an entity's current state (`None` when it does not exist) to its next one.
pub type Modifier = Box<dyn FnOnce(Option<Entity>) -> Modification + Send>;

/// The effect of one successful modification, for the caller's reply and for notifications.
#[derive(Debug, Clone, PartialEq)]
pub struct Change {
    pub before: Option<Entity>,
    pub after: Option<Entity>,
    /// The modifier's report ([`Modified::report`]).
    pub report: Option<UpdateReport>,
}

/// A page of query results.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Page {
    pub entities: Vec<Entity>,
    /// The number of matching entities, when asked for.
    pub total: Option<usize>,
}

/// How a query is paged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Paging {
    pub offset: usize,
    pub limit: usize,
    pub count: bool,
}

/// A JSON-LD @context document hosted by the hub (the `/jsonldContexts` API).
#[derive(Debug, Clone, PartialEq)]
pub struct StoredContext {
    pub id: String,
    /// `Hosted` (added through the API) or `Cached` (a remote context the hub fetched).
    pub kind: String,
    pub url: String,
    pub document: Value,
    pub created_at: String,
    pub last_used_at: Option<String>,
    pub number_of_hits: u64,
    /// The tenant whose request hosted it (`""`: the default tenant). Contexts are served to
    /// everyone, hub-wide; only this tenant may delete it.
    pub tenant: String,
}

/// A write to the temporal representation of one entity (the `/temporal` API).
#[derive(Debug, Clone, PartialEq)]
pub enum TemporalWrite {
    /// Records every instance of `entity` (several per datasetId allowed) and brings the current
    /// entity up to date with the latest instance of each attribute; creates both when missing,
    /// unless `must_exist` (then a missing entity is ResourceNotFound).
    AddInstances {
        entity: Entity,
        must_exist: bool,
    },
    /// Forgets the entity: its history and its current state.
    DeleteEntity,
    /// Forgets an attribute's history (one datasetId, or all of them) and its current instances.
    DeleteAttribute {
        attr: String,
        dataset_id: Option<String>,
        all: bool,
    },
    /// Replaces the content of one recorded instance.
    ReplaceInstance {
        attr: String,
        instance_id: String,
        attribute: ngsild_core::Attribute,
    },
    DeleteInstance {
        attr: String,
        instance_id: String,
    },
}

/// What a temporal write did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TemporalOutcome {
    Created,
    Updated,
}

/// A temporal query: which entities, which instances, and how many.
#[derive(Debug, Clone, Default)]
pub struct TemporalQuery {
    /// Entity selection. `q`, `scopeQ` and the geo-query judge the entity's current state.
    pub filter: EntityFilter,
    /// Only these attributes' instances (expanded names; empty = all).
    pub attrs: Vec<String>,
    /// Only instances with one of these datasetIds (None inside = the default instance).
    pub dataset_ids: Option<Vec<Option<String>>>,
    pub timerel: Option<TimeRel>,
    pub time_property: TimeProperty,
    /// At most this many instances per attribute, the newest when `newest_first`.
    pub per_attribute: usize,
    pub newest_first: bool,
    /// Aggregate instead of listing: the methods and the period length in seconds (0 = the
    /// whole window as one period).
    pub aggregation: Option<(Vec<AggrMethod>, f64)>,
    /// Leave out entities with nothing in the window (a query does; a retrieval does not).
    pub skip_empty: bool,
    pub paging: Paging,
}

/// A page of temporal entities.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TemporalPage {
    pub entities: Vec<TemporalEntity>,
    pub total: Option<usize>,
}

/// What a subscription watches: entities (`/subscriptions`, clause 5.8) or context source
/// registrations (`/csourceSubscriptions`, clause 5.11). Each kind has its own ids; both share the
/// delivery machinery (outbox, status).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum SubscriptionKind {
    Entity,
    CSource,
}

impl SubscriptionKind {
    pub fn name(self) -> &'static str {
        match self {
            SubscriptionKind::Entity => "entity",
            SubscriptionKind::CSource => "csource",
        }
    }

    pub fn parse(name: &str) -> Option<SubscriptionKind> {
        [SubscriptionKind::Entity, SubscriptionKind::CSource].into_iter().find(|k| k.name() == name)
    }
}

/// A subscription as stored: its document (the hub's context-free form, see `cityhub-notify`)
/// and the status the delivery machinery keeps.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredSubscription {
    pub kind: SubscriptionKind,
    pub tenant: String,
    pub id: String,
    pub doc: Value,
    pub status: DeliveryStatus,
}

/// What the delivery of a subscription's notifications has done so far.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeliveryStatus {
    pub times_sent: u64,
    pub times_failed: u64,
    /// Notifications dropped because the endpoint's outbox was full or they could not be
    /// delivered before giving up (a cityhub extension of the status).
    pub dropped: u64,
    pub last_notification: Option<String>,
    pub last_success: Option<String>,
    pub last_failure: Option<String>,
}

/// One entity change in the change journal, written in the transaction of the change itself.
#[derive(Debug, Clone, PartialEq)]
pub struct JournalEntry {
    pub seq: u64,
    pub tenant: String,
    pub before: Option<Entity>,
    pub after: Option<Entity>,
    pub at: String,
}

/// A notification waiting in the outbox of its endpoint.
#[derive(Debug, Clone, PartialEq)]
pub struct OutboxItem {
    /// Assigned by the store; the order of delivery within an endpoint.
    pub id: u64,
    pub endpoint: String,
    pub kind: SubscriptionKind,
    pub tenant: String,
    pub subscription_id: String,
    /// Everything the sender needs: the message and how to send it.
    pub message: Value,
    pub created_at: String,
    pub attempts: u32,
}

/// What became of one delivery attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeliveryOutcome {
    /// About to be sent: counts in `times_sent` and `last_notification`.
    Attempted,
    /// Delivered: the outbox row goes.
    Sent,
    /// Failed; the row stays for a retry.
    Failed,
    /// Failed for the last time: the row goes and the notification counts as dropped.
    GaveUp,
}

/// Writes of the notifier: the outbox rows of a batch of journal entries, and the cursor past them.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct NotifierCommit {
    /// The cursor as the notifier read it: the commit moves the cursor only from this value
    /// (compare-and-set). When the stored cursor is elsewhere (another process consumed the
    /// journal meanwhile) nothing is written and the answer is [`StoreError::Conflict`].
    /// Ignored when `cursor` is None.
    pub expected_cursor: u64,
    /// The journal is consumed up to and including this sequence number.
    pub cursor: Option<u64>,
    pub notifications: Vec<OutboxItem>,
    /// An endpoint's outbox holds at most this many rows; the rest are dropped and counted.
    pub outbox_cap: usize,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreError {
    /// The backend failed (I/O, corruption, connection): nothing was written.
    Backend(String),
    /// A compare-and-set found another value than expected (another process wrote first):
    /// nothing was written; read again and retry.
    Conflict(String),
    /// The backend (or this hub's configuration of it) does not keep what was asked for, e.g.
    /// a ledger: nothing was read or written; the text says what would provide it.
    Unsupported(String),
}

impl std::fmt::Display for StoreError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StoreError::Backend(why) => write!(f, "storage failure: {why}"),
            StoreError::Conflict(why) => write!(f, "storage conflict: {why}"),
            StoreError::Unsupported(why) => write!(f, "{why}"),
        }
    }
}

/// Told after a commit, for the commits of this process and (shared backends) of every other
/// process on the same store, so that caches and the notifier follow changes made anywhere.
/// Delivery is best effort and bounded: a receiver that lagged (`RecvError::Lagged`) or is told
/// [`StoreEvent::Missed`] must act as if everything changed. Followers read their receiver
/// through [`heard`], which folds both into [`Heard::Missed`], so that neither can fall into a
/// catch-all arm.
#[derive(Debug, Clone, PartialEq)]
pub enum StoreEvent {
    /// New journal entries were committed.
    Journal,
    /// A subscription was created, replaced or deleted: read it again.
    Subscription { kind: SubscriptionKind, tenant: String, id: String },
    /// Records (context source registrations, access policies) of a tenant changed.
    Records { tenant: String, kind: RecordKind },
    /// A hosted or cached @context was put or deleted.
    Context { id: String },
    /// A tenant came into being.
    Tenant { tenant: String },
    /// Events of other processes may have been lost (a shared backend's feed was cut and came
    /// back): every cache of stored state is to be read again. Sent once to every receiver;
    /// overflowing the channel instead, to make receivers lag, fails for a receiver that keeps
    /// pace with the overflow.
    Missed,
}

/// What a follower of [`Store::events`] heard.
#[derive(Debug, Clone, PartialEq)]
pub enum Heard {
    /// One change (never [`StoreEvent::Missed`]).
    Event(StoreEvent),
    /// Changes may have been missed: read everything again.
    Missed,
    /// The store is gone.
    Closed,
}

/// Reads a receiver's result as a follower must act on it: a lag and [`StoreEvent::Missed`]
/// alike are [`Heard::Missed`].
pub fn heard(received: Result<StoreEvent, tokio::sync::broadcast::error::RecvError>) -> Heard {
    use tokio::sync::broadcast::error::RecvError;
    match received {
        Ok(StoreEvent::Missed) | Err(RecvError::Lagged(_)) => Heard::Missed,
        Ok(event) => Heard::Event(event),
        Err(RecvError::Closed) => Heard::Closed,
    }
}

impl std::error::Error for StoreError {}

impl From<StoreError> for NgsiLdError {
    fn from(e: StoreError) -> Self {
        match e {
            // Not the hub failing: the client asked for something this hub does not keep.
            StoreError::Unsupported(why) => NgsiLdError::new(ngsild_core::ErrorKind::OperationNotSupported, why),
            e => NgsiLdError::internal(e.to_string()),
        }
    }
}

#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Whether anything was ever written in this tenant (the default tenant always exists).
    async fn tenant_exists(&self, tenant: &Tenant) -> Result<bool, StoreError>;

    async fn tenants(&self) -> Result<Vec<String>, StoreError>;

    async fn get_entity(&self, tenant: &Tenant, id: &str) -> Result<Option<Entity>, StoreError>;

    /// Applies each modifier to its entity, all in one durable commit. Each answer is independent:
    /// a modifier that returns an error leaves its entity unchanged and does not affect the others.
    async fn modify(
        &self,
        tenant: &Tenant,
        modifications: Vec<(String, Modifier)>,
    ) -> Result<Vec<Result<Change, NgsiLdError>>, StoreError>;

    /// Entities matching `filter`, ordered by id, one page of them.
    async fn query(&self, tenant: &Tenant, filter: &EntityFilter, paging: Paging) -> Result<Page, StoreError>;

    /// Applies a temporal write in one durable commit.
    async fn temporal_write(
        &self,
        tenant: &Tenant,
        id: &str,
        write: TemporalWrite,
    ) -> Result<Result<TemporalOutcome, NgsiLdError>, StoreError>;

    /// Entities with a history matching the query, ordered by id; aggregation runs in the store.
    async fn temporal_query(&self, tenant: &Tenant, query: &TemporalQuery) -> Result<TemporalPage, StoreError>;

    async fn put_context(&self, context: StoredContext) -> Result<(), StoreError>;
    async fn get_context(&self, id: &str) -> Result<Option<StoredContext>, StoreError>;
    async fn list_contexts(&self) -> Result<Vec<StoredContext>, StoreError>;
    async fn delete_context(&self, id: &str) -> Result<bool, StoreError>;

    /// Stores a new subscription; one of the same kind with the same id in the tenant is
    /// AlreadyExists. From this commit on, changes of the tenant's entities are journaled (for an
    /// entity subscription).
    async fn create_subscription(
        &self,
        kind: SubscriptionKind,
        tenant: &Tenant,
        id: &str,
        doc: Value,
    ) -> Result<Result<(), NgsiLdError>, StoreError>;

    /// Replaces a subscription's document; false when there is none with this id.
    async fn replace_subscription(
        &self,
        kind: SubscriptionKind,
        tenant: &Tenant,
        id: &str,
        doc: Value,
    ) -> Result<bool, StoreError>;

    /// Deletes a subscription with its pending notifications; false when there is none.
    async fn delete_subscription(&self, kind: SubscriptionKind, tenant: &Tenant, id: &str) -> Result<bool, StoreError>;

    async fn get_subscription(
        &self,
        kind: SubscriptionKind,
        tenant: &Tenant,
        id: &str,
    ) -> Result<Option<StoredSubscription>, StoreError>;

    /// The subscriptions of one kind (None: of both) in one tenant (None: in every tenant),
    /// ordered by tenant and id.
    async fn list_subscriptions(
        &self,
        kind: Option<SubscriptionKind>,
        tenant: Option<&Tenant>,
    ) -> Result<Vec<StoredSubscription>, StoreError>;

    /// Journal entries after `cursor` (the notifier's, see `notifier_cursor`), oldest first.
    async fn journal_after(&self, cursor: u64, limit: usize) -> Result<Vec<JournalEntry>, StoreError>;

    /// How far the notifier has consumed the journal (moved by `commit_notifications`, only from
    /// its `expected_cursor`).
    async fn notifier_cursor(&self) -> Result<u64, StoreError>;

    /// In one durable commit: the outbox rows (capped per endpoint), the cursor (compare-and-set
    /// from `expected_cursor`; [`StoreError::Conflict`] and nothing written when it moved), and
    /// the journal up to the cursor forgotten. Answers the rows as stored, with their ids.
    async fn commit_notifications(&self, commit: NotifierCommit) -> Result<Vec<OutboxItem>, StoreError>;

    /// The endpoints with pending notifications.
    async fn outbox_endpoints(&self) -> Result<Vec<String>, StoreError>;

    /// The oldest pending notifications of one endpoint.
    async fn outbox(&self, endpoint: &str, limit: usize) -> Result<Vec<OutboxItem>, StoreError>;

    /// Records an attempt at delivering one outbox row, in its subscription's status.
    async fn record_delivery(&self, item: &OutboxItem, outcome: DeliveryOutcome, at: &str) -> Result<(), StoreError>;

    /// The events of commits from now on (see [`StoreEvent`]); replaces polling.
    fn events(&self) -> tokio::sync::broadcast::Receiver<StoreEvent>;

    /// Leases: one holder at a time per `name`, across every process on the store. Acquires the
    /// lease, or renews it when `holder` holds it already; answers true while `holder` holds
    /// it. A lease not renewed within `ttl` expires, and the next `try_lease` of another holder
    /// takes it (a killed hub's lease passes to another hub).
    async fn try_lease(&self, name: &str, holder: &str, ttl: Duration) -> Result<bool, StoreError>;

    /// Gives a lease up at once, when `holder` holds it (nothing otherwise).
    async fn release_lease(&self, name: &str, holder: &str) -> Result<(), StoreError>;

    /// Creates a record (a context source registration: see [`RecordKind`]) in one durable
    /// commit; one of the same kind and id in the tenant is AlreadyExists and nothing is written.
    async fn create_record(
        &self,
        tenant: &Tenant,
        kind: RecordKind,
        id: &str,
        doc: Value,
    ) -> Result<Result<(), NgsiLdError>, StoreError>;

    /// Replaces a record's document in one durable commit; false (nothing written) when there is
    /// none with this id.
    async fn replace_record(&self, tenant: &Tenant, kind: RecordKind, id: &str, doc: Value)
        -> Result<bool, StoreError>;

    /// Every record of a kind in a tenant, in the order they were first written.
    async fn list_records(&self, tenant: &Tenant, kind: RecordKind) -> Result<Vec<Value>, StoreError>;

    async fn delete_record(&self, tenant: &Tenant, kind: RecordKind, id: &str) -> Result<bool, StoreError>;

    /// Appends audit entries (one batch, one durable commit), shared by every process on the
    /// store.
    async fn append_audit(&self, entries: Vec<AuditEntry>) -> Result<(), StoreError>;

    /// The entries `filter` selects ([`AuditFilter::matches`]), newest first (by time, then the
    /// later appended first), `offset` skipped, at most `limit`; with the total.
    async fn read_audit(&self, filter: &AuditFilter, offset: usize, limit: usize) -> Result<AuditPage, StoreError>;

    /// Deletes the entries older than `before_micros`; answers how many went.
    async fn purge_audit(&self, before_micros: i64) -> Result<u64, StoreError>;

    /// The tenant's ledger now ([`ledger`]): its size and right edge. A backend that keeps no
    /// ledger answers `Backend`, saying so.
    async fn ledger_head(&self, tenant: &Tenant) -> Result<LedgerHead, StoreError>;

    /// The hashes of the tenant's leaves `0..to` (fewer when the log is shorter), to prove from.
    async fn ledger_hashes(&self, tenant: &Tenant, to: u64) -> Result<Vec<[u8; 32]>, StoreError>;

    /// At most `limit` leaves of the tenant from index `from`, in order, with the history rows
    /// they record as stored now.
    async fn ledger_leaves(&self, tenant: &Tenant, from: u64, limit: usize) -> Result<Vec<LedgerLeaf>, StoreError>;

    /// The indexes of the leaves that record the history instance `instance_id`, oldest first.
    async fn ledger_find(&self, tenant: &Tenant, instance_id: &str) -> Result<Vec<u64>, StoreError>;
}

/// What a record is: documents the hub keeps beside entities, in expanded, context-free form.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RecordKind {
    /// A request for access to a dataset, its decision and its grant (`cityhub-catalog`).
    AccessRequest,
    /// What a consumer took of a dataset: requests, rows and bytes downloaded
    /// (`cityhub-catalog`), apart from the request so that counting never overwrites a decision.
    AccessUsage,
    /// An API key the hub issued (its SHA-256, never the key; `cityhub-auth`), hub-wide: kept
    /// in the default tenant.
    ApiKey,
    /// A dashboard composed in the browser UI (`/cityhub/v1/dashboards`).
    Dashboard,
    /// A JSON Schema an entity type's writes are checked against (`cityhub-catalog`).
    DataModel,
    /// A published selection of the hub's data with its metadata (`cityhub-catalog`).
    Dataset,
    /// A device provisioned for ingestion (`/iot/devices`, cityhub-ingest).
    IngestDevice,
    /// A service group of devices (`/iot/services`, cityhub-ingest).
    IngestService,
    /// A signed checkpoint of the tenant's ledger (`cityhub-transparency`), one per tree size.
    LedgerCheckpoint,
    /// An access policy (`cityhub-access`), kept by the HTTP crate's policy routes.
    Policy,
    /// An open-data poller's definition (`cityhub-pollers`).
    Poller,
    /// An open-data poller's last-run status, apart from its definition so that a run never
    /// overwrites an edit.
    PollerStatus,
    /// A context source registration (`/csourceRegistrations`).
    Registration,
    /// The last checkpoint of another hub's ledger this hub co-signed as its witness, one per
    /// origin (`cityhub-transparency`), in the default tenant.
    WitnessedCheckpoint,
}

impl RecordKind {
    /// Every kind, so that a dump, a migration or an event reads each kind's name back.
    pub const ALL: [RecordKind; 14] = [
        RecordKind::AccessRequest,
        RecordKind::AccessUsage,
        RecordKind::ApiKey,
        RecordKind::Dashboard,
        RecordKind::DataModel,
        RecordKind::Dataset,
        RecordKind::IngestDevice,
        RecordKind::IngestService,
        RecordKind::LedgerCheckpoint,
        RecordKind::Policy,
        RecordKind::Poller,
        RecordKind::PollerStatus,
        RecordKind::Registration,
        RecordKind::WitnessedCheckpoint,
    ];

    pub fn name(self) -> &'static str {
        match self {
            RecordKind::AccessRequest => "accessRequest",
            RecordKind::AccessUsage => "accessUsage",
            RecordKind::ApiKey => "apiKey",
            RecordKind::Dashboard => "dashboard",
            RecordKind::DataModel => "dataModel",
            RecordKind::Dataset => "dataset",
            RecordKind::IngestDevice => "ingestDevice",
            RecordKind::IngestService => "ingestService",
            RecordKind::LedgerCheckpoint => "ledgerCheckpoint",
            RecordKind::Policy => "accessPolicy",
            RecordKind::Poller => "poller",
            RecordKind::PollerStatus => "pollerStatus",
            RecordKind::Registration => "csourceRegistration",
            RecordKind::WitnessedCheckpoint => "witnessedCheckpoint",
        }
    }

    /// What a refusal calls a record of this kind ("registration urn:x already exists").
    pub fn what(self) -> &'static str {
        match self {
            RecordKind::AccessRequest => "access request",
            RecordKind::AccessUsage => "access usage",
            RecordKind::ApiKey => "API key",
            RecordKind::Dashboard => "dashboard",
            RecordKind::DataModel => "data model",
            RecordKind::Dataset => "dataset",
            RecordKind::IngestDevice => "device",
            RecordKind::IngestService => "service group",
            RecordKind::LedgerCheckpoint => "ledger checkpoint",
            RecordKind::Policy => "policy",
            RecordKind::Poller => "poller",
            RecordKind::PollerStatus => "poller status",
            RecordKind::Registration => "registration",
            RecordKind::WitnessedCheckpoint => "witnessed checkpoint",
        }
    }

    /// The kind a name stands for.
    pub fn parse(name: &str) -> Option<RecordKind> {
        RecordKind::ALL.into_iter().find(|k| k.name() == name)
    }
}

pub type DynStore = Arc<dyn Store>;

/// One modification on its own: the common case for single-entity requests.
pub async fn modify_one(
    store: &dyn Store,
    tenant: &Tenant,
    id: &str,
    modifier: Modifier,
) -> Result<Change, NgsiLdError> {
    let mut results = store.modify(tenant, vec![(id.to_owned(), modifier)]).await?;
    results.pop().unwrap_or_else(|| Err(NgsiLdError::internal("the store answered no result")))
}

#[cfg(test)]
mod heard_tests {
    use super::*;
    use tokio::sync::broadcast::error::RecvError;

    #[test]
    fn a_lag_and_a_missed_event_are_both_missed_and_nothing_else_is() {
        assert_eq!(heard(Ok(StoreEvent::Missed)), Heard::Missed);
        assert_eq!(heard(Err(RecvError::Lagged(3))), Heard::Missed);
        assert_eq!(heard(Err(RecvError::Closed)), Heard::Closed);
        assert_eq!(heard(Ok(StoreEvent::Journal)), Heard::Event(StoreEvent::Journal));
        let tenant = StoreEvent::Tenant { tenant: "t".into() };
        assert_eq!(heard(Ok(tenant.clone())), Heard::Event(tenant));
    }
}
