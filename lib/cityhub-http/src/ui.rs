//! The routes the browser UI needs beside the NGSI-LD API, under `/cityhub/v1`: the live
//! channel (`live`), dashboards and tenants (`dashboards`); and the UI itself (`cityhub_ui`: `/`
//! and `/ui/*`). Each opens with the `extract` kinds, so access control covers them unchanged.

use axum::routing::get;
use axum::Router;

use crate::{dashboards, limits, live, SharedState};

/// The routes; a dashboard written in a new tenant meets the same tenant limit as the NGSI-LD API.
pub fn routes(state: &SharedState) -> Router<SharedState> {
    Router::new()
        .route("/cityhub/v1/live", get(live::stream))
        .route("/cityhub/v1/tenants", get(dashboards::tenants))
        .route("/cityhub/v1/dashboards", get(dashboards::list).post(dashboards::create))
        .route(
            "/cityhub/v1/dashboards/{id}",
            get(dashboards::retrieve).put(dashboards::replace).delete(dashboards::delete),
        )
        .route("/cityhub/v1/shared/{token}", get(dashboards::shared))
        .layer(axum::middleware::from_fn_with_state(state.clone(), limits::admit_tenants))
        .merge(cityhub_ui::routes(&state.config.ui))
}
