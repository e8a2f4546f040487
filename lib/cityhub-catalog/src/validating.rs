//! Data models enforced: [`ValidatingStore`] wraps the hub's store, and every write of an
//! entity whose type has a registered data model is checked there.
//!
//! This is the one place every write passes: the NGSI-LD API (create, replace, update, append,
//! merge, the batch operations, upsert), the temporal API and the demo loader all hand their
//! change to `Store::modify` or `Store::temporal_write`. `modify` wraps each modifier so the
//! entity it *results in* is checked before the backend commits it; a refused entity is that
//! modifier's error (`BadRequestData`), so nothing of it is stored and, in a batch, the other
//! entities go on (the backend contract: one modifier's error does not touch the others).
//! Temporal instances are checked as the part of an entity they are (`model::Checker`, partial).
//!
//! The compiled models of a tenant are cached and dropped on `StoreEvent::Records` of kind
//! `dataModel` (from any hub on the store), all of them after missed events.

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use cityhub_storage::{
    Change, DynStore, Layer, Modifier, RecordKind, StoreError, StoreEvent, TemporalOutcome, TemporalWrite, Tenant,
};
use ngsild_core::{Entity, NgsiLdError};
use parking_lot::RwLock;
use serde_json::Value;

use crate::model::{Checker, DataModel};

/// The compiled data models of one tenant, by type IRI.
pub type TenantModels = HashMap<String, Arc<Checker>>;

/// The hub's store with data models enforced on every write.
pub struct ValidatingStore {
    inner: DynStore,
    cache: Arc<RwLock<HashMap<String, Arc<TenantModels>>>>,
}

impl ValidatingStore {
    /// Wraps `inner`; must be called inside a tokio runtime (it follows the store's events).
    pub fn wrap(inner: DynStore) -> Arc<ValidatingStore> {
        let store = Arc::new(ValidatingStore { inner: inner.clone(), cache: Arc::default() });
        tokio::spawn(follow(Arc::downgrade(&store.cache), inner.events()));
        store
    }

    /// Forgets the models of `tenant` (after this hub changed them).
    pub fn forget(&self, tenant: &str) {
        self.cache.write().remove(tenant);
    }

    /// The compiled models of a tenant, read from its records on first use.
    pub async fn models(&self, tenant: &Tenant) -> Result<Arc<TenantModels>, StoreError> {
        if let Some(models) = self.cache.read().get(tenant) {
            return Ok(models.clone());
        }
        let mut models = TenantModels::new();
        for doc in self.inner.list_records(tenant, RecordKind::DataModel).await? {
            let model: DataModel = serde_json::from_value(doc)
                .map_err(|e| StoreError::Backend(format!("a stored data model does not read back: {e}")))?;
            let checker = model.compile().map_err(|e| {
                StoreError::Backend(format!(
                    "the stored data model of {} does not compile: {}",
                    model.entity_type, e.detail
                ))
            })?;
            models.insert(model.type_iri.clone(), Arc::new(checker));
        }
        let models = Arc::new(models);
        self.cache.write().insert(tenant.to_owned(), models.clone());
        Ok(models)
    }
}

async fn follow(
    cache: std::sync::Weak<RwLock<HashMap<String, Arc<TenantModels>>>>,
    mut events: tokio::sync::broadcast::Receiver<StoreEvent>,
) {
    use cityhub_storage::Heard;
    loop {
        let event = cityhub_storage::heard(events.recv().await);
        let Some(cache) = cache.upgrade() else { return };
        match event {
            Heard::Event(StoreEvent::Records { tenant, kind: RecordKind::DataModel }) => {
                cache.write().remove(&tenant);
            }
            Heard::Event(_) => {}
            Heard::Missed => cache.write().clear(),
            Heard::Closed => return,
        }
    }
}

/// Checks `entity` against the model of any of its types.
pub fn check(models: &TenantModels, entity: &Entity, partial: bool) -> Result<(), NgsiLdError> {
    let ctx = ngsild_jsonld::core_context();
    for t in &entity.types {
        if let Some(checker) = models.get(t) {
            checker.check(entity, &ctx, partial)?;
        }
    }
    Ok(())
}

#[async_trait]
impl Layer for ValidatingStore {
    fn inner(&self) -> &DynStore {
        &self.inner
    }

    async fn modify(
        &self,
        tenant: &Tenant,
        modifications: Vec<(String, Modifier)>,
    ) -> Result<Vec<Result<Change, NgsiLdError>>, StoreError> {
        let models = self.models(tenant).await?;
        if models.is_empty() {
            return self.inner.modify(tenant, modifications).await;
        }
        let checked = modifications
            .into_iter()
            .map(|(id, modifier)| {
                let models = models.clone();
                let checked: Modifier = Box::new(move |current| {
                    let modified = modifier(current)?;
                    if let Some(next) = &modified.next {
                        check(&models, next, false)?;
                    }
                    Ok(modified)
                });
                (id, checked)
            })
            .collect();
        self.inner.modify(tenant, checked).await
    }

    async fn temporal_write(
        &self,
        tenant: &Tenant,
        id: &str,
        write: TemporalWrite,
    ) -> Result<Result<TemporalOutcome, NgsiLdError>, StoreError> {
        let models = self.models(tenant).await?;
        if !models.is_empty() {
            let part = match &write {
                TemporalWrite::AddInstances { entity, .. } if entity.types.is_empty() => self
                    .inner
                    .get_entity(tenant, id)
                    .await?
                    .map(|current| Entity { types: current.types, ..entity.clone() }),
                TemporalWrite::AddInstances { entity, .. } => Some(entity.clone()),
                TemporalWrite::ReplaceInstance { attr, attribute, .. } => {
                    self.inner.get_entity(tenant, id).await?.map(|current| {
                        let mut part = Entity::new(id, current.types);
                        part.attrs.insert(attr.clone(), vec![attribute.clone()]);
                        part
                    })
                }
                _ => None,
            };
            for part in part.iter().flat_map(split_instances) {
                if let Err(refused) = check(&models, &part, true) {
                    return Ok(Err(refused));
                }
            }
        }
        self.inner.temporal_write(tenant, id, write).await
    }

    async fn create_record(
        &self,
        tenant: &Tenant,
        kind: RecordKind,
        id: &str,
        doc: Value,
    ) -> Result<Result<(), NgsiLdError>, StoreError> {
        let created = self.inner.create_record(tenant, kind, id, doc).await;
        self.forget_models(tenant, kind);
        created
    }
    async fn replace_record(
        &self,
        tenant: &Tenant,
        kind: RecordKind,
        id: &str,
        doc: Value,
    ) -> Result<bool, StoreError> {
        let replaced = self.inner.replace_record(tenant, kind, id, doc).await;
        self.forget_models(tenant, kind);
        replaced
    }
    async fn delete_record(&self, tenant: &Tenant, kind: RecordKind, id: &str) -> Result<bool, StoreError> {
        let deleted = self.inner.delete_record(tenant, kind, id).await;
        self.forget_models(tenant, kind);
        deleted
    }
}

impl ValidatingStore {
    /// A data model written through this hub holds from its next write on, without waiting for
    /// the store's event.
    fn forget_models(&self, tenant: &str, kind: RecordKind) {
        if kind == RecordKind::DataModel {
            self.forget(tenant);
        }
    }
}

/// An entity of temporal instances as entities of one instance per attribute (several
/// instances of one attribute would not read as keyValues).
fn split_instances(entity: &Entity) -> Vec<Entity> {
    let mut parts = Vec::new();
    for (name, instances) in &entity.attrs {
        for instance in instances {
            let mut part = Entity::new(entity.id.clone(), entity.types.clone());
            part.attrs.insert(name.clone(), vec![instance.clone()]);
            parts.push(part);
        }
    }
    if parts.is_empty() {
        parts.push(entity.clone());
    }
    parts
}
