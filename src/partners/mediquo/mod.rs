//! MediQuo, telemedicine: inbound only. MediQuo posts finished consultations and sent reports
//! to `POST /webhooks/mediquo/{practice_id}` with a static shared value in
//! `x-webhook-signature`; each becomes a completed visit written to the chart as signed.
//! `patient.code` is the Hint patient id.

pub mod event;
pub mod result;
pub mod settings;
pub mod webhook;

use async_trait::async_trait;
use axum::{Router, routing::post};
use serde::{Deserialize, Serialize};

use super::{LaunchStyle, Partner, PartnerTool, connection};
use crate::{
    error::AppError, hint::PracticeSession, state::AppState, surfaces::Frame, visits::Visit,
};

/// Shortest shared signature value we accept (it is the only thing authenticating MediQuo).
pub const MIN_SIGNATURE_LEN: usize = 16;

/// MediQuo as a [`PartnerTool`]: nothing to launch; visits arrive complete by webhook.
pub struct MediQuo;

#[async_trait]
impl PartnerTool for MediQuo {
    fn id(&self) -> &'static str {
        "mediquo"
    }

    fn name(&self) -> &'static str {
        "MediQuo"
    }

    fn launch_style(&self) -> LaunchStyle {
        LaunchStyle::InboundOnly
    }

    fn routes(&self) -> Router<AppState> {
        Router::new()
            .route("/webhooks/mediquo/{practice_id}", post(webhook::receive))
            .route("/hint/settings/mediquo", post(settings::save))
    }

    async fn settings_section(
        &self,
        state: &AppState,
        session: &PracticeSession,
    ) -> Result<String, AppError> {
        settings::section(state, session, None).await
    }

    /// A MediQuo visit arrives finished: there is nothing open to cancel.
    fn cancellable(&self) -> bool {
        false
    }

    fn render_visit(&self, visit: &Visit, _frame: &Frame) -> Result<String, AppError> {
        result::render(visit)
    }
}

/// What a MediQuo visit keeps of how it arrived: the event's type.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MediquoLaunch {
    pub event: String,
}

/// What is sealed for a practice: the value MediQuo sends in `x-webhook-signature`.
#[derive(Serialize, Deserialize)]
pub(crate) struct StoredSecrets {
    pub(crate) signature: String,
}

/// Nothing about MediQuo is plain settings.
#[derive(Serialize, Deserialize)]
struct StoredSettings {}

/// Whether this practice has MediQuo set up.
pub async fn is_configured(state: &AppState, practice_id: &str) -> Result<bool, AppError> {
    let found: Option<(StoredSettings, StoredSecrets)> =
        connection::load(state, practice_id, Partner::MediQuo).await?;
    Ok(found.is_some())
}

/// Validates and stores the shared signature value; the error message is for the admin.
pub async fn save(
    state: &AppState,
    practice_id: &str,
    signature: &str,
    updated_by: &str,
) -> Result<(), AppError> {
    let signature = signature.trim();
    if signature.chars().count() < MIN_SIGNATURE_LEN
        || signature.len() > 512
        || signature.chars().any(char::is_control)
    {
        return Err(AppError::Unprocessable(format!(
            "The signature value must be {MIN_SIGNATURE_LEN} to 512 characters, the same as agreed with MediQuo support."
        )));
    }
    connection::save(
        state,
        practice_id,
        Partner::MediQuo,
        &StoredSettings {},
        &StoredSecrets {
            signature: signature.to_string(),
        },
        updated_by,
    )
    .await
}

/// The URL to give MediQuo support for this practice.
pub fn webhook_url(state: &AppState, practice_id: &str) -> String {
    super::webhook_url(state, Partner::MediQuo, practice_id)
}
