//! The pages Hint frames (`/hint/<surface>?session_key=…`) and their htmx fragments.
//!
//! Laid out for a fixed 1024×768 frame; no cookies: the session key rides in the
//! `x-hint-session-key` header on htmx requests and in the query of links and forms.

mod clinical_chart;
pub mod clinical_interaction;
mod core_page;
mod settings;
pub mod static_files;

use axum::{
    Router,
    routing::{get, post},
};

use crate::{
    hint::{PracticeSession, Role},
    partners::LaunchStyle,
    state::AppState,
    visits::{
        self,
        routes::{cancel_visit, start_visit},
    },
};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/hint/core_page", get(core_page::page))
        .route("/hint/clinical_chart", get(clinical_chart::page))
        .route(
            "/hint/clinical_interaction",
            get(clinical_interaction::page),
        )
        .route("/hint/settings", get(settings::page))
        .route("/hint/patients/search", get(core_page::search))
        .route("/hint/visits", post(start_visit).get(core_page::visit_rows))
        .route("/hint/visits/{visit_id}/cancel", post(cancel_visit))
        .route("/hint/jobs/{job_id}/retry", post(core_page::retry_job))
        .route(
            "/hint/unmatched/{id}",
            get(crate::partners::unmatched::view),
        )
        .route(
            "/hint/unmatched/{id}/dismiss",
            post(crate::partners::unmatched::dismiss),
        )
        .route("/static/{file}", get(static_files::serve))
}

/// What every framed page shows around its content.
#[derive(Clone)]
pub struct Frame {
    pub session_key: String,
    pub practice_name: String,
    pub user_name: String,
    pub role_names: String,
    pub is_admin: bool,
    pub is_clinician: bool,
    pub platform_support: bool,
    /// Which nav entry is current.
    pub surface: &'static str,
}

impl Frame {
    pub fn new(session: &PracticeSession, surface: &'static str) -> Self {
        Self {
            session_key: session.key.clone(),
            practice_name: session.practice_name.clone(),
            user_name: session.user_name.clone(),
            role_names: session.role_names(),
            is_admin: session.has(Role::Admin),
            is_clinician: session.has(Role::Clinician),
            platform_support: session.is_platform_support(),
            surface,
        }
    }
}

/// How a patient's chart offers one partner.
pub struct LaunchButton {
    pub partner: &'static str,
    pub name: &'static str,
    pub style: LaunchStyle,
}

/// One entry per partner the practice has set up, in `Partner::ALL`'s order.
pub async fn launch_buttons(
    state: &AppState,
    practice_id: &str,
) -> Result<Vec<LaunchButton>, crate::error::AppError> {
    Ok(crate::partners::connection::configured(state, practice_id)
        .await?
        .into_iter()
        .map(|p| LaunchButton {
            partner: p.as_str(),
            name: p.display_name(),
            style: p.tool().launch_style(),
        })
        .collect())
}

/// A visit as listed in tables.
pub struct VisitRow {
    pub id: String,
    pub patient_name: String,
    pub partner_name: &'static str,
    pub state: &'static str,
    pub state_label: &'static str,
    pub hint_label: String,
    pub started: String,
    pub user_name: String,
    pub error_message: Option<String>,
}

impl From<&visits::Visit> for VisitRow {
    fn from(v: &visits::Visit) -> Self {
        Self {
            id: v.id.clone(),
            patient_name: v.patient_name.clone(),
            partner_name: v.partner_name(),
            state: v.state().as_str(),
            state_label: v.state().label(),
            hint_label: v.hint_label(),
            started: v.created(),
            user_name: v.user_name.clone(),
            error_message: v.error_message.clone(),
        }
    }
}
