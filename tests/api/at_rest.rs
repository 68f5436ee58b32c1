//! Patient data is sealed at rest: after every partner has run a visit (and Hint renamed the
//! patient), none of it can be read in the database, neither in the SQLite file (and its
//! write-ahead log) nor in any column of any table.

use serde_json::json;

use crate::helpers::{sign, spawn_app};

#[tokio::test]
async fn nothing_about_patients_is_readable_in_the_database() {
    let app = spawn_app().await;
    let practice = app.new_practice("Sealed Clinic").await;
    let patient = practice.patients[0].clone();
    let key = app.session(&practice.clinician, Some(&patient)).await;

    // Tiep: a report with its answers.
    app.setup_tiep(&practice).await;
    let started = app.start_visit(&key, &patient).await;
    let launch = started.headers()["location"].to_str().unwrap().to_string();
    let saved = app
        .save_tiep_report(&launch, &[("reason", "Unmistakable meniscus complaint")])
        .await;
    assert_eq!(saved.status(), 200);
    // MediQuo: a finished consultation (SOAP, allergies, prescriptions).
    let integration = app.setup_mediquo(&practice).await;
    assert_eq!(
        app.mediquo
            .send_consultation_finished(&integration, &patient)
            .await,
        Some(200)
    );
    // Haidy: a file whose name says whose it is.
    app.setup_haidy(&practice).await;
    let file = (
        "thompson-bloodwork.txt",
        &b"Confidential lab values"[..],
        "text/plain",
    );
    assert_eq!(app.launch_haidy(&key, &patient, file).await.status(), 303);
    // Hint renames the patient.
    let renamed = json!({"id": "evt-rename", "type": "patient.updated", "practice_id": practice.id,
        "created_at": "2026-11-30T10:00:00Z",
        "object": {"id": patient, "first_name": "Avalynn", "last_name": "Quetzalcoatl"}})
    .to_string();
    let event = app
        .http
        .post(format!("{}/webhooks/hint", app.address))
        .header("content-type", "application/json")
        .header("x-hint-signature", sign(renamed.as_bytes()))
        .body(renamed)
        .send()
        .await
        .unwrap();
    assert_eq!(event.status(), 200);
    app.run_jobs().await;

    // The app reads it all back…
    let visits = app.visits_of(&practice.id).await;
    assert_eq!(visits.len(), 3);
    assert!(
        visits
            .iter()
            .all(|v| v.patient_name == "Avalynn Quetzalcoatl")
    );
    let page = app.page("clinical_chart", &key).await;
    assert!(page.text().contains("Avalynn Quetzalcoatl"));

    // …and the database holds none of it in the clear.
    let phi = [
        "Thompson",
        "Avalynn",
        "Quetzalcoatl",
        "meniscus",
        "sore throat",
        "Penicillin",
        "thompson-bloodwork",
    ];
    let dump = database_as_text(&app).await;
    assert!(dump.contains(&practice.id), "the dump is real");
    for word in phi {
        assert!(!dump.contains(word), "{word:?} is readable in the database");
    }
}

/// Everything the database holds, as text: the SQLite file and its log byte for byte, or on
/// PostgreSQL every row of every table.
pub(crate) async fn database_as_text(app: &crate::helpers::TestApp) -> String {
    match &app.database.settings {
        chartbridge::config::DatabaseSettings::Sqlite(path) => {
            let mut bytes = std::fs::read(path).unwrap();
            if let Ok(wal) = std::fs::read(format!("{}-wal", path.display())) {
                bytes.extend(wal);
            }
            String::from_utf8_lossy(&bytes).into_owned()
        }
        chartbridge::config::DatabaseSettings::Url(_) => {
            let tables: Vec<String> = sqlx::query_scalar(
                "SELECT table_name::text FROM information_schema.tables WHERE table_schema = 'public'",
            )
            .fetch_all(app.state.db.reader())
            .await
            .unwrap();
            let mut dump = String::new();
            for table in tables {
                let rows: Vec<String> =
                    sqlx::query_scalar(&format!("SELECT t::text FROM \"{table}\" t"))
                        .fetch_all(app.state.db.reader())
                        .await
                        .unwrap();
                dump.push_str(&rows.join("\n"));
            }
            dump
        }
    }
}

#[tokio::test]
async fn rows_written_before_sealing_are_sealed_at_start() {
    let app = spawn_app().await;
    let practice = app.new_practice("Older Rows").await;
    sqlx::query(
        "INSERT INTO visits (id, practice_id, patient_id, patient_name, user_id, user_name, partner, state, \
         launch, result, created_at, updated_at, completed_at) \
         VALUES ('vis_legacy', $1, $2, 'Legacy Plainname', 'user-1', 'Casey', 'tiep', 'completed', '{}', \
         '{\"kind\":\"simple\",\"answers\":{\"reason\":\"Legacy knee\"}}', 1, 1, 1)",
    )
    .bind(&practice.id)
    .bind(&practice.patients[0])
    .execute(app.state.db.writer())
    .await
    .unwrap();
    let app = app.crash_and_restart().await;

    let (name, result): (String, String) =
        sqlx::query_as("SELECT patient_name, result FROM visits WHERE id = 'vis_legacy'")
            .fetch_one(app.state.db.reader())
            .await
            .unwrap();
    assert!(name.starts_with(chartbridge::crypto::SEALED_TEXT), "{name}");
    assert!(result.starts_with(chartbridge::crypto::SEALED_TEXT) && !result.contains("Legacy"));
    let visit = app.visit(&practice.id, &"vis_legacy").await;
    assert_eq!(visit.patient_name, "Legacy Plainname");
    assert!(visit.result.unwrap().contains("Legacy knee"));
}
