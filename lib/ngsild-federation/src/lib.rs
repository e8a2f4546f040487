//! Context source registrations and distributed operations (ETSI GS CIM 009 clauses 4.3.6, 5.9,
//! 5.11), with no I/O.
//!
//! * [`registration`]: the `ContextSourceRegistration` in stored (expanded, context-free) form,
//!   read from a payload, patched, rendered in a client's @context; its operation groups.
//! * [`matching`]: which registrations serve a request, and what to ask each of them.
//! * [`batch`]: a batch operation split among sources, and its one result.
//! * [`forward`]: what one source is asked when a request is forwarded, and its errors read back.
//! * [`merge`]: one answer from the fragments of an entity that several sources hold.
//! * [`provision`]: how a provision request splits between the hub and the sources.
//! * [`via`]: the `Via` header that keeps crossed registrations from looping.

#![forbid(unsafe_code)]
#![warn(clippy::unwrap_used, clippy::expect_used)]

pub mod batch;
pub mod forward;
pub mod matching;
pub mod merge;
pub mod provision;
pub mod query;
pub mod registration;
pub mod via;

pub use matching::{Operation, Request, Target};
pub use merge::{merge_entities, merge_temporal};
pub use registration::{Mode, Registration};
