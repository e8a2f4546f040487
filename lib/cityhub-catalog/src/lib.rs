//! Open data for cityhub (issue 19): data models, datasets, the DCAT-AP 3 catalogue, a CKAN
//! compatible read API, streamed downloads and the retention of datasets' history.
//!
//! May: keep its documents as store records (`RecordKind::DataModel`, `RecordKind::Dataset`,
//! `RecordKind::AccessRequest`, `RecordKind::AccessUsage`); issue and revoke the API keys of
//! approved access requests (`cityhub_auth`) and keep their grants as access policies
//! (`RecordKind::Policy`);
//! write the `Dataset` entities and delete history instances through the store's write path
//! (`Store::modify`, `Store::temporal_write`), so history, subscriptions and access see them; serve
//! its routes with the extractors of `cityhub_http::extract`, so the one access decision covers
//! them. May never: write a table of its own, fetch a schema or anything else from the network,
//! or keep state another hub on the same store would need (caches follow store events).
//!
//! Pure parts: [`model`] (schemas, checks), [`dataset`] (metadata, selection, distributions),
//! [`dcat`] (the catalogue graph, JSON-LD and Turtle), [`ckan`] (package dicts, search),
//! [`rows`] (a download's lines), [`grant`] (access requests, grants, who may download).
//! Shells: [`requests`] (`/cityhub/v1/access-requests`), [`validating`] (the store wrapper that checks writes),
//! [`routes`] (HTTP), [`download`] (streaming), [`retention`] (the scheduled task).

#![forbid(unsafe_code)]
#![warn(clippy::unwrap_used, clippy::expect_used)]

pub mod ckan;
pub mod dataset;
pub mod dcat;
pub mod download;
pub mod grant;
pub mod model;
pub mod requests;
pub mod retention;
pub mod routes;
pub mod rows;
pub mod state;
pub mod validating;
