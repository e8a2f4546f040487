//! The audit log (`audit_log`, migration 0003): appended in batches by every hub, read newest
//! first with the filter of `AuditFilter::matches`, purged by age.

use cityhub_storage::{AuditEntry, AuditFilter, AuditOutcome, AuditPage, StoreError};

use crate::{OrBackend, PostgresStore};

pub(crate) async fn append(store: &PostgresStore, entries: &[AuditEntry]) -> Result<(), StoreError> {
    if entries.is_empty() {
        return Ok(());
    }
    let mut client = store.client().await?;
    let tx = client.transaction().await.or_backend()?;
    let stmt = tx
        .prepare(
            "INSERT INTO audit_log (at, tenant, subject, via, client, method, route, target, status, error)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
        )
        .await
        .or_backend()?;
    for e in entries {
        let status = i32::from(e.status);
        tx.execute(
            &stmt,
            &[
                &e.at_micros,
                &e.tenant,
                &e.subject,
                &e.via,
                &e.client,
                &e.method,
                &e.route,
                &e.target,
                &status,
                &e.error,
            ],
        )
        .await
        .or_backend()?;
    }
    tx.commit().await.or_backend()
}

/// The filter as SQL: every optional condition is `($n IS NULL OR ...)`.
const WHERE: &str = "($1::text IS NULL OR tenant = $1)
    AND ($2::text IS NULL OR subject = $2)
    AND ($3::text IS NULL OR method = $3 OR route = $3 OR method || ' ' || route = $3)
    AND status BETWEEN $4 AND $5
    AND ($6::bigint IS NULL OR at >= $6)
    AND ($7::bigint IS NULL OR at < $7)";

pub(crate) async fn read(
    store: &PostgresStore,
    filter: &AuditFilter,
    offset: usize,
    limit: usize,
) -> Result<AuditPage, StoreError> {
    let client = store.client().await?;
    let (low, high) = filter.outcome.map(AuditOutcome::statuses).unwrap_or((0, u16::MAX));
    let (low, high) = (i32::from(low), i32::from(high));
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    let offset = i64::try_from(offset).unwrap_or(i64::MAX);
    let total: i64 = client
        .query_one(
            &format!("SELECT count(*) FROM audit_log WHERE {WHERE}"),
            &[
                &filter.tenant,
                &filter.subject,
                &filter.operation,
                &low,
                &high,
                &filter.since_micros,
                &filter.until_micros,
            ],
        )
        .await
        .or_backend()?
        .get(0);
    let rows = client
        .query(
            &format!(
                "SELECT at, tenant, subject, via, client, method, route, target, status, error FROM audit_log
                 WHERE {WHERE} ORDER BY at DESC, seq DESC LIMIT $8 OFFSET $9"
            ),
            &[
                &filter.tenant,
                &filter.subject,
                &filter.operation,
                &low,
                &high,
                &filter.since_micros,
                &filter.until_micros,
                &limit,
                &offset,
            ],
        )
        .await
        .or_backend()?;
    let entries = rows
        .iter()
        .map(|r| {
            Ok(AuditEntry {
                at_micros: r.try_get(0).or_backend()?,
                tenant: r.try_get(1).or_backend()?,
                subject: r.try_get(2).or_backend()?,
                via: r.try_get(3).or_backend()?,
                client: r.try_get(4).or_backend()?,
                method: r.try_get(5).or_backend()?,
                route: r.try_get(6).or_backend()?,
                target: r.try_get(7).or_backend()?,
                status: u16::try_from(r.try_get::<_, i32>(8).or_backend()?).unwrap_or(0),
                error: r.try_get(9).or_backend()?,
            })
        })
        .collect::<Result<Vec<_>, StoreError>>()?;
    Ok(AuditPage { entries, total: usize::try_from(total).unwrap_or(0) })
}

pub(crate) async fn purge(store: &PostgresStore, before_micros: i64) -> Result<u64, StoreError> {
    let client = store.client().await?;
    client.execute("DELETE FROM audit_log WHERE at < $1", &[&before_micros]).await.or_backend()
}
