//! A stable-toolchain stand-in for libFuzzer: replays a target's seed corpus, then mutates seeds
//! at random (no coverage feedback) for a bounded time, and reports executions.
//!
//! `cargo run --release --no-default-features --example replay -- <target|all> <seconds> [seed]`

use std::path::Path;
use std::time::{Duration, Instant};

/// xorshift64*: deterministic for a given seed, so a finding can be replayed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// Fragments that matter to the grammars: delimiters, operators, multi-byte white space.
const DICTIONARY: &[&str] = &[
    "(",
    ")",
    "{",
    "}",
    "[",
    "]",
    ";",
    "|",
    ",",
    "==",
    "!=",
    "~=",
    "..",
    ">=",
    "<",
    "!",
    "\"",
    "'",
    "/",
    "#",
    "+",
    "\u{a0}",
    "\u{3000}",
    "서울",
    "\\",
    ".",
    "@context",
    "@import",
    "\"coordinates\"",
    "[[",
    "]]",
    "near;",
    "==1",
];

fn mutate(rng: &mut Rng, input: &mut Vec<u8>) {
    for _ in 0..1 + rng.below(4) {
        let at = rng.below(input.len() + 1);
        match rng.below(5) {
            0 if !input.is_empty() => {
                let i = rng.below(input.len());
                input[i] ^= 1 << rng.below(8);
            }
            1 if !input.is_empty() => {
                let end = (at + 1 + rng.below(8)).min(input.len());
                input.drain(at.min(end)..end);
            }
            2 => {
                let word = DICTIONARY[rng.below(DICTIONARY.len())].as_bytes();
                input.splice(at..at, word.iter().copied());
            }
            3 if !input.is_empty() => {
                // Repeat a chunk: the way nesting and long lists grow.
                let start = rng.below(input.len());
                let end = (start + 1 + rng.below(16)).min(input.len());
                let chunk = input[start..end].to_vec();
                for _ in 0..1 + rng.below(200) {
                    input.splice(at..at, chunk.iter().copied());
                }
            }
            _ => input.insert(at, rng.next() as u8),
        }
    }
    input.truncate(64 * 1024);
}

fn seeds(target: &str) -> Vec<Vec<u8>> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus").join(target);
    let mut files: Vec<_> = std::fs::read_dir(&dir).into_iter().flatten().flatten().map(|e| e.path()).collect();
    files.sort();
    let mut seeds: Vec<Vec<u8>> = files.iter().filter_map(|p| std::fs::read(p).ok()).collect();
    if seeds.is_empty() {
        seeds.push(Vec::new());
    }
    seeds
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let which = args.get(1).map(String::as_str).unwrap_or("all");
    let seconds: u64 = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(10);
    let seed: u64 = args.get(3).and_then(|s| s.parse().ok()).unwrap_or(0x5eed);
    for (name, target) in cityhub_fuzz::TARGETS.iter().filter(|(n, _)| which == "all" || *n == which) {
        let corpus = seeds(name);
        for input in &corpus {
            target(input);
        }
        let mut rng = Rng(seed | 1);
        let started = Instant::now();
        let mut executions = corpus.len() as u64;
        while started.elapsed() < Duration::from_secs(seconds) {
            let mut input = corpus[rng.below(corpus.len())].clone();
            mutate(&mut rng, &mut input);
            target(&input);
            executions += 1;
        }
        println!("{name}: {executions} executions in {seconds} s ({} seeds), no panic", corpus.len());
    }
}
