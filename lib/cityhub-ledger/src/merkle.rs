//! RFC 6962 §2.1 Merkle tree hashing (SHA-256; leaf `0x00 || data`, node `0x01 || left ||
//! right`), inclusion and consistency proofs, and their verification as RFC 9162 §2.1.3.2 and
//! §2.1.4.2 give it.
//!
//! Proofs are computed from the leaf hashes (`leaves[i]` = [`leaf_hash`] of leaf `i`): a proof in
//! a tree of `n` leaves hashes O(n) nodes once; a store that keeps only leaf hashes pays that per
//! proof, which is what `cityhub-sqlite`'s ledger does.

use ring::digest;

/// A SHA-256 hash.
pub type Hash = [u8; 32];

fn sha256(parts: &[&[u8]]) -> Hash {
    let mut ctx = digest::Context::new(&digest::SHA256);
    for p in parts {
        ctx.update(p);
    }
    let mut out = [0u8; 32];
    out.copy_from_slice(ctx.finish().as_ref());
    out
}

/// The hash of the empty tree: SHA-256 of nothing.
pub fn empty_root() -> Hash {
    sha256(&[])
}

/// The hash of a leaf holding `data`.
pub fn leaf_hash(data: &[u8]) -> Hash {
    sha256(&[&[0x00], data])
}

/// The hash of an interior node.
pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    sha256(&[&[0x01], left, right])
}

/// The largest power of two smaller than `n` (`n >= 2`).
fn split(n: usize) -> usize {
    let mut k = 1;
    while k << 1 < n {
        k <<= 1;
    }
    k
}

/// The root of the tree whose leaf hashes are `leaves` (MTH).
pub fn root(leaves: &[Hash]) -> Hash {
    let mut frontier = Frontier::default();
    for h in leaves {
        frontier.push(*h);
    }
    frontier.root()
}

/// Why a proof cannot be made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProofError {
    #[error("leaf {index} is not in a tree of {size} leaves")]
    LeafOutOfRange { index: u64, size: u64 },
    #[error("a tree of {size} leaves is asked for, but the log has {have}")]
    SizeOutOfRange { size: u64, have: u64 },
    #[error("a consistency proof goes from a smaller tree to a larger one: {from} > {to}")]
    Backwards { from: u64, to: u64 },
}

/// The inclusion proof (audit path) of leaf `index` in the tree of the first `size` leaves.
pub fn inclusion_proof(leaves: &[Hash], index: u64, size: u64) -> Result<Vec<Hash>, ProofError> {
    if size > leaves.len() as u64 {
        return Err(ProofError::SizeOutOfRange { size, have: leaves.len() as u64 });
    }
    if index >= size {
        return Err(ProofError::LeafOutOfRange { index, size });
    }
    let mut proof = Vec::new();
    path(index as usize, &leaves[..size as usize], &mut proof);
    Ok(proof)
}

fn path(m: usize, d: &[Hash], out: &mut Vec<Hash>) {
    let n = d.len();
    if n <= 1 {
        return;
    }
    let k = split(n);
    if m < k {
        path(m, &d[..k], out);
        out.push(root(&d[k..]));
    } else {
        path(m - k, &d[k..], out);
        out.push(root(&d[..k]));
    }
}

/// The consistency proof between the trees of the first `from` and `to` leaves.
pub fn consistency_proof(leaves: &[Hash], from: u64, to: u64) -> Result<Vec<Hash>, ProofError> {
    if to > leaves.len() as u64 {
        return Err(ProofError::SizeOutOfRange { size: to, have: leaves.len() as u64 });
    }
    if from > to {
        return Err(ProofError::Backwards { from, to });
    }
    let mut proof = Vec::new();
    if from > 0 && from < to {
        subproof(from as usize, &leaves[..to as usize], true, &mut proof);
    }
    Ok(proof)
}

fn subproof(m: usize, d: &[Hash], whole: bool, out: &mut Vec<Hash>) {
    let n = d.len();
    if m == n {
        if !whole {
            out.push(root(d));
        }
        return;
    }
    let k = split(n);
    if m <= k {
        subproof(m, &d[..k], whole, out);
        out.push(root(&d[k..]));
    } else {
        subproof(m - k, &d[k..], false, out);
        out.push(root(&d[..k]));
    }
}

/// Whether `proof` shows the leaf hashed `leaf` at `index` in the tree of `size` leaves whose root
/// is `root` (RFC 9162 §2.1.3.2).
pub fn verify_inclusion(index: u64, size: u64, leaf: &Hash, proof: &[Hash], root: &Hash) -> bool {
    if index >= size {
        return false;
    }
    let (mut fn_, mut sn) = (index, size - 1);
    let mut r = *leaf;
    for p in proof {
        if sn == 0 {
            return false;
        }
        if fn_ & 1 == 1 || fn_ == sn {
            r = node_hash(p, &r);
            if fn_ & 1 == 0 {
                while fn_ & 1 == 0 && fn_ != 0 {
                    fn_ >>= 1;
                    sn >>= 1;
                }
            }
        } else {
            r = node_hash(&r, p);
        }
        fn_ >>= 1;
        sn >>= 1;
    }
    sn == 0 && r == *root
}

/// Whether `proof` shows the tree of `from` leaves with root `from_root` to be a prefix of the
/// tree of `to` leaves with root `to_root` (RFC 9162 §2.1.4.2; equal sizes need an empty proof
/// and equal roots; every tree extends the empty one).
pub fn verify_consistency(from: u64, to: u64, from_root: &Hash, to_root: &Hash, proof: &[Hash]) -> bool {
    if from > to {
        return false;
    }
    if from == to {
        return proof.is_empty() && from_root == to_root;
    }
    if from == 0 {
        return proof.is_empty();
    }
    if proof.is_empty() {
        return false;
    }
    let mut path: Vec<Hash> = Vec::with_capacity(proof.len() + 1);
    if from.is_power_of_two() {
        path.push(*from_root);
    }
    path.extend_from_slice(proof);
    let (mut fn_, mut sn) = (from - 1, to - 1);
    if fn_ & 1 == 1 {
        while fn_ & 1 == 1 {
            fn_ >>= 1;
            sn >>= 1;
        }
    }
    let (mut fr, mut sr) = (path[0], path[0]);
    for c in &path[1..] {
        if sn == 0 {
            return false;
        }
        if fn_ & 1 == 1 || fn_ == sn {
            fr = node_hash(c, &fr);
            sr = node_hash(c, &sr);
            if fn_ & 1 == 0 {
                while fn_ & 1 == 0 && fn_ != 0 {
                    fn_ >>= 1;
                    sn >>= 1;
                }
            }
        } else {
            sr = node_hash(&sr, c);
        }
        fn_ >>= 1;
        sn >>= 1;
    }
    sn == 0 && fr == *from_root && sr == *to_root
}

/// The right edge of a tree: the roots of its perfect subtrees, largest first (one per set bit of
/// the size). Appending a leaf and computing the root are O(log n), and the frontier of a tree of
/// `n` leaves is at most 64 hashes, so a backend can keep it beside its leaves.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Frontier {
    size: u64,
    /// (height, root) of each perfect subtree, left to right.
    nodes: Vec<(u32, Hash)>,
}

impl Frontier {
    /// The number of leaves appended.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Appends the leaf hashed `leaf`.
    pub fn push(&mut self, leaf: Hash) {
        let mut node = (0u32, leaf);
        while let Some(&(h, left)) = self.nodes.last() {
            if h != node.0 {
                break;
            }
            self.nodes.pop();
            node = (h + 1, node_hash(&left, &node.1));
        }
        self.nodes.push(node);
        self.size += 1;
    }

    /// The root of the tree so far (MTH).
    pub fn root(&self) -> Hash {
        let mut iter = self.nodes.iter().rev();
        let Some(&(_, mut acc)) = iter.next() else { return empty_root() };
        for (_, left) in iter {
            acc = node_hash(left, &acc);
        }
        acc
    }

    /// The subtree roots, left to right (to store).
    pub fn hashes(&self) -> Vec<Hash> {
        self.nodes.iter().map(|(_, h)| *h).collect()
    }

    /// The frontier of a tree of `size` leaves from its stored subtree roots (`hashes()` of it),
    /// or `None` when their number does not fit the size.
    pub fn restore(size: u64, hashes: &[Hash]) -> Option<Frontier> {
        if hashes.len() != size.count_ones() as usize {
            return None;
        }
        let heights = (0..64u32).rev().filter(|b| size >> b & 1 == 1);
        Some(Frontier { size, nodes: heights.zip(hashes.iter().copied()).collect() })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_tree_is_sha256_of_nothing() {
        // RFC 6962 §2.1: MTH({}) = SHA-256().
        let hex: String = empty_root().iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(hex, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    }

    #[test]
    fn frontier_restores_and_goes_on() {
        let leaves: Vec<Hash> = (0..13u8).map(|i| leaf_hash(&[i])).collect();
        let mut f = Frontier::default();
        for h in &leaves[..7] {
            f.push(*h);
        }
        let mut g = Frontier::restore(7, &f.hashes()).unwrap();
        for h in &leaves[7..] {
            g.push(*h);
        }
        assert_eq!(g.root(), root(&leaves));
        assert!(Frontier::restore(7, &f.hashes()[..2]).is_none());
    }
}

/// Every level of a tree, kept to answer many proofs in O(log n) each (an export proves every
/// leaf). Memory: about two hashes per leaf.
#[derive(Debug, Clone)]
pub struct Tree {
    /// `levels[0]` the leaf hashes; `levels[h][i]` the root of the perfect subtree of leaves
    /// `i * 2^h .. (i + 1) * 2^h`.
    levels: Vec<Vec<Hash>>,
}

impl Tree {
    pub fn new(leaves: Vec<Hash>) -> Tree {
        let mut levels = vec![leaves];
        while levels.last().is_some_and(|l| l.len() > 1) {
            let below = &levels[levels.len() - 1];
            let up: Vec<Hash> = below.chunks_exact(2).map(|p| node_hash(&p[0], &p[1])).collect();
            levels.push(up);
        }
        Tree { levels }
    }

    pub fn size(&self) -> u64 {
        self.levels[0].len() as u64
    }

    /// The root of the leaves `start .. start + len`, where `len` need not be a power of two but
    /// `start` is a multiple of the largest power of two `<= len`'s subtree (as in MTH splits).
    fn range_root(&self, start: usize, len: usize) -> Hash {
        if len == 0 {
            return empty_root();
        }
        if len.is_power_of_two() {
            let h = len.trailing_zeros() as usize;
            return self.levels[h][start >> h];
        }
        let k = split(len);
        node_hash(&self.range_root(start, k), &self.range_root(start + k, len - k))
    }

    /// The root of the first `size` leaves.
    pub fn root_at(&self, size: u64) -> Hash {
        self.range_root(0, size.min(self.size()) as usize)
    }

    /// The inclusion proof of leaf `index` in the tree of the first `size` leaves.
    pub fn inclusion_proof(&self, index: u64, size: u64) -> Result<Vec<Hash>, ProofError> {
        if size > self.size() {
            return Err(ProofError::SizeOutOfRange { size, have: self.size() });
        }
        if index >= size {
            return Err(ProofError::LeafOutOfRange { index, size });
        }
        let mut out = Vec::new();
        let (mut start, mut len, m) = (0usize, size as usize, index as usize);
        let mut stack = Vec::new();
        while len > 1 {
            let k = split(len);
            if m - start < k {
                stack.push(self.range_root(start + k, len - k));
                len = k;
            } else {
                stack.push(self.range_root(start, k));
                start += k;
                len -= k;
            }
        }
        while let Some(h) = stack.pop() {
            out.push(h);
        }
        Ok(out)
    }
}
