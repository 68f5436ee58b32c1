//! Everything Hint calls: the signed handshake, Instant On, webhooks; plus our client for
//! Hint's Provider API, the framed session those calls create, and the frame's chrome.
//!
//! This layer sees only [`HintState`]; the visit lifecycle and the partners build on it.

pub mod budget;
pub mod client;
pub mod directory;
pub mod erase;
pub mod frame;
pub mod handshake;
pub mod install;
pub mod installations;
pub mod patient_index;
pub mod registration;
pub mod review;
pub mod session;
mod state;
pub mod webhooks;

use axum::{
    Router,
    http::HeaderMap,
    routing::{get, post},
};
use secrecy::{ExposeSecret, SecretString};

use crate::{crypto::verify_hmac_sha256, error::AppError};

pub use client::{HintAuth, HintClient, HintError, Patient};
pub use frame::Frame;
pub use session::{PracticeSession, Role};
pub use state::HintState;

/// Routes Hint's servers call.
pub fn router<S>() -> Router<S>
where
    S: AsRef<HintState> + Clone + Send + Sync + 'static,
{
    Router::new()
        .route("/hint/handshake", post(handshake::handshake::<S>))
        .route("/hint/connect/{code}", post(install::connect::<S>))
        .route("/hint/connect", get(install::connect_redirect::<S>))
        // The listing's redirect_url ends with a slash (Hint's review wants it so).
        .route("/hint/connect/", get(install::connect_redirect::<S>))
        .route("/webhooks/hint", post(webhooks::receive::<S>))
}

/// Verifies `X-Hint-Signature` over the raw body with `HINT_WEBHOOK_SECRET`.
pub fn verify_hint_signature(
    state: &HintState,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<(), AppError> {
    let header = headers
        .get("x-hint-signature")
        .and_then(|v| v.to_str().ok());
    verify_hmac_sha256(
        state
            .settings
            .hint
            .webhook_secret
            .expose_secret()
            .as_bytes(),
        header,
        body,
    )
    .map_err(|e| AppError::Unauthorized(format!("hint signature: {e}")))
}

/// Makes `call` to Hint while the user waits: with the handshake's access token, and, when
/// Hint no longer takes it (401: it is short-lived, and the frame stays open), once more with
/// the practice's Instant On token. When Hint takes neither, the user's access has ended: a
/// 401 that tells them to reopen Chartbridge from Hint (the frame shows it in place), never a
/// 5xx. All of it within `user_wait`: a Hint slower than that is said to be slow (502, in the
/// frame), never left to the request timeout's blank 504.
pub async fn as_user<T, F, Fut>(
    state: &HintState,
    session: &PracticeSession,
    call: F,
) -> Result<Result<T, HintError>, AppError>
where
    F: Fn(SecretString) -> Fut,
    Fut: std::future::Future<Output = Result<T, HintError>>,
{
    let slow = || {
        AppError::upstream(
            "Hint is slow to answer right now, so Chartbridge could not finish this. Try again in a moment.",
        )
    };
    tokio::time::timeout(
        state.settings.hint.user_wait,
        as_user_within(state, session, call),
    )
    .await
    .unwrap_or_else(|_| Err(slow()))
}

async fn as_user_within<T, F, Fut>(
    state: &HintState,
    session: &PracticeSession,
    call: F,
) -> Result<Result<T, HintError>, AppError>
where
    F: Fn(SecretString) -> Fut,
    Fut: std::future::Future<Output = Result<T, HintError>>,
{
    let practice_id = &session.practice_id;
    let ended =
        || AppError::Unauthorized("Hint no longer accepts this session's access token".into());
    let expired = |r: &Result<T, HintError>| matches!(r, Err(e) if e.is_status(reqwest::StatusCode::UNAUTHORIZED));
    let user_token = session.access_token(state);
    if let Some(token) = &user_token {
        let answer = call(token.clone()).await;
        if !expired(&answer) {
            return Ok(answer);
        }
    }
    let Some(token) = installations::practice_token(state, practice_id).await? else {
        return Err(match user_token {
            Some(_) => ended(),
            None => AppError::upstream(
                "Chartbridge has no Hint access for this practice yet. Ask a practice admin to install it from the Hint marketplace.",
            ),
        });
    };
    let answer = call(token).await;
    if expired(&answer) && user_token.is_some() {
        return Err(ended());
    }
    Ok(answer)
}

/// Loads a patient of the session's practice from Hint (404 for anyone else's).
pub async fn patient_for(
    state: &HintState,
    session: &PracticeSession,
    patient_id: &str,
) -> Result<Patient, AppError> {
    if patient_id.is_empty() || patient_id.len() > 64 {
        return Err(AppError::BadRequest("Pick a patient first.".into()));
    }
    as_user(state, session, |token| async move {
        let auth = HintAuth {
            practice_id: &session.practice_id,
            token: &token,
        };
        state.hint.get_patient(&auth, patient_id).await
    })
    .await?
    .map_err(|e| {
        if e.is_status(reqwest::StatusCode::NOT_FOUND) {
            AppError::NotFound
        } else {
            AppError::upstream_because(format!("Hint could not load the patient: {e}."), e)
        }
    })
}
