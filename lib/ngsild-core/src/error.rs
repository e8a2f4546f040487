//! NGSI-LD errors (clause 5.5.2) and their ProblemDetails bodies (RFC 9457).
//!
//! The `type` of a ProblemDetails is under the NGSI-LD namespace
//! (`https://uri.etsi.org/ngsi-ld/errors/`) only for the error types Table 5.5.2-1 defines.
//! Refusals at the HTTP level that the table has no type for (405, 406, 413, 414, 415, 431) are
//! `about:blank` with the HTTP status and its reason phrase as `title` (RFC 9457 clause 4.2.1);
//! their `detail` still says what to change.

use serde_json::{json, Value};

pub type Result<T, E = NgsiLdError> = std::result::Result<T, E>;

/// The error types of ETSI GS CIM 009 table 5.5.2-1, plus the HTTP-level refusals a broker needs
/// (those are `about:blank`, see the module documentation).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    InvalidRequest,
    BadRequestData,
    AlreadyExists,
    OperationNotSupported,
    ResourceNotFound,
    InternalError,
    TooComplexQuery,
    TooManyResults,
    LdContextNotAvailable,
    NoMultiTenantSupport,
    NonexistentTenant,
    Conflict,
    /// HTTP 406 (`about:blank`).
    NotAcceptable,
    /// HTTP 415 (`about:blank`).
    UnsupportedMediaType,
    /// HTTP 413 (`about:blank`).
    PayloadTooLarge,
    /// HTTP 405 (`about:blank`).
    MethodNotAllowed,
    /// HTTP 414 (`about:blank`).
    UriTooLong,
    /// HTTP 431 (`about:blank`).
    RequestHeaderFieldsTooLarge,
    /// A distributed request came back to a hub it already crossed (clause 6.3.18).
    LoopDetected,
    /// HTTP 401: missing, bad, expired or revoked credentials (a cityhub type).
    Unauthorized,
    /// HTTP 429: the caller is over its rate limit (a cityhub type).
    TooManyRequests,
    /// HTTP 503: the hub has as many requests in flight as it takes (a cityhub type).
    Overloaded,
    /// HTTP 403: the caller may not do this (access control; a cityhub type).
    Forbidden,
}

impl ErrorKind {
    /// Every kind, the NGSI-LD ones and the HTTP-level ones.
    pub const ALL: [ErrorKind; 23] = [
        ErrorKind::InvalidRequest,
        ErrorKind::BadRequestData,
        ErrorKind::AlreadyExists,
        ErrorKind::OperationNotSupported,
        ErrorKind::ResourceNotFound,
        ErrorKind::InternalError,
        ErrorKind::TooComplexQuery,
        ErrorKind::TooManyResults,
        ErrorKind::LdContextNotAvailable,
        ErrorKind::NoMultiTenantSupport,
        ErrorKind::NonexistentTenant,
        ErrorKind::Conflict,
        ErrorKind::NotAcceptable,
        ErrorKind::UnsupportedMediaType,
        ErrorKind::PayloadTooLarge,
        ErrorKind::MethodNotAllowed,
        ErrorKind::UriTooLong,
        ErrorKind::RequestHeaderFieldsTooLarge,
        ErrorKind::LoopDetected,
        ErrorKind::Unauthorized,
        ErrorKind::TooManyRequests,
        ErrorKind::Overloaded,
        ErrorKind::Forbidden,
    ];

    /// Whether this kind is an NGSI-LD error type (Table 5.5.2-1) rather than an HTTP-level
    /// refusal answered as `about:blank`.
    pub fn is_ngsi_ld(self) -> bool {
        !matches!(
            self,
            ErrorKind::NotAcceptable
                | ErrorKind::UnsupportedMediaType
                | ErrorKind::PayloadTooLarge
                | ErrorKind::MethodNotAllowed
                | ErrorKind::UriTooLong
                | ErrorKind::RequestHeaderFieldsTooLarge
        ) && !self.is_cityhub()
    }

    /// Whether this kind is one of cityhub's own types (`https://cityhub.dev/errors/<Name>`):
    /// refusals about who the caller is and how much it asks, which NGSI-LD has no type for.
    pub fn is_cityhub(self) -> bool {
        matches!(
            self,
            ErrorKind::Unauthorized | ErrorKind::TooManyRequests | ErrorKind::Overloaded | ErrorKind::Forbidden
        )
    }

    /// The kind a ProblemDetails `type` names (`https://uri.etsi.org/ngsi-ld/errors/<Name>`).
    pub fn from_type_uri(uri: &str) -> Option<ErrorKind> {
        let name = uri.strip_prefix("https://uri.etsi.org/ngsi-ld/errors/")?;
        ErrorKind::ALL.into_iter().find(|k| k.is_ngsi_ld() && k.name() == name)
    }

    pub fn status(self) -> u16 {
        match self {
            ErrorKind::InvalidRequest | ErrorKind::BadRequestData => 400,
            ErrorKind::AlreadyExists | ErrorKind::Conflict => 409,
            ErrorKind::OperationNotSupported => 422,
            ErrorKind::ResourceNotFound | ErrorKind::NonexistentTenant => 404,
            ErrorKind::InternalError => 500,
            ErrorKind::TooComplexQuery | ErrorKind::TooManyResults => 403,
            ErrorKind::LdContextNotAvailable => 503,
            ErrorKind::NoMultiTenantSupport => 501,
            ErrorKind::NotAcceptable => 406,
            ErrorKind::UnsupportedMediaType => 415,
            ErrorKind::PayloadTooLarge => 413,
            ErrorKind::MethodNotAllowed => 405,
            ErrorKind::UriTooLong => 414,
            ErrorKind::RequestHeaderFieldsTooLarge => 431,
            ErrorKind::LoopDetected => 508,
            ErrorKind::Unauthorized => 401,
            ErrorKind::TooManyRequests => 429,
            ErrorKind::Overloaded => 503,
            ErrorKind::Forbidden => 403,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            ErrorKind::InvalidRequest => "InvalidRequest",
            ErrorKind::BadRequestData => "BadRequestData",
            ErrorKind::AlreadyExists => "AlreadyExists",
            ErrorKind::OperationNotSupported => "OperationNotSupported",
            ErrorKind::ResourceNotFound => "ResourceNotFound",
            ErrorKind::InternalError => "InternalError",
            ErrorKind::TooComplexQuery => "TooComplexQuery",
            ErrorKind::TooManyResults => "TooManyResults",
            ErrorKind::LdContextNotAvailable => "LdContextNotAvailable",
            ErrorKind::NoMultiTenantSupport => "NoMultiTenantSupport",
            ErrorKind::NonexistentTenant => "NonexistentTenant",
            ErrorKind::Conflict => "Conflict",
            ErrorKind::NotAcceptable => "NotAcceptable",
            ErrorKind::UnsupportedMediaType => "UnsupportedMediaType",
            ErrorKind::PayloadTooLarge => "PayloadTooLarge",
            ErrorKind::MethodNotAllowed => "MethodNotAllowed",
            ErrorKind::UriTooLong => "UriTooLong",
            ErrorKind::RequestHeaderFieldsTooLarge => "RequestHeaderFieldsTooLarge",
            ErrorKind::LoopDetected => "LoopDetected",
            ErrorKind::Unauthorized => "Unauthorized",
            ErrorKind::TooManyRequests => "TooManyRequests",
            ErrorKind::Overloaded => "Overloaded",
            ErrorKind::Forbidden => "Forbidden",
        }
    }

    /// The ProblemDetails `type`: the NGSI-LD error type URI, or `about:blank` for an
    /// HTTP-level refusal.
    pub fn type_uri(self) -> String {
        if self.is_ngsi_ld() {
            format!("https://uri.etsi.org/ngsi-ld/errors/{}", self.name())
        } else if self.is_cityhub() {
            format!("https://cityhub.dev/errors/{}", self.name())
        } else {
            "about:blank".to_owned()
        }
    }

    fn title(self) -> &'static str {
        match self {
            ErrorKind::InvalidRequest => "The request associated to the operation is syntactically invalid",
            ErrorKind::BadRequestData => {
                "The request includes input data which does not meet the requirements of the operation"
            }
            ErrorKind::AlreadyExists => "The referred element already exists",
            ErrorKind::OperationNotSupported => "The operation is not supported",
            ErrorKind::ResourceNotFound => "The referred resource has not been found",
            ErrorKind::InternalError => "There has been an error during the operation execution",
            ErrorKind::TooComplexQuery => "The query is too complex to be served",
            ErrorKind::TooManyResults => "The query yields too many results",
            ErrorKind::LdContextNotAvailable => "A remote JSON-LD @context could not be retrieved",
            ErrorKind::NoMultiTenantSupport => "Multi-tenancy is not supported",
            ErrorKind::NonexistentTenant => "The tenant does not exist",
            ErrorKind::Conflict => "The request conflicts with the state of the resource",
            // about:blank: the title is the status's reason phrase (RFC 9457 clause 4.2.1).
            ErrorKind::NotAcceptable => "Not Acceptable",
            ErrorKind::UnsupportedMediaType => "Unsupported Media Type",
            ErrorKind::PayloadTooLarge => "Payload Too Large",
            ErrorKind::MethodNotAllowed => "Method Not Allowed",
            ErrorKind::UriTooLong => "URI Too Long",
            ErrorKind::RequestHeaderFieldsTooLarge => "Request Header Fields Too Large",
            ErrorKind::LoopDetected => "The request already passed through this broker",
            ErrorKind::Unauthorized => "The request carries no valid credentials",
            ErrorKind::TooManyRequests => "The caller sent more requests than its rate limit allows",
            ErrorKind::Overloaded => "The hub is serving as many requests as it takes",
            ErrorKind::Forbidden => "The caller may not do this",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NgsiLdError {
    pub kind: ErrorKind,
    pub detail: String,
}

impl NgsiLdError {
    pub fn new(kind: ErrorKind, detail: impl Into<String>) -> Self {
        NgsiLdError { kind, detail: detail.into() }
    }
    pub fn bad_request(detail: impl Into<String>) -> Self {
        Self::new(ErrorKind::BadRequestData, detail)
    }
    pub fn invalid_request(detail: impl Into<String>) -> Self {
        Self::new(ErrorKind::InvalidRequest, detail)
    }
    pub fn not_found(detail: impl Into<String>) -> Self {
        Self::new(ErrorKind::ResourceNotFound, detail)
    }
    pub fn already_exists(detail: impl Into<String>) -> Self {
        Self::new(ErrorKind::AlreadyExists, detail)
    }
    pub fn internal(detail: impl Into<String>) -> Self {
        Self::new(ErrorKind::InternalError, detail)
    }
    pub fn forbidden(detail: impl Into<String>) -> Self {
        Self::new(ErrorKind::Forbidden, detail)
    }

    pub fn status(&self) -> u16 {
        self.kind.status()
    }

    /// The ProblemDetails body (RFC 9457) for this error.
    pub fn problem_details(&self) -> Value {
        json!({
            "type": self.kind.type_uri(),
            "title": self.kind.title(),
            "status": self.status(),
            "detail": self.detail,
        })
    }
}

impl std::fmt::Display for NgsiLdError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.kind.name(), self.detail)
    }
}

impl std::error::Error for NgsiLdError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_table_5_5_2_1_types_are_in_the_ngsi_ld_namespace() {
        for kind in ErrorKind::ALL {
            let body = NgsiLdError::new(kind, "why").problem_details();
            let ty = body["type"].as_str().unwrap_or_default();
            if kind.is_ngsi_ld() {
                assert_eq!(ty, format!("https://uri.etsi.org/ngsi-ld/errors/{}", kind.name()));
                assert_eq!(ErrorKind::from_type_uri(ty), Some(kind));
            } else if kind.is_cityhub() {
                assert_eq!(ty, format!("https://cityhub.dev/errors/{}", kind.name()));
                assert_eq!(ErrorKind::from_type_uri(ty), None);
            } else {
                assert_eq!(ty, "about:blank", "{kind:?}");
                assert!(!body["title"].as_str().unwrap_or_default().is_empty());
            }
            assert_eq!(body["status"], kind.status());
        }
        for http in ["UnsupportedMediaType", "NotAcceptable", "PayloadTooLarge", "MethodNotAllowed"] {
            assert_eq!(ErrorKind::from_type_uri(&format!("https://uri.etsi.org/ngsi-ld/errors/{http}")), None);
        }
    }
}
