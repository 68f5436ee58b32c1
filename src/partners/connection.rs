//! A practice's connection to a partner, as its admin sets it up: plain settings (JSON) and
//! secrets (JSON, sealed with the row's identity as associated data). Secrets are written,
//! never shown back; a secret field left blank keeps the stored one.
//!
//! One settings flow serves every partner: a partner describes its connection by implementing
//! [`Connection`] (what is stored, its form, how a form becomes a connection, a harmless real
//! call that tests it, its section of the settings page) and mounts [`routes`]; [`save`],
//! [`test()`] and [`section`] do the rest. A save tests what was entered with the partner before
//! storing it: credentials the partner refuses are not stored unless the admin says "Save
//! anyway" (then they are, flagged). Every section shows the connection's health
//! (`visits::health`): connected, failing since when and why, or never used.

use std::{future::Future, sync::Arc};

use axum::{
    Router,
    extract::{RawForm, State},
    http::StatusCode,
    response::Html,
    routing::post,
};
use serde::{Deserialize, Serialize, de::DeserializeOwned};
use sqlx::Row;

use crate::{
    audit::{self, Action, Actor, Entry},
    crypto::SignatureError,
    db::{Moment, now_ms},
    error::AppError,
    hint::{PracticeSession, Role},
    ids::ExternalId,
    tenancy::PracticeId,
    visits::{
        AppState, PartnerId, PartnerState,
        health::{self, Health, HealthStatus, Observation},
    },
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
    /// The partner value (its client): what a test calls with.
    type Partner: Send + Sync + 'static;

    fn from_stored(settings: Self::Settings, secrets: Self::Secrets) -> Self;

    fn to_stored(&self) -> (Self::Settings, Self::Secrets);

    /// A submitted form as a connection; secrets left blank keep `stored`'s. The refusal is
    /// for the admin, naming the field when one is at fault.
    fn from_form(form: &Self::Form, stored: Option<&Self>) -> Result<Self, Refusal>;

    /// Checks a connection the form made against the world before it is stored (an address
    /// the admin typed may be called); the refusal is for the admin. Nothing to check by
    /// default.
    fn check(&self, app: &AppState) -> impl Future<Output = Result<(), Refusal>> + Send {
        let _ = app;
        async { Ok(()) }
    }

    /// A harmless real call with this connection (a sign-in, a listing, a token request that
    /// opens nothing). Partners that only call us keep the default: their signed deliveries
    /// are their health.
    fn test(
        &self,
        partner: &Self::Partner,
        app: &AppState,
        practice_id: &PracticeId,
    ) -> impl Future<Output = Tested> + Send {
        let _ = (partner, app, practice_id);
        async { Tested::Inbound }
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
    /// The connection's health, with what a save or a test just did.
    pub panel: Panel,
}

impl<C: Connection> SectionView<'_, C> {
    pub fn configured(&self) -> bool {
        self.stored.is_some()
    }

    /// The health panel and the save's outcome, for the section's template.
    pub fn panel(&self) -> Panel {
        self.panel.clone()
    }

    /// The URL the partner posts this practice's webhooks to.
    pub fn webhook_url(&self) -> String {
        webhook_url(self.app, C::PARTNER, self.practice_id)
    }
}

/// Why a form cannot become a connection: words for the admin, and the field at fault.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub message: String,
    /// The form field's `name`, when one field is at fault: the page marks it invalid and
    /// moves the focus to it.
    pub field: Option<&'static str>,
}

impl Refusal {
    pub fn at(field: &'static str, message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            field: Some(field),
        }
    }
}

impl From<String> for Refusal {
    fn from(message: String) -> Self {
        Self {
            message,
            field: None,
        }
    }
}

impl From<&str> for Refusal {
    fn from(message: &str) -> Self {
        message.to_string().into()
    }
}

/// What a test of a connection with its partner found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Tested {
    /// The partner answered and took the credentials.
    Worked,
    /// It did not; why, for the admin.
    Failed(String),
    /// The partner only calls us: nothing to call.
    Inbound,
}

impl Tested {
    /// A test call's result: a partner that answered a request of ours with a refusal that
    /// is not about the credentials (4xx other than 401, 403, 429) took them.
    pub fn of<E: std::error::Error + 'static>(result: Result<(), E>) -> Self {
        match result {
            Ok(()) => Tested::Worked,
            Err(e) => match Observation::of_error(&e) {
                Some(Observation::Worked) => Tested::Worked,
                Some(Observation::Failed(why)) => Tested::Failed(why),
                None => Tested::Failed(e.to_string()),
            },
        }
    }

    fn observation(&self) -> Option<Observation> {
        match self {
            Tested::Worked => Some(Observation::Worked),
            Tested::Failed(why) => Some(Observation::Failed(why.clone())),
            Tested::Inbound => None,
        }
    }
}

/// What an admin's save did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SaveOutcome {
    /// Saved; the partner took it when tested (or there is nothing to test).
    Saved,
    /// Saved because the admin said so, though the partner refused it (why).
    SavedAnyway(String),
    /// Not saved: the form is wrong.
    Refused(Refusal),
    /// Not saved: the partner refused the connection when tested (why); the admin may save
    /// it anyway.
    Untested(String),
}

impl SaveOutcome {
    fn stored(&self) -> bool {
        matches!(self, SaveOutcome::Saved | SaveOutcome::SavedAnyway(_))
    }
}

/// A section's health panel and last outcome, as its template shows them
/// (`fragments/connection_health.html`, `fragments/save_outcome.html`).
#[derive(Debug, Clone)]
pub struct Panel {
    pub partner: PartnerId,
    /// The partner's name for people.
    pub name: &'static str,
    /// Settings are saved.
    pub configured: bool,
    pub status: HealthStatus,
    pub health: Health,
    /// The partner only calls us (its test says when it last did).
    pub inbound: bool,
    /// A test just run, if any.
    pub tested: Option<Tested>,
    /// What the save just did, if it was one.
    pub outcome: Option<SaveOutcome>,
    /// Drawn as the answer to a save or a test (not within the whole page): the status in
    /// the page's contents is updated along with it (htmx out-of-band swap).
    pub answer: bool,
}

impl Panel {
    pub fn saved(&self) -> bool {
        matches!(self.outcome, Some(SaveOutcome::Saved))
    }

    /// Saved though the partner refused it: why.
    pub fn saved_anyway(&self) -> Option<String> {
        match &self.outcome {
            Some(SaveOutcome::SavedAnyway(why)) => Some(why.clone()),
            _ => None,
        }
    }

    /// Why the last save was refused, for the admin.
    pub fn error(&self) -> Option<String> {
        match &self.outcome {
            Some(SaveOutcome::Refused(refusal)) => Some(refusal.message.clone()),
            _ => None,
        }
    }

    /// The field the refusal is about.
    pub fn error_field(&self) -> Option<&'static str> {
        match &self.outcome {
            Some(SaveOutcome::Refused(refusal)) => refusal.field,
            _ => None,
        }
    }

    /// The partner refused what was entered when tested: why (the admin may save anyway).
    pub fn untested(&self) -> Option<String> {
        match &self.outcome {
            Some(SaveOutcome::Untested(why)) => Some(why.clone()),
            _ => None,
        }
    }

    pub fn failing_since(&self) -> Option<Moment> {
        self.health.failing_since
    }

    pub fn tested_worked(&self) -> bool {
        self.tested == Some(Tested::Worked)
    }

    pub fn tested_failed(&self) -> Option<String> {
        match &self.tested {
            Some(Tested::Failed(why)) => Some(why.clone()),
            _ => None,
        }
    }

    pub fn tested_inbound(&self) -> bool {
        self.tested == Some(Tested::Inbound)
    }
}

/// The settings routes of connection `C`, served with its partner:
/// `POST /hint/settings/{partner}` (save) and `POST /hint/settings/{partner}/test`.
pub fn routes<C: Connection>(
    partner: std::sync::Arc<C::Partner>,
    app: AppState,
) -> Router<AppState> {
    Router::new()
        .route(
            &format!("/hint/settings/{}", C::PARTNER),
            post(save_form::<C>),
        )
        .route(
            &format!("/hint/settings/{}/test", C::PARTNER),
            post(test_form::<C>),
        )
        .with_state(PartnerState::new(app, partner))
}

/// The one field every settings form may carry besides its own: the admin's "Save anyway".
#[derive(Deserialize)]
struct SaveAnyway {
    #[serde(default)]
    save_anyway: Option<String>,
}

/// `POST /hint/settings/{partner}` (admins, htmx): validates, tests with the partner, saves,
/// answers the section again (422 with the reason when refused; what was entered is kept in
/// the form).
async fn save_form<C: Connection>(
    State(state): State<PartnerState<C::Partner>>,
    session: PracticeSession,
    RawForm(body): RawForm,
) -> Result<(StatusCode, Html<String>), AppError> {
    session.require(Role::Admin)?;
    let unreadable = |e: serde_urlencoded::de::Error| {
        AppError::Unprocessable(format!("The settings form could not be read: {e}."))
    };
    let form: C::Form = serde_urlencoded::from_bytes(&body).map_err(unreadable)?;
    let anyway: SaveAnyway = serde_urlencoded::from_bytes(&body).map_err(unreadable)?;
    let anyway = anyway.save_anyway.is_some_and(|v| v == "1");
    let app = &state.app;
    let practice_id = &session.practice_id;
    let stored = load::<C>(app, practice_id).await?;
    let outcome = save(
        app,
        &*state.partner,
        practice_id,
        &form,
        anyway,
        stored.as_ref(),
        &session.actor(),
    )
    .await?;
    let (status, stored, entered) = if outcome.stored() {
        (StatusCode::OK, load::<C>(app, practice_id).await?, None)
    } else {
        (StatusCode::UNPROCESSABLE_ENTITY, stored, Some(&form))
    };
    let html = render::<C>(
        app,
        practice_id,
        stored.as_ref(),
        entered,
        Some(outcome),
        None,
    )
    .await?;
    Ok((status, Html(html)))
}

/// `POST /hint/settings/{partner}/test` (admins, htmx): tests the saved connection with the
/// partner, records what it found, answers the section with the answer.
async fn test_form<C: Connection>(
    State(state): State<PartnerState<C::Partner>>,
    session: PracticeSession,
) -> Result<Html<String>, AppError> {
    session.require(Role::Admin)?;
    let app = &state.app;
    let practice_id = &session.practice_id;
    let stored = load::<C>(app, practice_id).await?;
    let tested = match &stored {
        Some(connection) => test(app, &*state.partner, practice_id, connection).await,
        None => Tested::Failed("Nothing is saved yet: save the settings first.".into()),
    };
    let html = render::<C>(app, practice_id, stored.as_ref(), None, None, Some(tested)).await?;
    Ok(Html(html))
}

/// Tests `connection` with the partner and records what the test found.
pub async fn test<C: Connection>(
    app: &AppState,
    partner: &C::Partner,
    practice_id: &PracticeId,
    connection: &C,
) -> Tested {
    let tested = connection.test(partner, app, practice_id).await;
    if let Some(observed) = tested.observation() {
        health::record(app, practice_id, C::PARTNER, &observed).await;
    }
    tested
}

/// Validates `form` against what is stored, tests it with the partner, and saves it; a
/// refusal changes nothing. Credentials the partner refuses are saved only `anyway`.
pub async fn save<C: Connection>(
    app: &AppState,
    partner: &C::Partner,
    practice_id: &PracticeId,
    form: &C::Form,
    anyway: bool,
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
    // Tested before it is stored; recorded only once it is (the health is the stored one's).
    let tested = connection.test(partner, app, practice_id).await;
    if let Tested::Failed(why) = &tested {
        if !anyway {
            return Ok(SaveOutcome::Untested(why.clone()));
        }
    }
    store(app, practice_id, &connection, actor).await?;
    if let Some(observed) = tested.observation() {
        health::record(app, practice_id, C::PARTNER, &observed).await;
    }
    Ok(match tested {
        Tested::Failed(why) => SaveOutcome::SavedAnyway(why),
        Tested::Worked | Tested::Inbound => SaveOutcome::Saved,
    })
}

/// A partner's section of the settings page as it stands.
pub async fn section<C: Connection>(
    app: &AppState,
    session: &PracticeSession,
) -> Result<String, AppError> {
    let stored = load::<C>(app, &session.practice_id).await?;
    render::<C>(app, &session.practice_id, stored.as_ref(), None, None, None).await
}

async fn render<C: Connection>(
    app: &AppState,
    practice_id: &PracticeId,
    stored: Option<&C>,
    entered: Option<&C::Form>,
    outcome: Option<SaveOutcome>,
    tested: Option<Tested>,
) -> Result<String, AppError> {
    let health = health::load(app, practice_id, C::PARTNER).await?;
    let partner = app.partners.get(C::PARTNER.as_str())?;
    let panel = Panel {
        partner: C::PARTNER,
        name: partner.name(),
        configured: stored.is_some(),
        status: health.status(stored.is_some()),
        inbound: partner.launch_style() == crate::visits::LaunchStyle::InboundOnly,
        health,
        answer: tested.is_some() || outcome.is_some(),
        tested,
        outcome,
    };
    C::render_section(SectionView {
        app,
        practice_id,
        stored,
        entered,
        panel,
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
    // The delivery carries this practice's own secret: the practice is verified, and the
    // partner reaches us.
    let practice_id = PracticeId::verified(practice_id);
    health::record_delivery(app, &practice_id, C::PARTNER).await;
    Ok(practice_id)
}
