//! `spawn_app()`: a fresh database (SQLite, or PostgreSQL with `TEST_DATABASE_URL`), sandbox
//! Hint and the four sandbox partners on their own loopback sockets, and the real app built by
//! `Application::build` on port 0. The job queue runs when a test says so (`run_jobs`).
//! Pages are read parsed (`Page`). Quiet unless `TEST_LOG`.
//!
//! Along its seams: `spawn` (settings, `spawn_app`, `TestApp`), `logs` (what the app logs,
//! captured), `lifecycle` (the CLI, restarts, more instances), `database` (the test's own
//! database and the rows tests read), `practice` (practices, handshakes, sessions), `http`
//! (requests, `Page`), `partners` (set-up, launches, webhooks) and `jobs` (the queue, waiting).

mod database;
mod http;
mod jobs;
mod lifecycle;
mod logs;
mod partners;
mod practice;
mod spawn;

pub use database::{TestDatabase, restored_copy, stored_result};
pub use http::{Page, client_from};
pub use jobs::eventually;
pub use logs::{CAPTURED, CAPTURING};
pub use practice::{TestPractice, now_rfc3339, sign};
pub use spawn::{Config, Dns, TestApp, spawn_app, spawn_app_with};

/// Reads `/metrics` of a test app.
pub const METRICS_TOKEN: &str = "test-metrics-token-0001";
pub const WEBHOOK_SECRET: &str = "test-hint-webhook-secret-000001";
pub const PARTNER_API_KEY: &str = "test-partner-api-key";
pub const PRODUCT_ID: &str = "ppro-chartbridge-test";
pub const TIEP_HOOK_SECRET: &str = chartbridge_sandbox::tiep::HOOK_SECRET;
pub const MEDIQUO_SIGNATURE: &str = chartbridge_sandbox::mediquo::SIGNATURE;
pub const HCW_SSO_SECRET: &str = chartbridge_sandbox::hcw::SSO_SECRET;
