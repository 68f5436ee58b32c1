//! The seam between the visit lifecycle and the partners above it.
//!
//! A partner is one value implementing [`PartnerTool`], built at start with its own settings
//! and client, and listed once in `partners::registry`. The lifecycle, the job queue and the
//! pages reach it only through this trait and the [`Partners`] registry, so none of them names
//! a partner. The partners' own routes get a [`PartnerState`]: the app and the partner itself.

use std::{ops::Deref, sync::Arc};

use async_trait::async_trait;
use axum::Router;
use serde::{Deserialize, Serialize};
use url::Url;

use super::{Visit, chart_note::ChartNote};
use crate::{
    audit::PartnerAction,
    db::UnknownValue,
    error::{AppError, BoxError},
    hint::{Frame, HintState, Patient, PracticeSession},
    jobs::{Job, JobError, JobOutcome, RunJob},
    tenancy::PracticeId,
    visits::AppState,
};

/// A partner's stable id: stored in rows (`visits.partner`, `partner_connections.partner`)
/// and used in URLs. Each partner module declares its own as a constant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PartnerId(&'static str);

impl PartnerId {
    pub const fn new(id: &'static str) -> Self {
        Self(id)
    }

    pub fn as_str(self) -> &'static str {
        self.0
    }
}

impl std::fmt::Display for PartnerId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.0)
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

/// Why a partner could not do what the clinician asked. Mapped to a response in one place
/// (`From<PartnerError> for AppError`); the partner's own answer is kept as the cause.
#[derive(Debug, thiserror::Error)]
pub enum PartnerError {
    /// Nothing was asked of the partner: it is not set up, or the request cannot be made
    /// (words for the clinician).
    #[error("{0}")]
    NotPossible(String),
    /// The partner refused the request (words for the clinician; its answer as the cause).
    /// The words may quote the partner: the error's own text, which is logged, does not.
    #[error("the partner refused the request")]
    Refused {
        message: String,
        #[source]
        source: BoxError,
    },
    /// The partner failed, or could not be reached (words for the clinician).
    #[error("the partner failed or could not be reached")]
    Unavailable {
        message: String,
        #[source]
        source: BoxError,
    },
    /// Our side failed (the database).
    #[error(transparent)]
    Internal(#[from] AppError),
}

impl PartnerError {
    /// A failed call to the partner, with `message` for the clinician: a refusal when the
    /// partner answered 4xx, else the partner being unavailable.
    pub fn upstream(message: String, cause: crate::upstream::UpstreamError) -> Self {
        if cause.is_refusal() {
            PartnerError::Refused {
                message,
                source: cause.into(),
            }
        } else {
            PartnerError::Unavailable {
                message,
                source: cause.into(),
            }
        }
    }

    /// The words for the clinician, whatever the kind.
    pub fn message(&self) -> String {
        match self {
            PartnerError::NotPossible(m)
            | PartnerError::Refused { message: m, .. }
            | PartnerError::Unavailable { message: m, .. } => m.clone(),
            PartnerError::Internal(e) => e.public_message(),
        }
    }
}

impl From<sqlx::Error> for PartnerError {
    fn from(e: sqlx::Error) -> Self {
        PartnerError::Internal(e.into())
    }
}

impl From<PartnerError> for AppError {
    fn from(e: PartnerError) -> Self {
        match e {
            PartnerError::NotPossible(message) => AppError::Unprocessable(message),
            PartnerError::Refused { message, source }
            | PartnerError::Unavailable { message, source } => AppError::Upstream {
                message,
                source: Some(source),
            },
            PartnerError::Internal(e) => e,
        }
    }
}

/// What every partner provides. Defaults cover what a partner's shape does not have.
#[async_trait]
pub trait PartnerTool: Send + Sync + 'static {
    fn id(&self) -> PartnerId;

    /// Name for people.
    fn name(&self) -> &'static str;

    fn launch_style(&self) -> LaunchStyle;

    /// The origin a launch form's answer redirects the browser to (a `Direct` launch opens
    /// the partner's page from our form): the pages' CSP lets forms go there.
    fn launch_origin(&self) -> Option<String> {
        None
    }

    /// Routes the partner owns: its webhook, its settings form, its launch form and actions.
    /// They get a [`PartnerState`] with this partner in it.
    fn routes(self: Arc<Self>, app: AppState) -> Router<AppState>;

    /// Its section of the `settings` surface (admins), as HTML.
    async fn settings_section(
        &self,
        app: &AppState,
        session: &PracticeSession,
    ) -> Result<String, AppError>;

    /// `LaunchStyle::Direct`: starts the visit; answers where to send the clinician.
    async fn launch(
        &self,
        _app: &AppState,
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
    async fn poll(
        &self,
        _app: &AppState,
        _practice_id: &PracticeId,
        _visit: &Visit,
    ) -> Result<JobOutcome, JobError> {
        Ok(JobOutcome::Done)
    }

    /// The `PollPartner` job for a signed visit, for partners that correct a result without
    /// telling us (a Haidy doctor approving a consultation again): looks for a changed result
    /// and hands it to `versions::correct`. Answers when to look again; `Done` once the
    /// partner no longer may. Partners whose corrections arrive by webhook keep the default.
    async fn recheck(
        &self,
        _app: &AppState,
        _practice_id: &PracticeId,
        _visit: &Visit,
    ) -> Result<JobOutcome, JobError> {
        Ok(JobOutcome::Done)
    }

    /// The partner's side of a clinician cancelling an open visit (e.g. revoking an invite).
    /// An error is shown to the clinician and the visit stays open.
    async fn cancel(
        &self,
        _app: &AppState,
        _practice_id: &PracticeId,
        _visit: &Visit,
    ) -> Result<(), PartnerError> {
        Ok(())
    }

    /// While someone has an open visit's page in front of them, how old the partner's news of
    /// it may be (the page then asks for a poll sooner than the partner's usual interval):
    /// for partners whose visit page shows where the partner's side stands (HCW@Home's call).
    fn poll_while_watched(&self) -> Option<std::time::Duration> {
        None
    }

    /// Whether a clinician may cancel an open visit of this partner from our frame.
    fn cancellable(&self) -> bool {
        true
    }

    /// The visit on the `clinical_interaction` surface, below the common header: the
    /// partner's controls while it is open, its full result once in.
    fn render_visit(&self, visit: &Visit, frame: &Frame) -> Result<String, AppError>;

    /// Tries again to place a delivery kept because its patient could not be confirmed then
    /// ([`RetryDelivery`]). Only partners that keep such deliveries have any.
    async fn retry_delivery(
        &self,
        _app: &AppState,
        _practice_id: &PracticeId,
        delivery_id: &str,
    ) -> Result<JobOutcome, JobError> {
        Err(JobError::permanent(format!(
            "{} keeps no deliveries to retry ({delivery_id})",
            self.name()
        )))
    }

    /// What a signed visit leaves in the patient's chart: its result as a title and a Markdown
    /// body (`chart_note::Markdown`: partner text escaped, the body capped). `None`: the
    /// partner interaction alone.
    fn chart_note(&self, _visit: &Visit) -> Result<Option<ChartNote>, AppError> {
        Ok(None)
    }

    /// The trail's actions of this partner's own (a sign-in into its system, files sent to
    /// it), so the audit page names them.
    fn audit_actions(&self) -> &'static [PartnerAction] {
        &[]
    }

    /// Tables of this partner's own holding practice data (each with `practice_id`): a purge
    /// deletes them, and a test holds every table of the migrations to such a list.
    fn practice_tables(&self) -> &'static [&'static str] {
        &[]
    }

    /// Origins a form on this partner's visit page is redirected to (the doctor's sign-in
    /// into HCW@Home): the page's CSP lets forms go there.
    async fn visit_form_targets(
        &self,
        _app: &AppState,
        _practice_id: &PracticeId,
    ) -> Result<Vec<String>, AppError> {
        Ok(Vec::new())
    }
}

/// Every partner, in the order the pages show them. Built once by `partners::registry`.
#[derive(Clone)]
pub struct Partners(Arc<[Arc<dyn PartnerTool>]>);

impl std::fmt::Debug for Partners {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.0.iter().map(|p| p.id().as_str()))
            .finish()
    }
}

impl Partners {
    /// Refuses two partners with one id (they would share rows and routes).
    pub fn new(partners: Vec<Arc<dyn PartnerTool>>) -> Self {
        for (i, p) in partners.iter().enumerate() {
            assert!(
                partners[..i].iter().all(|q| q.id() != p.id()),
                "two partners are registered as {}",
                p.id()
            );
        }
        Self(partners.into())
    }

    pub fn iter(&self) -> impl Iterator<Item = &Arc<dyn PartnerTool>> {
        self.0.iter()
    }

    /// The partner with this stored id; an id no partner has fails loudly.
    pub fn get(&self, id: &str) -> Result<&Arc<dyn PartnerTool>, UnknownValue> {
        self.0
            .iter()
            .find(|p| p.id().as_str() == id)
            .ok_or_else(|| UnknownValue {
                what: "partner",
                value: id.chars().take(40).collect(),
            })
    }

    /// The partner a visit belongs to.
    pub fn of(&self, visit: &Visit) -> Result<&Arc<dyn PartnerTool>, UnknownValue> {
        self.get(&visit.partner)
    }

    /// A partner's own trail action by its stored code.
    pub fn audit_action(&self, code: &str) -> Option<PartnerAction> {
        self.iter()
            .flat_map(|p| p.audit_actions())
            .find(|a| a.code == code)
            .copied()
    }

    /// Every table of practice data: the partners' own first (they may point at core rows),
    /// then the core's (`tenancy::PRACTICE_TABLES`), in the order a purge deletes them.
    pub fn practice_tables(&self) -> Vec<&'static str> {
        self.iter()
            .flat_map(|p| p.practice_tables())
            .copied()
            .chain(crate::tenancy::PRACTICE_TABLES.iter().copied())
            .collect()
    }

    /// Name for people of a stored id (the id itself when no partner has it).
    pub fn name_of(&self, id: &str) -> String {
        self.get(id)
            .map(|p| p.name().to_string())
            .unwrap_or_else(|_| id.to_string())
    }
}

/// Try again to place a partner delivery kept because its patient could not be confirmed
/// (Hint was unreachable, or the practice's token missing): the partner's
/// [`PartnerTool::retry_delivery`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RetryDelivery {
    pub partner: String,
    pub delivery_id: String,
}

impl Job for RetryDelivery {
    const KIND: &'static str = "retry_delivery";
    const DESCRIPTION: &'static str = "Place a kept partner delivery with its patient";

    fn subject(&self) -> String {
        self.delivery_id.clone()
    }
}

#[async_trait]
impl RunJob<AppState> for RetryDelivery {
    async fn run(
        &self,
        state: &AppState,
        practice_id: &PracticeId,
    ) -> Result<JobOutcome, JobError> {
        let partner = state
            .partners
            .get(&self.partner)
            .map_err(JobError::permanent)?;
        partner
            .retry_delivery(state, practice_id, &self.delivery_id)
            .await
    }
}

/// What a partner's own routes get: the app, and the partner with its settings and client.
pub struct PartnerState<P> {
    pub app: AppState,
    pub partner: Arc<P>,
}

impl<P> PartnerState<P> {
    pub fn new(app: AppState, partner: Arc<P>) -> Self {
        Self { app, partner }
    }
}

impl<P> Clone for PartnerState<P> {
    fn clone(&self) -> Self {
        Self {
            app: self.app.clone(),
            partner: self.partner.clone(),
        }
    }
}

impl<P> Deref for PartnerState<P> {
    type Target = AppState;

    fn deref(&self) -> &AppState {
        &self.app
    }
}

impl<P> AsRef<HintState> for PartnerState<P> {
    fn as_ref(&self) -> &HintState {
        &self.app.hint_state
    }
}
