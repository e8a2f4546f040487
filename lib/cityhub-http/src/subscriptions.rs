//! `/subscriptions` (clause 5.8) and `/csourceSubscriptions` (clause 5.11), one set of handlers
//! generic over the kind: create, query, retrieve, update, delete. Both are the Subscription data type
//! (`cityhub_notify::subscription`), stored by kind (`SubscriptionKind`) and run by the one
//! `Notifier`.

use std::sync::Arc;

use async_trait::async_trait;
use axum::http::{HeaderMap, StatusCode};
use cityhub_notify::subscription::{self, Subscription};
use cityhub_notify::ContextResolver;
use cityhub_storage::{StoredSubscription, SubscriptionKind};
use ngsild_core::time::now;
use ngsild_core::{ErrorKind, NgsiLdError};
use ngsild_jsonld::Context;
use serde_json::Value;

use crate::contexts::ContextService;
use crate::error::{ApiError, ApiResult};
use crate::extract::{params, Accepting, Call, LdBody, LocalOnly, Read, SubscriptionId, Update, Write};
use crate::implicit_contexts;
use crate::request::{as_object, Ld};
use crate::response::{created, ld_json, no_content, page_links, path_segment, with_header, LinkStyle};
use crate::SharedState;

/// The notifier resolves subscription @contexts the way requests do.
#[async_trait]
impl ContextResolver for ContextService {
    async fn resolve(&self, context: Option<&Value>) -> Result<Arc<Context>, NgsiLdError> {
        match context {
            Some(value) => ContextService::resolve(self, value).await,
            None => Ok(self.core()),
        }
    }
}

/// Where a kind of subscription lives in the API.
fn collection(kind: SubscriptionKind) -> &'static str {
    match kind {
        SubscriptionKind::Entity => "/ngsi-ld/v1/subscriptions",
        SubscriptionKind::CSource => "/ngsi-ld/v1/csourceSubscriptions",
    }
}

fn location(kind: SubscriptionKind, id: &str) -> String {
    format!("{}/{}", collection(kind), path_segment(id))
}

fn not_found(kind: SubscriptionKind, id: &str) -> ApiError {
    let what = match kind {
        SubscriptionKind::Entity => "subscription",
        SubscriptionKind::CSource => "csource subscription",
    };
    NgsiLdError::not_found(format!("{what} {id} not found")).into()
}

/// Whether the caller may see and change a subscription: an admin of the tenant any, another
/// caller those it made (the same subject); one made by someone else is not found for it.
fn owns(call: &Call, stored: &StoredSubscription) -> bool {
    if call.caller.role_in(&call.tenant) == cityhub_access::Role::Admin {
        return true;
    }
    let made_by = stored.doc.get("subscriber").and_then(|s| s.get("subject")).and_then(Value::as_str);
    call.caller.subject.as_deref().is_some_and(|me| made_by == Some(me))
}

/// The subscription `id` if the caller owns it ([`owns`]).
async fn owned(call: &Call, kind: SubscriptionKind, id: &str) -> Result<StoredSubscription, ApiError> {
    match call.state.store.get_subscription(kind, &call.tenant, id).await? {
        Some(stored) if owns(call, &stored) => Ok(stored),
        _ => Err(not_found(kind, id)),
    }
}

/// The kind of subscription a route serves: `/subscriptions` or `/csourceSubscriptions`; every
/// operation of this module runs for either (`subscriptions::create::<Entities>`).
pub trait Kind: Send + Sync + 'static {
    const KIND: SubscriptionKind;
}

/// `/subscriptions` (clause 5.8).
pub struct Entities;
impl Kind for Entities {
    const KIND: SubscriptionKind = SubscriptionKind::Entity;
}

/// `/csourceSubscriptions` (clause 5.11).
pub struct CSources;
impl Kind for CSources {
    const KIND: SubscriptionKind = SubscriptionKind::CSource;
}

params! {
    QueryParams = &["limit", "offset", "count", "options", "local"];
    RetrieveParams = &["options", "local"];
}

/// Creates a subscription of either kind; a csource subscription notifies at once of the
/// registrations it matches (clause 5.11.2).
pub async fn create<K: Kind>(write: Write<LocalOnly>, LdBody { value, ld }: LdBody<false>) -> ApiResult {
    let (Call { state, headers, tenant, caller, .. }, kind) = (write.call, K::KIND);
    let mut sub = subscription::from_payload(&as_object(value, "a subscription")?, &ld.ctx, ld.given.clone(), &now())?;
    // Notified as what this caller may read when each notification is made.
    sub.subscriber = Some(crate::access::subscriber(&caller));
    // A compound @context becomes an ImplicitlyCreated one the subscription names (clause 5.13).
    if let (None, Some(given)) = (&sub.jsonld_context, ld.given.as_ref().filter(|g| implicit_contexts::is_compound(g)))
    {
        sub.jsonld_context = Some(implicit_contexts::url_for(&state, &headers, given).await?);
    }
    crate::limits::vet_endpoint(&state, "notification endpoint", &sub.notification.endpoint.uri).await?;
    let compiled = compile(&state, kind, &tenant, sub.clone()).await?;
    let doc = serde_json::to_value(&sub).map_err(|e| NgsiLdError::internal(e.to_string()))?;
    let admitting = state.limits.subscription_writes.lock().await;
    crate::limits::check_subscription_room(&state, &tenant).await?;
    state.store.create_subscription(kind, &tenant, &sub.id, doc).await??;
    drop(admitting);
    state.notifier.install(compiled);
    state.notifier.notify_matching_registrations(kind, &tenant, &sub.id).await;
    Ok(created(&location(kind, &sub.id)))
}

/// Compiles for the notifier; an unreachable `jsonldContext` is LdContextNotAvailable, an
/// invalid one BadRequestData.
async fn compile(
    state: &SharedState,
    kind: SubscriptionKind,
    tenant: &str,
    sub: Subscription,
) -> Result<cityhub_notify::Compiled, ApiError> {
    state.notifier.compile(kind, tenant, sub).await.map_err(|e| match e.kind {
        ErrorKind::LdContextNotAvailable | ErrorKind::BadRequestData | ErrorKind::InvalidRequest => e.into(),
        _ => NgsiLdError::bad_request(e.detail).into(),
    })
}

fn render(stored: &StoredSubscription, ld: &Ld, sys_attrs: bool) -> Result<Value, ApiError> {
    let sub: Subscription = serde_json::from_value(stored.doc.clone())
        .map_err(|e| NgsiLdError::internal(format!("stored subscription {} is unreadable: {e}", stored.id)))?;
    Ok(Value::Object(subscription::render(stored.kind, &sub, &stored.status, &ld.ctx, sys_attrs)))
}

/// GET /subscriptions/{id}
pub async fn retrieve<K: Kind>(
    SubscriptionId(id): SubscriptionId,
    Read { call, ld, .. }: Read<RetrieveParams>,
    Accepting(accept): Accepting<false>,
) -> ApiResult {
    let stored = owned(&call, K::KIND, &id).await?;
    Ok(ld_json(StatusCode::OK, render(&stored, &ld, call.params.sys_attrs_only()?)?, &ld, accept))
}

/// GET /subscriptions
pub async fn query<K: Kind>(
    Read { call, ld, .. }: Read<QueryParams>,
    Accepting(accept): Accepting<false>,
) -> ApiResult {
    let mut all = call.state.store.list_subscriptions(Some(K::KIND), Some(&call.tenant)).await?;
    all.retain(|s| owns(&call, s));
    let (Call { state, params, .. }, kind) = (call, K::KIND);
    let paging = crate::request::page(&params, &state.config)?;
    let cityhub_storage::Paging { offset, limit, count } = paging;
    let sys_attrs = params.sys_attrs_only()?;
    let total = all.len();
    let page: Vec<Value> =
        all.iter().skip(offset).take(limit).map(|s| render(s, &ld, sys_attrs)).collect::<Result<_, _>>()?;
    let mut response = ld_json(StatusCode::OK, Value::Array(page), &ld, accept);
    if count {
        response = with_header(response, "ngsild-results-count", &total.to_string());
    }
    let has_next = offset + limit < total;
    Ok(page_links(response, collection(kind), &params, paging, has_next, LinkStyle::Subscriptions))
}

/// Updates a subscription of either kind; a csource subscription then notifies of the
/// registrations it matches as updated.
pub async fn update<K: Kind>(
    SubscriptionId(id): SubscriptionId,
    update: Update<LocalOnly>,
    LdBody { value, ld }: LdBody<true>,
) -> ApiResult {
    let stored = owned(&update, K::KIND, &id).await?;
    let (Call { state, headers, tenant, .. }, kind) = (update.call, K::KIND);
    let fragment = as_object(value, "a subscription fragment")?;
    let current: Subscription = serde_json::from_value(stored.doc)
        .map_err(|e| NgsiLdError::internal(format!("stored subscription {id} is unreadable: {e}")))?;
    // The fragment's names are read in the fragment's own context.
    let mut next = subscription::patch(&current, &fragment, &ld.ctx, &now())?;
    if ld.given.is_some() {
        next.context = ld.given.clone();
    }
    // An ImplicitlyCreated jsonldContext follows the subscription's new compound @context,
    // unless the fragment names a jsonldContext itself.
    let replaced = follow_implicit_context(&state, &headers, &current, &mut next, &fragment, &ld).await?;
    crate::limits::vet_endpoint(&state, "notification endpoint", &next.notification.endpoint.uri).await?;
    let compiled = compile(&state, kind, &tenant, next.clone()).await?;
    let doc = serde_json::to_value(&next).map_err(|e| NgsiLdError::internal(e.to_string()))?;
    if !state.store.replace_subscription(kind, &tenant, &id, doc).await? {
        return Err(not_found(kind, &id));
    }
    state.notifier.install(compiled);
    state.notifier.notify_matching_registrations(kind, &tenant, &id).await;
    if let Some(old) = replaced {
        implicit_contexts::release(&state, &old).await?;
    }
    Ok(no_content())
}

/// Points `next.jsonldContext` at the ImplicitlyCreated context of its new compound @context when
/// it had none or had an implicit one; answers the implicit context it stopped naming.
async fn follow_implicit_context(
    state: &SharedState,
    headers: &HeaderMap,
    current: &Subscription,
    next: &mut Subscription,
    fragment: &serde_json::Map<String, Value>,
    ld: &Ld,
) -> Result<Option<String>, ApiError> {
    if fragment.contains_key("jsonldContext") {
        return Ok(match &current.jsonld_context {
            Some(old) if next.jsonld_context.as_ref() != Some(old) => Some(old.clone()),
            _ => None,
        });
    }
    let Some(given) = ld.given.as_ref().filter(|g| implicit_contexts::is_compound(g)) else { return Ok(None) };
    let was_implicit = match &current.jsonld_context {
        None => true,
        Some(url) => implicit_contexts::is_implicit(state, url).await?,
    };
    if !was_implicit {
        return Ok(None);
    }
    let url = implicit_contexts::url_for(state, headers, given).await?;
    let old = next.jsonld_context.replace(url.clone());
    Ok(old.filter(|o| *o != url))
}

/// DELETE /subscriptions/{id}
pub async fn delete<K: Kind>(SubscriptionId(id): SubscriptionId, update: Update<LocalOnly>) -> ApiResult {
    let stored = owned(&update, K::KIND, &id).await?;
    let (Call { state, tenant, .. }, kind) = (update.call, K::KIND);
    let implicit = stored.doc.get("jsonldContext").and_then(Value::as_str).map(str::to_owned);
    if !state.store.delete_subscription(kind, &tenant, &id).await? {
        return Err(not_found(kind, &id));
    }
    state.notifier.remove(kind, &tenant, &id);
    if let Some(url) = implicit {
        implicit_contexts::release(&state, &url).await?;
    }
    Ok(no_content())
}
