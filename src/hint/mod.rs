//! Everything Hint calls: the signed handshake, Instant On, webhooks; plus our client for
//! Hint's Provider API, the framed session those calls create, and the frame's chrome.
//!
//! This layer sees only [`HintState`]; the visit lifecycle and the partners build on it.

pub mod budget;
pub mod client;
pub mod directory;
pub mod frame;
pub mod handshake;
pub mod install;
pub mod installations;
pub mod patient_index;
pub mod registration;
pub mod review;
pub mod session;
pub mod webhooks;

use std::sync::Arc;

use axum::{
    Router,
    http::HeaderMap,
    routing::{get, post},
};
use secrecy::{ExposeSecret, SecretString};
use url::Url;

use crate::{
    config::Settings, crypto::SecretBox, crypto::verify_hmac_sha256, db::Db, error::AppError,
    upstream::Upstream,
};

pub use client::{HintAuth, HintClient, HintError, Patient};
pub use frame::Frame;
pub use session::{PracticeSession, Role};

/// What the Hint layer works with: configuration, the database, sealed secrets, the way out,
/// and Hint's client, sessions and patient lists. The layers above hold it and lend it out
/// (`AsRef<HintState>`), so handlers here run under any of their states. One `Arc`: a clone
/// per request (every extractor and middleware takes one) costs a reference count, not a copy
/// of the settings.
#[derive(Clone, Debug)]
pub struct HintState(Arc<HintParts>);

impl std::ops::Deref for HintState {
    type Target = HintParts;

    fn deref(&self) -> &HintParts {
        &self.0
    }
}

/// What a [`HintState`] holds (`state.db`, `state.hint`, … read through it).
#[derive(Debug)]
pub struct HintParts {
    pub settings: Arc<Settings>,
    /// Where Hint and the partners reach us.
    pub public_url: Url,
    pub db: Db,
    /// Seals and opens secrets at rest.
    pub secrets: SecretBox,
    /// Every outbound call goes through it.
    pub upstream: Upstream,
    pub hint: HintClient,
    /// Where framed sessions live.
    pub sessions: Arc<session::HintSessionStore>,
    /// Practices' patient lists for search.
    pub patients: Arc<directory::PatientDirectory>,
    /// Writes audit entries that have no transaction of their own (group commit).
    pub audit: crate::audit::Recorder,
    /// What operators scrape (`/metrics`).
    pub metrics: crate::metrics::Metrics,
}

impl HintState {
    /// `public_url` is the configured one, or the address the server was bound to.
    pub fn new(settings: Settings, db: Db, public_url: Url) -> anyhow::Result<Self> {
        let upstream = Upstream::with_policy(
            settings.http_timeout,
            settings.outbound.allow.clone(),
            settings.outbound.lookup.clone(),
        )?;
        let metrics = crate::metrics::Metrics::default();
        Ok(Self(Arc::new(HintParts {
            sessions: Arc::new(session::HintSessionStore::new(
                db.clone(),
                &settings.sessions,
            )),
            patients: Arc::new(directory::PatientDirectory::new()),
            secrets: SecretBox::new(&settings.secret_key),
            audit: crate::audit::Recorder::spawn(db.clone()),
            hint: HintClient::new(
                upstream.clone(),
                settings.hint.clone(),
                metrics.clone(),
                settings.hint.shared_budget.then(|| {
                    // Longer than any one call with its retries may hold a slot.
                    budget::SharedBudget::new(db.clone(), settings.http_timeout * 4)
                }),
            ),
            metrics,
            upstream,
            settings: Arc::new(settings),
            public_url,
            db,
        })))
    }
}

impl AsRef<HintState> for HintState {
    fn as_ref(&self) -> &HintState {
        self
    }
}

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
/// 5xx.
pub async fn as_user<T, F, Fut>(
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
