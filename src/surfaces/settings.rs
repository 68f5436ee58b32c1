//! `settings`: practice admins connect partners. Each partner contributes its own section.

use askama::Template;
use axum::{extract::State, response::Html};

use crate::{
    db::Moment,
    error::AppError,
    hint::{Frame, PracticeSession, Role},
    partners::{
        connection,
        unmatched::{self, UnmatchedRow},
    },
    visits::{
        AppState,
        health::{self, HealthStatus},
    },
};

/// A partner in the settings page's contents: a link to its section and its status at a
/// glance.
struct Contents {
    anchor: String,
    name: &'static str,
    status: HealthStatus,
    failing_since: Option<Moment>,
}

#[derive(Template)]
#[template(path = "surfaces/settings.html")]
struct SettingsPage {
    frame: Frame,
    /// Each partner's section, rendered by the partner (also answered alone after a save).
    partner_sections: Vec<String>,
    /// Each partner's section, its name and where its connection stands.
    contents: Vec<Contents>,
    installed: bool,
    unmatched: Vec<UnmatchedRow>,
}

pub async fn page(
    State(state): State<AppState>,
    session: PracticeSession,
) -> Result<Html<String>, AppError> {
    session.require(Role::Admin)?;
    let installed = crate::hint::install::practice_token(&state, &session.practice_id)
        .await?
        .is_some();
    let mut partner_sections = Vec::new();
    for partner in state.partners.iter() {
        partner_sections.push(partner.settings_section(&state, &session).await?);
    }
    let configured = connection::configured(&state, &session.practice_id).await?;
    let mut contents = Vec::new();
    for partner in state.partners.iter() {
        let health = health::load(&state, &session.practice_id, partner.id()).await?;
        contents.push(Contents {
            anchor: format!("{}-settings", partner.id()),
            name: partner.name(),
            status: health.status(configured.contains(&partner.id())),
            failing_since: health.failing_since,
        });
    }
    let page = SettingsPage {
        frame: Frame::new(&session, "settings"),
        partner_sections,
        contents,
        installed,
        unmatched: unmatched::open_for_practice(&state, &session.practice_id).await?,
    };
    Ok(Html(page.render()?))
}
