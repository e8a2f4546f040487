//! Where access is decided for every route: the table of actions, the gate every routed request
//! passes, and the tenants' policies as this hub knows them.
//!
//! # How a request is decided
//!
//! The router matches the request; [`gate`] (a layer around every route, those other crates
//! merge in included) looks the matched route and the method up in [`TABLE`] and hands the
//! [`Action`] to [`crate::extract::admit`], which reads the caller and the tenant and asks
//! [`cityhub_access::decide`] with the tenant's policies. A refusal is a 403 ProblemDetails
//! naming the role needed and the tenant; an admission goes on with an [`Admitted`] in the
//! request's extensions, which the extractors put in [`crate::extract::Call`] (`call.scope`:
//! what the caller may see, which handlers apply to what they read).
//!
//! # A route no row covers is refused
//!
//! A route whose path has no row answers 403 naming the route ("no access rule covers it"),
//! a method the path's rows do not name answers 405 with the methods they do. The unit test
//! `every_route_has_an_action` walks this crate's routes and fails on one without a row. A new
//! route is covered by one row `(METHOD, "/path/{param}", Action)` in [`TABLE`] (under
//! `/ngsi-ld/v1`), [`ROOT_TABLE`] (this crate's other paths, written whole) or [`MERGED_TABLE`]
//! (the routes other crates merge in with `app_with`, whose black-box tests fail without it).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::extract::{MatchedPath, Request, State};
use axum::http::Method;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use cityhub_access::{Action, Group, Identity, Policy, Scope, Via};
use cityhub_notify::{Audience, Subscriber};
use cityhub_storage::{DynStore, RecordKind};

use crate::error::ApiError;
use crate::SharedState;

const fn r(group: Group) -> Action {
    Action::read(group)
}

const fn w(group: Group) -> Action {
    Action::write(group)
}

const V1: &str = "/ngsi-ld/v1";

/// Every route and method with the action it does. Paths are the router's own (`{id}`), the
/// NGSI-LD ones under `/ngsi-ld/v1` written without it.
pub const TABLE: &[(&str, &str, Action)] = {
    use Group::*;
    &[
        ("POST", "/entities", w(Entities)),
        ("GET", "/entities", r(Entities)),
        ("DELETE", "/entities", w(Purge)),
        ("PUT", "/entities", w(Entities)),
        ("PATCH", "/entities", w(Entities)),
        ("GET", "/entities/{id}", r(Entities)),
        ("DELETE", "/entities/{id}", w(Entities)),
        ("PUT", "/entities/{id}", w(Entities)),
        ("PATCH", "/entities/{id}", w(Entities)),
        ("POST", "/entities/{id}/attrs", w(Entities)),
        ("PATCH", "/entities/{id}/attrs", w(Entities)),
        ("PATCH", "/entities/{id}/attrs/{attr}", w(Entities)),
        ("PUT", "/entities/{id}/attrs/{attr}", w(Entities)),
        ("DELETE", "/entities/{id}/attrs/{attr}", w(Entities)),
        ("POST", "/entityOperations/create", w(Batch)),
        ("POST", "/entityOperations/upsert", w(Batch)),
        ("POST", "/entityOperations/update", w(Batch)),
        ("POST", "/entityOperations/delete", w(Batch)),
        ("POST", "/entityOperations/merge", w(Batch)),
        ("POST", "/entityOperations/query", r(Entities)),
        ("GET", "/types", r(Discovery)),
        ("GET", "/types/{type}", r(Discovery)),
        ("GET", "/attributes", r(Discovery)),
        ("GET", "/attributes/{attr}", r(Discovery)),
        ("POST", "/temporal/entities", w(Temporal)),
        ("GET", "/temporal/entities", r(Temporal)),
        ("GET", "/temporal/entities/{id}", r(Temporal)),
        ("DELETE", "/temporal/entities/{id}", w(Temporal)),
        ("POST", "/temporal/entities/{id}/attrs", w(Temporal)),
        ("DELETE", "/temporal/entities/{id}/attrs/{attr}", w(Temporal)),
        ("PATCH", "/temporal/entities/{id}/attrs/{attr}/{instance}", w(Temporal)),
        ("DELETE", "/temporal/entities/{id}/attrs/{attr}/{instance}", w(Temporal)),
        ("POST", "/temporal/entityOperations/query", r(Temporal)),
        ("POST", "/subscriptions", w(Subscriptions)),
        ("GET", "/subscriptions", r(Subscriptions)),
        ("GET", "/subscriptions/{id}", r(Subscriptions)),
        ("PATCH", "/subscriptions/{id}", w(Subscriptions)),
        ("DELETE", "/subscriptions/{id}", w(Subscriptions)),
        ("GET", "/jsonldContexts", r(Contexts)),
        ("POST", "/jsonldContexts", w(Contexts)),
        ("GET", "/jsonldContexts/{id}", r(Contexts)),
        ("DELETE", "/jsonldContexts/{id}", w(Contexts)),
        ("GET", "/info/sourceIdentity", r(Info)),
        ("POST", "/csourceRegistrations", w(Registrations)),
        ("GET", "/csourceRegistrations", r(Registrations)),
        ("GET", "/csourceRegistrations/{id}", r(Registrations)),
        ("PATCH", "/csourceRegistrations/{id}", w(Registrations)),
        ("DELETE", "/csourceRegistrations/{id}", w(Registrations)),
        ("POST", "/csourceSubscriptions", w(CsourceSubscriptions)),
        ("GET", "/csourceSubscriptions", r(CsourceSubscriptions)),
        ("GET", "/csourceSubscriptions/{id}", r(CsourceSubscriptions)),
        ("PATCH", "/csourceSubscriptions/{id}", w(CsourceSubscriptions)),
        ("DELETE", "/csourceSubscriptions/{id}", w(CsourceSubscriptions)),
    ]
};

/// The routes outside `/ngsi-ld/v1`, their paths written whole.
pub const ROOT_TABLE: &[(&str, &str, Action)] = {
    use Group::*;
    &[
        ("GET", "/health", r(Health)),
        // The OpenAPI document (openapi.rs): public like the UI's files.
        ("GET", "/openapi.json", r(Info)),
        // Who the hub takes the caller for: anyone may ask.
        ("GET", "/auth/whoami", r(Health)),
        ("GET", "/cityhub/v1/keys", r(Keys)),
        ("POST", "/cityhub/v1/keys", w(Keys)),
        ("GET", "/cityhub/v1/keys/{id}", r(Keys)),
        ("DELETE", "/cityhub/v1/keys/{id}", w(Keys)),
        ("GET", "/cityhub/v1/policies", r(Policies)),
        ("POST", "/cityhub/v1/policies", w(Policies)),
        ("GET", "/cityhub/v1/policies/{id}", r(Policies)),
        ("PUT", "/cityhub/v1/policies/{id}", w(Policies)),
        ("DELETE", "/cityhub/v1/policies/{id}", w(Policies)),
        ("GET", "/cityhub/v1/audit", r(Audit)),
        // Whether the hub serves: anyone may ask (load balancers, orchestrators).
        ("GET", "/ready", r(Health)),
        // Prometheus text: the gate lets it through, the handler admits admins of the default
        // tenant and a scraper holding --metrics-token (ops.rs).
        ("GET", "/metrics", r(Health)),
        // The browser UI (cityhub-ui, ui.rs): its files are public, what it shows is read through
        // the API under the caller's own identity.
        ("GET", "/", r(Info)),
        ("GET", "/ui/config.json", r(Info)),
        ("GET", "/ui/{*path}", r(Info)),
        ("GET", "/cityhub/v1/live", r(Streams)),
        ("GET", "/cityhub/v1/tenants", r(Tenants)),
        ("GET", "/cityhub/v1/dashboards", r(Streams)),
        ("POST", "/cityhub/v1/dashboards", w(Streams)),
        ("GET", "/cityhub/v1/dashboards/{id}", r(Streams)),
        ("PUT", "/cityhub/v1/dashboards/{id}", w(Streams)),
        ("DELETE", "/cityhub/v1/dashboards/{id}", w(Streams)),
        // A read-only share link: whoever holds the token.
        ("GET", "/cityhub/v1/shared/{token}", r(Info)),
    ]
};

/// The routes other crates merge in (`app_with`), their paths written whole. The unit test of
/// this crate cannot see them served; their black-box tests are what fail when a row is missing
/// (the gate refuses the route with 403).
pub const MERGED_TABLE: &[(&str, &str, Action)] = {
    use Group::*;
    &[
        // Device ingestion (cityhub-ingest): provisioning is the admins'; measurements carry
        // their service group's API key; an Orion v2 feeding the hub writes as an editor.
        ("POST", "/iot/services", w(Admin)),
        ("GET", "/iot/services", r(Admin)),
        ("PUT", "/iot/services", w(Admin)),
        ("DELETE", "/iot/services", w(Admin)),
        ("POST", "/iot/devices", w(Admin)),
        ("GET", "/iot/devices", r(Admin)),
        ("GET", "/iot/devices/{id}", r(Admin)),
        ("PUT", "/iot/devices/{id}", w(Admin)),
        ("DELETE", "/iot/devices/{id}", w(Admin)),
        ("POST", "/iot/json", w(Southbound)),
        ("POST", "/iot/d", w(Southbound)),
        ("GET", "/cityhub/v1/ingest/status", r(Admin)),
        ("GET", "/cityhub/v1/ingest/dead-letters", r(Admin)),
        ("POST", "/cityhub/v1/ngsiv2/notify", w(Batch)),
        // Open-data pollers (cityhub-pollers).
        ("GET", "/cityhub/v1/pollers", r(Admin)),
        ("POST", "/cityhub/v1/pollers", w(Admin)),
        ("GET", "/cityhub/v1/pollers/{id}", r(Admin)),
        ("PUT", "/cityhub/v1/pollers/{id}", w(Admin)),
        ("DELETE", "/cityhub/v1/pollers/{id}", w(Admin)),
        // The catalogue (cityhub-catalog): its metadata is public, downloads are decided by the
        // dataset's access level and the caller's grants (cityhub_catalog::grant), access
        // requests are anyone's with an identity, their decisions the admins'; models and
        // datasets are the admins' to change.
        ("GET", "/catalog", r(Info)),
        ("GET", "/api/3/action/{action}", r(Info)),
        ("POST", "/api/3/action/{action}", r(Info)),
        ("GET", "/api/action/{action}", r(Info)),
        ("POST", "/api/action/{action}", r(Info)),
        ("GET", "/cityhub/v1/models", r(Info)),
        ("POST", "/cityhub/v1/models", w(Admin)),
        ("GET", "/cityhub/v1/models/{type}", r(Info)),
        ("PUT", "/cityhub/v1/models/{type}", w(Admin)),
        ("DELETE", "/cityhub/v1/models/{type}", w(Admin)),
        ("GET", "/cityhub/v1/datasets", r(Info)),
        ("POST", "/cityhub/v1/datasets", w(Admin)),
        ("GET", "/cityhub/v1/datasets/{name}", r(Info)),
        ("PUT", "/cityhub/v1/datasets/{name}", w(Admin)),
        ("DELETE", "/cityhub/v1/datasets/{name}", w(Admin)),
        ("GET", "/cityhub/v1/datasets/{name}/download", r(OpenData)),
        ("GET", "/cityhub/v1/access-requests", r(OpenData)),
        ("POST", "/cityhub/v1/access-requests", w(OpenData)),
        ("GET", "/cityhub/v1/access-requests/{id}", r(OpenData)),
        ("POST", "/cityhub/v1/access-requests/{id}/approve", w(Admin)),
        ("POST", "/cityhub/v1/access-requests/{id}/refuse", w(Admin)),
        ("POST", "/cityhub/v1/access-requests/{id}/revoke", w(Admin)),
        ("GET", "/cityhub/v1/access-requests/{id}/usage", r(Admin)),
        // The ledger (cityhub-transparency): key, checkpoints and proofs are hashes and
        // signatures, public like the hub's info; the leaves hold the tenant's data.
        ("GET", "/ledger/key", r(Info)),
        ("GET", "/ledger/checkpoint", r(Info)),
        ("GET", "/ledger/proof/inclusion", r(Info)),
        ("GET", "/ledger/proof/consistency", r(Info)),
        ("GET", "/ledger/leaves", r(Admin)),
        ("GET", "/ledger/witnessed", r(Info)),
        ("GET", "/ledger/witness/refusals", r(Info)),
    ]
};

/// Every row, its path as the router matches it.
pub(crate) fn rows() -> impl Iterator<Item = (&'static str, String, Action)> {
    let api = TABLE.iter().map(|(m, p, a)| (*m, format!("{V1}{p}"), *a));
    api.chain(ROOT_TABLE.iter().chain(MERGED_TABLE).map(|(m, p, a)| (*m, (*p).to_owned(), *a)))
}

/// What the table says of a matched route and a method.
pub enum Looked {
    Action(Action),
    /// The path has rows, not for this method: the methods they name.
    OtherMethods(Vec<&'static str>),
    /// No row names the path.
    Uncovered,
}

/// The rows by matched route: each method with its action (built once).
static BY_ROUTE: std::sync::LazyLock<HashMap<String, Vec<(&'static str, Action)>>> = std::sync::LazyLock::new(|| {
    let mut by_route: HashMap<String, Vec<(&'static str, Action)>> = HashMap::new();
    for (method, path, action) in rows() {
        by_route.entry(path).or_default().push((method, action));
    }
    by_route
});

pub fn look_up(method: &Method, route: &str) -> Looked {
    // HEAD is answered by GET's handler.
    let method = if method == Method::HEAD { "GET" } else { method.as_str() };
    let Some(rows) = BY_ROUTE.get(route) else { return Looked::Uncovered };
    match rows.iter().find(|(m, _)| *m == method) {
        Some((_, action)) => Looked::Action(*action),
        None => Looked::OtherMethods(rows.iter().map(|(m, _)| *m).collect()),
    }
}

/// What the gate hands on to the handler.
#[derive(Debug, Clone)]
pub struct Admitted {
    pub scope: Scope,
}

/// The gate around every route (see the module docs).
pub async fn gate(State(state): State<SharedState>, request: Request, next: Next) -> Response {
    let Some(route) = request.extensions().get::<MatchedPath>().map(|m| m.as_str().to_owned()) else {
        // No route matched: the fallback answers 404.
        return next.run(request).await;
    };
    let action = match look_up(request.method(), &route) {
        Looked::Action(action) => action,
        Looked::OtherMethods(methods) => {
            // A method the path's rows do not name is answered here, before any layer of the
            // route (a crate's own middleware reading the admission would otherwise meet a
            // request the gate never admitted and fail as an internal error); `error::guard`
            // makes the ProblemDetails naming the allowed methods. The route walk test keeps
            // every routed method in the table, so these are the router's methods too.
            let mut allow: Vec<&str> = methods;
            if allow.contains(&"GET") {
                allow.push("HEAD");
            }
            let mut refused = axum::http::StatusCode::METHOD_NOT_ALLOWED.into_response();
            if let Ok(value) = axum::http::HeaderValue::from_str(&allow.join(",")) {
                refused.headers_mut().insert(axum::http::header::ALLOW, value);
            }
            return refused;
        }
        Looked::Uncovered => {
            return ApiError::forbidden(format!(
                "no access rule covers {} {route}, so it is refused: the hub's access table must name it \
                 (see ARCHITECTURE.md, cityhub-http access.rs)",
                request.method()
            ))
            .into_response()
        }
    };
    let (mut parts, body) = request.into_parts();
    match crate::extract::admit(&state, &parts, action).await {
        Ok(admitted) => {
            parts.extensions.insert(admitted);
            next.run(Request::from_parts(parts, body)).await
        }
        Err(refusal) => refusal.into_response(),
    }
}

/// The policies of each tenant as this hub knows them: read from the store on first need,
/// dropped on the store's `Records` event of their tenant (any hub's write).
pub struct Policies {
    store: DynStore,
    known: Mutex<HashMap<String, Arc<Vec<Policy>>>>,
}

/// Tenants whose policies are held at once; more and all are read again.
const MAX_TENANTS_HELD: usize = 10_000;

impl Policies {
    pub fn new(store: DynStore) -> Policies {
        Policies { store, known: Mutex::new(HashMap::new()) }
    }

    fn known(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<Vec<Policy>>>> {
        self.known.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub async fn of(&self, tenant: &str) -> Result<Arc<Vec<Policy>>, ApiError> {
        if let Some(held) = self.known().get(tenant) {
            return Ok(held.clone());
        }
        let docs = self.store.list_records(tenant, RecordKind::Policy).await?;
        let mut policies = Vec::with_capacity(docs.len());
        for doc in docs {
            match Policy::from_json(&doc, &|s| s.to_owned()) {
                Ok(p) => policies.push(p),
                // A stored policy that does not read back refuses every data read it could have
                // narrowed, rather than widening by being left out.
                Err(e) => {
                    tracing::error!(tenant, error = %e, "a stored access policy does not read back");
                    return Err(ApiError(ngsild_core::NgsiLdError::internal(format!(
                        "an access policy of tenant '{tenant}' does not read back ({e}): an admin must replace it"
                    ))));
                }
            }
        }
        let policies = Arc::new(policies);
        let mut known = self.known();
        if known.len() >= MAX_TENANTS_HELD {
            known.clear();
        }
        known.insert(tenant.to_owned(), policies.clone());
        Ok(policies)
    }

    /// Forgets one tenant's policies (None: every tenant's).
    pub fn forget(&self, tenant: Option<&str>) {
        match tenant {
            Some(t) => self.known().remove(t),
            None => {
                self.known().clear();
                None
            }
        };
    }
}

/// What a subscription keeps of the caller that made it.
pub fn subscriber(caller: &Identity) -> Subscriber {
    let via = match caller.via {
        Via::Anonymous => "anonymous",
        Via::Token => "token",
        Via::Key => "key",
    };
    Subscriber {
        subject: caller.subject.clone(),
        via: via.to_owned(),
        grants: caller.grants.iter().map(|g| g.to_string()).collect(),
    }
}

/// The identity a stored subscriber stands for; a grant that does not read back is left out
/// (narrower, never wider).
fn identity(subscriber: &Subscriber) -> Identity {
    let via = match subscriber.via.as_str() {
        "token" => Via::Token,
        "key" => Via::Key,
        _ => Via::Anonymous,
    };
    let grants = subscriber.grants.iter().filter_map(|g| g.parse().ok()).collect();
    Identity { subject: subscriber.subject.clone(), via, grants }
}

/// The notifier's [`Audience`]: what a subscriber may read when a notification is made, decided
/// as a read of entities by the subscriber would be now.
pub struct Readers(pub std::sync::Weak<crate::AppState>);

#[async_trait::async_trait]
impl Audience for Readers {
    async fn scope(&self, tenant: &str, subscriber: Option<&Subscriber>) -> Option<Scope> {
        let state = self.0.upgrade()?;
        // A subscription made before the hub kept its subscriber reads as it did.
        let Some(subscriber) = subscriber else { return Some(Scope::All) };
        let identity = identity(subscriber);
        if identity.via == Via::Key && !key_in_force(&state, identity.subject.as_deref()).await {
            return None;
        }
        let action = Action::read(Group::Entities);
        let policies = match state.policies.of(tenant).await {
            Ok(p) => p,
            Err(e) => {
                tracing::warn!(tenant, error = ?e.0, "policies unreadable: a notification is held back");
                return None;
            }
        };
        cityhub_access::decide(&identity, tenant, action, &policies).ok()
    }
}

/// Whether the API key a subscriber used is still in force (not revoked, not expired): a
/// revoked key's subscriptions stop notifying. Read from the store, which every hub shares.
async fn key_in_force(state: &crate::AppState, id: Option<&str>) -> bool {
    let Some(id) = id else { return false };
    match cityhub_auth::keys::list_keys(state.store.as_ref()).await {
        Ok(keys) => keys.iter().any(|k| k.id == id && k.revoked.is_none() && !k.expired(chrono::Utc::now())),
        Err(e) => {
            tracing::warn!(error = %e, "the API keys could not be read: a notification is held back");
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;
    use std::sync::Arc;

    use axum::body::Body;
    use axum::http::{header, Request};
    use cityhub_access::{Grant, Role};
    use http_body_util::BodyExt;
    use tower::ServiceExt;

    use super::*;
    use crate::{AppState, HttpConfig};

    fn state() -> (tempfile::TempDir, SharedState) {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let dir = tempfile::tempdir().expect("a temporary directory");
        let store = cityhub_sqlite::SqliteStore::open(dir.path()).expect("a store");
        (dir, AppState::new(Arc::new(store), HttpConfig::default()))
    }

    /// The routes and methods the router serves, read from its `Debug` form (axum offers no
    /// other way to list them): each path with the methods of its `Allow` header.
    fn served(router: &str) -> Vec<(String, BTreeSet<String>)> {
        let id_path = regex::Regex::new(r#"RouteId\((\d+)\): "([^"]+)""#).expect("a regex");
        let id_methods = regex::Regex::new(
            r#"RouteId\((\d+)\): MethodRouter\(MethodRouter \{.*?allow_header: Bytes\(b"([A-Z,]*)"\)"#,
        )
        .expect("a regex");
        let methods: HashMap<&str, &str> = id_methods
            .captures_iter(router)
            .map(|c| (c.get(1).map_or("", |m| m.as_str()), c.get(2).map_or("", |m| m.as_str())))
            .collect();
        id_path
            .captures_iter(router)
            .map(|c| {
                let id = c.get(1).map_or("", |m| m.as_str());
                let path = c.get(2).map_or("", |m| m.as_str()).to_owned();
                let allow = methods.get(id).copied().unwrap_or("(none found)");
                (path, allow.split(',').filter(|m| *m != "HEAD").map(str::to_owned).collect())
            })
            .collect()
    }

    #[tokio::test]
    async fn every_route_has_an_action() {
        let (_dir, state) = state();
        let router = format!("{:?}", crate::routes(&state, axum::Router::new()));
        // The fallback's own router (every path, every method) answers 404: not a route.
        let router = router.split("fallback_router:").next().unwrap_or_default().to_owned();
        let served = served(&router);
        assert!(served.len() >= 30, "the router's routes were not found in its Debug form: {router:.2000}");
        let mut uncovered = Vec::new();
        for (path, methods) in &served {
            assert!(
                !methods.is_empty() && !methods.contains("(none found)"),
                "no methods read for {path}: {router:.2000}"
            );
            for method in methods {
                let method = Method::from_bytes(method.as_bytes()).expect("a method");
                if !matches!(look_up(&method, path), Looked::Action(_)) {
                    uncovered.push(format!("{method} {path}"));
                }
            }
        }
        assert!(uncovered.is_empty(), "routes without a row in access::TABLE (add one each): {uncovered:?}");
        // And no row names a route that is not served (a stale row would hide a typo).
        let merged = |m: &str, p: &str| MERGED_TABLE.iter().any(|(rm, rp, _)| *rm == m && *rp == p);
        for (method, full, _) in rows().filter(|(m, p, _)| !merged(m, p)) {
            assert!(
                served.iter().any(|(p, m)| *p == full && m.contains(method)),
                "a row for {method} {full}, which is not served"
            );
        }
    }

    async fn answer(
        state: &SharedState,
        identity: Option<Identity>,
        method: &str,
        uri: &str,
        tenant: &str,
    ) -> (u16, serde_json::Value) {
        let mut request = Request::builder()
            .method(method)
            .uri(uri)
            .header("NGSILD-Tenant", tenant)
            .body(Body::empty())
            .expect("a request");
        if let Some(identity) = identity {
            request.extensions_mut().insert(std::sync::Arc::new(identity));
        }
        // The routes behind the gate alone: the identify layer of the full router would take the
        // identity from credentials instead (open mode: admin).
        let gated = crate::routes(state, axum::Router::new())
            .layer(axum::middleware::from_fn_with_state(state.clone(), gate))
            .with_state(state.clone());
        let response = gated.oneshot(request).await.expect("an answer");
        let status = response.status().as_u16();
        let allow = response.headers().get(header::ALLOW).map(|v| v.to_str().unwrap_or_default().to_owned());
        let body = response.into_body().collect().await.expect("a body").to_bytes();
        let mut body = serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null);
        if let Some(allow) = allow {
            body = serde_json::json!({"allow": allow});
        }
        (status, body)
    }

    #[tokio::test]
    async fn the_gate_refuses_with_the_role_and_tenant_and_admits_what_the_role_may() {
        let (_dir, state) = state();
        let reader = Identity {
            subject: Some("k1".into()),
            via: Via::Key,
            grants: vec![Grant { tenant: Some("seoul".into()), role: Role::Reader }],
        };
        let (status, body) =
            answer(&state, Some(reader.clone()), "DELETE", "/ngsi-ld/v1/entities/urn:x:1", "seoul").await;
        assert_eq!(status, 403, "{body}");
        assert_eq!(body["type"], "https://cityhub.dev/errors/Forbidden");
        let detail = body["detail"].as_str().unwrap_or_default();
        assert!(
            detail.contains("role editor") && detail.contains("'seoul'") && detail.contains("role reader"),
            "{detail}"
        );
        // Its read passes the gate (and meets the handler: the tenant is not there).
        let (status, body) = answer(&state, Some(reader.clone()), "GET", "/ngsi-ld/v1/entities/urn:x:1", "seoul").await;
        assert_eq!(
            (status, body["type"].as_str()),
            (404, Some("https://uri.etsi.org/ngsi-ld/errors/NonexistentTenant"))
        );
        let (status, body) = answer(&state, Some(reader.clone()), "GET", "/ngsi-ld/v1/entities/urn:x:1", "").await;
        assert_eq!(status, 403, "the default tenant is another tenant: {body}");
        // No identity at all is public: only health.
        let (status, body) = answer(&state, None, "GET", "/ngsi-ld/v1/types", "").await;
        assert_eq!((status, body["type"].as_str()), (403, Some("https://cityhub.dev/errors/Forbidden")));
        let (status, _) = answer(&state, None, "GET", "/health", "").await;
        assert_eq!(status, 200);
        // A method no row names is the router's 405 with the methods there are, as before.
        let (status, body) = answer(&state, Some(reader), "PUT", "/ngsi-ld/v1/types", "seoul").await;
        assert_eq!(status, 405, "{body}");
        assert_eq!(body["allow"], "GET,HEAD", "{body}");
    }
}
