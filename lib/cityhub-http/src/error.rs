//! NGSI-LD errors as HTTP responses.

use axum::http::{header, StatusCode};
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

impl From<cityhub_storage::StoreError> for ApiError {
    fn from(e: cityhub_storage::StoreError) -> Self {
        ApiError(e.into())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if self.0.kind == ErrorKind::InternalError {
            tracing::error!(detail = %self.0.detail, "internal error");
        }
        let status = StatusCode::from_u16(self.0.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let body = serde_json::to_vec(&self.0.problem_details()).unwrap_or_default();
        (status, [(header::CONTENT_TYPE, "application/json")], body).into_response()
    }
}

pub type ApiResult<T = Response> = Result<T, ApiError>;

pub async fn not_found_fallback(uri: axum::http::Uri) -> ApiError {
    ApiError(NgsiLdError::new(ErrorKind::ResourceNotFound, format!("no resource at {}", uri.path())))
}

/// The framework answers some errors itself (body too large, method not allowed, unreadable
/// body) in plain text; clients of an NGSI-LD API expect ProblemDetails for every error.
pub async fn problem_details_for_framework_errors(response: Response) -> Response {
    let status = response.status();
    let is_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json") || v.starts_with("application/ld+json"));
    if !(status.is_client_error() || status.is_server_error()) || is_json {
        return response;
    }
    let kind = match status {
        StatusCode::PAYLOAD_TOO_LARGE => ErrorKind::PayloadTooLarge,
        StatusCode::METHOD_NOT_ALLOWED => ErrorKind::MethodNotAllowed,
        StatusCode::UNSUPPORTED_MEDIA_TYPE => ErrorKind::UnsupportedMediaType,
        StatusCode::NOT_FOUND => ErrorKind::ResourceNotFound,
        s if s.is_server_error() => ErrorKind::InternalError,
        _ => ErrorKind::InvalidRequest,
    };
    let detail = status.canonical_reason().unwrap_or("request refused").to_owned();
    let mut out = ApiError(NgsiLdError::new(kind, detail)).into_response();
    *out.status_mut() = status;
    out
}
