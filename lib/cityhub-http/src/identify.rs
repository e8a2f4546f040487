//! Who sends a request, read once, before the router: the identify layer, the bound on requests
//! in flight, and `/auth/whoami`.
//!
//! [`bound_in_flight`] runs first: a request over `--max-in-flight` answers 503 (`Overloaded`,
//! `Retry-After: 1`) at once, so overload sheds instead of queueing without bound. Then
//! [`identify`] hands the headers to [`cityhub_auth::Auth::identify`] (open mode: an admin
//! everywhere; enforced mode: the key's or the token's identity, or the anonymous public one),
//! takes a token from the caller's rate bucket (429 `TooManyRequests` with `Retry-After`), and
//! puts the caller's `Arc<cityhub_access::Identity>` (shared, never copied per request)
//! into the request's extensions — where
//! `extract::caller` reads it for every handler, those of routes other crates merge in too —
//! and into the response's (for the audit log). Bad, expired or revoked credentials answer 401
//! here, with `WWW-Authenticate: Bearer realm="cityhub", error="invalid_token",
//! error_description="..."` (RFC 6750).

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{header, HeaderValue};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use cityhub_access::{Identity, Via};
use ngsild_core::{ErrorKind, NgsiLdError};

use crate::error::ApiError;
use crate::wire::ClientAddr;
use crate::SharedState;

/// Over `--max-in-flight` requests at once: 503 at once.
pub async fn bound_in_flight(State(state): State<SharedState>, request: Request, next: Next) -> Response {
    let Ok(_permit) = state.in_flight.clone().try_acquire_owned() else {
        metrics::counter!("cityhub_in_flight_shed_total").increment(1);
        let mut response = ApiError(NgsiLdError::new(
            ErrorKind::Overloaded,
            format!(
                "the hub is serving {} requests already, as many as it takes at once (--max-in-flight): retry \
                 after the time in Retry-After",
                state.config.max_in_flight
            ),
        ))
        .into_response();
        response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        return response;
    };
    next.run(request).await
}

/// Reads the caller's identity into the request's and the response's extensions.
pub async fn identify(State(state): State<SharedState>, mut request: Request, next: Next) -> Response {
    // The operator's scrape token is no credential of the identity sources: on `/metrics` it
    // passes as itself, anonymous everywhere else.
    if crate::ops::is_scrape(&state, &request) {
        request.extensions_mut().insert(crate::ops::Scraper);
        request.extensions_mut().insert(Identity::anonymous());
        return next.run(request).await;
    }
    let verified = match state.auth.identify(request.headers()).await {
        Ok(verified) => verified,
        Err(refused) => return unauthorized(&refused),
    };
    let peer = request.extensions().get::<ConnectInfo<ClientAddr>>().map(|c| c.0 .0.ip());
    if let Err(wait) = state.auth.admit_rate(&verified, peer) {
        metrics::counter!("cityhub_rate_limited_total").increment(1);
        let seconds = wait.as_secs_f64().ceil().max(1.0) as u64;
        let mut response = ApiError(NgsiLdError::new(
            ErrorKind::TooManyRequests,
            format!(
                "this caller sent more requests than its rate limit allows: retry after {seconds} s (Retry-After), \
                 and send fewer requests per second"
            ),
        ))
        .into_response();
        response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        response.extensions_mut().insert(verified.identity);
        return response;
    }
    // One `Arc<Identity>` shared by the request, the response and every handler (no copy).
    let identity = verified.identity;
    request.extensions_mut().insert(identity.clone());
    let mut response = next.run(request).await;
    response.extensions_mut().insert(identity);
    response
}

/// The 401 of refused credentials (RFC 6750: `invalid_token` when one was sent).
fn unauthorized(refused: &cityhub_auth::Unauthorized) -> Response {
    let mut response = ApiError::unauthorized(refused.detail.clone()).into_response();
    if refused.token_sent {
        // A quoted-string: no `"` or `\`, visible ASCII only.
        let description: String = refused
            .detail
            .chars()
            .map(|c| if c == '"' || c == '\\' { '\'' } else { c })
            .filter(|c| c.is_ascii() && !c.is_ascii_control())
            .collect();
        let challenge =
            format!("{}, error=\"invalid_token\", error_description=\"{description}\"", crate::error::BEARER_CHALLENGE);
        if let Ok(value) = HeaderValue::from_str(&challenge) {
            response.headers_mut().insert(header::WWW_AUTHENTICATE, value);
        }
    }
    response
}

/// `/auth/whoami`: the caller's identity as the hub read it (subject, how, grants).
pub fn routes() -> Router<SharedState> {
    Router::new().route("/auth/whoami", get(whoami))
}

async fn whoami(request: Request) -> axum::Json<serde_json::Value> {
    let (parts, _) = request.into_parts();
    let caller = crate::extract::caller(&parts).unwrap_or_else(|_| std::sync::Arc::new(Identity::anonymous()));
    let via = match caller.via {
        Via::Anonymous => "anonymous",
        Via::Token => "token",
        Via::Key => "key",
    };
    let grants: Vec<String> = caller.grants.iter().map(ToString::to_string).collect();
    axum::Json(serde_json::json!({"subject": caller.subject, "via": via, "grants": grants}))
}
