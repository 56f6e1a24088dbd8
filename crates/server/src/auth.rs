//! Who is asking: roles, the authenticated principal, API tokens and passwords.
//!
//! Tokens are 256 random bits, shown once (`belay_` and 43 base64url characters) and stored
//! as their SHA-256; a request presents one as `Authorization: Bearer …`. Passwords are
//! hashed with argon2id. Every route declares the role it needs: `admin` holds every role,
//! and every role may read (`viewer`).

use crate::problem::Problem;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use axum::http::StatusCode;
use base64::Engine as _;
use belay_store::{Store, TokenRecord};
use serde::Serialize;
use std::fmt;
use std::str::FromStr;

/// What a principal may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Reads.
    Viewer,
    /// Decides approvals, rolls back changes, sends events.
    Responder,
    /// Lints, replays and reloads playbooks.
    Author,
    /// Users, tokens, secrets, trust resets, checkpoints; holds every role.
    Admin,
}

impl Role {
    /// Every role, lowest first.
    pub const ALL: [Role; 4] = [Role::Viewer, Role::Responder, Role::Author, Role::Admin];

    /// The role's name.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Responder => "responder",
            Role::Author => "author",
            Role::Admin => "admin",
        }
    }

    /// Whether holding `held` grants this role.
    pub fn granted_by(self, held: &[Role]) -> bool {
        held.iter()
            .any(|h| *h == self || *h == Role::Admin || self == Role::Viewer)
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Role {
    type Err = String;
    fn from_str(s: &str) -> Result<Role, String> {
        Role::ALL
            .into_iter()
            .find(|r| r.as_str() == s.trim())
            .ok_or_else(|| {
                format!("unknown role `{s}`; roles are viewer, responder, author and admin")
            })
    }
}

/// Parses a comma-separated role list (`responder,author`); at least one role.
pub fn parse_roles(text: &str) -> Result<Vec<Role>, String> {
    let mut out = Vec::new();
    for r in text.split(',').filter(|r| !r.trim().is_empty()) {
        let r: Role = r.parse()?;
        if !out.contains(&r) {
            out.push(r);
        }
    }
    if out.is_empty() {
        return Err("give at least one role (viewer, responder, author, admin)".into());
    }
    Ok(out)
}

/// The roles of stored role names; unknown names grant nothing.
pub fn roles_of(names: &[String]) -> Vec<Role> {
    names.iter().filter_map(|n| n.parse().ok()).collect()
}

/// The authenticated sender of a request.
#[derive(Debug, Clone)]
pub struct Principal {
    /// The name recorded as the actor of what they do.
    pub name: String,
    /// What they may do.
    pub roles: Vec<Role>,
    /// The API token they presented.
    pub token_id: Option<String>,
    /// The console session they are signed in with.
    pub session_id: Option<String>,
    /// The client's address (`ip:port`), as the connection shows it.
    pub client: String,
}

impl Principal {
    /// How the audit trail records the channel of a write by this principal.
    pub fn via(&self) -> serde_json::Value {
        let channel = if self.session_id.is_some() {
            "console"
        } else {
            "api"
        };
        serde_json::json!({ "channel": channel, "token_id": self.token_id,
            "session_id": self.session_id, "client": self.client })
    }
}

/// Prefix of every API token.
pub const TOKEN_PREFIX: &str = "belay_";

/// A new API token's text (shown once) and its record's hash.
pub fn new_token() -> Result<(String, String), getrandom::Error> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes)?;
    let text = format!(
        "{TOKEN_PREFIX}{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    );
    let hash = token_hash(&text);
    Ok((text, hash))
}

/// The SHA-256 (hex) a token is stored under.
pub fn token_hash(text: &str) -> String {
    belay_model::sha256_hex(text.as_bytes())
}

/// An argon2id hash (PHC string) of `password`, with a random salt.
pub fn hash_password(password: &str) -> Result<String, String> {
    let mut salt = [0u8; 16];
    getrandom::fill(&mut salt).map_err(|e| e.to_string())?;
    let salt = SaltString::encode_b64(&salt).map_err(|e| e.to_string())?;
    argon2::Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| e.to_string())
}

/// Whether `password` matches the stored argon2id hash (constant time in the password).
pub fn verify_password(password: &str, hash: &str) -> bool {
    PasswordHash::new(hash).is_ok_and(|h| {
        argon2::Argon2::default()
            .verify_password(password.as_bytes(), &h)
            .is_ok()
    })
}

/// The directory of people who may decide: `configured` (`[[users]]` of belay.toml), then
/// the users stored with `belay users add`, a stored user replacing a configured one of the
/// same name; disabled users are left out.
pub async fn directory(
    store: &dyn Store,
    configured: impl IntoIterator<Item = (String, Vec<String>)>,
) -> Result<belay_engine::approvals::Directory, belay_store::StoreError> {
    let mut users: Vec<(String, Vec<String>)> = configured.into_iter().collect();
    for u in store.users().await? {
        users.retain(|(n, _)| !belay_engine::approvals::same_user(n, &u.name));
        if !u.disabled {
            users.push((u.name, u.roles));
        }
    }
    Ok(belay_engine::approvals::Directory::new(users))
}

/// How often a token's last use is written back (at most).
const TOUCH_EVERY_MS: i64 = 60_000;

/// The principal a bearer token authenticates, or 401.
pub async fn bearer(
    store: &dyn Store,
    authorization: Option<&str>,
    client: &str,
) -> Result<Principal, Problem> {
    let unauthorized = |why: &str| {
        Problem::new(
            StatusCode::UNAUTHORIZED,
            format!("authentication needed: {why}"),
        )
    };
    let Some(value) = authorization else {
        return Err(unauthorized("send `Authorization: Bearer TOKEN`"));
    };
    let Some(text) = value
        .strip_prefix("Bearer ")
        .or_else(|| value.strip_prefix("bearer "))
    else {
        return Err(unauthorized("only bearer tokens are accepted"));
    };
    let text = text.trim();
    let token: TokenRecord = store
        .token_by_hash(&token_hash(text))
        .await?
        .ok_or_else(|| unauthorized("unknown token"))?;
    let now = belay_model::now_ms();
    if !token.usable(now) {
        return Err(unauthorized("the token is revoked or expired"));
    }
    if store
        .get_user(&token.principal)
        .await?
        .is_some_and(|u| u.disabled)
    {
        return Err(unauthorized("the token's user is disabled"));
    }
    if token.last_used_at.is_none_or(|t| now - t >= TOUCH_EVERY_MS)
        && let Err(e) = store.touch_token(&token.id, now).await
    {
        tracing::warn!("noting the use of token {}: {e}", token.id);
    }
    Ok(Principal {
        name: token.principal,
        roles: roles_of(&token.roles),
        token_id: Some(token.id),
        session_id: None,
        client: client.to_owned(),
    })
}

/// Checks a user's password, counting failures: after `lockout.max_failures` wrong passwords
/// in a row the account is locked for `lockout.lock_ms` (audited `user.locked`); a locked,
/// disabled or unknown user is refused without looking at the password. The answer never says
/// which of name and password was wrong.
pub async fn login(
    store: &dyn Store,
    name: &str,
    password: &str,
    lockout: belay_store::Lockout,
    client: &str,
) -> Result<Principal, Problem> {
    let refused = || Problem::new(StatusCode::UNAUTHORIZED, "wrong user name or password");
    let Some(user) = store.get_user(name).await? else {
        return Err(refused());
    };
    let now = belay_model::now_ms();
    if let Some(until) = user.locked_until.filter(|u| now < *u) {
        let mut p = Problem::new(
            StatusCode::TOO_MANY_REQUESTS,
            "too many wrong passwords: the account is locked for a while",
        );
        p.retry_after = Some(u64::try_from((until - now) / 1000 + 1).unwrap_or(1));
        return Err(p);
    }
    if user.disabled {
        return Err(refused());
    }
    let ok = user
        .password_hash
        .as_deref()
        .is_some_and(|h| verify_password(password, h));
    store.record_login(name, ok, lockout, client).await?;
    if !ok {
        return Err(refused());
    }
    Ok(Principal {
        name: user.name,
        roles: roles_of(&user.roles),
        token_id: None,
        session_id: None,
        client: client.to_owned(),
    })
}

/// 403 unless `p` holds `role`.
pub fn require(p: &Principal, role: Role) -> Result<(), Problem> {
    if role.granted_by(&p.roles) {
        return Ok(());
    }
    let held: Vec<&str> = p.roles.iter().map(|r| r.as_str()).collect();
    Err(Problem::new(
        StatusCode::FORBIDDEN,
        format!(
            "{} may not do this: it needs the {role} role (their roles: {})",
            p.name,
            if held.is_empty() {
                "none".to_owned()
            } else {
                held.join(", ")
            }
        ),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn admin_holds_every_role_and_everyone_reads() {
        assert!(Role::Responder.granted_by(&[Role::Admin]));
        assert!(Role::Viewer.granted_by(&[Role::Author]));
        assert!(!Role::Responder.granted_by(&[Role::Viewer, Role::Author]));
        assert!(!Role::Admin.granted_by(&[Role::Responder]));
        assert_eq!(
            parse_roles("responder, author,responder").unwrap(),
            [Role::Responder, Role::Author]
        );
        assert!(parse_roles("root").is_err());
    }

    #[tokio::test]
    async fn five_wrong_passwords_lock_the_account_audited() {
        use belay_store::{Principals, Store};
        let dir = tempfile::tempdir().unwrap();
        let store =
            belay_store::SqliteStore::open(dir.path(), belay_store::SqliteOptions::default())
                .unwrap();
        let now = belay_model::now_ms();
        let user = belay_store::UserRecord {
            name: "ana".into(),
            roles: vec!["responder".into()],
            password_hash: Some(hash_password("right password").unwrap()),
            disabled: false,
            failed_logins: 0,
            locked_until: None,
            created_at: now,
            updated_at: now,
        };
        store.put_user(&user, "admin", "created").await.unwrap();
        let lockout = belay_store::Lockout::default();
        let p = login(&store, "ana", "right password", lockout, "192.0.2.1")
            .await
            .unwrap();
        assert_eq!(p.roles, [Role::Responder]);
        for _ in 0..5 {
            let e = login(&store, "ana", "wrong", lockout, "192.0.2.1")
                .await
                .unwrap_err();
            assert_eq!(e.status, 401);
        }
        // Locked now: even the right password is refused, with when to try again.
        let e = login(&store, "ana", "right password", lockout, "192.0.2.1")
            .await
            .unwrap_err();
        assert_eq!(e.status, 429, "{e:?}");
        assert!(e.retry_after.is_some());
        let trail = store.audit_entries(0, 100).await.unwrap();
        let locked = trail
            .iter()
            .find(|e| e.kind == "user.locked")
            .expect("audited");
        assert_eq!(locked.detail["client"], "192.0.2.1");
        assert_eq!(
            login(&store, "nobody", "x", lockout, "c")
                .await
                .unwrap_err()
                .status,
            401
        );
    }

    #[test]
    fn passwords_and_tokens_are_kept_as_hashes() {
        let h = hash_password("correct horse").unwrap();
        assert!(h.starts_with("$argon2id$"));
        assert!(verify_password("correct horse", &h));
        assert!(!verify_password("wrong", &h));
        let (text, hash) = new_token().unwrap();
        assert!(text.starts_with(TOKEN_PREFIX) && text.len() == TOKEN_PREFIX.len() + 43);
        assert_eq!(token_hash(&text), hash);
        assert_ne!(new_token().unwrap().0, text);
    }
}
