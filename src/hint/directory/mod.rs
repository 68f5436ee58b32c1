//! Search-as-you-type over a practice's patients, on this instance's decrypted copy of the
//! practice's patient index (`patient_index.rs`): loaded from our database on the first search
//! (never from Hint), each patient's name folded once, then matched in memory per keystroke.
//!
//! A change is applied where it is learned (a webhook, a sync) and announced on PostgreSQL
//! (`NOTIFY`), so every instance applies it too: one patient re-read, or the practice's copy
//! dropped and reloaded on its next search.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

mod index;

use self::index::{Entry, Index, fold};
use super::{HintState, client::Patient, patient_index};
use crate::{db::Backend, tenancy::PracticeId};

/// Practices whose copy is kept at once; the least recently searched goes first.
const MAX_PRACTICES: usize = 50;

/// A practice's copy, and when it was last searched.
struct Copy {
    used: Instant,
    index: Arc<Index>,
}

/// What a search found.
#[derive(Debug, Default)]
pub struct Found {
    /// The first `max_results`, by name.
    pub patients: Vec<Patient>,
    /// How many matched in all.
    pub total: usize,
    /// How many patients the practice's index holds.
    pub indexed: usize,
    /// Whether the index holds the whole practice (its first fill is done).
    pub complete: bool,
}

pub struct PatientDirectory {
    copies: Mutex<HashMap<String, Copy>>,
    /// One load per practice at a time, so a burst of keystrokes reads the index once.
    loading: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    /// Practices whose index is complete (known here; an index never becomes incomplete).
    complete: Mutex<std::collections::HashSet<String>>,
    /// Practices whose index is known to exist (its sync job was started).
    started: Mutex<std::collections::HashSet<String>>,
}

impl std::fmt::Debug for PatientDirectory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PatientDirectory([patients])")
    }
}

impl Default for PatientDirectory {
    fn default() -> Self {
        Self::new()
    }
}

impl PatientDirectory {
    pub fn new() -> Self {
        Self {
            copies: Mutex::default(),
            loading: Mutex::default(),
            complete: Mutex::default(),
            started: Mutex::default(),
        }
    }

    /// Whether this instance knows the practice's index to exist (no database read).
    pub fn is_known_started(&self, practice_id: &PracticeId) -> bool {
        self.started
            .lock()
            .expect("directory lock")
            .contains(practice_id.as_str())
    }

    /// Remembers that the practice's index exists.
    pub fn note_started(&self, practice_id: &PracticeId) {
        self.started
            .lock()
            .expect("directory lock")
            .insert(practice_id.to_string());
    }

    /// Whether the practice's copy is in memory here.
    pub fn is_loaded(&self, practice_id: &PracticeId) -> bool {
        self.copies
            .lock()
            .expect("directory lock")
            .contains_key(practice_id.as_str())
    }

    /// Patients of the practice matching `query`, from the index (never from Hint).
    pub async fn search(
        &self,
        state: &HintState,
        practice_id: &PracticeId,
        query: &str,
        max_results: usize,
    ) -> Result<Found, sqlx::Error> {
        let complete = self.is_complete(state, practice_id).await?;
        let index = self.index(state, practice_id, complete).await?;
        let query = query.trim();
        let typed: Vec<String> = fold(query).split_whitespace().map(String::from).collect();
        let mut found = Found {
            indexed: index.entries.len(),
            complete,
            ..Found::default()
        };
        if typed.is_empty() {
            return Ok(found);
        }
        index.find(query, &typed, |entry| {
            found.total += 1;
            if found.patients.len() < max_results {
                found.patients.push(entry.patient.clone());
            }
        });
        Ok(found)
    }

    /// Loads the practice's copy ahead of the first keystroke (a page that offers search).
    pub async fn warm(&self, state: &HintState, practice_id: &PracticeId) {
        let warmed = async {
            let complete = self.is_complete(state, practice_id).await?;
            self.index(state, practice_id, complete).await
        };
        if let Err(e) = warmed.await {
            tracing::warn!(%practice_id, error = %e, "loading the patient index failed");
        }
    }

    /// A patient of the practice's copy, if it is loaded (no call to anything).
    pub fn cached(&self, practice_id: &PracticeId, patient_id: &str) -> Option<Patient> {
        let copies = self.copies.lock().expect("directory lock");
        copies
            .get(practice_id.as_str())?
            .index
            .get(patient_id)
            .map(|e| e.patient.clone())
    }

    /// The practice's patients changed in the index (one of them, or any): applies it here
    /// and tells every other instance.
    pub async fn changed(
        &self,
        state: &HintState,
        practice_id: &PracticeId,
        patient_id: Option<&str>,
    ) -> Result<(), sqlx::Error> {
        self.apply(state, practice_id.as_str(), patient_id).await;
        if state.db.backend() == Backend::Postgres {
            let payload = match patient_id {
                Some(patient) => format!("{practice_id} {patient}"),
                None => practice_id.to_string(),
            };
            sqlx::query("SELECT pg_notify($1, $2)")
                .bind(CHANGED_CHANNEL)
                .bind(payload)
                .execute(state.db.writer())
                .await?;
        }
        Ok(())
    }

    /// Applies an announced change: re-reads one patient, or drops the practice's copy.
    pub(crate) async fn apply(
        &self,
        state: &HintState,
        practice_id: &str,
        patient_id: Option<&str>,
    ) {
        let loaded = self
            .copies
            .lock()
            .expect("directory lock")
            .contains_key(practice_id);
        if !loaded {
            return;
        }
        let Some(patient_id) = patient_id else {
            self.forget_practice(practice_id);
            return;
        };
        // Announced by our own database: the practice is one this instance serves.
        let practice = match crate::ids::ExternalId::parse(practice_id) {
            Ok(id) => PracticeId::verified(id),
            Err(_) => return,
        };
        match patient_index::load_one(state, &practice, patient_id).await {
            Ok(patient) => self.replace(practice_id, patient_id, patient),
            Err(e) => {
                tracing::warn!(error = %e, "re-reading a changed patient failed");
                self.forget_practice(practice_id);
            }
        }
    }

    /// Puts `patient` in place of `patient_id` in the practice's copy (`None`: removes it).
    fn replace(&self, practice_id: &str, patient_id: &str, patient: Option<Patient>) {
        let mut copies = self.copies.lock().expect("directory lock");
        let Some(copy) = copies.get_mut(practice_id) else {
            return;
        };
        let mut entries: Vec<Entry> = copy
            .index
            .entries
            .iter()
            .filter(|e| e.patient.id != patient_id)
            .map(|e| Entry {
                patient: e.patient.clone(),
                words: e.words.clone(),
            })
            .collect();
        if let Some(patient) = patient {
            entries.push(Entry::new(patient));
        }
        copy.index = Arc::new(Index::new(entries));
    }

    /// Whether this instance knows the practice's index to be complete (no database read).
    pub fn is_known_complete(&self, practice_id: &PracticeId) -> bool {
        self.complete
            .lock()
            .expect("directory lock")
            .contains(practice_id.as_str())
    }

    async fn is_complete(
        &self,
        state: &HintState,
        practice_id: &PracticeId,
    ) -> Result<bool, sqlx::Error> {
        if self
            .complete
            .lock()
            .expect("directory lock")
            .contains(practice_id.as_str())
        {
            return Ok(true);
        }
        let complete = patient_index::state(state, practice_id)
            .await?
            .is_some_and(|s| s.filled_at.is_some());
        if complete {
            self.complete
                .lock()
                .expect("directory lock")
                .insert(practice_id.to_string());
            // What was loaded while it filled is partial.
            self.forget_practice(practice_id.as_str());
        }
        Ok(complete)
    }

    async fn index(
        &self,
        state: &HintState,
        practice_id: &PracticeId,
        complete: bool,
    ) -> Result<Arc<Index>, sqlx::Error> {
        // While the first fill runs, the copy is read again at most every two seconds.
        let fresh_for = if complete {
            Duration::MAX
        } else {
            Duration::from_secs(2)
        };
        if let Some(index) = self.copy(practice_id, fresh_for) {
            return Ok(index);
        }
        let lock = self
            .loading
            .lock()
            .expect("directory lock")
            .entry(practice_id.to_string())
            .or_default()
            .clone();
        let _loading = lock.lock().await;
        if let Some(index) = self.copy(practice_id, fresh_for) {
            return Ok(index);
        }
        let started = std::time::Instant::now();
        let entries: Vec<Entry> = patient_index::load(state, practice_id)
            .await?
            .into_iter()
            .map(Entry::new)
            .collect();
        let patients = entries.len();
        let index = Arc::new(Index::new(entries));
        // Ids and counts only: the names stay in memory.
        tracing::info!(
            %practice_id,
            patients,
            ms = started.elapsed().as_millis() as u64,
            "patient index loaded"
        );
        let mut copies = self.copies.lock().expect("directory lock");
        if copies.len() >= MAX_PRACTICES
            && let Some(oldest) = copies
                .iter()
                .min_by_key(|(_, c)| c.used)
                .map(|(k, _)| k.clone())
        {
            copies.remove(&oldest);
        }
        copies.insert(
            practice_id.to_string(),
            Copy {
                used: Instant::now(),
                index: index.clone(),
            },
        );
        Ok(index)
    }

    /// The practice's copy, if loaded less than `fresh_for` ago (marks it used).
    fn copy(&self, practice_id: &PracticeId, fresh_for: Duration) -> Option<Arc<Index>> {
        let mut copies = self.copies.lock().expect("directory lock");
        let copy = copies.get_mut(practice_id.as_str())?;
        if copy.used.elapsed() > fresh_for {
            return None;
        }
        if fresh_for == Duration::MAX {
            copy.used = Instant::now();
        }
        Some(copy.index.clone())
    }

    /// Drops a practice's copy.
    fn forget_practice(&self, practice_id: &str) {
        self.copies
            .lock()
            .expect("directory lock")
            .remove(practice_id);
    }

    /// Drops every copy (changes may have been missed).
    fn forget_all(&self) {
        self.copies.lock().expect("directory lock").clear();
    }
}

/// The PostgreSQL channel on which an instance that learned of a patient change tells the
/// others (payload: the practice id, then the patient's when one patient changed).
pub const CHANGED_CHANNEL: &str = "chartbridge_patients_changed";

/// Tells every instance (this one included) that a practice's patients changed, when the
/// caller's transaction commits. PostgreSQL only; one instance on SQLite forgets its own.
pub async fn announce_change(
    conn: &mut sqlx::AnyConnection,
    practice_id: &PracticeId,
    patient_id: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query("SELECT pg_notify($1, $2)")
        .bind(CHANGED_CHANNEL)
        .bind(format!("{practice_id} {patient_id}"))
        .execute(conn)
        .await?;
    Ok(())
}

/// Follows the other instances' announcements on PostgreSQL (`LISTEN`) until `stop`: a
/// practice named there is searched afresh here. A lost connection is taken up again, and as
/// changes may have been missed meanwhile, every list is dropped.
pub async fn follow_announcements(
    state: HintState,
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
                Ok(Some(notification)) => {
                    let mut said = notification.payload().split(' ');
                    if let Some(practice_id) = said.next() {
                        state.patients.apply(&state, practice_id, said.next()).await;
                    }
                }
                // The connection was lost; the next receive reconnects.
                Ok(None) => state.patients.forget_all(),
                Err(e) => {
                    tracing::warn!(error = %e, "listening for patient changes failed; retrying");
                    state.patients.forget_all();
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
