//! `/csourceRegistrations`: register, query, retrieve, update and delete context sources
//! (clauses 5.9, 5.10, 6.8, 6.9).

use axum::http::StatusCode;
use ngsild_core::time::now;
use ngsild_core::NgsiLdError;
use ngsild_federation::query::RegistrationQuery;
use ngsild_federation::registration::{parse_registration, patch_registration, render_registration};
use serde_json::{Map, Value};

use crate::error::ApiResult;
use crate::extract::{params, Accepting, Call, LdBody, NoParams, Read, RegistrationId, Update, Write};
use crate::request::as_object;
use crate::response::{created, ld_json, no_content, page_links, path_segment, with_header, LinkStyle};

params! {
    QueryParams = cityhub_openapi::query::CSOURCE_QUERY;
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
    crate::limits::vet_endpoint(&state, "registration endpoint", &reg.endpoint).await?;
    let id = reg.id.clone();
    fed.create(state.store.as_ref(), &tenant, &reg).await??;
    state.notifier.registration_changed(&tenant, None, Some(&reg)).await;
    Ok(created(&location(&id)))
}

/// A registration as its reader may see it: `contextSourceInfo` (the headers sent to the source,
/// which may hold the source's credentials) only for the tenant's admins, who manage them.
fn shown_to(caller: &crate::extract::Caller, tenant: &str, mut shown: Map<String, Value>) -> Map<String, Value> {
    if caller.role_in(tenant) < cityhub_access::Role::Admin {
        shown.remove("contextSourceInfo");
    }
    shown
}

/// GET /csourceRegistrations/{id}
pub async fn retrieve(
    RegistrationId(id): RegistrationId,
    Read { call, ld, .. }: Read<RetrieveParams>,
    Accepting(accept): Accepting<false>,
) -> ApiResult {
    let Call { state, params, tenant, caller, .. } = call;
    let regs = state.federation.registrations(state.store.as_ref(), &tenant).await?;
    let reg = regs
        .iter()
        .find(|r| r.id == id)
        .ok_or_else(|| NgsiLdError::not_found(format!("registration {id} not found")))?;
    let shown =
        render_registration(&state.federation.with_status(&tenant, reg), &ld.ctx, params.has_option("sysAttrs"));
    Ok(ld_json(StatusCode::OK, Value::Object(shown_to(&caller, &tenant, shown)), &ld, accept))
}

/// GET /csourceRegistrations
pub async fn query(Read { call, ld, .. }: Read<QueryParams>, Accepting(accept): Accepting<false>) -> ApiResult {
    let Call { state, params, tenant, caller, .. } = call;
    let query = RegistrationQuery::parse(&params, &ld.ctx)?;
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
        .map(|r| render_registration(&state.federation.with_status(&tenant, r), &ld.ctx, sys_attrs))
        .map(|shown| Value::Object(shown_to(&caller, &tenant, shown)))
        .collect();
    let mut response = ld_json(StatusCode::OK, Value::Array(body), &ld, accept);
    if count {
        response = with_header(response, "ngsild-results-count", &total.to_string());
    }
    let has_next = offset + limit < total;
    Ok(page_links(response, "/ngsi-ld/v1/csourceRegistrations", &params, paging, has_next, LinkStyle::Entities))
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
    crate::limits::vet_endpoint(&state, "registration endpoint", &next.endpoint).await?;
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
