//! Framed sessions: created by a verified handshake, found by the key Hint appends to the
//! iframe URL, carried afterwards in the `x-hint-session-key` header (htmx) or the
//! `session_key` query parameter (links and forms). No cookies are used.
//!
//! Only the SHA-256 of the key is stored. A session ends after `idle_timeout` without use or
//! `absolute_timeout` after the handshake, whichever comes first.

use axum::{extract::FromRequestParts, http::request::Parts};
use secrecy::SecretString;
use sqlx::Row;

use crate::{
    crypto::{random_token, sha256_hex},
    db::now_ms,
    error::AppError,
    state::AppState,
};

/// Header htmx requests carry the session key in (as Hint's own template does).
pub const SESSION_HEADER: &str = "x-hint-session-key";
/// Query parameter Hint appends to the iframe URL, and links and forms carry.
pub const SESSION_PARAM: &str = "session_key";
/// A session's `last_seen_at` is refreshed at most this often (ms), to keep reads read-only.
const TOUCH_EVERY_MS: i64 = 30_000;

/// A role Chartbridge declares in its Hint app config.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Practice settings and partner connections.
    Admin,
    /// Starts and finishes visits.
    Clinician,
    /// Reads visits and results.
    Staff,
}

impl Role {
    pub fn parse(name: &str) -> Option<Role> {
        match name.trim().to_ascii_lowercase().as_str() {
            "admin" => Some(Role::Admin),
            "clinician" => Some(Role::Clinician),
            "staff" => Some(Role::Staff),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Clinician => "clinician",
            Role::Staff => "staff",
        }
    }
}

/// Who is using the frame, as the handshake said.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AccessContext {
    Standard,
    /// Hint staff: admin rights, a banner, nothing persisted about the user.
    PlatformSupport,
}

/// What a new session is bound to.
pub struct NewSession<'a> {
    pub practice_id: &'a str,
    pub user_id: &'a str,
    pub user_email: Option<&'a str>,
    pub user_name: Option<&'a str>,
    pub roles: &'a [Role],
    pub access_context: AccessContext,
    pub patient_id: Option<&'a str>,
    pub interaction_id: Option<&'a str>,
    pub access_token_sealed: Option<String>,
}

/// Stores a session and returns its key (shown once, to Hint).
pub async fn create(
    tx: &mut sqlx::AnyConnection,
    state: &AppState,
    new: NewSession<'_>,
) -> Result<String, sqlx::Error> {
    let key = random_token();
    let now = now_ms();
    let expires = now + state.settings.sessions.absolute_timeout.as_millis() as i64;
    let roles = new
        .roles
        .iter()
        .map(|r| r.as_str())
        .collect::<Vec<_>>()
        .join(" ");
    let access_context = match new.access_context {
        AccessContext::Standard => "standard",
        AccessContext::PlatformSupport => "platform_support",
    };
    sqlx::query(
        "INSERT INTO hint_sessions (key_hash, practice_id, user_id, user_email, user_name, roles, \
         access_context, patient_id, interaction_id, access_token_sealed, created_at, last_seen_at, expires_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)",
    )
    .bind(sha256_hex(key.as_bytes()))
    .bind(new.practice_id)
    .bind(new.user_id)
    .bind(new.user_email)
    .bind(new.user_name)
    .bind(roles)
    .bind(access_context)
    .bind(new.patient_id)
    .bind(new.interaction_id)
    .bind(new.access_token_sealed)
    .bind(now)
    .bind(now)
    .bind(expires)
    .execute(tx)
    .await?;
    Ok(key)
}

/// Deletes sessions past either timeout.
pub async fn sweep_expired(state: &AppState) -> Result<u64, sqlx::Error> {
    let now = now_ms();
    let idle_cutoff = now - state.settings.sessions.idle_timeout.as_millis() as i64;
    let done =
        sqlx::query("DELETE FROM hint_sessions WHERE expires_at <= $1 OR last_seen_at <= $2")
            .bind(now)
            .bind(idle_cutoff)
            .execute(state.db.writer())
            .await?;
    Ok(done.rows_affected())
}

/// The session of the current request. A handler that takes it cannot run without a valid,
/// unexpired session with at least one role; every query it makes takes `practice_id` from it.
#[derive(Debug, Clone)]
pub struct PracticeSession {
    /// The raw key, to carry in links, forms and htmx headers.
    pub key: String,
    pub practice_id: String,
    pub practice_name: String,
    pub user_id: String,
    pub user_email: Option<String>,
    pub user_name: String,
    pub roles: Vec<Role>,
    pub access_context: AccessContext,
    pub patient_id: Option<String>,
    pub interaction_id: Option<String>,
    access_token_sealed: Option<String>,
}

impl PracticeSession {
    pub fn has(&self, role: Role) -> bool {
        self.roles.contains(&role)
    }

    /// Fails with a 403 page unless the session holds `role`.
    pub fn require(&self, role: Role) -> Result<(), AppError> {
        if self.has(role) {
            Ok(())
        } else {
            Err(AppError::Forbidden(match role {
                Role::Admin => "Only a practice admin can change Chartbridge settings.".into(),
                Role::Clinician => "Only clinicians can start or finish visits.".into(),
                Role::Staff => "You do not have access to this page.".into(),
            }))
        }
    }

    pub fn is_platform_support(&self) -> bool {
        self.access_context == AccessContext::PlatformSupport
    }

    /// The handshake's access token, for calls made while the user waits.
    pub fn access_token(&self, state: &AppState) -> Option<SecretString> {
        let sealed = self.access_token_sealed.as_deref()?;
        state
            .secrets
            .open_str(sealed, &access_token_aad(&self.practice_id, &self.user_id))
            .ok()
    }

    /// Roles for display, e.g. "admin, clinician".
    pub fn role_names(&self) -> String {
        self.roles
            .iter()
            .map(|r| r.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// Associated data binding a sealed access token to its practice and user.
pub fn access_token_aad(practice_id: &str, user_id: &str) -> String {
    format!("hint_sessions.access_token|{practice_id}|{user_id}")
}

fn key_from_parts(parts: &Parts) -> Option<String> {
    if let Some(value) = parts
        .headers
        .get(SESSION_HEADER)
        .and_then(|v| v.to_str().ok())
    {
        let value = value.trim();
        if !value.is_empty() {
            return Some(value.to_string());
        }
    }
    let query = parts.uri.query()?;
    url::form_urlencoded::parse(query.as_bytes())
        .find(|(k, _)| k == SESSION_PARAM)
        .map(|(_, v)| v.into_owned())
        .filter(|v| !v.is_empty())
}

impl FromRequestParts<AppState> for PracticeSession {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, AppError> {
        let key =
            key_from_parts(parts).ok_or_else(|| AppError::Unauthorized("no session key".into()))?;
        if key.len() > 128 {
            return Err(AppError::Unauthorized("malformed session key".into()));
        }
        let key_hash = sha256_hex(key.as_bytes());
        let now = now_ms();
        let idle_cutoff = now - state.settings.sessions.idle_timeout.as_millis() as i64;
        let row = sqlx::query(
            "SELECT s.practice_id, COALESCE(p.name, s.practice_id) AS practice_name, s.user_id, s.user_email, \
             s.user_name, s.roles, s.access_context, s.patient_id, s.interaction_id, \
             s.access_token_sealed, s.last_seen_at \
             FROM hint_sessions s LEFT JOIN practices p ON p.id = s.practice_id \
             WHERE s.key_hash = $1 AND s.expires_at > $2 AND s.last_seen_at > $3",
        )
        .bind(&key_hash)
        .bind(now)
        .bind(idle_cutoff)
        .fetch_optional(state.db.reader())
        .await?
        .ok_or_else(|| AppError::Unauthorized("unknown or expired session".into()))?;

        let last_seen: i64 = row.try_get("last_seen_at")?;
        if now - last_seen > TOUCH_EVERY_MS {
            sqlx::query("UPDATE hint_sessions SET last_seen_at = $1 WHERE key_hash = $2")
                .bind(now)
                .bind(&key_hash)
                .execute(state.db.writer())
                .await?;
        }
        let roles: String = row.try_get("roles")?;
        let roles: Vec<Role> = roles.split_whitespace().filter_map(Role::parse).collect();
        if roles.is_empty() {
            return Err(AppError::NoRole);
        }
        let user_id: String = row.try_get("user_id")?;
        let user_name: Option<String> = row.try_get("user_name")?;
        let user_email: Option<String> = row.try_get("user_email")?;
        let access_context: String = row.try_get("access_context")?;
        Ok(PracticeSession {
            key,
            practice_id: row.try_get("practice_id")?,
            practice_name: row.try_get("practice_name")?,
            user_name: user_name
                .or_else(|| user_email.clone())
                .unwrap_or_else(|| user_id.clone()),
            user_id,
            user_email,
            roles,
            access_context: if access_context == "platform_support" {
                AccessContext::PlatformSupport
            } else {
                AccessContext::Standard
            },
            patient_id: row.try_get("patient_id")?,
            interaction_id: row.try_get("interaction_id")?,
            access_token_sealed: row.try_get("access_token_sealed")?,
        })
    }
}
