//! Building responses: JSON bodies with the @context where the client wants it.

pub use crate::error::json_bytes;
use axum::http::{header, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::Value;

use crate::request::{Accept, Ld, GEO_JSON, JSON, JSON_LD};

/// A JSON body; with `Accept::JsonLd` each object gets the `@context` member, otherwise the
/// context travels in a `Link` header.
pub fn ld_json(status: StatusCode, mut body: Value, ld: &Ld, accept: Accept) -> Response {
    let content_type = match accept {
        Accept::Json => JSON,
        Accept::JsonLd => JSON_LD,
        Accept::GeoJson => GEO_JSON,
    };
    let mut link = None;
    match accept {
        Accept::JsonLd => {
            let ctx = ld.body_context();
            match &mut body {
                Value::Object(map) => {
                    map.insert("@context".into(), ctx);
                }
                Value::Array(items) => {
                    for item in items {
                        if let Value::Object(map) = item {
                            map.insert("@context".into(), ctx.clone());
                        }
                    }
                }
                _ => {}
            }
        }
        Accept::Json | Accept::GeoJson => {
            link = Some(format!(
                "<{}>; rel=\"http://www.w3.org/ns/json-ld#context\"; type=\"application/ld+json\"",
                ld.link_url()
            ));
        }
    }
    let mut response = (status, json_bytes(&body)).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    if let Some(link) = link.and_then(|l| HeaderValue::from_str(&l).ok()) {
        headers.insert(header::LINK, link);
    }
    response
}

/// A plain JSON body with no @context (batch results, errors in 207s, ids).
pub fn plain_json(status: StatusCode, body: &Value) -> Response {
    (status, [(header::CONTENT_TYPE, JSON)], json_bytes(body)).into_response()
}

pub fn no_content() -> Response {
    StatusCode::NO_CONTENT.into_response()
}

pub fn created(location: &str) -> Response {
    let mut response = StatusCode::CREATED.into_response();
    if let Ok(value) = HeaderValue::from_str(location) {
        response.headers_mut().insert(header::LOCATION, value);
    }
    response
}

pub fn with_header(mut response: Response, name: &'static str, value: &str) -> Response {
    if let Ok(v) = HeaderValue::from_str(value) {
        response.headers_mut().insert(HeaderName::from_static(name), v);
    }
    response
}

/// Adds a header value beside any the response has (`Link` carries several).
pub fn append_header(mut response: Response, name: &'static str, value: &str) -> Response {
    if let Ok(v) = HeaderValue::from_str(value) {
        response.headers_mut().append(HeaderName::from_static(name), v);
    }
    response
}

/// What must be escaped for an id to stand as one path segment; `:` stays readable because
/// clients look for their URN in the `Location` they get back.
const PATH_SEGMENT: &percent_encoding::AsciiSet = &percent_encoding::CONTROLS
    .add(b' ')
    .add(b'"')
    .add(b'#')
    .add(b'<')
    .add(b'>')
    .add(b'?')
    .add(b'`')
    .add(b'{')
    .add(b'}')
    .add(b'/')
    .add(b'%');

/// Escapes an id for use in a `Location` path segment.
pub fn path_segment(id: &str) -> String {
    percent_encoding::utf8_percent_encode(id, PATH_SEGMENT).to_string()
}

/// How a paging `Link` header is written: the entity API's `<...>; rel="next"`, or the
/// subscription API's `<...>;rel="next";type="application/ld+json"`, each the form the ETSI
/// suite checks for that API.
#[derive(Clone, Copy)]
pub enum LinkStyle {
    Entities,
    Subscriptions,
}

/// Adds `Link` headers to the previous and the next page of a paged list at `path`, keeping the
/// request's other parameters.
pub fn page_links(
    mut response: Response,
    path: &str,
    params: &crate::request::Params,
    paging: cityhub_storage::Paging,
    has_next: bool,
    style: LinkStyle,
) -> Response {
    let (offset, limit) = (paging.offset, paging.limit);
    if limit == 0 {
        return response;
    }
    let rest = params.query_string_without(&["limit", "offset"]);
    let sep = if rest.is_empty() { "" } else { "&" };
    let link = |offset: usize, rel: &str| match style {
        LinkStyle::Entities => format!("<{path}?{rest}{sep}limit={limit}&offset={offset}>; rel=\"{rel}\""),
        LinkStyle::Subscriptions => {
            format!("<{path}?{rest}{sep}limit={limit}&offset={offset}>;rel=\"{rel}\";type=\"application/ld+json\"")
        }
    };
    if offset > 0 {
        response = append_header(response, "link", &link(offset.saturating_sub(limit), "prev"));
    }
    if has_next {
        response = append_header(response, "link", &link(offset + limit, "next"));
    }
    response
}
