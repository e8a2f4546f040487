//! The W3C trace context (`traceparent`, <https://www.w3.org/TR/trace-context/>) of the request a
//! task serves, and the request id of its log lines.
//!
//! The HTTP layer runs each request inside [`scope`]; the egress client adds [`current`]'s
//! `traceparent` to every request sent from inside it (federation). Notifications are made later
//! by the notifier, from the journal: a write whose client sent a `traceparent` notes it beside its entity
//! ([`note_writes`], a bounded map of recent writes), and the notifier copies it
//! ([`written`]) into the notification's headers, which the outbox keeps with the message — so a
//! notification delivered after a restart still carries its write's trace. Only this hub's writes
//! are noted: a write made at another hub of a shared store is notified without its trace.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use parking_lot::Mutex;

/// A `traceparent`: version 00, a trace id, the id of the span that sent it, flags.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TraceParent {
    pub trace_id: [u8; 16],
    pub parent_id: [u8; 8],
    pub flags: u8,
}

impl TraceParent {
    /// A header as the recommendation defines it, or `None`: lower-case hex, a version other than
    /// `ff` (a later version's extra fields after a `-` are ignored, as it says), a trace id and a
    /// parent id that are not all zeros.
    pub fn parse(header: &str) -> Option<TraceParent> {
        let header = header.trim();
        let mut parts = header.splitn(5, '-');
        let (version, trace, parent, flags) = (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
        let rest = parts.next();
        let hex =
            |s: &str, n: usize| s.len() == n && s.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        if !hex(version, 2) || version == "ff" || !hex(trace, 32) || !hex(parent, 16) || !hex(flags, 2) {
            return None;
        }
        // Version 00 has exactly four fields.
        if version == "00" && rest.is_some() {
            return None;
        }
        let mut trace_id = [0u8; 16];
        let mut parent_id = [0u8; 8];
        decode(trace, &mut trace_id)?;
        decode(parent, &mut parent_id)?;
        let flags = u8::from_str_radix(flags, 16).ok()?;
        if trace_id == [0; 16] || parent_id == [0; 8] {
            return None;
        }
        Some(TraceParent { trace_id, parent_id, flags })
    }

    /// A new trace, sampled, for a request that came without one.
    pub fn root() -> TraceParent {
        let trace_id = *uuid::Uuid::new_v4().as_bytes();
        TraceParent { trace_id, parent_id: span_id(), flags: 1 }
    }

    /// The hub's own span in this trace: same trace id and flags, a new span id.
    pub fn child(&self) -> TraceParent {
        TraceParent { parent_id: span_id(), ..*self }
    }

    pub fn trace_id_hex(&self) -> String {
        hex(&self.trace_id)
    }

    /// The header value: `00-<trace id>-<span id>-<flags>`.
    pub fn header(&self) -> String {
        format!("00-{}-{}-{:02x}", hex(&self.trace_id), hex(&self.parent_id), self.flags)
    }
}

fn span_id() -> [u8; 8] {
    let bytes = uuid::Uuid::new_v4().into_bytes();
    let mut id = [0u8; 8];
    id.copy_from_slice(&bytes[..8]);
    if id == [0; 8] {
        id[7] = 1;
    }
    id
}

fn decode(s: &str, out: &mut [u8]) -> Option<()> {
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(s.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A request id a client sent (`x-request-id`), if sane: 1 to 128 of `A-Z a-z 0-9 - _ . : /`.
pub fn sane_request_id(value: &str) -> bool {
    (1..=128).contains(&value.len())
        && value.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':' | b'/'))
}

/// A new request id.
pub fn new_request_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// The request a task serves.
#[derive(Debug, Clone)]
pub struct RequestTrace {
    pub request_id: Arc<str>,
    /// The hub's span of the request (a child of the client's `traceparent`, or a new root).
    pub trace: TraceParent,
    /// Whether the client sent the trace (else the hub started it): only then are its writes
    /// noted for their notifications, which costs a map entry per entity written.
    pub continued: bool,
}

tokio::task_local! {
    static CURRENT: RequestTrace;
}

/// Runs `future` as serving `request`: [`current`] inside it tells its trace.
pub async fn scope<F: std::future::Future>(request: RequestTrace, future: F) -> F::Output {
    CURRENT.scope(request, future).await
}

/// `future` in the request this task serves (if it serves one), for a task it spawns: a
/// task-local does not follow `tokio::spawn` by itself.
pub fn carry<F: std::future::Future>(future: F) -> impl std::future::Future<Output = F::Output> {
    let request = CURRENT.try_with(Clone::clone).ok();
    async move {
        match request {
            Some(request) => CURRENT.scope(request, future).await,
            None => future.await,
        }
    }
}

/// The trace of the request this task serves, if it serves one.
pub fn current() -> Option<TraceParent> {
    CURRENT.try_with(|r| r.trace).ok()
}

/// Recent writes remembered, at most.
const RECENT: usize = 10_000;

type Key = (String, String);

struct Recent {
    map: HashMap<Key, TraceParent>,
    order: VecDeque<Key>,
}

static WRITES: Mutex<Option<Recent>> = Mutex::new(None);

/// Notes that the request this task serves, when its client sent its trace, writes these entities of `tenant` (before the write,
/// so that the notifier, which may see the commit before the writer is answered, finds it).
pub fn note_writes<'a>(tenant: &str, ids: impl IntoIterator<Item = &'a str>) {
    let Some(trace) = CURRENT.try_with(|r| r.continued.then_some(r.trace)).ok().flatten() else { return };
    let mut guard = WRITES.lock();
    let recent = guard.get_or_insert_with(|| Recent { map: HashMap::new(), order: VecDeque::new() });
    for id in ids {
        let key = (tenant.to_owned(), id.to_owned());
        if recent.map.insert(key.clone(), trace).is_none() {
            recent.order.push_back(key);
        }
        while recent.order.len() > RECENT {
            if let Some(old) = recent.order.pop_front() {
                recent.map.remove(&old);
            }
        }
    }
}

/// The trace of the latest noted write of an entity, still remembered.
pub fn written(tenant: &str, id: &str) -> Option<TraceParent> {
    WRITES.lock().as_ref()?.map.get(&(tenant.to_owned(), id.to_owned())).copied()
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn a_valid_traceparent_reads_back_as_it_was() {
        let t = TraceParent::parse(SAMPLE).unwrap();
        assert_eq!(t.header(), SAMPLE);
        assert_eq!(t.trace_id_hex(), "4bf92f3577b34da6a3ce929d0e0e4736");
        let child = t.child();
        assert_eq!(child.trace_id, t.trace_id);
        assert_ne!(child.parent_id, t.parent_id);
        assert_eq!(TraceParent::parse(&child.header()), Some(child));
    }

    #[test]
    fn malformed_traceparents_are_refused() {
        for bad in [
            "",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            "0-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
        ] {
            assert_eq!(TraceParent::parse(bad), None, "{bad:?}");
        }
        // A later version may carry more fields.
        assert!(TraceParent::parse("01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-more").is_some());
    }

    #[test]
    fn request_ids_are_sane_or_replaced() {
        assert!(sane_request_id("abc-123_x.y:z/1"));
        assert!(!sane_request_id(""));
        assert!(!sane_request_id("a b"));
        assert!(!sane_request_id(&"a".repeat(129)));
        assert!(sane_request_id(&new_request_id()));
    }

    #[tokio::test]
    async fn a_write_in_a_request_remembers_its_trace() {
        let t = TraceParent::parse(SAMPLE).unwrap();
        note_writes("t", ["urn:outside"]);
        assert_eq!(written("t", "urn:outside"), None, "no request, no trace");
        scope(RequestTrace { request_id: "r0".into(), trace: t, continued: false }, async {
            note_writes("t", ["urn:started-here"]);
        })
        .await;
        assert_eq!(written("t", "urn:started-here"), None, "a trace the hub started is not noted");
        scope(RequestTrace { request_id: "r1".into(), trace: t, continued: true }, async {
            assert_eq!(current(), Some(t));
            note_writes("t", ["urn:a", "urn:b"]);
        })
        .await;
        assert_eq!(written("t", "urn:a"), Some(t));
        assert_eq!(written("u", "urn:a"), None);
        assert_eq!(current(), None);
    }
}
