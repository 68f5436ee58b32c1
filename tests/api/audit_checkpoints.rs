//! The trail against someone who can write to the database: its chain is keyed (a changed
//! entry cannot be made to verify without the key), and signed checkpoints published outside
//! the database find what the chain alone cannot (its end cut off with the head moved back, a
//! practice's trail deleted whole, a chain rewritten as it was before it was keyed).

use std::path::PathBuf;

use serde_json::json;
use sha2::{Digest, Sha256};

use crate::helpers::{TestApp, spawn_app, spawn_app_with};

/// A practice with `views` chart views in its trail (one entry each).
async fn practice_with_entries(app: &TestApp, name: &str, views: usize) -> String {
    let practice = app.new_practice(name).await;
    for i in 0..views {
        let patient = &practice.patients[i % practice.patients.len()];
        let key = app.session(&practice.clinician, Some(patient)).await;
        assert_eq!(app.surface("clinical_chart", &key).await.status(), 200);
    }
    practice.id
}

/// A file for the test's checkpoints.
pub(crate) fn checkpoint_file() -> PathBuf {
    let dir = std::env::temp_dir().join(chartbridge::db::new_id("checkpoints"));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join("audit-checkpoints.jsonl")
}

/// `chartbridge audit checkpoint` into `file`.
pub(crate) async fn publish(app: &TestApp, file: &std::path::Path) -> String {
    let file = file.display().to_string();
    let (status, said) = app
        .cli_with(
            &["audit", "checkpoint"],
            &[("CHARTBRIDGE_AUDIT_CHECKPOINTS", &file)],
        )
        .await;
    assert_eq!(status, 0, "{said}");
    said
}

/// `chartbridge audit verify`, with the checkpoints of `file` when given.
async fn verify(app: &TestApp, file: Option<&std::path::Path>) -> (i32, String) {
    match file {
        Some(file) => {
            let file = file.display().to_string();
            app.cli(&["audit", "verify", "--checkpoints", &file]).await
        }
        None => app.cli(&["audit", "verify"]).await,
    }
}

async fn run(app: &TestApp, sql: &str, practice_id: &str) {
    let owner = app.owner_db().await;
    sqlx::query(sql)
        .bind(practice_id)
        .execute(&owner)
        .await
        .unwrap();
}

#[tokio::test]
async fn a_trail_cut_short_with_its_head_moved_back_is_found_by_a_checkpoint() {
    let app = spawn_app().await;
    let practice = practice_with_entries(&app, "Cut Clinic", 3).await;
    let file = checkpoint_file();
    assert!(
        publish(&app, &file)
            .await
            .contains("1 checkpoint(s) published")
    );
    let (status, said) = verify(&app, Some(&file)).await;
    assert_eq!(status, 0, "{said}");
    assert!(
        said.contains("1 checkpoint(s) held against the chains"),
        "{said}"
    );

    // The last two entries deleted and the head set back to the first: the chain alone is
    // whole again.
    run(
        &app,
        "DELETE FROM audit_events WHERE practice_id = $1 AND seq > 1",
        &practice,
    )
    .await;
    run(
        &app,
        "UPDATE audit_heads SET seq = 1, hash = (SELECT hash FROM audit_events \
         WHERE practice_id = $1 AND seq = 1) WHERE practice_id = $1",
        &practice,
    )
    .await;
    assert_eq!(verify(&app, None).await.0, 0);
    let (status, said) = verify(&app, Some(&file)).await;
    assert_eq!(status, 1, "{said}");
    assert!(
        said.contains(&format!(
            "BROKEN practice {practice} at entry 2: the trail was cut short: the checkpoint of"
        )) && said.contains("recorded entries up to 3"),
        "{said}"
    );
}

#[tokio::test]
async fn a_practice_deleted_from_the_trail_is_found_by_a_checkpoint() {
    let app = spawn_app().await;
    let gone = practice_with_entries(&app, "Gone Clinic", 2).await;
    let kept = practice_with_entries(&app, "Kept Clinic", 1).await;
    let file = checkpoint_file();
    assert!(
        publish(&app, &file)
            .await
            .contains("2 checkpoint(s) published")
    );
    // Published again with nothing moved: the same heads again (harmless).
    publish(&app, &file).await;

    run(
        &app,
        "DELETE FROM audit_events WHERE practice_id = $1",
        &gone,
    )
    .await;
    run(
        &app,
        "DELETE FROM audit_heads WHERE practice_id = $1",
        &gone,
    )
    .await;
    let (status, said) = verify(&app, None).await;
    assert_eq!(status, 0, "the chains alone cannot tell: {said}");
    let (status, said) = verify(&app, Some(&file)).await;
    assert_eq!(status, 1, "{said}");
    assert!(
        said.contains(&format!(
            "BROKEN practice {gone} at entry 1: the practice's trail is gone"
        )) && said.contains("recorded 2 entries"),
        "{said}"
    );
    assert!(!said.contains(&format!("practice {kept}")), "{said}");
    assert!(said.contains("1 broken chain(s)"), "{said}");
}

/// The fields an entry's plain SHA-256 covered before the chain was keyed, as an attacker
/// without the key would recompute them.
fn plain_hash(practice: &str, row: &Row, prev: &str) -> String {
    let fields = json!({
        "practice_id": practice,
        "seq": row.seq,
        "at": row.at,
        "actor_id": row.actor_id,
        "actor_roles": row.actor_roles,
        "platform_support": row.platform_support != 0,
        "action": row.action,
        "patient_id": row.patient_id,
        "visit_id": row.visit_id,
        "detail": row.detail,
        "request_id": row.request_id,
        "prev_hash": prev,
    });
    hex::encode(Sha256::digest(serde_json::to_vec(&fields).unwrap()))
}

#[derive(sqlx::FromRow)]
struct Row {
    seq: i64,
    at: i64,
    actor_id: String,
    actor_roles: String,
    platform_support: i64,
    action: String,
    patient_id: Option<String>,
    visit_id: Option<String>,
    detail: String,
    request_id: Option<String>,
}

/// Points entry 2 at another patient and rechains every entry from there with plain SHA-256,
/// `key_id` as given ('' passes the chain off as one written before it was keyed).
async fn rewrite(app: &TestApp, practice: &str, key_id: Option<&str>) {
    let owner = app.owner_db().await;
    run(
        app,
        "UPDATE audit_events SET patient_id = 'pat-innocent' WHERE practice_id = $1 AND seq = 2",
        practice,
    )
    .await;
    let rows: Vec<Row> = sqlx::query_as(
        "SELECT seq, at, actor_id, actor_roles, platform_support, action, patient_id, visit_id, \
         detail, request_id FROM audit_events WHERE practice_id = $1 ORDER BY seq",
    )
    .bind(practice)
    .fetch_all(&owner)
    .await
    .unwrap();
    let mut prev = String::new();
    for row in &rows {
        let hash = plain_hash(practice, row, &prev);
        let mut update = sqlx::query(
            "UPDATE audit_events SET prev_hash = $1, hash = $2, key_id = COALESCE($3, key_id) \
             WHERE practice_id = $4 AND seq = $5",
        )
        .bind(&prev)
        .bind(&hash);
        update = update.bind(key_id);
        update
            .bind(practice)
            .bind(row.seq)
            .execute(&owner)
            .await
            .unwrap();
        prev = hash;
    }
    sqlx::query("UPDATE audit_heads SET hash = $1 WHERE practice_id = $2")
        .bind(&prev)
        .bind(practice)
        .execute(&owner)
        .await
        .unwrap();
}

#[tokio::test]
async fn an_entry_rechained_without_the_key_does_not_verify() {
    let app = spawn_app().await;
    let practice = practice_with_entries(&app, "Rechained Clinic", 3).await;
    // Rechained as the chain was before it was keyed, the key ids kept: each MAC fails.
    rewrite(&app, &practice, None).await;
    let (status, said) = verify(&app, None).await;
    assert_eq!(status, 1, "{said}");
    assert!(
        said.contains(&format!(
            "BROKEN practice {practice} at entry 1: the entry was changed"
        )),
        "{said}"
    );
}

#[tokio::test]
async fn a_trail_passed_off_as_unkeyed_is_refused_and_the_checkpoint_names_the_rewrite() {
    let app = spawn_app().await;
    let practice = practice_with_entries(&app, "Downgraded Clinic", 3).await;
    let file = checkpoint_file();
    publish(&app, &file).await;
    rewrite(&app, &practice, Some("")).await;
    let (status, said) = verify(&app, None).await;
    assert_eq!(status, 1, "{said}");
    assert!(
        said.contains(&format!(
            "BROKEN practice {practice} at entry 3: entries up to this one were chained before \
             the chain was keyed, and no checkpoint published at the upgrade"
        )),
        "{said}"
    );
    let (status, said) = verify(&app, Some(&file)).await;
    assert_eq!(status, 1, "{said}");
    assert!(
        said.contains(&format!(
            "BROKEN practice {practice} at entry 3: it is not the entry the checkpoint of"
        )) && said.contains("recorded (the trail was rewritten)"),
        "{said}"
    );
}

#[tokio::test]
async fn a_forged_checkpoint_is_refused() {
    let app = spawn_app().await;
    practice_with_entries(&app, "Forged Clinic", 1).await;
    let file = checkpoint_file();
    publish(&app, &file).await;
    let line = std::fs::read_to_string(&file).unwrap();
    let forged = line.replace("\"seq\":1", "\"seq\":7");
    assert_ne!(forged, line);
    std::fs::write(&file, format!("{line}{forged}")).unwrap();
    let (status, said) = verify(&app, Some(&file)).await;
    assert_eq!(status, 1, "{said}");
    assert!(
        said.contains(":2: its signature does not hold (forged or changed)"),
        "{said}"
    );
    assert!(said.contains("0 broken chain(s)"), "{said}");
}

#[tokio::test]
async fn the_trail_verifies_only_under_its_key_and_after_a_change_of_key_with_the_old_one_kept() {
    let app = spawn_app().await;
    let practice = practice_with_entries(&app, "Keyed Clinic", 2).await;
    let (_, other) = chartbridge::config::SecretKey::generate();
    let (status, said) = app
        .cli_with(&["audit", "verify"], &[("CHARTBRIDGE_SECRET_KEY", &other)])
        .await;
    assert_eq!(status, 1, "{said}");
    assert!(
        said.contains(&format!(
            "BROKEN practice {practice} at entry 1: it was chained under key"
        )) && said.contains("which is not configured here"),
        "{said}"
    );
    // The secret key replaced, the old one kept among the older keys: the trail verifies.
    use base64::Engine as _;
    let old = base64::engine::general_purpose::STANDARD.encode(app.state.settings.keys.secret.0);
    let (status, said) = app
        .cli_with(
            &["audit", "verify"],
            &[
                ("CHARTBRIDGE_SECRET_KEY", &other),
                ("CHARTBRIDGE_OLD_SECRET_KEYS", &old),
            ],
        )
        .await;
    assert_eq!(status, 0, "{said}");
    assert!(said.contains("2 entries checked, 0 broken"), "{said}");
}

#[tokio::test]
async fn every_instance_publishes_its_heads_at_start_on_schedule_and_at_shutdown() {
    let file = checkpoint_file();
    let path = file.clone();
    let app = spawn_app_with(move |config| {
        config.app.audit.checkpoints = Some(path);
        config.app.audit.checkpoint_every = std::time::Duration::from_secs(3600);
    })
    .await;
    let practice = app.new_practice("Published Clinic").await;
    for patient in &practice.patients[..2] {
        let key = app.session(&practice.clinician, Some(patient)).await;
        assert_eq!(app.surface("clinical_chart", &key).await.status(), 200);
    }
    let read = |file: &PathBuf| -> Vec<serde_json::Value> {
        std::fs::read_to_string(file)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    };
    // Nothing stood in the trail at start, and the hour has not passed.
    assert!(read(&file).is_empty());
    // Started again (after a crash: nothing published on the way down): the heads at start.
    let app = app.crash_and_restart().await;
    let mut lines = Vec::new();
    for _ in 0..100 {
        lines = read(&file);
        if !lines.is_empty() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert_eq!(lines[0]["checkpoint"], "chartbridge audit checkpoint");
    assert_eq!(lines[0]["practice_id"], practice.id.as_str());
    assert_eq!(lines[0]["seq"], 2);
    // One more entry, then a graceful stop: the head as the last request left it.
    let key = app
        .session(&practice.clinician, Some(&practice.patients[2]))
        .await;
    assert_eq!(app.surface("clinical_chart", &key).await.status(), 200);
    let database = app.database.clone();
    app.stop_gracefully().await;
    let lines = read(&file);
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert_eq!(lines[1]["seq"], 3);
    // What was published verifies against the trail.
    drop(database);
}

#[tokio::test]
async fn entries_rewritten_as_unkeyed_are_vouched_for_only_by_a_checkpoint_taken_at_the_upgrade() {
    let app = spawn_app().await;
    let practice = app.new_practice("Rewritten First Clinic").await;
    let view = |patient: usize| {
        let (app, practice) = (&app, &practice);
        async move {
            let key = app
                .session(&practice.clinician, Some(&practice.patients[patient]))
                .await;
            assert_eq!(app.surface("clinical_chart", &key).await.status(), 200);
        }
    };
    view(0).await;
    view(1).await;
    // Rewritten before any checkpoint: the next publication does not vouch for its head.
    rewrite(&app, &practice.id, Some("")).await;
    let file = checkpoint_file();
    assert!(
        publish(&app, &file)
            .await
            .contains("0 checkpoint(s) published")
    );
    // The app chains its next (keyed) entry onto what it finds, and that head is published:
    // still, nothing vouches for the entries before it.
    view(2).await;
    assert!(
        publish(&app, &file)
            .await
            .contains("1 checkpoint(s) published")
    );
    let (status, said) = verify(&app, Some(&file)).await;
    assert_eq!(status, 1, "{said}");
    assert!(
        said.contains(&format!(
            "BROKEN practice {} at entry 2: entries up to this one were chained before the chain \
             was keyed, and no checkpoint published at the upgrade",
            practice.id
        )),
        "{said}"
    );
    // Only the operator's deliberate `--legacy` (once, at the upgrade) vouches for them.
    let (status, said) = app
        .cli_with(
            &["audit", "checkpoint", "--legacy"],
            &[("CHARTBRIDGE_AUDIT_CHECKPOINTS", &file.display().to_string())],
        )
        .await;
    assert_eq!(status, 0, "{said}");
    let (status, said) = verify(&app, Some(&file)).await;
    assert_eq!(status, 0, "{said}");
    assert!(
        said.contains("2 entries were chained before the chain was keyed"),
        "{said}"
    );
}

#[tokio::test]
async fn an_entry_slipped_in_before_the_first_is_found() {
    let app = spawn_app().await;
    let practice = practice_with_entries(&app, "Slipped Clinic", 1).await;
    run(
        &app,
        "INSERT INTO audit_events (practice_id, seq, at, actor_id, actor_roles, platform_support, \
         action, patient_id, visit_id, detail, request_id, prev_hash, hash) \
         SELECT practice_id, 0, at, actor_id, actor_roles, platform_support, action, 'pat-other', \
         visit_id, detail, request_id, '', hash FROM audit_events WHERE practice_id = $1 AND seq = 1",
        &practice,
    )
    .await;
    let (status, said) = verify(&app, None).await;
    assert_eq!(status, 1, "{said}");
    assert!(
        said.contains("an entry was added outside the chain"),
        "{said}"
    );
}
