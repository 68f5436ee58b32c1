//! A practice's patients for search-as-you-type. Hint filters only on exact fields, so a name
//! search means paging through the list: that is done once per practice, searched in memory,
//! kept for `ttl`, and dropped as soon as Hint says a patient changed (`patient.*` webhooks).

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use super::client::{HintAuth, HintClient, HintError, Patient};
use crate::tenancy::PracticeId;

/// Pages of 100 loaded at most: practices beyond 5,000 patients are searched by id or in part.
const MAX_PAGES: usize = 50;
/// Practices kept at once; the oldest load is dropped first.
const MAX_PRACTICES: usize = 200;

struct Loaded {
    at: Instant,
    patients: Arc<Vec<Patient>>,
}

pub struct PatientDirectory {
    ttl: Duration,
    loaded: Mutex<HashMap<String, Loaded>>,
    /// One load per practice at a time, so a burst of keystrokes pages through Hint once.
    loading: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

impl std::fmt::Debug for PatientDirectory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PatientDirectory([patients])")
    }
}

impl PatientDirectory {
    pub fn new(ttl: Duration) -> Self {
        Self {
            ttl,
            loaded: Mutex::default(),
            loading: Mutex::default(),
        }
    }

    /// Patients of `auth`'s practice matching `query` (`Patient::matches`), at most
    /// `max_results` of them, and how many matched in all.
    pub async fn search(
        &self,
        hint: &HintClient,
        auth: &HintAuth<'_>,
        query: &str,
        max_results: usize,
    ) -> Result<(Vec<Patient>, usize), HintError> {
        let query = query.trim();
        if query.starts_with("pat-") {
            return match hint.get_patient(auth, query).await {
                Ok(p) => Ok((vec![p], 1)),
                Err(e) if e.is_status(reqwest::StatusCode::NOT_FOUND) => Ok((vec![], 0)),
                Err(e) => Err(e),
            };
        }
        let patients = self.patients(hint, auth).await?;
        let matching: Vec<&Patient> = patients.iter().filter(|p| p.matches(query)).collect();
        let total = matching.len();
        Ok((
            matching.into_iter().take(max_results).cloned().collect(),
            total,
        ))
    }

    /// A patient from the practice's list if it is loaded and fresh (no call to Hint).
    pub fn cached(&self, practice_id: &PracticeId, patient_id: &str) -> Option<Patient> {
        self.fresh(practice_id)?
            .iter()
            .find(|p| p.id == patient_id)
            .cloned()
    }

    /// Drops a practice's list (a patient was created, changed or removed in Hint).
    pub fn forget(&self, practice_id: &PracticeId) {
        self.forget_practice(practice_id.as_str());
    }

    /// Drops a practice's list because another instance said it changed (the id comes from
    /// our own database's notification, and only removes).
    fn forget_practice(&self, practice_id: &str) {
        self.loaded
            .lock()
            .expect("directory lock")
            .remove(practice_id);
    }

    /// Drops every list (changes may have been missed).
    fn forget_all(&self) {
        self.loaded.lock().expect("directory lock").clear();
    }

    fn fresh(&self, practice_id: &PracticeId) -> Option<Arc<Vec<Patient>>> {
        let loaded = self.loaded.lock().expect("directory lock");
        loaded
            .get(practice_id.as_str())
            .filter(|l| l.at.elapsed() < self.ttl)
            .map(|l| l.patients.clone())
    }

    async fn patients(
        &self,
        hint: &HintClient,
        auth: &HintAuth<'_>,
    ) -> Result<Arc<Vec<Patient>>, HintError> {
        if let Some(patients) = self.fresh(auth.practice_id) {
            return Ok(patients);
        }
        let lock = self
            .loading
            .lock()
            .expect("directory lock")
            .entry(auth.practice_id.as_str().to_string())
            .or_default()
            .clone();
        let _loading = lock.lock().await;
        if let Some(patients) = self.fresh(auth.practice_id) {
            return Ok(patients);
        }
        let patients = Arc::new(hint.all_patients(auth, MAX_PAGES).await?);
        let mut loaded = self.loaded.lock().expect("directory lock");
        if loaded.len() >= MAX_PRACTICES {
            if let Some(oldest) = loaded
                .iter()
                .min_by_key(|(_, l)| l.at)
                .map(|(k, _)| k.clone())
            {
                loaded.remove(&oldest);
            }
        }
        loaded.insert(
            auth.practice_id.as_str().to_string(),
            Loaded {
                at: Instant::now(),
                patients: patients.clone(),
            },
        );
        Ok(patients)
    }
}

/// The PostgreSQL channel on which an instance that learned of a patient change tells the
/// others (payload: the practice id).
pub const CHANGED_CHANNEL: &str = "chartbridge_patients_changed";

/// Tells every instance (this one included) that a practice's patients changed, when the
/// caller's transaction commits. PostgreSQL only; one instance on SQLite forgets its own.
pub async fn announce_change(
    conn: &mut sqlx::AnyConnection,
    practice_id: &PracticeId,
) -> Result<(), sqlx::Error> {
    sqlx::query("SELECT pg_notify($1, $2)")
        .bind(CHANGED_CHANNEL)
        .bind(practice_id.as_str())
        .execute(conn)
        .await?;
    Ok(())
}

/// Follows the other instances' announcements on PostgreSQL (`LISTEN`) until `stop`: a
/// practice named there is searched afresh here. A lost connection is taken up again, and as
/// changes may have been missed meanwhile, every list is dropped.
pub async fn follow_announcements(
    directory: Arc<PatientDirectory>,
    database_url: secrecy::SecretString,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    use secrecy::ExposeSecret;
    use sqlx::postgres::PgListener;
    let mut listener = loop {
        let connected = async {
            let mut listener = PgListener::connect(database_url.expose_secret()).await?;
            listener.listen(CHANGED_CHANNEL).await?;
            Ok::<_, sqlx::Error>(listener)
        };
        match connected.await {
            Ok(listener) => break listener,
            Err(e) => {
                tracing::warn!(error = %e, "could not listen for patient changes; retrying");
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_secs(5)) => {}
                    _ = stopped(&mut stop) => return,
                }
            }
        }
    };
    loop {
        tokio::select! {
            received = listener.try_recv() => match received {
                Ok(Some(notification)) => directory.forget_practice(notification.payload()),
                // The connection was lost; the next receive reconnects.
                Ok(None) => directory.forget_all(),
                Err(e) => {
                    tracing::warn!(error = %e, "listening for patient changes failed; retrying");
                    directory.forget_all();
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            },
            _ = stopped(&mut stop) => return,
        }
    }
}

/// Completes once `stop` turns true (or its sender is gone).
async fn stopped(stop: &mut tokio::sync::watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await.map(|_| ());
}
