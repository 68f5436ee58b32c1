//! HCW@Home, video visits on the practice's own HCW@Home server.
//!
//! Launch: a form in our frame (gender when Hint's `sex` is neither male nor female, language,
//! optional time) → the service account creates the patient invite → the visit page shows the
//! patient link. The doctor signs in to HCW with a server-minted SSO JWT (`sso`). Result: the
//! invite's consultation, polled, or closed when the clinician clicks "Finish visit".
//! Cancelling revokes the invite.

pub mod client;
pub mod connection;
pub mod launch;
pub mod page;
pub mod poll;
pub mod sso;

use std::{sync::Arc, time::Duration};

use async_trait::async_trait;
use axum::{
    Router,
    routing::{get, post},
};
use serde::{Deserialize, Serialize};
use url::Url;

use super::{Pace, connection as connections, secs};
use crate::{
    audit::PartnerAction,
    error::AppError,
    hint::{Frame, PracticeSession},
    jobs::{JobError, JobOutcome},
    tenancy::PracticeId,
    upstream::Upstream,
    visits::AppState,
    visits::{
        LaunchStyle, PartnerError, PartnerId, PartnerState, PartnerTool, Visit,
        chart_note::ChartNote,
    },
};

pub use self::connection::{HcwConnection, Routing};
pub use client::HcwClient;

/// HCW@Home's id in rows and URLs.
pub const ID: PartnerId = PartnerId::new("hcw");

/// The trail's entry when a clinician is signed in to HCW@Home by SSO for a visit.
pub const SSO_SIGN_IN: PartnerAction = PartnerAction {
    code: "sso_sign_in",
    label: "Signed in to HCW@Home (SSO)",
};

/// HCW@Home sends no webhooks: visits are polled. Each practice enters its own server.
#[derive(Debug, Clone)]
pub struct HcwSettings {
    /// Interval between looks at an invite's consultation.
    pub poll_every: Duration,
    /// After this long (from the launch, or the scheduled time) without a closed consultation
    /// the visit fails with a reason.
    pub give_up_after: Duration,
    /// How long a service-account token is used before it is renewed (HCW's live 15 min).
    pub token_lifetime: Duration,
}

impl Default for HcwSettings {
    fn default() -> Self {
        Self {
            poll_every: Duration::from_secs(60),
            give_up_after: Duration::from_secs(24 * 3600),
            token_lifetime: Duration::from_secs(14 * 60),
        }
    }
}

impl HcwSettings {
    /// Polls at `pace` (HCW@Home sends no webhooks: the poll is the way in).
    pub fn paced(&mut self, pace: Pace) {
        match pace {
            Pace::Live => {}
            Pace::Demo => self.poll_every = secs(10),
            Pace::WhenAsked => self.poll_every = secs(3600),
        }
    }
}

/// HCW@Home as a [`PartnerTool`].
pub struct HcwAtHome {
    settings: HcwSettings,
    client: HcwClient,
}

impl HcwAtHome {
    pub fn new(settings: HcwSettings, upstream: Upstream) -> Self {
        let client = HcwClient::new(&upstream, settings.token_lifetime);
        Self { settings, client }
    }
}

#[async_trait]
impl PartnerTool for HcwAtHome {
    fn id(&self) -> PartnerId {
        ID
    }

    fn name(&self) -> &'static str {
        "HCW@Home video visit"
    }

    fn launch_style(&self) -> LaunchStyle {
        LaunchStyle::Form {
            label: "Start HCW@Home video visit",
            path: "/hint/partners/hcw/launch",
        }
    }

    fn routes(self: Arc<Self>, app: AppState) -> Router<AppState> {
        Router::new()
            .route(
                "/hint/partners/hcw/launch",
                get(launch::form).post(launch::submit),
            )
            .route(
                "/hint/partners/hcw/visits/{visit_id}/sign-in",
                post(page::sign_in),
            )
            .route(
                "/hint/partners/hcw/visits/{visit_id}/finish",
                post(page::finish),
            )
            .with_state(PartnerState::new(app.clone(), self.clone()))
            .merge(connections::routes::<HcwConnection>(self, app))
    }

    async fn settings_section(
        &self,
        app: &AppState,
        session: &PracticeSession,
    ) -> Result<String, AppError> {
        connections::section::<HcwConnection>(app, session).await
    }

    async fn poll(
        &self,
        app: &AppState,
        practice_id: &PracticeId,
        visit: &Visit,
    ) -> Result<JobOutcome, JobError> {
        poll::poll(self, app, practice_id, visit).await
    }

    /// The visit page shows where the call stands (patient waiting, in a call): at most five
    /// seconds old while someone watches it.
    fn poll_while_watched(&self) -> Option<Duration> {
        Some(Duration::from_secs(5))
    }

    async fn cancel(
        &self,
        app: &AppState,
        practice_id: &PracticeId,
        visit: &Visit,
    ) -> Result<(), PartnerError> {
        launch::revoke(self, app, practice_id, visit).await
    }

    fn render_visit(&self, visit: &Visit, frame: &Frame) -> Result<String, AppError> {
        page::render(visit, frame)
    }

    fn chart_note(&self, visit: &Visit) -> Result<Option<ChartNote>, AppError> {
        page::chart_note(visit)
    }

    fn audit_actions(&self) -> &'static [PartnerAction] {
        &[SSO_SIGN_IN]
    }

    /// The doctor's sign-in posts to us and is sent on to the practice's HCW@Home server.
    async fn visit_form_targets(
        &self,
        app: &AppState,
        practice_id: &PracticeId,
    ) -> Result<Vec<String>, AppError> {
        let connection = connections::load::<HcwConnection>(app, practice_id).await?;
        Ok(connection
            .map(|c| c.base_url.origin().ascii_serialization())
            .into_iter()
            .collect())
    }
}

/// What an HCW@Home visit keeps of its launch, and of the call as last seen.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct HcwLaunch {
    /// The patient's language (two letters).
    pub language: String,
    /// The agreed time, UTC RFC 3339, when the visit is scheduled.
    #[serde(default)]
    pub scheduled_for: Option<String>,
    /// Where HCW routed the invite, in words.
    #[serde(default)]
    pub routing: Option<String>,
    /// The invite, once HCW created it.
    #[serde(default)]
    pub invite: Option<InviteSummary>,
    /// The consultation's status at the last poll (`pending`, `active`, `closed`).
    #[serde(default)]
    pub consultation_status: Option<String>,
}

/// The invite as the visit page needs it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct InviteSummary {
    pub id: String,
    #[serde(default)]
    pub patient_url: Option<String>,
    #[serde(default)]
    pub status: Option<String>,
    /// HCW says it sent the link to the patient.
    #[serde(default)]
    pub sent: bool,
    /// The clinician asked HCW to send it.
    #[serde(default)]
    pub asked_to_send: bool,
}

/// An HCW@Home visit's result: the closed consultation.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct HcwResult {
    pub consultation: client::Consultation,
}

/// An https URL, or http on a loopback host (the sandbox); no query or fragment.
pub fn parse_base_url(raw: &str) -> Result<Url, String> {
    let url = Url::parse(raw.trim()).map_err(|_| {
        "Enter the HCW@Home server's address, like https://hcw.example.org.".to_string()
    })?;
    // Whether the address may be called (https, public) is the outbound guard's to say.
    if !matches!(url.scheme(), "https" | "http") {
        return Err("The HCW@Home address must start with https://.".into());
    }
    if url.host().is_none() || url.query().is_some() || url.fragment().is_some() {
        return Err("Enter only the HCW@Home server's address, without ? or #.".into());
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err("Do not put credentials in the address; use the fields below.".into());
    }
    Ok(url)
}

fn looks_like_email(s: &str) -> bool {
    let Some((local, domain)) = s.split_once('@') else {
        return false;
    };
    !local.is_empty()
        && domain.contains('.')
        && s.len() <= 254
        && !s.chars().any(|c| c.is_whitespace() || c.is_control())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_urls_are_bare_web_addresses() {
        assert!(parse_base_url("https://hcw.example.org").is_ok());
        assert!(parse_base_url(" https://hcw.example.org/tenant/ ").is_ok());
        for bad in [
            "ftp://hcw.example.org",
            "hcw.example.org",
            "https://hcw.example.org/?x=1",
            "https://user:pw@hcw.example.org",
            "",
        ] {
            assert!(parse_base_url(bad).is_err(), "{bad} should be refused");
        }
    }
}
