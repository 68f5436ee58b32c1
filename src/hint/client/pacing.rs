//! How calls to Hint are held to the practice's budget: at most
//! `max_concurrency_per_practice` in flight (here and, with several instances, in the shared
//! budget), paced to `requests_per_second` in any one-second window, 429s retried in place with
//! doubling back-off, and failures retried in place when sending twice does no harm.

use std::{
    collections::VecDeque,
    sync::{Arc, Mutex},
    time::Duration,
};

use reqwest::{RequestBuilder, StatusCode};
use tokio::{sync::Semaphore, time::Instant};

use super::{HINT, HintClient, HintError};
use crate::{backoff::jittered, hint::budget::SharedBudget, metrics, upstream::UpstreamError};

impl HintClient {
    fn limit_for(&self, practice_id: &str) -> Arc<PracticeLimit> {
        let mut limits = self.practice_limits.lock().expect("limits lock");
        limits
            .entry(practice_id.to_string())
            .or_insert_with(|| {
                Arc::new(PracticeLimit {
                    in_flight: Semaphore::new(self.settings.max_concurrency_per_practice),
                    pace: Mutex::default(),
                })
            })
            .clone()
    }

    /// Sends a request built by `build`, holding a practice permit (here and, with several
    /// instances, in the shared budget), retrying 429s, and retrying failures when `repeat`
    /// says sending it twice does no harm.
    pub(super) async fn send(
        &self,
        practice_id: &str,
        repeat: Repeat,
        build: impl Fn() -> RequestBuilder,
    ) -> Result<reqwest::Response, HintError> {
        let settings = &self.settings;
        let busy = || UpstreamError::Busy { party: HINT };
        let waited = tokio::time::Instant::now();
        let limit = self.limit_for(practice_id);
        let _permit = tokio::time::timeout(settings.slot_wait, limit.in_flight.acquire())
            .await
            .map_err(|_| busy())?
            .expect("semaphore is never closed");
        let Some(shared) = &self.shared else {
            return self
                .attempts(practice_id, repeat, &limit, None, build)
                .await;
        };
        let wait = settings.slot_wait.saturating_sub(waited.elapsed());
        let slot = shared
            .take_slot(practice_id, settings.max_concurrency_per_practice, wait)
            .await
            .map_err(|e| budget_unavailable(&e))?
            .ok_or_else(busy)?;
        let answered = self
            .attempts(practice_id, repeat, &limit, Some(shared), build)
            .await;
        shared.release(slot).await;
        answered
    }

    /// Tries a call until it is answered, or until its retries are spent.
    async fn attempts(
        &self,
        practice_id: &str,
        repeat: Repeat,
        limit: &PracticeLimit,
        shared: Option<&SharedBudget>,
        build: impl Fn() -> RequestBuilder,
    ) -> Result<reqwest::Response, HintError> {
        let settings = &self.settings;
        let (mut limited, mut limited_wait) = (0, settings.rate_limit_backoff);
        let (mut failed, mut failed_wait) = (0, settings.failure_backoff);
        loop {
            limit.paced(settings.requests_per_second).await;
            if let Some(shared) = shared {
                let per_second = settings.requests_per_second.max(1.0).floor() as usize;
                shared
                    .pace(practice_id, per_second)
                    .await
                    .map_err(|e| budget_unavailable(&e))?;
            }
            let sent = self.upstream.send(HINT, build()).await;
            self.metrics
                .count_hint_call(practice_id, metrics::hint_outcome(&sent));
            let wait = match sent {
                Err(e)
                    if e.is_status(StatusCode::TOO_MANY_REQUESTS)
                        && limited < settings.rate_limit_retries =>
                {
                    limited += 1;
                    &mut limited_wait
                }
                Err(e)
                    if repeat == Repeat::Safe
                        && is_failure(&e)
                        && failed < settings.failure_retries =>
                {
                    failed += 1;
                    tracing::debug!(error = %e, attempt = failed, "retrying a Hint call in place");
                    &mut failed_wait
                }
                answered => return answered,
            };
            tokio::time::sleep(jittered(*wait)).await;
            *wait = wait.saturating_mul(2);
        }
    }
}

/// Whether a call may be sent again after a failure whose outcome is unknown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Repeat {
    /// Sending it twice is the same as once: reads, and patches to the same fields.
    Safe,
    /// A second one may do the work twice (a create, a code exchange): only a 429, which Hint
    /// answers before doing anything, is retried.
    Once,
}

/// The shared budget could not be read (the database is down): the call waits like a busy one.
fn budget_unavailable(e: &sqlx::Error) -> HintError {
    tracing::warn!(error = %e, "the shared Hint budget is unavailable");
    UpstreamError::Busy { party: HINT }
}

/// Hint failed or did not answer: worth trying again in a moment (a 429 has its own back-off).
fn is_failure(e: &HintError) -> bool {
    e.is_retryable()
        && !e.is_status(StatusCode::TOO_MANY_REQUESTS)
        && !matches!(e, UpstreamError::Busy { .. })
}

/// What a practice may have of Hint at once: calls in flight, and calls per second.
pub(super) struct PracticeLimit {
    in_flight: Semaphore,
    pace: Mutex<Pace>,
}

/// The calls sent in the last second: a call goes out only while fewer than the budget were
/// sent in the second before it, so no one-second window ever holds more than the budget (a
/// token bucket would let a full bucket out after a pause and as many again within the second).
#[derive(Default)]
struct Pace {
    sent: VecDeque<Instant>,
}

/// The window Hint counts its per-second budget over.
const PACE_WINDOW: Duration = Duration::from_secs(1);

impl PracticeLimit {
    /// Waits until a call may go out at `rate` per second (at least one).
    async fn paced(&self, rate: f64) {
        let budget = rate.max(1.0).floor() as usize;
        loop {
            let wait = {
                let mut pace = self.pace.lock().expect("pace lock");
                let now = Instant::now();
                while pace
                    .sent
                    .front()
                    .is_some_and(|at| now.duration_since(*at) >= PACE_WINDOW)
                {
                    pace.sent.pop_front();
                }
                if pace.sent.len() < budget {
                    pace.sent.push_back(now);
                    return;
                }
                PACE_WINDOW - now.duration_since(pace.sent[0])
            };
            tokio::time::sleep(wait).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn no_second_ever_holds_more_calls_than_the_budget() {
        let limit = Arc::new(PracticeLimit {
            in_flight: Semaphore::new(100),
            pace: Mutex::default(),
        });
        let start = Instant::now();
        let mut sent = Vec::new();
        // Two bursts of 30 calls 2.5 s apart: a token bucket would let the second through at
        // up to twice the budget in one second.
        for burst in 0..2 {
            let calls: Vec<_> = (0..30)
                .map(|_| {
                    let limit = limit.clone();
                    tokio::spawn(async move {
                        limit.paced(18.0).await;
                        Instant::now()
                    })
                })
                .collect();
            for call in calls {
                sent.push(call.await.unwrap());
            }
            if burst == 0 {
                tokio::time::sleep(Duration::from_millis(2500)).await;
            }
        }
        assert_eq!(sent.len(), 60);
        for from in &sent {
            let in_window = sent
                .iter()
                .filter(|at| **at >= *from && at.duration_since(*from) < PACE_WINDOW)
                .count();
            assert!(
                in_window <= 18,
                "{in_window} calls in the second from {:?}",
                from.duration_since(start)
            );
        }
    }
}
