//! Logs carry ids, never patient data or secrets.

use std::sync::atomic::Ordering;

use crate::helpers::{CAPTURED, CAPTURING, TIEP_HOOK_SECRET, spawn_app};

#[tokio::test]
async fn a_whole_visit_logs_no_patient_data_and_no_secrets() {
    // Everything the binary logs while this test runs is captured (other tests' lines too:
    // none may carry patient data or secrets either).
    let app = spawn_app().await;
    CAPTURED.0.lock().unwrap().clear();
    CAPTURING.store(true, Ordering::SeqCst);
    let practice = app.new_practice("Logged Practice").await;
    let api_key = app.setup_tiep(&practice).await;
    let patient = &practice.patients[0];
    let key = app.session(&practice.clinician, Some(patient)).await;
    assert_eq!(app.surface("clinical_chart", &key).await.status(), 200);
    let search = app.htmx_get("/hint/patients/search?q=Thompson", &key).await;
    assert_eq!(search.status(), 200);
    let started = app.start_visit(&key, patient).await;
    let launch = started.headers()["location"].to_str().unwrap().to_string();
    let saved = app
        .save_tiep_report(
            &launch,
            &[
                ("reason", "Confidential knee complaint"),
                ("pain-level", "7"),
            ],
        )
        .await;
    assert_eq!(saved.status(), 200);
    app.wait_for_interaction(patient, "signed").await;
    // A forged webhook is logged as refused, without its body.
    let forged = serde_json::json!({"context": {"visit_id": "vis_x"}, "payload": {"reason": "Forged secret text"}});
    assert_eq!(
        app.post_tiep_webhook(&practice.id, &forged, "wrong-secret-0000000")
            .await
            .status(),
        401
    );

    // The other partners: a MediQuo consultation, an HCW invite with the doctor's sign-in, and
    // Haidy documents (their report text, contact details, file names and secrets stay out).
    let integration = app.setup_mediquo(&practice).await;
    assert_eq!(
        app.mediquo
            .send_consultation_finished(&integration, patient)
            .await,
        Some(200)
    );
    app.setup_hcw(&practice, None).await;
    let hcw_visit = app.launch_hcw(&practice.id, &key, patient).await;
    app.hcw_sign_in(&key, &hcw_visit).await;
    let haidy_token = app.setup_haidy(&practice).await;
    let labs = (
        "ava-thompson-labs.txt",
        &b"Confidential lab values"[..],
        "text/plain",
    );
    assert_eq!(app.launch_haidy(&key, patient, labs).await.status(), 303);

    // What a caller chooses stays out of the log: an Instant On code in the path, a request id
    // that is not an id (replaced, and ours is answered), and a partner's own words (HCW
    // refusing an unknown queue: the clinician reads them, the log does not).
    let code = "LeakedInstallCode0123456789abcdef";
    let install = app
        .http
        .post(format!("{}/hint/connect/{code}", app.address))
        .send()
        .await
        .unwrap();
    assert_eq!(install.status(), 400, "Hint refuses the unknown code");
    let chosen = app
        .http
        .get(format!("{}/healthz", app.address))
        .header("x-request-id", "chosen id\"}{\"level\":\"ERROR")
        .send()
        .await
        .unwrap();
    let answered = chosen.headers()["x-request-id"].to_str().unwrap();
    assert!(answered.len() == 16 && answered.chars().all(|c| c.is_ascii_hexdigit()));
    // An id-shaped one is logged beside ours; the request still goes by ours.
    let quoted = app
        .http
        .get(format!("{}/hint/core_page?session_key={key}", app.address))
        .header("x-request-id", "hint-support-4242")
        .send()
        .await
        .unwrap();
    assert_ne!(quoted.headers()["x-request-id"], "hint-support-4242");
    let fields = app.connect(&practice, &app.partners.hcw).await;
    let mut routed: Vec<(&str, &str)> = fields.iter().map(|(k, v)| (*k, v.as_str())).collect();
    routed.retain(|(k, _)| !["routing", "queue"].contains(k));
    routed.extend([("routing", "queue"), ("queue", "Nocturnal Ward")]);
    assert_eq!(
        app.save_settings(&practice, "hcw", &routed).await.status(),
        200
    );
    let refused = app
        .post_form(
            "/hint/partners/hcw/launch",
            &key,
            &[("patient_id", patient), ("language", "en")],
        )
        .await;
    assert!(
        refused
            .text()
            .await
            .unwrap()
            .contains("queue Nocturnal Ward doesn")
    );

    // Requests that look proxied while no proxy is trusted: the log says so, once.
    for _ in 0..3 {
        let proxied = app
            .http
            .get(format!("{}/healthz", app.address))
            .header("x-forwarded-for", "203.0.113.7")
            .send()
            .await
            .unwrap();
        assert_eq!(proxied.status(), 200);
    }

    let token = app.practice_token(&practice.id).await.unwrap();
    CAPTURING.store(false, Ordering::SeqCst);
    let logs = String::from_utf8(CAPTURED.0.lock().unwrap().clone()).unwrap();
    assert!(logs.contains("visit completed"), "the capture works");
    assert!(logs.contains("\"caller_request_id\":\"hint-support-4242\""));
    assert!(logs.contains(&practice.id), "ids are logged");
    assert_eq!(
        logs.matches("X-Forwarded-For from a peer that is not a trusted proxy")
            .count(),
        1,
        "said once"
    );
    for secret in [
        "Ava",
        "Thompson",
        "1984-03-12",
        "Confidential knee complaint",
        "Forged secret text",
        &key,
        &api_key,
        TIEP_HOOK_SECRET,
        &token,
        crate::helpers::WEBHOOK_SECRET,
        "sore throat",
        "Penicillin",
        "Salbutamol",
        "ava.thompson@patients.example",
        "+15555550100",
        "ava-thompson-labs",
        "Confidential lab values",
        crate::helpers::MEDIQUO_SIGNATURE,
        chartbridge_sandbox::hcw::SERVICE_PASSWORD,
        crate::helpers::HCW_SSO_SECRET,
        &haidy_token,
        "eyJ",
        "LeakedInstallCode",
        "chosen id",
        "Nocturnal",
    ] {
        let line = logs
            .lines()
            .find(|l| l.contains(secret))
            .unwrap_or_default();
        assert!(
            !logs.contains(secret),
            "the log contains {secret:?}: {line}"
        );
    }
}
