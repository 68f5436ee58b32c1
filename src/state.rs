//! The one typed state every handler and job gets.

use std::sync::Arc;

use crate::{
    config::Settings,
    crypto::SecretBox,
    db::Db,
    hint::{HintClient, directory::PatientDirectory, session::HintSessionStore},
    jobs::JobSignal,
    partners::{connection::SecretsCache, haidy::HaidyClient, hcw::HcwClient, tiep::TiepClient},
    upstream::Upstream,
    visits::completion::Completions,
};

#[derive(Clone, Debug)]
pub struct AppState {
    pub settings: Arc<Settings>,
    public_url: url::Url,
    pub db: Db,
    /// Seals and opens secrets at rest.
    pub secrets: SecretBox,
    pub hint: HintClient,
    pub tiep: TiepClient,
    pub hcw: HcwClient,
    pub haidy: HaidyClient,
    /// Wakes the job runner after an enqueue.
    pub jobs: JobSignal,
    /// Group-commits visit results.
    pub completions: Completions,
    /// Where framed sessions live.
    pub sessions: Arc<HintSessionStore>,
    /// Practices' patient lists for search.
    pub patients: Arc<PatientDirectory>,
    /// Recently opened partner secrets (webhook verification).
    pub connection_secrets: Arc<SecretsCache>,
}

impl AppState {
    /// Where Hint and the partners reach us.
    pub fn public_url(&self) -> &url::Url {
        &self.public_url
    }

    /// `public_url` is the configured one, or the address `Application::build` bound.
    pub fn new(settings: Settings, db: Db, public_url: url::Url) -> anyhow::Result<Self> {
        let upstream = Upstream::new(settings.http_timeout)?;
        let jobs = JobSignal::default();
        let completions = Completions::spawn(db.clone(), jobs.clone(), settings.jobs.max_attempts);
        let connection_secrets = Arc::new(SecretsCache::new(settings.secrets_cache_ttl));
        Ok(Self {
            sessions: Arc::new(HintSessionStore::new(db.clone(), &settings.sessions)),
            patients: Arc::new(PatientDirectory::new(settings.patient_directory_ttl)),
            connection_secrets,
            secrets: SecretBox::new(&settings.secret_key),
            hint: HintClient::new(upstream.clone(), settings.hint.clone()),
            hcw: HcwClient::new(upstream.clone(), settings.hcw.token_lifetime),
            haidy: HaidyClient::new(upstream.clone(), settings.haidy.api_url.clone()),
            tiep: TiepClient::new(
                upstream,
                settings.tiep.api_url.clone(),
                settings.tiep.app_url.clone(),
            ),
            settings: Arc::new(settings),
            public_url,
            db,
            jobs,
            completions,
        })
    }
}
