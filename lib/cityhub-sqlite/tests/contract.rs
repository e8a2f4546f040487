//! The backend contract suite (`cityhub-store-contract`) on the embedded SQLite store.

use std::sync::Arc;

use cityhub_sqlite::SqliteStore;
use cityhub_store_contract::Fixture;

async fn fresh() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(SqliteStore::open(dir.path()).unwrap());
    Fixture::new(store, dir)
}

cityhub_store_contract::contract_suite!(fresh);
