//! A whole Tiep visit through HTTP against the sandboxes, and its failure paths.

use std::time::Duration;

use chartbridge_sandbox::tiep::TiepFaults;
use serde_json::json;

use crate::helpers::{Page, TIEP_HOOK_SECRET, spawn_app, spawn_app_with};

#[tokio::test]
async fn a_clinician_runs_a_tiep_visit_and_the_chart_ends_signed() {
    let app = spawn_app().await;
    let practice = app.new_practice("Riverside").await;
    app.setup_tiep(&practice).await;
    let patient = &practice.patients[0];

    // The chart surface shows the patient and the launch button.
    let key = app.session(&practice.clinician, Some(patient)).await;
    let chart = app.page("clinical_chart", &key).await;
    assert_eq!(chart.text_of("section.patient h1"), "Ava Thompson");
    assert_eq!(
        chart.texts(".launches button"),
        ["Start Tiep scribe ↗ (new tab)"],
        "the button says it opens a new tab"
    );

    // Starting redirects to Tiep with the patient context and our visit id.
    let started = app.start_visit(&key, patient).await;
    assert_eq!(started.status(), 303);
    let launch_url = started.headers()["location"].to_str().unwrap().to_string();
    assert!(launch_url.starts_with(app.tiep.base_url().as_str()));
    let visit = app.only_visit(&practice.id).await;
    assert_eq!(visit.state.as_str(), "in_progress");
    let launch = url::Url::parse(&launch_url).unwrap();
    let context = launch
        .query_pairs()
        .find(|(k, _)| k == "context")
        .unwrap()
        .1
        .to_string();
    let context: serde_json::Value = serde_json::from_slice(
        &base64::Engine::decode(&base64::engine::general_purpose::URL_SAFE, context).unwrap(),
    )
    .unwrap();
    assert_eq!(context["visit_id"], visit.id.as_str());
    assert_eq!(
        context["patient"]["identifier"][0]["value"],
        patient.as_str()
    );
    assert_eq!(context["patient"]["resourceType"], "Patient");

    // The draft appears in the Hint chart while the visit runs.
    app.wait_for_interaction(patient, "draft").await;

    // The doctor saves in Tiep; Tiep posts the signed report.
    let saved = app
        .save_tiep_report(
            &launch_url,
            &[
                ("reason", "Shoulder pain after tennis"),
                ("pain-level", "6"),
            ],
        )
        .await;
    let (status, saved) = Page::of(saved).await;
    assert_eq!(status, 200);
    assert!(saved.text().contains("sent to your health record system"));

    app.wait_for_interaction(patient, "signed").await;
    let interactions = app.hint.interactions_for(patient);
    assert_eq!(
        interactions.len(),
        1,
        "exactly one interaction for the visit"
    );
    let interaction = &interactions[0];
    assert_eq!(
        interaction.integration_record_id.as_deref(),
        Some(visit.id.as_str())
    );
    assert_eq!(
        interaction.partner_product_id.as_deref(),
        Some(crate::helpers::PRODUCT_ID)
    );
    let link = interaction.integration_web_link.clone().unwrap();
    assert_eq!(
        link,
        format!(
            "{}/hint/clinical_interaction?visit_id={}",
            app.address, visit.id
        )
    );

    // Hint holds it signed, and our row records Hint's answer.
    let stored = app.visit(&practice.id, &visit.id).await;
    assert_eq!(stored.hint_status.as_deref(), Some("signed"));
    assert_eq!(stored.state.as_str(), "completed");
    assert_eq!(
        stored.hint_interaction_id.as_deref(),
        Some(interaction.id.as_str())
    );

    // Hint reopens the interaction: our page shows the full report.
    let reopened = app
        .hint
        .handshake(&practice.clinician, Some(patient), Some(&interaction.id))
        .await
        .unwrap();
    let page = app.page("clinical_interaction", &reopened).await;
    assert_eq!(
        page.texts(".report th"),
        ["Reason for visit", "Pain level", "Assessment", "Plan"]
    );
    assert_eq!(
        page.texts(".report td"),
        ["Shoulder pain after tennis", "6", "—", "—"]
    );
    assert_eq!(page.text_of(".meta .state"), "Completed");
    assert_eq!(page.text_of(".meta dd:last-of-type"), "In Hint as signed");

    // And the sandbox Hint chart page links back into the app.
    let (_, chart_page) = Page::of(
        reqwest::get(
            app.hint
                .base_url()
                .join(&format!("/patients/{patient}?as=clinician"))
                .unwrap(),
        )
        .await
        .unwrap(),
    )
    .await;
    assert_eq!(chart_page.attrs("[data-status]", "data-status"), ["signed"]);
    assert!(
        chart_page
            .attr("iframe", "src")
            .unwrap()
            .starts_with(&format!("{}/hint/clinical_chart?session_key=", app.address))
    );

    // The note itself is in the chart, readable in Hint: one document for the visit, the
    // form's fields and answers in the form's order, and the page renders it.
    let documents = app.hint.documents_for(patient);
    assert_eq!(documents.len(), 1, "one document for the visit");
    let note = &documents[0];
    assert_eq!(note.status, "signed");
    assert_eq!(note.title.as_deref(), Some("Visit note (Tiep)"));
    assert_eq!(
        note.integration_record_id.as_deref(),
        Some(visit.id.as_str())
    );
    assert_eq!(note.integration_web_link.as_deref(), Some(link.as_str()));
    assert_eq!(
        note.body,
        "**Reason for visit:** Shoulder pain after tennis\n\n**Pain level:** 6\n\n\
         **Assessment:** —\n\n**Plan:** —"
    );
    assert_eq!(
        app.visit(&practice.id, &visit.id)
            .await
            .hint_document_id
            .as_deref(),
        Some(note.id.as_str())
    );
    let (_, chart_page) = Page::of(
        reqwest::get(
            app.hint
                .base_url()
                .join(&format!("/patients/{patient}?as=clinician"))
                .unwrap(),
        )
        .await
        .unwrap(),
    )
    .await;
    assert_eq!(
        chart_page.text_of(".document h4 small"),
        "(signed, ".to_string() + &note.event_timestamp + ")"
    );
    assert!(
        chart_page
            .text_of(".document-body")
            .contains("Reason for visit: Shoulder pain after tennis")
    );
    // Running the write-back again writes nothing more.
    app.run_jobs().await;
    assert_eq!(app.hint.documents_for(patient).len(), 1);
}

#[tokio::test]
async fn a_forged_webhook_changes_nothing_and_a_duplicate_has_one_effect() {
    let app = spawn_app().await;
    let practice = app.new_practice("Webhook Practice").await;
    app.setup_tiep(&practice).await;
    let patient = &practice.patients[1];
    let key = app.session(&practice.clinician, None).await;
    assert_eq!(app.start_visit(&key, patient).await.status(), 303);
    let visit = app.only_visit(&practice.id).await;
    let report = json!({
        "context": {"patient": {"resourceType": "Patient", "identifier": [{"value": patient}]}, "visit_id": visit.id},
        "payload": {"reason": "Cough", "pain-level": 2}
    });

    for secret in ["wrong-secret-wrong-secret", ""] {
        let forged = app.post_tiep_webhook(&practice.id, &report, secret).await;
        assert_eq!(forged.status(), 401);
    }
    let unsigned = app
        .http
        .post(format!("{}/webhooks/tiep/{}", app.address, practice.id))
        .json(&report)
        .send()
        .await
        .unwrap();
    assert_eq!(unsigned.status(), 401);
    assert_eq!(
        app.visit(&practice.id, &visit.id).await.state.as_str(),
        "in_progress"
    );

    let first = app
        .post_tiep_webhook(&practice.id, &report, TIEP_HOOK_SECRET)
        .await;
    assert_eq!(first.status(), 200);
    app.wait_for_interaction(patient, "signed").await;
    let updates_before = app.hint.interactions_for(patient)[0].updates;
    let second = app
        .post_tiep_webhook(&practice.id, &report, TIEP_HOOK_SECRET)
        .await;
    assert_eq!(second.status(), 200);
    assert_eq!(
        second.json::<serde_json::Value>().await.unwrap()["duplicate"],
        true
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    let interactions = app.hint.interactions_for(patient);
    assert_eq!(interactions.len(), 1);
    assert_eq!(
        interactions[0].updates, updates_before,
        "the duplicate did not touch Hint"
    );
    let stored = app.visit(&practice.id, &visit.id).await;
    assert_eq!(
        crate::helpers::stored_result(&stored)["answers"]["reason"],
        "Cough"
    );

    // A report for the wrong patient is kept for review (202), and changes nothing.
    let mut wrong = report.clone();
    wrong["context"]["patient"]["identifier"][0]["value"] = json!(practice.patients[0]);
    assert_eq!(
        app.post_tiep_webhook(&practice.id, &wrong, TIEP_HOOK_SECRET)
            .await
            .status(),
        202
    );
    let stored = app.visit(&practice.id, &visit.id).await;
    assert_eq!(
        crate::helpers::stored_result(&stored)["answers"]["reason"],
        "Cough"
    );
    let malformed = json!({"payload": {}});
    assert_eq!(
        app.post_tiep_webhook(&practice.id, &malformed, TIEP_HOOK_SECRET)
            .await
            .status(),
        400
    );
    let unknown = json!({"context": {"visit_id": "vis_nope"}, "payload": {}});
    assert_eq!(
        app.post_tiep_webhook(&practice.id, &unknown, TIEP_HOOK_SECRET)
            .await
            .status(),
        202
    );
    let kept = app.unmatched_of(&practice.id).await;
    assert_eq!(kept.len(), 2, "both reports we could not place are kept");
}

#[tokio::test]
async fn polling_finds_the_report_when_no_webhook_comes() {
    let app = spawn_app_with(|s| {
        s.jobs.run_in_background = true;
        s.partners.tiep.poll_after = Duration::from_millis(200);
        s.partners.tiep.poll_every = Duration::from_millis(200);
    })
    .await;
    let practice = app.new_practice("Polling Practice").await;
    app.setup_tiep(&practice).await;
    app.tiep.set_faults(TiepFaults {
        drop_webhooks: true,
        ..Default::default()
    });
    let patient = &practice.patients[0];
    let key = app.session(&practice.clinician, None).await;
    let launch = app.start_visit(&key, patient).await.headers()["location"]
        .to_str()
        .unwrap()
        .to_string();
    let saved = app
        .save_tiep_report(&launch, &[("reason", "Follow-up"), ("pain-level", "1")])
        .await;
    assert_eq!(saved.status(), 200);
    assert!(
        app.tiep.world().deliveries.is_empty(),
        "no webhook was sent"
    );
    app.wait_for_interaction(patient, "signed").await;
    let visit = app.only_visit(&practice.id).await;
    assert_eq!(
        crate::helpers::stored_result(&visit)["answers"]["reason"],
        "Follow-up"
    );
}

#[tokio::test]
async fn a_visit_with_no_report_ever_fails_with_a_reason() {
    let app = spawn_app_with(|s| {
        s.jobs.run_in_background = true;
        s.partners.tiep.poll_after = Duration::from_millis(100);
        s.partners.tiep.poll_every = Duration::from_millis(100);
        s.partners.tiep.give_up_after = Duration::from_millis(600);
    })
    .await;
    let practice = app.new_practice("Silent Practice").await;
    app.setup_tiep(&practice).await;
    let patient = &practice.patients[0];
    let key = app.session(&practice.clinician, None).await;
    assert_eq!(app.start_visit(&key, patient).await.status(), 303);
    app.wait_for_interaction(patient, "failed").await;
    let interaction = &app.hint.interactions_for(patient)[0];
    assert!(
        interaction
            .integration_error_message
            .as_deref()
            .unwrap()
            .contains("no saved report")
    );
    assert_eq!(app.only_visit(&practice.id).await.state.as_str(), "failed");
}

#[tokio::test]
async fn tiep_down_at_launch_fails_the_visit_with_a_reason_the_clinician_sees() {
    let app = spawn_app().await;
    let practice = app.new_practice("Down Practice").await;
    app.setup_tiep(&practice).await;
    app.tiep.set_faults(TiepFaults {
        api_down: true,
        ..Default::default()
    });
    let patient = &practice.patients[0];
    let key = app.session(&practice.clinician, None).await;
    let (status, page) = Page::of(app.start_visit(&key, patient).await).await;
    assert_eq!(status, 502);
    assert!(
        page.text_of("main")
            .contains("Tiep is not reachable right now")
    );
    app.wait_for_interaction(patient, "failed").await;
    assert_eq!(app.only_visit(&practice.id).await.state.as_str(), "failed");
}

#[tokio::test]
async fn a_launch_needs_tiep_set_up_and_a_real_patient() {
    let app = spawn_app().await;
    let practice = app.new_practice("Unset Practice").await;
    let key = app.session(&practice.clinician, None).await;
    let (status, page) = Page::of(app.start_visit(&key, &practice.patients[0]).await).await;
    assert_eq!(status, 422);
    assert!(page.text_of("main").contains("Ask a practice admin"));
    app.setup_tiep(&practice).await;
    assert_eq!(
        app.start_visit(&key, "pat-does-not-exist").await.status(),
        404
    );
    let bad_partner = app
        .post_form(
            "/hint/visits",
            &key,
            &[("patient_id", &practice.patients[0]), ("partner", "nope")],
        )
        .await;
    assert_eq!(bad_partner.status(), 400);
    assert!(app.visits_of(&practice.id).await.is_empty());
}

#[tokio::test]
async fn an_expired_handshake_token_falls_back_to_the_practice_s_or_ends_the_session() {
    let app = spawn_app().await;
    let practice = app.new_practice("Long Visit").await;
    app.setup_tiep(&practice).await;
    let key = app.session(&practice.clinician, None).await;
    // The frame stays open past the handshake token's life: the practice's token carries on.
    app.hint.expire_access_tokens();
    assert_eq!(
        app.start_visit(&key, &practice.patients[0]).await.status(),
        303
    );
    let (status, found) = Page::of(app.htmx_get("/hint/patients/search?q=av", &key).await).await;
    assert_eq!(status, 200);
    assert!(!found.has(".error"), "{}", found.text());
    assert!(found.count("a.name") >= 1, "the search reached Hint");

    // Without the practice's token (not installed, or revoked) the session has ended for
    // Hint: a 401 that says to reopen Chartbridge from Hint, never a 5xx.
    sqlx::query("DELETE FROM hint_installations WHERE practice_id = $1")
        .bind(&practice.id)
        .execute(app.state.db.writer())
        .await
        .unwrap();
    let (status, page) = Page::of(app.start_visit(&key, &practice.patients[1]).await).await;
    assert_eq!(status, 401);
    assert!(
        page.text_of("main").contains("Session expired"),
        "{}",
        page.text_of("main")
    );
    assert_eq!(
        app.visits_of(&practice.id).await.len(),
        1,
        "nothing started"
    );
}

#[tokio::test]
async fn sandbox_tiep_refuses_a_launch_without_context() {
    let app = spawn_app().await;
    let practice = app.new_practice("Context Practice").await;
    app.setup_tiep(&practice).await;
    let key = app.session(&practice.clinician, None).await;
    let launch = app.start_visit(&key, &practice.patients[0]).await.headers()["location"]
        .to_str()
        .unwrap()
        .to_string();
    let mut without = url::Url::parse(&launch).unwrap();
    let pairs: Vec<(String, String)> = without
        .query_pairs()
        .filter(|(k, _)| k != "context")
        .map(|(k, v)| (k.into(), v.into()))
        .collect();
    without.query_pairs_mut().clear().extend_pairs(pairs);
    let (status, page) = Page::of(app.http.get(without).send().await.unwrap()).await;
    assert_eq!(status, 400);
    assert!(page.text().contains("patient context"));
}

#[tokio::test]
async fn concurrent_reports_and_their_duplicates_are_each_stored_once() {
    let app = spawn_app().await;
    let (practice, visits) = app.open_tiep_visit_per_patient("Burst Practice").await;
    // Every report five times, all at once.
    let mut sends = Vec::new();
    for round in 0..5 {
        for visit in &visits {
            let report = json!({"context": {"visit_id": visit.id}, "payload": {"reason": format!("round {round}")}});
            let app = &app;
            let practice_id = practice.id.clone();
            sends.push(async move {
                app.post_tiep_webhook(&practice_id, &report, TIEP_HOOK_SECRET)
                    .await
            });
        }
    }
    let answers = futures::future::join_all(sends).await;
    let mut applied = 0;
    for answer in answers {
        assert_eq!(answer.status(), 200);
        // A different report that came once the visit was signed is a correction, not a
        // second completion.
        let answer = answer.json::<serde_json::Value>().await.unwrap();
        if answer["duplicate"] == false && answer["corrected"] != true {
            applied += 1;
        }
    }
    assert_eq!(applied, 3, "each visit completed exactly once");
    app.run_jobs().await;
    for patient in &practice.patients {
        // Signed, or addended where a different report corrected it afterwards.
        let interactions = app.hint.interactions_for(patient);
        assert_eq!(interactions.len(), 1);
        assert!(
            ["signed", "addended"].contains(&interactions[0].status.as_str()),
            "{:?}",
            interactions[0].status
        );
    }
}

#[tokio::test]
async fn a_hook_secret_rotated_on_another_instance_takes_effect_at_once() {
    let app = spawn_app_with(|s| s.secrets_cache_ttl = Duration::from_millis(300)).await;
    let practice = app.new_practice("Rotating Practice").await;
    app.setup_tiep(&practice).await;
    let key = app.session(&practice.clinician, None).await;
    assert_eq!(
        app.start_visit(&key, &practice.patients[0]).await.status(),
        303
    );
    assert_eq!(
        app.start_visit(&key, &practice.patients[1]).await.status(),
        303
    );
    let visits = app.visits_of(&practice.id).await;
    let report =
        |i: usize| json!({"context": {"visit_id": visits[i].id}, "payload": {"reason": "x"}});
    // This instance now holds the old secret in its cache.
    assert_eq!(
        app.post_tiep_webhook(&practice.id, &report(0), TIEP_HOOK_SECRET)
            .await
            .status(),
        200
    );

    // An admin rotates the secret through another instance.
    let other = app.another_instance().await;
    let admin = app.session(&practice.admin, None).await;
    let new_secret = "rotated-hook-secret-0002";
    let saved = app
        .http
        .post(format!("{other}/hint/settings/tiep"))
        .header("x-hint-session-key", &admin)
        .form(&[
            ("api_key", ""),
            ("hook_secret", new_secret),
            (
                "form",
                &chartbridge::partners::tiep::default_form().to_string(),
            ),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(saved.status(), 200);

    let accepted = app
        .post_tiep_webhook(&practice.id, &report(1), new_secret)
        .await;
    assert_eq!(accepted.status(), 200, "the new secret is accepted at once");
    assert_eq!(
        app.visit(&practice.id, &visits[1].id).await.state.as_str(),
        "completed"
    );
    // Once this instance's cache expires, the old secret is refused.
    tokio::time::sleep(Duration::from_millis(400)).await;
    let forged = app
        .post_tiep_webhook(&practice.id, &report(1), TIEP_HOOK_SECRET)
        .await;
    assert_eq!(forged.status(), 401, "the old secret is refused");
}

#[tokio::test]
async fn the_report_shows_fields_in_the_form_s_order() {
    let app = spawn_app().await;
    let (practice, key, visit) = app.open_tiep_visit("Order Practice").await;
    let report = json!({"context": {"visit_id": visit.id}, "payload": {"plan": "Rest", "reason": "Knee", "pain-level": 4}});
    assert_eq!(
        app.post_tiep_webhook(&practice.id, &report, TIEP_HOOK_SECRET)
            .await
            .status(),
        200
    );
    let page = app
        .page(
            "clinical_interaction",
            &format!("{key}&visit_id={}", visit.id),
        )
        .await;
    assert_eq!(
        page.texts(".report th"),
        ["Reason for visit", "Pain level", "Assessment", "Plan"],
        "in the form's order"
    );
    assert_eq!(page.texts(".report td"), ["Knee", "4", "—", "Rest"]);
}

#[tokio::test]
async fn the_reopened_visit_refreshes_itself_until_hint_says_what_it_says() {
    let app = spawn_app().await;
    let (practice, key, visit) = app.open_tiep_visit("Refresh Practice").await;
    let page = |key: String| {
        let app = &app;
        let visit_id = visit.id.clone();
        async move {
            app.page(
                "clinical_interaction",
                &format!("{key}&visit_id={visit_id}"),
            )
            .await
        }
    };
    let open = page(key.clone()).await;
    assert_eq!(
        open.attr("#visit", "hx-trigger").as_deref(),
        Some("every 5s"),
        "polls while open"
    );
    assert_eq!(open.attr("#visit", "hx-select").as_deref(), Some("#visit"));
    assert!(
        open.text_of("#visit .hint")
            .contains("The result is not in yet")
    );
    let report = json!({"context": {"visit_id": visit.id}, "payload": {"reason": "Done"}});
    assert_eq!(
        app.post_tiep_webhook(&practice.id, &report, TIEP_HOOK_SECRET)
            .await
            .status(),
        200
    );
    // Completed, but Hint's chart has not been told yet: it keeps looking.
    let done = page(key.clone()).await;
    assert_eq!(done.texts(".report td"), ["Done", "—", "—", "—"]);
    assert_eq!(done.text_of(".meta dd:nth-of-type(4)"), "Not yet in Hint");
    assert!(
        done.attr("#visit", "hx-trigger").is_some(),
        "Hint does not say signed yet"
    );
    // Once Hint has it signed, the page has nothing more to learn.
    app.wait_for_interaction(&practice.patients[0], "signed")
        .await;
    let synced = page(key).await;
    assert_eq!(
        synced.text_of(".meta dd:nth-of-type(4)"),
        "In Hint as signed"
    );
    assert!(
        synced.attr("#visit", "hx-trigger").is_none(),
        "stops polling once finished and in Hint as such"
    );
}

#[tokio::test]
async fn a_report_we_cannot_place_is_kept_sealed_for_admins_to_review() {
    let app = spawn_app().await;
    let practice = app.new_practice("Review Practice").await;
    app.setup_tiep(&practice).await;
    let stray = json!({"context": {"visit_id": "vis_from_elsewhere", "patient": {"resourceType": "Patient",
        "identifier": [{"value": "pat-elsewhere"}], "name": [{"text": "Stray Patient"}]}},
        "payload": {"reason": "Stray report text"}});
    for _ in 0..2 {
        let answer = app
            .post_tiep_webhook(&practice.id, &stray, TIEP_HOOK_SECRET)
            .await;
        assert_eq!(answer.status(), 202);
        assert_eq!(
            answer.json::<serde_json::Value>().await.unwrap()["matched"],
            false
        );
    }
    let raw: Vec<String> = sqlx::query_scalar("SELECT body_sealed FROM unmatched_deliveries")
        .fetch_all(app.state.db.reader())
        .await
        .unwrap();
    assert_eq!(raw.len(), 1, "the same delivery twice is kept once");
    assert!(!raw[0].contains("Stray"), "sealed at rest");

    let admin = app.session(&practice.admin, None).await;
    let core = app.page("core_page", &admin).await;
    assert!(
        core.text_of(".attention")
            .starts_with("1 partner delivery matched no visit.")
    );
    let settings = app.page("settings", &admin).await;
    assert_eq!(settings.texts("#unmatched li code"), ["vis_from_elsewhere"]);
    let view = settings
        .attr("#unmatched li a", "href")
        .expect("a view link");
    let (status, page) = Page::of(app.get(&view).await).await;
    assert_eq!(status, 200);
    assert!(page.text_of("main").contains("Stray report text"));
    let id = view
        .trim_start_matches("/hint/unmatched/")
        .split('?')
        .next()
        .unwrap()
        .to_string();

    let clinician = app.session(&practice.clinician, None).await;
    assert_eq!(
        app.surface(&format!("unmatched/{id}"), &clinician)
            .await
            .status(),
        403
    );
    let dismissed = app
        .http
        .post(format!("{}/hint/unmatched/{id}/dismiss", app.address))
        .header("x-hint-session-key", &admin)
        .send()
        .await
        .unwrap();
    assert_eq!(dismissed.status(), 200);
    let settings = app.page("settings", &admin).await;
    assert!(!settings.has("#unmatched"), "dismissed, no longer listed");
}

#[tokio::test]
async fn a_clinician_cancels_an_open_visit_and_hint_holds_it_deleted() {
    let app = spawn_app().await;
    let (practice, key, visit) = app.open_tiep_visit("Cancel Clinic").await;
    app.wait_for_interaction(&practice.patients[0], "draft")
        .await;
    let cancel = format!("/hint/visits/{}/cancel", visit.id);

    // Staff without the clinician role, and another practice's clinician, cannot cancel it.
    let other = app.new_practice("Other Clinic").await;
    let stranger = app.session(&other.clinician, None).await;
    assert_eq!(app.post_form(&cancel, &stranger, &[]).await.status(), 404);
    let admin = app.session(&practice.admin, None).await;
    assert_eq!(app.post_form(&cancel, &admin, &[]).await.status(), 403);
    assert_eq!(
        app.visit(&practice.id, &visit.id).await.state.as_str(),
        "in_progress"
    );

    let (status, page) = Page::of(app.post_form(&cancel, &key, &[]).await).await;
    assert_eq!(status, 200);
    assert_eq!(
        page.text_of(".meta .state"),
        "Cancelled",
        "the page shows the visit cancelled"
    );
    assert!(!page.has("form.cancel"), "no second cancel button");
    assert_eq!(
        app.visit(&practice.id, &visit.id).await.state.as_str(),
        "cancelled"
    );
    app.wait_for_interaction(&practice.patients[0], "deleted")
        .await;

    // A second cancel is refused in words.
    let (status, again) = Page::of(app.post_form(&cancel, &key, &[]).await).await;
    assert_eq!(status, 422);
    assert!(again.text_of("[role=alert]").contains("already cancelled"));
}
