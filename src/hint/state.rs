//! The state every handler of the Hint layer runs with, and every layer above builds on:
//! configuration, the database, sealed secrets, the way out, the audit recorder and metrics,
//! and Hint's client, sessions and patient lists. The visit lifecycle's `AppState`
//! (`visits/app_state.rs`) holds one and lends it out (`AsRef<HintState>`), so handlers here run
//! under it.

use std::sync::Arc;

use url::Url;

use super::{HintClient, budget, directory, session};
use crate::{config::Settings, crypto::SecretBox, db::Db, upstream::Upstream};

/// What the Hint layer works with. Held once behind the app's state (`AppState`), so a request
/// clones one reference count, never this; each part is itself cheap to clone (shared).
#[derive(Clone, Debug)]
pub struct HintState {
    pub settings: Arc<Settings>,
    /// Where Hint and the partners reach us.
    pub public_url: Url,
    pub db: Db,
    /// Seals and opens secrets at rest.
    pub secrets: SecretBox,
    /// Every outbound call goes through it.
    pub upstream: Upstream,
    pub hint: HintClient,
    /// Where framed sessions live.
    pub sessions: Arc<session::HintSessionStore>,
    /// Practices' patient lists for search.
    pub patients: Arc<directory::PatientDirectory>,
    /// Writes audit entries that have no transaction of their own (group commit).
    pub audit: crate::audit::Recorder,
    /// What operators scrape (`/metrics`).
    pub metrics: crate::metrics::Metrics,
    /// Each practice's budget of valid signed traffic.
    pub practice_limits: crate::practice_limits::PracticeLimits,
}

impl HintState {
    /// `public_url` is the configured one, or the address the server was bound to.
    pub fn new(settings: Settings, db: Db, public_url: Url) -> anyhow::Result<Self> {
        let upstream = Upstream::with_policy(
            settings.http_timeout,
            settings.outbound.allow.clone(),
            settings.outbound.lookup.clone(),
        )?;
        let metrics = crate::metrics::Metrics::default();
        Ok(Self {
            sessions: Arc::new(session::HintSessionStore::new(
                db.clone(),
                &settings.sessions,
            )),
            patients: Arc::new(directory::PatientDirectory::new()),
            secrets: SecretBox::from_settings(&settings.keys),
            audit: crate::audit::Recorder::spawn(
                db.clone(),
                crate::audit::ChainKeys::from_settings(&settings.keys)
                    .current()
                    .clone(),
            ),
            hint: HintClient::new(
                upstream.clone(),
                settings.hint.clone(),
                metrics.clone(),
                settings.hint.shared_budget.then(|| {
                    // Longer than any one call with its retries may hold a slot.
                    budget::SharedBudget::new(db.clone(), settings.http_timeout * 4)
                }),
            ),
            metrics,
            practice_limits: crate::practice_limits::PracticeLimits::new(&settings.rate_limits),
            upstream,
            settings: Arc::new(settings),
            public_url,
            db,
        })
    }
}

impl AsRef<HintState> for HintState {
    fn as_ref(&self) -> &HintState {
        self
    }
}
