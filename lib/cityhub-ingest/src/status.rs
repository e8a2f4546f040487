//! Ingestion status: how many messages each source received, stored and rejected (with the last
//! error and when it was last seen), and a bounded list of the rejected messages themselves.
//!
//! [`StatusBook`] is the shared type for every way data flows in (device agents here; pollers and
//! imports may keep theirs in one too): a source is named by a [`SourceKey`] (tenant, kind such
//! as `service` / `device` / `poller`, name). Memory is bounded: at most `max_sources` sources
//! (the least recently seen goes) and `max_dead_letters` rejected messages (the oldest goes),
//! each payload cut to [`PAYLOAD_BYTES`]. It is this process's view, since its start.

use std::collections::{HashMap, VecDeque};

use parking_lot::Mutex;
use serde::Serialize;

/// How much of a rejected payload a dead letter keeps.
pub const PAYLOAD_BYTES: usize = 512;

/// A source of messages: (tenant, kind, name).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub struct SourceKey {
    pub tenant: String,
    pub kind: &'static str,
    pub name: String,
}

impl SourceKey {
    pub fn new(tenant: &str, kind: &'static str, name: &str) -> Self {
        SourceKey { tenant: tenant.to_owned(), kind, name: name.to_owned() }
    }
}

/// What one source did.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Counters {
    pub received: u64,
    pub stored: u64,
    pub rejected: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_error_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_seen: Option<String>,
}

/// A rejected message.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DeadLetter {
    pub at: String,
    pub tenant: String,
    /// Where it came from: an MQTT topic, `POST /iot/json?k=…&i=…`, a poller's URL.
    pub source: String,
    pub reason: String,
    /// The payload as text, cut to [`PAYLOAD_BYTES`].
    pub payload: String,
    pub truncated: bool,
}

struct Book {
    sources: HashMap<SourceKey, Counters>,
    dead: VecDeque<DeadLetter>,
}

pub struct StatusBook {
    book: Mutex<Book>,
    max_sources: usize,
    max_dead_letters: usize,
}

impl StatusBook {
    pub fn new(max_sources: usize, max_dead_letters: usize) -> Self {
        StatusBook {
            book: Mutex::new(Book { sources: HashMap::new(), dead: VecDeque::new() }),
            max_sources: max_sources.max(1),
            max_dead_letters: max_dead_letters.max(1),
        }
    }

    fn with(&self, keys: &[SourceKey], at: &str, f: impl Fn(&mut Counters)) {
        let mut book = self.book.lock();
        for key in keys {
            if !book.sources.contains_key(key) && book.sources.len() >= self.max_sources {
                let oldest =
                    book.sources.iter().min_by(|a, b| a.1.last_seen.cmp(&b.1.last_seen)).map(|(k, _)| k.clone());
                if let Some(oldest) = oldest {
                    book.sources.remove(&oldest);
                }
            }
            // The key is copied only for a source seen the first time.
            let counters = match book.sources.get_mut(key) {
                Some(counters) => counters,
                None => book.sources.entry(key.clone()).or_default(),
            };
            match &mut counters.last_seen {
                Some(seen) => {
                    seen.clear();
                    seen.push_str(at);
                }
                None => counters.last_seen = Some(at.to_owned()),
            }
            f(counters);
        }
    }

    /// A message arrived from each of `keys` (a device and its group, say).
    pub fn received(&self, keys: &[SourceKey], at: &str) {
        self.with(keys, at, |c| c.received += 1);
    }

    /// A message of `keys` was stored (durably).
    pub fn stored(&self, keys: &[SourceKey], at: &str) {
        metrics::counter!("cityhub_ingest_readings_total").increment(1);
        self.with(keys, at, |c| c.stored += 1);
    }

    /// A message of `keys` was rejected for `reason`: counted, and kept as a dead letter.
    pub fn rejected(&self, keys: &[SourceKey], at: &str, source: &str, reason: &str, payload: &[u8]) {
        metrics::counter!("cityhub_ingest_dead_letters_total").increment(1);
        self.with(keys, at, |c| {
            c.rejected += 1;
            c.last_error = Some(reason.to_owned());
            c.last_error_at = Some(at.to_owned());
        });
        let cut = cut(payload, PAYLOAD_BYTES);
        let letter = DeadLetter {
            at: at.to_owned(),
            tenant: keys.first().map(|k| k.tenant.clone()).unwrap_or_default(),
            source: source.to_owned(),
            reason: reason.to_owned(),
            truncated: cut.len() < payload.len(),
            payload: String::from_utf8_lossy(cut).into_owned(),
        };
        let mut book = self.book.lock();
        if book.dead.len() >= self.max_dead_letters {
            book.dead.pop_front();
        }
        book.dead.push_back(letter);
    }

    /// Every source of `tenant` (all tenants: None), ordered by kind and name.
    pub fn sources(&self, tenant: Option<&str>) -> Vec<(SourceKey, Counters)> {
        self.sources_where(tenant, None, None)
    }

    /// The sources of `tenant` (all: None) of `kind` and `name` (any: None), ordered by kind
    /// and name. Only the sources that match are copied out of the book and sorted, so a client
    /// polling one source's counters (a dashboard, the bench) costs the ingestion little.
    pub fn sources_where(
        &self,
        tenant: Option<&str>,
        kind: Option<&str>,
        name: Option<&str>,
    ) -> Vec<(SourceKey, Counters)> {
        let book = self.book.lock();
        let mut out: Vec<(SourceKey, Counters)> = book
            .sources
            .iter()
            .filter(|(k, _)| {
                tenant.is_none_or(|t| k.tenant == t)
                    && kind.is_none_or(|want| k.kind == want)
                    && name.is_none_or(|want| k.name == want)
            })
            .map(|(k, c)| (k.clone(), c.clone()))
            .collect();
        out.sort_by(|a, b| (a.0.kind, &a.0.name).cmp(&(b.0.kind, &b.0.name)));
        out
    }

    /// The counters of one source.
    pub fn get(&self, key: &SourceKey) -> Option<Counters> {
        self.book.lock().sources.get(key).cloned()
    }

    /// The dead letters of `tenant` (all: None), oldest first.
    pub fn dead_letters(&self, tenant: Option<&str>) -> Vec<DeadLetter> {
        self.book.lock().dead.iter().filter(|d| tenant.is_none_or(|t| d.tenant == t)).cloned().collect()
    }
}

/// At most `max` bytes of `payload`, cut on a character boundary when it is text.
fn cut(payload: &[u8], max: usize) -> &[u8] {
    if payload.len() <= max {
        return payload;
    }
    let mut end = max;
    while end > 0 && std::str::from_utf8(&payload[..end]).is_err() && max - end < 4 {
        end -= 1;
    }
    &payload[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_per_source_and_keeps_bounded_dead_letters() {
        let book = StatusBook::new(2, 2);
        let dev = SourceKey::new("t", "device", "d1");
        let group = SourceKey::new("t", "service", "k");
        book.received(&[dev.clone(), group.clone()], "1");
        book.stored(&[dev.clone(), group.clone()], "1");
        book.received(std::slice::from_ref(&dev), "2");
        book.rejected(std::slice::from_ref(&dev), "2", "/k/d1/attrs", "not a Number", "é".repeat(400).as_bytes());
        let c = book.get(&dev).unwrap();
        assert_eq!((c.received, c.stored, c.rejected), (2, 1, 1));
        assert_eq!(c.last_error.as_deref(), Some("not a Number"));
        let dead = book.dead_letters(Some("t"));
        assert_eq!(dead.len(), 1);
        assert!(dead[0].truncated && dead[0].payload.len() <= PAYLOAD_BYTES && !dead[0].payload.contains('\u{fffd}'));
        book.rejected(std::slice::from_ref(&dev), "3", "s", "b", b"x");
        book.rejected(std::slice::from_ref(&dev), "4", "s", "c", b"y");
        let reasons: Vec<String> = book.dead_letters(None).into_iter().map(|d| d.reason).collect();
        assert_eq!(reasons, ["b", "c"], "the oldest goes");
        book.received(&[SourceKey::new("t", "device", "d2")], "5");
        assert_eq!(book.sources(None).len(), 2, "at most max_sources");
        assert!(book.get(&group).is_none(), "the least recently seen went");
        assert!(book.dead_letters(Some("other")).is_empty());
    }

    #[test]
    fn sources_are_filtered_by_tenant_kind_and_name_in_order() {
        let book = StatusBook::new(100, 1);
        for (tenant, kind, name) in
            [("t", "device", "d2"), ("t", "device", "d1"), ("t", "service", "k"), ("u", "device", "d1")]
        {
            book.received(&[SourceKey::new(tenant, kind, name)], "1");
        }
        let names = |found: Vec<(SourceKey, Counters)>| -> Vec<String> {
            found.into_iter().map(|(k, _)| format!("{}/{}/{}", k.tenant, k.kind, k.name)).collect()
        };
        assert_eq!(names(book.sources(Some("t"))), ["t/device/d1", "t/device/d2", "t/service/k"]);
        assert_eq!(names(book.sources_where(Some("t"), Some("device"), None)), ["t/device/d1", "t/device/d2"]);
        assert_eq!(names(book.sources_where(Some("t"), Some("device"), Some("d1"))), ["t/device/d1"]);
        // Across tenants the order is by kind and name only: compared as a set.
        let mut everywhere = names(book.sources_where(None, None, Some("d1")));
        everywhere.sort();
        assert_eq!(everywhere, ["t/device/d1", "u/device/d1"]);
        assert!(book.sources_where(Some("t"), Some("poller"), Some("d1")).is_empty());
        book.stored(&[SourceKey::new("t", "device", "d1")], "2");
        let (_, c) = book.sources_where(Some("t"), Some("device"), Some("d1")).pop().unwrap();
        assert_eq!((c.received, c.stored, c.last_seen.as_deref()), (1, 1, Some("2")));
    }
}
