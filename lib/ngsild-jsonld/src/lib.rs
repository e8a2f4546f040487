//! Restricted JSON-LD for NGSI-LD.
//!
//! NGSI-LD payloads only ever need three JSON-LD operations: turning a term (an attribute name or an
//! entity type) into an IRI, turning an IRI back into the shortest term of a context, and knowing how
//! a term is typed (`@id`, `@vocab`, `@json`). A full JSON-LD processor does much more and is an order
//! of magnitude slower, so this crate builds a flat term map from an `@context` once and answers those
//! three questions from it.
//!
//! There is no I/O here: remote contexts are handed in by a [`DocumentLoader`]; a missing document is
//! reported as [`ContextError::Missing`] so the caller can fetch it and try again.

#![forbid(unsafe_code)]
#![warn(clippy::unwrap_used, clippy::expect_used)]

mod context;
mod core;
pub mod hosted;

pub use context::{core_context, Context, ContextError, DocumentLoader, NoDocuments, TermDefinition, TypeMapping};
pub use core::{core_context_document, is_core_context_url, CORE_CONTEXT_URL, NGSI_LD_PREFIX};
