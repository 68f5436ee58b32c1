//! MediQuo, telemedicine: inbound only. MediQuo posts finished consultations and sent reports
//! to `POST /webhooks/mediquo/{practice_id}` with a static shared value in
//! `x-webhook-signature`; each becomes a completed visit written to the chart as signed.
//! `patient.code` is the Hint patient id.

pub mod connection;
pub mod event;
pub mod page;
pub mod webhook;

use std::sync::Arc;

use async_trait::async_trait;
use axum::{Router, routing::post};
use serde::{Deserialize, Serialize};

use super::connection as connections;
use crate::{
    error::AppError,
    hint::{Frame, PracticeSession},
    jobs::{JobError, JobOutcome},
    tenancy::PracticeId,
    visits::AppState,
    visits::{LaunchStyle, PartnerId, PartnerState, PartnerTool, Visit, chart_note::ChartNote},
};

pub use self::connection::MediquoConnection;

/// MediQuo's id in rows and URLs.
pub const ID: PartnerId = PartnerId::new("mediquo");

/// MediQuo as a [`PartnerTool`]: nothing to launch; visits arrive complete by webhook.
pub struct MediQuo;

#[async_trait]
impl PartnerTool for MediQuo {
    fn id(&self) -> PartnerId {
        ID
    }

    fn name(&self) -> &'static str {
        "MediQuo"
    }

    fn launch_style(&self) -> LaunchStyle {
        LaunchStyle::InboundOnly
    }

    fn routes(self: Arc<Self>, app: AppState) -> Router<AppState> {
        Router::new()
            .route("/webhooks/mediquo/{practice_id}", post(webhook::receive))
            .with_state(PartnerState::new(app.clone(), self.clone()))
            .merge(connections::routes::<MediquoConnection>(self, app))
    }

    async fn settings_section(
        &self,
        app: &AppState,
        session: &PracticeSession,
    ) -> Result<String, AppError> {
        connections::section::<MediquoConnection>(app, session).await
    }

    /// A MediQuo visit arrives finished: there is nothing open to cancel.
    fn cancellable(&self) -> bool {
        false
    }

    fn render_visit(&self, visit: &Visit, _frame: &Frame) -> Result<String, AppError> {
        page::render(visit)
    }

    fn chart_note(&self, visit: &Visit) -> Result<Option<ChartNote>, AppError> {
        page::chart_note(visit)
    }

    /// A delivery whose patient Hint could not confirm then, tried again.
    async fn retry_delivery(
        &self,
        app: &AppState,
        practice_id: &PracticeId,
        delivery_id: &str,
    ) -> Result<JobOutcome, JobError> {
        webhook::retry(app, practice_id, delivery_id).await
    }
}

/// What a MediQuo visit keeps of how it arrived: the event's type.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MediquoLaunch {
    pub event: String,
}
