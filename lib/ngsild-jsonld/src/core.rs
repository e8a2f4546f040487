//! The NGSI-LD core @context (ETSI GS CIM 009 Annex B), shipped inside the binary so that a hub
//! with no internet access still understands every payload.

use std::sync::{Arc, OnceLock};

use serde_json::Value;

use crate::context::{Context, NoDocuments};

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

/// The core context alone, built once.
#[expect(clippy::expect_used, reason = "the core context is compiled in; `core_context_builds` builds it")]
pub fn core_context() -> Arc<Context> {
    static CORE: OnceLock<Arc<Context>> = OnceLock::new();
    CORE.get_or_init(|| {
        Arc::new(
            Context::build(&Value::Array(vec![]), &NoDocuments)
                .expect("an empty user context over the core context always builds"),
        )
    })
    .clone()
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

    #[test]
    fn core_context_builds() {
        let doc = core_context_document();
        assert!(doc["@context"].is_object(), "the shipped core context has an @context object");
        // Building any user context applies the core context first.
        let built = Context::build(&serde_json::json!({"speed": "http://example.org/speed"}), &NoDocuments).unwrap();
        assert_eq!(built.expand_term("speed"), "http://example.org/speed");
        assert_eq!(built.expand_term("location"), "https://uri.etsi.org/ngsi-ld/location");
    }

    #[test]
    fn core_terms_expand_and_compact() {
        let core = core_context();
        assert_eq!(core.expand_term("location"), "https://uri.etsi.org/ngsi-ld/location");
        assert_eq!(core.expand_term("Property"), "https://uri.etsi.org/ngsi-ld/Property");
        assert_eq!(core.expand_term("speed"), "https://uri.etsi.org/ngsi-ld/default-context/speed");
        assert_eq!(core.compact_iri("https://uri.etsi.org/ngsi-ld/default-context/speed"), "speed");
        assert_eq!(core.compact_iri("https://uri.etsi.org/ngsi-ld/location"), "location");
        assert_eq!(core.compact_iri("https://uri.etsi.org/ngsi-ld/somethingElse"), "ngsi-ld:somethingElse");
        assert_eq!(core.compact_iri("http://example.org/x"), "http://example.org/x");
    }
}
