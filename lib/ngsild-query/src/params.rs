//! The query parameters of entity retrieval and query read into what the store and the
//! renderer take: the [`EntityFilter`] (`id`, `idPattern`, `type`, `attrs`, `q`, `scopeQ`, a
//! geo-query, `orderBy`), the [`RenderOptions`] (`options`, `format`, `lang`, `attrs`, `pick`,
//! `omit`, `datasetId`, `join`/`joinLevel`), and a `Query` body (clause 5.2.23) as parameters.

use ngsild_core::limits::MAX_JOIN_LEVEL;
use ngsild_core::params::Params;
use ngsild_core::render::{Format, Join, Projection, RenderOptions};
use ngsild_core::validate::check_uri;
use ngsild_core::NgsiLdError;
use ngsild_jsonld::Context;
use serde_json::{Map, Value};

use crate::projection::{parse_projection, projection_depth, ProjectionItem};
use crate::{EntityFilter, GeoQuery, QExpr, ScopeExpr, TypeExpr};

/// Adds the terms of a `Query` body (clause 5.2.23) to `params`, as the query string would carry
/// them; the GET and POST forms of a query then share one reading of their parameters.
pub fn push_query_body(query: &Map<String, Value>, params: &mut Params) {
    let text = |v: &Value| match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    for (key, value) in query {
        match key.as_str() {
            "entities" => {
                // Several selectors widen the query: their types and ids are alternatives.
                let (mut types, mut ids) = (Vec::new(), Vec::new());
                for selector in value.as_array().into_iter().flatten() {
                    if let Some(t) = selector.get("type") {
                        types.push(text(t));
                    }
                    if let Some(id) = selector.get("id") {
                        ids.push(text(id));
                    }
                    if let Some(p) = selector.get("idPattern") {
                        params.push(("idPattern".to_owned(), text(p)));
                    }
                }
                if !types.is_empty() {
                    params.push(("type".to_owned(), types.join(",")));
                }
                if !ids.is_empty() {
                    params.push(("id".to_owned(), ids.join(",")));
                }
            }
            "attrs" | "pick" | "omit" => params.push((
                key.clone(),
                value
                    .as_array()
                    .map(|a| a.iter().map(text).collect::<Vec<_>>().join(","))
                    .unwrap_or_else(|| text(value)),
            )),
            "q" | "scopeQ" | "lang" | "join" | "joinLevel" => params.push((key.clone(), text(value))),
            "geoQ" => {
                for member in ["georel", "geometry", "geoproperty"] {
                    if let Some(v) = value.get(member) {
                        params.push((member.to_owned(), text(v)));
                    }
                }
                if let Some(c) = value.get("coordinates") {
                    params.push(("coordinates".to_owned(), c.to_string()));
                }
            }
            "temporalQ" => {
                for member in ["timerel", "timeAt", "endTimeAt", "timeproperty", "lastN"] {
                    if let Some(v) = value.get(member) {
                        params.push((member.to_owned(), text(v)));
                    }
                }
            }
            _ => {}
        }
    }
}

/// Builds an [`EntityFilter`] from query parameters.
pub fn entity_filter(params: &Params, ctx: &Context) -> Result<EntityFilter, NgsiLdError> {
    let mut filter = EntityFilter::default();
    if let Some(ids) = params.get("id") {
        for id in ids.split(',') {
            check_uri(id, "the entity id")?;
            filter.ids.push(id.to_owned());
        }
    }
    if let Some(pattern) = params.get("idPattern") {
        // Doubled quantifiers are accepted by Rust's engine but not by the ECMAScript/POSIX ones
        // clients write their patterns for; refusing them keeps a pattern's meaning portable.
        let doubled = ["**", "++", "*+", "+*", "?*", "*?*"].iter().any(|q| pattern.contains(q));
        let regex = regex::Regex::new(pattern).ok().filter(|_| !doubled);
        filter.id_pattern =
            Some(regex.ok_or_else(|| NgsiLdError::bad_request(format!("invalid idPattern {pattern:?}")))?);
    }
    if let Some(types) = params.get("type") {
        filter.types =
            Some(TypeExpr::parse(types, ctx).map_err(|e| NgsiLdError::bad_request(format!("invalid type: {e}")))?);
    }
    if let Some(attrs) = params.get("attrs") {
        for name in attrs.split(',').map(str::trim) {
            if matches!(name, "id" | "type" | "scope" | "@context") {
                return Err(NgsiLdError::bad_request(format!("{name} is not an attribute")));
            }
            filter.attrs.push(ngsild_core::expand::expand_attribute_name(name, ctx)?);
        }
    }
    if let Some(q) = params.get("q") {
        filter.q = Some(QExpr::parse(q, ctx).map_err(|e| NgsiLdError::bad_request(format!("invalid q: {e}")))?);
    }
    if let Some(scope_q) = params.get("scopeQ") {
        filter.scope_q =
            Some(ScopeExpr::parse(scope_q).map_err(|e| NgsiLdError::bad_request(format!("invalid scopeQ: {e}")))?);
    }
    match (params.get("georel"), params.get("geometry"), params.get("coordinates")) {
        (None, None, None) => {}
        (Some(georel), Some(geometry), Some(coordinates)) => {
            let geoproperty = ctx.expand_term(params.get("geoproperty").unwrap_or("location")).into_owned();
            filter.geo = Some(
                GeoQuery::parse(georel, geometry, coordinates, &geoproperty)
                    .map_err(|e| NgsiLdError::bad_request(format!("invalid geo-query: {e}")))?,
            );
        }
        _ => return Err(NgsiLdError::bad_request("a geo-query needs georel, geometry and coordinates together")),
    }
    if let Some(order) = params.get("orderBy") {
        filter.order = Some(
            crate::OrderBy::parse(order, ctx).map_err(|e| NgsiLdError::bad_request(format!("invalid orderBy: {e}")))?,
        );
    }
    Ok(filter)
}

/// Output options shared by retrieval and query: `options`, `format`, `lang`, `attrs`, `pick`,
/// `omit`.
pub fn render_options(params: &Params, ctx: &Context) -> Result<RenderOptions, NgsiLdError> {
    let mut format = Format::Normalized;
    let mut sys_attrs = false;
    for option in params.options() {
        match option {
            "keyValues" | "simplified" => format = Format::KeyValues,
            "concise" => format = Format::Concise,
            "normalized" => format = Format::Normalized,
            "sysAttrs" => sys_attrs = true,
            "" => {}
            // Options of other operations are tolerated here (clients send them freely).
            "noOverwrite" | "replace" | "update" | "temporalValues" | "aggregatedValues" => {}
            other => return Err(NgsiLdError::invalid_request(format!("unknown option {other:?}"))),
        }
    }
    if let Some(f) = params.get("format") {
        format = match f {
            "keyValues" | "simplified" => Format::KeyValues,
            "concise" => Format::Concise,
            "normalized" => Format::Normalized,
            other => return Err(NgsiLdError::invalid_request(format!("unknown format {other:?}"))),
        };
    }
    let attrs = params
        .list("attrs")?
        .map(|names| names.iter().map(|n| projected_name(n, ctx)).collect::<Result<Vec<_>, _>>())
        .transpose()?;
    let pick = projection_list(params, "pick")?;
    let omit = projection_list(params, "omit")?;
    let given = [attrs.is_some(), pick.is_some(), omit.is_some()].iter().filter(|g| **g).count();
    if given > 1 {
        return Err(NgsiLdError::bad_request("attrs, pick and omit cannot be combined"));
    }
    let join = join(params)?;
    let depth = pick.as_deref().or(omit.as_deref()).map(projection_depth).unwrap_or(0);
    match join {
        None if depth > 0 => {
            return Err(NgsiLdError::bad_request("a projection into linked entities needs join=inline or flat"))
        }
        Some((_, level)) if depth > level as usize => {
            return Err(NgsiLdError::bad_request(format!(
                "the projection reaches {depth} linked levels deep, beyond joinLevel={level}"
            )))
        }
        _ => {}
    }
    let dataset_ids = params
        .list("datasetId")?
        .map(|ids| ids.into_iter().map(|id| if id == "@none" { None } else { Some(id) }).collect::<Vec<_>>());
    let mut projection = match (attrs, pick, omit) {
        (Some(only), _, _) => Projection { only: Some(only), ..Default::default() },
        (_, Some(pick), _) => picked(&pick, ctx)?,
        (_, _, Some(omit)) => omitted(&omit, ctx)?,
        _ => Projection::default(),
    };
    projection.dataset_ids = dataset_ids;
    Ok(RenderOptions { format, sys_attrs, lang: params.get("lang").map(str::to_owned), projection, join })
}

/// `join` and `joinLevel` (default 1, at most [`MAX_JOIN_LEVEL`]) of Linked Entity retrieval.
fn join(params: &Params) -> Result<Option<(Join, u32)>, NgsiLdError> {
    let join = match params.get("join") {
        None | Some("") => return Ok(None),
        Some("inline") => Join::Inline,
        Some("flat") => Join::Flat,
        Some(other) => return Err(NgsiLdError::bad_request(format!("join must be inline or flat, not {other:?}"))),
    };
    let level =
        match params.get("joinLevel") {
            None => 1,
            Some(level) => level.parse::<u32>().ok().filter(|l| *l > 0).ok_or_else(|| {
                NgsiLdError::bad_request(format!("joinLevel must be a positive integer, not {level:?}"))
            })?,
        };
    if level > MAX_JOIN_LEVEL {
        return Err(NgsiLdError::bad_request(format!(
            "joinLevel={level} is beyond the limit of this hub, {MAX_JOIN_LEVEL}; ask for at most {MAX_JOIN_LEVEL} levels"
        )));
    }
    Ok(Some((join, level)))
}

fn projection_list(params: &Params, name: &str) -> Result<Option<Vec<ProjectionItem>>, NgsiLdError> {
    params
        .get(name)
        .map(|raw| parse_projection(raw).map_err(|e| NgsiLdError::bad_request(format!("invalid {name}: {e}"))))
        .transpose()
}

fn projected_name(name: &str, ctx: &Context) -> Result<String, NgsiLdError> {
    ngsild_core::validate::check_name(name, "attribute")?;
    Ok(match name {
        "id" | "type" | "scope" => name.to_owned(),
        _ => ctx.expand_term(name).into_owned(),
    })
}

/// `pick`: only these members; an item with braces is picked and projects its linked Entity.
fn picked(items: &[ProjectionItem], ctx: &Context) -> Result<Projection, NgsiLdError> {
    let mut projection = Projection { only: Some(Vec::new()), strict_core: true, ..Default::default() };
    for item in items {
        let name = projected_name(&item.name, ctx)?;
        if let Some(nested) = &item.nested {
            projection.linked.push((name.clone(), picked(nested, ctx)?));
        }
        projection.only.get_or_insert_with(Vec::new).push(name);
    }
    Ok(projection)
}

/// `omit`: never these members; an item with braces is kept and only projects its linked Entity.
fn omitted(items: &[ProjectionItem], ctx: &Context) -> Result<Projection, NgsiLdError> {
    let mut projection = Projection::default();
    for item in items {
        let name = projected_name(&item.name, ctx)?;
        match &item.nested {
            Some(nested) => projection.linked.push((name, omitted(nested, ctx)?)),
            None => projection.omit.push(name),
        }
    }
    Ok(projection)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn params(pairs: &[(&str, &str)]) -> Params {
        Params::from_pairs(pairs.iter().map(|(n, v)| (n.to_string(), v.to_string())).collect())
    }

    #[test]
    fn a_query_body_reads_as_its_parameters() {
        let body = json!({"entities": [{"type": "A"}, {"type": "B", "id": "urn:x"}], "q": "p>1", "attrs": ["p", "r"]});
        let mut p = Params::default();
        push_query_body(body.as_object().unwrap(), &mut p);
        assert_eq!(p.get("type"), Some("A,B"));
        assert_eq!(p.get("id"), Some("urn:x"));
        assert_eq!(p.get("q"), Some("p>1"));
        assert_eq!(p.get("attrs"), Some("p,r"));
    }

    #[test]
    fn the_filter_expands_names_and_says_what_is_wrong() {
        let ctx = Context::core();
        let filter = entity_filter(&params(&[("type", "Vehicle"), ("attrs", "speed")]), &ctx).unwrap();
        assert!(filter.types.is_some());
        assert_eq!(filter.attrs, vec![ctx.expand_term("speed").into_owned()]);
        let err = entity_filter(&params(&[("attrs", "id")]), &ctx).unwrap_err();
        assert!(err.detail.contains("id is not an attribute"), "{}", err.detail);
        let err = entity_filter(&params(&[("georel", "near;maxDistance==1")]), &ctx).unwrap_err();
        assert!(err.detail.contains("georel, geometry and coordinates together"), "{}", err.detail);
        let err = entity_filter(&params(&[("idPattern", "a**")]), &ctx).unwrap_err();
        assert!(err.detail.contains("invalid idPattern"), "{}", err.detail);
    }

    #[test]
    fn render_options_refuse_what_cannot_combine() {
        let ctx = Context::core();
        let opts = render_options(&params(&[("options", "keyValues,sysAttrs"), ("lang", "fr")]), &ctx).unwrap();
        assert_eq!(opts.format, Format::KeyValues);
        assert!(opts.sys_attrs);
        assert_eq!(opts.lang.as_deref(), Some("fr"));
        let err = render_options(&params(&[("attrs", "a"), ("pick", "b")]), &ctx).unwrap_err();
        assert!(err.detail.contains("cannot be combined"), "{}", err.detail);
        let err = render_options(&params(&[("pick", "a{b}")]), &ctx).unwrap_err();
        assert!(err.detail.contains("needs join=inline or flat"), "{}", err.detail);
        let err = render_options(&params(&[("join", "flat"), ("joinLevel", "99")]), &ctx).unwrap_err();
        assert!(err.detail.contains("beyond the limit"), "{}", err.detail);
        let err = render_options(&params(&[("options", "bogus")]), &ctx).unwrap_err();
        assert_eq!(err.kind, ngsild_core::ErrorKind::InvalidRequest);
    }
}
