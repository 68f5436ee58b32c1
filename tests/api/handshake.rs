//! The signed handshake, probed the way Hint's audit does.

use std::time::Duration;

use crate::helpers::{Page, TestApp, eventually, now_rfc3339, sign, spawn_app, spawn_app_with};
use sqlx::Row;

/// The least a signed handshake holds: a fresh time, a user and a practice.
fn minimal() -> Vec<u8> {
    format!(
        r#"{{"timestamp":"{}","user":{{"id":"u-1","email":"a@b.c"}},"practice":{{"id":"p-1","name":"P"}}}}"#,
        now_rfc3339()
    )
    .into_bytes()
}

async fn session_rows(app: &crate::helpers::TestApp) -> i64 {
    sqlx::query("SELECT COUNT(*) AS n FROM hint_sessions")
        .fetch_one(app.state.db.reader())
        .await
        .unwrap()
        .try_get("n")
        .unwrap()
}

#[tokio::test]
async fn unsigned_is_refused() {
    let app = spawn_app().await;
    let response = app.handshake_raw(&minimal(), None).await;
    assert_eq!(response.status(), 401);
    assert_eq!(session_rows(&app).await, 0);
}

#[tokio::test]
async fn sixty_four_zeros_is_refused() {
    let app = spawn_app().await;
    let zeros = format!("sha256={}", "0".repeat(64));
    assert_eq!(
        app.handshake_raw(&minimal(), Some(&zeros)).await.status(),
        401
    );
    assert_eq!(session_rows(&app).await, 0);
}

#[tokio::test]
async fn empty_signature_is_refused() {
    let app = spawn_app().await;
    assert_eq!(app.handshake_raw(&minimal(), Some("")).await.status(), 401);
    assert_eq!(
        app.handshake_raw(&minimal(), Some("sha256="))
            .await
            .status(),
        401
    );
}

#[tokio::test]
async fn signed_minimal_body_gets_a_session_key_that_opens_nothing_without_roles() {
    let app = spawn_app().await;
    let minimal = minimal();
    let response = app.handshake_raw(&minimal, Some(&sign(&minimal))).await;
    assert_eq!(response.status(), 200);
    let body: serde_json::Value = response.json().await.unwrap();
    let key = body["session_key"].as_str().expect("a session key");
    assert_eq!(key.len(), 22, "128 random bits, URL-safe Base64");
    // Only the hash is stored.
    let stored: String = sqlx::query("SELECT key_hash FROM hint_sessions")
        .fetch_one(app.state.db.reader())
        .await
        .unwrap()
        .try_get("key_hash")
        .unwrap();
    assert_ne!(stored, key);
    assert_eq!(stored, chartbridge::crypto::sha256_hex(key.as_bytes()));
    // No partner role: the page says to ask a practice admin.
    let (status, page) = Page::of(app.surface("core_page", key).await).await;
    assert_eq!(status, 403);
    assert!(page.text_of("main").contains("Ask a practice admin"));
}

#[tokio::test]
async fn a_flipped_body_byte_is_refused() {
    let app = spawn_app().await;
    let minimal = minimal();
    let signature = sign(&minimal);
    let mut tampered = minimal.clone();
    let at = tampered.iter().position(|b| *b == b'u').unwrap();
    tampered[at] = b'v';
    assert_eq!(
        app.handshake_raw(&tampered, Some(&signature))
            .await
            .status(),
        401
    );
}

#[tokio::test]
async fn a_stale_timestamp_is_refused_and_a_fresh_one_accepted() {
    let app = spawn_app().await;
    let stale = br#"{"timestamp":"2025-10-30T14:20:19.316986-03:00","user":{"id":"u-1"},"practice":{"id":"p-1"}}"#;
    assert_eq!(
        app.handshake_raw(stale, Some(&sign(stale))).await.status(),
        401
    );
    let now = time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
    let fresh =
        format!(r#"{{"timestamp":"{now}","user":{{"id":"u-1"}},"practice":{{"id":"p-1"}}}}"#);
    assert_eq!(
        app.handshake_raw(fresh.as_bytes(), Some(&sign(fresh.as_bytes())))
            .await
            .status(),
        200
    );
}

#[tokio::test]
async fn a_signed_but_malformed_body_is_a_client_error() {
    let app = spawn_app().await;
    for body in [
        &b"not json"[..],
        br#"{"user":{},"practice":{"id":"p"}}"#,
        br#"{"user":{"id":""},"practice":{"id":"p"}}"#,
    ] {
        let status = app.handshake_raw(body, Some(&sign(body))).await.status();
        assert!(status == 400 || status == 422, "got {status}");
    }
    assert_eq!(session_rows(&app).await, 0);
}

#[tokio::test]
async fn platform_support_gets_admin_and_a_banner() {
    let app = spawn_app().await;
    let practice = app.new_practice("Support Practice").await;
    let support = app
        .hint
        .add_user(&practice.id, "Hintstaff", &[], "platform_support");
    let key = app.session(&support, None).await;
    let page = app.page("settings", &key).await;
    assert!(
        page.text_of(".banner[role=status]")
            .starts_with("Hint platform support session")
    );
    // Nothing personal of the Hint staff member is kept: their id, nothing else.
    let (email, name): (Option<String>, Option<String>) =
        sqlx::query_as("SELECT user_email, user_name FROM hint_sessions WHERE user_id = $1")
            .bind(&support)
            .fetch_one(app.state.db.reader())
            .await
            .unwrap();
    assert_eq!((email, name), (None, None));
    let staff = app
        .hint
        .world()
        .users
        .iter()
        .find(|u| u.id == support)
        .cloned()
        .unwrap();
    assert!(!page.text().contains(&staff.email));
}

#[tokio::test]
async fn a_user_keeps_at_most_their_newest_sessions() {
    let app = spawn_app_with(|c| c.app.sessions.max_per_user = 3).await;
    let practice = app.new_practice("Many Tabs").await;
    let mut keys = Vec::new();
    for _ in 0..5 {
        keys.push(app.session(&practice.clinician, None).await);
        // Sessions are ordered by their millisecond of birth: one each.
        tokio::time::sleep(std::time::Duration::from_millis(2)).await;
    }
    // Every key worked when it was answered; the cap follows within a tenth of a second.
    eventually(Duration::from_secs(5), "the cap of 3", || async {
        live_sessions(&app, &practice.id, &practice.clinician).await == 3
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        live_sessions(&app, &practice.id, &practice.clinician).await,
        3,
        "the newest three stay"
    );
    // The oldest ended, the newest work; another user's are not touched.
    assert_eq!(app.surface("core_page", &keys[0]).await.status(), 401);
    assert_eq!(app.surface("core_page", &keys[1]).await.status(), 401);
    assert_eq!(app.surface("core_page", &keys[4]).await.status(), 200);
    let admin = app.session(&practice.admin, None).await;
    assert_eq!(app.surface("core_page", &keys[2]).await.status(), 200);
    assert_eq!(app.surface("core_page", &admin).await.status(), 200);
}

/// How many sessions `user` of `practice_id` holds.
async fn live_sessions(app: &TestApp, practice_id: &str, user: &str) -> i64 {
    sqlx::query_scalar("SELECT COUNT(*) FROM hint_sessions WHERE practice_id = $1 AND user_id = $2")
        .bind(practice_id)
        .bind(user)
        .fetch_one(app.state.db.reader())
        .await
        .unwrap()
}

/// A signed handshake for `user` of practice `p-burst` named `name`.
async fn handshake_as(app: &TestApp, user: &str, name: &str) -> reqwest::Response {
    let body = format!(
        r#"{{"timestamp":"{}","user":{{"id":"{user}","partner_roles":["clinician"]}},"practice":{{"id":"p-burst","name":"{name}"}}}}"#,
        now_rfc3339()
    );
    app.handshake_raw(body.as_bytes(), Some(&sign(body.as_bytes())))
        .await
}

#[tokio::test]
async fn a_burst_of_handshakes_is_committed_together_and_every_key_works() {
    let app = spawn_app_with(|c| c.app.sessions.max_per_user = 3).await;
    // 40 at once: 20 users, two each, and one user ten times (over the cap of 3).
    let mut burst = Vec::new();
    for i in 0..40 {
        let user = if i < 10 {
            "u-many".to_string()
        } else {
            format!("u-{}", i % 20)
        };
        let app = &app;
        burst.push(async move { handshake_as(app, &user, "Burst Clinic").await });
    }
    let answers = futures::future::join_all(burst).await;
    let mut keys = Vec::new();
    for answer in answers {
        assert_eq!(answer.status(), 200);
        let body: serde_json::Value = answer.json().await.unwrap();
        keys.push(body["session_key"].as_str().unwrap().to_string());
    }
    // Every answered key was committed (the others' all work below); the many-tab user's
    // oldest end within a tenth of a second.
    eventually(
        Duration::from_secs(5),
        "the cap of 3 after a burst",
        || async { live_sessions(&app, "p-burst", "u-many").await == 3 },
    )
    .await;
    let mut working = 0;
    for key in &keys {
        if app.surface("core_page", key).await.status() == 200 {
            working += 1;
        }
    }
    assert_eq!(
        working,
        30 + 3,
        "the cap ended the many-tab user's oldest only"
    );
    let practices: Vec<String> =
        sqlx::query_scalar("SELECT name FROM practices WHERE id = 'p-burst'")
            .fetch_all(app.state.db.reader())
            .await
            .unwrap();
    assert_eq!(practices, ["Burst Clinic"]);
}

#[tokio::test]
async fn a_practice_row_is_written_when_its_name_changes_and_not_otherwise() {
    let app = spawn_app().await;
    let updated_at = || async {
        sqlx::query_as::<_, (String, i64)>(
            "SELECT name, updated_at FROM practices WHERE id = 'p-burst'",
        )
        .fetch_one(app.state.db.reader())
        .await
        .unwrap()
    };
    assert_eq!(handshake_as(&app, "u-1", "Old Name").await.status(), 200);
    let first = updated_at().await;
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    assert_eq!(handshake_as(&app, "u-2", "Old Name").await.status(), 200);
    assert_eq!(updated_at().await, first, "nothing changed: not written");
    assert_eq!(handshake_as(&app, "u-3", "New Name").await.status(), 200);
    let renamed = updated_at().await;
    assert_eq!(renamed.0, "New Name");
    assert!(renamed.1 > first.1);
}

#[tokio::test]
async fn a_handshake_without_a_timestamp_is_refused_though_signed() {
    let app = spawn_app().await;
    let undated = br#"{"user":{"id":"u-1","partner_roles":["admin"]},"practice":{"id":"p-1"}}"#;
    assert_eq!(
        app.handshake_raw(undated, Some(&sign(undated)))
            .await
            .status(),
        401
    );
    assert_eq!(session_rows(&app).await, 0);
}

#[tokio::test]
async fn a_replayed_handshake_is_refused_on_every_instance_and_mints_no_session() {
    let app = spawn_app().await;
    let other = app.another_instance().await;
    let body = format!(
        r#"{{"timestamp":"{}","user":{{"id":"u-1","partner_roles":["admin"]}},"practice":{{"id":"p-1","name":"P"}}}}"#,
        now_rfc3339()
    );
    let (body, signature) = (body.as_bytes(), sign(body.as_bytes()));
    let post = |address: String| {
        let http = app.http.clone();
        let (body, signature) = (body.to_vec(), signature.clone());
        async move {
            http.post(format!("{address}/hint/handshake"))
                .header("content-type", "application/json")
                .header("x-hint-signature", signature)
                .body(body)
                .send()
                .await
                .unwrap()
                .status()
        }
    };
    assert_eq!(post(app.address.clone()).await, 200);
    assert_eq!(session_rows(&app).await, 1);
    // The same signed body, recorded and sent again, here or to another instance, at once or
    // several at a time: each is refused and none opens a session.
    assert_eq!(post(app.address.clone()).await, 401);
    assert_eq!(post(other.clone()).await, 401);
    let together = futures::future::join_all((0..8).map(|i| {
        post(if i % 2 == 0 {
            app.address.clone()
        } else {
            other.clone()
        })
    }))
    .await;
    assert!(together.iter().all(|s| *s == 401), "{together:?}");
    assert_eq!(session_rows(&app).await, 1);

    // Two new bodies sent together both work (each is its own handshake).
    let fresh = || {
        format!(
            r#"{{"timestamp":"{}","user":{{"id":"u-2","partner_roles":["clinician"]}},"practice":{{"id":"p-1","name":"P"}}}}"#,
            now_rfc3339()
        )
    };
    let (a, b) = (fresh(), fresh());
    assert_ne!(a, b);
    let (sa, sb) = (sign(a.as_bytes()), sign(b.as_bytes()));
    let (ra, rb) = tokio::join!(
        app.handshake_raw(a.as_bytes(), Some(&sa)),
        app.handshake_raw(b.as_bytes(), Some(&sb))
    );
    assert_eq!((ra.status().as_u16(), rb.status().as_u16()), (200, 200));
    assert_eq!(session_rows(&app).await, 3);
}

#[tokio::test]
async fn remembered_handshakes_are_swept_once_past_their_window() {
    let app = spawn_app().await;
    let minimal = minimal();
    assert_eq!(
        app.handshake_raw(&minimal, Some(&sign(&minimal)))
            .await
            .status(),
        200
    );
    let remembered = || async {
        sqlx::query_scalar::<_, i64>("SELECT COUNT(*) FROM handshake_signatures")
            .fetch_one(app.state.db.reader())
            .await
            .unwrap()
    };
    assert_eq!(remembered().await, 1);
    chartbridge::hint::session::sweep_expired(app.state.as_ref())
        .await
        .unwrap();
    assert_eq!(remembered().await, 1, "still within the window");
    sqlx::query("UPDATE handshake_signatures SET seen_at = seen_at - 600001")
        .execute(app.state.db.writer())
        .await
        .unwrap();
    chartbridge::hint::session::sweep_expired(app.state.as_ref())
        .await
        .unwrap();
    assert_eq!(remembered().await, 0, "past twice the five-minute window");
}

#[tokio::test]
async fn an_ended_session_is_not_brought_back_by_saving_it() {
    use std::str::FromStr;
    use tower_sessions_core::{
        SessionStore,
        session::{Id, Record},
    };

    let app = spawn_app().await;
    let minimal = minimal();
    let answer: serde_json::Value = app
        .handshake_raw(&minimal, Some(&sign(&minimal)))
        .await
        .json()
        .await
        .unwrap();
    let id = Id::from_str(answer["session_key"].as_str().unwrap()).unwrap();
    let hint: &chartbridge::hint::HintState = app.state.as_ref();
    assert!(hint.sessions.touch(&id).await.unwrap(), "live: used now");

    // The cap or the sweeper ends it while a request holds it: saving it fails.
    sqlx::query("DELETE FROM hint_sessions")
        .execute(app.state.db.writer())
        .await
        .unwrap();
    let record = Record {
        id,
        data: Default::default(),
        expiry_date: time::OffsetDateTime::now_utc() + time::Duration::hours(1),
    };
    assert!(hint.sessions.save(&record).await.is_err());
    assert!(!hint.sessions.touch(&id).await.unwrap());
    assert_eq!(session_rows(&app).await, 0, "not re-created");
}
