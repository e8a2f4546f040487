//! ProblemDetails for the requests hyper refuses before the router sees them.
//!
//! hyper parses the HTTP/1.1 request head itself and, when it cannot (a control character in the
//! path or in a header value, `Content-Length: abc`, an unknown method token or version, a
//! request target over 65534 bytes, more than 100 header fields, a head over hyper's read buffer),
//! it answers on its own: a bare `400`, `414` or `431` with `content-length: 0`, and closes the
//! connection. hyper has no hook for the body of those answers, so [`GuardedListener`] wraps
//! every accepted connection in a [`Guarded`] stream that
//!
//! 1. watches the bytes of each request head as hyper reads them (only the head: counting its
//!    lines and remembering the first control character; at most [`KEPT_HEAD_BYTES`] of it are
//!    kept, so a connection costs a few kilobytes more, never a copy of a body), and
//! 2. recognises hyper's own error head when hyper writes it (status 4xx, `connection: close`,
//!    `content-length: 0`, no `Content-Type`: an answer of the router always has a body) and
//!    writes in its place an answer with a ProblemDetails body whose `detail` says what was wrong
//!    in this request and what to change.
//!
//! hyper still closes the connection after such an answer, as before; every other byte passes
//! through untouched.

use std::future::Future as _;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use ngsild_core::{ErrorKind, NgsiLdError};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};

/// The longest request target hyper accepts (`u16::MAX - 1`).
pub const MAX_URI_BYTES: usize = 65534;
/// The most header fields hyper reads in one request.
pub const MAX_HEADERS: usize = 100;
/// hyper's default read buffer: a request head must fit in it.
pub const MAX_HEAD_BYTES: usize = 8192 + 4096 * 100;
/// How much of a request head is kept to explain a refusal.
pub const KEPT_HEAD_BYTES: usize = 16 * 1024;

/// A TCP listener whose connections answer hyper's own refusals with ProblemDetails.
pub struct GuardedListener {
    inner: TcpListener,
    head_timeout: Option<Duration>,
}

impl GuardedListener {
    pub fn new(inner: TcpListener) -> Self {
        GuardedListener { inner, head_timeout: None }
    }

    /// Closes a connection whose request head is not complete `timeout` after its first byte
    /// (or, for a new connection, after it was accepted): a slow client (slowloris) cannot hold
    /// a connection by sending its head a byte at a time. hyper, as axum serves it, has no
    /// timer for this.
    pub fn with_head_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.head_timeout = timeout;
        self
    }
}

impl axum::serve::Listener for GuardedListener {
    type Io = Guarded<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        let (io, addr) = axum::serve::Listener::accept(&mut self.inner).await;
        let mut guarded = Guarded::new(io);
        guarded.head_timeout = self.head_timeout;
        (guarded, addr)
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.inner.local_addr()
    }
}

/// The address of the client of a connection (`into_make_service_with_connect_info::<ClientAddr>`),
/// which the audit log records and an anonymous caller's rate bucket is named by.
#[derive(Debug, Clone, Copy)]
pub struct ClientAddr(pub SocketAddr);

impl axum::extract::connect_info::Connected<axum::serve::IncomingStream<'_, GuardedListener>> for ClientAddr {
    fn connect_info(stream: axum::serve::IncomingStream<'_, GuardedListener>) -> Self {
        ClientAddr(*stream.remote_addr())
    }
}

/// What is known about the request head being read.
#[derive(Debug, Default)]
struct Head {
    /// The first bytes of the head.
    kept: Vec<u8>,
    /// Bytes of the head so far.
    len: usize,
    /// Line feeds seen so far (the request line plus the header lines).
    lines: usize,
    /// Bytes of the request line, once its end was seen.
    request_line: Option<usize>,
    /// The first control character: (line index, byte).
    control: Option<(usize, u8)>,
    /// The head ended (empty line seen): the rest until the next answer is body.
    complete: bool,
    /// The last bytes seen, to find `\r\n\r\n` across reads.
    tail: [u8; 3],
}

impl Head {
    /// Reads `bytes` of the head: the plain runs between special bytes (below 0x20, and DEL)
    /// in bulk, the special ones one by one, so a request costs a few instructions per head
    /// byte (a bearer token is a few hundred of them on every request).
    fn observe(&mut self, bytes: &[u8]) {
        let mut rest = bytes;
        while !rest.is_empty() && !self.complete {
            let plain = rest.iter().position(|&b| b < 0x20 || b == 0x7f).unwrap_or(rest.len());
            if plain > 0 {
                self.plain(&rest[..plain]);
                rest = &rest[plain..];
                continue;
            }
            self.special(rest[0]);
            rest = &rest[1..];
        }
    }

    /// A run of bytes none of which is a line feed or a control character.
    fn plain(&mut self, run: &[u8]) {
        let room = KEPT_HEAD_BYTES.saturating_sub(self.kept.len());
        self.kept.extend_from_slice(&run[..run.len().min(room)]);
        self.len += run.len();
        self.tail = match run {
            [.., a, b, c] => [*a, *b, *c],
            [a, b] => [self.tail[2], *a, *b],
            [a] => [self.tail[1], self.tail[2], *a],
            [] => self.tail,
        };
    }

    fn special(&mut self, b: u8) {
        if self.kept.len() < KEPT_HEAD_BYTES {
            self.kept.push(b);
        }
        self.len += 1;
        if b == b'\n' {
            if self.request_line.is_none() {
                self.request_line = Some(self.len);
            }
            // `\n\n` or `\r\n\r\n`: the empty line that ends the head.
            if self.tail[2] == b'\n' || (self.tail[2] == b'\r' && self.tail[1] == b'\n') {
                self.complete = true;
            }
            self.lines += 1;
        } else if (b < 0x20 && b != b'\t' && b != b'\r') || b == 0x7f {
            self.control.get_or_insert((self.lines, b));
        }
        self.tail = [self.tail[1], self.tail[2], b];
    }
}

#[derive(Debug)]
struct Replacement {
    bytes: Vec<u8>,
    sent: usize,
    /// The length of hyper's own answer it stands for.
    stands_for: usize,
}

/// A connection whose hyper-generated error answers get ProblemDetails bodies.
#[derive(Debug)]
pub struct Guarded<S> {
    inner: S,
    head: Head,
    replacement: Option<Replacement>,
    /// How long a request head may take from its first byte (see
    /// [`GuardedListener::with_head_timeout`]).
    head_timeout: Option<Duration>,
    /// When the head being read must be complete.
    deadline: Option<Pin<Box<tokio::time::Sleep>>>,
    /// No byte was read yet: the first head's time runs from the first read.
    fresh: bool,
}

impl<S> Guarded<S> {
    pub fn new(inner: S) -> Self {
        Guarded { inner, head: Head::default(), replacement: None, head_timeout: None, deadline: None, fresh: true }
    }

    fn arm(&mut self) {
        if let (None, Some(timeout)) = (&self.deadline, self.head_timeout) {
            self.deadline = Some(Box::pin(tokio::time::sleep(timeout)));
        }
    }

    /// A response head is being written: the next bytes read belong to the next request.
    fn answer_starts(&mut self, buf: &[u8]) {
        if let Some(status) = hyper_refusal(buf) {
            let bytes = problem_answer(status, &self.head);
            self.replacement = Some(Replacement { bytes, sent: 0, stands_for: buf.len() });
        } else if !buf.starts_with(b"HTTP/1.1 1") {
            // A final answer (not `100 Continue`, after which the body follows): the next bytes
            // read start the next request.
            self.head = Head::default();
        }
    }
}

/// The status of an answer hyper wrote by itself for a request it could not parse: a 4xx with
/// `connection: close` and `content-length: 0` and no `Content-Type`.
fn hyper_refusal(buf: &[u8]) -> Option<u16> {
    let rest = buf.strip_prefix(b"HTTP/1.1 ")?;
    let status: u16 = std::str::from_utf8(rest.get(..3)?).ok()?.parse().ok()?;
    if !(400..500).contains(&status) {
        return None;
    }
    let end = buf.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = buf[..end].to_ascii_lowercase();
    let has = |needle: &[u8]| head.windows(needle.len()).any(|w| w == needle);
    (end + 4 == buf.len()
        && has(b"\r\nconnection: close")
        && has(b"\r\ncontent-length: 0\r\n")
        && !has(b"content-type:"))
    .then_some(status)
}

/// Our answer in place of hyper's bare one.
fn problem_answer(status: u16, head: &Head) -> Vec<u8> {
    let error = explain(status, head);
    let body = crate::response::json_bytes(&error.problem_details());
    let reason =
        axum::http::StatusCode::from_u16(status).ok().and_then(|s| s.canonical_reason()).unwrap_or("Bad Request");
    let mut out = format!(
        "HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    out.extend_from_slice(&body);
    out
}

/// What was wrong with the request head, as a ProblemDetails a client can act on.
fn explain(status: u16, head: &Head) -> NgsiLdError {
    match status {
        414 => {
            let length = head.request_line.map(|l| format!("{l} bytes")).unwrap_or_else(|| "longer".into());
            NgsiLdError::new(
                ErrorKind::UriTooLong,
                format!(
                    "the request line is {length}; the request target (path and query) may be at most \
                     {MAX_URI_BYTES} bytes: send long id, attrs or q lists in the body of \
                     POST /ngsi-ld/v1/entityOperations/query instead"
                ),
            )
        }
        431 => {
            // Lines: the request line, the fields and (once complete) the empty line.
            let fields = head.lines.saturating_sub(if head.complete { 2 } else { 1 });
            let detail = if fields > MAX_HEADERS {
                format!(
                    "the request has {fields} header fields; at most {MAX_HEADERS} are accepted: send fewer headers"
                )
            } else {
                format!(
                    "the request head (request line and header fields) is larger than the {MAX_HEAD_BYTES} bytes \
                     this hub reads: shorten the query string or the headers, or send long id, attrs or q lists \
                     in the body of POST /ngsi-ld/v1/entityOperations/query"
                )
            };
            NgsiLdError::new(ErrorKind::RequestHeaderFieldsTooLarge, detail)
        }
        _ => NgsiLdError::invalid_request(explain_bad_request(head)),
    }
}

fn explain_bad_request(head: &Head) -> String {
    if let Some((line, byte)) = head.control {
        let what = if line == 0 {
            "the request line (method, path and query)".to_owned()
        } else {
            match header_name(head, line) {
                Some(name) if name.eq_ignore_ascii_case("ngsild-tenant") => "the NGSILD-Tenant header".to_owned(),
                Some(name) => format!("the {name} header"),
                None => format!("header line {line}"),
            }
        };
        return format!(
            "{what} holds the control character 0x{byte:02X}; control characters are not allowed there: \
             percent-encode them in a path or query (e.g. %{byte:02X}) and leave them out of header values"
        );
    }
    let text = String::from_utf8_lossy(&head.kept);
    let mut lines = text.split('\n').map(|l| l.trim_end_matches('\r'));
    let request_line = lines.next().unwrap_or_default();
    let parts: Vec<&str> = request_line.split(' ').collect();
    if parts.len() != 3 || parts.iter().any(|p| p.is_empty()) {
        return format!(
            "the request line {:?} is not `METHOD target HTTP/1.1` (three parts separated by single spaces); \
             percent-encode spaces in the path or query as %20",
            shorten(request_line)
        );
    }
    if !parts[0].bytes().all(is_token) {
        return format!("the method {:?} is not an HTTP method token", shorten(parts[0]));
    }
    if parts[2] != "HTTP/1.1" && parts[2] != "HTTP/1.0" {
        return format!("the HTTP version {:?} is not supported: send HTTP/1.1 (or HTTP/2)", shorten(parts[2]));
    }
    if !parts[1].bytes().all(|b| b > 0x20 && b != 0x7f) {
        return "the request target holds a character that must be percent-encoded".to_owned();
    }
    let mut lengths = Vec::new();
    for (i, line) in lines.enumerate() {
        if line.is_empty() {
            break;
        }
        let Some((name, value)) = line.split_once(':') else {
            return format!("header line {} {:?} has no colon: write `Name: value`", i + 1, shorten(line));
        };
        if name.is_empty() || !name.bytes().all(is_token) {
            return format!(
                "header line {} has the name {:?}, which is not a token (no spaces or separators before the colon)",
                i + 1,
                shorten(name)
            );
        }
        if name.eq_ignore_ascii_case("content-length") {
            lengths.push(value.trim().to_owned());
        }
        if name.eq_ignore_ascii_case("transfer-encoding")
            && value.trim().to_ascii_lowercase().rsplit(',').next().is_none_or(|last| last.trim() != "chunked")
        {
            return format!(
                "Transfer-Encoding {:?} does not end in chunked: send chunked or a Content-Length",
                shorten(value.trim())
            );
        }
    }
    if let Some(bad) = lengths.iter().find(|v| v.is_empty() || !v.bytes().all(|b| b.is_ascii_digit())) {
        return format!(
            "Content-Length {:?} is not a number of bytes: send the body's length in decimal digits",
            shorten(bad)
        );
    }
    if lengths.windows(2).any(|w| w[0] != w[1]) {
        return format!("the request has several different Content-Length headers ({}): send one", lengths.join(", "));
    }
    "the request head could not be read as HTTP/1.1 (RFC 9112)".to_owned()
}

fn header_name(head: &Head, line: usize) -> Option<String> {
    let text = String::from_utf8_lossy(&head.kept);
    let line = text.split('\n').nth(line)?;
    let name = line.split_once(':')?.0;
    name.bytes().all(is_token).then(|| name.to_owned())
}

fn is_token(b: u8) -> bool {
    ngsild_core::validate::is_tchar(char::from(b))
}

fn shorten(s: &str) -> String {
    let mut out: String = s.chars().take(80).collect();
    if out.len() < s.len() {
        out.push('…');
    }
    out
}

impl<S: AsyncRead + Unpin> AsyncRead for Guarded<S> {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        match Pin::new(&mut this.inner).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                let new = &buf.filled()[before..];
                if !new.is_empty() {
                    this.fresh = false;
                    if !this.head.complete {
                        this.arm();
                    }
                }
                this.head.observe(new);
                if this.head.complete {
                    this.deadline = None;
                }
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => {
                if this.fresh {
                    this.arm();
                }
                if let Some(deadline) = &mut this.deadline {
                    if deadline.as_mut().poll(cx).is_ready() {
                        return Poll::Ready(Err(io::Error::new(
                            io::ErrorKind::TimedOut,
                            "the request head was not complete in time (--header-timeout-secs)",
                        )));
                    }
                }
                Poll::Pending
            }
        }
    }
}

impl<S: AsyncWrite + Unpin> Guarded<S> {
    /// Writes our answer in place of hyper's; reports hyper's bytes as written once it is out.
    fn poll_replacement(&mut self, cx: &mut Context<'_>, hyper_len: usize) -> Poll<io::Result<usize>> {
        let Some(r) = &mut self.replacement else {
            return Poll::Ready(Ok(0));
        };
        while r.sent < r.bytes.len() {
            let n = ready!(Pin::new(&mut self.inner).poll_write(cx, &r.bytes[r.sent..]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            r.sent += n;
        }
        let written = r.stands_for.min(hyper_len);
        self.replacement = None;
        Poll::Ready(Ok(written))
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Guarded<S> {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.replacement.is_none() && buf.starts_with(b"HTTP/1.") {
            this.answer_starts(buf);
        }
        if this.replacement.is_some() {
            return this.poll_replacement(cx, buf.len());
        }
        Pin::new(&mut this.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let first = bufs.iter().find(|b| !b.is_empty()).map(|b| &**b).unwrap_or_default();
        if this.replacement.is_none() && first.starts_with(b"HTTP/1.") {
            this.answer_starts(first);
        }
        if this.replacement.is_some() {
            return this.poll_replacement(cx, first.len());
        }
        Pin::new(&mut this.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The head as it was read byte by byte before the bulk reading: the reference.
    fn bytewise(bytes: &[u8]) -> Head {
        let mut h = Head::default();
        for &b in bytes {
            if h.complete {
                break;
            }
            h.special(b);
        }
        h
    }

    #[test]
    fn the_head_read_in_bulk_is_the_head_read_byte_by_byte() {
        let heads: [&[u8]; 6] = [
            b"GET /ngsi-ld/v1/entities/urn:x:1 HTTP/1.1\r\nhost: a\r\nauthorization: Bearer eyJ.eyJ.sig\r\n\r\nbody",
            b"GET / HTTP/1.1\nhost: a\n\nrest",
            b"GET / HTTP/1.1\r\nx: a\x01b\x7f\r\nbad\x00\r\n\r\n",
            b"\n\n",
            b"GET / HTTP/1.1\r\nx: \tta\tb\r\n",
            b"ab\r\n\r\n",
        ];
        let long = [b"GET / HTTP/1.1\r\nx: ".as_slice(), &vec![b'a'; KEPT_HEAD_BYTES + 10], b"\r\n\r\n"].concat();
        for bytes in heads.iter().copied().chain([long.as_slice()]) {
            let want = bytewise(bytes);
            for size in [1, 2, 3, 5, 7, 64, bytes.len().max(1)] {
                let mut got = Head::default();
                for chunk in bytes.chunks(size) {
                    got.observe(chunk);
                }
                let key = |h: &Head| (h.kept.clone(), h.len, h.lines, h.request_line, h.control, h.complete, h.tail);
                assert_eq!(key(&got), key(&want), "{:?} in chunks of {size}", String::from_utf8_lossy(bytes));
            }
        }
    }

    fn head(bytes: &[u8]) -> Head {
        let mut h = Head::default();
        for chunk in bytes.chunks(7) {
            h.observe(chunk);
        }
        h
    }

    #[test]
    fn recognises_only_hyper_own_refusals() {
        let hyper = b"HTTP/1.1 400 Bad Request\r\nconnection: close\r\ncontent-length: 0\r\ndate: Tue, 01 Dec 2026 09:55:36 GMT\r\n\r\n";
        assert_eq!(hyper_refusal(hyper), Some(400));
        let ours = b"HTTP/1.1 400 Bad Request\r\ncontent-type: application/json\r\ncontent-length: 10\r\n\r\n";
        assert_eq!(hyper_refusal(ours), None);
        assert_eq!(hyper_refusal(b"HTTP/1.1 204 No Content\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"), None);
    }

    #[test]
    fn explains_each_kind_of_bad_head() {
        let detail = |bytes: &[u8], status| explain(status, &head(bytes)).detail;
        assert!(detail(b"GET /a\x00b HTTP/1.1\r\nHost: x\r\n\r\n", 400).contains("request line"));
        let tenant = detail(b"GET / HTTP/1.1\r\nHost: x\r\nNGSILD-Tenant: a\x01b\r\n\r\n", 400);
        assert!(tenant.contains("NGSILD-Tenant") && tenant.contains("0x01"), "{tenant}");
        assert!(detail(b"POST / HTTP/1.1\r\nContent-Length: abc\r\n\r\n", 400).contains("\"abc\" is not a number"));
        assert!(detail(b"POST / HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 7\r\n\r\n", 400).contains("several"));
        assert!(detail(b"GET / HTTP/3.0\r\n\r\n", 400).contains("HTTP version"));
        assert!(detail(b"GARBAGE\r\n\r\n", 400).contains("request line"));
        assert!(detail(b"GET / HTTP/1.1\r\nBad Header: x\r\n\r\n", 400).contains("not a token"));
        let long = [b"GET /".as_slice(), &[b'a'; 70000], b" HTTP/1.1\r\n\r\n"].concat();
        let e = explain(414, &head(&long));
        assert_eq!(e.kind, ErrorKind::UriTooLong);
        assert!(e.detail.contains("70016 bytes") && e.detail.contains("65534"), "{}", e.detail);
        let many: Vec<u8> = (0..150).flat_map(|i| format!("X-{i}: v\r\n").into_bytes()).collect();
        let e = explain(431, &head(&[b"GET / HTTP/1.1\r\n".as_slice(), &many, b"\r\n"].concat()));
        assert!(e.detail.contains("150 header fields"), "{}", e.detail);
    }

    #[test]
    fn the_head_ends_at_the_empty_line() {
        let h = head(b"POST / HTTP/1.1\r\nA: b\r\n\r\n\x00\x01body");
        assert!(h.complete);
        assert_eq!(h.control, None);
        assert_eq!(h.lines, 3);
    }
}
