//! Resolving a request's @context to an active [`Context`]: remote documents are fetched once
//! (bounded cache, timeout), hosted ones come from the store, the core context is built in, and
//! the resulting term maps are cached by the literal @context value.
//!
//! Remote documents are untrusted input, so every step is bounded ([`ContextLimits`], each a
//! `cityhub serve` flag):
//! - **document size** (`--context-max-bytes`): the body is read chunk by chunk and the fetch
//!   stops as soon as it passes the limit (a `Content-Length` over it is refused before reading);
//!   no more than the limit is ever buffered;
//! - **documents per @context** (`--context-max-documents`): the distinct documents (remote,
//!   cached or hosted; the core context is free) one request's @context may need, `@import`s and
//!   arrays included. It counts cached documents too, so whether a request passes does not
//!   depend on what happens to be cached;
//! - **redirects** (`--context-max-redirects`): followed up to the limit, only to http(s) URLs
//!   and never from https down to http; the fetch timeout and the size limit cover the whole
//!   chain;
//! - **cache memory** (`--context-cache-bytes`): the cache of fetched documents and the cache of
//!   built term maps each hold at most half of it, weighed by an estimate of their heap size
//!   (not by count: one 100 MB document weighs as much as a hundred thousand small ones). What
//!   does not fit is evicted, least recently used first, and fetched again when needed.
//!
//! A request whose @context passes a limit is answered **503 LdContextNotAvailable**, with a
//! detail naming the limit, its value and its flag. Clause 6.3.5 (and Table 5.5.2-1) make
//! LdContextNotAvailable the answer whenever a remote @context referenced by a request cannot be
//! retrieved, and that is the case here: the request itself is well formed (BadRequestData is
//! for input data that does not meet the operation's requirements, which a @context's size
//! does not touch), while this hub, as configured, will not retrieve that document; the operator
//! can raise the limit. The detail says so, so a client does not mistake it for an outage.

use parking_lot::Mutex;
use std::collections::HashMap;
use std::sync::Arc;

use cityhub_egress::{ClientOptions, EgressClient};
use cityhub_storage::{DynStore, StoredContext};
use moka::future::Cache;
use ngsild_core::{ErrorKind, NgsiLdError};
use ngsild_jsonld::{core_context, is_core_context_url, Context, ContextError, DocumentLoader};
use serde_json::Value;

use crate::HttpConfig;

pub use ngsild_jsonld::hosted::{hosted_id, json_heap_bytes, usage_key, HOSTED_PATH};

/// The bounds on remote @context documents (see the module documentation).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ContextLimits {
    /// The largest remote document, in bytes of its body.
    pub max_document_bytes: usize,
    /// The most documents one request's @context may need.
    pub max_documents: usize,
    /// Redirects followed when fetching one document.
    pub max_redirects: usize,
    /// Memory for the document cache and the term-map cache together, in bytes (half each).
    pub cache_bytes: u64,
}

impl Default for ContextLimits {
    fn default() -> Self {
        ContextLimits { max_document_bytes: 1 << 20, max_documents: 16, max_redirects: 5, cache_bytes: 64 << 20 }
    }
}

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
    /// What it weighs in the cache (an estimate of its heap size).
    pub weight: u32,
}

impl CachedContext {
    /// A fetched document as the cache holds it, weighed by its URL and its heap size.
    fn new(url: &str, document: Arc<Value>, created_at: String) -> Self {
        CachedContext {
            url: url.to_owned(),
            weight: weight(url.len() + json_heap_bytes(&document)),
            document,
            created_at,
        }
    }
}

type UsageMap = Arc<Mutex<HashMap<String, Usage>>>;

pub struct ContextService {
    store: DynStore,
    client: EgressClient,
    built: Cache<String, Arc<Context>>,
    cached: Cache<String, CachedContext>,
    usage: UsageMap,
    limits: ContextLimits,
}

/// The documents one resolution has loaded, shared rather than copied.
struct Loaded(HashMap<String, Arc<Value>>);

impl DocumentLoader for Loaded {
    fn load(&self, url: &str) -> Option<&Value> {
        self.0.get(url).map(|doc| doc.as_ref())
    }
}

fn weight(bytes: usize) -> u32 {
    u32::try_from(bytes).unwrap_or(u32::MAX)
}

impl ContextService {
    pub fn new(store: DynStore, config: &HttpConfig) -> Self {
        let limits = config.context_limits;
        // Redirects are followed to http(s) URLs only, never from https down to http, and each
        // hop is judged by the egress rules as the first URL was.
        let client = config.egress.client(&ClientOptions {
            timeout: config.context_fetch_timeout,
            connect_timeout: config.context_fetch_timeout,
            max_redirects: limits.max_redirects,
            redirects_flag: "--context-max-redirects",
            ..ClientOptions::default()
        });
        let half = (limits.cache_bytes / 2).max(1);
        let usage: UsageMap = Arc::default();
        let evicted_usage = usage.clone();
        let cached = Cache::builder()
            .max_capacity(half)
            .weigher(|_url: &String, c: &CachedContext| c.weight)
            .eviction_listener(move |url: Arc<String>, _, cause| {
                // A document that left the cache is no longer listed; its usage goes with it, so
                // the usage map is bounded by what is cached or hosted.
                if cause.was_evicted() {
                    evicted_usage.lock().remove(&usage_key(&url));
                }
            })
            .build();
        let built = Cache::builder()
            .max_capacity(half)
            .weigher(|key: &String, ctx: &Arc<Context>| weight(key.len() + ctx.approx_bytes()))
            .build();
        ContextService { store, client, built, cached, usage, limits }
    }

    pub fn limits(&self) -> ContextLimits {
        self.limits
    }

    pub fn core(&self) -> Arc<Context> {
        core_context()
    }

    /// The active context for a request's @context value (a URL, an object or an array).
    pub async fn resolve(&self, value: &Value) -> Result<Arc<Context>, NgsiLdError> {
        let key = value.to_string();
        if let Some(ctx) = self.built.get(&key).await {
            self.count_usage(value);
            return Ok(ctx);
        }
        let mut docs = Loaded(HashMap::new());
        loop {
            let missing = Context::missing_documents(value, &docs);
            if missing.is_empty() {
                break;
            }
            if docs.0.len() + missing.len() > self.limits.max_documents {
                return Err(NgsiLdError::new(
                    ErrorKind::LdContextNotAvailable,
                    format!(
                        "the request's @context needs more than {} @context documents (it has {} and imports {} more); \
                         the hub loads at most {} for one request (set by --context-max-documents): \
                         reference fewer documents, or merge them into one",
                        self.limits.max_documents,
                        docs.0.len(),
                        missing.len(),
                        self.limits.max_documents
                    ),
                ));
            }
            for url in missing {
                let doc = self.document(&url).await?;
                docs.0.insert(url, doc);
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
        self.built.run_pending_tasks().await;
        self.count_usage(value);
        Ok(ctx)
    }

    /// A context document by URL: hosted, cached, or fetched now (and then cached).
    async fn document(&self, url: &str) -> Result<Arc<Value>, NgsiLdError> {
        if let Some(id) = hosted_id(url) {
            if let Some(stored) = self.store.get_context(&id).await? {
                return Ok(Arc::new(stored.document));
            }
        }
        // Requests needing the same document at once share one fetch (and one copy of it).
        let fetch = async {
            let document = Arc::new(self.fetch(url).await?);
            Ok::<_, NgsiLdError>(CachedContext::new(url, document, ngsild_core::time::now()))
        };
        let cached = self.cached.try_get_with_by_ref(url, fetch).await.map_err(|e| (*e).clone())?;
        // Evict now rather than at some later maintenance, so the bound holds at every moment.
        self.cached.run_pending_tasks().await;
        Ok(cached.document)
    }

    async fn fetch(&self, url: &str) -> Result<Value, NgsiLdError> {
        let unavailable = |why: String| {
            NgsiLdError::new(ErrorKind::LdContextNotAvailable, format!("@context {url} could not be retrieved: {why}"))
        };
        let max = self.limits.max_document_bytes;
        let too_large = || {
            unavailable(format!(
                "the document is larger than {max} bytes, the most the hub reads for one @context \
                 (set by --context-max-bytes)"
            ))
        };
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            return Err(unavailable("only http and https URLs can be fetched".into()));
        }
        let request = self.client.get(url).header("Accept", "application/ld+json, application/json;q=0.9");
        let mut response = self.client.execute(request).await.map_err(|e| unavailable(e.to_string()))?;
        if !response.status().is_success() {
            return Err(unavailable(format!("HTTP status {}", response.status())));
        }
        let declared = response.content_length().unwrap_or(0);
        if declared > max as u64 {
            return Err(too_large());
        }
        // Read no more than the limit: stop at the first chunk past it.
        let mut body: Vec<u8> = Vec::with_capacity(usize::try_from(declared).unwrap_or(0).min(max));
        while let Some(chunk) = response.chunk().await.map_err(|_| unavailable("the answer broke off".into()))? {
            if body.len() + chunk.len() > max {
                return Err(too_large());
            }
            body.extend_from_slice(&chunk);
        }
        let document: Value = serde_json::from_slice(&body).map_err(|e| unavailable(format!("not JSON: {e}")))?;
        if document.get("@context").is_none() {
            return Err(unavailable("the document has no @context member".into()));
        }
        Ok(document)
    }

    /// Counts a use of each URL of a @context that resolved (only then: a URL that never
    /// resolved is no context the hub knows, and must not grow the usage map).
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
        let mut usage = self.usage.lock();
        for url in urls.into_iter().filter(|u| !is_core_context_url(u)) {
            let entry = usage.entry(usage_key(url)).or_default();
            entry.hits += 1;
            entry.last_used_at = Some(now.clone());
        }
    }

    pub fn usage(&self, url: &str) -> Usage {
        self.usage.lock().get(&usage_key(url)).cloned().unwrap_or_default()
    }

    pub fn cached_contexts(&self) -> Vec<CachedContext> {
        let mut all: Vec<CachedContext> = self.cached.iter().map(|(_, c)| c).collect();
        all.sort_by(|a, b| a.created_at.cmp(&b.created_at));
        all
    }

    /// Forgets a cached context; with `reload`, fetches it again first and keeps the old copy if
    /// that fails.
    pub async fn evict_cached(&self, url: &str, reload: bool) -> Result<bool, NgsiLdError> {
        let Some(old) = self.cached.get(url).await else {
            return Ok(false);
        };
        if reload {
            let document = Arc::new(self.fetch(url).await?);
            self.cached.insert(url.to_owned(), CachedContext::new(url, document, old.created_at)).await;
            self.cached.run_pending_tasks().await;
        } else {
            self.cached.invalidate(url).await;
            self.usage.lock().remove(&usage_key(url));
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
