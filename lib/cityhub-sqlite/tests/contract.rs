//! The backend contract suite (`cityhub-store-contract`) on the embedded SQLite store.

use std::sync::Arc;

use cityhub_sqlite::SqliteStore;
use cityhub_store_contract::{DynStore, Fixture};

async fn fresh() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_path_buf();
    let store = Arc::new(SqliteStore::open(&path).unwrap());
    Fixture::new(store, dir).with_reopen(Box::new(move || {
        let path = path.clone();
        Box::pin(async move { Arc::new(SqliteStore::open(&path).unwrap()) as DynStore })
    }))
}

cityhub_store_contract::contract_suite!(fresh);
