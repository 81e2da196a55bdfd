//! Who is acting, and what each role may do: the one place the rules live, for the JSON API and
//! the dashboard alike. Every service function takes an [`Actor`], checks the [`Permission`] its
//! action needs, scopes its queries to the actor's workspace, and writes its audit line in the
//! transaction of its change.

use std::fmt::Display;

use crate::db::models::audit::NewEntry;
use crate::domain::{ApiKeyId, Role, UserId, WorkspaceId};

use super::ServiceError;

/// Who is acting: a member signed in to the dashboard, or an API key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Principal {
    User { id: UserId, email: String },
    Key { id: ApiKeyId, name: String },
}

/// Someone acting in a workspace, with their role there, from an address.
#[derive(Debug, Clone)]
pub struct Actor {
    pub workspace: WorkspaceId,
    pub role: Role,
    pub who: Principal,
    /// The address the request came from, for the audit log.
    pub ip: Option<String>,
}

/// What an action needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Permission {
    /// Reading everything but secrets.
    Read,
    /// Reading secrets: signing secrets.
    Secrets,
    /// Creating, editing and deleting sources and subscriptions, pausing and resuming, rotating
    /// secrets, replaying and sending test events.
    Change,
    /// Inviting, removing and re-roling members (owners aside), API keys, and the audit log.
    Administer,
    /// Making and unmaking owners, and deleting the workspace.
    Own,
}

impl Permission {
    /// The least role that has it.
    pub fn least_role(self) -> Role {
        match self {
            Permission::Read => Role::Viewer,
            Permission::Secrets | Permission::Change => Role::Developer,
            Permission::Administer => Role::Admin,
            Permission::Own => Role::Owner,
        }
    }

    fn refusal(self) -> &'static str {
        match self {
            Permission::Read => "you are not a member of this workspace",
            Permission::Secrets => "your role may not see secrets: a developer's may",
            Permission::Change => "your role may only read: a developer's may change this",
            Permission::Administer => "only an admin or an owner may do this",
            Permission::Own => "only an owner may do this",
        }
    }
}

impl Actor {
    /// Whether the actor's role allows `permission`.
    pub fn may(&self, permission: Permission) -> bool {
        self.role.includes(permission.least_role())
    }

    /// Refuses the action unless the actor's role allows `permission`.
    pub fn require(&self, permission: Permission) -> Result<(), ServiceError> {
        if self.may(permission) {
            Ok(())
        } else {
            Err(ServiceError::Forbidden(permission.refusal()))
        }
    }

    /// The signed-in user, when the actor is one rather than a key.
    pub fn user(&self) -> Option<UserId> {
        match self.who {
            Principal::User { id, .. } => Some(id),
            Principal::Key { .. } => None,
        }
    }

    /// Who they are, in words: the member's address or the key's name.
    pub fn name(&self) -> &str {
        match &self.who {
            Principal::User { email, .. } => email,
            Principal::Key { name, .. } => name,
        }
    }

    /// The audit line for `action` (such as `subscription.created`) on an object.
    pub fn audit(
        &self,
        action: &'static str,
        object_type: &'static str,
        id: impl Display,
    ) -> NewEntry {
        let (actor_type, actor_id, actor) = match &self.who {
            Principal::User { id, email } => ("user", id.0, email.clone()),
            Principal::Key { id, name } => ("key", id.0, name.clone()),
        };
        NewEntry {
            workspace_id: Some(self.workspace),
            actor_type,
            actor_id: Some(actor_id),
            actor,
            action,
            object_type,
            object_id: Some(id.to_string()),
            ip: self.ip.clone(),
            detail: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn acting_as(role: Role) -> Actor {
        Actor {
            workspace: WorkspaceId(uuid::Uuid::new_v4()),
            role,
            who: Principal::User {
                id: UserId(uuid::Uuid::new_v4()),
                email: "someone@example.com".into(),
            },
            ip: Some("127.0.0.1".into()),
        }
    }

    #[test]
    fn each_role_has_exactly_the_permissions_of_its_rank() {
        use Permission::*;
        let table = [
            (Role::Viewer, vec![Read]),
            (Role::Developer, vec![Read, Secrets, Change]),
            (Role::Admin, vec![Read, Secrets, Change, Administer]),
            (Role::Owner, vec![Read, Secrets, Change, Administer, Own]),
        ];
        for (role, allowed) in table {
            let actor = acting_as(role);
            for permission in [Read, Secrets, Change, Administer, Own] {
                assert_eq!(
                    actor.may(permission),
                    allowed.contains(&permission),
                    "{role} and {permission:?}"
                );
                assert_eq!(
                    actor.require(permission).is_ok(),
                    allowed.contains(&permission)
                );
            }
        }
    }

    #[test]
    fn an_audit_line_names_the_actor_the_object_and_the_address() {
        let actor = acting_as(Role::Developer);
        let line = actor.audit("subscription.created", "subscription", "abc");
        assert_eq!(line.workspace_id, Some(actor.workspace));
        assert_eq!(line.actor, "someone@example.com");
        assert_eq!(line.actor_type, "user");
        assert_eq!(line.object_id.as_deref(), Some("abc"));
        assert_eq!(line.ip.as_deref(), Some("127.0.0.1"));
    }
}
