//! Haidy document visits through HTTP against sandbox Haidy, and their failure paths.

use std::time::Duration;

use chartbridge_sandbox::haidy::HaidyFaults;
use reqwest::multipart::{Form, Part};

use crate::helpers::{TestApp, TestPractice, between, spawn_app, spawn_app_with};

const PDF: &[u8] = b"%PDF-1.7\n1 0 obj << /Type /Catalog >> endobj\n%%EOF\n";

/// Posts a multipart form as the browser would: fields, then files under `files`.
async fn post_multipart(
    app: &TestApp,
    path: &str,
    key: &str,
    fields: &[(&str, &str)],
    files: &[(&str, &[u8], &str)],
) -> reqwest::Response {
    let mut form = Form::new();
    for (name, value) in fields {
        form = form.text(name.to_string(), value.to_string());
    }
    for (name, bytes, content_type) in files {
        let part = Part::bytes(bytes.to_vec())
            .file_name(name.to_string())
            .mime_str(content_type)
            .unwrap();
        form = form.part("files", part);
    }
    app.http
        .post(format!("{}{path}?session_key={key}", app.address))
        .multipart(form)
        .send()
        .await
        .unwrap()
}

async fn launch(
    app: &TestApp,
    key: &str,
    patient: &str,
    files: &[(&str, &[u8], &str)],
) -> reqwest::Response {
    post_multipart(
        app,
        "/hint/partners/haidy/launch",
        key,
        &[
            ("patient_id", patient),
            ("haidy_email", "casey@haidy.example"),
        ],
        files,
    )
    .await
}

async fn page_of(app: &TestApp, response: reqwest::Response) -> String {
    assert_eq!(response.status(), 303, "the launch opens the visit page");
    let location = response.headers()["location"].to_str().unwrap().to_string();
    app.get(&location).await.text().await.unwrap()
}

async fn practice_with_haidy(app: &TestApp) -> (TestPractice, String) {
    let practice = app.new_practice("Document Clinic").await;
    app.setup_haidy(&practice).await;
    let key = app.session(&practice.clinician, None).await;
    (practice, key)
}

#[tokio::test]
async fn a_clinician_sends_documents_and_the_approved_report_signs_the_chart() {
    let app = spawn_app_with(|s| {
        s.jobs.run_in_background = true;
        s.partners.haidy.poll_every = Duration::from_millis(200);
    })
    .await;
    let (practice, key) = practice_with_haidy(&app).await;
    let patient = &practice.patients[0];

    let form = app
        .get(&format!(
            "/hint/partners/haidy/launch?patient_id={patient}&session_key={key}"
        ))
        .await
        .text()
        .await
        .unwrap();
    assert!(
        form.contains("value=\"casey.clinician@documentclinic.example\""),
        "the Hint email by default"
    );

    let html = page_of(
        &app,
        launch(
            &app,
            &key,
            patient,
            &[
                ("lab.pdf", PDF, "application/pdf"),
                ("letter.txt", b"Discharged home.", "text/plain"),
            ],
        )
        .await,
    )
    .await;
    assert!(html.contains("lab.pdf: sent to Haidy"));
    assert!(html.contains("letter.txt: sent to Haidy"));

    // Haidy holds the context once, with the files, under the Hint patient id.
    let context = app.haidy.context_for(patient).expect("a context");
    assert_eq!(context.body["name"], "Ava Thompson");
    assert_eq!(context.body["birth_date"], "1984-03-12");
    assert_eq!(context.body["gender"], "female");
    assert_eq!(context.files.len(), 2);
    assert_eq!(context.files[0].1, "application/pdf");
    app.wait_for_interaction(patient, "draft").await;

    // The deep link opens Haidy for this patient, as the clinician, with no password.
    let link = between(&html, "<a class=\"button\" href=\"", "\"").expect("the deep link");
    assert!(link.starts_with(app.haidy.app_url().as_str()), "{link}");
    assert_eq!(app.http.get(&link).send().await.unwrap().status(), 200);
    let opened = app.haidy.world().deep_links.last().cloned().unwrap();
    assert_eq!(opened.email.as_deref(), Some("casey@haidy.example"));
    assert_eq!(opened.unique_id.as_deref(), Some(patient.as_str()));
    assert_eq!(opened.metadata.unwrap()["patient_first_name"], "Ava");
    assert!(!opened.had_password);

    // The doctor approves in Haidy; the poll collects the report and signs the chart.
    let consultation = app
        .haidy
        .approve(&context.id, "Anaemia resolved; continue iron for a month.")
        .unwrap();
    app.wait_for_interaction(patient, "signed").await;
    let visit = app.only_visit(&practice.id).await;
    assert_eq!(visit.state.as_str(), "completed");
    assert_eq!(visit.partner_ref.as_deref(), Some(consultation.as_str()));
    assert!(
        app.haidy.world().consultations[0].downloaded,
        "marked downloaded"
    );
    let page = app
        .surface(
            "clinical_interaction",
            &format!("{key}&visit_id={}", visit.id),
        )
        .await
        .text()
        .await
        .unwrap();
    assert!(page.contains("Haidy report"));
    assert!(page.contains("Anaemia resolved; continue iron for a month."));

    // The Haidy email the clinician entered is remembered for next time.
    let form = app
        .get(&format!(
            "/hint/partners/haidy/launch?patient_id={patient}&session_key={key}"
        ))
        .await
        .text()
        .await
        .unwrap();
    assert!(form.contains("value=\"casey@haidy.example\""));
}

#[tokio::test]
async fn the_context_is_created_once_and_a_duplicate_does_not_break_a_launch() {
    let app = spawn_app().await;
    let (practice, key) = practice_with_haidy(&app).await;
    let patient = &practice.patients[1];
    for _ in 0..2 {
        let html = page_of(
            &app,
            launch(&app, &key, patient, &[("a.txt", b"note", "text/plain")]).await,
        )
        .await;
        assert!(html.contains("a.txt: sent to Haidy"));
    }
    assert_eq!(app.haidy.world().contexts.len(), 1, "no second create");
    assert_eq!(app.haidy.context_for(patient).unwrap().files.len(), 2);

    // Haidy knows the patient but we lost its id: Haidy refuses the create (400); the launch
    // still opens Haidy, and says why the files could not go.
    sqlx::query("DELETE FROM haidy_patient_contexts")
        .execute(app.state.db.writer())
        .await
        .unwrap();
    let html = page_of(
        &app,
        launch(&app, &key, patient, &[("b.txt", b"note", "text/plain")]).await,
    )
    .await;
    assert!(html.contains("b.txt: Not sent: Haidy already knows this patient"));
    assert!(html.contains("Open Haidy for this patient"));
    let visits = app.visits_of(&practice.id).await;
    assert!(visits.iter().all(|v| v.state.as_str() == "in_progress"));
}

#[tokio::test]
async fn files_are_checked_before_anything_is_sent_and_each_outcome_is_shown() {
    let app = spawn_app_with(|s| {
        s.partners.haidy.max_file_bytes = 1024;
        s.partners.haidy.max_files = 3;
    })
    .await;
    let (practice, key) = practice_with_haidy(&app).await;
    let patient = &practice.patients[0];
    let big = vec![b'a'; 2048];
    let html = page_of(
        &app,
        launch(
            &app,
            &key,
            patient,
            &[
                ("big.txt", &big, "text/plain"),
                (
                    "setup.pdf",
                    b"MZ\x90\x00\x03\x00\x00\x00\x04\x00",
                    "application/pdf",
                ),
                ("empty.txt", b"", "text/plain"),
                ("ok.pdf", PDF, "application/pdf"),
            ],
        )
        .await,
    )
    .await;
    assert!(html.contains("big.txt: Not sent: larger than 1 KiB."));
    assert!(
        html.contains("setup.pdf: Not sent: Haidy takes text, PDF, images and FHIR files only.")
    );
    assert!(html.contains("empty.txt: Not sent: the file is empty."));
    assert!(html.contains("ok.pdf: sent to Haidy"));
    let context = app.haidy.context_for(patient).unwrap();
    assert_eq!(context.files.len(), 1, "only the good file reached Haidy");

    // More files on the open visit, from its page; more than allowed at once are refused.
    let visit = app.only_visit(&practice.id).await;
    let more = post_multipart(
        &app,
        &format!("/hint/partners/haidy/visits/{}/files", visit.id),
        &key,
        &[],
        &[
            ("1.txt", b"one", "text/plain"),
            ("2.txt", b"two", "text/plain"),
            ("3.txt", b"three", "text/plain"),
            ("4.txt", b"four", "text/plain"),
        ],
    )
    .await;
    assert_eq!(more.status(), 422);
    let html = more.text().await.unwrap();
    assert!(html.contains("3.txt: sent to Haidy"));
    assert!(html.contains("4.txt: Not sent: at most 3 files at once."));
    assert_eq!(app.haidy.context_for(patient).unwrap().files.len(), 4);
}

#[tokio::test]
async fn haidy_refusing_or_down_fails_the_visit_with_words_the_clinician_can_use() {
    let app = spawn_app().await;
    let (practice, key) = practice_with_haidy(&app).await;
    app.haidy.set_faults(HaidyFaults { down: true });
    let html = page_of(&app, launch(&app, &key, &practice.patients[0], &[]).await).await;
    assert!(html.contains("Haidy failed (HTTP 503). Try again in a moment."));
    app.wait_for_interaction(&practice.patients[0], "failed")
        .await;
    app.haidy.set_faults(HaidyFaults::default());

    // A token Haidy does not know.
    let admin = app.session(&practice.admin, None).await;
    let saved = app
        .post_form(
            "/hint/settings/haidy",
            &admin,
            &[
                ("api_token", "not-a-real-token"),
                ("patient_group", "g"),
                ("integration_id", "i"),
            ],
        )
        .await;
    assert_eq!(saved.status(), 200);
    let html = page_of(&app, launch(&app, &key, &practice.patients[1], &[]).await).await;
    assert!(html.contains("Haidy refused this practice") && html.contains("API token"));
    let visits = app.visits_of(&practice.id).await;
    assert!(visits.iter().all(|v| v.state.as_str() == "failed"));
    assert!(app.haidy.world().contexts.is_empty());
}

#[tokio::test]
async fn a_report_that_never_comes_fails_and_a_visit_can_be_cancelled() {
    let app = spawn_app_with(|s| {
        s.jobs.run_in_background = true;
        s.partners.haidy.poll_every = Duration::from_millis(100);
        s.partners.haidy.give_up_after = Duration::from_millis(300);
    })
    .await;
    let (practice, key) = practice_with_haidy(&app).await;
    page_of(&app, launch(&app, &key, &practice.patients[0], &[]).await).await;
    app.wait_for_interaction(&practice.patients[0], "failed")
        .await;
    let failed = app.only_visit(&practice.id).await;
    assert!(
        failed
            .error_message
            .unwrap()
            .contains("Haidy approved no consultation")
    );

    let app = spawn_app().await;
    let (practice, key) = practice_with_haidy(&app).await;
    page_of(&app, launch(&app, &key, &practice.patients[0], &[]).await).await;
    let visit = app.only_visit(&practice.id).await;
    app.wait_for_interaction(&practice.patients[0], "draft")
        .await;
    let cancelled = app
        .post_form(&format!("/hint/visits/{}/cancel", visit.id), &key, &[])
        .await;
    assert_eq!(cancelled.status(), 200);
    app.wait_for_interaction(&practice.patients[0], "deleted")
        .await;
}

#[tokio::test]
async fn haidy_settings_are_for_admins_and_the_token_stays_sealed() {
    let app = spawn_app().await;
    let practice = app.new_practice("Settings Docs").await;
    let clinician = app.session(&practice.clinician, None).await;
    let admin = app.session(&practice.admin, None).await;
    let fields = [
        ("api_token", "tok-secret-value-1"),
        ("patient_group", "grp-1"),
        ("integration_id", "int-1"),
    ];
    assert_eq!(
        app.post_form("/hint/settings/haidy", &clinician, &fields)
            .await
            .status(),
        403
    );
    let missing = app
        .post_form(
            "/hint/settings/haidy",
            &admin,
            &[
                ("api_token", "tok"),
                ("patient_group", ""),
                ("integration_id", "int-1"),
            ],
        )
        .await;
    assert_eq!(missing.status(), 422);
    assert!(missing.text().await.unwrap().contains("patient group"));
    assert_eq!(
        app.post_form("/hint/settings/haidy", &admin, &fields)
            .await
            .status(),
        200
    );
    let page = app.surface("settings", &admin).await.text().await.unwrap();
    assert!(page.contains("value=\"grp-1\"") && !page.contains("tok-secret-value-1"));
    let sealed: String = sqlx::query_scalar(
        "SELECT secrets_sealed FROM partner_connections WHERE partner = 'haidy'",
    )
    .fetch_one(app.state.db.reader())
    .await
    .unwrap();
    assert!(!sealed.contains("tok-secret-value-1"));
    // Without Haidy set up, the launch form says so instead of offering to send.
    let other = app.new_practice("Unset Docs").await;
    let key = app.session(&other.clinician, None).await;
    let form = app
        .get(&format!(
            "/hint/partners/haidy/launch?patient_id={}&session_key={key}",
            other.patients[0]
        ))
        .await
        .text()
        .await
        .unwrap();
    assert!(form.contains("Haidy is not set up for this practice yet"));
}
