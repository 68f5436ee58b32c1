//! Partner health: for each practice and partner, when a call to the partner last worked,
//! when one last failed and why, and since when it has been failing. Recorded where a partner
//! is called (a launch, a poll, a signed delivery, a connection test from the settings page)
//! and shown to the admin on the settings page at a glance.
//!
//! The reason is in our words (the party and what went wrong: "Haidy refused Chartbridge's
//! credentials (HTTP 401)"), never the partner's own text, which can quote a patient. A
//! refusal of one request (a 400 about a patient's email) says the partner answered: the
//! connection works. A signed delivery on the hot webhook path is written at most once a
//! minute per instance ([`Recent`]).

use std::{
    collections::HashMap,
    sync::Mutex,
    time::{Duration, Instant},
};

use reqwest::StatusCode;
use sqlx::Row;

use super::PartnerId;
use crate::{
    db::{Moment, now_ms},
    error::{AppError, BoxError},
    jobs::JobError,
    tenancy::PracticeId,
    upstream::UpstreamError,
    visits::AppState,
};

/// What one call said about the connection to a partner.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Observation {
    /// The partner answered and accepted our credentials.
    Worked,
    /// The partner could not be used; why, in our words.
    Failed(String),
}

impl Observation {
    /// What `error` says about the connection, if anything: `None` when it is not about the
    /// partner (our database, a request that was never made).
    pub fn of_error(error: &(dyn std::error::Error + 'static)) -> Option<Self> {
        let upstream = find_upstream(error)?;
        Some(match upstream {
            UpstreamError::Status { party, status, .. } => match *status {
                StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => Observation::Failed(format!(
                    "{party} refused Chartbridge's credentials (HTTP {})",
                    status.as_u16()
                )),
                StatusCode::TOO_MANY_REQUESTS => Observation::Failed(format!(
                    "{party} asked Chartbridge to slow down (HTTP 429)"
                )),
                s if s.is_client_error() => Observation::Worked,
                s if s.is_success() => Observation::Failed(format!(
                    "{party} answered without what Chartbridge asked for"
                )),
                s => Observation::Failed(format!("{party} failed (HTTP {})", s.as_u16())),
            },
            UpstreamError::Timeout { party, .. } | UpstreamError::Unreachable { party, .. } => {
                Observation::Failed(format!("{party} could not be reached"))
            }
            UpstreamError::Unexpected { party, .. } => Observation::Failed(format!(
                "{party} answered in a form Chartbridge cannot read"
            )),
            // Our own limit held the call back: it says nothing of the partner.
            UpstreamError::Busy { .. } => return None,
            UpstreamError::Refused { party, .. } => {
                Observation::Failed(format!("{party}'s address is not one Chartbridge may call"))
            }
        })
    }

    /// What a failed job says about the connection.
    pub fn of_job_error(error: &JobError) -> Option<Self> {
        let (JobError::Transient(cause) | JobError::Permanent(cause)) = error;
        Self::of_boxed(cause)
    }

    pub fn of_boxed(error: &BoxError) -> Option<Self> {
        let error: &(dyn std::error::Error + 'static) = &**error;
        Self::of_error(error)
    }
}

/// The first [`UpstreamError`] in `error`'s chain.
fn find_upstream<'a>(error: &'a (dyn std::error::Error + 'static)) -> Option<&'a UpstreamError> {
    let mut next = Some(error);
    while let Some(e) = next {
        if let Some(upstream) = e.downcast_ref::<UpstreamError>() {
            return Some(upstream);
        }
        next = e.source();
    }
    None
}

/// Records what a call to `partner` said. Never fails the caller: a health row that cannot be
/// written is logged and the work goes on.
pub async fn record(
    app: &AppState,
    practice_id: &PracticeId,
    partner: PartnerId,
    observation: &Observation,
) {
    if let Err(e) = write(app, practice_id, partner, observation).await {
        tracing::warn!(%practice_id, %partner, error = %e, "partner health not recorded");
    }
}

/// Records a signed delivery from `partner` (the webhook path): at most once a minute per
/// practice and partner on this instance.
pub async fn record_delivery(app: &AppState, practice_id: &PracticeId, partner: PartnerId) {
    if app.health_recent.fresh(practice_id, partner) {
        return;
    }
    record(app, practice_id, partner, &Observation::Worked).await;
}

async fn write(
    app: &AppState,
    practice_id: &PracticeId,
    partner: PartnerId,
    observation: &Observation,
) -> Result<(), sqlx::Error> {
    let now = now_ms();
    match observation {
        Observation::Worked => {
            sqlx::query(
                "INSERT INTO partner_health (practice_id, partner, last_success_at) VALUES ($1, $2, $3) \
                 ON CONFLICT (practice_id, partner) DO UPDATE SET \
                 last_success_at = excluded.last_success_at, failing_since = NULL",
            )
            .bind(practice_id)
            .bind(partner.as_str())
            .bind(now)
            .execute(app.db.writer())
            .await?;
            app.health_recent.mark(practice_id, partner);
        }
        Observation::Failed(reason) => {
            let reason: String = reason.chars().take(300).collect();
            sqlx::query(
                "INSERT INTO partner_health (practice_id, partner, last_failure_at, last_failure, failing_since) \
                 VALUES ($1, $2, $3, $4, $3) \
                 ON CONFLICT (practice_id, partner) DO UPDATE SET \
                 last_failure_at = excluded.last_failure_at, last_failure = excluded.last_failure, \
                 failing_since = COALESCE(partner_health.failing_since, excluded.failing_since)",
            )
            .bind(practice_id)
            .bind(partner.as_str())
            .bind(now)
            .bind(reason)
            .execute(app.db.writer())
            .await?;
            app.health_recent.forget(practice_id, partner);
        }
    }
    Ok(())
}

/// A practice's connection to one partner, as the settings page shows it.
#[derive(Debug, Clone, Default)]
pub struct Health {
    pub last_success: Option<Moment>,
    pub last_failure: Option<Moment>,
    pub last_failure_reason: Option<String>,
    /// Set while the latest call failed: since when calls have been failing.
    pub failing_since: Option<Moment>,
    /// Polls for this partner's open visits that failed and wait to be tried again.
    pub pending_retries: i64,
    /// Polls that ran out of attempts (on the core page's *Needs attention*).
    pub stopped: i64,
}

/// Where a connection stands, at a glance.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HealthStatus {
    /// Not set up in Chartbridge.
    NotSetUp,
    /// Set up; nothing has been asked of the partner yet.
    NeverUsed,
    /// The latest call worked.
    Connected,
    /// The latest call failed.
    Failing,
}

impl Health {
    pub fn status(&self, configured: bool) -> HealthStatus {
        if !configured {
            HealthStatus::NotSetUp
        } else if self.failing_since.is_some() {
            HealthStatus::Failing
        } else if self.last_success.is_some() {
            HealthStatus::Connected
        } else {
            HealthStatus::NeverUsed
        }
    }
}

impl HealthStatus {
    /// A short label and a CSS class.
    pub fn label(self) -> &'static str {
        match self {
            HealthStatus::NotSetUp => "Not set up",
            HealthStatus::NeverUsed => "Never used",
            HealthStatus::Connected => "Connected",
            HealthStatus::Failing => "Failing",
        }
    }

    pub fn class(self) -> &'static str {
        match self {
            HealthStatus::NotSetUp | HealthStatus::NeverUsed => "status-idle",
            HealthStatus::Connected => "status-ok",
            HealthStatus::Failing => "status-failing",
        }
    }
}

/// This practice's health of `partner`.
pub async fn load(
    app: &AppState,
    practice_id: &PracticeId,
    partner: PartnerId,
) -> Result<Health, AppError> {
    let row = sqlx::query(
        "SELECT last_success_at, last_failure_at, last_failure, failing_since FROM partner_health \
         WHERE practice_id = $1 AND partner = $2",
    )
    .bind(practice_id)
    .bind(partner.as_str())
    .fetch_optional(app.db.reader())
    .await?;
    let mut health = Health::default();
    if let Some(row) = row {
        let moment = |column: &str| -> Result<Option<Moment>, sqlx::Error> {
            Ok(row.try_get::<Option<i64>, _>(column)?.map(Moment))
        };
        health.last_success = moment("last_success_at")?;
        health.last_failure = moment("last_failure_at")?;
        health.failing_since = moment("failing_since")?;
        health.last_failure_reason = row.try_get("last_failure")?;
    }
    // A poll job's key is `poll_partner:{visit id}` (`PollPartner`).
    let row = sqlx::query(
        "SELECT \
           COALESCE(SUM(CASE WHEN j.state = 'queued' THEN 1 ELSE 0 END), 0) AS pending, \
           COALESCE(SUM(CASE WHEN j.state = 'dead' THEN 1 ELSE 0 END), 0) AS stopped \
         FROM jobs j JOIN visits v ON v.practice_id = j.practice_id AND j.dedupe_key = 'poll_partner:' || v.id \
         WHERE j.practice_id = $1 AND v.partner = $2 AND j.kind = 'poll_partner' AND j.attempts > 0",
    )
    .bind(practice_id)
    .bind(partner.as_str())
    .fetch_one(app.db.reader())
    .await?;
    health.pending_retries = row.try_get("pending")?;
    health.stopped = row.try_get("stopped")?;
    Ok(health)
}

/// Which (practice, partner) pairs this instance wrote a success for lately, so a stream of
/// signed deliveries writes one row a minute, not one per delivery.
#[derive(Debug, Default)]
pub struct Recent(Mutex<HashMap<(String, PartnerId), Instant>>);

const RECENT_FOR: Duration = Duration::from_secs(60);

impl Recent {
    fn fresh(&self, practice_id: &PracticeId, partner: PartnerId) -> bool {
        let map = self.0.lock().expect("health memo");
        map.get(&(practice_id.as_str().to_string(), partner))
            .is_some_and(|at| at.elapsed() < RECENT_FOR)
    }

    fn mark(&self, practice_id: &PracticeId, partner: PartnerId) {
        let mut map = self.0.lock().expect("health memo");
        if map.len() > 10_000 {
            map.retain(|_, at| at.elapsed() < RECENT_FOR);
        }
        map.insert((practice_id.as_str().to_string(), partner), Instant::now());
    }

    fn forget(&self, practice_id: &PracticeId, partner: PartnerId) {
        let mut map = self.0.lock().expect("health memo");
        map.remove(&(practice_id.as_str().to_string(), partner));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(code: u16) -> UpstreamError {
        UpstreamError::Status {
            party: "Haidy",
            status: StatusCode::from_u16(code).unwrap(),
            messages: vec!["Patient Ava Thompson unknown".into()],
        }
    }

    #[test]
    fn credentials_refused_server_errors_and_rate_limits_are_failures_in_our_words() {
        for (code, words) in [
            (401, "Haidy refused Chartbridge's credentials (HTTP 401)"),
            (403, "Haidy refused Chartbridge's credentials (HTTP 403)"),
            (429, "Haidy asked Chartbridge to slow down (HTTP 429)"),
            (502, "Haidy failed (HTTP 502)"),
        ] {
            assert_eq!(
                Observation::of_error(&status(code)),
                Some(Observation::Failed(words.into()))
            );
        }
    }

    #[test]
    fn a_refusal_of_one_request_says_the_partner_answered() {
        for code in [400, 404, 409, 422] {
            assert_eq!(
                Observation::of_error(&status(code)),
                Some(Observation::Worked)
            );
        }
    }

    #[test]
    fn the_partner_is_found_deep_in_a_chain_and_its_words_are_never_kept() {
        let partner = crate::visits::PartnerError::Unavailable {
            message: "Haidy failed".into(),
            source: Box::new(status(500)),
        };
        let job = JobError::transient(partner);
        let Some(Observation::Failed(words)) = Observation::of_job_error(&job) else {
            panic!("a failure");
        };
        assert!(!words.contains("Thompson"));
        assert_eq!(
            Observation::of_error(&sqlx::Error::RowNotFound),
            None,
            "our own failure says nothing of the partner"
        );
    }
}
