//! Signed traffic per practice. The per-address budgets (`server::rate_limit`) spend only on
//! refused requests, because Hint's and the partners' servers carry every practice's valid
//! signed traffic from a few addresses. What is left to budget is valid signed traffic that is
//! not what a practice sends: a leaked secret, or a sender in a loop. Each practice has its own
//! budget at the handshake and at the webhooks (GCRA, per instance), far above any practice's
//! own rate: over it, that practice is answered 429 with `Retry-After` until it is back under
//! (Hint and the partners send again after a 429), and every other practice goes on as before.

use std::{
    collections::HashMap,
    num::NonZeroU32,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use governor::{
    DefaultKeyedRateLimiter, Quota, RateLimiter,
    clock::{Clock, DefaultClock},
};

use crate::{
    config::{Budget, RateLimitSettings},
    error::AppError,
};

/// The GCRA quota of a budget.
pub fn quota(budget: Budget) -> Quota {
    let per_minute = NonZeroU32::new(budget.per_minute.max(1)).expect("at least one");
    let burst = NonZeroU32::new(budget.burst.max(1)).expect("at least one");
    Quota::per_minute(per_minute).allow_burst(burst)
}

/// Where signed traffic arrives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signed {
    Handshake,
    Webhooks,
}

/// The practices' budgets (cheap to clone).
#[derive(Clone)]
pub struct PracticeLimits(Arc<Limits>);

struct Limits {
    handshake: DefaultKeyedRateLimiter<String>,
    webhooks: DefaultKeyedRateLimiter<String>,
    /// When each practice over its budget was last logged (once a minute at most).
    logged: Mutex<HashMap<String, Instant>>,
}

impl std::fmt::Debug for PracticeLimits {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PracticeLimits")
    }
}

impl PracticeLimits {
    pub fn new(settings: &RateLimitSettings) -> Self {
        Self(Arc::new(Limits {
            handshake: RateLimiter::dashmap(quota(settings.practice_handshake)),
            webhooks: RateLimiter::dashmap(quota(settings.practice_webhooks)),
            logged: Mutex::default(),
        }))
    }

    /// Spends one of `practice_id`'s requests at `door`; over its budget: `TooMany` with the
    /// wait.
    pub fn spend(&self, door: Signed, practice_id: &str) -> Result<(), AppError> {
        let limiter = match door {
            Signed::Handshake => &self.0.handshake,
            Signed::Webhooks => &self.0.webhooks,
        };
        let Err(not_until) = limiter.check_key(&practice_id.to_string()) else {
            return Ok(());
        };
        let wait = not_until.wait_time_from(DefaultClock::default().now());
        let now = Instant::now();
        let mut logged = self.0.logged.lock().expect("logged practices");
        let recently = logged
            .get(practice_id)
            .is_some_and(|at| now.duration_since(*at) < Duration::from_secs(60));
        if !recently {
            logged.insert(practice_id.to_string(), now);
            tracing::warn!(
                %practice_id,
                ?door,
                "a practice's valid signed traffic is over its budget (a leaked secret, or a sender in a loop?); answering 429"
            );
        }
        Err(AppError::TooMany { wait })
    }

    /// Forgets practices not seen lately (run every minute).
    pub fn forget_idle(&self) {
        for limiter in [&self.0.handshake, &self.0.webhooks] {
            limiter.retain_recent();
            limiter.shrink_to_fit();
        }
        let now = Instant::now();
        self.0
            .logged
            .lock()
            .expect("logged practices")
            .retain(|_, at| now.duration_since(*at) < Duration::from_secs(60));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_practice_over_its_budget_waits_and_the_others_do_not() {
        let settings = RateLimitSettings {
            practice_handshake: Budget {
                per_minute: 60,
                burst: 2,
            },
            ..RateLimitSettings::default()
        };
        let limits = PracticeLimits::new(&settings);
        assert!(limits.spend(Signed::Handshake, "pra-1").is_ok());
        assert!(limits.spend(Signed::Handshake, "pra-1").is_ok());
        match limits.spend(Signed::Handshake, "pra-1") {
            Err(AppError::TooMany { wait }) => assert!(wait <= Duration::from_secs(1)),
            other => panic!("{other:?}"),
        }
        assert!(limits.spend(Signed::Handshake, "pra-2").is_ok());
        // The webhooks' budget is its own.
        assert!(limits.spend(Signed::Webhooks, "pra-1").is_ok());
    }
}
