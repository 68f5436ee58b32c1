//! Framed sessions: created by a verified handshake, found by the key Hint appends to the
//! iframe URL, carried afterwards in the `x-hint-session-key` header (htmx), the `session_key`
//! query parameter (links: GET only) or a hidden `session_key` field (forms posted without
//! htmx; [`key_from_form`] lifts it into the header). A POST never has the key in its URL.
//! No cookies are used.
//!
//! Sessions are `tower_sessions` sessions driven from that key instead of a cookie, kept by
//! `HintSessionStore` in `hint_sessions`: only the SHA-256 of the key (128 random bits) is
//! stored, next to typed practice and user columns. A session ends after `idle_timeout`
//! without use or `absolute_timeout` after the handshake, whichever comes first.
//!
//! Handshakes come in bursts (a practice opening Hint in the morning): a new session is
//! group-committed with the others arriving at the same time (one transaction: the sessions,
//! the practice row when its name is new to this instance, the per-user cap), and its key is
//! answered only once that is committed.

mod cap;
mod extractor;
mod store;

pub use extractor::{PracticeSession, access_token_aad, key_from_form};
pub use store::{HintSessionStore, sweep_expired, sweep_periodically};

use serde::{Deserialize, Serialize};
use tower_sessions_core::{Expiry, session::Id};

use super::HintState;
use crate::{db::now_ms, error::AppError, tenancy::PracticeId};

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
    pub practice_id: &'a PracticeId,
    pub user_id: &'a str,
    pub user_email: Option<&'a str>,
    pub user_name: Option<&'a str>,
    pub roles: &'a [Role],
    pub access_context: AccessContext,
    pub patient_id: Option<&'a str>,
    pub interaction_id: Option<&'a str>,
    pub access_token_sealed: Option<String>,
    /// The practice's name as the handshake gave it.
    pub practice_name: &'a str,
    /// The hash of the signed handshake body: a body accepted once is refused after.
    pub handshake_hash: String,
}

/// The key a session's data lives under in the `tower_sessions` record.
const DATA_KEY: &str = "hint";

/// A session's data as the store keeps it (one typed column each in `hint_sessions`).
#[derive(Debug, Clone, Serialize, Deserialize, sqlx::FromRow)]
struct SessionData {
    practice_id: String,
    user_id: String,
    user_email: Option<String>,
    user_name: Option<String>,
    roles: String,
    access_context: String,
    patient_id: Option<String>,
    interaction_id: Option<String>,
    access_token_sealed: Option<String>,
    created_at: i64,
    expires_at: i64,
    /// Filled on load.
    #[serde(default)]
    last_seen_at: i64,
    /// Filled on load from `practices`.
    #[serde(default)]
    practice_name: Option<String>,
}

fn idle_expiry(state: &HintState) -> Option<Expiry> {
    let idle = time::Duration::try_from(state.settings.sessions.idle_timeout)
        .unwrap_or(time::Duration::minutes(15));
    Some(Expiry::OnInactivity(idle))
}

fn store_error(e: tower_sessions_core::session::Error) -> AppError {
    use tower_sessions_core::{session::Error, session_store};
    // The store's trait carries its errors as text: a database away is told by its words.
    if let Error::Store(session_store::Error::Backend(message)) = &e {
        if message.starts_with(store::AWAY) {
            return AppError::Unavailable(Box::new(crate::db::DatabaseAway(message.clone())));
        }
    }
    AppError::Internal(anyhow::Error::new(e).context("session store"))
}

/// Opens a session for a verified handshake; answers its key (shown once, to Hint). A
/// `platform_support` session keeps nothing personal of the Hint staff member (Hint: no
/// persistent user): their id only. A user's oldest sessions beyond `max_per_user` end.
pub async fn open(state: &HintState, new: NewSession<'_>) -> Result<String, AppError> {
    let now = now_ms();
    let personal = new.access_context == AccessContext::Standard;
    let data = SessionData {
        practice_id: new.practice_id.as_str().to_string(),
        user_id: new.user_id.to_string(),
        user_email: new.user_email.filter(|_| personal).map(String::from),
        user_name: new.user_name.filter(|_| personal).map(String::from),
        roles: new
            .roles
            .iter()
            .map(|r| r.as_str())
            .collect::<Vec<_>>()
            .join(" "),
        access_context: match new.access_context {
            AccessContext::Standard => "standard",
            AccessContext::PlatformSupport => "platform_support",
        }
        .to_string(),
        patient_id: new.patient_id.map(String::from),
        interaction_id: new.interaction_id.map(String::from),
        access_token_sealed: new.access_token_sealed,
        created_at: now,
        expires_at: now + state.settings.sessions.absolute_timeout.as_millis() as i64,
        last_seen_at: now,
        practice_name: None,
    };
    // 128 random bits, as tower-sessions draws them.
    let id = Id::default();
    state
        .sessions
        .open(&id, data, new.practice_name, new.handshake_hash)
        .await?;
    Ok(id.to_string())
}
