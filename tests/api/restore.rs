//! The restore drill: a running instance's database backed up (`pg_dump`, or SQLite's
//! `VACUUM INTO`), restored into a new database, and an instance started from it with the same
//! secrets: every sealed value opens, every chain verifies against the checkpoints published
//! before the backup, and the jobs that were queued run, once, while those done stay done.

use crate::{
    audit_checkpoints::{checkpoint_file, publish},
    helpers::{restored_copy, spawn_app},
};

#[tokio::test]
async fn a_restored_backup_opens_verifies_against_its_checkpoints_and_runs_each_job_once() {
    let app = spawn_app().await;
    let practice = app.new_practice("Restored Clinic").await;
    app.setup_tiep(&practice).await;
    let [ava, liam] = [&practice.patients[0], &practice.patients[1]];
    let key = app.session(&practice.clinician, Some(ava)).await;
    app.started_visit_id(&practice.id, &key, ava).await;
    // The first visit's draft is in Hint before the backup; the second's is still queued.
    app.run_jobs().await;
    assert_eq!(app.hint.interactions_for(ava).len(), 1);
    let key = app.session(&practice.clinician, Some(liam)).await;
    app.started_visit_id(&practice.id, &key, liam).await;
    assert!(app.hint.interactions_for(liam).is_empty());
    let checkpoints = checkpoint_file();
    publish(&app, &checkpoints).await;

    let backup = restored_copy(&app.database).await;
    let app = app.restart_on(backup).await;

    // Every sealed value opens under the same secrets.
    let names: Vec<String> = app
        .visits_of(&practice.id)
        .await
        .into_iter()
        .map(|v| v.patient_name)
        .collect();
    assert_eq!(names, ["Liam Carter", "Ava Thompson"]);
    assert!(app.practice_token(&practice.id).await.is_some());
    // The trail verifies, and against what was published before the backup.
    let file = checkpoints.display().to_string();
    let (status, said) = app.cli(&["audit", "verify", "--checkpoints", &file]).await;
    assert_eq!(status, 0, "{said}");
    assert!(
        said.contains("1 checkpoint(s) held against the chains"),
        "{said}"
    );
    assert!(said.contains("0 broken chain(s)"), "{said}");
    // The queued job runs; the one done before the backup does not run again.
    app.run_jobs().await;
    assert_eq!(app.hint.interactions_for(liam).len(), 1);
    assert_eq!(app.hint.interactions_for(ava).len(), 1);
    // And the restored instance serves.
    let key = app.session(&practice.clinician, Some(ava)).await;
    assert!(
        app.page("clinical_chart", &key)
            .await
            .text()
            .contains("Ava Thompson")
    );
}
