//! Retrieve Context Source Identity Information (clause 5.15.1, resource `/info/sourceIdentity`
//! of clause 6.33): who this hub is, so that a peer registering it can name it with the
//! `contextSourceAlias` it puts in `Via` (and so keep from asking it what it already asked).

use axum::http::StatusCode;
use serde_json::json;

use crate::error::ApiResult;
use crate::extract::{Accepting, Look, NoParams};
use crate::response::ld_json;

/// `GET /info/sourceIdentity`: a ContextSourceIdentity (clause 5.2.40) in the client's @context
/// rules (Link header for `application/json`, `@context` member for `application/ld+json`).
/// The identity is the hub's, whichever tenant is asked for.
pub async fn source_identity(Look { call, ld, .. }: Look<NoParams>, Accepting(accept): Accepting<false>) -> ApiResult {
    let federation = &call.state.federation;
    let body = json!({
        "id": format!("urn:ngsi-ld:ContextSource:{}", federation.me),
        "type": "ContextSourceIdentity",
        "contextSourceAlias": federation.me,
        "contextSourceUptime": iso_duration(federation.started.elapsed()),
        "contextSourceTimeAt": ngsild_core::time::now(),
        "contextSourceExtras": {
            "name": "cityhub",
            "version": env!("CARGO_PKG_VERSION"),
            "timeOfStartup": federation.time_of_startup,
        },
    });
    Ok(ld_json(StatusCode::OK, body, &ld, accept))
}

/// An ISO 8601 duration: `PT1H2M3.250S`.
fn iso_duration(elapsed: std::time::Duration) -> String {
    let millis = elapsed.as_millis();
    let (hours, rest) = (millis / 3_600_000, millis % 3_600_000);
    let (minutes, rest) = (rest / 60_000, rest % 60_000);
    format!("PT{hours}H{minutes}M{}.{:03}S", rest / 1000, rest % 1000)
}

#[cfg(test)]
mod tests {
    #[test]
    fn uptime_is_an_iso_8601_duration() {
        let d = |ms| super::iso_duration(std::time::Duration::from_millis(ms));
        assert_eq!(d(0), "PT0H0M0.000S");
        assert_eq!(d(3_723_250), "PT1H2M3.250S");
        assert_eq!(d(90_000_000), "PT25H0M0.000S");
    }
}
