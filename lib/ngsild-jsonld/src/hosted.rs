//! Contexts the hub hosts (clause 5.13) and keeps in memory: the local id of a hosted context's
//! URL, the key its usage is counted under, and the heap a parsed document holds (what the
//! context cache weighs). No I/O.

use serde_json::Value;

/// Where a hosted context is served, relative to the API root.
pub const HOSTED_PATH: &str = "/ngsi-ld/v1/jsonldContexts/";

/// The local id of a hosted context URL (`.../ngsi-ld/v1/jsonldContexts/{id}`), on any host, or
/// given as the bare path that the `Location` of its creation answered.
pub fn hosted_id(url: &str) -> Option<String> {
    let path = match url.strip_prefix("http://").or_else(|| url.strip_prefix("https://")) {
        Some(rest) => &rest[rest.find('/')?..],
        None => url,
    };
    if !path.starts_with(HOSTED_PATH) && !path.starts_with("/ngsi-ld/") {
        return None;
    }
    let (_, id) = path.rsplit_once("/jsonldContexts/")?;
    (!id.is_empty() && !id.contains('/')).then(|| id.to_owned())
}

/// The key under which a context's usage is counted: hosted contexts by local id (they are
/// reachable under several URLs), the others by URL.
pub fn usage_key(url: &str) -> String {
    match hosted_id(url) {
        Some(id) => format!("hosted:{id}"),
        None => url.to_owned(),
    }
}

/// An estimate of the heap a parsed JSON value holds: every string's bytes, and per node the
/// size of a `Value` plus, in objects, the key's `String` and the map's per-entry overhead.
pub fn json_heap_bytes(value: &Value) -> usize {
    // Per string, the allocator rounds up and keeps a header: 16 bytes on average.
    const NODE: usize = size_of::<Value>();
    const MAP_ENTRY: usize = 24 + 32 + 16;
    match value {
        Value::String(s) => NODE + s.len() + 16,
        Value::Array(items) => NODE + items.iter().map(json_heap_bytes).sum::<usize>(),
        Value::Object(map) => NODE + map.iter().map(|(k, v)| MAP_ENTRY + k.len() + json_heap_bytes(v)).sum::<usize>(),
        _ => NODE,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn hosted_context_urls() {
        assert_eq!(hosted_id("http://hub:1026/ngsi-ld/v1/jsonldContexts/abc").as_deref(), Some("abc"));
        assert_eq!(hosted_id("/ngsi-ld/v1/jsonldContexts/abc").as_deref(), Some("abc"));
        assert_eq!(hosted_id("https://other.example/contexts/abc"), None);
        assert_eq!(hosted_id("http://hub/ngsi-ld/v1/jsonldContexts/"), None);
        assert_eq!(hosted_id("http://hub/ngsi-ld/v1/jsonldContexts/a/b"), None);
        assert_eq!(usage_key("http://a/ngsi-ld/v1/jsonldContexts/x"), "hosted:x");
        assert_eq!(usage_key("/ngsi-ld/v1/jsonldContexts/x"), "hosted:x");
        assert_eq!(usage_key("https://other.example/c.jsonld"), "https://other.example/c.jsonld");
    }

    #[test]
    fn the_heap_estimate_counts_strings_keys_and_nodes() {
        let node = size_of::<Value>();
        assert_eq!(json_heap_bytes(&json!(1)), node);
        assert_eq!(json_heap_bytes(&json!("abcd")), node + 4 + 16);
        assert_eq!(json_heap_bytes(&json!([1, 2])), 3 * node);
        assert_eq!(json_heap_bytes(&json!({"ab": 1})), 2 * node + 24 + 32 + 16 + 2);
        assert!(json_heap_bytes(&json!({"a": "x".repeat(1000)})) > 1000);
    }
}
