//! Two practices: nothing of one is reachable with the other's session, by id or by list.

use serde_json::json;

use crate::helpers::{TIEP_HOOK_SECRET, spawn_app};

#[tokio::test]
async fn nothing_of_one_practice_reaches_the_other() {
    let app = spawn_app().await;
    let a = app.new_practice("Practice A").await;
    let b = app.new_practice("Practice B").await;
    app.setup_tiep(&a).await;
    app.setup_tiep(&b).await;
    let a_patient = &a.patients[0];
    let a_key = app.session(&a.clinician, None).await;
    assert_eq!(app.start_visit(&a_key, a_patient).await.status(), 303);
    let a_visit = app.only_visit(&a.id).await;
    let report =
        json!({"context": {"visit_id": a_visit.id}, "payload": {"reason": "A's secret reason"}});
    assert_eq!(
        app.post_tiep_webhook(&a.id, &report, TIEP_HOOK_SECRET)
            .await
            .status(),
        200
    );
    app.wait_for_interaction(a_patient, "signed").await;
    let a_interaction = app.hint.interactions_for(a_patient)[0].id.clone();

    let b_key = app.session(&b.clinician, None).await;
    let b_admin = app.session(&b.admin, None).await;

    // Visits and results, by id.
    let by_id = app
        .surface(
            "clinical_interaction",
            &format!("{b_key}&visit_id={}", a_visit.id),
        )
        .await;
    assert_eq!(by_id.status(), 404);
    let by_interaction = app
        .hint
        .handshake(&b.clinician, None, Some(&a_interaction))
        .await
        .unwrap();
    assert_eq!(
        app.surface("clinical_interaction", &by_interaction)
            .await
            .status(),
        404
    );

    // Visits, by list.
    for path in [
        "/hint/visits".to_string(),
        format!("/hint/visits?patient_id={a_patient}"),
    ] {
        let html = app.htmx_get(&path, &b_key).await.text().await.unwrap();
        assert!(!html.contains(&a_visit.id), "{path} leaks A's visit");
        assert!(!html.contains("Ava Thompson"), "{path} leaks A's patient");
    }
    let core = app.surface("core_page", &b_key).await.text().await.unwrap();
    assert!(!core.contains(&a_visit.id));

    // Patients: by id and by search.
    let search = app
        .htmx_get(&format!("/hint/patients/search?q={a_patient}"), &b_key)
        .await
        .text()
        .await
        .unwrap();
    assert!(search.contains("No patient matches"), "{search}");
    assert!(!search.contains("class=\"patients\""));
    assert_eq!(app.start_visit(&b_key, a_patient).await.status(), 404);
    let chart_key = app.session(&b.clinician, Some(a_patient)).await;
    assert_eq!(
        app.surface("clinical_chart", &chart_key).await.status(),
        404
    );

    // Settings: B's page shows B's webhook URL, never A's.
    let settings = app
        .surface("settings", &b_admin)
        .await
        .text()
        .await
        .unwrap();
    assert!(settings.contains(&format!("/webhooks/tiep/{}", b.id)));
    assert!(!settings.contains(&a.id));

    // Webhooks: A's visit cannot be completed through B's endpoint, even correctly signed for B;
    // the delivery is kept for B's admins (it is B's facility that sent it), A's visit untouched.
    let overwrite =
        json!({"context": {"visit_id": a_visit.id}, "payload": {"reason": "overwritten"}});
    assert_eq!(
        app.post_tiep_webhook(&b.id, &overwrite, TIEP_HOOK_SECRET)
            .await
            .status(),
        202
    );
    let b_kept = chartbridge::partners::unmatched::open_for_practice(&app.state, &b.id)
        .await
        .unwrap();
    assert_eq!(b_kept.len(), 1);
    assert!(
        chartbridge::partners::unmatched::open_for_practice(&app.state, &a.id)
            .await
            .unwrap()
            .is_empty()
    );
    let a_admin = app.session(&a.admin, None).await;
    let a_peeks = app
        .surface(&format!("unmatched/{}", b_kept[0].id), &a_admin)
        .await;
    assert_eq!(a_peeks.status(), 404, "A cannot open B's kept delivery");
    let stored = app.visit(&a.id, &a_visit.id).await;
    assert_eq!(
        stored.result_json().unwrap()["answers"]["reason"],
        "A's secret reason"
    );
    assert!(
        chartbridge::visits::get(&app.state, &b.id, &a_visit.id)
            .await
            .unwrap()
            .is_none()
    );

    // Jobs: B cannot retry A's work.
    let a_job = "job_of_a";
    sqlx::query(
        "INSERT INTO jobs (id, practice_id, kind, dedupe_key, payload, state, attempts, max_attempts, run_at, rerun, created_at, updated_at) \
         VALUES ($1, $2, 'sync_interaction', 'dead-a', '{}', 'dead', 8, 8, 0, 0, 0, 0)",
    )
    .bind(a_job)
    .bind(&a.id)
    .execute(app.state.db.writer())
    .await
    .unwrap();
    let retry = app
        .http
        .post(format!("{}/hint/jobs/{a_job}/retry", app.address))
        .header("x-hint-session-key", &b_key)
        .send()
        .await
        .unwrap();
    assert_eq!(retry.status(), 404);
    let b_core = app.surface("core_page", &b_key).await.text().await.unwrap();
    assert!(!b_core.contains(a_job));
    let a_core = app.surface("core_page", &a_key).await.text().await.unwrap();
    assert!(a_core.contains(a_job), "A sees its own stuck work");
}
