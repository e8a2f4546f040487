//! The catalogue's state, below every route module: the configuration, the datasets of each
//! tenant (cached, dropped on the store's `Records` events of kind `dataset`), publishing a
//! dataset through the store's write path, and the query-parameter lists of its routes.

use std::collections::HashMap;
use std::sync::Arc;

use axum::http::{header, HeaderMap};
use cityhub_http::extract::Allowed;
use cityhub_storage::{modify_one, DynStore, Modified, RecordKind, StoreEvent};
use ngsild_core::NgsiLdError;
use parking_lot::RwLock;

use crate::dataset::{Dataset, LangText};
use crate::validating::ValidatingStore;

/// How the catalogue presents itself.
#[derive(Debug, Clone)]
pub struct CatalogConfig {
    /// The hub's URL as clients reach it (`https://data.city.example`); default: `http://` and
    /// the request's `Host`.
    pub public_url: Option<String>,
    pub title: LangText,
    pub description: LangText,
    pub publisher_id: String,
    pub publisher_name: String,
}

impl Default for CatalogConfig {
    fn default() -> Self {
        CatalogConfig {
            public_url: None,
            title: [("en".to_owned(), "cityhub open data".to_owned())].into(),
            description: [("en".to_owned(), "The datasets this city data hub publishes.".to_owned())].into(),
            publisher_id: "cityhub".to_owned(),
            publisher_name: "cityhub".to_owned(),
        }
    }
}

/// The catalogue's state: the store (the hub's, with data models enforced) and the datasets of
/// each tenant, cached and dropped on `StoreEvent::Records` of kind `dataset`.
pub struct Catalog {
    pub store: DynStore,
    pub models: Arc<ValidatingStore>,
    pub config: CatalogConfig,
    datasets: RwLock<HashMap<String, Arc<Vec<Dataset>>>>,
}

impl Catalog {
    /// Must be called inside a tokio runtime (it follows the store's events).
    pub fn new(models: Arc<ValidatingStore>, config: CatalogConfig) -> Arc<Catalog> {
        let store: DynStore = models.clone();
        let catalog = Arc::new(Catalog { store: store.clone(), models, config, datasets: RwLock::default() });
        tokio::spawn(follow(Arc::downgrade(&catalog), store.events()));
        catalog
    }

    /// The datasets of a tenant, in the order they were published.
    pub async fn datasets(&self, tenant: &str) -> Result<Arc<Vec<Dataset>>, NgsiLdError> {
        if let Some(cached) = self.datasets.read().get(tenant) {
            return Ok(cached.clone());
        }
        let mut all = Vec::new();
        for doc in self.store.list_records(tenant, RecordKind::Dataset).await? {
            let d: Dataset = serde_json::from_value(doc)
                .map_err(|e| NgsiLdError::internal(format!("a stored dataset does not read back: {e}")))?;
            all.push(d);
        }
        let all = Arc::new(all);
        self.datasets.write().insert(tenant.to_owned(), all.clone());
        Ok(all)
    }

    pub(crate) async fn dataset(&self, tenant: &str, name: &str) -> Result<Dataset, NgsiLdError> {
        self.datasets(tenant).await?.iter().find(|d| d.name == name).cloned().ok_or_else(|| {
            NgsiLdError::not_found(format!("no dataset named {name:?}: GET /cityhub/v1/datasets lists them"))
        })
    }

    pub(crate) fn forget(&self, tenant: &str) {
        self.datasets.write().remove(tenant);
    }

    /// The hub's URL for links.
    pub fn base(&self, headers: &HeaderMap) -> String {
        if let Some(url) = &self.config.public_url {
            return url.trim_end_matches('/').to_owned();
        }
        let host = headers.get(header::HOST).and_then(|h| h.to_str().ok()).unwrap_or("localhost");
        format!("http://{host}")
    }

    /// Publishes (or republishes) a dataset: its record and its `Dataset` entity, written through
    /// the store's write path.
    pub async fn publish(&self, tenant: &str, dataset: &Dataset, base: &str, replace: bool) -> Result<(), NgsiLdError> {
        let doc = serde_json::to_value(dataset).map_err(|e| NgsiLdError::internal(e.to_string()))?;
        let entity = dataset.entity(base)?;
        if replace {
            if !self.store.replace_record(tenant, RecordKind::Dataset, &dataset.name, doc).await? {
                return Err(NgsiLdError::not_found(format!("no dataset named {:?}", dataset.name)));
            }
        } else {
            self.store.create_record(tenant, RecordKind::Dataset, &dataset.name, doc).await??;
        }
        self.forget(tenant);
        let now = ngsild_core::time::now();
        let written = modify_one(
            self.store.as_ref(),
            tenant,
            &entity.id.clone(),
            Box::new(move |current| {
                let mut next = entity;
                ngsild_core::ops::stamp_new_entity(&mut next, &now);
                if let Some(current) = current {
                    next.created_at = current.created_at;
                }
                Ok(Modified::entity(next))
            }),
        )
        .await;
        if let Err(refused) = written {
            if !replace {
                self.store.delete_record(tenant, RecordKind::Dataset, &dataset.name).await?;
                self.forget(tenant);
            }
            return Err(refused);
        }
        Ok(())
    }
}

async fn follow(catalog: std::sync::Weak<Catalog>, mut events: tokio::sync::broadcast::Receiver<StoreEvent>) {
    use cityhub_storage::Heard;
    loop {
        let event = cityhub_storage::heard(events.recv().await);
        let Some(catalog) = catalog.upgrade() else { return };
        match event {
            Heard::Event(StoreEvent::Records { tenant, kind: RecordKind::Dataset }) => catalog.forget(&tenant),
            Heard::Event(_) => {}
            Heard::Missed => catalog.datasets.write().clear(),
            Heard::Closed => return,
        }
    }
}

macro_rules! allowed {
    ($($name:ident = $names:expr;)+) => {$(
        pub struct $name;
        impl Allowed for $name {
            const NAMES: &'static [&'static str] = $names;
        }
    )+};
}

allowed! {
    NoParams = &[];
    DownloadParams = &["format", "part"];
    CkanParams = cityhub_openapi::query::CKAN_QUERY;
}
