//! Restarts that nobody notices: an instance told to stop drains (not ready at once, still
//! serving, each connection closed after its answer) and hands back the jobs it had to stop;
//! a database that is away for a moment is a 503 with `Retry-After`, never a 500.

use std::time::{Duration, Instant};

use chartbridge_sandbox::hint::Faults;
use serde_json::json;

use crate::helpers::{TIEP_HOOK_SECRET, eventually, sign, spawn_app, spawn_app_with};

#[tokio::test]
async fn told_to_stop_it_is_not_ready_at_once_and_serves_the_drain_closing_each_connection() {
    let drain = Duration::from_millis(1500);
    let mut app = spawn_app_with(|c| c.server.drain_delay = drain).await;
    let practice = app.new_practice("Draining").await;
    let before = app.get("/healthz").await;
    assert_eq!(before.status(), 200);
    assert!(before.headers().get("connection").is_none(), "kept alive");

    let told = Instant::now();
    app.tell_to_stop();
    eventually(Duration::from_millis(300), "readyz 503", || async {
        app.get("/readyz").await.status() == 503
    })
    .await;
    let ready = app.get("/readyz").await;
    assert_eq!(ready.status(), 503);
    assert!(ready.text().await.unwrap().contains("draining"));

    // Still served meanwhile, reads and writes, each answer closing its connection.
    let healthz = app.get("/healthz").await;
    assert_eq!(healthz.status(), 200);
    assert_eq!(healthz.headers()["connection"], "close");
    let key = app.session(&practice.clinician, None).await;
    let page = app.surface("core_page", &key).await;
    assert_eq!(page.status(), 200);
    assert_eq!(page.headers()["connection"], "close");
    assert!(told.elapsed() < drain, "all of it within the drain");

    app.stopped().await;
    assert!(told.elapsed() >= drain, "it stopped only after the drain");
    assert!(
        app.http
            .get(format!("{}/healthz", app.address))
            .send()
            .await
            .is_err(),
        "no longer accepting"
    );
}

#[tokio::test]
async fn results_in_flight_when_told_to_stop_are_answered_and_each_acknowledged_one_is_stored() {
    let mut app = spawn_app_with(|c| {
        // Every batch a burst's: answered once stored as a receipt.
        c.results.receipts_from = 1;
        c.server.drain_delay = Duration::from_millis(200);
    })
    .await;
    let (practice, visits) = app.open_tiep_visit_per_patient("Stopping Mid Burst").await;
    let stop = app.stop_signal();
    let sends: Vec<_> = visits
        .iter()
        .map(|visit| {
            let report =
                json!({"context": {"visit_id": visit.id}, "payload": {"reason": "In flight"}});
            let (app, practice_id) = (&app, practice.id.clone());
            async move {
                app.post_tiep_webhook(&practice_id, &report, TIEP_HOOK_SECRET)
                    .await
                    .status()
                    .as_u16()
            }
        })
        .collect();
    // Told to stop while the results are on their way.
    let (answers, ()) = tokio::join!(futures::future::join_all(sends), async {
        tokio::time::sleep(Duration::from_millis(2)).await;
        let _ = stop.send(());
    });
    app.stopped().await;
    assert!(
        answers.iter().all(|s| [200, 503].contains(s)),
        "stored or refused for a retry: {answers:?}"
    );

    // Whatever was acknowledged is filed by the next instance.
    let next = app.another_state().await;
    for (visit, answer) in visits.iter().zip(&answers) {
        if *answer != 200 {
            continue;
        }
        eventually(Duration::from_secs(10), "the result filed", || async {
            sqlx::query_scalar::<_, i64>(
                "SELECT COUNT(*) FROM visits WHERE id = $1 AND result IS NOT NULL",
            )
            .bind(visit.id.to_string())
            .fetch_one(next.db.reader())
            .await
            .unwrap()
                == 1
        })
        .await;
    }
}

#[tokio::test]
async fn a_job_running_at_shutdown_is_handed_back_and_claimable_at_once() {
    let mut app = spawn_app_with(|c| {
        c.jobs.run_in_background = true;
        // Far longer than the test: only a hand-back makes the job claimable again.
        c.jobs.lease = Duration::from_secs(120);
        c.jobs.shutdown_grace = Duration::from_millis(300);
        c.http_timeout = Duration::from_secs(60);
    })
    .await;
    let practice = app.new_practice("Stopping Mid Job").await;
    app.setup_tiep(&practice).await;
    let key = app.session(&practice.clinician, None).await;
    // Hint stops answering: the write-back's call hangs.
    app.hint.set_faults(Faults {
        hang_for: Some(Duration::from_secs(60)),
        ..Default::default()
    });
    assert_eq!(
        app.start_visit(&key, &practice.patients[0]).await.status(),
        303
    );
    let held =
        "SELECT COUNT(*) FROM jobs WHERE kind = 'sync_interaction' AND locked_by IS NOT NULL";
    eventually(
        Duration::from_secs(10),
        "the write-back running",
        || async {
            sqlx::query_scalar::<_, i64>(held)
                .fetch_one(app.state.db.reader())
                .await
                .unwrap()
                == 1
        },
    )
    .await;
    let other = app.another_state().await;

    let told = Instant::now();
    app.tell_to_stop();
    app.stopped().await;
    assert!(
        told.elapsed() < Duration::from_secs(5),
        "stopped within the grace"
    );
    let (locked, due): (i64, i64) = sqlx::query_as(
        "SELECT COUNT(locked_by), COUNT(*) FROM jobs WHERE kind = 'sync_interaction' AND run_at <= $1",
    )
    .bind(chartbridge::db::now_ms())
    .fetch_one(other.db.reader())
    .await
    .unwrap();
    assert_eq!((locked, due), (0, 1), "handed back: no lease, due now");

    // Another instance takes it at once, and Hint holds the visit's interaction once.
    app.hint.set_faults(Faults::default());
    let ran = other.job_runner().run_until_empty().await.unwrap();
    assert!(ran >= 1, "the other runner ran it");
    let held = app.hint.interactions_for(&practice.patients[0]);
    assert_eq!(held.len(), 1, "created once");
}

#[tokio::test]
async fn a_handshake_rides_over_its_connection_ended_by_the_database() {
    let app = spawn_app().await;
    if app.state.db.backend() != chartbridge::db::Backend::Postgres {
        // Nothing ends an SQLite connection; the PostgreSQL pass runs this test.
        return;
    }
    let practice = app.new_practice("Restarted Database").await;
    app.session(&practice.clinician, None).await;
    // The sessions' writer keeps its connection between batches: the server ends it.
    app.end_database_connections().await;
    let body = json!({"timestamp": crate::helpers::now_rfc3339(),
        "user": {"id": practice.clinician, "partner_roles": ["clinician"]},
        "practice": {"id": practice.id}})
    .to_string();
    let handshake = app
        .handshake_raw(body.as_bytes(), Some(&sign(body.as_bytes())))
        .await;
    assert_eq!(
        handshake.status(),
        200,
        "held and written on a new connection"
    );
    let answer: serde_json::Value = handshake.json().await.unwrap();
    let key = answer["session_key"].as_str().unwrap();
    assert_eq!(app.surface("core_page", key).await.status(), 200);
}

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
