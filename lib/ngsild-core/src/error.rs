//! NGSI-LD errors (clause 5.5.2) and their ProblemDetails bodies (RFC 7807).

use serde_json::{json, Value};

pub type Result<T, E = NgsiLdError> = std::result::Result<T, E>;

/// The error types of ETSI GS CIM 009 table 5.5.2-1, plus the HTTP-level ones a broker needs.
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
    NotAcceptable,
    UnsupportedMediaType,
    PayloadTooLarge,
    MethodNotAllowed,
    /// A distributed request came back to a hub it already crossed (clause 6.3.18).
    LoopDetected,
}

impl ErrorKind {
    pub const ALL: [ErrorKind; 17] = [
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
        ErrorKind::LoopDetected,
    ];

    /// The kind a ProblemDetails `type` names (`https://uri.etsi.org/ngsi-ld/errors/<Name>`).
    pub fn from_type_uri(uri: &str) -> Option<ErrorKind> {
        let name = uri.strip_prefix("https://uri.etsi.org/ngsi-ld/errors/")?;
        ErrorKind::ALL.into_iter().find(|k| k.name() == name)
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
            ErrorKind::LoopDetected => 508,
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
            ErrorKind::LoopDetected => "LoopDetected",
        }
    }

    pub fn type_uri(self) -> String {
        format!("https://uri.etsi.org/ngsi-ld/errors/{}", self.name())
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
            ErrorKind::NotAcceptable => "None of the accepted media types can be served",
            ErrorKind::UnsupportedMediaType => "The request body media type is not supported",
            ErrorKind::PayloadTooLarge => "The request body is too large",
            ErrorKind::MethodNotAllowed => "The method is not allowed on this resource",
            ErrorKind::LoopDetected => "The request already passed through this broker",
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

    pub fn status(&self) -> u16 {
        self.kind.status()
    }

    /// The ProblemDetails body (RFC 7807) for this error.
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
