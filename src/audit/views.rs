//! Views of patient data recorded once a while: a list polled by htmx, or a form reopened,
//! is one entry per session, view and patient every few minutes, not one per request.
//! Remembered per instance: with several instances, each records its own first view.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use super::{Actor, AuditError, Entry, Recorder};
use crate::{crypto::sha256_hex, tenancy::PracticeId};

/// How long a view stands for the same view again.
const WINDOW: Duration = Duration::from_secs(5 * 60);
/// Most views remembered; past that, those older than the window are forgotten (and if every
/// one is recent, all are: a few entries recorded twice rather than memory without bound).
const MAX_REMEMBERED: usize = 100_000;

#[derive(Clone, Debug, Default)]
pub(super) struct RecentViews(Arc<Mutex<HashMap<String, Instant>>>);

impl RecentViews {
    /// Whether `key` is new within the window (and remembers it now if so).
    fn first_in_window(&self, key: String) -> bool {
        let now = Instant::now();
        let mut seen = self.0.lock().expect("recent views");
        if seen
            .get(&key)
            .is_some_and(|at| now.duration_since(*at) < WINDOW)
        {
            return false;
        }
        if seen.len() >= MAX_REMEMBERED {
            seen.retain(|_, at| now.duration_since(*at) < WINDOW);
            if seen.len() >= MAX_REMEMBERED {
                seen.clear();
            }
        }
        seen.insert(key, now);
        true
    }
}

impl Recorder {
    /// Records a view of patient data by the session whose key is `session_key`, unless the
    /// same session recorded the same view (action and detail) of the same patient within the
    /// last minutes.
    pub async fn record_view(
        &self,
        practice_id: &PracticeId,
        actor: &Actor,
        session_key: &str,
        entry: Entry<'_>,
    ) -> Result<(), AuditError> {
        // The session's key itself is not kept, only its hash.
        let key = format!(
            "{}|{}|{}|{}",
            sha256_hex(session_key.as_bytes()),
            entry.action.as_str(),
            entry.detail,
            entry.patient_id.unwrap_or_default()
        );
        if !self.recent_views.first_in_window(key.clone()) {
            return Ok(());
        }
        let recorded = self.record(practice_id, actor, entry).await;
        if recorded.is_err() {
            // Not recorded: the next view tries again.
            self.recent_views
                .0
                .lock()
                .expect("recent views")
                .remove(&key);
        }
        recorded
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_view_counts_once_per_window_and_key() {
        let views = RecentViews::default();
        assert!(views.first_in_window("s1|chart|p1".into()));
        assert!(!views.first_in_window("s1|chart|p1".into()));
        assert!(
            views.first_in_window("s1|chart|p2".into()),
            "another patient"
        );
        assert!(
            views.first_in_window("s2|chart|p1".into()),
            "another session"
        );
        views
            .0
            .lock()
            .unwrap()
            .insert("s1|chart|p1".into(), Instant::now() - WINDOW);
        assert!(
            views.first_in_window("s1|chart|p1".into()),
            "after the window"
        );
    }
}
