//! The partner tools a clinician can launch, and what is common to them.
//!
//! Each partner is one module implementing [`PartnerTool`]: how it is configured per practice
//! (`settings_section` + its own routes), how a visit starts ([`LaunchStyle`]), how the result
//! comes back (its webhook route, `poll`, or the clinician finishing it in our frame through
//! its routes), and how the visit is shown on the `clinical_interaction` surface
//! (`render_visit`). The four partners have four shapes:
//!
//! | partner   | launch                         | result                                   |
//! |-----------|--------------------------------|------------------------------------------|
//! | Tiep      | one click → tokenised URL      | signed webhook, poll as backstop         |
//! | HCW@Home  | form in our frame → invite     | poll; the clinician finishes in our frame |
//! | Haidy     | form in our frame → file upload | poll approved consultations              |
//! | MediQuo   | none (inbound only)            | webhook creates the visit, complete      |
//!
//! Adding a partner: one module implementing the trait, its variant in [`Partner`], and its
//! arm in [`Partner::tool`].

pub mod connection;
pub mod haidy;
pub mod hcw;
pub mod mediquo;
pub mod tiep;
pub mod unmatched;

use async_trait::async_trait;
use axum::Router;
use url::Url;

use crate::{
    db::now_ms,
    error::AppError,
    hint::{PracticeSession, client::Patient},
    jobs::{JobError, JobOutcome},
    state::AppState,
    surfaces::Frame,
    visits::{Visit, VisitState},
};

/// A partner's identity: stored in rows (`visits.partner`, `partner_connections.partner`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Partner {
    Tiep,
    HcwAtHome,
    Haidy,
    MediQuo,
}

impl Partner {
    pub const ALL: [Partner; 4] = [
        Partner::Tiep,
        Partner::HcwAtHome,
        Partner::Haidy,
        Partner::MediQuo,
    ];

    /// Where this partner's behaviour lives.
    pub fn tool(self) -> &'static dyn PartnerTool {
        match self {
            Partner::Tiep => &tiep::Tiep,
            Partner::HcwAtHome => &hcw::HcwAtHome,
            Partner::Haidy => &haidy::Haidy,
            Partner::MediQuo => &mediquo::MediQuo,
        }
    }

    pub fn as_str(self) -> &'static str {
        self.tool().id()
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|p| p.as_str() == s)
    }

    pub fn display_name(self) -> &'static str {
        self.tool().name()
    }
}

/// How a clinician starts a visit with a partner.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LaunchStyle {
    /// One click: `POST /hint/visits` starts the visit and redirects a new tab to the
    /// partner (`PartnerTool::launch`).
    Direct { label: &'static str },
    /// The clinician fills a form in our frame first, at `GET {path}?patient_id=…`, a route
    /// the partner owns.
    Form {
        label: &'static str,
        path: &'static str,
    },
    /// Visits arrive from the partner; there is nothing to launch.
    InboundOnly,
}

/// What every partner provides. Defaults cover what a partner's shape does not have.
#[async_trait]
pub trait PartnerTool: Send + Sync {
    /// Stable id, stored in rows and used in URLs.
    fn id(&self) -> &'static str;

    /// Name for people.
    fn name(&self) -> &'static str;

    fn launch_style(&self) -> LaunchStyle;

    /// Routes the partner owns: its webhook, its settings form, its launch form and actions.
    fn routes(&self) -> Router<AppState>;

    /// Its section of the `settings` surface (admins), as HTML.
    async fn settings_section(
        &self,
        state: &AppState,
        session: &PracticeSession,
    ) -> Result<String, AppError>;

    /// `LaunchStyle::Direct`: starts the visit; answers where to send the clinician.
    async fn launch(
        &self,
        _state: &AppState,
        _session: &PracticeSession,
        _patient: &Patient,
    ) -> Result<Url, AppError> {
        Err(AppError::BadRequest(format!(
            "{} is not started with one click.",
            self.name()
        )))
    }

    /// The `PollPartner` job for an open, launched visit: asks the partner whether the result
    /// is ready. Partners whose results only arrive by webhook keep the default.
    async fn poll(&self, _state: &AppState, _visit: &Visit) -> Result<JobOutcome, JobError> {
        Ok(JobOutcome::Done)
    }

    /// The partner's side of a clinician cancelling an open visit (e.g. revoking an invite).
    /// An error is shown to the clinician and the visit stays open.
    async fn cancel(&self, _state: &AppState, _visit: &Visit) -> Result<(), AppError> {
        Ok(())
    }

    /// Whether a clinician may cancel an open visit of this partner from our frame.
    fn cancellable(&self) -> bool {
        true
    }

    /// The visit on the `clinical_interaction` surface, below the common header: the
    /// partner's controls while it is open, its full result once in.
    fn render_visit(&self, visit: &Visit, frame: &Frame) -> Result<String, AppError>;
}

/// Routes every partner owns.
pub fn router() -> Router<AppState> {
    Partner::ALL
        .into_iter()
        .fold(Router::new(), |router, p| router.merge(p.tool().routes()))
}

/// The URL a partner posts this practice's webhooks to: `{public}/webhooks/{partner}/{practice}`.
pub fn webhook_url(state: &AppState, partner: Partner, practice_id: &str) -> String {
    let mut url = state.public_url().clone();
    url.path_segments_mut()
        .expect("http(s) URLs have path segments")
        .pop_if_empty()
        .extend(["webhooks", partner.as_str(), practice_id]);
    url.to_string()
}

/// What an admin's save of a partner's settings did: `Ok(Ok)` saved, `Ok(Err(message))`
/// refused with words for the admin (the section is answered 422 with them); other errors stay
/// errors.
pub fn save_outcome(saved: Result<(), AppError>) -> Result<Result<(), String>, AppError> {
    match saved {
        Ok(()) => Ok(Ok(())),
        Err(AppError::Unprocessable(message)) => Ok(Err(message)),
        Err(other) => Err(other),
    }
}

/// The status a settings section is answered with after a save.
pub fn section_status(outcome: &Result<(), String>) -> axum::http::StatusCode {
    match outcome {
        Ok(()) => axum::http::StatusCode::OK,
        Err(_) => axum::http::StatusCode::UNPROCESSABLE_ENTITY,
    }
}

/// The `PollPartner` job: fails a launch that never completed, else asks the visit's partner.
pub async fn poll(
    state: &AppState,
    practice_id: &str,
    visit_id: &str,
) -> Result<JobOutcome, JobError> {
    let Some(visit) = crate::visits::get_latest(state, practice_id, visit_id).await? else {
        return Ok(JobOutcome::Done);
    };
    if !visit.state().is_open() {
        return Ok(JobOutcome::Done);
    }
    if visit.state() == VisitState::Launching {
        let deadline = visit.created_at + state.settings.launch_timeout.as_millis() as i64;
        if now_ms() < deadline {
            return Ok(JobOutcome::CheckAgainAt(deadline));
        }
        let reason = format!(
            "The launch did not complete: {} was never opened.",
            visit.partner_name()
        );
        crate::visits::fail(state, practice_id, &visit.id, &reason).await?;
        return Ok(JobOutcome::Done);
    }
    match visit.partner() {
        Some(partner) => partner.tool().poll(state, &visit).await,
        None => Err(JobError::permanent(format!(
            "unknown partner {}",
            visit.partner
        ))),
    }
}

/// The partner's part of the `clinical_interaction` surface.
pub fn render_visit(visit: &Visit, frame: &Frame) -> Result<String, AppError> {
    match visit.partner() {
        Some(partner) => partner.tool().render_visit(visit, frame),
        None => Ok(String::new()),
    }
}
