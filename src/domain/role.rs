//! What a member of a workspace, or one of its API keys, may do: each role can do everything the
//! one below it can, and more.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// A member's or a key's role in a workspace, from the most powerful down.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, ToSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Reads everything but secrets, and changes nothing.
    Viewer,
    /// Sources, subscriptions, replays and secrets.
    Developer,
    /// Members and API keys too.
    Admin,
    /// Everything, including owners and deleting the workspace.
    Owner,
}

impl Role {
    /// Every role, the most powerful first.
    pub const ALL: [Role; 4] = [Role::Owner, Role::Admin, Role::Developer, Role::Viewer];

    /// Its name, as stored and as the API spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Owner => "owner",
            Role::Admin => "admin",
            Role::Developer => "developer",
            Role::Viewer => "viewer",
        }
    }

    /// What it may do, in a few words, for the dashboard.
    pub fn describe(self) -> &'static str {
        match self {
            Role::Owner => "everything, including owners and deleting the workspace",
            Role::Admin => "members and API keys, and everything a developer can do",
            Role::Developer => "sources, subscriptions, replays and secrets",
            Role::Viewer => "reads everything but secrets, and changes nothing",
        }
    }

    /// Whether this role includes everything `other` may do.
    pub fn includes(self, other: Role) -> bool {
        self >= other
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A name that is not a role.
#[derive(Debug, thiserror::Error)]
#[error("a role is one of owner, admin, developer or viewer")]
pub struct UnknownRole;

impl FromStr for Role {
    type Err = UnknownRole;

    fn from_str(name: &str) -> Result<Self, Self::Err> {
        Role::ALL
            .into_iter()
            .find(|role| role.as_str() == name)
            .ok_or(UnknownRole)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_role_includes_those_below_it_only() {
        assert!(Role::Owner.includes(Role::Admin));
        assert!(Role::Admin.includes(Role::Developer));
        assert!(Role::Developer.includes(Role::Viewer));
        assert!(Role::Viewer.includes(Role::Viewer));
        assert!(!Role::Viewer.includes(Role::Developer));
        assert!(!Role::Admin.includes(Role::Owner));
    }

    #[test]
    fn names_round_trip_and_junk_does_not_parse() {
        for role in Role::ALL {
            assert_eq!(role.as_str().parse::<Role>().unwrap(), role);
            assert_eq!(serde_json::to_value(role).unwrap(), role.as_str());
        }
        assert!("Owner".parse::<Role>().is_err());
        assert!("".parse::<Role>().is_err());
    }
}
