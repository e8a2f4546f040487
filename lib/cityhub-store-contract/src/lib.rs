//! The contract suite every cityhub storage backend runs (issue 15): the same cases,
//! parametrised by backend, so that SQLite and PostgreSQL answer every [`Store`] operation alike.
//!
//! Each case is a public async function in [`cases`] over a fresh, empty store. A backend's test
//! file supplies a factory and expands [`contract_suite!`] into one `#[tokio::test]` per case:
//!
//! ```ignore
//! async fn fresh() -> cityhub_store_contract::Fixture {
//!     let dir = tempfile::tempdir().unwrap();
//!     let store = std::sync::Arc::new(cityhub_sqlite::SqliteStore::open(dir.path()).unwrap());
//!     cityhub_store_contract::Fixture::new(store, dir)
//! }
//! cityhub_store_contract::contract_suite!(fresh);
//! ```
//!
//! The cases: every trait operation (entities, modify with several modifiers and independent
//! failures, query paging and counts, temporal writes and queries with aggregation, history of
//! modifications, contexts, subscriptions, journal, outbox, delivery status, records, tenants);
//! concurrent writers on one entity (no lost update); journal and outbox under concurrency; and
//! [`oracle`]: over seeded random entities and filters, `Store::query` must answer exactly what
//! `EntityFilter::matches` says over all entities, as ids, in order, with counts.
//!
//! Sizes are bounded for a debug build on 2 cores. The cases panic (they are tests).

pub mod cases;
pub mod oracle;
pub mod support;

pub use cityhub_storage::{DynStore, Store};

/// A fresh, empty store and whatever must live as long as it (a temp dir, a database guard).
pub struct Fixture {
    pub store: DynStore,
    _keep: Box<dyn std::any::Any + Send + Sync>,
}

impl Fixture {
    pub fn new(store: DynStore, keep: impl std::any::Any + Send + Sync) -> Fixture {
        Fixture { store, _keep: Box::new(keep) }
    }
}

/// Expands to one `#[tokio::test]` per contract case, each on a fresh store from `$factory` (an
/// `async fn() -> Fixture` in scope).
#[macro_export]
macro_rules! contract_suite {
    ($factory:path) => {
        $crate::contract_suite!(@each $factory;
            entities_round_trip,
            tenants_come_into_being_with_their_first_write,
            modify_answers_each_modifier_independently,
            query_pages_and_counts,
            temporal_instances_round_trip,
            temporal_aggregation_per_period,
            modifications_record_history,
            contexts_round_trip,
            subscriptions_round_trip,
            journal_outbox_and_delivery_status,
            outbox_is_capped_per_endpoint,
            records_round_trip,
            concurrent_writers_lose_no_update,
            journal_under_concurrency,
            outbox_under_concurrency,
            query_equals_definition,
        );
    };
    (@each $factory:path; $($case:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() {
                let fixture: $crate::Fixture = $factory().await;
                $crate::cases::$case(fixture.store.clone()).await;
                drop(fixture);
            }
        )*
    };
}
