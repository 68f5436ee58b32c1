//! The one launch sequence every partner goes through: the visit row (and its draft in Hint)
//! first, then the partner with our visit id, then the visit marked launched with the
//! partner's reference and data, or failed with the partner's reason for the clinician.

use std::time::Duration;

use serde::Serialize;

use super::{
    NewVisit, PartnerError, PartnerId, VisitId,
    health::{self, Observation},
    to_json,
};
use crate::{
    db::now_ms,
    error::AppError,
    hint::{Patient, PracticeSession},
    ids::clean_text,
    visits::AppState,
};

/// What the partner answered when it accepted the launch.
pub struct Launched<L> {
    /// The partner's own id for the visit (session, invite), when it gives one.
    pub partner_ref: Option<String>,
    /// The partner's launch data, as the visit keeps it.
    pub data: L,
    /// When to first look for the result, unless it arrives first.
    pub poll_after: Option<Duration>,
}

/// Why a launch did not end with a launched visit.
#[derive(Debug, thiserror::Error)]
pub enum LaunchError {
    /// The partner refused or failed; the visit is failed with the partner's reason.
    #[error("the partner did not launch visit {visit_id}")]
    Partner {
        visit_id: VisitId,
        #[source]
        error: PartnerError,
    },
    /// The visit ended while the partner was answering (the launch timed out, or a clinician
    /// cancelled it): the partner's launch is not used.
    #[error("visit {visit_id} ended before its launch completed")]
    Overtaken { visit_id: VisitId },
    /// Our side failed.
    #[error(transparent)]
    Internal(#[from] AppError),
}

impl From<sqlx::Error> for LaunchError {
    fn from(e: sqlx::Error) -> Self {
        LaunchError::Internal(e.into())
    }
}

impl From<LaunchError> for AppError {
    fn from(e: LaunchError) -> Self {
        match e {
            LaunchError::Partner { error, .. } => error.into(),
            LaunchError::Overtaken { .. } => AppError::Conflict(
                "The visit ended before the partner answered (it took too long, or it was cancelled). Start it again.".into(),
            ),
            LaunchError::Internal(e) => e,
        }
    }
}

/// Launches `partner` for `patient` as the session's clinician. `initial` is the launch data
/// the visit starts with; `call` asks the partner, knowing our visit id, and answers what the
/// visit keeps plus anything the caller needs afterwards (`T`, e.g. the URL to open).
pub async fn launch<L, T>(
    state: &AppState,
    session: &PracticeSession,
    patient: &Patient,
    partner: PartnerId,
    initial: &L,
    call: impl AsyncFnOnce(&VisitId) -> Result<(Launched<L>, T), PartnerError>,
) -> Result<(VisitId, T), LaunchError>
where
    L: Serialize,
{
    let practice_id = &session.practice_id;
    let visit_id = super::start(
        state,
        practice_id,
        NewVisit {
            patient_id: &patient.id,
            patient_name: &clean_text(&patient.display_name(), 200),
            user_id: &session.user_id,
            user_name: &session.user_name,
            partner,
            launch: to_json(initial),
        },
        &session.actor(),
    )
    .await?;
    let answer = call(&visit_id).await;
    let observed = match &answer {
        Ok(_) => Some(Observation::Worked),
        Err(error) => Observation::of_error(error),
    };
    if let Some(observed) = observed {
        health::record(state, practice_id, partner, &observed).await;
    }
    let (launched, extra) = match answer {
        Ok(answer) => answer,
        Err(error) => {
            tracing::warn!(%practice_id, %visit_id, %partner, error = %crate::error::error_chain(&error), "partner launch refused or failed");
            super::fail(state, practice_id, &visit_id, &error.message()).await?;
            return Err(LaunchError::Partner { visit_id, error });
        }
    };
    let poll_at = launched
        .poll_after
        .map(|after| now_ms() + after.as_millis() as i64);
    let marked = super::mark_launched(
        state,
        practice_id,
        &visit_id,
        launched.partner_ref.as_deref(),
        &launched.data,
        poll_at,
    )
    .await?;
    if !marked {
        tracing::warn!(%practice_id, %visit_id, %partner, "a visit ended before its launch completed");
        return Err(LaunchError::Overtaken { visit_id });
    }
    Ok((visit_id, extra))
}
