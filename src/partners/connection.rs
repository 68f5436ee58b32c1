//! A practice's connection to a partner, as its admin sets it up: plain settings (JSON) and
//! secrets (JSON, sealed with the row's identity as associated data). Secrets are written,
//! never shown back; a secret field left blank keeps the stored one.
//!
//! One settings flow serves every partner: a partner describes its connection by implementing
//! [`Connection`] (what is stored, its form, how a form becomes a connection, its section of
//! the settings page) and mounts [`routes`]; [`save`] and [`section`] do the rest. A check of
//! the credentials with the partner (a "Test connection") belongs in [`save`], between the
//! form's validation and storing it, reported through [`SaveOutcome`].

use std::{future::Future, sync::Arc};

use axum::{Form, Router, extract::State, http::StatusCode, response::Html, routing::post};
use serde::{Serialize, de::DeserializeOwned};
use sqlx::Row;

use crate::{
    audit::{self, Action, Actor, Entry},
    crypto::SignatureError,
    db::now_ms,
    error::AppError,
    hint::{PracticeSession, Role},
    ids::ExternalId,
    tenancy::PracticeId,
    visits::AppState,
    visits::PartnerId,
};

/// A partner's per-practice connection and its section of the settings surface.
pub trait Connection: Sized + Send + Sync + 'static {
    /// The partner it connects to.
    const PARTNER: PartnerId;
    /// Plain settings, stored as JSON.
    type Settings: Serialize + DeserializeOwned + Send;
    /// Secrets, stored sealed.
    type Secrets: Serialize + DeserializeOwned + Send;
    /// The settings form as the admin posts it.
    type Form: DeserializeOwned + Send + Sync + 'static;

    fn from_stored(settings: Self::Settings, secrets: Self::Secrets) -> Self;

    fn to_stored(&self) -> (Self::Settings, Self::Secrets);

    /// A submitted form as a connection; secrets left blank keep `stored`'s. The error is
    /// for the admin.
    fn from_form(form: &Self::Form, stored: Option<&Self>) -> Result<Self, String>;

    /// Checks a connection the form made against the world before it is stored (an address
    /// the admin typed may be called); the error is for the admin. Nothing to check by default.
    fn check(&self, app: &AppState) -> impl Future<Output = Result<(), String>> + Send {
        let _ = app;
        async { Ok(()) }
    }

    /// The section's HTML: the form showing `entered` (after a refused save) or `stored`, and
    /// what the last save did.
    fn render_section(view: SectionView<'_, Self>) -> Result<String, AppError>;
}

/// What a section is drawn from.
pub struct SectionView<'a, C: Connection> {
    pub app: &'a AppState,
    pub practice_id: &'a PracticeId,
    pub stored: Option<&'a C>,
    /// What the admin entered, when a save refused it.
    pub entered: Option<&'a C::Form>,
    pub outcome: Option<&'a SaveOutcome>,
}

impl<C: Connection> SectionView<'_, C> {
    pub fn configured(&self) -> bool {
        self.stored.is_some()
    }

    pub fn saved(&self) -> bool {
        matches!(self.outcome, Some(SaveOutcome::Saved))
    }

    /// Why the last save was refused, for the admin.
    pub fn error(&self) -> Option<String> {
        match self.outcome {
            Some(SaveOutcome::Refused(why)) => Some(why.clone()),
            _ => None,
        }
    }

    /// The URL the partner posts this practice's webhooks to.
    pub fn webhook_url(&self) -> String {
        webhook_url(self.app, C::PARTNER, self.practice_id)
    }
}

/// What an admin's save did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SaveOutcome {
    Saved,
    /// Not saved; why, for the admin.
    Refused(String),
}

/// The settings route of connection `C`: `POST /hint/settings/{partner}`.
pub fn routes<C: Connection>() -> Router<AppState> {
    Router::new().route(
        &format!("/hint/settings/{}", C::PARTNER),
        post(save_form::<C>),
    )
}

/// `POST /hint/settings/{partner}` (admins, htmx): validates, saves, answers the section
/// again (422 with the reason when refused; what was entered is kept in the form).
async fn save_form<C: Connection>(
    State(app): State<AppState>,
    session: PracticeSession,
    Form(form): Form<C::Form>,
) -> Result<(StatusCode, Html<String>), AppError> {
    session.require(Role::Admin)?;
    let practice_id = &session.practice_id;
    let stored = load::<C>(&app, practice_id).await?;
    let outcome = save(&app, practice_id, &form, stored.as_ref(), &session.actor()).await?;
    let (status, stored, entered) = match outcome {
        SaveOutcome::Saved => (StatusCode::OK, load::<C>(&app, practice_id).await?, None),
        SaveOutcome::Refused(_) => (StatusCode::UNPROCESSABLE_ENTITY, stored, Some(&form)),
    };
    let html = C::render_section(SectionView {
        app: &app,
        practice_id,
        stored: stored.as_ref(),
        entered,
        outcome: Some(&outcome),
    })?;
    Ok((status, Html(html)))
}

/// Validates `form` against what is stored and saves it; a refusal changes nothing.
pub async fn save<C: Connection>(
    app: &AppState,
    practice_id: &PracticeId,
    form: &C::Form,
    stored: Option<&C>,
    actor: &Actor,
) -> Result<SaveOutcome, AppError> {
    let connection = match C::from_form(form, stored) {
        Ok(connection) => connection,
        Err(why) => return Ok(SaveOutcome::Refused(why)),
    };
    if let Err(why) = connection.check(app).await {
        return Ok(SaveOutcome::Refused(why));
    }
    store(app, practice_id, &connection, actor).await?;
    Ok(SaveOutcome::Saved)
}

/// A partner's section of the settings page as it stands.
pub async fn section<C: Connection>(
    app: &AppState,
    session: &PracticeSession,
) -> Result<String, AppError> {
    let stored = load::<C>(app, &session.practice_id).await?;
    C::render_section(SectionView {
        app,
        practice_id: &session.practice_id,
        stored: stored.as_ref(),
        entered: None,
        outcome: None,
    })
}

/// The entered value, or the stored one when the field was left blank.
pub fn keep_blank(entered: &str, stored: Option<&str>) -> String {
    match (entered, stored) {
        ("", Some(stored)) => stored.to_string(),
        (entered, _) => entered.to_string(),
    }
}

/// The URL a partner posts this practice's webhooks to: `{public}/webhooks/{partner}/{practice}`.
pub fn webhook_url(app: &AppState, partner: PartnerId, practice_id: &PracticeId) -> String {
    crate::upstream::endpoint(
        &app.public_url,
        &["webhooks", partner.as_str(), practice_id.as_str()],
    )
    .to_string()
}

fn aad(practice_id: &PracticeId, partner: PartnerId) -> String {
    format!("partner_connections|{practice_id}|{partner}")
}

/// This practice's connection to `C`'s partner, if set up.
pub async fn load<C: Connection>(
    app: &AppState,
    practice_id: &PracticeId,
) -> Result<Option<C>, AppError> {
    let row = sqlx::query(
        "SELECT settings, secrets_sealed FROM partner_connections WHERE practice_id = $1 AND partner = $2",
    )
    .bind(practice_id)
    .bind(C::PARTNER.as_str())
    .fetch_optional(app.db.reader())
    .await?;
    let Some(row) = row else { return Ok(None) };
    let settings: String = row.try_get("settings")?;
    let sealed: String = row.try_get("secrets_sealed")?;
    let secrets = app.secrets.open(&sealed, &aad(practice_id, C::PARTNER))?;
    let settings = serde_json::from_str(&settings).map_err(|e| {
        AppError::Internal(anyhow::Error::new(e).context("stored partner settings"))
    })?;
    let secrets = serde_json::from_slice(&secrets)
        .map_err(|e| AppError::Internal(anyhow::Error::new(e).context("stored partner secrets")))?;
    Ok(Some(C::from_stored(settings, secrets)))
}

/// Inserts or replaces this practice's connection, and says so in the audit trail.
async fn store<C: Connection>(
    app: &AppState,
    practice_id: &PracticeId,
    connection: &C,
    actor: &Actor,
) -> Result<(), AppError> {
    let (settings, secrets) = connection.to_stored();
    let settings = serde_json::to_string(&settings).map_err(anyhow::Error::new)?;
    let secrets = serde_json::to_vec(&secrets).map_err(anyhow::Error::new)?;
    let sealed = app.secrets.seal(&secrets, &aad(practice_id, C::PARTNER));
    let mut tx = app.db.begin().await?;
    sqlx::query(
        "INSERT INTO partner_connections (practice_id, partner, settings, secrets_sealed, updated_by, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $6) \
         ON CONFLICT (practice_id, partner) DO UPDATE SET settings = excluded.settings, \
         secrets_sealed = excluded.secrets_sealed, updated_by = excluded.updated_by, updated_at = excluded.updated_at",
    )
    .bind(practice_id)
    .bind(C::PARTNER.as_str())
    .bind(settings)
    .bind(sealed)
    .bind(&actor.id)
    .bind(now_ms())
    .execute(&mut *tx)
    .await?;
    let changed = Entry::new(Action::SettingsChanged).detail(C::PARTNER.as_str());
    audit::record(&mut tx, practice_id, actor, changed).await?;
    tx.commit().await?;
    app.connection_secrets
        .forget(practice_id.as_str(), C::PARTNER.as_str());
    tracing::info!(%practice_id, partner = %C::PARTNER, "partner settings saved");
    Ok(())
}

/// The partners this practice has set up, in the registry's order.
pub async fn configured(
    app: &AppState,
    practice_id: &PracticeId,
) -> Result<Vec<PartnerId>, AppError> {
    let ids: Vec<String> =
        sqlx::query_scalar("SELECT partner FROM partner_connections WHERE practice_id = $1")
            .bind(practice_id)
            .fetch_all(app.db.reader())
            .await?;
    Ok(app
        .partners
        .iter()
        .map(|p| p.id())
        .filter(|p| ids.iter().any(|id| id == p.as_str()))
        .collect())
}

/// The secrets only (the webhook hot path: no settings to parse), from the cache unless
/// `reload`.
async fn secrets<C: Connection>(
    app: &AppState,
    practice_id: &str,
    reload: bool,
) -> Result<Option<C::Secrets>, AppError> {
    let partner = C::PARTNER.as_str();
    let cached = if reload {
        None
    } else {
        app.connection_secrets.get(practice_id, partner)
    };
    let bytes = match cached {
        Some(bytes) => bytes,
        None => {
            let sealed: Option<String> = sqlx::query_scalar(
                "SELECT secrets_sealed FROM partner_connections WHERE practice_id = $1 AND partner = $2",
            )
            .bind(practice_id)
            .bind(partner)
            .fetch_optional(app.db.reader())
            .await?;
            let Some(sealed) = sealed else {
                app.connection_secrets.forget(practice_id, partner);
                return Ok(None);
            };
            let aad = format!("partner_connections|{practice_id}|{partner}");
            let bytes: Arc<[u8]> = app.secrets.open(&sealed, &aad)?.into();
            app.connection_secrets
                .put(practice_id, partner, bytes.clone());
            bytes
        }
    };
    serde_json::from_slice(&bytes)
        .map(Some)
        .map_err(|e| AppError::Internal(anyhow::Error::new(e).context("stored partner secrets")))
}

/// Checks a delivery to `/webhooks/{partner}/{practice}` against that practice's own secrets
/// with `check`: first the cached copy, then, on a mismatch, the stored one, so a secret rotated
/// on another instance counts at once. Answers the practice, now verified. Every refusal is the
/// same 401 (no connection, an unknown practice, a missing, malformed or wrong signature): a
/// caller without the secret learns nothing of which practices use which partner.
pub async fn verify_delivery<C: Connection>(
    app: &AppState,
    practice_id: ExternalId,
    check: impl Fn(&C::Secrets) -> Result<(), SignatureError>,
) -> Result<PracticeId, AppError> {
    let unauthorized =
        |e: SignatureError| AppError::Unauthorized(format!("{} signature: {e}", C::PARTNER));
    let not_connected =
        || AppError::Unauthorized(format!("{} signature: not connected", C::PARTNER));
    let cached = secrets::<C>(app, &practice_id, false)
        .await?
        .ok_or_else(not_connected)?;
    match check(&cached) {
        Ok(()) => {}
        Err(SignatureError::Mismatch) => {
            let stored = secrets::<C>(app, &practice_id, true)
                .await?
                .ok_or_else(not_connected)?;
            check(&stored).map_err(unauthorized)?;
        }
        Err(e) => return Err(unauthorized(e)),
    }
    // The delivery carries this practice's own secret: the practice is verified.
    Ok(PracticeId::verified(practice_id))
}
