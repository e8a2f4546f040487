//! The audit log's data (issue 16 item 6): one entry per write or refusal, as every backend
//! stores it, and the filter a read applies. [`AuditFilter::matches`] is the definition of a
//! read: a backend answers exactly the entries it accepts, newest first.
//!
//! An entry never holds a secret: the identity is a subject, a key id or `anonymous`, never a
//! token, a key or a header (the shell that builds entries sees to it).

/// One audited request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditEntry {
    /// When it was answered, in microseconds since the Unix epoch (UTC).
    pub at_micros: i64,
    pub tenant: String,
    /// Who: a token's subject, `key:<id>` for an API key, or `anonymous`.
    pub subject: String,
    /// How the identity was established: `anonymous`, `jwt`, `api-key`, ...
    pub via: String,
    /// The client's address (`ip:port`).
    pub client: String,
    pub method: String,
    /// The matched route, e.g. `/ngsi-ld/v1/entities/{id}`.
    pub route: String,
    /// What the path names (an entity id, a subscription id, ...), when it names one.
    pub target: Option<String>,
    pub status: u16,
    /// The ProblemDetails type's short name (`BadRequestData`), for an error answer.
    pub error: Option<String>,
}

/// Which answers an audit read selects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuditOutcome {
    /// Status below 400.
    Success,
    /// Status 400 and above.
    Failure,
    Status(u16),
}

impl AuditOutcome {
    /// The inclusive range of statuses it selects.
    pub fn statuses(self) -> (u16, u16) {
        match self {
            AuditOutcome::Success => (0, 399),
            AuditOutcome::Failure => (400, u16::MAX),
            AuditOutcome::Status(s) => (s, s),
        }
    }
}

/// A read of the audit log: every field that is set must hold.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuditFilter {
    pub tenant: Option<String>,
    pub subject: Option<String>,
    /// A method (`POST`), a route (`/ngsi-ld/v1/entities/{id}`), or both (`POST /ngsi-ld/v1/entities/{id}`).
    pub operation: Option<String>,
    pub outcome: Option<AuditOutcome>,
    /// From this time on (microseconds, inclusive).
    pub since_micros: Option<i64>,
    /// Before this time (microseconds, exclusive).
    pub until_micros: Option<i64>,
}

impl AuditFilter {
    /// The definition of a read: whether `entry` is selected.
    pub fn matches(&self, entry: &AuditEntry) -> bool {
        let (low, high) = self.outcome.map(AuditOutcome::statuses).unwrap_or((0, u16::MAX));
        self.tenant.as_ref().is_none_or(|t| *t == entry.tenant)
            && self.subject.as_ref().is_none_or(|s| *s == entry.subject)
            && self.operation.as_ref().is_none_or(|op| {
                *op == entry.method || *op == entry.route || *op == format!("{} {}", entry.method, entry.route)
            })
            && (low..=high).contains(&entry.status)
            && self.since_micros.is_none_or(|t| entry.at_micros >= t)
            && self.until_micros.is_none_or(|t| entry.at_micros < t)
    }
}

/// One page of an audit read, newest first, and how many entries the filter selects in all.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditPage {
    pub entries: Vec<AuditEntry>,
    pub total: usize,
}
