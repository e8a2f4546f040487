//! Timestamps: NGSI-LD DateTime values are ISO 8601 in UTC.

use chrono::{DateTime, SecondsFormat, Utc};

/// Now, as stored in `createdAt` / `modifiedAt` (microseconds, `Z`).
pub fn now() -> String {
    format_time(Utc::now())
}

pub fn format_time(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Micros, true)
}

/// The latest DateTime the hub reads or writes: the end of year 9999 (ISO 8601 without the
/// expanded representation has four-digit years, and so has RFC 3339).
pub fn max_datetime() -> DateTime<Utc> {
    DateTime::from_timestamp_micros(MAX_MICROS).unwrap_or(DateTime::<Utc>::MAX_UTC)
}

/// `9999-12-31T23:59:59.999999Z` in microseconds since the Unix epoch.
pub const MAX_MICROS: i64 = 253_402_300_799_999_999;
/// `0000-01-01T00:00:00Z` in microseconds since the Unix epoch.
pub const MIN_MICROS: i64 = -62_167_219_200_000_000;

/// The instant `micros` microseconds after the Unix epoch, if it lies in years 0000 to 9999.
pub fn from_micros(micros: i64) -> Option<DateTime<Utc>> {
    (MIN_MICROS..=MAX_MICROS).contains(&micros).then(|| DateTime::from_timestamp_micros(micros)).flatten()
}

/// A DateTime as histories store it: microseconds since the Unix epoch (None: not a DateTime).
pub fn micros(t: &str) -> Option<i64> {
    parse_datetime(t).map(|t| t.timestamp_micros())
}

/// [`micros`] of an optional time.
pub fn micros_of(t: Option<&str>) -> Option<i64> {
    t.and_then(micros)
}

/// The instant of a stored time; past the end of year 9999 (a period end only: every stored time
/// was a DateTime) the latest DateTime, never the epoch.
pub fn datetime_of_micros(micros: i64) -> DateTime<Utc> {
    from_micros(micros).unwrap_or_else(max_datetime)
}

/// Parses an NGSI-LD DateTime (RFC 3339 with a zone; a bare date-time is read as UTC). Years
/// outside 0000 to 9999 are not DateTimes (so every one the hub holds can be written back and
/// counted in microseconds without overflow).
pub fn parse_datetime(s: &str) -> Option<DateTime<Utc>> {
    let t = match DateTime::parse_from_rfc3339(s) {
        Ok(t) => t.with_timezone(&Utc),
        Err(_) => chrono::NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S%.f").ok()?.and_utc(),
    };
    from_micros(t.timestamp_micros())
}

/// How a client should write a DateTime, for error details.
pub const DATETIME_HINT: &str = "write an ISO 8601 date-time such as 2024-01-31T12:00:00Z, in years 0000 to 9999";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn datetimes_stay_within_four_digit_years() {
        assert!(parse_datetime("9999-12-31T23:59:59.999999Z").is_some());
        assert!(parse_datetime("0000-01-01T00:00:00Z").is_some());
        assert_eq!(parse_datetime("9999-12-31T23:59:59.999999Z"), Some(max_datetime()));
        for bad in ["10000-01-01T00:00:00Z", "+10000-01-01T00:00:00", "99999-01-01T00:00:00", "-0001-01-01T00:00:00"] {
            assert_eq!(parse_datetime(bad), None, "{bad}");
        }
        // A zone can move a date across the bounds.
        assert_eq!(parse_datetime("9999-12-31T23:00:00-02:00"), None);
        assert_eq!(from_micros(MAX_MICROS + 1), None);
        assert_eq!(from_micros(i64::MIN), None);
    }
}
