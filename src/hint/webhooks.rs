//! `POST /webhooks/hint`: Hint's signed events. Verified on raw bytes, deduplicated on the
//! event id (Hint retries for days), unknown types acknowledged and ignored.

use axum::{Json, body::Bytes, extract::State, http::HeaderMap};
use serde::Deserialize;

use super::{
    HintState, client::Patient, erase, installations, patient_index, verify_hint_signature,
};
use crate::{
    crypto::row_aad,
    db::now_ms,
    error::{ApiError, AppError},
    ids::{ExternalId, clean_text},
    practice_limits::Signed,
    tenancy::PracticeId,
};

#[derive(Debug, Deserialize)]
struct HintEvent {
    id: ExternalId,
    #[serde(rename = "type")]
    kind: String,
    practice_id: ExternalId,
    /// Shaped like `GET /api/provider/<resource>/{id}`.
    #[serde(default)]
    object: Option<serde_json::Value>,
}

pub async fn receive<S: AsRef<HintState>>(
    State(state): State<S>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<serde_json::Value>, ApiError> {
    let state = state.as_ref();
    verify_hint_signature(state, &headers, &body)?;
    let event: HintEvent = serde_json::from_slice(&body)
        .map_err(|e| AppError::BadRequest(format!("malformed event: {e}")))?;
    // Signed by Hint: the practice it names is verified, and spends its own budget.
    let practice_id = PracticeId::verified(event.practice_id.clone());
    state
        .practice_limits
        .spend(Signed::Webhooks, practice_id.as_str())?;
    // Recording the event and applying it commit together: a failure leaves neither, so
    // Hint's retry is processed instead of being taken for a duplicate.
    let mut tx = state.db.begin().await?;
    let inserted = sqlx::query(
        "INSERT INTO inbound_events (practice_id, source, event_key, received_at) VALUES ($1, 'hint', $2, $3) \
         ON CONFLICT DO NOTHING",
    )
    .bind(&practice_id)
    .bind(event.id.as_str())
    .bind(now_ms())
    .execute(&mut *tx)
    .await?
    .rows_affected();
    if inserted == 0 {
        return Ok(Json(
            serde_json::json!({"received": true, "duplicate": true}),
        ));
    }
    let mut event = event;
    let mut changed: Option<String> = None;
    let mut erased = false;
    match event.kind.as_str() {
        // Background work stops while deactivated; the practice's data stays (an operator
        // purges it). Activation starts it again (and ends a pending install's wait).
        kind @ ("integration.deactivated" | "integration.activated") => {
            let status = if kind == "integration.activated" {
                installations::InstallStatus::Active
            } else {
                installations::InstallStatus::Deactivated
            };
            let product_id = &state.settings.hint.product_id;
            let known =
                installations::set_status(&mut tx, product_id, &practice_id, status).await?;
            tracing::info!(%practice_id, status = status.as_str(), known, "practice's install changed in Hint");
        }
        // The patient index follows Hint (search), and the names on our visit lists stay
        // current; the chart itself is Hint's. (The visits table belongs to the layer above;
        // the rename must commit with the event.)
        "patient.created" | "patient.updated" => {
            if let Some(patient) = patient_of(event.object.take()) {
                patient_index::upsert(&mut tx, state, &practice_id, std::slice::from_ref(&patient))
                    .await?;
                rename_on_visits(&mut tx, state, &practice_id, &patient).await?;
                changed = Some(patient.id);
            }
        }
        // An inactive patient leaves search; a destroyed one leaves Chartbridge: their
        // visits keep ids and states only, every sealed value of theirs gone.
        kind @ ("patient.destroyed" | "patient.inactive") => {
            if let Some(patient) = patient_of(event.object.take()) {
                patient_index::remove(&mut tx, &practice_id, &patient.id).await?;
                if kind == "patient.destroyed" {
                    erase::patient(&mut tx, state, &practice_id, &patient.id).await?;
                    erased = true;
                }
                changed = Some(patient.id);
            }
        }
        other => tracing::debug!(kind = other, "hint event ignored"),
    }
    if let Some(patient_id) = &changed
        && state.db.backend() == crate::db::Backend::Postgres
    {
        super::directory::announce_change(&mut tx, &practice_id, patient_id).await?;
    }
    tx.commit().await?;
    if erased {
        erase::settle(state).await;
    }
    if let Some(patient_id) = &changed {
        // Search sees the change at once (created, renamed, removed), here and, by the
        // announcement, on every other instance.
        state
            .patients
            .apply(state, practice_id.as_str(), Some(patient_id))
            .await;
    }
    Ok(Json(serde_json::json!({"received": true})))
}

/// The patient an event is about (shaped like `GET /api/provider/patients/{id}`).
fn patient_of(object: Option<serde_json::Value>) -> Option<Patient> {
    object
        .and_then(|o| serde_json::from_value::<Patient>(o).ok())
        .filter(|p| ExternalId::parse(&p.id).is_ok())
}

/// Puts the patient's new name on the practice's visits (sealed per row).
async fn rename_on_visits(
    tx: &mut sqlx::AnyConnection,
    state: &HintState,
    practice_id: &PracticeId,
    patient: &Patient,
) -> Result<(), sqlx::Error> {
    let name = clean_text(&patient.display_name(), 200);
    let ids: Vec<String> =
        sqlx::query_scalar("SELECT id FROM visits WHERE practice_id = $1 AND patient_id = $2")
            .bind(practice_id)
            .bind(&patient.id)
            .fetch_all(&mut *tx)
            .await?;
    for id in ids {
        let aad = row_aad("visits", "patient_name", practice_id.as_str(), &id);
        sqlx::query("UPDATE visits SET patient_name = $1 WHERE practice_id = $2 AND id = $3")
            .bind(state.secrets.seal_text(&name, &aad))
            .bind(practice_id)
            .bind(&id)
            .execute(&mut *tx)
            .await?;
    }
    Ok(())
}

/// How long Hint's event ids are remembered to refuse a redelivery: Hint retries a delivery
/// for 72 hours; a day more for its clock and ours.
pub const REMEMBER_EVENTS_FOR: std::time::Duration = std::time::Duration::from_secs(4 * 24 * 3600);

/// Forgets event ids past [`REMEMBER_EVENTS_FOR`], 5,000 at a time (short statements beside
/// the deliveries arriving); answers how many.
pub async fn forget_old_events(db: &crate::db::Db) -> Result<u64, sqlx::Error> {
    const BATCH: u64 = 5_000;
    let before = now_ms() - REMEMBER_EVENTS_FOR.as_millis() as i64;
    let mut forgotten = 0;
    loop {
        let done = sqlx::query(
            "DELETE FROM inbound_events WHERE (practice_id, source, event_key) IN \
             (SELECT practice_id, source, event_key FROM inbound_events WHERE received_at < $1 LIMIT $2)",
        )
        .bind(before)
        .bind(BATCH as i64)
        .execute(db.writer())
        .await?
        .rows_affected();
        forgotten += done;
        if done < BATCH {
            return Ok(forgotten);
        }
    }
}
