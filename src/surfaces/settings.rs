//! `settings`: practice admins connect partners. Each partner contributes its own section.

use askama::Template;
use axum::{extract::State, response::Html};

use crate::{
    db::Moment,
    error::AppError,
    hint::{Frame, PracticeSession, Role, installations::InstallStatus},
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
    /// Where the practice's install stands, in words, and whether that is well (`ok`/`error`).
    install: (&'static str, String),
    unmatched: Vec<UnmatchedRow>,
}

pub async fn page(
    State(state): State<AppState>,
    session: PracticeSession,
) -> Result<Html<String>, AppError> {
    session.require(Role::Admin)?;
    let install = match crate::hint::installations::status(&state, &session.practice_id).await? {
        Some(InstallStatus::Active) => (
            "ok",
            "Installed: Chartbridge can write visits to this practice's charts.".to_string(),
        ),
        Some(InstallStatus::Pending) => (
            "error",
            "Installed, waiting for activation in Hint: visits are kept and written to Hint charts once Hint activates Chartbridge for this practice.".to_string(),
        ),
        Some(InstallStatus::Deactivated) => {
            let since = crate::hint::installations::changed_at(&state, &session.practice_id)
                .await?
                .unwrap_or_else(crate::db::now_ms);
            let purge = crate::db::format_ms(crate::retention::purge_due(&state, since));
            (
                "error",
                format!(
                    "Deactivated in Hint: nothing is written to Hint charts and no partner is polled. This practice's data is kept until {purge}, then deleted (the audit trail is kept); reactivate Chartbridge in Hint before then to keep everything."
                ),
            )
        }
        None => (
            "error",
            "Not installed yet: visits cannot be written to Hint charts until a practice admin installs Chartbridge from the Hint marketplace (Instant On).".to_string(),
        ),
    };
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
        install,
        unmatched: unmatched::open_for_practice(&state, &session.practice_id).await?,
    };
    Ok(Html(page.render()?))
}

#[derive(Template)]
#[template(path = "fragments/self_audit.html")]
struct SelfAudit {
    findings: Vec<crate::hint::review::Finding>,
    url: String,
}

/// `POST /hint/self_audit` (admins, htmx): runs Hint's partner-app audit against this
/// deployment's public URL and shows each result. Read-only: it changes nothing of the
/// practice (the probe uses Chartbridge's own check practices).
pub async fn self_audit(
    State(state): State<AppState>,
    session: PracticeSession,
) -> Result<Html<String>, AppError> {
    session.require(Role::Admin)?;
    let hint = &state.settings.hint;
    let reserved = crate::hint::review::Reserved {
        hint_api_url: Some(hint.api_url.to_string()),
        hint_product_id: Some(hint.product_id.clone()),
        hint_api_key_set: !secrecy::ExposeSecret::expose_secret(&hint.api_key).is_empty(),
        hint_webhook_secret_set: true,
    };
    let findings =
        crate::hint::review::run(&state.public_url, &hint.webhook_secret, &reserved).await;
    Ok(Html(
        SelfAudit {
            findings,
            url: state.public_url.to_string(),
        }
        .render()?,
    ))
}
