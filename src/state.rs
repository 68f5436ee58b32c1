//! The state of the visit lifecycle and everything built on it: the Hint layer's state, the
//! job queue's wake-up, the result writer, and the registry of partners (each holding its own
//! settings and client). The Hint layer and the core never see this type.

use std::{ops::Deref, sync::Arc};

use crate::{
    crypto::SecretsCache, hint::HintState, jobs::JobSignal, visits::completion::Completions,
    visits::partner::Partners,
};

#[derive(Clone, Debug)]
pub struct AppState {
    /// Configuration, database, secrets, the way out, and Hint (`state.db`, `state.hint`, …
    /// read through it).
    pub hint_state: HintState,
    /// Wakes the job runner after an enqueue.
    pub jobs: JobSignal,
    /// Group-commits visit results.
    pub completions: Completions,
    /// Every partner, with its settings and client.
    pub partners: Partners,
    /// Recently opened partner secrets (webhook verification).
    pub connection_secrets: Arc<SecretsCache>,
}

impl AppState {
    /// Starts the result writer; `partners` is the registry the partners module builds.
    pub fn new(hint_state: HintState, partners: Partners) -> Self {
        let jobs = JobSignal::default();
        let completions = Completions::spawn(
            hint_state.db.clone(),
            jobs.clone(),
            hint_state.settings.jobs.max_attempts,
        );
        Self {
            connection_secrets: Arc::new(SecretsCache::new(hint_state.settings.secrets_cache_ttl)),
            hint_state,
            jobs,
            completions,
            partners,
        }
    }
}

impl Deref for AppState {
    type Target = HintState;

    fn deref(&self) -> &HintState {
        &self.hint_state
    }
}

impl AsRef<HintState> for AppState {
    fn as_ref(&self) -> &HintState {
        &self.hint_state
    }
}
