//! The one typed state every handler and job gets.

use std::sync::Arc;

use crate::{
    config::Settings, crypto::SecretBox, db::Db, hint::HintClient, jobs::JobSignal,
    partners::tiep::TiepClient, visits::completion::Completions,
};

#[derive(Clone, Debug)]
pub struct AppState {
    pub settings: Arc<Settings>,
    pub db: Db,
    /// Seals and opens secrets at rest.
    pub secrets: SecretBox,
    pub hint: HintClient,
    pub tiep: TiepClient,
    /// Wakes the job runner after an enqueue.
    pub jobs: JobSignal,
    /// Group-commits visit results.
    pub completions: Completions,
}

impl AppState {
    pub fn new(settings: Settings, db: Db) -> anyhow::Result<Self> {
        let http = reqwest::Client::builder()
            .timeout(settings.http_timeout)
            .connect_timeout(settings.http_timeout.min(std::time::Duration::from_secs(5)))
            .user_agent(concat!("chartbridge/", env!("CARGO_PKG_VERSION")))
            .build()?;
        let jobs = JobSignal::default();
        let completions = Completions::spawn(db.clone(), jobs.clone(), settings.jobs.max_attempts);
        Ok(Self {
            secrets: SecretBox::new(&settings.secret_key),
            hint: HintClient::new(http.clone(), settings.hint.clone()),
            tiep: TiepClient::new(
                http,
                settings.tiep.api_url.clone(),
                settings.tiep.app_url.clone(),
            ),
            settings: Arc::new(settings),
            db,
            jobs,
            completions,
        })
    }
}
