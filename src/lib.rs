//! Chartbridge: a Hint marketplace partner app.
//!
//! Hint embeds the app in an iframe (`hint`), the clinician launches a partner tool for a patient
//! (`partners`), every launch is a `visits::Visit` whose state is written back to the Hint chart
//! through the durable `jobs` queue, and `surfaces` renders the pages Hint frames.
//! The strict fakes of Hint and the partners live in their own crate (`sandbox/`), used by the
//! demo (`demo/`) and the tests, never by this one.

pub mod audit;
pub mod backoff;
pub mod caller;
pub mod config;
pub mod crypto;
pub mod db;
pub mod error;
pub mod group_commit;
pub mod hint;
pub mod ids;
pub mod jobs;
pub mod metrics;
pub mod partners;
pub mod practice_limits;
pub mod retention;
pub mod rotation;
pub mod server;
pub mod startup;
pub mod surfaces;
pub mod telemetry;
pub mod tenancy;
pub mod upstream;
pub mod visits;

pub use config::Settings;
pub use startup::Application;
pub use visits::AppState;
