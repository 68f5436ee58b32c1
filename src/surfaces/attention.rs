//! Work that needs a person (*Needs attention* on the core page, a warning on a patient's
//! chart): which patient and partner it is about, what went wrong and what to do, in the words
//! of the people who read it. The stored error stays one click away, under *Details*.

use crate::{
    db::Moment,
    error::AppError,
    jobs::{self, JobState, StuckJob},
    tenancy::PracticeId,
    visits::{self, AppState},
};

/// One stuck piece of work as people read it.
pub struct Attention {
    pub id: String,
    /// "Ava Thompson — Tiep scribe visit", or what it is when no visit is concerned.
    pub about: String,
    pub visit_id: Option<String>,
    /// What Chartbridge was doing.
    pub doing: String,
    /// What is wrong and what to do.
    pub advice: &'static str,
    pub dead: bool,
    pub attempts: i64,
    pub updated: Moment,
    /// The stored reason (party and status), for support.
    pub details: String,
}

/// Why writing this patient's visits to Hint is failing, if it is.
pub async fn hint_writes_failing_for(
    state: &AppState,
    practice_id: &PracticeId,
    patient_id: &str,
) -> Result<Option<&'static str>, AppError> {
    let stuck = visits::write_back::stuck_for_patient(state, practice_id, patient_id).await?;
    Ok(stuck.map(|last_error| advice(last_error.as_deref().unwrap_or_default())))
}

/// Stuck work the core page lists; the rest is counted.
pub const LISTED: i64 = 10;

/// A practice's stuck work as the core page shows it.
#[derive(Default)]
pub struct NeedsAttention {
    /// The newest [`LISTED`].
    pub newest: Vec<Attention>,
    pub total: i64,
    /// How many wait for a person's retry.
    pub dead: i64,
}

/// This practice's stuck work, the newest named by patient and partner.
pub async fn for_practice(
    state: &AppState,
    practice_id: &PracticeId,
) -> Result<NeedsAttention, AppError> {
    let stuck = jobs::stuck_for_practice(&state.db, &state.job_kinds, practice_id, LISTED).await?;
    // Their visits named in one read (a whole visit read and opened for each was a round trip
    // and a result decrypted per job).
    let ids: Vec<&visits::VisitId> = stuck
        .newest
        .iter()
        .filter_map(|j| j.visit_id.as_ref())
        .collect();
    let found = visits::labels(state, practice_id, &ids).await?;
    let newest = stuck
        .newest
        .into_iter()
        .map(|job| {
            let visit = job
                .visit_id
                .as_ref()
                .and_then(|id| found.iter().find(|v| &v.id == id));
            Attention::new(job, visit, state)
        })
        .collect();
    Ok(NeedsAttention {
        newest,
        total: stuck.total,
        dead: stuck.dead,
    })
}

impl Attention {
    fn new(job: StuckJob, visit: Option<&visits::VisitLabel>, state: &AppState) -> Self {
        let about = match visit {
            Some(v) => format!(
                "{} — {} visit",
                v.patient_name,
                state.partners.name_of(&v.partner)
            ),
            None => "A partner delivery".to_string(),
        };
        Attention {
            advice: advice(&job.last_error),
            id: job.id,
            about,
            visit_id: job.visit_id.map(|v| v.to_string()),
            doing: job.description,
            dead: job.state == JobState::Dead,
            attempts: job.attempts,
            updated: Moment(job.updated_at),
            details: job.last_error,
        }
    }
}

/// What is wrong and what to do, read from the stored reason (our own words: the party and
/// its status, or Chartbridge's).
pub fn advice(reason: &str) -> &'static str {
    let hint_refused = [
        "Hint answered HTTP 401",
        "Hint answered HTTP 403",
        "Hint answered HTTP 428",
    ];
    if reason.contains("not installed Chartbridge") {
        "Chartbridge is not installed for this practice in Hint yet, so it cannot write to charts. \
         A practice admin installs it from the Hint marketplace; then press Retry."
    } else if hint_refused.iter().any(|r| reason.contains(r)) {
        "Hint refused Chartbridge's access to this practice (it may have been uninstalled). A \
         practice admin installs Chartbridge again from the Hint marketplace; then press Retry."
    } else if reason.contains("could not reach Hint")
        || reason.contains("Hint did not answer")
        || reason.contains("Hint answered HTTP 5")
        || reason.contains("Hint answered HTTP 429")
    {
        "Hint did not answer. Chartbridge tries again by itself; press Retry if this has stopped."
    } else if reason.contains("did not take the visit's files") {
        "Hint could not collect the visit's files (the partner's report) from Chartbridge, so the \
         result is not in the chart yet. Chartbridge tries again by itself. If this stays, \
         Chartbridge's address may not be reachable from Hint: contact support with the details \
         below."
    } else if reason.contains("Hint answered HTTP 4") {
        "Hint refused to take this for the chart. A practice admin checks that Chartbridge is \
         installed and active for this practice in Hint; then press Retry. If Hint refuses again, \
         contact support with the details below."
    } else if reason.contains("answered HTTP 401") || reason.contains("answered HTTP 403") {
        "The partner refused this practice's credentials. A practice admin checks them in \
         Chartbridge settings; then press Retry."
    } else if reason.contains("could not reach") || reason.contains("did not answer") {
        "The partner did not answer. Chartbridge tries again by itself; press Retry if this has \
         stopped."
    } else {
        "Chartbridge could not finish this. Press Retry; if it stops again, contact support with \
         the details below."
    }
}

#[cfg(test)]
mod tests {
    use super::advice;

    #[test]
    fn every_stored_reason_gets_words_a_person_can_act_on() {
        for (reason, says) in [
            (
                "the practice has not installed Chartbridge in Hint (no Instant On token yet)",
                "not installed",
            ),
            ("Hint answered HTTP 401", "refused Chartbridge's access"),
            (
                "Hint did not take the visit's files for the chart: Hint answered HTTP 422",
                "could not collect the visit's files",
            ),
            (
                "could not reach Hint: error sending request",
                "Hint did not answer",
            ),
            ("Hint answered HTTP 503", "Hint did not answer"),
            ("Hint answered HTTP 422", "Hint refused to take this"),
            (
                "Haidy answered HTTP 401",
                "refused this practice's credentials",
            ),
            (
                "HCW@Home did not answer in time",
                "The partner did not answer",
            ),
            ("the visit no longer exists", "contact support"),
        ] {
            assert!(
                advice(reason).contains(says),
                "{reason}: {}",
                advice(reason)
            );
        }
    }
}
