//! Data flowing into the hub without code (issue 17): what arrives from devices and from older
//! FIWARE NGSIv2 deployments, turned into NGSI-LD.
//!
//! - [`ngsiv2`] (pure): an Orion NGSIv2 entity or notification → NGSI-LD entities, normalized
//!   and context-free in compact form, for the NGSIv2 intake and `cityhub import --from-ngsiv2`.
//!
//! **What this crate may do:** read payloads, keep provisioning as store records, and write
//! entities only through the core write path (`ngsild_core::ops` as `Store::modify` modifiers),
//! so history, subscriptions and access control apply as to any NGSI-LD write.
//! **What it may never do:** write tables directly, or decide an NGSI-LD rule of its own (the
//! expansion and the operations are `ngsild_core`'s).

#![forbid(unsafe_code)]
#![warn(clippy::unwrap_used, clippy::expect_used)]

pub mod ngsiv2;
