//! The axum extractors a handler opens with: what it reads of a request before it calls the core.
//!
//! A handler names what it needs in its arguments and gets it checked; each extractor refuses
//! with the ProblemDetails of [`crate::request`] (the same types, statuses and details as when
//! the handlers read these themselves). Extractors run in argument order, the body last:
//!
//! - a path id first ([`EntityId`], [`EntityAttr`], [`InstancePath`], [`RegistrationId`],
//!   [`SubscriptionId`]): a malformed id is refused before anything else is read;
//! - then the request itself: [`Read`] (a read: the parameters the operation knows, a tenant
//!   that exists, the `Link` @context), [`Write`] (a write: the parameters, any tenant — a write
//!   may create it) or [`Update`] (a write on something that must exist: the tenant must too);
//! - [`Accepting`] the media type to answer in (406 when none fits);
//! - the body: [`LdBody`] (a JSON object with its @context, clause 6.3.5) or [`JsonBody`] (JSON of
//!   any shape; the batch operations read each item's @context themselves).
//!
//! The parameters an operation knows are a type naming them ([`Allowed`], declared with
//! [`params!`]); an unknown one is `InvalidRequest`.
//!
//! Access: every request's [`Caller`] is read in one place, [`caller`], and whether the caller
//! may do the route's action in the tenant it names is decided in one place, [`admit`], which
//! [`crate::access::gate`] calls for every routed request before any extractor runs; [`Call`]
//! carries its answer (`scope`: what the caller may see) to the handler.

use std::marker::PhantomData;

use axum::extract::{FromRequest, FromRequestParts, Path, Request};
use axum::http::request::Parts;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use serde_json::Value;

use cityhub_access::Scope;

use crate::access::Admitted;
use crate::error::ApiError;
use crate::request::{self, Accept, Ld, Params};
use crate::SharedState;

/// The query parameters one operation understands.
pub trait Allowed: Send + Sync {
    const NAMES: &'static [&'static str];
}

/// Declares a type naming the query parameters of an operation: `params!(Create = &["local"]);`.
macro_rules! params {
    ($($(#[$meta:meta])* $name:ident = $names:expr;)+) => {$(
        $(#[$meta])*
        pub struct $name;
        impl $crate::extract::Allowed for $name {
            const NAMES: &'static [&'static str] = $names;
        }
    )+};
}
pub(crate) use params;

params! {
    /// An operation that takes no query parameter.
    NoParams = &[];
    /// An operation whose only parameter is `local`.
    LocalOnly = &["local"];
}

/// Who sends a request: its credentials checked ([`cityhub_access::Identity`]), shared with the
/// identify layer's cache (cloning a `Caller` copies a pointer).
pub type Caller = std::sync::Arc<cityhub_access::Identity>;

/// The caller of a request: the one place a request's identity is read, from what the identify
/// layer (`crate::identify`) put in its extensions; a request that did not pass it is anonymous
/// (fail closed).
pub fn caller(parts: &Parts) -> Result<Caller, ApiError> {
    Ok(parts.extensions.get::<Caller>().cloned().unwrap_or_else(|| Caller::new(cityhub_access::Identity::anonymous())))
}

/// Whether the caller of `parts` may do `action` (the route's, from [`crate::access::TABLE`])
/// in the tenant it names, and what it may see there: **the one place that decides access**.
/// [`crate::access::gate`] calls it for every routed request.
pub async fn admit(state: &SharedState, parts: &Parts, action: cityhub_access::Action) -> Result<Admitted, ApiError> {
    let caller = caller(parts)?;
    let tenant = admitted_tenant(parts)?;
    let needs_policies =
        action.group.holds_data() && !action.write && caller.role_in(&tenant) != cityhub_access::Role::Admin;
    let policies = match needs_policies {
        true => state.policies.of(&tenant).await?,
        false => Default::default(),
    };
    let scope = cityhub_access::decide(&caller, &tenant, action, &policies)?;
    Ok(Admitted { scope })
}

/// What every handler knows of its request: the state, the headers (forwarding reads `Via`,
/// `Link`, the tenant), the caller, what it may see (`scope`), the checked parameters and the
/// tenant (admitted).
pub struct Call {
    pub state: SharedState,
    pub headers: HeaderMap,
    pub caller: Caller,
    /// What the caller may see of the tenant's data ([`admit`]'s answer).
    pub scope: Scope,
    pub params: Params,
    pub tenant: String,
}

/// The decision [`admit`] made for this request; none (a route outside the gate) refuses.
pub fn admitted(parts: &Parts) -> Result<Admitted, ApiError> {
    parts.extensions.get::<Admitted>().cloned().ok_or_else(|| {
        ApiError(ngsild_core::NgsiLdError::internal(
            "this route is not behind the access gate, so it is refused: add the gate layer around it",
        ))
    })
}

/// The routes whose handlers take the tenant from `fiware-service` when `NGSILD-Tenant` is absent,
/// as FIWARE's IoT Agent tooling and Orion v2 send it (cityhub-ingest).
const FIWARE_SERVICE_ROUTES: [&str; 3] = ["/iot/", "/cityhub/v1/ingest/", "/cityhub/v1/ngsiv2/"];

/// The tenant a request is decided for: `NGSILD-Tenant`, and on [`FIWARE_SERVICE_ROUTES`] also
/// `fiware-service`, so that the decision is made for the tenant the handler writes in.
fn admitted_tenant(parts: &Parts) -> Result<String, ApiError> {
    let tenant = request::tenant(&parts.headers)?;
    let path = parts.uri.path();
    if !tenant.is_empty() || !FIWARE_SERVICE_ROUTES.iter().any(|prefix| path.starts_with(prefix)) {
        return Ok(tenant);
    }
    let mut alias = HeaderMap::new();
    if let Some(service) = parts.headers.get("fiware-service") {
        alias.insert(request::TENANT_HEADER, service.clone());
    }
    request::tenant(&alias)
}

/// Reads the parameters `P` allows, the caller, and the tenant (`existing`: it must exist).
async fn call<P: Allowed>(parts: &Parts, state: &SharedState, existing: bool) -> Result<Call, ApiError> {
    let params = Params::parse(parts.uri.query(), P::NAMES)?;
    let caller = caller(parts)?;
    let Admitted { scope, .. } = admitted(parts)?;
    let tenant = match existing {
        true => request::existing_tenant(state, &parts.headers).await?,
        false => request::tenant(&parts.headers)?,
    };
    Ok(Call { state: state.clone(), headers: parts.headers.clone(), caller, scope, params, tenant })
}

/// Declares a request kind: a [`Call`] (dereferenced to), read with the parameters `P` allows.
macro_rules! call_kind {
    ($($(#[$meta:meta])* $name:ident { existing: $existing:expr $(, $field:ident: $ty:ty = $read:expr)? };)+) => {$(
        $(#[$meta])*
        pub struct $name<P> {
            pub call: Call,
            $(pub $field: $ty,)?
            allowed: PhantomData<P>,
        }

        impl<P: Allowed> FromRequestParts<SharedState> for $name<P> {
            type Rejection = ApiError;

            async fn from_request_parts(parts: &mut Parts, state: &SharedState) -> Result<Self, ApiError> {
                let call = call::<P>(parts, state, $existing).await?;
                $(let $field = $read(&call).await?;)?
                Ok($name { call, $($field,)? allowed: PhantomData })
            }
        }

        impl<P> std::ops::Deref for $name<P> {
            type Target = Call;

            fn deref(&self) -> &Call {
                &self.call
            }
        }
    )+};
}

async fn link_ld(call: &Call) -> Result<Ld, ApiError> {
    request::header_ld(&call.state, &call.headers).await
}

call_kind! {
    /// A read: a tenant that exists (NonexistentTenant otherwise) and the @context of the `Link`
    /// header (the core context without one).
    Read { existing: true, ld: Ld = link_ld };
    /// A read whose answer is the same for every tenant: any valid tenant name, and the @context
    /// of the `Link` header.
    Look { existing: false, ld: Ld = link_ld };
    /// A write that may create its tenant.
    Write { existing: false };
    /// A write on something that must exist: its tenant must too.
    Update { existing: true };
}

/// The parameters alone, for what no tenant owns (reading the hub's @contexts).
pub struct Checked<P> {
    pub params: Params,
    allowed: PhantomData<P>,
}

impl<P: Allowed, S: Send + Sync> FromRequestParts<S> for Checked<P> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        Ok(Checked { params: Params::parse(parts.uri.query(), P::NAMES)?, allowed: PhantomData })
    }
}

/// The media type to answer in, from `Accept`; `GEO`: whether application/geo+json may be.
pub struct Accepting<const GEO: bool>(pub Accept);

impl<S: Send + Sync, const GEO: bool> FromRequestParts<S> for Accepting<GEO> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        request::accept(&parts.headers, GEO).map(Accepting)
    }
}

/// A path segment as axum decodes it; a path axum cannot read keeps axum's own rejection (the
/// guard layer rewrites it as a ProblemDetails).
async fn path<T, S>(parts: &mut Parts, state: &S) -> Result<T, Response>
where
    T: serde::de::DeserializeOwned + Send,
    S: Send + Sync,
{
    Path::<T>::from_request_parts(parts, state).await.map(|Path(v)| v).map_err(IntoResponse::into_response)
}

fn checked_uri(id: &str, what: &str) -> Result<(), ApiError> {
    Ok(ngsild_core::validate::check_uri(id, what)?)
}

/// Declares the extractor of an id in the path, checked as a URI named `what` in its refusal.
macro_rules! path_id {
    ($($(#[$meta:meta])* $name:ident = $what:expr;)+) => {$(
        $(#[$meta])*
        pub struct $name(pub String);
        impl<S: Send + Sync> FromRequestParts<S> for $name {
            type Rejection = Response;

            async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Response> {
                let id: String = path(parts, state).await?;
                checked_uri(&id, $what).map_err(IntoResponse::into_response)?;
                Ok($name(id))
            }
        }
    )+};
}

path_id! {
    /// `{id}` of `/entities/{id}` and `/temporal/entities/{id}`.
    EntityId = "the entity id";
    /// `{id}` of `/csourceRegistrations/{id}`.
    RegistrationId = "the registration id";
    /// `{id}` of `/subscriptions/{id}` and `/csourceSubscriptions/{id}`.
    SubscriptionId = "the subscription id";
    /// `{id}` of `/cityhub/v1/policies/{id}`.
    PolicyId = "the policy id";
}

/// `{id}` and `{attr}` of `/entities/{id}/attrs/{attr}` (the attribute is read by the handler,
/// in the request's @context).
pub struct EntityAttr(pub String, pub String);

impl<S: Send + Sync> FromRequestParts<S> for EntityAttr {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Response> {
        let (id, attr): (String, String) = path(parts, state).await?;
        checked_uri(&id, "the entity id").map_err(IntoResponse::into_response)?;
        Ok(EntityAttr(id, attr))
    }
}

/// `{id}`, `{attr}` and `{instanceId}` of `/temporal/entities/{id}/attrs/{attr}/{instanceId}`.
pub struct InstancePath(pub String, pub String, pub String);

impl<S: Send + Sync> FromRequestParts<S> for InstancePath {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Response> {
        let (id, attr, instance): (String, String, String) = path(parts, state).await?;
        checked_uri(&id, "the entity id").map_err(IntoResponse::into_response)?;
        checked_uri(&instance, "the entity id").map_err(IntoResponse::into_response)?;
        Ok(InstancePath(id, attr, instance))
    }
}

/// The headers and the body bytes; a body axum cannot read (too large, cut off) keeps axum's own
/// rejection.
async fn bytes<S: Send + Sync>(request: Request, state: &S) -> Result<(HeaderMap, Bytes), Response> {
    let headers = request.headers().clone();
    let bytes = Bytes::from_request(request, state).await.map_err(IntoResponse::into_response)?;
    Ok((headers, bytes))
}

/// A JSON object body and its @context (clause 6.3.5: application/json takes it from `Link`,
/// application/ld+json carries it); `MERGE_PATCH`: whether application/merge-patch+json may be
/// sent. `value` no longer holds the `@context` of an application/ld+json body.
pub struct LdBody<const MERGE_PATCH: bool> {
    pub value: Value,
    pub ld: Ld,
}

impl<const MERGE_PATCH: bool> FromRequest<SharedState> for LdBody<MERGE_PATCH> {
    type Rejection = Response;

    async fn from_request(request: Request, state: &SharedState) -> Result<Self, Response> {
        let (headers, body) = bytes(request, state).await?;
        let (value, ld) =
            request::body_ld(state, &headers, &body, MERGE_PATCH).await.map_err(IntoResponse::into_response)?;
        Ok(LdBody { value, ld })
    }
}

/// A JSON body of any shape, its media type checked; `is_ld`: it is application/ld+json.
pub struct JsonBody {
    pub value: Value,
    pub is_ld: bool,
}

impl<S: Send + Sync> FromRequest<S> for JsonBody {
    type Rejection = Response;

    async fn from_request(request: Request, state: &S) -> Result<Self, Response> {
        let (headers, body) = bytes(request, state).await?;
        let (value, is_ld) = request::read_json_body(&headers, &body, false).map_err(IntoResponse::into_response)?;
        Ok(JsonBody { value, is_ld })
    }
}
