//! The tamper-evident history's data at the seam (issue 22): every history row a backend writes
//! comes with one leaf of its tenant's log ([`LedgerLeaf`]), appended in the same transaction;
//! what a leaf holds and how it hashes is `cityhub_ledger`'s. A backend keeps the leaves (index,
//! hash, bytes, and the history row's sequence number when it has one) and the tree's right edge
//! (`cityhub_ledger::Frontier`), so that the current root is read in O(log n) and proofs are
//! computed from the leaf hashes.

/// One leaf of a tenant's log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LedgerLeaf {
    /// Its position, from 0.
    pub index: u64,
    /// `cityhub_ledger::merkle::leaf_hash` of `bytes`, as stored at commit.
    pub hash: [u8; 32],
    /// The leaf's canonical JSON (`cityhub_ledger::leaf`).
    pub bytes: Vec<u8>,
    /// The history row it records, when it records one: its instance's document as stored now
    /// (which an edit of the history shows), else `None`.
    pub instance_now: Option<String>,
    /// Whether this is the latest leaf about that history row (an older one was superseded by
    /// a temporal replace).
    pub latest_of_instance: bool,
}

/// A tenant's log now: its size and the right edge of its tree (the roots of its perfect
/// subtrees, largest first; `cityhub_ledger::Frontier::restore`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LedgerHead {
    pub size: u64,
    pub frontier: Vec<[u8; 32]>,
}
