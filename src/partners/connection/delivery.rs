//! A partner's delivery to `/webhooks/{partner}/{practice}`, checked against that practice's
//! own secrets (cached, then stored) before anything else is read.

use std::sync::Arc;

use super::Connection;
use crate::{
    crypto::SignatureError,
    error::AppError,
    ids::ExternalId,
    practice_limits::Signed,
    tenancy::PracticeId,
    visits::{
        AppState, PartnerId,
        health::{self},
    },
};

/// The URL a partner posts this practice's webhooks to: `{public}/webhooks/{partner}/{practice}`.
pub fn webhook_url(app: &AppState, partner: PartnerId, practice_id: &PracticeId) -> String {
    crate::upstream::endpoint(
        &app.public_url,
        &["webhooks", partner.as_str(), practice_id.as_str()],
    )
    .to_string()
}

/// The secrets only (the webhook hot path: no settings to parse), from the cache unless
/// `reload`.
async fn secrets<C: Connection>(
    app: &AppState,
    practice_id: &str,
    reload: bool,
) -> Result<Option<C::Secrets>, AppError> {
    let partner = C::PARTNER.as_str();
    let cached = if reload {
        None
    } else {
        app.connection_secrets.get(practice_id, partner)
    };
    let bytes = match cached {
        Some(bytes) => bytes,
        None => {
            let sealed: Option<String> = sqlx::query_scalar(
                "SELECT secrets_sealed FROM partner_connections WHERE practice_id = $1 AND partner = $2",
            )
            .bind(practice_id)
            .bind(partner)
            .fetch_optional(app.db.reader())
            .await?;
            let Some(sealed) = sealed else {
                app.connection_secrets.forget(practice_id, partner);
                return Ok(None);
            };
            let aad = format!("partner_connections|{practice_id}|{partner}");
            let bytes: Arc<[u8]> = app.secrets.open(&sealed, &aad)?.into();
            app.connection_secrets
                .put(practice_id, partner, bytes.clone());
            bytes
        }
    };
    serde_json::from_slice(&bytes)
        .map(Some)
        .map_err(|e| AppError::Internal(anyhow::Error::new(e).context("stored partner secrets")))
}

/// Checks a delivery to `/webhooks/{partner}/{practice}` against that practice's own secrets
/// with `check`: first the cached copy, then, on a mismatch, the stored one, so a secret rotated
/// on another instance counts at once. Answers the practice, now verified. Every refusal is the
/// same 401 (no connection, an unknown practice, a missing, malformed or wrong signature): a
/// caller without the secret learns nothing of which practices use which partner.
pub async fn verify_delivery<C: Connection>(
    app: &AppState,
    practice_id: ExternalId,
    check: impl Fn(&C::Secrets) -> Result<(), SignatureError>,
) -> Result<PracticeId, AppError> {
    let unauthorized =
        |e: SignatureError| AppError::Unauthorized(format!("{} signature: {e}", C::PARTNER));
    let not_connected =
        || AppError::Unauthorized(format!("{} signature: not connected", C::PARTNER));
    let cached = secrets::<C>(app, &practice_id, false)
        .await?
        .ok_or_else(not_connected)?;
    match check(&cached) {
        Ok(()) => {}
        // Changed on another instance meanwhile? The stored copy decides.
        Err(SignatureError::Mismatch | SignatureError::Source) => {
            let stored = secrets::<C>(app, &practice_id, true)
                .await?
                .ok_or_else(not_connected)?;
            check(&stored).map_err(unauthorized)?;
        }
        Err(e) => return Err(unauthorized(e)),
    }
    // The delivery carries this practice's own secret: the practice is verified, and the
    // partner reaches us.
    let practice_id = PracticeId::verified(practice_id);
    app.practice_limits
        .spend(Signed::Webhooks, practice_id.as_str())?;
    health::record_delivery(app, &practice_id, C::PARTNER).await;
    Ok(practice_id)
}
