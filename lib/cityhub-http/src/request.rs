//! What every request carries besides its body: tenant, media types, @context, query parameters.

use std::sync::Arc;

use axum::http::{header, HeaderMap};
use bytes::Bytes;
use ngsild_core::{ErrorKind, NgsiLdError};
use ngsild_jsonld::{Context, CORE_CONTEXT_URL};
use serde_json::{Map, Value};

use crate::error::ApiError;
use crate::AppState;

pub const JSON: &str = "application/json";
pub const JSON_LD: &str = "application/ld+json";
pub const GEO_JSON: &str = "application/geo+json";
pub const MERGE_PATCH: &str = "application/merge-patch+json";
const CONTEXT_REL: &str = "http://www.w3.org/ns/json-ld#context";
pub const TENANT_HEADER: &str = "NGSILD-Tenant";

/// The media type a client reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Accept {
    Json,
    JsonLd,
    GeoJson,
}

/// The active @context of a request and the value to echo in the answer.
#[derive(Clone)]
pub struct Ld {
    pub ctx: Arc<Context>,
    /// What the client gave (a URL, an object, an array), or None for the core context alone.
    pub given: Option<Value>,
}

impl Ld {
    /// The URL for a `Link` header: the client's own when it gave one URL, the core's otherwise.
    pub fn link_url(&self) -> String {
        match &self.given {
            Some(Value::String(url)) => url.clone(),
            Some(Value::Array(items)) if items.len() == 1 => items[0].as_str().unwrap_or(CORE_CONTEXT_URL).to_owned(),
            _ => CORE_CONTEXT_URL.to_owned(),
        }
    }

    /// The `@context` member for an application/ld+json body.
    pub fn body_context(&self) -> Value {
        self.given.clone().unwrap_or_else(|| Value::String(CORE_CONTEXT_URL.to_owned()))
    }
}

pub use ngsild_core::params::Params;

/// `offset`, `limit` and `count` of a paged query: `limit` defaults to the hub's page size,
/// may be 0 only with `count=true`, and may not pass the hub's largest page.
pub fn page(params: &Params, config: &crate::HttpConfig) -> Result<cityhub_storage::Paging, ApiError> {
    let limit = params.usize("limit")?.unwrap_or(config.default_page_size);
    let count = params.flag("count")?;
    if limit == 0 && !count {
        return Err(NgsiLdError::bad_request("limit must be greater than zero unless count=true").into());
    }
    if limit > config.max_page_size {
        return Err(NgsiLdError::new(
            ErrorKind::TooManyResults,
            format!("limit may be at most {}", config.max_page_size),
        )
        .into());
    }
    Ok(cityhub_storage::Paging { offset: params.usize("offset")?.unwrap_or(0), limit, count })
}

/// The tenant a request names (the default tenant is "").
pub fn tenant(headers: &HeaderMap) -> Result<String, ApiError> {
    let Some(value) = headers.get(TENANT_HEADER) else {
        return Ok(String::new());
    };
    let tenant = value.to_str().map_err(|_| NgsiLdError::bad_request("the tenant name is not valid text"))?.trim();
    if tenant.len() > 128 || tenant.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return Err(NgsiLdError::bad_request(format!("invalid tenant name {tenant:?}")).into());
    }
    Ok(tenant.to_owned())
}

/// Refuses reads on a tenant that was never written to.
pub async fn existing_tenant(state: &AppState, headers: &HeaderMap) -> Result<String, ApiError> {
    let tenant = tenant(headers)?;
    if !tenant.is_empty() && !state.store.tenant_exists(&tenant).await? {
        return Err(NgsiLdError::new(ErrorKind::NonexistentTenant, format!("tenant {tenant:?} does not exist")).into());
    }
    Ok(tenant)
}

/// The response media type from `Accept` (406 when none is acceptable).
pub fn accept(headers: &HeaderMap, geo_allowed: bool) -> Result<Accept, ApiError> {
    let Some(raw) = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()) else {
        return Ok(Accept::Json);
    };
    let mut best: Option<(f32, Accept)> = None;
    for item in raw.split(',') {
        let mut parts = item.split(';');
        let media = parts.next().unwrap_or("").trim().to_ascii_lowercase();
        let q = parts.find_map(|p| p.trim().strip_prefix("q=").and_then(|q| q.parse::<f32>().ok())).unwrap_or(1.0);
        let kind = match media.as_str() {
            JSON | "application/*" | "*/*" => Some(Accept::Json),
            JSON_LD => Some(Accept::JsonLd),
            GEO_JSON if geo_allowed => Some(Accept::GeoJson),
            _ => None,
        };
        if let Some(kind) = kind {
            if q > 0.0 && best.is_none_or(|(bq, _)| q > bq) {
                best = Some((q, kind));
            }
        }
    }
    best.map(|(_, k)| k).ok_or_else(|| {
        NgsiLdError::new(
            ErrorKind::NotAcceptable,
            format!(
                "cannot answer in any of {raw}: accept application/json or application/ld+json{}",
                if geo_allowed { " (or application/geo+json)" } else { "" }
            ),
        )
        .into()
    })
}

/// The @context URL of a `Link` header, if any.
pub fn link_context(headers: &HeaderMap) -> Result<Option<String>, ApiError> {
    for value in headers.get_all(header::LINK) {
        let Ok(text) = value.to_str() else { continue };
        for link in text.split(',') {
            let mut parts = link.split(';');
            let target = parts.next().unwrap_or("").trim();
            let is_context = parts.any(|p| {
                let p = p.trim();
                p.strip_prefix("rel=").is_some_and(|rel| rel.trim_matches('"') == CONTEXT_REL)
            });
            if is_context {
                let url = target.strip_prefix('<').and_then(|t| t.strip_suffix('>'));
                return url
                    .map(|u| Some(u.to_owned()))
                    .ok_or_else(|| NgsiLdError::bad_request(format!("malformed Link header {text:?}")).into());
            }
        }
    }
    Ok(None)
}

/// The @context of a request without a body: the `Link` header's, or the core context.
pub async fn header_ld(state: &AppState, headers: &HeaderMap) -> Result<Ld, ApiError> {
    match link_context(headers)? {
        Some(url) => {
            let given = Value::String(url);
            Ok(Ld { ctx: state.contexts.resolve(&given).await?, given: Some(given) })
        }
        None => Ok(Ld { ctx: state.contexts.core(), given: None }),
    }
}

/// Reads a JSON body and its @context following clause 6.3.5: application/json takes the context
/// from `Link` and must not carry `@context`; application/ld+json must carry `@context` and must not
/// come with a `Link`.
pub async fn body_ld(
    state: &AppState,
    headers: &HeaderMap,
    body: &Bytes,
    merge_patch_allowed: bool,
) -> Result<(Value, Ld), ApiError> {
    let (mut value, is_ld) = read_json_body(headers, body, merge_patch_allowed)?;
    if !value.is_object() {
        return Err(NgsiLdError::invalid_request("the request body must be a JSON object").into());
    }
    if !is_ld && contains_context(&value) {
        return Err(
            NgsiLdError::bad_request("an application/json body must not contain @context; use a Link header").into()
        );
    }
    let link = link_context(headers)?;
    let given = if is_ld {
        let context = body_context(&mut value)?;
        Some(context.ok_or_else(|| NgsiLdError::bad_request("an application/ld+json body must contain @context"))?)
    } else {
        link.map(Value::String)
    };
    let ctx = match &given {
        Some(g) => state.contexts.resolve(g).await?,
        None => state.contexts.core(),
    };
    Ok((value, Ld { ctx, given }))
}

/// Checks the media type and parses the body; answers whether it is application/ld+json. The
/// @context rules of clause 6.3.5 that do not depend on the body's shape are enforced here.
pub fn read_json_body(headers: &HeaderMap, body: &Bytes, merge_patch_allowed: bool) -> Result<(Value, bool), ApiError> {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.split(';').next().unwrap_or("").trim().to_ascii_lowercase())
        .unwrap_or_default();
    let is_ld = match content_type.as_str() {
        // A body without a media type is read as JSON (RFC 9110 lets the recipient decide); a
        // declared type other than the JSON ones is refused.
        JSON | "" => false,
        MERGE_PATCH if merge_patch_allowed => false,
        JSON_LD => true,
        other => {
            return Err(NgsiLdError::new(
                ErrorKind::UnsupportedMediaType,
                format!(
                    "unsupported Content-Type {other}: send the body as application/json or application/ld+json{}",
                    if merge_patch_allowed { " (or application/merge-patch+json)" } else { "" }
                ),
            )
            .into())
        }
    };
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(NgsiLdError::invalid_request("the request body is empty").into());
    }
    let value: Value = serde_json::from_slice(body)
        .map_err(|e| NgsiLdError::invalid_request(format!("the request body is not valid JSON: {e}")))?;
    if is_ld && link_context(headers)?.is_some() {
        return Err(
            NgsiLdError::bad_request("application/ld+json requests must not carry a JSON-LD Link header").into()
        );
    }
    Ok((value, is_ld))
}

fn contains_context(value: &Value) -> bool {
    match value {
        Value::Object(map) => map.contains_key("@context"),
        Value::Array(items) => items.iter().any(|i| i.as_object().is_some_and(|m| m.contains_key("@context"))),
        _ => false,
    }
}

/// Takes `@context` out of a body (for an array, out of every element; they must agree).
fn body_context(value: &mut Value) -> Result<Option<Value>, ApiError> {
    match value {
        Value::Object(map) => Ok(map.remove("@context")),
        Value::Array(items) => {
            let mut found: Option<Value> = None;
            for item in items.iter_mut() {
                if let Some(ctx) = item.as_object_mut().and_then(|m| m.remove("@context")) {
                    found.get_or_insert(ctx);
                } else {
                    return Ok(None);
                }
            }
            Ok(found)
        }
        _ => Ok(None),
    }
}

pub fn as_object(value: Value, what: &str) -> Result<Map<String, Value>, ApiError> {
    match value {
        Value::Object(map) => Ok(map),
        _ => Err(NgsiLdError::bad_request(format!("{what} must be a JSON object")).into()),
    }
}
