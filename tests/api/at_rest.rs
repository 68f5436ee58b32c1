//! Patient data is sealed at rest: after every partner has run a visit (and Hint renamed the
//! patient), none of it can be read in the database, neither in the SQLite file (and its
//! write-ahead log) nor in any column of any table.

use serde_json::json;

use chartbridge::config::SecretKey;

use crate::helpers::{TestApp, TestPractice, sign, spawn_app};

#[tokio::test]
async fn nothing_about_patients_is_readable_in_the_database() {
    let app = spawn_app().await;
    let (practice, key) = patient_data_everywhere(&app).await;
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

/// A practice whose patient has had a visit with every partner that keeps data (Tiep,
/// MediQuo, Haidy with a file) and was renamed by Hint; answers it and the clinician's
/// session key. The app reads it all back.
async fn patient_data_everywhere(app: &TestApp) -> (TestPractice, String) {
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
    (practice, key)
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
    // A database from before sealing has not recorded the pass done (this one's first start did).
    sqlx::query("DELETE FROM maintenance_passes")
        .execute(app.state.db.writer())
        .await
        .unwrap();
    let app = app.crash_and_restart().await;
    // Recorded done: later starts do not read every visit again.
    let done: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM maintenance_passes")
        .fetch_one(app.state.db.reader())
        .await
        .unwrap();
    assert_eq!(done, 1);

    let (name, result): (String, String) =
        sqlx::query_as("SELECT patient_name, result FROM visits WHERE id = 'vis_legacy'")
            .fetch_one(app.state.db.reader())
            .await
            .unwrap();
    assert!(name.starts_with(chartbridge::crypto::SEALED), "{name}");
    assert!(result.starts_with(chartbridge::crypto::SEALED) && !result.contains("Legacy"));
    let visit = app.visit(&practice.id, &"vis_legacy").await;
    assert_eq!(visit.patient_name, "Legacy Plainname");
    assert!(visit.result.unwrap().contains("Legacy knee"));
}

/// Every value in a sealed column that is not under the key with this prefix.
async fn sealed_otherwise(app: &TestApp, prefix: &str) -> Vec<String> {
    let mut found = Vec::new();
    for (table, column) in chartbridge::rotation::covered() {
        let n: i64 = sqlx::query_scalar(&format!(
            "SELECT COUNT(*) FROM {table} WHERE {column} IS NOT NULL AND {column} <> '' \
             AND {column} NOT LIKE $1"
        ))
        .bind(format!("{prefix}%"))
        .fetch_one(app.state.db.reader())
        .await
        .unwrap();
        if n > 0 {
            found.push(format!("{table}.{column}: {n}"));
        }
    }
    found
}

#[tokio::test]
async fn a_database_sealed_under_one_key_reads_after_rotating_to_another_and_without_it() {
    use base64::Engine as _;
    let app = spawn_app().await;
    let (practice, _) = patient_data_everywhere(&app).await;
    let a = app.state.settings.keys.secret.clone();
    let under_a = app.state.secrets.current_prefix();
    let populated = sealed_otherwise(&app, "none").await;
    assert!(
        populated.len() >= 7,
        "the test fills most sealed columns: {populated:?}"
    );

    // The new key goes live with the old one kept beside it; the rotation runs while serving.
    let (b, b_text) = SecretKey::generate();
    let a_text = base64::engine::general_purpose::STANDARD.encode(a.0);
    let keep_a = a.clone();
    let app = app
        .restart_with(move |config| {
            config.app.keys.secret = b.clone();
            config.app.keys.old_secrets = vec![keep_a];
        })
        .await;
    let under_b = app.state.secrets.current_prefix();
    assert_ne!(under_a, under_b);
    let (status, said) = app
        .cli_with(
            &["keys", "rotate", "--batch", "2"],
            &[
                ("CHARTBRIDGE_SECRET_KEY", &b_text),
                ("CHARTBRIDGE_OLD_SECRET_KEYS", &a_text),
            ],
        )
        .await;
    assert_eq!(status, 0, "{said}");
    assert!(
        said.contains("visits.patient_name: 3 sealed again"),
        "{said}"
    );
    assert_eq!(sealed_otherwise(&app, &under_b).await, Vec::<String>::new());
    // Run again (a rotation that stopped half way): nothing left to do.
    let (status, said) = app
        .cli_with(
            &["keys", "rotate"],
            &[("CHARTBRIDGE_OLD_SECRET_KEYS", &a_text)],
        )
        .await;
    assert_eq!(status, 0, "{said}");
    assert!(said.contains("0 value(s) now sealed under key"), "{said}");

    // The old key removed: everything still opens.
    let app = app
        .restart_with(|config| config.app.keys.old_secrets.clear())
        .await;
    let visits = app.visits_of(&practice.id).await;
    assert_eq!(visits.len(), 3);
    assert!(
        visits
            .iter()
            .all(|v| v.patient_name == "Avalynn Quetzalcoatl")
    );
    assert!(app.practice_token(&practice.id).await.is_some());
    let key = app
        .session(&practice.clinician, Some(&practice.patients[0]))
        .await;
    let page = app.page("clinical_chart", &key).await;
    assert!(page.text().contains("Avalynn Quetzalcoatl"));

    // A value that is not sealed is refused, not read as plain text.
    let visit = &visits[0];
    sqlx::query("UPDATE visits SET patient_name = 'Plain Intruder' WHERE id = $1")
        .bind(visit.id.to_string())
        .execute(&app.owner_db().await)
        .await
        .unwrap();
    let refused = app.surface("clinical_chart", &key).await;
    assert_eq!(refused.status(), 500);
    assert!(!refused.text().await.unwrap().contains("Plain Intruder"));
}

#[tokio::test]
async fn every_sealed_column_is_rotated() {
    let app = spawn_app().await;
    let columns: Vec<(String, String)> = match app.state.db.backend() {
        chartbridge::db::Backend::Sqlite => sqlx::query_as(
            "SELECT m.name, p.name FROM sqlite_master m JOIN pragma_table_info(m.name) p \
             WHERE m.type = 'table'",
        ),
        chartbridge::db::Backend::Postgres => sqlx::query_as(
            "SELECT table_name::text, column_name::text FROM information_schema.columns \
             WHERE table_schema = 'public'",
        ),
    }
    .fetch_all(app.state.db.reader())
    .await
    .unwrap();
    let covered = chartbridge::rotation::covered();
    for (table, column) in &columns {
        if column.contains("sealed") {
            assert!(
                covered.contains(&(table.as_str(), column.as_str())),
                "{table}.{column} is sealed and not rotated"
            );
        }
    }
    for (table, column) in covered {
        assert!(
            columns.iter().any(|(t, c)| t == table && c == column),
            "{table}.{column} does not exist"
        );
    }
}
