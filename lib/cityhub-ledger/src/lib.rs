//! Tamper-evident history (issue 22): every committed change is a leaf of an append-only Merkle
//! tree per tenant, and signed checkpoints of that tree let anyone check that history was only
//! ever appended to.
//!
//! - [`canon`]: RFC 8785 JSON canonicalisation (the bytes of a leaf).
//! - [`merkle`]: RFC 6962 / RFC 9162 tree hashing, inclusion and consistency proofs and their
//!   verification, and [`merkle::Frontier`], the right edge of a tree, to append in O(log n).
//! - [`note`]: C2SP signed notes and checkpoints, Ed25519 signer and verifier keys.
//! - [`leaf`]: what a leaf holds for one change of the NGSI-LD history.
//!
//! **Invariant:** pure — no I/O, no clock, no randomness but the key generation its caller asks
//! for; the backends store the leaves this crate makes and the shells serve the proofs it
//! computes. It may never decide what an NGSI-LD change is (`ngsild_core::history` does).

pub mod canon;
pub mod leaf;
pub mod merkle;
pub mod note;

pub use merkle::{Frontier, Hash};
