//! The figures `/metrics` shows of a PostgreSQL store (`PostgresStore::stats`), read every so
//! often by the binary, never per scrape: the database's size (`pg_database_size`), entities per
//! tenant (a count over the primary key), and the history instances as PostgreSQL's statistics
//! estimate them (`n_live_tup` of `attr_history`'s partitions: counting them exactly would read
//! the whole history).

use cityhub_metrics::StoreStats;
use cityhub_storage::StoreError;

use crate::{OrBackend, PostgresStore};

pub(crate) async fn read(store: &PostgresStore) -> Result<StoreStats, StoreError> {
    let client = store.client().await?;
    let bytes: i64 = client.query_one("SELECT pg_database_size(current_database())", &[]).await.or_backend()?.get(0);
    let pairs = |rows: Vec<tokio_postgres::Row>| -> Vec<(String, u64)> {
        rows.iter().map(|r| (r.get::<_, String>(0), r.get::<_, i64>(1).max(0) as u64)).collect()
    };
    let entities =
        pairs(client.query("SELECT tenant, count(*) FROM entities GROUP BY tenant", &[]).await.or_backend()?);
    let outbox =
        pairs(client.query("SELECT endpoint, count(*) FROM outbox GROUP BY endpoint", &[]).await.or_backend()?);
    let history: i64 = client
        .query_one(
            "SELECT coalesce(sum(n_live_tup), 0)::bigint FROM pg_stat_user_tables WHERE relname LIKE 'attr\\_history%'",
            &[],
        )
        .await
        .or_backend()?
        .get(0);
    Ok(StoreStats { bytes: bytes.max(0) as u64, entities, history_instances: history.max(0) as u64, outbox })
}
