//! What an attacker's requests get: every refusal says the same, changes nothing, and gives
//! away nothing about which practice uses what.

use crate::helpers::{TIEP_HOOK_SECRET, spawn_app};

#[tokio::test]
async fn partner_webhooks_answer_the_same_401_for_every_refusal() {
    let app = spawn_app().await;
    let with_tiep = app.new_practice("Uses Tiep").await;
    let hook_secret = {
        app.setup_tiep(&with_tiep).await;
        TIEP_HOOK_SECRET
    };
    let without = app.new_practice("No Tiep").await;
    let body = serde_json::json!({"context": {"visit_id": "v-1"}, "payload": {"a": "b"}});

    let mut answers = Vec::new();
    for (practice, secret) in [
        (with_tiep.id.as_str(), "not-the-practice-secret"),
        (without.id.as_str(), hook_secret),
        ("pra-nobody", hook_secret),
    ] {
        let response = app.post_tiep_webhook(practice, &body, secret).await;
        let status = response.status();
        answers.push((status, response.text().await.unwrap()));
    }
    assert!(answers.iter().all(|(s, _)| *s == 401), "{answers:?}");
    assert!(
        answers.windows(2).all(|w| w[0].1 == w[1].1),
        "one body for every refusal: {answers:?}"
    );
    assert!(app.visits_of(&with_tiep.id).await.is_empty());
    assert!(app.unmatched_of(&with_tiep.id).await.is_empty());

    // MediQuo's door too: a practice without MediQuo and a wrong signature look alike.
    let mut statuses = Vec::new();
    for practice in [&with_tiep.id, &without.id] {
        let response = app
            .http
            .post(format!("{}/webhooks/mediquo/{practice}", app.address))
            .header("x-webhook-signature", "guess")
            .body(r#"{"type":"patient_report_sent"}"#)
            .send()
            .await
            .unwrap();
        statuses.push(response.status().as_u16());
    }
    assert_eq!(statuses, [401, 401]);
}
