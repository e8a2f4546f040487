//! Property tests of JSON-LD context building and entity expansion/rendering, run by
//! `cargo test` on stable: arbitrary JSON never panics either, and values nested as deep as a
//! request body can be (serde_json refuses more than 128 levels) expand and render, or are
//! refused at the limits of `ngsild_core::limits`; whatever is accepted reads back once stored.

use std::collections::HashMap;

use ngsild_core::expand::{expand_entity, validate_geometry};
use ngsild_core::render::{render_entity, render_entity_inline, Format, Join, RenderOptions};
use ngsild_jsonld::{core_context, Context};
use proptest::prelude::*;
use serde_json::{json, Map, Value};

fn config() -> ProptestConfig {
    ProptestConfig { cases: 1_000, failure_persistence: None, ..ProptestConfig::default() }
}

/// JSON built from the members and values that mean something to NGSI-LD and JSON-LD.
fn json_value() -> impl Strategy<Value = Value> {
    let key = prop::sample::select(vec![
        "id",
        "type",
        "value",
        "object",
        "objectList",
        "languageMap",
        "valueList",
        "vocab",
        "@context",
        "@id",
        "@type",
        "@vocab",
        "@import",
        "@container",
        "observedAt",
        "datasetId",
        "unitCode",
        "scope",
        "coordinates",
        "geometries",
        "name",
        "서울",
        "a:b",
        "x",
    ])
    .prop_map(str::to_owned);
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i32>().prop_map(Value::from),
        prop::sample::select(vec![
            "Property",
            "Relationship",
            "GeoProperty",
            "LanguageProperty",
            "VocabProperty",
            "ListProperty",
            "ListRelationship",
            "JsonProperty",
            "Point",
            "Polygon",
            "GeometryCollection",
            "urn:ngsi-ld:T:1",
            "https://example.org/",
            "2024-01-01T00:00:00Z",
            "@id",
            "@vocab",
            "@json",
            "a:",
            "",
            "서울\u{3000}",
            "https://example.org/a.jsonld",
        ])
        .prop_map(Value::from),
    ];
    leaf.prop_recursive(6, 64, 5, move |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..5).prop_map(Value::Array),
            prop::collection::vec((key.clone(), inner), 0..6)
                .prop_map(|members| Value::Object(members.into_iter().collect::<Map<_, _>>())),
        ]
    })
}

fn documents() -> HashMap<String, Value> {
    HashMap::from([(
        "https://example.org/a.jsonld".to_owned(),
        json!({"@context": {"@import": "https://example.org/a.jsonld", "a": "https://example.org/a#"}}),
    )])
}

fn render_all(entity: &ngsild_core::Entity, ctx: &Context) {
    let linked = HashMap::from([(entity.id.clone(), entity.clone())]);
    for format in [Format::Normalized, Format::Concise, Format::KeyValues] {
        let opts = RenderOptions { format, sys_attrs: true, join: Some((Join::Inline, 3)), ..Default::default() };
        let _ = render_entity(entity, ctx, &opts);
        let _ = render_entity_inline(entity, ctx, &opts, &linked, 3);
    }
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn contexts_build_or_fail_cleanly(value in json_value()) {
        let docs = documents();
        let _ = Context::missing_documents(&value, &docs);
        if let Ok(ctx) = Context::build(&value, &docs) {
            for term in ["a", "x", "name", "a:b", "서울"] {
                let iri = ctx.expand_term(term).into_owned();
                let _ = ctx.compact_iri(&iri);
            }
        }
    }

    #[test]
    fn entities_expand_and_render_or_fail_cleanly(members in json_value(), attr in json_value()) {
        let mut body = match members {
            Value::Object(map) => map,
            _ => Map::new(),
        };
        body.insert("id".into(), json!("urn:ngsi-ld:T:1"));
        body.insert("type".into(), json!("T"));
        body.insert("attr".into(), attr.clone());
        let _ = validate_geometry(&attr);
        let ctx = core_context();
        if let Ok((entity, _)) = expand_entity(&body, &ctx) {
            render_all(&entity, &ctx);
        }
    }

    /// Compound values and nested sub-attributes as deep as serde_json lets a body be.
    #[test]
    fn deep_values_expand_and_render(depth in 1usize..120) {
        let mut value = json!("leaf");
        for _ in 0..depth {
            value = json!({"k": [value]});
        }
        let text = json!({"id": "urn:ngsi-ld:T:1", "type": "T", "p": {"type": "Property", "value": value}}).to_string();
        if let Ok(Value::Object(body)) = serde_json::from_str::<Value>(&text) {
            let ctx = core_context();
            // Each round adds an object and an array.
            let accepted = 2 * depth <= ngsild_core::limits::MAX_VALUE_NESTING;
            match expand_entity(&body, &ctx) {
                Ok((entity, _)) => {
                    prop_assert!(accepted, "depth {depth} accepted");
                    render_all(&entity, &ctx);
                    let stored = serde_json::to_string(&entity).unwrap();
                    prop_assert!(serde_json::from_str::<ngsild_core::Entity>(&stored).is_ok());
                }
                Err(e) => prop_assert!(!accepted && e.detail.contains("64 levels"), "depth {depth}: {e:?}"),
            }
        }
        let mut collection = json!({"type": "Point", "coordinates": [0, 0]});
        for _ in 0..depth / 2 {
            collection = json!({"type": "GeometryCollection", "geometries": [collection]});
        }
        let result = validate_geometry(&collection);
        prop_assert_eq!(result.is_ok(), depth / 2 <= ngsild_core::limits::MAX_NESTING, "{:?}", result);
    }
}

/// Whatever expansion accepts is stored and read back: nesting past the limits is refused at
/// expansion instead of being stored as a document serde_json cannot read again.
#[test]
fn accepted_entities_read_back_from_their_stored_form() {
    use ngsild_core::limits::{MAX_SUB_ATTRIBUTE_NESTING, MAX_VALUE_NESTING};
    for subs in [0, MAX_SUB_ATTRIBUTE_NESTING, MAX_SUB_ATTRIBUTE_NESTING + 1, 100] {
        for value_depth in [0, MAX_VALUE_NESTING, MAX_VALUE_NESTING + 1] {
            let mut value = json!(1);
            for _ in 0..value_depth {
                value = json!([value]);
            }
            let mut attr = json!({"type": "Property", "value": value});
            for _ in 0..subs {
                attr = json!({"type": "Property", "value": 1, "s": attr});
            }
            let text = json!({"id": "urn:ngsi-ld:T:1", "type": "T", "p": attr}).to_string();
            let Ok(Value::Object(body)) = serde_json::from_str::<Value>(&text) else { continue };
            let result = expand_entity(&body, &core_context());
            let allowed = subs <= MAX_SUB_ATTRIBUTE_NESTING && value_depth <= MAX_VALUE_NESTING;
            match result {
                Ok((entity, _)) => {
                    assert!(allowed, "{subs} sub-attribute levels, value depth {value_depth} accepted");
                    let stored = serde_json::to_string(&entity).unwrap();
                    let journal = json!({"before": entity, "after": entity}).to_string();
                    assert!(serde_json::from_str::<ngsild_core::Entity>(&stored).is_ok());
                    assert!(serde_json::from_str::<Value>(&journal).is_ok());
                }
                Err(e) => {
                    assert!(!allowed, "{subs}/{value_depth}: {e:?}");
                    assert!(e.detail.contains("the limit of this hub"), "{e:?}");
                }
            }
        }
    }
}

/// The deepest answer the limits allow (an inline join MAX_JOIN_LEVEL hops deep, ending in an
/// entity whose attribute has the deepest value and sub-attributes), wrapped as a notification
/// message is in the outbox, still reads back with serde_json.
#[test]
fn the_deepest_rendering_the_limits_allow_reads_back() {
    use ngsild_core::limits::{MAX_JOIN_LEVEL, MAX_SUB_ATTRIBUTE_NESTING, MAX_VALUE_NESTING};
    let ctx = core_context();
    let hops = MAX_JOIN_LEVEL as usize;
    let mut linked = HashMap::new();
    let mut root = None;
    for n in 0..=hops {
        let mut body = json!({"id": format!("urn:ngsi-ld:N:{n}"), "type": "N"});
        if n < hops {
            // A list of objects embeds an entityList: one level more per hop than a single object.
            body["next"] = json!({"type": "Relationship", "object": [format!("urn:ngsi-ld:N:{}", n + 1)]});
        } else {
            let mut value = json!(1);
            for _ in 0..MAX_VALUE_NESTING {
                value = json!([value]);
            }
            let mut attr = json!({"type": "Property", "value": value});
            for _ in 0..MAX_SUB_ATTRIBUTE_NESTING {
                attr = json!({"type": "Property", "value": 1, "s": attr});
            }
            body["deep"] = attr;
        }
        let (entity, _) = expand_entity(body.as_object().unwrap(), &ctx).unwrap();
        if n == 0 {
            root = Some(entity.clone());
        }
        linked.insert(entity.id.clone(), entity);
    }
    let opts = RenderOptions { join: Some((Join::Inline, MAX_JOIN_LEVEL)), ..Default::default() };
    let rendered = render_entity_inline(root.as_ref().unwrap(), &ctx, &opts, &linked, MAX_JOIN_LEVEL);
    let message = json!({"endpoint": "x", "message": {"headers": {}, "body": {"data": [rendered]}}});
    let text = message.to_string();
    let depth = ngsild_core::limits::json_depth(&message);
    assert!(serde_json::from_str::<Value>(&text).is_ok(), "{depth} levels do not read back");
    println!("deepest rendering: {depth} levels");
    assert!(depth < 128, "{depth}");
}
