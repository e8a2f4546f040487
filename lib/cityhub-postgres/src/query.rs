//! Queries over the current state of entities.

use cityhub_storage::{EntityFilter, Page, Paging, StoreError};
use ngsild_core::Entity;
use tokio_postgres::types::Json;

use crate::{OrBackend, PostgresStore};

/// Entities matching `filter`, ordered by id (or by its `orderBy`), one page of them.
pub(crate) async fn query(
    store: &PostgresStore,
    tenant: &str,
    filter: &EntityFilter,
    paging: Paging,
) -> Result<Page, StoreError> {
    let client = store.client().await?;
    let rows = client.query("SELECT doc FROM entities WHERE tenant = $1 ORDER BY id", &[&tenant]).await.or_backend()?;
    let candidates = rows.into_iter().map(|r| r.get::<_, Json<Entity>>(0).0);
    Ok(judge(filter, paging, candidates))
}

/// The page of `candidates` (in id order) that `filter` matches: the filter is the definition.
pub(crate) fn judge(filter: &EntityFilter, paging: Paging, candidates: impl Iterator<Item = Entity>) -> Page {
    let mut matched = 0usize;
    if let Some(order) = filter.order.as_ref().filter(|o| !o.is_by_id()) {
        let mut first = ngsild_query::order::FirstInOrder::new(order, paging.offset.saturating_add(paging.limit));
        for entity in candidates.filter(|e| filter.matches(e)) {
            matched += 1;
            first.push(order.key(&entity), entity);
        }
        let entities = first.finish().into_iter().skip(paging.offset).collect();
        return Page { entities, total: paging.count.then_some(matched) };
    }
    let mut page = Page::default();
    for entity in candidates {
        if !filter.matches(&entity) {
            continue;
        }
        if matched >= paging.offset && page.entities.len() < paging.limit {
            page.entities.push(entity);
        }
        matched += 1;
        if !paging.count && page.entities.len() >= paging.limit {
            break;
        }
    }
    if paging.count {
        page.total = Some(matched);
    }
    page
}
