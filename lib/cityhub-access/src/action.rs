//! What a request does: an [`Action`] is an API [`Group`] read or written, and the role table
//! says the least [`Role`] that may do it without a policy.

use std::fmt;

use crate::Role;

/// The parts of the API a role may or may not use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Group {
    /// `/entities`, `/entities/{id}` and their attributes, `/entityOperations/query`.
    Entities,
    /// `/entityOperations/{create,upsert,update,delete,merge}`.
    Batch,
    /// `/temporal/...`.
    Temporal,
    /// `/subscriptions`.
    Subscriptions,
    /// `/csourceRegistrations`.
    Registrations,
    /// `/csourceSubscriptions`.
    CsourceSubscriptions,
    /// `/jsonldContexts`.
    Contexts,
    /// `/types` and `/attributes`.
    Discovery,
    /// `DELETE /entities` (purge).
    Purge,
    /// `/info/...`: what the hub says of itself.
    Info,
    /// `/health`: answered to anyone.
    Health,
    /// Access policies (`/cityhub/v1/policies`).
    Policies,
    /// API keys.
    Keys,
    /// Tenants.
    Tenants,
    /// The audit log.
    Audit,
    /// Entity data taken as a whole, which policies do not narrow: the live channel of changes,
    /// dataset downloads, dashboards. Readers may read them.
    Streams,
    /// Device measurements sent to the southbound (`/iot/json`, `/iot/d`), authorized by their
    /// service group's API key as IoT Agents do, not by the caller's role.
    Southbound,
    /// Open data: dataset downloads and access requests (`cityhub-catalog`). Anyone may reach
    /// them; the handlers decide by the dataset's access level and the caller's identity and
    /// grants (`cityhub_catalog::grant`), and show a caller its own requests. Approving,
    /// refusing, revoking and usage are `Admin`.
    OpenData,
    /// Anything else a crate adds that only admins may use.
    Admin,
}

impl Group {
    pub const ALL: [Group; 19] = [
        Group::Entities,
        Group::Batch,
        Group::Temporal,
        Group::Subscriptions,
        Group::Registrations,
        Group::CsourceSubscriptions,
        Group::Contexts,
        Group::Discovery,
        Group::Purge,
        Group::Info,
        Group::Health,
        Group::Policies,
        Group::Keys,
        Group::Tenants,
        Group::Audit,
        Group::Streams,
        Group::Southbound,
        Group::OpenData,
        Group::Admin,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Group::Entities => "entities",
            Group::Batch => "batch operations",
            Group::Temporal => "temporal entities",
            Group::Subscriptions => "subscriptions",
            Group::Registrations => "context source registrations",
            Group::CsourceSubscriptions => "context source subscriptions",
            Group::Contexts => "@contexts",
            Group::Discovery => "types and attributes",
            Group::Purge => "purges",
            Group::Info => "hub information",
            Group::Health => "health",
            Group::Policies => "access policies",
            Group::Keys => "API keys",
            Group::Tenants => "tenants",
            Group::Audit => "the audit log",
            Group::Streams => "live changes, downloads and dashboards",
            Group::Southbound => "device measurements",
            Group::OpenData => "open data: downloads by access level, access requests",
            Group::Admin => "administration",
        }
    }

    /// Whether reading this group reads entity data, which policies narrow or open (a
    /// [`crate::Visibility`] applies to it). Streams do: the live channel tells entities.
    pub fn holds_data(self) -> bool {
        matches!(self, Group::Entities | Group::Temporal | Group::Discovery | Group::Streams)
    }
}

/// One thing a request does: a group read or written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Action {
    pub group: Group,
    pub write: bool,
}

impl Action {
    pub const fn read(group: Group) -> Action {
        Action { group, write: false }
    }

    pub const fn write(group: Group) -> Action {
        Action { group, write: true }
    }

    /// Every action there is.
    pub fn all() -> impl Iterator<Item = Action> {
        Group::ALL.into_iter().flat_map(|g| [Action::read(g), Action::write(g)])
    }

    /// The least role that may do this without a policy (the role table of issue 16):
    /// `admin` everything; `editor` entities, batches, temporal writes, subscriptions and
    /// @contexts; `reader` reads and subscriptions; `public` only the hub's health and
    /// information (policies open data reads to it).
    pub fn least_role(self) -> Role {
        use Group::*;
        match (self.group, self.write) {
            (Health | OpenData, _) | (Southbound, true) => Role::Public,
            (Info, false) => Role::Public,
            (Entities | Temporal | Discovery | Registrations | Contexts, false) => Role::Reader,
            (Subscriptions | CsourceSubscriptions, _) => Role::Reader,
            (Entities | Batch | Temporal | Contexts, true) => Role::Editor,
            (Batch | Streams, false) => Role::Reader,
            (
                Registrations | Purge | Info | Discovery | Policies | Keys | Tenants | Audit | Streams | Southbound
                | Admin,
                _,
            ) => Role::Admin,
        }
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let verb = if self.write { "write" } else { "read" };
        write!(f, "{verb} {}", self.group.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_role_table_is_ordered_and_admin_does_everything() {
        for action in Action::all() {
            assert!(action.least_role() <= Role::Admin);
            // Health answers anyone; device measurements carry their service group's API key.
            if action.write && !matches!(action.group, Group::Health | Group::Southbound | Group::OpenData) {
                assert!(action.least_role() >= Role::Editor.min(Role::Reader), "{action}");
            }
        }
        assert_eq!(Action::read(Group::Streams).least_role(), Role::Reader, "readers take live changes and downloads");
        assert_eq!(Action::write(Group::Streams).least_role(), Role::Admin);
        assert_eq!(Action::read(Group::Southbound).least_role(), Role::Admin, "a device writes, never reads");
        assert_eq!(Action::read(Group::Entities).least_role(), Role::Reader);
        assert_eq!(Action::write(Group::Entities).least_role(), Role::Editor);
        assert_eq!(Action::write(Group::Subscriptions).least_role(), Role::Reader);
        assert_eq!(Action::write(Group::Purge).least_role(), Role::Admin);
        assert_eq!(Action::write(Group::Registrations).least_role(), Role::Admin);
        assert_eq!(Action::read(Group::Policies).least_role(), Role::Admin);
        assert_eq!(Action::read(Group::Info).least_role(), Role::Public);
        assert_eq!(Action::write(Group::Policies).to_string(), "write access policies");
    }
}
