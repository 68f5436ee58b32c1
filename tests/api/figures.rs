//! Figures, not assertions: how long a visit takes to be signed in Hint while Hint fails and
//! workers die, with the production timings (lease, back-off, in-place retries), and how fast
//! patient search answers in a practice of 50,000. Ignored in the suite; `bash benches/faults.sh`
//! and `bash benches/search.sh` run them in release and print the figures.

use std::time::{Duration, Instant};

use chartbridge_sandbox::hint::Faults;
use serde_json::json;

use crate::helpers::{Config, TIEP_HOOK_SECRET, TestApp, spawn_app_with};

/// What production runs with (`config.rs`), where the suite's helpers shorten it.
fn production_timings(s: &mut Config) {
    s.jobs.run_in_background = true;
    s.jobs.lease = Duration::from_secs(12);
    s.jobs.base_backoff = Duration::from_secs(2);
    s.jobs.max_backoff = Duration::from_secs(15 * 60);
    s.jobs.max_attempts = 15;
    s.hint.rate_limit_backoff = Duration::from_millis(250);
    s.hint.failure_backoff = Duration::from_millis(300);
    s.http_timeout = Duration::from_secs(15);
}

fn signed_in_hint(app: &TestApp, patient: &str, visit_id: &str) -> bool {
    app.hint
        .interactions_for(patient)
        .iter()
        .any(|i| i.integration_record_id.as_deref() == Some(visit_id) && i.status == "signed")
}

fn report(visit_id: &str) -> serde_json::Value {
    json!({"context": {"visit_id": visit_id}, "payload": {"reason": "Measured"}})
}

fn print_figures(what: &str, mut took: Vec<Duration>) {
    took.sort();
    let at = |q: f64| took[((took.len() as f64 * q).ceil() as usize).clamp(1, took.len()) - 1];
    println!(
        "{what}: {} visits, time to signed p50 {:.1} s, p95 {:.1} s, max {:.1} s",
        took.len(),
        at(0.5).as_secs_f64(),
        at(0.95).as_secs_f64(),
        took.last().unwrap().as_secs_f64()
    );
}

/// 200 Tiep visits, two a second, while 30 % of Hint's interaction calls answer 500 and 5 % of
/// its writes lose their answer after being applied.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a benchmark: bash benches/faults.sh"]
async fn figures_time_to_signed_at_thirty_percent_500s() {
    let app = spawn_app_with(production_timings).await;
    let practice = app.new_practice("Flaky Hint").await;
    app.setup_tiep(&practice).await;
    app.hint.set_faults(Faults {
        fail_ratio: 0.3,
        lose_answer_ratio: 0.05,
        ..Default::default()
    });
    let key = app.session(&practice.clinician, None).await;
    let mut pending = Vec::new();
    let mut took = Vec::new();
    let mut tick = tokio::time::interval(Duration::from_millis(500));
    for n in 0..200 {
        tick.tick().await;
        let patient = practice.patients[n % practice.patients.len()].clone();
        let visit_id = app.started_visit_id(&practice.id, &key, &patient).await;
        let response = app
            .post_tiep_webhook(&practice.id, &report(&visit_id), TIEP_HOOK_SECRET)
            .await;
        assert_eq!(response.status(), 200);
        pending.push((patient, visit_id, Instant::now()));
        pending.retain(|(patient, visit_id, since)| {
            let done = signed_in_hint(&app, patient, visit_id);
            if done {
                took.push(since.elapsed());
            }
            !done
        });
    }
    let deadline = Instant::now() + Duration::from_secs(600);
    while !pending.is_empty() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
        pending.retain(|(patient, visit_id, since)| {
            let done = signed_in_hint(&app, patient, visit_id);
            if done {
                took.push(since.elapsed());
            }
            !done
        });
    }
    assert!(pending.is_empty(), "{} visits never signed", pending.len());
    for patient in &practice.patients {
        let held = app.hint.interactions_for(patient);
        let mut ids: Vec<_> = held
            .iter()
            .map(|i| i.integration_record_id.clone())
            .collect();
        ids.sort();
        ids.dedup();
        assert_eq!(ids.len(), held.len(), "no visit held twice");
    }
    print_figures("30 % Hint 500s + 5 % lost answers", took);
}

/// 20 times: a visit's result arrives, Hint applies the write and its answer hangs, the
/// instance is killed (no shutdown) and restarted: how long until the visit is signed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a benchmark: bash benches/faults.sh"]
async fn figures_time_to_signed_after_a_kill_during_write_back() {
    let mut app = spawn_app_with(production_timings).await;
    let practice = app.new_practice("Crashy").await;
    app.setup_tiep(&practice).await;
    let mut took = Vec::new();
    for n in 0..20 {
        let patient = practice.patients[n % practice.patients.len()].clone();
        let key = app.session(&practice.clinician, None).await;
        app.hint.set_faults(Faults {
            hang_after_write_for: Some(Duration::from_secs(3600)),
            ..Default::default()
        });
        let visit_id = app.started_visit_id(&practice.id, &key, &patient).await;
        while !app
            .hint
            .interactions_for(&patient)
            .iter()
            .any(|i| i.integration_record_id.as_deref() == Some(visit_id.as_str()))
        {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let response = app
            .post_tiep_webhook(&practice.id, &report(&visit_id), TIEP_HOOK_SECRET)
            .await;
        assert_eq!(response.status(), 200);
        // The draft's create is applied and its answer hangs: the worker holds the job.
        let killed = Instant::now();
        app = app.crash_and_restart().await;
        app.hint.set_faults(Faults::default());
        while !signed_in_hint(&app, &patient, &visit_id) {
            assert!(killed.elapsed() < Duration::from_secs(300), "never signed");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        took.push(killed.elapsed());
    }
    for patient in &practice.patients {
        let held = app.hint.interactions_for(patient);
        assert!(held.iter().all(|i| i.status == "signed"));
    }
    print_figures("kill -9 during a write-back, then restart", took);
}

/// A practice of 50,000 patients: the first fill from Hint (paced to the practice's budget),
/// the first search (the index read into memory), then keystroke after keystroke over HTTP.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a benchmark: bash benches/search.sh"]
async fn figures_patient_search_at_50000_patients() {
    let app = spawn_app_with(|_| {}).await;
    let practice_id = app.hint.add_practice("Fifty Thousand");
    app.hint.add_many_patients(&practice_id, 50_000);
    let started = Instant::now();
    assert_eq!(app.hint.install(&practice_id).await.unwrap(), 200);
    app.run_jobs().await;
    let filled = started.elapsed();
    let indexed: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM patient_index")
        .fetch_one(app.state.db.reader())
        .await
        .unwrap();
    assert_eq!(indexed, 50_000);

    let clinician = app.hint.user_with_role(&practice_id, "clinician").unwrap();
    let key = app.session(&clinician, None).await;
    let search = |q: String| {
        let (app, key) = (&app, &key);
        async move {
            let at = Instant::now();
            let response = app
                .htmx_get(&format!("/hint/patients/search?q={q}"), key)
                .await;
            assert_eq!(response.status(), 200);
            let body = response.text().await.unwrap();
            (at.elapsed(), body)
        }
    };
    let (first, _) = search("av".into()).await;
    let typed = [
        "ava thompson-1",
        "liam carter",
        "sofia martinez-4",
        "kenji tanaka-30",
        "chloe dubois",
        "omar haddad-2",
        "ingrid larsen-1",
        "hugo moreau-4",
        "zoe novak-3",
        "dmitri yilmaz-49",
    ];
    let mut took = Vec::new();
    for name in typed {
        for end in 2..=name.len() {
            let (at, body) = search(name[..end].replace(' ', "%20")).await;
            assert!(body.contains("id=\"patients\""));
            took.push(at);
        }
    }
    took.sort();
    let at = |q: f64| took[((took.len() as f64 * q).ceil() as usize).clamp(1, took.len()) - 1];
    println!(
        "patient search at 50,000 patients: filled from Hint in {:.1} s; first search (index read into memory) {:.0} ms; \
         {} keystrokes over HTTP p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        filled.as_secs_f64(),
        first.as_secs_f64() * 1000.0,
        took.len(),
        at(0.5).as_secs_f64() * 1000.0,
        at(0.99).as_secs_f64() * 1000.0,
        took.last().unwrap().as_secs_f64() * 1000.0,
    );
}

/// The process's resident memory (KiB) now, and its peak while a sampler runs.
struct PeakRss {
    before: u64,
    peak: std::sync::Arc<std::sync::atomic::AtomicU64>,
    sampling: std::sync::Arc<std::sync::atomic::AtomicBool>,
    sampler: std::thread::JoinHandle<()>,
}

impl PeakRss {
    fn now() -> u64 {
        std::fs::read_to_string("/proc/self/status")
            .ok()
            .and_then(|s| {
                s.lines()
                    .find(|l| l.starts_with("VmRSS:"))
                    .and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
            })
            .unwrap_or(0)
    }

    /// Starts sampling every 20 ms.
    fn sample() -> Self {
        use std::sync::{
            Arc,
            atomic::{AtomicBool, AtomicU64, Ordering},
        };
        let before = Self::now();
        let peak = Arc::new(AtomicU64::new(before));
        let sampling = Arc::new(AtomicBool::new(true));
        let sampler = {
            let (peak, sampling) = (peak.clone(), sampling.clone());
            std::thread::spawn(move || {
                while sampling.load(Ordering::Relaxed) {
                    peak.fetch_max(Self::now(), Ordering::Relaxed);
                    std::thread::sleep(Duration::from_millis(20));
                }
            })
        };
        PeakRss {
            before,
            peak,
            sampling,
            sampler,
        }
    }

    /// Stops sampling: (before, peak) in KiB.
    fn stop(self) -> (u64, u64) {
        use std::sync::atomic::Ordering;
        self.sampling.store(false, Ordering::Relaxed);
        self.sampler.join().unwrap();
        (self.before, self.peak.load(Ordering::Relaxed))
    }
}

/// The practice's archive at 100,000 visits (signed Tiep reports, sealed by the product's own
/// code): how long it takes, how many bytes, and how much the process's memory grows while it
/// streams. `EXPORT_VISITS` sets another size.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a benchmark: bash benches/export.sh"]
async fn figures_practice_export_at_100000_visits() {
    use chartbridge::crypto::row_aad;
    let visits: usize = std::env::var("EXPORT_VISITS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000);
    let app = spawn_app_with(|_| {}).await;
    let practice = app.new_practice("Exporting").await;
    let launch = json!({"form": chartbridge::partners::tiep::default_form()}).to_string();
    let seeded = Instant::now();
    let db = app.state.db.writer();
    for chunk in (0..visits).collect::<Vec<_>>().chunks(500) {
        let mut tx = db.begin().await.unwrap();
        for i in chunk {
            let id = format!("vis_bench{i:07}");
            let seal = |column: &str, plain: &str| {
                app.state
                    .secrets
                    .seal_text(plain, &row_aad("visits", column, &practice.id, &id))
            };
            let result = json!({"kind": "simple", "answers": {
                "reason": format!("Follow-up visit {i}: shoulder pain after tennis, improving"),
                "pain-level": i % 10, "assessment": "Rotator cuff strain", "plan": "Physiotherapy twice a week"}})
            .to_string();
            let at = 1_760_000_000_000_i64 + *i as i64 * 1000;
            sqlx::query(
                "INSERT INTO visits (id, practice_id, patient_id, patient_name, user_id, user_name, partner, state, \
                 launch, result, created_at, updated_at, completed_at) \
                 VALUES ($1, $2, $3, $4, 'usr-1', 'Casey Clinician', 'tiep', 'completed', $5, $6, $7, $7, $7)",
            )
            .bind(&id)
            .bind(&practice.id)
            .bind(&practice.patients[i % practice.patients.len()])
            .bind(seal("patient_name", "Ava Thompson"))
            .bind(seal("launch", &launch))
            .bind(seal("result", &result))
            .bind(at)
            .execute(&mut *tx)
            .await
            .unwrap();
        }
        tx.commit().await.unwrap();
    }
    let seeded = seeded.elapsed();
    let memory = PeakRss::sample();
    let admin = app.session(&practice.admin, None).await;
    let started = Instant::now();
    let mut answer = app
        .get(&format!("/hint/export.tar?session_key={admin}"))
        .await;
    assert_eq!(answer.status(), 200);
    let mut bytes = 0usize;
    while let Some(chunk) = answer.chunk().await.unwrap() {
        bytes += chunk.len();
    }
    let took = started.elapsed();
    let (before, peak) = memory.stop();
    println!(
        "practice export at {visits} visits: seeded in {:.1} s; archive {:.1} MB in {:.2} s \
         ({:.0} visits/s, {:.1} MB/s); process RSS {:.0} MiB before, peak {:.0} MiB while streaming (+{:.0} MiB)",
        seeded.as_secs_f64(),
        bytes as f64 / 1e6,
        took.as_secs_f64(),
        visits as f64 / took.as_secs_f64(),
        bytes as f64 / 1e6 / took.as_secs_f64(),
        before as f64 / 1024.0,
        peak as f64 / 1024.0,
        (peak.saturating_sub(before)) as f64 / 1024.0
    );
    assert!(bytes > visits * 1024, "every visit is in the archive");
}

/// The audit CSV export of a practice holding 1,000,000 entries (written with SQL beneath its
/// trail): rows a second and the process's memory while it streams. `AUDIT_ENTRIES` sets
/// another size.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a benchmark: bash benches/audit_export.sh"]
async fn figures_audit_csv_export_at_1000000_entries() {
    let entries: i64 = std::env::var("AUDIT_ENTRIES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let app = spawn_app_with(|_| {}).await;
    let practice = app.new_practice("Long Trail").await;
    let seeded = Instant::now();
    sqlx::query(
        "INSERT INTO audit_events (practice_id, seq, at, actor_id, actor_roles, platform_support, \
         action, patient_id, visit_id, detail, request_id, prev_hash, hash) \
         WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < $2) \
         SELECT $1, -i, 1760000000000 + i, 'usr-clinician-7', 'clinician', 0, 'chart_viewed', \
         'pat-' || (i % 5000), NULL, '', 'req-0123456789abcdef', \
         'a3f1c2d4e5b6a7980f1e2d3c4b5a69788f7e6d5c4b3a29180f1e2d3c4b5a6978', \
         'b3f1c2d4e5b6a7980f1e2d3c4b5a69788f7e6d5c4b3a29180f1e2d3c4b5a6978' FROM n",
    )
    .bind(&practice.id)
    .bind(entries)
    .execute(app.state.db.writer())
    .await
    .unwrap();
    let seeded = seeded.elapsed();
    let admin = app.session(&practice.admin, None).await;
    let memory = PeakRss::sample();
    let started = Instant::now();
    let mut answer = app
        .get(&format!("/hint/audit.csv?session_key={admin}"))
        .await;
    assert_eq!(answer.status(), 200);
    let (mut bytes, mut lines) = (0usize, 0usize);
    while let Some(chunk) = answer.chunk().await.unwrap() {
        bytes += chunk.len();
        lines += chunk.iter().filter(|b| **b == b'\n').count();
    }
    let took = started.elapsed();
    let (before, peak) = memory.stop();
    let rows = lines - 1;
    println!(
        "audit CSV export at {entries} entries: seeded in {:.1} s; {rows} rows, {:.1} MB in {:.2} s \
         ({:.0} rows/s); process RSS {:.0} MiB before, peak {:.0} MiB while streaming (+{:.0} MiB)",
        seeded.as_secs_f64(),
        bytes as f64 / 1e6,
        took.as_secs_f64(),
        rows as f64 / took.as_secs_f64(),
        before as f64 / 1024.0,
        peak as f64 / 1024.0,
        (peak.saturating_sub(before)) as f64 / 1024.0
    );
    assert!(rows as i64 > entries, "every entry is in the file");
}
