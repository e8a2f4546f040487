//! Data policies: documents an admin keeps per tenant that open entity data to a role or a
//! subject the role table does not let read (`allow`), or hide data from callers it does
//! (`deny`), by entity type, id pattern, scope and attribute.
//!
//! ```json
//! {"id": "urn:cityhub:policy:air", "role": "public", "effect": "allow",
//!  "entityTypes": ["AirQualityObserved"], "hiddenAttributes": ["deviceId"]}
//! ```
//!
//! A policy concerns reading entity data (entities, temporal entities, `/types` and
//! `/attributes`, and what notifications carry); it never opens a write. Names are expanded by
//! the caller (with the request's @context) before they get here, and stored expanded.

use std::collections::BTreeSet;

use serde_json::{json, Map, Value};

use crate::{Identity, Role};

/// To whom a policy applies.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Assignee {
    /// Every caller whose role in the tenant is this one (exactly).
    Role(Role),
    /// One caller: a token's `sub` or a key's id.
    Subject(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Effect {
    Allow,
    Deny,
}

/// One policy, its names expanded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    pub id: String,
    pub assignee: Assignee,
    pub effect: Effect,
    /// Allow: only entities of one of these types (None: any). Deny: entities of these types are
    /// hidden.
    pub types: Option<BTreeSet<String>>,
    /// Allow only: the entity ids it opens (a regular expression, anchored by the caller).
    pub id_pattern: Option<String>,
    /// Allow only: entities in one of these scopes (a `scopeQ` each).
    pub scopes: Option<Vec<String>>,
    /// Allow only: entities this NGSI-LD `q` selects, read in the core @context (as a dataset's
    /// selection is); how an access request's grant opens a dataset's entities only.
    pub q: Option<String>,
    /// Attributes hidden from the entities it concerns.
    pub hidden: BTreeSet<String>,
    /// Allow only: the only attributes shown (None: every attribute not hidden).
    pub attributes: Option<BTreeSet<String>>,
}

/// Why a policy document is refused: the field and what to change.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {why}")]
pub struct PolicyError {
    pub field: &'static str,
    pub why: String,
}

fn bad(field: &'static str, why: impl Into<String>) -> PolicyError {
    PolicyError { field, why: why.into() }
}

const FIELDS: [&str; 10] =
    ["id", "role", "subject", "effect", "entityTypes", "idPattern", "scopes", "q", "hiddenAttributes", "attributes"];

fn names(
    doc: &Map<String, Value>,
    field: &'static str,
    expand: &dyn Fn(&str) -> String,
) -> Result<Option<BTreeSet<String>>, PolicyError> {
    let Some(value) = doc.get(field) else { return Ok(None) };
    let list = value.as_array().ok_or_else(|| bad(field, "must be an array of names"))?;
    if list.is_empty() {
        return Err(bad(field, "must name at least one (leave it out to mean any)"));
    }
    list.iter()
        .map(|v| match v.as_str() {
            Some(s) if !s.trim().is_empty() => Ok(expand(s)),
            _ => Err(bad(field, "every item must be a non-empty string")),
        })
        .collect::<Result<BTreeSet<_>, _>>()
        .map(Some)
}

impl Policy {
    /// Reads a policy document; `expand` expands a type or attribute name (the request's
    /// @context). Every refusal names the field.
    pub fn from_json(value: &Value, expand: &dyn Fn(&str) -> String) -> Result<Policy, PolicyError> {
        let doc = value.as_object().ok_or_else(|| bad("(body)", "a policy is a JSON object"))?;
        if let Some(unknown) = doc.keys().find(|k| !FIELDS.contains(&k.as_str()) && k.as_str() != "@context") {
            return Err(bad(
                "(body)",
                format!("'{unknown}' is not a policy field: the fields are {}", FIELDS.join(", ")),
            ));
        }
        let id = match doc.get("id") {
            Some(Value::String(id)) if id.contains(':') && !id.chars().any(char::is_whitespace) => id.clone(),
            Some(_) => return Err(bad("id", "must be a URI, e.g. urn:cityhub:policy:air")),
            None => return Err(bad("id", "is missing: give the policy a URI, e.g. urn:cityhub:policy:air")),
        };
        let assignee = match (doc.get("role"), doc.get("subject")) {
            (Some(role), None) => {
                let role = role.as_str().ok_or_else(|| bad("role", "must be a string"))?;
                let role: Role = role
                    .parse()
                    .map_err(|_| bad("role", format!("'{role}' is not one of admin, editor, reader, public")))?;
                if role == Role::Admin {
                    return Err(bad("role", "admin sees everything: a policy applies to editor, reader or public"));
                }
                Assignee::Role(role)
            }
            (None, Some(Value::String(s))) if !s.is_empty() => Assignee::Subject(s.clone()),
            (None, Some(_)) => return Err(bad("subject", "must be a non-empty string (a token's sub or a key's id)")),
            (Some(_), Some(_)) => return Err(bad("subject", "give either role or subject, not both")),
            (None, None) => {
                return Err(bad("role", "is missing: name the role (or the subject) the policy applies to"))
            }
        };
        let effect = match doc.get("effect").and_then(Value::as_str) {
            Some("allow") => Effect::Allow,
            Some("deny") => Effect::Deny,
            _ => return Err(bad("effect", "must be \"allow\" or \"deny\"")),
        };
        let types = names(doc, "entityTypes", expand)?;
        let id_pattern = match doc.get("idPattern") {
            None => None,
            Some(Value::String(p)) => {
                regex::Regex::new(p).map_err(|e| bad("idPattern", format!("is not a regular expression: {e}")))?;
                Some(p.clone())
            }
            Some(_) => return Err(bad("idPattern", "must be a string (a regular expression)")),
        };
        let scopes = names(doc, "scopes", &|s| s.to_owned())?.map(|s| s.into_iter().collect::<Vec<_>>());
        if let Some(scope) = scopes.iter().flatten().find(|s| !s.starts_with('/')) {
            return Err(bad("scopes", format!("'{scope}' is not a scope: a scope starts with /")));
        }
        let q = match doc.get("q") {
            None => None,
            Some(Value::String(q)) => {
                ngsild_query::QExpr::parse(q, &ngsild_jsonld::Context::core())
                    .map_err(|e| bad("q", format!("is not an NGSI-LD q (read in the core @context): {e}")))?;
                Some(q.clone())
            }
            Some(_) => return Err(bad("q", "must be a string (an NGSI-LD q)")),
        };
        let hidden = names(doc, "hiddenAttributes", expand)?.unwrap_or_default();
        let attributes = names(doc, "attributes", expand)?;
        if effect == Effect::Deny {
            for (field, given) in [
                ("idPattern", id_pattern.is_some()),
                ("scopes", scopes.is_some()),
                ("q", q.is_some()),
                ("attributes", attributes.is_some()),
            ] {
                if given {
                    return Err(bad(field, "a deny policy hides entityTypes and hiddenAttributes only: leave it out"));
                }
            }
        }
        Ok(Policy { id, assignee, effect, types, id_pattern, scopes, q, hidden, attributes })
    }

    /// The document as stored (names expanded).
    pub fn to_json(&self) -> Value {
        let mut doc = Map::new();
        doc.insert("id".into(), json!(self.id));
        match &self.assignee {
            Assignee::Role(r) => doc.insert("role".into(), json!(r.name())),
            Assignee::Subject(s) => doc.insert("subject".into(), json!(s)),
        };
        doc.insert("effect".into(), json!(if self.effect == Effect::Allow { "allow" } else { "deny" }));
        if let Some(t) = &self.types {
            doc.insert("entityTypes".into(), json!(t));
        }
        if let Some(p) = &self.id_pattern {
            doc.insert("idPattern".into(), json!(p));
        }
        if let Some(s) = &self.scopes {
            doc.insert("scopes".into(), json!(s));
        }
        if let Some(q) = &self.q {
            doc.insert("q".into(), json!(q));
        }
        if !self.hidden.is_empty() {
            doc.insert("hiddenAttributes".into(), json!(self.hidden));
        }
        if let Some(a) = &self.attributes {
            doc.insert("attributes".into(), json!(a));
        }
        Value::Object(doc)
    }

    /// Whether this policy applies to `identity` in `tenant`.
    pub fn applies_to(&self, identity: &Identity, tenant: &str) -> bool {
        match &self.assignee {
            Assignee::Role(role) => identity.role_in(tenant) == *role,
            Assignee::Subject(s) => identity.subject.as_deref() == Some(s.as_str()),
        }
    }

    /// Why this allow policy cannot sit beside `other` (both allow for the same assignee):
    /// their union must be one visibility, so they must open the same ids and scopes.
    pub fn conflict_with(&self, other: &Policy) -> Option<PolicyError> {
        if self.effect != Effect::Allow
            || other.effect != Effect::Allow
            || self.assignee != other.assignee
            || self.id == other.id
        {
            return None;
        }
        if self.id_pattern != other.id_pattern {
            return Some(bad("idPattern", format!("allow policy {} for the same role or subject opens other ids: allow policies of one assignee share idPattern (put the types in one policy)", other.id)));
        }
        if self.scopes != other.scopes {
            return Some(bad("scopes", format!("allow policy {} for the same role or subject opens other scopes: allow policies of one assignee share scopes", other.id)));
        }
        if self.q != other.q {
            return Some(bad("q", format!("allow policy {} for the same role or subject selects by another q: allow policies of one assignee share q", other.id)));
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vocab(s: &str) -> String {
        format!("https://uri.etsi.org/ngsi-ld/default-context/{s}")
    }

    #[test]
    fn a_policy_reads_back_as_written_with_its_names_expanded() {
        let doc = json!({"id": "urn:p:1", "role": "public", "effect": "allow",
            "entityTypes": ["AirQualityObserved"], "hiddenAttributes": ["deviceId"]});
        let p = Policy::from_json(&doc, &vocab).unwrap();
        assert_eq!(p.assignee, Assignee::Role(Role::Public));
        assert_eq!(p.types, Some([vocab("AirQualityObserved")].into()));
        assert_eq!(p.hidden, [vocab("deviceId")].into());
        assert_eq!(Policy::from_json(&p.to_json(), &|s| s.to_owned()).unwrap(), p);
    }

    #[test]
    fn a_bad_policy_names_its_field() {
        let cases = [
            (json!({"role": "public", "effect": "allow"}), "id"),
            (json!({"id": "urn:p", "effect": "allow"}), "role"),
            (json!({"id": "urn:p", "role": "owner", "effect": "allow"}), "role"),
            (json!({"id": "urn:p", "role": "admin", "effect": "allow"}), "role"),
            (json!({"id": "urn:p", "role": "public", "effect": "maybe"}), "effect"),
            (json!({"id": "urn:p", "role": "public", "effect": "allow", "entityTypes": "A"}), "entityTypes"),
            (json!({"id": "urn:p", "role": "public", "effect": "allow", "entityTypes": []}), "entityTypes"),
            (json!({"id": "urn:p", "role": "public", "effect": "allow", "idPattern": "("}), "idPattern"),
            (json!({"id": "urn:p", "role": "public", "effect": "allow", "scopes": ["a"]}), "scopes"),
            (json!({"id": "urn:p", "role": "public", "effect": "deny", "idPattern": "a"}), "idPattern"),
            (json!({"id": "urn:p", "role": "public", "effect": "allow", "q": "pm25>"}), "q"),
            (json!({"id": "urn:p", "role": "public", "effect": "deny", "q": "pm25>1"}), "q"),
            (json!({"id": "urn:p", "role": "public", "subject": "k", "effect": "deny"}), "subject"),
            (json!({"id": "urn:p", "role": "public", "effect": "deny", "colour": 1}), "(body)"),
        ];
        for (doc, field) in cases {
            let e = Policy::from_json(&doc, &vocab).unwrap_err();
            assert_eq!(e.field, field, "{doc}: {e}");
            assert!(!e.why.is_empty());
        }
    }

    #[test]
    fn allow_policies_of_one_assignee_must_share_ids_and_scopes() {
        let a = Policy::from_json(
            &json!({"id": "urn:p:a", "role": "public", "effect": "allow", "idPattern": "^urn:a"}),
            &vocab,
        )
        .unwrap();
        let b = Policy::from_json(&json!({"id": "urn:p:b", "role": "public", "effect": "allow"}), &vocab).unwrap();
        let c = Policy::from_json(&json!({"id": "urn:p:c", "role": "reader", "effect": "allow"}), &vocab).unwrap();
        assert_eq!(a.conflict_with(&b).map(|e| e.field), Some("idPattern"));
        assert_eq!(a.conflict_with(&c), None);
    }
}
