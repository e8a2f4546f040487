//! The NGSI-LD data model and its rules, with no I/O.
//!
//! * [`model`]: entities and attributes in their stored (expanded) form.
//! * [`error`]: NGSI-LD ProblemDetails errors.
//! * [`validate`]: identifiers, names, dates.
//! * [`expand`]: request payloads (normalized or concise) to the stored form.
//! * [`render`]: the stored form to normalized, concise or keyValues output in a client's @context.
//! * [`limits`]: the nesting and join limits every parser and Linked Entity retrieval obey.
//! * [`ops`]: what each provision operation does to an entity (append, update, merge, delete...).

#![forbid(unsafe_code)]
#![warn(clippy::unwrap_used, clippy::expect_used)]

pub mod discovery;
pub mod error;
pub mod expand;
pub mod history;
pub mod limits;
pub mod model;
pub mod ops;
pub mod params;
pub mod render;
pub mod temporal;
pub mod temporal_ask;
pub mod temporal_cut;
pub mod time;
pub mod validate;

pub use error::{ErrorKind, NgsiLdError, Result};
pub use model::{Attribute, AttributeKind, Entity};
