//! The fuzz targets of cityhub's pure crates, one function each, shared by the libFuzzer
//! binaries (`fuzz_targets/`) and the stable replay harness (`examples/replay.rs`).
//!
//! Each target feeds arbitrary bytes to a parser or builder and, when it accepts, runs what the
//! hub runs next (evaluation, rendering). A panic, a stack overflow, or an error whose position
//! is not a character boundary of the input is a finding.

use std::collections::HashMap;
use std::sync::OnceLock;

use ngsild_core::expand::{expand_entity, validate_geometry};
use ngsild_core::render::{render_entity, render_entity_inline, Format, Join, RenderOptions};
use ngsild_core::Entity;
use ngsild_jsonld::{core_context, Context, NoDocuments};
use ngsild_query::projection::{parse_projection, projection_depth};
use ngsild_query::{GeoQuery, ParseError, QExpr, ScopeExpr, TypeExpr};
use serde_json::{json, Value};

/// A fuzz target: arbitrary bytes in, a panic on a finding.
pub type Target = fn(&[u8]);

/// Every target by name, for the replay harness.
pub const TARGETS: &[(&str, Target)] = &[
    ("q", q),
    ("scope_q", scope_q),
    ("types", types),
    ("geo", geo),
    ("projection", projection),
    ("context", context),
    ("expand", expand),
];

fn text(data: &[u8]) -> Option<&str> {
    std::str::from_utf8(data).ok()
}

/// A parse error must point into the input, on a character boundary.
fn check_position(input: &str, result: Result<(), &ParseError>) {
    if let Err(e) = result {
        assert!(
            e.position <= input.len() && input.is_char_boundary(e.position),
            "error position {} is not a char boundary of {input:?}: {e}",
            e.position
        );
    }
}

fn entity() -> &'static Entity {
    static ENTITY: OnceLock<Entity> = OnceLock::new();
    ENTITY.get_or_init(|| {
        let body = json!({
            "id": "urn:ngsi-ld:Building:1", "type": "Building", "scope": ["/Seoul/Jongno", "/A/B"],
            "name": {"type": "Property", "value": "서울 타워", "source": {"type": "Property", "value": "GPS"}},
            "height": {"type": "Property", "value": 300, "unitCode": "MTR", "observedAt": "2024-05-01T10:00:00Z"},
            "address": {"type": "Property", "value": {"city": "Seoul", "zip": {"code": "04637"}}},
            "tags": {"type": "Property", "value": ["tower", 1, true]},
            "locatedAt": {"type": "Relationship", "object": "urn:ngsi-ld:City:Seoul"},
            "street": {"type": "LanguageProperty", "languageMap": {"ko": "남산공원길", "en": "Namsan Park"}},
            "location": {"type": "GeoProperty", "value": {"type": "Point", "coordinates": [126.988, 37.551]}}
        });
        expand_entity(body.as_object().expect("an object"), &core_context()).expect("a valid entity").0
    })
}

pub fn q(data: &[u8]) {
    let Some(input) = text(data) else { return };
    let parsed = QExpr::parse(input, &core_context());
    check_position(input, parsed.as_ref().map(|_| ()));
    if let Ok(expr) = parsed {
        let _ = expr.matches(entity());
        let _ = expr.attribute_names();
        let _ = expr.conjuncts();
    }
}

pub fn scope_q(data: &[u8]) {
    let Some(input) = text(data) else { return };
    let parsed = ScopeExpr::parse(input);
    check_position(input, parsed.as_ref().map(|_| ()));
    if let Ok(expr) = parsed {
        let _ = expr.matches(&entity().scope);
    }
}

pub fn types(data: &[u8]) {
    let Some(input) = text(data) else { return };
    let parsed = TypeExpr::parse(input, &core_context());
    check_position(input, parsed.as_ref().map(|_| ()));
    if let Ok(expr) = parsed {
        let _ = expr.matches(&entity().types);
        let _ = expr.as_type_list();
    }
}

/// `georel`, `geometry` and `coordinates` on three lines; a fourth line is read as a GeoJSON
/// geometry on its own.
pub fn geo(data: &[u8]) {
    let Some(input) = text(data) else { return };
    let mut lines = input.splitn(4, '\n');
    let (georel, geometry, coordinates) =
        (lines.next().unwrap_or(""), lines.next().unwrap_or(""), lines.next().unwrap_or(""));
    let parsed = GeoQuery::parse(georel, geometry, coordinates, "https://uri.etsi.org/ngsi-ld/location");
    check_position(georel, parsed.as_ref().map(|_| ()));
    if let Ok(query) = parsed {
        let _ = query.matches(entity());
        let _ = query.search_box();
        let _ = query.matches_point(126.988, 37.551);
    }
    if let Some(Ok(value)) = lines.next().map(serde_json::from_str::<Value>) {
        if validate_geometry(&value).is_ok() {
            let _ = ngsild_query::geo::bounding_box(&value);
        }
    }
}

pub fn projection(data: &[u8]) {
    let Some(input) = text(data) else { return };
    let parsed = parse_projection(input);
    check_position(input, parsed.as_ref().map(|_| ()));
    if let Ok(items) = parsed {
        assert!(projection_depth(&items) <= ngsild_query::MAX_NESTING);
    }
}

/// Remote documents a fuzzed context may refer to (and import each other, in a cycle).
fn documents() -> &'static HashMap<String, Value> {
    static DOCS: OnceLock<HashMap<String, Value>> = OnceLock::new();
    DOCS.get_or_init(|| {
        HashMap::from([
            (
                "https://example.org/a.jsonld".to_owned(),
                json!({"@context": {"@import": "https://example.org/b.jsonld", "a": "https://example.org/a#"}}),
            ),
            (
                "https://example.org/b.jsonld".to_owned(),
                json!({"@context": ["https://example.org/a.jsonld", {"b": {"@id": "a:b", "@type": "@vocab"}}]}),
            ),
        ])
    })
}

/// The input is an `@context` value (JSON); the built context then expands and compacts.
pub fn context(data: &[u8]) {
    let Ok(value) = serde_json::from_slice::<Value>(data) else { return };
    let _ = Context::missing_documents(&value, documents());
    let _ = Context::build(&value, &NoDocuments);
    if let Ok(ctx) = Context::build(&value, documents()) {
        for term in ["a", "b", "name", "a:x", "@type", "location", "서울"] {
            let iri = ctx.expand_term(term).into_owned();
            let _ = ctx.compact_iri(&iri);
        }
    }
}

/// The input is an entity payload (JSON, with or without `@context`); an accepted one is
/// rendered in every format, and inline-joined to itself.
pub fn expand(data: &[u8]) {
    let Ok(Value::Object(body)) = serde_json::from_slice::<Value>(data) else { return };
    let ctx = match body.get("@context") {
        Some(user) => match Context::build(user, documents()) {
            Ok(ctx) => std::sync::Arc::new(ctx),
            Err(_) => return,
        },
        None => core_context(),
    };
    let Ok((entity, _)) = expand_entity(&body, &ctx) else { return };
    let linked = HashMap::from([(entity.id.clone(), entity.clone())]);
    for format in [Format::Normalized, Format::Concise, Format::KeyValues] {
        let opts = RenderOptions { format, sys_attrs: true, join: Some((Join::Inline, 3)), ..Default::default() };
        let _ = render_entity(&entity, &ctx, &opts);
        let _ = render_entity_inline(&entity, &ctx, &opts, &linked, 3);
    }
}
