//! `ImplicitlyCreated` @contexts (clause 5.13): a subscription written with a compound @context
//! (an array of several contexts, or inline terms) gets that context served by the hub under
//! `/jsonldContexts/{id}`, and its `jsonldContext` names it. Notifications can then carry the
//! subscriber's context as the one URL a `Link` header holds.
//!
//! The same compound context (the same JSON value) is served once however many subscriptions use
//! it; when the last subscription naming it goes, it goes too. It is served, listed, counted and
//! deleted like a hosted context, but cannot be reloaded (`jsonld_contexts`).

use axum::http::{header, HeaderMap};
use cityhub_notify::subscription::Subscription;
use cityhub_storage::StoredContext;
use ngsild_core::NgsiLdError;
use ngsild_jsonld::is_core_context_url;
use serde_json::{json, Value};

use crate::contexts::{hosted_id, HOSTED_PATH};
use crate::SharedState;

pub const IMPLICIT: &str = "ImplicitlyCreated";

/// True for a @context that a `Link` header cannot carry as one URL: inline terms, or several
/// URLs besides the core context (which applies anyway).
pub fn is_compound(context: &Value) -> bool {
    match context {
        Value::Object(_) => true,
        Value::Array(items) => {
            let others = items.iter().filter(|i| !i.as_str().is_some_and(is_core_context_url));
            others.clone().count() > 1 || others.into_iter().any(|i| !i.is_string())
        }
        _ => false,
    }
}

/// The URL of the ImplicitlyCreated context serving `context`, created now unless the hub
/// already serves that same context.
pub async fn url_for(state: &SharedState, headers: &HeaderMap, context: &Value) -> Result<String, NgsiLdError> {
    let document = json!({ "@context": context });
    if let Some(existing) =
        state.store.list_contexts().await?.into_iter().find(|c| c.kind == IMPLICIT && c.document == document)
    {
        return Ok(existing.url);
    }
    let id = uuid::Uuid::new_v4().simple().to_string();
    let host = headers.get(header::HOST).and_then(|h| h.to_str().ok()).unwrap_or("localhost:1026");
    let url = format!("http://{host}{HOSTED_PATH}{id}");
    state
        .contexts
        .put_hosted(StoredContext {
            id,
            kind: IMPLICIT.into(),
            url: url.clone(),
            document,
            created_at: ngsild_core::time::now(),
            last_used_at: None,
            number_of_hits: 0,
            // Served hub-wide and shared by every subscription with the same context; the
            // tenant that caused it owns it for deletion.
            tenant: crate::request::tenant(headers).map_err(|e| e.0)?,
        })
        .await?;
    Ok(url)
}

/// Whether `url` names an ImplicitlyCreated context of this hub.
pub async fn is_implicit(state: &SharedState, url: &str) -> Result<bool, NgsiLdError> {
    let Some(id) = hosted_id(url) else { return Ok(false) };
    Ok(state.store.get_context(&id).await?.is_some_and(|c| c.kind == IMPLICIT))
}

/// Deletes the ImplicitlyCreated context `url` once no subscription (of any kind or tenant)
/// names it any more.
pub async fn release(state: &SharedState, url: &str) -> Result<(), NgsiLdError> {
    if !is_implicit(state, url).await? {
        return Ok(());
    }
    let still_used = state
        .store
        .list_subscriptions(None, None)
        .await?
        .iter()
        .any(|s| s.doc.get("jsonldContext").and_then(Value::as_str) == Some(url));
    if !still_used {
        if let Some(id) = hosted_id(url) {
            state.store.delete_context(&id).await?;
            state.contexts.invalidate();
        }
    }
    Ok(())
}

/// After the ImplicitlyCreated context `url` was deleted: the subscriptions that named it keep
/// their compound @context inline and stop naming it, so they notify on (and survive a restart)
/// as they did before it existed.
pub async fn forget(state: &SharedState, url: &str) -> Result<(), NgsiLdError> {
    for stored in state.store.list_subscriptions(None, None).await? {
        if stored.doc.get("jsonldContext").and_then(Value::as_str) != Some(url) {
            continue;
        }
        let mut sub: Subscription = serde_json::from_value(stored.doc)
            .map_err(|e| NgsiLdError::internal(format!("stored subscription {} is unreadable: {e}", stored.id)))?;
        sub.jsonld_context = None;
        let compiled = state.notifier.compile(stored.kind, &stored.tenant, sub.clone()).await?;
        let doc = serde_json::to_value(&sub).map_err(|e| NgsiLdError::internal(e.to_string()))?;
        if state.store.replace_subscription(stored.kind, &stored.tenant, &stored.id, doc).await? {
            state.notifier.install(compiled);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compound_contexts() {
        assert!(is_compound(&json!(["http://a/c.jsonld", "http://b/c.jsonld"])));
        assert!(is_compound(&json!({"name": "http://example.org/name"})));
        assert!(is_compound(&json!([{"name": "http://example.org/name"}])));
        assert!(!is_compound(&json!("http://a/c.jsonld")));
        assert!(!is_compound(&json!(["http://a/c.jsonld"])));
        let core = "https://uri.etsi.org/ngsi-ld/v1/ngsi-ld-core-context-v1.8.jsonld";
        assert!(!is_compound(&json!(["http://a/c.jsonld", core])));
        assert!(is_compound(&json!(["http://a/c.jsonld", "http://b/c.jsonld", core])));
    }
}
