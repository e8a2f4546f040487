//! Hard limits on the shape of what a client may send, so that no input can exhaust a thread's
//! stack or make one request unboundedly expensive. Each is named in the error a client gets when
//! it is exceeded (`detail` says the limit and where it was hit).
//!
//! Why these values: real queries nest a handful of levels (the ETSI suite never goes past 3);
//! 64 leaves plenty of room for generated expressions while a parser at that depth uses a few
//! tens of KB of stack even in a debug build, far below the 2 MB of a tokio worker thread.

/// Nesting (parentheses in `q`, `scopeQ`, type expressions; braces in `pick`/`omit`; nested
/// `GeometryCollection`s) that any parser accepts.
pub const MAX_NESTING: usize = 64;

/// The largest `joinLevel` of Linked Entity retrieval (queries, retrieval, notifications). Each
/// level is one store query; an inline join nests one JSON object per level.
pub const MAX_JOIN_LEVEL: u32 = 16;
