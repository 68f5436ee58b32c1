//! The practice's own pages Hint frames (`/hint/<surface>?session_key=…`) and their htmx
//! fragments: `core_page`, `clinical_chart`, `settings`, and the admins' `audit` trail. (The visit's page,
//! `clinical_interaction`, is the visit's own: `visits::page`.)
//!
//! Laid out for a fixed 1024×768 frame; no cookies: the session key rides in the
//! `x-hint-session-key` header on htmx requests and in the query of links and forms.

mod attention;
mod audit;
mod clinical_chart;
mod core_page;
mod export;
mod settings;
pub mod static_files;
mod streamed;

use axum::{
    Router,
    routing::{get, post},
};

use crate::{
    db::Moment,
    error::AppError,
    partners::{connection, unmatched},
    tenancy::PracticeId,
    visits::AppState,
    visits::{LaunchStyle, Partners, Visit},
};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/hint/core_page", get(core_page::page))
        .route("/hint/clinical_chart", get(clinical_chart::page))
        .route("/hint/settings", get(settings::page))
        .route("/hint/self_audit", post(settings::self_audit))
        .route("/hint/audit", get(audit::page))
        .route("/hint/audit.csv", get(audit::export))
        .route("/hint/export.tar", get(export::archive))
        .route("/hint/patients/search", get(core_page::search))
        .route("/hint/visits", get(core_page::visit_rows))
        .route("/hint/jobs/{job_id}/retry", post(core_page::retry_job))
        .route("/hint/jobs/retry_all", post(core_page::retry_all_jobs))
        .route("/hint/unmatched/{id}", get(unmatched::view))
        .route("/hint/unmatched/{id}/dismiss", post(unmatched::dismiss))
        .route("/static/{file}", get(static_files::serve))
}

/// How a patient's chart offers one partner.
pub struct LaunchButton {
    pub partner: &'static str,
    pub name: &'static str,
    pub style: LaunchStyle,
}

/// One entry per partner the practice has set up, in the registry's order.
pub async fn launch_buttons(
    state: &AppState,
    practice_id: &PracticeId,
) -> Result<Vec<LaunchButton>, AppError> {
    let configured = connection::configured(state, practice_id).await?;
    Ok(state
        .partners
        .iter()
        .filter(|p| configured.contains(&p.id()))
        .map(|p| LaunchButton {
            partner: p.id().as_str(),
            name: p.name(),
            style: p.launch_style(),
        })
        .collect())
}

/// A visit as listed in tables.
pub struct VisitRow {
    pub id: String,
    pub patient_name: String,
    pub partner_name: String,
    pub state: &'static str,
    pub state_label: &'static str,
    pub hint_label: String,
    pub started: Moment,
    pub user_name: String,
    pub error_message: Option<String>,
}

impl VisitRow {
    pub fn new(v: &Visit, partners: &Partners) -> Self {
        Self {
            id: v.id.to_string(),
            patient_name: if v.is_erased() {
                crate::visits::page::ERASED.to_string()
            } else {
                v.patient_name.clone()
            },
            partner_name: partners.name_of(&v.partner),
            state: v.state().as_str(),
            state_label: v.state().label(),
            hint_label: v.hint_label(),
            started: Moment(v.created_at),
            user_name: v.user_name.clone(),
            error_message: v.error_message.clone(),
        }
    }

    pub fn all(visits: &[Visit], partners: &Partners) -> Vec<Self> {
        visits.iter().map(|v| Self::new(v, partners)).collect()
    }
}
