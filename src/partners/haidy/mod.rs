//! Haidy (44ai), patient documents and consultation assistant.
//!
//! Launch: a form in our frame where the clinician picks files; we create the patient's
//! context once (its id kept in `haidy_patient_contexts`), upload the files (checked for size
//! and type before anything is sent, each one's outcome shown), and the visit page opens the
//! integration deep link in a new tab. Result: the approved consultation for that context,
//! polled, its report fetched (JSON, else text) and marked downloaded.

pub mod client;
pub mod connection;
pub mod files;
pub mod launch;
pub mod page;
pub mod poll;

use std::{sync::Arc, time::Duration};

use async_trait::async_trait;
use axum::{
    Router,
    extract::DefaultBodyLimit,
    routing::{get, post},
};
use serde::{Deserialize, Serialize};
use url::Url;

use super::{Pace, connection as connections, secs};
use crate::{
    audit::PartnerAction,
    config::{ConfigError, parse_url},
    db::now_ms,
    error::AppError,
    hint::{Frame, PracticeSession},
    jobs::{JobError, JobOutcome},
    tenancy::PracticeId,
    upstream::Upstream,
    visits::AppState,
    visits::{LaunchStyle, PartnerId, PartnerState, PartnerTool, Visit, chart_note::ChartNote},
};

pub use self::connection::HaidyConnection;
pub use client::HaidyClient;

/// Haidy's id in rows and URLs.
pub const ID: PartnerId = PartnerId::new("haidy");

/// The trail's entry when more documents are sent to Haidy for an open visit.
pub const DOCUMENTS_SENT: PartnerAction = PartnerAction {
    code: "documents_sent",
    label: "Sent documents to the partner",
};

/// Haidy's endpoints, from the environment.
#[derive(clap::Args, Debug, Clone)]
pub struct HaidyArgs {
    /// Haidy (44ai) API base URL.
    #[arg(long, env = "HAIDY_API_URL", default_value = "https://api.44ai.ch")]
    pub haidy_api_url: String,
    /// Haidy's integration deep link (the clinician is sent there).
    #[arg(
        long,
        env = "HAIDY_APP_URL",
        default_value = "https://haidy.ch/integration"
    )]
    pub haidy_app_url: String,
}

/// Haidy publishes no webhook shape: approved consultations are polled.
#[derive(Debug, Clone)]
pub struct HaidySettings {
    pub api_url: Url,
    pub app_url: Url,
    /// Interval between looks for an approved consultation.
    pub poll_every: Duration,
    /// After this long without an approved consultation the visit fails with a reason.
    pub give_up_after: Duration,
    /// How long after its last approval a signed visit's consultation is watched for a doctor
    /// approving it again with changes (a correction: the visit is addended).
    pub corrections_for: Duration,
    /// Interval between those looks.
    pub recheck_every: Duration,
    /// Largest file a clinician may upload (Haidy publishes no limit).
    pub max_file_bytes: usize,
    /// Most files in one upload.
    pub max_files: usize,
}

impl HaidySettings {
    pub fn from_args(args: HaidyArgs) -> Result<Self, ConfigError> {
        Ok(Self {
            api_url: parse_url(&args.haidy_api_url, "HAIDY_API_URL")?,
            app_url: parse_url(&args.haidy_app_url, "HAIDY_APP_URL")?,
            poll_every: Duration::from_secs(120),
            give_up_after: Duration::from_secs(7 * 24 * 3600),
            corrections_for: Duration::from_secs(14 * 24 * 3600),
            recheck_every: Duration::from_secs(30 * 60),
            max_file_bytes: 20 * 1024 * 1024,
            max_files: 10,
        })
    }

    /// Polls at `pace` (Haidy sends no webhooks: the poll is the way in).
    pub fn paced(&mut self, pace: Pace) {
        match pace {
            Pace::Live => {}
            Pace::Demo => (self.poll_every, self.recheck_every) = (secs(5), secs(10)),
            Pace::WhenAsked => (self.poll_every, self.recheck_every) = (secs(3600), secs(3600)),
        }
    }
}

/// Haidy as a [`PartnerTool`].
pub struct Haidy {
    settings: HaidySettings,
    client: HaidyClient,
}

impl Haidy {
    pub fn new(settings: HaidySettings, upstream: Upstream) -> Self {
        let client = HaidyClient::new(upstream, settings.api_url.clone());
        Self { settings, client }
    }
}

#[async_trait]
impl PartnerTool for Haidy {
    fn id(&self) -> PartnerId {
        ID
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

    fn routes(self: Arc<Self>, app: AppState) -> Router<AppState> {
        Router::new()
            .route("/hint/partners/haidy/launch", get(launch::form))
            .route(
                "/hint/partners/haidy/launch",
                post(launch::submit).layer(DefaultBodyLimit::max(files::BODY_LIMIT)),
            )
            .route(
                "/hint/partners/haidy/visits/{visit_id}/files",
                post(launch::add_files).layer(DefaultBodyLimit::max(files::BODY_LIMIT)),
            )
            .with_state(PartnerState::new(app.clone(), self.clone()))
            .merge(connections::routes::<HaidyConnection>(self, app))
    }

    async fn settings_section(
        &self,
        app: &AppState,
        session: &PracticeSession,
    ) -> Result<String, AppError> {
        connections::section::<HaidyConnection>(app, session).await
    }

    async fn poll(
        &self,
        app: &AppState,
        practice_id: &PracticeId,
        visit: &Visit,
    ) -> Result<JobOutcome, JobError> {
        poll::poll(self, app, practice_id, visit).await
    }

    async fn recheck(
        &self,
        app: &AppState,
        practice_id: &PracticeId,
        visit: &Visit,
    ) -> Result<JobOutcome, JobError> {
        poll::recheck(self, app, practice_id, visit).await
    }

    fn render_visit(&self, visit: &Visit, frame: &Frame) -> Result<String, AppError> {
        page::render(visit, frame)
    }

    fn chart_note(&self, visit: &Visit) -> Result<Option<ChartNote>, AppError> {
        page::chart_note(visit)
    }

    fn audit_actions(&self) -> &'static [PartnerAction] {
        &[DOCUMENTS_SENT]
    }

    /// The patient contexts created in Haidy, and each user's Haidy email.
    fn practice_tables(&self) -> &'static [&'static str] {
        &["haidy_patient_contexts", "haidy_user_emails"]
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

/// The patient's context id, if one was created.
pub async fn stored_context(
    state: &AppState,
    practice_id: &PracticeId,
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
    practice_id: &PracticeId,
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
