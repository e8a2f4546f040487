//! What a context source is asked when the hub forwards a request to it (clause 4.3.6), and how
//! its refusal reads back: pure, so the wire client in `cityhub-http` only sends and receives.
//!
//! * [`narrowed`]: the client's query parameters as one source is asked them (normalized,
//!   paging from the first entity, `id`/`attrs` narrowed to the registration).
//! * [`query_body`]: the same parameters split between the URL and a Query body, for a source
//!   asked by `queryBatch`.
//! * [`query_string`]: the forwarded parameters as a query string whose ids and lists stay
//!   readable.
//! * [`source_error`]: a source's error as the hub reports it on.

use ngsild_core::expand::{entity_from_input, expand_fragment};
use ngsild_core::{Entity, ErrorKind, NgsiLdError};
use ngsild_jsonld::Context;
use serde_json::Value;

use crate::matching::{Operation, Target};

/// The client's query parameters as forwarded to one source: the representation is normalized
/// (the hub merges, then renders what the client asked for; aggregated history stays aggregated,
/// asked as `options=aggregatedValues`), paging starts at the first entity (the hub pages the
/// merged list), and a registration that names its entities or attributes narrows `id` and
/// `attrs`. Everything else — `type`, `q`, `scopeQ`, the geo-query, `lang`, `count`, and for
/// history `timerel`, `timeAt`, `endTimeAt`, `timeproperty`, `lastN`, `datasetId`,
/// `aggrMethods`, `aggrPeriodDuration` — goes as the client wrote it, in the client's @context.
pub fn narrowed(params: &[(String, String)], target: &Target<'_>, ctx: &Context) -> Vec<(String, String)> {
    let offset: usize = params.iter().rev().find(|(n, _)| n == "offset").and_then(|(_, v)| v.parse().ok()).unwrap_or(0);
    let mut out: Vec<(String, String)> = Vec::new();
    let mut options: Vec<&str> = Vec::new();
    for (name, value) in params {
        match name.as_str() {
            "local" | "csf" | "offset" | "join" | "joinLevel" | "pick" | "omit" => {}
            "format" if value == "aggregatedValues" => options.push("aggregatedValues"),
            "format" => {}
            "options" => options.extend(value.split(',').map(str::trim).filter(|o| {
                !matches!(*o, "keyValues" | "simplified" | "concise" | "normalized" | "temporalValues" | "")
            })),
            "limit" => {
                let limit: usize = value.parse().unwrap_or(0);
                out.push((name.clone(), (limit + offset).to_string()));
            }
            "attrs" if target.attrs.is_some() => {}
            "id" if target.ids.is_some() => {}
            _ => out.push((name.clone(), value.clone())),
        }
    }
    if !options.is_empty() {
        options.dedup();
        out.push(("options".to_owned(), options.join(",")));
    }
    // A query by id alone is not a query (clause 5.7.2): one that stands for a retrieval names
    // the registered types.
    let is_query = matches!(target.way, Operation::QueryEntity | Operation::QueryBatch | Operation::QueryTemporal);
    let selects = out.iter().any(|(n, _)| matches!(n.as_str(), "type" | "attrs" | "q" | "georel" | "scopeQ"));
    if is_query && !selects && !target.types.is_empty() && target.attrs.is_none() {
        let types: Vec<String> = target.types.iter().map(|t| ctx.compact_iri(t).into_owned()).collect();
        out.push(("type".to_owned(), types.join(",")));
    }
    if let Some(ids) = &target.ids {
        out.push(("id".to_owned(), ids.join(",")));
    }
    if let Some(attrs) = &target.attrs {
        let names: Vec<String> = attrs.iter().map(|a| ctx.compact_iri(a).into_owned()).collect();
        out.push(("attrs".to_owned(), names.join(",")));
    }
    out
}

/// Splits the parameters of a query forwarded as `queryBatch` into what stays in the URL
/// (paging and representation) and the Query body (clause 5.2.23) that carries the rest.
pub fn query_body(params: Vec<(String, String)>) -> (Vec<(String, String)>, Value) {
    let mut url = Vec::new();
    let mut body = serde_json::Map::new();
    body.insert("type".into(), Value::String("Query".into()));
    let (mut types, mut ids, mut id_pattern) = (None, Vec::new(), None);
    let mut geo = serde_json::Map::new();
    for (name, value) in params {
        match name.as_str() {
            "limit" | "count" | "options" | "local" => url.push((name, value)),
            "type" => types = Some(value),
            "id" => ids.extend(value.split(',').map(str::to_owned)),
            "idPattern" => id_pattern = Some(value),
            "attrs" => {
                body.insert(name, Value::Array(value.split(',').map(|a| Value::String(a.to_owned())).collect()));
            }
            "georel" | "geometry" | "geoproperty" => {
                geo.insert(name, Value::String(value));
            }
            "coordinates" => {
                geo.insert(name, serde_json::from_str(&value).unwrap_or(Value::String(value)));
            }
            _ => {
                body.insert(name, Value::String(value));
            }
        }
    }
    let selector = |id: Option<String>| {
        let mut s = serde_json::Map::new();
        if let Some(id) = id {
            s.insert("id".into(), Value::String(id));
        }
        if let Some(t) = &types {
            s.insert("type".into(), Value::String(t.clone()));
        }
        if let Some(p) = &id_pattern {
            s.insert("idPattern".into(), Value::String(p.clone()));
        }
        Value::Object(s)
    };
    let entities: Vec<Value> = if ids.is_empty() {
        vec![selector(None)].into_iter().filter(|s| s.as_object().is_some_and(|m| !m.is_empty())).collect()
    } else {
        ids.into_iter().map(|id| selector(Some(id))).collect()
    };
    if !entities.is_empty() {
        body.insert("entities".into(), Value::Array(entities));
    }
    if !geo.is_empty() {
        body.insert("geoQ".into(), Value::Object(geo));
    }
    (url, Value::Object(body))
}

/// What must be escaped in a forwarded query value; `:` `,` `/` `=` stay readable so that entity
/// ids and lists travel as clients write them.
const QUERY_VALUE: &percent_encoding::AsciiSet = &percent_encoding::CONTROLS
    .add(b' ')
    .add(b'"')
    .add(b'#')
    .add(b'%')
    .add(b'&')
    .add(b'+')
    .add(b'<')
    .add(b'>')
    .add(b'`')
    .add(b'{')
    .add(b'}')
    .add(b'|')
    .add(b'\\')
    .add(b'^')
    .add(b'[')
    .add(b']');

/// A query string (`?a=1&b=2`, empty for no pairs) as a request to a source carries it.
pub fn query_string(pairs: &[(String, String)]) -> String {
    if pairs.is_empty() {
        return String::new();
    }
    let encoded: Vec<String> = pairs
        .iter()
        .map(|(n, v)| {
            format!(
                "{}={}",
                percent_encoding::utf8_percent_encode(n, QUERY_VALUE),
                percent_encoding::utf8_percent_encode(v, QUERY_VALUE)
            )
        })
        .collect();
    format!("?{}", encoded.join("&"))
}

/// An error a context source reported, as the hub reports it on: of the type the source's
/// ProblemDetails names, else of the one its status stands for; the detail names the source.
pub fn source_error(registration_id: &str, status: u16, problem: Option<&Value>, detail: &str) -> NgsiLdError {
    let named = problem.and_then(|p| p.get("type")).and_then(Value::as_str).and_then(ErrorKind::from_type_uri);
    let kind = named.unwrap_or(match status {
        400 => ErrorKind::BadRequestData,
        404 => ErrorKind::ResourceNotFound,
        409 => ErrorKind::AlreadyExists,
        422 => ErrorKind::OperationNotSupported,
        508 => ErrorKind::LoopDetected,
        _ => ErrorKind::InternalError,
    });
    NgsiLdError::new(kind, format!("context source {registration_id}: {detail}"))
}

/// Reads a source's answer (entities in the context we sent: a list, or one entity) into stored
/// form; an entity that is not valid is left out and its error returned beside the others.
/// `Err` says what the whole answer is when it holds no entities at all.
pub fn read_entities(body: &[u8], ctx: &Context) -> Result<(Vec<Entity>, Vec<NgsiLdError>), String> {
    let value: Value = serde_json::from_slice(body).map_err(|e| format!("answered invalid JSON: {e}"))?;
    let items = match value {
        Value::Array(items) => items,
        one @ Value::Object(_) => vec![one],
        _ => return Err("answered something other than entities".to_owned()),
    };
    let (mut entities, mut invalid) = (Vec::with_capacity(items.len()), Vec::new());
    for item in items {
        let Some(map) = item.as_object() else { continue };
        let mut map = map.clone();
        map.remove("@context");
        match expand_fragment(&map, ctx).and_then(|input| entity_from_input(&input)) {
            Ok(entity) => entities.push(entity),
            Err(e) => invalid.push(e),
        }
    }
    Ok((entities, invalid))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registration::parse_registration;
    use crate::Registration;

    fn registration() -> Registration {
        let body = serde_json::json!({
            "id": "urn:ngsi-ld:ContextSourceRegistration:x",
            "type": "ContextSourceRegistration",
            "endpoint": "http://busan:1026",
            "information": [{"entities": [{"type": "Vehicle"}]}],
        });
        let body = body.as_object().expect("an object");
        parse_registration(body, &ngsild_jsonld::core_context(), "2026-01-01T00:00:00Z").expect("a registration")
    }

    fn pairs(items: &[(&str, &str)]) -> Vec<(String, String)> {
        items.iter().map(|(n, v)| ((*n).to_owned(), (*v).to_owned())).collect()
    }

    fn target<'r>(reg: &'r Registration, way: Operation) -> Target<'r> {
        Target { registration: reg, attrs: None, ids: None, types: Vec::new(), way }
    }

    #[test]
    fn forwarded_queries_keep_ids_and_lists_readable() {
        let pairs = pairs(&[
            ("type", "Vehicle"),
            ("id", "urn:ngsi-ld:Vehicle:1,urn:ngsi-ld:Vehicle:2"),
            ("q", "speed>10;brand==\"a b\""),
        ]);
        assert_eq!(
            query_string(&pairs),
            "?type=Vehicle&id=urn:ngsi-ld:Vehicle:1,urn:ngsi-ld:Vehicle:2&q=speed%3E10;brand==%22a%20b%22"
        );
        assert_eq!(query_string(&[]), "");
    }

    #[test]
    fn a_source_is_asked_from_the_first_entity_in_the_normalized_form() {
        let reg = registration();
        let ctx = ngsild_jsonld::core_context();
        let asked = pairs(&[
            ("type", "Vehicle"),
            ("offset", "10"),
            ("limit", "5"),
            ("options", "keyValues,sysAttrs"),
            ("format", "concise"),
            ("local", "false"),
            ("join", "inline"),
            ("q", "speed>1"),
        ]);
        let sent = narrowed(&asked, &target(&reg, Operation::QueryEntity), &ctx);
        assert_eq!(sent, pairs(&[("type", "Vehicle"), ("limit", "15"), ("q", "speed>1"), ("options", "sysAttrs")]));
        let aggregated =
            narrowed(&pairs(&[("format", "aggregatedValues")]), &target(&reg, Operation::QueryTemporal), &ctx);
        assert_eq!(aggregated, pairs(&[("options", "aggregatedValues")]));
    }

    #[test]
    fn a_registration_narrows_ids_attributes_and_names_its_types_for_a_query_by_id() {
        let reg = registration();
        let ctx = ngsild_jsonld::core_context();
        let mut t = target(&reg, Operation::QueryEntity);
        t.ids = Some(vec!["urn:a".to_owned()]);
        t.types = vec!["https://example.org/Vehicle".to_owned()];
        let sent = narrowed(&pairs(&[("id", "urn:a,urn:b")]), &t, &ctx);
        assert_eq!(sent, pairs(&[("type", "https://example.org/Vehicle"), ("id", "urn:a")]));
        t.attrs = Some(vec!["https://example.org/speed".to_owned()]);
        let sent = narrowed(&pairs(&[("attrs", "speed,brand"), ("type", "Vehicle")]), &t, &ctx);
        assert_eq!(sent, pairs(&[("type", "Vehicle"), ("id", "urn:a"), ("attrs", "https://example.org/speed")]));
        // A retrieval way asks by id as it is: no type added.
        let retrieval = target(&reg, Operation::RetrieveEntity);
        assert_eq!(narrowed(&pairs(&[("id", "urn:a")]), &retrieval, &ctx), pairs(&[("id", "urn:a")]));
    }

    #[test]
    fn a_query_body_carries_the_selection_and_the_url_keeps_paging() {
        let (url, body) = query_body(pairs(&[
            ("type", "Vehicle"),
            ("id", "urn:a,urn:b"),
            ("limit", "3"),
            ("attrs", "speed,brand"),
            ("georel", "near;maxDistance==10"),
            ("geometry", "Point"),
            ("coordinates", "[1,2]"),
            ("q", "speed>1"),
        ]));
        assert_eq!(url, pairs(&[("limit", "3")]));
        assert_eq!(
            body,
            serde_json::json!({
                "type": "Query",
                "attrs": ["speed", "brand"],
                "q": "speed>1",
                "entities": [{"id": "urn:a", "type": "Vehicle"}, {"id": "urn:b", "type": "Vehicle"}],
                "geoQ": {"georel": "near;maxDistance==10", "geometry": "Point", "coordinates": [1, 2]},
            })
        );
        let (_, body) = query_body(pairs(&[("idPattern", "urn:.*")]));
        assert_eq!(body, serde_json::json!({"type": "Query", "entities": [{"idPattern": "urn:.*"}]}));
    }

    #[test]
    fn a_source_error_keeps_its_type_or_takes_its_status_and_names_the_source() {
        let problem = serde_json::json!({"type": "https://uri.etsi.org/ngsi-ld/errors/AlreadyExists"});
        let e = source_error("urn:reg:1", 400, Some(&problem), "it is there");
        assert_eq!(e.kind, ErrorKind::AlreadyExists);
        assert_eq!(e.detail, "context source urn:reg:1: it is there");
        assert_eq!(source_error("r", 404, None, "x").kind, ErrorKind::ResourceNotFound);
        assert_eq!(source_error("r", 422, None, "x").kind, ErrorKind::OperationNotSupported);
        assert_eq!(source_error("r", 508, None, "x").kind, ErrorKind::LoopDetected);
        assert_eq!(source_error("r", 503, None, "x").kind, ErrorKind::InternalError);
    }

    #[test]
    fn a_sources_entities_are_read_and_the_invalid_ones_told_apart() {
        let ctx = ngsild_jsonld::core_context();
        let body = br#"[{"id": "urn:a", "type": "T", "@context": "x"}, {"type": "T"}, 3]"#;
        let (entities, invalid) = read_entities(body, &ctx).unwrap();
        assert_eq!(entities.iter().map(|e| e.id.as_str()).collect::<Vec<_>>(), vec!["urn:a"]);
        assert_eq!(invalid.len(), 1);
        let (one, _) = read_entities(br#"{"id": "urn:b", "type": "T"}"#, &ctx).unwrap();
        assert_eq!(one[0].id, "urn:b");
        assert!(read_entities(b"nope", &ctx).unwrap_err().starts_with("answered invalid JSON"));
        assert_eq!(read_entities(b"7", &ctx).unwrap_err(), "answered something other than entities");
    }
}
