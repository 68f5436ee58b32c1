//! Restarts that nobody notices: a database that is away for a moment is a 503 with
//! `Retry-After`, never a 500.

use serde_json::json;

use crate::helpers::{TIEP_HOOK_SECRET, sign, spawn_app};

#[tokio::test]
async fn a_database_that_is_away_is_a_503_with_retry_after_never_a_500() {
    let app = spawn_app().await;
    let practice = app.new_practice("Database Away").await;
    app.setup_tiep(&practice).await;
    let key = app.session(&practice.clinician, None).await;
    let visit_id = app
        .started_visit_id(&practice.id, &key, &practice.patients[0])
        .await;
    app.cut_off_database().await;

    // Hint's handshake (JSON).
    let body = json!({"timestamp": crate::helpers::now_rfc3339(),
        "user": {"id": practice.clinician, "partner_roles": ["clinician"]},
        "practice": {"id": practice.id}})
    .to_string();
    let handshake = app
        .handshake_raw(body.as_bytes(), Some(&sign(body.as_bytes())))
        .await;
    assert_eq!(handshake.status(), 503);
    assert_eq!(handshake.headers()["retry-after"], "1");
    let answer: serde_json::Value = handshake.json().await.unwrap();
    assert!(answer["error"].as_str().unwrap().contains("unavailable"));

    // A page in Hint's frame: the frame's error page, with the 503.
    let page = app.surface("core_page", &key).await;
    assert_eq!(page.status(), 503);
    assert_eq!(page.headers()["retry-after"], "1");
    assert!(
        page.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
    assert!(page.text().await.unwrap().contains("Briefly unavailable"));

    // A partner's signed delivery.
    let report = json!({"context": {"visit_id": visit_id}, "payload": {"reason": "Away"}});
    let hook = app
        .post_tiep_webhook(&practice.id, &report, TIEP_HOOK_SECRET)
        .await;
    assert_eq!(hook.status(), 503);
    assert_eq!(hook.headers()["retry-after"], "1");
}
