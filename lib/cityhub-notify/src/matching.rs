//! Which changes notify a subscription, and what the notification says (clauses 5.8.6, 5.3).
//! Pure: a journal entry and a compiled subscription in, a notification body out.

use std::collections::HashMap;
use std::sync::Arc;

use ngsild_core::model::{Attribute, AttributeKind};
use ngsild_core::render::{
    flat_linked, render_attribute, render_entity, render_entity_inline, Format, Join, Projection, RenderOptions,
};
use ngsild_core::time::parse_datetime;
use ngsild_core::{Entity, NgsiLdError};
use ngsild_jsonld::{Context, CORE_CONTEXT_URL};
use ngsild_query::{EntityFilter, GeoQuery, QExpr, ScopeExpr, TypeExpr};
use serde_json::{json, Map, Value};

use crate::subscription::{compile_geo, NotifyFormat, NotifyJoin, Subscription, Trigger};
use cityhub_storage::SubscriptionKind;

pub const NULL: &str = "urn:ngsi-ld:null";
const CONTEXT_REL: &str = "http://www.w3.org/ns/json-ld#context";

pub(crate) struct CompiledSelector {
    pub(crate) id: Option<String>,
    pub(crate) id_pattern: Option<regex::Regex>,
    pub(crate) types: Option<TypeExpr>,
}

/// A subscription ready to be matched: its expressions parsed, its contexts resolved. An entity
/// subscription matches entity changes (this module), a csource subscription registrations
/// (`csource`).
pub struct Compiled {
    pub kind: SubscriptionKind,
    pub tenant: String,
    pub sub: Subscription,
    /// Compacts what the subscriber receives (`jsonldContext`, else the subscription's own).
    pub notify_ctx: Arc<Context>,
    pub(crate) selectors: Vec<CompiledSelector>,
    pub(crate) q: Option<QExpr>,
    pub(crate) scope_q: Option<ScopeExpr>,
    pub(crate) geo: Option<GeoQuery>,
    /// `csf` (csource subscriptions): a query on the registrations' properties.
    pub(crate) csf: Option<QExpr>,
}

impl Compiled {
    /// `ctx` is the subscription's own context (its `context`), `notify_ctx` the one of
    /// `jsonldContext` when it names one.
    pub fn new(
        kind: SubscriptionKind,
        tenant: &str,
        sub: Subscription,
        ctx: &Context,
        notify_ctx: Arc<Context>,
    ) -> Result<Compiled, NgsiLdError> {
        let bad = |what: &str, e: ngsild_query::ParseError| NgsiLdError::bad_request(format!("invalid {what}: {e}"));
        let selectors = sub
            .entities
            .iter()
            .map(|s| {
                Ok(CompiledSelector {
                    id: s.id.clone(),
                    id_pattern: s
                        .id_pattern
                        .as_deref()
                        .map(regex::Regex::new)
                        .transpose()
                        .map_err(|e| NgsiLdError::bad_request(format!("invalid idPattern: {e}")))?,
                    types: s
                        .r#type
                        .as_deref()
                        .map(|t| TypeExpr::parse(t, ctx))
                        .transpose()
                        .map_err(|e| bad("type", e))?,
                })
            })
            .collect::<Result<Vec<_>, NgsiLdError>>()?;
        let q = sub.q.as_deref().map(|q| QExpr::parse(q, ctx)).transpose().map_err(|e| bad("q", e))?;
        let scope_q = sub.scope_q.as_deref().map(ScopeExpr::parse).transpose().map_err(|e| bad("scopeQ", e))?;
        let geo = sub.geo_q.as_ref().map(compile_geo).transpose().map_err(|e| bad("geoQ", e))?;
        let csf = sub.csf.as_deref().map(|q| QExpr::parse(q, ctx)).transpose().map_err(|e| bad("csf", e))?;
        Ok(Compiled { kind, tenant: tenant.to_owned(), sub, notify_ctx, selectors, q, scope_q, geo, csf })
    }

    pub fn triggers(&self) -> Vec<Trigger> {
        self.sub.notification_trigger.clone().unwrap_or_else(|| Trigger::DEFAULT.to_vec())
    }

    /// Active and not expired at `now`.
    pub fn is_live(&self, now: chrono::DateTime<chrono::Utc>) -> bool {
        self.sub.is_active && self.sub.expires_at.as_deref().and_then(parse_datetime).is_none_or(|at| at > now)
    }

    /// The entity selectors, `q`, `scopeQ` and `geoQ` (clauses 4.9, 4.10).
    pub fn selects(&self, entity: &Entity) -> bool {
        let selected = self.selectors.is_empty()
            || self.selectors.iter().any(|s| {
                s.id.as_ref().is_none_or(|id| id == &entity.id)
                    && s.id_pattern.as_ref().is_none_or(|re| re.is_match(&entity.id))
                    && s.types.as_ref().is_none_or(|t| t.matches(&entity.types))
            });
        selected
            && self.q.as_ref().is_none_or(|q| q.matches(entity))
            && self.scope_q.as_ref().is_none_or(|s| s.matches(&entity.scope))
            && self.geo.as_ref().is_none_or(|g| g.matches(entity))
    }

    /// Store queries that find the selected entities (a superset: `selects` decides).
    pub fn filters(&self) -> Vec<EntityFilter> {
        if self.selectors.is_empty() {
            return vec![EntityFilter::default()];
        }
        self.selectors
            .iter()
            .map(|s| EntityFilter {
                ids: s.id.clone().into_iter().collect(),
                id_pattern: s.id_pattern.clone(),
                types: s.types.clone(),
                ..Default::default()
            })
            .collect()
    }

    /// How notified entities are rendered: format, sysAttrs, projection, join.
    pub fn render_options(&self) -> RenderOptions {
        let n = &self.sub.notification;
        RenderOptions {
            format: match n.format {
                NotifyFormat::Normalized => Format::Normalized,
                NotifyFormat::KeyValues => Format::KeyValues,
                NotifyFormat::Concise => Format::Concise,
            },
            sys_attrs: n.sys_attrs,
            lang: self.sub.lang.clone(),
            projection: Projection {
                only: (!n.attributes.is_empty()).then(|| n.attributes.clone()),
                dataset_ids: self
                    .sub
                    .dataset_ids
                    .as_ref()
                    .map(|ids| ids.iter().map(|id| if id == "@none" { None } else { Some(id.clone()) }).collect()),
                ..Default::default()
            },
            join: n.join.map(|j| {
                let join = if j == NotifyJoin::Flat { Join::Flat } else { Join::Inline };
                // Capped again here for subscriptions stored before the limit existed.
                (join, n.join_level.unwrap_or(1).min(ngsild_core::limits::MAX_JOIN_LEVEL))
            }),
        }
    }

    /// The entity as notified now (periodic notifications): the entity, then with `join=flat`
    /// the entities it links to, which `linked` holds.
    pub fn render_current(&self, entity: &Entity, linked: &HashMap<String, Entity>) -> Vec<Value> {
        self.render_shown(entity, &self.render_options(), linked, |_| {})
    }

    /// Renders a notified entity and, with `join=flat`, the linked entities after it.
    fn render_shown(
        &self,
        shown: &Entity,
        opts: &RenderOptions,
        linked: &HashMap<String, Entity>,
        finish: impl FnOnce(&mut Map<String, Value>),
    ) -> Vec<Value> {
        let ctx = &self.notify_ctx;
        let mut rendered = match opts.join {
            Some((Join::Inline, levels)) => render_entity_inline(shown, ctx, opts, linked, levels),
            _ => render_entity(shown, ctx, opts),
        };
        add_entity_sys_attrs(&mut rendered, shown, opts);
        datasets_in_key_values(&mut rendered, shown, ctx, opts);
        finish(&mut rendered);
        let mut out = vec![Value::Object(rendered)];
        if let Some((Join::Flat, levels)) = opts.join {
            for (entity, projection) in flat_linked(&[(shown, &opts.projection)], linked, levels) {
                let linked_opts = RenderOptions { projection, ..opts.clone() };
                let mut rendered = render_entity(entity, ctx, &linked_opts);
                add_entity_sys_attrs(&mut rendered, entity, &linked_opts);
                datasets_in_key_values(&mut rendered, entity, ctx, &linked_opts);
                out.push(Value::Object(rendered));
            }
        }
        out
    }

    /// The notified entity for one change, or None when the change does not notify (without
    /// linked entities; see `fire` and `render_change`).
    pub fn on_change(&self, before: Option<&Entity>, after: Option<&Entity>, at: &str) -> Option<Value> {
        let deleted = self.fire(before, after)?;
        self.render_change(before, after, &deleted, at, &HashMap::new()).into_iter().next()
    }

    /// Whether a change notifies: None when it does not, else the attributes it shows as
    /// deleted.
    pub fn fire(&self, before: Option<&Entity>, after: Option<&Entity>) -> Option<Vec<String>> {
        let triggers = self.triggers();
        let watched = &self.sub.watched_attributes;
        let is_watched = |name: &str| watched.is_empty() || watched.iter().any(|w| w == name);
        let events = events(before, after);
        let attr_involved = events.iter().any(|(_, attr)| attr.as_deref().is_some_and(is_watched));
        let fired: Vec<&(Trigger, Option<String>)> = events
            .iter()
            .filter(|(trigger, attr)| {
                triggers.contains(trigger)
                    && match attr {
                        Some(name) => is_watched(name),
                        // An entity-level event under watchedAttributes needs a watched attribute involved.
                        None => watched.is_empty() || attr_involved,
                    }
            })
            .collect();
        if fired.is_empty() {
            return None;
        }
        let judged = after.or(before)?;
        if !self.selects(judged) {
            return None;
        }
        let deleted_attrs: Vec<String> = match after {
            Some(_) => {
                fired.iter().filter(|(t, _)| *t == Trigger::AttributeDeleted).filter_map(|(_, a)| a.clone()).collect()
            }
            None => {
                let whole =
                    self.sub.notification.show_changes && fired.iter().any(|(t, _)| *t == Trigger::EntityDeleted);
                let before = before?;
                before
                    .attrs
                    .keys()
                    .filter(|name| {
                        whole
                            || fired
                                .iter()
                                .any(|(t, a)| *t == Trigger::AttributeDeleted && a.as_deref() == Some(name.as_str()))
                    })
                    .cloned()
                    .collect()
            }
        };
        Some(deleted_attrs)
    }

    /// The notified data of a change `fire` accepted: the entity, then with `join=flat` the
    /// entities it links to (`linked` holds the ones fetched).
    pub fn render_change(
        &self,
        before: Option<&Entity>,
        after: Option<&Entity>,
        deleted: &[String],
        at: &str,
        linked: &HashMap<String, Entity>,
    ) -> Vec<Value> {
        let opts = self.render_options();
        let ctx = &self.notify_ctx;
        let mut shown = match (after, before) {
            (Some(a), _) => a.clone(),
            (None, Some(b)) => {
                let mut e = Entity::new(b.id.clone(), b.types.clone());
                e.scope = b.scope.clone();
                e.created_at = b.created_at.clone();
                e.modified_at = b.modified_at.clone();
                e
            }
            (None, None) => return vec![Value::Null],
        };
        for name in deleted {
            let name = name.as_str();
            let old_instances = before.and_then(|b| b.attrs.get(name)).cloned().unwrap_or_default();
            let remaining = after.and_then(|a| a.attrs.get(name)).cloned().unwrap_or_default();
            // An attribute deleted whole (all its instances) from an entity that stays reads
            // as one null attribute.
            let whole = after.is_some() && remaining.is_empty();
            let mut gone_instances = Vec::new();
            let gone = old_instances.iter().filter(|o| !remaining.iter().any(|r| r.dataset_id == o.dataset_id));
            for old in gone.take(if whole { 1 } else { usize::MAX }) {
                let value = match (old.kind, after.is_some()) {
                    (AttributeKind::LanguageProperty, true) => json!({"@none": NULL}),
                    _ => json!(NULL),
                };
                let mut gone = Attribute::new(old.kind, value);
                gone.dataset_id = if whole { None } else { old.dataset_id.clone() };
                gone.created_at = old.created_at.clone();
                gone.modified_at = old.modified_at.clone();
                gone_instances.push(gone);
            }
            // The instances that stay are shown beside the ones that went.
            let mut instances = remaining;
            instances.extend(gone_instances);
            shown.attrs.insert(name.to_owned(), instances);
        }
        let show_changes = self.sub.notification.show_changes && opts.format != Format::KeyValues;
        self.render_shown(&shown, &opts, linked, |rendered| {
            if after.is_none() {
                rendered.insert("deletedAt".into(), json!(at));
            }
            for name in deleted {
                if let (true, Some(Value::Object(attr))) =
                    (opts.sys_attrs, rendered.get_mut(ctx.compact_iri(name).as_ref()))
                {
                    attr.insert("deletedAt".into(), json!(at));
                }
            }
            if let (true, Some(before)) = (show_changes, before) {
                add_previous_values(rendered, before, &shown, ctx, &opts);
            }
        })
    }

    /// The notification message for the outbox: body, headers, and how to send it.
    pub fn message(&self, data: Vec<Value>, now: &str) -> Value {
        let context = self.context_value();
        let data: Vec<Value> = data
            .into_iter()
            .map(|mut entity| {
                if let (true, Some(map)) = (self.wants_ld(), entity.as_object_mut()) {
                    map.insert("@context".into(), context.clone());
                }
                entity
            })
            .collect();
        let body = json!({
            "id": format!("urn:ngsi-ld:Notification:{}", uuid::Uuid::new_v4()),
            "type": "Notification",
            "subscriptionId": self.sub.id,
            "notifiedAt": now,
            "data": data,
        });
        self.envelope(body)
    }

    /// Whether the subscriber reads `application/ld+json` (the @context in the body) rather than
    /// `application/json` (the @context in a `Link` header).
    pub(crate) fn wants_ld(&self) -> bool {
        self.sub.notification.endpoint.accept == "application/ld+json"
    }

    /// A notification body ready for the outbox: with its headers and how to send it.
    pub(crate) fn envelope(&self, body: Value) -> Value {
        let endpoint = &self.sub.notification.endpoint;
        let ld = self.wants_ld();
        let mut headers = Map::new();
        headers.insert("Content-Type".into(), json!(if ld { "application/ld+json" } else { "application/json" }));
        if !ld {
            headers.insert(
                "Link".into(),
                json!(format!("<{}>; rel=\"{CONTEXT_REL}\"; type=\"application/ld+json\"", self.link_url())),
            );
        }
        if !self.tenant.is_empty() {
            headers.insert("NGSILD-Tenant".into(), json!(self.tenant));
        }
        for kv in &endpoint.receiver_info {
            headers.insert(kv.key.clone(), json!(kv.value));
        }
        let info = |key: &str| endpoint.notifier_info.iter().find(|kv| kv.key == key).map(|kv| kv.value.clone());
        json!({
            "uri": endpoint.uri,
            "headers": headers,
            "body": body,
            "qos": info("MQTT-QoS").and_then(|q| q.parse::<u8>().ok()).filter(|q| *q <= 2).unwrap_or(0),
            "mqttVersion": info("MQTT-Version").unwrap_or_else(|| "mqtt3.1.1".to_owned()),
        })
    }

    /// The @context of an application/ld+json notification.
    pub(crate) fn context_value(&self) -> Value {
        match (&self.sub.jsonld_context, &self.sub.context) {
            (Some(url), _) => json!(url),
            (None, Some(given)) => given.clone(),
            (None, None) => json!(CORE_CONTEXT_URL),
        }
    }

    /// The @context URL of the `Link` header of an application/json notification.
    fn link_url(&self) -> String {
        match self.context_value() {
            Value::String(url) => url,
            Value::Array(items) if items.len() == 1 && items[0].is_string() => {
                items[0].as_str().unwrap_or_default().to_owned()
            }
            _ => CORE_CONTEXT_URL.to_owned(),
        }
    }
}

/// In keyValues, an attribute shown with several instances reads as
/// `{"dataset": {datasetId or "@none": value}}` (clause 4.5.4, multi-attributes).
fn datasets_in_key_values(rendered: &mut Map<String, Value>, entity: &Entity, ctx: &Context, opts: &RenderOptions) {
    if opts.format != Format::KeyValues {
        return;
    }
    let proj = &opts.projection;
    for (name, instances) in &entity.attrs {
        if !proj.includes(name) {
            continue;
        }
        let shown: Vec<&Attribute> = instances
            .iter()
            .filter(|a| proj.dataset_ids.as_ref().is_none_or(|ids| ids.contains(&a.dataset_id)))
            .collect();
        if shown.len() < 2 {
            continue;
        }
        let dataset: Map<String, Value> = shown
            .iter()
            .map(|a| (a.dataset_id.clone().unwrap_or_else(|| "@none".into()), render_attribute(a, ctx, opts)))
            .collect();
        rendered.insert(ctx.compact_iri(name).into_owned(), json!({ "dataset": dataset }));
    }
}

/// `sysAttrs` shows the entity's system times in every format (keyValues included).
fn add_entity_sys_attrs(rendered: &mut Map<String, Value>, entity: &Entity, opts: &RenderOptions) {
    if !opts.sys_attrs {
        return;
    }
    for (member, value) in [("createdAt", &entity.created_at), ("modifiedAt", &entity.modified_at)] {
        if let (Some(v), false) = (value, rendered.contains_key(member)) {
            rendered.insert(member.into(), json!(v));
        }
    }
}

/// The events one change is made of: entity-level ones, and one per attribute created, updated
/// (any difference in its instances) or deleted.
pub fn events(before: Option<&Entity>, after: Option<&Entity>) -> Vec<(Trigger, Option<String>)> {
    let mut out = Vec::new();
    match (before, after) {
        (None, Some(a)) => {
            out.push((Trigger::EntityCreated, None));
            out.extend(a.attrs.keys().map(|n| (Trigger::AttributeCreated, Some(n.clone()))));
        }
        (Some(b), None) => {
            out.push((Trigger::EntityDeleted, None));
            out.extend(b.attrs.keys().map(|n| (Trigger::AttributeDeleted, Some(n.clone()))));
        }
        (Some(b), Some(a)) => {
            for (name, instances) in &a.attrs {
                match b.attrs.get(name) {
                    None => out.push((Trigger::AttributeCreated, Some(name.clone()))),
                    Some(old) if old != instances => {
                        // Instances (datasetIds) count on their own: one gone is a deletion, one
                        // new a creation, one changed an update.
                        let has = |list: &[Attribute], d: &Option<String>| list.iter().any(|i| &i.dataset_id == d);
                        if old.iter().any(|i| !has(instances, &i.dataset_id)) {
                            out.push((Trigger::AttributeDeleted, Some(name.clone())));
                        }
                        if instances.iter().any(|i| !has(old, &i.dataset_id)) {
                            out.push((Trigger::AttributeCreated, Some(name.clone())));
                        }
                        let changed =
                            instances.iter().any(|i| old.iter().any(|o| o.dataset_id == i.dataset_id && o != i));
                        if changed {
                            out.push((Trigger::AttributeUpdated, Some(name.clone())));
                        }
                    }
                    Some(_) => {}
                }
            }
            out.extend(
                b.attrs
                    .keys()
                    .filter(|n| !a.attrs.contains_key(*n))
                    .map(|n| (Trigger::AttributeDeleted, Some(n.clone()))),
            );
            if !out.is_empty() || a.types != b.types || a.scope != b.scope {
                out.push((Trigger::EntityUpdated, None));
            }
        }
        (None, None) => {}
    }
    out
}

/// `showChanges`: each shown attribute that had another value before carries it as
/// `previousValue` (`previousObject`, `previousLanguageMap`, ... by kind).
fn add_previous_values(
    rendered: &mut Map<String, Value>,
    before: &Entity,
    shown: &Entity,
    ctx: &Context,
    opts: &RenderOptions,
) {
    let plain = RenderOptions { format: Format::Normalized, sys_attrs: false, lang: None, ..opts.clone() };
    for (name, instances) in &shown.attrs {
        let Some(old) = before.attrs.get(name).and_then(|i| i.first()) else { continue };
        let Some(new) = instances.first() else { continue };
        if old.value == new.value {
            continue;
        }
        let member = old.kind.value_member();
        let previous = render_attribute(old, ctx, &plain).get(member).cloned();
        let key = ctx.compact_iri(name);
        if let (Some(previous), Some(Value::Object(attr))) = (previous, rendered.get_mut(key.as_ref())) {
            let mut chars = member.chars();
            let capitalised: String = chars.next().map(|c| c.to_ascii_uppercase()).into_iter().chain(chars).collect();
            attr.insert(format!("previous{capitalised}"), previous);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::subscription::from_payload;
    use ngsild_jsonld::core_context;

    const TEMPERATURE: &str = "https://uri.etsi.org/ngsi-ld/default-context/temperature";
    const HUMIDITY: &str = "https://uri.etsi.org/ngsi-ld/default-context/humidity";
    const ROOM: &str = "https://uri.etsi.org/ngsi-ld/default-context/Room";

    fn compiled(extra: Value) -> Compiled {
        let mut body = json!({
            "id": "urn:ngsi-ld:Subscription:t",
            "type": "Subscription",
            "entities": [{"type": "Room"}],
            "notification": {"endpoint": {"uri": "http://127.0.0.1:9/n"}},
        });
        for (k, v) in extra.as_object().unwrap() {
            body[k] = v.clone();
        }
        let ctx = core_context();
        let sub = from_payload(body.as_object().unwrap(), &ctx, None, "2020-01-01T00:00:00Z").unwrap();
        Compiled::new(SubscriptionKind::Entity, "", sub, &ctx, ctx.clone()).unwrap()
    }

    fn room(temperature: f64) -> Entity {
        let mut e = Entity::new("urn:ngsi-ld:Room:1", vec![ROOM.into()]);
        e.attrs.insert(TEMPERATURE.into(), vec![Attribute::new(AttributeKind::Property, json!(temperature))]);
        e
    }

    fn with_humidity(mut e: Entity) -> Entity {
        e.attrs.insert(HUMIDITY.into(), vec![Attribute::new(AttributeKind::Property, json!(40))]);
        e
    }

    #[test]
    fn events_name_entity_and_attribute_changes() {
        let created = events(None, Some(&room(20.0)));
        assert_eq!(
            created,
            vec![(Trigger::EntityCreated, None), (Trigger::AttributeCreated, Some(TEMPERATURE.into()))]
        );
        let updated = events(Some(&room(20.0)), Some(&with_humidity(room(21.0))));
        assert!(updated.contains(&(Trigger::AttributeUpdated, Some(TEMPERATURE.into()))));
        assert!(updated.contains(&(Trigger::AttributeCreated, Some(HUMIDITY.into()))));
        assert!(updated.contains(&(Trigger::EntityUpdated, None)));
        let removed = events(Some(&with_humidity(room(20.0))), Some(&room(20.0)));
        assert_eq!(removed, vec![(Trigger::AttributeDeleted, Some(HUMIDITY.into())), (Trigger::EntityUpdated, None)]);
        assert!(events(Some(&room(20.0)), Some(&room(20.0))).is_empty(), "no change, no event");
        assert_eq!(events(Some(&room(20.0)), None)[0], (Trigger::EntityDeleted, None));
    }

    #[test]
    fn default_triggers_are_attribute_created_and_updated() {
        let c = compiled(json!({}));
        assert!(c.on_change(None, Some(&room(20.0)), "t").is_some(), "creation creates attributes");
        assert!(c.on_change(Some(&room(20.0)), Some(&room(21.0)), "t").is_some());
        assert!(c.on_change(Some(&with_humidity(room(20.0))), Some(&room(20.0)), "t").is_none());
        assert!(c.on_change(Some(&room(20.0)), None, "t").is_none());
    }

    #[test]
    fn watched_attributes_q_and_selectors_filter() {
        let c = compiled(json!({"watchedAttributes": ["humidity"]}));
        assert!(c.on_change(Some(&room(20.0)), Some(&room(21.0)), "t").is_none());
        assert!(c.on_change(Some(&room(20.0)), Some(&with_humidity(room(20.0))), "t").is_some());
        let q = compiled(json!({"q": "temperature%3E25"}));
        assert!(q.on_change(Some(&room(20.0)), Some(&room(21.0)), "t").is_none());
        assert!(q.on_change(Some(&room(20.0)), Some(&room(26.0)), "t").is_some());
        let other = compiled(json!({"entities": [{"type": "Car"}]}));
        assert!(other.on_change(None, Some(&room(20.0)), "t").is_none());
        let pattern = compiled(json!({"entities": [{"type": "Room", "idPattern": ":Room:2$"}]}));
        assert!(pattern.on_change(None, Some(&room(20.0)), "t").is_none());
    }

    #[test]
    fn deletions_show_null_values_and_show_changes_previous_values() {
        let deleted = compiled(json!({"notificationTrigger": ["entityDeleted"]}));
        let data = deleted.on_change(Some(&room(20.0)), None, "2024-01-01T00:00:00Z").unwrap();
        assert_eq!(data, json!({"id": "urn:ngsi-ld:Room:1", "type": "Room", "deletedAt": "2024-01-01T00:00:00Z"}));

        let attr = compiled(json!({"notificationTrigger": ["attributeDeleted"], "notification": {
            "endpoint": {"uri": "http://127.0.0.1:9/n"}, "showChanges": true}}));
        let data = attr.on_change(Some(&with_humidity(room(20.0))), Some(&room(20.0)), "t").unwrap();
        assert_eq!(data["humidity"], json!({"type": "Property", "value": NULL, "previousValue": 40}));
        assert_eq!(data["temperature"]["value"], 20.0);

        let changes =
            compiled(json!({"notification": {"endpoint": {"uri": "http://127.0.0.1:9/n"}, "showChanges": true}}));
        let data = changes.on_change(Some(&room(20.0)), Some(&room(21.0)), "t").unwrap();
        assert_eq!(data["temperature"], json!({"type": "Property", "value": 21.0, "previousValue": 20.0}));
    }

    #[test]
    fn formats_and_projection_shape_the_data() {
        let kv = compiled(json!({"notification": {"endpoint": {"uri": "http://127.0.0.1:9/n"}, "format": "keyValues",
            "attributes": ["humidity"]}}));
        let data = kv.on_change(None, Some(&with_humidity(room(20.0))), "t").unwrap();
        assert_eq!(data, json!({"id": "urn:ngsi-ld:Room:1", "type": "Room", "humidity": 40}));
    }

    #[test]
    fn messages_carry_headers_and_the_notification() {
        let c = compiled(
            json!({"notification": {"endpoint": {"uri": "mqtt://127.0.0.1/t", "accept": "application/ld+json",
            "receiverInfo": [{"key": "X-K", "value": "v"}],
            "notifierInfo": [{"key": "MQTT-QoS", "value": "2"}, {"key": "MQTT-Version", "value": "mqtt5.0"}]}}}),
        );
        let message = c.message(vec![json!({"id": "urn:x"})], "2024-01-01T00:00:00Z");
        assert_eq!(message["headers"]["Content-Type"], "application/ld+json");
        assert_eq!(message["headers"]["X-K"], "v");
        assert!(message["headers"].get("Link").is_none());
        assert_eq!(message["qos"], 2);
        assert_eq!(message["mqttVersion"], "mqtt5.0");
        assert_eq!(message["body"]["type"], "Notification");
        assert_eq!(message["body"]["subscriptionId"], "urn:ngsi-ld:Subscription:t");
        assert_eq!(message["body"]["data"][0]["@context"], CORE_CONTEXT_URL);
    }
}
