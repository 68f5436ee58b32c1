//! The session of the current request ([`PracticeSession`]): found by its key in the header,
//! the query or (lifted by [`key_from_form`]) a posted form, refreshed, and checked to hold a
//! role; the practice every query of the request is filtered by.

use std::str::FromStr;

use axum::{extract::FromRequestParts, http::request::Parts};
use secrecy::SecretString;
use tower_sessions_core::{Session, session::Id};

use super::{
    AccessContext, DATA_KEY, Role, SESSION_HEADER, SESSION_PARAM, SessionData, TOUCH_EVERY_MS,
    idle_expiry, store_error,
};
use crate::hint::HintState;
use crate::{audit::Actor, db::now_ms, error::AppError, ids::ExternalId, tenancy::PracticeId};

/// The session of the current request. A handler that takes it cannot run without a valid,
/// unexpired session with at least one role; every query it makes takes `practice_id` from it.
#[derive(Debug, Clone)]
pub struct PracticeSession {
    /// The raw key, to carry in links, forms and htmx headers.
    pub key: String,
    /// The practice every query of this request is filtered by.
    pub practice_id: PracticeId,
    pub practice_name: String,
    pub user_id: String,
    pub user_email: Option<String>,
    pub user_name: String,
    pub roles: Vec<Role>,
    pub access_context: AccessContext,
    pub patient_id: Option<String>,
    pub interaction_id: Option<String>,
    access_token_sealed: Option<String>,
    /// This request's id (ours, or the caller's when it looked like one).
    pub request_id: Option<String>,
}

impl PracticeSession {
    /// Who is acting, for the audit trail.
    pub fn actor(&self) -> Actor {
        Actor {
            id: self.user_id.clone(),
            roles: self
                .roles
                .iter()
                .map(|r| r.as_str())
                .collect::<Vec<_>>()
                .join(" "),
            platform_support: self.is_platform_support(),
            request_id: self.request_id.clone(),
        }
    }

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
    pub fn access_token(&self, state: &HintState) -> Option<SecretString> {
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
pub fn access_token_aad(practice_id: &(impl std::fmt::Display + ?Sized), user_id: &str) -> String {
    format!("hint_sessions.access_token|{practice_id}|{user_id}")
}

/// Largest urlencoded form whose `session_key` field is looked for.
const MAX_KEYED_FORM: usize = 64 * 1024;

/// A form posted straight from a page carries the key in a hidden `session_key` field: this
/// middleware puts it in the header the extractor reads, and hands the body on unchanged.
pub async fn key_from_form(
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use axum::{body::Body, http::header::CONTENT_TYPE, response::IntoResponse};
    let is_form = request
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"));
    if request.method() != axum::http::Method::POST
        || !is_form
        || request.headers().contains_key(SESSION_HEADER)
    {
        return next.run(request).await;
    }
    let (mut parts, body) = request.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, MAX_KEYED_FORM).await else {
        return AppError::BadRequest("The form is too large.".into()).into_response();
    };
    let key = url::form_urlencoded::parse(&bytes)
        .find(|(k, _)| k == SESSION_PARAM)
        .map(|(_, v)| v.into_owned());
    if let Some(value) = key.and_then(|k| axum::http::HeaderValue::from_str(&k).ok()) {
        parts.headers.insert(SESSION_HEADER, value);
    }
    next.run(axum::extract::Request::from_parts(parts, Body::from(bytes)))
        .await
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
    // In the URL only for reading: a key in a POST's URL would be in every log and history.
    if !matches!(
        parts.method,
        axum::http::Method::GET | axum::http::Method::HEAD
    ) {
        return None;
    }
    let query = parts.uri.query()?;
    url::form_urlencoded::parse(query.as_bytes())
        .find(|(k, _)| k == SESSION_PARAM)
        .map(|(_, v)| v.into_owned())
        .filter(|v| !v.is_empty())
}

impl<S> FromRequestParts<S> for PracticeSession
where
    S: AsRef<HintState> + Send + Sync,
{
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, AppError> {
        let state = state.as_ref();
        let key =
            key_from_parts(parts).ok_or_else(|| AppError::Unauthorized("no session key".into()))?;
        let id = Id::from_str(&key)
            .map_err(|_| AppError::Unauthorized("malformed session key".into()))?;
        let session = Session::new(Some(id), state.sessions.clone(), idle_expiry(state));
        let data: SessionData = session
            .get(DATA_KEY)
            .await
            .map_err(store_error)?
            .ok_or_else(|| AppError::Unauthorized("unknown or expired session".into()))?;
        // Used now; a session ended meanwhile (the cap, the sweeper) stays ended.
        if now_ms() - data.last_seen_at > TOUCH_EVERY_MS
            && !state.sessions.touch(&id).await.map_err(AppError::from)?
        {
            return Err(AppError::Unauthorized("the session has ended".into()));
        }
        let roles: Vec<Role> = data
            .roles
            .split_whitespace()
            .filter_map(Role::parse)
            .collect();
        if roles.is_empty() {
            return Err(AppError::NoRole);
        }
        // Our own row, written for a signed handshake: the practice it names is verified.
        let practice_id = ExternalId::try_from(data.practice_id.clone())
            .map(PracticeId::verified)
            .map_err(|e| AppError::Internal(anyhow::anyhow!("a stored session's practice: {e}")))?;
        Ok(PracticeSession {
            key,
            practice_name: data
                .practice_name
                .unwrap_or_else(|| data.practice_id.clone()),
            practice_id,
            user_name: data
                .user_name
                .or_else(|| data.user_email.clone())
                .unwrap_or_else(|| data.user_id.clone()),
            user_id: data.user_id,
            user_email: data.user_email,
            roles,
            access_context: if data.access_context == "platform_support" {
                AccessContext::PlatformSupport
            } else {
                AccessContext::Standard
            },
            patient_id: data.patient_id,
            interaction_id: data.interaction_id,
            access_token_sealed: data.access_token_sealed,
            request_id: parts
                .headers
                .get("x-request-id")
                .and_then(|v| v.to_str().ok())
                .map(String::from),
        })
    }
}
