//! The crate against the RFCs: RFC 8785's examples and number table, and RFC 6962's recursive
//! definitions of MTH, PATH and PROOF written here again, naively, over the leaf data itself.

use cityhub_ledger::canon::{canonical_string, number};
use cityhub_ledger::merkle::{
    consistency_proof, inclusion_proof, leaf_hash, root, verify_consistency, verify_inclusion, Frontier, Hash, Tree,
};
use proptest::prelude::*;
use serde_json::Value;

// ---- RFC 8785 ----

#[test]
fn rfc8785_number_table() {
    // RFC 8785 Appendix B: IEEE-754 bit patterns and their ECMAScript forms.
    let table: &[(u64, &str)] = &[
        (0x0000000000000000, "0"),
        (0x8000000000000000, "0"),
        (0x0000000000000001, "5e-324"),
        (0x8000000000000001, "-5e-324"),
        (0x7fefffffffffffff, "1.7976931348623157e+308"),
        (0xffefffffffffffff, "-1.7976931348623157e+308"),
        (0x4340000000000000, "9007199254740992"),
        (0xc340000000000000, "-9007199254740992"),
        (0x4430000000000000, "295147905179352830000"),
        (0x44b52d02c7e14af5, "9.999999999999997e+22"),
        (0x44b52d02c7e14af6, "1e+23"),
        (0x44b52d02c7e14af7, "1.0000000000000001e+23"),
        (0x444b1ae4d6e2ef4e, "999999999999999700000"),
        (0x444b1ae4d6e2ef4f, "999999999999999900000"),
        (0x444b1ae4d6e2ef50, "1e+21"),
        (0x3eb0c6f7a0b5ed8c, "9.999999999999997e-7"),
        (0x3eb0c6f7a0b5ed8d, "0.000001"),
        (0x41b3de4355555553, "333333333.3333332"),
        (0x41b3de4355555554, "333333333.33333325"),
        (0x41b3de4355555555, "333333333.3333333"),
        (0x41b3de4355555556, "333333333.3333334"),
        (0x41b3de4355555557, "333333333.33333343"),
        (0xbecbf647612f3696, "-0.0000033333333333333333"),
        (0x43143ff3c1cb0959, "1424953923781206.2"),
    ];
    for (bits, want) in table {
        assert_eq!(number(f64::from_bits(*bits)), *want, "bits {bits:016x}");
    }
}

#[test]
fn rfc8785_section_3_2_2_example() {
    let input = r#"{
      "numbers": [333333333.33333329, 1E30, 4.50, 2e-3, 0.000000000000000000000000001],
      "string": "\u20ac$\u000F\u000aA'\u0042\u0022\u005c\\\"\/",
      "literals": [null, true, false]
    }"#;
    let v: Value = serde_json::from_str(input).unwrap();
    assert_eq!(
        canonical_string(&v),
        r#"{"literals":[null,true,false],"numbers":[333333333.3333333,1e+30,4.5,0.002,1e-27],"string":"€$\u000f\nA'B\"\\\\\"/"}"#
    );
}

#[test]
fn rfc8785_section_3_2_3_sorting() {
    let input = r#"{
      "\u20ac": "Euro Sign",
      "\r": "Carriage Return",
      "\ufb33": "Hebrew Letter Dalet With Dagesh",
      "1": "One",
      "\ud83d\ude00": "Emoji: Grinning Face",
      "\u0080": "Control",
      "\u00f6": "Latin Small Letter O With Diaeresis"
    }"#;
    let v: Value = serde_json::from_str(input).unwrap();
    let names: Vec<String> = match serde_json::from_str::<Value>(&canonical_string(&v)).unwrap() {
        Value::Object(m) => m.keys().cloned().collect(),
        _ => unreachable!(),
    };
    let want = ["\r", "1", "\u{80}", "\u{f6}", "\u{20ac}", "\u{1f600}", "\u{fb33}"];
    assert_eq!(names, want);
}

#[test]
fn canonical_form_is_a_fixed_point() {
    let v: Value = serde_json::from_str(r#"{"b":[1.5e300,-0.0,12,"\u0001x"],"a":{"z":null,"y":1e-7}}"#).unwrap();
    let once = canonical_string(&v);
    let twice = canonical_string(&serde_json::from_str(&once).unwrap());
    assert_eq!(once, twice);
    assert_eq!(once, r#"{"a":{"y":1e-7,"z":null},"b":[1.5e+300,0,12,"\u0001x"]}"#);
}

// ---- RFC 6962, naively ----

fn sha(parts: &[&[u8]]) -> Hash {
    // Independent of the crate's hashing only in structure; SHA-256 itself comes from ring.
    let mut all = Vec::new();
    for p in parts {
        all.extend_from_slice(p);
    }
    let d = ring::digest::digest(&ring::digest::SHA256, &all);
    d.as_ref().try_into().unwrap()
}

fn k_of(n: usize) -> usize {
    // The largest power of two smaller than n.
    let mut k = 1;
    while 2 * k < n {
        k *= 2;
    }
    k
}

/// MTH(D[n]) of RFC 6962 §2.1.
fn mth(d: &[Vec<u8>]) -> Hash {
    match d.len() {
        0 => sha(&[]),
        1 => sha(&[&[0], &d[0]]),
        n => {
            let k = k_of(n);
            sha(&[&[1], &mth(&d[..k]), &mth(&d[k..])])
        }
    }
}

/// PATH(m, D[n]) of RFC 6962 §2.1.1.
fn naive_path(m: usize, d: &[Vec<u8>]) -> Vec<Hash> {
    let n = d.len();
    if n <= 1 {
        return vec![];
    }
    let k = k_of(n);
    if m < k {
        let mut p = naive_path(m, &d[..k]);
        p.push(mth(&d[k..]));
        p
    } else {
        let mut p = naive_path(m - k, &d[k..]);
        p.push(mth(&d[..k]));
        p
    }
}

/// SUBPROOF(m, D[n], b) of RFC 6962 §2.1.2.
fn naive_subproof(m: usize, d: &[Vec<u8>], b: bool) -> Vec<Hash> {
    let n = d.len();
    if m == n {
        return if b { vec![] } else { vec![mth(d)] };
    }
    let k = k_of(n);
    if m <= k {
        let mut p = naive_subproof(m, &d[..k], b);
        p.push(mth(&d[k..]));
        p
    } else {
        let mut p = naive_subproof(m - k, &d[k..], false);
        p.push(mth(&d[..k]));
        p
    }
}

fn naive_proof(m: usize, d: &[Vec<u8>]) -> Vec<Hash> {
    if m == 0 || m == d.len() {
        vec![]
    } else {
        naive_subproof(m, d, true)
    }
}

fn flip(proof: &[Hash], which: usize, bit: u8) -> Vec<Hash> {
    let mut p = proof.to_vec();
    let i = which % p.len();
    p[i][(bit as usize) % 32] ^= 1 << (bit % 8);
    p
}

fn data() -> impl Strategy<Value = Vec<Vec<u8>>> {
    prop::collection::vec(prop::collection::vec(any::<u8>(), 0..8), 1..70)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    #[test]
    fn roots_match_mth(d in data()) {
        let hashes: Vec<Hash> = d.iter().map(|x| leaf_hash(x)).collect();
        let mut f = Frontier::default();
        for h in &hashes {
            f.push(*h);
        }
        prop_assert_eq!(root(&hashes), mth(&d));
        prop_assert_eq!(f.root(), mth(&d));
        let tree = Tree::new(hashes.clone());
        for size in 0..=d.len() {
            prop_assert_eq!(tree.root_at(size as u64), mth(&d[..size]));
        }
    }

    #[test]
    fn inclusion_proofs_match_path_and_verify(d in data(), pick in any::<usize>(), cut in any::<usize>(), bit in any::<u8>(), which in any::<usize>()) {
        let hashes: Vec<Hash> = d.iter().map(|x| leaf_hash(x)).collect();
        let size = 1 + cut % d.len();
        let m = pick % size;
        let proof = inclusion_proof(&hashes, m as u64, size as u64).unwrap();
        prop_assert_eq!(&proof, &naive_path(m, &d[..size]));
        prop_assert_eq!(&Tree::new(hashes.clone()).inclusion_proof(m as u64, size as u64).unwrap(), &proof);
        let r = mth(&d[..size]);
        prop_assert!(verify_inclusion(m as u64, size as u64, &hashes[m], &proof, &r));
        // Any changed byte fails: of the leaf, of the proof, of the root; and the wrong index.
        let mut bad_leaf = hashes[m];
        bad_leaf[(bit % 32) as usize] ^= 1;
        prop_assert!(!verify_inclusion(m as u64, size as u64, &bad_leaf, &proof, &r));
        if !proof.is_empty() {
            prop_assert!(!verify_inclusion(m as u64, size as u64, &hashes[m], &flip(&proof, which, bit), &r));
            prop_assert!(!verify_inclusion(m as u64, size as u64, &hashes[m], &proof[..proof.len() - 1], &r));
        }
        let mut bad_root = r;
        bad_root[(bit % 32) as usize] ^= 0x80;
        prop_assert!(!verify_inclusion(m as u64, size as u64, &hashes[m], &proof, &bad_root));
        if size > 1 {
            let other = (m + 1) % size;
            prop_assert!(hashes[other] == hashes[m] || !verify_inclusion(other as u64, size as u64, &hashes[m], &proof, &r));
        }
    }

    #[test]
    fn consistency_proofs_match_proof_and_verify(d in data(), a in any::<usize>(), b in any::<usize>(), bit in any::<u8>(), which in any::<usize>()) {
        let hashes: Vec<Hash> = d.iter().map(|x| leaf_hash(x)).collect();
        let n = 1 + b % d.len();
        let m = a % (n + 1);
        let proof = consistency_proof(&hashes, m as u64, n as u64).unwrap();
        prop_assert_eq!(&proof, &naive_proof(m, &d[..n]));
        let (rm, rn) = (mth(&d[..m]), mth(&d[..n]));
        prop_assert!(verify_consistency(m as u64, n as u64, &rm, &rn, &proof));
        if m > 0 && m < n {
            prop_assert!(!verify_consistency(m as u64, n as u64, &rm, &rn, &flip(&proof, which, bit)));
            let mut bad = rm;
            bad[(bit % 32) as usize] ^= 4;
            prop_assert!(!verify_consistency(m as u64, n as u64, &bad, &rn, &proof));
            let mut bad = rn;
            bad[(bit % 32) as usize] ^= 4;
            prop_assert!(!verify_consistency(m as u64, n as u64, &rm, &bad, &proof));
            // A different history of the same sizes: change one of the first m leaves.
            let mut other = d.clone();
            other[which % m].push(1);
            prop_assert!(!verify_consistency(m as u64, n as u64, &mth(&other[..m]), &rn, &proof));
        }
    }
}
