//! A backend-neutral copy of a whole store, for `cityhub migrate` (one backend to another).
//!
//! A store is read section by section ([`Section`]), each in a fixed order every backend keeps
//! (so two stores holding the same data export the same items in the same order, and a copy can
//! be checked item by item), one page at a time from an opaque resume token. What is exported is
//! what the store holds, in its stored (expanded, context-free) form: nothing is rendered or
//! recomputed, instance ids and delivery statuses included.
//!
//! [`Dump::import`] writes items into a store in one durable commit per call; it is meant for an
//! empty store and writes the sections in [`Section::ALL`] order (tenants first). Identifiers a
//! store assigns itself — outbox row ids, journal sequence numbers — are assigned anew, in the
//! exported order.

use async_trait::async_trait;
use ngsild_core::temporal::TemporalEntity;
use ngsild_core::Entity;
use serde_json::Value;

use crate::{JournalEntry, OutboxItem, RecordKind, StoreError, StoredContext, StoredSubscription};

/// The parts of a store, in the order a copy writes them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Section {
    /// Tenants other than the default one, by name.
    Tenants,
    /// Hosted and cached @contexts, by id.
    Contexts,
    /// The current state of entities, by tenant then id (byte-wise).
    Entities,
    /// The history of entities, one item per entity with every instance of every attribute,
    /// by tenant then id.
    History,
    /// Subscriptions of both kinds with their delivery status, by tenant, kind, id.
    Subscriptions,
    /// Records (context source registrations), by tenant, kind, then the order first written.
    Records,
    /// Pending notifications, in delivery order (outbox id).
    Outbox,
    /// Journal entries the notifier has not consumed yet, oldest first.
    Journal,
}

impl Section {
    pub const ALL: [Section; 8] = [
        Section::Tenants,
        Section::Contexts,
        Section::Entities,
        Section::History,
        Section::Subscriptions,
        Section::Records,
        Section::Outbox,
        Section::Journal,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Section::Tenants => "tenants",
            Section::Contexts => "contexts",
            Section::Entities => "entities",
            Section::History => "history",
            Section::Subscriptions => "subscriptions",
            Section::Records => "records",
            Section::Outbox => "outbox",
            Section::Journal => "journal",
        }
    }
}

/// One exported item.
#[derive(Debug, Clone, PartialEq)]
pub enum Dumped {
    Tenant(String),
    Context(StoredContext),
    Entity {
        tenant: String,
        entity: Entity,
    },
    /// An entity's history: its temporal head (types, scope, times) and every recorded instance
    /// (with its instance id and deletion time) per attribute, oldest first; `aggregates` empty.
    History {
        tenant: String,
        history: TemporalEntity,
    },
    Subscription(StoredSubscription),
    Record {
        tenant: String,
        kind: RecordKind,
        id: String,
        doc: Value,
    },
    /// `id` is the source's; the importing store assigns its own, in order.
    Outbox(OutboxItem),
    /// `seq` is the source's; the importing store assigns its own, in order.
    Journal(JournalEntry),
}

impl Dumped {
    pub fn section(&self) -> Section {
        match self {
            Dumped::Tenant(_) => Section::Tenants,
            Dumped::Context(_) => Section::Contexts,
            Dumped::Entity { .. } => Section::Entities,
            Dumped::History { .. } => Section::History,
            Dumped::Subscription(_) => Section::Subscriptions,
            Dumped::Record { .. } => Section::Records,
            Dumped::Outbox(_) => Section::Outbox,
            Dumped::Journal(_) => Section::Journal,
        }
    }

    /// The item as a copy must hold it: identifiers the store assigns itself (outbox ids,
    /// journal sequence numbers) zeroed, so that a source item and its copy compare equal.
    pub fn comparable(&self) -> Dumped {
        match self {
            Dumped::Outbox(item) => Dumped::Outbox(OutboxItem { id: 0, ..item.clone() }),
            Dumped::Journal(entry) => Dumped::Journal(JournalEntry { seq: 0, ..entry.clone() }),
            other => other.clone(),
        }
    }
}

/// One page of a section; `next` resumes after its last item (None: the section is done).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DumpPage {
    pub items: Vec<Dumped>,
    pub next: Option<String>,
}

/// Export and import of a whole store (see the module doc).
#[async_trait]
pub trait Dump: Send + Sync {
    /// How many items the section holds now.
    async fn dump_count(&self, section: Section) -> Result<u64, StoreError>;

    /// At most `limit` items of a section, after `after` (a previous page's `next`; None: from
    /// the start), in the section's order.
    async fn export(&self, section: Section, after: Option<String>, limit: usize) -> Result<DumpPage, StoreError>;

    /// Writes the items in one durable commit: tenants, contexts, entities (their indexes too),
    /// histories, subscriptions with their status, records, outbox rows and journal entries as
    /// exported. An item whose key the store already holds is replaced (tenants: kept).
    async fn import(&self, items: Vec<Dumped>) -> Result<(), StoreError>;
}
