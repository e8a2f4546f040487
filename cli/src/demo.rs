//! Demo city data: a few districts, air-quality stations and parking spots in Seoul, Busan,
//! Ho Chi Minh City and Shenzhen, shaped like the FIWARE Smart Data Models, so a newcomer sees
//! data at once.

pub mod live;

use cityhub_storage::{Modified, Modifier, Store, DEFAULT_TENANT};
use ngsild_core::expand::expand_entity;
use ngsild_core::ops::stamp_new_entity;
use ngsild_core::time::now;
use ngsild_jsonld::core_context;
use serde_json::Value;

const CITY_DATA: &str = include_str!("../demo/city-data.json");

/// Loads the demo entities that are not there yet; answers how many were added.
pub async fn load(store: &dyn Store) -> anyhow::Result<usize> {
    let items: Vec<Value> = serde_json::from_str(CITY_DATA)?;
    let ctx = core_context();
    let mut modifications: Vec<(String, Modifier)> = Vec::new();
    for item in &items {
        let map = item.as_object().ok_or_else(|| anyhow::anyhow!("demo item is not an object"))?;
        let (mut entity, _) = expand_entity(map, &ctx).map_err(|e| anyhow::anyhow!("demo entity is invalid: {e}"))?;
        let id = entity.id.clone();
        modifications.push((
            id,
            Box::new(move |current| {
                if current.is_some() {
                    return Ok(Modified::from(current));
                }
                stamp_new_entity(&mut entity, &now());
                Ok(Modified::entity(entity))
            }),
        ));
    }
    let results = store.modify(DEFAULT_TENANT, modifications).await?;
    Ok(results.iter().filter(|r| r.as_ref().is_ok_and(|c| c.before.is_none())).count())
}
