//! Visits: one launch of a partner tool for one patient, and its result.
//!
//! The states and the moves between them are in [`lifecycle`]; every statement that moves a
//! visit takes its guard from there and enqueues the `SyncInteraction` job in the same
//! transaction, so Hint's partner interaction always converges to the visit's state, whatever
//! crashes in between. One visit at a time moves through `transitions.rs`; results and visits
//! that arrive finished under a burst are written in batches by [`completion`] and
//! [`recording`] (group-committed through `burst.rs`). Every query takes the practice first
//! (`queries.rs`): a visit is only ever found within it.
//!
//! - [`partner`]: the seam to the partners (trait, registry, errors);
//! - [`launch`]: the one launch sequence; [`routes`]: start and cancel from the frame;
//! - [`page`]: the `clinical_interaction` surface, the visit's own page;
//! - `stored.rs`: the visit as stored, its patient data sealed;
//! - [`poll`] and [`write_back`]: the jobs.

mod app_state;
mod burst;
pub mod chart_note;
pub mod completion;
pub mod files;
pub mod health;
pub mod launch;
pub mod lifecycle;
pub mod page;
pub mod partner;
pub mod poll;
mod queries;
pub mod recording;
pub mod routes;
mod stored;
mod transitions;
pub mod versions;
pub mod write_back;

use serde::{Serialize, de::DeserializeOwned};

pub use app_state::AppState;
pub use lifecycle::VisitState;
pub use partner::{LaunchStyle, PartnerError, PartnerId, PartnerState, PartnerTool, Partners};

pub use crate::ids::VisitId;
pub use queries::{
    After, VisitLabel, find_by_interaction, find_by_partner_ref, for_patient, get, get_latest,
    labels, receipts_waiting, recent,
};
pub use stored::{SEALED_PASS, StoredVisit, VISIT_COLUMNS, seal_stored};
pub use transitions::{
    cancel, claim_partner_ref, complete, fail, mark_launched, record_completed, start,
    update_launch,
};

use crate::{error::AppError, hint::client::InteractionStatus};

/// A visit. Read from the database only through [`StoredVisit`], which opens its sealed
/// columns.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Visit {
    pub id: VisitId,
    pub patient_id: String,
    pub patient_name: String,
    pub user_id: String,
    pub user_name: String,
    /// The partner's id (`PartnerTool::id`); `Partners::of` finds the partner.
    pub partner: String,
    pub state: VisitState,
    pub partner_ref: Option<String>,
    /// The partner's launch data (its own serde struct, as JSON), e.g. Tiep's form.
    pub launch: String,
    /// The partner's result (its own serde struct, as JSON) once it came.
    pub result: Option<String>,
    pub error_message: Option<String>,
    pub hint_interaction_id: Option<String>,
    pub hint_status: Option<String>,
    /// The document interaction holding the result in the patient's chart, once written.
    pub hint_document_id: Option<String>,
    /// Corrections a partner made to the signed result (each earlier result kept sealed).
    pub addenda: i64,
    /// How many of them the chart's document shows.
    pub document_addenda: i64,
    pub created_at: i64,
    pub updated_at: i64,
    pub completed_at: Option<i64>,
}

/// Launch or result data that does not read as the partner's struct (written by another
/// version, or for another partner): an error, never a silent default.
#[derive(Debug, thiserror::Error)]
#[error("the stored {what} of visit {visit_id} does not read")]
pub struct VisitDataError {
    what: &'static str,
    visit_id: VisitId,
    #[source]
    source: serde_json::Error,
}

impl From<VisitDataError> for AppError {
    fn from(e: VisitDataError) -> Self {
        AppError::Internal(anyhow::Error::new(e))
    }
}

impl Visit {
    pub fn state(&self) -> VisitState {
        self.state
    }

    /// Whether the visit is `partner`'s.
    pub fn is_of(&self, partner: PartnerId) -> bool {
        self.partner == partner.as_str()
    }

    /// The partner's launch data.
    pub fn launch_data<T: DeserializeOwned>(&self) -> Result<T, VisitDataError> {
        serde_json::from_str(&self.launch).map_err(|source| VisitDataError {
            what: "launch data",
            visit_id: self.id.clone(),
            source,
        })
    }

    /// The partner's result, once it came.
    pub fn result_data<T: DeserializeOwned>(&self) -> Result<Option<T>, VisitDataError> {
        self.result
            .as_deref()
            .map(serde_json::from_str)
            .transpose()
            .map_err(|source| VisitDataError {
                what: "result",
                visit_id: self.id.clone(),
                source,
            })
    }

    pub fn created(&self) -> String {
        crate::db::format_ms(self.created_at)
    }

    /// What Hint's interaction should say: the state's status, `addended` once a partner
    /// corrected the signed result.
    pub fn interaction_status(&self) -> InteractionStatus {
        if self.state == VisitState::Completed && self.addenda > 0 {
            InteractionStatus::Addended
        } else {
            self.state.interaction_status()
        }
    }

    /// Whether Hint's chart, as Hint last confirmed it, says what the visit says.
    pub fn in_hint_as_here(&self) -> bool {
        self.hint_status.as_deref() == Some(self.interaction_status().as_str())
    }

    /// Whether Hint destroyed the patient and their data was erased (`hint::erase`): the visit
    /// keeps its ids, state and times only.
    pub fn is_erased(&self) -> bool {
        self.launch.is_empty()
    }

    /// Whether the result is in the patient's chart as a document with every correction (a
    /// visit that did not complete has none to write).
    pub fn note_in_chart(&self) -> bool {
        self.state != VisitState::Completed
            || self.is_erased()
            || (self.hint_document_id.is_some() && self.document_addenda >= self.addenda)
    }

    /// The Hint chart's status as last confirmed by Hint, or "not yet in Hint"; a completed
    /// visit whose result is not written into the chart yet says so.
    pub fn hint_label(&self) -> String {
        match (&self.hint_interaction_id, &self.hint_status) {
            (Some(_), Some(status)) if !self.note_in_chart() => {
                format!("In Hint as {status}; the result is not in the chart yet")
            }
            (Some(_), Some(status)) => format!("In Hint as {status}"),
            _ => "Not yet in Hint".into(),
        }
    }
}

/// What starting a visit needs (the practice is passed beside it).
pub struct NewVisit<'a> {
    pub patient_id: &'a str,
    pub patient_name: &'a str,
    pub user_id: &'a str,
    pub user_name: &'a str,
    pub partner: PartnerId,
    /// The partner's launch data as JSON (`to_json`).
    pub launch: String,
}

/// The partner's launch or result data as stored.
pub fn to_json(data: &impl Serialize) -> String {
    serde_json::to_string(data).expect("launch and result data serialise")
}
