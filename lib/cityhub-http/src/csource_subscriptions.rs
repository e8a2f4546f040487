//! `/csourceSubscriptions` (clauses 5.11, 6.10, 6.11): subscriptions to context source
//! registrations. They are the Subscription data type, served by the operations of
//! `subscriptions` with `SubscriptionKind::CSource`: stored beside entity subscriptions, matched
//! against registrations by the `Notifier` (told of every registration change by `csource`),
//! and delivered through the same outbox.

use axum::extract::{Path, RawQuery, State};
use axum::http::HeaderMap;
use bytes::Bytes;
use cityhub_storage::SubscriptionKind;

use crate::error::ApiResult;
use crate::subscriptions::{create_of, delete_of, query_of, retrieve_of, update_of};
use crate::SharedState;

const KIND: SubscriptionKind = SubscriptionKind::CSource;

/// POST /csourceSubscriptions
pub async fn create(
    State(state): State<SharedState>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
    body: Bytes,
) -> ApiResult {
    create_of(KIND, state, headers, raw, body).await
}

/// GET /csourceSubscriptions/{id}
pub async fn retrieve(
    State(state): State<SharedState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    RawQuery(raw): RawQuery,
) -> ApiResult {
    retrieve_of(KIND, state, headers, id, raw).await
}

/// GET /csourceSubscriptions
pub async fn query(State(state): State<SharedState>, headers: HeaderMap, RawQuery(raw): RawQuery) -> ApiResult {
    query_of(KIND, state, headers, raw).await
}

/// PATCH /csourceSubscriptions/{id}
pub async fn update(
    State(state): State<SharedState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    RawQuery(raw): RawQuery,
    body: Bytes,
) -> ApiResult {
    update_of(KIND, state, headers, id, raw, body).await
}

/// DELETE /csourceSubscriptions/{id}
pub async fn delete(
    State(state): State<SharedState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    RawQuery(raw): RawQuery,
) -> ApiResult {
    delete_of(KIND, state, headers, id, raw).await
}
