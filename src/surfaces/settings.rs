//! `settings`: practice admins connect partners. Each partner contributes its own section.

use askama::Template;
use axum::{extract::State, response::Html};

use super::Frame;
use crate::{
    error::AppError,
    hint::{PracticeSession, Role},
    partners::{
        tiep::settings::TiepSettingsSection,
        unmatched::{self, UnmatchedRow},
    },
    state::AppState,
};

#[derive(Template)]
#[template(path = "surfaces/settings.html")]
struct SettingsPage {
    frame: Frame,
    /// The Tiep section, rendered by its own template (also answered alone after a save).
    tiep_html: String,
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
    let page = SettingsPage {
        frame: Frame::new(&session, "settings"),
        tiep_html: TiepSettingsSection::load(&state, &session)
            .await?
            .render()?,
        installed,
        unmatched: unmatched::open_for_practice(&state, &session.practice_id).await?,
    };
    Ok(Html(page.render()?))
}
