//! Resolving a request's @context to an active [`Context`]: remote documents are fetched once
//! (bounded cache, timeout), hosted ones come from the store, the core context is built in, and
//! the resulting term maps are cached by the literal @context value.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use cityhub_storage::{DynStore, StoredContext};
use moka::future::Cache;
use ngsild_core::{ErrorKind, NgsiLdError};
use ngsild_jsonld::{core_context, is_core_context_url, Context, ContextError};
use serde_json::Value;

use crate::HttpConfig;

/// Where a hosted context is served, relative to the API root.
pub const HOSTED_PATH: &str = "/ngsi-ld/v1/jsonldContexts/";

/// Usage bookkeeping of one known context (clause 5.13: `numberOfHits`, `lastUsage`).
#[derive(Debug, Clone, Default)]
pub struct Usage {
    pub hits: u64,
    pub last_used_at: Option<String>,
}

/// A remote context the hub fetched and keeps (kind `Cached`).
#[derive(Debug, Clone)]
pub struct CachedContext {
    pub url: String,
    pub document: Arc<Value>,
    pub created_at: String,
}

pub struct ContextService {
    store: DynStore,
    client: reqwest::Client,
    built: Cache<String, Arc<Context>>,
    cached: Mutex<HashMap<String, CachedContext>>,
    usage: Mutex<HashMap<String, Usage>>,
    max_cached: usize,
}

impl ContextService {
    pub fn new(store: DynStore, config: &HttpConfig) -> Self {
        let client = reqwest::Client::builder()
            .timeout(config.context_fetch_timeout)
            .connect_timeout(config.context_fetch_timeout)
            .build()
            .expect("an HTTP client with default TLS settings builds");
        ContextService {
            store,
            client,
            built: Cache::new(config.context_cache_entries),
            cached: Mutex::new(HashMap::new()),
            usage: Mutex::new(HashMap::new()),
            max_cached: config.context_cache_entries as usize,
        }
    }

    pub fn core(&self) -> Arc<Context> {
        core_context()
    }

    /// The active context for a request's @context value (a URL, an object or an array).
    pub async fn resolve(&self, value: &Value) -> Result<Arc<Context>, NgsiLdError> {
        self.count_usage(value);
        let key = value.to_string();
        if let Some(ctx) = self.built.get(&key).await {
            return Ok(ctx);
        }
        let mut docs: HashMap<String, Value> = HashMap::new();
        loop {
            let missing = Context::missing_documents(value, &docs);
            if missing.is_empty() {
                break;
            }
            for url in missing {
                let doc = self.document(&url).await?;
                docs.insert(url, (*doc).clone());
            }
        }
        let ctx = match Context::build(value, &docs) {
            Ok(ctx) => Arc::new(ctx),
            Err(ContextError::Missing(url)) => {
                return Err(NgsiLdError::new(
                    ErrorKind::LdContextNotAvailable,
                    format!("@context {url} could not be loaded"),
                ))
            }
            Err(ContextError::Invalid(why)) => return Err(NgsiLdError::bad_request(why)),
        };
        self.built.insert(key, ctx.clone()).await;
        Ok(ctx)
    }

    /// A context document by URL: hosted, cached, or fetched now (and then cached).
    async fn document(&self, url: &str) -> Result<Arc<Value>, NgsiLdError> {
        if let Some(id) = hosted_id(url) {
            if let Some(stored) = self.store.get_context(&id).await? {
                return Ok(Arc::new(stored.document));
            }
        }
        if let Some(cached) = self.cached.lock().unwrap().get(url) {
            return Ok(cached.document.clone());
        }
        let document = Arc::new(self.fetch(url).await?);
        let mut cached = self.cached.lock().unwrap();
        if cached.len() < self.max_cached {
            cached.insert(
                url.to_owned(),
                CachedContext { url: url.to_owned(), document: document.clone(), created_at: ngsild_core::time::now() },
            );
        }
        Ok(document)
    }

    async fn fetch(&self, url: &str) -> Result<Value, NgsiLdError> {
        let unavailable = |why: String| {
            NgsiLdError::new(ErrorKind::LdContextNotAvailable, format!("@context {url} could not be retrieved: {why}"))
        };
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            return Err(unavailable("only http and https URLs can be fetched".into()));
        }
        let response = self
            .client
            .get(url)
            .header("Accept", "application/ld+json, application/json;q=0.9")
            .send()
            .await
            .map_err(|e| unavailable(e.to_string()))?;
        if !response.status().is_success() {
            return Err(unavailable(format!("HTTP status {}", response.status())));
        }
        let bytes = response.bytes().await.map_err(|e| unavailable(e.to_string()))?;
        let document: Value = serde_json::from_slice(&bytes).map_err(|e| unavailable(format!("not JSON: {e}")))?;
        if document.get("@context").is_none() {
            return Err(unavailable("the document has no @context member".into()));
        }
        Ok(document)
    }

    fn count_usage(&self, value: &Value) {
        let urls: Vec<&str> = match value {
            Value::String(url) => vec![url.as_str()],
            Value::Array(items) => items.iter().filter_map(Value::as_str).collect(),
            _ => Vec::new(),
        };
        if urls.is_empty() {
            return;
        }
        let now = ngsild_core::time::now();
        let mut usage = self.usage.lock().unwrap();
        for url in urls.into_iter().filter(|u| !is_core_context_url(u)) {
            let entry = usage.entry(usage_key(url)).or_default();
            entry.hits += 1;
            entry.last_used_at = Some(now.clone());
        }
    }

    pub fn usage(&self, url: &str) -> Usage {
        self.usage.lock().unwrap().get(&usage_key(url)).cloned().unwrap_or_default()
    }

    pub fn cached_contexts(&self) -> Vec<CachedContext> {
        let mut all: Vec<CachedContext> = self.cached.lock().unwrap().values().cloned().collect();
        all.sort_by(|a, b| a.created_at.cmp(&b.created_at));
        all
    }

    pub fn cached_context(&self, url: &str) -> Option<CachedContext> {
        self.cached.lock().unwrap().get(url).cloned()
    }

    /// Forgets a cached context; with `reload`, fetches it again first and keeps the old copy if
    /// that fails.
    pub async fn evict_cached(&self, url: &str, reload: bool) -> Result<bool, NgsiLdError> {
        if !self.cached.lock().unwrap().contains_key(url) {
            return Ok(false);
        }
        if reload {
            let document = Arc::new(self.fetch(url).await?);
            if let Some(entry) = self.cached.lock().unwrap().get_mut(url) {
                entry.document = document;
            }
        } else {
            self.cached.lock().unwrap().remove(url);
            self.usage.lock().unwrap().remove(url);
        }
        self.built.invalidate_all();
        Ok(true)
    }

    /// Forgets built term maps after a hosted context changed.
    pub fn invalidate(&self) {
        self.built.invalidate_all();
    }

    pub async fn put_hosted(&self, context: StoredContext) -> Result<(), NgsiLdError> {
        self.store.put_context(context).await?;
        self.invalidate();
        Ok(())
    }
}

/// The local id of a hosted context URL (`.../ngsi-ld/v1/jsonldContexts/{id}`), on any host, or
/// given as the bare path that the `Location` of its creation answered.
pub fn hosted_id(url: &str) -> Option<String> {
    let path = match url.strip_prefix("http://").or_else(|| url.strip_prefix("https://")) {
        Some(rest) => &rest[rest.find('/')?..],
        None => url,
    };
    if !path.starts_with(HOSTED_PATH) && !path.starts_with("/ngsi-ld/") {
        return None;
    }
    let (_, id) = path.rsplit_once("/jsonldContexts/")?;
    (!id.is_empty() && !id.contains('/')).then(|| id.to_owned())
}

/// The key under which a context's usage is counted: hosted contexts by local id (they are
/// reachable under several URLs), the others by URL.
pub fn usage_key(url: &str) -> String {
    match hosted_id(url) {
        Some(id) => format!("hosted:{id}"),
        None => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosted_context_urls() {
        assert_eq!(hosted_id("http://hub:1026/ngsi-ld/v1/jsonldContexts/abc").as_deref(), Some("abc"));
        assert_eq!(hosted_id("/ngsi-ld/v1/jsonldContexts/abc").as_deref(), Some("abc"));
        assert_eq!(hosted_id("https://other.example/contexts/abc"), None);
        assert_eq!(hosted_id("http://hub/ngsi-ld/v1/jsonldContexts/"), None);
        assert_eq!(usage_key("http://a/ngsi-ld/v1/jsonldContexts/x"), usage_key("/ngsi-ld/v1/jsonldContexts/x"));
    }
}
