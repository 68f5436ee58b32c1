//! A Haidy visit's record in the chart: the report PDF through a short-lived link, the
//! practice's archive, a consultation approved again, and files Hint cannot collect.

use std::time::Duration;

use crate::haidy_visit::{PDF, launch, page_of, practice_with_haidy};
use chartbridge_sandbox::hint::Faults;

use crate::helpers::{TestApp, TestPractice, eventually, spawn_app_with};

/// A Haidy visit of a new practice launched with one file and approved, until its report is in
/// the chart: answers the document Hint holds.
async fn report_in_chart(app: &TestApp) -> chartbridge_sandbox::hint::Document {
    practice_with_report(app).await.2
}

/// As [`report_in_chart`], answering the practice and its clinician's key too.
async fn practice_with_report(
    app: &TestApp,
) -> (TestPractice, String, chartbridge_sandbox::hint::Document) {
    let (practice, key) = practice_with_haidy(app).await;
    let patient = &practice.patients[0];
    page_of(
        app,
        launch(app, &key, patient, &[("lab.pdf", PDF, "application/pdf")]).await,
    )
    .await;
    let context = app.haidy.context_for(patient).expect("a context");
    app.haidy
        .approve(&context.id, "Iron levels normal.")
        .unwrap();
    crate::helpers::eventually(
        Duration::from_secs(10),
        "the report in the chart",
        || async { !app.hint.documents_for(patient).is_empty() },
    )
    .await;
    let document = app.hint.documents_for(patient).remove(0);
    (practice, key, document)
}

#[tokio::test]
async fn the_report_pdf_reaches_the_chart_through_a_link_for_one_file_for_minutes() {
    let app = spawn_app_with(|s| {
        s.jobs.run_in_background = true;
        s.partners.haidy.poll_every = Duration::from_millis(200);
    })
    .await;
    let document = report_in_chart(&app).await;
    assert_eq!(document.attachments.len(), 1, "Haidy's report PDF");
    let (url, bytes) = document.attachments[0].clone();
    assert_eq!(
        bytes, b"%PDF-1.4 sandbox",
        "Hint downloaded the PDF Haidy rendered"
    );
    assert!(url.starts_with(&format!("{}/files/", app.address)), "{url}");
    let get = |url: String| {
        let http = app.http.clone();
        async move { http.get(url).send().await.unwrap() }
    };

    // No session needed, a few downloads allowed, then it is used up.
    for _ in 0..2 {
        let again = get(url.clone()).await;
        assert_eq!(again.status(), 200);
        assert_eq!(
            again.headers()["content-type"].to_str().unwrap(),
            "application/pdf"
        );
        assert_eq!(again.bytes().await.unwrap().as_ref(), b"%PDF-1.4 sandbox");
    }
    assert_eq!(get(url.clone()).await.status(), 404, "used up");

    // Another practice's link: one byte changed, or its id with this link's signature, is
    // refused; the link itself works until it expires.
    let other = report_in_chart(&app).await;
    let other_url = other.attachments[0].0.clone();
    let mut changed = other_url.clone().into_bytes();
    let last = changed.len() - 1;
    changed[last] = if changed[last] == b'0' { b'1' } else { b'0' };
    assert_eq!(
        get(String::from_utf8(changed).unwrap()).await.status(),
        404,
        "one byte changed"
    );
    let (link, _) = url.rsplit_once('/').unwrap().1.split_once('.').unwrap();
    let (_, other_signature) = other_url
        .rsplit_once('/')
        .unwrap()
        .1
        .split_once('.')
        .unwrap();
    assert_eq!(
        get(format!("{}/files/{link}.{other_signature}", app.address))
            .await
            .status(),
        404,
        "a signature is for its own link and practice"
    );
    assert_eq!(get(other_url.clone()).await.status(), 200);
    sqlx::query("UPDATE file_links SET expires_at = 0")
        .execute(app.state.db.writer())
        .await
        .unwrap();
    assert_eq!(get(other_url).await.status(), 404, "expired");
}

/// The entries of a tar archive: (name, bytes).
fn tar_entries(archive: &[u8]) -> Vec<(String, Vec<u8>)> {
    let mut entries = Vec::new();
    let mut at = 0;
    while at + 512 <= archive.len() && archive[at] != 0 {
        let header = &archive[at..at + 512];
        let name_end = header[..100].iter().position(|b| *b == 0).unwrap_or(100);
        let name = String::from_utf8(header[..name_end].to_vec()).unwrap();
        let size_text = String::from_utf8(header[124..135].to_vec()).unwrap();
        let size = usize::from_str_radix(size_text.trim_matches(char::from(0)).trim(), 8).unwrap();
        let start = at + 512;
        entries.push((name, archive[start..start + size].to_vec()));
        at = start + size.div_ceil(512) * 512;
    }
    assert_eq!(
        &archive[at..],
        &[0u8; 1024][..],
        "the archive ends with its two empty blocks"
    );
    entries
}

#[tokio::test]
async fn an_admin_downloads_the_practices_archive_with_every_visit_and_its_files() {
    let app = spawn_app_with(|s| {
        s.jobs.run_in_background = true;
        s.partners.haidy.poll_every = Duration::from_millis(200);
    })
    .await;
    let (practice, key, _) = practice_with_report(&app).await;
    app.setup_tiep(&practice).await;
    assert_eq!(
        app.start_visit(&key, &practice.patients[1]).await.status(),
        303
    );
    let visits = app.visits_of(&practice.id).await;
    assert_eq!(visits.len(), 2);

    // Only an admin may download it.
    let refused = app
        .get(&format!("/hint/export.tar?session_key={key}"))
        .await;
    assert_eq!(refused.status(), 403);
    let admin = app.session(&practice.admin, None).await;
    let answer = app
        .get(&format!("/hint/export.tar?session_key={admin}"))
        .await;
    assert_eq!(answer.status(), 200);
    assert_eq!(
        answer.headers()["content-type"].to_str().unwrap(),
        "application/x-tar"
    );
    let entries = tar_entries(&answer.bytes().await.unwrap());
    let names: Vec<&str> = entries.iter().map(|(n, _)| n.as_str()).collect();
    let haidy = visits.iter().find(|v| v.partner == "haidy").unwrap();
    let tiep = visits.iter().find(|v| v.partner == "tiep").unwrap();
    for visit in [haidy, tiep] {
        let json = &entries
            .iter()
            .find(|(n, _)| *n == format!("visits/{}.json", visit.id))
            .unwrap_or_else(|| panic!("{} in {names:?}", visit.id))
            .1;
        let record: serde_json::Value = serde_json::from_slice(json).unwrap();
        assert_eq!(record["patient_id"], visit.patient_id.as_str());
    }
    let markdown = &entries
        .iter()
        .find(|(n, _)| *n == format!("visits/{}.md", haidy.id))
        .expect("the Haidy visit's note")
        .1;
    assert!(String::from_utf8_lossy(markdown).contains("Iron levels normal"));
    let pdf = entries
        .iter()
        .find(|(n, _)| n.starts_with(&format!("files/{}/haidy-report-", haidy.id)))
        .expect("the report PDF");
    assert_eq!(pdf.1, b"%PDF-1.4 sandbox");
    let trail = &entries.iter().find(|(n, _)| n == "audit.csv").unwrap().1;
    assert!(String::from_utf8_lossy(trail).starts_with("time_utc,user_id,"));
    assert!(String::from_utf8_lossy(trail).contains("\"visit_launched\""));

    // The download is in the trail.
    let exported: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM audit_events WHERE practice_id = $1 AND action = 'practice_exported'",
    )
    .bind(&practice.id)
    .fetch_one(app.state.db.reader())
    .await
    .unwrap();
    assert_eq!(exported, 1);
}

#[tokio::test]
async fn a_consultation_approved_again_with_changes_addends_the_visit_and_its_chart_document() {
    let app = spawn_app_with(|s| {
        s.jobs.run_in_background = true;
        s.partners.haidy.poll_every = Duration::from_millis(200);
        s.partners.haidy.recheck_every = Duration::from_millis(200);
    })
    .await;
    let (practice, _, first) = practice_with_report(&app).await;
    let patient = &practice.patients[0];
    assert_eq!(first.status, "signed");
    let visit = app.only_visit(&practice.id).await;
    let consultation = visit
        .partner_ref
        .clone()
        .expect("the consultation is the visit's");

    // The doctor reopens the consultation in Haidy, changes it and approves it again.
    assert!(
        app.haidy
            .reapprove(&consultation, "Iron levels low, start supplements")
    );
    eventually(
        Duration::from_secs(10),
        "the correction in the chart",
        || async { app.hint.documents_for(patient)[0].status == "addended" },
    )
    .await;
    app.wait_for_interaction(patient, "addended").await;
    let documents = app.hint.documents_for(patient);
    assert_eq!(documents.len(), 1, "the same document, addended");
    let body = &documents[0].body;
    let (now, then) = (
        body.find("Iron levels low")
            .unwrap_or_else(|| panic!("the new report: {body}")),
        body.find("Iron levels normal").expect("the earlier report"),
    );
    assert!(now < then, "the latest first, the earlier kept: {body}");
    let attachments = &documents[0].attachments;
    assert_eq!(attachments.len(), 2, "both reports' PDFs");
    assert_eq!(attachments[0].1, b"%PDF-1.4 sandbox");
    assert_eq!(
        attachments[1].1, b"%PDF-1.4 sandbox revision 1",
        "Hint downloaded the PDF of the new approval"
    );
    // The job records what Hint took a moment after Hint holds it.
    eventually(
        Duration::from_secs(10),
        "the visit records its addended document",
        || async {
            let stored = app.visit(&practice.id, &visit.id).await;
            (stored.addenda, stored.document_addenda) == (1, 1)
        },
    )
    .await;
    let versions = || app.versions_of(visit.id.as_str());
    assert_eq!(versions().await, 1, "the earlier report kept");
    let addended: Vec<_> = app
        .visit_trail(&practice.id, visit.id.as_str())
        .await
        .into_iter()
        .filter(|(action, _)| action == "visit_addended")
        .collect();
    assert_eq!(addended.len(), 1, "{addended:?}");
    assert!(addended[0].1.starts_with("haidy: "), "{addended:?}");

    // Approved once more without a change: Haidy hears it was collected, nothing else moves.
    assert!(
        app.haidy
            .reapprove(&consultation, "Iron levels low, start supplements")
    );
    eventually(
        Duration::from_secs(10),
        "the report collected again",
        || async {
            app.haidy
                .world()
                .consultations
                .iter()
                .any(|c| c.id == consultation && c.revision == 2 && c.downloaded)
        },
    )
    .await;
    assert_eq!(versions().await, 1);
    let again = app.hint.documents_for(patient);
    assert_eq!(
        (&again[0].body, again[0].attachments.len()),
        (body, 2),
        "the chart is as it was"
    );
    assert_eq!(app.visit(&practice.id, &visit.id).await.addenda, 1);
}

#[tokio::test]
async fn a_report_file_hint_cannot_collect_is_tried_again_and_shown_until_it_is_in_the_chart() {
    let app = spawn_app_with(|s| {
        s.jobs.run_in_background = true;
        s.jobs.base_backoff = Duration::from_millis(20);
        s.jobs.max_backoff = Duration::from_millis(200);
        s.jobs.max_attempts = 1_000;
        s.partners.haidy.poll_every = Duration::from_millis(200);
    })
    .await;
    app.hint.set_faults(Faults {
        attachments_unreachable: true,
        ..Default::default()
    });
    let (practice, key) = practice_with_haidy(&app).await;
    let patient = &practice.patients[0];
    page_of(
        &app,
        launch(&app, &key, patient, &[("lab.pdf", PDF, "application/pdf")]).await,
    )
    .await;
    let context = app.haidy.context_for(patient).expect("a context");
    app.haidy
        .approve(&context.id, "Iron levels normal.")
        .unwrap();
    let visit = app.only_visit(&practice.id).await;
    let write = format!("sync_interaction:{}", visit.id);
    let job = || async {
        sqlx::query_as::<_, (String, i64)>("SELECT state, attempts FROM jobs WHERE dedupe_key = $1")
            .bind(&write)
            .fetch_optional(app.state.db.reader())
            .await
            .unwrap()
    };
    eventually(
        Duration::from_secs(10),
        "the write tried three times",
        || async { job().await.is_some_and(|(_, attempts)| attempts >= 3) },
    )
    .await;

    // Still being tried, never given up on its own; the chart holds no document meanwhile and
    // the people who read the practice's pages are told, in words.
    assert_eq!(job().await.unwrap().0, "queued");
    assert!(app.hint.documents_for(patient).is_empty());
    app.wait_for_interaction(patient, "signed").await;
    let core = app.page("core_page", &key).await;
    let attention = core.text_of(".attention li");
    assert!(
        attention.contains("could not collect the visit's files")
            && attention.contains("tries again by itself"),
        "{attention}"
    );
    let page = app
        .page(
            "clinical_interaction",
            &format!("{key}&visit_id={}", visit.id),
        )
        .await;
    assert_eq!(
        page.text_of(".meta dd:last-of-type"),
        "In Hint as signed; the result is not in the chart yet"
    );

    // Once Hint reaches the file, the next try writes the document with it, once.
    app.hint.set_faults(Faults::default());
    eventually(
        Duration::from_secs(10),
        "the document in the chart",
        || async { !app.hint.documents_for(patient).is_empty() },
    )
    .await;
    let documents = app.hint.documents_for(patient);
    assert_eq!(documents.len(), 1);
    assert_eq!(documents[0].attachments[0].1, b"%PDF-1.4 sandbox");
    eventually(Duration::from_secs(10), "the write done", || async {
        job().await.is_none()
    })
    .await;
    assert_eq!(app.hint.documents_for(patient).len(), 1);
}
