//! Retention of datasets' history: on a schedule, the instances of each dataset's entities
//! observed longer ago than its rule's `maxAge` are deleted, or downsampled (the first of each
//! `period` kept per attribute and datasetId, the rest deleted). Instances go one by one through
//! `Store::temporal_write` (`DeleteInstance`), as the temporal API deletes them.
//!
//! Of the hubs on one store only the holder of the lease `retention` runs it. One run reads at
//! most [`INSTANCES_PER_RUN`] instances per attribute and entity; what is left goes at the next.

use std::time::Duration;

use cityhub_storage::{DynStore, Paging, RecordKind, TemporalQuery, TemporalWrite, TimeProperty, TimeRel};
use ngsild_core::temporal::Instance;
use ngsild_core::NgsiLdError;

use crate::dataset::{Dataset, RetentionAction};

pub const LEASE: &str = "retention";
/// Instances of one attribute read per entity and run.
pub const INSTANCES_PER_RUN: usize = 10_000;
const ENTITY_PAGE: usize = 100;

/// Which of one series' old instances (in time order) go: all of them, or all but the first of
/// each `period` seconds (periods counted from the Unix epoch).
pub fn doomed(instances: &[Instance], action: RetentionAction, period: Option<f64>) -> Vec<String> {
    match (action, period) {
        (RetentionAction::Delete, _) | (RetentionAction::Downsample, None) => {
            instances.iter().map(|i| i.instance_id.clone()).collect()
        }
        (RetentionAction::Downsample, Some(period)) => {
            let period_us = (period * 1e6).max(1.0) as i64;
            let mut kept: Vec<(Option<String>, i64)> = Vec::new();
            let mut out = Vec::new();
            for i in instances {
                let at = i.attribute.observed_at.as_deref().and_then(ngsild_core::time::parse_datetime);
                let Some(at) = at else { continue };
                let slot = at.timestamp_micros().div_euclid(period_us);
                let key = (i.attribute.dataset_id.clone(), slot);
                if kept.contains(&key) {
                    out.push(i.instance_id.clone());
                } else {
                    kept.push(key);
                }
            }
            out
        }
    }
}

/// Runs every dataset's rule once, in every tenant; answers how many instances went.
pub async fn run_once(store: &DynStore) -> Result<usize, NgsiLdError> {
    let mut tenants = vec![String::new()];
    tenants.extend(store.tenants().await?.into_iter().filter(|t| !t.is_empty()));
    let mut removed = 0;
    for tenant in tenants {
        for doc in store.list_records(&tenant, RecordKind::Dataset).await? {
            let Ok(dataset) = serde_json::from_value::<Dataset>(doc) else { continue };
            if dataset.retention.is_some() {
                removed += apply(store, &tenant, &dataset).await?;
            }
        }
    }
    Ok(removed)
}

async fn apply(store: &DynStore, tenant: &str, dataset: &Dataset) -> Result<usize, NgsiLdError> {
    let Some(rule) = &dataset.retention else { return Ok(0) };
    let (max_age, period) = rule.durations()?;
    let cutoff = chrono::Utc::now() - chrono::Duration::microseconds((max_age * 1e6) as i64);
    let cutoff = ngsild_core::time::format_time(cutoff);
    let ctx = ngsild_jsonld::core_context();
    let attrs = dataset
        .selection
        .attrs
        .iter()
        .map(|a| ngsild_core::expand::expand_attribute_name(a, &ctx))
        .collect::<Result<Vec<_>, _>>()?;
    let filter = dataset.filter()?;
    let mut removed = 0;
    let mut offset = 0;
    // Bounded by the number of entities: each round moves past one page of them.
    loop {
        let query = TemporalQuery {
            filter: filter.clone(),
            attrs: attrs.clone(),
            timerel: Some(TimeRel::Before(cutoff.clone())),
            time_property: TimeProperty::ObservedAt,
            per_attribute: INSTANCES_PER_RUN,
            paging: Paging { offset, limit: ENTITY_PAGE, count: false },
            ..TemporalQuery::default()
        };
        let page = store.temporal_query(tenant, &query).await?;
        let n = page.entities.len();
        for entity in page.entities {
            for (attr, instances) in &entity.attrs {
                for instance_id in doomed(instances, rule.action, period) {
                    let write = TemporalWrite::DeleteInstance { attr: attr.clone(), instance_id };
                    if store.temporal_write(tenant, &entity.id, write).await?.is_ok() {
                        removed += 1;
                    }
                }
            }
        }
        if n < ENTITY_PAGE {
            break;
        }
        offset += n;
    }
    if removed > 0 {
        tracing::info!(dataset = %dataset.name, tenant, removed, "retention removed old history instances");
    }
    Ok(removed)
}

/// Runs the rules every `every`, while this hub holds the lease.
pub fn spawn(store: DynStore, every: Duration) {
    let holder = format!("retention-{}", uuid_like());
    let ttl = (every * 3).max(Duration::from_secs(10));
    tokio::spawn(async move {
        let mut ticks = tokio::time::interval(every);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticks.tick().await;
            match store.try_lease(LEASE, &holder, ttl).await {
                Ok(true) => {
                    if let Err(e) = run_once(&store).await {
                        tracing::error!(error = %e.detail, "the retention run failed");
                    }
                }
                Ok(false) => {}
                Err(e) => tracing::error!(error = %e, "the retention lease could not be read"),
            }
        }
    });
}

/// A holder name unique to this process and start.
fn uuid_like() -> String {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
    format!("{}-{nanos:x}", std::process::id())
}

#[cfg(test)]
mod tests {
    use super::*;
    use ngsild_core::model::{Attribute, AttributeKind};

    fn at(id: &str, t: &str) -> Instance {
        let mut attribute = Attribute::new(AttributeKind::Property, serde_json::json!(1));
        attribute.observed_at = Some(t.to_owned());
        Instance { attribute, instance_id: id.to_owned(), deleted_at: None }
    }

    #[test]
    fn downsampling_keeps_the_first_of_each_period() {
        let series = [
            at("a", "2020-01-01T00:00:00Z"),
            at("b", "2020-01-01T00:30:00Z"),
            at("c", "2020-01-01T01:10:00Z"),
            at("d", "2020-01-01T01:50:00Z"),
        ];
        assert_eq!(doomed(&series, RetentionAction::Downsample, Some(3600.0)), vec!["b", "d"]);
        assert_eq!(doomed(&series, RetentionAction::Delete, None).len(), 4);
    }
}
