//! One integration-test binary: the crate links once.

mod at_rest;
mod audit;
mod bursts;
mod chart_record;
mod connections;
mod figures;
mod going_live;
mod haidy_visit;
mod handshake;
mod hcw_visit;
mod helpers;
mod hint_events;
mod instances;
mod isolation;
mod logging;
mod mediquo;
mod netns;
mod operations;
mod outbound;
mod partner_health;
mod refusals;
mod registry;
mod resilience;
mod surfaces;
mod tiep_visit;
mod upstream;
