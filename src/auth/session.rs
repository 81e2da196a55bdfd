//! Dashboard sessions: a random 256-bit token in a cookie, only its hash in `sessions`, ended by
//! idleness, by age or by logging out. Each session has a CSRF token derived from its token.

use std::fmt;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

use crate::db::models::session;
use crate::db::{Database, DbError};
use crate::domain::{Role, UserId, WorkspaceId, is_token_shaped, random_token};

/// How long sessions last and how their cookie is set.
#[derive(Debug, Clone, Copy)]
pub struct SessionPolicy {
    /// A session unused for this long ends.
    pub idle: Duration,
    /// A session ends this long after log-in however much it is used.
    pub lifetime: Duration,
    /// Whether the cookie says `Secure` (the relay is reached over https).
    pub secure_cookie: bool,
}

/// A session's secret: 32 random bytes, base64url. Never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct SessionToken(String);

impl SessionToken {
    /// A fresh token.
    pub fn generate() -> Self {
        SessionToken(random_token())
    }

    /// Accepts only strings shaped like a token, so junk never reaches the database.
    pub fn parse(raw: &str) -> Option<Self> {
        is_token_shaped(raw).then(|| SessionToken(raw.to_owned()))
    }

    /// The cookie value.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// What is stored: the token is 256 random bits, so a fast hash is enough.
    pub fn hash(&self) -> Vec<u8> {
        Sha256::digest(self.0.as_bytes()).to_vec()
    }

    fn csrf_mac(&self) -> Hmac<Sha256> {
        let mut mac =
            Hmac::<Sha256>::new_from_slice(self.0.as_bytes()).expect("HMAC takes keys of any size");
        mac.update(b"spenza csrf token");
        mac
    }

    /// The session's CSRF token: only the holder of the session cookie can know it, and it is
    /// not stored anywhere, so a page can be rendered with it and a form checked against it
    /// without a query.
    pub fn csrf_token(&self) -> String {
        URL_SAFE_NO_PAD.encode(self.csrf_mac().finalize().into_bytes())
    }

    /// Whether `presented` is this session's CSRF token (compared in constant time).
    pub fn verify_csrf(&self, presented: &str) -> bool {
        URL_SAFE_NO_PAD
            .decode(presented)
            .is_ok_and(|bytes| self.csrf_mac().verify_slice(&bytes).is_ok())
    }
}

impl fmt::Debug for SessionToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SessionToken(..)")
    }
}

/// The user a request's session belongs to, and the workspace it is looking at (none when they
/// belong to none).
#[derive(Debug, Clone)]
pub struct SignedIn {
    pub user_id: UserId,
    pub email: String,
    pub token: SessionToken,
    pub workspace: Option<CurrentWorkspace>,
}

/// The workspace a session is looking at, and the user's role there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CurrentWorkspace {
    pub id: WorkspaceId,
    pub name: String,
    pub role: Role,
    /// Its open issues (acknowledged ones aside), when the session was resumed.
    pub open_issues: i64,
}

/// Starts a session for `user`, signed in from `ip` (which the audit log records); the token
/// goes in the cookie.
pub async fn start_session(
    db: &Database,
    user: UserId,
    policy: SessionPolicy,
    ip: Option<String>,
) -> Result<SessionToken, DbError> {
    let token = SessionToken::generate();
    let hash = token.hash();
    let expires_at = chrono::Utc::now()
        + chrono::TimeDelta::from_std(policy.lifetime).unwrap_or(chrono::TimeDelta::MAX);
    db.run(async |conn| session::insert(conn, user, &hash, expires_at, policy.idle, ip).await)
        .await?;
    Ok(token)
}

/// The user of a live session; `None` when it has expired, idled out or been logged out.
pub async fn resume_session(
    db: &Database,
    token: SessionToken,
    policy: SessionPolicy,
) -> Result<Option<SignedIn>, DbError> {
    let hash = token.hash();
    let owner = db
        .run(async |conn| session::touch(conn, &hash, policy.idle).await)
        .await?;
    Ok(owner.map(|owner| {
        let open_issues = owner.open_issues;
        let workspace = match (owner.workspace_id, owner.workspace_name, owner.role) {
            (Some(id), Some(name), Some(role)) => role.parse().ok().map(|role| CurrentWorkspace {
                id,
                name,
                role,
                open_issues,
            }),
            _ => None,
        };
        SignedIn {
            user_id: owner.user_id,
            email: owner.email,
            token,
            workspace,
        }
    }))
}

/// Points a session at another workspace (the caller checked that its user is a member).
pub async fn switch_workspace(
    db: &Database,
    token: &SessionToken,
    workspace: WorkspaceId,
) -> Result<(), DbError> {
    let hash = token.hash();
    db.run(async |conn| session::switch(conn, &hash, workspace).await)
        .await
}

/// Ends a session: its row is deleted, so its cookie is worthless from now on.
pub async fn end_session(db: &Database, token: &SessionToken) -> Result<(), DbError> {
    let hash = token.hash();
    db.run(async |conn| session::delete(conn, &hash).await)
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_tokens_parse_and_junk_does_not() {
        let token = SessionToken::generate();
        assert_eq!(SessionToken::parse(token.expose()), Some(token));
        assert!(SessionToken::parse("short").is_none());
        assert!(SessionToken::parse(&"a;".repeat(22)[..43]).is_none());
    }

    #[test]
    fn a_csrf_token_belongs_to_its_session_only() {
        let token = SessionToken::generate();
        let csrf = token.csrf_token();
        assert!(token.verify_csrf(&csrf));
        assert!(!SessionToken::generate().verify_csrf(&csrf));
        assert!(!token.verify_csrf(""));
        assert!(!token.verify_csrf("not base64 at all!"));
        assert_ne!(csrf, token.expose());
    }

    #[test]
    fn debug_never_shows_the_token() {
        let token = SessionToken::generate();
        assert!(!format!("{token:?}").contains(token.expose()));
    }
}
