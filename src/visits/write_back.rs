//! The `SyncInteraction` job: makes Hint's partner interaction match the visit.
//!
//! Convergent and idempotent: it finds our interaction by `integration_record_id` before
//! creating one (a create whose answer was lost is not repeated), creates it with the visit's
//! current status, patches it when the status differs, and never reopens a signed one.

use reqwest::StatusCode;
use serde::{Deserialize, Serialize};

use super::{Visit, VisitId, VisitState, files};
use crate::{
    backoff::jittered,
    db::now_ms,
    hint::{
        HintAuth, HintError,
        client::{
            DocumentInteractionFields, DocumentInteractionPatch, InteractionStatus,
            PartnerInteraction, PartnerInteractionFields,
        },
        installations,
    },
    jobs::{Job, JobError, JobOutcome, JobState, RunJob},
    tenancy::PracticeId,
    visits::AppState,
};

/// Make Hint's partner interaction match the visit (create, then patch).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyncInteraction {
    pub visit_id: VisitId,
}

impl SyncInteraction {
    pub fn of(visit_id: &VisitId) -> Self {
        Self {
            visit_id: visit_id.clone(),
        }
    }
}

impl Job for SyncInteraction {
    const KIND: &'static str = "sync_interaction";
    const DESCRIPTION: &'static str = "Write the visit to the Hint chart";

    fn subject(&self) -> String {
        self.visit_id.to_string()
    }

    fn visit_id(&self) -> Option<&VisitId> {
        Some(&self.visit_id)
    }
}

#[async_trait::async_trait]
impl RunJob<AppState> for SyncInteraction {
    async fn run(
        &self,
        state: &AppState,
        practice_id: &PracticeId,
    ) -> Result<JobOutcome, JobError> {
        run(state, practice_id, &self.visit_id).await
    }
}

/// The link in Hint that reopens our `clinical_interaction` surface on this visit.
pub fn web_link(state: &AppState, visit_id: &VisitId) -> String {
    let mut url = crate::upstream::endpoint(&state.public_url, &["hint", "clinical_interaction"]);
    url.query_pairs_mut()
        .append_pair("visit_id", visit_id.as_str());
    url.to_string()
}

/// What Hint should hold for `visit`.
pub fn desired_fields(state: &AppState, visit: &Visit) -> PartnerInteractionFields {
    let visit_state = visit.state();
    PartnerInteractionFields {
        status: visit.interaction_status(),
        title: format!(
            "{} ({})",
            state.partners.name_of(&visit.partner),
            visit_state.label().to_lowercase()
        ),
        integration_record_id: visit.id.to_string(),
        integration_web_link: web_link(state, &visit.id),
        integration_error_message: match visit.interaction_status() {
            InteractionStatus::Failed => Some(
                visit
                    .error_message
                    .clone()
                    .unwrap_or_else(|| "The visit could not be completed.".into()),
            ),
            _ => None,
        },
        partner_product_id: state.settings.hint.product_id.clone(),
    }
}

/// Hint down, slow or rate limiting is worth waiting for; so is a refused practice token (the
/// practice may reinstall). Any other refusal will not change by itself.
fn job_error(e: HintError) -> JobError {
    let token_refused = matches!(
        e.status(),
        Some(StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN | StatusCode::PRECONDITION_REQUIRED)
    );
    if e.is_retryable() || token_refused {
        JobError::transient(e)
    } else {
        JobError::permanent(e)
    }
}

/// Hint refused a document that carried files: most likely it could not download one from
/// our links (our public address not reachable from Hint, a link that did not answer in
/// time). That can pass, so it is tried again, with new links, over the job's attempts, and
/// shown in *Needs attention* meanwhile.
#[derive(Debug, thiserror::Error)]
#[error("Hint did not take the visit's files for the chart")]
pub struct FilesNotTaken(#[source] HintError);

fn document_error(e: HintError, attachments: usize) -> JobError {
    let refused = e.is_refusal()
        && !matches!(
            e.status(),
            Some(
                StatusCode::UNAUTHORIZED
                    | StatusCode::FORBIDDEN
                    | StatusCode::PRECONDITION_REQUIRED
                    | StatusCode::TOO_MANY_REQUESTS
            )
        );
    if attachments > 0 && refused {
        JobError::transient(FilesNotTaken(e))
    } else {
        job_error(e)
    }
}

/// A link of its own for each file (`files::link`).
async fn links(
    state: &AppState,
    practice_id: &PracticeId,
    kept: &[files::VisitFile],
) -> Result<Vec<String>, sqlx::Error> {
    let mut out = Vec::with_capacity(kept.len());
    for file in kept {
        out.push(files::link(state, practice_id, file).await?);
    }
    Ok(out)
}

/// The `SyncInteraction` job for one visit of the practice that claimed it.
async fn run(
    state: &AppState,
    practice_id: &PracticeId,
    visit_id: &VisitId,
) -> Result<JobOutcome, JobError> {
    let Some(visit) = super::get_latest(state, practice_id, visit_id).await? else {
        return Err(JobError::permanent("the visit no longer exists"));
    };
    let token = installations::practice_token(state, practice_id)
        .await?
        .ok_or_else(|| {
            JobError::transient(
                "the practice has not installed Chartbridge in Hint (no Instant On token yet)",
            )
        })?;
    let auth = HintAuth {
        practice_id,
        token: &token,
    };
    let desired = desired_fields(state, &visit);

    let current: PartnerInteraction = match visit.hint_interaction_id.as_deref() {
        Some(id) => state
            .hint
            .get_partner_interaction(&auth, &visit.patient_id, id)
            .await
            .map_err(job_error)?,
        None => {
            let Some(interaction) = find_or_create(state, &auth, &visit, &desired).await? else {
                // Cancelled before Hint ever held it: nothing to delete.
                return Ok(JobOutcome::Done);
            };
            record(state, practice_id, &visit, &interaction).await?;
            interaction
        }
    };

    let needs_patch = current.status != desired.status
        || (desired.integration_error_message.is_some()
            && current.integration_error_message != desired.integration_error_message);
    // Signed is final in Hint: nothing we learn later reopens it; a correction addends it.
    let may_patch = current.status != InteractionStatus::Signed
        || desired.status == InteractionStatus::Addended;
    if needs_patch && may_patch {
        let patched = state
            .hint
            .patch_partner_interaction(&auth, &visit.patient_id, &current.id, &desired)
            .await
            .map_err(job_error)?;
        record(state, practice_id, &visit, &patched).await?;
    } else if visit.hint_status.as_deref() != Some(current.status.as_str()) {
        record(state, practice_id, &visit, &current).await?;
    }
    if visit.state() == VisitState::Completed && !visit.is_erased() {
        match visit.hint_document_id.as_deref() {
            None => write_note(state, practice_id, &auth, &visit).await?,
            Some(id) if visit.document_addenda < visit.addenda => {
                addend_note(state, practice_id, &auth, &visit, id).await?
            }
            Some(_) => {}
        }
    }
    Ok(JobOutcome::Done)
}

/// Writes the signed visit's content into the chart as a document interaction, once: the
/// document is looked for by our record id before it is created (a create whose answer was
/// lost, or whose id we did not store before a crash, is found, never made twice), and its id
/// is kept on the visit.
async fn write_note(
    state: &AppState,
    practice_id: &PracticeId,
    auth: &HintAuth<'_>,
    visit: &Visit,
) -> Result<(), JobError> {
    let partner = state.partners.of(visit).map_err(JobError::permanent)?;
    let Some(note) = partner.chart_note(visit).map_err(JobError::permanent)? else {
        return Ok(());
    };
    let found = state
        .hint
        .find_document_interaction(auth, &visit.patient_id, visit.id.as_str())
        .await
        .map_err(job_error)?;
    let kept = files::of_visit(state, practice_id, &visit.id).await?;
    let document = match found {
        Some(existing) => existing,
        None => {
            // Each file the partner gave, through a link of its own that Hint downloads from
            // while it handles the create.
            let attachments = links(state, practice_id, &kept).await?;
            let sent = attachments.len();
            let fields = DocumentInteractionFields {
                status: InteractionStatus::Signed,
                title: note.title,
                body: note.body,
                attachments,
                event_timestamp: rfc3339(visit.created_at),
                integration_record_id: visit.id.to_string(),
                integration_web_link: web_link(state, &visit.id),
            };
            state
                .hint
                .create_document_interaction(auth, &visit.patient_id, &fields)
                .await
                .map_err(|e| document_error(e, sent))?
        }
    };
    files::mark_in_chart(state, practice_id, &kept).await?;
    sqlx::query(
        "UPDATE visits SET hint_document_id = $1, updated_at = $2 WHERE practice_id = $3 AND id = $4",
    )
    .bind(&document.id)
    .bind(now_ms())
    .bind(practice_id)
    .bind(&visit.id)
    .execute(state.db.writer())
    .await?;
    Ok(())
}

/// Rewrites the chart's document of a corrected visit: the latest result first, then what
/// changed and when, then every earlier version, under `addended`.
async fn addend_note(
    state: &AppState,
    practice_id: &PracticeId,
    auth: &HintAuth<'_>,
    visit: &Visit,
    document_id: &str,
) -> Result<(), JobError> {
    let partner = state.partners.of(visit).map_err(JobError::permanent)?;
    let Some(latest) = partner.chart_note(visit).map_err(JobError::permanent)? else {
        return Ok(());
    };
    let mut earlier = Vec::new();
    for version in super::stored::versions_of(state, practice_id, visit).await? {
        let mut then = visit.clone();
        then.result = Some(version.result.clone());
        if let Some(note) = partner.chart_note(&then).map_err(JobError::permanent)? {
            earlier.push(super::chart_note::Earlier {
                replaced_at: version.replaced_at,
                what_changed: version.what_changed,
                note,
            });
        }
    }
    let body = super::chart_note::with_corrections(&latest, &earlier);
    // Files the correction brought (a report approved again) join the document.
    let added: Vec<_> = files::of_visit(state, practice_id, &visit.id)
        .await?
        .into_iter()
        .filter(|f| !f.in_chart)
        .collect();
    let attachments = links(state, practice_id, &added).await?;
    let sent = attachments.len();
    let fields = DocumentInteractionPatch {
        status: InteractionStatus::Addended,
        title: latest.title,
        body,
        attachments,
    };
    state
        .hint
        .patch_document_interaction(auth, &visit.patient_id, document_id, &fields)
        .await
        .map_err(|e| document_error(e, sent))?;
    files::mark_in_chart(state, practice_id, &added).await?;
    sqlx::query(
        "UPDATE visits SET document_addenda = $1, updated_at = $2 WHERE practice_id = $3 AND id = $4",
    )
    .bind(visit.addenda)
    .bind(now_ms())
    .bind(practice_id)
    .bind(&visit.id)
    .execute(state.db.writer())
    .await?;
    Ok(())
}

/// Unix milliseconds as RFC 3339 (UTC), as Hint takes `event_timestamp`.
fn rfc3339(ms: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp_nanos(ms as i128 * 1_000_000)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_default()
}

/// Our interaction for the visit, created when Hint holds none (`None`: none, and the visit
/// was cancelled, so none is wanted). A create that failed without a clear answer may have been
/// applied, so it is looked for again before it is tried again, a few times in place before the
/// job's back-off takes over.
async fn find_or_create(
    state: &AppState,
    auth: &HintAuth<'_>,
    visit: &Visit,
    desired: &PartnerInteractionFields,
) -> Result<Option<PartnerInteraction>, JobError> {
    let settings = &state.settings.hint;
    let (mut attempt, mut wait) = (0, settings.failure_backoff);
    loop {
        let found = state
            .hint
            .find_partner_interaction(auth, &visit.patient_id, visit.id.as_str())
            .await
            .map_err(job_error)?;
        match found {
            Some(existing) => return Ok(Some(existing)),
            None if desired.status == InteractionStatus::Deleted => return Ok(None),
            None => match state
                .hint
                .create_partner_interaction(auth, &visit.patient_id, desired)
                .await
            {
                Ok(created) => return Ok(Some(created)),
                Err(e) if e.is_retryable() && attempt < settings.failure_retries => {
                    attempt += 1;
                    tracing::debug!(error = %e, attempt, "creating the interaction failed; looking for it again");
                    tokio::time::sleep(jittered(wait)).await;
                    wait = wait.saturating_mul(2);
                }
                Err(e) => return Err(job_error(e)),
            },
        }
    }
}

async fn record(
    state: &AppState,
    practice_id: &PracticeId,
    visit: &Visit,
    interaction: &PartnerInteraction,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE visits SET hint_interaction_id = $1, hint_status = $2, updated_at = $3 WHERE practice_id = $4 AND id = $5",
    )
    .bind(&interaction.id)
    .bind(interaction.status.as_str())
    .bind(now_ms())
    .bind(practice_id)
    .bind(&visit.id)
    .execute(state.db.writer())
    .await?;
    Ok(())
}

/// Whether writing one of this patient's visits to Hint's chart is stuck (dead, or failing
/// again and again), with its last error: the patient's few visits, each one's write-back
/// found by its key. (Asking the practice's list of stuck work instead read and named up to
/// 50 jobs for every chart opened, and missed a patient's beyond those 50.)
pub async fn stuck_for_patient(
    state: &AppState,
    practice_id: &PracticeId,
    patient_id: &str,
) -> Result<Option<Option<String>>, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT j.last_error FROM visits v JOIN jobs j ON j.dedupe_key = $3 || v.id \
         WHERE v.practice_id = $1 AND v.patient_id = $2 AND j.practice_id = $1 \
         AND (j.state = $4 OR (j.attempts >= 3 AND j.last_error IS NOT NULL)) LIMIT 1",
    )
    .bind(practice_id)
    .bind(patient_id)
    .bind(format!("{}:", SyncInteraction::KIND))
    .bind(JobState::Dead)
    .fetch_optional(state.db.reader())
    .await
}
