//! `settings`: practice admins connect partners. Each partner contributes its own section.

use askama::Template;
use axum::{extract::State, response::Html};

use crate::{
    error::AppError,
    hint::{Frame, PracticeSession, Role},
    partners::unmatched::{self, UnmatchedRow},
    visits::AppState,
};

#[derive(Template)]
#[template(path = "surfaces/settings.html")]
struct SettingsPage {
    frame: Frame,
    /// Each partner's section, rendered by the partner (also answered alone after a save).
    partner_sections: Vec<String>,
    /// (anchor, name) of each partner's section.
    contents: Vec<(String, &'static str)>,
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
    let page = SettingsPage {
        frame: Frame::new(&session, "settings"),
        partner_sections,
        contents: state
            .partners
            .iter()
            .map(|p| (format!("{}-settings", p.id()), p.name()))
            .collect(),
        installed,
        unmatched: unmatched::open_for_practice(&state, &session.practice_id).await?,
    };
    Ok(Html(page.render()?))
}
