//! Timestamps: NGSI-LD DateTime values are ISO 8601 in UTC.

use chrono::{DateTime, SecondsFormat, Utc};

/// Now, as stored in `createdAt` / `modifiedAt` (microseconds, `Z`).
pub fn now() -> String {
    format_time(Utc::now())
}

pub fn format_time(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Micros, true)
}

/// Parses an NGSI-LD DateTime (RFC 3339 with a zone; a bare date-time is read as UTC).
pub fn parse_datetime(s: &str) -> Option<DateTime<Utc>> {
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Some(t.with_timezone(&Utc));
    }
    chrono::NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S%.f").ok().map(|n| n.and_utc())
}
