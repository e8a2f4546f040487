//! `/csourceRegistrations`: register, query, retrieve, update and delete context sources
//! (clauses 5.9, 5.10, 6.8, 6.9).

use axum::http::StatusCode;
use ngsild_core::time::{now, parse_datetime};
use ngsild_core::NgsiLdError;
use ngsild_federation::registration::{
    as_entity, parse_registration, patch_registration, render_registration, EntitySpec,
};
use ngsild_federation::Registration;
use ngsild_query::{QExpr, TypeExpr};
use serde_json::Value;

use crate::error::{ApiError, ApiResult};
use crate::extract::{params, Accepting, Call, LdBody, NoParams, Read, RegistrationId, Update, Write};
use crate::request::{as_object, Params};
use crate::response::{created, ld_json, no_content, page_links, path_segment, with_header, LinkStyle};

params! {
    QueryParams = &[
    "id",
    "idPattern",
    "type",
    "attrs",
    "q",
    "csf",
    "georel",
    "geometry",
    "coordinates",
    "geoproperty",
    "timeproperty",
    "timerel",
    "timeAt",
    "endTimeAt",
    "limit",
    "offset",
    "count",
    "options",
    "lang",
    "local",
];
    RetrieveParams = &["options", "lang", "local"];
}

fn location(id: &str) -> String {
    format!("/ngsi-ld/v1/csourceRegistrations/{}", path_segment(id))
}

/// POST /csourceRegistrations
pub async fn create(write: Write<NoParams>, LdBody { value, ld }: LdBody<false>) -> ApiResult {
    let Call { state, tenant, .. } = write.call;
    let now = now();
    let mut reg = parse_registration(&as_object(value, "a registration")?, &ld.ctx, &now)?;
    if reg.id.is_empty() {
        reg.id = format!("urn:ngsi-ld:ContextSourceRegistration:{}", uuid::Uuid::new_v4());
    }
    reg.created_at = Some(now.clone());
    reg.modified_at = Some(now);
    let fed = &state.federation;
    let held = fed.registrations(state.store.as_ref(), &tenant).await?;
    if held.iter().any(|r| r.id == reg.id) {
        return Err(NgsiLdError::already_exists(format!("registration {} already exists", reg.id)).into());
    }
    crate::limits::check_registration_room(&state, held.len())?;
    let id = reg.id.clone();
    fed.create(state.store.as_ref(), &tenant, &reg).await??;
    state.notifier.registration_changed(&tenant, None, Some(&reg)).await;
    Ok(created(&location(&id)))
}

/// GET /csourceRegistrations/{id}
pub async fn retrieve(
    RegistrationId(id): RegistrationId,
    Read { call, ld, .. }: Read<RetrieveParams>,
    Accepting(accept): Accepting<false>,
) -> ApiResult {
    let Call { state, params, tenant, .. } = call;
    let regs = state.federation.registrations(state.store.as_ref(), &tenant).await?;
    let reg = regs
        .iter()
        .find(|r| r.id == id)
        .ok_or_else(|| NgsiLdError::not_found(format!("registration {id} not found")))?;
    let shown =
        render_registration(&state.federation.with_status(&tenant, reg), &ld.ctx, params.has_option("sysAttrs"));
    Ok(ld_json(StatusCode::OK, Value::Object(shown), &ld, accept))
}

/// GET /csourceRegistrations
pub async fn query(Read { call, ld, .. }: Read<QueryParams>, Accepting(accept): Accepting<false>) -> ApiResult {
    let Call { state, params, tenant, .. } = call;
    // Clause 5.10.2: a query names what it looks for.
    let names_something =
        ["id", "idPattern", "type", "attrs", "csf", "georel", "timerel", "q"].iter().any(|p| params.get(p).is_some());
    if !names_something {
        return Err(NgsiLdError::bad_request(
            "a registration query needs at least one of type, attrs, id, idPattern, q, csf, a geo-query (georel, \
             geometry, coordinates) or a temporal query (timerel, timeAt)",
        )
        .into());
    }
    let query = RegistrationQuery::parse(&params, &ld)?;
    let paging = crate::request::page(&params, &state.config)?;
    let cityhub_storage::Paging { offset, limit, count } = paging;
    let regs = state.federation.registrations(state.store.as_ref(), &tenant).await?;
    let matching = query.select(&regs);
    let total = matching.len();
    let sys_attrs = params.has_option("sysAttrs");
    let body: Vec<Value> = matching
        .iter()
        .skip(offset)
        .take(limit)
        .map(|r| Value::Object(render_registration(&state.federation.with_status(&tenant, r), &ld.ctx, sys_attrs)))
        .collect();
    let mut response = ld_json(StatusCode::OK, Value::Array(body), &ld, accept);
    if count {
        response = with_header(response, "ngsild-results-count", &total.to_string());
    }
    let has_next = offset + limit < total;
    Ok(page_links(response, "/ngsi-ld/v1/csourceRegistrations", &params, paging, has_next, LinkStyle::Entities))
}

/// What a registration query (clause 5.10.2) asks, read from its parameters.
struct RegistrationQuery {
    /// The entity selection; its `ids` are those that name no registration.
    filter: cityhub_storage::EntityFilter,
    /// `id`: registrations themselves, or the entities they cover.
    ids: Vec<String>,
    csf: Option<QExpr>,
    time: Option<TimeFilter>,
    types: Option<TypeExpr>,
}

impl RegistrationQuery {
    fn parse(params: &Params, ld: &crate::request::Ld) -> Result<RegistrationQuery, ApiError> {
        let mut filter = ngsild_query::params::entity_filter(params, &ld.ctx)?;
        let ids = std::mem::take(&mut filter.ids);
        let csf = params
            .get("csf")
            .map(|raw| QExpr::parse(raw, &ld.ctx).map_err(|e| NgsiLdError::bad_request(format!("invalid csf: {e}"))))
            .transpose()?;
        let time = TimeFilter::parse(params)?;
        let types = params
            .get("type")
            .map(|t| TypeExpr::parse(t, &ld.ctx).map_err(|e| NgsiLdError::bad_request(format!("invalid type: {e}"))))
            .transpose()?;
        Ok(RegistrationQuery { filter, ids, csf, time, types })
    }

    /// The registrations of `regs` the query selects: those its `id` names, else those covering
    /// its entities; then q and csf on the registration's own properties (clause 5.10.2.4), its
    /// location against the geo-query, its time intervals against the temporal query.
    fn select(mut self, regs: &[Registration]) -> Vec<&Registration> {
        let (named, entity_ids): (Vec<&String>, Vec<&String>) =
            self.ids.iter().partition(|id| regs.iter().any(|r| &r.id == *id));
        self.filter.ids = entity_ids.into_iter().cloned().collect();
        let (filter, types) = (&self.filter, self.types.as_ref());
        regs.iter()
            .filter(|r| if named.is_empty() { selects(r, filter, types) } else { named.contains(&&r.id) })
            .filter(|r| filter.q.as_ref().is_none_or(|q| q.matches(&as_entity(r))))
            .filter(|r| self.csf.as_ref().is_none_or(|q| q.matches(&as_entity(r))))
            .filter(|r| filter.geo.as_ref().is_none_or(|g| g.matches(&as_entity(r))))
            .filter(|r| self.time.as_ref().is_none_or(|t| t.matches(r)))
            .collect()
    }
}

/// Whether a registration covers the ids, types and attributes a query names (clauses 5.10.2.4,
/// 5.12).
fn selects(reg: &Registration, filter: &ngsild_query::EntityFilter, types: Option<&TypeExpr>) -> bool {
    let spec = EntitySpec { types, ids: &filter.ids, id_pattern: filter.id_pattern.as_ref() };
    let names_entities = spec.types.is_some() || !spec.ids.is_empty() || spec.id_pattern.is_some();
    let specs = if names_entities { vec![spec] } else { Vec::new() };
    let attrs: Vec<&String> = filter.attrs.iter().collect();
    reg.information.iter().any(|info| info.matches(&specs, &attrs))
}

/// A temporal filter on a registration's observation or management interval.
struct TimeFilter {
    management: bool,
    rel: String,
    at: chrono::DateTime<chrono::Utc>,
    end: Option<chrono::DateTime<chrono::Utc>>,
}

impl TimeFilter {
    fn parse(params: &Params) -> Result<Option<TimeFilter>, ApiError> {
        let Some(rel) = params.get("timerel") else {
            return Ok(None);
        };
        let time = |name: &str| -> Result<Option<chrono::DateTime<chrono::Utc>>, ApiError> {
            params
                .get(name)
                .map(|v| {
                    parse_datetime(v)
                        .ok_or_else(|| NgsiLdError::bad_request(format!("{name} is not a date-time")).into())
                })
                .transpose()
        };
        let at = time("timeAt")?.ok_or_else(|| NgsiLdError::bad_request("timerel needs timeAt"))?;
        let end = time("endTimeAt")?;
        if !matches!(rel, "before" | "after" | "between") || (rel == "between" && end.is_none()) {
            return Err(NgsiLdError::bad_request(format!("invalid timerel {rel:?}")).into());
        }
        let management = match params.get("timeproperty") {
            // observedAt is about observations; createdAt and modifiedAt about management.
            None | Some("observationInterval") | Some("observedAt") => false,
            Some("managementInterval") | Some("createdAt") | Some("modifiedAt") => true,
            Some(other) => return Err(NgsiLdError::bad_request(format!("invalid timeproperty {other:?}")).into()),
        };
        Ok(Some(TimeFilter { management, rel: rel.to_owned(), at, end }))
    }

    fn matches(&self, reg: &Registration) -> bool {
        let interval = if self.management { &reg.management_interval } else { &reg.observation_interval };
        let Some(interval) = interval else { return false };
        let bound = |name: &str| interval.get(name).and_then(Value::as_str).and_then(parse_datetime);
        let (start, end) = (bound("startAt"), bound("endAt"));
        match self.rel.as_str() {
            "before" => start.is_some_and(|s| s < self.at),
            "after" => end.is_none_or(|e| e > self.at),
            _ => start.is_some_and(|s| self.end.is_some_and(|t| s < t)) && end.is_none_or(|e| e > self.at),
        }
    }
}

/// PATCH /csourceRegistrations/{id}
pub async fn update(
    RegistrationId(id): RegistrationId,
    update: Update<NoParams>,
    LdBody { value, ld }: LdBody<true>,
) -> ApiResult {
    let Call { state, tenant, .. } = update.call;
    let fragment = as_object(value, "a registration fragment")?;
    let fed = &state.federation;
    let regs = fed.registrations(state.store.as_ref(), &tenant).await?;
    let reg = regs
        .iter()
        .find(|r| r.id == id)
        .ok_or_else(|| NgsiLdError::not_found(format!("registration {id} not found")))?;
    let next = patch_registration(reg, &fragment, &ld.ctx, &now())?;
    if !fed.replace(state.store.as_ref(), &tenant, &next).await? {
        return Err(NgsiLdError::not_found(format!("registration {id} not found")).into());
    }
    state.notifier.registration_changed(&tenant, Some(reg), Some(&next)).await;
    Ok(no_content())
}

/// DELETE /csourceRegistrations/{id}
pub async fn delete(RegistrationId(id): RegistrationId, update: Update<NoParams>) -> ApiResult {
    let Call { state, tenant, .. } = update.call;
    let fed = &state.federation;
    let before = fed.registrations(state.store.as_ref(), &tenant).await?.iter().find(|r| r.id == id).cloned();
    if !fed.remove(state.store.as_ref(), &tenant, &id).await? {
        return Err(NgsiLdError::not_found(format!("registration {id} not found")).into());
    }
    state.notifier.registration_changed(&tenant, before.as_ref(), None).await;
    Ok(no_content())
}
