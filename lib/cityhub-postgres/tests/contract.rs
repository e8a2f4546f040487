//! The backend contract suite (`cityhub-store-contract`) on PostgreSQL: each case on a fresh
//! database of the test process's throwaway cluster (`cityhub-pgtest`, or `CITYHUB_TEST_PG`),
//! with a twin handle on the same database standing for a second hub.

use std::sync::Arc;

use cityhub_postgres::PostgresStore;
use cityhub_store_contract::{DynStore, Fixture};

async fn fresh() -> Fixture {
    let url = cityhub_pgtest::database();
    let store = Arc::new(PostgresStore::connect_with(&url, 4).await.unwrap());
    let twin_url = url.clone();
    Fixture::new(store, url).with_twin(Box::new(move || {
        let url = twin_url.clone();
        Box::pin(async move { Arc::new(PostgresStore::connect_with(&url, 4).await.unwrap()) as DynStore })
    }))
}

cityhub_store_contract::contract_suite!(fresh);
