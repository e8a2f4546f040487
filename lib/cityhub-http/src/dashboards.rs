//! Dashboards composed in the browser UI, kept in the hub as records (`RecordKind::Dashboard`)
//! of their tenant, and the few hub facts the UI's administration page reads.
//!
//! - `GET/POST /cityhub/v1/dashboards`, `GET/PUT/DELETE /cityhub/v1/dashboards/{id}`: a
//!   dashboard is `{"id", "title", "widgets": [{"kind", ...}], "share"}`; the hub names it
//!   (`urn:cityhub:Dashboard:<uuid>`) and gives it a `share` token on creation.
//! - `GET /cityhub/v1/shared/{token}`: the dashboard with that share token, read-only (no
//!   route writes through a token).
//! - `GET /cityhub/v1/tenants`: the tenants of the hub (`""` is the default one).
//!
//! Every route opens with the `extract` kinds, so `extract::admit` decides access as for the
//! NGSI-LD API. A dashboard's shape is checked here ([`check`]): a title, at most
//! [`MAX_WIDGETS`] widgets of the known kinds, at most [`MAX_DASHBOARDS`] per tenant.

use axum::extract::Path;
use axum::http::StatusCode;
use axum::response::Response;
use cityhub_storage::RecordKind;
use ngsild_core::NgsiLdError;
use serde_json::{json, Map, Value};

use crate::error::ApiResult;
use crate::extract::{JsonBody, Look, NoParams, Read, Update, Write};
use crate::response::{created, no_content, plain_json};

pub const MAX_WIDGETS: usize = 48;
pub const MAX_DASHBOARDS: usize = 1000;
const MAX_DOCUMENT_BYTES: usize = 64 * 1024;
/// The widgets the UI draws.
pub const KINDS: &[&str] = &["count", "gauge", "latest", "map", "series", "table"];

/// The dashboard in `body`, checked, with `id` and `share` set.
pub fn check(body: Value, id: &str, share: &str) -> Result<Value, NgsiLdError> {
    let Value::Object(mut map) = body else {
        return Err(NgsiLdError::bad_request("a dashboard is a JSON object: {\"title\": ..., \"widgets\": [...]}"));
    };
    let size = serde_json::to_vec(&map).map(|v| v.len()).unwrap_or(usize::MAX);
    if size > MAX_DOCUMENT_BYTES {
        return Err(NgsiLdError::bad_request(format!(
            "a dashboard may be at most {MAX_DOCUMENT_BYTES} bytes of JSON; this one is {size}: use fewer widgets"
        )));
    }
    match map.get("title") {
        Some(Value::String(t)) if !t.trim().is_empty() && t.chars().count() <= 200 => {}
        _ => return Err(NgsiLdError::bad_request("a dashboard needs a \"title\": a text of 1 to 200 characters")),
    }
    let widgets = match map.get("widgets") {
        Some(Value::Array(w)) => w,
        None => &Vec::new(),
        Some(_) => return Err(NgsiLdError::bad_request("\"widgets\" must be an array of widget objects")),
    };
    if widgets.len() > MAX_WIDGETS {
        return Err(NgsiLdError::bad_request(format!(
            "a dashboard holds at most {MAX_WIDGETS} widgets; this one has {}",
            widgets.len()
        )));
    }
    for (i, w) in widgets.iter().enumerate() {
        let kind = w.get("kind").and_then(Value::as_str).unwrap_or("");
        if !KINDS.contains(&kind) {
            return Err(NgsiLdError::bad_request(format!(
                "widget {i} has kind {kind:?}; a widget's \"kind\" is one of {}",
                KINDS.join(", ")
            )));
        }
    }
    map.insert("id".into(), json!(id));
    map.insert("share".into(), json!(share));
    Ok(Value::Object(map))
}

async fn find(state: &crate::SharedState, tenant: &str, id: &str) -> Result<Option<Map<String, Value>>, NgsiLdError> {
    let all = state.store.list_records(tenant, RecordKind::Dashboard).await?;
    Ok(all.into_iter().filter_map(|d| d.as_object().cloned()).find(|d| d.get("id").and_then(Value::as_str) == Some(id)))
}

fn missing(id: &str) -> NgsiLdError {
    NgsiLdError::not_found(format!(
        "there is no dashboard {id:?} in this tenant; GET /cityhub/v1/dashboards lists them"
    ))
}

/// GET /cityhub/v1/dashboards
pub async fn list(read: Read<NoParams>) -> ApiResult {
    let all = read.state.store.list_records(&read.tenant, RecordKind::Dashboard).await?;
    Ok(plain_json(StatusCode::OK, &Value::Array(all)))
}

/// POST /cityhub/v1/dashboards
pub async fn create(write: Write<NoParams>, JsonBody { value, .. }: JsonBody) -> ApiResult {
    let (state, tenant) = (&write.state, &write.tenant);
    if state.store.list_records(tenant, RecordKind::Dashboard).await?.len() >= MAX_DASHBOARDS {
        return Err(NgsiLdError::bad_request(format!(
            "this tenant holds {MAX_DASHBOARDS} dashboards, the most it may; delete one first"
        ))
        .into());
    }
    let id = format!("urn:cityhub:Dashboard:{}", uuid::Uuid::new_v4());
    let doc = check(value, &id, &uuid::Uuid::new_v4().simple().to_string())?;
    state.store.create_record(tenant, RecordKind::Dashboard, &id, doc).await??;
    Ok(created(&format!("/cityhub/v1/dashboards/{id}")))
}

/// GET /cityhub/v1/dashboards/{id}
pub async fn retrieve(Path(id): Path<String>, read: Read<NoParams>) -> ApiResult {
    let found = find(&read.state, &read.tenant, &id).await?.ok_or_else(|| missing(&id))?;
    Ok(plain_json(StatusCode::OK, &Value::Object(found)))
}

/// PUT /cityhub/v1/dashboards/{id}: replaces title and widgets; id and share token stay.
pub async fn replace(Path(id): Path<String>, update: Update<NoParams>, JsonBody { value, .. }: JsonBody) -> ApiResult {
    let old = find(&update.state, &update.tenant, &id).await?.ok_or_else(|| missing(&id))?;
    let share = old.get("share").and_then(Value::as_str).unwrap_or_default().to_owned();
    let doc = check(value, &id, &share)?;
    match update.state.store.replace_record(&update.tenant, RecordKind::Dashboard, &id, doc).await? {
        true => Ok(no_content()),
        false => Err(missing(&id).into()),
    }
}

/// DELETE /cityhub/v1/dashboards/{id}
pub async fn delete(Path(id): Path<String>, update: Update<NoParams>) -> ApiResult {
    match update.state.store.delete_record(&update.tenant, RecordKind::Dashboard, &id).await? {
        true => Ok(no_content()),
        false => Err(missing(&id).into()),
    }
}

/// GET /cityhub/v1/shared/{token}: the dashboard with this share token, read-only.
pub async fn shared(Path(token): Path<String>, read: Read<NoParams>) -> ApiResult {
    let all = read.state.store.list_records(&read.tenant, RecordKind::Dashboard).await?;
    let found = all.into_iter().find(|d| d.get("share").and_then(Value::as_str) == Some(token.as_str()));
    match found {
        Some(mut doc) => {
            if let Some(map) = doc.as_object_mut() {
                map.insert("readOnly".into(), json!(true));
            }
            Ok(plain_json(StatusCode::OK, &doc))
        }
        None => {
            Err(NgsiLdError::not_found("no dashboard is shared under this link; ask its owner for a new one").into())
        }
    }
}

/// GET /cityhub/v1/tenants
pub async fn tenants(look: Look<NoParams>) -> Result<Response, crate::ApiError> {
    let mut all = look.state.store.tenants().await?;
    if !all.iter().any(String::is_empty) {
        all.insert(0, String::new());
    }
    Ok(plain_json(StatusCode::OK, &json!(all)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dashboard_needs_a_title_and_known_widgets() {
        let ok =
            check(json!({"title": "Air", "widgets": [{"kind": "map"}, {"kind": "gauge", "attr": "pm25"}]}), "d1", "s1");
        let doc = ok.unwrap();
        assert_eq!(doc["id"], "d1");
        assert_eq!(doc["share"], "s1");
        let no_title = check(json!({"widgets": []}), "d", "s").unwrap_err();
        assert!(no_title.detail.contains("\"title\""), "{}", no_title.detail);
        let bad_kind = check(json!({"title": "x", "widgets": [{"kind": "pie"}]}), "d", "s").unwrap_err();
        assert!(
            bad_kind.detail.contains("widget 0 has kind \"pie\"") && bad_kind.detail.contains("gauge"),
            "{}",
            bad_kind.detail
        );
        let many = check(json!({"title": "x", "widgets": vec![json!({"kind": "count"}); MAX_WIDGETS + 1]}), "d", "s")
            .unwrap_err();
        assert!(many.detail.contains("at most 48 widgets"), "{}", many.detail);
        assert!(check(json!([1]), "d", "s").unwrap_err().detail.contains("JSON object"));
    }
}
