//! NGSI-LD errors as HTTP responses.

use axum::http::{header, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use ngsild_core::{ErrorKind, NgsiLdError};

/// An [`NgsiLdError`] on its way out as a ProblemDetails response.
#[derive(Debug)]
pub struct ApiError(pub NgsiLdError);

impl From<NgsiLdError> for ApiError {
    fn from(e: NgsiLdError) -> Self {
        ApiError(e)
    }
}

impl ApiError {
    /// 403: the caller may not do this; `detail` names the role needed and the tenant.
    pub fn forbidden(detail: impl Into<String>) -> ApiError {
        ApiError(NgsiLdError::forbidden(detail))
    }
}

impl From<cityhub_access::Refusal> for ApiError {
    fn from(refusal: cityhub_access::Refusal) -> Self {
        ApiError::forbidden(refusal.detail())
    }
}

impl From<cityhub_access::Unseen> for ApiError {
    fn from(unseen: cityhub_access::Unseen) -> Self {
        ApiError::forbidden(unseen.0)
    }
}

impl From<cityhub_storage::StoreError> for ApiError {
    fn from(e: cityhub_storage::StoreError) -> Self {
        ApiError(e.into())
    }
}

impl ApiError {
    /// 401: missing or bad credentials; `detail` says what is wrong and what to send. Answered
    /// with `WWW-Authenticate: Bearer realm="cityhub"`.
    pub fn unauthorized(detail: impl Into<String>) -> ApiError {
        ApiError(NgsiLdError::new(ErrorKind::Unauthorized, detail))
    }
}

/// The challenge of every 401 (RFC 6750 clause 3).
pub const BEARER_CHALLENGE: &str = "Bearer realm=\"cityhub\"";

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if self.0.kind == ErrorKind::InternalError {
            tracing::error!(detail = %self.0.detail, "internal error");
        }
        let status = StatusCode::from_u16(self.0.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let body = json_bytes(&self.0.problem_details());
        let mut response = (status, [(header::CONTENT_TYPE, "application/json")], body).into_response();
        // The audit layer reads what kind of error was answered.
        response.extensions_mut().insert(self.0.kind);
        if self.0.kind == ErrorKind::Unauthorized {
            response.headers_mut().insert(header::WWW_AUTHENTICATE, header::HeaderValue::from_static(BEARER_CHALLENGE));
        }
        response
    }
}

pub type ApiResult<T = Response> = Result<T, ApiError>;

/// The answer to a handler that panicked (`CatchPanicLayer`): the panic's message goes to the
/// log, the client gets an InternalError that does not expose it.
pub fn panicked(panic: Box<dyn std::any::Any + Send + 'static>) -> Response {
    let message = panic
        .downcast_ref::<String>()
        .map(String::as_str)
        .or_else(|| panic.downcast_ref::<&str>().copied())
        .unwrap_or("(a panic without a message)");
    tracing::error!(panic = message, "a handler panicked");
    ApiError(NgsiLdError::new(
        ErrorKind::InternalError,
        "the hub failed unexpectedly while answering this request (the cause is in its log); \
         the request may be retried, and reported if it fails again",
    ))
    .into_response()
}

pub async fn not_found_fallback(uri: axum::http::Uri) -> ApiError {
    ApiError(NgsiLdError::new(ErrorKind::ResourceNotFound, format!("no resource at {}", uri.path())))
}

/// Request headers the hub reads: a value that is not visible ASCII would otherwise be ignored
/// as if it were absent (a Link or NGSILD-Tenant silently dropped), so it is refused.
const READ_HEADERS: [&str; 6] = ["ngsild-tenant", "link", "accept", "content-type", "via", "ngsild-query"];

/// Guards every request and makes every refusal a ProblemDetails.
///
/// Before the router: a declared `Content-Length` over `--max-body-bytes` answers 413 at once
/// (before hyper sends `100 Continue`), a query string that is not UTF-8 once percent-decoded and
/// a header the hub reads that is not visible ASCII answer 400, instead of being read lossily.
/// After it: the framework answers some errors itself (body too large, method not allowed,
/// unreadable body or path) in plain text or with no body; those become ProblemDetails whose
/// `detail` says what to change (the limit and its flag, the allowed methods, axum's reason).
pub async fn guard(
    axum::extract::State(state): axum::extract::State<crate::SharedState>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let limit = state.config.max_body_bytes;
    if let Some(refusal) = refuse_early(&request, limit) {
        return refusal.into_response();
    }
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    let response = next.run(request).await;
    problem_details_for_framework_errors(response, &method, &path, limit).await
}

fn refuse_early(request: &axum::extract::Request, limit: usize) -> Option<ApiError> {
    let declared =
        request.headers().get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.trim().parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Some(too_large(limit));
    }
    for (part, text) in [("path", request.uri().path()), ("query string", request.uri().query().unwrap_or(""))] {
        if let Some(at) = bad_percent_escape(text) {
            return Some(ApiError(NgsiLdError::invalid_request(format!(
                "the {part} holds a % at byte {at} that is not followed by two hexadecimal digits: \
                 write a literal % as %25"
            ))));
        }
    }
    if let Some(query) = request.uri().query() {
        if let Err(e) = percent_encoding::percent_decode_str(query).decode_utf8() {
            return Some(ApiError(NgsiLdError::invalid_request(format!(
                "the query string is not UTF-8 once percent-decoded ({e}): percent-encode the UTF-8 bytes of \
                 each character (e.g. %C3%A9 for é)"
            ))));
        }
    }
    for name in READ_HEADERS {
        for value in request.headers().get_all(name) {
            if value.to_str().is_err() {
                return Some(ApiError(NgsiLdError::invalid_request(format!(
                    "the {name} header holds bytes that are not visible ASCII: send it as ASCII text \
                     (percent-encode other characters of a URL)"
                ))));
            }
        }
    }
    None
}

/// The position of the first `%` not followed by two hexadecimal digits.
fn bad_percent_escape(text: &str) -> Option<usize> {
    let bytes = text.as_bytes();
    bytes.iter().enumerate().find_map(|(i, &b)| {
        let hex = |j: usize| bytes.get(j).is_some_and(u8::is_ascii_hexdigit);
        (b == b'%' && !(hex(i + 1) && hex(i + 2))).then_some(i)
    })
}

fn too_large(limit: usize) -> ApiError {
    ApiError(NgsiLdError::new(
        ErrorKind::PayloadTooLarge,
        format!(
            "the request body is larger than the {limit} bytes this hub accepts: send a smaller body (split a batch \
             into several), or start the hub with a larger --max-body-bytes"
        ),
    ))
}

/// The framework answers some errors itself (body too large, method not allowed, unreadable
/// body or path parameter) in plain text; clients of an NGSI-LD API expect ProblemDetails for
/// every error, with a detail they can act on.
async fn problem_details_for_framework_errors(
    response: Response,
    method: &Method,
    path: &str,
    limit: usize,
) -> Response {
    let status = response.status();
    let is_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json") || v.starts_with("application/ld+json"));
    if !(status.is_client_error() || status.is_server_error()) || is_json {
        return response;
    }
    let (parts, body) = response.into_parts();
    // axum's rejections explain themselves in a short text body.
    let text = axum::body::to_bytes(body, 16 * 1024)
        .await
        .map(|b| String::from_utf8_lossy(&b).trim().to_owned())
        .unwrap_or_default();
    let reason = |fallback: &str| if text.is_empty() { fallback.to_owned() } else { text.clone() };
    let error = match status {
        StatusCode::PAYLOAD_TOO_LARGE => too_large(limit).0,
        StatusCode::METHOD_NOT_ALLOWED => {
            let allowed =
                parts.headers.get(header::ALLOW).and_then(|v| v.to_str().ok()).unwrap_or("").replace(',', ", ");
            NgsiLdError::new(
                ErrorKind::MethodNotAllowed,
                format!("{method} is not an operation on {path}; the methods allowed there are {allowed}"),
            )
        }
        StatusCode::UNSUPPORTED_MEDIA_TYPE => NgsiLdError::new(
            ErrorKind::UnsupportedMediaType,
            format!("{}: send application/json or application/ld+json", reason("unsupported Content-Type")),
        ),
        StatusCode::NOT_FOUND => NgsiLdError::not_found(format!("no resource at {path}: {}", reason("unknown path"))),
        s if s.is_server_error() => NgsiLdError::internal(reason("the request failed")),
        _ => NgsiLdError::invalid_request(format!(
            "{} (on {method} {path}): check the path, the query string and the body",
            reason("the request could not be read")
        )),
    };
    let mut out = ApiError(error).into_response();
    *out.status_mut() = status;
    for (name, value) in parts.headers.iter() {
        if name != header::CONTENT_TYPE && name != header::CONTENT_LENGTH {
            out.headers_mut().insert(name.clone(), value.clone());
        }
    }
    out
}

/// The bytes of a JSON body. Serializing a `serde_json::Value` does not fail (its keys are
/// strings, its numbers finite); were it to, the failure is logged and the body left empty rather
/// than the request's task panicking.
pub fn json_bytes(value: &serde_json::Value) -> Vec<u8> {
    serde_json::to_vec(value).unwrap_or_else(|e| {
        tracing::error!(error = %e, "a JSON body did not serialize");
        Vec::new()
    })
}
