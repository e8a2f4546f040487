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
