//! From the stored form to what a client reads: normalized, concise or keyValues (clause 4.5),
//! names compacted with the client's @context, system attributes on request, language maps
//! resolved to one language when asked.

use std::collections::{HashMap, HashSet, VecDeque};

use ngsild_jsonld::{Context, TypeMapping};
use serde_json::{Map, Value};

use crate::model::{Attribute, AttributeKind, Entity};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Format {
    #[default]
    Normalized,
    Concise,
    KeyValues,
}

/// Which members of an entity to show. Names are expanded IRIs, except the core members `id`,
/// `type`, `scope` which `pick` and `omit` may name directly.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Projection {
    /// `attrs` / `pick` attribute names: only these (None = all).
    pub only: Option<Vec<String>>,
    /// `omit`: never these.
    pub omit: Vec<String>,
    /// With `pick`, `id` and `type` are shown only when picked; with `attrs` they always are.
    pub strict_core: bool,
    /// `datasetId`: only instances with one of these datasetIds (None = the default instance).
    pub dataset_ids: Option<Vec<Option<String>>>,
    /// `pick=locatedAt{name}` / `omit=locatedAt{name}`: the projection of the Entities a
    /// relationship links to, by expanded relationship name; unnamed relationships show them whole.
    pub linked: Vec<(String, Projection)>,
}

impl Projection {
    pub fn includes(&self, name: &str) -> bool {
        self.only.as_ref().is_none_or(|only| only.iter().any(|n| n == name)) && !self.omit.iter().any(|n| n == name)
    }

    pub fn includes_core_member(&self, member: &str) -> bool {
        let picked = !self.strict_core || self.only.as_ref().is_none_or(|only| only.iter().any(|n| n == member));
        picked && !self.omit.iter().any(|n| n == member)
    }

    fn includes_instance(&self, attr: &Attribute) -> bool {
        self.dataset_ids.as_ref().is_none_or(|ids| ids.contains(&attr.dataset_id))
    }

    /// The projection of the Entities the relationship `name` links to.
    pub fn for_linked(&self, name: &str) -> Projection {
        self.linked.iter().find(|(n, _)| n == name).map(|(_, p)| p.clone()).unwrap_or_default()
    }
}

/// Linked Entity retrieval (clause 4.5.23): the Entities that shown relationships point to are
/// embedded in the relationship (`inline`) or listed after the Entities asked for (`flat`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Join {
    Inline,
    Flat,
}

/// Ids of the Entities that the relationships shown under `proj` point to, each with the
/// projection to show it with, in attribute order.
pub fn link_targets(entity: &Entity, proj: &Projection) -> Vec<(String, Projection)> {
    let mut targets = Vec::new();
    for (name, instances) in &entity.attrs {
        if !proj.includes(name) {
            continue;
        }
        for attr in instances.iter().filter(|a| proj.includes_instance(a)) {
            for id in relationship_objects(attr) {
                targets.push((id.to_owned(), proj.for_linked(name)));
            }
        }
    }
    targets
}

fn relationship_objects(attr: &Attribute) -> Vec<&str> {
    match attr.kind {
        AttributeKind::Relationship => match &attr.value {
            Value::String(id) => vec![id.as_str()],
            Value::Array(ids) => ids.iter().filter_map(Value::as_str).collect(),
            _ => Vec::new(),
        },
        AttributeKind::ListRelationship => attr
            .value
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|item| item.get("object").unwrap_or(item).as_str())
            .collect(),
        _ => Vec::new(),
    }
}

/// For `join=flat`: the linked Entities to list after `roots`, breadth first up to `levels` hops,
/// each once and never one of the roots, with the projection it was reached with.
pub fn flat_linked<'a>(
    roots: &[(&Entity, &Projection)],
    linked: &'a HashMap<String, Entity>,
    levels: u32,
) -> Vec<(&'a Entity, Projection)> {
    let mut seen: HashSet<&str> = roots.iter().map(|(e, _)| e.id.as_str()).collect();
    let mut queue: VecDeque<(String, Projection, u32)> = VecDeque::new();
    for (entity, proj) in roots {
        queue.extend(link_targets(entity, proj).into_iter().map(|(id, p)| (id, p, 1)));
    }
    let mut out = Vec::new();
    while let Some((id, proj, level)) = queue.pop_front() {
        let Some(entity) = linked.get(&id) else { continue };
        if level > levels || !seen.insert(entity.id.as_str()) {
            continue;
        }
        queue.extend(link_targets(entity, &proj).into_iter().map(|(id, p)| (id, p, level + 1)));
        out.push((entity, proj));
    }
    out
}

#[derive(Debug, Clone, Default)]
pub struct RenderOptions {
    pub format: Format,
    pub sys_attrs: bool,
    /// `lang`: a language preference list (`fr`, `en,fr;q=0.5`, `*`).
    pub lang: Option<String>,
    pub projection: Projection,
    /// `join` with its `joinLevel`: Linked Entity retrieval, when asked for.
    pub join: Option<(Join, u32)>,
}

/// Renders an entity as a JSON object (without `@context`; the caller adds it where it belongs).
pub fn render_entity(entity: &Entity, ctx: &Context, opts: &RenderOptions) -> Map<String, Value> {
    render_entity_inline(entity, ctx, opts, &HashMap::new(), 0)
}

/// Renders an entity with the Entities its shown relationships point to embedded, `levels` hops
/// deep, where `linked` holds them (`join=inline`). An Entity is never embedded inside itself:
/// a relationship back to one of the Entities it is nested in (a cycle) shows without `entity`,
/// so each Entity appears at most once on any path and the nesting is at most `levels` deep
/// (callers cap it at [`crate::limits::MAX_JOIN_LEVEL`]).
pub fn render_entity_inline(
    entity: &Entity,
    ctx: &Context,
    opts: &RenderOptions,
    linked: &HashMap<String, Entity>,
    levels: u32,
) -> Map<String, Value> {
    let mut ancestors = Vec::new();
    render_inline(entity, ctx, opts, linked, levels, &mut ancestors)
}

fn render_inline<'a>(
    entity: &'a Entity,
    ctx: &Context,
    opts: &RenderOptions,
    linked: &'a HashMap<String, Entity>,
    levels: u32,
    ancestors: &mut Vec<&'a str>,
) -> Map<String, Value> {
    ancestors.push(entity.id.as_str());
    let proj = &opts.projection;
    let core = CoreMembers { id: &entity.id, types: &entity.types, scope: &entity.scope };
    let system_times =
        (opts.sys_attrs && opts.format != Format::KeyValues).then_some((&entity.created_at, &entity.modified_at));
    let mut out = render_core_members(&core, system_times, ctx, proj);
    for (name, instances) in &entity.attrs {
        if !proj.includes(name) {
            continue;
        }
        let rendered: Vec<Value> = instances
            .iter()
            .filter(|a| proj.includes_instance(a))
            .map(|a| {
                let mut value = render_attribute(a, ctx, opts);
                if levels > 0 {
                    embed_linked(&mut value, a, name, ctx, opts, linked, levels, ancestors);
                }
                value
            })
            .collect();
        if rendered.is_empty() {
            continue;
        }
        out.insert(ctx.compact_iri(name).into_owned(), one_or_many(rendered));
    }
    ancestors.pop();
    out
}

/// Embeds the Entities a rendered relationship points to: as `entity` / `entityList` members, or
/// in keyValues as the relationship's value itself.
#[allow(clippy::too_many_arguments, reason = "one hop of a linked-entity walk carries its whole state")]
fn embed_linked<'a>(
    rendered: &mut Value,
    attr: &Attribute,
    name: &str,
    ctx: &Context,
    opts: &RenderOptions,
    linked: &'a HashMap<String, Entity>,
    levels: u32,
    ancestors: &mut Vec<&'a str>,
) {
    let objects = relationship_objects(attr);
    if objects.is_empty() {
        return;
    }
    let linked_opts = RenderOptions { projection: opts.projection.for_linked(name), ..opts.clone() };
    let targets: Vec<&'a Entity> =
        objects.iter().filter(|id| !ancestors.contains(id)).filter_map(|id| linked.get(*id)).collect();
    let entities: Vec<Value> = targets
        .into_iter()
        .map(|e| Value::Object(render_inline(e, ctx, &linked_opts, linked, levels - 1, ancestors)))
        .collect();
    if entities.is_empty() {
        return;
    }
    let single = attr.kind == AttributeKind::Relationship && attr.value.is_string();
    let embedded = if single { entities.into_iter().next().unwrap_or(Value::Null) } else { Value::Array(entities) };
    match rendered {
        Value::Object(members) => {
            members.insert(if single { "entity" } else { "entityList" }.into(), embedded);
        }
        keyvalue => *keyvalue = embedded,
    }
}

/// The members every entity representation starts with.
pub(crate) struct CoreMembers<'a> {
    pub id: &'a str,
    pub types: &'a [String],
    pub scope: &'a [String],
}

/// `id`, `type` and `scope` as the projection allows, then `createdAt` / `modifiedAt` when given.
pub(crate) fn render_core_members(
    core: &CoreMembers<'_>,
    system_times: Option<(&Option<String>, &Option<String>)>,
    ctx: &Context,
    proj: &Projection,
) -> Map<String, Value> {
    let mut out = Map::new();
    if proj.includes_core_member("id") {
        out.insert("id".into(), Value::String(core.id.to_owned()));
    }
    if proj.includes_core_member("type") {
        out.insert("type".into(), compact_types(core.types, ctx));
    }
    if !core.scope.is_empty() && proj.includes_core_member("scope") {
        out.insert("scope".into(), one_or_many(core.scope.iter().cloned().map(Value::String).collect()));
    }
    if let Some((created_at, modified_at)) = system_times {
        insert_opt(&mut out, "createdAt", created_at);
        insert_opt(&mut out, "modifiedAt", modified_at);
    }
    out
}

pub fn compact_types(types: &[String], ctx: &Context) -> Value {
    one_or_many(types.iter().map(|t| Value::String(ctx.compact_iri(t).into_owned())).collect())
}

pub(crate) fn one_or_many(mut items: Vec<Value>) -> Value {
    match items.pop() {
        Some(only) if items.is_empty() => only,
        Some(last) => {
            items.push(last);
            Value::Array(items)
        }
        None => Value::Array(items),
    }
}

fn insert_opt(out: &mut Map<String, Value>, key: &str, value: &Option<String>) {
    if let Some(v) = value {
        out.insert(key.into(), Value::String(v.clone()));
    }
}

/// Renders one attribute instance in the requested format.
pub fn render_attribute(attr: &Attribute, ctx: &Context, opts: &RenderOptions) -> Value {
    let language = match (&opts.lang, attr.kind) {
        (Some(pref), AttributeKind::LanguageProperty) => pick_language(&attr.value, pref),
        _ => None,
    };
    if opts.format == Format::KeyValues {
        return match language {
            Some((_, text)) => text,
            None => compact_value(attr, ctx),
        };
    }
    let mut out = Map::new();
    if let Some((tag, text)) = language {
        // A language map resolved to one language reads as a plain Property (clause 4.15).
        if opts.format == Format::Normalized {
            out.insert("type".into(), Value::String("Property".into()));
        }
        out.insert("value".into(), text);
        out.insert("lang".into(), Value::String(tag));
    } else {
        if opts.format == Format::Normalized {
            out.insert("type".into(), Value::String(attr.kind.name().into()));
        }
        out.insert(attr.kind.value_member().into(), compact_value(attr, ctx));
    }
    if let Some(object_type) = &attr.object_type {
        out.insert("objectType".into(), compact_vocab(object_type, ctx));
    }
    if let Some(ds) = &attr.dataset_id {
        out.insert("datasetId".into(), Value::String(ds.clone()));
    }
    insert_opt(&mut out, "observedAt", &attr.observed_at);
    insert_opt(&mut out, "unitCode", &attr.unit_code);
    if opts.sys_attrs {
        insert_opt(&mut out, "createdAt", &attr.created_at);
        insert_opt(&mut out, "modifiedAt", &attr.modified_at);
    }
    for (name, sub) in &attr.sub {
        out.insert(ctx.compact_iri(name).into_owned(), render_attribute(sub, ctx, opts));
    }
    // Concise: a Property that carries nothing but its value is just the value.
    if opts.format == Format::Concise
        && attr.kind == AttributeKind::Property
        && out.len() == 1
        && !attr.value.is_object()
    {
        return out.remove("value").unwrap_or(Value::Null);
    }
    Value::Object(out)
}

fn compact_value(attr: &Attribute, ctx: &Context) -> Value {
    match attr.kind {
        AttributeKind::VocabProperty => compact_vocab(&attr.value, ctx),
        _ => attr.value.clone(),
    }
}

fn compact_vocab(value: &Value, ctx: &Context) -> Value {
    match value {
        Value::String(iri) => Value::String(ctx.compact_iri(iri).into_owned()),
        Value::Array(items) => Value::Array(items.iter().map(|i| compact_vocab(i, ctx)).collect()),
        other => other.clone(),
    }
}

/// Picks the best text of a language map for a preference list like `en,fr;q=0.5` or `*`.
pub fn pick_language(map: &Value, preference: &str) -> Option<(String, Value)> {
    let map = map.as_object()?;
    let mut prefs: Vec<(&str, f32)> = preference
        .split(',')
        .filter_map(|p| {
            let mut parts = p.trim().split(';');
            let tag = parts.next()?.trim();
            let q = parts
                .find_map(|param| param.trim().strip_prefix("q=").and_then(|q| q.parse::<f32>().ok()))
                .unwrap_or(1.0);
            (!tag.is_empty()).then_some((tag, q))
        })
        .collect();
    prefs.sort_by(|a, b| b.1.partial_cmp(&a.1).unwrap_or(std::cmp::Ordering::Equal));
    for (tag, _) in &prefs {
        if *tag == "*" {
            break;
        }
        if let Some((key, text)) = map.iter().find(|(k, _)| k.eq_ignore_ascii_case(tag)) {
            return Some((key.clone(), text.clone()));
        }
        if let Some((key, text)) =
            map.iter().find(|(k, _)| k.split('-').next().is_some_and(|base| base.eq_ignore_ascii_case(tag)))
        {
            return Some((key.clone(), text.clone()));
        }
    }
    map.get("@none")
        .map(|t| ("@none".to_owned(), t.clone()))
        .or_else(|| map.iter().next().map(|(k, v)| (k.clone(), v.clone())))
}

/// Whether a term's definition says its values are vocabulary terms (used by the q language and
/// by callers compacting values).
pub fn is_vocab_term(ctx: &Context, term: &str) -> bool {
    ctx.term_definition(term).is_some_and(|d| d.type_mapping == Some(TypeMapping::Vocab))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::expand::expand_entity;
    use ngsild_jsonld::core_context;
    use serde_json::json;

    fn entity() -> Entity {
        let body = json!({
            "id": "urn:x:1", "type": "Building",
            "name": {"type": "Property", "value": "Tower", "source": {"type": "Relationship", "object": "urn:s:1"}},
            "street": {"type": "LanguageProperty", "languageMap": {"fr": "Grand Place", "nl": "Grote Markt"}},
            "height": {"type": "Property", "value": 300}
        });
        expand_entity(body.as_object().unwrap(), &core_context()).unwrap().0
    }

    #[test]
    fn normalized_round_trip() {
        let out = render_entity(&entity(), &core_context(), &RenderOptions::default());
        assert_eq!(
            Value::Object(out),
            json!({
                "id": "urn:x:1", "type": "Building",
                "name": {"type": "Property", "value": "Tower", "source": {"type": "Relationship", "object": "urn:s:1"}},
                "street": {"type": "LanguageProperty", "languageMap": {"fr": "Grand Place", "nl": "Grote Markt"}},
                "height": {"type": "Property", "value": 300}
            })
        );
    }

    #[test]
    fn key_values_concise_and_lang() {
        let ctx = core_context();
        let kv = render_entity(&entity(), &ctx, &RenderOptions { format: Format::KeyValues, ..Default::default() });
        assert_eq!(kv["name"], json!("Tower"));
        assert_eq!(kv["height"], json!(300));
        let concise = render_entity(&entity(), &ctx, &RenderOptions { format: Format::Concise, ..Default::default() });
        assert_eq!(concise["height"], json!(300));
        assert_eq!(concise["name"], json!({"value": "Tower", "source": {"object": "urn:s:1"}}));
        let nl = render_entity(&entity(), &ctx, &RenderOptions { lang: Some("nl".into()), ..Default::default() });
        assert_eq!(nl["street"], json!({"type": "Property", "value": "Grote Markt", "lang": "nl"}));
    }

    #[test]
    fn projection() {
        let ctx = core_context();
        let height = ctx.expand_term("height").into_owned();
        let opts = RenderOptions {
            projection: Projection { only: Some(vec![height.clone()]), ..Default::default() },
            ..Default::default()
        };
        let out = render_entity(&entity(), &ctx, &opts);
        assert_eq!(out.keys().collect::<Vec<_>>(), vec!["id", "type", "height"]);
        let opts = RenderOptions {
            projection: Projection { omit: vec![height.clone(), "type".into()], ..Default::default() },
            ..Default::default()
        };
        let out = render_entity(&entity(), &ctx, &opts);
        assert_eq!(out.keys().collect::<Vec<_>>(), vec!["id", "name", "street"]);
        let picked = Projection { only: Some(vec![height]), strict_core: true, ..Default::default() };
        let out = render_entity(&entity(), &ctx, &RenderOptions { projection: picked, ..Default::default() });
        assert_eq!(out.keys().collect::<Vec<_>>(), vec!["height"], "pick shows id and type only when picked");
    }

    #[test]
    fn language_preferences() {
        let map = json!({"en": "hello", "fr": "bonjour", "de-CH": "grüezi"});
        assert_eq!(pick_language(&map, "fr").unwrap().0, "fr");
        assert_eq!(pick_language(&map, "es,de;q=0.5").unwrap().0, "de-CH");
        assert_eq!(pick_language(&map, "*").unwrap().0, "en");
    }
}
