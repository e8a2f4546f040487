//! The decision: may this identity do this action in this tenant, and what may it see there.
//!
//! 1. Admin may do everything and sees everything, whatever the policies say.
//! 2. A role at least the action's [`Action::least_role`] may do it; for a data read
//!    ([`crate::Group::holds_data`]) it sees what the deny policies that apply to it leave.
//! 3. Below that role, a data read is open only by allow policies that apply to the caller
//!    (its subject's, else its role's): it sees their union, less what deny policies hide.
//! 4. A deny policy hides the types it names, or, when it names attributes, those attributes
//!    (of every type: narrower than the types it names, never wider); one that names neither
//!    refuses the data read outright.
//!
//! Deny wins: what a deny policy hides stays hidden whatever an allow policy opens.

use std::collections::BTreeSet;

use crate::policy::{Assignee, Effect, Policy};
use crate::{Action, Identity, Role};

/// What a caller may see of the entity data of a tenant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    /// Everything.
    All,
    /// What the visibility leaves.
    Limited(Visibility),
}

/// A window on a tenant's entities: every constraint narrows; none widens.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Visibility {
    /// Only entities of one of these types (None: any type).
    pub types: Option<BTreeSet<String>>,
    /// Never entities of these types.
    pub hidden_types: BTreeSet<String>,
    /// Only entities whose id this regular expression finds.
    pub id_pattern: Option<String>,
    /// Only entities in one of these scopes (each a `scopeQ`).
    pub scopes: Option<Vec<String>>,
    /// Only entities this `q` (in the core @context) selects.
    pub q: Option<String>,
    /// Attributes never shown, nor queried on.
    pub hidden: BTreeSet<String>,
    /// Only these attributes are shown (None: every attribute not hidden).
    pub attributes: Option<BTreeSet<String>>,
}

/// Why an action is refused: what the caller has, what it needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub action: Action,
    pub tenant: String,
    pub held: Role,
    pub needed: Role,
    /// A deny policy that refuses the read, when one does.
    pub denied_by: Option<String>,
}

impl Refusal {
    /// What the client is told: the action, the role it needs in the tenant, what it holds.
    pub fn detail(&self) -> String {
        match &self.denied_by {
            Some(policy) => format!(
                "to {} in tenant '{}' the caller needs a role its deny policy {policy} does not name: \
                 an admin of the tenant may change that policy",
                self.action, self.tenant
            ),
            None => format!(
                "to {} in tenant '{}' the caller needs role {} (or admin) there, or an allow policy of \
                 that tenant; it has role {}: send the credentials of a caller with that role",
                self.action, self.tenant, self.needed, self.held
            ),
        }
    }
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.detail())
    }
}

/// The decision. `policies`: the policies of `tenant`.
pub fn decide(identity: &Identity, tenant: &str, action: Action, policies: &[Policy]) -> Result<Scope, Refusal> {
    let held = identity.role_in(tenant);
    let needed = action.least_role();
    let refuse = |denied_by: Option<String>| Refusal { action, tenant: tenant.to_owned(), held, needed, denied_by };
    if held == Role::Admin {
        return Ok(Scope::All);
    }
    let data_read = action.group.holds_data() && !action.write;
    if !data_read {
        return if held >= needed { Ok(Scope::All) } else { Err(refuse(None)) };
    }
    let applying: Vec<&Policy> = policies.iter().filter(|p| p.applies_to(identity, tenant)).collect();
    let mut visibility = if held >= needed {
        Visibility::default()
    } else {
        let subject: Vec<&Policy> = applying
            .iter()
            .copied()
            .filter(|p| p.effect == Effect::Allow && matches!(p.assignee, Assignee::Subject(_)))
            .collect();
        let allows = if subject.is_empty() {
            applying.iter().copied().filter(|p| p.effect == Effect::Allow).collect()
        } else {
            subject
        };
        union(&allows).ok_or_else(|| refuse(None))?
    };
    for deny in applying.iter().filter(|p| p.effect == Effect::Deny) {
        if deny.types.is_none() && deny.hidden.is_empty() {
            return Err(refuse(Some(deny.id.clone())));
        }
        match &deny.types {
            // Types alone: those types are hidden. Attributes: hidden everywhere (never wider).
            Some(types) if deny.hidden.is_empty() => visibility.hidden_types.extend(types.iter().cloned()),
            _ => visibility.hidden.extend(deny.hidden.iter().cloned()),
        }
    }
    if visibility == Visibility::default() {
        Ok(Scope::All)
    } else {
        Ok(Scope::Limited(visibility))
    }
}

/// The union of allow policies (None when there are none): any of their types (any type when
/// one names none), their shared id pattern and scopes, the attributes all of them show, and every
/// attribute one of them hides (a hidden attribute is never widened back).
fn union(allows: &[&Policy]) -> Option<Visibility> {
    let first = allows.first()?;
    let mut v = Visibility {
        types: first.types.clone(),
        hidden_types: BTreeSet::new(),
        id_pattern: first.id_pattern.clone(),
        scopes: first.scopes.clone(),
        q: first.q.clone(),
        hidden: first.hidden.clone(),
        attributes: first.attributes.clone(),
    };
    // Policies of one assignee share id pattern and scopes (checked when a policy is put); one
    // that does not is left out, so the union never shows what no policy names.
    for p in
        allows[1..].iter().filter(|p| p.id_pattern == first.id_pattern && p.scopes == first.scopes && p.q == first.q)
    {
        v.types = match (v.types.take(), &p.types) {
            (Some(mut a), Some(b)) => {
                a.extend(b.iter().cloned());
                Some(a)
            }
            _ => None,
        };
        // Attributes shown: those every policy that names some shows (narrower, never wider).
        v.attributes = match (v.attributes.take(), &p.attributes) {
            (Some(a), Some(b)) => Some(a.intersection(b).cloned().collect()),
            (a, b) => a.or_else(|| b.clone()),
        };
        v.hidden.extend(p.hidden.iter().cloned());
    }
    Some(v)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Grant, Group, Via};
    use ngsild_core::model::{Attribute, AttributeKind};
    use ngsild_core::Entity;
    use proptest::prelude::*;
    use serde_json::json;

    const TYPES: [&str; 3] = ["A", "B", "C"];
    const ATTRS: [&str; 3] = ["x", "y", "z"];
    const READ: Action = Action::read(Group::Entities);

    fn caller(role: Role, tenant: &str) -> Identity {
        Identity {
            subject: Some("k1".into()),
            via: Via::Key,
            grants: vec![Grant { tenant: Some(tenant.into()), role }],
        }
    }

    fn entity(id: &str, ty: &str, attrs: &[&str]) -> Entity {
        let mut e = Entity::new(id, vec![ty.into()]);
        for a in attrs {
            e.attrs.insert((*a).into(), vec![Attribute::new(AttributeKind::Property, json!(1))]);
        }
        e
    }

    fn policy(doc: serde_json::Value) -> Policy {
        Policy::from_json(&doc, &|s| s.to_owned()).unwrap()
    }

    #[test]
    fn the_issue_example_public_reads_air_quality_in_seoul_without_device_id() {
        let air = policy(json!({"id": "urn:p:air", "role": "public", "effect": "allow",
            "entityTypes": ["AirQualityObserved"], "hiddenAttributes": ["deviceId"]}));
        let public = Identity::anonymous();
        let scope = decide(&public, "seoul", READ, std::slice::from_ref(&air)).unwrap();
        let seen = scope.redact(entity("urn:a:1", "AirQualityObserved", &["pm10", "deviceId"])).unwrap();
        assert!(seen.attrs.contains_key("pm10") && !seen.attrs.contains_key("deviceId"));
        assert_eq!(scope.redact(entity("urn:s:1", "Streetlight", &["on"])), None);
        assert!(scope.shows_type("AirQualityObserved") && !scope.shows_type("Streetlight"));
        // The policy is seoul's: busan stays closed, and writes stay closed.
        let refused = decide(&public, "busan", READ, &[]).unwrap_err();
        assert_eq!((refused.held, refused.needed), (Role::Public, Role::Reader));
        assert!(
            refused.detail().contains("role reader") && refused.detail().contains("'busan'"),
            "{}",
            refused.detail()
        );
        assert!(decide(&public, "seoul", Action::write(Group::Entities), &[air]).is_err());
    }

    #[test]
    fn roles_follow_the_table_and_a_role_in_one_tenant_is_nothing_in_another() {
        for action in Action::all() {
            for role in Role::ALL {
                let id = caller(role, "seoul");
                assert_eq!(decide(&id, "seoul", action, &[]).is_ok(), role >= action.least_role(), "{role} {action}");
                assert_eq!(
                    decide(&id, "busan", action, &[]).is_ok(),
                    action.least_role() == Role::Public,
                    "{role} {action}"
                );
            }
        }
    }

    #[test]
    fn a_deny_without_names_refuses_and_a_subject_policy_beats_the_role_one() {
        let deny = policy(json!({"id": "urn:p:d", "role": "reader", "effect": "deny"}));
        let e = decide(&caller(Role::Reader, "t"), "t", READ, &[deny]).unwrap_err();
        assert_eq!(e.denied_by.as_deref(), Some("urn:p:d"));
        let role = policy(json!({"id": "urn:p:r", "role": "public", "effect": "allow", "entityTypes": ["A"]}));
        let mine = policy(json!({"id": "urn:p:s", "subject": "k1", "effect": "allow", "entityTypes": ["B"]}));
        let scope = decide(&caller(Role::Public, "t"), "t", READ, &[role, mine]).unwrap();
        assert!(scope.shows_type("B") && !scope.shows_type("A"));
    }

    fn arb_names(names: &'static [&'static str]) -> impl Strategy<Value = Option<Vec<&'static str>>> {
        proptest::option::of(proptest::sample::subsequence(names, 1..=names.len()))
    }

    prop_compose! {
        fn arb_policy(n: usize)(
            role in proptest::sample::select(vec!["public", "reader", "editor"]),
            deny in any::<bool>(),
            types in arb_names(&TYPES),
            hidden in arb_names(&ATTRS),
            shown in arb_names(&ATTRS),
            pattern in proptest::option::of(proptest::sample::select(vec!["1$", "2$"])),
        ) -> Policy {
            let mut doc = json!({"id": format!("urn:p:{n}"), "role": role, "effect": if deny { "deny" } else { "allow" }});
            if let Some(t) = types { doc["entityTypes"] = json!(t); }
            if let Some(h) = hidden { doc["hiddenAttributes"] = json!(h); }
            if !deny {
                if let Some(s) = shown { doc["attributes"] = json!(s); }
                if let Some(p) = pattern { doc["idPattern"] = json!(p); }
            }
            policy(doc)
        }
    }

    fn arb_entity() -> impl Strategy<Value = Entity> {
        (0..4u8, proptest::sample::select(TYPES.to_vec()), proptest::sample::subsequence(ATTRS.to_vec(), 0..=3))
            .prop_map(|(n, ty, attrs)| entity(&format!("urn:e:{n}"), ty, &attrs))
    }

    fn arb_role() -> impl Strategy<Value = Role> {
        proptest::sample::select(Role::ALL.to_vec())
    }

    proptest! {
        /// What a caller sees through allow policies is what one of them names: its type, its
        /// ids, its attributes, none it hides.
        #[test]
        fn a_policy_never_widens_beyond_what_it_names(
            policies in proptest::collection::vec((0..1000usize).prop_flat_map(arb_policy), 0..4),
            e in arb_entity(),
        ) {
            let public = Identity::anonymous();
            let Ok(scope) = decide(&public, "t", READ, &policies) else { return Ok(()) };
            let Some(seen) = scope.redact(e.clone()) else { return Ok(()) };
            let allows: Vec<&Policy> = policies.iter().filter(|p| p.effect == Effect::Allow && p.assignee == Assignee::Role(Role::Public)).collect();
            let named_by = |p: &&Policy| {
                p.types.as_ref().is_none_or(|t| t.contains(&e.types[0]))
                    && p.id_pattern.as_ref().is_none_or(|re| regex::Regex::new(re).unwrap().is_match(&e.id))
            };
            prop_assert!(allows.iter().any(named_by), "seen {e:?} through {policies:?}");
            // Allows add up: each attribute seen is one that an allow naming the entity opens
            // (neither hidden by it nor left out of its attribute list).
            for attr in seen.attrs.keys() {
                let opens = |p: &&Policy| {
                    named_by(p) && !p.hidden.contains(attr) && p.attributes.as_ref().is_none_or(|a| a.contains(attr))
                };
                prop_assert!(allows.iter().any(opens), "{attr} seen, but no allow naming {} opens it: {policies:?}", e.id);
            }
        }

        /// Admin sees every entity whole, whatever the policies.
        #[test]
        fn admin_sees_all(
            policies in proptest::collection::vec((0..1000usize).prop_flat_map(arb_policy), 0..4),
            e in arb_entity(),
        ) {
            let admin = Identity { subject: None, via: Via::Anonymous, grants: vec![Grant { tenant: None, role: Role::Admin }] };
            for action in Action::all() {
                prop_assert_eq!(decide(&admin, "t", action, &policies), Ok(Scope::All));
            }
            prop_assert_eq!(Scope::All.redact(e.clone()), Some(e));
        }

        /// What a deny policy that applies hides stays hidden, whatever allow policies say.
        #[test]
        fn deny_wins(
            policies in proptest::collection::vec((0..1000usize).prop_flat_map(arb_policy), 0..4),
            role in arb_role(),
            e in arb_entity(),
        ) {
            let id = caller(role, "t");
            let Ok(scope) = decide(&id, "t", READ, &policies) else { return Ok(()) };
            for deny in policies.iter().filter(|p| p.effect == Effect::Deny && p.applies_to(&id, "t")) {
                match (&deny.types, deny.hidden.is_empty()) {
                    (Some(types), true) => prop_assert!(!types.contains(&e.types[0]) || !scope.sees(&e)),
                    (_, false) => {
                        if let Some(seen) = scope.redact(e.clone()) {
                            prop_assert!(deny.hidden.iter().all(|h| !seen.attrs.contains_key(h)));
                        }
                    }
                    (None, true) => prop_assert!(false, "a deny naming nothing refuses"),
                }
            }
        }

        /// A narrowed filter selects exactly the entities the caller sees among those the query
        /// selects (so a store answering it counts and pages only those).
        #[test]
        fn a_narrowed_filter_selects_what_is_seen(
            policies in proptest::collection::vec((0..1000usize).prop_flat_map(arb_policy), 0..4),
            role in arb_role(),
            asked in arb_names(&TYPES),
            e in arb_entity(),
        ) {
            let id = caller(role, "t");
            let Ok(scope) = decide(&id, "t", READ, &policies) else { return Ok(()) };
            let filter = ngsild_query::EntityFilter {
                types: asked.map(|t| ngsild_query::TypeExpr::Or(t.into_iter().map(|t| ngsild_query::TypeExpr::Type(t.into())).collect())),
                ..Default::default()
            };
            let narrowed = scope.narrow(filter.clone()).unwrap();
            prop_assert_eq!(narrowed.matches(&e), filter.matches(&e) && scope.sees(&e));
        }
    }

    #[test]
    fn a_subject_policy_with_q_opens_only_what_the_q_selects() {
        let ctx = ngsild_jsonld::Context::core();
        let pm = ctx.expand_term("pm10").into_owned();
        let grant =
            policy(json!({"id": "urn:p:g", "subject": "k1", "effect": "allow", "entityTypes": ["A"], "q": "pm10>20"}));
        let scope = decide(&caller(Role::Public, "t"), "t", READ, &[grant]).unwrap();
        let with = |v: i64| {
            let mut e = entity("urn:e:1", "A", &[]);
            e.attrs.insert(pm.clone(), vec![Attribute::new(AttributeKind::Property, json!(v))]);
            e
        };
        assert!(scope.sees(&with(30)) && !scope.sees(&with(10)));
        assert!(!scope.sees(&entity("urn:e:2", "B", &[])));
        // The narrowed filter ANDs the policy's q with the asked one.
        let asked = ngsild_query::QExpr::parse("pm10<100", &ctx).unwrap();
        let narrowed = scope.narrow(ngsild_query::EntityFilter { q: Some(asked), ..Default::default() }).unwrap();
        assert!(narrowed.matches(&with(30)) && !narrowed.matches(&with(10)) && !narrowed.matches(&with(200)));
        // Another subject sees nothing through it.
        let other = Identity { subject: Some("k2".into()), ..caller(Role::Public, "t") };
        let g2 = policy(json!({"id": "urn:p:g", "subject": "k1", "effect": "allow", "q": "pm10>20"}));
        assert!(decide(&other, "t", READ, &[g2]).is_err());
    }

    #[test]
    fn a_query_on_a_hidden_attribute_is_refused_naming_it() {
        let ctx = ngsild_jsonld::Context::core();
        let hide = policy(
            json!({"id": "urn:p:h", "role": "reader", "effect": "deny", "hiddenAttributes": ["https://uri.etsi.org/ngsi-ld/default-context/deviceId"]}),
        );
        let scope = decide(&caller(Role::Reader, "t"), "t", READ, &[hide]).unwrap();
        let q = ngsild_query::QExpr::parse("deviceId==\"d1\"", &ctx).unwrap();
        let filter = ngsild_query::EntityFilter { q: Some(q), ..Default::default() };
        let e = scope.narrow(filter).unwrap_err();
        assert!(e.0.contains("deviceId") && e.0.contains(" q"), "{e}");
    }
}
