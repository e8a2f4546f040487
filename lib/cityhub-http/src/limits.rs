//! Request-level limits that keep one client from growing the hub without bound. Each is a
//! `cityhub serve` flag ([`crate::HttpConfig`]), and each refusal names the limit, its value and
//! its flag, so a client knows what to change and an operator what to raise:
//!
//! - **list lengths** (`--max-list-items`): `attrs`, `pick`, `omit`, `id` and `type` of a request
//!   (query string or `Query` body) hold at most that many items. Refused as **403
//!   TooComplexQuery**: Table 5.5.2-1 defines it for a query too complex to be served, which a
//!   query naming a hundred thousand attributes is;
//! - **tenants** (`--max-tenants`): a tenant comes into being when something is first written to
//!   it (clause 4.14); once the hub holds that many tenants besides the default one, a write that
//!   would create another is refused as **422 OperationNotSupported**: the request is well formed
//!   (so not BadRequestData) and the tenant does not exist yet (NonexistentTenant is for reads of
//!   one): what the hub will not do is the implicit creation of one more tenant;
//! - **subscriptions per tenant** (`--max-subscriptions-per-tenant`, entity and csource
//!   subscriptions together) and **registrations per tenant** (`--max-registrations-per-tenant`):
//!   creating one more is refused as **422 OperationNotSupported** for the same reason; deleting
//!   one makes room again.
//!
//! - **egress** (`--egress-allow`, `--egress-deny`, `cityhub_egress`): a subscription (either
//!   kind) or a registration whose endpoint the rules refuse is **400 BadRequestData** at
//!   creation and at every update, naming the endpoint, why, and the flag that would allow it.
//!
//! The @context limits (document size, documents per request, redirects, cache memory) are the
//! [`crate::contexts::ContextService`]'s.

use std::collections::HashSet;

use axum::extract::{Request, State};
use axum::http::Method;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use cityhub_storage::Store;
use ngsild_core::{ErrorKind, NgsiLdError};

use crate::error::ApiError;
use crate::request::Params;
use crate::SharedState;
pub use ngsild_core::limits::check_lists;

/// Checks the list parameters of every request's query string (a `Query` body's are checked
/// where it is read).
pub async fn bound_lists(State(state): State<SharedState>, request: Request, next: Next) -> Response {
    if let Some(query) = request.uri().query() {
        let pairs: Vec<(String, String)> = form_urlencoded::parse(query.as_bytes()).into_owned().collect();
        if let Err(e) = check_lists(&Params::from_pairs(pairs), state.config.max_list_items) {
            return ApiError(e).into_response();
        }
    }
    next.run(request).await
}

/// The tenants the hub holds or is about to create, bounded by `--max-tenants`.
pub struct TenantGate {
    max: usize,
    /// Loaded from the store on first use; then every tenant admitted since.
    known: tokio::sync::Mutex<Option<HashSet<String>>>,
}

impl TenantGate {
    pub fn new(max: usize) -> Self {
        TenantGate { max, known: tokio::sync::Mutex::new(None) }
    }

    /// Lets a write to `tenant` through; answers whether it is a tenant that did not exist.
    async fn admit(&self, store: &dyn Store, tenant: &str) -> Result<bool, NgsiLdError> {
        let mut known = self.known.lock().await;
        if known.is_none() {
            let existing = store.tenants().await?;
            *known = Some(existing.into_iter().filter(|t| !t.is_empty()).collect());
        }
        let known = known.get_or_insert_with(HashSet::new);
        if known.contains(tenant) {
            return Ok(false);
        }
        if store.tenant_exists(tenant).await? {
            known.insert(tenant.to_owned());
            return Ok(false);
        }
        if known.len() >= self.max {
            return Err(NgsiLdError::new(
                ErrorKind::OperationNotSupported,
                format!(
                    "tenant {tenant:?} does not exist, and this write would create it, but the hub already holds \
                     its maximum of {} tenants (set by --max-tenants): use an existing tenant",
                    self.max
                ),
            ));
        }
        known.insert(tenant.to_owned());
        Ok(true)
    }

    /// Learns of a tenant that came into being (perhaps at another hub on the same store).
    pub async fn learn(&self, tenant: &str) {
        if let Some(known) = self.known.lock().await.as_mut() {
            known.insert(tenant.to_owned());
        }
    }

    /// Forgets what it knew; the store is read again on next use.
    pub async fn forget_all(&self) {
        *self.known.lock().await = None;
    }

    /// Forgets a tenant admitted for a write that failed, unless something created it meanwhile.
    async fn release(&self, store: &dyn Store, tenant: &str) {
        let mut known = self.known.lock().await;
        if !store.tenant_exists(tenant).await.unwrap_or(true) {
            if let Some(known) = known.as_mut() {
                known.remove(tenant);
            }
        }
    }
}

/// Refuses a write that would create a tenant past `--max-tenants`. Reads (`GET`, and the
/// `POST .../query` forms) never create a tenant and pass.
pub async fn admit_tenants(State(state): State<SharedState>, request: Request, next: Next) -> Response {
    let writes = matches!(*request.method(), Method::POST | Method::PUT | Method::PATCH)
        && !request.uri().path().ends_with("/query")
        && !request.uri().path().contains("/jsonldContexts");
    if !writes {
        return next.run(request).await;
    }
    let tenant = match crate::request::tenant(request.headers()) {
        Ok(tenant) if !tenant.is_empty() => tenant,
        _ => return next.run(request).await,
    };
    let gate = &state.limits.tenants;
    let new = match gate.admit(state.store.as_ref(), &tenant).await {
        Ok(new) => new,
        Err(e) => return ApiError(e).into_response(),
    };
    let response = next.run(request).await;
    if new && !response.status().is_success() {
        gate.release(state.store.as_ref(), &tenant).await;
    }
    response
}

/// For routes that name their tenant otherwise (cityhub-ingest reads `fiware-service` too): lets
/// a write to `tenant` through `--max-tenants` as [`admit_tenants`] does; answers whether the
/// tenant is new, so that a failed write gives it back with [`release_tenant`].
pub async fn admit_tenant(state: &SharedState, tenant: &str) -> Result<bool, ApiError> {
    if tenant.is_empty() {
        return Ok(false);
    }
    Ok(state.limits.tenants.admit(state.store.as_ref(), tenant).await?)
}

/// Gives back a tenant [`admit_tenant`] admitted for a write that failed.
pub async fn release_tenant(state: &SharedState, tenant: &str) {
    state.limits.tenants.release(state.store.as_ref(), tenant).await;
}

/// The limits' shared state.
pub struct Limits {
    pub tenants: TenantGate,
    /// Held from counting a tenant's subscriptions to storing a new one, so concurrent creations
    /// cannot pass the limit together.
    pub subscription_writes: tokio::sync::Mutex<()>,
}

impl Limits {
    pub fn new(config: &crate::HttpConfig) -> Self {
        Limits { tenants: TenantGate::new(config.max_tenants), subscription_writes: tokio::sync::Mutex::new(()) }
    }
}

/// Refuses one more subscription in a tenant holding `max` of them (both kinds together).
pub async fn check_subscription_room(state: &SharedState, tenant: &str) -> Result<(), ApiError> {
    let max = state.config.max_subscriptions_per_tenant;
    let held = state.store.list_subscriptions(None, Some(tenant)).await?.len();
    if held >= max {
        return Err(NgsiLdError::new(
            ErrorKind::OperationNotSupported,
            format!(
                "the tenant already holds {held} subscriptions (entity and csource subscriptions together), \
                 the most the hub keeps for one tenant (--max-subscriptions-per-tenant is {max}): \
                 delete subscriptions no longer needed first"
            ),
        )
        .into());
    }
    Ok(())
}

/// Refuses one more registration in a tenant holding `held` of them.
pub fn check_registration_room(state: &SharedState, held: usize) -> Result<(), ApiError> {
    let max = state.config.max_registrations_per_tenant;
    if held >= max {
        return Err(NgsiLdError::new(
            ErrorKind::OperationNotSupported,
            format!(
                "the tenant already holds {held} context source registrations, the most the hub keeps for one \
                 tenant (--max-registrations-per-tenant is {max}): delete registrations no longer needed first"
            ),
        )
        .into());
    }
    Ok(())
}

/// Refuses an endpoint the egress rules refuse (`what`: "notification endpoint", ...).
pub async fn vet_endpoint(state: &SharedState, what: &str, uri: &str) -> Result<(), ApiError> {
    match state.config.egress.vet(uri).await {
        Ok(()) => Ok(()),
        Err(refusal) => Err(NgsiLdError::bad_request(format!(
            "the {what} {uri} is refused by the hub's egress rules: {}",
            refusal.detail()
        ))
        .into()),
    }
}
