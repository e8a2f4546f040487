//! The cache of verified tokens: a token seen again costs one hash of its bytes and one map
//! lookup under a read lock, and hands back the identity it proved as a shared
//! `Arc<Identity>` (no allocation per request).
//!
//! The key is the token itself, compared byte for byte by the map on a hit: two tokens never
//! share an entry, whatever their hashes (the map's hasher is std's randomly keyed SipHash, so a
//! client cannot make tokens collide in a bucket on purpose either).
//!
//! Bounded two ways, with two generations: new entries go into the current one; when it holds
//! half the entries or half the bytes allowed, it becomes the previous one (the one before is
//! dropped) and a new current one starts. A hit in the previous generation moves the entry into
//! the current one, so tokens in use survive and the rest age out: at most [`Limits::entries`]
//! tokens and [`Limits::bytes`] bytes of tokens are held. An entry also ends at its deadline
//! (the token's `exp` plus the leeway, and at most a fixed time after it was verified).

use std::collections::HashMap;
use std::sync::Arc;

use cityhub_access::Identity;
use parking_lot::RwLock;

/// What the cache holds at most.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub entries: usize,
    pub bytes: usize,
}

#[derive(Clone)]
struct Entry {
    identity: Arc<Identity>,
    /// Unix seconds after which the entry is not used.
    until: i64,
}

#[derive(Default)]
struct Generation {
    map: HashMap<Box<str>, Entry>,
    bytes: usize,
}

impl Generation {
    fn insert(&mut self, token: &str, entry: Entry) {
        if self.map.insert(token.into(), entry).is_none() {
            self.bytes += token.len();
        }
    }
}

pub struct TokenCache {
    limits: Limits,
    generations: RwLock<(Generation, Generation)>,
}

impl TokenCache {
    pub fn new(limits: Limits) -> TokenCache {
        TokenCache { limits, generations: RwLock::new(Default::default()) }
    }

    /// The identity `token` proved, if it is cached and its deadline is after `now`.
    pub fn get(&self, token: &str, now: i64) -> Option<Arc<Identity>> {
        let promote = {
            let generations = self.generations.read();
            let (current, previous) = &*generations;
            if let Some(entry) = current.map.get(token) {
                return (entry.until > now).then(|| entry.identity.clone());
            }
            match previous.map.get(token) {
                Some(entry) if entry.until > now => entry.clone(),
                _ => return None,
            }
        };
        let identity = promote.identity.clone();
        self.insert_entry(token, promote);
        Some(identity)
    }

    /// Keeps what `token` proved until `until` (Unix seconds). A token longer than a tenth of
    /// the bytes allowed is not kept.
    pub fn insert(&self, token: &str, identity: Arc<Identity>, until: i64) {
        if token.len() > self.limits.bytes / 10 {
            return;
        }
        self.insert_entry(token, Entry { identity, until });
    }

    fn insert_entry(&self, token: &str, entry: Entry) {
        let mut generations = self.generations.write();
        let (current, previous) = &mut *generations;
        if current.map.len() >= (self.limits.entries / 2).max(1) || current.bytes + token.len() > self.limits.bytes / 2
        {
            *previous = std::mem::take(current);
        }
        previous.map.remove(token);
        current.insert(token, entry);
    }

    /// Tokens held now (both generations).
    pub fn len(&self) -> usize {
        let generations = self.generations.read();
        generations.0.map.len() + generations.1.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Bytes of tokens held now.
    pub fn bytes(&self) -> usize {
        let generations = self.generations.read();
        generations.0.bytes + generations.1.bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cityhub_access::Via;

    fn who(name: &str) -> Arc<Identity> {
        Arc::new(Identity { subject: Some(name.into()), via: Via::Token, grants: vec![] })
    }

    #[test]
    fn a_token_is_found_only_by_its_own_bytes_and_until_its_deadline() {
        let cache = TokenCache::new(Limits { entries: 100, bytes: 10_000 });
        cache.insert("aaa.bbb.ccc", who("a"), 100);
        assert_eq!(cache.get("aaa.bbb.ccc", 99).unwrap().subject.as_deref(), Some("a"));
        // Same length, one byte apart; a prefix; an extension: none is the cached token.
        for other in ["aaa.bbb.ccd", "aaa.bbb.cc", "aaa.bbb.cccc", ""] {
            assert!(cache.get(other, 0).is_none(), "{other}");
        }
        assert!(cache.get("aaa.bbb.ccc", 100).is_none(), "past its deadline");
    }

    #[test]
    fn entries_and_bytes_stay_bounded_and_tokens_in_use_survive() {
        let cache = TokenCache::new(Limits { entries: 10, bytes: 1_000 });
        cache.insert("kept", who("kept"), i64::MAX);
        for i in 0..1_000 {
            cache.insert(&format!("token-{i}"), who("x"), i64::MAX);
            assert!(cache.get("kept", 0).is_some(), "a token in use is kept ({i})");
            assert!(cache.len() <= 10, "{} entries", cache.len());
        }
        let big = "b".repeat(90);
        for i in 0..100 {
            cache.insert(&format!("{big}{i:02}"), who("big"), i64::MAX);
            assert!(cache.bytes() <= 1_000, "{} bytes", cache.bytes());
        }
        // Longer than a tenth of the bytes allowed: not kept at all.
        cache.insert(&"l".repeat(101), who("long"), i64::MAX);
        assert!(cache.get(&"l".repeat(101), 0).is_none());
    }
}
