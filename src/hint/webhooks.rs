//! `POST /webhooks/hint`: Hint's signed events. Verified on raw bytes, deduplicated on the
//! event id (Hint retries for days), unknown types acknowledged and ignored.

use axum::{Json, body::Bytes, extract::State, http::HeaderMap};
use serde::Deserialize;

use super::{install, verify_hint_signature};
use crate::{
    db::now_ms,
    error::{ApiError, AppError},
    state::AppState,
};

#[derive(Debug, Deserialize)]
struct HintEvent {
    id: String,
    #[serde(rename = "type")]
    kind: String,
    practice_id: String,
}

pub async fn receive(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<serde_json::Value>, ApiError> {
    verify_hint_signature(&state, &headers, &body)?;
    let event: HintEvent = serde_json::from_slice(&body)
        .map_err(|e| AppError::BadRequest(format!("malformed event: {e}")))?;
    if event.id.is_empty() || event.practice_id.is_empty() {
        return Err(AppError::Unprocessable("event id and practice_id are required".into()).into());
    }
    let inserted = sqlx::query(
        "INSERT INTO inbound_events (practice_id, source, event_key, received_at) VALUES ($1, 'hint', $2, $3) \
         ON CONFLICT DO NOTHING",
    )
    .bind(&event.practice_id)
    .bind(&event.id)
    .bind(now_ms())
    .execute(state.db.writer())
    .await?
    .rows_affected();
    if inserted == 0 {
        return Ok(Json(
            serde_json::json!({"received": true, "duplicate": true}),
        ));
    }
    match event.kind.as_str() {
        "integration.deactivated" => install::uninstall(&state, &event.practice_id).await?,
        other => tracing::debug!(kind = other, "hint event ignored"),
    }
    Ok(Json(serde_json::json!({"received": true})))
}
