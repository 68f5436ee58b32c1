//! The job types a runner knows, by their stored kind: each registered once by its owner's
//! type ([`Registry::register`]), which brings its words, its subject and how it runs.

use std::{collections::HashMap, future::Future, pin::Pin};

use super::{JobDecodeError, JobError, JobOutcome, RunJob, decode};
use crate::{ids::VisitId, tenancy::PracticeId};

type JobFuture<'a> = Pin<Box<dyn Future<Output = Result<JobOutcome, JobError>> + Send + 'a>>;

/// One registered kind, its type erased.
struct Kind<S> {
    description: &'static str,
    standing: bool,
    visit_id: fn(&str) -> Option<VisitId>,
    run: for<'a> fn(&'a S, &'a PracticeId, &'a str) -> JobFuture<'a>,
}

/// Every job type that runs with the state `S`, by kind.
pub struct Registry<S> {
    kinds: HashMap<&'static str, Kind<S>>,
}

impl<S> std::fmt::Debug for Registry<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut kinds: Vec<&str> = self.kinds.keys().copied().collect();
        kinds.sort_unstable();
        f.debug_tuple("Registry").field(&kinds).finish()
    }
}

impl<S> Default for Registry<S> {
    fn default() -> Self {
        Self {
            kinds: HashMap::new(),
        }
    }
}

impl<S: Send + Sync + 'static> Registry<S> {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds job type `J`. Two types with one kind would share rows: refused at start.
    pub fn register<J: RunJob<S>>(mut self) -> Self {
        let kind = Kind {
            description: J::DESCRIPTION,
            standing: J::STANDING,
            visit_id: visit_id_of::<J>,
            run: run_as::<S, J>,
        };
        assert!(
            self.kinds.insert(J::KIND, kind).is_none(),
            "two job types are registered as {}",
            J::KIND
        );
        self
    }
}

impl<S> Registry<S> {
    /// Words for people of a stored kind; `None`: a kind this version does not know.
    pub fn description(&self, kind: &str) -> Option<&'static str> {
        self.kinds.get(kind).map(|k| k.description)
    }

    /// The visit a stored job is about, if it reads and is about one.
    pub fn visit_id(&self, kind: &str, payload: &str) -> Option<VisitId> {
        self.kinds.get(kind).and_then(|k| (k.visit_id)(payload))
    }

    /// The kinds that queue themselves again for ever.
    pub fn standing_kinds(&self) -> Vec<&'static str> {
        let mut kinds: Vec<&'static str> = self
            .kinds
            .iter()
            .filter(|(_, k)| k.standing)
            .map(|(kind, _)| *kind)
            .collect();
        kinds.sort_unstable();
        kinds
    }

    /// Runs a stored job; one of a kind this version does not know, or whose payload its kind
    /// does not take, fails for good with the reason.
    pub(super) async fn run(
        &self,
        state: &S,
        practice_id: &PracticeId,
        kind: &str,
        payload: &str,
    ) -> Result<JobOutcome, JobError> {
        match self.kinds.get(kind) {
            Some(registered) => (registered.run)(state, practice_id, payload).await,
            None => Err(JobError::permanent(JobDecodeError {
                kind: kind.chars().take(40).collect(),
                source: None,
            })),
        }
    }
}

fn visit_id_of<J: super::Job>(payload: &str) -> Option<VisitId> {
    decode::<J>(payload).ok()?.visit_id().cloned()
}

fn run_as<'a, S: Send + Sync + 'static, J: RunJob<S>>(
    state: &'a S,
    practice_id: &'a PracticeId,
    payload: &'a str,
) -> JobFuture<'a> {
    Box::pin(async move {
        let job = decode::<J>(payload).map_err(JobError::permanent)?;
        job.run(state, practice_id).await
    })
}
