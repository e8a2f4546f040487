//! Open-data pollers: a scheduled HTTP GET of a JSON, CSV, GeoJSON or XML source (Korea's
//! data.go.kr Open APIs, city portals), its records mapped to entities by the declarative
//! mapping of `cityhub-import`, upserted every interval; managed over `/cityhub/v1/pollers`.
//!
//! - [`poller`]: a poller's definition, checked, and its status (pure);
//! - [`api`]: the CRUD routes ([`routes`]), built with `cityhub_http::extract`;
//! - [`run`]: the schedule (store events, one lease per poller across hubs), a run with retries
//!   and backoff, and its status.
//!
//! **May:** GET the sources its pollers name, with [`run::outgoing_client`]; read and write
//! records of kinds `Poller` and `PollerStatus`; write entities through `Store::modify` (the
//! NGSI-LD API's write path). **Never:** write a store table another way, hold state other hubs
//! need (definitions and statuses are records; the schedule follows store events), run a poller
//! without holding its lease.

#![forbid(unsafe_code)]
#![warn(clippy::unwrap_used, clippy::expect_used)]

pub mod api;
pub mod poller;
pub mod run;

use axum::routing::get;
use axum::{Extension, Router};
use cityhub_http::SharedState;

pub use run::{start, PollerConfig};

/// The routes of `/cityhub/v1/pollers`, to merge beside the NGSI-LD API
/// (`cityhub_http::app_with`).
pub fn routes(config: PollerConfig) -> Router<SharedState> {
    Router::new()
        .route(api::BASE, get(api::list).post(api::create))
        .route(&format!("{}/{{id}}", api::BASE), get(api::retrieve).put(api::replace).delete(api::delete))
        .layer(Extension(config))
}
