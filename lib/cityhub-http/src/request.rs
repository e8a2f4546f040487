//! What every request carries besides its body: tenant, media types, @context, query parameters.

use std::sync::Arc;

use axum::http::{header, HeaderMap};
use bytes::Bytes;
use ngsild_core::limits::MAX_JOIN_LEVEL;
use ngsild_core::render::{Format, Join, Projection, RenderOptions};
use ngsild_core::{ErrorKind, NgsiLdError};
use ngsild_jsonld::{Context, CORE_CONTEXT_URL};
use ngsild_query::projection::{parse_projection, projection_depth, ProjectionItem};
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

/// Query parameters, checked against what the endpoint understands.
#[derive(Debug, Default, Clone)]
pub struct Params(Vec<(String, String)>);

impl Params {
    pub fn parse(raw: Option<&str>, allowed: &[&str]) -> Result<Params, ApiError> {
        let pairs: Vec<(String, String)> = form_urlencoded::parse(raw.unwrap_or("").as_bytes()).into_owned().collect();
        if let Some((name, _)) = pairs.iter().find(|(name, _)| !allowed.contains(&name.as_str())) {
            return Err(NgsiLdError::invalid_request(format!("unknown query parameter {name:?}")).into());
        }
        Ok(Params(pairs))
    }

    /// Parameters as they are, unchecked (for limits applied before an endpoint reads them).
    pub fn from_pairs(pairs: Vec<(String, String)>) -> Params {
        Params(pairs)
    }

    pub fn pairs(&self) -> &[(String, String)] {
        &self.0
    }

    pub fn push(&mut self, pair: (String, String)) {
        self.0.push(pair);
    }

    pub fn retain(&mut self, keep: impl FnMut(&(String, String)) -> bool) {
        self.0.retain(keep);
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.0.iter().rev().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }

    /// A comma-separated list parameter; empty items are an error.
    pub fn list(&self, name: &str) -> Result<Option<Vec<String>>, ApiError> {
        let Some(raw) = self.get(name) else {
            return Ok(None);
        };
        let items: Vec<String> = raw.split(',').map(|s| s.trim().to_owned()).collect();
        if items.iter().any(String::is_empty) {
            return Err(NgsiLdError::bad_request(format!("{name} has an empty item")).into());
        }
        Ok(Some(items))
    }

    pub fn flag(&self, name: &str) -> Result<bool, ApiError> {
        match self.get(name) {
            None => Ok(false),
            Some("true") => Ok(true),
            Some("false") => Ok(false),
            Some(other) => Err(NgsiLdError::bad_request(format!("{name} must be true or false, not {other:?}")).into()),
        }
    }

    pub fn usize(&self, name: &str) -> Result<Option<usize>, ApiError> {
        self.get(name)
            .map(|v| {
                v.parse::<usize>().map_err(|_| {
                    NgsiLdError::bad_request(format!(
                        "{name} must be a non-negative integer of at most {}, not {v:?}",
                        usize::MAX
                    ))
                    .into()
                })
            })
            .transpose()
    }

    /// `offset`, `limit` and `count` of a paged query: `limit` defaults to the hub's page size,
    /// may be 0 only with `count=true`, and may not pass the hub's largest page.
    pub fn page(&self, config: &crate::HttpConfig) -> Result<cityhub_storage::Paging, ApiError> {
        let limit = self.usize("limit")?.unwrap_or(config.default_page_size);
        let count = self.flag("count")?;
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
        Ok(cityhub_storage::Paging { offset: self.usize("offset")?.unwrap_or(0), limit, count })
    }

    /// These parameters as a query string, without the named ones (to build paging links).
    pub fn query_string_without(&self, skip: &[&str]) -> String {
        let mut out = form_urlencoded::Serializer::new(String::new());
        for (name, value) in self.0.iter().filter(|(n, _)| !skip.contains(&n.as_str())) {
            out.append_pair(name, value);
        }
        out.finish()
    }

    /// The `options` list (comma-separated).
    pub fn options(&self) -> Vec<&str> {
        self.0.iter().filter(|(n, _)| n == "options").flat_map(|(_, v)| v.split(',')).map(str::trim).collect()
    }

    /// Whether `options` asks for `sysAttrs`, for the subscription APIs, which show one
    /// representation: the format options are accepted and change nothing, any other is refused.
    pub fn sys_attrs_only(&self) -> Result<bool, ApiError> {
        let mut sys_attrs = false;
        for option in self.options() {
            match option {
                "sysAttrs" => sys_attrs = true,
                "" | "normalized" | "keyValues" | "concise" => {}
                other => return Err(NgsiLdError::bad_request(format!("unknown option {other:?}")).into()),
            }
        }
        Ok(sys_attrs)
    }

    pub fn has_option(&self, option: &str) -> bool {
        self.options().contains(&option)
    }
}

/// Adds the terms of a `Query` body (clause 5.2.23) to `params`, as the query string would carry
/// them; the GET and POST forms of a query then share one reading of their parameters.
pub fn push_query_body(query: &Map<String, Value>, params: &mut Params) {
    let text = |v: &Value| match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    for (key, value) in query {
        match key.as_str() {
            "entities" => {
                // Several selectors widen the query: their types and ids are alternatives.
                let (mut types, mut ids) = (Vec::new(), Vec::new());
                for selector in value.as_array().into_iter().flatten() {
                    if let Some(t) = selector.get("type") {
                        types.push(text(t));
                    }
                    if let Some(id) = selector.get("id") {
                        ids.push(text(id));
                    }
                    if let Some(p) = selector.get("idPattern") {
                        params.push(("idPattern".to_owned(), text(p)));
                    }
                }
                if !types.is_empty() {
                    params.push(("type".to_owned(), types.join(",")));
                }
                if !ids.is_empty() {
                    params.push(("id".to_owned(), ids.join(",")));
                }
            }
            "attrs" | "pick" | "omit" => params.push((
                key.clone(),
                value
                    .as_array()
                    .map(|a| a.iter().map(text).collect::<Vec<_>>().join(","))
                    .unwrap_or_else(|| text(value)),
            )),
            "q" | "scopeQ" | "lang" | "join" | "joinLevel" => params.push((key.clone(), text(value))),
            "geoQ" => {
                for member in ["georel", "geometry", "geoproperty"] {
                    if let Some(v) = value.get(member) {
                        params.push((member.to_owned(), text(v)));
                    }
                }
                if let Some(c) = value.get("coordinates") {
                    params.push(("coordinates".to_owned(), c.to_string()));
                }
            }
            "temporalQ" => {
                for member in ["timerel", "timeAt", "endTimeAt", "timeproperty", "lastN"] {
                    if let Some(v) = value.get(member) {
                        params.push((member.to_owned(), text(v)));
                    }
                }
            }
            _ => {}
        }
    }
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

/// Output options shared by retrieval and query: `options`, `format`, `lang`, `attrs`, `pick`,
/// `omit`.
pub fn render_options(params: &Params, ctx: &Context) -> Result<RenderOptions, ApiError> {
    let mut format = Format::Normalized;
    let mut sys_attrs = false;
    for option in params.options() {
        match option {
            "keyValues" | "simplified" => format = Format::KeyValues,
            "concise" => format = Format::Concise,
            "normalized" => format = Format::Normalized,
            "sysAttrs" => sys_attrs = true,
            "" => {}
            // Options of other operations are tolerated here (clients send them freely).
            "noOverwrite" | "replace" | "update" | "temporalValues" | "aggregatedValues" => {}
            other => return Err(NgsiLdError::invalid_request(format!("unknown option {other:?}")).into()),
        }
    }
    if let Some(f) = params.get("format") {
        format = match f {
            "keyValues" | "simplified" => Format::KeyValues,
            "concise" => Format::Concise,
            "normalized" => Format::Normalized,
            other => return Err(NgsiLdError::invalid_request(format!("unknown format {other:?}")).into()),
        };
    }
    let attrs = params
        .list("attrs")?
        .map(|names| names.iter().map(|n| projected_name(n, ctx)).collect::<Result<Vec<_>, _>>())
        .transpose()?;
    let pick = projection_list(params, "pick")?;
    let omit = projection_list(params, "omit")?;
    let given = [attrs.is_some(), pick.is_some(), omit.is_some()].iter().filter(|g| **g).count();
    if given > 1 {
        return Err(NgsiLdError::bad_request("attrs, pick and omit cannot be combined").into());
    }
    let join = join(params)?;
    let depth = pick.as_deref().or(omit.as_deref()).map(projection_depth).unwrap_or(0);
    match join {
        None if depth > 0 => {
            return Err(NgsiLdError::bad_request("a projection into linked entities needs join=inline or flat").into())
        }
        Some((_, level)) if depth > level as usize => {
            return Err(NgsiLdError::bad_request(format!(
                "the projection reaches {depth} linked levels deep, beyond joinLevel={level}"
            ))
            .into())
        }
        _ => {}
    }
    let dataset_ids = params
        .list("datasetId")?
        .map(|ids| ids.into_iter().map(|id| if id == "@none" { None } else { Some(id) }).collect::<Vec<_>>());
    let mut projection = match (attrs, pick, omit) {
        (Some(only), _, _) => Projection { only: Some(only), ..Default::default() },
        (_, Some(pick), _) => picked(&pick, ctx)?,
        (_, _, Some(omit)) => omitted(&omit, ctx)?,
        _ => Projection::default(),
    };
    projection.dataset_ids = dataset_ids;
    Ok(RenderOptions { format, sys_attrs, lang: params.get("lang").map(str::to_owned), projection, join })
}

/// `join` and `joinLevel` (default 1, at most [`MAX_JOIN_LEVEL`]) of Linked Entity retrieval.
fn join(params: &Params) -> Result<Option<(Join, u32)>, ApiError> {
    let join = match params.get("join") {
        None | Some("") => return Ok(None),
        Some("inline") => Join::Inline,
        Some("flat") => Join::Flat,
        Some(other) => {
            return Err(NgsiLdError::bad_request(format!("join must be inline or flat, not {other:?}")).into())
        }
    };
    let level =
        match params.get("joinLevel") {
            None => 1,
            Some(level) => level.parse::<u32>().ok().filter(|l| *l > 0).ok_or_else(|| {
                NgsiLdError::bad_request(format!("joinLevel must be a positive integer, not {level:?}"))
            })?,
        };
    if level > MAX_JOIN_LEVEL {
        return Err(NgsiLdError::bad_request(format!(
            "joinLevel={level} is beyond the limit of this hub, {MAX_JOIN_LEVEL}; ask for at most {MAX_JOIN_LEVEL} levels"
        ))
        .into());
    }
    Ok(Some((join, level)))
}

fn projection_list(params: &Params, name: &str) -> Result<Option<Vec<ProjectionItem>>, ApiError> {
    params
        .get(name)
        .map(|raw| parse_projection(raw).map_err(|e| NgsiLdError::bad_request(format!("invalid {name}: {e}")).into()))
        .transpose()
}

fn projected_name(name: &str, ctx: &Context) -> Result<String, NgsiLdError> {
    ngsild_core::validate::check_name(name, "attribute")?;
    Ok(match name {
        "id" | "type" | "scope" => name.to_owned(),
        _ => ctx.expand_term(name).into_owned(),
    })
}

/// `pick`: only these members; an item with braces is picked and projects its linked Entity.
fn picked(items: &[ProjectionItem], ctx: &Context) -> Result<Projection, NgsiLdError> {
    let mut projection = Projection { only: Some(Vec::new()), strict_core: true, ..Default::default() };
    for item in items {
        let name = projected_name(&item.name, ctx)?;
        if let Some(nested) = &item.nested {
            projection.linked.push((name.clone(), picked(nested, ctx)?));
        }
        projection.only.get_or_insert_with(Vec::new).push(name);
    }
    Ok(projection)
}

/// `omit`: never these members; an item with braces is kept and only projects its linked Entity.
fn omitted(items: &[ProjectionItem], ctx: &Context) -> Result<Projection, NgsiLdError> {
    let mut projection = Projection::default();
    for item in items {
        let name = projected_name(&item.name, ctx)?;
        match &item.nested {
            Some(nested) => projection.linked.push((name, omitted(nested, ctx)?)),
            None => projection.omit.push(name),
        }
    }
    Ok(projection)
}
