//! A practice's connection to a partner, as its admin sets it up: plain settings (JSON) and
//! secrets (JSON, sealed with the row's identity as associated data). Secrets are written,
//! never shown back; a secret field left blank keeps the stored one.
//!
//! One settings flow serves every partner: a partner describes its connection by implementing
//! [`Connection`] (what is stored, its form, how a form becomes a connection, a harmless real
//! call that tests it, its section of the settings page) and mounts [`routes`]; [`save`],
//! [`test()`] and [`section`] do the rest. A save tests what was entered with the partner before
//! storing it: credentials the partner refuses are not stored unless the admin says "Save
//! anyway" (then they are, flagged). Every section shows the connection's health
//! (`visits::health`): connected, failing since when and why, or never used.

mod delivery;
mod form;
mod store;

pub use delivery::{verify_delivery, webhook_url};
pub use form::{keep_blank, routes, save, section, test};
pub use store::{configured, load};

use std::future::Future;

use serde::{Serialize, de::DeserializeOwned};

use crate::{
    db::Moment,
    error::AppError,
    tenancy::PracticeId,
    visits::{
        AppState, PartnerId,
        health::{Health, HealthStatus, Observation},
    },
};

/// A partner's per-practice connection and its section of the settings surface.
pub trait Connection: Sized + Send + Sync + 'static {
    /// The partner it connects to.
    const PARTNER: PartnerId;
    /// Plain settings, stored as JSON.
    type Settings: Serialize + DeserializeOwned + Send;
    /// Secrets, stored sealed.
    type Secrets: Serialize + DeserializeOwned + Send;
    /// The settings form as the admin posts it.
    type Form: DeserializeOwned + Send + Sync + 'static;
    /// The partner value (its client): what a test calls with.
    type Partner: Send + Sync + 'static;

    fn from_stored(settings: Self::Settings, secrets: Self::Secrets) -> Self;

    fn to_stored(&self) -> (Self::Settings, Self::Secrets);

    /// A submitted form as a connection; secrets left blank keep `stored`'s. The refusal is
    /// for the admin, naming the field when one is at fault.
    fn from_form(form: &Self::Form, stored: Option<&Self>) -> Result<Self, Refusal>;

    /// Checks a connection the form made against the world before it is stored (an address
    /// the admin typed may be called); the refusal is for the admin. Nothing to check by
    /// default.
    fn check(&self, app: &AppState) -> impl Future<Output = Result<(), Refusal>> + Send {
        let _ = app;
        async { Ok(()) }
    }

    /// A harmless real call with this connection (a sign-in, a listing, a token request that
    /// opens nothing). Partners that only call us keep the default: their signed deliveries
    /// are their health.
    fn test(
        &self,
        partner: &Self::Partner,
        app: &AppState,
        practice_id: &PracticeId,
    ) -> impl Future<Output = Tested> + Send {
        let _ = (partner, app, practice_id);
        async { Tested::Inbound }
    }

    /// The section's HTML: the form showing `entered` (after a refused save) or `stored`, and
    /// what the last save did.
    fn render_section(view: SectionView<'_, Self>) -> Result<String, AppError>;
}

/// What a section is drawn from.
pub struct SectionView<'a, C: Connection> {
    pub app: &'a AppState,
    pub practice_id: &'a PracticeId,
    pub stored: Option<&'a C>,
    /// What the admin entered, when a save refused it.
    pub entered: Option<&'a C::Form>,
    /// The connection's health, with what a save or a test just did.
    pub panel: Panel,
}

impl<C: Connection> SectionView<'_, C> {
    pub fn configured(&self) -> bool {
        self.stored.is_some()
    }

    /// The health panel and the save's outcome, for the section's template.
    pub fn panel(&self) -> Panel {
        self.panel.clone()
    }

    /// The URL the partner posts this practice's webhooks to.
    pub fn webhook_url(&self) -> String {
        webhook_url(self.app, C::PARTNER, self.practice_id)
    }
}

/// Why a form cannot become a connection: words for the admin, and the field at fault.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub message: String,
    /// The form field's `name`, when one field is at fault: the page marks it invalid and
    /// moves the focus to it.
    pub field: Option<&'static str>,
}

impl Refusal {
    pub fn at(field: &'static str, message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            field: Some(field),
        }
    }
}

impl From<String> for Refusal {
    fn from(message: String) -> Self {
        Self {
            message,
            field: None,
        }
    }
}

impl From<&str> for Refusal {
    fn from(message: &str) -> Self {
        message.to_string().into()
    }
}

/// What a test of a connection with its partner found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Tested {
    /// The partner answered and took the credentials.
    Worked,
    /// It did not; why, for the admin.
    Failed(String),
    /// The partner only calls us: nothing to call.
    Inbound,
}

impl Tested {
    /// A test call's result: a partner that answered a request of ours with a refusal that
    /// is not about the credentials (4xx other than 401, 403, 429) took them.
    pub fn of<E: std::error::Error + 'static>(result: Result<(), E>) -> Self {
        match result {
            Ok(()) => Tested::Worked,
            Err(e) => match Observation::of_error(&e) {
                Some(Observation::Worked) => Tested::Worked,
                Some(Observation::Failed(why)) => Tested::Failed(why),
                None => Tested::Failed(e.to_string()),
            },
        }
    }

    fn observation(&self) -> Option<Observation> {
        match self {
            Tested::Worked => Some(Observation::Worked),
            Tested::Failed(why) => Some(Observation::Failed(why.clone())),
            Tested::Inbound => None,
        }
    }
}

/// What an admin's save did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SaveOutcome {
    /// Saved; the partner took it when tested (or there is nothing to test).
    Saved,
    /// Saved because the admin said so, though the partner refused it (why).
    SavedAnyway(String),
    /// Not saved: the form is wrong.
    Refused(Refusal),
    /// Not saved: the partner refused the connection when tested (why); the admin may save
    /// it anyway.
    Untested(String),
}

impl SaveOutcome {
    fn stored(&self) -> bool {
        matches!(self, SaveOutcome::Saved | SaveOutcome::SavedAnyway(_))
    }
}

/// A section's health panel and last outcome, as its template shows them
/// (`fragments/connection_health.html`, `fragments/save_outcome.html`).
#[derive(Debug, Clone)]
pub struct Panel {
    pub partner: PartnerId,
    /// The partner's name for people.
    pub name: &'static str,
    /// Settings are saved.
    pub configured: bool,
    pub status: HealthStatus,
    pub health: Health,
    /// The partner only calls us (its test says when it last did).
    pub inbound: bool,
    /// A test just run, if any.
    pub tested: Option<Tested>,
    /// What the save just did, if it was one.
    pub outcome: Option<SaveOutcome>,
    /// Drawn as the answer to a save or a test (not within the whole page): the status in
    /// the page's contents is updated along with it (htmx out-of-band swap).
    pub answer: bool,
}

impl Panel {
    pub fn saved(&self) -> bool {
        matches!(self.outcome, Some(SaveOutcome::Saved))
    }

    /// Saved though the partner refused it: why.
    pub fn saved_anyway(&self) -> Option<String> {
        match &self.outcome {
            Some(SaveOutcome::SavedAnyway(why)) => Some(why.clone()),
            _ => None,
        }
    }

    /// Why the last save was refused, for the admin.
    pub fn error(&self) -> Option<String> {
        match &self.outcome {
            Some(SaveOutcome::Refused(refusal)) => Some(refusal.message.clone()),
            _ => None,
        }
    }

    /// The field the refusal is about.
    pub fn error_field(&self) -> Option<&'static str> {
        match &self.outcome {
            Some(SaveOutcome::Refused(refusal)) => refusal.field,
            _ => None,
        }
    }

    /// The partner refused what was entered when tested: why (the admin may save anyway).
    pub fn untested(&self) -> Option<String> {
        match &self.outcome {
            Some(SaveOutcome::Untested(why)) => Some(why.clone()),
            _ => None,
        }
    }

    pub fn failing_since(&self) -> Option<Moment> {
        self.health.failing_since
    }

    pub fn tested_worked(&self) -> bool {
        self.tested == Some(Tested::Worked)
    }

    pub fn tested_failed(&self) -> Option<String> {
        match &self.tested {
            Some(Tested::Failed(why)) => Some(why.clone()),
            _ => None,
        }
    }

    pub fn tested_inbound(&self) -> bool {
        self.tested == Some(Tested::Inbound)
    }
}
