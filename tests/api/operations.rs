//! What operators watch: `/metrics` behind its token and `/readyz`.

use crate::helpers::{
    METRICS_TOKEN, TIEP_HOOK_SECRET, TestApp, eventually, spawn_app, spawn_app_with,
};

async fn scrape(app: &TestApp, token: Option<&str>) -> reqwest::Response {
    let mut request = app.http.get(format!("{}/metrics", app.address));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    request.send().await.unwrap()
}

async fn metrics(app: &TestApp) -> String {
    let response = scrape(app, Some(METRICS_TOKEN)).await;
    assert_eq!(response.status(), 200);
    assert!(
        response.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain; version=0.0.4")
    );
    response.text().await.unwrap()
}

/// The value of the sample whose line starts with `series` (name and labels).
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

#[tokio::test]
async fn metrics_need_the_token() {
    let app = spawn_app().await;
    assert_eq!(scrape(&app, None).await.status(), 401);
    assert_eq!(
        scrape(&app, Some("test-metrics-token-0002")).await.status(),
        401
    );
    assert_eq!(scrape(&app, Some(METRICS_TOKEN)).await.status(), 200);

    let app = app.restart_with(|c| c.app.metrics_token = None).await;
    assert_eq!(scrape(&app, Some(METRICS_TOKEN)).await.status(), 404);
}

#[tokio::test]
async fn metrics_count_requests_hint_calls_webhooks_and_the_queue() {
    let app = spawn_app().await;
    let practice = app.new_practice("Counted").await;
    app.setup_tiep(&practice).await;
    let key = app.session(&practice.clinician, None).await;
    assert_eq!(
        app.start_visit(&key, &practice.patients[0]).await.status(),
        303
    );
    let visit_id = app.only_visit(&practice.id).await.id.to_string();
    let report = serde_json::json!({"context": {"visit_id": visit_id}, "payload": {"reason": "x"}});
    let forged = app
        .post_tiep_webhook(&practice.id, &report, "not-the-hook-secret-at-all")
        .await;
    assert_eq!(forged.status(), 401);
    assert_eq!(
        app.post_tiep_webhook(&practice.id, &report, TIEP_HOOK_SECRET)
            .await
            .status(),
        200
    );
    // Hint allows one call a second for a moment: the write-back meets 429s.
    app.hint.world().rate_limit_per_second = 1;
    app.run_jobs().await;

    let text = metrics(&app).await;
    let handshakes = sample(
        &text,
        "chartbridge_http_request_duration_seconds_count{method=\"POST\",route=\"/hint/handshake\",status=\"200\"}",
    );
    assert!(handshakes >= Some(1.0), "{text}");
    let hint_ok = format!(
        "chartbridge_hint_calls_total{{budget=\"{}\",outcome=\"ok\"}}",
        practice.id
    );
    assert!(sample(&text, &hint_ok) >= Some(2.0), "{text}");
    let limited = format!(
        "chartbridge_hint_calls_total{{budget=\"{}\",outcome=\"rate_limited\"}}",
        practice.id
    );
    assert!(sample(&text, &limited) >= Some(1.0), "{text}");
    assert_eq!(
        sample(
            &text,
            "chartbridge_webhooks_total{source=\"tiep\",outcome=\"refused\"}"
        ),
        Some(1.0)
    );
    assert_eq!(
        sample(
            &text,
            "chartbridge_webhooks_total{source=\"tiep\",outcome=\"accepted\"}"
        ),
        Some(1.0)
    );
    // The write-back met Hint's 429s: it waits in the queue for its next try.
    assert_eq!(
        sample(
            &text,
            "chartbridge_jobs{kind=\"sync_interaction\",state=\"queued\"}"
        ),
        Some(1.0),
        "{text}"
    );
    app.hint.world().rate_limit_per_second = 20;
    eventually(
        std::time::Duration::from_secs(10),
        "signed in Hint",
        || async {
            app.run_jobs().await;
            app.hint
                .interactions_for(&practice.patients[0])
                .iter()
                .any(|i| i.status == "signed")
        },
    )
    .await;
    let text = metrics(&app).await;
    assert_eq!(
        sample(
            &text,
            "chartbridge_jobs{kind=\"sync_interaction\",state=\"queued\"}"
        ),
        None
    );
    // Labels are routes, never paths: no practice id or visit id from a URL.
    assert!(!text.contains(&visit_id));
    assert!(!text.contains(&format!("/webhooks/tiep/{}", practice.id)));
}

#[tokio::test]
async fn ready_means_the_database_answers_and_the_job_runner_runs() {
    let app = spawn_app_with(|s| s.jobs.run_in_background = true).await;
    eventually(std::time::Duration::from_secs(10), "ready", || async {
        app.get("/readyz").await.status() == 200
    })
    .await;
    assert!(
        metrics(&app)
            .await
            .contains("\nchartbridge_job_runner_up 1\n")
    );

    app.state.db.close().await;
    let response = app.get("/readyz").await;
    assert_eq!(response.status(), 503);
    assert_eq!(response.text().await.unwrap(), "database unavailable");
}
