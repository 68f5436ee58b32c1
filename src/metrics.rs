//! Prometheus metrics for operators: HTTP by route and status, Hint calls by practice budget
//! and outcome (429s among them), webhook outcomes, and, read at scrape time, the job queue.
//!
//! Served at `GET /metrics` (`server::observe`) to a caller holding `CHARTBRIDGE_METRICS_TOKEN`
//! (bearer); without a configured token the endpoint does not exist. Labels are routes, statuses and practice
//! ids (Hint's opaque ids, the budget's key), never a path, a query or anything about a patient.

use std::{
    collections::{BTreeMap, HashMap},
    fmt::Write as _,
    sync::{Arc, Mutex},
    time::Duration,
};

use reqwest::StatusCode;

use crate::upstream::UpstreamError;

/// Upper bounds (seconds) of the request-duration histogram's buckets.
const BUCKETS: [f64; 11] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0,
];

/// The process's counters. Cheap to clone (shared).
#[derive(Clone, Default, Debug)]
pub struct Metrics(Arc<Mutex<Counters>>);

#[derive(Default, Debug)]
struct Counters {
    /// route → (method, status) → durations (looked up by the route without allocating).
    http: HashMap<String, BTreeMap<(String, u16), Histogram>>,
    /// (budget, outcome) → calls.
    hint_calls: BTreeMap<(String, &'static str), u64>,
    /// (source, outcome) → deliveries.
    webhooks: BTreeMap<(String, &'static str), u64>,
}

#[derive(Default, Debug)]
struct Histogram {
    /// Per bucket of [`BUCKETS`] (not cumulative), then the overflow.
    counts: [u64; BUCKETS.len() + 1],
    sum: f64,
}

impl Histogram {
    fn observe(&mut self, seconds: f64) {
        let bucket = BUCKETS
            .iter()
            .position(|le| seconds <= *le)
            .unwrap_or(BUCKETS.len());
        self.counts[bucket] += 1;
        self.sum += seconds;
    }
}

/// How a call to Hint ended, as the budget sees it.
pub fn hint_outcome(result: &Result<reqwest::Response, UpstreamError>) -> &'static str {
    match result {
        Ok(_) => "ok",
        Err(UpstreamError::Status { status, .. }) if *status == StatusCode::TOO_MANY_REQUESTS => {
            "rate_limited"
        }
        Err(UpstreamError::Status { status, .. }) if status.is_server_error() => "server_error",
        Err(UpstreamError::Status { .. }) => "refused",
        Err(UpstreamError::Timeout { .. }) => "timeout",
        Err(_) => "unreachable",
    }
}

/// What the job queue holds, read when scraped.
#[derive(Debug, Default)]
pub struct QueueFigures {
    /// (kind, state) → jobs.
    pub jobs: Vec<(String, String, i64)>,
    /// Whether this instance's job runner is running and recently looked for work.
    pub runner_up: bool,
    /// Partners' results acknowledged in a burst and not filed yet (all instances).
    pub result_receipts: i64,
}

impl Metrics {
    fn counters(&self) -> std::sync::MutexGuard<'_, Counters> {
        // A panic while counting leaves numbers, never a broken invariant: keep counting.
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn observe_http(&self, method: &str, route: &str, status: u16, took: Duration) {
        let mut counters = self.counters();
        let by_route = match counters.http.get_mut(route) {
            Some(by_route) => by_route,
            None => counters.http.entry(route.to_string()).or_default(),
        };
        match by_route
            .iter_mut()
            .find(|((m, s), _)| m == method && *s == status)
        {
            Some((_, histogram)) => histogram.observe(took.as_secs_f64()),
            None => by_route
                .entry((method.to_string(), status))
                .or_default()
                .observe(took.as_secs_f64()),
        }
        if let Some(source) = route.strip_prefix("/webhooks/") {
            let source = source.split('/').next().unwrap_or(source).to_string();
            let outcome = match status {
                200..=299 => "accepted",
                401 | 403 => "refused",
                400 | 413 | 415 | 422 => "malformed",
                429 => "rate_limited",
                500..=599 => "failed",
                _ => "other",
            };
            *counters.webhooks.entry((source, outcome)).or_default() += 1;
        }
    }

    /// A call to Hint on `budget` (a practice id, or the Instant On exchanges) ended so.
    pub fn count_hint_call(&self, budget: &str, outcome: &'static str) {
        *self
            .counters()
            .hint_calls
            .entry((budget.to_string(), outcome))
            .or_default() += 1;
    }

    /// The text exposition format (version 0.0.4).
    pub fn render(&self, queue: &QueueFigures) -> String {
        let counters = self.counters();
        let mut out = String::new();
        out.push_str("# HELP chartbridge_http_request_duration_seconds Requests answered, by route and status.\n");
        out.push_str("# TYPE chartbridge_http_request_duration_seconds histogram\n");
        let mut routes: Vec<_> = counters.http.iter().collect();
        routes.sort_by_key(|(route, _)| route.as_str());
        let series = routes.into_iter().flat_map(|(route, by)| {
            by.iter()
                .map(move |((method, status), histogram)| (method, route, status, histogram))
        });
        for (method, route, status, histogram) in series {
            let labels = format!(
                "method=\"{}\",route=\"{}\",status=\"{status}\"",
                escape(method),
                escape(route)
            );
            let mut cumulative = 0;
            for (le, count) in BUCKETS.iter().zip(histogram.counts) {
                cumulative += count;
                let _ = writeln!(
                    out,
                    "chartbridge_http_request_duration_seconds_bucket{{{labels},le=\"{le}\"}} {cumulative}"
                );
            }
            let total: u64 = histogram.counts.iter().sum();
            let _ = writeln!(
                out,
                "chartbridge_http_request_duration_seconds_bucket{{{labels},le=\"+Inf\"}} {total}"
            );
            let _ = writeln!(
                out,
                "chartbridge_http_request_duration_seconds_sum{{{labels}}} {}",
                histogram.sum
            );
            let _ = writeln!(
                out,
                "chartbridge_http_request_duration_seconds_count{{{labels}}} {total}"
            );
        }
        out.push_str("# HELP chartbridge_hint_calls_total Calls to Hint by practice budget and outcome (rate_limited: Hint answered 429).\n");
        out.push_str("# TYPE chartbridge_hint_calls_total counter\n");
        for ((budget, outcome), n) in &counters.hint_calls {
            let _ = writeln!(
                out,
                "chartbridge_hint_calls_total{{budget=\"{}\",outcome=\"{outcome}\"}} {n}",
                escape(budget)
            );
        }
        out.push_str(
            "# HELP chartbridge_webhooks_total Webhook deliveries by source and outcome.\n",
        );
        out.push_str("# TYPE chartbridge_webhooks_total counter\n");
        for ((source, outcome), n) in &counters.webhooks {
            let _ = writeln!(
                out,
                "chartbridge_webhooks_total{{source=\"{}\",outcome=\"{outcome}\"}} {n}",
                escape(source)
            );
        }
        out.push_str("# HELP chartbridge_jobs Jobs in the queue (all instances) by kind and state; dead ones wait for a person.\n");
        out.push_str("# TYPE chartbridge_jobs gauge\n");
        for (kind, state, n) in &queue.jobs {
            let _ = writeln!(
                out,
                "chartbridge_jobs{{kind=\"{}\",state=\"{}\"}} {n}",
                escape(kind),
                escape(state)
            );
        }
        out.push_str(
            "# HELP chartbridge_job_runner_up Whether this instance's job runner is running.\n",
        );
        out.push_str("# TYPE chartbridge_job_runner_up gauge\n");
        let _ = writeln!(
            out,
            "chartbridge_job_runner_up {}",
            u8::from(queue.runner_up)
        );
        out.push_str("# HELP chartbridge_result_receipts Partners' results acknowledged in a burst and not filed yet (all instances).\n");
        out.push_str("# TYPE chartbridge_result_receipts gauge\n");
        let _ = writeln!(out, "chartbridge_result_receipts {}", queue.result_receipts);
        out
    }
}

/// A label value as the exposition format wants it.
fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_cumulative_buckets_and_escaped_labels() {
        let metrics = Metrics::default();
        metrics.observe_http("GET", "/hint/{surface}", 200, Duration::from_millis(3));
        metrics.observe_http("GET", "/hint/{surface}", 200, Duration::from_millis(30));
        metrics.observe_http("POST", "/webhooks/tiep/{practice_id}", 401, Duration::ZERO);
        metrics.count_hint_call("pra-\"x\"", "rate_limited");
        let text = metrics.render(&QueueFigures {
            jobs: vec![("sync_interaction".into(), "dead".into(), 2)],
            runner_up: true,
            result_receipts: 7,
        });
        for line in [
            "chartbridge_http_request_duration_seconds_bucket{method=\"GET\",route=\"/hint/{surface}\",status=\"200\",le=\"0.0025\"} 0",
            "chartbridge_http_request_duration_seconds_bucket{method=\"GET\",route=\"/hint/{surface}\",status=\"200\",le=\"0.005\"} 1",
            "chartbridge_http_request_duration_seconds_bucket{method=\"GET\",route=\"/hint/{surface}\",status=\"200\",le=\"0.05\"} 2",
            "chartbridge_http_request_duration_seconds_count{method=\"GET\",route=\"/hint/{surface}\",status=\"200\"} 2",
            "chartbridge_webhooks_total{source=\"tiep\",outcome=\"refused\"} 1",
            "chartbridge_hint_calls_total{budget=\"pra-\\\"x\\\"\",outcome=\"rate_limited\"} 1",
            "chartbridge_jobs{kind=\"sync_interaction\",state=\"dead\"} 2",
            "chartbridge_job_runner_up 1",
            "chartbridge_result_receipts 7",
        ] {
            assert!(text.lines().any(|l| l == line), "missing {line}\n{text}");
        }
    }
}
