//! Label values kept to bounded sets: the first `cap` distinct values are named, later ones are
//! `other`, so a client that invents hosts or tenants cannot grow the scrape without bound.

use std::collections::BTreeSet;

use parking_lot::Mutex;

/// What a value past the bound is named.
pub const OTHER: &str = "other";

/// A set of at most `cap` label values, first come first named.
pub struct Bounded {
    cap: usize,
    seen: Mutex<BTreeSet<String>>,
}

impl Bounded {
    pub const fn new(cap: usize) -> Bounded {
        Bounded { cap, seen: Mutex::new(BTreeSet::new()) }
    }

    /// `value` if it is named already or there is room for it, else [`OTHER`].
    pub fn label(&self, value: &str) -> String {
        let mut seen = self.seen.lock();
        if seen.contains(value) {
            return value.to_owned();
        }
        if seen.len() < self.cap {
            seen.insert(value.to_owned());
            return value.to_owned();
        }
        OTHER.to_owned()
    }

    /// The values named so far.
    pub fn known(&self) -> Vec<String> {
        self.seen.lock().iter().cloned().collect()
    }
}

/// `host[:port]` of a URI (`http://user:pw@Host:8080/path` → `host:8080`), lower-case, without
/// its user information; `unknown` when it has none.
pub fn host_of(uri: &str) -> String {
    let rest = uri.split_once("://").map_or(uri, |(_, rest)| rest);
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    let host = authority.rsplit_once('@').map_or(authority, |(_, host)| host);
    if host.is_empty() {
        return "unknown".to_owned();
    }
    host.to_ascii_lowercase()
}

/// An HTTP method as a label: the standard ones by name, any other `OTHER` (hyper accepts any
/// token as a method).
pub fn method(method: &str) -> &'static str {
    const KNOWN: [&str; 9] = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE", "CONNECT"];
    KNOWN.iter().find(|m| **m == method).copied().unwrap_or(OTHER)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_past_the_bound_are_other() {
        let b = Bounded::new(2);
        assert_eq!(b.label("a"), "a");
        assert_eq!(b.label("b"), "b");
        assert_eq!(b.label("c"), OTHER);
        assert_eq!(b.label("a"), "a");
        assert_eq!(b.known(), vec!["a", "b"]);
    }

    #[test]
    fn hosts_lose_their_credentials_path_and_case() {
        assert_eq!(host_of("http://u:secret@Hub.Example:8080/notify?x=1"), "hub.example:8080");
        assert_eq!(host_of("mqtt://broker/topic/a"), "broker");
        assert_eq!(host_of("https://[::1]:9/x"), "[::1]:9");
        assert_eq!(host_of("nothing"), "nothing");
        assert_eq!(host_of("http:///x"), "unknown");
    }

    #[test]
    fn unknown_methods_are_one_label() {
        assert_eq!(method("PATCH"), "PATCH");
        assert_eq!(method("BREW"), OTHER);
    }
}
