//! `POST /hint/handshake`: Hint signs a JSON body describing the user, practice and (on the
//! clinical surfaces) the patient and interaction; we verify it and answer a session key.
//!
//! The signature is checked on the raw bytes before anything is parsed. Decoding is permissive
//! (only `user.id` and `practice.id` are certain). The signed `timestamp` is required and must
//! be fresh, and a body is accepted once: its replay, on any instance, is a 401.

use axum::{Json, body::Bytes, extract::State, http::HeaderMap};
use serde::{Deserialize, Serialize};
use time::{OffsetDateTime, format_description::well_known::Rfc3339};

use super::{
    HintState,
    session::{self, AccessContext, NewSession, Role},
    verify_hint_signature,
};
use crate::{
    error::{ApiError, AppError},
    ids::{ExternalId, clean_text},
    practice_limits::Signed,
    tenancy::PracticeId,
};

#[derive(Debug, Deserialize)]
pub struct HandshakePayload {
    #[serde(default)]
    pub timestamp: Option<String>,
    pub user: HandshakeUser,
    pub practice: HandshakePractice,
    #[serde(default)]
    pub access_token: Option<String>,
    #[serde(default)]
    pub access_context: Option<String>,
    #[serde(default)]
    pub patient: Option<IdRef>,
    #[serde(default)]
    pub interaction: Option<IdRef>,
}

#[derive(Debug, Deserialize)]
pub struct HandshakeUser {
    pub id: ExternalId,
    #[serde(default)]
    pub email: Option<String>,
    #[serde(default)]
    pub first_name: Option<String>,
    #[serde(default)]
    pub last_name: Option<String>,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub partner_roles: Option<Vec<String>>,
}

impl HandshakeUser {
    fn display_name(&self) -> Option<String> {
        if let Some(name) = self.name.as_deref().filter(|n| !n.trim().is_empty()) {
            return Some(name.to_string());
        }
        let joined = [self.first_name.as_deref(), self.last_name.as_deref()]
            .into_iter()
            .flatten()
            .collect::<Vec<_>>()
            .join(" ");
        (!joined.trim().is_empty()).then_some(joined)
    }
}

#[derive(Debug, Deserialize)]
pub struct HandshakePractice {
    pub id: ExternalId,
    #[serde(default)]
    pub name: Option<String>,
}

#[derive(Debug, Deserialize)]
pub struct IdRef {
    pub id: ExternalId,
}

#[derive(Debug, Serialize)]
pub struct HandshakeAnswer {
    pub session_key: String,
}

pub async fn handshake<S: AsRef<HintState>>(
    State(state): State<S>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<HandshakeAnswer>, ApiError> {
    let state = state.as_ref();
    verify_hint_signature(state, &headers, &body)?;
    let payload: HandshakePayload = serde_json::from_slice(&body)
        .map_err(|e| AppError::BadRequest(format!("malformed handshake body: {e}")))?;
    // Hint always signs a time: without one a signed body could be replayed forever; with
    // one, the body is remembered for the window (`session::open` refuses it a second time).
    let timestamp = payload
        .timestamp
        .as_deref()
        .ok_or_else(|| AppError::Unauthorized("handshake without a timestamp".into()))?;
    check_fresh(timestamp, state.settings.sessions.handshake_max_age)?;

    let access_context = match payload.access_context.as_deref() {
        Some("platform_support") => AccessContext::PlatformSupport,
        _ => AccessContext::Standard,
    };
    let roles: Vec<Role> = match access_context {
        AccessContext::PlatformSupport => vec![Role::Admin],
        AccessContext::Standard => {
            let mut roles: Vec<Role> = payload
                .user
                .partner_roles
                .iter()
                .flatten()
                .filter_map(|r| Role::parse(r))
                .collect();
            roles.dedup();
            roles
        }
    };
    // Signed by Hint: the practice it names is verified, and spends its own budget.
    let practice_id = PracticeId::verified(payload.practice.id.clone());
    state
        .practice_limits
        .spend(Signed::Handshake, practice_id.as_str())?;
    let user_id = payload.user.id.as_str();
    let access_token_sealed = payload
        .access_token
        .as_deref()
        .filter(|t| !t.is_empty())
        .map(|t| {
            state.secrets.seal(
                t.as_bytes(),
                &session::access_token_aad(&practice_id, user_id),
            )
        });
    let user_name = payload.user.display_name().map(|n| clean_text(&n, 200));
    let user_email = payload.user.email.as_deref().map(|e| clean_text(e, 320));

    let practice_name = clean_text(
        payload
            .practice
            .name
            .as_deref()
            .unwrap_or(practice_id.as_str()),
        200,
    );
    let session_key = session::open(
        state,
        NewSession {
            practice_id: &practice_id,
            user_id,
            user_email: user_email.as_deref(),
            user_name: user_name.as_deref(),
            roles: &roles,
            access_context,
            patient_id: payload.patient.as_ref().map(|p| p.id.as_str()),
            interaction_id: payload.interaction.as_ref().map(|i| i.id.as_str()),
            access_token_sealed,
            handshake_hash: crate::crypto::sha256_hex(&body),
            practice_name: &practice_name,
        },
    )
    .await?;
    tracing::info!(%practice_id, user_id, "handshake accepted");
    Ok(Json(HandshakeAnswer { session_key }))
}

/// Refuses a timestamp further than `max_age` from now, in either direction.
fn check_fresh(timestamp: &str, max_age: std::time::Duration) -> Result<(), AppError> {
    let at = OffsetDateTime::parse(timestamp, &Rfc3339)
        .map_err(|_| AppError::BadRequest("timestamp is not RFC 3339".into()))?;
    let skew = (OffsetDateTime::now_utc() - at).abs();
    if skew > max_age {
        return Err(AppError::Unauthorized("stale handshake timestamp".into()));
    }
    Ok(())
}
