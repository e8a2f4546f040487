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
//!     let path = dir.path().to_path_buf();
//!     cityhub_store_contract::Fixture::new(store, dir).with_reopen(Box::new(move || {
//!         let path = path.clone();
//!         Box::pin(async move { std::sync::Arc::new(SqliteStore::open(&path).unwrap()) as DynStore })
//!     }))
//! }
//! cityhub_store_contract::contract_suite!(fresh);
//! ```
//!
//! (`with_reopen` tells how to open the store again after every handle was dropped: the
//! durability case restarts the store; a factory with neither it nor a twin fails that case.)
//!
//! A store that several hub processes share also hands out a twin, another handle on the same
//! database, so that events, leases and the cursor are checked across processes:
//!
//! ```ignore
//! fn opener(url: String) -> cityhub_store_contract::Twin {
//!     Box::new(move || {
//!         let url = url.clone();
//!         Box::pin(async move {
//!             std::sync::Arc::new(PostgresStore::connect(&url).await.unwrap()) as cityhub_store_contract::DynStore
//!         })
//!     })
//! }
//! async fn fresh() -> cityhub_store_contract::Fixture {
//!     let url = cityhub_pgtest::database();
//!     let store = std::sync::Arc::new(PostgresStore::connect(&url).await.unwrap());
//!     cityhub_store_contract::Fixture::new(store, ()).with_twin(opener(url)) // the twin also reopens
//! }
//! ```
//!
//! The cases: every trait operation (entities, modify with several modifiers and independent
//! failures, one call changing the same entities many times equal to separate calls, query paging and counts, temporal writes and queries with aggregation, history of
//! modifications, contexts, subscriptions, journal, outbox, delivery status, records
//! create-if-absent/replace/delete, the audit log (filters, paging, order, purge), tenants, modifier reports, events, leases, the cursor);
//! concurrent writers on one entity (no lost update); journal and outbox under concurrency; and
//! [`oracle`]: over seeded random entities and filters, `Store::query` must answer exactly what
//! `EntityFilter::matches` says over all entities, as ids, in order, with counts. The cases of
//! several processes on one store (events, leases, the compare-and-set notifier cursor, record
//! creation races) run across two handles when the fixture has a [`Fixture::with_twin`], and on
//! one handle otherwise (SQLite serves one process).
//!
//! Sizes are bounded for a debug build on 2 cores. The cases panic (they are tests).

pub mod cases;
pub mod ledger;
pub mod oracle;
pub mod support;

use std::future::Future;
use std::pin::Pin;

pub use cityhub_storage::{DynStore, Store};

/// Opens another handle on the same store, as another hub process would.
pub type Twin = Box<dyn Fn() -> Pin<Box<dyn Future<Output = DynStore> + Send>> + Send + Sync>;

/// A fresh, empty store and whatever must live as long as it (a temp dir, a database guard).
pub struct Fixture {
    pub store: DynStore,
    twin: Option<Twin>,
    reopen: Option<Twin>,
    _keep: Box<dyn std::any::Any + Send + Sync>,
}

impl Fixture {
    pub fn new(store: DynStore, keep: impl std::any::Any + Send + Sync) -> Fixture {
        Fixture { store, twin: None, reopen: None, _keep: Box::new(keep) }
    }

    /// How to open the same store again after every handle on it was dropped (a restarted hub):
    /// the durability case needs it.
    pub fn with_reopen(mut self, reopen: Twin) -> Fixture {
        self.reopen = Some(reopen);
        self
    }

    /// Drops every handle on the store and opens it again, as a restarted hub would.
    pub async fn restart(self) -> (DynStore, Box<dyn std::any::Any + Send + Sync>) {
        let Fixture { store, twin, reopen, _keep } = self;
        // A twin opens the same store anew: it does for a restart too.
        let reopen =
            reopen.or(twin).expect("this case needs Fixture::with_reopen (or with_twin): how to open the store again");
        drop(store);
        (reopen().await, _keep)
    }

    /// For a store that several processes share (PostgreSQL): `twin` opens another handle on
    /// it, and the cross-process cases (events, leases, the cursor, record creation) run across
    /// both handles.
    pub fn with_twin(mut self, twin: Twin) -> Fixture {
        self.twin = Some(twin);
        self
    }

    /// The handles the cross-process cases use: the store, and its twin when there is one.
    pub async fn handles(&self) -> Vec<DynStore> {
        let mut handles = vec![self.store.clone()];
        if let Some(twin) = &self.twin {
            handles.push(twin().await);
        }
        handles
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
            one_call_equals_separate_calls,
            modifier_reports_come_back,
            query_pages_and_counts,
            temporal_instances_round_trip,
            temporal_query_selects_and_pages,
            temporal_aggregation_per_period,
            modifications_record_history,
            contexts_round_trip,
            subscriptions_round_trip,
            journal_outbox_and_delivery_status,
            outbox_is_capped_per_endpoint,
            records_round_trip,
            audit_log_reads_as_its_filter_defines,
            concurrent_writers_lose_no_update,
            journal_under_concurrency,
            outbox_under_concurrency,
            query_equals_definition,
        );
        $crate::contract_suite!(@owned $factory; acknowledged_writes_survive_a_restart);
        $crate::contract_suite!(@ledger $factory; ledger_leaf_per_history_row, ledger_records_temporal_writes);
        $crate::contract_suite!(@shared $factory;
            audit_log_is_one_log_for_every_handle,
            records_create_if_absent_under_concurrency,
            events_follow_commits,
            leases_hold_expire_and_pass,
            notifier_cursor_is_compare_and_set,
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
    (@ledger $factory:path; $($case:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() {
                let fixture: $crate::Fixture = $factory().await;
                $crate::ledger::$case(fixture.store.clone()).await;
                drop(fixture);
            }
        )*
    };
    (@owned $factory:path; $($case:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() {
                let fixture: $crate::Fixture = $factory().await;
                $crate::cases::$case(fixture).await;
            }
        )*
    };
    (@shared $factory:path; $($case:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() {
                let fixture: $crate::Fixture = $factory().await;
                $crate::cases::$case(&fixture).await;
                drop(fixture);
            }
        )*
    };
}
