//! `/cityhub/v1/keys`: API keys issued, listed and revoked over HTTP by admins (issue 16), so
//! a hub need not stop for `cityhub keys` (one process per SQLite directory). The same records
//! and functions as the command (`cityhub_auth::keys`): the key is shown once, in the answer
//! that issues it; the store keeps its SHA-256; every hub's key ring follows the records'
//! events, so an issued key works, and a revoked one is refused, at once.
//!
//! The access table gives these routes to the admins of the request's tenant (`Group::Keys`).
//! What an admin sees and issues is bounded by its own grant: an admin of one tenant lists,
//! issues and revokes that tenant's keys only; keys for every tenant (`"allTenants": true`)
//! are issued, and every key is listed, only for an admin whose grant holds in every tenant.
//! Another tenant's key answers 404, as one that does not exist.

use axum::extract::Path;
use axum::http::StatusCode;
use axum::routing::get;
use axum::Router;
use chrono::{DateTime, Utc};
use cityhub_access::Role;
use cityhub_auth::ApiKey;
use ngsild_core::NgsiLdError;
use serde_json::{json, Map, Value};

use crate::error::{ApiError, ApiResult};
use crate::extract::{Call, JsonBody, Look, NoParams, Write};
use crate::response::{path_segment, plain_json, with_header};
use crate::SharedState;

pub fn routes() -> Router<SharedState> {
    Router::new()
        .route("/cityhub/v1/keys", get(list).post(create))
        .route("/cityhub/v1/keys/{id}", get(retrieve).delete(revoke))
}

const FIELDS: &[&str] = &["role", "name", "expires", "rateLimit", "allTenants"];

/// Whether the caller's admin grant holds in every tenant.
fn everywhere(call: &Call) -> bool {
    call.caller.grants.iter().any(|g| g.tenant.is_none() && g.role == Role::Admin)
}

fn visible(call: &Call, key: &ApiKey) -> bool {
    everywhere(call) || key.tenant.as_deref() == Some(call.tenant.as_str())
}

/// A key as the API shows it: never its hash.
fn view(key: &ApiKey) -> Value {
    let state = match (&key.revoked, key.expired(Utc::now())) {
        (Some(_), _) => "revoked",
        (None, true) => "expired",
        (None, false) => "active",
    };
    json!({
        "id": key.id, "name": key.name, "tenant": key.tenant, "allTenants": key.tenant.is_none(),
        "role": key.role, "rateLimit": key.rate, "created": key.created, "expires": key.expires,
        "revoked": key.revoked, "state": state,
    })
}

fn bad(detail: String) -> ApiError {
    ApiError(NgsiLdError::bad_request(detail))
}

/// What a POST asks for.
struct Asked {
    role: Role,
    name: Option<String>,
    expires: Option<DateTime<Utc>>,
    rate: Option<f64>,
    all_tenants: bool,
}

fn read(body: &Value) -> Result<Asked, ApiError> {
    let Some(doc) = body.as_object() else {
        return Err(bad(format!("a key request is a JSON object with {}", FIELDS.join(", "))));
    };
    if let Some(field) = doc.keys().find(|k| !FIELDS.contains(&k.as_str())) {
        return Err(bad(format!("a key request has no field {field:?}; its fields are {}", FIELDS.join(", "))));
    }
    let roles = || Role::ALL.map(Role::name).join(", ");
    let role = match doc.get("role") {
        Some(Value::String(r)) => {
            r.parse::<Role>().map_err(|_| bad(format!("role {r:?} is no role; give one of {}", roles())))?
        }
        _ => return Err(bad(format!("role is needed: one of {}", roles()))),
    };
    let text = |field: &str, doc: &Map<String, Value>| match doc.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(other) => Err(bad(format!("{field} must be a string, not {other}"))),
    };
    let name = text("name", doc)?;
    if name.as_ref().is_some_and(|n| n.chars().count() > 200 || n.chars().any(char::is_control)) {
        return Err(bad("name must be at most 200 characters, none of them a control character".into()));
    }
    let expires = match text("expires", doc)? {
        None => None,
        Some(t) => {
            let at = DateTime::parse_from_rfc3339(&t)
                .map_err(|_| bad(format!("expires {t:?} is not a DateTime: {}", ngsild_core::time::DATETIME_HINT)))?
                .with_timezone(&Utc);
            if at <= Utc::now() {
                return Err(bad(format!("expires {t} is past: give a time to come")));
            }
            Some(at)
        }
    };
    let rate = match doc.get("rateLimit") {
        None | Some(Value::Null) => None,
        Some(v) => match v.as_f64() {
            Some(r) if r > 0.0 && r.is_finite() => Some(r),
            _ => return Err(bad(format!("rateLimit must be a number of requests per second above 0, not {v}"))),
        },
    };
    let all_tenants = match doc.get("allTenants") {
        None | Some(Value::Bool(false)) => false,
        Some(Value::Bool(true)) => true,
        Some(other) => return Err(bad(format!("allTenants must be true or false, not {other}"))),
    };
    Ok(Asked { role, name, expires, rate, all_tenants })
}

/// POST /cityhub/v1/keys: issues a key of the request's tenant (or of every tenant); the answer
/// holds the key, this once.
async fn create(write: Write<NoParams>, body: JsonBody) -> ApiResult {
    let asked = read(&body.value)?;
    if asked.all_tenants && !everywhere(&write) {
        return Err(ApiError(NgsiLdError::forbidden(format!(
            "a key for every tenant is issued only to an admin of every tenant; leave allTenants out to issue one \
             for tenant '{}'",
            write.tenant
        ))));
    }
    let tenant = (!asked.all_tenants).then_some(write.tenant.as_str());
    let store = write.state.store.as_ref();
    let (id, secret) =
        cityhub_auth::issue_key(store, tenant, asked.role, asked.expires, asked.name.as_deref(), asked.rate).await?;
    write.state.auth.keys_changed(store).await?;
    let key = find(&write, &id).await?;
    let mut shown = view(&key);
    shown["key"] = json!(secret);
    shown["keyNote"] = json!("the key is shown this once and cannot be read back: hand it to its holder now");
    let response = plain_json(StatusCode::CREATED, &shown);
    Ok(with_header(response, "location", &format!("/cityhub/v1/keys/{}", path_segment(&id))))
}

/// GET /cityhub/v1/keys: the keys the caller may see, revoked and expired ones included.
async fn list(look: Look<NoParams>) -> ApiResult {
    let keys = cityhub_auth::list_keys(look.state.store.as_ref()).await?;
    let shown: Vec<Value> = keys.iter().filter(|k| visible(&look, k)).map(view).collect();
    Ok(plain_json(StatusCode::OK, &Value::Array(shown)))
}

async fn find(call: &Call, id: &str) -> Result<ApiKey, ApiError> {
    let keys = cityhub_auth::list_keys(call.state.store.as_ref()).await?;
    keys.into_iter().find(|k| k.id == id && visible(call, k)).ok_or_else(|| {
        ApiError(NgsiLdError::not_found(format!(
            "no API key {id} in tenant '{}': GET /cityhub/v1/keys lists them",
            call.tenant
        )))
    })
}

/// GET /cityhub/v1/keys/{id}
async fn retrieve(Path(id): Path<String>, look: Look<NoParams>) -> ApiResult {
    Ok(plain_json(StatusCode::OK, &view(&find(&look, &id).await?)))
}

/// DELETE /cityhub/v1/keys/{id}: revokes the key (its record stays, with the time); answers
/// the key as revoked. Revoking again keeps the first time.
async fn revoke(Path(id): Path<String>, write: Write<NoParams>) -> ApiResult {
    find(&write, &id).await?;
    let revoked = cityhub_auth::revoke_key(write.state.store.as_ref(), &id).await?;
    write.state.auth.keys_changed(write.state.store.as_ref()).await?;
    let key = revoked.ok_or_else(|| ApiError(NgsiLdError::not_found(format!("no API key {id}"))))?;
    Ok(plain_json(StatusCode::OK, &view(&key)))
}
