//! The `ContextSourceRegistration` (clause 5.2.9) in stored form: entity types and attribute names
//! expanded to IRIs, everything else as given, so that any client reads it in its own @context.

use indexmap::IndexMap;
use ngsild_core::NgsiLdError;
use ngsild_jsonld::Context;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

pub const REGISTRATION_TYPE: &str = "ContextSourceRegistration";

/// `contextSourceAlias` expanded with the core context.
const ALIAS_IRI: &str = "https://uri.etsi.org/ngsi-ld/contextSourceAlias";

/// How a registered source relates to the hub's own data (clause 4.3.6.2/3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// The source adds to the hub's data; both are asked and merged.
    #[default]
    Inclusive,
    /// The source alone holds the registered attributes of the registered entities.
    Exclusive,
    /// The source alone holds the registered entities: requests go there, not to the hub.
    Redirect,
    /// The source is a fallback: asked for reads only, and its attributes lose to others.
    Auxiliary,
}

impl Mode {
    pub fn name(self) -> &'static str {
        match self {
            Mode::Inclusive => "inclusive",
            Mode::Exclusive => "exclusive",
            Mode::Redirect => "redirect",
            Mode::Auxiliary => "auxiliary",
        }
    }

    pub fn parse(name: &str) -> Option<Mode> {
        [Mode::Inclusive, Mode::Exclusive, Mode::Redirect, Mode::Auxiliary].into_iter().find(|m| m.name() == name)
    }
}

/// One `EntityInfo` (clause 5.2.8): an id, an id pattern or neither, and a type.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Selector {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id_pattern: Option<String>,
    /// Expanded type IRIs (one in practice).
    pub types: Vec<String>,
}

/// One `RegistrationInfo` (clause 5.2.10).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Information {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub entities: Vec<Selector>,
    /// Expanded names.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub property_names: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub relationship_names: Vec<String>,
}

impl Information {
    /// Every attribute name this information registers (empty: all of them).
    pub fn attribute_names(&self) -> impl Iterator<Item = &String> {
        self.property_names.iter().chain(&self.relationship_names)
    }
}

/// The entities a registration query or a csource subscription asks about (clause 5.12): a type
/// selector, entity ids, an id pattern, each optional.
#[derive(Debug, Clone, Copy, Default)]
pub struct EntitySpec<'a> {
    pub types: Option<&'a ngsild_query::TypeExpr>,
    pub ids: &'a [String],
    pub id_pattern: Option<&'a regex::Regex>,
}

impl Selector {
    /// Clause 5.12: the type selector matches this EntityInfo's types, and the ids meet: it names
    /// neither id nor idPattern, or a specified id matches its id or idPattern, or the specified
    /// pattern its id, or both give patterns (whether two patterns meet cannot be decided).
    pub fn meets(&self, spec: &EntitySpec<'_>) -> bool {
        let type_ok = spec.types.is_none_or(|t| t.matches(&self.types));
        let own_pattern = self.id_pattern.as_deref().and_then(|p| regex::Regex::new(p).ok());
        let id_given = !spec.ids.is_empty() || spec.id_pattern.is_some();
        let ids_ok = !id_given
            || (self.id.is_none() && self.id_pattern.is_none())
            || spec
                .ids
                .iter()
                .any(|id| self.id.as_ref() == Some(id) || own_pattern.as_ref().is_some_and(|p| p.is_match(id)))
            || spec.id_pattern.is_some_and(|wanted| match &self.id {
                Some(id) => wanted.is_match(id),
                None => self.id_pattern.is_some(),
            });
        type_ok && ids_ok
    }
}

impl Information {
    /// Clause 5.12: one of the entity specifications meets one of its EntityInfos (one naming no
    /// EntityInfo registers attributes of any entity), and one of the attribute names is among
    /// those it registers (none given: any; none registered: all).
    pub fn matches(&self, specs: &[EntitySpec<'_>], attrs: &[&String]) -> bool {
        let entities_ok = specs.is_empty()
            || self.entities.is_empty()
            || specs.iter().any(|s| self.entities.iter().any(|e| e.meets(s)));
        let names: Vec<&String> = self.attribute_names().collect();
        let attrs_ok = attrs.is_empty() || names.is_empty() || attrs.iter().any(|a| names.contains(a));
        entities_ok && attrs_ok
    }
}

/// How requests to the source went (clause 5.2.9 status members).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SourceStatus {
    #[serde(default)]
    pub times_sent: u64,
    #[serde(default)]
    pub times_failed: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_success: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_failure: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Registration {
    pub id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub registration_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    pub information: Vec<Information>,
    /// The tenant to use at the source.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observation_interval: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub management_interval: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub location: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observation_space: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operation_space: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<String>,
    pub endpoint: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub context_source_info: Option<Value>,
    /// The source's own name for itself (clause 5.2.9, the `contextSourceAlias` its
    /// `/info/sourceIdentity` serves): an RFC 7230 token. A request whose `Via` already lists it
    /// has crossed that source, so this registration does not match it (clause 5.12).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub context_source_alias: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub scope: Vec<String>,
    #[serde(default)]
    pub mode: Mode,
    /// Operations and operation groups as given (None: `federationOps`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operations: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refresh_rate: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub management: Option<Value>,
    /// Further members (CSource properties), by expanded name, values as given.
    #[serde(default, skip_serializing_if = "IndexMap::is_empty")]
    pub extra: IndexMap<String, Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_at: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub modified_at: Option<String>,
    #[serde(default)]
    pub status: SourceStatus,
}

/// The operations a broker takes on behalf of distributed operations (clause 4.20, Table 4.20-1
/// "Support operations for distributed operations"): accepted in registrations, not forwarded.
const DISTRIBUTION_SUPPORT: &[&str] = &[
    "retrieveEntityMap",
    "updateEntityMap",
    "deleteEntityMap",
    "createEntityMapQueryEntity",
    "createEntityMapQueryTemporal",
    "retrieveContextSourceIdentity",
];

/// The consumption operations of clause 5.7 and the subscription operations of clause 5.8 that
/// `federationOps` and `associationOps` share (Table 4.20-2); the temporal ones are not among them.
const CONSUMPTION: &[&str] = &[
    "retrieveEntity",
    "queryEntity",
    "queryBatch",
    "retrieveEntityTypes",
    "retrieveEntityTypeDetails",
    "retrieveEntityTypeInfo",
    "retrieveAttrTypes",
    "retrieveAttrTypeDetails",
    "retrieveAttrTypeInfo",
    "createSubscription",
    "updateSubscription",
    "retrieveSubscription",
    "querySubscription",
    "deleteSubscription",
];

/// Named operation groups (clause 4.20, Table 4.20-2) and the operations each stands for.
const GROUPS: &[(&str, &[&[&str]])] = &[
    (
        "federationOps",
        &[
            CONSUMPTION,
            &[
                "retrieveEntityMap",
                "updateEntityMap",
                "deleteEntityMap",
                "createEntityMapQueryEntity",
                "retrieveContextSourceIdentity",
            ],
        ],
    ),
    ("associationOps", &[CONSUMPTION, &["retrieveContextSourceIdentity"]]),
    ("updateOps", &[&["updateEntity", "updateAttrs", "replaceEntity", "replaceAttrs"]]),
    ("retrieveOps", &[&["retrieveEntity", "queryEntity"]]),
    (
        "redirectionOps",
        &[&[
            "createEntity",
            "updateEntity",
            "appendAttrs",
            "updateAttrs",
            "deleteAttrs",
            "deleteEntity",
            "mergeEntity",
            "replaceEntity",
            "replaceAttrs",
            "retrieveEntity",
            "queryEntity",
            "purgeEntity",
            "retrieveEntityTypes",
            "retrieveEntityTypeDetails",
            "retrieveEntityTypeInfo",
            "retrieveAttrTypes",
            "retrieveAttrTypeDetails",
            "retrieveAttrTypeInfo",
            "retrieveEntityMap",
            "updateEntityMap",
            "deleteEntityMap",
            "createEntityMapQueryEntity",
            "retrieveContextSourceIdentity",
        ]],
    ),
];

/// The operation names of clause 4.20, Table 4.20-1, besides [`DISTRIBUTION_SUPPORT`].
const OPERATIONS: &[&str] = &[
    "createEntity",
    "updateEntity",
    "appendAttrs",
    "updateAttrs",
    "deleteAttrs",
    "deleteEntity",
    "createBatch",
    "upsertBatch",
    "updateBatch",
    "deleteBatch",
    "upsertTemporal",
    "appendAttrsTemporal",
    "deleteAttrsTemporal",
    "updateAttrInstanceTemporal",
    "deleteAttrInstanceTemporal",
    "deleteTemporal",
    "mergeEntity",
    "replaceEntity",
    "replaceAttrs",
    "mergeBatch",
    "purgeEntity",
    "retrieveEntity",
    "queryEntity",
    "queryBatch",
    "retrieveTemporal",
    "queryTemporal",
    "retrieveEntityTypes",
    "retrieveEntityTypeDetails",
    "retrieveEntityTypeInfo",
    "retrieveAttrTypes",
    "retrieveAttrTypeDetails",
    "retrieveAttrTypeInfo",
    "createSubscription",
    "updateSubscription",
    "retrieveSubscription",
    "querySubscription",
    "deleteSubscription",
];

fn group_has(group: &str, operation: &str) -> bool {
    GROUPS.iter().any(|(name, parts)| *name == group && parts.iter().any(|part| part.contains(&operation)))
}

fn known_operation(name: &str) -> bool {
    OPERATIONS.contains(&name) || DISTRIBUTION_SUPPORT.contains(&name) || GROUPS.iter().any(|(g, _)| *g == name)
}

impl Registration {
    /// Whether the source takes this operation (an operation name, not a group).
    pub fn supports(&self, operation: &str) -> bool {
        let given: &[String] = self.operations.as_deref().unwrap_or(&[]);
        let given_default = ["federationOps".to_owned()];
        let names: &[String] = if self.operations.is_none() { &given_default } else { given };
        names.iter().any(|name| name == operation || group_has(name, operation))
    }

    /// Whether the registration has expired at `now` (RFC 3339).
    pub fn expired(&self, now: &str) -> bool {
        let at = |s: &str| ngsild_core::time::parse_datetime(s);
        match (self.expires_at.as_deref().and_then(at), at(now)) {
            (Some(expires), Some(now)) => expires <= now,
            _ => false,
        }
    }

    /// The stored form as JSON.
    #[expect(
        clippy::expect_used,
        reason = "serde_json fails only on maps with non-string keys or on a Serialize impl that \
                  errors; a Registration has neither (`stored_form_round_trips` covers every member)"
    )]
    pub fn to_stored(&self) -> Value {
        serde_json::to_value(self).expect("a Registration always serializes")
    }

    /// A stored registration read back, or why it cannot be (with its id when it has one), so
    /// the caller can log it: a record that does not decode must not vanish without a trace.
    pub fn decode(value: Value) -> Result<Registration, String> {
        let id = value.get("id").and_then(Value::as_str).map(str::to_owned);
        let mut reg: Registration = serde_json::from_value(value).map_err(|e| match id {
            Some(id) => format!("the stored registration {id} does not decode: {e}"),
            None => format!("a stored registration without an id does not decode: {e}"),
        })?;
        // Registrations stored before the alias had a member of its own kept it among the
        // CSource properties.
        if reg.context_source_alias.is_none() {
            if let Some(Value::String(alias)) = reg.extra.get(ALIAS_IRI) {
                if crate::via::check_alias(alias).is_ok() {
                    reg.context_source_alias = Some(alias.clone());
                    reg.extra.shift_remove(ALIAS_IRI);
                }
            }
        }
        Ok(reg)
    }

    /// [`Registration::decode`] without the reason. Prefer `decode` (or [`Registration::decode_all`])
    /// and log the reason: this drops an undecodable record silently.
    pub fn from_stored(value: Value) -> Option<Registration> {
        Registration::decode(value).ok()
    }

    /// Every stored record that decodes, and for each one that does not, why.
    pub fn decode_all(docs: impl IntoIterator<Item = Value>) -> (Vec<Registration>, Vec<String>) {
        let mut regs = Vec::new();
        let mut problems = Vec::new();
        for doc in docs {
            match Registration::decode(doc) {
                Ok(reg) => regs.push(reg),
                Err(why) => problems.push(why),
            }
        }
        (regs, problems)
    }
}

fn bad(detail: impl Into<String>) -> NgsiLdError {
    NgsiLdError::bad_request(detail)
}

fn string_member(value: &Value, what: &str) -> Result<String, NgsiLdError> {
    value.as_str().map(str::to_owned).ok_or_else(|| bad(format!("{what} must be a string")))
}

fn string_list(value: &Value, what: &str) -> Result<Vec<String>, NgsiLdError> {
    let items = value.as_array().ok_or_else(|| bad(format!("{what} must be an array of strings")))?;
    items.iter().map(|v| string_member(v, what)).collect()
}

fn check_datetime(value: &Value, what: &str) -> Result<String, NgsiLdError> {
    let text = string_member(value, what)?;
    ngsild_core::time::parse_datetime(&text).ok_or_else(|| bad(format!("{what} is not a valid date-time")))?;
    Ok(text)
}

fn check_interval(value: &Value, what: &str) -> Result<Value, NgsiLdError> {
    let map = value.as_object().ok_or_else(|| bad(format!("{what} must be an object")))?;
    let start = map.get("startAt").ok_or_else(|| bad(format!("{what} needs startAt")))?;
    check_datetime(start, &format!("{what}.startAt"))?;
    if let Some(end) = map.get("endAt") {
        check_datetime(end, &format!("{what}.endAt"))?;
    }
    Ok(value.clone())
}

fn check_geometry(value: &Value, what: &str) -> Result<Value, NgsiLdError> {
    ngsild_core::expand::validate_geometry(value).map_err(|e| bad(format!("{what}: {e}")))?;
    Ok(value.clone())
}

fn check_attribute_name(name: &str, ctx: &Context) -> Result<String, NgsiLdError> {
    ngsild_core::expand::expand_attribute_name(name, ctx)
}

fn parse_information(value: &Value, ctx: &Context) -> Result<Vec<Information>, NgsiLdError> {
    let items =
        value.as_array().filter(|a| !a.is_empty()).ok_or_else(|| bad("information must be a non-empty array"))?;
    let mut out = Vec::new();
    for item in items {
        let map = item.as_object().ok_or_else(|| bad("each information item must be an object"))?;
        let mut info = Information::default();
        for (key, value) in map {
            match key.as_str() {
                "entities" => {
                    let selectors = value
                        .as_array()
                        .filter(|a| !a.is_empty())
                        .ok_or_else(|| bad("entities must be a non-empty array"))?;
                    for selector in selectors {
                        info.entities.push(parse_selector(selector, ctx)?);
                    }
                }
                "propertyNames" => {
                    info.property_names = string_list(value, "propertyNames")?
                        .iter()
                        .map(|n| check_attribute_name(n, ctx))
                        .collect::<Result<_, _>>()?
                }
                "relationshipNames" => {
                    info.relationship_names = string_list(value, "relationshipNames")?
                        .iter()
                        .map(|n| check_attribute_name(n, ctx))
                        .collect::<Result<_, _>>()?
                }
                other => return Err(bad(format!("unknown member {other:?} in information"))),
            }
        }
        if info.entities.is_empty() && info.property_names.is_empty() && info.relationship_names.is_empty() {
            return Err(bad("an information item needs entities, propertyNames or relationshipNames"));
        }
        out.push(info);
    }
    Ok(out)
}

fn parse_selector(value: &Value, ctx: &Context) -> Result<Selector, NgsiLdError> {
    let map = value.as_object().ok_or_else(|| bad("each entities item must be an object"))?;
    let id = map.get("id").map(|v| string_member(v, "entities[].id")).transpose()?;
    if let Some(id) = &id {
        ngsild_core::validate::check_uri(id, "entities[].id")?;
    }
    let id_pattern = map.get("idPattern").map(|v| string_member(v, "entities[].idPattern")).transpose()?;
    if let Some(pattern) = &id_pattern {
        regex::Regex::new(pattern).map_err(|_| bad(format!("invalid idPattern {pattern:?}")))?;
    }
    let types = match map.get("type") {
        Some(Value::String(t)) => vec![t.clone()],
        Some(Value::Array(items)) => string_list(&Value::Array(items.clone()), "entities[].type")?,
        _ => return Err(bad("each entities item needs a type")),
    };
    if types.is_empty() {
        return Err(bad("each entities item needs a type"));
    }
    let types = types
        .iter()
        .map(|t| {
            ngsild_core::validate::check_name(t, "entity type")
                .or_else(|_| ngsild_core::validate::check_uri(t, "entity type"))?;
            Ok(ctx.expand_term(t).into_owned())
        })
        .collect::<Result<_, NgsiLdError>>()?;
    Ok(Selector { id, id_pattern, types })
}

/// Members a client may not set: the hub keeps them.
const SYSTEM_MEMBERS: &[&str] =
    &["createdAt", "modifiedAt", "status", "timesSent", "timesFailed", "lastSuccess", "lastFailure", "@context"];

/// Reads a registration payload (its `@context` already taken out and resolved to `ctx`). A
/// missing id is left empty for the caller to assign.
pub fn parse_registration(body: &Map<String, Value>, ctx: &Context, now: &str) -> Result<Registration, NgsiLdError> {
    let mut reg = Registration {
        id: String::new(),
        registration_name: None,
        description: None,
        information: Vec::new(),
        tenant: None,
        observation_interval: None,
        management_interval: None,
        location: None,
        observation_space: None,
        operation_space: None,
        expires_at: None,
        endpoint: String::new(),
        context_source_info: None,
        context_source_alias: None,
        scope: Vec::new(),
        mode: Mode::Inclusive,
        operations: None,
        refresh_rate: None,
        management: None,
        extra: IndexMap::new(),
        created_at: None,
        modified_at: None,
        status: SourceStatus::default(),
    };
    match body.get("type").and_then(Value::as_str) {
        Some(REGISTRATION_TYPE) => {}
        Some(other) if ctx.expand_term(other) == "https://uri.etsi.org/ngsi-ld/ContextSourceRegistration" => {}
        _ => return Err(bad("type must be ContextSourceRegistration")),
    }
    let mut information = None;
    for (key, value) in body {
        match key.as_str() {
            "type" => {}
            "id" => {
                let id = string_member(value, "id")?;
                ngsild_core::validate::check_uri(&id, "the registration id")?;
                reg.id = id;
            }
            "registrationName" => reg.registration_name = Some(string_member(value, key)?),
            "description" => reg.description = Some(string_member(value, key)?),
            "information" => information = Some(parse_information(value, ctx)?),
            "tenant" => reg.tenant = Some(string_member(value, key)?),
            "observationInterval" => reg.observation_interval = Some(check_interval(value, key)?),
            "managementInterval" => reg.management_interval = Some(check_interval(value, key)?),
            "location" => reg.location = Some(check_geometry(value, key)?),
            "observationSpace" => reg.observation_space = Some(check_geometry(value, key)?),
            "operationSpace" => reg.operation_space = Some(check_geometry(value, key)?),
            "expiresAt" => {
                let at = check_datetime(value, key)?;
                reg.expires_at = Some(at);
                if reg.expired(now) {
                    return Err(bad("expiresAt is in the past"));
                }
            }
            "endpoint" => {
                let endpoint = string_member(value, key)?;
                if !(endpoint.starts_with("http://") || endpoint.starts_with("https://")) {
                    return Err(bad(format!("endpoint must be an http(s) URL, not {endpoint:?}")));
                }
                reg.endpoint = endpoint;
            }
            "contextSourceInfo" => {
                let pairs = value.as_array().ok_or_else(|| bad("contextSourceInfo must be an array"))?;
                if pairs.iter().any(|p| {
                    !(p.get("key").is_some_and(Value::is_string) && p.get("value").is_some_and(Value::is_string))
                }) {
                    return Err(bad("each contextSourceInfo item needs a key and a value, both strings"));
                }
                // They are sent as headers of every forwarded request.
                for pair in pairs {
                    let text = |m: &str| pair.get(m).and_then(Value::as_str).unwrap_or_default();
                    ngsild_core::validate::check_header_field(text("key"), text("value"), "contextSourceInfo")?;
                }
                reg.context_source_info = Some(value.clone());
            }
            "contextSourceAlias" => {
                let alias = string_member(value, key)?;
                crate::via::check_alias(&alias).map_err(|why| bad(format!("contextSourceAlias {alias:?} {why}")))?;
                reg.context_source_alias = Some(alias);
            }
            "scope" => {
                reg.scope = ngsild_core::expand::parse_scope(value)?;
            }
            "mode" => {
                let name = string_member(value, key)?;
                reg.mode = Mode::parse(&name).ok_or_else(|| bad(format!("unknown mode {name:?}")))?;
            }
            "operations" => {
                let names = string_list(value, key)?;
                if names.is_empty() {
                    return Err(bad("operations must not be empty"));
                }
                if let Some(unknown) = names.iter().find(|n| !known_operation(n)) {
                    return Err(bad(format!("unknown operation {unknown:?}")));
                }
                reg.operations = Some(names);
            }
            "refreshRate" => reg.refresh_rate = Some(string_member(value, key)?),
            "management" => {
                if !value.is_object() {
                    return Err(bad("management must be an object"));
                }
                reg.management = Some(value.clone());
            }
            name if SYSTEM_MEMBERS.contains(&name) => {}
            name => {
                if value.is_null() {
                    return Err(bad(format!("{name} must not be null")));
                }
                let expanded = check_attribute_name(name, ctx)?;
                reg.extra.insert(expanded, value.clone());
            }
        }
    }
    reg.information = information.ok_or_else(|| bad("a registration needs information"))?;
    if reg.endpoint.is_empty() {
        return Err(bad("a registration needs an endpoint"));
    }
    check_mode_rules(&reg)?;
    Ok(reg)
}

/// Clause 4.3.6.3: a registration that takes data away from the hub must say exactly what.
fn check_mode_rules(reg: &Registration) -> Result<(), NgsiLdError> {
    if reg.mode == Mode::Exclusive
        && reg
            .information
            .iter()
            .any(|i| i.entities.iter().any(|s| s.id.is_none()) && i.attribute_names().next().is_none())
    {
        return Err(bad("an exclusive registration must name attributes or entity ids"));
    }
    Ok(())
}

/// The registration as a client reads it, names compacted with `ctx`.
pub fn render_registration(reg: &Registration, ctx: &Context, sys_attrs: bool) -> Map<String, Value> {
    let compact = |iri: &str| Value::String(ctx.compact_iri(iri).into_owned());
    let mut out = Map::new();
    out.insert("id".into(), Value::String(reg.id.clone()));
    out.insert("type".into(), Value::String(REGISTRATION_TYPE.into()));
    let mut put = |key: &str, value: Option<Value>| {
        if let Some(value) = value {
            out.insert(key.to_owned(), value);
        }
    };
    put("registrationName", reg.registration_name.clone().map(Value::String));
    put("description", reg.description.clone().map(Value::String));
    let information = reg
        .information
        .iter()
        .map(|info| {
            let mut m = Map::new();
            if !info.entities.is_empty() {
                let entities = info
                    .entities
                    .iter()
                    .map(|s| {
                        let mut e = Map::new();
                        if let Some(id) = &s.id {
                            e.insert("id".into(), Value::String(id.clone()));
                        }
                        if let Some(p) = &s.id_pattern {
                            e.insert("idPattern".into(), Value::String(p.clone()));
                        }
                        let types: Vec<Value> = s.types.iter().map(|t| compact(t)).collect();
                        e.insert("type".into(), if types.len() == 1 { types[0].clone() } else { Value::Array(types) });
                        Value::Object(e)
                    })
                    .collect();
                m.insert("entities".into(), Value::Array(entities));
            }
            if !info.property_names.is_empty() {
                m.insert("propertyNames".into(), info.property_names.iter().map(|n| compact(n)).collect());
            }
            if !info.relationship_names.is_empty() {
                m.insert("relationshipNames".into(), info.relationship_names.iter().map(|n| compact(n)).collect());
            }
            Value::Object(m)
        })
        .collect();
    put("information", Some(Value::Array(information)));
    put("tenant", reg.tenant.clone().map(Value::String));
    put("observationInterval", reg.observation_interval.clone());
    put("managementInterval", reg.management_interval.clone());
    put("location", reg.location.clone());
    put("observationSpace", reg.observation_space.clone());
    put("operationSpace", reg.operation_space.clone());
    put("expiresAt", reg.expires_at.clone().map(Value::String));
    put("endpoint", Some(Value::String(reg.endpoint.clone())));
    put("contextSourceInfo", reg.context_source_info.clone());
    put("contextSourceAlias", reg.context_source_alias.clone().map(Value::String));
    if !reg.scope.is_empty() {
        let scope: Vec<Value> = reg.scope.iter().cloned().map(Value::String).collect();
        put("scope", Some(if scope.len() == 1 { scope[0].clone() } else { Value::Array(scope) }));
    }
    put("mode", Some(Value::String(reg.mode.name().into())));
    put(
        "operations",
        Some(
            reg.operations
                .clone()
                .unwrap_or_else(|| vec!["federationOps".into()])
                .into_iter()
                .map(Value::String)
                .collect(),
        ),
    );
    put("refreshRate", reg.refresh_rate.clone().map(Value::String));
    put("management", reg.management.clone());
    for (name, value) in &reg.extra {
        out.insert(ctx.compact_iri(name).into_owned(), value.clone());
    }
    if sys_attrs {
        let failing = reg.status.last_failure.is_some() && reg.status.last_failure > reg.status.last_success;
        out.insert("status".into(), Value::String(if failing { "failed" } else { "ok" }.into()));
        let mut put = |key: &str, value: Option<Value>| {
            if let Some(value) = value {
                out.insert(key.to_owned(), value);
            }
        };
        put("createdAt", reg.created_at.clone().map(Value::String));
        put("modifiedAt", reg.modified_at.clone().map(Value::String));
        put("timesSent", Some(reg.status.times_sent.into()));
        put("timesFailed", Some(reg.status.times_failed.into()));
        put("lastSuccess", reg.status.last_success.clone().map(Value::String));
        put("lastFailure", reg.status.last_failure.clone().map(Value::String));
    }
    out
}

/// Applies a registration fragment (clause 5.9.3): members given replace the registration's,
/// `null` removes an optional one. The result is validated as a whole.
pub fn patch_registration(
    reg: &Registration,
    fragment: &Map<String, Value>,
    ctx: &Context,
    now: &str,
) -> Result<Registration, NgsiLdError> {
    if fragment.is_empty() {
        return Err(bad("the registration fragment is empty"));
    }
    if let Some(id) = fragment.get("id") {
        if id.as_str() != Some(reg.id.as_str()) {
            return Err(bad("the id of a registration cannot change"));
        }
    }
    let mut whole = render_registration(reg, ctx, false);
    whole.remove("status");
    for (key, value) in fragment {
        if SYSTEM_MEMBERS.contains(&key.as_str()) {
            continue;
        }
        if value.is_null() {
            if matches!(key.as_str(), "information" | "endpoint" | "type" | "id") {
                return Err(bad(format!("{key} cannot be removed")));
            }
            whole.remove(key);
        } else {
            whole.insert(key.clone(), value.clone());
        }
    }
    let mut next = parse_registration(&whole, ctx, now)?;
    next.created_at = reg.created_at.clone();
    next.modified_at = Some(now.to_owned());
    next.status = reg.status.clone();
    Ok(next)
}

/// Whether a registered area (a GeoJSON geometry) meets the area a geo-query selects, so that the
/// source may hold entities the query matches. None when that cannot be decided from the areas:
/// `near` selects by distance from its geometry and `disjoint` by being elsewhere.
pub fn area_meets(area: &Value, geo: &ngsild_query::GeoQuery) -> Option<bool> {
    use ngsild_query::geo::GeoRel;
    if matches!(geo.rel, GeoRel::Near { .. } | GeoRel::Disjoint) {
        return None;
    }
    let mut probe = ngsild_core::Entity::new("urn:ngsi-ld:probe", Vec::new());
    let attr = ngsild_core::Attribute::new(ngsild_core::AttributeKind::GeoProperty, area.clone());
    probe.attrs.insert(geo.geoproperty.clone(), vec![attr]);
    let intersects = ngsild_query::GeoQuery { rel: GeoRel::Intersects, ..geo.clone() };
    Some(intersects.matches(&probe))
}

/// Whether a registration matches a geo-query on one of its geo-properties (clause 5.11.2): the
/// property (`geoproperty`: location, observationSpace or operationSpace) matches directly, or
/// its area may hold locations that match. A registration without that property does not match.
pub fn geo_matches(reg: &Registration, geo: &ngsild_query::GeoQuery) -> bool {
    let entity = as_entity(reg);
    let Some(area) = entity.attrs.get(&geo.geoproperty).and_then(|a| a.first()).map(|a| a.value.clone()) else {
        return false;
    };
    geo.matches(&entity) || area_meets(&area, geo) == Some(true)
}

/// The registration as an entity, for `q`-style filters (`csf`) and geo-queries on registrations:
/// its CSource properties, `endpoint`, `mode`, `registrationName` and `contextSourceInfo` keys
/// become properties; `location`, `observationSpace`, `operationSpace` geo-properties.
pub fn as_entity(reg: &Registration) -> ngsild_core::Entity {
    use ngsild_core::{Attribute, AttributeKind};
    let mut entity = ngsild_core::Entity::new(reg.id.clone(), vec![REGISTRATION_TYPE.to_owned()]);
    let mut put = |name: String, kind: AttributeKind, value: Value| {
        entity.attrs.insert(name, vec![Attribute::new(kind, value)]);
    };
    for (name, value) in &reg.extra {
        let value = value.get("value").cloned().unwrap_or_else(|| value.clone());
        put(name.clone(), AttributeKind::Property, value);
    }
    let core = "https://uri.etsi.org/ngsi-ld/";
    put(format!("{core}endpoint"), AttributeKind::Property, Value::String(reg.endpoint.clone()));
    put(format!("{core}mode"), AttributeKind::Property, Value::String(reg.mode.name().into()));
    if let Some(name) = &reg.registration_name {
        put(format!("{core}registrationName"), AttributeKind::Property, Value::String(name.clone()));
    }
    if let Some(alias) = &reg.context_source_alias {
        put(ALIAS_IRI.to_owned(), AttributeKind::Property, Value::String(alias.clone()));
    }
    for pair in reg.context_source_info.iter().flat_map(|v| v.as_array().into_iter().flatten()) {
        if let (Some(k), Some(v)) = (pair.get("key").and_then(Value::as_str), pair.get("value")) {
            put(k.to_owned(), AttributeKind::Property, v.clone());
        }
    }
    for (name, geo) in [
        ("location", &reg.location),
        ("observationSpace", &reg.observation_space),
        ("operationSpace", &reg.operation_space),
    ] {
        if let Some(geo) = geo {
            put(format!("{core}{name}"), AttributeKind::GeoProperty, geo.clone());
        }
    }
    entity.scope = reg.scope.clone();
    entity
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ctx() -> std::sync::Arc<Context> {
        ngsild_jsonld::core_context()
    }

    fn parse(body: Value) -> Result<Registration, NgsiLdError> {
        parse_registration(body.as_object().unwrap(), &ctx(), "2024-01-01T00:00:00Z")
    }

    fn minimal() -> Value {
        json!({
            "id": "urn:ngsi-ld:ContextSourceRegistration:1",
            "type": "ContextSourceRegistration",
            "information": [{"entities": [{"type": "Vehicle"}], "propertyNames": ["speed"]}],
            "endpoint": "http://busan.example:1026"
        })
    }

    #[test]
    fn a_registration_round_trips_through_stored_form() {
        let reg = parse(minimal()).unwrap();
        assert_eq!(reg.mode, Mode::Inclusive);
        assert!(reg.information[0].entities[0].types[0].starts_with("https://"));
        let stored = reg.to_stored();
        assert_eq!(Registration::from_stored(stored).unwrap(), reg);
        let shown = render_registration(&reg, &ctx(), false);
        assert_eq!(shown["information"][0]["entities"][0]["type"], "Vehicle");
        assert_eq!(shown["information"][0]["propertyNames"], json!(["speed"]));
        assert_eq!(shown["operations"], json!(["federationOps"]));
    }

    #[test]
    fn invalid_registrations_are_bad_request_data() {
        for body in [
            json!({"type": "ContextSourceRegistration", "information": null, "endpoint": "http://x"}),
            json!({"type": "Building", "information": [{"entities": [{"type": "A"}]}], "endpoint": "http://x"}),
            json!({"type": "ContextSourceRegistration", "information": [{"entities": [{"type": "A"}]}]}),
            json!({"type": "ContextSourceRegistration", "information": [{"entities": [{"type": "A"}]}], "endpoint": "http://x", "mode": "sometimes"}),
            json!({"type": "ContextSourceRegistration", "information": [{"entities": [{"type": "A"}]}], "endpoint": "http://x", "expiresAt": "2018-11-29T14:53:15Z"}),
        ] {
            let err = parse(body.clone()).unwrap_err();
            assert_eq!(err.kind, ngsild_core::ErrorKind::BadRequestData, "{body}");
        }
    }

    #[test]
    fn operation_groups_stand_for_their_operations() {
        let mut reg = parse(minimal()).unwrap();
        assert!(reg.supports("queryEntity"));
        assert!(!reg.supports("createEntity"));
        reg.operations = Some(vec!["redirectionOps".into(), "createBatch".into()]);
        assert!(reg.supports("createEntity") && reg.supports("createBatch") && !reg.supports("upsertBatch"));
    }

    #[test]
    fn the_groups_are_those_of_table_4_20_2() {
        let mut reg = parse(minimal()).unwrap();
        assert!(!reg.supports("queryTemporal"), "federationOps has no temporal operation");
        assert!(!reg.supports("purgeEntity"));
        reg.operations = Some(vec!["redirectionOps".into()]);
        assert!(reg.supports("purgeEntity") && reg.supports("retrieveAttrTypeInfo"));
        reg.operations = Some(vec!["associationOps".into()]);
        assert!(reg.supports("queryBatch") && !reg.supports("retrieveEntityMap"));
        let mut body = minimal();
        body["operations"] = json!(["purgeEntity", "updateAttrInstanceTemporal", "retrieveContextSourceIdentity"]);
        assert!(parse(body).is_ok());
        let mut body = minimal();
        body["operations"] = json!(["updateAttrsTemporal"]);
        assert!(parse(body).is_err(), "not a name of Table 4.20-1");
    }

    #[test]
    fn a_stored_record_that_does_not_decode_says_why() {
        let good = parse(minimal()).unwrap();
        let mut broken = good.to_stored();
        broken["id"] = json!("urn:ngsi-ld:ContextSourceRegistration:broken");
        broken["endpoint"] = json!(42);
        let why = Registration::decode(broken.clone()).unwrap_err();
        assert!(why.contains("urn:ngsi-ld:ContextSourceRegistration:broken"), "names the record: {why}");
        assert!(why.contains("invalid type"), "gives serde's cause: {why}");
        let why = Registration::decode(json!({"endpoint": "http://x"})).unwrap_err();
        assert!(why.starts_with("a stored registration without an id"), "{why}");
        let (regs, problems) = Registration::decode_all([good.to_stored(), broken]);
        assert_eq!(regs, vec![good]);
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(problems[0].contains(":broken"));
    }

    #[test]
    fn a_patch_replaces_members_and_null_removes_them() {
        let mut body = minimal();
        body["expiresAt"] = json!("2999-01-01T00:00:00Z");
        let reg = parse(body).unwrap();
        let fragment = json!({"expiresAt": null, "endpoint": "http://other:1026"});
        let next = patch_registration(&reg, fragment.as_object().unwrap(), &ctx(), "2024-01-02T00:00:00Z").unwrap();
        assert_eq!(next.expires_at, None);
        assert_eq!(next.endpoint, "http://other:1026");
        assert_eq!(next.information, reg.information);
    }

    #[test]
    fn the_context_source_alias_is_a_token_kept_and_shown() {
        let mut body = minimal();
        body["contextSourceAlias"] = json!("busan");
        let reg = parse(body).unwrap();
        assert_eq!(reg.context_source_alias.as_deref(), Some("busan"));
        assert!(reg.extra.is_empty());
        assert_eq!(Registration::from_stored(reg.to_stored()).unwrap(), reg);
        assert_eq!(render_registration(&reg, &ctx(), false)["contextSourceAlias"], "busan");
        let e = as_entity(&reg);
        assert!(e.attrs.contains_key(ALIAS_IRI), "csf can select on it");
        for bad in [json!("busan:1026"), json!("bu san"), json!(""), json!(7)] {
            let mut body = minimal();
            body["contextSourceAlias"] = bad.clone();
            let err = parse(body).unwrap_err();
            assert_eq!(err.kind, ngsild_core::ErrorKind::BadRequestData, "{bad}");
            assert!(err.detail.contains("contextSourceAlias"), "{bad}: {}", err.detail);
        }
        // A patch can set and remove it.
        let set = json!({"contextSourceAlias": "daegu"});
        let next = patch_registration(&reg, set.as_object().unwrap(), &ctx(), "2024-01-02T00:00:00Z").unwrap();
        assert_eq!(next.context_source_alias.as_deref(), Some("daegu"));
        let unset = json!({"contextSourceAlias": null});
        let next = patch_registration(&reg, unset.as_object().unwrap(), &ctx(), "2024-01-02T00:00:00Z").unwrap();
        assert_eq!(next.context_source_alias, None);
        // One stored before the alias had its own member reads back with it.
        let mut old = parse(minimal()).unwrap().to_stored();
        old["extra"] = json!({ALIAS_IRI: "busan"});
        assert_eq!(Registration::from_stored(old).unwrap().context_source_alias.as_deref(), Some("busan"));
    }
}
