//! The NGSI-LD HTTP API of cityhub: a thin axum shell.
//!
//! Every handler is "extract, call the core, answer": the extractors of `extract` read the tenant,
//! the operation's query parameters, the path ids, the accepted media type and the JSON-LD body
//! with its @context (each refusing with a ProblemDetails), the body is expanded by
//! `ngsild_core::expand`, the change is a pure `ngsild_core::ops` function handed to the
//! [`cityhub_storage::Store`] as a modifier, and the answer is rendered by `ngsild_core::render`
//! in the client's @context. `extract::admit` is the one place that decides who may do what.
//!
//! # Before any handler
//!
//! What a request meets before its handler, in order: `identify::bound_in_flight` (over
//! `--max-in-flight` requests at once: 503 at once), `identify::identify` (the caller's
//! credentials read once into a `cityhub_access::Identity` in the request's and the response's
//! extensions, 401 for bad ones, 429 over its rate; `extract::caller` reads it there); the connection is a `wire::Guarded` stream
//! (a request head hyper cannot parse gets a ProblemDetails instead of hyper's empty
//! 400/414/431); `error::guard` refuses a declared body over `--max-body-bytes`, bad
//! percent-escapes and non-ASCII header values, and rewrites the framework's own
//! 404/405/413/415 answers; the trace layer opens a span named by the matched route and the
//! panic layer turns a panicking handler into an InternalError ProblemDetails; then, around the
//! API routes, `federation::refuse_loops` (a request that already crossed this hub),
//! `limits::bound_lists` (`attrs`/`pick`/`omit`/`id`/`type` lengths) and `limits::admit_tenants`
//! (a write that would create one tenant too many). Outside all of it, `audit::record` records
//! every write that reached a handler and every 401/403/429 (the route layer `audit::reached`
//! tags answers with their matched route); see `audit` for how. Outermost of all, `ops::observe`
//! gives the request its id and trace, the span of its log lines, and counts it (`/metrics`).

#![forbid(unsafe_code)]
#![warn(clippy::unwrap_used, clippy::expect_used)]

mod access;
mod audit;
mod batch;
mod contexts;
mod csource;
mod dashboards;
mod discovery;
mod entities;
mod error;
pub mod extract;
mod federation;
mod identify;
mod implicit_contexts;
mod info;
mod jsonld_contexts;
mod keys;
mod limits;
pub mod live;
mod openapi;
pub mod ops;
mod policies;
mod provision;
mod request;
pub mod response;
mod subscriptions;
mod temporal;
mod ui;
mod wire;

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{DefaultBodyLimit, MatchedPath};
use axum::routing::{get, post};
use axum::Router;
pub use cityhub_egress::Egress;
use cityhub_notify::Notifier;
pub use cityhub_notify::NotifyConfig;
use cityhub_storage::DynStore;
use tower::Layer;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::normalize_path::{NormalizePath, NormalizePathLayer};
use tower_http::trace::TraceLayer;

pub use cityhub_ui::UiConfig;
pub use contexts::{ContextLimits, ContextService};
pub use error::ApiError;
pub use limits::{admit_tenant, release_tenant};
use subscriptions::{CSources, Entities};
pub use wire::{ClientAddr, Guarded, GuardedListener};

/// Settings of the HTTP layer.
#[derive(Debug, Clone)]
pub struct HttpConfig {
    /// Largest request body accepted; larger ones answer 413.
    pub max_body_bytes: usize,
    /// How long fetching one remote @context may take.
    pub context_fetch_timeout: Duration,
    /// Bounds on remote @context documents: size, documents per request, redirects, cache memory.
    pub context_limits: ContextLimits,
    /// The most items one `attrs`, `pick`, `omit`, `id` or `type` list of a request may hold.
    pub max_list_items: usize,
    /// The most tenants the hub holds (besides the default one); a write that would create
    /// another is refused.
    pub max_tenants: usize,
    /// The most subscriptions (entity and csource together) one tenant may hold.
    pub max_subscriptions_per_tenant: usize,
    /// The most context source registrations one tenant may hold.
    pub max_registrations_per_tenant: usize,
    /// The largest page a query may ask for.
    pub max_page_size: usize,
    /// The page size when a query names none.
    pub default_page_size: usize,
    /// The most instances of one attribute a temporal answer holds; more answer 206 and a
    /// `Content-Range` to continue from.
    pub temporal_instance_limit: usize,
    /// This hub's `contextSourceAlias` (clause 5.2.40), an RFC 7230 token: how it names itself
    /// in the `Via` header of requests it forwards, and at `/info/sourceIdentity`.
    pub alias: String,
    /// How long one context source may take to answer a forwarded request.
    pub forward_timeout: Duration,
    /// What the browser UI at `/` is told (`--basemap`).
    pub ui: UiConfig,
    /// Where the hub may send requests (@contexts, notifications, context sources).
    pub egress: Egress,
    /// How long audit entries are kept.
    pub audit_retention: Duration,
    /// Audit entries waiting for the store at most; more are dropped and counted.
    pub audit_queue: usize,
    /// The most requests served at once; one more answers 503 at once instead of queueing.
    pub max_in_flight: usize,
    /// Who a forwarded request says asks: the caller (its credentials) or the hub.
    pub federation_auth: FederationAuth,
    /// The bearer token a Prometheus scraper sends for `/metrics` (`--metrics-token`); admins
    /// may read it without.
    pub metrics_token: Option<String>,
}

/// Whose credentials a request forwarded to a context source carries
/// (`cityhub serve --federation-auth`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum FederationAuth {
    /// The caller's own `Authorization` / `X-API-Key`: the source decides on the caller.
    #[default]
    Caller,
    /// The hub's: `Authorization: Bearer TOKEN` (`--federation-token`), or none.
    Hub { token: Option<String> },
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            max_body_bytes: 8 * 1024 * 1024,
            context_fetch_timeout: Duration::from_secs(5),
            context_limits: ContextLimits::default(),
            max_list_items: 1000,
            max_tenants: 1000,
            max_subscriptions_per_tenant: 10_000,
            max_registrations_per_tenant: 10_000,
            max_page_size: 1000,
            default_page_size: 20,
            temporal_instance_limit: 30,
            alias: "cityhub".to_owned(),
            forward_timeout: Duration::from_secs(5),
            ui: UiConfig::default(),
            egress: Egress::default(),
            audit_retention: Duration::from_secs(90 * 86_400),
            audit_queue: 10_000,
            max_in_flight: 512,
            federation_auth: FederationAuth::Caller,
            metrics_token: None,
        }
    }
}

pub struct AppState {
    pub store: DynStore,
    pub contexts: Arc<ContextService>,
    pub config: HttpConfig,
    pub federation: Arc<federation::Federation>,
    pub notifier: Notifier,
    pub limits: limits::Limits,
    /// The live channel's changes (`live`): every write of this hub, told after its commit.
    pub live: live::Live,
    pub audit: Arc<audit::AuditLog>,
    /// Who sends each request (identity sources, rate limits): read by the identify layer.
    pub auth: Arc<cityhub_auth::Auth>,
    /// Permits for requests in flight (`max_in_flight`).
    pub in_flight: Arc<tokio::sync::Semaphore>,
    /// The access policies of each tenant, as this hub knows them.
    pub policies: access::Policies,
}

pub type SharedState = Arc<AppState>;

impl AppState {
    /// Builds the state and starts the notification machinery (on the current tokio runtime).
    pub fn new(store: DynStore, config: HttpConfig) -> SharedState {
        AppState::with_notify(store, config, NotifyConfig::default())
    }

    pub fn with_notify(store: DynStore, config: HttpConfig, notify: NotifyConfig) -> SharedState {
        AppState::with_auth(store, config, notify, cityhub_auth::Auth::open())
    }

    /// The state with the identity sources of `auth` (open mode: [`cityhub_auth::Auth::open`]).
    /// The notifier sends under `config.egress`, whatever `notify.egress` says.
    pub fn with_auth(
        store: DynStore,
        config: HttpConfig,
        mut notify: NotifyConfig,
        auth: cityhub_auth::Auth,
    ) -> SharedState {
        notify.egress = config.egress.clone();
        let (store, live) = live::watch(store);
        let contexts = Arc::new(ContextService::new(store.clone(), &config));
        let notifier = Notifier::start(store.clone(), contexts.clone(), notify);
        let federation = Arc::new(
            federation::Federation::new(config.alias.clone(), config.forward_timeout, &config.egress)
                .credentials(config.federation_auth.clone()),
        );
        let limits = limits::Limits::new(&config);
        let audit = audit::AuditLog::start(store.clone(), config.audit_retention, config.audit_queue);
        let events = store.events();
        let in_flight = Arc::new(tokio::sync::Semaphore::new(config.max_in_flight.max(1)));
        let auth = Arc::new(auth);
        let policies = access::Policies::new(store.clone());
        let state = Arc::new(AppState {
            store,
            contexts,
            config,
            notifier,
            federation,
            limits,
            live,
            audit,
            auth,
            in_flight,
            policies,
        });
        tokio::spawn(drop_stale_caches(Arc::downgrade(&state), events));
        state.notifier.set_audience(Arc::new(access::Readers(Arc::downgrade(&state))));
        state
    }
}

/// Keeps the caches of this hub true to the store when other hubs write to it: each entry goes
/// on the store event that changes it (registrations of a tenant, known tenants, @contexts
/// built from hosted documents), and everything goes after missed events.
async fn drop_stale_caches(
    state: std::sync::Weak<AppState>,
    mut events: tokio::sync::broadcast::Receiver<cityhub_storage::StoreEvent>,
) {
    use cityhub_storage::{Heard, RecordKind, StoreEvent};
    loop {
        let event = cityhub_storage::heard(events.recv().await);
        let Some(state) = state.upgrade() else { return };
        match event {
            // Registrations and policies are cached here; other records (pollers' statuses, written
            // every run) leave these caches alone.
            Heard::Event(StoreEvent::Records { tenant, kind: RecordKind::Registration }) => {
                state.federation.forget(Some(&tenant))
            }
            Heard::Event(StoreEvent::Records { tenant, kind: RecordKind::Policy }) => {
                state.policies.forget(Some(&tenant))
            }
            // The key ring follows API keys itself (cityhub-auth); other crates follow theirs.
            Heard::Event(StoreEvent::Records { .. }) => {}
            Heard::Event(StoreEvent::Tenant { tenant }) => state.limits.tenants.learn(&tenant).await,
            Heard::Event(StoreEvent::Context { .. }) => state.contexts.invalidate(),
            Heard::Event(StoreEvent::Journal | StoreEvent::Subscription { .. } | StoreEvent::Missed) => {}
            Heard::Missed => {
                state.federation.forget(None);
                state.policies.forget(None);
                state.limits.tenants.forget_all().await;
                state.contexts.invalidate();
            }
            Heard::Closed => return,
        }
    }
}

/// The service to serve: the router behind trailing-slash normalisation (clients, the ETSI suite
/// among them, write `/entities/` as often as `/entities`).
pub fn app(state: SharedState) -> NormalizePath<Router> {
    app_with(state, Router::new())
}

/// [`app`] with the routes of capability crates beside the NGSI-LD API (`/iot/...`,
/// `/cityhub/v1/...`): they run inside the same guard, trace and panic layers and body limit.
pub fn app_with(state: SharedState, extra: Router<SharedState>) -> NormalizePath<Router> {
    NormalizePathLayer::trim_trailing_slash().layer(router_with(state, extra))
}

/// The whole API under `/ngsi-ld/v1`, plus `/health`.
pub fn router(state: SharedState) -> Router {
    router_with(state, Router::new())
}

/// [`router`] with `extra` routes merged beside the API. Every route, those merged in included,
/// is behind the one access decision (`access::gate`): each needs a row of `access::TABLE`.
pub fn router_with(state: SharedState, extra: Router<SharedState>) -> Router {
    let routes = routes(&state, extra)
        .layer(axum::middleware::from_fn_with_state(state.clone(), access::gate))
        .layer(DefaultBodyLimit::max(state.config.max_body_bytes));
    let routes = observed(routes).with_state(state.clone());
    // The guard wraps the whole router (a layer on the router itself would see a 405 before
    // axum adds its Allow header); the identity of a request is read before it; the audit layer
    // sees every answer, the guard's and the identify layer's refusals included; the bound on
    // requests in flight is met first of all.
    Router::new()
        .fallback_service(routes)
        .layer(axum::middleware::from_fn_with_state(state.clone(), error::guard))
        .layer(axum::middleware::from_fn_with_state(state.clone(), identify::identify))
        .layer(axum::middleware::from_fn_with_state(state.audit.clone(), audit::record))
        .layer(axum::middleware::from_fn_with_state(state, identify::bound_in_flight))
        .layer(axum::middleware::from_fn(ops::observe))
}

/// Every route the hub serves, before the layers around them all: the API, the routes of this
/// crate beside it, and `extra` (other crates'). A route that is added gets a row of
/// `access::TABLE`.
fn routes(state: &SharedState, extra: Router<SharedState>) -> Router<SharedState> {
    let api = Router::new()
        .route(
            "/entities",
            post(entities::create)
                .get(entities::query)
                .delete(entities::purge)
                .put(entities::missing_id)
                .patch(entities::missing_id),
        )
        .route(
            "/entities/{id}",
            get(entities::retrieve).delete(entities::delete).put(entities::replace).patch(entities::merge),
        )
        .route("/entities/{id}/attrs", post(entities::append_attrs).patch(entities::update_attrs))
        .route(
            "/entities/{id}/attrs/{attr}",
            axum::routing::patch(entities::partial_update_attr)
                .put(entities::replace_attr)
                .delete(entities::delete_attr),
        )
        .route("/entityOperations/create", post(batch::create))
        .route("/entityOperations/upsert", post(batch::upsert))
        .route("/entityOperations/update", post(batch::update))
        .route("/entityOperations/delete", post(batch::delete))
        .route("/entityOperations/merge", post(batch::merge))
        .route("/entityOperations/query", post(entities::query_post))
        .route("/types", get(discovery::types))
        .route("/types/{type}", get(discovery::type_info))
        .route("/attributes", get(discovery::attributes))
        .route("/attributes/{attr}", get(discovery::attribute_info))
        .route("/temporal/entities", post(temporal::create).get(temporal::query))
        .route("/temporal/entities/{id}", get(temporal::retrieve).delete(temporal::delete))
        .route("/temporal/entities/{id}/attrs", post(temporal::add_attrs))
        .route("/temporal/entities/{id}/attrs/{attr}", axum::routing::delete(temporal::delete_attr))
        .route(
            "/temporal/entities/{id}/attrs/{attr}/{instance}",
            axum::routing::patch(temporal::patch_instance).delete(temporal::delete_instance),
        )
        .route("/temporal/entityOperations/query", post(temporal::query_post))
        .route("/subscriptions", post(subscriptions::create::<Entities>).get(subscriptions::query::<Entities>))
        .route(
            "/subscriptions/{id}",
            get(subscriptions::retrieve::<Entities>)
                .patch(subscriptions::update::<Entities>)
                .delete(subscriptions::delete::<Entities>),
        )
        .route("/jsonldContexts", get(jsonld_contexts::list).post(jsonld_contexts::add))
        .route("/jsonldContexts/{id}", get(jsonld_contexts::serve).delete(jsonld_contexts::delete))
        .route("/info/sourceIdentity", get(info::source_identity))
        .route("/csourceRegistrations", post(csource::create).get(csource::query))
        .route("/csourceRegistrations/{id}", get(csource::retrieve).patch(csource::update).delete(csource::delete))
        .route("/csourceSubscriptions", post(subscriptions::create::<CSources>).get(subscriptions::query::<CSources>))
        .route(
            "/csourceSubscriptions/{id}",
            get(subscriptions::retrieve::<CSources>)
                .patch(subscriptions::update::<CSources>)
                .delete(subscriptions::delete::<CSources>),
        )
        .layer(axum::middleware::from_fn_with_state(state.clone(), limits::admit_tenants))
        .layer(axum::middleware::from_fn_with_state(state.clone(), limits::bound_lists))
        .layer(axum::middleware::from_fn_with_state(state.clone(), federation::refuse_loops));
    Router::new()
        .nest("/ngsi-ld/v1", api)
        .route("/health", get(health))
        .merge(extra)
        .merge(ui::routes(state))
        .merge(audit::routes())
        .merge(policies::routes())
        .merge(keys::routes())
        .merge(identify::routes())
        .merge(openapi::routes())
        .merge(ops::routes())
        .route_layer(axum::middleware::from_fn(audit::reached))
        .fallback(error::not_found_fallback)
}

/// The tower layers every route runs inside: a tracing span per request named by its matched
/// route (`/ngsi-ld/v1/entities/{id}`, not the entity id), and a panic in a handler answered as
/// an InternalError ProblemDetails and logged with its message (the connection and the other
/// requests go on).
fn observed<S: Clone + Send + Sync + 'static>(routes: Router<S>) -> Router<S> {
    // A 5xx answer is not logged as a failure here: the ProblemDetails of an InternalError is
    // logged with its cause where it is made (an unreachable @context's 503 is an answer).
    let trace = TraceLayer::new_for_http()
        .make_span_with(|request: &axum::extract::Request| {
            let route = request.extensions().get::<MatchedPath>().map(MatchedPath::as_str).unwrap_or("(no route)");
            tracing::info_span!("request", method = %request.method(), route)
        })
        .on_failure(());
    routes.layer(CatchPanicLayer::custom(error::panicked)).layer(trace).layer(axum::middleware::from_fn(ops::tag_route))
}

async fn health() -> axum::Json<serde_json::Value> {
    axum::Json(serde_json::json!({"status": "ok", "version": env!("CARGO_PKG_VERSION")}))
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::http::{Request, StatusCode};
    use http_body_util::BodyExt;
    use tower::ServiceExt;

    #[tokio::test]
    async fn a_panicking_handler_answers_an_internal_error_problem_details() {
        async fn boom() -> &'static str {
            panic!("the handler broke")
        }
        let app = observed(Router::new().route("/boom", get(boom)).route("/fine", get(|| async { "fine" })));
        let request = Request::get("/boom").body(Body::empty()).expect("a request");
        let response = app.clone().oneshot(request).await.expect("an answer");
        assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(response.headers()["content-type"], "application/json");
        let body = response.into_body().collect().await.expect("a body").to_bytes();
        let problem: serde_json::Value = serde_json::from_slice(&body).expect("JSON");
        assert_eq!(problem["type"], "https://uri.etsi.org/ngsi-ld/errors/InternalError");
        assert_eq!(problem["title"], "There has been an error during the operation execution");
        let detail = problem["detail"].as_str().expect("a detail");
        assert!(detail.contains("failed unexpectedly"), "{detail}");
        assert!(!detail.contains("the handler broke"), "the panic message stays in the log: {detail}");
        // The router keeps serving.
        let request = Request::get("/fine").body(Body::empty()).expect("a request");
        let response = app.oneshot(request).await.expect("an answer");
        assert_eq!(response.status(), StatusCode::OK);
    }
}
