//! The Subscription data type (clause 5.2.12): read from a client's payload, kept in the hub's
//! context-free form, shown back in a client's @context. Pure: no I/O.
//!
//! Names (entity types, watched and notified attributes, the geoproperty) are stored expanded;
//! `q` and `scopeQ` are kept as written together with the @context they were written in
//! (`context`), which also compacts the notifications.

use cityhub_storage::{DeliveryStatus, SubscriptionKind};
use ngsild_core::time::parse_datetime;
use ngsild_core::validate::{check_name, check_uri, is_uri};
use ngsild_core::NgsiLdError;
use ngsild_jsonld::Context;
use ngsild_query::{GeoQuery, QExpr, ScopeExpr, TypeExpr};
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

/// What may cause a notification (clause 5.2.12 `notificationTrigger`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Trigger {
    EntityCreated,
    EntityUpdated,
    EntityDeleted,
    AttributeCreated,
    AttributeUpdated,
    AttributeDeleted,
}

impl Trigger {
    pub fn name(self) -> &'static str {
        match self {
            Trigger::EntityCreated => "entityCreated",
            Trigger::EntityUpdated => "entityUpdated",
            Trigger::EntityDeleted => "entityDeleted",
            Trigger::AttributeCreated => "attributeCreated",
            Trigger::AttributeUpdated => "attributeUpdated",
            Trigger::AttributeDeleted => "attributeDeleted",
        }
    }

    fn parse(name: &str) -> Option<Trigger> {
        [
            Trigger::EntityCreated,
            Trigger::EntityUpdated,
            Trigger::EntityDeleted,
            Trigger::AttributeCreated,
            Trigger::AttributeUpdated,
            Trigger::AttributeDeleted,
        ]
        .into_iter()
        .find(|t| t.name() == name)
    }

    /// Without `notificationTrigger`, attributes created or updated notify.
    pub const DEFAULT: [Trigger; 2] = [Trigger::AttributeCreated, Trigger::AttributeUpdated];
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub enum NotifyFormat {
    #[default]
    Normalized,
    KeyValues,
    Concise,
}

/// Linked Entity retrieval in notifications (clause 4.5.23): `notification.join`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum NotifyJoin {
    Flat,
    Inline,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct Selector {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id_pattern: Option<String>,
    /// A type (or type expression) as written, with its names expanded when it is a single type.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub r#type: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GeoQ {
    pub georel: String,
    pub geometry: String,
    pub coordinates: Value,
    /// Expanded.
    pub geoproperty: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KeyValue {
    pub key: String,
    pub value: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Endpoint {
    pub uri: String,
    /// `application/json` or `application/ld+json`.
    pub accept: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub receiver_info: Vec<KeyValue>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notifier_info: Vec<KeyValue>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NotificationParams {
    /// Expanded attribute names (empty: all).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub attributes: Vec<String>,
    #[serde(default)]
    pub format: NotifyFormat,
    #[serde(default)]
    pub show_changes: bool,
    #[serde(default)]
    pub sys_attrs: bool,
    /// `join`: the linked Entities, `join_level` hops deep (1 when not given).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub join: Option<NotifyJoin>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub join_level: Option<u32>,
    pub endpoint: Endpoint,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Subscription {
    pub id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subscription_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub entities: Vec<Selector>,
    /// Expanded attribute names (empty: any).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub watched_attributes: Vec<String>,
    /// As given; None means the default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notification_trigger: Option<Vec<Trigger>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub q: Option<String>,
    /// Context source filter (csource subscriptions): a query on the registrations' properties,
    /// kept as written, as `q`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub csf: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub geo_q: Option<GeoQ>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope_q: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lang: Option<String>,
    pub notification: NotificationParams,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_interval: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub throttling: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<String>,
    pub is_active: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jsonld_context: Option<String>,
    /// Only these attribute instances are notified (`@none`: the default instance).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dataset_ids: Option<Vec<String>>,
    /// The @context the subscription was written in (None: the core context alone). Its terms
    /// read `q` and compact what the subscriber receives, unless `jsonldContext` names another.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub context: Option<Value>,
    pub created_at: String,
    pub modified_at: String,
    /// Who created it (access control, issue 16): a notification carries only what this
    /// subscriber may read when it is made. None: made before the hub kept it (read as it was).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subscriber: Option<Subscriber>,
}

/// The identity a subscription notifies for, as stored: its subject (a token's `sub`, a key's
/// id), how it proved it, and its grants (`seoul:reader`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Subscriber {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    pub via: String,
    pub grants: Vec<String>,
}

/// Members of the Subscription data type a client may write (others are refused).
const WRITABLE: &[&str] = &[
    "id",
    "type",
    "subscriptionName",
    "description",
    "entities",
    "watchedAttributes",
    "notificationTrigger",
    "q",
    "geoQ",
    "scopeQ",
    "lang",
    "notification",
    "timeInterval",
    "throttling",
    "expiresAt",
    "isActive",
    "jsonldContext",
    "datasetId",
    "csf",
    "temporalQ",
    "status",
];

fn bad(detail: impl Into<String>) -> NgsiLdError {
    NgsiLdError::bad_request(detail)
}

fn string<'a>(value: &'a Value, what: &str) -> Result<&'a str, NgsiLdError> {
    value.as_str().ok_or_else(|| bad(format!("{what} must be a string")))
}

/// The longest `timeInterval` or `throttling`, in seconds: 100 years. Longer ones cannot be
/// timers (they overflow the clock arithmetic) and mean "never".
pub const MAX_INTERVAL_SECONDS: f64 = 100.0 * 365.0 * 86400.0;

fn positive(value: &Value, what: &str) -> Result<f64, NgsiLdError> {
    let seconds =
        value.as_f64().filter(|v| *v > 0.0).ok_or_else(|| bad(format!("{what} must be a number greater than zero")))?;
    if seconds > MAX_INTERVAL_SECONDS {
        return Err(bad(format!(
            "{what} is {seconds} seconds; it may be at most {MAX_INTERVAL_SECONDS} (100 years): give a shorter one"
        )));
    }
    Ok(seconds)
}

fn strings(value: &Value, what: &str) -> Result<Vec<String>, NgsiLdError> {
    let items = value.as_array().ok_or_else(|| bad(format!("{what} must be an array")))?;
    if items.is_empty() {
        return Err(bad(format!("{what} must not be empty")));
    }
    items.iter().map(|v| string(v, what).map(str::to_owned)).collect()
}

fn expand_attr(name: &str, ctx: &Context) -> Result<String, NgsiLdError> {
    check_name(name, "attribute")?;
    Ok(ctx.expand_term(name).into_owned())
}

fn key_values(value: &Value, what: &str) -> Result<Vec<KeyValue>, NgsiLdError> {
    let items = value.as_array().ok_or_else(|| bad(format!("{what} must be an array of key-value pairs")))?;
    items
        .iter()
        .map(|item| {
            let key = item.get("key").and_then(Value::as_str);
            let value = item.get("value").and_then(Value::as_str);
            match (key, value) {
                (Some(k), Some(v)) => {
                    ngsild_core::validate::check_header_field(k, v, what)?;
                    Ok(KeyValue { key: k.to_owned(), value: v.to_owned() })
                }
                _ => Err(bad(format!("each item of {what} needs a string key and value"))),
            }
        })
        .collect()
}

fn endpoint(value: &Value) -> Result<Endpoint, NgsiLdError> {
    let map = value.as_object().ok_or_else(|| bad("notification.endpoint must be an object"))?;
    let uri = string(map.get("uri").ok_or_else(|| bad("notification.endpoint.uri is required"))?, "endpoint.uri")?;
    check_endpoint_uri(uri)?;
    let accept = match map.get("accept") {
        None => "application/json".to_owned(),
        Some(a) => match string(a, "endpoint.accept")? {
            a @ ("application/json" | "application/ld+json" | "application/geo+json") => a.to_owned(),
            other => return Err(bad(format!("endpoint.accept {other:?} is not supported"))),
        },
    };
    let receiver_info = map.get("receiverInfo").map(|v| key_values(v, "receiverInfo")).transpose()?.unwrap_or_default();
    let notifier_info = map.get("notifierInfo").map(|v| key_values(v, "notifierInfo")).transpose()?.unwrap_or_default();
    Ok(Endpoint { uri: uri.to_owned(), accept, receiver_info, notifier_info })
}

/// Endpoints are absolute http(s) or mqtt(s) URIs with a host.
pub fn check_endpoint_uri(uri: &str) -> Result<(), NgsiLdError> {
    let Some((scheme, rest)) = uri.split_once("://") else {
        return Err(bad(format!("endpoint uri {uri:?} is not an absolute URI")));
    };
    if !matches!(scheme, "http" | "https" | "mqtt" | "mqtts") {
        return Err(bad(format!("endpoint scheme {scheme:?} is not supported (http, https, mqtt, mqtts)")));
    }
    let authority = rest.split('/').next().unwrap_or("");
    let host = authority.rsplit('@').next().unwrap_or("");
    if host.is_empty() || uri.chars().any(|c| c.is_whitespace() || c == '"' || c == '<' || c == '>') {
        return Err(bad(format!("endpoint uri {uri:?} is not valid")));
    }
    if scheme.starts_with("mqtt") {
        // The topic is the path: without one, nothing could ever be published. A PUBLISH topic
        // may not hold the subscription wildcards `+`/`#` nor NUL (MQTT 3.1.1 clause 4.7).
        let topic = rest.split_once('/').map(|(_, t)| t).unwrap_or("");
        if topic.is_empty() {
            return Err(bad(format!(
                "endpoint uri {uri:?} names no MQTT topic: notifications are published to the topic in the URI path, e.g. {scheme}://{authority}/city/notifications"
            )));
        }
        if topic.contains(['+', '#', '\0']) || topic.contains("%00") {
            return Err(bad(format!(
                "endpoint uri {uri:?}: the MQTT topic {topic:?} holds a wildcard (+ or #) or NUL, which a published topic cannot"
            )));
        }
    }
    Ok(())
}

fn notification_params(
    value: &Value,
    ctx: &Context,
    existing: Option<&NotificationParams>,
) -> Result<NotificationParams, NgsiLdError> {
    let map = value.as_object().ok_or_else(|| bad("notification must be an object"))?;
    let mut params = match existing {
        Some(e) => e.clone(),
        None => {
            let endpoint = endpoint(map.get("endpoint").ok_or_else(|| bad("notification.endpoint is required"))?)?;
            NotificationParams {
                attributes: Vec::new(),
                format: NotifyFormat::Normalized,
                show_changes: false,
                sys_attrs: false,
                join: None,
                join_level: None,
                endpoint,
            }
        }
    };
    for (key, value) in map {
        match key.as_str() {
            "attributes" => {
                params.attributes = strings(value, "notification.attributes")?
                    .iter()
                    .map(|n| expand_attr(n, ctx))
                    .collect::<Result<_, _>>()?
            }
            "format" => {
                params.format = match string(value, "notification.format")? {
                    "normalized" => NotifyFormat::Normalized,
                    "keyValues" | "simplified" => NotifyFormat::KeyValues,
                    "concise" => NotifyFormat::Concise,
                    other => return Err(bad(format!("unknown notification format {other:?}"))),
                }
            }
            "showChanges" => {
                params.show_changes = value.as_bool().ok_or_else(|| bad("showChanges must be true or false"))?
            }
            "sysAttrs" => params.sys_attrs = value.as_bool().ok_or_else(|| bad("sysAttrs must be true or false"))?,
            "endpoint" => params.endpoint = endpoint(value)?,
            "join" => {
                params.join = match string(value, "notification.join")? {
                    "flat" => Some(NotifyJoin::Flat),
                    "inline" => Some(NotifyJoin::Inline),
                    "@none" => None,
                    other => return Err(bad(format!("unknown notification.join {other:?}: flat, inline or @none"))),
                }
            }
            "joinLevel" => {
                params.join_level = Some(
                    value
                        .as_u64()
                        .filter(|n| *n >= 1)
                        .and_then(|n| u32::try_from(n).ok())
                        .ok_or_else(|| bad("notification.joinLevel must be a positive integer"))?,
                );
                let max = ngsild_core::limits::MAX_JOIN_LEVEL;
                if params.join_level.is_some_and(|l| l > max) {
                    return Err(bad(format!("notification.joinLevel is beyond the limit of this hub, {max}")));
                }
            }
            "pick" | "omit" => {
                return Err(bad(format!("notification.{key} is not supported by this hub; use attributes")))
            }
            // Read-only members a client may echo back.
            "status" | "timesSent" | "timesFailed" | "lastNotification" | "lastFailure" | "lastSuccess" => {}
            other => return Err(bad(format!("unknown member notification.{other}"))),
        }
    }
    Ok(params)
}

/// Reads a subscription from a creation payload (its `@context` already taken out and resolved
/// into `ctx`; `given` is what the client gave).
pub fn from_payload(
    body: &Map<String, Value>,
    ctx: &Context,
    given: Option<Value>,
    now: &str,
) -> Result<Subscription, NgsiLdError> {
    match body.get("type") {
        Some(Value::String(t)) if t == "Subscription" => {}
        Some(_) => return Err(bad("the type of a subscription must be \"Subscription\"")),
        None => return Err(bad("a subscription needs \"type\": \"Subscription\"")),
    }
    let id = match body.get("id") {
        Some(id) => {
            let id = string(id, "id")?;
            check_uri(id, "the subscription id")?;
            id.to_owned()
        }
        None => format!("urn:ngsi-ld:Subscription:{}", uuid::Uuid::new_v4()),
    };
    let notification = body.get("notification").ok_or_else(|| bad("a subscription needs a notification member"))?;
    let mut sub = Subscription {
        id,
        subscription_name: None,
        description: None,
        entities: Vec::new(),
        watched_attributes: Vec::new(),
        notification_trigger: None,
        q: None,
        csf: None,
        geo_q: None,
        scope_q: None,
        lang: None,
        notification: notification_params(notification, ctx, None)?,
        time_interval: None,
        throttling: None,
        expires_at: None,
        is_active: true,
        jsonld_context: None,
        dataset_ids: None,
        context: given,
        subscriber: None,
        created_at: now.to_owned(),
        modified_at: now.to_owned(),
    };
    apply_members(&mut sub, body, ctx, true)?;
    check(&sub, ctx)?;
    Ok(sub)
}

/// Applies a PATCH fragment (clause 5.8.2): the members given replace the stored ones; `null`
/// removes an optional one.
pub fn patch(
    sub: &Subscription,
    fragment: &Map<String, Value>,
    ctx: &Context,
    now: &str,
) -> Result<Subscription, NgsiLdError> {
    if fragment.is_empty() {
        return Err(bad("an update of a subscription needs at least one member"));
    }
    if let Some(id) = fragment.get("id") {
        if id.as_str() != Some(sub.id.as_str()) {
            return Err(bad("the id of a subscription cannot change"));
        }
    }
    if let Some(t) = fragment.get("type") {
        if t.as_str() != Some("Subscription") {
            return Err(bad("the type of a subscription must be \"Subscription\""));
        }
    }
    let mut next = sub.clone();
    apply_members(&mut next, fragment, ctx, false)?;
    next.modified_at = now.to_owned();
    check(&next, ctx)?;
    Ok(next)
}

fn apply_members(
    sub: &mut Subscription,
    body: &Map<String, Value>,
    ctx: &Context,
    creating: bool,
) -> Result<(), NgsiLdError> {
    for (key, value) in body {
        if !WRITABLE.contains(&key.as_str()) {
            return Err(bad(format!("unknown member {key:?} of a subscription")));
        }
        let null = value.is_null();
        match key.as_str() {
            // temporalQ (registrations' time intervals) is accepted and not evaluated.
            "id" | "type" | "status" | "temporalQ" => {}
            "csf" => sub.csf = (!null).then(|| string(value, key).map(str::to_owned)).transpose()?,
            "subscriptionName" => {
                sub.subscription_name = (!null).then(|| string(value, key).map(str::to_owned)).transpose()?
            }
            "description" => sub.description = (!null).then(|| string(value, key).map(str::to_owned)).transpose()?,
            "entities" => {
                sub.entities = if null { Vec::new() } else { selectors(value, ctx)? };
            }
            "watchedAttributes" => {
                sub.watched_attributes = if null {
                    Vec::new()
                } else {
                    strings(value, key)?.iter().map(|n| expand_attr(n, ctx)).collect::<Result<_, _>>()?
                };
            }
            "notificationTrigger" => {
                sub.notification_trigger = if null {
                    None
                } else {
                    let names = strings(value, key)?;
                    Some(
                        names
                            .iter()
                            .map(|n| Trigger::parse(n).ok_or_else(|| bad(format!("unknown notificationTrigger {n:?}"))))
                            .collect::<Result<_, _>>()?,
                    )
                };
            }
            "q" => {
                sub.q = if null {
                    None
                } else {
                    // Clients write q as they would in a query string, percent-encoding included.
                    let q = percent_encoding::percent_decode_str(string(value, key)?).decode_utf8_lossy().into_owned();
                    QExpr::parse(&q, ctx).map_err(|e| bad(format!("invalid q: {e}")))?;
                    Some(q)
                };
            }
            "scopeQ" => {
                sub.scope_q = if null {
                    None
                } else {
                    let s = string(value, key)?;
                    ScopeExpr::parse(s).map_err(|e| bad(format!("invalid scopeQ: {e}")))?;
                    Some(s.to_owned())
                };
            }
            "geoQ" => sub.geo_q = if null { None } else { Some(geo_q(value, ctx)?) },
            "lang" => sub.lang = (!null).then(|| string(value, key).map(str::to_owned)).transpose()?,
            "notification" => {
                if null {
                    return Err(bad("notification cannot be removed"));
                }
                if !creating {
                    // An update replaces the whole member: it must be complete on its own.
                    sub.notification = notification_params(value, ctx, None)?;
                }
            }
            "timeInterval" => sub.time_interval = (!null).then(|| positive(value, key)).transpose()?,
            "throttling" => sub.throttling = (!null).then(|| positive(value, key)).transpose()?,
            "expiresAt" => {
                sub.expires_at = if null {
                    None
                } else {
                    let at = string(value, key)?;
                    let when = parse_datetime(at).ok_or_else(|| bad(format!("expiresAt {at:?} is not a DateTime")))?;
                    if when <= chrono::Utc::now() {
                        return Err(bad("expiresAt must be in the future"));
                    }
                    Some(at.to_owned())
                };
            }
            "isActive" => {
                sub.is_active =
                    if null { true } else { value.as_bool().ok_or_else(|| bad("isActive must be true or false"))? }
            }
            "datasetId" => {
                sub.dataset_ids = if null {
                    None
                } else {
                    let ids = strings(value, key)?;
                    for id in ids.iter().filter(|id| *id != "@none") {
                        check_uri(id, "datasetId")?;
                    }
                    Some(ids)
                };
            }
            "jsonldContext" => {
                sub.jsonld_context = if null {
                    None
                } else {
                    let url = string(value, key)?;
                    if !is_uri(url) || !url.contains("://") {
                        return Err(bad(format!("jsonldContext {url:?} is not a URI")));
                    }
                    Some(url.to_owned())
                };
            }
            _ => unreachable!("every writable member is handled"),
        }
    }
    Ok(())
}

fn selectors(value: &Value, ctx: &Context) -> Result<Vec<Selector>, NgsiLdError> {
    let items = value.as_array().ok_or_else(|| bad("entities must be an array"))?;
    if items.is_empty() {
        return Err(bad("entities must not be empty"));
    }
    items
        .iter()
        .map(|item| {
            let map = item.as_object().ok_or_else(|| bad("each item of entities must be an object"))?;
            let mut selector = Selector::default();
            for (key, value) in map {
                match key.as_str() {
                    "id" => {
                        let id = string(value, "entities.id")?;
                        check_uri(id, "entities.id")?;
                        selector.id = Some(id.to_owned());
                    }
                    "idPattern" => {
                        let pattern = string(value, "entities.idPattern")?;
                        regex::Regex::new(pattern).map_err(|_| bad(format!("invalid idPattern {pattern:?}")))?;
                        selector.id_pattern = Some(pattern.to_owned());
                    }
                    "type" => {
                        let t = string(value, "entities.type")?;
                        TypeExpr::parse(t, ctx).map_err(|e| bad(format!("invalid entities.type: {e}")))?;
                        selector.r#type = Some(expand_type(t, ctx));
                    }
                    other => return Err(bad(format!("unknown member entities.{other}"))),
                }
            }
            if selector.r#type.is_none() {
                return Err(bad("each item of entities needs a type"));
            }
            Ok(selector)
        })
        .collect()
}

/// A single type is stored expanded; a type expression keeps its terms (read with `context`).
fn expand_type(t: &str, ctx: &Context) -> String {
    if t.contains([',', ';', '|', '(', ')']) {
        t.to_owned()
    } else {
        ctx.expand_term(t).into_owned()
    }
}

fn geo_q(value: &Value, ctx: &Context) -> Result<GeoQ, NgsiLdError> {
    let map = value.as_object().ok_or_else(|| bad("geoQ must be an object"))?;
    let member = |name: &str| map.get(name).ok_or_else(|| bad(format!("geoQ needs {name}")));
    let georel = string(member("georel")?, "geoQ.georel")?.to_owned();
    let geometry = string(member("geometry")?, "geoQ.geometry")?.to_owned();
    let coordinates = member("coordinates")?.clone();
    let geoproperty = match map.get("geoproperty") {
        Some(g) => ctx.expand_term(string(g, "geoQ.geoproperty")?).into_owned(),
        None => ctx.expand_term("location").into_owned(),
    };
    let geo = GeoQ { georel, geometry, coordinates, geoproperty };
    compile_geo(&geo).map_err(|e| bad(format!("invalid geoQ: {e}")))?;
    Ok(geo)
}

pub fn compile_geo(geo: &GeoQ) -> Result<GeoQuery, ngsild_query::ParseError> {
    let coordinates = match &geo.coordinates {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    GeoQuery::parse(&geo.georel, &geo.geometry, &coordinates, &geo.geoproperty)
}

/// Rules across members.
fn check(sub: &Subscription, ctx: &Context) -> Result<(), NgsiLdError> {
    if sub.entities.is_empty() && sub.watched_attributes.is_empty() {
        return Err(bad("a subscription needs entities or watchedAttributes"));
    }
    if sub.time_interval.is_some() && !sub.watched_attributes.is_empty() {
        return Err(bad("timeInterval and watchedAttributes cannot be combined"));
    }
    if sub.time_interval.is_some() && sub.throttling.is_some() {
        return Err(bad("timeInterval and throttling cannot be combined"));
    }
    if let Some(q) = &sub.q {
        QExpr::parse(q, ctx).map_err(|e| bad(format!("invalid q: {e}")))?;
    }
    if let Some(csf) = &sub.csf {
        QExpr::parse(csf, ctx).map_err(|e| bad(format!("invalid csf: {e}")))?;
    }
    Ok(())
}

/// The subscription's state (clause 5.2.12 `status`).
pub fn state(sub: &Subscription, now: chrono::DateTime<chrono::Utc>) -> &'static str {
    if sub.expires_at.as_deref().and_then(parse_datetime).is_some_and(|at| at <= now) {
        "expired"
    } else if sub.is_active {
        "active"
    } else {
        "paused"
    }
}

/// Shows a subscription in a client's @context, with its status.
pub fn render(
    kind: SubscriptionKind,
    sub: &Subscription,
    status: &DeliveryStatus,
    ctx: &Context,
    sys_attrs: bool,
) -> Map<String, Value> {
    let compact = |name: &str| Value::String(ctx.compact_iri(name).into_owned());
    let mut out = Map::new();
    out.insert("id".into(), json!(sub.id));
    out.insert("type".into(), json!("Subscription"));
    if let Some(name) = &sub.subscription_name {
        out.insert("subscriptionName".into(), json!(name));
    }
    if let Some(d) = &sub.description {
        out.insert("description".into(), json!(d));
    }
    if !sub.entities.is_empty() {
        let entities: Vec<Value> = sub
            .entities
            .iter()
            .map(|s| {
                let mut m = Map::new();
                if let Some(id) = &s.id {
                    m.insert("id".into(), json!(id));
                }
                if let Some(p) = &s.id_pattern {
                    m.insert("idPattern".into(), json!(p));
                }
                if let Some(t) = &s.r#type {
                    m.insert("type".into(), compact(t));
                }
                Value::Object(m)
            })
            .collect();
        out.insert("entities".into(), Value::Array(entities));
    }
    if !sub.watched_attributes.is_empty() {
        out.insert("watchedAttributes".into(), sub.watched_attributes.iter().map(|a| compact(a)).collect());
    }
    // The triggers name entity events: a csource subscription shows only those it was given.
    let triggers = match kind {
        SubscriptionKind::Entity => Some(sub.notification_trigger.clone().unwrap_or_else(|| Trigger::DEFAULT.to_vec())),
        SubscriptionKind::CSource => sub.notification_trigger.clone(),
    };
    if let Some(triggers) = triggers {
        out.insert("notificationTrigger".into(), triggers.iter().map(|t| json!(t.name())).collect());
    }
    if let Some(q) = &sub.q {
        out.insert("q".into(), json!(q));
    }
    if let Some(csf) = &sub.csf {
        out.insert("csf".into(), json!(csf));
    }
    if let Some(g) = &sub.geo_q {
        out.insert(
            "geoQ".into(),
            json!({"georel": g.georel, "geometry": g.geometry, "coordinates": g.coordinates, "geoproperty": compact(&g.geoproperty)}),
        );
    }
    if let Some(s) = &sub.scope_q {
        out.insert("scopeQ".into(), json!(s));
    }
    if let Some(l) = &sub.lang {
        out.insert("lang".into(), json!(l));
    }
    let n = &sub.notification;
    let mut notification = Map::new();
    if !n.attributes.is_empty() {
        notification.insert("attributes".into(), n.attributes.iter().map(|a| compact(a)).collect());
    }
    let format = match n.format {
        NotifyFormat::Normalized => "normalized",
        NotifyFormat::KeyValues => "keyValues",
        NotifyFormat::Concise => "concise",
    };
    notification.insert("format".into(), json!(format));
    if n.show_changes {
        notification.insert("showChanges".into(), json!(true));
    }
    if n.sys_attrs {
        notification.insert("sysAttrs".into(), json!(true));
    }
    if let Some(join) = n.join {
        notification.insert("join".into(), json!(if join == NotifyJoin::Flat { "flat" } else { "inline" }));
        notification.insert("joinLevel".into(), json!(n.join_level.unwrap_or(1)));
    }
    let mut endpoint = Map::new();
    endpoint.insert("uri".into(), json!(n.endpoint.uri));
    endpoint.insert("accept".into(), json!(n.endpoint.accept));
    if !n.endpoint.receiver_info.is_empty() {
        endpoint.insert("receiverInfo".into(), key_value_list(&n.endpoint.receiver_info));
    }
    if !n.endpoint.notifier_info.is_empty() {
        endpoint.insert("notifierInfo".into(), key_value_list(&n.endpoint.notifier_info));
    }
    notification.insert("endpoint".into(), Value::Object(endpoint));
    // Delivery status appears once something was sent (clause 5.2.14: `status` ok/failed).
    if status.times_sent > 0 {
        let delivered_ok = match (&status.last_success, &status.last_failure) {
            (_, None) => true,
            (Some(ok), Some(failed)) => ok >= failed,
            (None, Some(_)) => false,
        };
        notification.insert("status".into(), json!(if delivered_ok { "ok" } else { "failed" }));
        notification.insert("timesSent".into(), json!(status.times_sent));
    }
    if status.times_failed > 0 {
        notification.insert("timesFailed".into(), json!(status.times_failed));
    }
    for (name, value) in [
        ("lastNotification", &status.last_notification),
        ("lastSuccess", &status.last_success),
        ("lastFailure", &status.last_failure),
    ] {
        if let Some(v) = value {
            notification.insert(name.into(), json!(v));
        }
    }
    // A cityhub extension: notifications lost to a full outbox or to giving up on an endpoint.
    if status.dropped > 0 {
        notification.insert("droppedNotifications".into(), json!(status.dropped));
    }
    out.insert("notification".into(), Value::Object(notification));
    if let Some(t) = sub.time_interval {
        out.insert("timeInterval".into(), number(t));
    }
    if let Some(t) = sub.throttling {
        out.insert("throttling".into(), number(t));
    }
    if let Some(e) = &sub.expires_at {
        out.insert("expiresAt".into(), json!(e));
    }
    if !sub.is_active {
        out.insert("isActive".into(), json!(false));
    }
    if let Some(ids) = &sub.dataset_ids {
        out.insert("datasetId".into(), json!(ids));
    }
    out.insert("status".into(), json!(state(sub, chrono::Utc::now())));
    if let Some(c) = &sub.jsonld_context {
        out.insert("jsonldContext".into(), json!(c));
    }
    if sys_attrs {
        out.insert("createdAt".into(), json!(sub.created_at));
        out.insert("modifiedAt".into(), json!(sub.modified_at));
    }
    out
}

/// Whole numbers print without a fraction, as clients wrote them.
fn number(n: f64) -> Value {
    if n.fract() == 0.0 && n.abs() < 1e15 {
        json!(n as i64)
    } else {
        json!(n)
    }
}

/// `receiverInfo`/`notifierInfo` as shown: `[{"key": .., "value": ..}]`.
fn key_value_list(items: &[KeyValue]) -> Value {
    Value::Array(items.iter().map(|kv| json!({"key": kv.key, "value": kv.value})).collect())
}
