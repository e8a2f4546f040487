//! Distributed operations: the registrations a tenant holds, and the client that forwards
//! requests to registered context sources (clause 4.3.6, 5.7, 6.3.17, 6.3.18).
//!
//! Which source serves what, and how answers merge, is decided by `ngsild_federation` (pure);
//! this module does the I/O: a concurrent fan-out with a timeout per source, where a source that
//! fails is reported (`NGSILD-Warning`) and never costs the other sources' answers.
//!
//! # The flow of a distributed query
//!
//! Take `GET /ngsi-ld/v1/entities?type=AirQualityObserved` at Seoul (`--alias seoul`), which
//! registered Busan (`cityhub federate --peer http://busan:1026 --type AirQualityObserved`: it reads
//! Busan's `GET /info/sourceIdentity` and puts `"contextSourceAlias": "busan"` in the registration):
//!
//! 1. The `refuse_loops` middleware reads `Via`. A request that already lists this hub's alias
//!    crossed it before, and this hub asked all of its sources then: a read goes on (step 2 asks no
//!    source) and its answer gets `NGSILD-Warning: 199 seoul "…already passed through seoul…"`; a
//!    write answers 508 `LoopDetected` (this hub did its part of it then; again would apply it twice).
//! 2. `entities::run_query` parses the filter as for a local query. Unless `local=true`,
//!    `Federation::registrations` gives the tenant's registrations (cached in memory; the store holds
//!    them as records), `ngsild_federation::matching::targets` keeps those that serve `queryEntity`
//!    for this filter, and `Federation::reachable` drops every one whose source the request crossed
//!    (clause 5.12): its `contextSourceAlias`, or for a registration without one its endpoint's
//!    `host:port`, is already in `Via` — all of them when `Via` lists this hub. So when Busan, which
//!    registered Seoul as `seoul`, gets Seoul's forwarded query (`Via: 1.1 seoul`), it answers from
//!    its own data and does not ask Seoul back: one forward per query.
//! 3. With no target the query is local, exactly as before. Otherwise the store is asked for the
//!    first `offset + limit` matches while every source is asked at once (`query_sources`, a
//!    `JoinSet`) with the client's parameters and @context (`Link`) — `type`, `q`, `scopeQ`, the
//!    geo-query, `count` as given; `attrs`/`id` narrowed to what the registration names;
//!    `limit = offset + limit`, no `offset`; normalized representation — plus `Via: …, 1.1 <alias>`,
//!    the registration's `tenant` and its `contextSourceInfo` as headers. Each source is asked the
//!    way its registration offers (`Operation::way`): `GET /entities` (`queryEntity`) or
//!    `POST /entityOperations/query` with a Query body (`queryBatch`); a client's own
//!    `POST /entityOperations/query` prefers `queryBatch`.
//! 4. Each source's answer is expanded with the same @context into stored entities;
//!    `merge::merge_entities` merges them with the local ones by id, ordered by id (re-sorted by the query's `orderBy` when given); the hub pages
//!    the merged list, counts (local + remote counts − duplicates) and renders as usual.
//! 5. A source that times out (`--forward-timeout-ms`), cannot be reached or answers an error is
//!    left out and reported as one `NGSILD-Warning: 199 <host:port> "<registration id>: <why>"`
//!    header; the answer stays 200 with everyone else's entities. Forwarding counts
//!    (`timesSent`, `timesFailed`, `lastSuccess`, `lastFailure`, `status`) show with
//!    `options=sysAttrs` on the registration (in memory, not durable).
//!
//! Retrieval (`GET /entities/{id}`) is the same with `retrieveEntity`: a source's 404 is not a
//! failure, and the entity is 404 only when nobody has it. A source whose registration offers only
//! `queryEntity` or `queryBatch` is asked a query by id, with the registered types. Every read goes
//! through `Federation::read_sources` (the way per source, the fan-out, the 404 rule), each with its
//! own reader of the answers. `GET /types`
//! and `GET /attributes` ask the sources offering `retrieveEntityTypes`/`retrieveAttrTypes` for
//! their details and add the types and attributes each registration covers to the hub's own.
//! `GET /types/{type}` and `GET /attributes/{attr}` ask those offering `retrieveEntityTypeInfo`/
//! `retrieveAttrTypeInfo` (`discovery::RemoteInfo`): entity and attribute counts add up, attribute
//! kinds and types unite (kept to what each registration names), a source's 404 adds nothing, and
//! the answer is 404 only when nobody knows the name.
//!
//! Operation names and groups are those of clause 4.20 (Tables 4.20-1 and 4.20-2): `federationOps`
//! (the default) holds no temporal operation, so a registration serves history only when it names
//! `retrieveTemporal`/`queryTemporal` (`cityhub federate` registers peers with both);
//! `redirectionOps` includes `purgeEntity`.
//!
//! Temporal reads (`GET /temporal/entities`, `GET /temporal/entities/{id}`) follow the same steps
//! with `queryTemporal` and `retrieveTemporal` (a source offering only `queryTemporal` is asked a
//! query by id). Sources get the client's `timerel`, `timeAt`, `endTimeAt`, `timeproperty`, `lastN`,
//! `datasetId`, `aggrMethods` and `aggrPeriodDuration` as written, the normalized representation
//! (`options=aggregatedValues` kept). `ngsild_core::temporal::read_temporal` reads each answer back
//! into the history model and `merge::merge_temporal` merges it with the hub's own: entities by id,
//! an attribute's instances from every source side by side in time order (newest first for
//! `lastN`), an instance two sources both hold (same datasetId, time and value) once, an auxiliary
//! source's series only where nobody else has it. Aggregates cannot be combined exactly, so where
//! two sources aggregated the same series the hub's (or the first source's) stands. The hub then
//! cuts the merged instances to its page (`ngsild_core::temporal_cut::page_cut`); a source that answered 206 (its own
//! instance limit) also cuts the page at its `Content-Range` end, so the page never shows the hub's
//! instances past where a source's stop. Queries page the merged entities as in step 4.

use parking_lot::{Mutex, RwLock};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use axum::http::{HeaderMap, HeaderValue, Method};
use cityhub_egress::{ClientOptions, Egress, EgressClient, EgressError};
use cityhub_storage::{RecordKind, Store, StoreError};
use ngsild_core::{Entity, ErrorKind, NgsiLdError};
use ngsild_federation::forward::{narrowed, query_body, query_string, source_error};
use ngsild_federation::registration::SourceStatus;
use ngsild_federation::{via, Operation, Registration, Target};
use serde_json::Value;

use crate::request::{Ld, TENANT_HEADER};

/// Per-tenant registrations, cached in memory (an entry goes on every write here and on every
/// `StoreEvent::Records` of its tenant, so a registration written at another hub on the same
/// store is in force here too), and the forwarding client.
pub struct Federation {
    /// This hub's `contextSourceAlias` (clause 5.2.40): how it names itself in `Via`.
    pub me: String,
    /// When this hub started, for `/info/sourceIdentity`.
    pub started: std::time::Instant,
    pub time_of_startup: String,
    pub timeout: Duration,
    client: EgressClient,
    registry: RwLock<HashMap<String, Arc<Vec<Registration>>>>,
    /// How forwarding went per registration (tenant, id); kept in memory, not durable.
    stats: Mutex<HashMap<(String, String), SourceStatus>>,
    /// How forwarded requests say who asks.
    auth: crate::FederationAuth,
}

/// A source that did not answer well.
#[derive(Debug, Clone)]
pub struct SourceFailure {
    pub registration_id: String,
    pub endpoint: String,
    pub detail: String,
}

impl SourceFailure {
    /// The `NGSILD-Warning` value reporting it (clause 6.3.17; RFC 7234 warning syntax, code 199
    /// "miscellaneous warning", the agent being the source).
    pub fn warning(&self) -> String {
        let agent = via::authority(&self.endpoint).unwrap_or_else(|| "-".to_owned());
        let text = format!("{}: {}", self.registration_id, self.detail).replace(['"', '\\', '\r', '\n'], " ");
        format!("199 {agent} \"{text}\"")
    }
}

/// A source's answer to a forwarded request.
pub struct SourceAnswer {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: bytes::Bytes,
}

/// What is needed to forward on behalf of a request.
#[derive(Clone)]
pub struct Forwarding {
    pub tenant: String,
    /// The hubs the request already crossed.
    pub hops: Vec<String>,
    pub ld: Ld,
    /// The caller's credentials (`Authorization`, `X-API-Key`), sent on when the hub forwards
    /// as its callers ([`crate::FederationAuth::Caller`]).
    pub credentials: Vec<(reqwest::header::HeaderName, HeaderValue)>,
}

/// The request headers that carry a caller's credentials.
pub const CREDENTIAL_HEADERS: [&str; 2] = ["authorization", "x-api-key"];

impl Federation {
    /// How forwarded requests say who asks (the caller, by default).
    pub fn credentials(mut self, auth: crate::FederationAuth) -> Federation {
        self.auth = auth;
        self
    }

    pub fn new(me: String, timeout: Duration, egress: &Egress) -> Federation {
        // Title-case header names (`Via`, not `via`): some context sources read them
        // case-sensitively. Every source is reached under the egress rules.
        let client = egress.client(&ClientOptions {
            title_case_headers: true,
            connect_timeout: timeout,
            timeout,
            pool_idle_timeout: Some(Duration::from_secs(30)),
            max_redirects: 10,
            redirects_flag: "",
        });
        Federation {
            me: me.to_ascii_lowercase(),
            started: std::time::Instant::now(),
            time_of_startup: ngsild_core::time::now(),
            timeout,
            client,
            registry: RwLock::new(HashMap::new()),
            stats: Mutex::new(HashMap::new()),
            auth: crate::FederationAuth::Caller,
        }
    }

    /// The tenant's registrations, in creation order.
    pub async fn registrations(&self, store: &dyn Store, tenant: &str) -> Result<Arc<Vec<Registration>>, StoreError> {
        if let Some(cached) = self.registry.read().get(tenant) {
            return Ok(cached.clone());
        }
        let docs = store.list_records(tenant, RecordKind::Registration).await?;
        let (regs, problems) = Registration::decode_all(docs);
        // A registration that does not decode is not in force; the operator learns which and why.
        for problem in &problems {
            tracing::warn!(tenant, problem = %problem, "a stored registration is left out");
        }
        let regs: Arc<Vec<Registration>> = Arc::new(regs);
        self.registry.write().insert(tenant.to_owned(), regs.clone());
        Ok(regs)
    }

    /// Forgets the cached registrations of a tenant (they changed, here or at another hub);
    /// `None`: of every tenant (store events were missed).
    pub fn forget(&self, tenant: Option<&str>) {
        match tenant {
            Some(tenant) => self.registry.write().remove(tenant),
            None => {
                self.registry.write().clear();
                None
            }
        };
    }

    /// Stores a new registration; one with its id is AlreadyExists (the store decides, so this
    /// holds across hubs on one store).
    pub async fn create(
        &self,
        store: &dyn Store,
        tenant: &str,
        reg: &Registration,
    ) -> Result<Result<(), NgsiLdError>, StoreError> {
        let created = store.create_record(tenant, RecordKind::Registration, &reg.id, reg.to_stored()).await;
        self.forget(Some(tenant));
        created
    }

    /// Replaces the registration with its id; false when there is none.
    pub async fn replace(&self, store: &dyn Store, tenant: &str, reg: &Registration) -> Result<bool, StoreError> {
        let replaced = store.replace_record(tenant, RecordKind::Registration, &reg.id, reg.to_stored()).await;
        self.forget(Some(tenant));
        replaced
    }

    /// Removes a registration; answers whether it existed.
    pub async fn remove(&self, store: &dyn Store, tenant: &str, id: &str) -> Result<bool, StoreError> {
        let existed = store.delete_record(tenant, RecordKind::Registration, id).await;
        self.forget(Some(tenant));
        self.stats.lock().remove(&(tenant.to_owned(), id.to_owned()));
        existed
    }

    /// The registration with its forwarding statistics filled in, for display.
    pub fn with_status(&self, tenant: &str, reg: &Registration) -> Registration {
        let mut shown = reg.clone();
        if let Some(status) = self.stats.lock().get(&(tenant.to_owned(), reg.id.clone())) {
            shown.status = status.clone();
        }
        shown
    }

    fn record(&self, tenant: &str, reg_id: &str, ok: bool) {
        let now = ngsild_core::time::now();
        let mut stats = self.stats.lock();
        let status = stats.entry((tenant.to_owned(), reg_id.to_owned())).or_default();
        status.times_sent += 1;
        if ok {
            status.last_success = Some(now);
        } else {
            status.times_failed += 1;
            status.last_failure = Some(now);
        }
    }

    /// The hubs a request crossed, from its `Via` headers.
    pub fn hops(headers: &HeaderMap) -> Vec<String> {
        via::hops(headers.get_all("via").iter().filter_map(|v| v.to_str().ok()))
    }

    /// Whether a request already passed through this hub.
    pub fn is_loop(&self, headers: &HeaderMap) -> bool {
        Self::hops(headers).contains(&self.me)
    }

    /// Keeps the targets this request may still go to (clause 5.12): never a source it crossed
    /// (its `contextSourceAlias`, or lacking one its endpoint's `host:port`, is in `Via`), and
    /// none at all when it crossed this hub — this hub asked every one of its sources when the
    /// request first passed; asking again could only repeat that, or go round for ever through
    /// a source whose registration here names no alias.
    pub fn reachable<'r>(&self, targets: Vec<Target<'r>>, hops: &[String]) -> Vec<Target<'r>> {
        if hops.contains(&self.me) {
            return Vec::new();
        }
        targets
            .into_iter()
            .filter(|t| {
                via::may_forward(t.registration.context_source_alias.as_deref(), &t.registration.endpoint, hops)
            })
            .collect()
    }

    /// Sends one request to a registered source, with `Via`, the request's @context as `Link`,
    /// the registration's tenant and its `contextSourceInfo` headers.
    pub async fn send(
        &self,
        reg: &Registration,
        fwd: &Forwarding,
        method: Method,
        path: &str,
        query: &[(String, String)],
        body: Option<Value>,
    ) -> Result<SourceAnswer, SourceFailure> {
        let url = format!("{}/ngsi-ld/v1{path}{}", reg.endpoint.trim_end_matches('/'), query_string(query));
        let fail =
            |detail: String| SourceFailure { registration_id: reg.id.clone(), endpoint: reg.endpoint.clone(), detail };
        let mut request = self
            .client
            .request(method, &url)
            .header("Via", via::onward(&fwd.hops, &self.me))
            .header("Accept", "application/json");
        // A body that carries its own @context travels as JSON-LD; otherwise the context goes in
        // a Link header.
        let body_has_context = body.as_ref().is_some_and(|b| match b {
            Value::Array(items) => items.first().is_some_and(|i| i.get("@context").is_some()),
            other => other.get("@context").is_some(),
        });
        if !body_has_context {
            request = request.header(
                "Link",
                format!(
                    "<{}>; rel=\"http://www.w3.org/ns/json-ld#context\"; type=\"application/ld+json\"",
                    fwd.ld.link_url()
                ),
            );
        }
        if let Some(tenant) = &reg.tenant {
            request = request.header(TENANT_HEADER, tenant);
        }
        // Who asks: the caller (its own credentials, so the source decides on them) or the hub.
        match &self.auth {
            crate::FederationAuth::Caller => {
                for (name, value) in &fwd.credentials {
                    request = request.header(name.clone(), value.clone());
                }
            }
            crate::FederationAuth::Hub { token: Some(token) } => {
                request = request.header("Authorization", format!("Bearer {token}"));
            }
            crate::FederationAuth::Hub { token: None } => {}
        }
        for pair in reg.context_source_info.iter().flat_map(|v| v.as_array().into_iter().flatten()) {
            if let (Some(k), Some(v)) =
                (pair.get("key").and_then(Value::as_str), pair.get("value").and_then(Value::as_str))
            {
                if let (Ok(name), Ok(value)) =
                    (reqwest::header::HeaderName::from_bytes(k.as_bytes()), HeaderValue::from_str(v))
                {
                    request = request.header(name, value);
                }
            }
        }
        if let Some(body) = body {
            let media = if body_has_context { "application/ld+json" } else { "application/json" };
            request = request.header("Content-Type", media).body(body.to_string());
        }
        let outcome = async {
            let response = self.client.execute(request).await.map_err(|e| fail(e.to_string()))?;
            let status = response.status().as_u16();
            let headers = response.headers().clone();
            let body = response.bytes().await.map_err(|_| fail("the answer broke off".to_owned()))?;
            Ok(SourceAnswer { status, headers, body })
        };
        let answer = match tokio::time::timeout(self.timeout, outcome).await {
            Ok(answer) => answer,
            // The same text as a failed connection: an answer never tells what listens where.
            Err(_) => Err(fail(EgressError::Unreachable.to_string())),
        };
        let ok = answer.as_ref().is_ok_and(|a| a.status < 500);
        let peer = cityhub_metrics::PEER_HOSTS.label(&cityhub_metrics::labels::host_of(&reg.endpoint));
        let outcome = if ok { "answered" } else { "failed" };
        metrics::counter!("cityhub_federation_requests_total", "peer" => peer, "outcome" => outcome).increment(1);
        self.record(&fwd.tenant, &reg.id, ok);
        answer
    }

    /// Asks each target at once for the entities a query selects — or, with `retrieval`, for
    /// the entity of that id — each in the way its registration offers (`Target::way`:
    /// `retrieveEntity`, `queryEntity` or `queryBatch`); answers each source's entities (in
    /// stored form) and count, and the failures. A source without the entity asked for is not a
    /// failure.
    pub async fn entities_from_sources(
        self: &Arc<Self>,
        targets: &[Target<'_>],
        fwd: &Forwarding,
        params: &[(String, String)],
        retrieval: Option<&str>,
    ) -> (Vec<(Registration, Vec<Entity>, Option<usize>)>, Vec<SourceFailure>) {
        let ld = fwd.ld.clone();
        let read = move |a: &SourceAnswer| Ok((entities_of(&a.body, &ld)?, results_count(a)));
        let (answers, failures) = self.read_sources(targets, fwd, params, retrieval, read).await;
        (answers.into_iter().map(|(reg, (entities, count))| (reg, entities, count)).collect(), failures)
    }

    /// Asks each target at once for what a read selects, in the way its registration offers
    /// (`Target::way`), and reads each 200 answer with `read`; answers each source's reading in
    /// registration order, and the failures. With `retrieval` (the id of the one entity asked
    /// for) a source's 404 is not a failure: it reads as `T::default()`.
    pub async fn read_sources<T, R>(
        self: &Arc<Self>,
        targets: &[Target<'_>],
        fwd: &Forwarding,
        params: &[(String, String)],
        retrieval: Option<&str>,
        read: R,
    ) -> (Vec<(Registration, T)>, Vec<SourceFailure>)
    where
        T: Default + Send + 'static,
        R: Fn(&SourceAnswer) -> Result<T, String> + Send + Sync + 'static,
    {
        let read = Arc::new(read);
        let mut params = params.to_vec();
        if let Some(id) = retrieval {
            params.push(("id".to_owned(), id.to_owned()));
        }
        let mut tasks = tokio::task::JoinSet::new();
        for (index, target) in targets.iter().enumerate() {
            let mut query = narrowed(&params, target, &fwd.ld.ctx);
            let one = |collection: &str, id: &str| format!("{collection}/{}", crate::response::path_segment(id));
            let (method, path, body) = match (target.way, retrieval) {
                (Operation::RetrieveEntity, Some(id)) => {
                    query.retain(|(n, _)| n != "id");
                    (Method::GET, one("/entities", id), None)
                }
                (Operation::RetrieveTemporal, Some(id)) => {
                    query.retain(|(n, _)| n != "id");
                    (Method::GET, one("/temporal/entities", id), None)
                }
                (Operation::QueryBatch, _) => {
                    let (url_params, body) = query_body(query);
                    query = url_params;
                    (Method::POST, "/entityOperations/query".to_owned(), Some(body))
                }
                (Operation::QueryTemporal, _) => (Method::GET, "/temporal/entities".to_owned(), None),
                _ => (Method::GET, "/entities".to_owned(), None),
            };
            let (me, reg, fwd, read) = (self.clone(), target.registration.clone(), fwd.clone(), read.clone());
            let tolerate_missing = retrieval.is_some();
            // A task of its own, in the request's trace all the same.
            tasks.spawn(cityhub_metrics::trace::carry(async move {
                let answer = me.send(&reg, &fwd, method, &path, &query, body).await;
                let fail = |detail: String| SourceFailure {
                    registration_id: reg.id.clone(),
                    endpoint: reg.endpoint.clone(),
                    detail,
                };
                let result = answer.and_then(|a| match a.status {
                    // 206: a temporal answer cut at the source's instance limit.
                    200 | 206 => read(&a).map_err(fail),
                    404 if tolerate_missing => Ok(T::default()),
                    _ => Err(status_failure(&reg, &a)),
                });
                (index, reg, result)
            }));
        }
        let mut answers = Vec::new();
        let mut failures = Vec::new();
        while let Some(joined) = tasks.join_next().await {
            match joined {
                Ok((index, reg, Ok(reading))) => answers.push((index, reg, reading)),
                Ok((_, _, Err(failure))) => failures.push(failure),
                Err(e) => tracing::error!(error = %e, "a forwarding task failed"),
            }
        }
        // Sources answer in any order; merging in registration order keeps answers stable.
        answers.sort_by_key(|(index, ..)| *index);
        (answers.into_iter().map(|(_, reg, reading)| (reg, reading)).collect(), failures)
    }
}

/// The `NGSILD-Results-Count` a source answered.
pub fn results_count(answer: &SourceAnswer) -> Option<usize> {
    answer.headers.get("ngsild-results-count").and_then(|v| v.to_str().ok()).and_then(|v| v.parse().ok())
}

/// One source's answer to a forwarded provision request.
pub struct ProvisionAnswer {
    pub registration: Registration,
    /// The attributes (expanded) it was sent; None: all of the request.
    pub attrs: Option<Vec<String>>,
    pub result: Result<SourceAnswer, SourceFailure>,
}

impl ProvisionAnswer {
    /// Took all of it (2xx other than 207).
    pub fn complete(&self) -> bool {
        self.result.as_ref().is_ok_and(|a| a.status < 300 && a.status != 207)
    }

    /// Took at least part of it (any 2xx).
    pub fn accepted(&self) -> bool {
        self.result.as_ref().is_ok_and(|a| a.status < 300)
    }

    /// The NGSI-LD error the source's failure stands for: typed as the source's own
    /// ProblemDetails says (or, failing that, as its status does), the source and its own detail
    /// in the detail; an unreachable source is an InternalError.
    pub fn error(&self) -> Option<NgsiLdError> {
        let failure = self.failure()?;
        let (status, problem) = match &self.result {
            Ok(a) => (a.status, serde_json::from_slice::<Value>(&a.body).ok()),
            Err(_) => (500, None),
        };
        Some(source_error(&failure.registration_id, status, problem.as_ref(), &failure.detail))
    }

    /// What the source did, for `ngsild_federation::provision::combine_write`.
    pub fn part(&self) -> ngsild_federation::provision::SourcePart {
        use ngsild_federation::provision::SourceOutcome;
        let outcome = match (&self.result, self.failure()) {
            (Ok(a), _) if a.status == 207 => {
                SourceOutcome::Partly(serde_json::from_slice(&a.body).unwrap_or(Value::Null))
            }
            (Ok(_), None) => SourceOutcome::Took,
            (result, failure) => SourceOutcome::Failed {
                status: result.as_ref().ok().map(|a| a.status),
                reason: failure.map(|f| f.detail).unwrap_or_default(),
            },
        };
        ngsild_federation::provision::SourcePart {
            registration_id: self.registration.id.clone(),
            attrs: self.attrs.clone(),
            outcome,
        }
    }

    /// Why it failed: the source's answer or the failure to get one.
    pub fn failure(&self) -> Option<SourceFailure> {
        match &self.result {
            Ok(a) if a.status < 300 => None,
            Ok(a) => Some(status_failure(&self.registration, a)),
            Err(f) => Some(f.clone()),
        }
    }
}

impl Federation {
    /// Sends one request per part at once — each with its own body, the attributes it concerns
    /// kept for the answer — and answers every source's outcome in the order of `parts`.
    pub async fn send_to_sources(
        self: &Arc<Self>,
        parts: Vec<(Registration, Option<Vec<String>>, Option<Value>)>,
        fwd: &Forwarding,
        method: Method,
        path: &str,
        query: &[(String, String)],
    ) -> Vec<ProvisionAnswer> {
        let mut tasks = tokio::task::JoinSet::new();
        for (index, (reg, attrs, body)) in parts.into_iter().enumerate() {
            let (me, fwd, method, path, query) =
                (self.clone(), fwd.clone(), method.clone(), path.to_owned(), query.to_vec());
            tasks.spawn(cityhub_metrics::trace::carry(async move {
                let result = me.send(&reg, &fwd, method, &path, &query, body).await;
                (index, ProvisionAnswer { registration: reg, attrs, result })
            }));
        }
        let mut answers = Vec::new();
        while let Some(joined) = tasks.join_next().await {
            match joined {
                Ok(answer) => answers.push(answer),
                Err(e) => tracing::error!(error = %e, "a forwarding task failed"),
            }
        }
        answers.sort_by_key(|(index, _)| *index);
        answers.into_iter().map(|(_, a)| a).collect()
    }
}

pub fn status_failure(reg: &Registration, answer: &SourceAnswer) -> SourceFailure {
    let detail = serde_json::from_slice::<Value>(&answer.body)
        .ok()
        .and_then(|v| v.get("detail").or_else(|| v.get("title")).and_then(Value::as_str).map(str::to_owned))
        .unwrap_or_default();
    SourceFailure {
        registration_id: reg.id.clone(),
        endpoint: reg.endpoint.clone(),
        detail: format!("answered {} {detail}", answer.status).trim_end().to_owned(),
    }
}

/// A source's entities (`ngsild_federation::forward::read_entities`), each one it answered invalid logged and
/// left out.
fn entities_of(body: &[u8], ld: &Ld) -> Result<Vec<Entity>, String> {
    let (entities, invalid) = ngsild_federation::forward::read_entities(body, &ld.ctx)?;
    for e in invalid {
        tracing::warn!(error = %e, "a context source answered an entity that is not valid; left out");
    }
    Ok(entities)
}

/// What a request that already crossed this hub (its alias is in `Via`) gets. That hub asked all
/// of its sources for it then ([`Federation::reachable`] asks none now), so:
///
/// * a read (GET, or a query by POST) is answered from this hub's own data, with an
///   `NGSILD-Warning: 199` telling of the loop (clause 6.3.17, Table 6.3.17-1); the hub that
///   forwarded it merges that with the rest, entities by id, so each one still comes once;
/// * a write is refused with 508 LoopDetected: this hub did its part of it when it first passed,
///   and doing it again would apply it twice (a second history instance, a second notification,
///   an AlreadyExists for a create, a ResourceNotFound for a delete).
///
/// A request whose `Via` lists other hubs only is not touched here: it matches the registrations
/// whose sources it did not cross (clause 5.12), and a write that only crossed sources hold is
/// the 508 of clause 6.3.17 ([`crate::provision::plan`]).
pub async fn refuse_loops(
    axum::extract::State(state): axum::extract::State<crate::SharedState>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    if !state.federation.is_loop(request.headers()) {
        return next.run(request).await;
    }
    let me = state.federation.me.clone();
    let path = request.uri().path();
    let read = matches!(*request.method(), Method::GET | Method::HEAD)
        || (request.method() == Method::POST && path.ends_with("/entityOperations/query"));
    if read {
        let mut response = next.run(request).await;
        let warning = format!(
            "199 {me} \"the request already passed through {me} (Via): answered from {me}'s own data, its \
             context sources were asked when it first passed\""
        );
        if let Ok(value) = HeaderValue::from_str(&warning) {
            response.headers_mut().append("NGSILD-Warning", value);
        }
        return response;
    }
    let detail = format!(
        "the request already passed through {me} (Via), which did its part of it then: doing it again would \
         apply it twice. A registration on the way names no contextSourceAlias, or a wrong one; register \
         {me} with contextSourceAlias \"{me}\" (GET /ngsi-ld/v1/info/sourceIdentity tells it)"
    );
    crate::ApiError(NgsiLdError::new(ErrorKind::LoopDetected, detail)).into_response()
}
