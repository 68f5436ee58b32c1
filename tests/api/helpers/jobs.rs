//! The job queue run when a test says so, and waiting for what it (or the app) does.

use std::time::Duration;

use super::TestApp;

impl TestApp {
    /// Runs every due job now, in the test's task; answers how many ran. Results a burst left
    /// as receipts are filed first (the result writer does it in the background, within
    /// moments: their write-backs are jobs only then).
    pub async fn run_jobs(&self) -> usize {
        eventually(Duration::from_secs(10), "result receipts filed", || async {
            chartbridge::visits::receipts_waiting(&self.state.db)
                .await
                .expect("receipts counted")
                == 0
        })
        .await;
        self.state
            .job_runner()
            .run_until_empty()
            .await
            .expect("the queue runs")
    }

    /// Sandbox Hint holds an interaction with `status` for `patient_id`: after running the
    /// queue, or, with the job loop on, once it has got there.
    pub async fn wait_for_interaction(&self, patient_id: &str, status: &str) {
        let holds = || {
            self.hint
                .interactions_for(patient_id)
                .iter()
                .any(|i| i.status == status)
        };
        if !self.config.jobs.run_in_background {
            self.run_jobs().await;
            assert!(
                holds(),
                "Hint holds no {status} interaction for {patient_id}"
            );
            return;
        }
        eventually(
            Duration::from_secs(20),
            &format!("a {status} interaction in Hint"),
            || async { holds() },
        )
        .await;
    }

    /// Waits (up to `limit`) until Hint holds every visit of `visits` (patient, visit id)
    /// signed, then checks each is held exactly once: nothing lost, nothing doubled.
    pub async fn wait_each_signed_once(&self, limit: Duration, visits: &[(String, String)]) {
        let signed = |patient: &str, id: &str| {
            self.hint
                .interactions_for(patient)
                .iter()
                .any(|i| i.integration_record_id.as_deref() == Some(id) && i.status == "signed")
        };
        eventually(limit, "every visit signed in Hint", || async {
            visits.iter().all(|(patient, id)| signed(patient, id))
        })
        .await;
        for (patient, id) in visits {
            let held = self
                .hint
                .interactions_for(patient)
                .into_iter()
                .filter(|i| i.integration_record_id.as_deref() == Some(id.as_str()))
                .count();
            assert_eq!(held, 1, "visit {id} is held once");
        }
    }
}

/// Polls `check` until it is true (or fails the test after `limit`).
pub async fn eventually<F, Fut>(limit: Duration, what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if check().await {
            return;
        }
        if tokio::time::Instant::now() > deadline {
            panic!("timed out waiting for: {what}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
