//! Who a caller is and what it may do. Pure: no I/O, no HTTP, no store.
//!
//! An [`Identity`] is what the hub knows of the sender of a request once its credentials are
//! checked (a bearer JWT, an API key, or none). It carries [`Grant`]s: a [`Role`] in every tenant
//! (`admin`) or in one (`seoul:reader`). The HTTP crate reads the identity in one place and asks
//! this crate, in one place, whether it may do what it asks: [`decide`] takes the identity, the
//! tenant, the [`Action`] of the route and the tenant's [`Policy`]s, and answers a [`Scope`]
//! (everything, or a [`Visibility`]: the types, ids, scopes and attributes it may see) or a
//! [`Refusal`] naming the role needed. A `Scope` narrows a query's filter before it reaches the
//! store ([`Scope::narrow`]) and hides what the caller may not see from an entity
//! ([`Scope::redact`]) and from discovery ([`Scope::shows_type`], [`Scope::shows_attr`]).
//!
//! **May:** read identities, policies, entities and filters handed in. **Never:** I/O, HTTP
//! types, the store, a clock; credentials are checked by the shell before they get here.

#![forbid(unsafe_code)]
#![warn(clippy::unwrap_used, clippy::expect_used)]

use std::fmt;
use std::str::FromStr;

mod action;
mod decide;
pub mod policy;
mod visibility;

pub use action::{Action, Group};
pub use decide::{decide, Refusal, Scope, Visibility};
pub use policy::{Assignee, Effect, Policy, PolicyError};
pub use visibility::Unseen;

/// A role, from the least to the most able.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Role {
    /// What policies open to everyone.
    Public,
    /// Reads and subscriptions.
    Reader,
    /// Entities, batches, temporal writes and subscriptions.
    Editor,
    /// Everything, including keys, tenants, registrations and purges.
    Admin,
}

impl Role {
    pub const ALL: [Role; 4] = [Role::Public, Role::Reader, Role::Editor, Role::Admin];

    pub fn name(self) -> &'static str {
        match self {
            Role::Public => "public",
            Role::Reader => "reader",
            Role::Editor => "editor",
            Role::Admin => "admin",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("'{0}' is not a role: a role is admin, editor, reader or public, alone (every tenant) or as TENANT:ROLE (one tenant)")]
pub struct BadRole(pub String);

impl FromStr for Role {
    type Err = BadRole;

    fn from_str(s: &str) -> Result<Self, BadRole> {
        Role::ALL.into_iter().find(|r| r.name() == s).ok_or_else(|| BadRole(s.to_string()))
    }
}

/// A role in every tenant (`tenant: None`, written `ROLE`) or in one (`TENANT:ROLE`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Grant {
    pub tenant: Option<String>,
    pub role: Role,
}

impl FromStr for Grant {
    type Err = BadRole;

    /// `ROLE` or `TENANT:ROLE`; the tenant is split at the last `:` (tenant names hold no `:`
    /// role names do not either).
    fn from_str(s: &str) -> Result<Self, BadRole> {
        let bad = || BadRole(s.to_string());
        match s.rsplit_once(':') {
            None => Ok(Grant { tenant: None, role: s.parse().map_err(|_| bad())? }),
            Some((tenant, role)) if !tenant.is_empty() => {
                Ok(Grant { tenant: Some(tenant.to_string()), role: role.parse().map_err(|_| bad())? })
            }
            Some(_) => Err(bad()),
        }
    }
}

impl fmt::Display for Grant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.tenant {
            Some(t) => write!(f, "{t}:{}", self.role),
            None => write!(f, "{}", self.role),
        }
    }
}

/// How a caller proved who it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Via {
    /// No credentials.
    Anonymous,
    /// A bearer JWT checked against the issuer's keys.
    Token,
    /// An API key the hub issued.
    Key,
}

/// The sender of a request, its credentials checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// The token's `sub`, or the key's id; `None` for an anonymous caller.
    pub subject: Option<String>,
    pub via: Via,
    pub grants: Vec<Grant>,
}

impl Identity {
    /// A caller with no credentials: the `public` role everywhere.
    pub fn anonymous() -> Identity {
        Identity { subject: None, via: Via::Anonymous, grants: vec![Grant { tenant: None, role: Role::Public }] }
    }

    /// The most able role this identity has in `tenant` (`Public` when it has none there).
    pub fn role_in(&self, tenant: &str) -> Role {
        self.grants
            .iter()
            .filter(|g| g.tenant.as_deref().is_none_or(|t| t == tenant))
            .map(|g| g.role)
            .max()
            .unwrap_or(Role::Public)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grants_parse_and_print() {
        let g: Grant = "seoul:reader".parse().unwrap();
        assert_eq!(g, Grant { tenant: Some("seoul".into()), role: Role::Reader });
        assert_eq!(g.to_string(), "seoul:reader");
        assert_eq!("admin".parse::<Grant>().unwrap(), Grant { tenant: None, role: Role::Admin });
        assert!("seoul:owner".parse::<Grant>().is_err());
        assert!(":admin".parse::<Grant>().is_err());
        assert!("root".parse::<Grant>().is_err());
    }

    #[test]
    fn role_in_takes_the_most_able_grant_that_applies() {
        let id = Identity {
            subject: Some("k1".into()),
            via: Via::Key,
            grants: vec!["reader".parse().unwrap(), "seoul:editor".parse().unwrap()],
        };
        assert_eq!(id.role_in("seoul"), Role::Editor);
        assert_eq!(id.role_in("busan"), Role::Reader);
        assert_eq!(Identity::anonymous().role_in("seoul"), Role::Public);
    }
}
