//! Haidy (44ai), patient documents and consultation assistant.
//!
//! Launch: a form in our frame where the clinician picks files; we create the patient's
//! context once (its id kept in `haidy_patient_contexts`), upload the files (checked for size
//! and type before anything is sent, each one's outcome shown), and the visit page opens the
//! integration deep link in a new tab. Result: the approved consultation for that context,
//! polled, its report fetched (JSON, else text) and marked downloaded.

pub mod client;
pub mod files;
pub mod launch;
pub mod settings;
pub mod visit;

use async_trait::async_trait;
use axum::{
    Router,
    extract::DefaultBodyLimit,
    routing::{get, post},
};
use secrecy::SecretString;
use serde::{Deserialize, Serialize};

use super::{LaunchStyle, Partner, PartnerTool, connection};
use crate::{
    db::now_ms,
    error::AppError,
    hint::PracticeSession,
    jobs::{JobError, JobOutcome},
    state::AppState,
    surfaces::Frame,
    visits::Visit,
};

pub use client::HaidyClient;

/// Haidy as a [`PartnerTool`].
pub struct Haidy;

#[async_trait]
impl PartnerTool for Haidy {
    fn id(&self) -> &'static str {
        "haidy"
    }

    fn name(&self) -> &'static str {
        "Haidy documents"
    }

    fn launch_style(&self) -> LaunchStyle {
        LaunchStyle::Form {
            label: "Send documents to Haidy",
            path: "/hint/partners/haidy/launch",
        }
    }

    fn routes(&self) -> Router<AppState> {
        Router::new()
            .route("/hint/settings/haidy", post(settings::save))
            .route("/hint/partners/haidy/launch", get(launch::form))
            .route(
                "/hint/partners/haidy/launch",
                post(launch::submit).layer(DefaultBodyLimit::max(files::BODY_LIMIT)),
            )
            .route(
                "/hint/partners/haidy/visits/{visit_id}/files",
                post(launch::add_files).layer(DefaultBodyLimit::max(files::BODY_LIMIT)),
            )
    }

    async fn settings_section(
        &self,
        state: &AppState,
        session: &PracticeSession,
    ) -> Result<String, AppError> {
        settings::section(state, session, None, None).await
    }

    async fn poll(&self, state: &AppState, visit: &Visit) -> Result<JobOutcome, JobError> {
        visit::poll(state, visit).await
    }

    fn render_visit(&self, visit: &Visit, frame: &Frame) -> Result<String, AppError> {
        visit::render(visit, frame)
    }
}

/// What a Haidy visit keeps of its launch.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct HaidyLaunch {
    /// The email the clinician signs in to Haidy with.
    pub haidy_email: String,
    /// The patient's context in Haidy; `None` when Haidy knows the patient but not through us.
    #[serde(default)]
    pub context_id: Option<String>,
    /// The integration deep link (never with a password).
    #[serde(default)]
    pub deep_link: Option<String>,
    /// Each file's outcome, in the order they were picked.
    #[serde(default)]
    pub uploads: Vec<UploadOutcome>,
}

/// One file's outcome: sent (with its size), or not (with the reason, for the clinician).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct UploadOutcome {
    pub filename: String,
    pub ok: bool,
    #[serde(default)]
    pub size: Option<String>,
    #[serde(default)]
    pub reason: Option<String>,
}

impl UploadOutcome {
    pub fn sent(filename: String, size: String) -> Self {
        Self {
            filename,
            ok: true,
            size: Some(size),
            reason: None,
        }
    }

    pub fn refused(filename: String, reason: String) -> Self {
        Self {
            filename,
            ok: false,
            size: None,
            reason: Some(reason),
        }
    }
}

/// A Haidy visit's result: the approved consultation and its report.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct HaidyResult {
    pub consultation_id: String,
    #[serde(default)]
    pub approved_at: Option<String>,
    pub report: StoredReport,
}

/// The report as Haidy gave it: JSON when it could, else text.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StoredReport {
    Json(serde_json::Value),
    Text(String),
}

/// A practice's Haidy organisation, as the admin set it up.
pub struct HaidyConnection {
    pub api_token: SecretString,
    pub patient_group: String,
    pub integration_id: String,
}

#[derive(Serialize, Deserialize)]
struct StoredSettings {
    patient_group: String,
    integration_id: String,
}

#[derive(Serialize, Deserialize)]
struct StoredSecrets {
    api_token: String,
}

fn plain_field(value: &str, max: usize) -> Option<String> {
    let value = value.trim();
    (!value.is_empty()
        && value.len() <= max
        && !value.chars().any(|c| c.is_control() || c.is_whitespace()))
    .then(|| value.to_string())
}

impl HaidyConnection {
    pub async fn load(state: &AppState, practice_id: &str) -> Result<Option<Self>, AppError> {
        let found: Option<(StoredSettings, StoredSecrets)> =
            connection::load(state, practice_id, Partner::Haidy).await?;
        Ok(found.map(|(settings, secrets)| HaidyConnection {
            api_token: SecretString::from(secrets.api_token),
            patient_group: settings.patient_group,
            integration_id: settings.integration_id,
        }))
    }

    /// Validates and stores; a blank token keeps the stored one. Errors are for the admin.
    pub async fn save(
        state: &AppState,
        practice_id: &str,
        api_token: &str,
        patient_group: &str,
        integration_id: &str,
        updated_by: &str,
    ) -> Result<(), AppError> {
        let existing = Self::load(state, practice_id).await?;
        let token = match (api_token.trim(), &existing) {
            ("", Some(c)) => secrecy::ExposeSecret::expose_secret(&c.api_token).to_string(),
            (t, _) => t.to_string(),
        };
        let token = plain_field(&token, 1024).ok_or_else(|| {
            AppError::Unprocessable(
                "Enter the Haidy API token (from Haidy's organisation settings).".into(),
            )
        })?;
        let patient_group = plain_field(patient_group, 128)
            .ok_or_else(|| AppError::Unprocessable("Enter the Haidy patient group id.".into()))?;
        let integration_id = plain_field(integration_id, 128)
            .ok_or_else(|| AppError::Unprocessable("Enter the Haidy integration id.".into()))?;
        connection::save(
            state,
            practice_id,
            Partner::Haidy,
            &StoredSettings {
                patient_group,
                integration_id,
            },
            &StoredSecrets { api_token: token },
            updated_by,
        )
        .await
    }
}

/// The patient's context id, if one was created.
pub async fn stored_context(
    state: &AppState,
    practice_id: &str,
    patient_id: &str,
) -> Result<Option<String>, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT context_id FROM haidy_patient_contexts WHERE practice_id = $1 AND patient_id = $2",
    )
    .bind(practice_id)
    .bind(patient_id)
    .fetch_optional(state.db.writer())
    .await
}

async fn store_context(
    state: &AppState,
    practice_id: &str,
    patient_id: &str,
    context_id: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO haidy_patient_contexts (practice_id, patient_id, context_id, created_at) \
         VALUES ($1, $2, $3, $4) ON CONFLICT (practice_id, patient_id) DO NOTHING",
    )
    .bind(practice_id)
    .bind(patient_id)
    .bind(context_id)
    .bind(now_ms())
    .execute(state.db.writer())
    .await?;
    Ok(())
}

/// The user's Haidy email: theirs if they set one, else their Hint email.
pub async fn user_email(
    state: &AppState,
    session: &PracticeSession,
) -> Result<Option<String>, sqlx::Error> {
    let own: Option<String> = sqlx::query_scalar(
        "SELECT email FROM haidy_user_emails WHERE practice_id = $1 AND user_id = $2",
    )
    .bind(&session.practice_id)
    .bind(&session.user_id)
    .fetch_optional(state.db.reader())
    .await?;
    Ok(own.or_else(|| session.user_email.clone()))
}

/// Remembers the user's Haidy email when it differs from their Hint email.
pub async fn remember_user_email(
    state: &AppState,
    session: &PracticeSession,
    email: &str,
) -> Result<(), sqlx::Error> {
    if session.user_email.as_deref() == Some(email) {
        sqlx::query("DELETE FROM haidy_user_emails WHERE practice_id = $1 AND user_id = $2")
            .bind(&session.practice_id)
            .bind(&session.user_id)
            .execute(state.db.writer())
            .await?;
        return Ok(());
    }
    sqlx::query(
        "INSERT INTO haidy_user_emails (practice_id, user_id, email, updated_at) VALUES ($1, $2, $3, $4) \
         ON CONFLICT (practice_id, user_id) DO UPDATE SET email = excluded.email, updated_at = excluded.updated_at",
    )
    .bind(&session.practice_id)
    .bind(&session.user_id)
    .bind(email)
    .bind(now_ms())
    .execute(state.db.writer())
    .await?;
    Ok(())
}
