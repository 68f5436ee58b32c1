//! A practice's data after Hint deactivates Chartbridge: kept through a grace the admin sees,
//! then purged (the audit trail kept); reactivated within it, kept whole.

use crate::helpers::{TestApp, spawn_app};

async fn visits(app: &TestApp, practice_id: &str) -> i64 {
    sqlx::query_scalar("SELECT COUNT(*) FROM visits WHERE practice_id = $1")
        .bind(practice_id)
        .fetch_one(app.state.db.reader())
        .await
        .unwrap()
}

#[tokio::test]
async fn a_deactivated_practice_is_kept_through_its_grace_then_purged_unless_reactivated() {
    let app = spawn_app().await;
    let (leaving, _, _) = app.open_tiep_visit("Leaving Clinic").await;
    let (returning, _, _) = app.open_tiep_visit("Returning Clinic").await;
    let (staying, _, _) = app.open_tiep_visit("Staying Clinic").await;
    for practice in [&leaving, &returning] {
        assert_eq!(app.hint.deactivate(&practice.id).await.unwrap(), 200);
    }

    // Within the grace: kept, and the admin is told until when.
    assert!(
        chartbridge::retention::purge_expired(&app.state)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(visits(&app, &leaving.id).await, 1);
    let admin = app.session(&leaving.admin, None).await;
    let status = app
        .page("settings", &admin)
        .await
        .text_of("#install-status");
    assert!(
        status.contains("This practice's data is kept until ")
            && status.contains("then deleted (the audit trail is kept)"),
        "{status}"
    );

    // One is reactivated within the grace; then the grace passes for both.
    assert_eq!(app.hint.activate(&returning.id).await.unwrap(), 200);
    sqlx::query("UPDATE hint_installations SET updated_at = updated_at - $1")
        .bind(31_i64 * 86_400_000)
        .execute(app.state.db.writer())
        .await
        .unwrap();
    let purged = chartbridge::retention::purge_expired(&app.state)
        .await
        .unwrap();
    assert_eq!(purged, std::slice::from_ref(&leaving.id));
    assert_eq!(visits(&app, &leaving.id).await, 0);
    for table in app.state.partners.practice_tables() {
        let left: i64 = sqlx::query_scalar(&format!(
            "SELECT COUNT(*) FROM {table} WHERE practice_id = $1"
        ))
        .bind(&leaving.id)
        .fetch_one(app.state.db.reader())
        .await
        .unwrap();
        assert_eq!(left, 0, "{table}");
    }
    let trail: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM audit_events WHERE practice_id = $1")
        .bind(&leaving.id)
        .fetch_one(app.state.db.reader())
        .await
        .unwrap();
    assert!(trail > 0, "the audit trail stays");
    assert_eq!(visits(&app, &returning.id).await, 1, "reactivated: kept");
    assert_eq!(
        visits(&app, &staying.id).await,
        1,
        "never deactivated: kept"
    );
}

#[tokio::test]
async fn hint_event_ids_are_forgotten_once_past_hint_s_retry_window_and_not_before() {
    let app = spawn_app().await;
    let post = |id: &str| {
        let body =
            serde_json::json!({"id": id, "type": "practitioner.updated", "practice_id": "p-1",
            "created_at": "2026-12-07T00:00:00Z", "object": {}})
            .to_string();
        let (http, url) = (app.http.clone(), format!("{}/webhooks/hint", app.address));
        async move {
            http.post(url)
                .header("content-type", "application/json")
                .header("x-hint-signature", crate::helpers::sign(body.as_bytes()))
                .body(body)
                .send()
                .await
                .unwrap()
                .json::<serde_json::Value>()
                .await
                .unwrap()
        }
    };
    for id in ["evt-old", "evt-recent"] {
        assert_eq!(post(id).await["duplicate"], serde_json::Value::Null);
    }
    // One was received five days ago (past Hint's 72 hours and our day of margin), one three
    // days ago (Hint may still redeliver it).
    let day = 24 * 3600 * 1000_i64;
    for (id, age) in [("evt-old", 5 * day), ("evt-recent", 3 * day)] {
        sqlx::query(
            "UPDATE inbound_events SET received_at = received_at - $1 WHERE event_key = $2",
        )
        .bind(age)
        .bind(id)
        .execute(app.state.db.writer())
        .await
        .unwrap();
    }
    let forgotten = chartbridge::hint::webhooks::forget_old_events(&app.state.db)
        .await
        .unwrap();
    assert_eq!(forgotten, 1);
    let kept: Vec<String> = sqlx::query_scalar("SELECT event_key FROM inbound_events")
        .fetch_all(app.state.db.reader())
        .await
        .unwrap();
    assert_eq!(kept, ["evt-recent"]);
    // A redelivery within the window is still refused as a duplicate.
    assert_eq!(post("evt-recent").await["duplicate"], true);
}

#[tokio::test]
async fn a_week_of_sessions_is_swept_in_batches_and_live_ones_kept() {
    let app = spawn_app().await;
    let practice = app.new_practice("Sweeping Clinic").await;
    let live = app.session(&practice.clinician, None).await;
    // 12,000 sessions of the past week, long idle (more than two batches of the sweep), written
    // with SQL beside the live one.
    let now = chartbridge::db::now_ms();
    let mut tx = app.state.db.begin().await.unwrap();
    for chunk in (0..12_000_i64).collect::<Vec<_>>().chunks(500) {
        let rows: Vec<String> = chunk
            .iter()
            .map(|i| {
                let created = now - 7 * 24 * 3_600_000 + i * 50_000;
                format!(
                    "('old-{i:05}', '{}', 'usr-old', 'Old', 'clinician', 'standard', {created}, {}, {})",
                    practice.id,
                    created + 600_000,
                    created + 12 * 3_600_000
                )
            })
            .collect();
        sqlx::query(&format!(
            "INSERT INTO hint_sessions (key_hash, practice_id, user_id, user_name, roles, access_context, \
             created_at, last_seen_at, expires_at) VALUES {}",
            rows.join(", ")
        ))
        .execute(&mut *tx)
        .await
        .unwrap();
    }
    tx.commit().await.unwrap();
    let count = || async {
        sqlx::query_scalar::<_, i64>("SELECT COUNT(*) FROM hint_sessions WHERE practice_id = $1")
            .bind(&practice.id)
            .fetch_one(app.state.db.reader())
            .await
            .unwrap()
    };
    assert_eq!(count().await, 12_001);
    let swept = chartbridge::hint::session::sweep_expired(app.state.as_ref())
        .await
        .unwrap();
    assert_eq!(swept, 12_000);
    assert_eq!(count().await, 1);
    // The live session still opens pages.
    assert_eq!(
        app.get(&format!("/hint/core_page?session_key={live}"))
            .await
            .status(),
        200
    );
}
