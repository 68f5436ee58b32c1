//! A practice's data over the life of its install. When Hint deactivates Chartbridge for a
//! practice, its data is kept for a grace period (`CHARTBRIDGE_PURGE_AFTER_DAYS`, 30 by
//! default: the admin sees until when), then purged with the operator's purge (every table of
//! practice data, the partners' own included; the audit trail kept). Hint activating it again
//! within the grace keeps everything.
//!
//! The same hourly look forgets Hint's event ids past its 72-hour retry window
//! (`hint::webhooks::forget_old_events`): they only ever served to refuse a redelivery.

use std::time::Duration;

use tokio::sync::watch;

use crate::{db::now_ms, ids::ExternalId, visits::AppState};

/// How often an instance looks for practices past their grace.
const LOOK_EVERY: Duration = Duration::from_secs(3600);

/// When a deactivated practice's data is purged (Unix ms), from when it was deactivated.
pub fn purge_due(state: &AppState, deactivated_at: i64) -> i64 {
    deactivated_at + state.settings.purge_grace.as_millis() as i64
}

/// Purges every practice deactivated for longer than the grace; answers the practices purged.
/// Several instances may run it at once: a purge deletes, so the second finds nothing left.
pub async fn purge_expired(state: &AppState) -> Result<Vec<String>, sqlx::Error> {
    let before = now_ms() - state.settings.purge_grace.as_millis() as i64;
    let due: Vec<String> = sqlx::query_scalar(
        "SELECT practice_id FROM hint_installations WHERE product_id = $1 AND status = 'deactivated' \
         AND updated_at < $2",
    )
    .bind(&state.settings.hint.product_id)
    .bind(before)
    .fetch_all(state.db.reader())
    .await?;
    let tables = state.partners.practice_tables();
    let mut purged = Vec::new();
    for practice in due {
        let Ok(practice_id) = ExternalId::parse(&practice) else {
            continue;
        };
        let deleted = crate::tenancy::purge(&state.db, &practice_id, &tables).await?;
        let rows: u64 = deleted.iter().map(|(_, n)| n).sum();
        tracing::info!(practice_id = %practice_id, rows, "deactivated practice purged after its grace");
        purged.push(practice);
    }
    Ok(purged)
}

/// Looks for practices past their grace every hour until `stop` turns true.
pub async fn purge_periodically(state: AppState, mut stop: watch::Receiver<bool>) {
    let mut every = tokio::time::interval(LOOK_EVERY);
    // The first look an hour after start, not at it: what is due waits an hour at most either
    // way, and nothing races what a starting instance (or a test) does in its first moments.
    every.tick().await;
    loop {
        tokio::select! {
            _ = every.tick() => {
                if let Err(e) = purge_expired(&state).await {
                    tracing::warn!(error = %e, "purging deactivated practices failed");
                }
                match crate::hint::webhooks::forget_old_events(&state.db).await {
                    Ok(0) => {}
                    Ok(n) => tracing::info!(events = n, "Hint event ids past the retry window forgotten"),
                    Err(e) => tracing::warn!(error = %e, "forgetting old Hint event ids failed"),
                }
            }
            changed = stop.changed() => {
                if changed.is_err() || *stop.borrow() {
                    return;
                }
            }
        }
    }
}
