//! The NGSI-LD core @context (ETSI GS CIM 009 Annex B), shipped inside the binary so that a hub
//! with no internet access still understands every payload. Data only: the document, its URL
//! and the versions recognised as it; the built context is [`crate::Context::core`].

use std::sync::OnceLock;

use serde_json::Value;

/// The URL under which the hub publishes and recognises the core context.
pub const CORE_CONTEXT_URL: &str = "https://uri.etsi.org/ngsi-ld/v1/ngsi-ld-core-context-v1.8.jsonld";

/// The IRI every core term lives under.
pub const NGSI_LD_PREFIX: &str = "https://uri.etsi.org/ngsi-ld/";

const CORE_CONTEXT_TEXT: &str = include_str!("../contexts/ngsi-ld-core-context-v1.8.jsonld");

/// Every published version of the core context is treated as this one: clients and test data still
/// name v1.3 to v1.9, and the later versions only add terms.
pub fn is_core_context_url(url: &str) -> bool {
    let Some(file) = url
        .strip_prefix("https://uri.etsi.org/ngsi-ld/v1/")
        .or_else(|| url.strip_prefix("http://uri.etsi.org/ngsi-ld/v1/"))
    else {
        return false;
    };
    file == "ngsi-ld-core-context.jsonld"
        || file
            .strip_prefix("ngsi-ld-core-context-v1.")
            .and_then(|rest| rest.strip_suffix(".jsonld"))
            .is_some_and(|minor| !minor.is_empty() && minor.chars().all(|c| c.is_ascii_digit() || c == '.'))
}

/// The core context document, as served by `GET /jsonldContexts/{core}`.
#[expect(clippy::expect_used, reason = "the core context is compiled in; `core_context_builds` parses it")]
pub fn core_context_document() -> &'static Value {
    static DOC: OnceLock<Value> = OnceLock::new();
    DOC.get_or_init(|| serde_json::from_str(CORE_CONTEXT_TEXT).expect("the shipped core context is valid JSON"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recognises_every_core_version() {
        assert!(is_core_context_url(CORE_CONTEXT_URL));
        assert!(is_core_context_url("https://uri.etsi.org/ngsi-ld/v1/ngsi-ld-core-context-v1.6.jsonld"));
        assert!(is_core_context_url("https://uri.etsi.org/ngsi-ld/v1/ngsi-ld-core-context.jsonld"));
        assert!(!is_core_context_url("https://uri.etsi.org/ngsi-ld/v1/other.jsonld"));
        assert!(!is_core_context_url("https://example.org/ngsi-ld-core-context-v1.8.jsonld"));
    }
}
