//! The visit's record in the patient's chart: a document interaction with the result, written
//! once whatever happens between Hint's answer and our commit.

use serde_json::json;

use crate::helpers::{TIEP_HOOK_SECRET, TestApp, spawn_app};

/// A Tiep visit of a new practice, its report delivered and the write-back run: answers the
/// practice id, the patient and the visit id.
async fn signed_tiep_visit(app: &TestApp, name: &str) -> (String, String, String) {
    let (practice, _, visit) = app.open_tiep_visit(name).await;
    let patient = practice.patients[0].clone();
    let report = json!({
        "context": {"patient": {"resourceType": "Patient", "identifier": [{"value": patient}]}, "visit_id": visit.id},
        "payload": {"reason": "Cough [see https://evil.example] <b>", "pain-level": 2}
    });
    let answered = app
        .post_tiep_webhook(&practice.id, &report, TIEP_HOOK_SECRET)
        .await;
    assert_eq!(answered.status(), 200);
    app.run_jobs().await;
    (practice.id, patient, visit.id.to_string())
}

#[tokio::test]
async fn a_document_hint_created_before_we_recorded_it_is_found_not_written_again() {
    let app = spawn_app().await;
    let (practice_id, patient, visit_id) = signed_tiep_visit(&app, "Crash Clinic").await;
    let documents = app.hint.documents_for(&patient);
    assert_eq!(documents.len(), 1);
    let written = documents[0].id.clone();

    // As after a `kill -9` between Hint's answer and our commit: our row does not know the
    // document, and the write-back runs again.
    sqlx::query("UPDATE visits SET hint_document_id = NULL WHERE id = $1")
        .bind(&visit_id)
        .execute(app.state.db.writer())
        .await
        .unwrap();
    sqlx::query(
        "INSERT INTO jobs (id, practice_id, kind, dedupe_key, payload, state, attempts, max_attempts, run_at, rerun, created_at, updated_at) \
         VALUES ('job_again', $1, 'sync_interaction', $2, $3, 'queued', 0, 8, 0, 0, 0, 0)",
    )
    .bind(&practice_id)
    .bind(format!("sync_interaction:{visit_id}"))
    .bind(json!({"visit_id": visit_id}).to_string())
    .execute(app.state.db.writer())
    .await
    .unwrap();
    assert_eq!(app.run_jobs().await, 1);

    let documents = app.hint.documents_for(&patient);
    assert_eq!(
        documents.len(),
        1,
        "found by our record id, not written twice"
    );
    let stored = app.visit(&practice_id, &visit_id).await;
    assert_eq!(stored.hint_document_id.as_deref(), Some(written.as_str()));
}

#[tokio::test]
async fn partner_words_reach_the_chart_as_text_never_as_links_or_html() {
    let app = spawn_app().await;
    let (_, patient, _) = signed_tiep_visit(&app, "Escaping Clinic").await;
    let note = &app.hint.documents_for(&patient)[0];
    assert!(
        note.body
            .contains("**Reason for visit:** Cough \\[see https\\:\\/\\/evil\\.example\\] \\<b\\>"),
        "{}",
        note.body
    );
    // Rendered as the chart renders Markdown: the words, no link, no markup.
    let html = chartbridge_sandbox::hint::render_markdown(&note.body);
    assert!(!html.contains("<a "), "{html}");
    assert!(!html.contains("<b>"), "{html}");
    assert!(
        html.contains("Cough [see https://evil.example] &lt;b&gt;"),
        "{html}"
    );
}

#[tokio::test]
async fn sandbox_hint_refuses_a_document_it_would_not_take() {
    let app = spawn_app().await;
    let (practice, _, _) = app.open_tiep_visit("Strict Clinic").await;
    let patient = &practice.patients[0];
    let token = app.practice_token(&practice.id).await.expect("installed");
    let url = app
        .hint
        .base_url()
        .join(&format!(
            "/api/provider/patients/{patient}/interactions/document"
        ))
        .unwrap();
    let post = |body: serde_json::Value| {
        app.http
            .post(url.clone())
            .bearer_auth(&token)
            .json(&body)
            .send()
    };
    // An unknown field, no status, a time that is not RFC 3339, an attachment that does not
    // answer: each refused, nothing kept.
    assert_eq!(
        post(json!({"status": "signed", "colour": "red"}))
            .await
            .unwrap()
            .status(),
        400
    );
    assert_eq!(post(json!({"title": "x"})).await.unwrap().status(), 400);
    assert_eq!(
        post(json!({"status": "signed", "event_timestamp": "yesterday"}))
            .await
            .unwrap()
            .status(),
        422
    );
    let nothing_there = format!("{}no-such-file.pdf", app.hint.base_url());
    assert_eq!(
        post(json!({"status": "signed", "attachments": [nothing_there]}))
            .await
            .unwrap()
            .status(),
        422
    );
    assert!(app.hint.documents_for(patient).is_empty());
}

#[tokio::test]
async fn a_corrected_tiep_report_addends_the_visit_with_both_versions_in_the_chart_and_the_trail() {
    let app = spawn_app().await;
    let (practice, _, visit) = app.open_tiep_visit("Correcting Clinic").await;
    let patient = practice.patients[0].clone();
    let report = |reason: &str| {
        json!({
            "context": {"patient": {"resourceType": "Patient", "identifier": [{"value": patient}]}, "visit_id": visit.id},
            "payload": {"reason": reason, "pain-level": 2}
        })
    };
    let send = |body: serde_json::Value| {
        let (app, practice_id) = (&app, practice.id.clone());
        async move {
            let answer = app
                .post_tiep_webhook(&practice_id, &body, TIEP_HOOK_SECRET)
                .await;
            assert_eq!(answer.status(), 200);
            answer.json::<serde_json::Value>().await.unwrap()
        }
    };
    let versions = || app.versions_of(visit.id.as_str());
    send(report("Cough")).await;
    app.run_jobs().await;

    // The same report again changes nothing.
    let again = send(report("Cough")).await;
    assert_eq!(
        (&again["duplicate"], &again["corrected"]),
        (&json!(true), &json!(false))
    );
    app.run_jobs().await;
    assert_eq!(app.visit(&practice.id, &visit.id).await.addenda, 0);
    assert_eq!(versions().await, 0);
    assert_eq!(app.hint.documents_for(&patient)[0].status, "signed");

    // A different one is a correction: the visit and Hint's interaction addended, the chart's
    // document rewritten with the new report, what changed and when, and the report before.
    let corrected = send(report("Cough and fever")).await;
    assert_eq!(corrected["corrected"], json!(true));
    app.run_jobs().await;
    let stored = app.visit(&practice.id, &visit.id).await;
    assert_eq!((stored.state.as_str(), stored.addenda), ("completed", 1));
    assert_eq!(stored.document_addenda, 1);
    assert_eq!(stored.hint_status.as_deref(), Some("addended"));
    let interactions = app.hint.interactions_for(&patient);
    assert_eq!(interactions.len(), 1);
    assert_eq!(interactions[0].status, "addended");
    let documents = app.hint.documents_for(&patient);
    assert_eq!(documents.len(), 1, "the same document, corrected");
    let body = &documents[0].body;
    assert_eq!(documents[0].status, "addended");
    assert!(
        body.starts_with("**Reason for visit:** Cough and fever\n\n**Pain level:** 2"),
        "{body}"
    );
    assert!(body.contains("\n\n---\n\n**Corrected "), "{body}");
    assert!(
        body.contains(":** Reason for visit changed\\. The version before it:\n\n**Reason for visit:** Cough\n\n"),
        "{body}"
    );
    assert_eq!(versions().await, 1, "the earlier report is kept");

    // The trail says who corrected what.
    let trail = app.visit_trail(&practice.id, visit.id.as_str()).await;
    assert!(
        trail.contains(&("visit_addended".into(), "tiep: Reason for visit".into())),
        "{trail:?}"
    );

    // The correction sent twice is one correction.
    let repeat = send(report("Cough and fever")).await;
    assert_eq!(repeat["corrected"], json!(false));
    assert_eq!(versions().await, 1);
}

#[tokio::test]
async fn a_result_hint_will_not_take_as_a_document_is_said_on_the_visit_page_and_core_page() {
    let app = spawn_app().await;
    app.hint.set_faults(chartbridge_sandbox::hint::Faults {
        refuse_documents: true,
        ..Default::default()
    });
    let (practice_id, patient, visit_id) = signed_tiep_visit(&app, "Refused Clinic").await;
    assert!(app.hint.documents_for(&patient).is_empty());
    let stored = app.visit(&practice_id, &visit_id).await;
    assert_eq!(stored.hint_status.as_deref(), Some("signed"));
    assert_eq!(stored.hint_document_id, None);

    // The clinician reading the visit, and the practice's core page, are told.
    let clinician = app
        .hint
        .world()
        .users
        .iter()
        .find(|u| {
            u.practice_id == practice_id && u.partner_roles.iter().any(|r| r.contains("linician"))
        })
        .map(|u| u.id.clone())
        .expect("the practice's clinician");
    let key = app.session(&clinician, Some(&patient)).await;
    let page = app
        .page(
            "clinical_interaction",
            &format!("{key}&visit_id={visit_id}"),
        )
        .await;
    assert_eq!(
        page.text_of(".meta dd:last-of-type"),
        "In Hint as signed; the result is not in the chart yet"
    );
    let core = app.page("core_page", &key).await;
    let attention = core.text_of(".attention li");
    assert!(
        attention.contains("Ava Thompson — Tiep scribe visit: write the visit to the hint chart")
            && attention.contains("Hint answered HTTP 422"),
        "the failed write is listed: {attention}"
    );

    // Once Hint takes it, a retry writes it and the page says so no more.
    app.hint
        .set_faults(chartbridge_sandbox::hint::Faults::default());
    sqlx::query("UPDATE jobs SET state = 'queued', attempts = 0, run_at = 0 WHERE dedupe_key = $1")
        .bind(format!("sync_interaction:{visit_id}"))
        .execute(app.state.db.writer())
        .await
        .unwrap();
    app.run_jobs().await;
    assert_eq!(app.hint.documents_for(&patient).len(), 1);
    let page = app
        .page(
            "clinical_interaction",
            &format!("{key}&visit_id={visit_id}"),
        )
        .await;
    assert_eq!(page.text_of(".meta dd:last-of-type"), "In Hint as signed");
}

#[tokio::test]
async fn a_patient_hint_destroyed_leaves_no_sealed_value_of_theirs_in_the_database() {
    let app = spawn_app().await;
    let (practice, _, visit) = app.open_tiep_visit("Forgetting Clinic").await;
    let (gone, staying) = (practice.patients[0].clone(), practice.patients[1].clone());
    let deliver = |patient: &str, visit_id: &str, reason: &str| {
        json!({
            "context": {"patient": {"resourceType": "Patient", "identifier": [{"value": patient}]}, "visit_id": visit_id},
            "payload": {"reason": reason, "pain-level": 3}
        })
    };
    // A signed and corrected visit for the patient who goes, one for the patient who stays.
    for reason in ["Migraine", "Migraine with aura"] {
        let sent = app
            .post_tiep_webhook(
                &practice.id,
                &deliver(&gone, visit.id.as_str(), reason),
                TIEP_HOOK_SECRET,
            )
            .await;
        assert_eq!(sent.status(), 200);
    }
    let key = app.session(&practice.clinician, None).await;
    assert_eq!(app.start_visit(&key, &staying).await.status(), 303);
    let other = app
        .visits_of(&practice.id)
        .await
        .into_iter()
        .find(|v| v.patient_id == staying)
        .unwrap();
    app.post_tiep_webhook(
        &practice.id,
        &deliver(&staying, other.id.as_str(), "Back pain"),
        TIEP_HOOK_SECRET,
    )
    .await;
    app.run_jobs().await;

    // Every sealed value the database holds of theirs.
    let mut sealed: Vec<String> = sqlx::query_as::<_, (String, String, String)>(
        "SELECT patient_name, launch, result FROM visits WHERE patient_id = $1",
    )
    .bind(&gone)
    .fetch_all(app.state.db.reader())
    .await
    .unwrap()
    .into_iter()
    .flat_map(|(a, b, c)| [a, b, c])
    .collect();
    sealed.extend(
        sqlx::query_scalar::<_, String>("SELECT result_sealed FROM visit_versions")
            .fetch_all(app.state.db.reader())
            .await
            .unwrap(),
    );
    assert_eq!(sealed.len(), 4);
    assert!(sealed.iter().all(|s| s.len() > 40), "{sealed:?}");

    let event = json!({"id": "evt-destroyed", "type": "patient.destroyed", "practice_id": practice.id,
        "object": {"id": gone}});
    let body = event.to_string();
    let answered = app
        .http
        .post(format!("{}/webhooks/hint", app.address))
        .header("content-type", "application/json")
        .header("x-hint-signature", crate::helpers::sign(body.as_bytes()))
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(answered.status(), 200);

    // The visit keeps its ids and state; nothing sealed of the patient's is left anywhere in
    // the database (the SQLite file and its log byte for byte).
    let kept = app.visit(&practice.id, &visit.id).await;
    assert_eq!(kept.state.as_str(), "completed");
    assert_eq!((kept.patient_name.as_str(), kept.launch.as_str()), ("", ""));
    let dump = crate::at_rest::database_as_text(&app).await;
    for value in &sealed {
        let cipher = value.trim_start_matches("sealed:v1:");
        assert!(
            !dump.contains(&cipher[..40]),
            "a sealed value of the patient's is left"
        );
    }
    // The trail says what went and why; the other patient's visit is untouched.
    let trail: Vec<String> = sqlx::query_scalar(
        "SELECT detail FROM audit_events WHERE practice_id = $1 AND action = 'patient_erased' AND patient_id = $2",
    )
    .bind(&practice.id)
    .bind(&gone)
    .fetch_all(app.state.db.reader())
    .await
    .unwrap();
    assert_eq!(
        trail,
        ["patient.destroyed in Hint: 1 visit(s) emptied; removed 1 visit_versions"]
    );
    let untouched = app.visit(&practice.id, &other.id).await;
    assert!(untouched.result.unwrap().contains("Back pain"));

    // The visit's page says what happened instead of failing.
    let page = app
        .page(
            "clinical_interaction",
            &format!("{key}&visit_id={}", visit.id),
        )
        .await;
    assert!(
        page.text().contains("Hint removed this patient"),
        "{}",
        page.text()
    );
}
