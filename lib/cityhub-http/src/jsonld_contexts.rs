//! `/jsonldContexts` (clause 5.13): a city hosts its own data models' @contexts on its hub, and
//! sees the remote ones the hub has cached.
//!
//! **Tenants.** A hosted @context is *served* hub-wide and *owned* by one tenant:
//! - Serving and listing ignore `NGSILD-Tenant`. The spec gives a hosted context one URL,
//!   `{apiRoot}/jsonldContexts/{contextId}` (clause 6.3.x), with no tenant in it, and that URL is
//!   what clients put in `Link` headers and `@context` members, and what JSON-LD processors
//!   anywhere dereference, without NGSI-LD headers. A context per tenant could not be
//!   dereferenced by them. The core context and cached remote contexts are hub-wide anyway.
//! - Deleting a hosted context is refused unless the request names the tenant that added it
//!   (contexts added before tenants were recorded belong to the default tenant). Clause 4.14
//!   isolates tenants, and deleting changes what every user of the URL gets; without the check
//!   any client could delete a context another tenant hosts and uses. The refusal is 404
//!   ResourceNotFound, as for any tenant-scoped resource asked for in the wrong tenant, with a
//!   detail that says the delete needs the hosting tenant (which tenant is not said: tenant names
//!   are not shared between tenants).
//! - Forgetting or reloading a *cached* remote context (`DELETE`, `reload=true`) is open to
//!   every tenant: the cache is the hub's, and the worst it does is fetch the document again.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use cityhub_storage::StoredContext;
use ngsild_core::{ErrorKind, NgsiLdError};
use ngsild_jsonld::{core_context_document, is_core_context_url, CORE_CONTEXT_URL};
use serde_json::{json, Value};

use crate::contexts::{hosted_id, HOSTED_PATH};
use crate::error::{ApiError, ApiResult};
use crate::extract::{params, Call, Checked, JsonBody, NoParams, Write};
use crate::request::Params;
use crate::response::{created, no_content, plain_json};
use crate::SharedState;

const HOSTED: &str = "Hosted";
const CACHED: &str = "Cached";
const IMPLICIT: &str = "ImplicitlyCreated";

fn details_flag(params: &Params) -> Result<bool, NgsiLdError> {
    match params.get("details") {
        None | Some("false") => Ok(false),
        Some("true") => Ok(true),
        Some(other) => Err(NgsiLdError::bad_request(format!("details must be true or false, not {other:?}"))),
    }
}

fn base_url(headers: &HeaderMap) -> String {
    let host = headers.get(header::HOST).and_then(|h| h.to_str().ok()).unwrap_or("localhost:1026");
    format!("http://{host}")
}

struct Listed {
    /// The hosting tenant (None for a cached remote context).
    tenant: Option<String>,
    url: String,
    local_id: String,
    kind: &'static str,
    created_at: String,
    document: Arc<Value>,
}

impl Listed {
    fn details(&self, state: &SharedState) -> Value {
        let usage = match self.kind {
            CACHED => state.contexts.usage(&self.url),
            _ => state.contexts.usage(&format!("{HOSTED_PATH}{}", self.local_id)),
        };
        let mut out = json!({"URL": self.url, "localId": self.local_id, "kind": self.kind, "createdAt": self.created_at, "numberOfHits": usage.hits});
        if let Some(last) = usage.last_used_at {
            out["lastUsage"] = Value::String(last);
        }
        out
    }
}

/// Local id of a cached context: stable for its URL, safe in a path.
fn cached_local_id(url: &str) -> String {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in url.bytes() {
        hash = (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3);
    }
    format!("cached-{hash:016x}")
}

async fn all_contexts(state: &SharedState) -> Result<Vec<Listed>, NgsiLdError> {
    let mut out: Vec<Listed> = state
        .store
        .list_contexts()
        .await?
        .into_iter()
        .map(|c| Listed {
            tenant: Some(c.tenant),
            url: c.url,
            local_id: c.id,
            kind: if c.kind == IMPLICIT { IMPLICIT } else { HOSTED },
            created_at: c.created_at,
            document: Arc::new(c.document),
        })
        .collect();
    out.extend(state.contexts.cached_contexts().into_iter().map(|c| Listed {
        tenant: None,
        local_id: cached_local_id(&c.url),
        url: c.url,
        kind: CACHED,
        created_at: c.created_at,
        document: c.document,
    }));
    Ok(out)
}

params! {
    Reload = &["reload"];
    ListParams = &["details", "kind"];
    Details = &["details"];
}

/// GET /jsonldContexts
pub async fn list(State(state): State<SharedState>, Checked { params, .. }: Checked<ListParams>) -> ApiResult {
    let details = details_flag(&params)?;
    let kind = match params.get("kind") {
        None => None,
        Some(k @ (HOSTED | CACHED | IMPLICIT)) => Some(k.to_owned()),
        Some(other) => return Err(NgsiLdError::bad_request(format!("unknown kind {other:?}")).into()),
    };
    let listed: Vec<Value> = all_contexts(&state)
        .await?
        .into_iter()
        .filter(|c| kind.as_deref().is_none_or(|k| k == c.kind))
        .map(|c| if details { c.details(&state) } else { Value::String(c.url) })
        .collect();
    Ok(plain_json(StatusCode::OK, &Value::Array(listed)))
}

/// POST /jsonldContexts: hosts a context document.
pub async fn add(write: Write<NoParams>, JsonBody { value: document, .. }: JsonBody) -> ApiResult {
    let Call { state, headers, tenant, .. } = write.call;
    let valid = match document.get("@context") {
        Some(Value::Object(_)) => true,
        Some(Value::Array(items)) => items.iter().all(|i| i.is_string() || i.is_object()),
        Some(Value::String(_)) => true,
        _ => false,
    };
    if !valid || document.as_object().is_some_and(|m| m.len() != 1) {
        return Err(NgsiLdError::invalid_request(
            "a hosted @context must be a JSON object with exactly one @context member",
        )
        .into());
    }
    // Inline term definitions must make a valid context; remote ones it imports are fetched when
    // it is first used (they may not be reachable yet).
    ngsild_jsonld::Context::build(&inline_only(&document["@context"]), &ngsild_jsonld::NoDocuments)
        .map_err(|e| NgsiLdError::invalid_request(format!("invalid @context: {e}")))?;
    let id = uuid::Uuid::new_v4().simple().to_string();
    let path = format!("{HOSTED_PATH}{id}");
    let url = format!("{}{path}", base_url(&headers));
    state
        .contexts
        .put_hosted(StoredContext {
            id,
            kind: HOSTED.into(),
            url,
            document,
            created_at: ngsild_core::time::now(),
            last_used_at: None,
            number_of_hits: 0,
            tenant,
        })
        .await?;
    Ok(created(&path))
}

async fn find(state: &SharedState, id: &str) -> Result<Option<Listed>, NgsiLdError> {
    let local = hosted_id(id).unwrap_or_else(|| id.to_owned());
    Ok(all_contexts(state).await?.into_iter().find(|c| c.local_id == local || c.url == id))
}

/// The inline parts of a context value, without the URLs it refers to.
fn inline_only(context: &Value) -> Value {
    match context {
        Value::Array(items) => Value::Array(items.iter().filter(|i| !i.is_string()).cloned().collect()),
        Value::String(_) => Value::Array(Vec::new()),
        other => other.clone(),
    }
}

/// GET /jsonldContexts/{id}: the document, or its bookkeeping with `details=true`.
pub async fn serve(
    State(state): State<SharedState>,
    Path(id): Path<String>,
    Checked { params, .. }: Checked<Details>,
) -> ApiResult {
    let details = details_flag(&params)?;
    if is_core_context_url(&id) {
        if details {
            return Ok(plain_json(
                StatusCode::OK,
                &json!({"URL": CORE_CONTEXT_URL, "localId": "core", "kind": CACHED, "createdAt": "1970-01-01T00:00:00Z"}),
            ));
        }
        return Ok(plain_json(StatusCode::OK, core_context_document()));
    }
    let found = find(&state, &id).await?.ok_or_else(|| NgsiLdError::not_found(format!("no @context {id}")))?;
    if details {
        return Ok(plain_json(StatusCode::OK, &found.details(&state)));
    }
    Ok(plain_json(StatusCode::OK, &found.document))
}

/// DELETE /jsonldContexts/{id}: a hosted context goes; a cached one is forgotten, or fetched
/// again with `reload=true`.
pub async fn delete(Path(id): Path<String>, write: Write<Reload>) -> ApiResult {
    let Call { state, params, tenant, .. } = write.call;
    let reload = params.flag("reload")?;
    if is_core_context_url(&id) {
        // The core context is compiled in: reloading it is a no-op, deleting it is refused.
        if reload {
            return Ok(no_content());
        }
        return Err(NgsiLdError::bad_request("the core @context cannot be deleted").into());
    }
    let Some(found) = find(&state, &id).await? else {
        if reload {
            return Err(NgsiLdError::bad_request(format!("no @context {id} to reload")).into());
        }
        return Err(NgsiLdError::not_found(format!("no @context {id}")).into());
    };
    match found.kind {
        CACHED => {
            state.contexts.evict_cached(&found.url, reload).await?;
        }
        _ if reload => {
            return Err(NgsiLdError::bad_request("reload only applies to cached @contexts").into());
        }
        _ if found.tenant.as_deref() != Some(tenant.as_str()) => {
            return Err(NgsiLdError::not_found(format!(
                "no @context {id} hosted by this tenant: a hosted @context can be deleted only by the tenant that \
                 added it (send the NGSILD-Tenant it was added with)"
            ))
            .into());
        }
        _ => delete_hosted(&state, &found, &id).await?,
    }
    Ok(no_content())
}

/// Deletes a hosted @context (its tenant checked): the store's copy, the term maps built from
/// it, and an ImplicitlyCreated one's record.
async fn delete_hosted(state: &SharedState, found: &Listed, id: &str) -> Result<(), ApiError> {
    if !state.store.delete_context(&found.local_id).await? {
        return Err(NgsiLdError::new(ErrorKind::ResourceNotFound, format!("no @context {id}")).into());
    }
    state.contexts.invalidate();
    if found.kind == IMPLICIT {
        crate::implicit_contexts::forget(state, &found.url).await?;
    }
    Ok(())
}
