//! Partners' results in a burst: answered once stored as receipts, filed afterwards, each once,
//! by whichever instance is there to do it.

use std::time::Duration;

use chartbridge::{config::ResultSettings, visits::VisitState};
use serde_json::json;

use crate::helpers::{
    MEDIQUO_SIGNATURE, TIEP_HOOK_SECRET, TestApp, eventually, spawn_app_with, stored_result,
};

async fn receipts_waiting(app: &TestApp) -> i64 {
    chartbridge::visits::receipts_waiting(&app.state.db)
        .await
        .unwrap()
}

async fn finished_entries(app: &TestApp, practice_id: &str) -> Vec<(String, String)> {
    sqlx::query_as(
        "SELECT visit_id, actor_id FROM audit_events WHERE practice_id = $1 AND action = 'visit_finished' ORDER BY seq",
    )
    .bind(practice_id)
    .fetch_all(app.state.db.reader())
    .await
    .unwrap()
}

#[tokio::test]
async fn a_burst_is_answered_from_receipts_and_each_result_is_filed_once() {
    // Every batch counts as a burst here.
    let app = spawn_app_with(|s| s.results.receipts_from = 1).await;
    let (practice, visits) = app.open_tiep_visit_per_patient("Receipts Practice").await;

    // Every report five times, all at once, each round saying something else.
    let mut sends = Vec::new();
    for round in 0..5 {
        for visit in &visits {
            let report = json!({"context": {"visit_id": visit.id}, "payload": {"reason": format!("round {round}")}});
            let (app, practice_id, visit_id) = (&app, practice.id.clone(), visit.id.to_string());
            sends.push(async move {
                let answer = app
                    .post_tiep_webhook(&practice_id, &report, TIEP_HOOK_SECRET)
                    .await;
                (visit_id, round, answer)
            });
        }
    }
    let mut acknowledged = std::collections::HashMap::new();
    let mut corrected: std::collections::HashMap<String, Vec<usize>> = Default::default();
    for (visit_id, round, answer) in futures::future::join_all(sends).await {
        assert_eq!(answer.status(), 200);
        // A different report that came once the visit was filed is a correction, not a
        // second result.
        let answer = answer.json::<serde_json::Value>().await.unwrap();
        if answer["corrected"] == true {
            corrected.entry(visit_id).or_default().push(round);
        } else if answer["duplicate"] == false {
            assert!(
                acknowledged.insert(visit_id, round).is_none(),
                "one result per visit"
            );
        }
    }
    assert_eq!(acknowledged.len(), 3, "each visit took exactly one result");
    // One we cannot place is still kept for admins, never a receipt.
    let unknown = json!({"context": {"visit_id": "vis_nope"}, "payload": {"reason": "x"}});
    let kept = app
        .post_tiep_webhook(&practice.id, &unknown, TIEP_HOOK_SECRET)
        .await;
    assert_eq!(kept.status(), 202);

    // Filed: each visit completed with the result that was acknowledged, signed once in Hint
    // (addended where a later different report corrected it).
    app.run_jobs().await;
    for patient in &practice.patients {
        let interactions = app.hint.interactions_for(patient);
        assert_eq!(interactions.len(), 1);
        assert!(
            ["signed", "addended"].contains(&interactions[0].status.as_str()),
            "{:?}",
            interactions[0].status
        );
    }
    for visit in &visits {
        let stored = app.visit(&practice.id, &visit.id).await;
        assert_eq!(stored.state, VisitState::Completed);
        let round = acknowledged[&visit.id.to_string()];
        // The acknowledged result is the one filed, unless a later different one (answered
        // once it was filed) corrected it.
        let corrections = corrected
            .get(&visit.id.to_string())
            .cloned()
            .unwrap_or_default();
        let filed = stored_result(&stored)["answers"]["reason"].clone();
        if corrections.is_empty() {
            assert_eq!(
                filed,
                format!("round {round}"),
                "the acknowledged result is filed"
            );
        } else {
            assert_eq!(stored.addenda, corrections.len() as i64);
            assert!(
                corrections.iter().any(|r| filed == format!("round {r}")),
                "{filed} is one of the corrections {corrections:?}"
            );
        }
    }
    assert_eq!(receipts_waiting(&app).await, 0);
    let finished = finished_entries(&app, &practice.id).await;
    assert_eq!(finished.len(), 3, "one trail entry per visit: {finished:?}");
    assert!(finished.iter().all(|(_, actor)| actor == "partner:tiep"));
    assert_eq!(app.unmatched_of(&practice.id).await.len(), 1);
    let (status, output) = app.cli(&["audit", "verify"]).await;
    assert_eq!(status, 0, "{output}");
}

#[tokio::test]
async fn receipts_an_instance_leaves_behind_are_filed_by_another() {
    // This instance stores receipts and never files them (as one killed mid-burst).
    let never = Duration::from_secs(3600);
    let app = spawn_app_with(|s| {
        s.results.receipts_from = 1;
        s.results.file_when_quiet = never;
        s.results.file_at_least_every = never;
        s.results.look_for_left = never;
    })
    .await;
    let (practice, visits) = app.open_tiep_visit_per_patient("Left Receipts").await;
    for visit in &visits {
        let report = json!({"context": {"visit_id": visit.id}, "payload": {"reason": "first"}});
        let answer = app
            .post_tiep_webhook(&practice.id, &report, TIEP_HOOK_SECRET)
            .await;
        assert_eq!(answer.status(), 200);
        assert_eq!(
            answer.json::<serde_json::Value>().await.unwrap()["duplicate"],
            false
        );
        // The same visit's next result finds the receipt: a duplicate, as on a completed visit.
        let again = json!({"context": {"visit_id": visit.id}, "payload": {"reason": "second"}});
        let answer = app
            .post_tiep_webhook(&practice.id, &again, TIEP_HOOK_SECRET)
            .await;
        assert_eq!(answer.status(), 200);
        assert_eq!(
            answer.json::<serde_json::Value>().await.unwrap()["duplicate"],
            true
        );
    }
    // A visit that arrives finished (MediQuo) is a receipt too, and its repeat a duplicate.
    app.setup_mediquo(&practice).await;
    let patient = &practice.patients[0];
    let (status, first) = deliver_consultation(&app, &practice.id, "left-1", patient).await;
    assert_eq!(status, 200, "{first}");
    let consultation_visit = first["visit_id"].as_str().unwrap().to_string();
    let (status, again) = deliver_consultation(&app, &practice.id, "left-1", patient).await;
    assert_eq!((status, &again["duplicate"]), (200, &json!(true)));

    assert_eq!(receipts_waiting(&app).await, 4);
    for visit in &visits {
        let stored = app.visit(&practice.id, &visit.id).await;
        assert_eq!(
            stored.state,
            VisitState::InProgress,
            "stored, not filed yet"
        );
    }
    assert_eq!(
        app.visits_of(&practice.id).await.len(),
        3,
        "not created yet"
    );

    // Another instance, as configured in production but looking often, files them.
    let _other = app
        .spawn_instance(|s| s.results = ResultSettings::default())
        .await;
    eventually(Duration::from_secs(10), "every receipt filed", || async {
        receipts_waiting(&app).await == 0
    })
    .await;
    for visit in &visits {
        let stored = app.visit(&practice.id, &visit.id).await;
        assert_eq!(stored.state, VisitState::Completed);
        assert_eq!(stored_result(&stored)["answers"]["reason"], "first");
    }
    let consultation = app
        .visits_of(&practice.id)
        .await
        .into_iter()
        .find(|v| v.partner == "mediquo")
        .expect("the consultation's visit, created by the other instance");
    assert_eq!(consultation.id.as_str(), consultation_visit);
    assert_eq!(consultation.state, VisitState::Completed);
    for patient in &practice.patients {
        app.wait_for_interaction(patient, "signed").await;
    }
    eventually(
        Duration::from_secs(20),
        "both of the patient's signed",
        || async {
            let interactions = app.hint.interactions_for(patient);
            interactions.iter().filter(|i| i.status == "signed").count() == 2
        },
    )
    .await;
    for (i, patient) in practice.patients.iter().enumerate() {
        let expected = if i == 0 { 2 } else { 1 };
        assert_eq!(app.hint.interactions_for(patient).len(), expected);
    }
    assert_eq!(finished_entries(&app, &practice.id).await.len(), 4);
}

/// A MediQuo "consultation finished" delivery for `patient`, posted signed; answers the
/// status and the JSON answer.
async fn deliver_consultation(
    app: &TestApp,
    practice_id: &str,
    consultation: &str,
    patient: &str,
) -> (u16, serde_json::Value) {
    let body = json!({"type": "patient_consultation_finished", "occurred_on": 1704063600,
        "payload": {"consultation": {"id": consultation, "type": "chat"},
                    "reports": [{"id": "r-1", "type": "soap", "content": {"plan": "Rest"}}],
                    "patient": {"code": patient}}});
    let answer = app
        .http
        .post(format!("{}/webhooks/mediquo/{practice_id}", app.address))
        .header("x-webhook-signature", MEDIQUO_SIGNATURE)
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = answer.status().as_u16();
    (status, answer.json().await.unwrap())
}

#[tokio::test]
async fn finished_visits_in_a_burst_are_answered_from_receipts_and_each_created_once() {
    let app = spawn_app_with(|s| s.results.receipts_from = 1).await;
    let practice = app.new_practice("Recording Receipts").await;
    app.setup_mediquo(&practice).await;
    // The practice's patients loaded (a clinician searched): deliveries need no Hint call, so
    // every copy goes to the writer at once.
    let key = app.session(&practice.clinician, None).await;
    assert_eq!(
        app.htmx_get("/hint/patients/search?q=a", &key)
            .await
            .status(),
        200
    );

    // Four consultations, each delivered three times at once and three times more a few
    // milliseconds apart (repeats racing the filing of the first).
    let mut sends = Vec::new();
    for (i, patient) in practice.patients.iter().cycle().take(4).enumerate() {
        for copy in 0..6u64 {
            let consultation = format!("burst-{i}");
            let (app, practice_id) = (&app, practice.id.clone());
            sends.push(async move {
                tokio::time::sleep(Duration::from_millis(copy.saturating_sub(2) * 3)).await;
                let answer = deliver_consultation(app, &practice_id, &consultation, patient).await;
                (consultation, answer)
            });
        }
    }
    let mut answered = std::collections::HashMap::new();
    for (consultation, (status, answer)) in futures::future::join_all(sends).await {
        assert_eq!(status, 200, "{answer}");
        if answer["duplicate"] == true {
            continue;
        }
        let visit_id = answer["visit_id"].as_str().unwrap().to_string();
        assert!(
            answered.insert(consultation, visit_id).is_none(),
            "one visit per consultation"
        );
    }
    assert_eq!(answered.len(), 4, "each consultation stored once");

    eventually(Duration::from_secs(10), "every receipt filed", || async {
        receipts_waiting(&app).await == 0
    })
    .await;
    let stored = app.visits_of(&practice.id).await;
    assert_eq!(stored.len(), 4);
    for (consultation, visit_id) in &answered {
        let visit = stored
            .iter()
            .find(|v| v.partner_ref.as_deref() == Some(&*format!("consultation:{consultation}")))
            .expect("the consultation's visit");
        assert_eq!(
            visit.id.as_str(),
            visit_id,
            "the answered id is the visit's"
        );
        assert_eq!(visit.state, VisitState::Completed);
    }
    let finished = finished_entries(&app, &practice.id).await;
    assert_eq!(finished.len(), 4, "one trail entry per visit: {finished:?}");
    assert!(finished.iter().all(|(_, actor)| actor == "partner:mediquo"));
    app.run_jobs().await;
    let signed: usize = practice
        .patients
        .iter()
        .map(|p| app.hint.interactions_for(p).len())
        .sum();
    assert_eq!(signed, 4, "one interaction per consultation in Hint");
    let (status, output) = app.cli(&["audit", "verify"]).await;
    assert_eq!(status, 0, "{output}");
}

#[tokio::test]
async fn a_writers_connection_the_database_closed_is_replaced_before_its_next_batch() {
    let app = spawn_app_with(|s| s.results.receipts_from = 1).await;
    let (practice, visits) = app
        .open_tiep_visit_per_patient("Closed Connection Practice")
        .await;
    let report = |visit: usize| json!({"context": {"visit_id": visits[visit].id}, "payload": {"reason": "after a pause"}});
    let first = app
        .post_tiep_webhook(&practice.id, &report(0), TIEP_HOOK_SECRET)
        .await;
    assert_eq!(first.status(), 200);

    // The database closes every connection but this one (a restart does the same to all),
    // the writer's own included (on SQLite there is none of its own: the pool's is checked).
    if app.state.db.backend() == chartbridge::db::Backend::Postgres {
        let closed: Vec<bool> = sqlx::query_scalar(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
             WHERE datname = current_database() AND pid <> pg_backend_pid()",
        )
        .fetch_all(&mut *app.state.db.writer().acquire().await.unwrap())
        .await
        .unwrap();
        assert!(
            closed.len() >= 2,
            "the writer's own and the pool's were open"
        );
    }
    tokio::time::sleep(chartbridge::db::IDLE_BEFORE_CHECK + Duration::from_millis(200)).await;

    // The pool's connections were closed too: each statement still gets an answer.
    let pool = app.state.db.reader();
    let statements = (0..pool.size() + 2).map(|_| sqlx::query("SELECT 1").execute(pool));
    for answered in futures::future::join_all(statements).await {
        answered.expect("the pool replaces a connection the database closed");
    }

    // The pause's first handshake opens a session (its writer keeps a connection too), and
    // its first delivery is stored, neither refused for a connection closed under it.
    let key = app.session(&practice.clinician, None).await;
    assert_eq!(app.surface("core_page", &key).await.status(), 200);
    for visit in 1..visits.len() {
        let answer = app
            .post_tiep_webhook(&practice.id, &report(visit), TIEP_HOOK_SECRET)
            .await;
        assert_eq!(answer.status(), 200, "delivery {visit} after the pause");
        assert_eq!(
            answer.json::<serde_json::Value>().await.unwrap()["duplicate"],
            false
        );
    }
    for visit in &visits {
        eventually(Duration::from_secs(20), "the visit completed", || async {
            app.visit(&practice.id, &visit.id).await.state == VisitState::Completed
        })
        .await;
    }
}
