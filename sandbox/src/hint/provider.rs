//! The Provider API's gate (tokens, rate limit, faults) and its paging, shared by its endpoints.

use std::{
    collections::HashMap,
    time::{Duration, Instant},
};

use axum::{
    Json,
    http::{HeaderMap, StatusCode},
    response::{IntoResponse, Response},
};
use serde_json::Value;

use super::{SandboxHint, world::AfterWrite};
use crate::hint_error;

/// Authenticates a Provider API call and applies rate limit and faults. Answers the practice.
pub(super) async fn provider_gate(
    sandbox: &SandboxHint,
    headers: &HeaderMap,
    what: String,
    write: bool,
) -> Result<(String, AfterWrite), Response> {
    let token = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .ok_or_else(|| hint_error(StatusCode::UNAUTHORIZED, "Missing bearer token"))?
        .to_string();
    if token == sandbox.config.partner_api_key {
        return Err(hint_error(
            StatusCode::PRECONDITION_REQUIRED,
            "The partner API key cannot call the Provider API; use the practice's access token",
        ));
    }
    let (practice_id, hang, after_write) = {
        let mut world = sandbox.world();
        let practice_id = match world.practice_tokens.get(&token) {
            Some(p) if world.inactive_integrations.contains(p) => {
                return Err(hint_error(
                    StatusCode::FORBIDDEN,
                    "The integration is not active for this practice",
                ));
            }
            Some(p) => p.clone(),
            None => match world.access_tokens.get(&token) {
                Some((p, expires)) if *expires > Instant::now() => p.clone(),
                _ => {
                    return Err(hint_error(
                        StatusCode::UNAUTHORIZED,
                        "Invalid or expired access token",
                    ));
                }
            },
        };
        let limit = world.rate_limit_per_second;
        let now = Instant::now();
        let calls = world.calls.entry(token).or_default();
        while calls
            .front()
            .is_some_and(|t| now.duration_since(*t) > Duration::from_secs(1))
        {
            calls.pop_front();
        }
        if calls.len() >= limit {
            world.rate_limited += 1;
            return Err(hint_error(
                StatusCode::TOO_MANY_REQUESTS,
                "Enhance your calm",
            ));
        }
        calls.push_back(now);
        if world.faults.patients_down && !what.contains("/interactions") {
            return Err(hint_error(
                StatusCode::SERVICE_UNAVAILABLE,
                "Service unavailable",
            ));
        }
        let what_is_interaction = what.contains("/interactions");
        let faulty = what.contains("/interactions/")
            && world
                .faults
                .only_practice
                .as_ref()
                .is_none_or(|p| *p == practice_id);
        world.requests.push(what);
        if !faulty {
            let hang = world
                .faults
                .patients_hang_for
                .filter(|_| !what_is_interaction);
            (practice_id, hang, AfterWrite::default())
        } else {
            let by_chance = |ratio: f64| ratio > 0.0 && rand::random::<f64>() < ratio;
            if world.faults.fail_next > 0 || by_chance(world.faults.fail_ratio) {
                world.faults.fail_next = world.faults.fail_next.saturating_sub(1);
                return Err(hint_error(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "Internal server error",
                ));
            }
            let after = if write {
                AfterWrite {
                    hang: world.faults.hang_after_write_for,
                    lose: by_chance(world.faults.lose_answer_ratio),
                }
            } else {
                AfterWrite::default()
            };
            (practice_id, world.faults.hang_for, after)
        }
    };
    if let Some(hang) = hang {
        tokio::time::sleep(hang).await;
    }
    Ok((practice_id, after_write))
}

/// `limit` (1..=100, default 25) and `offset` (default 0), refusing anything else malformed.
pub(super) fn paging(query: &HashMap<String, String>) -> Result<(usize, usize), Response> {
    let limit = match query.get("limit") {
        None => 25,
        Some(v) => match v.parse::<usize>() {
            Ok(n) if (1..=100).contains(&n) => n,
            _ => {
                return Err(hint_error(
                    StatusCode::BAD_REQUEST,
                    "limit must be an integer from 1 to 100",
                ));
            }
        },
    };
    let offset = match query.get("offset") {
        None => 0,
        Some(v) => v.parse::<usize>().map_err(|_| {
            hint_error(
                StatusCode::BAD_REQUEST,
                "offset must be a non-negative integer",
            )
        })?,
    };
    Ok((limit, offset))
}

pub(super) fn refuse_unknown_params(
    query: &HashMap<String, String>,
    allowed: &[&str],
) -> Result<(), Response> {
    match query.keys().find(|k| !allowed.contains(&k.as_str())) {
        Some(k) => Err(hint_error(
            StatusCode::BAD_REQUEST,
            &format!("Unknown parameter {k}"),
        )),
        None => Ok(()),
    }
}

pub(super) fn page_response(all: Vec<Value>, limit: usize, offset: usize) -> Response {
    let total = all.len();
    let page: Vec<Value> = all.into_iter().skip(offset).take(limit).collect();
    counted_page(page, total)
}

/// One page of a list with Hint's count headers.
pub(super) fn counted_page(page: Vec<Value>, total: usize) -> Response {
    let count = page.len();
    (
        [
            ("x-count", count.to_string()),
            ("x-total-count", total.to_string()),
        ],
        Json(Value::Array(page)),
    )
        .into_response()
}
