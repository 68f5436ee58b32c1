//! MediQuo: consultations arrive by webhook only and become signed interactions in Hint.

use chartbridge_sandbox::hint::Faults;
use serde_json::json;

use crate::helpers::{MEDIQUO_SIGNATURE, Page, TestApp, spawn_app};

async fn post_event(
    app: &TestApp,
    practice_id: &str,
    body: &str,
    signature: Option<&str>,
) -> reqwest::Response {
    let mut request = app
        .http
        .post(format!("{}/webhooks/mediquo/{practice_id}", app.address))
        .header("content-type", "application/json")
        .body(body.to_string());
    if let Some(s) = signature {
        request = request.header("x-webhook-signature", s);
    }
    request.send().await.unwrap()
}

/// A signed SOAP report MediQuo sends for `patient`, the `n`-th (each its own body).
fn report_sent(patient: &str, n: usize) -> String {
    json!({"type": "patient_report_sent", "occurred_on": n,
        "payload": {"type": "soap", "content": {"plan": format!("plan {n}")},
        "patient": {"code": patient}}})
    .to_string()
}

async fn visits_of(app: &TestApp, practice_id: &str) -> Vec<chartbridge::visits::Visit> {
    app.visits_of(practice_id).await
}

#[tokio::test]
async fn a_finished_consultation_becomes_a_signed_interaction_showing_the_whole_report() {
    let app = spawn_app().await;
    let practice = app.new_practice("MediQuo Clinic").await;
    let integration = app.setup_mediquo(&practice).await;
    let patient = &practice.patients[0];

    let status = app
        .mediquo
        .send_consultation_finished(&integration, patient)
        .await;
    assert_eq!(status, Some(200));
    app.wait_for_interaction(patient, "signed").await;

    let visit = app.only_visit(&practice.id).await;
    assert_eq!(visit.partner, "mediquo");
    assert_eq!(visit.state.as_str(), "completed");
    assert_eq!(
        visit.patient_name, "Ava Thompson",
        "the name comes from Hint"
    );
    assert_eq!(visit.user_name, "Dra. Laura Martín");
    let interaction = app.hint.interactions_for(patient)[0].clone();
    assert!(
        interaction
            .integration_web_link
            .as_deref()
            .is_some_and(|l| l.ends_with(&format!("visit_id={}", visit.id)))
    );

    // Reopened from the chart, the page shows the SOAP report, prescriptions and history.
    let key = app
        .hint
        .handshake(&practice.clinician, Some(patient), Some(&interaction.id))
        .await
        .unwrap();
    let page = app.page("clinical_interaction", &key).await;
    assert_eq!(
        page.text_of(".result h3"),
        "Consultation finished on MediQuo"
    );
    assert!(
        page.text_of(".result .meta dd")
            .contains("Medicina General")
    );
    assert_eq!(
        page.texts(".soap th"),
        ["Subjective", "Objective", "Assessment", "Plan"]
    );
    let soap = page.texts(".soap td");
    assert!(soap[0].contains("sore throat and mild fever"), "{soap:?}");
    assert!(soap[2].contains("Acute streptococcal pharyngitis likely"));
    assert!(soap[3].contains("Amoxicillin 500 mg three times daily"));
    assert_eq!(
        page.texts(".result h4"),
        [
            "SOAP report",
            "Prescriptions",
            "Allergies",
            "Diseases",
            "Medications"
        ]
    );
    assert!(page.text_of(".prescriptions").contains("amoxicillin"));
    let history = page.texts(".history li");
    for expected in ["Penicillin", "Asthma", "Salbutamol", "2 puffs as needed"] {
        assert!(
            history.iter().any(|h| h.contains(expected)),
            "the history shows {expected:?}: {history:?}"
        );
    }
    assert!(
        !page.has("form.cancel"),
        "a finished consultation cannot be cancelled"
    );

    // The consultation itself is in the chart: one document with the SOAP report, the
    // prescriptions and the history.
    let documents = app.hint.documents_for(patient);
    assert_eq!(documents.len(), 1, "one document for the consultation");
    let note = &documents[0];
    assert_eq!(note.title.as_deref(), Some("MediQuo consultation"));
    assert_eq!(
        note.integration_record_id.as_deref(),
        Some(visit.id.as_str())
    );
    for expected in [
        "### SOAP report",
        "**Subjective:** ",
        "sore throat and mild fever",
        "Acute streptococcal pharyngitis likely",
        "Amoxicillin 500 mg three times daily",
        "### Prescriptions\n\n- amoxicillin",
        "### Allergies\n\n- Penicillin",
        "Salbutamol",
        "2 puffs as needed",
    ] {
        assert!(
            note.body.contains(expected),
            "{expected:?} in {}",
            note.body
        );
    }

    // A report sent on its own is a second visit, signed too.
    assert_eq!(
        app.mediquo.send_report(&integration, patient).await,
        Some(200)
    );
    app.run_jobs().await;
    assert_eq!(
        app.hint
            .interactions_for(patient)
            .iter()
            .filter(|i| i.status == "signed")
            .count(),
        2,
        "two signed MediQuo interactions"
    );
    assert_eq!(
        app.hint.documents_for(patient).len(),
        2,
        "one document each"
    );
    assert!(
        app.hint
            .documents_for(patient)
            .iter()
            .any(|d| d.title.as_deref() == Some("MediQuo report"))
    );
    let chart = app
        .page(
            "clinical_chart",
            &app.session(&practice.clinician, Some(patient)).await,
        )
        .await;
    assert!(
        chart
            .texts("section.patient .hint")
            .iter()
            .any(|h| h
                == "MediQuo consultations arrive on their own and appear below when finished.")
    );
    assert_eq!(chart.count("table.visits tbody tr"), 2);
}

#[tokio::test]
async fn a_wrong_or_missing_signature_is_refused_and_stores_nothing() {
    let app = spawn_app().await;
    let practice = app.new_practice("Guarded Clinic").await;
    app.setup_mediquo(&practice).await;
    let body = json!({"type": "patient_report_sent", "occurred_on": 1,
        "payload": {"type": "soap", "content": {"plan": "x"}, "patient": {"code": practice.patients[0]}}})
    .to_string();

    for signature in [
        None,
        Some(""),
        Some("mediquo-test-signature-0002"),
        Some("x"),
    ] {
        let response = post_event(&app, &practice.id, &body, signature).await;
        assert_eq!(response.status(), 401, "signature {signature:?}");
    }
    // Another practice's value does not open this practice's door.
    let other = app.new_practice("Other Clinic").await;
    let response = post_event(&app, &other.id, &body, Some(MEDIQUO_SIGNATURE)).await;
    assert_eq!(
        response.status(),
        401,
        "no MediQuo set up there: refused like a wrong signature"
    );

    assert!(visits_of(&app, &practice.id).await.is_empty());
    assert!(app.unmatched_of(&practice.id).await.is_empty());
    assert!(app.hint.interactions_for(&practice.patients[0]).is_empty());
}

#[tokio::test]
async fn the_same_delivery_twice_or_at_once_is_one_visit_and_other_types_are_ignored() {
    let app = spawn_app().await;
    let practice = app.new_practice("Retry Clinic").await;
    app.setup_mediquo(&practice).await;
    let patient = &practice.patients[1];
    let finished = json!({"type": "patient_consultation_finished", "occurred_on": 1704063600,
        "payload": {"consultation": {"id": "cons-1", "type": "chat"},
                    "reports": [{"id": "r-1", "type": "soap", "content": {"plan": "Rest"}}],
                    "patient": {"code": patient}}})
    .to_string();
    let sends = (0..5).map(|_| post_event(&app, &practice.id, &finished, Some(MEDIQUO_SIGNATURE)));
    for response in futures::future::join_all(sends).await {
        assert_eq!(response.status(), 200);
    }
    // The same consultation id in a body that differs (a later retry) is still the same visit.
    let retried = finished.replace("1704063600", "1704063999");
    assert_eq!(
        post_event(&app, &practice.id, &retried, Some(MEDIQUO_SIGNATURE))
            .await
            .status(),
        200
    );
    // A report without an id: the same body twice is one visit.
    let report = json!({"type": "patient_report_sent", "occurred_on": 5,
        "payload": {"type": "soap", "content": {"plan": "Fluids"}, "patient": {"code": patient}}})
    .to_string();
    for _ in 0..2 {
        let response = post_event(&app, &practice.id, &report, Some(MEDIQUO_SIGNATURE)).await;
        assert_eq!(response.status(), 200);
    }
    // Types we do not turn into visits are acknowledged and ignored.
    for kind in [
        "patient_consultation_created",
        "prescription_created",
        "something_new",
    ] {
        let body =
            json!({"type": kind, "occurred_on": 1, "payload": {"patient": {"code": patient}}});
        let response = post_event(
            &app,
            &practice.id,
            &body.to_string(),
            Some(MEDIQUO_SIGNATURE),
        )
        .await;
        assert_eq!(response.status(), 200, "{kind}");
        assert_eq!(
            response.json::<serde_json::Value>().await.unwrap()["ignored"],
            true
        );
    }

    let stored = visits_of(&app, &practice.id).await;
    assert_eq!(stored.len(), 2, "one consultation and one report");
    assert_eq!(
        stored
            .iter()
            .filter(|v| v.partner_ref.as_deref() == Some("consultation:cons-1"))
            .count(),
        1
    );
    app.run_jobs().await;
    assert_eq!(
        app.hint.interactions_for(patient).len(),
        2,
        "two signed interactions, no more"
    );
}

#[tokio::test]
async fn a_delivery_we_cannot_place_is_kept_for_admins_and_bad_bodies_are_refused() {
    let app = spawn_app().await;
    let practice = app.new_practice("Careful Clinic").await;
    let integration = app.setup_mediquo(&practice).await;
    let other = app.new_practice("Neighbour Clinic").await;

    // A code Hint does not know, and another practice's patient: kept, not written anywhere.
    assert_eq!(
        app.mediquo
            .send_consultation_finished(&integration, "pat-does-not-exist")
            .await,
        Some(202)
    );
    assert_eq!(
        app.mediquo
            .send_consultation_finished(&integration, &other.patients[0])
            .await,
        Some(202)
    );
    // No patient code at all, and a payload of the wrong shape: kept as well.
    for payload in [
        json!({"consultation": {"id": "c-9"}, "reports": []}),
        json!({"consultation": {"id": "c-10"}, "reports": "not a list", "patient": {"code": practice.patients[0]}}),
    ] {
        let body =
            json!({"type": "patient_consultation_finished", "occurred_on": 1, "payload": payload});
        let response = post_event(
            &app,
            &practice.id,
            &body.to_string(),
            Some(MEDIQUO_SIGNATURE),
        )
        .await;
        assert_eq!(response.status(), 202);
    }
    // Not JSON, or no type: 400 and nothing kept.
    for body in ["not json", "{\"payload\": {}}"] {
        let response = post_event(&app, &practice.id, body, Some(MEDIQUO_SIGNATURE)).await;
        assert_eq!(response.status(), 400, "{body}");
    }

    assert!(visits_of(&app, &practice.id).await.is_empty());
    assert!(visits_of(&app, &other.id).await.is_empty());
    assert!(app.hint.interactions_for(&other.patients[0]).is_empty());
    let kept = app.unmatched_of(&practice.id).await;
    assert_eq!(kept.len(), 4);
    assert!(kept.iter().all(|k| k.partner == "mediquo"));

    // Admins see them in settings and can open one; the body is there to act on.
    let admin = app.session(&practice.admin, None).await;
    let settings = app.page("settings", &admin).await;
    let listed = settings.texts("#unmatched li");
    assert_eq!(listed.len(), 4);
    assert!(
        listed
            .iter()
            .any(|l| l.contains("not a patient of this practice in Hint"))
    );
    assert!(listed.iter().any(|l| l.contains("names no patient")));
    let view = settings
        .attr("#unmatched li a", "href")
        .expect("a view link");
    let (status, view) = Page::of(app.get(&view).await).await;
    assert_eq!(status, 200);
    assert!(
        view.text_of("main")
            .contains("patient_consultation_finished")
    );
}

#[tokio::test]
async fn a_consultation_hint_cannot_confirm_waits_unmatched_until_it_can() {
    let app = spawn_app().await;
    let practice = app.new_practice("Patient Clinic").await;
    let integration = app.setup_mediquo(&practice).await;
    let patient = &practice.patients[2];
    // A patient the practice's stored list does not hold yet (added in Hint since): only Hint
    // can confirm them.
    sqlx::query("DELETE FROM patient_index WHERE practice_id = $1 AND patient_id = $2")
        .bind(&practice.id)
        .bind(patient)
        .execute(&app.owner_db().await)
        .await
        .unwrap();
    app.hint.set_faults(Faults {
        patients_down: true,
        ..Faults::default()
    });
    let status = app
        .mediquo
        .send_consultation_finished(&integration, patient)
        .await;
    assert_eq!(status, Some(202), "taken, not placed");
    // Not a visit of this practice on MediQuo's word alone: kept, saying why, and retried.
    assert!(app.visits_of(&practice.id).await.is_empty());
    let kept = app.unmatched_of(&practice.id).await;
    assert_eq!(kept.len(), 1);
    assert!(
        kept[0]
            .reason
            .contains("Hint could not confirm the patient yet")
    );
    app.run_jobs().await;
    assert!(
        app.visits_of(&practice.id).await.is_empty(),
        "Hint is still down"
    );

    // Hint answers again: the retry places it with the patient's real name, signed in Hint.
    app.hint.set_faults(Faults::default());
    crate::helpers::eventually(
        std::time::Duration::from_secs(10),
        "the delivery is placed",
        || async {
            app.run_jobs().await;
            !app.visits_of(&practice.id).await.is_empty()
        },
    )
    .await;
    let visit = app.only_visit(&practice.id).await;
    assert_eq!(visit.state.as_str(), "completed");
    let name = {
        let world = app.hint.world();
        let p = world.patients.iter().find(|p| &p.id == patient).unwrap();
        format!("{} {}", p.first_name, p.last_name)
    };
    assert_eq!(visit.patient_name, name);
    app.wait_for_interaction(patient, "signed").await;
    assert!(
        app.unmatched_of(&practice.id).await.is_empty(),
        "off the list"
    );
}

#[tokio::test]
async fn only_admins_set_up_mediquo_and_the_value_must_be_long_enough() {
    let app = spawn_app().await;
    let practice = app.new_practice("Settings Clinic").await;
    let clinician = app.session(&practice.clinician, None).await;
    let admin = app.session(&practice.admin, None).await;
    let refused = app
        .post_form(
            "/hint/settings/mediquo",
            &clinician,
            &[("signature", MEDIQUO_SIGNATURE)],
        )
        .await;
    assert_eq!(refused.status(), 403);
    let short = app
        .post_form("/hint/settings/mediquo", &admin, &[("signature", "short")])
        .await;
    let (status, short) = Page::of(short).await;
    assert_eq!(status, 422);
    assert!(
        short
            .text_of("#mediquo-settings [role=alert]")
            .contains("16 to 512 characters")
    );
    assert!(!app.has_connection(&practice.id, "mediquo").await);

    let page = app.page("settings", &admin).await;
    assert_eq!(
        page.text_of("#mediquo-webhook-url"),
        format!("{}/webhooks/mediquo/{}", app.address, practice.id)
    );
    app.setup_mediquo(&practice).await;
    assert!(app.has_connection(&practice.id, "mediquo").await);
    // The value is sealed at rest, never shown back.
    let page = app.page("settings", &admin).await;
    assert!(page.text_of("#mediquo-settings").contains("MediQuo"));
    assert!(!page.source().contains(MEDIQUO_SIGNATURE));
    let stored: Vec<String> = sqlx::query_scalar(
        "SELECT secrets_sealed FROM partner_connections WHERE partner = 'mediquo'",
    )
    .fetch_all(app.state.db.reader())
    .await
    .unwrap();
    assert!(!stored[0].contains(MEDIQUO_SIGNATURE));
}

#[tokio::test]
async fn a_patient_list_loaded_for_search_names_the_patient_without_asking_hint() {
    let app = spawn_app().await;
    let practice = app.new_practice("Busy Clinic").await;
    let integration = app.setup_mediquo(&practice).await;
    let patient = &practice.patients[1];
    let key = app.session(&practice.clinician, None).await;
    let search = app.htmx_get("/hint/patients/search?q=Carter", &key).await;
    assert_eq!(search.status(), 200);
    let lookups = || {
        app.hint
            .world()
            .requests
            .iter()
            .filter(|r| *r == "GET /api/provider/patients/{id}")
            .count()
    };
    let before = lookups();
    for _ in 0..3 {
        assert_eq!(
            app.mediquo
                .send_consultation_finished(&integration, patient)
                .await,
            Some(200)
        );
    }
    assert_eq!(lookups(), before, "no per-delivery patient lookup");
    let visits = visits_of(&app, &practice.id).await;
    assert_eq!(visits.len(), 3);
    assert!(visits.iter().all(|v| v.patient_name == "Liam Carter"));
    // A code not in the list is still asked of Hint (and kept when Hint does not know it).
    assert_eq!(
        app.mediquo
            .send_consultation_finished(&integration, "pat-unknown-1")
            .await,
        Some(202)
    );
    assert_eq!(lookups(), before + 1);
}

#[tokio::test]
async fn the_consultation_sent_again_with_changes_addends_the_visit_and_unchanged_changes_nothing()
{
    let app = spawn_app().await;
    let practice = app.new_practice("MediQuo Corrections").await;
    let integration = app.setup_mediquo(&practice).await;
    let patient = &practice.patients[0];
    let consultation = |plan: &str| {
        json!({
            "type": "patient_consultation_finished",
            "occurred_on": 1_765_000_000,
            "payload": {
                "consultation": {"id": "cons-fixed-1", "type": "chat",
                    "start_date": "2026-12-06T10:00:00+01:00", "end_date": "2026-12-06T10:20:00+01:00"},
                "reports": [{"id": "report-1", "type": "soap", "content": {
                    "subjective": "Cough for a week", "objective": "Clear chest",
                    "assessment": "Viral bronchitis", "plan": plan}}],
                "patient": {"code": patient},
                "professional": {"id": "pro-1", "name": "Dra. Laura Martín"},
            }
        })
    };
    assert_eq!(
        app.mediquo
            .send(&integration, &consultation("Rest and fluids"))
            .await,
        Some(200)
    );
    app.run_jobs().await;
    // The same consultation again: nothing changes.
    assert_eq!(
        app.mediquo
            .send(&integration, &consultation("Rest and fluids"))
            .await,
        Some(200)
    );
    app.run_jobs().await;
    let visit = app.only_visit(&practice.id).await;
    assert_eq!(visit.addenda, 0);
    // Sent again corrected: the visit is addended, both versions in the chart.
    assert_eq!(
        app.mediquo
            .send(
                &integration,
                &consultation("Rest, fluids, and a chest X-ray if no better")
            )
            .await,
        Some(200)
    );
    app.run_jobs().await;
    let visit = app.only_visit(&practice.id).await;
    assert_eq!(visit.addenda, 1);
    assert_eq!(app.hint.interactions_for(patient)[0].status, "addended");
    let documents = app.hint.documents_for(patient);
    assert_eq!(documents.len(), 1);
    assert_eq!(documents[0].status, "addended");
    let body = &documents[0].body;
    assert!(body.contains("chest X\\-ray if no better"), "{body}");
    assert!(body.contains(":** Plan changed\\."), "{body}");
    assert!(body.contains("**Plan:** Rest and fluids"), "{body}");
}

#[tokio::test]
async fn a_new_signature_value_keeps_the_old_one_valid_until_the_admin_retires_it() {
    let app = spawn_app().await;
    let practice = app.new_practice("Rotating Clinic").await;
    app.setup_mediquo(&practice).await;
    let admin = app.session(&practice.admin, None).await;
    let report = |n: usize| report_sent(&practice.patients[0], n);
    const NEW: &str = "mediquo-rotated-value-0003";
    let saved = app
        .post_form("/hint/settings/mediquo", &admin, &[("signature", NEW)])
        .await;
    let (status, section) = Page::of(saved).await;
    assert_eq!(status, 200);
    assert!(
        section
            .text_of("#mediquo-previous")
            .contains("still accepted")
    );
    // Both values open the door while MediQuo switches; a third does not.
    for (n, value) in [(1, MEDIQUO_SIGNATURE), (2, NEW)] {
        let answer = post_event(&app, &practice.id, &report(n), Some(value)).await;
        assert_eq!(answer.status(), 200, "value {n}");
    }
    let third = post_event(
        &app,
        &practice.id,
        &report(3),
        Some("mediquo-some-other-value"),
    )
    .await;
    assert_eq!(third.status(), 401);
    // Saved again with the new value unchanged (the sources edited alone): nothing moves.
    let saved = app
        .post_form("/hint/settings/mediquo", &admin, &[("signature", "")])
        .await;
    assert_eq!(saved.status(), 200);
    let old = post_event(&app, &practice.id, &report(4), Some(MEDIQUO_SIGNATURE)).await;
    assert_eq!(old.status(), 200, "still valid until retired");

    // Retired: only the new value.
    let saved = app
        .post_form(
            "/hint/settings/mediquo",
            &admin,
            &[("signature", ""), ("retire_previous", "on")],
        )
        .await;
    let (status, section) = Page::of(saved).await;
    assert_eq!(status, 200);
    assert!(!section.has("#mediquo-previous"));
    let old = post_event(&app, &practice.id, &report(5), Some(MEDIQUO_SIGNATURE)).await;
    assert_eq!(old.status(), 401);
    let new = post_event(&app, &practice.id, &report(6), Some(NEW)).await;
    assert_eq!(new.status(), 200);
    assert_eq!(visits_of(&app, &practice.id).await.len(), 4);
}

#[tokio::test]
async fn deliveries_from_an_address_mediquo_does_not_send_from_are_refused() {
    let app = spawn_app().await;
    let practice = app.new_practice("Listed Clinic").await;
    app.setup_mediquo(&practice).await;
    let admin = app.session(&practice.admin, None).await;
    let body = json!({"type": "patient_report_sent", "occurred_on": 1,
        "payload": {"type": "soap", "content": {"plan": "x"}, "patient": {"code": practice.patients[0]}}})
    .to_string();
    // A list that does not parse is refused, and changes nothing.
    let refused = app
        .post_form(
            "/hint/settings/mediquo",
            &admin,
            &[("signature", ""), ("sources", "203.0.113.0/24, mediquo")],
        )
        .await;
    let (status, section) = Page::of(refused).await;
    assert_eq!(status, 422);
    assert!(
        section
            .text_of("#mediquo-settings [role=alert]")
            .contains("addresses or ranges")
    );
    assert_eq!(
        post_event(&app, &practice.id, &body, Some(MEDIQUO_SIGNATURE))
            .await
            .status(),
        200
    );
    // MediQuo named elsewhere: this test's deliveries (from loopback) are refused, even with
    // the value.
    let saved = app
        .post_form(
            "/hint/settings/mediquo",
            &admin,
            &[("signature", ""), ("sources", "203.0.113.0/24")],
        )
        .await;
    let (status, section) = Page::of(saved).await;
    assert_eq!(status, 200);
    assert_eq!(
        section.attr("#mediquo-settings input[name=sources]", "value"),
        Some("203.0.113.0/24".to_string())
    );
    let refused = post_event(&app, &practice.id, &body, Some(MEDIQUO_SIGNATURE)).await;
    assert_eq!(refused.status(), 401);
    // Listed: admitted.
    let saved = app
        .post_form(
            "/hint/settings/mediquo",
            &admin,
            &[("signature", ""), ("sources", "203.0.113.0/24, 127.0.0.1")],
        )
        .await;
    assert_eq!(saved.status(), 200);
    let admitted = post_event(&app, &practice.id, &body, Some(MEDIQUO_SIGNATURE)).await;
    assert_eq!(admitted.status(), 200);
    assert_eq!(visits_of(&app, &practice.id).await.len(), 1);
}

#[tokio::test]
async fn a_value_saved_by_mistake_and_corrected_keeps_the_one_mediquo_still_sends() {
    let app = spawn_app().await;
    let practice = app.new_practice("Typo Clinic").await;
    app.setup_mediquo(&practice).await;
    let admin = app.session(&practice.admin, None).await;
    for value in [
        "mediquo-value-with-a-typo-01",
        "mediquo-value-as-agreed-0002",
    ] {
        let saved = app
            .post_form("/hint/settings/mediquo", &admin, &[("signature", value)])
            .await;
        assert_eq!(saved.status(), 200);
    }
    let body = |n: usize| report_sent(&practice.patients[0], n);
    // The value MediQuo sent all along still opens the door; the mistaken one does not.
    let live = post_event(&app, &practice.id, &body(1), Some(MEDIQUO_SIGNATURE)).await;
    assert_eq!(live.status(), 200);
    let typo = post_event(
        &app,
        &practice.id,
        &body(2),
        Some("mediquo-value-with-a-typo-01"),
    )
    .await;
    assert_eq!(typo.status(), 401);
    let agreed = post_event(
        &app,
        &practice.id,
        &body(3),
        Some("mediquo-value-as-agreed-0002"),
    )
    .await;
    assert_eq!(agreed.status(), 200);
}

#[tokio::test]
async fn a_patient_of_the_practice_s_stored_list_is_placed_without_asking_hint() {
    let app = spawn_app().await;
    let practice = app.new_practice("Listed Patients Clinic").await;
    let integration = app.setup_mediquo(&practice).await;
    let patient = &practice.patients[1];
    let indexed: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM patient_index WHERE practice_id = $1 AND patient_id = $2",
    )
    .bind(&practice.id)
    .bind(patient)
    .fetch_one(app.state.db.reader())
    .await
    .unwrap();
    assert_eq!(indexed, 1, "the practice's list is stored");
    // Hint down, and this instance holds no copy of the list in memory: the stored list names
    // the patient (a burst across many practices never waits on Hint for names).
    app.hint.set_faults(Faults {
        patients_down: true,
        ..Faults::default()
    });
    let status = app
        .mediquo
        .send_consultation_finished(&integration, patient)
        .await;
    assert_eq!(status, Some(200));
    let visits = visits_of(&app, &practice.id).await;
    assert_eq!(visits.len(), 1);
    assert_eq!(visits[0].patient_name, "Liam Carter");
}
