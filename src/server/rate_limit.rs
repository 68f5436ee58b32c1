//! Per-client rate limits on the doors anyone can knock on: the handshake, Instant On and the
//! webhooks. Each door has its own budget per client address (GCRA, `governor`); a client over
//! it gets 429 with `Retry-After` at once, never a queue, so a flood from one address costs
//! other clients nothing. Signed-in pages are not limited here (a session is needed first).
//!
//! What is budgeted is what an attacker can send. The handshake and the webhooks are posted by
//! Hint's and the partners' servers: a handful of addresses carry every practice's signed
//! traffic, which costs microseconds to verify. So at those doors only *refused* requests
//! (unsigned, forged, stale, replayed, malformed, unknown) spend the client's budget; a client
//! that spends it is answered 429 at that door, before anything is read, until it is whole
//! again. Instant On codes cannot be told real before Hint is asked, so every request there
//! spends it.
//!
//! `tower_governor` does the same for one quota per layer; one middleware that sorts requests
//! by door keeps the three budgets, the client address (trusted proxies) and the answer's
//! shape in one place.

use std::{
    collections::HashMap,
    net::IpAddr,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use axum::{
    Json,
    extract::{Request, State},
    http::{HeaderValue, StatusCode, header},
    middleware::Next,
    response::{IntoResponse, Response},
};
use governor::{
    DefaultKeyedRateLimiter, RateLimiter,
    clock::{Clock, DefaultClock},
};

use super::client_addr::{ClientAddr, counted_as};
pub use crate::config::{Budget, RateLimitSettings};
use crate::practice_limits::quota;

/// The doors.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Door {
    Handshake,
    Install,
    Webhooks,
}

impl Door {
    fn of(path: &str) -> Option<Door> {
        if path == "/hint/handshake" {
            Some(Door::Handshake)
        } else if path == "/hint/connect" || path.starts_with("/hint/connect/") {
            Some(Door::Install)
        } else if path.starts_with("/webhooks/") {
            Some(Door::Webhooks)
        } else {
            None
        }
    }
}

/// The limiters, shared by every request of this instance.
#[derive(Clone)]
pub struct RateLimits(Arc<Limiters>);

struct Limiters {
    handshake: DefaultKeyedRateLimiter<IpAddr>,
    install: DefaultKeyedRateLimiter<IpAddr>,
    webhooks: DefaultKeyedRateLimiter<IpAddr>,
    /// Clients that spent their budget of refusals at a door, until when.
    blocked: Mutex<HashMap<(Door, IpAddr), Instant>>,
}

impl RateLimits {
    pub fn new(settings: RateLimitSettings) -> Self {
        RateLimits(Arc::new(Limiters {
            handshake: RateLimiter::keyed(quota(settings.handshake)),
            install: RateLimiter::keyed(quota(settings.install)),
            webhooks: RateLimiter::keyed(quota(settings.webhooks)),
            blocked: Mutex::default(),
        }))
    }

    fn limiter(&self, door: Door) -> &DefaultKeyedRateLimiter<IpAddr> {
        match door {
            Door::Handshake => &self.0.handshake,
            Door::Install => &self.0.install,
            Door::Webhooks => &self.0.webhooks,
        }
    }

    /// `Err(wait)` when `client` is over its budget at `door`.
    fn check(&self, door: Door, client: IpAddr) -> Result<(), Duration> {
        self.limiter(door)
            .check_key(&counted_as(client))
            .map_err(|not_until| not_until.wait_time_from(DefaultClock::default().now()))
    }

    /// How long `client` still waits at `door` after spending its refusals.
    fn blocked(&self, door: Door, client: IpAddr) -> Option<Duration> {
        let mut blocked = self.0.blocked.lock().expect("blocked clients");
        let key = (door, counted_as(client));
        let until = *blocked.get(&key)?;
        match until.checked_duration_since(Instant::now()) {
            Some(wait) if !wait.is_zero() => Some(wait),
            _ => {
                blocked.remove(&key);
                None
            }
        }
    }

    /// Counts a refused request of `client` at `door`; `Err(wait)` when that spent its budget
    /// (the client then waits before anything more is read from it there).
    fn refused(&self, door: Door, client: IpAddr) -> Result<(), Duration> {
        self.check(door, client).inspect_err(|wait| {
            self.0
                .blocked
                .lock()
                .expect("blocked clients")
                .insert((door, counted_as(client)), Instant::now() + *wait);
        })
    }

    /// Forgets clients whose budget is whole again (memory stays bounded by recent clients).
    pub fn forget_idle(&self) {
        for door in [Door::Handshake, Door::Install, Door::Webhooks] {
            let limiter = self.limiter(door);
            limiter.retain_recent();
            limiter.shrink_to_fit();
        }
        let now = Instant::now();
        self.0
            .blocked
            .lock()
            .expect("blocked clients")
            .retain(|_, until| *until > now);
    }
}

/// The middleware: at Instant On every request spends the client's budget; at the handshake
/// and the webhooks only refused ones do. Over budget: 429.
pub async fn limit(State(limits): State<RateLimits>, request: Request, next: Next) -> Response {
    let (Some(door), Some(client)) = (Door::of(request.uri().path()), ClientAddr::of(&request))
    else {
        return next.run(request).await;
    };
    if door == Door::Install {
        return match limits.check(door, client) {
            Ok(()) => next.run(request).await,
            Err(wait) => {
                tracing::debug!(?door, "over the rate limit");
                too_many(wait)
            }
        };
    }
    if let Some(wait) = limits.blocked(door, client) {
        return too_many(wait);
    }
    let response = next.run(request).await;
    if is_refusal(response.status())
        && let Err(wait) = limits.refused(door, client)
    {
        // Refused either way (nothing was done): the answer says when to come back.
        tracing::debug!(?door, "refusals over the rate limit");
        return too_many(wait);
    }
    response
}

/// An answer that refused what the client sent (a signed, well-formed request is never one).
fn is_refusal(status: StatusCode) -> bool {
    status.is_client_error()
        && !matches!(
            status,
            StatusCode::TOO_MANY_REQUESTS | StatusCode::CONFLICT | StatusCode::REQUEST_TIMEOUT
        )
}

fn too_many(wait: Duration) -> Response {
    let seconds = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    let seconds = seconds.max(1);
    let mut response = (
        StatusCode::TOO_MANY_REQUESTS,
        Json(serde_json::json!({
            "error": format!("too many requests; try again in {seconds} s")
        })),
    )
        .into_response();
    response.headers_mut().insert(
        header::RETRY_AFTER,
        HeaderValue::from_str(&seconds.to_string()).expect("digits"),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_sorted_by_door() {
        assert_eq!(Door::of("/hint/handshake"), Some(Door::Handshake));
        assert_eq!(Door::of("/hint/connect"), Some(Door::Install));
        assert_eq!(Door::of("/hint/connect/abc"), Some(Door::Install));
        assert_eq!(Door::of("/webhooks/hint"), Some(Door::Webhooks));
        assert_eq!(Door::of("/webhooks/tiep/pra-1"), Some(Door::Webhooks));
        assert_eq!(Door::of("/hint/connections"), None);
        assert_eq!(Door::of("/hint/core_page"), None);
    }

    #[test]
    fn refusals_spend_the_budget_and_block_the_client_at_that_door_only() {
        let limits = RateLimits::new(RateLimitSettings {
            handshake: Budget {
                per_minute: 6,
                burst: 2,
            },
            ..RateLimitSettings::default()
        });
        let a: IpAddr = "198.51.100.1".parse().unwrap();
        assert!(limits.blocked(Door::Handshake, a).is_none());
        assert!(limits.refused(Door::Handshake, a).is_ok());
        assert!(limits.refused(Door::Handshake, a).is_ok());
        let wait = limits.refused(Door::Handshake, a).unwrap_err();
        let blocked = limits.blocked(Door::Handshake, a).expect("blocked");
        assert!(blocked <= wait && blocked > Duration::from_secs(5));
        assert!(limits.blocked(Door::Webhooks, a).is_none(), "another door");
        assert!(is_refusal(StatusCode::UNAUTHORIZED) && is_refusal(StatusCode::NOT_FOUND));
        assert!(!is_refusal(StatusCode::OK) && !is_refusal(StatusCode::TOO_MANY_REQUESTS));
        assert!(!is_refusal(StatusCode::SERVICE_UNAVAILABLE));
    }

    #[test]
    fn a_client_over_its_budget_waits_and_others_do_not() {
        let limits = RateLimits::new(RateLimitSettings {
            install: Budget {
                per_minute: 6,
                burst: 2,
            },
            ..RateLimitSettings::default()
        });
        let a: IpAddr = "198.51.100.1".parse().unwrap();
        let b: IpAddr = "198.51.100.2".parse().unwrap();
        assert!(limits.check(Door::Install, a).is_ok());
        assert!(limits.check(Door::Install, a).is_ok());
        let wait = limits.check(Door::Install, a).unwrap_err();
        assert!(wait > Duration::from_secs(5) && wait <= Duration::from_secs(10));
        assert!(limits.check(Door::Install, b).is_ok(), "another client");
        assert!(limits.check(Door::Handshake, a).is_ok(), "another door");
        assert_eq!(
            too_many(wait).headers()[header::RETRY_AFTER]
                .to_str()
                .unwrap()
                .parse::<u64>()
                .unwrap(),
            wait.as_secs() + 1
        );
    }
}
