//! Everything Hint calls: the signed handshake, Instant On, webhooks; plus our client for
//! Hint's Provider API and the framed session those calls create.

pub mod client;
pub mod directory;
pub mod handshake;
pub mod install;
pub mod session;
pub mod webhooks;

use axum::{
    Router,
    http::HeaderMap,
    routing::{get, post},
};
use secrecy::ExposeSecret;

use crate::{crypto::verify_hmac_sha256, error::AppError, state::AppState};

pub use client::{HintAuth, HintClient, HintError};
pub use session::{PracticeSession, Role};

/// Routes Hint's servers call.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/hint/handshake", post(handshake::handshake))
        .route("/hint/connect/{code}", post(install::connect))
        .route("/hint/connect", get(install::connect_redirect))
        .route("/webhooks/hint", post(webhooks::receive))
}

/// Verifies `X-Hint-Signature` over the raw body with `HINT_WEBHOOK_SECRET`.
pub fn verify_hint_signature(
    state: &AppState,
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
