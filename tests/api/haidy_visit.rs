//! Haidy document visits through HTTP against sandbox Haidy, and their failure paths.

use std::time::Duration;

use chartbridge_sandbox::haidy::HaidyFaults;
use reqwest::multipart::{Form, Part};

use crate::helpers::{Page, TestApp, TestPractice, spawn_app, spawn_app_with};

pub(crate) const PDF: &[u8] = b"%PDF-1.7\n1 0 obj << /Type /Catalog >> endobj\n%%EOF\n";

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
        .post(format!("{}{path}", app.address))
        .header("x-hint-session-key", key)
        .multipart(form)
        .send()
        .await
        .unwrap()
}

pub(crate) async fn launch(
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

pub(crate) async fn page_of(app: &TestApp, response: reqwest::Response) -> Page {
    assert_eq!(response.status(), 303, "the launch opens the visit page");
    let location = response.headers()["location"].to_str().unwrap().to_string();
    Page::of(app.get(&location).await).await.1
}

/// What the visit page says of one file.
fn outcome(page: &Page, file: &str) -> String {
    page.texts("ul.uploads li")
        .into_iter()
        .find(|o| o.starts_with(&format!("{file}: ")))
        .unwrap_or_else(|| panic!("no outcome for {file}: {:?}", page.texts("ul.uploads li")))
}

/// The launch form for `patient`.
async fn launch_form(app: &TestApp, key: &str, patient: &str) -> Page {
    let path = format!("/hint/partners/haidy/launch?patient_id={patient}&session_key={key}");
    Page::of(app.get(&path).await).await.1
}

pub(crate) async fn practice_with_haidy(app: &TestApp) -> (TestPractice, String) {
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

    let form = launch_form(&app, &key, patient).await;
    assert_eq!(
        form.attr("input[name=haidy_email]", "value").as_deref(),
        Some("casey.clinician@documentclinic.example"),
        "the Hint email by default"
    );

    let page = page_of(
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
    assert!(outcome(&page, "lab.pdf").starts_with("lab.pdf: sent to Haidy"));
    assert_eq!(
        outcome(&page, "letter.txt"),
        "letter.txt: sent to Haidy (16 bytes)"
    );

    // Haidy holds the context once, with the files, under the Hint patient id.
    let context = app.haidy.context_for(patient).expect("a context");
    assert_eq!(context.body["name"], "Ava Thompson");
    assert_eq!(context.body["birth_date"], "1984-03-12");
    assert_eq!(context.body["gender"], "female");
    assert_eq!(context.files.len(), 2);
    assert_eq!(context.files[0].1, "application/pdf");
    app.wait_for_interaction(patient, "draft").await;

    // The deep link opens Haidy for this patient, as the clinician, with no password.
    let link = page
        .attr(".haidy-open a.button", "href")
        .expect("the deep link");
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
        .page(
            "clinical_interaction",
            &format!("{key}&visit_id={}", visit.id),
        )
        .await;
    assert_eq!(page.text_of(".result h3:last-of-type"), "Haidy report");
    assert!(
        page.text_of(".result .report, .result pre")
            .contains("Anaemia resolved; continue iron for a month.")
    );

    // The approved report is in the chart, with each document sent and its outcome.
    crate::helpers::eventually(
        Duration::from_secs(10),
        "the report in the chart",
        || async { !app.hint.documents_for(patient).is_empty() },
    )
    .await;
    let documents = app.hint.documents_for(patient);
    assert_eq!(documents.len(), 1, "one document for the visit");
    let note = &documents[0];
    assert_eq!(note.title.as_deref(), Some("Haidy consultation report"));
    assert!(
        note.body
            .contains("Anaemia resolved\\; continue iron for a month\\."),
        "{}",
        note.body
    );
    assert!(
        note.body
            .contains("### Documents sent to Haidy\n\n- lab\\.pdf\\: sent"),
        "{}",
        note.body
    );
    assert!(
        note.body.contains("- letter\\.txt\\: sent \\(16 bytes\\)"),
        "{}",
        note.body
    );

    // The Haidy email the clinician entered is remembered for next time.
    let form = launch_form(&app, &key, patient).await;
    assert_eq!(
        form.attr("input[name=haidy_email]", "value").as_deref(),
        Some("casey@haidy.example")
    );
}

#[tokio::test]
async fn the_context_is_created_once_and_a_duplicate_does_not_break_a_launch() {
    let app = spawn_app().await;
    let (practice, key) = practice_with_haidy(&app).await;
    let patient = &practice.patients[1];
    for _ in 0..2 {
        let page = page_of(
            &app,
            launch(&app, &key, patient, &[("a.txt", b"note", "text/plain")]).await,
        )
        .await;
        assert_eq!(outcome(&page, "a.txt"), "a.txt: sent to Haidy (4 bytes)");
    }
    assert_eq!(app.haidy.world().contexts.len(), 1, "no second create");
    assert_eq!(app.haidy.context_for(patient).unwrap().files.len(), 2);

    // Haidy knows the patient but we lost its id: Haidy refuses the create (400); the launch
    // still opens Haidy, and says why the files could not go.
    sqlx::query("DELETE FROM haidy_patient_contexts")
        .execute(app.state.db.writer())
        .await
        .unwrap();
    let page = page_of(
        &app,
        launch(&app, &key, patient, &[("b.txt", b"note", "text/plain")]).await,
    )
    .await;
    assert!(
        outcome(&page, "b.txt").starts_with("b.txt: Not sent: Haidy already knows this patient")
    );
    assert_eq!(
        page.text_of(".haidy-open a.button"),
        "Open Haidy for this patient ↗ (new tab)"
    );
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
    let page = page_of(
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
    assert_eq!(
        page.texts("ul.uploads li.error"),
        [
            "big.txt: Not sent: larger than 1 KiB.",
            "setup.pdf: Not sent: Haidy takes text, PDF, images and FHIR files only.",
            "empty.txt: Not sent: the file is empty.",
        ]
    );
    assert!(outcome(&page, "ok.pdf").starts_with("ok.pdf: sent to Haidy"));
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
    let (status, more) = Page::of(more).await;
    assert_eq!(status, 422);
    assert_eq!(outcome(&more, "3.txt"), "3.txt: sent to Haidy (5 bytes)");
    assert_eq!(
        outcome(&more, "4.txt"),
        "4.txt: Not sent: at most 3 files at once."
    );
    assert!(
        more.text_of("[role=alert]")
            .contains("1 file(s) were not sent")
    );
    assert_eq!(app.haidy.context_for(patient).unwrap().files.len(), 4);
}

#[tokio::test]
async fn haidy_refusing_or_down_fails_the_visit_with_words_the_clinician_can_use() {
    let app = spawn_app().await;
    let (practice, key) = practice_with_haidy(&app).await;
    app.haidy.set_faults(HaidyFaults { down: true });
    let page = page_of(&app, launch(&app, &key, &practice.patients[0], &[]).await).await;
    assert_eq!(page.text_of(".meta .state"), "Failed");
    assert_eq!(
        page.text_of("#visit > p.error"),
        "Haidy failed (HTTP 503). Try again in a moment."
    );
    app.wait_for_interaction(&practice.patients[0], "failed")
        .await;
    app.haidy.set_faults(HaidyFaults::default());

    // A token Haidy does not know: the save says so at once and stores nothing, unless the
    // admin saves it anyway (then it is flagged, and the partner shows as failing).
    let admin = app.session(&practice.admin, None).await;
    let wrong = [
        ("api_token", "not-a-real-token"),
        ("patient_group", "g"),
        ("integration_id", "i"),
    ];
    let (status, refused) =
        Page::of(app.post_form("/hint/settings/haidy", &admin, &wrong).await).await;
    assert_eq!(status, 422);
    assert_eq!(
        refused.text_of("#haidy-settings [role=alert] p"),
        "Not saved: when Chartbridge tried these settings, Haidy refused Chartbridge's credentials (HTTP 401). Check them, or save them anyway (visits with Haidy documents will fail until they work)."
    );
    let mut anyway = wrong.to_vec();
    anyway.push(("save_anyway", "1"));
    let (status, saved) =
        Page::of(app.post_form("/hint/settings/haidy", &admin, &anyway).await).await;
    assert_eq!(status, 200);
    assert_eq!(
        saved.text_of("#haidy-settings .warn"),
        "Saved, though Haidy refused Chartbridge's credentials (HTTP 401): visits with Haidy documents will fail until this is put right."
    );
    assert_eq!(saved.text_of("#haidy-settings .health .badge"), "Failing");
    let page = page_of(&app, launch(&app, &key, &practice.patients[1], &[]).await).await;
    assert_eq!(
        page.text_of("#visit > p.error"),
        "Haidy refused this practice's API token. Ask a practice admin to check it in Chartbridge settings."
    );
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
    app.haidy
        .add_organisation("tok-secret-value-1", "grp-1", "int-1");
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
    let (status, missing) = Page::of(missing).await;
    assert_eq!(status, 422);
    assert_eq!(
        missing.text_of("#haidy-settings [role=alert]"),
        "Enter the Haidy patient group id."
    );
    assert_eq!(
        app.post_form("/hint/settings/haidy", &admin, &fields)
            .await
            .status(),
        200
    );
    let page = app.page("settings", &admin).await;
    assert_eq!(
        page.attr("#haidy-settings input[name=patient_group]", "value")
            .as_deref(),
        Some("grp-1")
    );
    assert!(!page.source().contains("tok-secret-value-1"));
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
    let form = launch_form(&app, &key, &other.patients[0]).await;
    assert!(
        form.text_of("[role=alert]")
            .starts_with("Haidy is not set up for this practice yet")
    );
    assert!(!form.has("form"), "nothing to send");
}

#[tokio::test]
async fn the_launch_form_posts_by_htmx_and_its_text_fields_are_capped() {
    let app = spawn_app().await;
    let practice = app.new_practice("Capped Fields").await;
    app.setup_haidy(&practice).await;
    let key = app.session(&practice.clinician, None).await;
    let patient = practice.patients[0].as_str();

    // The form is htmx's: no key in its URL (the header carries it), the page replaced whole.
    let form = launch_form(&app, &key, patient).await;
    assert_eq!(
        form.attr("form", "hx-post").as_deref(),
        Some("/hint/partners/haidy/launch")
    );
    assert_eq!(form.attr("form", "action"), None);
    assert_eq!(form.attr("form", "hx-target").as_deref(), Some("body"));

    // A field far past any email is refused while it streams in; nothing starts.
    let huge = "a".repeat(200_000);
    let refused = post_multipart(
        &app,
        "/hint/partners/haidy/launch",
        &key,
        &[("patient_id", patient), ("haidy_email", &huge)],
        &[],
    )
    .await;
    assert_eq!(refused.status(), 400);
    assert!(refused.text().await.unwrap().contains("is too long"));
    assert!(app.visits_of(&practice.id).await.is_empty());

    // Posted by htmx, the launch answers where to go next instead of a redirect.
    let part = Part::bytes(PDF.to_vec())
        .file_name("labs.pdf")
        .mime_str("application/pdf")
        .unwrap();
    let htmx = app
        .http
        .post(format!("{}/hint/partners/haidy/launch", app.address))
        .header("x-hint-session-key", &key)
        .header("hx-request", "true")
        .multipart(
            Form::new()
                .text("patient_id", patient.to_string())
                .text("haidy_email", "casey@haidy.example")
                .part("files", part),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(htmx.status(), 200);
    let to = htmx.headers()["hx-redirect"].to_str().unwrap().to_string();
    let visit = app.only_visit(&practice.id).await;
    assert!(to.starts_with(&format!("/hint/clinical_interaction?visit_id={}", visit.id)));
    let (status, page) = Page::of(app.get(&to).await).await;
    assert_eq!(status, 200);
    assert!(
        outcome(&page, "labs.pdf").contains("sent"),
        "{}",
        outcome(&page, "labs.pdf")
    );
}
