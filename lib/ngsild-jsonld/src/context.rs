//! Building a flat term map from a JSON-LD `@context` and answering expansion and compaction
//! questions from it.

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::{Arc, OnceLock};

use serde_json::{Map, Value};

use crate::core::{core_context_document, is_core_context_url};

/// How values of a term are coerced (`@type` in its definition).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TypeMapping {
    /// `@id`: string values are IRIs, not expanded against the vocabulary.
    Id,
    /// `@vocab`: string values are terms, expanded like attribute names.
    Vocab,
    /// `@json`: the value is an opaque JSON literal.
    Json,
    /// Any other datatype IRI (for example `DateTime`).
    Datatype(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TermDefinition {
    pub iri: String,
    pub type_mapping: Option<TypeMapping>,
    pub container: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ContextError {
    /// A remote context that the loader did not have: fetch it and build again.
    Missing(String),
    /// The context is not a valid JSON-LD context.
    Invalid(String),
}

impl std::fmt::Display for ContextError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ContextError::Missing(url) => write!(f, "the @context {url} has not been loaded"),
            ContextError::Invalid(why) => write!(f, "invalid @context: {why}"),
        }
    }
}

impl std::error::Error for ContextError {}

/// Hands remote context documents (the whole document, with its `@context` member) to the builder.
pub trait DocumentLoader {
    fn load(&self, url: &str) -> Option<&Value>;
}

/// A loader that has no remote documents: only inline contexts and the core context resolve.
pub struct NoDocuments;

impl DocumentLoader for NoDocuments {
    fn load(&self, _url: &str) -> Option<&Value> {
        None
    }
}

impl DocumentLoader for HashMap<String, Value> {
    fn load(&self, url: &str) -> Option<&Value> {
        self.get(url)
    }
}

/// An active context: the user's contexts applied in order, then the core context on top (its
/// terms are protected, so they always win).
#[derive(Debug, Clone, Default)]
pub struct Context {
    terms: HashMap<String, TermDefinition>,
    vocab: Option<String>,
    /// IRI -> the term that compacts it (shortest, then lexicographically least).
    reverse: HashMap<String, String>,
    /// (IRI prefix, term) for terms usable as compact-IRI prefixes, longest IRI first.
    prefixes: Vec<(String, String)>,
}

const MAX_CONTEXT_DEPTH: usize = 16;

impl Context {
    /// An estimate of the heap this active context holds, in bytes, for caches bounded by
    /// memory: the length of every string it keeps plus a fixed cost per map entry (String
    /// headers, hash slots). It errs on the large side.
    pub fn approx_bytes(&self) -> usize {
        // A hash map slot (key String + value, about half empty at worst) and the allocator's
        // rounding of each string: measured against the RSS of a hub holding such maps.
        const ENTRY: usize = 256;
        let terms: usize = self
            .terms
            .iter()
            .map(|(term, d)| ENTRY + term.len() + d.iri.len() + d.container.as_ref().map_or(0, String::len))
            .sum();
        let reverse: usize = self.reverse.iter().map(|(iri, term)| ENTRY + iri.len() + term.len()).sum();
        let prefixes: usize = self.prefixes.iter().map(|(iri, term)| 48 + iri.len() + term.len()).sum();
        size_of::<Self>() + terms + reverse + prefixes + self.vocab.as_ref().map_or(0, String::len)
    }

    /// Builds the active context for a user `@context` value (a URL, an object, an array of those,
    /// or an empty array for "core only").
    pub fn build(user: &Value, loader: &dyn DocumentLoader) -> Result<Context, ContextError> {
        let mut ctx = Context::default();
        ctx.apply(user, loader, 0)?;
        ctx.apply_core();
        ctx.index();
        Ok(ctx)
    }

    /// The core context alone (ETSI GS CIM 009 Annex B), built once per process and shared.
    #[expect(clippy::expect_used, reason = "the core context is compiled in; `core_context_builds` builds it")]
    pub fn core() -> Arc<Context> {
        static CORE: OnceLock<Arc<Context>> = OnceLock::new();
        CORE.get_or_init(|| {
            Arc::new(
                Context::build(&Value::Array(vec![]), &NoDocuments)
                    .expect("an empty user context over the core context always builds"),
            )
        })
        .clone()
    }

    /// Every remote URL that `user` refers to, directly or through loaded documents, that the loader
    /// does not have yet. Lets a caller fetch all of them before building.
    pub fn missing_documents(user: &Value, loader: &dyn DocumentLoader) -> Vec<String> {
        let mut missing = Vec::new();
        collect_missing(user, loader, &mut missing, 0);
        missing
    }

    #[expect(clippy::expect_used, reason = "the core context is compiled in; `core_context_builds` checks it applies")]
    fn apply_core(&mut self) {
        let core = &core_context_document()["@context"];
        // The core context's own vocabulary only applies when the user did not set one.
        let user_vocab = self.vocab.take();
        self.apply_object(core.as_object().expect("core context is an object"), &NoDocuments, 0)
            .expect("core context is valid");
        if user_vocab.is_some() {
            self.vocab = user_vocab;
        }
    }

    fn apply(&mut self, value: &Value, loader: &dyn DocumentLoader, depth: usize) -> Result<(), ContextError> {
        if depth > MAX_CONTEXT_DEPTH {
            return Err(ContextError::Invalid(format!(
                "@context nesting (arrays, remote documents, @import) deeper than {MAX_CONTEXT_DEPTH} levels, the limit of this hub"
            )));
        }
        match value {
            Value::Null => {
                // A null context resets the active context.
                self.terms.clear();
                self.vocab = None;
                Ok(())
            }
            Value::String(url) => {
                if is_core_context_url(url) {
                    return Ok(()); // applied last in any case
                }
                let doc = loader.load(url).ok_or_else(|| ContextError::Missing(url.clone()))?;
                let inner = doc
                    .get("@context")
                    .ok_or_else(|| ContextError::Invalid(format!("{url} has no @context member")))?;
                self.apply(inner, loader, depth + 1)
            }
            Value::Array(items) => {
                for item in items {
                    self.apply(item, loader, depth + 1)?;
                }
                Ok(())
            }
            Value::Object(map) => self.apply_object(map, loader, depth),
            other => Err(ContextError::Invalid(format!("a @context cannot be {other}"))),
        }
    }

    fn apply_object(
        &mut self,
        map: &Map<String, Value>,
        loader: &dyn DocumentLoader,
        depth: usize,
    ) -> Result<(), ContextError> {
        if let Some(import) = map.get("@import") {
            self.apply(import, loader, depth + 1)?;
        }
        if let Some(vocab) = map.get("@vocab") {
            self.vocab = match vocab {
                Value::Null => None,
                Value::String(v) => Some(self.resolve_iri(v, map, 0)?),
                other => return Err(ContextError::Invalid(format!("@vocab cannot be {other}"))),
            };
        }
        for (term, definition) in map {
            if term.starts_with('@') {
                continue;
            }
            match definition {
                Value::Null => {
                    self.terms.remove(term);
                }
                Value::String(iri) => {
                    let iri = self.resolve_definition_iri(term, iri, map)?;
                    self.terms.insert(term.clone(), TermDefinition { iri, type_mapping: None, container: None });
                }
                Value::Object(def) => {
                    let iri = match def.get("@id") {
                        Some(Value::String(iri)) => self.resolve_definition_iri(term, iri, map)?,
                        Some(Value::Null) => continue,
                        Some(other) => return Err(ContextError::Invalid(format!("@id of {term} cannot be {other}"))),
                        None => self.resolve_iri(term, map, 0)?,
                    };
                    let type_mapping = match def.get("@type") {
                        Some(Value::String(t)) => Some(match t.as_str() {
                            "@id" => TypeMapping::Id,
                            "@vocab" => TypeMapping::Vocab,
                            "@json" => TypeMapping::Json,
                            other => TypeMapping::Datatype(self.resolve_iri(other, map, 0)?),
                        }),
                        Some(other) => return Err(ContextError::Invalid(format!("@type of {term} cannot be {other}"))),
                        None => None,
                    };
                    let container = match def.get("@container") {
                        Some(Value::String(c)) => Some(c.clone()),
                        Some(Value::Array(cs)) => cs.iter().find_map(|c| c.as_str().map(str::to_owned)),
                        _ => None,
                    };
                    self.terms.insert(term.clone(), TermDefinition { iri, type_mapping, container });
                }
                other => return Err(ContextError::Invalid(format!("the definition of {term} cannot be {other}"))),
            }
        }
        Ok(())
    }

    fn resolve_definition_iri(
        &self,
        term: &str,
        iri: &str,
        local: &Map<String, Value>,
    ) -> Result<String, ContextError> {
        if iri == term {
            // "name": "name" means "expand me against @vocab", not a self-reference.
            return Ok(self.vocab_relative(term));
        }
        self.resolve_iri(iri, local, 0)
    }

    /// Expands an IRI written inside a context: a keyword, a compact IRI, a term of this context
    /// object or of the active context, an absolute IRI, or else a vocabulary-relative name.
    fn resolve_iri(&self, value: &str, local: &Map<String, Value>, depth: usize) -> Result<String, ContextError> {
        if depth > MAX_CONTEXT_DEPTH {
            return Err(ContextError::Invalid(format!("cyclic term definition around {value}")));
        }
        if value.starts_with('@') {
            return Ok(value.to_owned());
        }
        if let Some((prefix, suffix)) = value.split_once(':') {
            if suffix.starts_with("//") || prefix.is_empty() {
                return Ok(value.to_owned());
            }
            if let Some(base) = self.local_or_active_iri(prefix, local, depth)? {
                return Ok(format!("{base}{suffix}"));
            }
            return Ok(value.to_owned());
        }
        if let Some(iri) = self.local_or_active_iri(value, local, depth)? {
            return Ok(iri);
        }
        Ok(self.vocab_relative(value))
    }

    fn local_or_active_iri(
        &self,
        term: &str,
        local: &Map<String, Value>,
        depth: usize,
    ) -> Result<Option<String>, ContextError> {
        let local_iri = match local.get(term) {
            Some(Value::String(s)) => Some(s.as_str()),
            Some(Value::Object(o)) => o.get("@id").and_then(Value::as_str),
            _ => None,
        };
        match local_iri {
            Some(s) if s == term => Ok(Some(self.vocab_relative(term))),
            Some(s) => self.resolve_iri(s, local, depth + 1).map(Some),
            None => Ok(self.terms.get(term).map(|d| d.iri.clone())),
        }
    }

    fn vocab_relative(&self, term: &str) -> String {
        match &self.vocab {
            Some(vocab) => format!("{vocab}{term}"),
            None => term.to_owned(),
        }
    }

    fn index(&mut self) {
        let mut reverse: HashMap<String, String> = HashMap::with_capacity(self.terms.len());
        let mut prefixes = Vec::new();
        for (term, def) in &self.terms {
            if def.iri.starts_with('@') {
                continue;
            }
            match reverse.get(&def.iri) {
                Some(existing) if (existing.len(), existing.as_str()) <= (term.len(), term.as_str()) => {}
                _ => {
                    reverse.insert(def.iri.clone(), term.clone());
                }
            }
            if def.iri.ends_with(['/', '#', ':', '?', '@', '[', ']']) && !term.contains(':') {
                prefixes.push((def.iri.clone(), term.clone()));
            }
        }
        prefixes.sort_by(|a, b| b.0.len().cmp(&a.0.len()).then_with(|| a.1.cmp(&b.1)));
        self.reverse = reverse;
        self.prefixes = prefixes;
    }

    /// Expands an attribute name, an entity type or a `@vocab`-typed value to an IRI.
    pub fn expand_term<'a>(&self, term: &'a str) -> Cow<'a, str> {
        if let Some(def) = self.terms.get(term) {
            return Cow::Owned(def.iri.clone());
        }
        if let Some((prefix, suffix)) = term.split_once(':') {
            if !suffix.starts_with("//") {
                if let Some(def) = self.terms.get(prefix) {
                    return Cow::Owned(format!("{}{suffix}", def.iri));
                }
            }
            return Cow::Borrowed(term);
        }
        match &self.vocab {
            Some(vocab) => Cow::Owned(format!("{vocab}{term}")),
            None => Cow::Borrowed(term),
        }
    }

    /// Compacts an IRI to the best term of this context: an exact term, a vocabulary-relative
    /// name, a compact IRI, or the IRI itself.
    pub fn compact_iri<'a>(&self, iri: &'a str) -> Cow<'a, str> {
        if let Some(term) = self.reverse.get(iri) {
            return Cow::Owned(term.clone());
        }
        if let Some(vocab) = &self.vocab {
            if let Some(rest) = iri.strip_prefix(vocab.as_str()) {
                if !rest.is_empty() && !self.terms.contains_key(rest) {
                    return Cow::Owned(rest.to_owned());
                }
            }
        }
        for (prefix_iri, term) in &self.prefixes {
            if let Some(rest) = iri.strip_prefix(prefix_iri.as_str()) {
                if !rest.is_empty() {
                    let compact = format!("{term}:{rest}");
                    if !self.terms.contains_key(&compact) {
                        return Cow::Owned(compact);
                    }
                }
            }
        }
        Cow::Borrowed(iri)
    }

    pub fn term_definition(&self, term: &str) -> Option<&TermDefinition> {
        self.terms.get(term)
    }

    /// The definition of the term an IRI compacts to, for type coercion on output.
    pub fn definition_for_iri(&self, iri: &str) -> Option<&TermDefinition> {
        self.reverse.get(iri).and_then(|term| self.terms.get(term))
    }

    pub fn vocab(&self) -> Option<&str> {
        self.vocab.as_deref()
    }
}

fn collect_missing(value: &Value, loader: &dyn DocumentLoader, missing: &mut Vec<String>, depth: usize) {
    if depth > MAX_CONTEXT_DEPTH {
        return;
    }
    match value {
        Value::String(url) if !is_core_context_url(url) => match loader.load(url) {
            Some(doc) => {
                if let Some(inner) = doc.get("@context") {
                    collect_missing(inner, loader, missing, depth + 1);
                }
            }
            None => {
                if !missing.contains(url) {
                    missing.push(url.clone());
                }
            }
        },
        Value::Array(items) => items.iter().for_each(|i| collect_missing(i, loader, missing, depth + 1)),
        Value::Object(map) => {
            if let Some(import) = map.get("@import") {
                collect_missing(import, loader, missing, depth + 1);
            }
        }
        _ => {}
    }
}

/// The core context alone: [`Context::core`], under the name the crates have always called.
pub fn core_context() -> Arc<Context> {
    Context::core()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn user_terms_and_prefixes() {
        let user = json!({
            "ex": "http://example.org/ns#",
            "Vehicle": "ex:Vehicle",
            "speed": {"@id": "ex:speed", "@type": "@vocab"},
            "brandName": "http://example.org/brand"
        });
        let ctx = Context::build(&user, &NoDocuments).unwrap();
        assert_eq!(ctx.expand_term("Vehicle"), "http://example.org/ns#Vehicle");
        assert_eq!(ctx.expand_term("speed"), "http://example.org/ns#speed");
        assert_eq!(ctx.expand_term("ex:other"), "http://example.org/ns#other");
        assert_eq!(ctx.expand_term("unknown"), "https://uri.etsi.org/ngsi-ld/default-context/unknown");
        assert_eq!(ctx.expand_term("urn:x:y"), "urn:x:y");
        assert_eq!(ctx.compact_iri("http://example.org/ns#Vehicle"), "Vehicle");
        assert_eq!(ctx.compact_iri("http://example.org/ns#other"), "ex:other");
        assert_eq!(ctx.compact_iri("http://example.org/brand"), "brandName");
        assert_eq!(ctx.term_definition("speed").unwrap().type_mapping, Some(TypeMapping::Vocab));
    }

    #[test]
    fn remote_documents_and_imports() {
        let mut docs = HashMap::new();
        let user =
            json!(["http://ctx.test/a.jsonld", "https://uri.etsi.org/ngsi-ld/v1/ngsi-ld-core-context-v1.8.jsonld"]);
        assert_eq!(Context::missing_documents(&user, &docs), vec!["http://ctx.test/a.jsonld".to_string()]);
        assert_eq!(Context::build(&user, &docs).unwrap_err(), ContextError::Missing("http://ctx.test/a.jsonld".into()));
        docs.insert(
            "http://ctx.test/a.jsonld".to_string(),
            json!({"@context": ["http://ctx.test/b.jsonld", {"a": "http://a.test/a"}]}),
        );
        assert_eq!(Context::missing_documents(&user, &docs), vec!["http://ctx.test/b.jsonld".to_string()]);
        docs.insert("http://ctx.test/b.jsonld".to_string(), json!({"@context": {"b": "http://b.test/b"}}));
        let ctx = Context::build(&user, &docs).unwrap();
        assert_eq!(ctx.expand_term("a"), "http://a.test/a");
        assert_eq!(ctx.expand_term("b"), "http://b.test/b");
    }

    #[test]
    fn core_terms_win_over_user_redefinitions() {
        let ctx = Context::build(&json!({"location": "http://example.org/location"}), &NoDocuments).unwrap();
        assert_eq!(ctx.expand_term("location"), "https://uri.etsi.org/ngsi-ld/location");
    }

    #[test]
    fn self_named_terms_expand_against_vocab() {
        let ctx = Context::build(&json!({"@vocab": "http://v.test/", "name": "name"}), &NoDocuments).unwrap();
        assert_eq!(ctx.expand_term("name"), "http://v.test/name");
        assert_eq!(ctx.expand_term("other"), "http://v.test/other");
        assert_eq!(ctx.compact_iri("http://v.test/other"), "other");
    }

    #[test]
    fn invalid_contexts_are_reported() {
        assert!(matches!(Context::build(&json!(42), &NoDocuments), Err(ContextError::Invalid(_))));
        assert!(matches!(Context::build(&json!({"a": 3}), &NoDocuments), Err(ContextError::Invalid(_))));
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
        let core = Context::core();
        assert_eq!(core.expand_term("location"), "https://uri.etsi.org/ngsi-ld/location");
        assert_eq!(core.expand_term("Property"), "https://uri.etsi.org/ngsi-ld/Property");
        assert_eq!(core.expand_term("speed"), "https://uri.etsi.org/ngsi-ld/default-context/speed");
        assert_eq!(core.compact_iri("https://uri.etsi.org/ngsi-ld/default-context/speed"), "speed");
        assert_eq!(core.compact_iri("https://uri.etsi.org/ngsi-ld/location"), "location");
        assert_eq!(core.compact_iri("https://uri.etsi.org/ngsi-ld/somethingElse"), "ngsi-ld:somethingElse");
        assert_eq!(core.compact_iri("http://example.org/x"), "http://example.org/x");
    }
}
